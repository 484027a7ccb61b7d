#!/usr/bin/env bash
# run-cluster.sh [LATCHD] [DATA_ROOT] — starts a three-member latch cluster on loopback in
# the foreground (what `make run` does) and prints how to reach it; Ctrl-C (or SIGTERM)
# stops all three and waits for them. Ports follow docs/operations.md: clients 2479, 12479,
# 22479; peers 2480, 12480, 22480; admin (/health, /metrics, /version) 2481, 12481, 22481.
# Each member logs to DATA_ROOT/<name>.log; data dirs are DATA_ROOT/<name>, kept between
# runs (remove DATA_ROOT for a fresh cluster).
set -euo pipefail

latchd=${1:-build/release/latchd}
root=${2:-/tmp/latch-run}
[ -x "$latchd" ] || { echo "run-cluster: $latchd missing (make release)" >&2; exit 1; }
mkdir -p "$root"
cluster=n1=http://127.0.0.1:2480,n2=http://127.0.0.1:12480,n3=http://127.0.0.1:22480
pids=()

stop_all() {
    trap - INT TERM
    echo "run-cluster: stopping ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM

for i in 1 2 3; do
    p=$(( (i - 1) * 10000 ))
    "$latchd" --name "n$i" --data-dir "$root/n$i" \
        --listen-client-urls "http://127.0.0.1:$((2479 + p))" \
        --advertise-client-urls "http://127.0.0.1:$((2479 + p))" \
        --listen-peer-urls "http://127.0.0.1:$((2480 + p))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((2480 + p))" \
        --listen-metrics-urls "http://127.0.0.1:$((2481 + p))" \
        --initial-cluster "$cluster" --initial-cluster-token latch-run \
        >"$root/n$i.log" 2>&1 &
    pids+=($!)
done

# Print the greeting once a leader is elected (a bounded wait: /health answers 200 with a
# leader), so the example below works as soon as it is shown.
for _ in $(seq 100); do
    curl -sf -o /dev/null http://127.0.0.1:2481/health && break
    sleep 0.1
done

cat <<MSG
latch: three members running (pids ${pids[*]}), logs and data in $root
  clients:  127.0.0.1:2479, 127.0.0.1:12479, 127.0.0.1:22479
  admin:    curl http://127.0.0.1:2481/health   (also /metrics, /version)
  try:      ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2479,127.0.0.1:12479,127.0.0.1:22479 put greeting hello
            ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:22479 get greeting
            $(dirname "$latchd")/latchctl put /greeting hello     (latchctl: these endpoints by default)
            $(dirname "$latchd")/latchctl lock demo -- sh -c 'echo "token \$LATCH_FENCING_TOKEN"'
Ctrl-C stops the cluster.
MSG
# A member that exits (or is killed to watch a failover) is reported; the others keep
# running until Ctrl-C or until none is left.
left=${#pids[@]}
while [ "$left" -gt 0 ]; do
    wait -n "${pids[@]}" 2>/dev/null || true
    left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
    echo "run-cluster: $left member(s) still running; logs in $root" >&2
done
