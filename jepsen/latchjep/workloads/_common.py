"""_common.py — what the session-based workloads share (lock, lock_unfenced, lease, election,
watch): a keep-alive thread for a latch.v1 session or an etcd lease, the external resource
process of the lock workloads and its client, and small gRPC helpers.

Threads: a Keeper runs its own thread and channel; everything else is called from the
calling client thread. Processes: Resource starts jepsen/resource.py and stops it by PID."""
import os
import socket
import subprocess
import sys
import threading
import time

import grpc

from .. import client as clientmod

HERE = os.path.dirname(os.path.abspath(__file__))
RESOURCE = os.path.normpath(os.path.join(HERE, "..", "..", "resource.py"))


def code_of(e):
    try:
        return e.code()
    except Exception:  # noqa: BLE001 - not a grpc error
        return None


def details_of(e):
    try:
        return e.details() or ""
    except Exception:  # noqa: BLE001
        return ""


def server_timed_out(e):
    """The server ended a wait at the deadline and removed the waiter (latch's "lock wait
    timed out"): the Acquire/Campaign certainly holds nothing."""
    return code_of(e) == grpc.StatusCode.DEADLINE_EXCEEDED and "timed out" in details_of(e)


class Keeper:
    """Renews one latch.v1 session (kind "latch") or etcd lease (kind "etcd") every ttl/3
    over its own channel to one endpoint — pinned, like a client connected to one member: if
    that member is paused or cut off, renewals stop and the session expires. pause(seconds)
    stops renewing for a while (a client-side pause, e.g. a GC pause). lost is set once the
    server answers TTL 0 (the session is gone)."""

    def __init__(self, endpoint, ident, ttl, kind="latch"):
        self.ident, self.ttl, self.kind = ident, ttl, kind
        self.channel = grpc.insecure_channel(endpoint, options=clientmod.CHANNEL_OPTIONS)
        pb = clientmod.protos()
        if kind == "latch":
            self._stub = clientmod.Stub(self.channel, "latch.v1.Latch").SessionKeepAlive
            self._req = pb.latch.SessionKeepAliveRequest(session=ident)
        else:
            self._stub = clientmod.Stub(self.channel, "etcdserverpb.Lease").LeaseKeepAlive
            self._req = pb.rpc.LeaseKeepAliveRequest(ID=ident)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._paused_until = 0.0
        self.last_ok = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True, name="keeper-%d" % ident)
        self.thread.start()

    def renew_once(self, timeout):
        """One renewal; returns the TTL the server answered (0: gone). Raises grpc.RpcError."""
        for r in self._stub(iter([self._req]), timeout=timeout):
            return r.ttl_seconds if self.kind == "latch" else r.TTL
        return 0

    def _run(self):
        period = max(0.3, self.ttl / 3.0)
        while not self._stop.wait(period):
            if time.monotonic() < self._paused_until:
                continue
            try:
                ttl = self.renew_once(timeout=period)
            except grpc.RpcError:
                continue
            if ttl <= 0:
                self.lost.set()
                return
            self.last_ok = time.monotonic()

    def pause(self, seconds):
        self._paused_until = time.monotonic() + seconds

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.channel.close()


class Resource:
    """jepsen/resource.py as a child process (see its module text); log in run_dir."""

    def __init__(self, run_dir, mode, t0_ns):
        self.log_path = os.path.join(run_dir, "resource.jsonl")
        self.proc = subprocess.Popen(
            [sys.executable, RESOURCE, "--log", self.log_path, "--mode", mode,
             "--t0-ns", str(t0_ns)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.stop()
            raise RuntimeError("resource.py did not start: %r" % line)
        host, port = line[1].rsplit(":", 1)
        self.addr = (host, int(port))

    def write(self, token, seq, process, timeout=5.0):
        """(accepted, highest before) from the resource; raises OSError when unreachable."""
        with socket.create_connection(self.addr, timeout=timeout) as s:
            s.sendall(b"WRITE %d %d %s\n" % (token, seq, str(process).encode()))
            f = s.makefile("rb")
            ans = f.readline().decode("ascii", "replace").split()
        if len(ans) != 2 or ans[0] not in ("OK", "REJECT"):
            raise OSError("resource answered %r" % ans)
        return ans[0] == "OK", int(ans[1])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def sleep_until_stop(ctx, seconds):
    """Sleeps up to seconds, less when the client phase ends."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not ctx.stopping():
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def arg(ctx, name, default):
    v = getattr(getattr(ctx, "args", None), name, None)
    return default if v is None else v
