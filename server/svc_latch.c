/*
 * svc_latch.c — the latch.v1 service: registration, the shared helpers of svc_latch_int.h,
 * sessions and the tree (see svc_latch.h).
 *
 * Tree writes. Create, Set and Delete are each a STORE_CMD_TREE_MULTI of one op, Multi one
 * of many; a request's fence becomes the multi's guard (a STORE_CMP_FENCE compare over the
 * lock's queue), so the fence check and the write are one Raft entry, applied atomically and
 * identically on every member. A request waiting for its entry is a struct tree_wait: it
 * owns the unpacked request (whose strings the answer reuses) and is answered once, from the
 * node's callback. The node calls back every proposal and read before it closes, and the
 * service is freed only after that (svc_latch.h), so a wait may point at the service.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "store.h"
#include "svc_latch_int.h"

#define LATCH_CHILDREN_LIMIT_DEFAULT 1000u
#define LATCH_CHILDREN_LIMIT_MAX     10000u
#define LATCH_SEQ_DIGITS             20u /* a sequential name's suffix: %020 of a revision */
#define LATCH_STAT_RETRIES           4   /* value and stat read apart must agree */

/* ---- shared helpers ------------------------------------------------------------------- */

void latch__header(const struct srv_latch *l, int64_t revision, Latch__V1__Header *h)
{
    struct srv_node_status st;
    srv_node_status(l->node, &st);
    latch__v1__header__init(h);
    h->cluster_id = l->cluster_id;
    h->member_id = l->member_id;
    h->revision = revision;
    h->raft_term = st.term;
}

int latch__status(int err, const char *detail, char *msg, size_t cap)
{
    const char *text;
    int status;
    switch (err) {
    case LATCH_ENOTFOUND:
        status = API_GRPC_STATUS_NOT_FOUND;
        text = "no node";
        break;
    case LATCH_EEXIST:
        status = API_GRPC_STATUS_ALREADY_EXISTS;
        text = "node exists";
        break;
    case LATCH_ENOTEMPTY:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "node not empty";
        break;
    case LATCH_EBADVERSION:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "bad version";
        break;
    case LATCH_EFENCED:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "fence rejected";
        break;
    case LATCH_ENOTLEADER:
        status = API_GRPC_STATUS_FAILED_PRECONDITION;
        text = "not leader";
        break;
    case LATCH_EBUSY:
        status = API_GRPC_STATUS_ABORTED;
        text = "lock busy";
        break;
    case LATCH_EINVAL: /* the detail says what is wrong: "bad path \"/a/\"" */
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = detail != NULL && detail[0] != '\0' ? detail : "invalid argument";
        detail = NULL;
        break;
    case LATCH_ETOOBIG:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = "request is too large";
        break;
    case LATCH_EDUPKEY:
    case LATCH_ETOOMANYOPS:
        status = API_GRPC_STATUS_INVALID_ARGUMENT;
        text = latch_strerror(err);
        break;
    case LATCH_ENOSPACE:
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        text = "database space exceeded";
        break;
    case LATCH_ECOMPACTED:
        status = API_GRPC_STATUS_OUT_OF_RANGE;
        text = "required revision has been compacted";
        break;
    case LATCH_EFUTUREREV:
        status = API_GRPC_STATUS_OUT_OF_RANGE;
        text = "required revision is a future revision";
        break;
    case LATCH_ETIMEDOUT:
        status = API_GRPC_STATUS_DEADLINE_EXCEEDED;
        text = "timed out";
        break;
    case LATCH_ENOLEADER:
    case LATCH_ETRANSFER:
    case LATCH_ELEADERCHANGED:
    case LATCH_ELEADERFAIL:
    case LATCH_ECONNLOST:
    case LATCH_EUNCOMMITTED:
    case LATCH_ESHUTDOWN:
    case LATCH_ENOTMEMBER:
        status = API_GRPC_STATUS_UNAVAILABLE;
        text = latch_strerror(err);
        break;
    default:
        status = API_GRPC_STATUS_INTERNAL;
        text = latch_strerror(err);
        break;
    }
    if (detail != NULL && detail[0] != '\0') {
        snprintf(msg, cap, "latch: %s: %s", text, detail);
    } else {
        snprintf(msg, cap, "latch: %s", text);
    }
    return status;
}

void latch__fail(struct api_call *call, int err, const char *detail)
{
    char msg[640];
    int status = latch__status(err, detail, msg, sizeof(msg));
    api_call_fail(call, status, msg);
}

int latch__read_point(struct srv_latch *l, bool serializable, srv_node_read_cb cb, void *data)
{
    if (serializable) {
        cb(data, 0);
        return 0;
    }
    return srv_node_read_index(l->node, cb, data);
}

int latch__propose(struct srv_latch *l,
                   const struct store_cmd *c,
                   srv_node_propose_cb cb,
                   void *data)
{
    return srv_kv_propose_cmd(l->kv, c, cb, data);
}

int latch__queue_prefix(
    const char *name, bool election, uint8_t *buf, size_t *len, const char **why)
{
    static const char lock_pfx[] = "\0lock/";
    static const char elect_pfx[] = "\0elect/";
    const char *pfx = election ? elect_pfx : lock_pfx;
    size_t pfx_len = (election ? sizeof(elect_pfx) : sizeof(lock_pfx)) - 1u;
    size_t n = name != NULL ? strlen(name) : 0;

    if (n == 0) {
        *why = election ? "election name is empty" : "lock name is empty";
        return LATCH_EINVAL;
    }
    if (n > LATCH__NAME_MAX) {
        *why = election ? "election name is too long" : "lock name is too long";
        return LATCH_EINVAL;
    }
    /* protobuf-c strings end at the first NUL; a name with one arrives cut, never mixed.
     * The NUL that ends the name keeps "a"'s queue range off "a/b"'s (svc_latch_int.h). */
    memcpy(buf, pfx, pfx_len);
    memcpy(buf + pfx_len, name, n);
    buf[pfx_len + n] = '\0';
    *len = pfx_len + n + 1u;
    LATCH_ASSERT(*len <= LATCH__QUEUE_MAX);
    return 0;
}

void latch__queue_end(const uint8_t *prefix, size_t prefix_len, uint8_t *end)
{
    LATCH_ASSERT(prefix_len > 0 && prefix_len <= LATCH__QUEUE_MAX &&
                 prefix[prefix_len - 1] == '\0');
    memcpy(end, prefix, prefix_len);
    end[prefix_len - 1] = 1;
}

size_t latch__entry_key(
    const uint8_t *prefix, size_t prefix_len, bool shared, int64_t session, uint8_t *buf)
{
    char hex[17];
    LATCH_ASSERT(prefix_len <= LATCH__QUEUE_MAX);
    memcpy(buf, prefix, prefix_len);
    buf[prefix_len] = shared ? LATCH__KIND_SHARED : LATCH__KIND_EXCLUSIVE;
    snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)session);
    memcpy(buf + prefix_len + 1u, hex, 16);
    return prefix_len + 17u;
}

bool latch__entry_parse(
    const uint8_t *key, size_t key_len, size_t prefix_len, bool *shared, int64_t *session)
{
    if (key_len != prefix_len + 17u) {
        return false;
    }
    uint8_t kind = key[prefix_len];
    if (kind != LATCH__KIND_SHARED && kind != LATCH__KIND_EXCLUSIVE) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = prefix_len + 1u; i < key_len; i++) {
        uint8_t c = key[i];
        uint64_t d;
        if (c >= '0' && c <= '9') {
            d = (uint64_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (uint64_t)(c - 'a' + 10);
        } else {
            return false;
        }
        v = (v << 4) | d;
    }
    *shared = kind == LATCH__KIND_SHARED;
    *session = (int64_t)v;
    return true;
}

int latch__fence_compare(const Latch__V1__Fence *f,
                         uint8_t *buf,
                         uint8_t *end_buf,
                         struct store_compare *out,
                         const char **why)
{
    static const uint8_t shared_marker = LATCH__KIND_SHARED;
    size_t len = 0;
    int rc = latch__queue_prefix(f->lock, f->is_election, buf, &len, why);
    if (rc != 0) {
        return rc;
    }
    if (f->token <= 0) {
        *why = "fence token must be positive";
        return LATCH_EINVAL;
    }
    latch__queue_end(buf, len, end_buf);
    *out = (struct store_compare){
        .target = STORE_CMP_FENCE,
        .result = STORE_CMP_EQUAL,
        .key = buf,
        .range_end = end_buf,
        .key_len = (uint32_t)len,
        .range_end_len = (uint32_t)len,
        .number = f->token,
        .value = &shared_marker,
        .value_len = 1,
    };
    return 0;
}

int latch__current_token(
    struct srv_latch *l, const uint8_t *prefix, size_t prefix_len, int64_t *token, bool *tombstone)
{
    uint8_t end[LATCH__QUEUE_MAX];
    latch__queue_end(prefix, prefix_len, end);
    struct store_range_req q = {
        .key = prefix,
        .range_end = end,
        .key_len = (uint32_t)prefix_len,
        .range_end_len = (uint32_t)prefix_len,
        .sort_order = STORE_SORT_ASCEND,
        .sort_target = STORE_SORT_CREATE,
        .limit = 1,
    };
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_range_result r;
    int rc = store_range(srv_node_reader(l->node), &q, &a, &r, NULL);
    *token = 0;
    if (tombstone != NULL) {
        *tombstone = false;
    }
    if (rc == 0 && r.kvs_count > 0) {
        if (r.kvs[0].lease == 0) { /* a lock-delay tombstone: nobody's grant */
            if (tombstone != NULL) {
                *tombstone = true;
            }
        } else {
            *token = r.kvs[0].create_revision;
        }
    }
    latch_arena_close(&a);
    return rc;
}

void latch__fail_fenced(struct srv_latch *l, struct api_call *call, const Latch__V1__Fence *f)
{
    uint8_t prefix[LATCH__QUEUE_MAX];
    size_t len = 0;
    const char *why = NULL;
    int64_t cur = 0;
    bool tomb = false;
    char detail[LATCH__NAME_MAX + 160];

    if (latch__queue_prefix(f->lock, f->is_election, prefix, &len, &why) == 0) {
        (void)latch__current_token(l, prefix, len, &cur, &tomb);
    }
    snprintf(detail, sizeof(detail),
             "token %" PRId64 " of %s %s is not current (current token %" PRId64 "%s)", f->token,
             f->is_election ? "election" : "lock", f->lock != NULL ? f->lock : "", cur,
             tomb ? ", lock-delay" : "");
    latch__fail(call, LATCH_EFENCED, detail);
}

/* ---- sessions ------------------------------------------------------------------------- */

struct session_wait {
    struct srv_latch *l;
    struct api_call *call;
    int64_t id;
    bool open;
};

static void session_done(void *data, int err, const struct store_result *res)
{
    struct session_wait *w = data;
    if (err == 0 && res->err != 0) {
        err = res->err;
    }
    if (err != 0) {
        latch__fail(w->call, err,
                    err == LATCH_ENOTFOUND ? "session not found"
                    : err == LATCH_EEXIST  ? "session already exists"
                                           : NULL);
        free(w);
        return;
    }
    Latch__V1__Header hdr;
    latch__header(w->l, res->revision, &hdr);
    if (w->open) {
        srv_lease_keeper_granted(w->l->keeper, res->u.lease_grant.id, res->u.lease_grant.ttl);
        Latch__V1__SessionOpenResponse resp = LATCH__V1__SESSION_OPEN_RESPONSE__INIT;
        resp.header = &hdr;
        resp.session = res->u.lease_grant.id;
        resp.ttl_seconds = res->u.lease_grant.ttl;
        api_call_reply_pb(w->call, &resp.base);
    } else {
        srv_lease_keeper_revoked(w->l->keeper, w->id);
        Latch__V1__SessionCloseResponse resp = LATCH__V1__SESSION_CLOSE_RESPONSE__INIT;
        resp.header = &hdr;
        resp.deleted = res->u.lease_revoke.deleted;
        api_call_reply_pb(w->call, &resp.base);
    }
    free(w);
}

static void
session_propose(struct srv_latch *l, struct api_call *call, const struct store_cmd *c, int64_t id)
{
    struct session_wait *w = calloc(1, sizeof(*w));
    int rc = LATCH_ENOMEM;
    if (w != NULL) {
        *w = (struct session_wait){
            .l = l, .call = call, .id = id, .open = c->type == STORE_CMD_LEASE_GRANT};
        rc = latch__propose(l, c, session_done, w);
    }
    if (rc != 0) {
        free(w);
        latch__fail(call, rc, NULL);
    }
}

static void m_session_open(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_latch *l = data;
    ProtobufCMessage *m =
        api_call_unpack(call, &latch__v1__session_open_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__SessionOpenRequest *in = (const Latch__V1__SessionOpenRequest *)m;
    int64_t ttl = in->ttl_seconds > l->min_ttl ? in->ttl_seconds : l->min_ttl;
    int64_t id = in->id;
    protobuf_c_message_free_unpacked(m, NULL);
    if (ttl > STORE_LEASE_TTL_MAX) {
        latch__fail(call, LATCH_EINVAL, "session TTL is too large");
        return;
    }
    if (id < 0) {
        latch__fail(call, LATCH_EINVAL, "session id must not be negative");
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    session_propose(l, call, &c, id);
}

static void m_session_close(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &latch__v1__session_close_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    int64_t id = ((const Latch__V1__SessionCloseRequest *)m)->session;
    protobuf_c_message_free_unpacked(m, NULL);
    if (id <= 0) {
        latch__fail(call, LATCH_ENOTFOUND, "session not found");
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = id;
    session_propose(data, call, &c, id);
}

/* ---- tree reads ----------------------------------------------------------------------- */

static void stat_fill(const struct store_stat *s, Latch__V1__Stat *out)
{
    latch__v1__stat__init(out);
    out->create_revision = s->create_revision;
    out->mod_revision = s->mod_revision;
    out->version = s->version;
    out->num_children = s->num_children;
    out->cversion = s->cversion;
    out->children_revision = s->children_revision;
    out->owner_session = s->lease;
    out->value_size = s->value_len;
}

/* A valid path from a request, or an answered call (false). */
static bool path_ok(struct api_call *call, const char *path)
{
    size_t n = path != NULL ? strlen(path) : 0;
    if (n == 0) {
        latch__fail(call, LATCH_EINVAL, "path is empty");
        return false;
    }
    if (!store_path_valid((const uint8_t *)path, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n))) {
        char detail[96];
        snprintf(detail, sizeof(detail), "bad path \"%.60s%s\"", path, n > 60 ? "..." : "");
        latch__fail(call, LATCH_EINVAL, detail);
        return false;
    }
    return true;
}

enum read_kind { READ_GET, READ_STAT, READ_CHILDREN };

struct read_wait {
    struct srv_latch *l;
    struct api_call *call;
    enum read_kind kind;
    ProtobufCMessage *req; /* owned, unpacked */
};

/* Stat of path and, with value, its value (into a), consistent with each other. */
static int read_node(struct srv_latch *l,
                     const char *path,
                     bool with_value,
                     struct latch_arena *a,
                     struct store_stat *st,
                     ProtobufCBinaryData *value,
                     int64_t *rev)
{
    const uint8_t *p = (const uint8_t *)path;
    uint32_t n = (uint32_t)strlen(path);
    struct store_reader *r = srv_node_reader(l->node);
    for (int attempt = 0; attempt < LATCH_STAT_RETRIES; attempt++) {
        int rc = store_stat(r, p, n, st);
        if (rc != 0) {
            return rc;
        }
        /* The range gives the header's revision, and the value when asked for. */
        struct store_range_req q = {.key = p, .key_len = n, .count_only = !with_value || n == 1};
        struct store_range_result res;
        rc = store_range(r, &q, a, &res, rev);
        if (rc != 0) {
            return rc;
        }
        if (!with_value || n == 1) { /* the root has no value */
            value->data = NULL;
            value->len = 0;
            return 0;
        }
        if (res.kvs_count == 1 && res.kvs[0].mod_revision == st->mod_revision) {
            value->data = (uint8_t *)res.kvs[0].value;
            value->len = res.kvs[0].value_len;
            return 0;
        }
        /* changed or deleted between the two reads: stat again */
    }
    return LATCH_EUNAVAILABLE; /* changing faster than it can be read: try again */
}

static void serve_get(struct read_wait *w, bool with_value)
{
    const char *path = with_value ? ((Latch__V1__GetRequest *)w->req)->path
                                  : ((Latch__V1__StatRequest *)w->req)->path;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_stat st;
    ProtobufCBinaryData value = {0, NULL};
    int64_t rev = 0;
    int rc = read_node(w->l, path, with_value, &a, &st, &value, &rev);
    if (rc != 0) {
        latch__fail(w->call, rc, rc == LATCH_ENOTFOUND ? path : NULL);
        latch_arena_close(&a);
        return;
    }
    Latch__V1__Header hdr;
    latch__header(w->l, rev, &hdr);
    Latch__V1__Stat s;
    stat_fill(&st, &s);
    if (with_value) {
        Latch__V1__GetResponse resp = LATCH__V1__GET_RESPONSE__INIT;
        resp.header = &hdr;
        resp.value = value;
        resp.stat = &s;
        api_call_reply_pb(w->call, &resp.base);
    } else {
        Latch__V1__StatResponse resp = LATCH__V1__STAT_RESPONSE__INIT;
        resp.header = &hdr;
        resp.stat = &s;
        api_call_reply_pb(w->call, &resp.base);
    }
    latch_arena_close(&a);
}

static void serve_children(struct read_wait *w)
{
    const Latch__V1__ChildrenRequest *in = (const Latch__V1__ChildrenRequest *)w->req;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_stat st;
    ProtobufCBinaryData none = {0, NULL};
    int64_t rev = 0;
    int rc = read_node(w->l, in->path, false, &a, &st, &none, &rev);
    size_t limit = in->limit == 0                         ? LATCH_CHILDREN_LIMIT_DEFAULT
                   : in->limit > LATCH_CHILDREN_LIMIT_MAX ? LATCH_CHILDREN_LIMIT_MAX
                                                          : in->limit;
    struct store_child *kids = NULL;
    size_t n = 0;
    bool more = false;
    if (rc == 0) {
        size_t after_len = in->after != NULL ? strlen(in->after) : 0;
        rc = store_children(srv_node_reader(w->l->node), (const uint8_t *)in->path,
                            (uint32_t)strlen(in->path),
                            after_len > 0 ? (const uint8_t *)in->after : NULL, (uint32_t)after_len,
                            limit, &a, &kids, &n, &more);
    }
    if (rc != 0) {
        latch__fail(w->call, rc, rc == LATCH_ENOTFOUND ? in->path : NULL);
        latch_arena_close(&a);
        return;
    }
    Latch__V1__Child **cp = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*cp));
    Latch__V1__Child *cs = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*cs));
    Latch__V1__Stat *ss = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*ss));
    if (cp == NULL || cs == NULL || ss == NULL) {
        latch__fail(w->call, LATCH_ENOMEM, NULL);
        latch_arena_close(&a);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *name = latch_arena_alloc(&a, kids[i].name_len + 1u);
        if (name == NULL) {
            latch__fail(w->call, LATCH_ENOMEM, NULL);
            latch_arena_close(&a);
            return;
        }
        memcpy(name, kids[i].name, kids[i].name_len);
        name[kids[i].name_len] = '\0';
        latch__v1__child__init(&cs[i]);
        stat_fill(&kids[i].stat, &ss[i]);
        cs[i].name = name;
        cs[i].stat = &ss[i];
        cp[i] = &cs[i];
    }
    Latch__V1__Header hdr;
    latch__header(w->l, rev, &hdr);
    Latch__V1__ChildrenResponse resp = LATCH__V1__CHILDREN_RESPONSE__INIT;
    resp.header = &hdr;
    resp.children = cp;
    resp.n_children = n;
    resp.more = more;
    api_call_reply_pb(w->call, &resp.base);
    latch_arena_close(&a);
}

static void read_cb(void *data, int err)
{
    struct read_wait *w = data;
    if (err != 0) {
        latch__fail(w->call, err, NULL);
    } else if (w->kind == READ_CHILDREN) {
        serve_children(w);
    } else {
        serve_get(w, w->kind == READ_GET);
    }
    protobuf_c_message_free_unpacked(w->req, NULL);
    free(w);
}

static void read_start(struct srv_latch *l,
                       struct api_call *call,
                       enum read_kind kind,
                       const ProtobufCMessageDescriptor *desc,
                       const uint8_t *req,
                       size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, desc, req, len);
    if (m == NULL) {
        return;
    }
    const char *path;
    bool serializable;
    if (kind == READ_GET) {
        path = ((Latch__V1__GetRequest *)m)->path;
        serializable = ((Latch__V1__GetRequest *)m)->serializable;
    } else if (kind == READ_STAT) {
        path = ((Latch__V1__StatRequest *)m)->path;
        serializable = ((Latch__V1__StatRequest *)m)->serializable;
    } else {
        path = ((Latch__V1__ChildrenRequest *)m)->path;
        serializable = ((Latch__V1__ChildrenRequest *)m)->serializable;
    }
    struct read_wait *w = NULL;
    int rc = 0;
    if (path_ok(call, path)) {
        w = calloc(1, sizeof(*w));
        rc = LATCH_ENOMEM;
        if (w != NULL) {
            *w = (struct read_wait){.l = l, .call = call, .kind = kind, .req = m};
            rc = latch__read_point(l, serializable, read_cb, w);
            if (rc == 0) {
                return; /* read_cb owns w and m now (it may already have run) */
            }
        }
        latch__fail(call, rc, NULL);
    }
    free(w);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_get(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    read_start(data, call, READ_GET, &latch__v1__get_request__descriptor, req, len);
}

static void m_stat(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    read_start(data, call, READ_STAT, &latch__v1__stat_request__descriptor, req, len);
}

static void m_children(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    read_start(data, call, READ_CHILDREN, &latch__v1__children_request__descriptor, req, len);
}

/* ---- tree writes: one TREE_MULTI each --------------------------------------------------- */

enum write_kind { WRITE_CREATE, WRITE_SET, WRITE_DELETE, WRITE_MULTI };

struct tree_wait {
    struct srv_latch *l;
    struct api_call *call;
    enum write_kind kind;
    ProtobufCMessage *req;         /* owned, unpacked */
    const Latch__V1__Fence *fence; /* into req, or NULL */
    struct store_tree_op *ops;     /* the request's ops (pointing into req) */
    size_t n_ops;
};

static void tree_wait_free(struct tree_wait *w)
{
    protobuf_c_message_free_unpacked(w->req, NULL);
    free(w->ops);
    free(w);
}

/* The full path of op i after it applied (a sequential create's name) into buf. */
static void
op_path(const struct store_tree_op *op, const struct store_tree_op_result *r, char *buf, size_t cap)
{
    if (op->type == STORE_TREE_OP_CREATE && op->sequential) {
        snprintf(buf, cap, "%.*s%020" PRId64, (int)op->path_len, (const char *)op->path,
                 r->created_revision);
    } else {
        snprintf(buf, cap, "%.*s", (int)op->path_len, (const char *)op->path);
    }
}

/* The stat of a node a CREATE or SET left, as of its revision. */
static void op_stat(const struct store_tree_op *op,
                    const struct store_tree_op_result *r,
                    int64_t revision,
                    Latch__V1__Stat *s)
{
    latch__v1__stat__init(s);
    s->create_revision = r->create_revision;
    s->mod_revision = revision;
    s->version = r->version;
    s->owner_session = r->lease;
    s->value_size = op->value_len;
}

/* The error detail of a failed op: its path, for the errors a path explains. */
static const char *op_detail(const struct store_tree_op *op, int err, char *buf, size_t cap)
{
    if (err == LATCH_ENOTFOUND && op->type == STORE_TREE_OP_CREATE && op->lease != 0) {
        snprintf(buf, cap, "%.*s (no parent, or session %" PRId64 " not found)", (int)op->path_len,
                 (const char *)op->path, op->lease);
    } else if (err == LATCH_ENOTFOUND && op->type == STORE_TREE_OP_CREATE) {
        snprintf(buf, cap, "parent of %.*s", (int)op->path_len, (const char *)op->path);
    } else if (err == LATCH_EINVAL) {
        snprintf(buf, cap, "bad path \"%.*s\"", (int)(op->path_len > 200 ? 200 : op->path_len),
                 (const char *)op->path);
    } else {
        snprintf(buf, cap, "%.*s", (int)(op->path_len > 400 ? 400 : op->path_len),
                 (const char *)op->path);
    }
    return buf;
}

static void reply_multi(struct tree_wait *w, const struct store_result *res)
{
    char msg[640];
    char detail[512];
    Latch__V1__Header hdr;
    latch__header(w->l, res->revision, &hdr);
    Latch__V1__MultiResponse resp = LATCH__V1__MULTI_RESPONSE__INIT;
    resp.header = &hdr;
    if (res->err != 0) {
        int64_t i = res->u.tree_multi.failed_op;
        LATCH_ASSERT(i >= 0 && (size_t)i < w->n_ops);
        (void)latch__status(res->err, op_detail(&w->ops[i], res->err, detail, sizeof(detail)), msg,
                            sizeof(msg));
        resp.succeeded = false;
        resp.failed_op = (uint32_t)i;
        resp.error = msg;
        api_call_reply_pb(w->call, &resp.base);
        return;
    }
    size_t n = res->u.tree_multi.count;
    LATCH_ASSERT(n == w->n_ops);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Latch__V1__OpResult **rp = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*rp));
    Latch__V1__OpResult *rs = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*rs));
    Latch__V1__Stat *ss = latch_arena_calloc(&a, n > 0 ? n : 1, sizeof(*ss));
    char *paths = latch_arena_alloc(&a, (n > 0 ? n : 1) * (STORE_KEY_BYTES_MAX + 1u));
    if (rp == NULL || rs == NULL || ss == NULL || paths == NULL) {
        latch__fail(w->call, LATCH_ENOMEM, NULL);
        latch_arena_close(&a);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct store_tree_op *op = &w->ops[i];
        const struct store_tree_op_result *r = &res->u.tree_multi.results[i];
        char *p = paths + i * (STORE_KEY_BYTES_MAX + 1u);
        latch__v1__op_result__init(&rs[i]);
        op_path(op, r, p, STORE_KEY_BYTES_MAX + 1u);
        rs[i].path = p;
        if (op->type == STORE_TREE_OP_CREATE || op->type == STORE_TREE_OP_SET) {
            op_stat(op, r, res->revision, &ss[i]);
            rs[i].stat = &ss[i];
        }
        rs[i].deleted = r->deleted;
        rp[i] = &rs[i];
    }
    resp.succeeded = true;
    resp.results = rp;
    resp.n_results = n;
    api_call_reply_pb(w->call, &resp.base);
    latch_arena_close(&a);
}

static void tree_done(void *data, int err, const struct store_result *res)
{
    struct tree_wait *w = data;
    char detail[512];
    if (err != 0) {
        latch__fail(w->call, err, NULL);
        tree_wait_free(w);
        return;
    }
    if (res->err == LATCH_EFENCED) {
        LATCH_ASSERT(w->fence != NULL);
        latch__fail_fenced(w->l, w->call, w->fence);
        tree_wait_free(w);
        return;
    }
    if (w->kind == WRITE_MULTI) {
        reply_multi(w, res);
        tree_wait_free(w);
        return;
    }
    LATCH_ASSERT(w->n_ops == 1);
    const struct store_tree_op *op = &w->ops[0];
    if (res->err != 0) {
        latch__fail(w->call, res->err, op_detail(op, res->err, detail, sizeof(detail)));
        tree_wait_free(w);
        return;
    }
    const struct store_tree_op_result *r = &res->u.tree_multi.results[0];
    Latch__V1__Header hdr;
    latch__header(w->l, res->revision, &hdr);
    Latch__V1__Stat s;
    op_stat(op, r, res->revision, &s);
    if (w->kind == WRITE_CREATE) {
        char path[STORE_KEY_BYTES_MAX + 1u];
        op_path(op, r, path, sizeof(path));
        Latch__V1__CreateResponse resp = LATCH__V1__CREATE_RESPONSE__INIT;
        resp.header = &hdr;
        resp.path = path;
        resp.stat = &s;
        api_call_reply_pb(w->call, &resp.base);
    } else if (w->kind == WRITE_SET) {
        /* The node's child counters, read now: the same unless a child changed since. */
        struct store_stat now;
        if (store_stat(srv_node_reader(w->l->node), op->path, op->path_len, &now) == 0 &&
            now.create_revision == s.create_revision) {
            s.num_children = now.num_children;
            s.cversion = now.cversion;
            s.children_revision = now.children_revision;
        }
        Latch__V1__SetResponse resp = LATCH__V1__SET_RESPONSE__INIT;
        resp.header = &hdr;
        resp.stat = &s;
        api_call_reply_pb(w->call, &resp.base);
    } else {
        Latch__V1__DeleteResponse resp = LATCH__V1__DELETE_RESPONSE__INIT;
        resp.header = &hdr;
        resp.deleted = r->deleted;
        api_call_reply_pb(w->call, &resp.base);
    }
    tree_wait_free(w);
}

/* Fills op from one request of the tree (the strings stay in the unpacked request). */
static int op_from_create(const Latch__V1__CreateRequest *in, struct store_tree_op *op)
{
    *op = (struct store_tree_op){.type = STORE_TREE_OP_CREATE,
                                 .path = (const uint8_t *)in->path,
                                 .path_len = (uint32_t)strlen(in->path),
                                 .value = in->value.data,
                                 .value_len = (uint32_t)in->value.len,
                                 .lease = in->session,
                                 .make_parents = in->make_parents,
                                 .sequential = in->sequential};
    return in->session < 0 ? LATCH_EINVAL : 0;
}

static void op_from_set(const Latch__V1__SetRequest *in, struct store_tree_op *op)
{
    *op = (struct store_tree_op){.type = STORE_TREE_OP_SET,
                                 .path = (const uint8_t *)in->path,
                                 .path_len = (uint32_t)strlen(in->path),
                                 .value = in->value.data,
                                 .value_len = (uint32_t)in->value.len,
                                 .expected_version = in->expected_version};
}

static void op_from_delete(const Latch__V1__DeleteRequest *in, struct store_tree_op *op)
{
    *op = (struct store_tree_op){.type = STORE_TREE_OP_DELETE,
                                 .path = (const uint8_t *)in->path,
                                 .path_len = (uint32_t)strlen(in->path),
                                 .expected_version = in->expected_version,
                                 .recursive = in->recursive};
}

static void op_from_check(const Latch__V1__Check *in, struct store_tree_op *op)
{
    *op = (struct store_tree_op){.type = STORE_TREE_OP_CHECK,
                                 .path = (const uint8_t *)in->path,
                                 .path_len = (uint32_t)strlen(in->path),
                                 .expected_version = in->absent ? 0 : in->expected_version,
                                 .absent = in->absent};
}

/*
 * Checks every op before proposing (a bad path answers INVALID_ARGUMENT naming the op, as
 * the store would at apply time, without a trip through the log); *bad gets the index.
 */
static int ops_check(const struct store_tree_op *ops, size_t n, size_t *bad, const char **why)
{
    for (size_t i = 0; i < n; i++) {
        const struct store_tree_op *op = &ops[i];
        *bad = i;
        if (op->expected_version < 0) {
            *why = "expected_version must not be negative";
            return LATCH_EINVAL;
        }
        if (op->value_len > STORE_VALUE_BYTES_MAX) {
            *why = "value is too large";
            return LATCH_ETOOBIG;
        }
        uint32_t check_len = op->path_len;
        if (op->type == STORE_TREE_OP_CREATE && op->sequential) {
            check_len += LATCH_SEQ_DIGITS; /* the name the store will make */
            if (check_len > STORE_KEY_BYTES_MAX) {
                *why = "path is too long";
                return LATCH_EINVAL;
            }
            /* the prefix may end with '/' (a bare counter name): check it with a digit */
            if (op->path_len == 0 || op->path[0] != '/') {
                *why = "bad path";
                return LATCH_EINVAL;
            }
            continue;
        }
        if (!store_path_valid(op->path, op->path_len)) {
            *why = "bad path";
            return LATCH_EINVAL;
        }
        if (op->path_len == 1 && op->type != STORE_TREE_OP_CHECK) {
            *why = "the root cannot be written";
            return LATCH_EINVAL;
        }
    }
    return 0;
}

/* Proposes w's ops with its fence as the guard; answers the call on any error. */
static void tree_propose(struct tree_wait *w)
{
    uint8_t qbuf[LATCH__QUEUE_MAX];
    uint8_t qend[LATCH__QUEUE_MAX];
    struct store_compare guard;
    const char *why = NULL;
    size_t bad = 0;
    char detail[512];

    int rc = ops_check(w->ops, w->n_ops, &bad, &why);
    if (rc != 0) {
        const struct store_tree_op *op = &w->ops[bad];
        int plen = (int)(op->path_len > 200 ? 200 : op->path_len);
        if (w->kind == WRITE_MULTI) {
            snprintf(detail, sizeof(detail), "op %zu: %s \"%.*s\"", bad, why, plen,
                     (const char *)op->path);
        } else {
            snprintf(detail, sizeof(detail), "%s \"%.*s\"", why, plen, (const char *)op->path);
        }
        latch__fail(w->call, rc, detail);
        tree_wait_free(w);
        return;
    }
    if (w->fence != NULL) {
        rc = latch__fence_compare(w->fence, qbuf, qend, &guard, &why);
        if (rc != 0) {
            latch__fail(w->call, rc, why);
            tree_wait_free(w);
            return;
        }
    }
    struct store_cmd c = {.type = STORE_CMD_TREE_MULTI};
    c.u.tree_multi.guards = w->fence != NULL ? &guard : NULL;
    c.u.tree_multi.guards_count = w->fence != NULL ? 1 : 0;
    c.u.tree_multi.ops = w->ops;
    c.u.tree_multi.ops_count = w->n_ops;
    rc = latch__propose(w->l, &c, tree_done, w);
    if (rc != 0) {
        latch__fail(w->call, rc, NULL);
        tree_wait_free(w);
    }
}

/* A wait for one unpacked request of n ops (NULL: answered with ENOMEM). */
static struct tree_wait *tree_wait_new(
    struct srv_latch *l, struct api_call *call, enum write_kind kind, ProtobufCMessage *m, size_t n)
{
    struct tree_wait *w = calloc(1, sizeof(*w));
    struct store_tree_op *ops = calloc(n > 0 ? n : 1, sizeof(*ops));
    if (w == NULL || ops == NULL) {
        free(w);
        free(ops);
        protobuf_c_message_free_unpacked(m, NULL);
        latch__fail(call, LATCH_ENOMEM, NULL);
        return NULL;
    }
    *w = (struct tree_wait){.l = l, .call = call, .kind = kind, .req = m, .ops = ops, .n_ops = n};
    return w;
}

static void m_create(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__create_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct tree_wait *w = tree_wait_new(data, call, WRITE_CREATE, m, 1);
    if (w == NULL) {
        return;
    }
    const Latch__V1__CreateRequest *in = (const Latch__V1__CreateRequest *)m;
    w->fence = in->fence;
    if (op_from_create(in, &w->ops[0]) != 0) {
        latch__fail(call, LATCH_EINVAL, "session must not be negative");
        tree_wait_free(w);
        return;
    }
    tree_propose(w);
}

static void m_set(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__set_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct tree_wait *w = tree_wait_new(data, call, WRITE_SET, m, 1);
    if (w != NULL) {
        w->fence = ((const Latch__V1__SetRequest *)m)->fence;
        op_from_set((const Latch__V1__SetRequest *)m, &w->ops[0]);
        tree_propose(w);
    }
}

static void m_delete(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__delete_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    struct tree_wait *w = tree_wait_new(data, call, WRITE_DELETE, m, 1);
    if (w != NULL) {
        w->fence = ((const Latch__V1__DeleteRequest *)m)->fence;
        op_from_delete((const Latch__V1__DeleteRequest *)m, &w->ops[0]);
        tree_propose(w);
    }
}

static void m_multi(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__multi_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__MultiRequest *in = (const Latch__V1__MultiRequest *)m;
    if (in->n_ops > STORE_TREE_OPS_MAX) {
        protobuf_c_message_free_unpacked(m, NULL);
        latch__fail(call, LATCH_ETOOMANYOPS, NULL);
        return;
    }
    struct tree_wait *w = tree_wait_new(data, call, WRITE_MULTI, m, in->n_ops);
    if (w == NULL) {
        return;
    }
    w->fence = in->fence;
    for (size_t i = 0; i < in->n_ops; i++) {
        const Latch__V1__Op *op = in->ops[i];
        int rc = 0;
        switch (op->op_case) {
        case LATCH__V1__OP__OP_CREATE:
            rc = op_from_create(op->create, &w->ops[i]);
            break;
        case LATCH__V1__OP__OP_SET:
            op_from_set(op->set, &w->ops[i]);
            break;
        case LATCH__V1__OP__OP_DELETE:
            op_from_delete(op->delete_, &w->ops[i]);
            break;
        case LATCH__V1__OP__OP_CHECK:
            op_from_check(op->check, &w->ops[i]);
            break;
        default:
            rc = LATCH_EINVAL;
            break;
        }
        if (rc != 0) {
            char detail[64];
            snprintf(detail, sizeof(detail), "op %zu: %s", i,
                     op->op_case == LATCH__V1__OP__OP__NOT_SET ? "no op set"
                                                               : "session must not be negative");
            latch__fail(call, rc, detail);
            tree_wait_free(w);
            return;
        }
    }
    tree_propose(w);
}

/* ---- registration --------------------------------------------------------------------- */

int srv_latch_register(struct api_server *s,
                       const struct srv_latch_config *cfg,
                       struct srv_latch **out)
{
    if (cfg->node == NULL || cfg->kv == NULL || cfg->keeper == NULL || cfg->loop == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_latch *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return LATCH_ENOMEM;
    }
    l->loop = cfg->loop;
    l->node = cfg->node;
    l->kv = cfg->kv;
    l->keeper = cfg->keeper;
    l->hub = cfg->hub;
    l->cluster_id = cfg->cluster_id;
    l->member_id = cfg->member_id;
    l->min_ttl = cfg->min_ttl > 0 ? cfg->min_ttl : 1;
    static const struct {
        const char *path;
        api_unary_fn fn;
    } unary[] = {
        {"/latch.v1.Latch/SessionOpen", m_session_open},
        {"/latch.v1.Latch/SessionClose", m_session_close},
        {"/latch.v1.Latch/Create", m_create},
        {"/latch.v1.Latch/Get", m_get},
        {"/latch.v1.Latch/Stat", m_stat},
        {"/latch.v1.Latch/Set", m_set},
        {"/latch.v1.Latch/Delete", m_delete},
        {"/latch.v1.Latch/Children", m_children},
        {"/latch.v1.Latch/Multi", m_multi},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(unary) / sizeof(unary[0]) && rc == 0; i++) {
        rc = api_server_register_unary(s, unary[i].path, unary[i].fn, l);
    }
    /* The lock and watch halves (svc_latch_int.h). */
    if (rc == 0) {
        rc = latch__lock_register(s, l);
    }
    if (rc == 0) {
        rc = latch__watch_register(s, l);
    }
    if (rc != 0) {
        srv_latch_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void srv_latch_applied(struct srv_latch *l, int64_t revision)
{
    if (l == NULL) {
        return;
    }
    latch__lock_applied(l, revision);
}

void srv_latch_free(struct srv_latch *l)
{
    if (l == NULL) {
        return;
    }
    latch__lock_free(l);  /* NULL l->locks (not registered) is a no-op */
    latch__watch_free(l); /* NULL l->watches (not registered) is a no-op */
    free(l);
}
