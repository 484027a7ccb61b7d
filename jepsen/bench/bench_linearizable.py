#!/usr/bin/python3
"""bench_linearizable.py — times the linearizability checker on a generated register history.

    jepsen/bench/bench_linearizable.py [--ops 10000] [--keys 10] [--concurrency 10]
                                       [--info-rate 0.01] [--seed 1]

The history comes from a simulated linearizable register (latchjep.checkers.simulate), so the
verdict must be valid; the goal (issue 7) is 10,000 ops over 10 keys in under 10 s. Prints
the verdict and the seconds the check took; exit 1 if the verdict is not valid.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from latchjep.checkers import linearizable, simulate  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--info-rate", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    h = simulate.register_history(a.ops, a.keys, a.concurrency, a.info_rate, a.seed)
    infos = sum(1 for e in h if e["type"] == "info")
    t0 = time.monotonic()
    r = linearizable.check(h)
    dt = time.monotonic() - t0
    print("linearizable: %d ops (%d info) over %d keys, concurrency %d, seed %d: %s in %.2f s"
          % (a.ops, infos, a.keys, a.concurrency, a.seed, r["valid"], dt))
    return 0 if r["valid"] is True else 1


if __name__ == "__main__":
    sys.exit(main())
