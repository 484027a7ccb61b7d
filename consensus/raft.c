/*
 * raft.c — the Raft state machine: roles, elections, replication, commitment, ReadIndex,
 * leadership transfer, membership, and the ready/advance cycle. See raft.h for the
 * contract, raft_int.h for memory lifetimes, and docs/decisions/raft-membership.md for
 * why membership changes are one at a time and take effect on append.
 *
 * Role transitions (the function behind each arrow):
 *
 *   FOLLOWER --tick_election/hup--> PRE_CANDIDATE --quorum of pre-votes--> CANDIDATE
 *   FOLLOWER --hup without pre_vote, or TIMEOUT_NOW--> CANDIDATE --quorum--> LEADER
 *   any --higher term / current leader heard (become_follower)--> FOLLOWER
 *   LEADER --CheckQuorum fails, or removed and the removal committed--> FOLLOWER
 *
 * Numbered invariants, asserted where they can break:
 *   R1 the term never decreases; the vote is cleared only when the term rises
 *   R2 at most one vote per term (persisted before the response leaves, thesis §3.8)
 *   R3 commit never decreases and never exceeds the last index
 *   R4 a leader commits by counting only entries of its own term (paper §5.4.2)
 *   R5 a leader never truncates its own log (paper figure 3, "Leader Append-Only")
 */
#include <string.h>

#include "raft_int.h"

#define PROGRESS_SLOTS (2 * RAFT_MEMBERS_MAX)

enum campaign_type {
    CAMPAIGN_PRE_ELECTION,
    CAMPAIGN_ELECTION,
    CAMPAIGN_TRANSFER,
};

/* A ReadIndex request (thesis §6.4). seq 0: waiting for the leader's first commit. */
struct read_req {
    uint64_t seq;
    uint64_t context;
    raft_id from;
    raft_index index;
};

/* A configuration that took effect with the entry at index (use-on-append). */
struct conf_hist {
    raft_index index;
    struct raft_conf_state conf;
};

struct msg_vec {
    struct raft_msg *v;
    size_t count;
    size_t cap;
};

struct raft {
    struct raft_config cfg;
    const struct raft_heap *heap;
    raft_id id;
    raft_term term;
    raft_id vote;
    raft_id lead;
    enum raft_role role;
    uint32_t bugs;

    struct raft_arena arena;
    struct raft_log log;

    /* Membership: base (as of base_index) plus changes still in the uncommitted log. */
    struct raft_conf_state conf; /* in effect: the latest in the log */
    struct raft_conf_state conf_base;
    struct conf_hist *hist;
    size_t hist_count;
    size_t hist_cap;
    struct raft_conf_state conf_applied; /* as of log.applied, for the caller to persist */

    struct raft_progress prs[PROGRESS_SLOTS];
    raft_id transferee;
    uint64_t uncommitted_bytes;

    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t rng;
    bool bcast_pending; /* leader owes every follower an append (commit/new entries) */
    bool in_ready;

    struct msg_vec msgs;
    struct msg_vec msgs_after;
    struct raft_read_state *rs;
    size_t rs_count;
    size_t rs_cap;
    struct read_req *reads;
    size_t reads_head;
    size_t reads_count; /* live requests are reads[reads_head .. reads_count) */
    size_t reads_cap;
    uint64_t read_seq;

    struct raft_hard_state prev_hs;
    struct raft_soft_state prev_ss;
};

/* ---- small helpers --------------------------------------------------------------------- */

static void trace(struct raft *r, uint32_t kind, uint64_t a, uint64_t b)
{
    struct raft_trace ev;

    if (r->cfg.tracer == NULL || r->cfg.tracer->trace == NULL) {
        return;
    }
    ev.id = r->id;
    ev.term = r->term;
    ev.kind = kind;
    ev.a = a;
    ev.b = b;
    r->cfg.tracer->trace(r->cfg.tracer->data, &ev);
}

static uint64_t rng_next(struct raft *r)
{
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Paper §5.2: randomized election timeouts in [election_tick, 2 * election_tick). */
static void reset_randomized_timeout(struct raft *r)
{
    r->randomized_timeout = r->cfg.election_tick + (uint32_t)(rng_next(r) % r->cfg.election_tick);
}

/* Growth in the middle of a protocol step: failure is fatal (raft_int.h). */
static void *grow(const struct raft_heap *heap, void *arr, size_t *cap, size_t need, size_t elem)
{
    int rv = raft__array_grow(heap, &arr, cap, need, elem);

    LATCH_ASSERTF(rv == 0, "out of memory growing an array to %zu elements", need);
    return arr;
}

static struct raft_progress *progress_find(struct raft *r, raft_id id)
{
    size_t i;

    if (id == RAFT_NONE) {
        return NULL;
    }
    for (i = 0; i < PROGRESS_SLOTS; i++) {
        if (r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

static bool is_voter(const struct raft *r, raft_id id)
{
    return raft_conf_state_is_voter(&r->conf, id);
}

static uint32_t quorum(const struct raft *r)
{
    return r->conf.voters_count / 2 + 1;
}

/* A node may campaign: it votes, and no snapshot waits to be persisted. */
static bool promotable(const struct raft *r)
{
    return is_voter(r, r->id) && !r->log.has_snap;
}

static bool committed_in_term(const struct raft *r)
{
    return raft__log_match_term(&r->log, r->log.committed, r->term);
}

/* ---- messages -------------------------------------------------------------------------- */

static bool sent_before_persist(const struct raft *r, uint32_t type)
{
    switch (type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
    case RAFT_MSG_TIMEOUT_NOW:
        /* The leader's term is normally already durable (it persisted it as a candidate),
         * and its own log counts toward commit only once persisted (thesis §10.2.1). But a
         * single voter wins at once, in the ready that also carries its new term: its
         * appends must wait for that term to be on disk (paper figure 2: currentTerm is
         * persisted before answering or sending RPCs). Otherwise a crash lets it lead the
         * same term again with different entries at the same (index, term) (found by the
         * log matching check of raft_sim --nodes 1 --seed 2574). */
        return r->prev_hs.term == r->term && r->prev_hs.vote == r->vote;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        return (r->bugs & RAFT_BUG_VOTE_BEFORE_PERSIST) != 0;
    default:
        return false;
    }
}

/* Queues m from this node. Terms: votes and their responses carry the term set by the
 * caller; forwarded requests carry 0 (no term); everything else the current term. */
static void send(struct raft *r, struct raft_msg m)
{
    struct msg_vec *q;

    m.from = r->id;
    LATCH_ASSERT(m.to != RAFT_NONE && m.to != r->id);
    switch (m.type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE:
    case RAFT_MSG_PREVOTE_RESP:
        LATCH_ASSERT(m.term != 0);
        break;
    case RAFT_MSG_PROPOSE:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_TRANSFER_LEADER:
        m.term = 0;
        break;
    default:
        m.term = r->term;
    }
    q = sent_before_persist(r, m.type) ? &r->msgs : &r->msgs_after;
    q->v = grow(r->heap, q->v, &q->cap, q->count + 1, sizeof(*q->v));
    q->v[q->count++] = m;
}

static struct raft_msg msg_to(uint32_t type, raft_id to)
{
    struct raft_msg m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.to = to;
    return m;
}

/* ---- membership (use-on-append, thesis §4.1) ------------------------------------------ */

static void progress_init_slot(struct raft *r, struct raft_progress *pr, raft_id id)
{
    pr->id = id;
    raft__progress_reset(pr, raft__log_last_index(&r->log));
}

static struct raft_progress *progress_find_free(struct raft *r)
{
    size_t i;

    for (i = 0; i < PROGRESS_SLOTS; i++) {
        if (r->prs[i].id == RAFT_NONE) {
            return &r->prs[i];
        }
    }
    LATCH_UNREACHABLE(); /* voters and learners each fit RAFT_MEMBERS_MAX */
}

/* Makes the progress slots match r->conf: new members start probing at the end. */
static void tracker_sync(struct raft *r)
{
    size_t i;
    uint32_t k;

    for (i = 0; i < PROGRESS_SLOTS; i++) {
        struct raft_progress *pr = &r->prs[i];

        if (pr->id != RAFT_NONE && !is_voter(r, pr->id) &&
            !raft_conf_state_is_learner(&r->conf, pr->id)) {
            pr->id = RAFT_NONE;
        }
    }
    for (k = 0; k < r->conf.voters_count + r->conf.learners_count; k++) {
        bool voter = k < r->conf.voters_count;
        raft_id id = voter ? r->conf.voters[k] : r->conf.learners[k - r->conf.voters_count];
        struct raft_progress *pr = progress_find(r, id);

        if (pr == NULL) {
            pr = progress_find_free(r);
            progress_init_slot(r, pr, id);
            pr->send_pending = r->role == RAFT_LEADER;
        }
        pr->learner = !voter;
    }
}

static void become_follower(struct raft *r, raft_term term, raft_id lead);
static bool maybe_commit(struct raft *r);
static void reads_advance(struct raft *r);

/* The configuration in effect changed: update the tracker and what depends on it. */
static void conf_changed(struct raft *r)
{
    tracker_sync(r);
    if (r->role != RAFT_LEADER) {
        return;
    }
    if (r->transferee != RAFT_NONE && !is_voter(r, r->transferee)) {
        trace(r, RAFT_TRACE_TRANSFER_ABORT, r->transferee, 0);
        r->transferee = RAFT_NONE;
    }
    if (maybe_commit(r)) {
        r->bcast_pending = true;
    }
    reads_advance(r);
}

static const struct raft_conf_state *conf_latest(const struct raft *r)
{
    return r->hist_count > 0 ? &r->hist[r->hist_count - 1].conf : &r->conf_base;
}

/* Entries from `first` on were replaced: changes they carried are undone. */
static void conf_truncate(struct raft *r, raft_index first)
{
    size_t n = r->hist_count;

    while (r->hist_count > 0 && r->hist[r->hist_count - 1].index >= first) {
        r->hist_count--;
    }
    if (n != r->hist_count) {
        r->conf = *conf_latest(r);
        conf_changed(r);
    }
}

/* Makes room for the changes in ents before the log changes, so that appending them
 * cannot fail halfway. Errors: LATCH_ENOMEM. */
static int hist_reserve(struct raft *r, const struct raft_entry *ents, size_t n)
{
    size_t need = r->hist_count;
    void *hist = r->hist;
    int rv;

    for (size_t k = 0; k < n; k++) {
        need += ents[k].type == RAFT_ENTRY_CONF;
    }
    rv = raft__array_grow(r->heap, &hist, &r->hist_cap, need, sizeof(*r->hist));
    r->hist = hist;
    return rv;
}

/* A conf entry entered the log: it takes effect now. A change that does not fit is a no-op
 * everywhere (every node decodes the same bytes). */
static void conf_appended(struct raft *r, const struct raft_entry *e)
{
    struct raft_conf_state next = *conf_latest(r);
    struct raft_conf_change cc;

    if (raft_conf_change_decode(e->data, e->len, &cc) == 0) {
        (void)raft_conf_state_apply(&next, &cc);
    }
    LATCH_ASSERT(r->hist_count == 0 || r->hist[r->hist_count - 1].index < e->index);
    LATCH_ASSERT(r->hist_count < r->hist_cap); /* reserved by hist_reserve */
    r->hist[r->hist_count].index = e->index;
    r->hist[r->hist_count].conf = next;
    r->hist_count++;
    r->conf = next;
    conf_changed(r);
}

/* Changes at or below commit can never be undone: fold them into the base. */
static void conf_fold_committed(struct raft *r)
{
    size_t k = 0;

    while (k < r->hist_count && r->hist[k].index <= r->log.committed) {
        r->conf_base = r->hist[k].conf;
        k++;
    }
    if (k > 0) {
        memmove(r->hist, r->hist + k, (r->hist_count - k) * sizeof(*r->hist));
        r->hist_count -= k;
    }
}

/* Appends to the log, keeping the membership history in step (truncation undoes). */
static int log_append(struct raft *r, const struct raft_entry *ents, size_t n)
{
    size_t k;
    int rv;

    if (n == 0) {
        return 0;
    }
    rv = hist_reserve(r, ents, n);
    if (rv != 0) {
        return rv;
    }
    rv = raft__log_append(&r->log, ents, n);
    if (rv != 0) {
        return rv;
    }
    conf_truncate(r, ents[0].index);
    for (k = 0; k < n; k++) {
        if (ents[k].type == RAFT_ENTRY_CONF) {
            conf_appended(r, &ents[k]);
        }
    }
    return 0;
}

/* ---- role changes ---------------------------------------------------------------------- */

static void reads_clear(struct raft *r)
{
    r->reads_head = 0;
    r->reads_count = 0;
}

static void reset(struct raft *r, raft_term term)
{
    size_t i;

    LATCH_ASSERTF(term >= r->term, "term %llu -> %llu", (unsigned long long)r->term,
                  (unsigned long long)term); /* R1 */
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->lead = RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_randomized_timeout(r);
    r->transferee = RAFT_NONE;
    r->uncommitted_bytes = 0;
    r->bcast_pending = false;
    reads_clear(r);
    for (i = 0; i < PROGRESS_SLOTS; i++) {
        if (r->prs[i].id != RAFT_NONE) {
            raft__progress_reset(&r->prs[i], raft__log_last_index(&r->log));
        }
    }
}

static void become_follower(struct raft *r, raft_term term, raft_id lead)
{
    reset(r, term);
    r->lead = lead;
    r->role = RAFT_FOLLOWER;
    trace(r, RAFT_TRACE_BECOME_FOLLOWER, lead, 0);
}

static void become_pre_candidate(struct raft *r)
{
    LATCH_ASSERT(r->role != RAFT_LEADER);
    /* PreVote (thesis §9.6) changes neither term nor vote: a partitioned node that keeps
     * failing pre-elections does not inflate its term and disrupt the cluster on return. */
    r->lead = RAFT_NONE;
    r->role = RAFT_PRE_CANDIDATE;
    r->election_elapsed = 0;
    reset_randomized_timeout(r);
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        r->prs[i].vote = -1;
    }
    trace(r, RAFT_TRACE_BECOME_PRE_CANDIDATE, 0, 0);
}

static void become_candidate(struct raft *r)
{
    LATCH_ASSERT(r->role != RAFT_LEADER);
    reset(r, r->term + 1);
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
    trace(r, RAFT_TRACE_BECOME_CANDIDATE, 0, 0);
}

static void become_leader(struct raft *r)
{
    struct raft_progress *self;
    struct raft_entry noop;
    int rv;

    LATCH_ASSERT(r->role == RAFT_CANDIDATE);
    reset(r, r->term);
    r->lead = r->id;
    r->role = RAFT_LEADER;
    self = progress_find(r, r->id);
    LATCH_ASSERT(self != NULL);
    /* The leader counts only what it has persisted (thesis §10.2.1). */
    self->match = raft__log_stable_last(&r->log);
    raft__progress_become_replicate(self);
    self->recent_active = true;
    trace(r, RAFT_TRACE_BECOME_LEADER, 0, 0);
    /* An empty entry of the new term lets the leader commit everything before it (paper
     * §5.4.2, thesis §6.4: also needed before serving ReadIndex). */
    memset(&noop, 0, sizeof(noop));
    noop.term = r->term;
    noop.index = raft__log_last_index(&r->log) + 1;
    rv = log_append(r, &noop, 1);
    LATCH_ASSERTF(rv == 0, "appending the leader's empty entry: %s", latch_error_name(rv));
    r->bcast_pending = true;
}

/* ---- elections ------------------------------------------------------------------------- */

/* Records id's answer and returns 1 (won), -1 (lost) or 0 (pending). */
static int poll(struct raft *r, raft_id id, bool granted)
{
    uint32_t yes = 0;
    uint32_t no = 0;
    uint32_t k;
    struct raft_progress *pr = progress_find(r, id);

    if (pr != NULL && pr->vote < 0) {
        pr->vote = granted ? 1 : 0;
    }
    for (k = 0; k < r->conf.voters_count; k++) {
        pr = progress_find(r, r->conf.voters[k]);
        LATCH_ASSERT(pr != NULL);
        yes += pr->vote == 1;
        no += pr->vote == 0;
    }
    if (yes >= quorum(r)) {
        return 1;
    }
    return no > r->conf.voters_count - quorum(r) ? -1 : 0;
}

static void campaign(struct raft *r, enum campaign_type type)
{
    raft_term vote_term;
    uint32_t k;

    if (type == CAMPAIGN_PRE_ELECTION) {
        become_pre_candidate(r);
        vote_term = r->term + 1;
    } else {
        become_candidate(r);
        vote_term = r->term;
    }
    if (poll(r, r->id, true) == 1) {
        /* A single-voter cluster: won without asking anyone. */
        if (type == CAMPAIGN_PRE_ELECTION) {
            campaign(r, CAMPAIGN_ELECTION);
        } else {
            become_leader(r);
        }
        return;
    }
    for (k = 0; k < r->conf.voters_count; k++) {
        raft_id to = r->conf.voters[k];
        struct raft_msg m;

        if (to == r->id) {
            continue;
        }
        m = msg_to(type == CAMPAIGN_PRE_ELECTION ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, to);
        m.term = vote_term;
        m.index = raft__log_last_index(&r->log);
        m.log_term = raft__log_last_term(&r->log);
        m.context = type == CAMPAIGN_TRANSFER ? RAFT_CONTEXT_TRANSFER : 0;
        send(r, m);
    }
}

static void hup(struct raft *r, enum campaign_type type)
{
    if (r->role == RAFT_LEADER || !promotable(r)) {
        return;
    }
    if (type == CAMPAIGN_ELECTION && r->cfg.pre_vote) {
        type = CAMPAIGN_PRE_ELECTION;
    }
    campaign(r, type);
}

/* Paper §5.2 and §5.4.1: one vote per term, only for a candidate whose log is at least
 * as up to date. PreVote asks "would you vote for me in term + 1?" without changing
 * anything (thesis §9.6). */
static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                    (pre && m->term > r->term);
    bool log_ok = raft__log_is_up_to_date(&r->log, m->index, m->log_term) ||
                  (r->bugs & RAFT_BUG_VOTE_IGNORES_LOG) != 0;
    struct raft_msg resp = msg_to(pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);

    if (can_vote && log_ok) {
        resp.term = m->term; /* for PreVote: the future term asked about */
        if (!pre) {
            LATCH_ASSERT(m->term == r->term);
            r->election_elapsed = 0;
            r->vote = m->from; /* R2: persisted by the ready before resp leaves */
        }
        trace(r, RAFT_TRACE_VOTE_GRANTED, m->from, 0);
    } else {
        resp.term = r->term;
        resp.reject = true;
        trace(r, RAFT_TRACE_VOTE_REJECTED, m->from, 0);
    }
    send(r, resp);
}

/* ---- replication: the leader's side ---------------------------------------------------- */

static bool send_snapshot(struct raft *r, struct raft_progress *pr)
{
    struct raft_snapshot snap;
    struct raft_msg m;

    if (!pr->recent_active) {
        return false; /* don't stream a snapshot at a node that may be down */
    }
    if (r->cfg.storage->snapshot(r->cfg.storage->data, &snap) != 0) {
        return false; /* being made: the next heartbeat response retries */
    }
    LATCH_ASSERTF(snap.meta.index > 0, "entries before %llu compacted but no snapshot",
                  (unsigned long long)raft__log_first_index(&r->log));
    m = msg_to(RAFT_MSG_SNAPSHOT, pr->id);
    m.snapshot = snap;
    send(r, m);
    raft__progress_become_snapshot(pr, snap.meta.index);
    trace(r, RAFT_TRACE_SNAPSHOT_SENT, pr->id, snap.meta.index);
    return true;
}

/*
 * Sends pr the entries from pr->next (up to max_msg_bytes), or the snapshot when they are
 * compacted (thesis §5.3). An empty append is sent only when send_if_empty (to carry the
 * commit index). Returns true when a message was sent.
 */
static bool send_append(struct raft *r, struct raft_progress *pr, bool send_if_empty)
{
    struct raft_entry *ents = NULL;
    size_t n = 0;
    raft_term prev_term = 0;
    raft_index prev = pr->next - 1;
    uint64_t bytes = 0;
    struct raft_msg m;
    int rv;

    if (raft__progress_is_paused(pr)) {
        return false;
    }
    rv = raft__log_term(&r->log, prev, &prev_term);
    if (rv == 0) {
        rv = raft__log_entries(&r->log, pr->next, raft__log_last_index(&r->log) + 1,
                               r->cfg.max_msg_bytes, &ents, &n);
    }
    if (rv == LATCH_ECOMPACTED) {
        return send_snapshot(r, pr);
    }
    LATCH_ASSERTF(rv == 0, "reading entries from %llu for %llu: %s", (unsigned long long)pr->next,
                  (unsigned long long)pr->id, latch_error_name(rv));
    if (n == 0 && !send_if_empty) {
        return false;
    }
    m = msg_to(RAFT_MSG_APPEND, pr->id);
    m.index = prev;
    m.log_term = prev_term;
    m.entries = ents;
    m.entries_count = (uint32_t)n;
    m.commit = r->log.committed;
    for (size_t k = 0; k < n; k++) {
        bytes += ents[k].len;
    }
    raft__progress_sent_entries(pr, n > 0 ? ents[n - 1].index : prev, bytes);
    send(r, m);
    return true;
}

static void send_heartbeat(struct raft *r, struct raft_progress *pr)
{
    struct raft_msg m = msg_to(RAFT_MSG_HEARTBEAT, pr->id);

    /* Never ahead of what the follower is known to hold: it may not have the entries. */
    m.commit = pr->match < r->log.committed ? pr->match : r->log.committed;
    m.context = r->read_seq;
    send(r, m);
}

static void bcast_heartbeat(struct raft *r)
{
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        if (r->prs[i].id != RAFT_NONE && r->prs[i].id != r->id) {
            send_heartbeat(r, &r->prs[i]);
        }
    }
}

/* Sends what each follower is owed, as many pipelined appends as flow control allows
 * (thesis §10.2.2). Proposals between two readies are batched into one append this way. */
static void flush(struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        r->bcast_pending = false;
        return;
    }
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        struct raft_progress *pr = &r->prs[i];

        if (pr->id == RAFT_NONE || pr->id == r->id || !(r->bcast_pending || pr->send_pending)) {
            continue;
        }
        if (send_append(r, pr, r->bcast_pending)) {
            while (pr->state == RAFT_PROGRESS_REPLICATE && send_append(r, pr, false)) {
            }
        }
        pr->send_pending = false;
    }
    r->bcast_pending = false;
}

/* Paper §5.3/§5.4.2: the highest index held by a quorum of voters commits, if it is of the
 * leader's own term (R4). Returns true when commit moved. */
static bool maybe_commit(struct raft *r)
{
    raft_index m[RAFT_MEMBERS_MAX];
    uint32_t n = r->conf.voters_count;
    raft_index mci;
    raft_term t = 0;

    if (n == 0) {
        return false;
    }
    for (uint32_t k = 0; k < n; k++) {
        struct raft_progress *pr = progress_find(r, r->conf.voters[k]);

        LATCH_ASSERT(pr != NULL);
        m[k] = pr->match;
    }
    for (uint32_t a = 1; a < n; a++) { /* insertion sort, descending; n <= 16 */
        raft_index v = m[a];
        uint32_t b = a;

        for (; b > 0 && m[b - 1] < v; b--) {
            m[b] = m[b - 1];
        }
        m[b] = v;
    }
    mci = m[quorum(r) - 1];
    if (mci <= r->log.committed || raft__log_term(&r->log, mci, &t) != 0) {
        return false;
    }
    if (t != r->term && (r->bugs & RAFT_BUG_COMMIT_OLD_TERM) == 0) {
        return false; /* figure 8: an older term's entry commits only under a newer one */
    }
    raft__log_commit_to(&r->log, mci);
    conf_fold_committed(r);
    return true;
}

/* The leader's removal is committed: it steps down (thesis §4.2.2). */
static void maybe_step_down_removed(struct raft *r)
{
    if (r->role == RAFT_LEADER && !is_voter(r, r->id) && r->hist_count == 0) {
        become_follower(r, r->term, RAFT_NONE);
    }
}

static void leader_committed(struct raft *r)
{
    r->bcast_pending = true;
    reads_advance(r);
    maybe_step_down_removed(r);
}

static void send_timeout_now(struct raft *r, raft_id to)
{
    send(r, msg_to(RAFT_MSG_TIMEOUT_NOW, to));
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = progress_find(r, m->from);

    if (pr == NULL) {
        return;
    }
    pr->recent_active = true;
    if (m->reject) {
        raft_index hint = m->reject_hint;

        if (m->log_term > 0) {
            hint = raft__log_find_conflict_by_term(&r->log, hint, m->log_term);
        }
        if (raft__progress_maybe_decr_to(pr, m->index, hint)) {
            if (pr->state == RAFT_PROGRESS_REPLICATE) {
                raft__progress_become_probe(pr);
            }
            pr->send_pending = true;
        }
        return;
    }
    if (!raft__progress_maybe_update(pr, m->index)) {
        return;
    }
    if (pr->state == RAFT_PROGRESS_PROBE) {
        raft__progress_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        if (pr->match + 1 >= raft__log_first_index(&r->log)) {
            raft__progress_become_probe(pr);
            raft__progress_become_replicate(pr);
        }
    } else {
        raft__inflights_free_le(&pr->inflights, m->index);
    }
    pr->send_pending = true;
    if (maybe_commit(r)) {
        leader_committed(r);
    }
    if (m->from == r->transferee && pr->match == raft__log_last_index(&r->log)) {
        send_timeout_now(r, m->from);
    }
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *pr = progress_find(r, m->from);

    if (pr == NULL) {
        return;
    }
    pr->recent_active = true;
    pr->probe_sent = false;
    if (pr->state == RAFT_PROGRESS_REPLICATE && raft__inflights_full(&pr->inflights)) {
        raft__inflights_free_first(&pr->inflights);
    }
    if (pr->match < raft__log_last_index(&r->log)) { /* (a SNAPSHOT peer stays paused) */
        pr->send_pending = true;
    }
    if (pr->state != RAFT_PROGRESS_SNAPSHOT && pr->match < raft__log_last_index(&r->log) &&
        pr->next > raft__log_last_index(&r->log)) {
        /* Paper §5.3: the leader retries AppendEntries until the follower's log matches.
         * Every entry past match counts as sent (pipelined, or one probe), but appends get
         * lost; an empty append at next - 1 is rejected by a follower that lacks those
         * entries and sends the leader back to probing from where they agree. Without it a
         * lost append (or the first probe of a new learner) is never resent once no new
         * entries arrive (found by the liveness check of raft_sim --seed 839). */
        send_append(r, pr, true);
    }
    if (m->context > pr->read_acked) {
        pr->read_acked = m->context;
        reads_advance(r);
    }
}

/* ---- ReadIndex (thesis §6.4) ------------------------------------------------------------ */

/* A read point for this node's caller, handed out by the next ready. */
static void push_read_state(struct raft *r, raft_index index, uint64_t context)
{
    r->rs = grow(r->heap, r->rs, &r->rs_cap, r->rs_count + 1, sizeof(*r->rs));
    r->rs[r->rs_count].index = index;
    r->rs[r->rs_count].context = context;
    r->rs_count++;
}

static void read_release(struct raft *r, const struct read_req *q, raft_index index)
{
    if (q->from == r->id) {
        push_read_state(r, index, q->context);
        return;
    }
    struct raft_msg m = msg_to(RAFT_MSG_READ_INDEX_RESP, q->from);

    m.index = index;
    m.context = q->context;
    send(r, m);
}

static bool read_confirmed(struct raft *r, uint64_t seq)
{
    uint32_t acks = 0;

    for (uint32_t k = 0; k < r->conf.voters_count; k++) {
        raft_id id = r->conf.voters[k];
        struct raft_progress *pr = progress_find(r, id);

        acks += id == r->id || (pr != NULL && pr->read_acked >= seq);
    }
    return acks >= quorum(r);
}

/* Starts waiting requests once the leader has committed in its term, and releases every
 * request a quorum of heartbeat responses has confirmed, in order. */
static void reads_advance(struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        return;
    }
    if (committed_in_term(r)) {
        bool started = false;

        for (size_t k = r->reads_head; k < r->reads_count; k++) {
            if (r->reads[k].seq == 0) {
                r->reads[k].seq = ++r->read_seq;
                r->reads[k].index = r->log.committed;
                started = true;
            }
        }
        if (started) {
            bcast_heartbeat(r); /* one round confirms every request started so far */
        }
    }
    while (r->reads_head < r->reads_count) {
        struct read_req *q = &r->reads[r->reads_head];

        if (q->seq == 0 || !read_confirmed(r, q->seq)) {
            break;
        }
        read_release(r, q, q->index);
        r->reads_head++;
    }
    if (r->reads_head == r->reads_count) {
        reads_clear(r);
    }
}

/* A read request reached the leader, from itself or forwarded by `from`. */
static int leader_read_index(struct raft *r, raft_id from, uint64_t context)
{
    struct read_req q;

    q.seq = 0;
    q.context = context;
    q.from = from;
    q.index = r->log.committed;
    if (r->conf.voters_count == 1 ||
        (r->cfg.read_only == RAFT_READ_LEASE_BASED && committed_in_term(r))) {
        /* Alone, or within the CheckQuorum lease (thesis §6.4.1): no round needed. */
        read_release(r, &q, q.index);
        return 0;
    }
    if (r->reads_count - r->reads_head >= RAFT_READ_PENDING_MAX) {
        return LATCH_ETOOBIG;
    }
    if (r->reads_head > 0 && r->reads_count == r->reads_cap) {
        memmove(r->reads, r->reads + r->reads_head,
                (r->reads_count - r->reads_head) * sizeof(*r->reads));
        r->reads_count -= r->reads_head;
        r->reads_head = 0;
    }
    r->reads = grow(r->heap, r->reads, &r->reads_cap, r->reads_count + 1, sizeof(*r->reads));
    r->reads[r->reads_count++] = q;
    reads_advance(r);
    return 0;
}

/* ---- leadership transfer (thesis §3.10) ------------------------------------------------- */

static int leader_transfer(struct raft *r, raft_id target)
{
    struct raft_progress *pr = progress_find(r, target);

    if (pr == NULL || pr->learner) {
        return LATCH_EINVAL;
    }
    if (r->transferee != RAFT_NONE) {
        if (r->transferee == target) {
            return 0;
        }
        trace(r, RAFT_TRACE_TRANSFER_ABORT, r->transferee, 0);
        r->transferee = RAFT_NONE;
    }
    if (target == r->id) {
        return 0;
    }
    /* The transfer must finish within one election timeout or it is abandoned. */
    r->election_elapsed = 0;
    r->transferee = target;
    trace(r, RAFT_TRACE_TRANSFER_START, target, 0);
    if (pr->match == raft__log_last_index(&r->log)) {
        send_timeout_now(r, target);
    } else {
        pr->send_pending = true;
    }
    return 0;
}

/* ---- proposals ------------------------------------------------------------------------- */

static int leader_append(struct raft *r, uint32_t type, const uint8_t *data, uint32_t len)
{
    struct raft_entry e;
    int rv;

    LATCH_ASSERT(r->role == RAFT_LEADER);
    if (progress_find(r, r->id) == NULL || !is_voter(r, r->id)) {
        return LATCH_ENOTMEMBER;
    }
    if (r->transferee != RAFT_NONE) {
        return LATCH_ETRANSFER;
    }
    if (r->cfg.max_uncommitted_bytes > 0 && r->uncommitted_bytes > 0 &&
        r->uncommitted_bytes + len > r->cfg.max_uncommitted_bytes) {
        return LATCH_EUNCOMMITTED;
    }
    e.term = r->term;
    e.index = raft__log_last_index(&r->log) + 1;
    e.type = type;
    e.len = len;
    e.data = data;
    rv = log_append(r, &e, 1);
    if (rv != 0) {
        return rv;
    }
    r->uncommitted_bytes += len;
    r->bcast_pending = true;
    return 0;
}

/* Copies entries (headers and data) into the arena, for messages that outlive the call
 * that brought them. NULL on LATCH_ENOMEM. */
static const struct raft_entry *
arena_copy_entries(struct raft *r, const struct raft_entry *ents, uint32_t n)
{
    struct raft_entry *copy = raft__arena_alloc(&r->arena, n * sizeof(*copy));

    if (copy == NULL) {
        return NULL;
    }
    for (uint32_t k = 0; k < n; k++) {
        copy[k] = ents[k];
        if (ents[k].len > 0) {
            uint8_t *data = raft__arena_alloc(&r->arena, ents[k].len);

            if (data == NULL) {
                return NULL;
            }
            memcpy(data, ents[k].data, ents[k].len);
            copy[k].data = data;
        }
    }
    return copy;
}

/* Forwards a proposal to the leader; the copy lives in the arena until the advance. */
static int forward_proposal(struct raft *r, const uint8_t *data, uint32_t len)
{
    struct raft_entry *e = raft__arena_alloc(&r->arena, sizeof(*e));
    uint8_t *copy = len > 0 ? raft__arena_alloc(&r->arena, len) : NULL;
    struct raft_msg m;

    if (e == NULL || (len > 0 && copy == NULL)) {
        return LATCH_ENOMEM;
    }
    memset(e, 0, sizeof(*e));
    if (len > 0) {
        memcpy(copy, data, len);
    }
    e->type = RAFT_ENTRY_NORMAL;
    e->len = len;
    e->data = copy;
    m = msg_to(RAFT_MSG_PROPOSE, r->lead);
    m.entries = e;
    m.entries_count = 1;
    send(r, m);
    return 0;
}

static int propose(struct raft *r, uint32_t type, const void *data, size_t len)
{
    int rv;

    LATCH_ASSERT(!r->in_ready);
    LATCH_ASSERT(len == 0 || data != NULL);
    if (len > RAFT_ENTRY_BYTES_MAX) {
        rv = LATCH_ETOOBIG;
    } else if (r->role == RAFT_LEADER) {
        rv = leader_append(r, type, data, (uint32_t)len);
    } else if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE ||
               r->cfg.disable_proposal_forwarding || type != RAFT_ENTRY_NORMAL) {
        rv = LATCH_ENOLEADER;
    } else {
        rv = forward_proposal(r, data, (uint32_t)len);
    }
    if (rv != 0) {
        trace(r, RAFT_TRACE_PROPOSAL_DROPPED, (uint64_t)-rv, 0);
    }
    return rv;
}

static void leader_handle_propose(struct raft *r, const struct raft_msg *m)
{
    for (uint32_t k = 0; k < m->entries_count; k++) {
        const struct raft_entry *e = &m->entries[k];

        /* Membership changes go only through raft_propose_conf_change on the leader. */
        if (e->type != RAFT_ENTRY_NORMAL || leader_append(r, e->type, e->data, e->len) != 0) {
            trace(r, RAFT_TRACE_PROPOSAL_DROPPED, 0, 0);
        }
    }
}

/* ---- the follower's side ----------------------------------------------------------------- */

/*
 * The follower side of AppendEntries (paper figure 2, receiver rules 1–5): if the log
 * matches at (m->index, m->log_term), append what is new, truncating a conflicting suffix
 * first, and advance commit to min(leader commit, last new entry).
 */
static void handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = msg_to(RAFT_MSG_APPEND_RESP, m->from);
    raft_index last_new = m->index + m->entries_count;
    raft_index last = raft__log_last_index(&r->log);
    uint32_t k;

    if (m->index < r->log.committed) {
        resp.index = r->log.committed; /* already have all of it: tell where we are */
        send(r, resp);
        return;
    }
    if (!raft__log_match_term(&r->log, m->index, m->log_term)) {
        /* Reject, with a hint that lets the leader skip a divergent term at once. */
        resp.reject = true;
        resp.index = m->index;
        resp.reject_hint = raft__log_find_conflict_by_term(
            &r->log, m->index < last ? m->index : last, m->log_term);
        (void)raft__log_term(&r->log, resp.reject_hint, &resp.log_term);
        send(r, resp);
        return;
    }
    for (k = 0; k < m->entries_count; k++) {
        if (!raft__log_match_term(&r->log, m->entries[k].index, m->entries[k].term)) {
            break; /* the first conflicting or new entry */
        }
    }
    if (k < m->entries_count) {
        LATCH_ASSERTF(m->entries[k].index > r->log.committed, /* R3: committed is final */
                      "entry %llu conflicts with commit %llu",
                      (unsigned long long)m->entries[k].index,
                      (unsigned long long)r->log.committed);
        if ((r->bugs & RAFT_BUG_NO_TRUNCATE_CONFLICT) != 0 && m->entries[k].index <= last) {
            k = (uint32_t)(last - m->index); /* keep the conflicting suffix */
        }
        if (k < m->entries_count && log_append(r, m->entries + k, m->entries_count - k) != 0) {
            return; /* LATCH_ENOMEM: as if the message were lost */
        }
    }
    raft__log_commit_to(&r->log, m->commit < last_new ? m->commit : last_new);
    conf_fold_committed(r);
    resp.index = last_new;
    send(r, resp);
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = msg_to(RAFT_MSG_HEARTBEAT_RESP, m->from);

    raft__log_commit_to(&r->log, m->commit);
    conf_fold_committed(r);
    resp.context = m->context;
    send(r, resp);
}

/* Thesis §5.3: install a leader's snapshot unless the log already covers it. */
static int restore(struct raft *r, const struct raft_snapshot *s)
{
    int rv;

    if (s->meta.index <= r->log.committed) {
        return 0;
    }
    if (raft__log_match_term(&r->log, s->meta.index, s->meta.term)) {
        /* The log has the snapshot's last entry, so everything before it matches too. */
        raft__log_commit_to(&r->log, s->meta.index);
        conf_fold_committed(r);
        return 0;
    }
    rv = raft__log_restore(&r->log, s);
    if (rv != 0) {
        return rv;
    }
    r->hist_count = 0;
    r->conf_base = s->meta.conf;
    r->conf_applied = s->meta.conf;
    r->conf = s->meta.conf;
    conf_changed(r);
    trace(r, RAFT_TRACE_SNAPSHOT_RESTORED, s->meta.index, s->meta.term);
    return 1;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = msg_to(RAFT_MSG_APPEND_RESP, m->from);
    int rv = restore(r, &m->snapshot);

    if (rv < 0) {
        return; /* LATCH_ENOMEM: as if the message were lost */
    }
    resp.index = rv == 1 ? raft__log_last_index(&r->log) : r->log.committed;
    send(r, resp);
}

/* ---- step --------------------------------------------------------------------------------- */

/* Rejects messages no correct peer sends; they are dropped without touching state. */
static bool msg_valid(const struct raft *r, const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_COUNT || m->from == RAFT_NONE ||
        m->from == r->id || m->entries_count > RAFT_MSG_ENTRIES_MAX ||
        (m->entries_count > 0 && m->entries == NULL)) {
        return false;
    }
    for (uint32_t k = 0; k < m->entries_count; k++) {
        const struct raft_entry *e = &m->entries[k];

        if (e->len > RAFT_ENTRY_BYTES_MAX || (e->len > 0 && e->data == NULL)) {
            return false;
        }
        if (m->type == RAFT_MSG_APPEND &&
            (e->index != m->index + 1 + k || e->term > m->term ||
             (k > 0 && e->term < m->entries[k - 1].term) || (k == 0 && e->term < m->log_term))) {
            return false;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snapshot.meta.index == 0 || (m->snapshot.len > 0 && m->snapshot.data == NULL))) {
        return false;
    }
    return true;
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_PROPOSE:
        leader_handle_propose(r, m);
        break;
    case RAFT_MSG_APPEND_RESP:
        handle_append_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        handle_heartbeat_resp(r, m);
        break;
    case RAFT_MSG_READ_INDEX:
        if (leader_read_index(r, m->from, m->context) != 0) {
            struct raft_msg resp = msg_to(RAFT_MSG_READ_INDEX_RESP, m->from);

            resp.reject = true;
            resp.context = m->context;
            send(r, resp);
        }
        break;
    case RAFT_MSG_TRANSFER_LEADER:
        (void)leader_transfer(r, m->index);
        break;
    default:
        break; /* another leader's messages in our term cannot exist (R2); ignore */
    }
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg fwd;

    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->lead = m->from;
        if (m->type == RAFT_MSG_APPEND) {
            handle_append(r, m);
        } else if (m->type == RAFT_MSG_HEARTBEAT) {
            handle_heartbeat(r, m);
        } else {
            handle_snapshot(r, m);
        }
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        hup(r, CAMPAIGN_TRANSFER); /* thesis §3.10: skip PreVote, voters skip the lease */
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        if (!m->reject) {
            push_read_state(r, m->index, m->context);
        }
        break;
    case RAFT_MSG_PROPOSE:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_TRANSFER_LEADER:
        /* Sent to a node that is no longer leader: pass it on if we know who is. */
        if (r->lead == RAFT_NONE ||
            (m->type == RAFT_MSG_PROPOSE && r->cfg.disable_proposal_forwarding)) {
            break;
        }
        fwd = *m;
        fwd.to = r->lead;
        if (m->entries_count > 0) {
            fwd.entries = arena_copy_entries(r, m->entries, m->entries_count);
            if (fwd.entries == NULL) {
                break; /* LATCH_ENOMEM: dropped, like any forwarded proposal may be */
            }
        }
        if (fwd.to != m->from) {
            send(r, fwd);
            r->msgs_after.v[r->msgs_after.count - 1].from = m->from; /* keep the asker */
        }
        break;
    default:
        break;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint32_t want = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    int res;

    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        /* A leader of this term exists (paper §5.2): follow it. */
        become_follower(r, m->term, m->from);
        step_follower(r, m);
        break;
    default:
        if (m->type != want) {
            break;
        }
        res = poll(r, m->from, !m->reject);
        if (res == 1) {
            if (r->role == RAFT_PRE_CANDIDATE) {
                campaign(r, CAMPAIGN_ELECTION);
            } else {
                become_leader(r);
            }
        } else if (res == -1) {
            become_follower(r, r->term, RAFT_NONE);
        }
    }
}

/* Term rules common to every role (paper figure 2, "Rules for Servers"; thesis §4.2.3 and
 * §9.6 for the lease and PreVote exceptions). Returns false when m is to be dropped. */
static bool step_term(struct raft *r, const struct raft_msg *m)
{
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;

    if (m->term == 0) {
        return true; /* a forwarded request: no term */
    }
    if (m->term > r->term) {
        if (vote_req) {
            bool force = m->context == RAFT_CONTEXT_TRANSFER;
            bool in_lease = r->cfg.check_quorum && r->lead != RAFT_NONE &&
                            r->election_elapsed < r->cfg.election_tick;

            if (!force && in_lease) {
                return false; /* a live leader exists: don't let a stray node disrupt it */
            }
        }
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            return true; /* pre-votes speak of a future term; they change nothing */
        }
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, RAFT_NONE);
        }
        return true;
    }
    if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APPEND)) {
            /* A deposed leader, or a node whose election we ignored: tell it the term so it
             * steps down instead of disrupting us later. */
            send(r, msg_to(RAFT_MSG_APPEND_RESP, m->from));
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_msg resp = msg_to(RAFT_MSG_PREVOTE_RESP, m->from);

            resp.term = r->term;
            resp.reject = true;
            send(r, resp);
        }
        return false;
    }
    return true;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    LATCH_ASSERT(!r->in_ready);
    if (!msg_valid(r, m) || !step_term(r, m)) {
        return 0;
    }
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        handle_vote(r, m);
        return 0;
    default:
        break;
    }
    switch (r->role) {
    case RAFT_LEADER:
        step_leader(r, m);
        break;
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        step_candidate(r, m);
        break;
    case RAFT_FOLLOWER:
        step_follower(r, m);
        break;
    }
    LATCH_DASSERT((raft__log_check(&r->log), true));
    return 0;
}

/* ---- time ---------------------------------------------------------------------------------- */

/* Thesis §6.2: a leader that has not heard from a quorum in an election timeout steps down
 * so that clients look elsewhere; resets the activity marks for the next round. */
static bool quorum_active(struct raft *r)
{
    uint32_t active = 0;

    for (uint32_t k = 0; k < r->conf.voters_count; k++) {
        struct raft_progress *pr = progress_find(r, r->conf.voters[k]);

        active += pr->id == r->id || pr->recent_active;
    }
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        r->prs[i].recent_active = r->prs[i].id == r->id;
    }
    return active >= quorum(r);
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_tick) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum && !quorum_active(r)) {
            trace(r, RAFT_TRACE_STEP_DOWN_NO_QUORUM, 0, 0);
            become_follower(r, r->term, RAFT_NONE);
            return;
        }
        if (r->transferee != RAFT_NONE) {
            trace(r, RAFT_TRACE_TRANSFER_ABORT, r->transferee, 0);
            r->transferee = RAFT_NONE;
        }
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r);
    }
}

void raft_tick(struct raft *r)
{
    LATCH_ASSERT(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
        return;
    }
    /* The election timer restarts only for a node that can campaign. A node that cannot (a
     * learner, or a voter that has not yet seen its promotion) must let it run out:
     * otherwise, with check_quorum, it could stay "in lease" of a dead leader forever and
     * ignore every candidate (thesis §6.2 leases last one election timeout; found by the
     * liveness check of raft_sim --nodes 1 --seed 126). */
    if (r->election_elapsed < UINT32_MAX) {
        r->election_elapsed++;
    }
    if (promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        hup(r, CAMPAIGN_ELECTION);
    }
}

/* ---- public inputs ------------------------------------------------------------------------- */

int raft_propose(struct raft *r, const void *data, size_t len)
{
    return propose(r, RAFT_ENTRY_NORMAL, data, len);
}

int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc)
{
    uint8_t buf[16 + RAFT_CONF_CONTEXT_BYTES_MAX];
    struct raft_conf_state next;
    size_t len = 0;
    int rv;

    LATCH_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return LATCH_ENOLEADER;
    }
    /* One change at a time (thesis §4.1), and only after the leader committed an entry of
     * its own term, so no change of a deposed leader can still be in flight. */
    if (r->hist_count > 0 || !committed_in_term(r)) {
        return LATCH_ECONFPENDING;
    }
    next = r->conf;
    rv = raft_conf_state_apply(&next, cc);
    if (rv != 0 || next.voters_count == 0) {
        return LATCH_EINVAL;
    }
    rv = raft_conf_change_encode(cc, buf, sizeof(buf), &len);
    if (rv != 0) {
        return rv;
    }
    return propose(r, RAFT_ENTRY_CONF, buf, len);
}

int raft_read_index(struct raft *r, uint64_t context)
{
    struct raft_msg m;

    LATCH_ASSERT(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        return leader_read_index(r, r->id, context);
    }
    if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE) {
        return LATCH_ENOLEADER;
    }
    m = msg_to(RAFT_MSG_READ_INDEX, r->lead);
    m.context = context;
    send(r, m);
    return 0;
}

int raft_transfer_leader(struct raft *r, raft_id target)
{
    struct raft_msg m;

    LATCH_ASSERT(!r->in_ready);
    if (!is_voter(r, target)) {
        return LATCH_EINVAL;
    }
    if (r->role == RAFT_LEADER) {
        return leader_transfer(r, target);
    }
    if (r->role != RAFT_FOLLOWER || r->lead == RAFT_NONE) {
        return LATCH_ENOLEADER;
    }
    m = msg_to(RAFT_MSG_TRANSFER_LEADER, r->lead);
    m.index = target;
    send(r, m);
    return 0;
}

void raft_campaign(struct raft *r)
{
    LATCH_ASSERT(!r->in_ready);
    hup(r, CAMPAIGN_ELECTION);
}

void raft_report_unreachable(struct raft *r, raft_id id)
{
    struct raft_progress *pr = progress_find(r, id);

    LATCH_ASSERT(!r->in_ready);
    if (r->role == RAFT_LEADER && pr != NULL && pr->state == RAFT_PROGRESS_REPLICATE) {
        raft__progress_become_probe(pr);
    }
}

void raft_report_snapshot(struct raft *r, raft_id id, bool ok)
{
    struct raft_progress *pr = progress_find(r, id);

    LATCH_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER || pr == NULL || pr->state != RAFT_PROGRESS_SNAPSHOT) {
        return;
    }
    if (!ok) {
        pr->pending_snapshot = 0; /* resume from match: probing finds what is needed */
    }
    /* Either way pause until the follower answers a heartbeat: after a success its append
     * response tells where it is, after a failure the next heartbeat round retries. */
    raft__progress_become_probe(pr);
    pr->probe_sent = true;
}

void raft_apply_conf_change(struct raft *r,
                            const struct raft_entry *e,
                            struct raft_conf_state *conf_out)
{
    struct raft_conf_change cc;

    LATCH_ASSERT(e->type == RAFT_ENTRY_CONF);
    LATCH_ASSERTF(e->index <= r->log.committed, "applying conf entry %llu above commit %llu",
                  (unsigned long long)e->index, (unsigned long long)r->log.committed);
    if (raft_conf_change_decode(e->data, e->len, &cc) == 0 &&
        raft_conf_state_apply(&r->conf_applied, &cc) == 0) {
        trace(r, RAFT_TRACE_CONF_APPLIED, cc.type, cc.node);
    }
    *conf_out = r->conf_applied;
}

/* ---- output -------------------------------------------------------------------------------- */

static struct raft_hard_state hard_state(const struct raft *r)
{
    struct raft_hard_state hs;

    hs.term = r->term;
    hs.vote = r->vote;
    hs.commit = r->log.committed;
    return hs;
}

static bool leader_owes_appends(const struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        return false;
    }
    if (r->bcast_pending) {
        return true;
    }
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        const struct raft_progress *pr = &r->prs[i];

        if (pr->id != RAFT_NONE && pr->send_pending && !raft__progress_is_paused(pr)) {
            return true;
        }
    }
    return false;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = hard_state(r);

    if (r->in_ready) {
        return false;
    }
    return r->msgs.count > 0 || r->msgs_after.count > 0 || r->log.u_count > 0 || r->log.has_snap ||
           r->rs_count > 0 || r->log.committed > r->log.applied || hs.term != r->prev_hs.term ||
           hs.vote != r->prev_hs.vote || hs.commit != r->prev_hs.commit ||
           r->lead != r->prev_ss.leader || r->role != r->prev_ss.role || leader_owes_appends(r);
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    struct raft_hard_state hs;
    struct raft_entry *committed = NULL;
    size_t committed_count = 0;

    LATCH_ASSERT(!r->in_ready);
    flush(r);
    memset(rd, 0, sizeof(*rd));
    hs = hard_state(r);
    rd->hard_state = hs;
    rd->hard_state_changed = memcmp(&hs, &r->prev_hs, sizeof(hs)) != 0;
    rd->soft_state.leader = r->lead;
    rd->soft_state.role = r->role;
    rd->soft_state_changed = r->lead != r->prev_ss.leader || r->role != r->prev_ss.role;
    rd->snapshot = r->log.has_snap ? &r->log.snap : NULL;
    rd->entries = r->log.u_ents;
    rd->entries_count = r->log.u_count;
    if (r->log.committed > r->log.applied) {
        uint64_t max = r->cfg.max_committed_bytes > 0 ? r->cfg.max_committed_bytes : UINT64_MAX;
        int rv = raft__log_entries(&r->log, r->log.applied + 1, r->log.committed + 1, max,
                                   &committed, &committed_count);

        LATCH_ASSERTF(rv == 0, "reading committed entries after %llu: %s",
                      (unsigned long long)r->log.applied, latch_error_name(rv));
    }
    rd->committed = committed;
    rd->committed_count = committed_count;
    rd->msgs = r->msgs.v;
    rd->msgs_count = r->msgs.count;
    rd->msgs_after_persist = r->msgs_after.v;
    rd->msgs_after_persist_count = r->msgs_after.count;
    rd->read_states = r->rs;
    rd->read_states_count = r->rs_count;
    rd->must_sync = rd->entries_count > 0 || rd->snapshot != NULL || hs.term != r->prev_hs.term ||
                    hs.vote != r->prev_hs.vote;
    r->in_ready = true;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    LATCH_ASSERT(r->in_ready);
    r->in_ready = false;
    raft__log_stable(&r->log, rd);
    if (rd->committed_count > 0) {
        const struct raft_entry *last = &rd->committed[rd->committed_count - 1];

        LATCH_ASSERT(last->index > r->log.applied && last->index <= r->log.committed);
        r->log.applied = last->index;
        if (r->role == RAFT_LEADER) {
            for (size_t k = 0; k < rd->committed_count; k++) {
                uint64_t len = rd->committed[k].len;

                r->uncommitted_bytes -= len < r->uncommitted_bytes ? len : r->uncommitted_bytes;
            }
        }
    }
    r->prev_hs = rd->hard_state;
    r->prev_ss = rd->soft_state;
    r->msgs.count = 0;
    r->msgs_after.count = 0;
    r->rs_count = 0;
    raft__arena_reset(&r->arena);
    if (r->role == RAFT_LEADER) {
        struct raft_progress *self = progress_find(r, r->id);

        /* The leader's own entries now count toward commit (thesis §10.2.1). */
        if (self != NULL && raft__progress_maybe_update(self, raft__log_last_index(&r->log)) &&
            maybe_commit(r)) {
            leader_committed(r);
        }
    }
    LATCH_DASSERT((raft__log_check(&r->log), true));
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void raft_config_defaults(struct raft_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->election_tick = 10;
    cfg->heartbeat_tick = 1;
    cfg->max_inflight_msgs = 256;
    cfg->max_msg_bytes = 1024 * 1024;
    cfg->max_uncommitted_bytes = 64u * 1024 * 1024;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->read_only = RAFT_READ_SAFE;
}

static int config_validate(const struct raft_config *cfg)
{
    if (cfg->id == RAFT_NONE || cfg->storage == NULL || cfg->heartbeat_tick == 0 ||
        cfg->election_tick <= cfg->heartbeat_tick || cfg->max_inflight_msgs == 0 ||
        cfg->max_inflight_msgs > RAFT_INFLIGHT_MAX || cfg->max_msg_bytes == 0 ||
        (cfg->read_only == RAFT_READ_LEASE_BASED && !cfg->check_quorum)) {
        return LATCH_EINVAL;
    }
    return 0;
}

static int progress_alloc(struct raft *r)
{
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        struct raft_inflights *in = &r->prs[i].inflights;

        in->cap = r->cfg.max_inflight_msgs;
        in->bytes_max = r->cfg.max_inflight_bytes;
        in->index = raft__malloc(r->heap, in->cap * sizeof(*in->index));
        in->bytes = raft__malloc(r->heap, in->cap * sizeof(*in->bytes));
        if (in->index == NULL || in->bytes == NULL) {
            return LATCH_ENOMEM;
        }
    }
    return 0;
}

/* Rebuilds the configuration in effect: the persisted one as of `applied`, then every
 * change in the log after it (use-on-append applies to a restarted node too). */
static int conf_load(struct raft *r, const struct raft_conf_state *applied_conf)
{
    raft_index lo = r->log.applied + 1;
    raft_index hi = raft__log_last_index(&r->log) + 1;

    r->conf_base = *applied_conf;
    r->conf_applied = *applied_conf;
    r->conf = *applied_conf;
    while (lo < hi) {
        struct raft_entry *ents;
        size_t n;
        int rv = raft__log_entries(&r->log, lo, hi, 4u * 1024 * 1024, &ents, &n);

        if (rv != 0) {
            return rv;
        }
        rv = hist_reserve(r, ents, n);
        if (rv != 0) {
            return rv;
        }
        for (size_t k = 0; k < n; k++) {
            if (ents[k].type == RAFT_ENTRY_CONF) {
                conf_appended(r, &ents[k]);
            }
        }
        lo += n;
        raft__arena_reset(&r->arena);
    }
    conf_fold_committed(r);
    tracker_sync(r);
    return 0;
}

static int raft_init(struct raft *r, const struct raft_config *cfg)
{
    const struct raft_storage *st = cfg->storage;
    struct raft_hard_state hs;
    struct raft_conf_state conf;
    int rv;

    r->cfg = *cfg;
    r->heap = cfg->heap;
    r->id = cfg->id;
    r->rng = cfg->seed ^ (cfg->id * 0x2545f4914f6cdd1dull);
    raft__arena_init(&r->arena, r->heap);
    rv = progress_alloc(r);
    if (rv != 0) {
        return rv;
    }
    rv = st->initial_state(st->data, &hs, &conf);
    if (rv != 0) {
        return rv;
    }
    raft__log_init(&r->log, st, &r->arena, r->heap);
    if (hs.commit > raft__log_last_index(&r->log) || cfg->applied > hs.commit ||
        cfg->applied + 1 < raft__log_first_index(&r->log)) {
        return LATCH_EINVAL; /* the caller's state does not fit its own log */
    }
    r->log.committed = hs.commit;
    r->log.applied = cfg->applied;
    become_follower(r, hs.term, RAFT_NONE);
    r->vote = hs.vote;
    r->prev_hs = hs;
    r->prev_ss.leader = RAFT_NONE;
    r->prev_ss.role = RAFT_FOLLOWER;
    return conf_load(r, &conf);
}

int raft_new(const struct raft_config *cfg, struct raft **out)
{
    struct raft *r;
    int rv = config_validate(cfg);

    if (rv != 0) {
        return rv;
    }
    r = raft__malloc(cfg->heap, sizeof(*r));
    if (r == NULL) {
        return LATCH_ENOMEM;
    }
    memset(r, 0, sizeof(*r));
    rv = raft_init(r, cfg);
    if (rv != 0) {
        raft_free(r);
        return rv;
    }
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    const struct raft_heap *heap;

    if (r == NULL) {
        return;
    }
    heap = r->heap;
    for (size_t i = 0; i < PROGRESS_SLOTS; i++) {
        raft__free(heap, r->prs[i].inflights.index);
        raft__free(heap, r->prs[i].inflights.bytes);
    }
    raft__log_close(&r->log);
    raft__arena_close(&r->arena);
    raft__free(heap, r->hist);
    raft__free(heap, r->msgs.v);
    raft__free(heap, r->msgs_after.v);
    raft__free(heap, r->rs);
    raft__free(heap, r->reads);
    raft__free(heap, r);
}

/* ---- inspection ----------------------------------------------------------------------------- */

void raft_status(const struct raft *r, struct raft_status *st)
{
    st->id = r->id;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->lead;
    st->role = r->role;
    st->commit = r->log.committed;
    st->applied = r->log.applied;
    st->first_index = raft__log_first_index(&r->log);
    st->last_index = raft__log_last_index(&r->log);
    st->transferee = r->transferee;
    st->conf = r->conf;
}

bool raft_is_leader(const struct raft *r)
{
    return r->role == RAFT_LEADER;
}

int raft_log_term(const struct raft *r, raft_index i, raft_term *term_out)
{
    return raft__log_term(&r->log, i, term_out);
}

int raft_progress(const struct raft *r, raft_id id, struct raft_progress_info *out)
{
    const struct raft_progress *pr = NULL;

    if (r->role != RAFT_LEADER) {
        return LATCH_ENOTLEADER;
    }
    for (size_t i = 0; i < PROGRESS_SLOTS && id != RAFT_NONE; i++) {
        if (r->prs[i].id == id) {
            pr = &r->prs[i];
        }
    }
    if (pr == NULL) {
        return LATCH_EINVAL;
    }
    out->match = pr->match;
    out->next = pr->next;
    out->state = pr->state;
    out->inflight_count = pr->inflights.count;
    out->recent_active = pr->recent_active;
    out->learner = pr->learner;
    return 0;
}

void raft_set_bugs(struct raft *r, uint32_t bugs)
{
#ifdef LATCH_RAFT_BUGS
    r->bugs = bugs;
#else
    LATCH_ASSERTF(bugs == 0, "bug injection 0x%x needs a -DLATCH_RAFT_BUGS build", bugs);
    r->bugs = 0;
#endif
}

const char *raft_msg_type_name(uint32_t type)
{
    static const char *const names[RAFT_MSG_TYPE_COUNT] = {
        "?",
        "MsgApp",
        "MsgAppResp",
        "MsgVote",
        "MsgVoteResp",
        "MsgPreVote",
        "MsgPreVoteResp",
        "MsgHeartbeat",
        "MsgHeartbeatResp",
        "MsgSnap",
        "MsgTimeoutNow",
        "MsgReadIndex",
        "MsgReadIndexResp",
        "MsgProp",
        "MsgTransferLeader",
    };

    return type < RAFT_MSG_TYPE_COUNT ? names[type] : "?";
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}
