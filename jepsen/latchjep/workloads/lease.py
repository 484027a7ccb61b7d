"""lease — ephemeral keys vanish after their session expires, and not before its TTL (issue
7, item 3). target latch: latch.v1 sessions and ephemeral nodes; target etcd: etcd leases
and keys attached to them (the same mechanism on latch's side: a session is a lease).

Each client thread repeats a cycle with a fresh key k (unique per create):
  create           SessionOpen/LeaseGrant (TTL s) + Create(k, session)/Put(k, lease) as one
                   op: invoke {"key": k, "ttl": TTL} -> ok {"session": id}
  RENEWS times:    renew  {"session": id} -> ok {"ttl": remaining} (fail "session expired"
                          when the server answers TTL 0), then
                   read   -> ok {"exists": bool} (linearizable)
                   about every TTL/3 s
  expire-observed  stop renewing; poll k (linearizable reads every POLL_S) until it is gone:
                   invoke {"key": k, "session": id} -> ok {"exists": false}, or ok {"exists":
                   true} when it is still there after 3*TTL+20 s
Renewals are ops of the history (not a background thread), so the checker knows when each
renewal could have taken effect: a key seen gone before (last renewal's invoke + TTL) is an
early expiry. Checker "lease".
"""
import time

import grpc

from ..runner import FailOp
from . import _common

NAME = "lease"
TARGETS = ("latch", "etcd")
CHECKERS = ("lease", "stats")
IDEMPOTENT = {"read", "expire-observed"}
# every renewal is an op of the history: the checker may bound expiry from above too
CHECKER_OPTS = {"lease": {"renewals_in_history": True}}
TTL = 3
RENEWS = 4
POLL_S = 0.2
LATCH_DIR = "/jepsen-lease"
ETCD_PREFIX = "jepsen/lease/"


class Latch:
    def create(self, cl, key):
        s = cl.latch.SessionOpen(ttl_seconds=TTL, timeout=cl.timeout).session
        try:
            cl.latch.Create(path=LATCH_DIR + "/" + key, value=b"x", session=s,
                            make_parents=True, timeout=cl.timeout)
        except grpc.RpcError:
            try:
                cl.latch.SessionClose(session=s, timeout=cl.timeout)
            except grpc.RpcError:
                pass
            raise
        return s

    def renew(self, cl, s):
        req = cl.pb.latch.SessionKeepAliveRequest(session=s)
        for r in cl.latch.SessionKeepAlive(iter([req]), timeout=cl.timeout):
            return r.ttl_seconds
        raise FailOp("no keep-alive answer")

    def exists(self, cl, key):
        try:
            cl.latch.Stat(path=LATCH_DIR + "/" + key, timeout=cl.timeout)
            return True
        except grpc.RpcError as e:
            if _common.code_of(e) == grpc.StatusCode.NOT_FOUND:
                return False
            raise


class Etcd:
    def create(self, cl, key):
        r = cl.lease.LeaseGrant(TTL=TTL, ID=0, timeout=cl.timeout)
        if r.error:
            raise FailOp("lease grant: " + r.error)
        cl.put((ETCD_PREFIX + key).encode(), b"x", lease=r.ID)
        return r.ID

    def renew(self, cl, s):
        req = cl.pb.rpc.LeaseKeepAliveRequest(ID=s)
        for r in cl.lease.LeaseKeepAlive(iter([req]), timeout=cl.timeout):
            return r.TTL
        raise FailOp("no keep-alive answer")

    def exists(self, cl, key):
        v, _ = cl.get((ETCD_PREFIX + key).encode())
        return v is not None


def worker(ctx, thread, client):
    api = Latch() if ctx.cluster.target == "latch" else Etcd()
    process = thread
    n = 0
    while not ctx.stopping():
        n += 1
        key = "p%d-%d" % (process, n)
        done = ctx.execute(client, process, "create", key, {"key": key, "ttl": TTL},
                           lambda cl, _k=key: {"session": api.create(cl, _k)})
        if done["type"] == "info":
            process += ctx.concurrency
            continue
        if done["type"] != "ok":
            _common.sleep_until_stop(ctx, 0.2)
            continue
        sess = done["value"]["session"]
        retired = False
        for _ in range(RENEWS):
            _common.sleep_until_stop(ctx, TTL / 3.0)
            if ctx.stopping():
                break

            def do_renew(cl, _s=sess):
                ttl = api.renew(cl, _s)
                if ttl <= 0:
                    raise FailOp("session expired", {"ttl": 0})
                return {"ttl": ttl}
            done = ctx.execute(client, process, "renew", key, {"session": sess}, do_renew)
            if done["type"] == "info":
                retired = True
                break
            ctx.execute(client, process, "read", key, None,
                        lambda cl, _k=key: {"exists": api.exists(cl, _k)})
            if done["type"] == "fail":
                break
        if retired:
            process += ctx.concurrency
            continue

        def do_observe(cl, _k=key):
            end = time.monotonic() + 3 * TTL + 20
            while time.monotonic() < end:
                try:
                    if not api.exists(cl, _k):
                        return {"exists": False}
                except grpc.RpcError as e:
                    cl.failed(e)
                time.sleep(POLL_S)
            return {"exists": True}
        ctx.execute(client, process, "expire-observed", key, {"key": key, "session": sess},
                    do_observe)
