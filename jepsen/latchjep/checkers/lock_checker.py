"""lock_checker.py — the lock workloads: token order, fencing, mutual exclusion.

History (docs/decisions/jepsen.md): per process, `acquire` (ok value {"token": t}), then
`write`s (value {"token": t, "seq": n}; the completion may carry "resource": "accepted" |
"rejected" | "unreachable", the external resource's answer), then `release` ({"token": t}).
Optional: the external resource's log (jepsen/resource.py: JSON lines {"time", "token",
"seq", "process", "accepted", "highest", "stale"} in decision order), given as
`resource_log` (a list of dicts or a path).

A holder is an ok acquire; it holds, for sure, from its acquire's completion until it
invokes its release (or, without one, until it invokes the last operation of that hold).

Anomalies (always):
- `duplicate-token`: two ok acquires returned the same token;
- `token-order`: a holder whose acquire was invoked after another's completed got a token
  that is not higher (tokens must increase strictly across successive holders).
Anomalies of the fenced workload (`fenced=True`, the default):
- `stale-write`: latch accepted (ok) a fenced write with token t that was invoked after an
  acquire with a higher token had completed — the fence should have refused it;
- `write-order`: two ok fenced writes in real-time order with decreasing tokens;
- `resource-order`: the resource accepted tokens out of non-decreasing order (its log, or
  the writes whose completion says "accepted" in real-time order).
  Overlapping holders are expected with fencing (a lock cannot guarantee exclusion) and only
  counted (`overlaps`).
Unfenced workload (`fenced=False`): overlapping holders are `mutual-exclusion` anomalies —
the expected negative control under pauses (Jepsen's 2020 etcd finding).
"""
import json

from .ops import pair, result

MAX_EXAMPLES = 10


def _token(v):
    if isinstance(v, dict):
        t = v.get("token")
        return t if isinstance(t, int) else None
    return None


def _load_log(resource_log):
    if resource_log is None:
        return None
    if isinstance(resource_log, str):
        out = []
        try:
            with open(resource_log, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            break
        except OSError:
            return None
        return out
    return list(resource_log)


def _holds(ops):
    """[(acquire op, token, start, end, [ops of the hold])] per ok acquire."""
    by_process = {}
    for op in ops:
        by_process.setdefault(op.process, []).append(op)
    holds = []
    for plist in by_process.values():
        plist.sort(key=lambda o: o.invoke_time)
        for i, op in enumerate(plist):
            if op.f != "acquire" or op.type != "ok":
                continue
            token = _token(op.value)
            members = []
            end = op.complete_time
            for nxt in plist[i + 1:]:
                if nxt.f == "acquire":
                    break
                if _token(nxt.invoke_value) not in (None, token):
                    break
                members.append(nxt)
                end = nxt.invoke_time
                if nxt.f == "release":
                    break
            holds.append((op, token, op.complete_time, end, members))
    return holds


def check(history, fenced=True, resource_log=None, **_):
    ops = pair(history)
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

    acquires = [op for op in ops if op.f == "acquire" and op.type == "ok"
                and _token(op.value) is not None]
    # Duplicate tokens.
    seen = {}
    for op in acquires:
        t = _token(op.value)
        if t in seen:
            anomaly("duplicate-token", [seen[t], op], token=t)
        else:
            seen[t] = op
    # Token order across real-time successive holders: sweep by time, keeping the highest
    # token among acquires completed before each invoke.
    evs = sorted([(op.complete_time, 0, op) for op in acquires] +
                 [(op.invoke_time, 1, op) for op in acquires], key=lambda e: (e[0], e[1]))
    best = None
    for _, kind, op in evs:
        if kind == 0:
            if best is None or _token(op.value) > _token(best.value):
                best = op
        elif best is not None and best is not op and _token(op.value) <= _token(best.value):
            anomaly("token-order", [best, op], earlier_token=_token(best.value),
                    later_token=_token(op.value))

    holds = _holds(ops)
    # Overlaps of sure holding intervals.
    overlaps = []
    hs = sorted(holds, key=lambda h: h[2])
    active = []
    for h in hs:
        active = [a for a in active if a[3] > h[2]]
        for a in active:
            if a[0].process != h[0].process and min(a[3], h[3]) > h[2]:
                overlaps.append((a, h))
        active.append(h)
    if not fenced:
        for a, h in overlaps:
            anomaly("mutual-exclusion", [a[0], h[0]] + a[4][-1:] + h[4][-1:],
                    tokens=[a[1], h[1]],
                    overlap_ns=int(min(a[3], h[3]) - h[2]))

    writes = [op for op in ops if op.f == "write" and _token(op.invoke_value) is not None]
    stale_resource = sum(1 for op in writes if op.complete is not None and
                         op.complete.get("resource") == "accepted" and
                         op.complete.get("stale"))
    if fenced:
        # Stale fenced writes accepted by latch.
        acq_sorted = sorted(acquires, key=lambda o: o.complete_time)
        for w in writes:
            if w.type != "ok":
                continue
            t = _token(w.invoke_value)
            newer = None
            for a in acq_sorted:
                if a.complete_time >= w.invoke_time:
                    break
                if _token(a.value) > t:
                    newer = a
                    break
            if newer is not None:
                anomaly("stale-write", [w, newer], token=t, newer_token=_token(newer.value))

        def order_check(ws, kind):
            evs2 = sorted([(o.complete_time, 0, o) for o in ws] +
                          [(o.invoke_time, 1, o) for o in ws], key=lambda e: (e[0], e[1]))
            hi = None
            for _, k, o in evs2:
                if k == 0:
                    if hi is None or _token(o.invoke_value) > _token(hi.invoke_value):
                        hi = o
                elif hi is not None and _token(o.invoke_value) < _token(hi.invoke_value):
                    anomaly(kind, [hi, o], earlier_token=_token(hi.invoke_value),
                            later_token=_token(o.invoke_value))
        order_check([w for w in writes if w.type == "ok"], "write-order")
        log = _load_log(resource_log)
        if log is not None:
            hi = None
            for n, entry in enumerate(log):
                if not entry.get("accepted"):
                    continue
                t = entry.get("token")
                if hi is not None and isinstance(t, int) and t < hi:
                    counts["resource-order"] = counts.get("resource-order", 0) + 1
                    if counts["resource-order"] <= MAX_EXAMPLES:
                        anomalies.append({"type": "resource-order", "ops": [],
                                          "log_line": n, "token": t, "highest": hi})
                if isinstance(t, int):
                    hi = t if hi is None else max(hi, t)
        else:
            order_check([w for w in writes if w.complete is not None and
                         w.complete.get("resource") == "accepted"], "resource-order")

    extra = {"fenced": fenced, "acquires": len(acquires), "holds": len(holds),
             "writes": len(writes), "writes_ok": sum(1 for w in writes if w.type == "ok"),
             "overlaps": len(overlaps), "anomaly_counts": counts,
             "resource_stale_accepted": stale_resource}
    if anomalies:
        summary = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))
        return result(False, anomalies, failing, summary, **extra)
    if not acquires:
        return result("unknown", summary="no ok acquire: nothing to check",
                      reason="no ok acquire: nothing to check", **extra)
    return result(True, **extra)
