/*
 * grpc_server.c — unary and server-streaming gRPC over h2c on libuv + nghttp2 (see grpc_server.h).
 *
 * Ownership and lifetimes:
 *  - struct api_server owns the listener, the method table and the list of connections; it
 *    is freed once the listener and every connection have reported their close callbacks.
 *  - struct api_conn owns its nghttp2 session and is freed in its TCP close callback. Each
 *    pending uv_write owns its buffer and frees it in the write callback, which libuv runs
 *    (with UV_ECANCELED if need be) before the close callback.
 *  - struct api_call is reference counted: one reference belongs to the nghttp2 stream
 *    (dropped in on_stream_close, or when the connection goes away, since
 *    nghttp2_session_del runs no callbacks), one to the handler from dispatch until it
 *    answers. A call whose stream is gone is "dead" (call->conn == NULL): answering it sends
 *    nothing and just drops the handler's reference. The response buffer lives in the call,
 *    so it stays valid for the data provider until the stream closes.
 *  - A call with a grpc-timeout arms call->deadline at dispatch; the armed timer holds a
 *    reference of its own, dropped in its close callback. The timer is closed when the call is
 *    answered, expires or its stream goes away, so no timer outlives its reason to exist.
 *  - The request message buffer (call->in_buf) is allocated only once the 5-byte prefix has
 *    declared a length within max_recv_msg_size, and only that many bytes, so idle or slow
 *    streams do not each pin the whole limit.
 *  - Unary responses are submitted only when the handler answers (rather than submitting
 *    headers early and returning NGHTTP2_ERR_DEFERRED from the provider): that keeps every
 *    error a trailers-only response even when it is decided late.
 *  - A server-streaming call queues framed messages in call->out; HEADERS go out with the first
 *    send (or finish) with stream_read_cb as the one data provider, which defers while the queue
 *    is empty and ends with trailers after api_call_finish. Its tick (a 0 ms uv_timer holding a
 *    call reference, closed at finish) batches flushes and runs the writable callback, also
 *    when the call dies, so a paused producer always gets to finish (and free) its call.
 *  - Output is capped per connection: while out_bytes (queued in uv_write, not yet written)
 *    is at or above max_conn_output_bytes, conn_flush pulls nothing from nghttp2, which keeps
 *    the frames and, through flow control, stops the peer's requests; write_cb flushes again.
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

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"

/* Encoded grpc-message cap: C-core clients allow 8 KiB for a whole header list. */
#define API_GRPC_MESSAGE_ENCODED_MAX 2048

#define API_SERVER_MAX_CONCURRENT_STREAMS 100
#define API_SERVER_INITIAL_WINDOW_SIZE    (1 << 20)
#define API_SERVER_CONN_WINDOW_SIZE       (16 << 20)
#define API_SERVER_READ_BUF_SIZE          65536

struct api_method {
    struct api_method *next;
    api_unary_fn handler;
    void *data;  /* borrowed from the registrant */
    bool stream; /* server-streaming: answered by api_call_send/api_call_finish */
    char path[API_SERVER_PATH_MAX + 1];
};

struct api_conn {
    struct api_conn *prev, *next; /* in server->conns */
    struct api_server *server;
    uv_tcp_t tcp;
    nghttp2_session *session; /* owned; deleted in the close callback */
    struct api_call *calls;   /* streams with a call object, linked through call->prev/next */
    size_t writes_pending;
    size_t out_bytes;   /* bytes in pending uv_writes, for max_conn_output_bytes */
    bool out_blocked;   /* conn_flush stopped at the output cap; write_cb resumes it */
    bool goaway_final;  /* final GOAWAY submitted during a drain; close after writes */
    bool in_recv;       /* inside nghttp2_session_mem_recv: do not flush */
    bool close_pending; /* close once writes drain */
    bool closing;       /* uv_close issued */
    uint8_t rbuf[API_SERVER_READ_BUF_SIZE];
};

struct api_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    size_t max_recv_msg_size;
    size_t max_connections;
    size_t max_conn_output_bytes;
    size_t max_stream_queue_bytes;
    struct api_method *methods;
    struct api_conn *conns;
    size_t nconns;          /* connections in s->conns not yet closing, for max_connections */
    size_t handles_open;    /* listener, connections, rejects, drain timer not yet closed */
    uint64_t reject_log_ms; /* uv_now of the last over-limit log line */
    size_t rejected;        /* over-limit connections since that log line */
    uv_timer_t drain_timer; /* initialised only while draining */
    bool drain_timer_open;
    bool listening;
    bool closing;
    bool draining;
    api_server_close_cb done_cb;
};

struct api_call {
    struct api_call *prev, *next; /* in conn->calls while the stream lives */
    struct api_conn *conn;        /* NULL once dead */
    int32_t stream_id;
    int refs;
    bool dispatched;
    bool answered;
    bool has_timeout;
    bool have_msg;
    bool expired;     /* the server answered DEADLINE_EXCEEDED; the handler's answer is moot */
    bool timer_armed; /* deadline started and not yet closing */
    bool method_post; /* :method was POST */
    bool grpc_ctype;  /* content-type was application/grpc[+...|;...] */
    uint64_t timeout_ms;
    uv_timer_t deadline; /* initialised only when armed; holds a call reference until closed */
    char path[API_SERVER_PATH_MAX + 1];
    bool path_too_long;
    uint8_t prefix[API_GRPC_FRAME_HEADER_SIZE];
    size_t prefix_len; /* prefix bytes collected so far */
    size_t body_len;   /* declared message length, once prefix_len == 5 */
    size_t body_have;  /* message bytes copied into in_buf so far */
    uint8_t *in_buf;   /* owned; exactly body_len bytes, allocated once the prefix is known */
    const uint8_t *msg;
    size_t msg_len;
    int err_status; /* 0 or the grpc-status decided while reading */
    char err_msg[API_GRPC_TOO_LARGE_MESSAGE_MAX];
    uint8_t *out; /* owned; prefix + response message, or a stream's queue */
    size_t out_len;
    size_t out_off;
    /* Server streaming: out[out_off, out_len) is the queue of framed messages not yet taken
     * by nghttp2; out_cap is its allocation. */
    bool streaming;
    bool headers_sent;  /* response submitted with stream_read_cb as its data provider */
    bool deferred;      /* stream_read_cb returned NGHTTP2_ERR_DEFERRED; resume on more */
    bool finished;      /* api_call_finish ran (or the deadline did): trailers follow the queue */
    bool tick_open;     /* tick initialised and not yet closing; holds a call reference */
    bool flush_wanted;  /* a send queued bytes; the tick flushes them (batching many sends) */
    bool want_writable; /* on_writable registered and not yet run */
    size_t out_cap;
    size_t queue_cap; /* max_stream_queue_bytes: above it api_call_send reports would_block */
    int fin_status;
    char *fin_msg;   /* owned; percent-encoded grpc-message for the trailers, or NULL */
    uv_timer_t tick; /* 0 ms timer: flushes sends, runs the writable callback, on the loop */
    void (*writable_cb)(struct api_call *call, void *data);
    void *writable_data;
};

/* A connection over max_connections: accepted only to be closed; freed in its close cb. */
struct api_reject {
    uv_tcp_t tcp;
    struct api_server *server;
};

struct api_write {
    uv_write_t req;
    struct api_conn *conn;
    size_t len;
    uint8_t bytes[];
};

static void conn_flush(struct api_conn *c);
static void conn_close(struct api_conn *c);
static void server_drain_stop(struct api_server *s);
static void call_stream_expire(struct api_call *call);

/* ---- calls ---------------------------------------------------------------------------- */

static void call_unref(struct api_call *call)
{
    LATCH_ASSERT(call->refs > 0);
    if (--call->refs > 0) {
        return;
    }
    LATCH_ASSERT(call->conn == NULL);
    free(call->in_buf);
    free(call->out);
    free(call->fin_msg);
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
    return call->out_len - call->out_off;
}

/*
 * The tick of a streaming call: flushes what sends queued (once per loop iteration rather than
 * once per message) and runs the writable callback when it is due. Running both from a timer
 * keeps producer code out of nghttp2's callbacks and out of the producer's own sends.
 */
static void call_tick_cb(uv_timer_t *t)
{
    struct api_call *call = t->data;
    if (call->flush_wanted) {
        call->flush_wanted = false;
        if (call->conn != NULL) {
            conn_flush(call->conn);
        }
    }
    if (call->want_writable &&
        (!api_call_is_alive(call) || call_queued(call) < call->queue_cap / 2)) {
        call->want_writable = false;
        call->writable_cb(call, call->writable_data); /* may finish call: the tick closes */
    }
}

/* Runs the tick on the next loop iteration (nothing once it is closing). */
static void call_kick(struct api_call *call)
{
    if (call->tick_open) {
        uv_timer_start(&call->tick, call_tick_cb, 0, 0);
    }
}

/* Schedules a waiting writable callback when the producer may go on, or must learn the call
 * died (otherwise it would wait forever and never finish the call). */
static void call_check_writable(struct api_call *call)
{
    if (call->want_writable &&
        (!api_call_is_alive(call) || call_queued(call) < call->queue_cap / 2)) {
        call_kick(call);
    }
}

static void call_tick_close_cb(uv_handle_t *h)
{
    call_unref(h->data); /* the tick's reference */
}

/* Closes the tick once the call is answered; its reference is dropped in the close callback. */
static void call_stop_tick(struct api_call *call)
{
    if (!call->tick_open) {
        return;
    }
    call->tick_open = false;
    call->want_writable = false;
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
    call_check_writable(call); /* a paused producer must hear that the call died */
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

bool api_call_is_alive(const struct api_call *call)
{
    return call->conn != NULL && !call->conn->closing && !call->expired;
}

static void call_finish_answer(struct api_call *call)
{
    struct api_conn *c = call->conn;
    call_unref(call); /* the handler's reference; the stream's keeps call alive if needed */
    if (c != NULL && !c->in_recv) {
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
    int rv = nghttp2_submit_response(call->conn->session, call->stream_id, nva, n, NULL);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit error response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        rc = LATCH_ENOMEM;
    }
    return rc;
}

int api_call_fail(struct api_call *call, int grpc_status, const char *message)
{
    LATCH_ASSERT(!call->answered);
    LATCH_ASSERTF(grpc_status > 0 && grpc_status < API_GRPC_STATUS_COUNT, "grpc_status=%d",
                  grpc_status);
    if (call->streaming) {
        return api_call_finish(call, grpc_status, message);
    }
    call->answered = true;
    call_stop_deadline(call);
    if (!api_call_is_alive(call)) {
        call_unref(call);
        return LATCH_ESTATE;
    }
    int rc = call_submit_error(call, "200", grpc_status, message);
    call_finish_answer(call);
    return rc;
}

/*
 * The deadline passed before the handler answered: the client has given up (or is about to),
 * so answer DEADLINE_EXCEEDED now and make the handler's eventual answer a no-op. The
 * handler's reference stays until it answers.
 */
static void call_deadline_cb(uv_timer_t *t)
{
    struct api_call *call = t->data;
    call_stop_deadline(call);
    if (call->answered || !api_call_is_alive(call)) {
        return;
    }
    struct api_conn *c = call->conn;
    call->expired = true;
    if (call->headers_sent) {
        call_stream_expire(call);
    } else {
        call_submit_error(call, "200", API_GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    }
    call_check_writable(call); /* the producer learns from api_call_send that it is over */
    conn_flush(c);
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

/* ---- server streaming ----------------------------------------------------------------- */

/* Makes room for n more bytes at the end of call's queue: compacts when at least half of it is
 * already sent (so each byte moves O(1) times), grows otherwise. Returns 0 or LATCH_ENOMEM. */
static int call_queue_reserve(struct api_call *call, size_t n)
{
    size_t queued = call_queued(call);
    if (call->out_cap - call->out_len >= n) {
        return 0;
    }
    if (call->out_off > 0 && call->out_off >= queued) {
        memmove(call->out, call->out + call->out_off, queued);
        call->out_off = 0;
        call->out_len = queued;
        if (call->out_cap - call->out_len >= n) {
            return 0;
        }
    }
    size_t ncap = call->out_cap == 0 ? 4096 : call->out_cap;
    while (ncap - call->out_len < n) {
        ncap *= 2;
    }
    uint8_t *nout = realloc(call->out, ncap);
    if (nout == NULL) {
        return LATCH_ENOMEM;
    }
    call->out = nout;
    call->out_cap = ncap;
    return 0;
}

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
    size_t n = call_queued(call);
    n = n < length ? n : length;
    if (n > 0) {
        memcpy(buf, call->out + call->out_off, n);
        call->out_off += n;
    }
    if (call->out_off == call->out_len) {
        call->out_off = call->out_len = 0;
    }
    call_check_writable(call);
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
    if (call->headers_sent) {
        if (call->deferred) {
            call->deferred = false;
            nghttp2_session_resume_data(call->conn->session, call->stream_id);
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
    int rv = nghttp2_submit_response(call->conn->session, call->stream_id, nva, 2, &prd);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        return LATCH_ENOMEM;
    }
    call->headers_sent = true;
    return 0;
}

/* The deadline passed after HEADERS went out: drop what is queued (the client stopped
 * waiting for it) and end the stream with DEADLINE_EXCEEDED trailers. */
static void call_stream_expire(struct api_call *call)
{
    call->out_off = call->out_len = 0;
    call_set_trailers(call, API_GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    call_stream_submit(call);
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
    if (len > UINT32_MAX) {
        return LATCH_ETOOBIG;
    }
    if (call_queue_reserve(call, API_GRPC_FRAME_HEADER_SIZE + len) != 0) {
        return LATCH_ENOMEM;
    }
    api_grpc_frame_header(call->out + call->out_len, (uint32_t)len);
    if (len > 0) {
        memcpy(call->out + call->out_len + API_GRPC_FRAME_HEADER_SIZE, msg, len);
    }
    call->out_len += API_GRPC_FRAME_HEADER_SIZE + len;
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
    call_check_writable(call); /* already below half, or dead: run on the next iteration */
}

int api_call_finish(struct api_call *call, int grpc_status, const char *message)
{
    LATCH_ASSERT(call->streaming && !call->answered);
    LATCH_ASSERTF(grpc_status >= 0 && grpc_status < API_GRPC_STATUS_COUNT, "grpc_status=%d",
                  grpc_status);
    call->answered = true;
    call_stop_deadline(call);
    call_stop_tick(call); /* call_finish_answer flushes what the tick would have */
    if (!api_call_is_alive(call)) {
        call_unref(call);
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

/* Readies a call for a server-streaming handler. Returns 0 or LATCH_ENOMEM. */
static int call_stream_init(struct api_call *call)
{
    if (uv_timer_init(call->conn->server->loop, &call->tick) != 0) {
        return LATCH_ENOMEM;
    }
    call->tick.data = call;
    call->tick_open = true;
    call->refs++; /* the tick's, dropped in call_tick_close_cb */
    call->streaming = true;
    call->queue_cap = call->conn->server->max_stream_queue_bytes;
    return 0;
}

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
    if (len > UINT32_MAX) {
        api_call_fail(call, API_GRPC_STATUS_INTERNAL, "response message too large");
        return LATCH_ETOOBIG;
    }
    call->answered = true;
    call_stop_deadline(call);
    if (!api_call_is_alive(call)) {
        call_unref(call);
        return LATCH_ESTATE;
    }
    int rc = 0;
    call->out = malloc(API_GRPC_FRAME_HEADER_SIZE + len);
    if (call->out == NULL) {
        nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
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
    int rv = nghttp2_submit_response(call->conn->session, call->stream_id, nva, 2, &prd);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit response on stream %d: %s", call->stream_id,
                  nghttp2_strerror(rv));
        nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        rc = LATCH_ENOMEM;
    }
out_finish:
    call_finish_answer(call);
    return rc;
}

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

/* Runs on END_STREAM of the request: routes it, or answers the error found while reading. */
static void call_dispatch(struct api_call *call)
{
    struct api_server *s = call->conn->server;
    call->dispatched = true;
    call->refs++; /* the handler's reference, given back by reply/fail */
    if (call_reject_non_grpc(call)) {
        return;
    }
    if (call->err_status != 0) {
        api_call_fail(call, call->err_status, call->err_msg);
        return;
    }
    struct api_method *m = NULL;
    if (!call->path_too_long) {
        for (m = s->methods; m != NULL; m = m->next) {
            if (strcmp(m->path, call->path) == 0) {
                break;
            }
        }
    }
    if (m == NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (!call->have_msg) {
        api_call_fail(call, API_GRPC_STATUS_INTERNAL, "grpc: unary request without a message");
        return;
    }
    if (m->stream && call_stream_init(call) != 0) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    call_arm_deadline(call);
    m->handler(m->data, call, call->msg, call->msg_len);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------- */

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
    }
    return 0;
}

static void call_set_error(struct api_call *call, int grpc_status, const char *msg)
{
    call->err_status = grpc_status;
    snprintf(call->err_msg, sizeof(call->err_msg), "%s", msg);
}

/*
 * Collects the 5-byte prefix of the request message from data; once complete, validates the
 * flag and the declared length and allocates in_buf of exactly that length. Returns the bytes
 * used, or 0 with call->err_status set (or the stream reset) on error.
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
    if (rc == LATCH_EINVAL && call->prefix[0] == 1) {
        call_set_error(call, API_GRPC_STATUS_UNIMPLEMENTED,
                       "grpc: compressed message but no grpc-encoding is supported");
    } else if (rc == LATCH_EINVAL) {
        call_set_error(call, API_GRPC_STATUS_INTERNAL, "grpc: invalid message compression flag");
    } else if (rc == LATCH_ETOOBIG) {
        call->err_status = API_GRPC_STATUS_RESOURCE_EXHAUSTED;
        api_grpc_too_large_message(call->err_msg, sizeof(call->err_msg), call->body_len, max);
    } else if (call->body_len > 0) {
        call->in_buf = malloc(call->body_len);
        if (call->in_buf == NULL) {
            nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
            call->err_status = API_GRPC_STATUS_RESOURCE_EXHAUSTED; /* ignore the rest */
        }
    }
    return used;
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
    if (call == NULL || call->err_status != 0 || len == 0) {
        return 0;
    }
    if (call->have_msg) {
        call_set_error(call, API_GRPC_STATUS_INTERNAL,
                       "grpc: unary request with more than one message");
        return 0;
    }
    if (call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
        size_t used = call_take_prefix(call, data, len);
        data += used;
        len -= used;
        if (call->err_status != 0 || call->prefix_len < API_GRPC_FRAME_HEADER_SIZE) {
            return 0;
        }
    }
    size_t take = call->body_len - call->body_have;
    take = len < take ? len : take;
    if (take > 0) {
        memcpy(call->in_buf + call->body_have, data, take);
        call->body_have += take;
    }
    if (call->body_have == call->body_len) {
        call->have_msg = true;
        static const uint8_t empty[1];
        call->msg = call->in_buf != NULL ? call->in_buf : empty; /* never NULL for handlers */
        call->msg_len = call->body_len;
        if (take < len) {
            call_set_error(call, API_GRPC_STATUS_INTERNAL,
                           "grpc: unary request with more than one message");
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)user_data;
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
        return 0;
    }
    struct api_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (call == NULL || call->dispatched || call->conn == NULL) {
        return 0;
    }
    if (call->prefix_len > 0 && !call->have_msg && call->err_status == 0) {
        call_set_error(call, API_GRPC_STATUS_INTERNAL, "grpc: truncated request message");
    }
    call_dispatch(call);
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

static void conn_close_cb(uv_handle_t *h)
{
    struct api_conn *c = h->data;
    struct api_server *s = c->server;
    if (c->session != NULL) {
        nghttp2_session_del(c->session); /* runs no callbacks */
    }
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

/* Closes the socket now (pending writes are cancelled); every live call becomes dead. */
static void conn_close(struct api_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    c->server->nconns--;
    while (c->calls != NULL) {
        call_detach(c->calls);
    }
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

/* Closes once everything queued has been written (GOAWAY after a protocol error). */
static void conn_close_after_writes(struct api_conn *c)
{
    c->close_pending = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->writes_pending == 0) {
        conn_close(c);
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct api_write *w = req->data;
    struct api_conn *c = w->conn;
    c->out_bytes -= w->len;
    free(w);
    c->writes_pending--;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        latch_log(LATCH_LOG_DEBUG, "grpc: write failed: %s", uv_strerror(status));
        conn_close(c);
    } else if (c->close_pending && c->writes_pending == 0) {
        conn_close(c);
    } else if (c->out_blocked && c->out_bytes < c->server->max_conn_output_bytes) {
        conn_flush(c); /* below the cap again: pull what nghttp2 kept */
    }
}

/*
 * During a drain, once no stream is open, submits the final GOAWAY (NO_ERROR, last processed
 * stream id) so the peer knows nothing was lost. Returns true when it did.
 */
static bool conn_submit_final_goaway(struct api_conn *c)
{
    if (!c->server->draining || c->goaway_final || c->calls != NULL) {
        return false;
    }
    c->goaway_final = true;
    int32_t last = nghttp2_session_get_last_proc_stream_id(c->session);
    int rv = nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
    if (rv != 0) {
        latch_log(LATCH_LOG_WARN, "grpc: submit GOAWAY: %s", nghttp2_strerror(rv));
    }
    return true;
}

/*
 * Appends what nghttp2 has pending to *w (grown as needed) until nothing is left or the
 * output cap is reached. Returns 0, or -1 when the connection must close (*w is freed then).
 */
static int conn_gather(struct api_conn *c, struct api_write **w, size_t *cap, size_t *len)
{
    size_t max_out = c->server->max_conn_output_bytes;
    c->out_blocked = false;
    for (;;) {
        if (c->out_bytes + *len >= max_out) {
            c->out_blocked = true; /* nghttp2 keeps the rest; write_cb comes back for it */
            return 0;
        }
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->session, &p);
        if (n < 0) {
            latch_log(LATCH_LOG_WARN, "grpc: nghttp2 send: %s", nghttp2_strerror((int)n));
            break;
        }
        if (n == 0) {
            return 0;
        }
        if (*len + (size_t)n > *cap) {
            size_t ncap = *cap == 0 ? 16384 : *cap;
            while (ncap < *len + (size_t)n) {
                ncap *= 2;
            }
            struct api_write *nw = realloc(*w, sizeof(**w) + ncap);
            if (nw == NULL) {
                break;
            }
            *w = nw;
            *cap = ncap;
        }
        memcpy((*w)->bytes + *len, p, (size_t)n);
        *len += (size_t)n;
    }
    free(*w);
    *w = NULL;
    return -1;
}

/* Gathers everything nghttp2 has pending into one buffer and issues one uv_write. */
static void conn_flush(struct api_conn *c)
{
    if (c->closing || c->in_recv) {
        return;
    }
    struct api_write *w = NULL;
    size_t cap = 0;
    size_t len = 0;
    /* Streams close while their last frame is gathered, so the final GOAWAY of a drain is
     * decided after a pass and gathered by a second one. */
    do {
        if (conn_gather(c, &w, &cap, &len) != 0) {
            conn_close(c);
            return;
        }
    } while (!c->out_blocked && conn_submit_final_goaway(c));
    if (len > 0) {
        w->conn = c;
        w->len = len;
        w->req.data = w;
        uv_buf_t buf = uv_buf_init((char *)w->bytes, (unsigned int)len);
        int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
        if (rv != 0) {
            free(w);
            conn_close(c);
            return;
        }
        c->writes_pending++;
        c->out_bytes += len;
    }
    if ((c->goaway_final && !c->out_blocked) ||
        (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))) {
        conn_close_after_writes(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct api_conn *c = h->data;
    *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct api_conn *c = stream->data;
    (void)buf;
    if (nread == 0 || c->closing) {
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->in_recv = true;
    ssize_t rv = nghttp2_session_mem_recv(c->session, c->rbuf, (size_t)nread);
    c->in_recv = false;
    if (rv < 0) {
        latch_log(LATCH_LOG_INFO, "grpc: closing connection: %s", nghttp2_strerror((int)rv));
        conn_flush(c); /* a GOAWAY nghttp2 may have queued */
        if (!c->closing) {
            conn_close_after_writes(c);
        }
        return;
    }
    conn_flush(c);
}

static int conn_session_init(struct api_conn *c)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return LATCH_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int rv = nghttp2_session_server_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        c->session = NULL;
        return LATCH_ENOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, API_SERVER_MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, API_SERVER_INITIAL_WINDOW_SIZE},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              API_SERVER_CONN_WINDOW_SIZE) != 0) {
        return LATCH_ENOMEM;
    }
    return 0;
}

static void reject_close_cb(uv_handle_t *h)
{
    struct api_reject *r = h->data;
    struct api_server *s = r->server;
    free(r);
    server_handle_closed(s);
}

/*
 * Over max_connections: accepts and closes at once, so the peer sees a prompt EOF rather than
 * a backlog that never drains. Logs at most once a second, with the count since the last.
 */
static void server_reject(struct api_server *s)
{
    s->rejected++;
    uint64_t now = uv_now(s->loop);
    if (s->reject_log_ms == 0 || now - s->reject_log_ms >= 1000) {
        latch_log(LATCH_LOG_WARN, "grpc: %zu connection(s) refused: limit of %zu reached",
                  s->rejected, s->max_connections);
        s->reject_log_ms = now == 0 ? 1 : now;
        s->rejected = 0;
    }
    struct api_reject *r = calloc(1, sizeof(*r));
    if (r == NULL || uv_tcp_init(s->loop, &r->tcp) != 0) {
        free(r);
        return; /* the pending connection stays in the backlog */
    }
    r->server = s;
    r->tcp.data = r;
    s->handles_open++;
    uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, reject_close_cb);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct api_server *s = listener->data;
    if (status < 0) {
        latch_log(LATCH_LOG_WARN, "grpc: accept: %s", uv_strerror(status));
        return;
    }
    if (s->nconns >= s->max_connections) {
        server_reject(s);
        return;
    }
    struct api_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        latch_log(LATCH_LOG_WARN, "grpc: out of memory accepting a connection");
        return; /* the pending connection stays in the backlog */
    }
    c->server = s;
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->handles_open++;
    s->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || conn_session_init(c) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        conn_close(c);
        return;
    }
    conn_flush(c); /* the server SETTINGS go out first */
}

/* ---- server --------------------------------------------------------------------------- */

static void listener_close_cb(uv_handle_t *h)
{
    server_handle_closed(h->data);
}

int api_server_new(uv_loop_t *loop, const struct api_server_config *cfg, struct api_server **out)
{
    struct api_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    s->loop = loop;
    s->max_recv_msg_size = API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT;
    s->max_connections = API_SERVER_MAX_CONNECTIONS_DEFAULT;
    s->max_conn_output_bytes = API_SERVER_MAX_CONN_OUTPUT_DEFAULT;
    s->max_stream_queue_bytes = API_SERVER_MAX_STREAM_QUEUE_DEFAULT;
    if (cfg != NULL && cfg->max_recv_msg_size != 0) {
        s->max_recv_msg_size = cfg->max_recv_msg_size;
    }
    if (cfg != NULL && cfg->max_connections != 0) {
        s->max_connections = cfg->max_connections;
    }
    if (cfg != NULL && cfg->max_conn_output_bytes != 0) {
        s->max_conn_output_bytes = cfg->max_conn_output_bytes;
    }
    if (cfg != NULL && cfg->max_stream_queue_bytes != 0) {
        s->max_stream_queue_bytes = cfg->max_stream_queue_bytes;
    }
    if (uv_tcp_init(loop, &s->listener) != 0) {
        free(s);
        return LATCH_EINVAL;
    }
    s->listener.data = s;
    s->handles_open = 1;
    *out = s;
    return 0;
}

int api_server_listen(struct api_server *s, const char *host, int port, int *bound_port)
{
    if (s->listening || s->closing) {
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
    int rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    }
    if (rv != 0) {
        latch_log(LATCH_LOG_ERROR, "grpc: listen on %s:%d: %s", host, port, uv_strerror(rv));
        return rv == UV_EADDRINUSE ? LATCH_EEXIST : LATCH_EINVAL;
    }
    s->listening = true;
    if (bound_port != NULL) {
        struct sockaddr_storage name;
        int namelen = (int)sizeof(name);
        rv = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&name, &namelen);
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

static int server_add_method(
    struct api_server *s, const char *path, api_unary_fn handler, void *data, bool stream)
{
    size_t len = strlen(path);
    if (len == 0 || len > API_SERVER_PATH_MAX || handler == NULL) {
        return LATCH_EINVAL;
    }
    for (struct api_method *m = s->methods; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0) {
            return LATCH_EEXIST;
        }
    }
    struct api_method *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return LATCH_ENOMEM;
    }
    memcpy(m->path, path, len + 1);
    m->handler = handler;
    m->data = data;
    m->stream = stream;
    m->next = s->methods;
    s->methods = m;
    return 0;
}

int api_server_register_unary(struct api_server *s,
                              const char *path,
                              api_unary_fn handler,
                              void *data)
{
    return server_add_method(s, path, handler, data, false);
}

int api_server_register_server_stream(struct api_server *s,
                                      const char *path,
                                      api_unary_fn handler,
                                      void *data)
{
    return server_add_method(s, path, handler, data, true);
}

void api_server_close(struct api_server *s, api_server_close_cb done_cb)
{
    LATCH_ASSERT(!s->closing);
    s->closing = true;
    s->done_cb = done_cb;
    for (struct api_conn *c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
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
    LATCH_ASSERT(!s->closing);
    s->closing = true;
    s->draining = true;
    s->done_cb = done_cb;
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
        if (c->closing || c->close_pending) {
            continue;
        }
        /* GOAWAY with the largest stream id: the peer opens no new streams from here. */
        nghttp2_submit_shutdown_notice(c->session);
        conn_flush(c); /* idle connections also get their final GOAWAY here */
    }
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
}
