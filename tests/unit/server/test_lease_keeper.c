/*
 * test_lease_keeper.c — the lease keeper (server/lease.h) on a real single-member node: grants
 * and revokes through Raft are tracked, TTL queries answer the remaining time; an expired
 * lease is revoked through Raft and its keys are deleted; keep-alives postpone expiry; a
 * checkpointed remaining TTL survives a restart (neither reset to the full TTL nor expired),
 * and a keep-alive after a checkpoint resets the stored checkpoint before it is answered;
 * without a leader renewals are refused; the hooks of srv_lease_keeper_hooks (what the
 * expiring hook proposes is applied before the revoke; not called for a client's revoke).
 *
 * No timed assertions: every wait runs the loop until a predicate holds and fails only after
 * a generous deadline (WAIT_MS). The keep-alive test asserts an outcome (the lease outlived
 * its TTL while renewed), never how long anything took.
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
#include "lease.h"
#include "node.h"
#include "raft.h"
#include "store.h"

/* The node and keeper allocate with libc and free from loop callbacks: use libc here too
 * (see test_node.c); ASan checks leaks. */
#undef malloc
#undef calloc
#undef realloc
#undef free

#define TICK_MS     20u
#define ELECTION_MS 300u
#define WAIT_MS     60000u

struct env {
    uv_loop_t loop;
    char dir[64];
    raft_id voters[2];
    size_t voters_count;
    struct srv_node *node;
    struct srv_lease_keeper *keeper;
    uint32_t checkpoint_ms;
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
    (void)n; /* no peers are running: messages are lost */
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void env_open(struct env *e)
{
    struct srv_node_config cfg;
    char err[256] = "";
    srv_node_config_init(&cfg);
    cfg.id = 1;
    cfg.store.dir = e->dir;
    cfg.store.no_sync = true;
    cfg.store.map_bytes_initial = 4u << 20;
    cfg.initial_voters = e->voters;
    cfg.initial_voters_count = e->voters_count;
    cfg.tick_ms = TICK_MS;
    cfg.election_ms = ELECTION_MS;
    cfg.proposal_timeout_ms = WAIT_MS;
    cfg.read_timeout_ms = WAIT_MS;
    cfg.send = send_cb;
    int rv = srv_node_new(&e->loop, &cfg, &e->node, err, sizeof(err));
    if (rv != 0) {
        fail_msg("srv_node_new: %s: %s", latch_error_name(rv), err);
    }
    struct srv_lease_config lc = {.node = e->node,
                                  .tick_ms = TICK_MS,
                                  .resync_ms = 100,
                                  .checkpoint_ms = e->checkpoint_ms,
                                  .promote_extend_ms = ELECTION_MS};
    assert_int_equal(srv_lease_keeper_new(&e->loop, &lc, &e->keeper), 0);
}

static void closed_cb(void *data)
{
    *(bool *)data = true;
}

/* Stops the keeper, closes the node, frees the keeper (lease.h's order). */
static void env_close(struct env *e)
{
    if (e->node == NULL) {
        return;
    }
    bool closed = false;
    srv_lease_keeper_stop(e->keeper);
    srv_node_close(e->node, closed_cb, &closed);
    e->node = NULL;
    for (unsigned i = 0; !closed && i < 1000000u; i++) {
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    assert_true(closed);
    uv_run(&e->loop, UV_RUN_NOWAIT); /* the keeper's timer close */
    srv_lease_keeper_free(e->keeper);
    e->keeper = NULL;
}

static struct env *env_new(size_t voters)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    snprintf(e->dir, sizeof(e->dir), "/tmp/latch-lease-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    e->voters[0] = 1;
    e->voters[1] = 2;
    e->voters_count = voters;
    e->checkpoint_ms = 0; /* default (5 min): no periodic checkpoint during a test */
    return e;
}

static void env_free(struct env *e)
{
    if (e == NULL) {
        return;
    }
    env_close(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
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
    env_free(*state);
    return 0;
}

typedef bool (*pred_fn)(struct env *e, void *arg);

static void wait_for(struct env *e, pred_fn pred, void *arg, const char *what)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_MS * 1000000u;
    while (!pred(e, arg)) {
        if (uv_hrtime() > deadline) {
            fail_msg("timed out waiting for %s", what);
        }
        uv_run(&e->loop, UV_RUN_ONCE);
    }
}

static bool pred_leader(struct env *e, void *arg)
{
    (void)arg;
    struct srv_node_status st;
    srv_node_status(e->node, &st);
    return st.role == RAFT_LEADER;
}

/* ---- proposals ------------------------------------------------------------------------ */

struct tprop {
    bool done;
    int err;
    struct store_result res; /* scalars only */
};

static void propose_cb(void *data, int err, const struct store_result *res)
{
    struct tprop *p = data;
    p->done = true;
    p->err = err;
    if (err == 0) {
        p->res = *res;
    }
}

static bool pred_prop_done(struct env *e, void *arg)
{
    (void)e;
    return ((struct tprop *)arg)->done;
}

/* Proposes c and waits until applied; returns the result (command errors included). */
static struct store_result propose_ok(struct env *e, const struct store_cmd *c)
{
    uint8_t buf[1024];
    size_t len = 0;
    struct tprop p = {0};
    assert_int_equal(store_cmd_encode(c, buf, sizeof(buf), &len), 0);
    assert_int_equal(srv_node_propose(e->node, buf, len, propose_cb, &p), 0);
    wait_for(e, pred_prop_done, &p, "a proposal");
    assert_int_equal(p.err, 0);
    return p.res;
}

static int64_t grant(struct env *e, int64_t ttl)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.ttl = ttl;
    struct store_result r = propose_ok(e, &c);
    assert_int_equal(r.err, 0);
    assert_true(r.u.lease_grant.id > 0);
    srv_lease_keeper_granted(e->keeper, r.u.lease_grant.id, r.u.lease_grant.ttl);
    return r.u.lease_grant.id;
}

static int lease_revoke(struct env *e, int64_t id)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = id;
    struct store_result r = propose_ok(e, &c);
    if (r.err == 0) {
        srv_lease_keeper_revoked(e->keeper, id);
    }
    return r.err;
}

static void put(struct env *e, const char *key, int64_t lease)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = (const uint8_t *)key;
    op.u.put.key_len = (uint32_t)strlen(key);
    op.u.put.value = (const uint8_t *)"v";
    op.u.put.value_len = 1;
    op.u.put.lease = lease;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    assert_int_equal(propose_ok(e, &c).err, 0);
}

static bool key_exists(struct env *e, const char *key)
{
    struct latch_arena a;
    struct store_range_req q = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    struct store_range_result res;
    latch_arena_init(&a, 0);
    assert_int_equal(store_range(srv_node_reader(e->node), &q, &a, &res, NULL), 0);
    bool found = res.kvs_count > 0;
    latch_arena_close(&a);
    return found;
}

/* The store's lease record: 0 or LATCH_ENOTFOUND. */
static int lease_get(struct env *e, int64_t id, struct store_lease *out)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int rc = store_lease_get(srv_node_reader(e->node), id, false, &a, out, NULL, NULL);
    latch_arena_close(&a);
    return rc;
}

static size_t lease_count(struct env *e)
{
    struct latch_arena a;
    struct store_lease *ls = NULL;
    size_t n = 0;
    latch_arena_init(&a, 0);
    assert_int_equal(store_lease_list(srv_node_reader(e->node), 0, 1000, &a, &ls, &n), 0);
    latch_arena_close(&a);
    return n;
}

struct trenew {
    bool done;
    int err;
    int64_t ttl;
};

static void renew_cb(void *data, int err, int64_t ttl)
{
    struct trenew *r = data;
    assert_false(r->done);
    r->done = true;
    r->err = err;
    r->ttl = ttl;
}

static bool pred_renew_done(struct env *e, void *arg)
{
    (void)e;
    return ((struct trenew *)arg)->done;
}

/* Renews id, waiting when the answer is pending; returns the keeper's error, *ttl set. */
static int renew(struct env *e, int64_t id, int64_t *ttl)
{
    struct trenew r = {0};
    int rc = srv_lease_keeper_renew(e->keeper, id, renew_cb, &r, ttl);
    if (rc == SRV_LEASE_PENDING) {
        wait_for(e, pred_renew_done, &r, "a renewal");
        *ttl = r.ttl;
        return r.err;
    }
    return rc;
}

static struct env *single_leader(void **state)
{
    struct env *e = env_new(1);
    *state = e;
    env_open(e);
    wait_for(e, pred_leader, NULL, "leadership");
    return e;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_grant_revoke_ttl_list(void **state)
{
    struct env *e = single_leader(state);
    int64_t a = grant(e, 30);
    int64_t b = grant(e, 60);
    assert_int_not_equal(a, b);
    assert_int_equal(lease_count(e), 2);
    assert_int_equal(srv_lease_keeper_count(e->keeper), 2);

    int64_t ttl = -1;
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, a, &ttl), 0);
    assert_true(ttl >= 0 && ttl <= 30);
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, b, &ttl), 0);
    assert_true(ttl >= 0 && ttl <= 60);
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, 999, &ttl), LATCH_ENOTFOUND);

    put(e, "/a/k", a);
    assert_int_equal(lease_revoke(e, a), 0);
    assert_false(key_exists(e, "/a/k"));
    assert_int_equal(lease_count(e), 1);
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, a, &ttl), LATCH_ENOTFOUND);
    assert_int_equal(lease_revoke(e, a), LATCH_ENOTFOUND);

    /* A renewal answers the granted TTL, or 0 for an unknown lease (after a ReadIndex). */
    assert_int_equal(renew(e, b, &ttl), 0);
    assert_int_equal(ttl, 60);
    assert_int_equal(renew(e, a, &ttl), 0);
    assert_int_equal(ttl, 0);
    assert_int_equal(renew(e, 12345, &ttl), 0);
    assert_int_equal(ttl, 0);
}

static bool pred_key_gone(struct env *e, void *arg)
{
    return !key_exists(e, arg);
}

static void test_expiry_revokes_through_raft_and_deletes_keys(void **state)
{
    struct env *e = single_leader(state);
    int64_t id = grant(e, 1);
    put(e, "k1", id);
    put(e, "k2", id);
    put(e, "other", 0);
    int64_t rev_before = 0;
    {
        struct store_status ss;
        assert_int_equal(store_status(srv_node_reader(e->node), &ss), 0);
        rev_before = ss.revision;
    }
    wait_for(e, pred_key_gone, "k1", "the lease to expire");
    assert_false(key_exists(e, "k2"));
    assert_true(key_exists(e, "other"));
    struct store_lease l;
    assert_int_equal(lease_get(e, id, &l), LATCH_ENOTFOUND);
    struct store_status ss;
    assert_int_equal(store_status(srv_node_reader(e->node), &ss), 0);
    assert_int_equal(ss.revision, rev_before + 1); /* both keys in one revision */
    int64_t ttl = -1;
    assert_int_equal(renew(e, id, &ttl), 0);
    assert_int_equal(ttl, 0);
}

/* srv_lease_keeper_hooks: what the expiring hook proposes is applied before the revoke;
 * the tick hook runs (as leader); a client's revoke does not call the expiring hook. */
struct hooks_seen {
    struct env *e;
    int64_t expiring_id;
    unsigned expiring_calls;
    unsigned ticks_as_leader;
};

static void nobody_cb(void *data, int err, const struct store_result *res)
{
    (void)data;
    (void)err;
    (void)res;
}

static void hook_expiring(void *data, int64_t id)
{
    struct hooks_seen *h = data;
    h->expiring_id = id;
    h->expiring_calls++;
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = (const uint8_t *)"before-revoke";
    op.u.put.key_len = (uint32_t)strlen("before-revoke");
    op.u.put.value = (const uint8_t *)"v";
    op.u.put.value_len = 1;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    uint8_t buf[256];
    size_t len = 0;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), 0);
    assert_int_equal(srv_node_propose(h->e->node, buf, len, nobody_cb, NULL), 0);
}

static void hook_tick(void *data, bool leader)
{
    struct hooks_seen *h = data;
    h->ticks_as_leader += leader ? 1u : 0u;
}

static void test_hooks_expiring_proposes_before_the_revoke(void **state)
{
    struct env *e = single_leader(state);
    struct hooks_seen h = {.e = e};
    srv_lease_keeper_hooks(e->keeper, hook_expiring, hook_tick, &h);
    int64_t kept = grant(e, 60);
    assert_int_equal(lease_revoke(e, kept), 0); /* a client's revoke: no hook */
    assert_int_equal(h.expiring_calls, 0);
    int64_t id = grant(e, 1);
    put(e, "k1", id);
    struct store_status ss;
    assert_int_equal(store_status(srv_node_reader(e->node), &ss), 0);
    int64_t rev_before = ss.revision;
    wait_for(e, pred_key_gone, "k1", "the lease to expire");
    assert_true(h.expiring_calls >= 1);
    assert_int_equal(h.expiring_id, id);
    assert_true(h.ticks_as_leader > 0);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_range_req q = {.key = (const uint8_t *)"before-revoke",
                                .key_len = (uint32_t)strlen("before-revoke")};
    struct store_range_result res;
    assert_int_equal(store_range(srv_node_reader(e->node), &q, &a, &res, NULL), 0);
    assert_int_equal(res.kvs_count, 1);
    assert_int_equal(res.kvs[0].mod_revision, rev_before + 1); /* then the revoke */
    latch_arena_close(&a);
    assert_int_equal(store_status(srv_node_reader(e->node), &ss), 0);
    assert_int_equal(ss.revision, rev_before + 2);
    srv_lease_keeper_hooks(e->keeper, NULL, NULL, NULL);
}

static void test_keepalive_postpones_expiry(void **state)
{
    struct env *e = single_leader(state);
    const int64_t ttl_s = 2;
    int64_t id = grant(e, ttl_s);
    put(e, "alive", id);
    uint64_t start = uv_hrtime();
    uint64_t span = (uint64_t)(ttl_s * 2) * 1000000000u; /* twice the TTL */
    while (uv_hrtime() - start < span) {
        int64_t ttl = 0;
        assert_int_equal(renew(e, id, &ttl), 0);
        assert_int_equal(ttl, ttl_s);              /* still alive when renewed */
        uint64_t until = uv_hrtime() + 100000000u; /* ~100 ms of loop */
        while (uv_hrtime() < until) {
            uv_run(&e->loop, UV_RUN_NOWAIT);
            usleep(5000);
        }
    }
    assert_true(key_exists(e, "alive")); /* outlived its TTL because it was renewed */
    wait_for(e, pred_key_gone, "alive", "expiry once renewals stop");
}

static bool pred_checkpointed(struct env *e, void *arg)
{
    int64_t *id = arg;
    struct store_lease l;
    return lease_get(e, *id, &l) == 0 && l.remaining_ttl > 0;
}

static void test_checkpoint_survives_restart(void **state)
{
    struct env *e = env_new(1);
    *state = e;
    e->checkpoint_ms = 50;
    env_open(e);
    wait_for(e, pred_leader, NULL, "leadership");
    int64_t id = grant(e, 60);
    put(e, "session", id);
    wait_for(e, pred_checkpointed, &id, "a checkpoint");
    struct store_lease l;
    assert_int_equal(lease_get(e, id, &l), 0);
    int64_t ckpt = l.remaining_ttl;
    assert_true(ckpt > 0 && ckpt < 60);

    /* Restart with periodic checkpoints out of the way: what the new leader uses is the
     * stored checkpoint (or a lower one written before close). */
    env_close(e);
    e->checkpoint_ms = 0;
    env_open(e);
    wait_for(e, pred_leader, NULL, "leadership after restart");
    assert_int_equal(lease_get(e, id, &l), 0);
    assert_true(l.remaining_ttl > 0 && l.remaining_ttl <= ckpt);
    int64_t ttl = -1;
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, id, &ttl), 0);
    assert_true(ttl > 0);                /* not expired early */
    assert_true(ttl <= l.remaining_ttl); /* not renewed to the full 60 s */
    assert_true(key_exists(e, "session"));

    /* A keep-alive now resets the stored checkpoint to "full TTL" before it is answered. */
    assert_int_equal(renew(e, id, &ttl), 0);
    assert_int_equal(ttl, 60);
    assert_int_equal(lease_get(e, id, &l), 0);
    assert_int_equal(l.remaining_ttl, 0);
}

static void test_without_leader_renewals_are_refused(void **state)
{
    struct env *e = env_new(2); /* the other voter never runs: no quorum, no leader */
    *state = e;
    env_open(e);
    int64_t ttl = -1;
    assert_int_equal(srv_lease_keeper_renew(e->keeper, 1, renew_cb, NULL, &ttl), LATCH_ENOLEADER);
    assert_int_equal(srv_lease_keeper_remaining(e->keeper, 1, &ttl), LATCH_ENOLEADER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grant_revoke_ttl_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_revokes_through_raft_and_deletes_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hooks_expiring_proposes_before_the_revoke, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_postpones_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_leader_renewals_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
