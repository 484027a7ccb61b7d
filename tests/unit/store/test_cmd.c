/*
 * test_cmd.c — the Raft entry form of commands (store_cmd_size/encode/decode): every
 * command type survives a round trip, nested txns included; the decoder treats its input
 * as untrusted (every truncation, trailing byte, unknown enum, oversized count or length
 * fails with LATCH_EINVAL; random damage never reads outside the buffer, which ASan checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

/* Encodes c into a fresh malloc'd buffer of exactly store_cmd_size(c) bytes. */
static uint8_t *encode(const struct store_cmd *c, size_t *len)
{
    size_t size = store_cmd_size(c);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(store_cmd_encode(c, buf, size, len), 0);
    assert_int_equal(*len, size);
    return buf;
}

static void assert_bytes(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    assert_int_equal(a_len, b_len);
    if (a_len > 0) {
        assert_memory_equal(a, b, a_len);
    }
}

static void assert_compare_equal(const struct store_compare *a, const struct store_compare *b)
{
    assert_int_equal(a->target, b->target);
    assert_int_equal(a->result, b->result);
    assert_bytes(a->key, a->key_len, b->key, b->key_len);
    assert_bytes(a->range_end, a->range_end_len, b->range_end, b->range_end_len);
    assert_int_equal(a->number, b->number);
    assert_bytes(a->value, a->value_len, b->value, b->value_len);
}

static void assert_range_equal(const struct store_range_req *a, const struct store_range_req *b)
{
    assert_bytes(a->key, a->key_len, b->key, b->key_len);
    assert_bytes(a->range_end, a->range_end_len, b->range_end, b->range_end_len);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->revision, b->revision);
    assert_int_equal(a->sort_order, b->sort_order);
    assert_int_equal(a->sort_target, b->sort_target);
    assert_int_equal(a->keys_only, b->keys_only);
    assert_int_equal(a->count_only, b->count_only);
    assert_int_equal(a->min_mod_revision, b->min_mod_revision);
    assert_int_equal(a->max_mod_revision, b->max_mod_revision);
    assert_int_equal(a->min_create_revision, b->min_create_revision);
    assert_int_equal(a->max_create_revision, b->max_create_revision);
}

/* Compares two txns level by level with an explicit worklist (mirrors the code's rule). */
static void assert_txn_equal(const struct store_txn_req *a0, const struct store_txn_req *b0)
{
    const struct store_txn_req *wa[64], *wb[64];
    size_t n = 0;
    wa[n] = a0;
    wb[n++] = b0;
    while (n > 0) {
        const struct store_txn_req *a = wa[--n], *b = wb[n];
        assert_int_equal(a->compares_count, b->compares_count);
        assert_int_equal(a->success_count, b->success_count);
        assert_int_equal(a->failure_count, b->failure_count);
        for (size_t i = 0; i < a->compares_count; i++) {
            assert_compare_equal(&a->compares[i], &b->compares[i]);
        }
        for (size_t i = 0; i < a->success_count + a->failure_count; i++) {
            const struct store_op *x =
                i < a->success_count ? &a->success[i] : &a->failure[i - a->success_count];
            const struct store_op *y =
                i < b->success_count ? &b->success[i] : &b->failure[i - b->success_count];
            assert_int_equal(x->type, y->type);
            if (x->type == STORE_OP_RANGE) {
                assert_range_equal(&x->u.range, &y->u.range);
            } else if (x->type == STORE_OP_PUT) {
                assert_bytes(x->u.put.key, x->u.put.key_len, y->u.put.key, y->u.put.key_len);
                assert_bytes(x->u.put.value, x->u.put.value_len, y->u.put.value,
                             y->u.put.value_len);
                assert_int_equal(x->u.put.lease, y->u.put.lease);
                assert_int_equal(x->u.put.prev_kv, y->u.put.prev_kv);
                assert_int_equal(x->u.put.ignore_value, y->u.put.ignore_value);
                assert_int_equal(x->u.put.ignore_lease, y->u.put.ignore_lease);
            } else if (x->type == STORE_OP_DELETE) {
                assert_bytes(x->u.del.key, x->u.del.key_len, y->u.del.key, y->u.del.key_len);
                assert_bytes(x->u.del.range_end, x->u.del.range_end_len, y->u.del.range_end,
                             y->u.del.range_end_len);
                assert_int_equal(x->u.del.prev_kv, y->u.del.prev_kv);
            } else {
                assert_true(n < 64);
                wa[n] = x->u.txn;
                wb[n++] = y->u.txn;
            }
        }
    }
}

static void assert_cmd_equal(const struct store_cmd *a, const struct store_cmd *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case STORE_CMD_TXN:
        assert_txn_equal(&a->u.txn, &b->u.txn);
        break;
    case STORE_CMD_COMPACT:
        assert_int_equal(a->u.compact.revision, b->u.compact.revision);
        break;
    case STORE_CMD_LEASE_GRANT:
        assert_int_equal(a->u.lease_grant.id, b->u.lease_grant.id);
        assert_int_equal(a->u.lease_grant.ttl, b->u.lease_grant.ttl);
        break;
    case STORE_CMD_LEASE_REVOKE:
        assert_int_equal(a->u.lease_revoke.id, b->u.lease_revoke.id);
        break;
    case STORE_CMD_LEASE_CHECKPOINT:
        assert_int_equal(a->u.lease_checkpoint.count, b->u.lease_checkpoint.count);
        for (size_t i = 0; i < a->u.lease_checkpoint.count; i++) {
            assert_int_equal(a->u.lease_checkpoint.items[i].id, b->u.lease_checkpoint.items[i].id);
            assert_int_equal(a->u.lease_checkpoint.items[i].remaining_ttl,
                             b->u.lease_checkpoint.items[i].remaining_ttl);
        }
        break;
    case STORE_CMD_ALARM:
        assert_int_equal(a->u.alarm.action, b->u.alarm.action);
        assert_int_equal(a->u.alarm.alarm, b->u.alarm.alarm);
        break;
    case STORE_CMD_TREE_CREATE:
        assert_bytes(a->u.tree_create.path, a->u.tree_create.path_len, b->u.tree_create.path,
                     b->u.tree_create.path_len);
        assert_bytes(a->u.tree_create.value, a->u.tree_create.value_len, b->u.tree_create.value,
                     b->u.tree_create.value_len);
        assert_int_equal(a->u.tree_create.lease, b->u.tree_create.lease);
        assert_int_equal(a->u.tree_create.make_parents, b->u.tree_create.make_parents);
        assert_int_equal(a->u.tree_create.sequential, b->u.tree_create.sequential);
        break;
    case STORE_CMD_TREE_MULTI:
        assert_int_equal(a->u.tree_multi.guards_count, b->u.tree_multi.guards_count);
        for (size_t i = 0; i < a->u.tree_multi.guards_count; i++) {
            assert_compare_equal(&a->u.tree_multi.guards[i], &b->u.tree_multi.guards[i]);
        }
        assert_int_equal(a->u.tree_multi.ops_count, b->u.tree_multi.ops_count);
        for (size_t i = 0; i < a->u.tree_multi.ops_count; i++) {
            const struct store_tree_op *x = &a->u.tree_multi.ops[i], *y = &b->u.tree_multi.ops[i];
            assert_int_equal(x->type, y->type);
            assert_bytes(x->path, x->path_len, y->path, y->path_len);
            assert_bytes(x->value, x->value_len, y->value, y->value_len);
            assert_int_equal(x->lease, y->lease);
            assert_int_equal(x->expected_version, y->expected_version);
            assert_int_equal(x->make_parents, y->make_parents);
            assert_int_equal(x->sequential, y->sequential);
            assert_int_equal(x->recursive, y->recursive);
            assert_int_equal(x->absent, y->absent);
        }
        break;
    default:
        assert_int_equal(a->type, STORE_CMD_TREE_DELETE);
        assert_bytes(a->u.tree_delete.path, a->u.tree_delete.path_len, b->u.tree_delete.path,
                     b->u.tree_delete.path_len);
        assert_int_equal(a->u.tree_delete.recursive, b->u.tree_delete.recursive);
        assert_int_equal(a->u.tree_delete.expected_version, b->u.tree_delete.expected_version);
        break;
    }
}

/* Encodes c, decodes it back, compares field by field. */
static void round_trip(const struct store_cmd *c)
{
    struct latch_arena a;
    struct store_cmd back;
    size_t len = 0;
    uint8_t *buf = encode(c, &len);

    latch_arena_init(&a, 0);
    assert_int_equal(store_cmd_decode(buf, len, &a, &back), 0);
    assert_cmd_equal(c, &back);
    latch_arena_close(&a);
    free(buf);
}

/* A txn exercising every op and compare field: a compare per target, a range with every
 * field set, a put with every flag, a delete-range, and (when inner is not NULL) a nested
 * txn in the failure branch. */
static struct store_compare g_cmp[6];
static struct store_op g_ops[3];

static struct store_txn_req full_txn(const struct store_txn_req *inner, struct store_op *fail)
{
    for (uint32_t i = 0; i < 6; i++) {
        g_cmp[i] = (struct store_compare){.target = i,
                                          .result = i % 4,
                                          .key = B("ck"),
                                          .key_len = 2,
                                          .number = -(int64_t)i * 1000000007LL};
    }
    g_cmp[3].value = B("value\0with nul");
    g_cmp[3].value_len = 14;
    g_cmp[4].range_end = B("\0");
    g_cmp[4].range_end_len = 1;
    g_cmp[5].range_end = B("cl"); /* FENCE: a queue and its shared marker */
    g_cmp[5].range_end_len = 2;
    g_cmp[5].value = B("r");
    g_cmp[5].value_len = 1;
    g_ops[0].type = STORE_OP_RANGE;
    g_ops[0].u.range = (struct store_range_req){.key = B("a"),
                                                .key_len = 1,
                                                .range_end = B("z"),
                                                .range_end_len = 1,
                                                .limit = 10,
                                                .revision = INT64_MAX,
                                                .sort_order = STORE_SORT_DESCEND,
                                                .sort_target = STORE_SORT_VALUE,
                                                .keys_only = true,
                                                .count_only = true,
                                                .min_mod_revision = 1,
                                                .max_mod_revision = 2,
                                                .min_create_revision = 3,
                                                .max_create_revision = INT64_MIN};
    g_ops[1].type = STORE_OP_PUT;
    g_ops[1].u.put = (struct store_put_req){.key = B("k"),
                                            .key_len = 1,
                                            .value = B(""),
                                            .value_len = 0,
                                            .lease = 0x7fff0000ffff0001LL,
                                            .prev_kv = true,
                                            .ignore_value = true,
                                            .ignore_lease = true};
    g_ops[2].type = STORE_OP_DELETE;
    g_ops[2].u.del = (struct store_delete_req){
        .key = B("d"), .key_len = 1, .range_end = B("e"), .range_end_len = 1, .prev_kv = true};
    struct store_txn_req t = {
        .compares = g_cmp, .compares_count = 6, .success = g_ops, .success_count = 3};
    if (inner != NULL) {
        fail->type = STORE_OP_TXN;
        fail->u.txn = inner;
        t.failure = fail;
        t.failure_count = 1;
    }
    return t;
}

static void test_txn_with_every_op_and_compare_round_trips(void **state)
{
    (void)state;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = full_txn(NULL, NULL);
    round_trip(&c);
}

static void test_empty_txn_round_trips(void **state)
{
    (void)state;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    round_trip(&c);
    assert_int_equal(store_cmd_size(&c), 2 + 12);
}

/* A chain of depth nested txns: level i has a put and, below the last, a txn op. */
struct chain {
    struct store_txn_req t[16];
    struct store_op ops[16][2];
};

static void build_chain(struct chain *ch, size_t depth)
{
    assert_true(depth <= 16);
    for (size_t i = 0; i < depth; i++) {
        ch->ops[i][0].type = STORE_OP_PUT;
        ch->ops[i][0].u.put = (struct store_put_req){
            .key = B("lvl"), .key_len = 3, .value = B("v"), .value_len = 1, .lease = (int64_t)i};
        ch->t[i] = (struct store_txn_req){.success = ch->ops[i], .success_count = 1};
        if (i + 1 < depth) {
            ch->ops[i][1].type = STORE_OP_TXN;
            ch->ops[i][1].u.txn = &ch->t[i + 1];
            ch->t[i].success_count = 2;
        }
    }
}

static void test_nested_txns_round_trip_at_every_depth(void **state)
{
    (void)state;
    struct chain ch;
    for (size_t depth = 1; depth <= STORE_TXN_DEPTH_MAX + 1; depth++) {
        build_chain(&ch, depth);
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn = ch.t[0];
        round_trip(&c);
    }
}

static void test_nested_txn_in_failure_branch_after_siblings_round_trips(void **state)
{
    (void)state;
    struct store_op inner_ops[2] = {{.type = STORE_OP_DELETE}, {.type = STORE_OP_RANGE}};
    inner_ops[0].u.del = (struct store_delete_req){.key = B("x"), .key_len = 1};
    inner_ops[1].u.range = (struct store_range_req){.key = B("y"), .key_len = 1};
    struct store_txn_req inner = {
        .success = inner_ops, .success_count = 1, .failure = inner_ops + 1, .failure_count = 1};
    struct store_op fail;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = full_txn(&inner, &fail);
    round_trip(&c);
}

static void test_too_deep_nesting_is_refused_by_encode(void **state)
{
    (void)state;
    struct chain ch;
    build_chain(&ch, STORE_TXN_DEPTH_MAX + 3);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = ch.t[0];
    uint8_t buf[4096];
    size_t len = 0;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);
}

static void test_every_non_txn_command_round_trips(void **state)
{
    (void)state;
    struct store_lease_checkpoint cps[3] = {{1, 5}, {INT64_MAX, 0}, {-1, INT64_MIN}};
    struct store_cmd c[9];
    memset(c, 0, sizeof(c));
    c[0].type = STORE_CMD_COMPACT;
    c[0].u.compact.revision = 123456789012345LL;
    c[1].type = STORE_CMD_LEASE_GRANT;
    c[1].u.lease_grant.id = 0;
    c[1].u.lease_grant.ttl = STORE_LEASE_TTL_MAX;
    c[2].type = STORE_CMD_LEASE_REVOKE;
    c[2].u.lease_revoke.id = -7;
    c[3].type = STORE_CMD_LEASE_CHECKPOINT;
    c[3].u.lease_checkpoint.items = cps;
    c[3].u.lease_checkpoint.count = 3;
    c[4].type = STORE_CMD_ALARM;
    c[4].u.alarm.action = STORE_ALARM_DEACTIVATE;
    c[4].u.alarm.alarm = STORE_ALARM_NOSPACE;
    c[5].type = STORE_CMD_TREE_CREATE;
    c[5].u.tree_create.path = B("/a/b");
    c[5].u.tree_create.path_len = 4;
    c[5].u.tree_create.value = B("val");
    c[5].u.tree_create.value_len = 3;
    c[5].u.tree_create.lease = 99;
    c[5].u.tree_create.make_parents = true;
    c[5].u.tree_create.sequential = true;
    c[6].type = STORE_CMD_TREE_DELETE;
    c[6].u.tree_delete.path = B("/a");
    c[6].u.tree_delete.path_len = 2;
    c[6].u.tree_delete.recursive = true;
    c[6].u.tree_delete.expected_version = 4;
    c[7].type = STORE_CMD_LEASE_CHECKPOINT; /* no items */
    c[8].type = STORE_CMD_TREE_CREATE;      /* empty value, no flags */
    c[8].u.tree_create.path = B("/");
    c[8].u.tree_create.path_len = 1;
    for (size_t i = 0; i < 9; i++) {
        round_trip(&c[i]);
    }
}

static void assert_truncations_fail(const struct store_cmd *c);

/* A TREE_MULTI with a fence guard and every op kind and flag. */
static struct store_cmd multi_cmd(struct store_compare *g, struct store_tree_op *ops)
{
    *g = (struct store_compare){.target = STORE_CMP_FENCE,
                                .result = STORE_CMP_EQUAL,
                                .key = B("q/"),
                                .key_len = 2,
                                .range_end = B("q0"),
                                .range_end_len = 2,
                                .number = 42,
                                .value = B("r"),
                                .value_len = 1};
    ops[0] = (struct store_tree_op){.type = STORE_TREE_OP_CREATE,
                                    .path = B("/a/x-"),
                                    .path_len = 5,
                                    .value = B("v"),
                                    .value_len = 1,
                                    .lease = 5,
                                    .make_parents = true,
                                    .sequential = true};
    ops[1] = (struct store_tree_op){
        .type = STORE_TREE_OP_SET, .path = B("/a"), .path_len = 2, .expected_version = 3};
    ops[2] = (struct store_tree_op){
        .type = STORE_TREE_OP_DELETE, .path = B("/b"), .path_len = 2, .recursive = true};
    ops[3] = (struct store_tree_op){
        .type = STORE_TREE_OP_CHECK, .path = B("/c"), .path_len = 2, .absent = true};
    struct store_cmd c = {.type = STORE_CMD_TREE_MULTI};
    c.u.tree_multi.guards = g;
    c.u.tree_multi.guards_count = 1;
    c.u.tree_multi.ops = ops;
    c.u.tree_multi.ops_count = 4;
    return c;
}

static void test_tree_multi_round_trips_and_truncations_fail(void **state)
{
    (void)state;
    struct store_compare g;
    struct store_tree_op ops[4];
    struct store_cmd c = multi_cmd(&g, ops);
    round_trip(&c);
    assert_truncations_fail(&c);
    c.u.tree_multi.guards_count = 0; /* no guard, no op */
    c.u.tree_multi.ops_count = 0;
    round_trip(&c);
    c = multi_cmd(&g, ops);
    ops[1].type = 9; /* an unknown op type is not encoded */
    uint8_t buf[256];
    size_t len;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);
}

static void test_decoded_byte_strings_point_into_the_buffer(void **state)
{
    (void)state;
    struct store_cmd c = {.type = STORE_CMD_TREE_DELETE};
    c.u.tree_delete.path = B("/p");
    c.u.tree_delete.path_len = 2;
    size_t len = 0;
    uint8_t *buf = encode(&c, &len);
    struct latch_arena a;
    struct store_cmd back;
    latch_arena_init(&a, 0);
    assert_int_equal(store_cmd_decode(buf, len, &a, &back), 0);
    assert_true(back.u.tree_delete.path >= buf && back.u.tree_delete.path + 2 <= buf + len);
    latch_arena_close(&a);
    free(buf);
}

static void test_encode_refuses_unknown_type_and_small_buffer(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = 0;
    struct store_cmd bad = {.type = 99};
    assert_int_equal(store_cmd_encode(&bad, buf, sizeof(buf), &len), LATCH_EINVAL);
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    size_t size = store_cmd_size(&c);
    assert_int_equal(size, 2 + 16);
    assert_int_equal(store_cmd_encode(&c, buf, size - 1, &len), LATCH_ETOOBIG);
    assert_int_equal(store_cmd_encode(&c, buf, size, &len), 0);
    assert_int_equal(len, size);
}

static void test_encode_refuses_unknown_enums(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = 0;
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = 3;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);

    struct store_op op = {.type = 9};
    c = (struct store_cmd){.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);

    op = (struct store_op){.type = STORE_OP_RANGE};
    op.u.range.sort_target = 5;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);

    struct store_compare cmp = {.target = STORE_CMP_FENCE + 1};
    c = (struct store_cmd){.type = STORE_CMD_TXN};
    c.u.txn.compares = &cmp;
    c.u.txn.compares_count = 1;
    assert_int_equal(store_cmd_encode(&c, buf, sizeof(buf), &len), LATCH_EINVAL);
}

/* Every proper prefix of a valid encoding is refused, and so is one trailing byte. */
static void assert_truncations_fail(const struct store_cmd *c)
{
    struct latch_arena a;
    struct store_cmd back;
    size_t len = 0;
    uint8_t *buf = encode(c, &len);

    latch_arena_init(&a, 0);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        uint8_t *cut = malloc(n > 0 ? n : 1);
        assert_non_null(cut);
        memcpy(cut, buf, n);
        assert_int_equal(store_cmd_decode(cut, n, &a, &back), LATCH_EINVAL);
        free(cut);
        latch_arena_reset(&a);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(store_cmd_decode(longer, len + 1, &a, &back), LATCH_EINVAL);
    free(longer);
    latch_arena_close(&a);
    free(buf);
}

static void test_every_truncation_fails_with_einval(void **state)
{
    (void)state;
    struct chain ch;
    build_chain(&ch, 4);
    struct store_op fail = {.type = STORE_OP_TXN, .u.txn = &ch.t[0]};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = full_txn(&ch.t[0], &fail);
    assert_truncations_fail(&c);

    struct store_lease_checkpoint cps[2] = {{1, 5}, {2, 6}};
    c = (struct store_cmd){.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = cps;
    c.u.lease_checkpoint.count = 2;
    assert_truncations_fail(&c);

    c = (struct store_cmd){.type = STORE_CMD_TREE_CREATE};
    c.u.tree_create.path = B("/x/y");
    c.u.tree_create.path_len = 4;
    c.u.tree_create.value = B("vv");
    c.u.tree_create.value_len = 2;
    assert_truncations_fail(&c);

    c = (struct store_cmd){.type = STORE_CMD_TREE_DELETE};
    c.u.tree_delete.path = B("/x");
    c.u.tree_delete.path_len = 2;
    assert_truncations_fail(&c);

    c = (struct store_cmd){.type = STORE_CMD_ALARM};
    c.u.alarm.action = STORE_ALARM_ACTIVATE;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    assert_truncations_fail(&c);
}

static int decode_bytes(const uint8_t *bytes, size_t n)
{
    struct latch_arena a;
    struct store_cmd back;
    latch_arena_init(&a, 0);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, bytes, n);
    int rc = store_cmd_decode(copy, n, &a, &back);
    free(copy);
    latch_arena_close(&a);
    return rc;
}

/* Entries of format version 1 (before `sequential`) still decode: a TREE_CREATE ends after
 * make_parents and is not sequential; the same bytes as version 2 lack a byte. */
static void test_version_1_tree_create_still_decodes(void **state)
{
    (void)state;
    uint8_t v1[] = {
        1, STORE_CMD_TREE_CREATE, 2, 0, 0, 0, '/', 'a', 1, 0, 0, 0, 'v', 7, 0, 0, 0, 0, 0, 0, 0, 1};
    struct latch_arena a;
    struct store_cmd back;
    latch_arena_init(&a, 0);
    assert_int_equal(store_cmd_decode(v1, sizeof(v1), &a, &back), 0);
    assert_int_equal(back.type, STORE_CMD_TREE_CREATE);
    assert_bytes(back.u.tree_create.path, back.u.tree_create.path_len, B("/a"), 2);
    assert_int_equal(back.u.tree_create.lease, 7);
    assert_true(back.u.tree_create.make_parents);
    assert_false(back.u.tree_create.sequential);
    latch_arena_close(&a);
    v1[0] = 2;
    assert_int_equal(decode_bytes(v1, sizeof(v1)), LATCH_EINVAL);
}

static void test_unknown_version_type_and_enum_bytes_are_refused(void **state)
{
    (void)state;
    const uint8_t wrong_version[] = {3, STORE_CMD_COMPACT, 1, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t version_zero[] = {0, STORE_CMD_COMPACT, 1, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t wrong_type[] = {1, 9, 1, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t zero_type[] = {1, 0};
    const uint8_t good[] = {1, STORE_CMD_COMPACT, 1, 0, 0, 0, 0, 0, 0, 0};
    /* A txn with one op of type 5. */
    const uint8_t bad_op[] = {1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    /* A tree delete whose boolean is 2. */
    const uint8_t bad_bool[] = {1, 8, 1, 0, 0, 0, '/', 2, 0, 0, 0, 0, 0, 0, 0, 0};
    /* An alarm with kind 2. */
    const uint8_t bad_alarm[] = {1, 6, 1, 0, 0, 0, 2, 0, 0, 0};
    assert_int_equal(decode_bytes(good, sizeof(good)), 0);
    assert_int_equal(decode_bytes(wrong_version, sizeof(wrong_version)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(version_zero, sizeof(version_zero)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(wrong_type, sizeof(wrong_type)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(zero_type, sizeof(zero_type)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(bad_op, sizeof(bad_op)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(bad_bool, sizeof(bad_bool)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(bad_alarm, sizeof(bad_alarm)), LATCH_EINVAL);
}

static void test_huge_counts_and_lengths_are_refused_before_allocating(void **state)
{
    (void)state;
    /* A txn claiming 4 billion compares in 14 bytes. */
    const uint8_t many_compares[] = {1, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
    /* A checkpoint claiming 2^32-1 items. */
    const uint8_t many_items[] = {1, 5, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
    /* A tree delete whose path claims 4 GiB. */
    const uint8_t long_path[] = {1, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(many_compares, sizeof(many_compares)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(many_items, sizeof(many_items)), LATCH_EINVAL);
    assert_int_equal(decode_bytes(long_path, sizeof(long_path)), LATCH_EINVAL);
}

static void test_nesting_deeper_than_the_decoder_accepts_is_refused(void **state)
{
    (void)state;
    /* Hand-made: 40 levels of "txn with one success op that is a txn". */
    uint8_t buf[2 + 40 * 13 + 12];
    size_t n = 0;
    buf[n++] = 1;
    buf[n++] = STORE_CMD_TXN;
    for (int i = 0; i < 40; i++) {
        const uint8_t head[13] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, STORE_OP_TXN};
        memcpy(buf + n, head, 13);
        n += 13;
    }
    memset(buf + n, 0, 12);
    n += 12;
    assert_int_equal(decode_bytes(buf, n), LATCH_EINVAL);
}

/* xorshift64*: deterministic damage so a failure can be replayed. */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

static void test_random_byte_damage_never_reads_outside_the_buffer(void **state)
{
    (void)state;
    struct chain ch;
    build_chain(&ch, 3);
    struct store_op fail = {.type = STORE_OP_TXN, .u.txn = &ch.t[0]};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = full_txn(&ch.t[0], &fail);
    size_t len = 0;
    uint8_t *orig = encode(&c, &len);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int ok = 0, refused = 0;
    for (int round = 0; round < 5000; round++) {
        memcpy(buf, orig, len);
        int flips = 1 + (int)(rng_next(&x) % 4);
        for (int i = 0; i < flips; i++) {
            buf[rng_next(&x) % len] ^= (uint8_t)(1u << (rng_next(&x) % 8));
        }
        size_t n = round % 3 == 0 ? (size_t)(rng_next(&x) % (len + 1)) : len;
        struct store_cmd back;
        int rc = store_cmd_decode(buf, n, &a, &back);
        assert_true(rc == 0 || rc == LATCH_EINVAL);
        if (rc == 0) {
            ok++;
            /* Whatever decodes re-encodes to the same bytes. */
            size_t size = store_cmd_size(&back);
            uint8_t *again = malloc(size);
            size_t len2 = 0;
            assert_non_null(again);
            assert_int_equal(store_cmd_encode(&back, again, size, &len2), 0);
            assert_int_equal(len2, n);
            assert_memory_equal(again, buf, n);
            free(again);
        } else {
            refused++;
        }
        latch_arena_reset(&a);
    }
    assert_int_equal(ok + refused, 5000);
    assert_true(refused > 0);
    latch_arena_close(&a);
    free(buf);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txn_with_every_op_and_compare_round_trips),
        cmocka_unit_test(test_empty_txn_round_trips),
        cmocka_unit_test(test_nested_txns_round_trip_at_every_depth),
        cmocka_unit_test(test_nested_txn_in_failure_branch_after_siblings_round_trips),
        cmocka_unit_test(test_too_deep_nesting_is_refused_by_encode),
        cmocka_unit_test(test_every_non_txn_command_round_trips),
        cmocka_unit_test(test_tree_multi_round_trips_and_truncations_fail),
        cmocka_unit_test(test_decoded_byte_strings_point_into_the_buffer),
        cmocka_unit_test(test_encode_refuses_unknown_type_and_small_buffer),
        cmocka_unit_test(test_encode_refuses_unknown_enums),
        cmocka_unit_test(test_every_truncation_fails_with_einval),
        cmocka_unit_test(test_unknown_version_type_and_enum_bytes_are_refused),
        cmocka_unit_test(test_version_1_tree_create_still_decodes),
        cmocka_unit_test(test_huge_counts_and_lengths_are_refused_before_allocating),
        cmocka_unit_test(test_nesting_deeper_than_the_decoder_accepts_is_refused),
        cmocka_unit_test(test_random_byte_damage_never_reads_outside_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
