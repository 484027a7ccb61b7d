/*
 * raft_bench.c — throughput of the consensus core alone.
 *
 * A 3- or 5-node cluster lives in this one process and thread (bench_cluster.c): in-memory
 * raft_memstore storage, messages passed by function call, no network, no fsync. Node 1
 * is elected, then the leader is fed proposals in batches while the cluster is pumped until
 * every node has applied every proposal. The figures therefore measure what the core
 * itself costs per committed proposal; the goal is that consensus never limits the server.
 *
 * A benchmark, not a test: it prints figures and never judges timing. It does fail (exit
 * 1) if the replicas disagree or the cluster stalls, since its figures would then be void.
 *
 *   raft_bench                      3/5 nodes x 64 B/1 KiB, one table
 *   raft_bench --nodes 3 --size 64 --count 2000000 --batch 4096 --seconds 30
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_cluster.h"
#include "latch_assert.h"
#include "latch_error.h"

#define BENCH_COUNT_SMALL         2000000ull /* proposals of 64 B */
#define BENCH_COUNT_LARGE         500000ull  /* proposals of 1 KiB and more */
#define BENCH_BATCH               4096u
#define BENCH_SECONDS             30.0
/* Snapshot and compact after this many bytes of entries (at most 65536 entries), so that
 * memory stays bounded whatever the payload size. */
#define BENCH_COMPACT_BYTES       (8u << 20)
#define BENCH_COMPACT_ENTRIES_MAX 65536u
/* Loop turns between two looks at the clock for --seconds. */
#define BENCH_CLOCK_TURNS         64u

struct bench_opts {
    size_t nodes;   /* 0: default matrix */
    size_t size;    /* 0: default matrix */
    uint64_t count; /* 0: per-size default */
    uint32_t batch;
    double seconds;
};

struct bench_result {
    size_t nodes;
    size_t size;
    uint64_t proposals; /* committed and applied on every node */
    uint64_t msgs;
    uint64_t readies;
    double wall_s;
    double cpu_s;
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    int rv = clock_gettime(id, &ts);
    LATCH_ASSERT(rv == 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t min_applied_normal(const struct bench_cluster *c)
{
    uint64_t min = c->nodes[0].applied_normal;
    for (size_t i = 1; i < c->nodes_count; i++) {
        min = c->nodes[i].applied_normal < min ? c->nodes[i].applied_normal : min;
    }
    return min;
}

/*
 * Proposes up to batch entries at the leader. A full uncommitted window
 * (LATCH_EUNCOMMITTED) just ends the batch early: the pump drains it.
 */
static int propose_batch(
    struct bench_node *leader, uint8_t *payload, size_t size, uint64_t *proposed, uint64_t limit)
{
    LATCH_ASSERT(size >= sizeof(*proposed));
    LATCH_ASSERT(*proposed <= limit);
    while (*proposed < limit) {
        memcpy(payload, proposed, sizeof(*proposed)); /* each proposal distinct */
        int rv = raft_propose(leader->r, payload, size);
        if (rv == LATCH_EUNCOMMITTED) {
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        (*proposed)++;
    }
    return 0;
}

/*
 * The measured loop: keep at most two batches in flight (so replication pipelines), pump
 * one ready per node per turn, stop proposing at count or when the time is up, and return
 * once every node has applied every proposal. *proposed_out gets the proposals made.
 */
static int drive(struct bench_cluster *c,
                 const struct bench_opts *o,
                 size_t size,
                 uint64_t count,
                 uint64_t *proposed_out)
{
    struct bench_node *leader = &c->nodes[0];
    uint8_t *payload = calloc(1, size);
    if (payload == NULL) {
        return LATCH_ENOMEM;
    }
    double deadline = clock_s(CLOCK_MONOTONIC) + o->seconds;
    uint64_t proposed = 0;
    uint64_t done = 0;
    uint64_t turn = 0;
    int rv = 0;
    while (rv == 0 && done < count) {
        uint64_t limit = done + 2u * o->batch < count ? done + 2u * o->batch : count;
        uint64_t before = proposed;
        if (proposed < limit) {
            rv = propose_batch(leader, payload, size, &proposed, limit);
        }
        bool progress = false;
        if (rv == 0) {
            rv = bench_cluster_pump(c, &progress);
        }
        if (rv == 0) {
            rv = bench_cluster_compact(c);
        }
        /* Reading the clock on every turn costs 3% with one-proposal batches. */
        if (++turn % BENCH_CLOCK_TURNS == 0 && clock_s(CLOCK_MONOTONIC) > deadline) {
            count = proposed;
        }
        done = min_applied_normal(c);
        if (rv == 0 && !progress && proposed == before && done < count) {
            rv = LATCH_ESTATE; /* stalled: nothing to do and nothing in flight */
        }
    }
    free(payload);
    *proposed_out = proposed;
    return rv;
}

static int run_one(
    const struct bench_opts *o, size_t nodes, size_t size, uint64_t count, struct bench_result *res)
{
    memset(res, 0, sizeof(*res));
    res->nodes = nodes;
    res->size = size;
    struct bench_cluster c;
    uint64_t compact_every = BENCH_COMPACT_BYTES / size;
    compact_every = compact_every < 1 ? 1 : compact_every;
    compact_every =
        compact_every < BENCH_COMPACT_ENTRIES_MAX ? compact_every : BENCH_COMPACT_ENTRIES_MAX;
    int rv = bench_cluster_init(&c, nodes, compact_every);
    if (rv != 0) {
        return rv;
    }
    rv = bench_cluster_elect(&c, 1);
    uint64_t msgs0 = c.msgs_delivered;
    uint64_t readies0 = c.readies;
    double wall0 = clock_s(CLOCK_MONOTONIC);
    double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (rv == 0) {
        rv = drive(&c, o, size, count, &res->proposals);
    }
    res->wall_s = clock_s(CLOCK_MONOTONIC) - wall0;
    res->cpu_s = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    res->msgs = c.msgs_delivered - msgs0;
    res->readies = c.readies - readies0;
    if (rv == 0 && !bench_cluster_replicas_agree(&c)) {
        fprintf(stderr, "raft_bench: replicas applied different proposals\n");
        rv = LATCH_ECORRUPT;
    }
    if (rv == 0 && c.nodes[0].r != NULL && !raft_is_leader(c.nodes[0].r)) {
        fprintf(stderr, "raft_bench: node 1 lost leadership during the run\n");
        rv = LATCH_ESTATE;
    }
    bench_cluster_close(&c);
    return rv;
}

static void print_header(const struct bench_opts *o)
{
    printf("raft_bench: one thread, in-memory raft_memstore, no network, no fsync; "
           "batch %u, snapshot+compaction every %u MiB of entries\n",
           o->batch, BENCH_COMPACT_BYTES >> 20);
    printf("%5s %8s %10s %8s %8s %13s %12s %8s %9s %13s\n", "nodes", "payload", "proposals",
           "wall_s", "cpu_s", "proposals/s", "msgs/s", "MB/s", "readies/s", "per_cpu_s");
}

/*
 * Rates are per wall-clock second, as a user would see them; per_cpu_s is proposals per
 * CPU second of this process, which a busy machine disturbs less (one thread: cpu <= wall).
 */
static void print_row(const struct bench_result *r)
{
    double wall = r->wall_s > 0 ? r->wall_s : 1e-9;
    double cpu = r->cpu_s > 0 ? r->cpu_s : 1e-9;
    printf("%5zu %6zu B %10llu %8.3f %8.3f %13.0f %12.0f %8.1f %9.0f %13.0f\n", r->nodes, r->size,
           (unsigned long long)r->proposals, r->wall_s, r->cpu_s, (double)r->proposals / wall,
           (double)r->msgs / wall, (double)r->proposals * (double)r->size / 1e6 / wall,
           (double)r->readies / wall, (double)r->proposals / cpu);
    fflush(stdout);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        return LATCH_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_opt(struct bench_opts *o, const char *name, const char *value)
{
    uint64_t v = 0;
    int rv = LATCH_EINVAL;
    if (strcmp(name, "--nodes") == 0) {
        rv = parse_u64(value, 1, BENCH_NODES_MAX, &v);
        o->nodes = (size_t)v;
    } else if (strcmp(name, "--size") == 0) {
        rv = parse_u64(value, sizeof(uint64_t), RAFT_ENTRY_BYTES_MAX, &v);
        o->size = (size_t)v;
    } else if (strcmp(name, "--count") == 0) {
        rv = parse_u64(value, 1, UINT64_MAX / 2, &v);
        o->count = v;
    } else if (strcmp(name, "--batch") == 0) {
        rv = parse_u64(value, 1, 1u << 20, &v);
        o->batch = (uint32_t)v;
    } else if (strcmp(name, "--seconds") == 0) {
        rv = parse_u64(value, 1, 86400, &v);
        o->seconds = (double)v;
    }
    return rv;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->batch = BENCH_BATCH;
    o->seconds = BENCH_SECONDS;
    for (int i = 1; i < argc; i += 2) { /* every option takes one value */
        if (i + 1 >= argc || parse_opt(o, argv[i], argv[i + 1]) != 0) {
            fprintf(stderr,
                    "usage: raft_bench [--nodes 1-%d] [--size bytes>=8] [--count n] "
                    "[--batch n] [--seconds s]\n",
                    BENCH_NODES_MAX);
            return LATCH_EINVAL;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        return 2;
    }
    /* Without --nodes or --size, the matrix; a given one pins that axis. */
    static const size_t all_nodes[] = {3, 5};
    static const size_t all_sizes[] = {64, 1024};
    size_t nodes_n = o.nodes != 0 ? 1 : 2;
    size_t sizes_n = o.size != 0 ? 1 : 2;
    print_header(&o);
    for (size_t s = 0; s < sizes_n; s++) {
        for (size_t n = 0; n < nodes_n; n++) {
            size_t nodes = o.nodes != 0 ? o.nodes : all_nodes[n];
            size_t size = o.size != 0 ? o.size : all_sizes[s];
            uint64_t count = o.count != 0 ? o.count
                             : size <= 64 ? BENCH_COUNT_SMALL
                                          : BENCH_COUNT_LARGE;
            struct bench_result r;
            int rv = run_one(&o, nodes, size, count, &r);
            if (rv != 0) {
                fprintf(stderr, "raft_bench: %zu nodes, %zu B: %s\n", nodes, size,
                        latch_error_name(rv));
                return 1;
            }
            print_row(&r);
        }
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        printf("peak RSS %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    }
    return 0;
}
