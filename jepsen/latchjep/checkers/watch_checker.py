"""watch_checker.py — the watch workload: ordered, gap-free, duplicate-free, agreeing watches.

History (docs/decisions/jepsen.md): writers' `write` ops (key, value; the ok completion
carries the write's revision in a "revision" field, or the ok value is {"value": v,
"revision": r}); each watcher's one `watch` op at the end, ok value {"events": [[revision,
key, value], ...]} in delivery order. A watcher's range comes from its op's "range" field
([key, range_end], range_end null: the key alone, "\\u0000": every key from key on), else a
"prefix" field, else its "key": a [first, end) pair (end exclusive) or one key; else every
key. Range bounds compare in natural order (a trailing number compares as a number, so
["k3", "k10") holds k3..k9). Its window starts at the op's "start_revision" field when given,
else at its first event, and ends at "end_revision" when given, else at its last event.
Revisions below the highest of a "compacted" list (the watcher was canceled by a compaction
and resumed at that revision) are not checked for gaps.

Per watcher:
- `out-of-order`: a revision lower than the one before;
- `duplicate`: the same (revision, key) twice;
- `gap`: an ok write in the watcher's range and window missing from its events;
- `mismatch`: an event at a revision whose ok write has another key or value;
- `unexpected`: an event whose (key, value) no write attempted (ok or info).
Between watchers (`disagreement`): over the keys both ranges hold and the revisions both
windows cover, the two event sequences must be identical.
"""
from .ops import pair, result

MAX_EXAMPLES = 10


def _natural(k):
    k = _norm(k) or ""
    n = len(k)
    while n > 0 and k[n - 1].isdigit():
        n -= 1
    return (k[:n], int(k[n:]) if n < len(k) else -1)


def _norm(v):
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v) if v is not None else None


def _write_rev(op):
    c = op.complete or {}
    r = c.get("revision")
    if r is None and isinstance(op.value, dict):
        r = op.value.get("revision")
    return r if isinstance(r, int) else None


def _write_value(op):
    v = op.invoke_value
    if isinstance(v, dict) and "value" in v:
        v = v["value"]
    return _norm(v)


class _Range:
    def __init__(self, op):
        src = {}
        src.update(op.invoke or {})
        src.update(op.complete or {})
        if isinstance(op.value, dict):
            src.update({k: v for k, v in op.value.items() if k in ("range", "prefix")})
        self.kind = "all"
        if isinstance(src.get("range"), (list, tuple)) and len(src["range"]) == 2:
            self.start, self.end = _norm(src["range"][0]), src["range"][1]
            if self.end is None:
                self.kind = "key"
            elif self.end == "\0":
                self.kind = "from"
            else:
                self.kind = "range"
                self.end = _norm(self.end)
        elif src.get("prefix") is not None:
            self.kind, self.start = "prefix", _norm(src["prefix"])
        elif isinstance(op.key, (list, tuple)) and len(op.key) == 2:
            self.kind, self.start, self.end = "range", _norm(op.key[0]), _norm(op.key[1])
        elif op.key is not None:
            self.kind, self.start = "key", _norm(op.key)

    def __contains__(self, key):
        key = _norm(key)
        if self.kind == "all":
            return True
        if self.kind == "key":
            return key == self.start
        if self.kind == "prefix":
            return key.startswith(self.start)
        if self.kind == "from":
            return _natural(key) >= _natural(self.start)
        return _natural(self.start) <= _natural(key) < _natural(self.end)


def check(history, **_):
    ops = pair(history)
    writes = [op for op in ops if op.f == "write"]
    watches = [op for op in ops if op.f == "watch" and op.type == "ok"
               and isinstance(op.value, dict)]
    by_rev = {}
    attempted = set()
    for w in writes:
        attempted.add((_norm(w.key), _write_value(w)))
        if w.type == "ok":
            r = _write_rev(w)
            if r is not None:
                by_rev.setdefault(r, []).append(w)
    anomalies = []
    failing = []
    counts = {}

    def anomaly(kind, op_list, **fields):
        counts[kind] = counts.get(kind, 0) + 1
        for o in op_list:
            failing.extend(o.indexes())
        if counts[kind] <= MAX_EXAMPLES:
            a = {"type": kind, "ops": sorted(i for o in op_list for i in o.indexes())}
            a.update(fields)
            anomalies.append(a)

    views = []
    for wop in watches:
        evs = []
        for e in wop.value.get("events") or []:
            if isinstance(e, (list, tuple)) and len(e) >= 3 and isinstance(e[0], int):
                evs.append((e[0], _norm(e[1]), _norm(e[2])))
        rng = _Range(wop)
        src = dict(wop.invoke or {})
        src.update(wop.complete or {})
        lo = src.get("start_revision")
        hi = src.get("end_revision")
        lo = lo if isinstance(lo, int) else (evs[0][0] if evs else None)
        compacted = [c for c in (src.get("compacted") or []) if isinstance(c, int)]
        if compacted and lo is not None:
            lo = max(lo, max(compacted))
        hi = hi if isinstance(hi, int) else (evs[-1][0] if evs else None)
        seen = set()
        last = None
        for e in evs:
            if last is not None and e[0] < last:
                anomaly("out-of-order", [wop], revision=e[0], after=last)
            last = e[0] if last is None else max(last, e[0])
            if (e[0], e[1]) in seen:
                anomaly("duplicate", [wop], revision=e[0], key=e[1])
            seen.add((e[0], e[1]))
            ws = by_rev.get(e[0])
            if ws is not None and not any(_norm(w.key) == e[1] and _write_value(w) == e[2]
                                          for w in ws):
                anomaly("mismatch", [wop] + ws, revision=e[0], event=list(e),
                        writes=[[_norm(w.key), _write_value(w)] for w in ws])
            if (e[1], e[2]) not in attempted:
                anomaly("unexpected", [wop], event=list(e))
        if lo is not None and hi is not None:
            for r in range(lo, hi + 1) if hi - lo < 10_000_000 else ():
                for w in by_rev.get(r, ()):
                    if _norm(w.key) in rng and (r, _norm(w.key)) not in seen:
                        anomaly("gap", [wop, w], revision=r, key=_norm(w.key))
        views.append((wop, rng, lo, hi, evs))

    # Agreement on overlapping ranges and windows.
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            a, b = views[i], views[j]
            if a[2] is None or b[2] is None:
                continue
            lo, hi = max(a[2], b[2]), min(a[3], b[3])
            if lo > hi:
                continue
            sa = [e for e in a[4] if lo <= e[0] <= hi and e[1] in b[1]]
            sb = [e for e in b[4] if lo <= e[0] <= hi and e[1] in a[1]]
            if sa != sb:
                k = next((n for n, (x, y) in enumerate(zip(sa, sb)) if x != y),
                         min(len(sa), len(sb)))
                anomaly("disagreement", [a[0], b[0]], window=[lo, hi], at=k,
                        a=[list(e) for e in sa[k:k + 3]], b=[list(e) for e in sb[k:k + 3]])

    extra = {"watchers": len(watches), "writes": len(writes),
             "writes_ok_with_revision": sum(len(v) for v in by_rev.values()),
             "events": sum(len(v[4]) for v in views), "anomaly_counts": counts}
    if not watches:
        return result("unknown", summary="no ok watch op", reason="no ok watch op", **extra)
    if anomalies:
        summary = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))
        return result(False, anomalies, failing, summary, **extra)
    return result(True, **extra)
