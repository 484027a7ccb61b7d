/*
 * test_lease.c — leases as the store records them (store_lease.c; ETCD-API.md §4.6):
 * grant with a chosen or a store-assigned id, the grant's refusals, revoke deleting every
 * attached key in one revision (DELETE events with sub-revisions), attach/detach through
 * puts and deletes (I6), time-to-live lookup with keys, listing with paging, remaining-TTL
 * checkpoints, and the NOSPACE alarm refusing grants but not revokes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"

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

static int grant(struct fx *f, int64_t id, int64_t ttl, struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    return fx_apply(f, &c, res);
}

/* Grants and returns the id (asserting success). */
static int64_t grant_ok(struct fx *f, int64_t id, int64_t ttl)
{
    struct store_result res;
    assert_int_equal(grant(f, id, ttl, &res), 0);
    assert_int_equal(res.type, STORE_CMD_LEASE_GRANT);
    assert_int_equal(res.u.lease_grant.ttl, ttl);
    if (id != 0) {
        assert_int_equal(res.u.lease_grant.id, id);
    }
    return res.u.lease_grant.id;
}

static int revoke(struct fx *f, int64_t id, struct store_result *res)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = id;
    return fx_apply(f, &c, res);
}

static int alarm_nospace(struct fx *f, bool on)
{
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = on ? STORE_ALARM_ACTIVATE : STORE_ALARM_DEACTIVATE;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    return fx_apply(f, &c, NULL);
}

/* The keys of lease id joined by ',' into buf; returns the lease's err. */
static int lease_keys(struct fx *f, int64_t id, struct store_lease *l, char *buf, size_t cap)
{
    struct store_kv *kvs = NULL;
    size_t n = 99;
    latch_arena_reset(&f->arena);
    int rc = store_lease_get(f->r, id, true, &f->arena, l, &kvs, &n);
    buf[0] = '\0';
    if (rc != 0) {
        return rc;
    }
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(kvs[i].lease, id);
        assert_true(used + kvs[i].key_len + 2 < cap);
        if (i > 0) {
            buf[used++] = ',';
        }
        memcpy(buf + used, kvs[i].key, kvs[i].key_len);
        used += kvs[i].key_len;
        buf[used] = '\0';
    }
    return 0;
}

static void assert_lease_keys(struct fx *f, int64_t id, const char *want)
{
    struct store_lease l;
    char buf[256];
    assert_int_equal(lease_keys(f, id, &l, buf, sizeof(buf)), 0);
    assert_int_equal(l.id, id);
    assert_string_equal(buf, want);
}

static void test_grant_with_chosen_id_records_ttl_and_does_not_bump_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    assert_int_equal(fx_put(f, "k", "v", 0), 0);
    int64_t rev = fx_rev(f);

    assert_int_equal(grant(f, 42, 10, &res), 0);
    assert_int_equal(res.u.lease_grant.id, 42);
    assert_int_equal(res.u.lease_grant.ttl, 10);
    assert_int_equal(res.revision, rev);
    assert_int_equal(fx_rev(f), rev);

    struct store_lease l;
    assert_int_equal(store_lease_get(f->r, 42, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.id, 42);
    assert_int_equal(l.ttl, 10);
    assert_int_equal(l.remaining_ttl, 0);
    assert_int_equal(l.grant_revision, rev);

    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    assert_int_equal(st.leases_count, 1);
}

static void test_grant_of_an_existing_id_fails_with_eexist(void **state)
{
    struct fx *f = *state;
    grant_ok(f, 5, 10);
    assert_int_equal(grant(f, 5, 99, NULL), LATCH_EEXIST);

    struct store_lease l;
    assert_int_equal(store_lease_get(f->r, 5, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.ttl, 10); /* the failed grant changed nothing */
}

static void test_grant_refuses_bad_ids_and_ttls(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, -1, 10, NULL), LATCH_EINVAL);
    assert_int_equal(grant(f, 1, 0, NULL), LATCH_EINVAL);
    assert_int_equal(grant(f, 1, -5, NULL), LATCH_EINVAL);
    assert_int_equal(grant(f, 1, STORE_LEASE_TTL_MAX + 1, NULL), LATCH_ETOOBIG);
    assert_int_equal(grant(f, 0, STORE_LEASE_TTL_MAX + 1, NULL), LATCH_ETOOBIG);

    struct store_lease *ls;
    size_t n = 99;
    assert_int_equal(store_lease_list(f->r, 0, 0, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 0);

    grant_ok(f, 1, STORE_LEASE_TTL_MAX);
}

static void test_store_assigned_ids_skip_chosen_ones_and_survive_reopen(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant_ok(f, 0, 10), 1);
    grant_ok(f, 2, 10);
    grant_ok(f, 3, 10);
    assert_int_equal(grant_ok(f, 0, 10), 4);
    assert_int_equal(grant_ok(f, 0, 10), 5);
    grant_ok(f, 100, 10);

    fx_reopen(f);
    assert_int_equal(grant_ok(f, 0, 10), 6); /* lease_next was persisted */

    /* A revoked id is not handed out again by the counter. */
    assert_int_equal(revoke(f, 6, NULL), 0);
    assert_int_equal(grant_ok(f, 0, 10), 7);
}

static void test_store_assigned_ids_are_the_same_on_every_replica(void **state)
{
    struct fx *f = *state;
    struct fx g;
    fx_setup(&g);
    const int64_t chosen[] = {0, 3, 0, 0, 1, 0, 9, 0, 0, 0};
    for (size_t i = 0; i < sizeof(chosen) / sizeof(chosen[0]); i++) {
        struct store_result rf;
        struct store_result rg;
        int ef = grant(f, chosen[i], 30, &rf);
        int eg = grant(&g, chosen[i], 30, &rg);
        assert_int_equal(ef, eg);
        if (ef == 0) {
            assert_int_equal(rf.u.lease_grant.id, rg.u.lease_grant.id);
        }
    }
    struct store_lease *lf;
    struct store_lease *lg;
    size_t nf;
    size_t ng;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    assert_int_equal(store_lease_list(f->r, 0, 0, &f->arena, &lf, &nf), 0);
    assert_int_equal(store_lease_list(g.r, 0, 0, &a, &lg, &ng), 0);
    assert_int_equal(nf, ng);
    assert_int_equal(nf, 9); /* chosen 1 collides with an assigned id: EEXIST */
    for (size_t i = 0; i < nf; i++) {
        assert_int_equal(lf[i].id, lg[i].id);
        if (i > 0) {
            assert_true(lf[i - 1].id < lf[i].id); /* unique, id order */
        }
    }
    latch_arena_close(&a);
    fx_teardown(&g);
}

static void test_nospace_alarm_refuses_grants_but_not_revokes(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 1, 10);
    assert_int_equal(fx_put(f, "a", "1", 1), 0);
    assert_int_equal(alarm_nospace(f, true), 0);

    assert_int_equal(grant(f, 2, 10, NULL), LATCH_ENOSPACE);
    assert_int_equal(grant(f, 0, 10, NULL), LATCH_ENOSPACE);
    assert_int_equal(revoke(f, 1, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 1);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);

    assert_int_equal(alarm_nospace(f, false), 0);
    grant_ok(f, 2, 10);
}

static void test_revoke_deletes_attached_keys_in_one_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 7, 10);
    assert_int_equal(fx_put(f, "c", "3", 7), 0);
    assert_int_equal(fx_put(f, "a", "1", 7), 0);
    assert_int_equal(fx_put(f, "d", "4", 0), 0);
    assert_int_equal(fx_put(f, "b", "2", 7), 0);
    int64_t rev = fx_rev(f);

    assert_int_equal(revoke(f, 7, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 3);
    assert_int_equal(res.revision, rev + 1);
    assert_int_equal(fx_rev(f), rev + 1);
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_get(f, "b", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_get(f, "c", NULL, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_get(f, "d", NULL, 0, NULL), 0);

    struct store_lease l;
    assert_int_equal(store_lease_get(f->r, 7, true, &f->arena, &l, NULL, NULL), LATCH_ENOTFOUND);

    struct store_history_req q = {
        .start_revision = rev + 1, .max_events = 100, .max_bytes = 1 << 20};
    struct store_event *ev;
    size_t n;
    int64_t next;
    assert_int_equal(store_history(f->r, &q, &f->arena, &ev, &n, &next), 0);
    assert_int_equal(n, 3);
    const char *want[] = {"a", "b", "c"};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].type, STORE_EVENT_DELETE);
        assert_int_equal(ev[i].kv.mod_revision, rev + 1);
        assert_int_equal(ev[i].kv.key_len, 1);
        assert_memory_equal(ev[i].kv.key, want[i], 1);
    }
    assert_int_equal(next, rev + 2);
}

static void test_revoke_of_a_missing_lease_fails_with_enotfound(void **state)
{
    struct fx *f = *state;
    int64_t rev = fx_rev(f);
    assert_int_equal(revoke(f, 12, NULL), LATCH_ENOTFOUND);
    assert_int_equal(revoke(f, 0, NULL), LATCH_ENOTFOUND);
    assert_int_equal(fx_rev(f), rev);
}

static void test_revoke_of_a_lease_without_keys_keeps_the_revision(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 3, 10);
    int64_t rev = fx_rev(f);
    assert_int_equal(revoke(f, 3, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 0);
    assert_int_equal(fx_rev(f), rev);
    assert_int_equal(grant(f, 3, 10, NULL), 0); /* the id is free again */
}

static void test_put_attaches_keys_listed_in_key_order(void **state)
{
    struct fx *f = *state;
    grant_ok(f, 5, 60);
    assert_int_equal(fx_put(f, "zeta", "1", 5), 0);
    assert_int_equal(fx_put(f, "alpha", "2", 5), 0);
    assert_int_equal(fx_put(f, "mid", "3", 5), 0);
    assert_int_equal(fx_put(f, "free", "4", 0), 0);

    struct store_lease l;
    struct store_kv *kvs;
    size_t n;
    assert_int_equal(store_lease_get(f->r, 5, true, &f->arena, &l, &kvs, &n), 0);
    assert_int_equal(l.ttl, 60);
    assert_int_equal(n, 3);
    assert_memory_equal(kvs[0].key, "alpha", 5);
    assert_memory_equal(kvs[1].key, "mid", 3);
    assert_memory_equal(kvs[2].key, "zeta", 4);
    struct store_kv kv;
    assert_int_equal(fx_get(f, "mid", NULL, 0, &kv), 0);
    assert_int_equal(kv.lease, 5);
}

static void test_reput_with_another_lease_moves_the_key(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 1, 10);
    grant_ok(f, 2, 10);
    assert_int_equal(fx_put(f, "k", "a", 1), 0);
    assert_lease_keys(f, 1, "k");
    assert_int_equal(fx_put(f, "k", "b", 2), 0);
    assert_lease_keys(f, 1, "");
    assert_lease_keys(f, 2, "k");

    /* Revoking the old lease no longer touches the key. */
    assert_int_equal(revoke(f, 1, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 0);
    assert_int_equal(fx_get(f, "k", NULL, 0, NULL), 0);

    /* A put without a lease detaches it. */
    assert_int_equal(fx_put(f, "k", "c", 0), 0);
    assert_lease_keys(f, 2, "");
    assert_int_equal(revoke(f, 2, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 0);
    assert_int_equal(fx_get(f, "k", NULL, 0, NULL), 0);
}

static void test_ignore_lease_put_keeps_the_attachment(void **state)
{
    struct fx *f = *state;
    grant_ok(f, 4, 10);
    assert_int_equal(fx_put(f, "k", "a", 4), 0);
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = B("k");
    op.u.put.key_len = 1;
    op.u.put.value = B("b");
    op.u.put.value_len = 1;
    op.u.put.ignore_lease = true;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_lease_keys(f, 4, "k");
}

static void test_delete_detaches_the_key(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 1, 10);
    assert_int_equal(fx_put(f, "x", "1", 1), 0);
    assert_int_equal(fx_put(f, "y", "1", 1), 0);
    assert_int_equal(fx_del(f, "x"), 0);
    assert_lease_keys(f, 1, "y");
    int64_t rev = fx_rev(f);
    assert_int_equal(revoke(f, 1, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 1);
    assert_int_equal(fx_rev(f), rev + 1);
}

static void test_put_with_a_missing_lease_fails_with_enotfound(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "k", "v", 77), LATCH_ENOTFOUND);
    assert_int_equal(fx_get(f, "k", NULL, 0, NULL), LATCH_ENOTFOUND);
}

static void test_list_pages_by_after_id_in_id_order(void **state)
{
    struct fx *f = *state;
    const int64_t ids[] = {300, 1, 1000, 70, 256};
    for (size_t i = 0; i < 5; i++) {
        grant_ok(f, ids[i], (int64_t)i + 1);
    }
    struct store_lease *ls;
    size_t n;
    assert_int_equal(store_lease_list(f->r, 0, 0, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 5);
    const int64_t sorted[] = {1, 70, 256, 300, 1000};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(ls[i].id, sorted[i]);
    }
    assert_int_equal(ls[0].ttl, 2);
    assert_int_equal(ls[4].ttl, 3);

    assert_int_equal(store_lease_list(f->r, 0, 2, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ls[1].id, 70);
    assert_int_equal(store_lease_list(f->r, 70, 2, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ls[0].id, 256);
    assert_int_equal(ls[1].id, 300);
    assert_int_equal(store_lease_list(f->r, 300, 2, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ls[0].id, 1000);
    assert_int_equal(store_lease_list(f->r, 1000, 2, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_lease_list(f->r, INT64_MAX, 2, &f->arena, &ls, &n), 0);
    assert_int_equal(n, 0);
}

static void test_checkpoint_records_remaining_ttl_and_skips_missing_leases(void **state)
{
    struct fx *f = *state;
    grant_ok(f, 1, 100);
    grant_ok(f, 2, 50);
    int64_t rev = fx_rev(f);
    const struct store_lease_checkpoint items[] = {{1, 40}, {99, 5}, {2, 20}};
    struct store_cmd c = {.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = items;
    c.u.lease_checkpoint.count = 3;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    assert_int_equal(fx_rev(f), rev);

    struct store_lease l;
    assert_int_equal(store_lease_get(f->r, 1, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.ttl, 100);
    assert_int_equal(l.remaining_ttl, 40);
    assert_int_equal(store_lease_get(f->r, 2, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.remaining_ttl, 20);
    assert_int_equal(store_lease_get(f->r, 99, false, &f->arena, &l, NULL, NULL), LATCH_ENOTFOUND);

    /* A later checkpoint overwrites the earlier one; it survives a reopen. */
    const struct store_lease_checkpoint later[] = {{1, 7}};
    c.u.lease_checkpoint.items = later;
    c.u.lease_checkpoint.count = 1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    fx_reopen(f);
    assert_int_equal(store_lease_get(f->r, 1, false, &f->arena, &l, NULL, NULL), 0);
    assert_int_equal(l.remaining_ttl, 7);
}

static void test_lease_get_of_a_missing_lease_fails_with_enotfound(void **state)
{
    struct fx *f = *state;
    struct store_lease l;
    struct store_kv *kvs;
    size_t n;
    assert_int_equal(store_lease_get(f->r, 1, true, &f->arena, &l, &kvs, &n), LATCH_ENOTFOUND);
    assert_int_equal(store_lease_get(f->r, -3, false, &f->arena, &l, NULL, NULL), LATCH_ENOTFOUND);
}

static void test_revoke_of_many_keys_deletes_them_all(void **state)
{
    struct fx *f = *state;
    struct store_result res;
    grant_ok(f, 9, 10);
    /* One txn of 100 puts, then revoke them in one command. */
    struct store_op ops[100];
    char keys[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%03d", 99 - i);
        ops[i] = (struct store_op){.type = STORE_OP_PUT};
        ops[i].u.put.key = B(keys[i]);
        ops[i].u.put.key_len = L(keys[i]);
        ops[i].u.put.value = B("v");
        ops[i].u.put.value_len = 1;
        ops[i].u.put.lease = 9;
    }
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = ops;
    c.u.txn.success_count = 100;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    int64_t rev = fx_rev(f);
    assert_int_equal(revoke(f, 9, &res), 0);
    assert_int_equal(res.u.lease_revoke.deleted, 100);
    assert_int_equal(fx_rev(f), rev + 1);
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    assert_int_equal(st.keys_count, 0);
    assert_int_equal(st.leases_count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_grant_with_chosen_id_records_ttl_and_does_not_bump_revision),
        T(test_grant_of_an_existing_id_fails_with_eexist),
        T(test_grant_refuses_bad_ids_and_ttls),
        T(test_store_assigned_ids_skip_chosen_ones_and_survive_reopen),
        T(test_store_assigned_ids_are_the_same_on_every_replica),
        T(test_nospace_alarm_refuses_grants_but_not_revokes),
        T(test_revoke_deletes_attached_keys_in_one_revision),
        T(test_revoke_of_a_missing_lease_fails_with_enotfound),
        T(test_revoke_of_a_lease_without_keys_keeps_the_revision),
        T(test_put_attaches_keys_listed_in_key_order),
        T(test_reput_with_another_lease_moves_the_key),
        T(test_ignore_lease_put_keeps_the_attachment),
        T(test_delete_detaches_the_key),
        T(test_put_with_a_missing_lease_fails_with_enotfound),
        T(test_list_pages_by_after_id_in_id_order),
        T(test_checkpoint_records_remaining_ttl_and_skips_missing_leases),
        T(test_lease_get_of_a_missing_lease_fails_with_enotfound),
        T(test_revoke_of_many_keys_deletes_them_all),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
