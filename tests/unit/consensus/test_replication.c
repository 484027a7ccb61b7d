/*
 * test_replication.c — log replication (paper §5.3, thesis §3.5): commitment by majority,
 * in-order apply, pipelining and flow control (thesis §10.2.1-§10.2.2), the leader's
 * persist-before-count rule (thesis §10.2.1), repair of divergent followers, proposal
 * forwarding, and the validation of what peers send (paper §5.1, §5.3).
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
#include "raft.h"
#include "raft_fixture.h"

static void start_with_leader(struct fx *fx, size_t n)
{
    fx_init(fx, n);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
}

static struct raft_progress_info progress(struct fx *fx, raft_id leader, raft_id id)
{
    struct raft_progress_info info;

    memset(&info, 0, sizeof(info));
    assert_int_equal(raft_progress(fx_node(fx, leader)->r, id, &info), 0);
    return info;
}

/* Heartbeats from leader until id's commit reaches index (at most an election timeout). */
static void heartbeat_until_commit(struct fx *fx, raft_id leader, raft_id id, raft_index index)
{
    for (unsigned i = 0; i < FX_ELECTION_TICK && fx_commit(fx, id) < index; i++) {
        fx_heartbeat(fx, leader);
    }
    assert_int_equal(fx_commit(fx, id), index);
}

/* Paper §5.3: an entry is committed once the leader has replicated it on a majority, and
 * followers learn the commit index from the leader and apply. */
static void test_replication_proposal_commits_once_on_majority(void **state)
{
    struct fx *fx = *state;

    start_with_leader(fx, 3);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    assert_int_equal(fx_last_index(fx, 1), 5);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 5);
    assert_true(fx_applied_data(fx, 1, "x"));
    heartbeat_until_commit(fx, 1, 2, 5);
    assert_true(fx_applied_data(fx, 2, "x"));
    assert_false(fx_applied_data(fx, 3, "x"));
}

/* Paper §5.3: without a majority the entry stays uncommitted however long we wait; once
 * the followers are back the leader retries and commits it. */
static void test_replication_proposal_not_committed_without_majority(void **state)
{
    struct fx *fx = *state;

    start_with_leader(fx, 3);
    fx_isolate(fx, 2);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    for (unsigned i = 0; i < 3; i++) {
        fx_heartbeat(fx, 1);
    }
    assert_int_equal(fx_commit(fx, 1), 4);
    assert_false(fx_applied_data(fx, 1, "x"));
    fx_heal(fx);
    heartbeat_until_commit(fx, 1, 1, 5);
    assert_true(fx_applied_data(fx, 1, "x"));
}

/* Thesis §10.2.1: the leader may send before it persists, so it counts its own log toward
 * a quorum only for entries it has persisted — in a one-voter cluster the proposal is
 * committed in the ready after the one that asked to persist it. */
static void test_replication_leader_counts_own_entry_only_after_persisting(void **state)
{
    struct fx *fx = *state;
    struct fx_node *node;
    struct raft_ready rd;
    bool has_entry = false;

    fx_init(fx, 1);
    fx_start(fx);
    fx_elect(fx, 1);
    node = fx_node(fx, 1);
    assert_int_equal(fx_commit(fx, 1), 2);
    assert_int_equal(raft_propose(node->r, "p", 1), 0);
    raft_ready(node->r, &rd);
    for (size_t i = 0; i < rd.entries_count; i++) {
        has_entry |= rd.entries[i].index == 3;
    }
    assert_true(has_entry);
    for (size_t i = 0; i < rd.committed_count; i++) {
        assert_true(rd.committed[i].index < 3);
    }
    assert_true(!rd.hard_state_changed || rd.hard_state.commit < 3);
    assert_true(fx_commit(fx, 1) < 3);
    fx_process_ready(node, &rd);
    fx_handle_ready(node);
    assert_int_equal(fx_commit(fx, 1), 3);
    assert_true(fx_applied_data(fx, 1, "p"));
}

/* Paper §5.3 (State Machine Safety): every node applies the same entries in the same
 * order. The fixture also checks that each node applies indexes consecutively. */
static void test_replication_followers_apply_entries_in_leader_order(void **state)
{
    struct fx *fx = *state;
    char data[16];

    start_with_leader(fx, 3);
    for (int i = 0; i < 10; i++) {
        snprintf(data, sizeof(data), "e%d", i);
        assert_int_equal(fx_propose(fx, 1, data), 0);
    }
    fx_stabilize(fx);
    heartbeat_until_commit(fx, 1, 3, 14);
    for (raft_id id = 1; id <= 3; id++) {
        struct fx_node *node = fx_node(fx, id);
        int next = 0;

        for (size_t i = 0; i < node->applied_count; i++) {
            const struct fx_entry *e = &node->applied_entries[i];

            if (e->type != RAFT_ENTRY_NORMAL || e->len == 0) {
                continue;
            }
            snprintf(data, sizeof(data), "e%d", next++);
            assert_int_equal(e->len, strlen(data));
            assert_memory_equal(e->data, data, e->len);
        }
        assert_int_equal(next, 10);
    }
}

/* Thesis §10.2.2: the leader pipelines — it sends new appends to a follower in the
 * replicate state without waiting for earlier ones to be acknowledged, and sends them
 * before persisting (rd.msgs). */
static void test_replication_leader_pipelines_appends_before_responses(void **state)
{
    struct fx *fx = *state;
    raft_index expect_prev = 4;

    start_with_leader(fx, 3);
    assert_int_equal(progress(fx, 1, 2).state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(fx_propose(fx, 1, "a"), 0);
    assert_int_equal(fx_propose(fx, 1, "b"), 0);
    assert_int_equal(fx_propose(fx, 1, "c"), 0);
    assert_int_equal(fx_count(fx, RAFT_MSG_APPEND, 1, 2), 3);
    for (size_t i = 0; i < fx->msgs_count; i++) {
        const struct fx_msg *msg = &fx->msgs[i];

        if (msg->m.type != RAFT_MSG_APPEND || msg->m.to != 2) {
            continue;
        }
        assert_false(msg->after_persist);
        assert_int_equal(msg->m.index, expect_prev);
        assert_int_equal(msg->m.entries_count, 1);
        assert_int_equal(msg->m.entries[0].index, expect_prev + 1);
        expect_prev++;
    }
    assert_int_equal(progress(fx, 1, 2).inflight_count, 3);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 7);
    assert_int_equal(progress(fx, 1, 2).match, 7);
}

/* Thesis §10.2.2 (flow control): no more than max_inflight_msgs appends are outstanding
 * to one follower; acknowledgements open the window again. */
static void test_replication_inflight_window_limits_outstanding_appends(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_node(fx, 1)->cfg.max_inflight_msgs = 2;
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    assert_int_equal(progress(fx, 1, 2).state, RAFT_PROGRESS_REPLICATE);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx_propose(fx, 1, "w"), 0);
    }
    assert_int_equal(fx_count(fx, RAFT_MSG_APPEND, 1, 2), 2);
    assert_int_equal(fx_count(fx, RAFT_MSG_APPEND, 1, 3), 2);
    assert_int_equal(progress(fx, 1, 2).inflight_count, 2);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 9);
    assert_int_equal(progress(fx, 1, 2).match, 9);
}

/* Thesis §10.2.2 (flow control): max_inflight_bytes bounds the entry bytes outstanding
 * to one follower as well. */
static void test_replication_inflight_bytes_limit_pauses_appends(void **state)
{
    struct fx *fx = *state;
    char big[61];

    memset(big, 'i', 60);
    big[60] = '\0';
    fx_init(fx, 3);
    fx_node(fx, 1)->cfg.max_inflight_bytes = 100;
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx_propose(fx, 1, big), 0);
    }
    /* 60 + 60 bytes reach the limit: the third and fourth wait for acknowledgements. */
    assert_int_equal(fx_count(fx, RAFT_MSG_APPEND, 1, 2), 2);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 8);
    assert_int_equal(progress(fx, 1, 2).match, 8);
}

/* Paper §5.3 / thesis §10.2.2: a follower the transport could not reach is probed with one
 * append at a time until it answers. */
static void test_replication_unreachable_follower_is_probed_one_append_at_a_time(void **state)
{
    struct fx *fx = *state;

    start_with_leader(fx, 3);
    raft_report_unreachable(fx_node(fx, 1)->r, 2);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(progress(fx, 1, 2).state, RAFT_PROGRESS_PROBE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx_propose(fx, 1, "p"), 0);
    }
    assert_true(fx_count(fx, RAFT_MSG_APPEND, 1, 2) <= 1);
    assert_int_equal(fx_count(fx, RAFT_MSG_APPEND, 1, 3), 3);
    fx_stabilize(fx);
    heartbeat_until_commit(fx, 1, 2, 7);
    assert_int_equal(progress(fx, 1, 2).match, 7);
}

struct byte_check {
    uint64_t max_bytes;
    size_t appends_with_entries;
};

static void check_append_bytes(const struct fx_msg *msg, void *data)
{
    struct byte_check *check = data;
    uint64_t bytes = 0;

    if (msg->m.type != RAFT_MSG_APPEND || msg->m.to != 3 || msg->m.entries_count == 0) {
        return;
    }
    check->appends_with_entries++;
    for (uint32_t i = 0; i < msg->m.entries_count; i++) {
        bytes += msg->m.entries[i].len;
    }
    if (msg->m.entries_count > 1 && bytes > check->max_bytes) {
        fail_msg("append of %u entries carries %llu bytes > %llu", msg->m.entries_count,
                 (unsigned long long)bytes, (unsigned long long)check->max_bytes);
    }
}

/* Thesis §10.2.2: max_msg_bytes bounds the entry bytes of one append (but always at least
 * one entry), so catching up a follower is split over several messages. */
static void test_replication_max_msg_bytes_splits_catch_up_into_several_appends(void **state)
{
    struct fx *fx = *state;
    struct byte_check check = {.max_bytes = 100};
    char big[61];

    memset(big, 'b', 60);
    big[60] = '\0';
    fx_init(fx, 3);
    fx_node(fx, 1)->cfg.max_msg_bytes = 100;
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx_propose(fx, 1, big), 0);
    }
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 8);
    fx_heal(fx);
    fx_set_tap(fx, check_append_bytes, &check);
    heartbeat_until_commit(fx, 1, 3, 8);
    fx_assert_logs_equal(fx, 1, 3);
    assert_true(check.appends_with_entries >= 4);
}

struct batch_check {
    raft_id id;
    uint64_t max_bytes;
    size_t batches;
};

static void
check_committed_batch(const struct fx_node *node, const struct raft_ready *rd, void *data)
{
    struct batch_check *check = data;
    uint64_t bytes = 0;

    if (node->id != check->id || rd->committed_count == 0) {
        return;
    }
    check->batches++;
    for (size_t i = 0; i < rd->committed_count; i++) {
        bytes += rd->committed[i].len;
    }
    if (rd->committed_count > 1 && bytes > check->max_bytes) {
        fail_msg("ready of node %llu commits %zu entries of %llu bytes > %llu",
                 (unsigned long long)node->id, rd->committed_count, (unsigned long long)bytes,
                 (unsigned long long)check->max_bytes);
    }
}

/* raft_config.max_committed_bytes bounds the committed entry bytes handed out per ready
 * (at least one entry), so applying a long backlog does not stall the caller's loop. */
static void test_replication_max_committed_bytes_limits_entries_per_ready(void **state)
{
    struct fx *fx = *state;
    struct batch_check check = {.id = 2, .max_bytes = 100};
    char big[61];

    memset(big, 'c', 60);
    big[60] = '\0';
    fx_init(fx, 3);
    fx_node(fx, 2)->cfg.max_committed_bytes = 100;
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx_propose(fx, 1, big), 0);
    }
    /* Node 2 stores entries 5..8 before it learns that they are committed. */
    fx_deliver(fx, RAFT_MSG_APPEND, 1, 2);
    assert_int_equal(fx_last_index(fx, 2), 8);
    assert_int_equal(fx_commit(fx, 2), 4);
    fx_deliver(fx, RAFT_MSG_APPEND_RESP, 2, 1);
    assert_int_equal(fx_commit(fx, 1), 8);
    fx_drop(fx, RAFT_MSG_APPEND, 1, 2); /* the appends that would carry commit 5, 6, 7 */
    /* One heartbeat now tells node 2 that 5..8 are committed, all at once. */
    fx_set_ready_tap(fx, check_committed_batch, &check);
    heartbeat_until_commit(fx, 1, 2, 8);
    assert_int_equal(fx_node(fx, 2)->applied, 8);
    assert_true(check.batches >= 4);
}

/* Uncommitted data is bounded so a leader without a quorum cannot grow its log forever;
 * the refusal ends once entries commit. */
static void test_replication_max_uncommitted_bytes_refuses_proposals(void **state)
{
    struct fx *fx = *state;
    char big[61];

    memset(big, 'u', 60);
    big[60] = '\0';
    fx_init(fx, 3);
    fx_node(fx, 1)->cfg.max_uncommitted_bytes = 100;
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 1);
    assert_int_equal(fx_propose(fx, 1, big), 0);
    assert_int_equal(fx_propose(fx, 1, big), LATCH_EUNCOMMITTED);
    assert_int_equal(fx_last_index(fx, 1), 5);
    fx_heal(fx);
    heartbeat_until_commit(fx, 1, 1, 5);
    assert_int_equal(fx_propose(fx, 1, big), 0);
}

/* Paper §5.3: when a follower rejects an append, the leader backs off (probes) and then
 * overwrites the follower's conflicting entries with its own. Node 3 holds uncommitted
 * entries of term 3 that the leader of term 4 never had. */
static void test_replication_rejected_append_makes_leader_probe_and_repair_follower(void **state)
{
    struct fx *fx = *state;
    const raft_term good[] = {1, 1, 1, 2, 2};
    const raft_term stale[] = {1, 1, 1, 3, 3, 3};
    const raft_term want[] = {1, 1, 1, 2, 2, 4};
    struct raft_progress_info info;

    fx_init(fx, 3);
    fx_set_log(fx, 1, good, 5, 3, 3);
    fx_set_log(fx, 2, good, 5, 3, 3);
    fx_set_log(fx, 3, stale, 6, 3, 3);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    fx_deliver(fx, RAFT_MSG_VOTE, 1, 0);
    fx_deliver(fx, RAFT_MSG_VOTE_RESP, 0, 1);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_term(fx, 1), 4);
    fx_deliver(fx, RAFT_MSG_APPEND, 1, 3);
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_APPEND_RESP, 3, 1, true), 1);
    fx_deliver(fx, RAFT_MSG_APPEND_RESP, 3, 1);
    info = progress(fx, 1, 3);
    assert_int_equal(info.state, RAFT_PROGRESS_PROBE);
    assert_true(info.next <= 6);
    fx_stabilize(fx);
    fx_assert_log_terms(fx, 3, want, 6);
    heartbeat_until_commit(fx, 1, 3, 6);
}

/* Paper §5.3 and figure 2 (AppendEntries receiver, step 3): an existing entry that conflicts with a
 * new one (same index, different term) is deleted with all that follow it. Fails under
 * RAFT_BUG_NO_TRUNCATE_CONFLICT. */
static void test_replication_follower_truncates_conflicting_suffix(void **state)
{
    struct fx *fx = *state;
    const raft_term log2[] = {1, 1, 1, 2, 2};
    const raft_term want[] = {1, 1, 1, 3};
    struct raft_entry e = {.term = 3, .index = 4, .type = RAFT_ENTRY_NORMAL, .len = 1};
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 3);
    const struct fx_msg *resp;
    raft_term t = 0;

    e.data = (const uint8_t *)"n";
    fx_init(fx, 3);
    fx_set_log(fx, 2, log2, 5, 2, 3);
    fx_start(fx);
    app.index = 3;
    app.log_term = 1;
    app.commit = 3;
    app.entries = &e;
    app.entries_count = 1;
    fx_step(fx, 2, &app);
    fx_assert_log_terms(fx, 2, want, 4);
    assert_int_equal(fx_status(fx, 2).last_index, 4);
    assert_int_equal(raft_log_term(fx_node(fx, 2)->r, 4, &t), 0);
    assert_int_equal(t, 3);
    assert_int_equal(raft_log_term(fx_node(fx, 2)->r, 5, &t), LATCH_EUNAVAILABLE);
    resp = fx_find(fx, RAFT_MSG_APPEND_RESP, 2, 1);
    assert_non_null(resp);
    assert_false(resp->m.reject);
    assert_int_equal(resp->m.index, 4);
    assert_true(resp->after_persist);
}

/* Thesis §6.2 (routing requests to the leader): proposals made on a follower are
 * forwarded to the leader and commit like any other. */
static void test_replication_follower_forwards_proposal_to_leader(void **state)
{
    struct fx *fx = *state;
    const struct fx_msg *fwd;

    start_with_leader(fx, 3);
    assert_int_equal(fx_propose(fx, 2, "fwd"), 0);
    fwd = fx_find(fx, RAFT_MSG_PROPOSE, 2, 1);
    assert_non_null(fwd);
    assert_int_equal(fwd->m.entries_count, 1);
    assert_memory_equal(fwd->m.entries[0].data, "fwd", 3);
    fx_stabilize(fx);
    heartbeat_until_commit(fx, 1, 3, 5);
    for (raft_id id = 1; id <= 3; id++) {
        assert_true(fx_applied_data(fx, id, "fwd"));
    }
}

/* Thesis §6.2: without forwarding, a follower rejects the request (the caller redirects). */
static void test_replication_follower_with_forwarding_disabled_refuses_proposal(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_node(fx, 2)->cfg.disable_proposal_forwarding = true;
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose(fx, 2, "x"), LATCH_ENOLEADER);
    assert_int_equal(fx_count(fx, RAFT_MSG_PROPOSE, 0, 0), 0);
}

/* Thesis §6.2: with no known leader there is nowhere to send a proposal. */
static void test_replication_proposal_without_leader_fails_with_enoleader(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    assert_int_equal(fx_propose(fx, 1, "x"), LATCH_ENOLEADER);
    assert_int_equal(fx_last_index(fx, 1), 3);
}

/* raft_limits.h: one entry carries at most RAFT_ENTRY_BYTES_MAX bytes. */
static void test_replication_oversized_proposal_refused_with_etoobig(void **state)
{
    struct fx *fx = *state;
    size_t len = (size_t)RAFT_ENTRY_BYTES_MAX + 1;
    uint8_t *big = calloc(1, len);

    assert_non_null(big);
    start_with_leader(fx, 3);
    assert_int_equal(raft_propose(fx_node(fx, 1)->r, big, len), LATCH_ETOOBIG);
    free(big);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_last_index(fx, 1), 4);
}

/* raft.h: a heartbeat carries min(leader commit, follower match), so a lagging follower
 * never learns a commit index beyond what it has (etcd's rule, paper §5.3). */
static void test_replication_heartbeat_commit_is_capped_at_follower_match(void **state)
{
    struct fx *fx = *state;
    const struct fx_msg *hb;

    start_with_leader(fx, 3);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 5);
    assert_int_equal(progress(fx, 1, 3).match, 4);
    fx_tick(fx, 1, FX_HEARTBEAT_TICK);
    hb = fx_find(fx, RAFT_MSG_HEARTBEAT, 1, 3);
    assert_non_null(hb);
    assert_int_equal(hb->m.commit, 4);
    hb = fx_find(fx, RAFT_MSG_HEARTBEAT, 1, 2);
    assert_non_null(hb);
    assert_int_equal(hb->m.commit, 5);
}

/* raft_step: messages of unknown types are ignored without any effect. */
static void test_step_ignores_unknown_message_types(void **state)
{
    struct fx *fx = *state;
    const uint32_t types[] = {0, RAFT_MSG_TYPE_COUNT, 99, UINT32_MAX};
    struct raft_status before;
    struct raft_status after;

    start_with_leader(fx, 3);
    before = fx_status(fx, 2);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct raft_msg m = fx_make_msg(types[i], 1, 2, 2);

        fx_step(fx, 2, &m);
        m.term = 9;
        fx_step(fx, 2, &m);
    }
    after = fx_status(fx, 2);
    assert_int_equal(fx->msgs_count, 0);
    assert_int_equal(after.term, before.term);
    assert_int_equal(after.commit, before.commit);
    assert_int_equal(after.last_index, before.last_index);
    assert_int_equal(after.leader, before.leader);
    assert_int_equal(after.role, before.role);
}

/* Paper §5.1: a request from a stale term is rejected; the stale leader's entries are not
 * appended, and whatever answer goes back carries the newer term. */
static void test_step_ignores_append_from_stale_term(void **state)
{
    struct fx *fx = *state;
    struct raft_entry e = {.term = 3, .index = 4, .type = RAFT_ENTRY_NORMAL, .len = 1};
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 3);

    e.data = (const uint8_t *)"s";
    fx_init(fx, 3);
    fx_set_term(fx, 2, 5);
    fx_start(fx);
    app.index = 3;
    app.log_term = 1;
    app.commit = 4;
    app.entries = &e;
    app.entries_count = 1;
    fx_step(fx, 2, &app);
    assert_int_equal(fx_last_index(fx, 2), 3);
    assert_int_equal(fx_commit(fx, 2), 3);
    assert_int_equal(fx_term(fx, 2), 5);
    assert_int_equal(fx_status(fx, 2).leader, RAFT_NONE);
    for (size_t i = 0; i < fx->msgs_count; i++) {
        assert_int_equal(fx->msgs[i].m.term, 5);
        assert_false(fx->msgs[i].m.type == RAFT_MSG_APPEND_RESP && !fx->msgs[i].m.reject &&
                     fx->msgs[i].m.index >= 4);
    }
}

/* Paper §5.3 (consistency check): an append whose previous index lies beyond the
 * follower's log is rejected, with the follower's last index as a hint so the leader can
 * jump back instead of decrementing one index per round trip. */
static void test_step_rejects_append_beyond_log_with_hint(void **state)
{
    struct fx *fx = *state;
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 2);
    const struct fx_msg *resp;

    fx_init(fx, 3);
    fx_start(fx);
    app.index = 10;
    app.log_term = 2;
    app.commit = 3;
    fx_step(fx, 2, &app);
    resp = fx_find(fx, RAFT_MSG_APPEND_RESP, 2, 1);
    assert_non_null(resp);
    assert_true(resp->m.reject);
    assert_int_equal(resp->m.reject_hint, 3);
    assert_int_equal(resp->m.term, 2);
    assert_int_equal(fx_last_index(fx, 2), 3);
    assert_int_equal(fx_status(fx, 2).leader, 1);
}

/* Paper §5.3: the previous entry must match in term too; nothing is appended otherwise. */
static void test_step_rejects_append_with_mismatched_previous_term(void **state)
{
    struct fx *fx = *state;
    struct raft_entry e = {.term = 2, .index = 4, .type = RAFT_ENTRY_NORMAL, .len = 1};
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 2);
    const struct fx_msg *resp;

    e.data = (const uint8_t *)"m";
    fx_init(fx, 3);
    fx_start(fx);
    app.index = 3;
    app.log_term = 2; /* node 2 has term 1 at index 3 */
    app.entries = &e;
    app.entries_count = 1;
    fx_step(fx, 2, &app);
    resp = fx_find(fx, RAFT_MSG_APPEND_RESP, 2, 1);
    assert_non_null(resp);
    assert_true(resp->m.reject);
    assert_true(resp->m.reject_hint <= 3);
    assert_int_equal(fx_last_index(fx, 2), 3);
}

/* raft.h: impossible fields never corrupt state — entries that do not follow the previous
 * index are not stored. */
static void test_step_ignores_append_with_entries_not_following_previous_index(void **state)
{
    struct fx *fx = *state;
    struct raft_entry e = {.term = 2, .index = 7, .type = RAFT_ENTRY_NORMAL, .len = 1};
    struct raft_msg app = fx_make_msg(RAFT_MSG_APPEND, 1, 2, 2);

    e.data = (const uint8_t *)"g";
    fx_init(fx, 3);
    fx_start(fx);
    app.index = 3;
    app.log_term = 1;
    app.commit = 3;
    app.entries = &e;
    app.entries_count = 1;
    fx_step(fx, 2, &app);
    assert_int_equal(fx_last_index(fx, 2), 3);
    assert_int_equal(fx_status(fx, 2).last_index, 3);
    assert_int_equal(fx_commit(fx, 2), 3);
}

/* Paper §5.1: responses from an older term are ignored — stale grants elect nobody. */
static void test_step_ignores_vote_responses_from_stale_term(void **state)
{
    struct fx *fx = *state;
    struct raft_msg grant2 = fx_make_msg(RAFT_MSG_VOTE_RESP, 2, 1, 2);
    struct raft_msg grant3 = fx_make_msg(RAFT_MSG_VOTE_RESP, 3, 1, 2);

    fx_init(fx, 3);
    fx_set_term(fx, 1, 2);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_term(fx, 1), 3);
    fx_step(fx, 1, &grant2);
    fx_step(fx, 1, &grant3);
    assert_int_equal(fx_role(fx, 1), RAFT_CANDIDATE);
    assert_int_equal(fx_term(fx, 1), 3);
}

/* raft.h READY CONTRACT (thesis §10.2.1): between raft_ready() and raft_advance() only the
 * read-only accessors may be called; the core asserts it. */
static void test_ready_contract_refuses_input_between_ready_and_advance(void **state)
{
    struct fx *fx = *state;
    struct fx_node *node;
    struct raft_ready rd;

    start_with_leader(fx, 3);
    node = fx_node(fx, 1);
    assert_int_equal(raft_propose(node->r, "a", 1), 0);
    raft_ready(node->r, &rd);
    assert_true(raft_is_leader(node->r)); /* accessors stay allowed */
    expect_assert_failure(raft_propose(node->r, "b", 1));
    fx_process_ready(node, &rd);
    fx_handle_ready(node);
    assert_int_equal(fx_last_index(fx, 1), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_replication_proposal_commits_once_on_majority),
        FX_TEST(test_replication_proposal_not_committed_without_majority),
        FX_TEST(test_replication_leader_counts_own_entry_only_after_persisting),
        FX_TEST(test_replication_followers_apply_entries_in_leader_order),
        FX_TEST(test_replication_leader_pipelines_appends_before_responses),
        FX_TEST(test_replication_inflight_window_limits_outstanding_appends),
        FX_TEST(test_replication_inflight_bytes_limit_pauses_appends),
        FX_TEST(test_replication_unreachable_follower_is_probed_one_append_at_a_time),
        FX_TEST(test_replication_max_msg_bytes_splits_catch_up_into_several_appends),
        FX_TEST(test_replication_max_committed_bytes_limits_entries_per_ready),
        FX_TEST(test_replication_max_uncommitted_bytes_refuses_proposals),
        FX_TEST(test_replication_rejected_append_makes_leader_probe_and_repair_follower),
        FX_TEST(test_replication_follower_truncates_conflicting_suffix),
        FX_TEST(test_replication_follower_forwards_proposal_to_leader),
        FX_TEST(test_replication_follower_with_forwarding_disabled_refuses_proposal),
        FX_TEST(test_replication_proposal_without_leader_fails_with_enoleader),
        FX_TEST(test_replication_oversized_proposal_refused_with_etoobig),
        FX_TEST(test_replication_heartbeat_commit_is_capped_at_follower_match),
        FX_TEST(test_step_ignores_unknown_message_types),
        FX_TEST(test_step_ignores_append_from_stale_term),
        FX_TEST(test_step_rejects_append_beyond_log_with_hint),
        FX_TEST(test_step_rejects_append_with_mismatched_previous_term),
        FX_TEST(test_step_ignores_append_with_entries_not_following_previous_index),
        FX_TEST(test_step_ignores_vote_responses_from_stale_term),
        FX_TEST(test_ready_contract_refuses_input_between_ready_and_advance),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
