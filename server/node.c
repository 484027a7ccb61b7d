/*
 * node.c — the Raft core driven with the store on two threads (see node.h for the contract
 * and docs/decisions/node.md for the reasons).
 *
 * States of the node (n->state) and the functions behind each transition:
 *
 *   RUNNING --srv_node_close--> CLOSING --node_close_step, nothing in flight--> CLOSED
 *                                                   (handles closing; freed by the last)
 *
 * and, orthogonally, n->failed != 0 after a store write failed (node_fail): the ready that
 * failed is never advanced, so the core stays frozen inside it and sends nothing more.
 *
 * Invariants:
 *   N1  n->in_ready <=> the core is between raft_ready() and raft_advance(); no input
 *       (step, tick, propose, read_index, report) reaches it then: they are queued.
 *   N2  n->in_flight => n->in_ready, except for a standalone record of a snapshot
 *       (node__snap_idle: no compaction, the log untouched); the storage thread owns n->work until
 *       it reports done through the mutex + async; the loop thread touches n->work only
 *       otherwise. No ready is taken while a work item is in flight.
 *   N3  The storage thread calls only store_log_append, store_apply and the snapshot calls
 *       (store_snap_writer_finish, store_snapshot_record, store_log_compact) (and nothing of
 *       the core); the snapshot thread only store_snapshot_write; every other store call is
 *       on the loop thread. The log is compacted only inside a ready's work item, when the
 *       core reads no storage (N1).
 *   N4  A proposal slot's id is its sequence number and a read slot's id its context;
 *       slot positions never move while callbacks run (pushing only grows the array), so
 *       loops walk ids and fetch the slot again after every callback.
 */
#include <stdio.h>

#include "latch_error.h"
#include "latch_log.h"
#include "node_int.h"

/* struct store_entry is declared with struct raft_entry's layout so that a ready's entries
 * go to store_log_append without a copy (store.h says server/ checks it: here). */
LATCH_STATIC_ASSERT(sizeof(struct store_entry) == sizeof(struct raft_entry), "entry size");
LATCH_STATIC_ASSERT(offsetof(struct store_entry, term) == offsetof(struct raft_entry, term),
                    "entry term offset");
LATCH_STATIC_ASSERT(offsetof(struct store_entry, index) == offsetof(struct raft_entry, index),
                    "entry index offset");
LATCH_STATIC_ASSERT(offsetof(struct store_entry, type) == offsetof(struct raft_entry, type),
                    "entry type offset");
LATCH_STATIC_ASSERT(offsetof(struct store_entry, len) == offsetof(struct raft_entry, len),
                    "entry len offset");
LATCH_STATIC_ASSERT(offsetof(struct store_entry, data) == offsetof(struct raft_entry, data),
                    "entry data offset");
LATCH_STATIC_ASSERT(sizeof(((struct store_entry *)0)->term) == sizeof(raft_term), "term size");
LATCH_STATIC_ASSERT(sizeof(((struct store_entry *)0)->index) == sizeof(raft_index), "index size");

/* The largest membership record fits the store's opaque record. */
#define NODE_CONF_FIXED 9u
LATCH_STATIC_ASSERT(NODE_CONF_FIXED + 16u * RAFT_MEMBERS_MAX <= STORE_CONF_BYTES_MAX,
                    "membership record too large for the store");
LATCH_STATIC_ASSERT(SRV_NODE_ENTRY_HEADER_BYTES < RAFT_ENTRY_BYTES_MAX, "entry header");

/* Readies handled in one loop turn without the storage thread before yielding. */
#define NODE_PUMP_ROUNDS 16u

static void on_idle(uv_idle_t *h);

void node__kick(struct srv_node *n)
{
    if (n->state != NODE_CLOSED && !uv_is_active((uv_handle_t *)&n->idle)) {
        uv_idle_start(&n->idle, on_idle);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Membership record                                                                  */
/* ---------------------------------------------------------------------------------- */

int srv_node_conf_encode(const struct raft_conf_state *conf,
                         uint8_t *buf,
                         size_t cap,
                         size_t *len_out)
{
    LATCH_ASSERT(conf != NULL && len_out != NULL);
    if (conf->voters_count > RAFT_MEMBERS_MAX || conf->learners_count > RAFT_MEMBERS_MAX) {
        return LATCH_EINVAL;
    }
    size_t len = NODE_CONF_FIXED + 8u * ((size_t)conf->voters_count + conf->learners_count);
    if (buf == NULL || cap < len) {
        return LATCH_ETOOBIG;
    }
    buf[0] = (uint8_t)SRV_NODE_CONF_VERSION;
    put_le32(buf + 1, conf->voters_count);
    put_le32(buf + 5, conf->learners_count);
    uint8_t *p = buf + NODE_CONF_FIXED;
    for (uint32_t i = 0; i < conf->voters_count; i++, p += 8) {
        put_le64(p, conf->voters[i]);
    }
    for (uint32_t i = 0; i < conf->learners_count; i++, p += 8) {
        put_le64(p, conf->learners[i]);
    }
    *len_out = len;
    return 0;
}

int srv_node_conf_decode(const uint8_t *buf, size_t len, struct raft_conf_state *conf)
{
    LATCH_ASSERT(conf != NULL);
    memset(conf, 0, sizeof(*conf));
    struct srv_members *ms = malloc(sizeof(*ms));
    if (ms == NULL) {
        return LATCH_ENOMEM;
    }
    int rv = srv_members_decode(buf, len, ms); /* version 1 or 2 (member.h) */
    if (rv == 0) {
        srv_members_conf(ms, conf);
    }
    free(ms);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* struct raft_storage over store_log_* (loop thread)                                 */
/* ---------------------------------------------------------------------------------- */

static int st_initial_state(void *data, struct raft_hard_state *hs, struct raft_conf_state *conf)
{
    struct srv_node *n = data;
    struct store_hard_state sh;
    int rv = store_log_hard_state(n->store, &sh);
    if (rv != 0) {
        return rv;
    }
    hs->term = sh.term;
    hs->vote = sh.vote;
    /* A hard state whose only change is the commit index is not persisted (work_build),
     * so the recorded commit may lag the applied index; what is applied was committed, so
     * the core starts from the larger of the two (raft_new refuses applied > commit). */
    hs->commit = sh.commit > n->applied ? sh.commit : n->applied;
    if (sh.commit < n->applied) {
        latch_log(LATCH_LOG_DEBUG, "node %llu: recorded commit %llu, applied %llu: commit %llu",
                  ull(n->cfg.id), ull(sh.commit), ull(n->applied), ull(n->applied));
    }

    uint8_t buf[STORE_CONF_BYTES_MAX];
    uint32_t len = 0;
    rv = store_conf(n->reader, buf, &len);
    if (rv != 0) {
        return rv;
    }
    if (len == 0) {
        *conf = n->boot_conf; /* a fresh cluster: --initial-cluster */
        return node__members_load(n, NULL, 0, conf);
    }
    n->conf_recorded = true;
    return node__members_load(n, buf, len, conf);
}

static int st_entries(void *data,
                      raft_index lo,
                      raft_index hi,
                      uint64_t max_bytes,
                      const struct raft_entry **entries_out,
                      size_t *count_out)
{
    struct srv_node *n = data;
    const struct store_entry *se = NULL;
    int rv = store_log_entries(n->store, lo, hi, max_bytes, &se, count_out);
    *entries_out = (const struct raft_entry *)(const void *)se;
    return rv;
}

static int st_term(void *data, raft_index i, raft_term *term_out)
{
    struct srv_node *n = data;
    return store_log_term(n->store, i, term_out);
}

static raft_index st_first_index(void *data)
{
    struct srv_node *n = data;
    return store_log_first_index(n->store);
}

static raft_index st_last_index(void *data)
{
    struct srv_node *n = data;
    return store_log_last_index(n->store);
}

/* The newest snapshot's metadata (its bytes travel on the transport's own stream, so data
 * stays NULL). Without a file for it (this node installed it, or the file was lost) the
 * node makes one at the next chance and the core asks again later. */
static int st_snapshot(void *data, struct raft_snapshot *snap_out)
{
    struct srv_node *n = data;
    memset(snap_out, 0, sizeof(*snap_out));
    if (n->snap.index == 0 || !n->snap_file ||
        srv_node_conf_decode(n->snap.conf, n->snap.conf_len, &snap_out->meta.conf) != 0) {
        if (n->snap_failed_at < n->applied) { /* not again before anything new is applied */
            n->snap_wanted = true;
            node__kick(n);
        }
        return LATCH_EUNAVAILABLE;
    }
    snap_out->meta.index = n->snap.index;
    snap_out->meta.term = n->snap.term;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Completing proposals and reads                                                     */
/* ---------------------------------------------------------------------------------- */

void node__prop_finish(struct srv_node *n, uint64_t seq, int err, const struct store_result *res)
{
    struct node_prop *p = ring_get(&n->props, seq);
    LATCH_ASSERT(p != NULL);
    srv_node_propose_cb cb = p->cb;
    void *data = p->data;
    p->state = PROP_DONE;
    p->entry = NULL;
    if (err == 0) {
        n->proposals_committed++;
    } else {
        n->proposals_failed++;
    }
    cb(data, err, res);
}

void node__read_finish(struct srv_node *n, uint64_t ctx, int err)
{
    struct node_read *r = ring_get(&n->reads, ctx);
    LATCH_ASSERT(r != NULL);
    srv_node_read_cb cb = r->cb;
    void *data = r->data;
    if (r->state == READ_INDEXED) {
        LATCH_ASSERT(n->reads_indexed > 0);
        n->reads_indexed--;
    }
    r->state = READ_DONE;
    cb(data, err);
}

/* Fails every pending proposal and read with err (close, store failure). */
static void fail_all(struct srv_node *n, int err)
{
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        if (ring_get(&n->props, seq) != NULL) {
            node__prop_finish(n, seq, err, NULL);
        }
    }
    for (uint64_t ctx = ring_begin(&n->reads); ctx < ring_end(&n->reads); ctx++) {
        if (ring_get(&n->reads, ctx) != NULL) {
            node__read_finish(n, ctx, err);
        }
    }
    node__members_fail_all(n, err);
}

/* Fails what waited longer than its timeout. Deadlines rise with ids (one timeout per
 * kind, uv_now never goes back), so each walk stops at the first live slot not due. */
static void expire(struct srv_node *n, uint64_t now)
{
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p != NULL && p->deadline_ms > now) {
            break;
        }
        if (p != NULL) {
            node__prop_finish(n, seq, SRV_NODE_ETIMEDOUT, NULL);
        }
    }
    for (uint64_t ctx = ring_begin(&n->reads); ctx < ring_end(&n->reads); ctx++) {
        struct node_read *r = ring_get(&n->reads, ctx);
        if (r != NULL && r->deadline_ms > now) {
            break;
        }
        if (r != NULL) {
            node__read_finish(n, ctx, SRV_NODE_ETIMEDOUT);
        }
    }
    node__members_expire(n, now);
}

/*
 * A follower's forwarded proposal that is not in its log yet travels to one leader only. If
 * that leader is gone (gone != RAFT_NONE: the transport dropped messages to it; else: the
 * known leader is no longer `to`), the proposal may have been lost on the way and no timer
 * will tell sooner than the proposal timeout (7 s by default). Fail it now with err, whose
 * outcome is unknown like a timeout's (etcd's "request timed out, possibly due to ..."), so
 * the client retries at once instead of waiting out its deadline.
 */
static void fail_forwarded(struct srv_node *n, raft_id gone, int err)
{
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p == NULL || p->state != PROP_PROPOSED || p->index != 0 || p->to == RAFT_NONE) {
            continue;
        }
        if (gone != RAFT_NONE ? p->to == gone : p->to != n->leader) {
            node__prop_finish(n, seq, err, NULL);
        }
    }
}

static void drop_queued(struct srv_node *n)
{
    for (size_t i = 0; i < n->qmsgs_count; i++) {
        free(n->qmsgs[i].mem);
    }
    n->qmsgs_count = 0;
    n->unreachable_count = 0;
    n->snap_reports_count = 0;
    n->missed_ticks = 0;
}

/* A store write failed: the node stops for good (node.h ERRORS). */
void node__fail(struct srv_node *n, int rv, const char *what)
{
    if (n->failed != 0) {
        return;
    }
    n->failed = rv;
    int st = store_failed(n->store);
    latch_log(LATCH_LOG_ERROR,
              "node %llu: %s failed: %s (%s); store %s; the node stops voting, acknowledging "
              "and accepting proposals until it is restarted",
              ull(n->cfg.id), what, latch_strerror(rv), latch_error_name(rv),
              st != 0 ? latch_error_name(st) : "healthy");
    drop_queued(n);
    uv_idle_stop(&n->idle);
    fail_all(n, rv);
}

/* ---------------------------------------------------------------------------------- */
/* Feeding the core (never inside a ready, N1)                                        */
/* ---------------------------------------------------------------------------------- */

static void feed_proposals(struct srv_node *n)
{
    struct raft_status rs = {0};
    if (n->prop_fed < ring_end(&n->props)) {
        raft_status(n->raft, &rs); /* a follower forwards to rs.leader (fail_forwarded) */
    }
    raft_id to = rs.role == RAFT_FOLLOWER ? rs.leader : RAFT_NONE;
    /* A failure callback may propose again: the walk re-reads the end. */
    for (uint64_t seq = n->prop_fed; seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p == NULL || p->state != PROP_QUEUED) {
            continue;
        }
        int rv = raft_propose(n->raft, p->entry, p->entry_len);
        p->entry = NULL;
        if (rv != 0) {
            node__prop_finish(n, seq, rv, NULL);
        } else {
            p->state = PROP_PROPOSED;
            p->to = to;
        }
    }
    n->prop_fed = ring_end(&n->props);
    latch_arena_reset(&n->prop_arena);
}

static void feed_reads(struct srv_node *n)
{
    for (uint64_t ctx = n->read_fed; ctx < ring_end(&n->reads); ctx++) {
        struct node_read *r = ring_get(&n->reads, ctx);
        if (r == NULL || r->state != READ_QUEUED) {
            continue;
        }
        int rv = raft_read_index(n->raft, ctx);
        if (rv != 0) {
            node__read_finish(n, ctx, rv);
        } else {
            r->state = READ_ISSUED;
        }
    }
    n->read_fed = ring_end(&n->reads);
}

/* Messages first, then ticks: a leader's heartbeat that waited must count before the
 * missed time can start an election. */
static void feed(struct srv_node *n)
{
    for (size_t i = 0; i < n->qmsgs_count; i++) {
        raft_step(n->raft, &n->qmsgs[i].m);
        free(n->qmsgs[i].mem);
    }
    n->qmsgs_count = 0;
    for (size_t i = 0; i < n->unreachable_count; i++) {
        raft_report_unreachable(n->raft, n->unreachable[i]);
    }
    n->unreachable_count = 0;
    for (size_t i = 0; i < n->snap_reports_count; i++) {
        raft_report_snapshot(n->raft, n->snap_report_ids[i], n->snap_report_ok[i]);
    }
    n->snap_reports_count = 0;
    for (; n->missed_ticks > 0; n->missed_ticks--) {
        raft_tick(n->raft);
    }
    feed_proposals(n);
    feed_reads(n);
    node__members_feed(n);
}

/* ---------------------------------------------------------------------------------- */
/* The ready: begin (loop), persist + apply (storage), finish (loop)                  */
/* ---------------------------------------------------------------------------------- */

static void note_read_states(struct srv_node *n, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->read_states_count; i++) {
        struct node_read *r = ring_get(&n->reads, rd->read_states[i].context);
        if (r != NULL && r->state == READ_ISSUED) {
            r->state = READ_INDEXED;
            r->index = rd->read_states[i].index;
            n->reads_indexed++;
        }
    }
}

/* A read sent to the old leader may never be answered: fail it now (etcd does). */
static void note_soft_state(struct srv_node *n, const struct raft_ready *rd)
{
    raft_id leader = rd->soft_state.leader;
    if (leader == n->leader) {
        return;
    }
    latch_log(LATCH_LOG_INFO, "node %llu: leader %llu -> %llu (term %llu, %s)", ull(n->cfg.id),
              ull(n->leader), ull(leader), ull(rd->hard_state.term),
              raft_role_name(rd->soft_state.role));
    n->leader = leader;
    int err = leader == RAFT_NONE ? LATCH_ENOLEADER : SRV_NODE_ELEADERCHANGED;
    for (uint64_t ctx = ring_begin(&n->reads); ctx < ring_end(&n->reads); ctx++) {
        struct node_read *r = ring_get(&n->reads, ctx);
        if (r != NULL && r->state == READ_ISSUED) {
            node__read_finish(n, ctx, err);
        }
    }
    if (n->cfg.leader != NULL) {
        n->cfg.leader(n->cfg.data, leader, rd->hard_state.term);
    }
    node__members_note_leader(n, leader);
}

/* The ready truncates the log at ents[0].index: a proposal whose entry was at or after it
 * and is not the entry now there will never be applied (etcd "leader changed"). */
static void note_truncation(struct srv_node *n, const struct raft_entry *ents, size_t count)
{
    raft_index first = ents[0].index;
    raft_index last = ents[count - 1].index;
    latch_log(LATCH_LOG_INFO, "node %llu: log truncated from %llu (had up to %llu)", ull(n->cfg.id),
              ull(first), ull(n->last_index));
    /* An overwritten entry of ours is not lost for sure: another member that still holds it
     * may yet win an election and commit it (this log would then take it back). Only when
     * its index is applied with another entry is it certain never to apply: the proposal
     * stays pending until then (complete_overwritten). */
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p == NULL || p->state != PROP_PROPOSED || p->index < first || p->index == 0) {
            continue;
        }
        if (p->index <= last && entry_own_seq(n, &ents[p->index - first]) == seq) {
            continue;
        }
        if (p->index > n->overwritten_max) {
            n->overwritten_max = p->index;
        }
    }
    node__members_note_truncation(n, ents, count);
}

/* Learns where this node's proposals landed in its log (as leader or as a follower that
 * forwarded them), and which ones a new leader overwrote. */
static void note_entries(struct srv_node *n, const struct raft_entry *ents, size_t count)
{
    if (ents[0].index <= n->last_index) {
        note_truncation(n, ents, count);
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t seq = entry_own_seq(n, &ents[i]);
        struct node_prop *p = seq != 0 ? ring_get(&n->props, seq) : NULL;
        if (p != NULL && p->state == PROP_PROPOSED && p->index == 0) {
            p->index = ents[i].index;
            p->term = ents[i].term;
        }
        if (ents[i].type == RAFT_ENTRY_CONF) {
            node__members_note_entry(n, &ents[i]);
        }
    }
    n->last_index = ents[count - 1].index;
}

static int work_reserve(struct node_work *w, size_t count)
{
    if (count <= w->cap) {
        return 0;
    }
    size_t cap = w->cap < 256 ? 256 : w->cap;
    while (cap < count) {
        cap *= 2;
    }
    struct store_apply_item *items = realloc(w->items, cap * sizeof(*items));
    if (items != NULL) {
        w->items = items;
    }
    struct store_result *results = realloc(w->results, cap * sizeof(*results));
    if (results != NULL) {
        w->results = results;
    }
    uint64_t *seqs = realloc(w->seqs, cap * sizeof(*seqs));
    if (seqs != NULL) {
        w->seqs = seqs;
    }
    if (items == NULL || results == NULL || seqs == NULL) {
        return LATCH_ENOMEM;
    }
    w->cap = cap;
    return 0;
}

static int
item_conf(struct srv_node *n, const struct srv_members *ms, struct store_apply_item *item)
{
    uint8_t *buf = latch_arena_alloc(&n->work.in, STORE_CONF_BYTES_MAX);
    size_t len = 0;
    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    int rv = srv_members_encode(ms, buf, STORE_CONF_BYTES_MAX, &len);
    LATCH_ASSERTF(rv == 0, "membership of %u members: %s", ms->count, latch_error_name(rv));
    item->kind = STORE_ITEM_CONF;
    item->data = buf;
    item->len = (uint32_t)len;
    n->conf_recorded = true;
    return 0;
}

/*
 * One committed entry as a store item. copy: the data may live in memory the store's log
 * readers handed out, which the append of this very ready releases (store_log_entries), so
 * it is copied into the work's arena first.
 */
static int item_build(struct srv_node *n, const struct raft_entry *e, bool copy, size_t i)
{
    struct store_apply_item *item = &n->work.items[i];
    *item = (struct store_apply_item){.index = e->index, .term = e->term, .kind = STORE_ITEM_NOOP};
    n->work.seqs[i] = 0;
    if (e->type == RAFT_ENTRY_CONF) {
        struct raft_conf_state conf;
        const struct srv_members *ms = NULL;
        raft_apply_conf_change(n->raft, e, &conf);
        int rv = node__members_item(n, e, &conf, &ms);
        return rv != 0 ? rv : item_conf(n, ms, item);
    }
    if (e->len == 0 && !n->conf_recorded && n->boot_conf.voters_count > 0) {
        /* The first leader's no-op records the bootstrap membership, so that a restart no
         * longer depends on --initial-cluster. Every node of the cluster decides the same. */
        return item_conf(n, node__members_boot(n), item);
    }
    raft_id id;
    uint64_t seq;
    if (!entry_origin(e, &id, &seq)) {
        return 0; /* the leader's no-op, or bytes without our header: nothing to apply */
    }
    n->work.seqs[i] = id == n->cfg.id ? seq : 0;
    item->kind = STORE_ITEM_CMD;
    item->len = e->len - SRV_NODE_ENTRY_HEADER_BYTES;
    item->data = e->data + SRV_NODE_ENTRY_HEADER_BYTES;
    if (copy && item->len > 0) {
        item->data = latch_arena_dup(&n->work.in, item->data, item->len);
        if (item->data == NULL) {
            return LATCH_ENOMEM;
        }
    }
    return 0;
}

/*
 * The messages to send after persisting may carry entries (a leader whose new term is not
 * on disk yet holds its appends back; forwarded proposals), whose data may live in memory
 * the store's log readers handed out and the append of this very ready releases: copy
 * them into the work's arena. Without an append (or without entries) they are sent as is.
 */
static int work_copy_after(struct node_work *w, const struct raft_ready *rd)
{
    size_t n = rd->msgs_after_persist_count;
    bool entries = false;
    w->after = rd->msgs_after_persist;
    for (size_t i = 0; i < n; i++) {
        entries = entries || rd->msgs_after_persist[i].entries_count > 0;
    }
    if ((rd->entries_count == 0 && w->compact_index == 0) || !entries) {
        return 0; /* a compaction releases that memory too */
    }
    struct raft_msg *msgs = latch_arena_dup(&w->in, rd->msgs_after_persist, n * sizeof(*msgs));
    for (size_t i = 0; msgs != NULL && i < n; i++) {
        uint32_t count = msgs[i].entries_count;
        struct raft_entry *ents =
            count > 0 ? latch_arena_dup(&w->in, msgs[i].entries, count * sizeof(*ents)) : NULL;
        if (count > 0 && ents == NULL) {
            return LATCH_ENOMEM;
        }
        for (uint32_t k = 0; k < count; k++) {
            ents[k].data = latch_arena_dup(&w->in, ents[k].data, ents[k].len);
            if (ents[k].data == NULL) {
                return LATCH_ENOMEM;
            }
        }
        msgs[i].entries = ents;
    }
    if (msgs == NULL) {
        return LATCH_ENOMEM;
    }
    w->after = msgs;
    return 0;
}

static int work_build(struct srv_node *n, const struct raft_ready *rd)
{
    struct node_work *w = &n->work;
    /* A hard state whose only change is the commit index is not persisted (raft.h
     * must_sync, etcd's MustSync): the commit is learnt again from the leader, and a
     * restart starts from max(recorded commit, applied) (st_initial_state). With entries,
     * a snapshot or a new term or vote it goes with them, commit included. */
    w->has_hs = rd->hard_state_changed && rd->must_sync;
    w->hs = (struct store_hard_state){
        .term = rd->hard_state.term, .vote = rd->hard_state.vote, .commit = rd->hard_state.commit};
    w->entries = (const struct store_entry *)(const void *)rd->entries;
    w->entries_count = rd->entries_count;
    w->items_count = 0;
    w->append_rc = 0;
    w->apply_rc = 0;
    latch_arena_reset(&w->in);
    node__snap_plan(n, rd);
    int rv = work_copy_after(w, rd);
    if (rv != 0 || rd->committed_count == 0) {
        return rv;
    }
    rv = work_reserve(w, rd->committed_count);
    for (size_t i = 0; rv == 0 && i < rd->committed_count; i++) {
        rv = item_build(n, &rd->committed[i], rd->entries_count > 0, i);
    }
    if (rv == 0) {
        w->items_count = rd->committed_count;
    }
    return rv;
}

/* Steps of the pipeline before persistence. False when the node stopped. */
static bool ready_begin(struct srv_node *n)
{
    const struct raft_ready *rd = &n->rd;
    n->readies_taken++;
    if (rd->snapshot != NULL && !node__snap_ready_begin(n, rd->snapshot)) {
        return false;
    }
    note_read_states(n, rd);
    if (rd->soft_state_changed) {
        note_soft_state(n, rd);
    }
    if (rd->entries_count > 0) {
        note_entries(n, rd->entries, rd->entries_count);
    }
    if (rd->soft_state_changed) {
        fail_forwarded(n, RAFT_NONE, LATCH_ELEADERFAIL); /* after note_entries: not in the log */
    }
    if (rd->msgs_count > 0) {
        n->cfg.send(n->cfg.data, rd->msgs, rd->msgs_count); /* thesis §10.2.1 */
    }
    int rv = work_build(n, rd);
    if (rv != 0) {
        node__fail(n, rv, "preparing the apply batch");
        return false;
    }
    return true;
}

/* Proposals whose entry a new leader overwrote (note_truncation) once every such index has
 * been applied with another entry: Log Matching says those indexes hold the other entries
 * for good, so theirs will never be applied. Any proposal still pending with an index at or
 * below the applied one is such a proposal (the batch just completed its own entries). */
static void complete_overwritten(struct srv_node *n)
{
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p != NULL && p->state == PROP_PROPOSED && p->index != 0 && p->index <= n->applied) {
            node__prop_finish(n, seq, SRV_NODE_ELEADERCHANGED, NULL);
        }
    }
    n->overwritten_max = 0;
}

static void complete_applied(struct srv_node *n)
{
    const struct node_work *w = &n->work;
    for (size_t i = 0; i < w->items_count; i++) {
        uint64_t seq = w->seqs[i];
        struct node_prop *p = seq != 0 ? ring_get(&n->props, seq) : NULL;
        if (p != NULL && p->state == PROP_PROPOSED) {
            node__prop_finish(n, seq, 0, &w->results[i]);
        }
    }
    if (n->overwritten_max != 0 && n->overwritten_max <= n->applied) {
        complete_overwritten(n);
    }
    if (n->reads_indexed == 0) {
        return;
    }
    for (uint64_t ctx = ring_begin(&n->reads); ctx < ring_end(&n->reads); ctx++) {
        struct node_read *r = ring_get(&n->reads, ctx);
        if (r != NULL && r->state == READ_INDEXED && r->index <= n->applied) {
            node__read_finish(n, ctx, 0);
        }
    }
}

/* Steps of the pipeline after persistence and apply, ending with raft_advance. */
static void ready_finish(struct srv_node *n)
{
    const struct raft_ready *rd = &n->rd;
    LATCH_ASSERT(n->in_ready && !n->in_flight);
    if (rd->msgs_after_persist_count > 0) {
        n->cfg.send(n->cfg.data, n->work.after, rd->msgs_after_persist_count);
    }
    if (rd->committed_count > 0) {
        raft_index last = rd->committed[rd->committed_count - 1].index;
        LATCH_ASSERTF(last > n->applied, "applied %llu after %llu", ull(last), ull(n->applied));
        n->applied = last;
    }
    complete_applied(n);
    raft_advance(n->raft, rd);
    n->in_ready = false;
    size_t applied_items = n->work.items_count;
    n->work.items_count = 0;
    store_log_release(n->store);
    if (applied_items > 0 && n->cfg.applied != NULL && n->state == NODE_RUNNING) {
        n->cfg.applied(n->cfg.data, n->work.results[applied_items - 1].revision);
    }
    node__members_finish(n);
}

void node__post_work(struct srv_node *n)
{
    n->in_flight = true;
    pthread_mutex_lock(&n->mu);
    n->posted = true;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

/* Runs readies until one needs the storage thread or nothing is left (once per turn). */
static void pump(struct srv_node *n)
{
    for (unsigned round = 0; round < NODE_PUMP_ROUNDS; round++) {
        if (n->state != NODE_RUNNING) {
            node__kick(n); /* a callback closed the node: the next check tears it down */
            return;
        }
        if (n->in_ready || n->in_flight || n->failed != 0) {
            uv_idle_stop(&n->idle);
            return;
        }
        feed(n);
        if (!raft_has_ready(n->raft)) {
            uv_idle_stop(&n->idle);
            node__snap_idle(n);
            return;
        }
        raft_ready(n->raft, &n->rd);
        n->in_ready = true;
        if (!ready_begin(n)) {
            return;
        }
        const struct raft_ready *rd = &n->rd;
        if (n->work.has_hs || rd->entries_count > 0 || rd->committed_count > 0 ||
            n->work.install != NULL || n->work.snap_record || n->work.compact_index > 0) {
            node__post_work(n);
            uv_idle_stop(&n->idle);
            return;
        }
        ready_finish(n);
    }
    node__kick(n); /* more next turn */
}

/* ---------------------------------------------------------------------------------- */
/* The storage thread                                                                 */
/* ---------------------------------------------------------------------------------- */

/* The index of the first compaction among items that has items before it; 0 when none. */
static size_t compact_split(const struct node_work *w)
{
    for (size_t i = 1; i < w->items_count; i++) {
        const struct store_apply_item *it = &w->items[i];
        if (it->kind == STORE_ITEM_CMD &&
            store_cmd_type_of(it->data, it->len) == STORE_CMD_COMPACT) {
            return i;
        }
    }
    return 0;
}

/* Storage thread: hands the loop thread the revision the items before a compaction reached
 * and waits until before_compact ran there (on_work_done), or the node stops. */
static void mid_handoff(struct srv_node *n, int64_t revision)
{
    pthread_mutex_lock(&n->mu);
    n->mid_rev = revision;
    n->mid_pending = true;
    pthread_mutex_unlock(&n->mu);
    uv_async_send(&n->async);
    pthread_mutex_lock(&n->mu);
    while (n->mid_pending && !n->stop) {
        pthread_cond_wait(&n->cv, &n->mu);
    }
    n->mid_pending = false;
    pthread_mutex_unlock(&n->mu);
}

static void work_run(struct srv_node *n, struct store *s, struct node_work *w)
{
    w->append_rc = 0;
    w->apply_rc = 0;
    w->append_ns = 0;
    w->apply_ns = 0;
    if (!node__work_install(s, w)) {
        return; /* raft.h: the snapshot is installed before the entries */
    }
    if (w->has_hs || w->entries_count > 0) {
        uint64_t t0 = uv_hrtime();
        w->append_rc = store_log_append(s, w->entries, w->entries_count, w->has_hs ? &w->hs : NULL);
        w->append_ns = uv_hrtime() - t0 + 1; /* never 0 once run */
    }
    if (w->append_rc == 0 && w->items_count > 0) {
        latch_arena_reset(&w->out);
        size_t k = n->cfg.before_compact != NULL ? compact_split(w) : 0;
        uint64_t t0 = uv_hrtime();
        if (k > 0) {
            /* Two applies, with the loop's before_compact between them (node.h). */
            w->apply_rc = store_apply(s, w->items, k, &w->out, w->results);
            if (w->apply_rc == 0) {
                mid_handoff(n, w->results[k - 1].revision);
                w->apply_rc =
                    store_apply(s, w->items + k, w->items_count - k, &w->out, w->results + k);
            }
        } else {
            w->apply_rc = store_apply(s, w->items, w->items_count, &w->out, w->results);
        }
        w->apply_ns = uv_hrtime() - t0 + 1;
    }
    node__work_snapshot(s, w);
}

static void *thread_main(void *arg)
{
    struct srv_node *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (!n->posted && !n->stop) {
            pthread_cond_wait(&n->cv, &n->mu);
        }
        if (!n->posted) {
            pthread_mutex_unlock(&n->mu);
            return NULL;
        }
        n->posted = false;
        pthread_mutex_unlock(&n->mu);

        work_run(n, n->store, &n->work);

        pthread_mutex_lock(&n->mu);
        n->done = true;
        pthread_mutex_unlock(&n->mu);
        uv_async_send(&n->async);
    }
}

static void thread_stop(struct srv_node *n)
{
    if (!n->thread_started) {
        return;
    }
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    int rv = pthread_join(n->thread, NULL);
    LATCH_ASSERTF(rv == 0, "pthread_join: %d", rv);
    n->thread_started = false;
}

/* ---------------------------------------------------------------------------------- */
/* Closing                                                                            */
/* ---------------------------------------------------------------------------------- */

static void free_mem(struct srv_node *n)
{
    drop_queued(n);
    free(n->qmsgs);
    ring_free(&n->props);
    ring_free(&n->reads);
    latch_arena_close(&n->prop_arena);
    latch_arena_close(&n->work.in);
    latch_arena_close(&n->work.out);
    free(n->work.items);
    free(n->work.results);
    free(n->work.seqs);
    node__members_free(n);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n->dir);
    free(n);
}

/* Releases the core and the store (the storage thread is gone). */
static void release_engine(struct srv_node *n)
{
    node__snap_thread_stop(n); /* waits for a copy in progress */
    store_snap_writer_abort(n->snap_pending);
    n->snap_pending = NULL;
    raft_free(n->raft);
    n->raft = NULL;
    store_reader_free(n->reader);
    n->reader = NULL;
    store_close(n->store);
    n->store = NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct srv_node *n = h->data;
    LATCH_ASSERT(n->handles_open > 0);
    if (--n->handles_open > 0) {
        return;
    }
    srv_node_close_cb cb = n->close_cb;
    void *data = n->close_data;
    free_mem(n);
    if (cb != NULL) {
        cb(data);
    }
}

static void close_handles(struct srv_node *n)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&n->tick, (uv_handle_t *)&n->check, (uv_handle_t *)&n->idle,
                         (uv_handle_t *)&n->async};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        if (hs[i]->data == n && !uv_is_closing(hs[i])) {
            uv_close(hs[i], on_handle_closed);
        }
    }
}

/* Runs at safe points while CLOSING until nothing is in flight, then tears down. */
static void close_step(struct srv_node *n)
{
    LATCH_ASSERT(n->state == NODE_CLOSING);
    fail_all(n, LATCH_ESHUTDOWN);
    drop_queued(n);
    if (n->in_flight) {
        uv_idle_stop(&n->idle); /* the async wakes us when the batch is written */
        return;
    }
    thread_stop(n);
    release_engine(n);
    n->state = NODE_CLOSED;
    latch_log(LATCH_LOG_INFO, "node %llu: closed", ull(n->cfg.id));
    close_handles(n);
}

void srv_node_close(struct srv_node *n, srv_node_close_cb done_cb, void *data)
{
    LATCH_ASSERT(n != NULL);
    LATCH_ASSERTF(n->state == NODE_RUNNING, "srv_node_close twice (state %d)", n->state);
    n->state = NODE_CLOSING;
    n->close_cb = done_cb;
    n->close_data = data;
    uv_timer_stop(&n->tick);
    node__kick(n); /* the teardown runs from the next check, outside any callback of ours */
}

/* ---------------------------------------------------------------------------------- */
/* Loop callbacks                                                                     */
/* ---------------------------------------------------------------------------------- */

static void on_check(uv_check_t *c)
{
    struct srv_node *n = c->data;
    if (n->state == NODE_CLOSING) {
        close_step(n);
        return;
    }
    if (n->state != NODE_RUNNING) {
        return;
    }
    pump(n);
    ring_trim(&n->props);
    ring_trim(&n->reads);
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking in poll until the next check */
}

static void on_tick(uv_timer_t *t)
{
    struct srv_node *n = t->data;
    if (n->state != NODE_RUNNING) {
        return;
    }
    expire(n, uv_now(n->loop));
    if (n->state != NODE_RUNNING || n->failed != 0) {
        return; /* a callback may have closed the node */
    }
    if (n->in_ready) {
        if (n->missed_ticks < SRV_NODE_MISSED_TICKS_MAX) {
            n->missed_ticks++;
        }
        return;
    }
    raft_tick(n->raft);
    node__kick(n);
}

static void on_work_done(uv_async_t *a)
{
    struct srv_node *n = a->data;
    node__snap_thread_poll(n); /* the snapshot thread shares the handle */
    pthread_mutex_lock(&n->mu);
    bool mid = n->mid_pending;
    int64_t mid_rev = n->mid_rev;
    pthread_mutex_unlock(&n->mu);
    if (mid) {
        /* The storage thread stopped before a compaction (work_run): let the watchers read,
         * then let it go on. Released also while closing, or it would never finish. */
        if (n->state == NODE_RUNNING && n->cfg.before_compact != NULL) {
            n->cfg.before_compact(n->cfg.data, mid_rev);
        }
        pthread_mutex_lock(&n->mu);
        n->mid_pending = false;
        pthread_cond_broadcast(&n->cv);
        pthread_mutex_unlock(&n->mu);
    }
    pthread_mutex_lock(&n->mu);
    bool done = n->done;
    n->done = false;
    pthread_mutex_unlock(&n->mu);
    if (!done) {
        return;
    }
    LATCH_ASSERT(n->in_flight);
    n->in_flight = false;
    if (n->state == NODE_CLOSING) {
        close_step(n);
        return;
    }
    if (n->cfg.io != NULL && (n->work.append_ns != 0 || n->work.apply_ns != 0)) {
        struct srv_node_io io = {.append_ns = n->work.append_ns,
                                 .apply_ns = n->work.apply_ns,
                                 .entries = n->work.entries_count,
                                 .items = n->work.items_count};
        n->cfg.io(n->cfg.data, &io);
    }
    if (n->work.append_rc != 0) {
        node__fail(n, n->work.append_rc, "persisting the log (store_log_append)");
        return;
    }
    if (n->work.apply_rc != 0) {
        node__fail(n, n->work.apply_rc, "applying committed entries (store_apply)");
        return;
    }
    bool installed = false;
    if (!node__snap_work_done(n, &installed)) {
        node__kick(n); /* a standalone snapshot (no ready), or a failed install stopped the node */
        return;
    }
    ready_finish(n);
    if (installed) {
        node__snap_installed_notify(n);
        node__members_reload(n);
    }
    node__snap_maybe_start(n);
    node__kick(n);
}

/* ---------------------------------------------------------------------------------- */
/* Opening                                                                            */
/* ---------------------------------------------------------------------------------- */

void srv_node_config_init(struct srv_node_config *cfg)
{
    LATCH_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    store_options_defaults(&cfg->store);
}

static int errf(char *errmsg, size_t size, int rv, const char *fmt, const char *what)
{
    if (errmsg != NULL && size > 0) {
        snprintf(errmsg, size, fmt, what, latch_strerror(rv));
    }
    return rv;
}

/* Copies cfg into n and checks it. */
static int config_take(struct srv_node *n, const struct srv_node_config *cfg)
{
    if (cfg->id == RAFT_NONE || cfg->send == NULL || cfg->store.dir == NULL ||
        cfg->initial_voters_count > RAFT_MEMBERS_MAX ||
        (cfg->initial_voters_count > 0 && cfg->initial_voters == NULL)) {
        return LATCH_EINVAL;
    }
    n->cfg = *cfg;
    n->cfg.initial_voters = NULL;
    n->cfg.initial_voters_count = 0;
    uint32_t tick = cfg->tick_ms != 0 ? cfg->tick_ms : SRV_NODE_TICK_MS_DEFAULT;
    uint32_t election = cfg->election_ms != 0 ? cfg->election_ms : SRV_NODE_ELECTION_MS_DEFAULT;
    n->cfg.tick_ms = tick;
    n->cfg.election_ms = election;
    n->election_tick = election / tick;
    if (n->election_tick < 2) {
        return LATCH_EINVAL; /* the core needs election_tick > heartbeat_tick (1) */
    }
    n->proposal_timeout_ms =
        cfg->proposal_timeout_ms != 0 ? cfg->proposal_timeout_ms : 5000u + 2u * election;
    n->read_timeout_ms = cfg->read_timeout_ms != 0 ? cfg->read_timeout_ms : 2u * election;
    n->snapshot_count =
        cfg->snapshot_count != 0 ? cfg->snapshot_count : SRV_NODE_SNAPSHOT_COUNT_DEFAULT;
    n->catchup_entries = cfg->snapshot_catchup_entries != 0 ? cfg->snapshot_catchup_entries
                                                            : SRV_NODE_CATCHUP_ENTRIES_DEFAULT;
    for (size_t i = 0; i < cfg->initial_voters_count; i++) {
        raft_id id = cfg->initial_voters[i];
        if (id == RAFT_NONE || raft_conf_state_is_voter(&n->boot_conf, id)) {
            return LATCH_EINVAL;
        }
        n->boot_conf.voters[n->boot_conf.voters_count++] = id;
    }
    n->dir = strdup(cfg->store.dir);
    if (n->dir == NULL) {
        return LATCH_ENOMEM;
    }
    n->cfg.store.dir = n->dir;
    return node__members_config(n, cfg);
}

/* Ids of proposals and reads start at the wall clock in ms shifted left by 20 bits, so a
 * restarted node never reuses an id an entry or answer of its previous run may carry
 * (unless it made over a million a millisecond). Never 0. */
uint64_t node__first_id(void)
{
    uv_timeval64_t tv;
    uint64_t ms = 1;
    if (uv_gettimeofday(&tv) == 0 && tv.tv_sec > 0) {
        ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    }
    return ms << 20;
}

static int raft_start(struct srv_node *n)
{
    struct store_status ss;
    int rv = store_status(n->reader, &ss);
    if (rv != 0) {
        return rv;
    }
    n->applied = ss.applied_index;
    n->last_index = store_log_last_index(n->store);
    rv = node__snap_load(n);
    if (rv != 0) {
        return rv;
    }
    n->storage = (struct raft_storage){
        .data = n,
        .initial_state = st_initial_state,
        .entries = st_entries,
        .term = st_term,
        .first_index = st_first_index,
        .last_index = st_last_index,
        .snapshot = st_snapshot,
    };
    struct raft_config rc;
    raft_config_defaults(&rc);
    rc.id = n->cfg.id;
    rc.election_tick = n->election_tick;
    rc.heartbeat_tick = 1;
    rc.seed = uv_hrtime() ^ (n->cfg.id * 0x9e3779b97f4a7c15ull);
    rc.applied = ss.applied_index;
    rc.max_committed_bytes = SRV_NODE_APPLY_BATCH_BYTES;
    rc.pre_vote = true;
    rc.check_quorum = true;
    rc.disable_proposal_forwarding = n->cfg.disable_proposal_forwarding;
    rc.storage = &n->storage;
    rv = raft_new(&rc, &n->raft);
    if (rv != 0) {
        return rv;
    }
    struct raft_status st;
    raft_status(n->raft, &st);
    LATCH_ASSERTF(st.commit >= st.applied && st.applied == n->applied,
                  "core starts at commit %llu, applied %llu (store applied %llu)", ull(st.commit),
                  ull(st.applied), ull(n->applied));
    if (st.conf.voters_count == 1 && st.conf.voters[0] == n->cfg.id) {
        /* The only voter needs no election timeout to know it wins: campaign now, as etcd
         * does for a one-member cluster, so it serves writes at once after a start. */
        raft_campaign(n->raft);
    }
    latch_log(LATCH_LOG_INFO,
              "node %llu: started in %s: term %llu, commit %llu, applied %llu, log [%llu, %llu], "
              "%u voters, revision %lld",
              ull(n->cfg.id), n->dir, ull(st.term), ull(st.commit), ull(st.applied),
              ull(st.first_index), ull(st.last_index), st.conf.voters_count,
              (long long)ss.revision);
    return 0;
}

/* Handles and the thread; after this, failures are undone through close_handles. */
static int loop_start(struct srv_node *n)
{
    int rv = uv_async_init(n->loop, &n->async, on_work_done);
    if (rv != 0) {
        return LATCH_ENOMEM;
    }
    n->async.data = n;
    uv_timer_init(n->loop, &n->tick);
    uv_check_init(n->loop, &n->check);
    uv_idle_init(n->loop, &n->idle);
    n->tick.data = n;
    n->check.data = n;
    n->idle.data = n;
    n->handles_open = 4;
    rv = pthread_create(&n->thread, NULL, thread_main, n);
    if (rv != 0) {
        return LATCH_ENOMEM;
    }
    n->thread_started = true;
    uv_check_start(&n->check, on_check);
    uv_timer_start(&n->tick, on_tick, n->cfg.tick_ms, n->cfg.tick_ms);
    node__kick(n);
    return 0;
}

int srv_node_new(uv_loop_t *loop,
                 const struct srv_node_config *cfg,
                 struct srv_node **out,
                 char *errmsg,
                 size_t errmsg_size)
{
    LATCH_ASSERT(loop != NULL && cfg != NULL && out != NULL);
    struct srv_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return errf(errmsg, errmsg_size, LATCH_ENOMEM, "%s: %s", "node");
    }
    n->loop = loop;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    uint64_t id0 = node__first_id();
    ring_init(&n->props, sizeof(struct node_prop), id0);
    ring_init(&n->reads, sizeof(struct node_read), id0);
    n->prop_fed = id0;
    n->read_fed = id0;
    latch_arena_init(&n->prop_arena, 0);
    latch_arena_init(&n->work.in, 0);
    latch_arena_init(&n->work.out, 0);

    int rv = config_take(n, cfg);
    if (rv != 0) {
        errf(errmsg, errmsg_size, rv, "%s: %s", "node config");
        goto out_free;
    }
    rv = store_open(&n->cfg.store, &n->store, errmsg, errmsg_size);
    if (rv != 0) {
        goto out_free;
    }
    rv = store_reader_new(n->store, &n->reader);
    rv = rv != 0 ? rv : raft_start(n);
    if (rv != 0) {
        errf(errmsg, errmsg_size, rv, "%s: starting Raft: %s", n->dir);
        goto out_release;
    }
    rv = loop_start(n);
    if (rv != 0) {
        errf(errmsg, errmsg_size, rv, "%s: starting the storage thread: %s", n->dir);
        release_engine(n);
        if (n->handles_open == 0) {
            free_mem(n); /* no handle was initialised */
            return rv;
        }
        n->state = NODE_CLOSED;
        close_handles(n); /* frees n from the last close callback */
        return rv;
    }
    *out = n;
    return 0;

out_release:
    release_engine(n);
out_free:
    free_mem(n);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Requests                                                                           */
/* ---------------------------------------------------------------------------------- */

int node__refuse_code(const struct srv_node *n)
{
    if (n->state != NODE_RUNNING) {
        return LATCH_ESHUTDOWN;
    }
    return n->failed;
}

int srv_node_propose(
    struct srv_node *n, const uint8_t *cmd, size_t len, srv_node_propose_cb cb, void *data)
{
    LATCH_ASSERT(n != NULL && cb != NULL);
    int rv = node__refuse_code(n);
    if (rv != 0) {
        n->proposals_failed++;
        return rv;
    }
    if (cmd == NULL || len == 0) {
        return LATCH_EINVAL;
    }
    if (len > RAFT_ENTRY_BYTES_MAX - SRV_NODE_ENTRY_HEADER_BYTES) {
        return LATCH_ETOOBIG;
    }
    size_t entry_len = len + SRV_NODE_ENTRY_HEADER_BYTES;
    uint8_t *entry = latch_arena_alloc(&n->prop_arena, entry_len);
    uint64_t seq = 0;
    struct node_prop *p = entry != NULL ? ring_push(&n->props, &seq) : NULL;
    if (p == NULL) {
        return LATCH_ENOMEM; /* an arena block is reclaimed at the next reset */
    }
    put_le64(entry, n->cfg.id);
    put_le64(entry + 8, seq);
    memcpy(entry + SRV_NODE_ENTRY_HEADER_BYTES, cmd, len);
    p->state = PROP_QUEUED;
    p->entry = entry;
    p->entry_len = (uint32_t)entry_len;
    p->deadline_ms = uv_now(n->loop) + n->proposal_timeout_ms;
    p->cb = cb;
    p->data = data;
    node__kick(n);
    return 0;
}

int srv_node_read_index(struct srv_node *n, srv_node_read_cb cb, void *data)
{
    LATCH_ASSERT(n != NULL && cb != NULL);
    int rv = node__refuse_code(n);
    if (rv != 0) {
        return rv;
    }
    uint64_t ctx;
    struct node_read *r = ring_push(&n->reads, &ctx);
    if (r == NULL) {
        return LATCH_ENOMEM;
    }
    r->state = READ_QUEUED;
    r->deadline_ms = uv_now(n->loop) + n->read_timeout_ms;
    r->cb = cb;
    r->data = data;
    node__kick(n);
    return 0;
}

/* A deep copy of m for the queue: the entries array first (aligned), then the data. */
static int queue_msg(struct srv_node *n, const struct raft_msg *m)
{
    size_t ents_bytes = (size_t)m->entries_count * sizeof(struct raft_entry);
    size_t bytes = ents_bytes + m->snapshot.len;
    for (uint32_t i = 0; i < m->entries_count; i++) {
        bytes += m->entries[i].len;
    }
    if (n->qmsgs_count == n->qmsgs_cap) {
        size_t cap = n->qmsgs_cap < 16 ? 16 : n->qmsgs_cap * 2;
        struct node_qmsg *v = realloc(n->qmsgs, cap * sizeof(*v));
        if (v == NULL) {
            return LATCH_ENOMEM;
        }
        n->qmsgs = v;
        n->qmsgs_cap = cap;
    }
    uint8_t *mem = malloc(bytes > 0 ? bytes : 1);
    if (mem == NULL) {
        return LATCH_ENOMEM;
    }
    struct node_qmsg *q = &n->qmsgs[n->qmsgs_count++];
    q->m = *m;
    q->mem = mem;
    struct raft_entry *ents = (struct raft_entry *)(void *)mem;
    uint8_t *p = mem + ents_bytes;
    for (uint32_t i = 0; i < m->entries_count; i++) {
        ents[i] = m->entries[i];
        if (ents[i].len > 0) {
            memcpy(p, m->entries[i].data, ents[i].len);
        }
        ents[i].data = p;
        p += ents[i].len;
    }
    q->m.entries = m->entries_count > 0 ? ents : NULL;
    if (m->snapshot.len > 0) {
        memcpy(p, m->snapshot.data, m->snapshot.len);
        q->m.snapshot.data = p;
    }
    return 0;
}

int srv_node_step(struct srv_node *n, const struct raft_msg *m)
{
    LATCH_ASSERT(n != NULL && m != NULL);
    if (n->state != NODE_RUNNING || n->failed != 0) {
        return 0;
    }
    if (n->in_ready) {
        return queue_msg(n, m);
    }
    raft_step(n->raft, m);
    node__kick(n);
    return 0;
}

void srv_node_report_unreachable(struct srv_node *n, raft_id id)
{
    LATCH_ASSERT(n != NULL);
    if (n->state != NODE_RUNNING || n->failed != 0) {
        return;
    }
    fail_forwarded(n, id, LATCH_ECONNLOST);
    if (n->state != NODE_RUNNING) {
        return; /* a callback closed the node */
    }
    if (!n->in_ready) {
        raft_report_unreachable(n->raft, id);
        node__kick(n);
        return;
    }
    for (size_t i = 0; i < n->unreachable_count; i++) {
        if (n->unreachable[i] == id) {
            return;
        }
    }
    if (n->unreachable_count < RAFT_MEMBERS_MAX) {
        n->unreachable[n->unreachable_count++] = id;
    }
}

void srv_node_report_snapshot(struct srv_node *n, raft_id id, bool ok)
{
    LATCH_ASSERT(n != NULL);
    if (n->state != NODE_RUNNING || n->failed != 0) {
        return;
    }
    if (!n->in_ready) {
        raft_report_snapshot(n->raft, id, ok);
        node__kick(n);
        return;
    }
    for (size_t i = 0; i < n->snap_reports_count; i++) {
        if (n->snap_report_ids[i] == id) {
            n->snap_report_ok[i] = ok; /* the latest outcome counts */
            return;
        }
    }
    if (n->snap_reports_count < RAFT_MEMBERS_MAX) {
        n->snap_report_ids[n->snap_reports_count] = id;
        n->snap_report_ok[n->snap_reports_count++] = ok;
    }
}

void srv_node_status(const struct srv_node *n, struct srv_node_status *st)
{
    LATCH_ASSERT(n != NULL && st != NULL);
    memset(st, 0, sizeof(*st));
    st->id = n->cfg.id;
    st->failed = n->failed;
    st->proposals_committed = n->proposals_committed;
    st->proposals_failed = n->proposals_failed;
    if (n->raft == NULL) {
        return;
    }
    struct raft_status rs;
    raft_status(n->raft, &rs);
    st->term = rs.term;
    st->leader = rs.leader;
    st->role = rs.role;
    st->commit = rs.commit;
    st->applied = rs.applied;
    st->last_index = rs.last_index;
    st->first_index = rs.first_index;
    st->snapshot_index = n->snap.index;
    st->snapshots_created = n->snaps_created;
    st->snapshots_installed = n->snaps_installed;
}

struct store_reader *srv_node_reader(struct srv_node *n)
{
    LATCH_ASSERT(n != NULL && n->reader != NULL);
    return n->reader;
}
