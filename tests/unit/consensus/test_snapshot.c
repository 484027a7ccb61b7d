/*
 * test_snapshot.c — log compaction and InstallSnapshot (paper §7, figure 13; thesis §5.1):
 * a follower behind the leader's compaction receives the snapshot, restores it and then
 * catches up by normal replication; stale snapshots are ignored; a failed transfer is
 * retried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "raft.h"
#include "raft_fixture.h"

struct snap_count {
    size_t sent;
    raft_index index;
};

static void count_snapshots(const struct fx_msg *msg, void *data)
{
    struct snap_count *count = data;

    if (msg->m.type == RAFT_MSG_SNAPSHOT && msg->m.to == 3) {
        count->sent++;
        count->index = msg->m.snapshot.meta.index;
    }
}

static bool not_snapshot(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type != RAFT_MSG_SNAPSHOT;
}

/* Three nodes, leader 1; node 3 misses entries 5..9, which node 1 then compacts away. */
static void build_lagging_follower(struct fx *fx)
{
    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx_propose(fx, 1, "p"), 0);
    }
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 9);
    assert_int_equal(fx_node(fx, 1)->applied, 9);
    fx_snapshot_and_compact(fx, 1);
    assert_int_equal(raft_memstore_first_index(fx_node(fx, 1)->ms), 10);
    assert_int_equal(fx_last_index(fx, 3), 4);
}

static void heartbeat_until_applied(struct fx *fx, raft_id leader, raft_id id, raft_index index)
{
    for (unsigned i = 0; i < 2 * FX_ELECTION_TICK && fx_node(fx, id)->applied < index; i++) {
        fx_heartbeat(fx, leader);
    }
    assert_int_equal(fx_node(fx, id)->applied, index);
}

/* Paper §7: the leader sends InstallSnapshot to a follower that lags so far behind that
 * the entries it needs were discarded; the follower resets its state to the snapshot and
 * replication continues after it. */
static void test_snapshot_lagging_follower_restores_snapshot_then_catches_up(void **state)
{
    struct fx *fx = *state;
    struct snap_count count = {0};
    struct raft_snapshot restored;

    build_lagging_follower(fx);
    fx_heal(fx);
    fx_set_tap(fx, count_snapshots, &count);
    heartbeat_until_applied(fx, 1, 3, 9);
    assert_int_equal(count.sent, 1);
    assert_int_equal(count.index, 9);
    assert_int_equal(fx_node(fx, 3)->snapshots_restored, 1);
    assert_int_equal(raft_memstore_first_index(fx_node(fx, 3)->ms), 10);
    raft_memstore_snapshot(fx_node(fx, 3)->ms, &restored);
    assert_int_equal(restored.meta.index, 9);
    assert_int_equal(restored.meta.term, 2);
    assert_int_equal(restored.meta.conf.voters_count, 3);
    assert_int_equal(restored.len, 6);
    assert_memory_equal(restored.data, "snap@9", 6);
    assert_int_equal(fx_status(fx, 3).first_index, 10);
    /* Normal replication resumes after the snapshot. */
    assert_int_equal(fx_propose(fx, 1, "after"), 0);
    fx_stabilize(fx);
    heartbeat_until_applied(fx, 1, 3, 10);
    assert_true(fx_applied_data(fx, 3, "after"));
    fx_assert_logs_equal(fx, 1, 3);
    assert_int_equal(count.sent, 1);
}

/* Paper figure 13 / thesis §5.1: the follower installs a newer snapshot as its whole
 * state: the ready carries it first, and the acknowledgement leaves only after it is
 * persisted (msgs_after_persist). */
static void test_snapshot_follower_installs_snapshot_from_leader(void **state)
{
    struct fx *fx = *state;
    struct raft_msg m = fx_make_msg(RAFT_MSG_SNAPSHOT, 1, 3, 2);
    struct fx_node *node;
    struct raft_ready rd;
    struct raft_status st;
    const struct fx_msg *ack;

    fx_init(fx, 3);
    fx_start(fx);
    node = fx_node(fx, 3);
    m.snapshot.meta.index = 10;
    m.snapshot.meta.term = 2;
    m.snapshot.meta.conf = (struct raft_conf_state){.voters_count = 3, .voters = {1, 2, 3}};
    m.snapshot.data = (const uint8_t *)"state";
    m.snapshot.len = 5;
    assert_int_equal(raft_step(node->r, &m), 0);
    raft_ready(node->r, &rd);
    assert_non_null(rd.snapshot);
    assert_true(rd.must_sync);
    assert_int_equal(rd.snapshot->meta.index, 10);
    assert_int_equal(rd.snapshot->meta.term, 2);
    assert_int_equal(rd.snapshot->len, 5);
    assert_memory_equal(rd.snapshot->data, "state", 5);
    for (size_t i = 0; i < rd.msgs_count; i++) {
        assert_int_not_equal(rd.msgs[i].type, RAFT_MSG_APPEND_RESP);
    }
    fx_process_ready(node, &rd);
    fx_handle_ready(node);
    st = fx_status(fx, 3);
    assert_int_equal(st.commit, 10);
    assert_int_equal(st.first_index, 11);
    assert_int_equal(st.last_index, 10);
    assert_int_equal(st.term, 2);
    assert_int_equal(st.leader, 1);
    assert_int_equal(node->applied, 10);
    ack = fx_find(fx, RAFT_MSG_APPEND_RESP, 3, 1);
    assert_non_null(ack);
    assert_true(ack->after_persist);
    assert_false(ack->m.reject);
    assert_int_equal(ack->m.index, 10);
}

/* Thesis §5.1: a snapshot that describes a prefix of what the follower has already
 * committed brings nothing new; it is ignored and the log is kept. */
static void test_snapshot_older_than_commit_is_ignored(void **state)
{
    struct fx *fx = *state;
    struct raft_msg m = fx_make_msg(RAFT_MSG_SNAPSHOT, 1, 2, 2);

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose(fx, 1, "a"), 0);
    assert_int_equal(fx_propose(fx, 1, "b"), 0);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_int_equal(fx_commit(fx, 2), 6);
    m.snapshot.meta.index = 4;
    m.snapshot.meta.term = 2;
    m.snapshot.meta.conf = (struct raft_conf_state){.voters_count = 3, .voters = {1, 2, 3}};
    m.snapshot.data = (const uint8_t *)"old";
    m.snapshot.len = 3;
    fx_step(fx, 2, &m);
    assert_int_equal(fx_node(fx, 2)->snapshots_restored, 0);
    assert_int_equal(raft_memstore_first_index(fx_node(fx, 2)->ms), 1);
    assert_int_equal(fx_last_index(fx, 2), 6);
    assert_int_equal(fx_commit(fx, 2), 6);
    assert_int_equal(fx_node(fx, 2)->applied, 6);
    assert_int_equal(fx_count_reject(fx, RAFT_MSG_APPEND_RESP, 2, 1, true), 0);
}

/* Thesis §5.1: a delayed snapshot that arrives after the follower compacted its own log
 * past the snapshot's index is ignored too (the follower must not restore backwards). */
static void test_snapshot_older_than_own_compaction_is_ignored(void **state)
{
    struct fx *fx = *state;
    struct raft_msg m = fx_make_msg(RAFT_MSG_SNAPSHOT, 1, 2, 2);

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose(fx, 1, "a"), 0);
    assert_int_equal(fx_propose(fx, 1, "b"), 0);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_int_equal(fx_node(fx, 2)->applied, 6);
    fx_snapshot_and_compact(fx, 2);
    m.snapshot.meta.index = 4;
    m.snapshot.meta.term = 2;
    m.snapshot.meta.conf = (struct raft_conf_state){.voters_count = 3, .voters = {1, 2, 3}};
    m.snapshot.data = (const uint8_t *)"old";
    m.snapshot.len = 3;
    fx_step(fx, 2, &m);
    assert_int_equal(fx_node(fx, 2)->snapshots_restored, 0);
    assert_int_equal(raft_memstore_first_index(fx_node(fx, 2)->ms), 7);
    assert_int_equal(fx_commit(fx, 2), 6);
    assert_int_equal(fx_status(fx, 2).first_index, 7);
    /* Replication continues past the follower's own snapshot. */
    assert_int_equal(fx_propose(fx, 1, "c"), 0);
    fx_stabilize(fx);
    fx_heartbeat(fx, 1);
    assert_true(fx_applied_data(fx, 2, "c"));
}

/* Paper §7 (the leader keeps trying until the follower has the snapshot) and
 * raft_report_snapshot(false): the leader gives up on the lost snapshot, probes again and
 * sends a new one, after which the follower catches up. */
static void test_snapshot_failed_report_makes_leader_retry(void **state)
{
    struct fx *fx = *state;
    struct snap_count count = {0};
    struct raft_progress_info info;

    build_lagging_follower(fx);
    fx->auto_report_snapshot = false;
    fx_heal(fx);
    fx_set_tap(fx, count_snapshots, &count);
    for (unsigned i = 0; i < FX_ELECTION_TICK && fx_count(fx, RAFT_MSG_SNAPSHOT, 1, 3) == 0; i++) {
        fx_tick(fx, 1, FX_HEARTBEAT_TICK);
        fx_stabilize_if(fx, not_snapshot, NULL);
    }
    assert_int_equal(fx_drop(fx, RAFT_MSG_SNAPSHOT, 1, 3), 1);
    assert_int_equal(raft_progress(fx_node(fx, 1)->r, 3, &info), 0);
    assert_int_equal(info.state, RAFT_PROGRESS_SNAPSHOT);
    raft_report_snapshot(fx_node(fx, 1)->r, 3, false);
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(raft_progress(fx_node(fx, 1)->r, 3, &info), 0);
    assert_int_equal(info.state, RAFT_PROGRESS_PROBE);
    fx->auto_report_snapshot = true;
    heartbeat_until_applied(fx, 1, 3, 9);
    assert_int_equal(count.sent, 2);
    assert_int_equal(fx_node(fx, 3)->snapshots_restored, 1);
    assert_int_equal(fx_status(fx, 3).commit, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_snapshot_lagging_follower_restores_snapshot_then_catches_up),
        FX_TEST(test_snapshot_follower_installs_snapshot_from_leader),
        FX_TEST(test_snapshot_older_than_commit_is_ignored),
        FX_TEST(test_snapshot_older_than_own_compaction_is_ignored),
        FX_TEST(test_snapshot_failed_report_makes_leader_retry),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
