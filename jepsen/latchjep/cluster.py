"""cluster.py — the nodes of a harness run: N latchd (or etcd) processes, each in its own
network namespace on a bridge the harness makes (tests/integration/netns.py), or all on
loopback when namespaces are unavailable (then partitions and packet faults are refused).

    c = Cluster("latch", 5, run_dir, binary="build/release/latchd")
    c.start()                       # starts every node, waits for health and a leader
    c.endpoints()                   # ["10.x.y.11:2479", ...]: what clients dial
    c.nodes[2].kill(); c.nodes[2].start(); c.nodes[1].pause(); c.nodes[1].resume()
    c.leader()                      # index of the node every live node names leader, or None
    c.scan()                        # crash/assertion/sanitizer findings (after stop_all)
    c.close()                       # stops every process it started, deletes the namespaces

Files: run_dir/nodes/<name>/{data/, latchd.log | etcd.log, faketime}: each start appends
to the node's log after a "=== latchjep: start ..." line. A node the harness killed, stopped,
removed or corrupted is "down by the harness"; any other exit is a crash (scan()).

Processes: every node is started by this module in its own session (a Ctrl-C at the terminal
reaches the harness only, which then stops the nodes itself), signalled by PID only; close()
runs from the runner's finally block and at interpreter exit.

Clock faults (nemesis "clock"): with faketime=True every latch node starts under libfaketime
(Debian's faketime package) reading its offset from nodes/<name>/faketime on every call
(FAKETIME_NO_CACHE); only the wall clock is faked (FAKETIME_DONT_FAKE_MONOTONIC=1), as a real
clock step (NTP, an operator) never moves CLOCK_MONOTONIC: see docs/decisions/jepsen.md.
etcd is a Go program that reads the clock through the vDSO, not libc: libfaketime cannot
reach it, so clock faults are refused for the etcd target.
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import netns  # noqa: E402
from latchtest import free_ports  # noqa: E402

from . import client as clientmod  # noqa: E402

ETCD = "/usr/bin/etcd"
FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/faketime/libfaketimeMT.so.1")
START_TIMEOUT = 90  # s for every node to answer and agree on a leader (debug builds, 2 cores)

# Lines that mean a node failed on its own, whatever its exit status.
CRASH_MARKS = ("assertion failed:", "ERROR: AddressSanitizer", "runtime error:",
               "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer", "panic:", "fatal error:",
               '"level":"fatal"', '"level":"panic"')

_live = []  # clusters not closed yet (closed at exit)


def find_latchd(explicit=None):
    """The latchd binary: explicit, else build/release/latchd, else build/debug/latchd."""
    if explicit:
        return os.path.abspath(explicit)
    for sub in ("release", "debug"):
        p = os.path.join(ROOT, "build", sub, "latchd")
        if os.access(p, os.X_OK):
            return p
    return None


def faketime_lib():
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    return None


class Node:
    """One member: its address, ports, data dir, log and process."""

    def __init__(self, cluster, index, name, ip, ports):
        self.cluster, self.index, self.name, self.ip = cluster, index, name, ip
        self.client_port, self.peer_port, self.metrics_port = ports
        self.dir = os.path.join(cluster.run_dir, "nodes", name)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "etcd.log" if cluster.target == "etcd"
                                     else "latchd.log")
        self.clock_file = os.path.join(self.dir, "faketime")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.down_by_harness = False  # killed/stopped/removed on purpose: not a crash
        self.paused = False
        self.starts = 0
        self.crashes = []  # {"start": n, "exit": code, "time": s} of exits nobody asked for
        self.corrupted = False  # its data dir holds damage made on purpose (nemesis bitflip)
        self.corrupted_starts = set()  # start numbers that ran on damaged data
        self.removed = False  # not a member now (nemesis "member")
        self.join_state = "new"  # --initial-cluster-state of its starts ("existing" re-added)

    @property
    def endpoint(self):
        return "%s:%d" % (self.ip, self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.ip, self.peer_port)

    def argv(self, state):
        c = self.cluster
        client_url = "http://" + self.endpoint
        if c.target == "etcd":
            a = [ETCD, "--name", self.name, "--data-dir", self.data_dir,
                 "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                 "--listen-peer-urls", self.peer_url,
                 "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", c.initial_cluster, "--initial-cluster-token", c.token,
                 "--initial-cluster-state", state, "--logger", "zap", "--log-outputs",
                 "stderr"]
        else:
            a = [c.binary, "--name", self.name, "--data-dir", self.data_dir,
                 "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                 "--listen-peer-urls", self.peer_url,
                 "--initial-advertise-peer-urls", self.peer_url,
                 "--listen-metrics-urls", "http://%s:%d" % (self.ip, self.metrics_port),
                 "--initial-cluster", c.initial_cluster, "--initial-cluster-token", c.token,
                 "--initial-cluster-state", state, "--log-format", "text"]
        return a + list(c.node_args)

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ETCD_") and not k.startswith("LATCH_")
               or k == "LATCH_TEETH"}
        env.update(self.cluster.node_env)
        if self.cluster.faketime:
            env["LD_PRELOAD"] = self.cluster.faketime
            env["FAKETIME_TIMESTAMP_FILE"] = self.clock_file
            env["FAKETIME_NO_CACHE"] = "1"
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            # ASan wants to be first in the library list; libfaketime is preloaded before it
            asan = env.get("ASAN_OPTIONS", "")
            env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        return env

    def start(self, state=None):
        """Starts the node (a new process on its data dir); returns at once."""
        if self.alive():
            return
        state = state or self.join_state
        self.note_exit()
        if self.cluster.faketime and not os.path.exists(self.clock_file):
            self.set_clock(0)
        self.starts += 1
        if self.corrupted:
            self.corrupted_starts.add(self.starts)
        with open(self.log_path, "ab") as f:
            f.write(("=== latchjep: start %d (%s) at t=%.3fs ===\n"
                     % (self.starts, state, self.cluster.elapsed())).encode())
            f.flush()
            argv = self.argv(state)
            if self.cluster.net is not None:
                argv = self.cluster.net.wrap(self.index, argv)
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, env=self.env(),
                                         start_new_session=True)
        self.down_by_harness = False
        self.paused = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def note_exit(self):
        """Records an exit nobody asked for (a crash) once; True if the node is down."""
        if self.proc is None:
            return True
        rc = self.proc.poll()
        if rc is None:
            return False
        if not self.down_by_harness and not any(c["start"] == self.starts
                                                for c in self.crashes):
            self.crashes.append({"start": self.starts, "exit": rc,
                                 "time": round(self.cluster.elapsed(), 3)})
        return True

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL (after SIGCONT if paused: a stopped process still dies, but say so)."""
        self.down_by_harness = True
        self.signal(signal.SIGKILL)
        self._wait(30)
        self.paused = False

    def stop(self, timeout=30):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit status."""
        self.down_by_harness = True
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)
        if not self._wait(timeout):
            self.signal(signal.SIGKILL)
            self._wait(30)
        return self.proc.returncode if self.proc is not None else None

    def _wait(self, timeout):
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def set_clock(self, offset_s):
        """Sets this node's wall-clock offset (libfaketime reads the file on every call)."""
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+ds\n" % int(offset_s))
        os.replace(tmp, self.clock_file)

    def status(self, timeout=2):
        """(member id, leader id, term) from this node, or None."""
        if not self.alive() or self.paused:
            return None
        ch = grpc.insecure_channel(self.endpoint, options=clientmod.CHANNEL_OPTIONS)
        try:
            stub = clientmod.Stub(ch, "etcdserverpb.Maintenance")
            r = stub.Status(clientmod.protos().rpc.StatusRequest(), timeout=timeout)
            return r.header.member_id, r.leader, r.raftTerm
        except grpc.RpcError:
            return None
        finally:
            ch.close()


class Cluster:
    """See the module text. target: "latch" or "etcd"; n: nodes; run_dir: the run folder.
    use_netns: try namespaces (False: loopback, with the reason "--no-netns"). node_args:
    extra command-line flags for every node; node_env: extra environment (LATCH_TEETH=...)."""

    def __init__(self, target, n, run_dir, binary=None, use_netns=True, faketime=False,
                 node_args=(), node_env=None, log=print):
        if target not in ("latch", "etcd"):
            raise ValueError("target must be latch or etcd")
        self.target, self.n, self.run_dir = target, n, os.path.abspath(run_dir)
        self.log = log
        self.t0 = time.monotonic()
        self.node_args = list(node_args)
        self.node_env = dict(node_env or {})
        if target == "latch":
            self.binary = find_latchd(binary)
            if not self.binary or not os.access(self.binary, os.X_OK):
                raise RuntimeError("latchd not found (--latchd, or build/release or "
                                   "build/debug: make release)")
        else:
            self.binary = ETCD
            if not os.access(ETCD, os.X_OK):
                raise RuntimeError("%s not found (etcd-server: bash scripts/deps.sh)" % ETCD)
        self.faketime = None
        if faketime and target == "latch":  # etcd: refused by the nemesis (see above)
            self.faketime = faketime_lib()  # None: refused by the nemesis too
        self.token = "latchjep-%d-%d" % (os.getpid(), int(time.time()))
        self.net = None
        self.mode = "loopback"
        self.reason = "namespaces not asked for (--no-netns)" if not use_netns else None
        self._closed = False
        _live.append(self)
        if use_netns:
            self.reason = netns.unavailable()
            if self.reason is None:
                netns.remove_stale()
                self.net = netns.Net(n)
                self.mode = "netns"
        if self.net is None:
            self.log("# cluster: loopback only (%s): partitions and packet faults are "
                     "unavailable" % self.reason)
        names = ["n%d" % (i + 1) for i in range(n)]
        self.nodes = []
        for i, name in enumerate(names):
            if self.net is not None:
                ports = (2379, 2380, 2381) if target == "etcd" else (2479, 2480, 2481)
                ip = self.net.ip(i)
            else:
                ports = tuple(free_ports(3))
                ip = "127.0.0.1"
            self.nodes.append(Node(self, i, name, ip, ports))
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.nodes)
        self.lock = threading.RLock()  # held by whoever changes node processes
        self.stops = []  # how the nodes running at stop_all() ended

    def elapsed(self):
        return time.monotonic() - self.t0

    def describe(self):
        return {"target": self.target, "nodes": self.n, "mode": self.mode,
                "reason": self.reason, "binary": self.binary,
                "subnet": str(self.net.subnet) if self.net else None,
                "faketime": self.faketime,
                "members": [{"name": m.name, "endpoint": m.endpoint, "peer": m.peer_url}
                            for m in self.nodes]}

    def endpoints(self):
        return [m.endpoint for m in self.nodes]

    def start(self, timeout=START_TIMEOUT):
        for m in self.nodes:
            m.start()
        if not self.wait_ready(timeout):
            raise RuntimeError("the cluster did not come up within %d s (logs in %s)"
                               % (timeout, os.path.join(self.run_dir, "nodes")))

    def leader(self):
        """Index of the node that every live, unpaused member names leader, or None."""
        seen = {}
        ids = {}
        for m in self.nodes:
            st = m.status()
            if st is None:
                continue
            ids[st[0]] = m.index
            seen[m.index] = st[1]
        leaders = set(seen.values())
        if len(leaders) != 1:
            return None
        lid = leaders.pop()
        return ids.get(lid)

    def wait_ready(self, timeout=START_TIMEOUT):
        """Until every node that should run answers and they agree on a leader (True), or
        timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            want = [m for m in self.nodes if not m.removed and not m.down_by_harness and
                    not (m.corrupted and not m.alive())]
            if all(m.status() is not None for m in want) and self.leader() is not None:
                return True
            if any(not m.alive() for m in want):
                for m in want:
                    m.note_exit()
            time.sleep(0.3)
        return False

    def stop_all(self):
        """SIGTERM to every node (SIGCONT first for paused ones), bounded waits, SIGKILL for a
        node that does not exit within 30 s. Records how each node that was running ended
        (self.stops: {"node", "exit", "killed"}) for scan()."""
        running = []
        for m in self.nodes:
            m.note_exit()
            if m.alive():
                if m.paused:
                    m.resume()
                m.down_by_harness = True
                m.signal(signal.SIGTERM)
                running.append(m)
        for m in running:
            killed = False
            if not m._wait(30):
                killed = True
                m.signal(signal.SIGKILL)
                m._wait(30)
            self.stops.append({"node": m.name, "exit": m.proc.returncode, "killed": killed,
                               "corrupted": m.starts in m.corrupted_starts})

    def scan(self):
        """Findings of the node logs and exits: {"valid", "crashes", "reports", "notes"}. A
        crash is an exit the harness did not cause; a report a line matching CRASH_MARKS.
        Findings of a start that ran on data the harness corrupted are notes, not failures."""
        crashes, reports, notes = [], [], []
        for m in self.nodes:
            m.note_exit()
            for c in m.crashes:
                item = dict(c, node=m.name)
                (notes if c["start"] in m.corrupted_starts else crashes).append(item)
            try:
                with open(m.log_path, errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
            # the log of each start follows its "=== latchjep: start N" line
            for seg in re.split(r"(?m)^(?==== latchjep: start \d+ )", text):
                hdr = re.match(r"=== latchjep: start (\d+) ", seg)
                start = int(hdr.group(1)) if hdr else 0
                for mark in CRASH_MARKS:
                    hit = seg.find(mark)
                    if hit < 0:
                        continue
                    lo = seg.rfind("\n", 0, hit) + 1
                    item = {"node": m.name, "start": start, "mark": mark,
                            "excerpt": seg[lo:lo + 600]}
                    (notes if start in m.corrupted_starts else reports).append(item)
        for st in self.stops:  # a clean stop: latch exits 0, etcd re-raises SIGTERM
            if st["killed"] or st["exit"] not in (0, -signal.SIGTERM):
                item = {"node": st["node"], "mark": "stop",
                        "excerpt": "did not exit within 30 s of SIGTERM (SIGKILLed)"
                        if st["killed"] else "exit status %s after SIGTERM" % st["exit"]}
                (notes if st["corrupted"] else reports).append(item)
        out = {"valid": not crashes and not reports, "crashes": crashes, "reports": reports,
               "notes": notes}
        if crashes or reports:
            out["summary"] = "; ".join(
                ["%s exited %s on its own at t=%ss" % (c["node"], c["exit"], c["time"])
                 for c in crashes] +
                ["%s: %s" % (r["node"], r["excerpt"].strip()[:160]) for r in reports])
        return out

    def close(self):
        """Stops every process this cluster started and deletes its namespaces (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_all()
        finally:
            if self.net is not None:
                try:
                    self.net.close()
                except RuntimeError as e:
                    self.log("# cluster: %s" % e)
            if self in _live:
                _live.remove(self)

    def copy_binary_info(self):
        """Version text of the node binary (for run.json)."""
        try:
            p = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                               timeout=10)
            return (p.stdout or p.stderr).strip().splitlines()[:3]
        except (OSError, subprocess.SubprocessError):
            return None


@atexit.register
def _close_all():
    for c in list(_live):
        try:
            c.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def rmtree_quiet(path):
    shutil.rmtree(path, ignore_errors=True)
