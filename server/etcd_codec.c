/*
 * etcd_codec.c — etcd's KV messages to and from store/'s requests and results (see
 * etcd_codec.h).
 */
#include "etcd_codec.h"

#include <stdio.h>
#include <string.h>

#include "grpc_wire.h"
#include "latch_error.h"

static const uint8_t *bytes(const ProtobufCBinaryData *b)
{
    return b->len > 0 ? b->data : NULL;
}

void etcd_range_req(const Etcdserverpb__RangeRequest *in, struct store_range_req *out)
{
    memset(out, 0, sizeof(*out));
    out->key = bytes(&in->key);
    out->key_len = (uint32_t)in->key.len;
    out->range_end = bytes(&in->range_end);
    out->range_end_len = (uint32_t)in->range_end.len;
    out->limit = in->limit;
    out->revision = in->revision;
    out->sort_order = (uint32_t)in->sort_order;
    out->sort_target = (uint32_t)in->sort_target;
    out->keys_only = in->keys_only;
    out->count_only = in->count_only;
    out->min_mod_revision = in->min_mod_revision;
    out->max_mod_revision = in->max_mod_revision;
    out->min_create_revision = in->min_create_revision;
    out->max_create_revision = in->max_create_revision;
}

void etcd_put_req(const Etcdserverpb__PutRequest *in, struct store_put_req *out)
{
    memset(out, 0, sizeof(*out));
    out->key = bytes(&in->key);
    out->key_len = (uint32_t)in->key.len;
    out->value = bytes(&in->value);
    out->value_len = (uint32_t)in->value.len;
    out->lease = in->lease;
    out->prev_kv = in->prev_kv;
    out->ignore_value = in->ignore_value;
    out->ignore_lease = in->ignore_lease;
}

void etcd_delete_req(const Etcdserverpb__DeleteRangeRequest *in, struct store_delete_req *out)
{
    memset(out, 0, sizeof(*out));
    out->key = bytes(&in->key);
    out->key_len = (uint32_t)in->key.len;
    out->range_end = bytes(&in->range_end);
    out->range_end_len = (uint32_t)in->range_end.len;
    out->prev_kv = in->prev_kv;
}

void etcd_single_op_txn(const struct store_op *op, struct store_txn_req *out)
{
    memset(out, 0, sizeof(*out));
    out->success = op;
    out->success_count = 1;
}

/* etcd takes the compared number from the field its target names (0 when another is set). */
static void compare_from_pb(const Etcdserverpb__Compare *in, struct store_compare *out)
{
    memset(out, 0, sizeof(*out));
    out->target = (uint32_t)in->target;
    out->result = (uint32_t)in->result;
    out->key = bytes(&in->key);
    out->key_len = (uint32_t)in->key.len;
    out->range_end = bytes(&in->range_end);
    out->range_end_len = (uint32_t)in->range_end.len;
    switch (in->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        if (in->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION) {
            out->number = in->version;
        }
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        if (in->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION) {
            out->number = in->create_revision;
        }
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        if (in->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION) {
            out->number = in->mod_revision;
        }
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
        if (in->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) {
            out->value = bytes(&in->value);
            out->value_len = (uint32_t)in->value.len;
        }
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        if (in->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE) {
            out->number = in->lease;
        }
        break;
    default:
        /* An unknown target: store_txn_validate refuses it, also one that happens to be
         * latch's own STORE_CMP_FENCE (not part of the etcd API). */
        out->target = UINT32_MAX;
        break;
    }
}

static int txn_from_pb(const Etcdserverpb__TxnRequest *in,
                       struct latch_arena *a,
                       unsigned depth,
                       struct store_txn_req *out,
                       const char **why);

/* The ops of one branch. */
static int ops_from_pb(Etcdserverpb__RequestOp *const *in,
                       size_t n,
                       struct latch_arena *a,
                       unsigned depth,
                       const struct store_op **out,
                       const char **why)
{
    *out = NULL;
    if (n == 0) {
        return 0;
    }
    struct store_op *ops = latch_arena_calloc(a, n, sizeof(*ops));
    if (ops == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = in[i];
        int rc = 0;
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            ops[i].type = STORE_OP_RANGE;
            etcd_range_req(op->request_range, &ops[i].u.range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            ops[i].type = STORE_OP_PUT;
            etcd_put_req(op->request_put, &ops[i].u.put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            ops[i].type = STORE_OP_DELETE;
            etcd_delete_req(op->request_delete_range, &ops[i].u.del);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
            struct store_txn_req *t = latch_arena_calloc(a, 1, sizeof(*t));
            if (t == NULL) {
                return LATCH_ENOMEM;
            }
            ops[i].type = STORE_OP_TXN;
            ops[i].u.txn = t;
            rc = txn_from_pb(op->request_txn, a, depth + 1, t, why);
            break;
        }
        default:
            *why = "malformed txn"; /* etcd: a RequestOp with nothing set is not served */
            return LATCH_EINVAL;
        }
        if (rc != 0) {
            return rc;
        }
    }
    *out = ops;
    return 0;
}

static int txn_from_pb(const Etcdserverpb__TxnRequest *in,
                       struct latch_arena *a,
                       unsigned depth,
                       struct store_txn_req *out,
                       const char **why)
{
    memset(out, 0, sizeof(*out));
    if (depth > STORE_TXN_DEPTH_MAX) {
        *why = "txn nested too deeply";
        return LATCH_EINVAL;
    }
    if (in->n_compare > 0) {
        struct store_compare *cmp = latch_arena_calloc(a, in->n_compare, sizeof(*cmp));
        if (cmp == NULL) {
            return LATCH_ENOMEM;
        }
        for (size_t i = 0; i < in->n_compare; i++) {
            compare_from_pb(in->compare[i], &cmp[i]);
        }
        out->compares = cmp;
        out->compares_count = in->n_compare;
    }
    int rc = ops_from_pb(in->success, in->n_success, a, depth, &out->success, why);
    if (rc == 0) {
        out->success_count = in->n_success;
        rc = ops_from_pb(in->failure, in->n_failure, a, depth, &out->failure, why);
        out->failure_count = in->n_failure;
    }
    return rc;
}

int etcd_txn_req(const Etcdserverpb__TxnRequest *in,
                 struct latch_arena *a,
                 struct store_txn_req *out,
                 const char **why)
{
    *why = "";
    return txn_from_pb(in, a, 1, out, why);
}

/* ---- responses ---------------------------------------------------------------------- */

void etcd_kv(const struct store_kv *kv, Mvccpb__KeyValue *out)
{
    mvccpb__key_value__init(out);
    out->key.data = (uint8_t *)kv->key;
    out->key.len = kv->key_len;
    out->value.data = (uint8_t *)kv->value;
    out->value.len = kv->value != NULL ? kv->value_len : 0;
    out->create_revision = kv->create_revision;
    out->mod_revision = kv->mod_revision;
    out->version = kv->version;
    out->lease = kv->lease;
}

/* n key-values as an array of pointers to messages, all in a (NULL for none). */
static Mvccpb__KeyValue **kvs_to_pb(const struct store_kv *kvs, size_t n, struct latch_arena *a)
{
    if (n == 0) {
        return NULL;
    }
    Mvccpb__KeyValue **ptrs = latch_arena_calloc(a, n, sizeof(*ptrs));
    Mvccpb__KeyValue *msgs = latch_arena_calloc(a, n, sizeof(*msgs));
    if (ptrs == NULL || msgs == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        etcd_kv(&kvs[i], &msgs[i]);
        ptrs[i] = &msgs[i];
    }
    return ptrs;
}

int etcd_range_resp(const struct store_range_result *r,
                    Etcdserverpb__ResponseHeader *hdr,
                    struct latch_arena *a,
                    Etcdserverpb__RangeResponse *out)
{
    etcdserverpb__range_response__init(out);
    out->header = hdr;
    out->kvs = kvs_to_pb(r->kvs, r->kvs_count, a);
    if (r->kvs_count > 0 && out->kvs == NULL) {
        return LATCH_ENOMEM;
    }
    out->n_kvs = r->kvs_count;
    out->more = r->more;
    out->count = r->count;
    return 0;
}

int etcd_put_resp(const struct store_put_result *r,
                  Etcdserverpb__ResponseHeader *hdr,
                  struct latch_arena *a,
                  Etcdserverpb__PutResponse *out)
{
    etcdserverpb__put_response__init(out);
    out->header = hdr;
    if (r->has_prev) {
        out->prev_kv = latch_arena_calloc(a, 1, sizeof(*out->prev_kv));
        if (out->prev_kv == NULL) {
            return LATCH_ENOMEM;
        }
        etcd_kv(&r->prev, out->prev_kv);
    }
    return 0;
}

int etcd_delete_resp(const struct store_delete_result *r,
                     Etcdserverpb__ResponseHeader *hdr,
                     struct latch_arena *a,
                     Etcdserverpb__DeleteRangeResponse *out)
{
    etcdserverpb__delete_range_response__init(out);
    out->header = hdr;
    out->deleted = r->deleted;
    out->prev_kvs = kvs_to_pb(r->prev_kvs, r->prev_kvs_count, a);
    if (r->prev_kvs_count > 0 && out->prev_kvs == NULL) {
        return LATCH_ENOMEM;
    }
    out->n_prev_kvs = r->prev_kvs_count;
    return 0;
}

/*
 * The revisions etcd puts in a txn's sub-response headers (etcdserver/apply.go applyTxn on
 * mvcc's storeTxnWrite): the txn begins at revision begin (the store revision before it) and
 * its writes, if any, all land at begin + 1. A range reads at begin until the txn has changed
 * something, at begin + 1 after; a put answers begin + 1; a delete begin + 1 when it deleted
 * something or the txn had already changed something, begin otherwise; a nested txn's own
 * header is left empty (revision 0), while its sub-responses follow the same rule.
 */
struct txn_revs {
    int64_t begin;
    bool changed; /* a put, or a delete that deleted something, came earlier in the txn */
};

/* True when the txn (nested txns included) changed the store. */
static bool txn_changes(const struct store_txn_result *r)
{
    for (size_t i = 0; i < r->responses_count; i++) {
        const struct store_op_result *op = &r->responses[i];
        if (op->type == STORE_OP_PUT || (op->type == STORE_OP_DELETE && op->u.del.deleted > 0) ||
            (op->type == STORE_OP_TXN && op->u.txn != NULL && txn_changes(op->u.txn))) {
            return true;
        }
    }
    return false;
}

static int txn_resp_walk(const struct store_txn_result *r,
                         Etcdserverpb__ResponseHeader *hdr,
                         struct latch_arena *a,
                         struct txn_revs *revs,
                         Etcdserverpb__TxnResponse *out);

/* One sub-response of a txn, with a header holding only the revision (as etcd). */
static int op_resp(const struct store_op_result *r,
                   struct txn_revs *revs,
                   struct latch_arena *a,
                   Etcdserverpb__ResponseOp *out)
{
    etcdserverpb__response_op__init(out);
    Etcdserverpb__ResponseHeader *hdr = latch_arena_calloc(a, 1, sizeof(*hdr));
    if (hdr == NULL) {
        return LATCH_ENOMEM;
    }
    etcdserverpb__response_header__init(hdr);
    switch (r->type) {
    case STORE_OP_RANGE:
        hdr->revision = revs->begin + (revs->changed ? 1 : 0);
        out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
        out->response_range = latch_arena_calloc(a, 1, sizeof(*out->response_range));
        return out->response_range == NULL
                   ? LATCH_ENOMEM
                   : etcd_range_resp(&r->u.range, hdr, a, out->response_range);
    case STORE_OP_PUT:
        revs->changed = true;
        hdr->revision = revs->begin + 1;
        out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
        out->response_put = latch_arena_calloc(a, 1, sizeof(*out->response_put));
        return out->response_put == NULL ? LATCH_ENOMEM
                                         : etcd_put_resp(&r->u.put, hdr, a, out->response_put);
    case STORE_OP_DELETE:
        revs->changed = revs->changed || r->u.del.deleted > 0;
        hdr->revision = revs->begin + (revs->changed ? 1 : 0);
        out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
        out->response_delete_range = latch_arena_calloc(a, 1, sizeof(*out->response_delete_range));
        return out->response_delete_range == NULL
                   ? LATCH_ENOMEM
                   : etcd_delete_resp(&r->u.del, hdr, a, out->response_delete_range);
    case STORE_OP_TXN:
        out->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
        out->response_txn = latch_arena_calloc(a, 1, sizeof(*out->response_txn));
        return out->response_txn == NULL || r->u.txn == NULL
                   ? LATCH_ENOMEM
                   : txn_resp_walk(r->u.txn, hdr, a, revs, out->response_txn);
    default:
        return LATCH_EINVAL;
    }
}

static int txn_resp_walk(const struct store_txn_result *r,
                         Etcdserverpb__ResponseHeader *hdr,
                         struct latch_arena *a,
                         struct txn_revs *revs,
                         Etcdserverpb__TxnResponse *out)
{
    etcdserverpb__txn_response__init(out);
    out->header = hdr;
    out->succeeded = r->succeeded;
    if (r->responses_count == 0) {
        return 0;
    }
    Etcdserverpb__ResponseOp **ptrs = latch_arena_calloc(a, r->responses_count, sizeof(*ptrs));
    Etcdserverpb__ResponseOp *ops = latch_arena_calloc(a, r->responses_count, sizeof(*ops));
    if (ptrs == NULL || ops == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < r->responses_count; i++) {
        int rc = op_resp(&r->responses[i], revs, a, &ops[i]);
        if (rc != 0) {
            return rc;
        }
        ptrs[i] = &ops[i];
    }
    out->responses = ptrs;
    out->n_responses = r->responses_count;
    return 0;
}

int etcd_txn_resp(const struct store_txn_result *r,
                  Etcdserverpb__ResponseHeader *hdr,
                  struct latch_arena *a,
                  Etcdserverpb__TxnResponse *out)
{
    int64_t revision = hdr != NULL ? hdr->revision : 0;
    struct txn_revs revs = {.begin = revision - (txn_changes(r) ? 1 : 0), .changed = false};
    return txn_resp_walk(r, hdr, a, &revs, out);
}

/* ---- errors ------------------------------------------------------------------------- */

int etcd_status(int err, const char *why, char *msg, size_t cap)
{
    const char *text;
    int status;
    switch (err) {
    case LATCH_EINVAL:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = why != NULL && why[0] != '\0' ? why : "invalid argument";
        break;
    case LATCH_ETOOBIG:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "request is too large";
        break;
    case LATCH_ETOOMANYOPS:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "too many operations in txn request";
        break;
    case LATCH_EDUPKEY:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "duplicate key given in txn request";
        break;
    case LATCH_ENOKEY:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "key not found";
        break;
    case LATCH_ECOMPACTED:
        status = API_GRPC_STATUS_OUT_OF_RANGE;
        text = "mvcc: required revision has been compacted";
        break;
    case LATCH_EFUTUREREV:
        status = API_GRPC_STATUS_OUT_OF_RANGE;
        text = "mvcc: required revision is a future revision";
        break;
    case LATCH_ENOTFOUND:
        status = API_GRPC_STATUS_NOT_FOUND;
        text = "requested lease not found";
        break;
    case LATCH_EEXIST:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "lease already exists";
        break;
    case LATCH_ENOSPACE:
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        text = "mvcc: database space exceeded";
        break;
    case LATCH_ENOLEADER:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "no leader";
        break;
    case LATCH_ENOTLEADER:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "not leader";
        break;
    case LATCH_ETRANSFER:
    case LATCH_ELEADERCHANGED:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "leader changed";
        break;
    case LATCH_ETIMEDOUT:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "request timed out";
        break;
    case LATCH_ELEADERFAIL:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "request timed out, possibly due to previous leader failure";
        break;
    case LATCH_ECONNLOST:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "request timed out, possibly due to connection lost";
        break;
    case LATCH_ESHUTDOWN:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = "server stopped";
        break;
    case LATCH_EUNCOMMITTED:
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        text = "too many requests";
        break;
    case LATCH_ENOMEM:
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        text = "out of memory";
        break;
    default:
        /* EIO, ECORRUPT and the rest: the member cannot serve; say what happened. */
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = latch_strerror(err);
        break;
    }
    snprintf(msg, cap, "etcdserver: %s", text);
    return status;
}
