/*
 * test_history.c — store_history, the watch catch-up iterator (ETCD-API.md §4.5, DESIGN §2
 * watch guarantees): events in (revision, sub-revision) order, PUT events with the full
 * key-value, DELETE events with only key and mod_revision, prev_kv as etcd reads it (the
 * key at mod_revision - 1, never for a create), key and range filters, bounded chunks that
 * never split a revision and resume without gaps, and the compacted-start rule (a start
 * equal to the compaction point is fine).
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
#define N(a) (sizeof(a) / sizeof((a)[0]))

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

static void apply_ops(struct fx *f, struct store_op *ops, size_t n)
{
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = ops;
    c.u.txn.success_count = n;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

/* One txn with two events on key: etcd's checkIntervals accepts a nested put followed by
 * a sibling nested delete of the same key (it checks a nested txn's puts only against the
 * deletes before it). */
static void apply_put_then_nested_delete(struct fx *f, const char *key, const char *value)
{
    struct store_op put[] = {fx_op_put(key, value)};
    struct store_op del[] = {fx_op_del(key, NULL)};
    struct store_txn_req tp = {.success = put, .success_count = 1};
    struct store_txn_req td = {.success = del, .success_count = 1};
    struct store_op ops[] = {{.type = STORE_OP_TXN}, {.type = STORE_OP_TXN}};
    ops[0].u.txn = &tp;
    ops[1].u.txn = &td;
    struct store_txn_req t = {.success = ops, .success_count = 2};
    assert_int_equal(store_txn_validate(&t, NULL, 0), 0);
    apply_ops(f, ops, N(ops));
}

static int compact(struct fx *f, int64_t rev)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = rev;
    return fx_apply(f, &c, NULL);
}

struct hist {
    struct store_event *ev;
    size_t n;
    int64_t next;
};

static int history(struct fx *f, const struct store_history_req *q, struct hist *h)
{
    return store_history(f->r, q, &f->arena, &h->ev, &h->n, &h->next);
}

static struct hist history_ok(struct fx *f, struct store_history_req q)
{
    struct hist h;
    int rc = history(f, &q, &h);
    if (rc != 0) {
        fail_msg("store_history: %s", latch_error_name(rc));
    }
    return h;
}

/* "PUT k=v@rev" / "DEL k@rev" lines joined by ' ', for whole-sequence assertions. */
static const char *describe(const struct hist *h, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < h->n && n < cap; i++) {
        const struct store_event *e = &h->ev[i];
        if (e->type == STORE_EVENT_PUT) {
            n += (size_t)snprintf(buf + n, cap - n, "%sPUT %.*s=%.*s@%lld", i > 0 ? " " : "",
                                  (int)e->kv.key_len, (const char *)e->kv.key, (int)e->kv.value_len,
                                  (const char *)e->kv.value, (long long)e->kv.mod_revision);
        } else {
            n += (size_t)snprintf(buf + n, cap - n, "%sDEL %.*s@%lld", i > 0 ? " " : "",
                                  (int)e->kv.key_len, (const char *)e->kv.key,
                                  (long long)e->kv.mod_revision);
        }
    }
    return buf;
}

/* rev 2 put a=1, 3 put b=1, 4 put a=2, 5 del a, 6 put a=3 */
static void make_history(struct fx *f)
{
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 0), 0);
    assert_int_equal(fx_del(f, "a"), 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
}

static void test_history_returns_every_event_from_start_in_order(void **state)
{
    struct fx *f = *state;
    char buf[256];
    make_history(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 1});
    assert_string_equal(describe(&h, buf, sizeof(buf)),
                        "PUT a=1@2 PUT b=1@3 PUT a=2@4 DEL a@5 PUT a=3@6");
    assert_int_equal(h.next, 7);
    h = history_ok(f, (struct store_history_req){.start_revision = 4});
    assert_string_equal(describe(&h, buf, sizeof(buf)), "PUT a=2@4 DEL a@5 PUT a=3@6");
}

static void test_history_put_event_carries_the_full_key_value(void **state)
{
    struct fx *f = *state;
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 11;
    g.u.lease_grant.ttl = 30;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "a", "2", 11), 0);
    int64_t rev = fx_rev(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = rev});
    assert_int_equal(h.n, 1);
    const struct store_kv *kv = &h.ev[0].kv;
    assert_int_equal(h.ev[0].type, STORE_EVENT_PUT);
    assert_int_equal(kv->create_revision, rev - 1);
    assert_int_equal(kv->mod_revision, rev);
    assert_int_equal(kv->version, 2);
    assert_int_equal(kv->lease, 11);
    assert_int_equal(kv->value_len, 1);
    assert_memory_equal(kv->value, "2", 1);
    assert_false(h.ev[0].has_prev); /* not asked for */
}

static void test_history_delete_event_carries_only_key_and_mod_revision(void **state)
{
    struct fx *f = *state;
    make_history(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 5});
    const struct store_event *e = &h.ev[0];
    assert_int_equal(e->type, STORE_EVENT_DELETE);
    assert_int_equal(e->kv.key_len, 1);
    assert_memory_equal(e->kv.key, "a", 1);
    assert_int_equal(e->kv.mod_revision, 5);
    assert_int_equal(e->kv.create_revision, 0);
    assert_int_equal(e->kv.version, 0);
    assert_int_equal(e->kv.lease, 0);
    assert_int_equal(e->kv.value_len, 0);
}

static void test_history_prev_kv_for_updates_and_deletes_but_not_creates(void **state)
{
    struct fx *f = *state;
    make_history(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 1, .prev_kv = true});
    assert_int_equal(h.n, 5);
    assert_false(h.ev[0].has_prev); /* create of a */
    assert_false(h.ev[1].has_prev); /* create of b */
    assert_true(h.ev[2].has_prev);  /* a=2 over a=1 */
    assert_memory_equal(h.ev[2].prev.value, "1", 1);
    assert_int_equal(h.ev[2].prev.mod_revision, 2);
    assert_int_equal(h.ev[2].prev.version, 1);
    assert_true(h.ev[3].has_prev); /* the delete shows what it deleted */
    assert_memory_equal(h.ev[3].prev.key, "a", 1);
    assert_memory_equal(h.ev[3].prev.value, "2", 1);
    assert_int_equal(h.ev[3].prev.mod_revision, 4);
    assert_false(h.ev[4].has_prev); /* a re-create after the delete */
}

static void test_history_prev_kv_is_the_state_before_the_revision(void **state)
{
    struct fx *f = *state;
    /* etcd reads prev at mod_revision - 1: two events of one key in one txn both show
     * the value before the txn. */
    assert_int_equal(fx_put(f, "a", "old", 0), 0);
    apply_put_then_nested_delete(f, "a", "new"); /* rev 3: PUT a=new, DEL a */
    assert_int_equal(fx_get(f, "a", NULL, 0, NULL), LATCH_ENOTFOUND);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 3, .prev_kv = true});
    assert_int_equal(h.n, 2);
    assert_int_equal(h.ev[0].type, STORE_EVENT_PUT);
    assert_true(h.ev[0].has_prev);
    assert_memory_equal(h.ev[0].prev.value, "old", 3);
    assert_int_equal(h.ev[1].type, STORE_EVENT_DELETE);
    assert_true(h.ev[1].has_prev);
    assert_memory_equal(h.ev[1].prev.value, "old", 3);
}

static void test_history_filters_by_key_and_by_range(void **state)
{
    struct fx *f = *state;
    char buf[256];
    assert_int_equal(fx_put(f, "a", "1", 0), 0);   /* 2 */
    assert_int_equal(fx_put(f, "p/1", "1", 0), 0); /* 3 */
    assert_int_equal(fx_put(f, "p/2", "1", 0), 0); /* 4 */
    assert_int_equal(fx_put(f, "q", "1", 0), 0);   /* 5 */
    assert_int_equal(fx_del(f, "p/1"), 0);         /* 6 */
    struct store_history_req q = {.start_revision = 1, .key = B("p/1"), .key_len = 3};
    struct hist h = history_ok(f, q);
    assert_string_equal(describe(&h, buf, sizeof(buf)), "PUT p/1=1@3 DEL p/1@6");
    assert_int_equal(h.next, 7);
    q.range_end = B("p0");
    q.key = B("p/");
    q.key_len = 2;
    q.range_end_len = 2;
    h = history_ok(f, q);
    assert_string_equal(describe(&h, buf, sizeof(buf)), "PUT p/1=1@3 PUT p/2=1@4 DEL p/1@6");
    q.range_end = B("\0");
    q.range_end_len = 1;
    h = history_ok(f, q);
    assert_string_equal(describe(&h, buf, sizeof(buf)),
                        "PUT p/1=1@3 PUT p/2=1@4 PUT q=1@5 DEL p/1@6");
}

/* rev 2: a txn of 5 puts; revs 3..5: one put each. */
static void make_big_revision(struct fx *f)
{
    struct store_op ops[] = {fx_op_put("t1", "1"), fx_op_put("t2", "2"), fx_op_put("t3", "3"),
                             fx_op_put("t4", "4"), fx_op_put("t5", "5")};
    apply_ops(f, ops, N(ops));
    assert_int_equal(fx_put(f, "x", "1", 0), 0);
    assert_int_equal(fx_put(f, "y", "1", 0), 0);
    assert_int_equal(fx_put(f, "z", "1", 0), 0);
}

static void test_history_chunk_never_splits_a_revision(void **state)
{
    struct fx *f = *state;
    make_big_revision(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 1, .max_events = 2});
    assert_int_equal(h.n, 5); /* the whole txn, more than max_events */
    for (size_t i = 0; i < h.n; i++) {
        assert_int_equal(h.ev[i].kv.mod_revision, 2);
    }
    assert_int_equal(h.next, 3);
    h = history_ok(f, (struct store_history_req){.start_revision = 3, .max_events = 2});
    assert_int_equal(h.n, 2);
    assert_int_equal(h.next, 5);
    h = history_ok(f, (struct store_history_req){.start_revision = 5, .max_events = 2});
    assert_int_equal(h.n, 1);
    assert_int_equal(h.next, 6);
}

static void test_history_max_bytes_bounds_a_chunk_at_a_revision_boundary(void **state)
{
    struct fx *f = *state;
    make_big_revision(f); /* revision 2 holds 10 key+value bytes, 3..5 two each */
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 1, .max_bytes = 1});
    assert_int_equal(h.n, 5);
    assert_int_equal(h.next, 3);
    h = history_ok(f, (struct store_history_req){.start_revision = 3, .max_bytes = 4});
    assert_int_equal(h.n, 2);
    assert_int_equal(h.next, 5);
}

static void test_history_resumes_from_next_revision_without_gaps_or_duplicates(void **state)
{
    struct fx *f = *state;
    char all[1024], joined[1024], buf[1024];
    make_big_revision(f);
    make_history(f);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 1});
    describe(&h, all, sizeof(all));
    int64_t start = 1, cur = fx_rev(f);
    size_t used = 0;
    joined[0] = '\0';
    for (int calls = 0; start <= cur; calls++) {
        assert_true(calls < 20);
        h = history_ok(f, (struct store_history_req){.start_revision = start, .max_events = 1});
        assert_true(h.next > start);
        if (h.n > 0) {
            used += (size_t)snprintf(joined + used, sizeof(joined) - used, "%s%s",
                                     used > 0 ? " " : "", describe(&h, buf, sizeof(buf)));
            assert_int_equal(h.next, h.ev[h.n - 1].kv.mod_revision + 1);
        }
        start = h.next;
    }
    assert_int_equal(start, cur + 1);
    assert_string_equal(joined, all);
}

static void test_history_start_in_the_future_returns_nothing_and_waits_there(void **state)
{
    struct fx *f = *state;
    make_history(f); /* current 6 */
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 7});
    assert_int_equal(h.n, 0);
    assert_int_equal(h.next, 7);
    h = history_ok(f, (struct store_history_req){.start_revision = 50});
    assert_int_equal(h.n, 0);
    assert_int_equal(h.next, 50);
}

static void test_history_start_zero_is_invalid(void **state)
{
    struct fx *f = *state;
    struct hist h;
    struct store_history_req q = {.start_revision = 0};
    assert_int_equal(history(f, &q, &h), LATCH_EINVAL);
}

static void test_history_below_the_compaction_point_is_compacted(void **state)
{
    struct fx *f = *state;
    char buf[256];
    struct hist h;
    make_history(f);
    assert_int_equal(compact(f, 5), 0);
    struct store_history_req q = {.start_revision = 4};
    assert_int_equal(history(f, &q, &h), LATCH_ECOMPACTED);
    q.start_revision = 1;
    assert_int_equal(history(f, &q, &h), LATCH_ECOMPACTED);
    /* Equal to the compaction point is fine, and still has that revision's delete. */
    h = history_ok(f, (struct store_history_req){.start_revision = 5});
    assert_string_equal(describe(&h, buf, sizeof(buf)), "DEL a@5 PUT a=3@6");
}

static void test_history_from_the_compaction_point_keeps_a_whole_txn_there(void **state)
{
    struct fx *f = *state;
    char buf[256];
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 3 */
    apply_put_then_nested_delete(f, "a", "3");   /* rev 4: PUT a=3, DEL a */
    assert_int_equal(fx_put(f, "b", "1", 0), 0); /* 5 */
    assert_int_equal(compact(f, 4), 0);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 4, .prev_kv = true});
    assert_string_equal(describe(&h, buf, sizeof(buf)), "PUT a=3@4 DEL a@4 PUT b=1@5");
    /* prev at revision 3 is below the compaction point: etcd cannot read it either. */
    assert_false(h.ev[0].has_prev);
    assert_false(h.ev[1].has_prev);
    assert_int_equal(compact(f, 5), 0);
    h = history_ok(f, (struct store_history_req){.start_revision = 5});
    assert_string_equal(describe(&h, buf, sizeof(buf)), "PUT b=1@5");
}

static void test_history_prev_kv_survives_compaction_below_it(void **state)
{
    struct fx *f = *state;
    assert_int_equal(fx_put(f, "a", "1", 0), 0); /* 2 */
    assert_int_equal(fx_put(f, "b", "1", 0), 0); /* 3 */
    assert_int_equal(fx_put(f, "a", "2", 0), 0); /* 4 */
    assert_int_equal(compact(f, 3), 0);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = 4, .prev_kv = true});
    assert_int_equal(h.n, 1);
    assert_true(h.ev[0].has_prev); /* a=1 is the newest put of a at or below 3: kept */
    assert_memory_equal(h.ev[0].prev.value, "1", 1);
}

static void test_history_shows_lease_revoke_as_deletes_in_one_revision(void **state)
{
    struct fx *f = *state;
    char buf[256];
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 3;
    g.u.lease_grant.ttl = 30;
    assert_int_equal(fx_apply(f, &g, NULL), 0);
    assert_int_equal(fx_put(f, "l/1", "v", 3), 0);
    assert_int_equal(fx_put(f, "l/2", "v", 3), 0);
    int64_t rev = fx_rev(f);
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = 3;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
    struct hist h = history_ok(f, (struct store_history_req){.start_revision = rev + 1});
    snprintf(buf, sizeof(buf), "DEL l/1@%lld DEL l/2@%lld", (long long)rev + 1, (long long)rev + 1);
    char got[256];
    assert_string_equal(describe(&h, got, sizeof(got)), buf);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_history_returns_every_event_from_start_in_order),
        T(test_history_put_event_carries_the_full_key_value),
        T(test_history_delete_event_carries_only_key_and_mod_revision),
        T(test_history_prev_kv_for_updates_and_deletes_but_not_creates),
        T(test_history_prev_kv_is_the_state_before_the_revision),
        T(test_history_filters_by_key_and_by_range),
        T(test_history_chunk_never_splits_a_revision),
        T(test_history_max_bytes_bounds_a_chunk_at_a_revision_boundary),
        T(test_history_resumes_from_next_revision_without_gaps_or_duplicates),
        T(test_history_start_in_the_future_returns_nothing_and_waits_there),
        T(test_history_start_zero_is_invalid),
        T(test_history_below_the_compaction_point_is_compacted),
        T(test_history_from_the_compaction_point_keeps_a_whole_txn_there),
        T(test_history_prev_kv_survives_compaction_below_it),
        T(test_history_shows_lease_revoke_as_deletes_in_one_revision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
