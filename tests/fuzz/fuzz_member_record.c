/*
 * fuzz_member_record.c — libFuzzer target for the membership record and the conf-change
 * context decoders of server/member.h: the record comes from the data dir and inside
 * snapshots a leader streams, the context inside every conf-change entry a leader sends.
 *
 * The first input byte picks the decoder (even: record, odd: context), the rest is its input.
 * Properties checked on every input: decoding never reads outside the input, never crashes
 * (ASan/UBSan), answers 0 or LATCH_ECORRUPT only, hands out strings within the limits, and
 * is canonical: a decoded version 2 record or context encodes back to exactly the input
 * bytes, so two replicas never read one entry two ways.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "member.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct srv_members g_ms;

static void check_table(const struct srv_members *ms)
{
    for (uint32_t i = 0; i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        LATCH_ASSERT(m->id != RAFT_NONE);
        LATCH_ASSERT(strlen(srv_member_name(ms, m)) <= SRV_MEMBER_NAME_MAX);
        LATCH_ASSERT(m->peer_urls_count <= SRV_MEMBER_URLS_MAX);
        for (size_t k = 0; k < m->peer_urls_count; k++) {
            LATCH_ASSERT(strlen(srv_member_peer_url(ms, m, k)) <= SRV_MEMBER_URL_MAX);
        }
    }
}

static void fuzz_record(const uint8_t *in, size_t len)
{
    uint8_t out[STORE_CONF_BYTES_MAX];
    size_t out_len = 0;
    int rc = srv_members_decode(in, len, &g_ms);
    LATCH_ASSERTF(rc == 0 || rc == LATCH_ECORRUPT, "decode gave %s", latch_error_name(rc));
    if (rc != 0) {
        return;
    }
    check_table(&g_ms);
    if (in[0] != SRV_MEMBER_RECORD_V2 || len > STORE_CONF_BYTES_MAX) {
        return; /* version 1 re-encodes as version 2; longer records are not the store's */
    }
    rc = srv_members_encode(&g_ms, out, sizeof(out), &out_len);
    LATCH_ASSERTF(rc == 0, "a decoded record does not encode: %s", latch_error_name(rc));
    LATCH_ASSERTF(out_len == len && memcmp(out, in, len) == 0,
                  "record encoding is not canonical: %zu bytes in, %zu out", len, out_len);
}

static void fuzz_context(const uint8_t *in, size_t len)
{
    raft_id proposer = 0;
    uint64_t seq = 0;
    int rc = srv_member_context_decode(in, len, 1, &proposer, &seq, &g_ms);
    LATCH_ASSERTF(rc == 0 || rc == LATCH_ECORRUPT, "decode gave %s", latch_error_name(rc));
    if (rc != 0) {
        return;
    }
    check_table(&g_ms);
    LATCH_ASSERT(g_ms.count == 1);
    const struct srv_member *m = &g_ms.m[0];
    const char *urls[SRV_MEMBER_URLS_MAX];
    for (size_t k = 0; k < m->peer_urls_count; k++) {
        urls[k] = srv_member_peer_url(&g_ms, m, k);
    }
    struct srv_member_attrs a = {.name = srv_member_name(&g_ms, m),
                                 .peer_urls = urls,
                                 .peer_urls_count = m->peer_urls_count};
    uint8_t out[RAFT_CONF_CONTEXT_BYTES_MAX];
    size_t out_len = 0;
    rc = srv_member_context_encode(proposer, seq, &a, out, sizeof(out), &out_len);
    if (len > RAFT_CONF_CONTEXT_BYTES_MAX) {
        LATCH_ASSERT(rc == LATCH_ETOOBIG);
        return;
    }
    LATCH_ASSERTF(rc == 0, "a decoded context does not encode: %s", latch_error_name(rc));
    LATCH_ASSERTF(out_len == len && memcmp(out, in, len) == 0,
                  "context encoding is not canonical: %zu bytes in, %zu out", len, out_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if (data[0] % 2 == 0) {
        fuzz_record(data + 1, size - 1);
    } else {
        fuzz_context(data + 1, size - 1);
    }
    return 0;
}
