"""set_checker.py — the set workload: every acknowledged add is in the final read.

Ops: `add` (value: the element) and a final `read` (ok value: a sorted list of elements).
The last ok read is the final read. An add counts as acknowledged when it ended ok before
that read was invoked (an add still running when the read started may be missing). Counts:
- lost: acknowledged adds missing from the final read (invalid);
- unexpected: elements in the read that no add attempted (invalid);
- failed-present: elements whose add ended `fail` (certainly not applied) yet are present
  (invalid);
- recovered: elements whose add ended `info` and are present (fine: indeterminate);
- ok / attempted totals.
Without an ok final read the result is "unknown".
"""
from .ops import pair, result

MAX_LISTED = 50


def check(history, **_):
    ops = pair(history)
    reads = [op for op in ops if op.f == "read" and op.type == "ok"]
    adds = [op for op in ops if op.f == "add"]
    if not reads:
        return result("unknown", summary="no ok final read", reason="no ok final read",
                      attempted=len(adds))
    final = reads[-1]
    present = set(final.value or [])
    attempted = {}
    for op in adds:
        attempted.setdefault(op.invoke_value, []).append(op)
    lost, unexpected, failed_present, recovered, late = [], [], [], [], 0
    acked = 0
    for op in adds:
        v = op.invoke_value
        if op.type == "ok":
            if op.complete_time >= final.invoke_time:
                late += 1
                continue
            acked += 1
            if v not in present:
                lost.append(op)
        elif op.type == "info" and v in present:
            recovered.append(op)
        elif op.type == "fail" and v in present and \
                not any(o.type != "fail" for o in attempted.get(v, [])):
            failed_present.append(op)
    for v in sorted(present, key=lambda x: (str(type(x)), x)):
        if v not in attempted:
            unexpected.append(v)
    anomalies = []
    failing = []
    if lost:
        anomalies.append({"type": "lost", "count": len(lost),
                          "values": [op.invoke_value for op in lost][:MAX_LISTED]})
        for op in lost:
            failing.extend(op.indexes())
    if unexpected:
        anomalies.append({"type": "unexpected", "count": len(unexpected),
                          "values": unexpected[:MAX_LISTED]})
        failing.extend(final.indexes())
    if failed_present:
        anomalies.append({"type": "failed-present", "count": len(failed_present),
                          "values": [op.invoke_value for op in failed_present][:MAX_LISTED]})
        for op in failed_present:
            failing.extend(op.indexes())
    extra = {"attempted": len(adds), "acknowledged": acked, "lost_count": len(lost),
             "unexpected_count": len(unexpected), "recovered_count": len(recovered),
             "failed_present_count": len(failed_present), "acknowledged_after_read": late,
             "read_count": len(present)}
    if anomalies:
        summary = ", ".join("%d %s" % (a["count"], a["type"]) for a in anomalies)
        return result(False, anomalies, failing, summary, **extra)
    return result(True, **extra)
