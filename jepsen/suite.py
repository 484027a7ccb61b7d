#!/usr/bin/python3
"""jepsen/suite.py — the full harness suite (`make jepsen`): every workload against every
nemesis mix on a 5-node latch cluster, then the etcd-API workloads against a real etcd
cluster, one jepsen/run each; prints a table of verdicts and exits 1 if a run was not what it
should be (valid, or invalid for a negative control: a workload with EXPECTED = "invalid").

    jepsen/suite.py [--time 120] [--latchd PATH] [--only register,set] [--mixes kill,pause]
                    [--targets latch,etcd] [--out DIR] [--seed S] [--dry-run]

Runs go to OUT/<target>-<workload>-<mix>/ (default jepsen/store/suite-<UTC time>/), each a
normal run folder with its report.html (the nodes' data dirs are deleted after a run that
came out as expected, unless --keep-data); OUT/summary.json lists them all.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from latchjep import runner  # noqa: E402

# Nemesis mixes of the suite, by name -> --nemesis value. "clock" is latch only (libfaketime
# cannot reach a Go binary; the runner refuses it for etcd): for etcd the suite drops it from
# every mix and skips the mix made of it alone.
MIXES = {
    "none": "none",
    "partition": "partition",
    "kill": "kill",
    "pause": "pause",
    "clock": "clock",
    "net": "loss,delay",
    "member": "member,compact",
    "bitflip": "bitflip",
    "all": "partition,kill,pause,clock,member,compact",
}
ETCD_SKIP = {"clock"}


def prune_data(run_dir):
    nodes = os.path.join(run_dir, "nodes")
    if not os.path.isdir(nodes):
        return
    for name in os.listdir(nodes):
        for d in os.listdir(os.path.join(nodes, name)):
            if d == "data" or d.startswith("data.removed-"):
                shutil.rmtree(os.path.join(nodes, name, d), ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=float(os.environ.get("JEPSEN_TIME", 120)))
    ap.add_argument("--latchd")
    ap.add_argument("--only", help="workloads (default: every module in latchjep/workloads)")
    ap.add_argument("--mixes", help="mix names (default: all): " + ", ".join(MIXES))
    ap.add_argument("--targets", default="latch,etcd")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("JEPSEN_SEED", 1)))
    ap.add_argument("--out")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--keep-data", action="store_true",
                    help="keep the nodes' data dirs of runs that came out as expected "
                         "(default: only their logs, history and reports are kept)")
    args = ap.parse_args()
    workloads = args.only.split(",") if args.only else runner.workload_names()
    mixes = args.mixes.split(",") if args.mixes else list(MIXES)
    out = args.out or os.path.join(HERE, "store", "suite-" + time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(out, exist_ok=True)
    rows = []
    for target in args.targets.split(","):
        for wname in workloads:
            w = runner.load_workload(wname)
            if w is None or target not in getattr(w, "TARGETS", ("latch", "etcd")):
                continue
            exp = getattr(w, "EXPECTED", "valid")  # or {mix: verdict}, default valid
            for mix in mixes:
                expected = exp.get(mix, "valid") if isinstance(exp, dict) else exp
                if target == "etcd" and mix in ETCD_SKIP:
                    continue  # a mix made of a fault etcd cannot take
                run_dir = os.path.join(out, "%s-%s-%s" % (target, wname, mix))
                faults = [f for f in MIXES[mix].split(",")
                          if not (target == "etcd" and f in ETCD_SKIP)]
                argv = [sys.executable, os.path.join(HERE, "run"), "--workload", wname,
                        "--nemesis", ",".join(faults), "--time", str(args.time),
                        "--target", target,
                        "--concurrency", str(args.concurrency), "--seed", str(args.seed),
                        "--out", run_dir]
                if args.latchd:
                    argv += ["--latchd", args.latchd]
                print("## %s" % " ".join(argv), flush=True)
                if args.dry_run:
                    continue
                t = time.monotonic()
                with open(os.path.join(out, "%s-%s-%s.log" % (target, wname, mix)), "w") as f:
                    rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
                verdict = {0: "valid", 1: "invalid", 2: "refused"}.get(rc, "error %d" % rc)
                good = verdict == expected
                if good and not args.keep_data:  # etcd preallocates 64 MB WAL files per node
                    prune_data(run_dir)
                rows.append({"target": target, "workload": wname, "mix": mix,
                             "verdict": verdict, "expected": expected, "good": good,
                             "seconds": round(time.monotonic() - t, 1), "dir": run_dir})
                print("%-5s %-14s %-10s %-8s %s" % (target, wname, mix, verdict,
                                                   "ok" if good else "UNEXPECTED"), flush=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    bad = [r for r in rows if not r["good"]]
    print("# %d runs, %d unexpected; summary %s" % (len(rows), len(bad),
                                                    os.path.join(out, "summary.json")))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
