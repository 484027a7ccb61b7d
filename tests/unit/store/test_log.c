/*
 * test_log.c — the Raft log in raft.mdb behaves as raft_memstore, the executable definition
 * of struct raft_storage (tests/unit/consensus/test_memstore.c mirrors these): append with
 * truncation of a conflicting suffix (paper §5.3, figure 2 "AppendEntries" step 3), bounded
 * reads that return at least one entry, the term of the compaction point (thesis §5.1),
 * compaction errors. Beyond memstore: everything survives a reopen, the hard state only
 * moves forward, a snapshot install resets the log, and damage is detected by CRC (I8).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>

#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"
#include "store_int.h"

struct lfx {
    struct fx fx;
    uint8_t data[64][32];
};

static int setup(void **state)
{
    struct lfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fx_setup(&f->fx);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct lfx *f = *state;
    fx_teardown(&f->fx);
    free(f);
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* Entry of a batch: len bytes of data all equal to (index + term). */
static struct store_entry entry(struct lfx *f, uint64_t index, uint64_t term, uint32_t len)
{
    uint8_t *d = f->data[index % 64];
    assert_true(len <= sizeof(f->data[0]));
    memset(d, (int)((index + term) & 0x7f), len);
    return (struct store_entry){.term = term, .index = index, .type = 1, .len = len, .data = d};
}

static int
append_terms(struct lfx *f, uint64_t first, const uint64_t *terms, size_t n, uint32_t len)
{
    struct store_entry batch[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        batch[i] = entry(f, first + i, terms[i], len);
    }
    return store_log_append(f->fx.s, batch, n, NULL);
}

static uint64_t term_of(struct lfx *f, uint64_t i, int *rc)
{
    uint64_t t = 99;
    *rc = store_log_term(f->fx.s, i, &t);
    return t;
}

/* Applies NOOP items up to index, with the log's terms, so compaction may reach it. */
static void apply_up_to(struct lfx *f, uint64_t index)
{
    struct store_apply_item items[32];
    struct store_result res[32];
    size_t n = 0;
    for (uint64_t i = f->fx.next_index; i <= index; i++) {
        int rc;
        items[n] = (struct store_apply_item){
            .index = i, .term = term_of(f, i, &rc), .kind = STORE_ITEM_NOOP};
        assert_int_equal(rc, 0);
        n++;
    }
    assert_int_equal(store_apply(f->fx.s, items, n, &f->fx.arena, res), 0);
    f->fx.next_index = index + 1;
}

static const uint64_t TERMS10[] = {1, 1, 2, 2, 2, 3, 3, 3, 3, 3};

/* Log 1..10 with terms 1,1,2,2,2,3,3,3,3,3, applied to 6, compacted to 6. */
static void build_compacted(struct lfx *f)
{
    assert_int_equal(append_terms(f, 1, TERMS10, 10, 2), 0);
    apply_up_to(f, 6);
    assert_int_equal(store_log_compact(f->fx.s, 6), 0);
}

static void test_new_log_is_empty(void **state)
{
    struct lfx *f = *state;
    struct store_hard_state hs = {9, 9, 9};
    struct store_snap_meta m;
    int rc;
    assert_int_equal(store_log_first_index(f->fx.s), 1);
    assert_int_equal(store_log_last_index(f->fx.s), 0);
    assert_int_equal(store_log_hard_state(f->fx.s, &hs), 0);
    assert_int_equal(hs.term, 0);
    assert_int_equal(hs.vote, 0);
    assert_int_equal(hs.commit, 0);
    /* Entry 0 (first - 1) exists with term 0: the consistency check of the first append. */
    assert_int_equal(term_of(f, 0, &rc), 0);
    assert_int_equal(rc, 0);
    term_of(f, 1, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
    assert_int_equal(store_log_snapshot_meta(f->fx.s, &m), 0);
    assert_int_equal(m.index, 0);
    assert_int_equal(m.conf_len, 0);
}

static void test_append_stores_copies_of_entries(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 2};
    const struct store_entry *out;
    size_t n = 0;
    assert_int_equal(append_terms(f, 1, terms, 3, 4), 0);
    memset(f->data, 0xee, sizeof(f->data)); /* the caller's buffers are reused */
    assert_int_equal(store_log_last_index(f->fx.s), 3);
    assert_int_equal(store_log_entries(f->fx.s, 3, 4, UINT64_MAX, &out, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].index, 3);
    assert_int_equal(out[0].term, 2);
    assert_int_equal(out[0].type, 1);
    assert_int_equal(out[0].len, 4);
    assert_int_equal(out[0].data[0], 5);
    assert_int_equal(out[0].data[3], 5);
}

/* struct raft_storage lets the core hold entries from several calls at once (one append
 * message per follower in one ready): each call's entries stay valid until the log changes. */
static void test_entries_of_several_calls_stay_valid_until_the_log_changes(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 2, 2, 3, 3};
    const struct store_entry *a, *b;
    size_t na = 0, nb = 0;
    assert_int_equal(append_terms(f, 1, terms, 6, 16), 0);
    assert_int_equal(store_log_entries(f->fx.s, 1, 4, UINT64_MAX, &a, &na), 0);
    assert_int_equal(store_log_entries(f->fx.s, 4, 7, UINT64_MAX, &b, &nb), 0);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(a[i].index, 1 + i);
        assert_int_equal(b[i].index, 4 + i);
        for (uint32_t j = 0; j < 16; j++) {
            assert_int_equal(a[i].data[j], (uint8_t)(a[i].index + a[i].term));
            assert_int_equal(b[i].data[j], (uint8_t)(b[i].index + b[i].term));
        }
    }
    /* Appending entries that came from the store itself is allowed. */
    struct store_entry again[3];
    memcpy(again, b, sizeof(again));
    assert_int_equal(store_log_append(f->fx.s, again, 3, NULL), 0);
    assert_int_equal(store_log_last_index(f->fx.s), 6);
    /* Between log changes, store_log_release bounds the memory of repeated reads. */
    for (int round = 0; round < 1000; round++) {
        assert_int_equal(store_log_entries(f->fx.s, 1, 7, UINT64_MAX, &a, &na), 0);
        assert_int_equal(na, 6);
        store_log_release(f->fx.s);
    }
    assert_true(f->fx.s->log_arena.allocated_bytes == 0);
}

static void test_append_truncates_conflicting_suffix(void **state)
{
    struct lfx *f = *state;
    const uint64_t old_terms[] = {1, 1, 2, 2, 2};
    const uint64_t new_terms[] = {3};
    int rc;
    assert_int_equal(append_terms(f, 1, old_terms, 5, 1), 0);
    assert_int_equal(append_terms(f, 3, new_terms, 1, 1), 0);
    assert_int_equal(store_log_last_index(f->fx.s), 3);
    assert_int_equal(term_of(f, 2, &rc), 1);
    assert_int_equal(term_of(f, 3, &rc), 3);
    assert_int_equal(rc, 0);
    term_of(f, 4, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
    /* Appending again after the truncation continues from the new end. */
    const uint64_t more[] = {3, 4};
    assert_int_equal(append_terms(f, 4, more, 2, 1), 0);
    assert_int_equal(store_log_last_index(f->fx.s), 5);
    assert_int_equal(term_of(f, 5, &rc), 4);
}

static void test_append_refuses_gaps_and_non_consecutive_batches(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1};
    assert_int_equal(append_terms(f, 1, terms, 2, 1), 0);
    assert_int_equal(append_terms(f, 4, terms, 1, 1), LATCH_EINVAL); /* gap after 2 */
    struct store_entry bad[2] = {entry(f, 3, 1, 1), entry(f, 5, 1, 1)};
    assert_int_equal(store_log_append(f->fx.s, bad, 2, NULL), LATCH_EINVAL);
    assert_int_equal(store_log_last_index(f->fx.s), 2);
    /* An empty batch without a hard state is a no-op. */
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, NULL), 0);
}

static void test_append_refuses_terms_going_back(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {2, 3};
    const uint64_t down[] = {2};
    const uint64_t zigzag[] = {3, 4, 3};
    assert_int_equal(append_terms(f, 1, terms, 2, 1), 0);
    assert_int_equal(append_terms(f, 3, down, 1, 1), LATCH_EINVAL);
    assert_int_equal(append_terms(f, 3, zigzag, 3, 1), LATCH_EINVAL);
    assert_int_equal(store_log_last_index(f->fx.s), 2);
    /* A truncation to a lower term than the dropped suffix's is fine. */
    assert_int_equal(append_terms(f, 2, down, 1, 1), 0);
}

static void test_entries_respect_max_bytes_but_return_at_least_one(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 1, 1, 1};
    const struct store_entry *out = NULL;
    size_t count = 0;
    assert_int_equal(append_terms(f, 1, terms, 5, 10), 0);
    assert_int_equal(store_log_entries(f->fx.s, 1, 6, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 5);
    assert_int_equal(out[0].index, 1);
    assert_int_equal(out[4].index, 5);
    assert_int_equal(store_log_entries(f->fx.s, 2, 6, 20, &out, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(out[0].index, 2);
    assert_int_equal(out[1].index, 3);
    assert_int_equal(store_log_entries(f->fx.s, 2, 6, 1, &out, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(out[0].index, 2);
    assert_int_equal(store_log_entries(f->fx.s, 3, 4, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(out[0].index, 3);
}

static void test_entries_beyond_last_is_unavailable_and_empty_range_invalid(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 1};
    const struct store_entry *out = NULL;
    size_t count = 0;
    assert_int_equal(append_terms(f, 1, terms, 3, 1), 0);
    assert_int_equal(store_log_entries(f->fx.s, 1, 5, UINT64_MAX, &out, &count),
                     LATCH_EUNAVAILABLE);
    assert_int_equal(store_log_entries(f->fx.s, 2, 2, UINT64_MAX, &out, &count), LATCH_EINVAL);
    assert_int_equal(store_log_entries(f->fx.s, 1, 4, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 3);
}

static void test_entries_of_many_large_entries_are_copied_intact(void **state)
{
    struct lfx *f = *state;
    enum { N = 300, LEN = 5000 };
    uint8_t *buf = malloc(LEN);
    assert_non_null(buf);
    for (uint64_t i = 1; i <= N; i++) {
        memset(buf, (int)(i & 0xff), LEN);
        struct store_entry e = {
            .term = 1, .index = i, .type = 0, .len = (uint32_t)(i % 7 == 0 ? 0 : LEN), .data = buf};
        assert_int_equal(store_log_append(f->fx.s, &e, 1, NULL), 0);
    }
    const struct store_entry *out = NULL;
    size_t count = 0;
    assert_int_equal(store_log_entries(f->fx.s, 1, N + 1, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, N);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(out[i].index, i + 1);
        if (out[i].len > 0) {
            assert_int_equal(out[i].data[0], (i + 1) & 0xff);
            assert_int_equal(out[i].data[LEN - 1], (i + 1) & 0xff);
        } else {
            assert_int_equal((i + 1) % 7, 0);
        }
    }
    free(buf);
}

/* Thesis §5.1: after compaction the log still knows the index and term of the last
 * entry it dropped, for the AppendEntries consistency check. */
static void test_term_of_first_minus_one_is_the_compaction_term(void **state)
{
    struct lfx *f = *state;
    int rc;
    build_compacted(f);
    assert_int_equal(store_log_first_index(f->fx.s), 7);
    assert_int_equal(store_log_last_index(f->fx.s), 10);
    assert_int_equal(term_of(f, 6, &rc), 3);
    assert_int_equal(rc, 0);
    assert_int_equal(term_of(f, 7, &rc), 3);
    assert_int_equal(rc, 0);
    term_of(f, 5, &rc);
    assert_int_equal(rc, LATCH_ECOMPACTED);
    term_of(f, 11, &rc);
    assert_int_equal(rc, LATCH_EUNAVAILABLE);
}

static void test_entries_of_compacted_range_fail(void **state)
{
    struct lfx *f = *state;
    const struct store_entry *out = NULL;
    size_t count = 0;
    build_compacted(f);
    assert_int_equal(store_log_entries(f->fx.s, 6, 8, UINT64_MAX, &out, &count), LATCH_ECOMPACTED);
    assert_int_equal(store_log_entries(f->fx.s, 3, 8, UINT64_MAX, &out, &count), LATCH_ECOMPACTED);
    assert_int_equal(store_log_entries(f->fx.s, 7, 11, UINT64_MAX, &out, &count), 0);
    assert_int_equal(count, 4);
    assert_int_equal(out[0].index, 7);
}

static void test_compaction_errors(void **state)
{
    struct lfx *f = *state;
    const uint64_t more[] = {3};
    build_compacted(f);
    /* Only what the applied state covers can be discarded. */
    assert_int_equal(store_log_compact(f->fx.s, 7), LATCH_EINVAL);
    /* Compacting again is a no-op that says so. */
    assert_int_equal(store_log_compact(f->fx.s, 6), LATCH_ECOMPACTED);
    assert_int_equal(store_log_compact(f->fx.s, 4), LATCH_ECOMPACTED);
    assert_int_equal(store_log_first_index(f->fx.s), 7);
    /* Entries at or below the compaction point can never be appended again. */
    assert_int_equal(append_terms(f, 6, more, 1, 1), LATCH_EINVAL);
    assert_int_equal(store_log_last_index(f->fx.s), 10);
    /* Nor beyond the last entry, even when applied. */
    apply_up_to(f, 10);
    assert_int_equal(store_log_compact(f->fx.s, 11), LATCH_EINVAL);
    assert_int_equal(store_log_compact(f->fx.s, 10), 0);
    /* The whole log compacted: empty, first = last + 1, the point keeps its term. */
    assert_int_equal(store_log_first_index(f->fx.s), 11);
    assert_int_equal(store_log_last_index(f->fx.s), 10);
    int rc;
    assert_int_equal(term_of(f, 10, &rc), 3);
    assert_int_equal(rc, 0);
    const uint64_t next[] = {4};
    assert_int_equal(append_terms(f, 11, next, 1, 1), 0);
    assert_int_equal(store_log_first_index(f->fx.s), 11);
    assert_int_equal(store_log_last_index(f->fx.s), 11);
}

static void test_hard_state_round_trips_and_only_moves_forward(void **state)
{
    struct lfx *f = *state;
    struct store_hard_state in = {.term = 7, .vote = 3, .commit = 0};
    struct store_hard_state out;
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &in), 0);
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.term, 7);
    assert_int_equal(out.vote, 3);
    assert_int_equal(out.commit, 0);
    in = (struct store_hard_state){.term = 6, .vote = 3, .commit = 0};
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &in), LATCH_EINVAL);
    in = (struct store_hard_state){.term = 8, .vote = 0, .commit = 5};
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &in), 0);
    in.commit = 4;
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &in), LATCH_EINVAL);
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.term, 8);
    assert_int_equal(out.vote, 0);
    assert_int_equal(out.commit, 5);
}

static void test_refused_append_writes_neither_entries_nor_hard_state(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1};
    struct store_hard_state hs = {.term = 5, .vote = 1, .commit = 0};
    struct store_entry e = entry(f, 3, 5, 1); /* gap: the log is empty */
    assert_int_equal(store_log_append(f->fx.s, &e, 1, &hs), LATCH_EINVAL);
    struct store_hard_state out;
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.term, 0);
    assert_int_equal(append_terms(f, 1, terms, 1, 1), 0);
    assert_int_equal(store_log_last_index(f->fx.s), 1);
}

static void test_log_and_hard_state_survive_reopen(void **state)
{
    struct lfx *f = *state;
    struct store_hard_state hs = {.term = 3, .vote = 2, .commit = 8};
    struct store_entry batch[10];
    for (uint64_t i = 0; i < 10; i++) {
        batch[i] = entry(f, i + 1, TERMS10[i], 3);
    }
    assert_int_equal(store_log_append(f->fx.s, batch, 10, &hs), 0);
    apply_up_to(f, 6);
    assert_int_equal(store_log_compact(f->fx.s, 4), 0);
    fx_reopen(&f->fx);
    assert_int_equal(store_log_first_index(f->fx.s), 5);
    assert_int_equal(store_log_last_index(f->fx.s), 10);
    struct store_hard_state out;
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.term, 3);
    assert_int_equal(out.vote, 2);
    assert_int_equal(out.commit, 8);
    int rc;
    assert_int_equal(term_of(f, 4, &rc), 2);
    assert_int_equal(rc, 0);
    const struct store_entry *out_e;
    size_t n;
    assert_int_equal(store_log_entries(f->fx.s, 5, 11, UINT64_MAX, &out_e, &n), 0);
    assert_int_equal(n, 6);
    assert_int_equal(out_e[5].index, 10);
    assert_int_equal(out_e[5].term, 3);
    assert_int_equal(out_e[5].len, 3);
    assert_int_equal(out_e[5].data[0], 13);
}

static void test_snapshot_record_round_trips(void **state)
{
    struct lfx *f = *state;
    struct store_snap_meta m = {.index = 42, .term = 7, .conf_len = 5};
    memcpy(m.conf, "voter", 5);
    assert_int_equal(store__log_record_snapshot(f->fx.s, &m), 0);
    fx_reopen(&f->fx);
    struct store_snap_meta out;
    assert_int_equal(store_log_snapshot_meta(f->fx.s, &out), 0);
    assert_int_equal(out.index, 42);
    assert_int_equal(out.term, 7);
    assert_int_equal(out.conf_len, 5);
    assert_memory_equal(out.conf, "voter", 5);
    /* Recording it does not touch the log. */
    assert_int_equal(store_log_first_index(f->fx.s), 1);
    assert_int_equal(store_log_last_index(f->fx.s), 0);
}

/* Thesis §5.3 (InstallSnapshot): a log that does not hold the snapshot's last entry is
 * discarded whole and restarts after the snapshot. */
static void test_install_discards_a_log_that_does_not_match(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 1};
    struct store_hard_state hs = {.term = 1, .vote = 1, .commit = 2};
    assert_int_equal(append_terms(f, 1, terms, 3, 1), 0);
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &hs), 0);
    struct store_snap_meta m = {.index = 20, .term = 4, .conf_len = 1, .conf = {'c'}};
    assert_int_equal(store__log_install(f->fx.s, &m), 0);
    assert_int_equal(store_log_first_index(f->fx.s), 21);
    assert_int_equal(store_log_last_index(f->fx.s), 20);
    int rc;
    assert_int_equal(term_of(f, 20, &rc), 4);
    assert_int_equal(rc, 0);
    struct store_hard_state out;
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.commit, 20);
    assert_int_equal(out.term, 1);
    struct store_snap_meta sm;
    assert_int_equal(store_log_snapshot_meta(f->fx.s, &sm), 0);
    assert_int_equal(sm.index, 20);
    /* Replication resumes right after the snapshot; at or before it is refused. */
    const uint64_t next[] = {4};
    assert_int_equal(append_terms(f, 20, next, 1, 1), LATCH_EINVAL);
    assert_int_equal(append_terms(f, 21, next, 1, 1), 0);
    assert_int_equal(store_log_last_index(f->fx.s), 21);
}

static void test_install_keeps_the_entries_after_a_matching_index(void **state)
{
    struct lfx *f = *state;
    assert_int_equal(append_terms(f, 1, TERMS10, 10, 1), 0);
    struct store_hard_state hs = {.term = 3, .vote = 1, .commit = 9};
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &hs), 0);
    struct store_snap_meta m = {.index = 5, .term = 2};
    assert_int_equal(store__log_install(f->fx.s, &m), 0);
    assert_int_equal(store_log_first_index(f->fx.s), 6);
    assert_int_equal(store_log_last_index(f->fx.s), 10);
    struct store_hard_state out;
    assert_int_equal(store_log_hard_state(f->fx.s, &out), 0);
    assert_int_equal(out.commit, 9); /* never lowered */
    /* The same index with another term: the log goes. */
    m = (struct store_snap_meta){.index = 8, .term = 9};
    assert_int_equal(store__log_install(f->fx.s, &m), 0);
    assert_int_equal(store_log_first_index(f->fx.s), 9);
    assert_int_equal(store_log_last_index(f->fx.s), 8);
}

#ifndef LATCH_STORE_WAL
/* The log in raft.mdb (builds without LATCH_STORE_WAL). The append-only log's damage tests
 * are in test_wal.c (a flipped byte, a torn tail, a foreign file). */

/* Opens raft.mdb of a closed store directly and lets fn change it. */
static void raw_edit(struct lfx *f, void (*fn)(MDB_txn *txn, MDB_dbi meta, MDB_dbi log))
{
    char path[600];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, log;
    store_reader_free(f->fx.r);
    store_close(f->fx.s);
    f->fx.r = NULL;
    f->fx.s = NULL;
    snprintf(path, sizeof(path), "%s/raft.mdb", f->fx.dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, "log", 0, &log), 0);
    fn(txn, meta, log);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    fx_reopen(&f->fx);
}

/* Flips one bit in the data of entry 2. */
static void flip_entry_2(MDB_txn *txn, MDB_dbi meta, MDB_dbi log)
{
    (void)meta;
    uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
    uint8_t copy[64];
    assert_int_equal(mdb_get(txn, log, &k, &v), 0);
    assert_true(v.mv_size <= sizeof(copy) && v.mv_size > 16);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x10;
    v.mv_data = copy;
    assert_int_equal(mdb_put(txn, log, &k, &v, 0), 0);
}

static void test_flipped_byte_in_an_entry_is_detected(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 1};
    const struct store_entry *out;
    size_t n;
    int rc;
    assert_int_equal(append_terms(f, 1, terms, 3, 8), 0);
    raw_edit(f, flip_entry_2);
    assert_int_equal(store_log_entries(f->fx.s, 1, 4, UINT64_MAX, &out, &n), LATCH_ECORRUPT);
    assert_int_equal(store_log_entries(f->fx.s, 2, 3, UINT64_MAX, &out, &n), LATCH_ECORRUPT);
    term_of(f, 2, &rc);
    assert_int_equal(rc, LATCH_ECORRUPT);
    /* The entries around it still read. */
    assert_int_equal(store_log_entries(f->fx.s, 3, 4, UINT64_MAX, &out, &n), 0);
    assert_int_equal(store_log_entries(f->fx.s, 1, 2, UINT64_MAX, &out, &n), 0);
}

/* Moves entry 2 to key 3 (drops 3): right bytes at the wrong index. */
static void move_entry_2_to_3(MDB_txn *txn, MDB_dbi meta, MDB_dbi log)
{
    (void)meta;
    uint8_t k2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    uint8_t k3[8] = {0, 0, 0, 0, 0, 0, 0, 3};
    MDB_val k = {.mv_size = 8, .mv_data = k2}, v;
    uint8_t copy[64];
    assert_int_equal(mdb_get(txn, log, &k, &v), 0);
    memcpy(copy, v.mv_data, v.mv_size);
    v.mv_data = copy;
    k.mv_data = k3;
    assert_int_equal(mdb_put(txn, log, &k, &v, 0), 0);
}

static void test_entry_under_the_wrong_index_is_detected(void **state)
{
    struct lfx *f = *state;
    const uint64_t terms[] = {1, 1, 1};
    int rc;
    assert_int_equal(append_terms(f, 1, terms, 3, 8), 0);
    raw_edit(f, move_entry_2_to_3);
    term_of(f, 3, &rc);
    assert_int_equal(rc, LATCH_ECORRUPT);
}

static void flip_hard_state(MDB_txn *txn, MDB_dbi meta, MDB_dbi log)
{
    (void)log;
    MDB_val k = {.mv_size = 4, .mv_data = "hard"}, v;
    uint8_t copy[28];
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    assert_int_equal(v.mv_size, 28);
    memcpy(copy, v.mv_data, 28);
    copy[3] ^= 1;
    v.mv_data = copy;
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
}

static void test_flipped_bit_in_the_hard_state_is_detected(void **state)
{
    struct lfx *f = *state;
    struct store_hard_state hs = {.term = 4, .vote = 2, .commit = 0};
    assert_int_equal(store_log_append(f->fx.s, NULL, 0, &hs), 0);
    raw_edit(f, flip_hard_state);
    assert_int_equal(store_log_hard_state(f->fx.s, &hs), LATCH_ECORRUPT);
}

/* A "first" record of the wrong size. */
static void damage_first(MDB_txn *txn, MDB_dbi meta, MDB_dbi log)
{
    (void)log;
    MDB_val k = {.mv_size = 5, .mv_data = "first"}, v = {.mv_size = 3, .mv_data = "abc"};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
}

static void test_damaged_compaction_point_is_reported_by_log_bounds(void **state)
{
    struct lfx *f = *state;
    uint64_t first = 0, last = 0;
    assert_int_equal(store__log_bounds(f->fx.s, &first, &last), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 0);
    raw_edit(f, damage_first);
    assert_int_equal(store__log_bounds(f->fx.s, &first, &last), LATCH_ECORRUPT);
}

#endif /* !LATCH_STORE_WAL */

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_log_is_empty),
        T(test_append_stores_copies_of_entries),
        T(test_entries_of_several_calls_stay_valid_until_the_log_changes),
        T(test_append_truncates_conflicting_suffix),
        T(test_append_refuses_gaps_and_non_consecutive_batches),
        T(test_append_refuses_terms_going_back),
        T(test_entries_respect_max_bytes_but_return_at_least_one),
        T(test_entries_beyond_last_is_unavailable_and_empty_range_invalid),
        T(test_entries_of_many_large_entries_are_copied_intact),
        T(test_term_of_first_minus_one_is_the_compaction_term),
        T(test_entries_of_compacted_range_fail),
        T(test_compaction_errors),
        T(test_hard_state_round_trips_and_only_moves_forward),
        T(test_refused_append_writes_neither_entries_nor_hard_state),
        T(test_log_and_hard_state_survive_reopen),
        T(test_snapshot_record_round_trips),
        T(test_install_discards_a_log_that_does_not_match),
        T(test_install_keeps_the_entries_after_a_matching_index),
#ifndef LATCH_STORE_WAL
        T(test_flipped_byte_in_an_entry_is_detected),
        T(test_entry_under_the_wrong_index_is_detected),
        T(test_flipped_bit_in_the_hard_state_is_detected),
        T(test_damaged_compaction_point_is_reported_by_log_bounds),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
