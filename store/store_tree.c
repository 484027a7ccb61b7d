/*
 * store_tree.c — the hierarchy over the flat keyspace (DESIGN §2, store.h "Hierarchy").
 *
 * A key that starts with '/' is a path; its parent is the part before its last '/' ("/"
 * for "/a"). The tree DB keeps, per parent, num_children, cversion and children_rev
 * (STORE__TREE_BYTES, le64 each), updated by the hooks store__kv_put and
 * store__kv_delete_key call, so every write API keeps them (I7):
 *
 *   tree[p].num_children == the number of existing keys whose parent is p, and a record
 *   exists only while num_children > 0 or p exists as a key (the root "/" always exists,
 *   so its record, once made, stays). A missing record reads as zeros, so a childless key
 *   needs none (no extra write on the put path); a record with no children is dropped
 *   when its key is deleted, so a re-created node starts at cversion 0.
 *
 * One corner needs a rule of its own: the root's children are keys "/name", so a key
 * "//x" (an empty first segment; only the etcd API can write it) is nobody's child. It
 * would otherwise count under "/" while no scan of "/" could list it.
 *
 * Children are found by skip-scan of kv: from P + "/", a key P/name is a child; a key
 * P/name/... is below the child "name", whose whole subtree is skipped by seeking to
 * P/name + '0' ('0' is the byte after '/'). Listing costs O((children + implicit
 * intermediate nodes) * log n), never the size of the subtrees.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

struct tree_rec {
    int64_t num_children;
    int64_t cversion;
    int64_t children_rev;
};

/* Cursor positions the calling thread's last store_children visited (tests check that the
 * skip-scan's cost follows the number of children, not the size of their subtrees). */
static _Thread_local uint64_t tree_scan_steps;

uint64_t store__tree_last_scan_steps(void)
{
    return tree_scan_steps;
}

bool store_path_valid(const uint8_t *path, uint32_t path_len)
{
    if (path == NULL || path_len == 0 || path_len > STORE_KEY_BYTES_MAX || path[0] != '/') {
        return false;
    }
    if (path_len == 1) {
        return true; /* the root */
    }
    uint32_t seg = 1; /* start of the current segment */
    for (uint32_t i = 1; i <= path_len; i++) {
        if (i < path_len && path[i] == '\0') {
            return false;
        }
        if (i < path_len && path[i] != '/') {
            continue;
        }
        uint32_t n = i - seg; /* an empty one also catches "//" and a trailing '/' */
        if (n == 0 || (n == 1 && path[seg] == '.') ||
            (n == 2 && path[seg] == '.' && path[seg + 1] == '.')) {
            return false;
        }
        seg = i + 1;
    }
    return true;
}

/* The length of key's parent (the parent is key[0..*parent_len)); false when key has
 * none: not a path, the root itself, or a key "//..." (see the file comment). */
static bool tree_parent(const uint8_t *key, uint32_t key_len, uint32_t *parent_len)
{
    if (key_len < 2 || key[0] != '/') {
        return false;
    }
    uint32_t i = key_len - 1;
    while (key[i] != '/') {
        i--; /* stops at 0 at the latest: key[0] == '/' */
    }
    if (i == 1) {
        return false;
    }
    *parent_len = i == 0 ? 1 : i;
    LATCH_ASSERT(*parent_len < key_len);
    return true;
}

/* tree[p] into out; zeros and LATCH_ENOTFOUND when absent. */
static int
tree_get(struct store *s, MDB_txn *txn, const uint8_t *p, uint32_t len, struct tree_rec *out)
{
    MDB_val k = {.mv_size = len, .mv_data = (void *)p};
    MDB_val v;

    LATCH_ASSERT(len > 0 && len <= STORE_KEY_BYTES_MAX);
    *out = (struct tree_rec){0, 0, 0};
    int rc = mdb_get(txn, s->tree, &k, &v);
    if (rc != 0) {
        return store__mdb_err(rc);
    }
    if (v.mv_size != STORE__TREE_BYTES) {
        return LATCH_ECORRUPT;
    }
    const uint8_t *b = v.mv_data;
    out->num_children = (int64_t)store__get_le64(b);
    out->cversion = (int64_t)store__get_le64(b + 8);
    out->children_rev = (int64_t)store__get_le64(b + 16);
    LATCH_ASSERTF(out->num_children >= 0, "num_children %lld", (long long)out->num_children);
    return 0;
}

static int tree_put(struct store__w *w, const uint8_t *p, uint32_t len, const struct tree_rec *r)
{
    uint8_t buf[STORE__TREE_BYTES];
    MDB_val k = {.mv_size = len, .mv_data = (void *)p};
    MDB_val v = {.mv_size = sizeof(buf), .mv_data = buf};

    LATCH_ASSERT(len > 0 && len <= STORE_KEY_BYTES_MAX);
    LATCH_ASSERTF(r->num_children >= 0, "num_children %lld", (long long)r->num_children);
    store__put_le64(buf, (uint64_t)r->num_children);
    store__put_le64(buf + 8, (uint64_t)r->cversion);
    store__put_le64(buf + 16, (uint64_t)r->children_rev);
    return store__mdb_err(mdb_put(w->txn, w->s->tree, &k, &v, 0));
}

static int tree_del(struct store__w *w, const uint8_t *p, uint32_t len)
{
    MDB_val k = {.mv_size = len, .mv_data = (void *)p};

    LATCH_ASSERT(len > 0 && len <= STORE_KEY_BYTES_MAX);
    int rc = mdb_del(w->txn, w->s->tree, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

/* 0 when key exists in kv, LATCH_ENOTFOUND when not (no decoding: existence only). */
static int tree_key_exists(struct store *s, MDB_txn *txn, const uint8_t *key, uint32_t len)
{
    MDB_val k = {.mv_size = len, .mv_data = (void *)key};
    MDB_val v;

    LATCH_ASSERT(s != NULL);
    LATCH_ASSERT(len > 0 && len <= STORE_KEY_BYTES_MAX);
    return store__mdb_err(mdb_get(txn, s->kv, &k, &v));
}

/*
 * key was just created. Its parent gains a child. A record key already had (children
 * created while key did not exist, which only the etcd API can do) restarts its cversion:
 * cversion counts child changes since the node was created.
 */
int store__tree_on_create(struct store__w *w, const uint8_t *key, uint32_t key_len)
{
    uint32_t plen;
    struct tree_rec r;

    if (key_len < 2 || key[0] != '/') {
        return 0; /* not a path: the put hot path pays one comparison */
    }
    LATCH_ASSERT(w != NULL);
    int rc = tree_get(w->s, w->txn, key, key_len, &r);
    if (rc == 0 && r.cversion != 0) {
        r.cversion = 0;
        rc = tree_put(w, key, key_len, &r);
    }
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    if (!tree_parent(key, key_len, &plen)) {
        return 0;
    }
    rc = tree_get(w->s, w->txn, key, plen, &r);
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    r.num_children++;
    r.cversion++;
    r.children_rev = store__w_rev(w);
    return tree_put(w, key, plen, &r);
}

/*
 * key was (or is being) deleted. Its own record goes when it has no children; its parent
 * loses a child, and the parent's record goes with its last child unless the parent exists.
 */
int store__tree_on_delete(struct store__w *w, const uint8_t *key, uint32_t key_len)
{
    uint32_t plen;
    struct tree_rec r;

    if (key_len < 2 || key[0] != '/') {
        return 0;
    }
    LATCH_ASSERT(w != NULL);
    int rc = tree_get(w->s, w->txn, key, key_len, &r);
    if (rc == 0 && r.num_children == 0) {
        rc = tree_del(w, key, key_len);
    }
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    if (!tree_parent(key, key_len, &plen)) {
        return 0;
    }
    rc = tree_get(w->s, w->txn, key, plen, &r);
    if (rc != 0 || r.num_children < 1) {
        return rc == 0 || rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc; /* I7 broken */
    }
    r.num_children--;
    r.cversion++;
    r.children_rev = store__w_rev(w);
    if (r.num_children == 0 && plen > 1) { /* the root always exists: its record stays */
        rc = tree_key_exists(w->s, w->txn, key, plen);
        if (rc == LATCH_ENOTFOUND) {
            return tree_del(w, key, plen);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return tree_put(w, key, plen, &r);
}

/* ---------------------------------------------------------------------------------- */
/* STORE_CMD_TREE_CREATE and STORE_CMD_TREE_DELETE                                    */
/* ---------------------------------------------------------------------------------- */

static int tree_put_key(struct store__w *w,
                        const uint8_t *key,
                        uint32_t key_len,
                        const uint8_t *value,
                        uint32_t value_len,
                        int64_t lease)
{
    struct store_put_req q = {
        .key = key,
        .value = value,
        .key_len = key_len,
        .value_len = value_len,
        .lease = lease,
    };

    LATCH_ASSERT(key_len > 1 && key[0] == '/');
    LATCH_ASSERT(value != NULL || value_len == 0);
    return store__kv_put(w, &q, NULL);
}

/*
 * Checks that the parent of path (valid, not the root) exists, or with make_parents
 * creates the missing ancestors top-down with empty values and no lease, so each one's
 * creation counts under its own parent.
 */
static int
tree_parents(struct store__w *w, const uint8_t *path, uint32_t len, bool make, int64_t *created)
{
    uint32_t plen;

    LATCH_ASSERT(created != NULL);
    if (!tree_parent(path, len, &plen) || plen == 1) {
        return 0; /* the root always exists */
    }
    if (!make) {
        return tree_key_exists(w->s, w->txn, path, plen);
    }
    for (uint32_t i = 2; i <= plen; i++) {
        if (i < plen && path[i] != '/') {
            continue;
        }
        int rc = tree_key_exists(w->s, w->txn, path, i);
        if (rc == LATCH_ENOTFOUND) {
            rc = tree_put_key(w, path, i, (const uint8_t *)"", 0, 0);
            (*created)++;
        }
        if (rc != 0) {
            return rc;
        }
    }
    LATCH_ASSERT(*created >= 0);
    return 0;
}

int store__tree_create(struct store__w *w, const struct store_cmd *c, struct store_result *res)
{
    LATCH_ASSERT(w != NULL && c != NULL);
    LATCH_ASSERTF(c->type == STORE_CMD_TREE_CREATE, "cmd type %u", c->type);
    const uint8_t *path = c->u.tree_create.path;
    uint32_t len = c->u.tree_create.path_len;
    int64_t lease = c->u.tree_create.lease;
    int64_t created = 0;
    uint8_t seq_path[STORE_KEY_BYTES_MAX];

    if (c->u.tree_create.sequential) {
        char digits[24];
        int n = snprintf(digits, sizeof(digits), "%020" PRId64, store__w_rev(w));
        LATCH_ASSERT(n == 20);
        if (len > STORE_KEY_BYTES_MAX - 20u) {
            return LATCH_ETOOBIG;
        }
        memcpy(seq_path, path, len);
        memcpy(seq_path + len, digits, 20);
        path = seq_path;
        len += 20;
    }
    if (!store_path_valid(path, len) || len == 1) {
        return LATCH_EINVAL;
    }
    if (c->u.tree_create.value_len > STORE_VALUE_BYTES_MAX) {
        return LATCH_ETOOBIG;
    }
    if (w->alarm_nospace) {
        return LATCH_ENOSPACE;
    }
    int rc = tree_key_exists(w->s, w->txn, path, len);
    if (rc != LATCH_ENOTFOUND) {
        return rc == 0 ? LATCH_EEXIST : rc;
    }
    rc = lease != 0 ? store__lease_exists(w->s, w->txn, lease) : 0;
    if (rc == 0) {
        rc = tree_parents(w, path, len, c->u.tree_create.make_parents, &created);
    }
    if (rc == 0) {
        rc = tree_put_key(w, path, len, c->u.tree_create.value, c->u.tree_create.value_len, lease);
    }
    if (rc == 0 && res != NULL) {
        res->u.tree_create.created_revision = store__w_rev(w);
        res->u.tree_create.parents_created = created;
    }
    return rc;
}

/*
 * Deletes every key with prefix path + "/" in key order. Each step seeks again from the
 * key just deleted (a copy), so it does not matter what store__kv_delete_key did to the
 * cursor's pages. No recursion: the subtree is one contiguous key range.
 */
static int
tree_delete_subtree(struct store__w *w, const uint8_t *path, uint32_t len, int64_t *deleted)
{
    uint8_t buf[STORE_KEY_BYTES_MAX];
    uint32_t plen = len + 1;
    MDB_cursor *c;

    if (plen > STORE_KEY_BYTES_MAX) {
        return 0; /* no key can be longer than the prefix */
    }
    memcpy(buf, path, len);
    buf[len] = '/';
    int rc = store__mdb_err(mdb_cursor_open(w->txn, w->s->kv, &c));
    uint32_t cur_len = plen;
    while (rc == 0) {
        MDB_val k = {.mv_size = cur_len, .mv_data = buf};
        MDB_val v;
        rc = store__mdb_err(mdb_cursor_get(c, &k, &v, MDB_SET_RANGE));
        if (rc != 0 || k.mv_size < plen || memcmp(k.mv_data, buf, plen) != 0) {
            break;
        }
        LATCH_ASSERT(k.mv_size <= STORE_KEY_BYTES_MAX);
        memcpy(buf, k.mv_data, k.mv_size); /* keeps the prefix: the key starts with it */
        cur_len = (uint32_t)k.mv_size;
        rc = store__kv_delete_key(w, buf, cur_len, NULL);
        rc = rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc; /* it was just read from kv */
        (*deleted)++;
    }
    mdb_cursor_close(c);
    return rc == LATCH_ENOTFOUND ? 0 : rc;
}

int store__tree_delete(struct store__w *w, const struct store_cmd *c, struct store_result *res)
{
    LATCH_ASSERT(w != NULL && c != NULL);
    LATCH_ASSERTF(c->type == STORE_CMD_TREE_DELETE, "cmd type %u", c->type);
    const uint8_t *path = c->u.tree_delete.path;
    uint32_t len = c->u.tree_delete.path_len;
    struct store__kvrec kv;
    struct tree_rec tr;
    int64_t deleted = 0;

    if (!store_path_valid(path, len) || len == 1) {
        return LATCH_EINVAL;
    }
    int rc = store__kv_get(w->s, w->txn, path, len, &kv);
    if (rc != 0) {
        return rc;
    }
    int64_t expected = c->u.tree_delete.expected_version;
    if (expected != 0 && expected != kv.version) {
        return LATCH_EBADVERSION;
    }
    rc = tree_get(w->s, w->txn, path, len, &tr);
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    if (tr.num_children > 0 && !c->u.tree_delete.recursive) {
        return LATCH_ENOTEMPTY;
    }
    /* The node first, then its subtree: the events come out in key order. */
    rc = store__kv_delete_key(w, path, len, NULL);
    deleted = rc == 0 ? 1 : 0;
    if (rc == 0 && c->u.tree_delete.recursive) {
        rc = tree_delete_subtree(w, path, len, &deleted);
    }
    if (rc == 0 && res != NULL) {
        res->u.tree_delete.deleted = deleted;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* TREE_MULTI                                                                         */
/* ---------------------------------------------------------------------------------- */

/* SET: the node must exist and match expected_version; it keeps its lease. */
static int
tree_set(struct store__w *w, const struct store_tree_op *op, struct store_tree_op_result *r)
{
    struct store__kvrec kv;

    if (!store_path_valid(op->path, op->path_len) || op->path_len == 1) {
        return LATCH_EINVAL;
    }
    if (op->value_len > STORE_VALUE_BYTES_MAX) {
        return LATCH_ETOOBIG;
    }
    if (w->alarm_nospace) {
        return LATCH_ENOSPACE; /* as etcd refuses every put under the alarm */
    }
    int rc = store__kv_get(w->s, w->txn, op->path, op->path_len, &kv);
    if (rc != 0) {
        return rc;
    }
    if (op->expected_version != 0 && op->expected_version != kv.version) {
        return LATCH_EBADVERSION;
    }
    struct store_put_req q = {
        .key = op->path,
        .value = op->value != NULL ? op->value : (const uint8_t *)"",
        .key_len = op->path_len,
        .value_len = op->value_len,
        .ignore_lease = true,
    };
    rc = store__kv_put(w, &q, NULL);
    if (rc == 0) {
        r->version = kv.version + 1;
        r->create_revision = kv.create_rev;
        r->lease = kv.lease;
    }
    return rc;
}

static int tree_check(struct store__w *w, const struct store_tree_op *op)
{
    struct store__kvrec kv;

    if (!store_path_valid(op->path, op->path_len)) {
        return LATCH_EINVAL;
    }
    if (op->path_len == 1) { /* the root always exists, at version 0 */
        return op->absent ? LATCH_EEXIST : op->expected_version != 0 ? LATCH_EBADVERSION : 0;
    }
    int rc = store__kv_get(w->s, w->txn, op->path, op->path_len, &kv);
    if (op->absent) {
        return rc == 0 ? LATCH_EEXIST : rc == LATCH_ENOTFOUND ? 0 : rc;
    }
    if (rc == 0 && op->expected_version != 0 && op->expected_version != kv.version) {
        rc = LATCH_EBADVERSION;
    }
    return rc;
}

/* One op, through the single-node commands' own code where there is one. */
static int
tree_op_run(struct store__w *w, const struct store_tree_op *op, struct store_tree_op_result *r)
{
    struct store_cmd c;
    struct store_result res;
    int rc;

    memset(&c, 0, sizeof(c));
    memset(&res, 0, sizeof(res));
    switch (op->type) {
    case STORE_TREE_OP_CREATE:
        c.type = STORE_CMD_TREE_CREATE;
        c.u.tree_create.path = op->path;
        c.u.tree_create.path_len = op->path_len;
        c.u.tree_create.value = op->value != NULL ? op->value : (const uint8_t *)"";
        c.u.tree_create.value_len = op->value_len;
        c.u.tree_create.lease = op->lease;
        c.u.tree_create.make_parents = op->make_parents;
        c.u.tree_create.sequential = op->sequential;
        rc = store__tree_create(w, &c, &res);
        if (rc == 0) {
            r->created_revision = res.u.tree_create.created_revision;
            r->create_revision = res.u.tree_create.created_revision;
            r->version = 1;
            r->lease = op->lease;
        }
        return rc;
    case STORE_TREE_OP_SET:
        return tree_set(w, op, r);
    case STORE_TREE_OP_DELETE:
        c.type = STORE_CMD_TREE_DELETE;
        c.u.tree_delete.path = op->path;
        c.u.tree_delete.path_len = op->path_len;
        c.u.tree_delete.recursive = op->recursive;
        c.u.tree_delete.expected_version = op->expected_version;
        rc = store__tree_delete(w, &c, &res);
        if (rc == 0) {
            r->deleted = res.u.tree_delete.deleted;
        }
        return rc;
    case STORE_TREE_OP_CHECK:
        return tree_check(w, op);
    default:
        LATCH_ASSERTF(false, "decoded tree op of unknown type %u", op->type);
        return LATCH_EINVAL;
    }
}

int store__tree_multi(struct store__w *w, const struct store_cmd *c, struct store_result *res)
{
    LATCH_ASSERT(w != NULL && c != NULL && res != NULL);
    LATCH_ASSERTF(c->type == STORE_CMD_TREE_MULTI, "cmd type %u", c->type);
    size_t n = c->u.tree_multi.ops_count;

    res->u.tree_multi.failed_op = -1;
    if (n > STORE_TREE_OPS_MAX) {
        return LATCH_ETOOMANYOPS;
    }
    /* The guards pass the checks of a txn's compares (sizes, counts, FENCE's shape). */
    struct store_txn_req g = {.compares = c->u.tree_multi.guards,
                              .compares_count = c->u.tree_multi.guards_count};
    int vrc = store_txn_validate(&g, NULL, 0);
    if (vrc != 0) {
        return vrc;
    }
    for (size_t i = 0; i < c->u.tree_multi.guards_count; i++) {
        bool ok = false;
        int rc = store__compare_eval(w, &c->u.tree_multi.guards[i], &ok);
        if (rc != 0) {
            return rc;
        }
        if (!ok) {
            return LATCH_EFENCED;
        }
    }
    struct store_tree_op_result *r = n > 0 ? latch_arena_calloc(w->arena, n, sizeof(*r)) : NULL;
    if (n > 0 && r == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = tree_op_run(w, &c->u.tree_multi.ops[i], &r[i]);
        if (rc != 0) {
            res->u.tree_multi.failed_op = (int64_t)i;
            return rc;
        }
    }
    res->u.tree_multi.results = r;
    res->u.tree_multi.count = n;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Reads: stat and children                                                           */
/* ---------------------------------------------------------------------------------- */

/* Stat of the key (k, v) found in kv, with its tree counters. */
static int tree_stat_of(
    struct store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v, struct store_stat *out)
{
    struct store__kvrec kv;
    struct tree_rec tr;

    LATCH_ASSERT(k->mv_size > 0);
    int rc = store__kvrec_decode(v, &kv);
    if (rc != 0) {
        return rc;
    }
    rc = tree_get(s, txn, k->mv_data, (uint32_t)k->mv_size, &tr);
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    *out = (struct store_stat){
        .create_revision = kv.create_rev,
        .mod_revision = kv.mod_rev,
        .version = kv.version,
        .lease = kv.lease,
        .num_children = tr.num_children,
        .cversion = tr.cversion,
        .children_revision = tr.children_rev,
        .value_len = kv.value_len,
    };
    LATCH_ASSERT(out->num_children >= 0);
    return 0;
}

/* The root always exists: its own key's data when "/" was written (etcd API), else zeros. */
static int tree_stat_txn(
    struct store *s, MDB_txn *txn, const uint8_t *path, uint32_t len, struct store_stat *out)
{
    MDB_val k = {.mv_size = len, .mv_data = (void *)path};
    MDB_val v;
    struct tree_rec tr;

    int rc = store__mdb_err(mdb_get(txn, s->kv, &k, &v));
    if (rc == 0) {
        return tree_stat_of(s, txn, &k, &v, out);
    }
    if (rc != LATCH_ENOTFOUND || len != 1 || path[0] != '/') {
        return rc;
    }
    rc = tree_get(s, txn, path, len, &tr);
    if (rc != 0 && rc != LATCH_ENOTFOUND) {
        return rc;
    }
    *out = (struct store_stat){
        .num_children = tr.num_children,
        .cversion = tr.cversion,
        .children_revision = tr.children_rev,
    };
    LATCH_ASSERT(out->create_revision == 0);
    return 0;
}

int store_stat(struct store_reader *r,
               const uint8_t *path,
               uint32_t path_len,
               struct store_stat *out)
{
    MDB_txn *txn;

    LATCH_ASSERT(r != NULL && out != NULL);
    if (path == NULL || path_len == 0 || path_len > STORE_KEY_BYTES_MAX) {
        return LATCH_EINVAL;
    }
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = tree_stat_txn(r->s, txn, path, path_len, out);
    store__read_end(r);
    LATCH_ASSERT(rc <= 0);
    return rc;
}

/* The state of one store_children scan. */
struct tree_scan {
    struct store *s;
    MDB_txn *txn;
    MDB_cursor *cur;
    struct latch_arena *a;
    uint8_t seek[STORE_KEY_BYTES_MAX];
    uint32_t plen; /* seek[0..plen) is the prefix: P + "/", or "/" for the root */
    struct store_child *out;
    size_t count;
    size_t cap;
};

/* Appends the child (name, stat) to sc->out, growing it in the arena by doubling. */
static int tree_scan_add(struct tree_scan *sc, const MDB_val *k, const MDB_val *v)
{
    LATCH_ASSERT(k->mv_size > sc->plen || (k->mv_size == sc->plen && sc->plen > 1));
    if (sc->count == sc->cap) {
        size_t cap = sc->cap == 0 ? 16 : sc->cap * 2;
        struct store_child *n = latch_arena_alloc(sc->a, cap * sizeof(*n));
        if (n == NULL) {
            return LATCH_ENOMEM;
        }
        if (sc->count > 0) {
            memcpy(n, sc->out, sc->count * sizeof(*n));
        }
        sc->out = n;
        sc->cap = cap;
    }
    struct store_child *ch = &sc->out[sc->count];
    uint32_t name_len = (uint32_t)k->mv_size - sc->plen;
    ch->name = latch_arena_dup(sc->a, (const uint8_t *)k->mv_data + sc->plen, name_len);
    ch->name_len = name_len;
    if (ch->name == NULL) {
        return LATCH_ENOMEM;
    }
    sc->count++;
    LATCH_ASSERT(sc->count <= sc->cap);
    return tree_stat_of(sc->s, sc->txn, k, v, &ch->stat);
}

static int tree_name_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    return c != 0 ? c : (a_len > b_len) - (a_len < b_len);
}

/*
 * The skip-scan proper, from the position the caller's seek left in (k, v) with mrc.
 * Stops after limit children (0: none) and then looks for one more to set *more.
 */
static int tree_scan_run(struct tree_scan *sc,
                         MDB_val *k,
                         MDB_val *v,
                         int mrc,
                         const uint8_t *after,
                         uint32_t after_len,
                         size_t limit,
                         bool *more)
{
    int rc = 0;
    while (mrc == 0 && rc == 0) {
        tree_scan_steps++;
        const uint8_t *key = k->mv_data;
        if (k->mv_size < sc->plen || memcmp(key, sc->seek, sc->plen) != 0) {
            break; /* past the prefix: no more children */
        }
        const uint8_t *rest = key + sc->plen;
        uint32_t rest_len = (uint32_t)k->mv_size - sc->plen;
        const uint8_t *slash = memchr(rest, '/', rest_len);
        if (slash != NULL) {
            /* below child "name": seek to P/name + '0', past its whole subtree */
            uint32_t n = sc->plen + (uint32_t)(slash - rest);
            memcpy(sc->seek + sc->plen, rest, n - sc->plen);
            sc->seek[n] = '/' + 1;
            *k = (MDB_val){.mv_size = n + 1, .mv_data = sc->seek};
            mrc = mdb_cursor_get(sc->cur, k, v, MDB_SET_RANGE);
            continue;
        }
        bool skip = (rest_len == 0 && sc->plen == 1) || /* "/" itself is no child */
                    (after_len > 0 && tree_name_cmp(rest, rest_len, after, after_len) <= 0);
        if (!skip) {
            if (limit != 0 && sc->count == limit) {
                *more = true;
                break;
            }
            rc = tree_scan_add(sc, k, v);
        }
        mrc = mdb_cursor_get(sc->cur, k, v, MDB_NEXT);
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = store__mdb_err(mrc);
    }
    return rc;
}

static int tree_children_txn(struct tree_scan *sc,
                             const uint8_t *path,
                             uint32_t len,
                             const uint8_t *after,
                             uint32_t after_len,
                             size_t limit,
                             bool *more)
{
    bool root = len == 1 && path[0] == '/';
    MDB_val k;
    MDB_val v;

    if (!root) {
        int rc = tree_key_exists(sc->s, sc->txn, path, len);
        if (rc != 0 || len + 1 > STORE_KEY_BYTES_MAX) {
            return rc == LATCH_ENOTFOUND ? 0 : rc; /* missing, or no room for a child */
        }
    }
    memcpy(sc->seek, path, len);
    sc->plen = root ? 1 : len + 1;
    sc->seek[sc->plen - 1] = '/';
    /* Start at P/after (cut to the key limit: at most one key lies between the cut and
     * P/after, and the name comparison in the scan drops it). */
    uint32_t n = sc->plen + after_len;
    n = n > STORE_KEY_BYTES_MAX ? STORE_KEY_BYTES_MAX : n;
    if (n > sc->plen) {
        memcpy(sc->seek + sc->plen, after, n - sc->plen);
    }
    int rc = store__mdb_err(mdb_cursor_open(sc->txn, sc->s->kv, &sc->cur));
    if (rc != 0) {
        return rc;
    }
    k = (MDB_val){.mv_size = n, .mv_data = sc->seek};
    int mrc = mdb_cursor_get(sc->cur, &k, &v, MDB_SET_RANGE);
    rc = tree_scan_run(sc, &k, &v, mrc, after, after_len, limit, more);
    mdb_cursor_close(sc->cur);
    LATCH_ASSERT(limit == 0 || sc->count <= limit);
    return rc;
}

int store_children(struct store_reader *r,
                   const uint8_t *path,
                   uint32_t path_len,
                   const uint8_t *after,
                   uint32_t after_len,
                   size_t limit,
                   struct latch_arena *a,
                   struct store_child **out,
                   size_t *count_out,
                   bool *more)
{
    MDB_txn *txn;

    LATCH_ASSERT(r != NULL && a != NULL);
    LATCH_ASSERT(out != NULL && count_out != NULL && more != NULL);
    *out = NULL;
    *count_out = 0;
    *more = false;
    tree_scan_steps = 0;
    if (path == NULL || path_len == 0 || path_len > STORE_KEY_BYTES_MAX ||
        (after == NULL && after_len > 0)) {
        return LATCH_EINVAL;
    }
    int rc = store__read_begin(r, &txn);
    if (rc != 0) {
        return rc;
    }
    struct tree_scan sc = {.s = r->s, .txn = txn, .a = a};
    rc = tree_children_txn(&sc, path, path_len, after, after_len, limit, more);
    store__read_end(r);
    if (rc == 0) {
        *out = sc.out;
        *count_out = sc.count;
    }
    return rc;
}
