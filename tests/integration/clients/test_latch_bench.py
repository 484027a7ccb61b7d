#!/usr/bin/python3
"""test_latch_bench.py LATCHD LATCH_BENCH — latch-bench against one latchd: a small count of
every workload (put, get l/s, txn, watch, lease) with -o json; each run must parse, report
ops > 0 and zero errors, and what the writes wrote must really be in the store (read back
with etcdctl). Then the failure paths: no server (connection refused) and a server killed
in the middle of a run must both make latch-bench exit 1 with its first error shown."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (Member, check, etcdctl, failures, free_ports, fail, get_json,  # noqa: E402
                       kvs_of, sanitizer_check, wait_until)

LATCHD, BENCH = sys.argv[1], sys.argv[2]
BENCH_TIMEOUT = 120  # s for one latch-bench run (sanitized debug build on a loaded machine)
SANITIZER = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


def bench(endpoint, *args, timeout=BENCH_TIMEOUT):
    """Runs latch-bench -o json; returns (parsed JSON or None, CompletedProcess-like)."""
    cmd = [BENCH, "--endpoints", endpoint, "-o", "json"] + list(args)
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


def check_run(name, doc, res, ops, **extra):
    """The run exited 0, its JSON parsed, ops as expected, no errors, no sanitizer report."""
    good = (res[0] == 0 and doc is not None and doc.get("ops") == ops and doc.get("errors") == 0
            and doc.get("ops_per_s", 0) > 0 and doc.get("p50_ms", 0) > 0
            and doc.get("first_error") == "" and not any(s in (res[2] or "") for s in SANITIZER)
            and all(doc.get(k) == v for k, v in extra.items()))
    check("%s: exit 0, %d ops, 0 errors, a rate and latencies%s" % (
        name, ops, "".join(", %s=%s" % kv for kv in extra.items())), good, detail(res))
    return good


def count_prefix(endpoint, prefix):
    doc, r = get_json(endpoint, prefix, "--prefix", "--keys-only")
    return (doc or {}).get("count", 0) if doc is not None else None


def main():
    root = tempfile.mkdtemp(prefix="latch-bench-test.")
    m = Member(LATCHD, root, "n1", "latch-bench-test")
    try:
        m.start()
        if not m.wait_healthy():
            fail("latchd starts", m.tail())
            return
        ep = m.endpoint

        # put: 200 puts over 50 sequential keys; they must all be in the store.
        doc, res = bench(ep, "put", "--total", "200", "--conns", "2", "--clients", "4",
                         "--key-prefix", "smoke/put/", "--key-size", "20", "--key-space", "50",
                         "--sequential-keys", "--val-size", "100")
        check_run("put", doc, res, 200)
        n = count_prefix(ep, "smoke/put/")
        check("put: the 50 keys written are in the store (etcdctl)", n == 50, "count %r" % n)
        kv, r = get_json(ep, "smoke/put/0000000007")
        v = kvs_of(kv).get("smoke/put/0000000007")
        check("put: a key read back with etcdctl has the 100-byte value", v is not None and
              len(v) == 100, str(r))

        # get: the same keys, linearizable and serializable: every one found.
        for c in ("l", "s"):
            doc, res = bench(ep, "get", "--consistency", c, "--total", "300", "--clients", "5",
                             "--key-prefix", "smoke/put/", "--key-size", "20",
                             "--key-space", "50")
            check_run("get --consistency %s" % c, doc, res, 300, misses=0)

        # get of keys never written: misses, not errors.
        doc, res = bench(ep, "get", "--total", "50", "--key-prefix", "smoke/none/",
                         "--key-size", "20", "--key-space", "10")
        check_run("get of missing keys", doc, res, 50, misses=50)

        # --rate: never more starts than rate x elapsed + 1, whatever the server's speed.
        doc, res = bench(ep, "put", "--rate", "100", "--duration", "1s", "--clients", "4",
                         "--key-prefix", "smoke/rate/", "--key-size", "20")
        check("put --rate 100 --duration 1s: 1..101 puts, no errors",
              res[0] == 0 and doc is not None and 1 <= doc.get("ops", 0) <= 101 and
              doc.get("errors") == 0, detail(res))

        # txn: 2 puts per Txn on their own prefix.
        doc, res = bench(ep, "txn", "--total", "60", "--clients", "3", "--txn-ops", "2",
                         "--key-prefix", "smoke/txn/", "--key-size", "20", "--key-space", "30",
                         "--sequential-keys")
        check_run("txn", doc, res, 60)
        n = count_prefix(ep, "smoke/txn/")
        check("txn: the 30 keys written by the Txns are in the store", n == 30, "count %r" % n)

        # watch: 3 watchers see each of the 40 puts.
        doc, res = bench(ep, "watch", "--total", "40", "--watchers", "3", "--conns", "2",
                         "--key-prefix", "smoke/watch/", "--key-size", "24")
        check_run("watch", doc, res, 40, events=120, events_expected=120, watchers=3)

        # lease: keep-alives of 4 leases, revoked at the end.
        doc, res = bench(ep, "lease", "--target-leader", "--total", "200", "--clients", "4",
                         "--conns", "2")
        check_run("lease", doc, res, 200)
        r = etcdctl(ep, "lease", "list")
        check("lease: the benchmark's leases are revoked at the end", r.rc == 0 and
              "found 0 leases" in r.out, str(r))

        # No server: a clear error and exit 1.
        port = free_ports(1)[0]
        doc, res = bench("127.0.0.1:%d" % port, "put", "--total", "10")
        check("no server: exit 1 with 'cannot connect to'", res[0] == 1 and
              "cannot connect to 127.0.0.1:%d" % port in (res[2] or ""), detail(res))

        # The server dies in the middle of a run: the failed requests are counted, the first
        # one shown, exit 1.
        cmd = [BENCH, "--endpoints", ep, "-o", "json", "put", "--duration", "60s",
               "--clients", "4", "--key-prefix", "smoke/kill/", "--key-size", "24"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wrote = wait_until(lambda: (count_prefix(ep, "smoke/kill/") or 0) > 0, 60, 0.2)
        m.kill()
        try:
            out, err = p.communicate(timeout=BENCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        res = (p.returncode, out, err, cmd)
        try:
            doc = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            doc = None
        check("server killed mid-run: exit 1, errors counted, the first one shown",
              wrote and p.returncode == 1 and doc is not None and doc["errors"] > 0 and
              doc["first_error"] != "" and "requests failed; the first:" in err, detail(res))
    finally:
        m.kill()
        sanitizer_check([m], "latch-bench smoke")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("logs kept in " + root)


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("# %.1f s, %d failure(s)" % (time.monotonic() - t0, len(failures)))
    sys.exit(1 if failures else 0)
