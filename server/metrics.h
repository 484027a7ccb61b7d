/*
 * metrics.h — a Prometheus metrics registry with no global state (DESIGN §6).
 *
 * A registry (srv_metrics_new) holds metric families in registration order: counters
 * (uint64, or double for measured sums such as CPU seconds), gauges (int64 or double) and
 * histograms with fixed bucket bounds. A family has either no label or exactly one label
 * dimension whose values are added at run time (method="/etcdserverpb.KV/Put"); at most
 * SRV_METRICS_LABEL_VALUES_MAX values per family, after which every new value is counted
 * under the value "other" so that a misbehaving client cannot grow the registry.
 *
 * Updates go through a series handle (struct srv_series). srv_metric_series() finds (or
 * adds) the series of one label value; cache the handle, after which every update is O(1)
 * (a histogram observation scans its at most SRV_METRICS_BUCKETS_MAX bounds) and never
 * allocates or fails. srv_metrics_render() writes the text exposition format 0.0.4: HELP and
 * TYPE lines, escaped label values, cumulative histogram buckets with +Inf, _sum and _count.
 *
 * Threads: everything here runs on the loop thread and nothing is atomic. The storage
 * thread does not touch the registry; it measures (fsync time, batch sizes) and hands the
 * figures to the loop with the batch completion it already posts, and the loop records
 * them. We chose this over C11 atomics because a histogram update is three fields (bucket,
 * sum, count) that a scrape should see together, atomic doubles need compare-and-swap
 * loops, and the loop already owns every other figure.
 *
 * Ownership: the registry owns its families and series; handles stay valid until
 * srv_metrics_free(). Strings passed in are copied unless stated otherwise.
 */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch_assert.h"

/* Label values per family before new values go to "other": enough for every gRPC method
 * latch serves (about 40) with room to spare, small enough that a scrape stays cheap. */
#define SRV_METRICS_LABEL_VALUES_MAX 256
/* Longest label value kept, in bytes; a longer one is counted under "other". */
#define SRV_METRICS_LABEL_VALUE_MAX  256
/* The label value that collects everything beyond the limits above. */
#define SRV_METRICS_LABEL_OTHER      "other"
/* Bucket bounds per histogram (etcd's largest has 14; +Inf is implicit). */
#define SRV_METRICS_BUCKETS_MAX      32
/* Longest metric or label name, in bytes. */
#define SRV_METRICS_NAME_MAX         128
/* Render hooks per registry (process metrics, figures read from other modules). */
#define SRV_METRICS_HOOKS_MAX        8

/* A growable byte buffer, NUL-terminated whenever data is not NULL (len excludes the NUL).
 * The caller owns the struct; the buffer owns data. */
struct srv_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* An empty buffer; allocates nothing. */
void srv_buf_init(struct srv_buf *b);
/* Frees data; the buffer may be initialised again. */
void srv_buf_close(struct srv_buf *b);
/* Ensures room for extra more bytes (plus the NUL). Returns 0 or LATCH_ENOMEM. */
int srv_buf_reserve(struct srv_buf *b, size_t extra);
/* Appends n bytes at p (borrowed for the call). Returns 0 or LATCH_ENOMEM (b unchanged). */
int srv_buf_append(struct srv_buf *b, const void *p, size_t n);
/* Appends formatted text. Returns 0 or LATCH_ENOMEM (b unchanged). */
LATCH_PRINTF(2, 3) int srv_buf_printf(struct srv_buf *b, const char *fmt, ...);

enum srv_metric_type {
    SRV_METRIC_COUNTER,       /* uint64, only goes up */
    SRV_METRIC_COUNTER_FLOAT, /* double, only goes up (measured sums: CPU seconds) */
    SRV_METRIC_GAUGE,         /* int64 */
    SRV_METRIC_GAUGE_FLOAT,   /* double */
    SRV_METRIC_HISTOGRAM,     /* register with srv_metrics_register_histogram() */
};

struct srv_metrics;
struct srv_metric; /* a family: one name, HELP, TYPE, and its series */
struct srv_series; /* one label value of a family (or the family itself when unlabelled) */

/* Runs at the start of every srv_metrics_render(), to refresh figures read on demand
 * (process metrics, sizes owned by other modules). data is passed back unchanged. */
typedef void (*srv_metrics_hook_fn)(void *data);

/* Allocates an empty registry. Returns 0 and sets *out, or LATCH_ENOMEM. */
int srv_metrics_new(struct srv_metrics **out);

/* Frees reg and every family and series handle it gave out. NULL is allowed. */
void srv_metrics_free(struct srv_metrics *reg);

/*
 * Registers a counter or gauge family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and help is
 * any text (escaped when rendered); label_name is NULL for an unlabelled family or matches
 * [a-zA-Z_][a-zA-Z0-9_]* without a leading "__". All are copied. Sets *out (may be NULL).
 * Returns 0, LATCH_EINVAL (bad name, label name, or type SRV_METRIC_HISTOGRAM), LATCH_EEXIST
 * (name already registered) or LATCH_ENOMEM.
 */
int srv_metrics_register(struct srv_metrics *reg,
                         enum srv_metric_type type,
                         const char *name,
                         const char *help,
                         const char *label_name,
                         struct srv_metric **out);

/*
 * Registers a histogram family with bounds_count (1..SRV_METRICS_BUCKETS_MAX) finite,
 * strictly increasing upper bounds (copied; +Inf is added implicitly). The label name may
 * not be "le". Returns as srv_metrics_register().
 */
int srv_metrics_register_histogram(struct srv_metrics *reg,
                                   const char *name,
                                   const char *help,
                                   const char *label_name,
                                   const double *bounds,
                                   size_t bounds_count,
                                   struct srv_metric **out);

/*
 * Adds hook (with data, borrowed until srv_metrics_free) to the functions run before each
 * render, in the order added. Returns 0 or LATCH_ETOOBIG (SRV_METRICS_HOOKS_MAX reached).
 */
int srv_metrics_add_hook(struct srv_metrics *reg, srv_metrics_hook_fn hook, void *data);

/*
 * The series of m for label_value, which must be NULL exactly when m has no label (asserted).
 * A new value is added (copied) on first use. Beyond SRV_METRICS_LABEL_VALUES_MAX values,
 * for a value longer than SRV_METRICS_LABEL_VALUE_MAX bytes, or when out of memory, the
 * series of "other" is returned instead. Never NULL; valid until srv_metrics_free(). The
 * lookup scans the family's values: cache the handle on hot paths.
 */
struct srv_series *srv_metric_series(struct srv_metric *m, const char *label_value);

/* Counter updates (SRV_METRIC_COUNTER; asserted). */
void srv_counter_inc(struct srv_series *s);
void srv_counter_add(struct srv_series *s, uint64_t n);
uint64_t srv_counter_value(const struct srv_series *s);

/* Float counter updates (SRV_METRIC_COUNTER_FLOAT; asserted). add ignores negative or NaN n;
 * set is for hooks mirroring a monotonic source (getrusage) and is not checked. */
void srv_counter_add_float(struct srv_series *s, double n);
void srv_counter_set_float(struct srv_series *s, double v);

/* Gauge updates (SRV_METRIC_GAUGE; asserted). */
void srv_gauge_set(struct srv_series *s, int64_t v);
void srv_gauge_add(struct srv_series *s, int64_t delta);
int64_t srv_gauge_value(const struct srv_series *s);

/* Float gauge updates (SRV_METRIC_GAUGE_FLOAT; asserted). */
void srv_gauge_set_float(struct srv_series *s, double v);

/* Records one observation (SRV_METRIC_HISTOGRAM; asserted): the first bucket whose bound
 * is >= v, +Inf, _sum and _count. */
void srv_histogram_observe(struct srv_series *s, double v);
uint64_t srv_histogram_count(const struct srv_series *s);

/*
 * Runs the render hooks, then appends every family in registration order to buf (label
 * values in the order they were first used) in the Prometheus text format 0.0.4. Returns 0
 * or LATCH_ENOMEM (buf then holds a partial rendering; reset its len before reuse).
 */
int srv_metrics_render(struct srv_metrics *reg, struct srv_buf *buf);

/*
 * latch's standard metric set. Unlabelled series are ready to update; the two labelled
 * families take the gRPC method path ("/etcdserverpb.KV/Put") as label "method", whose
 * series the gRPC layer looks up once per registered method and caches. Process metrics
 * are refreshed by a render hook and need nothing from the caller.
 */
struct srv_metrics_std {
    struct srv_series *raft_term;
    struct srv_series *raft_index;
    struct srv_series *raft_commit_index;
    struct srv_series *raft_applied_index;
    struct srv_series *raft_leader_changes;
    struct srv_series *raft_has_leader;
    struct srv_series *raft_proposals_committed;
    struct srv_series *raft_proposals_failed;
    struct srv_series *disk_fsync_duration;
    struct srv_series *apply_duration;
    struct srv_metric *grpc_requests;         /* label "method" */
    struct srv_metric *grpc_request_duration; /* label "method" */
    struct srv_series *watchers;
    struct srv_series *leases;
    struct srv_series *db_size_bytes;
    struct srv_series *process_resident_memory_bytes;
    struct srv_series *process_cpu_seconds;
    struct srv_series *process_open_fds;
    struct srv_series *process_max_fds;
    struct srv_series *process_start_time_seconds;
};

/* Bucket bounds of latch_disk_fsync_duration_seconds: 0.5 ms doubling to 8.192 s, which is
 * etcd's etcd_disk_wal_fsync_duration_seconds (1 ms .. 8.192 s) plus one finer bucket. */
#define SRV_METRICS_FSYNC_BUCKETS_COUNT 15

/*
 * Registers the standard set in reg and fills *std, which is borrowed by the process hook
 * until srv_metrics_free(reg) (do not move it). Returns 0, LATCH_EEXIST (a name is already
 * registered), LATCH_ETOOBIG (no hook slot left) or LATCH_ENOMEM; on error some families
 * may already be registered.
 */
int srv_metrics_std_register(struct srv_metrics *reg, struct srv_metrics_std *std);

#endif /* SRV_METRICS_H */
