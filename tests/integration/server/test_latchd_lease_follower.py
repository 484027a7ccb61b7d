#!/usr/bin/python3
"""Lease keep-alives and time-to-live through a FOLLOWER: latchd forwards them to the leader
over the peer connection, as etcd does (server/svc_lease.h, FORWARDING).

Usage: test_latchd_lease_follower.py LATCHD

Three members on free loopback ports. The leader is read from the members' logs and one
follower F is chosen; every client below is given F's endpoint ONLY:
  1. etcdctl: lease grant 3, put --lease; python3-etcd3 connected to F refreshes the lease
     about every second for four TTLs (each refresh answers TTL 3), and the key is still
     there at the end; time_to_live through F names the key;
  2. etcdctl: `lease keep-alive --once` answers "keepalived with TTL(3)", `lease timetolive
     --keys` answers "granted with TTL(3s), remaining(Ns), attached keys([k])" with
     0 <= N <= 3; a continuous `lease keep-alive` prints several renewals;
  3. the same for an unknown lease: timetolive says "already expired", keep-alive --once
     fails with etcd's "requested lease not found" (exit 2);
  4. the leader stayed the same member throughout so far (else F may have served as leader);
  5. the renewals stop: the lease expires on the leader and the key disappears (bounded
     polling), so the leader really held the deadline the follower renewed;
  6. leader change: a second lease (TTL 10) with a key; the leader is killed (SIGKILL); a
     `lease keep-alive --once` through F succeeds again once a new leader is elected (F
     waits up to 5 s for one, as etcd; bounded polling: failures in between are etcd's
     retryable Unavailable texts or timeouts), and the key is still there;
  7. the remaining other member is stopped: F has no leader, and a LeaseTimeToLive through
     it (client deadline 15 s) fails with Unavailable "etcdserver: no leader" once F has
     waited its 5 s for a leader, as etcd's follower does (bounded polling until it does);
  8. F is stopped (SIGTERM) while a forwarded TimeToLive waits in it for a leader: F exits
     0 and the client gets Unavailable;
  9. every latchd exits 0 on SIGTERM (the killed leader excepted); no sanitizer report.

Every wait polls against a deadline; no assertion on how long anything took. Only processes
this script started are signalled, by PID. Prints "ok - ..." / "FAIL - ..." lines; exits 1
if any check failed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import latchtest  # noqa: E402
from latchtest import check, etcdctl, failures, leader_from_logs, ok, wait_until  # noqa: E402

PYTHON = "/usr/bin/python3"
TTL = 3
REFRESH_ROUNDS = 12  # about one a second: four TTLs

# python3-etcd3 against F: refresh the lease REFRESH_ROUNDS times, ~1 s apart, printing each
# answer's TTL; then time_to_live with keys.
PY_REFRESH = r"""
import sys, time, etcd3
host, port, lease_id, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16), int(sys.argv[4])
c = etcd3.client(host=host, port=port, timeout=10)
for i in range(rounds):
    ttls = [r.TTL for r in c.refresh_lease(lease_id)]
    print("refresh", ttls, flush=True)
    time.sleep(1.0)
v, meta = c.get("/follower/leased")
print("value", v.decode() if v is not None else None, flush=True)
info = c.get_lease_info(lease_id)
print("ttl", info.TTL, info.grantedTTL, sorted(k.decode() for k in info.keys), flush=True)
"""

# A LeaseTimeToLive through F with raw stubs: prints "OK" or "<code> <details>".
PY_TTL_RAW = r"""
import sys, grpc, etcd3
from etcd3 import etcdrpc
host, port, lease_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
c = etcd3.client(host=host, port=port, timeout=15)
try:
    c.leasestub.LeaseTimeToLive(etcdrpc.LeaseTimeToLiveRequest(ID=lease_id), timeout=15)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name, e.details())
"""


def py(script, *args, timeout=60):
    p = subprocess.run([PYTHON, "-c", script] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="latchd-lease-follower-")
    members = []
    try:
        members, up = latchtest.cluster(latchd, root, 3, prefix="n")
        if not check("three members healthy", up, "\n".join(m.tail() for m in members)):
            return 1
        wait_until(lambda: leader_from_logs(members)[0] is not None, 30)
        leader, term = leader_from_logs(members)
        if not check("the leader is known from the logs", leader is not None,
                     "\n".join(m.tail() for m in members)):
            return 1
        f = next(m for m in members if m is not leader)
        ok("follower %s (leader %s, term %d)" % (f.name, leader.name, term))
        ep = f.endpoint
        host, port = ep.split(":")

        # 1. grant and attach through F, refresh through F with python3-etcd3
        r = etcdctl(ep, "lease", "grant", str(TTL))
        m = re.match(r"lease ([0-9a-f]+) granted with TTL\(%ds\)" % TTL, r.out)
        if not check("etcdctl --endpoints=F lease grant %d" % TTL, r.rc == 0 and m, r):
            return 1
        lease = m.group(1)
        r = etcdctl(ep, "put", "/follower/leased", "v", "--lease=" + lease)
        check("etcdctl --endpoints=F put --lease", r.rc == 0 and r.out == "OK\n", r)
        rc, out, err = py(PY_REFRESH, host, port, lease, REFRESH_ROUNDS, timeout=120)
        refreshes = [ln for ln in out.splitlines() if ln.startswith("refresh ")]
        check("python3-etcd3 via F: %d refreshes, each answered TTL %d" % (REFRESH_ROUNDS, TTL),
              rc == 0 and refreshes == ["refresh [%d]" % TTL] * REFRESH_ROUNDS,
              "exit %s\n%s\n%s" % (rc, out, err[-2000:]))
        check("python3-etcd3 via F: the key is still there after %d TTLs of refreshes"
              % (REFRESH_ROUNDS // TTL), "value v" in out.splitlines(), out)
        ttl_line = next((ln for ln in out.splitlines() if ln.startswith("ttl ")), "")
        tm = re.match(r"ttl (-?\d+) (\d+) \['/follower/leased'\]$", ttl_line)
        check("python3-etcd3 via F: time_to_live names the key, granted %d, 0 <= remaining <= %d"
              % (TTL, TTL), tm is not None and 0 <= int(tm.group(1)) <= TTL
              and int(tm.group(2)) == TTL, out)

        # 2. etcdctl keep-alive --once, timetolive --keys, continuous keep-alive through F
        r = etcdctl(ep, "lease", "keep-alive", "--once", lease)
        check("etcdctl --endpoints=F lease keep-alive --once",
              r.rc == 0 and r.out == "lease %s keepalived with TTL(%d)\n" % (lease, TTL), r)
        r = etcdctl(ep, "lease", "timetolive", lease, "--keys")
        tm = re.match(r"lease %s granted with TTL\(%ds\), remaining\((\d+)s\), attached "
                      r"keys\(\[/follower/leased\]\)\n$" % (lease, TTL), r.out)
        check("etcdctl --endpoints=F lease timetolive --keys",
              r.rc == 0 and tm is not None and int(tm.group(1)) <= TTL, r)
        r = etcdctl(ep, "lease", "keep-alive", lease, timeout=4)  # runs until killed
        n = r.out.count("lease %s keepalived with TTL(%d)" % (lease, TTL))
        check("etcdctl --endpoints=F lease keep-alive (continuous): several renewals", n >= 2, r)

        # 3. an unknown lease through F
        r = etcdctl(ep, "lease", "timetolive", "1234abcd")
        check("etcdctl --endpoints=F lease timetolive <unknown>: already expired",
              r.rc == 0 and r.out == "lease 000000001234abcd already expired\n", r)
        r = etcdctl(ep, "lease", "keep-alive", "--once", "1234abcd")
        check("etcdctl --endpoints=F lease keep-alive --once <unknown>: not found, exit 2",
              r.rc == 2 and "Error: etcdserver: requested lease not found" in r.err, r)

        # 4. the leader did not change, so F was a follower all along
        now, now_term = leader_from_logs(members)
        check("the leader stayed %s (term %d) throughout" % (leader.name, term),
              now is leader and now_term == term, "now %s term %d" % (
                  now.name if now else None, now_term))

        # 5. no more renewals: the leader expires the lease
        gone = wait_until(lambda: etcdctl(ep, "get", "/follower/leased").out == "", 30, 0.5)
        check("without renewals the lease expires and its key goes", gone,
              etcdctl(ep, "get", "/follower/leased"))

        # 6. the leader is killed; keep-alives through F reach the new leader
        r = etcdctl(ep, "lease", "grant", "10")
        m = re.match(r"lease ([0-9a-f]+) granted with TTL\(10s\)", r.out)
        if check("etcdctl --endpoints=F lease grant 10", r.rc == 0 and m, r):
            lease2 = m.group(1)
            r = etcdctl(ep, "put", "/follower/failover", "v", "--lease=" + lease2)
            check("etcdctl --endpoints=F put --lease (second lease)", r.rc == 0, r)
            leader.kill()
            ok("leader %s killed (SIGKILL)" % leader.name)
            tries = []

            def renewed():
                r = etcdctl(ep, "lease", "keep-alive", "--once", lease2, command_timeout=3)
                tries.append(r)
                return r.rc == 0 and r.out == "lease %s keepalived with TTL(10)\n" % lease2
            check("after the leader's death, keep-alive --once through F succeeds again",
                  wait_until(renewed, 40, 0.2),
                  "\n".join(str(t) for t in tries[-3:]) + "\n" + f.tail())
            nl, nt = leader_from_logs(members, term)
            errs = sorted({t.err.strip().splitlines()[-1] for t in tries[:-1] if t.err.strip()})
            ok("new leader %s (term %d); %d failed keep-alive(s) before: %s" % (
                nl.name if nl else None, nt, len(tries) - 1, errs))
            r = etcdctl(ep, "get", "/follower/failover", "--print-value-only")
            check("the key of the lease kept alive across the leader change is still there",
                  r.rc == 0 and r.out == "v\n", r)

        # 7. F alone: no leader
        for mm in members:
            if mm is not f and mm.alive():
                st = mm.terminate()
                check("%s exits 0 on SIGTERM" % mm.name, st == 0, "status %s\n%s" % (
                    st, mm.tail()))
        lines = []

        def no_leader():
            rc, out, err = py(PY_TTL_RAW, host, port, lease, timeout=40)
            lines.append(out.strip() or err.strip()[-300:])
            return out.strip() == "UNAVAILABLE etcdserver: no leader"
        check("F without a leader: LeaseTimeToLive is Unavailable \"etcdserver: no leader\"",
              wait_until(no_leader, 60, 0.5), "\n".join(lines[-5:]) + "\n" + f.tail())

        # 8. F stops while a forwarded request waits for a leader: answered, clean exit
        waiting = subprocess.Popen([PYTHON, "-c", PY_TTL_RAW, host, port, lease],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the request is waiting inside F (it waits up to 5 s for a leader)
        st = f.terminate()
        check("F stopped (SIGTERM) while a forwarded request waits: exits 0", st == 0,
              "status %s\n%s" % (st, f.tail()))
        try:
            out, err = waiting.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            waiting.kill()
            out, err = waiting.communicate()
        check("... and the waiting client got Unavailable, not a hang",
              out.startswith("UNAVAILABLE"), "stdout %r stderr %r" % (out, err[-500:]))
    finally:
        for mm in members:
            if mm.proc is not None and mm.proc.returncode is None:
                st = mm.terminate()
                check("%s exits 0 on SIGTERM" % mm.name, st == 0, "status %s\n%s" % (
                    st, mm.tail()))
        for mm in members:
            mm.kill()
        if members:
            latchtest.sanitizer_check(members, "follower leases")
        if failures:
            print("# logs kept in %s" % root, flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("# %d failure(s); %.1f s" % (len(failures), time.monotonic() - t0), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
