/*
 * test_node.c — the node drives Raft with the store on two threads: a single node elects
 * itself, applies proposals in order and acknowledges each with its revision; a restart
 * keeps the data and applies what was committed but not applied, exactly once; three nodes
 * on one loop (an in-memory transport) elect one leader, replicate proposals made through
 * the leader and through a follower, answer ReadIndex on a follower; an isolated leader's
 * pending proposal fails once a new leader overwrote it, and the old leader catches up.
 *
 * No timed assertions: every wait runs the loop until a predicate holds and fails the test
 * only after a generous deadline (WAIT_MS).
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"
#include "node.h"
#include "raft.h"
#include "store.h"

/* The nodes allocate with libc and free from loop callbacks that outlive a test body, so
 * this file uses libc's allocator too instead of cmocka's (UNIT_TESTING maps malloc and
 * free to its leak checker, which frees a test's blocks when the test ends); ASan checks
 * leaks instead. */
#undef malloc
#undef calloc
#undef realloc
#undef free

#define TICK_MS     20u
#define ELECTION_MS 300u
#define WAIT_MS     60000u
#define NODES_MAX   3

/* ---------------------------------------------------------------------------------- */
/* An in-memory network of nodes on one loop                                          */
/* ---------------------------------------------------------------------------------- */

struct tnet;

struct tnode {
    struct tnet *net;
    raft_id id;
    char dir[64];
    struct srv_node *node; /* NULL while closed */
    unsigned leader_changes;
    unsigned applied_calls; /* the applied hook's calls ... */
    int64_t applied_rev;    /* ... and the last revision it reported */
    bool applied_decreased; /* a report below the one before */
};

struct tmsg {
    struct tmsg *next;
    struct raft_msg m; /* entries point into mem */
    void *mem;
};

struct tnet {
    uv_loop_t loop;
    uv_timer_t deliver;
    struct tmsg *head;
    struct tmsg *tail;
    bool isolated[NODES_MAX + 1];
    size_t n;
    raft_id voters[NODES_MAX];
    uint32_t proposal_timeout_ms;
    struct tnode nodes[NODES_MAX + 1]; /* by id; [0] unused */
};

static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static bool cut(const struct tnet *net, raft_id from, raft_id to)
{
    return net->isolated[from] || net->isolated[to];
}

static struct tmsg *msg_copy(const struct raft_msg *m)
{
    size_t bytes = (size_t)m->entries_count * sizeof(struct raft_entry);
    for (uint32_t i = 0; i < m->entries_count; i++) {
        bytes += m->entries[i].len;
    }
    struct tmsg *t = calloc(1, sizeof(*t));
    uint8_t *mem = malloc(bytes + 1);
    assert_non_null(t);
    assert_non_null(mem);
    t->m = *m;
    t->mem = mem;
    struct raft_entry *ents = (struct raft_entry *)(void *)mem;
    uint8_t *p = mem + (size_t)m->entries_count * sizeof(struct raft_entry);
    for (uint32_t i = 0; i < m->entries_count; i++) {
        ents[i] = m->entries[i];
        if (ents[i].len > 0) {
            memcpy(p, m->entries[i].data, ents[i].len);
        }
        ents[i].data = p;
        p += ents[i].len;
    }
    t->m.entries = ents;
    assert_int_equal(m->snapshot.len, 0); /* the node sends no snapshots yet */
    return t;
}

static void deliver_cb(uv_timer_t *t)
{
    struct tnet *net = t->data;
    struct tmsg *list = net->head;
    net->head = net->tail = NULL;
    while (list != NULL) {
        struct tmsg *m = list;
        list = m->next;
        raft_id to = m->m.to;
        if (to >= 1 && to <= net->n && net->nodes[to].node != NULL && !cut(net, m->m.from, to)) {
            srv_node_step(net->nodes[to].node, &m->m);
        }
        free(m->mem);
        free(m);
    }
}

static void send_cb(void *data, const struct raft_msg *msgs, size_t n)
{
    struct tnode *tn = data;
    struct tnet *net = tn->net;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(msgs[i].from, tn->id);
        if (cut(net, msgs[i].from, msgs[i].to)) {
            continue;
        }
        struct tmsg *m = msg_copy(&msgs[i]);
        if (net->tail != NULL) {
            net->tail->next = m;
        } else {
            net->head = m;
        }
        net->tail = m;
    }
    if (net->head != NULL && !uv_is_active((uv_handle_t *)&net->deliver)) {
        uv_timer_start(&net->deliver, deliver_cb, 0, 0);
    }
}

static void leader_cb(void *data, raft_id leader, raft_term term)
{
    struct tnode *tn = data;
    (void)leader;
    (void)term;
    tn->leader_changes++;
}

static void applied_cb(void *data, int64_t revision)
{
    struct tnode *tn = data;
    if (revision < tn->applied_rev) {
        tn->applied_decreased = true;
    }
    tn->applied_rev = revision;
    tn->applied_calls++;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void node_open(struct tnet *net, raft_id id)
{
    struct tnode *tn = &net->nodes[id];
    struct srv_node_config cfg;
    char err[256] = "";
    srv_node_config_init(&cfg);
    cfg.id = id;
    cfg.store.dir = tn->dir;
    cfg.store.no_sync = true;
    cfg.store.map_bytes_initial = 4u << 20;
    cfg.initial_voters = net->voters;
    cfg.initial_voters_count = net->n;
    cfg.tick_ms = TICK_MS;
    cfg.election_ms = ELECTION_MS;
    cfg.proposal_timeout_ms = net->proposal_timeout_ms;
    cfg.data = tn;
    cfg.send = send_cb;
    cfg.leader = leader_cb;
    cfg.applied = applied_cb;
    int rv = srv_node_new(&net->loop, &cfg, &tn->node, err, sizeof(err));
    if (rv != 0) {
        fail_msg("srv_node_new(%llu): %s: %s", (unsigned long long)id, latch_error_name(rv), err);
    }
}

static void closed_cb(void *data)
{
    *(bool *)data = true;
}

static void node_close(struct tnet *net, raft_id id)
{
    struct tnode *tn = &net->nodes[id];
    bool closed = false;
    if (tn->node == NULL) {
        return;
    }
    srv_node_close(tn->node, closed_cb, &closed);
    tn->node = NULL;
    for (unsigned i = 0; !closed && i < 1000000u; i++) {
        uv_run(&net->loop, UV_RUN_ONCE);
    }
    assert_true(closed);
}

/* Prepares n nodes (ids 1..n, each its own fresh data dir); opens none. */
static struct tnet *net_new(size_t n)
{
    struct tnet *net = calloc(1, sizeof(*net));
    assert_non_null(net);
    assert_true(n >= 1 && n <= NODES_MAX);
    assert_int_equal(uv_loop_init(&net->loop), 0);
    uv_timer_init(&net->loop, &net->deliver);
    net->deliver.data = net;
    net->n = n;
    net->proposal_timeout_ms = WAIT_MS;
    for (size_t id = 1; id <= n; id++) {
        struct tnode *tn = &net->nodes[id];
        tn->net = net;
        tn->id = id;
        net->voters[id - 1] = id;
        snprintf(tn->dir, sizeof(tn->dir), "/tmp/latch-node-XXXXXX");
        assert_non_null(mkdtemp(tn->dir));
    }
    return net;
}

static void net_free(struct tnet *net)
{
    if (net == NULL) {
        return;
    }
    for (size_t id = 1; id <= net->n; id++) {
        node_close(net, id);
    }
    while (net->head != NULL) {
        struct tmsg *m = net->head;
        net->head = m->next;
        free(m->mem);
        free(m);
    }
    uv_close((uv_handle_t *)&net->deliver, NULL);
    uv_run(&net->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&net->loop), 0);
    for (size_t id = 1; id <= net->n; id++) {
        nftw(net->nodes[id].dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(net);
}

static int setup(void **state)
{
    latch_assert_set_handler(cmocka_handler);
    latch_log_set_level(LATCH_LOG_WARN);
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    net_free(*state);
    return 0;
}

typedef bool (*pred_fn)(struct tnet *net, void *arg);

/* Runs the loop until pred holds; fails the test after WAIT_MS. */
static void wait_for(struct tnet *net, pred_fn pred, void *arg, const char *what)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    while (!pred(net, arg)) {
        if (uv_hrtime() > deadline) {
            fail_msg("timed out waiting for %s", what);
        }
        uv_run(&net->loop, UV_RUN_ONCE);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Inspection                                                                         */
/* ---------------------------------------------------------------------------------- */

static struct srv_node_status status_of(struct tnet *net, raft_id id)
{
    struct srv_node_status st;
    assert_non_null(net->nodes[id].node);
    srv_node_status(net->nodes[id].node, &st);
    return st;
}

static struct store_status store_status_of(struct tnet *net, raft_id id)
{
    struct store_status ss;
    assert_int_equal(store_status(srv_node_reader(net->nodes[id].node), &ss), 0);
    return ss;
}

static int64_t revision_of(struct tnet *net, raft_id id)
{
    return store_status_of(net, id).revision;
}

/* The leader every open, connected node agrees on (same leader and term), or RAFT_NONE. */
static raft_id agreed_leader(struct tnet *net)
{
    raft_id leader = RAFT_NONE;
    raft_term term = 0;
    for (size_t id = 1; id <= net->n; id++) {
        if (net->nodes[id].node == NULL || net->isolated[id]) {
            continue;
        }
        struct srv_node_status st = status_of(net, id);
        if (st.leader == RAFT_NONE || (leader != RAFT_NONE && st.leader != leader) ||
            (term != 0 && st.term != term)) {
            return RAFT_NONE;
        }
        leader = st.leader;
        term = st.term;
    }
    if (leader == RAFT_NONE || status_of(net, leader).role != RAFT_LEADER) {
        return RAFT_NONE;
    }
    return leader;
}

static bool pred_leader(struct tnet *net, void *arg)
{
    (void)arg;
    return agreed_leader(net) != RAFT_NONE;
}

static raft_id wait_leader(struct tnet *net)
{
    wait_for(net, pred_leader, NULL, "an agreed leader");
    return agreed_leader(net);
}

/* Reads key through id's reader: 0 and the value, or LATCH_ENOTFOUND. */
static int get_key(
    struct tnet *net, raft_id id, const char *key, char *val, size_t cap, struct store_kv *kv_out)
{
    struct latch_arena a;
    struct store_range_req q = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    struct store_range_result res;
    latch_arena_init(&a, 0);
    int rv = store_range(srv_node_reader(net->nodes[id].node), &q, &a, &res, NULL);
    if (rv == 0 && res.kvs_count == 0) {
        rv = LATCH_ENOTFOUND;
    }
    if (rv == 0) {
        assert_true(res.kvs[0].value_len < cap);
        memcpy(val, res.kvs[0].value, res.kvs[0].value_len);
        val[res.kvs[0].value_len] = '\0';
        if (kv_out != NULL) {
            *kv_out = res.kvs[0];
            kv_out->key = NULL;
            kv_out->value = NULL;
        }
    }
    latch_arena_close(&a);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Proposals and reads                                                                */
/* ---------------------------------------------------------------------------------- */

struct tprop {
    bool done;
    int err;
    int res_err;
    int64_t revision;
    unsigned order; /* completion order */
};

static unsigned completions;

static void propose_cb(void *data, int err, const struct store_result *res)
{
    struct tprop *p = data;
    assert_false(p->done);
    p->done = true;
    p->err = err;
    p->order = completions++;
    if (err == 0) {
        assert_non_null(res);
        p->res_err = res->err;
        p->revision = res->revision;
    } else {
        assert_null(res);
    }
}

/* Encodes a put of key = value as the store command an etcd Put becomes. */
static size_t encode_put(const char *key, const char *value, uint8_t *buf, size_t cap)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = (const uint8_t *)key;
    op.u.put.key_len = (uint32_t)strlen(key);
    op.u.put.value = (const uint8_t *)value;
    op.u.put.value_len = (uint32_t)strlen(value);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    size_t len = 0;
    assert_int_equal(store_cmd_encode(&c, buf, cap, &len), 0);
    return len;
}

static void
propose_put(struct tnet *net, raft_id id, const char *key, const char *value, struct tprop *p)
{
    uint8_t buf[512];
    size_t len = encode_put(key, value, buf, sizeof(buf));
    memset(p, 0, sizeof(*p));
    assert_int_equal(srv_node_propose(net->nodes[id].node, buf, len, propose_cb, p), 0);
}

static bool pred_prop_done(struct tnet *net, void *arg)
{
    (void)net;
    return ((struct tprop *)arg)->done;
}

struct tprops {
    struct tprop *v;
    size_t n;
};

static bool pred_props_done(struct tnet *net, void *arg)
{
    struct tprops *ps = arg;
    (void)net;
    for (size_t i = 0; i < ps->n; i++) {
        if (!ps->v[i].done) {
            return false;
        }
    }
    return true;
}

/* Proposes key = value on id and waits for success; returns the revision. */
static int64_t put_ok(struct tnet *net, raft_id id, const char *key, const char *value)
{
    struct tprop p;
    propose_put(net, id, key, value, &p);
    wait_for(net, pred_prop_done, &p, "a proposal");
    if (p.err != 0) {
        fail_msg("put %s on node %llu: %s", key, (unsigned long long)id, latch_error_name(p.err));
    }
    assert_int_equal(p.res_err, 0);
    return p.revision;
}

struct tread {
    bool done;
    int err;
};

static void read_cb(void *data, int err)
{
    struct tread *r = data;
    assert_false(r->done);
    r->done = true;
    r->err = err;
}

static bool pred_read_done(struct tnet *net, void *arg)
{
    (void)net;
    return ((struct tread *)arg)->done;
}

struct trev {
    int64_t revision;
};

/* Every open node has applied up to at least the revision. */
static bool pred_all_at_revision(struct tnet *net, void *arg)
{
    const struct trev *want = arg;
    for (size_t id = 1; id <= net->n; id++) {
        if (net->nodes[id].node != NULL && revision_of(net, id) < want->revision) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* Tests                                                                              */
/* ---------------------------------------------------------------------------------- */

static void test_conf_record_round_trips_and_rejects_damage(void **state)
{
    (void)state;
    struct raft_conf_state c = {.voters_count = 3, .learners_count = 1};
    c.voters[0] = 1;
    c.voters[1] = 2;
    c.voters[2] = UINT64_MAX;
    c.learners[0] = 7;
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len = 0;
    assert_int_equal(srv_node_conf_encode(&c, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 9 + 4 * 8);
    assert_int_equal(buf[0], SRV_NODE_CONF_VERSION);
    assert_int_equal(buf[9 + 16], 0xff); /* little-endian ids */

    struct raft_conf_state d;
    assert_int_equal(srv_node_conf_decode(buf, len, &d), 0);
    assert_memory_equal(&c, &d, sizeof(c));

    assert_int_equal(srv_node_conf_decode(buf, len - 1, &d), LATCH_ECORRUPT);
    buf[0] = 2;
    assert_int_equal(srv_node_conf_decode(buf, len, &d), LATCH_ECORRUPT);
    assert_int_equal(srv_node_conf_encode(&c, buf, len - 1, &len), LATCH_ETOOBIG);
}

static void test_new_refuses_bad_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct srv_node *n = NULL;
    struct srv_node_config cfg;
    char err[128];
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_node_config_init(&cfg);
    cfg.store.dir = "/tmp/latch-node-never-created";
    cfg.send = send_cb;
    assert_int_equal(srv_node_new(&loop, &cfg, &n, err, sizeof(err)), LATCH_EINVAL); /* no id */
    cfg.id = 1;
    cfg.tick_ms = 100;
    cfg.election_ms = 150;
    assert_int_equal(srv_node_new(&loop, &cfg, &n, err, sizeof(err)), LATCH_EINVAL);
    assert_null(n);
    assert_int_equal(uv_loop_close(&loop), 0);
}

#define PUTS 1000

static bool pred_leader_reported(struct tnet *net, void *arg)
{
    (void)net;
    return ((struct tnode *)arg)->leader_changes >= 1;
}

static void test_single_node_leads_and_acknowledges_puts_in_order(void **state)
{
    struct tnet *net = net_new(1);
    *state = net;
    node_open(net, 1);
    assert_int_equal(wait_leader(net), 1);
    wait_for(net, pred_leader_reported, &net->nodes[1], "the leader callback");
    int64_t rev0 = revision_of(net, 1);

    static struct tprop props[PUTS];
    completions = 0;
    for (int i = 0; i < PUTS; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "k%04d", i);
        snprintf(value, sizeof(value), "v%d", i);
        propose_put(net, 1, key, value, &props[i]);
    }
    struct tprops ps = {props, PUTS};
    wait_for(net, pred_props_done, &ps, "1000 puts");
    for (int i = 0; i < PUTS; i++) {
        assert_int_equal(props[i].err, 0);
        assert_int_equal(props[i].res_err, 0);
        assert_int_equal(props[i].revision, rev0 + 1 + i); /* one revision per put, in order */
        assert_int_equal(props[i].order, (unsigned)i);
    }
    assert_int_equal(revision_of(net, 1), rev0 + PUTS);
    for (int i = 0; i < PUTS; i++) {
        char key[32], want[32], got[64];
        struct store_kv kv;
        snprintf(key, sizeof(key), "k%04d", i);
        snprintf(want, sizeof(want), "v%d", i);
        assert_int_equal(get_key(net, 1, key, got, sizeof(got), &kv), 0);
        assert_string_equal(got, want);
        assert_int_equal(kv.mod_revision, props[i].revision);
        assert_int_equal(kv.version, 1);
    }
    struct srv_node_status st = status_of(net, 1);
    assert_int_equal(st.applied, st.commit);
    assert_int_equal(st.last_index, st.commit);
    assert_int_equal(st.failed, 0);
}

/* Appends puts of key<i> to the log of the closed node's store as committed but not yet
 * applied (a crash between the storage thread's append and its apply). */
static void inject_committed_puts(const char *dir, int count, uint64_t *last_out)
{
    struct store_options o;
    struct store *s = NULL;
    store_options_defaults(&o);
    o.dir = dir;
    o.no_sync = true;
    assert_int_equal(store_open(&o, &s, NULL, 0), 0);
    struct store_hard_state hs;
    assert_int_equal(store_log_hard_state(s, &hs), 0);
    uint64_t last = store_log_last_index(s);
    static uint8_t bufs[8][256];
    struct store_entry ents[8];
    assert_true(count <= 8);
    for (int i = 0; i < count; i++) {
        char key[32];
        snprintf(key, sizeof(key), "crash%d", i);
        memset(bufs[i], 0, SRV_NODE_ENTRY_HEADER_BYTES);
        bufs[i][0] = 99; /* proposed by a node that is gone: applied without a callback */
        bufs[i][8] = (uint8_t)(i + 1);
        size_t len = encode_put(key, "x", bufs[i] + SRV_NODE_ENTRY_HEADER_BYTES,
                                sizeof(bufs[i]) - SRV_NODE_ENTRY_HEADER_BYTES);
        ents[i] = (struct store_entry){.term = hs.term,
                                       .index = last + 1 + (uint64_t)i,
                                       .type = RAFT_ENTRY_NORMAL,
                                       .len = (uint32_t)(len + SRV_NODE_ENTRY_HEADER_BYTES),
                                       .data = bufs[i]};
    }
    hs.commit = last + (uint64_t)count;
    assert_int_equal(store_log_append(s, ents, (size_t)count, &hs), 0);
    store_close(s);
    *last_out = hs.commit;
}

static bool pred_applied(struct tnet *net, void *arg)
{
    return status_of(net, 1).applied >= *(const uint64_t *)arg;
}

static void test_restart_keeps_data_and_applies_committed_entries_once(void **state)
{
    struct tnet *net = net_new(1);
    *state = net;
    node_open(net, 1);
    wait_leader(net);
    int64_t rev = 0;
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        rev = put_ok(net, 1, key, "v");
    }
    struct srv_node_status before = status_of(net, 1);
    node_close(net, 1);

    /* Reopen: everything there, nothing applied again. */
    node_open(net, 1);
    struct srv_node_status st = status_of(net, 1);
    assert_int_equal(st.applied, before.applied);
    assert_int_equal(st.commit, before.commit);
    assert_int_equal(revision_of(net, 1), rev);
    wait_leader(net);
    assert_int_equal(revision_of(net, 1), rev); /* the new term's no-op changes no key */
    char got[16];
    struct store_kv kv;
    assert_int_equal(get_key(net, 1, "k7", got, sizeof(got), &kv), 0);
    assert_int_equal(kv.version, 1);
    node_close(net, 1);

    /* A crash after the log append but before the apply: the restart applies them once. */
    uint64_t last = 0;
    inject_committed_puts(net->nodes[1].dir, 3, &last);
    node_open(net, 1);
    struct trev want = {rev + 3};
    wait_for(net, pred_all_at_revision, &want, "replayed entries");
    /* The store commit is visible to readers before the loop hears the batch is done. */
    wait_for(net, pred_applied, &last, "the core to learn the replay is applied");
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof(key), "crash%d", i);
        assert_int_equal(get_key(net, 1, key, got, sizeof(got), &kv), 0);
        assert_int_equal(kv.version, 1);
    }
    wait_leader(net);
    assert_int_equal(put_ok(net, 1, "after", "v"), rev + 4);
    node_close(net, 1);
    node_open(net, 1);
    assert_int_equal(revision_of(net, 1), rev + 4);
}

static void test_close_fails_pending_proposals_with_eshutdown(void **state)
{
    struct tnet *net = net_new(1);
    *state = net;
    node_open(net, 1);
    wait_leader(net);
    struct tprop p;
    struct tread r = {0};
    propose_put(net, 1, "k", "v", &p);
    assert_int_equal(srv_node_read_index(net->nodes[1].node, read_cb, &r), 0);
    struct srv_node *n = net->nodes[1].node;
    bool closed = false;
    srv_node_close(n, closed_cb, &closed);
    net->nodes[1].node = NULL;
    uint8_t buf[64];
    size_t len = encode_put("k2", "v", buf, sizeof(buf));
    assert_int_equal(srv_node_propose(n, buf, len, propose_cb, &p), LATCH_ESHUTDOWN);
    assert_false(p.done); /* the callbacks run from the loop, not from inside close */
    while (!closed) {
        uv_run(&net->loop, UV_RUN_ONCE);
    }
    assert_true(p.done);
    assert_int_equal(p.err, LATCH_ESHUTDOWN);
    assert_true(r.done);
    assert_int_equal(r.err, LATCH_ESHUTDOWN);
}

struct tclose_in_cb {
    struct srv_node *node;
    struct tprop first;
    struct tprop second;
    bool closed;
};

/* Closes the node from inside the first proposal's callback. */
static void close_in_cb(void *data, int err, const struct store_result *res)
{
    struct tclose_in_cb *c = data;
    propose_cb(&c->first, err, res);
    srv_node_close(c->node, closed_cb, &c->closed);
}

static void test_close_from_a_callback_finishes_the_close(void **state)
{
    struct tnet *net = net_new(1);
    *state = net;
    node_open(net, 1);
    wait_leader(net);
    struct tclose_in_cb c = {.node = net->nodes[1].node};
    uint8_t buf[64];
    size_t len = encode_put("k1", "v", buf, sizeof(buf));
    assert_int_equal(srv_node_propose(c.node, buf, len, close_in_cb, &c), 0);
    propose_put(net, 1, "k2", "v", &c.second);
    net->nodes[1].node = NULL; /* closed by the callback */
    for (unsigned i = 0; !c.closed && i < 1000000u; i++) {
        uv_run(&net->loop, UV_RUN_ONCE);
    }
    assert_true(c.closed);
    assert_true(c.first.done);
    assert_int_equal(c.first.err, 0);
    assert_true(c.second.done); /* applied with the first (err 0) or failed by the close */
    assert_true(c.second.err == 0 || c.second.err == LATCH_ESHUTDOWN);
}

static void test_without_leader_proposals_and_reads_fail_with_enoleader(void **state)
{
    struct tnet *net = net_new(3);
    *state = net;
    node_open(net, 1); /* 2 and 3 never start: no quorum, no leader */
    struct tprop p;
    struct tread r = {0};
    propose_put(net, 1, "k", "v", &p);
    assert_int_equal(srv_node_read_index(net->nodes[1].node, read_cb, &r), 0);
    wait_for(net, pred_prop_done, &p, "the refused proposal");
    wait_for(net, pred_read_done, &r, "the refused read");
    assert_int_equal(p.err, LATCH_ENOLEADER);
    assert_int_equal(r.err, LATCH_ENOLEADER);
    assert_int_equal(status_of(net, 1).leader, RAFT_NONE);
}

static raft_id other_than(struct tnet *net, raft_id a, raft_id b)
{
    for (raft_id id = 1; id <= net->n; id++) {
        if (id != a && id != b) {
            return id;
        }
    }
    return RAFT_NONE;
}

static void test_three_nodes_replicate_through_leader_and_follower(void **state)
{
    struct tnet *net = net_new(3);
    *state = net;
    for (raft_id id = 1; id <= 3; id++) {
        node_open(net, id);
    }
    raft_id leader = wait_leader(net);
    raft_id follower = other_than(net, leader, RAFT_NONE);

    struct tprop a, b;
    propose_put(net, leader, "via-leader", "1", &a);
    propose_put(net, follower, "via-follower", "2", &b); /* forwarded to the leader */
    wait_for(net, pred_prop_done, &a, "the leader's proposal");
    wait_for(net, pred_prop_done, &b, "the follower's proposal");
    assert_int_equal(a.err, 0);
    assert_int_equal(b.err, 0);
    assert_int_not_equal(a.revision, b.revision);

    struct trev want = {a.revision > b.revision ? a.revision : b.revision};
    wait_for(net, pred_all_at_revision, &want, "all three to apply both");
    for (raft_id id = 1; id <= 3; id++) {
        char got[16];
        assert_int_equal(get_key(net, id, "via-leader", got, sizeof(got), NULL), 0);
        assert_string_equal(got, "1");
        assert_int_equal(get_key(net, id, "via-follower", got, sizeof(got), NULL), 0);
        assert_string_equal(got, "2");
        assert_int_equal(revision_of(net, id), want.revision);
    }
}

static void test_read_index_on_follower_sees_acknowledged_write(void **state)
{
    struct tnet *net = net_new(3);
    *state = net;
    for (raft_id id = 1; id <= 3; id++) {
        node_open(net, id);
    }
    raft_id leader = wait_leader(net);
    raft_id follower = other_than(net, leader, RAFT_NONE);
    for (int round = 0; round < 5; round++) {
        char value[16];
        snprintf(value, sizeof(value), "v%d", round);
        put_ok(net, leader, "r", value);
        /* Acknowledged on the leader; the follower may not have applied it yet. A
         * linearizable read there must see it anyway. */
        struct tread r = {0};
        assert_int_equal(srv_node_read_index(net->nodes[follower].node, read_cb, &r), 0);
        wait_for(net, pred_read_done, &r, "the follower's read index");
        assert_int_equal(r.err, 0);
        char got[16];
        assert_int_equal(get_key(net, follower, "r", got, sizeof(got), NULL), 0);
        assert_string_equal(got, value);
    }
}

struct tnew_leader {
    raft_id old;
    raft_term old_term;
};

static bool pred_new_leader(struct tnet *net, void *arg)
{
    const struct tnew_leader *w = arg;
    raft_id l = agreed_leader(net); /* the isolated node does not vote here */
    return l != RAFT_NONE && l != w->old && status_of(net, l).term > w->old_term;
}

struct tcaught_up {
    raft_id a;
    raft_id b;
};

static bool pred_caught_up(struct tnet *net, void *arg)
{
    const struct tcaught_up *w = arg;
    struct srv_node_status sa = status_of(net, w->a);
    struct srv_node_status sb = status_of(net, w->b);
    return revision_of(net, w->a) == revision_of(net, w->b) && sa.applied == sb.applied &&
           sa.term == sb.term;
}

static void test_isolated_leader_loses_its_proposal_and_catches_up_after_heal(void **state)
{
    struct tnet *net = net_new(3);
    *state = net;
    for (raft_id id = 1; id <= 3; id++) {
        node_open(net, id);
    }
    raft_id old = wait_leader(net);
    int64_t rev = put_ok(net, old, "before", "1");
    struct trev want = {rev};
    wait_for(net, pred_all_at_revision, &want, "the first write everywhere");

    struct tnew_leader w = {old, status_of(net, old).term};
    net->isolated[old] = true;
    struct tprop lost;
    propose_put(net, old, "lost", "x", &lost); /* appended by the old leader only */

    wait_for(net, pred_new_leader, &w, "a new leader among the other two");
    raft_id leader = agreed_leader(net);
    int64_t rev2 = put_ok(net, leader, "after", "2");
    assert_int_equal(rev2, rev + 1);
    assert_false(lost.done); /* nothing tells the isolated node yet */

    net->isolated[old] = false;
    wait_for(net, pred_prop_done, &lost, "the old leader's proposal to fail");
    assert_int_equal(lost.err, SRV_NODE_ELEADERCHANGED);

    struct tcaught_up cu = {old, leader};
    wait_for(net, pred_caught_up, &cu, "the old leader to catch up");
    char got[16];
    assert_int_equal(get_key(net, old, "after", got, sizeof(got), NULL), 0);
    assert_string_equal(got, "2");
    for (raft_id id = 1; id <= 3; id++) {
        assert_int_equal(get_key(net, id, "lost", got, sizeof(got), NULL), LATCH_ENOTFOUND);
    }
    assert_int_equal(revision_of(net, old), rev2);
    /* Writes keep working, through the old leader too (now a follower). */
    int64_t rev3 = put_ok(net, old, "healed", "3");
    assert_int_equal(rev3, rev2 + 1);
}

/* The applied hook runs after each apply batch, once its proposals were completed, with
 * the store revision after it: never decreasing, and equal to each put's revision by the time
 * the put is acknowledged. */
static void test_applied_hook_reports_increasing_revisions(void **state)
{
    struct tnet *net = net_new(1);
    *state = net;
    node_open(net, 1);
    wait_leader(net);
    struct tnode *tn = &net->nodes[1];
    int64_t prev = revision_of(net, 1);
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        unsigned calls = tn->applied_calls;
        int64_t rev = put_ok(net, 1, key, "v");
        assert_int_equal(rev, prev + 1);
        assert_true(tn->applied_calls > calls);
        assert_int_equal(tn->applied_rev, rev);
        prev = rev;
    }
    assert_false(tn->applied_decreased);
}

static void test_pending_proposal_times_out_without_quorum(void **state)
{
    struct tnet *net = net_new(3);
    *state = net;
    net->proposal_timeout_ms = 3u * ELECTION_MS;
    for (raft_id id = 1; id <= 3; id++) {
        node_open(net, id);
    }
    raft_id old = wait_leader(net);
    net->isolated[old] = true;
    struct tprop p;
    propose_put(net, old, "k", "v", &p);
    wait_for(net, pred_prop_done, &p, "the proposal to time out");
    assert_int_equal(p.err, SRV_NODE_ETIMEDOUT); /* outcome unknown: it is in the log */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_conf_record_round_trips_and_rejects_damage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_new_refuses_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_node_leads_and_acknowledges_puts_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_data_and_applies_committed_entries_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_fails_pending_proposals_with_eshutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_from_a_callback_finishes_the_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_without_leader_proposals_and_reads_fail_with_enoleader,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_three_nodes_replicate_through_leader_and_follower,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_index_on_follower_sees_acknowledged_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_isolated_leader_loses_its_proposal_and_catches_up_after_heal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_proposal_times_out_without_quorum, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_applied_hook_reports_increasing_revisions, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
