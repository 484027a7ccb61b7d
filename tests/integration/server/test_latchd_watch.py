#!/usr/bin/python3
"""latchd's Watch service against the real etcdctl (Debian's etcd-client, API 3).

Usage: test_latchd_watch.py LATCHD

One member on free loopback ports (bind port 0). `etcdctl watch foo --prefix` runs in the
background (its own session, setsid); once a sentinel put shows up in its output (so the
watch is surely established), three puts under foo, one outside the prefix and a delete must
appear as "PUT\\nfoo1\\nv1\\n..." in order, and nothing else. Then `etcdctl watch foo --prefix
--rev 1` replays the whole history in order, `--prev-kv` shows previous values, and after a
compaction `watch --rev 1` is canceled by the server (exit 5, etcd's compacted message).
Finally everything this script started is stopped with SIGTERM by PID; latchd must exit 0
with no sanitizer report in its log. Every wait polls a condition against a deadline.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import check, fail, failures, free_ports, ok, wait_until  # noqa: E402

ETCDCTL = "/usr/bin/etcdctl"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
START_TIMEOUT = 60
WAIT = 30
EXIT_TIMEOUT = 30


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Watch:
    """A background `etcdctl watch ...` in its own session; output goes to a file."""

    def __init__(self, root, endpoint, name, *args):
        self.out = os.path.join(root, name + ".out")
        self.cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s", "watch"] + list(args)
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=dict(os.environ, ETCDCTL_API="3"))

    def text(self):
        return read(self.out)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=EXIT_TIMEOUT)


def etcdctl(endpoint, *args, timeout=30):
    cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s", "--command-timeout=10s"]
    cmd += list(args)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, ETCDCTL_API="3"))
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return "timeout", str(e.stdout or ""), str(e.stderr or "")


def lines_in_order(text, want):
    """True when the lines of want appear in text's lines as one contiguous run."""
    got = text.splitlines()
    for i in range(len(got) - len(want) + 1):
        if got[i:i + len(want)] == want:
            return True
    return False


def main():
    if len(sys.argv) != 2:
        print("usage: test_latchd_watch.py LATCHD", file=sys.stderr)
        return 2
    latchd = sys.argv[1]
    if not os.path.exists(ETCDCTL):
        print("ok - skipped: %s not installed" % ETCDCTL)
        return 0
    root = tempfile.mkdtemp(prefix="latch-watch-")
    client, peer, metrics = free_ports(3)
    endpoint = "127.0.0.1:%d" % client
    log = os.path.join(root, "latchd.log")
    args = [latchd, "--data-dir", os.path.join(root, "data"),
            "--listen-client-urls", "http://" + endpoint,
            "--advertise-client-urls", "http://" + endpoint,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
            "--listen-metrics-urls", "http://127.0.0.1:%d" % metrics,
            "--log-format", "text"]
    with open(log, "wb") as f:
        server = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.STDOUT)
    watches = []
    try:
        healthy = wait_until(
            lambda: server.poll() is not None or
            http_status("http://127.0.0.1:%d/health" % metrics) == 200, START_TIMEOUT)
        if not check("latchd starts and is healthy", healthy and server.poll() is None,
                     read(log)[-3000:]):
            return 1

        # 1. A live prefix watch: wait until it surely runs (a sentinel put shows up).
        live = Watch(root, endpoint, "live", "foo", "--prefix")
        watches.append(live)

        def sentinel_seen():
            etcdctl(endpoint, "put", "foo0", "ready")
            return "foo0" in live.text()

        check("the watch is established (sentinel seen)", wait_until(sentinel_seen, WAIT, 0.3),
              live.text())
        for k, v in (("foo1", "v1"), ("bar", "nope"), ("foo2", "v2"), ("foo3", "v3")):
            rc, out, err = etcdctl(endpoint, "put", k, v)
            check("put %s" % k, rc == 0 and out.strip() == "OK", "%s %r %r" % (rc, out, err))
        rc, out, err = etcdctl(endpoint, "del", "foo1")
        check("del foo1", rc == 0 and out.strip() == "1", "%s %r %r" % (rc, out, err))
        want = ["PUT", "foo1", "v1", "PUT", "foo2", "v2", "PUT", "foo3", "v3", "DELETE", "foo1"]
        got = wait_until(lambda: lines_in_order(live.text(), want), WAIT)
        check("etcdctl watch --prefix prints the puts and the delete in order", got, live.text())
        check("the watch shows nothing outside the prefix", "bar" not in live.text(),
              live.text())

        # 2. History replay from revision 1 (with --prev-kv on a second watch).
        replay = Watch(root, endpoint, "replay", "foo", "--prefix", "--rev", "1")
        watches.append(replay)
        got = wait_until(lambda: lines_in_order(replay.text(), want), WAIT)
        text = replay.text()
        check("etcdctl watch --rev 1 replays the history in order",
              got and text.splitlines()[:3] == ["PUT", "foo0", "ready"], text)
        prev = Watch(root, endpoint, "prev", "foo1", "--rev", "1", "--prev-kv")
        watches.append(prev)
        want_prev = ["PUT", "foo1", "v1", "DELETE", "foo1", "v1", "foo1", ""]
        got = wait_until(lambda: lines_in_order(prev.text() + "\n", want_prev), WAIT)
        check("etcdctl watch --prev-kv prints the previous value before a delete", got,
              prev.text())

        # 3. Compaction: a watch from before the compaction point is canceled.
        rc, out, err = etcdctl(endpoint, "get", "foo3", "-w", "fields")
        rev = None
        for line in out.splitlines():
            if line.startswith('"Revision"'):
                rev = int(line.split(":")[1].strip())
        rc, out, err = etcdctl(endpoint, "compaction", str(rev or 3))
        check("compaction", rc == 0, "%s %r %r" % (rc, out, err))
        old = Watch(root, endpoint, "old", "foo", "--prefix", "--rev", "1")
        watches.append(old)
        ended = wait_until(lambda: old.proc.poll() is not None, WAIT)
        check("a watch from a compacted revision is canceled by the server (exit 5)",
              ended and old.proc.returncode == 5 and
              "required revision has been compacted" in old.text(),
              "exit %s: %s" % (old.proc.returncode, old.text()))

        # Still live after all that.
        etcdctl(endpoint, "put", "foo4", "v4")
        got = wait_until(lambda: lines_in_order(live.text(), ["PUT", "foo4", "v4"]), WAIT)
        check("the first watch is still live", got, live.text())
    finally:
        for w in watches:
            w.stop()
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(timeout=EXIT_TIMEOUT)
        check("latchd exits 0 on SIGTERM", server.returncode == 0,
              "exit %s\n%s" % (server.returncode, read(log)[-3000:]))
        text = read(log)
        check("no sanitizer report in latchd's log",
              not any(m in text for m in SANITIZER_MARKS), text[-5000:])
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("# logs kept in " + root, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
