/*
 * store_wal.h — the Raft log, hard state, compaction point, snapshot metadata and install
 * mark as append-only segment files, with ONE fdatasync per append where raft.mdb's LMDB
 * commit waits twice (its pages, then its meta page). store_open uses it for <dir>/wal when
 * built with LATCH_STORE_WAL (the default; store_log.c routes store_log_* to it). The
 * contracts mirror store.h's store_log_* functions; docs/decisions/store-layout.md ("The
 * append-only log") has the file format, the sync argument and what a crash leaves.
 *
 * Files: <dir>/<16 hex digits>.seg, one per segment, numbered upwards; <dir>/seg.tmp while
 * a new segment's head is written (renamed into place once synced). Nothing else may be in
 * <dir> (a foreign file makes store_wal_open refuse it, LATCH_EFORMAT).
 *
 * Threads. One thread writes (append, compact, install, record_snapshot, install_mark).
 * Readers may run on other threads at the same time: every read takes the wal's lock
 * shared; a writer takes it exclusively only to publish what it has already synced, so a
 * reader never sees a record that is not on disk.
 *
 * Errors: 0 or a negative LATCH_E* code. A failed write or fdatasync puts the wal in ERROR:
 * every later write returns that error (after a failed fdatasync the page cache may not
 * hold what the disk holds; only a reopen tells).
 */
#ifndef LATCH_STORE_WAL_H
#define LATCH_STORE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch_arena.h"
#include "store.h"

#define STORE_WAL_VERSION 1u

struct store_wal_options {
    const char *dir;         /* created (0700) when missing; borrowed during open */
    bool no_sync;            /* tests and benchmarks only: no fdatasync */
    uint64_t segment_bytes;  /* a new segment starts past this (0: 64 MiB) */
    uint64_t prealloc_bytes; /* space reserved at a time, as zeros (0: 1 MiB) */
};

struct store_wal;

/*
 * Opens (creating when dir has no segment) the wal: scans every segment in order, checks
 * every record's CRC-32C, and rebuilds the in-memory index. A record that fails its check
 * at the tail of the newest segment (a crash mid-append: nothing valid follows it) is cut
 * away; one followed by a valid record, or in an older segment, is LATCH_ECORRUPT with
 * errmsg naming the file and the offset. Errors: LATCH_EINVAL, LATCH_EIO, LATCH_ENOMEM,
 * LATCH_EFORMAT (foreign file, bad magic, newer version), LATCH_ECORRUPT.
 */
int store_wal_open(const struct store_wal_options *o,
                   struct store_wal **out,
                   char *errmsg,
                   size_t errmsg_size);
void store_wal_close(struct store_wal *w); /* NULL is ignored */

/* store_log_append: truncates from entries[0].index, appends, records hs; one record, one
 * fdatasync. Errors: LATCH_EINVAL, LATCH_ENOMEM, LATCH_EIO (now in ERROR). */
int store_wal_append(struct store_wal *w,
                     const struct store_entry *entries,
                     size_t n,
                     const struct store_hard_state *hs);

int store_wal_hard_state(struct store_wal *w, struct store_hard_state *hs);
uint64_t store_wal_first_index(struct store_wal *w);
uint64_t store_wal_last_index(struct store_wal *w);

/* store_log_term's contract (LATCH_ECOMPACTED, LATCH_EUNAVAILABLE). */
int store_wal_term(struct store_wal *w, uint64_t index, uint64_t *term_out);

/* store_log_entries' contract; entries and their data are allocated in a (the caller owns
 * their lifetime) and each entry's CRC is verified after the read. */
int store_wal_entries(struct store_wal *w,
                      uint64_t lo,
                      uint64_t hi,
                      uint64_t max_bytes,
                      struct latch_arena *a,
                      const struct store_entry **out,
                      size_t *count_out);

/* Makes index the compaction point (the caller checked the applied bound, as
 * store_log_compact does) and unlinks every older segment whose entries all lie at or below
 * it. Errors: LATCH_ECOMPACTED, LATCH_EINVAL, LATCH_EIO. */
int store_wal_compact(struct store_wal *w, uint64_t index);

int store_wal_snapshot_meta(struct store_wal *w, struct store_snap_meta *out);
int store_wal_record_snapshot(struct store_wal *w, const struct store_snap_meta *m);

/* store__log_install's contract, in one record (and one fdatasync). */
int store_wal_install(struct store_wal *w, const struct store_snap_meta *m);

/* store__install_mark (m NULL: clear) and its reading at open. */
int store_wal_install_mark(struct store_wal *w, const struct store_snap_meta *m);
bool store_wal_install_marked(struct store_wal *w, uint64_t *index, uint64_t *term);

/* fdatasync of every segment and fsync of the directory, whatever no_sync says (for a wal
 * written with no_sync and then made durable at once: a format or a conversion).
 * LATCH_EIO. */
int store_wal_sync(struct store_wal *w);

/* Bytes of every segment (their allocated sizes); fdatasyncs made so far (a probe). */
uint64_t store_wal_file_bytes(struct store_wal *w);
uint64_t store_wal_syncs(struct store_wal *w);
/* Segments on disk now (a probe for tests). */
size_t store_wal_segments(struct store_wal *w);

#endif /* LATCH_STORE_WAL_H */
