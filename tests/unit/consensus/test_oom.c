/*
 * test_oom.c — the consensus layer's out-of-memory policy (consensus/raft_int.h): raft_new
 * and raft_propose return LATCH_ENOMEM and change nothing, and the memstore leaves itself
 * as it was. Each scenario counts its allocations, then fails each one in turn (nghttp2's
 * TEST_FAILMALLOC_RUN); leaks would be reported by LeakSanitizer in the ASan build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "raft.h"
#include "raft_fixture.h"
#include "raft_memstore.h"

/* A heap that fails the allocation numbered fail_at (0-based), or every one with fail_all. */
struct fail_heap {
    long calls;
    long fail_at;
    bool fail_all;
};

static bool fh_fails(struct fail_heap *h)
{
    long n = h->calls++;

    return h->fail_all || n == h->fail_at;
}

static void *fh_malloc(void *data, size_t size)
{
    return fh_fails(data) ? NULL : malloc(size);
}

static void *fh_realloc(void *data, void *ptr, size_t size)
{
    return fh_fails(data) ? NULL : realloc(ptr, size);
}

static void fh_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static struct raft_heap heap_over(struct fail_heap *h)
{
    struct raft_heap heap = {h, fh_malloc, fh_realloc, fh_free};

    h->calls = 0;
    h->fail_at = -1;
    h->fail_all = false;
    return heap;
}

/* A store holding a bootstrapped cluster of `voters` (conf entries 1..voters). */
static struct raft_memstore *bootstrapped(uint32_t voters)
{
    struct raft_memstore *ms = NULL;
    struct raft_conf_state conf;

    memset(&conf, 0, sizeof(conf));
    for (uint32_t k = 0; k < voters; k++) {
        conf.voters[conf.voters_count++] = k + 1;
    }
    assert_int_equal(raft_memstore_new(NULL, &ms), 0);
    assert_int_equal(raft_memstore_bootstrap(ms, &conf), 0);
    return ms;
}

static int new_node(struct raft_memstore *ms, const struct raft_heap *heap, struct raft **out)
{
    struct raft_config cfg;

    raft_config_defaults(&cfg);
    cfg.id = 1;
    cfg.seed = 1;
    cfg.storage = raft_memstore_storage(ms);
    cfg.heap = heap;
    return raft_new(&cfg, out);
}

/* raft_new reads the log (the bootstrap's conf entries) and allocates per-peer state: any
 * failing allocation must come back as LATCH_ENOMEM, not an assertion or a leak. */
static void test_oom_raft_new_fails_cleanly_at_every_allocation(void **state)
{
    struct raft_memstore *ms = bootstrapped(3);
    struct fail_heap h;
    struct raft_heap heap = heap_over(&h);
    struct raft *r = NULL;
    long total;

    (void)state;
    assert_int_equal(new_node(ms, &heap, &r), 0);
    raft_free(r);
    total = h.calls;
    assert_true(total > 0);
    for (long i = 0; i < total; i++) {
        h.calls = 0;
        h.fail_at = i;
        r = NULL;
        assert_int_equal(new_node(ms, &heap, &r), LATCH_ENOMEM);
        assert_null(r);
    }
    raft_memstore_free(ms);
}

/* Drives a single-voter node until it leads with everything persisted and applied. */
static void lead_alone(struct raft *r, struct raft_memstore *ms)
{
    raft_campaign(r);
    while (raft_has_ready(r)) {
        struct raft_ready rd;

        raft_ready(r, &rd);
        assert_int_equal(raft_memstore_append(ms, rd.entries, rd.entries_count), 0);
        if (rd.hard_state_changed) {
            raft_memstore_set_hard_state(ms, &rd.hard_state);
        }
        for (size_t k = 0; k < rd.committed_count; k++) {
            struct raft_conf_state conf;

            if (rd.committed[k].type == RAFT_ENTRY_CONF) {
                raft_apply_conf_change(r, &rd.committed[k], &conf);
            }
        }
        raft_advance(r, &rd);
    }
    assert_true(raft_is_leader(r));
}

/* A proposal whose copy cannot be allocated is refused with LATCH_ENOMEM and leaves the
 * log as it was; the next proposal, with memory back, is accepted at the same index. */
static void test_oom_propose_fails_without_changing_the_log(void **state)
{
    struct raft_memstore *ms = bootstrapped(1);
    struct fail_heap h;
    struct raft_heap heap = heap_over(&h);
    struct raft *r = NULL;
    struct raft_status before;
    struct raft_status after;
    size_t len = 1u << 20; /* larger than any arena chunk kept from earlier cycles */
    uint8_t *big = calloc(1, len);

    (void)state;
    assert_non_null(big);
    assert_int_equal(new_node(ms, &heap, &r), 0);
    lead_alone(r, ms);
    raft_status(r, &before);
    h.fail_all = true;
    assert_int_equal(raft_propose(r, big, len), LATCH_ENOMEM);
    raft_status(r, &after);
    assert_int_equal(after.last_index, before.last_index);
    assert_int_equal(after.term, before.term);
    h.fail_all = false;
    assert_int_equal(raft_propose(r, big, len), 0);
    raft_status(r, &after);
    assert_int_equal(after.last_index, before.last_index + 1);
    raft_free(r);
    raft_memstore_free(ms);
    free(big);
}

/* The memstore allocates before it changes anything: a failed append leaves every entry
 * and the last index as they were. */
static void test_oom_memstore_append_leaves_store_unchanged(void **state)
{
    struct fail_heap h;
    struct raft_heap heap = heap_over(&h);
    struct raft_memstore *ms = NULL;
    struct raft_entry ents[64];
    uint8_t payload[256];

    (void)state;
    memset(payload, 7, sizeof(payload));
    for (size_t k = 0; k < 64; k++) {
        ents[k].term = 1;
        ents[k].index = k + 1;
        ents[k].type = RAFT_ENTRY_NORMAL;
        ents[k].len = sizeof(payload);
        ents[k].data = payload;
    }
    assert_int_equal(raft_memstore_new(&heap, &ms), 0);
    assert_int_equal(raft_memstore_append(ms, ents, 8), 0);
    for (long i = 0;; i++) {
        long before;
        int rv;

        h.calls = 0;
        h.fail_at = i;
        rv = raft_memstore_append(ms, ents + 4, 60); /* truncates 5..8, grows */
        before = h.calls;
        if (rv == 0) {
            break; /* i passed the number of allocations the append makes */
        }
        assert_int_equal(rv, LATCH_ENOMEM);
        assert_true(i < before);
        assert_int_equal(raft_memstore_last_index(ms), 8);
        for (raft_index j = 1; j <= 8; j++) {
            const struct raft_entry *e = raft_memstore_entry(ms, j);

            assert_non_null(e);
            assert_int_equal(e->index, j);
            assert_int_equal(e->len, sizeof(payload));
            assert_memory_equal(e->data, payload, sizeof(payload));
        }
    }
    assert_int_equal(raft_memstore_last_index(ms), 64);
    raft_memstore_free(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_raft_new_fails_cleanly_at_every_allocation),
        cmocka_unit_test(test_oom_propose_fails_without_changing_the_log),
        cmocka_unit_test(test_oom_memstore_append_leaves_store_unchanged),
    };

    fx_install_assert_handler();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
