/*
 * test_tree.c — the hierarchy (store_tree.c; DESIGN §2, store.h "Hierarchy"): path rules,
 * tree create (make_parents, leases, refusals), tree delete (expected version, not-empty,
 * recursive in one revision), the counters num_children / cversion / children_revision
 * kept through every write API (I7, checked against the tree DB directly), stat, and
 * children by skip-scan with paging — whose cost follows the number of children, not the
 * size of their subtrees.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
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
#include "store_int.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

static int setup(void **state)
{
    static struct fx f;
    fx_setup(&f);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx_teardown(*state);
    return 0;
}

static int tcreate(struct fx *f,
                   const char *path,
                   const char *value,
                   int64_t lease,
                   bool parents,
                   struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_TREE_CREATE};
    c.u.tree_create.path = B(path);
    c.u.tree_create.path_len = L(path);
    c.u.tree_create.value = B(value);
    c.u.tree_create.value_len = L(value);
    c.u.tree_create.lease = lease;
    c.u.tree_create.make_parents = parents;
    return fx_apply(f, &c, res);
}

static int
tdelete(struct fx *f, const char *path, bool recursive, int64_t expected, struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_TREE_DELETE};
    c.u.tree_delete.path = B(path);
    c.u.tree_delete.path_len = L(path);
    c.u.tree_delete.recursive = recursive;
    c.u.tree_delete.expected_version = expected;
    return fx_apply(f, &c, res);
}

static int stat_of(struct fx *f, const char *path, struct store_stat *st)
{
    return store_stat(f->r, B(path), L(path), st);
}

static struct store_stat stat_ok(struct fx *f, const char *path)
{
    struct store_stat st;
    int rc = stat_of(f, path, &st);
    if (rc != 0) {
        fail_msg("stat %s: %s", path, latch_error_name(rc));
    }
    return st;
}

static void assert_counters(struct fx *f, const char *path, int64_t num, int64_t cversion)
{
    struct store_stat st = stat_ok(f, path);
    if (st.num_children != num || st.cversion != cversion) {
        fail_msg("%s: num_children %lld cversion %lld, want %lld %lld", path,
                 (long long)st.num_children, (long long)st.cversion, (long long)num,
                 (long long)cversion);
    }
}

/* Children names of path joined by ',' into buf (after: NULL for none). */
static size_t children(struct fx *f,
                       const char *path,
                       const char *after,
                       size_t limit,
                       char *buf,
                       size_t cap,
                       bool *more)
{
    struct store_child *ch = NULL;
    size_t n = 99;
    latch_arena_reset(&f->arena);
    int rc = store_children(f->r, B(path), L(path), after != NULL ? B(after) : NULL,
                            after != NULL ? L(after) : 0, limit, &f->arena, &ch, &n, more);
    assert_int_equal(rc, 0);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        assert_true(used + ch[i].name_len + 2 < cap);
        if (i > 0) {
            buf[used++] = ',';
        }
        memcpy(buf + used, ch[i].name, ch[i].name_len);
        used += ch[i].name_len;
        buf[used] = '\0';
    }
    return n;
}

static void assert_children(struct fx *f, const char *path, const char *want)
{
    char buf[1024];
    bool more = true;
    children(f, path, NULL, 0, buf, sizeof(buf), &more);
    assert_string_equal(buf, want);
    assert_false(more);
}

/* Puts count keys "<fmt with i>" in txns of up to 128 puts each. */
static void put_many(struct fx *f, const char *fmt, int count)
{
    enum { BATCH = 128 };
    static char keys[BATCH][64];
    struct store_op ops[BATCH];
    int i = 0;
    while (i < count) {
        size_t n = 0;
        for (; n < BATCH && i < count; n++, i++) {
            snprintf(keys[n], sizeof(keys[n]), fmt, i);
            ops[n] = (struct store_op){.type = STORE_OP_PUT};
            ops[n].u.put.key = B(keys[n]);
            ops[n].u.put.key_len = L(keys[n]);
            ops[n].u.put.value = B("v");
            ops[n].u.put.value_len = 1;
        }
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = ops;
        c.u.txn.success_count = n;
        assert_int_equal(fx_apply(f, &c, NULL), 0);
    }
}

/* I7 checked against the tree DB itself: every record's num_children equals the children
 * a full listing finds, a record exists only with children or an existing key, and every
 * listed child with children has a record. Returns the records seen. */
static size_t check_i7(struct fx *f)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k;
    MDB_val v;
    size_t records = 0;
    char path[STORE_KEY_BYTES_MAX + 1];

    assert_int_equal(store__read_begin(f->r, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, f->s->tree, &c), 0);
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    char(*paths)[STORE_KEY_BYTES_MAX + 1] = calloc(4096, sizeof(*paths));
    int64_t *nums = calloc(4096, sizeof(*nums));
    assert_non_null(paths);
    assert_non_null(nums);
    while (rc == 0) {
        assert_true(records < 4096);
        assert_int_equal(v.mv_size, STORE__TREE_BYTES);
        memcpy(paths[records], k.mv_data, k.mv_size);
        paths[records][k.mv_size] = '\0';
        nums[records] = (int64_t)store__get_le64(v.mv_data);
        MDB_val kv;
        bool exists = mdb_get(txn, f->s->kv, &k, &kv) == 0 ||
                      (k.mv_size == 1 && *(const char *)k.mv_data == '/'); /* the root */
        if (!(nums[records] > 0 || exists)) {
            fail_msg("tree record %s with 0 children for a missing key", paths[records]);
        }
        records++;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    store__read_end(f->r);
    for (size_t i = 0; i < records; i++) {
        memcpy(path, paths[i], sizeof(path));
        struct store_stat st;
        if (stat_of(f, path, &st) != 0) {
            continue; /* a record for a missing parent: children() reports none by contract */
        }
        char buf[8192];
        bool more;
        size_t n = children(f, path, NULL, 0, buf, sizeof(buf), &more);
        if ((int64_t)n != nums[i] || st.num_children != nums[i]) {
            fail_msg("%s: record says %lld children, listing finds %zu", path, (long long)nums[i],
                     n);
        }
    }
    free(paths);
    free(nums);
    return records;
}

static void test_path_rules(void **state)
{
    (void)state;
    const char *good[] = {"/", "/a", "/a/b", "/a.b", "/...", "/a/.b", "/a b/c", "/-"};
    const char *bad[] = {"",   "a",   "a/b",    "/a/",     "//",   "/a//b",
                         "/.", "/..", "/a/./b", "/a/../b", "/a/.", "/a/.."};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!store_path_valid(B(good[i]), L(good[i]))) {
            fail_msg("%s should be valid", good[i]);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (store_path_valid(B(bad[i]), L(bad[i]))) {
            fail_msg("%s should be invalid", bad[i]);
        }
    }
    assert_false(store_path_valid(B("/a\0b"), 4));
    assert_false(store_path_valid(NULL, 0));
    uint8_t longp[STORE_KEY_BYTES_MAX + 1];
    memset(longp, 'x', sizeof(longp));
    longp[0] = '/';
    assert_true(store_path_valid(longp, STORE_KEY_BYTES_MAX));
    assert_false(store_path_valid(longp, STORE_KEY_BYTES_MAX + 1));
}

static void test_create_counts_the_node_under_its_parent(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_counters(f, "/", 0, 0);
    int64_t rev = fx_rev(f);
    assert_int_equal(tcreate(f, "/a", "hello", 0, false, &res), 0);
    assert_int_equal(res.revision, rev + 1);
    assert_int_equal(res.u.tree_create.created_revision, rev + 1);
    assert_int_equal(res.u.tree_create.parents_created, 0);

    struct store_stat root = stat_ok(f, "/");
    assert_int_equal(root.num_children, 1);
    assert_int_equal(root.cversion, 1);
    assert_int_equal(root.children_revision, rev + 1);
    assert_int_equal(root.create_revision, 0);

    struct store_stat a = stat_ok(f, "/a");
    assert_int_equal(a.create_revision, rev + 1);
    assert_int_equal(a.mod_revision, rev + 1);
    assert_int_equal(a.version, 1);
    assert_int_equal(a.value_len, 5);
    assert_int_equal(a.num_children, 0);
    assert_int_equal(a.cversion, 0);
    assert_int_equal(a.children_revision, 0);

    assert_int_equal(tcreate(f, "/a/b", "", 0, false, NULL), 0);
    a = stat_ok(f, "/a");
    assert_int_equal(a.num_children, 1);
    assert_int_equal(a.cversion, 1);
    assert_int_equal(a.children_revision, rev + 2);
    assert_int_equal(a.mod_revision, rev + 1); /* a child does not modify the node */
    assert_counters(f, "/", 1, 1);
}

static void test_create_refuses_bad_paths_existing_nodes_and_missing_parents(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tcreate(f, "/a", "", 0, false, NULL), 0);
    int64_t rev = fx_rev(f);
    assert_int_equal(tcreate(f, "/", "", 0, false, NULL), LATCH_EINVAL);
    assert_int_equal(tcreate(f, "a", "", 0, false, NULL), LATCH_EINVAL);
    assert_int_equal(tcreate(f, "/a/", "", 0, false, NULL), LATCH_EINVAL);
    assert_int_equal(tcreate(f, "/a/../b", "", 0, false, NULL), LATCH_EINVAL);
    assert_int_equal(tcreate(f, "/a", "", 0, false, NULL), LATCH_EEXIST);
    assert_int_equal(tcreate(f, "/x/y", "", 0, false, NULL), LATCH_ENOTFOUND);
    assert_int_equal(tcreate(f, "/a/b/c", "", 0, false, NULL), LATCH_ENOTFOUND);
    assert_int_equal(tcreate(f, "/a/b", "", 12, false, NULL), LATCH_ENOTFOUND); /* lease */
    assert_int_equal(tcreate(f, "/a/b/c", "", 12, true, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_rev(f), rev);
    assert_int_equal(stat_of(f, "/a/b", &(struct store_stat){0}), LATCH_ENOTFOUND);
    assert_counters(f, "/", 1, 1);
    assert_counters(f, "/a", 0, 0);
}

static void test_make_parents_creates_missing_ancestors_in_one_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 5;
    g.u.lease_grant.ttl = 10;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
    assert_int_equal(tcreate(f, "/a", "", 0, false, NULL), 0);
    int64_t rev = fx_rev(f);

    assert_int_equal(tcreate(f, "/a/b/c/d", "leaf", 5, true, &res), 0);
    assert_int_equal(res.u.tree_create.parents_created, 2);
    assert_int_equal(res.u.tree_create.created_revision, rev + 1);
    assert_int_equal(fx_rev(f), rev + 1);

    const char *made[] = {"/a/b", "/a/b/c"};
    for (int i = 0; i < 2; i++) {
        struct store_kv kv;
        char buf[16];
        assert_int_equal(fx_get(f, made[i], buf, sizeof(buf), &kv), 0);
        assert_string_equal(buf, "");
        assert_int_equal(kv.create_revision, rev + 1);
        assert_int_equal(kv.lease, 0); /* ancestors get no lease */
        assert_counters(f, made[i], 1, 1);
    }
    struct store_stat d = stat_ok(f, "/a/b/c/d");
    assert_int_equal(d.lease, 5);
    assert_int_equal(d.value_len, 4);
    assert_counters(f, "/a", 1, 1);

    /* Three PUT events in one revision, top-down. */
    struct store_history_req q = {
        .start_revision = rev + 1, .max_events = 10, .max_bytes = 1 << 20};
    struct store_event *ev;
    size_t n;
    int64_t next;
    assert_int_equal(store_history(f->r, &q, &f->arena, &ev, &n, &next), 0);
    assert_int_equal(n, 3);
    const char *order[] = {"/a/b", "/a/b/c", "/a/b/c/d"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ev[i].type, STORE_EVENT_PUT);
        assert_int_equal(ev[i].kv.mod_revision, rev + 1);
        assert_int_equal(ev[i].kv.key_len, L(order[i]));
        assert_memory_equal(ev[i].kv.key, order[i], L(order[i]));
    }

    /* Making parents from the root, and when nothing is missing. */
    assert_int_equal(tcreate(f, "/x/y", "", 0, true, &res), 0);
    assert_int_equal(res.u.tree_create.parents_created, 1);
    assert_int_equal(tcreate(f, "/x/z", "", 0, true, &res), 0);
    assert_int_equal(res.u.tree_create.parents_created, 0);
    assert_counters(f, "/x", 2, 2);
    assert_counters(f, "/", 2, 2);
    check_i7(f);
}

static void test_nospace_refuses_create_but_not_delete(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tcreate(f, "/a", "", 0, false, NULL), 0);
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = STORE_ALARM_ACTIVATE;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_int_equal(tcreate(f, "/b", "", 0, false, NULL), LATCH_ENOSPACE);
    assert_int_equal(tcreate(f, "/b/c", "", 0, true, NULL), LATCH_ENOSPACE);
    assert_int_equal(stat_of(f, "/b", &(struct store_stat){0}), LATCH_ENOTFOUND);
    assert_int_equal(tdelete(f, "/a", false, 0, NULL), 0);
    assert_counters(f, "/", 0, 2);
}

static void test_delete_refuses_missing_root_and_bad_version(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(tdelete(f, "/nope", false, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(tdelete(f, "/", true, 0, NULL), LATCH_EINVAL);
    assert_int_equal(tdelete(f, "/a/", false, 0, NULL), LATCH_EINVAL);
    assert_int_equal(tcreate(f, "/a", "1", 0, false, NULL), 0);
    assert_int_equal(fx_put(f, "/a", "2", 0), 0); /* version 2 */
    int64_t rev = fx_rev(f);
    assert_int_equal(tdelete(f, "/a", false, 1, NULL), LATCH_EBADVERSION);
    assert_int_equal(tdelete(f, "/a", false, 3, NULL), LATCH_EBADVERSION);
    assert_int_equal(fx_rev(f), rev);
    assert_int_equal(tdelete(f, "/a", false, 2, &res), 0);
    assert_int_equal(res.u.tree_delete.deleted, 1);
    assert_int_equal(res.revision, rev + 1);
    assert_int_equal(fx_get(f, "/a", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_delete_with_children_needs_recursive(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tcreate(f, "/a/b", "", 0, true, NULL), 0);
    int64_t rev = fx_rev(f);
    assert_int_equal(tdelete(f, "/a", false, 0, NULL), LATCH_ENOTEMPTY);
    assert_int_equal(fx_rev(f), rev);
    assert_int_equal(tdelete(f, "/a/b", false, 0, NULL), 0);
    assert_int_equal(tdelete(f, "/a", false, 0, NULL), 0); /* empty now */
    assert_counters(f, "/", 0, 2);
    check_i7(f);
}

static void test_recursive_delete_removes_the_subtree_in_one_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(tcreate(f, "/a/b/c", "", 0, true, NULL), 0);
    assert_int_equal(tcreate(f, "/a/d", "", 0, false, NULL), 0);
    assert_int_equal(tcreate(f, "/ab", "", 0, false, NULL), 0);
    assert_int_equal(tcreate(f, "/a!", "", 0, false, NULL), 0);
    assert_int_equal(fx_put(f, "/a/x/y", "etcd key below an implicit node", 0), 0);
    assert_int_equal(fx_put(f, "/a0", "sorts right after the subtree", 0), 0);
    int64_t rev = fx_rev(f);

    assert_int_equal(tdelete(f, "/a", true, 0, &res), 0);
    assert_int_equal(res.u.tree_delete.deleted, 5);
    assert_int_equal(fx_rev(f), rev + 1);
    const char *gone[] = {"/a", "/a/b", "/a/b/c", "/a/d", "/a/x/y"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(fx_get(f, gone[i], NULL, 0, NULL), LATCH_ENOTFOUND);
    }
    assert_int_equal(fx_get(f, "/ab", NULL, 0, NULL), 0);
    assert_int_equal(fx_get(f, "/a!", NULL, 0, NULL), 0);
    assert_int_equal(fx_get(f, "/a0", NULL, 0, NULL), 0);
    assert_children(f, "/", "a!,a0,ab");

    struct store_history_req q = {
        .start_revision = rev + 1, .max_events = 10, .max_bytes = 1 << 20};
    struct store_event *ev;
    size_t n;
    int64_t next;
    assert_int_equal(store_history(f->r, &q, &f->arena, &ev, &n, &next), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].type, STORE_EVENT_DELETE);
        assert_int_equal(ev[i].kv.mod_revision, rev + 1);
        assert_int_equal(ev[i].kv.key_len, L(gone[i]));
        assert_memory_equal(ev[i].kv.key, gone[i], L(gone[i]));
    }
    assert_int_equal(check_i7(f), 1); /* only the root's record is left */

    /* A re-created node starts afresh. */
    assert_int_equal(tcreate(f, "/a", "", 0, false, NULL), 0);
    struct store_stat a = stat_ok(f, "/a");
    assert_int_equal(a.num_children, 0);
    assert_int_equal(a.cversion, 0);
    assert_int_equal(a.children_revision, 0);
}

static void test_counters_follow_plain_puts_and_deletes(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "/p", "", 0), 0);
    assert_int_equal(fx_put(f, "/p/a", "1", 0), 0);
    assert_int_equal(fx_put(f, "/p/b", "1", 0), 0);
    assert_counters(f, "/p", 2, 2);
    int64_t crev = stat_ok(f, "/p").children_revision;
    assert_int_equal(crev, fx_rev(f));

    assert_int_equal(fx_put(f, "/p/a", "2", 0), 0); /* an update is no child change */
    assert_counters(f, "/p", 2, 2);
    assert_int_equal(stat_ok(f, "/p").children_revision, crev);

    assert_int_equal(fx_put(f, "p/c", "not a path", 0), 0);
    assert_int_equal(fx_put(f, "/pq", "a sibling", 0), 0);
    assert_counters(f, "/p", 2, 2);

    assert_int_equal(fx_del(f, "/p/a"), 0);
    assert_counters(f, "/p", 1, 3);
    assert_int_equal(stat_ok(f, "/p").children_revision, fx_rev(f));
    assert_int_equal(tcreate(f, "/p/a", "", 0, false, NULL), 0);
    assert_int_equal(tdelete(f, "/p/b", false, 0, NULL), 0);
    assert_counters(f, "/p", 1, 5);
    assert_counters(f, "/", 2, 2);
    check_i7(f);
}

static void test_delete_range_and_txns_keep_the_counters(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "/r", "", 0), 0);
    put_many(f, "/r/k%03d", 300);
    assert_counters(f, "/r", 300, 300);

    /* One DeleteRange over half of the children. */
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del.key = B("/r/k000");
    op.u.del.key_len = 7;
    op.u.del.range_end = B("/r/k150");
    op.u.del.range_end_len = 7;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_counters(f, "/r", 150, 450);
    assert_int_equal(check_i7(f), 2);

    /* Deleting the parent's key keeps its counters for its remaining children ... */
    assert_int_equal(fx_del(f, "/r"), 0);
    assert_int_equal(check_i7(f), 2);
    assert_int_equal(fx_put(f, "/r", "back", 0), 0);
    assert_counters(f, "/r", 150, 0); /* ... but a re-created node restarts cversion */
    assert_int_equal(fx_del(f, "/r"), 0);
    op.u.del.key = B("/r/");
    op.u.del.key_len = 3;
    op.u.del.range_end = B("/r0");
    op.u.del.range_end_len = 3;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_int_equal(check_i7(f), 1); /* the root's record only */
    assert_counters(f, "/", 0, 4);
}

static void test_children_are_existing_keys_in_name_order_with_stats(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tcreate(f, "/c/b/x", "", 0, true, NULL), 0);
    assert_int_equal(tcreate(f, "/c/a", "1", 0, false, NULL), 0);
    assert_int_equal(tcreate(f, "/c/c", "22", 0, false, NULL), 0);
    assert_int_equal(fx_put(f, "/c/z/deep/key", "implicit /c/z and /c/z/deep", 0), 0);
    assert_int_equal(fx_put(f, "/c/b.x", "", 0), 0);
    assert_int_equal(fx_put(f, "/cat", "not below /c", 0), 0);
    assert_int_equal(fx_put(f, "c/d", "not a path", 0), 0);

    assert_children(f, "/c", "a,b,b.x,c");
    assert_children(f, "/", "c,cat");
    assert_children(f, "/c/b", "x");
    assert_children(f, "/c/z", ""); /* /c/z does not exist */
    assert_children(f, "/nope", "");
    assert_children(f, "/c/a", "");

    struct store_child *ch;
    size_t n;
    bool more;
    assert_int_equal(store_children(f->r, B("/c"), 2, NULL, 0, 0, &f->arena, &ch, &n, &more), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ch[1].stat.num_children, 1); /* b */
    assert_int_equal(ch[1].stat.cversion, 1);
    assert_int_equal(ch[2].stat.num_children, 0); /* b.x */
    assert_int_equal(ch[3].stat.value_len, 2);    /* c */
    assert_int_equal(ch[3].stat.version, 1);
    struct store_stat c = stat_ok(f, "/c");
    assert_int_equal(c.num_children, 4);
    assert_int_equal(ch[0].stat.create_revision, c.create_revision + 1);
    check_i7(f);
}

static void test_children_paging_by_after_and_limit(void **state)
{
    struct fx *f = *state;
    const char *names[] = {"/p/e", "/p/a", "/p/d", "/p/b", "/p/c"};
    assert_int_equal(tcreate(f, "/p", "", 0, false, NULL), 0);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(tcreate(f, names[i], "", 0, false, NULL), 0);
    }
    assert_int_equal(fx_put(f, "/p/b/sub/tree", "", 0), 0);
    char buf[256];
    bool more;
    assert_int_equal(children(f, "/p", NULL, 2, buf, sizeof(buf), &more), 2);
    assert_string_equal(buf, "a,b");
    assert_true(more);
    assert_int_equal(children(f, "/p", "b", 2, buf, sizeof(buf), &more), 2);
    assert_string_equal(buf, "c,d");
    assert_true(more);
    assert_int_equal(children(f, "/p", "d", 2, buf, sizeof(buf), &more), 1);
    assert_string_equal(buf, "e");
    assert_false(more);
    assert_int_equal(children(f, "/p", "e", 2, buf, sizeof(buf), &more), 0);
    assert_false(more);
    assert_int_equal(children(f, "/p", NULL, 5, buf, sizeof(buf), &more), 5);
    assert_false(more); /* exactly limit: nothing follows */
    assert_int_equal(children(f, "/p", "a0", 1, buf, sizeof(buf), &more), 1);
    assert_string_equal(buf, "b"); /* after need not name an existing child */
    assert_true(more);
    assert_int_equal(children(f, "/p", "", 0, buf, sizeof(buf), &more), 5);
}

static void test_children_cost_follows_children_not_subtree_size(void **state)
{
    struct fx *f = *state;
    assert_int_equal(tcreate(f, "/big", "", 0, false, NULL), 0);
    assert_int_equal(tcreate(f, "/small", "", 0, false, NULL), 0);
    char path[64];
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof(path), "/big/c%d", i);
        assert_int_equal(tcreate(f, path, "", 0, false, NULL), 0);
        snprintf(path, sizeof(path), "/small/c%d", i);
        assert_int_equal(tcreate(f, path, "", 0, false, NULL), 0);
    }
    put_many(f, "/big/c3/k%06d", 20000);
    put_many(f, "/big/c7/x/y/k%06d", 5000); /* below an implicit node /big/c7/x */
    put_many(f, "/big/c5%05d", 1000);       /* siblings named c5NNNNN: real children */
    put_many(f, "/big/implicit/k%05d", 3000);

    char buf[16384];
    bool more;
    assert_int_equal(children(f, "/small", NULL, 0, buf, sizeof(buf), &more), 10);
    uint64_t small_steps = store__tree_last_scan_steps();
    assert_int_equal(children(f, "/big/c3", NULL, 3, buf, sizeof(buf), &more), 3);
    assert_true(more);
    assert_int_equal(children(f, "/big", NULL, 0, buf, sizeof(buf), &more), 1010);
    assert_int_equal(stat_ok(f, "/big").num_children, 1010);
    assert_int_equal(stat_ok(f, "/big/c3").num_children, 20000);
    assert_int_equal(stat_ok(f, "/big/c7").num_children, 0);
    assert_children(f, "/big/c7", "");

    /* Only the ten c<d> children and their c5NNNNN siblings: each child costs one step,
     * and each child with a subtree (c3, c7) or implicit node one more, whatever the
     * subtree holds. */
    assert_int_equal(children(f, "/big", NULL, 10, buf, sizeof(buf), &more), 10);
    assert_string_equal(buf, "c0,c1,c2,c3,c4,c5,c500000,c500001,c500002,c500003");
    uint64_t big_steps = store__tree_last_scan_steps();
    assert_true(small_steps <= 12);
    if (big_steps > 16) {
        fail_msg("10 children of /big took %llu cursor steps (small: %llu)",
                 (unsigned long long)big_steps, (unsigned long long)small_steps);
    }
    assert_int_equal(children(f, "/big", "c500999", 0, buf, sizeof(buf), &more), 4);
    assert_string_equal(buf, "c6,c7,c8,c9");
    assert_true(store__tree_last_scan_steps() <= 12);
}

static void test_root_lists_top_level_keys_only(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "/", "the root as an etcd key", 0), 0);
    assert_int_equal(fx_put(f, "//x", "empty first segment: nobody's child", 0), 0);
    assert_int_equal(fx_put(f, "/b", "", 0), 0);
    assert_int_equal(fx_put(f, "/a/b", "", 0), 0);
    assert_int_equal(fx_put(f, "/e/", "empty name below /e", 0), 0);
    assert_int_equal(fx_put(f, "/e", "", 0), 0);
    assert_children(f, "/", "b,e");
    char buf[64];
    bool more;
    assert_int_equal(children(f, "/e", NULL, 0, buf, sizeof(buf), &more), 1);
    assert_string_equal(buf, ""); /* the one child "/e/" has an empty name */
    assert_counters(f, "/", 2, 2);
    assert_counters(f, "/e", 1, 0); /* /e created after its child: cversion restarted */
    struct store_stat root = stat_ok(f, "/");
    assert_int_equal(root.version, 1); /* the key "/" exists here */
    check_i7(f);
}

static void test_random_operations_keep_i7(void **state)
{
    struct fx *f = *state;
    const char *names[] = {"/a",   "/a/b",  "/a/c",  "/a/b/d",   "/a/b/d/e", "/f",
                           "/f/g", "/a/bb", "/a/b!", "/f/g/h/i", "//z",      "/a/"};
    const size_t count = sizeof(names) / sizeof(names[0]);
    srand(7);
    for (int i = 0; i < 600; i++) {
        const char *p = names[(size_t)rand() % count];
        int op = rand() % 5;
        int rc;
        switch (op) {
        case 0:
            rc = fx_put(f, p, "", 0);
            assert_int_equal(rc, 0);
            break;
        case 1:
            rc = fx_del(f, p);
            assert_int_equal(rc, 0);
            break;
        case 2:
            rc = tcreate(f, p, "", 0, rand() % 2 == 0, NULL);
            assert_true(rc == 0 || rc == LATCH_EEXIST || rc == LATCH_ENOTFOUND ||
                        rc == LATCH_EINVAL);
            break;
        case 3:
            rc = tdelete(f, p, rand() % 2 == 0, 0, NULL);
            assert_true(rc == 0 || rc == LATCH_ENOTFOUND || rc == LATCH_ENOTEMPTY ||
                        rc == LATCH_EINVAL);
            break;
        default:
            if (i % 20 == 0) {
                check_i7(f);
            }
            break;
        }
    }
    check_i7(f);
}

static int tcreate_seq(struct fx *f, const char *prefix, bool parents, struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_TREE_CREATE};
    c.u.tree_create.path = B(prefix);
    c.u.tree_create.path_len = L(prefix);
    c.u.tree_create.value = B("v");
    c.u.tree_create.value_len = 1;
    c.u.tree_create.make_parents = parents;
    c.u.tree_create.sequential = true;
    return fx_apply(f, &c, res);
}

/* Sequential names end with the creating revision in 20 digits: never repeated, in
 * creation order, and the checks apply to the full name. */
static void test_sequential_create_appends_the_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    char name[64];
    assert_int_equal(tcreate(f, "/q", "", 0, false, &res), 0);
    assert_int_equal(tcreate_seq(f, "/q/lock-", false, &res), 0);
    int64_t first = res.u.tree_create.created_revision;
    snprintf(name, sizeof(name), "/q/lock-%020" PRId64, first);
    assert_int_equal(stat_ok(f, name).create_revision, first);
    assert_int_equal(tcreate_seq(f, "/q/", false, &res), 0); /* a bare parent prefix */
    int64_t second = res.u.tree_create.created_revision;
    assert_true(second > first);
    snprintf(name, sizeof(name), "/q/%020" PRId64, second);
    assert_int_equal(stat_ok(f, name).create_revision, second);
    assert_int_equal(stat_ok(f, "/q").num_children, 2);

    /* Parents are checked for the full name, and made when asked. */
    assert_int_equal(tcreate_seq(f, "/none/x-", false, &res), LATCH_ENOTFOUND);
    assert_int_equal(tcreate_seq(f, "/none/x-", true, &res), 0);
    snprintf(name, sizeof(name), "/none/x-%020" PRId64, res.u.tree_create.created_revision);
    assert_int_equal(stat_ok(f, name).version, 1);
    /* A prefix that cannot make a valid path with any suffix. */
    assert_int_equal(tcreate_seq(f, "q-", false, &res), LATCH_EINVAL);
}

/* ---- TREE_MULTI ---------------------------------------------------------------------- */

static struct store_tree_op mop(uint32_t type, const char *path, const char *value)
{
    struct store_tree_op op = {.type = type, .path = B(path), .path_len = L(path)};
    if (value != NULL) {
        op.value = B(value);
        op.value_len = L(value);
    }
    return op;
}

static int multi(struct fx *f,
                 const struct store_compare *guards,
                 size_t ng,
                 const struct store_tree_op *ops,
                 size_t n,
                 struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_TREE_MULTI};
    c.u.tree_multi.guards = guards;
    c.u.tree_multi.guards_count = ng;
    c.u.tree_multi.ops = ops;
    c.u.tree_multi.ops_count = n;
    return fx_apply(f, &c, res);
}

/* Every op of a multi lands in one revision, each seeing the ones before it. */
static void test_multi_applies_every_op_in_one_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    char name[64];
    assert_int_equal(tcreate(f, "/old", "o", 0, false, &res), 0);
    int64_t rev0 = fx_rev(f);
    struct store_tree_op ops[6] = {
        mop(STORE_TREE_OP_CREATE, "/m", "a"),    mop(STORE_TREE_OP_CREATE, "/m/q-", "s"),
        mop(STORE_TREE_OP_SET, "/m", "b"),       mop(STORE_TREE_OP_CHECK, "/m", NULL),
        mop(STORE_TREE_OP_CHECK, "/none", NULL), mop(STORE_TREE_OP_DELETE, "/old", NULL),
    };
    ops[1].sequential = true;
    ops[3].expected_version = 2; /* after the create and the set */
    ops[4].absent = true;
    assert_int_equal(multi(f, NULL, 0, ops, 6, &res), 0);
    assert_int_equal(res.revision, rev0 + 1);
    assert_int_equal(res.u.tree_multi.count, 6);
    assert_int_equal(res.u.tree_multi.results[0].created_revision, rev0 + 1);
    assert_int_equal(res.u.tree_multi.results[2].version, 2);
    assert_int_equal(res.u.tree_multi.results[5].deleted, 1);
    struct store_stat st = stat_ok(f, "/m");
    assert_int_equal(st.version, 2);
    assert_int_equal(st.create_revision, rev0 + 1);
    assert_int_equal(st.mod_revision, rev0 + 1);
    assert_int_equal(st.num_children, 1);
    snprintf(name, sizeof(name), "/m/q-%020" PRId64, rev0 + 1);
    assert_int_equal(stat_ok(f, name).version, 1);
    struct store_stat gone;
    assert_int_equal(stat_of(f, "/old", &gone), LATCH_ENOTFOUND);
    assert_int_equal(check_i7(f) > 0, true);
}

/* The first failing op names itself; nothing of the multi stays, not even the ops before it. */
static void test_multi_failure_undoes_everything_and_names_the_op(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_stat st;
    assert_int_equal(tcreate(f, "/v", "x", 0, false, &res), 0);
    int64_t rev0 = fx_rev(f);
    struct {
        struct store_tree_op op;
        int err;
    } cases[] = {
        {mop(STORE_TREE_OP_SET, "/missing", "x"), LATCH_ENOTFOUND},
        {mop(STORE_TREE_OP_CREATE, "/v", ""), LATCH_EEXIST},
        {mop(STORE_TREE_OP_CREATE, "/no/parent", ""), LATCH_ENOTFOUND},
        {mop(STORE_TREE_OP_CHECK, "/v", NULL), LATCH_EBADVERSION},
        {mop(STORE_TREE_OP_DELETE, "/v", NULL), LATCH_EBADVERSION},
        {mop(STORE_TREE_OP_SET, "/v", "y"), LATCH_EBADVERSION},
        {mop(STORE_TREE_OP_CHECK, "/v", NULL), LATCH_EEXIST},
        {mop(STORE_TREE_OP_SET, "bad", "y"), LATCH_EINVAL},
        {mop(STORE_TREE_OP_SET, "/", "y"), LATCH_EINVAL},
    };
    cases[3].op.expected_version = 5;
    cases[4].op.expected_version = 5;
    cases[5].op.expected_version = 5;
    cases[6].op.absent = true;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct store_tree_op ops[3] = {mop(STORE_TREE_OP_CREATE, "/w", "1"),
                                       mop(STORE_TREE_OP_SET, "/v", "2"), cases[i].op};
        assert_int_equal(multi(f, NULL, 0, ops, 3, &res), cases[i].err);
        assert_int_equal(res.u.tree_multi.failed_op, 2);
        assert_int_equal(fx_rev(f), rev0);
        assert_int_equal(stat_of(f, "/w", &st), LATCH_ENOTFOUND);
        assert_int_equal(stat_ok(f, "/v").version, 1);
    }
}

/* SET keeps the node's lease: an ephemeral node stays ephemeral. */
static void test_multi_set_keeps_the_lease(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 9;
    g.u.lease_grant.ttl = 60;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
    assert_int_equal(tcreate(f, "/e", "x", 9, false, &res), 0);
    struct store_tree_op op = mop(STORE_TREE_OP_SET, "/e", "y");
    assert_int_equal(multi(f, NULL, 0, &op, 1, &res), 0);
    assert_int_equal(res.u.tree_multi.results[0].lease, 9);
    assert_int_equal(stat_ok(f, "/e").lease, 9);
    char buf[8];
    assert_int_equal(fx_get(f, "/e", buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "y");
}

/* A guard that fails (here a FENCE on a lock queue) fails the multi with EFENCED, op -1. */
static void test_multi_guard_fences_the_whole_batch(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 7;
    g.u.lease_grant.ttl = 60;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
    assert_int_equal(fx_put(f, "q/wA", "", 7), 0);
    int64_t holder = fx_rev(f);
    assert_int_equal(fx_put(f, "q/wB", "", 7), 0);
    int64_t waiter = fx_rev(f);
    struct store_compare fence = {.target = STORE_CMP_FENCE,
                                  .result = STORE_CMP_EQUAL,
                                  .key = B("q/"),
                                  .key_len = 2,
                                  .range_end = B("q0"),
                                  .range_end_len = 2,
                                  .number = waiter};
    struct store_tree_op op = mop(STORE_TREE_OP_CREATE, "/guarded", "x");
    assert_int_equal(multi(f, &fence, 1, &op, 1, &res), LATCH_EFENCED);
    assert_int_equal(res.u.tree_multi.failed_op, -1);
    struct store_stat st;
    assert_int_equal(stat_of(f, "/guarded", &st), LATCH_ENOTFOUND);
    fence.number = holder;
    assert_int_equal(multi(f, &fence, 1, &op, 1, &res), 0);
    assert_int_equal(stat_ok(f, "/guarded").version, 1);
    /* The holder leaves: the waiter's token is now the current one. */
    assert_int_equal(fx_del(f, "q/wA"), 0);
    struct store_tree_op set = mop(STORE_TREE_OP_SET, "/guarded", "y");
    assert_int_equal(multi(f, &fence, 1, &set, 1, &res), LATCH_EFENCED);
    fence.number = waiter;
    assert_int_equal(multi(f, &fence, 1, &set, 1, &res), 0);
    /* A malformed guard is refused as a txn compare would be. */
    fence.range_end_len = 0;
    assert_int_equal(multi(f, &fence, 1, &set, 1, &res), LATCH_EINVAL);
}

/* The same path may be written several times in one multi: each op sees the previous. */
static void test_multi_may_touch_one_path_repeatedly(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    int64_t rev0 = fx_rev(f);
    struct store_tree_op ops[4] = {
        mop(STORE_TREE_OP_CREATE, "/r", "1"),
        mop(STORE_TREE_OP_SET, "/r", "2"),
        mop(STORE_TREE_OP_DELETE, "/r", NULL),
        mop(STORE_TREE_OP_CREATE, "/r", "3"),
    };
    assert_int_equal(multi(f, NULL, 0, ops, 4, &res), 0);
    struct store_stat st = stat_ok(f, "/r");
    assert_int_equal(st.version, 1);
    assert_int_equal(st.create_revision, rev0 + 1);
    assert_int_equal(stat_ok(f, "/").num_children, 1);
    assert_int_equal(check_i7(f) > 0, true);
}

/* Under the NOSPACE alarm a multi that writes data is refused; checks and deletes pass. */
static void test_multi_nospace_refuses_sets(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(tcreate(f, "/s", "x", 0, false, &res), 0);
    struct store_cmd a = {.type = STORE_CMD_ALARM};
    a.u.alarm.action = STORE_ALARM_ACTIVATE;
    a.u.alarm.alarm = STORE_ALARM_NOSPACE;
    assert_int_equal(fx_apply(f, &a, NULL), 0);
    struct store_tree_op set = mop(STORE_TREE_OP_SET, "/s", "y");
    assert_int_equal(multi(f, NULL, 0, &set, 1, &res), LATCH_ENOSPACE);
    struct store_tree_op ops[2] = {mop(STORE_TREE_OP_CHECK, "/s", NULL),
                                   mop(STORE_TREE_OP_DELETE, "/s", NULL)};
    assert_int_equal(multi(f, NULL, 0, ops, 2, &res), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        cmocka_unit_test(test_path_rules),
        T(test_create_counts_the_node_under_its_parent),
        T(test_create_refuses_bad_paths_existing_nodes_and_missing_parents),
        T(test_make_parents_creates_missing_ancestors_in_one_revision),
        T(test_nospace_refuses_create_but_not_delete),
        T(test_delete_refuses_missing_root_and_bad_version),
        T(test_delete_with_children_needs_recursive),
        T(test_recursive_delete_removes_the_subtree_in_one_revision),
        T(test_counters_follow_plain_puts_and_deletes),
        T(test_delete_range_and_txns_keep_the_counters),
        T(test_children_are_existing_keys_in_name_order_with_stats),
        T(test_children_paging_by_after_and_limit),
        T(test_children_cost_follows_children_not_subtree_size),
        T(test_root_lists_top_level_keys_only),
        T(test_random_operations_keep_i7),
        T(test_sequential_create_appends_the_revision),
        T(test_multi_applies_every_op_in_one_revision),
        T(test_multi_failure_undoes_everything_and_names_the_op),
        T(test_multi_set_keeps_the_lease),
        T(test_multi_guard_fences_the_whole_batch),
        T(test_multi_may_touch_one_path_repeatedly),
        T(test_multi_nospace_refuses_sets),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
