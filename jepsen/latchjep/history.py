"""history.py — the history of a run (docs/decisions/jepsen.md, "History format"): one JSON
object per line in history.jsonl, written as the harness records events, and read back for
the checkers and the report.

    h = History(path)                       # t0 = now (time.monotonic_ns())
    op = h.invoke(3, "cas", key="r4", value=[1, 2])
    h.complete(op, "ok", value=[1, 2])      # or "fail"/"info" with error="..."
    h.nemesis("start-partition", {"shape": "isolate", "groups": [[0], [1, 2, 3, 4]]})
    h.close()
    events = read(path)                     # list of dicts, in index order
    pairs(events)                           # [(invoke, completion or None), ...]

Thread safety: every method of History may be called from any thread; an event's index and
time are taken under one lock, so indexes follow the file order and times never go back.
"""
import json
import threading
import time


class History:
    def __init__(self, path, t0=None):
        self.path = path
        self.t0 = time.monotonic_ns() if t0 is None else t0
        self._f = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._index = 0
        self.counts = {"ok": 0, "fail": 0, "info": 0, "invoke": 0}

    def now(self):
        """Nanoseconds since the run started (the history's clock)."""
        return time.monotonic_ns() - self.t0

    def _write(self, ev, since=None):
        with self._lock:
            ev["index"] = self._index
            ev["time"] = time.monotonic_ns() - self.t0
            if since is not None:
                ev["latency"] = ev["time"] - since
            self._index += 1
            line = json.dumps(ev, separators=(", ", ": "), default=_jsonable)
            if self._f is not None:
                self._f.write(line + "\n")
                self._f.flush()
            if ev.get("process") != "nemesis" and ev["type"] in self.counts:
                self.counts[ev["type"]] += 1
        return ev

    def invoke(self, process, f, key=None, value=None, **extra):
        """Records an invocation; returns the event (pass it to complete())."""
        ev = {"index": None, "time": None, "process": process, "type": "invoke", "f": f}
        if key is not None:
            ev["key"] = key
        ev["value"] = value
        ev.update(extra)
        return self._write(ev)

    def complete(self, op, type_, value=None, error=None, **extra):
        """Records op's completion: type_ ok, fail or info. value defaults to the invoke's
        value for fail/info. latency (ns) is added."""
        if type_ not in ("ok", "fail", "info"):
            raise ValueError("completion type %r" % type_)
        ev = {"index": None, "time": None, "process": op["process"], "type": type_,
              "f": op["f"]}
        if "key" in op:
            ev["key"] = op["key"]
        ev["value"] = op.get("value") if value is None and type_ != "ok" else value
        if error is not None:
            ev["error"] = str(error)
        ev.update(extra)
        return self._write(ev, since=op["time"])

    def nemesis(self, f, value=None):
        """A nemesis event: process "nemesis", type info, f start-<fault> / stop-<fault>."""
        return self._write({"index": None, "time": None, "process": "nemesis", "type": "info",
                            "f": f, "value": value})

    def close(self):
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def _jsonable(o):
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    if isinstance(o, (set, frozenset, tuple)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    return repr(o)


def read(path):
    """The events of history.jsonl, in file order (a torn last line is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out


def pairs(events):
    """[(invoke, completion or None)] for client operations, in invoke order; nemesis events
    are left out. A process has at most one operation open at a time."""
    open_ops = {}
    out = []
    for ev in events:
        if ev.get("process") == "nemesis":
            continue
        if ev["type"] == "invoke":
            slot = [ev, None]
            open_ops[ev["process"]] = slot
            out.append(slot)
        else:
            slot = open_ops.pop(ev["process"], None)
            if slot is not None:
                slot[1] = ev
    return [tuple(s) for s in out]
