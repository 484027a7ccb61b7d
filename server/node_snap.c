/*
 * node_snap.c — the node's snapshots and log compaction (node.h SNAPSHOTS,
 * docs/decisions/snapshots.md). Part of the node: node_int.h, node.c's invariants N1-N4.
 */
#include <stdio.h>

#include "latch_error.h"
#include "latch_log.h"
#include "node_int.h"

/* ---------------------------------------------------------------------------------- */
/* Snapshots and log compaction (node.h SNAPSHOTS)                                    */
/* ---------------------------------------------------------------------------------- */

#define NODE_SNAP_PATH_BYTES 4096u

/* The store's newest snapshot, and whether its file is there (at start). */
int node__snap_load(struct srv_node *n)
{
    char path[NODE_SNAP_PATH_BYTES];
    struct store_snap_reader *rd = NULL;
    int rv = store_log_snapshot_meta(n->store, &n->snap);
    if (rv != 0) {
        return rv;
    }
    n->snap_file = false;
    if (n->snap.index > 0) {
        store_snapshot_path(n->store, n->snap.index, n->snap.term, path, sizeof(path));
        n->snap_file = store_snap_reader_open(n->store, path, NULL, &rd) == 0;
        store_snap_reader_close(rd);
    }
    return 0;
}

/*
 * The snapshot thread (node.h SNAPSHOTS): makes the file (store_snapshot_write) beside the
 * storage thread, so that a long copy holds up neither the loop nor the log and the applies.
 * One job at a time; the loop thread posts it (node__snap_maybe_start) and learns the outcome
 * through the node's async handle (node__snap_thread_poll). Started at the first job, joined by
 * release_engine. Its fields below are guarded by snap_mu.
 */
static void *snap_thread_main(void *arg)
{
    struct srv_node *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->snap_mu);
        while (!n->snap_posted && !n->snap_stop) {
            pthread_cond_wait(&n->snap_cv, &n->snap_mu);
        }
        if (n->snap_stop) { /* closing: a job not started yet is dropped */
            pthread_mutex_unlock(&n->snap_mu);
            return NULL;
        }
        n->snap_posted = false;
        pthread_mutex_unlock(&n->snap_mu);

        int rc = store_snapshot_write(n->store, &n->snap_job_meta, NULL, 0);

        pthread_mutex_lock(&n->snap_mu);
        n->snap_job_rc = rc;
        n->snap_done = true;
        pthread_mutex_unlock(&n->snap_mu);
        uv_async_send(&n->async);
    }
}

void node__snap_thread_stop(struct srv_node *n)
{
    if (!n->snap_thread_started) {
        return;
    }
    pthread_mutex_lock(&n->snap_mu);
    n->snap_stop = true;
    pthread_cond_signal(&n->snap_cv);
    pthread_mutex_unlock(&n->snap_mu);
    int rv = pthread_join(n->snap_thread, NULL);
    LATCH_ASSERTF(rv == 0, "pthread_join: %d", rv);
    pthread_cond_destroy(&n->snap_cv);
    pthread_mutex_destroy(&n->snap_mu);
    n->snap_thread_started = false;
    n->snap_job_running = false;
}

/*
 * Starts making a snapshot when one is due: snapshot_count applied entries past the newest
 * one (or past a failed attempt), or the core asked for one that has no file. Not while one
 * is being made or waits to be recorded. Loop thread, at any time.
 */
void node__snap_maybe_start(struct srv_node *n)
{
    if (n->state != NODE_RUNNING || n->failed != 0 || n->snap_job_running || n->snap_made_pending ||
        n->applied == 0) {
        return;
    }
    bool due = n->applied >= n->snap.index + n->snapshot_count &&
               n->applied >= n->snap_failed_at + n->snapshot_count;
    if (!due && !n->snap_wanted) {
        return;
    }
    if (!n->snap_thread_started) {
        pthread_mutex_init(&n->snap_mu, NULL);
        pthread_cond_init(&n->snap_cv, NULL);
        n->snap_posted = n->snap_done = n->snap_stop = false;
        if (pthread_create(&n->snap_thread, NULL, snap_thread_main, n) != 0) {
            pthread_cond_destroy(&n->snap_cv);
            pthread_mutex_destroy(&n->snap_mu);
            n->snap_failed_at = n->applied;
            latch_log(LATCH_LOG_ERROR, "node %llu: cannot start the snapshot thread",
                      ull(n->cfg.id));
            return;
        }
        n->snap_thread_started = true;
    }
    n->snap_job_running = true;
    pthread_mutex_lock(&n->snap_mu);
    n->snap_posted = true;
    pthread_cond_signal(&n->snap_cv);
    pthread_mutex_unlock(&n->snap_mu);
}

/* Loop thread (the async handle): takes the snapshot thread's outcome, if there is one. */
void node__snap_thread_poll(struct srv_node *n)
{
    if (!n->snap_thread_started) {
        return;
    }
    pthread_mutex_lock(&n->snap_mu);
    bool done = n->snap_done;
    int rc = n->snap_job_rc;
    n->snap_done = false;
    pthread_mutex_unlock(&n->snap_mu);
    if (!done) {
        return;
    }
    n->snap_job_running = false;
    n->snap_wanted = false;
    if (rc != 0) {
        n->snap_failed_at = n->applied;
        latch_log(LATCH_LOG_ERROR,
                  "node %llu: making a snapshot at applied index %llu failed: %s (%s); "
                  "retried after %llu more entries",
                  ull(n->cfg.id), ull(n->applied), latch_strerror(rc), latch_error_name(rc),
                  ull(n->snapshot_count));
        return;
    }
    n->snap_made = n->snap_job_meta; /* the thread is idle until the next post */
    n->snap_made_pending = true;
    node__kick(n); /* the next work item records it */
}

/* The snapshot the thread made is older than the recorded one (an install came meanwhile),
 * or the same one with its file already there: nothing to record. The same index without a
 * file (after an install, or a lost file) is recorded: that is how the file comes back. */
static bool snap_made_stale(const struct srv_node *n)
{
    return n->snap_made.index < n->snap.index ||
           (n->snap_made.index == n->snap.index && n->snap_file);
}

/*
 * Decides (loop thread, building a ready's work) whether its work item records the snapshot
 * the snapshot thread made, and how far it compacts the log: up to catchup_entries behind
 * the applied index, never past the newest recorded snapshot (or the one it records). A
 * made snapshot not newer than the recorded one (an install came meanwhile) is dropped.
 */
void node__snap_plan(struct srv_node *n, const struct raft_ready *rd)
{
    struct node_work *w = &n->work;
    w->snap_record = false;
    w->compact_index = 0;
    if (rd->snapshot != NULL) {
        return; /* this ready installs one */
    }
    if (n->snap_made_pending && snap_made_stale(n)) {
        n->snap_made_pending = false;
    }
    raft_index limit = n->snap.index;
    if (n->snap_made_pending) {
        w->snap_record = true;
        w->snap_meta = n->snap_made;
        limit = n->snap_made.index;
    }
    raft_index applied =
        rd->committed_count > 0 ? rd->committed[rd->committed_count - 1].index : n->applied;
    raft_index target = applied > n->catchup_entries ? applied - n->catchup_entries : 0;
    target = target < limit ? target : limit;
    if (target > 0 && target >= store_log_first_index(n->store)) {
        w->compact_index = target;
    }
}

/* No ready and nothing in flight: a snapshot made meanwhile is recorded by a work item of
 * its own (standalone, N2), which does not compact (the core may read the log meanwhile);
 * or one is started if due. */
void node__snap_idle(struct srv_node *n)
{
    node__snap_maybe_start(n);
    if (!n->snap_made_pending || n->in_ready || n->in_flight || n->failed != 0) {
        return;
    }
    if (snap_made_stale(n)) {
        n->snap_made_pending = false;
        return;
    }
    struct node_work *w = &n->work;
    w->has_hs = false;
    w->entries_count = 0;
    w->items_count = 0;
    w->install = NULL;
    w->snap_record = true;
    w->snap_meta = n->snap_made;
    w->compact_index = 0;
    node__post_work(n);
}

/* rd.snapshot is the stream srv_node_snapshot_recv_end verified: its work item installs
 * it. Proposals whose entries the snapshot covers lose their outcome; those after it wait
 * to be seen in the log again (the leader may still commit them). */
bool node__snap_ready_begin(struct srv_node *n, const struct raft_snapshot *s)
{
    if (n->snap_pending == NULL || n->snap_pending_index != s->meta.index ||
        n->snap_pending_term != s->meta.term) {
        latch_log(LATCH_LOG_ERROR,
                  "node %llu: the core restored snapshot %llu/%llu, received %llu/%llu",
                  ull(n->cfg.id), ull(s->meta.index), ull(s->meta.term), ull(n->snap_pending_index),
                  ull(n->snap_pending_term));
        node__fail(n, LATCH_EUNAVAILABLE, "installing a snapshot whose stream is not here");
        return false;
    }
    n->work.install = n->snap_pending;
    n->snap_pending = NULL;
    n->snap_installing = true;
    for (uint64_t seq = ring_begin(&n->props); seq < ring_end(&n->props); seq++) {
        struct node_prop *p = ring_get(&n->props, seq);
        if (p == NULL || p->state != PROP_PROPOSED || p->index == 0) {
            continue;
        }
        if (p->index <= s->meta.index) {
            node__prop_finish(n, seq, SRV_NODE_ETIMEDOUT, NULL);
        } else {
            p->index = 0;
            p->term = 0;
        }
    }
    latch_log(
        LATCH_LOG_INFO, "node %llu: installing snapshot %llu/%llu (applied %llu, log up to %llu)",
        ull(n->cfg.id), ull(s->meta.index), ull(s->meta.term), ull(n->applied), ull(n->last_index));
    n->last_index = s->meta.index;
    return true;
}

/* Storage thread: installs w->install (raft.h: before the entries). False when it failed
 * and the rest of the work item must not run. */
bool node__work_install(struct store *s, struct node_work *w)
{
    (void)s; /* the writer knows its store */
    w->install_rc = 0;
    if (w->install == NULL) {
        return true;
    }
    w->install_rc = store_snap_writer_finish(w->install, &w->snap_meta); /* frees it */
    w->install = NULL;
    return w->install_rc == 0;
}

/* Storage thread: after the apply, records the snapshot made meanwhile and compacts. */
void node__work_snapshot(struct store *s, struct node_work *w)
{
    w->snap_rc = 0;
    w->compact_rc = 0;
    if (w->append_rc != 0 || w->apply_rc != 0) {
        return;
    }
    if (w->snap_record) {
        w->snap_rc = store_snapshot_record(s, &w->snap_meta);
    }
    if (w->snap_rc == 0 && w->compact_index > 0) {
        w->compact_rc = store_log_compact(s, w->compact_index);
    }
}

/* Loop thread, a work item done: takes in what its snapshot steps did. False when the
 * install failed (the node is stopped) or the work item was a standalone snapshot (no
 * ready to finish). *installed: a snapshot was installed. */
bool node__snap_work_done(struct srv_node *n, bool *installed)
{
    struct node_work *w = &n->work;
    *installed = false;
    n->snap_installing = false;
    if (w->install_rc != 0) {
        int rc = w->install_rc;
        w->install_rc = 0;
        node__fail(n, rc, "installing a snapshot (store_snap_writer_finish)");
        return false;
    }
    if (n->in_ready && n->rd.snapshot != NULL) {
        n->snap = w->snap_meta;
        n->snap_file = false; /* the stream was the state itself: no file of it here */
        n->applied = w->snap_meta.index;
        n->snaps_installed++;
        *installed = true;
    }
    if (w->compact_rc != 0 && w->compact_rc != LATCH_ECOMPACTED) {
        latch_log(LATCH_LOG_WARN, "node %llu: compacting the log up to %llu: %s", ull(n->cfg.id),
                  ull(w->compact_index), latch_strerror(w->compact_rc));
    }
    if (w->snap_record) {
        w->snap_record = false;
        n->snap_made_pending = false;
        if (w->snap_rc == 0) {
            n->snap = w->snap_meta;
            n->snap_file = true;
            n->snaps_created++;
            raft_index first = store_log_first_index(n->store);
            latch_log(LATCH_LOG_INFO,
                      "node %llu: snapshot at index %llu (term %llu); log compacted to first "
                      "index %llu",
                      ull(n->cfg.id), ull(n->snap.index), ull(n->snap.term), ull(first));
        } else {
            n->snap_failed_at = n->applied;
            latch_log(LATCH_LOG_ERROR,
                      "node %llu: recording the snapshot at index %llu failed: %s (%s)",
                      ull(n->cfg.id), ull(w->snap_meta.index), latch_strerror(w->snap_rc),
                      latch_error_name(w->snap_rc));
        }
    }
    return n->in_ready;
}

/* After an install's ready finished: the applied hook sees the new revision (watchers read
 * the new history from there; the lease keeper re-reads the store when it leads). */
void node__snap_installed_notify(struct srv_node *n)
{
    struct store_status ss;
    int rv = store_status(n->reader, &ss);
    latch_log(LATCH_LOG_INFO, "node %llu: installed snapshot %llu/%llu: revision %lld",
              ull(n->cfg.id), ull(n->snap.index), ull(n->snap.term),
              rv == 0 ? (long long)ss.revision : -1LL);
    if (rv == 0 && n->cfg.applied != NULL && n->state == NODE_RUNNING) {
        n->cfg.applied(n->cfg.data, ss.revision);
    }
}

int srv_node_snapshot_open(struct srv_node *n,
                           const struct raft_msg *m,
                           struct store_snap_reader **out)
{
    char path[NODE_SNAP_PATH_BYTES];
    struct store_snap_meta *meta;
    LATCH_ASSERT(n != NULL && m != NULL && out != NULL);
    *out = NULL;
    if (n->state != NODE_RUNNING) {
        return LATCH_ESHUTDOWN;
    }
    if (m->type != RAFT_MSG_SNAPSHOT || m->snapshot.meta.index == 0) {
        return LATCH_EINVAL;
    }
    meta = malloc(sizeof(*meta));
    if (meta == NULL) {
        return LATCH_ENOMEM;
    }
    store_snapshot_path(n->store, m->snapshot.meta.index, m->snapshot.meta.term, path,
                        sizeof(path));
    int rv = store_snap_reader_open(n->store, path, meta, out);
    if (rv == 0 && (meta->index != m->snapshot.meta.index || meta->term != m->snapshot.meta.term)) {
        store_snap_reader_close(*out);
        *out = NULL;
        rv = LATCH_ECORRUPT;
    }
    free(meta);
    return rv;
}

int srv_node_snapshot_recv_begin(struct srv_node *n, struct store_snap_writer **out)
{
    LATCH_ASSERT(n != NULL && out != NULL);
    *out = NULL;
    int rv = node__refuse_code(n);
    if (rv != 0) {
        return rv;
    }
    if (n->snap_receiving || n->snap_installing ||
        (n->snap_pending != NULL && n->readies_taken < n->snap_pending_ready)) {
        return LATCH_ESTATE; /* store/ receives into one file at a time */
    }
    /* A pending stream here was not restored by the ready after its step: superseded. */
    store_snap_writer_abort(n->snap_pending);
    n->snap_pending = NULL;
    rv = store_snap_writer_new(n->store, out);
    n->snap_receiving = rv == 0;
    return rv;
}

void srv_node_snapshot_recv_abort(struct srv_node *n, struct store_snap_writer *w)
{
    LATCH_ASSERT(n != NULL);
    if (w != NULL) {
        store_snap_writer_abort(w);
        n->snap_receiving = false;
    }
}

/* The stream's header agrees with the message that announced it. */
static int snap_meta_check(const struct raft_msg *m, const struct store_snap_meta *meta)
{
    struct raft_conf_state conf;
    const struct raft_conf_state *want = &m->snapshot.meta.conf;
    if (meta->index != m->snapshot.meta.index || meta->term != m->snapshot.meta.term ||
        srv_node_conf_decode(meta->conf, meta->conf_len, &conf) != 0 ||
        conf.voters_count != want->voters_count || conf.learners_count != want->learners_count) {
        return LATCH_EPROTO;
    }
    for (uint32_t i = 0; i < conf.voters_count; i++) {
        if (!raft_conf_state_is_voter(want, conf.voters[i])) {
            return LATCH_EPROTO;
        }
    }
    for (uint32_t i = 0; i < conf.learners_count; i++) {
        if (!raft_conf_state_is_learner(want, conf.learners[i])) {
            return LATCH_EPROTO;
        }
    }
    return 0;
}

int srv_node_snapshot_recv_end(struct srv_node *n,
                               const struct raft_msg *m,
                               struct store_snap_writer *w)
{
    LATCH_ASSERT(n != NULL && m != NULL && w != NULL);
    n->snap_receiving = false;
    struct store_snap_meta *meta = malloc(sizeof(*meta));
    int rv = meta == NULL ? LATCH_ENOMEM : node__refuse_code(n);
    if (rv == 0 && (m->type != RAFT_MSG_SNAPSHOT || m->to != n->cfg.id)) {
        rv = LATCH_EINVAL;
    }
    if (rv == 0) {
        rv = store_snap_writer_verify(w, meta);
    }
    if (rv == 0) {
        rv = snap_meta_check(m, meta);
    }
    free(meta);
    if (rv != 0) {
        store_snap_writer_abort(w);
        return rv;
    }
    store_snap_writer_abort(n->snap_pending);
    n->snap_pending = w;
    n->snap_pending_index = m->snapshot.meta.index;
    n->snap_pending_term = m->snapshot.meta.term;
    /* The core restores a snapshot while stepping it, so the next ready carries it or the
     * core ignored it (its log covers it already). */
    n->snap_pending_ready = n->readies_taken + 1;
    latch_log(LATCH_LOG_INFO, "node %llu: received snapshot %llu/%llu from %llu", ull(n->cfg.id),
              ull(m->snapshot.meta.index), ull(m->snapshot.meta.term), ull(m->from));
    struct raft_msg sm = *m;
    sm.snapshot.data = NULL; /* the state is in the stream's file, never in the core */
    sm.snapshot.len = 0;
    return srv_node_step(n, &sm);
}
