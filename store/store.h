/*
 * store.h — latch's storage engine: the only module that touches LMDB (DESIGN §4).
 *
 * A data dir holds two LMDB environments, each one file (MDB_NOSUBDIR):
 *
 *   raft.mdb   the Raft log (index -> entry), the hard state, the log's compaction point and
 *              the metadata of the newest snapshot. Written by store_log_*.
 *   state.mdb  the replicated state machine: current keys, revision history, tombstones,
 *              leases, hierarchy counters, and the applied index, membership and alarms
 *              that go with them. Written only by store_apply(); replaced whole by a
 *              snapshot install.
 *
 * Built with LATCH_STORE_WAL (the default), raft.mdb's part is the append-only log <dir>/wal
 * instead (store_wal.h: one fdatasync per append), with the same store_log_* contracts; a
 * data dir with raft.mdb is converted at open.
 *
 * Splitting them is what makes a snapshot install atomic without touching the node's own
 * vote: state.mdb is swapped by one rename(2); raft.mdb never leaves the node. See
 * docs/decisions/store-layout.md for the record formats and the reasons.
 *
 * Threads. One thread (the storage thread) calls every function that writes: store_log_append,
 * store_log_compact, store_log_install, store_apply, store_snapshot_* (store_snapshot_write
 * excepted: it may run beside it, see there). Any thread may read
 * through its own struct store_reader. The store_log_* readers (term, entries, first/last
 * index) belong to one thread at a time (the Raft thread) because store_log_entries hands
 * out a buffer the store reuses. LMDB's rule that the map may only grow while no
 * transaction is open is kept by a lock that readers hold only inside one call.
 *
 * Errors. Every fallible function returns 0 or a negative LATCH_E* code (latch_error.h).
 * After a failed commit or fsync the store is in ERROR: every later write returns LATCH_EIO
 * and store_failed() says why; only store_close() helps (SQLite pager ERROR state).
 *
 * Revisions follow etcd 3.4 (ETCD-API.md §4.1): the store starts at revision 1; each
 * command that changes at least one key bumps it by exactly one, and every event of the
 * command shares that revision (with internal sub-revisions 0, 1, 2, ... in order).
 */
#ifndef LATCH_STORE_H
#define LATCH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch_arena.h"

/* ---------------------------------------------------------------------------------- */
/* Limits                                                                             */
/* ---------------------------------------------------------------------------------- */

#define STORE_FORMAT_VERSION  1u
#define STORE_KEY_BYTES_MAX   511u            /* LMDB's compiled key limit */
#define STORE_VALUE_BYTES_MAX (1536u * 1024u) /* etcd's request limit, 1.5 MiB */
#define STORE_CONF_BYTES_MAX  4096u           /* opaque membership record */
#define STORE_TXN_OPS_MAX     128u            /* per compare/success/failure list */
#define STORE_TXN_DEPTH_MAX   8u              /* nesting of request_txn */
#define STORE_LEASE_TTL_MAX   (9000000000LL)  /* etcd's MaxLeaseTTL, seconds */
#define STORE_ERRMSG_BYTES    256u

/* ---------------------------------------------------------------------------------- */
/* Opening                                                                            */
/* ---------------------------------------------------------------------------------- */

struct store_options {
    const char *dir;            /* data dir; created (mode 0700) when missing; borrowed */
    uint64_t map_bytes_initial; /* first LMDB map size per environment (default 64 MiB) */
    uint64_t map_bytes_max;     /* the map doubles on demand up to this (default 64 GiB);
                                   past it writes fail with LATCH_ENOSPACE */
    uint64_t quota_bytes;       /* state bytes in use above which store_space() reports
                                   over_quota (default 2 GiB, etcd's); see store_space */
    bool no_sync;               /* benchmarks and tests only: commits skip fsync and lose
                                   durability (never in latchd) */
};

/* Fills o with the defaults above; o->dir is set to NULL. */
void store_options_defaults(struct store_options *o);

struct store;

/*
 * Opens the data dir o->dir, creating and formatting it when it is missing or empty.
 * Refuses, without changing a byte, a dir that is not latch's: an unknown file, an LMDB
 * file that is not ours (LATCH_EFORMAT), a newer format version (LATCH_EFORMAT), an
 * unreadable or damaged file or record (LATCH_ECORRUPT). errmsg (may be NULL) receives one
 * sentence naming the file and the reason. Finishes a snapshot install that a crash
 * interrupted (see store_snap_writer_finish). *out is released with store_close().
 * Errors: LATCH_EINVAL, LATCH_EIO, LATCH_ENOMEM, LATCH_EFORMAT, LATCH_ECORRUPT.
 */
int store_open(const struct store_options *o, struct store **out, char *errmsg, size_t errmsg_size);

/* Closes everything. Readers must have been freed. NULL is ignored. */
void store_close(struct store *s);

/* 0 while healthy; the fatal error that put the store in ERROR otherwise. */
int store_failed(const struct store *s);

/* The path of the data dir (borrowed for the life of s). */
const char *store_dir(const struct store *s);

/* ---------------------------------------------------------------------------------- */
/* Raft persistence (raft.mdb) — what consensus/'s struct raft_storage reads           */
/* ---------------------------------------------------------------------------------- */

/* Same fields, order and meaning as struct raft_entry (server/ checks this statically). */
struct store_entry {
    uint64_t term;
    uint64_t index;
    uint32_t type;
    uint32_t len;
    const uint8_t *data; /* see the function that handed it out */
};

struct store_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* Snapshot metadata: the last index and term a snapshot covers and the membership then. */
struct store_snap_meta {
    uint64_t index;
    uint64_t term;
    uint32_t conf_len;
    uint8_t conf[STORE_CONF_BYTES_MAX]; /* opaque to store/ (server/ encodes it) */
};

/*
 * Persists one ready's log part in one synced LMDB transaction, durable on return:
 * when n > 0, deletes every entry at or after entries[0].index and appends entries (which
 * must be contiguous, start at most at last + 1 and after the compaction point); then,
 * when hs is not NULL, records hs. Entries and hs are borrowed for the call.
 * Errors: LATCH_EINVAL (gap, overlap with the compacted prefix, term or commit going
 * back), LATCH_ENOSPACE, LATCH_EIO (store now in ERROR).
 */
int store_log_append(struct store *s,
                     const struct store_entry *entries,
                     size_t n,
                     const struct store_hard_state *hs);

/* The persisted hard state ({0,0,0} for a fresh store). Errors: LATCH_ECORRUPT, LATCH_EIO. */
int store_log_hard_state(struct store *s, struct store_hard_state *hs);

/* Compaction point + 1: the first entry still stored. */
uint64_t store_log_first_index(struct store *s);

/* The last stored entry; first_index - 1 when the log is empty. */
uint64_t store_log_last_index(struct store *s);

/*
 * Term of entry index, for index in [first - 1, last] (first - 1 is the compaction point).
 * Errors: LATCH_ECOMPACTED (index < first - 1), LATCH_EUNAVAILABLE (index > last),
 * LATCH_ECORRUPT (checksum).
 */
int store_log_term(struct store *s, uint64_t index, uint64_t *term_out);

/*
 * Entries [lo, hi), as many as fit in max_bytes of data but always at least one. *out
 * points at *count_out entries copied into memory the store owns; they and their data stay
 * valid until the log next changes (store_log_append, store_log_compact, a snapshot
 * install), as struct raft_storage requires, so several calls may be in use at once. Each
 * entry's checksum is verified.
 * Errors: LATCH_ECOMPACTED (lo < first), LATCH_EUNAVAILABLE (hi > last + 1), LATCH_EINVAL
 * (lo >= hi), LATCH_ECORRUPT, LATCH_ENOMEM.
 */
int store_log_entries(struct store *s,
                      uint64_t lo,
                      uint64_t hi,
                      uint64_t max_bytes,
                      const struct store_entry **out,
                      size_t *count_out);

/*
 * Releases the memory behind every entry store_log_entries has handed out. The server calls
 * it after raft_advance(), when the core keeps no data pointer (consensus/raft.h), so what a
 * follower's catch-up reads between two log changes cannot pile up. Raft thread only.
 */
void store_log_release(struct store *s);

/*
 * Drops every entry at or below index and makes index the compaction point (its term is
 * kept). index must be at or below both the last entry and the state's applied index,
 * which a snapshot or the state itself therefore covers. That applied index is the one on
 * disk: when the newest applies may not be (store_apply), state.mdb is synced first, so a
 * power loss right after never leaves the state below the compaction point. Errors:
 * LATCH_EINVAL, LATCH_ECOMPACTED (index below the current point), LATCH_EIO.
 */
int store_log_compact(struct store *s, uint64_t index);

/* Metadata of the newest snapshot recorded in raft.mdb (index 0 when none). */
int store_log_snapshot_meta(struct store *s, struct store_snap_meta *out);

/* ---------------------------------------------------------------------------------- */
/* Readers                                                                            */
/* ---------------------------------------------------------------------------------- */

/*
 * A reader is one thread's handle for read-only calls (LMDB read transactions, reused).
 * Each read call opens and closes its own short snapshot of the state, so results of two
 * calls may come from different revisions: compare header revisions when that matters.
 */
struct store_reader;

int store_reader_new(struct store *s, struct store_reader **out); /* LATCH_ENOMEM, LATCH_EIO */
void store_reader_free(struct store_reader *r);                   /* NULL is ignored */

/* The store r reads (for another thread's store_reader_new); borrowed as r's store is. */
struct store *store_reader_store(const struct store_reader *r);

/*
 * Pins one snapshot for every read call on r until store_reader_unpin: the calls in
 * between see the same revision and skip the per-call transaction setup. The server pins
 * once per event-loop turn to answer the reads of that turn together. Keep pins short: a
 * pinned snapshot keeps LMDB from reusing pages written since, and it holds off map growth
 * and snapshot installs on the storage thread until unpinned. Never pin across a wait, and
 * never on the thread that writes (it would wait on its own pin to grow the map).
 * Not nestable (LATCH_ESTATE when already pinned); also LATCH_EIO.
 */
int store_reader_pin(struct store_reader *r);
void store_reader_unpin(struct store_reader *r); /* no-op when not pinned */

struct store_status {
    int64_t revision;         /* current store revision */
    int64_t compact_revision; /* oldest readable revision; 0 when never compacted */
    uint64_t applied_index;
    uint64_t applied_term;
    bool alarm_nospace; /* the replicated NOSPACE alarm is active */
    int64_t keys_count; /* live keys */
    int64_t leases_count;
};

int store_status(struct store_reader *r, struct store_status *out);

/* The membership recorded with the applied index (conf_len 0 before the first one). */
int store_conf(struct store_reader *r, uint8_t conf[STORE_CONF_BYTES_MAX], uint32_t *conf_len);

/* ---------------------------------------------------------------------------------- */
/* The keyspace: requests and results (etcd 3.4's KV semantics, ETCD-API.md §4.1-§4.4)  */
/* ---------------------------------------------------------------------------------- */

/* A key-value as etcd's mvccpb.KeyValue. Pointers are into the result's arena. */
struct store_kv {
    const uint8_t *key;
    uint32_t key_len;
    uint32_t value_len;
    const uint8_t *value; /* NULL when keys_only */
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

/* Values as etcd's RangeRequest.SortOrder and SortTarget. */
enum store_sort_order { STORE_SORT_NONE = 0, STORE_SORT_ASCEND = 1, STORE_SORT_DESCEND = 2 };
enum store_sort_target {
    STORE_SORT_KEY = 0,
    STORE_SORT_VERSION = 1,
    STORE_SORT_CREATE = 2,
    STORE_SORT_MOD = 3,
    STORE_SORT_VALUE = 4,
};

/*
 * A range. range_end_len 0: the single key; range_end "\0" (len 1): every key >= key;
 * key "\0" with range_end "\0": everything. Filters of 0 are off. revision 0: current.
 * limit 0: no limit; with a sort or a filter the limit applies after them.
 */
struct store_range_req {
    const uint8_t *key;
    const uint8_t *range_end;
    uint32_t key_len;
    uint32_t range_end_len;
    int64_t limit;
    int64_t revision;
    uint32_t sort_order;  /* enum store_sort_order */
    uint32_t sort_target; /* enum store_sort_target */
    bool keys_only;
    bool count_only;
    int64_t min_mod_revision;
    int64_t max_mod_revision;
    int64_t min_create_revision;
    int64_t max_create_revision;
};

struct store_range_result {
    struct store_kv *kvs;
    size_t kvs_count;
    bool more;     /* the limit cut the result */
    int64_t count; /* keys in the range at that revision, before limit and filters */
};

struct store_put_req {
    const uint8_t *key;
    const uint8_t *value;
    uint32_t key_len;
    uint32_t value_len;
    int64_t lease; /* 0: none; the key leaves its previous lease */
    bool prev_kv;
    bool ignore_value;
    bool ignore_lease;
};

struct store_put_result {
    bool has_prev;
    struct store_kv prev; /* when asked for and the key existed */
};

struct store_delete_req {
    const uint8_t *key;
    const uint8_t *range_end; /* as in store_range_req */
    uint32_t key_len;
    uint32_t range_end_len;
    bool prev_kv;
};

struct store_delete_result {
    int64_t deleted;
    struct store_kv *prev_kvs; /* when asked for: the deleted key-values, key order */
    size_t prev_kvs_count;
};

/* Values as etcd's Compare.CompareTarget and Compare.CompareResult; FENCE is latch's own
 * (never reachable through the etcd API). */
enum store_compare_target {
    STORE_CMP_VERSION = 0,
    STORE_CMP_CREATE = 1,
    STORE_CMP_MOD = 2,
    STORE_CMP_VALUE = 3,
    STORE_CMP_LEASE = 4,
    STORE_CMP_FENCE = 5,
};
enum store_compare_result {
    STORE_CMP_EQUAL = 0,
    STORE_CMP_GREATER = 1,
    STORE_CMP_LESS = 2,
    STORE_CMP_NOT_EQUAL = 3,
};

/*
 * One compare over [key, range_end) (range_end_len 0: the key alone). No key in range: a
 * VALUE compare is false, the others compare against zeros. Otherwise every key in range
 * must satisfy it. number is the version, revision or lease for the non-value targets.
 *
 * FENCE (docs/decisions/locks.md): [key, range_end) is a lock's queue, whose entries are
 * ordered by create revision, and number a fencing token. The fence holds when an entry has
 * create_revision == number and a lease (lease != 0: an entry without one is a lock-delay
 * tombstone, which keeps its place in the queue but is nobody's grant), and either no entry
 * has a lower create revision, or the token's entry and every lower one (tombstones
 * included, by their own kind) are shared. An entry is shared when value_len is 1 and its key's
 * byte at offset key_len (the first byte after the queue's prefix) equals value[0];
 * value_len 0: no entry is shared (an exclusive-only queue). result is EQUAL (true when the
 * fence holds) or NOT_EQUAL; range_end_len must be non-zero and number positive
 * (store_txn_validate).
 */
struct store_compare {
    uint32_t target; /* enum store_compare_target */
    uint32_t result; /* enum store_compare_result */
    const uint8_t *key;
    const uint8_t *range_end;
    uint32_t key_len;
    uint32_t range_end_len;
    int64_t number;
    const uint8_t *value;
    uint32_t value_len;
};

enum store_op_type {
    STORE_OP_RANGE = 1,
    STORE_OP_PUT = 2,
    STORE_OP_DELETE = 3,
    STORE_OP_TXN = 4,
};

struct store_txn_req;

struct store_op {
    uint32_t type; /* enum store_op_type */
    union {
        struct store_range_req range;
        struct store_put_req put;
        struct store_delete_req del;
        const struct store_txn_req *txn;
    } u;
};

struct store_txn_req {
    const struct store_compare *compares;
    const struct store_op *success;
    const struct store_op *failure;
    size_t compares_count;
    size_t success_count;
    size_t failure_count;
};

struct store_txn_result;

struct store_op_result {
    uint32_t type; /* enum store_op_type, the same as the op's */
    union {
        struct store_range_result range;
        struct store_put_result put;
        struct store_delete_result del;
        struct store_txn_result *txn;
    } u;
};

struct store_txn_result {
    bool succeeded;
    struct store_op_result *responses; /* one per op of the branch taken, same order */
    size_t responses_count;
};

/*
 * Checks a transaction as etcd does before proposing it (and as store_apply does again):
 * non-empty keys (LATCH_EINVAL, "key is not provided"), key and value sizes (LATCH_ETOOBIG),
 * at most STORE_TXN_OPS_MAX ops per list (LATCH_ETOOMANYOPS), no key put twice or put and
 * deleted in one branch, nested txns included (LATCH_EDUPKEY), nesting depth, known enum
 * values, ignore_value/ignore_lease combined with a value/lease (LATCH_EINVAL).
 * errmsg (may be NULL) gets a sentence.
 */
int store_txn_validate(const struct store_txn_req *t, char *errmsg, size_t errmsg_size);

/*
 * A read-only range on the reader's current snapshot. Results are copied into a (valid
 * until its next reset). *header_revision (may be NULL) gets the current revision, which
 * etcd puts in the header also for reads at an older revision.
 * Errors: LATCH_EINVAL (empty key), LATCH_ECOMPACTED (revision below the compaction point),
 * LATCH_EFUTUREREV (revision above the current one), LATCH_ENOMEM, LATCH_EIO.
 */
int store_range(struct store_reader *r,
                const struct store_range_req *q,
                struct latch_arena *a,
                struct store_range_result *out,
                int64_t *header_revision);

/* ---------------------------------------------------------------------------------- */
/* History (watch catch-up)                                                           */
/* ---------------------------------------------------------------------------------- */

enum store_event_type { STORE_EVENT_PUT = 0, STORE_EVENT_DELETE = 1 }; /* as mvccpb.Event */

/*
 * An event as etcd's mvccpb.Event: a PUT carries the full key-value; a DELETE carries only
 * the key and mod_revision (the delete's revision). prev is the key's previous state when
 * asked for and it existed (never for a create).
 */
struct store_event {
    uint32_t type; /* enum store_event_type */
    bool has_prev;
    struct store_kv kv;
    struct store_kv prev;
};

struct store_history_req {
    int64_t start_revision; /* first revision wanted, >= 1 */
    const uint8_t *key;     /* NULL/0: every key; else as store_range_req */
    const uint8_t *range_end;
    uint32_t key_len;
    uint32_t range_end_len;
    bool prev_kv;
    size_t max_events; /* stop after this many events ... */
    size_t max_bytes;  /* ... or this many key+value bytes, */
                       /* but never inside a revision, and always >= 1 revision */
};

/*
 * Events with revision >= start_revision in (revision, sub-revision) order, read in one
 * short read transaction. *next_revision is where the next call should start (the
 * current revision + 1 when the history was exhausted). Errors: LATCH_ECOMPACTED
 * (start_revision below the compaction point), LATCH_EINVAL, LATCH_ENOMEM, LATCH_EIO.
 */
int store_history(struct store_reader *r,
                  const struct store_history_req *q,
                  struct latch_arena *a,
                  struct store_event **events_out,
                  size_t *count_out,
                  int64_t *next_revision);

/* ---------------------------------------------------------------------------------- */
/* Hierarchy (DESIGN §2)                                                              */
/* ---------------------------------------------------------------------------------- */

/*
 * A path is a key that starts with '/'; its parent is the part before the last '/' ("/"
 * for "/a"). Counters are kept for every parent of every path key written through any
 * API. A child of P is a key P/name (or /name for P = "/") that exists; a key deeper below
 * P whose intermediate nodes do not exist (etcd API keys) makes no child of P.
 *
 * store_path_valid: the native API's rules: starts with '/', no trailing '/' (except "/"),
 * no empty segment, no "." or ".." segment, no NUL byte, at most STORE_KEY_BYTES_MAX bytes.
 */
bool store_path_valid(const uint8_t *path, uint32_t path_len);

struct store_stat {
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
    int64_t num_children;
    int64_t cversion;          /* creates + deletes of children since the node was created */
    int64_t children_revision; /* revision of the last child create or delete; 0 if none */
    uint32_t value_len;
};

/* Stat of path at the current revision. "/" always exists (revisions 0). LATCH_ENOTFOUND. */
int store_stat(struct store_reader *r,
               const uint8_t *path,
               uint32_t path_len,
               struct store_stat *out);

struct store_child {
    const uint8_t *name; /* the last segment, into the arena */
    uint32_t name_len;
    struct store_stat stat;
};

/*
 * Up to limit (0: no limit) children of path in name order, starting after the child
 * named after (NULL: from the first), found by skip-scan: the cost grows with the number
 * of children, not with the size of their subtrees. *more says whether more follow.
 * A path that does not exist has no children (count 0) but is not an error.
 */
int store_children(struct store_reader *r,
                   const uint8_t *path,
                   uint32_t path_len,
                   const uint8_t *after,
                   uint32_t after_len,
                   size_t limit,
                   struct latch_arena *a,
                   struct store_child **out,
                   size_t *count_out,
                   bool *more);

/* ---------------------------------------------------------------------------------- */
/* Leases                                                                             */
/* ---------------------------------------------------------------------------------- */

struct store_lease {
    int64_t id;
    int64_t ttl;           /* granted, seconds */
    int64_t remaining_ttl; /* last checkpoint, seconds; 0 when never checkpointed */
    int64_t grant_revision;
};

/* Lease id with its keys (keys into a, key order) when keys is true. LATCH_ENOTFOUND. */
int store_lease_get(struct store_reader *r,
                    int64_t id,
                    bool keys,
                    struct latch_arena *a,
                    struct store_lease *out,
                    struct store_kv **keys_out,
                    size_t *keys_count);

/* Up to max leases with id > after_id in id order into a. */
int store_lease_list(struct store_reader *r,
                     int64_t after_id,
                     size_t max,
                     struct latch_arena *a,
                     struct store_lease **out,
                     size_t *count_out);

/* ---------------------------------------------------------------------------------- */
/* Commands: what a Raft entry carries, and how it is applied                         */
/* ---------------------------------------------------------------------------------- */

enum store_cmd_type {
    STORE_CMD_TXN = 1, /* a Put, DeleteRange, Range or Txn as a txn */
    STORE_CMD_COMPACT = 2,
    STORE_CMD_LEASE_GRANT = 3,
    STORE_CMD_LEASE_REVOKE = 4,
    STORE_CMD_LEASE_CHECKPOINT = 5,
    STORE_CMD_ALARM = 6,
    STORE_CMD_TREE_CREATE = 7,
    STORE_CMD_TREE_DELETE = 8,
    STORE_CMD_TREE_MULTI = 9,
};

#define STORE_TREE_OPS_MAX 128u /* ops of one TREE_MULTI */

enum store_tree_op_type {
    STORE_TREE_OP_CREATE = 1,
    STORE_TREE_OP_SET = 2,
    STORE_TREE_OP_DELETE = 3,
    STORE_TREE_OP_CHECK = 4,
};

/*
 * One op of a TREE_MULTI, with ZooKeeper's semantics on latch's paths (store_path_valid; the
 * root is never written):
 *   CREATE  as the TREE_CREATE command (path, value, lease, make_parents, sequential):
 *           LATCH_EEXIST, LATCH_ENOTFOUND (no parent, or no lease), LATCH_EINVAL (path).
 *   SET     path must exist (LATCH_ENOTFOUND); expected_version 0 or its version
 *           (LATCH_EBADVERSION); the value is replaced, the node keeps its lease.
 *   DELETE  as the TREE_DELETE command (expected_version, recursive; LATCH_ENOTEMPTY).
 *   CHECK   absent: the path must not exist (LATCH_EEXIST); else it must exist
 *           (LATCH_ENOTFOUND) with expected_version 0 or its version (LATCH_EBADVERSION).
 * Ops run in order and see the effects of the ones before them.
 */
struct store_tree_op {
    uint32_t type; /* enum store_tree_op_type */
    const uint8_t *path;
    const uint8_t *value;
    uint32_t path_len;
    uint32_t value_len;
    int64_t lease;            /* CREATE */
    int64_t expected_version; /* SET, DELETE, CHECK */
    bool make_parents;        /* CREATE */
    bool sequential;          /* CREATE */
    bool recursive;           /* DELETE */
    bool absent;              /* CHECK */
};

/* What one op of an applied TREE_MULTI did (CREATE and SET: the node after it). */
struct store_tree_op_result {
    int64_t created_revision; /* CREATE: the node's create revision (a sequential name's
                                 suffix) */
    int64_t deleted;          /* DELETE: nodes deleted */
    int64_t version;          /* CREATE, SET: the node's version after the op */
    int64_t create_revision;  /* CREATE, SET */
    int64_t lease;            /* CREATE, SET */
};

enum store_alarm_action { STORE_ALARM_ACTIVATE = 1, STORE_ALARM_DEACTIVATE = 2 };
enum store_alarm_kind { STORE_ALARM_NOSPACE = 1 };

struct store_lease_checkpoint {
    int64_t id;
    int64_t remaining_ttl;
};

struct store_cmd {
    uint32_t type; /* enum store_cmd_type */
    union {
        /* One revision for the whole txn. A plain Put is a txn with no compares and one
         * success op; the result is then responses[0]. */
        struct store_txn_req txn;
        struct {
            int64_t revision;
        } compact;
        struct {
            int64_t id; /* 0: the store picks the next unused id, deterministically */
            int64_t ttl;
        } lease_grant;
        struct {
            int64_t id;
        } lease_revoke;
        struct {
            const struct store_lease_checkpoint *items;
            size_t count;
        } lease_checkpoint;
        struct {
            uint32_t action; /* enum store_alarm_action */
            uint32_t alarm;  /* enum store_alarm_kind */
        } alarm;
        struct {
            const uint8_t *path;
            const uint8_t *value;
            uint32_t path_len;
            uint32_t value_len;
            int64_t lease;
            bool make_parents; /* create missing ancestors (empty values) first */
            /* Append the revision of this create, as 20 decimal digits (zero-padded), to
             * path: the node created is path + "%020" PRId64 of
             * result.u.tree_create.created_revision. Revisions are never reused, so
             * sequential names never repeat and sort in creation order. The checks
             * (path rules, parents, existence) apply to the name with its suffix. */
            bool sequential;
        } tree_create;
        struct {
            const uint8_t *path;
            uint32_t path_len;
            bool recursive; /* delete the whole subtree; else LATCH_ENOTEMPTY with children */
            int64_t expected_version; /* 0: any; else LATCH_EBADVERSION on mismatch */
        } tree_delete;
        /* Guards, then ops, all in one revision or nothing: every guard (a store_compare,
         * e.g. STORE_CMP_FENCE) must hold, else the command fails LATCH_EFENCED with
         * failed_op -1; then each op in order; the first that fails makes the command fail
         * with its error and failed_op its index. At most STORE_TXN_OPS_MAX guards and
         * STORE_TREE_OPS_MAX ops. */
        struct {
            const struct store_compare *guards;
            const struct store_tree_op *ops;
            size_t guards_count;
            size_t ops_count;
        } tree_multi;
    } u;
};

/* The type (enum store_cmd_type) of an encoded command without decoding it; 0 when buf is
 * too short to hold one. */
uint32_t store_cmd_type_of(const uint8_t *buf, size_t len);

/* Bytes store_cmd_encode() writes for c. */
size_t store_cmd_size(const struct store_cmd *c);

/*
 * Encodes c into buf (cap bytes) as one Raft entry payload; *len_out gets the length.
 * Errors: LATCH_EINVAL (unknown type), LATCH_ETOOBIG (cap too small).
 */
int store_cmd_encode(const struct store_cmd *c, uint8_t *buf, size_t cap, size_t *len_out);

/*
 * Decodes an entry payload. Byte strings in *out point into buf (borrowed: keep buf alive);
 * arrays are allocated in a. Every length and enum is checked: malformed bytes give
 * LATCH_EINVAL, never a read outside buf. Also LATCH_ENOMEM.
 */
int store_cmd_decode(const uint8_t *buf, size_t len, struct latch_arena *a, struct store_cmd *out);

enum store_item_kind {
    STORE_ITEM_NOOP = 0, /* an empty entry (a new leader's) or one the server ignores */
    STORE_ITEM_CMD = 1,  /* data: a store_cmd_encode()d command */
    STORE_ITEM_CONF = 2, /* data: the membership to record as of this index */
};

struct store_apply_item {
    uint64_t index;
    uint64_t term;
    uint32_t kind; /* enum store_item_kind */
    uint32_t len;
    const uint8_t *data; /* borrowed for the call */
};

/*
 * The deterministic outcome of one item: the same on every node. err is 0 or what etcd
 * would answer (LATCH_ECOMPACTED, LATCH_EFUTUREREV, LATCH_ENOKEY for a put with ignore_value
 * or ignore_lease on a missing key, LATCH_ENOTFOUND for a missing lease
 * or node, LATCH_EEXIST, LATCH_ENOSPACE while the alarm is on, store_txn_validate's error
 * for a txn that fails it, LATCH_EINVAL for bytes that do not decode, ...); a failed
 * command changes nothing.
 */
struct store_result {
    int err;
    bool skipped;     /* index was at or below the applied index: nothing done */
    uint32_t type;    /* enum store_cmd_type; 0 for NOOP and CONF items */
    int64_t revision; /* store revision after the item */
    union {
        struct store_txn_result txn;
        struct {
            int64_t id;
            int64_t ttl;
        } lease_grant;
        struct {
            int64_t deleted; /* keys deleted with the lease */
        } lease_revoke;
        struct {
            int64_t compact_revision;
        } compact;
        struct {
            int64_t created_revision; /* the node's create revision */
            int64_t parents_created;
        } tree_create;
        struct {
            int64_t deleted;
        } tree_delete;
        struct {
            int64_t failed_op; /* when err != 0: the failing op's index, -1 for a guard */
            struct store_tree_op_result *results; /* ops_count of them, into the arena */
            size_t count;
        } tree_multi;
    } u;
};

/*
 * Applies items (consecutive indexes) in ONE LMDB write transaction that also records the
 * applied index and term, and commits it: a crash leaves all of them applied or none.
 * Durability: on return the batch survives a process crash; against a power loss
 * state.mdb runs with LMDB's MDB_NOMETASYNC (unless no_sync: nothing is durable then), so
 * the newest committed batch may be undone (never half of one, never a damaged file) until
 * the next store_apply or a store_log_compact syncs it. The caller keeps every entry above
 * the applied index in the log (store_log_compact enforces it) and replays it at start.
 * Items at or below the applied index are skipped (a replay after a crash is a no-op);
 * the first other item must be applied + 1 (LATCH_EINVAL otherwise).
 * results[i] (n of them, caller-owned) get each item's outcome; what they point at lives
 * in a until its next reset. The function's own return is about the batch, not the
 * commands: LATCH_ENOSPACE (the map cannot grow; nothing applied), LATCH_ENOMEM, LATCH_EIO
 * (store now in ERROR).
 */
int store_apply(struct store *s,
                const struct store_apply_item *items,
                size_t n,
                struct latch_arena *a,
                struct store_result *results);

/* ---------------------------------------------------------------------------------- */
/* Space                                                                              */
/* ---------------------------------------------------------------------------------- */

struct store_space {
    uint64_t file_bytes;   /* state.mdb's high-water mark */
    uint64_t in_use_bytes; /* pages holding data (file minus free pages) */
    uint64_t quota_bytes;
    bool over_quota; /* in_use_bytes > quota_bytes: time to raise the NOSPACE alarm */
    uint64_t raft_file_bytes;
};

/*
 * Measures state.mdb. The NOSPACE alarm itself is replicated: the server proposes
 * STORE_CMD_ALARM when over_quota, and while it is active every command that could grow
 * the data (put, txn with a put, lease grant, tree create) applies as LATCH_ENOSPACE on
 * every node alike; ranges, deletes, revokes and compaction keep working. Compaction
 * returns pages to LMDB's free list, so in_use_bytes falls without a defrag.
 */
int store_space(struct store_reader *r, struct store_space *out);

/* ---------------------------------------------------------------------------------- */
/* Hashes and dumps (Maintenance Hash, HashKV and Snapshot)                           */
/* ---------------------------------------------------------------------------------- */

/*
 * These read the whole history in ONE read transaction of r (which must not be pinned):
 * their cost grows with the store, and while one runs the storage thread cannot grow the
 * map or install a snapshot. Call them on a worker thread with a reader of its own
 * (store_reader_new on that thread's behalf), never on the event loop.
 */

struct store_hash {
    uint32_t hash;            /* CRC-32C (Castagnoli), see below */
    int64_t revision;         /* the revision hashed up to */
    int64_t current_revision; /* the store's revision in the same snapshot */
    int64_t compact_revision;
};

/*
 * etcd's HashKV: the CRC-32C of every history record (key bytes then value bytes, in
 * (revision, sub-revision) order) with revision <= rev, as far back as compaction kept
 * them: every event since the compact revision, and each key's newest put at or below it.
 * rev 0: the current revision. Members that applied the same commands hold byte-identical
 * records, so they report the same hash. Errors: LATCH_EINVAL (rev < 0), LATCH_EFUTUREREV,
 * LATCH_ECOMPACTED (rev > 0 at or below the compact revision, as etcd's HashByRev),
 * LATCH_ECORRUPT, LATCH_EIO.
 */
int store_hash_kv(struct store_reader *r, int64_t rev, struct store_hash *out);

/* etcd's Hash: the CRC-32C of the whole history as store_hash_kv at the current revision,
 * continued over every lease record (id, then ttl, remaining ttl and grant revision).
 * Errors as store_hash_kv. */
int store_hash_all(struct store_reader *r, struct store_hash *out);

/* One history record for store_dump: kv.mod_revision is the event's revision; a DELETE
 * carries only the key. Pointers are valid during the callback only. */
struct store_dump_event {
    int64_t revision;
    uint32_t sub;
    uint32_t type; /* enum store_event_type */
    struct store_kv kv;
};

struct store_dump_info {
    int64_t revision;
    int64_t compact_revision;
    uint64_t applied_index;
    uint64_t applied_term;
    bool alarm_nospace;
    int64_t events_count; /* filled as the dump goes */
};

/* Callbacks of store_dump; each may be NULL, each returns 0 or an error that stops the
 * dump and is returned by it. */
struct store_dump_ops {
    int (*begin)(void *data, const struct store_dump_info *info); /* before the records */
    int (*event)(void *data, const struct store_dump_event *ev);  /* (revision, sub) order */
    int (*lease)(void *data, const struct store_lease *l);        /* id order, after events */
};

/*
 * Walks one consistent snapshot of the state: begin, then every history record, then
 * every lease. info gets the snapshot's figures. Errors: the callbacks' own,
 * LATCH_ECORRUPT, LATCH_EIO.
 */
int store_dump(struct store_reader *r,
               const struct store_dump_ops *ops,
               void *data,
               struct store_dump_info *info);

/* ---------------------------------------------------------------------------------- */
/* Snapshots                                                                          */
/* ---------------------------------------------------------------------------------- */

/*
 * A snapshot file is a header (magic, format version, index, term, membership, data
 * length, CRC-32C of the data) followed by a compacted copy of state.mdb
 * (mdb_env_copyfd2 with MDB_CP_COMPACT) taken in one read transaction.
 */

/*
 * Writes a snapshot of the current applied state to <dir>/snap/<index>-<term>.snap
 * (written to a temporary name, fsynced, then renamed), records its metadata in raft.mdb
 * and fills meta. path_out (may be NULL) receives the file's path.
 * Errors: LATCH_EIO, LATCH_ENOSPACE, LATCH_ENOMEM.
 */
int store_snapshot_create(struct store *s,
                          struct store_snap_meta *meta,
                          char *path_out,
                          size_t path_cap);

/*
 * store_snapshot_create in two steps, so that the copy need not hold up the writing thread:
 * store_snapshot_write makes the file (as above) and fills meta, but records nothing; it may
 * run on a thread of its own while the writing thread goes on (the copy is one LMDB read
 * transaction; it holds off only map growth and snapshot installs), one call at a time per
 * store. store_snapshot_record then records meta in raft.mdb and deletes older files; it is
 * a write (the writing thread). Errors: as store_snapshot_create.
 */
int store_snapshot_write(struct store *s,
                         struct store_snap_meta *meta,
                         char *path_out,
                         size_t path_cap);
int store_snapshot_record(struct store *s, const struct store_snap_meta *meta);

/* The path of the snapshot file store_snapshot_create makes for (index, term), into buf
 * (cap bytes; asserted large enough, 4096 always is). The file may not exist. */
void store_snapshot_path(
    const struct store *s, uint64_t index, uint64_t term, char *buf, size_t cap);

struct store_snap_reader;

/* Opens a snapshot file for streaming; meta gets its header. LATCH_ENOTFOUND, LATCH_ECORRUPT. */
int store_snap_reader_open(struct store *s,
                           const char *path,
                           struct store_snap_meta *meta,
                           struct store_snap_reader **out);

/* Up to cap bytes of the file's stream (header included) into buf; *n_out 0 at the end. */
int store_snap_reader_read(struct store_snap_reader *rd, uint8_t *buf, size_t cap, size_t *n_out);

uint64_t store_snap_reader_size(const struct store_snap_reader *rd); /* whole stream, bytes */
void store_snap_reader_close(struct store_snap_reader *rd);          /* NULL is ignored */

struct store_snap_writer;

/* Starts receiving a snapshot stream into a temporary file in the data dir. */
int store_snap_writer_new(struct store *s, struct store_snap_writer **out);

/* Appends the next bytes of the stream. LATCH_ECORRUPT (bad header), LATCH_ETOOBIG, LATCH_EIO. */
int store_snap_writer_write(struct store_snap_writer *w, const uint8_t *buf, size_t n);

/*
 * Checks, without installing, that the whole stream is in and intact: the header decoded, the
 * data part has the announced length and CRC, and it opens as a latch state at the header's
 * index with the header's membership (read through the page cache: no fsync, which finish
 * does). w takes no more data after it; finish skips the copy check. meta (may be NULL)
 * gets the header's metadata.
 * On failure w stays failed: abort it. Errors: LATCH_ECORRUPT (short, too long, bad CRC, not
 * a latch state, metadata mismatch), LATCH_EFORMAT, LATCH_ETOOBIG, LATCH_EIO, LATCH_ENOMEM.
 */
int store_snap_writer_verify(struct store_snap_writer *w, struct store_snap_meta *meta);

/*
 * Completes the stream and installs it: checks length and CRC and that the copy opens as a
 * latch state at the header's index, fsyncs, then atomically replaces state.mdb (rename)
 * and resets raft.mdb to the snapshot (entries after it are kept only when the log holds
 * the snapshot's index with its term). A crash at any point leaves the old state or the
 * new one, never a mix; store_open completes a half-finished reset. Readers stay valid:
 * their next call reads the new state.
 * Frees w in every case. meta (may be NULL) gets the installed snapshot's metadata.
 * Errors: LATCH_ECORRUPT, LATCH_ESNAPOLD (not newer than the applied index), LATCH_EIO.
 */
int store_snap_writer_finish(struct store_snap_writer *w, struct store_snap_meta *meta);

void store_snap_writer_abort(struct store_snap_writer *w); /* NULL is ignored */

#endif /* LATCH_STORE_H */
