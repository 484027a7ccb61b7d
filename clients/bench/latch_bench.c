/*
 * latch_bench.c — latch-bench: a load generator that speaks etcd's v3 gRPC API, so the same
 * binary measures latch and etcd. `latch-bench --help` documents it; docs/benchmarks.md
 * records what it measured and scripts/compare-etcd.sh runs it against both.
 *
 * This file: options, connections, the request slots and their refill, the unary workloads
 * (put, get, txn) and the report. lb_streams.c: watch and lease keep-alive. lb_locks.c: lock
 * and failover on latch's native API (latch.v1).
 */
#define _POSIX_C_SOURCE 200809L

#include "latch_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"

static const char usage_text[] =
    "usage: latch-bench [options] WORKLOAD\n"
    "\n"
    "A load generator for the etcd v3 gRPC API: it runs unchanged against latch and etcd.\n"
    "\n"
    "Workloads:\n"
    "  put     Put key (from the key space) = value of --val-size bytes\n"
    "  get     Range of one key from the key space (--consistency l or s); keys that are\n"
    "          missing are counted as misses, not errors (load them with put first)\n"
    "  txn     Txn: if mod_revision(key) < 2^63-1 (always true) then --txn-ops puts on\n"
    "          consecutive keys, else a Range; a Txn that does not succeed is an error\n"
    "  watch   --watchers Watch calls on the key prefix, then --clients writers put keys;\n"
    "          latency is put -> event at each watcher (the value carries the send time);\n"
    "          every watcher must see every acknowledged put (else an error)\n"
    "  lease   one lease per client (LeaseGrant, --lease-ttl), then LeaseKeepAlive\n"
    "          requests on one LeaseKeepAlive stream per connection; revoked at the end\n"
    "  lock    latch.v1 only: one session per client (SessionOpen), all contending for one\n"
    "          lock: each operation is Acquire (waiting) -> Release; latency is Acquire's\n"
    "          (sent -> granted), plus the cycle and the hand-off (the previous holder's\n"
    "          Release sent -> a waiter's grant); a fencing token not above the previous\n"
    "          grant's is an error\n"
    "  failover  latch.v1 only: --total rounds (default 3) of election fail-over: A wins\n"
    "          Campaign with a session of --session-ttl (default 2 s) that it never renews;\n"
    "          B campaigns and an Observe stream watches; latency is B's Campaign answer\n"
    "          (and Observe's message naming B) past A's nominal expiry (SessionOpen sent\n"
    "          + TTL)\n"
    "\n"
    "Options (VALUE also as --opt=VALUE):\n"
    "  --endpoints H:P,...  endpoints (default 127.0.0.1:2379); connection i goes to\n"
    "                       endpoint i mod n (http:// or bare host:port; no TLS)\n"
    "  --target-leader      ask each endpoint for Status and use only the leader\n"
    "  --conns N            gRPC connections (HTTP/2), default 1\n"
    "  --clients N          requests in flight in total (each client: one at a time,\n"
    "                       bound to connection i mod conns); default: one per connection\n"
    "  --inflight K         or: requests in flight per connection (clients = conns x K)\n"
    "  --key-size B         key bytes, default 16: prefix + zero-padded key number\n"
    "  --key-prefix S       default \"bench/\"\n"
    "  --val-size B         value bytes, default 256\n"
    "  --key-space N        key numbers 0..N-1, default 100000\n"
    "  --sequential-keys    key numbers 0,1,2,... (mod key space) instead of random\n"
    "  --seed N             seed of the key choice (default 1): same seed, same key sequence\n"
    "  --total N            requests to send (default 10000 without --duration)\n"
    "  --duration T         or: send for T (\"10s\", \"500ms\", \"2m\"; a number is seconds)\n"
    "  --rate R             start at most R requests/s (latency counts from the intended\n"
    "                       start, so a server that falls behind shows it)\n"
    "  --consistency l|s    get: linearizable (default) or serializable\n"
    "  --watchers N         watch: watchers (default 1), on connections after the writers'\n"
    "  --watch-wait T       watch: time allowed for the last events (default 10s)\n"
    "  --txn-ops N          txn: puts per Txn (default 1, at most 64)\n"
    "  --lease-ttl S        lease: TTL of the leases (default 60)\n"
    "  --lock-name S        lock, failover: the lock / election name (default: one per run)\n"
    "  --session-ttl S      lock, failover: TTL of the sessions (default 600 / 2)\n"
    "  --timeout T          deadline of each request (default 60s)\n"
    "  --max-errors N       stop sending after N failed requests (default 100)\n"
    "  -o json              print one JSON line instead of the text report\n"
    "  -h, --help           this text\n"
    "\n"
    "Report: operations, seconds (first start to last answer), ops/s, latency mean, p50,\n"
    "p90, p99, p99.9 and max in ms (log-bucketed histogram, within 1%). Exit status 0 when\n"
    "every request succeeded and at least one was made; 1 on a connection failure or any\n"
    "failed request (the count and the first error are printed); 2 on bad usage.\n";

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lb_error(struct lb_bench *b, const char *fmt, ...)
{
    b->errors++;
    if (b->first_error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
    }
    if (b->errors >= b->o.max_errors) {
        b->stopping = true;
    }
}

static void *scratch_alloc(void *data, size_t size)
{
    struct lb_bench *b = data;
    size_t at = (b->scratch_used + 15) & ~(size_t)15;
    if (at <= b->scratch_cap && size <= b->scratch_cap - at) {
        b->scratch_used = at + size;
        return b->scratch + at;
    }
    return malloc(size); /* a response larger than the scratch area */
}

static void scratch_free(void *data, void *p)
{
    struct lb_bench *b = data;
    uint8_t *q = p;
    if (q >= b->scratch && q < b->scratch + b->scratch_cap) {
        return;
    }
    free(p);
}

ProtobufCMessage *
lb_unpack(struct lb_bench *b, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n)
{
    ProtobufCAllocator a = {.alloc = scratch_alloc, .free = scratch_free, .allocator_data = b};
    b->scratch_used = 0;
    return protobuf_c_message_unpack(d, &a, n, p);
}

void lb_unpacked_free(struct lb_bench *b, ProtobufCMessage *m)
{
    ProtobufCAllocator a = {.alloc = scratch_alloc, .free = scratch_free, .allocator_data = b};
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, &a);
    }
    b->scratch_used = 0;
}

size_t lb_pack(struct lb_bench *b, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    LATCH_ASSERT(n <= b->req_cap);
    return protobuf_c_message_pack(m, b->req);
}

void lb_key_at(const struct lb_bench *b, uint64_t idx, uint8_t *out)
{
    size_t plen = strlen(b->o.key_prefix);
    memcpy(out, b->o.key_prefix, plen);
    size_t width = b->o.key_size - plen;
    for (size_t i = width; i > 0; i--) { /* zero-padded decimal, right-aligned */
        out[plen + i - 1] = (uint8_t)('0' + idx % 10);
        idx /= 10;
    }
}

uint64_t lb_next_key(struct lb_bench *b)
{
    uint64_t n = b->key_n++;
    uint64_t idx = b->o.sequential_keys ? n % b->o.key_space : splitmix64(&b->rng) % b->o.key_space;
    lb_key_at(b, idx, b->key);
    return idx;
}

static void timer_noop(uv_timer_t *t)
{
    (void)t;
}

bool lb_run_until(struct lb_bench *b, bool (*done)(struct lb_bench *), uint64_t timeout_ns)
{
    uint64_t end = now_ns() + timeout_ns;
    uv_timer_t tick;
    uv_timer_init(&b->loop, &tick);
    uv_timer_start(&tick, timer_noop, 10, 10); /* so that UV_RUN_ONCE returns to check */
    bool ok = true;
    while (!done(b)) {
        if (now_ns() >= end) {
            ok = false;
            break;
        }
        uv_run(&b->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&b->loop, UV_RUN_NOWAIT);
    return ok;
}

/* ---- options ------------------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0') {
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/* "10s", "500ms", "2m", "1.5" (seconds) -> ns. */
static int parse_duration(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1e9;
    if (errno != 0 || end == s || v < 0) {
        return -1;
    }
    if (strcmp(end, "ms") == 0) {
        mul = 1e6;
    } else if (strcmp(end, "m") == 0) {
        mul = 60e9;
    } else if (strcmp(end, "s") != 0 && *end != '\0') {
        return -1;
    }
    if (v * mul > 1e15) { /* 11 days: a typo */
        return -1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

static int split_endpoints(char *arg, struct lb_opts *o)
{
    o->endpoints_count = 0;
    for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->endpoints_count == LB_ENDPOINTS_MAX || strlen(tok) >= API_CHANNEL_ENDPOINT_MAX ||
            strncmp(tok, "https://", 8) == 0) {
            return -1;
        }
        o->endpoints[o->endpoints_count++] = tok;
    }
    return o->endpoints_count > 0 ? 0 : -1;
}

static int parse_workload(const char *s, enum lb_workload *w)
{
    static const struct {
        const char *name;
        enum lb_workload w;
    } names[] = {{"put", LB_PUT},
                 {"get", LB_GET},
                 {"range", LB_GET},
                 {"txn", LB_TXN},
                 {"watch", LB_WATCH},
                 {"lease", LB_LEASE},
                 {"lease-keepalive", LB_LEASE},
                 {"lock", LB_LOCK},
                 {"failover", LB_FAILOVER}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *w = names[i].w;
            return 0;
        }
    }
    return -1;
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "latch-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(latch-bench --help for the options)\n");
    exit(2);
}

static void opts_defaults(struct lb_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->workload = LB_PUT;
    o->conns = 1;
    o->key_size = 16;
    o->key_prefix = "bench/";
    o->val_size = 256;
    o->key_space = 100000;
    o->watchers = 1;
    o->watch_wait_ns = 10ull * 1000000000ull;
    o->seed = 1;
    o->txn_ops = 1;
    o->lease_ttl_s = 60;
    o->timeout_ms = 60000;
    o->max_errors = 100;
}

/* One "--name value" option; returns -1 for an unknown name, -2 for a bad value. */
static int parse_opt(struct lb_opts *o, const char *name, char *v, uint64_t *clients)
{
    uint64_t u = 0;
    int rc = 0;
    if (strcmp(name, "endpoints") == 0) {
        rc = split_endpoints(v, o);
    } else if (strcmp(name, "conns") == 0) {
        rc = parse_u64(v, 1, LB_CONNS_MAX, &u);
        o->conns = (unsigned)u;
    } else if (strcmp(name, "clients") == 0) {
        rc = parse_u64(v, 1, LB_CLIENTS_MAX, clients);
    } else if (strcmp(name, "inflight") == 0) {
        rc = parse_u64(v, 1, LB_CLIENTS_MAX, &u);
        o->inflight = (unsigned)u;
    } else if (strcmp(name, "key-size") == 0) {
        rc = parse_u64(v, 1, LB_KEY_SIZE_MAX, &u);
        o->key_size = (size_t)u;
    } else if (strcmp(name, "val-size") == 0) {
        rc = parse_u64(v, 0, LB_VAL_SIZE_MAX, &u);
        o->val_size = (size_t)u;
    } else if (strcmp(name, "key-space") == 0) {
        rc = parse_u64(v, 1, UINT64_MAX / 2, &o->key_space);
    } else if (strcmp(name, "key-prefix") == 0) {
        o->key_prefix = v;
    } else if (strcmp(name, "seed") == 0) {
        rc = parse_u64(v, 0, UINT64_MAX, &o->seed);
    } else if (strcmp(name, "total") == 0) {
        rc = parse_u64(v, 1, UINT64_MAX / 2, &o->total);
    } else if (strcmp(name, "duration") == 0) {
        rc = parse_duration(v, &o->duration_ns);
    } else if (strcmp(name, "watch-wait") == 0) {
        rc = parse_duration(v, &o->watch_wait_ns);
    } else if (strcmp(name, "timeout") == 0) {
        rc = parse_duration(v, &u);
        o->timeout_ms = u / 1000000;
    } else if (strcmp(name, "rate") == 0) {
        char *end;
        o->rate = strtod(v, &end);
        rc = (*end != '\0' || !(o->rate > 0) || o->rate > 1e9) ? -1 : 0;
    } else if (strcmp(name, "consistency") == 0) {
        rc = (strcmp(v, "l") == 0 || strcmp(v, "s") == 0) ? 0 : -1;
        o->serializable = strcmp(v, "s") == 0;
    } else if (strcmp(name, "watchers") == 0) {
        rc = parse_u64(v, 1, LB_WATCHERS_MAX, &u);
        o->watchers = (unsigned)u;
    } else if (strcmp(name, "txn-ops") == 0) {
        rc = parse_u64(v, 1, LB_TXN_OPS_MAX, &u);
        o->txn_ops = (unsigned)u;
    } else if (strcmp(name, "lease-ttl") == 0) {
        rc = parse_u64(v, 1, 1000000, &u);
        o->lease_ttl_s = (int64_t)u;
    } else if (strcmp(name, "lock-name") == 0) {
        o->lock_name = v;
        rc = v[0] != '\0' && strlen(v) <= LB_NAME_MAX ? 0 : -1;
    } else if (strcmp(name, "session-ttl") == 0) {
        rc = parse_u64(v, 1, 1000000, &u);
        o->session_ttl_s = (int64_t)u;
    } else if (strcmp(name, "max-errors") == 0) {
        rc = parse_u64(v, 1, UINT64_MAX, &o->max_errors);
    } else if (strcmp(name, "o") == 0) {
        rc = strcmp(v, "json") == 0 ? 0 : (strcmp(v, "text") == 0 ? 0 : -1);
        o->json = strcmp(v, "json") == 0;
    } else {
        return -1;
    }
    return rc == 0 ? 0 : -2;
}

/* Digits of n in decimal (at least 1). */
static size_t digits(uint64_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static void opts_check(struct lb_opts *o, uint64_t clients, bool have_workload)
{
    if (!have_workload) {
        usage_error("%s", "no workload given (put, get, txn, watch, lease, lock or failover)");
    }
    if (clients != 0 && o->inflight != 0 && clients != (uint64_t)o->conns * o->inflight) {
        usage_error("%s", "--clients and --inflight disagree (clients = conns x inflight)");
    }
    if (clients == 0) { /* one per connection unless --inflight says more */
        clients = (uint64_t)o->conns * (o->inflight != 0 ? o->inflight : 1);
    }
    if (clients > LB_CLIENTS_MAX) {
        usage_error("%s", "too many clients (conns x inflight)");
    }
    o->clients = (unsigned)clients;
    if (o->total != 0 && o->duration_ns != 0) {
        usage_error("%s", "--total and --duration exclude each other");
    }
    if (o->workload == LB_FAILOVER && o->duration_ns != 0) {
        usage_error("%s", "failover runs --total rounds, not a --duration");
    }
    if (o->total == 0 && o->duration_ns == 0) {
        o->total = o->workload == LB_FAILOVER ? 3 : 10000;
    }
    size_t plen = strlen(o->key_prefix);
    if (plen >= o->key_size || o->key_size - plen < digits(o->key_space - 1)) {
        usage_error("%s", "--key-size too small for --key-prefix plus the key numbers");
    }
    if (o->workload == LB_TXN && o->key_space < o->txn_ops) {
        usage_error("%s", "--key-space must hold --txn-ops keys");
    }
    if (o->workload == LB_WATCH && (o->val_size < 16 || plen == 0)) {
        usage_error("%s", "watch needs --val-size >= 16 and a --key-prefix");
    }
    if (o->endpoints_count == 0) {
        static char def[] = "127.0.0.1:2379";
        o->endpoints[0] = def;
        o->endpoints_count = 1;
    }
}

static void parse_args(int argc, char **argv, struct lb_opts *o)
{
    opts_defaults(o);
    uint64_t clients = 0;
    bool have_workload = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (strcmp(a, "--target-leader") == 0 || strcmp(a, "--sequential-keys") == 0) {
            *(a[2] == 't' ? &o->target_leader : &o->sequential_keys) = true;
            continue;
        }
        if (a[0] != '-') {
            if (have_workload || parse_workload(a, &o->workload) != 0) {
                usage_error("unknown workload or extra argument '%s'", a);
            }
            have_workload = true;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        char namebuf[32];
        char *v = strchr(a, '=');
        if (v != NULL) {
            size_t n = (size_t)(v - name);
            if (n >= sizeof(namebuf)) {
                usage_error("unknown option '%s'", a);
            }
            memcpy(namebuf, name, n);
            namebuf[n] = '\0';
            name = namebuf;
            v++;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            usage_error("option '%s' needs a value", a);
        }
        int rc = parse_opt(o, name, v, &clients);
        if (rc == -1) {
            usage_error("unknown option '%s'", a);
        } else if (rc == -2) {
            usage_error("bad value for '%s'", a);
        }
    }
    opts_check(o, clients, have_workload);
}

/* ---- connections ----------------------------------------------------------------------- */

static void die_conn(const char *endpoint, const char *why)
{
    fprintf(stderr, "latch-bench: cannot connect to %s: %s\n", endpoint,
            why[0] ? why : "timed out");
    exit(1);
}

/* Status of endpoint through a blocking channel: true when it is the leader. */
static bool endpoint_is_leader(struct lb_bench *b, const char *endpoint)
{
    const char *eps[] = {endpoint};
    struct api_channel_config cfg = {.endpoints = eps, .endpoints_count = 1};
    struct api_blocking *bl;
    char err[256];
    if (api_blocking_connect(&cfg, 5000, &bl, err, sizeof(err)) != 0) {
        die_conn(endpoint, err);
    }
    struct api_call_opts co = {.timeout_ms = 10000};
    int status = 0;
    char *msg = NULL;
    uint8_t *resp = NULL;
    size_t len = 0;
    bool leader = false;
    if (api_blocking_unary(bl, "/etcdserverpb.Maintenance/Status", NULL, 0, &co, &status, &msg,
                           &resp, &len) != 0 ||
        status != 0) {
        fprintf(stderr, "latch-bench: Status on %s failed: %s\n", endpoint, msg ? msg : "");
        exit(1);
    }
    Etcdserverpb__StatusResponse *st = (Etcdserverpb__StatusResponse *)lb_unpack(
        b, &etcdserverpb__status_response__descriptor, resp, len);
    if (st != NULL && st->header != NULL && st->leader != 0) {
        leader = st->leader == st->header->member_id;
    }
    lb_unpacked_free(b, st != NULL ? &st->base : NULL);
    free(msg);
    free(resp);
    api_blocking_free(bl);
    return leader;
}

static void target_leader(struct lb_bench *b)
{
    for (size_t i = 0; i < b->o.endpoints_count; i++) {
        if (endpoint_is_leader(b, b->o.endpoints[i])) {
            b->o.endpoints[0] = b->o.endpoints[i];
            b->o.endpoints_count = 1;
            return;
        }
    }
    fprintf(stderr, "latch-bench: --target-leader: no endpoint reports itself as the leader\n");
    exit(1);
}

static bool conns_settled(struct lb_bench *b)
{
    for (unsigned i = 0; i < b->o.conns; i++) {
        enum api_channel_state st = api_channel_state(b->conns[i].ch);
        if (st == API_CHANNEL_TRANSIENT_FAILURE) {
            die_conn(b->conns[i].endpoint, api_channel_last_error(b->conns[i].ch));
        }
        if (st != API_CHANNEL_READY) {
            return false;
        }
    }
    return true;
}

static void conns_open(struct lb_bench *b)
{
    b->conns = calloc(b->o.conns, sizeof(*b->conns));
    if (b->conns == NULL) {
        fprintf(stderr, "latch-bench: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < b->o.conns; i++) {
        struct lb_conn *c = &b->conns[i];
        c->b = b;
        c->index = i;
        c->endpoint = b->o.endpoints[i % b->o.endpoints_count];
        const char *eps[] = {c->endpoint};
        struct api_channel_config cfg = {
            .endpoints = eps, .endpoints_count = 1, .seed = b->o.seed + i + 1};
        if (api_channel_new(&b->loop, &cfg, &c->ch) != 0) {
            usage_error("bad endpoint '%s'", c->endpoint);
        }
    }
    if (!lb_run_until(b, conns_settled, 15ull * 1000000000ull)) {
        for (unsigned i = 0; i < b->o.conns; i++) {
            if (api_channel_state(b->conns[i].ch) != API_CHANNEL_READY) {
                die_conn(b->conns[i].endpoint, api_channel_last_error(b->conns[i].ch));
            }
        }
    }
}

static void conns_close(struct lb_bench *b)
{
    for (unsigned i = 0; i < b->o.conns; i++) {
        api_channel_close(b->conns[i].ch, NULL, NULL);
    }
    uv_run(&b->loop, UV_RUN_DEFAULT);
}

/* ---- the request slots ---------------------------------------------------------------- */

static void slots_make(struct lb_bench *b)
{
    b->slots = calloc(b->o.clients, sizeof(*b->slots));
    b->free_ring = calloc(b->o.clients, sizeof(*b->free_ring));
    if (b->slots == NULL || b->free_ring == NULL) {
        fprintf(stderr, "latch-bench: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < b->o.clients; i++) {
        struct lb_slot *s = &b->slots[i];
        s->b = b;
        s->index = i;
        s->c = &b->conns[i % b->o.conns];
        s->c->slots++;
        b->free_ring[i] = i;
    }
    b->free_head = 0;
    b->free_count = b->o.clients;
}

static bool may_start(struct lb_bench *b, uint64_t now)
{
    if (b->stopping || b->free_count == 0) {
        return false;
    }
    if (b->o.total != 0 && b->started >= b->o.total) {
        return false;
    }
    if (b->o.duration_ns != 0 && now - b->t_start_ns >= b->o.duration_ns) {
        b->stopping = true;
        return false;
    }
    if (b->o.rate > 0) {
        double allowed = (double)(now - b->t_start_ns) / 1e9 * b->o.rate;
        return (double)b->started < allowed + 1.0;
    }
    return true;
}

static int start_op(struct lb_slot *s);

static void fill(struct lb_bench *b)
{
    uint64_t now = now_ns();
    if (b->in_fill) {
        return;
    }
    b->in_fill = true;
    while (may_start(b, now)) {
        unsigned i = b->free_ring[b->free_head];
        b->free_head = (b->free_head + 1) % b->o.clients;
        b->free_count--;
        struct lb_slot *s = &b->slots[i];
        s->busy = true;
        s->t0_ns =
            b->o.rate > 0 ? b->t_start_ns + (uint64_t)((double)b->started * 1e9 / b->o.rate) : now;
        b->started++;
        int rc = start_op(s);
        if (rc != 0) {
            lb_error(b, "cannot start a request: %s", latch_strerror(rc));
            lb_slot_done(s, false, now);
            break; /* the timer tries again */
        }
    }
    b->in_fill = false;
}

void lb_slot_done(struct lb_slot *s, bool ok, uint64_t now)
{
    struct lb_bench *b = s->b;
    LATCH_ASSERT(s->busy);
    s->busy = false;
    b->done++;
    b->t_last_ns = now;
    if (ok) {
        struct latch_hist *h = b->o.workload == LB_WATCH  ? &b->put_hist
                               : b->o.workload == LB_LOCK ? &b->cycle_hist
                                                          : &b->hist;
        latch_hist_record(h, now > s->t0_ns ? now - s->t0_ns : 0);
    }
    unsigned tail = (b->free_head + b->free_count) % b->o.clients;
    b->free_ring[tail] = s->index;
    b->free_count++;
    if (b->o.rate == 0) {
        fill(b);
    }
}

/* Stream requests (lease keep-alives) have no deadline of their own: a slot waiting longer
 * than --timeout fails here, so that a lost answer cannot hang the run. */
static void expire_slots(struct lb_bench *b, uint64_t now)
{
    uint64_t limit = b->o.timeout_ms * 1000000ull;
    for (unsigned i = 0; i < b->o.clients; i++) {
        struct lb_slot *s = &b->slots[i];
        if (s->busy && now > s->t0_ns && now - s->t0_ns > limit) {
            lb_error(b, "no answer within the timeout (%" PRIu64 " ms)", b->o.timeout_ms);
            lb_slot_done(s, false, now);
        }
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct lb_bench *b = t->data;
    uint64_t now = now_ns();
    if (b->o.workload == LB_LEASE && now - b->last_expiry_scan_ns > 100000000ull) {
        b->last_expiry_scan_ns = now;
        expire_slots(b, now);
    }
    fill(b);
}

/* ---- put, get, txn ------------------------------------------------------------------------ */

/* Checks a unary answer of kind what; returns the unpacked message or NULL after an error. */
static ProtobufCMessage *answer(struct lb_bench *b,
                                const char *what,
                                int status,
                                const char *message,
                                const ProtobufCMessageDescriptor *d,
                                const uint8_t *resp,
                                size_t len)
{
    if (status != 0) {
        lb_error(b, "%s failed: %s (%d): %s", what, api_grpc_status_name(status), status, message);
        return NULL;
    }
    ProtobufCMessage *m = lb_unpack(b, d, resp, len);
    if (m == NULL) {
        lb_error(b, "%s: the response does not parse (%zu bytes)", what, len);
    }
    return m;
}

static void put_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    uint64_t now = now_ns();
    Etcdserverpb__PutResponse *r = (Etcdserverpb__PutResponse *)answer(
        b, "Put", status, message, &etcdserverpb__put_response__descriptor, resp, len);
    bool ok = r != NULL && r->header != NULL && r->header->revision > 0;
    if (r != NULL && !ok) {
        lb_error(b, "Put: the response has no header revision");
    }
    lb_unpacked_free(b, r ? &r->base : NULL);
    lb_slot_done(s, ok, now);
}

static void get_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    uint64_t now = now_ns();
    Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)answer(
        b, "Range", status, message, &etcdserverpb__range_response__descriptor, resp, len);
    if (r != NULL && r->n_kvs == 0) {
        b->misses++;
    }
    lb_unpacked_free(b, r ? &r->base : NULL);
    lb_slot_done(s, r != NULL, now);
}

static void txn_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    uint64_t now = now_ns();
    Etcdserverpb__TxnResponse *r = (Etcdserverpb__TxnResponse *)answer(
        b, "Txn", status, message, &etcdserverpb__txn_response__descriptor, resp, len);
    bool ok = r != NULL && r->succeeded && r->n_responses == b->o.txn_ops;
    if (r != NULL && !ok) {
        lb_error(b, "Txn: succeeded=%d with %zu responses (want true, %u)", (int)r->succeeded,
                 r->n_responses, b->o.txn_ops);
    }
    lb_unpacked_free(b, r ? &r->base : NULL);
    lb_slot_done(s, ok, now);
}

static int start_put(struct lb_slot *s, api_unary_cb cb)
{
    struct lb_bench *b = s->b;
    lb_next_key(b);
    if (b->o.workload == LB_WATCH) { /* the send time and this run's tag, for the watchers */
        memcpy(b->val, &s->t0_ns, 8);
        memcpy(b->val + 8, &b->run_tag, 8);
    }
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = (ProtobufCBinaryData){b->o.key_size, b->key};
    p.value = (ProtobufCBinaryData){b->o.val_size, b->val};
    size_t n = lb_pack(b, &p.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    return api_channel_unary(s->c->ch, "/etcdserverpb.KV/Put", b->req, n, &co, cb, s);
}

static int start_get(struct lb_slot *s)
{
    struct lb_bench *b = s->b;
    lb_next_key(b);
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = (ProtobufCBinaryData){b->o.key_size, b->key};
    r.serializable = b->o.serializable;
    size_t n = lb_pack(b, &r.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    return api_channel_unary(s->c->ch, "/etcdserverpb.KV/Range", b->req, n, &co, get_done, s);
}

static int start_txn(struct lb_slot *s)
{
    struct lb_bench *b = s->b;
    uint64_t first = lb_next_key(b);
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    cmp.key = (ProtobufCBinaryData){b->o.key_size, b->key};
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    cmp.mod_revision = INT64_MAX;
    Etcdserverpb__Compare *cmps[] = {&cmp};
    Etcdserverpb__PutRequest puts[LB_TXN_OPS_MAX];
    Etcdserverpb__RequestOp ops[LB_TXN_OPS_MAX];
    Etcdserverpb__RequestOp *okp[LB_TXN_OPS_MAX];
    for (unsigned i = 0; i < b->o.txn_ops; i++) {
        uint8_t *k = b->key + (size_t)i * b->o.key_size;
        lb_key_at(b, (first + i) % b->o.key_space, k);
        etcdserverpb__put_request__init(&puts[i]);
        puts[i].key = (ProtobufCBinaryData){b->o.key_size, k};
        puts[i].value = (ProtobufCBinaryData){b->o.val_size, b->val};
        etcdserverpb__request_op__init(&ops[i]);
        ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        ops[i].request_put = &puts[i];
        okp[i] = &ops[i];
    }
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
    get.key = cmp.key;
    Etcdserverpb__RequestOp fail_op = ETCDSERVERPB__REQUEST_OP__INIT;
    fail_op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    fail_op.request_range = &get;
    Etcdserverpb__RequestOp *failp[] = {&fail_op};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_compare = 1;
    t.compare = cmps;
    t.n_success = b->o.txn_ops;
    t.success = okp;
    t.n_failure = 1;
    t.failure = failp;
    size_t n = lb_pack(b, &t.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    return api_channel_unary(s->c->ch, "/etcdserverpb.KV/Txn", b->req, n, &co, txn_done, s);
}

static void
watch_put_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    put_done(status, message, resp, len, data);
    if (status == 0) {
        b->events_expected += b->o.watchers;
    }
}

static int start_op(struct lb_slot *s)
{
    switch (s->b->o.workload) {
    case LB_PUT:
        return start_put(s, put_done);
    case LB_GET:
        return start_get(s);
    case LB_TXN:
        return start_txn(s);
    case LB_WATCH:
        return start_put(s, watch_put_done);
    case LB_LEASE:
        return lb_lease_start(s);
    case LB_LOCK:
        return lb_lock_start(s);
    case LB_FAILOVER:
        break; /* runs its own rounds (lb_failover_run) */
    }
    return LATCH_EINVAL;
}

/* ---- the run and the report --------------------------------------------------------------- */

static bool run_over(struct lb_bench *b)
{
    bool no_more = b->stopping || (b->o.total != 0 && b->started >= b->o.total);
    if (b->o.duration_ns != 0 && now_ns() - b->t_start_ns >= b->o.duration_ns) {
        b->stopping = no_more = true;
    }
    return no_more && b->done == b->started;
}

static bool events_in(struct lb_bench *b)
{
    return b->events >= b->events_expected;
}

static void run(struct lb_bench *b)
{
    uv_timer_init(&b->loop, &b->timer);
    b->timer.data = b;
    b->t_start_ns = b->t_last_ns = now_ns();
    uv_timer_start(&b->timer, tick_cb, 1, b->o.rate > 0 ? 1 : 20);
    fill(b);
    uint64_t bound = b->o.duration_ns + (b->o.timeout_ms + 10000) * 1000000ull;
    if (b->o.total != 0) {
        bound = UINT64_MAX / 2; /* each request has its own deadline */
    }
    lb_run_until(b, run_over, bound);
    if (b->o.workload == LB_WATCH && !lb_run_until(b, events_in, b->o.watch_wait_ns)) {
        lb_error(b, "watch: %" PRIu64 " of %" PRIu64 " events did not arrive within the wait",
                 b->events_expected - b->events, b->events_expected);
    }
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, NULL);
}

static const char *workload_name(enum lb_workload w)
{
    static const char *const names[] = {"put", "get", "txn", "watch", "lease", "lock", "failover"};
    return names[w];
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_hist(FILE *f, const char *pre, const struct latch_hist *h)
{
    fprintf(f,
            ",\"%smean_ms\":%.3f,\"%sp50_ms\":%.3f,\"%sp90_ms\":%.3f,\"%sp99_ms\":%.3f,"
            "\"%sp999_ms\":%.3f,\"%smax_ms\":%.3f",
            pre, latch_hist_mean(h) / 1e6, pre, ms(latch_hist_percentile(h, 50)), pre,
            ms(latch_hist_percentile(h, 90)), pre, ms(latch_hist_percentile(h, 99)), pre,
            ms(latch_hist_percentile(h, 99.9)), pre, ms(h->max));
}

static void report_json(struct lb_bench *b, uint64_t ops, double secs)
{
    printf("{\"workload\":\"%s\",\"endpoints\":[", workload_name(b->o.workload));
    for (size_t i = 0; i < b->o.endpoints_count; i++) {
        printf(i > 0 ? "," : "");
        json_string(stdout, b->o.endpoints[i]);
    }
    printf("]");
    printf(",\"conns\":%u,\"clients\":%u,\"ops\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"seconds\":%.3f,\"ops_per_s\":%.1f",
           b->o.conns, b->o.clients, ops, b->errors, secs, secs > 0 ? (double)ops / secs : 0.0);
    json_hist(stdout, "", &b->hist);
    if (b->o.workload == LB_GET) {
        printf(",\"misses\":%" PRIu64, b->misses);
    }
    if (b->o.workload == LB_WATCH) {
        printf(",\"watchers\":%u,\"events\":%" PRIu64 ",\"events_expected\":%" PRIu64
               ",\"foreign_events\":%" PRIu64,
               b->o.watchers, b->events, b->events_expected, b->foreign_events);
        json_hist(stdout, "put_", &b->put_hist);
    }
    if (b->o.workload == LB_LOCK) {
        printf(",\"lock\":");
        json_string(stdout, b->lock_name);
        printf(",\"session_ttl_s\":%" PRId64 ",\"last_token\":%" PRId64 ",\"handoffs\":%" PRIu64,
               b->session_ttl_s, b->last_token, b->handoff_hist.count);
        json_hist(stdout, "cycle_", &b->cycle_hist);
        json_hist(stdout, "handoff_", &b->handoff_hist);
    }
    if (b->o.workload == LB_FAILOVER) {
        printf(",\"session_ttl_s\":%" PRId64 ",\"from_renewal_max_ms\":%.3f", b->session_ttl_s,
               ms(b->from_renewal_max_ns));
        json_hist(stdout, "observe_", &b->observe_hist);
    }
    printf(",\"first_error\":");
    json_string(stdout, b->first_error);
    printf("}\n");
}

static void report_hist(const char *what, const struct latch_hist *h)
{
    printf("  %s ms: mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", what,
           latch_hist_mean(h) / 1e6, ms(latch_hist_percentile(h, 50)),
           ms(latch_hist_percentile(h, 90)), ms(latch_hist_percentile(h, 99)),
           ms(latch_hist_percentile(h, 99.9)), ms(h->max));
}

static void report_text(struct lb_bench *b, uint64_t ops, double secs)
{
    printf("latch-bench %s: %" PRIu64 " ops in %.3f s = %.0f ops/s; %u conns, %u clients to %s%s;"
           " errors %" PRIu64 "\n",
           workload_name(b->o.workload), ops, secs, secs > 0 ? (double)ops / secs : 0.0, b->o.conns,
           b->o.clients, b->o.endpoints[0], b->o.endpoints_count > 1 ? ",..." : "", b->errors);
    if (b->o.workload == LB_WATCH) {
        printf("  %u watchers: %" PRIu64 " of %" PRIu64 " events (%" PRIu64 " foreign)\n",
               b->o.watchers, b->events, b->events_expected, b->foreign_events);
        report_hist("put -> event", &b->hist);
        report_hist("put ack", &b->put_hist);
    } else if (b->o.workload == LB_LOCK) {
        printf("  lock %s, sessions of %" PRId64 " s; last token %" PRId64 "; %" PRIu64
               " hand-offs\n",
               b->lock_name, b->session_ttl_s, b->last_token, b->handoff_hist.count);
        report_hist("acquire", &b->hist);
        report_hist("cycle", &b->cycle_hist);
        report_hist("hand-off", &b->handoff_hist);
    } else if (b->o.workload == LB_FAILOVER) {
        printf("  lost session's TTL %" PRId64 " s; last renewal -> new leader at most %.3f ms\n",
               b->session_ttl_s, ms(b->from_renewal_max_ns));
        report_hist("expiry -> Campaign won", &b->hist);
        report_hist("expiry -> Observe", &b->observe_hist);
    } else {
        report_hist("latency", &b->hist);
    }
    if (b->o.workload == LB_GET) {
        printf("  misses (key not found): %" PRIu64 "\n", b->misses);
    }
}

static void report(struct lb_bench *b)
{
    uint64_t ops = b->o.workload == LB_WATCH  ? b->put_hist.count
                   : b->o.workload == LB_LOCK ? b->cycle_hist.count
                                              : b->hist.count;
    double secs = (double)(b->t_last_ns - b->t_start_ns) / 1e9;
    if (b->o.json) {
        report_json(b, ops, secs);
    } else {
        report_text(b, ops, secs);
    }
    fflush(stdout);
    if (b->errors > 0) {
        fprintf(stderr, "latch-bench: %" PRIu64 " requests failed; the first: %s\n", b->errors,
                b->first_error);
    } else if (ops == 0) {
        fprintf(stderr, "latch-bench: no request completed\n");
    }
}

static void buffers_make(struct lb_bench *b)
{
    size_t kv = b->o.key_size + b->o.val_size + 64;
    b->req_cap = kv * (b->o.txn_ops + 1) * 2 + 1024;
    b->req = malloc(b->req_cap);
    b->key = calloc(b->o.txn_ops, b->o.key_size);
    b->val = malloc(b->o.val_size + 16);
    b->scratch_cap = (size_t)256 << 10;
    b->scratch = malloc(b->scratch_cap);
    if (b->req == NULL || b->key == NULL || b->val == NULL || b->scratch == NULL) {
        fprintf(stderr, "latch-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < b->o.val_size; i++) {
        b->val[i] = (uint8_t)('a' + i % 26);
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    static struct lb_bench bench; /* two histograms: too large for the stack */
    struct lb_bench *b = &bench;
    parse_args(argc, argv, &b->o);
    b->rng = b->o.seed;
    b->run_tag = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
    latch_hist_init(&b->hist);
    latch_hist_init(&b->put_hist);
    latch_hist_init(&b->cycle_hist);
    latch_hist_init(&b->handoff_hist);
    latch_hist_init(&b->observe_hist);
    buffers_make(b);
    if (uv_loop_init(&b->loop) != 0) {
        fprintf(stderr, "latch-bench: no event loop\n");
        return 1;
    }
    if (b->o.target_leader) {
        target_leader(b);
    }
    conns_open(b);
    slots_make(b);
    int rc = 0;
    if (b->o.workload == LB_WATCH) {
        rc = lb_watch_setup(b);
    } else if (b->o.workload == LB_LEASE) {
        rc = lb_lease_setup(b);
    } else if (b->o.workload == LB_LOCK) {
        rc = lb_lock_setup(b);
    }
    if (rc == 0 && b->o.workload == LB_FAILOVER) {
        lb_failover_run(b);
    } else if (rc == 0) {
        run(b);
    }
    if (b->o.workload == LB_WATCH) {
        lb_watch_finish(b);
    } else if (b->o.workload == LB_LEASE) {
        lb_lease_finish(b);
    } else if (b->o.workload == LB_LOCK) {
        lb_lock_finish(b);
    }
    report(b);
    conns_close(b);
    uv_loop_close(&b->loop);
    uint64_t ops = b->o.workload == LB_WATCH  ? b->put_hist.count
                   : b->o.workload == LB_LOCK ? b->cycle_hist.count
                                              : b->hist.count;
    bool ok = rc == 0 && b->errors == 0 && ops > 0;
    free(b->slots);
    free(b->free_ring);
    free(b->conns);
    free(b->watchers);
    free(b->lease_refs);
    free(b->req);
    free(b->key);
    free(b->val);
    free(b->scratch);
    return ok ? 0 : 1;
}
