/*
 * sim_check.c — the invariants, checked incrementally as the state they watch changes.
 *
 * Every check costs O(1) (amortised) per event, so they can run on every step:
 *   1. election safety     leader_by_term: term -> the one node seen leading it;
 *   2. log matching        logmap: (index, term) -> chain hash of the whole prefix, filled
 *                          by every stored entry on every node;
 *   3. leader completeness marks: term -> highest index committed and applied by a node in
 *                          that term; a new leader's log holds the highest of earlier terms
 *                          (O(terms) per election), and an entry newly committed in a term
 *                          is held by every live leader of a later term (O(nodes));
 *   4. state machine       history: index -> what the first node to apply it applied; every
 *                          later apply and every installed snapshot must agree;
 *   5. commit monotonic    per node and life (sim_node_observe) and on disk (hard state);
 *   6. linearizable reads  read_min: context -> highest acknowledged index at the request;
 *   7. liveness            in raft_sim.c, plus sim_check_acked_committed() here;
 *   8. rules               a leader's commit index moves only onto an entry of its term;
 *                          one vote per term, on the wire and on disk. These watch the rule
 *                          rather than an unsafe state: --end-to-end turns them off.
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_check_init(struct sim_check *c)
{
    memset(c, 0, sizeof(*c));
}

void sim_check_free(struct sim_check *c)
{
    free(c->history);
    free(c->logmap);
    free(c->leader_by_term);
    free(c->marks);
    free(c->read_min);
    free(c->props);
    memset(c, 0, sizeof(*c));
}

/* Grows *array (of elem_size elements, *cap of them) to hold index; new room is zeroed. */
static void *grow(void *array, uint64_t *cap, uint64_t index, size_t elem_size)
{
    uint64_t old = *cap;
    uint64_t n = old == 0 ? 256 : old;
    uint8_t *p;

    if (index < old) {
        return array;
    }
    while (n <= index) {
        n *= 2;
    }
    p = realloc(array, (size_t)n * elem_size);
    LATCH_ASSERT(p != NULL);
    memset(p + (size_t)old * elem_size, 0, (size_t)(n - old) * elem_size);
    *cap = n;
    return p;
}

/* ------------------------------------------------------------------------------------ */
/* 2. Log matching                                                                      */
/* ------------------------------------------------------------------------------------ */

static size_t logmap_slot(raft_index index, raft_term term, size_t cap)
{
    return (size_t)(sim_mix64(index * 0x9e3779b97f4a7c15ull ^ term) & (cap - 1));
}

static void logmap_grow(struct sim_check *c)
{
    struct sim_logkey *old = c->logmap;
    size_t old_cap = c->logmap_cap;

    c->logmap_cap = old_cap == 0 ? 4096 : old_cap * 2;
    c->logmap = calloc(c->logmap_cap, sizeof(*c->logmap));
    LATCH_ASSERT(c->logmap != NULL);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].index != 0) {
            size_t j = logmap_slot(old[i].index, old[i].term, c->logmap_cap);

            while (c->logmap[j].index != 0) {
                j = (j + 1) & (c->logmap_cap - 1);
            }
            c->logmap[j] = old[i];
        }
    }
    free(old);
}

void sim_check_stored(
    struct sim *s, struct sim_node *n, raft_index index, raft_term term, uint64_t chain)
{
    struct sim_check *c = &s->check;
    size_t j;

    if (2 * (c->logmap_count + 1) > c->logmap_cap) {
        logmap_grow(c);
    }
    j = logmap_slot(index, term, c->logmap_cap);
    while (c->logmap[j].index != 0) {
        if (c->logmap[j].index == index && c->logmap[j].term == term) {
            if (c->logmap[j].chain != chain) {
                sim_violation(s, "log matching",
                              "node %llu stored entry %llu of term %llu whose log prefix "
                              "differs from another node's entry %llu of term %llu",
                              (unsigned long long)n->id, (unsigned long long)index,
                              (unsigned long long)term, (unsigned long long)index,
                              (unsigned long long)term);
            }
            return;
        }
        j = (j + 1) & (c->logmap_cap - 1);
    }
    c->logmap[j].index = index;
    c->logmap[j].term = term;
    c->logmap[j].chain = chain;
    c->logmap_count++;
}

/* ------------------------------------------------------------------------------------ */
/* 4. State-machine safety, acknowledgements                                            */
/* ------------------------------------------------------------------------------------ */

static void ack_proposal(struct sim *s, struct sim_node *n, uint64_t id, raft_index index)
{
    struct sim_check *c = &s->check;
    struct sim_proposal *p;

    if (id == 0 || id >= c->props_cap || id >= s->next_proposal) {
        return;
    }
    p = &c->props[id];
    if (p->index == 0) {
        p->index = index;
    }
    if (p->node == n->id && p->life == n->life && !p->acked) {
        p->acked = true;
        s->stats.acked++;
        if (index > c->max_acked_index) {
            c->max_acked_index = index;
        }
    }
}

bool sim_check_applied(struct sim *s,
                       struct sim_node *n,
                       const struct raft_entry *e,
                       uint64_t chain)
{
    struct sim_check *c = &s->check;
    struct sim_gentry *g;
    uint64_t id = 0;
    bool first = false;

    if (e->type == RAFT_ENTRY_NORMAL && e->len >= 8) {
        id = sim_get64(e->data);
    }
    c->history = grow(c->history, &c->history_cap, e->index, sizeof(*c->history));
    g = &c->history[e->index];
    if (!g->set) {
        g->set = true;
        g->term = e->term;
        g->chain = chain;
        g->proposal = id;
        g->type = e->type;
        first = true;
        if (e->index > c->history_max) {
            c->history_max = e->index;
        }
    } else if (g->term != e->term || g->chain != chain) {
        sim_violation(s, "state-machine safety",
                      "node %llu applied index %llu term %llu (chain %016llx) but it was "
                      "applied elsewhere with term %llu (chain %016llx)",
                      (unsigned long long)n->id, (unsigned long long)e->index,
                      (unsigned long long)e->term, (unsigned long long)chain,
                      (unsigned long long)g->term, (unsigned long long)g->chain);
    }
    c->marks = grow(c->marks, &c->marks_cap, n->seen_term, sizeof(*c->marks));
    if (e->index > c->marks[n->seen_term].applied) {
        c->marks[n->seen_term].applied = e->index;
        c->marks[n->seen_term].applied_term = e->term;
    }
    ack_proposal(s, n, id, e->index);
    return first;
}

void sim_check_installed(struct sim *s,
                         struct sim_node *n,
                         const struct raft_snapshot *snap,
                         const struct sim_app *app)
{
    struct sim_check *c = &s->check;
    raft_index i = snap->meta.index;

    if (i >= c->history_cap || !c->history[i].set) {
        sim_violation(s, "state-machine safety",
                      "node %llu installed a snapshot at %llu that no node applied",
                      (unsigned long long)n->id, (unsigned long long)i);
        return;
    }
    if (c->history[i].term != snap->meta.term || c->history[i].chain != app->chain) {
        sim_violation(s, "state-machine safety",
                      "node %llu installed snapshot %llu/%llu (chain %016llx) but index %llu "
                      "was applied with term %llu (chain %016llx)",
                      (unsigned long long)n->id, (unsigned long long)i,
                      (unsigned long long)snap->meta.term, (unsigned long long)app->chain,
                      (unsigned long long)i, (unsigned long long)c->history[i].term,
                      (unsigned long long)c->history[i].chain);
    }
}

/* ------------------------------------------------------------------------------------ */
/* 1. Election safety, 3. leader completeness                                           */
/* ------------------------------------------------------------------------------------ */

void sim_check_leader(struct sim *s, struct sim_node *n, raft_term term)
{
    struct sim_check *c = &s->check;

    c->leader_by_term = grow(c->leader_by_term, &c->leader_cap, term, sizeof(raft_id));
    if (c->leader_by_term[term] == RAFT_NONE) {
        c->leader_by_term[term] = n->id;
    } else if (c->leader_by_term[term] != n->id) {
        sim_violation(s, "election safety", "nodes %llu and %llu are both leaders of term %llu",
                      (unsigned long long)c->leader_by_term[term], (unsigned long long)n->id,
                      (unsigned long long)term);
    }
}

/*
 * Paper §5.4.2 and figure 8: a leader commits by counting replicas only entries of its own
 * term; older entries become committed only underneath one of those. Counting replicas of
 * an older entry is unsafe: a later leader may still overwrite it. The end-to-end checks (3,
 * 4) see that only if such a leader then wins, which takes a rare interleaving (figure 8);
 * this check sees the unsafe commit itself, from the outside (status and log term).
 */
void sim_check_leader_commit(struct sim *s, struct sim_node *n, raft_term term, raft_index commit)
{
    raft_term t = 0;

    if (raft_log_term(n->r, commit, &t) == 0 && t != term) {
        sim_violation(s, "leader commit rule",
                      "leader %llu of term %llu advanced its commit to %llu, an entry of term "
                      "%llu",
                      (unsigned long long)n->id, (unsigned long long)term,
                      (unsigned long long)commit, (unsigned long long)t);
    }
}

/* Leader completeness as a state invariant: an entry committed in term `term` is in the log
 * of every leader of a later term. A leader of a later term that exists while an older term
 * still commits (elected with votes that were later forgotten, say) must hold the entry. */
static void leaders_have(struct sim *s, raft_term term, raft_index i, raft_term t)
{
    for (raft_id id = 1; id < s->next_id; id++) {
        struct sim_node *l = s->nodes[id];
        raft_term have = 0;
        int rc;

        if (!sim_node_is_live(l) || !l->seen_leader || l->seen_term <= term) {
            continue;
        }
        rc = raft_log_term(l->r, i, &have);
        if (rc != LATCH_ECOMPACTED && (rc != 0 || have != t)) {
            sim_violation(s, "leader completeness",
                          "node %llu leads term %llu but its log has %s at index %llu (term "
                          "%llu), committed since in term %llu",
                          (unsigned long long)id, (unsigned long long)l->seen_term,
                          rc != 0 ? latch_error_name(rc) : "another term", (unsigned long long)i,
                          (unsigned long long)t, (unsigned long long)term);
        }
    }
}

void sim_check_commit(struct sim *s, struct sim_node *n, raft_term term, raft_index commit)
{
    struct sim_check *c = &s->check;
    raft_term t = 0;

    c->marks = grow(c->marks, &c->marks_cap, term, sizeof(*c->marks));
    if (commit > c->marks[term].commit && raft_log_term(n->r, commit, &t) == 0) {
        c->marks[term].commit = commit;
        c->marks[term].commit_term = t;
        leaders_have(s, term, commit, t);
    }
}

/* The new leader's log must hold entry i with term t (unless compacted: then its snapshot
 * covers i, and installed snapshots are checked by 4). */
static void leader_has(
    struct sim *s, struct sim_node *n, raft_term term, raft_index i, raft_term t, const char *what)
{
    raft_term have = 0;
    int rc;

    if (i == 0) {
        return;
    }
    rc = raft_log_term(n->r, i, &have);
    if (rc == LATCH_ECOMPACTED) {
        return;
    }
    if (rc != 0 || have != t) {
        sim_violation(s, "leader completeness",
                      "node %llu became leader of term %llu but its log has %s at %s index "
                      "%llu (term %llu)",
                      (unsigned long long)n->id, (unsigned long long)term,
                      rc != 0 ? latch_error_name(rc) : "another term", what, (unsigned long long)i,
                      (unsigned long long)t);
    }
}

/*
 * Paper §5.4: the leader of term holds every entry committed in an earlier term. Only earlier:
 * a candidate whose votes were delayed can win term 9 after term 10 committed more, and it
 * need not hold that (it cannot commit anything in term 9 any more).
 */
void sim_check_became_leader(struct sim *s, struct sim_node *n, raft_term term)
{
    struct sim_check *c = &s->check;
    struct sim_term_marks best;

    memset(&best, 0, sizeof(best));
    for (raft_term t = 1; t < term && t < c->marks_cap; t++) {
        const struct sim_term_marks *m = &c->marks[t];

        if (m->commit > best.commit) {
            best.commit = m->commit;
            best.commit_term = m->commit_term;
        }
        if (m->applied > best.applied) {
            best.applied = m->applied;
            best.applied_term = m->applied_term;
        }
    }
    leader_has(s, n, term, best.commit, best.commit_term, "committed");
    leader_has(s, n, term, best.applied, best.applied_term, "applied");
}

/* Paper §5.2: each server votes for at most one candidate in a term. Watched on the wire,
 * so a vote that was sent but never made durable, then forgotten by a crash, shows up when
 * the node votes again in the same term. Pre-votes promise nothing and are not counted. */
void sim_check_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    raft_id *v;

    if (m->type != RAFT_MSG_VOTE_RESP || m->reject || s->opt->end_to_end) {
        return;
    }
    n->vote_by_term = grow(n->vote_by_term, &n->vote_cap, m->term, sizeof(raft_id));
    v = &n->vote_by_term[m->term];
    if (*v == RAFT_NONE) {
        *v = m->to;
    } else if (*v != m->to) {
        sim_violation(s, "one vote per term",
                      "node %llu granted votes to %llu and %llu in term %llu",
                      (unsigned long long)n->id, (unsigned long long)*v, (unsigned long long)m->to,
                      (unsigned long long)m->term);
    }
}

/* ------------------------------------------------------------------------------------ */
/* 5. Commit on disk                                                                    */
/* ------------------------------------------------------------------------------------ */

void sim_check_hard_state(struct sim *s,
                          struct sim_node *n,
                          const struct raft_hard_state *old,
                          const struct raft_hard_state *hs)
{
    if (hs->term < old->term) {
        sim_violation(s, "term regressed", "node %llu persisted term %llu over %llu",
                      (unsigned long long)n->id, (unsigned long long)hs->term,
                      (unsigned long long)old->term);
    }
    if (hs->commit < old->commit) {
        sim_violation(s, "commit regressed", "node %llu persisted commit %llu over %llu",
                      (unsigned long long)n->id, (unsigned long long)hs->commit,
                      (unsigned long long)old->commit);
    }
    if (hs->term == old->term && old->vote != RAFT_NONE && hs->vote != old->vote &&
        !s->opt->end_to_end) {
        sim_violation(s, "one vote per term",
                      "node %llu changed its vote in term %llu: %llu -> %llu",
                      (unsigned long long)n->id, (unsigned long long)hs->term,
                      (unsigned long long)old->vote, (unsigned long long)hs->vote);
    }
}

/* ------------------------------------------------------------------------------------ */
/* 6. ReadIndex linearizability, proposals                                              */
/* ------------------------------------------------------------------------------------ */

uint64_t sim_check_new_read(struct sim *s)
{
    struct sim_check *c = &s->check;
    uint64_t ctx = ++s->next_read;

    c->read_min = grow(c->read_min, &c->read_cap, ctx, sizeof(raft_index));
    c->read_min[ctx] = c->max_acked_index;
    return ctx;
}

void sim_check_read_state(struct sim *s, struct sim_node *n, const struct raft_read_state *rs)
{
    struct sim_check *c = &s->check;

    if (rs->context == 0 || rs->context > s->next_read) {
        sim_violation(s, "read index", "node %llu got a read state for unknown context %llu",
                      (unsigned long long)n->id, (unsigned long long)rs->context);
        return;
    }
    s->stats.reads_checked++;
    if (rs->index < c->read_min[rs->context]) {
        sim_violation(s, "linearizable read",
                      "node %llu: read %llu got index %llu, but index %llu was acknowledged "
                      "before the read started",
                      (unsigned long long)n->id, (unsigned long long)rs->context,
                      (unsigned long long)rs->index, (unsigned long long)c->read_min[rs->context]);
    }
}

uint64_t sim_check_new_proposal(struct sim *s, raft_id node, uint32_t life)
{
    struct sim_check *c = &s->check;
    uint64_t id = s->next_proposal++;

    c->props = grow(c->props, &c->props_cap, id, sizeof(*c->props));
    c->props[id].node = node;
    c->props[id].life = life;
    return id;
}

const struct sim_proposal *sim_check_proposal(const struct sim *s, uint64_t id)
{
    return id < s->check.props_cap ? &s->check.props[id] : NULL;
}

void sim_check_acked_committed(struct sim *s)
{
    struct sim_check *c = &s->check;

    for (uint64_t id = 1; id < s->next_proposal && id < c->props_cap; id++) {
        const struct sim_proposal *p = &c->props[id];

        if (!p->acked) {
            continue;
        }
        if (p->index == 0 || p->index > c->history_max || c->history[p->index].proposal != id) {
            sim_violation(s, "lost acknowledged write",
                          "proposal %llu was acknowledged but is not in the committed history",
                          (unsigned long long)id);
            return;
        }
    }
}
