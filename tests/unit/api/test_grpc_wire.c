/*
 * test_grpc_wire.c — gRPC wire details: message framing survives any split of the byte
 * stream (DATA frames cut messages anywhere), oversized and compressed messages are refused
 * before buffering, grpc-timeout parses as real clients send it, grpc-message round-trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"

/* expect_assert_failure() needs LATCH_ASSERT to reach cmocka's mock_assert(). */
static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static int setup(void **state)
{
    (void)state;
    latch_assert_set_handler(cmocka_handler);
    return 0;
}

/* Writes prefix + body into out; returns the total length. */
static size_t frame(uint8_t *out, const char *body, uint32_t len)
{
    api_grpc_frame_header(out, len);
    if (len > 0) {
        memcpy(out + API_GRPC_FRAME_HEADER_SIZE, body, len);
    }
    return API_GRPC_FRAME_HEADER_SIZE + (size_t)len;
}

/* ---- framing ---------------------------------------------------------------------------- */

static void test_frame_header_is_zero_flag_and_big_endian_length(void **state)
{
    uint8_t h[API_GRPC_FRAME_HEADER_SIZE];

    (void)state;
    api_grpc_frame_header(h, 0);
    assert_memory_equal(h, "\0\0\0\0\0", 5);
    api_grpc_frame_header(h, 0x01020304u);
    assert_memory_equal(h, "\x00\x01\x02\x03\x04", 5);
    api_grpc_frame_header(h, UINT32_MAX);
    assert_memory_equal(h, "\x00\xff\xff\xff\xff", 5);
}

static void test_decoder_yields_zero_length_message(void **state)
{
    uint8_t buf[16];
    uint8_t wire[8];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len = 99;
    size_t used;

    (void)state;
    assert_int_equal(api_grpc_decoder_init(&d, buf, sizeof(buf)), 0);
    size_t n = frame(wire, "", 0);
    assert_int_equal(api_grpc_decoder_feed(&d, wire, n, &used, &msg, &msg_len), 1);
    assert_int_equal(used, 5);
    assert_non_null(msg);
    assert_int_equal(msg_len, 0);
}

static void test_decoder_yields_multi_byte_message_in_one_feed(void **state)
{
    uint8_t buf[16];
    uint8_t wire[32];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    size_t n = frame(wire, "hello, grpc", 11);
    assert_int_equal(api_grpc_decoder_feed(&d, wire, n, &used, &msg, &msg_len), 1);
    assert_int_equal(used, n);
    assert_int_equal(msg_len, 11);
    assert_memory_equal(msg, "hello, grpc", 11);
    /* Nothing left: an empty feed asks for more. */
    assert_int_equal(api_grpc_decoder_feed(&d, NULL, 0, &used, &msg, &msg_len), 0);
    assert_int_equal(used, 0);
    assert_null(msg);
}

static void test_decoder_accepts_message_of_exactly_buf_size(void **state)
{
    uint8_t buf[4];
    uint8_t wire[16];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    size_t n = frame(wire, "abcd", 4);
    assert_int_equal(api_grpc_decoder_feed(&d, wire, n, &used, &msg, &msg_len), 1);
    assert_int_equal(msg_len, 4);
    assert_memory_equal(msg, "abcd", 4);
}

static void test_decoder_assembles_messages_fed_one_byte_at_a_time(void **state)
{
    uint8_t buf[32];
    uint8_t wire[64];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;
    size_t n = 0;
    int got = 0;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    n += frame(wire + n, "first", 5);
    n += frame(wire + n, "", 0);
    n += frame(wire + n, "third message", 13);
    for (size_t i = 0; i < n; i++) {
        int rc = api_grpc_decoder_feed(&d, wire + i, 1, &used, &msg, &msg_len);
        assert_int_equal(used, 1);
        if (rc == 1) {
            got++;
            if (got == 1) {
                assert_int_equal(i, 9);
                assert_memory_equal(msg, "first", 5);
            } else if (got == 2) {
                assert_int_equal(i, 14);
                assert_int_equal(msg_len, 0);
            } else {
                assert_int_equal(i, n - 1);
                assert_int_equal(msg_len, 13);
                assert_memory_equal(msg, "third message", 13);
            }
        } else {
            assert_int_equal(rc, 0);
        }
    }
    assert_int_equal(got, 3);
}

static void test_decoder_splits_two_messages_in_one_buffer(void **state)
{
    uint8_t buf[16];
    uint8_t wire[64];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;
    size_t n = 0;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    n += frame(wire + n, "one", 3);
    n += frame(wire + n, "two!", 4);
    n += 2; /* and the start of a third prefix */
    wire[n - 2] = 0;
    wire[n - 1] = 0;

    assert_int_equal(api_grpc_decoder_feed(&d, wire, n, &used, &msg, &msg_len), 1);
    assert_int_equal(used, 8);
    assert_memory_equal(msg, "one", 3);
    size_t off = used;
    assert_int_equal(api_grpc_decoder_feed(&d, wire + off, n - off, &used, &msg, &msg_len), 1);
    assert_int_equal(used, 9);
    assert_int_equal(msg_len, 4);
    assert_memory_equal(msg, "two!", 4);
    off += used;
    assert_int_equal(api_grpc_decoder_feed(&d, wire + off, n - off, &used, &msg, &msg_len), 0);
    assert_int_equal(used, 2);
    /* The rest of the third prefix and its body complete it. */
    const uint8_t rest[] = {0, 0, 1, 'x'};
    assert_int_equal(api_grpc_decoder_feed(&d, rest, sizeof(rest), &used, &msg, &msg_len), 1);
    assert_int_equal(used, 4);
    assert_int_equal(msg_len, 1);
    assert_int_equal(msg[0], 'x');
}

static void test_decoder_refuses_too_large_message_before_buffering_it(void **state)
{
    uint8_t buf[8];
    uint8_t wire[16] = {0};
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    api_grpc_frame_header(wire, 9);
    assert_int_equal(api_grpc_decoder_feed(&d, wire, sizeof(wire), &used, &msg, &msg_len),
                     LATCH_ETOOBIG);
    assert_int_equal(used, 5);
    assert_null(msg);
    assert_int_equal(api_grpc_decoder_declared_len(&d), 9);
    /* Sticky: the stream is dead. */
    assert_int_equal(api_grpc_decoder_feed(&d, wire + 5, 1, &used, &msg, &msg_len), LATCH_ETOOBIG);
    assert_int_equal(used, 0);
}

static void test_decoder_refuses_huge_declared_length(void **state)
{
    uint8_t buf[8];
    const uint8_t wire[] = {0, 0xff, 0xff, 0xff, 0xff};
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    assert_int_equal(api_grpc_decoder_feed(&d, wire, sizeof(wire), &used, &msg, &msg_len),
                     LATCH_ETOOBIG);
    assert_int_equal(api_grpc_decoder_declared_len(&d), UINT32_MAX);
}

static void test_decoder_refuses_compressed_flag_at_first_byte(void **state)
{
    uint8_t buf[8];
    const uint8_t wire[] = {1, 0, 0, 0, 1, 'z'};
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    assert_int_equal(api_grpc_decoder_feed(&d, wire, sizeof(wire), &used, &msg, &msg_len),
                     LATCH_EINVAL);
    assert_int_equal(used, 1);
    assert_int_equal(api_grpc_decoder_flag(&d), 1);
    assert_int_equal(api_grpc_decoder_feed(&d, wire + 1, 5, &used, &msg, &msg_len), LATCH_EINVAL);
}

static void test_decoder_refuses_flag_other_than_zero_or_one(void **state)
{
    uint8_t buf[8];
    uint8_t wire[16];
    struct api_grpc_decoder d;
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, buf, sizeof(buf));
    size_t n = frame(wire, "ok", 2);
    wire[n] = 0x80; /* a good message, then a bad flag */
    assert_int_equal(api_grpc_decoder_feed(&d, wire, n + 1, &used, &msg, &msg_len), 1);
    assert_int_equal(used, n);
    assert_int_equal(api_grpc_decoder_feed(&d, wire + n, 1, &used, &msg, &msg_len), LATCH_EINVAL);
    assert_int_equal(api_grpc_decoder_flag(&d), 0x80);
}

static void test_decoder_with_zero_max_accepts_only_empty_messages(void **state)
{
    struct api_grpc_decoder d;
    const uint8_t wire[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t *msg;
    size_t msg_len;
    size_t used;

    (void)state;
    api_grpc_decoder_init(&d, NULL, 0);
    assert_int_equal(api_grpc_decoder_feed(&d, wire, sizeof(wire), &used, &msg, &msg_len), 1);
    assert_int_equal(msg_len, 0);
    assert_int_equal(api_grpc_decoder_feed(&d, wire + 5, 5, &used, &msg, &msg_len), LATCH_ETOOBIG);
}

static void test_decoder_init_asserts_on_null_buffer_with_size(void **state)
{
    struct api_grpc_decoder d;

    (void)state;
    expect_assert_failure(api_grpc_decoder_init(&d, NULL, 4));
}

static void test_too_large_message_matches_grpc_go_text(void **state)
{
    char out[API_GRPC_TOO_LARGE_MESSAGE_MAX];
    char small[10];

    (void)state;
    assert_int_equal(api_grpc_too_large_message(out, sizeof(out), 2097153, 2097152), 0);
    assert_string_equal(out, "grpc: received message larger than max (2097153 vs. 2097152)");
    assert_int_equal(api_grpc_too_large_message(out, sizeof(out), UINT64_MAX, UINT64_MAX), 0);
    assert_string_equal(out, "grpc: received message larger than max "
                             "(18446744073709551615 vs. 18446744073709551615)");
    assert_int_equal(api_grpc_too_large_message(small, sizeof(small), 1, 0), LATCH_ETOOBIG);
    assert_string_equal(small, "grpc: rec");
}

/* ---- grpc-timeout ----------------------------------------------------------------------- */

static int parse(const char *s, uint64_t *ms)
{
    return api_grpc_timeout_parse(s, strlen(s), ms);
}

static void test_timeout_converts_every_unit_to_ms(void **state)
{
    uint64_t ms = 0;

    (void)state;
    assert_int_equal(parse("2H", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(parse("3M", &ms), 0);
    assert_int_equal(ms, 180000);
    assert_int_equal(parse("5S", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(parse("5010m", &ms), 0);
    assert_int_equal(ms, 5010);
    assert_int_equal(parse("4999126u", &ms), 0); /* grpc-go's form (ETCD-API.md §5) */
    assert_int_equal(ms, 5000);
    assert_int_equal(parse("3000000n", &ms), 0);
    assert_int_equal(ms, 3);
}

static void test_timeout_rounds_up_to_whole_ms(void **state)
{
    uint64_t ms = 0;

    (void)state;
    assert_int_equal(parse("1n", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(parse("1u", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(parse("1000u", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(parse("1001u", &ms), 0);
    assert_int_equal(ms, 2);
    assert_int_equal(parse("0m", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(parse("0n", &ms), 0);
    assert_int_equal(ms, 0);
}

static void test_timeout_largest_values_do_not_overflow(void **state)
{
    uint64_t ms = 0;

    (void)state;
    assert_int_equal(parse("99999999H", &ms), 0);
    assert_int_equal(ms, 99999999ULL * 3600000ULL);
    assert_int_equal(parse("99999999n", &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(parse("00000001S", &ms), 0);
    assert_int_equal(ms, 1000);
}

static void test_timeout_rejects_junk_and_leaves_output_alone(void **state)
{
    static const char *const bad[] = {
        "",    "S",  "5",  "5s", "5 S",  " 5S",  "+5S",        "-5S",
        "5SS", "5h", "5x", "a5", "0x5S", "5.0S", "999999999S", "123456789m",
    };
    uint64_t ms = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &ms), LATCH_EINVAL);
        assert_int_equal(ms, 42);
    }
    /* The length bounds the value: trailing bytes beyond len are not read. */
    assert_int_equal(api_grpc_timeout_parse("7Sjunk", 2, &ms), 0);
    assert_int_equal(ms, 7000);
    /* An embedded NUL is junk too. */
    assert_int_equal(api_grpc_timeout_parse("5\0S", 3, &ms), LATCH_EINVAL);
}

/* ---- grpc-message ----------------------------------------------------------------------- */

static void test_message_encode_keeps_printable_ascii(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(api_grpc_message_encode("etcdserver: key is not provided", out, sizeof(out)),
                     31);
    assert_string_equal(out, "etcdserver: key is not provided");
    assert_int_equal(api_grpc_message_encode("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(api_grpc_message_encode(" ~", out, sizeof(out)), 2);
    assert_string_equal(out, " ~");
}

static void test_message_encode_escapes_non_ascii_newline_and_percent(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(api_grpc_message_encode("a\nb", out, sizeof(out)), 5);
    assert_string_equal(out, "a%0Ab");
    assert_int_equal(api_grpc_message_encode("100%", out, sizeof(out)), 6);
    assert_string_equal(out, "100%25");
    assert_int_equal(api_grpc_message_encode("caf\xc3\xa9", out, sizeof(out)), 9);
    assert_string_equal(out, "caf%C3%A9");
    assert_int_equal(api_grpc_message_encode("\x7f\x1f\t", out, sizeof(out)), 9);
    assert_string_equal(out, "%7F%1F%09");
}

static void test_message_encode_truncates_on_whole_units(void **state)
{
    char out[6];
    char one[1] = {'x'};

    (void)state;
    /* "ab%0Acd" needs 7; 5 usable bytes hold exactly "ab%0A"... */
    assert_int_equal(api_grpc_message_encode("ab\ncd", out, sizeof(out)), 7);
    assert_string_equal(out, "ab%0A");
    /* ... and with 4 usable bytes the escape does not fit, nor does anything after it. */
    assert_int_equal(api_grpc_message_encode("ab\ncd", out, 5), 7);
    assert_string_equal(out, "ab");
    assert_int_equal(api_grpc_message_encode("abc", one, sizeof(one)), 3);
    assert_string_equal(one, "");
    assert_int_equal(api_grpc_message_encode("abc", NULL, 0), 3);
}

static void test_message_decode_inverts_encode(void **state)
{
    static const char *const samples[] = {
        "",      "plain",        "100% sure", "line1\nline2\r\n", "caf\xc3\xa9 \xe2\x9c\x93",
        "%%25%", "\x01\x7f\xff",
    };
    char enc[128];
    char dec[128];

    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        size_t n = api_grpc_message_encode(samples[i], enc, sizeof(enc));
        assert_true(n < sizeof(enc));
        for (size_t j = 0; j < n; j++) {
            assert_true(enc[j] >= 0x20 && enc[j] <= 0x7e);
        }
        size_t m = api_grpc_message_decode(enc, n, dec, sizeof(dec));
        assert_int_equal(m, strlen(samples[i]));
        assert_string_equal(dec, samples[i]);
    }
}

static void test_message_decode_keeps_invalid_sequences_literally(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(api_grpc_message_decode("50%", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "50%");
    assert_int_equal(api_grpc_message_decode("%4", 2, out, sizeof(out)), 2);
    assert_string_equal(out, "%4");
    assert_int_equal(api_grpc_message_decode("%zz%4g", 6, out, sizeof(out)), 6);
    assert_string_equal(out, "%zz%4g");
    assert_int_equal(api_grpc_message_decode("%c3%A9%41", 9, out, sizeof(out)), 3);
    assert_string_equal(out, "\xc3\xa9"
                             "A");
    /* "%%41": the first '%' is literal, then "%41" decodes. */
    assert_int_equal(api_grpc_message_decode("%%41", 4, out, sizeof(out)), 2);
    assert_string_equal(out, "%A");
}

static void test_message_decode_reads_only_len_bytes_and_truncates(void **state)
{
    char out[4];

    (void)state;
    assert_int_equal(api_grpc_message_decode("%41%42", 3, out, sizeof(out)), 1);
    assert_string_equal(out, "A");
    assert_int_equal(api_grpc_message_decode("abcdef", 6, out, sizeof(out)), 6);
    assert_string_equal(out, "abc");
    assert_int_equal(api_grpc_message_decode("%00x", 4, out, sizeof(out)), 2);
    assert_memory_equal(out, "\0x", 3);
}

/* ---- status names ----------------------------------------------------------------------- */

static void test_status_names_cover_all_codes(void **state)
{
    (void)state;
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_OK), "OK");
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_CANCELLED), "CANCELLED");
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_DEADLINE_EXCEEDED),
                        "DEADLINE_EXCEEDED");
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_RESOURCE_EXHAUSTED),
                        "RESOURCE_EXHAUSTED");
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED");
    assert_string_equal(api_grpc_status_name(API_GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_int_equal(API_GRPC_STATUS_UNAUTHENTICATED, 16);
    for (int c = 0; c < API_GRPC_STATUS_COUNT; c++) {
        assert_non_null(api_grpc_status_name(c));
    }
}

static void test_status_name_of_out_of_range_code_is_unknown(void **state)
{
    (void)state;
    assert_string_equal(api_grpc_status_name(-1), "UNKNOWN");
    assert_string_equal(api_grpc_status_name(17), "UNKNOWN");
    assert_string_equal(api_grpc_status_name(1000), "UNKNOWN");
}

/* The prefix check both the decoder and the server use: flag, then length against max. */
static void test_prefix_check_reads_length_and_refuses_flag_and_oversize(void **state)
{
    (void)state;
    uint8_t p[API_GRPC_FRAME_HEADER_SIZE];
    uint32_t len = 0;

    api_grpc_frame_header(p, 300);
    assert_int_equal(api_grpc_frame_prefix_check(p, 300, &len), 0);
    assert_int_equal(len, 300);
    assert_int_equal(api_grpc_frame_prefix_check(p, 299, &len), LATCH_ETOOBIG);
    assert_int_equal(len, 300);
    p[0] = 1;
    assert_int_equal(api_grpc_frame_prefix_check(p, 1000, &len), LATCH_EINVAL);
    p[0] = 0x80;
    assert_int_equal(api_grpc_frame_prefix_check(p, 1000, &len), LATCH_EINVAL);
}

/* The queue frames each message, hands bytes out in any slicing, and reuses its buffer
 * (compacting instead of growing once half of it has been taken). */
static void test_queue_frames_and_hands_out_in_any_slicing(void **state)
{
    (void)state;
    struct api_grpc_queue q = {0};
    assert_int_equal(api_grpc_queue_push(&q, (const uint8_t *)"abc", 3), 0);
    assert_int_equal(api_grpc_queue_push(&q, NULL, 0), 0);
    assert_int_equal(api_grpc_queue_bytes(&q), 8 + 5);
    uint8_t out[16];
    assert_int_equal(api_grpc_queue_take(&q, out, 2), 2);
    assert_int_equal(api_grpc_queue_take(&q, out + 2, sizeof(out) - 2), 11);
    static const uint8_t want[] = {0, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0};
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(api_grpc_queue_bytes(&q), 0);
    assert_int_equal(api_grpc_queue_take(&q, out, sizeof(out)), 0);

    /* Fill, take more than half, push again: the allocation stays the same. */
    uint8_t msg[1000];
    memset(msg, 7, sizeof(msg));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(api_grpc_queue_push(&q, msg, sizeof(msg)), 0);
    }
    size_t cap = q.cap;
    uint8_t sink[4096];
    assert_int_equal(api_grpc_queue_take(&q, sink, 3000), 3000);
    assert_int_equal(api_grpc_queue_push(&q, msg, sizeof(msg)), 0);
    assert_int_equal(q.cap, cap);
    assert_int_equal(api_grpc_queue_bytes(&q), 5 * 1005 - 3000);
    api_grpc_queue_clear(&q);
    assert_int_equal(api_grpc_queue_bytes(&q), 0);
    api_grpc_queue_free(&q);
    assert_null(q.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header_is_zero_flag_and_big_endian_length),
        cmocka_unit_test(test_decoder_yields_zero_length_message),
        cmocka_unit_test(test_decoder_yields_multi_byte_message_in_one_feed),
        cmocka_unit_test(test_decoder_accepts_message_of_exactly_buf_size),
        cmocka_unit_test(test_decoder_assembles_messages_fed_one_byte_at_a_time),
        cmocka_unit_test(test_decoder_splits_two_messages_in_one_buffer),
        cmocka_unit_test(test_decoder_refuses_too_large_message_before_buffering_it),
        cmocka_unit_test(test_decoder_refuses_huge_declared_length),
        cmocka_unit_test(test_decoder_refuses_compressed_flag_at_first_byte),
        cmocka_unit_test(test_decoder_refuses_flag_other_than_zero_or_one),
        cmocka_unit_test(test_decoder_with_zero_max_accepts_only_empty_messages),
        cmocka_unit_test(test_decoder_init_asserts_on_null_buffer_with_size),
        cmocka_unit_test(test_too_large_message_matches_grpc_go_text),
        cmocka_unit_test(test_timeout_converts_every_unit_to_ms),
        cmocka_unit_test(test_timeout_rounds_up_to_whole_ms),
        cmocka_unit_test(test_timeout_largest_values_do_not_overflow),
        cmocka_unit_test(test_timeout_rejects_junk_and_leaves_output_alone),
        cmocka_unit_test(test_message_encode_keeps_printable_ascii),
        cmocka_unit_test(test_message_encode_escapes_non_ascii_newline_and_percent),
        cmocka_unit_test(test_message_encode_truncates_on_whole_units),
        cmocka_unit_test(test_message_decode_inverts_encode),
        cmocka_unit_test(test_message_decode_keeps_invalid_sequences_literally),
        cmocka_unit_test(test_message_decode_reads_only_len_bytes_and_truncates),
        cmocka_unit_test(test_status_names_cover_all_codes),
        cmocka_unit_test(test_status_name_of_out_of_range_code_is_unknown),
        cmocka_unit_test(test_prefix_check_reads_length_and_refuses_flag_and_oversize),
        cmocka_unit_test(test_queue_frames_and_hands_out_in_any_slicing),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
