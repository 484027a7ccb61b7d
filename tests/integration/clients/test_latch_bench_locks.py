#!/usr/bin/python3
"""test_latch_bench_locks.py LATCHD LATCH_BENCH BUILD_DIR — the lock benchmarks (issue 6,
item 6) in small counts on three members:

  latch-bench lock (latch.v1 Acquire -> Release): 1 client on the leader, then 8 clients on
  4 connections over all members contending for one lock — each run exits 0 with -o json,
  the cycles asked for, no error (the tool itself fails on a fencing token that does not
  increase), latencies, hand-offs only when there is contention; afterwards the lock has no
  holder and no waiter (the sessions were closed).
  latch-bench failover, 1 round with a 2 s session: the new leader comes no earlier than the
  lost session's TTL after its last renewal, Observe saw it, and afterwards the election has
  no leader (the winner's session was closed).
  No server: exit 1 with "cannot connect to".
  etcd's recipe (tests/bench/etcd_mutex_bench.go, clientv3/concurrency Mutex) against
  latch's etcd API, 4 goroutines, when go and golang-etcd-server-dev are installed (built
  offline in GOPATH mode into BUILD_DIR/bench-go).

Every wait is bounded; nothing is judged on speed. Only the latchd processes this script
started are signalled (by PID). Prints "ok - ..." / "FAIL - ..." lines; exits 1 on failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (LatchStub, check, cluster, fail, failures, free_ports,  # noqa: E402
                       leader_from_logs, sanitizer_check, wait_until)

LATCHD, BENCH, BUILD = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
HERE = os.path.dirname(os.path.abspath(__file__))
GO_SRC = os.path.join(HERE, "..", "..", "bench", "etcd_mutex_bench.go")
GOPATH = "/usr/share/gocode"
RUN_TIMEOUT = 180  # s for one benchmark run (sanitized debug build, loaded machine)
SANITIZER = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


def run(cmd, timeout=RUN_TIMEOUT):
    """(parsed last JSON line or None, (rc, out, err, cmd))."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, ("timeout", e.stdout, e.stderr, cmd)
    doc = None
    try:
        doc = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else None
    except ValueError:
        pass
    return doc, (p.returncode, p.stdout, p.stderr, cmd)


def detail(res):
    rc, out, err, cmd = res
    return "$ %s\nexit %s\nstdout: %s\nstderr: %s" % (" ".join(cmd), rc, out, (err or "")[-2000:])


def good(doc, res, ops):
    return (res[0] == 0 and doc is not None and doc.get("ops") == ops and doc.get("errors") == 0
            and doc.get("first_error") == "" and doc.get("ops_per_s", 0) > 0
            and not any(s in (res[2] or "") for s in SANITIZER))


def build_go(out_dir):
    go = shutil.which("go", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/lib/go/bin")
    if go is None or not os.path.isdir(os.path.join(GOPATH, "src/go.etcd.io/etcd/clientv3")):
        print("# go or golang-etcd-server-dev missing: the etcd recipe is not run")
        return None
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "etcd_mutex_bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GO111MODULE="off", GOPATH=GOPATH, GOCACHE=os.path.join(out_dir, "gocache"),
               GOPROXY="off", GOFLAGS="", GOENV="off", GOTOOLCHAIN="local")
    env.setdefault("HOME", tempfile.gettempdir())
    try:
        p = subprocess.run([go, "build", "-o", binary, os.path.basename(GO_SRC)],
                           cwd=os.path.dirname(GO_SRC), env=env, capture_output=True, text=True,
                           timeout=600)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = "timeout", ""
    check("go: etcd_mutex_bench builds offline in GOPATH mode", rc == 0, out)
    return binary if rc == 0 else None


def main():
    root = tempfile.mkdtemp(prefix="latch-bench-locks.")
    members = []
    try:
        members, healthy = cluster(LATCHD, os.path.join(root, "c"), 3, prefix="k")
        if not check("three members healthy", healthy, "\n".join(m.tail() for m in members)):
            return
        lead = wait_until(lambda: leader_from_logs(members)[0], 30) or members[0]
        eps = ",".join(m.endpoint for m in members)
        stub = LatchStub(lead.endpoint)

        # lock, 1 client on the leader
        doc, res = run([BENCH, "-o", "json", "--endpoints", lead.endpoint, "--clients", "1",
                        "lock", "--total", "50", "--lock-name", "smoke-1"])
        check("lock, 1 client: exit 0, 50 cycles, no error, no hand-off (nobody waits)",
              good(doc, res, 50) and doc.get("handoffs") == 0 and doc.get("last_token", 0) > 0
              and doc.get("p50_ms", 0) > 0 and doc.get("cycle_p50_ms", 0) >= doc["p50_ms"]
              and doc.get("lock") == "smoke-1" and doc.get("session_ttl_s") == 600,
              detail(res))

        # lock, 8 clients over every member, one lock
        doc, res = run([BENCH, "-o", "json", "--endpoints", eps, "--conns", "4", "--clients",
                        "8", "lock", "--total", "100", "--lock-name", "smoke-8"])
        check("lock, 8 contending clients on 3 members: exit 0, 100 cycles, no error, "
              "most grants are hand-offs", good(doc, res, 100)
              and 50 <= doc.get("handoffs", 0) <= 99 and doc.get("handoff_p50_ms", 0) > 0,
              detail(res))
        for name in ("smoke-1", "smoke-8"):
            h = stub.Holder(lock=name)
            w = stub.Waiters(lock=name)
            check("lock %s: no holder and no waiter after the run (sessions closed)" % name,
                  len(h.holders) == 0 and len(w.waiters) == 0, "%s\n%s" % (h, w))

        # failover, one round
        doc, res = run([BENCH, "-o", "json", "--endpoints", eps, "--conns", "3", "failover",
                        "--total", "1", "--session-ttl", "2", "--lock-name", "smoke-el"])
        check("failover, 1 round: exit 0, the new leader no earlier than the TTL after the "
              "last renewal, Observe saw it",
              res[0] == 0 and doc is not None and doc.get("ops") == 1 and doc.get("errors") == 0
              and doc.get("session_ttl_s") == 2 and doc.get("from_renewal_max_ms", 0) >= 2000
              and doc.get("observe_max_ms", -1) >= 0 and doc.get("max_ms", -1) >= 0,
              detail(res))
        ld = stub.Leader(election="smoke-el-0")
        check("failover: the election has no leader after the run", ld.token == 0, str(ld))

        # no server
        port = free_ports(1)[0]
        doc, res = run([BENCH, "--endpoints", "127.0.0.1:%d" % port, "lock", "--total", "5"])
        check("lock, no server: exit 1 with 'cannot connect to'", res[0] == 1 and
              "cannot connect to 127.0.0.1:%d" % port in (res[2] or ""), detail(res))

        # etcd's recipe against latch's etcd API
        binary = build_go(os.path.join(BUILD, "bench-go"))
        if binary is not None:
            doc, res = run([binary, "-endpoints", lead.endpoint, "-clients", "4", "-total",
                            "40"])
            check("etcd Mutex recipe on latch, 4 goroutines: exit 0, 40 cycles, no error",
                  good(doc, res, 40) and doc.get("workload") == "etcd-mutex", detail(res))
    except Exception as e:  # noqa: BLE001
        import traceback
        fail("unexpected exception", traceback.format_exc() + repr(e))
    finally:
        statuses = [m.terminate() for m in members]
        for m in members:
            m.kill()
        if members:
            check("every member exits 0 on SIGTERM", statuses == [0] * len(members), statuses)
            sanitizer_check(members, "lock benchmarks")
        if failures:
            for m in members:
                print(m.tail(30))
            print("logs kept in " + root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("# %.1f s, %d failure(s)" % (time.monotonic() - t0, len(failures)))
    sys.exit(1 if failures else 0)
