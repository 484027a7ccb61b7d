"""watch — watchers on overlapping key ranges through the etcd Watch API, plus writers
(issue 7, item 3). Both targets.

Keys "k0".."k9" (etcd keys "jepsen/watch/k<i>"). Client threads `write` unique ints to
random keys (Put; ok value the int, extra "revision": the Put's revision). WATCHERS watcher
threads, started in setup() before any write, each watch one range of keys from the
revision after setup (start_revision) over their own channel to one node (watcher i starts
at node i); when a stream fails the watcher re-opens it on the next node from the last
revision it saw + 1 (etcd's resume rule), counting "reconnects". A compaction that cancels
the watch is recorded ("compacted") and the watcher resumes from the compact revision.

final(): a sentinel write to "k5" (in every range), then each watcher waits (bounded) until
it has seen the sentinel's revision (or a later one: another sentinel follows every 10 s in
case the event was lost), so it has been delivered every earlier event of its range. Each watcher is one `watch` op (a process of its own, >= 1000000) from its start
to that point: ok value {"events": [[revision, key, value], ...]} in arrival order, extras
"start_revision", "reconnects", "caught_up", "compacted". Checker "watch": every watcher
sees the same ordered, gap-free revisions of its range, matching the ok writes.
"""
import queue
import threading
import time

import grpc

from .. import client as clientmod

NAME = "watch"
TARGETS = ("latch", "etcd")
CHECKERS = ("watch", "stats")
IDEMPOTENT = set()
PREFIX = b"jepsen/watch/"
KEYS = 10
# [first, last) key indexes: overlapping, and one covering everything
RANGES = ((0, 6), (3, 10), (0, 10), (5, 8), (2, 7))
WATCHERS = 5
SENTINEL_KEY = 5
CATCH_UP_S = 60


def _key(i):
    return PREFIX + b"k%d" % i


def _range_end(last):
    # keys k0..k9 are single digits: "k:" sorts right after "k9"
    return PREFIX + (b"k%d" % last if last < 10 else b"k:")


class Watcher:
    def __init__(self, ctx, i, first, last, start_rev):
        self.ctx, self.i, self.first, self.last = ctx, i, first, last
        self.start_rev = start_rev
        self.events = []
        self.last_rev = start_rev - 1
        self.reconnects = 0
        self.compacted = []
        self.errors = []
        self.node = i % len(ctx.endpoints())
        self.stop = threading.Event()
        self.seen = threading.Condition()
        self.call = None
        self.process = ctx.final_process()
        self.op = ctx.history.invoke(self.process, "watch", ["k%d" % first, "k%d" % last], None,
                                     node=self.node)
        self.thread = threading.Thread(target=self._run, daemon=True, name="watcher-%d" % i)
        self.thread.start()

    def _stream(self, endpoint):
        pb = clientmod.protos().rpc
        ch = grpc.insecure_channel(endpoint, options=clientmod.CHANNEL_OPTIONS)
        q = queue.Queue()
        create = pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=_key(self.first), range_end=_range_end(self.last),
            start_revision=self.last_rev + 1))

        def reqs():
            yield create
            while True:
                item = q.get()
                if item is None:
                    return
                yield item
        try:
            stub = clientmod.Stub(ch, "etcdserverpb.Watch")
            self.call = stub.Watch(reqs())
            for resp in self.call:
                if self.stop.is_set():
                    return
                if resp.canceled:
                    if resp.compact_revision:
                        self.compacted.append(resp.compact_revision)
                        self.last_rev = max(self.last_rev, resp.compact_revision - 1)
                    self.errors.append("canceled: %s" % resp.cancel_reason)
                    return
                for ev in resp.events:
                    rev = ev.kv.mod_revision
                    name = ev.kv.key[len(PREFIX):].decode("utf-8", "replace")
                    try:
                        val = int(ev.kv.value)
                    except ValueError:
                        val = ev.kv.value.decode("utf-8", "replace")
                    with self.seen:
                        self.events.append([rev, name, val])
                        self.last_rev = max(self.last_rev, rev)
                        self.seen.notify_all()
        finally:
            q.put(None)
            ch.close()

    def _run(self):
        eps = self.ctx.endpoints()
        while not self.stop.is_set():
            try:
                self._stream(eps[self.node])
            except grpc.RpcError as e:
                if self.stop.is_set():
                    return
                self.errors.append(clientmod.error_text(e))
            except ValueError as e:  # channel closed under the iterator at shutdown
                if self.stop.is_set():
                    return
                self.errors.append(repr(e))
            if self.stop.is_set():
                return
            self.reconnects += 1
            self.node = (self.node + 1) % len(eps)
            time.sleep(0.2)

    def wait_for(self, rev, timeout):
        end = time.monotonic() + timeout
        with self.seen:
            while self.last_rev < rev and time.monotonic() < end:
                self.seen.wait(0.2)
            return self.last_rev >= rev

    def finish(self, caught_up):
        self.stop.set()
        if self.call is not None:
            self.call.cancel()
        self.thread.join(timeout=10)
        with self.seen:
            events = list(self.events)
        self.ctx.history.complete(self.op, "ok", {"events": events},
                                  start_revision=self.start_rev, reconnects=self.reconnects,
                                  caught_up=caught_up, compacted=self.compacted,
                                  errors=self.errors[-20:])


def setup(ctx):
    cl = ctx.new_client(0)
    rev = None
    try:
        for _ in range(60):
            try:
                _, rev = cl.get(_key(0))
                break
            except grpc.RpcError as e:
                cl.failed(e)
                time.sleep(0.5)
    finally:
        cl.close()
    if rev is None:
        raise RuntimeError("watch: no revision from the cluster at setup")
    st = {"next": 0, "watchers": []}
    ctx.state["watch"] = st
    for i in range(WATCHERS):
        first, last = RANGES[i % len(RANGES)]
        st["watchers"].append(Watcher(ctx, i, first, last, rev + 1))


def op(ctx, process, rng):
    st = ctx.state["watch"]
    with ctx.state_lock:
        st["next"] += 1
        v = st["next"]
    return "write", "k%d" % rng.randrange(KEYS), v


def _write(client, key, value):
    rev = client.put(PREFIX + key.encode(), str(value).encode())
    return {"type": "ok", "value": value, "revision": rev}


def invoke(ctx, client, op):
    return _write(client, op["key"], op["value"])


def _sentinel(ctx, cl):
    """One ok write to SENTINEL_KEY (a few tries); its revision, or None."""
    st = ctx.state["watch"]
    for _ in range(20):
        with ctx.state_lock:
            st["next"] += 1
            v = st["next"]
        done = ctx.execute(cl, ctx.final_process(), "write", "k%d" % SENTINEL_KEY, v,
                           lambda c, _v=v: _write(c, "k%d" % SENTINEL_KEY, _v))
        if done["type"] == "ok":
            return done["revision"]
        time.sleep(0.5)
    return None


def final(ctx, clients):
    """Sentinel writes until every watcher has seen one (a watcher that saw revision r has
    been sent every earlier event of its range); a new sentinel every CATCH_UP_S/6 s, in case
    the event itself was lost (a server that skips events must not stall the run)."""
    st = ctx.state["watch"]
    cl = clients[0]
    first = None
    end = time.monotonic() + CATCH_UP_S
    pending = list(st["watchers"])
    while pending and time.monotonic() < end:
        rev = _sentinel(ctx, cl)
        if rev is None:
            break
        first = first or rev
        round_end = min(end, time.monotonic() + CATCH_UP_S / 6.0)
        pending = [w for w in pending
                   if not w.wait_for(first, max(0.0, round_end - time.monotonic()))]
    for w in st["watchers"]:
        w.finish(first is not None and w not in pending)


def teardown(ctx):
    st = ctx.state.get("watch")
    for w in (st or {}).get("watchers", []):
        if not w.stop.is_set():
            w.finish(False)
