/*
 * store_hash.c — whole-state reads for the Maintenance service (store.h "Hashes and dumps"):
 * the CRC-32C hashes behind Hash and HashKV, and the ordered walk a snapshot image is built
 * from. Each call is one read transaction over the whole history, so it belongs on a worker
 * thread with its own reader, never on the event loop.
 *
 * What is hashed is the records themselves (key bytes, then value bytes), not a decoded
 * form: store_apply writes byte-identical records on every member for the same applied
 * commands (the formats carry no local figure, reserved bytes are zero), so equal hashes
 * mean equal histories and a differing byte anywhere shows.
 */
#include <string.h>

#include "latch_crc32c.h"
#include "store_int.h"

/* Extends crc over one record: its key, then its value. */
static uint32_t crc_record(uint32_t crc, const MDB_val *k, const MDB_val *v)
{
    crc = latch_crc32c(crc, k->mv_data, k->mv_size);
    return latch_crc32c(crc, v->mv_data, v->mv_size);
}

/* The current and compacted revisions of txn's snapshot. */
static int revs(struct store_reader *r, MDB_txn *txn, int64_t *cur, int64_t *compact)
{
    int rc = store__reader_rev(r, txn, cur);
    if (rc == 0) {
        rc = store__meta_get_i64(txn, r->s->meta, "compact", compact);
    }
    if (rc == LATCH_ENOTFOUND || (rc == 0 && (*cur < 1 || *compact > *cur))) {
        return LATCH_ECORRUPT;
    }
    return rc;
}

/* Extends *crc over every hist record with revision <= rev (0: all), in key order. */
static int hash_hist(struct store *s, MDB_txn *txn, int64_t rev, uint32_t *crc)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->hist, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != STORE__HIST_KEY) {
            mdb_cursor_close(c);
            return LATCH_ECORRUPT;
        }
        if (rev > 0 && (int64_t)store__get_be64(k.mv_data) > rev) {
            rc = MDB_NOTFOUND;
            break;
        }
        *crc = crc_record(*crc, &k, &v);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

/* Extends *crc over every lease record in id order. */
static int hash_leases(struct store *s, MDB_txn *txn, uint32_t *crc)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->lease, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        *crc = crc_record(*crc, &k, &v);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

int store_hash_kv(struct store_reader *r, int64_t rev, struct store_hash *out)
{
    MDB_txn *txn;
    int64_t cur = 0, compact = 0;
    LATCH_ASSERT(r != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    if (rev < 0) {
        return LATCH_EINVAL;
    }
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = revs(r, txn, &cur, &compact);
    /* etcd's HashByRev: an explicit revision at or below the compact revision is compacted
     * (stricter than a range, which may read at it); 0 is the current one, always allowed. */
    if (rc == 0 && rev > 0 && rev <= compact) {
        rc = LATCH_ECOMPACTED;
    }
    if (rc == 0 && rev > cur) {
        rc = LATCH_EFUTUREREV;
    }
    if (rc == 0 && rev == 0) {
        rev = cur;
    }
    uint32_t crc = 0;
    if (rc == 0) {
        rc = hash_hist(r->s, txn, rev, &crc);
    }
    store__read_end(r);
    if (rc == 0) {
        out->hash = crc;
        out->revision = rev;
        out->current_revision = cur;
        out->compact_revision = compact;
    }
    return rc;
}

int store_hash_all(struct store_reader *r, struct store_hash *out)
{
    MDB_txn *txn;
    int64_t cur = 0, compact = 0;
    LATCH_ASSERT(r != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = revs(r, txn, &cur, &compact);
    uint32_t crc = 0;
    if (rc == 0) {
        rc = hash_hist(r->s, txn, 0, &crc);
    }
    if (rc == 0) {
        rc = hash_leases(r->s, txn, &crc);
    }
    store__read_end(r);
    if (rc == 0) {
        out->hash = crc;
        out->revision = cur;
        out->current_revision = cur;
        out->compact_revision = compact;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Dump                                                                               */
/* ---------------------------------------------------------------------------------- */

static int dump_events(
    struct store *s, MDB_txn *txn, const struct store_dump_ops *ops, void *data, int64_t *events)
{
    MDB_cursor *c;
    MDB_val k, v;
    int err = 0;
    int rc = mdb_cursor_open(txn, s->hist, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct store__event e;
        err = store__event_decode(&k, &v, &e);
        if (err != 0) {
            break;
        }
        struct store_dump_event d = {.revision = e.rev, .sub = e.sub, .type = e.type};
        d.kv.key = e.key;
        d.kv.key_len = e.key_len;
        d.kv.mod_revision = e.rev;
        if (e.type == STORE_EVENT_PUT) {
            d.kv.value = e.value;
            d.kv.value_len = e.value_len;
            d.kv.create_revision = e.create_rev;
            d.kv.version = e.version;
            d.kv.lease = e.lease;
        }
        err = ops->event != NULL ? ops->event(data, &d) : 0;
        if (err != 0) {
            break;
        }
        (*events)++;
    }
    mdb_cursor_close(c);
    return err != 0 ? err : rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

static int dump_leases(struct store *s, MDB_txn *txn, const struct store_dump_ops *ops, void *data)
{
    MDB_cursor *c;
    MDB_val k, v;
    int err = 0;
    int rc = mdb_cursor_open(txn, s->lease, &c);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8 || v.mv_size != STORE__LEASE_BYTES) {
            err = LATCH_ECORRUPT;
            break;
        }
        const uint8_t *p = v.mv_data;
        struct store_lease l = {.id = (int64_t)store__get_be64(k.mv_data),
                                .ttl = (int64_t)store__get_le64(p),
                                .remaining_ttl = (int64_t)store__get_le64(p + 8),
                                .grant_revision = (int64_t)store__get_le64(p + 16)};
        err = ops->lease != NULL ? ops->lease(data, &l) : 0;
        if (err != 0) {
            break;
        }
    }
    mdb_cursor_close(c);
    return err != 0 ? err : rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

int store_dump(struct store_reader *r,
               const struct store_dump_ops *ops,
               void *data,
               struct store_dump_info *info)
{
    MDB_txn *txn;
    uint8_t applied[16];
    uint8_t alarm[4];
    LATCH_ASSERT(r != NULL && ops != NULL && info != NULL);
    memset(info, 0, sizeof(*info));
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    struct store *s = r->s;
    rc = revs(r, txn, &info->revision, &info->compact_revision);
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "applied", applied, sizeof(applied));
    }
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "alarm", alarm, sizeof(alarm));
    }
    if (rc == 0) {
        info->applied_index = store__get_le64(applied);
        info->applied_term = store__get_le64(applied + 8);
        info->alarm_nospace = (store__get_le32(alarm) & STORE__ALARM_NOSPACE_BIT) != 0;
        rc = ops->begin != NULL ? ops->begin(data, info) : 0;
    }
    if (rc == 0) {
        rc = dump_events(s, txn, ops, data, &info->events_count);
    }
    if (rc == 0) {
        rc = dump_leases(s, txn, ops, data);
    }
    store__read_end(r);
    return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
}
