/*
 * svc_cluster.c — the Cluster service, MoveLeader and the peer membership RPCs (see
 * svc_cluster.h).
 */
#include "svc_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_client.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch/raft/raft.pb-c.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "latch_log.h"

#define CLUSTER_FORWARD_TIMEOUT_MS 15000u
#define PEER_PATH_PREFIX           "/latch.raft.v1.Raft/"

struct srv_cluster {
    struct srv_cluster_config cfg;
    uint64_t *bootstrap;     /* cfg.bootstrap_voters points here */
    struct api_channel *fwd; /* to fwd_leader's peer URLs, or NULL */
    raft_id fwd_leader;
    bool publishing;
    struct api_channel *check; /* srv_cluster_check_removed's channel, or NULL */
    uint32_t check_turn;       /* which member to ask next */
    void (*check_cb)(void *data, bool removed);
    void *check_data;
};

enum op { OP_ADD = 1, OP_REMOVE, OP_UPDATE, OP_PROMOTE };

struct cluster_wait {
    struct srv_cluster *c;
    struct api_call *call;
    int op;
};

/* The header of a Cluster response: cluster id, member id and Raft term only, as etcd's
 * (v3rpc/member.go header(); tests/compat/diff compares them). with_revision adds the store
 * revision, as etcd's Maintenance responses (MoveLeader) carry it. */
static void
header_of(const struct srv_cluster *c, bool with_revision, Etcdserverpb__ResponseHeader *h)
{
    struct srv_node_status st;
    struct store_status ss;
    srv_node_status(c->cfg.node, &st);
    etcdserverpb__response_header__init(h);
    h->cluster_id = c->cfg.cluster_id;
    h->member_id = c->cfg.member_id;
    h->raft_term = st.term;
    if (with_revision && store_status(srv_node_reader(c->cfg.node), &ss) == 0) {
        h->revision = ss.revision;
    }
}

static void header(const struct srv_cluster *c, Etcdserverpb__ResponseHeader *h)
{
    header_of(c, false, h);
}

/* etcd 3.4's status for a membership error (rpctypes), else the common mapping. */
static void cluster_fail(struct api_call *call, int err)
{
    const char *text = NULL;
    int status = API_GRPC_STATUS_FAILED_PRECONDITION;
    switch (err) {
    case LATCH_ENOTFOUND:
        status = API_GRPC_STATUS_NOT_FOUND;
        text = "etcdserver: member not found";
        break;
    case LATCH_EPEERURLEXIST:
        text = "etcdserver: Peer URLs already exists";
        break;
    case LATCH_EEXIST:
        text = "etcdserver: member ID already exist";
        break;
    case LATCH_ENOTLEARNER:
        text = "etcdserver: can only promote a learner member";
        break;
    case LATCH_ELEARNERBEHIND:
        text = "etcdserver: can only promote a learner member which is in sync with leader";
        break;
    case LATCH_ETOOMANYLEARNERS:
        text = "etcdserver: too many learner members in cluster";
        break;
    case LATCH_ENOTSTARTED:
        text = "etcdserver: re-configuration failed due to not enough started members";
        break;
    case LATCH_EUNHEALTHY:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "etcdserver: unhealthy cluster";
        break;
    case LATCH_ENOTLEADER:
        text = "etcdserver: not leader";
        break;
    case LATCH_EINVAL:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "etcdserver: given member URLs are invalid";
        break;
    case LATCH_ESTATE:
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        text = "etcdserver: too many requests";
        break;
    default:
        break;
    }
    if (text != NULL) {
        api_call_fail(call, status, text);
        return;
    }
    char msg[ETCD_STATUS_MSG_MAX];
    api_call_fail(call, etcd_status(err, NULL, msg, sizeof(msg)), msg);
}

/* Splits comma-separated urls (may be NULL) into out's client URLs, copies in a. */
static void split_urls(const char *urls, struct latch_arena *a, Etcdserverpb__Member *out)
{
    if (urls == NULL || urls[0] == '\0') {
        return;
    }
    size_t n = 1;
    for (const char *p = urls; *p != '\0'; p++) {
        n += *p == ',';
    }
    char *copy = latch_arena_dup(a, urls, strlen(urls) + 1);
    char **list = latch_arena_calloc(a, n, sizeof(*list));
    if (copy == NULL || list == NULL) {
        return; /* listed without client URLs */
    }
    size_t k = 0;
    for (char *tok = copy; tok != NULL && k < n;) {
        char *comma = strchr(tok, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (tok[0] != '\0') {
            list[k++] = tok;
        }
        tok = comma != NULL ? comma + 1 : NULL;
    }
    out->n_clienturls = k;
    out->clienturls = list;
}

/* Fills out with member m of ms; strings borrowed from ms or copied into a. False: no
 * memory. */
static bool member_pb(const struct srv_cluster *c,
                      const struct srv_members *ms,
                      const struct srv_member *m,
                      struct latch_arena *a,
                      Etcdserverpb__Member *out)
{
    etcdserverpb__member__init(out);
    out->id = m->id;
    out->name = (char *)srv_member_name(ms, m);
    out->islearner = m->learner;
    if (m->peer_urls_count > 0) {
        char **urls = latch_arena_calloc(a, m->peer_urls_count, sizeof(*urls));
        if (urls == NULL) {
            return false;
        }
        for (size_t i = 0; i < m->peer_urls_count; i++) {
            urls[i] = (char *)srv_member_peer_url(ms, m, i);
        }
        out->peerurls = urls;
        out->n_peerurls = m->peer_urls_count;
    }
    if (m->id == c->cfg.member_id) {
        out->clienturls = (char **)c->cfg.client_urls;
        out->n_clienturls = c->cfg.client_urls_count;
    } else if (c->cfg.peer_client_urls != NULL) {
        split_urls(c->cfg.peer_client_urls(c->cfg.data, m->id), a, out);
    }
    return true;
}

/* The whole membership as etcd's repeated Member. NULL: no memory. */
static Etcdserverpb__Member **
members_pb(const struct srv_cluster *c, const struct srv_members *ms, struct latch_arena *a)
{
    Etcdserverpb__Member *msgs = latch_arena_calloc(a, ms->count + 1, sizeof(*msgs));
    Etcdserverpb__Member **ptrs = latch_arena_calloc(a, ms->count + 1, sizeof(*ptrs));
    if (msgs == NULL || ptrs == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < ms->count; i++) {
        if (!member_pb(c, ms, &ms->m[i], a, &msgs[i])) {
            return NULL;
        }
        ptrs[i] = &msgs[i];
    }
    return ptrs;
}

static void cluster_member_list(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__member_list_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    const struct srv_members *ms = srv_node_members(c->cfg.node);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Etcdserverpb__ResponseHeader h;
    header(c, &h);
    Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    r.header = &h;
    r.members = members_pb(c, ms, &a);
    r.n_members = ms->count;
    if (r.members == NULL) {
        cluster_fail(call, LATCH_ENOMEM);
    } else {
        api_call_reply_pb(call, &r.base);
    }
    latch_arena_close(&a);
}

/* ---- forwarding to the leader ------------------------------------------------------ */

static void
forward_done(int grpc_status, const char *message, const uint8_t *resp, size_t resp_len, void *data)
{
    struct api_call *call = data;
    if (grpc_status == 0) {
        api_call_reply(call, resp, resp_len);
    } else {
        api_call_fail(call, grpc_status, message);
    }
}

/* The channel to the leader's peer URLs, made when the leader changed. */
static struct api_channel *leader_channel(struct srv_cluster *c, raft_id leader)
{
    if (c->fwd != NULL && c->fwd_leader == leader) {
        return c->fwd;
    }
    if (c->fwd != NULL) {
        api_channel_close(c->fwd, NULL, NULL);
        c->fwd = NULL;
    }
    const struct srv_members *ms = srv_node_members(c->cfg.node);
    const struct srv_member *m = srv_members_find(ms, leader);
    if (m == NULL || m->peer_urls_count == 0) {
        return NULL;
    }
    const char *urls[SRV_MEMBER_URLS_MAX];
    for (size_t i = 0; i < m->peer_urls_count; i++) {
        urls[i] = srv_member_peer_url(ms, m, i);
    }
    struct api_channel_config cc = {
        .endpoints = urls, .endpoints_count = m->peer_urls_count, .tls = c->cfg.peer_tls};
    if (api_channel_new(c->cfg.loop, &cc, &c->fwd) != 0) {
        c->fwd = NULL;
        return NULL;
    }
    c->fwd_leader = leader;
    return c->fwd;
}

/* Relays call (a client's request, req) to the leader as PEER_PATH_PREFIX + method. */
static void forward(struct srv_cluster *c,
                    struct api_call *call,
                    const char *method,
                    const uint8_t *req,
                    size_t len)
{
    if (strncmp(api_call_path(call), PEER_PATH_PREFIX, strlen(PEER_PATH_PREFIX)) == 0) {
        cluster_fail(call, LATCH_ELEADERCHANGED); /* forwarded here, but not the leader */
        return;
    }
    struct srv_node_status st;
    srv_node_status(c->cfg.node, &st);
    struct api_channel *ch = st.leader != RAFT_NONE ? leader_channel(c, st.leader) : NULL;
    if (ch == NULL) {
        cluster_fail(call, LATCH_ENOLEADER);
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "%s%s", PEER_PATH_PREFIX, method);
    struct api_call_opts opts = {.timeout_ms = CLUSTER_FORWARD_TIMEOUT_MS};
    if (api_channel_unary(ch, path, req, len, &opts, forward_done, call) != 0) {
        cluster_fail(call, LATCH_ENOLEADER);
    }
}

static bool is_leader(const struct srv_cluster *c)
{
    struct srv_node_status st;
    srv_node_status(c->cfg.node, &st);
    return st.leader == c->cfg.member_id && st.role == RAFT_LEADER;
}

/* ---- member changes ---------------------------------------------------------------- */

static void change_done(void *data, int err, raft_id id)
{
    struct cluster_wait *w = data;
    struct srv_cluster *c = w->c;
    struct api_call *call = w->call;
    int op = w->op;
    free(w);
    if (err != 0) {
        cluster_fail(call, err);
        return;
    }
    const struct srv_members *ms = srv_node_members(c->cfg.node);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Etcdserverpb__ResponseHeader h;
    header(c, &h);
    Etcdserverpb__Member **list = members_pb(c, ms, &a);
    Etcdserverpb__Member added;
    const struct srv_member *m = srv_members_find(ms, id);
    if (list == NULL || (op == OP_ADD && (m == NULL || !member_pb(c, ms, m, &a, &added)))) {
        cluster_fail(call, list == NULL ? LATCH_ENOMEM : LATCH_ELEADERCHANGED);
        latch_arena_close(&a);
        return;
    }
    switch (op) {
    case OP_ADD: {
        Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
        r.header = &h;
        r.member = &added;
        r.members = list;
        r.n_members = ms->count;
        api_call_reply_pb(call, &r.base);
        break;
    }
    case OP_REMOVE: {
        Etcdserverpb__MemberRemoveResponse r = ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
        r.header = &h;
        r.members = list;
        r.n_members = ms->count;
        api_call_reply_pb(call, &r.base);
        break;
    }
    case OP_UPDATE: {
        Etcdserverpb__MemberUpdateResponse r = ETCDSERVERPB__MEMBER_UPDATE_RESPONSE__INIT;
        r.header = &h;
        r.members = list;
        r.n_members = ms->count;
        api_call_reply_pb(call, &r.base);
        break;
    }
    default: {
        Etcdserverpb__MemberPromoteResponse r = ETCDSERVERPB__MEMBER_PROMOTE_RESPONSE__INIT;
        r.header = &h;
        r.members = list;
        r.n_members = ms->count;
        api_call_reply_pb(call, &r.base);
        break;
    }
    }
    latch_arena_close(&a);
}

/* A URL etcd would take: http(s)://host:port. */
static bool url_valid(const char *u)
{
    const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
                       : strncmp(u, "https://", 8) == 0 ? u + 8
                                                        : NULL;
    const char *colon = rest != NULL ? strrchr(rest, ':') : NULL;
    return colon != NULL && colon > rest && colon[1] != '\0' &&
           strspn(colon + 1, "0123456789") == strlen(colon + 1) && strlen(u) <= SRV_MEMBER_URL_MAX;
}

static void change(struct srv_cluster *c,
                   struct api_call *call,
                   int op,
                   const struct srv_node_member_change *ch)
{
    for (size_t i = 0; i < ch->attrs.peer_urls_count; i++) {
        if (!url_valid(ch->attrs.peer_urls[i])) {
            cluster_fail(call, LATCH_EINVAL);
            return;
        }
    }
    if ((op == OP_ADD || op == OP_UPDATE) && ch->attrs.peer_urls_count == 0) {
        cluster_fail(call, LATCH_EINVAL);
        return;
    }
    if (ch->attrs.peer_urls_count > SRV_MEMBER_URLS_MAX) {
        cluster_fail(call, LATCH_ETOOBIG);
        return;
    }
    struct cluster_wait *w = malloc(sizeof(*w));
    if (w == NULL) {
        cluster_fail(call, LATCH_ENOMEM);
        return;
    }
    *w = (struct cluster_wait){.c = c, .call = call, .op = op};
    int rv = srv_node_change_members(c->cfg.node, ch, change_done, w);
    if (rv != 0) {
        free(w);
        cluster_fail(call, rv);
    }
}

static const char *method_of(int op)
{
    switch (op) {
    case OP_ADD:
        return "MemberAdd";
    case OP_REMOVE:
        return "MemberRemove";
    case OP_UPDATE:
        return "MemberUpdate";
    default:
        return "MemberPromote";
    }
}

static void cluster_member_add(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Etcdserverpb__MemberAddRequest *in = (Etcdserverpb__MemberAddRequest *)api_call_unpack(
        call, &etcdserverpb__member_add_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    if (!is_leader(c)) {
        forward(c, call, method_of(OP_ADD), req, len);
    } else {
        struct srv_node_member_change ch = {
            .type = in->islearner ? RAFT_CC_ADD_LEARNER : RAFT_CC_ADD_VOTER,
            .attrs = {.peer_urls = (const char *const *)in->peerurls,
                      .peer_urls_count = in->n_peerurls}};
        change(c, call, OP_ADD, &ch);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

static void cluster_member_remove(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Etcdserverpb__MemberRemoveRequest *in = (Etcdserverpb__MemberRemoveRequest *)api_call_unpack(
        call, &etcdserverpb__member_remove_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    if (srv_members_find(srv_node_members(c->cfg.node), in->id) == NULL) {
        cluster_fail(call, LATCH_ENOTFOUND);
    } else if (!is_leader(c)) {
        forward(c, call, method_of(OP_REMOVE), req, len);
    } else {
        struct srv_node_member_change ch = {.type = RAFT_CC_REMOVE, .id = in->id};
        change(c, call, OP_REMOVE, &ch);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

static void cluster_member_update(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Etcdserverpb__MemberUpdateRequest *in = (Etcdserverpb__MemberUpdateRequest *)api_call_unpack(
        call, &etcdserverpb__member_update_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    if (srv_members_find(srv_node_members(c->cfg.node), in->id) == NULL) {
        cluster_fail(call, LATCH_ENOTFOUND);
    } else if (!is_leader(c)) {
        forward(c, call, method_of(OP_UPDATE), req, len);
    } else {
        struct srv_node_member_change ch = {
            .type = RAFT_CC_UPDATE,
            .id = in->id,
            .attrs = {.peer_urls = (const char *const *)in->peerurls,
                      .peer_urls_count = in->n_peerurls}};
        change(c, call, OP_UPDATE, &ch);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

static void
cluster_member_promote(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Etcdserverpb__MemberPromoteRequest *in = (Etcdserverpb__MemberPromoteRequest *)api_call_unpack(
        call, &etcdserverpb__member_promote_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    const struct srv_member *m = srv_members_find(srv_node_members(c->cfg.node), in->id);
    if (m == NULL) {
        cluster_fail(call, LATCH_ENOTFOUND);
    } else if (!m->learner) {
        cluster_fail(call, LATCH_ENOTLEARNER);
    } else if (!is_leader(c)) {
        forward(c, call, method_of(OP_PROMOTE), req, len);
    } else {
        struct srv_node_member_change ch = {.type = RAFT_CC_PROMOTE, .id = in->id};
        change(c, call, OP_PROMOTE, &ch);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* ---- MoveLeader -------------------------------------------------------------------- */

static void move_done(void *data, int err)
{
    struct cluster_wait *w = data;
    struct srv_cluster *c = w->c;
    struct api_call *call = w->call;
    free(w);
    if (err == LATCH_ETIMEDOUT) {
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE,
                      "etcdserver: request timed out, leader transfer took too long");
        return;
    }
    if (err == LATCH_ENOTFOUND) {
        api_call_fail(call, API_GRPC_STATUS_FAILED_PRECONDITION,
                      "etcdserver: bad leader transferee");
        return;
    }
    if (err != 0) {
        cluster_fail(call, err);
        return;
    }
    Etcdserverpb__ResponseHeader h;
    header_of(c, true, &h); /* a Maintenance response in etcd: with the revision */
    Etcdserverpb__MoveLeaderResponse r = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
    r.header = &h;
    api_call_reply_pb(call, &r.base);
}

static void maint_move_leader(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Etcdserverpb__MoveLeaderRequest *in = (Etcdserverpb__MoveLeaderRequest *)api_call_unpack(
        call, &etcdserverpb__move_leader_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    raft_id target = in->targetid;
    protobuf_c_message_free_unpacked(&in->base, NULL);
    if (!is_leader(c)) {
        cluster_fail(call, LATCH_ENOTLEADER);
        return;
    }
    const struct srv_member *m = srv_members_find(srv_node_members(c->cfg.node), target);
    if (target == RAFT_NONE || m == NULL || m->learner) {
        api_call_fail(call, API_GRPC_STATUS_FAILED_PRECONDITION,
                      "etcdserver: bad leader transferee");
        return;
    }
    struct cluster_wait *w = malloc(sizeof(*w));
    if (w == NULL) {
        cluster_fail(call, LATCH_ENOMEM);
        return;
    }
    *w = (struct cluster_wait){.c = c, .call = call};
    uint32_t timeout = c->cfg.move_leader_timeout_ms != 0 ? c->cfg.move_leader_timeout_ms : 5000u;
    int rv = srv_node_transfer_leader(c->cfg.node, target, timeout, move_done, w);
    if (rv != 0) {
        free(w);
        cluster_fail(call, rv);
    }
}

/* ---- peer RPCs --------------------------------------------------------------------- */

static void peer_members(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &latch__raft__v1__members_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    const struct srv_members *ms = srv_node_members(c->cfg.node);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Latch__Raft__V1__Member *msgs = latch_arena_calloc(&a, ms->count + 1, sizeof(*msgs));
    Latch__Raft__V1__Member **ptrs = latch_arena_calloc(&a, ms->count + 1, sizeof(*ptrs));
    char **urls =
        latch_arena_calloc(&a, (size_t)ms->count * SRV_MEMBER_URLS_MAX + 1, sizeof(*urls));
    if (msgs == NULL || ptrs == NULL || urls == NULL) {
        latch_arena_close(&a);
        cluster_fail(call, LATCH_ENOMEM);
        return;
    }
    for (uint32_t i = 0; i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        latch__raft__v1__member__init(&msgs[i]);
        msgs[i].id = m->id;
        msgs[i].name = (char *)srv_member_name(ms, m);
        msgs[i].is_learner = m->learner;
        msgs[i].peer_urls = urls + (size_t)i * SRV_MEMBER_URLS_MAX;
        msgs[i].n_peer_urls = m->peer_urls_count;
        for (size_t k = 0; k < m->peer_urls_count; k++) {
            msgs[i].peer_urls[k] = (char *)srv_member_peer_url(ms, m, k);
        }
        ptrs[i] = &msgs[i];
    }
    Latch__Raft__V1__MembersResponse r = LATCH__RAFT__V1__MEMBERS_RESPONSE__INIT;
    r.cluster_id = c->cfg.cluster_id;
    r.members = ptrs;
    r.n_members = ms->count;
    r.bootstrap_voters = c->bootstrap;
    r.n_bootstrap_voters = c->cfg.bootstrap_voters_count;
    api_call_reply_pb(call, &r.base);
    latch_arena_close(&a);
}

static void publish_done(void *data, int err, raft_id id)
{
    (void)id;
    struct api_call *call = data;
    if (err != 0) {
        cluster_fail(call, err);
        return;
    }
    Latch__Raft__V1__PublishResponse r = LATCH__RAFT__V1__PUBLISH_RESPONSE__INIT;
    api_call_reply_pb(call, &r.base);
}

static void peer_publish(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_cluster *c = data;
    Latch__Raft__V1__PublishRequest *in = (Latch__Raft__V1__PublishRequest *)api_call_unpack(
        call, &latch__raft__v1__publish_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    int rv = 0;
    if (in->cluster_id != c->cfg.cluster_id) {
        rv = LATCH_ENOTMEMBER;
    } else if (!is_leader(c)) {
        rv = LATCH_ELEADERCHANGED;
    } else if (in->name == NULL || in->name[0] == '\0' || strlen(in->name) > SRV_MEMBER_NAME_MAX) {
        rv = LATCH_EINVAL;
    } else {
        struct srv_node_member_change ch = {
            .type = RAFT_CC_UPDATE, .id = in->id, .attrs = {.name = in->name}};
        rv = srv_node_change_members(c->cfg.node, &ch, publish_done, call);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
    if (rv != 0) {
        cluster_fail(call, rv);
    }
}

static void publish_relayed(
    int grpc_status, const char *message, const uint8_t *resp, size_t resp_len, void *data)
{
    (void)resp;
    (void)resp_len;
    struct srv_cluster *c = data;
    c->publishing = false;
    if (grpc_status != 0) {
        latch_log(LATCH_LOG_INFO, "latchd: publishing this member's name: status %d: %s",
                  grpc_status, message);
    }
}

static void publish_local(void *data, int err, raft_id id)
{
    (void)id;
    struct srv_cluster *c = data;
    c->publishing = false;
    if (err != 0) {
        latch_log(LATCH_LOG_INFO, "latchd: publishing this member's name: %s", latch_strerror(err));
    }
}

int srv_cluster_publish(struct srv_cluster *c, const char *name)
{
    if (c->publishing) {
        return LATCH_ESTATE;
    }
    struct srv_node_status st;
    srv_node_status(c->cfg.node, &st);
    if (st.leader == RAFT_NONE) {
        return LATCH_ENOLEADER;
    }
    int rv;
    if (is_leader(c)) {
        struct srv_node_member_change ch = {
            .type = RAFT_CC_UPDATE, .id = c->cfg.member_id, .attrs = {.name = name}};
        rv = srv_node_change_members(c->cfg.node, &ch, publish_local, c);
    } else {
        struct api_channel *chan = leader_channel(c, st.leader);
        Latch__Raft__V1__PublishRequest r = LATCH__RAFT__V1__PUBLISH_REQUEST__INIT;
        r.cluster_id = c->cfg.cluster_id;
        r.id = c->cfg.member_id;
        r.name = (char *)name;
        uint8_t buf[512];
        size_t n = protobuf_c_message_get_packed_size(&r.base);
        if (chan == NULL || n > sizeof(buf)) {
            return LATCH_ENOLEADER;
        }
        protobuf_c_message_pack(&r.base, buf);
        struct api_call_opts opts = {.timeout_ms = CLUSTER_FORWARD_TIMEOUT_MS};
        rv = api_channel_unary(chan, PEER_PATH_PREFIX "Publish", buf, n, &opts, publish_relayed, c);
    }
    if (rv == 0) {
        c->publishing = true;
    }
    return rv;
}

static void check_answered(
    int grpc_status, const char *message, const uint8_t *resp, size_t resp_len, void *data)
{
    (void)message;
    struct srv_cluster *c = data;
    if (c->check != NULL) {
        api_channel_close(c->check, NULL, NULL);
        c->check = NULL;
    }
    Latch__Raft__V1__MembersResponse *r =
        grpc_status == 0 ? latch__raft__v1__members_response__unpack(NULL, resp_len, resp) : NULL;
    if (r == NULL) {
        return;
    }
    bool listed = false;
    for (size_t i = 0; i < r->n_members; i++) {
        listed = listed || r->members[i]->id == c->cfg.member_id;
    }
    bool removed = r->cluster_id == c->cfg.cluster_id && r->n_members > 0 && !listed;
    latch__raft__v1__members_response__free_unpacked(r, NULL);
    c->check_cb(c->check_data, removed);
}

int srv_cluster_check_removed(struct srv_cluster *c,
                              void (*cb)(void *data, bool removed),
                              void *data)
{
    if (c->check != NULL) {
        return LATCH_ESTATE;
    }
    const struct srv_members *ms = srv_node_members(c->cfg.node);
    const struct srv_member *m = NULL;
    for (uint32_t k = 0; k < ms->count && m == NULL; k++) {
        const struct srv_member *x = &ms->m[(c->check_turn + k) % ms->count];
        if (x->id != c->cfg.member_id && x->peer_urls_count > 0) {
            m = x;
            c->check_turn += k + 1;
        }
    }
    if (m == NULL) {
        return LATCH_ENOTFOUND;
    }
    const char *urls[SRV_MEMBER_URLS_MAX];
    for (size_t i = 0; i < m->peer_urls_count; i++) {
        urls[i] = srv_member_peer_url(ms, m, i);
    }
    struct api_channel_config cc = {
        .endpoints = urls, .endpoints_count = m->peer_urls_count, .tls = c->cfg.peer_tls};
    if (api_channel_new(c->cfg.loop, &cc, &c->check) != 0) {
        c->check = NULL;
        return LATCH_ENOMEM;
    }
    c->check_cb = cb;
    c->check_data = data;
    struct api_call_opts opts = {.timeout_ms = 2000};
    static const uint8_t empty[1];
    if (api_channel_unary(c->check, PEER_PATH_PREFIX "Members", empty, 0, &opts, check_answered,
                          c) != 0) {
        api_channel_close(c->check, NULL, NULL);
        c->check = NULL;
        return LATCH_ENOMEM;
    }
    return 0;
}

/* ---- registration ------------------------------------------------------------------ */

int srv_cluster_register(struct api_server *clients,
                         struct api_server *peers,
                         const struct srv_cluster_config *cfg,
                         struct srv_cluster **out)
{
    struct srv_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return LATCH_ENOMEM;
    }
    c->cfg = *cfg;
    c->bootstrap = calloc(cfg->bootstrap_voters_count + 1, sizeof(*c->bootstrap));
    if (c->bootstrap == NULL) {
        free(c);
        return LATCH_ENOMEM;
    }
    if (cfg->bootstrap_voters_count > 0) {
        memcpy(c->bootstrap, cfg->bootstrap_voters,
               cfg->bootstrap_voters_count * sizeof(*c->bootstrap));
    }
    c->cfg.bootstrap_voters = c->bootstrap;
    static const struct {
        const char *path;
        api_unary_fn fn;
        bool peer;
    } methods[] = {
        {"/etcdserverpb.Cluster/MemberList", cluster_member_list, false},
        {"/etcdserverpb.Cluster/MemberAdd", cluster_member_add, false},
        {"/etcdserverpb.Cluster/MemberRemove", cluster_member_remove, false},
        {"/etcdserverpb.Cluster/MemberUpdate", cluster_member_update, false},
        {"/etcdserverpb.Cluster/MemberPromote", cluster_member_promote, false},
        {"/etcdserverpb.Maintenance/MoveLeader", maint_move_leader, false},
        {PEER_PATH_PREFIX "Members", peer_members, true},
        {PEER_PATH_PREFIX "Publish", peer_publish, true},
        {PEER_PATH_PREFIX "MemberAdd", cluster_member_add, true},
        {PEER_PATH_PREFIX "MemberRemove", cluster_member_remove, true},
        {PEER_PATH_PREFIX "MemberUpdate", cluster_member_update, true},
        {PEER_PATH_PREFIX "MemberPromote", cluster_member_promote, true},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct api_server *s = methods[i].peer ? peers : clients;
        int rc = s != NULL ? api_server_register_unary(s, methods[i].path, methods[i].fn, c) : 0;
        if (rc != 0) {
            srv_cluster_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void srv_cluster_close(struct srv_cluster *c)
{
    if (c != NULL && c->fwd != NULL) {
        api_channel_close(c->fwd, NULL, NULL);
        c->fwd = NULL;
    }
    if (c != NULL && c->check != NULL) {
        api_channel_close(c->check, NULL, NULL);
        c->check = NULL;
    }
}

void srv_cluster_free(struct srv_cluster *c)
{
    if (c != NULL) {
        free(c->bootstrap);
        free(c);
    }
}
