/*
 * test_space.c — space accounting and the NOSPACE rules (issue 3 item 7): store_space
 * measures pages in use against the file's high-water mark; compaction hands pages back to
 * LMDB's free list without shrinking the file; the quota flag; the replicated NOSPACE
 * alarm (puts and grants fail, reads, deletes and compaction work); the map growing on
 * demand, and a write past the map's maximum failing as a batch without losing anything.
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
#include "store_fixture.h"

#define MIB ((uint64_t)1024 * 1024)

static struct store_space space(struct fx *f)
{
    struct store_space sp;
    assert_int_equal(store_space(f->r, &sp), 0);
    assert_true(sp.in_use_bytes <= sp.file_bytes);
    return sp;
}

/* A value of len bytes derived from seed, NUL-terminated (malloc'ed). */
static char *value_make(size_t len, unsigned seed)
{
    char *v = malloc(len + 1);
    assert_non_null(v);
    for (size_t i = 0; i < len; i++) {
        v[i] = (char)('a' + (seed + i * 7) % 26);
    }
    v[len] = '\0';
    return v;
}

/* Puts keys key/<i> for i in [lo, hi) with values of value_len bytes. */
static void put_many(struct fx *f, unsigned lo, unsigned hi, size_t value_len)
{
    for (unsigned i = lo; i < hi; i++) {
        char key[32];
        char *v = value_make(value_len, i);
        snprintf(key, sizeof(key), "key/%06u", i);
        assert_int_equal(fx_put(f, key, v, 0), 0);
        free(v);
    }
}

/* Deletes every key under "key/" in one command. */
static void delete_all(struct fx *f)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del.key = (const uint8_t *)"key/";
    op.u.del.key_len = 4;
    op.u.del.range_end = (const uint8_t *)"key0";
    op.u.del.range_end_len = 4;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

static int compact(struct fx *f, int64_t rev)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = rev;
    return fx_apply(f, &c, NULL);
}

static int alarm_set(struct fx *f, uint32_t action)
{
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = action;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    return fx_apply(f, &c, NULL);
}

/* Applies a put of key with a value_len-byte value as index f->next_index, returning
 * store_apply's own result (the batch's), unlike fx_apply which requires success. */
static int apply_put_raw(struct fx *f, const char *key, size_t value_len, unsigned seed)
{
    char *v = value_make(value_len, seed);
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = (const uint8_t *)key;
    op.u.put.key_len = (uint32_t)strlen(key);
    op.u.put.value = (const uint8_t *)v;
    op.u.put.value_len = (uint32_t)value_len;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    size_t size = store_cmd_size(&c);
    uint8_t *buf = malloc(size);
    size_t len = 0;
    assert_non_null(buf);
    assert_int_equal(store_cmd_encode(&c, buf, size, &len), 0);
    struct store_apply_item item = {.index = f->next_index,
                                    .term = 1,
                                    .kind = STORE_ITEM_CMD,
                                    .len = (uint32_t)len,
                                    .data = buf};
    struct store_result res;
    latch_arena_reset(&f->arena);
    int rc = store_apply(f->s, &item, 1, &f->arena, &res);
    if (rc == 0) {
        assert_int_equal(res.err, 0);
        f->next_index++;
    }
    free(buf);
    free(v);
    return rc;
}

/* key holds the value value_make(value_len, seed). */
static void value_check(struct fx *f, const char *key, size_t value_len, unsigned seed)
{
    char *want = value_make(value_len, seed);
    char *got = malloc(value_len + 2);
    assert_non_null(got);
    assert_int_equal(fx_get(f, key, got, value_len + 2, NULL), 0);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void test_space_in_use_grows_with_puts(void **state)
{
    (void)state;
    struct fx f;

    fx_setup(&f);
    struct store_space before = space(&f);
    assert_true(before.in_use_bytes > 0);
    assert_true(before.raft_file_bytes > 0);
    assert_int_equal(before.quota_bytes, f.opt.quota_bytes);
    assert_false(before.over_quota);

    put_many(&f, 0, 1000, 500); /* ~0.5 MB of values, kept in kv and in hist */
    struct store_space after = space(&f);
    assert_true(after.in_use_bytes >= before.in_use_bytes + 2 * 1000 * 500);
    assert_true(after.file_bytes >= after.in_use_bytes);
    assert_false(after.over_quota);
    fx_teardown(&f);
}

static void test_space_compaction_frees_pages_without_shrinking_file(void **state)
{
    (void)state;
    struct fx f;

    fx_setup(&f);
    put_many(&f, 0, 2000, 1000);
    struct store_space full = space(&f);
    delete_all(&f);
    assert_int_equal(fx_put(&f, "other", "x", 0), 0); /* the deletes fall below the rev */
    assert_int_equal(compact(&f, fx_rev(&f)), 0);
    struct store_space compacted = space(&f);

    /* The values were ~4 MB (kv + hist); all of it is on the free list now. */
    assert_true(compacted.in_use_bytes < full.in_use_bytes / 4);
    assert_true(compacted.file_bytes >= full.file_bytes);

    /* Writing the same amount again reuses the freed pages instead of growing the file. */
    put_many(&f, 0, 2000, 1000);
    struct store_space again = space(&f);
    assert_true(again.in_use_bytes > full.in_use_bytes / 2);
    assert_true(again.file_bytes <= full.file_bytes + full.file_bytes / 4);
    fx_teardown(&f);
}

static void test_space_over_quota_with_small_quota(void **state)
{
    (void)state;
    struct fx f;

    fx_setup(&f);
    f.opt.quota_bytes = 256 * 1024;
    fx_reopen(&f);
    struct store_space sp = space(&f);
    assert_int_equal(sp.quota_bytes, 256 * 1024);
    assert_false(sp.over_quota);

    put_many(&f, 0, 300, 1000); /* ~600 KB in kv + hist */
    sp = space(&f);
    assert_true(sp.in_use_bytes > sp.quota_bytes);
    assert_true(sp.over_quota);
    fx_teardown(&f);
}

/* Lease grant and a txn with a put, both of which must fail under the alarm. */
static void expect_growing_commands_refused(struct fx *f)
{
    struct store_cmd grant = {.type = STORE_CMD_LEASE_GRANT};
    grant.u.lease_grant.ttl = 10;
    assert_int_equal(fx_apply(f, &grant, NULL), LATCH_ENOSPACE);

    struct store_compare cmp = {.target = STORE_CMP_VERSION,
                                .result = STORE_CMP_GREATER,
                                .key = (const uint8_t *)"key/000001",
                                .key_len = 10};
    struct store_op put = {.type = STORE_OP_PUT};
    put.u.put.key = (const uint8_t *)"txnkey";
    put.u.put.key_len = 6;
    put.u.put.value = (const uint8_t *)"v";
    put.u.put.value_len = 1;
    struct store_cmd txn = {.type = STORE_CMD_TXN};
    txn.u.txn.compares = &cmp;
    txn.u.txn.compares_count = 1;
    txn.u.txn.success = &put;
    txn.u.txn.success_count = 1;
    assert_int_equal(fx_apply(f, &txn, NULL), LATCH_ENOSPACE);
    assert_int_equal(fx_get(f, "txnkey", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_nospace_alarm_refuses_puts_and_keeps_reads_deletes_compaction(void **state)
{
    (void)state;
    struct fx f;
    struct store_status st;
    char buf[64];

    fx_setup(&f);
    put_many(&f, 0, 10, 20);
    assert_int_equal(alarm_set(&f, STORE_ALARM_ACTIVATE), 0);
    assert_int_equal(store_status(f.r, &st), 0);
    assert_true(st.alarm_nospace);
    int64_t rev = fx_rev(&f);

    assert_int_equal(fx_put(&f, "new", "v", 0), LATCH_ENOSPACE);
    assert_int_equal(fx_put(&f, "key/000001", "v", 0), LATCH_ENOSPACE);
    expect_growing_commands_refused(&f);
    assert_int_equal(fx_rev(&f), rev); /* refused commands wrote nothing */
    assert_int_equal(fx_get(&f, "new", NULL, 0, NULL), LATCH_ENOTFOUND);

    assert_int_equal(fx_get(&f, "key/000001", buf, sizeof(buf), NULL), 0); /* range */
    assert_int_equal(fx_del(&f, "key/000002"), 0);
    assert_int_equal(fx_get(&f, "key/000002", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(compact(&f, fx_rev(&f)), 0);
    assert_int_equal(store_status(f.r, &st), 0);
    assert_int_equal(st.compact_revision, rev + 1);

    assert_int_equal(alarm_set(&f, STORE_ALARM_DEACTIVATE), 0);
    assert_int_equal(store_status(f.r, &st), 0);
    assert_false(st.alarm_nospace);
    assert_int_equal(fx_put(&f, "new", "v", 0), 0);
    assert_int_equal(fx_get(&f, "new", buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "v");
    fx_teardown(&f);
}

static void test_nospace_alarm_survives_reopen(void **state)
{
    (void)state;
    struct fx f;

    fx_setup(&f);
    assert_int_equal(alarm_set(&f, STORE_ALARM_ACTIVATE), 0);
    fx_reopen(&f);
    assert_int_equal(fx_put(&f, "k", "v", 0), LATCH_ENOSPACE);
    fx_teardown(&f);
}

static void test_map_grows_on_demand_from_one_mib(void **state)
{
    (void)state;
    struct fx f;
    char key[32];

    fx_setup(&f);
    f.opt.map_bytes_initial = 1 * MIB;
    fx_reopen(&f);
    for (unsigned i = 0; i < 320; i++) { /* 20 MiB of values */
        snprintf(key, sizeof(key), "big/%04u", i);
        assert_int_equal(apply_put_raw(&f, key, 64 * 1024, i), 0);
    }
    assert_int_equal(store_failed(f.s), 0);
    assert_true(space(&f).file_bytes > 20 * MIB);
    fx_reopen(&f);
    for (unsigned i = 0; i < 320; i += 31) {
        snprintf(key, sizeof(key), "big/%04u", i);
        value_check(&f, key, 64 * 1024, i);
    }
    fx_teardown(&f);
}

static void test_map_full_at_max_fails_batch_and_loses_nothing(void **state)
{
    (void)state;
    struct fx f;
    struct store_status st;
    char key[32];
    unsigned n = 0;
    int rc;

    fx_setup(&f);
    f.opt.map_bytes_initial = 1 * MIB;
    f.opt.map_bytes_max = 4 * MIB;
    fx_reopen(&f);
    for (;;) {
        snprintf(key, sizeof(key), "big/%04u", n);
        rc = apply_put_raw(&f, key, 32 * 1024, n);
        if (rc != 0) {
            break;
        }
        n++;
        assert_true(n < 1000); /* 4 MiB cannot hold 32 MB */
    }
    assert_int_equal(rc, LATCH_ENOSPACE);
    assert_true(n > 10);
    assert_int_equal(store_failed(f.s), 0); /* not an I/O failure: no ERROR state */
    assert_int_equal(store_status(f.r, &st), 0);
    assert_int_equal(st.applied_index, f.next_index - 1);
    snprintf(key, sizeof(key), "big/%04u", n);
    assert_int_equal(fx_get(&f, key, NULL, 0, NULL), LATCH_ENOTFOUND);

    fx_reopen(&f);
    assert_int_equal(store_status(f.r, &st), 0);
    assert_int_equal(st.applied_index, f.next_index - 1);
    assert_int_equal(st.keys_count, n);
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "big/%04u", i);
        value_check(&f, key, 32 * 1024, i);
    }
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_in_use_grows_with_puts),
        cmocka_unit_test(test_space_compaction_frees_pages_without_shrinking_file),
        cmocka_unit_test(test_space_over_quota_with_small_quota),
        cmocka_unit_test(test_nospace_alarm_refuses_puts_and_keeps_reads_deletes_compaction),
        cmocka_unit_test(test_nospace_alarm_survives_reopen),
        cmocka_unit_test(test_map_grows_on_demand_from_one_mib),
        cmocka_unit_test(test_map_full_at_max_fails_batch_and_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
