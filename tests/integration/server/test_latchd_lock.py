#!/usr/bin/python3
"""latchd's etcd lock and election services (v3lockpb.Lock, v3electionpb.Election) over grpcio.

Usage: test_latchd_lock.py LATCHD [PROTO_DIR]

The python messages are generated from the repository's .proto files with protoc
--python_out into a temporary directory (grpc_tools is not needed: the calls go through
grpcio's generic unary_unary / unary_stream with the messages' own (de)serializers).

Three members on free loopback ports:
  Lock: through a follower; a second and a third Lock on the same name block and get the
  lock in the order they asked (FIFO) when the holder Unlocks; a holder whose lease is
  revoked releases the lock to the next waiter; a deadline ends a waiting Lock and its key
  is deleted; a lease that does not exist gets etcd's error; four clients on the three
  members increment a counter under the lock with no overlap and no lost update.
  The holder's own lease locks again at once; lease 0 gets a 60 s session lease.
  Election: Observe (on a follower) sees every leader and proclamation in order; Campaign
  (again with another value: proclaimed), Leader, Proclaim, a second candidate blocked until the first Resigns; a Proclaim with a
  stale revision, Leader of an empty election, Proclaim/Resign without a leader: etcd's
  texts (code Unknown); a Campaign that times out deletes its key.
  SIGTERM with a Lock waiting and an Observe open on every member: every member exits 0, no
  sanitizer report.

Every wait polls a condition (or a future) against a generous deadline; "blocked" checks
look at a future that must not be done yet after the blocking state was reached, never at
how long something took. Only the latchd processes this script started are signalled (by
PID). Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (check, cluster, fail, failures, leader_from_logs,  # noqa: E402
                       sanitizer_check, wait_until)

WAIT = 30  # s: bound of every wait for an outcome (sanitized build, loaded CI)


def gen_stubs(proto_dir, out):
    files = ["v3lockpb/v3lock.proto", "v3electionpb/v3election.proto",
             "etcdserverpb/rpc.proto", "mvccpb/kv.proto", "authpb/auth.proto"]
    subprocess.run(["protoc", "--python_out=" + out] + files, cwd=proto_dir, check=True)
    sys.path.insert(0, out)


class Api:
    """Generic grpcio calls on one endpoint."""

    def __init__(self, grpc, endpoint, pb):
        self.grpc, self.pb = grpc, pb
        self.channel = grpc.insecure_channel(endpoint)

    def unary(self, path, req, resp_cls, timeout=WAIT):
        f = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    def unary_future(self, path, req, resp_cls, timeout=WAIT):
        f = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=resp_cls.FromString)
        return f.future(req, timeout=timeout)

    def stream(self, path, req, resp_cls, timeout=None):
        f = self.channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    # etcdserverpb
    def grant(self, ttl=60):
        rpc = self.pb["rpc"]
        return self.unary("/etcdserverpb.Lease/LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl),
                          rpc.LeaseGrantResponse).ID

    def revoke(self, lease):
        rpc = self.pb["rpc"]
        return self.unary("/etcdserverpb.Lease/LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease),
                          rpc.LeaseRevokeResponse)

    def range(self, key, prefix=False):
        rpc = self.pb["rpc"]
        req = rpc.RangeRequest(key=key)
        if prefix:
            req.range_end = key[:-1] + bytes([key[-1] + 1])
        return self.unary("/etcdserverpb.KV/Range", req, rpc.RangeResponse)

    def put(self, key, value):
        rpc = self.pb["rpc"]
        return self.unary("/etcdserverpb.KV/Put", rpc.PutRequest(key=key, value=value),
                          rpc.PutResponse)

    # v3lock
    def lock_future(self, name, lease, timeout=WAIT):
        lk = self.pb["lock"]
        return self.unary_future("/v3lockpb.Lock/Lock", lk.LockRequest(name=name, lease=lease),
                                 lk.LockResponse, timeout)

    def lock(self, name, lease, timeout=WAIT):
        lk = self.pb["lock"]
        return self.unary("/v3lockpb.Lock/Lock", lk.LockRequest(name=name, lease=lease),
                          lk.LockResponse, timeout)

    def unlock(self, key):
        lk = self.pb["lock"]
        return self.unary("/v3lockpb.Lock/Unlock", lk.UnlockRequest(key=key), lk.UnlockResponse)

    # v3election
    def campaign_future(self, name, lease, value, timeout=WAIT):
        el = self.pb["election"]
        return self.unary_future("/v3electionpb.Election/Campaign",
                                 el.CampaignRequest(name=name, lease=lease, value=value),
                                 el.CampaignResponse, timeout)

    def proclaim(self, leader, value):
        el = self.pb["election"]
        req = el.ProclaimRequest(value=value)
        if leader is not None:
            req.leader.CopyFrom(leader)
        return self.unary("/v3electionpb.Election/Proclaim", req, el.ProclaimResponse)

    def resign(self, leader):
        el = self.pb["election"]
        req = el.ResignRequest()
        if leader is not None:
            req.leader.CopyFrom(leader)
        return self.unary("/v3electionpb.Election/Resign", req, el.ResignResponse)

    def leader(self, name):
        el = self.pb["election"]
        return self.unary("/v3electionpb.Election/Leader", el.LeaderRequest(name=name),
                          el.LeaderResponse)

    def observe(self, name):
        el = self.pb["election"]
        return self.stream("/v3electionpb.Election/Observe", el.LeaderRequest(name=name),
                           el.LeaderResponse)


def rpc_error(grpc, fn):
    """(code, details) of the RpcError fn raises, or (None, result)."""
    try:
        return None, fn()
    except grpc.RpcError as e:
        return e.code(), e.details()


def still_blocked(fut, settle=1.0):
    """True when the grpc future fut is not done after a short settle time (the blocking state
    was reached before: its key exists)."""
    import grpc
    try:
        fut.result(timeout=settle)
        return False
    except grpc.FutureTimeoutError:
        return True
    except Exception:  # noqa: BLE001 - a failed future is not blocked either
        return False


def key_of(name, lease):
    return name + b"/" + ("%x" % lease).encode()


def key_exists(api, key):
    return api.range(key).count == 1


def test_lock(grpc, leader_api, follower_api, other_api, apis):
    l1, l2, l3, l4 = (leader_api.grant() for _ in range(4))
    # Through a follower; the key is etcd's name/<lease %x>.
    r1 = follower_api.lock(b"lk", l1)
    check("Lock through a follower: key name/<lease hex>", r1.key == key_of(b"lk", l1), r1)
    check("Lock: the header has the revision and member id",
          r1.header.revision > 0 and r1.header.member_id != 0 and r1.header.cluster_id != 0,
          r1)
    # Two more lockers block, in order.
    f2 = other_api.lock_future(b"lk", l2)
    check("second Lock: its key is created while it waits",
          wait_until(lambda: key_exists(leader_api, key_of(b"lk", l2)), WAIT))
    f3 = leader_api.lock_future(b"lk", l3)
    check("third Lock: its key is created while it waits",
          wait_until(lambda: key_exists(leader_api, key_of(b"lk", l3)), WAIT))
    check("second Lock blocks while the first holds", still_blocked(f2))
    check("third Lock blocks while the first holds", still_blocked(f3, 0.1))
    u = follower_api.unlock(r1.key)
    check("Unlock answers with a header", u.header.revision >= r1.header.revision, u)
    try:
        r2 = f2.result(timeout=WAIT)
        check("after Unlock the second Lock holds (FIFO)", r2.key == key_of(b"lk", l2), r2)
        check("the second Lock's header is at or after the Unlock",
              r2.header.revision >= u.header.revision, "%s %s" % (r2, u))
    except Exception as e:  # noqa: BLE001
        fail("after Unlock the second Lock holds (FIFO)", repr(e))
    check("the third Lock still blocks while the second holds", still_blocked(f3))
    # Revoking the holder's lease releases the lock to the next waiter.
    leader_api.revoke(l2)
    try:
        r3 = f3.result(timeout=WAIT)
        check("a revoked holder's lease hands the lock to the next waiter",
              r3.key == key_of(b"lk", l3), r3)
    except Exception as e:  # noqa: BLE001
        fail("a revoked holder's lease hands the lock to the next waiter", repr(e))
    # A deadline ends a wait; the waiter's key is deleted (etcd's Mutex unlocks).
    code, detail = rpc_error(grpc, lambda: follower_api.lock(b"lk", l4, timeout=2.0))
    check("a waiting Lock ends at its deadline (DEADLINE_EXCEEDED)",
          code == grpc.StatusCode.DEADLINE_EXCEEDED, "%s %s" % (code, detail))
    check("the timed-out Lock's key is deleted",
          wait_until(lambda: not key_exists(leader_api, key_of(b"lk", l4)), WAIT))
    leader_api.unlock(key_of(b"lk", l3))
    # A lease that does not exist.
    code, detail = rpc_error(grpc, lambda: follower_api.lock(b"lk2", 0x1234567))
    check("Lock with an unknown lease: Unknown 'etcdserver: requested lease not found'",
          code == grpc.StatusCode.UNKNOWN and detail == "etcdserver: requested lease not found",
          "%s %r" % (code, detail))
    check("Lock with an unknown lease left no key",
          leader_api.range(b"lk2/", prefix=True).count == 0)
    # The holder locking again gets the same key at once (etcd's Mutex: the key exists).
    again = follower_api.lock(b"lk3", l1)
    again2 = other_api.lock(b"lk3", l1)
    check("Lock again with the holder's lease: the same key at once",
          again.key == again2.key == key_of(b"lk3", l1), "%s %s" % (again, again2))
    follower_api.unlock(again.key)
    # Lease 0: the server grants a session lease of 60 s (etcd's concurrency.Session).
    r0 = follower_api.lock(b"lk0", 0)
    name, _, hexid = r0.key.rpartition(b"/")
    rpc = leader_api.pb["rpc"]
    ttl = leader_api.unary("/etcdserverpb.Lease/LeaseTimeToLive",
                           rpc.LeaseTimeToLiveRequest(ID=int(hexid, 16), keys=True),
                           rpc.LeaseTimeToLiveResponse)
    check("Lock with lease 0: a 60 s session lease is granted and holds the key",
          name == b"lk0" and ttl.grantedTTL == 60 and list(ttl.keys) == [r0.key],
          "%s %s" % (r0, ttl))
    follower_api.unlock(r0.key)

    # Mutual exclusion: 4 clients x 3 rounds on the three members.
    inside = [0]
    overlap = []
    errors = []
    mu = threading.Lock()
    leader_api.put(b"counter", b"0")

    def worker(i):
        api = apis[i % len(apis)]
        try:
            lease = api.grant()
            for _ in range(3):
                r = api.lock(b"mx", lease)
                with mu:
                    inside[0] += 1
                    if inside[0] != 1:
                        overlap.append(i)
                v = int(api.range(b"counter").kvs[0].value)
                api.put(b"counter", str(v + 1).encode())
                with mu:
                    inside[0] -= 1
                api.unlock(r.key)
        except Exception as e:  # noqa: BLE001
            errors.append("%d: %r" % (i, e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    check("concurrent lockers: no error", not errors, "\n".join(errors))
    check("concurrent lockers: never two inside", not overlap, overlap)
    final = int(leader_api.range(b"counter").kvs[0].value)
    check("concurrent lockers: no lost update (counter 12)", final == 12, final)


def test_election(grpc, leader_api, follower_api, other_api, pb):
    el = pb["election"]
    la, lb, lc = (leader_api.grant() for _ in range(3))
    seen = []
    stream = follower_api.observe(b"el")

    def observer():
        try:
            for resp in stream:
                seen.append((resp.kv.key, resp.kv.value, resp.header.revision))
        except grpc.RpcError:
            pass

    t = threading.Thread(target=observer, daemon=True)
    t.start()
    code, detail = rpc_error(grpc, lambda: leader_api.leader(b"el"))
    check("Leader of an empty election: Unknown 'election: no leader'",
          code == grpc.StatusCode.UNKNOWN and detail == "election: no leader",
          "%s %r" % (code, detail))
    ra = follower_api.campaign_future(b"el", la, b"a").result(timeout=WAIT)
    lead_a = ra.leader
    check("Campaign: leader {name, key, rev, lease}",
          lead_a.name == b"el" and lead_a.key == key_of(b"el", la) and lead_a.lease == la
          and lead_a.rev == ra.header.revision, ra)
    check("Observe: the first leader arrives", wait_until(lambda: len(seen) >= 1, WAIT))
    again = other_api.campaign_future(b"el", la, b"a1").result(timeout=WAIT)
    check("Campaign again with the leader's lease and another value: proclaimed at once",
          again.leader.key == lead_a.key and again.leader.rev == lead_a.rev, again)
    p1 = leader_api.proclaim(lead_a, b"a")
    check("Proclaim back to the first value", p1.header.revision > lead_a.rev, p1)
    r = other_api.leader(b"el")
    check("Leader: the campaigner's key and value",
          r.kv.key == lead_a.key and r.kv.value == b"a" and r.kv.create_revision == lead_a.rev
          and r.header.revision >= lead_a.rev, r)
    fb = other_api.campaign_future(b"el", lb, b"b")
    check("second candidate: its key is created while it waits",
          wait_until(lambda: key_exists(leader_api, key_of(b"el", lb)), WAIT))
    check("second Campaign blocks while the first leads", still_blocked(fb))
    p = leader_api.proclaim(lead_a, b"a2")
    check("Proclaim answers with a header", p.header.revision > lead_a.rev, p)
    check("Leader after Proclaim: the new value", other_api.leader(b"el").kv.value == b"a2")
    stale = el.LeaderKey(name=b"el", key=lead_a.key, rev=lead_a.rev + 1000, lease=la)
    code, detail = rpc_error(grpc, lambda: leader_api.proclaim(stale, b"x"))
    check("Proclaim with a stale revision: Unknown 'election: not leader'",
          code == grpc.StatusCode.UNKNOWN and detail == "election: not leader",
          "%s %r" % (code, detail))
    for what, fn in (("Proclaim", lambda: leader_api.proclaim(None, b"x")),
                     ("Resign", lambda: leader_api.resign(None))):
        code, detail = rpc_error(grpc, fn)
        check("%s without a leader: Unknown '\"leader\" field must be provided'" % what,
              code == grpc.StatusCode.UNKNOWN and detail == '"leader" field must be provided',
              "%s %r" % (code, detail))
    rs = follower_api.resign(lead_a)
    check("Resign answers with a header", rs.header.revision > p.header.revision, rs)
    try:
        rb = fb.result(timeout=WAIT)
        check("after Resign the second candidate leads",
              rb.leader.key == key_of(b"el", lb) and rb.leader.lease == lb, rb)
    except Exception as e:  # noqa: BLE001
        fail("after Resign the second candidate leads", repr(e))
    check("Leader after Resign: the second candidate's value",
          leader_api.leader(b"el").kv.value == b"b")
    # A Campaign that times out deletes its key (etcd resigns on a cancelled context).
    code, detail = rpc_error(grpc, lambda: follower_api.campaign_future(
        b"el", lc, b"c", timeout=2.0).result(timeout=WAIT))
    check("a waiting Campaign ends at its deadline (DEADLINE_EXCEEDED)",
          code == grpc.StatusCode.DEADLINE_EXCEEDED, "%s %s" % (code, detail))
    check("the timed-out Campaign's key is deleted",
          wait_until(lambda: not key_exists(leader_api, key_of(b"el", lc)), WAIT))
    want = [b"a", b"a1", b"a", b"a2", b"b"]
    got_all = wait_until(lambda: len(seen) >= len(want), WAIT)
    values = [v for _, v, _ in seen]
    check("Observe (on a follower) saw every leader and proclamation, in order",
          got_all and values == want, seen)
    revs = [rev for _, _, rev in seen]
    check("Observe: header revisions increase", revs == sorted(revs), seen)
    stream.cancel()
    t.join(timeout=WAIT)
    check("Observe ends when the client cancels", not t.is_alive())


def main():
    if len(sys.argv) < 2:
        print("usage: test_latchd_lock.py LATCHD [PROTO_DIR]", file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    proto_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../../../api/proto")
    try:
        import grpc
    except ImportError:
        print("SKIP: python3-grpcio is not installed")
        return 0
    root = tempfile.mkdtemp(prefix="latchd-lock-")
    members = []
    try:
        os.makedirs(os.path.join(root, "py"))
        gen_stubs(os.path.abspath(proto_dir), os.path.join(root, "py"))
        from etcdserverpb import rpc_pb2
        from v3electionpb import v3election_pb2
        from v3lockpb import v3lock_pb2
        pb = {"rpc": rpc_pb2, "lock": v3lock_pb2, "election": v3election_pb2}
        members, healthy = cluster(latchd, os.path.join(root, "c"), 3, prefix="l")
        if not check("three members healthy", healthy, "\n".join(m.tail() for m in members)):
            return 1
        leader = [None]
        check("a leader is known", wait_until(
            lambda: leader.__setitem__(0, leader_from_logs(members)[0]) or leader[0], WAIT))
        lead = leader[0] or members[0]
        followers = [m for m in members if m is not lead]
        apis = [Api(grpc, m.endpoint, pb) for m in members]
        leader_api = apis[members.index(lead)]
        follower_api = apis[members.index(followers[0])]
        other_api = apis[members.index(followers[1])]
        test_lock(grpc, leader_api, follower_api, other_api, apis)
        test_election(grpc, leader_api, follower_api, other_api, pb)
        # Shutdown with calls still waiting: a blocked Lock and an Observe on every member.
        holder = leader_api.lock(b"end", leader_api.grant())
        waiting = [a.lock_future(b"end", leader_api.grant(), timeout=120) for a in apis]
        streams = [a.observe(b"end-el") for a in apis]  # open until the members stop
        check("shutdown: the waiting Locks are blocked",
              wait_until(lambda: leader_api.range(b"end/", prefix=True).count == 4, WAIT)
              and still_blocked(waiting[0]), holder)
        check("shutdown: the Observe streams are open", all(x.is_active() for x in streams))
    except Exception as e:  # noqa: BLE001
        import traceback
        fail("unexpected exception", traceback.format_exc() + repr(e))
    finally:
        statuses = [m.terminate() for m in members]  # waiting calls end with the server
        for m in members:
            m.kill()
        if members:
            check("every member exits 0 on SIGTERM", statuses == [0] * len(members), statuses)
            sanitizer_check(members, "lock/election")
        if failures:
            for m in members:
                print(m.tail(40))
        shutil.rmtree(root, ignore_errors=True)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
