/*
 * latch_client.c — liblatch's async API (latch.h): one api_channel per endpoint, unary calls
 * with failover and retries, sessions kept alive on a SessionKeepAlive stream, watches and
 * leader observation restarted after a broken stream, results built from the responses.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "grpc_tls.h"
#include "grpc_wire.h"
#include "latch/v1/latch.pb-c.h"
#include "latch_assert.h"
#include "latch_int.h"

#define SVC              "/latch.v1.Latch/"
#define BACKOFF_FIRST_MS 50u
#define BACKOFF_MAX_MS   1000u
#define KA_RING          8u

/* ---- errors ------------------------------------------------------------------------- */

static bool has(const char *message, const char *needle)
{
    return message != NULL && strstr(message, needle) != NULL;
}

int latch_status_to_err(int grpc_status, const char *message)
{
    switch (grpc_status) {
    case API_GRPC_STATUS_OK:
        return LATCH_OK;
    case API_GRPC_STATUS_CANCELLED:
        return LATCH_ECANCELED;
    case API_GRPC_STATUS_INVALID_ARGUMENT:
        return LATCH_EINVAL;
    case API_GRPC_STATUS_DEADLINE_EXCEEDED:
        return LATCH_ETIMEDOUT;
    case API_GRPC_STATUS_NOT_FOUND:
        return has(message, "session not found") ? LATCH_ESESSIONLOST : LATCH_ENOTFOUND;
    case API_GRPC_STATUS_ALREADY_EXISTS:
        return LATCH_EEXIST;
    case API_GRPC_STATUS_PERMISSION_DENIED:
    case API_GRPC_STATUS_UNAUTHENTICATED:
        return LATCH_EPERM;
    case API_GRPC_STATUS_RESOURCE_EXHAUSTED:
        return LATCH_ENOSPACE;
    case API_GRPC_STATUS_FAILED_PRECONDITION:
        if (has(message, "not empty")) {
            return LATCH_ENOTEMPTY;
        }
        if (has(message, "bad version")) {
            return LATCH_EBADVERSION;
        }
        if (has(message, "fence")) {
            return LATCH_EFENCED;
        }
        if (has(message, "not leader")) {
            return LATCH_ENOTLEADER;
        }
        return LATCH_ESTATE;
    case API_GRPC_STATUS_ABORTED:
        return LATCH_EBUSY;
    case API_GRPC_STATUS_OUT_OF_RANGE:
        return LATCH_ECOMPACTED;
    case API_GRPC_STATUS_UNIMPLEMENTED:
        return LATCH_EUNIMPLEMENTED;
    case API_GRPC_STATUS_UNAVAILABLE:
        return LATCH_EUNAVAILABLE;
    default:
        return LATCH_EPROTO;
    }
}

/* ---- results ------------------------------------------------------------------------ */

struct latch_result *latch_result_new(int err, int grpc_status, const char *message)
{
    struct latch_result_priv *rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        return NULL;
    }
    rp->message = strdup(message != NULL ? message : "");
    if (rp->message == NULL) {
        free(rp);
        return NULL;
    }
    rp->pub.err = err;
    rp->pub.grpc_status = grpc_status;
    rp->pub.message = rp->message;
    return &rp->pub;
}

void latch_result_free(struct latch_result *r)
{
    if (r == NULL) {
        return;
    }
    struct latch_result_priv *rp = (struct latch_result_priv *)r;
    if (rp->pb != NULL) {
        protobuf_c_message_free_unpacked(rp->pb, NULL);
    }
    free(rp->arrays);
    free(rp->raw);
    free(rp->message);
    free(rp);
}

/* Values in results are never NULL (protobuf-c leaves an empty bytes field NULL). */
static const uint8_t *bytes_or_empty(const uint8_t *p)
{
    return p != NULL ? p : (const uint8_t *)"";
}

static void stat_from(struct latch_stat *out, const Latch__V1__Stat *s)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL) {
        return;
    }
    out->create_revision = s->create_revision;
    out->mod_revision = s->mod_revision;
    out->version = s->version;
    out->num_children = s->num_children;
    out->cversion = s->cversion;
    out->children_revision = s->children_revision;
    out->owner_session = s->owner_session;
    out->value_size = s->value_size;
}

static void header_from(struct latch_result *r, const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "header");
    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        f->descriptor != &latch__v1__header__descriptor) {
        return;
    }
    const Latch__V1__Header *h = *(Latch__V1__Header *const *)((const char *)m + f->offset);
    if (h == NULL) {
        return;
    }
    r->revision = h->revision;
    r->cluster_id = h->cluster_id;
    r->member_id = h->member_id;
    r->raft_term = h->raft_term;
}

static int grants_from(struct latch_result_priv *rp, Latch__V1__Grant **g, size_t n)
{
    if (n == 0) {
        return LATCH_OK;
    }
    struct latch_grant *a = calloc(n, sizeof(*a));
    if (a == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        a[i].token = g[i]->token;
        a[i].session = g[i]->session;
        a[i].shared = g[i]->shared;
    }
    rp->arrays = a;
    rp->pub.grants = a;
    rp->pub.n_grants = n;
    return LATCH_OK;
}

/* Points rp->pub into the unpacked response m (owned by rp from now on). */
static int fill_result(struct latch_result_priv *rp, ProtobufCMessage *m)
{
    struct latch_result *r = &rp->pub;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    rp->pb = m;
    header_from(r, m);
    if (d == &latch__v1__session_open_response__descriptor) {
        const Latch__V1__SessionOpenResponse *x = (const void *)m;
        r->session = x->session;
        r->ttl = x->ttl_seconds;
    } else if (d == &latch__v1__session_close_response__descriptor) {
        r->deleted = ((const Latch__V1__SessionCloseResponse *)(const void *)m)->deleted;
    } else if (d == &latch__v1__create_response__descriptor) {
        const Latch__V1__CreateResponse *x = (const void *)m;
        r->path = x->path;
        stat_from(&r->stat, x->stat);
    } else if (d == &latch__v1__get_response__descriptor) {
        const Latch__V1__GetResponse *x = (const void *)m;
        r->value = bytes_or_empty(x->value.data);
        r->value_len = x->value.len;
        stat_from(&r->stat, x->stat);
    } else if (d == &latch__v1__stat_response__descriptor) {
        stat_from(&r->stat, ((const Latch__V1__StatResponse *)(const void *)m)->stat);
    } else if (d == &latch__v1__set_response__descriptor) {
        stat_from(&r->stat, ((const Latch__V1__SetResponse *)(const void *)m)->stat);
    } else if (d == &latch__v1__delete_response__descriptor) {
        r->deleted = ((const Latch__V1__DeleteResponse *)(const void *)m)->deleted;
    } else if (d == &latch__v1__children_response__descriptor) {
        const Latch__V1__ChildrenResponse *x = (const void *)m;
        r->more = x->more;
        if (x->n_children > 0) {
            struct latch_child *a = calloc(x->n_children, sizeof(*a));
            if (a == NULL) {
                return LATCH_ENOMEM;
            }
            for (size_t i = 0; i < x->n_children; i++) {
                a[i].name = x->children[i]->name;
                stat_from(&a[i].stat, x->children[i]->stat);
            }
            rp->arrays = a;
            r->children = a;
            r->n_children = x->n_children;
        }
    } else if (d == &latch__v1__multi_response__descriptor) {
        const Latch__V1__MultiResponse *x = (const void *)m;
        r->succeeded = x->succeeded;
        r->failed_op = x->failed_op;
        r->op_error = x->error;
        if (x->n_results > 0) {
            struct latch_op_result *a = calloc(x->n_results, sizeof(*a));
            if (a == NULL) {
                return LATCH_ENOMEM;
            }
            for (size_t i = 0; i < x->n_results; i++) {
                a[i].path = x->results[i]->path;
                stat_from(&a[i].stat, x->results[i]->stat);
                a[i].deleted = x->results[i]->deleted;
            }
            rp->arrays = a;
            r->op_results = a;
            r->n_op_results = x->n_results;
        }
    } else if (d == &latch__v1__acquire_response__descriptor) {
        r->token = ((const Latch__V1__AcquireResponse *)(const void *)m)->token;
    } else if (d == &latch__v1__holder_response__descriptor) {
        const Latch__V1__HolderResponse *x = (const void *)m;
        r->lock_delay = x->lock_delay;
        return grants_from(rp, x->holders, x->n_holders);
    } else if (d == &latch__v1__waiters_response__descriptor) {
        const Latch__V1__WaitersResponse *x = (const void *)m;
        return grants_from(rp, x->waiters, x->n_waiters);
    } else if (d == &latch__v1__check_fence_response__descriptor) {
        const Latch__V1__CheckFenceResponse *x = (const void *)m;
        r->current = x->current;
        r->token = x->current_token;
    } else if (d == &latch__v1__campaign_response__descriptor) {
        r->token = ((const Latch__V1__CampaignResponse *)(const void *)m)->token;
    } else if (d == &latch__v1__leader_response__descriptor) {
        const Latch__V1__LeaderResponse *x = (const void *)m;
        r->token = x->token;
        r->value = bytes_or_empty(x->value.data);
        r->value_len = x->value.len;
        r->session = x->session;
    }
    return LATCH_OK;
}

/* ---- endpoints ---------------------------------------------------------------------- */

static void errf(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

int latch_endpoints_parse(
    const char *list, char **out, size_t cap, size_t *n, char *err, size_t err_cap)
{
    *n = 0;
    if (list == NULL || *list == '\0') {
        list = LATCH_DEFAULT_ENDPOINTS;
    }
    const char *p = list;
    int rc = LATCH_OK;
    while (rc == LATCH_OK) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '/')) {
            len--;
        }
        const char *scheme = "http";
        if (len >= 7 && strncmp(p, "http://", 7) == 0) {
            p += 7;
            len -= 7;
        } else if (len >= 8 && strncmp(p, "https://", 8) == 0) {
            scheme = "https";
            p += 8;
            len -= 8;
        } else if (memchr(p, '/', len) != NULL) {
            errf(err, err_cap, "endpoint %zu: unknown scheme (http:// or https://)", *n + 1);
            rc = LATCH_EINVAL;
            break;
        } else {
            scheme = "";
        }
        /* host:port, host a name, an IPv4 literal or [IPv6] */
        const char *colon = NULL;
        for (size_t i = len; i > 0; i--) {
            if (p[i - 1] == ':') {
                colon = p + i - 1;
                break;
            }
            if (p[i - 1] == ']') {
                break;
            }
        }
        if (len == 0 || colon == NULL || colon == p || colon + 1 == p + len) {
            errf(err, err_cap, "endpoint %zu (\"%.*s\"): want host:port", *n + 1, (int)len, p);
            rc = LATCH_EINVAL;
            break;
        }
        long port = 0;
        for (const char *q = colon + 1; q < p + len; q++) {
            if (*q < '0' || *q > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535) {
            errf(err, err_cap, "endpoint %zu (\"%.*s\"): bad port", *n + 1, (int)len, p);
            rc = LATCH_EINVAL;
            break;
        }
        if (len > API_CHANNEL_ENDPOINT_MAX - 10) {
            errf(err, err_cap, "endpoint %zu: too long", *n + 1);
            rc = LATCH_EINVAL;
            break;
        }
        if (*n == cap) {
            errf(err, err_cap, "more than %zu endpoints", cap);
            rc = LATCH_EINVAL;
            break;
        }
        size_t need = strlen(scheme) + 3 + len + 1;
        char *s = malloc(need);
        if (s == NULL) {
            rc = LATCH_ENOMEM;
            break;
        }
        if (*scheme != '\0') {
            snprintf(s, need, "%s://%.*s", scheme, (int)len, p);
        } else {
            snprintf(s, need, "%.*s", (int)len, p);
        }
        out[(*n)++] = s;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    if (rc != LATCH_OK) {
        for (size_t i = 0; i < *n; i++) {
            free(out[i]);
        }
        *n = 0;
    }
    return rc;
}

/* ---- the client --------------------------------------------------------------------- */

struct op;
struct latch_watch;

struct latch_client {
    uv_loop_t *loop;
    struct api_tls_ctx *tls;
    struct api_channel *ch[API_CHANNEL_ENDPOINTS_MAX];
    /* How many times each channel became READY: a call started while its channel was not
     * READY, that failed before the next READY, was never sent. */
    uint64_t ready_epoch[API_CHANNEL_ENDPOINTS_MAX];
    size_t n;
    size_t cur;
    uint64_t call_timeout_ms;
    uint64_t rng;
    bool closing;
    size_t refs; /* open channels + live ops, sessions and watches */
    void (*done)(void *data);
    void *done_data;
    struct op *ops;
    struct latch_session *sessions;
    struct latch_watch *watches;
};

uv_loop_t *latch_client_loop(struct latch_client *c)
{
    return c->loop;
}

static uint64_t jitter(struct latch_client *c, uint64_t ms)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    /* [0.8, 1.2) */
    return ms * (80 + c->rng % 40) / 100;
}

/* The delay before attempt number `failures` (1-based) after consecutive failures: none while
 * there are endpoints left in this round, then a doubling backoff. */
static uint64_t retry_delay(struct latch_client *c, unsigned failures)
{
    if (failures % c->n != 0) {
        return 0;
    }
    unsigned rounds = failures / (unsigned)c->n;
    uint64_t d = BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < rounds && d < BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    return jitter(c, d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS);
}

/* The endpoint ep failed: the next calls go to the one after it. */
static void endpoint_failed(struct latch_client *c, size_t ep)
{
    if (c->cur == ep) {
        c->cur = (ep + 1) % c->n;
    }
}

static void maybe_finish(struct latch_client *c)
{
    if (!c->closing || c->refs > 0) {
        return;
    }
    void (*done)(void *) = c->done;
    void *data = c->done_data;
    api_tls_ctx_free(c->tls);
    free(c);
    if (done != NULL) {
        done(data);
    }
}

static void channel_state(struct api_channel *ch, enum api_channel_state state, void *data)
{
    struct latch_client *c = data;
    for (size_t i = 0; i < c->n; i++) {
        if (c->ch[i] == ch && state == API_CHANNEL_READY) {
            c->ready_epoch[i]++;
        }
    }
}

static void channel_closed(struct api_channel *ch, void *data)
{
    (void)ch;
    struct latch_client *c = data;
    LATCH_ASSERT(c->refs > 0);
    c->refs--;
    maybe_finish(c);
}

int latch_client_new(uv_loop_t *loop,
                     const struct latch_options *opts,
                     struct latch_client **out,
                     char *err,
                     size_t err_cap)
{
    *out = NULL;
    struct latch_options none = {0};
    if (opts == NULL) {
        opts = &none;
    }
    if ((opts->cert_file == NULL) != (opts->key_file == NULL)) {
        errf(err, err_cap, "a client certificate needs both --cert and --key");
        return LATCH_EINVAL;
    }
    char *eps[API_CHANNEL_ENDPOINTS_MAX];
    size_t n = 0;
    int rc =
        latch_endpoints_parse(opts->endpoints, eps, API_CHANNEL_ENDPOINTS_MAX, &n, err, err_cap);
    if (rc != LATCH_OK) {
        return rc;
    }
    struct latch_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = LATCH_ENOMEM;
        goto out;
    }
    c->loop = loop;
    c->n = n;
    c->call_timeout_ms =
        opts->call_timeout_ms != 0 ? opts->call_timeout_ms : LATCH_DEFAULT_CALL_TIMEOUT_MS;
    c->rng = uv_hrtime() | 1;
    bool want_tls = opts->tls || opts->ca_file != NULL || opts->cert_file != NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(eps[i], "https://", 8) == 0) {
            want_tls = true;
        }
    }
    if (want_tls) {
        struct api_tls_config tc = {
            .cert_file = opts->cert_file,
            .key_file = opts->key_file,
            .ca_file = opts->ca_file,
        };
        char terr[API_TLS_ERR_MAX];
        rc = api_tls_ctx_new(&tc, false, &c->tls, terr, sizeof(terr));
        if (rc != LATCH_OK) {
            errf(err, err_cap, "TLS: %s", terr);
            free(c);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *ep = eps[i];
        struct api_channel_config cfg = {
            .endpoints = &ep,
            .endpoints_count = 1,
            .tls = c->tls,
            .verify_host = true,
            .connect_timeout_ms = opts->connect_timeout_ms != 0 ? opts->connect_timeout_ms
                                                                : LATCH_DEFAULT_CONNECT_TIMEOUT_MS,
            .backoff_initial_ms = 100,
            .backoff_max_ms = 2000,
            .user_agent = "liblatch/1",
            .state_cb = channel_state,
            .data = c,
        };
        rc = api_channel_new(loop, &cfg, &c->ch[i]);
        if (rc != LATCH_OK) {
            errf(err, err_cap, "endpoint %s: %s", ep, latch_strerror(rc));
            break;
        }
        c->refs++;
    }
    if (rc != LATCH_OK) {
        /* Channels made so far close asynchronously; the client is freed after them. */
        c->closing = true;
        size_t made = c->refs;
        if (made == 0) {
            api_tls_ctx_free(c->tls);
            free(c);
        }
        for (size_t i = 0; i < made; i++) {
            api_channel_close(c->ch[i], channel_closed, c);
        }
        goto out;
    }
    *out = c;
out:
    for (size_t i = 0; i < n; i++) {
        free(eps[i]);
    }
    return rc;
}

/* ---- unary calls with failover -------------------------------------------------------- */

enum retry_rule {
    RETRY_ALWAYS,  /* reads and idempotent writes */
    RETRY_RELEASE, /* retried; NOT_FOUND after a retry means the first attempt did it */
    RETRY_UNSENT,  /* only when no attempt can have reached the server */
};

struct op {
    struct op *prev, *next;
    struct latch_client *c;
    char *method;
    uint8_t *req;
    size_t len;
    const ProtobufCMessageDescriptor *desc; /* NULL: a raw call */
    enum retry_rule rule;
    uint64_t deadline; /* loop time in ms; 0: none */
    unsigned attempts;
    unsigned failures; /* consecutive UNAVAILABLE answers */
    bool in_flight;
    bool maybe_sent;       /* some attempt may have reached the server */
    uint64_t attempt_sent; /* loop time when the current attempt started */
    bool start_ready;      /* the current attempt's channel was READY when it started */
    uint64_t start_epoch;  /* and its ready_epoch then */
    size_t ep;
    uv_timer_t timer;
    latch_cb cb;
    void *data;
};

static void op_closed(uv_handle_t *h)
{
    struct op *o = h->data;
    struct latch_client *c = o->c;
    free(o->method);
    free(o->req);
    free(o);
    LATCH_ASSERT(c->refs > 0);
    c->refs--;
    maybe_finish(c);
}

static void op_unlink(struct op *o)
{
    struct latch_client *c = o->c;
    if (o->prev != NULL) {
        o->prev->next = o->next;
    } else {
        c->ops = o->next;
    }
    if (o->next != NULL) {
        o->next->prev = o->prev;
    }
    o->prev = o->next = NULL;
}

/* Hands r (may be NULL: out of memory) to the caller and frees o. */
static void op_finish(struct op *o, struct latch_result *r)
{
    op_unlink(o);
    uv_timer_stop(&o->timer);
    if (r == NULL) {
        r = latch_result_new(LATCH_ENOMEM, -1, "out of memory");
    }
    if (r != NULL) {
        r->retried = o->attempts > 1;
        ((struct latch_result_priv *)r)->sent_at = o->attempt_sent;
    }
    latch_cb cb = o->cb;
    void *data = o->data;
    uv_close((uv_handle_t *)&o->timer, op_closed);
    if (cb != NULL) {
        cb(r, data);
    } else {
        latch_result_free(r);
    }
}

static void op_attempt(struct op *o);

static void op_timer(uv_timer_t *t)
{
    struct op *o = t->data;
    if (o->c->closing) {
        op_finish(o, latch_result_new(LATCH_ECANCELED, API_GRPC_STATUS_CANCELLED, "client closed"));
        return;
    }
    op_attempt(o);
}

/* UNAVAILABLE answers after which the server certainly proposed nothing (latch.v1's and the
 * etcd services' texts for these codes). "leader changed", "connection lost" and timeouts are
 * ambiguous: the entry may still commit. */
static bool unproposed(const char *message)
{
    return has(message, "no leader is known") || has(message, "etcdserver: no leader") ||
           has(message, "proposal dropped") || has(message, "leadership transfer in progress") ||
           has(message, "not a member of the cluster");
}

static void
op_done(int status, const char *message, const uint8_t *resp, size_t resp_len, void *data)
{
    struct op *o = data;
    struct latch_client *c = o->c;
    o->in_flight = false;
    if (status == API_GRPC_STATUS_OK) {
        struct latch_result *r = latch_result_new(LATCH_OK, 0, "");
        if (r != NULL && o->desc != NULL) {
            ProtobufCMessage *m = protobuf_c_message_unpack(o->desc, NULL, resp_len, resp);
            if (m == NULL) {
                latch_result_free(r);
                r = latch_result_new(LATCH_EPROTO, API_GRPC_STATUS_INTERNAL,
                                     "liblatch: a response does not parse");
            } else if (fill_result((struct latch_result_priv *)r, m) != LATCH_OK) {
                latch_result_free(r);
                r = NULL;
            }
        } else if (r != NULL && resp_len > 0) {
            struct latch_result_priv *rp = (struct latch_result_priv *)r;
            rp->raw = malloc(resp_len);
            if (rp->raw == NULL) {
                latch_result_free(r);
                r = NULL;
            } else {
                memcpy(rp->raw, resp, resp_len);
                r->raw = rp->raw;
                r->raw_len = resp_len;
            }
        }
        op_finish(o, r);
        return;
    }
    if (status == API_GRPC_STATUS_UNAVAILABLE && !c->closing) {
        /* Ambiguous: a connection was up during the attempt (the request may have gone out)
         * and the server did not say it proposed nothing. */
        bool up = o->start_ready || c->ready_epoch[o->ep] != o->start_epoch;
        if (up && !unproposed(message)) {
            o->maybe_sent = true;
        }
        endpoint_failed(c, o->ep);
        bool may_retry = o->rule != RETRY_UNSENT || !o->maybe_sent;
        uint64_t delay = retry_delay(c, ++o->failures);
        uint64_t now = uv_now(c->loop);
        if (may_retry && (o->deadline == 0 || now + delay < o->deadline)) {
            uv_timer_start(&o->timer, op_timer, delay, 0);
            return;
        }
    }
    int err = latch_status_to_err(status, message);
    if (o->rule == RETRY_RELEASE && o->attempts > 1 && status == API_GRPC_STATUS_NOT_FOUND) {
        err = LATCH_OK;
    }
    op_finish(o, latch_result_new(err, status, message));
}

static void op_attempt(struct op *o)
{
    struct latch_client *c = o->c;
    struct api_call_opts co = {0};
    if (o->deadline != 0) {
        uint64_t now = uv_now(c->loop);
        co.timeout_ms = o->deadline > now ? o->deadline - now : 1;
    }
    o->ep = c->cur;
    struct api_channel *ch = c->ch[o->ep];
    o->start_ready = api_channel_state(ch) == API_CHANNEL_READY;
    uv_update_time(c->loop);
    o->attempt_sent = uv_now(c->loop);
    o->start_epoch = c->ready_epoch[o->ep];
    o->attempts++;
    int rc = api_channel_unary(ch, o->method, o->req, o->len, &co, op_done, o);
    if (rc != LATCH_OK) {
        /* op_attempt runs from a loop callback: reporting here is not inside the caller. */
        op_done(API_GRPC_STATUS_INTERNAL, latch_strerror(rc), NULL, 0, o);
        return;
    }
    o->in_flight = true;
}

/* Starts an op with the packed request req (taken over: freed by the op). */
static int op_start(struct latch_client *c,
                    const char *method,
                    uint8_t *req,
                    size_t len,
                    const ProtobufCMessageDescriptor *desc,
                    enum retry_rule rule,
                    uint64_t timeout_ms,
                    latch_cb cb,
                    void *data)
{
    if (c->closing) {
        free(req);
        return LATCH_ESTATE;
    }
    struct op *o = calloc(1, sizeof(*o));
    char *m = strdup(method);
    if (o == NULL || m == NULL) {
        free(o);
        free(m);
        free(req);
        return LATCH_ENOMEM;
    }
    o->c = c;
    o->method = m;
    o->req = req;
    o->len = len;
    o->desc = desc;
    o->rule = rule;
    o->cb = cb;
    o->data = data;
    if (timeout_ms != UINT64_MAX) {
        o->deadline = uv_now(c->loop) + (timeout_ms != 0 ? timeout_ms : c->call_timeout_ms);
    }
    uv_timer_init(c->loop, &o->timer);
    o->timer.data = o;
    o->next = c->ops;
    if (c->ops != NULL) {
        c->ops->prev = o;
    }
    c->ops = o;
    c->refs++;
    /* The first attempt starts from a loop callback too: callbacks never run inside the
     * function that started the call, even for an immediate local failure. */
    uv_timer_start(&o->timer, op_timer, 0, 0);
    return LATCH_OK;
}

static int pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    *out = malloc(*len > 0 ? *len : 1);
    if (*out == NULL) {
        return LATCH_ENOMEM;
    }
    protobuf_c_message_pack(m, *out);
    return LATCH_OK;
}

static int call_pb(struct latch_client *c,
                   const char *name,
                   const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc,
                   enum retry_rule rule,
                   uint64_t timeout_ms,
                   latch_cb cb,
                   void *data)
{
    uint8_t *buf;
    size_t len;
    if (pack(req, &buf, &len) != LATCH_OK) {
        return LATCH_ENOMEM;
    }
    char method[96];
    snprintf(method, sizeof(method), SVC "%s", name);
    return op_start(c, method, buf, len, resp_desc, rule, timeout_ms, cb, data);
}

static bool bad_name(const char *s)
{
    return s == NULL || *s == '\0';
}

static void fence_to(Latch__V1__Fence *pb, const struct latch_fence *f)
{
    latch__v1__fence__init(pb);
    pb->lock = (char *)f->lock;
    pb->token = f->token;
    pb->is_election = f->is_election;
}

/* ---- the tree ------------------------------------------------------------------------- */

int latch_create(struct latch_client *c,
                 const char *path,
                 const void *value,
                 size_t value_len,
                 int64_t session,
                 unsigned flags,
                 const struct latch_fence *fence,
                 latch_cb cb,
                 void *data)
{
    if (bad_name(path) || (value == NULL && value_len > 0)) {
        return LATCH_EINVAL;
    }
    Latch__V1__CreateRequest req = LATCH__V1__CREATE_REQUEST__INIT;
    Latch__V1__Fence f;
    req.path = (char *)path;
    req.value.data = (uint8_t *)value;
    req.value.len = value_len;
    req.session = session;
    req.sequential = (flags & LATCH_SEQUENTIAL) != 0;
    req.make_parents = (flags & LATCH_PARENTS) != 0;
    if (fence != NULL) {
        fence_to(&f, fence);
        req.fence = &f;
    }
    return call_pb(c, "Create", &req.base, &latch__v1__create_response__descriptor,
                   req.sequential ? RETRY_UNSENT : RETRY_ALWAYS, 0, cb, data);
}

int latch_get(struct latch_client *c, const char *path, unsigned flags, latch_cb cb, void *data)
{
    if (bad_name(path)) {
        return LATCH_EINVAL;
    }
    Latch__V1__GetRequest req = LATCH__V1__GET_REQUEST__INIT;
    req.path = (char *)path;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Get", &req.base, &latch__v1__get_response__descriptor, RETRY_ALWAYS, 0, cb,
                   data);
}

int latch_stat(struct latch_client *c, const char *path, unsigned flags, latch_cb cb, void *data)
{
    if (bad_name(path)) {
        return LATCH_EINVAL;
    }
    Latch__V1__StatRequest req = LATCH__V1__STAT_REQUEST__INIT;
    req.path = (char *)path;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Stat", &req.base, &latch__v1__stat_response__descriptor, RETRY_ALWAYS, 0, cb,
                   data);
}

int latch_set(struct latch_client *c,
              const char *path,
              const void *value,
              size_t value_len,
              int64_t expected_version,
              const struct latch_fence *fence,
              latch_cb cb,
              void *data)
{
    if (bad_name(path) || (value == NULL && value_len > 0)) {
        return LATCH_EINVAL;
    }
    Latch__V1__SetRequest req = LATCH__V1__SET_REQUEST__INIT;
    Latch__V1__Fence f;
    req.path = (char *)path;
    req.value.data = (uint8_t *)value;
    req.value.len = value_len;
    req.expected_version = expected_version;
    if (fence != NULL) {
        fence_to(&f, fence);
        req.fence = &f;
    }
    return call_pb(c, "Set", &req.base, &latch__v1__set_response__descriptor, RETRY_UNSENT, 0, cb,
                   data);
}

int latch_delete(struct latch_client *c,
                 const char *path,
                 int64_t expected_version,
                 unsigned flags,
                 const struct latch_fence *fence,
                 latch_cb cb,
                 void *data)
{
    if (bad_name(path)) {
        return LATCH_EINVAL;
    }
    Latch__V1__DeleteRequest req = LATCH__V1__DELETE_REQUEST__INIT;
    Latch__V1__Fence f;
    req.path = (char *)path;
    req.expected_version = expected_version;
    req.recursive = (flags & LATCH_RECURSIVE) != 0;
    if (fence != NULL) {
        fence_to(&f, fence);
        req.fence = &f;
    }
    return call_pb(c, "Delete", &req.base, &latch__v1__delete_response__descriptor, RETRY_UNSENT, 0,
                   cb, data);
}

int latch_children(struct latch_client *c,
                   const char *path,
                   const char *after,
                   uint32_t limit,
                   unsigned flags,
                   latch_cb cb,
                   void *data)
{
    if (bad_name(path)) {
        return LATCH_EINVAL;
    }
    Latch__V1__ChildrenRequest req = LATCH__V1__CHILDREN_REQUEST__INIT;
    req.path = (char *)path;
    req.after = (char *)(after != NULL ? after : "");
    req.limit = limit;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Children", &req.base, &latch__v1__children_response__descriptor,
                   RETRY_ALWAYS, 0, cb, data);
}

int latch_multi(struct latch_client *c,
                const struct latch_op *ops,
                size_t n,
                const struct latch_fence *fence,
                latch_cb cb,
                void *data)
{
    if (n == 0 || ops == NULL || n > 10000) {
        return LATCH_EINVAL;
    }
    struct pbop {
        Latch__V1__Op op;
        union {
            Latch__V1__CreateRequest create;
            Latch__V1__SetRequest set;
            Latch__V1__DeleteRequest del;
            Latch__V1__Check check;
        } u;
    };
    struct pbop *a = calloc(n, sizeof(*a));
    Latch__V1__Op **ptrs = calloc(n, sizeof(*ptrs));
    if (a == NULL || ptrs == NULL) {
        free(a);
        free(ptrs);
        return LATCH_ENOMEM;
    }
    int rc = LATCH_OK;
    for (size_t i = 0; i < n && rc == LATCH_OK; i++) {
        const struct latch_op *op = &ops[i];
        Latch__V1__Op *p = &a[i].op;
        latch__v1__op__init(p);
        ptrs[i] = p;
        if (bad_name(op->path) || (op->value == NULL && op->value_len > 0)) {
            rc = LATCH_EINVAL;
            break;
        }
        switch (op->kind) {
        case LATCH_OP_CREATE:
            latch__v1__create_request__init(&a[i].u.create);
            a[i].u.create.path = (char *)op->path;
            a[i].u.create.value.data = (uint8_t *)op->value;
            a[i].u.create.value.len = op->value_len;
            a[i].u.create.session = op->session;
            a[i].u.create.sequential = (op->flags & LATCH_SEQUENTIAL) != 0;
            a[i].u.create.make_parents = (op->flags & LATCH_PARENTS) != 0;
            p->op_case = LATCH__V1__OP__OP_CREATE;
            p->create = &a[i].u.create;
            break;
        case LATCH_OP_SET:
            latch__v1__set_request__init(&a[i].u.set);
            a[i].u.set.path = (char *)op->path;
            a[i].u.set.value.data = (uint8_t *)op->value;
            a[i].u.set.value.len = op->value_len;
            a[i].u.set.expected_version = op->expected_version;
            p->op_case = LATCH__V1__OP__OP_SET;
            p->set = &a[i].u.set;
            break;
        case LATCH_OP_DELETE:
            latch__v1__delete_request__init(&a[i].u.del);
            a[i].u.del.path = (char *)op->path;
            a[i].u.del.expected_version = op->expected_version;
            a[i].u.del.recursive = (op->flags & LATCH_RECURSIVE) != 0;
            p->op_case = LATCH__V1__OP__OP_DELETE;
            p->delete_ = &a[i].u.del;
            break;
        case LATCH_OP_CHECK:
            latch__v1__check__init(&a[i].u.check);
            a[i].u.check.path = (char *)op->path;
            a[i].u.check.expected_version = op->expected_version;
            a[i].u.check.absent = op->absent;
            p->op_case = LATCH__V1__OP__OP_CHECK;
            p->check = &a[i].u.check;
            break;
        default:
            rc = LATCH_EINVAL;
            break;
        }
    }
    if (rc == LATCH_OK) {
        Latch__V1__MultiRequest req = LATCH__V1__MULTI_REQUEST__INIT;
        Latch__V1__Fence f;
        req.ops = ptrs;
        req.n_ops = n;
        if (fence != NULL) {
            fence_to(&f, fence);
            req.fence = &f;
        }
        rc = call_pb(c, "Multi", &req.base, &latch__v1__multi_response__descriptor, RETRY_UNSENT, 0,
                     cb, data);
    }
    free(a);
    free(ptrs);
    return rc;
}

/* ---- locks and elections ---------------------------------------------------------------- */

static uint64_t wait_timeout(uint64_t timeout_ms)
{
    return timeout_ms == 0 ? UINT64_MAX : timeout_ms;
}

int latch_lock_acquire(struct latch_client *c,
                       const char *lock,
                       int64_t session,
                       unsigned flags,
                       int64_t lock_delay_ms,
                       uint64_t timeout_ms,
                       latch_cb cb,
                       void *data)
{
    if (bad_name(lock) || session == 0 || lock_delay_ms < 0) {
        return LATCH_EINVAL;
    }
    Latch__V1__AcquireRequest req = LATCH__V1__ACQUIRE_REQUEST__INIT;
    req.lock = (char *)lock;
    req.session = session;
    req.shared = (flags & LATCH_SHARED) != 0;
    req.try_once = (flags & LATCH_TRY) != 0;
    req.lock_delay_ms = lock_delay_ms;
    return call_pb(c, "Acquire", &req.base, &latch__v1__acquire_response__descriptor, RETRY_ALWAYS,
                   req.try_once ? 0 : wait_timeout(timeout_ms), cb, data);
}

int latch_lock_release(
    struct latch_client *c, const char *lock, int64_t token, latch_cb cb, void *data)
{
    if (bad_name(lock)) {
        return LATCH_EINVAL;
    }
    Latch__V1__ReleaseRequest req = LATCH__V1__RELEASE_REQUEST__INIT;
    req.lock = (char *)lock;
    req.token = token;
    return call_pb(c, "Release", &req.base, &latch__v1__release_response__descriptor, RETRY_RELEASE,
                   0, cb, data);
}

int latch_lock_holder(
    struct latch_client *c, const char *lock, unsigned flags, latch_cb cb, void *data)
{
    if (bad_name(lock)) {
        return LATCH_EINVAL;
    }
    Latch__V1__HolderRequest req = LATCH__V1__HOLDER_REQUEST__INIT;
    req.lock = (char *)lock;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Holder", &req.base, &latch__v1__holder_response__descriptor, RETRY_ALWAYS, 0,
                   cb, data);
}

int latch_lock_waiters(
    struct latch_client *c, const char *lock, unsigned flags, latch_cb cb, void *data)
{
    if (bad_name(lock)) {
        return LATCH_EINVAL;
    }
    Latch__V1__WaitersRequest req = LATCH__V1__WAITERS_REQUEST__INIT;
    req.lock = (char *)lock;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Waiters", &req.base, &latch__v1__waiters_response__descriptor, RETRY_ALWAYS,
                   0, cb, data);
}

int latch_check_fence(struct latch_client *c,
                      const struct latch_fence *fence,
                      latch_cb cb,
                      void *data)
{
    if (fence == NULL || bad_name(fence->lock)) {
        return LATCH_EINVAL;
    }
    Latch__V1__CheckFenceRequest req = LATCH__V1__CHECK_FENCE_REQUEST__INIT;
    Latch__V1__Fence f;
    fence_to(&f, fence);
    req.fence = &f;
    return call_pb(c, "CheckFence", &req.base, &latch__v1__check_fence_response__descriptor,
                   RETRY_ALWAYS, 0, cb, data);
}

int latch_campaign(struct latch_client *c,
                   const char *election,
                   int64_t session,
                   const void *value,
                   size_t value_len,
                   uint64_t timeout_ms,
                   latch_cb cb,
                   void *data)
{
    if (bad_name(election) || session == 0 || (value == NULL && value_len > 0)) {
        return LATCH_EINVAL;
    }
    Latch__V1__CampaignRequest req = LATCH__V1__CAMPAIGN_REQUEST__INIT;
    req.election = (char *)election;
    req.session = session;
    req.value.data = (uint8_t *)value;
    req.value.len = value_len;
    return call_pb(c, "Campaign", &req.base, &latch__v1__campaign_response__descriptor,
                   RETRY_ALWAYS, wait_timeout(timeout_ms), cb, data);
}

int latch_proclaim(struct latch_client *c,
                   const char *election,
                   int64_t token,
                   const void *value,
                   size_t value_len,
                   latch_cb cb,
                   void *data)
{
    if (bad_name(election) || (value == NULL && value_len > 0)) {
        return LATCH_EINVAL;
    }
    Latch__V1__ProclaimRequest req = LATCH__V1__PROCLAIM_REQUEST__INIT;
    req.election = (char *)election;
    req.token = token;
    req.value.data = (uint8_t *)value;
    req.value.len = value_len;
    return call_pb(c, "Proclaim", &req.base, &latch__v1__proclaim_response__descriptor,
                   RETRY_UNSENT, 0, cb, data);
}

int latch_resign(
    struct latch_client *c, const char *election, int64_t token, latch_cb cb, void *data)
{
    if (bad_name(election)) {
        return LATCH_EINVAL;
    }
    Latch__V1__ResignRequest req = LATCH__V1__RESIGN_REQUEST__INIT;
    req.election = (char *)election;
    req.token = token;
    return call_pb(c, "Resign", &req.base, &latch__v1__resign_response__descriptor, RETRY_RELEASE,
                   0, cb, data);
}

int latch_leader(
    struct latch_client *c, const char *election, unsigned flags, latch_cb cb, void *data)
{
    if (bad_name(election)) {
        return LATCH_EINVAL;
    }
    Latch__V1__LeaderRequest req = LATCH__V1__LEADER_REQUEST__INIT;
    req.election = (char *)election;
    req.serializable = (flags & LATCH_SERIALIZABLE) != 0;
    return call_pb(c, "Leader", &req.base, &latch__v1__leader_response__descriptor, RETRY_ALWAYS, 0,
                   cb, data);
}

int latch_raw_unary(struct latch_client *c,
                    const char *method,
                    const uint8_t *req,
                    size_t len,
                    bool idempotent,
                    uint64_t timeout_ms,
                    latch_cb cb,
                    void *data)
{
    if (bad_name(method) || (req == NULL && len > 0)) {
        return LATCH_EINVAL;
    }
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        return LATCH_ENOMEM;
    }
    if (len > 0) {
        memcpy(copy, req, len);
    }
    return op_start(c, method, copy, len, NULL, idempotent ? RETRY_ALWAYS : RETRY_UNSENT,
                    timeout_ms, cb, data);
}

/* ---- sessions --------------------------------------------------------------------------- */

enum session_state { S_OPENING, S_LIVE, S_LOST, S_CLOSING };

struct latch_session {
    struct latch_session *prev, *next;
    struct latch_client *c;
    int64_t id;
    int64_t ttl;
    enum session_state state;
    latch_lost_cb lost;
    void *lost_data;
    latch_cb open_cb;
    void *open_data;
    latch_cb close_cb;
    void *close_data;
    bool close_requested;
    uv_timer_t timer;
    struct api_ccall *ka;
    size_t ka_ep;
    uint64_t sent[KA_RING]; /* send times of the renewals not answered yet */
    unsigned sent_head, sent_count;
    uint64_t renewed_at; /* send time of the last answered renewal (the lease runs from it) */
    unsigned refs;       /* the owner, the timer handle, the keep-alive call, an op */
};

int64_t latch_session_id(const struct latch_session *s)
{
    return s->id;
}

int64_t latch_session_ttl(const struct latch_session *s)
{
    return s->ttl;
}

bool latch_session_alive(const struct latch_session *s)
{
    return s->state == S_LIVE;
}

static void session_unref(struct latch_session *s)
{
    LATCH_ASSERT(s->refs > 0);
    if (--s->refs > 0) {
        return;
    }
    struct latch_client *c = s->c;
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        c->sessions = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    free(s);
    LATCH_ASSERT(c->refs > 0);
    c->refs--;
    maybe_finish(c);
}

static void session_timer_closed(uv_handle_t *h)
{
    session_unref(h->data);
}

/* Stops the timer and the keep-alive stream (for good). */
static void session_stop(struct latch_session *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->timer)) {
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, session_timer_closed);
    }
    if (s->ka != NULL) {
        api_ccall_cancel(s->ka);
    }
}

static void session_lose(struct latch_session *s, const char *reason)
{
    if (s->state != S_LIVE) {
        return;
    }
    s->state = S_LOST;
    session_stop(s);
    if (s->lost != NULL) {
        s->lost(s, LATCH_ESESSIONLOST, reason, s->lost_data);
    }
}

static void session_tick(uv_timer_t *t);

static void ka_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct latch_session *s = data;
    Latch__V1__SessionKeepAliveResponse *r =
        latch__v1__session_keep_alive_response__unpack(NULL, len, msg);
    if (r == NULL) {
        return;
    }
    int64_t ttl = r->ttl_seconds;
    latch__v1__session_keep_alive_response__free_unpacked(r, NULL);
    if (s->sent_count > 0) {
        uint64_t at = s->sent[s->sent_head];
        s->sent_head = (s->sent_head + 1) % KA_RING;
        s->sent_count--;
        if (ttl > 0 && at > s->renewed_at) {
            s->renewed_at = at;
        }
    }
    if (ttl <= 0) {
        session_lose(s, "the server says the session expired");
    } else {
        s->ttl = ttl;
    }
}

static void ka_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    (void)status;
    (void)message;
    struct latch_session *s = data;
    s->ka = NULL;
    s->sent_count = 0;
    if (s->state == S_LIVE && !s->c->closing) {
        endpoint_failed(s->c, s->ka_ep);
        /* Renew again soon on the next endpoint. */
        uv_timer_start(&s->timer, session_tick, 200,
                       s->ttl > 0 ? (uint64_t)s->ttl * 1000 / 3 : 1000);
    }
    session_unref(s);
}

static void session_tick(uv_timer_t *t)
{
    struct latch_session *s = t->data;
    struct latch_client *c = s->c;
    if (s->state != S_LIVE) {
        return;
    }
    uint64_t now = uv_now(c->loop);
    if (now >= s->renewed_at + (uint64_t)s->ttl * 1000) {
        session_lose(s, "no renewal succeeded before the session's TTL ran out");
        return;
    }
    if (s->ka == NULL) {
        static const struct api_ccall_callbacks cbs = {
            .on_message = ka_message,
            .on_done = ka_done,
        };
        s->ka_ep = c->cur;
        if (api_ccall_start(c->ch[s->ka_ep], SVC "SessionKeepAlive", NULL, &cbs, s, &s->ka) !=
            LATCH_OK) {
            s->ka = NULL;
            endpoint_failed(c, s->ka_ep);
            return;
        }
        s->refs++;
    }
    if (s->sent_count == KA_RING) {
        return; /* the stream is stuck; the TTL check above decides */
    }
    Latch__V1__SessionKeepAliveRequest req = LATCH__V1__SESSION_KEEP_ALIVE_REQUEST__INIT;
    req.session = s->id;
    uint8_t buf[32];
    size_t len = latch__v1__session_keep_alive_request__pack(&req, buf);
    if (api_ccall_send(s->ka, buf, len, NULL) == LATCH_OK) {
        s->sent[(s->sent_head + s->sent_count) % KA_RING] = now;
        s->sent_count++;
    }
}

static void session_do_close(struct latch_session *s);

static void session_opened(struct latch_result *r, void *data)
{
    struct latch_session *s = data;
    struct latch_client *c = s->c;
    if (r != NULL && r->err == LATCH_OK && !c->closing) {
        s->id = r->session;
        s->ttl = r->ttl > 0 ? r->ttl : 1;
        s->state = S_LIVE;
        /* The lease's TTL runs from when the server granted it: no earlier than the answered
         * attempt was sent. */
        s->renewed_at = ((struct latch_result_priv *)r)->sent_at;
        uint64_t every = (uint64_t)s->ttl * 1000 / 3;
        uv_timer_start(&s->timer, session_tick, every, every);
    } else {
        s->state = S_LOST;
        session_stop(s);
    }
    if (s->open_cb != NULL) {
        s->open_cb(r, s->open_data);
    } else {
        latch_result_free(r);
    }
    if (s->close_requested) {
        session_do_close(s);
    }
    session_unref(s); /* the open op's */
}

int latch_session_open(struct latch_client *c,
                       int64_t ttl_seconds,
                       latch_lost_cb lost,
                       void *lost_data,
                       latch_cb cb,
                       void *data,
                       struct latch_session **out)
{
    *out = NULL;
    if (ttl_seconds <= 0) {
        return LATCH_EINVAL;
    }
    if (c->closing) {
        return LATCH_ESTATE;
    }
    struct latch_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    s->c = c;
    s->lost = lost;
    s->lost_data = lost_data;
    s->open_cb = cb;
    s->open_data = data;
    s->state = S_OPENING;
    Latch__V1__SessionOpenRequest req = LATCH__V1__SESSION_OPEN_REQUEST__INIT;
    req.ttl_seconds = ttl_seconds;
    int rc = call_pb(c, "SessionOpen", &req.base, &latch__v1__session_open_response__descriptor,
                     RETRY_UNSENT, 0, session_opened, s);
    if (rc != LATCH_OK) {
        free(s);
        return rc;
    }
    uv_timer_init(c->loop, &s->timer);
    s->timer.data = s;
    s->refs = 3; /* owner, timer, open op */
    s->next = c->sessions;
    if (c->sessions != NULL) {
        c->sessions->prev = s;
    }
    c->sessions = s;
    c->refs++;
    *out = s;
    return LATCH_OK;
}

static void session_closed(struct latch_result *r, void *data)
{
    struct latch_session *s = data;
    if (r != NULL && (r->err == LATCH_ENOTFOUND || r->err == LATCH_ESESSIONLOST)) {
        r->err = LATCH_OK; /* already gone: closed */
    }
    if (s->close_cb != NULL) {
        s->close_cb(r, s->close_data);
    } else {
        latch_result_free(r);
    }
    session_unref(s); /* the owner's */
}

static void session_do_close(struct latch_session *s)
{
    bool had = s->id != 0;
    s->state = S_CLOSING;
    session_stop(s);
    int rc = LATCH_ESTATE;
    if (had && !s->c->closing) {
        Latch__V1__SessionCloseRequest req = LATCH__V1__SESSION_CLOSE_REQUEST__INIT;
        req.session = s->id;
        rc =
            call_pb(s->c, "SessionClose", &req.base, &latch__v1__session_close_response__descriptor,
                    RETRY_ALWAYS, 0, session_closed, s);
    }
    if (rc != LATCH_OK) {
        /* Nothing to close on the server (never opened) or no way to: report from the loop
         * through an op that fails at once. */
        struct latch_result *r =
            latch_result_new(had ? rc : LATCH_OK, -1, had ? latch_strerror(rc) : "");
        session_closed(r, s);
    }
}

int latch_session_close(struct latch_session *s, latch_cb cb, void *data)
{
    if (s->close_requested || s->state == S_CLOSING) {
        return LATCH_ESTATE;
    }
    s->close_cb = cb;
    s->close_data = data;
    s->close_requested = true;
    if (s->state == S_OPENING) {
        return LATCH_OK; /* closed once the open answers */
    }
    session_do_close(s);
    return LATCH_OK;
}

/* ---- watches, observe and raw streams ------------------------------------------------------ */

enum watch_kind { W_WATCH, W_OBSERVE, W_RAW };

struct latch_watch {
    struct latch_watch *prev, *next;
    struct latch_client *c;
    enum watch_kind kind;
    char *path;
    bool recursive;
    int64_t start;    /* the user's start revision */
    int64_t last_rev; /* last delivered revision (or the revision the watch starts after) */
    bool confirmed;   /* the current stream's first response came */
    struct api_ccall *call;
    size_t ep;
    unsigned failures;
    bool ending;
    int end_err;
    char *end_msg;
    uv_timer_t timer;
    struct latch_watch_cbs cbs;
    void *data;
    bool have_leader;
    int64_t leader_token;
    uint8_t *leader_value;
    size_t leader_value_len;
    uint8_t *raw_req;
    size_t raw_len;
    void (*raw_message)(const uint8_t *msg, size_t len, void *data);
    void (*raw_end)(int err, const char *message, void *data);
};

static void watch_closed(uv_handle_t *h)
{
    struct latch_watch *w = h->data;
    struct latch_client *c = w->c;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        c->watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    const char *msg = w->end_msg != NULL ? w->end_msg : latch_strerror(w->end_err);
    if (w->kind == W_RAW) {
        w->raw_end(w->end_err, msg, w->data);
    } else {
        w->cbs.on_end(w, w->end_err, msg, w->data);
    }
    free(w->end_msg);
    free(w->path);
    free(w->leader_value);
    free(w->raw_req);
    free(w);
    LATCH_ASSERT(c->refs > 0);
    c->refs--;
    maybe_finish(c);
}

/* Ends w with err once its call is done (on_end runs from the timer's close callback). */
static void watch_end(struct latch_watch *w, int err, const char *message)
{
    if (!w->ending) {
        w->ending = true;
        w->end_err = err;
        w->end_msg = strdup(message != NULL ? message : "");
    }
    if (w->call != NULL) {
        api_ccall_cancel(w->call);
        return; /* watch_done comes back here */
    }
    if (!uv_is_closing((uv_handle_t *)&w->timer)) {
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, watch_closed);
    }
}

static void watch_event_pb(struct latch_watch *w, const Latch__V1__WatchEvent *e)
{
    struct latch_event ev = {
        .kind = (enum latch_event_kind)e->kind,
        .path = e->path,
        .revision = e->revision,
        .value = bytes_or_empty(e->value.data),
        .value_len = e->value.len,
    };
    stat_from(&ev.stat, e->stat);
    w->cbs.on_event(w, &ev, w->data);
}

static void watch_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct latch_watch *w = data;
    if (w->ending) {
        return;
    }
    w->failures = 0;
    if (w->kind == W_RAW) {
        w->raw_message(msg, len, w->data);
        return;
    }
    if (w->kind == W_OBSERVE) {
        Latch__V1__LeaderResponse *r = latch__v1__leader_response__unpack(NULL, len, msg);
        if (r == NULL) {
            return;
        }
        bool same =
            w->have_leader && r->token == w->leader_token && r->value.len == w->leader_value_len &&
            (r->value.len == 0 || memcmp(r->value.data, w->leader_value, r->value.len) == 0);
        if (!same) {
            uint8_t *copy = malloc(r->value.len > 0 ? r->value.len : 1);
            if (copy != NULL) {
                if (r->value.len > 0) {
                    memcpy(copy, r->value.data, r->value.len);
                }
                free(w->leader_value);
                w->leader_value = copy;
                w->leader_value_len = r->value.len;
                w->leader_token = r->token;
                w->have_leader = true;
            }
            struct latch_result_priv rp = {0};
            rp.pub.message = "";
            header_from(&rp.pub, &r->base);
            rp.pub.token = r->token;
            rp.pub.value = bytes_or_empty(r->value.data);
            rp.pub.value_len = r->value.len;
            rp.pub.session = r->session;
            w->cbs.on_leader(w, &rp.pub, w->data);
        }
        latch__v1__leader_response__free_unpacked(r, NULL);
        return;
    }
    Latch__V1__WatchResponse *r = latch__v1__watch_response__unpack(NULL, len, msg);
    if (r == NULL) {
        return;
    }
    int64_t hrev = r->header != NULL ? r->header->revision : 0;
    if (r->n_events == 0) {
        if (!w->confirmed && w->last_rev == 0 && w->start == 0) {
            w->last_rev = hrev; /* the watch starts after this revision */
        } else if (w->confirmed && hrev > w->last_rev) {
            w->last_rev = hrev; /* progress: everything up to hrev was sent */
        }
    }
    w->confirmed = true;
    int64_t before = w->last_rev;
    for (size_t i = 0; i < r->n_events && !w->ending; i++) {
        const Latch__V1__WatchEvent *e = r->events[i];
        if (e->revision <= before) {
            continue; /* already delivered before a restart */
        }
        watch_event_pb(w, e);
        if (e->revision > w->last_rev) {
            w->last_rev = e->revision;
        }
    }
    latch__v1__watch_response__free_unpacked(r, NULL);
}

static int watch_start_call(struct latch_watch *w);

static void watch_timer(uv_timer_t *t)
{
    struct latch_watch *w = t->data;
    if (w->ending || w->c->closing) {
        watch_end(w, LATCH_ECANCELED, "watch canceled");
        return;
    }
    int rc = watch_start_call(w);
    if (rc != LATCH_OK) {
        watch_end(w, rc, latch_strerror(rc));
    }
}

static bool watch_terminal(int status)
{
    switch (status) {
    case API_GRPC_STATUS_OUT_OF_RANGE:
    case API_GRPC_STATUS_INVALID_ARGUMENT:
    case API_GRPC_STATUS_NOT_FOUND:
    case API_GRPC_STATUS_UNIMPLEMENTED:
    case API_GRPC_STATUS_PERMISSION_DENIED:
    case API_GRPC_STATUS_UNAUTHENTICATED:
    case API_GRPC_STATUS_FAILED_PRECONDITION:
    case API_GRPC_STATUS_RESOURCE_EXHAUSTED:
        return true;
    default:
        return false;
    }
}

static void watch_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct latch_watch *w = data;
    w->call = NULL;
    if (w->ending || w->c->closing) {
        watch_end(w, LATCH_ECANCELED, "watch canceled");
        return;
    }
    if (w->kind == W_RAW) {
        watch_end(w, latch_status_to_err(status, message), message);
        return;
    }
    if (watch_terminal(status)) {
        watch_end(w, latch_status_to_err(status, message), message);
        return;
    }
    /* Broken (lost connection, no leader, the server went away): resume elsewhere. */
    endpoint_failed(w->c, w->ep);
    uv_timer_start(&w->timer, watch_timer, retry_delay(w->c, ++w->failures), 0);
}

static int watch_start_call(struct latch_watch *w)
{
    struct latch_client *c = w->c;
    static const struct api_ccall_callbacks cbs = {
        .on_message = watch_message,
        .on_done = watch_done,
    };
    uint8_t *buf = NULL;
    size_t len = 0;
    const char *method;
    uint8_t small[1024];
    if (w->kind == W_WATCH) {
        Latch__V1__WatchRequest req = LATCH__V1__WATCH_REQUEST__INIT;
        req.path = w->path;
        req.recursive = w->recursive;
        req.start_revision = w->last_rev > 0 ? w->last_rev + 1 : w->start;
        method = SVC "Watch";
        len = latch__v1__watch_request__get_packed_size(&req);
        buf = len <= sizeof(small) ? small : NULL;
        if (buf == NULL) {
            return LATCH_EINVAL;
        }
        latch__v1__watch_request__pack(&req, buf);
    } else if (w->kind == W_OBSERVE) {
        Latch__V1__ObserveRequest req = LATCH__V1__OBSERVE_REQUEST__INIT;
        req.election = w->path;
        method = SVC "Observe";
        len = latch__v1__observe_request__get_packed_size(&req);
        buf = len <= sizeof(small) ? small : NULL;
        if (buf == NULL) {
            return LATCH_EINVAL;
        }
        latch__v1__observe_request__pack(&req, buf);
    } else {
        method = w->path;
        buf = w->raw_req;
        len = w->raw_len;
    }
    w->confirmed = false;
    w->ep = c->cur;
    int rc = api_ccall_start(c->ch[w->ep], method, NULL, &cbs, w, &w->call);
    if (rc != LATCH_OK) {
        w->call = NULL;
        return rc;
    }
    api_ccall_send(w->call, buf, len, NULL);
    api_ccall_close_send(w->call);
    return LATCH_OK;
}

static int watch_new(struct latch_client *c,
                     enum watch_kind kind,
                     const char *path,
                     const struct latch_watch_cbs *cbs,
                     void *data,
                     struct latch_watch **out)
{
    *out = NULL;
    if (c->closing) {
        return LATCH_ESTATE;
    }
    if (bad_name(path) || strlen(path) > 600) {
        return LATCH_EINVAL;
    }
    struct latch_watch *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        return LATCH_ENOMEM;
    }
    w->c = c;
    w->kind = kind;
    if (cbs != NULL) {
        w->cbs = *cbs;
    }
    w->data = data;
    uv_timer_init(c->loop, &w->timer);
    w->timer.data = w;
    w->next = c->watches;
    if (c->watches != NULL) {
        c->watches->prev = w;
    }
    c->watches = w;
    c->refs++;
    *out = w;
    /* Starts from a loop callback. */
    uv_timer_start(&w->timer, watch_timer, 0, 0);
    return LATCH_OK;
}

int latch_watch(struct latch_client *c,
                const char *path,
                unsigned flags,
                int64_t start_revision,
                const struct latch_watch_cbs *cbs,
                void *data,
                struct latch_watch **out)
{
    if (cbs == NULL || cbs->on_event == NULL || cbs->on_end == NULL || start_revision < 0) {
        *out = NULL;
        return LATCH_EINVAL;
    }
    int rc = watch_new(c, W_WATCH, path, cbs, data, out);
    if (rc == LATCH_OK) {
        (*out)->recursive = (flags & LATCH_RECURSIVE) != 0;
        (*out)->start = start_revision;
        (*out)->last_rev = start_revision > 0 ? start_revision - 1 : 0;
    }
    return rc;
}

int latch_observe(struct latch_client *c,
                  const char *election,
                  const struct latch_watch_cbs *cbs,
                  void *data,
                  struct latch_watch **out)
{
    if (cbs == NULL || cbs->on_leader == NULL || cbs->on_end == NULL) {
        *out = NULL;
        return LATCH_EINVAL;
    }
    return watch_new(c, W_OBSERVE, election, cbs, data, out);
}

void latch_watch_cancel(struct latch_watch *w)
{
    watch_end(w, LATCH_ECANCELED, "watch canceled");
}

int latch_raw_stream(struct latch_client *c,
                     const char *method,
                     const uint8_t *req,
                     size_t len,
                     void (*on_message)(const uint8_t *msg, size_t len, void *data),
                     void (*on_end)(int err, const char *message, void *data),
                     void *data)
{
    if (on_message == NULL || on_end == NULL || (req == NULL && len > 0)) {
        return LATCH_EINVAL;
    }
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        return LATCH_ENOMEM;
    }
    if (len > 0) {
        memcpy(copy, req, len);
    }
    struct latch_watch *w;
    int rc = watch_new(c, W_RAW, method, NULL, data, &w);
    if (rc != LATCH_OK) {
        free(copy);
        return rc;
    }
    w->raw_req = copy;
    w->raw_len = len;
    w->raw_message = on_message;
    w->raw_end = on_end;
    return LATCH_OK;
}

/* ---- closing ------------------------------------------------------------------------------ */

void latch_client_close(struct latch_client *c, void (*done)(void *data), void *data)
{
    LATCH_ASSERT(!c->closing);
    c->closing = true;
    c->done = done;
    c->done_data = data;
    for (struct op *o = c->ops; o != NULL; o = o->next) {
        if (!o->in_flight) {
            uv_timer_start(&o->timer, op_timer, 0, 0); /* finishes with ECANCELED */
        }
        /* in flight: the channel's close fails it with CANCELLED */
    }
    for (struct latch_session *s = c->sessions; s != NULL;) {
        struct latch_session *next = s->next;
        if (s->state != S_CLOSING && !s->close_requested) {
            s->state = S_CLOSING;
            session_stop(s);
            session_unref(s); /* the owner's: the client owns it now */
        } else {
            session_stop(s);
        }
        s = next;
    }
    for (struct latch_watch *w = c->watches; w != NULL;) {
        struct latch_watch *next = w->next;
        watch_end(w, LATCH_ECANCELED, "client closed");
        w = next;
    }
    for (size_t i = 0; i < c->n; i++) {
        api_channel_close(c->ch[i], channel_closed, c);
    }
}
