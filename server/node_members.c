/*
 * node_members.c — the node's membership changes and leadership transfers (node.h
 * MEMBERSHIP, docs/decisions/membership.md). Part of the node: node_int.h, node.c's
 * invariants N1-N4.
 */
#include <stdio.h>

#include "latch_error.h"
#include "latch_log.h"
#include "node_int.h"

/* ---------------------------------------------------------------------------------- */
/* Membership changes and leadership transfer (docs/decisions/membership.md)          */
/* ---------------------------------------------------------------------------------- */

enum cc_state { CC_NONE = 0, CC_QUEUED = 1, CC_PROPOSED = 2, CC_APPLIED = 3 };
enum xfer_state { XFER_NONE = 0, XFER_QUEUED = 1, XFER_ISSUED = 2 };

/* A learner is in sync when its log matches at least this share of the leader's (etcd's
 * readyPercent). */
#define MEMBERS_LEARNER_READY_PCT 90u

struct node_membership {
    struct srv_members built; /* as of the last conf item built for the store */
    struct srv_members pub;   /* as of the applied index: srv_node_members */
    struct srv_members boot;  /* boot_conf with the initial attributes */
    struct srv_members tmp;   /* scratch */
    struct srv_members one;   /* scratch: a decoded context */
    bool dirty;               /* the batch in flight changes the membership */
    /* Last conf entry seen in this node's log; at start the last index (any entry not
     * applied yet may be one). A change waits until the applied index reaches it. */
    raft_index conf_last_index;

    /* The one membership change this node runs (srv_node_change_members). */
    int cc_state; /* enum cc_state */
    uint32_t cc_type;
    raft_id cc_id;
    uint64_t cc_seq; /* in the entry's context: finds the entry when it is applied */
    uint64_t cc_seq_next;
    raft_index cc_index; /* where the entry is in this node's log; 0 until seen */
    int cc_result;
    uint64_t cc_deadline_ms;
    struct srv_members cc_attrs; /* one member (id 1): the attributes asked for */
    srv_node_member_cb cc_cb;
    void *cc_data;

    /* The one leadership transfer (srv_node_transfer_leader). */
    int xfer_state; /* enum xfer_state */
    raft_id xfer_target;
    uint64_t xfer_deadline_ms;
    srv_node_transfer_cb xfer_cb;
    void *xfer_data;
};

int node__members_config(struct srv_node *n, const struct srv_node_config *cfg)
{
    struct node_membership *mb = calloc(1, sizeof(*mb));
    if (mb == NULL) {
        return LATCH_ENOMEM;
    }
    n->mem = mb;
    srv_members_init(&mb->built);
    srv_members_init(&mb->pub);
    srv_members_init(&mb->boot);
    mb->cc_seq_next = node__first_id();
    for (size_t i = 0; i < cfg->initial_voters_count; i++) {
        const struct srv_member_attrs *a =
            cfg->initial_attrs != NULL ? &cfg->initial_attrs[i] : NULL;
        if (srv_members_add(&mb->boot, cfg->initial_voters[i], false, a) != 0) {
            return LATCH_EINVAL;
        }
    }
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len;
    return srv_members_encode(&mb->boot, buf, sizeof(buf), &len) == 0 ? 0 : LATCH_EINVAL;
}

void node__members_free(struct srv_node *n)
{
    free(n->mem);
    n->mem = NULL;
}

const struct srv_members *node__members_boot(const struct srv_node *n)
{
    n->mem->built = n->mem->boot;
    n->mem->dirty = true;
    return &n->mem->boot;
}

/* Decodes a record (NULL: none, the bootstrap membership) into built and pub. A version 1
 * record gets the initial attributes of the members it lists. */
static int decode_record(struct srv_node *n, const uint8_t *buf, uint32_t len)
{
    struct node_membership *mb = n->mem;
    if (buf == NULL) {
        mb->built = mb->boot;
    } else {
        int rv = srv_members_decode(buf, len, &mb->built);
        if (rv != 0) {
            return rv;
        }
        if (buf[0] == SRV_MEMBER_RECORD_V1) {
            struct raft_conf_state conf;
            srv_members_conf(&mb->built, &conf);
            if (srv_members_from_conf(&conf, &mb->boot, &mb->tmp) == 0) {
                mb->built = mb->tmp;
            }
        }
    }
    mb->pub = mb->built;
    return 0;
}

int node__members_load(struct srv_node *n,
                       const uint8_t *buf,
                       uint32_t len,
                       struct raft_conf_state *conf)
{
    int rv = decode_record(n, buf, len);
    if (rv != 0) {
        return rv;
    }
    if (buf != NULL) {
        srv_members_conf(&n->mem->built, conf);
    }
    n->mem->conf_last_index = n->last_index;
    return 0;
}

/* A snapshot replaced the state: its record is the membership now. */
void node__members_reload(struct srv_node *n)
{
    uint8_t buf[STORE_CONF_BYTES_MAX];
    uint32_t len = 0;
    int rv = store_conf(n->reader, buf, &len);
    if (rv == 0 && len > 0) {
        rv = decode_record(n, buf, len);
    }
    if (rv != 0) {
        latch_log(LATCH_LOG_ERROR, "node %llu: the installed snapshot's membership: %s",
                  ull(n->cfg.id), latch_strerror(rv));
        return;
    }
    n->conf_recorded = true; /* a later no-op must not record the bootstrap membership */
    n->mem->dirty = true;
    node__members_finish(n);
}

/* The proposer and sequence number in a conf entry's context (0, 0 when it has none). */
static void entry_cc_origin(const struct raft_entry *e,
                            struct raft_conf_change *cc,
                            raft_id *proposer,
                            uint64_t *seq)
{
    *proposer = RAFT_NONE;
    *seq = 0;
    if (raft_conf_change_decode(e->data, e->len, cc) != 0) {
        cc->type = 0;
        return;
    }
    if (cc->context_len >= SRV_MEMBER_CONTEXT_FIXED && cc->context[0] == 1) {
        *proposer = get_le64(cc->context + 1);
        *seq = get_le64(cc->context + 9);
    }
}

/*
 * The membership record after committed conf entry e: ids from the core's configuration
 * (conf), attributes from the membership before it, and from e's context for the member an
 * add or update names. A record that would not fit STORE_CONF_BYTES_MAX (the leader checks
 * before proposing, so only an entry from a very different build could) drops that
 * member's attributes, the same way on every node.
 */
int node__members_item(struct srv_node *n,
                       const struct raft_entry *e,
                       const struct raft_conf_state *conf,
                       const struct srv_members **out)
{
    struct node_membership *mb = n->mem;
    struct raft_conf_change cc;
    raft_id proposer;
    uint64_t seq;
    entry_cc_origin(e, &cc, &proposer, &seq);
    struct raft_conf_state prev;
    srv_members_conf(&mb->built, &prev);
    bool took = cc.type != 0 && raft_conf_state_apply(&prev, &cc) == 0;
    if (srv_members_from_conf(conf, &mb->built, &mb->tmp) != 0) {
        srv_members_from_conf(conf, NULL, &mb->tmp);
    }
    bool attrs = took && (cc.type == RAFT_CC_ADD_VOTER || cc.type == RAFT_CC_ADD_LEARNER ||
                          cc.type == RAFT_CC_UPDATE);
    if (attrs && srv_member_context_decode(cc.context, cc.context_len, cc.node, &proposer, &seq,
                                           &mb->one) == 0) {
        const char *urls[SRV_MEMBER_URLS_MAX];
        const struct srv_member *m = &mb->one.m[0];
        struct srv_member_attrs a = {.name = srv_member_name(&mb->one, m),
                                     .peer_urls = urls,
                                     .peer_urls_count = m->peer_urls_count};
        for (size_t i = 0; i < m->peer_urls_count; i++) {
            urls[i] = srv_member_peer_url(&mb->one, m, i);
        }
        (void)srv_members_set_attrs(&mb->tmp, cc.node, &a);
    }
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len;
    if (srv_members_encode(&mb->tmp, buf, sizeof(buf), &len) != 0) {
        struct srv_member_attrs none = {0};
        (void)srv_members_set_attrs(&mb->tmp, cc.node, &none);
        if (srv_members_encode(&mb->tmp, buf, sizeof(buf), &len) != 0) {
            srv_members_from_conf(conf, NULL, &mb->tmp);
        }
    }
    mb->built = mb->tmp;
    mb->dirty = true;
    if (proposer == n->cfg.id && mb->cc_state == CC_PROPOSED && seq == mb->cc_seq) {
        mb->cc_state = CC_APPLIED;
        mb->cc_result = took ? 0 : LATCH_EINVAL;
    }
    *out = &mb->built;
    return 0;
}

static void cc_finish(struct srv_node *n, int err)
{
    struct node_membership *mb = n->mem;
    LATCH_ASSERT(mb->cc_state != CC_NONE);
    srv_node_member_cb cb = mb->cc_cb;
    void *data = mb->cc_data;
    raft_id id = mb->cc_id;
    mb->cc_state = CC_NONE;
    if (err != 0) {
        latch_log(LATCH_LOG_INFO,
                  "node %llu: membership change (type %u, member %016llx) failed: %s",
                  ull(n->cfg.id), mb->cc_type, ull(id), latch_strerror(err));
    }
    cb(data, err, id);
}

static void xfer_finish(struct srv_node *n, int err)
{
    struct node_membership *mb = n->mem;
    LATCH_ASSERT(mb->xfer_state != XFER_NONE);
    srv_node_transfer_cb cb = mb->xfer_cb;
    void *data = mb->xfer_data;
    mb->xfer_state = XFER_NONE;
    cb(data, err);
}

void node__members_note_entry(struct srv_node *n, const struct raft_entry *e)
{
    struct node_membership *mb = n->mem;
    struct raft_conf_change cc;
    raft_id proposer;
    uint64_t seq;
    mb->conf_last_index = e->index;
    entry_cc_origin(e, &cc, &proposer, &seq);
    if (proposer == n->cfg.id && mb->cc_state == CC_PROPOSED && seq == mb->cc_seq) {
        mb->cc_index = e->index;
    }
}

/* The log is truncated at ents[0]: the change's entry is gone unless ents bring it back. */
void node__members_note_truncation(struct srv_node *n, const struct raft_entry *ents, size_t count)
{
    struct node_membership *mb = n->mem;
    if (mb->cc_state != CC_PROPOSED || mb->cc_index == 0 || mb->cc_index < ents[0].index) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        struct raft_conf_change cc;
        raft_id proposer;
        uint64_t seq;
        if (ents[i].type == RAFT_ENTRY_CONF) {
            entry_cc_origin(&ents[i], &cc, &proposer, &seq);
            if (proposer == n->cfg.id && seq == mb->cc_seq) {
                return;
            }
        }
    }
    cc_finish(n, SRV_NODE_ELEADERCHANGED);
}

void node__members_note_leader(struct srv_node *n, raft_id leader)
{
    struct node_membership *mb = n->mem;
    if (mb->xfer_state != XFER_ISSUED || leader == RAFT_NONE || leader == n->cfg.id) {
        return;
    }
    bool wanted = mb->xfer_target == RAFT_NONE || leader == mb->xfer_target;
    xfer_finish(n, wanted ? 0 : SRV_NODE_ELEADERCHANGED);
}

/* After a batch was applied: publish the membership, then complete the change. */
void node__members_finish(struct srv_node *n)
{
    struct node_membership *mb = n->mem;
    if (mb->dirty) {
        mb->dirty = false;
        mb->pub = mb->built;
        if (n->cfg.members_changed != NULL && n->state == NODE_RUNNING) {
            n->cfg.members_changed(n->cfg.data, &mb->pub);
        }
    }
    if (mb->cc_state == CC_APPLIED && n->state == NODE_RUNNING) {
        cc_finish(n, mb->cc_result);
    }
}

void node__members_fail_all(struct srv_node *n, int err)
{
    if (n->mem != NULL && n->mem->cc_state != CC_NONE) {
        cc_finish(n, err);
    }
    if (n->mem != NULL && n->mem->xfer_state != XFER_NONE) {
        xfer_finish(n, err);
    }
}

void node__members_expire(struct srv_node *n, uint64_t now)
{
    struct node_membership *mb = n->mem;
    if (mb->cc_state != CC_NONE && mb->cc_state != CC_APPLIED && mb->cc_deadline_ms <= now) {
        cc_finish(n, SRV_NODE_ETIMEDOUT);
    }
    if (mb->xfer_state != XFER_NONE && mb->xfer_deadline_ms <= now) {
        xfer_finish(n, SRV_NODE_ETIMEDOUT);
    }
}

/* Voters the leader heard from within the last election timeout (itself included), and
 * whether id is one of them. */
static uint32_t
active_voters(const struct srv_node *n, const struct raft_status *st, raft_id id, bool *id_active)
{
    uint32_t active = 0;
    *id_active = false;
    for (uint32_t i = 0; i < st->conf.voters_count + st->conf.learners_count; i++) {
        bool learner = i >= st->conf.voters_count;
        raft_id v = learner ? st->conf.learners[i - st->conf.voters_count] : st->conf.voters[i];
        struct raft_progress_info pi;
        bool on = v == n->cfg.id || (raft_progress(n->raft, v, &pi) == 0 && pi.recent_active);
        if (v == id) {
            *id_active = on;
        }
        active += on && !learner;
    }
    return active;
}

static uint32_t quorum(uint32_t voters)
{
    return voters / 2 + 1;
}

/* A fresh member id: never RAFT_NONE, never a current member's. It hashes this leader's id,
 * its term and next log index (unique per entry of the log), the clock and the peer URLs, so
 * a removed member's id does not come back (docs/decisions/membership.md). */
static raft_id member_new_id(const struct srv_node *n, const struct raft_status *st)
{
    const struct srv_members *cur = &n->mem->built;
    const struct srv_members *a = &n->mem->cc_attrs;
    for (uint64_t salt = 0;; salt++) {
        uint64_t parts[5] = {n->cfg.id, st->term, st->last_index + 1, uv_hrtime(), salt};
        uint64_t h = 14695981039346656037ull;
        const uint8_t *b = (const uint8_t *)parts;
        for (size_t i = 0; i < sizeof(parts); i++) {
            h = (h ^ b[i]) * 1099511628211ull;
        }
        for (size_t k = 0; k < a->m[0].peer_urls_count; k++) {
            for (const char *p = srv_member_peer_url(a, &a->m[0], k); *p != '\0'; p++) {
                h = (h ^ (uint8_t)*p) * 1099511628211ull;
            }
        }
        if (h != RAFT_NONE && srv_members_find(cur, h) == NULL) {
            return h;
        }
    }
}

/* etcd 3.4's checks of a change (strict reconfiguration check) against the applied
 * membership; 0 to propose it, or the refusal. Sets mb->cc_id for an add. */
static int cc_check(struct srv_node *n, const struct raft_status *st)
{
    struct node_membership *mb = n->mem;
    const struct srv_members *cur = &mb->built;
    const struct srv_member *want = &mb->cc_attrs.m[0];
    const struct srv_member *m = srv_members_find(cur, mb->cc_id);
    bool target_active;
    uint32_t active = active_voters(n, st, mb->cc_id, &target_active);
    uint32_t voters = st->conf.voters_count;
    bool add = mb->cc_type == RAFT_CC_ADD_VOTER || mb->cc_type == RAFT_CC_ADD_LEARNER;
    if (add || mb->cc_type == RAFT_CC_UPDATE) {
        for (size_t i = 0; i < want->peer_urls_count; i++) {
            const char *url = srv_member_peer_url(&mb->cc_attrs, want, i);
            if (srv_members_find_url(cur, url, add ? RAFT_NONE : mb->cc_id) != NULL) {
                return LATCH_EPEERURLEXIST;
            }
        }
    }
    switch (mb->cc_type) {
    case RAFT_CC_ADD_LEARNER:
        return st->conf.learners_count >= 1 ? LATCH_ETOOMANYLEARNERS : 0;
    case RAFT_CC_ADD_VOTER:
        return active < quorum(voters + 1) ? LATCH_ENOTSTARTED : 0;
    case RAFT_CC_PROMOTE: {
        if (m == NULL) {
            return LATCH_ENOTFOUND;
        }
        if (!m->learner) {
            return LATCH_ENOTLEARNER;
        }
        struct raft_progress_info pi;
        if (raft_progress(n->raft, m->id, &pi) != 0 ||
            pi.match * 100u < st->last_index * MEMBERS_LEARNER_READY_PCT) {
            return LATCH_ELEARNERBEHIND;
        }
        return active + target_active < quorum(voters + 1) ? LATCH_ENOTSTARTED : 0;
    }
    case RAFT_CC_REMOVE:
        if (m == NULL) {
            return LATCH_ENOTFOUND;
        }
        if (m->learner || (!target_active && m->id != n->cfg.id)) {
            return 0; /* a learner or a member that is down: no quorum at stake */
        }
        return active - 1 < quorum(voters - 1) ? LATCH_EUNHEALTHY : 0;
    case RAFT_CC_UPDATE:
        return m == NULL ? LATCH_ENOTFOUND : 0;
    default:
        return LATCH_EINVAL;
    }
}

/* The change's context: this node, the sequence number, and the attributes the entry sets
 * (an update keeps the member's name). Also checks the record after it still fits. */
static int cc_context(struct srv_node *n, uint8_t *buf, size_t cap, size_t *len)
{
    struct node_membership *mb = n->mem;
    const struct srv_member *want = &mb->cc_attrs.m[0];
    const char *urls[SRV_MEMBER_URLS_MAX];
    for (size_t i = 0; i < want->peer_urls_count; i++) {
        urls[i] = srv_member_peer_url(&mb->cc_attrs, want, i);
    }
    struct srv_member_attrs a = {.name = srv_member_name(&mb->cc_attrs, want),
                                 .peer_urls = urls,
                                 .peer_urls_count = want->peer_urls_count};
    bool add = mb->cc_type == RAFT_CC_ADD_VOTER || mb->cc_type == RAFT_CC_ADD_LEARNER;
    int rv = 0;
    mb->tmp = mb->built;
    if (add) {
        rv = srv_members_add(&mb->tmp, mb->cc_id, mb->cc_type == RAFT_CC_ADD_LEARNER, &a);
    } else if (mb->cc_type == RAFT_CC_UPDATE) {
        /* What the update leaves out stays: the name, or the peer URLs. */
        const struct srv_member *m = srv_members_find(&mb->built, mb->cc_id);
        if (a.name[0] == '\0') {
            a.name = srv_member_name(&mb->built, m);
        }
        if (a.peer_urls_count == 0) {
            for (size_t i = 0; i < m->peer_urls_count; i++) {
                urls[i] = srv_member_peer_url(&mb->built, m, i);
            }
            a.peer_urls_count = m->peer_urls_count;
        }
        rv = srv_members_set_attrs(&mb->tmp, mb->cc_id, &a);
    }
    uint8_t rec[STORE_CONF_BYTES_MAX];
    size_t rec_len;
    if (rv == 0 && srv_members_encode(&mb->tmp, rec, sizeof(rec), &rec_len) != 0) {
        rv = LATCH_ETOOBIG;
    }
    if (rv != 0) {
        return rv == LATCH_EINVAL ? LATCH_ETOOBIG : rv;
    }
    return srv_member_context_encode(
        n->cfg.id, mb->cc_seq, add || mb->cc_type == RAFT_CC_UPDATE ? &a : NULL, buf, cap, len);
}

/* Checks and proposes the queued change: 0 proposed, 1 wait (retried next turn), < 0
 * refused. Never inside a ready (N1). */
static int cc_try(struct srv_node *n)
{
    struct node_membership *mb = n->mem;
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.role != RAFT_LEADER) {
        return LATCH_ENOTLEADER;
    }
    if (n->applied < mb->conf_last_index || st.transferee != RAFT_NONE) {
        return 1; /* an earlier change is not applied yet, or a transfer runs */
    }
    int rv = cc_check(n, &st);
    if (rv != 0) {
        return rv;
    }
    if (mb->cc_id == RAFT_NONE) {
        mb->cc_id = member_new_id(n, &st);
    }
    uint8_t ctx[RAFT_CONF_CONTEXT_BYTES_MAX];
    size_t ctx_len = 0;
    rv = cc_context(n, ctx, sizeof(ctx), &ctx_len);
    if (rv != 0) {
        return rv;
    }
    struct raft_conf_change cc = {
        .type = mb->cc_type, .node = mb->cc_id, .context = ctx, .context_len = (uint32_t)ctx_len};
    rv = raft_propose_conf_change(n->raft, &cc);
    if (rv == LATCH_ECONFPENDING) {
        return 1;
    }
    if (rv != 0) {
        return rv;
    }
    latch_log(LATCH_LOG_INFO, "node %llu: proposed membership change (type %u, member %016llx)",
              ull(n->cfg.id), mb->cc_type, ull(mb->cc_id));
    mb->cc_state = CC_PROPOSED;
    mb->cc_index = 0;
    return 0;
}

/* Picks the transfer's target (the voter whose log matches furthest) and starts it: 0
 * issued, < 0 refused, 1 done at once (this node is the target). */
static int xfer_try(struct srv_node *n)
{
    struct node_membership *mb = n->mem;
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.role != RAFT_LEADER) {
        return LATCH_ENOTLEADER;
    }
    raft_id target = mb->xfer_target;
    if (target == RAFT_NONE) {
        raft_index best = 0;
        for (uint32_t i = 0; i < st.conf.voters_count; i++) {
            struct raft_progress_info pi;
            raft_id v = st.conf.voters[i];
            if (v != n->cfg.id && raft_progress(n->raft, v, &pi) == 0 &&
                (target == RAFT_NONE || pi.match > best)) {
                target = v;
                best = pi.match;
            }
        }
    }
    if (target == RAFT_NONE || !raft_conf_state_is_voter(&st.conf, target)) {
        return LATCH_ENOTFOUND;
    }
    if (target == n->cfg.id) {
        return 1;
    }
    int rv = raft_transfer_leader(n->raft, target);
    if (rv != 0) {
        return rv;
    }
    latch_log(LATCH_LOG_INFO, "node %llu: transferring leadership to %016llx (term %llu)",
              ull(n->cfg.id), ull(target), ull(st.term));
    mb->xfer_target = target;
    mb->xfer_state = XFER_ISSUED;
    return 0;
}

void node__members_feed(struct srv_node *n)
{
    struct node_membership *mb = n->mem;
    if (mb->cc_state == CC_QUEUED) {
        int rv = cc_try(n);
        if (rv < 0) {
            cc_finish(n, rv);
        }
    }
    if (mb->xfer_state == XFER_QUEUED) {
        int rv = xfer_try(n);
        if (rv != 0) {
            xfer_finish(n, rv < 0 ? rv : 0);
        }
    }
}

const struct srv_members *srv_node_members(const struct srv_node *n)
{
    LATCH_ASSERT(n != NULL && n->mem != NULL);
    return &n->mem->pub;
}

int srv_node_change_members(struct srv_node *n,
                            const struct srv_node_member_change *ch,
                            srv_node_member_cb cb,
                            void *data)
{
    LATCH_ASSERT(n != NULL && ch != NULL && cb != NULL);
    struct node_membership *mb = n->mem;
    int rv = node__refuse_code(n);
    if (rv != 0) {
        return rv;
    }
    bool add = ch->type == RAFT_CC_ADD_VOTER || ch->type == RAFT_CC_ADD_LEARNER;
    bool urls = add || ch->type == RAFT_CC_UPDATE;
    bool named = ch->attrs.name != NULL && ch->attrs.name[0] != '\0';
    if (ch->type < RAFT_CC_ADD_VOTER || ch->type > RAFT_CC_UPDATE ||
        (!add && ch->id == RAFT_NONE) || (add && ch->attrs.peer_urls_count == 0) ||
        (ch->type == RAFT_CC_UPDATE && ch->attrs.peer_urls_count == 0 && !named)) {
        return LATCH_EINVAL;
    }
    if (mb->cc_state != CC_NONE) {
        return LATCH_ESTATE;
    }
    srv_members_init(&mb->cc_attrs);
    struct srv_member_attrs none = {0};
    if (srv_members_add(&mb->cc_attrs, 1, false, urls ? &ch->attrs : &none) != 0) {
        return LATCH_EINVAL;
    }
    mb->cc_state = CC_QUEUED;
    mb->cc_type = ch->type;
    mb->cc_id = ch->id;
    mb->cc_seq = mb->cc_seq_next++;
    mb->cc_index = 0;
    mb->cc_result = 0;
    mb->cc_deadline_ms = uv_now(n->loop) + n->proposal_timeout_ms;
    mb->cc_cb = cb;
    mb->cc_data = data;
    node__kick(n);
    return 0;
}

int srv_node_transfer_leader(
    struct srv_node *n, raft_id target, uint32_t timeout_ms, srv_node_transfer_cb cb, void *data)
{
    LATCH_ASSERT(n != NULL && cb != NULL);
    struct node_membership *mb = n->mem;
    int rv = node__refuse_code(n);
    if (rv != 0) {
        return rv;
    }
    if (mb->xfer_state != XFER_NONE) {
        return LATCH_ESTATE;
    }
    mb->xfer_state = XFER_QUEUED;
    mb->xfer_target = target;
    mb->xfer_deadline_ms = uv_now(n->loop) + timeout_ms;
    mb->xfer_cb = cb;
    mb->xfer_data = data;
    node__kick(n);
    return 0;
}
