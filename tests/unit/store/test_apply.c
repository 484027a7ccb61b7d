/*
 * test_apply.c — store_apply: a batch of Raft entries is one LMDB commit with the applied
 * index (I1); replays are no-ops; gaps are refused; a failed command leaves no trace and
 * uses no revision (I2); membership items are recorded; the replicated NOSPACE alarm
 * refuses exactly the commands that grow the data; every command type reports its result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fx_setup(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_teardown(f);
    free(f);
    return 0;
}

/* An encoded command with its own storage. */
struct enc {
    uint8_t buf[8192];
    size_t len;
};

static void enc_cmd(struct enc *e, const struct store_cmd *c)
{
    assert_int_equal(store_cmd_encode(c, e->buf, sizeof(e->buf), &e->len), 0);
}

/* A put of key = value as a one-op txn. */
static void enc_put(struct enc *e, const char *key, const char *value, int64_t lease)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put = (struct store_put_req){
        .key = B(key), .key_len = L(key), .value = B(value), .value_len = L(value), .lease = lease};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    enc_cmd(e, &c);
}

static struct store_apply_item cmd_item(uint64_t index, const struct enc *e)
{
    return (struct store_apply_item){
        .index = index, .term = 1, .kind = STORE_ITEM_CMD, .len = (uint32_t)e->len, .data = e->buf};
}

static struct store_status status(struct fx *f)
{
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    return st;
}

static int alarm(struct fx *f, uint32_t action)
{
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = action;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    return fx_apply(f, &c, NULL);
}

static int64_t grant(struct fx *f, int64_t id, int64_t ttl, int *err)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    *err = fx_apply(f, &c, &res);
    return res.u.lease_grant.id;
}

static void test_fresh_store_starts_at_revision_one_with_nothing_applied(void **state)
{
    struct fx *f = *state;
    struct store_status st = status(f);
    assert_int_equal(st.revision, 1);
    assert_int_equal(st.applied_index, 0);
    assert_int_equal(st.applied_term, 0);
    assert_false(st.alarm_nospace);
}

static void test_put_bumps_revision_and_records_applied_index(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    struct store_status st = status(f);
    assert_int_equal(st.revision, 2);
    assert_int_equal(st.applied_index, 1);
    assert_int_equal(st.applied_term, 1);
    char v[16];
    assert_int_equal(fx_get(f, "a", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "1");
}

static void test_replay_of_applied_indexes_is_a_noop(void **state)
{
    struct fx *f = *state;
    struct enc e1, e2;
    enc_put(&e1, "k", "first", 0);
    enc_put(&e2, "k", "second", 0);
    struct store_apply_item items[2] = {cmd_item(1, &e1), cmd_item(2, &e1)};
    struct store_result res[2];
    assert_int_equal(store_apply(f->s, items, 2, &f->arena, res), 0);
    assert_int_equal(fx_rev(f), 3);

    /* The same indexes again, now carrying other data: nothing happens. */
    items[0] = cmd_item(1, &e2);
    items[1] = cmd_item(2, &e2);
    assert_int_equal(store_apply(f->s, items, 2, &f->arena, res), 0);
    assert_true(res[0].skipped);
    assert_true(res[1].skipped);
    assert_int_equal(res[1].err, 0);
    assert_int_equal(res[1].revision, 3);
    char v[16];
    assert_int_equal(fx_get(f, "k", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "first");
    assert_int_equal(fx_rev(f), 3);
    assert_int_equal(status(f).applied_index, 2);
}

static void test_batch_overlapping_applied_applies_only_the_new_items(void **state)
{
    struct fx *f = *state;
    struct enc e;
    enc_put(&e, "k", "v", 0);
    struct store_apply_item items[3] = {cmd_item(1, &e), cmd_item(2, &e), cmd_item(3, &e)};
    struct store_result res[3];
    assert_int_equal(store_apply(f->s, items, 1, &f->arena, res), 0);
    assert_int_equal(store_apply(f->s, items, 3, &f->arena, res), 0);
    assert_true(res[0].skipped);
    assert_false(res[1].skipped);
    assert_false(res[2].skipped);
    assert_int_equal(res[2].revision, 4);
    assert_int_equal(status(f).applied_index, 3);
}

static void test_gap_after_applied_index_is_refused(void **state)
{
    struct fx *f = *state;
    struct enc e;
    enc_put(&e, "k", "v", 0);
    struct store_apply_item item = cmd_item(2, &e);
    struct store_result res;
    assert_int_equal(store_apply(f->s, &item, 1, &f->arena, &res), LATCH_EINVAL);
    assert_int_equal(status(f).applied_index, 0);
    assert_int_equal(fx_get(f, "k", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_gap_inside_a_batch_applies_nothing(void **state)
{
    struct fx *f = *state;
    struct enc e;
    enc_put(&e, "k", "v", 0);
    struct store_apply_item items[3] = {cmd_item(1, &e), cmd_item(2, &e), cmd_item(4, &e)};
    struct store_result res[3];
    assert_int_equal(store_apply(f->s, items, 3, &f->arena, res), LATCH_EINVAL);
    assert_int_equal(status(f).applied_index, 0);
    assert_int_equal(fx_rev(f), 1);
    assert_int_equal(fx_get(f, "k", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_large_batch_is_one_commit_that_survives_reopen(void **state)
{
    struct fx *f = *state;
    enum { N = 200 };
    struct enc *e = calloc(N, sizeof(*e));
    struct store_apply_item *items = calloc(N, sizeof(*items));
    struct store_result *res = calloc(N, sizeof(*res));
    assert_non_null(e);
    assert_non_null(items);
    assert_non_null(res);
    for (int i = 0; i < N; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "key%03d", i);
        snprintf(val, sizeof(val), "val%d", i);
        enc_put(&e[i], key, val, 0);
        items[i] = cmd_item((uint64_t)i + 1, &e[i]);
        items[i].term = 7;
    }
    /* The last item cannot be applied: the whole batch is refused and nothing lands. */
    items[N - 1].index = N + 5;
    assert_int_equal(store_apply(f->s, items, N, &f->arena, res), LATCH_EINVAL);
    fx_reopen(f);
    assert_int_equal(status(f).applied_index, 0);
    assert_int_equal(fx_get(f, "key000", NULL, 0, NULL), LATCH_ENOTFOUND);

    items[N - 1].index = N;
    assert_int_equal(store_apply(f->s, items, N, &f->arena, res), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].err, 0);
        assert_int_equal(res[i].revision, i + 2);
    }
    fx_reopen(f);
    struct store_status st = status(f);
    assert_int_equal(st.applied_index, N);
    assert_int_equal(st.applied_term, 7);
    assert_int_equal(st.revision, N + 1);
    assert_int_equal(st.keys_count, N);
    char v[16];
    assert_int_equal(fx_get(f, "key199", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "val199");
    free(e);
    free(items);
    free(res);
}

static void test_batch_that_outgrows_the_map_is_applied_exactly_once(void **state)
{
    struct fx *f = *state;
    f->opt.map_bytes_initial = 256 * 1024;
    fx_rmrf(f->dir);
    fx_reopen(f);
    enum { N = 64 };
    static char big[8193];
    memset(big, 'x', sizeof(big) - 1);
    struct enc *e = calloc(N, sizeof(*e));
    struct store_apply_item items[N];
    struct store_result res[N];
    assert_non_null(e);
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof(key), "big%02d", i);
        struct store_op op = {.type = STORE_OP_PUT};
        op.u.put = (struct store_put_req){
            .key = B(key), .key_len = L(key), .value = B(big), .value_len = 4096 + (uint32_t)i};
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = &op;
        c.u.txn.success_count = 1;
        enc_cmd(&e[i], &c);
        items[i] = cmd_item((uint64_t)i + 1, &e[i]);
    }
    assert_int_equal(store_apply(f->s, items, N, &f->arena, res), 0);
    assert_int_equal(res[N - 1].revision, N + 1);
    assert_int_equal(fx_rev(f), N + 1);
    assert_int_equal(status(f).keys_count, N);
    free(e);
}

static void test_failed_command_changes_nothing_and_uses_no_revision(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "x", "1", 0), 0);
    /* A txn that puts a, then puts b with a lease that does not exist. */
    struct store_op ops[2] = {{.type = STORE_OP_PUT}, {.type = STORE_OP_PUT}};
    ops[0].u.put =
        (struct store_put_req){.key = B("a"), .key_len = 1, .value = B("1"), .value_len = 1};
    ops[1].u.put = (struct store_put_req){
        .key = B("b"), .key_len = 1, .value = B("2"), .value_len = 1, .lease = 12345};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = ops;
    c.u.txn.success_count = 2;
    struct store_result res;
    assert_int_equal(fx_apply(f, &c, &res), LATCH_ENOTFOUND);
    assert_int_equal(res.revision, 2);
    assert_int_equal(fx_rev(f), 2);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(status(f).applied_index, 2); /* the entry itself is consumed */
    /* The next command gets the very next revision. */
    assert_int_equal(fx_put(f, "y", "2", 0), 0);
    struct store_kv kv;
    assert_int_equal(fx_get(f, "y", NULL, 0, &kv), 0);
    assert_int_equal(kv.mod_revision, 3);
}

static void test_undecodable_or_invalid_command_fails_with_einval(void **state)
{
    struct fx *f = *state;
    const uint8_t junk[] = {0xff, 0x01, 0x02};
    struct store_apply_item item = {
        .index = 1, .term = 1, .kind = STORE_ITEM_CMD, .len = sizeof(junk), .data = junk};
    struct store_result res;
    assert_int_equal(store_apply(f->s, &item, 1, &f->arena, &res), 0);
    assert_int_equal(res.err, LATCH_EINVAL);
    assert_int_equal(res.revision, 1);
    assert_int_equal(status(f).applied_index, 1);
    f->next_index = 2;
    /* A put with an empty key fails validation. */
    assert_int_equal(fx_put(f, "", "v", 0), LATCH_EINVAL);
    assert_int_equal(fx_rev(f), 1);
    assert_int_equal(status(f).keys_count, 0);
}

static void test_noop_and_conf_items_record_index_and_membership(void **state)
{
    struct fx *f = *state;
    const uint8_t conf1[] = "members:1,2,3";
    const uint8_t conf2[] = "members:1,2,3,4";
    struct store_apply_item items[3] = {
        {.index = 1, .term = 2, .kind = STORE_ITEM_NOOP},
        {.index = 2, .term = 2, .kind = STORE_ITEM_CONF, .len = sizeof(conf1), .data = conf1},
        {.index = 3, .term = 3, .kind = STORE_ITEM_CONF, .len = sizeof(conf2), .data = conf2},
    };
    struct store_result res[3];
    uint8_t conf[STORE_CONF_BYTES_MAX];
    uint32_t len = 99;
    assert_int_equal(store_conf(f->r, conf, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(store_apply(f->s, items, 3, &f->arena, res), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].err, 0);
        assert_int_equal(res[i].type, 0);
        assert_int_equal(res[i].revision, 1);
    }
    fx_reopen(f);
    assert_int_equal(store_conf(f->r, conf, &len), 0);
    assert_int_equal(len, sizeof(conf2));
    assert_memory_equal(conf, conf2, sizeof(conf2));
    struct store_status st = status(f);
    assert_int_equal(st.applied_index, 3);
    assert_int_equal(st.applied_term, 3);
    assert_int_equal(st.revision, 1);
}

static void test_oversized_conf_is_refused_and_keeps_the_old_one(void **state)
{
    struct fx *f = *state;
    static uint8_t big[STORE_CONF_BYTES_MAX + 1];
    const uint8_t small[] = "m";
    struct store_apply_item items[2] = {
        {.index = 1, .term = 1, .kind = STORE_ITEM_CONF, .len = sizeof(small), .data = small},
        {.index = 2, .term = 1, .kind = STORE_ITEM_CONF, .len = sizeof(big), .data = big},
    };
    struct store_result res[2];
    assert_int_equal(store_apply(f->s, items, 2, &f->arena, res), 0);
    assert_int_equal(res[0].err, 0);
    assert_int_equal(res[1].err, LATCH_EINVAL);
    uint8_t conf[STORE_CONF_BYTES_MAX];
    uint32_t len = 0;
    assert_int_equal(store_conf(f->r, conf, &len), 0);
    assert_int_equal(len, sizeof(small));
    assert_int_equal(status(f).applied_index, 2);
}

static void test_nospace_alarm_refuses_growth_but_allows_reads_deletes_and_cleanup(void **state)
{
    struct fx *f = *state;
    int err;
    int64_t lease = grant(f, 0, 60, &err);
    assert_int_equal(err, 0);
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "2", lease), 0);
    assert_int_equal(fx_put(f, "c", "3", 0), 0);
    int64_t rev = fx_rev(f);

    assert_int_equal(alarm(f, STORE_ALARM_ACTIVATE), 0);
    assert_true(status(f).alarm_nospace);
    fx_reopen(f); /* the alarm is replicated state: it survives a restart */
    assert_true(status(f).alarm_nospace);
    assert_int_equal(fx_rev(f), rev); /* raising the alarm writes no event */

    assert_int_equal(fx_put(f, "d", "4", 0), LATCH_ENOSPACE);
    assert_int_equal(fx_put(f, "a", "overwrite", 0), LATCH_ENOSPACE);
    (void)grant(f, 0, 60, &err);
    assert_int_equal(err, LATCH_ENOSPACE);
    struct store_cmd tc = {.type = STORE_CMD_TREE_CREATE};
    tc.u.tree_create.path = B("/t");
    tc.u.tree_create.path_len = 2;
    assert_int_equal(fx_apply(f, &tc, NULL), LATCH_ENOSPACE);
    assert_int_equal(fx_rev(f), rev);

    char v[16];
    assert_int_equal(fx_get(f, "a", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "1");
    assert_int_equal(fx_del(f, "a"), 0);
    struct store_cmd rv = {.type = STORE_CMD_LEASE_REVOKE};
    rv.u.lease_revoke.id = lease;
    assert_int_equal(fx_apply(f, &rv, NULL), 0);
    assert_int_equal(fx_get(f, "b", NULL, 0, NULL), LATCH_ENOTFOUND);
    struct store_cmd cp = {.type = STORE_CMD_COMPACT};
    cp.u.compact.revision = fx_rev(f);
    assert_int_equal(fx_apply(f, &cp, NULL), 0);

    assert_int_equal(alarm(f, STORE_ALARM_DEACTIVATE), 0);
    assert_false(status(f).alarm_nospace);
    assert_int_equal(fx_put(f, "d", "4", 0), 0);
    (void)grant(f, 0, 60, &err);
    assert_int_equal(err, 0);
    assert_int_equal(fx_apply(f, &tc, NULL), 0);
}

static void test_txn_result_carries_responses_and_revision(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "k", "old", 0), 0);
    struct store_op ops[2] = {{.type = STORE_OP_PUT}, {.type = STORE_OP_RANGE}};
    ops[0].u.put = (struct store_put_req){
        .key = B("k"), .key_len = 1, .value = B("new"), .value_len = 3, .prev_kv = true};
    ops[1].u.range = (struct store_range_req){.key = B("k"), .key_len = 1};
    struct store_compare cmp = {.target = STORE_CMP_VALUE,
                                .result = STORE_CMP_EQUAL,
                                .key = B("k"),
                                .key_len = 1,
                                .value = B("old"),
                                .value_len = 3};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = (struct store_txn_req){
        .compares = &cmp, .compares_count = 1, .success = ops, .success_count = 2};
    struct store_result res;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    assert_int_equal(res.type, STORE_CMD_TXN);
    assert_int_equal(res.revision, 3);
    assert_true(res.u.txn.succeeded);
    assert_int_equal(res.u.txn.responses_count, 2);
    assert_int_equal(res.u.txn.responses[0].type, STORE_OP_PUT);
    assert_true(res.u.txn.responses[0].u.put.has_prev);
    assert_memory_equal(res.u.txn.responses[0].u.put.prev.value, "old", 3);
    assert_int_equal(res.u.txn.responses[1].type, STORE_OP_RANGE);
    assert_int_equal(res.u.txn.responses[1].u.range.kvs_count, 1);
    assert_memory_equal(res.u.txn.responses[1].u.range.kvs[0].value, "new", 3);

    /* The compare now fails: the empty failure branch runs and writes nothing. */
    assert_int_equal(fx_apply(f, &c, &res), 0);
    assert_false(res.u.txn.succeeded);
    assert_int_equal(res.u.txn.responses_count, 0);
    assert_int_equal(res.revision, 3);
}

static void test_compact_result_and_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "k", "1", 0), 0);
    assert_int_equal(fx_put(f, "k", "2", 0), 0);
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    struct store_result res;
    c.u.compact.revision = 2;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    assert_int_equal(res.type, STORE_CMD_COMPACT);
    assert_int_equal(res.u.compact.compact_revision, 2);
    assert_int_equal(status(f).compact_revision, 2);
    assert_int_equal(fx_apply(f, &c, &res), LATCH_ECOMPACTED);
    c.u.compact.revision = 99;
    assert_int_equal(fx_apply(f, &c, &res), LATCH_EFUTUREREV);
    assert_int_equal(status(f).compact_revision, 2);
    assert_int_equal(fx_rev(f), 3);
}

static void test_lease_results_for_grant_revoke_and_checkpoint(void **state)
{
    struct fx *f = *state;
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    c.u.lease_grant.id = 0;
    c.u.lease_grant.ttl = 30;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    assert_int_equal(res.type, STORE_CMD_LEASE_GRANT);
    int64_t id1 = res.u.lease_grant.id;
    assert_true(id1 > 0);
    assert_int_equal(res.u.lease_grant.ttl, 30);
    /* Ids picked by the store are deterministic and do not repeat, also after reopen. */
    fx_reopen(f);
    assert_int_equal(fx_apply(f, &c, &res), 0);
    int64_t id2 = res.u.lease_grant.id;
    assert_true(id2 > 0);
    assert_true(id2 != id1);
    c.u.lease_grant.id = id2;
    assert_int_equal(fx_apply(f, &c, &res), LATCH_EEXIST);

    assert_int_equal(fx_put(f, "a", "1", id1), 0);
    assert_int_equal(fx_put(f, "b", "1", id1), 0);
    struct store_lease_checkpoint cp = {.id = id1, .remaining_ttl = 12};
    struct store_cmd ck = {.type = STORE_CMD_LEASE_CHECKPOINT};
    ck.u.lease_checkpoint.items = &cp;
    ck.u.lease_checkpoint.count = 1;
    assert_int_equal(fx_apply(f, &ck, &res), 0);
    assert_int_equal(res.type, STORE_CMD_LEASE_CHECKPOINT);
    struct store_lease l;
    assert_int_equal(store_lease_get(f->r, id1, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.remaining_ttl, 12);

    struct store_cmd rv = {.type = STORE_CMD_LEASE_REVOKE};
    rv.u.lease_revoke.id = id1;
    assert_int_equal(fx_apply(f, &rv, &res), 0);
    assert_int_equal(res.type, STORE_CMD_LEASE_REVOKE);
    assert_int_equal(res.u.lease_revoke.deleted, 2);
    assert_int_equal(fx_apply(f, &rv, &res), LATCH_ENOTFOUND);
}

static void test_tree_results_for_create_and_delete(void **state)
{
    struct fx *f = *state;
    struct store_cmd c = {.type = STORE_CMD_TREE_CREATE};
    struct store_result res;
    c.u.tree_create.path = B("/a/b/c");
    c.u.tree_create.path_len = 6;
    c.u.tree_create.value = B("v");
    c.u.tree_create.value_len = 1;
    c.u.tree_create.make_parents = true;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    assert_int_equal(res.type, STORE_CMD_TREE_CREATE);
    assert_int_equal(res.u.tree_create.parents_created, 2);
    assert_int_equal(res.u.tree_create.created_revision, res.revision);
    assert_int_equal(fx_apply(f, &c, &res), LATCH_EEXIST);

    struct store_cmd d = {.type = STORE_CMD_TREE_DELETE};
    d.u.tree_delete.path = B("/a");
    d.u.tree_delete.path_len = 2;
    assert_int_equal(fx_apply(f, &d, &res), LATCH_ENOTEMPTY);
    d.u.tree_delete.recursive = true;
    assert_int_equal(fx_apply(f, &d, &res), 0);
    assert_int_equal(res.type, STORE_CMD_TREE_DELETE);
    assert_int_equal(res.u.tree_delete.deleted, 3);
    assert_int_equal(status(f).keys_count, 0);
}

static void test_mixed_batch_reports_each_item(void **state)
{
    struct fx *f = *state;
    struct enc e_put, e_bad, e_del;
    enc_put(&e_put, "m", "1", 0);
    enc_put(&e_bad, "n", "1", 777); /* no such lease */
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del = (struct store_delete_req){.key = B("m"), .key_len = 1};
    struct store_cmd dc = {.type = STORE_CMD_TXN};
    dc.u.txn.success = &del;
    dc.u.txn.success_count = 1;
    enc_cmd(&e_del, &dc);
    const uint8_t conf[] = "c";
    struct store_apply_item items[5] = {
        cmd_item(1, &e_put),
        {.index = 2, .term = 1, .kind = STORE_ITEM_NOOP},
        cmd_item(3, &e_bad),
        {.index = 4, .term = 1, .kind = STORE_ITEM_CONF, .len = 1, .data = conf},
        cmd_item(5, &e_del),
    };
    struct store_result res[5];
    assert_int_equal(store_apply(f->s, items, 5, &f->arena, res), 0);
    assert_int_equal(res[0].err, 0);
    assert_int_equal(res[0].revision, 2);
    assert_int_equal(res[1].revision, 2);
    assert_int_equal(res[2].err, LATCH_ENOTFOUND);
    assert_int_equal(res[2].revision, 2);
    assert_int_equal(res[3].err, 0);
    assert_int_equal(res[4].err, 0);
    assert_int_equal(res[4].revision, 3);
    assert_int_equal(res[4].u.txn.responses[0].u.del.deleted, 1);
    assert_int_equal(status(f).applied_index, 5);
}

/* Put, delete and put again of one key in ONE batch that started with no tombstones: the
 * second create must still find the delete's tombstone, or the history behind it is cut
 * off (a read at the first put's revision would see nothing). */
static void test_recreate_in_the_same_batch_keeps_the_history_behind_it(void **state)
{
    struct fx *f = *state;
    struct enc e1, e2, e3;
    enc_put(&e1, "r", "first", 0);
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del = (struct store_delete_req){.key = B("r"), .key_len = 1};
    struct store_cmd dc = {.type = STORE_CMD_TXN};
    dc.u.txn.success = &del;
    dc.u.txn.success_count = 1;
    enc_cmd(&e2, &dc);
    enc_put(&e3, "r", "second", 0);
    struct store_apply_item items[3] = {cmd_item(1, &e1), cmd_item(2, &e2), cmd_item(3, &e3)};
    struct store_result res[3];
    assert_int_equal(store_apply(f->s, items, 3, &f->arena, res), 0);
    assert_int_equal(res[2].revision, 4);
    struct store_range_req q = {.key = B("r"), .key_len = 1, .revision = 2};
    struct store_range_result out;
    assert_int_equal(store_range(f->r, &q, &f->arena, &out, NULL), 0);
    assert_int_equal(out.kvs_count, 1);
    assert_memory_equal(out.kvs[0].value, "first", 5);
    q.revision = 3;
    assert_int_equal(store_range(f->r, &q, &f->arena, &out, NULL), 0);
    assert_int_equal(out.kvs_count, 0);
    q.revision = 4;
    assert_int_equal(store_range(f->r, &q, &f->arena, &out, NULL), 0);
    assert_int_equal(out.kvs_count, 1);
    assert_int_equal(out.kvs[0].create_revision, 4);
    assert_int_equal(out.kvs[0].version, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fresh_store_starts_at_revision_one_with_nothing_applied),
        T(test_put_bumps_revision_and_records_applied_index),
        T(test_replay_of_applied_indexes_is_a_noop),
        T(test_batch_overlapping_applied_applies_only_the_new_items),
        T(test_gap_after_applied_index_is_refused),
        T(test_gap_inside_a_batch_applies_nothing),
        T(test_large_batch_is_one_commit_that_survives_reopen),
        T(test_batch_that_outgrows_the_map_is_applied_exactly_once),
        T(test_failed_command_changes_nothing_and_uses_no_revision),
        T(test_undecodable_or_invalid_command_fails_with_einval),
        T(test_noop_and_conf_items_record_index_and_membership),
        T(test_oversized_conf_is_refused_and_keeps_the_old_one),
        T(test_nospace_alarm_refuses_growth_but_allows_reads_deletes_and_cleanup),
        T(test_txn_result_carries_responses_and_revision),
        T(test_compact_result_and_errors),
        T(test_lease_results_for_grant_revoke_and_checkpoint),
        T(test_tree_results_for_create_and_delete),
        T(test_mixed_batch_reports_each_item),
        T(test_recreate_in_the_same_batch_keeps_the_history_behind_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
