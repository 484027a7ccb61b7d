#!/usr/bin/python3
"""Feature test of api/grpc_server.c through grpcio (C-core) and etcdctl (grpc-go).

Usage: /usr/bin/python3 test_grpc_features.py PATH/TO/grpc_echo_server [PATH/TO/make-test-certs.sh]

(make-test-certs.sh defaults to scripts/make-test-certs.sh found from this file.)

Makes throwaway certificates in a temporary directory, starts one echo server with --tls-dir
(h2c, TLS and mTLS ports; stderr captured to a file) and checks:
  bidirectional streaming (Chat: order, half-close, a slow reader with bounded server queue),
  client streaming (Sum), cancellation reaching the handler (Hold + Active), deadlines in
  the middle of streams, metadata (Meta), message size limits on unary and bidi calls, a
  100,000-message server stream, TLS and mTLS (good, rogue and missing client certificates),
  certificate reload at SIGHUP, etcdctl get over h2c/TLS/mTLS, and an etcd Range request
  with invalid protobuf bytes.
At the end the server must still run, exit 0 at SIGTERM, and its stderr must hold no
AddressSanitizer or UBSan report.

Nothing is timed: every wait is a bounded poll for a condition, and failing to reach the
condition within the bound is the failure. Prints one line per check ("ok - ..." /
"FAIL - ..."); exits non-zero if any check failed.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

UNARY = "/latch.test.Echo/Unary"
COUNT = "/latch.test.Echo/Count"
ACTIVE = "/latch.test.Echo/Active"
CHAT = "/latch.test.Echo/Chat"
SUM = "/latch.test.Echo/Sum"
HOLD = "/latch.test.Echo/Hold"
META = "/latch.test.Echo/Meta"
STATS = "/latch.test.Echo/Stats"
RANGE = "/etcdserverpb.KV/Range"

KIB = 1024
MIB = 1024 * 1024
# The server's per-stream queue cap (API_SERVER_MAX_STREAM_QUEUE_DEFAULT), one stream window
# the client may still send after the server paused (INITIAL_WINDOW_SIZE 1 MiB), and slack.
CHAT_QUEUE_BOUND = 1 * MIB + 1 * MIB + 64 * KIB
SERVER_MAX_RECV = 2 * MIB  # API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT: 1.5 MiB + 512 KiB

# Every channel: large messages allowed both ways, no proxy from the environment, and its
# own subchannels (so a "fresh channel" really makes a fresh connection, never one shared
# with an earlier channel of the same target).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * MIB),
    ("grpc.max_send_message_length", 8 * MIB),
    ("grpc.enable_http_proxy", 0),
    ("grpc.use_local_subchannel_pool", 1),
]

failures = []
passed = 0


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
        print(f"ok - {name}" + (f" ({detail})" if detail else ""), flush=True)
    else:
        failures.append(name)
        print(f"FAIL - {name}: {detail}", flush=True)


def err_text(e):
    return f"{e.code()} {e.details()!r}"


def insecure(port):
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)


def secure(port, tls_dir, ca="ca.pem", cert=None, key=None):
    def read(name):
        with open(os.path.join(tls_dir, name), "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None)
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=CHANNEL_OPTIONS)


def unary(ch, path, payload, timeout=10.0, metadata=None):
    fn = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
    return fn(payload, timeout=timeout, metadata=metadata)


def expect_ok(name, ch, path, payload, want=None, timeout=10.0):
    """A unary call must return want (payload when None). Returns True when it did."""
    want = payload if want is None else want
    try:
        got = unary(ch, path, payload, timeout=timeout)
    except grpc.RpcError as e:
        check(name, False, err_text(e))
        return False
    shown = repr(got) if len(got) <= 64 else f"{len(got)} bytes, first mismatch at " \
        f"{first_mismatch(got, want) if len(got) == len(want) else 'length'}"
    check(name, got == want, f"got {shown}")
    return got == want


def expect_code(name, ch, path, payload, code, details=None, details_prefix=None,
                timeout=10.0, metadata=None):
    try:
        got = unary(ch, path, payload, timeout=timeout, metadata=metadata)
    except grpc.RpcError as e:
        ok = e.code() == code
        if details is not None:
            ok = ok and e.details() == details
        if details_prefix is not None:
            ok = ok and (e.details() or "").startswith(details_prefix)
        check(name, ok, err_text(e))
        return
    check(name, False, f"call succeeded: {got[:64]!r}")


def wait_active(ch, want, bound=10.0):
    """Polls Active until it is want (bytes) or bound seconds pass; returns the last value."""
    active = None
    deadline = time.monotonic() + bound
    while True:
        try:
            active = unary(ch, ACTIVE, b"", timeout=5)
        except grpc.RpcError as e:
            active = err_text(e)
        if active == want or time.monotonic() >= deadline:
            return active
        time.sleep(0.05)


class OpenRequests:
    """A request iterator that yields the given messages and then stays open (no half-close)
    until release() is called: the call ends only by the server, a deadline or a cancel."""

    def __init__(self, messages):
        self.messages = list(messages)
        self.gate = threading.Event()

    def __iter__(self):
        yield from self.messages
        self.gate.wait(60)  # bounded: never outlives the test

    def release(self):
        self.gate.set()


def first_mismatch(got, want):
    return next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)


# ---- 1, 2: bidirectional Chat ----

def chat_checks(port):
    with insecure(port) as ch:
        chat = ch.stream_stream(CHAT, request_serializer=None, response_deserializer=None)
        want = [f"msg-{i}".encode() for i in range(1000)]
        got = []
        call = chat(iter(want), timeout=60)
        try:
            for m in call:
                got.append(m)
            code = call.code()
            detail = ""
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        bad = first_mismatch(got, want)
        check("Chat echoes 1000 messages in order, half-close ends with OK",
              code == grpc.StatusCode.OK and len(got) == 1000 and bad is None,
              f"{code} {detail}, {len(got)} messages, first mismatch at {bad}")

        # A slow reader: the generator sends 20,000 x 1 KiB while nothing is read, until the
        # sender stalls (flow control), then everything is read.
        n = 20000
        sent = [0]

        def requests():
            for i in range(n):
                head = f"{i:08d}:".encode()
                yield head + bytes([i % 251]) * (KIB - len(head))
                sent[0] = i + 1

        call = chat(requests(), timeout=120)
        # Wait (bounded, 10 s) until the sender has made no progress for 1 s, or is done:
        # the server then holds what it could not send. A wait, not an assertion.
        last, still_since = -1, time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cur = sent[0]
            if cur != last:
                last, still_since = cur, time.monotonic()
            elif cur == n or time.monotonic() - still_since >= 1.0:
                break
            time.sleep(0.05)
        stalled_at = sent[0]
        got = []
        try:
            for m in call:
                got.append(m)
            code = call.code()
            detail = ""
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        bad = None
        for i, m in enumerate(got):
            head = f"{i:08d}:".encode()
            if m != head + bytes([i % 251]) * (KIB - len(head)):
                bad = i
                break
        check("Chat slow reader: 20,000 x 1 KiB all echoed in order, OK",
              code == grpc.StatusCode.OK and len(got) == n and bad is None,
              f"{code} {detail}, {len(got)} messages, first mismatch at {bad}, "
              f"sender had sent {stalled_at} before reading began")
        try:
            stats = unary(ch, STATS, b"")
            queued = int(stats)
            check("Chat server queue stays bounded", queued <= CHAT_QUEUE_BOUND,
                  f"largest queued {queued} bytes, bound {CHAT_QUEUE_BOUND}")
        except (grpc.RpcError, ValueError) as e:
            check("Chat server queue stays bounded", False, f"Stats: {e!r}")


# ---- 3: client-streaming Sum ----

def sum_checks(port):
    with insecure(port) as ch:
        fn = ch.stream_unary(SUM, request_serializer=None, response_deserializer=None)
        msgs = [bytes([i % 256]) * ((i * 131) % 5000) for i in range(500)]
        want = f"{len(msgs)} {sum(len(m) for m in msgs)}".encode()
        try:
            got = fn(iter(msgs), timeout=30)
            check("Sum of 500 messages", got == want, f"got {got!r}, want {want!r}")
        except grpc.RpcError as e:
            check("Sum of 500 messages", False, err_text(e))
        try:
            got = fn(iter([]), timeout=30)
            check("Sum of 0 messages is \"0 0\"", got == b"0 0", f"got {got!r}")
        except grpc.RpcError as e:
            check("Sum of 0 messages is \"0 0\"", False, err_text(e))


# ---- 4: cancellation of bidi Hold ----

def hold_checks(port):
    with insecure(port) as ch:
        hold = ch.stream_stream(HOLD, request_serializer=None, response_deserializer=None)
        reqs = OpenRequests([b"hello"])
        call = hold(iter(reqs), timeout=60)
        active = wait_active(ch, b"1")
        check("Hold is live on the server", active == b"1", f"Active {active!r}")
        call.cancel()
        code = call.code()
        reqs.release()
        check("cancelled Hold reports CANCELLED", code == grpc.StatusCode.CANCELLED, f"{code}")
        active = wait_active(ch, b"0")
        check("client cancel reaches the Hold handler (Active 0)", active == b"0",
              f"Active {active!r}")

        # 20 Holds on their own channel, then that channel is closed.
        other = insecure(port)
        hold2 = other.stream_stream(HOLD, request_serializer=None, response_deserializer=None)
        gens = [OpenRequests([b"x"]) for _ in range(20)]
        calls = [hold2(iter(g), timeout=60) for g in gens]
        active = wait_active(ch, b"20")
        check("20 Holds live on the server", active == b"20", f"Active {active!r}")
        other.close()
        for g in gens:
            g.release()
        codes = {c.code() for c in calls}
        check("closing the channel ends the 20 Holds on the client",
              codes == {grpc.StatusCode.CANCELLED}, f"codes {codes}")
        active = wait_active(ch, b"0")
        check("channel close reaches all 20 Hold handlers (Active 0)", active == b"0",
              f"Active {active!r}")


# ---- 5: deadlines in the middle of streams ----

def deadline_checks(port):
    with insecure(port) as ch:
        count = ch.unary_stream(COUNT, request_serializer=None, response_deserializer=None)
        got = []
        code = None
        detail = ""
        try:
            for m in count(b"100000000", timeout=1.0):
                got.append(m)
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        bad = first_mismatch(got, [str(i).encode() for i in range(len(got))])
        check("Count with timeout=1.0 ends DEADLINE_EXCEEDED after some messages",
              code == grpc.StatusCode.DEADLINE_EXCEEDED and len(got) > 0 and bad is None,
              f"{detail or code}, {len(got)} messages, first mismatch at {bad}")
        active = wait_active(ch, b"0")
        check("Count producer stops after the deadline (Active 0)", active == b"0",
              f"Active {active!r}")

        chat = ch.stream_stream(CHAT, request_serializer=None, response_deserializer=None)
        reqs = OpenRequests([b"one", b"two"])
        got = []
        code = None
        detail = ""
        try:
            for m in chat(iter(reqs), timeout=1.0):
                got.append(m)
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        reqs.release()
        # The echoes sent before the deadline may or may not arrive in time (not timed here),
        # but whatever arrived is in order.
        check("open Chat with timeout=1.0 ends DEADLINE_EXCEEDED",
              code == grpc.StatusCode.DEADLINE_EXCEEDED and got == [b"one", b"two"][:len(got)],
              f"{detail or code}, got {got!r}")
        expect_ok("Unary healthy after expired streams", ch, UNARY, b"after-deadline")


# ---- 6: metadata ----

def meta_checks(port):
    md = (("token", "abc"), ("hasleader", "true"))
    with insecure(port) as ch:
        for name, want in ((b"token", b"abc"), (b"hasleader", b"true")):
            try:
                got = unary(ch, META, name, metadata=md)
                check(f"Meta {name.decode()} gives {want!r}", got == want, f"got {got!r}")
            except grpc.RpcError as e:
                check(f"Meta {name.decode()} gives {want!r}", False, err_text(e))
        expect_code("Meta of a header not sent gives NOT_FOUND", ch, META, b"x-not-sent",
                    grpc.StatusCode.NOT_FOUND, metadata=md)


# ---- 7: message size limits ----

def size_checks(port):
    with insecure(port) as ch:
        payload = os.urandom(int(1.9 * MIB))
        expect_ok("Unary echoes 1.9 MiB", ch, UNARY, payload, timeout=30)
        big = int(2.1 * MIB)
        expect_code("Unary 2.1 MiB gives RESOURCE_EXHAUSTED", ch, UNARY, b"\0" * big,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    details=f"grpc: received message larger than max ({big} vs. "
                            f"{SERVER_MAX_RECV})", timeout=30)
        chat = ch.stream_stream(CHAT, request_serializer=None, response_deserializer=None)
        reqs = OpenRequests([b"\0" * big])
        got = []
        code = None
        detail = ""
        call = chat(iter(reqs), timeout=30)
        try:
            for m in call:
                got.append(m)
            code = call.code()
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        reqs.release()
        check("Chat 2.1 MiB message: RESOURCE_EXHAUSTED ends the stream",
              code == grpc.StatusCode.RESOURCE_EXHAUSTED and not got,
              f"{detail or code}, {len(got)} messages")
        expect_ok("Unary healthy after oversized messages", ch, UNARY, b"after-big")


# ---- 8: server streaming ----

def count_checks(port):
    with insecure(port) as ch:
        count = ch.unary_stream(COUNT, request_serializer=None, response_deserializer=None)
        n = 100000
        got = []
        code = grpc.StatusCode.OK
        detail = ""
        try:
            for m in count(str(n).encode(), timeout=60):
                got.append(m)
        except grpc.RpcError as e:
            code, detail = e.code(), err_text(e)
        bad = first_mismatch(got, [str(i).encode() for i in range(n)])
        check("Count 100000 streams every index in order",
              code == grpc.StatusCode.OK and len(got) == n and bad is None,
              f"{detail or code}, {len(got)} messages, first mismatch at {bad}")


# ---- 9: TLS and mTLS ----

def tls_works(name, ch):
    """Unary and a short Chat over ch; two checks."""
    expect_ok(f"{name}: Unary", ch, UNARY, b"over-tls")
    chat = ch.stream_stream(CHAT, request_serializer=None, response_deserializer=None)
    want = [f"t{i}".encode() for i in range(50)]
    try:
        call = chat(iter(want), timeout=10)
        got = list(call)
        check(f"{name}: Chat", got == want and call.code() == grpc.StatusCode.OK,
              f"{call.code()}, {len(got)} messages")
    except grpc.RpcError as e:
        check(f"{name}: Chat", False, err_text(e))


def tls_checks(ports, tls_dir):
    h2c, tls, mtls = ports
    with secure(tls, tls_dir) as ch:
        tls_works("TLS trusting ca.pem", ch)
    with secure(mtls, tls_dir, cert="client.pem", key="client.key") as ch:
        tls_works("mTLS with client.pem", ch)
    for label, cert, key in (("rogue-client.pem", "rogue-client.pem", "rogue-client.key"),
                             ("no client certificate", None, None)):
        with secure(mtls, tls_dir, cert=cert, key=key) as ch:
            expect_code(f"mTLS with {label} fails UNAVAILABLE", ch, UNARY, b"x",
                        grpc.StatusCode.UNAVAILABLE, timeout=10)
        with secure(mtls, tls_dir, cert="client.pem", key="client.key") as ch:
            expect_ok(f"mTLS still serves after {label}", ch, UNARY, b"good")
    with insecure(h2c) as ch:
        expect_ok("h2c still serves after the TLS refusals", ch, UNARY, b"good")


# ---- 10: certificate reload at SIGHUP ----

def reload_checks(ports, tls_dir, child, err_path):
    _, tls, _ = ports
    before = secure(tls, tls_dir)  # trusts ca.pem; connected before the reload
    try:
        if not expect_ok("pre-reload channel connects", before, UNARY, b"before"):
            return
        with open(err_path, "rb") as f:
            reloads_before = f.read().count(b"certificates reloaded")
        shutil.copyfile(os.path.join(tls_dir, "server2.pem"), os.path.join(tls_dir, "server.pem"))
        shutil.copyfile(os.path.join(tls_dir, "server2.key"), os.path.join(tls_dir, "server.key"))
        os.kill(child.pid, signal.SIGHUP)
        reloaded = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and child.poll() is None:
            with open(err_path, "rb") as f:
                text = f.read()
            if text.count(b"certificates reloaded") > reloads_before:
                reloaded = True
                break
            if b"reload failed" in text:
                break
            time.sleep(0.05)
        check("SIGHUP: server prints \"certificates reloaded\"", reloaded,
              f"stderr tail: {tail(err_path)!r}")
        if not reloaded:
            return
        with secure(tls, tls_dir, ca="ca2.pem") as ch:
            expect_ok("after reload: fresh channel trusting ca2.pem works", ch, UNARY, b"new")
        with secure(tls, tls_dir, ca="ca.pem") as ch:
            expect_code("after reload: fresh channel trusting only ca.pem fails UNAVAILABLE",
                        ch, UNARY, b"old", grpc.StatusCode.UNAVAILABLE, timeout=10)
        expect_ok("after reload: the pre-reload connection keeps working", before, UNARY,
                  b"still")
    finally:
        before.close()


# ---- 11: etcdctl ----

def etcdctl(args):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["ETCDCTL_API"] = "3"
    try:
        r = subprocess.run(["etcdctl", "--command-timeout=5s", *args], env=env,
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None, "", "etcdctl ran over 30 s"
    return r.returncode, r.stdout, r.stderr


def etcdctl_checks(ports, tls_dir):
    name = "etcdctl installed"
    if shutil.which("etcdctl") is None:
        check(name, False, "etcdctl not found: install Debian's etcd-client (scripts/deps.sh)")
        return
    check(name, True)
    h2c, tls, mtls = ports
    ca = os.path.join(tls_dir, "ca.pem")
    cert = os.path.join(tls_dir, "client.pem")
    key = os.path.join(tls_dir, "client.key")
    cases = (
        ("h2c", [f"--endpoints=127.0.0.1:{h2c}"]),
        ("TLS", [f"--endpoints=https://127.0.0.1:{tls}", f"--cacert={ca}"]),
        ("mTLS", [f"--endpoints=https://127.0.0.1:{mtls}", f"--cacert={ca}",
                  f"--cert={cert}", f"--key={key}"]),
    )
    for label, eps in cases:
        rc, out, err = etcdctl([*eps, "get", "foo"])
        check(f"etcdctl get foo over {label}", rc == 0 and out == "foo\nhello from latch\n",
              f"exit {rc}, stdout {out!r}, stderr {err[-400:]!r}")
    rc, out, err = etcdctl([*cases[0][1], "-w", "json", "get", "foo"])
    try:
        doc = json.loads(out)
        kv = doc["kvs"][0]
        ok = (rc == 0 and kv["value"] == base64.b64encode(b"hello from latch").decode()
              and kv["key"] == base64.b64encode(b"foo").decode())
        detail = f"kvs[0] {kv!r}"
    except (ValueError, KeyError, IndexError, TypeError) as e:
        ok, detail = False, f"exit {rc}, {e!r}, stdout {out!r}, stderr {err[-400:]!r}"
    check("etcdctl -w json get foo: kvs[0].value is base64(\"hello from latch\")", ok, detail)


# ---- 12: invalid protobuf ----

def bad_protobuf_checks(port):
    with insecure(port) as ch:
        expect_code("Range with invalid protobuf gives INTERNAL unmarshalling error", ch, RANGE,
                    b"\xff\xff\xff", grpc.StatusCode.INTERNAL,
                    details_prefix="grpc: error unmarshalling request")


# ---- server lifecycle ----

def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"<{e}>"
    return "\n".join(lines[-n:])


def start_server(binary, tmp, tls_dir, err_file):
    """Starts the echo server; returns (child, [h2c, tls, mtls] or None)."""
    port_file = os.path.join(tmp, "ports")
    child = subprocess.Popen([binary, "--port-file", port_file, "--tls-dir", tls_dir],
                             stdout=subprocess.DEVNULL, stderr=err_file)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.poll() is None:
        if os.path.exists(port_file):
            with open(port_file) as f:
                lines = f.read().split()
            if len(lines) == 3:
                return child, [int(p) for p in lines]
        time.sleep(0.02)
    return child, None


def stop_server(child):
    """SIGTERM by PID; requires exit status 0 within 10 s (a bound, not a speed check)."""
    if child.poll() is None:
        os.kill(child.pid, signal.SIGTERM)
    try:
        rc = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        rc = child.wait(timeout=10)
        check("server exits after SIGTERM", False, "killed after 10 s")
    how = f"exit {rc}"
    if rc < 0:
        how += f" (killed by {signal.Signals(-rc).name})"
    check("server exit status 0 after SIGTERM", rc == 0, how)


def main():
    if len(sys.argv) not in (2, 3):
        print("usage: test_grpc_features.py PATH/TO/grpc_echo_server [PATH/TO/make-test-certs.sh]",
              file=sys.stderr)
        return 2
    binary = sys.argv[1]
    certs_script = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts",
        "make-test-certs.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tls_dir = os.path.join(tmp, "tls")
        r = subprocess.run(["bash", certs_script, tls_dir], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            check("make-test-certs.sh", False, f"exit {r.returncode}: {r.stderr[-400:]!r}")
            return 1
        err_path = os.path.join(tmp, "server.stderr")
        with open(err_path, "wb") as err_file:
            child, ports = start_server(binary, tmp, tls_dir, err_file)
        try:
            if ports is None:
                check("server started", False,
                      f"no 3-line port file (exit {child.poll()}): {tail(err_path)!r}")
            else:
                h2c = ports[0]
                chat_checks(h2c)
                sum_checks(h2c)
                hold_checks(h2c)
                deadline_checks(h2c)
                meta_checks(h2c)
                size_checks(h2c)
                count_checks(h2c)
                tls_checks(ports, tls_dir)
                etcdctl_checks(ports, tls_dir)  # before the reload: trusts ca.pem
                bad_protobuf_checks(h2c)
                reload_checks(ports, tls_dir, child, err_path)
                with insecure(h2c) as ch:
                    expect_ok("final Unary", ch, UNARY, b"final")
                rc = child.poll()
                check("server alive after checks", rc is None,
                      f"exit {rc}" + (f" (killed by {signal.Signals(-rc).name})"
                                      if rc is not None and rc < 0 else ""))
        finally:
            stop_server(child)
        with open(err_path, "rb") as f:
            text = f.read()
        bad = [m for m in (b"ERROR: AddressSanitizer", b"runtime error:") if m in text]
        check("server stderr has no sanitizer report", not bad, f"found {bad}")
        if bad or failures:
            print("---- server stderr (tail) ----\n" + tail(err_path, 80), flush=True)
    if failures:
        print(f"test_grpc_features: FAILED {len(failures)} of {passed + len(failures)} checks: "
              + "; ".join(failures))
        return 1
    print(f"test_grpc_features: OK, {passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
