/*
 * test_model.c — model-based property test of store/ (issue 3, item 8).
 *
 * A seeded random sequence of operations (100,000 by default) runs against store/ through its
 * public API (commands encoded and applied by fx_apply; store_range, store_history, store_stat,
 * store_children, store_lease_get/list, store_status) and against a plain in-memory model
 * written here, independently of store/, from etcd 3.4's rules (ETCD-API.md §4.1-§4.7) and
 * store.h's comments. After every operation everything the store returned is compared with
 * the model: error codes, result and header revisions, every key-value field, count and more,
 * prev_kv(s), txn succeeded flags and nested responses, lease ids and TTLs, hierarchy counters,
 * history chunks; then the status (revision, compaction point, applied index, alarm, key and
 * lease counts). Every 1000 ops, after every reopen and at the end the whole state is compared
 * (every key, the keyspace at the compaction point, every lease with its keys, every node's
 * stat and children, the recent history).
 *
 * The model is deliberately simple: a fixed keyspace of ~50 keys (flat keys and paths closed
 * under their ancestors), the current key-values in an array, every event ever written in one
 * array (plus, per key, the indexes of its events) so that any revision can be read back, a
 * sorted array of leases, and per node a tree record (cversion, children revision). Children
 * are computed by scanning the keyspace.
 *
 * Knobs (environment): LATCH_MODEL_SEED (default 1), LATCH_MODEL_OPS (default 100000),
 * LATCH_MODEL_TRACE=1 prints every operation. A mismatch fails with the seed, the op number,
 * the op and what differed; the same seed replays the same sequence (the op count only has
 * to reach the failing op).
 *
 * TEETH. To check that this test catches a broken store, hand-break one rule in (a copy of)
 * store/ and run test_model; each of these was caught with the default seed, naming the field:
 * a put after a delete keeps counting the version (op 77); compaction also drops puts below
 * the compaction point (op 77, a missing prev_kv); a command with several events bumps the
 * revision by 2 (op 76); an update moves create_revision (op 194); a delete leaves the key
 * attached to its lease (op 100); a child delete does not bump the parent's cversion (op 118).
 * test_model_comparators_catch_a_wrong_answer checks the comparison code itself: it corrupts
 * the model's answer in several ways and requires the checks to notice each one.
 *
 * INTERPRETATIONS. Where etcd 3.4 or store.h leaves room, the model does this:
 *
 *  E1  Txn: as etcd 3.4's applierV3backend.Txn, every compare of every nesting level is
 *      evaluated against the state BEFORE the txn writes anything (compareToPath); then puts
 *      on the path taken are checked (lease exists: LATCH_ENOTFOUND; ignore_value and
 *      ignore_lease need an existing key: LATCH_ENOKEY), then ranges on the path taken
 *      (revision above the pre-txn revision: LATCH_EFUTUREREV, below the compaction point:
 *      LATCH_ECOMPACTED), all before any write. Each pass walks the ops in order and enters
 *      a nested txn at its position (etcd's checkRequests), so the first bad op in that order
 *      names the error. Then the ops run in order and reads see the txn's own earlier writes.
 *      A range at an explicit revision r <= pre-txn revision reads the state as of r.
 *  E2  NOSPACE (store.h, brief): while the alarm is on, a txn with a put anywhere (either
 *      branch, any depth), a lease grant and a tree create fail with LATCH_ENOSPACE before any
 *      other check except validation; deletes, ranges, revokes, checkpoints, compaction and
 *      alarms work. (etcd 3.4's quota only counts puts at the top level of each branch.) The
 *      generator never combines a validation error with the alarm, so their order is not
 *      tested.
 *  E3  Sort ties: etcd sorts with Go's unstable sort.Sort, so among equal sort values any
 *      order is accepted, and under a limit any subset of the tie group that the limit cuts.
 *      etcd's applier fetches only limit + 1 keys (in key order) unless sort_order is set or
 *      a filter is, and only then applies "a target other than KEY with order NONE sorts
 *      ASCEND": so NONE + VERSION + limit 2 sorts the first 3 keys of the range, not all.
 *  E4  keys_only: value is NULL and value_len is 0 (etcd drops the value).
 *  E5  Lease id 0: the first id >= lease_next that is not in use; lease_next becomes that id
 *      + 1 (ids are not reused after a revoke). grant_revision is the store revision when the
 *      lease was granted (a grant writes no event). remaining_ttl is 0 until a checkpoint.
 *  E6  History prev_kv is etcd's (a Range at mod_revision - 1): present for updates and
 *      deletes, never for creates, and absent for events AT the compaction revision (that
 *      read is compacted). Chunk limits are checked in a way that holds for both readings of
 *      "stop after this many events, never inside a revision": a chunk of several revisions
 *      was under both limits before its last revision, and a chunk that was not the last
 *      could not have taken the next revision whole. max_bytes counts key + value of the
 *      events (not prev); when prev_kv is asked the test passes max_bytes = SIZE_MAX.
 *      next_revision lies after the chunk's last revision and at or before the next matching
 *      event (current revision + 1 when none is left).
 *  E7  Compact(rev) with rev <= compact_revision is LATCH_ECOMPACTED, also rev 0 on a store
 *      never compacted (store_int.h's store__compact; etcd's initial point is -1).
 *  E8  A txn that fails store_txn_validate applies with that function's error (store.h,
 *      struct store_result), with result type STORE_CMD_TXN; the generator plants one error
 *      at a time (empty key: EINVAL, ignore_value/ignore_lease with a value/lease: EINVAL,
 *      duplicate put / put+delete / put in a nested txn: EDUPKEY, 129 ops: ETOOMANYOPS, a
 *      512-byte key or an oversized value: ETOOBIG).
 *  T1  Hierarchy (store.h): counters for every parent of every path key written through any
 *      API; children of P are existing keys P/name, so a child can exist while P does not
 *      (num_children counts it once P exists). store_children of a path that does not exist
 *      is empty ("a path that does not exist has no children").
 *  T2  A tree record starts at zero when it comes into existence; a child create or delete
 *      bumps the parent's cversion and sets its children_revision to the revision. The record
 *      of a node that does not exist disappears when its last child goes; "/" always exists,
 *      so its record never goes. Re-creating a node that kept a record (it had children while
 *      it did not exist) restarts its cversion at 0 ("creates + deletes of children since the
 *      node was created") but keeps children_revision ("revision of the last child create or
 *      delete"); num_children is always the number of existing children.
 *  T3  tree_create checks in this order: NOSPACE, path validity (EINVAL), node exists
 *      (EEXIST), lease exists (ENOTFOUND), parent exists unless make_parents (ENOTFOUND).
 *      make_parents creates every missing ancestor, top down, empty value, no lease, as events
 *      of the same revision before the node; parents_created counts them.
 *  T4  tree_delete checks: validity (EINVAL), exists (ENOTFOUND), expected_version
 *      (EBADVERSION), children unless recursive (ENOTEMPTY). Recursive deletes the node and
 *      every key below "path/" (also keys whose intermediate nodes do not exist), in key
 *      order, in one revision.
 *  L1  Lease revoke deletes the lease's keys in key order in one revision.
 *
 * NOT GENERATED (unclear in store.h, or another test's job): txn nesting beyond 3 levels and
 * the depth limit, unknown enum values, lease TTLs out of range, checkpoints naming a missing
 * lease, history from beyond current + 1, max_events or max_bytes 0, lease_list max 0, tree
 * commands on "/", negative revisions or limits, batches of several items per store_apply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"

/* The model lives across setup, test and teardown: use libc's allocator, not cmocka's
 * per-test one (which reclaims blocks at the end of the test). ASan checks for leaks. */
#undef malloc
#undef calloc
#undef realloc
#undef free

#define MODEL_DEFAULT_OPS 100000ul
#define FULL_CHECK_EVERY  1000ul
#define VMAX              16u /* longest value the generator writes */
#define MAX_LEASES        64u /* the generator revokes instead of granting past LEASES_SOFT_MAX */
#define LEASES_SOFT_MAX   24u

/* ------------------------------------------------------------------------------------ */
/* The keyspace                                                                         */
/* ------------------------------------------------------------------------------------ */

struct bkey {
    const uint8_t *p;
    uint32_t len;
};

#define BK(s)                                                                                      \
    {                                                                                              \
        (const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)                                            \
    }

/* Every key any write can name. Paths are closed under their ancestors. */
static const struct bkey key_src[] = {
    BK("/a"),   BK("/a/b"),   BK("/a/b/c"), BK("/a/b/d"),   BK("/a/c"),   BK("/a/c/e"),
    BK("/a0"),  BK("/ab"),    BK("/b"),     BK("/b/x"),     BK("/b/x/y"), BK("/b/x/y/z"),
    BK("/c"),   BK("/c/1"),   BK("/c/2"),   BK("/c/3"),     BK("/c/4"),   BK("/d"),
    BK("/d/e"), BK("/d/e/f"), BK("/d/e/g"), BK("/d/h"),     BK("/e"),     BK("/f"),
    BK("/f/g"), BK("a"),      BK("a0"),     BK("ab"),       BK("b"),      BK("ba"),
    BK("c"),    BK("d"),      BK("k\0z"),   BK("k1"),       BK("k2"),     BK("k3"),
    BK("k4"),   BK("m"),      BK("n/o"),    BK("q"),        BK("x"),      BK("y"),
    BK("z"),    BK("zz"),     BK("\xff"),   BK("\xff\x01"),
};

#define NK   ((int)(sizeof(key_src) / sizeof(key_src[0])))
#define ROOT NK /* tree index of "/" */

/* Range boundaries that are not keys. */
static const struct bkey edge_src[] = {
    BK("\0"), BK("/"),   BK("/a/"), BK("/a/b/"), BK("/b/x/y/"),  BK("/c/"), BK("0"),
    BK("k"),  BK("k\0"), BK("j"),   BK("zzz"),   BK("\xff\xff"), BK("a\0"), BK("/a/b/c\0"),
};

/* Prefixes for prefix ranges (besides whole keys). */
static const struct bkey prefix_src[] = {
    BK("/"),     BK("/a"), BK("/a/"), BK("/a/b"), BK("/b/"), BK("/c/"),
    BK("/d/e/"), BK("k"),  BK("a"),   BK("\xff"), BK("z"),
};

/* Paths that store_path_valid must refuse. */
static const struct bkey bad_paths[] = {
    BK("/a/"), BK("a"), BK("//a"), BK("/a//b"), BK("/a/./b"), BK("/a/../b"), BK("/."), BK("/a\0b"),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static struct bkey keys[NK]; /* key_src in byte order */
static int parent_of[NK];    /* parent's index, ROOT for "/x", -1 for keys that are not paths */
static int paths[NK];        /* indexes of path keys */
static int npaths;

static int bcmp3(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int bkey_cmp(const void *a, const void *b)
{
    const struct bkey *x = a;
    const struct bkey *y = b;
    return bcmp3(x->p, x->len, y->p, y->len);
}

static int key_index(const uint8_t *p, uint32_t len)
{
    for (int k = 0; k < NK; k++) {
        if (bcmp3(keys[k].p, keys[k].len, p, len) == 0) {
            return k;
        }
    }
    return -1;
}

static void keyspace_init(void)
{
    memcpy(keys, key_src, sizeof(keys));
    qsort(keys, (size_t)NK, sizeof(keys[0]), bkey_cmp);
    npaths = 0;
    for (int k = 0; k < NK; k++) {
        parent_of[k] = -1;
        if (keys[k].p[0] != '/') {
            continue;
        }
        paths[npaths++] = k;
        uint32_t slash = keys[k].len - 1;
        while (keys[k].p[slash] != '/') {
            slash--;
        }
        parent_of[k] = slash == 0 ? ROOT : key_index(keys[k].p, slash);
        assert_true(parent_of[k] >= 0);
    }
}

/* etcd's range rule: end_len 0 is the key alone; end "\0" is every key >= key. */
static bool in_range(const uint8_t *k,
                     uint32_t klen,
                     const uint8_t *key,
                     uint32_t key_len,
                     const uint8_t *end,
                     uint32_t end_len)
{
    int c = bcmp3(k, klen, key, key_len);

    if (end_len == 0) {
        return c == 0;
    }
    if (c < 0) {
        return false;
    }
    if (end_len == 1 && end[0] == 0) {
        return true;
    }
    return bcmp3(k, klen, end, end_len) < 0;
}

static bool
key_in_range(int k, const uint8_t *key, uint32_t key_len, const uint8_t *end, uint32_t end_len)
{
    return in_range(keys[k].p, keys[k].len, key, key_len, end, end_len);
}

/* ------------------------------------------------------------------------------------ */
/* The model                                                                            */
/* ------------------------------------------------------------------------------------ */

struct mkv {
    bool live;
    uint32_t vlen;
    int64_t create;
    int64_t mod;
    int64_t ver;
    int64_t lease;
    uint8_t val[VMAX];
};

struct mev {
    int64_t rev;
    uint32_t sub;
    uint32_t type; /* enum store_event_type */
    int key;
    struct mkv kv; /* the key after the event (all zero for a delete) */
};

struct ivec {
    size_t *v;
    size_t n, cap;
};

struct mlease {
    int64_t id;
    int64_t ttl;
    int64_t remaining;
    int64_t grant_rev;
};

struct mtree {
    bool rec;
    int64_t cver;
    int64_t crev;
};

struct model {
    int64_t rev;     /* current revision */
    int64_t compact; /* compaction point, 0 when never compacted */
    int64_t lease_next;
    uint32_t sub; /* events written by the running command */
    bool nospace;
    struct mkv kv[NK];
    struct mev *ev; /* every event ever, in (rev, sub) order */
    size_t nev, evcap;
    struct ivec kev[NK]; /* per key: indexes into ev */
    struct mlease lease[MAX_LEASES];
    size_t nlease; /* sorted by id */
    struct mtree tree[NK + 1];
};

static void model_init(struct model *m)
{
    memset(m, 0, sizeof(*m));
    m->rev = 1;
    m->lease_next = 1;
}

static void model_free(struct model *m)
{
    free(m->ev);
    for (int k = 0; k < NK; k++) {
        free(m->kev[k].v);
    }
    memset(m, 0, sizeof(*m));
}

/* The key as of revision rev (its newest event at or below rev). */
static void m_state_at(const struct model *m, int k, int64_t rev, struct mkv *out)
{
    const struct ivec *iv = &m->kev[k];
    size_t lo = 0;
    size_t hi = iv->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->ev[iv->v[mid]].rev <= rev) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = m->ev[iv->v[lo - 1]].kv;
}

static void m_emit(struct model *m, int k, uint32_t type)
{
    if (m->nev == m->evcap) {
        m->evcap = m->evcap ? m->evcap * 2 : 4096;
        m->ev = realloc(m->ev, m->evcap * sizeof(*m->ev));
        assert_non_null(m->ev);
    }
    struct ivec *iv = &m->kev[k];
    if (iv->n == iv->cap) {
        iv->cap = iv->cap ? iv->cap * 2 : 64;
        iv->v = realloc(iv->v, iv->cap * sizeof(*iv->v));
        assert_non_null(iv->v);
    }
    struct mev *e = &m->ev[m->nev];
    e->rev = m->rev + 1;
    e->sub = m->sub++;
    e->type = type;
    e->key = k;
    e->kv = m->kv[k];
    iv->v[iv->n++] = m->nev++;
}

static int64_t m_nchildren(const struct model *m, int p)
{
    int64_t n = 0;
    for (int k = 0; k < NK; k++) {
        if (parent_of[k] == p && m->kv[k].live) {
            n++;
        }
    }
    return n;
}

static bool m_node_exists(const struct model *m, int p)
{
    return p == ROOT || m->kv[p].live;
}

/* T2, called after key k came into existence. */
static void m_tree_on_create(struct model *m, int k)
{
    int p = parent_of[k];
    if (p < 0) {
        return;
    }
    struct mtree *r = &m->tree[p];
    if (!r->rec) {
        *r = (struct mtree){.rec = true};
    }
    r->cver++;
    r->crev = m->rev + 1;
    struct mtree *own = &m->tree[k];
    if (!own->rec) {
        *own = (struct mtree){.rec = true};
    }
    own->cver = 0; /* children_revision stays: T2 */
}

/* T2, called after key k stopped existing. */
static void m_tree_on_delete(struct model *m, int k)
{
    int p = parent_of[k];
    if (p < 0) {
        return;
    }
    struct mtree *r = &m->tree[p];
    r->rec = true;
    r->cver++;
    r->crev = m->rev + 1;
    if (!m_node_exists(m, p) && m_nchildren(m, p) == 0) {
        *r = (struct mtree){0};
    }
    if (m_nchildren(m, k) == 0) {
        m->tree[k] = (struct mtree){0};
    }
}

/* A put at the running command's revision. val may point into the model. */
static void m_put(struct model *m, int k, const uint8_t *val, uint32_t vlen, int64_t lease)
{
    struct mkv *c = &m->kv[k];
    bool created = !c->live;
    int64_t rev = m->rev + 1;

    assert_true(vlen <= VMAX);
    if (created) {
        c->create = rev;
        c->ver = 1;
        c->live = true;
    } else {
        c->ver++;
    }
    c->mod = rev;
    c->lease = lease;
    if (vlen > 0) {
        memmove(c->val, val, vlen);
    }
    c->vlen = vlen;
    m_emit(m, k, STORE_EVENT_PUT);
    if (created) {
        m_tree_on_create(m, k);
    }
}

static void m_del(struct model *m, int k)
{
    assert_true(m->kv[k].live);
    memset(&m->kv[k], 0, sizeof(m->kv[k]));
    m_emit(m, k, STORE_EVENT_DELETE);
    m_tree_on_delete(m, k);
}

/* I2: a command that wrote events bumps the revision by one. */
static void m_end_cmd(struct model *m)
{
    if (m->sub > 0) {
        m->rev++;
        m->sub = 0;
    }
}

static int m_lease_find(const struct model *m, int64_t id)
{
    for (size_t i = 0; i < m->nlease; i++) {
        if (m->lease[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

static void m_lease_add(struct model *m, int64_t id, int64_t ttl)
{
    size_t i = 0;

    assert_true(m->nlease < MAX_LEASES);
    while (i < m->nlease && m->lease[i].id < id) {
        i++;
    }
    memmove(&m->lease[i + 1], &m->lease[i], (m->nlease - i) * sizeof(m->lease[0]));
    m->lease[i] = (struct mlease){.id = id, .ttl = ttl, .grant_rev = m->rev};
    m->nlease++;
}

static void m_lease_remove(struct model *m, int64_t id)
{
    int i = m_lease_find(m, id);

    assert_true(i >= 0);
    memmove(&m->lease[i], &m->lease[i + 1], (m->nlease - (size_t)i - 1) * sizeof(m->lease[0]));
    m->nlease--;
}

static int64_t m_keys_count(const struct model *m)
{
    int64_t n = 0;
    for (int k = 0; k < NK; k++) {
        n += m->kv[k].live ? 1 : 0;
    }
    return n;
}

/* ------------------------------------------------------------------------------------ */
/* Test context, randomness, reporting                                                  */
/* ------------------------------------------------------------------------------------ */

struct mt {
    struct fx f;
    struct model m;
    struct latch_arena gen; /* generated requests; reset before each op */
    struct latch_arena ra;  /* results of reads; reset before each read */
    uint64_t seed;
    uint64_t rng;
    unsigned long op;
    bool trace;
    bool soft; /* comparators record the first mismatch instead of failing */
    bool mismatched;
    char why[1024];
    char desc[4096];
    size_t dlen;
    uint8_t *bigval; /* STORE_VALUE_BYTES_MAX + 1 bytes */
    uint8_t bigkey[STORE_KEY_BYTES_MAX + 1];
    unsigned long cmds;     /* commands applied */
    unsigned long errs[32]; /* ... by outcome: errs[-err] (0: success) */
    unsigned long nospace_ops;
    unsigned long live_sum; /* live keys summed over ops */
};

static uint64_t rnd(struct mt *t)
{
    uint64_t z = (t->rng += 0x9E3779B97F4A7C15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t rn(struct mt *t, uint32_t n)
{
    return n == 0 ? 0 : (uint32_t)(rnd(t) % n);
}

static bool chance(struct mt *t, uint32_t pct)
{
    return rn(t, 100) < pct;
}

/* Uniform in [lo, hi]; lo when hi < lo. */
static int64_t rrange(struct mt *t, int64_t lo, int64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    return lo + (int64_t)(rnd(t) % (uint64_t)(hi - lo + 1));
}

static void *galloc(struct mt *t, size_t n)
{
    void *p = latch_arena_calloc(&t->gen, 1, n > 0 ? n : 1);
    assert_non_null(p);
    return p;
}

static const char *ename(int e)
{
    return e == 0 ? "0 (ok)" : latch_error_name(e);
}

/* Printable form of a byte string; one of 8 rotating buffers. */
static const char *kfmt(const uint8_t *p, uint32_t len)
{
    static char bufs[8][160];
    static unsigned next;
    char *b = bufs[next++ % 8];
    size_t o = 0;

    if (p == NULL) {
        return len == 0 ? "(null)" : "(null!)";
    }
    b[o++] = '"';
    for (uint32_t i = 0; i < len && o < 140; i++) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            b[o++] = (char)c;
        } else {
            o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "\\x%02x", c);
        }
    }
    if (o >= 140) {
        o += (size_t)snprintf(b + o, sizeof(bufs[0]) - o, "...(%u)", len);
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}

__attribute__((format(printf, 2, 3))) static void dsc(struct mt *t, const char *fmt, ...)
{
    if (t->dlen >= sizeof(t->desc) - 1) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->desc + t->dlen, sizeof(t->desc) - t->dlen, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->dlen += (size_t)n;
        if (t->dlen > sizeof(t->desc) - 1) {
            t->dlen = sizeof(t->desc) - 1;
        }
    }
}

/* Reports a difference: fails the test (with seed, op number and op), or in soft mode
 * records it. Returns false so comparators can `return mism(...)`. */
__attribute__((format(printf, 2, 3))) static bool mism(struct mt *t, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (t->soft) {
        if (!t->mismatched) {
            snprintf(t->why, sizeof(t->why), "%s", buf);
        }
        t->mismatched = true;
        return false;
    }
    fail_msg("store and model disagree: seed %llu, op %lu\n  op: %s\n  difference: %s\n"
             "  replay: LATCH_MODEL_SEED=%llu LATCH_MODEL_OPS=%lu LATCH_MODEL_TRACE=1 "
             "test_model",
             (unsigned long long)t->seed, t->op, t->desc, buf, (unsigned long long)t->seed,
             t->op + 1);
    return false;
}

static bool ck_i64(struct mt *t, const char *what, const char *field, int64_t got, int64_t exp)
{
    if (got == exp) {
        return true;
    }
    return mism(t, "%s: %s is %lld, model says %lld", what, field, (long long)got, (long long)exp);
}

static bool ck_err(struct mt *t, const char *what, int got, int exp)
{
    if (got == exp) {
        return true;
    }
    return mism(t, "%s: returned %s, model says %s", what, ename(got), ename(exp));
}

static bool ck_key(struct mt *t, const char *what, const uint8_t *p, uint32_t len, int k)
{
    if (p != NULL && bcmp3(p, len, keys[k].p, keys[k].len) == 0) {
        return true;
    }
    return mism(t, "%s: key is %s, model says %s", what, kfmt(p, len),
                kfmt(keys[k].p, keys[k].len));
}

/* One key-value against the model's. E4 for keys_only. */
static bool chk_kv(struct mt *t,
                   const char *what,
                   const struct store_kv *g,
                   int k,
                   const struct mkv *e,
                   bool keys_only)
{
    char w[256];

    if (!ck_key(t, what, g->key, g->key_len, k)) {
        return false;
    }
    snprintf(w, sizeof(w), "%.200s key %s", what, kfmt(keys[k].p, keys[k].len));
    if (!ck_i64(t, w, "create_revision", g->create_revision, e->create) ||
        !ck_i64(t, w, "mod_revision", g->mod_revision, e->mod) ||
        !ck_i64(t, w, "version", g->version, e->ver) ||
        !ck_i64(t, w, "lease", g->lease, e->lease)) {
        return false;
    }
    if (keys_only) {
        if (g->value != NULL || g->value_len != 0) {
            return mism(t, "%s: keys_only but value %s (len %u)", w, kfmt(g->value, g->value_len),
                        g->value_len);
        }
        return true;
    }
    if (g->value_len != e->vlen ||
        (e->vlen > 0 && (g->value == NULL || memcmp(g->value, e->val, e->vlen) != 0))) {
        return mism(t, "%s: value %s, model says %s", w, kfmt(g->value, g->value_len),
                    kfmt(e->val, e->vlen));
    }
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Descriptions of requests (for failure messages and LATCH_MODEL_TRACE)                 */
/* ------------------------------------------------------------------------------------ */

static void
d_bounds(struct mt *t, const uint8_t *key, uint32_t klen, const uint8_t *end, uint32_t elen)
{
    dsc(t, "%s", kfmt(key, klen));
    if (elen > 0) {
        dsc(t, "..%s", kfmt(end, elen));
    }
}

static void d_range(struct mt *t, const struct store_range_req *q)
{
    dsc(t, "range(");
    d_bounds(t, q->key, q->key_len, q->range_end, q->range_end_len);
    dsc(t, " rev=%lld limit=%lld sort=%u/%u%s%s", (long long)q->revision, (long long)q->limit,
        q->sort_order, q->sort_target, q->keys_only ? " keys_only" : "",
        q->count_only ? " count_only" : "");
    if (q->min_mod_revision || q->max_mod_revision || q->min_create_revision ||
        q->max_create_revision) {
        dsc(t, " mod[%lld,%lld] create[%lld,%lld]", (long long)q->min_mod_revision,
            (long long)q->max_mod_revision, (long long)q->min_create_revision,
            (long long)q->max_create_revision);
    }
    dsc(t, ")");
}

static void d_put(struct mt *t, const struct store_put_req *q)
{
    dsc(t, "put(%s=", kfmt(q->key, q->key_len));
    if (q->value_len > 64) {
        dsc(t, "<%u bytes>", q->value_len);
    } else {
        dsc(t, "%s", kfmt(q->value, q->value_len));
    }
    dsc(t, " lease=%lld%s%s%s)", (long long)q->lease, q->prev_kv ? " prev_kv" : "",
        q->ignore_value ? " ignore_value" : "", q->ignore_lease ? " ignore_lease" : "");
}

static void d_txn(struct mt *t, const struct store_txn_req *q);

static void d_ops(struct mt *t, const struct store_op *ops, size_t n)
{
    if (n > 8) {
        dsc(t, "<%zu ops>", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct store_op *op = &ops[i];
        dsc(t, i ? ", " : "");
        if (op->type == STORE_OP_RANGE) {
            d_range(t, &op->u.range);
        } else if (op->type == STORE_OP_PUT) {
            d_put(t, &op->u.put);
        } else if (op->type == STORE_OP_DELETE) {
            dsc(t, "del(");
            d_bounds(t, op->u.del.key, op->u.del.key_len, op->u.del.range_end,
                     op->u.del.range_end_len);
            dsc(t, "%s)", op->u.del.prev_kv ? " prev_kv" : "");
        } else {
            d_txn(t, op->u.txn);
        }
    }
}

static void d_txn(struct mt *t, const struct store_txn_req *q)
{
    static const char *const tg[] = {"version", "create", "mod", "value", "lease"};
    static const char *const rs[] = {"==", ">", "<", "!="};

    dsc(t, "txn{if[");
    for (size_t i = 0; i < q->compares_count; i++) {
        const struct store_compare *c = &q->compares[i];
        dsc(t, "%s%s(", i ? ", " : "", c->target < 5 ? tg[c->target] : "?");
        d_bounds(t, c->key, c->key_len, c->range_end, c->range_end_len);
        dsc(t, ")%s", c->result < 4 ? rs[c->result] : "?");
        if (c->target == STORE_CMP_VALUE) {
            dsc(t, "%s", kfmt(c->value, c->value_len));
        } else {
            dsc(t, "%lld", (long long)c->number);
        }
    }
    dsc(t, "] then[");
    d_ops(t, q->success, q->success_count);
    dsc(t, "] else[");
    d_ops(t, q->failure, q->failure_count);
    dsc(t, "]}");
}

/* ------------------------------------------------------------------------------------ */
/* Range: the model's answer and the comparison                                         */
/* ------------------------------------------------------------------------------------ */

struct mrange {
    int err;
    int64_t count;
    size_t nall; /* after filters and sort, before the limit */
    size_t n;    /* after the limit */
    bool more;
    bool total; /* the order is fully determined (key order) */
    uint32_t target;
    int keys[NK];
    struct mkv kvs[NK];
};

static int sv_cmp(uint32_t target, const struct mkv *a, const struct mkv *b)
{
    int64_t x = 0;
    int64_t y = 0;

    switch (target) {
    case STORE_SORT_VERSION:
        x = a->ver, y = b->ver;
        break;
    case STORE_SORT_CREATE:
        x = a->create, y = b->create;
        break;
    case STORE_SORT_MOD:
        x = a->mod, y = b->mod;
        break;
    case STORE_SORT_VALUE:
        return bcmp3(a->val, a->vlen, b->val, b->vlen);
    default:
        return 0;
    }
    return x < y ? -1 : x > y ? 1 : 0;
}

static bool range_filtered(const struct store_range_req *q, const struct mkv *s)
{
    return (q->max_mod_revision != 0 && s->mod > q->max_mod_revision) ||
           (q->min_mod_revision != 0 && s->mod < q->min_mod_revision) ||
           (q->max_create_revision != 0 && s->create > q->max_create_revision) ||
           (q->min_create_revision != 0 && s->create < q->min_create_revision);
}

/* Sorts e's results as etcd's Range does (ascending by default for a non-key target). */
static void range_sort(const struct store_range_req *q, struct mrange *e)
{
    uint32_t order = q->sort_order;

    e->target = q->sort_target;
    if (e->target != STORE_SORT_KEY && order == STORE_SORT_NONE) {
        order = STORE_SORT_ASCEND;
    }
    e->total = e->target == STORE_SORT_KEY;
    int sign = order == STORE_SORT_DESCEND ? -1 : 1;
    for (size_t i = 1; i < e->nall; i++) { /* insertion sort: stable, clarity over speed */
        for (size_t j = i; j > 0; j--) {
            int c = e->total ? bcmp3(keys[e->keys[j - 1]].p, keys[e->keys[j - 1]].len,
                                     keys[e->keys[j]].p, keys[e->keys[j]].len)
                             : sv_cmp(e->target, &e->kvs[j - 1], &e->kvs[j]);
            if (order == STORE_SORT_NONE || c * sign <= 0) {
                break;
            }
            int tk = e->keys[j];
            struct mkv tv = e->kvs[j];
            e->keys[j] = e->keys[j - 1];
            e->kvs[j] = e->kvs[j - 1];
            e->keys[j - 1] = tk;
            e->kvs[j - 1] = tv;
        }
    }
}

/* The model's Range (ETCD-API §4.2). Within a txn, revision 0 reads the txn's own writes
 * (m->kv) and an explicit revision reads history (which holds nothing above m->rev). */
static void m_range(const struct model *m, const struct store_range_req *q, struct mrange *e)
{
    memset(e, 0, sizeof(*e));
    if (q->key_len == 0) {
        e->err = LATCH_EINVAL;
        return;
    }
    if (q->revision > m->rev) {
        e->err = LATCH_EFUTUREREV;
        return;
    }
    if (q->revision > 0 && q->revision < m->compact) {
        e->err = LATCH_ECOMPACTED;
        return;
    }
    for (int k = 0; k < NK; k++) {
        if (!key_in_range(k, q->key, q->key_len, q->range_end, q->range_end_len)) {
            continue;
        }
        struct mkv s = m->kv[k];
        if (q->revision > 0) {
            m_state_at(m, k, q->revision, &s);
        }
        if (!s.live) {
            continue;
        }
        e->count++;
        if (q->count_only || range_filtered(q, &s)) {
            continue;
        }
        e->keys[e->nall] = k;
        e->kvs[e->nall++] = s;
    }
    bool filters = q->min_mod_revision || q->max_mod_revision || q->min_create_revision ||
                   q->max_create_revision;
    if (q->sort_order == STORE_SORT_NONE && !filters && q->limit > 0 &&
        e->nall > (size_t)q->limit + 1) {
        e->nall = (size_t)q->limit + 1; /* E3: etcd fetches limit + 1 in key order, then sorts */
    }
    range_sort(q, e);
    e->n = e->nall;
    if (q->limit > 0 && e->nall > (size_t)q->limit) {
        e->n = (size_t)q->limit;
        e->more = true;
    }
}

/* E3: among equal sort values any order, and any subset of the tie group a limit cuts. */
static bool chk_range(struct mt *t,
                      const char *what,
                      const struct store_range_req *q,
                      const struct mrange *e,
                      const struct store_range_result *g)
{
    bool used[NK] = {false};
    char w[256];

    if (!ck_i64(t, what, "count", g->count, e->count) ||
        !ck_i64(t, what, "more", g->more, e->more) ||
        !ck_i64(t, what, "kvs_count", (int64_t)g->kvs_count, (int64_t)e->n)) {
        return false;
    }
    for (size_t i = 0; i < e->n; i++) {
        const struct store_kv *kv = &g->kvs[i];
        snprintf(w, sizeof(w), "%.200s kvs[%zu]", what, i);
        if (e->total) {
            if (!chk_kv(t, w, kv, e->keys[i], &e->kvs[i], q->keys_only)) {
                return false;
            }
            continue;
        }
        int k = kv->key == NULL ? -1 : key_index(kv->key, kv->key_len);
        size_t j = 0;
        while (j < e->nall && e->keys[j] != k) {
            j++;
        }
        if (j == e->nall || used[k]) {
            return mism(t, "%s: key %s is not expected there (or twice); model's kvs[%zu] is %s", w,
                        kfmt(kv->key, kv->key_len), i,
                        kfmt(keys[e->keys[i]].p, keys[e->keys[i]].len));
        }
        used[k] = true;
        if (!chk_kv(t, w, kv, k, &e->kvs[j], q->keys_only)) {
            return false;
        }
        if (sv_cmp(e->target, &e->kvs[j], &e->kvs[i]) != 0) {
            const struct mkv *a = &e->kvs[j];
            const struct mkv *b = &e->kvs[i];
            return mism(t,
                        "%s: key %s (value %s version %lld create %lld mod %lld) is out of "
                        "sort order (target %u, order %u); model's kvs[%zu] is %s (value %s "
                        "version %lld create %lld mod %lld)",
                        w, kfmt(kv->key, kv->key_len), kfmt(a->val, a->vlen), (long long)a->ver,
                        (long long)a->create, (long long)a->mod, q->sort_target, q->sort_order, i,
                        kfmt(keys[e->keys[i]].p, keys[e->keys[i]].len), kfmt(b->val, b->vlen),
                        (long long)b->ver, (long long)b->create, (long long)b->mod);
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Txn: the model (E1) and the comparison of the responses                              */
/* ------------------------------------------------------------------------------------ */

/* Which branch each txn of the tree takes, decided before any write (etcd's txnPath). */
struct txnpath {
    const struct store_txn_req *txn[64];
    bool ok[64];
    size_t n;
};

static bool m_compare_one(const struct store_compare *c, const struct mkv *kv)
{
    int r;

    if (c->target == STORE_CMP_VALUE) {
        r = bcmp3(kv->val, kv->vlen, c->value, c->value_len);
    } else {
        int64_t x = c->target == STORE_CMP_VERSION  ? kv->ver
                    : c->target == STORE_CMP_CREATE ? kv->create
                    : c->target == STORE_CMP_MOD    ? kv->mod
                                                    : kv->lease;
        r = x < c->number ? -1 : x > c->number ? 1 : 0;
    }
    switch (c->result) {
    case STORE_CMP_EQUAL:
        return r == 0;
    case STORE_CMP_GREATER:
        return r > 0;
    case STORE_CMP_LESS:
        return r < 0;
    default:
        return r != 0;
    }
}

/* ETCD-API §4.4: no key in range: VALUE false, others against a zero key-value. */
static bool m_compare(const struct model *m, const struct store_compare *c)
{
    bool any = false;

    for (int k = 0; k < NK; k++) {
        if (m->kv[k].live && key_in_range(k, c->key, c->key_len, c->range_end, c->range_end_len)) {
            any = true;
            if (!m_compare_one(c, &m->kv[k])) {
                return false;
            }
        }
    }
    if (!any) {
        struct mkv zero = {0};
        return c->target != STORE_CMP_VALUE && m_compare_one(c, &zero);
    }
    return true;
}

static void m_eval_paths(const struct model *m, const struct store_txn_req *q, struct txnpath *x)
{
    bool ok = true;

    for (size_t i = 0; i < q->compares_count && ok; i++) {
        ok = m_compare(m, &q->compares[i]);
    }
    assert_true(x->n < COUNT(x->txn));
    x->txn[x->n] = q;
    x->ok[x->n++] = ok;
    const struct store_op *ops = ok ? q->success : q->failure;
    size_t n = ok ? q->success_count : q->failure_count;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == STORE_OP_TXN) {
            m_eval_paths(m, ops[i].u.txn, x);
        }
    }
}

static bool path_of(const struct txnpath *x, const struct store_txn_req *q)
{
    for (size_t i = 0; i < x->n; i++) {
        if (x->txn[i] == q) {
            return x->ok[i];
        }
    }
    fail_msg("txn not in path");
    return false;
}

/* etcd's checkRequests over the path taken: puts first (pass 0), then ranges (pass 1). */
static int m_check_path(const struct model *m,
                        const struct store_txn_req *q,
                        const struct txnpath *x,
                        int pass)
{
    bool ok = path_of(x, q);
    const struct store_op *ops = ok ? q->success : q->failure;
    size_t n = ok ? q->success_count : q->failure_count;

    for (size_t i = 0; i < n; i++) {
        const struct store_op *op = &ops[i];
        int err = 0;
        if (op->type == STORE_OP_TXN) {
            err = m_check_path(m, op->u.txn, x, pass);
        } else if (op->type == STORE_OP_PUT && pass == 0) {
            const struct store_put_req *p = &op->u.put;
            int k = key_index(p->key, p->key_len);
            assert_true(k >= 0);
            if ((p->ignore_value || p->ignore_lease) && !m->kv[k].live) {
                err = LATCH_ENOKEY;
            } else if (p->lease != 0 && m_lease_find(m, p->lease) < 0) {
                err = LATCH_ENOTFOUND;
            }
        } else if (op->type == STORE_OP_RANGE && pass == 1) {
            int64_t rev = op->u.range.revision;
            if (rev > m->rev) {
                err = LATCH_EFUTUREREV;
            } else if (rev > 0 && rev < m->compact) {
                err = LATCH_ECOMPACTED;
            }
        }
        if (err != 0) {
            return err;
        }
    }
    return 0;
}

/* E2: a put anywhere in the tree. */
static bool txn_has_put(const struct store_txn_req *q)
{
    for (int b = 0; b < 2; b++) {
        const struct store_op *ops = b ? q->failure : q->success;
        size_t n = b ? q->failure_count : q->success_count;
        for (size_t i = 0; i < n; i++) {
            if (ops[i].type == STORE_OP_PUT ||
                (ops[i].type == STORE_OP_TXN && txn_has_put(ops[i].u.txn))) {
                return true;
            }
        }
    }
    return false;
}

static bool x_put(struct mt *t,
                  const char *what,
                  const struct store_put_req *q,
                  const struct store_put_result *g)
{
    struct model *m = &t->m;
    int k = key_index(q->key, q->key_len);
    struct mkv old = m->kv[k];
    bool has_prev = q->prev_kv && old.live;
    char w[256];

    if (!ck_i64(t, what, "has_prev", g->has_prev, has_prev)) {
        return false;
    }
    snprintf(w, sizeof(w), "%.200s prev", what);
    if (has_prev && !chk_kv(t, w, &g->prev, k, &old, false)) {
        return false;
    }
    m_put(m, k, q->ignore_value ? old.val : q->value, q->ignore_value ? old.vlen : q->value_len,
          q->ignore_lease ? old.lease : q->lease);
    return true;
}

static bool x_delete(struct mt *t,
                     const char *what,
                     const struct store_delete_req *q,
                     const struct store_delete_result *g)
{
    struct model *m = &t->m;
    int del[NK];
    int64_t n = 0;
    char w[256];

    for (int k = 0; k < NK; k++) {
        if (m->kv[k].live && key_in_range(k, q->key, q->key_len, q->range_end, q->range_end_len)) {
            del[n++] = k;
        }
    }
    if (!ck_i64(t, what, "deleted", g->deleted, n) ||
        !ck_i64(t, what, "prev_kvs_count", (int64_t)g->prev_kvs_count, q->prev_kv ? n : 0)) {
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        snprintf(w, sizeof(w), "%.200s prev_kvs[%lld]", what, (long long)i);
        if (q->prev_kv && !chk_kv(t, w, &g->prev_kvs[i], del[i], &m->kv[del[i]], false)) {
            return false;
        }
        m_del(m, del[i]);
    }
    return true;
}

/* Runs the branch x chose for q on the model, comparing each response on the way. */
static bool x_txn(struct mt *t,
                  const char *what,
                  const struct store_txn_req *q,
                  const struct txnpath *x,
                  const struct store_txn_result *g)
{
    bool ok = path_of(x, q);
    const struct store_op *ops = ok ? q->success : q->failure;
    size_t n = ok ? q->success_count : q->failure_count;
    char w[256];

    if (!ck_i64(t, what, "succeeded", g->succeeded, ok) ||
        !ck_i64(t, what, "responses_count", (int64_t)g->responses_count, (int64_t)n)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct store_op *op = &ops[i];
        const struct store_op_result *r = &g->responses[i];
        bool good = true;
        snprintf(w, sizeof(w), "%s.%s[%zu]", what, ok ? "then" : "else", i);
        if (!ck_i64(t, w, "response type", r->type, op->type)) {
            return false;
        }
        if (op->type == STORE_OP_RANGE) {
            struct mrange e;
            m_range(&t->m, &op->u.range, &e);
            assert_int_equal(e.err, 0);
            good = chk_range(t, w, &op->u.range, &e, &r->u.range);
        } else if (op->type == STORE_OP_PUT) {
            good = x_put(t, w, &op->u.put, &r->u.put);
        } else if (op->type == STORE_OP_DELETE) {
            good = x_delete(t, w, &op->u.del, &r->u.del);
        } else if (r->u.txn == NULL) {
            good = mism(t, "%s: nested txn result is NULL", w);
        } else {
            good = x_txn(t, w, op->u.txn, x, r->u.txn);
        }
        if (!good) {
            return false;
        }
    }
    return true;
}

static bool
chk_res(struct mt *t, const char *what, const struct store_result *r, uint32_t type, int exp)
{
    return ck_err(t, what, r->err, exp) && ck_i64(t, what, "skipped", r->skipped, false) &&
           ck_i64(t, what, "result type", r->type, type);
}

static void apply(struct mt *t, const struct store_cmd *c, struct store_result *res)
{
    memset(res, 0, sizeof(*res));
    (void)fx_apply(&t->f, c, res);
    t->cmds++;
    t->errs[res->err <= 0 && res->err > -32 ? -res->err : 31]++;
    t->nospace_ops += t->m.nospace ? 1 : 0;
}

/* Applies a txn command and checks it against the model. defect: the validation error the
 * generator planted (0 for none). */
static void run_txn(struct mt *t, const struct store_txn_req *q, int defect)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    struct store_result res;
    struct txnpath x = {.n = 0};
    int exp = defect; /* E8 */

    d_txn(t, q);
    c.u.txn = *q;
    apply(t, &c, &res);
    if (defect == 0 && m->nospace && txn_has_put(q)) {
        exp = LATCH_ENOSPACE;
    }
    if (exp == 0 && defect == 0) {
        m_eval_paths(m, q, &x);
        exp = m_check_path(m, q, &x, 0);
        if (exp == 0) {
            exp = m_check_path(m, q, &x, 1);
        }
    }
    char why[STORE_ERRMSG_BYTES] = "";
    int v = store_txn_validate(q, why, sizeof(why));
    if (v != defect) {
        mism(t, "store_txn_validate: returned %s (\"%s\"), model says %s", ename(v), why,
             ename(defect));
        return;
    }
    if (res.err != exp) {
        mism(t, "txn: returned %s, model says %s (store_txn_validate: %s \"%s\")", ename(res.err),
             ename(exp), ename(v), why);
        return;
    }
    if (!chk_res(t, "txn", &res, STORE_CMD_TXN, exp)) {
        return;
    }
    if (exp == 0 && !x_txn(t, "txn", q, &x, &res.u.txn)) {
        return;
    }
    m_end_cmd(m);
    ck_i64(t, "txn", "result revision", res.revision, m->rev);
}

/* ------------------------------------------------------------------------------------ */
/* History (E6)                                                                         */
/* ------------------------------------------------------------------------------------ */

static bool ev_match(const struct store_history_req *q, const struct mev *e)
{
    return q->key == NULL || q->key_len == 0 ||
           key_in_range(e->key, q->key, q->key_len, q->range_end, q->range_end_len);
}

static size_t ev_first(const struct model *m, int64_t rev)
{
    size_t lo = 0;
    size_t hi = m->nev;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->ev[mid].rev < rev) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static size_t ev_next_match(const struct model *m, const struct store_history_req *q, size_t i)
{
    while (i < m->nev && !ev_match(q, &m->ev[i])) {
        i++;
    }
    return i;
}

static uint64_t ev_bytes(const struct mev *e)
{
    return keys[e->key].len + (e->type == STORE_EVENT_PUT ? e->kv.vlen : 0u);
}

static bool chk_event(
    struct mt *t, const char *what, const struct store_event *g, const struct mev *e, bool prev_kv)
{
    const struct model *m = &t->m;
    struct mkv prev = {0};
    char w[256];

    if (!ck_i64(t, what, "event type", g->type, e->type)) {
        return false;
    }
    if (e->type == STORE_EVENT_PUT) {
        if (!chk_kv(t, what, &g->kv, e->key, &e->kv, false)) {
            return false;
        }
    } else {
        struct mkv del = {.mod = e->rev};
        if (!chk_kv(t, what, &g->kv, e->key, &del, false)) {
            return false;
        }
    }
    if (prev_kv && e->rev - 1 >= m->compact) {
        m_state_at(m, e->key, e->rev - 1, &prev);
    }
    snprintf(w, sizeof(w), "%.200s (rev %lld) prev", what, (long long)e->rev);
    if (!ck_i64(t, w, "has_prev", g->has_prev, prev.live)) {
        return false;
    }
    return !prev.live || chk_kv(t, w, &g->prev, e->key, &prev, false);
}

/* E6's limits: before its last revision (before_cnt/before_bytes; 0 for a one-revision
 * chunk) the chunk was under both limits, and unless the history ended (nx == nev) the next
 * matching revision would not have fitted whole. */
static bool chk_chunk_limits(struct mt *t,
                             const struct store_history_req *q,
                             const char *what,
                             size_t cnt,
                             uint64_t bytes,
                             size_t before_cnt,
                             uint64_t before_bytes,
                             size_t nx)
{
    const struct model *m = &t->m;
    size_t ncnt = 0;
    uint64_t nb = 0;

    if (before_cnt > 0 && (before_cnt >= q->max_events || before_bytes >= q->max_bytes)) {
        return mism(t,
                    "%s: chunk of %zu events / %llu bytes exceeds max_events %zu / max_bytes "
                    "%zu before its last revision",
                    what, cnt, (unsigned long long)bytes, q->max_events, q->max_bytes);
    }
    if (nx == m->nev) {
        return true;
    }
    for (size_t j = nx; j < m->nev && m->ev[j].rev == m->ev[nx].rev; j++) {
        if (ev_match(q, &m->ev[j])) {
            ncnt++, nb += ev_bytes(&m->ev[j]);
        }
    }
    if (cnt + ncnt <= q->max_events && bytes + nb <= q->max_bytes) {
        return mism(t,
                    "%s: chunk stopped after %zu events / %llu bytes, but revision %lld "
                    "(%zu events) fits max_events %zu / max_bytes %zu",
                    what, cnt, (unsigned long long)bytes, (long long)m->ev[nx].rev, ncnt,
                    q->max_events, q->max_bytes);
    }
    return true;
}

/* Checks one chunk [events of revisions >= pos]; *mi is the model's cursor. Returns 1 when
 * the history is exhausted, 0 to go on from *pos, -1 on a mismatch. */
static int chk_history_chunk(struct mt *t,
                             const struct store_history_req *q,
                             const char *what,
                             const struct store_event *evs,
                             size_t cnt,
                             int64_t next,
                             int64_t *pos)
{
    const struct model *m = &t->m;
    size_t mi = ev_first(m, *pos);
    int64_t first = 0, last = 0;
    uint64_t bytes = 0, bytes_last = 0;
    size_t cnt_last = 0;
    char w[256];

    for (size_t i = 0; i < cnt; i++) {
        mi = ev_next_match(m, q, mi);
        if (mi >= m->nev) {
            mism(t, "%s: event %zu (%s at rev %lld) is not in the model's history", what, i,
                 kfmt(evs[i].kv.key, evs[i].kv.key_len), (long long)evs[i].kv.mod_revision);
            return -1;
        }
        const struct mev *e = &m->ev[mi++];
        snprintf(w, sizeof(w), "%.200s event[%zu]", what, i);
        if (!chk_event(t, w, &evs[i], e, q->prev_kv)) {
            return -1;
        }
        first = i == 0 ? e->rev : first;
        if (e->rev != last) {
            cnt_last = 0, bytes_last = 0, last = e->rev;
        }
        cnt_last++, bytes_last += ev_bytes(e), bytes += ev_bytes(e);
    }
    size_t nx = ev_next_match(m, q, mi);
    if (cnt == 0) {
        if (nx < m->nev) {
            mism(t, "%s: empty chunk, but the model has an event at rev %lld", what,
                 (long long)m->ev[nx].rev);
            return -1;
        }
        return ck_i64(t, what, "next_revision", next, m->rev + 1) ? 1 : -1;
    }
    if (nx < m->nev && m->ev[nx].rev == last) {
        mism(t, "%s: the chunk splits revision %lld", what, (long long)last);
        return -1;
    }
    int64_t hi = nx < m->nev ? m->ev[nx].rev : m->rev + 1;
    if (next <= last || next > hi) {
        mism(t, "%s: next_revision %lld, model expects (%lld, %lld]", what, (long long)next,
             (long long)last, (long long)hi);
        return -1;
    }
    if (!chk_chunk_limits(t, q, what, cnt, bytes, first != last ? cnt - cnt_last : 0,
                          first != last ? bytes - bytes_last : 0, nx)) {
        return -1;
    }
    if (next == m->rev + 1) {
        return 1;
    }
    *pos = next;
    return 0;
}

/* Reads the history from q->start_revision to the end in chunks; their concatenation must be
 * the model's event list. */
static bool chk_history(struct mt *t, const struct store_history_req *q0)
{
    const struct model *m = &t->m;
    struct store_history_req q = *q0;
    int exp = q.start_revision < 1            ? LATCH_EINVAL
              : q.start_revision < m->compact ? LATCH_ECOMPACTED
                                              : 0;
    int64_t pos = q.start_revision;
    char what[160];

    for (unsigned call = 0; call < 100000; call++) {
        struct store_event *evs = NULL;
        size_t cnt = 0;
        int64_t next = -1;
        q.start_revision = pos;
        latch_arena_reset(&t->ra);
        int rc = store_history(t->f.r, &q, &t->ra, &evs, &cnt, &next);
        snprintf(what, sizeof(what), "history(from %lld, call %u at %lld)",
                 (long long)q0->start_revision, call, (long long)pos);
        if (!ck_err(t, what, rc, call == 0 ? exp : 0)) {
            return false;
        }
        if (rc != 0) {
            return true;
        }
        int r = chk_history_chunk(t, &q, what, evs, cnt, next, &pos);
        if (r != 0) {
            return r > 0;
        }
    }
    return mism(t, "history from %lld: no end after 100000 calls", (long long)q0->start_revision);
}

/* ------------------------------------------------------------------------------------ */
/* Hierarchy reads (T1, T2)                                                             */
/* ------------------------------------------------------------------------------------ */

static void node_path(int p, const uint8_t **path, uint32_t *len)
{
    if (p == ROOT) {
        *path = (const uint8_t *)"/";
        *len = 1;
    } else {
        *path = keys[p].p;
        *len = keys[p].len;
    }
}

static bool chk_stat_fields(struct mt *t, const char *what, const struct store_stat *st, int p)
{
    const struct model *m = &t->m;
    struct mkv zero = {0};
    const struct mkv *kv = p == ROOT ? &zero : &m->kv[p];
    const struct mtree *tr = &m->tree[p];

    return ck_i64(t, what, "create_revision", st->create_revision, kv->create) &&
           ck_i64(t, what, "mod_revision", st->mod_revision, kv->mod) &&
           ck_i64(t, what, "version", st->version, kv->ver) &&
           ck_i64(t, what, "lease", st->lease, kv->lease) &&
           ck_i64(t, what, "value_len", st->value_len, kv->vlen) &&
           ck_i64(t, what, "num_children", st->num_children, m_nchildren(m, p)) &&
           ck_i64(t, what, "cversion", st->cversion, tr->rec ? tr->cver : 0) &&
           ck_i64(t, what, "children_revision", st->children_revision, tr->rec ? tr->crev : 0);
}

static bool chk_stat(struct mt *t, int p)
{
    const uint8_t *path;
    uint32_t len;
    struct store_stat st;
    char what[200];

    node_path(p, &path, &len);
    memset(&st, 0, sizeof(st));
    snprintf(what, sizeof(what), "stat(%s)", kfmt(path, len));
    int rc = store_stat(t->f.r, path, len, &st);
    if (!ck_err(t, what, rc, m_node_exists(&t->m, p) ? 0 : LATCH_ENOTFOUND)) {
        return false;
    }
    return rc != 0 || chk_stat_fields(t, what, &st, p);
}

static uint32_t name_off(int p)
{
    return p == ROOT ? 1u : keys[p].len + 1u;
}

/* One page of children of p after `after` (NULL: from the first). *last gets the last
 * child's key index (-1 if none), *more the store's flag. */
static bool chk_children(
    struct mt *t, int p, const uint8_t *after, uint32_t alen, size_t limit, int *last, bool *more)
{
    const struct model *m = &t->m;
    const uint8_t *path;
    uint32_t plen;
    int exp[NK];
    size_t n = 0;
    struct store_child *ch = NULL;
    size_t cnt = 0;
    char what[200];

    node_path(p, &path, &plen);
    for (int k = 0; k < NK && m_node_exists(m, p); k++) { /* T1 */
        uint32_t o = name_off(p);
        if (parent_of[k] == p && m->kv[k].live &&
            (after == NULL || bcmp3(keys[k].p + o, keys[k].len - o, after, alen) > 0)) {
            exp[n++] = k;
        }
    }
    bool exp_more = limit > 0 && n > limit;
    n = exp_more ? limit : n;
    snprintf(what, sizeof(what), "children(%s after %s limit %zu)", kfmt(path, plen),
             after ? kfmt(after, alen) : "-", limit);
    latch_arena_reset(&t->ra);
    *more = false;
    int rc = store_children(t->f.r, path, plen, after, alen, limit, &t->ra, &ch, &cnt, more);
    if (!ck_err(t, what, rc, 0) || !ck_i64(t, what, "count", (int64_t)cnt, (int64_t)n) ||
        !ck_i64(t, what, "more", *more, exp_more)) {
        return false;
    }
    *last = -1;
    for (size_t i = 0; i < n; i++) {
        int k = exp[i];
        uint32_t o = name_off(p);
        char w[240];
        snprintf(w, sizeof(w), "%.200s child[%zu]", what, i);
        if (bcmp3(ch[i].name, ch[i].name_len, keys[k].p + o, keys[k].len - o) != 0) {
            return mism(t, "%s: name %s, model says %s", w, kfmt(ch[i].name, ch[i].name_len),
                        kfmt(keys[k].p + o, keys[k].len - o));
        }
        if (!chk_stat_fields(t, w, &ch[i].stat, k)) {
            return false;
        }
        *last = k;
    }
    return true;
}

/* Pages through all children of p with page size limit. */
static bool chk_children_all(struct mt *t, int p, size_t limit)
{
    const uint8_t *after = NULL;
    uint32_t alen = 0;

    for (int pages = 0; pages <= NK + 1; pages++) {
        int last;
        bool more;
        if (!chk_children(t, p, after, alen, limit, &last, &more)) {
            return false;
        }
        if (!more || last < 0) {
            return true;
        }
        after = keys[last].p + name_off(p);
        alen = keys[last].len - name_off(p);
    }
    return mism(t, "children: paging does not end");
}

/* ------------------------------------------------------------------------------------ */
/* Lease reads and status                                                               */
/* ------------------------------------------------------------------------------------ */

static bool chk_lease_fields(struct mt *t,
                             const char *what,
                             const struct store_lease *g,
                             const struct mlease *e)
{
    return ck_i64(t, what, "id", g->id, e->id) && ck_i64(t, what, "ttl", g->ttl, e->ttl) &&
           ck_i64(t, what, "remaining_ttl", g->remaining_ttl, e->remaining) &&
           ck_i64(t, what, "grant_revision", g->grant_revision, e->grant_rev);
}

static bool chk_lease_get(struct mt *t, int64_t id, bool with_keys)
{
    const struct model *m = &t->m;
    struct store_lease l;
    struct store_kv *kvs = NULL;
    size_t n = 0;
    char what[120];
    int i = m_lease_find(m, id);

    memset(&l, 0, sizeof(l));
    snprintf(what, sizeof(what), "lease_get(%lld, keys=%d)", (long long)id, with_keys);
    latch_arena_reset(&t->ra);
    int rc = store_lease_get(t->f.r, id, with_keys, &t->ra, &l, &kvs, &n);
    if (!ck_err(t, what, rc, i < 0 ? LATCH_ENOTFOUND : 0)) {
        return false;
    }
    if (rc != 0 || !chk_lease_fields(t, what, &l, &m->lease[i])) {
        return rc != 0;
    }
    if (!with_keys) {
        return true;
    }
    size_t j = 0;
    for (int k = 0; k < NK; k++) {
        if (!m->kv[k].live || m->kv[k].lease != id) {
            continue;
        }
        if (j >= n) {
            return mism(t, "%s: %zu keys, model has more (next %s)", what, n,
                        kfmt(keys[k].p, keys[k].len));
        }
        char w[160];
        snprintf(w, sizeof(w), "%.200s keys[%zu]", what, j);
        if (!ck_key(t, w, kvs[j].key, kvs[j].key_len, k)) {
            return false;
        }
        j++;
    }
    return ck_i64(t, what, "keys count", (int64_t)n, (int64_t)j);
}

static bool chk_lease_list(struct mt *t, int64_t after, size_t max)
{
    const struct model *m = &t->m;
    struct store_lease *ls = NULL;
    size_t n = 0;
    size_t j = 0;
    char what[120];

    snprintf(what, sizeof(what), "lease_list(after %lld, max %zu)", (long long)after, max);
    latch_arena_reset(&t->ra);
    int rc = store_lease_list(t->f.r, after, max, &t->ra, &ls, &n);
    if (!ck_err(t, what, rc, 0)) {
        return false;
    }
    for (size_t i = 0; i < m->nlease && j < max; i++) {
        if (m->lease[i].id <= after) {
            continue;
        }
        char w[160];
        snprintf(w, sizeof(w), "%s[%zu]", what, j);
        if (j >= n) {
            return mism(t, "%s: %zu leases, model has more (next %lld)", what, n,
                        (long long)m->lease[i].id);
        }
        if (!chk_lease_fields(t, w, &ls[j], &m->lease[i])) {
            return false;
        }
        j++;
    }
    return ck_i64(t, what, "count", (int64_t)n, (int64_t)j);
}

static bool chk_status(struct mt *t)
{
    const struct model *m = &t->m;
    struct store_status st;
    const char *what = "status";

    memset(&st, 0, sizeof(st));
    if (!ck_err(t, what, store_status(t->f.r, &st), 0)) {
        return false;
    }
    return ck_i64(t, what, "revision", st.revision, m->rev) &&
           ck_i64(t, what, "compact_revision", st.compact_revision, m->compact) &&
           ck_i64(t, what, "applied_index", (int64_t)st.applied_index,
                  (int64_t)t->f.next_index - 1) &&
           ck_i64(t, what, "applied_term", (int64_t)st.applied_term, t->f.next_index > 1) &&
           ck_i64(t, what, "alarm_nospace", st.alarm_nospace, m->nospace) &&
           ck_i64(t, what, "keys_count", st.keys_count, m_keys_count(m)) &&
           ck_i64(t, what, "leases_count", st.leases_count, (int64_t)m->nlease);
}

static bool chk_range_req(struct mt *t, const char *what, const struct store_range_req *q)
{
    struct store_range_result g;
    struct mrange e;
    int64_t hdr = -1;

    memset(&g, 0, sizeof(g));
    latch_arena_reset(&t->ra);
    int rc = store_range(t->f.r, q, &t->ra, &g, &hdr);
    m_range(&t->m, q, &e);
    if (!ck_err(t, what, rc, e.err)) {
        return false;
    }
    return rc != 0 ||
           (chk_range(t, what, q, &e, &g) && ck_i64(t, what, "header revision", hdr, t->m.rev));
}

/* Everything the store holds against the model. */
static bool full_check(struct mt *t)
{
    const struct model *m = &t->m;
    struct store_range_req all = {.key = (const uint8_t *)"\0",
                                  .key_len = 1,
                                  .range_end = (const uint8_t *)"\0",
                                  .range_end_len = 1};
    bool ok = chk_status(t) && chk_range_req(t, "full check: range all", &all);

    if (ok && m->compact > 0) {
        all.revision = m->compact;
        ok = chk_range_req(t, "full check: range all at the compaction point", &all);
    }
    ok = ok && chk_lease_list(t, 0, MAX_LEASES + 1);
    for (size_t i = 0; ok && i < m->nlease; i++) {
        ok = chk_lease_get(t, m->lease[i].id, true);
    }
    ok = ok && chk_stat(t, ROOT) && chk_children_all(t, ROOT, 0);
    for (int i = 0; ok && i < npaths; i++) {
        ok = chk_stat(t, paths[i]) && chk_children_all(t, paths[i], 0);
    }
    struct store_history_req h = {.prev_kv = true, .max_events = 64, .max_bytes = SIZE_MAX};
    h.start_revision = m->rev - 150 > m->compact ? m->rev - 150 : m->compact;
    h.start_revision = h.start_revision < 1 ? 1 : h.start_revision;
    return ok && chk_history(t, &h);
}

/* ------------------------------------------------------------------------------------ */
/* Generators                                                                           */
/* ------------------------------------------------------------------------------------ */

static int pick_key(struct mt *t)
{
    return (int)rn(t, (uint32_t)NK);
}

static int pick_path(struct mt *t)
{
    return paths[rn(t, (uint32_t)npaths)];
}

/* A path, preferring (pct %) one whose existence is `live`. */
static int pick_path_pref(struct mt *t, bool live, uint32_t pct)
{
    int p = pick_path(t);
    if (!chance(t, pct)) {
        return p;
    }
    for (int i = 0; i < 8 && t->m.kv[p].live != live; i++) {
        p = pick_path(t);
    }
    return p;
}

static int64_t some_lease(struct mt *t)
{
    return t->m.nlease ? t->m.lease[rn(t, (uint32_t)t->m.nlease)].id : 0;
}

static int64_t missing_lease(struct mt *t)
{
    for (;;) {
        int64_t id = 1 + (int64_t)rn(t, 4000);
        if (m_lease_find(&t->m, id) < 0) {
            return id;
        }
    }
}

static void gen_value(struct mt *t, const uint8_t **v, uint32_t *len)
{
    static const uint8_t alphabet[] = {0x00, 'a', 'b', 'c', 0xff};
    uint32_t n = chance(t, 85) ? rn(t, 5) : rn(t, VMAX + 1);
    uint8_t *b = galloc(t, n);

    for (uint32_t i = 0; i < n; i++) {
        b[i] = alphabet[rn(t, sizeof(alphabet))];
    }
    *v = b;
    *len = n;
}

static struct bkey gen_bound(struct mt *t)
{
    if (chance(t, 75)) {
        return keys[pick_key(t)];
    }
    return edge_src[rn(t, COUNT(edge_src))];
}

/* etcd's prefix end: the prefix with its last byte (not 0xff) incremented; "\0" if none. */
static struct bkey prefix_end(struct mt *t, struct bkey p)
{
    uint32_t n = p.len;
    while (n > 0 && p.p[n - 1] == 0xff) {
        n--;
    }
    if (n == 0) {
        return (struct bkey)BK("\0");
    }
    uint8_t *e = galloc(t, n);
    memcpy(e, p.p, n);
    e[n - 1]++;
    return (struct bkey){e, n};
}

/* Key and range end of a range, a delete or a compare. single_ok: may be one key. */
static void gen_bounds(struct mt *t,
                       bool single_ok,
                       const uint8_t **key,
                       uint32_t *klen,
                       const uint8_t **end,
                       uint32_t *elen)
{
    uint32_t r = single_ok ? rn(t, 100) : 40 + rn(t, 60);
    struct bkey a = gen_bound(t);
    struct bkey b = {NULL, 0};

    if (r < 40) {
        a = chance(t, 90) ? keys[pick_key(t)] : a;
    } else if (r < 50) {
        b = (struct bkey)BK("\0");
    } else if (r < 58) {
        a = (struct bkey)BK("\0");
        b = a;
    } else if (r < 80) {
        a = chance(t, 50) ? prefix_src[rn(t, COUNT(prefix_src))] : a;
        b = prefix_end(t, a);
    } else {
        b = gen_bound(t);
        if (bcmp3(a.p, a.len, b.p, b.len) > 0 && chance(t, 85)) {
            struct bkey x = a;
            a = b;
            b = x;
        }
        if (b.len == 0 || (b.len == 1 && b.p[0] == 0)) {
            b = keys[pick_key(t)]; /* keep "\0" for the r < 58 cases */
        }
    }
    *key = a.p, *klen = a.len, *end = b.p, *elen = b.len;
}

/* A revision for a read: mostly current or readable, sometimes compacted or future. */
static int64_t gen_read_rev(struct mt *t, bool zero_ok)
{
    const struct model *m = &t->m;
    int64_t lo = m->compact > 1 ? m->compact : 1;
    uint32_t r = rn(t, 100);

    if (zero_ok && r < 55) {
        return 0;
    }
    if (r < 80) {
        return rrange(t, lo > m->rev - 40 ? lo : m->rev - 40, m->rev);
    }
    if (r < 88) {
        return rrange(t, lo, m->rev);
    }
    if (r < 92) {
        return m->compact;
    }
    if (r < 96 && m->compact > 1) {
        return rrange(t, 1, m->compact - 1);
    }
    return m->rev + 1 + (int64_t)rn(t, 2);
}

static void gen_range_req(struct mt *t, struct store_range_req *q)
{
    const struct model *m = &t->m;

    memset(q, 0, sizeof(*q));
    gen_bounds(t, true, &q->key, &q->key_len, &q->range_end, &q->range_end_len);
    q->limit = chance(t, 50) ? 0 : 1 + (int64_t)rn(t, 5);
    q->revision = gen_read_rev(t, true);
    q->sort_order = chance(t, 50) ? STORE_SORT_NONE : rn(t, 3);
    q->sort_target = chance(t, 40) ? STORE_SORT_KEY : rn(t, 5);
    q->keys_only = chance(t, 15);
    q->count_only = chance(t, 10);
    q->min_mod_revision = chance(t, 12) ? rrange(t, 1, m->rev) : 0;
    q->max_mod_revision = chance(t, 12) ? rrange(t, 1, m->rev) : 0;
    q->min_create_revision = chance(t, 12) ? rrange(t, 1, m->rev) : 0;
    q->max_create_revision = chance(t, 12) ? rrange(t, 1, m->rev) : 0;
}

static void gen_put(struct mt *t, struct store_put_req *q)
{
    uint32_t r = rn(t, 100);
    int k = pick_key(t);

    memset(q, 0, sizeof(*q));
    q->key = keys[k].p;
    q->key_len = keys[k].len;
    gen_value(t, &q->value, &q->value_len);
    q->lease = r < 50 ? 0 : r < 95 ? some_lease(t) : missing_lease(t);
    q->prev_kv = chance(t, 40);
    if (chance(t, 6)) {
        q->ignore_value = true;
        q->value = NULL;
        q->value_len = 0;
    }
    if (chance(t, 6)) {
        q->ignore_lease = true;
        q->lease = 0;
    }
    for (int i = 0; i < 4 && (q->ignore_value || q->ignore_lease) && !t->m.kv[k].live; i++) {
        k = pick_key(t); /* ignore_* needs an existing key: mostly give it one */
        q->key = keys[k].p;
        q->key_len = keys[k].len;
    }
}

static void gen_delete(struct mt *t, struct store_delete_req *q)
{
    memset(q, 0, sizeof(*q));
    if (chance(t, 82)) {
        int k = pick_key(t);
        q->key = keys[k].p;
        q->key_len = keys[k].len;
        q->prev_kv = chance(t, 50);
        return;
    }
    for (int i = 0; i < 3; i++) { /* keep the keyspace populated: wide deletes are rarer */
        gen_bounds(t, false, &q->key, &q->key_len, &q->range_end, &q->range_end_len);
        if (q->range_end_len != 1 || q->range_end[0] != 0) {
            break;
        }
    }
    q->prev_kv = chance(t, 50);
}

/* A compare that is true or false about equally often: numbers near the key's own. */
static void gen_compare(struct mt *t, struct store_compare *c)
{
    int k = pick_key(t);
    const struct mkv *kv = &t->m.kv[k];

    memset(c, 0, sizeof(*c));
    c->target = rn(t, 5);
    c->result = rn(t, 4);
    if (chance(t, 80)) {
        c->key = keys[k].p;
        c->key_len = keys[k].len;
    } else {
        gen_bounds(t, false, &c->key, &c->key_len, &c->range_end, &c->range_end_len);
    }
    int64_t base = c->target == STORE_CMP_VERSION  ? kv->ver
                   : c->target == STORE_CMP_CREATE ? kv->create
                   : c->target == STORE_CMP_MOD    ? kv->mod
                                                   : kv->lease;
    if (c->target == STORE_CMP_LEASE && chance(t, 30)) {
        base = some_lease(t);
    }
    c->number = chance(t, 20) ? 0 : base + (int64_t)rn(t, 3) - 1;
    if (c->target == STORE_CMP_VALUE) {
        if (kv->live && chance(t, 60)) {
            c->value = latch_arena_dup(&t->gen, kv->val, kv->vlen);
            c->value_len = kv->vlen;
        } else {
            gen_value(t, &c->value, &c->value_len);
        }
    }
}

static struct store_txn_req *gen_txn(struct mt *t, int depth);

static void gen_op(struct mt *t, struct store_op *op, int depth)
{
    uint32_t r = rn(t, 100);

    memset(op, 0, sizeof(*op));
    if (r < 35 || (r >= 85 && depth >= 3)) {
        op->type = STORE_OP_RANGE;
        gen_range_req(t, &op->u.range);
        if (chance(t, 70)) {
            op->u.range.revision = 0; /* mostly read the txn's own writes */
        }
    } else if (r < 65) {
        op->type = STORE_OP_PUT;
        gen_put(t, &op->u.put);
    } else if (r < 85) {
        op->type = STORE_OP_DELETE;
        gen_delete(t, &op->u.del);
    } else {
        op->type = STORE_OP_TXN;
        op->u.txn = gen_txn(t, depth + 1);
    }
}

/* Lists have 2 spare slots (compares 1) for inject_defect. */
static struct store_txn_req *gen_txn(struct mt *t, int depth)
{
    struct store_txn_req *q = galloc(t, sizeof(*q));
    size_t nc = rn(t, depth ? 3 : 4);
    size_t ns = rn(t, depth ? 3 : 5);
    size_t nf = rn(t, depth ? 3 : 4);
    struct store_compare *c = galloc(t, (nc + 1) * sizeof(*c));
    struct store_op *s = galloc(t, (ns + 2) * sizeof(*s));
    struct store_op *f = galloc(t, (nf + 2) * sizeof(*f));

    for (size_t i = 0; i < nc; i++) {
        gen_compare(t, &c[i]);
    }
    for (size_t i = 0; i < ns; i++) {
        gen_op(t, &s[i], depth);
    }
    for (size_t i = 0; i < nf; i++) {
        gen_op(t, &f[i], depth);
    }
    q->compares = c, q->compares_count = nc;
    q->success = s, q->success_count = ns;
    q->failure = f, q->failure_count = nf;
    return q;
}

struct dels {
    const struct store_delete_req *d[256];
    size_t n;
};

static void collect_dels(const struct store_op *ops, size_t n, struct dels *ds)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == STORE_OP_DELETE && ds->n < COUNT(ds->d)) {
            ds->d[ds->n++] = &ops[i].u.del;
        } else if (ops[i].type == STORE_OP_TXN) {
            collect_dels(ops[i].u.txn->success, ops[i].u.txn->success_count, ds);
            collect_dels(ops[i].u.txn->failure, ops[i].u.txn->failure_count, ds);
        }
    }
}

/* Turns every put that could count as a duplicate (the key put elsewhere in the branch, at
 * any depth, or inside any delete of the branch) into a read of that key, so generated txns
 * are valid under both etcd's and store.h's rules. */
static void dedup_puts(struct store_op *ops, size_t n, const struct dels *ds, bool *seen)
{
    for (size_t i = 0; i < n; i++) {
        struct store_op *op = &ops[i];
        if (op->type == STORE_OP_TXN) {
            struct store_txn_req *q = (struct store_txn_req *)op->u.txn;
            dedup_puts((struct store_op *)q->success, q->success_count, ds, seen);
            dedup_puts((struct store_op *)q->failure, q->failure_count, ds, seen);
            continue;
        }
        if (op->type != STORE_OP_PUT) {
            continue;
        }
        int k = key_index(op->u.put.key, op->u.put.key_len);
        bool dup = seen[k];
        for (size_t j = 0; j < ds->n && !dup; j++) {
            dup = key_in_range(k, ds->d[j]->key, ds->d[j]->key_len, ds->d[j]->range_end,
                               ds->d[j]->range_end_len);
        }
        seen[k] = true;
        if (dup) {
            memset(op, 0, sizeof(*op));
            op->type = STORE_OP_RANGE;
            op->u.range.key = keys[k].p;
            op->u.range.key_len = keys[k].len;
        }
    }
}

static void make_valid_branch(struct store_op *ops, size_t n)
{
    struct dels ds = {.n = 0};
    bool seen[NK] = {false};

    collect_dels(ops, n, &ds);
    dedup_puts(ops, n, &ds, seen);
}

static struct store_op put_op(const struct bkey *k, const char *value, int64_t lease)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = k->p;
    op.u.put.key_len = k->len;
    op.u.put.value = (const uint8_t *)value;
    op.u.put.value_len = (uint32_t)strlen(value);
    op.u.put.lease = lease;
    return op;
}

/* A put with a key over STORE_KEY_BYTES_MAX or (rarely: 1.5 MiB) a value over the limit. */
static int inject_too_big(struct mt *t, struct store_txn_req *q, const struct bkey *k)
{
    struct store_op *s = (struct store_op *)q->success;
    struct bkey big = {t->bigkey, sizeof(t->bigkey)};

    if (chance(t, 10)) {
        s[q->success_count] = put_op(k, "", 0);
        s[q->success_count].u.put.value = t->bigval;
        s[q->success_count++].u.put.value_len = STORE_VALUE_BYTES_MAX + 1;
    } else {
        s[q->success_count++] = put_op(&big, "v", 0);
    }
    return LATCH_ETOOBIG;
}

/* Plants one validation error (store_txn_validate's list) in a valid txn; returns it. */
static int inject_defect(struct mt *t, struct store_txn_req *q)
{
    struct store_op *s = (struct store_op *)q->success;
    struct store_op *f = (struct store_op *)q->failure;
    struct bkey k = keys[pick_key(t)];
    struct bkey empty = {(const uint8_t *)"", 0};

    switch (rn(t, 10)) {
    case 0:
        s[q->success_count++] = put_op(&empty, "v", 0);
        return LATCH_EINVAL;
    case 1: {
        struct store_compare *c = (struct store_compare *)q->compares;
        c[q->compares_count] = (struct store_compare){.key = empty.p, .number = 1};
        q->compares_count++;
        return LATCH_EINVAL;
    }
    case 2:
        f[q->failure_count] = (struct store_op){.type = STORE_OP_RANGE};
        f[q->failure_count++].u.range.key = empty.p;
        return LATCH_EINVAL;
    case 3:
        s[q->success_count] = put_op(&k, "x", 0);
        s[q->success_count++].u.put.ignore_value = true;
        return LATCH_EINVAL;
    case 4:
        s[q->success_count] = put_op(&k, "", 1 + (int64_t)rn(t, 50));
        s[q->success_count++].u.put.ignore_lease = true;
        return LATCH_EINVAL;
    case 5:
        s[q->success_count++] = put_op(&k, "1", 0);
        s[q->success_count++] = put_op(&k, "2", 0);
        return LATCH_EDUPKEY;
    case 6:
        f[q->failure_count++] = put_op(&k, "1", 0);
        f[q->failure_count] = (struct store_op){.type = STORE_OP_DELETE};
        f[q->failure_count].u.del.key = k.p;
        f[q->failure_count++].u.del.key_len = k.len;
        return LATCH_EDUPKEY;
    case 7: {
        struct store_txn_req *in = galloc(t, sizeof(*in));
        struct store_op *ins = galloc(t, sizeof(*ins));
        *ins = put_op(&k, "2", 0);
        in->success = ins, in->success_count = 1;
        s[q->success_count++] = put_op(&k, "1", 0);
        s[q->success_count] = (struct store_op){.type = STORE_OP_TXN};
        s[q->success_count++].u.txn = in;
        return LATCH_EDUPKEY;
    }
    case 8: {
        size_t n = STORE_TXN_OPS_MAX + 1;
        struct store_op *many = galloc(t, n * sizeof(*many));
        for (size_t i = 0; i < n; i++) {
            many[i] = (struct store_op){.type = STORE_OP_RANGE};
            many[i].u.range.key = k.p;
            many[i].u.range.key_len = k.len;
        }
        q->success = many, q->success_count = n;
        return LATCH_ETOOMANYOPS;
    }
    default:
        return inject_too_big(t, q, &k);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Operations                                                                           */
/* ------------------------------------------------------------------------------------ */

static void op_put(struct mt *t)
{
    struct store_op *op = galloc(t, 2 * sizeof(*op));
    struct store_txn_req q = {.success = op, .success_count = 1};

    op->type = STORE_OP_PUT;
    gen_put(t, &op->u.put);
    run_txn(t, &q, 0);
}

static void op_delete(struct mt *t)
{
    struct store_op *op = galloc(t, sizeof(*op));
    struct store_txn_req q = {.success = op, .success_count = 1};

    op->type = STORE_OP_DELETE;
    gen_delete(t, &op->u.del);
    run_txn(t, &q, 0);
}

static void op_txn(struct mt *t)
{
    struct store_txn_req *q = gen_txn(t, 0);
    int defect = 0;

    make_valid_branch((struct store_op *)q->success, q->success_count);
    make_valid_branch((struct store_op *)q->failure, q->failure_count);
    if (!t->m.nospace && chance(t, 6)) {
        defect = inject_defect(t, q);
    }
    run_txn(t, q, defect);
}

static void op_range(struct mt *t)
{
    struct store_range_req q;

    gen_range_req(t, &q);
    if (chance(t, 2)) {
        q.key = (const uint8_t *)"";
        q.key_len = 0;
    }
    d_range(t, &q);
    chk_range_req(t, "range", &q);
}

static void op_compact(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    struct store_result res;
    uint32_t r = rn(t, 100);
    int64_t rev;

    if (r < 65 && m->rev > m->compact) {
        rev = m->rev -
              (int64_t)rn(t, (uint32_t)(m->rev - m->compact < 120 ? m->rev - m->compact : 120));
    } else if (r < 82) {
        rev = m->compact - (int64_t)rn(t, (uint32_t)(m->compact < 5 ? m->compact + 1 : 5));
    } else {
        rev = m->rev + 1 + (int64_t)rn(t, 3);
    }
    c.u.compact.revision = rev;
    dsc(t, "compact(%lld)", (long long)rev);
    apply(t, &c, &res);
    int exp = rev <= m->compact ? LATCH_ECOMPACTED : rev > m->rev ? LATCH_EFUTUREREV : 0;
    if (!chk_res(t, "compact", &res, STORE_CMD_COMPACT, exp)) {
        return;
    }
    if (exp == 0) {
        m->compact = rev;
        ck_i64(t, "compact", "compact_revision", res.u.compact.compact_revision, rev);
    }
    ck_i64(t, "compact", "result revision", res.revision, m->rev);
}

static void op_lease_revoke(struct mt *t);

static void op_lease_grant(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    uint32_t r = rn(t, 100);

    if (m->nlease >= LEASES_SOFT_MAX) {
        op_lease_revoke(t);
        return;
    }
    c.u.lease_grant.id = r < 50   ? 0
                         : r < 62 ? some_lease(t)
                         : r < 80 ? 1 + (int64_t)rn(t, 80)
                                  : m->lease_next + (int64_t)rn(t, 3);
    c.u.lease_grant.ttl = 1 + (int64_t)rn(t, 1000);
    dsc(t, "lease_grant(id %lld, ttl %lld)", (long long)c.u.lease_grant.id,
        (long long)c.u.lease_grant.ttl);
    apply(t, &c, &res);
    int64_t id = c.u.lease_grant.id;
    int exp = m->nospace ? LATCH_ENOSPACE : id != 0 && m_lease_find(m, id) >= 0 ? LATCH_EEXIST : 0;
    if (!chk_res(t, "lease_grant", &res, STORE_CMD_LEASE_GRANT, exp)) {
        return;
    }
    if (exp == 0) {
        if (id == 0) { /* E5 */
            id = m->lease_next;
            while (m_lease_find(m, id) >= 0) {
                id++;
            }
            m->lease_next = id + 1;
        }
        m_lease_add(m, id, c.u.lease_grant.ttl);
        if (!ck_i64(t, "lease_grant", "id", res.u.lease_grant.id, id) ||
            !ck_i64(t, "lease_grant", "ttl", res.u.lease_grant.ttl, c.u.lease_grant.ttl)) {
            return;
        }
    }
    ck_i64(t, "lease_grant", "result revision", res.revision, m->rev);
}

static void op_lease_revoke(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    struct store_result res;
    int64_t n = 0;

    c.u.lease_revoke.id = chance(t, 80) && m->nlease ? some_lease(t) : missing_lease(t);
    int64_t id = c.u.lease_revoke.id;
    dsc(t, "lease_revoke(%lld)", (long long)id);
    apply(t, &c, &res);
    int exp = m_lease_find(m, id) < 0 ? LATCH_ENOTFOUND : 0;
    if (!chk_res(t, "lease_revoke", &res, STORE_CMD_LEASE_REVOKE, exp)) {
        return;
    }
    if (exp == 0) {
        for (int k = 0; k < NK; k++) { /* L1 */
            if (m->kv[k].live && m->kv[k].lease == id) {
                m_del(m, k);
                n++;
            }
        }
        m_lease_remove(m, id);
        m_end_cmd(m);
        if (!ck_i64(t, "lease_revoke", "deleted", res.u.lease_revoke.deleted, n)) {
            return;
        }
    }
    ck_i64(t, "lease_revoke", "result revision", res.revision, m->rev);
}

static void op_lease_checkpoint(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_LEASE_CHECKPOINT};
    struct store_lease_checkpoint items[3];
    struct store_result res;
    size_t n = 0;

    if (m->nlease == 0) {
        op_lease_grant(t);
        return;
    }
    size_t want = 1 + rn(t, 3);
    size_t start = rn(t, (uint32_t)m->nlease);
    for (size_t i = 0; i < want && i < m->nlease; i++) {
        const struct mlease *l = &m->lease[(start + i) % m->nlease];
        items[n++] = (struct store_lease_checkpoint){l->id, (int64_t)rn(t, (uint32_t)l->ttl + 1)};
        dsc(t, "%s%lld=%lld", n == 1 ? "lease_checkpoint(" : ", ", (long long)l->id,
            (long long)items[n - 1].remaining_ttl);
    }
    dsc(t, ")");
    c.u.lease_checkpoint.items = items;
    c.u.lease_checkpoint.count = n;
    apply(t, &c, &res);
    if (!chk_res(t, "lease_checkpoint", &res, STORE_CMD_LEASE_CHECKPOINT, 0)) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        m->lease[m_lease_find(m, items[i].id)].remaining = items[i].remaining_ttl;
    }
    ck_i64(t, "lease_checkpoint", "result revision", res.revision, m->rev);
}

static void op_lease_read(struct mt *t)
{
    const struct model *m = &t->m;

    if (chance(t, 50)) {
        int64_t id = chance(t, 80) && m->nlease ? some_lease(t) : missing_lease(t);
        bool with_keys = chance(t, 70);
        dsc(t, "lease_get(%lld, keys=%d)", (long long)id, with_keys);
        chk_lease_get(t, id, with_keys);
        return;
    }
    int64_t after = chance(t, 40) ? 0 : some_lease(t) - (int64_t)rn(t, 2);
    size_t max = chance(t, 30) ? 1000 : 1 + rn(t, 5);
    dsc(t, "lease_list(after %lld, max %zu)", (long long)after, max);
    chk_lease_list(t, after, max);
}

static void op_alarm(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    struct store_result res;
    bool on = m->nospace ? chance(t, 20) : chance(t, 10); /* on about 10% of the time */

    c.u.alarm.action = on ? STORE_ALARM_ACTIVATE : STORE_ALARM_DEACTIVATE;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    dsc(t, "alarm(%s NOSPACE)", on ? "activate" : "deactivate");
    apply(t, &c, &res);
    if (!chk_res(t, "alarm", &res, STORE_CMD_ALARM, 0)) {
        return;
    }
    m->nospace = on;
    ck_i64(t, "alarm", "result revision", res.revision, m->rev);
}

/* T3 */
static int m_tree_create_err(const struct model *m, int k, const struct store_cmd *c, bool valid)
{
    if (m->nospace) {
        return LATCH_ENOSPACE;
    }
    if (!valid) {
        return LATCH_EINVAL;
    }
    if (m->kv[k].live) {
        return LATCH_EEXIST;
    }
    if (c->u.tree_create.lease != 0 && m_lease_find(m, c->u.tree_create.lease) < 0) {
        return LATCH_ENOTFOUND;
    }
    if (!m_node_exists(m, parent_of[k]) && !c->u.tree_create.make_parents) {
        return LATCH_ENOTFOUND;
    }
    return 0;
}

static void op_tree_create(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_TREE_CREATE};
    struct store_result res;
    int k = pick_path_pref(t, false, 60);
    bool valid = m->nospace || !chance(t, 4);
    uint32_t r = rn(t, 100);
    struct bkey path = valid ? keys[k] : bad_paths[rn(t, COUNT(bad_paths))];

    c.u.tree_create.path = path.p;
    c.u.tree_create.path_len = path.len;
    gen_value(t, &c.u.tree_create.value, &c.u.tree_create.value_len);
    c.u.tree_create.lease = r < 60 ? 0 : r < 90 || m->kv[k].live ? some_lease(t) : missing_lease(t);
    c.u.tree_create.make_parents = chance(t, 50);
    dsc(t, "tree_create(%s=%s lease %lld%s)", kfmt(path.p, path.len),
        kfmt(c.u.tree_create.value, c.u.tree_create.value_len), (long long)c.u.tree_create.lease,
        c.u.tree_create.make_parents ? " make_parents" : "");
    apply(t, &c, &res);
    int exp = m_tree_create_err(m, k, &c, valid);
    if (!chk_res(t, "tree_create", &res, STORE_CMD_TREE_CREATE, exp)) {
        return;
    }
    if (exp == 0) {
        int chain[NK];
        int n = 0;
        int64_t made = 0;
        for (int p = parent_of[k]; p != ROOT && c.u.tree_create.make_parents; p = parent_of[p]) {
            chain[n++] = p;
        }
        while (n-- > 0) {
            if (!m->kv[chain[n]].live) {
                m_put(m, chain[n], NULL, 0, 0);
                made++;
            }
        }
        m_put(m, k, c.u.tree_create.value, c.u.tree_create.value_len, c.u.tree_create.lease);
        m_end_cmd(m);
        if (!ck_i64(t, "tree_create", "created_revision", res.u.tree_create.created_revision,
                    m->rev) ||
            !ck_i64(t, "tree_create", "parents_created", res.u.tree_create.parents_created, made)) {
            return;
        }
    }
    ck_i64(t, "tree_create", "result revision", res.revision, m->rev);
}

static bool has_path_prefix(int k, const struct bkey *p)
{
    return keys[k].len > p->len + 1 && memcmp(keys[k].p, p->p, p->len) == 0 &&
           keys[k].p[p->len] == '/';
}

static void op_tree_delete(struct mt *t)
{
    struct model *m = &t->m;
    struct store_cmd c = {.type = STORE_CMD_TREE_DELETE};
    struct store_result res;
    int k = pick_path_pref(t, true, 70);
    bool valid = !chance(t, 3);
    struct bkey path = valid ? keys[k] : bad_paths[rn(t, COUNT(bad_paths))];
    uint32_t r = rn(t, 100);
    int64_t ver = m->kv[k].ver;

    c.u.tree_delete.path = path.p;
    c.u.tree_delete.path_len = path.len;
    c.u.tree_delete.recursive = chance(t, 50);
    c.u.tree_delete.expected_version = r < 60   ? 0
                                       : r < 85 ? (ver ? ver : 1 + (int64_t)rn(t, 3))
                                                : ver + 1 + (int64_t)rn(t, 2);
    dsc(t, "tree_delete(%s%s expected_version %lld)", kfmt(path.p, path.len),
        c.u.tree_delete.recursive ? " recursive" : "", (long long)c.u.tree_delete.expected_version);
    apply(t, &c, &res);
    int64_t ev = c.u.tree_delete.expected_version;
    int exp = !valid                                                ? LATCH_EINVAL
              : !m->kv[k].live                                      ? LATCH_ENOTFOUND
              : ev != 0 && ev != ver                                ? LATCH_EBADVERSION
              : !c.u.tree_delete.recursive && m_nchildren(m, k) > 0 ? LATCH_ENOTEMPTY
                                                                    : 0;
    if (!chk_res(t, "tree_delete", &res, STORE_CMD_TREE_DELETE, exp)) {
        return;
    }
    if (exp == 0) {
        int64_t n = 0;
        for (int j = 0; j < NK; j++) { /* T4: key order */
            if (m->kv[j].live &&
                (j == k || (c.u.tree_delete.recursive && has_path_prefix(j, &keys[k])))) {
                m_del(m, j);
                n++;
            }
        }
        m_end_cmd(m);
        if (!ck_i64(t, "tree_delete", "deleted", res.u.tree_delete.deleted, n)) {
            return;
        }
    }
    ck_i64(t, "tree_delete", "result revision", res.revision, m->rev);
}

static void op_tree_read(struct mt *t)
{
    int p = chance(t, 12) ? ROOT : pick_path(t);
    const uint8_t *path;
    uint32_t plen;

    node_path(p, &path, &plen);
    if (chance(t, 35)) {
        dsc(t, "stat(%s)", kfmt(path, plen));
        chk_stat(t, p);
        return;
    }
    size_t limit = chance(t, 40) ? 0 : 1 + rn(t, 4);
    if (chance(t, 30)) {
        dsc(t, "children(%s) all, pages of %zu", kfmt(path, plen), limit);
        chk_children_all(t, p, limit);
        return;
    }
    struct bkey after = {NULL, 0};
    if (chance(t, 50)) {
        int k = pick_key(t);
        if (parent_of[k] == p) {
            after = (struct bkey){keys[k].p + name_off(p), keys[k].len - name_off(p)};
        } else {
            after = prefix_src[rn(t, COUNT(prefix_src))];
        }
    }
    int last;
    bool more;
    dsc(t, "children(%s after %s limit %zu)", kfmt(path, plen),
        after.p ? kfmt(after.p, after.len) : "-", limit);
    chk_children(t, p, after.p, after.len, limit, &last, &more);
}

static void op_history(struct mt *t)
{
    const struct model *m = &t->m;
    struct store_history_req q = {.max_bytes = SIZE_MAX};
    int64_t lo = m->compact > 1 ? m->compact : 1;
    uint32_t r = rn(t, 100);

    q.start_revision = r < 10   ? m->rev + 1
                       : r < 60 ? rrange(t, m->rev - 20 > lo ? m->rev - 20 : lo, m->rev)
                       : r < 70 ? lo
                       : r < 92 ? rrange(t, lo, m->rev)
                       : r < 97 && m->compact > 1   ? rrange(t, 1, m->compact - 1)
                       : m->compact == 0 && r >= 98 ? 0
                                                    : lo;
    if (chance(t, 60)) {
        gen_bounds(t, true, &q.key, &q.key_len, &q.range_end, &q.range_end_len);
    }
    q.prev_kv = chance(t, 40);
    q.max_events = chance(t, 70) ? 1 + rn(t, 8) : 1000;
    if (!q.prev_kv && chance(t, 30)) {
        q.max_bytes = 1 + rn(t, 60);
    }
    if (q.start_revision >= 1 && m->nev - ev_first(m, q.start_revision) > 2000) {
        q.max_events = 500, q.max_bytes = SIZE_MAX; /* bound the number of calls */
    }
    dsc(t, "history(from %lld ", (long long)q.start_revision);
    d_bounds(t, q.key, q.key_len, q.range_end, q.range_end_len);
    dsc(t, "%s max_events %zu max_bytes %zu)", q.prev_kv ? " prev_kv" : "", q.max_events,
        q.max_bytes);
    chk_history(t, &q);
}

static void op_reopen(struct mt *t)
{
    dsc(t, "reopen");
    fx_reopen(&t->f);
    full_check(t);
}

/* One random operation, then the status. */
static void step(struct mt *t)
{
    static const struct {
        void (*fn)(struct mt *t);
        uint32_t weight;
    } ops[] = {
        {op_put, 200},       {op_delete, 60},      {op_range, 150},       {op_txn, 150},
        {op_compact, 20},    {op_lease_grant, 35}, {op_lease_revoke, 30}, {op_lease_checkpoint, 15},
        {op_lease_read, 30}, {op_tree_create, 70}, {op_tree_delete, 40},  {op_tree_read, 80},
        {op_history, 60},    {op_alarm, 8},        {op_reopen, 1},
    };
    uint32_t total = 0;

    for (size_t i = 0; i < COUNT(ops); i++) {
        total += ops[i].weight;
    }
    latch_arena_reset(&t->gen);
    t->dlen = 0;
    t->desc[0] = '\0';
    uint32_t r = rn(t, total);
    size_t i = 0;
    while (r >= ops[i].weight) {
        r -= ops[i++].weight;
    }
    ops[i].fn(t);
    if (t->trace) {
        printf("op %lu rev %lld: %s\n", t->op, (long long)t->m.rev, t->desc);
    }
    chk_status(t);
    t->live_sum += (unsigned long)m_keys_count(&t->m);
    if ((t->op + 1) % FULL_CHECK_EVERY == 0) {
        snprintf(t->desc + t->dlen, sizeof(t->desc) - t->dlen, " [then full check]");
        full_check(t);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Tests                                                                                */
/* ------------------------------------------------------------------------------------ */

static unsigned long long env_ull(const char *name, unsigned long long def)
{
    const char *s = getenv(name);
    char *end = NULL;

    if (s == NULL || *s == '\0') {
        return def;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (end == NULL || *end != '\0') {
        fail_msg("%s=%s is not a number", name, s);
    }
    return v;
}

static void mt_begin(struct mt *t, uint64_t seed)
{
    t->seed = seed;
    t->rng = seed;
    t->op = 0;
    model_init(&t->m);
}

static int mt_setup(void **state)
{
    struct mt *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return -1;
    }
    keyspace_init();
    fx_setup(&t->f);
    latch_arena_init(&t->gen, 0);
    latch_arena_init(&t->ra, 0);
    t->bigval = calloc(1, STORE_VALUE_BYTES_MAX + 1);
    memset(t->bigkey, 'k', sizeof(t->bigkey));
    t->trace = env_ull("LATCH_MODEL_TRACE", 0) != 0;
    mt_begin(t, 1);
    *state = t;
    return t->bigval == NULL ? -1 : 0;
}

static int mt_teardown(void **state)
{
    struct mt *t = *state;

    fx_teardown(&t->f);
    latch_arena_close(&t->gen);
    latch_arena_close(&t->ra);
    model_free(&t->m);
    free(t->bigval);
    free(t);
    return 0;
}

static void run_ops(struct mt *t, unsigned long nops)
{
    full_check(t);
    for (t->op = 0; t->op < nops; t->op++) {
        step(t);
    }
    t->dlen = 0;
    snprintf(t->desc, sizeof(t->desc), "final full check and reopen");
    full_check(t);
    fx_reopen(&t->f);
    full_check(t);
}

static void test_model_store_matches_model_over_random_ops(void **state)
{
    struct mt *t = *state;
    uint64_t seed = env_ull("LATCH_MODEL_SEED", 1);
    unsigned long nops = (unsigned long)env_ull("LATCH_MODEL_OPS", MODEL_DEFAULT_OPS);

    printf("test_model: LATCH_MODEL_SEED=%llu LATCH_MODEL_OPS=%lu\n", (unsigned long long)seed,
           nops);
    fflush(stdout);
    mt_begin(t, seed);
    run_ops(t, nops);
    printf("test_model: %lu ops, revision %lld, compacted at %lld, %zu events, %lld keys, "
           "%zu leases (%lu live keys on average); %lu commands (%lu under NOSPACE), outcomes:",
           nops, (long long)t->m.rev, (long long)t->m.compact, t->m.nev,
           (long long)m_keys_count(&t->m), t->m.nlease, nops ? t->live_sum / nops : 0, t->cmds,
           t->nospace_ops);
    for (int e = 0; e < 32; e++) {
        if (t->errs[e] > 0) {
            printf(" %s %lu", e == 0 ? "ok" : latch_error_name(-e), t->errs[e]);
        }
    }
    printf("\n");
}

/* Fresh stores under a few other seeds: early-life states (lease ids colliding with
 * lease_next, compaction at 0, empty history) come up more often. */
static void test_model_store_matches_model_on_fresh_stores_of_other_seeds(void **state)
{
    struct mt *t = *state;
    uint64_t base = env_ull("LATCH_MODEL_SEED", 1);

    for (uint64_t s = 1; s <= 4; s++) {
        fx_teardown(&t->f);
        fx_setup(&t->f);
        model_free(&t->m);
        mt_begin(t, base * 1000003u + s);
        run_ops(t, 2500);
    }
}

/* Tampers with the model in one way, runs check, and requires it to report a mismatch. */
static void expect_caught(struct mt *t, const char *how, bool (*check)(struct mt *t))
{
    t->soft = true;
    t->mismatched = false;
    bool ok = check(t);
    t->soft = false;
    if (ok || !t->mismatched) {
        fail_msg("comparators missed a wrong answer: %s", how);
    }
}

static bool check_all(struct mt *t)
{
    return full_check(t);
}

static int live_path(const struct model *m)
{
    for (int i = 0; i < npaths; i++) {
        if (m->kv[paths[i]].live) {
            return paths[i];
        }
    }
    return -1;
}

/* The comparison code catches wrong answers: each tampering of the model must be reported
 * by the checks (as if the store had answered it), and the restored model must agree again. */
static void test_model_comparators_catch_a_wrong_answer(void **state)
{
    struct mt *t = *state;
    struct model *m = &t->m;

    mt_begin(t, 7);
    run_ops(t, 1500);
    int k = live_path(m);
    assert_true(k >= 0 && m->nev > 0);
    struct mkv kv = m->kv[k];
    struct mtree tr = m->tree[ROOT];
    struct mev ev = m->ev[m->nev - 1];

    m->kv[k].ver++;
    expect_caught(t, "version of a live key", check_all);
    m->kv[k] = kv;
    m->kv[k].vlen = kv.vlen < VMAX ? kv.vlen + 1 : kv.vlen - 1;
    expect_caught(t, "value of a live key", check_all);
    m->kv[k] = kv;
    m->tree[ROOT].cver++;
    expect_caught(t, "cversion of /", check_all);
    m->tree[ROOT] = tr;
    if (m->nlease > 0) {
        m->lease[0].remaining++;
        expect_caught(t, "remaining_ttl of a lease", check_all);
        m->lease[0].remaining--;
    }
    m->ev[m->nev - 1].type = STORE_EVENT_PUT;
    m->ev[m->nev - 1].kv.create += 1000;
    expect_caught(t, "the newest event", check_all);
    m->ev[m->nev - 1] = ev;
    m->rev++;
    expect_caught(t, "store revision", chk_status);
    m->rev--;
    assert_true(full_check(t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model_store_matches_model_over_random_ops, mt_setup,
                                        mt_teardown),
        cmocka_unit_test_setup_teardown(
            test_model_store_matches_model_on_fresh_stores_of_other_seeds, mt_setup, mt_teardown),
        cmocka_unit_test_setup_teardown(test_model_comparators_catch_a_wrong_answer, mt_setup,
                                        mt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
