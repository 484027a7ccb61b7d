#!/usr/bin/python3
"""The v3lock / v3election session of the differential runs (run_diff.py).

Usage: /usr/bin/python3 v3conc_diff.py --endpoints HOST:PORT,HOST:PORT,...

Calls etcd's lock and election gRPC services (/v3lockpb.Lock, /v3electionpb.Election) with
grpcio's generic calls and messages generated here from the repository's .proto files
(protoc --python_out into a temporary directory). Talks to one follower (found with
Maintenance Status), so every write is forwarded to the leader. Prints one line per step, "<step> <result>": revisions relative to the session's
first write, keys with lease ids replaced by the name they were granted under (<L1>) or
<session> for a lease the server granted, values, error codes and texts; no ids, ports or
timings. Exit 0 unless the messages could not be generated.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "..", "api", "proto")
CALL_TIMEOUT = 10
WAIT = 20  # s, bound of every wait for a key or a blocked call


def out(step, *parts):
    print(step, " ".join(str(p) for p in parts), flush=True)


class Session:
    def __init__(self, endpoint, pb):
        self.pb = pb
        self.ch = grpc.insecure_channel(endpoint)
        self.base = 0
        self.leases = {}  # lease id -> name

    def call(self, path, req, resp_cls, timeout=CALL_TIMEOUT, future=False):
        f = self.ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
        return f.future(req, timeout=timeout) if future else f(req, timeout=timeout)

    def rev(self, hdr):
        return "rev=+%d" % (hdr.revision - self.base)

    def key(self, k):
        text = k.decode()
        name, _, lease = text.rpartition("/")
        try:
            lid = int(lease, 16)
        except ValueError:
            return text
        return "%s/%s" % (name, self.leases.get(lid, "<session>"))

    def grant(self, name, ttl=60):
        rpc = self.pb["rpc"]
        r = self.call("/etcdserverpb.Lease/LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl),
                      rpc.LeaseGrantResponse)
        self.leases[r.ID] = "<%s>" % name
        return r.ID

    def count(self, prefix):
        rpc = self.pb["rpc"]
        req = rpc.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                               count_only=True)
        return self.call("/etcdserverpb.KV/Range", req, rpc.RangeResponse).count


def err_text(e):
    if isinstance(e, grpc.RpcError):
        return "error %s %s" % (e.code().name, e.details())
    return "error %s %s" % (type(e).__name__, e)


def step(name, fn):
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - the error is the step's result
        out(name, err_text(e))
        return None
    if r is not None:
        out(name, r)
    return r


def wait_for(pred):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def blocked(fut):
    try:
        fut.result(timeout=0.5)
        return "no"
    except grpc.FutureTimeoutError:
        return "yes"
    except Exception as e:  # noqa: BLE001
        return err_text(e)


def pick_follower(endpoints, rpc):
    """A member that is not the leader (Maintenance Status), else the first one."""
    for ep in endpoints:
        ch = grpc.insecure_channel(ep)
        try:
            st = ch.unary_unary("/etcdserverpb.Maintenance/Status",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=rpc.StatusResponse.FromString)(
                rpc.StatusRequest(), timeout=CALL_TIMEOUT)
            if st.leader != 0 and st.leader != st.header.member_id:
                return ep
        except grpc.RpcError:
            continue
        finally:
            ch.close()
    return endpoints[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="v3conc-py-")
    try:
        subprocess.run(["protoc", "--python_out=" + tmp, "v3lockpb/v3lock.proto",
                        "v3electionpb/v3election.proto", "etcdserverpb/rpc.proto",
                        "mvccpb/kv.proto", "authpb/auth.proto"], cwd=PROTO_DIR, check=True)
        sys.path.insert(0, tmp)
        from etcdserverpb import rpc_pb2
        from v3electionpb import v3election_pb2 as el
        from v3lockpb import v3lock_pb2 as lk
    except Exception as e:  # noqa: BLE001
        print("cannot generate the messages: %s" % e, file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    s = Session(pick_follower(args.endpoints.split(","), rpc_pb2), {"rpc": rpc_pb2})
    rpc = rpc_pb2
    s.base = s.call("/etcdserverpb.KV/Put", rpc.PutRequest(key=b"/vc/start", value=b"x"),
                    rpc.PutResponse).header.revision
    l1, l2, l3 = s.grant("L1"), s.grant("L2"), s.grant("L3")

    def lock(name, lease, timeout=CALL_TIMEOUT, future=False):
        return s.call("/v3lockpb.Lock/Lock", lk.LockRequest(name=name, lease=lease),
                      lk.LockResponse, timeout, future)

    def unlock(key):
        return s.call("/v3lockpb.Lock/Unlock", lk.UnlockRequest(key=key), lk.UnlockResponse)

    def lock_text(r):
        return "key=%s %s" % (s.key(r.key), s.rev(r.header))

    # ---- v3lock
    got = {}  # responses kept for later steps

    def keep(name, r):
        got[name] = r
        return r

    step("lock-1", lambda: lock_text(keep("r1", lock(b"/vc/lk", l1))))
    r1 = got.get("r1")
    step("lock-1-again", lambda: lock_text(lock(b"/vc/lk", l1)))
    f2 = lock(b"/vc/lk", l2, timeout=WAIT, future=True)
    step("lock-2-waits", lambda: "keys=%d" % (wait_for(lambda: s.count(b"/vc/lk/") == 2)
                                              and s.count(b"/vc/lk/")))
    step("lock-2-blocked", lambda: blocked(f2))
    step("unlock-1", lambda: s.rev(unlock(r1.key).header) if r1 else None)
    step("lock-2", lambda: lock_text(f2.result(timeout=WAIT)))
    step("lock-3-deadline", lambda: lock_text(lock(b"/vc/lk", l3, timeout=1.0)))
    step("lock-3-key-gone", lambda: wait_for(lambda: s.count(b"/vc/lk/") == 1)
         and "keys=%d" % s.count(b"/vc/lk/"))
    step("lock-unknown-lease", lambda: lock_text(lock(b"/vc/lk2", 0x7e57)))
    step("lock-no-lease", lambda: lock_text(keep("r0", lock(b"/vc/lk0", 0))))
    r0 = got.get("r0")
    if r0 is not None:
        lid = int(r0.key.decode().rpartition("/")[2], 16)
        ttl = s.call("/etcdserverpb.Lease/LeaseTimeToLive", rpc.LeaseTimeToLiveRequest(ID=lid),
                     rpc.LeaseTimeToLiveResponse)
        out("lock-no-lease-ttl", "granted=%d" % ttl.grantedTTL)
        step("unlock-no-lease", lambda: s.rev(unlock(r0.key).header))
    step("unlock-2", lambda: s.rev(unlock(b"/vc/lk/" + (b"%x" % l2)).header))
    step("unlock-missing", lambda: s.rev(unlock(b"/vc/none").header))
    step("unlock-empty", lambda: s.rev(unlock(b"").header))

    # ---- v3election
    seen = []
    stream = s.ch.unary_stream("/v3electionpb.Election/Observe",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=el.LeaderResponse.FromString)(
        el.LeaderRequest(name=b"/vc/el"))

    def observer():
        try:
            for resp in stream:
                # etcd's header revision here is its watch response's: the store's revision
                # when the event was sent, which depends on timing; only its bound is compared.
                seen.append("%s=%s@+%d/hdr>=mod:%s" % (
                    s.key(resp.kv.key), resp.kv.value.decode(), resp.kv.mod_revision - s.base,
                    resp.header.revision >= resp.kv.mod_revision))
        except grpc.RpcError:
            pass

    t = threading.Thread(target=observer, daemon=True)
    t.start()

    def campaign(lease, value, timeout=CALL_TIMEOUT, future=False):
        return s.call("/v3electionpb.Election/Campaign",
                      el.CampaignRequest(name=b"/vc/el", lease=lease, value=value),
                      el.CampaignResponse, timeout, future)

    def camp_text(r):
        return "name=%s key=%s rev=+%d lease=%s %s" % (
            r.leader.name.decode(), s.key(r.leader.key), r.leader.rev - s.base,
            s.leases.get(r.leader.lease, "?"), s.rev(r.header))

    def leader():
        r = s.call("/v3electionpb.Election/Leader", el.LeaderRequest(name=b"/vc/el"),
                   el.LeaderResponse)
        return "key=%s value=%s create=+%d %s" % (s.key(r.kv.key), r.kv.value.decode(),
                                                  r.kv.create_revision - s.base, s.rev(r.header))

    def proclaim(ld, value):
        req = el.ProclaimRequest(value=value)
        if ld is not None:
            req.leader.CopyFrom(ld)
        return s.rev(s.call("/v3electionpb.Election/Proclaim", req,
                            el.ProclaimResponse).header)

    def resign(ld):
        req = el.ResignRequest()
        if ld is not None:
            req.leader.CopyFrom(ld)
        return s.rev(s.call("/v3electionpb.Election/Resign", req, el.ResignResponse).header)

    step("leader-none", leader)
    step("campaign-a", lambda: camp_text(keep("ra", campaign(l1, b"a"))))
    ra = got.get("ra")
    wait_for(lambda: len(seen) >= 1)  # the observer has its first leader before it changes
    step("campaign-a-again-other-value", lambda: camp_text(campaign(l1, b"a1")))
    step("leader-a", leader)
    fb = campaign(l2, b"b", timeout=WAIT, future=True)
    step("campaign-b-waits", lambda: "keys=%d" % (wait_for(lambda: s.count(b"/vc/el/") == 2)
                                                  and s.count(b"/vc/el/")))
    step("campaign-b-blocked", lambda: blocked(fb))
    step("proclaim-a2", lambda: proclaim(ra.leader, b"a2"))
    step("leader-a2", leader)
    step("proclaim-stale", lambda: proclaim(
        el.LeaderKey(name=b"/vc/el", key=ra.leader.key, rev=ra.leader.rev + 1000,
                     lease=l1), b"x"))
    step("proclaim-missing-leader", lambda: proclaim(None, b"x"))
    step("resign-missing-leader", lambda: resign(None))
    step("resign-stale", lambda: resign(
        el.LeaderKey(name=b"/vc/el", key=ra.leader.key, rev=ra.leader.rev + 1000, lease=l1)))
    step("resign-a", lambda: resign(ra.leader))
    step("campaign-b", lambda: camp_text(fb.result(timeout=WAIT)))
    step("leader-b", leader)
    step("campaign-c-deadline", lambda: camp_text(campaign(l3, b"c", timeout=1.0)))
    step("campaign-c-key-gone", lambda: wait_for(lambda: s.count(b"/vc/el/") == 1)
         and "keys=%d" % s.count(b"/vc/el/"))
    step("revoke-b", lambda: s.rev(s.call("/etcdserverpb.Lease/LeaseRevoke",
                                          rpc.LeaseRevokeRequest(ID=l2),
                                          rpc.LeaseRevokeResponse).header))
    step("leader-after-revoke", leader)
    wait_for(lambda: len(seen) >= 4)
    out("observe", " ".join(seen))
    stream.cancel()
    t.join(timeout=WAIT)
    s.ch.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
