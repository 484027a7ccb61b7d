/*
 * store_cmd.c — the binary form of a command in a Raft entry (store_cmd_encode/decode).
 *
 * Format (all integers little-endian, fixed width):
 *
 *   cmd      := version u8 (STORE__CMD_VERSION), type u8, body
 *   TXN      := txn
 *   txn      := compares_count u32, success_count u32, failure_count u32,
 *               compare * compares_count, op * success_count, op * failure_count
 *   compare  := target u8, result u8, key bytes, range_end bytes, number i64, value bytes
 *   op       := type u8, then RANGE: key bytes, range_end bytes, limit i64, revision i64,
 *               sort_order u8, sort_target u8, keys_only u8, count_only u8, min_mod i64,
 *               max_mod i64, min_create i64, max_create i64
 *               | PUT: key bytes, value bytes, lease i64, prev_kv u8, ignore_value u8,
 *               ignore_lease u8
 *               | DELETE: key bytes, range_end bytes, prev_kv u8
 *               | TXN: txn (inline, depth-first)
 *   COMPACT  := revision i64
 *   LEASE_GRANT := id i64, ttl i64        LEASE_REVOKE := id i64
 *   LEASE_CHECKPOINT := count u32, (id i64, remaining_ttl i64) * count
 *   ALARM    := action u32, alarm u32
 *   TREE_CREATE := path bytes, value bytes, lease i64, make_parents u8, sequential u8
 *                  (version 1 entries end after make_parents: not sequential)
 *   TREE_DELETE := path bytes, recursive u8, expected_version i64
 *   TREE_MULTI  := guards_count u32, compare * guards_count, ops_count u32, tree_op * ops_count
 *   tree_op  := type u8, path bytes, value bytes, lease i64, expected_version i64,
 *               flags u8 (1 make_parents, 2 sequential, 4 recursive, 8 absent)
 *   bytes    := len u32, len bytes;   booleans are one byte, 0 or 1.
 *
 * Entries are read back on every replica and after every restart, possibly by a newer
 * binary, so the version byte comes first. Decoding treats the bytes as untrusted (a
 * damaged entry must give LATCH_EINVAL, never a read outside buf): every length is checked
 * against what remains, every enum against its known values, every count against the bytes
 * its elements need at minimum before anything is allocated, so the arena use is bounded
 * by a constant times len. Nested txns are walked with an explicit stack (no recursion in
 * store/); its depth bounds the nesting the decoder accepts. The semantic depth limit is
 * store_txn_validate's: the decoder accepts one level more than STORE_TXN_DEPTH_MAX nested
 * txns below the command's own so that it is never the stricter of the two.
 */
#include <string.h>

#include "store_int.h"

/* 2: TREE_CREATE gained `sequential`. Entries of version 1 still decode. */
#define STORE__CMD_VERSION 2u
#define STORE__TXN_LEVELS  (STORE_TXN_DEPTH_MAX + 2u) /* the command's txn + nested ones */

/* Smallest encodings, used to bound counts before allocating. */
#define STORE__MIN_COMPARE    (1u + 1u + 4u + 4u + 8u + 4u)
#define STORE__MIN_OP         (1u + 4u + 4u + 1u) /* a DELETE */
#define STORE__MIN_CHECKPOINT 16u
#define STORE__MIN_TREE_OP    (1u + 4u + 4u + 8u + 8u + 1u)
#define STORE__TREE_FLAGS     15u

/* ---------------------------------------------------------------------------------- */
/* Writer: counts bytes when buf is NULL, so size and encode share one walk           */
/* ---------------------------------------------------------------------------------- */

struct store__wr {
    uint8_t *buf; /* NULL: only count */
    size_t cap;
    size_t pos;
};

static void wr_raw(struct store__wr *w, const void *p, size_t n)
{
    if (w->buf != NULL && w->pos + n <= w->cap && n > 0) {
        memcpy(w->buf + w->pos, p, n);
    }
    w->pos += n;
}

static void wr_u8(struct store__wr *w, uint32_t v)
{
    uint8_t b = (uint8_t)v;
    wr_raw(w, &b, 1);
}

static void wr_u32(struct store__wr *w, uint32_t v)
{
    uint8_t b[4];
    store__put_le32(b, v);
    wr_raw(w, b, 4);
}

static void wr_i64(struct store__wr *w, int64_t v)
{
    uint8_t b[8];
    store__put_le64(b, (uint64_t)v);
    wr_raw(w, b, 8);
}

static void wr_bytes(struct store__wr *w, const uint8_t *p, uint32_t len)
{
    LATCH_ASSERTF(p != NULL || len == 0, "byte string of %u bytes without data", len);
    wr_u32(w, len);
    wr_raw(w, p, len);
}

static void wr_compare(struct store__wr *w, const struct store_compare *c)
{
    wr_u8(w, c->target);
    wr_u8(w, c->result);
    wr_bytes(w, c->key, c->key_len);
    wr_bytes(w, c->range_end, c->range_end_len);
    wr_i64(w, c->number);
    wr_bytes(w, c->value, c->value_len);
}

static void wr_range(struct store__wr *w, const struct store_range_req *q)
{
    wr_bytes(w, q->key, q->key_len);
    wr_bytes(w, q->range_end, q->range_end_len);
    wr_i64(w, q->limit);
    wr_i64(w, q->revision);
    wr_u8(w, q->sort_order);
    wr_u8(w, q->sort_target);
    wr_u8(w, q->keys_only);
    wr_u8(w, q->count_only);
    wr_i64(w, q->min_mod_revision);
    wr_i64(w, q->max_mod_revision);
    wr_i64(w, q->min_create_revision);
    wr_i64(w, q->max_create_revision);
}

/* Writes op; a TXN op writes only its type byte (the caller walks into the txn). */
static void wr_op_head(struct store__wr *w, const struct store_op *op)
{
    wr_u8(w, op->type);
    switch (op->type) {
    case STORE_OP_RANGE:
        wr_range(w, &op->u.range);
        break;
    case STORE_OP_PUT:
        wr_bytes(w, op->u.put.key, op->u.put.key_len);
        wr_bytes(w, op->u.put.value, op->u.put.value_len);
        wr_i64(w, op->u.put.lease);
        wr_u8(w, op->u.put.prev_kv);
        wr_u8(w, op->u.put.ignore_value);
        wr_u8(w, op->u.put.ignore_lease);
        break;
    case STORE_OP_DELETE:
        wr_bytes(w, op->u.del.key, op->u.del.key_len);
        wr_bytes(w, op->u.del.range_end, op->u.del.range_end_len);
        wr_u8(w, op->u.del.prev_kv);
        break;
    default:
        break;
    }
}

static bool op_type_known(uint32_t t)
{
    return t == STORE_OP_RANGE || t == STORE_OP_PUT || t == STORE_OP_DELETE || t == STORE_OP_TXN;
}

static bool txn_counts_fit(const struct store_txn_req *t)
{
    return t->compares_count <= UINT32_MAX && t->success_count <= UINT32_MAX &&
           t->failure_count <= UINT32_MAX;
}

/* Enum values the decoder would refuse: refuse them when encoding too, so what is
 * proposed can always be decoded. */
static bool op_encodable(const struct store_op *op)
{
    if (!op_type_known(op->type)) {
        return false;
    }
    if (op->type == STORE_OP_RANGE) {
        return op->u.range.sort_order <= STORE_SORT_DESCEND &&
               op->u.range.sort_target <= STORE_SORT_VALUE;
    }
    if (op->type == STORE_OP_TXN) {
        return op->u.txn != NULL && txn_counts_fit(op->u.txn);
    }
    return true;
}

static void wr_txn_head(struct store__wr *w, const struct store_txn_req *t)
{
    wr_u32(w, (uint32_t)t->compares_count);
    wr_u32(w, (uint32_t)t->success_count);
    wr_u32(w, (uint32_t)t->failure_count);
}

/* One level of the txn walk: the txn and how many of its items are done. */
struct store__wframe {
    const struct store_txn_req *t;
    size_t done;
};

/* Writes the item at position i of t (compares, then success, then failure); returns the
 * op when it is a TXN to walk into, NULL otherwise. *err gets LATCH_EINVAL for a value the
 * decoder would refuse. */
static const struct store_txn_req *
wr_txn_item(struct store__wr *w, const struct store_txn_req *t, size_t i, int *err)
{
    if (i < t->compares_count) {
        const struct store_compare *c = &t->compares[i];
        if (c->target > STORE_CMP_FENCE || c->result > STORE_CMP_NOT_EQUAL) {
            *err = LATCH_EINVAL;
        }
        wr_compare(w, c);
        return NULL;
    }
    i -= t->compares_count;
    const struct store_op *op =
        i < t->success_count ? &t->success[i] : &t->failure[i - t->success_count];
    if (!op_encodable(op)) {
        *err = LATCH_EINVAL;
        return NULL;
    }
    wr_op_head(w, op);
    return op->type == STORE_OP_TXN ? op->u.txn : NULL;
}

/* Writes a txn and every txn nested in it, depth-first, with an explicit stack. */
static int wr_txn(struct store__wr *w, const struct store_txn_req *top)
{
    struct store__wframe stack[STORE__TXN_LEVELS];
    size_t depth = 1;
    int err = 0;

    if (!txn_counts_fit(top)) {
        return LATCH_EINVAL;
    }
    stack[0] = (struct store__wframe){.t = top, .done = 0};
    wr_txn_head(w, top);
    while (depth > 0 && err == 0) {
        struct store__wframe *f = &stack[depth - 1];
        size_t total = f->t->compares_count + f->t->success_count + f->t->failure_count;
        if (f->done == total) {
            depth--;
            continue;
        }
        const struct store_txn_req *inner = wr_txn_item(w, f->t, f->done++, &err);
        if (inner != NULL) {
            if (depth == STORE__TXN_LEVELS) {
                return LATCH_EINVAL;
            }
            wr_txn_head(w, inner);
            stack[depth++] = (struct store__wframe){.t = inner, .done = 0};
        }
    }
    LATCH_ASSERT(err != 0 || depth == 0);
    return err;
}

static bool alarm_known(uint32_t action, uint32_t alarm)
{
    return (action == STORE_ALARM_ACTIVATE || action == STORE_ALARM_DEACTIVATE) &&
           alarm == STORE_ALARM_NOSPACE;
}

static int wr_tree_multi(struct store__wr *w, const struct store_cmd *c)
{
    size_t ng = c->u.tree_multi.guards_count, nops = c->u.tree_multi.ops_count;
    if (ng > UINT32_MAX || nops > UINT32_MAX) {
        return LATCH_EINVAL;
    }
    wr_u32(w, (uint32_t)ng);
    for (size_t i = 0; i < ng; i++) {
        wr_compare(w, &c->u.tree_multi.guards[i]);
    }
    wr_u32(w, (uint32_t)nops);
    for (size_t i = 0; i < nops; i++) {
        const struct store_tree_op *op = &c->u.tree_multi.ops[i];
        if (op->type < STORE_TREE_OP_CREATE || op->type > STORE_TREE_OP_CHECK) {
            return LATCH_EINVAL;
        }
        wr_u8(w, op->type);
        wr_bytes(w, op->path, op->path_len);
        wr_bytes(w, op->value, op->value_len);
        wr_i64(w, op->lease);
        wr_i64(w, op->expected_version);
        wr_u8(w, (op->make_parents ? 1u : 0u) | (op->sequential ? 2u : 0u) |
                     (op->recursive ? 4u : 0u) | (op->absent ? 8u : 0u));
    }
    return 0;
}

/* Writes the whole command; w->pos ends at its size. */
static int wr_cmd(struct store__wr *w, const struct store_cmd *c)
{
    wr_u8(w, STORE__CMD_VERSION);
    wr_u8(w, c->type);
    switch (c->type) {
    case STORE_CMD_TXN:
        return wr_txn(w, &c->u.txn);
    case STORE_CMD_COMPACT:
        wr_i64(w, c->u.compact.revision);
        return 0;
    case STORE_CMD_LEASE_GRANT:
        wr_i64(w, c->u.lease_grant.id);
        wr_i64(w, c->u.lease_grant.ttl);
        return 0;
    case STORE_CMD_LEASE_REVOKE:
        wr_i64(w, c->u.lease_revoke.id);
        return 0;
    case STORE_CMD_LEASE_CHECKPOINT:
        if (c->u.lease_checkpoint.count > UINT32_MAX) {
            return LATCH_EINVAL;
        }
        wr_u32(w, (uint32_t)c->u.lease_checkpoint.count);
        for (size_t i = 0; i < c->u.lease_checkpoint.count; i++) {
            wr_i64(w, c->u.lease_checkpoint.items[i].id);
            wr_i64(w, c->u.lease_checkpoint.items[i].remaining_ttl);
        }
        return 0;
    case STORE_CMD_ALARM:
        wr_u32(w, c->u.alarm.action);
        wr_u32(w, c->u.alarm.alarm);
        return alarm_known(c->u.alarm.action, c->u.alarm.alarm) ? 0 : LATCH_EINVAL;
    case STORE_CMD_TREE_CREATE:
        wr_bytes(w, c->u.tree_create.path, c->u.tree_create.path_len);
        wr_bytes(w, c->u.tree_create.value, c->u.tree_create.value_len);
        wr_i64(w, c->u.tree_create.lease);
        wr_u8(w, c->u.tree_create.make_parents);
        wr_u8(w, c->u.tree_create.sequential);
        return 0;
    case STORE_CMD_TREE_DELETE:
        wr_bytes(w, c->u.tree_delete.path, c->u.tree_delete.path_len);
        wr_u8(w, c->u.tree_delete.recursive);
        wr_i64(w, c->u.tree_delete.expected_version);
        return 0;
    case STORE_CMD_TREE_MULTI:
        return wr_tree_multi(w, c);
    default:
        return LATCH_EINVAL;
    }
}

uint32_t store_cmd_type_of(const uint8_t *buf, size_t len)
{
    return buf != NULL && len >= 2 ? buf[1] : 0; /* version u8, type u8 */
}

size_t store_cmd_size(const struct store_cmd *c)
{
    struct store__wr w = {.buf = NULL, .cap = 0, .pos = 0};
    LATCH_ASSERT(c != NULL);
    (void)wr_cmd(&w, c);
    LATCH_ASSERT(w.pos >= 2);
    return w.pos;
}

int store_cmd_encode(const struct store_cmd *c, uint8_t *buf, size_t cap, size_t *len_out)
{
    LATCH_ASSERT(c != NULL);
    LATCH_ASSERT(buf != NULL || cap == 0);
    struct store__wr count = {.buf = NULL, .cap = 0, .pos = 0};
    int rc = wr_cmd(&count, c);
    if (rc != 0) {
        return rc;
    }
    if (count.pos > cap) {
        return LATCH_ETOOBIG;
    }
    struct store__wr w = {.buf = buf, .cap = cap, .pos = 0};
    rc = wr_cmd(&w, c);
    LATCH_ASSERTF(rc == 0 && w.pos == count.pos, "rc %d, %zu bytes then %zu", rc, count.pos, w.pos);
    *len_out = w.pos;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Reader: every read checks what remains                                             */
/* ---------------------------------------------------------------------------------- */

struct store__rd {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    uint32_t version; /* the entry's format version */
};

static size_t rd_left(const struct store__rd *r)
{
    return r->len - r->pos;
}

static int rd_u8(struct store__rd *r, uint32_t *v)
{
    if (rd_left(r) < 1) {
        return LATCH_EINVAL;
    }
    *v = r->buf[r->pos++];
    return 0;
}

static int rd_u32(struct store__rd *r, uint32_t *v)
{
    if (rd_left(r) < 4) {
        return LATCH_EINVAL;
    }
    *v = store__get_le32(r->buf + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_i64(struct store__rd *r, int64_t *v)
{
    if (rd_left(r) < 8) {
        return LATCH_EINVAL;
    }
    *v = (int64_t)store__get_le64(r->buf + r->pos);
    r->pos += 8;
    return 0;
}

static int rd_bool(struct store__rd *r, bool *v)
{
    uint32_t b = 0;
    int rc = rd_u8(r, &b);
    if (rc == 0 && b > 1) {
        rc = LATCH_EINVAL;
    }
    *v = b == 1;
    return rc;
}

/* A byte string: *p points into buf (never NULL, also for length 0). */
static int rd_bytes(struct store__rd *r, const uint8_t **p, uint32_t *len)
{
    uint32_t n = 0;
    int rc = rd_u32(r, &n);
    if (rc != 0) {
        return rc;
    }
    if (rd_left(r) < n) {
        return LATCH_EINVAL;
    }
    *p = r->buf + r->pos;
    *len = n;
    r->pos += n;
    return 0;
}

/* An enum stored as one byte, checked against [lo, hi]. */
static int rd_enum(struct store__rd *r, uint32_t lo, uint32_t hi, uint32_t *v)
{
    int rc = rd_u8(r, v);
    if (rc == 0 && (*v < lo || *v > hi)) {
        rc = LATCH_EINVAL;
    }
    return rc;
}

static int rd_compare(struct store__rd *r, struct store_compare *c)
{
    int rc = rd_enum(r, STORE_CMP_VERSION, STORE_CMP_FENCE, &c->target);
    rc = rc != 0 ? rc : rd_enum(r, STORE_CMP_EQUAL, STORE_CMP_NOT_EQUAL, &c->result);
    rc = rc != 0 ? rc : rd_bytes(r, &c->key, &c->key_len);
    rc = rc != 0 ? rc : rd_bytes(r, &c->range_end, &c->range_end_len);
    rc = rc != 0 ? rc : rd_i64(r, &c->number);
    rc = rc != 0 ? rc : rd_bytes(r, &c->value, &c->value_len);
    return rc;
}

static int rd_range(struct store__rd *r, struct store_range_req *q)
{
    int rc = rd_bytes(r, &q->key, &q->key_len);
    rc = rc != 0 ? rc : rd_bytes(r, &q->range_end, &q->range_end_len);
    rc = rc != 0 ? rc : rd_i64(r, &q->limit);
    rc = rc != 0 ? rc : rd_i64(r, &q->revision);
    rc = rc != 0 ? rc : rd_enum(r, STORE_SORT_NONE, STORE_SORT_DESCEND, &q->sort_order);
    rc = rc != 0 ? rc : rd_enum(r, STORE_SORT_KEY, STORE_SORT_VALUE, &q->sort_target);
    rc = rc != 0 ? rc : rd_bool(r, &q->keys_only);
    rc = rc != 0 ? rc : rd_bool(r, &q->count_only);
    rc = rc != 0 ? rc : rd_i64(r, &q->min_mod_revision);
    rc = rc != 0 ? rc : rd_i64(r, &q->max_mod_revision);
    rc = rc != 0 ? rc : rd_i64(r, &q->min_create_revision);
    rc = rc != 0 ? rc : rd_i64(r, &q->max_create_revision);
    return rc;
}

static int rd_put(struct store__rd *r, struct store_put_req *q)
{
    int rc = rd_bytes(r, &q->key, &q->key_len);
    rc = rc != 0 ? rc : rd_bytes(r, &q->value, &q->value_len);
    rc = rc != 0 ? rc : rd_i64(r, &q->lease);
    rc = rc != 0 ? rc : rd_bool(r, &q->prev_kv);
    rc = rc != 0 ? rc : rd_bool(r, &q->ignore_value);
    rc = rc != 0 ? rc : rd_bool(r, &q->ignore_lease);
    return rc;
}

static int rd_delete(struct store__rd *r, struct store_delete_req *q)
{
    int rc = rd_bytes(r, &q->key, &q->key_len);
    rc = rc != 0 ? rc : rd_bytes(r, &q->range_end, &q->range_end_len);
    rc = rc != 0 ? rc : rd_bool(r, &q->prev_kv);
    return rc;
}

/* One level of the decode walk: the txn being filled and its writable arrays. */
struct store__rframe {
    struct store_txn_req *t;
    struct store_compare *compares;
    struct store_op *ops; /* success ops then failure ops */
    size_t done;
};

/* Reads a txn's counts, checks them against the bytes left and allocates its arrays. */
static int rd_txn_head(struct store__rd *r,
                       struct latch_arena *a,
                       struct store_txn_req *t,
                       struct store__rframe *f)
{
    uint32_t cc = 0, sc = 0, fc = 0;
    int rc = rd_u32(r, &cc);
    rc = rc != 0 ? rc : rd_u32(r, &sc);
    rc = rc != 0 ? rc : rd_u32(r, &fc);
    if (rc != 0) {
        return rc;
    }
    uint64_t need = (uint64_t)cc * STORE__MIN_COMPARE + ((uint64_t)sc + fc) * STORE__MIN_OP;
    if (need > rd_left(r)) {
        return LATCH_EINVAL;
    }
    f->t = t;
    f->done = 0;
    f->compares = latch_arena_calloc(a, cc, sizeof(*f->compares));
    f->ops = latch_arena_calloc(a, (size_t)sc + fc, sizeof(*f->ops));
    if (f->compares == NULL || f->ops == NULL) {
        return LATCH_ENOMEM;
    }
    *t = (struct store_txn_req){.compares = f->compares,
                                .success = f->ops,
                                .failure = f->ops + sc,
                                .compares_count = cc,
                                .success_count = sc,
                                .failure_count = fc};
    return 0;
}

/* Reads one op into op; a TXN op gets its (empty) txn in *inner for the caller to fill. */
static int
rd_op(struct store__rd *r, struct latch_arena *a, struct store_op *op, struct store_txn_req **inner)
{
    int rc = rd_enum(r, STORE_OP_RANGE, STORE_OP_TXN, &op->type);
    if (rc != 0) {
        return rc;
    }
    switch (op->type) {
    case STORE_OP_RANGE:
        return rd_range(r, &op->u.range);
    case STORE_OP_PUT:
        return rd_put(r, &op->u.put);
    case STORE_OP_DELETE:
        return rd_delete(r, &op->u.del);
    default:
        *inner = latch_arena_calloc(a, 1, sizeof(**inner));
        op->u.txn = *inner;
        return *inner == NULL ? LATCH_ENOMEM : 0;
    }
}

/* Decodes a txn and its nested txns, depth-first, with an explicit stack. */
static int rd_txn(struct store__rd *r, struct latch_arena *a, struct store_txn_req *top)
{
    struct store__rframe stack[STORE__TXN_LEVELS];
    size_t depth = 1;
    int rc = rd_txn_head(r, a, top, &stack[0]);

    while (rc == 0 && depth > 0) {
        struct store__rframe *f = &stack[depth - 1];
        size_t cc = f->t->compares_count;
        size_t total = cc + f->t->success_count + f->t->failure_count;
        if (f->done == total) {
            depth--;
            continue;
        }
        size_t i = f->done++;
        if (i < cc) {
            rc = rd_compare(r, &f->compares[i]);
            continue;
        }
        struct store_txn_req *inner = NULL;
        rc = rd_op(r, a, &f->ops[i - cc], &inner);
        if (rc == 0 && inner != NULL) {
            if (depth == STORE__TXN_LEVELS) {
                return LATCH_EINVAL;
            }
            rc = rd_txn_head(r, a, inner, &stack[depth++]);
        }
    }
    LATCH_ASSERT(rc != 0 || depth == 0);
    return rc;
}

static int rd_checkpoint(struct store__rd *r, struct latch_arena *a, struct store_cmd *c)
{
    uint32_t n = 0;
    int rc = rd_u32(r, &n);
    if (rc != 0) {
        return rc;
    }
    if ((uint64_t)n * STORE__MIN_CHECKPOINT > rd_left(r)) {
        return LATCH_EINVAL;
    }
    struct store_lease_checkpoint *items = latch_arena_calloc(a, n, sizeof(*items));
    if (items == NULL) {
        return LATCH_ENOMEM;
    }
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = rd_i64(r, &items[i].id);
        rc = rc != 0 ? rc : rd_i64(r, &items[i].remaining_ttl);
    }
    c->u.lease_checkpoint.items = items;
    c->u.lease_checkpoint.count = n;
    return rc;
}

static int rd_tree(struct store__rd *r, struct store_cmd *c)
{
    int rc;
    if (c->type == STORE_CMD_TREE_CREATE) {
        rc = rd_bytes(r, &c->u.tree_create.path, &c->u.tree_create.path_len);
        rc = rc != 0 ? rc : rd_bytes(r, &c->u.tree_create.value, &c->u.tree_create.value_len);
        rc = rc != 0 ? rc : rd_i64(r, &c->u.tree_create.lease);
        rc = rc != 0 ? rc : rd_bool(r, &c->u.tree_create.make_parents);
        if (r->version >= 2) {
            rc = rc != 0 ? rc : rd_bool(r, &c->u.tree_create.sequential);
        }
        return rc;
    }
    rc = rd_bytes(r, &c->u.tree_delete.path, &c->u.tree_delete.path_len);
    rc = rc != 0 ? rc : rd_bool(r, &c->u.tree_delete.recursive);
    rc = rc != 0 ? rc : rd_i64(r, &c->u.tree_delete.expected_version);
    return rc;
}

static int rd_tree_multi(struct store__rd *r, struct latch_arena *a, struct store_cmd *c)
{
    uint32_t ng = 0, nops = 0;
    int rc = rd_u32(r, &ng);
    if (rc != 0 || (uint64_t)ng * STORE__MIN_COMPARE > rd_left(r)) {
        return rc != 0 ? rc : LATCH_EINVAL;
    }
    struct store_compare *g = ng > 0 ? latch_arena_calloc(a, ng, sizeof(*g)) : NULL;
    if (ng > 0 && g == NULL) {
        return LATCH_ENOMEM;
    }
    for (uint32_t i = 0; i < ng && rc == 0; i++) {
        rc = rd_compare(r, &g[i]);
    }
    rc = rc != 0 ? rc : rd_u32(r, &nops);
    if (rc != 0 || (uint64_t)nops * STORE__MIN_TREE_OP > rd_left(r)) {
        return rc != 0 ? rc : LATCH_EINVAL;
    }
    struct store_tree_op *ops = nops > 0 ? latch_arena_calloc(a, nops, sizeof(*ops)) : NULL;
    if (nops > 0 && ops == NULL) {
        return LATCH_ENOMEM;
    }
    for (uint32_t i = 0; i < nops && rc == 0; i++) {
        uint32_t flags = 0;
        rc = rd_enum(r, STORE_TREE_OP_CREATE, STORE_TREE_OP_CHECK, &ops[i].type);
        rc = rc != 0 ? rc : rd_bytes(r, &ops[i].path, &ops[i].path_len);
        rc = rc != 0 ? rc : rd_bytes(r, &ops[i].value, &ops[i].value_len);
        rc = rc != 0 ? rc : rd_i64(r, &ops[i].lease);
        rc = rc != 0 ? rc : rd_i64(r, &ops[i].expected_version);
        rc = rc != 0 ? rc : rd_u8(r, &flags);
        if (rc == 0 && (flags & ~STORE__TREE_FLAGS) != 0) {
            rc = LATCH_EINVAL;
        }
        ops[i].make_parents = (flags & 1u) != 0;
        ops[i].sequential = (flags & 2u) != 0;
        ops[i].recursive = (flags & 4u) != 0;
        ops[i].absent = (flags & 8u) != 0;
    }
    c->u.tree_multi.guards = g;
    c->u.tree_multi.guards_count = ng;
    c->u.tree_multi.ops = ops;
    c->u.tree_multi.ops_count = nops;
    return rc;
}

static int rd_body(struct store__rd *r, struct latch_arena *a, struct store_cmd *c)
{
    int rc;
    switch (c->type) {
    case STORE_CMD_TXN:
        return rd_txn(r, a, &c->u.txn);
    case STORE_CMD_COMPACT:
        return rd_i64(r, &c->u.compact.revision);
    case STORE_CMD_LEASE_GRANT:
        rc = rd_i64(r, &c->u.lease_grant.id);
        return rc != 0 ? rc : rd_i64(r, &c->u.lease_grant.ttl);
    case STORE_CMD_LEASE_REVOKE:
        return rd_i64(r, &c->u.lease_revoke.id);
    case STORE_CMD_LEASE_CHECKPOINT:
        return rd_checkpoint(r, a, c);
    case STORE_CMD_ALARM:
        rc = rd_u32(r, &c->u.alarm.action);
        rc = rc != 0 ? rc : rd_u32(r, &c->u.alarm.alarm);
        if (rc == 0 && !alarm_known(c->u.alarm.action, c->u.alarm.alarm)) {
            rc = LATCH_EINVAL;
        }
        return rc;
    case STORE_CMD_TREE_MULTI:
        return rd_tree_multi(r, a, c);
    default:
        return rd_tree(r, c);
    }
}

int store_cmd_decode(const uint8_t *buf, size_t len, struct latch_arena *a, struct store_cmd *out)
{
    LATCH_ASSERT(buf != NULL || len == 0);
    LATCH_ASSERT(a != NULL && out != NULL);
    struct store__rd r = {.buf = buf, .len = len, .pos = 0};
    uint32_t version = 0;

    memset(out, 0, sizeof(*out));
    int rc = rd_u8(&r, &version);
    if (rc == 0 && (version < 1 || version > STORE__CMD_VERSION)) {
        rc = LATCH_EINVAL;
    }
    r.version = version;
    rc = rc != 0 ? rc : rd_enum(&r, STORE_CMD_TXN, STORE_CMD_TREE_MULTI, &out->type);
    rc = rc != 0 ? rc : rd_body(&r, a, out);
    if (rc == 0 && r.pos != len) {
        rc = LATCH_EINVAL; /* trailing bytes: not what any encoder wrote */
    }
    return rc;
}
