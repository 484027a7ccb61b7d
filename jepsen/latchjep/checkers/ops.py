"""ops.py — shared helpers of the checkers: pairing a history's events into operations.

A history is a list of event dicts as docs/decisions/jepsen.md defines them (index, time,
process, type, f, key, value, ...). Checkers work on Op objects: one per invocation, with its
completion (or none, which counts as `info`: a client that never heard back cannot know).
Nemesis events (process "nemesis") are not operations.
"""

INF = float("inf")


class Op:
    """One client operation: an invoke and its completion."""

    __slots__ = ("process", "f", "key", "invoke_value", "value", "type", "invoke_index",
                 "complete_index", "invoke_time", "complete_time", "invoke", "complete", "id")

    def __init__(self, inv, comp):
        self.invoke = inv
        self.complete = comp
        self.process = inv.get("process")
        self.f = inv.get("f")
        self.key = inv.get("key")
        self.invoke_value = inv.get("value")
        self.invoke_index = inv.get("index")
        self.invoke_time = inv.get("time", 0)
        if comp is None:
            self.type = "info"
            self.value = inv.get("value")
            self.complete_index = None
            self.complete_time = INF
        else:
            self.type = comp.get("type")
            self.value = comp.get("value")
            self.complete_index = comp.get("index")
            # An info op may have taken effect at any time after its invoke.
            self.complete_time = INF if self.type == "info" else comp.get("time", 0)
        self.id = None

    def indexes(self):
        """The history indexes of the op's events (invoke, then completion if any)."""
        return [i for i in (self.invoke_index, self.complete_index) if i is not None]

    def events(self):
        return [e for e in (self.invoke, self.complete) if e is not None]

    def __repr__(self):
        return "Op(%s %s %s %r -> %r @%s)" % (self.process, self.type, self.f, self.key,
                                              self.value, self.invoke_index)


def client_events(history):
    return [e for e in history if e.get("process") != "nemesis"]


def pair(history):
    """Ops in invoke order. A completion goes with the open invoke of its process."""
    open_ops = {}
    out = []
    for ev in history:
        if ev.get("process") == "nemesis":
            continue
        t = ev.get("type")
        if t == "invoke":
            slot = [ev, None]
            prev = open_ops.get(ev.get("process"))
            if prev is not None and prev[1] is None:
                pass  # a process reused while open: the old op stays open (info)
            open_ops[ev.get("process")] = slot
            out.append(slot)
        elif t in ("ok", "fail", "info"):
            slot = open_ops.pop(ev.get("process"), None)
            if slot is not None:
                slot[1] = ev
    ops = [Op(i, c) for i, c in out]
    for n, op in enumerate(ops):
        op.id = n
    return ops


def indexes_of(ops):
    out = []
    for op in ops:
        out.extend(op.indexes())
    return sorted(set(out))


def result(valid, anomalies=None, failing_ops=None, summary=None, **extra):
    """A checker's result dict (docs/decisions/jepsen.md, "Results")."""
    r = {"valid": valid, "anomalies": anomalies or [],
         "failing_ops": sorted(set(failing_ops or []))}
    if summary is not None:
        r["summary"] = summary
    r.update(extra)
    return r


def verdict_line(name, r):
    """`name: VALID`, `name: INVALID (summary)` or `name: UNKNOWN (reason)`."""
    v = r.get("valid")
    word = "VALID" if v is True else ("INVALID" if v is False else "UNKNOWN")
    why = r.get("summary") or r.get("reason")
    return "%s: %s (%s)" % (name, word, why) if why and v is not True else "%s: %s" % (name, word)
