#!/usr/bin/python3
"""report.py — the HTML page of one harness run (issue 7, item 5).

    jepsen/latchjep/report.py RUN_DIR [--out FILE] [--screenshot]

reads RUN_DIR/history.jsonl, results.json and, when present, nemesis.jsonl, run.json and
resource.jsonl (the formats of docs/decisions/jepsen.md) and writes RUN_DIR/report.html: one
self-contained file
(inline CSS and SVG, a few lines of inline JavaScript, nothing fetched from the network) with

  - the verdict of every checker, its anomalies and its failing operations, each linked to
    the operation's box in the timeline;
  - a per-process timeline (one column per process, one row per history event, each
    operation a box from its invoke to its completion coloured by type, the nemesis
    intervals shaded across all columns, the failing operations outlined), split into pages
    of PAGE_ROWS rows so that 10,000+ operations stay usable;
  - latency over time (a log-scale scatter per f, coloured by type) and throughput over time
    (completions per second per type), with the nemesis intervals shaded;
  - for the lock workloads, the external resource's decisions (resource.jsonl): tokens over
    time, accepted / refused / accepted although stale.

write_report(run_dir) is what the CLI calls. Nothing here needs anything beyond the standard
library; render_dom()/screenshot() drive a headless Chromium when one is installed (the
report's test and --screenshot use them)."""
import argparse
import bisect
import html
import json
import math
import os
import shutil
import subprocess
import sys

PAGE_ROWS = 2000  # history events per timeline page (about 1,000 operations)
MAX_TIMELINE_ROWS = 40000  # beyond this, only the pages with failing ops (and the first ones)
ROW_PX = 7  # height of one history event in the timeline
COL_PX = 96  # width of one process column
GUTTER_PX = 64  # the time labels left of the columns
MAX_PLOT_POINTS = 20000  # per latency plot; more are sampled evenly (fail/info always kept)
MAX_ANOMALIES = 50  # shown per checker
MAX_FAILING_LISTED = 200  # failing ops listed per checker
MAX_JSON_CHARS = 20000  # of a checker's extra fields shown verbatim

TYPE_COLORS = {"ok": "#6db6fe", "fail": "#feb5da", "info": "#ffaa26"}
NEMESIS_COLORS = ["rgba(255,80,80,0.16)", "rgba(120,80,255,0.16)", "rgba(40,170,90,0.18)",
                  "rgba(255,170,0,0.20)", "rgba(0,160,200,0.16)", "rgba(200,0,160,0.14)"]

# ----------------------------------------------------------------------------------------
# Reading the run folder


def read_jsonl(path):
    """The JSON objects of a JSON-lines file, skipping blank and unparsable lines (a run
    killed mid-write may leave a torn last line); [] when the file is absent."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def read_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Op:
    """One client operation: its invoke and its completion (None if the history ends first)."""
    __slots__ = ("process", "f", "key", "value", "type", "error", "start", "end",
                 "inv_index", "comp_index", "inv_row", "comp_row", "ok_value", "extra")

    def __init__(self, inv):
        self.process = inv.get("process")
        self.f = inv.get("f")
        self.key = inv.get("key")
        self.value = inv.get("value")
        self.type = "info"
        self.error = None
        self.start = _int(inv.get("time"), 0)
        self.end = None
        self.inv_index = inv.get("index")
        self.comp_index = None
        self.inv_row = None
        self.comp_row = None
        self.ok_value = None
        self.extra = {}

    @property
    def latency(self):
        return None if self.end is None else self.end - self.start


def _int(v, default):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def is_nemesis(ev):
    return ev.get("process") == "nemesis"


def pair_ops(events):
    """Pairs every client invoke with the next completion of the same process. Returns
    (ops, rows) where rows are the history events the timeline shows, in file order, each
    as (event, op or None). An invoke left open at the end stays an `info` op without an
    end (drawn to the last row)."""
    pending = {}
    ops = []
    rows = []
    for ev in events:
        if is_nemesis(ev):
            rows.append((ev, None))
            continue
        p = ev.get("process")
        t = ev.get("type")
        if t == "invoke":
            op = Op(ev)
            op.inv_row = len(rows)
            if p in pending:  # a second invoke without a completion: close the first one
                pending[p].error = "no completion recorded"
            pending[p] = op
            ops.append(op)
            rows.append((ev, op))
        elif t in ("ok", "fail", "info"):
            op = pending.pop(p, None)
            if op is None:
                continue  # a completion without an invoke: nothing to draw
            op.type = t
            op.end = _int(ev.get("time"), op.start)
            op.comp_index = ev.get("index")
            op.comp_row = len(rows)
            op.ok_value = ev.get("value")
            op.error = ev.get("error")
            for k, v in ev.items():
                if k not in ("index", "time", "process", "type", "f", "key", "value", "error"):
                    op.extra[k] = v
            rows.append((ev, op))
    for op in pending.values():
        op.error = op.error or "no completion recorded"
    return ops, rows


class Interval:
    __slots__ = ("fault", "start", "end", "value", "color")

    def __init__(self, fault, start, end, value, color):
        self.fault = fault
        self.start = start
        self.end = end
        self.value = value
        self.color = color


def nemesis_intervals(nem_events, end_time):
    """Fault intervals from nemesis events (`start-X` ... `stop-X`, in time order). A start
    while X is already open is ignored (a harness that logs invoke and info for one fault);
    a stop with nothing open is ignored; a fault still open at the end lasts to end_time.
    Other nemesis events become zero-length intervals (instants)."""
    colors = {}

    def color_of(fault):
        if fault not in colors:
            colors[fault] = NEMESIS_COLORS[len(colors) % len(NEMESIS_COLORS)]
        return colors[fault]

    open_ = {}
    out = []
    for ev in sorted(nem_events, key=lambda e: _int(e.get("time"), 0)):
        f = str(ev.get("f", ""))
        t = _int(ev.get("time"), 0)
        if f.startswith("start-"):
            fault = f[len("start-"):]
            if fault not in open_:
                open_[fault] = (t, ev.get("value"))
        elif f.startswith("stop-"):
            fault = f[len("stop-"):]
            if fault in open_:
                t0, v = open_.pop(fault)
                out.append(Interval(fault, t0, t, v, color_of(fault)))
        elif f:
            out.append(Interval(f, t, t, ev.get("value"), color_of(f)))
    for fault, (t0, v) in open_.items():
        out.append(Interval(fault, t0, max(t0, end_time), v, color_of(fault)))
    out.sort(key=lambda i: (i.start, i.end))
    return out


# ----------------------------------------------------------------------------------------
# Small formatting helpers


def esc(s):
    return html.escape(str(s), quote=True)


def compact(v, limit=200):
    """A short JSON rendering of a value for titles and tables."""
    try:
        s = json.dumps(v, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        s = str(v)
    if len(s) > limit:
        s = s[:limit - 1] + "…"
    return s


def secs(ns):
    return "%.3f s" % (ns / 1e9)


def fmt_ms(ns):
    ms = ns / 1e6
    if ms >= 100:
        return "%.0f ms" % ms
    if ms >= 1:
        return "%.1f ms" % ms
    return "%.3f ms" % ms


def verdict_word(valid):
    if valid is True:
        return "VALID"
    if valid is False:
        return "INVALID"
    return "UNKNOWN"


def verdict_class(valid):
    return {"VALID": "valid", "INVALID": "invalid"}.get(verdict_word(valid), "unknown")


def op_id(op):
    return "op%s" % op.inv_index


def op_title(op):
    lines = ["process %s  %s  %s" % (op.process, op.f, op.type)]
    if op.key is not None:
        lines.append("key: %s" % compact(op.key, 80))
    lines.append("invoke: %s" % compact(op.value, 300))
    if op.end is not None:
        lines.append("%s: %s" % (op.type, compact(op.ok_value, 300)))
    if op.error:
        lines.append("error: %s" % compact(op.error, 200))
    lines.append("time %s, latency %s" % (secs(op.start),
                                          "-" if op.end is None else fmt_ms(op.latency)))
    lines.append("history index %s..%s" % (op.inv_index,
                                           "" if op.comp_index is None else op.comp_index))
    return "\n".join(lines)


def op_label(op):
    parts = [str(op.f)]
    if op.key is not None:  # short keys only (r4, k3): long ones are in the title
        k = op.key if isinstance(op.key, str) else compact(op.key, 12)
        if len(k) <= 8:
            parts.append(k)
    v = op.ok_value if op.type == "ok" else op.value
    if v is not None:
        parts.append(compact(v, 18))
    return " ".join(parts)


# ----------------------------------------------------------------------------------------
# The timeline


def timeline_html(ops, rows, intervals, failing, end_time):
    """The timeline section: pages of PAGE_ROWS rows, each with its own columns (the
    processes that have an event there), nemesis bands and op boxes."""
    nrows = len(rows)
    if nrows == 0:
        return '<section id="timeline"><h2>Timeline</h2><p>No operations.</p></section>'
    row_times = [_int(ev.get("time"), 0) for ev, _ in rows]
    # Row times are monotonic in a well-formed history; guard the bisects anyway.
    for i in range(1, nrows):
        if row_times[i] < row_times[i - 1]:
            row_times[i] = row_times[i - 1]
    npages = (nrows + PAGE_ROWS - 1) // PAGE_ROWS
    failing_pages = set()
    for op in ops:
        if op.inv_index in failing or op.comp_index in failing:
            failing_pages.add(op.inv_row // PAGE_ROWS)
    keep = list(range(npages))
    omitted = []
    if nrows > MAX_TIMELINE_ROWS:
        budget = MAX_TIMELINE_ROWS // PAGE_ROWS
        chosen = sorted(failing_pages)[:budget]
        for p in range(npages):
            if len(chosen) >= budget:
                break
            if p not in chosen:
                chosen.append(p)
        keep = sorted(set(chosen))
        omitted = [p for p in range(npages) if p not in keep]

    # ops by page: every page the op's box intersects
    by_page = {p: [] for p in keep}
    keep_set = set(keep)
    for op in ops:
        r0 = op.inv_row
        r1 = op.comp_row if op.comp_row is not None else nrows - 1
        for p in range(r0 // PAGE_ROWS, r1 // PAGE_ROWS + 1):
            if p in keep_set:
                by_page[p].append(op)

    out = ['<section id="timeline"><h2>Timeline</h2>',
           '<p class="note">One column per process, one row per history event (time runs '
           'down; the left labels give seconds since the start). Boxes go from invoke to '
           'completion: <span class="key ok">ok</span> <span class="key fail">fail</span> '
           '<span class="key info">info</span>; outlined boxes are failing operations; '
           'shaded bands are nemesis faults. Hover a box for its details.</p>']
    out.append('<nav class="tl-nav">')
    for p in keep:
        r0 = p * PAGE_ROWS
        r1 = min(nrows, r0 + PAGE_ROWS) - 1
        cls = "tl-link" + (" has-failing" if p in failing_pages else "")
        out.append('<a class="%s" href="#tl-page-%d" data-page="%d">%d: %.1f–%.1f s</a>'
                   % (cls, p, p, p + 1, row_times[r0] / 1e9, row_times[r1] / 1e9))
    out.append("</nav>")
    if omitted:
        out.append('<p class="note omitted">%d of %d pages (%d history events) are not drawn '
                   'to keep this file small; history.jsonl has them all.</p>'
                   % (len(omitted), npages, len(omitted) * PAGE_ROWS))

    for p in keep:
        r0 = p * PAGE_ROWS
        r1 = min(nrows, r0 + PAGE_ROWS)  # exclusive
        page_ops = by_page[p]
        procs = sorted({op.process for op in page_ops}, key=_proc_sort_key)
        col = {proc: i for i, proc in enumerate(procs)}
        height = (r1 - r0) * ROW_PX
        width = GUTTER_PX + max(1, len(procs)) * COL_PX
        out.append('<div class="tl-page" id="tl-page-%d" data-page="%d">' % (p, p))
        out.append('<h3>Page %d of %d: history events %d–%d, %s – %s</h3>'
                   % (p + 1, npages, r0, r1 - 1, secs(row_times[r0]), secs(row_times[r1 - 1])))
        out.append('<div class="tl-head" style="width:%dpx">' % width)
        for proc in procs:
            out.append('<div class="tl-col" style="left:%dpx">process %s</div>'
                       % (GUTTER_PX + col[proc] * COL_PX, esc(proc)))
        out.append("</div>")
        out.append('<div class="tl-body" style="height:%dpx;width:%dpx">' % (height, width))
        # nemesis bands, mapped from time to rows
        t_first, t_last = row_times[r0], row_times[r1 - 1]
        for iv in intervals:
            if iv.end < t_first or iv.start > t_last:
                continue
            a = bisect.bisect_left(row_times, iv.start)
            b = bisect.bisect_right(row_times, iv.end)
            a = max(a, r0)
            b = min(max(b, a + 1), r1)
            if b <= a:
                continue
            out.append('<div class="nemesis-band" style="top:%dpx;height:%dpx;background:%s" '
                       'title="%s"><span>%s</span></div>'
                       % ((a - r0) * ROW_PX, (b - a) * ROW_PX, iv.color,
                          esc("%s %s – %s\n%s" % (iv.fault, secs(iv.start), secs(iv.end),
                                                  compact(iv.value, 300))),
                          esc(iv.fault)))
        # time labels
        step = 50
        for r in range(r0 - r0 % step + (step if r0 % step else 0), r1, step):
            out.append('<div class="tl-t" style="top:%dpx">%.3f</div>'
                       % ((r - r0) * ROW_PX, row_times[r] / 1e9))
        # op boxes
        for op in page_ops:
            a = max(op.inv_row, r0)
            last = op.comp_row if op.comp_row is not None else nrows - 1
            b = min(last + 1, r1)
            classes = ["op", op.type]
            if op.inv_index in failing or op.comp_index in failing:
                classes.append("failing")
            if op.comp_row is None:
                classes.append("open")
            attrs = ""
            if op.inv_row >= r0:  # the page holding the invoke carries the anchor
                attrs = ' id="%s"' % op_id(op)
            else:
                classes.append("cont")
            out.append('<a%s class="%s" href="#%s" style="top:%dpx;left:%dpx;height:%dpx" '
                       'title="%s">%s</a>'
                       % (attrs, " ".join(classes), op_id(op), (a - r0) * ROW_PX,
                          GUTTER_PX + col[op.process] * COL_PX + 2,
                          max(1, (b - a)) * ROW_PX - 1, esc(op_title(op)),
                          esc(op_label(op)) if (b - a) >= 2 else ""))
        out.append("</div></div>")
    out.append("</section>")
    return "\n".join(out)


def _proc_sort_key(p):
    return (0, p, "") if isinstance(p, int) else (1, 0, str(p))


# ----------------------------------------------------------------------------------------
# SVG plots


def nice_step(span, target):
    """A 1/2/5 x 10^k step giving about `target` intervals over span."""
    if span <= 0:
        return 1.0
    raw = span / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


class Frame:
    """Plot geometry: data -> pixel mapping with an optional log y axis."""

    def __init__(self, x0, x1, y0, y1, log_y, width=900, height=260):
        self.w, self.h = width, height
        self.ml, self.mr, self.mt, self.mb = 64, 16, 12, 36
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.log_y = log_y
        if log_y:
            self.y0, self.y1 = math.log10(y0), math.log10(y1)
        else:
            self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1)
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1

    def px(self, x):
        return self.ml + (x - self.x0) / (self.x1 - self.x0) * (self.w - self.ml - self.mr)

    def py(self, y):
        if self.log_y:
            y = math.log10(max(y, 1e-12))
        frac = (y - self.y0) / (self.y1 - self.y0)
        return self.mt + (1 - frac) * (self.h - self.mt - self.mb)


def svg_axes(fr, xlabel, ylabel, yticks):
    out = []
    x_left, x_right = fr.ml, fr.w - fr.mr
    y_top, y_bot = fr.mt, fr.h - fr.mb
    out.append('<rect class="plot-bg" x="%d" y="%d" width="%d" height="%d"/>'
               % (x_left, y_top, x_right - x_left, y_bot - y_top))
    step = nice_step(fr.x1 - fr.x0, 10)
    t = math.ceil(fr.x0 / step) * step
    while t <= fr.x1 + 1e-9:
        x = fr.px(t)
        out.append('<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>' % (x, y_top, x, y_bot))
        out.append('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%g</text>'
                   % (x, y_bot + 14, round(t, 6)))
        t += step
    for val, label in yticks:
        y = fr.py(val)
        out.append('<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>' % (x_left, y, x_right, y))
        out.append('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>'
                   % (x_left - 4, y + 4, esc(label)))
    out.append('<text class="axis" x="%d" y="%d" text-anchor="middle">%s</text>'
               % ((x_left + x_right) // 2, fr.h - 4, esc(xlabel)))
    out.append('<text class="axis" x="12" y="%d" text-anchor="middle" transform="rotate(-90 12 %d)">'
               '%s</text>' % ((y_top + y_bot) // 2, (y_top + y_bot) // 2, esc(ylabel)))
    return out


def svg_nemesis(fr, intervals):
    out = []
    y_top, y_bot = fr.mt, fr.h - fr.mb
    for iv in intervals:
        xa = fr.px(iv.start / 1e9)
        xb = max(fr.px(iv.end / 1e9), xa + 1.5)
        out.append('<rect class="nemesis-band" x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s"><title>%s</title></rect>'
                   % (xa, y_top, xb - xa, y_bot - y_top, iv.color,
                      esc("%s %s – %s" % (iv.fault, secs(iv.start), secs(iv.end)))))
    return out


def legend(items):
    return "".join('<span class="legend"><i style="background:%s"></i>%s</span>' % (c, esc(n))
                   for n, c in items)


def latency_svgs(ops, intervals, end_time):
    """One log-scale scatter per f: x = invoke time (s), y = latency (ms)."""
    by_f = {}
    for op in ops:
        if op.end is None:
            continue
        by_f.setdefault(str(op.f), []).append(op)
    out = ['<section id="latency"><h2>Latency</h2>']
    if not by_f:
        out.append("<p>No completed operations.</p></section>")
        return "\n".join(out)
    x1 = end_time / 1e9
    for f in sorted(by_f):
        fops = by_f[f]
        sampled = ""
        if len(fops) > MAX_PLOT_POINTS:
            keep = [o for o in fops if o.type != "ok"]
            oks = [o for o in fops if o.type == "ok"]
            room = max(0, MAX_PLOT_POINTS - len(keep))
            stride = max(1, math.ceil(len(oks) / max(1, room)))
            keep += oks[::stride]
            sampled = " (%d of %d points shown: every %d-th ok, all fail/info)" % (
                len(keep), len(fops), stride)
            fops = keep
        lats = [max(o.latency, 1) / 1e6 for o in fops]
        lo = 10 ** math.floor(math.log10(min(lats)))
        hi = 10 ** math.ceil(math.log10(max(lats)))
        if hi <= lo:
            hi = lo * 10
        fr = Frame(0, x1, lo, hi, True)
        yticks = []
        v = lo
        while v <= hi * 1.0001:
            yticks.append((v, "%g" % v))
            v *= 10
        parts = ['<svg class="plot latency-plot" data-f="%s" xmlns="http://www.w3.org/2000/svg" '
                 'width="%d" height="%d" viewBox="0 0 %d %d">' % (esc(f), fr.w, fr.h, fr.w, fr.h)]
        parts += svg_axes(fr, "time (s)", "latency (ms)", yticks)
        parts += svg_nemesis(fr, intervals)
        for t in ("ok", "info", "fail"):
            d = []
            for o in fops:
                if o.type == t:
                    d.append("M%.1f %.1fh0" % (fr.px(o.start / 1e9), fr.py(max(o.latency, 1) / 1e6)))
            if d:
                parts.append('<path class="pts %s" stroke="%s" d="%s"/>'
                             % (t, TYPE_COLORS[t], "".join(d)))
        parts.append("</svg>")
        counts = {t: sum(1 for o in by_f[f] if o.type == t) for t in ("ok", "fail", "info")}
        out.append('<div class="plot-box"><h3>%s</h3><p class="note">%s%s</p>%s</div>'
                   % (esc(f), legend([("%s (%d)" % (t, counts[t]), TYPE_COLORS[t])
                                      for t in ("ok", "fail", "info")]),
                      esc(sampled), "".join(parts)))
    out.append("</section>")
    return "\n".join(out)


def throughput_svg(ops, intervals, end_time):
    """Completions per second per type, in buckets of a 1/2/5 step (about 100 buckets)."""
    out = ['<section id="throughput"><h2>Throughput</h2>']
    done = [o for o in ops if o.end is not None]
    if not done:
        out.append("<p>No completed operations.</p></section>")
        return "\n".join(out)
    span = max(end_time, 1) / 1e9
    width_s = nice_step(span, 100)
    nb = int(math.ceil(span / width_s)) + 1
    series = {t: [0] * nb for t in ("ok", "fail", "info")}
    for o in done:
        b = min(nb - 1, int((o.end / 1e9) / width_s))
        series[o.type][b] += 1
    rates = {t: [c / width_s for c in v] for t, v in series.items()}
    ymax = max(max(v) for v in rates.values()) or 1
    fr = Frame(0, span, 0, ymax * 1.1, False)  # the latency plots' time axis
    ystep = nice_step(ymax * 1.1, 5)
    yticks = []
    v = 0.0
    while v <= ymax * 1.1:
        yticks.append((v, "%g" % round(v, 6)))
        v += ystep
    parts = ['<svg class="plot throughput-plot" xmlns="http://www.w3.org/2000/svg" width="%d" '
             'height="%d" viewBox="0 0 %d %d">' % (fr.w, fr.h, fr.w, fr.h)]
    parts += svg_axes(fr, "time (s)", "ops/s (completions, %g s buckets)" % width_s, yticks)
    parts += svg_nemesis(fr, intervals)
    for t in ("ok", "info", "fail"):
        if not any(series[t]):
            continue
        pts = " ".join("%.1f,%.1f" % (fr.px(min(span, (i + 0.5) * width_s)), fr.py(r))
                       for i, r in enumerate(rates[t]))
        parts.append('<polyline class="rate %s" fill="none" stroke="%s" points="%s"/>'
                     % (t, TYPE_COLORS[t], pts))
    parts.append("</svg>")
    out.append('<p class="note">%s</p>' % legend([(t, TYPE_COLORS[t]) for t in ("ok", "fail", "info")]))
    out.append("".join(parts))
    out.append("</section>")
    return "\n".join(out)


def resource_svg(log, intervals, end_time):
    """The lock workloads' external resource (resource.jsonl): each write's token over time,
    accepted (blue), refused (pink), accepted although stale (red: the resource had seen a
    higher token — only the unfenced resource does that)."""
    out = ['<section id="resource"><h2>External resource</h2>']
    acc = sum(1 for r in log if r.get("accepted"))
    stale_acc = sum(1 for r in log if r.get("accepted") and r.get("stale"))
    out.append('<p class="note">resource.jsonl: %d writes, %d accepted, %d refused, %d accepted '
               'with a stale token. %s</p>'
               % (len(log), acc, len(log) - acc, stale_acc,
                  legend([("accepted", TYPE_COLORS["ok"]), ("refused", TYPE_COLORS["fail"]),
                          ("accepted, stale", "#d00000")])))
    pts = [(_int(r.get("time"), 0), _int(r.get("token"), 0), r) for r in log]
    if not pts:
        out.append("</section>")
        return "\n".join(out)
    tmax = max([end_time] + [p[0] for p in pts])
    lo = min(p[1] for p in pts)
    hi = max(p[1] for p in pts)
    fr = Frame(0, tmax / 1e9, lo, hi if hi > lo else lo + 1, False)
    step = max(1, int(nice_step(fr.y1 - fr.y0, 5)))
    yticks = [(v, str(v)) for v in range((lo // step) * step, hi + step, step) if lo <= v <= hi]
    parts = ['<svg class="plot resource-plot" xmlns="http://www.w3.org/2000/svg" width="%d" '
             'height="%d" viewBox="0 0 %d %d">' % (fr.w, fr.h, fr.w, fr.h)]
    parts += svg_axes(fr, "time (s)", "token", yticks)
    parts += svg_nemesis(fr, intervals)
    groups = {"ok": [], "fail": [], "stale": []}
    for t, tok, r in pts:
        g = "stale" if r.get("accepted") and r.get("stale") else (
            "ok" if r.get("accepted") else "fail")
        groups[g].append("M%.1f %.1fh0" % (fr.px(t / 1e9), fr.py(tok)))
    for g, color in (("ok", TYPE_COLORS["ok"]), ("fail", TYPE_COLORS["fail"]),
                     ("stale", "#d00000")):
        if groups[g]:
            parts.append('<path class="pts %s" stroke="%s" d="%s"/>'
                         % (g, color, "".join(groups[g])))
    parts.append("</svg>")
    out.append("".join(parts))
    out.append("</section>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# Verdicts


def verdicts_html(results, ops_by_index):
    out = ['<section id="verdicts"><h2>Checkers</h2>']
    if not isinstance(results, dict):
        out.append('<div class="verdict unknown" id="verdict-missing"><h3>no results.json '
                   '<span class="word">UNKNOWN</span></h3><p>The run has no (readable) '
                   'results.json: the checkers did not run.</p></div></section>')
        return "\n".join(out)
    checkers = results.get("checkers") or {}
    if not isinstance(checkers, dict) or not checkers:
        out.append("<p>results.json lists no checkers.</p>")
    for name in sorted(checkers, key=lambda n: (n == "stats", n)):
        res = checkers[name]
        if not isinstance(res, dict):
            res = {"valid": "unknown", "result": res}
        valid = res.get("valid")
        word = verdict_word(valid)
        out.append('<div class="verdict %s" id="verdict-%s"><h3>%s <span class="word">%s</span>'
                   '</h3>' % (verdict_class(valid), esc(name), esc(name), word))
        for k in ("reason", "error", "message", "summary"):
            if k in res:
                out.append('<p class="reason">%s: %s</p>' % (esc(k), esc(compact(res[k], 2000))))
        anomalies = res.get("anomalies")
        if anomalies:
            items = list(anomalies.items()) if isinstance(anomalies, dict) else list(anomalies) \
                if isinstance(anomalies, list) else [anomalies]
            out.append('<h4>Anomalies (%d)</h4><ol class="anomalies">' % len(items))
            for a in items[:MAX_ANOMALIES]:
                links = ""
                if isinstance(a, dict) and isinstance(a.get("ops"), list):
                    seen = []
                    for i in a["ops"]:
                        op = ops_by_index.get(i) if isinstance(i, int) else None
                        if op is not None and op not in seen:
                            seen.append(op)
                    links = " ".join('<a class="anomaly-op" href="#%s">%s</a>'
                                     % (op_id(op), esc(op.inv_index)) for op in seen[:40])
                    if links:
                        links = '<br><span class="note">ops:</span> ' + links
                out.append('<li><code>%s</code>%s</li>' % (esc(compact(a, 2000)), links))
            if len(items) > MAX_ANOMALIES:
                out.append("<li>… and %d more (results.json has them all)</li>"
                           % (len(items) - MAX_ANOMALIES))
            out.append("</ol>")
        failing = res.get("failing_ops") or []
        if isinstance(failing, list) and failing:
            # an op may be named by its invoke and its completion index: list it once
            rows, seen, missing = [], set(), []
            for idx in failing:
                op = ops_by_index.get(idx) if isinstance(idx, int) else None
                if op is None:
                    missing.append(idx)
                elif id(op) not in seen:
                    seen.add(id(op))
                    rows.append(op)
            rows.sort(key=lambda o: o.inv_index if isinstance(o.inv_index, int) else 0)
            out.append('<details class="failing-list"%s><summary>Failing operations (%d)</summary>'
                       '<table class="failing-ops"><tr><th>index</th><th>process</th><th>f</th>'
                       '<th>key</th><th>invoke</th><th>completion</th><th>time</th></tr>'
                       % (" open" if len(rows) <= 30 else "", len(rows)))
            for op in rows[:MAX_FAILING_LISTED]:
                out.append('<tr><td><a class="failing-link" href="#%s">%s</a></td><td>%s</td>'
                           '<td>%s</td><td>%s</td><td><code>%s</code></td><td>%s <code>%s'
                           '</code></td><td>%s</td></tr>'
                           % (op_id(op), esc(op.inv_index), esc(op.process), esc(op.f),
                              esc(compact(op.key, 60)), esc(compact(op.value, 120)),
                              esc(op.type), esc(compact(op.ok_value, 120)), secs(op.start)))
            if len(rows) > MAX_FAILING_LISTED:
                out.append('<tr><td colspan="7">… and %d more</td></tr>'
                           % (len(rows) - MAX_FAILING_LISTED))
            for idx in missing[:20]:
                out.append('<tr class="missing"><td>%s</td><td colspan="6">not a client '
                           'operation of this history</td></tr>' % esc(idx))
            out.append("</table></details>")
        rest = {k: v for k, v in res.items()
                if k not in ("valid", "anomalies", "failing_ops", "reason", "error", "message",
                             "summary")}
        if rest:
            text = json.dumps(rest, indent=1, sort_keys=True, default=str)
            if len(text) > MAX_JSON_CHARS:
                text = text[:MAX_JSON_CHARS] + "\n… (truncated; see results.json)"
            out.append('<details><summary>details</summary><pre>%s</pre></details>' % esc(text))
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# The page

CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:0 16px 40px;color:#222}
h1{font-size:20px;margin:12px 0 4px}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:12px 0 4px}h4{font-size:13px;margin:8px 0 2px}
.note{color:#555;margin:2px 0 6px}code,pre{font:12px ui-monospace,monospace}
pre{background:#f6f6f6;padding:6px;overflow:auto;max-height:400px}
#summary table{border-collapse:collapse}#summary td,#summary th{padding:1px 10px 1px 0;text-align:left;vertical-align:top}
.overall{display:inline-block;padding:3px 10px;border-radius:3px;font-weight:bold;color:#fff}
.overall.valid{background:#2a8a3a}.overall.invalid{background:#c0282d}.overall.unknown{background:#b07800}
.verdict{border-left:6px solid #999;padding:2px 10px;margin:8px 0;background:#fafafa}
.verdict.valid{border-color:#2a8a3a}.verdict.invalid{border-color:#c0282d;background:#fff4f4}
.verdict.unknown{border-color:#b07800;background:#fffaf0}
.verdict .word{font-weight:bold;margin-left:6px}.verdict.valid .word{color:#2a8a3a}
.verdict.invalid .word{color:#c0282d}.verdict.unknown .word{color:#b07800}
details.failing-list summary{font-weight:bold;margin:8px 0 2px;cursor:pointer}
a.anomaly-op{margin-right:4px}
table.faults td,table.faults th{padding:1px 10px 1px 0;text-align:left}
table.faults i{display:inline-block;width:10px;height:10px;margin-right:4px;border:1px solid #999}
table.failing-ops{border-collapse:collapse}table.failing-ops td,table.failing-ops th{border:1px solid #ddd;padding:1px 6px;text-align:left}
.key,.legend i{display:inline-block;border:1px solid #888}.key{padding:0 6px}
.key.ok{background:#6db6fe}.key.fail{background:#feb5da}.key.info{background:#ffaa26}
.legend{margin-right:14px}.legend i{width:10px;height:10px;margin-right:4px;vertical-align:middle}
.tl-nav a{display:inline-block;margin:2px 4px 2px 0;padding:1px 6px;border:1px solid #bbb;border-radius:3px;text-decoration:none;color:#222}
.tl-nav a.current{background:#222;color:#fff}.tl-nav a.has-failing{border-color:#c0282d;color:#c0282d;font-weight:bold}
.tl-nav a.has-failing.current{background:#c0282d;color:#fff}
.tl-head{position:relative;height:18px;border-bottom:1px solid #ccc}
.tl-col{position:absolute;top:0;width:94px;font-size:11px;color:#444;overflow:hidden;white-space:nowrap}
.tl-body{position:relative;background:repeating-linear-gradient(90deg,transparent 0 95px,#f0f0f0 95px 96px);background-position:64px 0}
.tl-t{position:absolute;left:0;width:58px;text-align:right;font-size:10px;color:#777;border-top:1px solid #e4e4e4}
.nemesis-band{position:absolute;left:64px;right:0;z-index:0;border-top:1px dashed rgba(0,0,0,.25)}
.nemesis-band span{position:sticky;top:0;font-size:10px;color:#700;padding-left:2px}
.op{position:absolute;z-index:1;width:90px;box-sizing:border-box;border:1px solid rgba(0,0,0,.25);border-radius:2px;font-size:9px;line-height:9px;overflow:hidden;white-space:nowrap;color:#000;text-decoration:none}
.op.ok{background:#6db6fe}.op.fail{background:#feb5da}.op.info{background:#ffaa26}
.op.open{border-bottom:2px dotted #000}
.op.failing{outline:3px solid #c0282d;z-index:2}.op:target,.op.flash{outline:3px solid #000;z-index:3}
svg.plot{display:block;margin:4px 0 10px}svg .plot-bg{fill:#fff;stroke:#bbb}
svg .grid{stroke:#eee}svg .tick{font-size:10px;fill:#555}svg .axis{font-size:11px;fill:#333}
svg path.pts{stroke-width:4;stroke-linecap:round;fill:none;opacity:.8}svg polyline.rate{stroke-width:1.6}
"""

JS = """
(function(){
  var pages=document.querySelectorAll('.tl-page');
  var links=document.querySelectorAll('.tl-nav a');
  function show(n){
    for(var i=0;i<pages.length;i++){pages[i].style.display=(pages[i].getAttribute('data-page')==n)?'':'none';}
    for(var j=0;j<links.length;j++){links[j].classList.toggle('current',links[j].getAttribute('data-page')==n);}
  }
  function go(id){
    if(!id)return;
    var el=document.getElementById(id);
    if(!el)return;
    var page=el.classList.contains('tl-page')?el:el.closest('.tl-page');
    if(page){show(page.getAttribute('data-page'));}
    var old=document.querySelectorAll('.op.flash');
    for(var k=0;k<old.length;k++){old[k].classList.remove('flash');}
    if(el.classList.contains('op')){el.classList.add('flash');}
    el.scrollIntoView({block:'center'});
  }
  if(pages.length){show(pages[0].getAttribute('data-page'));}
  window.addEventListener('hashchange',function(){go(decodeURIComponent(location.hash.slice(1)));});
  if(location.hash){go(decodeURIComponent(location.hash.slice(1)));}
  document.body.setAttribute('data-ready','1');
})();
"""


def summary_html(results, run, ops, intervals, end_time, n_events):
    valid = results.get("valid") if isinstance(results, dict) else None
    out = ['<section id="summary">']
    out.append('<p><span class="overall %s" id="overall">%s</span></p>'
               % (verdict_class(valid), verdict_word(valid)))
    rows = []
    if isinstance(results, dict):
        for k in ("workload", "target", "seed"):
            if k in results:
                rows.append((k, results[k]))
    if isinstance(run, dict):
        for k, v in run.items():
            if k not in ("workload", "target", "seed") or not isinstance(results, dict) \
                    or k not in results:
                rows.append((k, v if isinstance(v, str) else compact(v, 400)))
    counts = {}
    for op in ops:
        counts.setdefault(str(op.f), {}).setdefault(op.type, 0)
        counts[str(op.f)][op.type] += 1
    rows.append(("history", "%d events, %d operations over %s" % (n_events, len(ops), secs(end_time))))
    for f in sorted(counts):
        rows.append(("ops: %s" % f, ", ".join("%s %d" % (t, counts[f][t])
                                              for t in ("ok", "fail", "info") if t in counts[f])))
    faults = {}
    for iv in intervals:
        faults[iv.fault] = faults.get(iv.fault, 0) + 1
    if faults:
        rows.append(("nemesis", ", ".join("%s ×%d" % (k, v) for k, v in sorted(faults.items()))))
    out.append("<table>")
    for k, v in rows:
        out.append("<tr><th>%s</th><td>%s</td></tr>" % (esc(k), esc(v)))
    out.append("</table>")
    if intervals:
        out.append('<details id="faults"><summary>Faults (%d)</summary><table class="faults">'
                   '<tr><th>fault</th><th>start</th><th>end</th><th>targets</th></tr>'
                   % len(intervals))
        for iv in intervals:
            out.append('<tr><td><i style="background:%s"></i>%s</td><td>%s</td><td>%s</td>'
                       '<td><code>%s</code></td></tr>'
                       % (iv.color, esc(iv.fault), secs(iv.start), secs(iv.end),
                          esc(compact(iv.value, 300))))
        out.append("</table></details>")
    out.append("</section>")
    return "\n".join(out)


def build_report(events, results, nemesis_log=None, run=None, resource_log=None):
    """The report's HTML text for a history (list of event dicts), a results dict (or None),
    the nemesis.jsonl events (used when the history has no nemesis events), run.json and the
    lock workloads' resource.jsonl (a list, or None)."""
    ops, rows = pair_ops(events)
    end_time = max([_int(e.get("time"), 0) for e in events] + [0])
    nem = [e for e in events if is_nemesis(e)]
    if not nem and nemesis_log:
        nem = [e for e in nemesis_log if "f" in e and "time" in e]
        end_time = max([end_time] + [_int(e.get("time"), 0) for e in nem])
    intervals = nemesis_intervals(nem, end_time)
    failing = set()
    if isinstance(results, dict):
        for res in (results.get("checkers") or {}).values():
            if isinstance(res, dict) and isinstance(res.get("failing_ops"), list):
                failing.update(i for i in res["failing_ops"] if isinstance(i, int))
    ops_by_index = {}
    for op in ops:
        ops_by_index[op.inv_index] = op
        if op.comp_index is not None:
            ops_by_index[op.comp_index] = op
    title = "latch jepsen"
    if isinstance(results, dict):
        title = "%s %s on %s, seed %s" % (title, results.get("workload", "?"),
                                          results.get("target", "?"), results.get("seed", "?"))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>%s</title>" % esc(title), "<style>%s</style></head><body>" % CSS,
             "<h1>%s</h1>" % esc(title),
             summary_html(results, run, ops, intervals, end_time, len(events)),
             verdicts_html(results, ops_by_index),
             latency_svgs(ops, intervals, end_time),
             throughput_svg(ops, intervals, end_time),
             resource_svg(resource_log, intervals, end_time) if resource_log else "",
             timeline_html(ops, rows, intervals, failing, end_time),
             "<script>%s</script></body></html>" % JS]
    return "\n".join(parts)


def write_report(run_dir, out=None):
    """Writes run_dir/report.html (or `out`) from the run folder's files; returns its path."""
    events = read_jsonl(os.path.join(run_dir, "history.jsonl"))
    results = read_json(os.path.join(run_dir, "results.json"))
    nemesis_log = read_jsonl(os.path.join(run_dir, "nemesis.jsonl"))
    run = read_json(os.path.join(run_dir, "run.json"))
    resource_log = read_jsonl(os.path.join(run_dir, "resource.jsonl"))
    text = build_report(events, results, nemesis_log, run, resource_log)
    path = out or os.path.join(run_dir, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------
# Headless Chromium (the test, and --screenshot)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _chromium_args(chromium, profile_dir):
    return [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--disable-dev-shm-usage", "--user-data-dir=" + profile_dir]


def render_dom(path, profile_dir, timeout=120):
    """The DOM of file `path` after Chromium ran its scripts (--dump-dom), or raises."""
    chromium = find_chromium()
    if not chromium:
        raise RuntimeError("no chromium found (Debian package `chromium`)")
    cmd = _chromium_args(chromium, profile_dir) + ["--dump-dom", "file://" + os.path.abspath(path)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0 or not r.stdout:
        raise RuntimeError("chromium --dump-dom failed (%d): %s"
                           % (r.returncode, r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout.decode("utf-8", errors="replace")


def screenshot(path, png, profile_dir, size=(1400, 2400), timeout=120):
    """Saves a PNG of the report's first screenful(s); returns True when the file exists."""
    chromium = find_chromium()
    if not chromium:
        return False
    cmd = _chromium_args(chromium, profile_dir) + [
        "--hide-scrollbars", "--window-size=%d,%d" % size, "--screenshot=" + os.path.abspath(png),
        "file://" + os.path.abspath(path)]
    subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return os.path.exists(png)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Writes RUN_DIR/report.html for a harness run.")
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="output file (default RUN_DIR/report.html)")
    ap.add_argument("--screenshot", action="store_true",
                    help="also save RUN_DIR/report.png through headless Chromium")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        print("report.py: %s is not a directory" % args.run_dir, file=sys.stderr)
        return 2
    path = write_report(args.run_dir, args.out)
    print(path)
    if args.screenshot:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="latchjep-chromium-") as prof:
            png = os.path.join(args.run_dir, "report.png")
            if screenshot(path, png, prof):
                print(png)
            else:
                print("report.py: no screenshot (chromium missing or failed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
