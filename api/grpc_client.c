/*
 * grpc_client.c — the gRPC client on libuv + nghttp2 (see grpc_client.h).
 *
 * Ownership and lifetimes:
 *  - struct api_channel owns its endpoints, its three timers (tick, connect, backoff), the
 *    connections in ch->conns, outstanding name lookups and every call not yet freed. It is
 *    freed from the last close callback once it is closing, ch->calls_count is 0 and
 *    ch->handles_open is 0; close callbacks are the only place that frees it, so no code
 *    running inside a channel callback ever sees it go.
 *  - struct api_cconn embeds its transport (first), which owns the nghttp2 session; it is
 *    freed from the transport's closed callback. When the transport starts closing, every call on
 *    it is detached (nghttp2_session_del runs no callbacks), failing it UNAVAILABLE first.
 *    At most one connection is ch->connecting (an attempt) and at most one ch->active (takes
 *    new streams); others are draining after a GOAWAY.
 *  - struct api_ccall is reference counted: one reference is the caller's, dropped after
 *    on_done returned; one belongs to the HTTP/2 stream from nghttp2_submit_request until
 *    on_stream_close (or on_frame_not_send for a request that never went out, or the
 *    connection closing), because the data provider's source.ptr and the stream user data
 *    point at it; one to the deadline timer while it is open (dropped in its close callback).
 *  - A call is in exactly one of: ch->pending (waiting for a connection), its connection's
 *    calls list (it has a stream id), or neither (done and detached).
 *  - on_done and on_writable run from the channel's tick (a 0 ms timer), which also batches
 *    the flushes that sends, starts and cancels ask for; on_message runs from the read path.
 *  - nghttp2 must not be re-entered from its own callbacks: everything done from them only
 *    submits frames; the transport's read path flushes afterwards.
 */
#define _POSIX_C_SOURCE 200809L

#include "grpc_client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "grpc_tls.h"
#include "grpc_transport.h"
#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"

#define API_CLIENT_INITIAL_WINDOW_SIZE (1 << 20)
#define API_CLIENT_CONN_WINDOW_SIZE    (16 << 20)
#define API_CLIENT_ADDRS_MAX           8
#define API_CLIENT_ERR_MAX             1024
#define API_CLIENT_USER_AGENT          "latch-grpc-c/1"
/* The blocking stream pauses receiving above this many buffered bytes. */
#define API_BLOCKING_STREAM_BUFFER     ((size_t)1 << 20)

struct api_endpoint {
    char host[API_CHANNEL_ENDPOINT_MAX + 1];      /* without brackets */
    char authority[API_CHANNEL_ENDPOINT_MAX + 1]; /* "host:port" as given */
    int port;
    bool tls;
    bool literal; /* an IP literal: no name lookup */
};

struct api_cconn {
    struct api_transport t;        /* first: the transport's callbacks get back to the conn */
    struct api_cconn *prev, *next; /* in ch->conns */
    struct api_channel *ch;
    const struct api_endpoint *ep;
    struct api_ccall *calls; /* calls with a stream on this connection */
    uv_connect_t connect_req;
    bool ready;     /* the server's SETTINGS arrived */
    bool goaway;    /* received a GOAWAY: no new streams */
    bool abandoned; /* an attempt given up: its close is not reported again */
    bool flush_wanted;
    char err[API_CLIENT_ERR_MAX]; /* why it failed, when we know better than "closed" */
};

struct api_resolve {
    uv_getaddrinfo_t req;
    struct api_channel *ch;
    uint64_t gen;
};

struct api_channel {
    uv_loop_t *loop;
    struct api_endpoint eps[API_CHANNEL_ENDPOINTS_MAX];
    size_t neps;
    struct api_tls_ctx *tls; /* borrowed */
    char *authority;         /* owned; NULL: the endpoint's */
    char *user_agent;        /* owned */
    uint64_t connect_timeout_ms, backoff_initial_ms, backoff_max_ms;
    unsigned jitter_pct;
    uint64_t rng;
    size_t max_recv, max_send_queue, max_conn_output;
    void (*state_cb)(struct api_channel *ch, enum api_channel_state state, void *data);
    void *data;
    enum api_channel_state state;
    enum api_channel_state reported; /* last state given to state_cb */
    size_t ep_index;                 /* endpoint of the current (or last good) attempt */
    size_t tried;                    /* endpoints failed in this round */
    struct sockaddr_storage addrs[API_CLIENT_ADDRS_MAX];
    size_t naddrs, addr_index;
    uint64_t gen; /* attempt generation: stale lookups are dropped */
    bool resolving;
    struct api_resolve *resolve; /* the lookup of the current attempt, while it runs */
    uint64_t backoff_ms;
    struct api_cconn *connecting;
    struct api_cconn *active;
    struct api_cconn *conns;
    struct api_ccall *pending, *pending_tail;
    struct api_ccall *ready, *ready_tail; /* calls with a callback due */
    uv_timer_t tick, connect_timer, backoff_timer;
    bool timers_closed;
    size_t handles_open;
    size_t calls_count;
    bool closing;
    api_channel_close_cb done_cb;
    void *done_data;
    char last_error[API_CLIENT_ERR_MAX];
    struct api_transport_buf io; /* read buffers shared by the connections */
    bool verify_host;            /* api_channel_config.verify_host */
};

struct api_ccall {
    struct api_channel *ch;
    struct api_cconn *conn;        /* while it has a stream */
    struct api_ccall *prev, *next; /* in ch->pending or conn->calls */
    struct api_ccall *ready_next;
    bool in_ready, pending;
    int32_t stream_id;
    int refs;
    struct api_ccall_callbacks cbs;
    void *data;
    char *path; /* owned */
    char *md;   /* owned: "name\0value\0" pairs */
    size_t md_len, md_count;
    bool wait_for_ready;
    bool has_deadline;
    uint64_t deadline; /* loop time (ms) the grpc-timeout counts down to */
    bool timer_open;
    uv_timer_t timer;
    struct api_grpc_queue q; /* sending: framed messages not yet taken by nghttp2 */
    bool half_closed, end_sent, deferred, want_writable;
    /* Receiving. */
    bool recv_paused;
    size_t unconsumed;
    uint8_t prefix[API_GRPC_FRAME_HEADER_SIZE];
    size_t prefix_len, body_len, body_have;
    uint8_t *in_buf; /* owned; exactly body_len bytes */
    int http_status;
    bool grpc_ctype;
    int resp_status; /* -1 until a grpc-status arrived */
    char *resp_msg;  /* owned; decoded grpc-message */
    /* Completion. */
    bool done;
    int status;
    char *message; /* owned; NULL means "" */
};

static void channel_kick(struct api_channel *ch);
static void channel_attempt(struct api_channel *ch);
static void channel_check_done(struct api_channel *ch);
static void call_submit(struct api_cconn *conn, struct api_ccall *call);

/* ---- small helpers ----------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

/* xorshift64*: the backoff jitter; seeded per channel. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Formats a grpc-timeout value: at most 8 digits, in the finest unit that fits. */
static void format_timeout(uint64_t ms, char *out, size_t cap)
{
    static const char units[] = {'m', 'S', 'M', 'H'};
    static const uint64_t next[] = {1000, 60, 60};
    uint64_t v = ms;
    size_t u = 0;
    while (v > 99999999u && u < 3) {
        v = (v + next[u] - 1) / next[u];
        u++;
    }
    if (v > 99999999u) {
        v = 99999999u;
    }
    snprintf(out, cap, "%" PRIu64 "%c", v, units[u]);
}

/* grpc's mapping of an HTTP status to a gRPC status (http-grpc-status-mapping.md). */
static int http_to_grpc_status(int http)
{
    switch (http) {
    case 400:
        return API_GRPC_STATUS_INTERNAL;
    case 401:
        return API_GRPC_STATUS_UNAUTHENTICATED;
    case 403:
        return API_GRPC_STATUS_PERMISSION_DENIED;
    case 404:
    case 501:
        return API_GRPC_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return API_GRPC_STATUS_UNAVAILABLE;
    default:
        return API_GRPC_STATUS_UNKNOWN;
    }
}

/* grpc's mapping of an RST_STREAM error code to a gRPC status. */
static int rst_to_grpc_status(uint32_t code)
{
    switch (code) {
    case NGHTTP2_CANCEL:
        return API_GRPC_STATUS_CANCELLED;
    case NGHTTP2_REFUSED_STREAM:
        return API_GRPC_STATUS_UNAVAILABLE;
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return API_GRPC_STATUS_RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY:
        return API_GRPC_STATUS_PERMISSION_DENIED;
    default:
        return API_GRPC_STATUS_INTERNAL;
    }
}

/* grpc-go's rule: "application/grpc" alone or followed by '+' or ';'. */
static bool is_grpc_content_type(const uint8_t *v, size_t len)
{
    static const char base[] = "application/grpc";
    size_t n = sizeof(base) - 1;
    if (len < n || memcmp(v, base, n) != 0) {
        return false;
    }
    return len == n || v[n] == '+' || v[n] == ';';
}

/* ---- endpoints ---------------------------------------------------------------------------- */

/* Parses a port of 1–5 digits into 1..65535. Returns 0 or LATCH_EINVAL. */
static int parse_port(const char *s, int *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5) {
        return LATCH_EINVAL;
    }
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return LATCH_EINVAL;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return LATCH_EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* Parses one endpoint (see api_channel_config). Returns 0 or LATCH_EINVAL. */
static int parse_endpoint(const char *s, bool have_tls, struct api_endpoint *ep)
{
    memset(ep, 0, sizeof(*ep));
    ep->tls = have_tls;
    if (strncmp(s, "http://", 7) == 0) {
        ep->tls = false;
        s += 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        if (!have_tls) {
            return LATCH_EINVAL;
        }
        ep->tls = true;
        s += 8;
    }
    size_t n = strlen(s);
    if (n == 0 || n > API_CHANNEL_ENDPOINT_MAX) {
        return LATCH_EINVAL;
    }
    memcpy(ep->authority, s, n + 1);
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return LATCH_EINVAL;
        }
        memcpy(ep->host, s + 1, (size_t)(close - s - 1));
        ep->host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            return LATCH_EINVAL; /* no port, or an IPv6 literal without brackets */
        }
        memcpy(ep->host, s, (size_t)(colon - s));
        ep->host[colon - s] = '\0';
    }
    if (ep->host[0] == '\0' || parse_port(colon + 1, &ep->port) != 0) {
        return LATCH_EINVAL;
    }
    unsigned char buf[16];
    ep->literal =
        uv_inet_pton(AF_INET, ep->host, buf) == 0 || uv_inet_pton(AF_INET6, ep->host, buf) == 0;
    if (s[0] == '[' && uv_inet_pton(AF_INET6, ep->host, buf) != 0) {
        return LATCH_EINVAL;
    }
    return 0;
}

/* ---- calls: lifetime and completion -------------------------------------------------------- */

static void call_unref(struct api_ccall *call)
{
    LATCH_ASSERT(call->refs > 0);
    if (--call->refs > 0) {
        return;
    }
    LATCH_ASSERT(call->conn == NULL && !call->pending && !call->in_ready);
    struct api_channel *ch = call->ch;
    free(call->path);
    free(call->md);
    api_grpc_queue_free(&call->q);
    free(call->in_buf);
    free(call->resp_msg);
    free(call->message);
    free(call);
    LATCH_ASSERT(ch->calls_count > 0);
    ch->calls_count--;
    channel_check_done(ch);
}

static void call_timer_close_cb(uv_handle_t *h)
{
    call_unref(h->data); /* the timer's reference */
}

static void call_stop_timer(struct api_ccall *call)
{
    if (!call->timer_open) {
        return;
    }
    call->timer_open = false;
    uv_close((uv_handle_t *)&call->timer, call_timer_close_cb);
}

/* Puts call on the channel's list of calls with a callback due (once). */
static void call_make_ready(struct api_ccall *call)
{
    struct api_channel *ch = call->ch;
    if (call->in_ready) {
        return;
    }
    call->in_ready = true;
    call->ready_next = NULL;
    if (ch->ready_tail != NULL) {
        ch->ready_tail->ready_next = call;
    } else {
        ch->ready = call;
    }
    ch->ready_tail = call;
    channel_kick(ch);
}

static void pending_remove(struct api_ccall *call)
{
    struct api_channel *ch = call->ch;
    LATCH_ASSERT(call->pending);
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        ch->pending = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    } else {
        ch->pending_tail = call->prev;
    }
    call->prev = call->next = NULL;
    call->pending = false;
}

static void pending_append(struct api_ccall *call)
{
    struct api_channel *ch = call->ch;
    call->pending = true;
    call->next = NULL;
    call->prev = ch->pending_tail;
    if (ch->pending_tail != NULL) {
        ch->pending_tail->next = call;
    } else {
        ch->pending = call;
    }
    ch->pending_tail = call;
}

static void conn_want_flush(struct api_cconn *conn)
{
    if (!conn->flush_wanted) {
        conn->flush_wanted = true;
        channel_kick(conn->ch);
    }
}

/* Whether call's stream can still take frames from us. */
static bool call_stream_live(const struct api_ccall *call)
{
    return call->conn != NULL && call->stream_id > 0 && !call->conn->t.closing;
}

/*
 * Ends call with status and message (copied; NULL for none) unless it already ended: the
 * deadline stops, a pending call leaves the queue, queued output is dropped, and when rst is
 * true and the stream lives it is reset with rst_code. on_done runs from the tick.
 */
static void
call_complete(struct api_ccall *call, int status, const char *message, bool rst, uint32_t rst_code)
{
    if (call->done) {
        return;
    }
    call->done = true;
    call->status = status;
    if (message != NULL && message[0] != '\0') {
        call->message = dup_str(message); /* NULL on OOM: on_done gets "" */
    }
    call_stop_timer(call);
    if (call->pending) {
        pending_remove(call);
    }
    if (rst && call_stream_live(call)) {
        nghttp2_submit_rst_stream(call->conn->t.session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  rst_code);
        conn_want_flush(call->conn);
    }
    api_grpc_queue_clear(&call->q);
    call->want_writable = false;
    free(call->in_buf);
    call->in_buf = NULL;
    call_make_ready(call);
}

/* The server ended its side: completes call; our side, if still open, is reset (NO_ERROR) so
 * the stream does not linger half-closed. */
static void call_complete_remote(struct api_ccall *call, int status, const char *message)
{
    call_complete(call, status, message, !call->end_sent, NGHTTP2_NO_ERROR);
}

/* Unlinks call from its connection (its stream is gone) and drops the stream's reference.
 * Idempotent. */
static void call_detach(struct api_ccall *call)
{
    struct api_cconn *conn = call->conn;
    if (conn == NULL) {
        return;
    }
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        conn->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
    call->conn = NULL;
    call->stream_id = 0;
    call_unref(call);
}

/* ---- the channel's tick -------------------------------------------------------------------- */

static bool call_writable_due(const struct api_ccall *call)
{
    return call->want_writable && !call->done &&
           api_grpc_queue_bytes(&call->q) < call->ch->max_send_queue / 2;
}

/* In TRANSIENT_FAILURE: the waiting calls that may not wait fail with the last error. */
static void channel_fail_fast(struct api_channel *ch)
{
    struct api_ccall *call = ch->pending;
    while (call != NULL) {
        struct api_ccall *next = call->next;
        if (!call->wait_for_ready) {
            call_complete(call, API_GRPC_STATUS_UNAVAILABLE, ch->last_error, false, 0);
        }
        call = next;
    }
}

/* Runs the callbacks that are due, then flushes what they and earlier calls asked for. */
static void channel_tick_cb(uv_timer_t *timer)
{
    struct api_channel *ch = timer->data;
    if (ch->state == API_CHANNEL_TRANSIENT_FAILURE) {
        channel_fail_fast(ch);
    }
    if (ch->state != ch->reported && ch->state_cb != NULL) {
        ch->reported = ch->state;
        ch->state_cb(ch, ch->state, ch->data);
    }
    while (ch->ready != NULL) {
        struct api_ccall *call = ch->ready;
        ch->ready = call->ready_next;
        if (ch->ready == NULL) {
            ch->ready_tail = NULL;
        }
        call->in_ready = false;
        if (call->done) {
            call->cbs.on_done(call, call->status, call->message != NULL ? call->message : "",
                              call->data);
            call->cbs.on_done = NULL; /* exactly once */
            call_unref(call);         /* the caller's reference */
        } else if (call_writable_due(call)) {
            call->want_writable = false;
            if (call->cbs.on_writable != NULL) {
                call->cbs.on_writable(call, call->data);
            }
        }
    }
    for (struct api_cconn *c = ch->conns; c != NULL; c = c->next) {
        if (c->flush_wanted) {
            c->flush_wanted = false;
            api_transport_flush(&c->t);
        }
    }
}

static void channel_kick(struct api_channel *ch)
{
    if (!ch->timers_closed) {
        uv_timer_start(&ch->tick, channel_tick_cb, 0, 0);
    }
}

static void channel_set_state(struct api_channel *ch, enum api_channel_state state)
{
    if (ch->state == state) {
        return;
    }
    ch->state = state;
    if (ch->state_cb != NULL) {
        channel_kick(ch);
    }
}

/* ---- sending ------------------------------------------------------------------------------- */

/* The data provider of a request: hands nghttp2 what is queued, defers while the queue is
 * empty and the call not half-closed, and ends the stream after the half-close. */
static ssize_t call_read_cb(nghttp2_session *session,
                            int32_t stream_id,
                            uint8_t *buf,
                            size_t length,
                            uint32_t *data_flags,
                            nghttp2_data_source *source,
                            void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)user_data;
    struct api_ccall *call = source->ptr;
    if (call->done) {
        call->deferred = true; /* a reset is on its way */
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = api_grpc_queue_take(&call->q, buf, length);
    if (call_writable_due(call)) {
        call_make_ready(call);
    }
    if (api_grpc_queue_bytes(&call->q) > 0) {
        return (ssize_t)n;
    }
    if (call->half_closed) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        call->end_sent = true;
        return (ssize_t)n;
    }
    if (n > 0) {
        return (ssize_t)n;
    }
    call->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

/* Wakes a deferred provider after more was queued (or the half-close). */
static void call_resume(struct api_ccall *call)
{
    if (!call_stream_live(call)) {
        return;
    }
    if (call->deferred) {
        call->deferred = false;
        nghttp2_session_resume_data(call->conn->t.session, call->stream_id);
    }
    conn_want_flush(call->conn);
}

int api_ccall_send(struct api_ccall *call, const uint8_t *msg, size_t len, bool *would_block)
{
    if (would_block != NULL) {
        *would_block = false;
    }
    if (call->done || call->half_closed) {
        return LATCH_ESTATE;
    }
    int rc = api_grpc_queue_push(&call->q, msg, len);
    if (rc != 0) {
        return rc;
    }
    call_resume(call);
    if (api_grpc_queue_bytes(&call->q) > call->ch->max_send_queue) {
        call->want_writable = true;
        if (would_block != NULL) {
            *would_block = true;
        }
    }
    return 0;
}

int api_ccall_close_send(struct api_ccall *call)
{
    if (call->done || call->half_closed) {
        return LATCH_ESTATE;
    }
    call->half_closed = true;
    call_resume(call);
    return 0;
}

void api_ccall_cancel(struct api_ccall *call)
{
    call_complete(call, API_GRPC_STATUS_CANCELLED, "Cancelled", true, NGHTTP2_CANCEL);
}

size_t api_ccall_queued_bytes(const struct api_ccall *call)
{
    return api_grpc_queue_bytes(&call->q);
}

void api_ccall_pause_recv(struct api_ccall *call)
{
    call->recv_paused = true;
}

void api_ccall_resume_recv(struct api_ccall *call)
{
    call->recv_paused = false;
    if (call->unconsumed == 0 || !call_stream_live(call)) {
        call->unconsumed = 0;
        return;
    }
    nghttp2_session_consume_stream(call->conn->t.session, call->stream_id, call->unconsumed);
    call->unconsumed = 0;
    conn_want_flush(call->conn); /* the WINDOW_UPDATE */
}

/* ---- starting calls ------------------------------------------------------------------------ */

static nghttp2_nv make_nv(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                     NGHTTP2_NV_FLAG_NONE};
    return nv;
}

/* Submits call's request on conn (READY, no GOAWAY): HEADERS now, DATA from the provider. */
static void call_submit(struct api_cconn *conn, struct api_ccall *call)
{
    struct api_channel *ch = conn->ch;
    char timeout[16];
    if (call->has_deadline) {
        uint64_t now = uv_now(ch->loop);
        if (now >= call->deadline) {
            call_complete(call, API_GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", false, 0);
            return;
        }
        format_timeout(call->deadline - now, timeout, sizeof(timeout));
    }
    nghttp2_nv *nva = malloc((8 + call->md_count) * sizeof(*nva));
    if (nva == NULL) {
        call_complete(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", false, 0);
        return;
    }
    size_t n = 0;
    nva[n++] = make_nv(":method", "POST");
    nva[n++] = make_nv(":scheme", conn->ep->tls ? "https" : "http");
    nva[n++] = make_nv(":path", call->path);
    nva[n++] = make_nv(":authority", ch->authority != NULL ? ch->authority : conn->ep->authority);
    nva[n++] = make_nv("content-type", "application/grpc");
    nva[n++] = make_nv("te", "trailers");
    nva[n++] = make_nv("user-agent", ch->user_agent);
    if (call->has_deadline) {
        nva[n++] = make_nv("grpc-timeout", timeout);
    }
    const char *p = call->md;
    for (size_t i = 0; i < call->md_count; i++) {
        const char *v = p + strlen(p) + 1;
        nva[n++] = make_nv(p, v);
        p = v + strlen(v) + 1;
    }
    nghttp2_data_provider prd;
    prd.source.ptr = call;
    prd.read_callback = call_read_cb;
    int32_t id = nghttp2_submit_request(conn->t.session, NULL, nva, n, &prd, call);
    free(nva);
    if (id < 0) {
        latch_log(LATCH_LOG_WARN, "grpc client: submit request: %s", nghttp2_strerror(id));
        call_complete(call, API_GRPC_STATUS_UNAVAILABLE, nghttp2_strerror(id), false, 0);
        return;
    }
    call->conn = conn;
    call->stream_id = id;
    call->refs++; /* the stream's, dropped by call_detach */
    call->prev = NULL;
    call->next = conn->calls;
    if (conn->calls != NULL) {
        conn->calls->prev = call;
    }
    conn->calls = call;
    conn_want_flush(conn);
}

static void call_deadline_cb(uv_timer_t *timer)
{
    struct api_ccall *call = timer->data;
    call_complete(call, API_GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", true,
                  NGHTTP2_CANCEL);
}

/* Copies the metadata as "name\0value\0" pairs. Returns 0, LATCH_EINVAL or LATCH_ENOMEM. */
static int call_copy_metadata(struct api_ccall *call, const struct api_call_opts *opts)
{
    size_t total = 0;
    for (size_t i = 0; i < opts->metadata_count; i++) {
        const char *name = opts->metadata[i].name;
        const char *value = opts->metadata[i].value;
        if (name == NULL || value == NULL || name[0] == '\0' || name[0] == ':') {
            return LATCH_EINVAL;
        }
        for (const char *c = name; *c != '\0'; c++) {
            if ((*c >= 'A' && *c <= 'Z') || *c <= ' ' || *c == 0x7f) {
                return LATCH_EINVAL;
            }
        }
        if (strpbrk(value, "\r\n") != NULL) {
            return LATCH_EINVAL;
        }
        total += strlen(name) + strlen(value) + 2;
    }
    if (total == 0) {
        return 0;
    }
    call->md = malloc(total);
    if (call->md == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < opts->metadata_count; i++) {
        size_t nl = strlen(opts->metadata[i].name) + 1;
        size_t vl = strlen(opts->metadata[i].value) + 1;
        memcpy(call->md + call->md_len, opts->metadata[i].name, nl);
        memcpy(call->md + call->md_len + nl, opts->metadata[i].value, vl);
        call->md_len += nl + vl;
    }
    call->md_count = opts->metadata_count;
    return 0;
}

/* Allocates a call with its path and metadata. Returns 0 or LATCH_EINVAL/LATCH_ENOMEM. */
static int call_new(struct api_channel *ch,
                    const char *path,
                    const struct api_call_opts *opts,
                    struct api_ccall **out)
{
    struct api_ccall *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        return LATCH_ENOMEM;
    }
    call->ch = ch;
    call->resp_status = -1;
    call->path = dup_str(path);
    int rc = call->path == NULL ? LATCH_ENOMEM : call_copy_metadata(call, opts);
    if (rc != 0) {
        free(call->path);
        free(call->md);
        free(call);
        return rc;
    }
    *out = call;
    return 0;
}

int api_ccall_start(struct api_channel *ch,
                    const char *path,
                    const struct api_call_opts *opts,
                    const struct api_ccall_callbacks *cbs,
                    void *data,
                    struct api_ccall **out)
{
    static const struct api_call_opts none;
    LATCH_ASSERT(cbs != NULL && cbs->on_done != NULL && out != NULL);
    *out = NULL;
    opts = opts != NULL ? opts : &none;
    if (ch->closing) {
        return LATCH_ESTATE;
    }
    if (path == NULL || path[0] != '/' || strpbrk(path, "\r\n ") != NULL) {
        return LATCH_EINVAL;
    }
    struct api_ccall *call;
    int rc = call_new(ch, path, opts, &call);
    if (rc != 0) {
        return rc;
    }
    call->cbs = *cbs;
    call->data = data;
    call->refs = 1; /* the caller's, dropped after on_done */
    call->wait_for_ready = opts->wait_for_ready;
    ch->calls_count++;
    if (opts->timeout_ms > 0 && uv_timer_init(ch->loop, &call->timer) == 0) {
        call->has_deadline = true;
        call->deadline = uv_now(ch->loop) + opts->timeout_ms;
        call->timer.data = call;
        call->timer_open = true;
        call->refs++; /* the timer's, dropped in call_timer_close_cb */
        uv_timer_start(&call->timer, call_deadline_cb, opts->timeout_ms + opts->local_grace_ms, 0);
    }
    *out = call;
    if (ch->active != NULL) {
        call_submit(ch->active, call);
    } else {
        /* In TRANSIENT_FAILURE a fail-fast call fails from the tick, so the caller can still
         * queue its messages and half-close as on any fresh call. */
        pending_append(call);
        if (ch->state == API_CHANNEL_TRANSIENT_FAILURE && !call->wait_for_ready) {
            channel_kick(ch);
        }
    }
    return 0;
}

/* ---- receiving ----------------------------------------------------------------------------- */

static struct api_ccall *stream_call(nghttp2_session *session, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

/*
 * Collects the 5-byte prefix of a response message; once complete, checks it and allocates
 * in_buf of the declared length. Returns the bytes used; the call is completed on error.
 */
static size_t call_take_prefix(struct api_ccall *call, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE && used < len) {
        call->prefix[call->prefix_len++] = data[used++];
    }
    if (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
        return used;
    }
    size_t max = call->ch->max_recv;
    uint32_t declared = 0;
    int rc = api_grpc_frame_prefix_check(call->prefix, max, &declared);
    call->body_len = declared;
    call->body_have = 0;
    if (rc == LATCH_ETOOBIG) {
        char text[API_GRPC_TOO_LARGE_MESSAGE_MAX];
        api_grpc_too_large_message(text, sizeof(text), declared, max);
        call_complete(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, text, true, NGHTTP2_CANCEL);
    } else if (rc != 0) {
        call_complete(call, API_GRPC_STATUS_INTERNAL,
                      "grpc: compressed or malformed response message", true, NGHTTP2_CANCEL);
    } else if (declared > 0) {
        call->in_buf = malloc(declared);
        if (call->in_buf == NULL) {
            call_complete(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", true,
                          NGHTTP2_CANCEL);
        }
    }
    return used;
}

/* A response message is complete: on_message gets it, then its buffer goes. */
static void call_deliver(struct api_ccall *call)
{
    static const uint8_t empty[1];
    const uint8_t *msg = call->in_buf != NULL ? call->in_buf : empty; /* never NULL */
    if (call->cbs.on_message != NULL) {
        call->cbs.on_message(call, msg, call->body_len, call->data);
    }
    free(call->in_buf);
    call->in_buf = NULL;
    call->prefix_len = 0;
    call->body_len = call->body_have = 0;
}

static int on_data_chunk_recv(nghttp2_session *session,
                              uint8_t flags,
                              int32_t stream_id,
                              const uint8_t *data,
                              size_t len,
                              void *user_data)
{
    (void)flags;
    (void)user_data;
    struct api_ccall *call = stream_call(session, stream_id);
    /* Windows are returned by hand (NO_AUTO_WINDOW_UPDATE): the connection's at once, the
     * stream's unless the caller paused receiving. */
    nghttp2_session_consume_connection(session, len);
    if (call != NULL && call->recv_paused && !call->done) {
        call->unconsumed += len;
    } else {
        nghttp2_session_consume_stream(session, stream_id, len);
    }
    while (call != NULL && len > 0 && !call->done) {
        if (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
            size_t used = call_take_prefix(call, data, len);
            data += used;
            len -= used;
            if (call->done || call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
                break;
            }
        }
        size_t take = call->body_len - call->body_have;
        take = len < take ? len : take;
        if (take > 0) {
            memcpy(call->in_buf + call->body_have, data, take);
            call->body_have += take;
            data += take;
            len -= take;
        }
        if (call->body_have == call->body_len) {
            call_deliver(call);
        }
    }
    return 0;
}

/* Keeps the decoded grpc-message. */
static void call_set_resp_msg(struct api_ccall *call, const uint8_t *value, size_t len)
{
    free(call->resp_msg);
    call->resp_msg = malloc(len + 1);
    if (call->resp_msg != NULL) {
        api_grpc_message_decode((const char *)value, len, call->resp_msg, len + 1);
    }
}

/* Parses a grpc-status value: 1–3 digits, 0..16; anything else is UNKNOWN. */
static int parse_grpc_status(const uint8_t *v, size_t len)
{
    if (len == 0 || len > 3) {
        return API_GRPC_STATUS_UNKNOWN;
    }
    int s = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return API_GRPC_STATUS_UNKNOWN;
        }
        s = s * 10 + (v[i] - '0');
    }
    return s < API_GRPC_STATUS_COUNT ? s : API_GRPC_STATUS_UNKNOWN;
}

static int on_header(nghttp2_session *session,
                     const nghttp2_frame *frame,
                     const uint8_t *name,
                     size_t namelen,
                     const uint8_t *value,
                     size_t valuelen,
                     uint8_t flags,
                     void *user_data)
{
    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    struct api_ccall *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || call->done) {
        return 0;
    }
    bool first = frame->headers.cat == NGHTTP2_HCAT_RESPONSE;
    if (first && namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int s = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++) {
            s = s * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        }
        call->http_status = s;
    } else if (first && namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        call->grpc_ctype = is_grpc_content_type(value, valuelen);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        call->resp_status = parse_grpc_status(value, valuelen);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        call_set_resp_msg(call, value, valuelen);
    }
    return 0;
}

/* The server's trailers (or trailers-only response) arrived: the call's final status. */
static void call_trailers(struct api_ccall *call)
{
    if (call->prefix_len > 0) {
        call_complete_remote(call, API_GRPC_STATUS_INTERNAL,
                             "grpc: response message cut short by the end of the stream");
    } else if (call->resp_status < 0) {
        call_complete_remote(call, API_GRPC_STATUS_UNKNOWN, "grpc: trailers without grpc-status");
    } else {
        call_complete_remote(call, call->resp_status, call->resp_msg);
    }
}

/* The response headers arrived: anything but a gRPC 200 ends the call. Returns true then. */
static bool call_check_response(struct api_ccall *call)
{
    char text[80];
    if (call->http_status != 200) {
        snprintf(text, sizeof(text), "unexpected HTTP status code %d", call->http_status);
        call_complete(call, http_to_grpc_status(call->http_status), text, !call->end_sent,
                      NGHTTP2_CANCEL);
        return true;
    }
    if (!call->grpc_ctype) {
        call_complete(call, API_GRPC_STATUS_UNKNOWN, "unexpected content-type", !call->end_sent,
                      NGHTTP2_CANCEL);
        return true;
    }
    return false;
}

static void conn_ready(struct api_cconn *conn);
static void conn_goaway(struct api_cconn *conn);

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct api_cconn *conn = user_data;
    if (conn->t.closing) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_SETTINGS) {
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && !conn->ready) {
            conn_ready(conn);
        }
        return 0;
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        conn_goaway(conn);
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    struct api_ccall *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || call->done) {
        return 0;
    }
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE &&
        call_check_response(call)) {
        return 0;
    }
    if (!end) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS) {
        call_trailers(call);
    } else {
        call_complete_remote(call, API_GRPC_STATUS_INTERNAL,
                             "grpc: server ended the stream without trailers");
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    (void)user_data;
    struct api_ccall *call = stream_call(session, stream_id);
    if (call == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (!call->done) {
        char text[96];
        if (error_code == NGHTTP2_REFUSED_STREAM) {
            snprintf(text, sizeof(text), "stream refused by the server (not processed)");
        } else {
            snprintf(text, sizeof(text), "stream reset by the server: %s",
                     nghttp2_http2_strerror(error_code));
        }
        call_complete(call, rst_to_grpc_status(error_code), text, false, 0);
    }
    call_detach(call);
    return 0;
}

/* A request HEADERS that never went out (cancelled before it was sent, GOAWAY, stream ids
 * exhausted): the stream never opened, so on_stream_close will not come for it. */
static int on_frame_not_send(nghttp2_session *session,
                             const nghttp2_frame *frame,
                             int lib_error_code,
                             void *user_data)
{
    struct api_cconn *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
        nghttp2_session_find_stream(session, frame->hd.stream_id) != NULL) {
        return 0;
    }
    for (struct api_ccall *call = conn->calls; call != NULL; call = call->next) {
        if (call->stream_id == frame->hd.stream_id) {
            call_complete(call, API_GRPC_STATUS_UNAVAILABLE, nghttp2_strerror(lib_error_code),
                          false, 0);
            call_detach(call);
            break;
        }
    }
    return 0;
}

/* ---- connections --------------------------------------------------------------------------- */

static void channel_round_failed(struct api_channel *ch);

/* A lookup still running is stale from here on: its callback only frees it. */
static void channel_drop_resolve(struct api_channel *ch)
{
    ch->gen++;
    if (ch->resolve != NULL) {
        uv_cancel((uv_req_t *)&ch->resolve->req); /* EBUSY once a thread runs it: fine */
        ch->resolve = NULL;
    }
    ch->resolving = false;
}

/* The current attempt failed with reason: the next address, the next endpoint, or, after a
 * whole round, TRANSIENT_FAILURE and the backoff delay. */
static void attempt_failed(struct api_channel *ch, const char *reason)
{
    snprintf(ch->last_error, sizeof(ch->last_error), "%s", reason);
    latch_log(LATCH_LOG_DEBUG, "grpc client: %s", reason);
    uv_timer_stop(&ch->connect_timer);
    if (ch->connecting != NULL) {
        struct api_cconn *conn = ch->connecting;
        ch->connecting = NULL;
        conn->abandoned = true;
        api_transport_close(&conn->t);
    }
    channel_drop_resolve(ch);
    if (ch->closing) {
        return;
    }
    if (++ch->addr_index < ch->naddrs) {
        channel_attempt(ch);
        return;
    }
    ch->ep_index = (ch->ep_index + 1) % ch->neps;
    ch->naddrs = ch->addr_index = 0;
    if (++ch->tried < ch->neps) {
        channel_attempt(ch);
        return;
    }
    channel_round_failed(ch);
}

/* The server's first SETTINGS: the connection takes the waiting calls. */
static void conn_ready(struct api_cconn *conn)
{
    struct api_channel *ch = conn->ch;
    conn->ready = true;
    if (conn != ch->connecting || ch->closing) {
        return;
    }
    ch->connecting = NULL;
    uv_timer_stop(&ch->connect_timer);
    ch->active = conn;
    ch->tried = 0;
    ch->backoff_ms = ch->backoff_initial_ms;
    channel_set_state(ch, API_CHANNEL_READY);
    while (ch->pending != NULL && ch->active == conn) {
        struct api_ccall *call = ch->pending;
        pending_remove(call);
        call_submit(conn, call);
    }
}

/* A new connection for new calls, unless one is already being made. */
static void channel_reconnect(struct api_channel *ch)
{
    if (ch->closing || ch->connecting != NULL || ch->resolving ||
        uv_is_active((uv_handle_t *)&ch->backoff_timer)) {
        return;
    }
    ch->tried = 0;
    ch->naddrs = ch->addr_index = 0;
    channel_attempt(ch);
}

/* GOAWAY: no new streams here; the streams it covers finish, nghttp2 closes the others
 * (REFUSED_STREAM → UNAVAILABLE), and the connection closes once none is left. */
static void conn_goaway(struct api_cconn *conn)
{
    struct api_channel *ch = conn->ch;
    conn->goaway = true;
    if (conn == ch->active) {
        ch->active = NULL;
        channel_set_state(ch, API_CHANNEL_CONNECTING);
        channel_reconnect(ch);
    }
}

/* The transport started closing: calls on it fail, and the channel reconnects or moves on. */
static void conn_closing(struct api_transport *t)
{
    struct api_cconn *conn = (struct api_cconn *)t;
    struct api_channel *ch = conn->ch;
    char reason[API_CLIENT_ERR_MAX];
    if (conn->err[0] != '\0') {
        snprintf(reason, sizeof(reason), "%s", conn->err);
    } else if (t->tls != NULL && api_tls_error(t->tls)[0] != '\0') {
        snprintf(reason, sizeof(reason), "%s: TLS: %s", conn->ep->authority, api_tls_error(t->tls));
    } else if (!conn->ready) {
        snprintf(reason, sizeof(reason), "%s: connection closed before the server's SETTINGS",
                 conn->ep->authority);
    } else {
        snprintf(reason, sizeof(reason), "%s: connection lost", conn->ep->authority);
    }
    while (conn->calls != NULL) {
        struct api_ccall *call = conn->calls;
        call_complete(call, API_GRPC_STATUS_UNAVAILABLE, reason, false, 0);
        call_detach(call);
    }
    if (conn == ch->connecting && !conn->abandoned) {
        attempt_failed(ch, reason);
    } else if (conn == ch->active) {
        ch->active = NULL;
        snprintf(ch->last_error, sizeof(ch->last_error), "%s", reason);
        if (!ch->closing) {
            channel_set_state(ch, API_CHANNEL_CONNECTING);
            channel_reconnect(ch);
        }
    }
}

static void conn_closed(struct api_transport *t)
{
    struct api_cconn *conn = (struct api_cconn *)t;
    struct api_channel *ch = conn->ch;
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        ch->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    free(conn);
    LATCH_ASSERT(ch->handles_open > 0);
    ch->handles_open--;
    channel_check_done(ch);
}

/* TLS is up: gRPC needs h2 (a server that chose nothing or something else cannot speak it). */
static void conn_handshake_done(struct api_transport *t)
{
    struct api_cconn *conn = (struct api_cconn *)t;
    if (!api_tls_alpn_is_h2(t->tls)) {
        snprintf(conn->err, sizeof(conn->err), "%s: the server did not negotiate ALPN h2",
                 conn->ep->authority);
        api_transport_close(t);
    }
}

static const struct api_transport_ops conn_ops = {
    .closing = conn_closing,
    .handshake_done = conn_handshake_done,
    .closed = conn_closed,
};

static int conn_session_init(struct api_cconn *conn)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return LATCH_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
    /* The client preface goes out with the first flush (nghttp2 writes the magic itself). */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, API_CLIENT_INITIAL_WINDOW_SIZE},
    };
    int rc = api_transport_session_new(&conn->t, cbs, false, iv, 2, API_CLIENT_CONN_WINDOW_SIZE);
    nghttp2_session_callbacks_del(cbs);
    return rc;
}

/* TCP is connected: the session, TLS if the endpoint wants it, then the preface. */
static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct api_cconn *conn = req->data;
    struct api_channel *ch = conn->ch;
    if (status == UV_ECANCELED || conn->abandoned || conn->t.closing) {
        return;
    }
    char reason[API_CLIENT_ERR_MAX];
    if (status < 0) {
        snprintf(reason, sizeof(reason), "%s: connect: %s", conn->ep->authority,
                 uv_strerror(status));
        attempt_failed(ch, reason);
        return;
    }
    struct api_tls *tls = NULL;
    if (conn_session_init(conn) != 0 ||
        (conn->ep->tls &&
         api_tls_new_host(ch->tls, ch->verify_host ? conn->ep->host : NULL, &tls) != 0) ||
        api_transport_start(&conn->t, tls) != 0) {
        if (conn->t.tls == NULL) {
            api_tls_free(tls); /* not taken over by the transport */
        }
        snprintf(reason, sizeof(reason), "%s: cannot start the session", conn->ep->authority);
        attempt_failed(ch, reason);
    }
}

/* Connects to ch->addrs[ch->addr_index] of the current endpoint. */
static void conn_connect(struct api_channel *ch)
{
    const struct api_endpoint *ep = &ch->eps[ch->ep_index];
    char reason[API_CLIENT_ERR_MAX];
    struct api_cconn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL || api_transport_init(&conn->t, ch->loop, true, &conn_ops, conn, &ch->io,
                                           ch->max_conn_output) != 0) {
        free(conn);
        snprintf(reason, sizeof(reason), "%s: cannot make a socket", ep->authority);
        attempt_failed(ch, reason);
        return;
    }
    conn->ch = ch;
    conn->ep = ep;
    conn->next = ch->conns;
    if (ch->conns != NULL) {
        ch->conns->prev = conn;
    }
    ch->conns = conn;
    ch->handles_open++;
    ch->connecting = conn;
    conn->connect_req.data = conn;
    int rv = uv_tcp_connect(&conn->connect_req, &conn->t.h.tcp,
                            (const struct sockaddr *)&ch->addrs[ch->addr_index], conn_connect_cb);
    if (rv != 0) {
        snprintf(reason, sizeof(reason), "%s: connect: %s", ep->authority, uv_strerror(rv));
        attempt_failed(ch, reason);
    }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct api_resolve *r = req->data;
    struct api_channel *ch = r->ch;
    bool stale = r->gen != ch->gen || ch->closing;
    free(r);
    LATCH_ASSERT(ch->handles_open > 0);
    ch->handles_open--;
    if (stale) {
        uv_freeaddrinfo(res);
        channel_check_done(ch);
        return;
    }
    ch->resolving = false;
    ch->resolve = NULL;
    ch->naddrs = 0;
    for (struct addrinfo *ai = res; ai != NULL && ch->naddrs < API_CLIENT_ADDRS_MAX;
         ai = ai->ai_next) {
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof(ch->addrs[0])) {
            memcpy(&ch->addrs[ch->naddrs++], ai->ai_addr, ai->ai_addrlen);
        }
    }
    uv_freeaddrinfo(res);
    if (status < 0 || ch->naddrs == 0) {
        char reason[API_CLIENT_ERR_MAX];
        snprintf(reason, sizeof(reason), "%s: cannot resolve: %s", ch->eps[ch->ep_index].authority,
                 status < 0 ? uv_strerror(status) : "no address");
        attempt_failed(ch, reason);
        return;
    }
    ch->addr_index = 0;
    conn_connect(ch);
}

static void connect_timeout_cb(uv_timer_t *timer)
{
    struct api_channel *ch = timer->data;
    char reason[API_CLIENT_ERR_MAX];
    snprintf(reason, sizeof(reason), "%s: connect timeout (%" PRIu64 " ms)",
             ch->eps[ch->ep_index].authority, ch->connect_timeout_ms);
    attempt_failed(ch, reason);
}

/* Starts an attempt on the current endpoint: its next address, or a name lookup first. */
static void channel_attempt(struct api_channel *ch)
{
    const struct api_endpoint *ep = &ch->eps[ch->ep_index];
    channel_set_state(ch, API_CHANNEL_CONNECTING);
    uv_timer_start(&ch->connect_timer, connect_timeout_cb, ch->connect_timeout_ms, 0);
    if (ch->addr_index < ch->naddrs) {
        conn_connect(ch);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", ep->port);
    if (ep->literal) {
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                                 .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        /* A numeric lookup never blocks: no thread needed. */
        if (getaddrinfo(ep->host, port, &hints, &res) != 0 || res == NULL) {
            attempt_failed(ch, "bad address literal");
            return;
        }
        memcpy(&ch->addrs[0], res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        ch->naddrs = 1;
        ch->addr_index = 0;
        conn_connect(ch);
        return;
    }
    struct api_resolve *r = malloc(sizeof(*r));
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    if (r == NULL) {
        attempt_failed(ch, "out of memory");
        return;
    }
    r->ch = ch;
    r->gen = ch->gen;
    r->req.data = r;
    if (uv_getaddrinfo(ch->loop, &r->req, resolve_cb, ep->host, port, &hints) != 0) {
        free(r);
        attempt_failed(ch, "cannot start a name lookup");
        return;
    }
    ch->resolving = true;
    ch->resolve = r;
    ch->handles_open++;
}

static void backoff_cb(uv_timer_t *timer)
{
    struct api_channel *ch = timer->data;
    ch->tried = 0;
    ch->naddrs = ch->addr_index = 0;
    channel_attempt(ch);
}

/* Every endpoint failed once: calls that may not wait fail, and the next round waits. */
static void channel_round_failed(struct api_channel *ch)
{
    ch->tried = 0;
    channel_set_state(ch, API_CHANNEL_TRANSIENT_FAILURE);
    channel_fail_fast(ch);
    uint64_t delay = ch->backoff_ms;
    uint64_t range = delay * ch->jitter_pct / 100;
    if (range > 0) {
        delay = delay - range + rng_next(&ch->rng) % (2 * range + 1);
    }
    ch->backoff_ms =
        ch->backoff_ms * 2 > ch->backoff_max_ms ? ch->backoff_max_ms : ch->backoff_ms * 2;
    uv_timer_start(&ch->backoff_timer, backoff_cb, delay, 0);
}

/* ---- the channel --------------------------------------------------------------------------- */

static void channel_timer_close_cb(uv_handle_t *h)
{
    struct api_channel *ch = h->data;
    LATCH_ASSERT(ch->handles_open > 0);
    ch->handles_open--;
    channel_check_done(ch);
}

/* Once closing and every call is gone, closes the timers; once every handle is closed, frees
 * the channel. Only close callbacks get to the free, never code inside a channel callback. */
static void channel_check_done(struct api_channel *ch)
{
    if (!ch->closing || ch->calls_count > 0) {
        return;
    }
    if (!ch->timers_closed) {
        ch->timers_closed = true;
        uv_close((uv_handle_t *)&ch->tick, channel_timer_close_cb);
        uv_close((uv_handle_t *)&ch->connect_timer, channel_timer_close_cb);
        uv_close((uv_handle_t *)&ch->backoff_timer, channel_timer_close_cb);
        return;
    }
    if (ch->handles_open > 0) {
        return;
    }
    if (ch->done_cb != NULL) {
        ch->done_cb(ch, ch->done_data);
    }
    free(ch->authority);
    free(ch->user_agent);
    free(ch);
}

/* Copies cfg into ch with the defaults filled in. Returns 0, LATCH_EINVAL or LATCH_ENOMEM. */
static int channel_configure(struct api_channel *ch, const struct api_channel_config *cfg)
{
    if (cfg->endpoints == NULL || cfg->endpoints_count == 0 ||
        cfg->endpoints_count > API_CHANNEL_ENDPOINTS_MAX || cfg->backoff_jitter_pct > 100) {
        return LATCH_EINVAL;
    }
    for (size_t i = 0; i < cfg->endpoints_count; i++) {
        if (cfg->endpoints[i] == NULL ||
            parse_endpoint(cfg->endpoints[i], cfg->tls != NULL, &ch->eps[i]) != 0) {
            return LATCH_EINVAL;
        }
    }
    ch->neps = cfg->endpoints_count;
    ch->tls = cfg->tls;
    ch->verify_host = cfg->verify_host;
    ch->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                                         : API_CHANNEL_CONNECT_TIMEOUT_MS_DEFAULT;
    ch->backoff_initial_ms = cfg->backoff_initial_ms > 0 ? cfg->backoff_initial_ms
                                                         : API_CHANNEL_BACKOFF_INITIAL_MS_DEFAULT;
    ch->backoff_max_ms =
        cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : API_CHANNEL_BACKOFF_MAX_MS_DEFAULT;
    if (ch->backoff_max_ms < ch->backoff_initial_ms) {
        ch->backoff_max_ms = ch->backoff_initial_ms;
    }
    ch->backoff_ms = ch->backoff_initial_ms;
    ch->jitter_pct = cfg->backoff_no_jitter        ? 0
                     : cfg->backoff_jitter_pct > 0 ? cfg->backoff_jitter_pct
                                                   : API_CHANNEL_BACKOFF_JITTER_PCT_DEFAULT;
    ch->rng = cfg->seed != 0 ? cfg->seed : (uv_hrtime() ^ (uint64_t)(uintptr_t)ch);
    ch->rng = ch->rng != 0 ? ch->rng : 1;
    ch->max_recv =
        cfg->max_recv_msg_size > 0 ? cfg->max_recv_msg_size : API_CHANNEL_MAX_RECV_MSG_SIZE_DEFAULT;
    ch->max_send_queue = cfg->max_send_queue_bytes > 0 ? cfg->max_send_queue_bytes
                                                       : API_CHANNEL_MAX_SEND_QUEUE_DEFAULT;
    ch->max_conn_output = cfg->max_conn_output_bytes > 0 ? cfg->max_conn_output_bytes
                                                         : API_CHANNEL_MAX_CONN_OUTPUT_DEFAULT;
    ch->state_cb = cfg->state_cb;
    ch->data = cfg->data;
    ch->user_agent = dup_str(cfg->user_agent != NULL ? cfg->user_agent : API_CLIENT_USER_AGENT);
    if (cfg->authority != NULL) {
        ch->authority = dup_str(cfg->authority);
    }
    if (ch->user_agent == NULL || (cfg->authority != NULL && ch->authority == NULL)) {
        return LATCH_ENOMEM;
    }
    return 0;
}

int api_channel_new(uv_loop_t *loop, const struct api_channel_config *cfg, struct api_channel **out)
{
    *out = NULL;
    struct api_channel *ch = calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return LATCH_ENOMEM;
    }
    ch->loop = loop;
    int rc = channel_configure(ch, cfg);
    if (rc != 0) {
        free(ch->authority);
        free(ch->user_agent);
        free(ch);
        return rc;
    }
    uv_timer_init(loop, &ch->tick); /* cannot fail for timers */
    uv_timer_init(loop, &ch->connect_timer);
    uv_timer_init(loop, &ch->backoff_timer);
    ch->tick.data = ch->connect_timer.data = ch->backoff_timer.data = ch;
    ch->handles_open = 3;
    ch->state = ch->reported = API_CHANNEL_CONNECTING;
    channel_attempt(ch);
    *out = ch;
    return 0;
}

void api_channel_close(struct api_channel *ch, api_channel_close_cb done_cb, void *data)
{
    LATCH_ASSERT(!ch->closing);
    ch->closing = true;
    ch->done_cb = done_cb;
    ch->done_data = data;
    ch->state = API_CHANNEL_SHUTDOWN;
    ch->state_cb = NULL; /* nothing is reported any more */
    channel_drop_resolve(ch);
    uv_timer_stop(&ch->connect_timer);
    uv_timer_stop(&ch->backoff_timer);
    ch->connecting = NULL;
    ch->active = NULL;
    while (ch->pending != NULL) {
        call_complete(ch->pending, API_GRPC_STATUS_CANCELLED, "channel closed", false, 0);
    }
    for (struct api_cconn *c = ch->conns; c != NULL; c = c->next) {
        for (struct api_ccall *call = c->calls; call != NULL; call = call->next) {
            call_complete(call, API_GRPC_STATUS_CANCELLED, "channel closed", false, 0);
        }
        c->abandoned = true;
        api_transport_close(&c->t); /* its closing callback detaches the calls */
    }
    channel_kick(ch);
    channel_check_done(ch);
}

enum api_channel_state api_channel_state(const struct api_channel *ch)
{
    return ch->state;
}

const char *api_channel_last_error(const struct api_channel *ch)
{
    return ch->last_error;
}

/* ---- unary convenience ---------------------------------------------------------------------- */

struct api_unary {
    api_unary_cb cb; /* NULL: the start failed, nothing is reported */
    void *data;
    uint8_t *resp; /* owned; the first response message */
    size_t resp_len;
    size_t count;
    bool oom;
};

static void unary_on_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct api_unary *u = data;
    if (u->count++ > 0) {
        return;
    }
    u->resp = malloc(len > 0 ? len : 1);
    if (u->resp == NULL) {
        u->oom = true;
        return;
    }
    memcpy(u->resp, msg, len);
    u->resp_len = len;
}

static void unary_on_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct api_unary *u = data;
    if (status == API_GRPC_STATUS_OK && u->count != 1) {
        status = API_GRPC_STATUS_INTERNAL;
        message = u->count == 0 ? "grpc: no response message for a unary call"
                                : "grpc: more than one response message for a unary call";
    } else if (status == API_GRPC_STATUS_OK && u->oom) {
        status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        message = "out of memory";
    }
    if (u->cb != NULL) {
        bool ok = status == API_GRPC_STATUS_OK;
        u->cb(status, message, ok ? u->resp : NULL, ok ? u->resp_len : 0, u->data);
    }
    free(u->resp);
    free(u);
}

int api_channel_unary(struct api_channel *ch,
                      const char *path,
                      const uint8_t *req,
                      size_t len,
                      const struct api_call_opts *opts,
                      api_unary_cb cb,
                      void *data)
{
    static const struct api_ccall_callbacks cbs = {
        .on_message = unary_on_message,
        .on_done = unary_on_done,
    };
    struct api_unary *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return LATCH_ENOMEM;
    }
    u->cb = cb;
    u->data = data;
    struct api_ccall *call;
    int rc = api_ccall_start(ch, path, opts, &cbs, u, &call);
    if (rc != 0) {
        free(u);
        return rc;
    }
    rc = api_ccall_send(call, req, len, NULL);
    if (rc == 0) {
        rc = api_ccall_close_send(call);
    }
    if (rc != 0) {
        u->cb = NULL; /* an error return means cb never runs */
        api_ccall_cancel(call);
    }
    return rc;
}

/* ---- the blocking wrapper ------------------------------------------------------------------- */

struct api_blocking {
    uv_loop_t loop;
    struct api_channel *ch; /* NULL once closed */
};

static void blocking_timeout_cb(uv_timer_t *timer)
{
    (void)timer; /* a one-shot timer is inactive once it fired: that is the signal */
}

/* Runs b's loop until done(arg) or timeout_ms passed (0: no limit). Returns done(arg). */
static bool
blocking_wait(struct api_blocking *b, uint64_t timeout_ms, bool (*done)(void *arg), void *arg)
{
    uv_timer_t timer;
    uv_timer_init(&b->loop, &timer);
    if (timeout_ms > 0) {
        uv_timer_start(&timer, blocking_timeout_cb, timeout_ms, 0);
    }
    uv_update_time(&b->loop);
    while (!done(arg) && (timeout_ms == 0 || uv_is_active((uv_handle_t *)&timer))) {
        uv_run(&b->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&b->loop, UV_RUN_NOWAIT); /* the timer's close callback */
    return done(arg);
}

static bool blocking_settled(void *arg)
{
    struct api_blocking *b = arg;
    enum api_channel_state s = api_channel_state(b->ch);
    return s == API_CHANNEL_READY || s == API_CHANNEL_TRANSIENT_FAILURE;
}

int api_blocking_connect(const struct api_channel_config *cfg,
                         uint64_t timeout_ms,
                         struct api_blocking **out,
                         char *err,
                         size_t err_cap)
{
    LATCH_ASSERT(cfg->state_cb == NULL);
    *out = NULL;
    struct api_blocking *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return LATCH_ENOMEM;
    }
    if (uv_loop_init(&b->loop) != 0) {
        free(b);
        return LATCH_ENOMEM;
    }
    int rc = api_channel_new(&b->loop, cfg, &b->ch);
    if (rc != 0) {
        uv_loop_close(&b->loop);
        free(b);
        return rc;
    }
    blocking_wait(b, timeout_ms, blocking_settled, b);
    if (api_channel_state(b->ch) != API_CHANNEL_READY) {
        if (err != NULL && err_cap > 0) {
            const char *why = api_channel_last_error(b->ch);
            snprintf(err, err_cap, "%s", why[0] != '\0' ? why : "connect timed out");
        }
        api_blocking_free(b);
        return LATCH_EUNAVAILABLE;
    }
    *out = b;
    return 0;
}

static void blocking_closed_cb(struct api_channel *ch, void *data)
{
    (void)ch;
    struct api_blocking *b = data;
    b->ch = NULL;
}

void api_blocking_free(struct api_blocking *b)
{
    if (b == NULL) {
        return;
    }
    api_channel_close(b->ch, blocking_closed_cb, b);
    uv_run(&b->loop, UV_RUN_DEFAULT); /* until every handle of the channel has closed */
    LATCH_ASSERT(b->ch == NULL);
    int rv = uv_loop_close(&b->loop);
    LATCH_ASSERTF(rv == 0, "handles left on the private loop: %s", uv_strerror(rv));
    free(b);
}

struct api_channel *api_blocking_channel(struct api_blocking *b)
{
    return b->ch;
}

struct blocking_unary {
    bool done;
    int status;
    char *message;
    uint8_t *resp;
    size_t resp_len;
    bool oom;
};

static void blocking_unary_cb(
    int grpc_status, const char *message, const uint8_t *resp, size_t resp_len, void *data)
{
    struct blocking_unary *u = data;
    u->done = true;
    u->status = grpc_status;
    u->message = dup_str(message);
    if (resp_len > 0) {
        u->resp = malloc(resp_len);
        if (u->resp != NULL) {
            memcpy(u->resp, resp, resp_len);
            u->resp_len = resp_len;
        }
    }
    u->oom = u->message == NULL || (resp_len > 0 && u->resp == NULL);
}

static bool blocking_unary_done(void *arg)
{
    return ((struct blocking_unary *)arg)->done;
}

int api_blocking_unary(struct api_blocking *b,
                       const char *path,
                       const uint8_t *req,
                       size_t len,
                       const struct api_call_opts *opts,
                       int *grpc_status,
                       char **message,
                       uint8_t **resp,
                       size_t *resp_len)
{
    struct blocking_unary u = {0};
    int rc = api_channel_unary(b->ch, path, req, len, opts, blocking_unary_cb, &u);
    if (rc != 0) {
        return rc;
    }
    blocking_wait(b, 0, blocking_unary_done, &u); /* the call's own deadline bounds it */
    if (u.oom) {
        u.status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    *grpc_status = u.status;
    if (message != NULL) {
        *message = u.message;
    } else {
        free(u.message);
    }
    if (resp != NULL) {
        *resp = u.resp;
        *resp_len = u.resp_len;
    } else {
        free(u.resp);
    }
    return 0;
}

struct blocking_msg {
    struct blocking_msg *next;
    size_t len;
    uint8_t bytes[];
};

struct api_blocking_stream {
    struct api_blocking *b;
    struct api_ccall *call; /* NULL once done */
    struct blocking_msg *head, *tail;
    size_t buffered;
    bool done;
    int status;
    char *message; /* owned */
};

static void bstream_on_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    struct api_blocking_stream *s = data;
    struct blocking_msg *m = malloc(sizeof(*m) + len);
    if (m == NULL) {
        api_ccall_cancel(call);
        return;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->bytes, msg, len);
    if (s->tail != NULL) {
        s->tail->next = m;
    } else {
        s->head = m;
    }
    s->tail = m;
    s->buffered += len + API_GRPC_FRAME_HEADER_SIZE;
    if (s->buffered > API_BLOCKING_STREAM_BUFFER) {
        api_ccall_pause_recv(call);
    }
}

static void bstream_on_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct api_blocking_stream *s = data;
    s->done = true;
    s->call = NULL;
    s->status = status;
    s->message = dup_str(message);
}

int api_blocking_stream_start(struct api_blocking *b,
                              const char *path,
                              const uint8_t *req,
                              size_t len,
                              const struct api_call_opts *opts,
                              struct api_blocking_stream **out)
{
    static const struct api_ccall_callbacks cbs = {
        .on_message = bstream_on_message,
        .on_done = bstream_on_done,
    };
    *out = NULL;
    struct api_blocking_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    s->b = b;
    int rc = api_ccall_start(b->ch, path, opts, &cbs, s, &s->call);
    if (rc != 0) {
        free(s);
        return rc;
    }
    rc = api_ccall_send(s->call, req, len, NULL);
    if (rc == 0) {
        rc = api_ccall_close_send(s->call);
    }
    if (rc != 0) {
        api_ccall_cancel(s->call);
        api_blocking_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static bool bstream_ready(void *arg)
{
    struct api_blocking_stream *s = arg;
    return s->head != NULL || s->done;
}

int api_blocking_stream_next(struct api_blocking_stream *s,
                             uint64_t timeout_ms,
                             uint8_t **msg,
                             size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (!blocking_wait(s->b, timeout_ms, bstream_ready, s)) {
        return API_BLOCKING_TIMEOUT;
    }
    struct blocking_msg *m = s->head;
    if (m == NULL) {
        return API_BLOCKING_END;
    }
    s->head = m->next;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    s->buffered -= m->len + API_GRPC_FRAME_HEADER_SIZE;
    if (s->call != NULL && s->buffered <= API_BLOCKING_STREAM_BUFFER / 2) {
        api_ccall_resume_recv(s->call);
    }
    /* Hand the bytes over in a buffer of their own (the caller frees it with free()). */
    uint8_t *bytes = malloc(m->len > 0 ? m->len : 1);
    if (bytes == NULL) {
        free(m);
        return LATCH_ENOMEM;
    }
    memcpy(bytes, m->bytes, m->len);
    *msg = bytes;
    *len = m->len;
    free(m);
    return API_BLOCKING_MESSAGE;
}

int api_blocking_stream_status(const struct api_blocking_stream *s, const char **message)
{
    if (message != NULL) {
        *message = s->message;
    }
    return s->status;
}

static bool bstream_done(void *arg)
{
    return ((struct api_blocking_stream *)arg)->done;
}

void api_blocking_stream_free(struct api_blocking_stream *s)
{
    if (s == NULL) {
        return;
    }
    if (s->call != NULL) {
        api_ccall_cancel(s->call);
    }
    blocking_wait(s->b, 0, bstream_done, s);
    while (s->head != NULL) {
        struct blocking_msg *m = s->head;
        s->head = m->next;
        free(m);
    }
    free(s->message);
    free(s);
}
