/*
 * test_common.c — the shared pieces of common/: the error table, assertions and the log hook.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_crc32c.h"
#include "latch_error.h"
#include "latch_log.h"
#include "latch_teeth.h"

/* ---- errors ---------------------------------------------------------------------------- */

struct error_row {
    int code;
    const char *name;
    const char *text;
};

static const struct error_row error_rows[] = {
#define ERROR_ROW(name, value, text) {name, #name, text},
    LATCH_ERROR_MAP(ERROR_ROW)
#undef ERROR_ROW
};

#define ERROR_ROWS_COUNT (sizeof(error_rows) / sizeof(error_rows[0]))

static void test_error_every_code_has_its_name_and_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < ERROR_ROWS_COUNT; i++) {
        assert_true(error_rows[i].code < 0);
        assert_string_equal(latch_error_name(error_rows[i].code), error_rows[i].name);
        assert_string_equal(latch_strerror(error_rows[i].code), error_rows[i].text);
    }
}

static void test_error_codes_are_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < ERROR_ROWS_COUNT; i++) {
        for (size_t j = i + 1; j < ERROR_ROWS_COUNT; j++) {
            assert_int_not_equal(error_rows[i].code, error_rows[j].code);
        }
    }
}

static void test_error_ok_is_success(void **state)
{
    (void)state;
    assert_string_equal(latch_error_name(LATCH_OK), "LATCH_OK");
    assert_string_equal(latch_strerror(LATCH_OK), "success");
    assert_false(latch_error_is_fatal(LATCH_OK));
}

static void test_error_foreign_code_is_unknown_not_null(void **state)
{
    static const int foreign[] = {1, -1000, INT_MIN, INT_MAX};

    (void)state;
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        assert_string_equal(latch_error_name(foreign[i]), "LATCH_E?");
        assert_string_equal(latch_strerror(foreign[i]), "unknown error");
        assert_false(latch_error_is_fatal(foreign[i]));
    }
}

static void test_error_only_io_and_corruption_are_fatal(void **state)
{
    (void)state;
    for (size_t i = 0; i < ERROR_ROWS_COUNT; i++) {
        int code = error_rows[i].code;
        bool expect = code == LATCH_EIO || code == LATCH_ECORRUPT;

        assert_int_equal(latch_error_is_fatal(code), expect);
    }
}

/* ---- assertions ------------------------------------------------------------------------ */

/* What the recording handler saw; it leaves through handler_jump instead of returning. */
static jmp_buf handler_jump;
static char seen_expr[128];
static char seen_detail[128];
static int seen_line;
static int handler_calls;

static LATCH_NORETURN void
recording_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)file;
    handler_calls++;
    seen_line = line;
    snprintf(seen_expr, sizeof(seen_expr), "%s", expr);
    snprintf(seen_detail, sizeof(seen_detail), "%s", detail);
    longjmp(handler_jump, 1);
}

/* The handler every cmocka test of latch installs: expect_assert_failure() catches it. */
static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static int reset_common(void **state)
{
    (void)state;
    latch_assert_set_handler(NULL);
    latch_log_set_sink(NULL, NULL);
    latch_log_set_level(LATCH_LOG_INFO);
    handler_calls = 0;
    seen_expr[0] = '\0';
    seen_detail[0] = '\0';
    return 0;
}

static void failing_assert(int value)
{
    LATCH_ASSERT(value > 0);
}

static void test_assert_passing_condition_does_not_call_handler(void **state)
{
    (void)state;
    latch_assert_set_handler(recording_handler);
    failing_assert(1);
    LATCH_ASSERTF(2 > 1, "never formatted %d", 2);
    assert_int_equal(handler_calls, 0);
}

static void test_assert_handler_receives_expression(void **state)
{
    volatile int expected_line = 0;

    (void)state;
    latch_assert_set_handler(recording_handler);
    if (setjmp(handler_jump) == 0) {
        expected_line = __LINE__ + 1;
        LATCH_ASSERT(1 + 1 == 3);
        fail_msg("LATCH_ASSERT returned");
    }
    assert_int_equal(handler_calls, 1);
    assert_string_equal(seen_expr, "1 + 1 == 3");
    assert_string_equal(seen_detail, "");
    assert_int_equal(seen_line, expected_line);
}

static void test_assertf_handler_receives_formatted_detail(void **state)
{
    volatile int term = 7;

    (void)state;
    latch_assert_set_handler(recording_handler);
    if (setjmp(handler_jump) == 0) {
        LATCH_ASSERTF(term < 5, "term %d above %d", term, 5);
        fail_msg("LATCH_ASSERTF returned");
    }
    assert_int_equal(handler_calls, 1);
    assert_string_equal(seen_expr, "term < 5");
    assert_string_equal(seen_detail, "term 7 above 5");
}

static void test_assert_unreachable_calls_handler(void **state)
{
    (void)state;
    latch_assert_set_handler(recording_handler);
    if (setjmp(handler_jump) == 0) {
        LATCH_UNREACHABLE();
    }
    assert_int_equal(handler_calls, 1);
    assert_string_equal(seen_expr, "unreachable");
}

static void test_assert_is_caught_by_expect_assert_failure(void **state)
{
    (void)state;
    latch_assert_set_handler(cmocka_handler);
    expect_assert_failure(failing_assert(0));
}

static void test_dassert_follows_debug_checks(void **state)
{
    (void)state;
    latch_assert_set_handler(recording_handler);
    if (setjmp(handler_jump) == 0) {
        LATCH_DASSERT(0 > 1);
    }
#ifdef LATCH_DEBUG_CHECKS
    assert_int_equal(handler_calls, 1);
    assert_string_equal(seen_expr, "0 > 1");
#else
    assert_int_equal(handler_calls, 0);
#endif
}

/* ---- logging --------------------------------------------------------------------------- */

struct captured_log {
    int count;
    enum latch_log_level level;
    char last[256];
};

static void capture_sink(void *data, enum latch_log_level level, const char *msg)
{
    struct captured_log *cap = data;

    cap->count++;
    cap->level = level;
    snprintf(cap->last, sizeof(cap->last), "%s", msg);
}

static int evaluations;

static int counted(int value)
{
    evaluations++;
    return value;
}

static void test_log_sink_receives_formatted_line(void **state)
{
    struct captured_log cap = {0};

    (void)state;
    latch_log_set_sink(capture_sink, &cap);
    latch_log(LATCH_LOG_WARN, "node %d term %u", 3, 9u);
    assert_int_equal(cap.count, 1);
    assert_int_equal(cap.level, LATCH_LOG_WARN);
    assert_string_equal(cap.last, "node 3 term 9");
}

static void test_log_drops_below_level_without_evaluating_arguments(void **state)
{
    struct captured_log cap = {0};

    (void)state;
    evaluations = 0;
    latch_log_set_sink(capture_sink, &cap);
    latch_log_set_level(LATCH_LOG_WARN);
    assert_int_equal(latch_log_get_level(), LATCH_LOG_WARN);
    latch_log(LATCH_LOG_DEBUG, "debug %d", counted(1));
    latch_log(LATCH_LOG_INFO, "info %d", counted(2));
    assert_int_equal(cap.count, 0);
    assert_int_equal(evaluations, 0);
    latch_log(LATCH_LOG_WARN, "warn %d", counted(3));
    latch_log(LATCH_LOG_ERROR, "error %d", counted(4));
    assert_int_equal(cap.count, 2);
    assert_int_equal(evaluations, 2);
    assert_int_equal(cap.level, LATCH_LOG_ERROR);
    assert_string_equal(cap.last, "error 4");
}

static void test_log_limit_lets_one_line_through_per_interval_with_the_count(void **state)
{
    (void)state;
    struct latch_log_limit l = {0};
    size_t n = 0;
    assert_true(latch_log_limit_hit(&l, 0, 1000, &n)); /* the first event always logs */
    assert_int_equal(n, 1);
    assert_false(latch_log_limit_hit(&l, 10, 1000, &n));
    assert_false(latch_log_limit_hit(&l, 999, 1000, &n));
    assert_true(latch_log_limit_hit(&l, 1001, 1000, &n)); /* one interval after the first */
    assert_int_equal(n, 3);
    assert_false(latch_log_limit_hit(&l, 2000, 1000, &n));
    assert_true(latch_log_limit_hit(&l, 5000, 1000, &n));
    assert_int_equal(n, 2);
}

static void test_log_level_off_drops_everything(void **state)
{
    struct captured_log cap = {0};

    (void)state;
    latch_log_set_sink(capture_sink, &cap);
    latch_log_set_level(LATCH_LOG_OFF);
    latch_log(LATCH_LOG_ERROR, "error");
    assert_int_equal(cap.count, 0);
}

static void test_log_level_names(void **state)
{
    (void)state;
    assert_string_equal(latch_log_level_name(LATCH_LOG_DEBUG), "DEBUG");
    assert_string_equal(latch_log_level_name(LATCH_LOG_INFO), "INFO");
    assert_string_equal(latch_log_level_name(LATCH_LOG_WARN), "WARN");
    assert_string_equal(latch_log_level_name(LATCH_LOG_ERROR), "ERROR");
    assert_string_equal(latch_log_level_name(LATCH_LOG_OFF), "OFF");
}

static void test_log_rejects_invalid_level(void **state)
{
    (void)state;
    latch_assert_set_handler(cmocka_handler);
    expect_assert_failure(latch_log_set_level((enum latch_log_level)(LATCH_LOG_OFF + 1)));
    assert_int_equal(latch_log_get_level(), LATCH_LOG_INFO);
}

/* Known answers of CRC-32C (RFC 3720 appendix B.4 and the "123456789" check value). */
static void test_crc32c_matches_known_answers(void **state)
{
    (void)state;
    uint8_t zeros[32] = {0};
    uint8_t ones[32];
    uint8_t inc[32];

    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++) {
        inc[i] = (uint8_t)i;
    }
    assert_int_equal(latch_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(latch_crc32c(0, zeros, sizeof(zeros)), 0x8a9136aau);
    assert_int_equal(latch_crc32c(0, ones, sizeof(ones)), 0x62a8ab43u);
    assert_int_equal(latch_crc32c(0, inc, sizeof(inc)), 0x46dd794eu);
    assert_int_equal(latch_crc32c(0, "", 0), 0);
}

static void test_crc32c_extends_across_calls(void **state)
{
    (void)state;
    const char *text = "the quick brown fox jumps over the lazy dog";
    size_t n = strlen(text);

    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t part = latch_crc32c(latch_crc32c(0, text, cut), text + cut, n - cut);
        assert_int_equal(part, latch_crc32c(0, text, n));
    }
}

static void test_arena_blocks_are_aligned_distinct_and_survive_growth(void **state)
{
    (void)state;
    struct latch_arena a;
    uint8_t *blocks[200];

    latch_arena_init(&a, 256);
    for (int i = 0; i < 200; i++) {
        size_t size = (size_t)(i % 37) + 1;
        blocks[i] = latch_arena_alloc(&a, size);
        assert_non_null(blocks[i]);
        assert_int_equal((uintptr_t)blocks[i] % 8, 0);
        memset(blocks[i], i, size);
    }
    uint8_t *big = latch_arena_alloc(&a, 10000); /* larger than a chunk */
    assert_non_null(big);
    memset(big, 0xab, 10000);
    for (int i = 0; i < 200; i++) {
        size_t size = (size_t)(i % 37) + 1;
        for (size_t j = 0; j < size; j++) {
            assert_int_equal(blocks[i][j], (uint8_t)i);
        }
    }
    assert_true(a.allocated_bytes >= 10000);
    latch_arena_close(&a);
}

static void test_arena_reset_reuses_and_dup_copies(void **state)
{
    (void)state;
    struct latch_arena a;

    latch_arena_init(&a, 0);
    char *p = latch_arena_dup(&a, "hello", 6);
    assert_string_equal(p, "hello");
    uint64_t *z = latch_arena_calloc(&a, 4, sizeof(uint64_t));
    assert_non_null(z);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(z[i], 0);
    }
    assert_non_null(latch_arena_alloc(&a, 0));
    latch_arena_reset(&a);
    assert_int_equal(a.allocated_bytes, 0);
    assert_non_null(a.head); /* one chunk kept for reuse */
    assert_null(latch_arena_calloc(&a, SIZE_MAX / 2, 4));
    assert_non_null(latch_arena_alloc(&a, 16));
    latch_arena_close(&a);
    assert_null(a.head);
}

/* LATCH_TEETH's names (latch_teeth.h): one or several, unknown or empty refused. */
static void test_teeth_parse_names_and_refuses_unknown_ones(void **state)
{
    (void)state;
    unsigned bugs = 99;
    assert_int_equal(latch_teeth_parse("stale-read", &bugs), 0);
    assert_int_equal(bugs, LATCH_TEETH_STALE_READ);
    assert_int_equal(latch_teeth_parse("watch-dup,watch-skip,no-fence", &bugs), 0);
    assert_int_equal(bugs, LATCH_TEETH_WATCH_DUP | LATCH_TEETH_WATCH_SKIP | LATCH_TEETH_NO_FENCE);
    assert_int_equal(latch_teeth_parse("early-ack", &bugs), 0);
    assert_string_equal(latch_teeth_name(bugs), "early-ack");
    assert_int_equal(latch_teeth_parse("early-ack,", &bugs), LATCH_EINVAL);
    assert_int_equal(latch_teeth_parse("stale", &bugs), LATCH_EINVAL);
    assert_int_equal(latch_teeth_parse("", &bugs), LATCH_EINVAL);
    assert_int_equal(bugs, LATCH_TEETH_EARLY_ACK); /* unchanged by a refusal */
    assert_string_equal(latch_teeth_name(0), "?");
#ifdef LATCH_TEETH
    assert_true(latch_teeth_compiled());
#else
    assert_false(latch_teeth_compiled());
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_error_every_code_has_its_name_and_text, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_error_codes_are_distinct, reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_error_ok_is_success, reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_error_foreign_code_is_unknown_not_null, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_error_only_io_and_corruption_are_fatal, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_assert_passing_condition_does_not_call_handler,
                                        reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_assert_handler_receives_expression, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_assertf_handler_receives_formatted_detail,
                                        reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_assert_unreachable_calls_handler, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_assert_is_caught_by_expect_assert_failure,
                                        reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_dassert_follows_debug_checks, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_log_sink_receives_formatted_line, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_log_drops_below_level_without_evaluating_arguments,
                                        reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_log_level_off_drops_everything, reset_common,
                                        reset_common),
        cmocka_unit_test_setup_teardown(test_log_level_names, reset_common, reset_common),
        cmocka_unit_test_setup_teardown(test_log_rejects_invalid_level, reset_common, reset_common),
        cmocka_unit_test(test_crc32c_matches_known_answers),
        cmocka_unit_test(test_crc32c_extends_across_calls),
        cmocka_unit_test(test_arena_blocks_are_aligned_distinct_and_survive_growth),
        cmocka_unit_test(test_arena_reset_reuses_and_dup_copies),
        cmocka_unit_test(test_log_limit_lets_one_line_through_per_interval_with_the_count),
        cmocka_unit_test(test_teeth_parse_names_and_refuses_unknown_ones),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
