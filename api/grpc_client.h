/*
 * grpc_client.h — a gRPC client over HTTP/2 on the caller's libuv loop: one channel per peer
 * (Raft peer streams, the client library and CLI, benchmarks), h2c with prior knowledge or TLS
 * (ALPN h2), unary, server-streaming, client-streaming and bidirectional calls
 * (ETCD-API.md §5–§7; grpc PROTOCOL-HTTP2.md).
 *
 * A channel holds one HTTP/2 connection that takes new streams at a time, pumped by
 * api/grpc_transport (one uv_write per flush, TCP_NODELAY, TLS through api/grpc_tls). The
 * client session sends its preface with SETTINGS (ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 1 MiB)
 * and raises its connection receive window to 16 MiB. A connection is READY once the
 * server's first SETTINGS arrived.
 *
 * Connecting. Endpoints are tried in order, starting from the one that last worked: each
 * endpoint's addresses (a literal, or what uv_getaddrinfo returns for a name) one by one,
 * each attempt on one address bounded by connect_timeout_ms (its name lookup, TCP, TLS
 * handshake and the server's SETTINGS together). When a whole round over the endpoints failed the
 * channel is in TRANSIENT_FAILURE and waits a backoff delay before the next round:
 * backoff_initial_ms, doubling after each failed round up to backoff_max_ms, each delay scaled by a
 * random factor in [1 - jitter, 1 + jitter] from a PRNG seeded by the config (no global state). A
 * READY connection resets the delay. The channel connects at once when made and reconnects at once
 * (a new round, no delay) when its connection is lost, so a Raft peer's channel stays warm.
 *
 * Calls and connection state. A call started while the channel is CONNECTING waits for the
 * connection. In TRANSIENT_FAILURE a call fails at once with UNAVAILABLE (the last connect
 * error as its message) unless it was started with wait_for_ready, which keeps it queued
 * until a connection is READY or its deadline passes; the queued calls that are not
 * wait_for_ready fail when a round fails. Losing a connection fails every call on it with
 * UNAVAILABLE: nothing is retried, because the client cannot know what the server did.
 *
 * GOAWAY. The connection that received it takes no new stream; the channel starts a new
 * connection at once for new calls, while the old one keeps its streams with ids up to
 * last_stream_id until they finish, then closes. Streams above last_stream_id (never
 * processed by the server) are failed with UNAVAILABLE rather than retried transparently, so
 * that a message is never sent twice behind the caller's back; RST_STREAM(REFUSED_STREAM) is
 * treated the same way. Callers (Raft, the client library) retry on UNAVAILABLE themselves.
 *
 * Status of a call, reported once through on_done:
 *  - the grpc-status of the trailers (or of a trailers-only response), with its percent-decoded
 *    grpc-message; a trailer block without grpc-status is UNKNOWN;
 *  - a response :status other than 200: 400 INTERNAL, 401 UNAUTHENTICATED, 403
 *    PERMISSION_DENIED, 404 and 501 UNIMPLEMENTED, 429, 502, 503 and 504 UNAVAILABLE, any
 *    other UNKNOWN (grpc's http-grpc-status-mapping); a 200 without a gRPC content-type is
 *    UNKNOWN;
 *  - a stream reset by the peer: CANCEL → CANCELLED, REFUSED_STREAM → UNAVAILABLE,
 *    ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED, INADEQUATE_SECURITY → PERMISSION_DENIED, any other
 *    code (a stream ended without trailers included) → INTERNAL;
 *  - a response message over max_recv_msg_size → RESOURCE_EXHAUSTED "grpc: received message
 *    larger than max (N vs. M)" and the stream is reset (CANCEL); a compressed one (nothing is
 *    ever negotiated) or one cut short by the end of the stream → INTERNAL;
 *  - the local deadline → DEADLINE_EXCEEDED "Deadline Exceeded", api_ccall_cancel() →
 *    CANCELLED "Cancelled" (the stream is reset with CANCEL in both cases);
 *    api_channel_close() → CANCELLED "channel closed" (its connections are closed).
 *
 * Not done: client keepalive PINGs (the server's PINGs are answered), compression,
 * transparent retries, and more than one connection taking new streams at a time.
 *
 * Callbacks never run inside the function that caused them: on_done and on_writable run from
 * a loop callback of the channel; on_message runs from the connection's read path (outside
 * the caller's own api_* call). Every callback may call any function here, on any call,
 * including api_channel_close().
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#ifndef API_GRPC_CLIENT_H
#define API_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct api_channel;
struct api_ccall;
struct api_tls_ctx;

/* Largest response message by default: grpc's 4 MiB (python and C-core clients use it too). */
#define API_CHANNEL_MAX_RECV_MSG_SIZE_DEFAULT  ((size_t)4 << 20)
#define API_CHANNEL_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define API_CHANNEL_BACKOFF_INITIAL_MS_DEFAULT 100
#define API_CHANNEL_BACKOFF_MAX_MS_DEFAULT     5000
/* Jitter of each backoff delay, in percent of it (grpc: 20 %). */
#define API_CHANNEL_BACKOFF_JITTER_PCT_DEFAULT 20
#define API_CHANNEL_MAX_SEND_QUEUE_DEFAULT     ((size_t)1 << 20)
#define API_CHANNEL_MAX_CONN_OUTPUT_DEFAULT    ((size_t)4 << 20)
/* Endpoints one channel may rotate through; more is a configuration mistake. */
#define API_CHANNEL_ENDPOINTS_MAX              16
/* Longest "host:port" (with scheme) accepted as an endpoint. */
#define API_CHANNEL_ENDPOINT_MAX               300

enum api_channel_state {
    API_CHANNEL_CONNECTING,        /* an attempt is under way; calls wait for it */
    API_CHANNEL_READY,             /* a connection takes new streams */
    API_CHANNEL_TRANSIENT_FAILURE, /* a round failed; waiting for the backoff delay */
    API_CHANNEL_SHUTDOWN,          /* api_channel_close() was called */
};

struct api_channel_config {
    /* "host:port", "http://host:port" (cleartext) or "https://host:port" (TLS); host is an
     * IPv4 literal, a bracketed IPv6 literal ("[::1]:2379") or a name. A bare "host:port" uses
     * TLS when tls is set. 1..API_CHANNEL_ENDPOINTS_MAX entries, copied. */
    const char *const *endpoints;
    size_t endpoints_count;
    /* A client-side TLS context (api_tls_ctx_new(..., server = false, ...)); borrowed, must
     * outlive the channel. Required by https:// endpoints; may be NULL otherwise. */
    struct api_tls_ctx *tls;
    /* TLS only: check each connection's server certificate against the host of the endpoint
     * it dialed (api_tls_new_host), whatever the context's server_name says. */
    bool verify_host;
    /* :authority of every request; NULL uses the endpoint's "host:port". Copied. */
    const char *authority;
    /* 0 selects the defaults above. jitter_pct 0 means the default too; use
     * backoff_no_jitter for exact delays. */
    uint64_t connect_timeout_ms;
    uint64_t backoff_initial_ms;
    uint64_t backoff_max_ms;
    unsigned backoff_jitter_pct; /* at most 100 */
    bool backoff_no_jitter;
    /* Seed of the jitter PRNG; 0 seeds it from uv_hrtime(). */
    uint64_t seed;
    /* Largest response message; 0 selects API_CHANNEL_MAX_RECV_MSG_SIZE_DEFAULT. */
    size_t max_recv_msg_size;
    /* Bytes (prefixes included) a call may have queued and not yet taken by nghttp2 before
     * api_ccall_send() reports would_block; 0 selects API_CHANNEL_MAX_SEND_QUEUE_DEFAULT. */
    size_t max_send_queue_bytes;
    /* Bytes in uv_write not yet written before frames stay in nghttp2 (transport cap); 0
     * selects API_CHANNEL_MAX_CONN_OUTPUT_DEFAULT. */
    size_t max_conn_output_bytes;
    /* user-agent header; NULL selects "latch-grpc-c/1". Copied. */
    const char *user_agent;
    /* Called from the channel's loop callback with the current state when it differs from the
     * last one reported (changes within one loop turn are reported once). Never after
     * api_channel_close(). May be NULL. */
    void (*state_cb)(struct api_channel *ch, enum api_channel_state state, void *data);
    void *data; /* for state_cb; borrowed */
};

/* One metadata entry (a request header): name in lower case, not starting with ':'; names
 * ending in "-bin" are sent as given (already base64). Both borrowed for the start call. */
struct api_metadata {
    const char *name;
    const char *value;
};

struct api_call_opts {
    /* Deadline from the start of the call, in ms; 0 means none. Sent as grpc-timeout (the time
     * left when the request goes out) and enforced locally. */
    uint64_t timeout_ms;
    /* The local timer fires this much after timeout_ms (0: at it). A large grace leaves the
     * deadline to the server (tests of server-side enforcement). */
    uint64_t local_grace_ms;
    /* Queue while the channel is in TRANSIENT_FAILURE instead of failing at once. */
    bool wait_for_ready;
    const struct api_metadata *metadata; /* metadata_count entries, copied at start */
    size_t metadata_count;
};

struct api_ccall_callbacks {
    /* One response message (msg, len bytes, borrowed until it returns; never NULL, len may be
     * 0). Only before on_done. May be NULL: messages are then discarded. */
    void (*on_message)(struct api_ccall *call, const uint8_t *msg, size_t len, void *data);
    /* The send queue fell below half of max_send_queue_bytes after an api_ccall_send()
     * reported would_block. Not called once the call is done. May be NULL. */
    void (*on_writable)(struct api_ccall *call, void *data);
    /* The call ended with grpc_status (0..16) and message (NUL-terminated, "" when none,
     * borrowed until it returns). Exactly once, last; call is freed after it returns.
     * Required. */
    void (*on_done)(struct api_ccall *call, int grpc_status, const char *message, void *data);
};

typedef void (*api_channel_close_cb)(struct api_channel *ch, void *data);

/*
 * Makes a channel on loop (borrowed; it must outlive the channel) and starts connecting.
 * cfg is copied (see the fields for what is borrowed). Returns 0 and sets *out, or
 * LATCH_EINVAL (no endpoints, too many, one unparsable, https without tls, jitter over 100)
 * or LATCH_ENOMEM; *out is NULL on failure. Free with api_channel_close().
 */
int api_channel_new(uv_loop_t *loop,
                    const struct api_channel_config *cfg,
                    struct api_channel **out);

/*
 * Closes ch: every call not done yet ends with CANCELLED "channel closed" (on_done runs from
 * a loop callback, as always), connections are closed at once, and after every handle of the
 * channel has closed done_cb(ch, data) runs (may be NULL); ch is freed right after it
 * returns. No call can be started any more. Call once.
 */
void api_channel_close(struct api_channel *ch, api_channel_close_cb done_cb, void *data);

enum api_channel_state api_channel_state(const struct api_channel *ch);

/* The reason of the last failed connection attempt ("" when none); owned by ch, valid until
 * the next attempt fails. */
const char *api_channel_last_error(const struct api_channel *ch);

/*
 * Starts a call of path ("/pkg.Service/Method", copied) on ch with opts (may be NULL for none)
 * and cbs (copied; on_done required); data is passed back to every callback (borrowed). The
 * request goes out once a connection is READY; messages sent before that are queued. Returns
 * 0 and sets *out (the call is the channel's: valid until on_done returns), or LATCH_EINVAL
 * (bad path or metadata), LATCH_ESTATE (channel closing) or LATCH_ENOMEM; no callback runs
 * then.
 */
int api_ccall_start(struct api_channel *ch,
                    const char *path,
                    const struct api_call_opts *opts,
                    const struct api_ccall_callbacks *cbs,
                    void *data,
                    struct api_ccall **out);

/*
 * Queues one request message (msg, len bytes, copied with its 5-byte prefix; msg may be NULL
 * when len is 0). Never drops a message: *would_block (may be NULL) is set to true when the
 * queue now holds more than max_send_queue_bytes (HTTP/2 flow control holds it back); the
 * producer then waits for on_writable. Returns 0, LATCH_ESTATE (the call is done or
 * half-closed; the message is discarded), LATCH_ETOOBIG (len over 4 GiB - 1) or LATCH_ENOMEM.
 */
int api_ccall_send(struct api_ccall *call, const uint8_t *msg, size_t len, bool *would_block);

/* Half-closes: END_STREAM follows the queued messages. Returns 0 or LATCH_ESTATE (done or
 * already half-closed). */
int api_ccall_close_send(struct api_ccall *call);

/* Ends the call with CANCELLED "Cancelled" (RST_STREAM CANCEL on the wire if it started); on_done
 * runs from a loop callback. A no-op once the call is done. */
void api_ccall_cancel(struct api_ccall *call);

/*
 * Receive flow control: while paused, the bytes of call's response stream are not returned
 * to its HTTP/2 window (the connection's are), so the server stops after one stream window
 * (1 MiB); what is within it is still delivered. For consumers slower than the stream.
 */
void api_ccall_pause_recv(struct api_ccall *call);
void api_ccall_resume_recv(struct api_ccall *call);

/* Bytes queued by api_ccall_send and not yet taken by nghttp2. */
size_t api_ccall_queued_bytes(const struct api_ccall *call);

/*
 * The unary convenience: sends req (len bytes, copied) on path, half-closes, and runs
 * cb(grpc_status, message, resp, resp_len, data) once with the one response message (resp
 * borrowed until cb returns; NULL with resp_len 0 unless the status is OK) from a loop
 * callback. A response with no message or more than one is INTERNAL. Returns 0, or an error
 * as for api_ccall_start (cb never runs then).
 */
typedef void (*api_unary_cb)(
    int grpc_status, const char *message, const uint8_t *resp, size_t resp_len, void *data);
int api_channel_unary(struct api_channel *ch,
                      const char *path,
                      const uint8_t *req,
                      size_t len,
                      const struct api_call_opts *opts,
                      api_unary_cb cb,
                      void *data);

/* ---- the blocking wrapper --------------------------------------------------------------
 *
 * For simple programs (the CLI, tests, benchmarks): a struct api_blocking owns a private
 * uv loop and one channel, and every function runs that loop on the calling thread until
 * its answer is in. Not for code that already runs a loop.
 */
struct api_blocking;
struct api_blocking_stream;

/*
 * Makes a private loop and a channel with cfg (as api_channel_new; cfg->state_cb must be
 * NULL) and waits up to timeout_ms for it to become READY. Returns 0 and sets *out, or
 * LATCH_EINVAL / LATCH_ENOMEM as api_channel_new, or LATCH_EUNAVAILABLE when the first
 * round of attempts failed or the time ran out (err, may be NULL, gets the reason in up to
 * err_cap bytes, NUL-terminated); *out is NULL on failure.
 */
int api_blocking_connect(const struct api_channel_config *cfg,
                         uint64_t timeout_ms,
                         struct api_blocking **out,
                         char *err,
                         size_t err_cap);

/* Closes the channel, runs the loop until every handle has closed, frees everything. NULL is
 * a no-op. Every stream of b must have been freed first. */
void api_blocking_free(struct api_blocking *b);

/* The channel inside b (for its state and last error; do not close it). */
struct api_channel *api_blocking_channel(struct api_blocking *b);

/*
 * One unary call with opts (may be NULL; set timeout_ms for a bound). Returns 0 when the call
 * ended, whatever its status: *grpc_status gets it, *message (may be NULL) a malloc'd
 * NUL-terminated copy of grpc-message, *resp and *resp_len (resp may be NULL) the malloc'd
 * response (NULL/0 unless OK); the caller frees both. Returns an error as for
 * api_ccall_start otherwise (nothing is set then).
 */
int api_blocking_unary(struct api_blocking *b,
                       const char *path,
                       const uint8_t *req,
                       size_t len,
                       const struct api_call_opts *opts,
                       int *grpc_status,
                       char **message,
                       uint8_t **resp,
                       size_t *resp_len);

/*
 * Starts a server-streaming call: sends req (len bytes) and half-closes. Messages are buffered
 * by the wrapper (receiving pauses above 1 MiB buffered). Returns 0 and sets *out, or an
 * error as for api_ccall_start.
 */
int api_blocking_stream_start(struct api_blocking *b,
                              const char *path,
                              const uint8_t *req,
                              size_t len,
                              const struct api_call_opts *opts,
                              struct api_blocking_stream **out);

enum api_blocking_next {
    API_BLOCKING_END = 0,     /* the call ended: see api_blocking_stream_status */
    API_BLOCKING_MESSAGE = 1, /* *msg and *len hold the next message (malloc'd; caller frees) */
    API_BLOCKING_TIMEOUT = 2, /* nothing arrived within timeout_ms; the call goes on */
};

/* Waits up to timeout_ms for the next message. Returns an enum api_blocking_next value. */
int api_blocking_stream_next(struct api_blocking_stream *s,
                             uint64_t timeout_ms,
                             uint8_t **msg,
                             size_t *len);

/* After API_BLOCKING_END: the call's status, and its grpc-message (owned by s; may be NULL). */
int api_blocking_stream_status(const struct api_blocking_stream *s, const char **message);

/* Cancels the call if it is still going, waits for it to end and frees s. NULL is a no-op. */
void api_blocking_stream_free(struct api_blocking_stream *s);

#endif /* API_GRPC_CLIENT_H */
