#!/usr/bin/env bash
# compare-locks.sh [BUILD_DIR] — lock and election figures (issue 6, item 6), in one run (run by
# `make bench`; docs/benchmarks.md records the figures).
#
# Starts a 3-member latch (BUILD_DIR/latchd, default build/release) and a 3-member etcd
# (Debian's etcd-server) on loopback, on free ports, in one temporary directory, builds
# tests/bench/etcd_mutex_bench.go (etcd 3.4's clientv3/concurrency Mutex, Debian's
# golang-etcd-server-dev, offline GOPATH mode) and runs, each against the cluster's leader:
#
#   native_c1     latch-bench lock, 1 client (latch's native Acquire -> Release)
#   native_c32    latch-bench lock, 32 clients on 8 connections contending for one lock
#   mutex_c1      etcd_mutex_bench, 1 goroutine: on latch's etcd API and on etcd
#   mutex_c32     etcd_mutex_bench, 32 goroutines on 8 clients: on latch and on etcd
#   failover      latch-bench failover: FAILOVER_ROUNDS rounds, the leader's session TTL 2 s
#
# and prints one table with the goals: native >= 1,500 cycles/s with 1 client and >= 1,800/s
# with 32 contending, hand-off p50 <= 1 ms, fail-over within the TTL + one election timeout
# (1 s); the Mutex figures (latch and etcd) for reference. Runs alternate latch and etcd so
# other load on the machine hits both alike. The raw JSON of every run and the table go to
# OUT (default BUILD_DIR/compare-locks/<UTC time>).
#
#   TOTAL=N             cycles per lock run (default 5000; QUICK=1: 300)
#   FAILOVER_ROUNDS=N   default 5 (QUICK=1: 2)
#   KEEP=1              keep the temporary directory (data dirs and logs)
#
# Stops only the processes it started (by PID, checking /proc/PID/cmdline first), removes its
# directory, and exits 1 if a cluster did not come up or any run failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build/release}
build=$(cd "$build" && pwd)
latchd=$build/latchd
bench=$build/latch-bench
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then TOTAL=${TOTAL:-300}; ROUNDS=${FAILOVER_ROUNDS:-2}; else
    TOTAL=${TOTAL:-5000}; ROUNDS=${FAILOVER_ROUNDS:-5}; fi
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
OUT=${OUT:-$build/compare-locks/$(date -u +%Y%m%dT%H%M%SZ)}
GOPATH_DEB=/usr/share/gocode
export ETCDCTL_API=3
for v in $(compgen -e | grep '^ETCD_' || true); do unset "$v"; done

for f in "$latchd" "$bench"; do
    [ -x "$f" ] || { echo "compare-locks: $f missing (make release)" >&2; exit 1; }
done
for t in etcd etcdctl go; do
    command -v "$t" >/dev/null || {
        echo "compare-locks: $t missing (bash scripts/deps.sh, as root)" >&2; exit 1; }
done
[ -d "$GOPATH_DEB/src/go.etcd.io/etcd/clientv3/concurrency" ] || {
    echo "compare-locks: golang-etcd-server-dev missing (bash scripts/deps.sh)" >&2; exit 1; }

mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/latch-locks.XXXXXX)
declare -A PID
declare -A DIR
failed=0

ours() {
    local pid=${PID[$1]:-}
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null |
        grep -qF -- "${DIR[$1]}"
}

stop_all() {
    local n _
    for n in "${!PID[@]}"; do
        if ours "$n"; then kill -TERM "${PID[$n]}" 2>/dev/null || true; fi
    done
    for n in "${!PID[@]}"; do
        for _ in $(seq 100); do ours "$n" || break; sleep 0.2; done
        if ours "$n"; then kill -KILL "${PID[$n]}" 2>/dev/null || true; fi
        wait "${PID[$n]}" 2>/dev/null || true
        unset "PID[$n]"
    done
}

cleanup() {
    stop_all
    if [ "${KEEP:-0}" = 1 ]; then echo "compare-locks: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()' "$1"
}

wait_healthy() {
    local _
    for _ in $(seq 120); do
        if etcdctl --endpoints="$1" --dial-timeout=2s --command-timeout=3s endpoint health \
            >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    echo "compare-locks: the $2 cluster was not healthy within 60 s; logs in $tmp" >&2
    return 1
}

start_latch() {
    local ports i c p m spec=""
    mapfile -t ports < <(free_ports 9)
    LATCH_EPS=""
    for i in 1 2 3; do
        spec+="${spec:+,}n$i=http://127.0.0.1:${ports[$((3 * i - 2))]}"
        LATCH_EPS+="${LATCH_EPS:+,}127.0.0.1:${ports[$((3 * i - 3))]}"
    done
    mkdir -p "$tmp/latch"
    for i in 1 2 3; do
        c=${ports[$((3 * i - 3))]} p=${ports[$((3 * i - 2))]} m=${ports[$((3 * i - 1))]}
        DIR[latch$i]=$tmp/latch/n$i
        "$latchd" --name "n$i" --data-dir "${DIR[latch$i]}" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --listen-metrics-urls "http://127.0.0.1:$m" \
            --initial-cluster "$spec" --initial-cluster-token "locks-$$" \
            </dev/null >"$tmp/latch/n$i.log" 2>&1 &
        PID[latch$i]=$!
    done
    wait_healthy "$LATCH_EPS" latch
}

start_etcd() {
    local ports i c p spec=""
    mapfile -t ports < <(free_ports 6)
    ETCD_EPS=""
    for i in 1 2 3; do
        spec+="${spec:+,}m$i=http://127.0.0.1:${ports[$((2 * i - 1))]}"
        ETCD_EPS+="${ETCD_EPS:+,}127.0.0.1:${ports[$((2 * i - 2))]}"
    done
    mkdir -p "$tmp/etcd"
    for i in 1 2 3; do
        c=${ports[$((2 * i - 2))]} p=${ports[$((2 * i - 1))]}
        DIR[etcd$i]=$tmp/etcd/m$i.etcd
        etcd --name "m$i" --data-dir "${DIR[etcd$i]}" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$spec" --initial-cluster-token "locks-$$" \
            --initial-cluster-state new --logger zap --log-outputs stderr \
            </dev/null >"$tmp/etcd/m$i.log" 2>&1 &
        PID[etcd$i]=$!
    done
    wait_healthy "$ETCD_EPS" etcd
}

leader_of() { # endpoints -> the leader's endpoint
    etcdctl --endpoints="$1" --command-timeout=5s endpoint status -w json 2>/dev/null |
        python3 -c '
import json, sys
st = json.load(sys.stdin)
lead = [e["Endpoint"] for e in st if e["Status"].get("leader") and
        e["Status"]["leader"] == e["Status"]["header"]["member_id"]]
print(lead[0] if lead else sys.argv[1].split(",")[0])' "$1"
}

# run NAME.SYSTEM command... — one run, its JSON in $OUT/NAME.SYSTEM.json
run() {
    local tag=$1 rc=0
    shift
    echo "# $*" >"$OUT/$tag.cmd"
    timeout "$RUN_TIMEOUT" "$@" >"$OUT/$tag.json" 2>"$OUT/$tag.err" || rc=$?
    if [ "$rc" != 0 ]; then
        failed=1
        echo "compare-locks: $tag failed (exit $rc): $(tail -n 2 "$OUT/$tag.err")" >&2
    fi
    printf '[%s] %-16s %s\n' "$(date -u +%T)" "$tag" "$(tail -n 1 "$OUT/$tag.json" | cut -c1-150)" >&2
}

# ---- the Go recipe -------------------------------------------------------------------------

mutex=$tmp/etcd_mutex_bench
echo "compare-locks: building tests/bench/etcd_mutex_bench.go (offline, GOPATH mode)" >&2
(cd "$root/tests/bench" && env -i PATH="$PATH:/usr/lib/go/bin" HOME="$tmp" GO111MODULE=off \
    GOPATH="$GOPATH_DEB" GOCACHE="$build/gocache-bench" GOFLAGS= GOPROXY=off GOENV=off \
    GOTOOLCHAIN=local go build -o "$mutex" etcd_mutex_bench.go) ||
    { echo "compare-locks: go build failed" >&2; exit 1; }

# ---- the run ---------------------------------------------------------------------------------

echo "compare-locks: $(nproc) CPUs, QUICK=$QUICK, latch $latchd, $(etcd --version | head -1); out $OUT" >&2
start_latch
start_etcd
LL=$(leader_of "$LATCH_EPS")
EL=$(leader_of "$ETCD_EPS")
echo "compare-locks: latch $LATCH_EPS (leader $LL), etcd $ETCD_EPS (leader $EL)" >&2

run native_c1.latch "$bench" -o json --endpoints "$LL" --conns 1 --clients 1 lock --total "$TOTAL"
run mutex_c1.latch "$mutex" -endpoints "$LL" -clients 1 -total "$TOTAL"
run mutex_c1.etcd "$mutex" -endpoints "$EL" -clients 1 -total "$TOTAL"
run native_c32.latch "$bench" -o json --endpoints "$LL" --conns 8 --clients 32 lock \
    --total "$TOTAL"
run mutex_c32.latch "$mutex" -endpoints "$LL" -clients 32 -conns 8 -total "$TOTAL"
run mutex_c32.etcd "$mutex" -endpoints "$EL" -clients 32 -conns 8 -total "$TOTAL"
run failover.latch "$bench" -o json --endpoints "$LATCH_EPS" --conns 3 failover \
    --total "$ROUNDS" --session-ttl 2

# ---- the table -------------------------------------------------------------------------------

python3 - "$OUT" <<'PY' | tee "$OUT/table.txt"
import json, os, sys
out = sys.argv[1]
ELECTION_TIMEOUT_MS = 1000  # latchd's default --election-timeout

def load(tag):
    try:
        with open(os.path.join(out, tag + ".json")) as f:
            d = json.loads(f.read().strip().splitlines()[-1])
        return d if d.get("errors") == 0 else None
    except (OSError, ValueError, IndexError):
        return None

def get(tag, key):
    d = load(tag)
    return d.get(key) if d else None

def fmt(v):
    if v is None:
        return "FAILED"
    return "%.0f" % v if v >= 100 else "%.2f" % v

rows = []
def row(label, value, goal=None, ok=None, ref=None):
    rows.append((label, fmt(value), goal or "", "" if ok is None else ("yes" if ok else "NO"),
                 ref or ""))

n1, n32 = get("native_c1.latch", "ops_per_s"), get("native_c32.latch", "ops_per_s")
m1l, m1e = get("mutex_c1.latch", "ops_per_s"), get("mutex_c1.etcd", "ops_per_s")
m32l, m32e = get("mutex_c32.latch", "ops_per_s"), get("mutex_c32.etcd", "ops_per_s")
ho = get("native_c32.latch", "handoff_p50_ms")

def ratio(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"

row("native lock, 1 client (cycles/s)", n1, ">= 1500", n1 is not None and n1 >= 1500,
    "%s the etcd Mutex on etcd" % ratio(n1, m1e))
row("native lock, 1 client: Acquire p50 (ms)", get("native_c1.latch", "p50_ms"))
row("native lock, 1 client: Acquire p99 (ms)", get("native_c1.latch", "p99_ms"))
row("native lock, 32 contending (cycles/s)", n32, ">= 1800", n32 is not None and n32 >= 1800,
    "%s the etcd Mutex on etcd" % ratio(n32, m32e))
row("native lock, 32: hand-off p50 (ms)", ho, "<= 1", ho is not None and ho <= 1)
row("native lock, 32: hand-off p99 (ms)", get("native_c32.latch", "handoff_p99_ms"))
row("native lock, 32: Acquire p50 (ms)", get("native_c32.latch", "p50_ms"))
row("native lock, 32: Acquire p99 (ms)", get("native_c32.latch", "p99_ms"))
row("etcd Mutex on latch, 1 client (cycles/s)", m1l, ref="%s etcd" % ratio(m1l, m1e))
row("etcd Mutex on etcd, 1 client (cycles/s)", m1e)
row("etcd Mutex on latch, 32 contending (cycles/s)", m32l, ref="%s etcd" % ratio(m32l, m32e))
row("etcd Mutex on etcd, 32 contending (cycles/s)", m32e)
row("etcd Mutex on latch, 32: hand-off p50 (ms)", get("mutex_c32.latch", "handoff_p50_ms"))
row("etcd Mutex on etcd, 32: hand-off p50 (ms)", get("mutex_c32.etcd", "handoff_p50_ms"))
ttl = get("failover.latch", "session_ttl_s")
fr = get("failover.latch", "from_renewal_max_ms")
budget = ttl * 1000 + ELECTION_TIMEOUT_MS if ttl else None
row("fail-over: expiry -> new leader's Campaign, p50 (ms)", get("failover.latch", "p50_ms"))
row("fail-over: expiry -> Observe shows it, max (ms)", get("failover.latch", "observe_max_ms"))
row("fail-over: last renewal -> new leader, max (ms)", fr,
    "<= %s" % fmt(budget) if budget else None, fr is not None and budget is not None and fr <= budget,
    "TTL %s s + election timeout %d ms" % (ttl, ELECTION_TIMEOUT_MS))
print("%-52s %10s %10s %5s  %s" % ("figure", "value", "goal", "met?", "reference"))
for label, v, goal, met, ref in rows:
    print("%-52s %10s %10s %5s  %s" % (label, v, goal, met, ref))
PY
echo "compare-locks: raw results in $OUT" >&2
exit $failed
