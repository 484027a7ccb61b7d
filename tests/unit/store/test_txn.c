/*
 * test_txn.c — etcd 3.4 transactions (ETCD-API.md §4.4): store_txn_validate's checks (op
 * counts with nested budgets, empty keys, ignore_* with a value or lease, the "duplicate
 * key given in txn request" rules including nested txns, enums, sizes, depth) and
 * execution through store_apply: compares ANDed with etcd's missing-key rules, one
 * revision for all events, reads that see the txn's earlier writes, nested txns, checks
 * that fail the whole txn before anything is written, and the NOSPACE alarm.
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
#include "latch_teeth.h"
#include "store.h"
#include "store_fixture.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))
#define N(a) (sizeof(a) / sizeof((a)[0]))

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

/* ---------------------------------------------------------------------------------- */
/* Builders                                                                           */
/* ---------------------------------------------------------------------------------- */

static struct store_op op_range(const char *key, const char *end)
{
    struct store_op op = {.type = STORE_OP_RANGE};
    op.u.range = (struct store_range_req){.key = B(key),
                                          .key_len = L(key),
                                          .range_end = B(end),
                                          .range_end_len = end != NULL ? L(end) : 0};
    return op;
}

static struct store_op op_txn(const struct store_txn_req *t)
{
    struct store_op op = {.type = STORE_OP_TXN};
    op.u.txn = t;
    return op;
}

static struct store_compare
cmp_num(uint32_t target, uint32_t result, const char *key, int64_t number)
{
    return (struct store_compare){
        .target = target, .result = result, .key = B(key), .key_len = L(key), .number = number};
}

static struct store_compare cmp_value(uint32_t result, const char *key, const char *value)
{
    return (struct store_compare){.target = STORE_CMP_VALUE,
                                  .result = result,
                                  .key = B(key),
                                  .key_len = L(key),
                                  .value = B(value),
                                  .value_len = L(value)};
}

static struct store_txn_req txn(const struct store_compare *c,
                                size_t nc,
                                const struct store_op *s,
                                size_t ns,
                                const struct store_op *fl,
                                size_t nf)
{
    return (struct store_txn_req){.compares = c,
                                  .compares_count = nc,
                                  .success = s,
                                  .success_count = ns,
                                  .failure = fl,
                                  .failure_count = nf};
}

static int validate(const struct store_txn_req *t)
{
    char msg[STORE_ERRMSG_BYTES] = "";
    int rc = store_txn_validate(t, msg, sizeof(msg));
    if (rc != 0) {
        assert_true(strlen(msg) > 0);
    }
    return rc;
}

/* Applies t as a command; res gets the result. */
static int run(struct fx *f, const struct store_txn_req *t, struct store_result *res)
{
    assert_int_equal(validate(t), 0);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = *t;
    return fx_apply(f, &c, res);
}

static void assert_value(struct fx *f, const char *key, const char *want)
{
    char buf[64];
    if (want == NULL) {
        assert_int_equal(fx_get(f, key, buf, sizeof(buf), NULL), LATCH_ENOTFOUND);
        return;
    }
    assert_int_equal(fx_get(f, key, buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, want);
}

/* ---------------------------------------------------------------------------------- */
/* Validation                                                                         */
/* ---------------------------------------------------------------------------------- */

static void test_validate_accepts_a_plain_txn_and_an_empty_one(void **state)
{
    (void)state;
    struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "k", 0)};
    struct store_op s[] = {fx_op_put("k", "v"), op_range("p/", "p0")};
    struct store_op fl[] = {op_range("k", NULL)};
    struct store_txn_req t = txn(c, N(c), s, N(s), fl, N(fl));
    assert_int_equal(validate(&t), 0);
    struct store_txn_req empty = txn(NULL, 0, NULL, 0, NULL, 0);
    assert_int_equal(validate(&empty), 0);
}

static void test_validate_rejects_empty_keys(void **state)
{
    (void)state;
    struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "", 0)};
    struct store_txn_req t = txn(c, 1, NULL, 0, NULL, 0);
    assert_int_equal(validate(&t), LATCH_EINVAL);
    struct store_op ops[][1] = {{fx_op_put("", "v")}, {fx_op_del("", NULL)}, {op_range("", NULL)}};
    for (size_t i = 0; i < N(ops); i++) {
        t = txn(NULL, 0, ops[i], 1, NULL, 0);
        assert_int_equal(validate(&t), LATCH_EINVAL);
        t = txn(NULL, 0, NULL, 0, ops[i], 1);
        assert_int_equal(validate(&t), LATCH_EINVAL);
    }
}

static void test_validate_rejects_more_than_128_ops_in_any_list(void **state)
{
    (void)state;
    static struct store_op ops[STORE_TXN_OPS_MAX + 1];
    static struct store_compare cmps[STORE_TXN_OPS_MAX + 1];
    for (size_t i = 0; i < N(ops); i++) {
        ops[i] = op_range("k", NULL);
        cmps[i] = cmp_num(STORE_CMP_VERSION, STORE_CMP_EQUAL, "k", 0);
    }
    struct store_txn_req t = txn(cmps, 128, ops, 128, ops, 128);
    assert_int_equal(validate(&t), 0);
    t = txn(cmps, 129, NULL, 0, NULL, 0);
    assert_int_equal(validate(&t), LATCH_ETOOMANYOPS);
    t = txn(NULL, 0, ops, 129, NULL, 0);
    assert_int_equal(validate(&t), LATCH_ETOOMANYOPS);
    t = txn(NULL, 0, NULL, 0, ops, 129);
    assert_int_equal(validate(&t), LATCH_ETOOMANYOPS);
}

static void test_validate_gives_nested_txns_what_is_left_of_the_budget(void **state)
{
    (void)state;
    static struct store_op ops[STORE_TXN_OPS_MAX];
    for (size_t i = 0; i < N(ops); i++) {
        ops[i] = op_range("k", NULL);
    }
    /* etcd: a nested txn may have maxTxnOps - opc(outer) ops per list. */
    struct store_txn_req inner = txn(NULL, 0, ops, 28, NULL, 0);
    struct store_op outer_ops[100];
    outer_ops[0] = op_txn(&inner);
    for (size_t i = 1; i < N(outer_ops); i++) {
        outer_ops[i] = op_range("k", NULL);
    }
    struct store_txn_req t = txn(NULL, 0, outer_ops, 100, NULL, 0);
    assert_int_equal(validate(&t), 0);
    inner.success_count = 29;
    assert_int_equal(validate(&t), LATCH_ETOOMANYOPS);
}

static void test_validate_rejects_the_same_key_put_twice(void **state)
{
    (void)state;
    struct store_op s[] = {fx_op_put("a", "1"), fx_op_put("b", "1"), fx_op_put("a", "2")};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    t = txn(NULL, 0, NULL, 0, s, N(s));
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
}

static void test_validate_rejects_a_put_overlapping_a_delete(void **state)
{
    (void)state;
    struct store_op point[] = {fx_op_del("a", NULL), fx_op_put("a", "1")};
    struct store_txn_req t = txn(NULL, 0, point, N(point), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    struct store_op after[] = {fx_op_put("b5", "1"), fx_op_del("b", "c")};
    t = txn(NULL, 0, after, N(after), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    struct store_op outside[] = {fx_op_put("c", "1"), fx_op_del("b", "c"), fx_op_put("a", "1")};
    t = txn(NULL, 0, outside, N(outside), NULL, 0);
    assert_int_equal(validate(&t), 0);
}

static void test_validate_allows_deleting_a_key_twice_and_reading_a_put_key(void **state)
{
    (void)state;
    struct store_op s[] = {fx_op_del("a", NULL), fx_op_del("a", "b"), fx_op_put("c", "1"),
                           op_range("c", NULL)};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(validate(&t), 0);
}

static void test_validate_allows_the_same_key_in_success_and_failure(void **state)
{
    (void)state;
    struct store_op s[] = {fx_op_put("a", "1")};
    struct store_op fl[] = {fx_op_put("a", "2"), fx_op_del("b", NULL)};
    struct store_op fl2[] = {fx_op_del("a", NULL)};
    struct store_txn_req t = txn(NULL, 0, s, N(s), fl, N(fl));
    assert_int_equal(validate(&t), 0);
    t = txn(NULL, 0, s, N(s), fl2, N(fl2));
    assert_int_equal(validate(&t), 0);
}

static void test_validate_checks_nested_txns_against_their_branch(void **state)
{
    (void)state;
    /* A nested put of a key the outer branch puts. */
    struct store_op in_s[] = {fx_op_put("a", "1")};
    struct store_txn_req inner = txn(NULL, 0, in_s, N(in_s), NULL, 0);
    struct store_op s[] = {op_txn(&inner), fx_op_put("a", "2")};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    /* A nested put inside a range the outer branch deletes, before or after it. */
    struct store_op s2[] = {op_txn(&inner), fx_op_del("a", "b")};
    t = txn(NULL, 0, s2, N(s2), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    struct store_op s3[] = {fx_op_del("a", "b"), op_txn(&inner)};
    t = txn(NULL, 0, s3, N(s3), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    /* The outer failure branch does not conflict with the success branch's nested put. */
    struct store_op s4[] = {op_txn(&inner)};
    struct store_op f4[] = {fx_op_put("a", "3")};
    t = txn(NULL, 0, s4, N(s4), f4, N(f4));
    assert_int_equal(validate(&t), 0);
}

static void test_validate_allows_a_key_in_both_branches_of_a_nested_txn(void **state)
{
    (void)state;
    struct store_op in_s[] = {fx_op_put("a", "1")};
    struct store_op in_f[] = {fx_op_put("a", "2")};
    struct store_txn_req inner = txn(NULL, 0, in_s, N(in_s), in_f, N(in_f));
    struct store_op s[] = {op_txn(&inner), fx_op_put("b", "1")};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(validate(&t), 0);
    /* But not in two sibling nested txns. */
    struct store_op s2[] = {op_txn(&inner), op_txn(&inner)};
    t = txn(NULL, 0, s2, N(s2), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    /* Nor twice inside one nested branch. */
    struct store_op dup[] = {fx_op_put("x", "1"), fx_op_put("x", "2")};
    struct store_txn_req bad = txn(NULL, 0, NULL, 0, dup, N(dup));
    struct store_op s3[] = {op_txn(&bad)};
    t = txn(NULL, 0, s3, N(s3), NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
}

static void test_validate_follows_etcds_sibling_order_for_nested_deletes(void **state)
{
    (void)state;
    /* etcd's checkIntervals checks a nested txn's puts against the deletes of the
     * nested txns before it, not after it. */
    struct store_op put_a[] = {fx_op_put("a", "1")};
    struct store_op del_a[] = {fx_op_del("a", NULL)};
    struct store_txn_req tp = txn(NULL, 0, put_a, 1, NULL, 0);
    struct store_txn_req td = txn(NULL, 0, del_a, 1, NULL, 0);
    struct store_op del_first[] = {op_txn(&td), op_txn(&tp)};
    struct store_txn_req t = txn(NULL, 0, del_first, 2, NULL, 0);
    assert_int_equal(validate(&t), LATCH_EDUPKEY);
    struct store_op put_first[] = {op_txn(&tp), op_txn(&td)};
    t = txn(NULL, 0, put_first, 2, NULL, 0);
    assert_int_equal(validate(&t), 0);
}

static void test_validate_rejects_ignore_flags_with_a_value_or_lease(void **state)
{
    (void)state;
    struct store_op s[] = {fx_op_put("a", "v")};
    s[0].u.put.ignore_value = true;
    struct store_txn_req t = txn(NULL, 0, s, 1, NULL, 0);
    assert_int_equal(validate(&t), LATCH_EINVAL);
    s[0] = fx_op_put("a", "");
    s[0].u.put.ignore_value = true;
    assert_int_equal(validate(&t), 0);
    s[0] = fx_op_put("a", "v");
    s[0].u.put.ignore_lease = true;
    s[0].u.put.lease = 5;
    assert_int_equal(validate(&t), LATCH_EINVAL);
    s[0].u.put.lease = 0;
    assert_int_equal(validate(&t), 0);
}

static void test_validate_rejects_unknown_enum_values(void **state)
{
    (void)state;
    struct store_compare c[] = {cmp_num(5, STORE_CMP_EQUAL, "k", 0)};
    struct store_txn_req t = txn(c, 1, NULL, 0, NULL, 0);
    assert_int_equal(validate(&t), LATCH_EINVAL);
    c[0] = cmp_num(STORE_CMP_MOD, 4, "k", 0);
    assert_int_equal(validate(&t), LATCH_EINVAL);
    struct store_op s[] = {op_range("k", NULL)};
    t = txn(NULL, 0, s, 1, NULL, 0);
    s[0].u.range.sort_order = 3;
    assert_int_equal(validate(&t), LATCH_EINVAL);
    s[0] = op_range("k", NULL);
    s[0].u.range.sort_target = 5;
    assert_int_equal(validate(&t), LATCH_EINVAL);
    s[0] = op_range("k", NULL);
    s[0].type = 9;
    assert_int_equal(validate(&t), LATCH_EINVAL);
}

static void test_validate_rejects_oversized_keys_and_values(void **state)
{
    (void)state;
    static char key[STORE_KEY_BYTES_MAX + 2];
    memset(key, 'k', STORE_KEY_BYTES_MAX + 1);
    struct store_op s[] = {fx_op_put(key, "v")};
    struct store_txn_req t = txn(NULL, 0, s, 1, NULL, 0);
    assert_int_equal(validate(&t), LATCH_ETOOBIG);
    s[0].u.put.key_len = STORE_KEY_BYTES_MAX;
    assert_int_equal(validate(&t), 0);
    s[0] = fx_op_put("k", "v");
    s[0].u.put.value_len = STORE_VALUE_BYTES_MAX + 1; /* length is checked before reading */
    assert_int_equal(validate(&t), LATCH_ETOOBIG);
    struct store_compare c[] = {cmp_num(STORE_CMP_MOD, STORE_CMP_EQUAL, key, 0)};
    t = txn(c, 1, NULL, 0, NULL, 0);
    assert_int_equal(validate(&t), LATCH_ETOOBIG);
}

static void test_validate_limits_nesting_depth(void **state)
{
    (void)state;
    struct store_txn_req chain[STORE_TXN_DEPTH_MAX + 2];
    struct store_op ops[STORE_TXN_DEPTH_MAX + 2];
    /* chain[0] is the top-level txn; chain[i] is nested i levels below it. */
    size_t last = STORE_TXN_DEPTH_MAX;
    for (size_t i = 0; i <= last + 1; i++) {
        chain[i] = txn(NULL, 0, NULL, 0, NULL, 0);
    }
    for (size_t i = 0; i < last; i++) {
        ops[i] = op_txn(&chain[i + 1]);
        chain[i].success = &ops[i];
        chain[i].success_count = 1;
    }
    assert_int_equal(validate(&chain[0]), 0);
    ops[last] = op_txn(&chain[last + 1]);
    chain[last].failure = &ops[last];
    chain[last].failure_count = 1;
    assert_int_equal(validate(&chain[0]), LATCH_EINVAL);
}

static void test_validate_names_the_problem_in_errmsg(void **state)
{
    (void)state;
    char msg[STORE_ERRMSG_BYTES] = "";
    struct store_op s[] = {fx_op_put("a", "1"), fx_op_put("a", "2")};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(store_txn_validate(&t, msg, sizeof(msg)), LATCH_EDUPKEY);
    assert_string_equal(msg, "duplicate key given in txn request");
    s[1] = fx_op_put("", "2");
    assert_int_equal(store_txn_validate(&t, msg, sizeof(msg)), LATCH_EINVAL);
    assert_string_equal(msg, "key is not provided");
    assert_int_equal(store_txn_validate(&t, NULL, 0), LATCH_EINVAL);
}

/* ---------------------------------------------------------------------------------- */
/* Execution                                                                          */
/* ---------------------------------------------------------------------------------- */

static void test_txn_is_one_revision_for_all_its_events(void **state)
{
    struct fx *f = *state;
    struct store_kv a, b;
    struct store_result res;
    assert_int_equal(fx_put(f, "c", "1", 0), 0); /* rev 2 */
    struct store_op s[] = {fx_op_put("a", "1"), fx_op_put("b", "1"), fx_op_del("c", NULL)};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_int_equal(res.revision, 3);
    assert_int_equal(fx_rev(f), 3);
    assert_int_equal(fx_get(f, "a", NULL, 0, &a), 0);
    assert_int_equal(fx_get(f, "b", NULL, 0, &b), 0);
    assert_int_equal(a.mod_revision, 3);
    assert_int_equal(b.mod_revision, 3);
    assert_value(f, "c", NULL);
    /* The history holds three events at revision 3, in op order. */
    struct store_history_req hq = {.start_revision = 3};
    struct store_event *ev;
    size_t n;
    int64_t next;
    assert_int_equal(store_history(f->r, &hq, &f->arena, &ev, &n, &next), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].type, STORE_EVENT_PUT);
    assert_memory_equal(ev[0].kv.key, "a", 1);
    assert_memory_equal(ev[1].kv.key, "b", 1);
    assert_int_equal(ev[2].type, STORE_EVENT_DELETE);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].kv.mod_revision, 3);
    }
    assert_int_equal(next, 4);
}

static void test_txn_without_changes_does_not_bump_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    struct store_op s[] = {op_range("a", NULL), fx_op_del("zz", NULL)};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_int_equal(res.revision, 2);
    assert_int_equal(fx_rev(f), 2);
    assert_int_equal(res.u.txn.responses[0].u.range.kvs_count, 1);
    assert_int_equal(res.u.txn.responses[1].u.del.deleted, 0);
}

static void test_txn_compare_on_missing_key_create_revision_zero_is_true(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "k", 0)};
    struct store_op s[] = {fx_op_put("k", "mine")};
    struct store_op fl[] = {op_range("k", NULL)};
    struct store_txn_req t = txn(c, 1, s, 1, fl, 1);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
    assert_value(f, "k", "mine");
    /* Now it exists: the failure branch reads it. */
    assert_int_equal(run(f, &t, &res), 0);
    assert_false(res.u.txn.succeeded);
    assert_int_equal(res.u.txn.responses[0].type, STORE_OP_RANGE);
    assert_int_equal(res.u.txn.responses[0].u.range.kvs[0].create_revision, 2);
    /* The other non-value targets compare against zero too. */
    struct store_compare z[] = {cmp_num(STORE_CMP_VERSION, STORE_CMP_EQUAL, "x", 0),
                                cmp_num(STORE_CMP_MOD, STORE_CMP_LESS, "x", 1),
                                cmp_num(STORE_CMP_LEASE, STORE_CMP_EQUAL, "x", 0)};
    t = txn(z, N(z), NULL, 0, NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
}

static void test_txn_value_compare_on_missing_key_is_false(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    uint32_t results[] = {STORE_CMP_EQUAL, STORE_CMP_NOT_EQUAL, STORE_CMP_GREATER, STORE_CMP_LESS};
    for (size_t i = 0; i < N(results); i++) {
        struct store_compare c[] = {cmp_value(results[i], "missing", "")};
        struct store_txn_req t = txn(c, 1, NULL, 0, NULL, 0);
        assert_int_equal(run(f, &t, &res), 0);
        assert_false(res.u.txn.succeeded);
    }
    /* An existing empty value equals "". */
    assert_int_equal(fx_put(f, "empty", "", 0), 0);
    struct store_compare c[] = {cmp_value(STORE_CMP_EQUAL, "empty", "")};
    struct store_txn_req t = txn(c, 1, NULL, 0, NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
}

static bool cmp_holds(struct fx *f, struct store_compare c)
{
    struct store_result res;
    struct store_txn_req t = txn(&c, 1, NULL, 0, NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    return res.u.txn.succeeded;
}

static void test_txn_compares_every_target_with_every_result(void **state)
{
    struct fx *f = *state;
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    g.u.lease_grant.id = 42;
    g.u.lease_grant.ttl = 60;
    assert_int_equal(fx_apply(f, &g, &res), 0);
    assert_int_equal(fx_put(f, "k", "bbb", 0), 0);  /* rev 2 */
    assert_int_equal(fx_put(f, "k", "bbb", 42), 0); /* rev 3, version 2, lease 42 */
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_VERSION, STORE_CMP_EQUAL, "k", 2)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_VERSION, STORE_CMP_GREATER, "k", 1)));
    assert_false(cmp_holds(f, cmp_num(STORE_CMP_VERSION, STORE_CMP_LESS, "k", 2)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "k", 2)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_CREATE, STORE_CMP_NOT_EQUAL, "k", 3)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_MOD, STORE_CMP_EQUAL, "k", 3)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_MOD, STORE_CMP_LESS, "k", 4)));
    assert_false(cmp_holds(f, cmp_num(STORE_CMP_MOD, STORE_CMP_GREATER, "k", 3)));
    assert_true(cmp_holds(f, cmp_num(STORE_CMP_LEASE, STORE_CMP_EQUAL, "k", 42)));
    assert_false(cmp_holds(f, cmp_num(STORE_CMP_LEASE, STORE_CMP_NOT_EQUAL, "k", 42)));
    assert_true(cmp_holds(f, cmp_value(STORE_CMP_EQUAL, "k", "bbb")));
    assert_true(cmp_holds(f, cmp_value(STORE_CMP_GREATER, "k", "bb")));  /* longer */
    assert_true(cmp_holds(f, cmp_value(STORE_CMP_GREATER, "k", "abc"))); /* bytes */
    assert_true(cmp_holds(f, cmp_value(STORE_CMP_LESS, "k", "bbc")));
    assert_false(cmp_holds(f, cmp_value(STORE_CMP_NOT_EQUAL, "k", "bbb")));
}

static void test_txn_compares_are_anded(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    struct store_compare c[] = {cmp_value(STORE_CMP_EQUAL, "a", "1"),
                                cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "b", 0),
                                cmp_num(STORE_CMP_VERSION, STORE_CMP_EQUAL, "a", 2)};
    struct store_txn_req t = txn(c, 2, NULL, 0, NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
    t.compares_count = 3;
    assert_int_equal(run(f, &t, &res), 0);
    assert_false(res.u.txn.succeeded);
}

static void test_txn_range_compare_requires_every_key_to_satisfy_it(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "p/1", "x", 0), 0);
    assert_int_equal(fx_put(f, "p/2", "x", 0), 0);
    assert_int_equal(fx_put(f, "q", "y", 0), 0);
    struct store_compare c = cmp_value(STORE_CMP_EQUAL, "p/", "x");
    c.range_end = B("p0");
    c.range_end_len = 2;
    assert_true(cmp_holds(f, c));
    assert_int_equal(fx_put(f, "p/3", "z", 0), 0);
    assert_false(cmp_holds(f, c));
    /* An empty range: value false, others against zero. */
    struct store_compare e = cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "r/", 0);
    e.range_end = B("r0");
    e.range_end_len = 2;
    assert_true(cmp_holds(f, e));
    struct store_compare ev = cmp_value(STORE_CMP_NOT_EQUAL, "r/", "x");
    ev.range_end = B("r0");
    ev.range_end_len = 2;
    assert_false(cmp_holds(f, ev));
    /* "\0" as range end: every key from key on. */
    struct store_compare all = cmp_num(STORE_CMP_VERSION, STORE_CMP_EQUAL, "p/", 1);
    all.range_end = B("\0");
    all.range_end_len = 1;
    assert_true(cmp_holds(f, all));
    assert_int_equal(fx_put(f, "q", "y2", 0), 0);
    assert_false(cmp_holds(f, all));
}

static void test_txn_reads_see_earlier_writes_of_the_same_txn(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "old", 0), 0);
    struct store_op s[] = {op_range("a", NULL), fx_op_put("a", "new"), op_range("a", NULL),
                           fx_op_del("b", NULL), op_range("b", NULL)};
    s[3] = fx_op_put("b", "1");
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    const struct store_op_result *r = res.u.txn.responses;
    assert_int_equal(res.u.txn.responses_count, 5);
    assert_memory_equal(r[0].u.range.kvs[0].value, "old", 3);
    assert_memory_equal(r[2].u.range.kvs[0].value, "new", 3);
    assert_int_equal(r[2].u.range.kvs[0].mod_revision, 3);
    assert_int_equal(r[2].u.range.kvs[0].version, 2);
    assert_int_equal(r[4].u.range.count, 1);
    assert_int_equal(fx_rev(f), 3);
}

static void test_txn_range_at_the_pre_txn_revision_does_not_see_its_writes(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "old", 0), 0); /* rev 2 */
    struct store_op s[] = {fx_op_put("a", "new"), op_range("a", NULL)};
    s[1].u.range.revision = 2;
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_memory_equal(res.u.txn.responses[1].u.range.kvs[0].value, "old", 3);
}

static void test_txn_mutex_lock_recipe_answers_in_op_order(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    /* clientv3 concurrency.Mutex.Lock, first for "lk/1" then for "lk/2". */
    const char *keys[] = {"lk/1", "lk/2"};
    int64_t revs[2];
    for (int i = 0; i < 2; i++) {
        struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, keys[i], 0)};
        struct store_op owner = op_range("lk/", "lk0");
        owner.u.range.sort_order = STORE_SORT_ASCEND;
        owner.u.range.sort_target = STORE_SORT_CREATE;
        owner.u.range.limit = 1;
        struct store_op s[] = {fx_op_put(keys[i], ""), owner};
        struct store_op fl[] = {op_range(keys[i], NULL), owner};
        struct store_txn_req t = txn(c, 1, s, 2, fl, 2);
        assert_int_equal(run(f, &t, &res), 0);
        assert_true(res.u.txn.succeeded);
        assert_int_equal(res.u.txn.responses[0].type, STORE_OP_PUT);
        assert_int_equal(res.u.txn.responses[1].type, STORE_OP_RANGE);
        revs[i] = res.revision;
        const struct store_range_result *o = &res.u.txn.responses[1].u.range;
        assert_int_equal(o->kvs_count, 1);
        assert_memory_equal(o->kvs[0].key, "lk/1", 4); /* the first locker owns it */
        assert_int_equal(o->kvs[0].create_revision, revs[0]);
    }
    assert_int_equal(revs[1], revs[0] + 1);
}

static void test_txn_failure_branch_with_ops(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_compare c[] = {cmp_value(STORE_CMP_EQUAL, "a", "x")};
    struct store_op s[] = {fx_op_put("s", "1")};
    struct store_op fl[] = {fx_op_put("f", "1"), op_range("f", NULL)};
    struct store_txn_req t = txn(c, 1, s, 1, fl, 2);
    assert_int_equal(run(f, &t, &res), 0);
    assert_false(res.u.txn.succeeded);
    assert_int_equal(res.u.txn.responses_count, 2);
    assert_value(f, "s", NULL);
    assert_value(f, "f", "1");
}

static void test_txn_nested_txn_runs_its_chosen_branch_in_place(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "x", "1", 0), 0);
    struct store_compare ic[] = {cmp_value(STORE_CMP_EQUAL, "x", "2")};
    struct store_op is[] = {fx_op_put("inner_s", "1")};
    struct store_op ifl[] = {fx_op_put("inner_f", "1"), op_range("before", NULL)};
    struct store_txn_req inner = txn(ic, 1, is, 1, ifl, 2);
    struct store_op s[] = {fx_op_put("before", "b"), op_txn(&inner), op_range("inner_", "inner`")};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
    const struct store_op_result *r = res.u.txn.responses;
    assert_int_equal(r[1].type, STORE_OP_TXN);
    const struct store_txn_result *ir = r[1].u.txn;
    assert_false(ir->succeeded);
    assert_int_equal(ir->responses_count, 2);
    assert_int_equal(ir->responses[0].type, STORE_OP_PUT);
    assert_int_equal(ir->responses[1].u.range.kvs_count, 1); /* sees the outer put */
    assert_int_equal(r[2].u.range.count, 1);                 /* sees the nested put */
    assert_value(f, "inner_f", "1");
    assert_value(f, "inner_s", NULL);
    assert_int_equal(fx_rev(f), 3); /* one revision for the whole tree */
}

static void test_txn_nested_compare_sees_the_state_before_the_txn(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    /* etcd's compareToPath evaluates every compare before the txn writes. */
    struct store_compare ic[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "k", 0)};
    struct store_op is[] = {fx_op_put("saw_missing", "1")};
    struct store_op ifl[] = {fx_op_put("saw_present", "1")};
    struct store_txn_req inner = txn(ic, 1, is, 1, ifl, 1);
    struct store_op s[] = {fx_op_put("k", "v"), op_txn(&inner)};
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.responses[1].u.txn->succeeded);
    assert_value(f, "saw_missing", "1");
    assert_value(f, "saw_present", NULL);
}

static void test_txn_prev_kv_for_put_and_delete(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "2", 0), 0);
    struct store_op s[] = {fx_op_put("a", "x"), fx_op_del("b", NULL)};
    s[0].u.put.prev_kv = true;
    s[1].u.del.prev_kv = true;
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    const struct store_op_result *r = res.u.txn.responses;
    assert_true(r[0].u.put.has_prev);
    assert_memory_equal(r[0].u.put.prev.value, "1", 1);
    assert_int_equal(r[0].u.put.prev.mod_revision, 2);
    assert_int_equal(r[1].u.del.deleted, 1);
    assert_int_equal(r[1].u.del.prev_kvs_count, 1);
    assert_memory_equal(r[1].u.del.prev_kvs[0].value, "2", 1);
}

static void test_txn_failing_check_writes_nothing(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    /* The put of b comes first but the txn fails as a whole on the ignore_value put. */
    struct store_op s[] = {fx_op_put("b", "1"), fx_op_put("missing", "")};
    s[1].u.put.ignore_value = true;
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_ENOKEY);
    assert_value(f, "b", NULL);
    assert_int_equal(fx_rev(f), 2);
    /* A lease that does not exist, in a nested txn. */
    struct store_op is[] = {fx_op_put("c", "1")};
    is[0].u.put.lease = 77;
    struct store_txn_req inner = txn(NULL, 0, is, 1, NULL, 0);
    struct store_op s2[] = {fx_op_put("b", "1"), op_txn(&inner)};
    t = txn(NULL, 0, s2, N(s2), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_ENOTFOUND);
    assert_value(f, "b", NULL);
    assert_int_equal(fx_rev(f), 2);
}

static void test_txn_range_at_future_or_compacted_revision_fails_whole_txn(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0); /* rev 4 */
    struct store_op s[] = {fx_op_put("b", "1"), op_range("a", NULL)};
    s[1].u.range.revision = 5; /* even though the put makes revision 5 */
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_EFUTUREREV);
    assert_value(f, "b", NULL);
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = 3;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    s[1].u.range.revision = 2;
    assert_int_equal(run(f, &t, NULL), LATCH_ECOMPACTED);
    assert_value(f, "b", NULL);
    s[1].u.range.revision = 3;
    struct store_result res;
    assert_int_equal(run(f, &t, &res), 0);
    assert_memory_equal(res.u.txn.responses[1].u.range.kvs[0].value, "2", 1);
    assert_int_equal(fx_rev(f), 5);
}

/* etcd's checkRequests walks the ops in order and a nested txn's ops at its position, so
 * of two bad ranges the first one met decides the error (found by test_model, seed 4). */
static void test_txn_first_bad_range_in_op_order_decides_the_error(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx_put(f, "a", "v", 0), 0); /* rev 5 */
    }
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = 3;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    struct store_op in[] = {op_range("a", NULL)};
    in[0].u.range.revision = 6; /* future */
    struct store_txn_req nested = txn(NULL, 0, in, N(in), NULL, 0);
    struct store_op out[] = {op_txn(&nested), op_range("a", NULL)};
    out[1].u.range.revision = 1; /* compacted, but after the nested txn */
    struct store_txn_req t = txn(NULL, 0, out, N(out), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_EFUTUREREV);
    struct store_op swapped[] = {op_range("a", NULL), op_txn(&nested)};
    swapped[0].u.range.revision = 1;
    struct store_txn_req t2 = txn(NULL, 0, swapped, N(swapped), NULL, 0);
    assert_int_equal(run(f, &t2, NULL), LATCH_ECOMPACTED);
    assert_int_equal(fx_rev(f), 5);
}

static void test_txn_checks_only_the_branch_taken(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "k", 0)};
    struct store_op s[] = {fx_op_put("k", "v")};
    struct store_op fl[] = {op_range("k", NULL)};
    fl[0].u.range.revision = 1000; /* would be a future revision, but is never run */
    struct store_txn_req t = txn(c, 1, s, 1, fl, 1);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
}

static void test_txn_with_many_nested_txns_runs_each_on_its_own_branch(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    enum { K = 40 };
    static char keys[K][8];
    struct store_compare c[K];
    struct store_op s[K], fl[K], outer[K];
    struct store_txn_req inner[K];
    assert_int_equal(fx_put(f, "odd", "1", 0), 0);
    for (int i = 0; i < K; i++) {
        snprintf(keys[i], sizeof(keys[i]), "n%02d", i);
        /* Odd nested txns take their success branch, even ones their failure branch. */
        c[i] = cmp_num(STORE_CMP_CREATE, i % 2 ? STORE_CMP_NOT_EQUAL : STORE_CMP_EQUAL, "odd", 0);
        s[i] = fx_op_put(keys[i], "s");
        fl[i] = fx_op_put(keys[i], "f");
        inner[i] = txn(&c[i], 1, &s[i], 1, &fl[i], 1);
        outer[i] = op_txn(&inner[i]);
    }
    struct store_txn_req t = txn(NULL, 0, outer, K, NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_int_equal(res.u.txn.responses_count, K);
    for (int i = 0; i < K; i++) {
        assert_int_equal(res.u.txn.responses[i].type, STORE_OP_TXN);
        assert_int_equal(res.u.txn.responses[i].u.txn->succeeded, i % 2 == 1);
        assert_value(f, keys[i], i % 2 ? "s" : "f");
    }
    assert_int_equal(fx_rev(f), 3);
}

static void test_txn_ignore_value_put_after_a_delete_from_key_fails_whole_txn(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "1", 0), 0);
    /* etcd's duplicate check sees no overlap with a "\0" range end, so this validates;
     * the delete then removes b before the put that needs it (etcd panics here). */
    struct store_op s[] = {fx_op_del("a", NULL), fx_op_put("b", "")};
    s[0].u.del.range_end = B("\0");
    s[0].u.del.range_end_len = 1;
    s[1].u.put.ignore_value = true;
    struct store_txn_req t = txn(NULL, 0, s, N(s), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_ENOKEY);
    assert_value(f, "a", "1");
    assert_value(f, "b", "1");
    assert_int_equal(fx_rev(f), 3);
    /* Without ignore_value the same txn deletes both and re-creates b at one revision. */
    s[1] = fx_op_put("b", "2");
    struct store_result res;
    assert_int_equal(run(f, &t, &res), 0);
    assert_int_equal(res.u.txn.responses[0].u.del.deleted, 2);
    assert_value(f, "a", NULL);
    assert_value(f, "b", "2");
    assert_int_equal(fx_rev(f), 4);
}

static int alarm(struct fx *f, uint32_t action)
{
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = action;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    return fx_apply(f, &c, NULL);
}

static void test_txn_with_a_put_fails_with_nospace_while_the_alarm_is_on(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(alarm(f, STORE_ALARM_ACTIVATE), 0);
    assert_int_equal(fx_put(f, "b", "1", 0), LATCH_ENOSPACE);
    /* A put in the branch not taken, or in a nested txn, counts as well. */
    struct store_compare c[] = {cmp_num(STORE_CMP_CREATE, STORE_CMP_EQUAL, "a", 0)};
    struct store_op fl[] = {op_range("a", NULL)};
    struct store_op s[] = {fx_op_put("c", "1")};
    struct store_txn_req t = txn(c, 1, s, 1, fl, 1);
    assert_int_equal(run(f, &t, NULL), LATCH_ENOSPACE);
    struct store_txn_req inner = txn(NULL, 0, s, 1, NULL, 0);
    struct store_op s2[] = {op_range("a", NULL), op_txn(&inner)};
    t = txn(NULL, 0, s2, N(s2), NULL, 0);
    assert_int_equal(run(f, &t, NULL), LATCH_ENOSPACE);
    /* Reads and deletes still work. */
    struct store_op rd[] = {op_range("a", NULL), fx_op_del("a", NULL)};
    t = txn(NULL, 0, rd, N(rd), NULL, 0);
    assert_int_equal(run(f, &t, &res), 0);
    assert_int_equal(res.u.txn.responses[1].u.del.deleted, 1);
    assert_int_equal(alarm(f, STORE_ALARM_DEACTIVATE), 0);
    assert_int_equal(fx_put(f, "b", "1", 0), 0);
}

/* A FENCE compare over the queue "q/": shared entries are those whose byte after "q/" is
 * 'r' when shared is true; value_len 0 (no shared entries) otherwise. */
static struct store_compare cmp_fence(uint32_t result, int64_t token, bool shared)
{
    struct store_compare c = {.target = STORE_CMP_FENCE,
                              .result = result,
                              .key = B("q/"),
                              .key_len = 2,
                              .range_end = B("q0"),
                              .range_end_len = 2,
                              .number = token};
    if (shared) {
        c.value = B("r");
        c.value_len = 1;
    }
    return c;
}

/* Queue entries are attached to a session's lease; QL is the fixtures' session. */
#define QL 7

static void grant_queue_lease(struct fx *f)
{
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = QL;
    g.u.lease_grant.ttl = 60;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
}

static bool fence_holds(struct fx *f, int64_t token)
{
    bool holds = cmp_holds(f, cmp_fence(STORE_CMP_EQUAL, token, true));
    assert_true(holds != cmp_holds(f, cmp_fence(STORE_CMP_NOT_EQUAL, token, true)));
    return holds;
}

static void test_txn_fence_holds_for_the_lowest_entry_and_a_run_of_shared_ones(void **state)
{
    struct fx *f = *state;
    grant_queue_lease(f);
    assert_int_equal(fx_put(f, "q/wA", "", QL), 0); /* rev 2: exclusive, first */
    assert_int_equal(fx_put(f, "q/rB", "", QL), 0); /* rev 3: shared */
    assert_int_equal(fx_put(f, "q/rC", "", QL), 0); /* rev 4: shared */
    assert_int_equal(fx_put(f, "q/wD", "", QL), 0); /* rev 5: exclusive */
    assert_int_equal(fx_put(f, "q/rE", "", QL), 0); /* rev 6: shared, behind a writer */
    assert_int_equal(fx_put(f, "q0", "", 0), 0);    /* rev 7: outside the queue */
    assert_true(fence_holds(f, 2));
    assert_false(fence_holds(f, 3)); /* an exclusive entry is below it */
    assert_false(fence_holds(f, 5));
    assert_false(fence_holds(f, 7));  /* not in the queue */
    assert_false(fence_holds(f, 99)); /* no such entry */

    /* The writer releases: both readers hold at that same revision, the next writer not. */
    assert_int_equal(fx_del(f, "q/wA"), 0);
    assert_false(fence_holds(f, 2)); /* a released grant's token is stale for good */
    assert_true(fence_holds(f, 3));
    assert_true(fence_holds(f, 4));
    assert_false(fence_holds(f, 5));
    assert_false(fence_holds(f, 6)); /* shared, but a writer queued before it */
    /* Without a shared marker every entry is exclusive: only the lowest holds. */
    assert_true(cmp_holds(f, cmp_fence(STORE_CMP_EQUAL, 3, false)));
    assert_false(cmp_holds(f, cmp_fence(STORE_CMP_EQUAL, 4, false)));

    /* A put on an existing entry keeps its create revision, so its place and token. */
    assert_int_equal(fx_put(f, "q/rB", "again", QL), 0);
    assert_true(fence_holds(f, 3));
    assert_int_equal(fx_del(f, "q/rB"), 0);
    assert_int_equal(fx_del(f, "q/rC"), 0);
    assert_true(fence_holds(f, 5)); /* the writer, once every reader before it is gone */
    assert_false(fence_holds(f, 6));
}

static void test_txn_fenced_write_applies_only_while_the_token_is_current(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_queue_lease(f);
    assert_int_equal(fx_put(f, "q/wA", "", QL), 0); /* rev 2: holder */
    assert_int_equal(fx_put(f, "q/wB", "", QL), 0); /* rev 3: waiter */
    struct store_compare c[] = {cmp_fence(STORE_CMP_EQUAL, 2, false)};
    struct store_op s[] = {fx_op_put("data", "from A")};
    struct store_op fl[] = {op_range("q/", "q0")};
    struct store_txn_req t = txn(c, 1, s, 1, fl, 1);
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
    assert_value(f, "data", "from A");

    /* A's entry is deleted (release or session end): B holds at that revision, and A's
     * write with its old token changes nothing; the failure branch shows the queue. */
    assert_int_equal(fx_del(f, "q/wA"), 0);
    int64_t rev = fx_rev(f);
    s[0] = fx_op_put("data", "late A");
    assert_int_equal(run(f, &t, &res), 0);
    assert_false(res.u.txn.succeeded);
    assert_int_equal(fx_rev(f), rev);
    assert_value(f, "data", "from A");
    assert_int_equal(res.u.txn.responses[0].u.range.kvs_count, 1);
    assert_int_equal(res.u.txn.responses[0].u.range.kvs[0].create_revision, 3);
    c[0] = cmp_fence(STORE_CMP_EQUAL, 3, false);
    s[0] = fx_op_put("data", "from B");
    assert_int_equal(run(f, &t, &res), 0);
    assert_true(res.u.txn.succeeded);
    assert_value(f, "data", "from B");
}

/* A lock-delay tombstone (an entry whose lease was cleared, its create revision kept)
 * keeps its place in the queue but is nobody's grant: its own token is refused, the
 * exclusive entries behind it stay blocked, and once it is deleted the next entry holds. */
static void test_txn_fence_refuses_a_tombstone_and_blocks_behind_it(void **state)
{
    struct fx *f = *state;
    grant_queue_lease(f);
    assert_int_equal(fx_put(f, "q/wA", "", QL), 0); /* rev 2: holder */
    assert_int_equal(fx_put(f, "q/wB", "", QL), 0); /* rev 3: waiter */
    assert_true(fence_holds(f, 2));
    assert_int_equal(fx_put(f, "q/wA", "", 0), 0); /* rev 4: A's lease is gone */
    struct store_kv kv;
    char buf[8];
    assert_int_equal(fx_get(f, "q/wA", buf, sizeof(buf), &kv), 0);
    assert_int_equal(kv.create_revision, 2);
    assert_int_equal(kv.lease, 0);
    assert_false(fence_holds(f, 2));        /* the tombstone's own token */
    assert_false(fence_holds(f, 3));        /* blocked behind it */
    assert_int_equal(fx_del(f, "q/wA"), 0); /* rev 5 */
    assert_true(fence_holds(f, 3));

    /* A shared tombstone blocks a writer, not readers. */
    assert_int_equal(fx_put(f, "q/rC", "", QL), 0); /* rev 6 */
    assert_int_equal(fx_del(f, "q/wB"), 0);
    assert_int_equal(fx_put(f, "q/rC", "", 0), 0);  /* tombstone at create rev 6 */
    assert_int_equal(fx_put(f, "q/rD", "", QL), 0); /* rev 9: shared */
    assert_int_equal(fx_put(f, "q/wE", "", QL), 0); /* rev 10: exclusive */
    assert_false(fence_holds(f, 6));
    assert_true(fence_holds(f, 9));
    assert_false(fence_holds(f, 10));
}

/* Teeth no-fence (latch_teeth.h): with the switch on, a released grant's stale token and a
 * waiter's token both pass; off again, the real check is back. */
static void test_txn_teeth_no_fence_lets_every_token_through(void **state)
{
#ifdef LATCH_TEETH
    struct fx *f = *state;
    grant_queue_lease(f);
    assert_int_equal(fx_put(f, "q/wA", "", QL), 0); /* rev 2: holder */
    assert_int_equal(fx_put(f, "q/wB", "", QL), 0); /* rev 3: waiter */
    assert_int_equal(fx_del(f, "q/wA"), 0);         /* A's token 2 is stale */
    assert_false(fence_holds(f, 2));
    latch_teeth_set(LATCH_TEETH_NO_FENCE);
    assert_true(fence_holds(f, 2));
    assert_true(fence_holds(f, 99)); /* not even in the queue */
    latch_teeth_set(0);
    assert_false(fence_holds(f, 2));
    assert_true(fence_holds(f, 3));
#else
    (void)state;
    skip();
#endif
}

static void test_validate_rejects_malformed_fences(void **state)
{
    (void)state;
    struct store_compare c = cmp_fence(STORE_CMP_EQUAL, 2, true);
    struct store_txn_req t = txn(&c, 1, NULL, 0, NULL, 0);
    assert_int_equal(validate(&t), 0);
    c.range_end_len = 0; /* one key is not a queue */
    assert_int_equal(validate(&t), LATCH_EINVAL);
    c = cmp_fence(STORE_CMP_EQUAL, 0, true); /* tokens are revisions: positive */
    assert_int_equal(validate(&t), LATCH_EINVAL);
    c = cmp_fence(STORE_CMP_GREATER, 2, true);
    assert_int_equal(validate(&t), LATCH_EINVAL);
    c = cmp_fence(STORE_CMP_EQUAL, 2, true);
    c.value = B("rw");
    c.value_len = 2; /* the shared marker is one byte */
    assert_int_equal(validate(&t), LATCH_EINVAL);
    c = (struct store_compare){.target = STORE_CMP_FENCE + 1, .key = B("k"), .key_len = 1};
    assert_int_equal(validate(&t), LATCH_EINVAL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_txn_teeth_no_fence_lets_every_token_through),
        T(test_validate_accepts_a_plain_txn_and_an_empty_one),
        T(test_validate_rejects_empty_keys),
        T(test_validate_rejects_more_than_128_ops_in_any_list),
        T(test_validate_gives_nested_txns_what_is_left_of_the_budget),
        T(test_validate_rejects_the_same_key_put_twice),
        T(test_validate_rejects_a_put_overlapping_a_delete),
        T(test_validate_allows_deleting_a_key_twice_and_reading_a_put_key),
        T(test_validate_allows_the_same_key_in_success_and_failure),
        T(test_validate_checks_nested_txns_against_their_branch),
        T(test_validate_allows_a_key_in_both_branches_of_a_nested_txn),
        T(test_validate_follows_etcds_sibling_order_for_nested_deletes),
        T(test_validate_rejects_ignore_flags_with_a_value_or_lease),
        T(test_validate_rejects_unknown_enum_values),
        T(test_validate_rejects_oversized_keys_and_values),
        T(test_validate_limits_nesting_depth),
        T(test_validate_names_the_problem_in_errmsg),
        T(test_txn_is_one_revision_for_all_its_events),
        T(test_txn_without_changes_does_not_bump_revision),
        T(test_txn_compare_on_missing_key_create_revision_zero_is_true),
        T(test_txn_value_compare_on_missing_key_is_false),
        T(test_txn_compares_every_target_with_every_result),
        T(test_txn_compares_are_anded),
        T(test_txn_range_compare_requires_every_key_to_satisfy_it),
        T(test_txn_reads_see_earlier_writes_of_the_same_txn),
        T(test_txn_range_at_the_pre_txn_revision_does_not_see_its_writes),
        T(test_txn_mutex_lock_recipe_answers_in_op_order),
        T(test_txn_failure_branch_with_ops),
        T(test_txn_nested_txn_runs_its_chosen_branch_in_place),
        T(test_txn_nested_compare_sees_the_state_before_the_txn),
        T(test_txn_prev_kv_for_put_and_delete),
        T(test_txn_failing_check_writes_nothing),
        T(test_txn_range_at_future_or_compacted_revision_fails_whole_txn),
        T(test_txn_first_bad_range_in_op_order_decides_the_error),
        T(test_txn_checks_only_the_branch_taken),
        T(test_txn_with_many_nested_txns_runs_each_on_its_own_branch),
        T(test_txn_ignore_value_put_after_a_delete_from_key_fails_whole_txn),
        T(test_txn_with_a_put_fails_with_nospace_while_the_alarm_is_on),
        T(test_txn_fence_holds_for_the_lowest_entry_and_a_run_of_shared_ones),
        T(test_txn_fenced_write_applies_only_while_the_token_is_current),
        T(test_txn_fence_refuses_a_tombstone_and_blocks_behind_it),
        T(test_validate_rejects_malformed_fences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
