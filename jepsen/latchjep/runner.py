"""runner.py — one harness run: the cluster, the nemesis, the client threads of a workload,
heal-and-recover, the workload's final operations, the log scan, the checkers and the report.
jepsen/run is its command line; docs/jepsen.md describes a run, docs/decisions/jepsen.md the
run folder and the workload interface (repeated here).

A workload is a module jepsen/latchjep/workloads/<name>.py with

    NAME = "register"
    TARGETS = ("latch", "etcd")           # targets it runs against
    CHECKERS = ("linearizable", "stats")   # modules of jepsen/latchjep/checkers: check(history)
    IDEMPOTENT = {"read"}                  # fs that change nothing: a failed one is "fail"
    def setup(ctx): ...                    # optional, once before the clients start
    def op(ctx, process, rng): return f, key, value          # the next invocation
    def invoke(ctx, client, op): return "ok", value           # or ("fail", value, error)
    def final(ctx, clients): ...           # optional, after heal-and-recover (final reads)
    def worker(ctx, thread, client): ...   # optional: replaces the op/invoke loop of a thread
    def teardown(ctx): ...                 # optional, after the final phase
    CHECKER_OPTS = {"linearizable": {...}} # optional keyword arguments per checker

invoke() may raise: a grpc.RpcError is classified (client.classify: "fail" when the op
certainly did not happen, else "info"; any f in IDEMPOTENT always "fail"), any other exception
is "info" with its repr as the error. A process whose op ended "info" is retired: its thread
continues as process + concurrency (Jepsen's rule). ctx.execute(client, process, f, key, value,
fn) records one operation around fn(client) the same way, for worker() and final().
"""
import importlib
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import traceback

from . import client as clientmod
from . import history as historymod
from .cluster import Cluster
from .nemesis import Nemesis, Options, load_script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class FailOp(Exception):
    """Raised inside an op function: the op certainly did not take effect (type fail)."""

    def __init__(self, error, value=None):
        super().__init__(error)
        self.error, self.value = error, value


class Context:
    """What a workload sees: cluster, history, args, rng(thread), deadline, state (a dict for
    the workload's own use, with state_lock), endpoints(), new_client(thread), stopping(),
    execute(), log()."""

    def __init__(self, args, cluster, history, run_dir, seed):
        self.args, self.cluster, self.history, self.run_dir = args, cluster, history, run_dir
        self.seed = seed
        self.concurrency = args.concurrency
        self.deadline = None
        self.state = {}
        self.state_lock = threading.Lock()
        self.workload = None
        self._stop = threading.Event()
        self.op_timeout = args.op_timeout
        self._final_process = 1000000

    def final_process(self):
        """A process number for one final operation (never used by a client thread)."""
        with self.state_lock:
            self._final_process += 1
            return self._final_process

    def log(self, text):
        print(text, flush=True)

    def endpoints(self):
        return self.cluster.endpoints()

    def rng(self, thread):
        """A random.Random for one thread, derived from the run's seed."""
        return random.Random("%s/%s" % (self.seed, thread))

    def new_client(self, thread):
        """A client starting at node thread % N (threads spread over the nodes)."""
        return clientmod.Client(self.endpoints(), first=thread, timeout=self.op_timeout)

    def backoff(self, rng):
        """Sleeps after an operation a node could not serve (--error-backoff: mean seconds)."""
        mean = getattr(self.args, "error_backoff", 0.2) or 0
        if mean > 0:
            self._stop.wait(rng.uniform(0, 2 * mean))

    def stopping(self):
        return self._stop.is_set() or time.monotonic() >= self.deadline

    def classify(self, f, e):
        idem = f in getattr(self.workload, "IDEMPOTENT", ())
        return clientmod.classify(e, idempotent=idem)

    def execute(self, client, process, f, key, value, fn, **extra):
        """Records invoke, runs fn(client) -> ok value (FailOp: fail; errors classified),
        records the completion and returns it. Moves the client to another node after an
        UNAVAILABLE/DEADLINE_EXCEEDED answer."""
        op = self.history.invoke(process, f, key, value, node=client.node, **extra)
        try:
            res = fn(client)
        except FailOp as e:
            return self.history.complete(op, "fail", e.value, error=e.error)
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            client.failed(e)
            kind = self.classify(f, e)
            text = clientmod.error_text(e) if hasattr(e, "code") else repr(e)
            done = self.history.complete(op, kind, None, error=text)
            return dict(done, rpc_error=True)  # the returned copy only, not the history
        return self._complete(op, res)

    def _complete(self, op, res):
        if isinstance(res, dict) and "type" in res:
            extra = {k: v for k, v in res.items() if k not in ("type", "value", "error")}
            return self.history.complete(op, res["type"], res.get("value"), res.get("error"),
                                         **extra)
        if isinstance(res, tuple):
            if res[0] == "ok":
                return self.history.complete(op, "ok", res[1] if len(res) > 1 else None)
            return self.history.complete(op, res[0], res[1] if len(res) > 1 else None,
                                         error=res[2] if len(res) > 2 else res[0])
        return self.history.complete(op, "ok", res)


def default_worker(ctx, thread, client):
    """The op/invoke loop of one client thread until the deadline."""
    w = ctx.workload
    rng = ctx.rng(thread)
    process = thread
    while not ctx.stopping():
        f, key, value = w.op(ctx, process, rng)
        if f is None:  # the workload has nothing more for this process
            break
        done = ctx.execute(client, process, f, key, value,
                           lambda cl, _f=f, _k=key, _v=value: w.invoke(
                               ctx, cl, {"process": process, "f": _f, "key": _k,
                                         "value": _v}))
        if done["type"] == "info":
            process += ctx.concurrency
        if done.get("rpc_error") or done["type"] == "info":
            # the node could not serve: back off a little, as a real client would, instead
            # of turning a leaderless second into hundreds of indeterminate operations
            ctx.backoff(rng)
        if getattr(ctx.args, "op_delay", 0):
            time.sleep(rng.uniform(0, 2 * ctx.args.op_delay))


def load_workload(name):
    try:
        return importlib.import_module("latchjep.workloads." + name)
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith(name):
            return None
        raise


def workload_names():
    d = os.path.join(HERE, "workloads")
    return sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_"))


def harness_stats(history):
    """The harness's own operation counts — NOT a correctness check; used in place of a
    checker module that is missing, so the run still reports what happened."""
    counts = {}
    for ev in history:
        if ev.get("process") == "nemesis" or ev["type"] == "invoke":
            continue
        counts.setdefault(ev["f"], {}).setdefault(ev["type"], 0)
        counts[ev["f"]][ev["type"]] += 1
    return counts


def run_checkers(workload, events, extra_results, log=print):
    """{"name": result} for every checker of the workload; a missing module gives a result
    with valid "unknown" and the reason."""
    out = {}
    opts = getattr(workload, "CHECKER_OPTS", {})
    for name in workload.CHECKERS:
        try:
            mod = importlib.import_module("latchjep.checkers." + name)
        except ModuleNotFoundError as e:
            out[name] = {"valid": "unknown",
                         "error": "checker module latchjep.checkers.%s is missing (%s)"
                                  % (name, e),
                         "harness_stats": harness_stats(events)}
            continue
        t = time.monotonic()
        try:
            res = mod.check(events, **opts.get(name, {}))
        except Exception as e:  # noqa: BLE001 - a checker crash is a verdict too
            res = {"valid": "unknown", "error": "checker raised: %r" % e,
                   "traceback": traceback.format_exc()}
        if not isinstance(res, dict) or "valid" not in res:
            res = {"valid": "unknown", "error": "checker returned %r" % (res,)}
        res.setdefault("seconds", round(time.monotonic() - t, 3))
        out[name] = res
    out.update(extra_results)
    return out


def verdict_line(name, res):
    v = res.get("valid")
    word = "VALID" if v is True else "INVALID" if v is False else "UNKNOWN"
    why = res.get("summary") or res.get("reason") or res.get("error")
    if why is None and v is False:
        an = res.get("anomalies") or res.get("crashes") or res.get("reports")
        if an:
            first = an[0]
            why = first if isinstance(first, str) else json.dumps(first)[:200]
    if why is None and name == "stats":
        why = None
    return "%s: %s%s" % (name, word, " (%s)" % str(why)[:300] if why else "")


def git_version():
    try:
        p = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(args):
    """One run; returns the process exit status (0 every checker valid, 1 not, 2 refused or
    the harness failed)."""
    w = load_workload(args.workload)
    if w is None:
        print("jepsen: unknown workload %r (have: %s)"
              % (args.workload, ", ".join(workload_names())), file=sys.stderr)
        return 2
    if args.target not in getattr(w, "TARGETS", ("latch", "etcd")):
        print("jepsen: workload %s does not run against %s (only %s)"
              % (args.workload, args.target, ", ".join(w.TARGETS)), file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = args.out or os.path.join(ROOT, "jepsen", "store",
                                       "%s-%s-%d" % (args.workload, stamp, seed))
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        print("jepsen: the run folder %s is not empty (its nodes' data dirs would be reused): "
              "pick another --out" % run_dir, file=sys.stderr)
        return 2
    os.makedirs(run_dir, exist_ok=True)
    from . import nemesis as nemmod
    faults = nemmod.parse(args.nemesis)
    script = load_script(args.nemesis_script) if args.nemesis_script else None
    if script is not None:
        for ev in script:
            f = ev["f"].split("-", 1)[-1]
            if f not in faults:
                faults.append(f)
    print("# jepsen: workload %s, target %s, nemesis %s, %d nodes, concurrency %d, %ss, "
          "seed %d\n# run folder %s" % (args.workload, args.target, ",".join(faults) or "none",
                                        args.nodes, args.concurrency, args.time, seed,
                                        run_dir), flush=True)
    cluster = None
    nem = None
    hist = None
    ctx = None
    torn_down = True
    results = {}
    status = 2
    t_start = time.time()
    try:
        node_env = {}
        if args.teeth:
            node_env["LATCH_TEETH"] = args.teeth
        cluster = Cluster(args.target, args.nodes, run_dir, binary=args.latchd,
                          use_netns=not args.no_netns, faketime="clock" in faults,
                          node_args=args.node_arg or (), node_env=node_env)
        hist = historymod.History(os.path.join(run_dir, "history.jsonl"))
        opts = Options()
        if args.pause_seconds:
            opts.pause_seconds = args.pause_seconds
        if args.nemesis_interval:
            opts.interval = (args.nemesis_interval / 2.0, args.nemesis_interval * 1.5)
        nem = Nemesis(cluster, hist, faults, random.Random(seed), os.path.join(run_dir,
                                                                              "nemesis.jsonl"),
                      opts, script=script)
        refused = nem.refusals()
        skipped = [] if refused else nem.skips()
        for note in skipped:
            print("# " + note, flush=True)
        run_info = {"argv": sys.argv, "workload": args.workload, "target": args.target,
                    "seed": seed, "nemesis": faults, "time": args.time,
                    "concurrency": args.concurrency, "nodes": args.nodes,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
                    "cluster": cluster.describe(), "binary_version": cluster.copy_binary_info(),
                    "git": git_version(), "python": platform.python_version(),
                    "teeth": args.teeth, "refused": refused, "skipped": skipped}
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump(run_info, f, indent=1)
        if refused:
            for r in refused:
                print("jepsen: refused: " + r, file=sys.stderr)
            return 2
        cluster.start()
        print("# cluster up (%s): %s, leader n%d" % (cluster.mode, ", ".join(
            cluster.endpoints()), (cluster.leader() or 0) + 1), flush=True)
        ctx = Context(args, cluster, hist, run_dir, seed)
        ctx.workload = w
        ctx.deadline = time.monotonic() + args.time
        torn_down = False  # teardown() runs once, also when the run fails
        if hasattr(w, "setup"):
            w.setup(ctx)
        nem.start_thread(ctx.deadline)
        threads = []
        errors = []

        def thread_main(i):
            cl = ctx.new_client(i)
            try:
                (getattr(w, "worker", None) or default_worker)(ctx, i, cl)
            except Exception:  # noqa: BLE001 - a harness bug: reported, run marked failed
                errors.append(traceback.format_exc())
            finally:
                cl.close()
        for i in range(args.concurrency):
            t = threading.Thread(target=thread_main, args=(i,), name="client-%d" % i,
                                 daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=max(0.0, ctx.deadline - time.monotonic()) + args.op_timeout + 60)
        ctx._stop.set()
        nem.join()
        print("# clients done: %s" % json.dumps(hist.counts), flush=True)
        ready = nem.recover()
        print("# recovered: %s" % ("ready" if ready else "NOT ready"), flush=True)
        if hasattr(w, "final"):
            finals = [ctx.new_client(args.concurrency + i) for i in range(1)]
            try:
                w.final(ctx, finals)
            except Exception:  # noqa: BLE001 - a harness bug: reported, run not valid
                errors.append(traceback.format_exc())
            finally:
                for cl in finals:
                    cl.close()
        if hasattr(w, "teardown"):
            torn_down = True
            w.teardown(ctx)
        hist.close()
        cluster.stop_all()
        scan = cluster.scan()
        extra = {"nodes": scan}
        if errors:
            extra["harness"] = {"valid": "unknown", "errors": errors}
        if not ready:
            extra["recovery"] = {"valid": False,
                                 "error": "the cluster did not recover after heal (no "
                                          "leader or a node not answering within 90 s)"}
        applied = {}
        for f in nem.applied:
            applied[f] = applied.get(f, 0) + 1
        extra["nemesis"] = {"valid": "unknown" if nem.notes else True, "applied": applied,
                            "fault_errors": nem.fault_errors, "errors": nem.notes,
                            "skipped": skipped,
                            "summary": "faults applied: %s%s" % (
                                ", ".join("%s x%d" % kv for kv in sorted(applied.items()))
                                or "none",
                                "; %d failed to apply" % len(nem.fault_errors)
                                if nem.fault_errors else "")}
        if script is None and faults and not nem.applied:
            print("# note: no fault started within --time (a fault needs more time than the "
                  "nemesis interval)", flush=True)
        events = historymod.read(os.path.join(run_dir, "history.jsonl"))
        results = run_checkers(w, events, extra)
        valid = all(r.get("valid") is True for r in results.values())
        if not any(r.get("valid") is False for r in results.values()) and not valid:
            valid = "unknown"
        doc = {"valid": valid, "workload": args.workload, "target": args.target, "seed": seed,
               "checkers": results}
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
        for name, res in results.items():
            print(verdict_line(name, res), flush=True)
        try:
            rep = importlib.import_module("latchjep.report")
            path = rep.write_report(run_dir)
            print("# report %s" % (path or os.path.join(run_dir, "report.html")))
        except ModuleNotFoundError:
            print("# report: latchjep.report is not there yet")
        except Exception as e:  # noqa: BLE001 - the report is not a verdict
            print("# report failed: %r" % e)
        status = 0 if valid is True else 1
        print("%s %s" % ("VALID" if valid is True else "INVALID" if valid is False
                         else "UNKNOWN", run_dir), flush=True)
        return status
    except KeyboardInterrupt:
        print("jepsen: interrupted; stopping the nodes", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as e:  # no cluster, a tool missing, a bad nemesis
        print("jepsen: %s" % e, file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            ctx._stop.set()
        if not torn_down and hasattr(w, "teardown"):
            try:
                w.teardown(ctx)
            except Exception:  # noqa: BLE001 - the run has failed already
                traceback.print_exc()
        if nem is not None:
            nem.join(timeout=15)
            nem.close()
        if hist is not None:
            hist.close()
        if cluster is not None:
            cluster.close()
