#!/usr/bin/python3
"""py_server.py --port-file F [--port N]: a grpcio (C-core) test peer for api/grpc_client.

Serves /latch.test.Py/<Method> with raw bytes (no protobuf):
  Unary  echoes the request;
  Count  server-streaming: the request is a decimal N; streams "0" .. "N-1";
  Chat   bidirectional: echoes every message, ends OK at the client's half-close;
  Sum    client-streaming: answers "<messages> <bytes>";
  Fail   aborts with the status and message given as "<code>:<message>" (UTF-8), or with
         INVALID_ARGUMENT "bad thing: é%" for an empty request;
  Sleep  sleeps the request's decimal milliseconds (stopping early once the RPC is no longer
         active), then echoes it: for deadlines;
  Meta   the request names a metadata key; answers its value or aborts NOT_FOUND.
Listens on 127.0.0.1 (port N, default 0 = ephemeral; SO_REUSEPORT as grpcio sets it, so a
restart can take the same port), writes the bound port to F via a temporary file and rename,
and stops on SIGTERM or SIGINT.
"""
import argparse
import os
import signal
import threading
import time
from concurrent import futures

import grpc

SERVICE = "latch.test.Py"
CODES = {c.value[0]: c for c in grpc.StatusCode}


def unary(request, context):
    return request


def count(request, context):
    n = int(request.decode())
    for i in range(n):
        yield str(i).encode()


def chat(request_iterator, context):
    for msg in request_iterator:
        yield msg


def total(request_iterator, context):
    messages = 0
    size = 0
    for msg in request_iterator:
        messages += 1
        size += len(msg)
    return f"{messages} {size}".encode()


def fail(request, context):
    if not request:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad thing: é%")
    code, _, message = request.decode("utf-8").partition(":")
    context.abort(CODES[int(code)], message)


def sleep(request, context):
    end = time.monotonic() + int(request.decode()) / 1000.0
    while time.monotonic() < end and context.is_active():
        time.sleep(0.01)
    return request


def meta(request, context):
    key = request.decode()
    for k, v in context.invocation_metadata():
        if k == key:
            return v.encode() if isinstance(v, str) else v
    context.abort(grpc.StatusCode.NOT_FOUND, "no such header")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Meta": grpc.unary_unary_rpc_method_handler(meta),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
        options=[("grpc.max_receive_message_length", 4 << 20)],
    )
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    if port == 0:
        raise SystemExit(f"py_server: cannot listen on port {args.port}")
    server.start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(0).wait()


if __name__ == "__main__":
    main()
