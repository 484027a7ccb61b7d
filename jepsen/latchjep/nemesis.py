"""nemesis.py — faults for a harness run, scheduled from a seed or a script, each with a
start and a stop recorded in the history (process "nemesis") and in nemesis.jsonl.

    nem = Nemesis(cluster, history, ["partition", "kill"], rng, out_path, opts)
    nem.refusals()         # [] or sentences why a fault cannot run here (loopback, etcd, ...)
    nem.run(deadline)      # in its own thread: one fault at a time until the deadline
    nem.recover()          # heal everything, resume, re-add, restart, wait for a leader

Faults (docs/jepsen.md describes each):
  partition  one of the Jepsen shapes: isolate (one node), isolate-leader, halves (a random
             minority against the majority), bridge (two halves that meet in one node only),
             ring (majorities ring: each node reaches its ring neighbours, a majority that no
             two nodes share); nftables drops inside each node's namespace (netns.py)
  loss       random loss of packets between nodes (nftables numgen, LOSS_PERCENT)
  delay      tc netem delay + jitter on every node's link (refused where netem is missing)
  kill       SIGKILL of one / a minority / a majority / all nodes; restart at stop
  pause      SIGSTOP of one / the leader / a minority for --pause-seconds; SIGCONT at stop
  clock      wall-clock jump (+-1 s .. +-5 min) or strobing on one latch node (libfaketime)
  member     remove a member (MemberRemove), then re-add it with a fresh data dir (MemberAdd
             + --initial-cluster-state existing): the cluster shrinks and grows
  compact    Compact at a recent revision under load (instantaneous)
  bitflip    SIGKILL one node, flip bits in its Raft log file (latch wal/*.seg; etcd WAL),
             restart it: a checksum failure must stop it with a clear error; see the docs

The schedule: with a seed, the next fault, its targets and the waits come from rng (a
random.Random(seed)): wait INTERVAL, start, hold DURATION, stop, repeat. A script is a JSON
list of {"at": seconds, "f": "start-kill", "targets": [0, 2]} (targets are node indexes;
for partitions a list of groups or {"shape": "bridge"}); events run at their times.
"""
import json
import os
import shutil
import threading
import time

import grpc

from . import client as clientmod

ALL = ("partition", "loss", "delay", "kill", "pause", "clock", "member", "compact",
       "bitflip")
NEEDS_NETNS = ("partition", "loss", "delay")
INSTANT = ("compact", "bitflip")  # done at start; the stop event follows at once
SHAPES = ("isolate", "isolate-leader", "halves", "bridge", "ring")
LOSS_TABLE = "latchjeploss"
TC = shutil.which("tc") or "/usr/sbin/tc"


class Options:
    interval = (2.0, 6.0)  # s between faults (uniform)
    duration = (3.0, 8.0)  # s a fault is held (uniform)
    pause_seconds = 8.0  # longer than the default lease/session TTL of the workloads (5 s)
    loss_percent = 20
    delay_ms = (100, 50)  # netem delay, jitter
    clock_max_s = 300
    strobe_ms = 100
    bitflips = 64  # pages of the file that get one flipped bit each


def _majority(n):
    return n // 2 + 1


def ring_drops(n, order):
    """Majorities ring over node order: nodes further apart in the ring than k cannot talk,
    with 2k+1 >= majority, so each node sees a majority and no two see the same one."""
    k = -(-(n // 2) // 2)  # ceil((n // 2) / 2)
    pos = {node: i for i, node in enumerate(order)}
    drops = set()
    for a in range(n):
        for b in range(n):
            d = abs(pos[a] - pos[b])
            if a != b and min(d, n - d) > k:
                drops.add((a, b))
    return drops


def bridge_drops(n, order):
    """Two halves that talk only through the middle node of order (Jepsen's bridge)."""
    mid = n // 2
    left, bridge, right = order[:mid], order[mid], order[mid + 1:]
    drops = set()
    for a in left:
        for b in right:
            drops.add((a, b))
            drops.add((b, a))
    return drops, [left, [bridge], right]


def groups_drops(groups, n):
    group_of = {}
    for g, members in enumerate(groups):
        for i in members:
            group_of[i] = g
    for i in range(n):
        group_of.setdefault(i, "alone-%d" % i)
    return {(a, b) for a in range(n) for b in range(n)
            if a != b and group_of[a] != group_of[b]}


class Nemesis:
    def __init__(self, cluster, history, faults, rng, out_path, opts=None, script=None,
                 log=print):
        self.c, self.h, self.rng, self.log = cluster, history, rng, log
        self.faults = [f for f in faults if f and f != "none"]
        for f in self.faults:
            if f not in ALL:
                raise ValueError("unknown nemesis %r (known: %s)" % (f, ", ".join(ALL)))
        self.opts = opts or Options()
        self.script = script
        self.out = open(out_path, "w", encoding="utf-8")
        self.out_lock = threading.Lock()
        self.active = {}  # fault -> state needed to stop it
        self.stop_flag = threading.Event()
        self.thread = None
        self.notes = []
        self.netem = None  # None unknown, True/False after the probe
        self.strobe = None
        self.applied = []  # faults started, in order
        self.fault_errors = []  # faults that failed to start or stop (recorded, run goes on)

    # ---- refusals -----------------------------------------------------------------------

    def refusals(self):
        out = []
        for f in self.faults:
            if f in NEEDS_NETNS and self.c.net is None:
                out.append("nemesis %s needs network namespaces, unavailable here: %s"
                           % (f, self.c.reason))
            if f == "clock" and self.c.target == "etcd":
                out.append("nemesis clock is refused for etcd: a Go binary reads the clock "
                           "through the vDSO, which libfaketime cannot reach")
            if f == "clock" and self.c.target == "latch" and not self.c.faketime:
                out.append("nemesis clock needs libfaketime (Debian package faketime: bash "
                           "scripts/deps.sh)")
        return out

    def skips(self):
        """Faults dropped from this run with a note (the run goes on without them): delay
        where tc netem is missing. Call after refusals()."""
        out = []
        if "delay" in self.faults and self.c.net is not None and not self.probe_netem():
            self.faults.remove("delay")
            out.append("nemesis delay skipped: tc netem (kernel module sch_netem) is "
                       "unavailable here; packet loss (nemesis loss) works without it")
        return out

    def probe_netem(self):
        if self.netem is None:
            p = self.c.net.run(0, [TC, "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
                                   "1ms"], capture_output=True, text=True)
            self.netem = p.returncode == 0
            if self.netem:
                self.c.net.run(0, [TC, "qdisc", "del", "dev", "eth0", "root"],
                               capture_output=True)
        return self.netem

    # ---- records ------------------------------------------------------------------------

    def record(self, f, value):
        ev = self.h.nemesis(f, value)
        with self.out_lock:
            if not self.out.closed:
                self.out.write(json.dumps({"time": ev["time"], "index": ev["index"], "f": f,
                                           "value": value}) + "\n")
                self.out.flush()
        self.log("# nemesis t=%.1fs %s %s" % (ev["time"] / 1e9, f, json.dumps(value)))

    def close(self):
        with self.out_lock:
            if not self.out.closed:
                self.out.close()

    # ---- the schedule -------------------------------------------------------------------

    def start_thread(self, deadline):
        self.thread = threading.Thread(target=self.run, args=(deadline,), name="nemesis",
                                       daemon=True)
        self.thread.start()

    def join(self, timeout=120):
        self.stop_flag.set()
        if self.thread is not None:
            self.thread.join(timeout=timeout)

    def _sleep_until(self, t):
        while not self.stop_flag.is_set():
            left = t - time.monotonic()
            if left <= 0:
                return True
            self.stop_flag.wait(min(left, 0.2))
        return False

    def run(self, deadline):
        try:
            if self.script is not None:
                self._run_script(deadline)
            elif self.faults:
                self._run_random(deadline)
        except Exception as e:  # noqa: BLE001 - recorded, then recover() heals
            self.notes.append("nemesis thread failed: %r" % e)
            self.record("error", {"error": repr(e)})

    def _run_random(self, deadline):
        o = self.opts
        while not self.stop_flag.is_set():
            wait = self.rng.uniform(*o.interval)
            if time.monotonic() + wait >= deadline or not self._sleep_until(
                    time.monotonic() + wait):
                return
            f = self.rng.choice(self.faults)
            hold = (o.pause_seconds if f == "pause" else 0.0 if f in INSTANT
                    else self.rng.uniform(*o.duration))
            self.start(f)
            end = min(time.monotonic() + hold, deadline)
            self._sleep_until(end)
            self.stop(f)

    def _run_script(self, deadline):
        t0 = time.monotonic()
        for ev in sorted(self.script, key=lambda e: e.get("at", 0)):
            if not self._sleep_until(min(t0 + float(ev.get("at", 0)), deadline)):
                return
            if time.monotonic() >= deadline:
                return
            f = ev["f"]
            if f.startswith("start-"):
                self.start(f[6:], ev)
            elif f.startswith("stop-"):
                self.stop(f[5:])
            else:
                raise ValueError("script event f must be start-<fault> or stop-<fault>: %r"
                                 % f)

    # ---- start / stop -------------------------------------------------------------------

    def start(self, f, spec=None):
        if f in self.active:
            return
        with self.c.lock:
            try:
                value = getattr(self, "_start_" + f)(spec or {})
            except Exception as e:  # noqa: BLE001 - recorded; the run continues
                value = {"error": repr(e)}
                self.fault_errors.append("start-%s: %r" % (f, e))
        self.active[f] = value
        if not (isinstance(value, dict) and ("skipped" in value or "error" in value)):
            self.applied.append(f)
        self.record("start-" + f, value)

    def stop(self, f):
        if f not in self.active:
            return
        state = self.active.pop(f)
        with self.c.lock:
            try:
                value = getattr(self, "_stop_" + f)(state)
            except Exception as e:  # noqa: BLE001
                value = {"error": repr(e)}
                self.fault_errors.append("stop-%s: %r" % (f, e))
        self.record("stop-" + f, value)

    def stop_all(self):
        for f in list(self.active):
            self.stop(f)

    def _targets(self, spec, choices):
        """Node indexes from a script spec, else a random choice among choices (names)."""
        n = self.c.n
        if spec.get("targets") is not None:
            return [int(i) for i in spec["targets"]], "script"
        kind = self.rng.choice(choices)
        nodes = list(range(n))
        self.rng.shuffle(nodes)
        if kind == "one":
            return nodes[:1], kind
        if kind == "leader":
            ld = self.c.leader()
            return ([ld] if ld is not None else nodes[:1]), kind
        if kind == "minority":
            return sorted(nodes[:max(1, n // 2)]), kind
        if kind == "majority":
            return sorted(nodes[:_majority(n)]), kind
        return sorted(nodes), kind

    # partition

    def _start_partition(self, spec):
        n = self.c.n
        order = list(range(n))
        self.rng.shuffle(order)
        targets = spec.get("targets")
        shape = spec.get("shape") or ("groups" if targets else self.rng.choice(SHAPES))
        groups = None
        if shape == "groups":
            groups = [list(g) for g in targets]
            drops = groups_drops(groups, n)
        elif shape == "isolate":
            groups = [[order[0]], sorted(order[1:])]
            drops = groups_drops(groups, n)
        elif shape == "isolate-leader":
            ld = self.c.leader()
            ld = order[0] if ld is None else ld
            groups = [[ld], sorted(i for i in range(n) if i != ld)]
            drops = groups_drops(groups, n)
        elif shape == "halves":
            groups = [sorted(order[:n // 2]), sorted(order[n // 2:])]
            drops = groups_drops(groups, n)
        elif shape == "bridge":
            drops, groups = bridge_drops(n, order)
        elif shape == "ring":
            drops = ring_drops(n, order)
        else:
            raise ValueError("unknown partition shape %r" % shape)
        self.c.net.cut(drops)
        v = {"shape": shape, "drops": sorted([list(d) for d in drops])}
        if groups is not None:
            v["groups"] = groups
        if shape == "ring":
            v["ring"] = order
        return v

    def _stop_partition(self, state):
        self.c.net.heal()
        return {"healed": True}

    # loss (nftables, both directions, between nodes only)

    def _loss_rules(self, i, percent):
        ips = ", ".join(self.c.net.ip(j) for j in range(self.c.n) if j != i)
        return ("add table inet %s\n"
                "add chain inet %s input { type filter hook input priority -5; "
                "policy accept; }\n"
                "add rule inet %s input ip saddr { %s } numgen random mod 100 < %d drop\n"
                % (LOSS_TABLE, LOSS_TABLE, LOSS_TABLE, ips, percent))

    def _start_loss(self, spec):
        pct = int(spec.get("percent", self.opts.loss_percent))
        targets = spec.get("targets") or list(range(self.c.n))
        for i in targets:
            self.c.net.run(i, ["nft", "-f", "-"], input=self._loss_rules(i, pct), text=True,
                           capture_output=True, check=True)
        return {"percent": pct, "nodes": targets}

    def _stop_loss(self, state):
        for i in range(self.c.n):
            self.c.net.run(i, ["nft", "delete", "table", "inet", LOSS_TABLE],
                           capture_output=True)
        return {"healed": True}

    # delay (tc netem)

    def _start_delay(self, spec):
        d, j = spec.get("delay_ms", self.opts.delay_ms[0]), spec.get("jitter_ms",
                                                                     self.opts.delay_ms[1])
        targets = spec.get("targets") or list(range(self.c.n))
        for i in targets:
            self.c.net.run(i, [TC, "qdisc", "replace", "dev", "eth0", "root", "netem",
                               "delay", "%dms" % d, "%dms" % j, "distribution", "normal"],
                           capture_output=True, check=True)
        return {"delay_ms": d, "jitter_ms": j, "nodes": targets}

    def _stop_delay(self, state):
        if self.netem:
            for i in range(self.c.n):
                self.c.net.run(i, [TC, "qdisc", "del", "dev", "eth0", "root"],
                               capture_output=True)
        return {"healed": True}

    # kill

    def _start_kill(self, spec):
        targets, kind = self._targets(spec, ("one", "minority", "majority", "all"))
        for i in targets:
            self.c.nodes[i].kill()
        return {"nodes": targets, "targets": kind}

    def _stop_kill(self, state):
        started = []
        for i in state.get("nodes", []):
            m = self.c.nodes[i]
            if not m.alive() and not m.removed:
                m.start()
                started.append(i)
        return {"restarted": started}

    # pause

    def _start_pause(self, spec):
        targets, kind = self._targets(spec, ("one", "leader", "minority"))
        for i in targets:
            self.c.nodes[i].pause()
        return {"nodes": targets, "targets": kind, "seconds": self.opts.pause_seconds}

    def _stop_pause(self, state):
        for i in state.get("nodes", []):
            self.c.nodes[i].resume()
        return {"resumed": state.get("nodes", [])}

    # clock

    def _start_clock(self, spec):
        targets, _ = self._targets(spec, ("one",))
        i = targets[0]
        mode = spec.get("mode") or self.rng.choice(("jump", "strobe"))
        m = self.c.nodes[i]
        delta = int(spec.get("offset", 0)) or self.rng.choice((-1, 1)) * self.rng.randint(
            1, self.opts.clock_max_s)
        if mode == "jump":
            m.set_clock(delta)
            return {"node": i, "mode": "jump", "offset_s": delta}
        stop = threading.Event()
        period = self.opts.strobe_ms / 1000.0

        def strobe():
            on = False
            while not stop.wait(period):
                on = not on
                m.set_clock(delta if on else 0)
            m.set_clock(0)
        t = threading.Thread(target=strobe, name="clock-strobe", daemon=True)
        t.start()
        self.strobe = (stop, t)
        return {"node": i, "mode": "strobe", "offset_s": delta,
                "period_ms": self.opts.strobe_ms}

    def _stop_clock(self, state):
        if self.strobe is not None:
            self.strobe[0].set()
            self.strobe[1].join(timeout=5)
            self.strobe = None
        for m in self.c.nodes:
            if self.c.faketime:
                m.set_clock(0)
        return {"reset": True}

    # member

    def _admin(self, exclude=()):
        eps = [m.endpoint for m in self.c.nodes
               if m.index not in exclude and m.alive() and not m.paused and not m.removed]
        if not eps:
            raise RuntimeError("no live member to ask")
        return clientmod.Client(eps, first=self.rng.randrange(len(eps)), timeout=10)

    def _member_call(self, fn, exclude=()):
        """fn(client) against live members in turn until one answers (bounded)."""
        last = None
        for _ in range(6):
            cl = self._admin(exclude)
            try:
                return fn(cl)
            except grpc.RpcError as e:
                last = e
                time.sleep(1)
            finally:
                cl.close()
        raise RuntimeError("membership call failed: %s" % clientmod.error_text(last))

    def _start_member(self, spec):
        targets, _ = self._targets(spec, ("one",))
        i = targets[0]
        m = self.c.nodes[i]
        if sum(1 for x in self.c.nodes if not x.removed) <= 3:
            return {"skipped": "fewer than 4 members: removing one would leave 2"}
        mid = self._remove_member(i)
        if not m._wait(15):  # a removed member exits by itself (latch: status 1)
            m.kill()
        return {"node": i, "removed": mid}

    def _stop_member(self, state):
        if "node" not in state:
            return {"skipped": True}
        return self._add_member(state["node"])

    def _remove_member(self, i):
        """MemberRemove of node i through another member; returns its hex id or None."""
        m = self.c.nodes[i]
        pb = clientmod.protos().rpc

        def find_and_remove(cl):
            for mem in cl.members():
                if mem.name == m.name or m.peer_url in list(mem.peerURLs):
                    m.down_by_harness = True
                    cl.cluster.MemberRemove(pb.MemberRemoveRequest(ID=mem.ID), timeout=10)
                    return "%016x" % mem.ID
            return None
        mid = self._member_call(find_and_remove, exclude=(i,))
        m.removed = True
        m.down_by_harness = True
        return mid

    def _add_member(self, i):
        """Node i joins again as a new member on a fresh data dir (the old one is kept as
        data.removed-K)."""
        m = self.c.nodes[i]
        pb = clientmod.protos().rpc
        if m.alive():
            m.kill()
        old = m.data_dir
        if os.path.exists(old):
            k = 1
            while os.path.exists("%s.removed-%d" % (old, k)):
                k += 1
            os.rename(old, "%s.removed-%d" % (old, k))

        def add(cl):
            r = cl.cluster.MemberAdd(pb.MemberAddRequest(peerURLs=[m.peer_url]), timeout=10)
            return r
        r = self._member_call(add, exclude=(i,))
        parts = []
        for mem in r.members:
            name = mem.name or (m.name if m.peer_url in list(mem.peerURLs) else None)
            if name is None:
                continue
            for u in mem.peerURLs:
                parts.append("%s=%s" % (name, u))
        self.c.initial_cluster = ",".join(parts)
        m.removed = False
        m.corrupted = False
        m.join_state = "existing"
        m.start()
        return {"node": i, "added": "%016x" % r.member.ID, "initial_cluster": parts}

    # compact

    def _start_compact(self, spec):
        def compact(cl):
            _, rev = cl.get(b"\0", serializable=False)
            target = max(1, rev - self.rng.randint(0, 20))
            cl.kv.Compact(clientmod.protos().rpc.CompactionRequest(revision=target),
                          timeout=10)
            return {"revision": target, "head": rev}
        return self._member_call(compact)

    def _stop_compact(self, state):
        return {}

    # bitflip

    def _flip_files(self, m):
        if self.c.target == "etcd":
            wal = os.path.join(m.data_dir, "member", "wal")
            files = sorted(os.path.join(wal, f) for f in os.listdir(wal)
                           if f.endswith(".wal")) if os.path.isdir(wal) else []
            return files[-1:]
        # latch: the newest segment of the append-only log (wal/*.seg, the default since
        # session 5), or raft.mdb in builds configured with -DLATCH_STORE_WAL=OFF.
        wal = os.path.join(m.data_dir, "wal")
        if os.path.isdir(wal):
            segs = sorted(os.path.join(wal, f) for f in os.listdir(wal) if f.endswith(".seg"))
            return segs[-1:]
        p = os.path.join(m.data_dir, "raft.mdb")
        return [p] if os.path.exists(p) else []

    def _start_bitflip(self, spec):
        if spec.get("targets") is not None:
            i = int(spec["targets"][0])
        else:
            ok = [m.index for m in self.c.nodes if m.alive() and not m.corrupted]
            if not ok:
                return {"skipped": "no running node with intact data"}
            i = self.rng.choice(ok)
        m = self.c.nodes[i]
        m.kill()
        flips = []
        for path in self._flip_files(m):
            size = _used_size(path)  # etcd preallocates WAL segments: only the written part
            if size == 0:
                continue
            # raft.mdb: past LMDB's two meta pages; a wal segment or etcd's WAL: anywhere
            lo = 8192 if path.endswith("raft.mdb") and size > 16384 else 0
            # one bit in each of `bitflips` random 4 KiB pages (LMDB's page size): a page of
            # the live B-tree or of the newest entries is hit more often than not
            pages = list(range(lo // 4096, max(lo // 4096 + 1, size // 4096)))
            self.rng.shuffle(pages)
            with open(path, "r+b") as f:
                for page in sorted(pages[:self.opts.bitflips]):
                    off = min(size - 1, page * 4096 + self.rng.randrange(4096))
                    bit = self.rng.randrange(8)
                    f.seek(off)
                    b = f.read(1)
                    f.seek(off)
                    f.write(bytes([b[0] ^ (1 << bit)]))
                    flips.append([os.path.relpath(path, m.dir), off, bit])
                f.flush()
                os.fsync(f.fileno())
        m.corrupted = True
        m.start()
        ok = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not m.alive():
                break
            if m.status() is not None:
                ok = True
                break
            time.sleep(0.5)
        m.down_by_harness = not m.alive()
        return {"node": i, "flips": flips, "restarted": ok,
                "exit": m.proc.returncode if m.proc is not None else None}

    def _stop_bitflip(self, state):
        """A node that refused to start on its damaged data is replaced as an operator
        would: removed from the cluster, then added again with a fresh data dir."""
        i = state.get("node")
        if i is None:
            return {}
        m = self.c.nodes[i]
        if m.alive():
            return {"node": i, "running": True}
        mid = self._remove_member(i)
        v = self._add_member(i)
        v["removed"] = mid
        v["replaced"] = True
        return v

    # ---- heal and recover ------------------------------------------------------------------

    def recover(self, timeout=90):
        """Stops every active fault, heals the network, resumes paused nodes, resets clocks,
        re-adds removed members, restarts dead nodes (except corrupted ones that will not
        start), then waits (bounded) for every node to answer and a leader. Returns True
        when the cluster is ready."""
        self.record("start-recover", None)
        self.stop_all()
        with self.c.lock:
            if self.c.net is not None:
                self.c.net.heal()
                for i in range(self.c.n):
                    self.c.net.run(i, ["nft", "delete", "table", "inet", LOSS_TABLE],
                                   capture_output=True)
                    if self.netem:
                        self.c.net.run(i, [TC, "qdisc", "del", "dev", "eth0", "root"],
                                       capture_output=True)
            for m in self.c.nodes:
                if self.c.faketime:
                    m.set_clock(0)
                if m.paused:
                    m.resume()
            restarted = []
            for m in self.c.nodes:
                if m.removed:  # a re-add that failed at its fault's stop: once more
                    try:
                        self._add_member(m.index)
                        restarted.append(m.index)
                    except Exception as e:  # noqa: BLE001 - recorded; recovery may fail
                        self.fault_errors.append("recover: re-adding %s: %r" % (m.name, e))
            for m in self.c.nodes:
                m.note_exit()
                if not m.alive() and not m.removed:
                    m.start()
                    restarted.append(m.index)
            ready = self.c.wait_ready(timeout)
            corrupted_down = [m.index for m in self.c.nodes if m.corrupted and not m.alive()]
            for i in corrupted_down:
                self.c.nodes[i].down_by_harness = True
            if not ready and corrupted_down:
                ready = self.c.wait_ready(30)
        leader = self.c.leader()
        self.record("stop-recover", {"ready": ready, "restarted": restarted,
                                     "leader": leader, "corrupted_down": corrupted_down})
        return ready


def _used_size(path):
    """The file's size up to its last non-zero byte."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(1 << 20, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            stripped = chunk.rstrip(b"\0")
            if stripped:
                return pos - step + len(stripped)
            pos -= step
    return 0


def load_script(path):
    with open(path) as f:
        script = json.load(f)
    if not isinstance(script, list):
        raise ValueError("a nemesis script is a JSON list of {at, f, targets}")
    for ev in script:
        if not isinstance(ev, dict) or "f" not in ev:
            raise ValueError("bad script event %r" % (ev,))
    return script


def parse(spec):
    """'partition,kill' -> ['partition', 'kill']; 'all' -> every fault; 'none' -> []."""
    if spec in (None, "", "none"):
        return []
    if spec == "all":
        return list(ALL)
    return [s.strip() for s in spec.split(",") if s.strip()]

