"""latchtest.py — what the integration tests of latchd share: "ok - "/"FAIL - " lines and
the list of failures, free loopback ports, a bounded wait for a condition (never a timed
assertion: the wait only gives up after a generous limit), the real etcdctl, and latchd
members (one process each: ports, data dir, a log file per start) started alone or as a
cluster.

Every process is started by this module's callers and signalled by PID only."""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ETCDCTL = "/usr/bin/etcdctl"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ThreadSanitizer")
START_TIMEOUT = 60  # s until /health answers 200 (sanitized debug build, slow CI)
EXIT_TIMEOUT = 30  # s for a SIGTERMed latchd to exit

failures = []  # names of the failed checks, in order; the scripts exit 1 when not empty


def ok(name):
    print("ok - " + name, flush=True)


def fail(name, detail=""):
    failures.append(name)
    print("FAIL - " + name, flush=True)
    for line in str(detail).rstrip().splitlines():
        print("    " + line, flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


_issued_ports = set()  # every port free_ports handed out in this process


def free_ports(n):
    """n distinct free loopback TCP ports, none handed out before by this process (members
    get their ports one after the other and bind them only when started: without this, the
    kernel could offer a port twice in the meantime). All candidates are bound at once, then
    released."""
    socks = []
    ports = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)  # held until the end, so the kernel offers another one next
            port = s.getsockname()[1]
            if port not in _issued_ports:
                ports.append(port)
        _issued_ports.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def wait_until(pred, timeout, interval=0.1):
    """Polls pred() until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def http_get(url, timeout=5):
    """(status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        return None, str(e)


class Result:
    def __init__(self, cmd, rc, out, err):
        self.cmd, self.rc, self.out, self.err = cmd, rc, out, err

    def __str__(self):
        return "$ %s\nexit %s\nstdout: %r\nstderr: %r" % (
            " ".join(self.cmd), self.rc, self.out, self.err[-2000:])


def etcdctl(endpoints, *args, stdin=None, timeout=30, command_timeout=10):
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    cmd = [ETCDCTL, "--endpoints=" + ",".join(endpoints), "--dial-timeout=3s",
           "--command-timeout=%ds" % command_timeout] + list(args)
    env = dict(os.environ, ETCDCTL_API="3")
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                           env=env)
        return Result(cmd, p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return Result(cmd, "timeout", out, err)


def get_json(endpoint, *args):
    """(decoded JSON of `get ... -w json`, Result) or (None, Result)."""
    r = etcdctl(endpoint, "get", *args, "-w", "json")
    if r.rc != 0:
        return None, r
    try:
        return json.loads(r.out), r
    except ValueError:
        return None, r


def kvs_of(doc):
    """{key: value} (decoded strings) from a get JSON document."""
    out = {}
    for kv in (doc or {}).get("kvs", []):
        out[base64.b64decode(kv.get("key", "")).decode()] = \
            base64.b64decode(kv.get("value", "")).decode()
    return out


class Member:
    """One latchd process: its ports, data dir, and a log file per start."""

    def __init__(self, latchd, root, name, token, extra_args=()):
        self.latchd, self.root, self.name, self.token = latchd, root, name, token
        self.extra_args = list(extra_args)  # appended to every start's command line
        self.client_port, self.peer_port, self.metrics_port = free_ports(3)
        self.data_dir = os.path.join(root, name)
        self.proc = None
        self.logs = []  # one per start, in order
        self.cluster = None
        self.id = None  # hex member id, from the log

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    @property
    def admin(self):
        return "http://127.0.0.1:%d" % self.metrics_port

    def args(self):
        a = [self.latchd,
             "--data-dir", self.data_dir,
             "--listen-client-urls", "http://" + self.endpoint,
             "--advertise-client-urls", "http://" + self.endpoint,
             "--listen-peer-urls", self.peer_url,
             "--initial-advertise-peer-urls", self.peer_url,
             "--listen-metrics-urls", self.admin,
             "--log-format", "text"]
        if self.cluster is not None:  # a member of a multi-member cluster
            a += ["--name", self.name, "--initial-cluster", self.cluster,
                  "--initial-cluster-token", self.token]
        return a + self.extra_args

    def start(self):
        log = os.path.join(self.root, "%s.%d.log" % (self.name, len(self.logs)))
        self.logs.append(log)
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT)

    def log_text(self, which=-1):
        try:
            with open(self.logs[which], "r", errors="replace") as f:
                return f.read()
        except (OSError, IndexError):
            return ""

    def all_logs(self):
        return "".join(self.log_text(i) for i in range(len(self.logs)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        status, body = http_get(self.admin + "/health", timeout=2)
        return status == 200

    def wait_healthy(self, timeout=START_TIMEOUT):
        return wait_until(lambda: (not self.alive()) or self.healthy(), timeout) \
            and self.alive() and self.healthy()

    def read_id(self):
        m = re.search(r"latchd: member %s id ([0-9a-f]+)" % re.escape(self.name),
                      self.log_text(0))
        self.id = m.group(1) if m else None
        return self.id

    def terminate(self, timeout=EXIT_TIMEOUT, send=True):
        """SIGTERM by PID (unless send is false: already sent), bounded wait; returns the exit
        status (None if it did not exit). One SIGTERM only: latchd stops handling the signal
        once it is stopping, so a second one would kill it."""
        if self.proc is None:
            return None
        if send and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def tail(self, n=30):
        lines = self.log_text().splitlines()
        return "%s (%s):\n%s" % (self.name, self.logs[-1] if self.logs else "-",
                                 "\n".join(lines[-n:]))


def sanitizer_check(members, what):
    bad = []
    for m in members:
        for i, log in enumerate(m.logs):
            text = m.log_text(i)
            for mark in SANITIZER_MARKS:
                if mark in text:
                    idx = text.index(mark)
                    bad.append("%s: %r\n%s" % (log, mark, text[max(0, idx - 200):idx + 3000]))
    check("%s: no sanitizer report in any latchd log" % what, not bad, "\n".join(bad))



LEADER_RE = re.compile(r"latchd: leader is now ([0-9a-f]+) \(term (\d+)\)")


def leader_from_logs(members, min_term=0):
    """(member, term) of the newest leader reported by any running member's current log, with
    term > min_term, if the member named is running; else (None, 0)."""
    best = (None, 0)
    by_id = {m.id: m for m in members}
    for m in members:
        if not m.alive():
            continue
        for lid, term in LEADER_RE.findall(m.log_text()):
            term = int(term)
            if term > min_term and term > best[1] and int(lid, 16) != 0 and lid in by_id:
                best = (by_id[lid], term)
    if best[0] is not None and not best[0].alive():
        return (None, 0)
    return best


def cluster(latchd, root, n, prefix="n", token=None, extra_args=()):
    """n members named <prefix>1..<prefix>n in root (created), bootstrapped together, started
    and waited for: returns (members, healthy). healthy is false when a member died or one
    was not healthy within START_TIMEOUT; the caller reports it (the members' tail() helps)
    and still kills them. Member ids are read from the logs when healthy."""
    os.makedirs(root, exist_ok=True)
    token = token or "latch-itest-%d-%s" % (os.getpid(), prefix)
    members = [Member(latchd, root, "%s%d" % (prefix, i), token, extra_args)
               for i in range(1, n + 1)]
    spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
    for m in members:
        m.cluster = spec
    for m in members:
        m.start()
    wait_until(lambda: any(not m.alive() for m in members)
               or all(m.healthy() for m in members), START_TIMEOUT)
    healthy = all(m.alive() and m.healthy() for m in members)
    if healthy:
        for m in members:
            m.read_id()
    return members, healthy


# ---- latch.v1 from Python -------------------------------------------------------------
#
# The native API through python3-grpcio with message classes that protoc (Debian's
# protobuf-compiler) generates from api/proto/latch/v1/latch.proto into a temporary folder,
# once per process.

_LATCH_PB2 = None
_PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "api",
                           "proto")


def latch_pb2():
    """The generated module of latch/v1/latch.proto (latch.v1 messages)."""
    global _LATCH_PB2
    if _LATCH_PB2 is None:
        import importlib
        import sys
        import tempfile
        out = tempfile.mkdtemp(prefix="latch-pb2-")
        subprocess.run(["protoc", "-I", _PROTO_ROOT, "--python_out=" + out,
                        os.path.join(_PROTO_ROOT, "latch", "v1", "latch.proto")],
                       check=True)
        sys.path.insert(0, out)
        _LATCH_PB2 = importlib.import_module("latch.v1.latch_pb2")
    return _LATCH_PB2


# Method -> (kind, request class, response class); kind "uu" unary, "us" server-streaming,
# "ss" bidirectional.
_LATCH_METHODS = {
    "SessionOpen": ("uu", "SessionOpenRequest", "SessionOpenResponse"),
    "SessionKeepAlive": ("ss", "SessionKeepAliveRequest", "SessionKeepAliveResponse"),
    "SessionClose": ("uu", "SessionCloseRequest", "SessionCloseResponse"),
    "Create": ("uu", "CreateRequest", "CreateResponse"),
    "Get": ("uu", "GetRequest", "GetResponse"),
    "Stat": ("uu", "StatRequest", "StatResponse"),
    "Set": ("uu", "SetRequest", "SetResponse"),
    "Delete": ("uu", "DeleteRequest", "DeleteResponse"),
    "Children": ("uu", "ChildrenRequest", "ChildrenResponse"),
    "Multi": ("uu", "MultiRequest", "MultiResponse"),
    "Watch": ("us", "WatchRequest", "WatchResponse"),
    "Acquire": ("uu", "AcquireRequest", "AcquireResponse"),
    "Release": ("uu", "ReleaseRequest", "ReleaseResponse"),
    "Holder": ("uu", "HolderRequest", "HolderResponse"),
    "Waiters": ("uu", "WaitersRequest", "WaitersResponse"),
    "CheckFence": ("uu", "CheckFenceRequest", "CheckFenceResponse"),
    "Campaign": ("uu", "CampaignRequest", "CampaignResponse"),
    "Proclaim": ("uu", "ProclaimRequest", "ProclaimResponse"),
    "Resign": ("uu", "ResignRequest", "ResignResponse"),
    "Leader": ("uu", "LeaderRequest", "LeaderResponse"),
    "Observe": ("us", "ObserveRequest", "LeaderResponse"),
}


class LatchStub:
    """Calls latch.v1.Latch on one endpoint ("host:port"): stub.Create(path="/a", value=b"x")
    builds the request from keywords (or takes one ready-made as the only positional
    argument) and returns the response; failures raise grpc.RpcError (.code(), .details()).
    Streaming methods return the response iterator (Watch, Observe) or take a request
    iterator (SessionKeepAlive). timeout= (seconds) is the call's deadline."""

    def __init__(self, endpoint, timeout=10):
        import grpc
        self.pb = latch_pb2()
        self.channel = grpc.insecure_channel(endpoint)
        self.timeout = timeout
        self._calls = {}
        for name, (kind, req, resp) in _LATCH_METHODS.items():
            path = "/latch.v1.Latch/" + name
            ser = getattr(self.pb, req).SerializeToString
            de = getattr(self.pb, resp).FromString
            if kind == "uu":
                fn = self.channel.unary_unary(path, ser, de)
            elif kind == "us":
                fn = self.channel.unary_stream(path, ser, de)
            else:
                fn = self.channel.stream_stream(path, ser, de)
            self._calls[name] = (kind, req, fn)

    def __getattr__(self, name):
        if name.startswith("_") or name not in _LATCH_METHODS:
            raise AttributeError(name)
        kind, req, fn = self._calls[name]

        def call(*args, timeout=None, **kw):
            t = self.timeout if timeout is None else timeout
            if kind == "ss":
                return fn(args[0], timeout=t)
            msg = args[0] if args else getattr(self.pb, req)(**kw)
            return fn(msg, timeout=t)
        return call

    def close(self):
        self.channel.close()
