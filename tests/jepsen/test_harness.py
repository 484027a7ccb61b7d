#!/usr/bin/python3
"""test_harness.py — tests of the harness core (jepsen/latchjep: cluster, nemesis, history,
client, runner, jepsen/run).

    test_harness.py units LATCHD     no cluster run (seconds): partition shapes, the history
                                     writer/reader, error classification, script loading,
                                     refusals of the CLI (unknown workload, a partition
                                     without namespaces, clock faults against etcd)
    test_harness.py smoke LATCHD     jepsen/run --workload register on 5 latchd nodes for 20 s
                                     with a scripted partition (isolate the leader) and a
                                     kill -9 of two nodes (tests/jepsen/smoke-nemesis.json):
                                     exit 0, results.json valid with the linearizability
                                     checker valid, every fault started and stopped, heal-and-
                                     recover recorded, then no namespace and no node process
                                     left behind. Without namespaces (not root) the partition
                                     is left out and the reason printed.
    test_harness.py cluster LATCHD   one node on loopback: the client (paged prefix reads,
                                     cas); libfaketime reaches the running
                                     latchd's wall clock (the Date header of its admin listener
                                     follows the offset file) while it keeps serving; the crash
                                     scan: a kill by the harness is no crash, an exit nobody
                                     asked for is one, an assertion line in a log is reported
    test_harness.py teeth LATCHD SWITCH WORKLOAD CHECKER
                                     a run of WORKLOAD with LATCH_TEETH=SWITCH (a test build's
                                     broken guarantee) and the leader isolated twice
                                     (tests/jepsen/teeth-nemesis.json) must exit 1 with
                                     CHECKER invalid (skipped without namespaces)

Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""
import email.utils
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "jepsen"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from latchtest import check, failures, http_get, wait_until  # noqa: E402

RUN = os.path.join(ROOT, "jepsen", "run")
PY = "/usr/bin/python3"


def units(latchd):
    import grpc
    from latchjep import client, history, nemesis

    # ---- partition shapes ----
    for n in (5, 7):
        order = list(range(n))
        drops = nemesis.ring_drops(n, order)
        sees = [frozenset(b for b in range(n) if (a, b) not in drops) for a in range(n)]
        check("ring(%d): every node reaches a majority" % n,
              all(len(s) >= n // 2 + 1 for s in sees), sees)
        check("ring(%d): no two nodes see the same majority" % n, len(set(sees)) == n, sees)
        check("ring(%d): symmetric" % n, all((b, a) in drops for a, b in drops))
        check("ring(%d): a real partition (no node sees all)" % n,
              all(len(s) < n for s in sees), sees)
        drops, groups = nemesis.bridge_drops(n, order)
        left, mid, right = groups
        check("bridge(%d): the halves cannot talk, the bridge reaches all" % n,
              all((a, b) in drops for a in left for b in right) and
              not any(mid[0] in d for d in drops), (drops, groups))
    g = nemesis.groups_drops([[2], [0, 1, 3, 4]], 5)
    check("isolate: node 2 cut both ways from the 4 others, nothing else",
          g == {(2, b) for b in (0, 1, 3, 4)} | {(b, 2) for b in (0, 1, 3, 4)}, g)

    # ---- history ----
    d = tempdir("latchjep-units-")
    path = os.path.join(d, "history.jsonl")
    h = history.History(path)
    a = h.invoke(0, "write", key="r1", value=3)
    b = h.invoke(1, "read", key="r1")
    h.nemesis("start-kill", {"nodes": [0]})
    h.complete(b, "ok", 3)
    h.complete(a, "info", error="DEADLINE_EXCEEDED: Deadline Exceeded")
    h.close()
    with open(path, "a") as f:
        f.write('{"index": 5, "torn')  # a run killed mid-line
    evs = history.read(path)
    check("history: indexes 0..n-1 in file order, torn last line skipped",
          [e["index"] for e in evs] == [0, 1, 2, 3, 4], evs)
    check("history: times never go back",
          all(evs[i]["time"] <= evs[i + 1]["time"] for i in range(len(evs) - 1)))
    check("history: completion has latency, an info keeps the invoke value and the error",
          evs[3].get("latency", -1) >= 0 and evs[4]["value"] == 3 and "DEADLINE" in
          evs[4]["error"], evs)
    check("history: the nemesis is process \"nemesis\", type info",
          evs[2]["process"] == "nemesis" and evs[2]["type"] == "info")
    ps = history.pairs(evs)
    check("history: pairs() matches invoke and completion per process",
          [(p[0]["index"], p[1]["index"]) for p in ps] == [(0, 4), (1, 3)], ps)

    # ---- error classification ----
    class E(grpc.RpcError):
        def __init__(self, code, details):
            self._c, self._d = code, details

        def code(self):
            return self._c

        def details(self):
            return self._d
    S = grpc.StatusCode
    cases = [(E(S.UNAVAILABLE, "failed to connect to all addresses"), False, "fail"),
             (E(S.UNAVAILABLE, "etcdserver: request timed out"), False, "info"),
             (E(S.DEADLINE_EXCEEDED, "Deadline Exceeded"), False, "info"),
             (E(S.DEADLINE_EXCEEDED, "Deadline Exceeded"), True, "fail"),
             (E(S.INVALID_ARGUMENT, "etcdserver: key is not provided"), False, "fail"),
             (E(S.UNAVAILABLE, "etcdserver: leader changed"), False, "info"),
             (ValueError("x"), False, "info")]
    for e, idem, want in cases:
        got = client.classify(e, idempotent=idem)
        check("classify %s%s -> %s" % (client.error_text(e), " (read)" if idem else "", want),
              got == want, got)
    check("a client moves on after UNAVAILABLE and DEADLINE_EXCEEDED only",
          client.moves_on(cases[0][0]) and client.moves_on(cases[2][0]) and
          not client.moves_on(cases[4][0]))

    # ---- scripts ----
    sp = os.path.join(d, "bad.json")
    with open(sp, "w") as f:
        json.dump({"at": 1}, f)
    try:
        nemesis.load_script(sp)
        check("a script that is not a list is refused", False)
    except ValueError:
        check("a script that is not a list is refused", True)
    check("the smoke script loads",
          len(nemesis.load_script(os.path.join(HERE, "smoke-nemesis.json"))) == 4)
    check("nemesis names: all / none / a list", nemesis.parse("all") == list(nemesis.ALL)
          and nemesis.parse("none") == [] and nemesis.parse("kill, pause") == ["kill", "pause"])

    # ---- CLI refusals (no cluster starts) ----
    def cli(*argv):
        return subprocess.run([PY, RUN] + list(argv), capture_output=True, text=True,
                              timeout=120)
    p = cli("--workload", "no-such-workload", "--time", "1", "--latchd", latchd)
    check("jepsen/run: an unknown workload exits 2 and names the known ones",
          p.returncode == 2 and "register" in p.stderr, p.stderr)
    p = cli("--workload", "register", "--nemesis", "partition", "--no-netns", "--time", "1",
            "--latchd", latchd, "--out", os.path.join(d, "refused1"))
    check("jepsen/run: a partition without namespaces is refused (exit 2, reason given)",
          p.returncode == 2 and "needs network namespaces" in p.stderr, p.stdout + p.stderr)
    if os.access("/usr/bin/etcd", os.X_OK):
        p = cli("--workload", "register", "--nemesis", "clock", "--target", "etcd",
                "--no-netns", "--time", "1", "--out", os.path.join(d, "refused2"))
        check("jepsen/run: clock faults against etcd are refused (exit 2, reason given)",
              p.returncode == 2 and "refused for etcd" in p.stderr, p.stdout + p.stderr)
    p = cli("--workload", "register", "--nemesis", "earthquake", "--no-netns", "--time", "1",
            "--latchd", latchd, "--out", os.path.join(d, "refused3"))
    check("jepsen/run: an unknown nemesis is refused", p.returncode != 0 and
          "unknown nemesis" in p.stderr, p.stderr[-2000:])


def leftovers(pid, out):
    """(namespaces named by process pid, live processes whose command line names out)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = [line.split()[0] for line in ns.splitlines()
            if line.startswith("lt%dx" % pid)]
    procs = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if out.encode() in f.read():
                    procs.append(int(p))
        except OSError:
            pass
    return mine, procs


def smoke(latchd):
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import netns
    out = tempdir("latchjep-smoke-")
    script = os.path.join(HERE, "smoke-nemesis.json")
    reason = netns.unavailable()
    if reason is not None:
        print("# namespaces unavailable (%s): the smoke run kills nodes only" % reason)
        with open(script) as f:
            events = [e for e in json.load(f) if "partition" not in e["f"]]
        script = os.path.join(out, "script.json")
        with open(script, "w") as f:
            json.dump(events, f)
    run_dir = os.path.join(out, "run")
    argv = [PY, RUN, "--workload", "register", "--nemesis-script", script, "--time", "20",
            "--concurrency", "5", "--nodes", "5", "--seed", "1", "--latchd", latchd,
            "--out", run_dir]
    t = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text, _ = p.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        p.terminate()
        text, _ = p.communicate(timeout=60)
    print("# jepsen/run took %.1f s" % (time.monotonic() - t))
    check("smoke: jepsen/run exits 0 (every checker valid)", p.returncode == 0,
          text[-4000:])
    try:
        with open(os.path.join(run_dir, "results.json")) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        res = {"error": repr(e)}
    lin = res.get("checkers", {}).get("linearizable", {})
    check("smoke: results.json valid, linearizable checker valid",
          res.get("valid") is True and lin.get("valid") is True, json.dumps(res)[:3000])
    check("smoke: the nodes checker found no crash, assertion or sanitizer report",
          res.get("checkers", {}).get("nodes", {}).get("valid") is True,
          json.dumps(res.get("checkers", {}).get("nodes"))[:3000])
    fs = []
    try:
        with open(os.path.join(run_dir, "nemesis.jsonl")) as f:
            fs = [json.loads(line)["f"] for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    want = ["start-kill", "stop-kill", "start-recover", "stop-recover"]
    if reason is None:
        want = ["start-partition", "stop-partition"] + want
    check("smoke: every scripted fault started and stopped, then heal-and-recover",
          fs == want, fs)
    from latchjep import history
    evs = history.read(os.path.join(run_dir, "history.jsonl"))
    oks = [e for e in evs if e["type"] == "ok"]
    check("smoke: the history holds ok reads, writes and cas (> 100 ok ops)",
          len(oks) > 100 and {e["f"] for e in oks} >= {"read", "write", "cas"}, len(oks))
    nem = [e for e in evs if e["process"] == "nemesis"]
    check("smoke: the nemesis events are in the history too",
          [e["f"] for e in nem] == fs, nem)
    check("smoke: a log per node", all(os.path.getsize(os.path.join(
        run_dir, "nodes", "n%d" % i, "latchd.log")) > 0 for i in range(1, 6)))
    ns, procs = leftovers(p.pid, run_dir)
    check("smoke: no namespace and no node process left behind", not ns and not procs,
          (ns, procs))


def teeth(latchd, switch, workload, checker):
    """A run with LATCH_TEETH=switch must be judged invalid by checker."""
    import netns
    reason = netns.unavailable()
    if reason is not None:
        print("ok - teeth %s # SKIP needs namespaces to isolate the leader: %s"
              % (switch, reason))
        return
    out = tempdir("latchjep-teeth-")
    run_dir = os.path.join(out, "run")
    argv = [PY, RUN, "--workload", workload, "--nemesis-script",
            os.path.join(HERE, "teeth-nemesis.json"), "--time", "20", "--concurrency", "6",
            "--nodes", "5", "--seed", "1", "--latchd", latchd, "--teeth", switch,
            "--out", run_dir]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    check("teeth %s: jepsen/run exits 1 (a checker is invalid)" % switch, p.returncode == 1,
          (p.stdout + p.stderr)[-3000:])
    try:
        with open(os.path.join(run_dir, "results.json")) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        res = {"error": repr(e)}
    got = res.get("checkers", {}).get(checker, {})
    check("teeth %s: checker %s reports the broken guarantee (invalid)" % (switch, checker),
          got.get("valid") is False, json.dumps(got)[:2000])
    check("teeth %s: no crash or sanitizer report besides" % switch,
          res.get("checkers", {}).get("nodes", {}).get("valid") is True,
          json.dumps(res.get("checkers", {}).get("nodes"))[:2000])
    with open(os.path.join(run_dir, "nodes", "n1", "latchd.log"), errors="replace") as f:
        check("teeth %s: latchd said loudly that the switch is on" % switch,
              "TEETH ENABLED: %s" % switch in f.read())
    if p.returncode == 1:
        print("# " + "\n# ".join(line for line in p.stdout.splitlines()
                                  if ": INVALID" in line))


def cluster(latchd):
    from latchjep import cluster as clustermod
    if clustermod.faketime_lib() is None:
        print("FAIL - libfaketime is not installed (package faketime: bash scripts/deps.sh)")
        failures.append("faketime")
        return
    out = tempdir("latchjep-cluster-")
    c = clustermod.Cluster("latch", 1, out, binary=latchd, use_netns=False, faketime=True,
                           log=lambda s: None)
    try:
        c.start(timeout=60)
        m = c.nodes[0]
        admin = "http://%s:%d/health" % (m.ip, m.metrics_port)

        def skew():
            import urllib.request
            try:
                with urllib.request.urlopen(admin, timeout=5) as r:
                    date = r.headers.get("Date")
            except OSError:
                return None
            if not date:
                return None
            return email.utils.parsedate_to_datetime(date).timestamp() - time.time()
        s0 = skew()
        check("clock: offset 0: the node's Date header is the real time (+-5 s)",
              s0 is not None and abs(s0) < 5, s0)
        m.set_clock(3600)
        s1 = wait_until(lambda: (lambda v: v if v is not None and v > 3000 else None)(skew()),
                        10)
        check("clock: offset +3600 s reaches the running node (Date header moves)",
              s1 is not None and 3590 < s1 < 3610, s1)
        st, _ = http_get(admin)
        check("clock: the node keeps serving while its wall clock is an hour ahead",
              st == 200 and c.leader() == 0, st)
        m.set_clock(0)
        s2 = wait_until(lambda: (lambda v: v if v is not None and abs(v) < 5 else None)(
            skew()), 10)
        check("clock: offset back to 0", s2 is not None, s2)

        # ---- the client ----
        from latchjep import client as clientmod
        cl = clientmod.Client(c.endpoints())
        try:
            for i in range(25):
                cl.put(b"jt/%02d" % i, b"%d" % i)
            cl.put(b"ju", b"outside")
            got, rev = cl.get_prefix(b"jt/", page=7)
            check("client: get_prefix pages (7 keys a page) through 25 keys at one revision",
                  got == {b"jt/%02d" % i: b"%d" % i for i in range(25)} and rev > 0,
                  (len(got), rev))
            check("client: cas applies only when the value matches",
                  cl.cas(b"jt/00", b"0", b"x") and not cl.cas(b"jt/00", b"0", b"y") and
                  cl.get(b"jt/00")[0] == b"x")
            check("client: cas with old None creates only an absent key",
                  cl.cas(b"jt/new", None, b"1") and not cl.cas(b"jt/new", None, b"2"))
        finally:
            cl.close()

        # ---- the crash scan ----
        m.kill()  # by the harness (a nemesis): not a crash
        m.start()
        check("scan: the node restarts after a harness kill", c.wait_ready(60))
        sc = c.scan()
        check("scan: a kill by the harness is not a crash", sc["valid"] and not sc["crashes"],
              sc)
        os.kill(m.proc.pid, 9)  # nobody in the harness asked for this
        m.proc.wait(timeout=30)
        sc = c.scan()
        check("scan: an exit the harness did not cause is a crash (node, exit status)",
              not sc["valid"] and sc["crashes"] and sc["crashes"][0]["node"] == "n1" and
              sc["crashes"][0]["exit"] == -9, sc)
        with open(m.log_path, "a") as f:
            f.write("server/x.c:12: assertion failed: a == b\n")
        sc = c.scan()
        check("scan: an assertion failure in a log is reported with its line",
              any(r["mark"] == "assertion failed:" and "a == b" in r["excerpt"]
                  for r in sc["reports"]), sc)
    finally:
        c.close()
    check("cluster: close() leaves no node process", not c.nodes[0].alive())


_temp_dirs = []  # removed at the end when every check passed (kept for a look otherwise)


def tempdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(d)
    return d


def main():
    modes = {"units": 3, "smoke": 3, "cluster": 3, "teeth": 6}
    if len(sys.argv) < 2 or modes.get(sys.argv[1]) != len(sys.argv):
        print(__doc__)
        return 2
    mode, latchd = sys.argv[1], os.path.abspath(sys.argv[2])
    if mode == "teeth":
        teeth(latchd, *sys.argv[3:])
    else:
        {"units": units, "smoke": smoke, "cluster": cluster}[mode](latchd)
    if failures:
        print("# %d check(s) failed: %s; files kept in %s"
              % (len(failures), ", ".join(failures), " ".join(_temp_dirs)))
        return 1
    for d in _temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
