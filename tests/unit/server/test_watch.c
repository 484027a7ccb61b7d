/*
 * test_watch.c — the watch hub against a real single-member node (temp dir, no_sync) and a
 * fake sink that keeps every response it is given (packed and unpacked again, as a client
 * would see it): created replies and ids, events in revision order with one response per
 * revision, prev_kv, NOPUT/NODELETE, single key, range, prefix and from-key watchers, history
 * replay from a past start revision, a txn's events in one response, a compacted start
 * (canceled with compact_revision), cancel and progress requests, a future start that waits,
 * and a slow sink that keeps reporting would_block while 10,000 revisions are written: it
 * gets every event exactly once, in order.
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

#include "etcdserverpb/rpc.pb-c.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"
#include "node.h"
#include "store.h"
#include "watch.h"

/* The node and the hub allocate with libc and free from loop callbacks (see test_node.c). */
#undef malloc
#undef calloc
#undef realloc
#undef free

#define TICK_MS     20u
#define ELECTION_MS 300u
#define WAIT_MS     120000u
#define CLUSTER_ID  0x1111u
#define MEMBER_ID   0x2222u

/* ---- the fake sink ---------------------------------------------------------------------- */

struct sink {
    Etcdserverpb__WatchResponse **v; /* every response, unpacked from its packed bytes */
    size_t n;
    size_t cap;
    size_t capacity;          /* 0: never full; else would_block once this many are undrained */
    size_t undrained;         /* responses since the last drain */
    bool blocked;             /* would_block was reported and not yet drained */
    size_t event_after_block; /* event responses received while blocked (must stay 0) */
    size_t blocks;            /* how many times would_block was reported */
};

static int sink_send(void *data, const Etcdserverpb__WatchResponse *resp, bool *would_block)
{
    struct sink *s = data;
    if (s->blocked && resp->n_events > 0) {
        s->event_after_block++;
    }
    size_t len = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&resp->base, buf);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(&etcdserverpb__watch_response__descriptor, NULL, len, buf);
    free(buf);
    assert_non_null(m);
    if (s->n == s->cap) {
        s->cap = s->cap != 0 ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    s->v[s->n++] = (Etcdserverpb__WatchResponse *)m;
    s->undrained++;
    *would_block = s->capacity != 0 && s->undrained >= s->capacity;
    if (*would_block) {
        s->blocked = true;
        s->blocks++;
    }
    return 0;
}

static void sink_clear(struct sink *s)
{
    for (size_t i = 0; i < s->n; i++) {
        protobuf_c_message_free_unpacked(&s->v[i]->base, NULL);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- the fixture: one node, one hub ------------------------------------------------------ */

struct fx {
    uv_loop_t loop;
    char dir[64];
    struct srv_node *node;
    struct srv_watch_hub *hub;
    struct sink sinks[4];
    struct srv_watch_stream *streams[4];
};

static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static void send_cb(void *data, const struct raft_msg *msgs, size_t n)
{
    (void)data;
    (void)msgs;
    (void)n; /* a single member has nobody to send to */
}

static void applied_cb(void *data, int64_t revision)
{
    struct fx *f = data;
    if (f->hub != NULL) {
        srv_watch_hub_applied(f->hub, revision);
    }
}

typedef bool (*pred_fn)(struct fx *f, void *arg);

static void wait_for(struct fx *f, pred_fn pred, void *arg, const char *what)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    while (!pred(f, arg)) {
        if (uv_hrtime() > deadline) {
            fail_msg("timed out waiting for %s", what);
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static bool pred_leader(struct fx *f, void *arg)
{
    (void)arg;
    struct srv_node_status st;
    srv_node_status(f->node, &st);
    return st.role == RAFT_LEADER;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* max_events: the hub's chunk size (0: default). */
static struct fx *fx_new(size_t max_events)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/latch-watch-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct srv_node_config cfg;
    srv_node_config_init(&cfg);
    raft_id voter = 1;
    cfg.id = 1;
    cfg.store.dir = f->dir;
    cfg.store.no_sync = true;
    cfg.store.map_bytes_initial = 16u << 20;
    cfg.initial_voters = &voter;
    cfg.initial_voters_count = 1;
    cfg.tick_ms = TICK_MS;
    cfg.election_ms = ELECTION_MS;
    cfg.proposal_timeout_ms = WAIT_MS;
    cfg.data = f;
    cfg.send = send_cb;
    cfg.applied = applied_cb;
    char err[256] = "";
    int rv = srv_node_new(&f->loop, &cfg, &f->node, err, sizeof(err));
    if (rv != 0) {
        fail_msg("srv_node_new: %s: %s", latch_error_name(rv), err);
    }
    wait_for(f, pred_leader, NULL, "leadership");
    struct srv_watch_hub_config hc = {.node = f->node,
                                      .cluster_id = CLUSTER_ID,
                                      .member_id = MEMBER_ID,
                                      .max_events = max_events};
    assert_int_equal(srv_watch_hub_new(&f->loop, &hc, &f->hub), 0);
    return f;
}

static void flag_cb(void *data)
{
    *(bool *)data = true;
}

static bool pred_flag(struct fx *f, void *arg)
{
    (void)f;
    return *(bool *)arg;
}

static void fx_free(struct fx *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        srv_watch_stream_free(f->streams[i]);
        f->streams[i] = NULL;
    }
    bool closed = false;
    srv_watch_hub_close(f->hub, flag_cb, &closed);
    wait_for(f, pred_flag, &closed, "the hub to close");
    f->hub = NULL;
    closed = false;
    srv_node_close(f->node, flag_cb, &closed);
    wait_for(f, pred_flag, &closed, "the node to close");
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < 4; i++) {
        sink_clear(&f->sinks[i]);
    }
    free(f);
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
    fx_free(*state);
    return 0;
}

/* Stream i of f with its own sink. */
static struct srv_watch_stream *stream(struct fx *f, size_t i)
{
    struct srv_watch_sink sk = {.send = sink_send, .data = &f->sinks[i]};
    assert_int_equal(srv_watch_stream_new(f->hub, &sk, &f->streams[i]), 0);
    return f->streams[i];
}

/* ---- writes through the node ------------------------------------------------------------ */

struct prop {
    bool done;
    int err;
    int res_err;
    int64_t revision;
};

static void prop_cb(void *data, int err, const struct store_result *res)
{
    struct prop *p = data;
    p->done = true;
    p->err = err;
    if (err == 0) {
        p->res_err = res->err;
        p->revision = res->revision;
    }
}

static void propose(struct fx *f, const struct store_cmd *c, struct prop *p)
{
    uint8_t buf[4096];
    size_t len = 0;
    assert_int_equal(store_cmd_encode(c, buf, sizeof(buf), &len), 0);
    memset(p, 0, sizeof(*p));
    assert_int_equal(srv_node_propose(f->node, buf, len, prop_cb, p), 0);
}

static int64_t run_cmd(struct fx *f, const struct store_cmd *c)
{
    struct prop p;
    propose(f, c, &p);
    wait_for(f, pred_flag, &p.done, "a proposal");
    assert_int_equal(p.err, 0);
    assert_int_equal(p.res_err, 0);
    return p.revision;
}

static void op_put(struct store_op *op, const char *key, const char *value)
{
    memset(op, 0, sizeof(*op));
    op->type = STORE_OP_PUT;
    op->u.put.key = (const uint8_t *)key;
    op->u.put.key_len = (uint32_t)strlen(key);
    op->u.put.value = (const uint8_t *)value;
    op->u.put.value_len = (uint32_t)strlen(value);
}

static int64_t put(struct fx *f, const char *key, const char *value)
{
    struct store_op op;
    op_put(&op, key, value);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    return run_cmd(f, &c);
}

static int64_t del(struct fx *f, const char *key)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del.key = (const uint8_t *)key;
    op.u.del.key_len = (uint32_t)strlen(key);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    return run_cmd(f, &c);
}

static int64_t put2(struct fx *f, const char *k1, const char *v1, const char *k2, const char *v2)
{
    struct store_op ops[2];
    op_put(&ops[0], k1, v1);
    op_put(&ops[1], k2, v2);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = ops;
    c.u.txn.success_count = 2;
    return run_cmd(f, &c);
}

static void compact(struct fx *f, int64_t revision)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = revision;
    run_cmd(f, &c);
}

static int64_t current_rev(struct fx *f)
{
    struct store_status ss;
    assert_int_equal(store_status(srv_node_reader(f->node), &ss), 0);
    return ss.revision;
}

/* ---- requests ------------------------------------------------------------------------- */

struct create_opts {
    const char *range_end; /* NULL: none; "\0" is written as "" with from_key */
    bool from_key;
    int64_t start;
    int64_t watch_id;
    bool prev_kv;
    bool noput;
    bool nodelete;
};

static int create(struct srv_watch_stream *st, const char *key, const struct create_opts *o)
{
    static const uint8_t zero = 0;
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key.data = (uint8_t *)key;
    c.key.len = strlen(key);
    Etcdserverpb__WatchCreateRequest__FilterType filters[2];
    if (o != NULL) {
        if (o->from_key) {
            c.range_end.data = (uint8_t *)&zero;
            c.range_end.len = 1;
        } else if (o->range_end != NULL) {
            c.range_end.data = (uint8_t *)o->range_end;
            c.range_end.len = strlen(o->range_end);
        }
        c.start_revision = o->start;
        c.watch_id = o->watch_id;
        c.prev_kv = o->prev_kv;
        if (o->noput) {
            filters[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
        }
        if (o->nodelete) {
            filters[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
        }
        c.filters = filters;
    }
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    r.create_request = &c;
    return srv_watch_stream_request(st, &r);
}

static void cancel(struct srv_watch_stream *st, int64_t id)
{
    Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
    c.watch_id = id;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    r.cancel_request = &c;
    assert_int_equal(srv_watch_stream_request(st, &r), 0);
}

static void progress(struct srv_watch_stream *st)
{
    Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    r.progress_request = &p;
    assert_int_equal(srv_watch_stream_request(st, &r), 0);
}

/* ---- inspecting what a sink got --------------------------------------------------------- */

/* Events (over all responses of watch_id) in s. */
static size_t events_of(const struct sink *s, int64_t watch_id)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->watch_id == watch_id) {
            n += s->v[i]->n_events;
        }
    }
    return n;
}

struct want_events {
    struct sink *s;
    int64_t watch_id;
    size_t n;
};

static bool pred_events(struct fx *f, void *arg)
{
    (void)f;
    struct want_events *w = arg;
    return events_of(w->s, w->watch_id) >= w->n;
}

static void wait_events(struct fx *f, struct sink *s, int64_t watch_id, size_t n)
{
    struct want_events w = {s, watch_id, n};
    wait_for(f, pred_events, &w, "events");
}

/* Lets the loop run until the hub has nothing left to do (its pass timer idle). */
static void settle(struct fx *f)
{
    for (int i = 0; i < 20; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
}

/* The k-th event (over all responses of watch_id). */
static const Mvccpb__Event *event_at(const struct sink *s, int64_t watch_id, size_t k)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->watch_id != watch_id) {
            continue;
        }
        if (k < s->v[i]->n_events) {
            return s->v[i]->events[k];
        }
        k -= s->v[i]->n_events;
    }
    fail_msg("no event %zu", k);
    return NULL;
}

static bool bin_eq(ProtobufCBinaryData b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.data, s, b.len) == 0);
}

static void assert_event(const Mvccpb__Event *e,
                         int type,
                         const char *key,
                         const char *value,
                         int64_t mod_rev,
                         const char *prev_value)
{
    assert_int_equal(e->type, type);
    assert_non_null(e->kv);
    assert_true(bin_eq(e->kv->key, key));
    assert_int_equal(e->kv->mod_revision, mod_rev);
    if (type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
        assert_true(bin_eq(e->kv->value, value));
    } else {
        assert_int_equal(e->kv->value.len, 0);
        assert_int_equal(e->kv->create_revision, 0);
        assert_int_equal(e->kv->version, 0);
    }
    if (prev_value == NULL) {
        assert_null(e->prev_kv);
    } else {
        assert_non_null(e->prev_kv);
        assert_true(bin_eq(e->prev_kv->value, prev_value));
    }
}

static void assert_header(const Etcdserverpb__WatchResponse *r)
{
    assert_non_null(r->header);
    assert_int_equal(r->header->cluster_id, CLUSTER_ID);
    assert_int_equal(r->header->member_id, MEMBER_ID);
    assert_true(r->header->raft_term >= 1);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_created_then_events_in_order_one_response_per_revision(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    int64_t rev0 = current_rev(f);
    assert_int_equal(create(st, "foo", NULL), 0);
    assert_int_equal(s->n, 1); /* the created reply goes out at once */
    assert_true(s->v[0]->created);
    assert_false(s->v[0]->canceled);
    assert_int_equal(s->v[0]->watch_id, 0);
    assert_int_equal(s->v[0]->header->revision, rev0);
    assert_header(s->v[0]);

    int64_t r1 = put(f, "foo", "v1");
    put(f, "bar", "x");
    int64_t r3 = put(f, "foo", "v2");
    int64_t r4 = del(f, "foo");
    wait_events(f, s, 0, 3);
    settle(f);
    assert_int_equal(s->n, 4); /* created + one response per revision of foo */
    for (size_t i = 1; i < s->n; i++) {
        assert_int_equal(s->v[i]->n_events, 1);
        assert_int_equal(s->v[i]->watch_id, 0);
        assert_header(s->v[i]);
        assert_true(s->v[i]->header->revision >= s->v[i]->events[0]->kv->mod_revision);
    }
    assert_event(event_at(s, 0, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "foo", "v1", r1, NULL);
    assert_event(event_at(s, 0, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "foo", "v2", r3, NULL);
    assert_event(event_at(s, 0, 2), MVCCPB__EVENT__EVENT_TYPE__DELETE, "foo", NULL, r4, NULL);
    assert_int_equal(event_at(s, 0, 1)->kv->version, 2);
    assert_int_equal(event_at(s, 0, 1)->kv->create_revision, r1);
}

static void test_prev_kv_and_filters(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    struct create_opts prev = {.prev_kv = true};
    struct create_opts noput = {.noput = true};
    struct create_opts nodel = {.nodelete = true};
    assert_int_equal(create(st, "k", &prev), 0);  /* id 0 */
    assert_int_equal(create(st, "k", &noput), 0); /* id 1 */
    assert_int_equal(create(st, "k", &nodel), 0); /* id 2 */
    assert_int_equal(s->n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(s->v[i]->created);
        assert_int_equal(s->v[i]->watch_id, (int64_t)i);
    }
    int64_t r1 = put(f, "k", "v1");
    int64_t r2 = put(f, "k", "v2");
    int64_t r3 = del(f, "k");
    wait_events(f, s, 0, 3);
    wait_events(f, s, 1, 1);
    wait_events(f, s, 2, 2);
    settle(f);
    assert_event(event_at(s, 0, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "k", "v1", r1, NULL);
    assert_event(event_at(s, 0, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "k", "v2", r2, "v1");
    assert_event(event_at(s, 0, 2), MVCCPB__EVENT__EVENT_TYPE__DELETE, "k", NULL, r3, "v2");
    assert_int_equal(events_of(s, 1), 1);
    assert_event(event_at(s, 1, 0), MVCCPB__EVENT__EVENT_TYPE__DELETE, "k", NULL, r3, NULL);
    assert_int_equal(events_of(s, 2), 2);
    assert_event(event_at(s, 2, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "k", "v1", r1, NULL);
    assert_event(event_at(s, 2, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "k", "v2", r2, NULL);
}

static void test_range_prefix_from_key_and_all_keys(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    struct create_opts range = {.range_end = "c"};
    struct create_opts prefix = {.range_end = "fop"}; /* etcdctl's --prefix foo */
    struct create_opts from_b = {.from_key = true};
    assert_int_equal(create(st, "a", &range), 0);    /* 0: [a, c) */
    assert_int_equal(create(st, "foo", &prefix), 0); /* 1: foo* */
    assert_int_equal(create(st, "b", &from_b), 0);   /* 2: >= b */
    assert_int_equal(create(st, "", &from_b), 0);    /* 3: everything */
    const char *keys[] = {"a", "b", "ab", "c", "foo", "foo/x", "fop", "A"};
    int64_t revs[8];
    for (size_t i = 0; i < 8; i++) {
        revs[i] = put(f, keys[i], "v");
    }
    wait_events(f, s, 3, 8);
    wait_events(f, s, 2, 5);
    wait_events(f, s, 1, 2);
    wait_events(f, s, 0, 3);
    settle(f);
    assert_int_equal(events_of(s, 0), 3);
    assert_event(event_at(s, 0, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "a", "v", revs[0], NULL);
    assert_event(event_at(s, 0, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "b", "v", revs[1], NULL);
    assert_event(event_at(s, 0, 2), MVCCPB__EVENT__EVENT_TYPE__PUT, "ab", "v", revs[2], NULL);
    assert_int_equal(events_of(s, 1), 2);
    assert_event(event_at(s, 1, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "foo", "v", revs[4], NULL);
    assert_event(event_at(s, 1, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "foo/x", "v", revs[5], NULL);
    assert_int_equal(events_of(s, 2), 5); /* b c foo foo/x fop */
    assert_event(event_at(s, 2, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "b", "v", revs[1], NULL);
    assert_event(event_at(s, 2, 4), MVCCPB__EVENT__EVENT_TYPE__PUT, "fop", "v", revs[6], NULL);
    assert_int_equal(events_of(s, 3), 8);
    for (size_t i = 0; i < 8; i++) {
        assert_event(event_at(s, 3, i), MVCCPB__EVENT__EVENT_TYPE__PUT, keys[i], "v", revs[i],
                     NULL);
    }
    /* key >= range_end is refused as etcd does, and makes no watcher */
    struct create_opts bad = {.range_end = "a"};
    size_t before = s->n;
    assert_int_equal(create(st, "b", &bad), 0);
    assert_int_equal(s->n, before + 1);
    assert_true(s->v[before]->created && s->v[before]->canceled);
    assert_int_equal(s->v[before]->watch_id, -1);
    assert_string_equal(s->v[before]->cancel_reason, SRV_WATCH_EEMPTYRANGE);
    assert_int_equal(srv_watch_stream_watchers(st), 4);
}

static void test_past_start_replays_history_and_txn_is_one_response(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    int64_t r1 = put(f, "x1", "a");
    int64_t r2 = put2(f, "x2", "b", "x3", "c"); /* one revision, two events */
    int64_t r3 = put(f, "y", "no");
    int64_t r4 = put(f, "x1", "d");
    assert_int_equal(r2, r1 + 1);
    assert_int_equal(r3, r2 + 1);
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    struct create_opts from_r1 = {.range_end = "y", .start = r1, .prev_kv = true};
    assert_int_equal(create(st, "x", &from_r1), 0);
    assert_true(s->v[0]->created);
    assert_int_equal(s->v[0]->header->revision, r4);
    wait_events(f, s, 0, 4);
    settle(f);
    assert_int_equal(events_of(s, 0), 4);
    assert_event(event_at(s, 0, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "x1", "a", r1, NULL);
    assert_event(event_at(s, 0, 1), MVCCPB__EVENT__EVENT_TYPE__PUT, "x2", "b", r2, NULL);
    assert_event(event_at(s, 0, 2), MVCCPB__EVENT__EVENT_TYPE__PUT, "x3", "c", r2, NULL);
    assert_event(event_at(s, 0, 3), MVCCPB__EVENT__EVENT_TYPE__PUT, "x1", "d", r4, "a");
    /* every revision's events are in one response */
    for (size_t i = 1; i < s->n; i++) {
        const Etcdserverpb__WatchResponse *r = s->v[i];
        for (size_t j = 1; j < r->n_events; j++) {
            assert_true(r->events[j]->kv->mod_revision >= r->events[j - 1]->kv->mod_revision);
        }
        for (size_t k = i + 1; k < s->n; k++) {
            if (r->n_events > 0 && s->v[k]->n_events > 0) {
                assert_true(s->v[k]->events[0]->kv->mod_revision >
                            r->events[r->n_events - 1]->kv->mod_revision);
            }
        }
    }
    /* Live again: a later txn comes as one response with both events. */
    size_t before = s->n;
    int64_t r5 = put2(f, "x7", "e", "x8", "f");
    wait_events(f, s, 0, 6);
    settle(f);
    assert_int_equal(s->n, before + 1);
    assert_int_equal(s->v[before]->n_events, 2);
    assert_event(s->v[before]->events[0], MVCCPB__EVENT__EVENT_TYPE__PUT, "x7", "e", r5, NULL);
    assert_event(s->v[before]->events[1], MVCCPB__EVENT__EVENT_TYPE__PUT, "x8", "f", r5, NULL);
}

static void test_future_start_waits(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    int64_t cur = current_rev(f);
    struct create_opts future = {.start = cur + 3};
    assert_int_equal(create(st, "k", &future), 0);
    put(f, "k", "1");
    put(f, "k", "2");
    int64_t r3 = put(f, "k", "3");
    assert_int_equal(r3, cur + 3);
    wait_events(f, s, 0, 1);
    settle(f);
    assert_int_equal(events_of(s, 0), 1);
    assert_event(event_at(s, 0, 0), MVCCPB__EVENT__EVENT_TYPE__PUT, "k", "3", r3, NULL);
}

static void test_compacted_start_is_canceled_with_compact_revision(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    for (int i = 0; i < 5; i++) {
        put(f, "c", "v");
    }
    int64_t point = current_rev(f) - 1;
    compact(f, point);
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    struct create_opts old = {.start = point - 1};
    struct create_opts at = {.start = point};
    assert_int_equal(create(st, "c", &old), 0); /* 0: compacted */
    assert_int_equal(create(st, "c", &at), 0);  /* 1: the compaction point itself is fine */
    assert_true(s->v[0]->created && !s->v[0]->canceled);
    wait_events(f, s, 1, 2);
    settle(f);
    size_t cancels = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->watch_id == 0 && s->v[i]->canceled) {
            cancels++;
            assert_int_equal(s->v[i]->compact_revision, point);
            assert_int_equal(s->v[i]->n_events, 0);
            assert_header(s->v[i]);
        }
    }
    assert_int_equal(cancels, 1);
    assert_int_equal(events_of(s, 0), 0);
    assert_int_equal(events_of(s, 1), 2); /* revisions point and point + 1 */
    assert_int_equal(event_at(s, 1, 0)->kv->mod_revision, point);
    assert_int_equal(srv_watch_stream_watchers(st), 1);
}

static void test_ids_cancel_and_progress(void **state)
{
    struct fx *f = fx_new(0);
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    struct create_opts five = {.watch_id = 5};
    assert_int_equal(create(st, "a", &five), 0);
    assert_int_equal(create(st, "a", NULL), 0);
    assert_int_equal(create(st, "a", NULL), 0);
    assert_int_equal(create(st, "a", &five), 0);
    assert_int_equal(s->n, 4);
    assert_int_equal(s->v[0]->watch_id, 5);
    assert_int_equal(s->v[1]->watch_id, 0);
    assert_int_equal(s->v[2]->watch_id, 1);
    assert_true(s->v[3]->created && s->v[3]->canceled);
    assert_int_equal(s->v[3]->watch_id, -1);
    assert_string_equal(s->v[3]->cancel_reason, SRV_WATCH_EDUPID);
    assert_int_equal(srv_watch_stream_watchers(st), 3);

    cancel(st, 0);
    assert_int_equal(s->n, 5);
    assert_true(s->v[4]->canceled && !s->v[4]->created);
    assert_int_equal(s->v[4]->watch_id, 0);
    cancel(st, 42); /* unknown: no answer */
    assert_int_equal(s->n, 5);
    assert_int_equal(srv_watch_stream_watchers(st), 2);
    assert_int_equal(srv_watch_hub_watchers(f->hub), 2);

    /* Auto ids skip ids in use: a later auto id after 1 is 2, even with 5 taken. */
    assert_int_equal(create(st, "a", NULL), 0);
    assert_int_equal(s->v[5]->watch_id, 2);

    int64_t r = put(f, "a", "v");
    wait_events(f, s, 5, 1);
    settle(f);
    progress(st);
    const Etcdserverpb__WatchResponse *p = s->v[s->n - 1];
    assert_int_equal(p->watch_id, -1);
    assert_int_equal(p->n_events, 0);
    assert_false(p->created || p->canceled);
    assert_int_equal(p->header->revision, r);

    /* The canceled watcher got no event. */
    assert_int_equal(events_of(s, 0), 0);
    srv_watch_stream_free(st);
    f->streams[0] = NULL;
    assert_int_equal(srv_watch_hub_watchers(f->hub), 0);
}

struct slow {
    struct sink *s;
    struct srv_watch_stream *st;
    size_t want;
    struct prop *props;
    size_t nprops;
};

/* Drains the sink whenever it is blocked (as a client reading would), then checks the goal. */
static bool pred_slow(struct fx *f, void *arg)
{
    (void)f;
    struct slow *w = arg;
    if (w->s->blocked) {
        w->s->blocked = false;
        w->s->undrained = 0;
        srv_watch_stream_writable(w->st);
    }
    for (size_t i = 0; i < w->nprops; i++) {
        if (!w->props[i].done) {
            return false;
        }
    }
    return events_of(w->s, 0) >= w->want;
}

static void test_slow_sink_catches_up_without_loss_or_repeat(void **state)
{
    enum { N = 10000 };
    struct fx *f = fx_new(64); /* small chunks: many reads per catch-up */
    *state = f;
    struct srv_watch_stream *st = stream(f, 0);
    struct sink *s = &f->sinks[0];
    s->capacity = 3;
    struct srv_watch_stream *fast = stream(f, 1);
    struct create_opts prefix = {.range_end = "s0", .prev_kv = true};
    int64_t start = current_rev(f) + 1;
    assert_int_equal(create(st, "s/", &prefix), 0);
    assert_int_equal(create(fast, "s/", &prefix), 0);
    struct prop *props = calloc(N, sizeof(*props));
    assert_non_null(props);
    for (size_t i = 0; i < N; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "s/%zu", i % 97);
        snprintf(value, sizeof(value), "%zu", i);
        struct store_op op;
        op_put(&op, key, value);
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = &op;
        c.u.txn.success_count = 1;
        propose(f, &c, &props[i]);
        if (i % 500 == 499) {
            uv_run(&f->loop, UV_RUN_NOWAIT); /* let some apply while the rest is proposed */
        }
    }
    struct slow w = {.s = s, .st = st, .want = N, .props = props, .nprops = N};
    wait_for(f, pred_slow, &w, "10,000 events through a slow sink");
    struct want_events wf = {&f->sinks[1], 0, N};
    wait_for(f, pred_events, &wf, "10,000 events through a fast sink");
    settle(f);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(props[i].err, 0);
    }
    free(props);
    assert_true(s->blocks > 10); /* it really was slow */
    assert_int_equal(s->event_after_block, 0);
    for (size_t k = 0; k < 2; k++) {
        const struct sink *sk = &f->sinks[k];
        assert_int_equal(events_of(sk, 0), N);
        for (size_t i = 0; i < N; i++) {
            const Mvccpb__Event *e = event_at(sk, 0, i);
            char key[32], value[32];
            snprintf(key, sizeof(key), "s/%zu", i % 97);
            snprintf(value, sizeof(value), "%zu", i);
            assert_int_equal(e->kv->mod_revision, start + (int64_t)i);
            assert_true(bin_eq(e->kv->key, key));
            assert_true(bin_eq(e->kv->value, value));
            if (i >= 97) {
                assert_non_null(e->prev_kv);
                snprintf(value, sizeof(value), "%zu", i - 97);
                assert_true(bin_eq(e->prev_kv->value, value));
            } else {
                assert_null(e->prev_kv);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_then_events_in_order_one_response_per_revision,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_kv_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_prefix_from_key_and_all_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_past_start_replays_history_and_txn_is_one_response,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_start_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compacted_start_is_canceled_with_compact_revision,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_cancel_and_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_sink_catches_up_without_loss_or_repeat, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
