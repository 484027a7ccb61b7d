#!/usr/bin/python3
"""Raft log compaction and catch-up by snapshot, with three real latchd members and etcdctl.

Usage: test_latchd_snapshot.py LATCHD

Three members on free loopback ports, a snapshot every 50 applied entries
(LATCH_SNAPSHOT_COUNT=50, the environment form of --snapshot-count) and 20 entries kept
behind each snapshot (LATCH_SNAPSHOT_CATCHUP_ENTRIES, latchd's test knob). One follower is
SIGKILLed; 1000 keys are written through the others (20 txns of 50 puts, then 150 single
puts), and the keyspace is compacted. The leader's log must have been compacted past the
follower's last entry (/metrics latch_raft_first_index, and its log line). The follower is
restarted: it must catch up by snapshot (its log says it installed one, its
latch_raft_snapshots_installed_total counts it, the leader's log says the stream was
delivered), serve every key with a serializable get at the leader's revision, refuse a
read below the compaction point as compacted, and keep up with new writes by normal
replication. All members exit 0 on SIGTERM; no sanitizer report in any log.

Every wait polls a condition against a deadline; only outcomes are asserted, never how long
something took. Only the processes this script started are signalled (by PID).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (ETCDCTL, check, cluster, etcdctl, failures, get_json,  # noqa: E402
                       http_get, kvs_of, leader_from_logs, sanitizer_check, wait_until)

SNAPSHOT_COUNT = 50
CATCHUP = 20
TXNS = 20
PER_TXN = 50
SINGLES = 150
CATCH_UP_TIMEOUT = 90  # s for the restarted follower to reach the leader's revision


def metric(member, name):
    """The value of an unlabelled metric on member's /metrics, or None."""
    status, body = http_get(member.admin + "/metrics", timeout=5)
    if status != 200:
        return None
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def revision(member, serializable=True):
    args = ["--consistency=s"] if serializable else []
    doc, _ = get_json(member.endpoint, "nokey", *args)
    return int(doc["header"]["revision"]) if doc else None


def write_keys(endpoints):
    """TXNS txns of PER_TXN puts, then SINGLES single puts; True when all succeeded."""
    for t in range(TXNS):
        ops = "".join('put k/%04d "v%d"\n' % (t * PER_TXN + i, t * PER_TXN + i)
                      for i in range(PER_TXN))
        r = etcdctl(endpoints, "txn", stdin="\n" + ops + "\n\n")
        if not check("txn %d of %d puts" % (t, PER_TXN), r.rc == 0 and "SUCCESS" in r.out, r):
            return False
    for i in range(SINGLES):
        k = TXNS * PER_TXN + i
        r = etcdctl(endpoints, "put", "k/%04d" % k, "v%d" % k)
        if r.rc != 0:
            check("single put %d" % k, False, r)
            return False
    check("%d single puts" % SINGLES, True)
    return True


class Watch:
    """A background `etcdctl watch ...` (own session, signalled by PID); output to a file."""

    def __init__(self, root, endpoint, name, *args):
        self.out = os.path.join(root, name + ".out")
        cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s", "watch"] + list(args)
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=dict(os.environ, ETCDCTL_API="3"))

    def text(self):
        try:
            with open(self.out, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def keys(self):
        """Keys of the PUT events printed so far, in order (etcdctl: PUT, key, value lines)."""
        lines = self.text().splitlines()
        return [lines[i + 1] for i in range(len(lines) - 1) if lines[i] == "PUT"]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def puts(endpoints, prefix, n):
    for i in range(n):
        r = etcdctl(endpoints, "put", "%s%03d" % (prefix, i), "v%d" % i)
        if r.rc != 0:
            return check("put %s%03d" % (prefix, i), False, r)
    return True


def puts_parallel(endpoint, prefix, n, width=8):
    """n puts (one Raft entry each), width etcdctl processes at a time."""
    env = dict(os.environ, ETCDCTL_API="3")
    for base in range(0, n, width):
        procs = [subprocess.Popen([ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s",
                                   "--command-timeout=10s", "put", "%s%04d" % (prefix, i), "x"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env)
                 for i in range(base, min(n, base + width))]
        codes = [p.wait(timeout=60) for p in procs]
        if any(c != 0 for c in codes):
            return check("parallel puts %s%04d.." % (prefix, base), False, codes)
    return True


def watchers_phase(root, leader, follower, members):
    """A stopped follower with two watchers catches up by snapshot: the watcher whose next
    revision was compacted meanwhile is canceled as compacted; the one that starts after the
    compaction point gets every event from there, in order, once."""
    cur = revision(leader, serializable=False)
    if not check("the follower is at the leader's revision before the pause",
                 wait_until(lambda: revision(follower) == cur, 30)):
        return
    w_old = Watch(root, follower.endpoint, "w-old", "p/", "--prefix", "--rev=%d" % (cur + 1))
    n = 120
    compact_at = cur + n // 2  # p/start at cur+1, then the p/ keys at cur+2 .. cur+n+1
    w_new = Watch(root, follower.endpoint, "w-new", "p/", "--prefix",
                  "--rev=%d" % (compact_at + 1))
    try:
        check("both watchers are registered on the follower",
              wait_until(lambda: metric(follower, "latch_watchers") == 2, 30),
              metric(follower, "latch_watchers"))
        r = etcdctl(leader.endpoint, "put", "p/start", "s")
        check("a first watched write", r.rc == 0, r)
        check("the live watcher sees it", wait_until(lambda: w_old.keys() == ["p/start"], 30),
              w_old.text())
        behind = metric(follower, "latch_raft_index")
        installed = metric(follower, "latch_raft_snapshots_installed_total") or 0
        os.kill(follower.proc.pid, signal.SIGSTOP)
        try:
            if not puts([leader.endpoint], "p/", n):
                return
            r = etcdctl(leader.endpoint, "compact", str(compact_at))
            check("compaction at %d while the follower is stopped" % compact_at, r.rc == 0, r)
            # More entries than the leader keeps in flight to the stopped follower (256
            # appends, which its socket buffers take), so that it must catch up by snapshot;
            # the snapshots are made after the compaction.
            if not puts_parallel(leader.endpoint, "q/", 400):
                return
            check("the leader's log was compacted past the stopped follower", wait_until(
                lambda: (metric(leader, "latch_raft_first_index") or 0) > behind + 1, 30))
        finally:
            os.kill(follower.proc.pid, signal.SIGCONT)
        rev = revision(leader, serializable=False)
        check("the resumed follower catches up", wait_until(
            lambda: revision(follower) == rev, CATCH_UP_TIMEOUT, interval=0.5),
            "%s vs %s\n%s" % (revision(follower), rev, follower.tail()))
        check("by another snapshot", wait_until(
              lambda: (metric(follower, "latch_raft_snapshots_installed_total") or 0) > installed,
              30),
              "installed %s before, %s after\n%s" % (
                  installed, metric(follower, "latch_raft_snapshots_installed_total"),
                  follower.tail(40)))

        doc, _ = get_json(leader.endpoint, "p/", "--prefix")
        after = [kv for kv in (doc or {}).get("kvs", [])
                 if int(kv["mod_revision"]) > compact_at]
        want = sorted((int(kv["mod_revision"]), kvs_of({"kvs": [kv]}).popitem()[0])
                      for kv in after)
        want = [k for _, k in want]
        got = wait_until(lambda: len(w_new.keys()) >= len(want), 30)
        r = etcdctl(leader.endpoint, "put", "p/end", "e")
        got = wait_until(lambda: w_new.keys()[-1:] == ["p/end"], 30)
        check("the watcher from after the compaction point gets every event once, in order",
              got and w_new.keys() == want + ["p/end"] and len(want) == n - n // 2 + 1,
              "want %d keys %s...\ngot %d keys %s..." % (len(want), want[:3], len(w_new.keys()),
                                                       w_new.keys()[:3]))
        # The watcher from before the compaction point: what it gets depends on how the
        # follower caught up. Entries still buffered for it (the p/ puts and the compaction)
        # are applied with the watchers reading each batch before a compaction drops its
        # history (as etcd's synced watchers do), so it may get every event; a snapshot that
        # covers events it has not read cancels it as compacted. Never a gap, a repeat or a
        # silent stop: its events are a prefix of every p/ write in order, and it either has
        # them all or ends canceled as compacted.
        doc, _ = get_json(leader.endpoint, "p/", "--prefix")  # p/start, the p/ puts, p/end
        every = [k for _, k in sorted((int(kv["mod_revision"]), kvs_of({"kvs": [kv]}).popitem()[0])
                                      for kv in (doc or {}).get("kvs", []))]
        wait_until(lambda: w_old.proc.poll() is not None or w_old.keys()[-1:] == ["p/end"], 30)
        old_keys = w_old.keys()
        canceled = (w_old.proc.poll() is not None and w_old.proc.returncode == 5 and
                    "required revision has been compacted" in w_old.text())
        check("the watcher from before the compaction point: a prefix of every event in order, "
              "then all of them or canceled as compacted",
              len(every) == n + 2 and old_keys == every[:len(old_keys)] and
              (canceled or old_keys == every),
              "exit %s, %d of %d keys: %s" % (w_old.proc.poll(), len(old_keys), len(every),
                                              w_old.text()[-1500:]))
    finally:
        w_old.stop()
        w_new.stop()


def run(latchd, root):
    os.environ["LATCH_SNAPSHOT_COUNT"] = str(SNAPSHOT_COUNT)
    os.environ["LATCH_SNAPSHOT_CATCHUP_ENTRIES"] = str(CATCHUP)
    members, healthy = cluster(latchd, root, 3, prefix="s")
    try:
        if not check("three members start and elect a leader", healthy,
                     "\n".join(m.tail() for m in members)):
            return
        leader, _ = wait_until(lambda: leader_from_logs(members)[0] is not None and
                               leader_from_logs(members), 30) or (None, 0)
        if not check("the leader is known", leader is not None):
            return
        follower = [m for m in members if m is not leader][0]
        others = [m for m in members if m is not follower]
        r = etcdctl(leader.endpoint, "put", "first", "1")
        check("a first write", r.rc == 0, r)
        first_rev = revision(leader, serializable=False)
        check("the follower has the first write", wait_until(
            lambda: revision(follower) == first_rev, 30))
        behind = metric(follower, "latch_raft_index")
        check("the follower reports its last index", behind is not None and behind > 0)

        follower.kill()
        check("the follower is SIGKILLed", not follower.alive())
        if not write_keys([m.endpoint for m in others]):
            return
        rev = revision(leader, serializable=False)
        r = etcdctl(leader.endpoint, "compact", str(rev - 100))
        check("compaction at revision %d" % (rev - 100), r.rc == 0, r)
        r = etcdctl(leader.endpoint, "put", "k/last", "end")
        check("a write after the compaction", r.rc == 0, r)
        rev = revision(leader, serializable=False)

        first = wait_until(lambda: (metric(leader, "latch_raft_first_index") or 0) > behind + 1,
                           30)
        check("the leader's log was compacted past the follower's last entry",
              first, "first index %s, follower's last %s" % (
                  metric(leader, "latch_raft_first_index"), behind))
        check("the leader made snapshots",
              (metric(leader, "latch_raft_snapshots_created_total") or 0) >= 2 and
              (metric(leader, "latch_raft_snapshot_index") or 0) > behind)
        check("the leader's log says it compacted",
              re.search(r"snapshot at index \d+ \(term \d+\); log compacted to first index "
                        r"(\d+)", leader.log_text()) is not None, leader.tail())

        follower.start()
        check("the follower restarts", follower.wait_healthy(), follower.tail())
        caught = wait_until(lambda: revision(follower) == rev, CATCH_UP_TIMEOUT, interval=0.5)
        check("the follower reaches the leader's revision %d" % rev, caught,
              "follower at %s\n%s" % (revision(follower), follower.tail()))
        # (the new state is readable a moment before the node has counted the install)
        check("the follower installed a snapshot (log)", wait_until(
            lambda: "installed snapshot" in follower.log_text(), 30), follower.tail(60))
        check("the follower installed a snapshot (metric)", wait_until(
            lambda: (metric(follower, "latch_raft_snapshots_installed_total") or 0) >= 1, 30))
        check("the leader streamed it",
              re.search(r"snapshot \d+/\d+ \(\d+ bytes\) to peer \d+: delivered",
                        leader.log_text()) is not None, leader.tail(60))

        doc, r = get_json(follower.endpoint, "k/", "--prefix", "--consistency=s")
        got = kvs_of(doc)
        want = {"k/%04d" % i: "v%d" % i for i in range(TXNS * PER_TXN + SINGLES)}
        want["k/last"] = "end"
        missing = sorted(set(want) - set(got))[:5]
        wrong = sorted(k for k in want if k in got and got[k] != want[k])[:5]
        check("every key is readable on the follower (serializable)",
              doc is not None and not missing and not wrong and len(got) == len(want),
              "missing %s, wrong %s, %s keys\n%s" % (missing, wrong, len(got), r))
        check("the follower answers at the leader's revision",
              doc is not None and int(doc["header"]["revision"]) == rev)
        r = etcdctl(follower.endpoint, "get", "first", "--rev=2", "--consistency=s")
        check("a read below the compaction point is refused as compacted on the follower",
              r.rc != 0 and "compacted" in r.err, r)

        r = etcdctl(leader.endpoint, "put", "after", "snapshot")
        check("a write after the catch-up", r.rc == 0, r)
        r2 = etcdctl(follower.endpoint, "put", "via-follower", "x")
        check("a write through the caught-up follower", r2.rc == 0, r2)
        check("the follower keeps up by normal replication", wait_until(
            lambda: kvs_of(get_json(follower.endpoint, "after", "--consistency=s")[0])
            .get("after") == "snapshot", 30))
        rev2 = revision(leader, serializable=False)
        check("all members at the same revision", wait_until(
            lambda: all(revision(m) == rev2 for m in members), 30),
            [revision(m) for m in members])

        other = [m for m in members if m is not leader and m is not follower][0]
        watchers_phase(root, leader, other, members)
    finally:
        codes = [m.terminate() for m in members if m.alive()]
        check("every member exits 0 on SIGTERM", all(c == 0 for c in codes),
              "%s\n%s" % (codes, "\n".join(m.tail() for m in members)))
        for m in members:
            m.kill()
        sanitizer_check(members, "snapshot test")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = tempfile.mkdtemp(prefix="latch-snap-")
    try:
        run(os.path.abspath(sys.argv[1]), root)
    finally:
        if failures:
            print("logs kept in %s" % root, flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
