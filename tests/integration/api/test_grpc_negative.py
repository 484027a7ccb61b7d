#!/usr/bin/python3
"""Negative-input test of api/grpc_server.c: raw HTTP/2 over plain sockets, plus grpcio.

Usage: /usr/bin/python3 test_grpc_negative.py PATH/TO/grpc_echo_server

Starts the echo server as a child on an ephemeral port (its stderr goes to a file, checked at
the end for AddressSanitizer/UBSan reports), then feeds it bad prefaces, malformed frames,
invalid HPACK, oversized header lists, CONTINUATION/PING/RST_STREAM floods and too many
concurrent streams, each case bounded by socket timeouts and a fixed count. After every case
a fresh grpcio channel must complete a unary call. At the end the child must still be running;
it is stopped with SIGTERM by PID and must exit 0.

Frames are built by hand with struct. Requests are HPACK-encoded here with literal header
fields without indexing and plain (non-Huffman) strings only, which is valid HPACK; the
server's response header blocks (nghttp2 uses Huffman and the dynamic table) are decoded with
Debian's python3-hpack.

Prints one line per check ("ok - ..." / "FAIL - ..."); exits non-zero if any check failed.
Error codes are the RFC 9113 section 7 ones.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import hpack

UNARY = "/latch.test.Echo/Unary"
LATER = "/latch.test.Echo/Later"
NEVER = "/latch.test.Echo/Never"
RANGE = "/etcdserverpb.KV/Range"

# Frame types (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
               "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Error codes (RFC 9113 section 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)
ERROR_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
               "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
               "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
               "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
# SETTINGS identifiers.
SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS",
                 4: "INITIAL_WINDOW_SIZE", 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE",
                 8: "ENABLE_CONNECT_PROTOCOL"}
SETTINGS_MAX_CONCURRENT_STREAMS = 3
SETTINGS_MAX_HEADER_LIST_SIZE = 6

CLIENT_MAGIC = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_MAX_FRAME_SIZE = 16384
EMPTY_MSG = b"\x00\x00\x00\x00\x00"  # a gRPC length-prefixed message of 0 bytes

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


def err_name(code):
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"0x{code:x}"


# ---- frames and HPACK (encoder) ------------------------------------------------------------

def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame; length overrides the header's length field (to lie about it)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def hpack_int(value, prefix_bits, first=0):
    """RFC 7541 5.1 integer with an N-bit prefix; first holds the bits above the prefix."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    """RFC 7541 5.2 string literal, H=0 (no Huffman)."""
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


def hpack_literal(name, value):
    """RFC 7541 6.2.2 literal header field without indexing, new name (first byte 0x00)."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def encode_headers(pairs):
    return b"".join(hpack_literal(n, v) for n, v in pairs)


def request_headers(port, path, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
            ("te", "trailers"), *extra]


def grpc_msg(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def header_frames(sid, block, end_stream=False, max_frame=DEFAULT_MAX_FRAME_SIZE):
    """HEADERS + CONTINUATION frames carrying block, each payload at most max_frame bytes."""
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        flags = END_HEADERS if i == len(chunks) - 1 else 0
        if i == 0:
            out.append(frame(HEADERS, flags | (END_STREAM if end_stream else 0), sid, chunk))
        else:
            out.append(frame(CONTINUATION, flags, sid, chunk))
    return b"".join(out)


# ---- a raw HTTP/2 client connection ----------------------------------------------------------

class H2:
    """A plain-socket HTTP/2 client: sends what it is given; pump() reads and records frames.

    Recorded: server SETTINGS (non-ACK) as a dict, GOAWAYs as (last_stream_id, code, debug),
    per-stream events ("HEADERS", flags, [(name, value)]) / ("DATA", flags, bytes) /
    ("RST_STREAM", code), PING ACK payloads, and how the connection ended (self.closed:
    None while open, "eof" or "reset")."""

    def __init__(self, port, handshake=True, timeout=5.0, ack=True):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.server_settings = None
        self.goaways = []
        self.streams = {}
        self.ping_acks = []
        self.frame_types = []
        self.closed = None
        self.hdr_block = None  # (sid, flags, bytes) while a header block is being continued
        if handshake:
            self.send(CLIENT_MAGIC + frame(SETTINGS, 0, 0))
            self.pump(lambda: self.server_settings is not None, timeout)
            if self.server_settings is None:
                raise RuntimeError(f"no server SETTINGS (closed={self.closed})")
            if ack:
                self.send(frame(SETTINGS, ACK, 0))

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_some(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.closed = "reset"
            return False
        if not chunk:
            self.closed = "eof"
            return False
        self.buf += chunk
        return True

    def _handle(self, ftype, flags, sid, payload):
        self.frame_types.append(ftype)
        if self.hdr_block is not None and ftype != CONTINUATION:
            raise RuntimeError("server interrupted a header block")
        if ftype == SETTINGS and not flags & ACK:
            settings = {}
            for off in range(0, len(payload) - len(payload) % 6, 6):
                ident, value = struct.unpack(">HI", payload[off:off + 6])
                settings[ident] = value
            if self.server_settings is None:
                self.server_settings = settings
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaways.append((last & 0x7FFFFFFF, code, payload[8:]))
        elif ftype == PING and flags & ACK:
            self.ping_acks.append(payload)
        elif ftype == RST_STREAM:
            self.streams.setdefault(sid, []).append(("RST_STREAM", struct.unpack(">I", payload)[0]))
        elif ftype == DATA:
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            self.streams.setdefault(sid, []).append(("DATA", flags, payload))
        elif ftype == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.hdr_block = (sid, flags, payload)
        elif ftype == CONTINUATION:
            if self.hdr_block is None:
                raise RuntimeError("CONTINUATION without a header block")
            s, f, block = self.hdr_block
            self.hdr_block = (s, f | (flags & END_HEADERS), block + payload)
        if self.hdr_block is not None and self.hdr_block[1] & END_HEADERS:
            s, f, block = self.hdr_block
            self.hdr_block = None
            headers = self.decoder.decode(block)
            self.streams.setdefault(s, []).append(("HEADERS", f, headers))

    def pump(self, until=None, timeout=5.0):
        """Reads and records frames until until() holds, the connection ends, or timeout.
        Returns True when until() held (or, without until, when the connection ended)."""
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                self._handle(ftype, flags, sid, payload)
            if until is not None and until():
                return True
            if self.closed is not None:
                return until is None
            try:
                self._recv_some(deadline)
            except socket.timeout:
                return False

    def stream_done(self, sid):
        for ev in self.streams.get(sid, []):
            if ev[0] == "RST_STREAM" or (ev[0] in ("HEADERS", "DATA") and ev[1] & END_STREAM):
                return True
        return False

    def request(self, sid, path, message=b"", extra=()):
        block = encode_headers(request_headers(self.port, path, extra))
        self.send(header_frames(sid, block) + frame(DATA, END_STREAM, sid, grpc_msg(message)))


def describe_end(c):
    gw = ", ".join(f"GOAWAY(last={l}, {err_name(code)}, {dbg[:60]!r})" for l, code, dbg in
                   c.goaways) or "no GOAWAY"
    return f"{gw}; connection {c.closed or 'still open'}"


def headers_dict(headers):
    return {k: v for k, v in headers}


def trailers_only(evs):
    """The headers of a trailers-only response (one HEADERS frame with END_STREAM, no DATA),
    or None. A RST_STREAM(NO_ERROR) after it is allowed: RFC 9113 8.1 lets a server that has
    answered ask the client to stop sending a request body that way."""
    if evs[1:] not in ([], [("RST_STREAM", NO_ERROR)]):
        return None
    if not evs or evs[0][0] != "HEADERS" or not evs[0][1] & END_STREAM:
        return None
    return headers_dict(evs[0][2])


def fence(c, timeout=5.0):
    """A PING round trip: whatever the server sent before its ACK has been recorded."""
    if c.closed is None:
        c.send(frame(PING, 0, 0, b"fence!!!"))
        c.pump(lambda: b"fence!!!" in c.ping_acks, timeout)


def send_in_thread(sock, data):
    """sendall in a daemon thread; returns (thread, result dict with 'error' once done)."""
    result = {}

    def run():
        try:
            sock.sendall(data)
            result["error"] = None
        except socket.timeout:
            result["error"] = "timeout"
        except OSError as e:
            result["error"] = type(e).__name__
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


# ---- grpcio helpers ---------------------------------------------------------------------------

def call(channel, path, payload, timeout=5.0):
    fn = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    return fn(payload, timeout=timeout)


def healthy(port, child, after):
    """A fresh grpcio channel completes a unary call, and the server process still runs."""
    name = f"server serves a fresh channel after {after}"
    if child.poll() is not None:
        check(name, False, f"server exited with {child.returncode}")
        return
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            got = call(ch, UNARY, b"health")
        check(name, got == b"health", f"got {got!r}")
    except grpc.RpcError as e:
        check(name, False, f"{e.code()} {e.details()!r}")


# ---- cases -------------------------------------------------------------------------------------

def expect_close_no_goaway_or(c, name, code, timeout=5.0):
    """The connection must end (EOF/reset); a GOAWAY, if any, must carry code."""
    c.pump(None, timeout)
    bad = [g for g in c.goaways if g[1] != code]
    check(name, c.closed is not None and not bad,
          f"want close (optional GOAWAY {err_name(code)}); got {describe_end(c)}")


def case_bad_preface(port, child):
    for label, data in (
            ("HTTP/1.1 request as preface", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("preface right for 10 bytes then garbage",
             CLIENT_MAGIC[:10] + b"/9.9\r\n\r\nXY\r\n\r\n" + b"\x00" * 16)):
        c = H2(port, handshake=False)
        try:
            c.send(data)
            expect_close_no_goaway_or(c, f"1 {label}: server closes", PROTOCOL_ERROR)
            types = [FRAME_NAMES[t] if t < len(FRAME_NAMES) else t for t in c.frame_types]
            print(f"#   observed: {describe_end(c)}; frames {types}")
        finally:
            c.close()
        healthy(port, child, f"case 1 ({label})")


def expect_goaway(port, child, name, data, code, timeout=5.0):
    """Sends data after the handshake; wants a GOAWAY with code, then the connection closed."""
    c = H2(port)
    try:
        try:
            c.send(data)
        except OSError as e:
            print(f"#   send failed: {type(e).__name__}")
        c.pump(None, timeout)
        codes = [g[1] for g in c.goaways]
        check(name, codes[:1] == [code] and c.closed is not None,
              f"want GOAWAY {err_name(code)} then close; got {describe_end(c)}")
        print(f"#   observed: {describe_end(c)}")
    finally:
        c.close()
    healthy(port, child, name.split(":")[0])


def case_malformed_frames(port, child):
    expect_goaway(port, child, "2a DATA on stream 0: GOAWAY PROTOCOL_ERROR",
                  frame(DATA, 0, 0, EMPTY_MSG), PROTOCOL_ERROR)
    # A HEADERS frame one byte over MAX_FRAME_SIZE whose block is otherwise a valid request
    # (padded with a long literal), so only its size can be the error.
    base = encode_headers(request_headers(port, UNARY))
    pad_name = b"x-pad"
    want = DEFAULT_MAX_FRAME_SIZE + 1
    vlen = want - len(base) - 1 - len(hpack_str(pad_name)) - 3  # 3: length prefix of vlen
    block = base + hpack_literal(pad_name, b"a" * vlen)
    assert len(block) == want, len(block)
    expect_goaway(port, child, "2b 16385-byte frame over MAX_FRAME_SIZE: GOAWAY FRAME_SIZE_ERROR",
                  frame(HEADERS, END_HEADERS | END_STREAM, 1, block), FRAME_SIZE_ERROR)
    expect_goaway(port, child, "2c HPACK indexed field with index 0: GOAWAY COMPRESSION_ERROR",
                  frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x80"), COMPRESSION_ERROR)
    expect_goaway(port, child,
                  "2c HPACK index 200 beyond both tables: GOAWAY COMPRESSION_ERROR",
                  frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_int(200, 7, 0x80)),
                  COMPRESSION_ERROR)
    expect_goaway(port, child, "2d SETTINGS of length 5: GOAWAY FRAME_SIZE_ERROR",
                  frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"), FRAME_SIZE_ERROR)
    expect_goaway(port, child, "2e connection WINDOW_UPDATE of 0: GOAWAY PROTOCOL_ERROR",
                  frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), PROTOCOL_ERROR)
    # Truncated: a HEADERS frame header declaring 100 bytes, 10 of them, then EOF (SHUT_WR).
    c = H2(port)
    try:
        c.send(frame(HEADERS, END_HEADERS, 1, b"\x00" * 10, length=100))
        c.sock.shutdown(socket.SHUT_WR)
        c.pump(None, 5.0)
        check("2f truncated frame then client EOF: server closes", c.closed is not None,
              describe_end(c))
        print(f"#   observed: {describe_end(c)}")
    finally:
        c.close()
    healthy(port, child, "case 2f")


def case_invalid_protobuf(port, child):
    name = f"3 invalid protobuf to {RANGE}: INTERNAL 'grpc: error unmarshalling request...'"
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            got = call(ch, RANGE, b"\xff\xff\xff")
        check(name, False, f"call succeeded with {got!r}")
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            check(name, False, f"{RANGE} is not served by this echo server yet (got "
                  f"{e.code()} {e.details()!r}); expected once it decodes RangeRequest")
        else:
            check(name, e.code() == grpc.StatusCode.INTERNAL and
                  (e.details() or "").startswith("grpc: error unmarshalling request"),
                  f"got {e.code()} {e.details()!r}")
    healthy(port, child, "case 3")


def case_unknown_method(port, child):
    c = H2(port)
    try:
        c.request(1, "/no.Such/Method", b"")
        c.pump(lambda: c.stream_done(1), 5.0)
        fence(c)
        evs = c.streams.get(1, [])
        h = trailers_only(evs)
        ok = h is not None
        check("4 unknown method over raw h2: trailers-only, :status 200, grpc-status 12",
              ok and h.get(":status") == "200" and h.get("grpc-status") == "12",
              f"events {evs}; {describe_end(c)}")
        print(f"#   observed: {evs}")
    finally:
        c.close()
    healthy(port, child, "case 4")


def case_big_headers(port, child):
    c = H2(port)
    try:
        shown = {SETTING_NAMES.get(k, k): v for k, v in c.server_settings.items()}
        print(f"#   server SETTINGS: {shown}")
        adv = c.server_settings.get(SETTINGS_MAX_HEADER_LIST_SIZE)
        check("5 server advertises SETTINGS_MAX_HEADER_LIST_SIZE 16384", adv == 16384,
              f"advertised {adv}")
        block = encode_headers(request_headers(port, UNARY, [("x-big", "v" * 40 * 1024)]))
        c.send(header_frames(1, block) + frame(DATA, END_STREAM, 1, grpc_msg(b"big")))
        c.pump(lambda: c.stream_done(1), 5.0)
        fence(c)
        evs = c.streams.get(1, [])
        h = trailers_only(evs)
        ok = h is not None
        shown = [(e[0], e[1], {k: v for k, v in e[2] if k != "x-big"}) if e[0] == "HEADERS"
                 else e for e in evs]
        check("5 40 KiB header list: trailers-only with grpc-status 8 (RESOURCE_EXHAUSTED)",
              ok and h.get(":status") == "200" and h.get("grpc-status") == "8",
              f"events {shown}; {describe_end(c)}")
        print(f"#   observed on stream 1: {shown}")
        c.request(3, UNARY, b"after-big")
        c.pump(lambda: c.stream_done(3), 5.0)
        evs = c.streams.get(3, [])
        data = b"".join(e[2] for e in evs if e[0] == "DATA")
        trailers = [headers_dict(e[2]) for e in evs if e[0] == "HEADERS" and e[1] & END_STREAM]
        check("5 same connection then completes a unary call, no GOAWAY",
              not c.goaways and data == grpc_msg(b"after-big") and
              trailers[-1:] and trailers[-1].get("grpc-status") == "0",
              f"events {evs}; {describe_end(c)}")
    finally:
        c.close()
    healthy(port, child, "case 5 (40 KiB header)")

    # An endless header block: HEADERS without END_HEADERS whose last field is a literal with a
    # declared 30000-byte value, then 20,000 one-byte CONTINUATIONs (never END_HEADERS): the
    # block stays valid but unfinished, so only a limit can end it.
    c = H2(port)
    try:
        head = encode_headers(request_headers(port, UNARY)) + b"\x00" + hpack_str("x-pad") + \
            hpack_int(30000, 7)
        one = frame(CONTINUATION, 0, 1, b"a")
        t, res = send_in_thread(c.sock, frame(HEADERS, 0, 1, head) + one * 20000)
        c.pump(None, 10.0)
        check("5 20,000 CONTINUATION frames: server ends the connection",
              c.closed is not None and all(g[1] != NO_ERROR for g in c.goaways),
              describe_end(c))
        print(f"#   observed: {describe_end(c)}; client send: "
              f"{res.get('error', 'still sending')}")
    finally:
        c.close()
        t.join(10)
    healthy(port, child, "case 5 (CONTINUATION flood)")


def case_ping(port, child):
    # Flood: 1,000,000 PINGs written without reading the socket.
    c = H2(port)
    ping = frame(PING, 0, 0, b"flood!!!")
    t, res = send_in_thread(c.sock, ping * 1_000_000)
    try:
        # Meanwhile, another connection is served.
        healthy(port, child, "case 6 (during PING flood)")
        t.join(20)
        sent = res.get("error", "still blocked")
        # Then read what the server sent: it must end with EOF or a reset.
        c.pump(None, 10.0)
        closed = c.closed is not None or sent not in (None, "still blocked", "timeout")
        check("6 1,000,000 PINGs unread: server closes the connection", closed,
              f"client send: {sent}; {describe_end(c)}")
        print(f"#   observed: client send {sent!s}; {describe_end(c)}")
    finally:
        c.close()
        t.join(10)
    healthy(port, child, "case 6 (PING flood)")

    # Polite: 1,000 PINGs in batches of 100, reading the ACKs of each batch before the next.
    # (Not all 1,000 in one write: nghttp2 allows 1,000 unsent ACKs before it calls it a flood,
    # and a client that never lets the server write is not polite.)
    c = H2(port)
    try:
        payloads = [struct.pack(">Q", i) for i in range(1000)]
        deadline = time.monotonic() + 10
        for b in range(10):
            batch = payloads[b * 100:(b + 1) * 100]
            c.send(b"".join(frame(PING, 0, 0, p) for p in batch))
            if not c.pump(lambda: len(c.ping_acks) >= (b + 1) * 100,
                          max(0.1, deadline - time.monotonic())):
                break
        check("6 1,000 polite PINGs: 1,000 ACKs with matching payloads, in order",
              c.ping_acks == payloads and c.closed is None and not c.goaways,
              f"{len(c.ping_acks)} ACKs; {describe_end(c)}")
    finally:
        c.close()
    healthy(port, child, "case 6 (polite PINGs)")


def case_rapid_reset(port, child):
    """20,000 x (HEADERS + DATA(END_STREAM) to Later, then RST_STREAM(CANCEL)) on one
    connection. Debian's nghttp2 1.52.0-1+deb12u1 backports the CVE-2023-44487 mitigation
    (upstream 1.57.0, commit 72b4af6): a token bucket of 1000 resets, refilled at 33/s, after
    which the server session submits GOAWAY(last_recv_stream_id, INTERNAL_ERROR); with no
    stream left open, nghttp2 then wants neither to read nor to write and the server closes."""
    c = H2(port)
    n = 20000
    block = encode_headers(request_headers(port, LATER))
    parts = []
    for i in range(n):
        sid = 1 + 2 * i
        parts.append(frame(HEADERS, END_HEADERS, sid, block))
        parts.append(frame(DATA, END_STREAM, sid, grpc_msg(b"r")))
        parts.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
    t, res = send_in_thread(c.sock, b"".join(parts))
    try:
        c.pump(None, 20.0)
        if not c.goaways and c.closed is None:
            t.join(10)
            c.send(frame(PING, 0, 0, b"alive?!!"))
            c.pump(lambda: b"alive?!!" in c.ping_acks, 5.0)
        gw = c.goaways[0] if c.goaways else None
        check("7 20,000 rapid resets: GOAWAY INTERNAL_ERROR (nghttp2 reset rate limit), then close",
              gw is not None and gw[1] == INTERNAL_ERROR and gw[0] < 1 + 2 * n and
              c.closed is not None,
              f"{describe_end(c)}; PING answered: {b'alive?!!' in c.ping_acks}")
        print(f"#   observed: {describe_end(c)}; client send: "
              f"{res.get('error', 'still sending')}; "
              f"streams answered: {len(c.streams)}")
    finally:
        c.close()
        t.join(10)
    healthy(port, child, "case 7")


def concurrent_streams(port, child, ack):
    """MAX_CONCURRENT_STREAMS + 1 held Never calls (HEADERS + DATA(empty message, END_STREAM)
    each) on one connection.

    ack=True: the client ACKs the server's SETTINGS before opening streams (the usual order).
    nghttp2 (nghttp2_session_on_request_headers_received) checks the limit before any server
    callback and makes the excess a connection error: GOAWAY PROTOCOL_ERROR "request HEADERS:
    max concurrent streams exceeded", so the held calls end with the connection. RFC 9113
    5.4.1 permits escalating the stream error of 5.1.2 this way; grpc-go answers
    RST_STREAM(REFUSED_STREAM) instead. latch accepts nghttp2's behaviour (recorded in
    docs/decisions/grpc-server.md): gRPC clients never exceed the limit they were sent. What
    is checked: the connection ends with exactly that GOAWAY and no held stream got an answer
    first (nothing was served past the limit).
    ack=False: the streams arrive before the ACK, while nghttp2 counts against its pending
    local limit: the excess stream gets RST_STREAM(REFUSED_STREAM) and the connection and the
    held calls survive."""
    tag = "8" if ack else "8b"
    when = "after SETTINGS ACK" if ack else "before SETTINGS ACK"
    c = H2(port, ack=ack)
    try:
        limit = c.server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)
        if ack:
            print(f"#   server MAX_CONCURRENT_STREAMS: {limit}")
            check("8 server advertises MAX_CONCURRENT_STREAMS 1000 (the default)", limit == 1000,
                  f"got {limit}")
        limit = limit or 1000
        block = encode_headers(request_headers(port, NEVER))
        sids = [1 + 2 * i for i in range(limit + 1)]
        c.send(b"".join(frame(HEADERS, END_HEADERS, s, block) +
                        frame(DATA, END_STREAM, s, EMPTY_MSG) for s in sids))
        last = sids[-1]
        if ack:
            c.pump(lambda: c.closed is not None, 10.0)
            early = {s: c.streams[s] for s in sids[:-1] if s in c.streams}
            g = c.goaways[0] if c.goaways else None
            check(f"{tag} stream {limit + 1} over the limit {when}: GOAWAY PROTOCOL_ERROR "
                  "\"max concurrent streams exceeded\", then the connection ends",
                  g is not None and g[1] == PROTOCOL_ERROR and
                  b"max concurrent streams exceeded" in g[2] and c.closed is not None,
                  describe_end(c))
            check(f"{tag} no held call was answered before the GOAWAY", not early,
                  f"events on held streams: {dict(list(early.items())[:3])}")
        else:
            c.pump(lambda: c.stream_done(last), 5.0)
            fence(c)  # everything the server sent for these streams has arrived
            evs = c.streams.get(last, [])
            early = {s: c.streams[s] for s in sids[:-1] if s in c.streams}
            shown = [(e[0], err_name(e[1])) if e[0] == "RST_STREAM" else e for e in evs]
            check(f"{tag} stream {limit + 1} over the limit {when}: RST_STREAM REFUSED_STREAM",
                  len(evs) == 1 and evs[0][0] == "RST_STREAM" and evs[0][1] == REFUSED_STREAM,
                  f"stream {last}: {shown}; {describe_end(c)}")
            check(f"{tag} connection and the {limit} held calls survive the refused stream "
                  "(PING answered, no GOAWAY)",
                  b"fence!!!" in c.ping_acks and not c.goaways and c.closed is None and not early,
                  f"{describe_end(c)}; events on held streams: {dict(list(early.items())[:3])}")
            print(f"#   observed on stream {last}: {evs}; {describe_end(c)}")
    finally:
        c.close()
    healthy(port, child, f"case {tag}")


def case_concurrent_streams(port, child):
    concurrent_streams(port, child, ack=True)
    concurrent_streams(port, child, ack=False)


# ---- server process --------------------------------------------------------------------------

def start_server(tmp, err_file):
    port_file = os.path.join(tmp, "port")
    child = subprocess.Popen([sys.argv[1], "--port-file", port_file], stderr=err_file)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.poll() is None:
        if os.path.exists(port_file):
            with open(port_file) as f:
                text = f.read().strip()
            if text:
                return child, int(text)
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
    check("server exit status 0 after SIGTERM", rc == 0, f"exit {rc}")


def main():
    if len(sys.argv) != 2:
        print("usage: test_grpc_negative.py PATH/TO/grpc_echo_server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        err_path = os.path.join(tmp, "server.stderr")
        with open(err_path, "wb") as err_file:
            child, port = start_server(tmp, err_file)
        try:
            if port is None:
                check("server started", False, f"no port file (exit {child.poll()})")
            else:
                for case in (case_bad_preface, case_malformed_frames, case_invalid_protobuf,
                             case_unknown_method, case_big_headers, case_ping,
                             case_rapid_reset, case_concurrent_streams):
                    try:
                        case(port, child)
                    except Exception as e:  # a broken case must not hide the others
                        check(f"{case.__name__} ran", False, f"{type(e).__name__}: {e}")
                check("server still running after all cases", child.poll() is None,
                      f"exit {child.poll()}")
        finally:
            stop_server(child)
        with open(err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        bad = [line for line in err.splitlines()
               if "ERROR: AddressSanitizer" in line or "runtime error:" in line
               or "ERROR: LeakSanitizer" in line]
        check("no sanitizer reports on the server's stderr", not bad, "; ".join(bad[:5]))
        counts = {}
        for line in err.splitlines():
            if "grpc:" in line:
                key = line[line.index("grpc:"):]
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            print(f"# server log x{n}: {key}")
        if bad:
            print("# server stderr (tail):\n" + "\n".join("#   " + l for l in
                                                      err.splitlines()[-60:]))
    total = passed + len(failures)
    if failures:
        print(f"test_grpc_negative: FAILED {len(failures)} of {total} checks: "
              + "; ".join(failures))
        return 1
    print(f"test_grpc_negative: OK, {total} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
