/*
 * node_int.h — what the node's files share: the struct srv_node and its slots, the storage
 * work item, small codecs, and the functions one file calls in another. node.c holds the
 * ready pipeline and its invariants N1-N4 (read them first); node_snap.c the snapshots and
 * log compaction; node_members.c the membership changes and leadership transfers. Nothing
 * here is part of the node's contract (node.h).
 */
#ifndef SERVER_NODE_INT_H
#define SERVER_NODE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_arena.h"
#include "latch_assert.h"
#include "node.h"

enum node_state { NODE_RUNNING = 0, NODE_CLOSING = 1, NODE_CLOSED = 2 };

enum prop_state { PROP_DONE = 0, PROP_QUEUED = 1, PROP_PROPOSED = 2 };
enum read_state { READ_DONE = 0, READ_QUEUED = 1, READ_ISSUED = 2, READ_INDEXED = 3 };

/* ---------------------------------------------------------------------------------- */
/* Slots addressed by id (N4)                                                         */
/* ---------------------------------------------------------------------------------- */

/* Every slot type starts with a uint32_t state; 0 means done (free). */
struct node_ring {
    uint8_t *v;
    size_t elem;
    size_t head;  /* slots before head are done */
    size_t count; /* slots in use: [0, count) */
    size_t cap;
    uint64_t id0; /* id of slot 0 */
};

struct node_prop {
    uint32_t state; /* enum prop_state */
    uint32_t entry_len;
    raft_index index; /* where the entry is in this node's log; 0 until seen there */
    raft_term term;
    raft_id to; /* PROP_PROPOSED by a follower: the leader it was forwarded to; else 0 */
    uint64_t deadline_ms;
    const uint8_t *entry; /* PROP_QUEUED: header + command, in n->prop_arena */
    srv_node_propose_cb cb;
    void *data;
};

struct node_read {
    uint32_t state;   /* enum read_state */
    raft_index index; /* READ_INDEXED: apply up to here, then answer */
    uint64_t deadline_ms;
    srv_node_read_cb cb;
    void *data;
};

static inline void ring_init(struct node_ring *q, size_t elem, uint64_t id0)
{
    memset(q, 0, sizeof(*q));
    q->elem = elem;
    q->id0 = id0;
}

static inline uint64_t ring_begin(const struct node_ring *q)
{
    return q->id0 + q->head;
}

static inline uint64_t ring_end(const struct node_ring *q)
{
    return q->id0 + q->count;
}

/* The live slot with this id, or NULL. */
static inline void *ring_get(struct node_ring *q, uint64_t id)
{
    if (id < ring_begin(q) || id >= ring_end(q)) {
        return NULL;
    }
    uint8_t *p = q->v + (size_t)(id - q->id0) * q->elem;
    uint32_t state;
    memcpy(&state, p, sizeof(state));
    return state != 0 ? p : NULL;
}

/* A zeroed slot at the end (its id in *id_out), or NULL when out of memory. Only grows the
 * array: positions of other slots do not change. */
static inline void *ring_push(struct node_ring *q, uint64_t *id_out)
{
    if (q->count == q->cap) {
        size_t cap = q->cap < 64 ? 64 : q->cap * 2;
        uint8_t *v = realloc(q->v, cap * q->elem);
        if (v == NULL) {
            return NULL;
        }
        q->v = v;
        q->cap = cap;
    }
    uint8_t *p = q->v + q->count * q->elem;
    memset(p, 0, q->elem);
    *id_out = q->id0 + q->count++;
    return p;
}

/* Drops done slots at the front; at safe points only (never inside a walk over ids). */
static inline void ring_trim(struct node_ring *q)
{
    while (q->head < q->count) {
        uint32_t state;
        memcpy(&state, q->v + q->head * q->elem, sizeof(state));
        if (state != 0) {
            break;
        }
        q->head++;
    }
    if (q->head == q->count) {
        q->id0 += q->count;
        q->head = 0;
        q->count = 0;
    } else if (q->head >= q->cap / 2) {
        memmove(q->v, q->v + q->head * q->elem, (q->count - q->head) * q->elem);
        q->id0 += q->head;
        q->count -= q->head;
        q->head = 0;
    }
}

static inline void ring_free(struct node_ring *q)
{
    free(q->v);
    q->v = NULL;
    q->count = q->head = q->cap = 0;
}

/* ---------------------------------------------------------------------------------- */
/* The node                                                                           */
/* ---------------------------------------------------------------------------------- */

/* A message that arrived while a ready was out: one allocation holds the entries array,
 * their data and the snapshot data. */
struct node_qmsg {
    struct raft_msg m;
    void *mem;
};

/* One ready's storage work (N2). */
struct node_work {
    /* Written by the loop thread before posting, read by the storage thread. */
    bool has_hs;
    struct store_hard_state hs;
    const struct store_entry *entries; /* rd.entries, borrowed until raft_advance */
    size_t entries_count;
    struct store_apply_item *items;
    size_t items_count;
    struct latch_arena in; /* committed data copies and membership records */
    /* Written by the storage thread, read by the loop thread after completion. */
    int append_rc;
    int apply_rc;
    uint64_t append_ns; /* 0: no append ran */
    uint64_t apply_ns;  /* 0: no apply ran */
    struct store_result *results;
    struct latch_arena out; /* what results point at */
    /* Loop thread only: rd.msgs_after_persist, or a copy in `in` (work_copy_after). */
    const struct raft_msg *after;
    /* Loop thread only: per item, the sequence number when this node proposed it, else 0. */
    uint64_t *seqs;
    size_t cap;
    /* Snapshots (snap_*). Written by the loop thread before posting: the received stream
     * to install before the entries (rd.snapshot), and whether to make a snapshot after the
     * apply and compact the log up to compact_index (0: not). */
    struct store_snap_writer *install;
    bool snap_record; /* record snap_meta (made by the snapshot thread) */
    uint64_t compact_index;
    /* Written by the storage thread. */
    int install_rc;
    int snap_rc;
    int compact_rc;
    struct store_snap_meta snap_meta; /* to record (loop), or installed (storage thread) */
};

struct node_membership;
struct srv_members;

struct srv_node {
    uv_loop_t *loop;
    struct srv_node_config cfg; /* store.dir points at dir; no voters pointer */
    char *dir;
    uint32_t election_tick;
    uint32_t proposal_timeout_ms;
    uint32_t read_timeout_ms;
    int state; /* enum node_state */
    int failed;

    struct store *store;
    struct store_reader *reader; /* loop thread: the core's membership read, srv_node_reader */
    struct raft *raft;
    struct raft_storage storage;
    struct raft_conf_state boot_conf;
    bool conf_recorded;         /* the store holds a membership record (or one is being applied) */
    raft_index overwritten_max; /* highest index of a pending proposal a new leader overwrote */
    /* Membership changes and leadership transfers (the members_* functions). */
    struct node_membership *mem;

    uv_timer_t tick;
    uv_check_t check;
    uv_idle_t idle;
    uv_async_t async;
    int handles_open;
    srv_node_close_cb close_cb;
    void *close_data;

    /* Storage thread hand-off; posted/done/stop are guarded by mu. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool posted;
    bool done;
    bool mid_pending; /* the storage thread waits for before_compact (node.c work_run) */
    int64_t mid_rev;
    bool stop;
    struct node_work work;

    /* The ready in progress (N1). */
    bool in_ready;
    bool in_flight;
    struct raft_ready rd;
    raft_index applied;    /* last index applied to the store */
    raft_index last_index; /* last index handed to store_log_append */
    raft_id leader;
    uint64_t proposals_committed; /* loop thread: srv_node_status */
    uint64_t proposals_failed;

    /* Inputs that wait for raft_advance. */
    struct node_qmsg *qmsgs;
    size_t qmsgs_count;
    size_t qmsgs_cap;
    raft_id unreachable[RAFT_MEMBERS_MAX];
    size_t unreachable_count;
    uint32_t missed_ticks;

    struct node_ring props; /* by sequence number */
    uint64_t prop_fed;      /* first sequence number not yet given to raft_propose */
    struct latch_arena prop_arena;
    struct node_ring reads; /* by read context */
    uint64_t read_fed;
    size_t reads_indexed;

    /* Snapshots (loop thread; see node.h SNAPSHOTS). */
    uint64_t snapshot_count;
    uint64_t catchup_entries;
    struct store_snap_meta snap;            /* newest snapshot the store recorded (index 0: none) */
    bool snap_file;                         /* its file exists in snap/ */
    bool snap_wanted;                       /* the core asked for one and there was no file */
    raft_index snap_failed_at;              /* applied index of the last failed create, or 0 */
    bool snap_receiving;                    /* a writer is handed out to the transport */
    bool snap_installing;                   /* a work item installs a received stream */
    struct store_snap_writer *snap_pending; /* verified stream waiting for its ready */
    raft_index snap_pending_index;
    raft_term snap_pending_term;
    uint64_t readies_taken;      /* raft_ready() calls so far */
    uint64_t snap_pending_ready; /* the ready that restores snap_pending if the core does */
    uint64_t snaps_created;
    uint64_t snaps_installed;
    struct store_snap_meta snap_made; /* made by the snapshot thread, not recorded yet */
    bool snap_made_pending;
    bool snap_job_running;
    /* The snapshot thread (snap_thread_main); snap_posted/done/stop and the job's outcome
     * are guarded by snap_mu. */
    pthread_t snap_thread;
    bool snap_thread_started;
    pthread_mutex_t snap_mu;
    pthread_cond_t snap_cv;
    bool snap_posted;
    bool snap_done;
    bool snap_stop;
    int snap_job_rc;
    struct store_snap_meta snap_job_meta;
    raft_id snap_report_ids[RAFT_MEMBERS_MAX]; /* raft_report_snapshot waiting for advance */
    bool snap_report_ok[RAFT_MEMBERS_MAX];
    size_t snap_reports_count;
};

static inline unsigned long long ull(uint64_t v)
{
    return (unsigned long long)v;
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* The proposer and sequence number of an entry the node put its header on. */
static inline bool entry_origin(const struct raft_entry *e, raft_id *id, uint64_t *seq)
{
    if (e->type != RAFT_ENTRY_NORMAL || e->len < SRV_NODE_ENTRY_HEADER_BYTES) {
        return false;
    }
    *id = get_le64(e->data);
    *seq = get_le64(e->data + 8);
    return true;
}

/* The sequence number when this node proposed e, else 0 (sequence numbers start far above
 * 0, see node_first_id). */
static inline uint64_t entry_own_seq(const struct srv_node *n, const struct raft_entry *e)
{
    raft_id id;
    uint64_t seq;
    return entry_origin(e, &id, &seq) && id == n->cfg.id ? seq : 0;
}

/* There is work for the next loop check: keeps the loop from blocking in poll until then. */
void node__kick(struct srv_node *n);
/* Complete one proposal / one read and free its slot (their callbacks run inside). */
void node__prop_finish(struct srv_node *n, uint64_t seq, int err, const struct store_result *res);
void node__read_finish(struct srv_node *n, uint64_t ctx, int err);
/* A store write failed: the node stops for good (node.h ERRORS). */
void node__fail(struct srv_node *n, int rv, const char *what);
/* The first proposal sequence number of this run (far above 0 and above any earlier run's). */
uint64_t node__first_id(void);
/* Hands n->work to the storage thread (N2). */
void node__post_work(struct srv_node *n);

/* Membership changes and transfers: node_members.c. */
int node__members_config(struct srv_node *n, const struct srv_node_config *cfg);
int node__members_load(struct srv_node *n,
                       const uint8_t *buf,
                       uint32_t len,
                       struct raft_conf_state *conf);
void node__members_reload(struct srv_node *n);
const struct srv_members *node__members_boot(const struct srv_node *n);
int node__members_item(struct srv_node *n,
                       const struct raft_entry *e,
                       const struct raft_conf_state *conf,
                       const struct srv_members **out);
void node__members_note_entry(struct srv_node *n, const struct raft_entry *e);
void node__members_note_truncation(struct srv_node *n, const struct raft_entry *ents, size_t count);
void node__members_note_leader(struct srv_node *n, raft_id leader);
void node__members_finish(struct srv_node *n);
void node__members_fail_all(struct srv_node *n, int err);
void node__members_expire(struct srv_node *n, uint64_t now);
void node__members_feed(struct srv_node *n);
void node__members_free(struct srv_node *n);

/* Snapshots and log compaction: node_snap.c. */
int node__snap_load(struct srv_node *n);
void node__snap_plan(struct srv_node *n, const struct raft_ready *rd);
void node__snap_idle(struct srv_node *n);
void node__snap_maybe_start(struct srv_node *n);
void node__snap_thread_poll(struct srv_node *n);
void node__snap_thread_stop(struct srv_node *n);
bool node__snap_ready_begin(struct srv_node *n, const struct raft_snapshot *s);
bool node__work_install(struct store *s, struct node_work *w);
void node__work_snapshot(struct store *s, struct node_work *w);
bool node__snap_work_done(struct srv_node *n, bool *installed);
void node__snap_installed_notify(struct srv_node *n);

/* The error new proposals and reads get now: LATCH_ESHUTDOWN, the store failure, or 0. */
int node__refuse_code(const struct srv_node *n);

#endif /* SERVER_NODE_INT_H */
