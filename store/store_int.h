/*
 * store_int.h — declarations shared by the files of store/ and by nothing else.
 *
 * INVARIANTS (checked by the functions named; tests in tests/unit/store/)
 *
 *  I1  applied index and state are one: every LMDB write transaction on state.mdb is made by
 *      store_apply() and records the applied index with the changes (store_apply.c).
 *  I2  The revision only grows; a command bumps it by one iff it wrote at least one event,
 *      and all its events carry that revision with sub-revisions 0, 1, ... (store__w_end_cmd).
 *  I3  kv holds exactly the live keys; a key has a tomb record iff its newest event is a
 *      delete that compaction has not yet dropped; never both (store__kv_put, _delete).
 *  I4  hist holds, for every revision >= compact_revision, every event; below it, for each
 *      key only its newest put at or below compact_revision (store__compact).
 *  I5  Every event's prev pointer names the key's previous event or (0, 0); a pointer to
 *      an event below compact_revision that hist no longer holds means "absent" (a dropped
 *      tombstone or an older version that no read at >= compact_revision can reach).
 *  I6  lease_keys holds (lease, key) iff kv[key].lease == lease != 0 (store__lease_attach).
 *  I7  tree[p].num_children equals the number of existing keys that are children of p;
 *      tree[p] exists only if num_children > 0, or p exists as a key, or p is "/"; an
 *      absent record reads as zeros (store_tree.c).
 *  I8  The log (raft.mdb, or the wal: store_wal.c) is contiguous from first_index to
 *      last_index; every entry's CRC-32C covers its index, term, type and data (store_log.c,
 *      store_wal.c).
 *
 * STATE DIAGRAM of the store object
 *
 *   store_open ──> OPEN ──(failed commit / fsync: store__fail)──> ERROR ──store_close──> ∅
 *                   │  ^
 *                   │  └── store_snap_writer_finish: state.mdb replaced, readers reset
 *                   └──store_close──> ∅
 */
#ifndef LATCH_STORE_INT_H
#define LATCH_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <lmdb.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "store.h"

#define STORE_PATH_MAX 4096u

/* Internal error: the LMDB map is full. store__write grows the map and runs the work again;
 * it never leaves store/. */
#define STORE__EMAPFULL (-1000)

/* Internal error: one LMDB transaction dirtied more pages than LMDB allows (MDB_TXN_FULL).
 * Not deterministic across nodes (page layouts differ), so it fails the batch, never a
 * command. store__write reports it to the caller as LATCH_ETOOBIG. */
#define STORE__ETXNFULL (-1001)

/* Errors that abort a whole write batch (not a command's deterministic outcome). */
static inline bool store__err_is_system(int err)
{
    return err == LATCH_EIO || err == LATCH_ENOMEM || err == LATCH_ECORRUPT ||
           err == STORE__EMAPFULL || err == STORE__ETXNFULL;
}

/* ---------------------------------------------------------------------------------- */
/* Byte order                                                                         */
/* ---------------------------------------------------------------------------------- */

/* Big-endian for LMDB keys (byte order = numeric order); little-endian inside values. */
static inline void store__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t store__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}
static inline void store__put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t store__get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void store__put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t store__get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}
static inline void store__put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t store__get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---------------------------------------------------------------------------------- */
/* The store object                                                                   */
/* ---------------------------------------------------------------------------------- */

/* One LMDB environment (one file, MDB_NOSUBDIR) and the lock that lets its map grow. */
struct store__env {
    MDB_env *env;
    char path[STORE_PATH_MAX];
    uint64_t map_bytes;
    /* Readers hold it shared for the length of one call; the writer takes it exclusively
     * to grow the map (LMDB: no transaction may be open in the process) or to swap the
     * file during a snapshot install. */
    pthread_rwlock_t lock;
};

/* Room for "<dir>/<file name>" in a STORE_PATH_MAX buffer. */
#define STORE_DIR_MAX (STORE_PATH_MAX - 64u)

struct store_wal; /* store_wal.h */

struct store {
    struct store_options opt;
    char dir[STORE_DIR_MAX];
    atomic_int failed; /* 0, or the error that put us in ERROR */

    struct store__env raft; /* raft.mdb (with LATCH_STORE_WAL: only while converting it) */
    struct store_wal *wal;  /* LATCH_STORE_WAL: the log in <dir>/wal (store_wal.h); else NULL */
    MDB_dbi r_meta;         /* "format", "hard", "first", "snap" */
    MDB_dbi r_log;          /* index (be64) -> entry record */

    struct store__env state; /* state.mdb */
    MDB_dbi meta;            /* "format", "rev", "compact", "applied", ... */
    MDB_dbi kv;              /* user key -> kv record (live keys only) */
    MDB_dbi hist;            /* (rev be64, sub be32) -> event record */
    MDB_dbi tomb;            /* user key -> (rev, sub) of its delete event */
    MDB_dbi lease;           /* id be64 -> lease record */
    MDB_dbi lease_keys;      /* id be64 -> user keys (MDB_DUPSORT) */
    MDB_dbi tree;            /* path -> tree record (hierarchy counters) */

    /* state.mdb runs with MDB_NOMETASYNC unless no_sync (store.c env_open). The writing
     * thread's: an applied index that state.mdb holds on disk for sure (a power loss
     * included), never above the real one; 0 until store__state_sync first syncs. */
    uint64_t state_synced_applied;
    uint64_t state_syncs; /* times store__state_sync synced (a probe for tests) */

    /* Raft-thread state for store_log_entries and the log readers. What store_log_entries
     * hands out lives in log_arena until the log next changes (store__log_changed). */
    MDB_txn *log_rtxn;
    struct store_entry *log_buf; /* scratch headers while reading */
    size_t log_buf_cap;
    struct latch_arena log_arena;

    /* The revision of the newest committed state.mdb transaction, published by
     * store_apply so a read at the current revision need not look it up in meta
     * (store__current_rev). pub_txnid 0: nothing published. */
    _Atomic uint64_t pub_txnid;
    _Atomic int64_t pub_rev;

    /* Live readers, so a snapshot install can drop their transactions. */
    pthread_mutex_t readers_lock;
    struct store_reader *readers;
};

struct store_reader {
    struct store *s;
    struct store_reader *prev, *next; /* in s->readers */
    MDB_txn *txn;       /* state.mdb read txn, reset between calls; NULL: begin a new one */
    MDB_txn *raft_txn;  /* raft.mdb read txn for store_space; same life */
    bool pinned;        /* store_reader_pin: txn stays open, state.lock stays held shared */
    uint64_t rev_txnid; /* store__reader_rev's cache: the revision of snapshot rev_txnid */
    int64_t rev;
};

/* Maps an LMDB return code: MDB_NOTFOUND -> LATCH_ENOTFOUND, MDB_MAP_FULL ->
 * STORE__EMAPFULL, MDB_TXN_FULL -> STORE__ETXNFULL, corruption codes -> LATCH_ECORRUPT,
 * ENOMEM -> LATCH_ENOMEM, anything else -> LATCH_EIO. 0 stays 0. */
int store__mdb_err(int mdb_rc);

/* Puts s in ERROR with err (first error wins) and logs why. Returns err. */
int store__fail(struct store *s, int err, const char *what);

/*
 * Runs fn(txn, arg) in a write transaction on e and commits it. When fn or the commit
 * reports a full map, aborts, doubles the map (up to map_bytes_max: LATCH_ENOSPACE) and
 * runs fn again from the start, so fn must not keep state across calls except through
 * txn. Any other error of fn aborts and is returned. A failed commit puts the store in
 * ERROR (LATCH_EIO). Refuses with s->failed when already in ERROR.
 */
int store__write(struct store *s,
                 struct store__env *e,
                 int (*fn)(MDB_txn *txn, void *arg),
                 void *arg);

/* Opens r's read transaction on state.mdb (taking state.lock shared) / closes it. Every
 * read call is wrapped in exactly one begin/end pair. */
int store__read_begin(struct store_reader *r, MDB_txn **txn);
void store__read_end(struct store_reader *r);

/* The same for raft.mdb, for the Raft thread's log readers (s->log_rtxn). */
int store__log_read_begin(struct store *s, MDB_txn **txn);
void store__log_read_end(struct store *s);

/* The same for a reader's raft.mdb transaction (store_space). */
int store__raft_read_begin(struct store_reader *r, MDB_txn **txn);
void store__raft_read_end(struct store_reader *r);

/*
 * Makes state.mdb's newest commit durable against a power loss (mdb_env_sync: the meta page
 * MDB_NOMETASYNC left in the page cache) unless state_synced_applied already reaches index;
 * *applied gets the applied index that is now on disk (>= index unless the state has not
 * applied that far). With no_sync only reads the applied index. The writing thread only.
 * Errors: LATCH_ECORRUPT, LATCH_EIO (store now in ERROR).
 */
int store__state_sync(struct store *s, uint64_t index, uint64_t *applied);

/* Opens state.mdb (creating and formatting it when missing) into s->state.env and its
 * dbis. Used by store_open and by a snapshot install after the rename. */
int store__state_env_open(struct store *s, char *errmsg, size_t errmsg_size);

/*
 * The current revision as of txn's snapshot of state.mdb: the published value when it
 * belongs to that snapshot (same LMDB transaction id), else meta "rev". Never newer than
 * the data txn sees, which is what makes a header revision a safe watch start.
 */
int store__current_rev(struct store *s, MDB_txn *txn, int64_t *rev);

/* store__current_rev cached per reader for its snapshot (a pinned reader asks often). */
int store__reader_rev(struct store_reader *r, MDB_txn *txn, int64_t *rev);

/* Publishes (txnid, rev) after store_apply committed; invalidates with txnid 0. */
void store__rev_publish(struct store *s, uint64_t txnid, int64_t rev);

/* Aborts every reader's state.mdb transaction (they begin a new one on their next call).
 * The caller holds s->state.lock exclusively (snapshot install). */
void store__readers_drop_txns(struct store *s);

/* Bit of state meta "alarm" (le32) while the replicated NOSPACE alarm is active. */
#define STORE__ALARM_NOSPACE_BIT 1u

/* Records in raft.mdb (meta "installing": index le64, term le64, synced) that the snapshot
 * m is about to replace state.mdb. Called just before the rename; store__log_install
 * deletes the record in its own transaction; store_open uses it to finish or drop an
 * install that a crash interrupted. */
#define STORE__INSTALL_MARK_BYTES 16u
int store__install_mark(struct store *s, const struct store_snap_meta *m);

/* store_log.c: after a snapshot install swapped state.mdb: records "snap" = m and resets
 * the log to it (keeps entries after m->index only when the log holds m->index with
 * m->term), "first" = (m->index, m->term), raises the hard state's commit to m->index,
 * and deletes the "installing" record — all in one transaction. Idempotent: running it
 * twice with the same m leaves what running it once left. */
int store__log_install(struct store *s, const struct store_snap_meta *m);

/* store_log.c: records "snap" = m only (after store_snapshot_create). */
int store__log_record_snapshot(struct store *s, const struct store_snap_meta *m);

/* store_log.c: first and last index as store_log_first_index/last_index, but reporting a
 * damaged or unreadable raft.mdb (LATCH_ECORRUPT, LATCH_EIO) instead of asserting: for
 * store_open, which must refuse such a file with an error. */
int store__log_bounds(struct store *s, uint64_t *first, uint64_t *last);

/* store_log.c, LATCH_STORE_WAL: copies raft.mdb (open in s->raft) into the empty wal w: the
 * compaction point, every entry, the hard state, the snapshot metadata and the install
 * mark. The caller syncs w. */
int store__log_convert(struct store *s, struct store_wal *w);

/* Every change of the log (append, compact, install) calls this first: the entries handed
 * out by store_log_entries are released (their validity ends, as with raft_memstore). */
void store__log_changed(struct store *s);

/* Small fixed records in a meta DB. get: LATCH_ENOTFOUND when absent, LATCH_ECORRUPT when
 * the stored length differs from len. */
int store__meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, void *buf, size_t len);
int store__meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *buf, size_t len);
int store__meta_get_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t *v);
int store__meta_put_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t v);

/* ---------------------------------------------------------------------------------- */
/* Records of state.mdb                                                               */
/* ---------------------------------------------------------------------------------- */

/* kv record: STORE__KV_HDR bytes (create, mod, version, lease: le64; mod_sub: le32;
 * reserved le32 = 0) then the value. */
#define STORE__KV_HDR 40u
struct store__kvrec {
    int64_t create_rev;
    int64_t mod_rev;
    int64_t version;
    int64_t lease;
    uint32_t mod_sub; /* sub-revision of the event at mod_rev: the key's newest event */
    uint32_t value_len;
    const uint8_t *value; /* into the LMDB page or the caller's buffer */
};
void store__kvrec_encode_hdr(const struct store__kvrec *r, uint8_t hdr[STORE__KV_HDR]);
int store__kvrec_decode(const MDB_val *v, struct store__kvrec *r); /* LATCH_ECORRUPT */

/* hist key: rev be64, sub be32. hist value: STORE__EV_HDR bytes (type u8, 3 zero bytes,
 * key_len le32, create le64, version le64, lease le64, prev_rev le64, prev_sub le32,
 * reserved le32) then the key, then the value (puts only). */
#define STORE__HIST_KEY 12u
#define STORE__EV_HDR   48u
struct store__event {
    uint32_t type; /* enum store_event_type */
    int64_t rev;
    uint32_t sub;
    int64_t create_rev; /* puts: the key's create revision; deletes: 0 */
    int64_t version;    /* puts: the version written; deletes: 0 */
    int64_t lease;
    int64_t prev_rev; /* the key's previous event, (0, 0) if none */
    uint32_t prev_sub;
    const uint8_t *key;
    uint32_t key_len;
    uint32_t value_len;
    const uint8_t *value;
};
void store__hist_key(int64_t rev, uint32_t sub, uint8_t key[STORE__HIST_KEY]);
int store__event_decode(const MDB_val *k, const MDB_val *v, struct store__event *ev);

/* tomb value: rev le64, sub le32, reserved le32: the key's delete event. */
#define STORE__TOMB_BYTES 16u

/* tree value: num_children, cversion, children_rev (le64 each). */
#define STORE__TREE_BYTES 24u

/* lease value: ttl, remaining_ttl, grant_rev (le64 each). */
#define STORE__LEASE_BYTES 24u

/* ---------------------------------------------------------------------------------- */
/* The write context of one store_apply() batch                                       */
/* ---------------------------------------------------------------------------------- */

struct store__w {
    struct store *s;
    MDB_txn *txn;              /* state.mdb write txn (a nested one inside a txn command) */
    struct latch_arena *arena; /* results */
    int64_t rev;               /* last completed revision */
    uint32_t sub;              /* events written so far in revision rev + 1 */
    int64_t compact_rev;
    int64_t lease_next; /* next id for a lease granted with id 0 */
    bool alarm_nospace;
    /* False while the tomb table is known to be empty (it was at the start of the batch
     * and nothing has been deleted since): a create then skips the tombstone lookup. */
    bool tombs_possible;
    /* The put path's cursor on kv, reused across the batch's puts in txn kv_cur_txn; LMDB
     * frees it with that txn. Every use starts with a full search, so where an earlier
     * command left it does not matter. NULL: open one when needed. */
    MDB_cursor *kv_cur;
    MDB_txn *kv_cur_txn;
};

/* Revision the events of the running command get. */
static inline int64_t store__w_rev(const struct store__w *w)
{
    return w->rev + 1;
}

/* Closes the running command: bumps the revision when it wrote events (I2). */
static inline void store__w_end_cmd(struct store__w *w)
{
    if (w->sub > 0) {
        w->rev++;
        w->sub = 0;
    }
}

/* ---------------------------------------------------------------------------------- */
/* Keyspace (store_kv.c)                                                              */
/* ---------------------------------------------------------------------------------- */

/* The live record of key in txn; LATCH_ENOTFOUND when the key does not exist. */
int store__kv_get(
    struct store *s, MDB_txn *txn, const uint8_t *key, uint32_t key_len, struct store__kvrec *out);

/* The key's state as of revision rev (<= current, >= compact_rev): walks back from kv or
 * tomb through the prev pointers (I5). LATCH_ENOTFOUND when it did not exist then. */
int store__kv_at(struct store *s,
                 MDB_txn *txn,
                 const uint8_t *key,
                 uint32_t key_len,
                 int64_t rev,
                 struct store__kvrec *out);

/* Put with etcd's semantics (ignore_value, ignore_lease, lease must exist: LATCH_ENOTFOUND;
 * ignore_* on a missing key: LATCH_ENOTFOUND). Writes kv, hist, tomb, lease_keys and tree
 * counters. res may be NULL. Copies of prev go into w->arena. */
int store__kv_put(struct store__w *w, const struct store_put_req *q, struct store_put_result *res);

/* Deletes one existing key (LATCH_ENOTFOUND otherwise); prev (may be NULL) gets its last
 * state copied into w->arena. */
int store__kv_delete_key(struct store__w *w,
                         const uint8_t *key,
                         uint32_t key_len,
                         struct store_kv *prev);

/* DeleteRange with etcd's semantics; res may be NULL. */
int store__kv_delete_range(struct store__w *w,
                           const struct store_delete_req *q,
                           struct store_delete_result *res);

/* Range with etcd's semantics over txn at current revision cur_rev. Used by store_range
 * (read txn) and by txn commands (write txn, seeing their own earlier writes). */
int store__range(struct store *s,
                 MDB_txn *txn,
                 int64_t cur_rev,
                 int64_t compact_rev,
                 const struct store_range_req *q,
                 struct latch_arena *a,
                 struct store_range_result *out);

/* Compaction at rev (I4): LATCH_ECOMPACTED when rev <= compact_rev, LATCH_EFUTUREREV when
 * rev > current. */
int store__compact(struct store__w *w, int64_t rev);

/* store_kv.c */
/* Called by store__kv_scan for each live key: key and rec point into LMDB pages, valid for
 * the call only. Returns 0 to go on, a positive value to stop (the scan then returns 0), or
 * a negative error, which the scan returns. */
typedef int (*store__kv_visit_fn)(void *arg, const MDB_val *key, const struct store__kvrec *rec);

/* Visits the live keys of [key, range_end) (range_end as in store_range_req) in key order
 * at txn's current state, without copying them (txn compares on ranges). */
int store__kv_scan(struct store *s,
                   MDB_txn *txn,
                   const uint8_t *key,
                   uint32_t key_len,
                   const uint8_t *range_end,
                   uint32_t range_end_len,
                   store__kv_visit_fn fn,
                   void *arg);

/* ---------------------------------------------------------------------------------- */
/* Transactions (store_txn.c)                                                         */
/* ---------------------------------------------------------------------------------- */

/* Evaluates t's compares and runs the branch, with results in w->arena. A deterministic
 * error leaves nothing written (the caller runs it in a nested LMDB txn). */
int store__txn_exec(struct store__w *w,
                    const struct store_txn_req *t,
                    uint32_t depth,
                    struct store_txn_result *out);

/* store_txn.c */
/* Whether t, once validated, can still fail deterministically after it has written (so
 * the caller needs a nested LMDB txn to roll it back). store__txn_exec evaluates every
 * compare and makes every check etcd makes (ignore_* keys, leases, range revisions, the
 * NOSPACE alarm) before its first write, so the only late failure is a put with
 * ignore_value/ignore_lease whose key an earlier "delete from key" (range_end "\0") of
 * the same txn removed: etcd's duplicate-key check does not see such ranges (and etcd
 * itself panics there). True when t holds both kinds of op; conservative. */
bool store__txn_may_fail_after_write(const struct store_txn_req *t);

/* ---------------------------------------------------------------------------------- */
/* Leases (store_lease.c)                                                             */
/* ---------------------------------------------------------------------------------- */

/* 0 when lease id exists, LATCH_ENOTFOUND when not. */
int store__lease_exists(struct store *s, MDB_txn *txn, int64_t id);

/* Moves key from old_lease to new_lease in lease_keys (either may be 0) (I6). */
int store__lease_attach(
    struct store__w *w, const uint8_t *key, uint32_t key_len, int64_t old_lease, int64_t new_lease);

int store__lease_grant(struct store__w *w, int64_t id, int64_t ttl, int64_t *id_out);
int store__lease_revoke(struct store__w *w, int64_t id, int64_t *deleted_out);
int store__lease_checkpoint(struct store__w *w,
                            const struct store_lease_checkpoint *items,
                            size_t count);

/* ---------------------------------------------------------------------------------- */
/* Hierarchy (store_tree.c)                                                           */
/* ---------------------------------------------------------------------------------- */

/* Hooks called by store__kv_put (only when it creates the key) and store__kv_delete_key
 * for every key; they do nothing for keys that are not paths (I7). */
int store__tree_on_create(struct store__w *w, const uint8_t *key, uint32_t key_len);
int store__tree_on_delete(struct store__w *w, const uint8_t *key, uint32_t key_len);

int store__tree_create(struct store__w *w, const struct store_cmd *c, struct store_result *res);
int store__tree_delete(struct store__w *w, const struct store_cmd *c, struct store_result *res);
/* A TREE_MULTI (store.h); fails after writing, so it runs in a nested txn (store_apply.c).
 * res->u.tree_multi.failed_op is set on failure too. */
int store__tree_multi(struct store__w *w, const struct store_cmd *c, struct store_result *res);
/* A compare (etcd's, or STORE_CMP_FENCE) on the running command's state. */
int store__compare_eval(struct store__w *w, const struct store_compare *c, bool *ok);

/* store_tree.c */
/* Cursor positions visited by the calling thread's last store_children() call (a cost
 * probe for tests: it follows the number of children, not the size of their subtrees). */
uint64_t store__tree_last_scan_steps(void);

#endif /* LATCH_STORE_INT_H */
