/*
 * store_txn.c — etcd 3.4 transactions (ETCD-API.md §4.4).
 *
 * Validation is etcd's v3rpc checkTxnRequest (op counts with the budget shrinking for
 * nested txns, empty keys, value/lease given with ignore_*) followed by checkIntervals (the
 * "duplicate key given in txn request" rule), plus latch's own limits (key and value sizes,
 * enum values, nesting depth).
 *
 * Execution follows etcd's applierV3backend.Txn in three passes:
 *   1. compareToPath: evaluate the compares of the txn and of every nested txn on the
 *      chosen branches, all against the state before the txn writes anything;
 *   2. checkRequests: on that path, puts (ignore_* needs the key, a lease must exist),
 *      then ranges (revision neither future nor compacted) — so a txn that fails, fails
 *      before it writes;
 *   3. applyTxn: run the chosen ops in order; reads see the txn's earlier writes.
 * Nested txns are walked with explicit stacks (no recursion in store/), at most
 * STORE_TXN_DEPTH_MAX deep below the top-level txn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latch_teeth.h"
#include "store_int.h"

/* Frames of a walk: the top-level txn plus STORE_TXN_DEPTH_MAX nested levels. */
#define TXN_STACK (STORE_TXN_DEPTH_MAX + 1u)

static int bytes_cmp(const void *a, size_t an, const void *b, size_t bn)
{
    size_t m = an < bn ? an : bn;
    int c = m > 0 ? memcmp(a, b, m) : 0;

    if (c != 0) {
        return c;
    }
    return an < bn ? -1 : (an > bn ? 1 : 0);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

static const struct store_op *branch_ops(const struct store_txn_req *t, bool success, size_t *n)
{
    *n = success ? t->success_count : t->failure_count;
    return success ? t->success : t->failure;
}

/* ---------------------------------------------------------------------------------- */
/* Validation: shape (etcd's checkTxnRequest)                                         */
/* ---------------------------------------------------------------------------------- */

static int check_compare(const struct store_compare *c, const char **why)
{
    if (c->key_len == 0) {
        *why = "key is not provided";
        return LATCH_EINVAL;
    }
    if (c->key_len > STORE_KEY_BYTES_MAX || c->value_len > STORE_VALUE_BYTES_MAX) {
        *why = "compare key or value is too large";
        return LATCH_ETOOBIG;
    }
    if (c->target > STORE_CMP_FENCE || c->result > STORE_CMP_NOT_EQUAL) {
        *why = "unknown compare target or result";
        return LATCH_EINVAL;
    }
    if (c->target == STORE_CMP_FENCE &&
        (c->range_end_len == 0 || c->number <= 0 || c->value_len > 1 ||
         (c->result != STORE_CMP_EQUAL && c->result != STORE_CMP_NOT_EQUAL))) {
        *why = "a fence compares a queue range with a positive token, EQUAL or NOT_EQUAL";
        return LATCH_EINVAL;
    }
    return 0;
}

static int check_key(const uint8_t *key, uint32_t key_len, const char **why)
{
    (void)key;
    if (key_len == 0) {
        *why = "key is not provided";
        return LATCH_EINVAL;
    }
    if (key_len > STORE_KEY_BYTES_MAX) {
        *why = "key is too large";
        return LATCH_ETOOBIG;
    }
    return 0;
}

/* One non-txn op, as etcd's checkRequestOp (the key first, then the rest). */
static int check_op(const struct store_op *op, const char **why)
{
    int rc;

    switch (op->type) {
    case STORE_OP_RANGE:
        rc = check_key(op->u.range.key, op->u.range.key_len, why);
        if (rc == 0 && (op->u.range.sort_order > STORE_SORT_DESCEND ||
                        op->u.range.sort_target > STORE_SORT_VALUE)) {
            *why = "unknown sort order or target";
            rc = LATCH_EINVAL;
        }
        return rc;
    case STORE_OP_PUT:
        if (op->u.put.key_len > 0 && op->u.put.ignore_value && op->u.put.value_len > 0) {
            *why = "value is provided";
            return LATCH_EINVAL;
        }
        if (op->u.put.key_len > 0 && op->u.put.ignore_lease && op->u.put.lease != 0) {
            *why = "lease is provided";
            return LATCH_EINVAL;
        }
        rc = check_key(op->u.put.key, op->u.put.key_len, why);
        if (rc == 0 && op->u.put.value_len > STORE_VALUE_BYTES_MAX) {
            *why = "value is too large";
            rc = LATCH_ETOOBIG;
        }
        return rc;
    case STORE_OP_DELETE:
        return check_key(op->u.del.key, op->u.del.key_len, why);
    default:
        *why = "unknown request type in txn";
        return LATCH_EINVAL;
    }
}

struct vframe {
    const struct store_txn_req *t;
    size_t budget; /* ops allowed per list of a txn nested here (etcd: maxTxnOps - opc) */
    bool in_failure;
    size_t i;
};

/* Enters txn t with budget: its op count, then its compares. */
static int
enter_txn(const struct store_txn_req *t, size_t budget, struct vframe *f, const char **why)
{
    if (t == NULL || (t->compares_count > 0 && t->compares == NULL) ||
        (t->success_count > 0 && t->success == NULL) ||
        (t->failure_count > 0 && t->failure == NULL)) {
        *why = "malformed txn";
        return LATCH_EINVAL;
    }
    size_t opc = t->compares_count;
    opc = t->success_count > opc ? t->success_count : opc;
    opc = t->failure_count > opc ? t->failure_count : opc;
    if (opc > budget) {
        *why = "too many operations in txn request";
        return LATCH_ETOOMANYOPS;
    }
    for (size_t i = 0; i < t->compares_count; i++) {
        int rc = check_compare(&t->compares[i], why);
        if (rc != 0) {
            return rc;
        }
    }
    *f = (struct vframe){.t = t, .budget = budget - opc};
    return 0;
}

/* etcd's checkTxnRequest over the whole tree, depth first, success before failure. */
static int validate_shape(const struct store_txn_req *t, const char **why)
{
    struct vframe st[TXN_STACK];
    size_t sp = 1;
    int rc = enter_txn(t, STORE_TXN_OPS_MAX, &st[0], why);

    while (rc == 0 && sp > 0) {
        struct vframe *f = &st[sp - 1];
        size_t n;
        const struct store_op *ops = branch_ops(f->t, !f->in_failure, &n);
        if (f->i == n) {
            if (!f->in_failure) {
                f->in_failure = true;
                f->i = 0;
            } else {
                sp--;
            }
            continue;
        }
        const struct store_op *op = &ops[f->i++];
        if (op->type != STORE_OP_TXN) {
            rc = check_op(op, why);
            continue;
        }
        if (sp == TXN_STACK) {
            *why = "txn nested too deeply";
            return LATCH_EINVAL;
        }
        rc = enter_txn(op->u.txn, f->budget, &st[sp], why);
        sp++;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Validation: duplicate keys (etcd's checkIntervals)                                 */
/* ---------------------------------------------------------------------------------- */

/*
 * Keys are spans into the request. A delete covers an interval as etcd's
 * adt.StringAffineInterval: [key, range_end) by byte order, with range_end taken as given
 * (so etcd's "\0" end makes an empty interval that overlaps nothing, as it does in etcd),
 * or the point [key, key + "\0") for a single key, written here as an end that includes
 * key itself (END_INCL).
 */
struct span {
    const uint8_t *p;
    uint32_t n;
};

enum { END_EXCL = 0, END_INCL = 1 };

struct ivl {
    struct span b;
    struct span e;
    uint32_t e_kind;
};

struct sset { /* sorted, unique keys */
    struct span *v;
    size_t n;
};

struct iset { /* sorted, disjoint intervals */
    struct ivl *v;
    size_t n;
};

static int span_cmp(const struct span *a, const struct span *b)
{
    return bytes_cmp(a->p, a->n, b->p, b->n);
}

static int span_qcmp(const void *a, const void *b)
{
    return span_cmp(a, b);
}

static int ivl_qcmp(const void *a, const void *b)
{
    return span_cmp(&((const struct ivl *)a)->b, &((const struct ivl *)b)->b);
}

/* p < end of an interval (p <= e for an inclusive end). */
static bool before_end(const struct span *p, const struct span *e, uint32_t kind)
{
    int c = span_cmp(p, e);
    return kind == END_INCL ? c <= 0 : c < 0;
}

/* The larger of two interval ends (x is replaced by y when y reaches further). */
static void end_max(struct ivl *x, const struct ivl *y)
{
    int c = span_cmp(&x->e, &y->e);
    if (c < 0) {
        /* x.e < y.e: y reaches further, even an exclusive y.e (x.e + "\0" <= y.e). */
        if (x->e_kind == END_EXCL || y->e_kind == END_INCL ||
            !(y->e.n == x->e.n + 1 && y->e.p[x->e.n] == 0)) {
            x->e = y->e;
            x->e_kind = y->e_kind;
        }
    } else if (c == 0 && y->e_kind == END_INCL) {
        x->e_kind = END_INCL;
    }
}

static bool sset_has(const struct sset *s, const struct span *k)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = span_cmp(&s->v[mid], k);
        if (c == 0) {
            return true;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static bool iset_has(const struct iset *s, const struct span *k)
{
    size_t lo = 0, hi = s->n; /* first interval beginning after k */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (span_cmp(&s->v[mid].b, k) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo > 0 && before_end(k, &s->v[lo - 1].e, s->v[lo - 1].e_kind);
}

static void sset_free(struct sset *s)
{
    free(s->v);
    *s = (struct sset){0};
}

static void iset_free(struct iset *s)
{
    free(s->v);
    *s = (struct iset){0};
}

/* dst = dst ∪ src (src is freed). */
static int sset_merge(struct sset *dst, struct sset *src)
{
    struct span *v = malloc((dst->n + src->n + 1) * sizeof(*v));
    size_t i = 0, j = 0, n = 0;

    if (v == NULL) {
        sset_free(src);
        return LATCH_ENOMEM;
    }
    while (i < dst->n || j < src->n) {
        int c = i == dst->n ? 1 : (j == src->n ? -1 : span_cmp(&dst->v[i], &src->v[j]));
        v[n++] = c <= 0 ? dst->v[i] : src->v[j];
        i += c <= 0 ? 1 : 0;
        j += c >= 0 ? 1 : 0;
    }
    sset_free(dst);
    sset_free(src);
    *dst = (struct sset){.v = v, .n = n};
    return 0;
}

/* Sorts s by begin and joins overlapping intervals. */
static void iset_normalize(struct iset *s)
{
    size_t n = 0;

    if (s->n < 2) {
        return;
    }
    qsort(s->v, s->n, sizeof(*s->v), ivl_qcmp);
    for (size_t i = 1; i < s->n; i++) {
        if (before_end(&s->v[i].b, &s->v[n].e, s->v[n].e_kind)) {
            end_max(&s->v[n], &s->v[i]);
        } else {
            s->v[++n] = s->v[i];
        }
    }
    s->n = n + 1;
}

/* dst = dst ∪ src (src is freed). */
static int iset_merge(struct iset *dst, struct iset *src)
{
    if (src->n > 0) {
        struct ivl *v = realloc(dst->v, (dst->n + src->n) * sizeof(*v));
        if (v == NULL) {
            iset_free(src);
            return LATCH_ENOMEM;
        }
        memcpy(v + dst->n, src->v, src->n * sizeof(*v));
        dst->v = v;
        dst->n += src->n;
        iset_normalize(dst);
    }
    iset_free(src);
    return 0;
}

/* One list of ops being checked, and what its nested txns contributed so far. */
struct dframe {
    const struct store_op *ops;
    size_t n;
    size_t i;         /* the nested txn being checked, or the next op to look at */
    bool in_failure;  /* that txn's success branch is done */
    struct sset puts; /* puts of the nested txns checked so far */
    struct iset dels; /* deletes of this list and of those txns */
    struct sset then_puts;
    struct iset then_dels;
};

static void dframe_free(struct dframe *f)
{
    sset_free(&f->puts);
    iset_free(&f->dels);
    sset_free(&f->then_puts);
    iset_free(&f->then_dels);
}

/* Starts a list: its own deletes come first, so its nested puts are checked against them. */
static int dframe_init(struct dframe *f, const struct store_op *ops, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->ops = ops;
    f->n = n;
    f->dels.v = malloc((n + 1) * sizeof(struct ivl));
    if (f->dels.v == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct store_delete_req *d = &ops[i].u.del;
        if (ops[i].type != STORE_OP_DELETE) {
            continue;
        }
        struct ivl iv = {.b = {d->key, d->key_len}, .e = {d->key, d->key_len}, .e_kind = END_INCL};
        if (d->range_end_len > 0) {
            iv.e = (struct span){d->range_end, d->range_end_len};
            iv.e_kind = END_EXCL;
            if (!before_end(&iv.b, &iv.e, iv.e_kind)) {
                continue; /* empty: overlaps nothing */
            }
        }
        f->dels.v[f->dels.n++] = iv;
    }
    iset_normalize(&f->dels);
    return 0;
}

/* The list's own puts, checked last against everything else of the list. */
static int dframe_finish(struct dframe *f)
{
    struct sset own = {.v = malloc((f->n + 1) * sizeof(struct span))};

    if (own.v == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->ops[i].type == STORE_OP_PUT) {
            own.v[own.n++] = (struct span){f->ops[i].u.put.key, f->ops[i].u.put.key_len};
        }
    }
    qsort(own.v, own.n, sizeof(*own.v), span_qcmp);
    for (size_t i = 0; i < own.n; i++) {
        if ((i > 0 && span_cmp(&own.v[i - 1], &own.v[i]) == 0) || sset_has(&f->puts, &own.v[i]) ||
            iset_has(&f->dels, &own.v[i])) {
            sset_free(&own);
            return LATCH_EDUPKEY;
        }
    }
    return sset_merge(&f->puts, &own);
}

/* A nested txn of p is done: its puts against p's so far, then merged (etcd's order). */
static int dframe_child_done(struct dframe *p, struct sset *else_puts, struct iset *else_dels)
{
    int rc = 0;

    for (size_t i = 0; i < p->then_puts.n && rc == 0; i++) {
        const struct span *k = &p->then_puts.v[i];
        rc = sset_has(&p->puts, k) || iset_has(&p->dels, k) ? LATCH_EDUPKEY : 0;
    }
    for (size_t i = 0; i < else_puts->n && rc == 0; i++) {
        const struct span *k = &else_puts->v[i];
        /* The same key in both branches is fine: only one of them runs. */
        bool dup = sset_has(&p->puts, k) && !sset_has(&p->then_puts, k);
        rc = dup || iset_has(&p->dels, k) ? LATCH_EDUPKEY : 0;
    }
    rc = rc != 0 ? rc : sset_merge(&p->puts, &p->then_puts);
    rc = rc != 0 ? rc : sset_merge(&p->puts, else_puts);
    rc = rc != 0 ? rc : iset_merge(&p->dels, &p->then_dels);
    rc = rc != 0 ? rc : iset_merge(&p->dels, else_dels);
    sset_free(else_puts);
    iset_free(else_dels);
    p->in_failure = false;
    p->i++;
    return rc;
}

/* A finished list f hands its puts and deletes to its parent p. */
static int dframe_pop_into(struct dframe *p, struct dframe *f)
{
    if (!p->in_failure) {
        p->then_puts = f->puts;
        p->then_dels = f->dels;
        p->in_failure = true;
        f->puts = (struct sset){0};
        f->dels = (struct iset){0};
        return 0;
    }
    return dframe_child_done(p, &f->puts, &f->dels);
}

/* etcd's checkIntervals for one top-level branch, post-order over the nested txns. */
static int check_dups(const struct store_op *ops, size_t n)
{
    struct dframe st[TXN_STACK];
    size_t sp = 1;
    int rc = dframe_init(&st[0], ops, n);

    while (rc == 0 && sp > 0) {
        struct dframe *f = &st[sp - 1];
        while (f->i < f->n && f->ops[f->i].type != STORE_OP_TXN) {
            f->i++;
        }
        if (f->i < f->n) {
            size_t cn;
            const struct store_op *cops = branch_ops(f->ops[f->i].u.txn, !f->in_failure, &cn);
            LATCH_ASSERT(sp < TXN_STACK); /* validate_shape bounded the depth */
            rc = dframe_init(&st[sp++], cops, cn);
            continue;
        }
        rc = dframe_finish(f);
        if (rc == 0 && sp > 1) {
            rc = dframe_pop_into(&st[sp - 2], f);
            dframe_free(f);
            sp--;
        } else if (rc == 0) {
            break;
        }
    }
    for (size_t i = 0; i < sp; i++) {
        dframe_free(&st[i]);
    }
    return rc;
}

/* Whether a list can hold a duplicate at all: it needs two writes or a nested txn. The
 * common one-op txn (a plain Put or Delete) then skips check_dups and its allocations. */
static bool may_dup(const struct store_op *ops, size_t n)
{
    size_t writes = 0;

    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == STORE_OP_TXN) {
            return true;
        }
        writes += ops[i].type == STORE_OP_PUT || ops[i].type == STORE_OP_DELETE ? 1 : 0;
    }
    return writes > 1;
}

int store_txn_validate(const struct store_txn_req *t, char *errmsg, size_t errmsg_size)
{
    const char *why = "";
    int rc = validate_shape(t, &why);

    if (rc == 0) {
        if (may_dup(t->success, t->success_count)) {
            rc = check_dups(t->success, t->success_count);
        }
        if (rc == 0 && may_dup(t->failure, t->failure_count)) {
            rc = check_dups(t->failure, t->failure_count);
        }
        why = rc == LATCH_EDUPKEY ? "duplicate key given in txn request" : "out of memory";
    }
    if (rc != 0 && errmsg != NULL && errmsg_size > 0) {
        snprintf(errmsg, errmsg_size, "%s", why);
    }
    LATCH_ASSERT(rc <= 0);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Execution                                                                          */
/* ---------------------------------------------------------------------------------- */

/* Whether any list of t, nested ones included, puts: the NOSPACE alarm refuses those. */
static bool txn_has_put(const struct store_txn_req *t)
{
    struct vframe st[TXN_STACK];
    size_t sp = 1;

    st[0] = (struct vframe){.t = t};
    while (sp > 0) {
        struct vframe *f = &st[sp - 1];
        size_t n;
        const struct store_op *ops = branch_ops(f->t, !f->in_failure, &n);
        if (f->i == n) {
            f->in_failure = !f->in_failure;
            f->i = 0;
            sp -= f->in_failure ? 0 : 1;
            continue;
        }
        const struct store_op *op = &ops[f->i++];
        if (op->type == STORE_OP_PUT) {
            return true;
        }
        if (op->type == STORE_OP_TXN) {
            LATCH_ASSERT(sp < TXN_STACK);
            st[sp++] = (struct vframe){.t = op->u.txn};
        }
    }
    return false;
}

/* etcd's compareKV: c against one key-value (a zero one for a missing key). */
static bool compare_kv(const struct store_compare *c, const struct store__kvrec *r)
{
    int res = 0;

    switch (c->target) {
    case STORE_CMP_VALUE:
        res = bytes_cmp(r->value, r->value_len, c->value, c->value_len);
        break;
    case STORE_CMP_CREATE:
        res = cmp_i64(r->create_rev, c->number);
        break;
    case STORE_CMP_MOD:
        res = cmp_i64(r->mod_rev, c->number);
        break;
    case STORE_CMP_VERSION:
        res = cmp_i64(r->version, c->number);
        break;
    case STORE_CMP_LEASE:
        res = cmp_i64(r->lease, c->number);
        break;
    default:
        break;
    }
    switch (c->result) {
    case STORE_CMP_EQUAL:
        return res == 0;
    case STORE_CMP_GREATER:
        return res > 0;
    case STORE_CMP_LESS:
        return res < 0;
    case STORE_CMP_NOT_EQUAL:
        return res != 0;
    default:
        return true;
    }
}

struct cmp_scan {
    const struct store_compare *c;
    bool any;
    bool ok;
};

static int compare_visit(void *arg, const MDB_val *key, const struct store__kvrec *rec)
{
    struct cmp_scan *cs = arg;

    (void)key;
    cs->any = true;
    cs->ok = compare_kv(cs->c, rec);
    return cs->ok ? 0 : 1; /* the first key that fails decides */
}

/* A FENCE compare's walk of the queue (store.h): what the entries at and below the token
 * are. */
struct fence_scan {
    const struct store_compare *c;
    bool found;        /* an entry with a lease has create_revision == token */
    bool found_shared; /* ... and it is shared */
    bool lower;        /* an entry has a lower create revision */
    bool lower_excl;   /* ... and one of those is exclusive */
};

static int fence_visit(void *arg, const MDB_val *key, const struct store__kvrec *rec)
{
    struct fence_scan *fs = arg;
    const struct store_compare *c = fs->c;
    bool shared = c->value_len == 1 && key->mv_size > c->key_len &&
                  ((const uint8_t *)key->mv_data)[c->key_len] == c->value[0];
    if (rec->create_rev == c->number) {
        /* A lease-less entry is a lock-delay tombstone: it keeps its place in the queue
         * but is nobody's grant, so its own token is refused. */
        fs->found = rec->lease != 0;
        fs->found_shared = shared;
    } else if (rec->create_rev < c->number) {
        fs->lower = true;
        fs->lower_excl = fs->lower_excl || !shared;
    }
    return 0; /* every entry counts: the queue is in key order, not create order */
}

static int fence_eval(struct store__w *w, const struct store_compare *c, bool *ok)
{
    struct fence_scan fs = {.c = c};
    int rc = store__kv_scan(w->s, w->txn, c->key, c->key_len, c->range_end, c->range_end_len,
                            fence_visit, &fs);
    bool holds = fs.found && (!fs.lower || (fs.found_shared && !fs.lower_excl));
#ifdef LATCH_TEETH
    if (latch_teeth_on(LATCH_TEETH_NO_FENCE)) {
        holds = true; /* teeth: every token counts as current (latch_teeth.h) */
    }
#endif
    *ok = c->result == STORE_CMP_EQUAL ? holds : !holds;
    return rc;
}

/* etcd's applyCompare: every key of the range must satisfy c; with none, a VALUE compare
 * is false and the others compare against a zero key-value. */
int store__compare_eval(struct store__w *w, const struct store_compare *c, bool *ok)
{
    struct cmp_scan cs = {.c = c, .ok = true};
    struct store__kvrec rec;
    int rc;

    if (c->target == STORE_CMP_FENCE) {
        return fence_eval(w, c, ok);
    }
    if (c->range_end_len == 0) {
        rc = store__kv_get(w->s, w->txn, c->key, c->key_len, &rec);
        if (rc == 0) {
            compare_visit(&cs, NULL, &rec);
        }
        rc = rc == LATCH_ENOTFOUND ? 0 : rc;
    } else {
        rc = store__kv_scan(w->s, w->txn, c->key, c->key_len, c->range_end, c->range_end_len,
                            compare_visit, &cs);
    }
    if (rc == 0 && !cs.any) {
        memset(&rec, 0, sizeof(rec));
        cs.ok = c->target != STORE_CMP_VALUE && compare_kv(c, &rec);
    }
    *ok = cs.ok;
    return rc;
}

/* The chosen branch of every txn on the path, in the order the txns are entered. */
struct path {
    bool *v; /* inline, or on the heap once the path outgrows it */
    size_t n;
    size_t cap;
    bool inline_v[16];
};

static void path_init(struct path *p)
{
    p->v = p->inline_v;
    p->n = 0;
    p->cap = sizeof(p->inline_v) / sizeof(p->inline_v[0]);
}

static void path_free(struct path *p)
{
    if (p->v != p->inline_v) {
        free(p->v);
    }
}

static int path_push(struct path *p, bool b)
{
    if (p->n == p->cap) {
        size_t cap = p->cap * 2;
        bool *v = malloc(cap * sizeof(*v));
        if (v == NULL) {
            return LATCH_ENOMEM;
        }
        memcpy(v, p->v, p->n * sizeof(*v));
        path_free(p);
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = b;
    return 0;
}

struct pframe {
    const struct store_op *ops;
    size_t n;
    size_t i;
};

/* Ops of the chosen path checked before the txn writes (etcd's checkRequests). */
typedef int (*txn_check_fn)(struct store__w *w, const struct store_op *ops, size_t n);

/* Enters t on the path: evaluates its compares (build) or reads the branch taken. */
static int path_enter(struct store__w *w,
                      const struct store_txn_req *t,
                      struct path *p,
                      size_t *k,
                      bool build,
                      struct pframe *f)
{
    bool b = true;
    int rc = 0;

    if (build) {
        for (size_t i = 0; i < t->compares_count && b && rc == 0; i++) {
            rc = store__compare_eval(w, &t->compares[i], &b); /* ANDed: the first false decides */
        }
        rc = rc != 0 ? rc : path_push(p, b);
    } else {
        LATCH_ASSERTF(*k < p->n, "path %zu of %zu", *k, p->n);
        b = p->v[*k];
    }
    (*k)++;
    f->ops = branch_ops(t, b, &f->n);
    f->i = 0;
    return rc;
}

/* Walks the chosen path, txns in pre-order (etcd's compareToPath / checkRequests order):
 * builds the path (check NULL) or runs check on each txn's own ops. */
static int path_walk(struct store__w *w,
                     const struct store_txn_req *t,
                     struct path *p,
                     uint32_t depth,
                     txn_check_fn check)
{
    struct pframe st[TXN_STACK];
    size_t sp = 1, k = 0;
    int rc = path_enter(w, t, p, &k, check == NULL, &st[0]);

    /* Ops are checked in order, a nested txn's at its position (etcd's checkRequests),
     * so the first failing op decides the error. */
    while (rc == 0 && sp > 0) {
        struct pframe *f = &st[sp - 1];
        while (rc == 0 && f->i < f->n && f->ops[f->i].type != STORE_OP_TXN) {
            rc = check != NULL ? check(w, &f->ops[f->i], 1) : 0;
            f->i++;
        }
        if (rc != 0) {
            break;
        }
        if (f->i == f->n) {
            sp--;
            continue;
        }
        const struct store_txn_req *sub = f->ops[f->i++].u.txn;
        LATCH_ASSERTF(sp + depth < TXN_STACK, "txn depth %zu", sp + depth);
        rc = path_enter(w, sub, p, &k, check == NULL, &st[sp]);
        sp++;
    }
    return rc;
}

/* etcd's checkRequestPut: ignore_* needs the key (LATCH_ENOKEY, etcd's "key not found"), a
 * lease must exist (LATCH_ENOTFOUND, etcd's "requested lease not found"). */
static int check_puts(struct store__w *w, const struct store_op *ops, size_t n)
{
    struct store__kvrec rec;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct store_put_req *q = &ops[i].u.put;
        if (ops[i].type != STORE_OP_PUT) {
            continue;
        }
        if (q->ignore_value || q->ignore_lease) {
            rc = store__kv_get(w->s, w->txn, q->key, q->key_len, &rec);
            rc = rc == LATCH_ENOTFOUND ? LATCH_ENOKEY : rc;
        }
        if (rc == 0 && q->lease != 0) {
            rc = store__lease_exists(w->s, w->txn, q->lease);
        }
    }
    return rc;
}

/* etcd's checkRequestRange: a revision (0: current) neither future nor compacted. */
static int check_ranges(struct store__w *w, const struct store_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t rev = ops[i].u.range.revision;
        if (ops[i].type != STORE_OP_RANGE || rev == 0) {
            continue;
        }
        if (rev > w->rev) {
            return LATCH_EFUTUREREV;
        }
        if (rev < w->compact_rev) {
            return LATCH_ECOMPACTED;
        }
    }
    return 0;
}

struct xframe {
    const struct store_op *ops;
    size_t n;
    size_t i;
    struct store_op_result *res;
};

/* Starts t's result for the branch b: one response per op, filled as the ops run. */
static int result_init(struct store__w *w,
                       const struct store_txn_req *t,
                       bool b,
                       struct store_txn_result *out,
                       struct xframe *f)
{
    f->ops = branch_ops(t, b, &f->n);
    f->i = 0;
    f->res = latch_arena_calloc(w->arena, f->n > 0 ? f->n : 1, sizeof(*f->res));
    if (f->res == NULL) {
        return LATCH_ENOMEM;
    }
    out->succeeded = b;
    out->responses = f->res;
    out->responses_count = f->n;
    return 0;
}

/* Runs one op of the chosen path; a nested txn pushes its frame at st[*sp]. */
static int run_op(struct store__w *w,
                  const struct store_op *op,
                  struct store_op_result *r,
                  const struct path *p,
                  size_t *k,
                  struct xframe *next,
                  bool *pushed)
{
    /* A read inside a write txn sees its earlier writes (etcd's storeTxnWrite.Range). */
    int64_t cur = w->rev + (w->sub > 0 ? 1 : 0);

    *pushed = false;
    r->type = op->type;
    switch (op->type) {
    case STORE_OP_RANGE:
        return store__range(w->s, w->txn, cur, w->compact_rev, &op->u.range, w->arena, &r->u.range);
    case STORE_OP_PUT:
        return store__kv_put(w, &op->u.put, &r->u.put);
    case STORE_OP_DELETE:
        return store__kv_delete_range(w, &op->u.del, &r->u.del);
    case STORE_OP_TXN:
        r->u.txn = latch_arena_calloc(w->arena, 1, sizeof(*r->u.txn));
        if (r->u.txn == NULL) {
            return LATCH_ENOMEM;
        }
        LATCH_ASSERTF(*k < p->n, "path %zu of %zu", *k, p->n);
        *pushed = true;
        return result_init(w, op->u.txn, p->v[(*k)++], r->u.txn, next);
    default:
        LATCH_ASSERTF(false, "op type %u passed validation", op->type);
        return LATCH_EINVAL;
    }
}

/* etcd's applyTxn: the chosen ops in order, nested txns where they stand. */
static int txn_run(struct store__w *w,
                   const struct store_txn_req *t,
                   const struct path *p,
                   uint32_t depth,
                   struct store_txn_result *out)
{
    struct xframe st[TXN_STACK];
    size_t sp = 1, k = 1;
    int rc = result_init(w, t, p->v[0], out, &st[0]);

    while (rc == 0 && sp > 0) {
        struct xframe *f = &st[sp - 1];
        if (f->i == f->n) {
            sp--;
            continue;
        }
        bool pushed = false;
        LATCH_ASSERT(sp + depth <= TXN_STACK);
        struct xframe *next = sp + depth < TXN_STACK ? &st[sp] : NULL;
        const struct store_op *op = &f->ops[f->i];
        struct store_op_result *r = &f->res[f->i++];
        LATCH_ASSERT(op->type != STORE_OP_TXN || next != NULL);
        rc = run_op(w, op, r, p, &k, next, &pushed);
        sp += pushed ? 1 : 0;
    }
    return rc;
}

/* The two ops of the one way a validated txn fails after writing (see the header). */
static void scan_late_failure(const struct store_op *op, bool *ignore_put, bool *from_delete)
{
    if (op->type == STORE_OP_PUT) {
        *ignore_put |= op->u.put.ignore_value || op->u.put.ignore_lease;
    } else if (op->type == STORE_OP_DELETE) {
        *from_delete |= op->u.del.range_end_len == 1 && op->u.del.range_end[0] == 0;
    }
}

bool store__txn_may_fail_after_write(const struct store_txn_req *t)
{
    struct vframe st[TXN_STACK];
    size_t sp = 1;
    bool ignore_put = false, from_delete = false;

    LATCH_ASSERT(t != NULL);
    st[0] = (struct vframe){.t = t};
    while (sp > 0 && !(ignore_put && from_delete)) {
        struct vframe *f = &st[sp - 1];
        size_t n;
        const struct store_op *ops = branch_ops(f->t, !f->in_failure, &n);
        if (f->i == n) {
            f->in_failure = !f->in_failure;
            f->i = 0;
            sp -= f->in_failure ? 0 : 1;
            continue;
        }
        const struct store_op *op = &ops[f->i++];
        scan_late_failure(op, &ignore_put, &from_delete);
        if (op->type == STORE_OP_TXN) {
            LATCH_ASSERT(sp < TXN_STACK);
            st[sp++] = (struct vframe){.t = op->u.txn};
        }
    }
    return ignore_put && from_delete;
}

int store__txn_exec(struct store__w *w,
                    const struct store_txn_req *t,
                    uint32_t depth,
                    struct store_txn_result *out)
{
    struct path p;

    LATCH_ASSERT(w != NULL && t != NULL && out != NULL);
    LATCH_ASSERTF(depth <= STORE_TXN_DEPTH_MAX, "depth %u", depth);
    memset(out, 0, sizeof(*out));
    /* etcd's capped applier refuses a txn that may put before looking at anything else;
     * latch counts nested puts too (etcd only looks at the top-level lists). */
    if (w->alarm_nospace && txn_has_put(t)) {
        return LATCH_ENOSPACE;
    }
    path_init(&p);
    int rc = path_walk(w, t, &p, depth, NULL);
    rc = rc != 0 ? rc : path_walk(w, t, &p, depth, check_puts);
    rc = rc != 0 ? rc : path_walk(w, t, &p, depth, check_ranges);
    rc = rc != 0 ? rc : txn_run(w, t, &p, depth, out);
    path_free(&p);
    return rc;
}
