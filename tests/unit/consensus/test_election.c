/*
 * test_election.c — leader election (paper §5.2, §5.4.1; thesis §3.4, §3.6.1), PreVote
 * (thesis §9.6) and CheckQuorum with the leader-stickiness rule for votes (thesis §6.2,
 * §4.2.3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "raft.h"
#include "raft_fixture.h"

/* A RequestVote from `from` to `to` in term, for a candidate whose log ends at
 * (last_index, last_term). */
static struct raft_msg
vote_req(raft_id from, raft_id to, raft_term term, raft_index last_index, raft_term last_term)
{
    struct raft_msg m = fx_make_msg(RAFT_MSG_VOTE, from, to, term);

    m.index = last_index;
    m.log_term = last_term;
    return m;
}

static bool granted(struct fx *fx, raft_id voter, raft_id candidate)
{
    return fx_count_reject(fx, RAFT_MSG_VOTE_RESP, voter, candidate, false) > 0;
}

static bool is_vote_or_prevote(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type == RAFT_MSG_VOTE || msg->m.type == RAFT_MSG_VOTE_RESP ||
           msg->m.type == RAFT_MSG_PREVOTE || msg->m.type == RAFT_MSG_PREVOTE_RESP;
}

/* Ticks id until it has queued a message of type (at most three election timeouts). */
static void tick_until_sends(struct fx *fx, raft_id id, uint32_t type)
{
    for (unsigned i = 0; i < 3 * FX_ELECTION_TICK && fx_count(fx, type, id, 0) == 0; i++) {
        fx_tick(fx, id, 1);
    }
    assert_true(fx_count(fx, type, id, 0) > 0);
}

/* Paper §5.2: a follower that hears nothing for an election timeout (randomized, at least
 * election_tick) starts an election: new term, votes for itself, asks every peer. */
static void test_election_follower_campaigns_after_election_timeout(void **state)
{
    struct fx *fx = *state;
    const struct fx_msg *req;
    struct raft_status st;

    fx_init(fx, 3);
    fx_start(fx);
    fx_tick(fx, 1, FX_ELECTION_TICK - 1);
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
    assert_int_equal(fx_count(fx, RAFT_MSG_VOTE, 1, 0), 0);
    for (unsigned i = 0; i < 2 * FX_ELECTION_TICK && fx_role(fx, 1) == RAFT_FOLLOWER; i++) {
        fx_tick(fx, 1, 1);
    }
    st = fx_status(fx, 1);
    assert_int_equal(st.role, RAFT_CANDIDATE);
    assert_int_equal(st.term, 2);
    assert_int_equal(st.vote, 1);
    assert_int_equal(fx_count(fx, RAFT_MSG_VOTE, 1, 2), 1);
    assert_int_equal(fx_count(fx, RAFT_MSG_VOTE, 1, 3), 1);
    req = fx_find(fx, RAFT_MSG_VOTE, 1, 2);
    assert_int_equal(req->m.term, 2);
    assert_int_equal(req->m.index, 3);
    assert_int_equal(req->m.log_term, 1);
    /* Thesis §3.8: the new term and the vote for itself are durable before anyone is
     * asked, or a restarted candidate could vote twice in the term. */
    assert_true(req->after_persist);
}

/* Paper §5.2: a candidate wins once a majority (itself included) grants it a vote, and the
 * new leader appends an empty entry of its term (thesis §6.4, needed to learn commit). */
static void test_election_candidate_wins_with_majority_of_votes(void **state)
{
    struct fx *fx = *state;
    const struct raft_entry *noop;

    fx_init(fx, 3);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_role(fx, 1), RAFT_CANDIDATE);
    fx_deliver(fx, RAFT_MSG_VOTE, 1, 2);
    fx_drop(fx, RAFT_MSG_VOTE, 1, 3);
    assert_true(granted(fx, 2, 1));
    fx_deliver(fx, RAFT_MSG_VOTE_RESP, 2, 1);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 2);
    noop = raft_memstore_entry(fx_node(fx, 1)->ms, 4);
    assert_non_null(noop);
    assert_int_equal(noop->term, 2);
    assert_int_equal(noop->type, RAFT_ENTRY_NORMAL);
    assert_int_equal(noop->len, 0);
    fx_stabilize(fx);
    assert_int_equal(fx_status(fx, 2).leader, 1);
    assert_int_equal(fx_status(fx, 3).leader, 1);
    assert_int_equal(fx_commit(fx, 1), 4);
}

/* Paper §5.2: without a majority the candidate keeps waiting (2 of 5 is not enough). */
static void test_election_candidate_without_majority_does_not_become_leader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 5);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    fx_isolate(fx, 3);
    fx_isolate(fx, 4);
    fx_isolate(fx, 5);
    fx_stabilize(fx);
    assert_int_equal(fx_role(fx, 1), RAFT_CANDIDATE);
    assert_int_equal(fx_term(fx, 1), 2);
}

/* Paper §5.1: a request from a lower term is rejected (and the node keeps its term). */
static void test_election_rejects_vote_from_lower_term(void **state)
{
    struct fx *fx = *state;
    struct raft_msg req = vote_req(1, 2, 3, 3, 1);
    struct raft_status st;

    fx_init(fx, 3);
    fx_set_term(fx, 2, 5);
    fx_start(fx);
    fx_step(fx, 2, &req);
    st = fx_status(fx, 2);
    assert_int_equal(st.term, 5);
    assert_int_equal(st.vote, RAFT_NONE);
    assert_false(granted(fx, 2, 1));
}

/* Paper §5.4.1 (election restriction): a voter denies its vote when its own log is more
 * up-to-date — here its last term (2) is higher than the candidate's (1), although the
 * candidate's log is longer. Fails under RAFT_BUG_VOTE_IGNORES_LOG. */
static void test_election_rejects_candidate_with_lower_last_log_term(void **state)
{
    struct fx *fx = *state;
    const raft_term voter_log[] = {1, 1, 2};
    struct raft_msg req = vote_req(1, 2, 3, 5, 1);

    fx_init(fx, 3);
    fx_set_log(fx, 2, voter_log, 3, 2, 0);
    fx_start(fx);
    fx_step(fx, 2, &req);
    assert_false(granted(fx, 2, 1));
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_VOTE_RESP, 2, 1, true), 1);
    assert_int_equal(fx_term(fx, 2), 3);
    assert_int_equal(fx_status(fx, 2).vote, RAFT_NONE);
}

/* Paper §5.4.1: with equal last terms the longer log is more up-to-date, so a voter with
 * a longer log denies its vote. Fails under RAFT_BUG_VOTE_IGNORES_LOG. */
static void test_election_rejects_candidate_with_shorter_log_in_same_term(void **state)
{
    struct fx *fx = *state;
    const raft_term voter_log[] = {1, 1, 2, 2};
    struct raft_msg req = vote_req(1, 2, 3, 3, 2);

    fx_init(fx, 3);
    fx_set_log(fx, 2, voter_log, 4, 2, 0);
    fx_start(fx);
    fx_step(fx, 2, &req);
    assert_false(granted(fx, 2, 1));
    assert_int_equal(fx_status(fx, 2).vote, RAFT_NONE);
}

/* Paper §5.4.1: a candidate at least as up-to-date gets the vote — equal logs, or a
 * higher last term with a shorter log. */
static void test_election_grants_vote_to_candidate_with_up_to_date_log(void **state)
{
    struct fx *fx = *state;
    const raft_term voter_log[] = {1, 1, 2, 2};
    struct raft_msg equal = vote_req(1, 2, 3, 4, 2);
    struct raft_msg newer = vote_req(3, 2, 4, 3, 3);

    fx_init(fx, 3);
    fx_set_log(fx, 2, voter_log, 4, 2, 0);
    fx_start(fx);
    fx_step(fx, 2, &equal);
    assert_true(granted(fx, 2, 1));
    assert_int_equal(fx_status(fx, 2).vote, 1);
    fx_clear(fx);
    fx_step(fx, 2, &newer);
    assert_true(granted(fx, 2, 3));
    assert_int_equal(fx_status(fx, 2).vote, 3);
    assert_int_equal(fx_term(fx, 2), 4);
}

/* Paper §5.2: each server votes for at most one candidate in a term (first come, first
 * served); a repeated request from the same candidate is answered the same way. */
static void test_election_grants_at_most_one_vote_per_term(void **state)
{
    struct fx *fx = *state;
    struct raft_msg from1 = vote_req(1, 3, 2, 3, 1);
    struct raft_msg from2 = vote_req(2, 3, 2, 3, 1);

    fx_init(fx, 3);
    fx_start(fx);
    fx_step(fx, 3, &from1);
    assert_true(granted(fx, 3, 1));
    fx_step(fx, 3, &from2);
    assert_false(granted(fx, 3, 2));
    fx_clear(fx);
    fx_step(fx, 3, &from1);
    assert_true(granted(fx, 3, 1));
    assert_int_equal(fx_status(fx, 3).vote, 1);
}

/* Thesis §3.8 / paper figure 2: the vote is persistent state, written to stable storage
 * before the response leaves. The grant must be in msgs_after_persist, never in msgs, and
 * the same ready must carry the vote in its hard state. Fails under
 * RAFT_BUG_VOTE_BEFORE_PERSIST. */
static void test_election_vote_response_sent_only_after_vote_is_persisted(void **state)
{
    struct fx *fx = *state;
    struct raft_msg req = vote_req(1, 2, 2, 3, 1);
    struct fx_node *voter;
    struct raft_ready rd;
    struct raft_hard_state hs;
    size_t grants = 0;

    fx_init(fx, 3);
    fx_start(fx);
    voter = fx_node(fx, 2);
    assert_int_equal(raft_step(voter->r, &req), 0);
    assert_true(raft_has_ready(voter->r));
    raft_ready(voter->r, &rd);
    assert_true(rd.hard_state_changed);
    assert_true(rd.must_sync);
    assert_int_equal(rd.hard_state.term, 2);
    assert_int_equal(rd.hard_state.vote, 1);
    for (size_t i = 0; i < rd.msgs_count; i++) {
        assert_int_not_equal(rd.msgs[i].type, RAFT_MSG_VOTE_RESP);
    }
    for (size_t i = 0; i < rd.msgs_after_persist_count; i++) {
        const struct raft_msg *m = &rd.msgs_after_persist[i];

        if (m->type == RAFT_MSG_VOTE_RESP && m->to == 1 && !m->reject) {
            grants++;
        }
    }
    assert_int_equal(grants, 1);
    fx_process_ready(voter, &rd);
    fx_handle_ready(voter);
    raft_memstore_hard_state(voter->ms, &hs);
    assert_int_equal(hs.term, 2);
    assert_int_equal(hs.vote, 1);
}

/* Paper figure 2 and thesis §3.8 (votedFor is persistent): after a crash and restart the node still
 * remembers whom it voted for in the term and refuses a second candidate. */
static void test_election_vote_survives_restart(void **state)
{
    struct fx *fx = *state;
    struct raft_msg from1 = vote_req(1, 2, 2, 3, 1);
    struct raft_msg from3 = vote_req(3, 2, 2, 3, 1);

    fx_init(fx, 3);
    fx_start(fx);
    fx_step(fx, 2, &from1);
    assert_true(granted(fx, 2, 1));
    fx_crash(fx, 2);
    fx_restart(fx, 2);
    assert_int_equal(fx_status(fx, 2).vote, 1);
    assert_int_equal(fx_term(fx, 2), 2);
    fx_step(fx, 2, &from3);
    assert_false(granted(fx, 2, 3));
}

/* Paper §5.2: when votes split nobody wins the term; randomized timeouts make a later
 * election succeed. Node 3 is cut off, 1 and 2 campaign at once and vote for themselves. */
static void test_election_split_vote_is_resolved_by_a_later_election(void **state)
{
    struct fx *fx = *state;
    raft_id leader = RAFT_NONE;
    size_t leaders = 0;

    fx_init(fx, 3);
    fx_start(fx);
    fx_isolate(fx, 3);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    raft_campaign(fx_node(fx, 2)->r);
    fx_handle_ready(fx_node(fx, 2));
    fx_stabilize(fx);
    assert_int_equal(fx_role(fx, 1), RAFT_CANDIDATE);
    assert_int_equal(fx_role(fx, 2), RAFT_CANDIDATE);
    assert_int_equal(fx_term(fx, 1), 2);
    assert_int_equal(fx_term(fx, 2), 2);
    fx_heal(fx);
    for (unsigned i = 0; i < 10 * FX_ELECTION_TICK && leader == RAFT_NONE; i++) {
        fx_tick_all(fx, 1);
        fx_stabilize(fx);
        leader = fx_leader(fx);
    }
    assert_int_not_equal(leader, RAFT_NONE);
    assert_true(fx_term(fx, leader) >= 3);
    for (raft_id id = 1; id <= 3; id++) {
        leaders += fx_role(fx, id) == RAFT_LEADER ? 1u : 0u;
    }
    assert_int_equal(leaders, 1);
}

/* Paper §5.2: a candidate that hears from a leader of its own term returns to follower. */
static void test_election_candidate_steps_down_on_append_from_leader_of_same_term(void **state)
{
    struct fx *fx = *state;
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 2);
    struct raft_status st;

    fx_init(fx, 3);
    fx_start(fx);
    raft_campaign(fx_node(fx, 2)->r);
    fx_handle_ready(fx_node(fx, 2));
    assert_int_equal(fx_role(fx, 2), RAFT_CANDIDATE);
    fx_clear(fx);
    app.index = 3;
    app.log_term = 1;
    app.commit = 3;
    fx_step(fx, 2, &app);
    st = fx_status(fx, 2);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.term, 2);
    assert_int_equal(st.leader, 1);
}

/* Paper §5.1: a leader that sees a higher term in any message reverts to follower. */
static void test_election_leader_steps_down_on_message_with_higher_term(void **state)
{
    struct fx *fx = *state;
    struct raft_msg resp = fx_make_msg(RAFT_MSG_HEARTBEAT_RESP, 2, 1, 5);

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_step(fx, 1, &resp);
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
    assert_int_equal(fx_term(fx, 1), 5);
}

/* Thesis §3.4: a candidate with a majority wins; alone, it is its own majority. */
static void test_election_single_voter_becomes_leader_at_once(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 1);
    fx_start(fx);
    assert_true(fx_tick_until_leader(fx, 1));
    assert_int_equal(fx_term(fx, 1), 2);
    assert_int_equal(fx->msgs_count, 0);
}

/* Isolates node 3, commits an entry without it and ticks it for many election timeouts. */
static void partition_and_tick_node3(struct fx *fx)
{
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_term(fx, 1), 2);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "while-3-away"), 0);
    fx_stabilize(fx);
    fx_tick(fx, 3, 5 * FX_ELECTION_TICK);
    fx_stabilize(fx); /* everything node 3 sent is lost */
    fx_heal(fx);
}

/* Thesis §9.6: with PreVote a partitioned node does not raise its term while it cannot
 * win, so when it comes back it does not depose a stable leader. */
static void test_prevote_rejoining_partitioned_node_does_not_disrupt_leader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_set_pre_vote(fx, true);
    partition_and_tick_node3(fx);
    assert_int_equal(fx_term(fx, 3), 2);
    assert_int_not_equal(fx_role(fx, 3), RAFT_CANDIDATE);
    /* Its pre-votes now reach the others, who refuse: its log is behind. */
    tick_until_sends(fx, 3, RAFT_MSG_PREVOTE);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    for (raft_id id = 1; id <= 3; id++) {
        assert_int_equal(fx_term(fx, id), 2);
    }
    assert_int_equal(fx_role(fx, 3), RAFT_FOLLOWER);
    assert_int_equal(fx_status(fx, 3).leader, 1);
}

/* Thesis §9.6 with §6.2: PreVote together with CheckQuorum also protects the leader from
 * a rejoining node whose log is up to date: the others heard from their leader recently. */
static void test_prevote_with_check_quorum_up_to_date_node_does_not_disrupt_leader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_set_pre_vote(fx, true);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_isolate(fx, 3);
    fx_tick(fx, 3, 5 * FX_ELECTION_TICK);
    fx_stabilize(fx);
    fx_heal(fx);
    assert_int_equal(fx_term(fx, 3), 2);
    tick_until_sends(fx, 3, RAFT_MSG_PREVOTE);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 2);
    assert_int_equal(fx_term(fx, 2), 2);
    assert_int_equal(fx_status(fx, 3).leader, 1);
}

/* Thesis §9.6 (the problem PreVote solves): without it, the partitioned node's term keeps
 * rising, and when it returns its higher term forces the leader to step down. */
static void test_election_without_prevote_rejoining_node_disrupts_leader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    partition_and_tick_node3(fx);
    assert_true(fx_term(fx, 3) > 2);
    tick_until_sends(fx, 3, RAFT_MSG_VOTE);
    fx_stabilize(fx);
    assert_true(fx_term(fx, 1) > 2);
    assert_true(fx_term(fx, 2) > 2);
    assert_int_not_equal(fx_role(fx, 1), RAFT_LEADER);
}

/* Thesis §6.2: a leader that cannot reach a quorum for an election timeout steps down, so
 * clients can find the real leader. */
static void test_check_quorum_isolated_leader_steps_down(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_isolate(fx, 1);
    for (unsigned i = 0; i < 3 * FX_ELECTION_TICK && fx_role(fx, 1) == RAFT_LEADER; i++) {
        fx_tick(fx, 1, 1);
        fx_stabilize(fx);
    }
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
    assert_true(fx_trace_count(fx, 1, RAFT_TRACE_STEP_DOWN_NO_QUORUM) >= 1);
}

/* Thesis §6.2: a leader that does hear from a quorum keeps leading. */
static void test_check_quorum_leader_with_quorum_keeps_leading(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_isolate(fx, 3); /* 1 and 2 are still a quorum */
    for (unsigned i = 0; i < 5 * FX_ELECTION_TICK; i++) {
        fx_tick(fx, 1, 1);
        fx_stabilize(fx);
    }
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 2);
}

/* Thesis §4.2.3 (used with §6.2): a server that heard from a current leader within the
 * election timeout neither updates its term nor grants a vote for a normal election. */
static void test_check_quorum_follower_with_recent_leader_ignores_vote_request(void **state)
{
    struct fx *fx = *state;
    struct raft_msg req;

    fx_init(fx, 3);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    req = vote_req(3, 2, 3, fx_last_index(fx, 3), 2);
    fx_step(fx, 2, &req);
    assert_false(granted(fx, 2, 3));
    assert_int_equal(fx_term(fx, 2), 2);
    assert_int_equal(fx_status(fx, 2).leader, 1);
}

/* Thesis §3.10 with §4.2.3: a vote that a leadership transfer started (context
 * RAFT_CONTEXT_TRANSFER) is not held back by the recent leader. */
static void test_check_quorum_follower_grants_transfer_vote_despite_recent_leader(void **state)
{
    struct fx *fx = *state;
    struct raft_msg req;

    fx_init(fx, 3);
    fx_set_check_quorum(fx, true);
    fx_start(fx);
    fx_elect(fx, 1);
    req = vote_req(3, 2, 3, fx_last_index(fx, 3), 2);
    req.context = RAFT_CONTEXT_TRANSFER;
    fx_step(fx, 2, &req);
    assert_true(granted(fx, 2, 3));
    assert_int_equal(fx_term(fx, 2), 3);
}

/* Paper §5.2: an election over PreVote still ends with one leader of the next term. */
static void test_prevote_election_elects_leader_in_next_term(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_set_pre_vote(fx, true);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_role(fx, 1), RAFT_PRE_CANDIDATE);
    assert_int_equal(fx_term(fx, 1), 1); /* a pre-candidate does not raise its term */
    assert_int_equal(fx_count(fx, RAFT_MSG_PREVOTE, 1, 0), 2);
    assert_int_equal(fx_find(fx, RAFT_MSG_PREVOTE, 1, 2)->m.term, 2);
    fx_stabilize_if(fx, is_vote_or_prevote, NULL);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_election_follower_campaigns_after_election_timeout),
        FX_TEST(test_election_candidate_wins_with_majority_of_votes),
        FX_TEST(test_election_candidate_without_majority_does_not_become_leader),
        FX_TEST(test_election_rejects_vote_from_lower_term),
        FX_TEST(test_election_rejects_candidate_with_lower_last_log_term),
        FX_TEST(test_election_rejects_candidate_with_shorter_log_in_same_term),
        FX_TEST(test_election_grants_vote_to_candidate_with_up_to_date_log),
        FX_TEST(test_election_grants_at_most_one_vote_per_term),
        FX_TEST(test_election_vote_response_sent_only_after_vote_is_persisted),
        FX_TEST(test_election_vote_survives_restart),
        FX_TEST(test_election_split_vote_is_resolved_by_a_later_election),
        FX_TEST(test_election_candidate_steps_down_on_append_from_leader_of_same_term),
        FX_TEST(test_election_leader_steps_down_on_message_with_higher_term),
        FX_TEST(test_election_single_voter_becomes_leader_at_once),
        FX_TEST(test_prevote_election_elects_leader_in_next_term),
        FX_TEST(test_prevote_rejoining_partitioned_node_does_not_disrupt_leader),
        FX_TEST(test_prevote_with_check_quorum_up_to_date_node_does_not_disrupt_leader),
        FX_TEST(test_election_without_prevote_rejoining_node_disrupts_leader),
        FX_TEST(test_check_quorum_isolated_leader_steps_down),
        FX_TEST(test_check_quorum_leader_with_quorum_keeps_leading),
        FX_TEST(test_check_quorum_follower_with_recent_leader_ignores_vote_request),
        FX_TEST(test_check_quorum_follower_grants_transfer_vote_despite_recent_leader),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
