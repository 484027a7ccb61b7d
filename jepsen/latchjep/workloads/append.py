"""append — list-append transactions through the etcd API, for strict serializability
(Elle's list-append workload; issue 7, item 3). Both targets.

A transaction is 1 to 4 micro-ops over KEYS keys in use: ["append", k, v] (v = 1, 2, ... per
key) or ["r", k, null]; a key that got APPENDS_PER_KEY appends is replaced by a fresh one (so
lists and reads stay short, as in Elle). Key k is the etcd key "jepsen/append/<k>" holding the list as comma-separated
ints. One transaction runs as:
  1. read: one Txn without compares whose success branch ranges every key of the
     transaction (one revision, linearizable);
  2. commit (only when it appends): one Txn comparing mod_revision == the one read for EVERY
     key it touches (read or appended; 0 for a key that did not exist) and putting the new
     lists. The commit is the transaction's single atomic step: when it succeeds nothing it
     read has changed since, so its reads and appends take effect together at the commit's
     revision. When a compare fails nothing was written: the transaction is retried from 1
     (at most RETRIES times), then recorded `fail` ("conflict").
Read-only transactions end after step 1. Micro-ops apply in order inside a transaction: a
read after an append of the same key sees it. A failure in step 1 is `fail` (nothing
written); one in step 2 is classified (info when it may have applied). Checker
"serializable" (Elle-style cycles incl. real-time edges).
"""
from ..runner import FailOp
from .. import client as clientmod

NAME = "append"
TARGETS = ("latch", "etcd")
CHECKERS = ("serializable", "stats")
IDEMPOTENT = set()
PREFIX = b"jepsen/append/"
KEYS = 8  # keys in use at a time
APPENDS_PER_KEY = 64  # then a key is retired and a fresh one takes its place
MAX_MOPS = 4
RETRIES = 3


def setup(ctx):
    ctx.state["append"] = {"next": {}, "active": list(range(KEYS)), "next_key": KEYS}


def op(ctx, process, rng):
    st = ctx.state["append"]
    mops = []
    n = rng.randint(1, MAX_MOPS)
    with ctx.state_lock:
        for _ in range(n):
            slot = rng.randrange(KEYS)
            k = st["active"][slot]
            if rng.random() < 0.5:
                v = st["next"].get(k, 0) + 1
                st["next"][k] = v
                mops.append(["append", k, v])
                if v >= APPENDS_PER_KEY:  # retire the key: lists (and reads) stay short
                    st["active"][slot] = st["next_key"]
                    st["next_key"] += 1
            else:
                mops.append(["r", k, None])
    return "txn", None, mops


def _key(k):
    return PREFIX + str(k).encode()


def _decode(raw):
    if not raw:
        return []
    return [int(x) for x in raw.decode().split(",") if x]


def _read(client, keys):
    """{k: (list, mod_revision)} of every key, from one Txn (one revision)."""
    rpc = client.pb.rpc
    req = rpc.TxnRequest(success=[rpc.RequestOp(request_range=rpc.RangeRequest(key=_key(k)))
                                  for k in keys])
    r = client.kv.Txn(req, timeout=client.timeout)
    out = {}
    for k, resp in zip(keys, r.responses):
        kvs = resp.response_range.kvs
        out[k] = (_decode(kvs[0].value), kvs[0].mod_revision) if kvs else ([], 0)
    return out


def run_txn(client, mops):
    """One attempt: (True, completed micro-ops) or (False, None) on a failed compare."""
    keys = sorted({m[1] for m in mops})
    try:
        state = _read(client, keys)
    except Exception as e:  # noqa: BLE001 - nothing was written: a definite failure
        client.failed(e)
        raise FailOp("read: " + clientmod.error_text(e))
    lists = {k: list(state[k][0]) for k in keys}
    done = []
    written = set()
    for f, k, v in mops:
        if f == "append":
            lists[k].append(v)
            written.add(k)
            done.append(["append", k, v])
        else:
            done.append(["r", k, list(lists[k])])
    if not written:
        return True, done
    rpc = client.pb.rpc
    cmps = [rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=_key(k),
                        mod_revision=state[k][1]) for k in keys]
    puts = [rpc.RequestOp(request_put=rpc.PutRequest(
        key=_key(k), value=",".join(str(x) for x in lists[k]).encode()))
        for k in sorted(written)]
    r = client.kv.Txn(rpc.TxnRequest(compare=cmps, success=puts), timeout=client.timeout)
    if not r.succeeded:
        return False, None
    return True, done


def invoke(ctx, client, op):
    for _ in range(RETRIES):
        ok, done = run_txn(client, op["value"])
        if ok:
            return "ok", done
    raise FailOp("conflict: compares failed %d times" % RETRIES)


def final(ctx, clients):
    """A read of every key after recovery (one read-only transaction, part of the history)."""
    cl = clients[0]
    with ctx.state_lock:
        mops = [["r", k, None] for k in ctx.state["append"]["active"]]
    for _ in range(10):
        done = ctx.execute(cl, ctx.final_process(), "txn", None, mops,
                           lambda c: invoke(ctx, c, {"value": mops}))
        if done["type"] == "ok":
            break
