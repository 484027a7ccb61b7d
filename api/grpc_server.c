/*
 * grpc_server.c — the gRPC server on libuv + nghttp2 (see grpc_server.h).
 *
 * Ownership and lifetimes:
 *  - struct api_server owns the listeners, the method table and the list of connections; it
 *    is freed once every listener and every connection have reported their close callbacks.
 *  - struct api_conn embeds its transport (grpc_transport.h: socket, TLS, the nghttp2
 *    session, one write per flush, the output cap); it is freed from the transport's closed
 *    callback. When the transport starts closing, for any reason, every call of the
 *    connection is detached (dead).
 *  - struct api_call is reference counted: one reference belongs to the nghttp2 stream
 *    (dropped in on_stream_close, or when the connection goes away, since
 *    nghttp2_session_del runs no callbacks), one to the handler from dispatch until it
 *    answers. A call whose stream is gone is "dead" (call->conn == NULL): answering it sends
 *    nothing and just drops the handler's reference. The response buffer lives in the call,
 *    so it stays valid for the data provider until the stream closes.
 *  - A call with a grpc-timeout arms call->deadline at dispatch; the armed timer holds a
 *    reference of its own, dropped in its close callback. The timer is closed when the call is
 *    answered, expires or its stream goes away, so no timer outlives its reason to exist.
 *  - A call the server ends on the handler's behalf (deadline, bad request message) is
 *    "aborted": it is answered on the wire at once, counts as dead, and the handler's own
 *    answer later only frees it.
 *  - The request message buffer (call->in_buf) is allocated only once the 5-byte prefix has
 *    declared a length within max_recv_msg_size, and only that many bytes, so idle or slow
 *    streams do not each pin the whole limit.
 *  - Unary responses are submitted only when the handler answers (rather than submitting
 *    headers early and returning NGHTTP2_ERR_DEFERRED from the provider): that keeps every
 *    error a trailers-only response even when it is decided late.
 *  - A streaming response queues framed messages in call->q; HEADERS go out with the first
 *    send (or finish) with stream_read_cb as the one data provider, which defers while the queue
 *    is empty and ends with trailers after api_call_finish.
 *  - A call's tick (a 0 ms uv_timer holding a call reference, opened for streaming responses
 *    and for api_call_on_cancel, closed when the call is answered) batches flushes and runs
 *    the writable and cancel callbacks from the loop, also when the call dies, so a paused
 *    producer always gets to finish (and free) its call.
 *  - Client-streaming and bidirectional calls start when their request headers arrive; each
 *    complete request message goes to the handler from the read path and its buffer is freed
 *    right after, so a stream holds at most one partial message.
 *  - Request metadata (non-pseudo headers) is kept per call as "name\0value\0" pairs, within
 *    max_header_list_size.
 *  - Graceful shutdown keeps s->closing (free when the last handle closed) and adds a drain
 *    timer, itself a counted handle, closed when the last connection closes or when it fires.
 *  - nghttp2 must not be re-entered from its own callbacks, so flushes requested while
 *    nghttp2_session_mem_recv runs are skipped; the read callback flushes afterwards.
 */
#define _POSIX_C_SOURCE 200809L

#include "grpc_server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "grpc_tls.h"
#include "grpc_transport.h"
#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"

/* Encoded grpc-message cap: C-core clients allow 8 KiB for a whole header list. */
#define API_GRPC_MESSAGE_ENCODED_MAX 2048

#define API_SERVER_INITIAL_WINDOW_SIZE (1 << 20)
#define API_SERVER_CONN_WINDOW_SIZE    (16 << 20)

/* RFC 9113 §6.5.2: each header field counts its name, its value and 32 bytes. */
/* Small request and unary response messages live inside the call: no allocation for them. */
#define API_CALL_INLINE           64
#define API_HEADER_FIELD_OVERHEAD 32

enum api_method_kind {
    API_METHOD_UNARY,
    API_METHOD_SERVER_STREAM,
    API_METHOD_CLIENT_STREAM,
    API_METHOD_BIDI_STREAM,
};

struct api_method {
    struct api_method *next;
    enum api_method_kind kind;
    size_t path_len;
    api_unary_fn handler;             /* unary and server-streaming */
    struct api_stream_handler stream; /* client-streaming and bidirectional */
    void *data;                       /* borrowed from the registrant */
    char path[API_SERVER_PATH_MAX + 1];
};

struct api_listener {
    struct api_listener *next;
    struct api_server *server;
    struct api_tls_ctx *tls; /* borrowed; NULL for h2c */
    uv_tcp_t tcp;
};

struct api_conn {
    struct api_transport t;       /* first: the transport's callbacks get back to the conn */
    struct api_conn *prev, *next; /* in server->conns */
    struct api_server *server;
    struct api_call *calls; /* streams with a call object, linked through call->prev/next */
    bool goaway_final;      /* final GOAWAY submitted during a drain; close after writes */
};

struct api_server {
    uv_loop_t *loop;
    struct api_listener *listeners;
    size_t max_recv_msg_size;
    size_t max_send_msg_size;
    size_t max_connections;
    size_t max_conn_output_bytes;
    size_t max_stream_queue_bytes;
    uint32_t max_concurrent_streams;
    size_t max_header_list_size;
    struct api_method *methods;
    struct api_conn *conns;
    size_t nconns;       /* connections in s->conns not yet closing, for max_connections */
    size_t handles_open; /* listeners, connections, rejects, drain timer not yet closed */
    struct latch_log_limit reject_log; /* the over-limit log line, once a second */
    uv_timer_t drain_timer;            /* initialised only while draining */
    bool drain_timer_open;
    bool closing;
    bool draining;
    api_server_close_cb done_cb;
    api_call_observer_fn observer; /* may be NULL */
    void *observer_data;
    struct api_transport_buf io; /* read buffers shared by every connection */
};

struct api_call {
    struct api_call *prev, *next;    /* in conn->calls while the stream lives */
    struct api_conn *conn;           /* NULL once dead */
    const struct api_method *method; /* found when the headers arrived; NULL if unknown */
    int32_t stream_id;
    int refs;
    bool headers_done; /* the request headers were processed */
    bool dispatched;   /* the handler owns the call (or the server answered it) */
    bool answered;
    bool has_timeout;
    bool have_msg;
    bool aborted;      /* the server answered on the handler's behalf; its answer is moot */
    bool timer_armed;  /* deadline started and not yet closing */
    bool method_post;  /* :method was POST */
    bool grpc_ctype;   /* content-type was application/grpc[+...|;...] */
    bool req_stream;   /* client-streaming or bidirectional: messages go to the handler */
    bool recv_paused;  /* api_call_pause_recv: stream window bytes are held in unconsumed */
    size_t unconsumed; /* request bytes not yet returned to the stream's window */
    uint64_t timeout_ms;
    uint64_t start_ns;   /* uv_hrtime() when the handler took the call */
    uv_timer_t deadline; /* initialised only when armed; holds a call reference until closed */
    char path[API_SERVER_PATH_MAX + 1];
    bool path_too_long;
    size_t header_bytes; /* request header list size so far, as RFC 9113 counts it */
    char *md;            /* owned; metadata as "name\0value\0" pairs */
    size_t md_len, md_cap;
    void *context; /* the handler's */
    uint8_t prefix[API_GRPC_FRAME_HEADER_SIZE];
    size_t prefix_len; /* prefix bytes collected so far */
    size_t body_len;   /* declared message length, once prefix_len == 5 */
    size_t body_have;  /* message bytes copied into in_buf so far */
    uint8_t *in_buf;   /* inline_in, or owned: body_len bytes, allocated once the prefix is known */
    const uint8_t *msg;
    size_t msg_len;
    int err_status; /* 0 or the grpc-status decided while reading */
    char err_msg[API_GRPC_TOO_LARGE_MESSAGE_MAX];
    uint8_t *out; /* inline_out or owned; prefix + unary response */
    size_t out_len;
    size_t out_off;
    struct api_grpc_queue q; /* streaming responses: framed messages not yet taken by nghttp2 */
    bool streaming;
    bool headers_sent;  /* response submitted with stream_read_cb as its data provider */
    bool deferred;      /* stream_read_cb returned NGHTTP2_ERR_DEFERRED; resume on more */
    bool finished;      /* api_call_finish ran (or an abort did): trailers follow the queue */
    bool tick_open;     /* tick initialised and not yet closing; holds a call reference */
    bool flush_wanted;  /* a send queued bytes; the tick flushes them (batching many sends) */
    bool want_writable; /* on_writable registered and not yet run */
    bool want_cancel;   /* on_cancel registered and not yet run */
    size_t queue_cap;   /* max_stream_queue_bytes: above it api_call_send reports would_block */
    int fin_status;
    char *fin_msg;   /* owned; percent-encoded grpc-message for the trailers, or NULL */
    uv_timer_t tick; /* 0 ms timer: flushes sends, runs the writable/cancel callbacks */
    void (*writable_cb)(struct api_call *call, void *data);
    void *writable_data;
    void (*cancel_cb)(struct api_call *call, void *data);
    void *cancel_data;
    uint8_t inline_in[API_CALL_INLINE];
    uint8_t inline_out[API_GRPC_FRAME_HEADER_SIZE + API_CALL_INLINE];
};

/* A connection over max_connections: accepted only to be closed; freed in its close cb. */
struct api_reject {
    uv_tcp_t tcp;
    struct api_server *server;
};

static void conn_flush(struct api_conn *c);
static void conn_close(struct api_conn *c);
static void server_drain_stop(struct api_server *s);
static void call_abort(struct api_call *call, int grpc_status, const char *message);

/* ---- calls ---------------------------------------------------------------------------- */

static void call_free_in(struct api_call *call)
{
    if (call->in_buf != call->inline_in) {
        free(call->in_buf);
    }
    call->in_buf = NULL;
}

static void call_unref(struct api_call *call)
{
    LATCH_ASSERT(call->refs > 0);
    if (--call->refs > 0) {
        return;
    }
    LATCH_ASSERT(call->conn == NULL);
    call_free_in(call);
    if (call->out != call->inline_out) {
        free(call->out);
    }
    api_grpc_queue_free(&call->q);
    free(call->fin_msg);
    free(call->md);
    free(call);
}

static void call_deadline_close_cb(uv_handle_t *h)
{
    call_unref(h->data); /* the timer's reference */
}

/* Closes the deadline timer if armed; its reference is dropped in the close callback. */
static void call_stop_deadline(struct api_call *call)
{
    if (!call->timer_armed) {
        return;
    }
    call->timer_armed = false;
    uv_close((uv_handle_t *)&call->deadline, call_deadline_close_cb);
}

static size_t call_queued(const struct api_call *call)
{
    return api_grpc_queue_bytes(&call->q);
}

bool api_call_is_alive(const struct api_call *call)
{
    return call->conn != NULL && !call->conn->t.closing && !call->aborted;
}

static bool call_writable_due(const struct api_call *call)
{
    return call->want_writable &&
           (!api_call_is_alive(call) || call_queued(call) < call->queue_cap / 2);
}

static bool call_cancel_due(const struct api_call *call)
{
    return call->want_cancel && !api_call_is_alive(call);
}

/*
 * The tick of a call: flushes what sends queued (once per loop iteration rather than once per
 * message) and runs the writable and cancel callbacks when they are due. Running them from a
 * timer keeps handler code out of nghttp2's callbacks and out of the handler's own calls.
 */
static void call_tick_cb(uv_timer_t *t)
{
    struct api_call *call = t->data;
    call->refs++; /* the callbacks may answer the call, which closes the tick */
    if (call->flush_wanted) {
        call->flush_wanted = false;
        if (call->conn != NULL) {
            conn_flush(call->conn);
        }
    }
    if (call_cancel_due(call)) {
        call->want_cancel = false;
        call->cancel_cb(call, call->cancel_data);
    }
    if (call_writable_due(call)) {
        call->want_writable = false;
        call->writable_cb(call, call->writable_data);
    }
    call_unref(call);
}

/* Runs the tick on the next loop iteration (nothing once it is closing). */
static void call_kick(struct api_call *call)
{
    if (call->tick_open) {
        uv_timer_start(&call->tick, call_tick_cb, 0, 0);
    }
}

/* Schedules the tick when a waiting callback is due: the producer may go on, or the handler
 * must learn that the call died (otherwise it would wait forever and never answer it). */
static void call_wake(struct api_call *call)
{
    if (call_writable_due(call) || call_cancel_due(call)) {
        call_kick(call);
    }
}

static void call_tick_close_cb(uv_handle_t *h)
{
    call_unref(h->data); /* the tick's reference */
}

/* Opens the tick (once). Returns 0 or LATCH_ENOMEM. */
static int call_tick_open(struct api_call *call, uv_loop_t *loop)
{
    if (call->tick_open) {
        return 0;
    }
    if (uv_timer_init(loop, &call->tick) != 0) {
        return LATCH_ENOMEM;
    }
    call->tick.data = call;
    call->tick_open = true;
    call->refs++; /* the tick's, dropped in call_tick_close_cb */
    return 0;
}

/* Closes the tick once the call is answered; its reference is dropped in the close callback. */
static void call_stop_tick(struct api_call *call)
{
    if (!call->tick_open) {
        return;
    }
    call->tick_open = false;
    call->want_writable = false;
    call->want_cancel = false;
    uv_close((uv_handle_t *)&call->tick, call_tick_close_cb);
}

/* Unlinks call from its connection (the stream is gone) and drops the stream's reference. */
static void call_detach(struct api_call *call)
{
    struct api_conn *c = call->conn;
    LATCH_ASSERT(c != NULL);
    call_stop_deadline(call); /* nobody is left to tell that the deadline passed */
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        c->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
    call->conn = NULL;
    call->stream_id = 0;
    call_wake(call); /* a waiting handler must hear that the call died */
    call_unref(call);
}

const char *api_call_path(const struct api_call *call)
{
    return call->path;
}

bool api_call_timeout_ms(const struct api_call *call, uint64_t *ms_out)
{
    if (call->has_timeout && ms_out != NULL) {
        *ms_out = call->timeout_ms;
    }
    return call->has_timeout;
}

void api_call_set_context(struct api_call *call, void *ctx)
{
    call->context = ctx;
}

void *api_call_context(const struct api_call *call)
{
    return call->context;
}

const char *api_call_metadata(const struct api_call *call, const char *name)
{
    size_t off = 0;
    while (off < call->md_len) {
        const char *n = call->md + off;
        const char *v = n + strlen(n) + 1;
        if (strcmp(n, name) == 0) {
            return v;
        }
        off = (size_t)(v - call->md) + strlen(v) + 1;
    }
    return NULL;
}

void api_call_on_cancel(struct api_call *call,
                        void (*cb)(struct api_call *call, void *data),
                        void *data)
{
    LATCH_ASSERT(call->dispatched && !call->answered && cb != NULL);
    if (!call->tick_open) {
        if (call->conn == NULL || call_tick_open(call, call->conn->server->loop) != 0) {
            /* No tick: dead already (the handler answers on its own) or out of memory. */
            return;
        }
    }
    call->cancel_cb = cb;
    call->cancel_data = data;
    call->want_cancel = true;
    call_wake(call); /* already dead: run on the next iteration */
}

size_t api_call_queued_bytes(const struct api_call *call)
{
    return call->streaming ? call_queued(call) : 0;
}

void api_call_pause_recv(struct api_call *call)
{
    call->recv_paused = true;
}

void api_call_resume_recv(struct api_call *call)
{
    call->recv_paused = false;
    if (call->unconsumed == 0 || !api_call_is_alive(call)) {
        return;
    }
    nghttp2_session_consume_stream(call->conn->t.session, call->stream_id, call->unconsumed);
    call->unconsumed = 0;
    conn_flush(call->conn); /* the WINDOW_UPDATE */
}

static void call_finish_answer(struct api_call *call)
{
    struct api_conn *c = call->conn;
    call_unref(call); /* the handler's reference; the stream's keeps call alive if needed */
    if (c != NULL) {
        conn_flush(c);
    }
}

/*
 * Submits a headers-only error response on call's live stream: :status http_status ("200" for
 * a gRPC trailers-only answer), content-type, grpc-status and grpc-message (NULL for none).
 * Leaves every reference alone. Returns 0, or LATCH_ENOMEM after resetting the stream.
 */
static int call_submit_error(struct api_call *call,
                             const char *http_status,
                             int grpc_status,
                             const char *message)
{
    char status[12];
    char encoded[API_GRPC_MESSAGE_ENCODED_MAX];
    snprintf(status, sizeof(status), "%d", grpc_status);
    encoded[0] = '\0';
    if (message != NULL) {
        api_grpc_message_encode(message, encoded, sizeof(encoded));
    }
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)http_status, 7, strlen(http_status),
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)status, 11, strlen(status), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)encoded, 12, strlen(encoded), NGHTTP2_NV_FLAG_NONE},
    };
    size_t n = message != NULL ? 4 : 3;
    int rc = 0;
    int rv = nghttp2_submit_response(call->conn->t.session, call->stream_id, nva, n, NULL);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit error response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(call->conn->t.session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        rc = LATCH_ENOMEM;
    }
    return rc;
}

/* Marks call answered by its handler with grpc_status: the deadline and the tick stop, the
 * observer hears of it. Returns false (and frees the handler's reference) when the call is
 * dead and nothing is to be sent. */
static bool call_begin_answer(struct api_call *call, int grpc_status)
{
    LATCH_ASSERT(!call->answered);
    call->answered = true;
    const struct api_server *s = call->conn != NULL ? call->conn->server : NULL;
    if (s != NULL && s->observer != NULL && call->method != NULL) {
        s->observer(s->observer_data, call->method->path, grpc_status,
                    uv_hrtime() - call->start_ns);
    }
    call_stop_deadline(call);
    call_stop_tick(call); /* call_finish_answer flushes what the tick would have */
    if (!api_call_is_alive(call)) {
        call_unref(call);
        return false;
    }
    return true;
}

int api_call_fail(struct api_call *call, int grpc_status, const char *message)
{
    LATCH_ASSERTF(grpc_status > 0 && grpc_status < API_GRPC_STATUS_COUNT, "grpc_status=%d",
                  grpc_status);
    if (call->streaming) {
        return api_call_finish(call, grpc_status, message);
    }
    if (!call_begin_answer(call, grpc_status)) {
        return LATCH_ESTATE;
    }
    int rc = call_submit_error(call, "200", grpc_status, message);
    call_finish_answer(call);
    return rc;
}

/* The deadline passed before the handler answered: the client has given up (or is about to). */
static void call_deadline_cb(uv_timer_t *t)
{
    struct api_call *call = t->data;
    call_stop_deadline(call);
    call_abort(call, API_GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* Starts call's deadline from its grpc-timeout (if any); timer failure only loses enforcement. */
static void call_arm_deadline(struct api_call *call)
{
    if (!call->has_timeout) {
        return;
    }
    if (uv_timer_init(call->conn->server->loop, &call->deadline) != 0) {
        return;
    }
    call->deadline.data = call;
    call->timer_armed = true;
    call->refs++; /* the timer's, dropped in call_deadline_close_cb */
    uv_timer_start(&call->deadline, call_deadline_cb, call->timeout_ms, 0);
}

/* ---- streaming responses -------------------------------------------------------------- */

/* Records the trailers stream_read_cb sends after the queue: grpc-status and, when non-OK,
 * the percent-encoded message (dropped if it cannot be allocated: the status matters most). */
static void call_set_trailers(struct api_call *call, int grpc_status, const char *message)
{
    call->fin_status = grpc_status;
    call->finished = true;
    if (grpc_status != 0 && message != NULL && call->fin_msg == NULL) {
        call->fin_msg = malloc(API_GRPC_MESSAGE_ENCODED_MAX);
        if (call->fin_msg != NULL) {
            api_grpc_message_encode(message, call->fin_msg, API_GRPC_MESSAGE_ENCODED_MAX);
        }
    }
}

static int call_submit_stream_trailers(nghttp2_session *session, struct api_call *call)
{
    char status[12];
    snprintf(status, sizeof(status), "%d", call->fin_status);
    const char *msg = call->fin_msg != NULL ? call->fin_msg : "";
    nghttp2_nv trailers[] = {
        {(uint8_t *)"grpc-status", (uint8_t *)status, 11, strlen(status), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
    };
    int rv =
        nghttp2_submit_trailer(session, call->stream_id, trailers, call->fin_msg != NULL ? 2 : 1);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit trailer on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
    }
    return rv;
}

/*
 * The data provider of a streaming response: hands nghttp2 what is queued, defers while the
 * queue is empty and the call not finished (api_call_send/finish resume it), and ends with
 * trailers once finished and drained.
 */
static ssize_t stream_read_cb(nghttp2_session *session,
                              int32_t stream_id,
                              uint8_t *buf,
                              size_t length,
                              uint32_t *data_flags,
                              nghttp2_data_source *source,
                              void *user_data)
{
    (void)stream_id;
    (void)user_data;
    struct api_call *call = source->ptr;
    size_t n = api_grpc_queue_take(&call->q, buf, length);
    call_wake(call);
    if (call_queued(call) > 0 || (!call->finished && n > 0)) {
        return (ssize_t)n;
    }
    if (!call->finished) {
        call->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (call_submit_stream_trailers(session, call) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Submits HEADERS with stream_read_cb the first time, or wakes a deferred provider. Returns 0,
 * or LATCH_ENOMEM after resetting the stream. */
static int call_stream_submit(struct api_call *call)
{
    nghttp2_session *session = call->conn->t.session;
    if (call->headers_sent) {
        if (call->deferred) {
            call->deferred = false;
            nghttp2_session_resume_data(session, call->stream_id);
        }
        return 0;
    }
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = call;
    prd.read_callback = stream_read_cb;
    int rv = nghttp2_submit_response(session, call->stream_id, nva, 2, &prd);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        return LATCH_ENOMEM;
    }
    call->headers_sent = true;
    return 0;
}

/*
 * Ends a live, unanswered call on the handler's behalf (deadline passed, bad request message):
 * what a streaming response has queued is dropped (the client stopped waiting for it), the
 * client gets grpc_status, and the call becomes dead; the handler keeps its reference until it
 * answers, and hears of it through its writable or cancel callback.
 */
static void call_abort(struct api_call *call, int grpc_status, const char *message)
{
    if (call->answered || !api_call_is_alive(call)) {
        return;
    }
    struct api_conn *c = call->conn;
    call->aborted = true;
    call_stop_deadline(call);
    if (call->headers_sent) {
        api_grpc_queue_clear(&call->q);
        call_set_trailers(call, grpc_status, message);
        call_stream_submit(call);
    } else {
        call_submit_error(call, "200", grpc_status, message);
    }
    call_wake(call);
    conn_flush(c);
}

int api_call_send(struct api_call *call, const uint8_t *msg, size_t len, bool *would_block)
{
    LATCH_ASSERT(call->streaming && !call->answered);
    if (would_block != NULL) {
        *would_block = false;
    }
    if (!api_call_is_alive(call)) {
        return LATCH_ESTATE;
    }
    if (len > call->conn->server->max_send_msg_size) {
        return LATCH_ETOOBIG;
    }
    int rc = api_grpc_queue_push(&call->q, msg, len);
    if (rc != 0) {
        return rc;
    }
    if (call_stream_submit(call) != 0) {
        return LATCH_ENOMEM;
    }
    if (!call->flush_wanted) {
        call->flush_wanted = true;
        call_kick(call);
    }
    if (would_block != NULL) {
        *would_block = call_queued(call) > call->queue_cap;
    }
    return 0;
}

void api_call_on_writable(struct api_call *call,
                          void (*cb)(struct api_call *call, void *data),
                          void *data)
{
    LATCH_ASSERT(call->streaming && !call->answered);
    call->writable_cb = cb;
    call->writable_data = data;
    call->want_writable = true;
    call_wake(call); /* already below half, or dead: run on the next iteration */
}

int api_call_finish(struct api_call *call, int grpc_status, const char *message)
{
    LATCH_ASSERT(call->streaming);
    LATCH_ASSERTF(grpc_status >= 0 && grpc_status < API_GRPC_STATUS_COUNT, "grpc_status=%d",
                  grpc_status);
    if (!call_begin_answer(call, grpc_status)) {
        return LATCH_ESTATE;
    }
    int rc;
    if (call->headers_sent) {
        call_set_trailers(call, grpc_status, message);
        rc = call_stream_submit(call);
    } else {
        rc = call_submit_error(call, "200", grpc_status, grpc_status != 0 ? message : NULL);
    }
    call_finish_answer(call);
    return rc;
}

/* ---- unary responses ------------------------------------------------------------------ */

static ssize_t data_read_cb(nghttp2_session *session,
                            int32_t stream_id,
                            uint8_t *buf,
                            size_t length,
                            uint32_t *data_flags,
                            nghttp2_data_source *source,
                            void *user_data)
{
    (void)user_data;
    struct api_call *call = source->ptr;
    size_t n = call->out_len - call->out_off;
    if (n > length) {
        n = length;
    }
    memcpy(buf, call->out + call->out_off, n);
    call->out_off += n;
    if (call->out_off == call->out_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        };
        int rv = nghttp2_submit_trailer(session, stream_id, trailers, 1);
        if (rv != 0) {
            latch_log(LATCH_LOG_WARN, "grpc: submit trailer on stream %d: %s", stream_id,
                      nghttp2_strerror(rv));
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

int api_call_reply(struct api_call *call, const uint8_t *resp, size_t len)
{
    LATCH_ASSERT(!call->answered && !call->streaming);
    size_t max = call->conn != NULL ? call->conn->server->max_send_msg_size : UINT32_MAX;
    if (len > max) {
        /* grpc-go's text for the same case (rpc_util.go, msgHeader). */
        char text[96];
        snprintf(text, sizeof(text), "grpc: trying to send message larger than max (%zu vs. %zu)",
                 len, max);
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, text);
        return LATCH_ETOOBIG;
    }
    if (!call_begin_answer(call, 0)) {
        return LATCH_ESTATE;
    }
    nghttp2_session *session = call->conn->t.session;
    int rc = 0;
    call->out =
        len <= API_CALL_INLINE ? call->inline_out : malloc(API_GRPC_FRAME_HEADER_SIZE + len);
    if (call->out == NULL) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        rc = LATCH_ENOMEM;
        goto out_finish;
    }
    api_grpc_frame_header(call->out, (uint32_t)len);
    if (len > 0) {
        memcpy(call->out + API_GRPC_FRAME_HEADER_SIZE, resp, len);
    }
    call->out_len = API_GRPC_FRAME_HEADER_SIZE + len;
    call->out_off = 0;
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = call;
    prd.read_callback = data_read_cb;
    int rv = nghttp2_submit_response(session, call->stream_id, nva, 2, &prd);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        rc = LATCH_ENOMEM;
    }
out_finish:
    call_finish_answer(call);
    return rc;
}

/* ---- requests ------------------------------------------------------------------------- */

/*
 * Answers a request that is not gRPC at all the way grpc-go does (http2_server.go
 * operateHeaders, "earlyAbortStream"): a content-type other than application/grpc[+…|;…] gets
 * HTTP 415 with grpc-status INVALID_ARGUMENT, then a :method other than POST gets HTTP 405
 * with grpc-status INTERNAL. The grpc-* headers are for gRPC clients that hit the wrong
 * server; plain HTTP clients see the status. Returns true when call was answered.
 */
static bool call_reject_non_grpc(struct api_call *call)
{
    if (!call->grpc_ctype) {
        call->answered = true;
        call_submit_error(call, "415", API_GRPC_STATUS_INVALID_ARGUMENT,
                          "invalid gRPC request content-type");
    } else if (!call->method_post) {
        call->answered = true;
        call_submit_error(call, "405", API_GRPC_STATUS_INTERNAL,
                          "grpc: request :method must be POST");
    } else {
        return false;
    }
    call_finish_answer(call);
    return true;
}

static const struct api_method *server_find_method(const struct api_server *s, const char *path)
{
    size_t len = strlen(path);
    for (const struct api_method *m = s->methods; m != NULL; m = m->next) {
        if (m->path_len == len && memcmp(m->path, path, len) == 0) {
            return m;
        }
    }
    return NULL;
}

/* The handler takes the call: its reference, and the deadline starts. */
static void call_take(struct api_call *call)
{
    call->dispatched = true;
    call->refs++; /* the handler's reference, given back by reply/fail/finish */
    call->start_ns = uv_hrtime();
}

/* Readies a call whose handler answers with api_call_send/finish. Returns 0 or LATCH_ENOMEM. */
static int call_stream_init(struct api_call *call)
{
    if (call_tick_open(call, call->conn->server->loop) != 0) {
        return LATCH_ENOMEM;
    }
    call->streaming = true;
    call->queue_cap = call->conn->server->max_stream_queue_bytes;
    return 0;
}

/*
 * The request headers are complete: answers at once what cannot be served (not gRPC, header
 * list too large, unknown method) and starts client-streaming and bidirectional calls. Unary
 * and server-streaming calls wait for END_STREAM (call_dispatch).
 */
static void call_headers_done(struct api_call *call)
{
    struct api_server *s = call->conn->server;
    call->headers_done = true;
    call->method = call->path_too_long ? NULL : server_find_method(s, call->path);
    bool early =
        !call->grpc_ctype || !call->method_post || call->err_status != 0 || call->method == NULL;
    if (!early && call->method->kind != API_METHOD_CLIENT_STREAM &&
        call->method->kind != API_METHOD_BIDI_STREAM) {
        return;
    }
    call_take(call);
    if (call->err_status != 0) {
        api_call_fail(call, call->err_status, call->err_msg);
        return;
    }
    if (call_reject_non_grpc(call)) {
        return;
    }
    if (call->method == NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    const struct api_method *m = call->method;
    call->req_stream = true;
    if (m->kind == API_METHOD_BIDI_STREAM && call_stream_init(call) != 0) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    call_arm_deadline(call);
    m->stream.start(m->data, call);
}

/* Runs on END_STREAM of a unary or server-streaming request: hands it to its handler, or
 * answers the error found while reading. */
static void call_dispatch(struct api_call *call)
{
    const struct api_method *m = call->method;
    LATCH_ASSERT(m != NULL && !call->req_stream);
    call_take(call);
    if (call->err_status != 0) {
        api_call_fail(call, call->err_status, call->err_msg);
        return;
    }
    if (!call->have_msg) {
        api_call_fail(call, API_GRPC_STATUS_INTERNAL, "grpc: unary request without a message");
        return;
    }
    if (m->kind == API_METHOD_SERVER_STREAM && call_stream_init(call) != 0) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    call_arm_deadline(call);
    m->handler(m->data, call, call->msg, call->msg_len);
}

/* Records an error found in the request: a streaming request's call is ended at once (its
 * handler already has it); otherwise the status is answered at END_STREAM. */
static void call_set_error(struct api_call *call, int grpc_status, const char *msg)
{
    if (call->req_stream && call->dispatched) {
        call_abort(call, grpc_status, msg);
        call->err_status = grpc_status; /* discard the rest of the stream */
        return;
    }
    call->err_status = grpc_status;
    snprintf(call->err_msg, sizeof(call->err_msg), "%s", msg);
}

/*
 * Collects the 5-byte prefix of a request message from data; once complete, validates the
 * flag and the declared length and allocates in_buf of exactly that length. Returns the bytes
 * used; on error call->err_status is set (or the stream reset).
 */
static size_t call_take_prefix(struct api_call *call, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE && used < len) {
        call->prefix[call->prefix_len++] = data[used++];
    }
    if (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
        return used;
    }
    size_t max = call->conn->server->max_recv_msg_size;
    uint32_t declared = 0;
    int rc = api_grpc_frame_prefix_check(call->prefix, max, &declared);
    call->body_len = declared;
    call->body_have = 0;
    if (rc == LATCH_EINVAL && call->prefix[0] == 1) {
        call_set_error(call, API_GRPC_STATUS_UNIMPLEMENTED,
                       "grpc: compressed message but no grpc-encoding is supported");
    } else if (rc == LATCH_EINVAL) {
        call_set_error(call, API_GRPC_STATUS_INTERNAL, "grpc: invalid message compression flag");
    } else if (rc == LATCH_ETOOBIG) {
        char text[API_GRPC_TOO_LARGE_MESSAGE_MAX];
        api_grpc_too_large_message(text, sizeof(text), call->body_len, max);
        call_set_error(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, text);
    } else if (call->body_len > 0) {
        call->in_buf = call->body_len <= API_CALL_INLINE ? call->inline_in : malloc(call->body_len);
        if (call->in_buf == NULL) {
            nghttp2_submit_rst_stream(call->conn->t.session, NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
            call->err_status = API_GRPC_STATUS_RESOURCE_EXHAUSTED; /* ignore the rest */
        }
    }
    return used;
}

/* A streaming request's message is complete: the handler gets it, then its buffer goes. */
static void call_deliver(struct api_call *call)
{
    static const uint8_t empty[1];
    const uint8_t *msg = call->in_buf != NULL ? call->in_buf : empty; /* never NULL */
    if (api_call_is_alive(call) && !call->answered) {
        const struct api_method *m = call->method;
        call->refs++; /* the handler may answer (and drop its reference) in the callback */
        m->stream.message(m->data, call, msg, call->body_len);
        call_unref(call);
    }
    call_free_in(call);
    call->prefix_len = 0;
    call->body_len = call->body_have = 0;
}

/* True when data for call is to be thrown away: answered early, failed, or done with. */
static bool call_discarding(const struct api_call *call)
{
    if (call->err_status != 0) {
        return true;
    }
    if (call->req_stream) {
        return call->answered || !api_call_is_alive(call);
    }
    return call->dispatched; /* a unary request answered early (not gRPC, unknown method) */
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
    struct api_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    /* Windows are returned by hand (NO_AUTO_WINDOW_UPDATE): the connection's at once, the
     * stream's unless its handler paused receiving. */
    nghttp2_session_consume_connection(session, len);
    if (call != NULL && call->recv_paused && !call_discarding(call)) {
        call->unconsumed += len;
    } else {
        nghttp2_session_consume_stream(session, stream_id, len);
    }
    if (call == NULL) {
        return 0;
    }
    while (len > 0 && !call_discarding(call)) {
        if (call->have_msg) {
            call_set_error(call, API_GRPC_STATUS_INTERNAL,
                           "grpc: unary request with more than one message");
            break;
        }
        if (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
            size_t used = call_take_prefix(call, data, len);
            data += used;
            len -= used;
            if (call->err_status != 0 || call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
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
        if (call->body_have < call->body_len) {
            break;
        }
        if (call->req_stream) {
            call_deliver(call);
        } else {
            static const uint8_t empty[1];
            call->have_msg = true;
            call->msg = call->in_buf != NULL ? call->in_buf : empty; /* never NULL */
            call->msg_len = call->body_len;
        }
    }
    return 0;
}

/* The client ended its side of the stream (END_STREAM). */
static void call_end_of_request(struct api_call *call)
{
    bool partial = call->prefix_len > 0 && !call->have_msg;
    if (!call->req_stream) {
        if (call->dispatched) {
            return; /* answered when the headers arrived */
        }
        if (partial && call->err_status == 0) {
            call_set_error(call, API_GRPC_STATUS_INTERNAL, "grpc: truncated request message");
        }
        call_dispatch(call);
        return;
    }
    if (call_discarding(call)) {
        return;
    }
    if (partial) {
        call_set_error(call, API_GRPC_STATUS_INTERNAL, "grpc: truncated request message");
        return;
    }
    const struct api_method *m = call->method;
    if (m->stream.half_close != NULL) {
        call->refs++;
        m->stream.half_close(m->data, call);
        call_unref(call);
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)user_data;
    if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    struct api_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (call == NULL || call->conn == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS && !call->headers_done) {
        call_headers_done(call);
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && call->conn != NULL) {
        call_end_of_request(call);
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct api_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    struct api_call *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    call->conn = c;
    call->stream_id = frame->hd.stream_id;
    call->refs = 1; /* the stream's */
    call->next = c->calls;
    if (c->calls != NULL) {
        c->calls->prev = call;
    }
    c->calls = call;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    return 0;
}

/* grpc-go's rule: "application/grpc" alone or followed by '+' (subtype) or ';' (params). */
static bool is_grpc_content_type(const uint8_t *v, size_t len)
{
    static const char base[] = "application/grpc";
    size_t n = sizeof(base) - 1;
    if (len < n || memcmp(v, base, n) != 0) {
        return false;
    }
    return len == n || v[n] == '+' || v[n] == ';';
}

/* Headers gRPC requests carry for the transport rather than the application (grpc-go
 * treats them as reserved): not kept as metadata, which saves an allocation per call. */
static bool is_transport_header(const uint8_t *name, size_t len)
{
    static const char *const names[] = {"te", "user-agent", "grpc-accept-encoding",
                                        "grpc-encoding"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Keeps a metadata header as "name\0value\0". Returns 0 or LATCH_ENOMEM. */
static int call_add_metadata(struct api_call *call,
                             const uint8_t *name,
                             size_t namelen,
                             const uint8_t *value,
                             size_t valuelen)
{
    size_t need = call->md_len + namelen + valuelen + 2;
    if (need > call->md_cap) {
        size_t ncap = call->md_cap == 0 ? 256 : call->md_cap;
        while (ncap < need) {
            ncap *= 2;
        }
        char *md = realloc(call->md, ncap);
        if (md == NULL) {
            return LATCH_ENOMEM;
        }
        call->md = md;
        call->md_cap = ncap;
    }
    memcpy(call->md + call->md_len, name, namelen);
    call->md[call->md_len + namelen] = '\0';
    memcpy(call->md + call->md_len + namelen + 1, value, valuelen);
    call->md[call->md_len + namelen + 1 + valuelen] = '\0';
    call->md_len = need;
    return 0;
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
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    struct api_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    /* Over the limit, metadata is no longer kept but the headers that decide the answer
     * (:path, :method, content-type) still are: the client gets RESOURCE_EXHAUSTED. */
    size_t max = call->conn->server->max_header_list_size;
    call->header_bytes += namelen + valuelen + API_HEADER_FIELD_OVERHEAD;
    if (call->header_bytes > max && call->err_status == 0) {
        char text[96];
        snprintf(text, sizeof(text), "grpc: header list larger than max (%zu bytes)", max);
        call_set_error(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, text);
    }
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        if (valuelen > API_SERVER_PATH_MAX) {
            call->path_too_long = true;
        } else {
            memcpy(call->path, value, valuelen);
            call->path[valuelen] = '\0';
        }
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        call->method_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        call->grpc_ctype = is_grpc_content_type(value, valuelen);
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        uint64_t ms;
        if (api_grpc_timeout_parse((const char *)value, valuelen, &ms) == 0) {
            call->has_timeout = true;
            call->timeout_ms = ms;
        }
    } else if (namelen > 0 && name[0] != ':' && call->err_status == 0 &&
               !is_transport_header(name, namelen) &&
               call_add_metadata(call, name, namelen, value, valuelen) != 0) {
        call_set_error(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    return 0;
}

/*
 * A response ended (END_STREAM sent) while the client is still sending its request: an answer
 * decided early (not gRPC, unknown method, headers too large) or a handler that answered
 * before the client half-closed. RFC 9113 §8.1: the server then sends RST_STREAM(NO_ERROR) so
 * the client stops sending; without it a client such as curl waits for the stream to end.
 */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)user_data;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 &&
        nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    (void)error_code;
    (void)user_data;
    struct api_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
    if (call != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        call_detach(call);
    }
    return 0;
}

/* ---- connections ---------------------------------------------------------------------- */

static void server_handle_closed(struct api_server *s)
{
    LATCH_ASSERT(s->handles_open > 0);
    if (--s->handles_open > 0 || !s->closing) {
        return;
    }
    while (s->methods != NULL) {
        struct api_method *m = s->methods;
        s->methods = m->next;
        free(m);
    }
    if (s->done_cb != NULL) {
        s->done_cb(s);
    }
    free(s);
}

static void conn_flush(struct api_conn *c)
{
    api_transport_flush(&c->t);
}

static void conn_close(struct api_conn *c)
{
    api_transport_close(&c->t);
}

/* The transport is closing: every live call becomes dead. */
static void conn_closing(struct api_transport *t)
{
    struct api_conn *c = (struct api_conn *)t;
    c->server->nconns--;
    while (c->calls != NULL) {
        call_detach(c->calls);
    }
}

static void conn_closed(struct api_transport *t)
{
    struct api_conn *c = (struct api_conn *)t;
    struct api_server *s = c->server;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c);
    if (s->draining && s->conns == NULL) {
        server_drain_stop(s); /* nothing left to wait for */
    }
    server_handle_closed(s);
}

/*
 * During a drain, once no stream is open, submits the final GOAWAY (NO_ERROR, last processed
 * stream id) so the peer knows nothing was lost, and closes once it is written. Returns true
 * when it did (the flush gathers it).
 */
static bool conn_after_gather(struct api_transport *t)
{
    struct api_conn *c = (struct api_conn *)t;
    if (!c->server->draining || c->goaway_final || c->calls != NULL) {
        return false;
    }
    c->goaway_final = true;
    c->t.close_after_flush = true;
    int32_t last = nghttp2_session_get_last_proc_stream_id(c->t.session);
    int rv =
        nghttp2_submit_goaway(c->t.session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit GOAWAY: %s", nghttp2_strerror(rv));
    }
    return true;
}

static const struct api_transport_ops conn_ops = {
    .after_gather = conn_after_gather,
    .closing = conn_closing,
    .closed = conn_closed,
};

static int conn_session_init(struct api_conn *c)
{
    struct api_server *s = c->server;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return LATCH_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, API_SERVER_INITIAL_WINDOW_SIZE},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)s->max_header_list_size},
    };
    int rc = api_transport_session_new(&c->t, cbs, true, iv, 3, API_SERVER_CONN_WINDOW_SIZE);
    nghttp2_session_callbacks_del(cbs);
    return rc;
}

static void reject_close_cb(uv_handle_t *h)
{
    struct api_reject *r = h->data;
    struct api_server *s = r->server;
    free(r);
    server_handle_closed(s);
}

/* Logs a refused connection at most once a second, with the count since the last line. */
static void server_log_reject(struct api_server *s)
{
    size_t n;
    if (latch_log_limit_hit(&s->reject_log, uv_now(s->loop), 1000, &n)) {
        latch_log(LATCH_LOG_WARN, "grpc: %zu connection(s) refused: limit of %zu reached", n,
                  s->max_connections);
    }
}

/*
 * Over max_connections: accepts and closes at once, so the peer sees a prompt EOF rather than
 * a backlog that never drains.
 */
static void server_reject(struct api_listener *l)
{
    struct api_server *s = l->server;
    server_log_reject(s);
    struct api_reject *r = calloc(1, sizeof(*r));
    if (r == NULL || uv_tcp_init(s->loop, &r->tcp) != 0) {
        free(r);
        return; /* the pending connection stays in the backlog */
    }
    r->server = s;
    r->tcp.data = r;
    s->handles_open++;
    uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, reject_close_cb);
}

/* Allocates a connection with its handle (TCP or pipe) initialised and counted. Returns NULL
 * when out of memory or the handle cannot be made. */
static struct api_conn *conn_new(struct api_server *s, bool is_tcp)
{
    struct api_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        latch_log(LATCH_LOG_WARN, "grpc: out of memory for a connection");
        return NULL;
    }
    c->server = s;
    if (api_transport_init(&c->t, s->loop, is_tcp, &conn_ops, c, &s->io,
                           s->max_conn_output_bytes) != 0) {
        free(c);
        return NULL;
    }
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->handles_open++;
    s->nconns++;
    return c;
}

/* Starts serving a connected c: the session, TLS when tls is set, then the server SETTINGS.
 * Closes c on failure. Returns 0 or LATCH_ENOMEM. */
static int conn_start(struct api_conn *c, struct api_tls_ctx *tls)
{
    struct api_tls *t = NULL;
    if (conn_session_init(c) != 0 || (tls != NULL && api_tls_new(tls, &t) != 0) ||
        api_transport_start(&c->t, t) != 0) {
        if (c->t.tls == NULL) {
            api_tls_free(t); /* not taken over by the transport */
        }
        conn_close(c);
        return LATCH_ENOMEM;
    }
    return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct api_listener *l = listener->data;
    struct api_server *s = l->server;
    if (status < 0) {
        latch_log(LATCH_LOG_WARN, "grpc: accept: %s", uv_strerror(status));
        return;
    }
    if (s->nconns >= s->max_connections) {
        server_reject(l);
        return;
    }
    struct api_conn *c = conn_new(s, true);
    if (c == NULL) {
        return; /* the pending connection stays in the backlog */
    }
    if (uv_accept(listener, &c->t.h.stream) != 0) {
        conn_close(c);
        return;
    }
    conn_start(c, l->tls);
}

int api_server_adopt(struct api_server *s, int fd, struct api_tls_ctx *tls)
{
    if (s->closing) {
        close(fd);
        return LATCH_ESTATE;
    }
    if (s->nconns >= s->max_connections) {
        server_log_reject(s);
        close(fd);
        return LATCH_ETOOBIG;
    }
    struct sockaddr_storage name;
    socklen_t namelen = sizeof(name);
    if (getsockname(fd, (struct sockaddr *)&name, &namelen) != 0) {
        close(fd);
        return LATCH_EINVAL;
    }
    bool is_tcp = name.ss_family == AF_INET || name.ss_family == AF_INET6;
    struct api_conn *c = conn_new(s, is_tcp);
    if (c == NULL) {
        close(fd);
        return LATCH_ENOMEM;
    }
    int rv = is_tcp ? uv_tcp_open(&c->t.h.tcp, fd) : uv_pipe_open(&c->t.h.pipe, fd);
    if (rv != 0) {
        close(fd);
        conn_close(c);
        return LATCH_EINVAL;
    }
    return conn_start(c, tls);
}

/* ---- server --------------------------------------------------------------------------- */

static void listener_close_cb(uv_handle_t *h)
{
    struct api_listener *l = h->data;
    struct api_server *s = l->server;
    free(l);
    server_handle_closed(s);
}

/* Stops every listener (the server is closing). */
static void server_close_listeners(struct api_server *s)
{
    while (s->listeners != NULL) {
        struct api_listener *l = s->listeners;
        s->listeners = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_close_cb);
    }
}

int api_server_new(uv_loop_t *loop, const struct api_server_config *cfg, struct api_server **out)
{
    struct api_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    struct api_server_config none = {0};
    if (cfg == NULL) {
        cfg = &none;
    }
    s->loop = loop;
#define API_CFG(field, dflt) (cfg->field != 0 ? cfg->field : (dflt))
    s->max_recv_msg_size = API_CFG(max_recv_msg_size, API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT);
    s->max_send_msg_size = API_CFG(max_send_msg_size, API_SERVER_MAX_SEND_MSG_SIZE_DEFAULT);
    s->max_connections = API_CFG(max_connections, API_SERVER_MAX_CONNECTIONS_DEFAULT);
    s->max_conn_output_bytes = API_CFG(max_conn_output_bytes, API_SERVER_MAX_CONN_OUTPUT_DEFAULT);
    s->max_stream_queue_bytes =
        API_CFG(max_stream_queue_bytes, API_SERVER_MAX_STREAM_QUEUE_DEFAULT);
    s->max_concurrent_streams =
        API_CFG(max_concurrent_streams, API_SERVER_MAX_CONCURRENT_STREAMS_DEFAULT);
    s->max_header_list_size = API_CFG(max_header_list_size, API_SERVER_MAX_HEADER_LIST_DEFAULT);
#undef API_CFG
    if (s->max_send_msg_size > UINT32_MAX) {
        s->max_send_msg_size = UINT32_MAX; /* what the 5-byte prefix can carry */
    }
    if (s->max_header_list_size > UINT32_MAX) {
        s->max_header_list_size = UINT32_MAX;
    }
    *out = s;
    return 0;
}

static int server_listen(
    struct api_server *s, const char *host, int port, struct api_tls_ctx *tls, int *bound_port)
{
    if (s->closing) {
        return LATCH_ESTATE;
    }
    if (port < 0 || port > 65535) {
        return LATCH_EINVAL;
    }
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        return LATCH_EINVAL;
    }
    struct api_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return LATCH_ENOMEM;
    }
    if (uv_tcp_init(s->loop, &l->tcp) != 0) {
        free(l);
        return LATCH_EINVAL;
    }
    l->server = s;
    l->tls = tls;
    l->tcp.data = l;
    l->next = s->listeners;
    s->listeners = l;
    s->handles_open++; /* from here l is closed with the server */
    int rv = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
    }
    if (rv != 0) {
        latch_log(LATCH_LOG_ERROR, "grpc: listen on %s:%d: %s", host, port, uv_strerror(rv));
        return rv == UV_EADDRINUSE ? LATCH_EEXIST : LATCH_EINVAL;
    }
    if (bound_port != NULL) {
        struct sockaddr_storage name;
        int namelen = (int)sizeof(name);
        rv = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&name, &namelen);
        if (rv != 0) {
            return LATCH_EINVAL;
        }
        if (name.ss_family == AF_INET6) {
            *bound_port = ntohs(((struct sockaddr_in6 *)&name)->sin6_port);
        } else {
            *bound_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
        }
    }
    return 0;
}

int api_server_listen(struct api_server *s, const char *host, int port, int *bound_port)
{
    return server_listen(s, host, port, NULL, bound_port);
}

int api_server_listen_tls(
    struct api_server *s, const char *host, int port, struct api_tls_ctx *tls, int *bound_port)
{
    if (tls == NULL) {
        return LATCH_EINVAL;
    }
    return server_listen(s, host, port, tls, bound_port);
}

static int server_add_method(struct api_server *s, const char *path, const struct api_method *proto)
{
    size_t len = strlen(path);
    if (len == 0 || len > API_SERVER_PATH_MAX) {
        return LATCH_EINVAL;
    }
    if (server_find_method(s, path) != NULL) {
        return LATCH_EEXIST;
    }
    struct api_method *m = malloc(sizeof(*m));
    if (m == NULL) {
        return LATCH_ENOMEM;
    }
    *m = *proto;
    memcpy(m->path, path, len + 1);
    m->path_len = len;
    m->next = s->methods;
    s->methods = m;
    return 0;
}

static int server_add_unary(struct api_server *s,
                            const char *path,
                            enum api_method_kind kind,
                            api_unary_fn handler,
                            void *data)
{
    if (handler == NULL) {
        return LATCH_EINVAL;
    }
    struct api_method m = {.kind = kind, .handler = handler, .data = data};
    return server_add_method(s, path, &m);
}

static int server_add_stream(struct api_server *s,
                             const char *path,
                             enum api_method_kind kind,
                             const struct api_stream_handler *handler,
                             void *data)
{
    if (handler == NULL || handler->start == NULL || handler->message == NULL) {
        return LATCH_EINVAL;
    }
    struct api_method m = {.kind = kind, .stream = *handler, .data = data};
    return server_add_method(s, path, &m);
}

int api_server_register_unary(struct api_server *s,
                              const char *path,
                              api_unary_fn handler,
                              void *data)
{
    return server_add_unary(s, path, API_METHOD_UNARY, handler, data);
}

int api_server_register_server_stream(struct api_server *s,
                                      const char *path,
                                      api_unary_fn handler,
                                      void *data)
{
    return server_add_unary(s, path, API_METHOD_SERVER_STREAM, handler, data);
}

int api_server_register_client_stream(struct api_server *s,
                                      const char *path,
                                      const struct api_stream_handler *handler,
                                      void *data)
{
    return server_add_stream(s, path, API_METHOD_CLIENT_STREAM, handler, data);
}

int api_server_register_bidi_stream(struct api_server *s,
                                    const char *path,
                                    const struct api_stream_handler *handler,
                                    void *data)
{
    return server_add_stream(s, path, API_METHOD_BIDI_STREAM, handler, data);
}

/* Counts the server itself as a handle until its close path has started every close. */
static void server_begin_close(struct api_server *s, api_server_close_cb done_cb)
{
    LATCH_ASSERT(!s->closing);
    s->closing = true;
    s->done_cb = done_cb;
    s->handles_open++; /* dropped by server_end_close, so an empty server is freed there */
}

static void server_end_close(struct api_server *s)
{
    server_close_listeners(s);
    server_handle_closed(s);
}

void api_server_set_observer(struct api_server *s, api_call_observer_fn fn, void *data)
{
    LATCH_ASSERT(s != NULL);
    s->observer = fn;
    s->observer_data = data;
}

void api_server_close(struct api_server *s, api_server_close_cb done_cb)
{
    server_begin_close(s, done_cb);
    for (struct api_conn *c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
    server_end_close(s);
}

static void drain_timer_close_cb(uv_handle_t *h)
{
    server_handle_closed(h->data);
}

/* Closes the drain timer (once); the server is freed when its close callback has run. */
static void server_drain_stop(struct api_server *s)
{
    if (!s->drain_timer_open) {
        return;
    }
    s->drain_timer_open = false;
    uv_close((uv_handle_t *)&s->drain_timer, drain_timer_close_cb);
}

/* drain_ms passed: whatever is still open closes now and its calls become dead. */
static void drain_timer_cb(uv_timer_t *t)
{
    struct api_server *s = t->data;
    latch_log(LATCH_LOG_INFO, "grpc: drain time over, closing %zu connection(s)", s->nconns);
    server_drain_stop(s);
    for (struct api_conn *c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
}

void api_server_shutdown(struct api_server *s, uint64_t drain_ms, api_server_close_cb done_cb)
{
    server_begin_close(s, done_cb);
    s->draining = true;
    if (s->conns != NULL && uv_timer_init(s->loop, &s->drain_timer) == 0) {
        s->drain_timer.data = s;
        s->drain_timer_open = true;
        s->handles_open++;
        uv_timer_start(&s->drain_timer, drain_timer_cb, drain_ms, 0);
    } else {
        for (struct api_conn *c = s->conns; c != NULL; c = c->next) {
            conn_close(c); /* no timer to bound the drain: close at once */
        }
    }
    for (struct api_conn *c = s->conns; c != NULL; c = c->next) {
        if (c->t.closing || c->t.close_pending) {
            continue;
        }
        /* GOAWAY with the largest stream id: the peer opens no new streams from here. */
        nghttp2_submit_shutdown_notice(c->t.session);
        conn_flush(c); /* idle connections also get their final GOAWAY here */
    }
    server_end_close(s);
}
