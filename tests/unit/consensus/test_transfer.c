/*
 * test_transfer.c — leadership transfer (thesis §3.10): the leader stops accepting
 * proposals, brings the target up to date, sends it TimeoutNow, and the target campaigns
 * at once (bypassing PreVote and the leader lease of thesis §4.2.3); the transfer is
 * abandoned after an election timeout. PreVote and CheckQuorum are on here, as in
 * production, since they are what a transfer has to get past.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "raft.h"
#include "raft_fixture.h"

static void start_with_leader(struct fx *fx, size_t n)
{
    fx_init(fx, n);
    fx_set_pre_vote(fx, true);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    assert_int_equal(fx_term(fx, 1), 2);
}

struct vote_watch {
    size_t votes;
    size_t transfer_votes;
    size_t prevotes;
};

static void watch_votes(const struct fx_msg *msg, void *data)
{
    struct vote_watch *w = data;

    if (msg->m.type == RAFT_MSG_VOTE) {
        w->votes++;
        w->transfer_votes += msg->m.context == RAFT_CONTEXT_TRANSFER ? 1u : 0u;
    } else if (msg->m.type == RAFT_MSG_PREVOTE) {
        w->prevotes++;
    }
}

/* Thesis §3.10: to an up-to-date target the leader sends TimeoutNow at once; the target
 * starts an election in the next term without PreVote, its votes marked as a transfer so
 * that followers with a recent leader grant them. */
static void test_transfer_to_up_to_date_follower_elects_it_in_next_term(void **state)
{
    struct fx *fx = *state;
    struct vote_watch w = {0};
    const struct fx_msg *tn;

    start_with_leader(fx, 3);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 2), 0);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_status(fx, 1).transferee, 2);
    assert_int_equal(fx_trace_count(fx, 1, RAFT_TRACE_TRANSFER_START), 1);
    tn = fx_find(fx, RAFT_MSG_TIMEOUT_NOW, 1, 2);
    assert_non_null(tn);
    assert_false(tn->after_persist);
    fx_set_tap(fx, watch_votes, &w);
    fx_stabilize(fx);
    assert_int_equal(fx_role(fx, 2), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 2), 3);
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
    assert_int_equal(fx_status(fx, 1).leader, 2);
    assert_int_equal(fx_status(fx, 1).transferee, RAFT_NONE);
    assert_int_equal(w.prevotes, 0);
    assert_int_equal(w.votes, 2);
    assert_int_equal(w.transfer_votes, 2);
}

struct timeout_now_check {
    struct fx *fx;
    size_t sent;
};

/* TimeoutNow may leave only when the target's log matches the leader's. */
static void check_timeout_now(const struct fx_msg *msg, void *data)
{
    struct timeout_now_check *c = data;

    if (msg->m.type != RAFT_MSG_TIMEOUT_NOW) {
        return;
    }
    c->sent++;
    assert_int_equal(fx_last_index(c->fx, msg->m.to), fx_status(c->fx, msg->m.from).last_index);
}

/* Thesis §3.10: a lagging target is first brought up to date, then told to campaign. */
static void test_transfer_to_lagging_follower_catches_it_up_first(void **state)
{
    struct fx *fx = *state;
    struct timeout_now_check check = {.fx = fx};

    start_with_leader(fx, 3);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "a"), 0);
    assert_int_equal(fx_propose(fx, 1, "b"), 0);
    assert_int_equal(fx_propose(fx, 1, "c"), 0);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 7);
    fx_heal(fx);
    fx_set_tap(fx, check_timeout_now, &check);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 3), 0);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_count(fx, RAFT_MSG_TIMEOUT_NOW, 1, 3), 0);
    fx_stabilize(fx);
    for (unsigned i = 0; i < FX_ELECTION_TICK / 2 && fx_role(fx, 3) != RAFT_LEADER; i++) {
        fx_heartbeat(fx, 1);
    }
    assert_int_equal(check.sent, 1);
    assert_int_equal(fx_role(fx, 3), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 3), 3);
    fx_heartbeat(fx, 3);
    assert_true(fx_applied_data(fx, 3, "a"));
    assert_true(fx_applied_data(fx, 3, "c"));
}

/* Thesis §3.10: during a transfer the leader refuses new proposals, so that the target
 * can catch up; proposals forwarded from followers are dropped too. */
static void test_transfer_in_progress_refuses_proposals_with_etransfer(void **state)
{
    struct fx *fx = *state;
    raft_index last;

    start_with_leader(fx, 3);
    fx_isolate(fx, 3);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 3), 0);
    fx_handle_ready(fx_node(fx, 1));
    fx_stabilize(fx);
    assert_int_equal(fx_status(fx, 1).transferee, 3);
    last = fx_last_index(fx, 1);
    assert_int_equal(fx_propose(fx, 1, "x"), LATCH_ETRANSFER);
    assert_int_equal(fx_propose(fx, 2, "y"), 0); /* forwarded; the leader drops it */
    fx_stabilize(fx);
    assert_int_equal(fx_last_index(fx, 1), last);
}

/* Thesis §3.10: if the transfer does not complete within an election timeout the leader
 * abandons it and resumes accepting proposals. */
static void test_transfer_aborted_after_election_timeout_when_target_unreachable(void **state)
{
    struct fx *fx = *state;

    start_with_leader(fx, 3);
    fx_isolate(fx, 3);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 3), 0);
    fx_handle_ready(fx_node(fx, 1));
    for (unsigned i = 0; i < 2 * FX_ELECTION_TICK && fx_status(fx, 1).transferee != RAFT_NONE;
         i++) {
        fx_tick(fx, 1, 1);
        fx_stabilize(fx);
    }
    assert_int_equal(fx_status(fx, 1).transferee, RAFT_NONE);
    assert_int_equal(fx_trace_count(fx, 1, RAFT_TRACE_TRANSFER_ABORT), 1);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 2);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
}

/* Thesis §3.10: the transfer is the leader's job, so a follower forwards the request. */
static void test_transfer_request_from_follower_is_forwarded_to_leader(void **state)
{
    struct fx *fx = *state;
    const struct fx_msg *req;

    start_with_leader(fx, 3);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 2)->r, 2), 0);
    fx_handle_ready(fx_node(fx, 2));
    req = fx_find(fx, RAFT_MSG_TRANSFER_LEADER, 2, 1);
    assert_non_null(req);
    assert_int_equal(req->m.index, 2);
    fx_stabilize(fx);
    assert_int_equal(fx_role(fx, 2), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 2), 3);
}

/* Thesis §3.10: only a voter can become leader, so only a voter can be the target. */
static void test_transfer_to_non_voter_refused_with_einval(void **state)
{
    struct fx *fx = *state;

    start_with_leader(fx, 3);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 9), LATCH_EINVAL);
    fx_add_node(fx, 4);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), 0);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_true(raft_conf_state_is_learner(&fx_node(fx, 1)->conf, 4));
    assert_int_equal(raft_transfer_leader(fx_node(fx, 1)->r, 4), LATCH_EINVAL);
    assert_int_equal(fx_status(fx, 1).transferee, RAFT_NONE);
}

/* Thesis §3.10: without a leader there is nobody to hand leadership over. */
static void test_transfer_without_leader_fails_with_enoleader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    assert_int_equal(raft_transfer_leader(fx_node(fx, 2)->r, 3), LATCH_ENOLEADER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_transfer_to_up_to_date_follower_elects_it_in_next_term),
        FX_TEST(test_transfer_to_lagging_follower_catches_it_up_first),
        FX_TEST(test_transfer_in_progress_refuses_proposals_with_etransfer),
        FX_TEST(test_transfer_aborted_after_election_timeout_when_target_unreachable),
        FX_TEST(test_transfer_request_from_follower_is_forwarded_to_leader),
        FX_TEST(test_transfer_to_non_voter_refused_with_einval),
        FX_TEST(test_transfer_without_leader_fails_with_enoleader),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
