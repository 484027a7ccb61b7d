/*
 * test_memstore.c — raft_memstore, the executable definition of what the core expects of
 * its storage (struct raft_storage in raft.h): append with truncation of a conflicting
 * suffix (paper §5.3, figure 2 "AppendEntries" step 3), bounded reads, the term of the
 * entry before the first (paper §5.3 consistency check after compaction, thesis §5.1),
 * snapshots and compaction (thesis §5.1-§5.3), bootstrap.
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

/* Holds a store and the bytes its test entries point at. */
struct ms_fixture {
    struct raft_memstore *ms;
    const struct raft_storage *st;
    uint8_t data[64][16];
};

static int ms_setup(void **state)
{
    struct ms_fixture *f = calloc(1, sizeof(*f));

    fx_install_assert_handler();
    if (f == NULL || raft_memstore_new(NULL, &f->ms) != 0) {
        return -1;
    }
    f->st = raft_memstore_storage(f->ms);
    *state = f;
    return 0;
}

static int ms_teardown(void **state)
{
    struct ms_fixture *f = *state;

    raft_memstore_free(f->ms);
    free(f);
    return 0;
}

#define MS_TEST(fn) cmocka_unit_test_setup_teardown(fn, ms_setup, ms_teardown)

/* Entry i of a batch: index, term and `len` bytes of data all equal to (index + term). */
static struct raft_entry
ms_entry(struct ms_fixture *f, raft_index index, raft_term term, uint32_t len)
{
    uint8_t *d = f->data[index % 64];

    assert_true(len <= sizeof(f->data[0]));
    memset(d, (int)((index + term) & 0x7f), len);
    return (struct raft_entry){
        .term = term, .index = index, .type = RAFT_ENTRY_NORMAL, .len = len, .data = d};
}

/* Appends one entry per term in terms[], starting at index first. */
static int ms_append_terms(
    struct ms_fixture *f, raft_index first, const raft_term *terms, size_t n, uint32_t len)
{
    struct raft_entry batch[32];

    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        batch[i] = ms_entry(f, first + i, terms[i], len);
    }
    return raft_memstore_append(f->ms, batch, n);
}

static raft_term ms_term(struct ms_fixture *f, raft_index i, int *rc)
{
    raft_term t = 99;

    *rc = f->st->term(f->st->data, i, &t);
    return t;
}

static void test_memstore_new_store_is_empty(void **state)
{
    struct ms_fixture *f = *state;
    struct raft_hard_state hs;
    struct raft_conf_state conf;
    int rc;

    assert_int_equal(raft_memstore_first_index(f->ms), 1);
    assert_int_equal(raft_memstore_last_index(f->ms), 0);
    assert_int_equal(f->st->first_index(f->st->data), 1);
    assert_int_equal(f->st->last_index(f->st->data), 0);
    assert_int_equal(f->st->initial_state(f->st->data, &hs, &conf), 0);
    assert_int_equal(hs.term, 0);
    assert_int_equal(hs.vote, RAFT_NONE);
    assert_int_equal(hs.commit, 0);
    assert_int_equal(conf.voters_count, 0);
    assert_int_equal(conf.learners_count, 0);
    /* Entry 0 (first - 1) exists with term 0: the consistency check of the first append. */
    assert_int_equal(ms_term(f, 0, &rc), 0);
    assert_int_equal(rc, 0);
    ms_term(f, 1, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
    assert_null(raft_memstore_entry(f->ms, 1));
}

static void test_memstore_append_stores_copies_of_entries(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term terms[] = {1, 1, 2};
    const struct raft_entry *e;

    assert_int_equal(ms_append_terms(f, 1, terms, 3, 4), 0);
    memset(f->data, 0xee, sizeof(f->data)); /* the caller's buffers are reused */
    assert_int_equal(raft_memstore_last_index(f->ms), 3);
    e = raft_memstore_entry(f->ms, 3);
    assert_non_null(e);
    assert_int_equal(e->index, 3);
    assert_int_equal(e->term, 2);
    assert_int_equal(e->len, 4);
    assert_int_equal(e->data[0], 5);
    assert_int_equal(e->data[3], 5);
}

/* Paper figure 2, AppendEntries receiver step 3: a conflicting entry and all that follow
 * it are deleted. The store does it for every append that starts inside the log. */
static void test_memstore_append_truncates_conflicting_suffix(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term old_terms[] = {1, 1, 2, 2, 2};
    const raft_term new_terms[] = {3};
    int rc;

    assert_int_equal(ms_append_terms(f, 1, old_terms, 5, 1), 0);
    assert_int_equal(ms_append_terms(f, 3, new_terms, 1, 1), 0);
    assert_int_equal(raft_memstore_last_index(f->ms), 3);
    assert_int_equal(ms_term(f, 2, &rc), 1);
    assert_int_equal(ms_term(f, 3, &rc), 3);
    assert_int_equal(rc, 0);
    ms_term(f, 4, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
    assert_null(raft_memstore_entry(f->ms, 4));
}

static void test_memstore_append_refuses_gaps_and_non_consecutive_batches(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term terms[] = {1, 1};
    struct raft_entry bad[2];

    assert_int_equal(ms_append_terms(f, 1, terms, 2, 1), 0);
    assert_int_equal(ms_append_terms(f, 4, terms, 1, 1), LATCH_EINVAL); /* gap after 2 */
    bad[0] = ms_entry(f, 3, 1, 1);
    bad[1] = ms_entry(f, 5, 1, 1);
    assert_int_equal(raft_memstore_append(f->ms, bad, 2), LATCH_EINVAL);
    assert_int_equal(raft_memstore_last_index(f->ms), 2);
}

/* The core reads with a byte budget so one append message stays bounded; at least one
 * entry is always returned so that replication can make progress. */
static void test_memstore_entries_respects_max_bytes_but_returns_at_least_one(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term terms[] = {1, 1, 1, 1, 1};
    const struct raft_entry *out = NULL;
    size_t count = 0;

    assert_int_equal(ms_append_terms(f, 1, terms, 5, 10), 0);
    assert_int_equal(f->st->entries(f->st->data, 1, 6, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 5);
    assert_int_equal(out[0].index, 1);
    assert_int_equal(out[4].index, 5);
    assert_int_equal(f->st->entries(f->st->data, 2, 6, 20, &out, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(out[0].index, 2);
    assert_int_equal(out[1].index, 3);
    assert_int_equal(f->st->entries(f->st->data, 2, 6, 1, &out, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(out[0].index, 2);
    assert_int_equal(f->st->entries(f->st->data, 3, 4, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(out[0].index, 3);
}

static void test_memstore_entries_beyond_last_is_unavailable(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term terms[] = {1, 1, 1};
    const struct raft_entry *out = NULL;
    size_t count = 0;

    assert_int_equal(ms_append_terms(f, 1, terms, 3, 1), 0);
    assert_int_equal(f->st->entries(f->st->data, 1, 5, UINT64_MAX, &out, &count),
                     LATCH_EUNAVAILABLE);
    assert_int_equal(f->st->entries(f->st->data, 1, 4, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 3);
}

/* Builds the log 1..10 (terms 1,1,2,2,2,3,3,3,3,3), snapshots at 6 and compacts to 6. */
static void ms_build_compacted(struct ms_fixture *f)
{
    const raft_term terms[] = {1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
    struct raft_conf_state conf = {.voters_count = 2, .voters = {1, 2}};

    assert_int_equal(ms_append_terms(f, 1, terms, 10, 2), 0);
    assert_int_equal(raft_memstore_create_snapshot(f->ms, 6, &conf, "state6", 6), 0);
    assert_int_equal(raft_memstore_compact(f->ms, 6), 0);
}

/* Thesis §5.1: after compaction the log still knows the index and term of the last
 * entry the snapshot replaces, for the AppendEntries consistency check. */
static void test_memstore_term_of_first_minus_one_is_snapshot_term(void **state)
{
    struct ms_fixture *f = *state;
    int rc;

    ms_build_compacted(f);
    assert_int_equal(raft_memstore_first_index(f->ms), 7);
    assert_int_equal(raft_memstore_last_index(f->ms), 10);
    assert_int_equal(f->st->first_index(f->st->data), 7);
    assert_int_equal(ms_term(f, 6, &rc), 3);
    assert_int_equal(rc, 0);
    assert_int_equal(ms_term(f, 7, &rc), 3);
    assert_int_equal(rc, 0);
    ms_term(f, 5, &rc);
    assert_int_equal(rc, LATCH_ECOMPACTED);
    ms_term(f, 11, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
    assert_null(raft_memstore_entry(f->ms, 6));
    assert_non_null(raft_memstore_entry(f->ms, 7));
}

static void test_memstore_entries_of_compacted_range_fail(void **state)
{
    struct ms_fixture *f = *state;
    const struct raft_entry *out = NULL;
    size_t count = 0;

    ms_build_compacted(f);
    assert_int_equal(f->st->entries(f->st->data, 6, 8, UINT64_MAX, &out, &count), LATCH_ECOMPACTED);
    assert_int_equal(f->st->entries(f->st->data, 3, 8, UINT64_MAX, &out, &count), LATCH_ECOMPACTED);
    assert_int_equal(f->st->entries(f->st->data, 7, 11, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 4);
    assert_int_equal(out[0].index, 7);
}

static void test_memstore_compaction_errors(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term more[] = {3};

    ms_build_compacted(f);
    /* Only what a snapshot covers can be discarded. */
    assert_int_equal(raft_memstore_compact(f->ms, 7), LATCH_EINVAL);
    /* Compacting again is a no-op that says so. */
    assert_int_equal(raft_memstore_compact(f->ms, 6), LATCH_ECOMPACTED);
    assert_int_equal(raft_memstore_compact(f->ms, 4), LATCH_ECOMPACTED);
    assert_int_equal(raft_memstore_first_index(f->ms), 7);
    /* Entries at or below the snapshot can never be appended again. */
    assert_int_equal(ms_append_terms(f, 6, more, 1, 1), LATCH_EINVAL);
    assert_int_equal(raft_memstore_last_index(f->ms), 10);
}

static void test_memstore_create_snapshot_records_meta_and_data(void **state)
{
    struct ms_fixture *f = *state;
    struct raft_snapshot snap;
    struct raft_conf_state conf = {.voters_count = 1, .voters = {1}};
    const raft_term terms[] = {1, 2, 2};

    assert_int_equal(ms_append_terms(f, 1, terms, 3, 1), 0);
    raft_memstore_snapshot(f->ms, &snap);
    assert_int_equal(snap.meta.index, 0);
    /* Beyond the log: nothing to snapshot yet. */
    assert_int_equal(raft_memstore_create_snapshot(f->ms, 4, &conf, "x", 1), LATCH_EUNAVAILABLE);
    assert_int_equal(raft_memstore_create_snapshot(f->ms, 2, &conf, "abc", 3), 0);
    raft_memstore_snapshot(f->ms, &snap);
    assert_int_equal(snap.meta.index, 2);
    assert_int_equal(snap.meta.term, 2);
    assert_int_equal(snap.meta.conf.voters_count, 1);
    assert_int_equal(snap.meta.conf.voters[0], 1);
    assert_int_equal(snap.len, 3);
    assert_memory_equal(snap.data, "abc", 3);
    memset(&snap, 0, sizeof(snap));
    assert_int_equal(f->st->snapshot(f->st->data, &snap), 0);
    assert_int_equal(snap.meta.index, 2);
    /* The log is kept until compacted. */
    assert_int_equal(raft_memstore_first_index(f->ms), 1);
    /* Not above the current snapshot. */
    assert_int_equal(raft_memstore_create_snapshot(f->ms, 2, &conf, "y", 1), LATCH_ESNAPOLD);
    assert_int_equal(raft_memstore_create_snapshot(f->ms, 1, &conf, "y", 1), LATCH_ESNAPOLD);
}

/* Thesis §5.3 (InstallSnapshot): the receiver discards its log and resets its state to the
 * snapshot's, including the configuration. */
static void test_memstore_apply_snapshot_discards_log_and_sets_conf(void **state)
{
    struct ms_fixture *f = *state;
    const raft_term terms[] = {1, 1, 1};
    const raft_term next[] = {4};
    struct raft_snapshot snap = {
        .meta = {.index = 20, .term = 4, .conf = {.voters_count = 3, .voters = {1, 2, 3}}},
        .data = (const uint8_t *)"S",
        .len = 1};
    struct raft_conf_state conf;
    struct raft_hard_state hs;
    int rc;

    assert_int_equal(ms_append_terms(f, 1, terms, 3, 1), 0);
    assert_int_equal(raft_memstore_apply_snapshot(f->ms, &snap), 0);
    assert_int_equal(raft_memstore_first_index(f->ms), 21);
    assert_int_equal(raft_memstore_last_index(f->ms), 20);
    assert_null(raft_memstore_entry(f->ms, 3));
    assert_int_equal(ms_term(f, 20, &rc), 4);
    assert_int_equal(rc, 0);
    raft_memstore_conf(f->ms, &conf);
    assert_int_equal(conf.voters_count, 3);
    assert_int_equal(f->st->initial_state(f->st->data, &hs, &conf), 0);
    assert_int_equal(conf.voters_count, 3);
    /* Replication resumes right after the snapshot. */
    assert_int_equal(ms_append_terms(f, 21, next, 1, 1), 0);
    assert_int_equal(raft_memstore_last_index(f->ms), 21);
    /* Not newer than the current snapshot. */
    assert_int_equal(raft_memstore_apply_snapshot(f->ms, &snap), LATCH_ESNAPOLD);
    snap.meta.index = 10;
    assert_int_equal(raft_memstore_apply_snapshot(f->ms, &snap), LATCH_ESNAPOLD);
    assert_int_equal(raft_memstore_last_index(f->ms), 21);
}

static void test_memstore_hard_state_and_conf_round_trip(void **state)
{
    struct ms_fixture *f = *state;
    struct raft_hard_state in = {.term = 7, .vote = 3, .commit = 0};
    struct raft_hard_state out;
    struct raft_conf_state conf = {
        .voters_count = 2, .voters = {1, 2}, .learners_count = 1, .learners = {5}};
    struct raft_conf_state got;

    raft_memstore_set_hard_state(f->ms, &in);
    raft_memstore_set_conf(f->ms, &conf);
    raft_memstore_hard_state(f->ms, &out);
    assert_int_equal(out.term, 7);
    assert_int_equal(out.vote, 3);
    assert_int_equal(f->st->initial_state(f->st->data, &out, &got), 0);
    assert_int_equal(out.term, 7);
    assert_int_equal(out.vote, 3);
    assert_int_equal(got.voters_count, 2);
    assert_int_equal(got.learners_count, 1);
    assert_int_equal(got.learners[0], 5);
}

/* etcd-style bootstrap: the first configuration is a committed log of ADD_VOTER changes
 * at term 1, so every node of a new cluster starts from the same committed prefix. */
static void test_memstore_bootstrap_writes_committed_add_voter_entries(void **state)
{
    struct ms_fixture *f = *state;
    struct raft_conf_state conf = {.voters_count = 3, .voters = {1, 2, 3}};
    struct raft_hard_state hs;

    assert_int_equal(raft_memstore_bootstrap(f->ms, &conf), 0);
    assert_int_equal(raft_memstore_first_index(f->ms), 1);
    assert_int_equal(raft_memstore_last_index(f->ms), 3);
    raft_memstore_hard_state(f->ms, &hs);
    assert_int_equal(hs.term, 1);
    assert_int_equal(hs.vote, RAFT_NONE);
    assert_int_equal(hs.commit, 3);
    for (raft_index i = 1; i <= 3; i++) {
        const struct raft_entry *e = raft_memstore_entry(f->ms, i);
        struct raft_conf_change cc;

        assert_non_null(e);
        assert_int_equal(e->term, 1);
        assert_int_equal(e->type, RAFT_ENTRY_CONF);
        assert_int_equal(raft_conf_change_decode(e->data, e->len, &cc), 0);
        assert_int_equal(cc.type, RAFT_CC_ADD_VOTER);
        assert_int_equal(cc.node, conf.voters[i - 1]);
    }
}

static void test_memstore_bootstrap_refuses_non_empty_store_or_no_voters(void **state)
{
    struct ms_fixture *f = *state;
    struct raft_conf_state none = {.voters_count = 0};
    struct raft_conf_state conf = {.voters_count = 1, .voters = {1}};

    assert_int_equal(raft_memstore_bootstrap(f->ms, &none), LATCH_EINVAL);
    assert_int_equal(raft_memstore_bootstrap(f->ms, &conf), 0);
    assert_int_equal(raft_memstore_bootstrap(f->ms, &conf), LATCH_EINVAL);
    assert_int_equal(raft_memstore_last_index(f->ms), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MS_TEST(test_memstore_new_store_is_empty),
        MS_TEST(test_memstore_append_stores_copies_of_entries),
        MS_TEST(test_memstore_append_truncates_conflicting_suffix),
        MS_TEST(test_memstore_append_refuses_gaps_and_non_consecutive_batches),
        MS_TEST(test_memstore_entries_respects_max_bytes_but_returns_at_least_one),
        MS_TEST(test_memstore_entries_beyond_last_is_unavailable),
        MS_TEST(test_memstore_term_of_first_minus_one_is_snapshot_term),
        MS_TEST(test_memstore_entries_of_compacted_range_fail),
        MS_TEST(test_memstore_compaction_errors),
        MS_TEST(test_memstore_create_snapshot_records_meta_and_data),
        MS_TEST(test_memstore_apply_snapshot_discards_log_and_sets_conf),
        MS_TEST(test_memstore_hard_state_and_conf_round_trip),
        MS_TEST(test_memstore_bootstrap_writes_committed_add_voter_entries),
        MS_TEST(test_memstore_bootstrap_refuses_non_empty_store_or_no_voters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
