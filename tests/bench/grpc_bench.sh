#!/usr/bin/env bash
# grpc_bench.sh [BUILD_DIR] — the gRPC layer's throughput, measured with h2load (Debian's
# nghttp2-client) against grpc_echo_server, and with latch's own C client when it is built
# (grpc_client_bench). Prints one line per figure; docs/benchmarks.md records them.
#
# The server is pinned to CPU 0 and the load generator to CPU 1 (when taskset exists and the
# machine has two CPUs), so "one core" means the server's single loop thread on one CPU.
#
#   unary h2c       small echo calls/s, 1 connection, 100 concurrent streams; and 100
#                   streams spread over 4 connections
#   unary TLS       the same over TLS 1.3 (ALPN h2); the TLS cost is the ratio of the
#                   server's CPU time per call (wall-clock rates on this VM vary too much)
#   stream          messages/s on one server-streaming call (1,000,000 small messages)
#   1 MiB unary     response MiB/s echoing 1 MiB messages, 10 concurrent streams
#
# A benchmark, not a test: it asserts nothing and its figures vary with the machine's load.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build/release}
server_bin=$build/grpc_echo_server
N_UNARY=${N_UNARY:-1000000}
N_STREAM=${N_STREAM:-1000000}
N_BIG=${N_BIG:-2000}
RUNS=${RUNS:-3}

command -v h2load >/dev/null || { echo "grpc_bench: h2load missing (apt-get install nghttp2-client)" >&2; exit 1; }
[ -x "$server_bin" ] || { echo "grpc_bench: $server_bin missing (make release)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/latch-grpc-bench.XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

pin_server=() pin_load=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0) pin_load=(taskset -c 1)
fi

bash "$root/scripts/make-test-certs.sh" "$tmp/tls" >/dev/null
"${pin_server[@]}" "$server_bin" --port-file "$tmp/ports" --tls-dir "$tmp/tls" 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/ports" ] && [ "$(wc -l <"$tmp/ports")" -ge 3 ] && break; sleep 0.05; done
h2c_port=$(sed -n 1p "$tmp/ports")
tls_port=$(sed -n 2p "$tmp/ports")

# gRPC request bodies: the 5-byte prefix (uncompressed, big-endian length) and the message.
frame() { # frame FILE PAYLOAD_FILE
    local n; n=$(stat -c %s "$2")
    printf "\\x00\\x$(printf %02x $((n >> 24 & 255)))\\x$(printf %02x $((n >> 16 & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x$(printf %02x $((n & 255)))" >"$1"
    cat "$2" >>"$1"
}
printf 'hello world' >"$tmp/small.msg"; frame "$tmp/small.bin" "$tmp/small.msg"
printf '%s' "$N_STREAM" >"$tmp/count.msg"; frame "$tmp/count.bin" "$tmp/count.msg"
head -c $((1 << 20)) /dev/zero >"$tmp/big.msg"; frame "$tmp/big.bin" "$tmp/big.msg"

H=(-H 'content-type: application/grpc' -H 'te: trailers')

# h2load_secs ARGS... — runs h2load, checks every request succeeded, prints the seconds taken.
h2load_secs() {
    local out
    out=$("${pin_load[@]}" h2load -t 1 "${H[@]}" "$@" 2>&1)
    if ! grep -q ' 0 failed, 0 errored, 0 timeout' <<<"$out"; then
        echo "grpc_bench: h2load reported failures:" >&2; echo "$out" >&2; exit 1
    fi
    sed -n 's/^finished in \([0-9.]*\)\(m\?s\),.*/\1 \2/p' <<<"$out" |
        awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }'
}

# The server's CPU time so far (user + system), in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
hz=$(getconf CLK_TCK)

# best_rate COUNT ARGS... — the best of RUNS runs (the least disturbed by other load), as
# "<count per wall second> <server CPU microseconds per count>" (CPU of the same run).
best_rate() {
    local count=$1; shift
    local best=0 cpu=0 s r t0 t1
    for _ in $(seq "$RUNS"); do
        t0=$(server_ticks)
        s=$(h2load_secs "$@")
        t1=$(server_ticks)
        r=$(awk -v c="$count" -v s="$s" 'BEGIN { printf "%.0f", c / s }')
        if [ "$r" -gt "$best" ]; then
            best=$r
            cpu=$(awk -v c="$count" -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.2f", t / hz * 1e6 / c }')
        fi
    done
    echo "$best $cpu"
}

echo "grpc_bench: server pinned: ${pin_server[*]:-no}; $(nproc) CPUs; best of $RUNS runs"
echo "(server CPU per call is the server process's user+system time over the same run)"
read -r unary unary_cpu < <(best_rate "$N_UNARY" -n "$N_UNARY" -c 1 -m 100 -d "$tmp/small.bin" \
    "http://127.0.0.1:$h2c_port/latch.test.Echo/Unary")
printf '%-40s %10s calls/s  server %s us/call\n' "unary h2c (h2load, 1 conn, 100 streams)" \
    "$unary" "$unary_cpu"
read -r unary4 unary4_cpu < <(best_rate "$N_UNARY" -n "$N_UNARY" -c 4 -m 25 -d "$tmp/small.bin" \
    "http://127.0.0.1:$h2c_port/latch.test.Echo/Unary")
printf '%-40s %10s calls/s  server %s us/call\n' "unary h2c (h2load, 4 conns x 25 streams)" \
    "$unary4" "$unary4_cpu"
read -r tls tls_cpu < <(best_rate "$N_UNARY" -n "$N_UNARY" -c 1 -m 100 -d "$tmp/small.bin" \
    "https://127.0.0.1:$tls_port/latch.test.Echo/Unary")
printf '%-40s %10s calls/s  server %s us/call (TLS costs %.0f%% more CPU per call)\n' \
    "unary TLS (h2load, 1 conn, 100 streams)" "$tls" "$tls_cpu" \
    "$(awk -v a="$tls_cpu" -v b="$unary_cpu" 'BEGIN { print 100 * (a - b) / b }')"
read -r stream stream_cpu < <(best_rate "$N_STREAM" -n 1 -c 1 -m 1 -d "$tmp/count.bin" \
    "http://127.0.0.1:$h2c_port/latch.test.Echo/Count")
printf '%-40s %10s messages/s  server %s us/message\n' "server stream (h2load, 1 stream)" \
    "$stream" "$stream_cpu"
read -r big big_cpu < <(best_rate "$N_BIG" -n "$N_BIG" -c 1 -m 10 -d "$tmp/big.bin" \
    "http://127.0.0.1:$h2c_port/latch.test.Echo/Unary")
printf '%-40s %10s MiB/s each way  server %s us/MiB\n' "1 MiB unary (h2load, 10 streams)" \
    "$big" "$big_cpu"

if [ -x "$build/grpc_client_bench" ]; then
    "${pin_load[@]}" "$build/grpc_client_bench" --port "$h2c_port" --tls-port "$tls_port" \
        --ca "$tmp/tls/ca.pem" --runs "$RUNS"
fi
