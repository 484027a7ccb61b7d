/*
 * test_hash.c — store_hash_kv, store_hash_all and store_dump (store.h "Hashes and dumps"):
 * two stores that applied the same commands hash alike, a different value changes the
 * hash, HashKV at an old revision ignores later writes, future and compacted revisions
 * fail as etcd's do, and the dump walks every event and lease in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store_fixture.h"

static int setup(void **state)
{
    static struct fx f[2];
    fx_setup(&f[0]);
    fx_setup(&f[1]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_teardown(&f[0]);
    fx_teardown(&f[1]);
    return 0;
}

static void compact(struct fx *f, int64_t rev)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = rev;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

static void grant(struct fx *f, int64_t id, int64_t ttl)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

/* The same workload on f: puts, an overwrite, a delete, a lease with a key. */
static void workload(struct fx *f, const char *last_value)
{
    assert_int_equal(fx_put(f, "a", "1", 0), 0);
    assert_int_equal(fx_put(f, "b", "2", 0), 0);
    assert_int_equal(fx_put(f, "a", "3", 0), 0);
    assert_int_equal(fx_del(f, "b"), 0);
    grant(f, 7, 30);
    assert_int_equal(fx_put(f, "c", last_value, 7), 0);
}

static struct store_hash hash_kv(struct fx *f, int64_t rev)
{
    struct store_hash h;
    assert_int_equal(store_hash_kv(f->r, rev, &h), 0);
    return h;
}

static struct store_hash hash_all(struct fx *f)
{
    struct store_hash h;
    assert_int_equal(store_hash_all(f->r, &h), 0);
    return h;
}

static void test_hash_kv_equal_for_the_same_commands(void **state)
{
    struct fx *f = *state;
    workload(&f[0], "x");
    workload(&f[1], "x");
    struct store_hash h0 = hash_kv(&f[0], 0), h1 = hash_kv(&f[1], 0);
    assert_int_equal(h0.hash, h1.hash);
    assert_int_equal(h0.revision, fx_rev(&f[0]));
    assert_int_equal(h0.current_revision, fx_rev(&f[0]));
    assert_int_equal(h0.compact_revision, 0);
    assert_int_equal(hash_all(&f[0]).hash, hash_all(&f[1]).hash);
    assert_int_not_equal(hash_all(&f[0]).hash, h0.hash); /* leases count in Hash */
}

static void test_hash_kv_differs_for_a_different_value(void **state)
{
    struct fx *f = *state;
    workload(&f[0], "x");
    workload(&f[1], "y");
    assert_int_not_equal(hash_kv(&f[0], 0).hash, hash_kv(&f[1], 0).hash);
    assert_int_not_equal(hash_all(&f[0]).hash, hash_all(&f[1]).hash);
    /* Up to the revision before the last put they still agree. */
    int64_t before = fx_rev(&f[0]) - 1;
    assert_int_equal(hash_kv(&f[0], before).hash, hash_kv(&f[1], before).hash);
}

static void test_hash_kv_at_old_revision_ignores_later_writes(void **state)
{
    struct fx *f = *state;
    workload(&f[0], "x");
    int64_t rev = fx_rev(&f[0]);
    uint32_t h = hash_kv(&f[0], 0).hash;
    assert_int_equal(fx_put(&f[0], "d", "4", 0), 0);
    struct store_hash later = hash_kv(&f[0], rev);
    assert_int_equal(later.hash, h);
    assert_int_equal(later.revision, rev);
    assert_int_equal(later.current_revision, rev + 1);
    assert_int_not_equal(hash_kv(&f[0], 0).hash, h);
}

static void test_hash_kv_future_and_compacted_revisions_fail(void **state)
{
    struct fx *f = *state;
    struct store_hash h;
    workload(&f[0], "x");
    int64_t rev = fx_rev(&f[0]);
    assert_int_equal(store_hash_kv(f[0].r, rev + 1, &h), LATCH_EFUTUREREV);
    assert_int_equal(store_hash_kv(f[0].r, -1, &h), LATCH_EINVAL);
    compact(&f[0], rev - 1);
    assert_int_equal(store_hash_kv(f[0].r, rev - 2, &h), LATCH_ECOMPACTED);
    /* etcd's HashByRev refuses the compact revision itself too. */
    assert_int_equal(store_hash_kv(f[0].r, rev - 1, &h), LATCH_ECOMPACTED);
    h = hash_kv(&f[0], rev);
    assert_int_equal(h.compact_revision, rev - 1);
    /* Compaction is replicated: the other store compacting at the same point agrees. */
    workload(&f[1], "x");
    compact(&f[1], rev - 1);
    assert_int_equal(hash_kv(&f[1], 0).hash, hash_kv(&f[0], 0).hash);
}

struct dump_seen {
    int begins;
    int64_t last_rev;
    uint32_t last_sub;
    int puts, deletes, leases;
    int64_t lease_id;
    char c_value[8];
    int stop_after; /* 0: never */
};

static int on_begin(void *data, const struct store_dump_info *info)
{
    struct dump_seen *d = data;
    d->begins++;
    assert_true(info->revision >= 1);
    return 0;
}

static int on_event(void *data, const struct store_dump_event *ev)
{
    struct dump_seen *d = data;
    assert_true(ev->revision > d->last_rev ||
                (ev->revision == d->last_rev && ev->sub > d->last_sub));
    d->last_rev = ev->revision;
    d->last_sub = ev->sub;
    assert_int_equal(ev->kv.mod_revision, ev->revision);
    if (ev->type == STORE_EVENT_PUT) {
        d->puts++;
        assert_true(ev->kv.version >= 1 && ev->kv.create_revision >= 1);
        if (ev->kv.key_len == 1 && ev->kv.key[0] == 'c') {
            assert_true(ev->kv.value_len < sizeof(d->c_value));
            memcpy(d->c_value, ev->kv.value, ev->kv.value_len);
            assert_int_equal(ev->kv.lease, 7);
        }
    } else {
        d->deletes++;
        assert_int_equal(ev->kv.value_len, 0);
    }
    if (d->stop_after > 0 && d->puts + d->deletes >= d->stop_after) {
        return LATCH_ETOOBIG;
    }
    return 0;
}

static int on_lease(void *data, const struct store_lease *l)
{
    struct dump_seen *d = data;
    d->leases++;
    d->lease_id = l->id;
    assert_int_equal(l->ttl, 30);
    return 0;
}

static void test_dump_walks_events_then_leases(void **state)
{
    struct fx *f = *state;
    workload(&f[0], "x");
    struct dump_seen d = {0};
    struct store_dump_ops ops = {.begin = on_begin, .event = on_event, .lease = on_lease};
    struct store_dump_info info;
    assert_int_equal(store_dump(f[0].r, &ops, &d, &info), 0);
    assert_int_equal(d.begins, 1);
    assert_int_equal(d.puts, 4);
    assert_int_equal(d.deletes, 1);
    assert_int_equal(d.leases, 1);
    assert_int_equal(d.lease_id, 7);
    assert_string_equal(d.c_value, "x");
    assert_int_equal(info.events_count, 5);
    assert_int_equal(info.revision, fx_rev(&f[0]));
    assert_int_equal(info.applied_index, f[0].next_index - 1);
    assert_false(info.alarm_nospace);
}

static void test_dump_stops_on_callback_error(void **state)
{
    struct fx *f = *state;
    workload(&f[0], "x");
    struct dump_seen d = {.stop_after = 2};
    struct store_dump_ops ops = {.event = on_event, .lease = on_lease};
    struct store_dump_info info;
    assert_int_equal(store_dump(f[0].r, &ops, &d, &info), LATCH_ETOOBIG);
    assert_int_equal(d.puts + d.deletes, 2);
    assert_int_equal(d.leases, 0);
    /* The reader is usable afterwards. */
    assert_int_equal(store_hash_kv(f[0].r, 0, &(struct store_hash){0}), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hash_kv_equal_for_the_same_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_kv_differs_for_a_different_value, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hash_kv_at_old_revision_ignores_later_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hash_kv_future_and_compacted_revisions_fail, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dump_walks_events_then_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_stops_on_callback_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
