/*
 * svc_lease.c — etcd's Lease service (see svc_lease.h).
 *
 * Like svc_kv.c, a request waiting for the node is a heap object holding a copy of what the
 * answer needs (ids, node, keeper), never a pointer to the service. A keep-alive stream is a
 * struct ka_stream: it counts the renewals still waiting (a checkpoint reset or a ReadIndex)
 * and is freed once its call is finished and none is waiting.
 */
#include "svc_lease.h"

#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"

#define LEASE_LIST_PAGE 1024u

struct srv_lease {
    struct srv_node *node;
    struct srv_lease_keeper *keeper;
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t min_ttl;
};

static void
header_fill(const struct srv_lease *l, int64_t revision, Etcdserverpb__ResponseHeader *h)
{
    struct srv_node_status st;
    srv_node_status(l->node, &st);
    etcdserverpb__response_header__init(h);
    h->cluster_id = l->cluster_id;
    h->member_id = l->member_id;
    h->revision = revision;
    h->raft_term = st.term;
}

/* The current store revision (for answers that change nothing). */
static int64_t current_revision(const struct srv_lease *l)
{
    struct store_status ss;
    return store_status(srv_node_reader(l->node), &ss) == 0 ? ss.revision : 0;
}

/* etcd's status for err, with the leader-only refusals of svc_lease.h. */
static int lease_status(int err, char *msg, size_t cap)
{
    if (err == LATCH_ENOLEADER) {
        snprintf(msg, cap, "etcdserver: no leader");
        return API_GRPC_STATUS_UNAVAILABLE;
    }
    if (err == LATCH_ENOTLEADER) {
        snprintf(msg, cap, "etcdserver: not the leader for leases");
        return API_GRPC_STATUS_UNAVAILABLE;
    }
    return etcd_status(err, NULL, msg, cap);
}

static void fail(struct api_call *call, int err)
{
    char msg[ETCD_STATUS_MSG_MAX];
    int status = lease_status(err, msg, sizeof(msg));
    api_call_fail(call, status, msg);
}

/* ---- Grant and Revoke: proposals ---------------------------------------------------- */

enum lease_kind { LEASE_GRANT, LEASE_REVOKE, LEASE_TTL, LEASE_LEASES };

struct lease_wait {
    struct api_call *call;
    struct srv_lease ids; /* a copy: the service may be freed before the node answers */
    enum lease_kind kind;
    int64_t id;
    bool keys;
};

static void proposal_done(void *data, int err, const struct store_result *res)
{
    struct lease_wait *w = data;
    struct api_call *call = w->call;
    if (err == 0 && res->err != 0) {
        err = res->err;
    }
    if (err != 0) {
        fail(call, err);
        free(w);
        return;
    }
    Etcdserverpb__ResponseHeader hdr;
    header_fill(&w->ids, res->revision, &hdr);
    if (w->kind == LEASE_GRANT) {
        srv_lease_keeper_granted(w->ids.keeper, res->u.lease_grant.id, res->u.lease_grant.ttl);
        Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
        resp.header = &hdr;
        resp.id = res->u.lease_grant.id;
        resp.ttl = res->u.lease_grant.ttl;
        api_call_reply_pb(call, &resp.base);
    } else {
        srv_lease_keeper_revoked(w->ids.keeper, w->id);
        Etcdserverpb__LeaseRevokeResponse resp = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
        resp.header = &hdr;
        api_call_reply_pb(call, &resp.base);
    }
    free(w);
}

static void
propose(struct srv_lease *l, struct api_call *call, const struct store_cmd *c, int64_t id)
{
    size_t size = store_cmd_size(c);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    struct lease_wait *w = calloc(1, sizeof(*w));
    size_t len = 0;
    int rc = buf == NULL || w == NULL ? LATCH_ENOMEM : store_cmd_encode(c, buf, size, &len);
    if (rc == 0) {
        w->call = call;
        w->ids = *l;
        w->kind = c->type == STORE_CMD_LEASE_GRANT ? LEASE_GRANT : LEASE_REVOKE;
        w->id = id;
        rc = srv_node_propose(l->node, buf, len, proposal_done, w);
    }
    free(buf); /* the node copied it */
    if (rc != 0) {
        free(w);
        fail(call, rc);
    }
}

static void lease_grant(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_lease *l = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__lease_grant_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Etcdserverpb__LeaseGrantRequest *in = (const Etcdserverpb__LeaseGrantRequest *)m;
    int64_t ttl = in->ttl > l->min_ttl ? in->ttl : l->min_ttl;
    int64_t id = in->id;
    protobuf_c_message_free_unpacked(m, NULL);
    if (ttl > STORE_LEASE_TTL_MAX) {
        api_call_fail(call, API_GRPC_STATUS_OUT_OF_RANGE, "etcdserver: too large lease TTL");
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    propose(l, call, &c, id);
}

static void lease_revoke(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__lease_revoke_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    int64_t id = ((const Etcdserverpb__LeaseRevokeRequest *)m)->id;
    protobuf_c_message_free_unpacked(m, NULL);
    if (id <= 0) {
        fail(call, LATCH_ENOTFOUND);
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = id;
    propose(data, call, &c, id);
}

/* ---- TimeToLive and Leases: reads after a ReadIndex --------------------------------- */

static void ttl_serve(const struct lease_wait *w)
{
    const struct srv_lease *l = &w->ids;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int64_t remaining = 0;
    int rc = srv_lease_keeper_remaining(l->keeper, w->id, &remaining);
    struct store_lease sl;
    struct store_kv *kvs = NULL;
    size_t n = 0;
    if (rc == 0) {
        rc = store_lease_get(srv_node_reader(l->node), w->id, w->keys, &a, &sl, &kvs, &n);
    }
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    header_fill(l, current_revision(l), &hdr);
    resp.header = &hdr;
    resp.id = w->id;
    if (rc == LATCH_ENOTFOUND) {
        resp.ttl = -1; /* etcd: not an error */
    } else if (rc != 0) {
        fail(w->call, rc);
        latch_arena_close(&a);
        return;
    } else {
        resp.ttl = remaining;
        resp.grantedttl = sl.ttl;
        if (n > 0) {
            resp.keys = latch_arena_calloc(&a, n, sizeof(*resp.keys));
            if (resp.keys == NULL) {
                fail(w->call, LATCH_ENOMEM);
                latch_arena_close(&a);
                return;
            }
            for (size_t i = 0; i < n; i++) {
                resp.keys[i].data = (uint8_t *)(uintptr_t)kvs[i].key;
                resp.keys[i].len = kvs[i].key_len;
            }
            resp.n_keys = n;
        }
    }
    api_call_reply_pb(w->call, &resp.base);
    latch_arena_close(&a);
}

static void leases_serve(const struct lease_wait *w)
{
    const struct srv_lease *l = &w->ids;
    struct store_reader *r = srv_node_reader(l->node);
    struct latch_arena a, page;
    latch_arena_init(&a, 0);
    latch_arena_init(&page, 0);
    Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    size_t cap = 0;
    int64_t after = 0;
    int rc = 0;
    for (;;) {
        struct store_lease *ls = NULL;
        size_t n = 0;
        latch_arena_reset(&page);
        rc = store_lease_list(r, after, LEASE_LIST_PAGE, &page, &ls, &n);
        if (rc != 0 || n == 0) {
            break;
        }
        if (resp.n_leases + n > cap) {
            size_t ncap = cap == 0 ? 64 : cap;
            while (ncap < resp.n_leases + n) {
                ncap *= 2;
            }
            Etcdserverpb__LeaseStatus **v = latch_arena_calloc(&a, ncap, sizeof(*v));
            if (v == NULL) {
                rc = LATCH_ENOMEM;
                break;
            }
            if (resp.n_leases > 0) {
                memcpy(v, resp.leases, resp.n_leases * sizeof(*v));
            }
            resp.leases = v;
            cap = ncap;
        }
        for (size_t i = 0; i < n; i++) {
            Etcdserverpb__LeaseStatus *s = latch_arena_alloc(&a, sizeof(*s));
            if (s == NULL) {
                rc = LATCH_ENOMEM;
                break;
            }
            etcdserverpb__lease_status__init(s);
            s->id = ls[i].id;
            resp.leases[resp.n_leases++] = s;
            after = ls[i].id;
        }
        if (rc != 0 || n < LEASE_LIST_PAGE) {
            break;
        }
    }
    if (rc != 0) {
        fail(w->call, rc);
    } else {
        Etcdserverpb__ResponseHeader hdr;
        header_fill(l, current_revision(l), &hdr);
        resp.header = &hdr;
        api_call_reply_pb(w->call, &resp.base);
    }
    latch_arena_close(&page);
    latch_arena_close(&a);
}

static void read_done(void *data, int err)
{
    struct lease_wait *w = data;
    if (err != 0) {
        fail(w->call, err);
    } else if (w->kind == LEASE_TTL) {
        ttl_serve(w);
    } else {
        leases_serve(w);
    }
    free(w);
}

static void
read_then(struct srv_lease *l, struct api_call *call, enum lease_kind kind, int64_t id, bool keys)
{
    struct lease_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        fail(call, LATCH_ENOMEM);
        return;
    }
    *w = (struct lease_wait){.call = call, .ids = *l, .kind = kind, .id = id, .keys = keys};
    int rc = srv_node_read_index(l->node, read_done, w);
    if (rc != 0) {
        free(w);
        fail(call, rc);
    }
}

static void lease_ttl(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__lease_time_to_live_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Etcdserverpb__LeaseTimeToLiveRequest *in =
        (const Etcdserverpb__LeaseTimeToLiveRequest *)m;
    int64_t id = in->id;
    bool keys = in->keys;
    protobuf_c_message_free_unpacked(m, NULL);
    read_then(data, call, LEASE_TTL, id, keys);
}

static void lease_leases(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__lease_leases_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    read_then(data, call, LEASE_LEASES, 0, false);
}

/* ---- KeepAlive: a bidirectional stream ---------------------------------------------- */

struct ka_stream {
    struct api_call *call; /* NULL once finished */
    struct srv_lease ids;
    unsigned pending; /* renewals whose answer is still to come */
    bool half_closed;
    bool dead;
};

struct ka_renewal {
    struct ka_stream *s;
    int64_t id;
};

static void ka_maybe_free(struct ka_stream *s)
{
    if (s->call == NULL && s->pending == 0) {
        free(s);
    }
}

static void ka_finish(struct ka_stream *s, int err)
{
    if (s->call == NULL) {
        return;
    }
    struct api_call *call = s->call;
    s->call = NULL;
    if (err == 0) {
        api_call_finish(call, API_GRPC_STATUS_OK, NULL);
    } else {
        char msg[ETCD_STATUS_MSG_MAX];
        int status = lease_status(err, msg, sizeof(msg));
        api_call_finish(call, status, msg);
    }
}

/* After a reply or an end: finish when the client is done (half-close or gone) and nothing
 * is pending. */
static void ka_settle(struct ka_stream *s)
{
    if (s->call != NULL && s->pending == 0 && (s->half_closed || s->dead)) {
        ka_finish(s, 0);
    }
    ka_maybe_free(s);
}

static void ka_writable(struct api_call *call, void *data)
{
    (void)data;
    api_call_resume_recv(call);
}

static void ka_reply(struct ka_stream *s, int64_t id, int64_t ttl)
{
    if (s->call == NULL || s->dead) {
        return;
    }
    Etcdserverpb__ResponseHeader hdr;
    header_fill(&s->ids, current_revision(&s->ids), &hdr);
    Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    resp.header = &hdr;
    resp.id = id;
    resp.ttl = ttl;
    bool would_block = false;
    int rc = api_call_send_pb(s->call, &resp.base, &would_block);
    if (rc == 0 && would_block) {
        /* A client that sends without reading is held back by flow control. */
        api_call_pause_recv(s->call);
        api_call_on_writable(s->call, ka_writable, NULL);
    }
}

static void ka_renewed(void *data, int err, int64_t ttl)
{
    struct ka_renewal *r = data;
    struct ka_stream *s = r->s;
    int64_t id = r->id;
    free(r);
    s->pending--;
    if (err != 0) {
        ka_finish(s, err);
    } else {
        ka_reply(s, id, ttl);
    }
    ka_settle(s);
}

static void ka_cancel(struct api_call *call, void *data)
{
    (void)call;
    struct ka_stream *s = data;
    s->dead = true;
    ka_settle(s);
}

static void ka_start(void *data, struct api_call *call)
{
    struct srv_lease *l = data;
    struct ka_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        api_call_finish(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    s->call = call;
    s->ids = *l;
    api_call_set_context(call, s);
    api_call_on_cancel(call, ka_cancel, s);
}

static void ka_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    struct ka_stream *s = api_call_context(call);
    if (s == NULL) {
        return; /* ka_start could not allocate and finished the call */
    }
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__lease_keep_alive_request__descriptor, msg, len);
    if (m == NULL) {
        s->call = NULL; /* answered (and consumed) by api_call_unpack */
        ka_maybe_free(s);
        return;
    }
    int64_t id = ((const Etcdserverpb__LeaseKeepAliveRequest *)m)->id;
    protobuf_c_message_free_unpacked(m, NULL);
    struct ka_renewal *r = malloc(sizeof(*r));
    if (r == NULL) {
        ka_finish(s, LATCH_ENOMEM);
        ka_maybe_free(s);
        return;
    }
    r->s = s;
    r->id = id;
    int64_t ttl = 0;
    int rc = srv_lease_keeper_renew(s->ids.keeper, id, ka_renewed, r, &ttl);
    if (rc == SRV_LEASE_PENDING) {
        s->pending++;
        return;
    }
    free(r);
    if (rc != 0) {
        ka_finish(s, rc);
        ka_maybe_free(s);
        return;
    }
    ka_reply(s, id, ttl);
}

static void ka_half_close(void *data, struct api_call *call)
{
    (void)data;
    struct ka_stream *s = api_call_context(call);
    if (s == NULL) {
        return;
    }
    s->half_closed = true;
    ka_settle(s);
}

/* ---- registration ------------------------------------------------------------------- */

int srv_lease_register(struct api_server *s,
                       const struct srv_lease_svc_config *cfg,
                       struct srv_lease **out)
{
    if (cfg->node == NULL || cfg->keeper == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_lease *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return LATCH_ENOMEM;
    }
    l->node = cfg->node;
    l->keeper = cfg->keeper;
    l->cluster_id = cfg->cluster_id;
    l->member_id = cfg->member_id;
    l->min_ttl = cfg->min_ttl > 0 ? cfg->min_ttl : SRV_LEASE_MIN_TTL_DEFAULT;
    static const struct {
        const char *path;
        api_unary_fn fn;
    } unary[] = {
        {"/etcdserverpb.Lease/LeaseGrant", lease_grant},
        {"/etcdserverpb.Lease/LeaseRevoke", lease_revoke},
        {"/etcdserverpb.Lease/LeaseTimeToLive", lease_ttl},
        {"/etcdserverpb.Lease/LeaseLeases", lease_leases},
    };
    for (size_t i = 0; i < sizeof(unary) / sizeof(unary[0]); i++) {
        int rc = api_server_register_unary(s, unary[i].path, unary[i].fn, l);
        if (rc != 0) {
            free(l);
            return rc;
        }
    }
    static const struct api_stream_handler ka = {
        .start = ka_start, .message = ka_message, .half_close = ka_half_close};
    int rc = api_server_register_bidi_stream(s, "/etcdserverpb.Lease/LeaseKeepAlive", &ka, l);
    if (rc != 0) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void srv_lease_free(struct srv_lease *l)
{
    free(l);
}
