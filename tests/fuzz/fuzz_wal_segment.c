/*
 * fuzz_wal_segment.c — libFuzzer target for the parser of the append-only log's segment files
 * (store/store_wal.c): what store_wal_open reads back from the data dir after a crash, a torn
 * write or damage. The input becomes segment 0000000000000001.seg of an otherwise empty wal
 * directory, which is then opened.
 *
 * The first input byte picks how: even: the rest is the file's bytes as they are (framing,
 * CRCs, torn tails); odd: the rest is a list of record bodies (le16 length, then the body's
 * bytes), which the target frames with a correct length and CRC-32C at their offsets, so the
 * item parser behind the CRC is reached too.
 *
 * Properties checked on every input: the open never reads outside the file, never crashes
 * (ASan/UBSan), answers 0, LATCH_ECORRUPT or LATCH_EFORMAT only; an open wal answers its
 * bounds consistently (first <= last + 1), gives the term of every index in [first - 1, last]
 * and reads every entry of [first, last] back or reports one whose own checksum fails.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_crc32c.h"
#include "latch_error.h"
#include "store_wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];
static char g_seg[128];
static uint8_t g_buf[1 << 20];

static void cleanup(void)
{
    (void)rmdir(g_dir); /* empty between inputs */
}

static void setup_once(void)
{
    if (g_dir[0] != '\0') {
        return;
    }
    atexit(cleanup);
    snprintf(g_dir, sizeof(g_dir), "/tmp/fuzz-wal-XXXXXX");
    LATCH_ASSERT(mkdtemp(g_dir) != NULL);
    snprintf(g_seg, sizeof(g_seg), "%s/0000000000000001.seg", g_dir);
}

/* Frames odd-mode input: le16 length + body per record, each padded to 8 bytes. */
static size_t frame(const uint8_t *in, size_t len)
{
    size_t out = 0, pos = 0;
    while (pos + 2 <= len) {
        size_t n = (size_t)in[pos] | (size_t)in[pos + 1] << 8;
        pos += 2;
        if (n > len - pos) {
            n = len - pos;
        }
        size_t rec = 8 + n;
        size_t padded = (rec + 7) & ~(size_t)7;
        if (out + padded > sizeof(g_buf)) {
            break;
        }
        uint8_t *p = g_buf + out;
        memset(p, 0, padded);
        memcpy(p + 8, in + pos, n);
        uint8_t pre[16] = {1};
        for (int i = 0; i < 8; i++) {
            pre[8 + i] = (uint8_t)((uint64_t)out >> (8 * i));
        }
        uint32_t crc = latch_crc32c(latch_crc32c(0, pre, sizeof(pre)), p + 8, n);
        for (int i = 0; i < 4; i++) {
            p[i] = (uint8_t)((uint32_t)rec >> (8 * i));
            p[4 + i] = (uint8_t)(crc >> (8 * i));
        }
        out += padded;
        pos += n;
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    setup_once();
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        len = frame(body, len);
        body = g_buf;
    }
    FILE *f = fopen(g_seg, "wb");
    LATCH_ASSERT(f != NULL);
    LATCH_ASSERT(len == 0 || fwrite(body, 1, len, f) == len);
    LATCH_ASSERT(fclose(f) == 0);

    struct store_wal_options o = {.dir = g_dir, .no_sync = true};
    struct store_wal *w = NULL;
    char err[256];
    int rc = store_wal_open(&o, &w, err, sizeof(err));
    LATCH_ASSERTF(rc == 0 || rc == LATCH_ECORRUPT || rc == LATCH_EFORMAT, "open gave %s",
                  latch_error_name(rc));
    if (rc == 0) {
        uint64_t first = store_wal_first_index(w), last = store_wal_last_index(w);
        LATCH_ASSERTF(first >= 1 && first <= last + 1, "bounds %llu..%llu",
                      (unsigned long long)first, (unsigned long long)last);
        struct latch_arena a;
        latch_arena_init(&a, 4096);
        for (uint64_t k = 0; k <= last - (first - 1) && k < 4096; k++) {
            uint64_t t;
            LATCH_ASSERT(store_wal_term(w, first - 1 + k, &t) == 0);
        }
        if (last >= first) {
            const struct store_entry *e;
            size_t n = 0;
            uint64_t hi = last - first < 4096 ? last + 1 : first + 4096;
            rc = store_wal_entries(w, first, hi, UINT64_MAX, &a, &e, &n);
            /* A record's CRC covers its entries; an entry's own CRC is checked on reading
             * (odd inputs get record CRCs made for them, not entry CRCs). */
            LATCH_ASSERTF((rc == 0 && n == hi - first) || rc == LATCH_ECORRUPT, "entries: %s",
                          latch_error_name(rc));
        }
        latch_arena_close(&a);
        store_wal_close(w);
    }
    /* The open may have cut a torn tail or written a first segment: start afresh. */
    (void)unlink(g_seg);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s/seg.tmp", g_dir);
    (void)unlink(tmp);
    return 0;
}
