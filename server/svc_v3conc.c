/*
 * svc_v3conc.c — etcd's lock and election services on a node (see svc_v3conc.h).
 *
 * A write (Lock, Unlock, Campaign, Proclaim, Resign) is a struct conc_op, linked on the
 * service from its proposal until it is answered; a Lock or Campaign whose key is not the
 * oldest under its prefix stays linked as a waiter, re-checked after every applied batch.
 * An Observe is a struct conc_obs, linked until its call ends. When the service is freed,
 * ops still proposed lose their service pointer (their callback then only answers and frees)
 * and waiters and observers are answered at once.
 */
#include "svc_v3conc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "store.h"
#include "v3electionpb/v3election.pb-c.h"
#include "v3lockpb/v3lock.pb-c.h"

#define V3CONC_ENOTLEADER     "election: not leader"
#define V3CONC_ENOLEADER      "election: no leader"
#define V3CONC_EMISSINGKEY    "\"leader\" field must be provided"
#define V3CONC_HISTORY_EVENTS 256u /* per store_history read of an observer */
#define V3CONC_SESSION_TTL    60   /* s: clientv3/concurrency's default session TTL */

enum op_kind { OP_LOCK, OP_UNLOCK, OP_CAMPAIGN, OP_PROCLAIM, OP_RESIGN };

struct conc_op {
    struct srv_v3conc *svc; /* NULL once the service was freed */
    struct conc_op *prev, *next;
    struct api_call *call;
    enum op_kind kind;
    bool waiting;  /* a Lock/Campaign waiting for the older keys to go */
    uint8_t *name; /* the election or lock name (one allocation with key and value) */
    uint8_t *key;
    uint8_t *value;
    uint8_t *key_buf; /* the key, when made after a lease grant (owned) */
    size_t name_len, key_len, value_len;
    int64_t lease;
    int64_t rev;     /* the key's create revision, once known */
    int64_t hdr_rev; /* Campaign's header revision (its first txn's) */
};

struct conc_obs {
    struct srv_v3conc *svc; /* NULL once the service was freed */
    struct conc_obs *prev, *next;
    struct api_call *call; /* NULL once answered */
    uint8_t *prefix;       /* name + "/" */
    size_t prefix_len;
    uint8_t *key; /* the leader key being followed, when has_leader */
    size_t key_len;
    bool has_leader;
    bool paused;   /* the call's queue is full: fed again from api_call_on_writable */
    bool reading;  /* the read index is out: the callback frees a canceled one */
    bool canceled; /* ended while reading */
    int64_t next_rev;
};

struct srv_v3conc {
    struct srv_node *node;
    struct srv_kv *kv;
    struct srv_lease_keeper *keeper;
    struct conc_op *ops;
    struct conc_obs *observers;
};

/* ---- helpers -------------------------------------------------------------------------- */

/* Fails call as etcd's lock/election server does: its client library's errors reach the
 * gRPC layer as plain errors, so the code is Unknown and the text etcd's. */
static void fail_unknown(struct api_call *call, int err, const char *why)
{
    char msg[ETCD_STATUS_MSG_MAX];
    (void)etcd_status(err, why != NULL && why[0] != '\0' ? why : NULL, msg, sizeof(msg));
    api_call_fail(call, API_GRPC_STATUS_UNKNOWN, msg);
}

static void op_link(struct srv_v3conc *c, struct conc_op *op)
{
    op->svc = c;
    op->prev = NULL;
    op->next = c->ops;
    if (c->ops != NULL) {
        c->ops->prev = op;
    }
    c->ops = op;
}

static void op_unlink(struct conc_op *op)
{
    if (op->svc == NULL) {
        return;
    }
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else {
        op->svc->ops = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    op->prev = op->next = NULL;
    op->svc = NULL;
}

static void op_free(struct conc_op *op)
{
    if (op != NULL) {
        op_unlink(op);
        free(op->name);
        free(op->key_buf);
        free(op);
    }
}

/* An op with copies of name, key and value (each may be empty). */
static struct conc_op *op_new(struct srv_v3conc *c,
                              struct api_call *call,
                              enum op_kind kind,
                              const ProtobufCBinaryData *name,
                              const ProtobufCBinaryData *key,
                              const ProtobufCBinaryData *value)
{
    struct conc_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return NULL;
    }
    size_t total = name->len + key->len + value->len;
    op->name = malloc(total > 0 ? total : 1);
    if (op->name == NULL) {
        free(op);
        return NULL;
    }
    op->key = op->name + name->len;
    op->value = op->key + key->len;
    if (name->len > 0) {
        memcpy(op->name, name->data, name->len);
    }
    if (key->len > 0) {
        memcpy(op->key, key->data, key->len);
    }
    if (value->len > 0) {
        memcpy(op->value, value->data, value->len);
    }
    op->name_len = name->len;
    op->key_len = key->len;
    op->value_len = value->len;
    op->call = call;
    op->kind = kind;
    op_link(c, op);
    return op;
}

/* name + "/" + lease in Go's %x (etcd's Mutex and Election keys), in a new buffer. */
static int lease_key(const ProtobufCBinaryData *name, int64_t lease, ProtobufCBinaryData *out)
{
    char hex[24];
    uint64_t mag = lease < 0 ? (uint64_t)0 - (uint64_t)lease : (uint64_t)lease;
    int n = snprintf(hex, sizeof(hex), "%s%" PRIx64, lease < 0 ? "-" : "", mag);
    LATCH_ASSERT(n > 0 && (size_t)n < sizeof(hex));
    out->len = name->len + 1 + (size_t)n;
    out->data = malloc(out->len);
    if (out->data == NULL) {
        return LATCH_ENOMEM;
    }
    if (name->len > 0) {
        memcpy(out->data, name->data, name->len);
    }
    out->data[name->len] = '/';
    memcpy(out->data + name->len + 1, hex, (size_t)n);
    return 0;
}

/* The range of every key under name/: [name/, name0). */
static void
prefix_range(const uint8_t *name, size_t name_len, uint8_t *buf, struct store_range_req *q)
{
    memset(q, 0, sizeof(*q));
    memcpy(buf, name, name_len);
    buf[name_len] = '/';
    memcpy(buf + name_len + 1, name, name_len);
    buf[2 * name_len + 1] = '0'; /* '/' + 1 */
    q->key = buf;
    q->key_len = (uint32_t)(name_len + 1);
    q->range_end = buf + name_len + 1;
    q->range_end_len = (uint32_t)(name_len + 1);
}

/* The cleanup proposals (the key of a wait that ended) answer nobody. */
static void cleanup_done(void *data, int err, const struct store_result *res)
{
    (void)data;
    (void)err;
    (void)res;
}

/* Deletes the key of a Lock or Campaign whose wait ended (Mutex.Lock's Unlock on error; the
 * Campaign's Resign: only while the key is still the one created at op->rev). */
static void op_cleanup(struct srv_v3conc *c, const struct conc_op *op)
{
    struct store_compare cmp = {.target = STORE_CMP_CREATE,
                                .result = STORE_CMP_EQUAL,
                                .key = op->key,
                                .key_len = (uint32_t)op->key_len,
                                .number = op->rev};
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del.key = op->key;
    del.u.del.key_len = (uint32_t)op->key_len;
    struct store_txn_req t = {.success = &del, .success_count = 1};
    if (op->kind == OP_CAMPAIGN) {
        t.compares = &cmp;
        t.compares_count = 1;
    }
    (void)srv_kv_propose_txn(c->kv, &t, cleanup_done, NULL, NULL, 0);
}

/* ---- Lock and Campaign: the wait ------------------------------------------------------- */

/* Sets *held when no key under op's prefix was created before op->rev; *rev gets the
 * store's current revision. */
static int op_held(struct srv_v3conc *c, const struct conc_op *op, bool *held, int64_t *rev)
{
    *held = true;
    *rev = 0;
    if (op->rev <= 1) {
        return 0; /* nothing can be older */
    }
    uint8_t *buf = malloc(2 * op->name_len + 2);
    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    struct store_range_req q;
    prefix_range(op->name, op->name_len, buf, &q);
    q.limit = 1;
    q.keys_only = true;
    q.sort_order = STORE_SORT_DESCEND;
    q.sort_target = STORE_SORT_CREATE;
    q.max_create_revision = op->rev - 1;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_range_result r;
    int rc = store_range(srv_node_reader(c->node), &q, &a, &r, rev);
    if (rc == 0) {
        *held = r.kvs_count == 0;
    }
    latch_arena_close(&a);
    free(buf);
    return rc;
}

/* Answers a Lock or Campaign that holds its key; rev is the revision the wait ended at. */
static void op_answer_held(struct srv_v3conc *c, struct conc_op *op, int64_t rev)
{
    Etcdserverpb__ResponseHeader hdr;
    if (op->kind == OP_LOCK) {
        srv_kv_header(c->kv, rev, &hdr);
        V3lockpb__LockResponse resp = V3LOCKPB__LOCK_RESPONSE__INIT;
        resp.header = &hdr;
        resp.key.data = op->key;
        resp.key.len = op->key_len;
        api_call_reply_pb(op->call, &resp.base);
    } else {
        srv_kv_header(c->kv, op->hdr_rev, &hdr);
        V3electionpb__LeaderKey leader = V3ELECTIONPB__LEADER_KEY__INIT;
        leader.name.data = op->name;
        leader.name.len = op->name_len;
        leader.key.data = op->key;
        leader.key.len = op->key_len;
        leader.rev = op->rev;
        leader.lease = op->lease;
        V3electionpb__CampaignResponse resp = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
        resp.header = &hdr;
        resp.leader = &leader;
        api_call_reply_pb(op->call, &resp.base);
    }
}

/* The client gave up (deadline, cancel, connection gone) on a waiting Lock or Campaign:
 * its key goes, as etcd's Mutex and Election do on a cancelled context. */
static void op_canceled(struct api_call *call, void *data)
{
    struct conc_op *op = data;
    if (op->svc != NULL) {
        op_cleanup(op->svc, op);
    }
    api_call_fail(call, API_GRPC_STATUS_CANCELLED, "context canceled"); /* frees the dead call */
    op_free(op);
}

/* Answers op if it holds its key, else leaves it waiting. Returns true when answered. */
static bool op_check(struct srv_v3conc *c, struct conc_op *op, int64_t txn_rev)
{
    bool held = false;
    int64_t rev = 0;
    int rc = op_held(c, op, &held, &rev);
    if (rc != 0) {
        op_cleanup(c, op);
        fail_unknown(op->call, rc, NULL);
        op_free(op);
        return true;
    }
    if (!held) {
        if (!op->waiting) {
            op->waiting = true;
            api_call_on_cancel(op->call, op_canceled, op);
        }
        return false;
    }
    op_answer_held(c, op, txn_rev != 0 ? txn_rev : rev);
    op_free(op);
    return true;
}

/* ---- proposals ------------------------------------------------------------------------ */

static void op_done(void *data, int err, const struct store_result *res)
{
    struct conc_op *op = data;
    struct srv_v3conc *c = op->svc;
    if (c == NULL) {
        fail_unknown(op->call, LATCH_ESHUTDOWN, NULL);
        op_free(op);
        return;
    }
    if (err == 0 && res->err != 0) {
        err = res->err;
    }
    if (err != 0) {
        fail_unknown(op->call, err, NULL);
        op_free(op);
        return;
    }
    const struct store_txn_result *t = &res->u.txn;
    Etcdserverpb__ResponseHeader hdr;
    srv_kv_header(c->kv, res->revision, &hdr);
    switch (op->kind) {
    case OP_UNLOCK: {
        V3lockpb__UnlockResponse resp = V3LOCKPB__UNLOCK_RESPONSE__INIT;
        resp.header = &hdr;
        api_call_reply_pb(op->call, &resp.base);
        break;
    }
    case OP_PROCLAIM:
        if (!t->succeeded) {
            api_call_fail(op->call, API_GRPC_STATUS_UNKNOWN, V3CONC_ENOTLEADER);
        } else {
            V3electionpb__ProclaimResponse resp = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
            resp.header = &hdr;
            api_call_reply_pb(op->call, &resp.base);
        }
        break;
    case OP_RESIGN: {
        V3electionpb__ResignResponse resp = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
        resp.header = &hdr;
        api_call_reply_pb(op->call, &resp.base);
        break;
    }
    case OP_LOCK:
    case OP_CAMPAIGN:
        op->hdr_rev = res->revision;
        if (t->succeeded) {
            op->rev = res->revision;
        } else if (t->responses_count >= 1 && t->responses[0].type == STORE_OP_RANGE &&
                   t->responses[0].u.range.kvs_count == 1) {
            op->rev = t->responses[0].u.range.kvs[0].create_revision;
            if (t->responses_count == 2 && t->responses[1].type == STORE_OP_TXN &&
                t->responses[1].u.txn->succeeded) {
                op->hdr_rev = res->revision - 1; /* etcd answers its first txn's header */
            }
        } else {
            fail_unknown(op->call, LATCH_EINVAL, NULL); /* cannot happen: the key existed */
            break;
        }
        if (!api_call_is_alive(op->call)) {
            op_cleanup(c, op);
            api_call_fail(op->call, API_GRPC_STATUS_CANCELLED, "context canceled");
            break;
        }
        (void)op_check(c, op, res->revision); /* answered and freed, or waiting */
        return;
    }
    op_free(op);
}

/* Proposes t for op; answers and frees op on an error. */
static void op_propose(struct srv_v3conc *c, struct conc_op *op, const struct store_txn_req *t)
{
    char why[STORE_ERRMSG_BYTES];
    int rc;
    if (srv_kv_txn_reserved(t)) { /* a name or key in latch's reserved region */
        rc = LATCH_EINVAL;
        snprintf(why, sizeof(why), "%s", SRV_KV_ERESERVED);
    } else {
        rc = srv_kv_propose_txn(c->kv, t, op_done, op, why, sizeof(why));
    }
    if (rc != 0) {
        fail_unknown(op->call, rc, why);
        op_free(op);
    }
}

/* Lock and Campaign: create op->key unless it exists (Campaign: then set its value, if
 * another), then wait. */
static void acquire_txn(struct srv_v3conc *c, struct conc_op *op)
{
    struct store_compare absent = {.target = STORE_CMP_CREATE,
                                   .result = STORE_CMP_EQUAL,
                                   .key = op->key,
                                   .key_len = (uint32_t)op->key_len,
                                   .number = 0};
    struct store_op put = {.type = STORE_OP_PUT};
    put.u.put.key = op->key;
    put.u.put.key_len = (uint32_t)op->key_len;
    put.u.put.value = op->value;
    put.u.put.value_len = (uint32_t)op->value_len;
    put.u.put.lease = op->lease;
    struct store_op get[2] = {{.type = STORE_OP_RANGE}, {.type = STORE_OP_TXN}};
    get[0].u.range.key = op->key;
    get[0].u.range.key_len = (uint32_t)op->key_len;
    /* Campaign on a key that exists with another value: Proclaim it (etcd does this in a
     * second txn, compare create == the key's create revision; here in the same one). */
    struct store_compare other = {.target = STORE_CMP_VALUE,
                                  .result = STORE_CMP_NOT_EQUAL,
                                  .key = op->key,
                                  .key_len = (uint32_t)op->key_len,
                                  .value = op->value,
                                  .value_len = (uint32_t)op->value_len};
    struct store_txn_req proclaim = {
        .compares = &other, .compares_count = 1, .success = &put, .success_count = 1};
    get[1].u.txn = &proclaim;
    struct store_txn_req t = {.compares = &absent,
                              .compares_count = 1,
                              .success = &put,
                              .success_count = 1,
                              .failure = get,
                              .failure_count = op->kind == OP_CAMPAIGN ? 2 : 1};
    op_propose(c, op, &t);
}

/* The session lease of a Lock or Campaign without one was granted (or not). */
static void grant_done(void *data, int err, const struct store_result *res)
{
    struct conc_op *op = data;
    struct srv_v3conc *c = op->svc;
    if (c == NULL) {
        err = LATCH_ESHUTDOWN;
    } else if (err == 0 && res->err != 0) {
        err = res->err;
    }
    ProtobufCBinaryData name = {op->name_len, op->name};
    ProtobufCBinaryData key = {0, NULL};
    if (err == 0) {
        if (c->keeper != NULL) {
            srv_lease_keeper_granted(c->keeper, res->u.lease_grant.id, res->u.lease_grant.ttl);
        }
        op->lease = res->u.lease_grant.id;
        err = lease_key(&name, op->lease, &key);
    }
    if (err != 0) {
        fail_unknown(op->call, err, NULL);
        op_free(op);
        return;
    }
    op->key_buf = key.data;
    op->key = key.data;
    op->key_len = key.len;
    acquire_txn(c, op);
}

/* Lock and Campaign: the key is name/<lease>; lease 0 gets a session lease first (etcd's
 * server opens a concurrency.Session, which grants one of 60 s). */
static void acquire(struct srv_v3conc *c,
                    struct api_call *call,
                    enum op_kind kind,
                    const ProtobufCBinaryData *name,
                    int64_t lease,
                    const ProtobufCBinaryData *value)
{
    ProtobufCBinaryData key = {0, NULL};
    int rc = lease != 0 ? lease_key(name, lease, &key) : 0;
    if (rc != 0) {
        fail_unknown(call, rc, NULL);
        return;
    }
    struct conc_op *op = op_new(c, call, kind, name, &key, value);
    free(key.data);
    if (op == NULL) {
        fail_unknown(call, LATCH_ENOMEM, NULL);
        return;
    }
    op->lease = lease;
    if (lease != 0) {
        acquire_txn(c, op);
        return;
    }
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 0; /* the store picks one */
    g.u.lease_grant.ttl = V3CONC_SESSION_TTL;
    rc = srv_kv_propose_cmd(c->kv, &g, grant_done, op);
    if (rc != 0) {
        fail_unknown(call, rc, NULL);
        op_free(op);
    }
}

/* ---- the methods ---------------------------------------------------------------------- */

static void m_lock(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &v3lockpb__lock_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3lockpb__LockRequest *in = (const V3lockpb__LockRequest *)m;
    ProtobufCBinaryData empty = {0, NULL};
    acquire(data, call, OP_LOCK, &in->name, in->lease, &empty);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_campaign(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &v3electionpb__campaign_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3electionpb__CampaignRequest *in = (const V3electionpb__CampaignRequest *)m;
    acquire(data, call, OP_CAMPAIGN, &in->name, in->lease, &in->value);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_unlock(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_v3conc *c = data;
    ProtobufCMessage *m = api_call_unpack(call, &v3lockpb__unlock_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3lockpb__UnlockRequest *in = (const V3lockpb__UnlockRequest *)m;
    ProtobufCBinaryData empty = {0, NULL};
    struct conc_op *op = op_new(c, call, OP_UNLOCK, &empty, &in->key, &empty);
    protobuf_c_message_free_unpacked(m, NULL);
    if (op == NULL) {
        fail_unknown(call, LATCH_ENOMEM, NULL);
        return;
    }
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del.key = op->key;
    del.u.del.key_len = (uint32_t)op->key_len;
    struct store_txn_req t = {.success = &del, .success_count = 1};
    op_propose(c, op, &t);
}

/* Proclaim (value) and Resign (value NULL): txn create_revision(key) == rev → put / delete. */
static void leader_txn(struct srv_v3conc *c,
                       struct api_call *call,
                       enum op_kind kind,
                       const V3electionpb__LeaderKey *leader,
                       const ProtobufCBinaryData *value)
{
    if (leader == NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNKNOWN, V3CONC_EMISSINGKEY);
        return;
    }
    struct conc_op *op = op_new(c, call, kind, &leader->name, &leader->key, value);
    if (op == NULL) {
        fail_unknown(call, LATCH_ENOMEM, NULL);
        return;
    }
    op->lease = leader->lease;
    op->rev = leader->rev;
    struct store_compare cmp = {.target = STORE_CMP_CREATE,
                                .result = STORE_CMP_EQUAL,
                                .key = op->key,
                                .key_len = (uint32_t)op->key_len,
                                .number = op->rev};
    struct store_op w = {.type = kind == OP_PROCLAIM ? STORE_OP_PUT : STORE_OP_DELETE};
    if (kind == OP_PROCLAIM) {
        w.u.put.key = op->key;
        w.u.put.key_len = (uint32_t)op->key_len;
        w.u.put.value = op->value;
        w.u.put.value_len = (uint32_t)op->value_len;
        w.u.put.lease = op->lease;
    } else {
        w.u.del.key = op->key;
        w.u.del.key_len = (uint32_t)op->key_len;
    }
    struct store_txn_req t = {
        .compares = &cmp, .compares_count = 1, .success = &w, .success_count = 1};
    op_propose(c, op, &t);
}

static void m_proclaim(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &v3electionpb__proclaim_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3electionpb__ProclaimRequest *in = (const V3electionpb__ProclaimRequest *)m;
    leader_txn(data, call, OP_PROCLAIM, in->leader, &in->value);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_resign(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &v3electionpb__resign_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3electionpb__ResignRequest *in = (const V3electionpb__ResignRequest *)m;
    ProtobufCBinaryData empty = {0, NULL};
    leader_txn(data, call, OP_RESIGN, in->leader, &empty);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* The first-created key under name/ now: 0 with *found, or an error. */
static int first_created(struct srv_v3conc *c,
                         const uint8_t *name,
                         size_t name_len,
                         struct latch_arena *a,
                         struct store_range_result *r,
                         int64_t *rev)
{
    uint8_t *buf = latch_arena_alloc(a, 2 * name_len + 2);
    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    struct store_range_req q;
    prefix_range(name, name_len, buf, &q);
    q.limit = 1;
    q.sort_order = STORE_SORT_ASCEND;
    q.sort_target = STORE_SORT_CREATE;
    return store_range(srv_node_reader(c->node), &q, a, r, rev);
}

struct leader_read {
    struct api_call *call;
    struct srv_v3conc *svc; /* the node outlives the read; the service is freed after it */
    uint8_t *name;
    size_t name_len;
};

static void leader_read_cb(void *data, int err)
{
    struct leader_read *lr = data;
    if (err != 0) {
        fail_unknown(lr->call, err, NULL);
    } else {
        struct latch_arena a;
        latch_arena_init(&a, 0);
        struct store_range_result r;
        int64_t rev = 0;
        int rc = first_created(lr->svc, lr->name, lr->name_len, &a, &r, &rev);
        if (rc != 0) {
            fail_unknown(lr->call, rc, NULL);
        } else if (r.kvs_count == 0) {
            api_call_fail(lr->call, API_GRPC_STATUS_UNKNOWN, V3CONC_ENOLEADER);
        } else {
            Etcdserverpb__ResponseHeader hdr;
            srv_kv_header(lr->svc->kv, rev, &hdr);
            Mvccpb__KeyValue kv;
            etcd_kv(&r.kvs[0], &kv);
            V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
            resp.header = &hdr;
            resp.kv = &kv;
            api_call_reply_pb(lr->call, &resp.base);
        }
        latch_arena_close(&a);
    }
    free(lr->name);
    free(lr);
}

static void m_leader(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_v3conc *c = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &v3electionpb__leader_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3electionpb__LeaderRequest *in = (const V3electionpb__LeaderRequest *)m;
    struct leader_read *lr = calloc(1, sizeof(*lr));
    int rc = LATCH_ENOMEM;
    if (lr != NULL) {
        lr->name = malloc(in->name.len > 0 ? in->name.len : 1);
        if (lr->name != NULL) {
            if (in->name.len > 0) {
                memcpy(lr->name, in->name.data, in->name.len);
            }
            lr->name_len = in->name.len;
            lr->call = call;
            lr->svc = c;
            rc = srv_node_read_index(c->node, leader_read_cb, lr);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc != 0) {
        if (lr != NULL) {
            free(lr->name);
        }
        free(lr);
        fail_unknown(call, rc, NULL);
    }
}

/* ---- Observe -------------------------------------------------------------------------- */

static void obs_free(struct conc_obs *o)
{
    if (o->svc != NULL) {
        if (o->prev != NULL) {
            o->prev->next = o->next;
        } else {
            o->svc->observers = o->next;
        }
        if (o->next != NULL) {
            o->next->prev = o->prev;
        }
    }
    free(o->prefix);
    free(o->key);
    free(o);
}

/* Ends the stream with status (0: OK) and frees o. */
static void obs_end(struct conc_obs *o, int status, const char *msg)
{
    api_call_finish(o->call, status, msg);
    obs_free(o);
}

static int obs_send(struct conc_obs *o, int64_t rev, const struct store_kv *skv)
{
    Etcdserverpb__ResponseHeader hdr;
    srv_kv_header(o->svc->kv, rev, &hdr);
    Mvccpb__KeyValue kv;
    etcd_kv(skv, &kv);
    V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    resp.header = &hdr;
    resp.kv = &kv;
    bool would_block = false;
    int rc = api_call_send_pb(o->call, &resp.base, &would_block);
    o->paused = rc == 0 && would_block;
    return rc;
}

static bool obs_feed(struct conc_obs *o);

/* A paused observer's queue has room again. */
static void obs_writable(struct api_call *call, void *data)
{
    struct conc_obs *o = data;
    (void)call;
    o->paused = false;
    if (o->svc != NULL && !o->reading) {
        (void)obs_feed(o);
    }
}

/* Sends o what it has not seen (etcd's Election.Observe: the current leader, then each put
 * of its key until it is deleted, then the next leader). Returns false when o was ended. */
static bool obs_feed(struct conc_obs *o)
{
    struct srv_v3conc *c = o->svc;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int rc = 0;
    for (;;) {
        latch_arena_reset(&a);
        if (!o->has_leader) {
            struct store_range_result r;
            int64_t rev = 0;
            rc = first_created(c, o->prefix, o->prefix_len - 1, &a, &r, &rev);
            if (rc != 0 || r.kvs_count == 0) {
                break;
            }
            uint8_t *key = malloc(r.kvs[0].key_len > 0 ? r.kvs[0].key_len : 1);
            if (key == NULL) {
                rc = LATCH_ENOMEM;
                break;
            }
            memcpy(key, r.kvs[0].key, r.kvs[0].key_len);
            free(o->key);
            o->key = key;
            o->key_len = r.kvs[0].key_len;
            o->has_leader = true;
            o->next_rev = rev + 1;
            rc = obs_send(o, rev, &r.kvs[0]);
            if (rc != 0 || o->paused) {
                break;
            }
            continue;
        }
        struct store_history_req q = {.start_revision = o->next_rev,
                                      .key = o->key,
                                      .key_len = (uint32_t)o->key_len,
                                      .max_events = V3CONC_HISTORY_EVENTS,
                                      .max_bytes = (size_t)1 << 20};
        struct store_event *ev = NULL;
        size_t n = 0;
        int64_t next = 0;
        rc = store_history(srv_node_reader(c->node), &q, &a, &ev, &n, &next);
        if (rc != 0) {
            break;
        }
        bool deleted = false;
        bool paused = false;
        for (size_t i = 0; i < n && rc == 0 && !paused; i++) {
            if (ev[i].type == STORE_EVENT_DELETE) {
                deleted = true;
                o->has_leader = false;
                break;
            }
            o->next_rev = ev[i].kv.mod_revision + 1;
            rc = obs_send(o, ev[i].kv.mod_revision, &ev[i].kv);
            paused = o->paused;
        }
        if (rc != 0 || paused) {
            break;
        }
        if (!deleted) {
            o->next_rev = next;
            if (n == 0) {
                break; /* caught up */
            }
        }
    }
    latch_arena_close(&a);
    if (rc == 0 && o->paused) {
        api_call_on_writable(o->call, obs_writable, o);
        return true;
    }
    if (rc == LATCH_ESTATE) {
        return true; /* the call is dead: its cancel callback ends it */
    }
    if (rc == LATCH_ECOMPACTED) {
        obs_end(o, 0, NULL); /* etcd: the watch ends, so does Observe */
        return false;
    }
    if (rc != 0) {
        char msg[ETCD_STATUS_MSG_MAX];
        (void)etcd_status(rc, NULL, msg, sizeof(msg));
        obs_end(o, API_GRPC_STATUS_UNKNOWN, msg);
        return false;
    }
    return true;
}

static void obs_canceled(struct api_call *call, void *data)
{
    struct conc_obs *o = data;
    (void)call;
    if (o->reading) {
        o->canceled = true; /* the read callback ends it */
        return;
    }
    obs_end(o, API_GRPC_STATUS_CANCELLED, "context canceled");
}

static void obs_read_cb(void *data, int err)
{
    struct conc_obs *o = data;
    o->reading = false;
    if (o->canceled || o->svc == NULL) {
        obs_end(o, API_GRPC_STATUS_CANCELLED, "context canceled");
        return;
    }
    if (err != 0) {
        char msg[ETCD_STATUS_MSG_MAX];
        (void)etcd_status(err, NULL, msg, sizeof(msg));
        obs_end(o, API_GRPC_STATUS_UNKNOWN, msg);
        return;
    }
    (void)obs_feed(o);
}

static void m_observe(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_v3conc *c = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &v3electionpb__leader_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const V3electionpb__LeaderRequest *in = (const V3electionpb__LeaderRequest *)m;
    struct conc_obs *o = calloc(1, sizeof(*o));
    if (o == NULL || (o->prefix = malloc(in->name.len + 1)) == NULL) {
        free(o);
        protobuf_c_message_free_unpacked(m, NULL);
        api_call_finish(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (in->name.len > 0) {
        memcpy(o->prefix, in->name.data, in->name.len);
    }
    o->prefix[in->name.len] = '/';
    o->prefix_len = in->name.len + 1;
    protobuf_c_message_free_unpacked(m, NULL);
    o->call = call;
    o->svc = c;
    o->next = c->observers;
    if (c->observers != NULL) {
        c->observers->prev = o;
    }
    c->observers = o;
    o->reading = true;
    api_call_on_cancel(call, obs_canceled, o); /* first: the read may answer at once */
    int rc = srv_node_read_index(c->node, obs_read_cb, o);
    if (rc != 0) {
        o->reading = false;
        char msg[ETCD_STATUS_MSG_MAX];
        (void)etcd_status(rc, NULL, msg, sizeof(msg));
        obs_end(o, API_GRPC_STATUS_UNKNOWN, msg);
    }
}

/* ---- the service ---------------------------------------------------------------------- */

void srv_v3conc_applied(void *svc, int64_t revision)
{
    struct srv_v3conc *c = svc;
    (void)revision;
    if (c == NULL) {
        return;
    }
    for (struct conc_op *op = c->ops, *next = NULL; op != NULL; op = next) {
        next = op->next;
        if (op->waiting) {
            (void)op_check(c, op, 0);
        }
    }
    for (struct conc_obs *o = c->observers, *next = NULL; o != NULL; o = next) {
        next = o->next;
        if (!o->reading && !o->paused) {
            (void)obs_feed(o);
        }
    }
}

int srv_v3conc_register(struct api_server *s,
                        const struct srv_v3conc_config *cfg,
                        struct srv_v3conc **out)
{
    struct srv_v3conc *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return LATCH_ENOMEM;
    }
    c->node = cfg->node;
    c->kv = cfg->kv;
    c->keeper = cfg->keeper;
    static const struct {
        const char *path;
        api_unary_fn fn;
    } methods[] = {
        {"/v3lockpb.Lock/Lock", m_lock},
        {"/v3lockpb.Lock/Unlock", m_unlock},
        {"/v3electionpb.Election/Campaign", m_campaign},
        {"/v3electionpb.Election/Proclaim", m_proclaim},
        {"/v3electionpb.Election/Leader", m_leader},
        {"/v3electionpb.Election/Resign", m_resign},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && rc == 0; i++) {
        rc = api_server_register_unary(s, methods[i].path, methods[i].fn, c);
    }
    if (rc == 0) {
        rc = api_server_register_server_stream(s, "/v3electionpb.Election/Observe", m_observe, c);
    }
    if (rc != 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void srv_v3conc_free(struct srv_v3conc *c)
{
    if (c == NULL) {
        return;
    }
    while (c->ops != NULL) {
        struct conc_op *op = c->ops;
        op_unlink(op);
        if (op->waiting) {
            api_call_fail(op->call, API_GRPC_STATUS_UNAVAILABLE, "server closing");
            op_free(op);
        } /* else its proposal's callback answers and frees it */
    }
    while (c->observers != NULL) {
        struct conc_obs *o = c->observers;
        c->observers = o->next;
        o->svc = NULL;
        if (!o->reading) {
            api_call_finish(o->call, API_GRPC_STATUS_UNAVAILABLE, "server closing");
            obs_free(o);
        }
    }
    free(c);
}
