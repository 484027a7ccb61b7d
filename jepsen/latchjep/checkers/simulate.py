"""simulate.py — synthetic histories for the checkers' tests and benchmark.

register_history() runs a simulated, correct (linearizable) multi-key register: each of
`concurrency` client threads issues one operation at a time (read / write / cas on a random
key, values 0..4 as in Jepsen's etcd register test) with a random duration; the operation
takes effect at a random instant inside its [invoke, complete] window, against the true
state at that instant. A few operations end `info` (crashed client: applied or not, at
random); the thread then continues as a new process number (old + concurrency), as the
harness does. The history is in the format of docs/decisions/jepsen.md.
"""
import random


def register_history(n_ops=10_000, keys=10, concurrency=10, info_rate=0.01, seed=1,
                     values=5, key_prefix="r"):
    rnd = random.Random(seed)
    names = ["%s%d" % (key_prefix, i) for i in range(keys)]
    ops = []  # dicts: process, f, key, value, t_inv, t_lin or None, t_end, info
    clock = [0] * concurrency
    process = list(range(concurrency))
    for n in range(n_ops):
        th = n % concurrency
        start = clock[th] + rnd.randint(1_000, 200_000)
        dur = rnd.randint(50_000, 3_000_000)
        end = start + dur
        clock[th] = end
        f = rnd.choice(("read", "write", "cas"))
        key = rnd.choice(names)
        if f == "read":
            value = None
        elif f == "write":
            value = rnd.randrange(values)
        else:
            value = [rnd.randrange(values), rnd.randrange(values)]
        info = f != "read" and rnd.random() < info_rate
        applied = not info or rnd.random() < 0.5
        lin = rnd.randint(start, end) if applied else None
        ops.append({"process": process[th], "f": f, "key": key, "value": value, "t_inv": start,
                    "t_lin": lin, "t_end": end, "info": info})
        if info:
            process[th] += concurrency
    state = {}
    for op in sorted((o for o in ops if o["t_lin"] is not None), key=lambda o: o["t_lin"]):
        cur = state.get(op["key"])
        if op["f"] == "read":
            op["result"] = ("ok", cur)
        elif op["f"] == "write":
            state[op["key"]] = op["value"]
            op["result"] = ("ok", op["value"])
        elif cur == op["value"][0]:
            state[op["key"]] = op["value"][1]
            op["result"] = ("ok", op["value"])
        else:
            op["result"] = ("fail", op["value"])
    events = []
    for op in ops:
        base = {"process": op["process"], "f": op["f"], "key": op["key"]}
        events.append(dict(base, type="invoke", value=op["value"], time=op["t_inv"]))
        if op["info"]:
            events.append(dict(base, type="info", value=op["value"], time=op["t_end"],
                               error="timeout"))
        else:
            t, v = op["result"]
            ev = dict(base, type=t, value=v, time=op["t_end"])
            if t == "fail":
                ev["error"] = "compare failed"
            events.append(ev)
    events.sort(key=lambda e: (e["time"], e["type"] == "invoke"))
    for i, e in enumerate(events):
        e["index"] = i
    return events


def append_history(n_txns=2000, keys=8, concurrency=10, seed=1, info_rate=0.01,
                   fail_rate=0.01, max_mops=4):
    """A list-append history from a simulated strict-serializable store: each txn takes
    effect atomically at a random instant of its window; reads see the lists then. Values
    appended are unique per key. A few txns fail (not applied) or end info (applied or not)."""
    rnd = random.Random(seed)
    names = ["k%d" % i for i in range(keys)]
    nextv = {k: 1 for k in names}
    txns = []
    clock = [0] * concurrency
    process = list(range(concurrency))
    for n in range(n_txns):
        th = n % concurrency
        start = clock[th] + rnd.randint(1_000, 100_000)
        end = start + rnd.randint(50_000, 2_000_000)
        clock[th] = end
        mops = []
        for _ in range(rnd.randint(1, max_mops)):
            k = rnd.choice(names)
            if rnd.random() < 0.5:
                mops.append(["r", k, None])
            else:
                mops.append(["append", k, nextv[k]])
                nextv[k] += 1
        r = rnd.random()
        kind = "info" if r < info_rate else ("fail" if r < info_rate + fail_rate else "ok")
        applied = kind == "ok" or (kind == "info" and rnd.random() < 0.5)
        txns.append({"process": process[th], "mops": mops, "t_inv": start, "t_end": end,
                     "t_lin": rnd.randint(start, end) if applied else None, "kind": kind})
        if kind == "info":
            process[th] += concurrency
    state = {k: [] for k in names}
    for t in sorted((t for t in txns if t["t_lin"] is not None), key=lambda t: t["t_lin"]):
        out = []
        for f, k, v in t["mops"]:
            if f == "append":
                state[k].append(v)
                out.append([f, k, v])
            else:
                out.append([f, k, list(state[k])])
        t["result"] = out
    events = []
    for t in txns:
        base = {"process": t["process"], "f": "txn"}
        events.append(dict(base, type="invoke", value=t["mops"], time=t["t_inv"]))
        if t["kind"] == "ok":
            events.append(dict(base, type="ok", value=t["result"], time=t["t_end"]))
        else:
            events.append(dict(base, type=t["kind"], value=t["mops"], time=t["t_end"],
                               error="timeout" if t["kind"] == "info" else "aborted"))
    events.sort(key=lambda e: (e["time"], e["type"] == "invoke"))
    for i, e in enumerate(events):
        e["index"] = i
    return events
