/*
 * test_readindex.c — linearizable reads with ReadIndex (thesis §6.4): the leader records
 * its commit index, confirms it is still the leader with a round of heartbeats answered
 * by a quorum, and only then hands out the read point; a new leader first commits an entry
 * of its own term so that its commit index is current.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "latch_error.h"
#include "raft.h"
#include "raft_fixture.h"
#include "raft_memstore.h"

static bool is_vote(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type == RAFT_MSG_VOTE || msg->m.type == RAFT_MSG_VOTE_RESP;
}

static bool is_heartbeat(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type == RAFT_MSG_HEARTBEAT || msg->m.type == RAFT_MSG_HEARTBEAT_RESP;
}

/* Thesis §6.4 steps 1-4: the read point is the commit index, handed out only after a
 * quorum (here 3 of 5, the leader included) answered the heartbeats sent for it. */
static void test_read_index_leader_answers_only_after_heartbeat_quorum(void **state)
{
    struct fx *fx = *state;
    struct fx_node *leader;
    raft_index commit;

    fx_init(fx, 5);
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    leader = fx_node(fx, 1);
    commit = fx_commit(fx, 1);
    assert_int_equal(commit, 7);
    assert_int_equal(raft_read_index(leader->r, 42), 0);
    fx_handle_ready(leader);
    assert_int_equal(leader->reads_count, 0);
    assert_int_equal(fx_count(fx, RAFT_MSG_HEARTBEAT, 1, 0), 4);
    fx_deliver(fx, RAFT_MSG_HEARTBEAT, 1, 2);
    fx_deliver(fx, RAFT_MSG_HEARTBEAT_RESP, 2, 1);
    assert_int_equal(leader->reads_count, 0); /* 2 of 5 */
    fx_deliver(fx, RAFT_MSG_HEARTBEAT, 1, 3);
    fx_deliver(fx, RAFT_MSG_HEARTBEAT_RESP, 3, 1);
    assert_int_equal(leader->reads_count, 1); /* 3 of 5 */
    assert_int_equal(leader->reads[0].context, 42);
    assert_int_equal(leader->reads[0].index, commit);
    fx_stabilize(fx);
    assert_int_equal(leader->reads_count, 1);
}

/* Thesis §6.4 step 1: a new leader does not know the commit index until it has committed
 * an entry of its term (its no-op); it answers no read before that. */
static void test_read_index_waits_for_leader_to_commit_entry_of_its_term(void **state)
{
    struct fx *fx = *state;
    struct fx_node *leader;

    fx_init(fx, 3);
    fx_start(fx);
    leader = fx_node(fx, 1);
    raft_campaign(leader->r);
    fx_handle_ready(leader);
    fx_stabilize_if(fx, is_vote, NULL);
    assert_true(raft_is_leader(leader->r));
    assert_int_equal(fx_commit(fx, 1), 3);
    assert_int_equal(raft_read_index(leader->r, 7), 0);
    fx_handle_ready(leader);
    fx_stabilize_if(fx, is_heartbeat, NULL);
    fx_tick(fx, 1, FX_HEARTBEAT_TICK);
    fx_stabilize_if(fx, is_heartbeat, NULL);
    assert_int_equal(leader->reads_count, 0);
    assert_int_equal(fx_commit(fx, 1), 3);
    fx_stabilize(fx);
    for (unsigned i = 0; i < 3 && leader->reads_count == 0; i++) {
        fx_heartbeat(fx, 1);
    }
    assert_int_equal(fx_commit(fx, 1), 4);
    assert_int_equal(leader->reads_count, 1);
    assert_int_equal(leader->reads[0].context, 7);
    assert_int_equal(leader->reads[0].index, 4);
}

/* Thesis §6.4 (reads from followers): a read on a follower is forwarded; the leader runs the
 * heartbeat round and the answer comes back to the follower, which then waits to apply up to the
 * read point. */
static void test_read_index_from_follower_is_forwarded_to_leader(void **state)
{
    struct fx *fx = *state;
    struct fx_node *follower;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    follower = fx_node(fx, 2);
    assert_int_equal(raft_read_index(follower->r, 99), 0);
    fx_handle_ready(follower);
    assert_int_equal(fx_count(fx, RAFT_MSG_READ_INDEX, 2, 1), 1);
    fx_stabilize(fx);
    assert_int_equal(follower->reads_count, 1);
    assert_int_equal(follower->reads[0].context, 99);
    assert_int_equal(follower->reads[0].index, fx_commit(fx, 1));
    assert_int_equal(fx_node(fx, 1)->reads_count, 0);
}

/* Thesis §6.4: with a single voter the leader is its own quorum and answers at once. */
static void test_read_index_single_voter_cluster_answers_immediately(void **state)
{
    struct fx *fx = *state;
    struct fx_node *node;

    fx_init(fx, 1);
    fx_start(fx);
    fx_elect(fx, 1);
    node = fx_node(fx, 1);
    assert_int_equal(fx_commit(fx, 1), 2);
    assert_int_equal(raft_read_index(node->r, 5), 0);
    fx_handle_ready(node);
    assert_int_equal(node->reads_count, 1);
    assert_int_equal(node->reads[0].context, 5);
    assert_int_equal(node->reads[0].index, 2);
    assert_int_equal(fx->msgs_count, 0);
}

/* Thesis §6.4: a leader cut off from the quorum (possibly deposed) must not answer. */
static void test_read_index_isolated_leader_never_answers(void **state)
{
    struct fx *fx = *state;
    struct fx_node *leader;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    leader = fx_node(fx, 1);
    fx_isolate(fx, 1);
    assert_int_equal(raft_read_index(leader->r, 1), 0);
    fx_handle_ready(leader);
    for (unsigned i = 0; i < 3 * FX_ELECTION_TICK; i++) {
        fx_tick(fx, 1, 1);
        fx_stabilize(fx);
    }
    assert_int_equal(leader->reads_count, 0);
}

/* Thesis §6.4 step 3: each request needs its own round: heartbeats answered before a request was
 * made do not confirm it. */
static void test_read_index_request_needs_its_own_heartbeat_round(void **state)
{
    struct fx *fx = *state;
    struct fx_node *leader;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    leader = fx_node(fx, 1);
    assert_int_equal(raft_read_index(leader->r, 1), 0);
    fx_handle_ready(leader);
    /* The round for request 1 reaches the followers, but the answers are held back. */
    fx_deliver(fx, RAFT_MSG_HEARTBEAT, 1, 0);
    assert_int_equal(raft_read_index(leader->r, 2), 0);
    fx_handle_ready(leader);
    fx_deliver(fx, RAFT_MSG_HEARTBEAT_RESP, 0, 1);
    assert_int_equal(leader->reads_count, 1);
    assert_int_equal(leader->reads[0].context, 1);
    fx_stabilize(fx);
    assert_int_equal(leader->reads_count, 2);
    assert_int_equal(leader->reads[1].context, 2);
}

/* Thesis §6.4: only a leader can establish a read index. */
static void test_read_index_without_leader_fails_with_enoleader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    assert_int_equal(raft_read_index(fx_node(fx, 1)->r, 1), LATCH_ENOLEADER);
    assert_int_equal(raft_read_index(fx_node(fx, 2)->r, 1), LATCH_ENOLEADER);
}

/* Thesis §6.4.1: with lease reads the leader trusts its CheckQuorum lease instead of a
 * heartbeat round, so once it has committed an entry of its term it answers at once. */
static void test_read_index_lease_based_answers_without_heartbeat_round(void **state)
{
    struct fx *fx = *state;
    struct fx_node *leader;

    fx_init(fx, 3);
    fx_set_check_quorum(fx, true);
    for (raft_id id = 1; id <= 3; id++) {
        fx_node(fx, id)->cfg.read_only = RAFT_READ_LEASE_BASED;
    }
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    fx_stabilize(fx);
    leader = fx_node(fx, 1);
    fx_clear(fx);
    assert_int_equal(raft_read_index(leader->r, 5), 0);
    fx_handle_ready(leader);
    assert_int_equal(leader->reads_count, 1);
    assert_int_equal(leader->reads[0].context, 5);
    assert_int_equal(leader->reads[0].index, fx_commit(fx, 1));
    assert_int_equal(fx_count(fx, RAFT_MSG_HEARTBEAT, 1, 0), 0);
}

/* A lease is only as good as CheckQuorum, which makes a leader without a quorum step down
 * within an election timeout: lease reads without it are refused at creation. */
static void test_read_index_lease_based_requires_check_quorum(void **state)
{
    struct raft_memstore *ms = NULL;
    struct raft_config cfg;
    struct raft *r = NULL;

    (void)state;
    assert_int_equal(raft_memstore_new(NULL, &ms), 0);
    raft_config_defaults(&cfg);
    cfg.id = 1;
    cfg.storage = raft_memstore_storage(ms);
    cfg.read_only = RAFT_READ_LEASE_BASED;
    cfg.check_quorum = false;
    assert_int_equal(raft_new(&cfg, &r), LATCH_EINVAL);
    cfg.check_quorum = true;
    assert_int_equal(raft_new(&cfg, &r), 0);
    raft_free(r);
    raft_memstore_free(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_read_index_leader_answers_only_after_heartbeat_quorum),
        FX_TEST(test_read_index_waits_for_leader_to_commit_entry_of_its_term),
        FX_TEST(test_read_index_from_follower_is_forwarded_to_leader),
        FX_TEST(test_read_index_single_voter_cluster_answers_immediately),
        FX_TEST(test_read_index_isolated_leader_never_answers),
        FX_TEST(test_read_index_request_needs_its_own_heartbeat_round),
        FX_TEST(test_read_index_without_leader_fails_with_enoleader),
        FX_TEST(test_read_index_lease_based_answers_without_heartbeat_round),
        FX_TEST(test_read_index_lease_based_requires_check_quorum),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
