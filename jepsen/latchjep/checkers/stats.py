"""stats.py — counts of operations per f and completion type (always valid).

{"valid": true, "ok": n, "fail": n, "info": n, "by_f": {"read": {"ok": n, "fail": n,
"info": n}, ...}}. An op that never completed counts as info.
"""
from .ops import pair


def check(history, **_):
    by_f = {}
    totals = {"ok": 0, "fail": 0, "info": 0}
    for op in pair(history):
        t = op.type if op.type in totals else "info"
        totals[t] += 1
        d = by_f.setdefault(str(op.f), {"ok": 0, "fail": 0, "info": 0})
        d[t] += 1
    nemesis = sum(1 for e in history if e.get("process") == "nemesis")
    r = {"valid": True, "anomalies": [], "failing_ops": []}
    r.update(totals)
    r["by_f"] = by_f
    r["nemesis_events"] = nemesis
    return r
