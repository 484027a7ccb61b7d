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
#include "grpc_client.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"
#include "peer.h"
#include "store.h"

#define LEASE_LIST_PAGE 1024u

/* Bound of one forwarded request, all its attempts together (etcd: its request timeout, 5 s
 * by default), and the pause before trying again while no leader answers (etcd's follower
 * retries at once, or waits for an election when it knows no leader). */
#define LEASE_FWD_TIMEOUT_MS 5000u
#define LEASE_FWD_RETRY_MS   100u

struct fwd;

struct srv_lease {
    struct srv_lease *self; /* the service itself, also in the copies requests hold */
    struct srv_node *node;
    struct srv_lease_keeper *keeper;
    struct srv_peer *peer; /* NULL: no forwarding */
    uv_loop_t *loop;
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t min_ttl;
    struct fwd *waiting; /* forwarded requests waiting to try again (self only) */
    bool stopped;        /* srv_lease_stop: nothing is forwarded any more (self only) */
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

static bool is_leader(const struct srv_lease *l)
{
    struct srv_node_status st;
    srv_node_status(l->node, &st);
    return st.role == RAFT_LEADER;
}

/* ---- forwarding a follower's KeepAlive and TimeToLive to the leader ------------------ */

struct ka_stream;
static void ka_forwarded(struct ka_stream *s, int err, int64_t id, int64_t ttl);
static void ttl_reply(const struct srv_lease *l,
                      struct api_call *call,
                      int64_t id,
                      int64_t ttl,
                      int64_t granted,
                      ProtobufCBinaryData *keys,
                      size_t n_keys);

enum fwd_kind { FWD_RENEW, FWD_TTL };

/*
 * One forwarded request, from fwd_start until it is answered: while a unary call to the
 * leader is in flight it is the call's (fwd_done), while it waits to try again it is in the
 * service's waiting list with its timer armed. Freed through its timer's close once the timer
 * was used.
 */
struct fwd {
    enum fwd_kind kind;
    struct srv_lease ids;  /* a copy, as struct lease_wait; ids.self is the service */
    struct ka_stream *s;   /* FWD_RENEW: the stream, which counts this as pending */
    struct api_call *call; /* FWD_TTL: the client's call */
    int64_t id;
    bool keys;
    uint64_t deadline_ms; /* uv_now: no attempt starts after it */
    bool timer_used;
    uv_timer_t timer;
    struct fwd *prev, *next; /* in ids.self->waiting */
};

static void
fwd_done(int grpc_status, const char *message, const uint8_t *resp, size_t len, void *data);

static void fwd_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fwd_free(struct fwd *f)
{
    if (f->timer_used) {
        uv_close((uv_handle_t *)&f->timer, fwd_closed);
    } else {
        free(f);
    }
}

/* Answers the client with err (0 is never passed here) and frees f. */
static void fwd_answer_error(struct fwd *f, int err)
{
    if (f->kind == FWD_RENEW) {
        ka_forwarded(f->s, err, f->id, 0);
    } else {
        fail(f->call, err);
    }
    fwd_free(f);
}

/* Sends f to the leader this node knows. Returns 0 (fwd_done runs later, once) or, with f
 * still the caller's: LATCH_ENOLEADER (none known), LATCH_ELEADERCHANGED (this node became
 * the leader meanwhile: the client asks again and is served here), LATCH_ESHUTDOWN, the
 * channel's errors. */
static int fwd_send(struct fwd *f)
{
    if (f->ids.self->stopped) {
        return LATCH_ESHUTDOWN;
    }
    struct srv_node_status st;
    srv_node_status(f->ids.node, &st);
    if (st.leader == RAFT_NONE) {
        return LATCH_ENOLEADER;
    }
    if (st.leader == st.id) {
        return LATCH_ELEADERCHANGED;
    }
    struct api_channel *ch = srv_peer_channel(f->ids.peer, st.leader);
    if (ch == NULL) {
        return LATCH_ENOLEADER;
    }
    uint8_t buf[64];
    size_t len;
    const char *path;
    if (f->kind == FWD_RENEW) {
        Latch__Raft__V1__LeaseRenewRequest r = LATCH__RAFT__V1__LEASE_RENEW_REQUEST__INIT;
        r.cluster_id = f->ids.cluster_id;
        r.id = f->id;
        LATCH_ASSERT(latch__raft__v1__lease_renew_request__get_packed_size(&r) <= sizeof(buf));
        len = latch__raft__v1__lease_renew_request__pack(&r, buf);
        path = SRV_PEER_LEASE_RENEW_PATH;
    } else {
        Latch__Raft__V1__LeaseTimeToLiveRequest r =
            LATCH__RAFT__V1__LEASE_TIME_TO_LIVE_REQUEST__INIT;
        r.cluster_id = f->ids.cluster_id;
        r.id = f->id;
        r.keys = f->keys;
        LATCH_ASSERT(latch__raft__v1__lease_time_to_live_request__get_packed_size(&r) <=
                     sizeof(buf));
        len = latch__raft__v1__lease_time_to_live_request__pack(&r, buf);
        path = SRV_PEER_LEASE_TTL_PATH;
    }
    uint64_t now = uv_now(f->ids.loop);
    uint64_t left = f->deadline_ms > now ? f->deadline_ms - now : 1;
    struct api_call_opts o = {.timeout_ms = left};
    return api_channel_unary(ch, path, buf, len, &o, fwd_done, f);
}

static void fwd_unlink(struct fwd *f)
{
    struct srv_lease *svc = f->ids.self;
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else {
        svc->waiting = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    f->prev = f->next = NULL;
}

static void fwd_try(struct fwd *f);
static void fwd_wait(struct fwd *f);

static void fwd_timer_cb(uv_timer_t *t)
{
    struct fwd *f = t->data;
    fwd_unlink(f);
    fwd_try(f);
}

/*
 * f could not be sent now (no leader known) or its attempt failed (the leader went away or
 * lost leadership): unless f's deadline is too near, wait LEASE_FWD_RETRY_MS and try again
 * (always through the timer: an attempt on a failing channel fails from a zero-delay
 * callback, and trying again from there at once would spin the loop without time passing).
 * At the deadline answer as etcd's follower does: "no leader" when none is known, else
 * "request timed out".
 */
static void fwd_wait(struct fwd *f)
{
    struct srv_lease *svc = f->ids.self;
    if (svc->stopped) {
        fwd_answer_error(f, LATCH_ESHUTDOWN);
        return;
    }
    if (uv_now(f->ids.loop) + LEASE_FWD_RETRY_MS >= f->deadline_ms) {
        struct srv_node_status st;
        srv_node_status(f->ids.node, &st);
        fwd_answer_error(f, st.leader == RAFT_NONE ? LATCH_ENOLEADER : LATCH_ETIMEDOUT);
        return;
    }
    if (!f->timer_used) {
        uv_timer_init(f->ids.loop, &f->timer);
        f->timer.data = f;
        f->timer_used = true;
    }
    f->next = svc->waiting;
    if (svc->waiting != NULL) {
        svc->waiting->prev = f;
    }
    svc->waiting = f;
    uv_timer_start(&f->timer, fwd_timer_cb, LEASE_FWD_RETRY_MS, 0);
}

/* Sends f, or waits to try again (fwd_wait). Answered at once: this node became the leader
 * ("leader changed": the client asks again and is served here), a stopped service, no
 * memory. */
static void fwd_try(struct fwd *f)
{
    int rc = fwd_send(f);
    if (rc == 0) {
        return;
    }
    if (rc == LATCH_ESHUTDOWN || rc == LATCH_ELEADERCHANGED || rc == LATCH_ENOMEM) {
        fwd_answer_error(f, rc);
        return;
    }
    fwd_wait(f);
}

static void
fwd_done(int grpc_status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct fwd *f = data;
    if (grpc_status != API_GRPC_STATUS_OK) {
        /* Unavailable is expected while the leader changes (one line per request): debug. */
        latch_log(grpc_status == API_GRPC_STATUS_UNAVAILABLE ? LATCH_LOG_DEBUG : LATCH_LOG_WARN,
                  "lease: forwarding %s of lease %lld failed: %d %s",
                  f->kind == FWD_RENEW ? "keep-alive" : "time-to-live", (long long)f->id,
                  grpc_status, message);
        if (grpc_status == API_GRPC_STATUS_UNAVAILABLE) {
            /* The leader went away or is not the leader any more ("not the leader for
             * leases"): ask whichever leader is known next, as etcd's follower loops until
             * its deadline. */
            fwd_wait(f);
            return;
        }
        fwd_answer_error(f, grpc_status == API_GRPC_STATUS_DEADLINE_EXCEEDED ? LATCH_ETIMEDOUT
                            : grpc_status == API_GRPC_STATUS_CANCELLED       ? LATCH_ESHUTDOWN
                                                                             : LATCH_EPROTO);
        return;
    }
    if (f->kind == FWD_RENEW) {
        Latch__Raft__V1__LeaseRenewResponse *r =
            latch__raft__v1__lease_renew_response__unpack(NULL, len, resp);
        if (r == NULL) {
            fwd_answer_error(f, LATCH_EPROTO);
            return;
        }
        ka_forwarded(f->s, 0, f->id, r->ttl > 0 ? r->ttl : 0);
        latch__raft__v1__lease_renew_response__free_unpacked(r, NULL);
    } else {
        Latch__Raft__V1__LeaseTimeToLiveResponse *r =
            latch__raft__v1__lease_time_to_live_response__unpack(NULL, len, resp);
        if (r == NULL) {
            fwd_answer_error(f, LATCH_EPROTO);
            return;
        }
        ttl_reply(&f->ids, f->call, f->id, r->ttl < 0 ? -1 : r->ttl, r->granted_ttl, r->keys,
                  r->n_keys);
        latch__raft__v1__lease_time_to_live_response__free_unpacked(r, NULL);
    }
    fwd_free(f);
}

/* Forwards a request to the leader. Returns 0: answered later (or, when the service is
 * stopped or out of memory, already), through ka_forwarded or on call. LATCH_ENOMEM: nothing
 * was done. */
static int fwd_start(const struct srv_lease *l,
                     enum fwd_kind kind,
                     struct ka_stream *s,
                     struct api_call *call,
                     int64_t id,
                     bool keys)
{
    struct fwd *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return LATCH_ENOMEM;
    }
    *f = (struct fwd){.kind = kind, .ids = *l, .s = s, .call = call, .id = id, .keys = keys};
    f->deadline_ms = uv_now(l->loop) + LEASE_FWD_TIMEOUT_MS;
    fwd_try(f);
    return 0;
}

/* ---- Grant and Revoke: proposals ---------------------------------------------------- */

enum lease_kind { LEASE_GRANT, LEASE_REVOKE, LEASE_TTL, LEASE_LEASES, LEASE_PEER_TTL };

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

/*
 * Remaining TTL, granted TTL and (when keys) the attached keys (into a) of lease id, as the
 * leader knows them. Returns 0, LATCH_ENOTFOUND, LATCH_ENOTLEADER / LATCH_ENOLEADER (not the
 * leader) or the keeper's and store's errors.
 */
static int ttl_lookup(const struct srv_lease *l,
                      int64_t id,
                      bool keys,
                      struct latch_arena *a,
                      int64_t *remaining,
                      int64_t *granted,
                      struct store_kv **kvs,
                      size_t *n)
{
    *remaining = 0;
    *granted = 0;
    *kvs = NULL;
    *n = 0;
    struct store_lease sl;
    int rc = srv_lease_keeper_remaining(l->keeper, id, remaining);
    if (rc == 0) {
        rc = store_lease_get(srv_node_reader(l->node), id, keys, a, &sl, kvs, n);
    }
    if (rc == 0) {
        *granted = sl.ttl;
    }
    return rc;
}

/* Answers a client's TimeToLive (ttl -1: unknown lease) with this member's header. */
static void ttl_reply(const struct srv_lease *l,
                      struct api_call *call,
                      int64_t id,
                      int64_t ttl,
                      int64_t granted,
                      ProtobufCBinaryData *keys,
                      size_t n_keys)
{
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr;
    header_fill(l, current_revision(l), &hdr);
    resp.header = &hdr;
    resp.id = id;
    resp.ttl = ttl;
    if (ttl >= 0) {
        resp.grantedttl = granted;
        resp.keys = keys;
        resp.n_keys = n_keys;
    }
    api_call_reply_pb(call, &resp.base);
}

/* kvs[0..n) as bytes in a; NULL when out of memory (or n is 0). */
static ProtobufCBinaryData *keys_of(struct latch_arena *a, const struct store_kv *kvs, size_t n)
{
    ProtobufCBinaryData *keys = n > 0 ? latch_arena_calloc(a, n, sizeof(*keys)) : NULL;
    for (size_t i = 0; keys != NULL && i < n; i++) {
        keys[i].data = (uint8_t *)(uintptr_t)kvs[i].key;
        keys[i].len = kvs[i].key_len;
    }
    return keys;
}

/* A client's TimeToLive after its ReadIndex: answered here on the leader, forwarded to the
 * leader when this member is not (any more) the leader. */
static void ttl_serve(const struct lease_wait *w)
{
    const struct srv_lease *l = &w->ids;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int64_t remaining, granted;
    struct store_kv *kvs;
    size_t n;
    int rc = ttl_lookup(l, w->id, w->keys, &a, &remaining, &granted, &kvs, &n);
    if (rc == LATCH_ENOTLEADER && l->peer != NULL) {
        rc = fwd_start(l, FWD_TTL, NULL, w->call, w->id, w->keys);
        if (rc != 0) {
            fail(w->call, rc);
        }
    } else if (rc == LATCH_ENOTFOUND) {
        ttl_reply(l, w->call, w->id, -1, 0, NULL, 0); /* etcd: not an error */
    } else if (rc != 0) {
        fail(w->call, rc);
    } else {
        ProtobufCBinaryData *keys = keys_of(&a, kvs, n);
        if (n > 0 && keys == NULL) {
            fail(w->call, LATCH_ENOMEM);
        } else {
            ttl_reply(l, w->call, w->id, remaining, granted, keys, n);
        }
    }
    latch_arena_close(&a);
}

/* A follower's forwarded TimeToLive after the leader's ReadIndex (SRV_PEER_LEASE_TTL_PATH). */
static void peer_ttl_serve(const struct lease_wait *w)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int64_t remaining, granted;
    struct store_kv *kvs;
    size_t n;
    int rc = ttl_lookup(&w->ids, w->id, w->keys, &a, &remaining, &granted, &kvs, &n);
    Latch__Raft__V1__LeaseTimeToLiveResponse resp =
        LATCH__RAFT__V1__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    if (rc == LATCH_ENOTFOUND) {
        resp.ttl = -1;
        rc = 0;
    } else if (rc == 0) {
        resp.ttl = remaining;
        resp.granted_ttl = granted;
        resp.keys = keys_of(&a, kvs, n);
        resp.n_keys = n;
        rc = n > 0 && resp.keys == NULL ? LATCH_ENOMEM : 0;
    }
    if (rc != 0) {
        fail(w->call, rc);
    } else {
        api_call_reply_pb(w->call, &resp.base);
    }
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
    } else if (w->kind == LEASE_PEER_TTL) {
        peer_ttl_serve(w);
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
    struct srv_lease *l = data;
    if (l->peer != NULL && !is_leader(l)) {
        int rc = fwd_start(l, FWD_TTL, NULL, call, id, keys); /* the leader reads */
        if (rc != 0) {
            fail(call, rc);
        }
        return;
    }
    read_then(l, call, LEASE_TTL, id, keys);
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

/* A forwarded renewal's answer (fwd_done). */
static void ka_forwarded(struct ka_stream *s, int err, int64_t id, int64_t ttl)
{
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
    if (rc == LATCH_ENOTLEADER && s->ids.peer != NULL) {
        s->pending++; /* fwd_start may answer (ka_forwarded) before it returns */
        rc = fwd_start(&s->ids, FWD_RENEW, s, NULL, id, false);
        if (rc == 0) {
            return;
        }
        s->pending--;
    }
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
    l->self = l;
    l->node = cfg->node;
    l->keeper = cfg->keeper;
    l->peer = cfg->peer;
    l->loop = cfg->loop;
    if (l->peer != NULL && l->loop == NULL) {
        free(l);
        return LATCH_EINVAL;
    }
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
    if (rc == 0) {
        /* latch.v1's SessionKeepAlive: its request and response are wire-identical to
         * LeaseKeepAlive's (session = ID, ttl_seconds = TTL; latch.proto), so one handler. */
        rc = api_server_register_bidi_stream(s, "/latch.v1.Latch/SessionKeepAlive", &ka, l);
    }
    if (rc != 0) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* ---- the leader's side of forwarding (peer listener) ---------------------------------- */

static void peer_renewed(void *data, int err, int64_t ttl)
{
    struct api_call *call = data;
    if (err != 0) {
        fail(call, err);
        return;
    }
    Latch__Raft__V1__LeaseRenewResponse resp = LATCH__RAFT__V1__LEASE_RENEW_RESPONSE__INIT;
    resp.ttl = ttl;
    api_call_reply_pb(call, &resp.base);
}

static bool peer_cluster_ok(const struct srv_lease *l, struct api_call *call, uint64_t id)
{
    if (id != l->cluster_id) {
        api_call_fail(call, API_GRPC_STATUS_FAILED_PRECONDITION, "cluster id mismatch");
        return false;
    }
    return true;
}

static void peer_lease_renew(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_lease *l = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &latch__raft__v1__lease_renew_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__Raft__V1__LeaseRenewRequest *in = (const Latch__Raft__V1__LeaseRenewRequest *)m;
    uint64_t cluster_id = in->cluster_id;
    int64_t id = in->id;
    protobuf_c_message_free_unpacked(m, NULL);
    if (!peer_cluster_ok(l, call, cluster_id)) {
        return;
    }
    int64_t ttl = 0;
    int rc = srv_lease_keeper_renew(l->keeper, id, peer_renewed, call, &ttl);
    if (rc != SRV_LEASE_PENDING) {
        peer_renewed(call, rc, ttl); /* a follower's renewal is never forwarded again */
    }
}

static void peer_lease_ttl(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_lease *l = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &latch__raft__v1__lease_time_to_live_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__Raft__V1__LeaseTimeToLiveRequest *in =
        (const Latch__Raft__V1__LeaseTimeToLiveRequest *)m;
    uint64_t cluster_id = in->cluster_id;
    int64_t id = in->id;
    bool keys = in->keys;
    protobuf_c_message_free_unpacked(m, NULL);
    if (peer_cluster_ok(l, call, cluster_id)) {
        read_then(l, call, LEASE_PEER_TTL, id, keys);
    }
}

int srv_lease_register_peer(struct api_server *peers, struct srv_lease *l)
{
    int rc = api_server_register_unary(peers, SRV_PEER_LEASE_RENEW_PATH, peer_lease_renew, l);
    if (rc == 0) {
        rc = api_server_register_unary(peers, SRV_PEER_LEASE_TTL_PATH, peer_lease_ttl, l);
    }
    return rc;
}

void srv_lease_stop(struct srv_lease *l)
{
    if (l == NULL) {
        return;
    }
    l->stopped = true;
    while (l->waiting != NULL) {
        struct fwd *f = l->waiting;
        fwd_unlink(f);
        uv_timer_stop(&f->timer);
        fwd_answer_error(f, LATCH_ESHUTDOWN);
    }
}

void srv_lease_free(struct srv_lease *l)
{
    free(l);
}
