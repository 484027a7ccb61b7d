#!/usr/bin/python3
"""latch.v1 Watch (server/svc_latch_watch.c) on three members, through latchtest.LatchStub.

Usage: test_latchd_native_watch.py LATCHD PROTO_DIR

Writes go through the native Create/Set/Delete when the member serves them, else through
etcd's KV service (Put/DeleteRange/Txn on the same path keys); etcd's Txn gives one revision
with several events either way. The expected events of every watch are computed here from
the writes (kind, path, revision; value and stat) with the filter the API documents: the node
itself and its direct children, or its whole subtree when recursive; "/ab" is not below "/a".

Checks: bad path / negative start_revision → INVALID_ARGUMENT; the first response is header
only (its revision = the revision the watch starts after); CREATED/CHANGED/DELETED with
values and stat, in order, for non-recursive and recursive watches of "/a", "/ab" and "/";
one revision's events in one response; a watch through a follower and two overlapping
watches see the same ordered revisions; start_revision replay equals what was seen live; a
watcher that stops and reconnects from last + 1 misses nothing and repeats nothing;
progress_notify sends empty responses (LATCH_WATCH_PROGRESS_MS makes the interval short), a
watch without it gets none; a start below the compaction point → OUT_OF_RANGE "latch:
required revision has been compacted (compact revision N)". SIGTERM with watches open: every
member exits 0, no sanitizer report.

Every wait polls a condition against a generous deadline; nothing is timed. Only the latchd
processes this script started are signalled (by PID). Prints "ok - ..." / "FAIL - ..." lines;
exits 1 if any check failed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (LatchStub, check, cluster, fail, failures,  # noqa: E402
                       leader_from_logs, sanitizer_check, wait_until)

WAIT = 30  # s: bound of every wait for an outcome
PROGRESS_MS = 300  # the hub's progress_notify interval in this test
CREATED, CHANGED, DELETED = 0, 1, 2


class Watcher:
    """One Watch call read by a background thread: responses in arrival order."""

    def __init__(self, stub, **req):
        self.responses = []
        self.error = None  # (code, details) when the call ended with an error
        self.ended = False
        self.lock = threading.Lock()
        self.call = stub.Watch(timeout=600, **req)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import grpc
        try:
            for r in self.call:
                with self.lock:
                    self.responses.append(r)
        except grpc.RpcError as e:
            self.error = (e.code(), e.details())
        self.ended = True

    def events(self):
        with self.lock:
            return [(e.kind, e.path, e.revision) for r in self.responses for e in r.events]

    def full_events(self):
        with self.lock:
            return [e for r in self.responses for e in r.events]

    def wait_for(self, pred):
        return wait_until(lambda: pred(self) or self.ended, WAIT) and pred(self)

    def has_rev(self, rev):
        return self.wait_for(lambda w: any(x[2] >= rev for x in w.events()))

    def cancel(self):
        self.call.cancel()
        self.thread.join(WAIT)


class Writer:
    """Path writes: native Create/Set/Delete when served, else etcd KV. Each returns the
    write's revision; self.log keeps (kind, path, revision, value, version, create_rev)."""

    def __init__(self, grpc, stub, kv, rpc_pb2):
        self.grpc, self.stub, self.kv, self.rpc = grpc, stub, kv, rpc_pb2
        self.log = []
        self.versions = {}  # path -> (version, create_revision)
        self.native = False

    def probe(self):
        try:
            self.stub.Stat(path="/")
            self.native = True
        except self.grpc.RpcError as e:
            self.native = e.code() != self.grpc.StatusCode.UNIMPLEMENTED
        return self.native

    def _record(self, kind, path, rev, value=b""):
        if kind == DELETED:
            self.versions.pop(path, None)
            self.log.append((kind, path, rev, b"", 0, 0))
            return
        ver, crev = self.versions.get(path, (0, rev))
        self.versions[path] = (ver + 1, crev)
        self.log.append((kind, path, rev, value, ver + 1, crev))

    def put(self, path, value):
        """Create (absent) or Set (present) one node."""
        kind = CHANGED if path in self.versions else CREATED
        if self.native:
            if kind == CREATED:
                r = self.stub.Create(path=path, value=value)
            else:
                r = self.stub.Set(path=path, value=value)
            rev = r.stat.mod_revision
        else:
            rev = self.kv("Put", self.rpc.PutRequest(key=path.encode(), value=value),
                          self.rpc.PutResponse).header.revision
        self._record(kind, path, rev, value)
        return rev

    def delete(self, path):
        if self.native:
            rev = self.stub.Delete(path=path).header.revision
        else:
            rev = self.kv("DeleteRange", self.rpc.DeleteRangeRequest(key=path.encode()),
                          self.rpc.DeleteRangeResponse).header.revision
        self._record(DELETED, path, rev)
        return rev

    def txn_puts(self, items):
        """Several creates in one revision (etcd Txn; the native Multi when served)."""
        if self.native:
            ops = [self.stub.pb.Op(create=self.stub.pb.CreateRequest(path=p, value=v))
                   for p, v in items]
            r = self.stub.Multi(ops=ops)
            if not r.succeeded:
                raise RuntimeError("Multi failed: %s" % r.error)
            rev = r.header.revision
        else:
            ops = [self.rpc.RequestOp(request_put=self.rpc.PutRequest(key=p.encode(), value=v))
                   for p, v in items]
            rev = self.kv("Txn", self.rpc.TxnRequest(success=ops),
                          self.rpc.TxnResponse).header.revision
        for p, v in items:
            self._record(CHANGED if p in self.versions else CREATED, p, rev, v)
        return rev


def below(path, key, recursive):
    """The documented filter: the node itself, its direct children, or (recursive) its
    whole subtree."""
    if key == path:
        return True
    pre = "/" if path == "/" else path + "/"
    if not key.startswith(pre) or len(key) == len(pre):
        return False
    return recursive or "/" not in key[len(pre):]


def expected(log, path, recursive, from_rev=1):
    return [(k, p, r) for (k, p, r, _, _, _) in log if r >= from_rev and below(path, p, recursive)]


def check_values_and_stat(name, watcher, log):
    """Every event's value and stat match the write that made it."""
    by = {(k, p, r): (v, ver, crev) for (k, p, r, v, ver, crev) in log}
    bad = []
    for e in watcher.full_events():
        want = by.get((e.kind, e.path, e.revision))
        if want is None:
            bad.append("unexpected %r" % ((e.kind, e.path, e.revision),))
            continue
        v, ver, crev = want
        if e.kind == DELETED:
            ok_ = e.stat.mod_revision == e.revision and e.stat.version == 0 and e.value == b""
        else:
            ok_ = (e.value == v and e.stat.version == ver and e.stat.create_revision == crev
                   and e.stat.mod_revision == e.revision and e.stat.value_size == len(v)
                   and e.stat.owner_session == 0)
        if not ok_:
            bad.append("%r: value %r stat {%s}; want value %r version %d create %d"
                       % ((e.kind, e.path, e.revision), e.value, str(e.stat).replace("\n", " "),
                          v, ver, crev))
    check(name, not bad, "\n".join(bad[:10]))


def run(grpc, members, lead, rpc_pb2):
    follower = next(m for m in members if m is not lead)
    stub = LatchStub(lead.endpoint)
    fstub = LatchStub(follower.endpoint)
    channel = grpc.insecure_channel(lead.endpoint)

    def kv(method, req, resp_cls):
        f = channel.unary_unary("/etcdserverpb.KV/" + method,
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
        return f(req, timeout=WAIT)

    w = Writer(grpc, stub, kv, rpc_pb2)
    print("# writes through the %s API" % ("native" if w.probe() else "etcd KV"), flush=True)

    # ---- bad requests -------------------------------------------------------------------
    for bad in ("a", "/a/", "/a//b", "/a/./b", ""):
        x = Watcher(stub, path=bad)
        x.wait_for(lambda s: s.ended)
        text = "path is empty" if bad == "" else 'bad path "%s"' % bad
        check("path %r: INVALID_ARGUMENT '... %s'" % (bad, text), x.error is not None
              and x.error[0] == grpc.StatusCode.INVALID_ARGUMENT
              and x.error[1].startswith("latch: ") and x.error[1].endswith(text), x.error)
    x = Watcher(stub, path="/a", start_revision=-1)
    x.wait_for(lambda s: s.ended)
    check("negative start_revision: INVALID_ARGUMENT",
          x.error is not None and x.error[0] == grpc.StatusCode.INVALID_ARGUMENT, x.error)

    # ---- live watches -------------------------------------------------------------------
    base = kv("Range", rpc_pb2.RangeRequest(key=b"/"), rpc_pb2.RangeResponse).header.revision
    specs = {
        "a": dict(path="/a"),
        "a_rec": dict(path="/a", recursive=True),
        "ab_rec": dict(path="/ab", recursive=True),
        "root": dict(path="/"),
        "root_rec": dict(path="/", recursive=True),
        "progress": dict(path="/a", recursive=True, progress_notify=True),
    }
    ws = {name: Watcher(stub, **req) for name, req in specs.items()}
    ws["follower"] = Watcher(fstub, path="/a", recursive=True)
    first_ok = all(x.wait_for(lambda s: len(s.responses) >= 1) for x in ws.values())
    firsts = {n: x.responses[0] for n, x in ws.items() if x.responses}
    check("every watch: a first response with a header and no event", first_ok and all(
        len(r.events) == 0 and r.header.revision >= base and r.header.cluster_id != 0
        and r.header.member_id != 0 for r in firsts.values()),
        {n: (str(r), ws[n].error) for n, r in firsts.items()})
    start = w.put("/a", b"A1")
    check("the first response's revision is the one the watch starts after",
          all(r.header.revision < start for r in firsts.values()),
          {n: r.header.revision for n, r in firsts.items()})

    w.put("/a/b", b"B1")
    w.put("/a/b/c", b"C1")
    w.put("/a/b", b"B2")
    w.put("/ab", b"AB1")
    w.put("/ab/x", b"ABX1")
    w.put("/a-x", b"sibling")
    w.put("/a", b"A2")
    w.txn_puts([("/a/t1", b"T1"), ("/a/t2", b"T2"), ("/a/b/t3", b"T3")])
    w.delete("/a/b/c")
    w.put("/a/b/c", b"C2")  # created again: version 1
    w.delete("/a/b/c")
    w.delete("/ab/x")
    last = w.put("/a/end", b"E")
    for name, x in ws.items():
        req = specs.get(name, dict(path="/a", recursive=True))
        n = len(expected(w.log, req["path"], req.get("recursive", False)))
        x.wait_for(lambda s: len(s.events()) >= n)
    for name in ("a", "a_rec", "ab_rec", "root", "root_rec", "follower", "progress"):
        req = specs.get(name, dict(path="/a", recursive=True))
        want = expected(w.log, req["path"], req.get("recursive", False))
        got = ws[name].events()
        check("watch %s %s (%s): exactly the expected events in order" % (
            req["path"], "recursive" if req.get("recursive") else "node+children", name),
            got == want, "got  %r\nwant %r\nerror %r" % (got, want, ws[name].error))
    check("'/ab' and '/a-x' are not seen by '/a'",
          not any(p.startswith("/ab") or p == "/a-x" for (_, p, _) in ws["a_rec"].events()))
    check("non-recursive '/a' sees no grandchild",
          not any(p.count("/") > 2 for (_, p, _) in ws["a"].events()))
    kinds = {(k, p) for (k, p, _) in ws["a_rec"].events()}
    check("CREATED, CHANGED and DELETED all seen",
          {(CREATED, "/a/b/c"), (CHANGED, "/a/b"), (DELETED, "/a/b/c")} <= kinds, kinds)
    check_values_and_stat("events carry the value and stat of their write", ws["a_rec"], w.log)
    txn_rev = next(r for (k, p, r, _, _, _) in w.log if p == "/a/t1")
    split = [r for r in ws["root_rec"].responses
             if any(e.revision == txn_rev for e in r.events)]
    check("one revision's events arrive in one response",
          len(split) == 1 and sum(1 for e in split[0].events if e.revision == txn_rev) == 3,
          split)
    revs = [r for (_, _, r) in ws["a_rec"].events()]
    check("revisions are ordered, no duplicates", revs == sorted(revs) and len(set(
        (k, p, r) for (k, p, r) in ws["a_rec"].events())) == len(revs))
    check("a watch through a follower sees the same sequence as one on the leader",
          ws["follower"].events() == ws["a_rec"].events())
    in_a = [e for e in ws["root_rec"].events() if below("/a", e[1], True)]
    check("overlapping watches ('/' and '/a', recursive) see the same ordered revisions",
          in_a == ws["a_rec"].events(), "%r\n%r" % (in_a, ws["a_rec"].events()))

    # ---- progress_notify ----------------------------------------------------------------
    def empties(x, after_rev):
        return [r for r in x.responses[1:] if not r.events and r.header.revision >= after_rev]

    check("progress_notify: an empty response after the last event, at its revision or later",
          wait_until(lambda: empties(ws["progress"], last), WAIT),
          [str(r) for r in ws["progress"].responses[-3:]])
    check("no progress notification without progress_notify",
          not [r for r in ws["a_rec"].responses[1:] if not r.events])

    # ---- replay from start_revision -----------------------------------------------------
    rep = Watcher(stub, path="/a", recursive=True, start_revision=start)
    rep.has_rev(last)
    check("start_revision replay equals what was seen live",
          rep.events() == ws["a_rec"].events(), "%r\n%r" % (rep.events(), ws["a_rec"].events()))
    check("replayed events carry the same values and stat",
          [(e.value, str(e.stat)) for e in rep.full_events()]
          == [(e.value, str(e.stat)) for e in ws["a_rec"].full_events()])
    rep.cancel()

    # ---- flow control: a reader that does not keep up ------------------------------------
    # The call's queue (1 MiB) and the HTTP/2 windows fill while nobody reads: the hub is told
    # would_block and resumes from history when the call is writable again.
    big = Watcher.__new__(Watcher)
    big.responses, big.error, big.ended, big.lock = [], None, False, threading.Lock()
    big.call = stub.Watch(timeout=600, path="/big", recursive=True)
    first_big = next(big.call)  # the header-only first response; then nobody reads
    w.put("/big", b"")
    chunk = 256 << 10
    for i in range(48):
        w.put("/big/v%02d" % i, bytes([65 + i % 26]) * chunk)
    big_last = w.put("/big/end", b"E")
    big.thread = threading.Thread(target=big._run, daemon=True)
    big.thread.start()
    want_big = expected(w.log, "/big", True)
    big.wait_for(lambda s: len(s.events()) >= len(want_big))
    vals = {p: v for (k, p, r, v, _, _) in w.log if p.startswith("/big")}
    check("a slow reader gets every event (12 MiB of values) in order, values intact",
          big.events() == want_big and not first_big.events
          and all(e.value == vals[e.path] for e in big.full_events()),
          "got %d events, want %d (last %r, want %d); error %r" % (
              len(big.events()), len(want_big), big.events()[-1:], big_last, big.error))
    big.cancel()

    # ---- a slow reader overtaken by a compaction -----------------------------------------
    # It is blocked far behind (16 MiB of values unread) when the history it still needs is
    # compacted: once it reads again it gets a prefix of the events, then OUT_OF_RANGE.
    slow = Watcher.__new__(Watcher)
    slow.responses, slow.error, slow.ended, slow.lock = [], None, False, threading.Lock()
    slow.call = stub.Watch(timeout=600, path="/slow", recursive=True)
    next(slow.call)
    w.put("/slow", b"")
    for i in range(64):
        w.put("/slow/v%02d" % i, bytes([97 + i % 26]) * chunk)
    slow_last = w.put("/slow/end", b"E")
    kv("Compact", rpc_pb2.CompactionRequest(revision=slow_last), rpc_pb2.CompactionResponse)
    slow.thread = threading.Thread(target=slow._run, daemon=True)
    slow.thread.start()
    slow.wait_for(lambda s: s.ended)
    want_slow = expected(w.log, "/slow", True)
    got_slow = slow.events()
    msg = "latch: required revision has been compacted (compact revision %d)" % slow_last
    check("a blocked watcher overtaken by a compaction: a prefix of its events, then "
          "OUT_OF_RANGE %r" % msg,
          slow.error is not None and slow.error[0] == grpc.StatusCode.OUT_OF_RANGE
          and slow.error[1] == msg and got_slow == want_slow[:len(got_slow)]
          and len(got_slow) < len(want_slow),
          "error %r; got %d of %d events" % (slow.error, len(got_slow), len(want_slow)))

    # ---- reconnect from last + 1 (writes through etcd's KV API on the path keys) ----------
    native, w.native = w.native, False
    r1 = Watcher(fstub, path="/r", recursive=True)
    r1.wait_for(lambda s: len(s.responses) >= 1)
    r_start = w.put("/r", b"0")
    for i in range(5):
        w.put("/r/k%d" % i, b"v%d" % i)
    mid = w.log[-1][2]
    r1.has_rev(mid)
    r1.cancel()
    seen = r1.events()
    resume = seen[-1][2] + 1 if seen else r_start
    for i in range(5):
        w.put("/r/k%d" % i, b"w%d" % i)  # while no watcher is connected
    w.delete("/r/k0")
    r2 = Watcher(fstub, path="/r", recursive=True, start_revision=resume)
    for i in range(5, 8):
        w.put("/r/k%d" % i, b"v%d" % i)  # after the reconnect
    r_last = w.log[-1][2]
    r2.has_rev(r_last)
    joined = seen + r2.events()
    want = expected(w.log, "/r", True, r_start)
    check("reconnecting from last + 1 misses nothing and repeats nothing",
          joined == want, "got  %r\nwant %r" % (joined, want))
    r2.cancel()
    w.native = native

    # ---- compaction ---------------------------------------------------------------------
    cur = w.put("/c", b"x")
    kv("Compact", rpc_pb2.CompactionRequest(revision=cur, physical=True),
       rpc_pb2.CompactionResponse)
    # a linearizable read through the follower: it has applied the compaction after it
    fchannel = grpc.insecure_channel(follower.endpoint)
    fchannel.unary_unary("/etcdserverpb.KV/Range",
                         request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=rpc_pb2.RangeResponse.FromString)(
        rpc_pb2.RangeRequest(key=b"/c"), timeout=WAIT)
    for name, s in (("leader", stub), ("follower", fstub)):
        c = Watcher(s, path="/a", recursive=True, start_revision=start)
        c.wait_for(lambda x: x.ended)
        msg = "latch: required revision has been compacted (compact revision %d)" % cur
        check("compacted start (%s): OUT_OF_RANGE %r" % (name, msg), c.error is not None
              and c.error[0] == grpc.StatusCode.OUT_OF_RANGE and c.error[1] == msg
              and not c.responses, (c.error, c.responses))
    at = Watcher(stub, path="/a", recursive=True, start_revision=cur)
    check("a start at the compaction point is still served",
          at.wait_for(lambda x: len(x.responses) >= 1) and at.error is None, at.error)
    at.cancel()

    # ---- the other watches stay open until the members stop (shutdown with watches) -------
    check("the live watches are still open", all(not x.ended for x in ws.values()),
          {n: x.error for n, x in ws.items() if x.ended})
    return ws


def main():
    if len(sys.argv) < 2:
        print("usage: test_latchd_native_watch.py LATCHD [PROTO_DIR]", file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    proto_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../../../api/proto")
    try:
        import grpc
    except ImportError:
        print("SKIP: python3-grpcio is not installed")
        return 0
    root = tempfile.mkdtemp(prefix="latchd-nwatch-")
    members = []
    os.environ["LATCH_WATCH_PROGRESS_MS"] = str(PROGRESS_MS)
    try:
        out = os.path.join(root, "py")
        os.makedirs(out)
        subprocess.run(["protoc", "--python_out=" + out, "etcdserverpb/rpc.proto",
                        "mvccpb/kv.proto", "authpb/auth.proto"],
                       cwd=os.path.abspath(proto_dir), check=True)
        sys.path.insert(0, out)
        from etcdserverpb import rpc_pb2
        members, healthy = cluster(latchd, os.path.join(root, "c"), 3, prefix="w")
        if not check("three members healthy", healthy, "\n".join(m.tail() for m in members)):
            return 1
        leader = [None]
        check("a leader is known", wait_until(
            lambda: leader.__setitem__(0, leader_from_logs(members)[0]) or leader[0], WAIT))
        t0 = time.monotonic()
        run(grpc, members, leader[0] or members[0], rpc_pb2)
        print("# checks took %.1f s" % (time.monotonic() - t0), flush=True)
    except Exception as e:  # noqa: BLE001
        import traceback
        fail("unexpected exception", traceback.format_exc() + repr(e))
    finally:
        statuses = [m.terminate() for m in members]  # open watches end with the server
        for m in members:
            m.kill()
        if members:
            check("every member exits 0 on SIGTERM with watches open",
                  statuses == [0] * len(members), statuses)
            sanitizer_check(members, "native watch")
        if failures:
            for m in members:
                print(m.tail(40))
        shutil.rmtree(root, ignore_errors=True)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
