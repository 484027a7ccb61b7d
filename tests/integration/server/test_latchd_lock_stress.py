#!/usr/bin/python3
"""Lock safety under contention and a leader kill: 32 clients, 10,000 acquisitions.

Usage: test_latchd_lock_stress.py LATCHD [ACQUISITIONS [CLIENTS]]

Three latchd members. CLIENTS threads (default 32), each with its own session (kept alive
on a stream) and its own channel to one of the members, contend for one latch.v1 lock
until ACQUISITIONS grants (default 10,000) were made in total. Each grant is used for one
fenced write: Set /stress/res = "<token> <client>" with fence (lock, token), then Release.
A third of the way in the Raft leader is killed with SIGKILL, and restarted on its data dir
a few seconds later; the clients keep going on the surviving members (a client whose
member died moves to the next one; an Acquire retried with the same session returns the
same grant).

Checked afterwards:
  - every Acquire ended: a grant, or a clear error (DEADLINE_EXCEEDED "latch: lock wait
    timed out", UNAVAILABLE while the leader was gone, NOT_FOUND "session ..." after a lost
    session); no thread hung (bounded joins);
  - no two grants share a token, and grants handed to one client strictly increase;
  - the fenced writes that were applied, read back in revision order from the native
    Watch of /stress/res from revision 1, carry non-decreasing tokens (a write with a
    token lower than one already written was never applied: no two grants overlapped as
    observed through fenced writes), and each applied write's token was really granted to
    the client named in it;
  - every write the clients saw acknowledged is in that history (nothing acknowledged lost);
  - all three members end with the same value and revision of /stress/res.

Only the latchd processes this script started are signalled (by PID). Prints "ok - ..." /
"FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import queue
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (LatchStub, check, cluster, fail, failures,  # noqa: E402
                       leader_from_logs, sanitizer_check, wait_until)

WAIT = 60        # s: bound of every wait for an outcome
SESSION_TTL = 6  # s: longer than a leader election, so a failover does not expire sessions
LOCK = "stress"
RES = "/stress/res"


class Client(threading.Thread):
    def __init__(self, idx, endpoints, shared):
        super().__init__(daemon=True)
        self.idx = idx
        self.endpoints = endpoints
        self.shared = shared
        self.ep = idx % len(endpoints)
        self.stub = None
        self.session = 0
        self.ka_stop = None
        self.grants = []      # tokens granted, in order
        self.acked = []       # (token, revision) of fenced writes acknowledged
        self.errors = {}      # "CODE: message prefix" -> count
        self.fenced_out = 0   # fenced writes rejected (grant lost meanwhile)
        self.unfinished = False

    def note(self, code, details):
        key = "%s: %s" % (code, (details or "")[:40])
        self.errors[key] = self.errors.get(key, 0) + 1

    def connect(self, move=False):
        if move:
            self.ep = (self.ep + 1) % len(self.endpoints)
        if self.stub is not None:
            self.stub.close()
        self.stub = LatchStub(self.endpoints[self.ep], timeout=WAIT)

    def open_session(self):
        if self.ka_stop is not None:
            self.ka_stop.set()
        self.session = self.stub.SessionOpen(ttl_seconds=SESSION_TTL, timeout=10).session
        stop = threading.Event()
        self.ka_stop = stop
        stub, sess = self.stub, self.session
        pb = stub.pb

        def reqs():
            while not stop.is_set():
                yield pb.SessionKeepAliveRequest(session=sess)
                stop.wait(SESSION_TTL / 3.0)

        def run():
            # One stream at a time; a broken stream (its member died) is opened again on
            # the client's current member until stopped.
            while not stop.is_set():
                try:
                    for _ in self.stub.SessionKeepAlive(reqs(), timeout=3600):
                        if stop.is_set():
                            break
                except Exception:
                    stop.wait(0.3)
        threading.Thread(target=run, daemon=True).start()

    def call(self, name, **kw):
        """One call; on UNAVAILABLE the client moves to the next member and raises."""
        return getattr(self.stub, name)(**kw)

    def run(self):
        import grpc
        self.connect()
        pb = self.stub.pb
        while not self.shared["stop"].is_set():
            try:
                if self.session == 0:
                    self.open_session()
                t = self.call("Acquire", lock=LOCK, session=self.session, timeout=20)
            except grpc.RpcError as e:
                code = e.code().name
                self.note(code, e.details())
                if code == "NOT_FOUND":           # the session is gone: a new one
                    self.session = 0
                elif code in ("UNAVAILABLE", "CANCELLED"):
                    self.connect(move=True)  # its member may be the one killed
                    time.sleep(0.05)
                continue
            token = t.token
            if self.grants and token == self.grants[-1]:
                pass  # the same grant again (a retried Acquire after a lost reply)
            else:
                self.grants.append(token)
            with self.shared["lock"]:
                self.shared["grants"] += 1
                if self.shared["grants"] >= self.shared["target"]:
                    self.shared["stop"].set()
                self.shared["progress"].put(self.shared["grants"])
            # One fenced write, retried on UNAVAILABLE (the fence makes it safe).
            for _ in range(20):
                try:
                    r = self.call("Set", path=RES, value=("%d %d" % (token, self.idx)).encode(),
                                  fence=pb.Fence(lock=LOCK, token=token), timeout=10)
                    self.acked.append((token, r.header.revision))
                    break
                except grpc.RpcError as e:
                    code = e.code().name
                    if code == "FAILED_PRECONDITION":
                        self.fenced_out += 1
                        break
                    self.note("set " + code, e.details())
                    self.connect(move=True)
                    time.sleep(0.05)
            for _ in range(20):
                try:
                    self.call("Release", lock=LOCK, token=token, timeout=10)
                    break
                except grpc.RpcError as e:
                    code = e.code().name
                    if code == "NOT_FOUND":
                        break  # already gone (session lost)
                    self.note("release " + code, e.details())
                    self.connect(move=True)
                    time.sleep(0.05)
        if self.ka_stop is not None:
            self.ka_stop.set()
        try:
            if self.session:
                self.stub.SessionClose(session=self.session, timeout=10)
        except Exception:
            pass


def read_history(stub, until_rev):
    """(kind, value, revision) of every change of RES from revision 1 through until_rev (the
    resource's last mod revision)."""
    out = []
    for resp in stub.Watch(path=RES, start_revision=1, timeout=WAIT):
        for ev in resp.events:
            out.append((ev.kind, ev.value, ev.revision))
        if out and out[-1][2] >= until_rev:
            break
    return out


def main():
    latchd = sys.argv[1]
    target = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    nclients = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    root = tempfile.mkdtemp(prefix="latchd-lockstress-")
    members, healthy = cluster(latchd, root, 3, prefix="s")
    try:
        if not healthy:
            fail("cluster healthy", "".join(m.tail() for m in members))
            return
        wait_until(lambda: leader_from_logs(members)[0] is not None, WAIT)
        s0 = LatchStub(members[0].endpoint, timeout=WAIT)
        s0.Create(path=RES, value=b"0 -1", make_parents=True)
        shared = {"lock": threading.Lock(), "grants": 0, "target": target,
                  "stop": threading.Event(), "progress": queue.Queue()}
        endpoints = [m.endpoint for m in members]
        clients = [Client(i, endpoints, shared) for i in range(nclients)]
        t0 = time.monotonic()
        for c in clients:
            c.start()

        # The leader is killed a third of the way in, and restarted a few seconds later.
        killed = None
        deadline = time.monotonic() + 600
        while not shared["stop"].is_set() and time.monotonic() < deadline:
            try:
                n = shared["progress"].get(timeout=1)
            except queue.Empty:
                continue
            if killed is None and n >= target // 3:
                killed = leader_from_logs(members)[0]
                if killed is not None:
                    killed.kill()
                    kill_at = time.monotonic()
                    print("# killed leader %s after %d grants" % (killed.name, n), flush=True)
            if killed is not None and not killed.alive() and time.monotonic() - kill_at > 4:
                killed.start()
                print("# restarted %s" % killed.name, flush=True)
        check("run: finished within its bound", shared["stop"].is_set(),
              "%d grants" % shared["grants"])
        shared["stop"].set()
        for c in clients:
            c.join(WAIT)
        hung = [c.idx for c in clients if c.is_alive()]
        check("every client's last call ended (no hung waiter)", not hung, hung)
        elapsed = time.monotonic() - t0
        check("the leader was killed and restarted", killed is not None and killed.alive())
        if killed is not None:
            killed.wait_healthy()

        grants = [(tok, c.idx) for c in clients for tok in c.grants]
        tokens = [tok for tok, _ in grants]
        check("grants: %d made" % len(grants), len(grants) >= target, len(grants))
        check("grants: no two share a token", len(tokens) == len(set(tokens)))
        check("grants: each client's tokens strictly increase",
              all(all(a < b for a, b in zip(c.grants, c.grants[1:])) for c in clients))
        granted_to = dict(grants)

        # The history of the protected resource, in revision order.
        hist = read_history(s0, s0.Stat(path=RES).stat.mod_revision)
        writes = [(int(v.split()[0]), int(v.split()[1]), rev) for kind, v, rev in
                  ((k, val.decode(), r) for k, val, r in hist) if v != "0 -1"]
        toks = [w[0] for w in writes]
        check("fenced writes: tokens never go backwards (no overlapping grants)",
              all(a <= b for a, b in zip(toks, toks[1:])),
              [(a, b) for a, b in zip(toks, toks[1:]) if a > b][:5])
        check("fenced writes: each by the client its token was granted to",
              all(granted_to.get(tok) == who for tok, who, _ in writes),
              [w for w in writes if granted_to.get(w[0]) != w[1]][:5])
        in_hist = {(tok, rev) for tok, _, rev in writes}
        acked = [a for c in clients for a in c.acked]
        lost = [a for a in acked if a not in in_hist]
        check("fenced writes: every acknowledged one is in the history", not lost, lost[:5])

        def same_everywhere():
            vals = set()
            for m in members:
                st = LatchStub(m.endpoint, timeout=10)
                try:
                    g = st.Get(path=RES, serializable=True)
                    vals.add((g.value, g.stat.mod_revision))
                finally:
                    st.close()
            return len(vals) == 1
        check("all members agree on the resource", wait_until(same_everywhere, WAIT))

        errors = {}
        for c in clients:
            for k, v in c.errors.items():
                errors[k] = errors.get(k, 0) + v
        print("# %d grants by %d clients in %.1f s (%.0f/s); %d fenced writes applied, %d "
              "rejected; errors: %s" % (len(grants), nclients, elapsed, len(grants) / elapsed,
                                         len(writes), sum(c.fenced_out for c in clients),
                                         errors), flush=True)
        clear = ("DEADLINE_EXCEEDED:", "UNAVAILABLE:", "NOT_FOUND: latch:", "set UNAVAILABLE",
                 "release UNAVAILABLE", "CANCELLED:")
        unclear = {k: v for k, v in errors.items() if not k.startswith(clear)}
        check("every failed call had a clear error", not unclear, unclear)
        s0.close()
    finally:
        for m in members:
            m.terminate()
        sanitizer_check(members, "lock stress")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
