#!/usr/bin/python3
"""Differential runs: the same scripted client sessions against a real etcd 3.4 cluster and
against a latch cluster, outputs compared.

Usage: run_diff.py LATCHD [BUILD_DIR] [--only etcdctl,go,python,v3conc] [--keep]

Starts three members of Debian's etcd 3.4 (/usr/bin/etcd, package etcd-server) and three
latchd members (LATCHD), each on free loopback ports with their data in a temporary
directory, then runs, against each cluster in turn:

  1. session_etcdctl.txt — one real etcdctl command per step (format at the top of that
     file); for every step stdout, stderr and the exit code are recorded;
  2. clientv3_diff.go (Go clientv3 + concurrency, built offline in GOPATH mode into
     BUILD_DIR/compat/) — prints one line per step;
  3. etcd3_diff.py (Debian's python3-etcd3) — prints one line per step.
  4. v3conc_diff.py (grpcio, messages generated with protoc) — etcd's v3lock and
     v3election services; one line per step.

Each transcript is normalised (normalise() below: member, cluster and lease ids, ports and
endpoints, durations and timestamps, etcd version strings, Raft term/index, database sizes
and snapshot checksums, which are the implementations' own; a remaining lease TTL within
[0, granted]; the order of lists etcd itself does not fix) and the two are compared step by
step. Revisions, values, keys, counts, error texts and exit codes are never normalised: they
must be identical (README.md in this folder).

A step whose outputs differ fails, unless allowlist.txt names it ("<session>:<step>
<reason>"): then it is printed as "ok - ... # ALLOWED: reason" so the difference stays
visible. Transcripts are written to BUILD_DIR/compat/diff/<session>.<etcd|latch>.txt.

Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed. Every process is
started here and signalled by PID only; every wait is bounded.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import latchtest  # noqa: E402
from latchtest import check, fail, failures, free_ports, ok, wait_until  # noqa: E402

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
PYTHON = "/usr/bin/python3"
GOPATH = "/usr/share/gocode"
SESSION = os.path.join(HERE, "session_etcdctl.txt")
ALLOWLIST = os.path.join(HERE, "allowlist.txt")
GO_SRC = os.path.join(HERE, "clientv3_diff.go")
PY_SRC = os.path.join(HERE, "etcd3_diff.py")
V3CONC_SRC = os.path.join(HERE, "v3conc_diff.py")  # v3lock / v3election over grpcio
MEMBERS = 3
START_TIMEOUT = 60
STEP_TIMEOUT = 30  # s for one etcdctl command that should finish by itself
SETTLE_TIMEOUT = 30  # s for every member to reach the same revision before a {settle} step
CLIENT_TIMEOUT = 120  # s for the Go or python session program
GO_BUILD_TIMEOUT = 300


# ---- clusters ---------------------------------------------------------------------------

class Target:
    """A running cluster: its name ("etcd"/"latch"), client endpoints, peer URLs, procs."""

    def __init__(self, name):
        self.name = name
        self.endpoints = []  # "127.0.0.1:port", member order m1..m3
        self.peer_urls = []
        self.procs = []  # (name, Popen, log path)

    def alive(self):
        return all(p.poll() is None for _, p, _ in self.procs)

    def tails(self, n=20):
        out = []
        for name, _, log in self.procs:
            try:
                with open(log, errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                lines = []
            out.append("%s %s (%s):\n%s" % (self.name, name, log, "\n".join(lines[-n:])))
        return "\n".join(out)


def etcd_env():
    # etcd reads ETCD_* variables as flags: never let the caller's environment configure it.
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}


def healthy(endpoints):
    p = subprocess.run([ETCDCTL, "--endpoints=" + ",".join(endpoints), "--dial-timeout=2s",
                        "--command-timeout=3s", "endpoint", "health"],
                       capture_output=True, text=True, timeout=20,
                       env=dict(etcd_env(), ETCDCTL_API="3"))
    return p.returncode == 0


def start_etcd(root):
    t = Target("etcd")
    ports = free_ports(2 * MEMBERS)
    names = ["m%d" % (i + 1) for i in range(MEMBERS)]
    t.endpoints = ["127.0.0.1:%d" % ports[2 * i] for i in range(MEMBERS)]
    t.peer_urls = ["http://127.0.0.1:%d" % ports[2 * i + 1] for i in range(MEMBERS)]
    initial = ",".join("%s=%s" % (n, u) for n, u in zip(names, t.peer_urls))
    token = "latch-diff-%d" % os.getpid()
    for i, name in enumerate(names):
        log = os.path.join(root, "etcd-%s.log" % name)
        client = "http://" + t.endpoints[i]
        args = [ETCD, "--name", name, "--data-dir", os.path.join(root, "etcd-" + name),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", t.peer_urls[i],
                "--initial-advertise-peer-urls", t.peer_urls[i],
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr"]
        with open(log, "wb") as f:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, env=etcd_env())
        t.procs.append((name, p, log))
    up = wait_until(lambda: (not t.alive()) or healthy(t.endpoints), START_TIMEOUT, 0.5)
    return t, bool(up) and t.alive()


def start_latch(latchd, root):
    members, up = latchtest.cluster(latchd, os.path.join(root, "latch"), MEMBERS, prefix="m",
                                    token="latch-diff-%d" % os.getpid())
    t = Target("latch")
    t.members = members
    t.endpoints = [m.endpoint for m in members]
    t.peer_urls = [m.peer_url for m in members]
    t.procs = [(m.name, m.proc, m.logs[-1]) for m in members]
    if up:  # /health answers before a leader may be known to the client path
        up = wait_until(lambda: (not t.alive()) or healthy(t.endpoints), START_TIMEOUT, 0.5)
    return t, bool(up) and t.alive()


def stop(t):
    """SIGTERM by PID, bounded wait, then SIGKILL; returns {name: exit status}."""
    for _, p, _ in t.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = {}
    for name, p, _ in t.procs:
        try:
            codes[name] = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            codes[name] = "killed"
    return codes


# ---- the etcdctl session ----------------------------------------------------------------

class Step:
    def __init__(self, name, args, lineno):
        self.name, self.args, self.lineno = name, args, lineno
        self.stdin = None
        self.opts = {}  # capture: [(var, regex)], timeout: s, bg: name, ep: index, sleep: s
        self.directive = None  # ("collect", bgname, lines, timeout) or ("sleep", s)


OPT_RE = re.compile(r"\s\{([^{}]*)\}\s*$")


def parse_session(path):
    steps = []
    with open(path) as f:
        lines = f.read().splitlines()
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith(">"):  # a stdin line of the previous step
            body = line.lstrip()[1:]
            body = body[1:] if body.startswith(" ") else body
            steps[-1].stdin = (steps[-1].stdin or "") + body + "\n"
            continue
        if line.startswith("@"):
            parts = line[1:].split()
            s = Step("@" + " ".join(parts), [], n)
            if parts[0] == "collect":
                kv = dict(p.split("=", 1) for p in parts[2:])
                s.directive = ("collect", parts[1], int(kv.get("lines", "0")),
                               float(kv.get("timeout", "15")))
            elif parts[0] == "sleep":
                s.directive = ("sleep", float(parts[1]))
            else:
                raise ValueError("%s:%d: unknown directive %r" % (path, n, parts[0]))
            steps.append(s)
            continue
        name, sep, rest = line.partition("|")
        if not sep:
            raise ValueError("%s:%d: expected 'name | args'" % (path, n))
        opts = {}
        m = OPT_RE.search(rest)
        if m:
            rest = rest[:m.start()]
            for item in m.group(1).split(";"):
                key, _, val = item.strip().partition(" ")
                val = val.strip()
                if key == "capture":
                    var, _, rx = val.partition("=")
                    opts.setdefault("capture", []).append((var.strip(), rx.strip()))
                elif key in ("timeout", "sleep"):
                    opts[key] = float(val)
                elif key == "bg":
                    opts["bg"] = val
                elif key == "ep":
                    opts["ep"] = int(val)
                elif key == "stdin-bytes":
                    opts["stdin-bytes"] = int(val)
                elif key == "sort":
                    opts["sort"] = True
                elif key == "settle":
                    opts["settle"] = True
                else:
                    raise ValueError("%s:%d: unknown option %r" % (path, n, key))
        s = Step(name.strip(), shlex.split(rest), n)
        s.opts = opts
        steps.append(s)
    names = [s.name for s in steps if s.directive is None]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise ValueError("%s: duplicate step names %s" % (path, sorted(dup)))
    return steps


def member_revisions(t):
    """The store revision each member reports (Status header), or [] when one does not
    answer."""
    p = subprocess.run([ETCDCTL, "--endpoints=" + ",".join(t.endpoints), "--dial-timeout=2s",
                        "--command-timeout=3s", "endpoint", "status", "-w", "json"],
                       capture_output=True, text=True, timeout=20,
                       env=dict(etcd_env(), ETCDCTL_API="3"))
    try:
        doc = json.loads(p.stdout) if p.returncode == 0 else []
        return [st["Status"]["header"]["revision"] for st in doc]
    except (ValueError, KeyError, TypeError):
        return []


def settle(t):
    """Waits (bounded) until every member has applied the same revision, so that a
    serializable read through any of them sees the last write (a slow follower could
    otherwise answer from an older state, on etcd and latch alike)."""
    wait_until(lambda: len(set(r := member_revisions(t))) == 1 and len(r) == MEMBERS,
               SETTLE_TIMEOUT, 0.2)


def subst(text, vars_):
    return re.sub(r"\{\{(\w+)\}\}", lambda m: vars_.get(m.group(1), m.group(0)), text)


def ctl_cmd(t, step, vars_):
    eps = t.endpoints if "ep" not in step.opts else [t.endpoints[step.opts["ep"] - 1]]
    return [ETCDCTL, "--endpoints=" + ",".join(eps)] + [subst(a, vars_) for a in step.args]


def popen(cmd, stdin_text):
    # A new session so SIGTERM reaches only this etcdctl (and what it runs), by PID.
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env=dict(etcd_env(), ETCDCTL_API="3"))
    return p


def finish(p, stdin_text, timeout, bounded):
    """(rc, out, err). bounded: the command runs until SIGTERM after timeout (rc 'sigterm:N')."""
    try:
        out, err = p.communicate(stdin_text, timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        pass
    p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return "timeout+kill", out, err
    return ("sigterm:%s" % p.returncode) if bounded else "timeout", out, err


class BgProc:
    def __init__(self, p):
        self.p = p
        self.out = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.out.append(line)


SORTED_STEPS = set()  # steps whose stdout lines are compared sorted (after normalisation)


def run_session(t, steps, tmp):
    """[(step name, rc, stdout, stderr)] for target t, plus the captured variables. {{TMP}}
    in a step is tmp, a directory of this target's own (shown as <TMP>)."""
    vars_ = {"TMP": tmp}
    bg = {}
    rec = []
    for s in steps:
        if s.directive is not None:
            if s.directive[0] == "sleep":
                time.sleep(s.directive[1])
                continue
            _, name, lines, tmo = s.directive
            b = bg.pop(name)
            wait_until(lambda: len(b.out) >= lines or b.p.poll() is not None, tmo)
            time.sleep(0.3)  # a line beyond the expected ones would show up as a difference
            if b.p.poll() is None:
                b.p.send_signal(signal.SIGTERM)
            try:
                b.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                b.p.kill()
                b.p.wait()
            b.t.join(timeout=5)
            err = b.p.stderr.read()
            rc = b.p.returncode
            rec.append((name, "sigterm:%s" % rc if len(b.out) >= lines else "early:%s" % rc,
                        "".join(b.out), err))
            continue
        if "sleep" in s.opts:
            time.sleep(s.opts["sleep"])
        if s.opts.get("settle"):
            settle(t)
        cmd = ctl_cmd(t, s, vars_)
        stdin_text = subst(s.stdin, vars_) if s.stdin is not None else ""
        if "stdin-bytes" in s.opts:
            stdin_text = "x" * s.opts["stdin-bytes"]
        if "bg" in s.opts:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True,
                                 env=dict(etcd_env(), ETCDCTL_API="3"))
            bg[s.opts["bg"]] = BgProc(p)
            time.sleep(1.0)  # let it start (watches start at a captured revision anyway)
            continue
        bounded = "timeout" in s.opts
        p = popen(cmd, stdin_text)
        rc, out, err = finish(p, stdin_text, s.opts.get("timeout", STEP_TIMEOUT), bounded)
        for var, rx in s.opts.get("capture", []):
            m = re.search(rx, out)
            if m:
                vars_[var] = m.group(1)
        if s.opts.get("sort"):
            SORTED_STEPS.add(s.name)
        rec.append((s.name, rc, out, err))
    for b in bg.values():  # a session that forgot a collect: stop it anyway
        if b.p.poll() is None:
            b.p.send_signal(signal.SIGTERM)
            b.p.wait(timeout=10)
    return rec, vars_


# ---- normalisation ----------------------------------------------------------------------

def lease_namer(vars_):
    """A function mapping a lease id (int) to "<VAR>" for a captured one, else "<LEASE>"."""
    by_value = {}
    for var, val in vars_.items():
        if not var.startswith("L"):  # TMP, revisions
            continue
        try:
            by_value[int(val, 16)] = "<%s>" % var
        except ValueError:
            pass
    return lambda v: by_value.get(v, "<LEASE>")


def normalise(text, t, vars_):
    """Replaces what legitimately differs between two servers. See the module doc."""
    name = lease_namer(vars_)
    if "TMP" in vars_:
        text = text.replace(vars_["TMP"], "<TMP>")
    # endpoints and peer URLs by member index; any other loopback address
    for i, ep in enumerate(t.endpoints):
        text = text.replace(ep, "<EP%d>" % (i + 1))
    for i, u in enumerate(t.peer_urls):
        text = text.replace(u.replace("http://", ""), "<PEER%d>" % (i + 1))
    text = re.sub(r"127\.0\.0\.1:\d+", "<ADDR>", text)
    text = re.sub(r"endpoint://client-[0-9a-f-]+/", "endpoint://client-<UUID>/", text)
    # lease ids where etcdctl prints them: hex in text, decimal in -w json / -w fields
    text = re.sub(r"\blease ([0-9a-f]{1,16})\b", lambda m: "lease " + name(int(m.group(1), 16)),
                  text)
    # (etcd lists leases in no particular order: sorted by name)
    text = re.sub(r"(?m)^(found \d+ leases\n)((?:[0-9a-f]{1,16}\n)*)",
                  lambda m: m.group(1) + "".join(sorted(name(int(x, 16)) + "\n"
                                                        for x in m.group(2).split())), text)
    text = re.sub(r'"(ID|id|lease)":(\d+)',
                  lambda m: '"%s":%s' % (m.group(1), name(int(m.group(2)))
                                         if m.group(2) != "0" else "0"), text)
    text = re.sub(r'"(ID|Lease)" : (\d+)',
                  lambda m: '"%s" : %s' % (m.group(1), name(int(m.group(2)))
                                           if m.group(2) != "0" else "0"), text)
    # member and cluster ids, Raft term and indexes, database sizes (implementation's own)
    text = re.sub(r'"(cluster_id|member_id|raft_term|leader|raftIndex|raftTerm|'
                  r'raftAppliedIndex|dbSize|dbSizeInUse)":\s*\d+', r'"\1":<N>', text)
    text = re.sub(r'"(ClusterID|MemberID|RaftTerm|Leader|RaftIndex|RaftAppliedIndex|'
                  r'DBSize|DBSizeInUse)" : \d+', r'"\1" : <N>', text)
    # lock/elect keys name/<lease hex> of a lease etcdctl granted itself
    text = re.sub(r"\b(mylock|myelection)/[0-9a-f]{1,16}\b", r"\1/<LEASE>", text)
    # member ids in tables and status lines: etcdctl prints them with %x, so an id whose top
    # hex digit is 0 has fewer than 16 digits (member list rows, endpoint status rows)
    text = re.sub(r"(?m)^[0-9a-f]{1,16}(?=, (?:started|unstarted), )", "<HEXID>", text)
    text = re.sub(r"(<EP\d>, )[0-9a-f]{1,16}(?=, )", r"\1<HEXID>", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "<HEXID>", text)
    # a lease's remaining TTL is a timing: any value from 0 to the granted TTL is the same
    text = re.sub(r"granted with TTL\((\d+)s\), remaining\((\d+)s\)",
                  lambda m: "granted with TTL(%ss), remaining(%s)" % (
                      m.group(1), "<R>" if 0 <= int(m.group(2)) <= int(m.group(1))
                      else m.group(2) + "s"), text)
    # etcd lists a lease's attached keys in no fixed order (a Go map): sorted
    text = re.sub(r"attached keys\(\[([^\]]*)\]\)",
                  lambda m: "attached keys([%s])" % " ".join(sorted(m.group(1).split())), text)
    m = re.search(r'"granted-?TTL":(\d+)', text, re.I)
    if m:
        text = re.sub(r'"(TTL|ttl)":(\d+)', lambda t: '"%s":<R>' % t.group(1)
                      if int(t.group(2)) <= int(m.group(1)) else t.group(0), text)
    # durations
    text = re.sub(r"took = [0-9.]+[µnum]?s", "took = <T>", text)
    text = re.sub(r'"took":"[^"]*"', '"took":"<T>"', text)
    text = re.sub(r'"ts":("[^"]*"|[0-9.e+]+)', '"ts":"<TS>"', text)
    text = re.sub(r'"took":[0-9.e+-]+', '"took":<T>', text)
    # snapshot status: the file's checksum and size are the database format's own
    text = re.sub(r'"(hash|totalSize)":\d+', r'"\1":<N>', text)
    # versions and sizes in endpoint status
    text = re.sub(r"\b3\.4\.\d+\b", "3.4.<V>", text)
    text = re.sub(r'"version":"[^"]*"', '"version":"<V>"', text)
    text = re.sub(r"\b\d+(\.\d+)? [kMG]?B\b", "<SIZE>", text)
    return text


def normalise_json_members(text):
    """member list -w json: members sorted by name (etcd lists them in id order)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict) and isinstance(doc.get("members"), list):
        doc["members"].sort(key=lambda m: m.get("name", ""))
        for m in doc["members"]:
            if "ID" in m:
                m["ID"] = "<MEMBER>"
        return json.dumps(doc, separators=(",", ":")) + "\n"
    return text


def normalise_record(rec, t, vars_):
    out = []
    for name, rc, o, e in rec:
        o = normalise_json_members(o) if "member" in name else o
        # etcdctl's own retry warnings carry timestamps and goroutine-specific text
        e = "\n".join(normalise(line, t, vars_) for line in e.splitlines())
        o = normalise(o, t, vars_)
        if name in SORTED_STEPS:
            o = "".join(sorted(o.splitlines(True)))
        out.append((name, str(rc), o, e))
    return out


# ---- Go and python programs -------------------------------------------------------------

def go_env(cache):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GO111MODULE="off", GOPATH=GOPATH, GOCACHE=cache, GOPROXY="off", GOFLAGS="",
               GOENV="off", GOTOOLCHAIN="local")
    env.setdefault("HOME", tempfile.gettempdir())
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/bin:/usr/lib/go/bin"
    return env


def build_go(build_dir):
    go = shutil.which("go", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/lib/go/bin")
    if not check("go: the go tool is installed (golang-go)", go is not None):
        return None
    out_dir = os.path.join(build_dir, "compat")
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "clientv3_diff")
    cmd = [go, "build", "-o", binary, GO_SRC]
    try:
        p = subprocess.run(cmd, cwd=HERE, env=go_env(os.path.join(out_dir, "gocache")),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=GO_BUILD_TIMEOUT)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = "timeout", ""
    if not check("go: build clientv3_diff offline in GOPATH mode", rc == 0,
                 "exit %s\n%s" % (rc, out)):
        return None
    return binary


def run_program(t, cmd):
    """Runs one session program against t: [(step, rc, line, '')], one per printed line."""
    cmd = cmd + ["--endpoints", ",".join(t.endpoints)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=CLIENT_TIMEOUT, env=etcd_env())
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    rec = []
    for line in out.splitlines():
        step, _, rest = line.partition(" ")
        rec.append((step, "", rest + "\n", ""))
    rec.append(("exit", str(rc), "", err[-3000:] if rc != 0 else ""))
    return rec


# ---- comparison -------------------------------------------------------------------------

def load_allowlist():
    allowed = {}
    try:
        with open(ALLOWLIST) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    key, _, reason = line.partition(" ")
                    allowed[key] = reason.strip()
    except OSError:
        pass
    return allowed


def write_transcript(path, rec):
    with open(path, "w") as f:
        for name, rc, o, e in rec:
            f.write("=== %s (exit %s)\n%s" % (name, rc, o))
            if e:
                f.write("--- stderr\n%s\n" % e.rstrip("\n"))


def compare(session, a, b, allowed):
    """a: etcd's normalised record, b: latch's."""
    names_a = [r[0] for r in a]
    names_b = [r[0] for r in b]
    if not check("%s: the same steps ran against both" % session, names_a == names_b,
                 "etcd: %s\nlatch: %s" % (names_a, names_b)):
        pass
    by_b = {}
    for r in b:
        by_b.setdefault(r[0], []).append(r)
    same = 0
    for ra in a:
        rb = by_b.get(ra[0], [None]).pop(0) if by_b.get(ra[0]) else None
        key = "%s:%s" % (session, ra[0])
        if rb is not None and ra[1:] == rb[1:]:
            same += 1
            continue
        detail = "etcd  (exit %s):\n%s%s\nlatch (exit %s):\n%s%s" % (
            ra[1], indent(ra[2]), indent(ra[3], "stderr: "),
            rb[1] if rb else "-", indent(rb[2]) if rb else "  (step missing)\n",
            indent(rb[3], "stderr: ") if rb else "")
        if key in allowed:
            ok("%s: differs as allowed # ALLOWED: %s" % (key, allowed[key]))
            for line in detail.splitlines():
                print("    " + line, flush=True)
        else:
            fail("%s: same output, errors and exit code" % key, detail)
    ok("%s: %d of %d steps identical after normalisation" % (session, same, len(a)))


def indent(text, prefix=""):
    if not text:
        return ""
    return "".join("    %s%s\n" % (prefix, line) for line in text.rstrip("\n").splitlines())


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = {"etcdctl", "go", "python", "v3conc"}
    keep = "--keep" in sys.argv
    for i, a in enumerate(sys.argv):
        if a == "--only" and i + 1 < len(sys.argv):
            only = set(sys.argv[i + 1].split(","))
            args = [x for x in args if x != sys.argv[i + 1]]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    latchd = os.path.abspath(args[0])
    build_dir = os.path.abspath(args[1]) if len(args) > 1 else tempfile.gettempdir()
    if not check("etcd 3.4 is installed (%s, package etcd-server)" % ETCD,
                 os.access(ETCD, os.X_OK), "apt-get install etcd-server (scripts/deps.sh)"):
        return 1
    steps = parse_session(SESSION)
    allowed = load_allowlist()
    go_bin = build_go(build_dir) if "go" in only else None
    out_dir = os.path.join(build_dir, "compat", "diff")
    os.makedirs(out_dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="latch-diff-")
    results = {}
    try:
        for name, starter in (("etcd", lambda: start_etcd(root)),
                              ("latch", lambda: start_latch(latchd, root))):
            t, up = starter()
            try:
                if not check("%s: %d members healthy" % (name, MEMBERS), up, t.tails()):
                    continue
                res = {}
                if "etcdctl" in only:
                    tmp = os.path.join(root, name + "-files")
                    os.makedirs(tmp, exist_ok=True)
                    rec, vars_ = run_session(t, steps, tmp)
                    res["etcdctl"] = normalise_record(rec, t, vars_)
                if go_bin:
                    res["go"] = normalise_record(run_program(t, [go_bin]), t, {})
                if "python" in only:
                    res["python"] = normalise_record(run_program(t, [PYTHON, PY_SRC]), t, {})
                if "v3conc" in only:
                    res["v3conc"] = normalise_record(run_program(t, [PYTHON, V3CONC_SRC]), t,
                                                     {})
                for session, rec in res.items():
                    write_transcript(os.path.join(out_dir, "%s.%s.txt" % (session, name)), rec)
                results[name] = res
            finally:
                codes = stop(t)
                if name == "latch":
                    check("latch: every member exits 0 on SIGTERM",
                          all(c == 0 for c in codes.values()), "%s\n%s" % (codes, t.tails()))
                    latchtest.sanitizer_check(t.members, "latch")
        if "etcd" in results and "latch" in results:
            for session in sorted(results["etcd"]):
                compare(session, results["etcd"][session], results["latch"].get(session, []),
                        allowed)
            print("# transcripts in %s" % out_dir, flush=True)
    finally:
        if failures or keep:
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
