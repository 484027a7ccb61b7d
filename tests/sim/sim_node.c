/*
 * sim_node.c — one simulated server: a real consensus core, its disk and its application.
 *
 * The driver follows the READY CONTRACT of raft.h to the letter. When an idle live node has
 * a ready it takes it, puts rd.msgs on the network at once and starts a persist that takes a
 * random number of steps; meanwhile the node is busy and every input (ticks, messages,
 * transport reports) waits in its inbox, because no core call is allowed before
 * raft_advance(). When the persist completes the driver writes snapshot, entries and hard
 * state to the node's raft_memstore, sends msgs_after_persist, applies the committed
 * entries, answers the read states, calls raft_advance() and then feeds the inbox.
 *
 * Durability: the memstore, the application state (struct sim_app) and the chain log change
 * only when a persist completes, so a crash — raft_free() plus dropping the pending ready
 * and the inbox — loses exactly the state that was not yet synced.
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SNAP_MAGIC 0x6c61746368736e70ull /* "latchsnp" */
#define SNAP_BYTES 32u

struct sim_node *sim_node_get(const struct sim *s, raft_id id)
{
    return id < SIM_IDS_MAX ? s->nodes[id] : NULL;
}

bool sim_node_is_live(const struct sim_node *n)
{
    return n != NULL && n->state == SIM_NODE_LIVE;
}

static void node_trace(void *data, const struct raft_trace *ev)
{
    struct sim_node *n = data;
    struct sim *s = n->sim;

    sim_event(s, SIM_EV_TRACE, ev->id, ev->term, ev->kind, ev->a, ev->b);
    if (ev->kind == RAFT_TRACE_BECOME_CANDIDATE) {
        s->stats.elections++;
    } else if (ev->kind == RAFT_TRACE_TRANSFER_START) {
        s->stats.transfers_started++;
        s->transfer_target = ev->a;
        s->transfer_term = ev->term;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Chain log: the chain hash of every stored entry, durable with the memstore            */
/* ------------------------------------------------------------------------------------ */

static void chain_reserve(struct sim_chain_log *log, raft_index index)
{
    raft_index cap = log->cap == 0 ? 1024 : log->cap;

    if (index < log->cap) {
        return;
    }
    while (cap <= index) {
        cap *= 2;
    }
    log->chain = realloc(log->chain, (size_t)cap * sizeof(*log->chain));
    log->term = realloc(log->term, (size_t)cap * sizeof(*log->term));
    LATCH_ASSERT(log->chain != NULL && log->term != NULL);
    memset(log->chain + log->cap, 0, (size_t)(cap - log->cap) * sizeof(*log->chain));
    memset(log->term + log->cap, 0, (size_t)(cap - log->cap) * sizeof(*log->term));
    log->cap = cap;
}

static void chain_set(struct sim_chain_log *log, raft_index index, raft_term term, uint64_t chain)
{
    chain_reserve(log, index);
    log->chain[index] = chain;
    log->term[index] = term;
}

/* ------------------------------------------------------------------------------------ */
/* Lifecycle                                                                            */
/* ------------------------------------------------------------------------------------ */

static void node_open(struct sim_node *n)
{
    struct sim *s = n->sim;
    struct raft_config cfg;
    struct raft_hard_state hs;
    int rc;

    raft_config_defaults(&cfg);
    cfg.id = n->id;
    cfg.election_tick = s->p.election_tick;
    cfg.heartbeat_tick = s->p.heartbeat_tick;
    cfg.seed = sim_rng_next(&s->rng);
    cfg.applied = n->app.applied;
    cfg.max_inflight_msgs = s->p.max_inflight_msgs;
    cfg.max_msg_bytes = s->p.max_msg_bytes;
    cfg.max_committed_bytes = s->p.max_committed_bytes;
    cfg.max_uncommitted_bytes = s->p.max_uncommitted_bytes;
    cfg.pre_vote = s->p.pre_vote;
    cfg.check_quorum = s->p.check_quorum;
    cfg.disable_proposal_forwarding = s->p.no_forwarding;
    cfg.read_only = RAFT_READ_SAFE;
    cfg.storage = raft_memstore_storage(n->ms);
    cfg.tracer = &n->tracer;
    rc = raft_new(&cfg, &n->r);
    LATCH_ASSERTF(rc == 0, "raft_new of node %llu failed: %s", (unsigned long long)n->id,
                  latch_error_name(rc));
    if (s->opt->bugs != 0) {
        raft_set_bugs(n->r, s->opt->bugs);
    }
    n->state = SIM_NODE_LIVE;
    n->busy = false;
    n->persisting = false;
    raft_memstore_hard_state(n->ms, &hs);
    n->seen_commit = hs.commit; /* commit never below what was persisted */
    n->seen_term = hs.term;
    n->seen_leader = false;
    sim_node_observe(n);
}

struct sim_node *sim_node_create(struct sim *s, raft_id id, const struct raft_conf_state *boot)
{
    struct sim_node *n = calloc(1, sizeof(*n));
    int rc;

    LATCH_ASSERT(n != NULL);
    LATCH_ASSERT(id > 0 && id < SIM_IDS_MAX && s->nodes[id] == NULL);
    n->sim = s;
    n->id = id;
    n->tracer.data = n;
    n->tracer.trace = node_trace;
    rc = raft_memstore_new(NULL, &n->ms);
    LATCH_ASSERT(rc == 0);
    if (boot != NULL) {
        rc = raft_memstore_bootstrap(n->ms, boot);
        LATCH_ASSERTF(rc == 0, "bootstrap: %s", latch_error_name(rc));
        for (raft_index i = 1; i <= raft_memstore_last_index(n->ms); i++) {
            const struct raft_entry *e = raft_memstore_entry(n->ms, i);
            uint64_t chain = sim_chain(i == 1 ? 0 : n->log.chain[i - 1], e);

            chain_set(&n->log, i, e->term, chain);
            n->log.last = i;
            sim_check_stored(s, n, i, e->term, chain);
        }
    }
    s->nodes[id] = n;
    sim_event(s, SIM_EV_START, id, 0, boot != NULL, 0, 0);
    node_open(n);
    return n;
}

static void inbox_clear(struct sim_node *n)
{
    for (size_t i = 0; i < n->inbox_count; i++) {
        struct sim_item *it = &n->inbox[(n->inbox_head + i) % SIM_INBOX_MAX];

        if (it->kind == SIM_ITEM_MSG) {
            sim_msg_free(it->msg);
        }
    }
    n->inbox_head = 0;
    n->inbox_count = 0;
}

void sim_node_destroy(struct sim_node *n)
{
    if (n == NULL) {
        return;
    }
    raft_free(n->r);
    inbox_clear(n);
    raft_memstore_free(n->ms);
    free(n->log.chain);
    free(n->log.term);
    free(n->vote_by_term);
    free(n);
}

void sim_node_crash(struct sim_node *n)
{
    struct sim *s = n->sim;

    LATCH_ASSERT(n->state == SIM_NODE_LIVE);
    sim_event(s, SIM_EV_CRASH, n->id, n->seen_term, n->persisting, n->app.applied, 0);
    raft_free(n->r); /* allowed between raft_ready() and raft_advance() */
    n->r = NULL;
    memset(&n->rd, 0, sizeof(n->rd));
    n->busy = false;
    n->persisting = false;
    inbox_clear(n);
    sim_net_crash_outbox(s, n->id, n->life);
    n->state = SIM_NODE_CRASHED;
    s->stats.crashes++;
}

void sim_node_restart(struct sim_node *n)
{
    struct sim *s = n->sim;
    struct raft_hard_state hs;

    LATCH_ASSERT(n->state == SIM_NODE_CRASHED);
    raft_memstore_hard_state(n->ms, &hs);
    n->life++;
    s->stats.restarts++;
    sim_event(s, SIM_EV_RESTART, n->id, hs.term, n->app.applied, hs.commit, n->life);
    node_open(n);
}

void sim_node_mark_removed(struct sim *s, raft_id id)
{
    struct sim_node *n = sim_node_get(s, id);

    if (n != NULL && (n->state == SIM_NODE_LIVE || n->state == SIM_NODE_CRASHED)) {
        n->stop_pending = true;
    }
}

/* Discards the nodes a committed change removed. Done at the end of a step, never while
 * the driver is inside one of them. */
void sim_node_reap(struct sim *s)
{
    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = s->nodes[id];

        if (n == NULL || !n->stop_pending) {
            continue;
        }
        sim_event(s, SIM_EV_STOP, id, n->seen_term, 0, 0, 0);
        raft_free(n->r);
        n->r = NULL;
        inbox_clear(n);
        raft_memstore_free(n->ms);
        n->ms = NULL;
        free(n->log.chain);
        free(n->log.term);
        memset(&n->log, 0, sizeof(n->log));
        n->busy = false;
        n->persisting = false;
        n->stop_pending = false;
        n->state = SIM_NODE_REMOVED;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Observation after every core call                                                    */
/* ------------------------------------------------------------------------------------ */

void sim_node_observe(struct sim_node *n)
{
    struct sim *s = n->sim;
    struct raft_status st;
    bool leader;

    raft_status(n->r, &st);
    if (st.term < n->seen_term) {
        sim_violation(s, "term regressed", "node %llu term %llu after %llu",
                      (unsigned long long)n->id, (unsigned long long)st.term,
                      (unsigned long long)n->seen_term);
    }
    if (st.commit < n->seen_commit) {
        sim_violation(s, "commit regressed", "node %llu (life %u) commit %llu after %llu",
                      (unsigned long long)n->id, n->life, (unsigned long long)st.commit,
                      (unsigned long long)n->seen_commit);
    }
    if (st.commit > n->seen_commit) {
        sim_check_commit(s, n, st.term, st.commit);
    }
    leader = st.role == RAFT_LEADER;
    if (leader && n->seen_leader && st.term == n->seen_term && st.commit > n->seen_commit &&
        !s->opt->end_to_end) {
        sim_check_leader_commit(s, n, st.term, st.commit);
    }
    if (leader) {
        sim_check_leader(s, n, st.term);
        if (!n->seen_leader || st.term != n->seen_term) {
            sim_event(s, SIM_EV_LEADER, n->id, st.term, st.commit, 0, 0);
            s->stats.leader_changes++;
            if (n->id == s->transfer_target && st.term > s->transfer_term) {
                s->stats.transfers_completed++;
                s->transfer_target = RAFT_NONE;
            }
            sim_check_became_leader(s, n, st.term);
            if (s->phase == SIM_PHASE_FAULTS) {
                sim_nemesis_became_leader(s, n);
            }
        }
    }
    n->seen_commit = st.commit > n->seen_commit ? st.commit : n->seen_commit;
    n->seen_term = st.term > n->seen_term ? st.term : n->seen_term;
    n->seen_leader = leader;
}

/* ------------------------------------------------------------------------------------ */
/* Inputs                                                                               */
/* ------------------------------------------------------------------------------------ */

static bool inbox_push(struct sim_node *n, const struct sim_item *it)
{
    if (n->inbox_count == SIM_INBOX_MAX) {
        return false;
    }
    n->inbox[(n->inbox_head + n->inbox_count) % SIM_INBOX_MAX] = *it;
    n->inbox_count++;
    return true;
}

static void node_step(struct sim_node *n, struct sim_msg *msg)
{
    struct sim *s = n->sim;
    int rc = raft_step(n->r, &msg->m);

    if (rc != 0) {
        sim_violation(s, "step failed", "node %llu: raft_step(%s) returned %s",
                      (unsigned long long)n->id, raft_msg_type_name(msg->m.type),
                      latch_error_name(rc));
    }
    sim_node_observe(n);
    if (s->phase == SIM_PHASE_FAULTS) {
        sim_nemesis_stepped(s, n, &msg->m);
    }
    sim_msg_free(msg);
}

static void node_run_item(struct sim_node *n, struct sim_item *it)
{
    switch (it->kind) {
    case SIM_ITEM_TICK:
        sim_event(n->sim, SIM_EV_TICK, n->id, n->seen_term, 0, 0, 0);
        raft_tick(n->r);
        sim_node_observe(n);
        break;
    case SIM_ITEM_MSG:
        node_step(n, it->msg);
        break;
    case SIM_ITEM_REPORT_SNAPSHOT:
        raft_report_snapshot(n->r, it->peer, it->ok);
        sim_node_observe(n);
        break;
    case SIM_ITEM_UNREACHABLE:
        raft_report_unreachable(n->r, it->peer);
        sim_node_observe(n);
        break;
    default:
        LATCH_UNREACHABLE();
    }
}

/* Runs it now when the node is idle, queues it while the node is busy. */
static void node_input(struct sim_node *n, struct sim_item *it)
{
    LATCH_ASSERT(n->state == SIM_NODE_LIVE);
    if (!n->busy) {
        node_run_item(n, it);
        return;
    }
    if (inbox_push(n, it)) {
        return;
    }
    /* A full inbox loses the input, as an overloaded server would. */
    if (it->kind == SIM_ITEM_MSG) {
        struct sim *s = n->sim;
        struct sim_node *src = sim_node_get(s, it->msg->m.from);

        s->stats.msgs_dropped++;
        if (it->msg->m.type == RAFT_MSG_SNAPSHOT && sim_node_is_live(src) &&
            src->life == it->msg->from_life && src != n) {
            sim_node_report_snapshot(src, n->id, false);
        }
        sim_msg_free(it->msg);
    }
}

void sim_node_tick(struct sim_node *n)
{
    struct sim_item it = {.kind = SIM_ITEM_TICK};

    node_input(n, &it);
}

void sim_node_receive(struct sim_node *n, struct sim_msg *msg)
{
    struct sim_item it = {.kind = SIM_ITEM_MSG, .msg = msg};

    node_input(n, &it);
}

void sim_node_report_snapshot(struct sim_node *n, raft_id to, bool ok)
{
    struct sim_item it = {.kind = SIM_ITEM_REPORT_SNAPSHOT, .peer = to, .ok = ok};

    node_input(n, &it);
}

void sim_node_report_unreachable(struct sim_node *n, raft_id to)
{
    struct sim_item it = {.kind = SIM_ITEM_UNREACHABLE, .peer = to};

    node_input(n, &it);
}

static void inbox_drain(struct sim_node *n)
{
    while (n->state == SIM_NODE_LIVE && !n->busy && n->inbox_count > 0) {
        struct sim_item it = n->inbox[n->inbox_head];

        n->inbox_head = (n->inbox_head + 1) % SIM_INBOX_MAX;
        n->inbox_count--;
        node_run_item(n, &it);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Persist completion: disk writes, then speaking, then applying                         */
/* ------------------------------------------------------------------------------------ */

static void app_encode(const struct sim_app *app, uint8_t *buf)
{
    sim_put64(buf, SNAP_MAGIC);
    sim_put64(buf + 8, app->applied);
    sim_put64(buf + 16, app->applied_term);
    sim_put64(buf + 24, app->chain);
}

static bool app_decode(const struct raft_snapshot *snap, struct sim_app *app)
{
    if (snap->len != SNAP_BYTES || sim_get64(snap->data) != SNAP_MAGIC) {
        return false;
    }
    app->applied = sim_get64(snap->data + 8);
    app->applied_term = sim_get64(snap->data + 16);
    app->chain = sim_get64(snap->data + 24);
    return true;
}

static void node_install(struct sim_node *n, const struct raft_snapshot *snap)
{
    struct sim *s = n->sim;
    struct sim_app app;
    int rc;

    sim_event(s, SIM_EV_INSTALL, n->id, n->seen_term, snap->meta.index, snap->meta.term, 0);
    if (!app_decode(snap, &app) || app.applied != snap->meta.index ||
        app.applied_term != snap->meta.term) {
        sim_violation(s, "snapshot data", "node %llu got snapshot %llu/%llu with foreign data",
                      (unsigned long long)n->id, (unsigned long long)snap->meta.index,
                      (unsigned long long)snap->meta.term);
        return;
    }
    if (app.applied < n->app.applied) {
        sim_violation(s, "state-machine safety",
                      "node %llu told to install snapshot %llu below its applied index %llu",
                      (unsigned long long)n->id, (unsigned long long)app.applied,
                      (unsigned long long)n->app.applied);
        return;
    }
    rc = raft_memstore_apply_snapshot(n->ms, snap);
    if (rc != 0) {
        sim_violation(s, "storage", "node %llu: installing snapshot %llu failed: %s",
                      (unsigned long long)n->id, (unsigned long long)snap->meta.index,
                      latch_error_name(rc));
        return;
    }
    sim_check_installed(s, n, snap, &app);
    n->app = app;
    chain_set(&n->log, app.applied, app.applied_term, app.chain);
    n->log.last = app.applied;
    sim_check_stored(s, n, app.applied, app.applied_term, app.chain);
    s->stats.snapshots_installed++;
}

static void node_append(struct sim_node *n, const struct raft_entry *ents, size_t count)
{
    struct sim *s = n->sim;
    raft_index first = ents[0].index;
    int rc;

    sim_event(s, SIM_EV_PERSIST, n->id, n->seen_term, count, ents[0].index, ents[count - 1].index);
    if (first == 0 || first > n->log.last + 1) {
        sim_violation(s, "storage", "node %llu: append at %llu after last stored %llu",
                      (unsigned long long)n->id, (unsigned long long)first,
                      (unsigned long long)n->log.last);
        return;
    }
    rc = raft_memstore_append(n->ms, ents, count);
    if (rc != 0) {
        sim_violation(s, "storage", "node %llu: append [%llu, %llu] failed: %s",
                      (unsigned long long)n->id, (unsigned long long)first,
                      (unsigned long long)ents[count - 1].index, latch_error_name(rc));
        return;
    }
    for (size_t i = 0; i < count; i++) {
        raft_index idx = ents[i].index;
        uint64_t chain = sim_chain(idx == 1 ? 0 : n->log.chain[idx - 1], &ents[i]);

        chain_set(&n->log, idx, ents[i].term, chain);
        sim_check_stored(s, n, idx, ents[i].term, chain);
        if (idx <= n->app.applied && idx < s->check.history_cap &&
            s->check.history[idx].chain != chain) {
            sim_violation(s, "state-machine safety",
                          "node %llu overwrote applied entry %llu with term %llu",
                          (unsigned long long)n->id, (unsigned long long)idx,
                          (unsigned long long)ents[i].term);
        }
    }
    n->log.last = ents[count - 1].index;
}

static void node_save_hard_state(struct sim_node *n, const struct raft_hard_state *hs)
{
    struct raft_hard_state old;

    raft_memstore_hard_state(n->ms, &old);
    sim_event(n->sim, SIM_EV_HARD_STATE, n->id, hs->term, hs->term, hs->vote, hs->commit);
    sim_check_hard_state(n->sim, n, &old, hs);
    raft_memstore_set_hard_state(n->ms, hs);
}

/* A committed change takes effect in the cluster the first time any node applies it:
 * a joiner is started, a removed node is stopped and discarded. */
static void
conf_first_applied(struct sim *s, const struct raft_entry *e, const struct raft_conf_state *conf)
{
    struct raft_conf_change cc;

    if (e->index <= s->bootstrap_count || raft_conf_change_decode(e->data, e->len, &cc) != 0) {
        return;
    }
    s->stats.conf_applied++;
    sim_event(s, SIM_EV_CONF_APPLIED, cc.node, e->term, cc.type, cc.node, e->index);
    bool member =
        raft_conf_state_is_voter(conf, cc.node) || raft_conf_state_is_learner(conf, cc.node);
    if (member && cc.node < SIM_IDS_MAX && s->nodes[cc.node] == NULL) {
        sim_node_create(s, cc.node, NULL);
    } else if (!member) {
        sim_node_mark_removed(s, cc.node);
    }
}

static void node_apply(struct sim_node *n, const struct raft_entry *e)
{
    struct sim *s = n->sim;
    uint64_t chain;
    bool first;

    if (e->index != n->app.applied + 1) {
        sim_violation(s, "apply order", "node %llu applied index %llu after %llu",
                      (unsigned long long)n->id, (unsigned long long)e->index,
                      (unsigned long long)n->app.applied);
        return;
    }
    chain = sim_chain(n->app.chain, e);
    sim_event(s, SIM_EV_APPLY, n->id, n->seen_term, e->index, e->term, e->type);
    if (e->index <= n->log.last && n->log.chain[e->index] != chain) {
        sim_violation(s, "log matching",
                      "node %llu applied index %llu term %llu that differs from its stored "
                      "entry (term %llu)",
                      (unsigned long long)n->id, (unsigned long long)e->index,
                      (unsigned long long)e->term, (unsigned long long)n->log.term[e->index]);
    }
    first = sim_check_applied(s, n, e, chain);
    if (e->type == RAFT_ENTRY_CONF) {
        struct raft_conf_state conf;

        raft_apply_conf_change(n->r, e, &conf);
        raft_memstore_set_conf(n->ms, &conf);
        if (first) {
            conf_first_applied(s, e, &conf);
        }
    }
    n->app.applied = e->index;
    n->app.applied_term = e->term;
    n->app.chain = chain;
}

static void node_complete(struct sim_node *n)
{
    struct sim *s = n->sim;
    const struct raft_ready *rd = &n->rd;

    if (rd->snapshot != NULL) {
        node_install(n, rd->snapshot);
    }
    if (rd->entries_count > 0) {
        node_append(n, rd->entries, rd->entries_count);
    }
    if (rd->hard_state_changed) {
        node_save_hard_state(n, &rd->hard_state);
    }
    for (size_t i = 0; i < rd->msgs_after_persist_count; i++) {
        sim_net_send(s, n, &rd->msgs_after_persist[i]);
    }
    for (size_t i = 0; i < rd->committed_count; i++) {
        node_apply(n, &rd->committed[i]);
    }
    for (size_t i = 0; i < rd->read_states_count; i++) {
        sim_event(s, SIM_EV_READ_STATE, n->id, n->seen_term, rd->read_states[i].context,
                  rd->read_states[i].index, 0);
        sim_check_read_state(s, n, &rd->read_states[i]);
    }
    raft_advance(n->r, rd);
    memset(&n->rd, 0, sizeof(n->rd));
    n->busy = false;
    n->persisting = false;
    sim_node_observe(n);
    inbox_drain(n);
}

static void node_start_ready(struct sim_node *n)
{
    struct sim *s = n->sim;
    const struct raft_ready *rd = &n->rd;
    uint64_t delay = 0;

    raft_ready(n->r, &n->rd);
    n->busy = true;
    for (size_t i = 0; i < rd->msgs_count; i++) {
        sim_net_send(s, n, &rd->msgs[i]);
    }
    if (rd->must_sync || rd->snapshot != NULL || rd->entries_count > 0 || rd->hard_state_changed) {
        /* Once faults stop the disk is fast: see the timing requirement in raft_sim.c. */
        delay = sim_rng_range(&s->rng, 0, s->phase == SIM_PHASE_FAULTS ? s->p.disk_max : 2);
    }
    if (delay == 0) {
        node_complete(n);
        return;
    }
    n->persisting = true;
    n->persist_due = s->step + delay;
}

void sim_nodes_drive(struct sim *s)
{
    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = s->nodes[id];

        if (!sim_node_is_live(n)) {
            continue;
        }
        if (n->persisting && n->persist_due <= s->step) {
            node_complete(n);
        }
        for (int guard = 0; guard < 64; guard++) {
            if (!sim_node_is_live(n) || n->busy || !raft_has_ready(n->r)) {
                break;
            }
            node_start_ready(n);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Snapshot and compaction (an operator or the server's snapshot policy)                 */
/* ------------------------------------------------------------------------------------ */

void sim_node_snapshot(struct sim_node *n)
{
    struct sim *s = n->sim;
    struct raft_snapshot cur;
    struct raft_conf_state conf;
    uint8_t buf[SNAP_BYTES];
    raft_index first;
    raft_index to;
    int rc;

    if (!sim_node_is_live(n) || n->busy) {
        return;
    }
    raft_memstore_snapshot(n->ms, &cur);
    if (n->app.applied <= cur.meta.index) {
        return;
    }
    raft_memstore_conf(n->ms, &conf);
    app_encode(&n->app, buf);
    rc = raft_memstore_create_snapshot(n->ms, n->app.applied, &conf, buf, sizeof(buf));
    if (rc != 0) {
        sim_violation(s, "storage", "node %llu: snapshot at applied %llu failed: %s",
                      (unsigned long long)n->id, (unsigned long long)n->app.applied,
                      latch_error_name(rc));
        return;
    }
    s->stats.snapshots_taken++;
    first = raft_memstore_first_index(n->ms);
    to = 0;
    if (n->app.applied >= first) {
        to = sim_rng_chance(&s->rng, 500) ? n->app.applied
                                          : sim_rng_range(&s->rng, first, n->app.applied);
        rc = raft_memstore_compact(n->ms, to);
        if (rc != 0) {
            sim_violation(s, "storage", "node %llu: compact to %llu failed: %s",
                          (unsigned long long)n->id, (unsigned long long)to, latch_error_name(rc));
        }
    }
    sim_event(s, SIM_EV_SNAPSHOT, n->id, n->seen_term, n->app.applied, to, 0);
}
