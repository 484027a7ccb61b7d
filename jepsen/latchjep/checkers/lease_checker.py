"""lease_checker.py — the lease/session workload: ephemeral keys expire with their session,
never before its TTL could have run out, and not long after.

History (docs/decisions/jepsen.md): `create` (invoke value {"key": k, "ttl": seconds}, ok
value {"session": id}) makes an ephemeral key k owned by a session with that TTL; `read` of
k (op key k, or value {"key": k}; ok value {"exists": bool}); `expire-observed` (value
{"key": k, "session": id}): the client stops renewing at its invoke and polls k until it is
gone — ok {"exists": false} observes "gone" at its completion, ok {"exists": true} means k
was still there at its completion (given up after a bound: `late-expiry` when that is past
the latest expiry below). Optional, when the workload records them: `renew` / `keepalive`
(value {"session": id} or key k: one keep-alive of the session; one that fails with an error
containing "expired" observes "gone"), `abandon` / `stop-renew` (the session's renewals stop
here, by design or by a pause), `close` / `revoke` (the session is ended on purpose: k may go
at once).

Bounds (times in ns of the history clock, windows taken conservatively):
- earliest expiry = TTL + the latest invoke among the create and the ok renewals: the server
  refreshed the lease no earlier than that. An observation "gone" that completed before it is
  `early-expiry` (unless a close/revoke of the session was invoked before).
- latest expiry = TTL + slack_s + the latest completion among the create and the renewals
  (ok or info), known only when the renewals are in the history (an abandon/stop-renew op
  for the session, or renewals_in_history=True). A read invoked after it that still finds k
  is `late-expiry`. slack_s (default 10 s) covers leader elections, which extend leases as
  etcd's do, and timer granularity.
"""
from .ops import INF, pair, result

MAX_EXAMPLES = 10
NS = 1_000_000_000
RENEW = ("renew", "keepalive", "keep-alive")
ABANDON = ("abandon", "stop-renew")
CLOSE = ("close", "revoke")
GONE = ("expire-observed",)


def _key_of(op):
    if op.key is not None:
        return op.key
    for v in (op.invoke_value, op.value):
        if isinstance(v, dict) and v.get("key") is not None:
            return v["key"]
    return None


def _session_of(op):
    for v in (op.value, op.invoke_value):
        if isinstance(v, dict) and v.get("session") is not None:
            return v["session"]
    return None


def check(history, slack_s=10.0, renewals_in_history=False, **_):
    ops = pair(history)
    sessions = []  # dicts: key, session, ttl_ns, create op, renews, abandoned, closes
    by_id = {}
    for op in ops:
        if op.f != "create" or op.type != "ok":
            continue
        inv = op.invoke_value if isinstance(op.invoke_value, dict) else {}
        ttl = inv.get("ttl")
        key = inv.get("key", op.key)
        if not isinstance(ttl, (int, float)) or key is None:
            continue
        s = {"key": key, "session": _session_of(op), "ttl_ns": ttl * NS, "create": op,
             "renews": [], "abandoned": False, "closes": []}
        sessions.append(s)
        if s["session"] is not None:
            by_id[s["session"]] = s

    def session_for(op, at):
        sid = _session_of(op)
        if sid is not None and sid in by_id:
            return by_id[sid]
        k = _key_of(op)
        cands = [s for s in sessions if s["key"] == k and s["create"].complete_time <= at]
        return max(cands, key=lambda s: s["create"].complete_time) if cands else None

    for op in ops:
        if op.f in RENEW + ABANDON + CLOSE + GONE:
            s = session_for(op, op.invoke_time)
            if s is None:
                continue
            if op.f in RENEW and op.type in ("ok", "info"):
                s["renews"].append(op)
            elif op.f in ABANDON + GONE:
                s["abandoned"] = True  # renewals stop at its invoke
            elif op.f in CLOSE and op.type != "fail":
                s["closes"].append(op)

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

    observations = 0
    for op in ops:
        gone = None
        if op.f in RENEW and op.type == "fail" and "expired" in str(op.complete.get("error")):
            gone = True  # the server said the session is gone: an observation too
        elif op.type != "ok":
            continue
        elif op.f == "read" and isinstance(op.value, dict) and "exists" in op.value:
            gone = not op.value["exists"]
        elif op.f in GONE:
            gone = not (isinstance(op.value, dict) and op.value.get("exists"))
        if gone is None:
            continue
        s = session_for(op, op.invoke_time)
        if s is None:
            continue
        observations += 1
        c = s["create"]
        ok_renews = [r for r in s["renews"] if r.type == "ok" and r.invoke_time <= op.complete_time]
        earliest = max([c.invoke_time] + [r.invoke_time for r in ok_renews]) + s["ttl_ns"]
        if gone:
            closed = any(x.invoke_time <= op.complete_time for x in s["closes"])
            if not closed and op.complete_time < earliest:
                anomaly("early-expiry", [c, op] + ok_renews[-1:], key=s["key"],
                        early_by_ms=round((earliest - op.complete_time) / 1e6, 3))
        elif s["abandoned"] or renewals_in_history:
            ends = [c.complete_time] + [r.complete_time for r in s["renews"]]
            latest = max(ends) + s["ttl_ns"] + slack_s * NS
            # A read shows k at some instant after its invoke; an expire-observed poll that
            # gave up saw it last just before its completion.
            seen_at = op.complete_time if op.f in GONE else op.invoke_time
            if latest != INF and seen_at > latest:
                anomaly("late-expiry", [c, op] + s["renews"][-1:], key=s["key"],
                        late_by_ms=round((seen_at - latest) / 1e6, 3))
    extra = {"sessions": len(sessions), "observations": observations, "anomaly_counts": counts,
             "slack_s": slack_s}
    if anomalies:
        summary = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))
        return result(False, anomalies, failing, summary, **extra)
    if not observations:
        return result("unknown", summary="no ok create with an observation: nothing to check",
                      reason="no ok create with an observation: nothing to check", **extra)
    return result(True, **extra)
