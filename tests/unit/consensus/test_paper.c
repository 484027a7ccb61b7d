/*
 * test_paper.c — the scenarios of the Raft paper (Ongaro & Ousterhout 2014) built with
 * hand-written logs: figure 7 (a new leader forces every divergent follower to duplicate
 * its log, paper §5.3), figure 8 (a leader never commits an entry of an earlier term by
 * counting replicas, paper §5.4.2), leader completeness (paper §5.4.3) and the follower's
 * commit rule of figure 2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "raft.h"
#include "raft_fixture.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static bool is_vote(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type == RAFT_MSG_VOTE || msg->m.type == RAFT_MSG_VOTE_RESP;
}

/* Campaigns on id delivering only votes; asserts the outcome. */
static void campaign(struct fx *fx, raft_id id, bool expect_win)
{
    raft_campaign(fx_node(fx, id)->r);
    fx_handle_ready(fx_node(fx, id));
    fx_stabilize_if(fx, is_vote, NULL);
    if (raft_is_leader(fx_node(fx, id)->r) != expect_win) {
        fail_msg("node %llu %s the election of term %llu", (unsigned long long)id,
                 expect_win ? "lost" : "won", (unsigned long long)fx_term(fx, id));
    }
}

/*
 * Paper figure 7 and §5.3: when the leader of term 8 comes to power, followers (a)-(f)
 * may miss entries (a, b), have extra uncommitted entries (c, d) or both (e, f). The
 * leader wins with the votes of a, b, e and f (c and d have more up-to-date logs, §5.4.1)
 * and then brings every follower's log to its own, deleting conflicting suffixes. Fails
 * under RAFT_BUG_NO_TRUNCATE_CONFLICT.
 */
static void test_paper_figure7_leader_brings_divergent_followers_to_its_log(void **state)
{
    struct fx *fx = *state;
    static const raft_term leader[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
    static const raft_term a[] = {1, 1, 1, 4, 4, 5, 5, 6, 6};
    static const raft_term b[] = {1, 1, 1, 4};
    static const raft_term c[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6};
    static const raft_term d[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7};
    static const raft_term e[] = {1, 1, 1, 4, 4, 4, 4};
    static const raft_term f[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
    static const raft_term want[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8};

    fx_init(fx, 7);
    fx_set_log(fx, 1, leader, LEN(leader), 7, 0);
    fx_set_log(fx, 2, a, LEN(a), 7, 0);
    fx_set_log(fx, 3, b, LEN(b), 7, 0);
    fx_set_log(fx, 4, c, LEN(c), 7, 0);
    fx_set_log(fx, 5, d, LEN(d), 7, 0);
    fx_set_log(fx, 6, e, LEN(e), 7, 0);
    fx_set_log(fx, 7, f, LEN(f), 7, 0);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    fx_deliver(fx, RAFT_MSG_VOTE, 1, 0);
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_VOTE_RESP, 0, 1, false), 4);
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_VOTE_RESP, 4, 1, true), 1);
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_VOTE_RESP, 5, 1, true), 1);
    fx_stabilize(fx);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 8);
    for (raft_id id = 1; id <= 7; id++) {
        fx_assert_log_terms(fx, id, want, LEN(want));
    }
    fx_heartbeat(fx, 1);
    for (raft_id id = 1; id <= 7; id++) {
        assert_int_equal(fx_commit(fx, id), 11);
        assert_int_equal(fx_node(fx, id)->applied, 11);
    }
}

/* Holds back appends from S1 to S3 that carry index 3 once S3 holds index 2. */
static bool fig8_deliverable(const struct fx_msg *msg, void *data)
{
    struct fx *fx = data;

    if (msg->m.type != RAFT_MSG_APPEND || msg->m.from != 1 || msg->m.to != 3) {
        return true;
    }
    for (uint32_t i = 0; i < msg->m.entries_count; i++) {
        if (msg->m.entries[i].index == 3 && fx_last_index(fx, 3) >= 2) {
            return false;
        }
    }
    return true;
}

/*
 * Builds figure 8 (c): S1 [1,2] won term 4 with the votes of S2 and S3 and appended its
 * no-op at index 3; the term-2 entry at index 2 now sits on S1, S2 and S3 — a majority —
 * but the term-4 entry only on S1 and S2. S4 and S5 are down. S1 sends one entry per
 * append (max_msg_bytes = 1), so S3 receives index 2 without index 3.
 */
static void fig8_build_c(struct fx *fx)
{
    static const raft_term s12[] = {1, 2};
    static const raft_term s34[] = {1};
    static const raft_term s5[] = {1, 3};
    static const raft_term want_s3[] = {1, 2};
    static const raft_term want_s12[] = {1, 2, 4};

    fx_init(fx, 5);
    fx_set_log(fx, 1, s12, 2, 3, 1);
    fx_set_log(fx, 2, s12, 2, 3, 1);
    fx_set_log(fx, 3, s34, 1, 3, 1);
    fx_set_log(fx, 4, s34, 1, 3, 1);
    fx_set_log(fx, 5, s5, 2, 4, 1);
    fx_node(fx, 1)->cfg.max_msg_bytes = 1;
    fx_start(fx);
    fx_isolate(fx, 4);
    fx_isolate(fx, 5);
    campaign(fx, 1, true);
    assert_int_equal(fx_term(fx, 1), 4);
    fx_stabilize_if(fx, fig8_deliverable, fx);
    fx_assert_log_terms(fx, 1, want_s12, 3);
    fx_assert_log_terms(fx, 2, want_s12, 3);
    fx_assert_log_terms(fx, 3, want_s3, 2);
}

/*
 * Paper §5.4.2 and figure 8 (c)-(d): in state (c) the leader must NOT commit index 2 by
 * counting replicas, because S5 can still be elected (votes of S3 and S4) and overwrite
 * it, as (d) then shows. Fails under RAFT_BUG_COMMIT_OLD_TERM.
 */
static void test_paper_figure8_leader_does_not_commit_previous_term_entry_by_counting(void **state)
{
    struct fx *fx = *state;
    static const raft_term want_d[] = {1, 3, 5};

    fig8_build_c(fx);
    for (raft_id id = 1; id <= 3; id++) {
        if (fx_commit(fx, id) >= 2) {
            fail_msg("S%llu committed index 2 (term 2) by counting replicas in term 4",
                     (unsigned long long)id);
        }
    }
    /* (d): S1 crashes; S5 wins term 5 with S3 and S4 and replaces index 2. */
    fx_clear(fx);
    fx_heal(fx);
    fx_isolate(fx, 1);
    campaign(fx, 5, true);
    assert_int_equal(fx_term(fx, 5), 5);
    fx_stabilize(fx);
    fx_heartbeat(fx, 5);
    for (raft_id id = 2; id <= 5; id++) {
        const struct fx_entry *applied = fx_applied_entry(fx, id, 2);

        fx_assert_log_terms(fx, id, want_d, 3);
        assert_non_null(applied);
        assert_int_equal(applied->term, 3);
    }
    assert_null(fx_applied_entry(fx, 1, 2));
}

/*
 * Paper §5.4.2 and figure 8 (e): once S1 replicates an entry of its own term (index 3) on
 * a majority, that entry commits and with it index 2 (Log Matching); S5 can then no
 * longer win an election, and the next leader keeps both entries.
 */
static void test_paper_figure8_previous_term_entry_commits_with_current_term_entry(void **state)
{
    struct fx *fx = *state;
    static const raft_term want[] = {1, 2, 4};
    const struct fx_entry *applied;

    fig8_build_c(fx);
    assert_true(fx_commit(fx, 1) < 2);
    for (unsigned i = 0; i < FX_ELECTION_TICK && fx_commit(fx, 1) < 3; i++) {
        fx_heartbeat(fx, 1);
    }
    assert_int_equal(fx_commit(fx, 1), 3);
    fx_assert_log_terms(fx, 3, want, 3);
    applied = fx_applied_entry(fx, 1, 2);
    assert_non_null(applied);
    assert_int_equal(applied->term, 2);
    /* S1 crashes; S5 (last term 3) cannot win against S2 and S3 (last term 4). */
    fx_clear(fx);
    fx_heal(fx);
    fx_isolate(fx, 1);
    campaign(fx, 5, false);
    campaign(fx, 2, true);
    fx_stabilize(fx);
    fx_heartbeat(fx, 2);
    for (raft_id id = 2; id <= 5; id++) {
        applied = fx_applied_entry(fx, id, 2);
        assert_non_null(applied);
        assert_int_equal(applied->term, 2);
        applied = fx_applied_entry(fx, id, 3);
        assert_non_null(applied);
        assert_int_equal(applied->term, 4);
    }
}

/*
 * Paper §5.4.3 (Leader Completeness): an entry committed in a term is in the log of every
 * later leader. Entries committed by S1 and S2 while S3 was away survive S1's crash: S3
 * cannot win (its log is behind), S2 can, and S3 then applies the same entries.
 */
static void test_paper_committed_entries_survive_leader_change(void **state)
{
    struct fx *fx = *state;
    struct fx_node *old;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "a"), 0);
    assert_int_equal(fx_propose(fx, 1, "b"), 0);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 6);
    fx_heal(fx);
    fx_isolate(fx, 1);
    campaign(fx, 3, false);
    campaign(fx, 2, true);
    fx_stabilize(fx);
    fx_heartbeat(fx, 2);
    old = fx_node(fx, 1);
    for (size_t i = 0; i < old->applied_count; i++) {
        const struct fx_entry *mine = &old->applied_entries[i];

        for (raft_id id = 2; id <= 3; id++) {
            const struct fx_entry *theirs = fx_applied_entry(fx, id, mine->index);

            assert_non_null(theirs);
            assert_int_equal(theirs->term, mine->term);
            assert_int_equal(theirs->len, mine->len);
        }
    }
    assert_true(fx_applied_data(fx, 3, "a"));
    assert_true(fx_applied_data(fx, 3, "b"));
}

/* Paper §5.3 and figure 2, AppendEntries receiver step 5: commitIndex = min(leaderCommit, index of
 * last new entry). Node 2 holds uncommitted entries 4 and 5 of term 1 that the leader has
 * not vouched for: an append matching only up to 3 must not commit them, however high the
 * leader's commit index. */
static void test_paper_follower_commit_is_min_of_leader_commit_and_last_new_entry(void **state)
{
    struct fx *fx = *state;
    static const raft_term log2[] = {1, 1, 1, 1, 1};
    static const raft_term want[] = {1, 1, 1, 2};
    struct raft_entry e = {.term = 2, .index = 4, .type = RAFT_ENTRY_NORMAL, .len = 1};
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 2);

    e.data = (const uint8_t *)"c";
    fx_init(fx, 3);
    fx_set_log(fx, 2, log2, LEN(log2), 1, 3);
    fx_start(fx);
    app.index = 3;
    app.log_term = 1;
    app.commit = 10;
    fx_step(fx, 2, &app);
    assert_int_equal(fx_last_index(fx, 2), 5);
    assert_int_equal(fx_commit(fx, 2), 3);
    assert_int_equal(fx_node(fx, 2)->applied, 3);
    app.entries = &e;
    app.entries_count = 1;
    fx_step(fx, 2, &app);
    fx_assert_log_terms(fx, 2, want, LEN(want));
    assert_int_equal(fx_commit(fx, 2), 4);
    assert_int_equal(fx_node(fx, 2)->applied, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_paper_figure7_leader_brings_divergent_followers_to_its_log),
        FX_TEST(test_paper_figure8_leader_does_not_commit_previous_term_entry_by_counting),
        FX_TEST(test_paper_figure8_previous_term_entry_commits_with_current_term_entry),
        FX_TEST(test_paper_committed_entries_survive_leader_change),
        FX_TEST(test_paper_follower_commit_is_min_of_leader_commit_and_last_new_entry),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
