/*
 * store_lease.c — leases as replicated records (DESIGN §2, ETCD-API.md §4.6).
 *
 * The store only records leases; the server owns their timing (who expires what and when)
 * and turns every decision into a command, so everything here depends only on the command
 * and the stored state.
 *
 *   lease       id be64 -> ttl, remaining_ttl, grant_rev (le64 each, STORE__LEASE_BYTES)
 *   lease_keys  id be64 -> the user keys attached to it (MDB_DUPSORT, so key order)
 *
 * I6: lease_keys holds (lease, key) iff kv[key].lease == lease != 0. store__kv_put and
 * store__kv_delete_key keep it through store__lease_attach; revoke deletes the keys through
 * store__kv_delete_key, which detaches them one by one.
 */
#include <string.h>

#include "store_int.h"

struct lease_rec {
    int64_t ttl;
    int64_t remaining_ttl;
    int64_t grant_rev;
};

static MDB_val lease_id_val(uint8_t buf[8], int64_t id)
{
    store__put_be64(buf, (uint64_t)id);
    return (MDB_val){.mv_size = 8, .mv_data = buf};
}

/* The record of lease id: LATCH_ENOTFOUND when absent, LATCH_ECORRUPT when malformed. */
static int lease_rec_get(struct store *s, MDB_txn *txn, int64_t id, struct lease_rec *out)
{
    uint8_t idb[8];
    MDB_val k = lease_id_val(idb, id);
    MDB_val v;

    LATCH_ASSERT(s != NULL);
    if (id <= 0) {
        return LATCH_ENOTFOUND; /* 0 means "no lease"; ids are positive */
    }
    int rc = mdb_get(txn, s->lease, &k, &v);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    if (v.mv_size != STORE__LEASE_BYTES) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *p = v.mv_data;
    out->ttl = (int64_t)store__get_le64(p);
    out->remaining_ttl = (int64_t)store__get_le64(p + 8);
    out->grant_rev = (int64_t)store__get_le64(p + 16);
    return 0;
}

static int lease_rec_put(struct store__w *w, int64_t id, const struct lease_rec *r)
{
    uint8_t idb[8];
    uint8_t buf[STORE__LEASE_BYTES];
    MDB_val k = lease_id_val(idb, id);
    MDB_val v = {.mv_size = sizeof(buf), .mv_data = buf};

    LATCH_ASSERTF(id > 0, "lease id %lld", (long long)id);
    LATCH_ASSERTF(r->ttl > 0, "lease ttl %lld", (long long)r->ttl);
    store__put_le64(buf, (uint64_t)r->ttl);
    store__put_le64(buf + 8, (uint64_t)r->remaining_ttl);
    store__put_le64(buf + 16, (uint64_t)r->grant_rev);
    return store__mdb_err(mdb_put(w->txn, w->s->lease, &k, &v, 0));
}

int store__lease_exists(struct store *s, MDB_txn *txn, int64_t id)
{
    struct lease_rec r;

    LATCH_ASSERT(s != NULL);
    LATCH_ASSERT(txn != NULL);
    return lease_rec_get(s, txn, id, &r);
}

/*
 * A missing (old, key) pair or an existing (new, key) pair means I6 was already broken
 * before this command: that is corruption, not an outcome of the command, so it aborts the
 * batch (LATCH_ECORRUPT is a system error) instead of being papered over.
 */
int store__lease_attach(
    struct store__w *w, const uint8_t *key, uint32_t key_len, int64_t old_lease, int64_t new_lease)
{
    uint8_t idb[8];
    MDB_val k;
    MDB_val d = {.mv_size = key_len, .mv_data = (void *)key};
    int rc;

    LATCH_ASSERT(w != NULL && key != NULL);
    LATCH_ASSERTF(key_len > 0 && key_len <= STORE_KEY_BYTES_MAX, "key_len %u", key_len);
    if (old_lease == new_lease) {
        return 0; /* a re-put on the same lease (or ignore_lease) changes nothing */
    }
    if (old_lease != 0) {
        k = lease_id_val(idb, old_lease);
        rc = mdb_del(w->txn, w->s->lease_keys, &k, &d);
        if (rc != 0) {
            return rc == MDB_NOTFOUND ? LATCH_ECORRUPT : store__mdb_err(rc);
        }
    }
    if (new_lease != 0) {
        k = lease_id_val(idb, new_lease);
        rc = mdb_put(w->txn, w->s->lease_keys, &k, &d, MDB_NODUPDATA);
        if (rc != 0) {
            return rc == MDB_KEYEXIST ? LATCH_ECORRUPT : store__mdb_err(rc);
        }
    }
    return 0;
}

/*
 * Picks the id for a grant with id 0: w->lease_next, advanced past ids clients chose
 * themselves. Every replica holds the same lease_next (the apply helper persists it in
 * meta "lease_next"), so every replica picks the same id.
 */
static int lease_pick_id(struct store__w *w, int64_t *id_out)
{
    int64_t id = w->lease_next;

    LATCH_ASSERTF(id >= 1, "lease_next %lld", (long long)id);
    for (;;) {
        int rc = store__lease_exists(w->s, w->txn, id);
        if (rc == LATCH_ENOTFOUND) {
            break;
        }
        if (rc != 0) {
            return rc;
        }
        if (id == INT64_MAX) {
            return LATCH_ENOSPACE; /* 2^63 - 1 leases in use: the id space is exhausted */
        }
        id++;
    }
    *id_out = id;
    w->lease_next = id == INT64_MAX ? INT64_MAX : id + 1;
    return 0;
}

/*
 * Grant. The checks come first so that a refused grant writes nothing. A grant makes no
 * keyspace event, so the revision does not move; grant_rev records the current one.
 */
int store__lease_grant(struct store__w *w, int64_t id, int64_t ttl, int64_t *id_out)
{
    LATCH_ASSERT(w != NULL);
    LATCH_ASSERT(id_out != NULL);
    if (id < 0 || ttl <= 0) {
        return LATCH_EINVAL;
    }
    if (ttl > STORE_LEASE_TTL_MAX) {
        return LATCH_ETOOBIG;
    }
    if (w->alarm_nospace) {
        return LATCH_ENOSPACE;
    }
    int rc;
    if (id == 0) {
        rc = lease_pick_id(w, &id);
    } else {
        rc = store__lease_exists(w->s, w->txn, id);
        rc = rc == 0 ? LATCH_EEXIST : rc == LATCH_ENOTFOUND ? 0 : rc;
    }
    if (rc != 0) {
        return rc;
    }
    struct lease_rec r = {.ttl = ttl, .remaining_ttl = 0, .grant_rev = w->rev};
    rc = lease_rec_put(w, id, &r);
    if (rc == 0) {
        *id_out = id;
    }
    return rc;
}

/*
 * The first key attached to lease idb after the key in buf[0..*len) (or the very first
 * when *len is 0), copied into buf. Positioning from the last key again on each call keeps
 * the loop correct whatever store__kv_delete_key did to lease_keys in between.
 */
static int lease_next_key(MDB_cursor *c, const uint8_t idb[8], uint8_t *buf, uint32_t *len)
{
    MDB_val k = {.mv_size = 8, .mv_data = (void *)idb};
    MDB_val d = {.mv_size = *len, .mv_data = buf};
    int rc;

    LATCH_ASSERT(c != NULL);
    if (*len == 0) {
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    } else {
        rc = mdb_cursor_get(c, &k, &d, MDB_GET_BOTH_RANGE);
        if (rc == 0 && d.mv_size == *len && memcmp(d.mv_data, buf, *len) == 0) {
            rc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
        }
    }
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    if (d.mv_size == 0 || d.mv_size > STORE_KEY_BYTES_MAX) {
        return LATCH_ECORRUPT;
    }
    memcpy(buf, d.mv_data, d.mv_size);
    *len = (uint32_t)d.mv_size;
    LATCH_ASSERT(*len <= STORE_KEY_BYTES_MAX);
    return 0;
}

/* Deletes every key attached to lease id (key order), counting them into *deleted. */
static int lease_delete_keys(struct store__w *w, int64_t id, int64_t *deleted)
{
    uint8_t idb[8];
    uint8_t buf[STORE_KEY_BYTES_MAX];
    uint32_t len = 0;
    MDB_cursor *c;

    LATCH_ASSERT(id > 0);
    (void)lease_id_val(idb, id);
    int rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->lease_keys, &c));
    if (rc != 0) {
        return rc;
    }
    for (;;) {
        rc = lease_next_key(c, idb, buf, &len);
        if (rc != 0) {
            break;
        }
        rc = store__kv_delete_key(w, buf, len, NULL);
        if (rc != 0) {
            rc = rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc; /* I6 broken */
            break;
        }
        (*deleted)++;
    }
    mdb_cursor_close(c);
    return rc == LATCH_ENOTFOUND ? 0 : rc;
}

/*
 * Revoke: every attached key is deleted in this command's one revision (its events get
 * sub-revisions in key order), then the lease itself. Allowed during NOSPACE: it frees space.
 */
int store__lease_revoke(struct store__w *w, int64_t id, int64_t *deleted_out)
{
    uint8_t idb[8];
    int64_t deleted = 0;

    LATCH_ASSERT(w != NULL);
    LATCH_ASSERT(deleted_out != NULL);
    int rc = store__lease_exists(w->s, w->txn, id);
    if (rc != 0) {
        return rc;
    }
    rc = lease_delete_keys(w, id, &deleted);
    if (rc != 0) {
        return rc;
    }
    MDB_val k = lease_id_val(idb, id);
    rc = mdb_del(w->txn, w->s->lease_keys, &k, NULL); /* normally already empty */
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return store__mdb_err(rc);
    }
    rc = store__mdb_err(mdb_del(w->txn, w->s->lease, &k, NULL));
    if (rc == 0) {
        *deleted_out = deleted;
    }
    return rc;
}

/* Records remaining TTLs; leases that no longer exist are skipped (a checkpoint may race a
 * revoke in the log, and skipping is the same decision on every replica). */
int store__lease_checkpoint(struct store__w *w,
                            const struct store_lease_checkpoint *items,
                            size_t count)
{
    LATCH_ASSERT(w != NULL);
    LATCH_ASSERT(items != NULL || count == 0);
    for (size_t i = 0; i < count; i++) {
        struct lease_rec r;
        int rc = lease_rec_get(w->s, w->txn, items[i].id, &r);
        if (rc == LATCH_ENOTFOUND) {
            continue;
        }
        if (rc != 0) {
            return rc;
        }
        r.remaining_ttl = items[i].remaining_ttl;
        rc = lease_rec_put(w, items[i].id, &r);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Reads                                                                              */
/* ---------------------------------------------------------------------------------- */

/* One attached key as a store_kv (no value) copied into a. */
static int lease_key_kv(
    struct store *s, MDB_txn *txn, const MDB_val *d, struct latch_arena *a, struct store_kv *out)
{
    struct store__kvrec rec;

    LATCH_ASSERT(d->mv_size > 0);
    int rc = store__kv_get(s, txn, d->mv_data, (uint32_t)d->mv_size, &rec);
    if (rc != 0) {
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc; /* I6 broken */
    }
    uint8_t *key = latch_arena_dup(a, d->mv_data, d->mv_size);
    if (key == NULL) {
        return LATCH_ENOMEM;
    }
    *out = (struct store_kv){
        .key = key,
        .key_len = (uint32_t)d->mv_size,
        .value_len = rec.value_len,
        .value = NULL,
        .create_revision = rec.create_rev,
        .mod_revision = rec.mod_rev,
        .version = rec.version,
        .lease = rec.lease,
    };
    LATCH_ASSERT(out->key_len <= STORE_KEY_BYTES_MAX);
    return 0;
}

static int lease_get_keys(struct store *s,
                          MDB_txn *txn,
                          int64_t id,
                          struct latch_arena *a,
                          struct store_kv **keys_out,
                          size_t *keys_count)
{
    uint8_t idb[8];
    MDB_val k = lease_id_val(idb, id);
    MDB_val d;
    MDB_cursor *c;
    size_t n = 0;

    LATCH_ASSERT(keys_out != NULL && keys_count != NULL);
    int rc = store__mdb_err(mdb_cursor_open(txn, s->lease_keys, &c));
    if (rc != 0) {
        return rc;
    }
    int mrc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    if (mrc == 0) {
        mrc = mdb_cursor_count(c, &n);
    }
    struct store_kv *kvs = latch_arena_calloc(a, n > 0 ? n : 1, sizeof(*kvs));
    size_t i = 0;
    rc = kvs == NULL ? LATCH_ENOMEM : 0;
    while (rc == 0 && mrc == 0 && i < n) {
        rc = lease_key_kv(s, txn, &d, a, &kvs[i++]);
        mrc = mdb_cursor_get(c, &k, &d, MDB_NEXT_DUP);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = store__mdb_err(mrc);
    }
    LATCH_ASSERT(i <= n);
    *keys_out = kvs;
    *keys_count = i;
    return rc;
}

int store_lease_get(struct store_reader *r,
                    int64_t id,
                    bool keys,
                    struct latch_arena *a,
                    struct store_lease *out,
                    struct store_kv **keys_out,
                    size_t *keys_count)
{
    MDB_txn *txn;
    struct lease_rec rec;

    LATCH_ASSERT(r != NULL && out != NULL);
    LATCH_ASSERT(!keys || a != NULL);
    if (keys_count != NULL) {
        *keys_count = 0;
    }
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = lease_rec_get(r->s, txn, id, &rec);
    if (rc == 0) {
        *out = (struct store_lease){.id = id,
                                    .ttl = rec.ttl,
                                    .remaining_ttl = rec.remaining_ttl,
                                    .grant_revision = rec.grant_rev};
        if (keys) {
            rc = lease_get_keys(r->s, txn, id, a, keys_out, keys_count);
        }
    }
    store__read_end(r);
    return rc;
}

/* Decodes the lease record under cursor position (k, v) into out. */
static int lease_decode(const MDB_val *k, const MDB_val *v, struct store_lease *out)
{
    LATCH_ASSERT(k != NULL && v != NULL);
    if (k->mv_size != 8 || v->mv_size != STORE__LEASE_BYTES) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *p = v->mv_data;
    out->id = (int64_t)store__get_be64(k->mv_data);
    out->ttl = (int64_t)store__get_le64(p);
    out->remaining_ttl = (int64_t)store__get_le64(p + 8);
    out->grant_revision = (int64_t)store__get_le64(p + 16);
    LATCH_ASSERT(out->id > 0);
    return 0;
}

/* max 0 means no limit, as limit 0 does for ranges and children. */
static int lease_list_txn(struct store *s,
                          MDB_txn *txn,
                          int64_t after_id,
                          size_t max,
                          struct latch_arena *a,
                          struct store_lease **out,
                          size_t *count_out)
{
    MDB_stat st;
    MDB_cursor *c;
    uint8_t idb[8];

    int rc = store__mdb_err(mdb_stat(txn, s->lease, &st));
    if (rc != 0) {
        return rc;
    }
    size_t cap = st.ms_entries < max || max == 0 ? (size_t)st.ms_entries : max;
    struct store_lease *ls = latch_arena_calloc(a, cap > 0 ? cap : 1, sizeof(*ls));
    if (ls == NULL) {
        return LATCH_ENOMEM;
    }
    rc = store__mdb_err(mdb_cursor_open(txn, s->lease, &c));
    if (rc != 0) {
        return rc;
    }
    size_t n = 0;
    MDB_val k = lease_id_val(idb, after_id < 1 || after_id == INT64_MAX ? 1 : after_id + 1);
    MDB_val v;
    int mrc = after_id == INT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && n < cap && rc == 0) {
        rc = lease_decode(&k, &v, &ls[n++]);
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = store__mdb_err(mrc);
    }
    LATCH_ASSERT(n <= cap);
    *out = ls;
    *count_out = n;
    return rc;
}

int store_lease_list(struct store_reader *r,
                     int64_t after_id,
                     size_t max,
                     struct latch_arena *a,
                     struct store_lease **out,
                     size_t *count_out)
{
    MDB_txn *txn;

    LATCH_ASSERT(r != NULL && a != NULL);
    LATCH_ASSERT(out != NULL && count_out != NULL);
    *out = NULL;
    *count_out = 0;
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = lease_list_txn(r->s, txn, after_id, max, a, out, count_out);
    store__read_end(r);
    return rc;
}
