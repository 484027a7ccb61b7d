#!/usr/bin/python3
"""resource.py — the external resource of the lock workloads (docs/decisions/jepsen.md,
"The external resource"): a small TCP server standing for the storage a lock protects.

    jepsen/resource.py --log RUN_DIR/resource.jsonl --mode fenced|unfenced [--port 0]
                       [--t0-ns N]

prints "listening 127.0.0.1:PORT" once it accepts connections. Protocol: one request line,
one answer line, per connection or several on one connection:

    WRITE <token> <seq> <process>   ->  OK <highest>  |  REJECT <highest>
    HIGHEST                         ->  HIGHEST <highest>

<highest> is the highest token accepted before this request. In fenced mode a write whose
token is lower than the highest accepted one is refused (equal is accepted: one holder
writes several times); in unfenced mode every write is accepted, and the log notes whether
it would have been refused. Every WRITE is one JSON line in the log, in the order the
resource decided them:

    {"time": ns since t0, "token": t, "seq": n, "process": p, "accepted": bool,
     "highest": highest before, "stale": token < highest}

time: time.monotonic_ns() - t0 (t0 from --t0-ns: the harness passes its history's start, so
the log and history.jsonl share one clock; CLOCK_MONOTONIC is one clock for every process
of the machine). Stops on SIGTERM/SIGINT."""
import argparse
import json
import signal
import socketserver
import sys
import threading
import time


class State:
    def __init__(self, log_path, fenced, t0):
        self.lock = threading.Lock()
        self.highest = 0
        self.fenced = fenced
        self.t0 = t0
        self.log = open(log_path, "a", encoding="utf-8")

    def write(self, token, seq, process):
        with self.lock:
            before = self.highest
            stale = token < before
            accepted = not (self.fenced and stale)
            if accepted and token > self.highest:
                self.highest = token
            rec = {"time": time.monotonic_ns() - self.t0, "token": token, "seq": seq,
                   "process": process, "accepted": accepted, "highest": before,
                   "stale": stale}
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()
            return accepted, before


def parse_int(s):
    v = int(s)
    if v < 0 or v > (1 << 63) - 1:
        raise ValueError("out of range")
    return v


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        st = self.server.state
        while True:
            line = self.rfile.readline(256)
            if not line:
                return
            parts = line.decode("ascii", "replace").split()
            try:
                if len(parts) == 4 and parts[0] == "WRITE":
                    token, seq = parse_int(parts[1]), parse_int(parts[2])
                    process = parts[3][:32]
                    try:
                        process = int(process)
                    except ValueError:
                        pass
                    ok, before = st.write(token, seq, process)
                    self.wfile.write(("%s %d\n" % ("OK" if ok else "REJECT", before)).encode())
                elif len(parts) == 1 and parts[0] == "HIGHEST":
                    with st.lock:
                        h = st.highest
                    self.wfile.write(("HIGHEST %d\n" % h).encode())
                else:
                    self.wfile.write(b"ERROR bad request\n")
            except ValueError:
                self.wfile.write(b"ERROR bad number\n")
            self.wfile.flush()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--mode", choices=("fenced", "unfenced"), default="fenced")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--t0-ns", type=int, default=None)
    args = ap.parse_args()
    t0 = args.t0_ns if args.t0_ns is not None else time.monotonic_ns()
    srv = Server((args.host, args.port), Handler)
    srv.state = State(args.log, args.mode == "fenced", t0)

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("listening %s:%d" % srv.server_address[:2], flush=True)
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    srv.state.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
