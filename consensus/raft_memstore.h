/*
 * raft_memstore.h — an in-memory struct raft_storage.
 *
 * The consensus core's own reference storage: pure (no I/O), used by unit tests, the
 * deterministic simulator and raft_bench, and the executable definition of what store/
 * must do for the core. Not thread-safe. Entry data is copied in and owned here.
 *
 * "Durable" means "in this object": the simulator models a crash by discarding what a
 * ready asked to persist before it was written here.
 */
#ifndef LATCH_RAFT_MEMSTORE_H
#define LATCH_RAFT_MEMSTORE_H

#include "raft.h"

struct raft_memstore;

/* Creates an empty store (no entries, zero hard state, empty configuration). heap may be
 * NULL (libc); it is borrowed for the life of the store. Errors: LATCH_ENOMEM. */
int raft_memstore_new(const struct raft_heap *heap, struct raft_memstore **out);

void raft_memstore_free(struct raft_memstore *ms);

/* The storage callbacks over ms, for struct raft_config.storage; valid for ms's life. */
const struct raft_storage *raft_memstore_storage(struct raft_memstore *ms);

/*
 * Writes a fresh cluster's first state: one RAFT_CC_ADD_VOTER entry per voter of conf at
 * indexes 1..n in term 1, and hard state {term 1, no vote, commit n} (etcd's bootstrap).
 * The configuration is reached by applying those entries. Errors: LATCH_EINVAL (store not
 * empty, no voters, or learners: a fresh cluster starts with voters only), LATCH_ENOMEM.
 */
int raft_memstore_bootstrap(struct raft_memstore *ms, const struct raft_conf_state *conf);

/*
 * Appends copies of entries[0..n), first removing every stored entry at or after
 * entries[0].index (the conflicting suffix). Errors: LATCH_EINVAL (a gap after the last
 * entry, indexes not consecutive, or entries[0].index at or below the snapshot index),
 * LATCH_ENOMEM (nothing changed).
 */
int raft_memstore_append(struct raft_memstore *ms, const struct raft_entry *entries, size_t n);

void raft_memstore_set_hard_state(struct raft_memstore *ms, const struct raft_hard_state *hs);

/* Records the configuration as of the last applied index (returned by initial_state). */
void raft_memstore_set_conf(struct raft_memstore *ms, const struct raft_conf_state *conf);

/*
 * Installs snap (copied) received from a leader: the log is discarded, first_index becomes
 * snap->meta.index + 1 and the configuration becomes snap->meta.conf. Errors:
 * LATCH_ESNAPOLD (not newer than the current snapshot), LATCH_ENOMEM.
 */
int raft_memstore_apply_snapshot(struct raft_memstore *ms, const struct raft_snapshot *snap);

/*
 * Records a snapshot of the caller's state machine at index (which it has applied; data
 * copied) with the configuration as of index. The log is kept; see raft_memstore_compact.
 * Errors: LATCH_ESNAPOLD (index not above the current snapshot), LATCH_EUNAVAILABLE
 * (index beyond the last entry), LATCH_ENOMEM.
 */
int raft_memstore_create_snapshot(struct raft_memstore *ms,
                                  raft_index index,
                                  const struct raft_conf_state *conf,
                                  const void *data,
                                  size_t len);

/*
 * Discards entries up to and including index, which must not exceed the snapshot index (a
 * follower that needs them is sent the snapshot). Errors: LATCH_EINVAL (index beyond the
 * snapshot), LATCH_ECOMPACTED (already compacted: a no-op).
 */
int raft_memstore_compact(struct raft_memstore *ms, raft_index index);

/* Inspection for tests and the simulator. */
raft_index raft_memstore_first_index(const struct raft_memstore *ms);
raft_index raft_memstore_last_index(const struct raft_memstore *ms);
void raft_memstore_hard_state(const struct raft_memstore *ms, struct raft_hard_state *hs);
void raft_memstore_conf(const struct raft_memstore *ms, struct raft_conf_state *conf);

/* Entry at i (first_index <= i <= last_index), borrowed until the next mutation; NULL
 * otherwise. */
const struct raft_entry *raft_memstore_entry(const struct raft_memstore *ms, raft_index i);

/* The current snapshot (meta.index 0 when none), borrowed until the next mutation. */
void raft_memstore_snapshot(const struct raft_memstore *ms, struct raft_snapshot *snap);

#endif /* LATCH_RAFT_MEMSTORE_H */
