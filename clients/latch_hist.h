/*
 * latch_hist.h — a log-bucketed latency histogram (HDR-style) for load generators and the
 * Jepsen-style harness: fixed storage, no allocation, O(1) record.
 *
 * Values (nanoseconds, or any unit) below 128 are counted exactly; above, each power of two
 * is split into 64 equal buckets, so a reported value is within 1/64 (1.6 %) of the true one
 * (half of that for the midpoint reported). The exact count, sum, minimum and maximum are
 * kept beside the buckets. A struct latch_hist is about 30 KiB: embed it or allocate it once,
 * never per operation.
 *
 * Not thread-safe: one histogram per thread, merged at the end.
 */
#ifndef CLIENTS_LATCH_HIST_H
#define CLIENTS_LATCH_HIST_H

#include <stdint.h>

/* 128 exact buckets, then 64 per power of two from 2^7 to 2^63. */
#define LATCH_HIST_SUB_BITS 6
#define LATCH_HIST_EXACT    (2u << LATCH_HIST_SUB_BITS)
#define LATCH_HIST_BUCKETS                                                                         \
    (LATCH_HIST_EXACT + (64u - (LATCH_HIST_SUB_BITS + 1)) * (1u << LATCH_HIST_SUB_BITS))

struct latch_hist {
    uint64_t count;
    uint64_t sum; /* wraps only after 584 years of nanoseconds */
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t buckets[LATCH_HIST_BUCKETS];
};

/* Empties h (caller-owned storage). */
void latch_hist_init(struct latch_hist *h);

/* Counts one value. */
void latch_hist_record(struct latch_hist *h, uint64_t value);

/* Adds every value counted in src to dst. */
void latch_hist_merge(struct latch_hist *dst, const struct latch_hist *src);

/*
 * The value at percentile pct (0 < pct <= 100) of what was recorded: the midpoint of the
 * bucket holding the ceil(pct / 100 * count)-th smallest value, clamped to [min, max] (so 100
 * gives the exact maximum and a histogram of one value gives that value). 0 when empty.
 */
uint64_t latch_hist_percentile(const struct latch_hist *h, double pct);

/* The exact mean (0 when empty). */
double latch_hist_mean(const struct latch_hist *h);

/* The bucket a value falls in, and the smallest and largest values of a bucket (tests). */
unsigned latch_hist_bucket_of(uint64_t value);
uint64_t latch_hist_bucket_low(unsigned bucket);
uint64_t latch_hist_bucket_high(unsigned bucket);

#endif /* CLIENTS_LATCH_HIST_H */
