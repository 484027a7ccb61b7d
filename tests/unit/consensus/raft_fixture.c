/*
 * raft_fixture.c — see raft_fixture.h. Test support only: allocation failures abort the
 * test (the fixture is not what is under test).
 */
#include "raft_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_assert.h"
#include "latch_error.h"

/*
 * With UNIT_TESTING, cmocka.h routes malloc and friends to its leak checker, which runs
 * after the test body and before teardown. Fixture memory lives until teardown
 * (fx_teardown frees it all), so the fixture allocates from libc directly.
 */
#undef malloc
#undef calloc
#undef realloc
#undef free

/* Upper bound on deliveries in one fx_stabilize_if: a livelock is a test failure. */
#define FX_DELIVERIES_MAX 200000u

/* ---------------------------------------------------------------------------------- */
/* Small helpers                                                                      */
/* ---------------------------------------------------------------------------------- */

static void *fx_alloc(size_t size)
{
    void *p = calloc(1, size == 0 ? 1 : size);

    assert_non_null(p);
    return p;
}

static void *fx_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    size_t n = *cap == 0 ? 8 : *cap;

    if (need <= *cap) {
        return p;
    }
    while (n < need) {
        n *= 2;
    }
    p = realloc(p, n * elem);
    assert_non_null(p);
    *cap = n;
    return p;
}

static uint8_t *fx_dup(const void *data, size_t len)
{
    uint8_t *copy;

    if (len == 0) {
        return NULL;
    }
    copy = fx_alloc(len);
    memcpy(copy, data, len);
    return copy;
}

/* Hands a failed LATCH_ASSERT to cmocka, with the printed values when there are any; the
 * text must outlive the longjmp that mock_assert() makes. */
static void fx_assert_handler(const char *file, int line, const char *expr, const char *detail)
{
    static char text[768];

    if (detail[0] != '\0') {
        snprintf(text, sizeof(text), "%s (%s)", expr, detail);
        expr = text;
    }
    mock_assert(0, expr, file, line);
}

void fx_install_assert_handler(void)
{
    latch_assert_set_handler(fx_assert_handler);
}

int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return -1;
    }
    fx_install_assert_handler();
    *state = fx;
    return 0;
}

int fx_teardown(void **state)
{
    struct fx *fx = *state;

    fx_free(fx);
    free(fx);
    *state = NULL;
    return 0;
}

struct fx_node *fx_node(struct fx *fx, raft_id id)
{
    assert_true(id >= 1 && id <= FX_NODES_MAX);
    assert_non_null(fx->nodes[id].ms);
    return &fx->nodes[id];
}

static struct raft *fx_raft(struct fx *fx, raft_id id)
{
    struct fx_node *node = fx_node(fx, id);

    assert_non_null(node->r);
    return node->r;
}

static void fx_trace_cb(void *data, const struct raft_trace *ev)
{
    struct fx *fx = data;

    fx->traces = fx_grow(fx->traces, &fx->traces_cap, fx->traces_count + 1, sizeof(*ev));
    fx->traces[fx->traces_count++] = *ev;
}

/* ---------------------------------------------------------------------------------- */
/* Building a cluster                                                                 */
/* ---------------------------------------------------------------------------------- */

static void fx_node_config(struct fx *fx, struct fx_node *node)
{
    struct raft_config *cfg = &node->cfg;

    raft_config_defaults(cfg);
    cfg->id = node->id;
    cfg->election_tick = FX_ELECTION_TICK;
    cfg->heartbeat_tick = FX_HEARTBEAT_TICK;
    cfg->seed = 0x5eed0000u + node->id * 7919u;
    cfg->applied = 0;
    cfg->pre_vote = false;
    cfg->check_quorum = false;
    cfg->storage = raft_memstore_storage(node->ms);
    cfg->tracer = &fx->tracer;
}

static void fx_voters(struct raft_conf_state *conf, size_t n)
{
    memset(conf, 0, sizeof(*conf));
    for (size_t i = 0; i < n; i++) {
        conf->voters[i] = (raft_id)(i + 1);
    }
    conf->voters_count = (uint32_t)n;
}

void fx_init(struct fx *fx, size_t n)
{
    struct raft_conf_state conf;

    assert_true(n >= 1 && n <= FX_NODES_MAX);
    assert_int_equal(fx->n, 0);
    fx_install_assert_handler();
    fx->n = n;
    fx->auto_report_snapshot = true;
    fx->tracer.data = fx;
    fx->tracer.trace = fx_trace_cb;
    fx_voters(&conf, n);
    for (size_t i = 1; i <= n; i++) {
        struct fx_node *node = &fx->nodes[i];

        node->id = (raft_id)i;
        node->fx = fx;
        assert_int_equal(raft_memstore_new(NULL, &node->ms), 0);
        assert_int_equal(raft_memstore_bootstrap(node->ms, &conf), 0);
        fx_node_config(fx, node);
    }
}

void fx_set_log(struct fx *fx,
                raft_id id,
                const raft_term *terms,
                size_t count,
                raft_term term,
                raft_index commit)
{
    struct fx_node *node = fx_node(fx, id);
    struct raft_entry *entries = fx_alloc(count * sizeof(*entries));
    uint8_t *data = fx_alloc(count * 8);
    struct raft_hard_state hs = {.term = term, .vote = RAFT_NONE, .commit = commit};
    struct raft_conf_state conf;

    assert_null(node->r);
    assert_true(commit <= count);
    raft_memstore_free(node->ms);
    assert_int_equal(raft_memstore_new(NULL, &node->ms), 0);
    for (size_t i = 0; i < count; i++) {
        uint32_t index = (uint32_t)(i + 1);
        uint32_t t = (uint32_t)terms[i];

        assert_true(i == 0 || terms[i] >= terms[i - 1]);
        memcpy(&data[i * 8], &index, 4);
        memcpy(&data[i * 8 + 4], &t, 4);
        entries[i] = (struct raft_entry){.term = terms[i],
                                         .index = index,
                                         .type = RAFT_ENTRY_NORMAL,
                                         .len = 8,
                                         .data = &data[i * 8]};
    }
    if (count > 0) {
        assert_int_equal(raft_memstore_append(node->ms, entries, count), 0);
    }
    assert_true(term >= (count > 0 ? terms[count - 1] : 0));
    raft_memstore_set_hard_state(node->ms, &hs);
    fx_voters(&conf, fx->n);
    raft_memstore_set_conf(node->ms, &conf);
    node->conf = conf;
    node->cfg.storage = raft_memstore_storage(node->ms);
    free(entries);
    free(data);
}

void fx_set_term(struct fx *fx, raft_id id, raft_term term)
{
    struct fx_node *node = fx_node(fx, id);
    struct raft_hard_state hs;

    assert_null(node->r);
    raft_memstore_hard_state(node->ms, &hs);
    assert_true(term >= hs.term);
    hs.term = term;
    hs.vote = RAFT_NONE;
    raft_memstore_set_hard_state(node->ms, &hs);
}

void fx_set_pre_vote(struct fx *fx, bool on)
{
    for (size_t i = 1; i <= FX_NODES_MAX; i++) {
        fx->nodes[i].cfg.pre_vote = on;
    }
}

void fx_set_check_quorum(struct fx *fx, bool on)
{
    for (size_t i = 1; i <= FX_NODES_MAX; i++) {
        fx->nodes[i].cfg.check_quorum = on;
    }
}

static void fx_start_node(struct fx_node *node)
{
    assert_null(node->r);
    node->cfg.applied = node->applied;
    assert_int_equal(raft_new(&node->cfg, &node->r), 0);
    assert_non_null(node->r);
#ifdef FX_INJECT_BUGS
    raft_set_bugs(node->r, (uint32_t)(FX_INJECT_BUGS));
#endif
    fx_handle_ready(node);
}

void fx_start(struct fx *fx)
{
    for (size_t i = 1; i <= FX_NODES_MAX; i++) {
        if (fx->nodes[i].ms != NULL && fx->nodes[i].r == NULL) {
            fx_start_node(&fx->nodes[i]);
        }
    }
}

void fx_add_node(struct fx *fx, raft_id id)
{
    struct fx_node *node;

    assert_true(id > fx->n && id <= FX_NODES_MAX);
    node = &fx->nodes[id];
    assert_null(node->ms);
    node->id = id;
    node->fx = fx;
    assert_int_equal(raft_memstore_new(NULL, &node->ms), 0);
    fx_node_config(fx, node);
    node->cfg.pre_vote = fx->nodes[1].cfg.pre_vote;
    node->cfg.check_quorum = fx->nodes[1].cfg.check_quorum;
    fx_start_node(node);
}

void fx_crash(struct fx *fx, raft_id id)
{
    struct fx_node *node = fx_node(fx, id);

    raft_free(node->r);
    node->r = NULL;
}

void fx_restart(struct fx *fx, raft_id id)
{
    fx_start_node(fx_node(fx, id));
}

static void fx_msg_free(struct fx_msg *msg)
{
    for (uint32_t i = 0; msg->entries != NULL && i < msg->m.entries_count; i++) {
        free((void *)msg->entries[i].data);
    }
    free(msg->entries);
    free(msg->snapshot_data);
    memset(msg, 0, sizeof(*msg));
}

void fx_free(struct fx *fx)
{
    if (fx == NULL) {
        return;
    }
    fx_clear(fx);
    free(fx->msgs);
    for (size_t i = 0; i < fx->batch_count; i++) {
        fx_msg_free(&fx->batch[i]);
    }
    free(fx->batch);
    for (size_t i = 1; i <= FX_NODES_MAX; i++) {
        struct fx_node *node = &fx->nodes[i];

        raft_free(node->r);
        raft_memstore_free(node->ms);
        for (size_t j = 0; j < node->applied_count; j++) {
            free(node->applied_entries[j].data);
        }
        free(node->applied_entries);
        free(node->reads);
    }
    free(fx->traces);
    memset(fx, 0, sizeof(*fx));
}

/* ---------------------------------------------------------------------------------- */
/* The ready contract                                                                 */
/* ---------------------------------------------------------------------------------- */

static void fx_enqueue(struct fx *fx, const struct raft_msg *m, bool after_persist)
{
    struct fx_msg *msg;

    fx->msgs = fx_grow(fx->msgs, &fx->msgs_cap, fx->msgs_count + 1, sizeof(*fx->msgs));
    msg = &fx->msgs[fx->msgs_count++];
    memset(msg, 0, sizeof(*msg));
    msg->m = *m;
    msg->after_persist = after_persist;
    msg->m.entries = NULL;
    if (m->entries_count > 0) {
        assert_non_null(m->entries);
        msg->entries = fx_alloc(m->entries_count * sizeof(*msg->entries));
        for (uint32_t i = 0; i < m->entries_count; i++) {
            msg->entries[i] = m->entries[i];
            msg->entries[i].data = fx_dup(m->entries[i].data, m->entries[i].len);
        }
        msg->m.entries = msg->entries;
    }
    msg->m.snapshot.data = NULL;
    if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.len > 0) {
        msg->snapshot_data = fx_dup(m->snapshot.data, m->snapshot.len);
        msg->m.snapshot.data = msg->snapshot_data;
    }
    if (fx->tap != NULL) {
        fx->tap(msg, fx->tap_data);
    }
}

static void fx_restore_snapshot(struct fx_node *node, const struct raft_snapshot *snap)
{
    int rc = raft_memstore_apply_snapshot(node->ms, snap);

    assert_int_equal(rc, 0);
    assert_true(snap->meta.index >= node->applied);
    node->applied = snap->meta.index;
    node->conf = snap->meta.conf;
    node->snapshots_restored++;
}

static void fx_apply(struct fx_node *node, const struct raft_entry *e)
{
    struct fx_entry *copy;

    if (e->index != node->applied + 1) {
        fail_msg("node %llu applied %llu after %llu", (unsigned long long)node->id,
                 (unsigned long long)e->index, (unsigned long long)node->applied);
    }
    node->applied_entries = fx_grow(node->applied_entries, &node->applied_cap,
                                    node->applied_count + 1, sizeof(*node->applied_entries));
    copy = &node->applied_entries[node->applied_count++];
    copy->index = e->index;
    copy->term = e->term;
    copy->type = e->type;
    copy->len = e->len;
    copy->data = fx_dup(e->data, e->len);
    node->applied = e->index;
    if (e->type == RAFT_ENTRY_CONF) {
        raft_apply_conf_change(node->r, e, &node->conf);
        raft_memstore_set_conf(node->ms, &node->conf);
    }
}

void fx_process_ready(struct fx_node *node, const struct raft_ready *rd)
{
    struct fx *fx = node->fx;

    if (fx->ready_tap != NULL) {
        fx->ready_tap(node, rd, fx->ready_tap_data);
    }

    for (size_t i = 0; i < rd->msgs_count; i++) {
        fx_enqueue(fx, &rd->msgs[i], false);
    }
    if (rd->snapshot != NULL) {
        fx_restore_snapshot(node, rd->snapshot);
    }
    if (rd->entries_count > 0) {
        assert_int_equal(raft_memstore_append(node->ms, rd->entries, rd->entries_count), 0);
    }
    if (rd->hard_state_changed) {
        raft_memstore_set_hard_state(node->ms, &rd->hard_state);
    }
    for (size_t i = 0; i < rd->msgs_after_persist_count; i++) {
        fx_enqueue(fx, &rd->msgs_after_persist[i], true);
    }
    for (size_t i = 0; i < rd->committed_count; i++) {
        fx_apply(node, &rd->committed[i]);
    }
    for (size_t i = 0; i < rd->read_states_count; i++) {
        node->reads =
            fx_grow(node->reads, &node->reads_cap, node->reads_count + 1, sizeof(*node->reads));
        node->reads[node->reads_count++] = rd->read_states[i];
    }
    node->readies++;
    raft_advance(node->r, rd);
}

void fx_handle_ready(struct fx_node *node)
{
    unsigned rounds = 0;

    assert_non_null(node->r);
    while (raft_has_ready(node->r)) {
        struct raft_ready rd;

        assert_true(++rounds < 10000u);
        raft_ready(node->r, &rd);
        fx_process_ready(node, &rd);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Driving nodes                                                                      */
/* ---------------------------------------------------------------------------------- */

void fx_tick(struct fx *fx, raft_id id, unsigned count)
{
    struct fx_node *node = fx_node(fx, id);

    for (unsigned i = 0; i < count; i++) {
        assert_non_null(node->r);
        raft_tick(node->r);
        fx_handle_ready(node);
    }
}

void fx_tick_all(struct fx *fx, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        for (size_t id = 1; id <= FX_NODES_MAX; id++) {
            if (fx->nodes[id].r != NULL) {
                raft_tick(fx->nodes[id].r);
                fx_handle_ready(&fx->nodes[id]);
            }
        }
    }
}

bool fx_tick_until_leader(struct fx *fx, raft_id id)
{
    struct fx_node *node = fx_node(fx, id);
    unsigned limit = 4 * node->cfg.election_tick;

    for (unsigned i = 0; i < limit && fx_role(fx, id) == RAFT_FOLLOWER; i++) {
        fx_tick(fx, id, 1);
    }
    fx_stabilize(fx);
    return raft_is_leader(fx_raft(fx, id));
}

void fx_elect(struct fx *fx, raft_id id)
{
    raft_campaign(fx_raft(fx, id));
    fx_handle_ready(fx_node(fx, id));
    fx_stabilize(fx);
    if (!raft_is_leader(fx_raft(fx, id))) {
        fail_msg("node %llu did not win its election", (unsigned long long)id);
    }
}

void fx_heartbeat(struct fx *fx, raft_id id)
{
    fx_tick(fx, id, fx_node(fx, id)->cfg.heartbeat_tick);
    fx_stabilize(fx);
}

int fx_propose(struct fx *fx, raft_id id, const char *data)
{
    int rc = raft_propose(fx_raft(fx, id), data, strlen(data));

    fx_handle_ready(fx_node(fx, id));
    return rc;
}

int fx_propose_cc(struct fx *fx, raft_id id, uint32_t type, raft_id node)
{
    struct raft_conf_change cc = {.type = type, .node = node};
    int rc = raft_propose_conf_change(fx_raft(fx, id), &cc);

    fx_handle_ready(fx_node(fx, id));
    return rc;
}

void fx_step(struct fx *fx, raft_id to, const struct raft_msg *m)
{
    struct fx_node *node = fx_node(fx, to);

    assert_non_null(node->r);
    assert_int_equal(raft_step(node->r, m), 0);
    fx_handle_ready(node);
}

void fx_snapshot_and_compact(struct fx *fx, raft_id id)
{
    struct fx_node *node = fx_node(fx, id);
    char data[64];
    int len = snprintf(data, sizeof(data), "snap@%llu", (unsigned long long)node->applied);

    assert_true(len > 0);
    assert_int_equal(
        raft_memstore_create_snapshot(node->ms, node->applied, &node->conf, data, (size_t)len), 0);
    assert_int_equal(raft_memstore_compact(node->ms, node->applied), 0);
}

/* ---------------------------------------------------------------------------------- */
/* The network                                                                        */
/* ---------------------------------------------------------------------------------- */

void fx_cut(struct fx *fx, raft_id a, raft_id b)
{
    assert_true(a <= FX_NODES_MAX && b <= FX_NODES_MAX);
    fx->cut[a][b] = true;
    fx->cut[b][a] = true;
}

void fx_isolate(struct fx *fx, raft_id id)
{
    for (raft_id other = 1; other <= FX_NODES_MAX; other++) {
        if (other != id) {
            fx_cut(fx, id, other);
        }
    }
}

void fx_heal(struct fx *fx)
{
    memset(fx->cut, 0, sizeof(fx->cut));
}

static bool fx_reachable(const struct fx *fx, const struct raft_msg *m)
{
    if (m->to == RAFT_NONE || m->to > FX_NODES_MAX || m->from > FX_NODES_MAX) {
        return false;
    }
    return !fx->cut[m->from][m->to] && fx->nodes[m->to].r != NULL;
}

/* Delivers msg (owned by the caller) or loses it. */
static void fx_deliver_one(struct fx *fx, struct fx_msg *msg)
{
    const struct raft_msg *m = &msg->m;
    bool reachable = fx_reachable(fx, m);
    bool report = fx->auto_report_snapshot && m->type == RAFT_MSG_SNAPSHOT && m->from >= 1 &&
                  m->from <= FX_NODES_MAX && fx->nodes[m->from].r != NULL;

    if (reachable) {
        fx_step(fx, (raft_id)m->to, m);
    }
    if (report) {
        raft_report_snapshot(fx->nodes[m->from].r, m->to, reachable);
        fx_handle_ready(&fx->nodes[m->from]);
    }
}

size_t fx_deliver_if(struct fx *fx, fx_pred pred, void *data)
{
    struct fx_msg *batch = fx->msgs;
    size_t batch_count = fx->msgs_count;
    size_t kept = 0;
    size_t matched = 0;

    assert_null(fx->batch); /* not reentrant */
    fx->batch = batch;
    fx->batch_count = batch_count;
    fx->msgs = NULL;
    fx->msgs_count = 0;
    fx->msgs_cap = 0;
    for (size_t i = 0; i < batch_count; i++) {
        if (pred != NULL && !pred(&batch[i], data)) {
            if (kept != i) {
                batch[kept] = batch[i];
                memset(&batch[i], 0, sizeof(batch[i]));
            }
            kept++;
            continue;
        }
        matched++;
        fx_deliver_one(fx, &batch[i]);
        fx_msg_free(&batch[i]);
    }
    fx->batch = NULL;
    fx->batch_count = 0;
    /* Keep the unmatched (older) messages ahead of those produced meanwhile. */
    if (kept > 0) {
        struct fx_msg *newer = fx->msgs;
        size_t newer_count = fx->msgs_count;
        size_t cap = 0;
        struct fx_msg *all = fx_grow(NULL, &cap, kept + newer_count, sizeof(*all));

        memcpy(all, batch, kept * sizeof(*all));
        if (newer_count > 0) {
            memcpy(&all[kept], newer, newer_count * sizeof(*all));
        }
        free(newer);
        fx->msgs = all;
        fx->msgs_count = kept + newer_count;
        fx->msgs_cap = cap;
    }
    free(batch);
    return matched;
}

void fx_stabilize_if(struct fx *fx, fx_pred pred, void *data)
{
    size_t total = 0;
    size_t matched;

    do {
        matched = fx_deliver_if(fx, pred, data);
        total += matched;
        if (total > FX_DELIVERIES_MAX) {
            fail_msg("network did not settle after %zu deliveries", total);
        }
    } while (matched > 0);
}

void fx_stabilize(struct fx *fx)
{
    fx_stabilize_if(fx, NULL, NULL);
}

bool fx_pred_match(const struct fx_msg *msg, void *data)
{
    const struct fx_match *match = data;

    return (match->type == 0 || msg->m.type == match->type) &&
           (match->from == RAFT_NONE || msg->m.from == match->from) &&
           (match->to == RAFT_NONE || msg->m.to == match->to);
}

size_t fx_deliver(struct fx *fx, uint32_t type, raft_id from, raft_id to)
{
    struct fx_match match = {.type = type, .from = from, .to = to};

    return fx_deliver_if(fx, fx_pred_match, &match);
}

size_t fx_drop_if(struct fx *fx, fx_pred pred, void *data)
{
    size_t kept = 0;
    size_t dropped = 0;

    for (size_t i = 0; i < fx->msgs_count; i++) {
        if (pred == NULL || pred(&fx->msgs[i], data)) {
            fx_msg_free(&fx->msgs[i]);
            dropped++;
        } else {
            fx->msgs[kept++] = fx->msgs[i];
        }
    }
    fx->msgs_count = kept;
    return dropped;
}

size_t fx_drop(struct fx *fx, uint32_t type, raft_id from, raft_id to)
{
    struct fx_match match = {.type = type, .from = from, .to = to};

    return fx_drop_if(fx, fx_pred_match, &match);
}

void fx_clear(struct fx *fx)
{
    fx_drop_if(fx, NULL, NULL);
}

size_t fx_count(const struct fx *fx, uint32_t type, raft_id from, raft_id to)
{
    struct fx_match match = {.type = type, .from = from, .to = to};
    size_t n = 0;

    for (size_t i = 0; i < fx->msgs_count; i++) {
        n += fx_pred_match(&fx->msgs[i], &match) ? 1u : 0u;
    }
    return n;
}

const struct fx_msg *fx_find(const struct fx *fx, uint32_t type, raft_id from, raft_id to)
{
    struct fx_match match = {.type = type, .from = from, .to = to};

    for (size_t i = 0; i < fx->msgs_count; i++) {
        if (fx_pred_match(&fx->msgs[i], &match)) {
            return &fx->msgs[i];
        }
    }
    return NULL;
}

size_t fx_count_reject(const struct fx *fx, uint32_t type, raft_id from, raft_id to, bool reject)
{
    struct fx_match match = {.type = type, .from = from, .to = to};
    size_t n = 0;

    for (size_t i = 0; i < fx->msgs_count; i++) {
        if (fx_pred_match(&fx->msgs[i], &match) && fx->msgs[i].m.reject == reject) {
            n++;
        }
    }
    return n;
}

struct raft_msg fx_make_msg(uint32_t type, raft_id from, raft_id to, raft_term term)
{
    struct raft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.from = from;
    m.to = to;
    m.term = term;
    return m;
}

void fx_set_tap(struct fx *fx, fx_tap tap, void *data)
{
    fx->tap = tap;
    fx->tap_data = data;
}

void fx_set_ready_tap(struct fx *fx, fx_ready_tap tap, void *data)
{
    fx->ready_tap = tap;
    fx->ready_tap_data = data;
}

/* ---------------------------------------------------------------------------------- */
/* Inspection                                                                         */
/* ---------------------------------------------------------------------------------- */

struct raft_status fx_status(struct fx *fx, raft_id id)
{
    struct raft_status st;

    memset(&st, 0, sizeof(st));
    raft_status(fx_raft(fx, id), &st);
    return st;
}

enum raft_role fx_role(struct fx *fx, raft_id id)
{
    return fx_status(fx, id).role;
}

raft_term fx_term(struct fx *fx, raft_id id)
{
    return fx_status(fx, id).term;
}

raft_index fx_commit(struct fx *fx, raft_id id)
{
    return fx_status(fx, id).commit;
}

raft_id fx_leader(struct fx *fx)
{
    raft_id leader = RAFT_NONE;
    raft_term best = 0;

    for (raft_id id = 1; id <= FX_NODES_MAX; id++) {
        if (fx->nodes[id].r != NULL && raft_is_leader(fx->nodes[id].r)) {
            raft_term t = fx_term(fx, id);

            if (leader == RAFT_NONE || t > best) {
                leader = id;
                best = t;
            }
        }
    }
    return leader;
}

raft_term fx_stored_term(struct fx *fx, raft_id id, raft_index i)
{
    const struct raft_entry *e = raft_memstore_entry(fx_node(fx, id)->ms, i);

    return e == NULL ? 0 : e->term;
}

raft_index fx_last_index(struct fx *fx, raft_id id)
{
    return raft_memstore_last_index(fx_node(fx, id)->ms);
}

void fx_assert_log_terms(struct fx *fx, raft_id id, const raft_term *terms, size_t count)
{
    assert_int_equal(fx_last_index(fx, id), count);
    for (size_t i = 0; i < count; i++) {
        raft_term t = fx_stored_term(fx, id, (raft_index)(i + 1));

        if (t != terms[i]) {
            fail_msg("node %llu: entry %zu has term %llu, want %llu", (unsigned long long)id, i + 1,
                     (unsigned long long)t, (unsigned long long)terms[i]);
        }
    }
}

void fx_assert_logs_equal(struct fx *fx, raft_id a, raft_id b)
{
    struct raft_memstore *ma = fx_node(fx, a)->ms;
    struct raft_memstore *mb = fx_node(fx, b)->ms;
    raft_index first = raft_memstore_first_index(ma);

    if (raft_memstore_first_index(mb) > first) {
        first = raft_memstore_first_index(mb);
    }
    assert_int_equal(raft_memstore_last_index(ma), raft_memstore_last_index(mb));
    for (raft_index i = first; i <= raft_memstore_last_index(ma); i++) {
        if (fx_stored_term(fx, a, i) != fx_stored_term(fx, b, i)) {
            fail_msg("entry %llu: node %llu has term %llu, node %llu has %llu",
                     (unsigned long long)i, (unsigned long long)a,
                     (unsigned long long)fx_stored_term(fx, a, i), (unsigned long long)b,
                     (unsigned long long)fx_stored_term(fx, b, i));
        }
    }
}

const struct fx_entry *fx_applied_entry(struct fx *fx, raft_id id, raft_index index)
{
    struct fx_node *node = fx_node(fx, id);

    for (size_t i = 0; i < node->applied_count; i++) {
        if (node->applied_entries[i].index == index) {
            return &node->applied_entries[i];
        }
    }
    return NULL;
}

bool fx_applied_data(struct fx *fx, raft_id id, const char *s)
{
    struct fx_node *node = fx_node(fx, id);
    size_t len = strlen(s);

    for (size_t i = 0; i < node->applied_count; i++) {
        const struct fx_entry *e = &node->applied_entries[i];

        if (e->type == RAFT_ENTRY_NORMAL && e->len == len && len > 0 &&
            memcmp(e->data, s, len) == 0) {
            return true;
        }
    }
    return false;
}

size_t fx_trace_count(const struct fx *fx, raft_id id, uint32_t kind)
{
    size_t n = 0;

    for (size_t i = 0; i < fx->traces_count; i++) {
        if (fx->traces[i].kind == kind && (id == RAFT_NONE || fx->traces[i].id == id)) {
            n++;
        }
    }
    return n;
}
