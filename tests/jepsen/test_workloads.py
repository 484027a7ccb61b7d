#!/usr/bin/python3
"""test_workloads.py — short harness runs of the append, watch, lease, lock, lock_unfenced and
election workloads against a real 3-node latchd cluster (jepsen/run), each checked by its
checker, plus the teeth runs those workloads must catch.

    test_workloads.py kv LATCHD       append (kill nemesis), watch (kill), lease: each VALID,
                                      with what the workload must have recorded (txns with
                                      reads, watchers caught up with events, expiries seen)
    test_workloads.py locks LATCHD    lock: VALID, and thread 0's forced client pause made at
                                      least one stale write that latch's fence and the
                                      resource both refused; lock_unfenced: INVALID with
                                      mutual-exclusion anomalies only (the negative control)
    test_workloads.py election LATCHD election: VALID, observers caught up, and the paused
                                      leader's proclaim refused ("not leader")
    test_workloads.py etcd LATCHD     the same harness against a real etcd 3.4 (Debian's
                                      /usr/bin/etcd): lock_unfenced with client pauses INVALID
                                      with mutual-exclusion anomalies (Jepsen's 2020 finding:
                                      etcd's locks alone cannot guarantee mutual exclusion),
                                      while register under kill -9 stays linearizable
    test_workloads.py teeth LATCHD    the teeth these workloads must catch (LATCHD built with
                                      -DLATCH_TEETH=ON): watch with watch-dup / watch-skip
                                      INVALID (duplicates / gaps), lock with no-fence INVALID
                                      (stale-write)

Runs on loopback (--no-netns: the nemeses used need no namespaces), ~10 s of operations per
run. Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from latchtest import check, failures, free_ports, wait_until  # noqa: E402

RUN = os.path.join(ROOT, "jepsen", "run")
PY = "/usr/bin/python3"


def has_teeth(latchd):
    """True when this latchd was built with the test-only switches: started alone with
    LATCH_TEETH=watch-dup it says "TEETH ENABLED" instead of refusing ("this build has no
    teeth", exit 2). The probe member is stopped by PID."""
    cport, pport, mport = free_ports(3)
    with tempfile.TemporaryDirectory(prefix="jepsen-teeth-probe-") as d:
        log_path = os.path.join(d, "log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [latchd, "--name", "probe", "--data-dir", os.path.join(d, "data"),
                 "--listen-client-urls", "http://127.0.0.1:%d" % cport,
                 "--advertise-client-urls", "http://127.0.0.1:%d" % cport,
                 "--listen-peer-urls", "http://127.0.0.1:%d" % pport,
                 "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % pport,
                 "--listen-metrics-urls", "http://127.0.0.1:%d" % mport,
                 "--initial-cluster", "probe=http://127.0.0.1:%d" % pport],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, LATCH_TEETH="watch-dup"))

        def said():
            with open(log_path, errors="replace") as f:
                text = f.read()
            if "TEETH ENABLED" in text:
                return "yes"
            if "has no teeth" in text or proc.poll() is not None:
                return "no"
            return None
        try:
            answer = wait_until(said, 30)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
    return answer == "yes"


def run(latchd, root, workload, seed, *extra, time_s=10, concurrency=4):
    out = os.path.join(root, "%s-%d%s" % (workload, seed, "-teeth" if "--teeth" in extra
                                          else ""))
    argv = [PY, RUN, "--workload", workload, "--nodes", "3", "--time", str(time_s),
            "--concurrency", str(concurrency), "--seed", str(seed), "--no-netns",
            "--latchd", latchd, "--out", out] + list(extra)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    print("# %s: exit %d, %s" % (workload, p.returncode, " ".join(argv[2:])), flush=True)
    for line in p.stdout.splitlines():
        if not line.startswith("# nemesis"):
            print("#   " + line)
    results = None
    try:
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
    except (OSError, ValueError):
        print(p.stderr[-3000:])
    events = []
    try:
        with open(os.path.join(out, "history.jsonl")) as f:
            events = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    return p.returncode, results or {}, events, out


def completions(events, f, type_=None):
    return [e for e in events if e.get("f") == f and e.get("type") != "invoke"
            and e.get("process") != "nemesis" and (type_ is None or e.get("type") == type_)]


def checker(results, name):
    return (results.get("checkers") or {}).get(name) or {}


def kv(latchd, root):
    rc, res, ev, _ = run(latchd, root, "append", 21, "--nemesis", "kill")
    check("append: exit 0, serializable VALID", rc == 0 and checker(res, "serializable")
          .get("valid") is True, json.dumps(checker(res, "serializable"))[:800])
    oks = completions(ev, "txn", "ok")
    reads = [m for e in oks for m in e["value"] if m[0] == "r" and m[2]]
    check("append: committed txns, reads that saw appends", len(oks) > 20 and len(reads) > 5,
          "%d ok txns, %d non-empty reads" % (len(oks), len(reads)))
    check("append: report written", os.path.exists(os.path.join(root, "append-21",
                                                                 "report.html")))

    rc, res, ev, _ = run(latchd, root, "watch", 22, "--nemesis", "kill")
    check("watch: exit 0, watch VALID", rc == 0 and checker(res, "watch").get("valid") is True,
          json.dumps(checker(res, "watch"))[:800])
    ws = completions(ev, "watch", "ok")
    writes = completions(ev, "write", "ok")
    check("watch: every watcher caught up with events of its range",
          len(ws) == 5 and all(w.get("caught_up") and w["value"]["events"] for w in ws),
          [(w.get("key"), len(w["value"]["events"]), w.get("caught_up")) for w in ws])
    full = [w for w in ws if w.get("key") == ["k0", "k10"]]
    check("watch: the full-range watcher saw every ok write",
          full and {e[0] for e in full[0]["value"]["events"]} >= {w["revision"] for w in writes},
          "%d writes" % len(writes))

    rc, res, ev, _ = run(latchd, root, "lease", 23)
    check("lease: exit 0, lease VALID", rc == 0 and checker(res, "lease").get("valid") is True,
          json.dumps(checker(res, "lease"))[:800])
    gone = [e for e in completions(ev, "expire-observed", "ok") if e["value"] == {"exists": False}]
    renews = completions(ev, "renew", "ok")
    check("lease: renewals, and expiries observed after renewals stopped",
          len(renews) >= 4 and len(gone) >= 2, "%d renews, %d expiries" % (len(renews), len(gone)))



def teeth(latchd, root):
    if not has_teeth(latchd):
        print("# %s has no teeth (-DLATCH_TEETH=OFF): nothing to run" % latchd)
        check("teeth: latchd built with -DLATCH_TEETH=ON", False)
        return
    for sw, kind, seed in (("watch-dup", "duplicate", 24), ("watch-skip", "gap", 25)):
        rc, res, _, _ = run(latchd, root, "watch", seed, "--teeth", sw, time_s=6)
        counts = checker(res, "watch").get("anomaly_counts") or {}
        check("watch, LATCH_TEETH=%s: INVALID with %s anomalies" % (sw, kind),
              rc == 1 and checker(res, "watch").get("valid") is False and counts.get(kind),
              json.dumps(checker(res, "watch"))[:800])
    rc, res, ev, _ = run(latchd, root, "lock", 33, "--teeth", "no-fence", time_s=8)
    lk = checker(res, "lock")
    counts = lk.get("anomaly_counts") or {}
    check("lock, LATCH_TEETH=no-fence: INVALID with stale-write anomalies",
          rc == 1 and lk.get("valid") is False and counts.get("stale-write"),
          json.dumps(lk)[:800])


def locks(latchd, root):
    rc, res, ev, out = run(latchd, root, "lock", 31)
    check("lock: exit 0, lock VALID", rc == 0 and checker(res, "lock").get("valid") is True,
          json.dumps(checker(res, "lock"))[:800])
    fenced_out = [e for e in completions(ev, "write", "fail") if "fence rejected" in
                  (e.get("error") or "") and e.get("resource") == "rejected"]
    check("lock: the paused holder's write refused by latch's fence and by the resource",
          len(fenced_out) >= 1, [e.get("error") for e in completions(ev, "write", "fail")])
    try:
        with open(os.path.join(out, "resource.jsonl")) as f:
            log = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        log = []
    check("lock: the resource logged writes and accepted none with a stale token",
          log and not any(r["accepted"] and r["stale"] for r in log), "%d lines" % len(log))

    rc, res, ev, _ = run(latchd, root, "lock_unfenced", 32)
    lk = checker(res, "lock")
    kinds = {a.get("type") for a in lk.get("anomalies") or []}
    check("lock_unfenced: exit 1, lock INVALID with mutual-exclusion (the negative control)",
          rc == 1 and lk.get("valid") is False and kinds == {"mutual-exclusion"},
          json.dumps(lk)[:800])
    check("lock_unfenced: the other checkers VALID",
          all(r.get("valid") is True for n, r in res.get("checkers", {}).items() if n != "lock"))


def etcd(latchd, root):
    if not os.access("/usr/bin/etcd", os.X_OK):
        check("etcd: /usr/bin/etcd installed (scripts/deps.sh: etcd-server)", False)
        return
    rc, res, _, _ = run(latchd, root, "lock_unfenced", 51, "--target", "etcd")
    lk = checker(res, "lock")
    kinds = {a.get("type") for a in lk.get("anomalies") or []}
    check("etcd lock_unfenced: exit 1, lock INVALID with mutual-exclusion anomalies",
          rc == 1 and lk.get("valid") is False and kinds == {"mutual-exclusion"},
          json.dumps(lk)[:800])
    rc, res, ev, _ = run(latchd, root, "register", 52, "--target", "etcd", "--nemesis", "kill")
    lin = checker(res, "linearizable")
    check("etcd register under kill -9: exit 0, linearizable VALID",
          rc == 0 and lin.get("valid") is True, json.dumps(lin)[:800])
    check("etcd register: operations completed", len(completions(ev, "write", "ok")) > 10)


def election(latchd, root):
    rc, res, ev, _ = run(latchd, root, "election", 41)
    check("election: exit 0, election VALID",
          rc == 0 and checker(res, "election").get("valid") is True,
          json.dumps(checker(res, "election"))[:800])
    obs = completions(ev, "observe", "ok")
    check("election: every observer caught up (saw the final sentinel)",
          len(obs) == 3 and all(o.get("caught_up") for o in obs),
          [(len(o["value"]["leaders"]), o.get("caught_up")) for o in obs])
    refused = [e for e in completions(ev, "proclaim", "fail") if "not leader" in
               (e.get("error") or "")]
    check("election: the paused leader's proclaim refused", len(refused) >= 1)
    leaders = completions(ev, "campaign", "ok")
    check("election: several leaderships", len(leaders) >= 3, len(leaders))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("kv", "locks", "election", "teeth", "etcd"):
        print(__doc__)
        return 2
    mode, latchd = sys.argv[1], os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="jepsen-wl-") as root:
        {"kv": kv, "locks": locks, "election": election, "teeth": teeth,
         "etcd": etcd}[mode](latchd, root)
        if failures:
            keep = os.path.join(tempfile.gettempdir(), "jepsen-wl-failed-%d" % os.getpid())
            subprocess.run(["cp", "-a", root, keep])
            print("# run folders kept in %s" % keep)
    if failures:
        print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all workload checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
