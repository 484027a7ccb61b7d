/*
 * latch_hist.c — the log-bucketed latency histogram (see latch_hist.h).
 */
#include "latch_hist.h"

#include <string.h>

#include "latch_assert.h"

void latch_hist_init(struct latch_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned latch_hist_bucket_of(uint64_t value)
{
    if (value < LATCH_HIST_EXACT) {
        return (unsigned)value;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(value); /* >= SUB_BITS + 1 */
    unsigned shift = msb - LATCH_HIST_SUB_BITS;
    unsigned sub = (unsigned)(value >> shift) - (1u << LATCH_HIST_SUB_BITS); /* 0..63 */
    unsigned b =
        LATCH_HIST_EXACT + (msb - (LATCH_HIST_SUB_BITS + 1)) * (1u << LATCH_HIST_SUB_BITS) + sub;
    LATCH_ASSERT(b < LATCH_HIST_BUCKETS);
    return b;
}

uint64_t latch_hist_bucket_low(unsigned bucket)
{
    LATCH_ASSERT(bucket < LATCH_HIST_BUCKETS);
    if (bucket < LATCH_HIST_EXACT) {
        return bucket;
    }
    unsigned k = bucket - LATCH_HIST_EXACT;
    unsigned msb = k / (1u << LATCH_HIST_SUB_BITS) + LATCH_HIST_SUB_BITS + 1;
    uint64_t sub = (uint64_t)(k % (1u << LATCH_HIST_SUB_BITS)) + (1u << LATCH_HIST_SUB_BITS);
    return sub << (msb - LATCH_HIST_SUB_BITS);
}

uint64_t latch_hist_bucket_high(unsigned bucket)
{
    if (bucket + 1 == LATCH_HIST_BUCKETS) {
        return UINT64_MAX;
    }
    return latch_hist_bucket_low(bucket + 1) - 1;
}

void latch_hist_record(struct latch_hist *h, uint64_t value)
{
    h->buckets[latch_hist_bucket_of(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min) {
        h->min = value;
    }
    if (value > h->max) {
        h->max = value;
    }
}

void latch_hist_merge(struct latch_hist *dst, const struct latch_hist *src)
{
    for (unsigned i = 0; i < LATCH_HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t latch_hist_percentile(const struct latch_hist *h, double pct)
{
    if (h->count == 0) {
        return 0;
    }
    if (pct >= 100.0) {
        return h->max;
    }
    double want = pct / 100.0 * (double)h->count;
    uint64_t rank = want < 1.0 ? 1 : (uint64_t)want;
    if ((double)rank < want) {
        rank++; /* the ceiling, without libm */
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < LATCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo = latch_hist_bucket_low(i);
            uint64_t v = lo + (latch_hist_bucket_high(i) - lo) / 2;
            if (v < h->min) {
                v = h->min;
            }
            if (v > h->max) {
                v = h->max;
            }
            return v;
        }
    }
    return h->max; /* unreachable while count matches the buckets */
}

double latch_hist_mean(const struct latch_hist *h)
{
    return h->count == 0 ? 0.0 : (double)h->sum / (double)h->count;
}
