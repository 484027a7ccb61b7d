/*
 * sim_nemesis.c — faults aimed at the moments when Raft is fragile (Jepsen's targeted
 * nemeses), on top of the scheduler's random crashes and partitions:
 *
 *   fresh leader  a few steps after a node wins an election it is isolated or crashed, often
 *                 before its first appends (and its no-op) land;
 *   append        right after a leader sends entries of its own term it is isolated or
 *                 crashed, so they reach a minority at most (divergent logs);
 *   catch-up      a leader is isolated or crashed at the next step after an entry of an
 *                 older term reached a quorum of its voters while no entry of its own term
 *                 had: the moment of paper §5.4.2 and figure 8, where counting replicas
 *                 would commit the old entry although a later leader can still overwrite it;
 *   voter         a node that has just granted a vote is rebooted (or crashed) at the next
 *                 step if it is still persisting, so that a vote sent before it was durable
 *                 is forgotten (paper §5.2 and figure 2: votedFor is persisted before
 *                 answering).
 *
 * How often each strikes is drawn per seed (struct sim_params; the figure-8 regime of
 * raft_sim.c turns the first three up). A strike is scheduled when the simulator sees its
 * trigger (a status change or a message) and done at the start of a later step, never
 * inside a core call. With a correct core none of this can break an invariant: it only
 * makes the unsafe interleavings frequent enough to catch a broken core end to end.
 */
#include "sim.h"

/* Schedules how for n at delay steps from now, unless st is taken. */
static void schedule(struct sim *s,
                     struct sim_strike *st,
                     struct sim_node *n,
                     uint32_t how,
                     uint64_t delay,
                     bool persisting_only)
{
    if (s->phase != SIM_PHASE_FAULTS || st->node != RAFT_NONE) {
        return;
    }
    st->node = n->id;
    st->life = n->life;
    st->how = how;
    st->persisting_only = persisting_only;
    st->step = s->step + delay;
}

void sim_nemesis_became_leader(struct sim *s, struct sim_node *n)
{
    uint32_t how;

    if (s->strike_leader.node != RAFT_NONE || !sim_rng_chance(&s->rng, s->p.strike_pm)) {
        return;
    }
    how = sim_rng_chance(&s->rng, 500) ? SIM_STRIKE_ISOLATE : SIM_STRIKE_CRASH;
    schedule(s, &s->strike_leader, n, how, sim_rng_range(&s->rng, 1, s->p.strike_delay_max), false);
}

/* The highest index a quorum of leader n's voters hold (the leader counting itself only for
 * what it persisted, as the core does). */
static raft_index quorum_match(struct sim_node *n, const struct raft_status *st)
{
    raft_index m[RAFT_MEMBERS_MAX];
    uint32_t count = st->conf.voters_count;

    for (uint32_t i = 0; i < count; i++) {
        struct raft_progress_info pr;
        raft_index v = raft_progress(n->r, st->conf.voters[i], &pr) == 0 ? pr.match : 0;
        uint32_t k = i;

        for (; k > 0 && m[k - 1] < v; k--) { /* insertion sort, descending */
            m[k] = m[k - 1];
        }
        m[k] = v;
    }
    return count == 0 ? 0 : m[count / 2];
}

/* True when leader n has an entry of an older term on a quorum, but none of its own term:
 * counting replicas would commit that entry (figure 8); the rule forbids it. */
static bool old_entry_on_quorum(struct sim_node *n)
{
    struct raft_status st;
    raft_index mci;
    raft_term t = 0;

    raft_status(n->r, &st);
    if (st.role != RAFT_LEADER) {
        return false;
    }
    mci = quorum_match(n, &st);
    return mci > 0 && raft_log_term(n->r, mci, &t) == 0 && t < st.term;
}

void sim_nemesis_stepped(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    uint32_t how;

    if (m->type != RAFT_MSG_APPEND_RESP || m->reject || s->strike_leader.node != RAFT_NONE ||
        s->p.catchup_strike_pm == 0 || !old_entry_on_quorum(n) ||
        !sim_rng_chance(&s->rng, s->p.catchup_strike_pm)) {
        return;
    }
    how = sim_rng_chance(&s->rng, 700) ? SIM_STRIKE_ISOLATE : SIM_STRIKE_CRASH;
    schedule(s, &s->strike_leader, n, how, 1, false);
}

/* A leader sent entries of its own term: cut it off before they reach a quorum. */
static void append_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    uint32_t how;

    if (m->entries_count == 0 || m->entries[m->entries_count - 1].term != m->term ||
        s->strike_leader.node != RAFT_NONE || s->p.append_strike_pm == 0 ||
        !sim_rng_chance(&s->rng, s->p.append_strike_pm)) {
        return;
    }
    how = sim_rng_chance(&s->rng, 700) ? SIM_STRIKE_ISOLATE : SIM_STRIKE_CRASH;
    schedule(s, &s->strike_leader, n, how, sim_rng_range(&s->rng, 1, 3), false);
}

void sim_nemesis_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    uint32_t how;

    if (m->type == RAFT_MSG_APPEND) {
        append_sent(s, n, m);
        return;
    }
    if (m->type != RAFT_MSG_VOTE_RESP || m->reject || s->strike_vote.node != RAFT_NONE ||
        s->p.vote_strike_pm == 0 || !sim_rng_chance(&s->rng, s->p.vote_strike_pm)) {
        return;
    }
    /* A correct core sends the vote only once it is durable: then the node is persisting
     * only if it has started a later ready meanwhile, and is usually left alone. */
    how = sim_rng_chance(&s->rng, 800) ? SIM_STRIKE_REBOOT : SIM_STRIKE_CRASH;
    schedule(s, &s->strike_vote, n, how, 1, true);
}

static void strike(struct sim *s, struct sim_strike *st)
{
    struct sim_node *n = sim_node_get(s, st->node);

    if (st->node == RAFT_NONE || s->step < st->step) {
        return;
    }
    st->node = RAFT_NONE;
    if (s->phase != SIM_PHASE_FAULTS || !sim_node_is_live(n) || n->life != st->life ||
        (st->persisting_only && !n->persisting)) {
        return;
    }
    if (st->how == SIM_STRIKE_ISOLATE) {
        sim_net_isolate(s, n->id);
        return;
    }
    sim_node_crash(n);
    if (st->how == SIM_STRIKE_REBOOT) {
        sim_node_restart(n);
    }
}

void sim_nemesis_run(struct sim *s)
{
    strike(s, &s->strike_vote);
    strike(s, &s->strike_leader);
}
