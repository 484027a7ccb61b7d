/*
 * test_hist.c — clients/latch_hist: bucket boundaries, percentiles within the promised
 * relative error, merge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "latch_hist.h"

static void test_hist_buckets_are_contiguous_and_hold_their_values(void **state)
{
    (void)state;
    uint64_t next = 0;
    for (unsigned b = 0; b < LATCH_HIST_BUCKETS; b++) {
        uint64_t lo = latch_hist_bucket_low(b);
        uint64_t hi = latch_hist_bucket_high(b);
        assert_int_equal(lo, next);
        assert_true(hi >= lo);
        assert_int_equal(latch_hist_bucket_of(lo), b);
        assert_int_equal(latch_hist_bucket_of(hi), b);
        /* width at most 1/64 of the low end (exact below 128) */
        if (lo >= LATCH_HIST_EXACT) {
            assert_true(hi - lo + 1 <= lo / 64);
        } else {
            assert_int_equal(hi, lo);
        }
        next = hi + 1;
    }
    assert_int_equal(latch_hist_bucket_high(LATCH_HIST_BUCKETS - 1), UINT64_MAX);
    assert_int_equal(latch_hist_bucket_of(UINT64_MAX), LATCH_HIST_BUCKETS - 1);
}

static void test_hist_empty_reports_zero(void **state)
{
    (void)state;
    struct latch_hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    latch_hist_init(h);
    assert_int_equal(latch_hist_percentile(h, 50), 0);
    assert_true(latch_hist_mean(h) == 0.0);
    free(h);
}

static void test_hist_percentiles_of_1_to_100000_are_within_one_percent(void **state)
{
    (void)state;
    struct latch_hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    latch_hist_init(h);
    for (uint64_t v = 100000; v >= 1; v--) { /* order must not matter */
        latch_hist_record(h, v);
    }
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    assert_true(latch_hist_mean(h) == 50000.5);
    static const double pcts[] = {1, 50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        double exact = pcts[i] * 1000.0; /* the ceil(pct% * 100000)-th value */
        double got = (double)latch_hist_percentile(h, pcts[i]);
        assert_true(got >= exact * 0.99 && got <= exact * 1.01);
    }
    assert_int_equal(latch_hist_percentile(h, 100), 100000);
    assert_int_equal(latch_hist_percentile(h, 0.0001), 1);
    free(h);
}

static void test_hist_one_value_is_reported_exactly(void **state)
{
    (void)state;
    struct latch_hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    latch_hist_init(h);
    latch_hist_record(h, 1234567);
    assert_int_equal(latch_hist_percentile(h, 50), 1234567);
    assert_int_equal(latch_hist_percentile(h, 99.9), 1234567);
    free(h);
}

static void test_hist_merge_adds_counts_and_extremes(void **state)
{
    (void)state;
    struct latch_hist *a = malloc(sizeof(*a));
    struct latch_hist *b = malloc(sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    latch_hist_init(a);
    latch_hist_init(b);
    for (uint64_t v = 0; v < 1000; v++) {
        latch_hist_record(a, 1000);
        latch_hist_record(b, 5000000);
    }
    latch_hist_merge(a, b);
    assert_int_equal(a->count, 2000);
    assert_int_equal(a->min, 1000);
    assert_int_equal(a->max, 5000000);
    uint64_t p50 = latch_hist_percentile(a, 50);
    assert_true(p50 >= 1000 && p50 <= 1010);
    uint64_t p99 = latch_hist_percentile(a, 99);
    assert_true(p99 >= 4950000 && p99 <= 5000000);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets_are_contiguous_and_hold_their_values),
        cmocka_unit_test(test_hist_empty_reports_zero),
        cmocka_unit_test(test_hist_percentiles_of_1_to_100000_are_within_one_percent),
        cmocka_unit_test(test_hist_one_value_is_reported_exactly),
        cmocka_unit_test(test_hist_merge_adds_counts_and_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
