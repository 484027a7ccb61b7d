/*
 * test_kv.c — the MVCC keyspace through the public path (store_cmd_encode + store_apply,
 * store_range): etcd 3.4's revision, version and create_revision rules (ETCD-API.md §4.1),
 * Range (§4.2) with every option, Put and DeleteRange (§4.3) with prev_kv, ignore_value,
 * ignore_lease and leases, and compaction (§4.7, I4) with reads at old revisions before and
 * after it. A seeded model check at the end compares every revision with an in-memory
 * history.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fx_setup(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_teardown(f);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                            */
/* ---------------------------------------------------------------------------------- */

/* Applies a one-op txn; *res (may be NULL) gets the store result. */
static int apply_op(struct fx *f, const struct store_op *op, struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = op;
    c.u.txn.success_count = 1;
    return fx_apply(f, &c, res);
}

static struct store_put_req put_req(const char *key, const char *value, int64_t lease)
{
    return (struct store_put_req){.key = B(key),
                                  .key_len = L(key),
                                  .value = B(value),
                                  .value_len = value != NULL ? L(value) : 0,
                                  .lease = lease};
}

/* A put with options; *prev (may be NULL) gets the put result's prev. */
static int put_opts(struct fx *f, struct store_put_req q, struct store_put_result *out)
{
    struct store_op op = {.type = STORE_OP_PUT, .u.put = q};
    struct store_result res;
    int rc = apply_op(f, &op, &res);
    if (rc == 0) {
        assert_int_equal(res.u.txn.responses_count, 1);
        assert_int_equal(res.u.txn.responses[0].type, STORE_OP_PUT);
        if (out != NULL) {
            *out = res.u.txn.responses[0].u.put;
        }
    }
    return rc;
}

/* DeleteRange [key, end) (end NULL: the key alone; "\0" with end_len 1: all >= key). */
static int del_range(struct fx *f,
                     const char *key,
                     const char *end,
                     uint32_t end_len,
                     bool prev_kv,
                     struct store_delete_result *out)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del = (struct store_delete_req){.key = B(key),
                                         .key_len = L(key),
                                         .range_end = B(end),
                                         .range_end_len = end_len,
                                         .prev_kv = prev_kv};
    struct store_result res;
    int rc = apply_op(f, &op, &res);
    if (rc == 0 && out != NULL) {
        assert_int_equal(res.u.txn.responses[0].type, STORE_OP_DELETE);
        *out = res.u.txn.responses[0].u.del;
    }
    return rc;
}

static int64_t lease_grant(struct fx *f, int64_t id)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = 60;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    return res.u.lease_grant.id;
}

static int compact(struct fx *f, int64_t rev)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = rev;
    return fx_apply(f, &c, NULL);
}

/* A range request over [key, end) (end NULL: the key alone). */
static struct store_range_req rq(const char *key, const char *end)
{
    return (struct store_range_req){.key = B(key),
                                    .key_len = L(key),
                                    .range_end = B(end),
                                    .range_end_len = end != NULL ? L(end) : 0};
}

/* A range that covers every key. */
static struct store_range_req rq_all(void)
{
    static const uint8_t zero[1] = {0};
    return (struct store_range_req){
        .key = zero, .key_len = 1, .range_end = zero, .range_end_len = 1};
}

static struct store_range_result range_ok(struct fx *f, struct store_range_req q)
{
    struct store_range_result out;
    int64_t hdr = -1;
    int rc = store_range(f->r, &q, &f->arena, &out, &hdr);
    if (rc != 0) {
        fail_msg("store_range: %s", latch_error_name(rc));
    }
    assert_int_equal(hdr, fx_rev(f));
    return out;
}

static int range_rc(struct fx *f, struct store_range_req q)
{
    struct store_range_result out;
    return store_range(f->r, &q, &f->arena, &out, NULL);
}

static void assert_kv(const struct store_kv *kv,
                      const char *key,
                      const char *value,
                      int64_t create,
                      int64_t mod,
                      int64_t version,
                      int64_t lease)
{
    assert_int_equal(kv->key_len, strlen(key));
    assert_memory_equal(kv->key, key, kv->key_len);
    if (value != NULL) {
        assert_int_equal(kv->value_len, strlen(value));
        if (kv->value_len > 0) {
            assert_memory_equal(kv->value, value, kv->value_len);
        }
    }
    assert_int_equal(kv->create_revision, create);
    assert_int_equal(kv->mod_revision, mod);
    assert_int_equal(kv->version, version);
    assert_int_equal(kv->lease, lease);
}

/* The keys of a result joined with ',' into buf. */
static const char *keys_of(const struct store_range_result *r, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->kvs_count; i++) {
        n += (size_t)snprintf(buf + n, cap - n, "%s%.*s", i > 0 ? "," : "", (int)r->kvs[i].key_len,
                              (const char *)r->kvs[i].key);
    }
    return buf;
}

/* ---------------------------------------------------------------------------------- */
/* Revisions, versions, create revisions                                              */
/* ---------------------------------------------------------------------------------- */

static void test_fresh_store_is_at_revision_one_with_no_keys(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_rev(f), 1);
    struct store_range_result r = range_ok(f, rq_all());
    assert_int_equal(r.count, 0);
    assert_int_equal(r.kvs_count, 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_put_creates_key_with_version_one_at_next_revision(void **state)
{
    struct fx *f = *state;
    struct store_kv kv;
    char buf[16];
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_rev(f), 2);
    assert_int_equal(fx_get(f, "a", buf, sizeof(buf), &kv), 0);
    assert_string_equal(buf, "1");
    assert_kv(&kv, "a", "1", 2, 2, 1, 0);
}

static void test_put_on_existing_key_keeps_create_revision_and_bumps_version(void **state)
{
    struct fx *f = *state;
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "x", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "3", 2, 5, 3, 0);
    assert_int_equal(fx_rev(f), 5);
}

static void test_put_on_deleted_key_restarts_version_at_one(void **state)
{
    struct fx *f = *state;
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* rev 2 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* rev 3, version 2 */
    assert_int_equal(fx_del(f, "a"), 0);         /* rev 4 */
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_put(f, "a", "3", 0), 0); /* rev 5: a new generation */
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "3", 5, 5, 1, 0);
    assert_int_equal(fx_put(f, "a", "4", 0), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "4", 5, 6, 2, 0);
}

static void test_delete_bumps_revision_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_rev(f), 2);
    assert_int_equal(fx_del(f, "a"), 0);
    assert_int_equal(fx_rev(f), 3);
}

static void test_delete_of_missing_key_does_not_bump_revision(void **state)
{
    struct fx *f = *state;
    struct store_delete_result d;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(del_range(f, "zz", NULL, 0, true, &d), 0);
    assert_int_equal(d.deleted, 0);
    assert_int_equal(d.prev_kvs_count, 0);
    assert_int_equal(del_range(f, "b", "c", 1, false, &d), 0);
    assert_int_equal(d.deleted, 0);
    assert_int_equal(fx_rev(f), 2);
    assert_int_equal(fx_del(f, "a"), 0);
    assert_int_equal(fx_del(f, "a"), 0); /* deleting it again changes nothing */
    assert_int_equal(fx_rev(f), 3);
}

static void test_empty_value_is_a_value(void **state)
{
    struct fx *f = *state;
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "", 0), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "", 2, 2, 1, 0);
}

/* ---------------------------------------------------------------------------------- */
/* Put options                                                                        */
/* ---------------------------------------------------------------------------------- */

static void test_put_prev_kv_returns_previous_state_but_none_on_create(void **state)
{
    struct fx *f = *state;
    struct store_put_req q = put_req("a", "1", 0);
    struct store_put_result pr;
    q.prev_kv = true;
    assert_int_equal(put_opts(f, q, &pr), 0);
    assert_false(pr.has_prev);
    q.value = B("2");
    assert_int_equal(put_opts(f, q, &pr), 0);
    assert_true(pr.has_prev);
    assert_kv(&pr.prev, "a", "1", 2, 2, 1, 0);
    q.prev_kv = false;
    q.value = B("3");
    assert_int_equal(put_opts(f, q, &pr), 0);
    assert_false(pr.has_prev);
}

static void test_put_ignore_value_keeps_old_value(void **state)
{
    struct fx *f = *state;
    int64_t lease = lease_grant(f, 7);
    int64_t r0 = fx_rev(f);
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "keep me", 0), 0);
    struct store_put_req q = put_req("a", NULL, lease);
    q.ignore_value = true;
    assert_int_equal(put_opts(f, q, NULL), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "keep me", r0 + 1, r0 + 2, 2, lease);
}

static void test_put_ignore_value_with_prev_kv_keeps_old_value(void **state)
{
    struct fx *f = *state;
    struct store_put_result pr;
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "old", 0), 0);
    struct store_put_req q = put_req("a", NULL, 0);
    q.ignore_value = true;
    q.prev_kv = true;
    assert_int_equal(put_opts(f, q, &pr), 0);
    assert_true(pr.has_prev);
    assert_kv(&pr.prev, "a", "old", 2, 2, 1, 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "old", 2, 3, 2, 0);
}

static void test_put_ignore_lease_keeps_old_lease(void **state)
{
    struct fx *f = *state;
    int64_t lease = lease_grant(f, 9);
    int64_t r0 = fx_rev(f);
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "1", lease), 0);
    struct store_put_req q = put_req("a", "2", 0);
    q.ignore_lease = true;
    assert_int_equal(put_opts(f, q, NULL), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_kv(&kv, "a", "2", r0 + 1, r0 + 2, 2, lease);
    /* A plain put without a lease detaches it. */
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_int_equal(kv.lease, 0);
}

static void test_put_ignore_flags_on_missing_key_are_not_found_and_write_nothing(void **state)
{
    struct fx *f = *state;
    struct store_put_req q = put_req("a", NULL, 0);
    q.ignore_value = true;
    assert_int_equal(put_opts(f, q, NULL), LATCH_ENOKEY);
    q = put_req("a", "v", 0);
    q.ignore_lease = true;
    assert_int_equal(put_opts(f, q, NULL), LATCH_ENOKEY);
    /* Also after a delete: the key is gone, its tomb does not count. */
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_del(f, "a"), 0);
    assert_int_equal(put_opts(f, q, NULL), LATCH_ENOKEY);
    assert_int_equal(fx_rev(f), 3);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_put_with_unknown_lease_is_not_found(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 12345), LATCH_ENOTFOUND);
    assert_int_equal(fx_rev(f), 1);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void assert_lease_keys(struct fx *f, int64_t id, const char *want)
{
    struct store_lease l;
    struct store_kv *keys = NULL;
    size_t n = 0;
    char buf[256];
    size_t len = 0;
    assert_int_equal(store_lease_get(f->r, id, true, &f->arena, &l, &keys, &n), 0);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%.*s", i > 0 ? "," : "",
                                (int)keys[i].key_len, (const char *)keys[i].key);
    }
    assert_string_equal(buf, want);
}

static void test_put_with_lease_attaches_and_a_new_lease_moves_the_key(void **state)
{
    struct fx *f = *state;
    int64_t l1 = lease_grant(f, 100);
    int64_t l2 = lease_grant(f, 200);
    struct store_kv kv;
    assert_int_equal(fx_put(f, "a", "1", l1), 0);
    assert_int_equal(fx_put(f, "b", "1", l1), 0);
    assert_lease_keys(f, l1, "a,b");
    assert_int_equal(fx_put(f, "a", "2", l2), 0);
    assert_lease_keys(f, l1, "b");
    assert_lease_keys(f, l2, "a");
    assert_int_equal(fx_get(f, "a", NULL, 0, &kv), 0);
    assert_int_equal(kv.lease, l2);
    assert_int_equal(fx_put(f, "b", "2", 0), 0);
    assert_lease_keys(f, l1, "");
}

static void test_delete_detaches_key_from_its_lease(void **state)
{
    struct fx *f = *state;
    int64_t l1 = lease_grant(f, 5);
    assert_int_equal(fx_put(f, "a", "1", l1), 0);
    assert_int_equal(fx_put(f, "b", "1", l1), 0);
    assert_int_equal(fx_del(f, "a"), 0);
    assert_lease_keys(f, l1, "b");
}

static void test_lease_revoke_deletes_attached_keys_in_one_revision(void **state)
{
    struct fx *f = *state;
    int64_t l1 = lease_grant(f, 5);
    assert_int_equal(fx_put(f, "a", "1", l1), 0);
    assert_int_equal(fx_put(f, "b", "1", l1), 0);
    assert_int_equal(fx_put(f, "c", "1", 0), 0);
    int64_t before = fx_rev(f);
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = l1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_int_equal(fx_rev(f), before + 1);
    struct store_range_result r = range_ok(f, rq_all());
    char buf[64];
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "c");
    /* The keys' pre-revoke state is still readable at the old revision. */
    struct store_range_req q = rq_all();
    q.revision = before;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b,c");
}

static void test_large_value_round_trips_and_survives_ignore_value(void **state)
{
    struct fx *f = *state;
    size_t n = 1024 * 1024;
    char *v = malloc(n + 1);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i] = (char)('a' + i % 26);
    }
    v[n] = '\0';
    assert_int_equal(fx_put(f, "big", v, 0), 0);
    struct store_put_req q = put_req("big", NULL, 0);
    q.ignore_value = true;
    assert_int_equal(put_opts(f, q, NULL), 0);
    struct store_range_result r = range_ok(f, rq("big", NULL));
    assert_int_equal(r.kvs_count, 1);
    assert_int_equal(r.kvs[0].value_len, n);
    assert_memory_equal(r.kvs[0].value, v, n);
    assert_int_equal(r.kvs[0].version, 2);
    free(v);
}

static void test_longest_key_is_accepted(void **state)
{
    struct fx *f = *state;
    char key[STORE_KEY_BYTES_MAX + 1];
    memset(key, 'k', STORE_KEY_BYTES_MAX);
    key[STORE_KEY_BYTES_MAX] = '\0';
    assert_int_equal(fx_put(f, key, "v", 0), 0);
    assert_int_equal(fx_get(f, key, NULL, 0, NULL), 0);
    assert_int_equal(fx_del(f, key), 0);
    assert_int_equal(fx_get(f, key, NULL, 0, NULL), LATCH_ENOTFOUND);
}

/* ---------------------------------------------------------------------------------- */
/* DeleteRange                                                                        */
/* ---------------------------------------------------------------------------------- */

static void put_keys(struct fx *f, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fx_put(f, keys[i], keys[i], 0), 0);
    }
}

static void test_delete_range_deletes_in_key_order_in_one_revision(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"b2", "a", "b1", "b3", "c"};
    struct store_delete_result d;
    char buf[64];
    put_keys(f, keys, 5);
    assert_int_equal(fx_rev(f), 6);
    assert_int_equal(del_range(f, "b", "c", 1, true, &d), 0);
    assert_int_equal(d.deleted, 3);
    assert_int_equal(d.prev_kvs_count, 3);
    assert_kv(&d.prev_kvs[0], "b1", "b1", 4, 4, 1, 0);
    assert_kv(&d.prev_kvs[1], "b2", "b2", 2, 2, 1, 0);
    assert_kv(&d.prev_kvs[2], "b3", "b3", 5, 5, 1, 0);
    assert_int_equal(fx_rev(f), 7);
    struct store_range_result r = range_ok(f, rq_all());
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,c");
}

static void test_delete_range_without_prev_kv_reports_count_only(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "b", "c"};
    struct store_delete_result d;
    put_keys(f, keys, 3);
    assert_int_equal(del_range(f, "a", "c", 1, false, &d), 0);
    assert_int_equal(d.deleted, 2);
    assert_int_equal(d.prev_kvs_count, 0);
}

static void test_delete_range_end_zero_deletes_every_key_from_key(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "b", "c", "d"};
    struct store_delete_result d;
    char buf[64];
    put_keys(f, keys, 4);
    assert_int_equal(del_range(f, "b", "\0", 1, false, &d), 0);
    assert_int_equal(d.deleted, 3);
    struct store_range_result r = range_ok(f, rq_all());
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a");
}

static void test_delete_all_with_zero_key_and_zero_end(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "b", "c"};
    static const uint8_t zero[1] = {0};
    put_keys(f, keys, 3);
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del =
        (struct store_delete_req){.key = zero, .key_len = 1, .range_end = zero, .range_end_len = 1};
    struct store_result res;
    assert_int_equal(apply_op(f, &op, &res), 0);
    assert_int_equal(res.u.txn.responses[0].u.del.deleted, 3);
    assert_int_equal(range_ok(f, rq_all()).count, 0);
}

/* ---------------------------------------------------------------------------------- */
/* Range                                                                              */
/* ---------------------------------------------------------------------------------- */

static void test_range_single_key_prefix_from_key_and_everything(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "foo", "foo/1", "foo/2", "fop", "z"};
    char buf[128];
    put_keys(f, keys, 6);
    struct store_range_result r = range_ok(f, rq("foo", NULL));
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "foo");
    r = range_ok(f, rq("foo/", "foo0")); /* etcd's prefix: end = prefix + 1 */
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "foo/1,foo/2");
    struct store_range_req q = rq("fo", NULL);
    q.range_end = B("\0");
    q.range_end_len = 1;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "foo,foo/1,foo/2,fop,z");
    r = range_ok(f, rq_all());
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,foo,foo/1,foo/2,fop,z");
    assert_int_equal(r.count, 6);
    r = range_ok(f, rq("zz", NULL));
    assert_int_equal(r.count, 0);
    r = range_ok(f, rq("z", "a")); /* end before key: empty */
    assert_int_equal(r.count, 0);
}

static void test_range_empty_key_is_invalid(void **state)
{
    struct fx *f = *state;
    struct store_range_req q = {.key = B(""), .key_len = 0};
    assert_int_equal(range_rc(f, q), LATCH_EINVAL);
}

static void test_range_limit_sets_more_and_count_is_the_total(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "b", "c", "d"};
    char buf[64];
    put_keys(f, keys, 4);
    struct store_range_req q = rq_all();
    q.limit = 2;
    struct store_range_result r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b");
    assert_true(r.more);
    assert_int_equal(r.count, 4);
    q.limit = 4;
    r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 4);
    assert_false(r.more);
    q.limit = 10;
    r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 4);
    assert_false(r.more);
    q.limit = -1; /* negative: no limit, as etcd */
    r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 4);
}

/* Keys with distinct versions, create and mod revisions, and values:
 *   rev 2 c=v3, 3 a=v1, 4 b=v2, 5 c (v2), 6 a (v2), 7 c (v3) */
static void make_sort_data(struct fx *f)
{
    assert_int_equal(fx_put(f, "c", "3", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_put(f, "b", "1", 0), 0);
    assert_int_equal(fx_put(f, "c", "3", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_put(f, "c", "3", 0), 0);
}

static const char *
sorted(struct fx *f, uint32_t order, uint32_t target, int64_t limit, char *buf, size_t cap)
{
    struct store_range_req q = rq_all();
    q.sort_order = order;
    q.sort_target = target;
    q.limit = limit;
    struct store_range_result r = range_ok(f, q);
    assert_int_equal(r.count, 3);
    return keys_of(&r, buf, cap);
}

static void test_range_sorts_by_every_target_both_ways(void **state)
{
    struct fx *f = *state;
    char buf[64];
    make_sort_data(f);
    /* versions: a 2, b 1, c 3; create: c 2, a 3, b 4; mod: b 4, a 6, c 7; value: b, a, c */
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_KEY, 0, buf, 64), "a,b,c");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_KEY, 0, buf, 64), "c,b,a");
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_VERSION, 0, buf, 64), "b,a,c");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_VERSION, 0, buf, 64), "c,a,b");
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_CREATE, 0, buf, 64), "c,a,b");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_CREATE, 0, buf, 64), "b,a,c");
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_MOD, 0, buf, 64), "b,a,c");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_MOD, 0, buf, 64), "c,a,b");
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_VALUE, 0, buf, 64), "b,a,c");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_VALUE, 0, buf, 64), "c,a,b");
}

static void test_range_sort_target_with_order_none_ascends(void **state)
{
    struct fx *f = *state;
    char buf[64];
    make_sort_data(f);
    assert_string_equal(sorted(f, STORE_SORT_NONE, STORE_SORT_CREATE, 0, buf, 64), "c,a,b");
    assert_string_equal(sorted(f, STORE_SORT_NONE, STORE_SORT_KEY, 0, buf, 64), "a,b,c");
}

static void test_range_limit_applies_after_sort(void **state)
{
    struct fx *f = *state;
    char buf[64];
    make_sort_data(f);
    /* The Mutex recipe: the owner is the key with the lowest create revision. */
    assert_string_equal(sorted(f, STORE_SORT_ASCEND, STORE_SORT_CREATE, 1, buf, 64), "c");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_CREATE, 1, buf, 64), "b");
    assert_string_equal(sorted(f, STORE_SORT_DESCEND, STORE_SORT_MOD, 2, buf, 64), "c,a");
    struct store_range_req q = rq_all();
    q.sort_order = STORE_SORT_DESCEND;
    q.sort_target = STORE_SORT_KEY;
    q.limit = 2;
    struct store_range_result r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "c,b");
    assert_true(r.more);
}

static void test_range_sort_ties_keep_key_order(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"d", "b", "a", "c"};
    char buf[64];
    put_keys(f, keys, 4); /* every version is 1 */
    struct store_range_req q = rq_all();
    q.sort_order = STORE_SORT_DESCEND;
    q.sort_target = STORE_SORT_VERSION;
    struct store_range_result r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b,c,d");
}

static void test_range_filters_prune_results_but_not_count(void **state)
{
    struct fx *f = *state;
    char buf[64];
    make_sort_data(f); /* create: c 2, a 3, b 4; mod: b 4, a 6, c 7 */
    struct store_range_req q = rq_all();
    q.max_create_revision = 3;
    struct store_range_result r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,c");
    assert_int_equal(r.count, 3);
    q = rq_all();
    q.min_create_revision = 3;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b");
    q = rq_all();
    q.min_mod_revision = 5;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,c");
    q = rq_all();
    q.max_mod_revision = 6;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b");
    q = rq_all();
    q.min_mod_revision = 5;
    q.max_mod_revision = 6;
    q.limit = 1;
    r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a");
    assert_false(r.more);
    assert_int_equal(r.count, 3);
}

static void test_range_max_create_with_descending_sort_finds_the_waiters_predecessor(void **state)
{
    struct fx *f = *state;
    char buf[64];
    /* Mutex waitDeletes: the last key created before mine. */
    assert_int_equal(fx_put(f, "lock/a", "", 0), 0); /* 2 */
    assert_int_equal(fx_put(f, "lock/b", "", 0), 0); /* 3 */
    assert_int_equal(fx_put(f, "lock/c", "", 0), 0); /* 4 */
    struct store_range_req q = rq("lock/", "lock0");
    q.sort_order = STORE_SORT_DESCEND;
    q.sort_target = STORE_SORT_CREATE;
    q.limit = 1;
    q.max_create_revision = 3;
    struct store_range_result r = range_ok(f, q);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "lock/b");
    q.max_create_revision = 1;
    r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 0);
}

static void test_range_keys_only_drops_values_and_count_only_drops_kvs(void **state)
{
    struct fx *f = *state;
    static const char *const keys[] = {"a", "b"};
    put_keys(f, keys, 2);
    struct store_range_req q = rq_all();
    q.keys_only = true;
    struct store_range_result r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 2);
    assert_null(r.kvs[0].value);
    assert_int_equal(r.kvs[0].value_len, 0);
    assert_kv(&r.kvs[1], "b", NULL, 3, 3, 1, 0);
    q = rq_all();
    q.count_only = true;
    q.limit = 1;
    r = range_ok(f, q);
    assert_int_equal(r.kvs_count, 0);
    assert_int_equal(r.count, 2);
    assert_false(r.more);
}

static void test_range_rejects_unknown_sort_values(void **state)
{
    struct fx *f = *state;
    struct store_range_req q = rq_all();
    q.sort_order = 3;
    assert_int_equal(range_rc(f, q), LATCH_EINVAL);
    q = rq_all();
    q.sort_target = 5;
    assert_int_equal(range_rc(f, q), LATCH_EINVAL);
}

/* ---------------------------------------------------------------------------------- */
/* Historical reads                                                                   */
/* ---------------------------------------------------------------------------------- */

static struct store_range_result range_at(struct fx *f, struct store_range_req q, int64_t rev)
{
    q.revision = rev;
    return range_ok(f, q);
}

static void test_range_at_old_revision_sees_old_values_and_deleted_keys(void **state)
{
    struct fx *f = *state;
    char buf[64];
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_put(f, "b", "1", 0), 0); /* 3 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 4 */
    assert_int_equal(fx_del(f, "b"), 0);         /* 5 */
    assert_int_equal(fx_put(f, "b", "2", 0), 0); /* 6 */
    assert_int_equal(fx_put(f, "c", "1", 0), 0); /* 7 */
    assert_int_equal(fx_del(f, "c"), 0);         /* 8 */

    struct store_range_result r = range_at(f, rq_all(), 1);
    assert_int_equal(r.count, 0);
    r = range_at(f, rq_all(), 3);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b");
    assert_kv(&r.kvs[0], "a", "1", 2, 2, 1, 0);
    assert_kv(&r.kvs[1], "b", "1", 3, 3, 1, 0);
    r = range_at(f, rq_all(), 4);
    assert_kv(&r.kvs[0], "a", "2", 2, 4, 2, 0);
    r = range_at(f, rq_all(), 5);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a");
    r = range_at(f, rq_all(), 7);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b,c");
    assert_kv(&r.kvs[1], "b", "2", 6, 6, 1, 0);
    r = range_at(f, rq("c", NULL), 7);
    assert_kv(&r.kvs[0], "c", "1", 7, 7, 1, 0);
    r = range_at(f, rq_all(), 8);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,b");
    r = range_at(f, rq("c", NULL), 8);
    assert_int_equal(r.count, 0);
}

static void test_range_at_old_revision_applies_sort_limit_and_filters(void **state)
{
    struct fx *f = *state;
    char buf[64];
    make_sort_data(f); /* ... 7: c version 3 */
    assert_int_equal(fx_del(f, "c"), 0);
    assert_int_equal(fx_put(f, "b", "9", 0), 0);
    struct store_range_req q = rq_all();
    q.sort_order = STORE_SORT_DESCEND;
    q.sort_target = STORE_SORT_VERSION;
    q.limit = 2;
    struct store_range_result r = range_at(f, q, 7);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "c,a");
    assert_true(r.more);
    assert_int_equal(r.count, 3);
    q = rq_all();
    q.min_mod_revision = 5;
    r = range_at(f, q, 6);
    assert_string_equal(keys_of(&r, buf, sizeof(buf)), "a,c");
}

static void test_range_header_revision_is_current_also_for_old_revisions(void **state)
{
    struct fx *f = *state;
    struct store_range_result out;
    int64_t hdr = 0;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    struct store_range_req q = rq("a", NULL);
    q.revision = 2;
    assert_int_equal(store_range(f->r, &q, &f->arena, &out, &hdr), 0);
    assert_int_equal(hdr, 3);
    assert_kv(&out.kvs[0], "a", "1", 2, 2, 1, 0);
}

static void test_range_at_future_revision_fails(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    struct store_range_req q = rq("a", NULL);
    q.revision = 3;
    assert_int_equal(range_rc(f, q), LATCH_EFUTUREREV);
    q.revision = 2;
    assert_int_equal(range_rc(f, q), 0);
    q.revision = -5; /* negative means current, as etcd's rangeKeys */
    assert_int_equal(range_ok(f, q).kvs_count, 1);
}

/* ---------------------------------------------------------------------------------- */
/* Compaction                                                                         */
/* ---------------------------------------------------------------------------------- */

static void test_compact_keeps_reads_at_and_above_the_compaction_revision(void **state)
{
    struct fx *f = *state;
    char buf[64];
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 3 */
    assert_int_equal(fx_put(f, "b", "1", 0), 0); /* 4 */
    assert_int_equal(fx_del(f, "b"), 0);         /* 5 */
    assert_int_equal(fx_put(f, "c", "1", 0), 0); /* 6 */
    assert_int_equal(fx_del(f, "c"), 0);         /* 7 */
    assert_int_equal(fx_put(f, "a", "3", 0), 0); /* 8 */
    struct store_range_result before[9];
    for (int64_t rev = 6; rev <= 8; rev++) {
        before[rev] = range_at(f, rq_all(), rev);
    }
    char want[9][64];
    for (int64_t rev = 6; rev <= 8; rev++) {
        keys_of(&before[rev], want[rev], sizeof(want[rev]));
    }
    assert_string_equal(want[6], "a,c");
    assert_int_equal(compact(f, 6), 0);
    assert_int_equal(fx_rev(f), 8); /* compaction writes no event */
    for (int64_t rev = 6; rev <= 8; rev++) {
        struct store_range_result r = range_at(f, rq_all(), rev);
        assert_string_equal(keys_of(&r, buf, sizeof(buf)), want[rev]);
    }
    struct store_range_result r = range_at(f, rq("a", NULL), 6);
    assert_kv(&r.kvs[0], "a", "2", 2, 3, 2, 0);
    r = range_at(f, rq("a", NULL), 8);
    assert_kv(&r.kvs[0], "a", "3", 2, 8, 3, 0);
    r = range_at(f, rq("c", NULL), 6);
    assert_kv(&r.kvs[0], "c", "1", 6, 6, 1, 0);
}

static void test_range_below_the_compaction_revision_is_compacted(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
    assert_int_equal(compact(f, 3), 0);
    struct store_range_req q = rq("a", NULL);
    q.revision = 2;
    assert_int_equal(range_rc(f, q), LATCH_ECOMPACTED);
    q.revision = 3;
    assert_int_equal(range_rc(f, q), 0);
    q.revision = 0;
    assert_int_equal(range_rc(f, q), 0);
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    assert_int_equal(st.compact_revision, 3);
}

static void
test_compact_at_or_below_the_previous_point_is_compacted_and_above_current_is_future(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(compact(f, 4), LATCH_EFUTUREREV);
    assert_int_equal(compact(f, 2), 0);
    assert_int_equal(compact(f, 2), LATCH_ECOMPACTED);
    assert_int_equal(compact(f, 1), LATCH_ECOMPACTED);
    assert_int_equal(compact(f, 3), 0);
    assert_int_equal(fx_rev(f), 3);
}

static void
test_compaction_drops_a_deleted_key_so_old_reads_fail_and_new_ones_do_not_see_it(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_del(f, "a"), 0);         /* 3 */
    assert_int_equal(fx_put(f, "b", "1", 0), 0); /* 4 */
    assert_int_equal(compact(f, 4), 0);
    for (int64_t rev = 4; rev <= 4; rev++) {
        assert_int_equal(range_at(f, rq("a", NULL), rev).count, 0);
    }
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 5: a fresh generation */
    struct store_range_result r = range_ok(f, rq("a", NULL));
    assert_kv(&r.kvs[0], "a", "2", 5, 5, 1, 0);
    assert_int_equal(range_at(f, rq("a", NULL), 4).count, 0);
    assert_int_equal(compact(f, 5), 0);
    r = range_at(f, rq("a", NULL), 5);
    assert_kv(&r.kvs[0], "a", "2", 5, 5, 1, 0);
}

static void test_compaction_at_a_delete_keeps_it_until_the_next_compaction(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_del(f, "a"), 0);         /* 3 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 4 */
    assert_int_equal(compact(f, 3), 0);
    assert_int_equal(range_at(f, rq("a", NULL), 3).count, 0);
    assert_int_equal(range_at(f, rq("a", NULL), 4).count, 1);
    assert_int_equal(compact(f, 4), 0);
    assert_int_equal(range_at(f, rq("a", NULL), 4).count, 1);
    assert_int_equal(fx_del(f, "a"), 0); /* 5 */
    assert_int_equal(compact(f, 5), 0);
    assert_int_equal(range_at(f, rq_all(), 5).count, 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
    struct store_range_result r = range_ok(f, rq("a", NULL));
    assert_kv(&r.kvs[0], "a", "3", 6, 6, 1, 0);
}

static void test_compaction_survives_reopen(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(compact(f, 3), 0);
    fx_reopen(f);
    struct store_range_req q = rq("a", NULL);
    q.revision = 2;
    assert_int_equal(range_rc(f, q), LATCH_ECOMPACTED);
    assert_int_equal(compact(f, 3), LATCH_ECOMPACTED);
    struct store_range_result r = range_ok(f, rq("a", NULL));
    assert_kv(&r.kvs[0], "a", "2", 2, 3, 2, 0);
}

/* ---------------------------------------------------------------------------------- */
/* Model check: every revision from the compaction point on, after random commands    */
/* ---------------------------------------------------------------------------------- */

#define M_KEYS 6
#define M_REVS 400

struct m_kv {
    bool live;
    int64_t create, mod, version;
    char value[16];
};

struct model {
    struct m_kv at[M_REVS][M_KEYS]; /* state after each revision */
    int64_t rev;
    int64_t compact;
};

static const char *const m_names[M_KEYS] = {"k0", "k1", "k1/x", "k2", "k3", "k4"};

static uint64_t m_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Compares the store at rev with the model (the whole keyspace). */
static void m_check(struct fx *f, const struct model *m, int64_t rev)
{
    struct store_range_result r = range_at(f, rq_all(), rev);
    size_t j = 0;
    for (int k = 0; k < M_KEYS; k++) {
        const struct m_kv *e = &m->at[rev][k];
        if (!e->live) {
            continue;
        }
        assert_true(j < r.kvs_count);
        assert_kv(&r.kvs[j], m_names[k], e->value, e->create, e->mod, e->version, 0);
        j++;
    }
    assert_int_equal(j, r.kvs_count);
    assert_int_equal(r.count, (int64_t)j);
}

/* One random command: a txn of puts and deletes of distinct keys, or a compaction. */
static void m_step(struct fx *f, struct model *m, uint64_t *seed)
{
    uint64_t x = m_rand(seed);
    if (x % 10 == 0 && m->rev > m->compact) {
        int64_t c = m->compact + 1 + (int64_t)(m_rand(seed) % (uint64_t)(m->rev - m->compact));
        assert_int_equal(compact(f, c), 0);
        m->compact = c;
        return;
    }
    struct store_op ops[3];
    char vals[3][16];
    size_t n = 1 + (size_t)(m_rand(seed) % 3);
    int first = (int)(m_rand(seed) % M_KEYS);
    struct m_kv next[M_KEYS];
    bool changed = false;
    memcpy(next, m->at[m->rev], sizeof(next));
    for (size_t i = 0; i < n; i++) {
        int k = (first + (int)i) % M_KEYS; /* distinct keys: no duplicate-key error */
        if (m_rand(seed) % 3 == 0) {
            ops[i] = (struct store_op){.type = STORE_OP_DELETE};
            ops[i].u.del =
                (struct store_delete_req){.key = B(m_names[k]), .key_len = L(m_names[k])};
            changed |= next[k].live;
            next[k].live = false;
            continue;
        }
        snprintf(vals[i], sizeof(vals[i]), "v%llu", (unsigned long long)(m_rand(seed) % 1000));
        ops[i] = (struct store_op){.type = STORE_OP_PUT};
        ops[i].u.put = put_req(m_names[k], vals[i], 0);
        if (!next[k].live) {
            next[k] = (struct m_kv){.live = true, .create = m->rev + 1};
        }
        next[k].mod = m->rev + 1;
        next[k].version++;
        snprintf(next[k].value, sizeof(next[k].value), "%s", vals[i]);
        changed = true;
    }
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = ops;
    c.u.txn.success_count = n;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    if (changed) {
        m->rev++;
        memcpy(m->at[m->rev], next, sizeof(next));
    }
    assert_int_equal(fx_rev(f), m->rev);
}

static void test_model_every_revision_matches_after_random_commands_and_compactions(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    assert_non_null(m);
    m->rev = 1;
    while (m->rev < M_REVS - 1) {
        m_step(f, m, &seed);
        /* The newest revisions every step, all of them now and then. */
        int64_t from = m->rev - 3 > m->compact ? m->rev - 3 : m->compact;
        if (m_rand(&seed) % 16 == 0) {
            from = m->compact;
        }
        for (int64_t rev = from > 1 ? from : 1; rev <= m->rev; rev++) {
            m_check(f, m, rev);
        }
        if (m->compact > 1) {
            struct store_range_req q = rq_all();
            q.revision = m->compact - 1;
            assert_int_equal(range_rc(f, q), LATCH_ECOMPACTED);
        }
    }
    fx_reopen(f);
    for (int64_t rev = m->compact > 1 ? m->compact : 1; rev <= m->rev; rev++) {
        m_check(f, m, rev);
    }
    free(m);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fresh_store_is_at_revision_one_with_no_keys),
        T(test_put_creates_key_with_version_one_at_next_revision),
        T(test_put_on_existing_key_keeps_create_revision_and_bumps_version),
        T(test_put_on_deleted_key_restarts_version_at_one),
        T(test_delete_bumps_revision_once),
        T(test_delete_of_missing_key_does_not_bump_revision),
        T(test_empty_value_is_a_value),
        T(test_put_prev_kv_returns_previous_state_but_none_on_create),
        T(test_put_ignore_value_keeps_old_value),
        T(test_put_ignore_value_with_prev_kv_keeps_old_value),
        T(test_put_ignore_lease_keeps_old_lease),
        T(test_put_ignore_flags_on_missing_key_are_not_found_and_write_nothing),
        T(test_put_with_unknown_lease_is_not_found),
        T(test_put_with_lease_attaches_and_a_new_lease_moves_the_key),
        T(test_delete_detaches_key_from_its_lease),
        T(test_lease_revoke_deletes_attached_keys_in_one_revision),
        T(test_large_value_round_trips_and_survives_ignore_value),
        T(test_longest_key_is_accepted),
        T(test_delete_range_deletes_in_key_order_in_one_revision),
        T(test_delete_range_without_prev_kv_reports_count_only),
        T(test_delete_range_end_zero_deletes_every_key_from_key),
        T(test_delete_all_with_zero_key_and_zero_end),
        T(test_range_single_key_prefix_from_key_and_everything),
        T(test_range_empty_key_is_invalid),
        T(test_range_limit_sets_more_and_count_is_the_total),
        T(test_range_sorts_by_every_target_both_ways),
        T(test_range_sort_target_with_order_none_ascends),
        T(test_range_limit_applies_after_sort),
        T(test_range_sort_ties_keep_key_order),
        T(test_range_filters_prune_results_but_not_count),
        T(test_range_max_create_with_descending_sort_finds_the_waiters_predecessor),
        T(test_range_keys_only_drops_values_and_count_only_drops_kvs),
        T(test_range_rejects_unknown_sort_values),
        T(test_range_at_old_revision_sees_old_values_and_deleted_keys),
        T(test_range_at_old_revision_applies_sort_limit_and_filters),
        T(test_range_header_revision_is_current_also_for_old_revisions),
        T(test_range_at_future_revision_fails),
        T(test_compact_keeps_reads_at_and_above_the_compaction_revision),
        T(test_range_below_the_compaction_revision_is_compacted),
        T(test_compact_at_or_below_the_previous_point_is_compacted_and_above_current_is_future),
        T(test_compaction_drops_a_deleted_key_so_old_reads_fail_and_new_ones_do_not_see_it),
        T(test_compaction_at_a_delete_keeps_it_until_the_next_compaction),
        T(test_compaction_survives_reopen),
        T(test_model_every_revision_matches_after_random_commands_and_compactions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
