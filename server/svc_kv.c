/*
 * svc_kv.c — etcd's KV service on a node (see svc_kv.h).
 *
 * A request waiting for the node (a read index, or a proposal until it is applied) is a
 * struct kv_wait: it owns the unpacked request (Range) and a copy of what the answer needs
 * (ids, the node), never a pointer to the service, so freeing the service with requests in
 * flight is safe. The node calls back exactly once; the call is answered then (a call the
 * client gave up on is dead and answering it only frees it).
 */
#include "svc_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "latch_teeth.h"

#define SVC_KV_MAX_REQUEST_DEFAULT ((size_t)3 << 19) /* 1.5 MiB */

struct srv_kv {
    struct srv_node *node;
    uint64_t cluster_id;
    uint64_t member_id;
    size_t max_request_bytes;
};

enum kv_kind { KV_RANGE, KV_PUT, KV_DELETE, KV_TXN, KV_COMPACT };

struct kv_wait {
    struct api_call *call;
    struct srv_kv ids; /* a copy: the service may be freed before the node answers */
    enum kv_kind kind;
    Etcdserverpb__RangeRequest *range; /* KV_RANGE: owned, unpacked */
};

static void header_fill(const struct srv_kv *kv, int64_t revision, Etcdserverpb__ResponseHeader *h)
{
    struct srv_node_status st;
    srv_node_status(kv->node, &st);
    etcdserverpb__response_header__init(h);
    h->cluster_id = kv->cluster_id;
    h->member_id = kv->member_id;
    h->revision = revision;
    h->raft_term = st.term;
}

void srv_kv_header(const struct srv_kv *kv, int64_t revision, Etcdserverpb__ResponseHeader *hdr)
{
    header_fill(kv, revision, hdr);
}

/* Fails call with etcd's status for err (why: the store's sentence, or NULL). */
static void fail(struct api_call *call, int err, const char *why)
{
    char msg[ETCD_STATUS_MSG_MAX];
    int status = etcd_status(err, why, msg, sizeof(msg));
    api_call_fail(call, status, msg);
}

/* ---- Range ---------------------------------------------------------------------------- */

static void
range_serve(const struct srv_kv *kv, struct api_call *call, const Etcdserverpb__RangeRequest *in)
{
    struct store_range_req q;
    etcd_range_req(in, &q);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_range_result r;
    int64_t rev = 0;
    int rc = store_range(srv_node_reader(kv->node), &q, &a, &r, &rev);
    if (rc != 0) {
        fail(call, rc, rc == LATCH_EINVAL ? "key is not provided" : NULL);
        latch_arena_close(&a);
        return;
    }
    Etcdserverpb__ResponseHeader hdr;
    header_fill(kv, rev, &hdr);
    Etcdserverpb__RangeResponse resp;
    rc = etcd_range_resp(&r, &hdr, &a, &resp);
    if (rc != 0) {
        fail(call, rc, NULL);
    } else {
        api_call_reply_pb(call, &resp.base);
    }
    latch_arena_close(&a);
}

static void range_read_cb(void *data, int err)
{
    struct kv_wait *w = data;
    if (err != 0) {
        fail(w->call, err, NULL);
    } else {
        range_serve(&w->ids, w->call, w->range);
    }
    protobuf_c_message_free_unpacked(&w->range->base, NULL);
    free(w);
}

static void kv_range(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_kv *kv = data;
    ProtobufCMessage *m = api_call_unpack(call, &etcdserverpb__range_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    Etcdserverpb__RangeRequest *in = (Etcdserverpb__RangeRequest *)m;
    if (in->key.len == 0) {
        fail(call, LATCH_EINVAL, "key is not provided");
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    bool local = in->serializable;
#ifdef LATCH_TEETH
    local = local || latch_teeth_on(LATCH_TEETH_STALE_READ); /* teeth: no ReadIndex */
#endif
    if (local) {
        range_serve(kv, call, in);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    struct kv_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        fail(call, LATCH_ENOMEM, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    w->call = call;
    w->ids = *kv;
    w->kind = KV_RANGE;
    w->range = in;
    int rc = srv_node_read_index(kv->node, range_read_cb, w);
    if (rc != 0) {
        fail(call, rc, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        free(w);
    }
}

/* ---- writes --------------------------------------------------------------------------- */

/* The answer to an applied write, built from its result. */
static void write_done(void *data, int err, const struct store_result *res)
{
    struct kv_wait *w = data;
    struct api_call *call = w->call;
#ifdef LATCH_TEETH
    if (call == NULL) { /* teeth early-ack: answered at propose time */
        free(w);
        return;
    }
#endif
    if (err != 0) {
        fail(call, err, NULL);
        free(w);
        return;
    }
    if (res->err != 0) {
        fail(call, res->err, NULL);
        free(w);
        return;
    }
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Etcdserverpb__ResponseHeader hdr;
    header_fill(&w->ids, res->revision, &hdr);
    int rc = 0;
    const struct store_txn_result *t = &res->u.txn;
    switch (w->kind) {
    case KV_PUT: {
        Etcdserverpb__PutResponse resp;
        rc = t->responses_count == 1 ? etcd_put_resp(&t->responses[0].u.put, &hdr, &a, &resp)
                                     : LATCH_EINVAL;
        if (rc == 0) {
            api_call_reply_pb(call, &resp.base);
        }
        break;
    }
    case KV_DELETE: {
        Etcdserverpb__DeleteRangeResponse resp;
        rc = t->responses_count == 1 ? etcd_delete_resp(&t->responses[0].u.del, &hdr, &a, &resp)
                                     : LATCH_EINVAL;
        if (rc == 0) {
            api_call_reply_pb(call, &resp.base);
        }
        break;
    }
    case KV_TXN: {
        Etcdserverpb__TxnResponse resp;
        rc = etcd_txn_resp(t, &hdr, &a, &resp);
        if (rc == 0) {
            api_call_reply_pb(call, &resp.base);
        }
        break;
    }
    case KV_COMPACT: {
        Etcdserverpb__CompactionResponse resp = ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
        resp.header = &hdr;
        api_call_reply_pb(call, &resp.base);
        break;
    }
    case KV_RANGE:
        rc = LATCH_EINVAL;
        break;
    }
    if (rc != 0) {
        fail(call, rc, NULL);
    }
    latch_arena_close(&a);
    free(w);
}

int srv_kv_propose_cmd(const struct srv_kv *kv,
                       const struct store_cmd *c,
                       srv_node_propose_cb cb,
                       void *data)
{
    size_t size = store_cmd_size(c);
    if (size > kv->max_request_bytes) {
        return LATCH_ETOOBIG;
    }
    uint8_t *buf = malloc(size > 0 ? size : 1);
    size_t len = 0;
    int rc = buf == NULL ? LATCH_ENOMEM : store_cmd_encode(c, buf, size, &len);
    if (rc == 0) {
        rc = srv_node_propose(kv->node, buf, len, cb, data);
    }
    free(buf); /* the node copied it */
    return rc;
}

int srv_kv_propose_txn(const struct srv_kv *kv,
                       const struct store_txn_req *t,
                       srv_node_propose_cb cb,
                       void *data,
                       char *why,
                       size_t why_size)
{
    if (why_size > 0) {
        why[0] = '\0';
    }
    int rc = store_txn_validate(t, why, why_size);
    if (rc != 0) {
        return rc;
    }
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = *t;
    return srv_kv_propose_cmd(kv, &c, cb, data);
}

/* A key in the reserved region ["\0", "\1"). */
static bool key_reserved(const uint8_t *k, uint32_t len)
{
    return len > 0 && k[0] == 0;
}

/* Whether [key, end) reaches the reserved region: end_len 0 is the key alone, end "\0"
 * every key from key on (etcd's --from-key). */
static bool range_reserved(const uint8_t *k, uint32_t len, const uint8_t *end, uint32_t end_len)
{
    if (end_len == 0) {
        return key_reserved(k, len);
    }
    bool starts_below = len == 0 || k[0] == 0; /* key < "\1" */
    bool from_key = end_len == 1 && end[0] == 0;
    bool ends_above = from_key || end[0] > 0 || end_len > 1; /* end > "\0" */
    return starts_below && ends_above;
}

bool srv_kv_txn_reserved(const struct store_txn_req *t)
{
    const struct store_op *branches[2] = {t->success, t->failure};
    size_t counts[2] = {t->success_count, t->failure_count};
    for (size_t b = 0; b < 2; b++) {
        for (size_t i = 0; i < counts[b]; i++) {
            const struct store_op *op = &branches[b][i];
            if ((op->type == STORE_OP_PUT && key_reserved(op->u.put.key, op->u.put.key_len)) ||
                (op->type == STORE_OP_DELETE &&
                 range_reserved(op->u.del.key, op->u.del.key_len, op->u.del.range_end,
                                op->u.del.range_end_len)) ||
                (op->type == STORE_OP_TXN && srv_kv_txn_reserved(op->u.txn))) {
                return true;
            }
        }
    }
    return false;
}

/* Encodes c and proposes it; answers call now on any error. */
static void
propose(struct srv_kv *kv, struct api_call *call, enum kv_kind kind, const struct store_cmd *c)
{
    struct kv_wait *w = calloc(1, sizeof(*w));
    int rc = LATCH_ENOMEM;
    if (w != NULL) {
        w->call = call;
        w->ids = *kv;
        w->kind = kind;
        rc = srv_kv_propose_cmd(kv, c, write_done, w);
    }
    if (rc != 0) {
        free(w);
        fail(call, rc, NULL);
        return;
    }
#ifdef LATCH_TEETH
    if (kind == KV_PUT && latch_teeth_on(LATCH_TEETH_EARLY_ACK)) {
        /* teeth: acknowledge before the entry commits (revision unknown: 0); write_done then
         * finds no call and only frees w. */
        Etcdserverpb__ResponseHeader hdr;
        header_fill(kv, 0, &hdr);
        Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
        resp.header = &hdr;
        api_call_reply_pb(call, &resp.base);
        w->call = NULL;
    }
#endif
}

/* Validates t as etcd does before proposing, then proposes it as one txn command. */
static void propose_txn(struct srv_kv *kv,
                        struct api_call *call,
                        enum kv_kind kind,
                        const struct store_txn_req *t)
{
    char why[STORE_ERRMSG_BYTES];
    int rc = store_txn_validate(t, why, sizeof(why));
    if (rc == 0 && srv_kv_txn_reserved(t)) {
        rc = LATCH_EINVAL;
        snprintf(why, sizeof(why), "%s", SRV_KV_ERESERVED);
    }
    if (rc != 0) {
        fail(call, rc, why);
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = *t;
    propose(kv, call, kind, &c);
}

static void kv_put(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &etcdserverpb__put_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct store_op op = {.type = STORE_OP_PUT};
    etcd_put_req((const Etcdserverpb__PutRequest *)m, &op.u.put);
    struct store_txn_req t;
    etcd_single_op_txn(&op, &t);
    propose_txn(data, call, KV_PUT, &t);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void kv_delete(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__delete_range_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct store_op op = {.type = STORE_OP_DELETE};
    etcd_delete_req((const Etcdserverpb__DeleteRangeRequest *)m, &op.u.del);
    struct store_txn_req t;
    etcd_single_op_txn(&op, &t);
    propose_txn(data, call, KV_DELETE, &t);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void kv_txn(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &etcdserverpb__txn_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_txn_req t;
    const char *why = NULL;
    int rc = etcd_txn_req((const Etcdserverpb__TxnRequest *)m, &a, &t, &why);
    if (rc != 0) {
        fail(call, rc, why);
    } else {
        propose_txn(data, call, KV_TXN, &t);
    }
    latch_arena_close(&a);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void kv_compact(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__compaction_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = ((const Etcdserverpb__CompactionRequest *)m)->revision;
    protobuf_c_message_free_unpacked(m, NULL);
    propose(data, call, KV_COMPACT, &c);
}

int srv_kv_register(struct api_server *s, const struct srv_kv_config *cfg, struct srv_kv **out)
{
    struct srv_kv *kv = calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return LATCH_ENOMEM;
    }
    kv->node = cfg->node;
    kv->cluster_id = cfg->cluster_id;
    kv->member_id = cfg->member_id;
    kv->max_request_bytes =
        cfg->max_request_bytes != 0 ? cfg->max_request_bytes : SVC_KV_MAX_REQUEST_DEFAULT;
    static const struct {
        const char *path;
        api_unary_fn fn;
    } methods[] = {
        {"/etcdserverpb.KV/Range", kv_range},        {"/etcdserverpb.KV/Put", kv_put},
        {"/etcdserverpb.KV/DeleteRange", kv_delete}, {"/etcdserverpb.KV/Txn", kv_txn},
        {"/etcdserverpb.KV/Compact", kv_compact},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        int rc = api_server_register_unary(s, methods[i].path, methods[i].fn, kv);
        if (rc != 0) {
            free(kv);
            return rc;
        }
    }
    *out = kv;
    return 0;
}

void srv_kv_free(struct srv_kv *kv)
{
    free(kv);
}
