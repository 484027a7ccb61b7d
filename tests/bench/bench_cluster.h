/*
 * bench_cluster.h — an in-process Raft cluster for raft_bench: real consensus/ nodes over
 * raft_memstore storage, one thread, messages handed from node to node by function call.
 *
 * Each node's ready is handled exactly as raft.h's READY CONTRACT says: send rd.msgs,
 * persist (snapshot, entries, hard state) to the memstore, send rd.msgs_after_persist,
 * apply rd.committed (conf entries through raft_apply_conf_change), then raft_advance.
 * "Send" steps the target node at once. That is allowed because only the sender is between
 * raft_ready() and raft_advance() (we handle one ready at a time) and raft_step() copies
 * what it keeps, so the borrowed message is never used after the sender's advance. It
 * avoids a deep copy per message, which would otherwise dominate the figures.
 */
#ifndef LATCH_BENCH_CLUSTER_H
#define LATCH_BENCH_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"
#include "raft_memstore.h"

#define BENCH_NODES_MAX 7

struct bench_node {
    raft_id id;
    struct raft *r;
    struct raft_memstore *ms;    /* owned */
    struct raft_conf_state conf; /* as of applied */
    raft_index applied;
    raft_index snap_index;   /* index of the last snapshot this node took */
    uint64_t applied_normal; /* non-empty normal entries applied (the proposals) */
    uint64_t state_hash;     /* fold of every applied proposal: replicas must agree */
};

struct bench_cluster {
    size_t nodes_count;
    struct bench_node nodes[BENCH_NODES_MAX];
    uint64_t compact_every; /* take a snapshot and compact after this many applied entries */
    uint64_t msgs_delivered;
    uint64_t readies;
    uint64_t snapshots_sent;
    /* Snapshot deliveries to report to their sender once it has advanced. */
    size_t snap_reports_count;
    raft_id snap_reports[BENCH_NODES_MAX];
};

/*
 * Creates nodes 1..nodes_count, bootstraps every memstore with all of them as voters and
 * starts each node over it. Errors: LATCH_EINVAL (nodes_count out of 1..BENCH_NODES_MAX),
 * LATCH_ENOMEM, and any error of raft_new.
 */
int bench_cluster_init(struct bench_cluster *c, size_t nodes_count, uint64_t compact_every);

void bench_cluster_close(struct bench_cluster *c);

/*
 * Handles at most one ready of each node, in id order; *progress tells whether any node had
 * one. Errors: those of the memstore (LATCH_ENOMEM) and of raft_step.
 */
int bench_cluster_pump(struct bench_cluster *c, bool *progress);

/* Pumps until no node has a ready. Errors: those of bench_cluster_pump. */
int bench_cluster_settle(struct bench_cluster *c);

/* Campaigns on node id and settles; returns LATCH_ENOLEADER if it did not win. */
int bench_cluster_elect(struct bench_cluster *c, raft_id id);

/* Takes snapshots and compacts every node that applied compact_every entries since its last
 * one. Never called between a ready and its advance. Errors: LATCH_ENOMEM. */
int bench_cluster_compact(struct bench_cluster *c);

/* Smallest applied index over all nodes. */
raft_index bench_cluster_min_applied(const struct bench_cluster *c);

/* True when every node applied the same proposals in the same order. */
bool bench_cluster_replicas_agree(const struct bench_cluster *c);

#endif /* LATCH_BENCH_CLUSTER_H */
