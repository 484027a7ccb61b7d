"""set — adds of unique integers, then one final read after heal-and-recover: every
acknowledged add must be in it (Jepsen's set test).

An add of n is a Put of key "jepsen/set/<n>" (value n) through the etcd API, on both
targets; the final read is one linearizable Range over the prefix (retried until it answers,
bounded), recorded as f "read" with the sorted list of ints. Unique ints come from a shared
counter; every invocation is a new int, so an add that ended info and reappears in the read
is a "recovered" add, not a duplicate.
"""
NAME = "set"
TARGETS = ("latch", "etcd")
CHECKERS = ("set_checker", "stats")
IDEMPOTENT = {"read"}
PREFIX = b"jepsen/set/"


def setup(ctx):
    ctx.state["set_next"] = 0


def op(ctx, process, rng):
    with ctx.state_lock:
        n = ctx.state["set_next"]
        ctx.state["set_next"] = n + 1
    return "add", None, n


def invoke(ctx, client, op):
    if op["f"] == "add":
        client.put(PREFIX + b"%d" % op["value"], b"%d" % op["value"])
        return "ok", op["value"]
    kvs, _ = client.get_prefix(PREFIX)
    return "ok", sorted(int(v) for v in kvs.values())


def final(ctx, clients):
    cl = clients[0]
    for _ in range(30):
        done = ctx.execute(cl, ctx.final_process(), "read", None, None,
                           lambda c: invoke(ctx, c, {"f": "read"}))
        if done["type"] == "ok":
            return
        import time
        time.sleep(1)
