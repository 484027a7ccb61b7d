/*
 * grpc_wire.c — gRPC wire details that are pure byte manipulation (see grpc_wire.h).
 */
#include "grpc_wire.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"

static const char *const api__status_names[API_GRPC_STATUS_COUNT] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

LATCH_STATIC_ASSERT(API_GRPC_STATUS_UNAUTHENTICATED == API_GRPC_STATUS_COUNT - 1,
                    "status name table must cover every code");

const char *api_grpc_status_name(int code)
{
    if (code < 0 || code >= API_GRPC_STATUS_COUNT) {
        return "UNKNOWN";
    }
    return api__status_names[code];
}

void api_grpc_frame_header(uint8_t out[API_GRPC_FRAME_HEADER_SIZE], uint32_t len)
{
    LATCH_ASSERT(out != NULL);
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int api_grpc_decoder_init(struct api_grpc_decoder *d, uint8_t *buf, size_t buf_size)
{
    LATCH_ASSERT(d != NULL);
    LATCH_ASSERT(buf != NULL || buf_size == 0);
    memset(d, 0, sizeof(*d));
    d->buf = buf;
    d->buf_size = buf_size;
    return 0;
}

int api_grpc_frame_prefix_check(const uint8_t prefix[API_GRPC_FRAME_HEADER_SIZE],
                                size_t max,
                                uint32_t *len_out)
{
    LATCH_ASSERT(prefix != NULL && len_out != NULL);
    *len_out = (uint32_t)prefix[1] << 24 | (uint32_t)prefix[2] << 16 | (uint32_t)prefix[3] << 8 |
               (uint32_t)prefix[4];
    if (prefix[0] != 0) {
        return LATCH_EINVAL;
    }
    return (uint64_t)*len_out > (uint64_t)max ? LATCH_ETOOBIG : 0;
}

/*
 * The flag byte is checked as soon as it arrives, and the length as soon as the prefix is
 * complete, so a bad or oversized message is refused before any of its body is buffered.
 * A finished message is reported before the next prefix byte is touched: the caller handles
 * it while buf still holds it, then feeds the rest.
 */
int api_grpc_decoder_feed(struct api_grpc_decoder *d,
                          const uint8_t *data,
                          size_t len,
                          size_t *consumed,
                          const uint8_t **msg,
                          size_t *msg_len)
{
    size_t used = 0;

    LATCH_ASSERT(d != NULL);
    LATCH_ASSERT(data != NULL || len == 0);
    LATCH_ASSERT(consumed != NULL);
    LATCH_ASSERT(msg != NULL);
    LATCH_ASSERT(msg_len != NULL);

    *consumed = 0;
    *msg = NULL;
    *msg_len = 0;
    if (d->err != 0) {
        return d->err;
    }

    while (d->hdr_len < API_GRPC_FRAME_HEADER_SIZE) {
        if (used == len) {
            *consumed = used;
            return 0;
        }
        d->hdr[d->hdr_len++] = data[used++];
        if (d->hdr_len == 1 && d->hdr[0] != 0) {
            /* 1 means compressed, yet we never accept a grpc-encoding; others are garbage. */
            d->err = LATCH_EINVAL;
            *consumed = used;
            return d->err;
        }
    }
    if (d->body_have == 0 && d->hdr_len == API_GRPC_FRAME_HEADER_SIZE) {
        int rc = api_grpc_frame_prefix_check(d->hdr, d->buf_size, &d->body_len);
        if (rc != 0) {
            d->err = rc;
            *consumed = used;
            return d->err;
        }
    }

    size_t want = (size_t)d->body_len - d->body_have;
    size_t take = len - used < want ? len - used : want;
    if (take > 0) {
        memcpy(d->buf + d->body_have, data + used, take);
        d->body_have += take;
        used += take;
    }
    *consumed = used;
    if (d->body_have < d->body_len) {
        return 0;
    }

    /* Complete: reset for the next prefix; buf keeps this body until the next feed. */
    *msg = d->buf;
    *msg_len = d->body_len;
    d->hdr_len = 0;
    d->body_have = 0;
    return 1;
}

uint8_t api_grpc_decoder_flag(const struct api_grpc_decoder *d)
{
    LATCH_ASSERT(d != NULL);
    return d->hdr[0];
}

uint32_t api_grpc_decoder_declared_len(const struct api_grpc_decoder *d)
{
    LATCH_ASSERT(d != NULL);
    return d->body_len;
}

int api_grpc_too_large_message(char *out, size_t cap, uint64_t got, uint64_t max)
{
    LATCH_ASSERT(out != NULL || cap == 0);
    int n = snprintf(
        out, cap, "grpc: received message larger than max (%" PRIu64 " vs. %" PRIu64 ")", got, max);
    LATCH_ASSERT(n > 0);
    if ((size_t)n >= cap) {
        return LATCH_ETOOBIG;
    }
    return 0;
}

/* 8 digits of the largest unit must fit, so the parser needs no overflow checks. */
LATCH_STATIC_ASSERT(99999999ULL * 3600000ULL < UINT64_MAX / 2, "grpc-timeout cannot overflow");

int api_grpc_timeout_parse(const char *s, size_t len, uint64_t *ms_out)
{
    LATCH_ASSERT(s != NULL || len == 0);
    LATCH_ASSERT(ms_out != NULL);

    /* The spec's TimeoutValue is at most 8 digits; grpc-go refuses longer values too. */
    if (len < 2 || len > 9) {
        return LATCH_EINVAL;
    }
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return LATCH_EINVAL;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }

    uint64_t ms;
    switch (s[len - 1]) {
    case 'H':
        ms = v * 3600000u;
        break;
    case 'M':
        ms = v * 60000u;
        break;
    case 'S':
        ms = v * 1000u;
        break;
    case 'm':
        ms = v;
        break;
    case 'u':
        ms = (v + 999u) / 1000u;
        break;
    case 'n':
        ms = (v + 999999u) / 1000000u;
        break;
    default:
        return LATCH_EINVAL;
    }
    *ms_out = ms;
    return 0;
}

static const char api__hex_upper[] = "0123456789ABCDEF";

static bool api__needs_escape(unsigned char c)
{
    return c < 0x20 || c > 0x7E || c == '%';
}

/*
 * Appends the unit of n bytes at unit to out only if it and the NUL fit, so a short buffer
 * never ends in the middle of "%XX". Once one unit is refused, later (possibly shorter)
 * units are refused too, keeping the output a true prefix.
 */
static void api__put_unit(char *out, size_t cap, size_t *at, bool *full, const char *unit, size_t n)
{
    if (*full || cap == 0) {
        return;
    }
    if (*at + n + 1 > cap) {
        *full = true;
        return;
    }
    memcpy(out + *at, unit, n);
    *at += n;
}

size_t api_grpc_message_encode(const char *msg, char *out, size_t cap)
{
    size_t need = 0;
    size_t at = 0;
    bool full = false;

    LATCH_ASSERT(msg != NULL);
    LATCH_ASSERT(out != NULL || cap == 0);

    for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++) {
        char unit[3];
        size_t n;
        if (api__needs_escape(*p)) {
            unit[0] = '%';
            unit[1] = api__hex_upper[*p >> 4];
            unit[2] = api__hex_upper[*p & 0x0F];
            n = 3;
        } else {
            unit[0] = (char)*p;
            n = 1;
        }
        api__put_unit(out, cap, &at, &full, unit, n);
        need += n;
    }
    if (cap > 0) {
        out[at] = '\0';
    }
    return need;
}

/* The value of hex digit c, or -1. */
static int api__hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

size_t api_grpc_message_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t need = 0;
    size_t at = 0;
    bool full = false;

    LATCH_ASSERT(in != NULL || len == 0);
    LATCH_ASSERT(out != NULL || cap == 0);

    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < len) {
            int hi = api__hex_value(in[i + 1]);
            int lo = api__hex_value(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(unsigned char)(hi << 4 | lo);
                i += 2;
            }
        }
        api__put_unit(out, cap, &at, &full, &c, 1);
        need++;
    }
    if (cap > 0) {
        out[at] = '\0';
    }
    return need;
}

size_t api_grpc_queue_bytes(const struct api_grpc_queue *q)
{
    return q->len - q->off;
}

int api_grpc_queue_push(struct api_grpc_queue *q, const uint8_t *msg, size_t len)
{
    if (len > UINT32_MAX) {
        return LATCH_ETOOBIG;
    }
    size_t n = API_GRPC_FRAME_HEADER_SIZE + len;
    if (q->cap - q->len < n) {
        size_t queued = api_grpc_queue_bytes(q);
        if (q->off > 0 && q->off >= queued) {
            memmove(q->buf, q->buf + q->off, queued);
            q->off = 0;
            q->len = queued;
        }
    }
    if (q->cap - q->len < n) {
        size_t ncap = q->cap == 0 ? 4096 : q->cap;
        while (ncap - q->len < n) {
            ncap *= 2;
        }
        uint8_t *nbuf = realloc(q->buf, ncap);
        if (nbuf == NULL) {
            return LATCH_ENOMEM;
        }
        q->buf = nbuf;
        q->cap = ncap;
    }
    api_grpc_frame_header(q->buf + q->len, (uint32_t)len);
    if (len > 0) {
        memcpy(q->buf + q->len + API_GRPC_FRAME_HEADER_SIZE, msg, len);
    }
    q->len += n;
    return 0;
}

size_t api_grpc_queue_take(struct api_grpc_queue *q, uint8_t *out, size_t cap)
{
    size_t n = api_grpc_queue_bytes(q);
    n = n < cap ? n : cap;
    if (n > 0) {
        memcpy(out, q->buf + q->off, n);
        q->off += n;
    }
    if (q->off == q->len) {
        q->off = q->len = 0;
    }
    return n;
}

void api_grpc_queue_clear(struct api_grpc_queue *q)
{
    q->off = q->len = 0;
}

void api_grpc_queue_free(struct api_grpc_queue *q)
{
    free(q->buf);
    q->buf = NULL;
    q->off = q->len = q->cap = 0;
}
