#!/usr/bin/python3
"""test_report.py — jepsen/latchjep/report.py rendered by a real browser (ctest jepsen_report).

Builds synthetic run folders (a small one: a register history with fail/info/open ops, two
nemesis faults, checkers VALID, INVALID and UNKNOWN with failing ops; and a large one of
12,000 operations whose failing op sits on a late timeline page), writes their report.html,
loads each in headless Chromium (--dump-dom, so the page's script has run) and checks that
the timeline, the shaded nemesis intervals, the latency and throughput plots, the verdicts
and the highlighted failing ops are in the rendered DOM, and that a link to a failing op
shows its timeline page. Saves a screenshot in the small run's folder for humans.

    test_report.py [KEEP_DIR]   (the run folders go there instead of a temporary folder)"""
import html.parser
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "jepsen"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from latchjep import report  # noqa: E402
from latchtest import check, failures  # noqa: E402


class Dom(html.parser.HTMLParser):
    """Every element as (tag, attrs, text directly inside it)."""

    def __init__(self):
        super().__init__()
        self.elems = []
        self.stack = []

    def handle_starttag(self, tag, attrs):
        e = [tag, dict(attrs), ""]
        self.elems.append(e)
        if tag not in ("br", "meta", "input", "img", "link", "hr", "path", "line", "rect",
                       "circle", "polyline"):
            self.stack.append(e)

    def handle_startendtag(self, tag, attrs):
        self.elems.append([tag, dict(attrs), ""])

    def handle_endtag(self, tag):
        while self.stack:
            e = self.stack.pop()
            if e[0] == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2] += data

    def by_class(self, cls, tag=None):
        return [e for e in self.elems
                if cls in e[1].get("class", "").split() and (tag is None or e[0] == tag)]

    def by_id(self, ident):
        for e in self.elems:
            if e[1].get("id") == ident:
                return e
        return None


def parse(text):
    d = Dom()
    d.feed(text)
    return d


def synth_history(n_ops, concurrency, seed, faults):
    """A register-like history: concurrency processes, each op invoke then ok/fail/info
    (an info op retires its process: the thread continues as process + concurrency), nemesis
    start/stop events at the given (fault, t0, t1) times (seconds), times in ns."""
    rng = random.Random(seed)
    events = []
    t = 0
    procs = list(range(concurrency))
    busy = {}  # thread -> (process, invoke event)
    nem = sorted([(t0, "start-" + f, f) for f, t0, _ in faults]
                 + [(t1, "stop-" + f, f) for f, _, t1 in faults])
    issued = 0
    while issued < n_ops or busy:
        t += rng.randint(200_000, 3_000_000)
        while nem and nem[0][0] * 1e9 <= t:
            _, fname, f = nem.pop(0)
            events.append({"time": t, "process": "nemesis", "type": "info", "f": fname,
                           "value": {"targets": ["n1", "n2"]} if f == "partition" else ["n3"]})
        th = rng.randrange(concurrency)
        if th in busy:
            p, inv = busy.pop(th)
            r = rng.random()
            typ = "ok" if r < 0.9 else ("fail" if r < 0.96 else "info")
            ev = {"time": t, "process": p, "type": typ, "f": inv["f"], "key": inv["key"],
                  "value": inv["value"] if inv["f"] != "read" else rng.randint(0, 5),
                  "latency": t - inv["time"]}
            if typ != "ok":
                ev["error"] = "timeout" if typ == "info" else "compare failed"
            events.append(ev)
            if typ == "info":
                procs[th] += concurrency
        elif issued < n_ops:
            f = rng.choice(["read", "write", "cas"])
            v = None if f == "read" else (rng.randint(0, 5) if f == "write"
                                          else [rng.randint(0, 5), rng.randint(0, 5)])
            inv = {"time": t, "process": procs[th], "type": "invoke", "f": f,
                   "key": "r%d" % rng.randrange(10), "value": v}
            events.append(inv)
            busy[th] = (procs[th], inv)
            issued += 1
    for i, ev in enumerate(events):
        ev["index"] = i
    return events


def write_run(d, events, results, run, nemesis_in_history=True):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "history.jsonl"), "w") as f:
        for ev in events:
            if nemesis_in_history or ev["process"] != "nemesis":
                f.write(json.dumps(ev) + "\n")
    with open(os.path.join(d, "nemesis.jsonl"), "w") as f:
        for ev in events:
            if ev["process"] == "nemesis":
                f.write(json.dumps({"time": ev["time"], "f": ev["f"], "value": ev["value"]}) + "\n")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f)
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump(run, f)


def ops_of(events):
    """invoke indexes of the client ops, and the index of the first ok cas."""
    return [e["index"] for e in events if e["process"] != "nemesis" and e["type"] == "invoke"]


def small_case(root, prof):
    events = synth_history(300, 5, 7, [("partition", 0.05, 0.20), ("kill", 0.12, 0.30)])
    # one op left open at the end (the run stopped before it completed)
    events.append({"index": len(events), "time": events[-1]["time"] + 1000, "process": 99,
                   "type": "invoke", "f": "write", "key": "r0", "value": 42})
    inv = ops_of(events)
    completions = [e for e in events if e["process"] != "nemesis" and e["type"] != "invoke"]
    failing = [inv[10], inv[11], completions[40]["index"]]
    results = {
        "valid": False, "workload": "register", "target": "latch", "seed": 7,
        "checkers": {
            "linearizable": {"valid": False, "anomalies": [
                {"key": "r4", "type": "non-linearizable", "ops": 6}],
                "failing_ops": failing, "minimal": [events[inv[10]], events[inv[11]]]},
            "stats": {"valid": True, "ok": 270, "fail": 20, "info": 10},
            "timeline-sanity": {"valid": "unknown", "reason": "search bound reached"},
            "set": {"valid": True, "anomalies": []}}}
    run = {"argv": ["jepsen/run", "--workload", "register"], "seed": 7, "nodes": 5}
    d = os.path.join(root, "small")
    write_run(d, events, results, run)
    with open(os.path.join(d, "resource.jsonl"), "w") as f:  # as the lock workloads leave it
        for i, (tok, acc, stale) in enumerate([(3, True, False), (5, True, False),
                                               (3, False, True), (4, True, True)]):
            f.write(json.dumps({"time": (i + 1) * 100_000_000, "token": tok, "seq": 1,
                                "process": i, "accepted": acc, "highest": 5,
                                "stale": stale}) + "\n")
    path = report.write_report(d)
    check("small: report.html written", os.path.getsize(path) > 1000)
    dom_text = report.render_dom(path, prof)
    dom = parse(dom_text)
    body = [e for e in dom.elems if e[0] == "body"]
    check("small: the page's script ran without an exception (body[data-ready])",
          body and body[0][1].get("data-ready") == "1")
    check("small: timeline section rendered", dom.by_id("timeline") is not None)
    n_ops = len(inv)
    boxes = dom.by_class("op")
    check("small: one timeline box per operation (%d)" % n_ops, len(boxes) == n_ops,
          "%d boxes" % len(boxes))
    procs = {e[1].get("title", "").split()[1] for e in boxes}
    check("small: processes as columns (retired ones included)",
          len(dom.by_class("tl-col")) == len(procs) and len(procs) > 5,
          "%d columns, %d processes" % (len(dom.by_class("tl-col")), len(procs)))
    check("small: ok, fail and info boxes colored by type",
          all(dom.by_class(t, "a") for t in ("ok", "fail", "info")))
    check("small: the op left open is drawn as open", len(dom.by_class("open")) == 1)
    bands = [e for e in dom.by_class("nemesis-band") if e[0] == "div"]
    check("small: nemesis intervals shaded in the timeline (partition and kill)",
          {e[1].get("title", "").split()[0] for e in bands} >= {"partition", "kill"},
          str([e[1].get("title") for e in bands]))
    check("small: the faults listed", dom.by_id("faults") is not None
          and len(dom.by_class("faults", "table")) == 1)
    rects = [e for e in dom.by_class("nemesis-band") if e[0] == "rect"]
    plots = dom.by_class("latency-plot", "svg")
    check("small: one latency plot per f (read, write, cas)",
          sorted(e[1].get("data-f") for e in plots) == ["cas", "read", "write"])
    check("small: latency points drawn per type", len(dom.by_class("pts", "path")) >= 6)
    check("small: throughput plot with a line per type",
          len(dom.by_class("throughput-plot", "svg")) == 1
          and len(dom.by_class("rate", "polyline")) >= 2)
    check("small: nemesis intervals shaded in every plot (2 per plot)",
          len(rects) == 2 * (len(plots) + 2), "%d rects" % len(rects))  # + throughput, resource
    rp = dom.by_class("resource-plot", "svg")
    check("small: the resource log plotted (accepted, refused, accepted stale)",
          dom.by_id("resource") is not None and len(rp) == 1
          and {e[1]["class"] for e in dom.by_class("pts", "path") if e[1].get("stroke")
               in ("#d00000",)} == {"pts stale"})
    words = {}
    for name in ("linearizable", "stats", "timeline-sanity", "set"):
        e = dom.by_id("verdict-" + name)
        words[name] = (e[1].get("class") if e else None)
    check("small: verdicts INVALID / VALID / UNKNOWN rendered",
          words == {"linearizable": "verdict invalid", "stats": "verdict valid",
                    "timeline-sanity": "verdict unknown", "set": "verdict valid"}, str(words))
    word_text = [e[2] for e in dom.by_class("word")]
    check("small: verdict words", sorted(word_text) == ["INVALID", "UNKNOWN", "VALID", "VALID"],
          str(word_text))
    overall = dom.by_id("overall")
    check("small: overall verdict INVALID", overall and overall[2] == "INVALID")
    check("small: anomalies listed", "non-linearizable" in dom_text
          and len(dom.by_class("anomalies")) == 1)
    hl = dom.by_class("failing", "a")
    expect_ids = {"op%d" % inv[10], "op%d" % inv[11]}
    # the third failing index is a completion: its op's box (invoke index) is highlighted
    comp = events[failing[2]]
    comp_op = max(i for i in inv if i < failing[2] and events[i]["process"] == comp["process"])
    expect_ids.add("op%d" % comp_op)
    check("small: failing ops highlighted in the timeline",
          {e[1].get("id") for e in hl} == expect_ids, str([e[1].get("id") for e in hl]))
    links = dom.by_class("failing-link")
    check("small: failing ops listed with links to their boxes",
          len(links) == 3 and {e[1]["href"][1:] for e in links} == expect_ids,
          str([e[1].get("href") for e in links]))
    png = os.path.join(d, "report.png")
    if report.screenshot(path, png, prof):
        print("# screenshot: %s" % png)

    # nemesis only in nemesis.jsonl: the intervals still come out
    d2 = os.path.join(root, "small-nemlog")
    write_run(d2, events, results, run, nemesis_in_history=False)
    dom2 = parse(report.render_dom(report.write_report(d2), prof))
    bands2 = [e for e in dom2.by_class("nemesis-band") if e[0] == "div"]
    check("small: intervals from nemesis.jsonl when the history has none",
          {e[1].get("title", "").split()[0] for e in bands2} >= {"partition", "kill"})

    # a valid run without results.json: UNKNOWN, and the page still renders
    d3 = os.path.join(root, "no-results")
    write_run(d3, events[:50], {}, run)
    check("no resource.jsonl: no resource section", dom2.by_id("resource") is None)
    os.unlink(os.path.join(d3, "results.json"))
    dom3 = parse(report.render_dom(report.write_report(d3), prof))
    check("no results.json: UNKNOWN verdict rendered",
          dom3.by_id("verdict-missing") is not None and dom3.by_id("overall")[2] == "UNKNOWN")


def large_case(root, prof):
    events = synth_history(12000, 10, 11, [("pause", 5.0, 9.0), ("partition", 20.0, 30.0)])
    inv = ops_of(events)
    late = inv[-200]
    results = {"valid": False, "workload": "register", "target": "etcd", "seed": 11,
               "checkers": {"linearizable": {"valid": False, "failing_ops": [late],
                                             "anomalies": ["stale read"]},
                            "stats": {"valid": True}}}
    d = os.path.join(root, "large")
    write_run(d, events, results, {"seed": 11})
    path = report.write_report(d)
    size = os.path.getsize(path)
    print("# large: %d events, report.html %d bytes" % (len(events), size))
    check("large: report under 6 MB for 12,000 ops", size < 6 * 1024 * 1024, "%d bytes" % size)
    dom = parse(report.render_dom(path, prof))
    pages = dom.by_class("tl-page")
    check("large: the timeline is paginated", len(pages) >= 10, "%d pages" % len(pages))
    shown = [e for e in pages if "display: none" not in e[1].get("style", "")]
    check("large: only the first page shown at load",
          len(shown) == 1 and shown[0][1]["id"] == "tl-page-0",
          str([e[1].get("id") for e in shown]))
    box = dom.by_id("op%d" % late)
    check("large: the late failing op is highlighted", box is not None
          and "failing" in box[1].get("class", ""))
    nav_fail = [e for e in dom.by_class("has-failing") if e[0] == "a"]
    check("large: its page is marked in the page list", len(nav_fail) == 1)
    # opening the report at the op's anchor shows the op's page instead of the first one
    dom_a = parse(render_at(path, "op%d" % late, prof))
    shown = [e[1]["id"] for e in dom_a.by_class("tl-page")
             if "display: none" not in e[1].get("style", "")]
    want = nav_fail[0][1]["href"][1:]
    check("large: a link to the failing op shows its page", shown == [want],
          "shown %s, want %s" % (shown, want))
    flashed = [e[1].get("id") for e in dom_a.by_class("flash")]
    check("large: and marks the op", flashed == ["op%d" % late], str(flashed))


def render_at(path, fragment, prof):
    """--dump-dom of the file opened at #fragment (Chromium keeps the fragment of a file URL)."""
    import subprocess
    chromium = report.find_chromium()
    cmd = report._chromium_args(chromium, prof) + [
        "--dump-dom", "file://" + os.path.abspath(path) + "#" + fragment]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return r.stdout.decode("utf-8", errors="replace")


def main():
    if not report.find_chromium():
        print("FAIL - chromium not installed (scripts/deps.sh installs Debian's chromium)")
        return 1
    keep = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="jepsen-report-") as tmp:
        root = keep or tmp
        prof = os.path.join(tmp, "chromium-profile")
        os.makedirs(prof, exist_ok=True)
        small_case(root, prof)
        large_case(root, prof)
    if failures:
        print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all report checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
