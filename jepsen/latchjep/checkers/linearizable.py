"""linearizable.py — linearizability of the register workload (issue 7, item 4).

Model: one register per key with read / write / cas (docs/decisions/jepsen.md, "History
format"). Register operations on different keys are independent, so the history is split per
key and each key is checked on its own (a history is linearizable iff every key's is).

Per key, the search is Wing & Gong's with Lowe's memoisation ("just in time" linearization):
the call and return events of the key's operations sit in one doubly linked list in time
order; the search walks it, and at a call tries to linearize that operation now (the model
accepts it from the current state), lifting its call and return out of the list; at a return
whose call is still in the list it backtracks (that operation had to be linearized before
this point). A configuration (set of linearized operations, register state) already explored
is never explored again; that cache is what keeps a 1,000-operation, concurrency-10 key fast.

Operations:
- `ok`: took effect between invoke and completion; must be linearized.
- `fail`: did not take effect (a cas whose compare failed included); left out.
- `info` (or never completed): may take effect at any time after its invoke, or never. Its
  call is in the list but it has no return, so the search may linearize it anywhere later or
  leave it out. A read that ended info observed nothing and is left out. An info write or
  cas whose resulting value no operation ever observes (no ok read returns it, no cas expects
  it) can be left out without changing the answer, so it is (this keeps info-heavy histories
  cheap).

When a key is not linearizable, its operations are shrunk to a minimal non-linearizable
sub-history (dropping operations while it stays non-linearizable: a prefix first, then
chunks, then single operations until no single one can go). Only drops that cannot make a
history less linearizable are tried (reads; writes nothing left could have observed), and
the sub-history is checked from any initial value: what remains is evidence, not an artefact
of dropping the write that explained a read. The shrink has one time budget for all keys
(shrink_seconds). A search that exceeds its bound makes the result "unknown" with the
reason.
"""
import bisect
import time

from .ops import INF, indexes_of, pair, result

READ, WRITE, CAS = 0, 1, 2
_KINDS = {"read": READ, "write": WRITE, "cas": CAS}

ANY = object()  # an unknown initial register value: the first observation fixes it
DEFAULT_MAX_CONFIGS = 2_000_000  # cached (linearized set, state) pairs per key search
DEFAULT_SHRINK_SECONDS = 20.0  # for all keys together
MAX_UNSHRUNK_OPS = 50  # a sub-history left bigger than this when time ran out is not shown


class SearchBound(Exception):
    pass


def _register_ops(ops):
    """The ops that matter to the model, per key: {key: [op]}, each op given `.kind`."""
    per_key = {}
    for op in ops:
        kind = _KINDS.get(op.f)
        if kind is None or op.type == "fail":
            continue
        if kind == READ and op.type != "ok":
            continue
        per_key.setdefault(op.key, []).append(op)
    return per_key


def _prune_unobserved(ops):
    observed = set()
    for op in ops:
        if op.type != "ok" and op.f != "cas":
            continue
        if op.f == "read":
            observed.add(_hashable(op.value))
        elif op.f == "cas":
            v = op.invoke_value if op.type != "ok" else op.value
            if isinstance(v, (list, tuple)) and len(v) == 2:
                observed.add(_hashable(v[0]))
    out = []
    for op in ops:
        if op.type != "ok":
            if op.f == "write" and _hashable(op.invoke_value) not in observed:
                continue
            if op.f == "cas":
                v = op.invoke_value
                if isinstance(v, (list, tuple)) and len(v) == 2 and \
                        _hashable(v[1]) not in observed:
                    continue
        out.append(op)
    return out


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _op_args(op):
    """(kind, a, b) for the model: read a / write a / cas a -> b."""
    kind = _KINDS[op.f]
    v = op.value if op.type == "ok" else op.invoke_value
    if kind == READ:
        return kind, _hashable(v), None
    if kind == WRITE:
        return kind, _hashable(op.invoke_value if op.invoke_value is not None else v), None
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        v = op.invoke_value
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError("cas value %r is not [old, new] (history index %s)" %
                         (v, op.invoke_index))
    return kind, _hashable(v[0]), _hashable(v[1])


def check_ops(ops, initial=None, max_configs=DEFAULT_MAX_CONFIGS, deadline=None):
    """Whether one key's ops are linearizable: True / False. Raises SearchBound when the
    search would exceed max_configs cached configurations or passes deadline
    (time.monotonic())."""
    n = len(ops)
    if n == 0:
        return True
    kinds = [0] * n
    arg_a = [None] * n
    arg_b = [None] * n
    required = [False] * n
    raw = []  # (time, 0 call / 1 return, order, op)
    for i, op in enumerate(ops):
        kinds[i], arg_a[i], arg_b[i] = _op_args(op)
        required[i] = op.type == "ok"
        raw.append((op.invoke_time, 0, i, i))
        if required[i]:
            ct = op.complete_time
            raw.append((ct if ct != INF else float("inf"), 1, i, i))
    # Calls before returns at equal times: equal timestamps count as concurrent.
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    m = len(raw)
    head = m
    nxt = [-1] * (m + 1)
    prv = [-1] * (m + 1)
    is_call = [False] * m
    op_of = [0] * m
    match = [-1] * m  # call entry -> its return entry (or -1 for info ops)
    call_entry = [-1] * n
    for e, (_, kind, _, i) in enumerate(raw):
        op_of[e] = i
        if kind == 0:
            is_call[e] = True
            call_entry[i] = e
    for e in range(m):
        if not is_call[e]:
            match[call_entry[op_of[e]]] = e
    order = [head] + list(range(m))
    for a, b in zip(order, order[1:]):
        nxt[a] = b
        prv[b] = a

    def unlink(e):
        p, q = prv[e], nxt[e]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def relink(e):
        p, q = prv[e], nxt[e]
        nxt[p] = e
        if q != -1:
            prv[q] = e

    bits = [1 << i for i in range(n)]
    required_left = sum(required)
    state = initial if initial is ANY else _hashable(initial)
    lin = 0
    stack = []
    cache = set()
    e = nxt[head]
    steps = 0
    while required_left > 0:
        if e == -1:  # cannot happen while a required op (with its return) is in the list
            raise AssertionError("linearizable: entry list ended with required ops left")
        if is_call[e]:
            i = op_of[e]
            k = kinds[i]
            if k == READ:
                ok = state == arg_a[i] or state is ANY
                new_state = arg_a[i]
            elif k == WRITE:
                ok = True
                new_state = arg_a[i]
            else:
                ok = state == arg_a[i] or state is ANY
                new_state = arg_b[i]
            if ok:
                new_lin = lin | bits[i]
                conf = (new_lin, new_state)
                if conf not in cache:
                    cache.add(conf)
                    if len(cache) > max_configs:
                        raise SearchBound("more than %d configurations explored" % max_configs)
                    stack.append((e, state))
                    state = new_state
                    lin = new_lin
                    if required[i]:
                        required_left -= 1
                    unlink(e)
                    r = match[e]
                    if r != -1:
                        unlink(r)
                    e = nxt[head]
                    continue
            e = nxt[e]
        else:
            if not stack:
                return False
            steps += 1
            if deadline is not None and (steps & 1023) == 0 and time.monotonic() > deadline:
                raise SearchBound("time limit reached")
            e, state = stack.pop()
            i = op_of[e]
            lin ^= bits[i]
            if required[i]:
                required_left += 1
            r = match[e]
            if r != -1:
                relink(r)
            relink(e)
            e = nxt[e]
    return True


def _removable(removed, remaining):
    """Whether dropping `removed` from `remaining + removed` can only make the history more
    linearizable, so that a non-linearizable result is still evidence against the whole.
    Dropping a read, or the observation half of a cas, always can. Dropping a write of v
    (write, or cas to v) can when no op left could have observed that write: every op left
    that reads v or expects v (cas old v) either completed before the write was invoked, or
    was invoked after some ok write left in the history that started after the write ended
    had completed (that later write hides it)."""
    writes = []
    for o in removed:
        kind, a, b = _op_args(o)
        if kind == WRITE:
            writes.append((o, a))
        elif kind == CAS:
            writes.append((o, b))
    if not writes:
        return True
    # Reads go first (always fine); the removed cas ops still observe while the writes go.
    observers = {}
    for o in list(remaining) + [o for o in removed if o.f == "cas"]:
        kind, a, _ = _op_args(o)
        if kind != WRITE:
            observers.setdefault(a, []).append(o)
    hiders = sorted((o.invoke_time, o.complete_time) for o in remaining
                    if o.type == "ok" and o.f in ("write", "cas"))
    # suffix minimum of completion times, by invoke time
    suffix = [INF] * (len(hiders) + 1)
    for i in range(len(hiders) - 1, -1, -1):
        suffix[i] = min(hiders[i][1], suffix[i + 1])
    starts = [h[0] for h in hiders]
    for w, v in writes:
        obs = [o for o in observers.get(v, ()) if o is not w]
        if not obs:
            continue
        hidden_after = INF
        if w.complete_time != INF:
            hidden_after = suffix[bisect.bisect_right(starts, w.complete_time)]
        for o in obs:
            if not (o.complete_time < w.invoke_time or o.invoke_time > hidden_after):
                return False
    return True


def shrink(ops, initial=None, max_configs=DEFAULT_MAX_CONFIGS, seconds=DEFAULT_SHRINK_SECONDS,
           deadline=None):
    """A minimal non-linearizable subset of ops (which must be non-linearizable): returns
    (ops, complete) where complete says whether no single op can be dropped any more (False
    when the time ran out first).

    The sub-history is shrunk as non-linearizable from ANY initial value when the whole is
    (so that dropping the writes before a read cannot "explain" the failure by the initial
    value alone); otherwise from `initial`. Only drops that cannot make it less
    linearizable are tried (_removable), so the result is evidence, not an artefact of
    dropping the writes that explained a read."""
    deadline = min(deadline or INF, time.monotonic() + seconds)
    try:
        if check_ops(ops, ANY, max_configs, deadline) is False:
            initial = ANY
    except SearchBound:
        pass

    def invalid(sub):
        try:
            return check_ops(sub, initial, max_configs, deadline) is False
        except SearchBound:
            return False

    cur = sorted(ops, key=lambda o: (o.invoke_time, o.id if o.id is not None else 0))
    # 1. The shortest invalid prefix (in invoke order), by bisection.
    lo, hi = 1, len(cur)
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi) // 2
        if _removable(cur[mid:], cur[:mid]) and invalid(cur[:mid]):
            hi = mid
        else:
            lo = mid + 1
    if hi < len(cur) and _removable(cur[hi:], cur[:hi]) and invalid(cur[:hi]):
        cur = cur[:hi]
    # 2. Drop chunks, halving their size; then single ops until nothing more goes.
    chunk = max(1, len(cur) // 2)
    while time.monotonic() < deadline:
        changed = False
        i = 0
        while i < len(cur) and time.monotonic() < deadline:
            cand = cur[:i] + cur[i + chunk:]
            if cand and _removable(cur[i:i + chunk], cand) and invalid(cand):
                cur = cand
                changed = True
            else:
                i += chunk
        if chunk > 1:
            chunk = max(1, chunk // 2)
        elif not changed:
            return cur, True
    return cur, False


def check(history, initial=None, max_configs=DEFAULT_MAX_CONFIGS, time_limit_s=None,
          shrink_seconds=DEFAULT_SHRINK_SECONDS, **_):
    """The linearizable checker's result dict for a register history."""
    t0 = time.monotonic()
    deadline = None if time_limit_s is None else t0 + time_limit_s
    per_key = _register_ops(pair(history))
    shrink_deadline = None  # one shrink budget for all keys, from the first invalid one
    anomalies = []
    failing = []
    unknown = []
    checked = 0
    for key in sorted(per_key, key=lambda k: (str(type(k)), str(k))):
        ops = _prune_unobserved(per_key[key])
        checked += len(ops)
        try:
            ok = check_ops(ops, initial, max_configs, deadline)
        except SearchBound as e:
            unknown.append({"key": key, "reason": str(e), "ops": len(ops)})
            continue
        if ok:
            continue
        if shrink_deadline is None:
            shrink_deadline = time.monotonic() + shrink_seconds
        minimal, complete = shrink(ops, initial, max_configs, shrink_seconds, shrink_deadline)
        minimal.sort(key=lambda o: o.invoke_index)
        if not complete and len(minimal) > MAX_UNSHRUNK_OPS:
            # The shared shrink budget ran out early: no useful sub-history to show.
            anomalies.append({"type": "nonlinearizable", "key": key, "ops": len(minimal),
                              "minimal_complete": False, "minimal": None, "failing_ops": [],
                              "note": "not shrunk: the shrink time budget was used up"})
            continue
        events = sorted((ev for op in minimal for ev in op.events()), key=lambda e: e["index"])
        anomalies.append({"type": "nonlinearizable", "key": key, "ops": len(minimal),
                          "minimal_complete": complete, "minimal": events,
                          "failing_ops": indexes_of(minimal)})
        failing.extend(indexes_of(minimal))
    elapsed = time.monotonic() - t0
    extra = {"keys": len(per_key), "ops_checked": checked, "seconds": round(elapsed, 3)}
    if anomalies:
        anomalies.sort(key=lambda x: x["minimal"] is None)
        a = anomalies[0]
        summary = "non-linearizable history for key %s, %d ops" % (a["key"], a["ops"])
        if len(anomalies) > 1:
            summary += " (and %d more keys)" % (len(anomalies) - 1)
        return result(False, anomalies, failing, summary, minimal=a["minimal"], **extra)
    if unknown:
        u = unknown[0]
        reason = "search bound for key %s: %s" % (u["key"], u["reason"])
        return result("unknown", [], [], reason, reason=reason, unknown_keys=unknown, **extra)
    if not any(op.type == "ok" for ops in per_key.values() for op in ops):
        return result("unknown", [], [], "no ok operation: nothing to check",
                      reason="no ok operation: nothing to check", **extra)
    return result(True, **extra)
