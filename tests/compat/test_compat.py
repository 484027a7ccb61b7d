#!/usr/bin/python3
"""etcd's own client libraries against latchd.

Usage: test_compat.py LATCHD BUILD_DIR

Builds tests/compat/go/clientv3_compat.go once (Go clientv3 + clientv3/concurrency from
Debian's golang-etcd-server-dev, GOPATH mode, offline: ETCD-API.md §0) into
BUILD_DIR/compat/, then:
  1. one latchd member on free loopback ports: the Go program and
     tests/compat/python/etcd3_compat.py (Debian's python3-etcd3) against its endpoint;
  2. a three-member cluster: both again, each given all three endpoints (a follower forwards
     lease keep-alives to the leader; tests/integration/server/test_latchd_lease_follower.py
     covers clients that know only a follower).
Each client must exit 0. Every latchd is stopped with SIGTERM by PID and must exit 0; its
log must hold no sanitizer report.

Prints "ok - ..." / "FAIL - ..." lines (the clients' own lines are relayed with a prefix);
exits 1 if any check failed. Needs golang-go, golang-etcd-server-dev and python3-etcd3
(scripts/deps.sh).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../integration"))
from latchtest import check, fail, failures, free_ports, ok, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GO_SRC = os.path.join(HERE, "go", "clientv3_compat.go")
PY_SCRIPT = os.path.join(HERE, "python", "etcd3_compat.py")
PYTHON = "/usr/bin/python3"
GOPATH = "/usr/share/gocode"  # golang-etcd-server-dev and its dependencies live here
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ERROR: UndefinedBehaviorSanitizer")
START_TIMEOUT = 60
EXIT_TIMEOUT = 30
GO_BUILD_TIMEOUT = 300
GO_RUN_TIMEOUT = 300
PY_RUN_TIMEOUT = 180


def go_env(cache):
    """GOPATH mode, offline: no modules, no proxy, no user settings from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GO111MODULE="off", GOPATH=GOPATH, GOCACHE=cache, GOPROXY="off",
               GOFLAGS="", GOENV="off", GOTOOLCHAIN="local")
    env.setdefault("HOME", tempfile.gettempdir())
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/bin:/usr/lib/go/bin"
    return env


def build_go(build_dir):
    """Returns the path of the built client, or None."""
    go = shutil.which("go", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/lib/go/bin")
    if not check("go: the go tool is installed (golang-go)", go is not None,
                 "apt-get install golang-go (scripts/deps.sh)"):
        return None
    if not check("go: clientv3 sources present (golang-etcd-server-dev)",
                 os.path.isdir(os.path.join(GOPATH, "src/go.etcd.io/etcd/clientv3/concurrency"))):
        return None
    out_dir = os.path.join(build_dir, "compat")
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "clientv3_compat")
    cache = os.path.join(out_dir, "gocache")
    cmd = [go, "build", "-o", binary, GO_SRC]
    try:
        p = subprocess.run(cmd, cwd=os.path.dirname(GO_SRC), env=go_env(cache),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=GO_BUILD_TIMEOUT)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", e.stdout or ""
    if not check("go: build clientv3_compat offline in GOPATH mode", rc == 0,
                 "$ %s\nexit %s\n%s" % (" ".join(cmd), rc, out)):
        return None
    return binary


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError, urllib.error.HTTPError):
        return False


class Member:
    def __init__(self, latchd, root, name):
        self.latchd, self.root, self.name = latchd, root, name
        self.client_port, self.peer_port, self.metrics_port = free_ports(3)
        self.data_dir = os.path.join(root, name)
        self.log = os.path.join(root, name + ".log")
        self.proc = None
        self.cluster = None
        self.token = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def start(self):
        args = [self.latchd, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", "http://" + self.endpoint,
                "--advertise-client-urls", "http://" + self.endpoint,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--listen-metrics-urls", "http://127.0.0.1:%d" % self.metrics_port,
                "--log-format", "text"]
        if self.cluster:
            args += ["--initial-cluster", self.cluster, "--initial-cluster-token", self.token]
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        return http_ok("http://127.0.0.1:%d/health" % self.metrics_port)

    def terminate(self):
        """One SIGTERM by PID, bounded wait; the exit status or None."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def log_text(self):
        try:
            with open(self.log, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n=40):
        return "%s (%s):\n%s" % (self.name, self.log,
                                 "\n".join(self.log_text().splitlines()[-n:]))


def run_client(what, cmd, timeout, members, env=None):
    """Runs one client program, relays its ok/FAIL lines prefixed with `what`, checks exit 0."""
    errf = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=errf, text=True, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        rc = "timeout (%d s)" % timeout
    errf.seek(0)
    err = errf.read()
    errf.close()
    for line in out.splitlines():
        print("    %s: %s" % (what, line), flush=True)
    detail = "$ %s\nexit %s\nstderr (last 60 lines):\n%s\n%s" % (
        " ".join(cmd), rc, "\n".join(err.splitlines()[-60:]),
        "\n".join(m.tail(25) for m in members))
    return check("%s: exits 0" % what, rc == 0, detail)


def stop_and_check(members, what):
    for m in members:
        rc = m.terminate()
        check("%s: SIGTERM %s (pid %d) exits 0" % (what, m.name, m.proc.pid), rc == 0,
              "exit %s\n%s" % (rc, m.tail()))
    bad = []
    for m in members:
        text = m.log_text()
        for mark in SANITIZER_MARKS:
            if mark in text:
                i = text.index(mark)
                bad.append("%s: %r\n%s" % (m.log, mark, text[max(0, i - 300):i + 3000]))
    check("%s: no sanitizer report in any latchd log" % what, not bad, "\n".join(bad))


def run_against(what, members, go_bin):
    endpoints = ",".join(m.endpoint for m in members)
    if go_bin:
        run_client(what + ": go clientv3", [go_bin, "-endpoints", endpoints],
                   GO_RUN_TIMEOUT, members)
    run_client(what + ": python3-etcd3", [PYTHON, PY_SCRIPT, "--endpoints", endpoints],
               PY_RUN_TIMEOUT, members)


def cluster(latchd, root, what, n, go_bin):
    root = os.path.join(root, what)
    os.makedirs(root)
    members = [Member(latchd, root, "n%d" % (i + 1)) for i in range(n)]
    if n > 1:
        spec = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
        for m in members:
            m.cluster, m.token = spec, "latch-compat-%d" % os.getpid()
    try:
        for m in members:
            m.start()
        wait_until(lambda: any(not m.alive() for m in members)
                   or all(m.healthy() for m in members), START_TIMEOUT)
        if not check("%s: %d member(s) healthy (/health 200)" % (what, n),
                     all(m.alive() and m.healthy() for m in members),
                     "\n".join(m.tail() for m in members)):
            return
        run_against(what, members, go_bin)
        stop_and_check(members, what)
    finally:
        for m in members:
            m.kill()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    latchd, build_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    go_bin = build_go(build_dir)
    root = tempfile.mkdtemp(prefix="latch-compat-")
    keep = False
    try:
        cluster(latchd, root, "one", 1, go_bin)
        cluster(latchd, root, "three", 3, go_bin)
    finally:
        keep = bool(failures)
        if keep:
            print("# logs kept in %s" % root, flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("# %d check(s) failed: %s" % (len(failures), "; ".join(failures)), flush=True)
        return 1
    print("# all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
