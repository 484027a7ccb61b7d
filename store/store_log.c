/*
 * store_log.c — the Raft log, hard state and snapshot metadata in raft.mdb.
 *
 * Records (raft.mdb):
 *   r_log   index be64 -> term le64, type le32, crc le32, data    (STORE__ENT_HDR + len)
 *   "hard"  term le64, vote le64, commit le64, crc le32            (28 bytes)
 *   "first" index le64, term le64: the compaction point; absent = (0, 0)
 *   "snap"  index le64, term le64, conf_len le32, conf, crc le32   (24 + conf_len bytes)
 * Every CRC-32C is computed before the write and verified after each read (STYLE §5). An
 * entry's CRC covers its index (be64, as in the key), term, type and data (I8), so an entry
 * that moved to another key or lost bytes is detected as well as a flipped bit.
 *
 * Semantics are raft_memstore's (consensus/raft_memstore.c, the executable definition of
 * struct raft_storage): append truncates the suffix from its first index; terms are
 * answered for [first - 1, last]; entries returns at least one entry and then stops at the
 * byte budget; compacting at or below the point says LATCH_ECOMPACTED. Differences that
 * come from persistence: a write is one synced LMDB transaction, so a crash keeps all of an
 * append (entries and hard state) or none of it; compaction is bounded by the state's
 * applied index as it is on disk (store__state_sync) instead of an in-memory snapshot.
 *
 * Readers of the log (term, entries, first/last index) use the Raft thread's read txn
 * (store__log_read_begin); hard_state and snapshot_meta, which other threads may call,
 * use a private short read txn.
 */
#include <stdlib.h>
#include <string.h>

#include "latch_crc32c.h"
#include "store_int.h"
#include "store_wal.h"

#define STORE__ENT_HDR    16u
#define STORE__HARD_BYTES 28u
#define STORE__SNAP_FIXED 24u /* snap record without the conf bytes */

struct store__point {
    uint64_t index;
    uint64_t term;
};

/* ---------------------------------------------------------------------------------- */
/* Records                                                                            */
/* ---------------------------------------------------------------------------------- */

static MDB_val name_val(const char *name)
{
    return (MDB_val){.mv_size = strlen(name), .mv_data = (void *)name};
}

/* CRC of an entry: index be64, then the term and type as stored, then the data. */
static uint32_t ent_crc(uint64_t index, const uint8_t *hdr, const uint8_t *data, uint32_t len)
{
    uint8_t k[8];
    store__put_be64(k, index);
    uint32_t crc = latch_crc32c(0, k, sizeof(k));
    crc = latch_crc32c(crc, hdr, 12);
    return len > 0 ? latch_crc32c(crc, data, len) : crc;
}

/* Decodes an r_log record; verify also checks the CRC (LATCH_ECORRUPT). e->data points
 * into the LMDB page. */
static int ent_decode(const MDB_val *k, const MDB_val *v, bool verify, struct store_entry *e)
{
    if (k->mv_size != 8 || v->mv_size < STORE__ENT_HDR ||
        v->mv_size - STORE__ENT_HDR > UINT32_MAX) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *p = v->mv_data;
    e->index = store__get_be64(k->mv_data);
    e->term = store__get_le64(p);
    e->type = store__get_le32(p + 8);
    e->len = (uint32_t)(v->mv_size - STORE__ENT_HDR);
    e->data = p + STORE__ENT_HDR;
    if (verify && ent_crc(e->index, p, e->data, e->len) != store__get_le32(p + 12)) {
        return LATCH_ECORRUPT;
    }
    return 0;
}

static int point_get(struct store *s, MDB_txn *txn, struct store__point *pt)
{
    uint8_t rec[16];
    int rc = store__meta_get(txn, s->r_meta, "first", rec, sizeof(rec));
    if (rc == LATCH_ENOTFOUND) {
        *pt = (struct store__point){0, 0};
        return 0;
    }
    if (rc == 0) {
        pt->index = store__get_le64(rec);
        pt->term = store__get_le64(rec + 8);
    }
    return rc;
}

static int point_put(struct store *s, MDB_txn *txn, const struct store__point *pt)
{
    uint8_t rec[16];
    store__put_le64(rec, pt->index);
    store__put_le64(rec + 8, pt->term);
    return store__meta_put(txn, s->r_meta, "first", rec, sizeof(rec));
}

/* The last stored index, or the point's when the log is empty. */
static int last_get(struct store *s, MDB_txn *txn, const struct store__point *pt, uint64_t *last)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->r_log, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *last = pt->index;
        return 0;
    }
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    if (k.mv_size != 8) {
        return LATCH_ECORRUPT;
    }
    *last = store__get_be64(k.mv_data);
    return *last > pt->index ? 0 : LATCH_ECORRUPT; /* I8: entries lie after the point */
}

/* The stored entry at index (LATCH_ECORRUPT when missing: callers checked the range). */
static int
ent_get(struct store *s, MDB_txn *txn, uint64_t index, bool verify, struct store_entry *e)
{
    uint8_t kb[8];
    store__put_be64(kb, index);
    MDB_val k = {.mv_size = 8, .mv_data = kb};
    MDB_val v;
    int rc = mdb_get(txn, s->r_log, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return LATCH_ECORRUPT; /* a hole inside [first, last] breaks I8 */
    }
    return rc != 0 ? store__mdb_err(rc) : ent_decode(&k, &v, verify, e);
}

static int hard_get(struct store *s, MDB_txn *txn, struct store_hard_state *hs)
{
    uint8_t rec[STORE__HARD_BYTES];
    int rc = store__meta_get(txn, s->r_meta, "hard", rec, sizeof(rec));
    if (rc == LATCH_ENOTFOUND) {
        *hs = (struct store_hard_state){0, 0, 0};
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if (latch_crc32c(0, rec, 24) != store__get_le32(rec + 24)) {
        return LATCH_ECORRUPT;
    }
    hs->term = store__get_le64(rec);
    hs->vote = store__get_le64(rec + 8);
    hs->commit = store__get_le64(rec + 16);
    return 0;
}

static int hard_put(struct store *s, MDB_txn *txn, const struct store_hard_state *hs)
{
    uint8_t rec[STORE__HARD_BYTES];
    store__put_le64(rec, hs->term);
    store__put_le64(rec + 8, hs->vote);
    store__put_le64(rec + 16, hs->commit);
    store__put_le32(rec + 24, latch_crc32c(0, rec, 24));
    return store__meta_put(txn, s->r_meta, "hard", rec, sizeof(rec));
}

static int snap_get(struct store *s, MDB_txn *txn, struct store_snap_meta *m)
{
    MDB_val k = name_val("snap");
    MDB_val v;
    int rc = mdb_get(txn, s->r_meta, &k, &v);
    memset(m, 0, sizeof(*m));
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    const uint8_t *p = v.mv_data;
    if (v.mv_size < STORE__SNAP_FIXED) {
        return LATCH_ECORRUPT;
    }
    uint32_t conf_len = store__get_le32(p + 16);
    if (conf_len > STORE_CONF_BYTES_MAX || v.mv_size != STORE__SNAP_FIXED + conf_len ||
        latch_crc32c(0, p, 20 + conf_len) != store__get_le32(p + 20 + conf_len)) {
        return LATCH_ECORRUPT;
    }
    m->index = store__get_le64(p);
    m->term = store__get_le64(p + 8);
    m->conf_len = conf_len;
    memcpy(m->conf, p + 20, conf_len);
    return 0;
}

static int snap_put(struct store *s, MDB_txn *txn, const struct store_snap_meta *m)
{
    uint8_t rec[STORE__SNAP_FIXED + STORE_CONF_BYTES_MAX];
    LATCH_ASSERTF(m->conf_len <= STORE_CONF_BYTES_MAX, "conf_len %u", m->conf_len);
    store__put_le64(rec, m->index);
    store__put_le64(rec + 8, m->term);
    store__put_le32(rec + 16, m->conf_len);
    memcpy(rec + 20, m->conf, m->conf_len);
    store__put_le32(rec + 20 + m->conf_len, latch_crc32c(0, rec, 20 + m->conf_len));
    return store__meta_put(txn, s->r_meta, "snap", rec, STORE__SNAP_FIXED + m->conf_len);
}

/* Deletes every entry with index >= lo (all: lo 0) and <= hi. */
static int ents_delete(struct store *s, MDB_txn *txn, uint64_t lo, uint64_t hi)
{
    MDB_cursor *c;
    uint8_t kb[8];
    MDB_val k = {.mv_size = 8, .mv_data = kb};
    MDB_val v;
    int rc = store__mdb_err(mdb_cursor_open(txn, s->r_log, &c));
    if (rc != 0) {
        return rc;
    }
    store__put_be64(kb, lo);
    rc = store__mdb_err(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
    while (rc == 0) {
        if (k.mv_size != 8) {
            rc = LATCH_ECORRUPT;
            break;
        }
        if (store__get_be64(k.mv_data) > hi) {
            break;
        }
        rc = store__mdb_err(mdb_cursor_del(c, 0));
        if (rc == 0) {
            /* After a delete, MDB_NEXT yields the record that followed the deleted one. */
            rc = store__mdb_err(mdb_cursor_get(c, &k, &v, MDB_NEXT));
        }
    }
    mdb_cursor_close(c);
    return rc == LATCH_ENOTFOUND ? 0 : rc;
}

/* ---------------------------------------------------------------------------------- */
/* Append                                                                             */
/* ---------------------------------------------------------------------------------- */

struct store__append {
    struct store *s;
    const struct store_entry *entries;
    size_t n;
    const struct store_hard_state *hs;
};

/* Checks the batch against the stored log: starts after the point and the snapshot, at
 * most at last + 1, contiguous, terms never going back. */
static int append_check(struct store *s, MDB_txn *txn, const struct store_entry *ents, size_t n)
{
    struct store__point pt;
    struct store_snap_meta snap;
    uint64_t last = 0;
    int rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    rc = rc != 0 ? rc : snap_get(s, txn, &snap);
    uint64_t floor = snap.index > pt.index ? snap.index : pt.index;
    if (rc != 0) {
        return rc;
    }
    if (ents[0].index <= floor || ents[0].index > last + 1) {
        return LATCH_EINVAL;
    }
    uint64_t prev_term = pt.term;
    if (ents[0].index - 1 > pt.index) {
        struct store_entry prev;
        rc = ent_get(s, txn, ents[0].index - 1, false, &prev);
        if (rc != 0) {
            return rc;
        }
        prev_term = prev.term;
    }
    for (size_t i = 0; i < n; i++) {
        if (ents[i].index != ents[0].index + i || ents[i].term < prev_term) {
            return LATCH_EINVAL;
        }
        LATCH_ASSERT(ents[i].len == 0 || ents[i].data != NULL);
        prev_term = ents[i].term;
    }
    return 0;
}

/* Writes entries after the (already truncated) end of the log. */
static int append_put(struct store *s, MDB_txn *txn, const struct store_entry *ents, size_t n)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->r_log, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct store_entry *e = &ents[i];
        uint8_t kb[8];
        store__put_be64(kb, e->index);
        MDB_val k = {.mv_size = 8, .mv_data = kb};
        MDB_val v = {.mv_size = STORE__ENT_HDR + (size_t)e->len, .mv_data = NULL};
        /* MDB_RESERVE: the record is built in place in the page, with no staging copy. */
        rc = mdb_cursor_put(c, &k, &v, MDB_APPEND | MDB_RESERVE);
        if (rc == 0) {
            uint8_t *p = v.mv_data;
            store__put_le64(p, e->term);
            store__put_le32(p + 8, e->type);
            if (e->len > 0) {
                memcpy(p + STORE__ENT_HDR, e->data, e->len);
            }
            store__put_le32(p + 12, ent_crc(e->index, p, e->data, e->len));
        }
    }
    mdb_cursor_close(c);
    return store__mdb_err(rc);
}

/* The hard state may only move forward: a lower term or commit is a caller's bug that
 * would let the node vote twice or forget commitment after a crash. */
static int append_hard(struct store *s, MDB_txn *txn, const struct store_hard_state *hs)
{
    struct store_hard_state old;
    int rc = hard_get(s, txn, &old);
    if (rc != 0) {
        return rc;
    }
    if (hs->term < old.term || hs->commit < old.commit) {
        return LATCH_EINVAL;
    }
    return hard_put(s, txn, hs);
}

static int append_fn(MDB_txn *txn, void *arg)
{
    struct store__append *ap = arg;
    struct store *s = ap->s;
    int rc = 0;

    if (ap->n > 0) {
        rc = append_check(s, txn, ap->entries, ap->n);
        rc = rc != 0 ? rc : ents_delete(s, txn, ap->entries[0].index, UINT64_MAX);
        rc = rc != 0 ? rc : append_put(s, txn, ap->entries, ap->n);
    }
    if (rc == 0 && ap->hs != NULL) {
        rc = append_hard(s, txn, ap->hs);
    }
    return rc;
}

int store_log_append(struct store *s,
                     const struct store_entry *entries,
                     size_t n,
                     const struct store_hard_state *hs)
{
    LATCH_ASSERT(s != NULL);
    LATCH_ASSERT(n == 0 || entries != NULL);
    if (n == 0 && hs == NULL) {
        return 0;
    }
    if (s->wal != NULL) {
        int wrc = store_failed(s); /* in ERROR: no more writes (store.h) */
        wrc = wrc != 0 ? wrc : store_wal_append(s->wal, entries, n, hs);
        if (wrc == LATCH_EIO) {
            return store__fail(s, LATCH_EIO, "wal append");
        }
        if (wrc == 0 && n > 0) {
            store__log_changed(s);
        }
        return wrc;
    }
    struct store__append ap = {.s = s, .entries = entries, .n = n, .hs = hs};
    int rc = store__write(s, &s->raft, append_fn, &ap);
    if (rc == 0 && n > 0) {
        store__log_changed(s); /* after the write: entries may have come from the arena */
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Reads                                                                              */
/* ---------------------------------------------------------------------------------- */

/* A private read txn on raft.mdb for calls that may come from any thread. */
static int ro_begin(struct store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->raft.lock);
    int rc = mdb_txn_begin(s->raft.env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&s->raft.lock);
    }
    return store__mdb_err(rc);
}

static void ro_end(struct store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->raft.lock);
}

int store_log_hard_state(struct store *s, struct store_hard_state *hs)
{
    MDB_txn *txn;
    LATCH_ASSERT(s != NULL && hs != NULL);
    if (s->wal != NULL) {
        return store_wal_hard_state(s->wal, hs);
    }
    int rc = ro_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = hard_get(s, txn, hs);
    ro_end(s, txn);
    return rc;
}

int store_log_snapshot_meta(struct store *s, struct store_snap_meta *out)
{
    MDB_txn *txn;
    LATCH_ASSERT(s != NULL && out != NULL);
    if (s->wal != NULL) {
        return store_wal_snapshot_meta(s->wal, out);
    }
    int rc = ro_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = snap_get(s, txn, out);
    ro_end(s, txn);
    return rc;
}

int store__log_bounds(struct store *s, uint64_t *first, uint64_t *last)
{
    MDB_txn *txn;
    struct store__point pt = {0, 0};
    LATCH_ASSERT(s != NULL && first != NULL && last != NULL);
    if (s->wal != NULL) {
        *first = store_wal_first_index(s->wal);
        *last = store_wal_last_index(s->wal);
        return 0;
    }
    int rc = store__log_read_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, last);
    store__log_read_end(s);
    *first = pt.index + 1;
    return rc;
}

/* store_log_first_index/last_index have no error path: a failure here means raft.mdb cannot
 * be read, and answering anything would let Raft act on a log it does not have, so it stops
 * the process (liveness, not safety). store_open checks with store__log_bounds first. */
static void bounds_get(struct store *s, uint64_t *first, uint64_t *last)
{
    int rc = store__log_bounds(s, first, last);
    LATCH_ASSERTF(rc == 0, "%s: log bounds: %s", s->raft.path, latch_error_name(rc));
}

uint64_t store_log_first_index(struct store *s)
{
    uint64_t first = 0, last = 0;
    bounds_get(s, &first, &last);
    return first;
}

uint64_t store_log_last_index(struct store *s)
{
    uint64_t first = 0, last = 0;
    bounds_get(s, &first, &last);
    return last;
}

static int term_in(struct store *s, MDB_txn *txn, uint64_t index, uint64_t *term_out)
{
    struct store__point pt;
    uint64_t last = 0;
    int rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    if (rc != 0) {
        return rc;
    }
    if (index < pt.index) {
        return LATCH_ECOMPACTED;
    }
    if (index > last) {
        return LATCH_EUNAVAILABLE;
    }
    if (index == pt.index) {
        *term_out = pt.term;
        return 0;
    }
    struct store_entry e;
    rc = ent_get(s, txn, index, true, &e);
    if (rc == 0) {
        *term_out = e.term;
    }
    return rc;
}

int store_log_term(struct store *s, uint64_t index, uint64_t *term_out)
{
    MDB_txn *txn;
    LATCH_ASSERT(s != NULL && term_out != NULL);
    if (s->wal != NULL) {
        return store_wal_term(s->wal, index, term_out);
    }
    int rc = store__log_read_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = term_in(s, txn, index, term_out);
    store__log_read_end(s);
    return rc;
}

/* Makes s->log_buf hold count entry headers (contents kept). */
static int scratch_reserve(struct store *s, size_t count)
{
    if (count > s->log_buf_cap) {
        size_t cap = s->log_buf_cap < 64 ? 64 : s->log_buf_cap;
        while (cap < count) {
            cap *= 2;
        }
        struct store_entry *b = realloc(s->log_buf, cap * sizeof(*b));
        if (b == NULL) {
            return LATCH_ENOMEM;
        }
        s->log_buf = b;
        s->log_buf_cap = cap;
    }
    return 0;
}

/* Copies verified entries from lo on while the budget allows (at least one): headers into
 * the scratch array, data into s->log_arena, where it stays until the log next changes. */
static int entries_copy(struct store *s,
                        MDB_txn *txn,
                        uint64_t lo,
                        uint64_t hi,
                        uint64_t max_bytes,
                        size_t *count_out,
                        size_t *bytes_out)
{
    MDB_cursor *c;
    uint8_t kb[8];
    MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
    size_t count = 0, bytes = 0;
    int rc = mdb_cursor_open(txn, s->r_log, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    store__put_be64(kb, lo);
    rc = store__mdb_err(mdb_cursor_get(c, &k, &v, MDB_SET_KEY));
    while (rc == 0 && lo + count < hi) {
        struct store_entry e;
        rc = ent_decode(&k, &v, true, &e);
        if (rc == 0 && e.index != lo + count) {
            rc = LATCH_ECORRUPT; /* a hole inside [first, last] breaks I8 */
        }
        if (rc != 0 || (count > 0 && bytes + e.len > max_bytes)) {
            break;
        }
        rc = scratch_reserve(s, count + 1);
        const uint8_t *copy = rc == 0 ? latch_arena_dup(&s->log_arena, e.data, e.len) : NULL;
        rc = rc == 0 && copy == NULL ? LATCH_ENOMEM : rc;
        if (rc == 0) {
            e.data = copy;
            s->log_buf[count++] = e;
            bytes += e.len;
            if (lo + count < hi) {
                rc = store__mdb_err(mdb_cursor_get(c, &k, &v, MDB_NEXT));
            }
        }
    }
    mdb_cursor_close(c);
    *count_out = count;
    *bytes_out = bytes;
    return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
}

int store_log_entries(struct store *s,
                      uint64_t lo,
                      uint64_t hi,
                      uint64_t max_bytes,
                      const struct store_entry **out,
                      size_t *count_out)
{
    MDB_txn *txn;
    struct store__point pt;
    uint64_t last = 0;
    size_t count = 0, bytes = 0;
    LATCH_ASSERT(s != NULL && out != NULL && count_out != NULL);
    if (lo >= hi) {
        return LATCH_EINVAL;
    }
    if (s->wal != NULL) {
        return store_wal_entries(s->wal, lo, hi, max_bytes, &s->log_arena, out, count_out);
    }
    int rc = store__log_read_begin(s, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    if (rc == 0 && lo <= pt.index) {
        rc = LATCH_ECOMPACTED;
    } else if (rc == 0 && hi > last + 1) {
        rc = LATCH_EUNAVAILABLE;
    }
    rc = rc != 0 ? rc : entries_copy(s, txn, lo, hi, max_bytes, &count, &bytes);
    store__log_read_end(s);
    if (rc != 0) {
        return rc;
    }
    LATCH_ASSERTF(count >= 1 && count <= hi - lo, "%zu entries of [%llu, %llu)", count,
                  (unsigned long long)lo, (unsigned long long)hi);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        total += s->log_buf[i].len;
    }
    LATCH_ASSERT(total == bytes);
    /* The header array goes to the arena too: a later call must not overwrite it. */
    *out = latch_arena_dup(&s->log_arena, s->log_buf, count * sizeof(*s->log_buf));
    if (*out == NULL) {
        return LATCH_ENOMEM;
    }
    *count_out = count;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Compaction and snapshots                                                           */
/* ---------------------------------------------------------------------------------- */

/* The state's applied index, from a short read txn on state.mdb. */
static int state_applied(struct store *s, uint64_t *applied)
{
    MDB_txn *txn;
    uint8_t rec[16];
    pthread_rwlock_rdlock(&s->state.lock);
    int rc = store__mdb_err(mdb_txn_begin(s->state.env, NULL, MDB_RDONLY, &txn));
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "applied", rec, sizeof(rec));
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&s->state.lock);
    if (rc == 0) {
        *applied = store__get_le64(rec);
    }
    return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
}

int store__state_sync(struct store *s, uint64_t index, uint64_t *applied)
{
    uint64_t cur = 0;
    int rc = store_failed(s);
    rc = rc != 0 ? rc : state_applied(s, &cur);
    if (rc != 0 || s->opt.no_sync) {
        *applied = cur;
        return rc;
    }
    LATCH_ASSERTF(cur >= s->state_synced_applied, "applied %llu below the synced %llu",
                  (unsigned long long)cur, (unsigned long long)s->state_synced_applied);
    if (index > s->state_synced_applied && cur > s->state_synced_applied) {
        /* Nothing else writes state.mdb meanwhile (this is the writing thread), so the sync
         * covers the commit that left cur. */
        pthread_rwlock_rdlock(&s->state.lock);
        rc = mdb_env_sync(s->state.env, 1);
        pthread_rwlock_unlock(&s->state.lock);
        if (rc != 0) {
            return store__fail(s, LATCH_EIO, "fdatasync of state.mdb before a log compaction");
        }
        s->state_synced_applied = cur;
        s->state_syncs++;
    }
    *applied = s->state_synced_applied;
    return 0;
}

struct store__compact_arg {
    struct store *s;
    uint64_t index;
    uint64_t applied;
};

static int compact_fn(MDB_txn *txn, void *arg)
{
    struct store__compact_arg *ca = arg;
    struct store *s = ca->s;
    struct store__point pt;
    uint64_t last = 0;
    int rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    if (rc != 0) {
        return rc;
    }
    if (ca->index <= pt.index) {
        return LATCH_ECOMPACTED;
    }
    if (ca->index > last || ca->index > ca->applied) {
        return LATCH_EINVAL;
    }
    struct store_entry e;
    rc = ent_get(s, txn, ca->index, true, &e);
    if (rc != 0) {
        return rc;
    }
    struct store__point np = {.index = ca->index, .term = e.term};
    LATCH_ASSERTF(np.term >= pt.term, "term %llu at %llu below the point's %llu",
                  (unsigned long long)np.term, (unsigned long long)np.index,
                  (unsigned long long)pt.term);
    rc = ents_delete(s, txn, 0, ca->index);
    return rc != 0 ? rc : point_put(s, txn, &np);
}

int store_log_compact(struct store *s, uint64_t index)
{
    LATCH_ASSERT(s != NULL);
    struct store__compact_arg ca = {.s = s, .index = index, .applied = 0};
    /* Never drop an entry that state.mdb may not hold after a power loss: the bound is
     * the applied index on disk, synced first when the newest applies are not (store.h). */
    int rc = store__state_sync(s, index, &ca.applied);
    if (rc != 0) {
        return rc;
    }
    if (s->wal != NULL) {
        if (index > ca.applied && index > store_wal_first_index(s->wal) - 1) {
            return LATCH_EINVAL;
        }
        rc = store_wal_compact(s->wal, index);
        if (rc == LATCH_EIO) {
            return store__fail(s, LATCH_EIO, "wal compaction");
        }
        if (rc == 0) {
            store__log_changed(s);
        }
        return rc;
    }
    rc = store__write(s, &s->raft, compact_fn, &ca);
    if (rc == 0) {
        store__log_changed(s);
    }
    return rc;
}

struct store__install_arg {
    struct store *s;
    const struct store_snap_meta *m;
};

/* Keeps the entries after m only when the log holds m's index with m's term (the log
 * then extends the snapshot, Raft's log matching); else the log restarts at m. */
static int install_fn(MDB_txn *txn, void *arg)
{
    struct store__install_arg *ia = arg;
    struct store *s = ia->s;
    const struct store_snap_meta *m = ia->m;
    struct store__point pt;
    struct store_hard_state hs;
    uint64_t last = 0;
    int rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    rc = rc != 0 ? rc : hard_get(s, txn, &hs);
    if (rc != 0) {
        return rc;
    }
    if (m->index < pt.index) {
        return LATCH_EINVAL; /* older than what the log already dropped */
    }
    bool matches = m->index == pt.index && m->term == pt.term;
    if (m->index > pt.index && m->index <= last) {
        struct store_entry e;
        rc = ent_get(s, txn, m->index, false, &e);
        if (rc != 0) {
            return rc;
        }
        matches = e.term == m->term;
    }
    rc = ents_delete(s, txn, 0, matches ? m->index : UINT64_MAX);
    struct store__point np = {.index = m->index, .term = m->term};
    rc = rc != 0 ? rc : point_put(s, txn, &np);
    rc = rc != 0 ? rc : snap_put(s, txn, m);
    if (rc == 0) {
        /* The install is complete with this transaction (store__install_mark). */
        MDB_val k = {.mv_size = strlen("installing"), .mv_data = "installing"};
        int del = mdb_del(txn, s->r_meta, &k, NULL);
        rc = del == MDB_NOTFOUND ? 0 : store__mdb_err(del);
    }
    if (rc == 0 && hs.commit < m->index) {
        hs.commit = m->index;
        rc = hard_put(s, txn, &hs);
    }
    return rc;
}

int store__log_install(struct store *s, const struct store_snap_meta *m)
{
    LATCH_ASSERT(s != NULL && m != NULL);
    LATCH_ASSERTF(m->conf_len <= STORE_CONF_BYTES_MAX, "conf_len %u", m->conf_len);
    if (s->wal != NULL) {
        int wrc = store_failed(s);
        wrc = wrc != 0 ? wrc : store_wal_install(s->wal, m);
        if (wrc == LATCH_EIO) {
            return store__fail(s, LATCH_EIO, "wal install");
        }
        if (wrc == 0) {
            store__log_changed(s);
        }
        return wrc;
    }
    struct store__install_arg ia = {.s = s, .m = m};
    int rc = store__write(s, &s->raft, install_fn, &ia);
    if (rc == 0) {
        store__log_changed(s);
    }
    return rc;
}

static int record_snapshot_fn(MDB_txn *txn, void *arg)
{
    struct store__install_arg *ia = arg;
    return snap_put(ia->s, txn, ia->m);
}

int store__log_record_snapshot(struct store *s, const struct store_snap_meta *m)
{
    LATCH_ASSERT(s != NULL && m != NULL);
    LATCH_ASSERTF(m->conf_len <= STORE_CONF_BYTES_MAX, "conf_len %u", m->conf_len);
    if (s->wal != NULL) {
        int wrc = store_failed(s);
        wrc = wrc != 0 ? wrc : store_wal_record_snapshot(s->wal, m);
        return wrc == LATCH_EIO ? store__fail(s, LATCH_EIO, "wal snapshot record") : wrc;
    }
    struct store__install_arg ia = {.s = s, .m = m};
    return store__write(s, &s->raft, record_snapshot_fn, &ia);
}

/* ---------------------------------------------------------------------------------- */
/* Conversion of raft.mdb into the wal (LATCH_STORE_WAL)                              */
/* ---------------------------------------------------------------------------------- */

#define CONVERT_BATCH 256u

int store__log_convert(struct store *s, struct store_wal *w)
{
    MDB_txn *txn;
    struct store__point pt;
    struct store_hard_state hs;
    struct store_snap_meta *snap = calloc(1, sizeof(*snap));
    uint8_t mark[STORE__INSTALL_MARK_BYTES];
    uint64_t last = 0;
    if (snap == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = ro_begin(s, &txn);
    if (rc != 0) {
        free(snap);
        return rc;
    }
    rc = point_get(s, txn, &pt);
    rc = rc != 0 ? rc : last_get(s, txn, &pt, &last);
    rc = rc != 0 ? rc : hard_get(s, txn, &hs);
    rc = rc != 0 ? rc : snap_get(s, txn, snap);
    int mrc = rc != 0 ? rc : store__meta_get(txn, s->r_meta, "installing", mark, sizeof(mark));
    rc = mrc == LATCH_ENOTFOUND ? rc : mrc;
    if (rc == 0 && pt.index > 0) {
        struct store_snap_meta p = {.index = pt.index, .term = pt.term};
        rc = store_wal_install(w, &p);
    }
    /* Entries in batches, each entry's CRC verified on the way (ent_get). */
    struct store_entry batch[CONVERT_BATCH];
    for (uint64_t i = pt.index + 1; rc == 0 && i <= last;) {
        size_t n = 0;
        while (rc == 0 && n < CONVERT_BATCH && i <= last) {
            rc = ent_get(s, txn, i, true, &batch[n]);
            n += rc == 0;
            i += rc == 0;
        }
        rc = rc != 0 ? rc : store_wal_append(w, batch, n, NULL);
    }
    if (rc == 0) {
        struct store_hard_state h = hs;
        struct store_hard_state cur;
        (void)store_wal_hard_state(w, &cur);
        h.commit = h.commit < cur.commit ? cur.commit : h.commit;
        h.term = h.term < cur.term ? cur.term : h.term;
        rc = store_wal_append(w, NULL, 0, &h);
    }
    if (rc == 0 && (snap->index > 0 || pt.index > 0)) {
        rc = store_wal_record_snapshot(w, snap); /* also undoes the install's own record */
    }
    if (rc == 0 && mrc == 0) {
        struct store_snap_meta m = {.index = store__get_le64(mark),
                                    .term = store__get_le64(mark + 8)};
        rc = store_wal_install_mark(w, &m);
    }
    ro_end(s, txn);
    free(snap);
    return rc;
}
