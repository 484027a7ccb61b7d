/*
 * store_kv.c — the MVCC keyspace with etcd 3.4's semantics (ETCD-API.md §4.1-§4.5, §4.7):
 * record codecs, put, delete, range at the current or an old revision, compaction, and the
 * history iterator that serves watch catch-up.
 *
 * kv holds the live keys, hist every event under (rev, sub), tomb the newest delete event
 * of a deleted key (I3). A read at an old revision starts at the key's newest event (its kv
 * record or its tomb) and follows the events' prev pointers back to the newest event at or
 * below that revision (I5). Every write appends one event to hist with MDB_APPEND: events
 * of one command share its revision and take sub-revisions 0, 1, ... (I2).
 *
 * Pointers into LMDB pages are valid only until the next write in the same transaction,
 * so anything returned to a caller is copied into its arena first.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Compaction deletes in batches of this many visited events (see compact_batch). */
#define KV_COMPACT_BATCH    256u
/* store_history ends a call at the next revision boundary after visiting this many events,
 * so a watch on a rare key does not hold one read transaction across the whole history. */
#define KV_HISTORY_SCAN_MAX 65536u

/* ---------------------------------------------------------------------------------- */
/* Records                                                                            */
/* ---------------------------------------------------------------------------------- */

void store__kvrec_encode_hdr(const struct store__kvrec *r, uint8_t hdr[STORE__KV_HDR])
{
    LATCH_ASSERTF(r->version >= 1, "version %lld", (long long)r->version);
    LATCH_ASSERTF(r->create_rev >= 1 && r->create_rev <= r->mod_rev, "create %lld mod %lld",
                  (long long)r->create_rev, (long long)r->mod_rev);
    store__put_le64(hdr, (uint64_t)r->create_rev);
    store__put_le64(hdr + 8, (uint64_t)r->mod_rev);
    store__put_le64(hdr + 16, (uint64_t)r->version);
    store__put_le64(hdr + 24, (uint64_t)r->lease);
    store__put_le32(hdr + 32, r->mod_sub);
    store__put_le32(hdr + 36, 0);
}

int store__kvrec_decode(const MDB_val *v, struct store__kvrec *r)
{
    LATCH_ASSERT(v != NULL && r != NULL);
    if (v->mv_size < STORE__KV_HDR || v->mv_size - STORE__KV_HDR > UINT32_MAX) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *p = v->mv_data;
    r->create_rev = (int64_t)store__get_le64(p);
    r->mod_rev = (int64_t)store__get_le64(p + 8);
    r->version = (int64_t)store__get_le64(p + 16);
    r->lease = (int64_t)store__get_le64(p + 24);
    r->mod_sub = store__get_le32(p + 32);
    r->value_len = (uint32_t)(v->mv_size - STORE__KV_HDR);
    r->value = p + STORE__KV_HDR;
    if (r->create_rev < 1 || r->mod_rev < r->create_rev || r->version < 1 ||
        store__get_le32(p + 36) != 0) {
        return LATCH_ECORRUPT;
    }
    return 0;
}

void store__hist_key(int64_t rev, uint32_t sub, uint8_t key[STORE__HIST_KEY])
{
    LATCH_ASSERTF(rev >= 1, "rev %lld", (long long)rev);
    store__put_be64(key, (uint64_t)rev);
    store__put_be32(key + 8, sub);
}

/* The checks of an event header that do not depend on the type. */
static int event_check(const struct store__event *ev)
{
    if (ev->rev < 1 || ev->prev_rev < 0) {
        return LATCH_ECORRUPT;
    }
    /* A prev pointer names an older event: the walk back always ends. */
    if (ev->prev_rev > ev->rev || (ev->prev_rev == ev->rev && ev->prev_sub >= ev->sub) ||
        (ev->prev_rev == 0 && ev->prev_sub != 0)) {
        return LATCH_ECORRUPT;
    }
    if (ev->type == STORE_EVENT_DELETE) {
        return ev->value_len == 0 ? 0 : LATCH_ECORRUPT;
    }
    if (ev->create_rev < 1 || ev->create_rev > ev->rev || ev->version < 1) {
        return LATCH_ECORRUPT;
    }
    return 0;
}

int store__event_decode(const MDB_val *k, const MDB_val *v, struct store__event *ev)
{
    LATCH_ASSERT(k != NULL && v != NULL && ev != NULL);
    if (k->mv_size != STORE__HIST_KEY || v->mv_size < STORE__EV_HDR) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *kp = k->mv_data;
    const uint8_t *p = v->mv_data;
    size_t rest = v->mv_size - STORE__EV_HDR;
    uint32_t key_len = store__get_le32(p + 4);

    if (p[0] > STORE_EVENT_DELETE || p[1] != 0 || p[2] != 0 || p[3] != 0 || key_len == 0 ||
        key_len > rest || rest - key_len > UINT32_MAX || store__get_le32(p + 44) != 0) {
        return LATCH_ECORRUPT;
    }
    ev->type = p[0];
    ev->rev = (int64_t)store__get_be64(kp);
    ev->sub = store__get_be32(kp + 8);
    ev->create_rev = (int64_t)store__get_le64(p + 8);
    ev->version = (int64_t)store__get_le64(p + 16);
    ev->lease = (int64_t)store__get_le64(p + 24);
    ev->prev_rev = (int64_t)store__get_le64(p + 32);
    ev->prev_sub = store__get_le32(p + 40);
    ev->key = p + STORE__EV_HDR;
    ev->key_len = key_len;
    ev->value = ev->key + key_len;
    ev->value_len = (uint32_t)(rest - key_len);
    return event_check(ev);
}

/* The tomb record of key: its delete event. LATCH_ENOTFOUND when the key has none. */
static int tomb_get(struct store *s,
                    MDB_txn *txn,
                    const uint8_t *key,
                    uint32_t key_len,
                    int64_t *rev,
                    uint32_t *sub)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v;
    int rc = mdb_get(txn, s->tomb, &k, &v);

    if (rc != 0) {
        return rc == MDB_NOTFOUND ? LATCH_ENOTFOUND : store__mdb_err(rc);
    }
    const uint8_t *p = v.mv_data;
    if (v.mv_size != STORE__TOMB_BYTES || store__get_le32(p + 12) != 0) {
        return LATCH_ECORRUPT;
    }
    *rev = (int64_t)store__get_le64(p);
    *sub = store__get_le32(p + 8);
    return *rev >= 1 ? 0 : LATCH_ECORRUPT;
}

/* ---------------------------------------------------------------------------------- */
/* Small helpers                                                                      */
/* ---------------------------------------------------------------------------------- */

/* Byte order of keys and values (LMDB's default order for keys). */
static int bytes_cmp(const void *a, size_t an, const void *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int c = m > 0 ? memcmp(a, b, m) : 0;

    if (c != 0) {
        return c;
    }
    return an < bn ? -1 : (an > bn ? 1 : 0);
}

/* mdb_cursor_get with the result mapped: LATCH_ENOTFOUND at the end. */
static int cursor_get(MDB_cursor *c, MDB_val *k, MDB_val *d, MDB_cursor_op op)
{
    return store__mdb_err(mdb_cursor_get(c, k, d, op));
}

/* A key range as in store_range_req: one key, [key, end), or every key >= key. */
struct krange {
    const uint8_t *key;
    const uint8_t *end;
    uint32_t key_len;
    uint32_t end_len;
    bool single;
    bool unbounded;
};

static void krange_init(
    struct krange *r, const uint8_t *key, uint32_t key_len, const uint8_t *end, uint32_t end_len)
{
    r->key = key;
    r->key_len = key_len;
    r->end = end;
    r->end_len = end_len;
    r->single = end_len == 0;
    r->unbounded = end_len == 1 && end[0] == 0; /* etcd's "\0": every key >= key */
}

/* Whether k (>= r->key, as a cursor positioned from r->key returns it) is inside r. */
static bool krange_holds(const struct krange *r, const MDB_val *k)
{
    if (r->single) {
        return bytes_cmp(k->mv_data, k->mv_size, r->key, r->key_len) == 0;
    }
    return r->unbounded || bytes_cmp(k->mv_data, k->mv_size, r->end, r->end_len) < 0;
}

/* Positions c at the first key of r (first == true) or the next one; *ok false at the end. */
static int
krange_step(MDB_cursor *c, const struct krange *r, bool first, MDB_val *k, MDB_val *d, bool *ok)
{
    int rc;

    *ok = false;
    if (first) {
        if (r->key_len > STORE_KEY_BYTES_MAX) {
            return 0; /* no stored key is that long; LMDB would refuse the lookup */
        }
        k->mv_size = r->key_len;
        k->mv_data = (void *)r->key;
        rc = mdb_cursor_get(c, k, d, r->single ? MDB_SET_KEY : MDB_SET_RANGE);
    } else {
        rc = r->single ? MDB_NOTFOUND : mdb_cursor_get(c, k, d, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    *ok = krange_holds(r, k);
    return 0;
}

/* Copies a key-value out of LMDB into a (values dropped when keys_only). */
static int kv_export(struct latch_arena *a,
                     const uint8_t *key,
                     uint32_t key_len,
                     const struct store__kvrec *rec,
                     bool keys_only,
                     struct store_kv *out)
{
    memset(out, 0, sizeof(*out));
    out->key = latch_arena_dup(a, key, key_len);
    if (out->key == NULL) {
        return LATCH_ENOMEM;
    }
    out->key_len = key_len;
    if (!keys_only) {
        out->value = latch_arena_dup(a, rec->value, rec->value_len);
        if (out->value == NULL) {
            return LATCH_ENOMEM;
        }
        out->value_len = rec->value_len;
    }
    out->create_revision = rec->create_rev;
    out->mod_revision = rec->mod_rev;
    out->version = rec->version;
    out->lease = rec->lease;
    return 0;
}

/* A growable array of fixed-size items on the heap (scratch of one call). */
struct vec {
    void *v;
    size_t n;
    size_t cap;
};

static void *vec_push(struct vec *vec, size_t item_size)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap > 0 ? vec->cap * 2 : 16;
        void *nv = realloc(vec->v, cap * item_size);
        if (nv == NULL) {
            return NULL;
        }
        vec->v = nv;
        vec->cap = cap;
    }
    return (uint8_t *)vec->v + item_size * vec->n++;
}

/* ---------------------------------------------------------------------------------- */
/* Point reads                                                                        */
/* ---------------------------------------------------------------------------------- */

int store__kv_get(
    struct store *s, MDB_txn *txn, const uint8_t *key, uint32_t key_len, struct store__kvrec *out)
{
    LATCH_ASSERT(s != NULL && txn != NULL);
    LATCH_ASSERT(out != NULL);
    if (key_len == 0 || key_len > STORE_KEY_BYTES_MAX) {
        return LATCH_ENOTFOUND; /* no such key can be stored */
    }
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v;
    int rc = mdb_get(txn, s->kv, &k, &v);
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? LATCH_ENOTFOUND : store__mdb_err(rc);
    }
    return store__kvrec_decode(&v, out);
}

/*
 * The state at rev of a key, found by following prev pointers from its event (ptr_rev,
 * ptr_sub) back to the first event at or below rev. A pointer to an event hist no longer
 * holds means "absent" (I5): compaction dropped a tombstone or a version that no read at or
 * above the compaction point can see. LATCH_ENOTFOUND when the key did not exist at rev.
 */
static int hist_walk(struct store *s,
                     MDB_txn *txn,
                     int64_t ptr_rev,
                     uint32_t ptr_sub,
                     int64_t rev,
                     struct store__kvrec *out)
{
    uint8_t hk[STORE__HIST_KEY];
    struct store__event ev;

    LATCH_ASSERT(rev >= 0);
    while (ptr_rev != 0) {
        store__hist_key(ptr_rev, ptr_sub, hk);
        MDB_val k = {.mv_size = sizeof(hk), .mv_data = hk};
        MDB_val v;
        int rc = mdb_get(txn, s->hist, &k, &v);
        if (rc != 0) {
            return rc == MDB_NOTFOUND ? LATCH_ENOTFOUND : store__mdb_err(rc);
        }
        rc = store__event_decode(&k, &v, &ev);
        if (rc != 0) {
            return rc;
        }
        if (ev.rev <= rev) {
            if (ev.type == STORE_EVENT_DELETE) {
                return LATCH_ENOTFOUND;
            }
            *out = (struct store__kvrec){.create_rev = ev.create_rev,
                                         .mod_rev = ev.rev,
                                         .version = ev.version,
                                         .lease = ev.lease,
                                         .mod_sub = ev.sub,
                                         .value_len = ev.value_len,
                                         .value = ev.value};
            return 0;
        }
        ptr_rev = ev.prev_rev;
        ptr_sub = ev.prev_sub;
    }
    return LATCH_ENOTFOUND;
}

int store__kv_at(struct store *s,
                 MDB_txn *txn,
                 const uint8_t *key,
                 uint32_t key_len,
                 int64_t rev,
                 struct store__kvrec *out)
{
    int64_t trev;
    uint32_t tsub;

    LATCH_ASSERTF(rev >= 0, "rev %lld", (long long)rev);
    int rc = store__kv_get(s, txn, key, key_len, out);
    if (rc == 0) {
        if (out->mod_rev <= rev) {
            return 0;
        }
        return hist_walk(s, txn, out->mod_rev, out->mod_sub, rev, out);
    }
    if (rc != LATCH_ENOTFOUND) {
        return rc;
    }
    rc = tomb_get(s, txn, key, key_len, &trev, &tsub);
    if (rc != 0) {
        return rc;
    }
    return trev <= rev ? LATCH_ENOTFOUND : hist_walk(s, txn, trev, tsub, rev, out);
}

/* ---------------------------------------------------------------------------------- */
/* Writes                                                                             */
/* ---------------------------------------------------------------------------------- */

/* What one event records besides its key, revision and sub-revision. */
struct ev_body {
    uint32_t type;
    int64_t create_rev;
    int64_t version;
    int64_t lease;
    int64_t prev_rev;
    uint32_t prev_sub;
    const uint8_t *value;
    uint32_t value_len;
};

/* Appends the running command's next event; *sub_out gets its sub-revision (I2). */
static int hist_append(struct store__w *w,
                       const uint8_t *key,
                       uint32_t key_len,
                       const struct ev_body *b,
                       uint32_t *sub_out)
{
    uint8_t hk[STORE__HIST_KEY];
    int64_t rev = store__w_rev(w);

    LATCH_ASSERT(key_len > 0 && key_len <= STORE_KEY_BYTES_MAX);
    LATCH_ASSERTF(b->prev_rev < rev || (b->prev_rev == rev && b->prev_sub < w->sub),
                  "prev %lld.%u at %lld.%u", (long long)b->prev_rev, b->prev_sub, (long long)rev,
                  w->sub);
    store__hist_key(rev, w->sub, hk);
    MDB_val k = {.mv_size = sizeof(hk), .mv_data = hk};
    MDB_val v = {.mv_size = STORE__EV_HDR + (size_t)key_len + b->value_len, .mv_data = NULL};
    int rc = mdb_put(w->txn, w->s->hist, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0) {
        /* MDB_KEYEXIST: hist already holds this revision, so meta "rev" is behind it. */
        return rc == MDB_KEYEXIST ? LATCH_ECORRUPT : store__mdb_err(rc);
    }
    uint8_t *p = v.mv_data;
    memset(p, 0, STORE__EV_HDR);
    p[0] = (uint8_t)b->type;
    store__put_le32(p + 4, key_len);
    store__put_le64(p + 8, (uint64_t)b->create_rev);
    store__put_le64(p + 16, (uint64_t)b->version);
    store__put_le64(p + 24, (uint64_t)b->lease);
    store__put_le64(p + 32, (uint64_t)b->prev_rev);
    store__put_le32(p + 40, b->prev_sub);
    memcpy(p + STORE__EV_HDR, key, key_len);
    if (b->value_len > 0) {
        memcpy(p + STORE__EV_HDR + key_len, b->value, b->value_len);
    }
    *sub_out = w->sub++;
    return 0;
}

/* What store__kv_put found and decided before writing anything. */
struct put_plan {
    bool exists; /* the key is live: an update */
    bool tomb;   /* the key has a tomb record, which the create removes */
    int64_t old_lease;
    struct store__kvrec rec; /* the new record (mod_sub set when the event is written) */
    int64_t prev_rev;        /* the key's previous event */
    uint32_t prev_sub;
    uint8_t *value_copy; /* heap copy of the old value for ignore_value, or NULL */
};

/* Fills the plan from the old state of the key under cursor c (positioned by MDB_SET). */
static int put_plan_existing(struct store__w *w,
                             const struct store_put_req *q,
                             const MDB_val *d,
                             struct store_put_result *res,
                             struct put_plan *pl)
{
    struct store__kvrec old;
    int rc = store__kvrec_decode(d, &old);

    if (rc != 0) {
        return rc;
    }
    pl->exists = true;
    pl->old_lease = old.lease;
    pl->prev_rev = old.mod_rev;
    pl->prev_sub = old.mod_sub;
    pl->rec.create_rev = old.create_rev;
    pl->rec.version = old.version + 1;
    pl->rec.lease = q->ignore_lease ? old.lease : q->lease;
    pl->rec.value = q->value;
    pl->rec.value_len = q->value_len;
    if (res != NULL && q->prev_kv) {
        rc = kv_export(w->arena, q->key, q->key_len, &old, false, &res->prev);
        if (rc != 0) {
            return rc;
        }
        res->has_prev = true;
    }
    if (q->ignore_value) {
        /* The old value's page may move once kv is written: keep a copy. */
        if (res != NULL && res->has_prev) {
            pl->rec.value = res->prev.value;
        } else if (old.value_len > 0) {
            pl->value_copy = malloc(old.value_len);
            if (pl->value_copy == NULL) {
                return LATCH_ENOMEM;
            }
            memcpy(pl->value_copy, old.value, old.value_len);
            pl->rec.value = pl->value_copy;
        }
        pl->rec.value_len = old.value_len;
    }
    return 0;
}

/* Decides the put: existing key or create, the checks etcd makes, the new record. */
static int put_plan(struct store__w *w,
                    const struct store_put_req *q,
                    MDB_cursor *c,
                    bool positioned,
                    struct store_put_result *res,
                    struct put_plan *pl)
{
    MDB_val k = {.mv_size = q->key_len, .mv_data = (void *)q->key};
    MDB_val d;
    /* positioned: put_try_create left c on the existing key; no second descent. */
    int rc = mdb_cursor_get(c, &k, &d, positioned ? MDB_GET_CURRENT : MDB_SET);

    memset(pl, 0, sizeof(*pl));
    pl->rec.mod_rev = store__w_rev(w);
    if (rc == 0) {
        rc = put_plan_existing(w, q, &d, res, pl);
    } else if (rc == MDB_NOTFOUND) {
        if (q->ignore_value || q->ignore_lease) {
            return LATCH_ENOKEY; /* etcd: "key not found" */
        }
        rc = tomb_get(w->s, w->txn, q->key, q->key_len, &pl->prev_rev, &pl->prev_sub);
        pl->tomb = rc == 0;
        rc = rc == LATCH_ENOTFOUND ? 0 : rc;
        pl->rec.create_rev = pl->rec.mod_rev;
        pl->rec.version = 1;
        pl->rec.lease = q->lease;
        pl->rec.value = q->value;
        pl->rec.value_len = q->value_len;
    } else {
        rc = store__mdb_err(rc);
    }
    if (rc == 0 && !q->ignore_lease && q->lease != 0) {
        rc = store__lease_exists(w->s, w->txn, q->lease); /* etcd: "lease not found" */
    }
    return rc;
}

/* Writes the event and the kv record of a planned put through cursor c. */
static int
put_write(struct store__w *w, const struct store_put_req *q, MDB_cursor *c, struct put_plan *pl)
{
    struct ev_body b = {.type = STORE_EVENT_PUT,
                        .create_rev = pl->rec.create_rev,
                        .version = pl->rec.version,
                        .lease = pl->rec.lease,
                        .prev_rev = pl->prev_rev,
                        .prev_sub = pl->prev_sub,
                        .value = pl->rec.value,
                        .value_len = pl->rec.value_len};
    int rc = hist_append(w, q->key, q->key_len, &b, &pl->rec.mod_sub);

    if (rc != 0) {
        return rc;
    }
    MDB_val k = {.mv_size = q->key_len, .mv_data = (void *)q->key};
    MDB_val d = {.mv_size = STORE__KV_HDR + (size_t)pl->rec.value_len, .mv_data = NULL};
    /* An update rewrites the record under the cursor: no second descent of the tree. */
    rc = mdb_cursor_put(c, &k, &d, (pl->exists ? MDB_CURRENT : 0u) | MDB_RESERVE);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    uint8_t *p = d.mv_data;
    store__kvrec_encode_hdr(&pl->rec, p);
    if (pl->rec.value_len > 0) {
        memmove(p + STORE__KV_HDR, pl->rec.value, pl->rec.value_len);
    }
    return 0;
}

/* The other tables a put touches: tomb, lease_keys (I6), tree counters (I7). */
static int put_finish(struct store__w *w, const struct store_put_req *q, const struct put_plan *pl)
{
    int rc = 0;

    if (pl->tomb) {
        MDB_val k = {.mv_size = q->key_len, .mv_data = (void *)q->key};
        rc = store__mdb_err(mdb_del(w->txn, w->s->tomb, &k, NULL));
    }
    if (rc == 0 && pl->old_lease != pl->rec.lease) {
        rc = store__lease_attach(w, q->key, q->key_len, pl->old_lease, pl->rec.lease);
    }
    if (rc == 0 && !pl->exists) {
        rc = store__tree_on_create(w, q->key, q->key_len);
    }
    return rc;
}

/*
 * The create path with one descent of kv: MDB_NOOVERWRITE reserves the new record where
 * the key belongs, or finds the existing key (nothing written, *created false, cursor c on
 * the key). Only for puts without ignore_* flags (those must fail on a missing key before
 * anything is written) and after the lease check. The record is filled before the next
 * write (MDB_RESERVE's rule), then the event is appended.
 */
static int put_try_create(struct store__w *w,
                          const struct store_put_req *q,
                          MDB_cursor *c,
                          struct put_plan *pl,
                          bool *created)
{
    MDB_val k = {.mv_size = q->key_len, .mv_data = (void *)q->key};
    MDB_val d = {.mv_size = STORE__KV_HDR + (size_t)q->value_len, .mv_data = NULL};

    LATCH_ASSERT(!q->ignore_value && !q->ignore_lease);
    *created = false;
    int rc = mdb_cursor_put(c, &k, &d, MDB_NOOVERWRITE | MDB_RESERVE);
    if (rc == MDB_KEYEXIST) {
        return 0;
    }
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    *created = true;
    memset(pl, 0, sizeof(*pl));
    pl->rec.create_rev = pl->rec.mod_rev = store__w_rev(w);
    pl->rec.version = 1;
    pl->rec.lease = q->lease;
    pl->rec.value = q->value;
    pl->rec.value_len = q->value_len;
    pl->rec.mod_sub = w->sub; /* the event appended below */
    store__kvrec_encode_hdr(&pl->rec, d.mv_data);
    if (q->value_len > 0) {
        memcpy((uint8_t *)d.mv_data + STORE__KV_HDR, q->value, q->value_len);
    }
    rc = w->tombs_possible
             ? tomb_get(w->s, w->txn, q->key, q->key_len, &pl->prev_rev, &pl->prev_sub)
             : LATCH_ENOTFOUND;
    pl->tomb = rc == 0;
    rc = rc == LATCH_ENOTFOUND ? 0 : rc;
    if (rc != 0) {
        return rc;
    }
    struct ev_body b = {.type = STORE_EVENT_PUT,
                        .create_rev = pl->rec.create_rev,
                        .version = 1,
                        .lease = q->lease,
                        .prev_rev = pl->prev_rev,
                        .prev_sub = pl->prev_sub,
                        .value = q->value,
                        .value_len = q->value_len};
    uint32_t sub = 0;
    rc = hist_append(w, q->key, q->key_len, &b, &sub);
    LATCH_ASSERTF(rc != 0 || sub == pl->rec.mod_sub, "event sub %u, record says %u", sub,
                  pl->rec.mod_sub);
    return rc;
}

/* An update (or any put with ignore_* flags): plan from the old record, then write. */
static int put_update(struct store__w *w,
                      const struct store_put_req *q,
                      MDB_cursor *c,
                      bool positioned,
                      struct store_put_result *res,
                      struct put_plan *pl)
{
    int rc = put_plan(w, q, c, positioned, res, pl);

    return rc != 0 ? rc : put_write(w, q, c, pl);
}

int store__kv_put(struct store__w *w, const struct store_put_req *q, struct store_put_result *res)
{
    MDB_cursor *c = NULL;
    struct put_plan pl;
    bool created = false;

    LATCH_ASSERT(w != NULL && q != NULL);
    LATCH_ASSERT(w->txn != NULL);
    if (res != NULL) {
        memset(res, 0, sizeof(*res));
    }
    if (q->key_len == 0 || (q->ignore_value && q->value_len > 0) ||
        (q->ignore_lease && q->lease != 0)) {
        return LATCH_EINVAL;
    }
    if (q->key_len > STORE_KEY_BYTES_MAX || q->value_len > STORE_VALUE_BYTES_MAX) {
        return LATCH_ETOOBIG;
    }
    bool fast = !q->ignore_value && !q->ignore_lease;
    int rc = fast && q->lease != 0 ? store__lease_exists(w->s, w->txn, q->lease) : 0;
    if (rc == 0 && (w->kv_cur == NULL || w->kv_cur_txn != w->txn)) {
        rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->kv, &w->kv_cur));
        w->kv_cur_txn = rc == 0 ? w->txn : NULL;
        w->kv_cur = rc == 0 ? w->kv_cur : NULL;
    }
    if (rc != 0) {
        return rc; /* etcd: "lease not found" before anything is written */
    }
    c = w->kv_cur;
    memset(&pl, 0, sizeof(pl));
    if (fast) {
        rc = put_try_create(w, q, c, &pl, &created);
    }
    if (rc == 0 && !created) {
        rc = put_update(w, q, c, fast, res, &pl);
    }
    free(pl.value_copy); /* c stays open for the batch's next put */
    if (rc == 0) {
        rc = put_finish(w, q, &pl);
    }
    return rc;
}

/*
 * Deletes the live key under cursor c (its record is d): a DELETE event, the tomb record,
 * the lease and tree hooks. The cursor is left unpositioned.
 */
static int delete_current(
    struct store__w *w, MDB_cursor *c, const MDB_val *k, const MDB_val *d, struct store_kv *prev)
{
    uint8_t key[STORE_KEY_BYTES_MAX];
    uint8_t tomb[STORE__TOMB_BYTES] = {0};
    struct store__kvrec old;
    uint32_t key_len = (uint32_t)k->mv_size;
    uint32_t sub;
    int rc = store__kvrec_decode(d, &old);

    LATCH_ASSERTF(key_len > 0 && key_len <= STORE_KEY_BYTES_MAX, "key_len %u", key_len);
    if (rc != 0) {
        return rc;
    }
    memcpy(key, k->mv_data, key_len); /* the page may change under k once we write */
    if (prev != NULL) {
        rc = kv_export(w->arena, key, key_len, &old, false, prev);
    }
    struct ev_body b = {
        .type = STORE_EVENT_DELETE, .prev_rev = old.mod_rev, .prev_sub = old.mod_sub};
    rc = rc != 0 ? rc : hist_append(w, key, key_len, &b, &sub);
    rc = rc != 0 ? rc : store__mdb_err(mdb_cursor_del(c, 0));
    if (rc != 0) {
        return rc;
    }
    store__put_le64(tomb, (uint64_t)store__w_rev(w));
    store__put_le32(tomb + 8, sub);
    MDB_val tk = {.mv_size = key_len, .mv_data = key};
    MDB_val tv = {.mv_size = sizeof(tomb), .mv_data = tomb};
    rc = store__mdb_err(mdb_put(w->txn, w->s->tomb, &tk, &tv, 0));
    w->tombs_possible = true;
    if (rc == 0 && old.lease != 0) {
        rc = store__lease_attach(w, key, key_len, old.lease, 0);
    }
    return rc != 0 ? rc : store__tree_on_delete(w, key, key_len);
}

int store__kv_delete_key(struct store__w *w,
                         const uint8_t *key,
                         uint32_t key_len,
                         struct store_kv *prev)
{
    MDB_cursor *c = NULL;

    LATCH_ASSERT(w != NULL && w->txn != NULL);
    if (key_len == 0 || key_len > STORE_KEY_BYTES_MAX) {
        return LATCH_ENOTFOUND;
    }
    int rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->kv, &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
    if (rc == 0) {
        rc = delete_current(w, c, &k, &d, prev);
    } else {
        rc = rc == MDB_NOTFOUND ? LATCH_ENOTFOUND : store__mdb_err(rc);
    }
    mdb_cursor_close(c);
    return rc;
}

/* Deletes every live key of r (not a single key) in key order; prevs collects copies. */
static int
delete_scan(struct store__w *w, const struct krange *r, struct vec *prevs, int64_t *deleted)
{
    uint8_t next[STORE_KEY_BYTES_MAX];
    struct krange from = *r;
    MDB_cursor *c = NULL;
    MDB_val k, d;
    bool ok = true;
    int rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->kv, &c));

    while (rc == 0 && ok) {
        rc = krange_step(c, &from, true, &k, &d, &ok);
        if (rc != 0 || !ok) {
            break;
        }
        struct store_kv *prev = NULL;
        if (prevs != NULL && (prev = vec_push(prevs, sizeof(*prev))) == NULL) {
            rc = LATCH_ENOMEM;
            break;
        }
        /* Seek again from the deleted key after each delete instead of trusting the
         * cursor across the writes to other tables. */
        memcpy(next, k.mv_data, k.mv_size);
        from.key = next;
        from.key_len = (uint32_t)k.mv_size;
        rc = delete_current(w, c, &k, &d, prev);
        *deleted += rc == 0 ? 1 : 0;
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    return rc;
}

int store__kv_delete_range(struct store__w *w,
                           const struct store_delete_req *q,
                           struct store_delete_result *res)
{
    struct store_delete_result local;
    struct krange r;
    struct vec prevs = {0};
    int rc;

    LATCH_ASSERT(w != NULL && q != NULL);
    res = res != NULL ? res : &local;
    memset(res, 0, sizeof(*res));
    if (q->key_len == 0) {
        return LATCH_EINVAL;
    }
    krange_init(&r, q->key, q->key_len, q->range_end, q->range_end_len);
    if (r.single) {
        struct store_kv *prev = q->prev_kv ? latch_arena_calloc(w->arena, 1, sizeof(*prev)) : NULL;
        if (q->prev_kv && prev == NULL) {
            return LATCH_ENOMEM;
        }
        rc = store__kv_delete_key(w, q->key, q->key_len, prev);
        if (rc == LATCH_ENOTFOUND) {
            return 0; /* nothing deleted: no event, no revision */
        }
        res->deleted = rc == 0 ? 1 : 0;
        res->prev_kvs = prev;
        res->prev_kvs_count = prev != NULL && rc == 0 ? 1 : 0;
        return rc;
    }
    rc = delete_scan(w, &r, q->prev_kv ? &prevs : NULL, &res->deleted);
    if (rc == 0 && q->prev_kv) {
        res->prev_kvs = latch_arena_dup(w->arena, prevs.v, prevs.n * sizeof(struct store_kv));
        res->prev_kvs_count = prevs.n;
        rc = res->prev_kvs == NULL ? LATCH_ENOMEM : 0;
    }
    free(prevs.v);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Scans over the live keys (store_txn.c's range compares)                            */
/* ---------------------------------------------------------------------------------- */

int store__kv_scan(struct store *s,
                   MDB_txn *txn,
                   const uint8_t *key,
                   uint32_t key_len,
                   const uint8_t *range_end,
                   uint32_t range_end_len,
                   store__kv_visit_fn fn,
                   void *arg)
{
    struct krange r;
    MDB_cursor *c = NULL;
    MDB_val k, d;
    struct store__kvrec rec;
    bool ok = false;

    LATCH_ASSERT(s != NULL && txn != NULL);
    LATCH_ASSERT(fn != NULL);
    krange_init(&r, key, key_len, range_end, range_end_len);
    int rc = store__mdb_err(mdb_cursor_open(txn, s->kv, &c));
    if (rc == 0) {
        rc = krange_step(c, &r, true, &k, &d, &ok);
    }
    while (rc == 0 && ok) {
        rc = store__kvrec_decode(&d, &rec);
        rc = rc != 0 ? rc : fn(arg, &k, &rec);
        if (rc == 0) {
            rc = krange_step(c, &r, false, &k, &d, &ok);
        }
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    return rc > 0 ? 0 : rc;
}

/* ---------------------------------------------------------------------------------- */
/* Range                                                                              */
/* ---------------------------------------------------------------------------------- */

/*
 * Iterates the keys that existed at rev in a key range, in key order: kv alone at the
 * current revision; kv and tomb merged below it (a key deleted since rev is only in tomb).
 */
struct kv_iter {
    struct store *s;
    MDB_txn *txn;
    int64_t rev;
    struct krange r;
    MDB_cursor *kc;
    MDB_cursor *tc; /* NULL at the current revision */
    MDB_val kk, kd, tk, td;
    bool k_ok, t_ok;
};

static int kv_iter_open(struct kv_iter *it,
                        struct store *s,
                        MDB_txn *txn,
                        int64_t rev,
                        bool historical,
                        const struct krange *r)
{
    memset(it, 0, sizeof(*it));
    it->s = s;
    it->txn = txn;
    it->rev = rev;
    it->r = *r;
    int rc = store__mdb_err(mdb_cursor_open(txn, s->kv, &it->kc));
    rc = rc != 0 ? rc : krange_step(it->kc, r, true, &it->kk, &it->kd, &it->k_ok);
    if (rc == 0 && historical) {
        rc = store__mdb_err(mdb_cursor_open(txn, s->tomb, &it->tc));
        rc = rc != 0 ? rc : krange_step(it->tc, r, true, &it->tk, &it->td, &it->t_ok);
    }
    return rc;
}

static void kv_iter_close(struct kv_iter *it)
{
    if (it->kc != NULL) {
        mdb_cursor_close(it->kc);
    }
    if (it->tc != NULL) {
        mdb_cursor_close(it->tc);
    }
}

/* The state at it->rev of a key whose tomb record is d. */
static int iter_tomb_state(struct kv_iter *it, const MDB_val *d, struct store__kvrec *rec)
{
    const uint8_t *p = d->mv_data;

    LATCH_ASSERT(it->tc != NULL); /* tomb is only read below the current revision */
    if (d->mv_size != STORE__TOMB_BYTES || store__get_le32(p + 12) != 0) {
        return LATCH_ECORRUPT;
    }
    int64_t trev = (int64_t)store__get_le64(p);
    if (trev <= it->rev) {
        return LATCH_ENOTFOUND; /* already deleted at rev */
    }
    return hist_walk(it->s, it->txn, trev, store__get_le32(p + 8), it->rev, rec);
}

/* Next key that existed at it->rev: 0 with *key and *rec, or LATCH_ENOTFOUND at the end. */
static int kv_iter_next(struct kv_iter *it, MDB_val *key, struct store__kvrec *rec)
{
    int rc;

    for (;;) {
        if (!it->k_ok && !it->t_ok) {
            return LATCH_ENOTFOUND;
        }
        int c = !it->k_ok ? 1
                : !it->t_ok
                    ? -1
                    : bytes_cmp(it->kk.mv_data, it->kk.mv_size, it->tk.mv_data, it->tk.mv_size);
        if (c <= 0) {
            *key = it->kk;
            rc = store__kvrec_decode(&it->kd, rec);
            if (rc == 0 && rec->mod_rev > it->rev) {
                rc = hist_walk(it->s, it->txn, rec->mod_rev, rec->mod_sub, it->rev, rec);
            }
        } else {
            *key = it->tk;
            rc = iter_tomb_state(it, &it->td, rec);
        }
        /* Advance past this key (in both tables when, against I3, it is in both). */
        int rc2 = 0;
        if (c <= 0) {
            rc2 = krange_step(it->kc, &it->r, false, &it->kk, &it->kd, &it->k_ok);
        }
        if (rc2 == 0 && c >= 0) {
            rc2 = krange_step(it->tc, &it->r, false, &it->tk, &it->td, &it->t_ok);
        }
        if (rc != LATCH_ENOTFOUND) {
            return rc != 0 ? rc : rc2;
        }
        if (rc2 != 0) {
            return rc2;
        }
    }
}

struct ritem {
    MDB_val key;
    struct store__kvrec rec;
};

/* Validates the parts of a range request store__range relies on. */
static int range_check(const struct store_range_req *q)
{
    if (q->key_len == 0) {
        return LATCH_EINVAL; /* etcd: "key is not provided" */
    }
    if (q->key_len > STORE_KEY_BYTES_MAX) {
        return LATCH_ETOOBIG;
    }
    if (q->sort_order > STORE_SORT_DESCEND || q->sort_target > STORE_SORT_VALUE) {
        return LATCH_EINVAL;
    }
    return 0;
}

static bool range_has_filter(const struct store_range_req *q)
{
    return q->min_mod_revision != 0 || q->max_mod_revision != 0 || q->min_create_revision != 0 ||
           q->max_create_revision != 0;
}

/*
 * Collects the keys of q at rev: *count gets them all (etcd counts before limit and
 * filters); items gets all of them when a sort or filter follows, else the first limit + 1
 * (the extra one tells "more"), as etcd's applier fetches.
 */
static int range_collect(struct store *s,
                         MDB_txn *txn,
                         int64_t rev,
                         int64_t cur_rev,
                         const struct store_range_req *q,
                         struct vec *items,
                         int64_t *count)
{
    struct krange r;
    struct kv_iter it;
    MDB_val key;
    struct store__kvrec rec;
    int64_t fetch = q->limit > 0 && q->limit < INT64_MAX ? q->limit + 1 : 0;

    if (q->sort_order != STORE_SORT_NONE || range_has_filter(q)) {
        fetch = 0;
    }
    krange_init(&r, q->key, q->key_len, q->range_end, q->range_end_len);
    int rc = kv_iter_open(&it, s, txn, rev, rev < cur_rev, &r);
    while (rc == 0) {
        rc = kv_iter_next(&it, &key, &rec);
        if (rc != 0) {
            break;
        }
        (*count)++;
        if (q->count_only || (fetch > 0 && (int64_t)items->n >= fetch)) {
            continue;
        }
        struct ritem *ri = vec_push(items, sizeof(*ri));
        if (ri == NULL) {
            rc = LATCH_ENOMEM;
            break;
        }
        ri->key = key;
        ri->rec = rec;
    }
    kv_iter_close(&it);
    return rc == LATCH_ENOTFOUND ? 0 : rc;
}

/* etcd's pruneKVs for the min/max mod/create revision filters (0: off). */
static void range_filter(const struct store_range_req *q, struct vec *items)
{
    struct ritem *v = items->v;
    size_t n = 0;

    for (size_t i = 0; i < items->n; i++) {
        const struct store__kvrec *r = &v[i].rec;
        if ((q->max_mod_revision != 0 && r->mod_rev > q->max_mod_revision) ||
            (q->min_mod_revision != 0 && r->mod_rev < q->min_mod_revision) ||
            (q->max_create_revision != 0 && r->create_rev > q->max_create_revision) ||
            (q->min_create_revision != 0 && r->create_rev < q->min_create_revision)) {
            continue;
        }
        v[n++] = v[i];
    }
    items->n = n;
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Order of a and b by target, reversed for DESCEND. */
static int ritem_cmp(const struct ritem *a, const struct ritem *b, uint32_t target, bool desc)
{
    int c;

    switch (target) {
    case STORE_SORT_VERSION:
        c = cmp_i64(a->rec.version, b->rec.version);
        break;
    case STORE_SORT_CREATE:
        c = cmp_i64(a->rec.create_rev, b->rec.create_rev);
        break;
    case STORE_SORT_MOD:
        c = cmp_i64(a->rec.mod_rev, b->rec.mod_rev);
        break;
    case STORE_SORT_VALUE:
        c = bytes_cmp(a->rec.value, a->rec.value_len, b->rec.value, b->rec.value_len);
        break;
    default:
        c = bytes_cmp(a->key.mv_data, a->key.mv_size, b->key.mv_data, b->key.mv_size);
        break;
    }
    return desc ? -c : c;
}

/*
 * Sorts items as etcd's applier does: a target other than KEY with order NONE means
 * ASCEND. A stable bottom-up merge sort (no recursion): ties keep key order, as Go's
 * sort.Sort does for the small results it usually sees.
 */
static int range_sort(const struct store_range_req *q, struct vec *items)
{
    uint32_t order = q->sort_order;

    if (q->sort_target != STORE_SORT_KEY && order == STORE_SORT_NONE) {
        order = STORE_SORT_ASCEND;
    }
    if (order == STORE_SORT_NONE || items->n < 2 ||
        (q->sort_target == STORE_SORT_KEY && order == STORE_SORT_ASCEND)) {
        return 0; /* already in key order */
    }
    bool desc = order == STORE_SORT_DESCEND;
    size_t n = items->n;
    struct ritem *src = items->v;
    struct ritem *dst = malloc(n * sizeof(*dst));
    if (dst == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid || j < hi) {
                bool left =
                    j >= hi || (i < mid && ritem_cmp(&src[i], &src[j], q->sort_target, desc) <= 0);
                dst[o++] = left ? src[i++] : src[j++];
            }
        }
        struct ritem *t = src;
        src = dst;
        dst = t;
    }
    items->v = src;
    free(dst);
    return 0;
}

/* Applies the limit and copies the result into a. */
static int range_emit(const struct store_range_req *q,
                      const struct vec *items,
                      struct latch_arena *a,
                      struct store_range_result *out)
{
    const struct ritem *v = items->v;
    size_t n = items->n;

    if (q->limit > 0 && n > (uint64_t)q->limit) {
        n = (size_t)q->limit;
        out->more = true;
    }
    if (n == 0) {
        return 0;
    }
    out->kvs = latch_arena_calloc(a, n, sizeof(*out->kvs));
    if (out->kvs == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = kv_export(a, v[i].key.mv_data, (uint32_t)v[i].key.mv_size, &v[i].rec, q->keys_only,
                           &out->kvs[i]);
        if (rc != 0) {
            return rc;
        }
    }
    out->kvs_count = n;
    return 0;
}

/* A single key: one lookup, no cursor and no heap (the point-get path). */
static int range_one(struct store *s,
                     MDB_txn *txn,
                     int64_t rev,
                     int64_t cur_rev,
                     const struct store_range_req *q,
                     struct ritem *one,
                     struct vec *items,
                     int64_t *count)
{
    int rc = rev < cur_rev ? store__kv_at(s, txn, q->key, q->key_len, rev, &one->rec)
                           : store__kv_get(s, txn, q->key, q->key_len, &one->rec);

    if (rc == LATCH_ENOTFOUND) {
        return 0;
    }
    if (rc == 0) {
        *count = 1;
        one->key = (MDB_val){.mv_size = q->key_len, .mv_data = (void *)q->key};
        *items = (struct vec){.v = one, .n = q->count_only ? 0 : 1, .cap = 1};
    }
    return rc;
}

int store__range(struct store *s,
                 MDB_txn *txn,
                 int64_t cur_rev,
                 int64_t compact_rev,
                 const struct store_range_req *q,
                 struct latch_arena *a,
                 struct store_range_result *out)
{
    struct vec items = {0};
    struct ritem one;

    LATCH_ASSERT(s != NULL && txn != NULL && q != NULL && a != NULL && out != NULL);
    LATCH_ASSERTF(compact_rev <= cur_rev, "compact %lld > current %lld", (long long)compact_rev,
                  (long long)cur_rev);
    memset(out, 0, sizeof(*out));
    int rc = range_check(q);
    if (rc != 0) {
        return rc;
    }
    /* etcd's rangeKeys: future first, then <= 0 means current, then compacted. */
    int64_t rev = q->revision;
    if (rev > cur_rev) {
        return LATCH_EFUTUREREV;
    }
    if (rev <= 0) {
        rev = cur_rev;
    }
    if (rev < compact_rev) {
        return LATCH_ECOMPACTED;
    }
    if (q->range_end_len == 0) {
        rc = range_one(s, txn, rev, cur_rev, q, &one, &items, &out->count);
    } else {
        rc = range_collect(s, txn, rev, cur_rev, q, &items, &out->count);
    }
    if (rc == 0 && !q->count_only) {
        range_filter(q, &items);
        rc = range_sort(q, &items);
        rc = rc != 0 ? rc : range_emit(q, &items, a, out);
    }
    if (items.v != &one) {
        free(items.v);
    }
    return rc;
}

/* The current and (when want_compact) compacted revisions as meta records them. */
static int
read_revs(struct store_reader *r, MDB_txn *txn, bool want_compact, int64_t *cur, int64_t *compact)
{
    struct store *s = r->s;
    int rc = store__reader_rev(r, txn, cur);

    *compact = 0;
    if (rc == 0 && want_compact) {
        rc = store__meta_get_i64(txn, s->meta, "compact", compact);
    }
    if (rc == LATCH_ENOTFOUND || (rc == 0 && (*cur < 1 || *compact > *cur))) {
        return LATCH_ECORRUPT;
    }
    return rc;
}

int store_range(struct store_reader *r,
                const struct store_range_req *q,
                struct latch_arena *a,
                struct store_range_result *out,
                int64_t *header_revision)
{
    MDB_txn *txn = NULL;
    int64_t cur = 0, compact = 0;

    LATCH_ASSERT(r != NULL && q != NULL);
    LATCH_ASSERT(a != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    /* A read at the current revision (<= 0) cannot be below the compaction point. */
    rc = read_revs(r, txn, q->revision > 0, &cur, &compact);
    rc = rc != 0 ? rc : store__range(r->s, txn, cur, compact, q, a, out);
    store__read_end(r);
    if (rc == 0 && header_revision != NULL) {
        *header_revision = cur;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Compaction (I4)                                                                    */
/* ---------------------------------------------------------------------------------- */

/* Drops key's tomb record when it still names the delete event (rev, sub). */
static int
tomb_drop_if(struct store__w *w, const uint8_t *key, uint32_t key_len, int64_t rev, uint32_t sub)
{
    int64_t trev;
    uint32_t tsub;
    int rc = tomb_get(w->s, w->txn, key, key_len, &trev, &tsub);

    if (rc == LATCH_ENOTFOUND || (rc == 0 && (trev != rev || tsub != sub))) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    return store__mdb_err(mdb_del(w->txn, w->s->tomb, &k, NULL));
}

/*
 * Visits up to KV_COMPACT_BATCH events from *next with revisions <= rev and deletes what
 * they make unreachable from rev on: each event's previous event when that is below rev
 * (an event at rev itself stays, watches from rev need it), and delete events below rev
 * with their tomb records. The deletes of hist wait until the cursor is closed. *next
 * moves past the last event visited; *done when no event <= rev is left.
 */
static int compact_batch(struct store__w *w, int64_t rev, uint8_t next[STORE__HIST_KEY], bool *done)
{
    uint8_t dels[2 * KV_COMPACT_BATCH][STORE__HIST_KEY];
    size_t nd = 0, n = 0;
    MDB_cursor *c = NULL;
    MDB_val k = {.mv_size = STORE__HIST_KEY, .mv_data = next}, d;
    struct store__event ev;
    int rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->hist, &c));

    rc = rc != 0 ? rc : cursor_get(c, &k, &d, MDB_SET_RANGE);
    while (rc == 0 && n < KV_COMPACT_BATCH) {
        rc = store__event_decode(&k, &d, &ev);
        if (rc != 0 || ev.rev > rev) {
            *done = rc == 0;
            break;
        }
        if (ev.prev_rev != 0 && ev.prev_rev < rev) {
            store__hist_key(ev.prev_rev, ev.prev_sub, dels[nd++]);
        }
        if (ev.type == STORE_EVENT_DELETE && ev.rev < rev) {
            store__hist_key(ev.rev, ev.sub, dels[nd++]);
            rc = tomb_drop_if(w, ev.key, ev.key_len, ev.rev, ev.sub);
        }
        bool wrap = ev.sub == UINT32_MAX;
        store__hist_key(wrap ? ev.rev + 1 : ev.rev, wrap ? 0 : ev.sub + 1, next);
        n++;
        rc = rc != 0 ? rc : cursor_get(c, &k, &d, MDB_NEXT);
    }
    if (rc == LATCH_ENOTFOUND) {
        *done = true;
        rc = 0;
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    for (size_t i = 0; i < nd && rc == 0; i++) {
        MDB_val dk = {.mv_size = STORE__HIST_KEY, .mv_data = dels[i]};
        int drc = mdb_del(w->txn, w->s->hist, &dk, NULL);
        rc = drc == MDB_NOTFOUND ? 0 : store__mdb_err(drc); /* already dropped */
    }
    return rc;
}

int store__compact(struct store__w *w, int64_t rev)
{
    uint8_t next[STORE__HIST_KEY];
    bool done = false;

    LATCH_ASSERT(w != NULL && w->txn != NULL);
    LATCH_ASSERTF(w->compact_rev <= w->rev, "compact %lld > rev %lld", (long long)w->compact_rev,
                  (long long)w->rev);
    if (rev <= w->compact_rev) {
        return LATCH_ECOMPACTED;
    }
    if (rev > w->rev) {
        return LATCH_EFUTUREREV;
    }
    /* From the old point itself: a delete event at exactly the old point was kept then
     * (reads at that point needed it) and is dropped now. */
    store__hist_key(w->compact_rev > 0 ? w->compact_rev : 1, 0, next);
    int rc = 0;
    while (rc == 0 && !done) {
        rc = compact_batch(w, rev, next, &done);
    }
    rc = rc != 0 ? rc : store__meta_put_i64(w->txn, w->s->meta, "compact", rev);
    if (rc == 0) {
        w->compact_rev = rev;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* History (watch catch-up)                                                           */
/* ---------------------------------------------------------------------------------- */

struct hist_scan {
    struct store *s;
    MDB_txn *txn;
    const struct store_history_req *q;
    struct latch_arena *a;
    struct krange r;
    bool all_keys;
    struct vec events;
    size_t bytes;
};

static bool hist_key_matches(const struct hist_scan *h, const struct store__event *ev)
{
    if (h->all_keys) {
        return true;
    }
    if (bytes_cmp(ev->key, ev->key_len, h->r.key, h->r.key_len) < 0) {
        return false;
    }
    MDB_val k = {.mv_size = ev->key_len, .mv_data = (void *)ev->key};
    return krange_holds(&h->r, &k);
}

/*
 * Appends ev as a store_event. prev is the key's state just before the event's revision,
 * which is what etcd reads (at mod_revision - 1); a create has none, and neither has an
 * event whose predecessor compaction dropped.
 */
static int hist_emit(struct hist_scan *h, const struct store__event *ev)
{
    struct store_event *e = vec_push(&h->events, sizeof(*e));
    struct store__kvrec rec = {.create_rev = ev->create_rev,
                               .mod_rev = ev->rev,
                               .version = ev->version,
                               .lease = ev->lease,
                               .value_len = ev->value_len,
                               .value = ev->value};

    if (e == NULL) {
        return LATCH_ENOMEM;
    }
    memset(e, 0, sizeof(*e));
    e->type = ev->type;
    int rc = kv_export(h->a, ev->key, ev->key_len, &rec, ev->type == STORE_EVENT_DELETE, &e->kv);
    if (rc != 0) {
        return rc;
    }
    if (ev->type == STORE_EVENT_DELETE) {
        e->kv.create_revision = 0; /* etcd: a DELETE carries only key and mod_revision */
        e->kv.version = 0;
        e->kv.lease = 0;
    }
    h->bytes += ev->key_len + (size_t)ev->value_len;
    if (!h->q->prev_kv || ev->prev_rev == 0) {
        return 0;
    }
    rc = hist_walk(h->s, h->txn, ev->prev_rev, ev->prev_sub, ev->rev - 1, &rec);
    if (rc == LATCH_ENOTFOUND) {
        return 0;
    }
    rc = rc != 0 ? rc : kv_export(h->a, ev->key, ev->key_len, &rec, false, &e->prev);
    e->has_prev = rc == 0;
    h->bytes += rec.value_len;
    return rc;
}

static bool hist_full(const struct hist_scan *h, size_t scanned)
{
    const struct store_history_req *q = h->q;

    return (q->max_events > 0 && h->events.n >= q->max_events) ||
           (q->max_bytes > 0 && h->bytes >= q->max_bytes) || scanned >= KV_HISTORY_SCAN_MAX;
}

/* Emits events from start on, whole revisions at a time; *next_rev 0 when exhausted. */
static int hist_run(struct hist_scan *h, int64_t *next_rev)
{
    uint8_t hk[STORE__HIST_KEY];
    MDB_cursor *c = NULL;
    MDB_val k = {.mv_size = sizeof(hk), .mv_data = hk}, d;
    struct store__event ev;
    int64_t group = 0;
    size_t scanned = 0;
    int rc = store__mdb_err(mdb_cursor_open(h->txn, h->s->hist, &c));

    *next_rev = 0;
    store__hist_key(h->q->start_revision, 0, hk);
    rc = rc != 0 ? rc : cursor_get(c, &k, &d, MDB_SET_RANGE);
    while (rc == 0) {
        rc = store__event_decode(&k, &d, &ev);
        if (rc != 0) {
            break;
        }
        if (ev.rev != group) {
            if (group != 0 && hist_full(h, scanned)) {
                *next_rev = ev.rev; /* never stop inside a revision */
                break;
            }
            group = ev.rev;
        }
        scanned++;
        rc = hist_key_matches(h, &ev) ? hist_emit(h, &ev) : 0;
        rc = rc != 0 ? rc : cursor_get(c, &k, &d, MDB_NEXT);
    }
    if (c != NULL) {
        mdb_cursor_close(c);
    }
    return rc == LATCH_ENOTFOUND ? 0 : rc;
}

int store_history(struct store_reader *r,
                  const struct store_history_req *q,
                  struct latch_arena *a,
                  struct store_event **events_out,
                  size_t *count_out,
                  int64_t *next_revision)
{
    struct hist_scan h = {.q = q, .a = a, .all_keys = q->key == NULL || q->key_len == 0};
    MDB_txn *txn = NULL;
    int64_t cur = 0, compact = 0, next = 0;

    LATCH_ASSERT(r != NULL && q != NULL && a != NULL);
    LATCH_ASSERT(events_out != NULL && count_out != NULL && next_revision != NULL);
    *events_out = NULL;
    *count_out = 0;
    if (q->start_revision < 1) {
        return LATCH_EINVAL;
    }
    krange_init(&h.r, q->key, q->key_len, q->range_end, q->range_end_len);
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    h.s = r->s;
    h.txn = txn;
    rc = read_revs(r, txn, true, &cur, &compact);
    if (rc == 0 && q->start_revision < compact) {
        rc = LATCH_ECOMPACTED;
    }
    rc = rc != 0 ? rc : hist_run(&h, &next);
    store__read_end(r);
    if (rc == 0 && h.events.n > 0) {
        *events_out = latch_arena_dup(a, h.events.v, h.events.n * sizeof(struct store_event));
        rc = *events_out == NULL ? LATCH_ENOMEM : 0;
        *count_out = rc == 0 ? h.events.n : 0;
    }
    if (rc == 0) {
        /* Exhausted: continue after the current revision (or at a future start). */
        *next_revision =
            next != 0 ? next : (q->start_revision > cur + 1 ? q->start_revision : cur + 1);
    }
    free(h.events.v);
    return rc;
}
