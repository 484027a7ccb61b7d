"""election — latch.v1 elections: at most one leader per token, Observe streams that agree
(issue 7, item 3). Target latch.

Each client thread, per process: a session (TTL 3 s, renewed by a Keeper pinned to the
thread's node); `campaign` value "p<process>" (Campaign, waiting up to the op timeout) -> ok
{"token": t}; PROCLAIMS `proclaim` {"token": t, "value": "p<process>-<n>"} (ok, or fail "not
leader" once its token no longer leads); `resign` {"token": t}. Before a proclaim, with
probability PAUSE_P (and always before the second proclaim of thread 0's first leadership),
the leader pauses longer than the TTL with renewals stopped: its session expires, another
candidate leads, and the old leader's next proclaim must fail.

OBSERVERS observer threads (started in setup(), each on its own channel to node i) follow
Observe from the start; a failed stream is re-opened on the next node (it restarts with the
current leader: "reconnects" lists the index of each restart in "leaders"). final(): a
fresh candidate campaigns and proclaims a sentinel value, each observer waits (bounded)
until it has seen it, then resigns. Each observer is one `observe` op (its own process, >=
1000000) from start to end: ok {"leaders": [[revision, token, value], ...]} (token 0: no
leader), extras "reconnects", "caught_up". Checker "election".
"""
import threading
import time

import grpc

from .. import client as clientmod
from ..runner import FailOp
from . import _common

NAME = "election"
TARGETS = ("latch",)
CHECKERS = ("election", "stats")
IDEMPOTENT = set()
ELECTION = "jepsen-election"
TTL = 3
PROCLAIMS = 3
HOLD_S = 0.05
PAUSE_P = 0.1
OBSERVERS = 3
CATCH_UP_S = 60


class Observer:
    def __init__(self, ctx, i):
        self.ctx, self.i = ctx, i
        self.leaders = []
        self.reconnects = []
        self.errors = []
        self.node = i % len(ctx.endpoints())
        self.stop = threading.Event()
        self.seen = threading.Condition()
        self.call = None
        self.process = ctx.final_process()
        self.op = ctx.history.invoke(self.process, "observe", ELECTION, None, node=self.node)
        self.thread = threading.Thread(target=self._run, daemon=True, name="observer-%d" % i)
        self.thread.start()

    def _run(self):
        eps = self.ctx.endpoints()
        first = True
        while not self.stop.is_set():
            ch = grpc.insecure_channel(eps[self.node], options=clientmod.CHANNEL_OPTIONS)
            try:
                with self.seen:
                    at = len(self.leaders)  # failed attempts in a row give one restart point
                    if not first and (not self.reconnects or self.reconnects[-1] != at):
                        self.reconnects.append(at)
                first = False
                stub = clientmod.Stub(ch, "latch.v1.Latch")
                self.call = stub.Observe(election=ELECTION)
                for r in self.call:
                    with self.seen:
                        self.leaders.append([r.header.revision, r.token,
                                             r.value.decode("utf-8", "replace")])
                        self.seen.notify_all()
            except grpc.RpcError as e:
                if self.stop.is_set():
                    return
                self.errors.append(clientmod.error_text(e))
            except ValueError as e:
                if self.stop.is_set():
                    return
                self.errors.append(repr(e))
            finally:
                ch.close()
            if self.stop.is_set():
                return
            self.node = (self.node + 1) % len(eps)
            time.sleep(0.2)

    def wait_for_value(self, value, timeout):
        end = time.monotonic() + timeout
        with self.seen:
            while time.monotonic() < end:
                if any(entry[2] == value for entry in self.leaders):
                    return True
                self.seen.wait(0.2)
        return False

    def finish(self, caught_up):
        self.stop.set()
        if self.call is not None:
            self.call.cancel()
        self.thread.join(timeout=10)
        with self.seen:
            leaders = list(self.leaders)
        self.ctx.history.complete(self.op, "ok", {"leaders": leaders},
                                  reconnects=self.reconnects, caught_up=caught_up,
                                  errors=self.errors[-20:])


def setup(ctx):
    ctx.state["election"] = {"observers": [Observer(ctx, i) for i in range(OBSERVERS)]}


def _campaign(cl, sess, value):
    try:
        r = cl.latch.Campaign(election=ELECTION, session=sess, value=value.encode(),
                              timeout=cl.timeout)
    except grpc.RpcError as e:
        if _common.server_timed_out(e):
            raise FailOp(clientmod.error_text(e))
        raise
    return {"token": r.token}


def _proclaim(cl, token, value):
    try:
        cl.latch.Proclaim(election=ELECTION, token=token, value=value.encode(),
                          timeout=cl.timeout)
    except grpc.RpcError as e:
        if _common.code_of(e) == grpc.StatusCode.FAILED_PRECONDITION:
            raise FailOp(clientmod.error_text(e), {"token": token, "value": value})
        raise
    return {"token": token, "value": value}


def _resign(cl, token):
    try:
        cl.latch.Resign(election=ELECTION, token=token, timeout=cl.timeout)
    except grpc.RpcError as e:
        if _common.code_of(e) == grpc.StatusCode.NOT_FOUND:
            raise FailOp(clientmod.error_text(e), {"token": token})
        raise
    return {"token": token}


def worker(ctx, thread, client):
    rng = ctx.rng(thread)
    process = thread
    sess = None
    forced_pause = thread == 0  # thread 0's first leadership always pauses (see the module)

    def drop(close):
        nonlocal sess
        if sess is not None:
            sess[1].stop()
            if close:
                try:
                    client.latch.SessionClose(session=sess[0], timeout=client.timeout)
                except grpc.RpcError:
                    pass
            sess = None
    try:
        while not ctx.stopping():
            if sess is not None and sess[1].lost.is_set():
                drop(False)
            if sess is None:
                try:
                    r = client.latch.SessionOpen(ttl_seconds=TTL, timeout=client.timeout)
                    sess = (r.session, _common.Keeper(client.endpoint, r.session, TTL))
                except grpc.RpcError as e:
                    client.failed(e)
                    _common.sleep_until_stop(ctx, 0.2)
                    continue
            value = "p%d" % process
            done = ctx.execute(client, process, "campaign", ELECTION, value,
                               lambda cl, _s=sess[0], _v=value: _campaign(cl, _s, _v))
            if done["type"] == "info":
                drop(False)
                process += ctx.concurrency
                continue
            if done["type"] != "ok":
                if "session" in (done.get("error") or ""):  # expired while we were away
                    drop(False)
                _common.sleep_until_stop(ctx, 0.05)
                continue
            token = done["value"]["token"]
            retired = False
            for n in range(1, PROCLAIMS + 1):
                if ctx.stopping():
                    break
                if rng.random() < PAUSE_P or (forced_pause and n == 2):
                    forced_pause = False
                    sess[1].pause(TTL + 1.5)
                    _common.sleep_until_stop(ctx, TTL + 1.5)
                time.sleep(HOLD_S)
                v = "p%d-%d" % (process, n)
                done = ctx.execute(client, process, "proclaim", ELECTION,
                                   {"token": token, "value": v},
                                   lambda cl, _t=token, _v=v: _proclaim(cl, _t, _v))
                if done["type"] == "info":
                    retired = True
                    break
                if done["type"] == "fail":
                    break
            if retired:
                drop(False)
                process += ctx.concurrency
                continue
            done = ctx.execute(client, process, "resign", ELECTION, {"token": token},
                               lambda cl, _t=token: _resign(cl, _t))
            if done["type"] == "info":
                drop(False)
                process += ctx.concurrency
    finally:
        drop(True)


def final(ctx, clients):
    """A sentinel leader every observer must see, then the observers' ops end."""
    st = ctx.state["election"]
    cl = clients[0]
    sentinel = "final-sentinel"
    seen = False
    sess = None
    try:
        for _ in range(20):
            try:
                sess = cl.latch.SessionOpen(ttl_seconds=10, timeout=cl.timeout).session
                break
            except grpc.RpcError as e:
                cl.failed(e)
                time.sleep(0.5)
        if sess is not None:
            for _ in range(3):  # earlier candidates' sessions may take a TTL to expire
                p = ctx.final_process()
                done = ctx.execute(cl, p, "campaign", ELECTION, "final",
                                   lambda c: _campaign(c, sess, "final"))
                if done["type"] != "ok":
                    continue
                token = done["value"]["token"]
                done = ctx.execute(cl, p, "proclaim", ELECTION,
                                   {"token": token, "value": sentinel},
                                   lambda c: _proclaim(c, token, sentinel))
                seen = done["type"] == "ok"
                break
    finally:
        for o in st["observers"]:
            o.finish(seen and o.wait_for_value(sentinel, CATCH_UP_S))
        if sess is not None:
            try:
                cl.latch.SessionClose(session=sess, timeout=cl.timeout)
            except grpc.RpcError:
                pass


def teardown(ctx):
    for o in ctx.state.get("election", {}).get("observers", []):
        if not o.stop.is_set():
            o.finish(False)
