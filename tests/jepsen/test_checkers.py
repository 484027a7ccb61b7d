#!/usr/bin/python3
"""test_checkers.py — the jepsen/ checkers on hand-written and generated histories.

    tests/jepsen/test_checkers.py            (CTest: jepsen_checkers)

Pure Python, no cluster: every checker gets valid and invalid histories (Jepsen's classic
cases among them: a stale read, a lost update through cas, G-single read skew, G2 write
skew), the linearizability checker's minimal sub-history of a known invalid case is checked
exactly, and a generated 10,000-op register history (10 keys, concurrency 10, info ops) is
checked valid with its duration printed (no timed assertion).
"""
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "jepsen"))

from latchjep.checkers import (election_checker, lease_checker, linearizable,  # noqa: E402
                               lock_checker, serializable, set_checker, simulate, stats,
                               watch_checker)
from latchjep.checkers.ops import verdict_line  # noqa: E402

MS = 1_000_000


def history(ops):
    """ops: (process, f, key, invoke value, type, completion value, t0 ms, t1 ms or None,
    extra completion fields). Events get times in ns and indexes in time order (an invoke
    before a completion at the same time)."""
    evs = []
    for n, o in enumerate(ops):
        p, f, key, inv, typ, val, t0, t1 = o[:8]
        extra = o[8] if len(o) > 8 else {}
        ev = {"process": p, "type": "invoke", "f": f, "value": inv, "time": t0 * MS, "_o": n}
        if key is not None:
            ev["key"] = key
        evs.append(ev)
        if typ is not None:
            c = {"process": p, "type": typ, "f": f, "value": val, "time": t1 * MS, "_o": n}
            if key is not None:
                c["key"] = key
            c.update(extra)
            evs.append(c)
    evs.sort(key=lambda e: (e["time"], e["type"] != "invoke", e["_o"]))
    for i, e in enumerate(evs):
        del e["_o"]
        e["index"] = i
    return evs


def ops_of(events):
    return sorted({(e["process"], e["f"], str(e.get("value")), e["type"]) for e in events})


class Linearizable(unittest.TestCase):
    def test_sequential_and_concurrent_valid(self):
        h = history([
            (0, "write", "x", 1, "ok", 1, 0, 10),
            (1, "read", "x", None, "ok", 1, 20, 30),
            (0, "cas", "x", [1, 2], "ok", [1, 2], 40, 50),
            (1, "write", "x", 3, "ok", 3, 45, 60),   # concurrent with the cas
            (2, "read", "x", None, "ok", 2, 46, 55),  # sees the cas before the write
            (0, "read", "x", None, "ok", 3, 70, 80),
            (1, "cas", "x", [9, 4], "fail", [9, 4], 90, 95),  # failed cas: nothing
            (2, "read", "y", None, "ok", None, 0, 5),  # another key, never written
        ])
        r = linearizable.check(h)
        self.assertIs(r["valid"], True, r)
        self.assertEqual(r["keys"], 2)

    def test_stale_read_is_invalid_with_minimal_history(self):
        # write 1 completes, then a read (invoked later) still returns the old value 0.
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "read", "x", None, "ok", 0, 12, 20),
            (0, "write", "x", 1, "ok", 1, 30, 40),
            (2, "write", "x", 7, "ok", 7, 0, 5),     # noise, before everything
            (3, "read", "y", None, "ok", None, 0, 100),
            (1, "read", "x", None, "ok", 0, 50, 60),  # stale
            (2, "read", "x", None, "ok", 1, 70, 80),
        ])
        r = linearizable.check(h)
        self.assertIs(r["valid"], False)
        self.assertEqual(r["anomalies"][0]["key"], "x")
        # Minimal: the write of 1 and the stale read of 0 after it (2 ops, 4 events).
        self.assertEqual(ops_of(r["minimal"]), sorted([
            (0, "write", "1", "invoke"), (0, "write", "1", "ok"),
            (1, "read", "None", "invoke"), (1, "read", "0", "ok")]))
        self.assertEqual(r["anomalies"][0]["ops"], 2)
        self.assertTrue(r["anomalies"][0]["minimal_complete"])
        stale = [e for e in h if e["f"] == "read" and e["type"] == "ok" and e["time"] == 60 * MS]
        self.assertIn(stale[0]["index"], r["failing_ops"])
        self.assertIn("INVALID (non-linearizable history for key x, 2 ops)",
                      verdict_line("linearizable", r))

    def test_lost_update_via_cas_is_invalid(self):
        # Two cas 0->1 and 0->2 both succeed sequentially: the second must have failed.
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "cas", "x", [0, 1], "ok", [0, 1], 20, 30),
            (2, "cas", "x", [0, 2], "ok", [0, 2], 40, 50),
        ])
        r = linearizable.check(h)
        self.assertIs(r["valid"], False)
        # The write of 0 and the two cas that both saw it.
        self.assertEqual(r["anomalies"][0]["ops"], 3)
        self.assertEqual(ops_of(r["minimal"]), sorted([
            (0, "write", "0", "invoke"), (0, "write", "0", "ok"),
            (1, "cas", "[0, 1]", "invoke"), (1, "cas", "[0, 1]", "ok"),
            (2, "cas", "[0, 2]", "invoke"), (2, "cas", "[0, 2]", "ok")]))
        # Concurrent, they are still not both possible: only one can see 0.
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "cas", "x", [0, 1], "ok", [0, 1], 20, 50),
            (2, "cas", "x", [0, 2], "ok", [0, 2], 25, 45),
        ])
        self.assertIs(linearizable.check(h)["valid"], False)

    def test_info_ops_may_apply_late_or_never(self):
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "write", "x", 5, "info", 5, 20, 30),  # timed out
            (2, "read", "x", None, "ok", 0, 40, 50),  # not applied yet ...
            (3, "read", "x", None, "ok", 5, 60, 70),  # ... applied long after its timeout
        ])
        self.assertIs(linearizable.check(h)["valid"], True)
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "write", "x", 5, "info", 5, 20, 30),
            (2, "read", "x", None, "ok", 0, 40, 50),  # never applied: fine too
        ])
        self.assertIs(linearizable.check(h)["valid"], True)
        h = history([
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "write", "x", 5, None, None, 20, None),  # never completed = info
            (3, "read", "x", None, "ok", 5, 60, 70),
            (2, "read", "x", None, "ok", 0, 80, 90),  # but it cannot un-apply
        ])
        self.assertIs(linearizable.check(h)["valid"], False)
        h = history([  # a fail write never applies
            (0, "write", "x", 0, "ok", 0, 0, 10),
            (1, "write", "x", 5, "fail", 5, 20, 30),
            (3, "read", "x", None, "ok", 5, 60, 70),
        ])
        self.assertIs(linearizable.check(h)["valid"], False)

    def test_search_bound_gives_unknown(self):
        h = simulate.register_history(400, keys=1, concurrency=10, seed=3)
        r = linearizable.check(h, max_configs=5)
        self.assertEqual(r["valid"], "unknown")
        self.assertIn("search bound", r["reason"])

    def test_generated_10k_history_is_valid(self):
        h = simulate.register_history(10_000, keys=10, concurrency=10, info_rate=0.01, seed=7)
        infos = sum(1 for e in h if e["type"] == "info")
        self.assertGreater(infos, 0)
        t0 = time.monotonic()
        r = linearizable.check(h)
        dt = time.monotonic() - t0
        print("\nlinearizable: 10,000 ops (%d info) over 10 keys, concurrency 10: %s in %.2f s"
              % (infos, r["valid"], dt))
        self.assertIs(r["valid"], True, r.get("summary"))
        self.assertEqual(r["keys"], 10)

    def test_generated_history_with_one_corrupted_read_is_caught(self):
        h = simulate.register_history(3000, keys=5, concurrency=10, seed=11)
        target = next(e for e in h[1500:] if e["type"] == "ok" and e["f"] == "read"
                      and e["value"] is not None)
        target["value"] = 1000  # a value nobody wrote
        r = linearizable.check(h)
        self.assertIs(r["valid"], False)
        self.assertIn(target["index"], r["failing_ops"])
        self.assertEqual(r["anomalies"][0]["key"], target["key"])


def txn(p, t0, t1, typ, mops):
    inv = [[m[0], m[1], None if m[0] == "r" else m[2]] for m in mops]
    return (p, "txn", None, inv, typ, mops if typ == "ok" else inv, t0, t1)


class Serializable(unittest.TestCase):
    def types(self, ops):
        return serializable.check(history(ops))["anomaly_types"]

    def test_valid_history(self):
        r = serializable.check(history([
            txn(0, 0, 10, "ok", [["append", "x", 1]]),
            txn(1, 5, 30, "ok", [["r", "x", []]]),  # concurrent with the append: fine
            txn(2, 40, 50, "ok", [["r", "x", [1]], ["append", "x", 2], ["r", "x", [1, 2]]]),
            txn(3, 41, 51, "fail", [["append", "y", 1]]),
            txn(4, 60, 70, "ok", [["r", "y", []], ["r", "x", [1, 2]]]),
        ]))
        self.assertIs(r["valid"], True, r)

    def test_g_single_read_skew(self):
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1], ["append", "y", 1]]),
            txn(1, 1, 11, "ok", [["r", "x", [1]], ["r", "y", []]]),
            txn(2, 20, 30, "ok", [["r", "y", [1]]]),
        ]), ["G-single"])

    def test_g2_write_skew(self):
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["r", "x", []], ["append", "y", 1]]),
            txn(1, 1, 11, "ok", [["r", "y", []], ["append", "x", 1]]),
            txn(2, 20, 30, "ok", [["r", "x", [1]], ["r", "y", [1]]]),
        ]), ["G2"])

    def test_g0_write_cycle(self):
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1], ["append", "y", 1]]),
            txn(1, 1, 11, "ok", [["append", "x", 2], ["append", "y", 2]]),
            txn(2, 20, 30, "ok", [["r", "x", [1, 2]], ["r", "y", [2, 1]]]),
        ]), ["G0"])

    def test_g1c_circular_information_flow(self):
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1], ["r", "y", [1]]]),
            txn(1, 1, 11, "ok", [["append", "y", 1], ["r", "x", [1]]]),
        ]), ["G1c"])

    def test_stale_read_is_realtime_anomaly(self):
        r = serializable.check(history([
            txn(0, 0, 10, "ok", [["append", "x", 1]]),
            txn(1, 20, 30, "ok", [["r", "x", []]]),  # invoked after the append completed
            txn(2, 40, 50, "ok", [["r", "x", [1]]]),
        ]))
        self.assertEqual(r["anomaly_types"], ["G-single-realtime"])
        self.assertIs(r["valid"], False)
        cyc = r["anomalies"][0]["cycle"]
        self.assertEqual(sorted(c["edge"] for c in cyc), ["realtime", "rw"])

    def test_g1a_g1b_and_order_anomalies(self):
        self.assertEqual(self.types([
            txn(0, 0, 10, "fail", [["append", "x", 1]]),
            txn(1, 20, 30, "ok", [["r", "x", [1]]]),
        ]), ["G1a"])
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1], ["append", "x", 2]]),
            txn(1, 5, 30, "ok", [["r", "x", [1]]]),
        ]), ["G1b"])
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1]]),
            txn(3, 0, 10, "ok", [["append", "x", 2]]),
            txn(1, 20, 30, "ok", [["r", "x", [1, 2]]]),
            txn(2, 20, 30, "ok", [["r", "x", [2, 1]]]),
        ]), ["incompatible-order"])
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1]]),
            txn(1, 20, 30, "ok", [["r", "x", [1, 1]]]),
        ]), ["duplicate-elements"])
        self.assertEqual(self.types([
            txn(1, 20, 30, "ok", [["r", "x", [9]]]),
        ]), ["garbage-read"])
        self.assertIn("lost-append", self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1]]),
            txn(3, 0, 10, "ok", [["append", "x", 2]]),
            txn(1, 20, 30, "ok", [["r", "x", [2]]]),
        ]))
        self.assertEqual(self.types([
            txn(0, 0, 10, "ok", [["append", "x", 1], ["r", "x", []]]),
        ]), ["internal"])

    def test_info_txn_counts_once_observed(self):
        r = serializable.check(history([
            txn(0, 0, 10, "info", [["append", "x", 1]]),
            txn(1, 20, 30, "ok", [["r", "x", [1]]]),
            txn(2, 40, 50, "ok", [["r", "x", [1]]]),
        ]))
        self.assertIs(r["valid"], True, r)
        self.assertEqual(r["committed"], 3)

    def test_generated_histories(self):
        h = simulate.append_history(2000, keys=6, concurrency=10, seed=5)
        t0 = time.monotonic()
        r = serializable.check(h)
        print("\nserializable: 2,000 txns: %s in %.2f s" % (r["valid"], time.monotonic() - t0))
        self.assertIs(r["valid"], True, r.get("summary"))
        # Drop the last element of one late read: a stale read (real-time) or worse.
        ev = next(e for e in reversed(h) if e["type"] == "ok" and
                  any(m[0] == "r" and len(m[2]) > 2 for m in e["value"]))
        m = next(m for m in ev["value"] if m[0] == "r" and len(m[2]) > 2)
        m[2] = m[2][:-1]
        r = serializable.check(h)
        self.assertIs(r["valid"], False)
        self.assertIn(ev["index"], r["failing_ops"])


class SetChecker(unittest.TestCase):
    def test_valid_and_invalid(self):
        base = [
            (0, "add", None, 1, "ok", 1, 0, 10),
            (1, "add", None, 2, "info", 2, 0, 10),
            (2, "add", None, 3, "fail", 3, 0, 10),
            (3, "add", None, 4, "ok", 4, 0, 10),
        ]
        r = set_checker.check(history(base + [(9, "read", None, None, "ok", [1, 2, 4], 20, 30)]))
        self.assertIs(r["valid"], True, r)
        self.assertEqual(r["recovered_count"], 1)
        r = set_checker.check(history(base + [(9, "read", None, None, "ok", [1, 5], 20, 30)]))
        self.assertIs(r["valid"], False)
        self.assertEqual(r["lost_count"], 1)  # 4
        self.assertEqual(r["unexpected_count"], 1)  # 5
        r = set_checker.check(history(base + [(9, "read", None, None, "ok", [1, 3, 4], 20, 30)]))
        self.assertEqual(r["failed_present_count"], 1)
        self.assertIs(r["valid"], False)
        self.assertEqual(set_checker.check(history(base))["valid"], "unknown")

    def test_nothing_to_check_is_unknown(self):
        # A run where every op failed must not pass as valid.
        h = history([(0, "acquire", "L", None, "fail", None, 0, 10),
                     (1, "read", "x", None, "fail", None, 0, 10),
                     (2, "txn", None, [["r", "x", None]], "fail", None, 0, 10)])
        for mod in (lock_checker, linearizable, serializable, election_checker, lease_checker,
                    set_checker):
            self.assertEqual(mod.check(h)["valid"], "unknown", mod.__name__)


def acq(p, tok, t0, t1, typ="ok"):
    return (p, "acquire", "L", None, typ, {"token": tok} if typ == "ok" else None, t0, t1)


def wr(p, tok, seq, t0, t1, typ="ok", res="accepted"):
    v = {"token": tok, "seq": seq}
    return (p, "write", "L", v, typ, v, t0, t1, {"resource": res})


def rel(p, tok, t0, t1, typ="ok"):
    return (p, "release", "L", {"token": tok}, typ, {"token": tok}, t0, t1)


class LockChecker(unittest.TestCase):
    def test_valid_fenced(self):
        h = history([acq(0, 5, 0, 10), wr(0, 5, 1, 11, 15), rel(0, 5, 16, 20),
                     acq(1, 7, 5, 25), wr(1, 7, 1, 26, 30), rel(1, 7, 31, 35)])
        r = lock_checker.check(h)
        self.assertIs(r["valid"], True, r)

    def test_stale_fenced_write_accepted(self):
        # p0 holds 5, pauses; p1 acquires 7; p0's write with 5 is accepted afterwards.
        h = history([acq(0, 5, 0, 10), acq(1, 7, 5, 50), wr(1, 7, 1, 51, 55),
                     wr(0, 5, 1, 60, 65, res="rejected")])
        r = lock_checker.check(h)
        self.assertIs(r["valid"], False)
        self.assertEqual(sorted(r["anomaly_counts"]), ["stale-write", "write-order"])
        self.assertEqual(r["overlaps"], 1)
        # Refused by latch (fail): valid, the overlap is only counted.
        h = history([acq(0, 5, 0, 10), acq(1, 7, 5, 50), wr(1, 7, 1, 51, 55),
                     wr(0, 5, 1, 60, 65, typ="fail", res="rejected")])
        r = lock_checker.check(h)
        self.assertIs(r["valid"], True, r)
        self.assertEqual(r["overlaps"], 1)

    def test_resource_log_order(self):
        h = history([acq(0, 5, 0, 10), rel(0, 5, 11, 12)])
        log = [{"token": 5, "accepted": True}, {"token": 7, "accepted": True},
               {"token": 5, "accepted": True}]
        r = lock_checker.check(h, resource_log=log)
        self.assertEqual(list(r["anomaly_counts"]), ["resource-order"])
        log[2]["accepted"] = False
        self.assertIs(lock_checker.check(h, resource_log=log)["valid"], True)

    def test_token_order_and_duplicates(self):
        h = history([acq(0, 7, 0, 10), rel(0, 7, 11, 12), acq(1, 6, 20, 30)])
        self.assertEqual(list(lock_checker.check(h)["anomaly_counts"]), ["token-order"])
        h = history([acq(0, 7, 0, 10), rel(0, 7, 11, 12), acq(1, 7, 5, 30)])
        self.assertIn("duplicate-token", lock_checker.check(h)["anomaly_counts"])

    def test_unfenced_overlap_is_mutual_exclusion_violation(self):
        h = history([acq(0, 5, 0, 10), acq(1, 7, 5, 50), wr(1, 7, 1, 51, 55),
                     wr(0, 5, 1, 60, 65), rel(0, 5, 66, 70), rel(1, 7, 71, 75)])
        r = lock_checker.check(h, fenced=False)
        self.assertIs(r["valid"], False)
        self.assertEqual(list(r["anomaly_counts"]), ["mutual-exclusion"])
        h = history([acq(0, 5, 0, 10), wr(0, 5, 1, 11, 15), rel(0, 5, 16, 20),
                     acq(1, 7, 21, 25), rel(1, 7, 31, 35)])
        self.assertIs(lock_checker.check(h, fenced=False)["valid"], True)


def wwrite(p, key, v, rev, t0, t1, typ="ok"):
    return (p, "write", key, v, typ, v, t0, t1, {"revision": rev} if typ == "ok" else {})


def watch(p, events, t0=100, t1=200, **extra):
    return (p, "watch", None, None, "ok", {"events": events}, t0, t1, extra)


class WatchChecker(unittest.TestCase):
    writes = [wwrite(0, "a", 1, 2, 0, 5), wwrite(1, "b", 2, 3, 6, 9), wwrite(0, "a", 3, 4, 10, 15),
              wwrite(1, "b", 4, 5, 16, 20)]
    all_events = [[2, "a", 1], [3, "b", 2], [4, "a", 3], [5, "b", 4]]

    def test_valid(self):
        h = history(self.writes + [
            watch(5, self.all_events, start_revision=2),
            watch(6, [[2, "a", 1], [4, "a", 3]], range=["a", None], start_revision=1),
            watch(7, self.all_events[1:], start_revision=3)])
        r = watch_checker.check(h)
        self.assertIs(r["valid"], True, r)

    def test_duplicate_skip_order_mismatch(self):
        ev = self.all_events
        h = history(self.writes + [watch(5, ev[:2] + ev[1:])])
        self.assertIn("duplicate", watch_checker.check(h)["anomaly_counts"])
        h = history(self.writes + [watch(5, ev[:1] + ev[2:], start_revision=2),
                                   watch(6, ev, start_revision=2)])
        r = watch_checker.check(h)
        self.assertEqual(sorted(r["anomaly_counts"]), ["disagreement", "gap"])
        h = history(self.writes + [watch(5, [ev[1], ev[0], ev[2]])])
        self.assertIn("out-of-order", watch_checker.check(h)["anomaly_counts"])
        h = history(self.writes + [watch(5, [[2, "a", 9]])])
        self.assertEqual(sorted(watch_checker.check(h)["anomaly_counts"]),
                         ["mismatch", "unexpected"])


    def test_workload_format_range_pair_and_compaction(self):
        # The watch workload's op: key [first, end) with a numeric suffix ("k10" is after
        # "k9"), start_revision, and a compaction it resumed after.
        writes = [wwrite(0, "k%d" % (r - 2), r, r, 10 * r, 10 * r + 5) for r in range(2, 14)]
        evs = [[r, "k%d" % (r - 2), r] for r in range(2, 14)]
        mine = [e for e in evs if 3 <= int(e[1][1:]) < 10]
        h = history(writes + [(5, "watch", ["k3", "k10"], None, "ok", {"events": mine}, 10, 200,
                               {"start_revision": 2})])
        self.assertIs(watch_checker.check(h)["valid"], True)
        h = history(writes + [(5, "watch", ["k3", "k10"], None, "ok", {"events": mine[3:]}, 10,
                               200, {"start_revision": 2})])
        self.assertEqual(list(watch_checker.check(h)["anomaly_counts"]), ["gap"])
        h = history(writes + [(5, "watch", ["k3", "k10"], None, "ok", {"events": mine[3:]}, 10,
                               200, {"start_revision": 2, "compacted": [8]})])
        self.assertIs(watch_checker.check(h)["valid"], True)


class LeaseChecker(unittest.TestCase):
    def create(self, p, key, ttl, sid, t0, t1):
        return (p, "create", key, {"key": key, "ttl": ttl}, "ok", {"session": sid}, t0, t1)

    def read(self, p, key, exists, t0, t1):
        return (p, "read", key, None, "ok", {"exists": exists}, t0, t1)

    def test_valid_and_early(self):
        # TTL 2 s: gone observed at 2.5 s after creation: fine; at 1 s: early.
        h = history([self.create(0, "e", 2, 11, 0, 10), self.read(1, "e", True, 20, 30),
                     self.read(1, "e", False, 2500, 2510)])
        self.assertIs(lease_checker.check(h)["valid"], True)
        h = history([self.create(0, "e", 2, 11, 0, 10), self.read(1, "e", False, 900, 1000)])
        r = lease_checker.check(h)
        self.assertEqual(list(r["anomaly_counts"]), ["early-expiry"])
        # A renewal at 1.5 s pushes the earliest expiry to 3.5 s.
        h = history([self.create(0, "e", 2, 11, 0, 10),
                     (0, "renew", None, {"session": 11}, "ok", {"session": 11}, 1500, 1510),
                     self.read(1, "e", False, 3000, 3010)])
        self.assertEqual(list(lease_checker.check(h)["anomaly_counts"]), ["early-expiry"])
        # A deliberate close makes any gone fine.
        h = history([self.create(0, "e", 2, 11, 0, 10),
                     (0, "close", None, {"session": 11}, "ok", {"session": 11}, 100, 110),
                     self.read(1, "e", False, 200, 210)])
        self.assertIs(lease_checker.check(h)["valid"], True)

    def test_late_expiry(self):
        h = history([self.create(0, "e", 1, 11, 0, 10),
                     (0, "abandon", None, {"session": 11}, "ok", None, 20, 20),
                     self.read(1, "e", True, 30000, 30010)])
        r = lease_checker.check(h, slack_s=5)
        self.assertEqual(list(r["anomaly_counts"]), ["late-expiry"])
        h = history([self.create(0, "e", 1, 11, 0, 10), self.read(1, "e", True, 30000, 30010)])
        self.assertIs(lease_checker.check(h)["valid"], True)  # renewals unknown: no bound

    def test_workload_format_expire_observed(self):
        ren = (0, "renew", None, {"session": 11}, "ok", {"ttl": 2}, 1000, 1010)
        gone = (0, "expire-observed", None, {"key": "e", "session": 11}, "ok",
                {"exists": False}, 1020, 3200)
        h = history([self.create(0, "e", 2, 11, 0, 10), ren, gone])
        self.assertIs(lease_checker.check(h)["valid"], True)
        early = gone[:6] + (1020, 2500)  # gone 1.5 s after a renewal of a 2 s session
        h = history([self.create(0, "e", 2, 11, 0, 10), ren, early])
        self.assertEqual(list(lease_checker.check(h)["anomaly_counts"]), ["early-expiry"])
        stuck = gone[:5] + ({"exists": True}, 1020, 40000)  # still there 39 s later
        h = history([self.create(0, "e", 2, 11, 0, 10), ren, stuck])
        self.assertEqual(list(lease_checker.check(h)["anomaly_counts"]), ["late-expiry"])
        expired = (0, "renew", None, {"session": 11}, "fail", None, 1500, 1510,
                   {"error": "session expired"})
        h = history([self.create(0, "e", 2, 11, 0, 10), ren, expired])
        self.assertEqual(list(lease_checker.check(h)["anomaly_counts"]), ["early-expiry"])


def camp(p, tok, t0, t1):
    return (p, "campaign", None, "v%d" % p, "ok", {"token": tok}, t0, t1)


class ElectionChecker(unittest.TestCase):
    def test_valid(self):
        h = history([camp(0, 10, 0, 10), (0, "proclaim", None, {"token": 10, "value": "x"},
                                          "ok", None, 11, 12),
                     camp(1, 20, 5, 30),
                     (2, "observe", None, None, "ok", {"leaders": [[10, 10, "v0"], [11, 10, "x"],
                                                                   [20, 20, "v1"]]}, 40, 50),
                     (3, "observe", None, None, "ok", {"leaders": [[11, 10, "x"]]}, 40, 50)])
        r = election_checker.check(h)
        self.assertIs(r["valid"], True, r)

    def test_invalid(self):
        h = history([camp(0, 10, 0, 10), camp(1, 20, 5, 30),
                     (0, "proclaim", None, {"token": 10, "value": "x"}, "ok", None, 40, 45)])
        self.assertEqual(list(election_checker.check(h)["anomaly_counts"]), ["stale-proclaim"])
        h = history([camp(0, 10, 0, 10), camp(1, 10, 5, 30)])
        self.assertIn("duplicate-leader", election_checker.check(h)["anomaly_counts"])
        h = history([(2, "observe", None, None, "ok", {"leaders": [[10, 10, "a"], [20, 20, "b"],
                                                                  [21, 10, "c"]]}, 40, 50),
                     (3, "observe", None, None, "ok", {"leaders": [[10, 10, "a"], [20, 20, "b"]]},
                      40, 50)])
        r = election_checker.check(h)
        self.assertEqual(list(r["anomaly_counts"]), ["observe-stale"])
        h = history([(2, "observe", None, None, "ok", {"leaders": [[10, 10, "a"], [20, 20, "b"]]},
                      40, 50),
                     (3, "observe", None, None, "ok", {"leaders": [[10, 10, "a"], [21, 21, "c"]]},
                      40, 50)])
        self.assertEqual(list(election_checker.check(h)["anomaly_counts"]),
                         ["observe-disagreement"])


    def test_no_leader_entries_and_reconnects(self):
        a = {"leaders": [[10, 10, "a"], [15, 0, ""], [20, 20, "b"], [30, 30, "c"]]}
        b = {"leaders": [[10, 10, "a"], [20, 20, "b"], [20, 20, "b"], [30, 30, "c"]]}
        h = history([(2, "observe", None, None, "ok", a, 40, 50),
                     (3, "observe", None, None, "ok", b, 40, 50, {"reconnects": [2]})])
        self.assertIs(election_checker.check(h)["valid"], True)
        b = {"leaders": [[10, 10, "a"], [20, 20, "z"]]}
        h = history([(2, "observe", None, None, "ok", a, 40, 50),
                     (3, "observe", None, None, "ok", b, 40, 50, {"reconnects": [1]})])
        self.assertEqual(list(election_checker.check(h)["anomaly_counts"]),
                         ["observe-disagreement"])


class Stats(unittest.TestCase):
    def test_counts(self):
        h = history([(0, "read", "x", None, "ok", 1, 0, 1), (1, "write", "x", 1, "info", 1, 0, 2),
                     (2, "write", "x", 2, None, None, 0, None)])
        h.append({"index": len(h), "time": 5, "process": "nemesis", "type": "info",
                  "f": "start-partition", "value": None})
        r = stats.check(h)
        self.assertEqual((r["ok"], r["info"], r["fail"]), (1, 2, 0))
        self.assertEqual(r["by_f"]["write"]["info"], 2)
        self.assertEqual(r["nemesis_events"], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
