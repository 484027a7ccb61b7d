#!/usr/bin/python3
"""latch.v1 sessions and the tree on three latchd members, through python3-grpcio.

Usage: test_latchd_tree.py LATCHD

  Sessions: SessionOpen raises the TTL to the minimum; SessionKeepAlive answers the TTL (0
  once closed); SessionClose deletes the session's ephemeral nodes in one revision and
  reports how many; an ephemeral node outlives a session that is kept alive, and vanishes
  on its own once its keep-alives stop (it was still there after they stopped: no early
  expiry; no timing is asserted).
  Create: value and stat; exists -> ALREADY_EXISTS; no parent -> NOT_FOUND; make_parents;
  bad paths (no leading '/', trailing '/', '//', '.', '..', the root) -> INVALID_ARGUMENT;
  an unknown session -> NOT_FOUND; sequential names are the create revision in 20 digits,
  strictly increasing, never repeated, also across a leader kill.
  Get/Stat: value, versions, num_children, cversion; serializable on a follower.
  Set: expected version, bad version, missing node; an ephemeral node stays ephemeral.
  Delete: not empty -> FAILED_PRECONDITION; recursive deletes the subtree in one revision.
  Children: name order, paging with after/limit and `more`, stats; missing path NOT_FOUND.
  Multi: all ops in one revision; a failing op -> succeeded false, its index and message,
  nothing applied.
  Fences: a write fenced by a lock that nobody holds is rejected FAILED_PRECONDITION naming
  the current token (0), and nothing is written.
  Reserved keys: etcdctl may read but not write keys starting with \\x00 (InvalidArgument),
  nor delete a range reaching them.
  Everything written through the native API is visible to etcdctl with the same revisions.

Only the latchd processes this script started are signalled (by PID). Prints "ok - ..." /
"FAIL - ..." lines; exits 1 if any check failed.
"""

import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (LatchStub, check, cluster, etcdctl, fail, failures,  # noqa: E402
                       leader_from_logs, sanitizer_check, wait_until)

WAIT = 30  # s: bound of every wait for an outcome


def err_of(fn):
    """(code name, details) of the RpcError fn raises, or (None, result)."""
    import grpc
    try:
        return None, fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()


def expect_error(name, fn, code, text=None):
    got, details = err_of(fn)
    check(name, got == code and (text is None or text in (details or "")),
          "got %s %r, want %s %r" % (got, details, code, text))


class KeepAlive:
    """A SessionKeepAlive stream renewing one session every `every` seconds until stop()."""

    def __init__(self, stub, session, every=0.5):
        self.q = queue.Queue()
        self.stop_flag = threading.Event()
        self.ttls = []
        self.session = session
        self.every = every
        self.pb = stub.pb
        self.responses = stub.SessionKeepAlive(self._requests(), timeout=300)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _requests(self):
        while not self.stop_flag.is_set():
            yield self.pb.SessionKeepAliveRequest(session=self.session)
            self.stop_flag.wait(self.every)

    def _read(self):
        try:
            for r in self.responses:
                self.ttls.append(r.ttl_seconds)
        except Exception:  # the stream ends when stopped
            pass

    def stop(self):
        self.stop_flag.set()
        self.responses.cancel()
        self.thread.join(10)


def main():
    latchd = sys.argv[1]
    root = tempfile.mkdtemp(prefix="latchd-tree-")
    members, healthy = cluster(latchd, root, 3, prefix="t")
    try:
        if not healthy:
            fail("cluster healthy", "".join(m.tail() for m in members))
            return
        leader = None
        wait_until(lambda: leader_from_logs(members)[0] is not None, WAIT)
        leader = leader_from_logs(members)[0]
        followers = [m for m in members if m is not leader]
        ep = followers[0].endpoint
        s = LatchStub(ep, timeout=WAIT)
        sf = LatchStub(followers[1].endpoint, timeout=WAIT)
        pb = s.pb

        # ---- sessions
        o = s.SessionOpen(ttl_seconds=1)
        check("session: TTL raised to the minimum", o.ttl_seconds >= 2, o)
        sess = s.SessionOpen(ttl_seconds=4).session
        check("session: id > 0", sess > 0)
        ka = KeepAlive(s, sess)
        wait_until(lambda: len(ka.ttls) >= 2, WAIT)
        check("session: keep-alive answers the TTL", ka.ttls[:2] == [4, 4], ka.ttls)

        # ---- create
        c = s.Create(path="/app", value=b"cfg")
        check("create: path and stat", c.path == "/app" and c.stat.version == 1 and
              c.stat.create_revision == c.header.revision and c.stat.value_size == 3, c)
        expect_error("create: exists", lambda: s.Create(path="/app"), "ALREADY_EXISTS",
                     "latch: node exists")
        expect_error("create: no parent", lambda: s.Create(path="/none/x"), "NOT_FOUND",
                     "latch: no node")
        for bad in ["app", "/app/", "//a", "/a//b", "/a/./b", "/a/..", "/"]:
            expect_error("create: bad path %r" % bad, lambda: s.Create(path=bad),
                         "INVALID_ARGUMENT", "latch: ")
        expect_error("create: unknown session", lambda: s.Create(path="/eph", session=987654),
                     "NOT_FOUND", "987654")
        c = s.Create(path="/deep/a/b", value=b"v", make_parents=True)
        st = s.Stat(path="/deep/a")
        check("create: make_parents", c.path == "/deep/a/b" and st.stat.num_children == 1 and
              st.stat.create_revision == c.header.revision, st)
        e = s.Create(path="/app/eph", value=b"e", session=sess)
        check("create: ephemeral owner", e.stat.owner_session == sess, e)

        # ---- get / stat / set
        g = s.Get(path="/app")
        check("get: value and counters", g.value == b"cfg" and g.stat.num_children == 1 and
              g.stat.cversion == 1 and g.stat.version == 1, g)
        wait_until(lambda: err_of(lambda: sf.Get(path="/app/eph", serializable=True))[0] is None,
                   WAIT)
        gf = sf.Get(path="/app", serializable=True)
        check("get: serializable on a follower", gf.value == b"cfg", gf)
        expect_error("get: missing", lambda: s.Get(path="/nope"), "NOT_FOUND")
        r = s.Set(path="/app", value=b"cfg2", expected_version=1)
        check("set: version 2", r.stat.version == 2 and r.stat.num_children == 1, r)
        expect_error("set: bad version", lambda: s.Set(path="/app", value=b"x", expected_version=1),
                     "FAILED_PRECONDITION", "latch: bad version")
        expect_error("set: missing node", lambda: s.Set(path="/nope", value=b"x"), "NOT_FOUND")
        r = s.Set(path="/app/eph", value=b"e2")
        check("set: an ephemeral node stays ephemeral", r.stat.owner_session == sess, r)

        # ---- children
        for i in range(7):
            s.Create(path="/kids/c%d" % i, value=b"%d" % i, make_parents=True)
        s.Create(path="/kids/c3/grand", value=b"g")
        names, after, pages = [], "", 0
        while True:
            page = s.Children(path="/kids", after=after, limit=3)
            pages += 1
            names += [ch.name for ch in page.children]
            if not page.more:
                break
            after = page.children[-1].name
        check("children: paged in name order", names == ["c%d" % i for i in range(7)] and
              pages == 3, (names, pages))
        kid = s.Children(path="/kids", after="c2", limit=1).children[0]
        check("children: stat", kid.name == "c3" and kid.stat.num_children == 1, kid)
        expect_error("children: missing path", lambda: s.Children(path="/nope"), "NOT_FOUND")

        # ---- delete
        expect_error("delete: not empty", lambda: s.Delete(path="/kids"), "FAILED_PRECONDITION",
                     "latch: node not empty")
        d = s.Delete(path="/kids", recursive=True)
        check("delete: recursive", d.deleted == 9, d)
        expect_error("delete: gone", lambda: s.Stat(path="/kids/c3/grand"), "NOT_FOUND")

        # ---- multi
        rev0 = s.Stat(path="/").header.revision
        r = s.Multi(ops=[pb.Op(create=pb.CreateRequest(path="/mx", value=b"1")),
                         pb.Op(create=pb.CreateRequest(path="/mx/s-", sequential=True)),
                         pb.Op(set=pb.SetRequest(path="/app", value=b"cfg3", expected_version=2)),
                         pb.Op(check=pb.Check(path="/zz", absent=True))])
        mrev = r.header.revision
        check("multi: every op in one revision", r.succeeded and r.header.revision == rev0 + 1
              and r.results[1].path == "/mx/s-%020d" % (rev0 + 1)
              and r.results[2].stat.version == 3, r)
        r = s.Multi(ops=[pb.Op(create=pb.CreateRequest(path="/my")),
                         pb.Op(delete=pb.DeleteRequest(path="/mx", recursive=True)),
                         pb.Op(check=pb.Check(path="/app", expected_version=1))])
        check("multi: failing op named, nothing applied",
              not r.succeeded and r.failed_op == 2 and "bad version" in r.error, r)
        check("multi: nothing applied", err_of(lambda: s.Stat(path="/my"))[0] == "NOT_FOUND"
              and s.Stat(path="/mx").stat.num_children == 1)
        expect_error("multi: bad path names the op",
                     lambda: s.Multi(ops=[pb.Op(check=pb.Check(path="/a")),
                                          pb.Op(create=pb.CreateRequest(path="/b/"))]),
                     "INVALID_ARGUMENT", "op 1")

        # ---- fences without a holder
        expect_error("fence: unheld lock rejects the write",
                     lambda: s.Set(path="/app", value=b"evil", fence=pb.Fence(lock="L", token=5)),
                     "FAILED_PRECONDITION", "current token 0")
        check("fence: nothing written", s.Get(path="/app").value == b"cfg3")
        expect_error("fence: token must be positive",
                     lambda: s.Delete(path="/app", fence=pb.Fence(lock="L", token=0)),
                     "INVALID_ARGUMENT")

        # ---- reserved keys through the etcd API
        import etcd3  # python3-etcd3: argv cannot carry the NUL byte
        host, port = ep.split(":")
        e3 = etcd3.client(host=host, port=int(port), timeout=WAIT)
        try:
            e3.put(b"\x00lock/x/w0000000000000001", b"forged")
            check("reserved: etcd put refused", False, "accepted")
        except Exception as ex:
            check("reserved: etcd put refused", "reserved" in str(ex), repr(ex))
        e3.close()
        r = etcdctl(ep, "del", "", "--from-key")
        check("reserved: etcdctl del --from-key refused", r.rc != 0 and "reserved" in r.err, r)
        r = etcdctl(ep, "get", "/app", "-w", "json")
        doc = json.loads(r.out) if r.rc == 0 else {}
        kv = (doc.get("kvs") or [{}])[0]
        check("etcd view: the same node, version and revision", kv.get("version") == 3 and
              kv.get("mod_revision") == mrev, doc)

        # ---- a lock whose name is another's prefix ("nest" and "nest/sub") is independent
        inner = s.Acquire(lock="nest/sub", session=sess).token
        outer = s.Acquire(lock="nest", session=sess).token
        check("nested names: both granted, the inner one first", 0 < inner < outer)
        r = s.Set(path="/app", value=b"nested", fence=pb.Fence(lock="nest", token=outer))
        check("nested names: a fence on \"nest\" ignores \"nest/sub\"'s older entry",
              r.stat.version > 0)
        c1 = s.CheckFence(fence=pb.Fence(lock="nest", token=outer))
        c2 = s.CheckFence(fence=pb.Fence(lock="nest/sub", token=inner))
        check("nested names: CheckFence current on both", c1.current and c2.current, (c1, c2))
        s.Release(lock="nest", token=outer)
        s.Release(lock="nest/sub", token=inner)
        s.Set(path="/app", value=b"cfg3")

        # ---- sequential names across a leader kill
        seqs = [s.Create(path="/seq/n-", sequential=True, make_parents=(i == 0)).path
                for i in range(5)]
        leader.kill()
        survivor = LatchStub(followers[1].endpoint, timeout=WAIT)

        def create_seq():
            code, res = err_of(lambda: survivor.Create(path="/seq/n-", sequential=True))
            return res.path if code is None else None
        for _ in range(5):
            made = []
            wait_until(lambda: made.append(create_seq()) or made[-1] is not None, WAIT)
            seqs.append(made[-1])
        nums = [int(p[len("/seq/n-"):]) for p in seqs]
        check("sequential: increasing, never repeated across a leader kill",
              len(seqs) == 10 and nums == sorted(set(nums)), seqs)
        kids = survivor.Children(path="/seq").children
        check("sequential: all present", sorted("/seq/" + k.name for k in kids) == sorted(seqs),
              [k.name for k in kids])

        # ---- ephemeral nodes and session end (on the surviving members)
        sess2 = survivor.SessionOpen(ttl_seconds=3).session
        survivor.Create(path="/app/gone", session=sess2)
        close = survivor.SessionClose(session=sess2)
        check("session close: ephemeral deleted", close.deleted == 1 and
              err_of(lambda: survivor.Stat(path="/app/gone"))[0] == "NOT_FOUND", close)
        time.sleep(0.1)
        check("session: still alive while kept alive",
              survivor.Stat(path="/app/eph").stat.owner_session == sess)
        ka.stop()
        # Not before its TTL: right after the last renewal it is still there.
        check("ephemeral: present right after the keep-alives stop",
              err_of(lambda: survivor.Stat(path="/app/eph"))[0] is None)
        gone = wait_until(lambda: err_of(lambda: survivor.Stat(path="/app/eph"))[0] == "NOT_FOUND",
                          WAIT)
        check("ephemeral: vanishes after the session expires", gone)
        ka2 = survivor.SessionKeepAlive(iter([pb.SessionKeepAliveRequest(session=sess)]),
                                        timeout=WAIT)
        ttls = [x.ttl_seconds for x in ka2]
        check("session: keep-alive of an expired session answers TTL 0", ttls == [0], ttls)
        for st_ in (s, sf, survivor):
            st_.close()
    finally:
        for m in members:
            m.terminate()
        sanitizer_check(members, "tree")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
