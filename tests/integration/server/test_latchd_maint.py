#!/usr/bin/python3
"""latchd's Maintenance Hash/HashKV and Snapshot against the real etcdctl (Debian's
etcd-client, API 3).

Usage: test_latchd_maint.py LATCHD

Three members on free loopback ports. Writes (puts, an overwrite, deletes, a lease, a
compaction), then `etcdctl endpoint hashkv --cluster` must report one hash on every member
once the writes have settled everywhere (polled, bounded), `hashkv --rev` at an old revision
must not change with later writes, and a compacted or future revision fails with etcd's
errors. About 2.5 MB of values go in through txns, then `etcdctl snapshot save` (many
messages, so the stream's flow control is exercised) must succeed, `snapshot status -w json`
must report the current revision and every record, and `snapshot restore` (which checks the
trailing SHA-256 and reads the bbolt file) must succeed. Members exit 0 on SIGTERM with no
sanitizer report. Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (check, cluster, etcdctl, failures, get_json,  # noqa: E402
                       sanitizer_check, wait_until)

SETTLE = 30  # s for every member to apply the last write


def revision(ep):
    doc, _ = get_json(ep, "nothing-here")
    return int(doc["header"]["revision"]) if doc else None


def hashkv_all(eps, *extra):
    """{endpoint: (hash, compact_revision)} from `endpoint hashkv -w json`, or None."""
    r = etcdctl(eps, "endpoint", "hashkv", "-w", "json", *extra)
    if r.rc != 0:
        return None, r
    try:
        doc = json.loads(r.out)
        return {e["Endpoint"]: (e["HashKV"].get("hash", 0),
                                e["HashKV"].get("compact_revision", 0)) for e in doc}, r
    except (ValueError, KeyError, TypeError):
        return None, r


def settled_hashes(members):
    """Waits until every member reports the same hashkv; returns (hashes, Result)."""
    eps = [m.endpoint for m in members]
    last = [None, None]

    def same():
        h, r = hashkv_all(eps)
        last[0], last[1] = h, r
        return h is not None and len(h) == len(eps) and len(set(h.values())) == 1
    wait_until(same, SETTLE, interval=0.3)
    return last[0], last[1]


def check_hashes(members):
    ep0 = members[0].endpoint
    for args in (["put", "a", "1"], ["put", "b", "2"], ["put", "a", "3"], ["del", "b"]):
        etcdctl(ep0, *args)
    r = etcdctl(ep0, "lease", "grant", "300")
    lease = r.out.split()[1] if r.rc == 0 else "0"
    etcdctl(ep0, "put", "c", "4", "--lease=" + lease)
    rev = revision(ep0)
    etcdctl(ep0, "compact", str(rev - 2))
    h, r = settled_hashes(members)
    check("endpoint hashkv: one hash on every member after the writes settle",
          h is not None and len(set(h.values())) == 1 and len(h) == 3, str(r))
    r = etcdctl([members[1].endpoint], "endpoint", "hashkv", "--cluster")
    lines = [ln for ln in r.out.splitlines() if ln.strip()]
    hashes = {ln.rsplit(",", 1)[1].strip() for ln in lines}
    check("endpoint hashkv --cluster lists three members with the same hash",
          r.rc == 0 and len(lines) == 3 and len(hashes) == 1, str(r))
    if h:
        comp = list(h.values())[0][1]
        check("hashkv reports the compact revision", comp == rev - 2, "%r vs %d" % (comp, rev - 2))

    old, r1 = hashkv_all([ep0], "--rev", str(rev))
    etcdctl(ep0, "put", "d", "5")
    again, r2 = hashkv_all([ep0], "--rev", str(rev))
    now, r3 = hashkv_all([ep0])
    check("hashkv --rev at an old revision ignores later writes",
          old is not None and old == again and now is not None and now != old,
          "%s\n%s\n%s" % (r1, r2, r3))
    for bad in (rev - 3, rev - 2):  # below and at the compact revision, as etcd's HashByRev
        r = etcdctl(ep0, "endpoint", "hashkv", "--rev", str(bad))
        check("hashkv at compacted revision %s fails with etcd's error" % (bad - rev),
              r.rc != 0 and "required revision has been compacted" in r.err, str(r))
    r = etcdctl(ep0, "endpoint", "hashkv", "--rev", str(rev + 100))
    check("hashkv at a future revision fails with etcd's error",
          r.rc != 0 and "required revision is a future revision" in r.err, str(r))


def check_raw_rpcs(members):
    """Hash on every member, Alarm ACTIVATE/DEACTIVATE through raw gRPC (python3-etcd3's
    messages; etcdctl 3.4 has no command for them)."""
    try:
        import grpc
        from etcd3 import etcdrpc
    except ImportError as e:
        check("python3-grpcio and python3-etcd3 for the raw RPCs (skipped: %s)" % e, True)
        return
    chans = [grpc.insecure_channel(m.endpoint) for m in members]
    try:
        maint = [etcdrpc.MaintenanceStub(c) for c in chans]
        last = []

        def hashes_agree():
            try:
                hs = [mt.Hash(etcdrpc.HashRequest(), timeout=10).hash for mt in maint]
            except grpc.RpcError as e:
                last[:] = [str(e)]
                return False
            last[:] = hs
            return len(set(hs)) == 1
        check("Hash: one hash on every member once the writes settled",
              wait_until(hashes_agree, SETTLE, interval=0.3), "last: %r" % last)

        try:
            maint[0].Alarm(etcdrpc.AlarmRequest(action=etcdrpc.AlarmRequest.ACTIVATE,
                                                alarm=etcdrpc.CORRUPT), timeout=10)
            check("Alarm ACTIVATE CORRUPT is refused (latch never raises it)", False)
        except grpc.RpcError as e:
            check("Alarm ACTIVATE CORRUPT is refused (latch never raises it)",
                  e.code() == grpc.StatusCode.UNIMPLEMENTED, str(e))
        resp = maint[1].Alarm(etcdrpc.AlarmRequest(action=etcdrpc.AlarmRequest.ACTIVATE,
                                                   alarm=etcdrpc.NOSPACE), timeout=10)
        check("Alarm ACTIVATE NOSPACE answers the raised alarm",
              [a.alarm for a in resp.alarms] == [etcdrpc.NOSPACE], str(resp))
        r = etcdctl(members[2].endpoint, "alarm", "list")
        listed = wait_until(lambda: "alarm:NOSPACE" in etcdctl(members[2].endpoint, "alarm",
                                                                "list").out, SETTLE)
        check("the alarm is replicated: another member lists it", listed, str(r))
        r = etcdctl(members[2].endpoint, "put", "under-alarm", "v")
        check("a put fails on every member while the alarm is on",
              r.rc != 0 and "database space exceeded" in r.err, str(r))
        r = etcdctl(members[0].endpoint, "alarm", "disarm")
        check("alarm disarm clears it", r.rc == 0 and "alarm:NOSPACE" in r.out, str(r))
        r = etcdctl(members[0].endpoint, "put", "after-alarm", "v")
        check("puts work again after the disarm", r.rc == 0, str(r))
    finally:
        for c in chans:
            c.close()


def fill(ep):
    """About 2.5 MB through txns of 100 puts; returns the number of keys put."""
    n = 0
    for t in range(25):
        ops = "".join('put big/%05d "%s"\n' % (t * 100 + i, ("%05d" % i) * 200)
                      for i in range(100))
        r = etcdctl(ep, "txn", stdin="\n" + ops + "\n\n")
        if r.rc != 0:
            check("txn of 100 puts", False, str(r))
            return n
        n += 100
    return n


def check_snapshot(members, root):
    ep = members[2].endpoint  # a follower or the leader: any member can stream it
    n = fill(members[0].endpoint)
    check("2500 keys written through txns", n == 2500)
    wait_until(lambda: revision(ep) == revision(members[0].endpoint), SETTLE)
    path = os.path.join(root, "snap.db")
    r = etcdctl(ep, "snapshot", "save", path, timeout=120, command_timeout=60)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    check("snapshot save succeeds (SHA-256 trailer in place)",
          r.rc == 0 and "Snapshot saved at" in r.out and size % 512 == 32, "%s\nsize %d" % (r, size))
    if r.rc != 0:
        return
    check("the snapshot holds the 2.5 MB written", size > 2500 * 1000, "size %d" % size)
    rev = revision(ep)
    r = etcdctl(ep, "snapshot", "status", path, "-w", "json")
    try:
        st = json.loads(r.out) if r.rc == 0 else {}
    except ValueError:
        st = {}
    check("snapshot status reports the member's revision", st.get("revision") == rev,
          "%s\nrevision %r" % (r, rev))
    check("snapshot status counts every record (2500 puts and more)",
          st.get("totalKey", 0) > 2500, str(r))
    out = os.path.join(root, "restored")
    r = etcdctl(ep, "snapshot", "restore", path, "--data-dir", out, timeout=120)
    check("snapshot restore accepts the file (checksum and bbolt contents)",
          r.rc == 0 and os.path.isdir(os.path.join(out, "member", "snap")), str(r))


def main():
    latchd = sys.argv[1]
    root = tempfile.mkdtemp(prefix="latch-maint-")
    members, healthy = cluster(latchd, root, 3, prefix="m")
    try:
        if not check("three members start", healthy, "\n".join(m.tail() for m in members)):
            return
        check_hashes(members)
        check_raw_rpcs(members)
        check_snapshot(members, root)
        codes = [m.terminate() for m in members]
        check("SIGTERM: every member exits 0", codes == [0, 0, 0],
              "%s\n%s" % (codes, "\n".join(m.tail() for m in members)))
    finally:
        for m in members:
            m.kill()
        sanitizer_check(members, "maint")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("    logs kept in " + root, flush=True)


if __name__ == "__main__":
    main()
    sys.exit(1 if failures else 0)
