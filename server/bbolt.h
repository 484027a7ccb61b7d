/*
 * bbolt.h — a writer of bbolt database files (the on-disk format etcd's backend uses), for
 * the Maintenance Snapshot stream: `etcdctl snapshot status` and `snapshot restore` open
 * what latch sends as a bbolt file. docs/decisions/maintenance.md describes the format as
 * we write it; go.etcd.io/bbolt 1.3 (page.go, db.go, bucket.go) is the reader it must
 * satisfy.
 *
 * The writer builds one committed image, front to back, with bounded memory:
 *
 *   page 0, 1   meta pages (magic 0xED0CDAED, version 2, page size 4096, the root bucket,
 *               the freelist page, the high-water mark, txid 0 and 1, FNV-1a 64 checksum);
 *               written last, by srv_bbolt_finish, once the root is known
 *   page 2      the freelist: empty (every page below the high-water mark is in use)
 *   page 3 ...  each bucket's B+tree, bottom up: leaf pages filled in key order as puts
 *               arrive (a value larger than a page gets a page with overflow pages), then
 *               branch pages over the first keys of the level below, up to one root
 *   last        the root bucket's leaf page: one bucket entry per bucket, in name order
 *
 * An empty bucket is written inline (a bucket header with root 0 and an empty page). Only
 * the keys and branch keys of the bucket being written and one page are held in memory.
 *
 * Usage: new -> for each bucket (any order; names unique): bucket_begin, put... (keys
 * strictly increasing), bucket_end -> finish -> free. Errors leave the writer unusable
 * (free it). One thread at a time.
 */
#ifndef SRV_BBOLT_H
#define SRV_BBOLT_H

#include <stddef.h>
#include <stdint.h>

#define SRV_BBOLT_PAGE_BYTES  4096u
#define SRV_BBOLT_MAGIC       0xED0CDAEDu
#define SRV_BBOLT_VERSION     2u
/* Buckets per file: etcd's backend has ten. */
#define SRV_BBOLT_BUCKETS_MAX 16u
/* Longest key: bbolt's MaxKeySize. */
#define SRV_BBOLT_KEY_MAX     32768u
/* Largest value: bbolt's MaxValueSize is 2^31 - 2; we need at most a 1.5 MiB etcd value. */
#define SRV_BBOLT_VALUE_MAX   ((uint32_t)1 << 30)

struct srv_bbolt;

/* A writer of the image into fd (borrowed, opened for writing, positioned anywhere: pages
 * are written with pwrite at their offsets). Returns 0 or LATCH_ENOMEM. */
int srv_bbolt_new(int fd, struct srv_bbolt **out);

/* Starts bucket name (1..255 bytes, copied). LATCH_EINVAL (bad name, a bucket already
 * open), LATCH_EEXIST (name used), LATCH_ETOOBIG (SRV_BBOLT_BUCKETS_MAX reached). */
int srv_bbolt_bucket_begin(struct srv_bbolt *w, const void *name, size_t name_len);

/* Adds key -> value to the open bucket (both copied or written out before returning).
 * Keys must be strictly increasing (memcmp order, shorter first on a tie). LATCH_EINVAL
 * (no open bucket, empty or too long key, order), LATCH_ETOOBIG (value), LATCH_EIO,
 * LATCH_ENOMEM. */
int srv_bbolt_put(
    struct srv_bbolt *w, const void *key, size_t key_len, const void *value, size_t value_len);

/* Completes the open bucket. LATCH_EINVAL (none open), LATCH_EIO, LATCH_ENOMEM. */
int srv_bbolt_bucket_end(struct srv_bbolt *w);

/* Writes the root bucket, the freelist and both meta pages. *size_out gets the image's
 * size in bytes (a multiple of SRV_BBOLT_PAGE_BYTES). LATCH_EINVAL (a bucket still open),
 * LATCH_EIO, LATCH_ENOMEM. */
int srv_bbolt_finish(struct srv_bbolt *w, uint64_t *size_out);

void srv_bbolt_free(struct srv_bbolt *w); /* NULL is ignored */

#endif /* SRV_BBOLT_H */
