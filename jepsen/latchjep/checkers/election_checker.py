"""election_checker.py — the election workload: one leader per term, agreeing Observe
streams, no stale proclamation accepted.

History (docs/decisions/jepsen.md): `campaign` (value: the candidate's value; ok value
{"token": t}: leadership with token t — the term), `proclaim` (value {"token": t, "value":
v}, or v with the token in a "token" field of the op; ok: accepted), `observe` (once per
observer at the end; ok value {"leaders": [[revision, token, value], ...]} in delivery
order; token 0: no leader; a "reconnects" field lists the indexes in "leaders" where the
observer re-opened its stream, which restarts with the current leader: entries in between
may be missing there, and an entry the stream already showed may come again).

Anomalies:
- `duplicate-leader`: two ok campaigns (different processes) with the same token;
- `token-order`: a campaign invoked after another's ok completion won a lower token;
- `stale-proclaim`: a proclaim with token t accepted (ok) although it was invoked after a
  campaign with a higher token had completed (the newer leader was known);
- `observe-order`: an Observe stream whose revisions go back, or whose token goes down;
- `observe-stale`: an Observe stream showing a value under token t after one under t' > t;
- `observe-disagreement`: two streams that, over the revisions both cover, are not one a
  prefix of the other (streams without reconnects), or that show different leaders or
  values at one revision (any streams).
"""
from .ops import pair, result

MAX_EXAMPLES = 10


def _token(v):
    if isinstance(v, dict):
        t = v.get("token")
        return t if isinstance(t, int) else None
    return None


def check(history, **_):
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

    camps = [op for op in ops if op.f == "campaign" and op.type == "ok"
             and _token(op.value) is not None]
    seen = {}
    for op in camps:
        t = _token(op.value)
        if t in seen and seen[t].process != op.process:
            anomaly("duplicate-leader", [seen[t], op], token=t)
        seen.setdefault(t, op)
    evs = sorted([(o.complete_time, 0, o) for o in camps] + [(o.invoke_time, 1, o) for o in camps],
                 key=lambda e: (e[0], e[1]))
    best = None
    for _, kind, o in evs:
        if kind == 0:
            if best is None or _token(o.value) > _token(best.value):
                best = o
        elif best is not None and best is not o and _token(o.value) <= _token(best.value):
            anomaly("token-order", [best, o], earlier=_token(best.value), later=_token(o.value))

    by_complete = sorted(camps, key=lambda o: o.complete_time)
    proclaims = [op for op in ops if op.f == "proclaim" and op.type == "ok"]
    for p in proclaims:
        t = _token(p.invoke_value)
        if t is None:
            t = (p.invoke or {}).get("token")
        if not isinstance(t, int):
            continue
        for c in by_complete:
            if c.complete_time >= p.invoke_time:
                break
            if _token(c.value) > t:
                anomaly("stale-proclaim", [p, c], token=t, newer_token=_token(c.value))
                break

    streams = []
    for op in ops:
        if op.f != "observe" or op.type != "ok" or not isinstance(op.value, dict):
            continue
        raw = op.value.get("leaders") or []
        src = op.complete or {}
        restarts = set(x for x in (src.get("reconnects") or []) if isinstance(x, int))
        entries = []
        last_rev = None
        top = None
        for n, e in enumerate(raw):
            if not (isinstance(e, (list, tuple)) and len(e) >= 3 and isinstance(e[0], int)):
                continue
            rev, tok, val = e[0], e[1], e[2]
            if entries and (rev, tok, val) == entries[-1]:
                continue  # the same state again (a re-opened stream starts with it)
            if n in restarts and last_rev is not None and rev <= last_rev:
                continue  # a restart from a member that had not applied as far yet
            entries.append((rev, tok, val))
            if last_rev is not None and rev < last_rev:
                anomaly("observe-order", [op], revision=rev, after=last_rev)
            if isinstance(tok, int) and tok != 0:
                if top is not None and tok < top:
                    anomaly("observe-stale", [op], token=tok, after_token=top, value=val)
                top = tok if top is None else max(top, tok)
            last_rev = rev if last_rev is None else max(last_rev, rev)
        streams.append((op, entries, bool(restarts)))
    for i in range(len(streams)):
        for j in range(i + 1, len(streams)):
            (oa, a, ra), (ob, b, rb) = streams[i], streams[j]
            if not a or not b:
                continue
            at_a = {}
            for e in a:
                at_a.setdefault(e[0], set()).add(e[1:])
            clash = next((e for e in b if e[0] in at_a and e[1:] not in at_a[e[0]]), None)
            if clash is not None:
                anomaly("observe-disagreement", [oa, ob], revision=clash[0],
                        a=[list(x) for x in sorted(at_a[clash[0]], key=str)], b=list(clash))
                continue
            if ra or rb:
                continue
            lo = max(a[0][0], b[0][0])
            sa = [e for e in a if e[0] >= lo]
            sb = [e for e in b if e[0] >= lo]
            n = min(len(sa), len(sb))
            if sa[:n] != sb[:n]:
                k = next(x for x in range(n) if sa[x] != sb[x])
                anomaly("observe-disagreement", [oa, ob], at=k, a=[list(e) for e in sa[k:k + 3]],
                        b=[list(e) for e in sb[k:k + 3]])
    extra = {"campaigns": len(camps), "proclaims": len(proclaims), "observers": len(streams),
             "anomaly_counts": counts}
    if anomalies:
        summary = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))
        return result(False, anomalies, failing, summary, **extra)
    if not camps and not streams:
        return result("unknown", summary="no ok campaign or observe: nothing to check",
                      reason="no ok campaign or observe: nothing to check", **extra)
    return result(True, **extra)
