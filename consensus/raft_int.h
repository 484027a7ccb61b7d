/*
 * raft_int.h — declarations private to consensus/ (SQLite btreeInt.h style).
 *
 * OUT-OF-MEMORY POLICY of the core. raft_new() and raft_propose*() return LATCH_ENOMEM and
 * change nothing (tests/unit/consensus/test_oom.c); raft_step() drops a message whose
 * entries or snapshot it cannot copy, as if the network had lost it. Every other
 * allocation (messages, arrays that grow while the core works) is asserted: a node that
 * cannot allocate in the middle of a protocol step cannot continue safely, and crashing
 * costs liveness only, never safety.
 *
 * MEMORY LIFETIMES. Everything a ready hands out (messages and their entry arrays, the
 * entries appended since the last advance and their data, committed-entry arrays) lives in
 * one per-cycle arena that raft_advance() resets. The contract forbids inputs between
 * raft_ready() and raft_advance(), so after an advance nothing points into the arena.
 * Long-lived state (progress, inflight rings, pending reads) is allocated on the heap.
 */
#ifndef LATCH_RAFT_INT_H
#define LATCH_RAFT_INT_H

#include "latch_assert.h"
#include "latch_error.h"
#include "raft.h"

/* ---- heap and arena ------------------------------------------------------------------ */

void *raft__malloc(const struct raft_heap *heap, size_t size);
void *raft__realloc(const struct raft_heap *heap, void *ptr, size_t size);
void raft__free(const struct raft_heap *heap, void *ptr);

/* Grows *arr (of *cap elements) to hold at least need, doubling; unchanged on failure.
 * Errors: LATCH_ENOMEM. */
int raft__array_grow(
    const struct raft_heap *heap, void **arr, size_t *cap, size_t need, size_t elem_size);

struct raft_arena_chunk;

/* A bump allocator of 8-byte aligned blocks that never move; reset frees all at once. */
struct raft_arena {
    const struct raft_heap *heap;
    struct raft_arena_chunk *head;  /* chunk being filled */
    struct raft_arena_chunk *spare; /* one chunk kept across resets */
    size_t bytes;                   /* bytes handed out since the last reset */
};

void raft__arena_init(struct raft_arena *a, const struct raft_heap *heap);
void *raft__arena_alloc(struct raft_arena *a, size_t size); /* NULL on ENOMEM */
void raft__arena_reset(struct raft_arena *a);
void raft__arena_close(struct raft_arena *a);

/* ---- inflights and progress (raft_progress.c) ----------------------------------------- */

/* A ring of appends sent to one follower and not yet acknowledged (flow control). */
struct raft_inflights {
    raft_index *index; /* last index of each append in flight */
    uint64_t *bytes;   /* payload bytes of each */
    uint32_t start;
    uint32_t count;
    uint32_t cap;
    uint64_t bytes_total;
    uint64_t bytes_max; /* 0 = unlimited */
};

void raft__inflights_add(struct raft_inflights *in, raft_index last, uint64_t bytes);
void raft__inflights_free_le(struct raft_inflights *in, raft_index index);
void raft__inflights_free_first(struct raft_inflights *in);
bool raft__inflights_full(const struct raft_inflights *in);
void raft__inflights_reset(struct raft_inflights *in);

/* What the leader knows of one member's log (thesis §3.5, etcd's Progress). */
struct raft_progress {
    raft_id id; /* RAFT_NONE marks a free slot */
    raft_index match;
    raft_index next;
    raft_index pending_snapshot; /* SNAPSHOT state: index of the snapshot sent */
    uint64_t read_acked;         /* highest ReadIndex round this peer confirmed */
    uint8_t state;               /* enum raft_progress_state */
    bool learner;
    bool recent_active; /* heard from since the last CheckQuorum round */
    bool probe_sent;    /* PROBE state: one append is outstanding */
    bool send_pending;  /* the leader owes it an append at the next flush */
    int8_t vote;        /* election tally: -1 none, 0 rejected, 1 granted */
    struct raft_inflights inflights;
};

void raft__progress_reset(struct raft_progress *pr, raft_index last_index);
void raft__progress_become_probe(struct raft_progress *pr);
void raft__progress_become_replicate(struct raft_progress *pr);
void raft__progress_become_snapshot(struct raft_progress *pr, raft_index snap_index);
bool raft__progress_maybe_update(struct raft_progress *pr, raft_index n);
bool raft__progress_maybe_decr_to(struct raft_progress *pr,
                                  raft_index rejected,
                                  raft_index match_hint);
bool raft__progress_is_paused(const struct raft_progress *pr);
void raft__progress_sent_entries(struct raft_progress *pr, raft_index last, uint64_t bytes);

/* ---- the log (raft_log.c) -------------------------------------------------------------- */

/*
 * The log is storage (persisted) followed by `unstable`: entries appended since the last
 * advance, which the next ready hands out to persist. A restored snapshot not yet persisted
 * replaces storage entirely until the advance that installs it.
 *
 *   [ snapshot ][ storage entries ... u_offset-1 ][ unstable u_offset ... last ]
 *
 * Invariants (checked by raft__log_check):
 *   L1 applied <= committed <= last_index
 *   L2 u_count == 0 or u_ents[k].index == u_offset + k for every k
 *   L3 terms never decrease along the log
 *   L4 with a pending snapshot, u_offset == snap.index + 1
 */
struct raft_log {
    const struct raft_storage *st;
    struct raft_arena *arena; /* entry data and hand-out arrays live here */
    const struct raft_heap *heap;
    struct raft_entry *u_ents; /* heap array; data in the arena */
    size_t u_count;
    size_t u_cap;
    raft_index u_offset;
    bool has_snap;
    struct raft_snapshot snap; /* pending snapshot; data on the heap (snap_data) */
    uint8_t *snap_data;
    raft_index committed;
    raft_index applied;
};

int raft__log_init(struct raft_log *l,
                   const struct raft_storage *st,
                   struct raft_arena *arena,
                   const struct raft_heap *heap);
void raft__log_close(struct raft_log *l);
raft_index raft__log_first_index(const struct raft_log *l);
raft_index raft__log_last_index(const struct raft_log *l);
raft_term raft__log_last_term(const struct raft_log *l);
int raft__log_term(const struct raft_log *l, raft_index i, raft_term *term_out);
bool raft__log_match_term(const struct raft_log *l, raft_index i, raft_term t);
bool raft__log_is_up_to_date(const struct raft_log *l, raft_index last, raft_term term);
raft_index raft__log_stable_last(const struct raft_log *l);
int raft__log_append(struct raft_log *l, const struct raft_entry *ents, size_t n);
raft_index
raft__log_find_conflict_by_term(const struct raft_log *l, raft_index index, raft_term term);
void raft__log_commit_to(struct raft_log *l, raft_index commit);
int raft__log_entries(const struct raft_log *l,
                      raft_index lo,
                      raft_index hi,
                      uint64_t max_bytes,
                      struct raft_entry **out,
                      size_t *count_out);
int raft__log_restore(struct raft_log *l, const struct raft_snapshot *snap);
void raft__log_stable(struct raft_log *l, const struct raft_ready *rd);
void raft__log_check(const struct raft_log *l);

#endif /* LATCH_RAFT_INT_H */
