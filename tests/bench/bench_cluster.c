/*
 * bench_cluster.c — the in-process cluster behind raft_bench (see bench_cluster.h).
 */
#include "bench_cluster.h"

#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"

/* What a node's snapshot holds: its whole (toy) state machine. */
struct bench_app_state {
    uint64_t applied_normal;
    uint64_t state_hash;
};

static struct bench_node *cluster_node(struct bench_cluster *c, raft_id id)
{
    LATCH_ASSERTF(id >= 1 && id <= c->nodes_count, "node %llu of %zu", (unsigned long long)id,
                  c->nodes_count);
    struct bench_node *n = &c->nodes[id - 1];
    LATCH_ASSERT(n->id == id);
    return n;
}

/*
 * Steps each message into its target at once (see bench_cluster.h for why that respects
 * the contract). Snapshot deliveries are reported to the sender after its advance, since
 * raft_report_snapshot() is not allowed inside the sender's ready.
 */
static int cluster_deliver(struct bench_cluster *c,
                           const struct bench_node *from,
                           const struct raft_msg *msgs,
                           size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct raft_msg *m = &msgs[i];
        LATCH_ASSERTF(m->to != from->id, "node %llu sends to itself", (unsigned long long)m->to);
        int rv = raft_step(cluster_node(c, m->to)->r, m);
        if (rv != 0) {
            return rv;
        }
        c->msgs_delivered++;
        if (m->type == RAFT_MSG_SNAPSHOT) {
            LATCH_ASSERT(c->snap_reports_count < BENCH_NODES_MAX);
            c->snap_reports[c->snap_reports_count++] = m->to;
            c->snapshots_sent++;
        }
    }
    return 0;
}

/* Installs a snapshot received from the leader: storage and state machine together. */
static int node_install_snapshot(struct bench_node *n, const struct raft_snapshot *snap)
{
    LATCH_ASSERT(snap->len == sizeof(struct bench_app_state));
    LATCH_ASSERT(snap->meta.index > n->applied);
    int rv = raft_memstore_apply_snapshot(n->ms, snap);
    if (rv != 0) {
        return rv;
    }
    struct bench_app_state app;
    memcpy(&app, snap->data, sizeof(app));
    n->applied = snap->meta.index;
    n->snap_index = snap->meta.index;
    n->conf = snap->meta.conf;
    n->applied_normal = app.applied_normal;
    n->state_hash = app.state_hash;
    return 0;
}

/* Step 2 of the contract: snapshot, then entries, then hard state. */
static int node_persist(struct bench_node *n, const struct raft_ready *rd)
{
    int rv = 0;
    if (rd->snapshot != NULL) {
        rv = node_install_snapshot(n, rd->snapshot);
    }
    if (rv == 0 && rd->entries_count > 0) {
        rv = raft_memstore_append(n->ms, rd->entries, rd->entries_count);
    }
    if (rv == 0 && rd->hard_state_changed) {
        raft_memstore_set_hard_state(n->ms, &rd->hard_state);
    }
    return rv;
}

/* Step 4: the toy state machine folds each proposal into a hash that replicas compare. */
static void node_apply(struct bench_node *n, const struct raft_entry *ents, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = &ents[i];
        LATCH_ASSERTF(e->index == n->applied + 1, "applying %llu after %llu",
                      (unsigned long long)e->index, (unsigned long long)n->applied);
        if (e->type == RAFT_ENTRY_CONF) {
            raft_apply_conf_change(n->r, e, &n->conf);
            raft_memstore_set_conf(n->ms, &n->conf);
        } else if (e->len > 0) {
            uint64_t word = 0;
            if (e->len >= sizeof(word)) {
                memcpy(&word, e->data, sizeof(word)); /* a fixed size compiles to one load */
            } else {
                memcpy(&word, e->data, e->len);
            }
            n->state_hash = (n->state_hash ^ word ^ e->index) * 0x100000001b3ull;
            n->applied_normal++;
        }
        n->applied = e->index;
    }
}

/* One turn of the READY CONTRACT for node n. */
static int node_handle_ready(struct bench_cluster *c, struct bench_node *n)
{
    struct raft_ready rd;
    raft_ready(n->r, &rd);
    c->readies++;
    int rv = cluster_deliver(c, n, rd.msgs, rd.msgs_count);
    if (rv == 0) {
        rv = node_persist(n, &rd);
    }
    if (rv == 0) {
        rv = cluster_deliver(c, n, rd.msgs_after_persist, rd.msgs_after_persist_count);
    }
    if (rv == 0) {
        node_apply(n, rd.committed, rd.committed_count);
    }
    raft_advance(n->r, &rd);
    for (size_t i = 0; i < c->snap_reports_count; i++) {
        raft_report_snapshot(n->r, c->snap_reports[i], true);
    }
    c->snap_reports_count = 0;
    return rv;
}

int bench_cluster_pump(struct bench_cluster *c, bool *progress)
{
    LATCH_ASSERT(c != NULL && progress != NULL);
    LATCH_ASSERT(c->snap_reports_count == 0);
    *progress = false;
    for (size_t i = 0; i < c->nodes_count; i++) {
        struct bench_node *n = &c->nodes[i];
        if (!raft_has_ready(n->r)) {
            continue;
        }
        *progress = true;
        int rv = node_handle_ready(c, n);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int bench_cluster_settle(struct bench_cluster *c)
{
    bool progress = true;
    while (progress) {
        int rv = bench_cluster_pump(c, &progress);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int node_init(struct bench_node *n, raft_id id, const struct raft_conf_state *conf)
{
    memset(n, 0, sizeof(*n));
    n->id = id;
    int rv = raft_memstore_new(NULL, &n->ms);
    if (rv != 0) {
        return rv;
    }
    rv = raft_memstore_bootstrap(n->ms, conf);
    if (rv != 0) {
        return rv;
    }
    struct raft_config cfg;
    raft_config_defaults(&cfg);
    cfg.id = id;
    cfg.seed = id;
    cfg.storage = raft_memstore_storage(n->ms);
    return raft_new(&cfg, &n->r);
}

int bench_cluster_init(struct bench_cluster *c, size_t nodes_count, uint64_t compact_every)
{
    LATCH_ASSERT(c != NULL);
    memset(c, 0, sizeof(*c));
    if (nodes_count < 1 || nodes_count > BENCH_NODES_MAX) {
        return LATCH_EINVAL;
    }
    c->compact_every = compact_every;
    struct raft_conf_state conf;
    memset(&conf, 0, sizeof(conf));
    for (size_t i = 0; i < nodes_count; i++) {
        conf.voters[conf.voters_count++] = (raft_id)i + 1;
    }
    for (size_t i = 0; i < nodes_count; i++) {
        c->nodes_count = i + 1; /* so that close releases what was made */
        int rv = node_init(&c->nodes[i], (raft_id)i + 1, &conf);
        if (rv != 0) {
            bench_cluster_close(c);
            return rv;
        }
    }
    return 0;
}

void bench_cluster_close(struct bench_cluster *c)
{
    LATCH_ASSERT(c != NULL);
    for (size_t i = 0; i < c->nodes_count; i++) {
        raft_free(c->nodes[i].r);
        raft_memstore_free(c->nodes[i].ms);
        c->nodes[i].r = NULL;
        c->nodes[i].ms = NULL;
    }
    c->nodes_count = 0;
}

int bench_cluster_elect(struct bench_cluster *c, raft_id id)
{
    struct bench_node *n = cluster_node(c, id);
    raft_campaign(n->r);
    int rv = bench_cluster_settle(c);
    if (rv != 0) {
        return rv;
    }
    return raft_is_leader(n->r) ? 0 : LATCH_ENOLEADER;
}

raft_index bench_cluster_min_applied(const struct bench_cluster *c)
{
    LATCH_ASSERT(c->nodes_count > 0);
    raft_index min = c->nodes[0].applied;
    for (size_t i = 1; i < c->nodes_count; i++) {
        min = c->nodes[i].applied < min ? c->nodes[i].applied : min;
    }
    return min;
}

/*
 * Snapshots node n at its applied index, then compacts up to its previous snapshot (so one
 * interval of entries stays for slow followers) but never past what every node applied, so
 * a follower in step with the leader is not pushed onto the snapshot path.
 */
static int node_compact(struct bench_node *n, raft_index min_applied)
{
    struct bench_app_state app = {n->applied_normal, n->state_hash};
    raft_index prev = n->snap_index;
    int rv = raft_memstore_create_snapshot(n->ms, n->applied, &n->conf, &app, sizeof(app));
    if (rv != 0) {
        return rv;
    }
    n->snap_index = n->applied;
    raft_index to = prev < min_applied ? prev : min_applied;
    if (to >= raft_memstore_first_index(n->ms)) {
        rv = raft_memstore_compact(n->ms, to);
        LATCH_ASSERTF(rv == 0, "compact to %llu: %s", (unsigned long long)to, latch_error_name(rv));
    }
    return 0;
}

int bench_cluster_compact(struct bench_cluster *c)
{
    LATCH_ASSERT(c != NULL);
    LATCH_ASSERT(c->compact_every > 0);
    raft_index min_applied = 0; /* computed only when a node is due: this runs every turn */
    for (size_t i = 0; i < c->nodes_count; i++) {
        struct bench_node *n = &c->nodes[i];
        if (n->applied < n->snap_index + c->compact_every) {
            continue;
        }
        min_applied = min_applied == 0 ? bench_cluster_min_applied(c) : min_applied;
        int rv = node_compact(n, min_applied);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

bool bench_cluster_replicas_agree(const struct bench_cluster *c)
{
    LATCH_ASSERT(c->nodes_count > 0);
    const struct bench_node *first = &c->nodes[0];
    for (size_t i = 1; i < c->nodes_count; i++) {
        const struct bench_node *n = &c->nodes[i];
        if (n->applied_normal != first->applied_normal || n->state_hash != first->state_hash) {
            return false;
        }
    }
    return true;
}
