/*
 * raft_sim.c — the simulator's command line, scheduler and liveness phase.
 *
 *   raft_sim [--seed S] [--seeds N] [--nodes N] [--steps M] [--faults all|none]
 *            [--bug NAME] [--expect-violation] [--verbose]
 *
 * Each seed runs one cluster for M steps. A step completes the persists that are due, lets
 * the scheduler pick one action with seeded weights (tick a node, deliver messages, propose,
 * read, transfer leadership, change membership, snapshot, crash, reboot, restart, partition,
 * heal), then lets every idle node take its next ready. After the M steps the liveness phase
 * heals everything and requires the cluster to converge. See README.md in this folder.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

enum sim_action {
    ACT_TICK = 0,
    ACT_DELIVER,
    ACT_PROPOSE,
    ACT_READ,
    ACT_TRANSFER,
    ACT_CONF,
    ACT_SNAPSHOT,
    ACT_CRASH,
    ACT_CRASH_BUSY,
    ACT_REBOOT,
    ACT_RESTART,
    ACT_PARTITION,
    ACT_HEAL,
    ACT_IDLE, /* time passes */
    ACT_COUNT,
};

/* The seed being run, for the assertion handler (the core asserting is a violation too). */
static struct sim *assert_sim;
static jmp_buf assert_jmp;

static const uint32_t all_bugs[] = {
    RAFT_BUG_VOTE_IGNORES_LOG,
    RAFT_BUG_COMMIT_OLD_TERM,
    RAFT_BUG_VOTE_BEFORE_PERSIST,
    RAFT_BUG_NO_TRUNCATE_CONFLICT,
};

/* ------------------------------------------------------------------------------------ */
/* Per-seed parameters                                                                  */
/* ------------------------------------------------------------------------------------ */

/* One of x/2, x, 2x: each seed leans a different way. */
static uint32_t vary(struct sim_rng *rng, uint32_t x)
{
    switch (sim_rng_below(rng, 3)) {
    case 0:
        return x / 2;
    case 1:
        return x;
    default:
        return 2 * x;
    }
}

static void params_core(struct sim *s)
{
    struct sim_rng *rng = &s->rng;
    struct sim_params *p = &s->p;

    /* Short timeouts make elections collide (split votes) and leaders step down often. */
    p->election_tick = sim_rng_chance(rng, 300) ? (uint32_t)sim_rng_range(rng, 3, 6)
                                                : (uint32_t)sim_rng_range(rng, 8, 16);
    p->heartbeat_tick = (uint32_t)sim_rng_range(rng, 1, p->election_tick < 4 ? 2 : 3);
    p->max_inflight_msgs = sim_rng_chance(rng, 400) ? (uint32_t)sim_rng_range(rng, 1, 4) : 256;
    /* Small messages carry one entry each, so followers catch up entry by entry. */
    p->max_msg_bytes = sim_rng_chance(rng, 500) ? sim_rng_range(rng, 1, 128) : 1u << 20;
    p->max_committed_bytes = sim_rng_chance(rng, 300) ? sim_rng_range(rng, 1, 256) : 0;
    p->max_uncommitted_bytes = sim_rng_chance(rng, 200) ? sim_rng_range(rng, 256, 4096) : 0;
    p->pre_vote = sim_rng_chance(rng, 600);
    p->check_quorum = sim_rng_chance(rng, 600);
    p->no_forwarding = sim_rng_chance(rng, 150);
}

static void params_network(struct sim *s, bool faults)
{
    struct sim_rng *rng = &s->rng;
    struct sim_params *p = &s->p;

    p->delay_max = (uint32_t)sim_rng_range(rng, 2, 12);
    p->disk_max = (uint32_t)sim_rng_range(rng, 1, 24);
    p->outbox_pm = faults ? (uint32_t)sim_rng_below(rng, 3) * 500 : 0;
    p->drop_pm = faults ? (uint32_t)sim_rng_range(rng, 0, 60) : 0;
    p->dup_pm = faults ? (uint32_t)sim_rng_range(rng, 0, 40) : 0;
    p->slow_pm = faults ? (uint32_t)sim_rng_range(rng, 0, 100) : 0;
    p->slow_max = (uint32_t)sim_rng_range(rng, 20, 400);
    p->unreachable_pm = 200;
}

static void params_weights(struct sim *s, bool faults)
{
    struct sim_rng *rng = &s->rng;
    struct sim_params *p = &s->p;

    p->w_tick = 300;
    p->w_deliver = 400;
    p->w_propose = vary(rng, 80);
    p->w_read = vary(rng, 20);
    p->w_transfer = vary(rng, 3);
    p->w_conf = vary(rng, 5);
    /* Where membership drifts: toward 3 voters (the common deployment) or toward more. */
    p->remove_pm = (uint32_t)sim_rng_range(rng, 2, 7) * 100;
    p->w_snapshot = vary(rng, 6);
    p->w_crash = faults ? vary(rng, 3) : 0;
    p->w_crash_busy = faults ? vary(rng, 6) : 0;
    p->w_reboot = faults ? vary(rng, 3) : 0;
    p->w_restart = vary(rng, 30);
    p->w_partition = faults ? vary(rng, 3) : 0;
    p->w_heal = vary(rng, 4);
    if (sim_rng_chance(rng, 300)) {
        /* Flapping: the partition changes shape every few dozen steps. */
        p->w_partition *= 8;
        p->w_heal *= 4;
    }
}

/*
 * The figure-8 regime (paper §5.4.2): one entry per append (every proposal carries at least
 * 8 bytes), so a leader that catches a follower up sends entries of older terms in messages
 * without its own no-op; short election timeouts; leaders struck right after they win, right
 * after their own entries leave and right after an older entry reaches a quorum; fewer
 * random crashes and partitions to spoil the sequence (the strikes do most of the cutting).
 */
static void params_figure8(struct sim *s)
{
    struct sim_rng *rng = &s->rng;
    struct sim_params *p = &s->p;

    p->figure8 = true;
    p->max_msg_bytes = sim_rng_range(rng, 1, 7);
    p->election_tick = (uint32_t)sim_rng_range(rng, 3, 4);
    p->heartbeat_tick = 1;
    p->delay_max = (uint32_t)sim_rng_range(rng, 2, 3);
    p->disk_max = (uint32_t)sim_rng_range(rng, 1, 2);
    p->strike_pm = 900;
    p->strike_delay_max = 3;
    p->catchup_strike_pm = 1000;
    p->append_strike_pm = 30;
    p->w_crash /= 4;
    p->w_crash_busy /= 4;
    p->w_reboot /= 4;
    p->w_partition /= 4;
}

/* The nemeses aimed at fresh leaders, catching-up leaders and voters (sim_nemesis.c). */
static void params_nemesis(struct sim *s, bool faults)
{
    struct sim_rng *rng = &s->rng;
    struct sim_params *p = &s->p;

    p->strike_pm = faults ? (uint32_t)sim_rng_below(rng, 4) * 300 : 0;
    /* Short delays cut a new leader off before its first appends land. */
    p->strike_delay_max = sim_rng_chance(rng, 500) ? 3 : (uint32_t)sim_rng_range(rng, 4, 40);
    p->vote_strike_pm = faults ? (uint32_t)sim_rng_below(rng, 4) * 300 : 0;
    if (sim_rng_chance(rng, 200)) {
        /* Calm: rare node faults, so that logs, snapshots and memberships grow deep. */
        p->w_crash /= 4;
        p->w_crash_busy /= 4;
        p->w_reboot /= 4;
        p->w_partition /= 4;
        p->strike_pm /= 4;
        p->vote_strike_pm /= 4;
    } else if (faults && sim_rng_chance(rng, 250)) {
        params_figure8(s);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Helpers for the actions                                                              */
/* ------------------------------------------------------------------------------------ */

/* A random node among those for which pick(n) holds; NULL when none. */
static struct sim_node *random_node(struct sim *s, bool (*pick)(const struct sim_node *n))
{
    struct sim_node *cands[SIM_IDS_MAX];
    size_t count = 0;

    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = s->nodes[id];

        if (n != NULL && pick(n)) {
            cands[count++] = n;
        }
    }
    return count == 0 ? NULL : cands[sim_rng_below(&s->rng, count)];
}

static bool pick_live(const struct sim_node *n)
{
    return n->state == SIM_NODE_LIVE;
}

static bool pick_idle(const struct sim_node *n)
{
    return n->state == SIM_NODE_LIVE && !n->busy;
}

static bool pick_persisting(const struct sim_node *n)
{
    return n->state == SIM_NODE_LIVE && n->persisting;
}

static bool pick_crashed(const struct sim_node *n)
{
    return n->state == SIM_NODE_CRASHED;
}

static bool pick_idle_leader(const struct sim_node *n)
{
    return n->state == SIM_NODE_LIVE && !n->busy && n->seen_leader;
}

static bool pick_live_leader(const struct sim_node *n)
{
    return n->state == SIM_NODE_LIVE && n->seen_leader;
}

static size_t count_nodes(const struct sim *s, bool (*pick)(const struct sim_node *n))
{
    size_t count = 0;

    for (raft_id id = 1; id < s->next_id; id++) {
        if (s->nodes[id] != NULL && pick(s->nodes[id])) {
            count++;
        }
    }
    return count;
}

/* ------------------------------------------------------------------------------------ */
/* Actions                                                                              */
/* ------------------------------------------------------------------------------------ */

static void act_propose(struct sim *s, struct sim_node *n)
{
    uint8_t buf[8 + 64];
    size_t len = 8 + (size_t)sim_rng_below(&s->rng, 65);
    uint64_t id = sim_check_new_proposal(s, n->id, n->life);
    int rc;

    sim_put64(buf, id);
    for (size_t i = 8; i < len; i++) {
        buf[i] = (uint8_t)sim_rng_next(&s->rng);
    }
    rc = raft_propose(n->r, buf, len);
    sim_event(s, SIM_EV_PROPOSE, n->id, n->seen_term, id, (uint64_t)-rc, len);
    if (rc == 0) {
        s->stats.proposals++;
    }
    sim_node_observe(n);
}

static void act_read(struct sim *s, struct sim_node *n)
{
    uint64_t ctx = sim_check_new_read(s);
    int rc = raft_read_index(n->r, ctx);

    sim_event(s, SIM_EV_READ, n->id, n->seen_term, ctx, (uint64_t)-rc, 0);
    sim_node_observe(n);
}

static void act_transfer(struct sim *s, struct sim_node *n)
{
    struct raft_status st;
    raft_id target;
    int rc;

    raft_status(n->r, &st);
    if (st.conf.voters_count < 2) {
        return;
    }
    target = st.conf.voters[sim_rng_below(&s->rng, st.conf.voters_count)];
    if (target == n->id) {
        return;
    }
    rc = raft_transfer_leader(n->r, target);
    sim_event(s, SIM_EV_TRANSFER, n->id, st.term, target, (uint64_t)-rc, 0);
    sim_node_observe(n);
}

/* Chooses a change that keeps between SIM_VOTERS_MIN and SIM_VOTERS_MAX voters. */
static bool
choose_conf_change(struct sim *s, const struct raft_status *st, struct raft_conf_change *cc)
{
    const struct raft_conf_state *conf = &st->conf;
    uint32_t members = conf->voters_count + conf->learners_count;
    bool remove = sim_rng_chance(&s->rng, s->p.remove_pm);
    uint64_t roll = remove ? 1 : sim_rng_below(&s->rng, 2) * 2;

    memset(cc, 0, sizeof(*cc));
    if (roll == 0 && conf->learners_count > 0 && conf->voters_count < SIM_VOTERS_MAX) {
        cc->type = RAFT_CC_PROMOTE;
        cc->node = conf->learners[sim_rng_below(&s->rng, conf->learners_count)];
    } else if (roll == 1 && conf->voters_count > SIM_VOTERS_MIN) {
        cc->type = RAFT_CC_REMOVE;
        cc->node = conf->voters[sim_rng_below(&s->rng, conf->voters_count)];
        /* Removing the leader itself is rarer but allowed (it steps down once applied). */
        if (cc->node == st->id && sim_rng_chance(&s->rng, 700)) {
            return false;
        }
    } else if (roll == 1 && conf->learners_count > 0) {
        cc->type = RAFT_CC_REMOVE;
        cc->node = conf->learners[sim_rng_below(&s->rng, conf->learners_count)];
    } else if (members < SIM_MEMBERS_MAX && s->next_id < SIM_IDS_MAX) {
        cc->type = RAFT_CC_ADD_LEARNER;
        cc->node = s->next_id; /* always a fresh id: ids are never reused */
    } else {
        return false;
    }
    return true;
}

static void act_conf(struct sim *s, struct sim_node *n)
{
    struct raft_status st;
    struct raft_conf_change cc;
    int rc;

    raft_status(n->r, &st);
    if (!choose_conf_change(s, &st, &cc)) {
        return;
    }
    rc = raft_propose_conf_change(n->r, &cc);
    if (rc == 0 && cc.type == RAFT_CC_ADD_LEARNER) {
        s->next_id++;
    }
    sim_event(s, SIM_EV_CONF, n->id, st.term, cc.type, cc.node, (uint64_t)-rc);
    sim_node_observe(n);
}

static void act_crash(struct sim *s, bool busy_only)
{
    struct sim_node *n = NULL;

    if (busy_only) {
        n = random_node(s, pick_persisting);
    } else if (sim_rng_chance(&s->rng, 250)) {
        n = random_node(s, pick_live_leader);
    }
    if (n == NULL) {
        n = random_node(s, pick_live);
    }
    if (n != NULL) {
        sim_node_crash(n);
    }
}

/* kill -9 and an immediate restart by the supervisor, preferably in the middle of a persist:
 * the node comes back with only what it synced while its messages may still be in flight. */
static void act_reboot(struct sim *s)
{
    struct sim_node *n = random_node(s, pick_persisting);

    if (n == NULL) {
        n = random_node(s, pick_live);
    }
    if (n != NULL) {
        sim_node_crash(n);
        sim_node_restart(n);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Scheduler                                                                            */
/* ------------------------------------------------------------------------------------ */

static void action_weights(struct sim *s, uint32_t *w)
{
    const struct sim_params *p = &s->p;
    bool faults = s->phase == SIM_PHASE_FAULTS;
    size_t due = sim_net_due_count(s);
    bool crashed = count_nodes(s, pick_crashed) > 0;

    memset(w, 0, ACT_COUNT * sizeof(*w));
    /* Liveness needs the timing requirement of paper §5.6 (broadcast time much shorter than
     * the election timeout); some seeds break it on purpose, with election timeouts barely
     * above disk and network latency. Once faults stop, the disk and the network are fast
     * (sim_node.c, sim_net.c) and clocks tick at most once in 5 steps, so it holds. */
    w[ACT_TICK] = faults ? p->w_tick : p->w_tick / 4;
    w[ACT_IDLE] = faults ? 0 : p->w_tick;
    /* The more messages wait, the likelier a delivery: the network keeps up with load. */
    w[ACT_DELIVER] = due > 0 ? p->w_deliver + 25 * (uint32_t)(due < 40 ? due : 40) : 0;
    w[ACT_RESTART] = crashed ? p->w_restart : 0;
    if (!faults) {
        return;
    }
    w[ACT_PROPOSE] = p->w_propose;
    w[ACT_READ] = p->w_read;
    w[ACT_TRANSFER] = p->w_transfer;
    w[ACT_CONF] = p->w_conf;
    w[ACT_SNAPSHOT] = p->w_snapshot;
    w[ACT_CRASH] = p->w_crash;
    w[ACT_CRASH_BUSY] = count_nodes(s, pick_persisting) > 0 ? p->w_crash_busy : 0;
    w[ACT_REBOOT] = p->w_reboot;
    w[ACT_PARTITION] = p->w_partition;
    w[ACT_HEAL] = s->net.partitioned ? p->w_heal : 0;
}

static uint32_t choose_action(struct sim *s)
{
    uint32_t w[ACT_COUNT];
    uint64_t total = 0;
    uint64_t roll;

    action_weights(s, w);
    for (int i = 0; i < ACT_COUNT; i++) {
        total += w[i];
    }
    roll = sim_rng_below(&s->rng, total);
    for (uint32_t i = 0; i < ACT_COUNT; i++) {
        if (roll < w[i]) {
            return i;
        }
        roll -= w[i];
    }
    return ACT_TICK;
}

static void do_action(struct sim *s, uint32_t action)
{
    struct sim_node *n;

    switch (action) {
    case ACT_TICK:
        n = random_node(s, pick_live);
        if (n != NULL) {
            sim_node_tick(n);
        }
        break;
    case ACT_DELIVER: {
        /* One message, or more when many wait: a backlog drains instead of growing. */
        size_t count = 1 + sim_net_due_count(s) / 4;

        for (size_t i = 0; i < count && i < 32; i++) {
            sim_net_deliver(s);
        }
        break;
    }
    case ACT_PROPOSE:
    case ACT_READ:
    case ACT_SNAPSHOT:
        n = random_node(s, pick_idle);
        if (n != NULL && action == ACT_PROPOSE) {
            act_propose(s, n);
        } else if (n != NULL && action == ACT_READ) {
            act_read(s, n);
        } else if (n != NULL) {
            sim_node_snapshot(n);
        }
        break;
    case ACT_TRANSFER:
    case ACT_CONF:
        n = random_node(s, pick_idle_leader);
        if (n != NULL && action == ACT_TRANSFER) {
            act_transfer(s, n);
        } else if (n != NULL) {
            act_conf(s, n);
        }
        break;
    case ACT_CRASH:
    case ACT_CRASH_BUSY:
        act_crash(s, action == ACT_CRASH_BUSY);
        break;
    case ACT_REBOOT:
        act_reboot(s);
        break;
    case ACT_RESTART:
        n = random_node(s, pick_crashed);
        if (n != NULL) {
            sim_node_restart(n);
        }
        break;
    case ACT_PARTITION:
        sim_net_partition(s);
        break;
    case ACT_HEAL:
        sim_net_heal(s);
        break;
    case ACT_IDLE:
        break;
    default:
        LATCH_UNREACHABLE();
    }
}

static void sim_step(struct sim *s)
{
    s->step++;
    s->stats.steps++;
    sim_net_advance(s);
    sim_nemesis_run(s);
    sim_nodes_drive(s);
    do_action(s, choose_action(s));
    sim_nodes_drive(s);
    sim_node_reap(s);
}

/* ------------------------------------------------------------------------------------ */
/* Liveness                                                                             */
/* ------------------------------------------------------------------------------------ */

static struct sim_node *find_leader(struct sim *s)
{
    struct sim_node *best = NULL;
    raft_term max_term = 0;

    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = s->nodes[id];

        if (sim_node_is_live(n) && n->seen_term > max_term) {
            max_term = n->seen_term;
        }
    }
    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *n = s->nodes[id];

        if (sim_node_is_live(n) && n->seen_leader && n->seen_term == max_term) {
            best = n;
        }
    }
    return best;
}

/* Appends to why, for each member of the leader's configuration, "id:applied/match/next/
 * state/inflight" as the leader sees it (a liveness failure report). */
static void describe_members(struct sim *s, struct sim_node *leader, char *why, size_t size)
{
    struct raft_status st;
    size_t len = strlen(why);

    raft_status(leader->r, &st);
    len += (size_t)snprintf(why + len, size - len, "; leader %llu commit %llu last %llu;",
                            (unsigned long long)leader->id, (unsigned long long)st.commit,
                            (unsigned long long)st.last_index);
    for (uint32_t i = 0; i < st.conf.voters_count + st.conf.learners_count && len < size; i++) {
        raft_id id = i < st.conf.voters_count ? st.conf.voters[i]
                                              : st.conf.learners[i - st.conf.voters_count];
        struct sim_node *n = sim_node_get(s, id);
        struct raft_progress_info pr;

        memset(&pr, 0, sizeof(pr));
        raft_progress(leader->r, id, &pr);
        len += (size_t)snprintf(why + len, size - len, " %s%llu:%llu/%llu/%llu/%u/%u",
                                i < st.conf.voters_count ? "" : "L", (unsigned long long)id,
                                n != NULL ? (unsigned long long)n->app.applied : 0,
                                (unsigned long long)pr.match, (unsigned long long)pr.next, pr.state,
                                pr.inflight_count);
    }
}

/* True when every member of the leader's configuration applied up to its commit. */
static bool members_caught_up(struct sim *s, struct sim_node *leader, char *why, size_t size)
{
    struct raft_status st;

    raft_status(leader->r, &st);
    for (uint32_t i = 0; i < st.conf.voters_count + st.conf.learners_count; i++) {
        raft_id id = i < st.conf.voters_count ? st.conf.voters[i]
                                              : st.conf.learners[i - st.conf.voters_count];
        struct sim_node *n = sim_node_get(s, id);

        if (!sim_node_is_live(n) || n->app.applied < st.commit) {
            snprintf(why, size, "member %llu is behind", (unsigned long long)id);
            describe_members(s, leader, why, size);
            return false;
        }
    }
    return true;
}

/* Proposes a write with a new proposal id at the leader; returns the id. */
static uint64_t propose_fresh(struct sim *s, struct sim_node *leader)
{
    uint64_t id = sim_check_new_proposal(s, leader->id, leader->life);
    uint8_t buf[8];
    int rc;

    sim_put64(buf, id);
    rc = raft_propose(leader->r, buf, sizeof(buf));
    sim_event(s, SIM_EV_PROPOSE, leader->id, leader->seen_term, id, (uint64_t)-rc, sizeof(buf));
    sim_node_observe(leader);
    return id;
}

/*
 * Convergence, in two stages. First the idle cluster: with no new writes, every member must
 * catch up with the leader's commit (a follower whose appends were lost must not stay
 * behind until the next write happens to repair it). Then a fresh write must commit and
 * reach every member too.
 */
static bool converged(struct sim *s, uint64_t *fresh, uint64_t *fresh_step, char *why, size_t size)
{
    struct sim_node *leader = find_leader(s);
    const struct sim_proposal *p;

    if (leader == NULL) {
        snprintf(why, size, "no leader");
        return false;
    }
    if (*fresh == 0) {
        if (!members_caught_up(s, leader, why, size)) {
            return false; /* why: an idle cluster does not converge */
        }
        if (leader->busy) {
            return false;
        }
        *fresh = propose_fresh(s, leader);
        *fresh_step = s->step;
        return false;
    }
    p = sim_check_proposal(s, *fresh);
    if (p == NULL || p->index == 0) {
        if (s->step - *fresh_step > 3000 && !leader->busy) {
            /* Leadership changed under the write: retry with a new one. */
            *fresh = propose_fresh(s, leader);
            *fresh_step = s->step;
        }
        snprintf(why, size, "fresh proposal %llu not committed", (unsigned long long)*fresh);
        describe_members(s, leader, why, size);
        return false;
    }
    return members_caught_up(s, leader, why, size);
}

static void run_liveness(struct sim *s)
{
    uint64_t fresh = 0;
    uint64_t fresh_step = 0;
    char why[400] = "not checked";

    s->phase = SIM_PHASE_LIVENESS;
    sim_event(s, SIM_EV_PHASE, 0, 0, s->phase, 0, 0);
    sim_net_heal(s);
    for (raft_id id = 1; id < s->next_id; id++) {
        if (s->nodes[id] != NULL && s->nodes[id]->state == SIM_NODE_CRASHED) {
            sim_node_restart(s->nodes[id]);
        }
    }
    for (uint32_t i = 0; i < SIM_LIVENESS_STEPS && !s->violated; i++) {
        sim_step(s);
        if (i % 16 == 15 && converged(s, &fresh, &fresh_step, why, sizeof(why))) {
            sim_check_acked_committed(s);
            return;
        }
    }
    sim_violation(s, "liveness", "no convergence %u steps after healing: %s", SIM_LIVENESS_STEPS,
                  why);
}

/* ------------------------------------------------------------------------------------ */
/* One seed                                                                             */
/* ------------------------------------------------------------------------------------ */

static void print_params(const struct sim *s)
{
    const struct sim_params *p = &s->p;

    printf("seed %" PRIu64 ": election_tick=%u heartbeat_tick=%u inflight=%u msg_bytes=%" PRIu64
           " pre_vote=%d check_quorum=%d forwarding=%d drop=%u dup=%u slow=%u delay_max=%u "
           "disk_max=%u outbox=%u crash=%u/%u/%u partition=%u/%u strike=%u/%u catchup=%u "
           "append=%u vote=%u figure8=%d remove=%u\n",
           s->seed, p->election_tick, p->heartbeat_tick, p->max_inflight_msgs, p->max_msg_bytes,
           p->pre_vote, p->check_quorum, !p->no_forwarding, p->drop_pm, p->dup_pm, p->slow_pm,
           p->delay_max, p->disk_max, p->outbox_pm, p->w_crash, p->w_crash_busy, p->w_reboot,
           p->w_partition, p->w_heal, p->strike_pm, p->strike_delay_max, p->catchup_strike_pm,
           p->append_strike_pm, p->vote_strike_pm, p->figure8, p->remove_pm);
}

static void sim_init(struct sim *s, const struct sim_options *opt, uint64_t seed)
{
    struct raft_conf_state boot;

    memset(s, 0, sizeof(*s));
    s->opt = opt;
    s->seed = seed;
    sim_rng_seed(&s->rng, seed);
    params_core(s);
    params_network(s, opt->faults);
    params_weights(s, opt->faults);
    params_nemesis(s, opt->faults);
    if (opt->verbose) {
        print_params(s);
    }
    sim_net_init(&s->net);
    sim_check_init(&s->check);
    s->next_proposal = 1;
    memset(&boot, 0, sizeof(boot));
    for (uint32_t i = 0; i < opt->nodes; i++) {
        boot.voters[boot.voters_count++] = i + 1;
    }
    s->bootstrap_count = opt->nodes;
    s->next_id = opt->nodes + 1;
    for (raft_id id = 1; id <= opt->nodes; id++) {
        sim_node_create(s, id, &boot);
    }
}

static void sim_destroy(struct sim *s)
{
    for (raft_id id = 1; id < SIM_IDS_MAX; id++) {
        sim_node_destroy(s->nodes[id]);
        s->nodes[id] = NULL;
    }
    sim_net_free(&s->net);
    sim_check_free(&s->check);
}

static void print_replay(const struct sim *s)
{
    const struct sim_options *o = s->opt;

    printf("seed: %" PRIu64 " (violation at step %" PRIu64 ")\n", s->seed, s->violation_step);
    printf("replay: %s --seed %" PRIu64 " --nodes %u --steps %" PRIu64 "%s%s%s%s\n",
           o->bug_name != NULL ? "raft_sim_teeth" : "raft_sim", s->seed, o->nodes, o->steps,
           o->faults ? "" : " --faults none", o->bug_name != NULL ? " --bug " : "",
           o->bug_name != NULL ? o->bug_name : "", o->end_to_end ? " --end-to-end" : "");
}

static void report_violation(const struct sim *s, bool full)
{
    printf("VIOLATION: %s: %s\n", s->violation_which, s->violation_detail);
    print_replay(s);
    if (full) {
        sim_print_ring(s);
    }
    fflush(stdout);
}

static void on_core_assert(const char *file, int line, const char *expr, const char *detail)
{
    if (assert_sim == NULL) {
        return; /* not inside a seed: print and abort */
    }
    sim_violation(assert_sim, "assertion", "%s:%d: %s%s%s", file, line, expr,
                  detail[0] != '\0' ? ": " : "", detail);
    longjmp(assert_jmp, 1);
}

static void run_main(struct sim *s)
{
    for (uint64_t i = 0; i < s->opt->steps && !s->violated; i++) {
        sim_step(s);
    }
    if (!s->violated) {
        run_liveness(s);
    }
}

/* struct sim_stats is a row of uint64_t counters, added up as an array. */
LATCH_STATIC_ASSERT(sizeof(struct sim_stats) == 20 * sizeof(uint64_t),
                    "sim_stats holds only its 20 uint64_t counters");

static void stats_add(struct sim_stats *t, const struct sim_stats *a)
{
    const uint64_t *src = (const uint64_t *)a;
    uint64_t *dst = (uint64_t *)t;

    for (size_t i = 0; i < sizeof(*t) / sizeof(uint64_t); i++) {
        dst[i] += src[i];
    }
}

/* Runs one seed; true when it violated an invariant. */
static bool run_seed(const struct sim_options *opt,
                     uint64_t seed,
                     bool full_report,
                     struct sim_stats *totals,
                     uint64_t *steps_out,
                     char *which,
                     size_t size)
{
    struct sim *s = malloc(sizeof(*s));
    bool violated;

    LATCH_ASSERT(s != NULL);
    sim_init(s, opt, seed);
    assert_sim = s;
    if (setjmp(assert_jmp) == 0) {
        run_main(s);
    }
    assert_sim = NULL;
    violated = s->violated;
    s->stats.seeds = 1;
    s->stats.violations = violated ? 1 : 0;
    if (violated) {
        report_violation(s, full_report);
        snprintf(which, size, "%s", s->violation_which);
    }
    *steps_out = s->violation_step;
    stats_add(totals, &s->stats);
    sim_destroy(s);
    free(s);
    return violated;
}

/* ------------------------------------------------------------------------------------ */
/* Command line                                                                         */
/* ------------------------------------------------------------------------------------ */

/* One line of totals over every seed run. */
static void print_summary(const struct sim_stats *t)
{
    printf(
        "summary: seeds=%" PRIu64 " steps=%" PRIu64 " elections=%" PRIu64 " leader_changes=%" PRIu64
        " snapshots_installed=%" PRIu64 " snapshots_taken=%" PRIu64 " conf_changes=%" PRIu64
        " transfers_started=%" PRIu64 " transfers_completed=%" PRIu64 " proposals=%" PRIu64
        " acked=%" PRIu64 " reads_checked=%" PRIu64 " msgs_sent=%" PRIu64 " msgs_delivered=%" PRIu64
        " msgs_dropped=%" PRIu64 " msgs_duplicated=%" PRIu64 " crashes=%" PRIu64
        " restarts=%" PRIu64 " partitions=%" PRIu64 " violations=%" PRIu64 "\n",
        t->seeds, t->steps, t->elections, t->leader_changes, t->snapshots_installed,
        t->snapshots_taken, t->conf_applied, t->transfers_started, t->transfers_completed,
        t->proposals, t->acked, t->reads_checked, t->msgs_sent, t->msgs_delivered, t->msgs_dropped,
        t->msgs_duplicated, t->crashes, t->restarts, t->partitions, t->violations);
}

static int run_plain(const struct sim_options *opt)
{
    struct sim_stats totals;
    uint64_t failed = 0;
    char which[64];
    uint64_t steps;

    memset(&totals, 0, sizeof(totals));
    for (uint64_t i = 0; i < opt->seeds; i++) {
        if (run_seed(opt, opt->seed + i, failed == 0, &totals, &steps, which, sizeof(which))) {
            failed++;
        }
    }
    print_summary(&totals);
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", opt->seeds - failed, failed);
    return failed == 0 ? 0 : 1;
}

/* Teeth: with one bug injected, some seed in the budget must violate an invariant. */
static int run_expect(const struct sim_options *base, uint32_t bug)
{
    struct sim_options opt = *base;
    struct sim_stats totals;
    char which[64];
    uint64_t steps;
    uint64_t i;

    opt.bugs = bug;
    opt.bug_name = sim_bug_name(bug);
    memset(&totals, 0, sizeof(totals));
    for (i = 0; i < opt.seeds; i++) {
        if (run_seed(&opt, opt.seed + i, opt.verbose, &totals, &steps, which, sizeof(which))) {
            printf("caught %s at seed %" PRIu64 " after %" PRIu64 " steps: %s\n", opt.bug_name,
                   opt.seed + i, steps, which);
            print_summary(&totals);
            printf("teeth: 1 passed, 0 failed (%s caught)\n", opt.bug_name);
            return 0;
        }
    }
    printf("NOT CAUGHT: %s survived %" PRIu64 " seeds\n", opt.bug_name, opt.seeds);
    print_summary(&totals);
    printf("teeth: 0 passed, 1 failed (%s not caught)\n", opt.bug_name);
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: raft_sim [--seed S] [--seeds N] [--nodes N] [--steps M] "
            "[--faults all|none] [--bug NAME] [--expect-violation] [--end-to-end] [--verbose]\n"
            "bugs: vote-ignores-log commit-old-term vote-before-persist "
            "no-truncate-conflict\n");
}

static bool parse_u64(const char *arg, uint64_t *out)
{
    char *end;

    if (arg == NULL || arg[0] < '0' || arg[0] > '9') {
        return false;
    }
    *out = strtoull(arg, &end, 10);
    return *end == '\0';
}

static bool parse_bug(const char *name, struct sim_options *opt)
{
    for (size_t i = 0; i < sizeof(all_bugs) / sizeof(all_bugs[0]); i++) {
        if (strcmp(name, sim_bug_name(all_bugs[i])) == 0) {
            opt->bugs = all_bugs[i];
            opt->bug_name = sim_bug_name(all_bugs[i]);
            return true;
        }
    }
    return false;
}

static bool parse_option(int argc, char **argv, int *i, struct sim_options *opt, bool *seeds_set)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    uint64_t x;

    if (strcmp(a, "--expect-violation") == 0) {
        opt->expect_violation = true;
        return true;
    }
    if (strcmp(a, "--verbose") == 0) {
        opt->verbose = true;
        return true;
    }
    if (strcmp(a, "--end-to-end") == 0) {
        opt->end_to_end = true;
        return true;
    }
    (*i)++;
    if (strcmp(a, "--seed") == 0) {
        return parse_u64(v, &opt->seed);
    }
    if (strcmp(a, "--seeds") == 0) {
        *seeds_set = true;
        return parse_u64(v, &opt->seeds) && opt->seeds > 0;
    }
    if (strcmp(a, "--steps") == 0) {
        return parse_u64(v, &opt->steps);
    }
    if (strcmp(a, "--nodes") == 0 && parse_u64(v, &x) && x >= 1 && x <= SIM_MEMBERS_MAX) {
        opt->nodes = (uint32_t)x;
        return true;
    }
    if (strcmp(a, "--faults") == 0 && v != NULL) {
        opt->faults = strcmp(v, "all") == 0;
        return opt->faults || strcmp(v, "none") == 0;
    }
    if (strcmp(a, "--bug") == 0 && v != NULL) {
        return parse_bug(v, opt);
    }
    return false;
}

int main(int argc, char **argv)
{
    struct sim_options opt = {.seed = 1, .seeds = 1, .nodes = 5, .steps = 10000, .faults = true};
    bool seeds_set = false;

    for (int i = 1; i < argc; i++) {
        if (!parse_option(argc, argv, &i, &opt, &seeds_set)) {
            usage();
            return 2;
        }
    }
#ifndef LATCH_RAFT_BUGS
    if (opt.bugs != 0 || opt.expect_violation) {
        fprintf(stderr, "raft_sim: --bug and --expect-violation need a core built with "
                        "-DLATCH_RAFT_BUGS (use raft_sim_teeth)\n");
        return 2;
    }
#endif
    setvbuf(stdout, NULL, _IOLBF, 0);
    latch_assert_set_handler(on_core_assert);
    if (!opt.expect_violation) {
        return run_plain(&opt);
    }
    if (!seeds_set) {
        opt.seeds = 200;
    }
    if (opt.bugs != 0) {
        return run_expect(&opt, opt.bugs);
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof(all_bugs) / sizeof(all_bugs[0]); i++) {
        rc |= run_expect(&opt, all_bugs[i]);
    }
    return rc;
}
