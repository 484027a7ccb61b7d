#!/usr/bin/python3
"""latchd's Lease service against the real etcdctl (Debian's etcd-client, API 3).

Usage: test_latchd_lease.py LATCHD

One member on free loopback ports (bound to port 0 to pick them):
  lease grant / put --lease / timetolive --keys / keep-alive --once / list / revoke (the
  attached key goes); the error texts etcdctl prints (unknown lease, too large TTL, minimum
  TTL); a 2 s lease without keep-alives expires and its key disappears (bounded polling); a
  continuous `lease keep-alive` keeps a 2 s lease alive beyond its TTL; a bidirectional
  LeaseKeepAlive over raw grpcio gets one reply per request and an OK status after the
  client's half-close; after a SIGTERM restart a lease granted before is still alive with a
  remaining TTL no larger than granted.

Not tested here: `etcdctl lock` (needs Watch), followers (keep-alive and time-to-live are
forwarded to the leader: test_latchd_lease_follower.py).

Every wait polls a condition against a deadline; only assertions on outcomes, never on how
long something took. Only the latchd this script started is signalled (by PID).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import EXIT_TIMEOUT, Member, check, failures, wait_until  # noqa: E402

ETCDCTL = "/usr/bin/etcdctl"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
EXPIRY_TIMEOUT = 60  # s of polling for an expired lease's key to go (generous: CI)


class Result:
    def __init__(self, cmd, rc, out, err):
        self.cmd, self.rc, self.out, self.err = cmd, rc, out, err

    def __str__(self):
        return "$ %s\nexit %s\nstdout: %r\nstderr: %r" % (
            " ".join(self.cmd), self.rc, self.out, self.err[-2000:])


def etcdctl(endpoint, *args, timeout=30):
    cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s",
           "--command-timeout=10s"] + list(args)
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
        return Result(cmd, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return Result(cmd, "timeout", out, err)


GRANTED = re.compile(r"^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)$")


def grant(ep, ttl):
    """(hex id, ttl) or (None, Result)."""
    r = etcdctl(ep, "lease", "grant", str(ttl))
    m = GRANTED.match(r.out.strip()) if r.rc == 0 else None
    return (m.group(1), int(m.group(2))) if m else (None, r)


def key_exists(ep, key):
    r = etcdctl(ep, "get", key, "--keys-only")
    return r.rc == 0 and key in r.out.split()


# ---- raw LeaseKeepAlive over grpcio (no generated code: hand-encoded protobuf) ---------------


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fields(buf):
    """{field number: value} of the varint fields of a protobuf message (others skipped)."""
    out, i = {}, 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out[num] = v
        elif wt == 2:
            ln, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out[num] = bytes(buf[i:i + ln])
            i += ln
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return out


def keepalive_stream(ep, ids):
    """Sends one LeaseKeepAliveRequest per id, half-closes, reads every reply.
    Returns ([(ID, TTL)], status code name) or (None, error text)."""
    try:
        import grpc
    except ImportError as e:
        return None, "grpcio missing: %s" % e
    channel = grpc.insecure_channel(ep)
    try:
        call = channel.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive",
                                     request_serializer=None, response_deserializer=None)
        replies = []
        it = call(iter([b"\x08" + varint(i) for i in ids]), timeout=20)
        for msg in it:
            f = fields(msg)
            replies.append((f.get(2, 0), f.get(3, 0)))
        return replies, it.code().name
    except grpc.RpcError as e:
        return None, "%s: %s" % (e.code(), e.details())
    finally:
        channel.close()


# ---- the checks ----------------------------------------------------------------------------


def main():
    if len(sys.argv) != 2:
        print("usage: test_latchd_lease.py LATCHD", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="latchd-lease-")
    d = Member(os.path.abspath(sys.argv[1]), root, "data", None)
    try:
        d.start()
        if not check("latchd starts and is healthy", d.wait_healthy(), d.tail()):
            return 1
        ep = d.endpoint

        # grant, put with the lease, timetolive --keys, keep-alive --once, list, revoke
        lid, ttl = grant(ep, 5)
        if not check("lease grant 5 -> 'lease <hex> granted with TTL(5s)'",
                     lid is not None and ttl == 5, ttl):
            return 1
        r = etcdctl(ep, "put", "k", "v", "--lease=" + lid)
        check("put k v --lease=<hex>", r.rc == 0 and r.out.strip() == "OK", r)
        r = etcdctl(ep, "lease", "timetolive", lid, "--keys")
        m = re.match(r"^lease %s granted with TTL\(5s\), remaining\((\d+)s\), "
                     r"attached keys\(\[k\]\)$" % lid, r.out.strip())
        check("lease timetolive --keys shows TTL, remaining and the key",
              r.rc == 0 and m is not None and 0 <= int(m.group(1)) <= 5, r)
        r = etcdctl(ep, "lease", "keep-alive", "--once", lid)
        check("lease keep-alive --once", r.rc == 0 and
              r.out.strip() == "lease %s keepalived with TTL(5)" % lid, r)
        lid2, _ = grant(ep, 60)
        r = etcdctl(ep, "lease", "list")
        lines = r.out.strip().splitlines()
        check("lease list shows both leases", r.rc == 0 and lines[:1] == ["found 2 leases"]
              and sorted(lines[1:]) == sorted([lid, lid2]), r)
        r = etcdctl(ep, "lease", "revoke", lid)
        check("lease revoke", r.rc == 0 and r.out.strip() == "lease %s revoked" % lid, r)
        check("revoke deleted the attached key", not key_exists(ep, "k"))
        r = etcdctl(ep, "lease", "timetolive", lid)
        check("timetolive of a revoked lease: already expired",
              r.rc == 0 and r.out.strip() == "lease %s already expired" % lid, r)

        # errors etcdctl prints
        r = etcdctl(ep, "lease", "revoke", lid)
        check("revoke unknown lease: requested lease not found (exit 1)", r.rc == 1 and
              "etcdserver: requested lease not found" in r.err, r)
        r = etcdctl(ep, "lease", "keep-alive", "--once", lid)
        check("keep-alive --once of an unknown lease: not found (exit != 0)", r.rc != 0 and
              "requested lease not found" in r.err, r)
        r = etcdctl(ep, "lease", "grant", "9000000001")
        check("grant TTL > 9e9: too large lease TTL", r.rc != 0 and
              "etcdserver: too large lease TTL" in r.err, r)
        r = etcdctl(ep, "put", "x", "v", "--lease=" + lid)
        check("put with an unknown lease: requested lease not found", r.rc != 0 and
              "etcdserver: requested lease not found" in r.err, r)
        lmin, tmin = grant(ep, 1)
        check("grant 1 is raised to the 2 s minimum", lmin is not None and tmin == 2, tmin)

        # expiry: a 2 s lease without keep-alives goes, and its key with it
        lexp, _ = grant(ep, 2)
        r = etcdctl(ep, "put", "ephemeral", "v", "--lease=" + lexp)
        check("put ephemeral with a 2 s lease", r.rc == 0 and key_exists(ep, "ephemeral"), r)
        gone = wait_until(lambda: not key_exists(ep, "ephemeral"), EXPIRY_TIMEOUT, 0.3)
        check("an unrenewed 2 s lease expires and its key disappears", gone)
        r = etcdctl(ep, "lease", "timetolive", lexp)
        check("the expired lease is gone", r.out.strip() == "lease %s already expired" % lexp, r)

        # keep-alive: a 2 s lease renewed by `lease keep-alive` outlives its TTL
        lka, _ = grant(ep, 2)
        granted_at = time.monotonic()
        etcdctl(ep, "put", "kept", "v", "--lease=" + lka)
        ka = subprocess.Popen([ETCDCTL, "--endpoints=" + ep, "lease", "keep-alive", lka],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, ETCDCTL_API="3"))
        try:
            # Checked while the keep-alive runs, once twice the TTL has passed since the grant.
            wait_until(lambda: time.monotonic() - granted_at > 4 or ka.poll() is not None, 30)
            kept = key_exists(ep, "kept")
            running = ka.poll() is None
        finally:
            if ka.poll() is None:
                ka.send_signal(signal.SIGINT)
            try:
                out, err = ka.communicate(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                ka.kill()
                out, err = ka.communicate()
        n = out.count("lease %s keepalived with TTL(2)" % lka)
        check("lease keep-alive renews repeatedly", running and n >= 2,
              "running %r\nstdout %r\nstderr %r" % (running, out, err[-2000:]))
        check("the renewed lease outlived its TTL and kept its key", kept)
        gone = wait_until(lambda: not key_exists(ep, "kept"), EXPIRY_TIMEOUT, 0.3)
        check("once keep-alives stop the lease expires", gone)

        # raw bidi: one reply per request, OK after the client's half-close
        llong, _ = grant(ep, 60)
        replies, status = keepalive_stream(ep, [int(llong, 16), 0x7777])
        check("LeaseKeepAlive: one reply per request, finished OK after half-close",
              replies == [(int(llong, 16), 60), (0x7777, 0)] and status == "OK",
              "%r %r" % (replies, status))

        # restart: the lease survives with no more than its granted TTL
        code = d.terminate()
        check("SIGTERM: latchd exits 0", code == 0, d.tail())
        d.start()
        if not check("latchd restarts on the same data dir", d.wait_healthy(), d.tail()):
            return 1
        r = etcdctl(ep, "lease", "timetolive", llong)
        m = re.match(r"^lease %s granted with TTL\(60s\), remaining\((\d+)s\)$" % llong,
                     r.out.strip())
        check("after a restart the lease is alive with remaining <= granted",
              r.rc == 0 and m is not None and 0 < int(m.group(1)) <= 60, r)
        r = etcdctl(ep, "lease", "list")
        check("lease list after restart", r.rc == 0 and llong in r.out.split(), r)

        code = d.terminate()
        check("SIGTERM: latchd exits 0 at the end", code == 0, d.tail())
        text = d.all_logs()
        bad = [mk for mk in SANITIZER_MARKS if mk in text]
        check("no sanitizer report in latchd's logs", not bad, d.tail(60))
    finally:
        d.kill()
        if failures:
            print("logs kept in %s" % root, flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
