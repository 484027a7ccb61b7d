#!/usr/bin/python3
"""latchd under faults: kill -9 of the leader under a concurrent write load, and network
partitions made with network namespaces (tests/integration/netns.py). Real processes; every
client is a plain gRPC client (python3-grpcio with python3-etcd3's generated etcd stubs).

Usage: test_latchd_faults.py LATCHD

A. Kill under load. Three members (each in its own network namespace when namespaces are
   available, else on loopback). Four writer threads put distinct keys through all three
   members and record every acknowledged put. The leader gets SIGKILL; the time until a
   survivor reports a new leader is printed (not asserted: machines are noisy; a new leader
   must appear within 30 s). The first put through a survivor right after the kill must
   answer with one of etcd's retryable errors (or succeed), and every failed put of the run
   must carry one of etcd's texts. The killed member restarts on its data dir. In the end
   every acknowledged key is on every member with its value (serializable reads of each).

B. Partitions (namespaces only; skipped with the reason printed otherwise), on the same
   cluster, while a writer keeps putting through the majority:
   1. A follower is isolated (nftables drops its traffic to and from the other members;
      clients still reach it). Through it a linearizable get and a put fail with etcd's
      errors and never return the value the majority has overwritten; a serializable get
      still answers (with its old value, as etcd's does). The majority acknowledges writes
      throughout. After heal the follower catches up with every write of the partition.
   2. The leader is isolated: the majority elects a new leader and serves writes; the old
      leader steps down by itself (CheckQuorum: it reports no leader), refuses linearizable
      reads and writes with etcd's errors and serves no overwritten value; after heal all
      three converge.
   In the end no acknowledged write is lost on any member, no latchd log holds a sanitizer
   report, and SIGTERM stops all three with status 0.

Prints "ok - ..." / "FAIL - ..." lines and "# ..." notes; exits 1 if any check failed.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import netns  # noqa: E402
from latchtest import (EXIT_TIMEOUT, START_TIMEOUT, Member, check, failures,  # noqa: E402
                       sanitizer_check, wait_until)

try:
    import grpc
    from etcd3 import etcdrpc
except ImportError as e:  # python3-grpcio, python3-etcd3 (scripts/deps.sh)
    print("FAIL - python3-grpcio and python3-etcd3 are needed: %s" % e)
    sys.exit(1)

for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
    os.environ.pop(var, None)

CALL_TIMEOUT = 15  # s per gRPC call: longer than latchd's own request timeouts (7 s)
NEW_LEADER_BOUND = 30  # s: generous bound for a new leader (printed figure is the real one)
WRITERS = 4
OVERALL_DEADLINE = 240  # s: then the run fails and cleans up before ctest's TIMEOUT (300)

# etcd's answers when a request cannot be served for now (a client may retry):
# ETCD-API.md §4.9/§4.10.
RETRYABLE = ("etcdserver: no leader", "etcdserver: request timed out",
             "etcdserver: leader changed", "etcdserver: server stopped",
             "etcdserver: too many requests")
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


def etcd_error(e):
    """'CODE: details' of a grpc.RpcError."""
    try:
        return "%s: %s" % (e.code().name, e.details())
    except Exception:  # noqa: BLE001 - any error object
        return repr(e)


def is_retryable(text):
    return text.startswith("UNAVAILABLE: ") and any(
        text[len("UNAVAILABLE: "):].startswith(t) for t in RETRYABLE)


def is_unreachable(text):
    """The client could not reach the member at all (killed, or not started yet)."""
    return text.startswith("UNAVAILABLE: ") and not text.startswith("UNAVAILABLE: etcdserver:")


class Client:
    """One channel to one member with the KV and Maintenance stubs."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.kv = etcdrpc.KVStub(self.channel)
        self.maint = etcdrpc.MaintenanceStub(self.channel)

    def put(self, key, value, timeout=CALL_TIMEOUT):
        self.kv.Put(etcdrpc.PutRequest(key=key.encode(), value=value.encode()), timeout=timeout)

    def get(self, key, serializable=False, timeout=CALL_TIMEOUT):
        """The value (str) or None."""
        r = self.kv.Range(etcdrpc.RangeRequest(key=key.encode(), serializable=serializable),
                          timeout=timeout)
        return r.kvs[0].value.decode() if r.kvs else None

    def prefix(self, prefix, serializable=True, timeout=CALL_TIMEOUT):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.kv.Range(etcdrpc.RangeRequest(key=prefix.encode(), range_end=end.encode(),
                                               serializable=serializable), timeout=timeout)
        return {kv.key.decode(): kv.value.decode() for kv in r.kvs}

    def status(self, timeout=3):
        """(member id, leader id) or None."""
        try:
            s = self.maint.Status(etcdrpc.StatusRequest(), timeout=timeout)
            return s.header.member_id, s.leader
        except grpc.RpcError:
            return None

    def close(self):
        self.channel.close()


def attempt(fn):
    """(True, value) or (False, 'CODE: details')."""
    try:
        return True, fn()
    except grpc.RpcError as e:
        return False, etcd_error(e)


# ---- members -------------------------------------------------------------------------


class NsMember(Member):
    """A latchd in network namespace `index` of net, on the default ports of its address."""

    def __init__(self, latchd, root, name, token, net, index):
        super().__init__(latchd, root, name, token)
        self.net, self.index = net, index
        self.client_port, self.peer_port, self.metrics_port = 2479, 2480, 2481

    @property
    def endpoint(self):
        return "%s:%d" % (self.net.ip(self.index), self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.net.ip(self.index), self.peer_port)

    @property
    def admin(self):
        return "http://%s:%d" % (self.net.ip(self.index), self.metrics_port)

    def start(self):
        log = os.path.join(self.root, "%s.%d.log" % (self.name, len(self.logs)))
        self.logs.append(log)
        with open(log, "wb") as f:
            self.proc = self.net.popen(self.index, self.args(), stdin=subprocess.DEVNULL,
                                       stdout=f, stderr=subprocess.STDOUT)


def start_cluster(latchd, root, net):
    os.makedirs(root, exist_ok=True)
    token = "latch-faults-%d" % os.getpid()
    if net is not None:
        members = [NsMember(latchd, root, "f%d" % i, token, net, i) for i in range(3)]
    else:
        members = [Member(latchd, root, "f%d" % i, token) for i in range(3)]
    spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
    for m in members:
        m.cluster = spec
        m.start()
    wait_until(lambda: any(not m.alive() for m in members)
               or all(m.healthy() for m in members), START_TIMEOUT)
    healthy = all(m.alive() and m.healthy() for m in members)
    if healthy:
        for m in members:
            m.read_id()
    return members, healthy


def member_id(m):
    return int(m.id, 16) if m.id else None


def leader_among(clients, exclude=()):
    """The leader id that every reachable client in clients reports and that reports itself
    leader, if not in exclude; else None."""
    seen = set()
    for c in clients:
        st = c.status()
        if st is None:
            return None
        seen.add(st[1])
    if len(seen) != 1:
        return None
    lid = seen.pop()
    return lid if lid != 0 and lid not in exclude else None


# ---- the writers ---------------------------------------------------------------------


class Writers:
    """WRITERS threads put distinct keys <prefix><thread>/<n> through the clients, round
    robin, and record what was acknowledged and how each failure answered."""

    def __init__(self, clients, prefix, count=WRITERS):
        self.clients = list(clients)
        self.prefix = prefix
        self.lock = threading.Lock()
        self.acked = {}  # key -> value
        self.errors = []  # (endpoint, text, seconds the call took)
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def set_clients(self, clients):
        with self.lock:
            self.clients = list(clients)

    def run(self, tid):
        n = 0
        while not self.stop_flag.is_set():
            with self.lock:
                clients = self.clients
            c = clients[(tid + n) % len(clients)]
            key, value = "%s%d/%06d" % (self.prefix, tid, n), "v%d-%d" % (tid, n)
            t0 = time.monotonic()
            ok_, err = attempt(lambda: c.put(key, value))
            with self.lock:
                if ok_:
                    self.acked[key] = value
                else:
                    self.errors.append((c.endpoint, err, time.monotonic() - t0))
            if not ok_:
                time.sleep(0.05)
            n += 1

    def count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=2 * CALL_TIMEOUT)
        return not any(t.is_alive() for t in self.threads)

    def report(self, what):
        with self.lock:
            errors = list(self.errors)
        kinds = {}
        for ep, text, secs in errors:
            k = kinds.setdefault(text, [0, 0.0])
            k[0] += 1
            k[1] = max(k[1], secs)
        print("# %s: %d acknowledged puts, %d failed" % (what, self.count(), len(errors)),
              flush=True)
        for text, (count, slowest) in sorted(kinds.items()):
            print("#   %4d x %s (slowest %.2f s)" % (count, text[:160], slowest), flush=True)
        bad = [t for _, t, _ in errors if not (is_retryable(t) or is_unreachable(t))]
        check("%s: every failed put answered with one of etcd's retryable errors (or could "
              "not reach a stopped member)" % what, not bad, "\n".join(sorted(set(bad))[:5]))


def converged(members, acked, what, timeout=60):
    """Every acknowledged key with its value on every running member (serializable reads)."""
    for m in members:
        c = Client(m.endpoint)
        missing = []

        def all_there():
            ok_, got = attempt(lambda: c.prefix("w/"))
            if not ok_:
                missing[:] = [got]
                return False
            missing[:] = [k for k, v in acked.items() if got.get(k) != v]
            return not missing
        check("%s: all %d acknowledged keys on %s with their values" % (what, len(acked),
                                                                        m.name),
              wait_until(all_there, timeout, interval=0.5),
              "missing or wrong (first 10): %s\n%s" % (missing[:10], m.tail()))
        c.close()


# ---- A. kill -9 under load -------------------------------------------------------------


def kill_under_load(members, clients):
    ids = [member_id(m) for m in members]
    lid = wait_until(lambda: leader_among(clients), 30)
    if not check("kill: the three members agree on a leader", lid in ids,
                 "\n".join(m.tail() for m in members)):
        return None
    leader = members[ids.index(lid)]
    survivors = [m for m in members if m is not leader]
    s_clients = [clients[members.index(m)] for m in survivors]

    writers = Writers(clients, "w/a/")
    writers.start()
    check("kill: writers acknowledge puts through all three members before the kill",
          wait_until(lambda: writers.count() >= 100, 60), "acked %d" % writers.count())

    t_kill = time.monotonic()
    leader.proc.kill()
    try:
        leader.proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    check("kill: SIGKILL the leader %s" % leader.name, not leader.alive())
    acked_at_kill = writers.count()

    # The first put through a survivor right after the kill: it answers with a retryable
    # error (or succeeds), without waiting for the proposal timeout when its leader is gone.
    t0 = time.monotonic()
    ok_, res = attempt(lambda: s_clients[0].put("w/probe/first", "1"))
    took = time.monotonic() - t0
    print("# kill: first put through %s after the kill: %s after %.2f s"
          % (survivors[0].name, "OK" if ok_ else res, took), flush=True)
    check("kill: the first put through a survivor succeeds or fails with a retryable etcd "
          "error", ok_ or is_retryable(res), res)
    first_acked = {"w/probe/first": "1"} if ok_ else {}

    new = wait_until(lambda: leader_among(s_clients, exclude=(lid,)), NEW_LEADER_BOUND,
                     interval=0.05)
    took = time.monotonic() - t_kill
    if check("kill: the survivors agree on a new leader within %d s" % NEW_LEADER_BOUND,
             new is not None, "\n".join(m.tail() for m in survivors)):
        print("# kill: new leader %s reported %.2f s after the kill (election timeout "
              "1000 ms, heartbeat 100 ms)" % (members[ids.index(new)].name, took), flush=True)

    # Retries succeed now, through both survivors.
    for c, m in zip(s_clients, survivors):
        res = []

        def put_ok():
            ok_, r = attempt(lambda: c.put("w/probe/after-" + m.name, "1"))
            res.append(r)
            return ok_
        check("kill: a retried put through %s succeeds" % m.name,
              wait_until(put_ok, 30, interval=0.1), res[-3:])
    writers.set_clients(s_clients)
    check("kill: the writers get acknowledgements after the kill",
          wait_until(lambda: writers.count() >= acked_at_kill + 100, 60),
          "acked %d at the kill, %d now" % (acked_at_kill, writers.count()))

    leader.start()
    check("kill: the killed member %s restarts on its data dir" % leader.name,
          leader.wait_healthy(), leader.tail())
    writers.set_clients(clients)
    acked_before = writers.count()
    wait_until(lambda: writers.count() >= acked_before + 50, 30)
    check("kill: writers stop", writers.stop())
    writers.report("kill")
    acked = dict(writers.acked)
    acked.update(first_acked)
    for probe in ["w/probe/after-" + m.name for m in survivors]:
        acked[probe] = "1"
    converged(members, acked, "kill")
    return acked


# ---- B. partitions -------------------------------------------------------------------


def check_minority_refuses(what, c, key, old, new):
    """Through c (on the minority side): a linearizable get of key (the majority set it to
    new; the minority holds old) and a put fail with etcd's errors, the get never returning
    a value; a serializable get answers with the old value. The puts go to keys outside w/:
    their outcome is unknown (a forwarded one may still arrive after the heal)."""
    t0 = time.monotonic()
    ok_, res = attempt(lambda: c.get(key))
    print("# %s: linearizable get through the minority: %s after %.2f s"
          % (what, res if not ok_ else "value %r" % res, time.monotonic() - t0), flush=True)
    check("%s: linearizable get through it fails with an etcd error, no stale value" % what,
          not ok_ and is_retryable(res), "answered %r (old %r, new %r)" % (res, old, new))
    t0 = time.monotonic()
    ok_, res = attempt(lambda: c.put("m/" + key, "minority"))
    print("# %s: put through the minority: %s after %.2f s" % (what, res if not ok_ else "OK",
                                                               time.monotonic() - t0),
          flush=True)
    check("%s: put through it fails with an etcd error" % what, not ok_ and is_retryable(res),
          res)
    ok_, res = attempt(lambda: c.put("m/" + key, "minority-again"))
    check("%s: a second put through it fails too: %s" % (what, res),
          not ok_ and is_retryable(res), res)
    ok_, res = attempt(lambda: c.get(key, serializable=True))
    check("%s: serializable get through it still answers (old value %r)" % (what, old),
          ok_ and res == old, res)


def partitions(net, members, clients, acked_all):
    ids = [member_id(m) for m in members]
    lid = wait_until(lambda: leader_among(clients), 30)
    if not check("partition: the three members agree on a leader", lid in ids,
                 "\n".join(m.tail() for m in members)):
        return
    leader = members[ids.index(lid)]

    # 1. Isolate a follower.
    f = next(m for m in members if m is not leader)
    fc = clients[members.index(f)]
    majority = [m for m in members if m is not f]
    mc = [clients[members.index(m)] for m in majority]
    ok_, res = attempt(lambda: mc[0].put("w/p1/key", "old"))
    check("partition 1: put w/p1/key=old", ok_, res)
    check("partition 1: %s has it (serializable)" % f.name,
          wait_until(lambda: attempt(lambda: fc.get("w/p1/key", True)) == (True, "old"), 30))
    acked_all["w/p1/key"] = "old"

    net.isolate(f.index)
    print("# partition 1: isolated follower %s (%s)" % (f.name, f.endpoint), flush=True)
    writers = Writers(mc, "w/b/", count=2)
    writers.start()
    ok_, res = attempt(lambda: mc[0].put("w/p1/key", "new"))
    check("partition 1: the majority overwrites w/p1/key=new", ok_, res)
    if ok_:
        acked_all["w/p1/key"] = "new"
    check_minority_refuses("partition 1: isolated follower %s" % f.name, fc, "w/p1/key",
                           "old", "new")
    during = writers.count()
    check("partition 1: the majority keeps acknowledging writes",
          wait_until(lambda: writers.count() >= during + 50, 30),
          "%d then %d" % (during, writers.count()))
    net.heal()
    print("# partition 1: healed", flush=True)
    check("partition 1: %s catches up (serializable get of w/p1/key=new)" % f.name,
          wait_until(lambda: attempt(lambda: fc.get("w/p1/key", True)) == (True, "new"), 60),
          f.tail())
    res = []
    check("partition 1: linearizable get through %s works again" % f.name,
          wait_until(lambda: res.append(attempt(lambda: fc.get("w/p1/key"))) or
                     res[-1] == (True, "new"), 30, interval=0.2), res[-3:])
    writers.set_clients(clients)
    wait_until(lambda: writers.count() >= during + 100, 30)

    # 2. Isolate the leader.
    lid = wait_until(lambda: leader_among(clients), 30)
    if not check("partition 2: the three members agree on a leader", lid in ids,
                 "\n".join(m.tail() for m in members)):
        writers.stop()
        return
    old = members[ids.index(lid)]
    oc = clients[members.index(old)]
    majority = [m for m in members if m is not old]
    mc = [clients[members.index(m)] for m in majority]
    writers.set_clients(mc)
    ok_, res = attempt(lambda: mc[0].put("w/p2/key", "old"))
    check("partition 2: put w/p2/key=old", ok_, res)
    check("partition 2: %s has it (serializable)" % old.name,
          wait_until(lambda: attempt(lambda: oc.get("w/p2/key", True)) == (True, "old"), 30))
    acked_all["w/p2/key"] = "old"

    t_cut = time.monotonic()
    net.isolate(old.index)
    print("# partition 2: isolated leader %s (%s)" % (old.name, old.endpoint), flush=True)
    new = wait_until(lambda: leader_among(mc, exclude=(lid,)), NEW_LEADER_BOUND, interval=0.05)
    if check("partition 2: the majority elects a new leader within %d s" % NEW_LEADER_BOUND,
             new is not None, "\n".join(m.tail() for m in majority)):
        print("# partition 2: new leader %s %.2f s after the cut"
              % (members[ids.index(new)].name, time.monotonic() - t_cut), flush=True)
    res = []
    check("partition 2: the majority overwrites w/p2/key=new",
          wait_until(lambda: res.append(attempt(lambda: mc[0].put("w/p2/key", "new"))) or
                     res[-1][0], 30, interval=0.1), res[-3:])
    if res and res[-1][0]:
        acked_all["w/p2/key"] = "new"
    stepped = wait_until(lambda: (oc.status() or (0, -1))[1] == 0, NEW_LEADER_BOUND,
                         interval=0.05)
    check("partition 2: the old leader %s steps down by itself (CheckQuorum: it reports no "
          "leader)" % old.name, stepped, old.tail())
    check_minority_refuses("partition 2: old leader %s" % old.name, oc, "w/p2/key", "old",
                           "new")
    during = writers.count()
    check("partition 2: the majority keeps acknowledging writes",
          wait_until(lambda: writers.count() >= during + 50, 30),
          "%d then %d" % (during, writers.count()))
    net.heal()
    print("# partition 2: healed", flush=True)
    check("partition 2: %s rejoins and follows the new leader" % old.name,
          wait_until(lambda: leader_among(clients, exclude=(0,)) is not None, 60), old.tail())
    writers.set_clients(clients)
    during = writers.count()
    wait_until(lambda: writers.count() >= during + 50, 30)
    check("partition: writers stop", writers.stop())
    writers.report("partition")
    acked_all.update(writers.acked)
    converged(members, acked_all, "partition")


# ---- main ------------------------------------------------------------------------------


class Overdue(Exception):
    pass


def on_alarm(signum, frame):
    raise Overdue("the run took more than %d s" % OVERALL_DEADLINE)


def main():
    if len(sys.argv) != 2:
        print("usage: test_latchd_faults.py LATCHD", file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    if not os.access(latchd, os.X_OK):
        print("FAIL - %s is not executable" % latchd)
        return 1
    t_start = time.monotonic()
    reason = netns.unavailable()
    if os.environ.get("LATCH_FAULTS_NO_NETNS"):
        reason = "LATCH_FAULTS_NO_NETNS is set"
    net = None
    if reason is None:
        stale = netns.remove_stale()
        if stale:
            print("# removed namespaces left by killed runs: %s" % " ".join(stale), flush=True)
        net = netns.Net(3)
        print("# network namespaces %s-* on %s" % (net.prefix, net.subnet), flush=True)
    else:
        print("# network namespaces unavailable (%s): kill test on loopback, partition tests "
              "SKIPPED" % reason, flush=True)
    root = tempfile.mkdtemp(prefix="latchd-faults-")
    members, clients = [], []
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_DEADLINE)
    try:
        members, healthy = start_cluster(latchd, os.path.join(root, "c"), net)
        if check("three members healthy", healthy, "\n".join(m.tail() for m in members)):
            clients = [Client(m.endpoint) for m in members]
            acked = kill_under_load(members, clients)
            if acked is not None and net is not None:
                partitions(net, members, clients, acked)
            elif net is None:
                print("ok - partition tests # SKIP %s" % reason, flush=True)
            for m in members:
                if m.alive():
                    m.proc.terminate()
            for m in members:
                code = m.terminate(send=False)
                check("SIGTERM %s -> exit status 0" % m.name, code == 0,
                      "exit %s\n%s" % (code, m.tail()))
    except Overdue as e:
        check("finished within the overall deadline", False, str(e))
    finally:
        signal.alarm(0)
        for c in clients:
            c.close()
        for m in members:
            m.kill()
        if members:
            sanitizer_check(members, "faults")
        if net is not None:
            net.close()
        if failures:
            print("# logs and data kept in %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("# %d failure(s); %.1f s" % (len(failures), time.monotonic() - t_start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
