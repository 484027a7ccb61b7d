/*
 * test_membership.c — membership changes one at a time (thesis §4.1), learners and their
 * promotion (thesis §4.2.1), removing the leader (thesis §4.2.2), the encoding of a
 * change, and raft_conf_state_apply, the one definition of what a change does.
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

/* ---------------------------------------------------------------------------------- */
/* Encoding                                                                           */
/* ---------------------------------------------------------------------------------- */

static size_t encode(const struct raft_conf_change *cc, uint8_t *buf, size_t size)
{
    size_t len = 0;

    assert_int_equal(raft_conf_change_encode(cc, buf, size, &len), 0);
    assert_int_equal(len, raft_conf_change_size(cc));
    return len;
}

static void test_conf_change_encode_decode_round_trip(void **state)
{
    static const char url[] = "https://node4.example:2380";
    const uint32_t types[] = {RAFT_CC_ADD_VOTER, RAFT_CC_ADD_LEARNER, RAFT_CC_PROMOTE,
                              RAFT_CC_REMOVE, RAFT_CC_UPDATE};
    uint8_t buf[256];

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        for (int with_context = 0; with_context < 2; with_context++) {
            struct raft_conf_change in = {.type = types[i], .node = 0x0102030405060708u};
            struct raft_conf_change out;
            size_t len;

            if (with_context) {
                in.context = (const uint8_t *)url;
                in.context_len = (uint32_t)strlen(url);
            }
            len = encode(&in, buf, sizeof(buf));
            memset(&out, 0xaa, sizeof(out));
            assert_int_equal(raft_conf_change_decode(buf, len, &out), 0);
            assert_int_equal(out.type, in.type);
            assert_int_equal(out.node, in.node);
            assert_int_equal(out.context_len, in.context_len);
            if (with_context) {
                assert_memory_equal(out.context, url, in.context_len);
                assert_true(out.context >= buf && out.context + out.context_len <= buf + len);
            }
        }
    }
}

static void test_conf_change_encode_refuses_invalid_changes(void **state)
{
    static uint8_t context[RAFT_CONF_CONTEXT_BYTES_MAX + 1];
    uint8_t buf[64];
    size_t len = 0;
    struct raft_conf_change cc = {.type = RAFT_CC_ADD_VOTER, .node = 4};

    (void)state;
    cc.type = 0;
    assert_int_equal(raft_conf_change_encode(&cc, buf, sizeof(buf), &len), LATCH_EINVAL);
    cc.type = RAFT_CC_UPDATE + 1;
    assert_int_equal(raft_conf_change_encode(&cc, buf, sizeof(buf), &len), LATCH_EINVAL);
    cc.type = RAFT_CC_ADD_VOTER;
    cc.node = RAFT_NONE;
    assert_int_equal(raft_conf_change_encode(&cc, buf, sizeof(buf), &len), LATCH_EINVAL);
    cc.node = 4;
    cc.context = context;
    cc.context_len = RAFT_CONF_CONTEXT_BYTES_MAX + 1;
    assert_int_equal(raft_conf_change_encode(&cc, buf, sizeof(buf), &len), LATCH_EINVAL);
    cc.context = NULL;
    cc.context_len = 0;
    assert_int_equal(raft_conf_change_encode(&cc, buf, raft_conf_change_size(&cc) - 1, &len),
                     LATCH_ETOOBIG);
}

/* Malformed bytes come from disk or a peer: an error code, never an assertion. */
static void test_conf_change_decode_refuses_truncated_bytes(void **state)
{
    struct raft_conf_change cc = {.type = RAFT_CC_ADD_LEARNER,
                                  .node = 9,
                                  .context = (const uint8_t *)"ctx",
                                  .context_len = 3};
    struct raft_conf_change out;
    uint8_t buf[64];
    size_t len;

    (void)state;
    len = encode(&cc, buf, sizeof(buf));
    for (size_t cut = 0; cut < len; cut++) {
        if (raft_conf_change_decode(buf, cut, &out) != LATCH_EINVAL) {
            fail_msg("a %zu-byte prefix of a %zu-byte change decoded", cut, len);
        }
    }
}

/* The bytes in which two encodings differing only in type differ hold the type; any other
 * value there is an unknown type and must be refused. */
static void test_conf_change_decode_refuses_unknown_type(void **state)
{
    struct raft_conf_change add = {.type = RAFT_CC_ADD_VOTER, .node = 5};
    struct raft_conf_change rem = {.type = RAFT_CC_REMOVE, .node = 5};
    struct raft_conf_change out;
    uint8_t a[64];
    uint8_t r[64];
    size_t len;
    size_t differing = 0;

    (void)state;
    len = encode(&add, a, sizeof(a));
    assert_int_equal(encode(&rem, r, sizeof(r)), len);
    for (size_t i = 0; i < len; i++) {
        if (a[i] != r[i]) {
            a[i] = 0x00;
            r[i] = 0x7f;
            differing++;
        }
    }
    assert_true(differing > 0);
    assert_int_equal(raft_conf_change_decode(a, len, &out), LATCH_EINVAL);
    assert_int_equal(raft_conf_change_decode(r, len, &out), LATCH_EINVAL);
}

/* Whatever single byte is damaged, decode either refuses or yields a well-formed change
 * (known type, real node, context inside the input). */
static void test_conf_change_decode_never_yields_an_invalid_change(void **state)
{
    struct raft_conf_change cc = {
        .type = RAFT_CC_PROMOTE, .node = 77, .context = (const uint8_t *)"abcd", .context_len = 4};
    const uint8_t values[] = {0x00, 0x01, 0x05, 0x7f, 0x80, 0xff};
    uint8_t good[64];
    uint8_t bad[64];
    size_t len;

    (void)state;
    len = encode(&cc, good, sizeof(good));
    for (size_t i = 0; i < len; i++) {
        for (size_t v = 0; v < sizeof(values); v++) {
            struct raft_conf_change out;
            int rc;

            memcpy(bad, good, len);
            bad[i] = values[v];
            rc = raft_conf_change_decode(bad, len, &out);
            if (rc != 0) {
                assert_int_equal(rc, LATCH_EINVAL);
                continue;
            }
            assert_true(out.type >= RAFT_CC_ADD_VOTER && out.type <= RAFT_CC_UPDATE);
            assert_int_not_equal(out.node, RAFT_NONE);
            assert_true(out.context_len <= RAFT_CONF_CONTEXT_BYTES_MAX);
            assert_true(out.context_len == 0 ||
                        (out.context >= bad && out.context + out.context_len <= bad + len));
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* raft_conf_state_apply                                                              */
/* ---------------------------------------------------------------------------------- */

static int apply(struct raft_conf_state *conf, uint32_t type, raft_id node)
{
    struct raft_conf_change cc = {.type = type, .node = node};

    return raft_conf_state_apply(conf, &cc);
}

static void test_conf_state_apply_adds_promotes_and_removes(void **state)
{
    struct raft_conf_state conf;

    (void)state;
    memset(&conf, 0, sizeof(conf));
    assert_int_equal(apply(&conf, RAFT_CC_ADD_VOTER, 1), 0);
    assert_int_equal(apply(&conf, RAFT_CC_ADD_VOTER, 2), 0);
    assert_int_equal(apply(&conf, RAFT_CC_ADD_LEARNER, 3), 0);
    assert_int_equal(conf.voters_count, 2);
    assert_int_equal(conf.learners_count, 1);
    assert_true(raft_conf_state_is_voter(&conf, 1));
    assert_true(raft_conf_state_is_learner(&conf, 3));
    assert_false(raft_conf_state_is_voter(&conf, 3));
    assert_int_equal(apply(&conf, RAFT_CC_PROMOTE, 3), 0);
    assert_true(raft_conf_state_is_voter(&conf, 3));
    assert_false(raft_conf_state_is_learner(&conf, 3));
    assert_int_equal(conf.voters_count, 3);
    assert_int_equal(conf.learners_count, 0);
    assert_int_equal(apply(&conf, RAFT_CC_REMOVE, 2), 0);
    assert_false(raft_conf_state_is_voter(&conf, 2));
    assert_int_equal(conf.voters_count, 2);
    assert_int_equal(apply(&conf, RAFT_CC_UPDATE, 3), 0); /* attributes only */
    assert_true(raft_conf_state_is_voter(&conf, 3));
    assert_int_equal(conf.voters_count, 2);
    assert_int_equal(apply(&conf, RAFT_CC_ADD_LEARNER, 4), 0);
    assert_int_equal(apply(&conf, RAFT_CC_REMOVE, 4), 0);
    assert_false(raft_conf_state_is_learner(&conf, 4));
    assert_int_equal(conf.learners_count, 0);
}

static void expect_refused(struct raft_conf_state *conf, uint32_t type, raft_id node)
{
    struct raft_conf_state before = *conf;

    assert_int_equal(apply(conf, type, node), LATCH_EINVAL);
    assert_memory_equal(conf, &before, sizeof(before));
}

static void test_conf_state_apply_refuses_changes_that_do_not_fit(void **state)
{
    struct raft_conf_state conf = {
        .voters_count = 2, .voters = {1, 2}, .learners_count = 1, .learners = {3}};

    (void)state;
    expect_refused(&conf, RAFT_CC_ADD_VOTER, 1);   /* already a voter */
    expect_refused(&conf, RAFT_CC_ADD_VOTER, 3);   /* already a learner */
    expect_refused(&conf, RAFT_CC_ADD_LEARNER, 2); /* already a voter */
    expect_refused(&conf, RAFT_CC_ADD_LEARNER, 3); /* already a learner */
    expect_refused(&conf, RAFT_CC_PROMOTE, 1);     /* not a learner */
    expect_refused(&conf, RAFT_CC_PROMOTE, 9);     /* a stranger */
    expect_refused(&conf, RAFT_CC_REMOVE, 9);      /* a stranger */
    expect_refused(&conf, RAFT_CC_UPDATE, 9);      /* a stranger */
    expect_refused(&conf, 0, 4);                   /* unknown type */
}

static void test_conf_state_apply_refuses_when_no_room_is_left(void **state)
{
    struct raft_conf_state conf;

    (void)state;
    memset(&conf, 0, sizeof(conf));
    for (raft_id id = 1; id <= RAFT_MEMBERS_MAX; id++) {
        assert_int_equal(apply(&conf, RAFT_CC_ADD_VOTER, id), 0);
        assert_int_equal(apply(&conf, RAFT_CC_ADD_LEARNER, 100 + id), 0);
    }
    expect_refused(&conf, RAFT_CC_ADD_VOTER, 99);
    expect_refused(&conf, RAFT_CC_ADD_LEARNER, 99);
    expect_refused(&conf, RAFT_CC_PROMOTE, 101); /* voters are full */
}

/* ---------------------------------------------------------------------------------- */
/* The core                                                                           */
/* ---------------------------------------------------------------------------------- */

/* Whether node id's core (raft_status) sees node as a voter / a learner. */
static bool status_is_voter(struct fx *fx, raft_id id, raft_id node)
{
    struct raft_status st = fx_status(fx, id);

    return raft_conf_state_is_voter(&st.conf, node);
}

static bool status_is_learner(struct fx *fx, raft_id id, raft_id node)
{
    struct raft_status st = fx_status(fx, id);

    return raft_conf_state_is_learner(&st.conf, node);
}

static void heartbeats(struct fx *fx, raft_id leader, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        fx_heartbeat(fx, leader);
    }
}

/* Three voters and leader 1; node 4 joins (empty store) through change `type`. */
static void add_node4(struct fx *fx, uint32_t type)
{
    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_add_node(fx, 4);
    assert_int_equal(fx_propose_cc(fx, 1, type, 4), 0);
    fx_stabilize(fx);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_node(fx, 4)->applied, fx_node(fx, 1)->applied);
    fx_assert_logs_equal(fx, 1, 4);
}

/* Thesis §4.2.1: a learner receives the log like a follower but does not campaign, and a
 * candidate does not count it. */
static void test_membership_added_learner_replicates_but_does_not_vote(void **state)
{
    struct fx *fx = *state;
    struct raft_progress_info info;

    add_node4(fx, RAFT_CC_ADD_LEARNER);
    assert_true(status_is_learner(fx, 1, 4));
    assert_true(status_is_learner(fx, 4, 4));
    assert_true(raft_conf_state_is_learner(&fx_node(fx, 4)->conf, 4));
    assert_int_equal(raft_progress(fx_node(fx, 1)->r, 4, &info), 0);
    assert_true(info.learner);
    /* It never campaigns, even when the leader is gone. */
    fx_isolate(fx, 1);
    raft_campaign(fx_node(fx, 4)->r);
    fx_handle_ready(fx_node(fx, 4));
    fx_tick(fx, 4, 5 * FX_ELECTION_TICK);
    assert_int_equal(fx_role(fx, 4), RAFT_FOLLOWER);
    assert_int_equal(fx_count(fx, RAFT_MSG_VOTE, 4, 0), 0);
    assert_int_equal(fx_count(fx, RAFT_MSG_PREVOTE, 4, 0), 0);
    /* 2 with only the learner and no other voter cannot win: 3 is away too. */
    fx_clear(fx);
    fx_heal(fx);
    fx_isolate(fx, 1);
    fx_isolate(fx, 3);
    raft_campaign(fx_node(fx, 2)->r);
    fx_handle_ready(fx_node(fx, 2));
    fx_stabilize(fx);
    assert_int_not_equal(fx_role(fx, 2), RAFT_LEADER);
}

/* Thesis §4.2.1: learners are not part of the commit quorum. */
static void test_membership_learner_does_not_count_toward_commit_quorum(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    add_node4(fx, RAFT_CC_ADD_LEARNER);
    commit = fx_commit(fx, 1);
    fx_isolate(fx, 2);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_last_index(fx, 4), fx_last_index(fx, 1));
    assert_int_equal(fx_commit(fx, 1), commit);
}

/* Thesis §4.2.1: once caught up, a learner is promoted and from then on counts toward
 * the quorum (3 of 4 voters). */
static void test_membership_promoted_learner_counts_as_voter(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    add_node4(fx, RAFT_CC_ADD_LEARNER);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_PROMOTE, 4), 0);
    fx_stabilize(fx);
    heartbeats(fx, 1, 2);
    assert_true(status_is_voter(fx, 1, 4));
    assert_true(status_is_voter(fx, 4, 4));
    assert_false(status_is_learner(fx, 4, 4));
    /* 1 and 4 alone are 2 of 4: not a quorum. */
    commit = fx_commit(fx, 1);
    fx_isolate(fx, 2);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    heartbeats(fx, 1, 2);
    assert_int_equal(fx_commit(fx, 1), commit);
    /* 1, 2 and 4 are 3 of 4: the entry commits, so 4's acknowledgement counted. */
    fx_heal(fx);
    fx_isolate(fx, 3);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_commit(fx, 1), commit + 1);
}

/* Thesis §4.1: an added voter enlarges the quorum (3 of 4). */
static void test_membership_added_voter_counts_toward_quorum(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    add_node4(fx, RAFT_CC_ADD_VOTER);
    assert_true(status_is_voter(fx, 1, 4));
    assert_int_equal(fx_status(fx, 1).conf.voters_count, 4);
    commit = fx_commit(fx, 1);
    fx_isolate(fx, 3);
    fx_isolate(fx, 4);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    heartbeats(fx, 1, 2);
    assert_int_equal(fx_commit(fx, 1), commit);
    fx_heal(fx);
    fx_isolate(fx, 3);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_commit(fx, 1), commit + 1);
}

/* Thesis §4.1: removing a voter shrinks the quorum (2 of 3 instead of 3 of 4), and the
 * removed node is no longer contacted. */
static void test_membership_removed_voter_shrinks_quorum(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    fx_init(fx, 4);
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_REMOVE, 4), 0);
    fx_stabilize(fx);
    heartbeats(fx, 1, 2);
    assert_int_equal(fx_status(fx, 1).conf.voters_count, 3);
    assert_false(status_is_voter(fx, 1, 4));
    commit = fx_commit(fx, 1);
    fx_isolate(fx, 3);
    fx_isolate(fx, 4);
    assert_int_equal(fx_propose(fx, 1, "x"), 0);
    heartbeats(fx, 1, 2);
    assert_int_equal(fx_commit(fx, 1), commit + 1);
    fx_tick(fx, 1, FX_HEARTBEAT_TICK);
    assert_int_equal(fx_count(fx, 0, 1, 4), 0);
}

/* Thesis §4.2.2: a leader that is removed from the configuration steps down once the
 * change is applied; the remaining voters elect a leader among themselves. */
static void test_membership_removed_leader_steps_down(void **state)
{
    struct fx *fx = *state;
    raft_id leader = RAFT_NONE;
    int rc;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_REMOVE, 1), 0);
    fx_stabilize(fx);
    assert_false(raft_conf_state_is_voter(&fx_node(fx, 1)->conf, 1));
    assert_int_not_equal(fx_role(fx, 1), RAFT_LEADER);
    rc = fx_propose(fx, 1, "x");
    assert_true(rc == LATCH_ENOTMEMBER || rc == LATCH_ENOLEADER);
    raft_campaign(fx_node(fx, 1)->r); /* a non-voter cannot campaign */
    fx_handle_ready(fx_node(fx, 1));
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
    for (unsigned i = 0; i < 10 * FX_ELECTION_TICK && leader == RAFT_NONE; i++) {
        fx_tick(fx, 2, 1);
        fx_tick(fx, 3, 1);
        fx_stabilize(fx);
        leader = fx_leader(fx);
    }
    assert_true(leader == 2 || leader == 3);
    heartbeats(fx, leader, 2);
    assert_false(status_is_voter(fx, leader, 1));
    assert_int_equal(fx_status(fx, leader).conf.voters_count, 2);
}

/* Thesis §4.1: only one change may be in progress; the next is refused while the
 * previous one is uncommitted (docs/decisions/raft-membership.md, rule 1). */
static void test_membership_second_change_refused_while_first_is_uncommitted(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_isolate(fx, 2);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), 0);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 5), LATCH_ECONFPENDING);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_REMOVE, 3), LATCH_ECONFPENDING);
    fx_heal(fx);
    for (unsigned i = 0;
         i < FX_ELECTION_TICK && !raft_conf_state_is_learner(&fx_node(fx, 1)->conf, 4); i++) {
        fx_heartbeat(fx, 1);
    }
    assert_true(raft_conf_state_is_learner(&fx_node(fx, 1)->conf, 4));
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 5), 0);
}

static bool is_vote(const struct fx_msg *msg, void *data)
{
    (void)data;
    return msg->m.type == RAFT_MSG_VOTE || msg->m.type == RAFT_MSG_VOTE_RESP;
}

/* Thesis §4.1 with the 2015 correction (docs/decisions/raft-membership.md, rule 2): a new
 * leader proposes no change before it has committed an entry of its own term, since an
 * uncommitted change of a deposed leader may still sit in some logs. */
static void test_membership_change_refused_until_leader_commits_entry_of_its_term(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    raft_campaign(fx_node(fx, 1)->r);
    fx_handle_ready(fx_node(fx, 1));
    fx_stabilize_if(fx, is_vote, NULL);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_commit(fx, 1), 3); /* its empty entry (4) is not committed yet */
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), LATCH_ECONFPENDING);
    fx_stabilize(fx);
    assert_int_equal(fx_commit(fx, 1), 4);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), 0);
}

/* Thesis §4.1 ("use-on-append", raft_apply_conf_change): a change takes effect on each
 * node as soon as it is in its log, before it commits — the entry adding voter 4 itself
 * needs a majority of the four voters. */
static void test_membership_change_takes_effect_when_appended(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_add_node(fx, 4);
    fx_isolate(fx, 3);
    fx_isolate(fx, 4);
    commit = fx_commit(fx, 1);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_VOTER, 4), 0);
    assert_true(status_is_voter(fx, 1, 4));
    assert_int_equal(fx_status(fx, 1).conf.voters_count, 4);
    heartbeats(fx, 1, 3);
    assert_true(status_is_voter(fx, 2, 4));     /* on the follower too, uncommitted */
    assert_int_equal(fx_commit(fx, 1), commit); /* 1 and 2 are 2 of 4 */
    assert_false(raft_conf_state_is_voter(&fx_node(fx, 1)->conf, 4)); /* not applied */
    fx_heal(fx);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_commit(fx, 1), commit + 1);
    assert_true(raft_conf_state_is_voter(&fx_node(fx, 1)->conf, 4));
    assert_true(raft_conf_state_is_voter(&fx_node(fx, 4)->conf, 4));
}

/* Thesis §4.1: a node uses the latest configuration in its log, so when a new leader
 * truncates an uncommitted change from a follower's log, the change is undone there. */
static void test_membership_truncated_change_is_undone(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 5);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    fx_isolate(fx, 4);
    fx_isolate(fx, 5);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 6), 0);
    fx_stabilize(fx);
    assert_int_equal(fx_stored_term(fx, 2, 7), 2);
    assert_true(status_is_learner(fx, 2, 6));
    assert_int_equal(fx_commit(fx, 1), 6);
    /* Node 1 crashes; 3 wins with 4 and 5, whose logs lack the change. */
    fx_clear(fx);
    fx_heal(fx);
    fx_isolate(fx, 1);
    fx_elect(fx, 3);
    fx_heartbeat(fx, 3);
    assert_int_equal(fx_stored_term(fx, 2, 7), 3);
    assert_false(status_is_learner(fx, 2, 6));
    assert_int_equal(fx_status(fx, 2).conf.learners_count, 0);
    assert_int_equal(fx_status(fx, 2).conf.voters_count, 5);
}

/* docs/decisions/raft-membership.md ("Restart"): the storage returns the configuration as
 * of the applied index, and the core replays the change entries after it, so a restarted
 * node uses the configuration it used before the crash (thesis §4.1, use-on-append). */
static void test_membership_restart_replays_changes_in_log(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), 0);
    fx_deliver(fx, RAFT_MSG_APPEND, 1, 2);
    fx_drop(fx, RAFT_MSG_APPEND_RESP, 2, 1);
    assert_true(status_is_learner(fx, 2, 4));
    assert_false(raft_conf_state_is_learner(&fx_node(fx, 2)->conf, 4)); /* not applied */
    fx_crash(fx, 2);
    fx_restart(fx, 2);
    assert_true(status_is_learner(fx, 2, 4));
    assert_int_equal(fx_status(fx, 2).conf.voters_count, 3);
}

/* Thesis §4.2.2 and docs/decisions/raft-membership.md: a leader that removes itself keeps
 * replicating but, using the new configuration at once, no longer counts itself; it
 * refuses proposals meanwhile and steps down once the removal commits. */
static void test_membership_leader_removing_itself_does_not_count_itself(void **state)
{
    struct fx *fx = *state;
    raft_index commit;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    fx_heartbeat(fx, 1);
    fx_isolate(fx, 3);
    commit = fx_commit(fx, 1);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_REMOVE, 1), 0);
    assert_int_equal(fx_propose(fx, 1, "x"), LATCH_ENOTMEMBER);
    heartbeats(fx, 1, 3);
    assert_int_equal(fx_role(fx, 1), RAFT_LEADER);
    assert_int_equal(fx_commit(fx, 1), commit); /* only 2 of the voters {2, 3} */
    fx_heal(fx);
    for (unsigned i = 0; i < FX_ELECTION_TICK && fx_role(fx, 1) == RAFT_LEADER; i++) {
        fx_heartbeat(fx, 1);
    }
    assert_int_equal(fx_commit(fx, 1), commit + 1);
    assert_int_equal(fx_role(fx, 1), RAFT_FOLLOWER);
}

/* Thesis §4.1: a change is applied to the current configuration; one that does not fit
 * it (adding a member, promoting a non-learner, removing a stranger) is refused. */
static void test_membership_change_that_does_not_fit_refused_with_einval(void **state)
{
    struct fx *fx = *state;
    raft_index last;

    fx_init(fx, 3);
    fx_start(fx);
    fx_elect(fx, 1);
    last = fx_last_index(fx, 1);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_VOTER, 2), LATCH_EINVAL);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 3), LATCH_EINVAL);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_PROMOTE, 3), LATCH_EINVAL);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_PROMOTE, 9), LATCH_EINVAL);
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_REMOVE, 9), LATCH_EINVAL);
    assert_int_equal(fx_last_index(fx, 1), last);
    /* A refused change does not block the next one. */
    assert_int_equal(fx_propose_cc(fx, 1, RAFT_CC_ADD_LEARNER, 4), 0);
}

/* Thesis §4.2.1: a new server joins without a vote; until a configuration names it, it
 * stays passive (raft_new) and never disrupts the cluster with elections. */
static void test_membership_node_outside_configuration_does_not_campaign(void **state)
{
    struct fx *fx = *state;

    fx_init(fx, 3);
    fx_start(fx);
    fx_add_node(fx, 4);
    fx_tick(fx, 4, 5 * FX_ELECTION_TICK);
    assert_int_equal(fx_role(fx, 4), RAFT_FOLLOWER);
    assert_int_equal(fx_term(fx, 4), 0);
    assert_int_equal(fx_count(fx, 0, 4, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(test_conf_change_encode_decode_round_trip),
        FX_TEST(test_conf_change_encode_refuses_invalid_changes),
        FX_TEST(test_conf_change_decode_refuses_truncated_bytes),
        FX_TEST(test_conf_change_decode_refuses_unknown_type),
        FX_TEST(test_conf_change_decode_never_yields_an_invalid_change),
        FX_TEST(test_conf_state_apply_adds_promotes_and_removes),
        FX_TEST(test_conf_state_apply_refuses_changes_that_do_not_fit),
        FX_TEST(test_conf_state_apply_refuses_when_no_room_is_left),
        FX_TEST(test_membership_added_learner_replicates_but_does_not_vote),
        FX_TEST(test_membership_learner_does_not_count_toward_commit_quorum),
        FX_TEST(test_membership_promoted_learner_counts_as_voter),
        FX_TEST(test_membership_added_voter_counts_toward_quorum),
        FX_TEST(test_membership_removed_voter_shrinks_quorum),
        FX_TEST(test_membership_removed_leader_steps_down),
        FX_TEST(test_membership_second_change_refused_while_first_is_uncommitted),
        FX_TEST(test_membership_change_refused_until_leader_commits_entry_of_its_term),
        FX_TEST(test_membership_change_takes_effect_when_appended),
        FX_TEST(test_membership_truncated_change_is_undone),
        FX_TEST(test_membership_restart_replays_changes_in_log),
        FX_TEST(test_membership_leader_removing_itself_does_not_count_itself),
        FX_TEST(test_membership_change_that_does_not_fit_refused_with_einval),
        FX_TEST(test_membership_node_outside_configuration_does_not_campaign),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
