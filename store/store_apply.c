/*
 * store_apply.c — applying committed Raft entries to the state (store_apply).
 *
 * One batch of items is one LMDB write transaction on state.mdb that also records the
 * applied index and term (I1): a crash leaves the whole batch applied or none of it, and a
 * replay after the crash skips what the state already holds. Each command runs in a nested
 * LMDB transaction so that a deterministic failure (etcd's answer, struct store_result.err)
 * is rolled back completely — the same failure on every replica, with nothing written and
 * no revision used. System errors (store__err_is_system) abort the whole batch instead:
 * they depend on the node, not on the command, and must not become replicated outcomes.
 *
 * store__write may run apply_fn again after growing the map, so apply_fn starts from the
 * stored state every time (it reads its counters from meta) and rewrites every result.
 */
#include <string.h>

#include "store_int.h"

struct store__apply {
    struct store *s;
    const struct store_apply_item *items;
    size_t n;
    struct latch_arena *a;
    struct store_result *results;
    uint64_t txnid; /* of the write txn that ran last, and the revision it leaves */
    int64_t rev;
};

/* Loads the batch's counters from state meta; *applied gets (index, term). */
static int w_load(struct store__w *w, uint64_t applied[2])
{
    struct store *s = w->s;
    uint8_t rec[16];
    uint8_t alarm[4];
    int rc = store__meta_get_i64(w->txn, s->meta, "rev", &w->rev);

    rc = rc != 0 ? rc : store__meta_get_i64(w->txn, s->meta, "compact", &w->compact_rev);
    rc = rc != 0 ? rc : store__meta_get_i64(w->txn, s->meta, "lease_next", &w->lease_next);
    rc = rc != 0 ? rc : store__meta_get(w->txn, s->meta, "alarm", alarm, sizeof(alarm));
    rc = rc != 0 ? rc : store__meta_get(w->txn, s->meta, "applied", rec, sizeof(rec));
    if (rc != 0) {
        /* Every one of these is written when the state is created: absent is damage. */
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
    }
    w->alarm_nospace = (store__get_le32(alarm) & STORE__ALARM_NOSPACE_BIT) != 0;
    MDB_stat tomb_stat;
    rc = store__mdb_err(mdb_stat(w->txn, s->tomb, &tomb_stat));
    if (rc != 0) {
        return rc;
    }
    w->tombs_possible = tomb_stat.ms_entries > 0;
    w->sub = 0;
    applied[0] = store__get_le64(rec);
    applied[1] = store__get_le64(rec + 8);
    if (w->rev < 1 || w->compact_rev > w->rev) {
        return LATCH_ECORRUPT;
    }
    return 0;
}

/* Writes the counters and the applied index back: the batch's last step. */
static int w_store(struct store__w *w, uint64_t index, uint64_t term)
{
    struct store *s = w->s;
    uint8_t rec[16];
    uint8_t alarm[4];

    LATCH_ASSERTF(w->sub == 0, "batch ends inside a command (%u events)", w->sub);
    store__put_le64(rec, index);
    store__put_le64(rec + 8, term);
    store__put_le32(alarm, w->alarm_nospace ? STORE__ALARM_NOSPACE_BIT : 0u);
    int rc = store__meta_put_i64(w->txn, s->meta, "rev", w->rev);
    rc = rc != 0 ? rc : store__meta_put_i64(w->txn, s->meta, "compact", w->compact_rev);
    rc = rc != 0 ? rc : store__meta_put_i64(w->txn, s->meta, "lease_next", w->lease_next);
    rc = rc != 0 ? rc : store__meta_put(w->txn, s->meta, "alarm", alarm, sizeof(alarm));
    rc = rc != 0 ? rc : store__meta_put(w->txn, s->meta, "applied", rec, sizeof(rec));
    return rc;
}

/* True for the commands that can only grow the data; refused while NOSPACE is active,
 * before anything else is checked, as etcd's capped applier does. A txn is judged inside
 * store__txn_exec, which knows whether its branch puts. */
static bool cmd_grows(uint32_t type)
{
    return type == STORE_CMD_LEASE_GRANT || type == STORE_CMD_TREE_CREATE;
}

/* Runs one decoded command against w (inside the nested txn). */
static int cmd_dispatch(struct store__w *w, const struct store_cmd *c, struct store_result *res)
{
    int rc;

    if (w->alarm_nospace && cmd_grows(c->type)) {
        return LATCH_ENOSPACE;
    }
    switch (c->type) {
    case STORE_CMD_TXN:
        return store__txn_exec(w, &c->u.txn, 0, &res->u.txn);
    case STORE_CMD_COMPACT:
        rc = store__compact(w, c->u.compact.revision);
        if (rc == 0 && w->compact_rev < c->u.compact.revision) {
            w->compact_rev = c->u.compact.revision; /* later commands of the batch see it */
        }
        res->u.compact.compact_revision = w->compact_rev;
        return rc;
    case STORE_CMD_LEASE_GRANT:
        res->u.lease_grant.ttl = c->u.lease_grant.ttl;
        return store__lease_grant(w, c->u.lease_grant.id, c->u.lease_grant.ttl,
                                  &res->u.lease_grant.id);
    case STORE_CMD_LEASE_REVOKE:
        return store__lease_revoke(w, c->u.lease_revoke.id, &res->u.lease_revoke.deleted);
    case STORE_CMD_LEASE_CHECKPOINT:
        return store__lease_checkpoint(w, c->u.lease_checkpoint.items, c->u.lease_checkpoint.count);
    case STORE_CMD_ALARM:
        /* The decoder admits only NOSPACE with ACTIVATE or DEACTIVATE. */
        w->alarm_nospace = c->u.alarm.action == STORE_ALARM_ACTIVATE;
        return 0;
    case STORE_CMD_TREE_CREATE:
        return store__tree_create(w, c, res);
    case STORE_CMD_TREE_DELETE:
        return store__tree_delete(w, c, res);
    case STORE_CMD_TREE_MULTI:
        return store__tree_multi(w, c, res);
    default:
        LATCH_ASSERTF(false, "decoded command of unknown type %u", c->type);
        return LATCH_EINVAL;
    }
}

/*
 * A command that can fail only before its first write needs no nested LMDB txn: its
 * deterministic errors leave nothing to undo. Only a txn holding both a ranged delete and
 * an ignore_* put can fail late (store__txn_may_fail_after_write); everything else checks
 * first. The nested txn is not free (LMDB allocates its dirty lists per child), and a
 * plain put is the hot path.
 */
static bool cmd_needs_child_txn(const struct store_cmd *c)
{
    return (c->type == STORE_CMD_TXN && store__txn_may_fail_after_write(&c->u.txn)) ||
           c->type == STORE_CMD_TREE_MULTI;
}

/* Turns a deterministic error into res->err; a system error is returned for the batch. */
static int cmd_failed(struct store_result *res, int rc)
{
    if (store__err_is_system(rc)) {
        return rc;
    }
    uint32_t type = res->type;
    int64_t failed_op = type == STORE_CMD_TREE_MULTI ? res->u.tree_multi.failed_op : 0;
    memset(res, 0, sizeof(*res));
    res->type = type;
    res->err = rc;
    if (type == STORE_CMD_TREE_MULTI) {
        res->u.tree_multi.failed_op = failed_op; /* which op failed outlives the undo */
    }
    return 0;
}

/*
 * Runs c, in a nested LMDB txn when it may fail after writing. A deterministic error
 * leaves no trace: the nested txn is aborted, or (without one) the command provably wrote
 * nothing, which the assertion on the event counter re-checks.
 */
static int cmd_run(struct store__w *w, const struct store_cmd *c, struct store_result *res)
{
    struct store__w saved = *w;
    MDB_txn *child = NULL;
    int rc;

    if (!cmd_needs_child_txn(c)) {
        rc = cmd_dispatch(w, c, res);
        if (rc == 0) {
            store__w_end_cmd(w);
            return 0;
        }
        if (!store__err_is_system(rc)) {
            LATCH_ASSERTF(w->sub == saved.sub && w->lease_next == saved.lease_next,
                          "command type %u failed with %s after writing %u events", c->type,
                          latch_error_name(rc), w->sub);
        }
        *w = saved;
        return cmd_failed(res, rc);
    }
    rc = mdb_txn_begin(w->s->state.env, w->txn, 0, &child);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    w->txn = child;
    rc = cmd_dispatch(w, c, res);
    w->txn = saved.txn;
    /* A kv cursor opened in the child died with it; the parent's is still valid. */
    w->kv_cur = saved.kv_cur;
    w->kv_cur_txn = saved.kv_cur_txn;
    if (rc == 0) {
        rc = store__mdb_err(mdb_txn_commit(child));
        if (rc != 0) {
            return store__err_is_system(rc) ? rc : LATCH_EIO;
        }
        store__w_end_cmd(w);
        return 0;
    }
    mdb_txn_abort(child);
    *w = saved;
    return cmd_failed(res, rc);
}

/* Decodes and checks a command entry, then runs it. A command that does not decode or
 * validate fails the same way on every replica: the same bytes, the same checks. */
static int item_cmd(struct store__w *w, const struct store_apply_item *it, struct store_result *res)
{
    struct store_cmd c;
    static const uint8_t empty[1] = {0};
    int rc = store_cmd_decode(it->data != NULL ? it->data : empty, it->len, w->arena, &c);

    if (rc == LATCH_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        res->err = LATCH_EINVAL;
        return 0;
    }
    res->type = c.type;
    if (c.type == STORE_CMD_TXN) {
        rc = store_txn_validate(&c.u.txn, NULL, 0);
        if (rc != 0) {
            res->err = rc;
            return 0;
        }
    }
    return cmd_run(w, &c, res);
}

/* Records the membership as of this index, in the batch txn. */
static int
item_conf(struct store__w *w, const struct store_apply_item *it, struct store_result *res)
{
    static const uint8_t empty[1] = {0};

    if (it->len > STORE_CONF_BYTES_MAX) {
        res->err = LATCH_EINVAL;
        return 0;
    }
    return store__meta_put(w->txn, w->s->meta, "conf", it->len > 0 ? it->data : empty, it->len);
}

static int
item_apply(struct store__w *w, const struct store_apply_item *it, struct store_result *res)
{
    switch (it->kind) {
    case STORE_ITEM_NOOP:
        return 0;
    case STORE_ITEM_CONF:
        return item_conf(w, it, res);
    case STORE_ITEM_CMD:
        return item_cmd(w, it, res);
    default:
        res->err = LATCH_EINVAL;
        return 0;
    }
}

/* Index of the first item above applied (n when none); LATCH_EINVAL when the items are
 * not consecutive or the first new one does not follow applied. */
static int
first_new(const struct store_apply_item *items, size_t n, uint64_t applied, size_t *first)
{
    for (size_t i = 1; i < n; i++) {
        if (items[i].index != items[i - 1].index + 1) {
            return LATCH_EINVAL;
        }
    }
    size_t k = 0;
    while (k < n && items[k].index <= applied) {
        k++;
    }
    if (k < n && items[k].index != applied + 1) {
        return LATCH_EINVAL;
    }
    *first = k;
    return 0;
}

static int apply_fn(MDB_txn *txn, void *arg)
{
    struct store__apply *ap = arg;
    struct store__w w = {.s = ap->s, .txn = txn, .arena = ap->a};
    uint64_t applied[2];
    size_t k = 0;
    int rc = w_load(&w, applied);

    rc = rc != 0 ? rc : first_new(ap->items, ap->n, applied[0], &k);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < ap->n; i++) {
        struct store_result *res = &ap->results[i];
        memset(res, 0, sizeof(*res));
        res->skipped = i < k;
        if (i >= k) {
            rc = item_apply(&w, &ap->items[i], res);
            if (rc != 0) {
                return rc;
            }
        }
        res->revision = w.rev;
    }
    if (k == ap->n) {
        return 0; /* a pure replay writes nothing */
    }
    const struct store_apply_item *last = &ap->items[ap->n - 1];
    LATCH_ASSERTF(last->index > applied[0], "applied %llu, last %llu",
                  (unsigned long long)applied[0], (unsigned long long)last->index);
    ap->txnid = (uint64_t)mdb_txn_id(txn);
    ap->rev = w.rev;
    return w_store(&w, last->index, last->term);
}

int store_apply(struct store *s,
                const struct store_apply_item *items,
                size_t n,
                struct latch_arena *a,
                struct store_result *results)
{
    LATCH_ASSERT(s != NULL && a != NULL);
    LATCH_ASSERT(n == 0 || (items != NULL && results != NULL));
    if (n == 0) {
        return 0;
    }
    struct store__apply ap = {.s = s, .items = items, .n = n, .a = a, .results = results};
    int rc = store__write(s, &s->state, apply_fn, &ap);
    if (rc == 0 && ap.txnid != 0) {
        store__rev_publish(s, ap.txnid, ap.rev);
    }
    return rc;
}
