#!/usr/bin/python3
"""Integration test of api/grpc_server.c through grpcio (C-core) and raw sockets.

Usage: /usr/bin/python3 test_grpc_python.py PATH/TO/grpc_echo_server

Starts the echo server as a child on an ephemeral port, runs the unary checks, then stops
the child with SIGTERM by PID and requires exit status 0 (a clean close; under ASan also no
leaks). Prints one summary line; exits non-zero on any failure.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

UNARY = "/latch.test.Echo/Unary"
LATER = "/latch.test.Echo/Later"
FAIL = "/latch.test.Echo/Fail"
NEVER = "/latch.test.Echo/Never"
COUNT = "/latch.test.Echo/Count"
ACTIVE = "/latch.test.Echo/Active"
MIB = 1024 * 1024

failures = []
passed = 0


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")
        print(f"FAIL {name}: {detail}", file=sys.stderr)


def call(channel, path, payload, timeout=10.0):
    fn = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    return fn(payload, timeout=timeout)


def expect_code(channel, name, path, payload, code, details=None, timeout=10.0):
    try:
        call(channel, path, payload, timeout=timeout)
    except grpc.RpcError as e:
        ok = e.code() == code and (details is None or e.details() == details)
        check(name, ok, f"got {e.code()} {e.details()!r}")
        return
    check(name, False, "call succeeded")


def raw_malformed_peers(port):
    """A bad preface and a garbage frame after a good preface: only that connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 100)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            check("bad preface closes connection", False, "no close within 5 s")
            return
        check("bad preface closes connection", True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        # A WINDOW_UPDATE on stream 0 with a bad length (3 instead of 4): FRAME_SIZE_ERROR.
        garbage = b"\x00\x00\x03\x08\x00\x00\x00\x00\x00\x00\x00\x01"
        s.sendall(preface + settings + garbage)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            check("garbage frame closes connection", False, "no close within 5 s")
            return
        types = []
        off = 0
        while off + 9 <= len(data):
            length = int.from_bytes(data[off:off + 3], "big")
            types.append(data[off + 3])
            off += 9 + length
        check("server SETTINGS first", types[:1] == [4], f"frame types {types}")
        check("garbage frame gets GOAWAY", 7 in types, f"frame types {types}")


def curl_has_http2():
    try:
        out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "http2" in out.lower()


def curl_h2(port, path, method, content_type, body=None, extra=()):
    """One prior-knowledge h2c request; returns (http status, header text) or (None, err)."""
    args = ["curl", "-s", "--http2-prior-knowledge", "--max-time", "5", "-D", "-",
            "-o", "/dev/null", "-X", method, "-H", f"content-type: {content_type}"]
    for h in extra:
        args += ["-H", h]
    if body is not None:
        args += ["--data-binary", "@-"]
    args.append(f"http://127.0.0.1:{port}{path}")
    r = subprocess.run(args, input=body or b"", capture_output=True)
    head = r.stdout.decode("latin-1")
    first = head.split("\r\n", 1)[0].split()
    if r.returncode != 0 or len(first) < 2:
        return None, f"curl exit {r.returncode}: {r.stderr.decode(errors='replace')!r}"
    return int(first[1]), head.lower()


def curl_checks(port):
    """Non-gRPC requests (grpc-go's 405/415) and the server's own deadline, over raw h2c."""
    # Debian's curl (scripts/deps.sh) is built with nghttp2: without HTTP/2 the test fails
    # rather than skipping these checks.
    if not curl_has_http2():
        check("curl has HTTP/2 support", False, "install Debian's curl (scripts/deps.sh)")
        return
    msg = b"\0\0\0\0\x01x"
    st, head = curl_h2(port, UNARY, "GET", "application/grpc")
    check("GET gives HTTP 405", st == 405, f"{st} {head!r}")
    # Without a body: the server answers these at the request headers, and when the body is
    # still on its way it then resets the stream with NO_ERROR (RFC 9113 §8.1, as grpc-go
    # does), which curl reports as an error once it has stopped sending.
    st, head = curl_h2(port, UNARY, "POST", "text/plain")
    check("text/plain gives HTTP 415", st == 415, f"{st} {head!r}")
    st, head = curl_h2(port, UNARY, "POST", "application/grpcx")
    check("application/grpcx gives HTTP 415", st == 415, f"{st} {head!r}")
    st, head = curl_h2(port, UNARY, "POST", "application/grpc+proto", body=msg,
                       extra=("te: trailers",))
    check("application/grpc+proto accepted", st == 200 and "grpc-status: 0" in head,
          f"{st} {head!r}")
    # curl has no gRPC deadline of its own, so a DEADLINE_EXCEEDED here came from the server.
    st, head = curl_h2(port, NEVER, "POST", "application/grpc", body=msg,
                       extra=("te: trailers", "grpc-timeout: 100m"))
    check("server enforces grpc-timeout", st == 200 and "grpc-status: 4" in head
          and "grpc-message: deadline exceeded" in head, f"{st} {head!r}")


def count_stream(ch, n, slow=False, timeout=60):
    """Calls Count(n); returns (messages, error text or None)."""
    fn = ch.unary_stream(COUNT, None, None)
    got = []
    try:
        for i, msg in enumerate(fn(str(n).encode(), timeout=timeout)):
            got.append(msg)
            if slow and i % 1000 == 999:
                time.sleep(0.001)
    except grpc.RpcError as e:
        return got, f"{e.code()} {e.details()!r}"
    return got, None


def stream_checks(ch, pid):
    """Server streaming (Count): many messages in order, none, a slow reader, a cancel."""
    for n, slow in ((100000, False), (0, False), (20000, True)):
        name = f"Count {n}{' slow reader' if slow else ''}"
        got, err = count_stream(ch, n, slow=slow)
        want = [str(i).encode() for i in range(n)]
        bad = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        check(name, err is None and len(got) == n and bad is None,
              f"err {err}, {len(got)} messages, first mismatch at {bad}")
    fn = ch.unary_stream(COUNT, None, None)
    it = fn(b"1000000", timeout=60)
    got = []
    code = None
    try:
        for msg in it:
            got.append(msg)
            if len(got) == 10:
                it.cancel()
    except grpc.RpcError as e:
        code = e.code()
    check("Count cancelled after 10 gives CANCELLED", code == grpc.StatusCode.CANCELLED
          and got[:10] == [str(i).encode() for i in range(10)], f"{code}, {len(got)} messages")
    # The producer must notice the reset and stop: wait (bounded, 10 s) until the server
    # reports no Count producer running. A condition, not a speed: nothing is timed.
    active = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        active = call(ch, ACTIVE, b"")
        if active == b"0":
            break
        time.sleep(0.05)
    check("server stops producing after cancel", active == b"0", f"active producers {active!r}")
    try:
        check("Unary healthy after cancelled stream", call(ch, UNARY, b"ok") == b"ok")
    except grpc.RpcError as e:
        check("Unary healthy after cancelled stream", False, f"{e.code()} {e.details()!r}")


def run_checks(port, pid):
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as ch:
        # The 1.9 MiB echo and the 200 concurrent calls below also cover the per-connection
        # output cap (max_conn_output_bytes, 4 MiB): writes resume from write_cb after a stall.
        for n in (0, 10, int(1.9 * MIB)):
            payload = os.urandom(n)
            try:
                got = call(ch, UNARY, payload)
                check(f"Unary echoes {n} bytes", got == payload, f"got {len(got)} bytes")
            except grpc.RpcError as e:
                check(f"Unary echoes {n} bytes", False, f"{e.code()} {e.details()!r}")
        try:
            got = call(ch, LATER, b"later-payload")
            check("Later echoes", got == b"later-payload", repr(got))
        except grpc.RpcError as e:
            check("Later echoes", False, f"{e.code()} {e.details()!r}")

        unary = ch.unary_unary(UNARY, request_serializer=None, response_deserializer=None)
        later = ch.unary_unary(LATER, request_serializer=None, response_deserializer=None)
        futures = []
        for i in range(200):
            payload = f"req-{i}".encode() * (1 + i % 7)
            fn = later if i % 2 else unary
            futures.append((payload, fn.future(payload, timeout=20)))
        bad = 0
        first_err = ""
        for payload, fut in futures:
            try:
                if fut.result() != payload:
                    bad += 1
                    first_err = first_err or "payload mismatch"
            except grpc.RpcError as e:
                bad += 1
                first_err = first_err or f"{e.code()} {e.details()!r}"
        check("200 concurrent calls", bad == 0, f"{bad} failed, first: {first_err}")

        expect_code(ch, "Fail gives INVALID_ARGUMENT", FAIL, b"x",
                    grpc.StatusCode.INVALID_ARGUMENT, details="bad thing: \u00e9%\n")
        expect_code(ch, "unknown method gives UNIMPLEMENTED", "/latch.test.Echo/Nope", b"",
                    grpc.StatusCode.UNIMPLEMENTED, details="unknown method")
        big = int(2.1 * MIB)
        expect_code(ch, "2.1 MiB gives RESOURCE_EXHAUSTED", UNARY, b"\0" * big,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    details=f"grpc: received message larger than max ({big} vs. {2 * MIB})")
        expect_code(ch, "timeout=0.001 gives DEADLINE_EXCEEDED", LATER, b"slow",
                    grpc.StatusCode.DEADLINE_EXCEEDED, timeout=0.001)
        time.sleep(0.1)  # let the server's Later timer answer the dead call

        expect_code(ch, "Never with timeout=0.3 gives DEADLINE_EXCEEDED", NEVER, b"x",
                    grpc.StatusCode.DEADLINE_EXCEEDED, timeout=0.3)
        never = ch.unary_unary(NEVER, request_serializer=None, response_deserializer=None)
        futs = [never.future(b"n", timeout=0.3) for _ in range(50)]
        codes = [f.exception().code() if f.exception() else None for f in futs]
        check("50 Never calls expire", all(c == grpc.StatusCode.DEADLINE_EXCEEDED
                                           for c in codes), f"codes {set(codes)}")
        try:
            check("Unary healthy after expired calls", call(ch, UNARY, b"ok") == b"ok")
        except grpc.RpcError as e:
            check("Unary healthy after expired calls", False, f"{e.code()} {e.details()!r}")

        stream_checks(ch, pid)

    curl_checks(port)

    raw_malformed_peers(port)

    with grpc.insecure_channel(target) as ch:
        try:
            check("final Unary", call(ch, UNARY, b"final") == b"final")
        except grpc.RpcError as e:
            check("final Unary", False, f"{e.code()} {e.details()!r}")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def start_server(tmp, name, extra=()):
    """Starts the echo server; returns (child, port or None)."""
    port_file = os.path.join(tmp, name)
    child = subprocess.Popen([sys.argv[1], "--port-file", port_file, *extra])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.poll() is None:
        if os.path.exists(port_file):
            with open(port_file) as f:
                text = f.read().strip()
            if text:
                return child, int(text)
        time.sleep(0.02)
    return child, None


def stop_server(child, name, signalled=False):
    """SIGTERM by PID (unless signalled already: a second one kills a draining server);
    requires exit status 0 within 10 s (a bound on the wait, not a speed check)."""
    if child.poll() is None and not signalled:
        os.kill(child.pid, signal.SIGTERM)
    try:
        rc = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        rc = child.wait(timeout=10)
        check(f"{name} exits after SIGTERM", False, "killed after 10 s")
    check(f"{name} exit status 0", rc == 0, f"exit {rc}")


def connection_limit_checks(tmp):
    """--max-connections 4: a 5th connection is closed at once; freeing one lets calls in.
    --max-send-msg-size 1024: a larger answer is refused with grpc-go's status and text."""
    child, port = start_server(tmp, "port-limit",
                               ("--max-connections", "4", "--max-send-msg-size", "1024"))
    if port is None:
        check("limited server started", False, f"no port file (exit {child.poll()})")
        stop_server(child, "limited server")
        return
    held = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(PREFACE)
            s.recv(9)  # the server's SETTINGS: this connection was accepted and counted
            held.append(s)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            try:
                s.sendall(PREFACE)
                closed = s.recv(65536) == b""
            except ConnectionResetError:
                closed = True
            except socket.timeout:
                closed = False
            check("5th connection over the limit is closed", closed)
    finally:
        for s in held:
            s.close()
    # The server frees the slots once it has read the EOFs of the closed connections: wait for
    # that (a bounded wait for a condition) rather than for a fixed time.
    deadline = time.monotonic() + 10
    last = None
    while True:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            try:
                got = call(ch, UNARY, b"ok", timeout=5)
                check("call works below the limit again", got == b"ok", repr(got))
                break
            except grpc.RpcError as e:
                last = f"{e.code()} {e.details()!r}"
        if time.monotonic() > deadline:
            check("call works below the limit again", False, last)
            break
        time.sleep(0.05)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        expect_code(ch, "answer over --max-send-msg-size gives RESOURCE_EXHAUSTED", UNARY,
                    b"x" * 2000, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "grpc: trying to send message larger than max (2000 vs. 1024)")
    stop_server(child, "limited server")


def main():
    if len(sys.argv) != 2:
        print("usage: test_grpc_python.py PATH/TO/grpc_echo_server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        connection_limit_checks(tmp)
        child, port = start_server(tmp, "port")
        ch = None
        pending = []
        signalled = False
        try:
            if port is None:
                check("server started", False, f"no port file (exit {child.poll()})")
            else:
                run_checks(port, child.pid)
                check("server alive after checks", child.poll() is None, f"exit {child.poll()}")
                # Graceful shutdown: SIGTERM while 20 Later calls (50 ms) are in flight; the
                # server drains them (they succeed), refuses new connections, and exits 0.
                ch = grpc.insecure_channel(f"127.0.0.1:{port}")
                call(ch, UNARY, b"warm")  # connected, so the calls reach the server at once
                later = ch.unary_unary(LATER, request_serializer=None,
                                       response_deserializer=None)
                pending = [later.future(b"x", timeout=5) for _ in range(20)]
                time.sleep(0.02)
                os.kill(child.pid, signal.SIGTERM)
                signalled = True
                time.sleep(0.02)
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch2:
                    expect_code(ch2, "new call after shutdown gives UNAVAILABLE", UNARY, b"n",
                                grpc.StatusCode.UNAVAILABLE, timeout=2)
                results = []
                for fut in pending:
                    try:
                        results.append(fut.result())
                    except grpc.RpcError as e:
                        results.append(f"{e.code()} {e.details()!r}")
                pending = []
                bad = [r for r in results if r != b"x"]
                check("in-flight calls drained at SIGTERM", not bad, f"{len(bad)} failed: {bad[:1]}")
        finally:
            stop_server(child, "server", signalled)
            for fut in pending:
                fut.exception()  # completes: OK or UNAVAILABLE, either is fine
            if ch is not None:
                ch.close()
    if failures:
        print(f"test_grpc_python: FAILED {len(failures)} of {passed + len(failures)} checks: "
              + "; ".join(failures))
        return 1
    print(f"test_grpc_python: OK, {passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
