#!/usr/bin/env bash
# compare-log.sh BEFORE_BUILD AFTER_BUILD [ROUNDS] — A/B of two latchd builds on the write path
# (docs/benchmarks.md, "The append-only log"). Per round and build, on a fresh 3-member cluster
# on loopback: 200 warm-up puts; strace -f -y of the leader's fdatasync/fsync/pwrite64/write
# during 1000 sequential puts, counted per file (a write through an O_DSYNC descriptor, LMDB's
# meta page, is a disk wait of its own); then, to the leader, `latch-bench put --clients 1 --total PUTS`,
# `lock --clients 1 --total LOCKS` and `lock --clients 32 --conns 8 --total LOCKS`. Rounds
# alternate the builds so other load on the machine hits both alike. Prints one line per run
# (and the raw JSON into OUT, default /tmp/compare-log.<time>).
#
#   PUTS=N (3000)  LOCKS=N (2000)
#
# Needs strace and etcdctl. Stops only the processes it started (by PID), and removes its
# temporary directory.
set -euo pipefail

A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
ROUNDS=${3:-3}
PUTS=${PUTS:-3000}
LOCKS=${LOCKS:-2000}
OUT=${OUT:-/tmp/compare-log.$(date -u +%Y%m%dT%H%M%SZ)}
export ETCDCTL_API=3
mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/latch-cmplog.XXXXXX)
PIDS=()

stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_all; rm -rf "$tmp"' EXIT

free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()' "$1"
}

# start BUILD TAG: a fresh cluster; sets EPS, LEADER, LEADER_PID
start() {
    local build=$1 tag=$2 ports i c p m spec=""
    declare -gA NPID
    mapfile -t ports < <(free_ports 9)
    EPS=""
    for i in 1 2 3; do
        spec+="${spec:+,}n$i=http://127.0.0.1:${ports[$((3 * i - 2))]}"
        EPS+="${EPS:+,}127.0.0.1:${ports[$((3 * i - 3))]}"
    done
    for i in 1 2 3; do
        c=${ports[$((3 * i - 3))]} p=${ports[$((3 * i - 2))]} m=${ports[$((3 * i - 1))]}
        "$build/latchd" --name "n$i" --data-dir "$tmp/$tag/n$i" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --listen-metrics-urls "http://127.0.0.1:$m" \
            --initial-cluster "$spec" --initial-cluster-token "cmplog-$$" \
            </dev/null >"$tmp/$tag.n$i.log" 2>&1 &
        PIDS+=($!)
        NPID[127.0.0.1:$c]=$!
    done
    for _ in $(seq 120); do
        etcdctl --endpoints="$EPS" --dial-timeout=2s --command-timeout=3s endpoint health \
            >/dev/null 2>&1 && break
        sleep 0.5
    done
    LEADER=$(etcdctl --endpoints="$EPS" --command-timeout=5s endpoint status -w json |
        python3 -c '
import json, sys
st = json.load(sys.stdin)
print([e["Endpoint"] for e in st if e["Status"]["leader"] == e["Status"]["header"]["member_id"]][0])')
    LEADER_PID=${NPID[$LEADER]}
}

one() { # build tag
    local build=$1 tag=$2
    mkdir -p "$tmp/$tag"
    start "$build" "$tag"
    "$build/latch-bench" -o json --endpoints "$LEADER" --clients 1 put --total 200 >/dev/null
    strace -f -y -e trace=fdatasync,fsync,pwrite64,write -p "$LEADER_PID" -o "$OUT/$tag.strace" &
    local sp=$!
    sleep 1
    "$build/latch-bench" -o json --endpoints "$LEADER" --clients 1 put --total 1000 >/dev/null
    kill -INT "$sp"
    wait "$sp" 2>/dev/null || true
    # Disk waits per put by file; a pwrite64 through an O_DSYNC descriptor (LMDB's meta page)
    # is a synchronous disk wait of its own.
    local fds
    fds=$(python3 - "$OUT/$tag.strace" "$LEADER_PID" <<'PY'
import re, sys, collections
trace, pid = sys.argv[1:]
n = collections.Counter()
for line in open(trace):
    m = re.match(r"\d+\s+(fdatasync|fsync|pwrite64|write)\((\d+)<([^>]*)>", line)
    if not m:
        continue
    call, fd, path = m.groups()
    f = path.rsplit("/", 1)[-1]
    f = "wal" if f.endswith(".seg") else f
    if not (f.endswith(".mdb") or f == "wal"):
        continue
    if call in ("pwrite64", "write"):
        try:
            flags = int([l for l in open(f"/proc/{pid}/fdinfo/{fd}") if l.startswith("flags")][0].split()[1], 8)
        except OSError:
            flags = 0
        call = "dsync-write" if flags & 0o10000 else "write"
    n[(f, call)] += 1
waits = sum(v for (f, c), v in n.items() if c in ("fdatasync", "fsync", "dsync-write"))
print(f"waits/put {waits/1000:.2f} [" + " ".join(f"{f}:{c} {v/1000:.2f}" for (f, c), v in sorted(n.items())) + "]")
PY
)
    "$build/latch-bench" -o json --endpoints "$LEADER" --clients 1 put --total "$PUTS" \
        >"$OUT/$tag.put.json"
    "$build/latch-bench" -o json --endpoints "$LEADER" --conns 1 --clients 1 lock \
        --total "$LOCKS" >"$OUT/$tag.lock1.json"
    "$build/latch-bench" -o json --endpoints "$LEADER" --conns 8 --clients 32 lock \
        --total "$LOCKS" >"$OUT/$tag.lock32.json"
    stop_all
    rm -rf "${tmp:?}/$tag"
    python3 - "$OUT" "$tag" "$fds" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
out, tag, fds, load = sys.argv[1:]
def j(n):
    return json.loads(open(f"{out}/{tag}.{n}.json").read().strip().splitlines()[-1])
p, l1, l32 = j("put"), j("lock1"), j("lock32")
errs = p["errors"] + l1["errors"] + l32["errors"]
print(f"{tag:9s} load {load} | put c1 {p['ops_per_s']:7.1f}/s p50 {p['p50_ms']:.2f} ms | "
      f"lock c1 {l1['ops_per_s']:6.1f}/s acq p50 {l1['p50_ms']:.2f} | "
      f"lock c32 {l32['ops_per_s']:6.1f}/s handoff p50 {l32['handoff_p50_ms']:.2f} | "
      f"errors {errs} | {fds}")
PY
}

for r in $(seq "$ROUNDS"); do
    one "$A" "before.$r"
    one "$B" "after.$r"
done
echo "raw JSON: $OUT"
