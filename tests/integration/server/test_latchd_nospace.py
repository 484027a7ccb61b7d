#!/usr/bin/python3
"""latchd's NOSPACE alarm and /metrics against the real etcdctl (Debian's etcd-client, API 3).

Usage: test_latchd_nospace.py LATCHD

One member on free loopback ports with --quota-backend-bytes 1 MiB. 16 KiB puts go in until
one fails with etcd's "etcdserver: mvcc: database space exceeded" (the member raises the
replicated NOSPACE alarm itself once the store is over its quota). Then: every acknowledged
put is readable; `alarm list` and `endpoint status` show "memberID:<id> alarm:NOSPACE";
puts keep failing while deletes and reads work; compaction + defrag + `alarm disarm` clear
the alarm (disarm prints the alarm it cleared) and puts succeed again; `alarm disarm` with
nothing raised prints nothing. /metrics names the proposal, fsync, apply, per-method request,
watcher and lease figures with plausible values. Finally SIGTERM (exit 0), restart, and every
acknowledged key that was not deleted is still there with its value.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (Member, check, etcdctl, failures, get_json, http_get,  # noqa: E402
                       kvs_of, sanitizer_check, wait_until)

QUOTA = 1 << 20
VALUE_BYTES = 16 << 10
MAX_PUTS = 400  # 6 MiB of values: far past the quota
NOSPACE = "etcdserver: mvcc: database space exceeded"


def value_of(i):
    return ("%06d" % i) * (VALUE_BYTES // 6)


def revision(ep):
    doc, _ = get_json(ep, "nothing-here")
    return int(doc["header"]["revision"]) if doc else None


def metric(text, name):
    """The value of the sample whose name (with its labels) is exactly name, or None."""
    for line in text.splitlines():
        if not line.startswith("#") and " " in line:
            series, value = line.rsplit(" ", 1)
            if series == name:
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


def fill(m, expected):
    """Puts until NOSPACE; returns (the failing Result or None, puts acknowledged)."""
    for i in range(MAX_PUTS):
        key = "k%04d" % i
        r = etcdctl(m.endpoint, "put", key, value_of(i))
        if r.rc != 0:
            return r, i
        expected[key] = value_of(i)
    return None, MAX_PUTS


def check_alarm_on(m, member_dec):
    r = etcdctl(m.endpoint, "alarm", "list")
    check("alarm list shows memberID:<id> alarm:NOSPACE",
          r.rc == 0 and r.out.strip() == "memberID:%d alarm:NOSPACE" % member_dec, str(r))
    r = etcdctl(m.endpoint, "endpoint", "status", "-w", "json")
    check("endpoint status lists the alarm among its errors",
          r.rc == 0 and "alarm:NOSPACE" in r.out, str(r))


def check_metrics(m, puts):
    status, text = http_get(m.admin + "/metrics")
    if not check("/metrics answers 200", status == 200, text):
        return
    committed = metric(text, "latch_raft_proposals_committed_total")
    check("latch_raft_proposals_committed_total counts the puts",
          committed is not None and committed >= puts, "value %r" % committed)
    check("latch_raft_proposals_failed_total is present",
          metric(text, "latch_raft_proposals_failed_total") is not None)
    fsyncs = metric(text, "latch_disk_fsync_duration_seconds_count")
    fsync_sum = metric(text, "latch_disk_fsync_duration_seconds_sum")
    check("latch_disk_fsync_duration_seconds observed every append",
          fsyncs is not None and fsyncs >= puts and fsync_sum is not None and fsync_sum > 0,
          "count %r sum %r" % (fsyncs, fsync_sum))
    applies = metric(text, "latch_apply_duration_seconds_count")
    check("latch_apply_duration_seconds observed the applies",
          applies is not None and applies >= puts, "count %r" % applies)
    put_reqs = metric(text, 'latch_grpc_requests_total{method="/etcdserverpb.KV/Put"}')
    check("latch_grpc_requests_total counts Put calls (failed ones too)",
          put_reqs is not None and put_reqs >= puts + 1, "value %r" % put_reqs)
    put_lat = metric(text,
                     'latch_grpc_request_duration_seconds_count{method="/etcdserverpb.KV/Put"}')
    check("latch_grpc_request_duration_seconds has one observation per Put",
          put_lat == put_reqs, "count %r vs requests %r" % (put_lat, put_reqs))
    alarm = metric(text, 'latch_grpc_requests_total{method="/etcdserverpb.Maintenance/Alarm"}')
    check("latch_grpc_requests_total counts Maintenance/Alarm", alarm is not None and alarm >= 1,
          "value %r" % alarm)
    check("latch_watchers and latch_leases gauges are present",
          metric(text, "latch_watchers") == 0 and metric(text, "latch_leases") == 1,
          "watchers %r leases %r" % (metric(text, "latch_watchers"), metric(text, "latch_leases")))


def main():
    latchd = sys.argv[1]
    root = tempfile.mkdtemp(prefix="latch-nospace-")
    m = Member(latchd, root, "ns", "latch-nospace-%d" % os.getpid(),
               extra_args=["--quota-backend-bytes", str(QUOTA)])
    m.start()
    try:
        if not check("member starts with a 1 MiB quota", m.wait_healthy(), m.tail()):
            return
        r = etcdctl(m.endpoint, "endpoint", "status", "-w", "json")
        member_dec = int(re.search(r'"member_id":(\d+)', r.out).group(1)) if r.rc == 0 else 0
        r = etcdctl(m.endpoint, "lease", "grant", "600")
        check("a lease is granted before the quota is reached", r.rc == 0, str(r))

        expected = {}
        r, puts = fill(m, expected)
        check("puts fail with etcd's NOSPACE error once the quota is reached",
              r is not None and r.rc == 1 and "Error: " + NOSPACE in r.err,
              str(r) if r else "no put failed in %d" % MAX_PUTS)
        check("the quota took more than a few puts (%d acknowledged)" % puts, puts >= 20)
        doc, gr = get_json(m.endpoint, "k", "--prefix")
        check("every acknowledged put is readable", kvs_of(doc) == expected,
              "%d expected, %s" % (len(expected), gr if doc is None else len(kvs_of(doc))))
        check_alarm_on(m, member_dec)

        r = etcdctl(m.endpoint, "put", "another", "v")
        check("a put while the alarm is on fails with NOSPACE",
              r.rc == 1 and NOSPACE in r.err, str(r))
        r = etcdctl(m.endpoint, "lease", "grant", "60")
        check("a lease grant while the alarm is on fails with NOSPACE",
              r.rc != 0 and NOSPACE in r.err, str(r))
        doomed = sorted(expected)[: (3 * len(expected)) // 4]
        end = "k%04d" % (int(doomed[-1][1:]) + 1)  # keys are k0000, k0001, ...
        r = etcdctl(m.endpoint, "del", doomed[0], end)
        check("a delete works while the alarm is on",
              r.rc == 0 and r.out.strip() == str(len(doomed)), str(r))
        for k in doomed:
            del expected[k]
        doc, gr = get_json(m.endpoint, "k", "--prefix", "--keys-only")
        check("reads work while the alarm is on",
              doc is not None and len(doc.get("kvs", [])) == len(expected), str(gr))
        r = etcdctl(m.endpoint, "put", "another", "v")
        check("puts still fail after the delete until the alarm is disarmed",
              r.rc == 1 and NOSPACE in r.err, str(r))

        rev = revision(m.endpoint)
        r = etcdctl(m.endpoint, "compact", str(rev), "--physical")
        check("compaction works while the alarm is on", r.rc == 0, str(r))
        r = etcdctl(m.endpoint, "defrag")
        check("defrag works", r.rc == 0 and "Finished defragmenting" in r.out, str(r))
        r = etcdctl(m.endpoint, "alarm", "disarm")
        check("alarm disarm prints the alarm it cleared",
              r.rc == 0 and r.out.strip() == "memberID:%d alarm:NOSPACE" % member_dec, str(r))
        r = etcdctl(m.endpoint, "alarm", "list")
        check("alarm list is empty after disarm", r.rc == 0 and r.out.strip() == "", str(r))
        r = etcdctl(m.endpoint, "put", "after-disarm", "v")
        check("a put succeeds after compaction, defrag and disarm", r.rc == 0, str(r))
        if r.rc == 0:
            expected["after-disarm"] = "v"
        r = etcdctl(m.endpoint, "alarm", "disarm")
        check("alarm disarm with nothing raised prints nothing",
              r.rc == 0 and r.out.strip() == "", str(r))

        check_metrics(m, puts)

        code = m.terminate()
        check("SIGTERM: latchd exits 0", code == 0, m.tail())
        m.start()
        if check("member restarts", m.wait_healthy(), m.tail()):
            doc, gr = get_json(m.endpoint, "", "--prefix")
            got = kvs_of(doc)
            check("after restart every acknowledged, undeleted key is there with its value",
                  got == expected,
                  "missing %s, unexpected %s" % (sorted(set(expected) - set(got))[:5],
                                                 sorted(set(got) - set(expected))[:5]))
            r = etcdctl(m.endpoint, "alarm", "list")
            check("the alarm stays off after restart", r.rc == 0 and r.out.strip() == "", str(r))
    finally:
        m.kill()
        sanitizer_check([m], "nospace")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("    logs kept in " + root, flush=True)


if __name__ == "__main__":
    main()
    sys.exit(1 if failures else 0)
