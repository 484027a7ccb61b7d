/*
 * test_reader.c — readers: a pinned reader sees one snapshot across calls (what a server
 * loop turn relies on), header revisions never run ahead of the data, unpinning moves on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store_fixture.h"

static int setup(void **state)
{
    static struct fx f;
    fx_setup(&f);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx_teardown(*state);
    return 0;
}

/* Value and header revision of key through reader r (arena a). */
static int64_t
get_with_rev(struct store_reader *r, struct latch_arena *a, const char *key, char *buf, size_t cap)
{
    struct store_range_req q = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    struct store_range_result out;
    int64_t hdr = 0;
    assert_int_equal(store_range(r, &q, a, &out, &hdr), 0);
    buf[0] = '\0';
    if (out.kvs_count == 1) {
        size_t n = out.kvs[0].value_len < cap - 1 ? out.kvs[0].value_len : cap - 1;
        memcpy(buf, out.kvs[0].value, n);
        buf[n] = '\0';
    }
    return hdr;
}

static void test_pinned_reader_sees_one_snapshot_until_unpinned(void **state)
{
    struct fx *f = *state;
    struct store_reader *r;
    struct latch_arena a;
    char v[16];

    latch_arena_init(&a, 0);
    assert_int_equal(store_reader_new(f->s, &r), 0);
    assert_int_equal(fx_put(f, "k", "1", 0), 0); /* rev 2 */
    assert_int_equal(store_reader_pin(r), 0);
    assert_int_equal(get_with_rev(r, &a, "k", v, sizeof(v)), 2);
    assert_string_equal(v, "1");
    assert_int_equal(fx_put(f, "k", "2", 0), 0); /* rev 3, published by store_apply */
    assert_int_equal(get_with_rev(r, &a, "k", v, sizeof(v)), 2);
    assert_string_equal(v, "1");
    struct store_status st;
    assert_int_equal(store_status(r, &st), 0);
    assert_int_equal(st.revision, 2);
    store_reader_unpin(r);
    assert_int_equal(get_with_rev(r, &a, "k", v, sizeof(v)), 3);
    assert_string_equal(v, "2");
    store_reader_unpin(r); /* not pinned: no-op */
    store_reader_free(r);
    latch_arena_close(&a);
}

static void test_pin_is_not_nestable_and_free_unpins(void **state)
{
    struct fx *f = *state;
    struct store_reader *r;

    assert_int_equal(store_reader_new(f->s, &r), 0);
    assert_int_equal(store_reader_pin(r), 0);
    assert_int_equal(store_reader_pin(r), LATCH_ESTATE);
    store_reader_free(r); /* releases the pin and its lock */
    assert_int_equal(fx_put(f, "k", "v", 0), 0);
    assert_int_equal(fx_rev(f), 2);
}

/* The header revision of a read comes from the snapshot read, never from a newer commit,
 * also when the published revision belongs to a later transaction. */
static void test_header_revision_matches_the_data_read(void **state)
{
    struct fx *f = *state;
    struct latch_arena a;
    char v[16];
    char want[16];

    latch_arena_init(&a, 0);
    for (int i = 1; i <= 50; i++) {
        snprintf(want, sizeof(want), "%d", i);
        assert_int_equal(fx_put(f, "k", want, 0), 0);
        assert_int_equal(get_with_rev(f->r, &a, "k", v, sizeof(v)), i + 1);
        assert_string_equal(v, want);
        latch_arena_reset(&a);
    }
    fx_reopen(f); /* nothing published yet: the revision comes from meta */
    assert_int_equal(get_with_rev(f->r, &a, "k", v, sizeof(v)), 51);
    latch_arena_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pinned_reader_sees_one_snapshot_until_unpinned, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pin_is_not_nestable_and_free_unpins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_revision_matches_the_data_read, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
