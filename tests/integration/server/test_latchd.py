#!/usr/bin/python3
"""latchd against the real etcdctl (Debian's etcd-client, API 3): real processes on loopback.

Usage: test_latchd.py LATCHD

1. One member: etcdctl put/get/del/txn/compaction with the flags an operator uses, the error
   strings etcdctl prints, serializable reads, the admin HTTP endpoints, and a restart on the
   same data dir (SIGTERM, exit 0, data intact).
2. Three members: 200 puts spread over the three client endpoints, every key read through
   every member; the leader (found in the logs) is killed with SIGKILL while a writer keeps
   putting; the survivors elect a new leader and hold every acknowledged key; the killed
   member restarts on its data dir and catches up; SIGTERM stops all three with status 0.

Tested elsewhere: partitions and kill -9 under several writers (test_latchd_faults.py),
Watch, Lease, membership, snapshots, Maintenance (their own test_latchd_*.py), TLS listeners
(test_latchd_tls.py). etcdctl 3.4 has no --count-only (etcd 3.5 added it): the count is
checked in the JSON of a ranged get instead.

Ports are found at run time (bind port 0), data dirs live in a temp dir, each latchd's
stderr goes to a file that must not contain a sanitizer report, every wait polls a condition
against a deadline, and only processes this script started are signalled (by PID).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (ETCDCTL, EXIT_TIMEOUT, Member,  # noqa: E402
                       check, cluster, etcdctl, failures, get_json, http_get, kvs_of,
                       leader_from_logs, sanitizer_check, wait_until)


# ---- 1. one member -------------------------------------------------------------------------


def single_member(latchd, root):
    m = Member(latchd, os.path.join(root, "single"), "default", None)
    os.makedirs(m.root)
    ep = m.endpoint
    try:
        m.start()
        if not check("single: latchd starts and /health is 200", m.wait_healthy(),
                     m.tail()):
            return

        r = etcdctl(ep, "put", "foo", "bar")
        check("single: put foo bar -> OK", r.rc == 0 and r.out == "OK\n", r)
        r = etcdctl(ep, "get", "foo")
        check("single: get foo -> foo/bar", r.rc == 0 and r.out == "foo\nbar\n", r)
        doc, r = get_json(ep, "foo")
        kv = (doc or {}).get("kvs", [{}])[0]
        check("single: get foo -w json: revision 2, create_revision 2, mod_revision 2, version 1",
              doc is not None and doc.get("header", {}).get("revision") == 2
              and kv.get("create_revision") == 2 and kv.get("mod_revision") == 2
              and kv.get("version") == 1 and kvs_of(doc) == {"foo": "bar"}, r)
        r = etcdctl(ep, "put", "foo", "baz", "--prev-kv")
        check("single: put foo baz --prev-kv prints the previous kv",
              r.rc == 0 and r.out == "OK\nfoo\nbar\n", r)
        for k, v in (("a", "1"), ("zed", "26")):
            r = etcdctl(ep, "put", k, v)
            check("single: put %s %s -> OK" % (k, v), r.rc == 0 and r.out == "OK\n", r)
        # revisions now: 2 foo=bar, 3 foo=baz, 4 a=1, 5 zed=26

        r = etcdctl(ep, "get", "--prefix", "")
        check("single: get --prefix \"\" lists every key in order",
              r.rc == 0 and r.out == "a\n1\nfoo\nbaz\nzed\n26\n", r)
        r = etcdctl(ep, "get", "--from-key", "b")
        check("single: get --from-key b", r.rc == 0 and r.out == "foo\nbaz\nzed\n26\n", r)
        r = etcdctl(ep, "get", "--prefix", "", "--limit", "1")
        check("single: get --prefix \"\" --limit 1", r.rc == 0 and r.out == "a\n1\n", r)
        doc, r = get_json(ep, "--prefix", "", "--limit", "1")
        check("single: get --limit 1 -w json: count 3, more true, one kv",
              doc is not None and doc.get("count") == 3 and doc.get("more") is True
              and len(doc.get("kvs", [])) == 1, r)
        r = etcdctl(ep, "get", "--prefix", "", "--keys-only")
        check("single: get --prefix \"\" --keys-only",
              r.rc == 0 and r.out == "a\n\nfoo\n\nzed\n\n", r)
        doc, r = get_json(ep, "--prefix", "", "--keys-only")
        check("single: get --keys-only -w json carries no values",
              doc is not None and len(doc.get("kvs", [])) == 3
              and all("value" not in kv for kv in doc["kvs"]), r)
        helptext = etcdctl(ep, "get", "--help").out
        if "--count-only" in helptext:
            doc, r = get_json(ep, "--prefix", "", "--count-only")
            check("single: get --prefix \"\" --count-only -w json: count 3, no kvs",
                  doc is not None and doc.get("count") == 3 and not doc.get("kvs"), r)
        else:
            doc, r = get_json(ep, "--prefix", "")
            check("single: count 3 in get --prefix \"\" -w json "
                  "(this etcdctl has no --count-only)",
                  doc is not None and doc.get("count") == 3, r)
        r = etcdctl(ep, "get", "foo", "--rev", "2")
        check("single: get foo --rev 2 -> old value bar", r.rc == 0 and r.out == "foo\nbar\n", r)
        r = etcdctl(ep, "get", "--prefix", "", "--order", "DESCEND", "--sort-by", "KEY")
        check("single: get --prefix \"\" --order DESCEND --sort-by KEY",
              r.rc == 0 and r.out == "zed\n26\nfoo\nbaz\na\n1\n", r)

        r = etcdctl(ep, "del", "foo")
        check("single: del foo -> 1", r.rc == 0 and r.out == "1\n", r)
        r = etcdctl(ep, "del", "foo")
        check("single: del foo again -> 0", r.rc == 0 and r.out == "0\n", r)
        r = etcdctl(ep, "get", "foo")
        check("single: get foo after del -> nothing", r.rc == 0 and r.out == "", r)

        txn = 'value("t") = "v1"\n\nput res yes\n\nput res no\n\n'
        r = etcdctl(ep, "put", "t", "v1")
        check("single: put t v1", r.rc == 0, r)
        r = etcdctl(ep, "txn", stdin=txn)
        check("single: txn with a true compare -> SUCCESS branch",
              r.rc == 0 and r.out.startswith("SUCCESS\n") and "OK" in r.out, r)
        r = etcdctl(ep, "get", "res", "--print-value-only")
        check("single: txn success branch wrote res=yes", r.rc == 0 and r.out == "yes\n", r)
        r = etcdctl(ep, "put", "t", "v2")
        check("single: put t v2", r.rc == 0, r)
        r = etcdctl(ep, "txn", stdin=txn)
        check("single: txn with a false compare -> FAILURE branch",
              r.rc == 0 and r.out.startswith("FAILURE\n") and "OK" in r.out, r)
        r = etcdctl(ep, "get", "res", "--print-value-only")
        check("single: txn failure branch wrote res=no", r.rc == 0 and r.out == "no\n", r)

        r = etcdctl(ep, "put", "", "v")
        check("single: put \"\" v fails: etcdserver: key is not provided",
              r.rc not in (0, "timeout") and "etcdserver: key is not provided" in r.err, r)
        r = etcdctl(ep, "get", "foo", "--rev", "999")
        check("single: get foo --rev 999 fails: future revision",
              r.rc not in (0, "timeout")
              and "etcdserver: mvcc: required revision is a future revision" in r.err, r)
        r = etcdctl(ep, "compaction", "3")
        check("single: compaction 3", r.rc == 0 and "compacted revision 3" in r.out, r)
        r = etcdctl(ep, "get", "foo", "--rev", "2")
        check("single: get foo --rev 2 after compaction fails: compacted",
              r.rc not in (0, "timeout") and "required revision has been compacted" in r.err, r)
        r = etcdctl(ep, "get", "t", "--consistency", "s")
        check("single: get t --consistency s -> v2", r.rc == 0 and r.out == "t\nv2\n", r)
        r = etcdctl(ep, "get", "--prefix", "", "--consistency", "s", "--keys-only")
        check("single: serializable range read",
              r.rc == 0 and r.out == "a\n\nres\n\nt\n\nzed\n\n", r)

        status, body = http_get(m.admin + "/health")
        try:
            hb = json.loads(body)
        except ValueError:
            hb = None
        check("single: GET /health -> 200 {\"health\":\"true\"}",
              status == 200 and isinstance(hb, dict) and hb.get("health") == "true",
              "status %s body %r" % (status, body))
        status, body = http_get(m.admin + "/version")
        try:
            vb = json.loads(body)
        except ValueError:
            vb = None
        check("single: GET /version -> 200 JSON with etcdserver and etcdcluster",
              status == 200 and isinstance(vb, dict) and "etcdserver" in vb
              and "etcdcluster" in vb, "status %s body %r" % (status, body))
        status, body = http_get(m.admin + "/metrics")
        check("single: GET /metrics -> 200 with latch_raft_term",
              status == 200 and re.search(r"^latch_raft_term \d+", body, re.M) is not None,
              "status %s body %r" % (status, body[:500]))

        # Maintenance and Cluster as etcdctl reads them.
        r = etcdctl(ep, "endpoint", "status", "-w", "json")
        try:
            st = json.loads(r.out)[0]["Status"] if r.rc == 0 else None
        except (ValueError, KeyError, IndexError):
            st = None
        check("single: endpoint status -w json: this member leads, raft index/term/applied set",
              st is not None and st["leader"] == st["header"]["member_id"]
              and st["raftIndex"] >= 1 and st["raftTerm"] >= 1
              and st["raftAppliedIndex"] >= 1 and st["dbSize"] > 0,
              "rc %s out %r err %r" % (r.rc, r.out, r.err))
        r = etcdctl(ep, "member", "list", "-w", "json")
        try:
            ml = json.loads(r.out)["members"] if r.rc == 0 else None
        except (ValueError, KeyError):
            ml = None
        check("single: member list: one member with its peer and client URLs",
              ml is not None and len(ml) == 1 and ml[0]["peerURLs"] == [m.peer_url]
              and ml[0]["clientURLs"] == ["http://" + m.endpoint],
              "rc %s out %r err %r" % (r.rc, r.out, r.err))
        r = etcdctl(ep, "endpoint", "health", "--cluster")
        check("single: endpoint health --cluster (dials the member's client URL)",
              r.rc == 0 and "is healthy" in (r.out + r.err),
              "rc %s out %r err %r" % (r.rc, r.out, r.err))
        r = etcdctl(ep, "auth", "enable")
        check("single: auth is not there yet: a clear error, non-zero exit", r.rc != 0,
              "rc %s out %r err %r" % (r.rc, r.out, r.err))

        # Restart on the same data dir.
        before, r0 = get_json(ep, "--prefix", "")
        code = m.terminate()
        check("single: SIGTERM -> exit status 0", code == 0, "exit %s\n%s" % (code, m.tail()))
        m.start()
        if not check("single: restarted on the same data dir, /health 200", m.wait_healthy(),
                     m.tail()):
            return
        after, r = get_json(ep, "--prefix", "")
        check("single: after restart: same revision and key-values",
              before is not None and after is not None
              and after.get("header", {}).get("revision")
              == before.get("header", {}).get("revision")
              and after.get("kvs") == before.get("kvs"),
              "before: %s\nafter: %s" % (r0, r))
        r = etcdctl(ep, "get", "t")
        check("single: after restart: get t -> v2", r.rc == 0 and r.out == "t\nv2\n", r)
        r = etcdctl(ep, "get", "foo", "--rev", "2")
        check("single: after restart: revision 2 is still compacted",
              r.rc not in (0, "timeout") and "required revision has been compacted" in r.err, r)
        r = etcdctl(ep, "put", "after", "restart")
        check("single: after restart: put works", r.rc == 0 and r.out == "OK\n", r)
        code = m.terminate()
        check("single: SIGTERM after restart -> exit status 0", code == 0,
              "exit %s\n%s" % (code, m.tail()))
    finally:
        m.kill()
        sanitizer_check([m], "single")


# ---- 2. three members ----------------------------------------------------------------------

class Writer(threading.Thread):
    """Puts w/<n> = v<n> until stopped, each through one etcdctl given all endpoints (its
    balancer skips an unreachable one), first endpoint rotating; records acknowledged ones."""

    def __init__(self, endpoints):
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked = []  # (key, value), in order of acknowledgement
        self.errors = []  # Results of failed puts
        self.attempts = 0

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            key, value = "w/%06d" % n, "v%d" % n
            k = n % len(self.endpoints)
            r = etcdctl(self.endpoints[k:] + self.endpoints[:k], "put", key, value, timeout=20,
                        command_timeout=5)
            with self.lock:
                self.attempts += 1
                if r.rc == 0 and r.out == "OK\n":
                    self.acked.append((key, value))
                else:
                    self.errors.append(r)
            n += 1

    def acked_count(self):
        with self.lock:
            return len(self.acked)


def three_members(latchd, root):
    members, all_ok = cluster(latchd, os.path.join(root, "three"), 3)
    writer = None
    try:
        if not check("three: all three members healthy (/health 200 on each)", all_ok,
                     "\n".join(m.tail() for m in members)):
            return
        ids = [m.id for m in members]
        if not check("three: each latchd logs its member id", all(ids) and len(set(ids)) == 3,
                     "ids %s" % ids):
            return

        # 200 puts over the three endpoints, then every key through every member.
        keys = ["k/%03d" % i for i in range(200)]

        def put(i):
            return etcdctl(members[i % 3].endpoint, "put", keys[i], "val-%d" % i)

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(put, range(200)))
        bad = [str(r) for r in results if not (r.rc == 0 and r.out == "OK\n")]
        check("three: 200 puts spread over the three client endpoints all answer OK", not bad,
              "%d failed; first:\n%s" % (len(bad), "\n".join(bad[:3])))

        def get(args):
            i, m = args
            return (i, m, etcdctl(m.endpoint, "get", keys[i]))

        jobs = [(i, m) for m in members for i in range(200)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            gets = list(pool.map(get, jobs))
        bad = ["%s via %s: %s" % (keys[i], m.name, r) for i, m, r in gets
               if not (r.rc == 0 and r.out == "%s\nval-%d\n" % (keys[i], i))]
        check("three: every key readable (linearizable get) through every member", not bad,
              "%d bad; first:\n%s" % (len(bad), "\n".join(bad[:3])))
        for m in members:
            doc, r = get_json(m.endpoint, "--prefix", "k/")
            want = {keys[i]: "val-%d" % i for i in range(200)}
            check("three: get --prefix k/ through %s returns all 200 keys" % m.name,
                  doc is not None and kvs_of(doc) == want and doc.get("count") == 200,
                  r if doc is None else "got %d keys" % len(kvs_of(doc)))

        # Find the leader.
        leader, term = wait_until(lambda: leader_from_logs(members)[0] is not None
                                  and leader_from_logs(members), 20) or (None, 0)
        if not check("three: the leader is named in the logs", leader is not None,
                     "\n".join(m.tail() for m in members)):
            return
        own = re.search(r"node \d+: leader \d+ -> \d+ \(term %d, leader\)" % term,
                        leader.log_text())
        check("three: %s (id %s) reports itself leader in term %d" % (leader.name, leader.id, term),
              own is not None, leader.tail())
        survivors = [m for m in members if m is not leader]

        # Kill -9 the leader while a writer keeps putting.
        writer = Writer([m.endpoint for m in members])
        writer.start()
        check("three: writer acknowledged puts before the kill",
              wait_until(lambda: writer.acked_count() >= 10, 60),
              "acked %d, errors %s" % (writer.acked_count(), writer.errors[:2]))
        leader.proc.send_signal(signal.SIGKILL)
        try:
            leader.proc.wait(timeout=EXIT_TIMEOUT)
            killed = True
        except subprocess.TimeoutExpired:
            killed = False
        check("three: SIGKILL the leader %s" % leader.name, killed)
        acked_at_kill = writer.acked_count()

        # A new leader: a put through a survivor succeeds (bounded), and the writer goes on.
        put_errors = []

        def put_ok():
            r = etcdctl(survivors[0].endpoint, "put", "after-kill", "1", timeout=20)
            if r.rc == 0 and r.out == "OK\n":
                return True
            put_errors.append(r)
            return False

        check("three: the survivors elect a new leader (a put through %s succeeds)"
              % survivors[0].name, wait_until(put_ok, 60, interval=0.2),
              "\n".join(m.tail() for m in survivors))
        for r in put_errors:  # allowed during the election; shown for the record
            print("#   put through %s during the election: exit %s: %s"
                  % (survivors[0].name, r.rc, (r.err.strip().splitlines() or [""])[-1]),
                  flush=True)
        check("three: the writer gets acknowledgements after the kill",
              wait_until(lambda: writer.acked_count() >= acked_at_kill + 10, 60),
              "acked %d at kill, %d now; last errors:\n%s"
              % (acked_at_kill, writer.acked_count(),
                 "\n".join(str(e) for e in writer.errors[-2:])))
        writer.stop_flag.set()
        writer.join(timeout=60)
        check("three: writer stopped", not writer.is_alive())
        with writer.lock:
            acked = list(writer.acked)
            nerr = len(writer.errors)
        print("# writer: %d attempts, %d acknowledged, %d errors (errors allowed during the "
              "election)" % (writer.attempts, len(acked), nerr), flush=True)
        seen = set()
        for e in writer.errors:
            last = (e.err.strip().splitlines() or ["exit %s" % e.rc])[-1]
            if last not in seen:
                seen.add(last)
                print("#   writer error: %s" % last, flush=True)

        new_leader, new_term = leader_from_logs(survivors, min_term=term)
        check("three: a survivor reports a new leader in a later term",
              new_leader is not None and new_leader is not leader and new_term > term,
              "old %s term %d; new %s term %d\n%s"
              % (leader.name, term, new_leader and new_leader.name, new_term,
                 "\n".join(m.tail() for m in survivors)))

        want = dict(acked)
        for m in survivors:
            doc, r = get_json(m.endpoint, "--prefix", "w/")
            got = kvs_of(doc)
            missing = [k for k, v in acked if got.get(k) != v]
            check("three: all %d acknowledged keys present through survivor %s"
                  % (len(acked), m.name), doc is not None and not missing,
                  r if doc is None else "missing or wrong: %s" % missing[:10])

        # Restart the killed member on its data dir: it catches up.
        leader.start()
        last_key, last_value = acked[-1] if acked else ("after-kill", "1")

        def caught_up():
            if not leader.alive():
                return True
            r = etcdctl(leader.endpoint, "get", last_key, "--consistency", "s", timeout=15)
            return r.rc == 0 and r.out == "%s\n%s\n" % (last_key, last_value)

        caught = wait_until(caught_up, 90, interval=0.3) and leader.alive()
        check("three: restarted %s catches up (serializable get of the last acknowledged key "
              "%s)" % (leader.name, last_key), caught, leader.tail())
        if caught:
            def all_there():
                doc, _ = get_json(leader.endpoint, "--prefix", "w/", "--consistency", "s")
                got = kvs_of(doc)
                return all(got.get(k) == v for k, v in acked)
            check("three: restarted %s holds every acknowledged key (serializable)"
                  % leader.name, wait_until(all_there, 30, interval=0.3))
            r = etcdctl(leader.endpoint, "get", "k/199")
            check("three: linearizable get through the restarted member",
                  r.rc == 0 and r.out == "k/199\nval-199\n", r)
        check("three: restarted %s healthy" % leader.name,
              wait_until(leader.healthy, 30), leader.tail())

        # SIGTERM all three.
        for m in members:
            if m.alive():
                m.proc.send_signal(signal.SIGTERM)
        for m in members:
            code = m.terminate(send=False)
            check("three: SIGTERM %s -> exit status 0" % m.name, code == 0,
                  "exit %s\n%s" % (code, m.tail()))
    finally:
        if writer is not None:
            writer.stop_flag.set()
            writer.join(timeout=60)
        for m in members:
            m.kill()
        sanitizer_check(members, "three")


def main():
    if len(sys.argv) != 2:
        print("usage: test_latchd.py LATCHD", file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    for exe in (latchd, ETCDCTL):
        if not os.access(exe, os.X_OK):
            print("FAIL - %s is not executable" % exe)
            return 1
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="latchd-itest-")
    try:
        single_member(latchd, root)
        three_members(latchd, root)
    finally:
        if failures:
            print("# logs and data kept in %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("# %d failure(s); %.1f s" % (len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
