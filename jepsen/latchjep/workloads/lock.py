"""lock — latch.v1 locks with fencing tokens protecting two resources (issue 7, item 3).

Every client thread loops: open a session (TTL 3 s, renewed by a Keeper pinned to the
thread's node) if it has none; `acquire` the lock "jepsen-lock" (Acquire, waiting up to the
op timeout) -> {"token": t}; WRITES `write`s {"token": t, "seq": n}; `release` {"token": t}.
Each write goes to both protected resources, the way a fenced client would:
  1. the latch key /jepsen/lock-data, Set with fence {lock, token}: latch refuses it
     (FAILED_PRECONDITION "fence rejected") once the token is no longer the current grant;
  2. the external resource (jepsen/resource.py, fenced mode), which refuses any token lower
     than the highest it has accepted — whatever latch answered, since a stale client does
     not know it is stale.
The op's type is latch's answer (ok: the fenced Set applied; fail: fence rejected; info:
unknown); its completion carries "resource": "accepted" | "rejected" | "unreachable". A
fence rejection ends the hold (release follows, and fails: the lock is gone).

Client pauses: before a write, with probability PAUSE_P — and always before the second write
of thread 0's first hold — the thread stops renewing and sleeps longer than the TTL (a GC
pause): its session expires, another client acquires, and the paused client's next writes
must be refused by latch and by the resource. That exercises fencing in every run, with or
without a nemesis.

Run folder: resource.jsonl (the resource's decisions, jepsen/resource.py). Checker "lock".
"""
import time

import grpc

from .. import client as clientmod
from ..runner import FailOp
from . import _common

NAME = "lock"
TARGETS = ("latch",)
CHECKERS = ("lock", "stats")
CHECKER_OPTS = {"lock": {"fenced": True}}  # setup() adds the resource log's path
IDEMPOTENT = set()
LOCK = "jepsen-lock"
DATA_PATH = "/jepsen/lock-data"
TTL = 3
WRITES = 3
HOLD_S = 0.03  # between the writes of one hold
PAUSE_P = 0.05
FENCED = True


class LatchBackend:
    """latch.v1: sessions, Acquire/Release, fenced Set."""
    kind = "latch"
    name = LOCK

    def open_session(self, client):
        r = client.latch.SessionOpen(ttl_seconds=TTL, timeout=client.timeout)
        return r.session, _common.Keeper(client.endpoint, r.session, TTL, "latch")

    def close_session(self, client, ident):
        try:
            client.latch.SessionClose(session=ident, timeout=client.timeout)
        except grpc.RpcError:
            pass

    def acquire(self, client, ident):
        try:
            r = client.latch.Acquire(lock=LOCK, session=ident, timeout=client.timeout)
        except grpc.RpcError as e:
            if _common.server_timed_out(e):
                raise FailOp(clientmod.error_text(e))
            raise
        return {"token": r.token}, r.token

    def data_write(self, client, token, seq):
        """latch's answer to the fenced Set: ("ok", revision) / ("rejected", text);
        raises grpc.RpcError when unknown or failed otherwise."""
        pb = client.pb.latch
        try:
            r = client.latch.Set(path=DATA_PATH, value=b"%d:%d" % (token, seq),
                                 fence=pb.Fence(lock=LOCK, token=token),
                                 timeout=client.timeout)
        except grpc.RpcError as e:
            if (_common.code_of(e) == grpc.StatusCode.FAILED_PRECONDITION
                    and "fence" in _common.details_of(e)):
                return "rejected", _common.details_of(e)
            raise
        return "ok", r.header.revision

    def release(self, client, token, ident):
        client.latch.Release(lock=LOCK, token=token, timeout=client.timeout)


NAME_KEY = "lock-workload"


def setup_common(ctx, mode):
    """Starts the external resource; returns the lock checker's options (its log)."""
    st = {"resource": _common.Resource(ctx.run_dir, mode, ctx.history.t0)}
    ctx.state[NAME_KEY] = st
    return {"fenced": mode == "fenced", "resource_log": st["resource"].log_path}


def setup(ctx):
    CHECKER_OPTS["lock"] = setup_common(ctx, "fenced")
    cl = ctx.new_client(0)
    try:
        for _ in range(30):
            try:
                cl.latch.Create(path=DATA_PATH, value=b"", make_parents=True,
                                timeout=cl.timeout)
                break
            except grpc.RpcError as e:
                if _common.code_of(e) == grpc.StatusCode.ALREADY_EXISTS:
                    break
                cl.failed(e)
                time.sleep(0.5)
    finally:
        cl.close()


def teardown(ctx):
    st = ctx.state.get(NAME_KEY)
    if st:
        st["resource"].stop()


def resource_write(ctx, token, seq, process):
    try:
        ok, _ = ctx.state[NAME_KEY]["resource"].write(token, seq, process)
        return "accepted" if ok else "rejected"
    except OSError:
        return "unreachable"


def run_worker(ctx, thread, client, backend, fenced):
    rng = ctx.rng(thread)
    process = thread
    sess = None  # (ident, keeper)
    forced_pause = thread == 0  # the first hold of thread 0 always pauses (see the module)

    def drop_session(close):
        nonlocal sess
        if sess is not None:
            sess[1].stop()
            if close:
                backend.close_session(client, sess[0])
            sess = None

    def retire():
        nonlocal process
        drop_session(close=False)  # unknown outcome: let the session expire on its own
        process += ctx.concurrency

    try:
        while not ctx.stopping():
            if sess is not None and sess[1].lost.is_set():
                drop_session(close=False)
            if sess is None:
                try:
                    sess = backend.open_session(client)
                except grpc.RpcError as e:
                    client.failed(e)
                    _common.sleep_until_stop(ctx, 0.2)
                    continue
            ident = sess[0]
            got = {}

            def do_acquire(cl, _ident=ident):
                value, token = backend.acquire(cl, _ident)
                got["token"] = token
                return value
            done = ctx.execute(client, process, "acquire", backend.name, None, do_acquire)
            if done["type"] == "info":
                retire()
                continue
            if done["type"] != "ok":
                err = done.get("error") or ""
                if "session" in err or "lease" in err:  # expired while we were away
                    drop_session(close=False)
                _common.sleep_until_stop(ctx, 0.05)
                continue
            token = got["token"]
            retired = False
            for seq in range(1, WRITES + 1):
                if ctx.stopping():
                    break
                if rng.random() < PAUSE_P or (forced_pause and seq == 2):
                    forced_pause = False
                    pause = TTL + 1.5
                    sess[1].pause(pause)
                    _common.sleep_until_stop(ctx, pause)
                time.sleep(HOLD_S)

                def do_write(cl, _t=token, _s=seq):
                    return write_once(ctx, cl, backend, fenced, _t, _s, process)
                done = ctx.execute(client, process, "write", backend.name,
                                   {"token": token, "seq": seq}, do_write)
                if done["type"] == "info":
                    retire()
                    retired = True
                    break
                if done["type"] == "fail":
                    break  # fenced out: the lock is gone
            if retired:
                continue
            done = ctx.execute(client, process, "release", backend.name, {"token": token},
                               lambda cl, _t=token, _i=ident: (
                                   backend.release(cl, _t, _i), {"token": _t})[1])
            if done["type"] == "info":
                retire()
    finally:
        drop_session(close=True)


def write_once(ctx, cl, backend, fenced, token, seq, process):
    """One write: the latch data key (fenced only), then the external resource."""
    value = {"token": token, "seq": seq}
    if not fenced:
        res = resource_write(ctx, token, seq, process)
        if res == "unreachable":
            return {"type": "info", "value": value, "error": "resource unreachable",
                    "resource": res}
        return {"type": "ok", "value": value, "resource": res}
    latch_err = None
    try:
        outcome, detail = backend.data_write(cl, token, seq)
    except grpc.RpcError as e:
        outcome, detail, latch_err = "error", None, e
    res = resource_write(ctx, token, seq, process)
    if outcome == "ok":
        return {"type": "ok", "value": value, "resource": res, "revision": detail}
    if outcome == "rejected":
        return {"type": "fail", "value": value, "error": detail, "resource": res}
    cl.failed(latch_err)
    kind = ctx.classify("write", latch_err)
    return {"type": kind, "value": value, "error": clientmod.error_text(latch_err), "resource": res}


def worker(ctx, thread, client):
    run_worker(ctx, thread, client, LatchBackend(), FENCED)
