/*
 * latch_bench.h — latch-bench's pieces shared by its files (clients/bench/): the options, the
 * run state, and the workloads' entry points. Folder-private: nothing outside clients/bench/
 * includes it.
 *
 * One thread, one libuv loop. Every request is asynchronous on api/grpc_client; a run keeps a
 * fixed number of request slots (the --clients), each bound to one connection, so the
 * in-flight window of a connection is the number of its slots. Latencies go into a
 * log-bucketed histogram (clients/latch_hist.h); nothing is allocated per operation by
 * latch-bench itself (requests are packed into one buffer the channel copies, responses are
 * unpacked into a reused scratch area).
 */
#ifndef CLIENTS_BENCH_LATCH_BENCH_H
#define CLIENTS_BENCH_LATCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc_client.h"
#include "latch_hist.h"

enum lb_workload { LB_PUT, LB_GET, LB_TXN, LB_WATCH, LB_LEASE, LB_LOCK, LB_FAILOVER };

#define LB_ENDPOINTS_MAX 16
#define LB_CONNS_MAX     10000u
#define LB_CLIENTS_MAX   100000u
#define LB_WATCHERS_MAX  100000u
#define LB_KEY_SIZE_MAX  ((size_t)64 << 10)
#define LB_VAL_SIZE_MAX  ((size_t)1 << 20)
#define LB_TXN_OPS_MAX   64u
#define LB_ERROR_MAX     512
#define LB_NAME_MAX      200 /* bytes of --lock-name */

struct lb_opts {
    enum lb_workload workload;
    const char *endpoints[LB_ENDPOINTS_MAX]; /* point into argv */
    size_t endpoints_count;
    bool target_leader;
    unsigned conns;
    unsigned clients;  /* request slots in total */
    unsigned inflight; /* per connection; 0 when --clients was given */
    size_t key_size;
    size_t val_size;
    uint64_t key_space;
    bool sequential_keys;
    const char *key_prefix;
    uint64_t total; /* operations to start; 0 with a duration */
    uint64_t duration_ns;
    bool serializable;
    unsigned watchers;
    uint64_t watch_wait_ns; /* after the last put, how long events may still arrive */
    double rate;            /* operations/s started at most; 0 = as fast as answers come */
    uint64_t seed;
    unsigned txn_ops;
    int64_t lease_ttl_s;
    const char *lock_name; /* lock, failover: the lock / election name; NULL: made per run */
    int64_t session_ttl_s; /* lock, failover: sessions' TTL; 0: the workload's default */
    uint64_t timeout_ms;   /* per request */
    uint64_t max_errors;   /* stop starting requests after this many */
    bool json;
};

struct lb_bench;

/* One connection: an api_channel to one endpoint. */
struct lb_conn {
    struct lb_bench *b;
    struct api_channel *ch;
    const char *endpoint;
    unsigned index;
    unsigned slots;           /* request slots bound to it: its in-flight window */
    struct api_ccall *stream; /* the lease workload's LeaseKeepAlive call */
    bool stream_done;
};

/* One request slot: at most one request in flight at a time. */
struct lb_slot {
    struct lb_bench *b;
    struct lb_conn *c;
    unsigned index;
    bool busy;
    uint64_t t0_ns;     /* start (or intended start with --rate) of the request in flight */
    int64_t lease_id;   /* the lease workload's lease; the lock workload's session */
    int64_t token;      /* lock: the grant held (0: none) */
    uint64_t acq_t0_ns; /* lock: when the Acquire in flight was sent */
};

/* One watcher of the watch workload: a Watch call with one watch on the key prefix. */
struct lb_watcher {
    struct lb_bench *b;
    struct api_ccall *call;
    bool created;
    bool done;
};

struct lb_lease_ref {
    int64_t id;
    unsigned slot;
};

struct lb_bench {
    struct lb_opts o;
    uv_loop_t loop;
    uv_timer_t timer;
    struct lb_conn *conns;
    struct lb_slot *slots;
    unsigned *free_ring; /* indices of idle slots, FIFO */
    unsigned free_head, free_count;
    struct lb_watcher *watchers;
    struct lb_lease_ref *lease_refs; /* sorted by id */

    uint64_t rng;
    uint64_t key_n; /* keys handed out */
    uint8_t *key;   /* key_size bytes (plus room for txn's extra keys) */
    uint8_t *val;   /* val_size bytes */
    uint8_t *req;   /* packed request */
    size_t req_cap;
    uint8_t *scratch; /* protobuf-c unpack area */
    size_t scratch_cap, scratch_used;
    uint64_t run_tag; /* watch values carry it, to tell our events from others' */

    uint64_t started, done, errors, misses;
    uint64_t events, events_expected, foreign_events;
    uint64_t setup_pending; /* grants, creates, revokes still out */
    unsigned watchers_created, watchers_done;
    bool closing; /* streams are being ended on purpose */
    bool in_fill; /* fill() is on the stack: a slot released inside does not recurse */
    char first_error[LB_ERROR_MAX];
    bool stopping;                  /* no new request starts */
    uint64_t t_start_ns, t_last_ns; /* first start, last answer */
    uint64_t last_expiry_scan_ns;
    struct latch_hist hist; /* the workload's latency (lock: Acquire; failover: see lb_locks.c) */
    struct latch_hist put_hist; /* watch: put acknowledgement latency */

    /* lock and failover (lb_locks.c) */
    char lock_name[LB_NAME_MAX + 32];
    int64_t last_token;             /* the latest grant's fencing token */
    uint64_t last_release_ns;       /* when the latest Release was sent */
    int64_t session_ttl_s;          /* the TTL the server granted (failover: the lost session's) */
    struct latch_hist cycle_hist;   /* lock: Acquire sent -> Release answered */
    struct latch_hist handoff_hist; /* lock: Release sent -> the next waiter's grant */
    struct latch_hist observe_hist; /* failover: expiry -> Observe shows the new leader */
    uint64_t from_renewal_max_ns;   /* failover: the longest last renewal -> new leader */
};

/* Records a failure: counts it, keeps the first message, stops new requests at max_errors. */
void lb_error(struct lb_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A protobuf-c allocator over the scratch area (reset before each unpack). */
ProtobufCMessage *
lb_unpack(struct lb_bench *b, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n);
void lb_unpacked_free(struct lb_bench *b, ProtobufCMessage *m);

/* Packs m into b->req; returns its length. */
size_t lb_pack(struct lb_bench *b, const ProtobufCMessage *m);

/* Writes the next key into b->key (key_size bytes) and returns its index in the key space. */
uint64_t lb_next_key(struct lb_bench *b);
/* Writes key number idx into out (key_size bytes). */
void lb_key_at(const struct lb_bench *b, uint64_t idx, uint8_t *out);

/* Runs the loop until done() says so or timeout_ns passes; returns false on timeout. */
bool lb_run_until(struct lb_bench *b, bool (*done)(struct lb_bench *), uint64_t timeout_ns);

/* A request of slot ended (ok or not) at now_ns: records it and refills the window. */
void lb_slot_done(struct lb_slot *s, bool ok, uint64_t now_ns);

/* Per-workload: set-up before the timed part, one operation, clean-up after it. */
int lb_watch_setup(struct lb_bench *b);
void lb_watch_finish(struct lb_bench *b);
int lb_lease_setup(struct lb_bench *b);
void lb_lease_finish(struct lb_bench *b);
int lb_lease_start(struct lb_slot *s);
int lb_lock_setup(struct lb_bench *b);
void lb_lock_finish(struct lb_bench *b);
int lb_lock_start(struct lb_slot *s);
/* failover runs its own rounds instead of the request slots. */
void lb_failover_run(struct lb_bench *b);

#endif /* CLIENTS_BENCH_LATCH_BENCH_H */
