#!/usr/bin/env bash
# compare-etcd.sh [BUILD_DIR] — latch against etcd 3.4 on this machine, in one run (run by
# `make bench`; docs/benchmarks.md records the figures).
#
# Starts a 3-member latch (BUILD_DIR/latchd, default build/release) and a 3-member etcd
# (Debian's etcd-server: `bash scripts/deps.sh` installs it) on loopback, on free ports,
# in one temporary directory, and drives both with the same latch-bench commands — the
# settings of ../shared/anchors/etcd/bench.sh (1000 clients over 100 connections, 16-byte keys,
# 256-byte values, 100,000-key space):
#
#   disk_100k   100,000 sequential keys x 256 B (1000 clients, 100 conns): then the key count,
#               `du` of each member's data dir and each member's RSS; first, on fresh clusters
#   put_seq     1 client, 1 connection, to the leader
#   put_c1000   1000 clients over 100 connections, to the leader
#   get_l/_s    Range of one 256-byte key, linearizable / serializable, 1000 clients, 100
#               conns spread over all members
#   txn_c1000   Txn (compare + put), 1000 clients over 100 conns, to the leader
#   watch_1     1 writer (on the leader) and 1 watcher; put -> event latency
#   watch_100   1 writer and 100 watchers on their own connections
#   lease_c100  LeaseKeepAlive, 100 leases over 10 connections, to the leader
#
# then each member's peak RSS (VmHWM) over the whole run, and prints one table: workload,
# latch figure, etcd figure, latch/etcd, goal, met?. Workloads alternate between the two
# systems so that other load on the machine hits both alike. The raw JSON of every run and the
# table go to OUT (default BUILD_DIR/compare-etcd/<UTC time>).
#
#   QUICK=1     each workload runs for QUICK_SECONDS (3) instead of the anchor's request count,
#               and the disk figure is taken after DISK_KEYS=10000 keys (a smoke run: ~2 min)
#   KEEP=1      keep the temporary directory (data dirs and logs)
#
# Stops only the processes it started (by PID, checking /proc/PID/cmdline first), removes its
# directory, and exits 1 if a cluster did not come up or any benchmark run failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build/release}
build=$(cd "$build" && pwd)
latchd=$build/latchd
bench=$build/latch-bench
QUICK=${QUICK:-0}
QUICK_SECONDS=${QUICK_SECONDS:-3}
if [ "$QUICK" = 1 ]; then DISK_KEYS=${DISK_KEYS:-10000}; else DISK_KEYS=${DISK_KEYS:-100000}; fi
RUN_TIMEOUT=${RUN_TIMEOUT:-200} # seconds for one latch-bench run, whatever happens
OUT=${OUT:-$build/compare-etcd/$(date -u +%Y%m%dT%H%M%SZ)}
export ETCDCTL_API=3
# never let ETCD_* variables of the caller's environment configure etcd (as the anchor)
for v in $(compgen -e | grep '^ETCD_' || true); do unset "$v"; done

for f in "$latchd" "$bench"; do
    [ -x "$f" ] || { echo "compare-etcd: $f missing (make release)" >&2; exit 1; }
done
command -v etcd >/dev/null || {
    echo "compare-etcd: etcd missing (bash scripts/deps.sh, as root)" >&2; exit 1; }
command -v etcdctl >/dev/null || { echo "compare-etcd: etcdctl missing" >&2; exit 1; }

mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/latch-compare.XXXXXX)
declare -A PID # "latch1".."etcd3" -> pid
declare -A DIR # same keys -> data dir
failed=0

# ---- process control: only what this script started ----------------------------------------

ours() { # name: true while PID[name] is still the process we started
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
    if [ "${KEEP:-0}" = 1 ]; then echo "compare-etcd: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # n -> n free loopback ports, one per line
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()' "$1"
}

wait_healthy() { # endpoints what
    local _
    for _ in $(seq 120); do
        if etcdctl --endpoints="$1" --dial-timeout=2s --command-timeout=3s endpoint health \
            >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    echo "compare-etcd: the $2 cluster was not healthy within 60 s; logs in $tmp" >&2
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
    for i in 1 2 3; do
        c=${ports[$((3 * i - 3))]} p=${ports[$((3 * i - 2))]} m=${ports[$((3 * i - 1))]}
        DIR[latch$i]=$tmp/latch/n$i
        mkdir -p "$tmp/latch"
        "$latchd" --name "n$i" --data-dir "${DIR[latch$i]}" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --listen-metrics-urls "http://127.0.0.1:$m" \
            --initial-cluster "$spec" --initial-cluster-token "compare-$$" \
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
        # The anchor's flags (../shared/anchors/etcd/cluster.sh): etcd 3.4 defaults otherwise.
        etcd --name "m$i" --data-dir "${DIR[etcd$i]}" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$spec" --initial-cluster-token "compare-$$" \
            --initial-cluster-state new --logger zap --log-outputs stderr \
            </dev/null >"$tmp/etcd/m$i.log" 2>&1 &
        PID[etcd$i]=$!
    done
    wait_healthy "$ETCD_EPS" etcd
}

leader_first() { # endpoints -> the same list with the leader first
    etcdctl --endpoints="$1" --command-timeout=5s endpoint status -w json 2>/dev/null |
        python3 -c '
import json, sys
st = json.load(sys.stdin)
lead = [e["Endpoint"] for e in st if e["Status"].get("leader") and
        e["Status"]["leader"] == e["Status"]["header"]["member_id"]]
eps = sys.argv[1].split(",")
print(",".join(lead + [e for e in eps if e not in lead]))' "$1"
}

# ---- measurements ------------------------------------------------------------------------------

# run SYSTEM NAME latch-bench-args... — one latch-bench run, its JSON in $OUT/NAME.SYSTEM.json.
run() {
    local sys=$1 name=$2
    shift 2
    local f="$OUT/$name.$sys.json" rc=0
    echo "# $sys: latch-bench $*" >"$OUT/$name.$sys.cmd"
    timeout "$RUN_TIMEOUT" "$bench" -o json "$@" >"$f" 2>"$OUT/$name.$sys.err" || rc=$?
    if [ "$rc" != 0 ]; then
        failed=1
        echo "compare-etcd: $name on $sys failed (exit $rc): $(tail -n 2 "$OUT/$name.$sys.err")" >&2
    fi
    printf '[%s] %-10s %-5s %s\n' "$(date -u +%T)" "$name" "$sys" "$(tail -n 1 "$f" | cut -c1-150)" >&2
}

# size LOAD: either --duration (QUICK) or --total N
size() { if [ "$QUICK" = 1 ]; then echo "--duration=${QUICK_SECONDS}s"; else echo "--total=$1"; fi; }

# the same workload on both systems: both WORKLOAD_NAME args (EPS is replaced per system)
both() {
    local name=$1
    shift
    local s eps args
    for s in latch etcd; do
        if [ "$s" = latch ]; then eps=$LATCH_EPS; else eps=$ETCD_EPS; fi
        args=("${@//=EPS/=$eps}")
        if [[ " $* " == *" LEADERFIRST "* ]]; then
            eps=$(leader_first "$eps")
            args=("${args[@]/#LEADERFIRST/--endpoints=$eps}")
        fi
        run "$s" "$name" "${args[@]}"
    done
}

mem_kb() { # name field(VmHWM|VmRSS)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/${PID[$1]}/status" 2>/dev/null || echo 0
}

disk_and_rss() { # tag -> $OUT/<tag>.txt: per member du -sk and VmRSS; key counts
    local n s eps
    {
        for n in latch1 latch2 latch3 etcd1 etcd2 etcd3; do
            echo "DU $n $(du -sk "${DIR[$n]}" | cut -f1) RSS_KB $(mem_kb "$n" VmRSS)"
        done
        for s in latch etcd; do
            if [ "$s" = latch ]; then eps=$LATCH_EPS; else eps=$ETCD_EPS; fi
            echo "KEYS $s $(etcdctl --endpoints="$eps" --command-timeout=30s get bench/ --prefix \
                --limit=1 --keys-only -w json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count",0))')"
        done
    } >"$OUT/$1.txt"
}

peak_rss() {
    local n
    for n in latch1 latch2 latch3 etcd1 etcd2 etcd3; do
        echo "HWM $n $(mem_kb "$n" VmHWM)"
    done >"$OUT/peak_rss.txt"
}

# ---- the run ---------------------------------------------------------------------------------

echo "compare-etcd: $(nproc) CPUs, QUICK=$QUICK, latch $latchd, $(etcd --version | head -1); out $OUT" >&2
start_latch
start_etcd
echo "compare-etcd: latch $LATCH_EPS, etcd $ETCD_EPS" >&2
C1000=(--conns=100 --clients=1000)
KV=(--key-size=16 --val-size=256)

# Disk and RSS after DISK_KEYS keys, on the fresh clusters.
both disk_load --endpoints=EPS "${C1000[@]}" put "${KV[@]}" --total="$DISK_KEYS" \
    --key-space="$DISK_KEYS" --sequential-keys
sleep 2
disk_and_rss disk

both put_seq --endpoints=EPS --target-leader --conns=1 --clients=1 put "${KV[@]}" \
    --key-space=100000 "$(size 3000)"
both put_c1000 --endpoints=EPS --target-leader "${C1000[@]}" put "${KV[@]}" \
    --key-space=100000 "$(size 100000)"
# one key with a 256-byte value, read by both get workloads (as the anchor's range tests)
both get_key --endpoints=EPS put "${KV[@]}" --key-space=1 --total=1
both get_l --endpoints=EPS "${C1000[@]}" get "${KV[@]}" --key-space=1 --consistency=l \
    "$(size 100000)"
both get_s --endpoints=EPS "${C1000[@]}" get "${KV[@]}" --key-space=1 --consistency=s \
    "$(size 200000)"
both txn_c1000 --endpoints=EPS --target-leader "${C1000[@]}" txn "${KV[@]}" \
    --key-space=100000 "$(size 50000)"
both watch_1 LEADERFIRST --conns=2 --clients=1 --watchers=1 watch "${KV[@]}" \
    --key-prefix=bench/w1/ "$(size 1000)"
both watch_100 LEADERFIRST --conns=101 --clients=1 --watchers=100 watch "${KV[@]}" \
    --key-prefix=bench/w100/ "$(size 300)"
both lease_c100 --endpoints=EPS --target-leader --conns=10 --clients=100 lease "$(size 100000)"
peak_rss

# ---- the table -------------------------------------------------------------------------------

python3 - "$OUT" "$QUICK" "$DISK_KEYS" <<'PY' | tee "$OUT/table.txt"
import json, os, sys
out, quick, disk_keys = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])

def load(name, sys_):
    try:
        with open(os.path.join(out, "%s.%s.json" % (name, sys_))) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

def field(name, key):
    a, b = load(name, "latch"), load(name, "etcd")
    fa = a.get(key) if a and a.get("errors") == 0 else None
    fb = b.get(key) if b and b.get("errors") == 0 else None
    return fa, fb

def members(path, tag, col):
    v = {}
    try:
        for line in open(os.path.join(out, path)):
            w = line.split()
            if w and w[0] == tag:
                v[w[1]] = int(w[col]) if w[col].isdigit() else 0
    except OSError:
        pass
    return v

rows = []  # (label, latch, etcd, unit, goal "x>=3" / "x<=0.5" / None)
def row(label, pair, unit, goal=None):
    rows.append((label, pair[0], pair[1], unit, goal))

row("put, 1 client (sequential)", field("put_seq", "ops_per_s"), "puts/s", ">=2.5")
row("put, 1 client: p50", field("put_seq", "p50_ms"), "ms")
row("put, 1000 clients", field("put_c1000", "ops_per_s"), "puts/s", ">=3")
row("put, 1000 clients: p99", field("put_c1000", "p99_ms"), "ms", "<=0.5")
row("get linearizable, 1000 clients", field("get_l", "ops_per_s"), "gets/s", ">=3")
row("get linearizable: p99", field("get_l", "p99_ms"), "ms", "<=0.5")
row("get serializable, 1000 clients", field("get_s", "ops_per_s"), "gets/s", ">=5")
row("get serializable: p99", field("get_s", "p99_ms"), "ms", "<=0.5")
row("txn, 1000 clients", field("txn_c1000", "ops_per_s"), "txns/s")
row("txn: p99", field("txn_c1000", "p99_ms"), "ms")
row("watch, 1 watcher: put->event p50", field("watch_1", "p50_ms"), "ms")
row("watch, 1 watcher: put->event p99", field("watch_1", "p99_ms"), "ms")
row("watch, 100 watchers: puts", field("watch_100", "ops_per_s"), "puts/s")
row("watch, 100 watchers: put->event p99", field("watch_100", "p99_ms"), "ms")
row("lease keep-alive, 100 leases", field("lease_c100", "ops_per_s"), "renewals/s")
row("lease keep-alive: p99", field("lease_c100", "p99_ms"), "ms")
hwm = members("peak_rss.txt", "HWM", 2)
mib = lambda kb: round(kb / 1024.0, 1) if kb else None
peak = (mib(max([hwm.get("latch%d" % i, 0) for i in (1, 2, 3)])),
        mib(max([hwm.get("etcd%d" % i, 0) for i in (1, 2, 3)])))
row("peak RSS per member (max VmHWM)", peak, "MiB", "<=0.25")
du = members("disk.txt", "DU", 2)
rss = members("disk.txt", "DU", 4)
row("RSS per member after %d keys (max)" % disk_keys,
    (mib(max([rss.get("latch%d" % i, 0) for i in (1, 2, 3)])),
     mib(max([rss.get("etcd%d" % i, 0) for i in (1, 2, 3)]))), "MiB")
row("disk per member after %d x 256 B keys (max du)" % disk_keys,
    (mib(max([du.get("latch%d" % i, 0) for i in (1, 2, 3)])),
     mib(max([du.get("etcd%d" % i, 0) for i in (1, 2, 3)]))), "MiB", "<=0.4")
keys = members("disk.txt", "KEYS", 2)

def fmt(v):
    if v is None:
        return "FAILED"
    return "%.0f" % v if v >= 100 else "%.2f" % v

print("%-56s %12s %12s %10s %8s %6s" % ("workload", "latch", "etcd", "latch/etcd", "goal", "met?"))
for label, a, b, unit, goal in rows:
    ratio = a / b if a is not None and b not in (None, 0) else None
    met = ""
    if goal and ratio is not None:
        want = float(goal[2:])
        met = "yes" if (ratio >= want if goal[:2] == ">=" else ratio <= want) else "NO"
    elif goal:
        met = "?"
    print("%-56s %12s %12s %10s %8s %6s" % (
        label + " (" + unit + ")", fmt(a), fmt(b), "%.2fx" % ratio if ratio is not None else "-",
        goal.replace(">=", ">= ").replace("<=", "<= ") + "x" if goal else "", met))
print("keys after the disk load: latch %s, etcd %s (want %d each)" % (
    keys.get("latch"), keys.get("etcd"), disk_keys))
if quick:
    print("QUICK=1: every workload ran for a few seconds and the disk figure is after %d keys"
          " (etcd's two preallocated 64 MB WAL segments dominate at that size); not the figures"
          " the goals are judged on" % disk_keys)
PY
if ! grep -q "latch $DISK_KEYS, etcd $DISK_KEYS" "$OUT/table.txt"; then failed=1; fi
echo "compare-etcd: raw results in $OUT" >&2
exit $failed
