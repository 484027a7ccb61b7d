"""serializable.py — strict serializability of the append workload (Elle-style list append).

Each `txn` op holds micro-ops ["append", k, v] and ["r", k, [v...]] (docs/decisions/
jepsen.md). Appended values are unique per key, so every value names the transaction that
appended it, and a read of a key shows a prefix of the key's version order.

1. Version order per key: the longest ok read of the key. Every other read must be a prefix of
   it; one that is not is an `incompatible-order` anomaly (and that key gives no ww/rw edges).
2. Per-read anomalies: `G1a` (aborted read: a value appended by a failed txn), `G1b`
   (intermediate read: the read ends at a value that its writer followed with another append
   to the same key), `duplicate-elements`, `garbage-read` (a value nobody appended),
   `internal` (a txn's read disagrees with its own earlier appends), `duplicate-append`
   (the same value appended twice), `lost-append` (an ok append missing from the version
   order although a later read, invoked after the append's txn completed, does not show it).
3. Dependency graph over committed txns (ok, and info txns whose appends were observed):
   ww (writer of a version -> writer of the next), wr (writer of the last value a read saw ->
   the reader), rw (the reader -> writer of the next version after what it saw), and
   real-time edges (T1 completed before T2 was invoked; transitively reduced on the fly).
4. Cycles: Tarjan's SCCs of growing edge sets; in each SCC a short cycle is found by BFS and
   named by its edges: `G0` (ww only), `G1c` (ww + wr), `G-single` (exactly one rw), `G2`
   (two or more rw), each with `-realtime` when it needs a real-time edge (a violation of
   strict serializability that plain serializability allows).
"""
from collections import deque

from .ops import pair, result

WW, WR, RW, RT = "ww", "wr", "rw", "realtime"
MAX_CYCLES_PER_TYPE = 8
MAX_EXAMPLES = 8
MAX_RW_TRIES = 64  # rw edges of one SCC tried as the single rw edge of a cycle (BFS each)


def _micro_ops(v):
    if not isinstance(v, list):
        return []
    return [m for m in v if isinstance(m, (list, tuple)) and len(m) == 3]


def _key(k):
    return tuple(k) if type(k) is list else k


class _Txn:
    __slots__ = ("op", "id", "mops", "appends", "reads", "rds")

    def __init__(self, op, n):
        self.op = op
        self.id = n
        self.mops = _micro_ops(op.value if op.type == "ok" else op.invoke_value)
        self.appends = [(_key(m[1]), _key(m[2])) for m in self.mops if m[0] == "append"]
        self.reads = [(_key(m[1]), m[2]) for m in self.mops
                      if m[0] == "r" and op.type == "ok" and isinstance(m[2], list)]
        # Reads parsed once: (key, values, ext, own, raw) where own are this txn's earlier
        # appends to the key and ext the values without them (what other txns wrote).
        self.rds = []
        if op.type != "ok":
            return
        mine = {}
        for m in self.mops:
            k = _key(m[1])
            if m[0] == "append":
                mine.setdefault(k, []).append(_key(m[2]))
            elif m[0] == "r" and isinstance(m[2], list):
                vals = m[2] if all(type(x) is int for x in m[2]) else [_key(x) for x in m[2]]
                own = mine.get(k, [])
                ext = vals[:len(vals) - len(own)] if own and vals[-len(own):] == own else vals
                self.rds.append((k, vals, ext, list(own), m[2]))


def _tarjan(nodes, adj):
    """Strongly connected components with more than one node (iterative Tarjan)."""
    index = {}
    low = {}
    on = set()
    stack = []
    out = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(adj.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(adj.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def _bfs_path(src, dst, adj, allowed, members):
    """Shortest path src -> dst over edges whose types meet `allowed`, inside members."""
    prev = {src: None}
    q = deque([src])
    while q:
        v = q.popleft()
        for w, types in adj.get(v, {}).items():
            if w not in members or w in prev or not (types & allowed):
                continue
            prev[w] = v
            if w == dst:
                path = [w]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1]
            q.append(w)
    return None


def _shortest_cycle(comp, adj, allowed):
    members = set(comp)
    best = None
    for start in comp[:32]:
        for w, types in adj.get(start, {}).items():
            if w not in members or not (types & allowed):
                continue
            back = _bfs_path(w, start, adj, allowed, members)
            if back is None:
                continue
            cyc = [start] + back[:-1]
            if best is None or len(cyc) < len(best):
                best = cyc
        if best is not None and len(best) <= 2:
            break
    return best


def _single_rw_cycle(comp, adj, allowed_base):
    """A cycle with exactly one rw edge: an rw edge a -> b with b ->* a over base edges."""
    members = set(comp)
    best = None
    tried = 0
    for a in comp:
        for b, types in adj.get(a, {}).items():
            if b not in members or RW not in types:
                continue
            tried += 1
            if tried > MAX_RW_TRIES:
                return best
            back = _bfs_path(b, a, adj, allowed_base, members)
            if back is None:
                continue
            cyc = [a] + back[:-1]
            if best is None or len(cyc) < len(best):
                best = cyc
    return best


def _edge_types_on_cycle(cyc, adj, allowed, prefer_rw_at=None):
    steps = []
    for i, a in enumerate(cyc):
        b = cyc[(i + 1) % len(cyc)]
        types = adj[a][b] & allowed
        if prefer_rw_at is not None:
            t = RW if i == prefer_rw_at and RW in types else \
                next((x for x in (WW, WR, RT, RW) if x in types and (x != RW or i == prefer_rw_at)),
                     sorted(types)[0])
        else:
            t = next(x for x in (WW, WR, RW, RT) if x in types)
        steps.append(t)
    return steps


def _classify(steps):
    rw = steps.count(RW)
    rt = RT in steps
    if rw == 0:
        name = "G1c" if WR in steps else "G0"
    elif rw == 1:
        name = "G-single"
    else:
        name = "G2"
    return name + ("-realtime" if rt else "")


def check(history, **_):
    ops = [op for op in pair(history) if op.f == "txn"]
    txns = [_Txn(op, n) for n, op in enumerate(ops)]
    anomalies = []
    failing = []

    kinds = {}

    def anomaly(kind, tx_list, **fields):
        kinds[kind] = kinds.get(kind, 0) + 1
        idx = []
        for t in tx_list:
            idx.extend(t.op.indexes())
        failing.extend(idx)
        if kinds[kind] <= MAX_EXAMPLES:
            a = {"type": kind, "ops": sorted(set(idx))}
            a.update(fields)
            anomalies.append(a)

    # Who appended what.
    writer = {}  # (k, v) -> txn
    for t in txns:
        seen = set()
        for k, v in t.appends:
            kv = (k, _key(v))
            if kv in writer or kv in seen:
                anomaly("duplicate-append", [t] + ([writer[kv]] if kv in writer else []),
                        key=k, value=v)
            seen.add(kv)
            if t.op.type != "fail" or kv not in writer:
                writer.setdefault(kv, t)
    # The last append of each txn to each key, and its appends in order per key.
    appends_by_key = {}
    for t in txns:
        per = {}
        for k, v in t.appends:
            per.setdefault(k, []).append(_key(v))
        appends_by_key[t.id] = per

    # Internal consistency and version orders.
    longest = {}
    for t in txns:
        for k, vals, ext, own, raw in t.rds:
            if own and vals[len(vals) - len(own):] != own:
                anomaly("internal", [t], key=k, read=raw, own_appends=own)
            if len(ext) > len(longest.get(k, ())):
                longest[k] = ext
    # Prefix checks and per-read anomalies.
    bad_keys = set()
    observed = set()

    def check_elements(t, k, ext, raw):
        if len(set(ext)) != len(ext):
            anomaly("duplicate-elements", [t], key=k, read=raw)
        for v in ext:
            w = writer.get((k, v))
            observed.add((k, v))
            if w is None:
                anomaly("garbage-read", [t], key=k, value=v)
            elif w.op.type == "fail":
                anomaly("G1a", [t, w], key=k, value=v)

    longest_reader = {}
    for t in txns:
        for k, vals, ext, own, raw in t.rds:
            order = longest.get(k, [])
            if ext is order:
                longest_reader.setdefault(k, (t, raw))
            if ext != order[:len(ext)]:
                bad_keys.add(k)
                anomaly("incompatible-order", [t], key=k, read=raw, longest=list(order))
                check_elements(t, k, ext, raw)  # a prefix read is checked with the longest
            if ext:
                last = ext[-1]
                w = writer.get((k, last))
                if w is not None and w is not t:
                    seq = appends_by_key[w.id].get(k, [])
                    if last in seq and seq.index(last) != len(seq) - 1:
                        anomaly("G1b", [t, w], key=k, value=last, writer_appends=seq)

    for k, (t, raw) in longest_reader.items():
        check_elements(t, k, longest[k], raw)

    # Committed txns: ok ones, plus info ones with an observed append.
    committed = [t for t in txns if t.op.type == "ok" or
                 (t.op.type == "info" and any((k, _key(v)) in observed for k, v in t.appends))]
    cset = set(t.id for t in committed)
    adj = {}

    def edge(a, b, kind):
        if a is None or b is None or a.id == b.id or a.id not in cset or b.id not in cset:
            return
        adj.setdefault(a.id, {}).setdefault(b.id, set()).add(kind)

    in_order = {k: set(order) for k, order in longest.items()}
    unread = {}  # key -> committed txns with an append to it that no read shows
    for t in committed:
        for k, v in t.appends:
            if k not in bad_keys and v not in in_order.get(k, ()):
                unread.setdefault(k, []).append(t)
    for k, order in longest.items():
        if k in bad_keys:
            continue
        for v1, v2 in zip(order, order[1:]):
            edge(writer.get((k, v1)), writer.get((k, v2)), WW)
    for t in txns:
        for k, vals, ext, own, raw in t.rds:
            if k in bad_keys:
                continue
            if ext:
                edge(writer.get((k, ext[-1])), t, WR)
            order = longest.get(k, [])
            if len(ext) < len(order):
                edge(t, writer.get((k, order[len(ext)])), RW)
            else:
                # Read the whole known order: every committed append not in it comes later.
                # (Not to the writer of the last value read: that is G1b, reported above.)
                last_w = writer.get((k, ext[-1])) if ext else None
                for w in unread.get(k, ()):
                    if w is not last_w:
                        edge(t, w, RW)

    # Lost appends: an ok append absent from the version order, though a read invoked after
    # its txn completed exists.
    last_read_invoke = {}
    for t in txns:
        if t.op.type == "ok":
            for k, _ in t.reads:
                last_read_invoke[k] = max(last_read_invoke.get(k, -1), t.op.invoke_time)
    for t in txns:
        if t.op.type != "ok":
            continue
        for k, v in t.appends:
            if k in bad_keys or v in in_order.get(k, ()):
                continue
            if last_read_invoke.get(k, -1) > t.op.complete_time:
                anomaly("lost-append", [t], key=k, value=v)

    # Real-time edges, transitively reduced: at an invoke, every txn in the frontier (the
    # completed txns not already before another completed one) precedes it.
    events = []
    for t in committed:
        events.append((t.op.invoke_time, 1, t.id))
        if t.op.type == "ok":
            events.append((t.op.complete_time, 0, t.id))
    events.sort()
    by_id = {t.id: t for t in txns}
    frontier = set()
    preds = {}
    for _, kind, tid in events:
        if kind == 1:
            preds[tid] = set(frontier)
            for p in frontier:
                edge(by_id[p], by_id[tid], RT)
        else:
            frontier -= preds.get(tid, set())
            frontier.add(tid)

    # Cycles, from the narrowest edge set to the widest; one example per SCC and type.
    nodes = sorted(cset)
    reported = set()
    stages = [({WW}, None), ({WW, WR}, None), ({WW, WR, RW}, "rw"),
              ({WW, WR, RW, RT}, "rw")]
    counts = {}
    for allowed, mode in stages:
        sub = {a: {b for b, ty in nbrs.items() if ty & allowed} for a, nbrs in adj.items()}
        for comp in _tarjan(nodes, sub):
            cyc = None
            steps = None
            if mode == "rw":
                base = allowed - {RW}
                cyc = _single_rw_cycle(comp, adj, base)
                if cyc is not None:
                    steps = _edge_types_on_cycle(cyc, adj, allowed, prefer_rw_at=0)
                    if steps.count(RW) != 1:
                        cyc = None
            if cyc is None:
                cyc = _shortest_cycle(comp, adj, allowed)
                if cyc is None:
                    continue
                steps = _edge_types_on_cycle(cyc, adj, allowed)
            name = _classify(steps)
            sig = frozenset(cyc)
            if sig in reported:
                continue
            reported.add(sig)
            counts[name] = counts.get(name, 0) + 1
            if counts[name] > MAX_CYCLES_PER_TYPE:
                continue
            cyc_txns = [by_id[i] for i in cyc]
            anomaly(name, cyc_txns, cycle=[
                {"op": by_id[a].op.complete_index if by_id[a].op.complete_index is not None
                 else by_id[a].op.invoke_index, "value": by_id[a].op.value, "edge": s}
                for a, s in zip(cyc, steps)], scc_size=len(comp))

    types = sorted(set(a["type"] for a in anomalies))
    extra = {"txns": len(txns), "committed": len(committed), "anomaly_types": types}
    if anomalies:
        return result(False, anomalies, failing, "%s" % ", ".join(types), **extra)
    if not committed:
        return result("unknown", summary="no committed txn: nothing to check",
                      reason="no committed txn: nothing to check", **extra)
    return result(True, **extra)
