"""register — read / write / compare-and-set on many independent registers (Jepsen's
etcd register test), checked for linearizability per key.

Keys r0, r1, ... are stored as etcd keys "jepsen/register/<key>" (no leading "/": latch
treats those as tree paths). K keys are live at a time (--keys, default 8); a key that has
had OPS_PER_KEY operations is retired and a fresh one takes its place (Jepsen's independent
keys), which bounds every key's history — and the linearizability search, which indeterminate
(info) writes make expensive — whatever the run's length. Values are small ints (0..4) so that
compare-and-set often applies and often fails. Through the etcd API on both targets:
  read   Range, linearizable (serializable=false)       ok value: int or null (absent)
  write  Put                                            ok value: the int written
  cas    Txn: compare value == old, then Put new        ok when it applied; fail when the
                                                        compare did not hold
Each client thread works on one live key at a time and picks another (at random among the
live ones) after OPS_PER_THREAD_KEY operations, so that every key sees concurrent processes.
"""
NAME = "register"
TARGETS = ("latch", "etcd")
CHECKERS = ("linearizable", "stats")
IDEMPOTENT = {"read"}
PREFIX = b"jepsen/register/"
VALUES = 5
OPS_PER_KEY = 100  # operations on one key before it is retired
OPS_PER_THREAD_KEY = 20  # operations of a thread on one key before it picks another


def _keys(ctx):
    return max(1, int(getattr(ctx.args, "keys", None) or 8))


def setup(ctx):
    k = _keys(ctx)
    ctx.state["register"] = {"live": list(range(k)), "next": k, "count": {},
                             "thread": {}}


def op(ctx, process, rng):
    st = ctx.state["register"]
    thread = process % ctx.concurrency
    with ctx.state_lock:
        cur = st["thread"].get(thread)
        if cur is None or cur[1] >= OPS_PER_THREAD_KEY or cur[0] not in st["live"]:
            cur = [rng.choice(st["live"]), 0]
            st["thread"][thread] = cur
        cur[1] += 1
        key = cur[0]
        n = st["count"].get(key, 0) + 1
        st["count"][key] = n
        if n >= OPS_PER_KEY:  # this was the key's last operation: a fresh key replaces it
            st["live"][st["live"].index(key)] = st["next"]
            st["next"] += 1
    key = "r%d" % key
    r = rng.random()
    if r < 0.5:
        return "read", key, None
    if r < 0.75:
        return "write", key, rng.randrange(VALUES)
    return "cas", key, [rng.randrange(VALUES), rng.randrange(VALUES)]


def invoke(ctx, client, op):
    from ..runner import FailOp
    k = PREFIX + op["key"].encode()
    f = op["f"]
    if f == "read":
        v, _ = client.get(k)
        return "ok", (int(v) if v is not None else None)
    if f == "write":
        client.put(k, str(op["value"]).encode())
        return "ok", op["value"]
    old, new = op["value"]
    if client.cas(k, str(old).encode(), str(new).encode()):
        return "ok", [old, new]
    raise FailOp("precondition failed", [old, new])


def final(ctx, clients):
    """A linearizable read of every live key after recovery (part of the history)."""
    cl = clients[0]
    with ctx.state_lock:
        live = list(ctx.state["register"]["live"])
    for i in live:
        key = "r%d" % i
        for _ in range(10):
            done = ctx.execute(cl, ctx.final_process(), "read", key, None,
                               lambda c, _k=key: invoke(ctx, c, {"f": "read", "key": _k}))
            if done["type"] == "ok":
                break
