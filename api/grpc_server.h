/*
 * grpc_server.h — a gRPC server over HTTP/2 on the caller's libuv loop: cleartext (h2c, prior
 * knowledge) and TLS listeners, unary, server-streaming, client-streaming and bidirectional
 * calls (ETCD-API.md §5, §6, §7, §9.2).
 *
 * One nghttp2 server session per connection, pumped by api/grpc_transport (TLS through
 * api/grpc_tls). The server sends its SETTINGS first (MAX_CONCURRENT_STREAMS and
 * MAX_HEADER_LIST_SIZE from the config, INITIAL_WINDOW_SIZE 1 MiB, a 16 MiB connection
 * window), sets TCP_NODELAY and coalesces everything nghttp2 has pending into one uv_write per
 * flush. A request message is collected into a buffer of exactly its declared length
 * (allocated once its 5-byte prefix arrived).
 *
 * Calls by kind:
 *  - unary: the handler runs at END_STREAM with the one request message and answers, then or
 *    later, exactly once, with api_call_reply() or api_call_fail();
 *  - server-streaming: the same handler type; it answers with any number of api_call_send()
 *    and one api_call_finish();
 *  - client-streaming and bidirectional: an api_stream_handler; start runs when the request
 *    headers arrived, message for each request message as it arrives, half_close at the
 *    client's END_STREAM. A client-streaming call is answered with api_call_reply/fail, a
 *    bidirectional one with api_call_send/finish, at any time.
 *
 * Requests that are not gRPC are answered as grpc-go does, as soon as their headers arrived:
 * a content-type other than application/grpc[+…|;…] gets HTTP 415, a :method other than POST
 * gets HTTP 405 (both with grpc-status/grpc-message headers too, and END_STREAM); an unknown
 * :path gets UNIMPLEMENTED and a header list over max_header_list_size RESOURCE_EXHAUSTED,
 * both trailers-only.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe. libuv writes to sockets
 * with write(2), so the process must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN) in main):
 * otherwise a peer that resets its connection while a write is pending kills it.
 */
#ifndef API_GRPC_SERVER_H
#define API_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Largest request message accepted by default: etcd's 1.5 MiB + 512 KiB (ETCD-API.md §5). */
#define API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT ((size_t)(3u << 19) + (512u << 10))

/* Largest response message by default: etcd's (math.MaxInt32). */
#define API_SERVER_MAX_SEND_MSG_SIZE_DEFAULT ((size_t)INT32_MAX)

#define API_SERVER_MAX_CONNECTIONS_DEFAULT        1024
#define API_SERVER_MAX_CONN_OUTPUT_DEFAULT        ((size_t)4 << 20)
#define API_SERVER_MAX_STREAM_QUEUE_DEFAULT       ((size_t)1 << 20)
#define API_SERVER_MAX_CONCURRENT_STREAMS_DEFAULT 1000
#define API_SERVER_MAX_HEADER_LIST_DEFAULT        ((size_t)16 << 10)

/* Longest :path kept; longer paths are answered UNIMPLEMENTED like any unknown method. */
#define API_SERVER_PATH_MAX 256

struct api_server;
struct api_call;
struct api_tls_ctx;

struct api_server_config {
    /* Largest request message in bytes; 0 selects API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT. */
    size_t max_recv_msg_size;
    /* Largest response message in bytes (at most 4 GiB - 1); 0 selects
     * API_SERVER_MAX_SEND_MSG_SIZE_DEFAULT. A larger unary answer fails the call with
     * RESOURCE_EXHAUSTED "grpc: trying to send message larger than max (N vs. M)"; a larger
     * streamed message is refused by api_call_send. */
    size_t max_send_msg_size;
    /* Connections served at once; 0 selects API_SERVER_MAX_CONNECTIONS_DEFAULT. Beyond it a
     * new connection is accepted and closed at once (logged at most once a second). */
    size_t max_connections;
    /* Bytes a connection may have in uv_write but not yet written; 0 selects
     * API_SERVER_MAX_CONN_OUTPUT_DEFAULT. Above it the server pulls no more frames from
     * nghttp2, so a peer that does not read is held back by HTTP/2 flow control instead of
     * growing the server's memory. */
    size_t max_conn_output_bytes;
    /* Bytes (prefixes included) a server-streaming call may have queued but not yet taken by
     * nghttp2 before api_call_send() reports would_block; 0 selects
     * API_SERVER_MAX_STREAM_QUEUE_DEFAULT. */
    size_t max_stream_queue_bytes;
    /* Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; nghttp2
     * refuses more); 0 selects API_SERVER_MAX_CONCURRENT_STREAMS_DEFAULT. */
    uint32_t max_concurrent_streams;
    /* Largest request header list, counted as RFC 9113 §6.5.2 does (name + value + 32 per
     * field) and advertised as SETTINGS_MAX_HEADER_LIST_SIZE; a larger one gets a
     * trailers-only RESOURCE_EXHAUSTED. 0 selects API_SERVER_MAX_HEADER_LIST_DEFAULT. */
    size_t max_header_list_size;
};

/*
 * A unary handler. req (req_len bytes, possibly 0) is borrowed until the handler returns;
 * copy it to answer later. call is owned by the server until the handler passes it back
 * with exactly one api_call_reply() or api_call_fail(), now or from a later loop callback.
 * A call that is never answered leaks.
 */
typedef void (*api_unary_fn)(void *data, struct api_call *call, const uint8_t *req, size_t req_len);

/*
 * The handler of a client-streaming or bidirectional method. data is the registrant's. All
 * three run from the server's read path, never re-entered for one call, and may answer the
 * call (api_call_reply/fail for client-streaming, api_call_send/finish for bidirectional).
 *  - start (required): the request headers arrived; call is the handler's until answered
 *    (an unanswered call leaks), exactly as for unary calls.
 *  - message (required): one request message (msg, len bytes, borrowed until it returns; never
 *    NULL). Only while the call is alive and unanswered; later messages are discarded.
 *  - half_close (may be NULL): the client ended its side (END_STREAM); no message follows.
 *    Not called when the call died or was answered first.
 * A request message the server cannot accept (too large, compressed, truncated at
 * END_STREAM) ends the call on the handler's behalf with that status: the call becomes dead
 * (see api_call_on_cancel).
 */
struct api_stream_handler {
    void (*start)(void *data, struct api_call *call);
    void (*message)(void *data, struct api_call *call, const uint8_t *msg, size_t len);
    void (*half_close)(void *data, struct api_call *call);
};

/* Runs once when api_server_close() or api_server_shutdown() has finished; s is valid during the
 * call only. */
typedef void (*api_server_close_cb)(struct api_server *s);

/*
 * Allocates a server bound to loop (borrowed; it must outlive the server). cfg is copied and
 * may be NULL for defaults. Returns 0 and sets *out, or LATCH_ENOMEM, or LATCH_EINVAL when
 * the libuv handle cannot be initialised. Free with api_server_close().
 */
int api_server_new(uv_loop_t *loop, const struct api_server_config *cfg, struct api_server **out);

/*
 * Listens on host (an IPv4 or IPv6 literal, borrowed for the call) and port (0 = ephemeral).
 * Sets *bound_port (may be NULL) to the port actually bound. Call at most once. Returns 0,
 * LATCH_EINVAL (bad address, bind or listen failed; the reason is logged), LATCH_EEXIST
 * (address in use) or LATCH_ESTATE (already listening or closing).
 */
int api_server_listen(struct api_server *s, const char *host, int port, int *bound_port);

/*
 * Like api_server_listen, for TLS (ALPN h2; client certificates as tls was made). tls is
 * borrowed and must outlive the server; api_tls_ctx_reload() on it changes the certificate
 * for new connections. A server may listen on any number of addresses, each h2c or TLS.
 */
int api_server_listen_tls(
    struct api_server *s, const char *host, int port, struct api_tls_ctx *tls, int *bound_port);

/*
 * Serves one already connected stream socket fd (TCP or Unix; taken over, closed by the
 * server) with tls (borrowed, NULL for h2c): inherited sockets and the fuzzer. Counts toward
 * max_connections. Returns 0, LATCH_ETOOBIG (over max_connections; fd is closed),
 * LATCH_ESTATE (closing), LATCH_EINVAL (fd unusable) or LATCH_ENOMEM.
 */
int api_server_adopt(struct api_server *s, int fd, struct api_tls_ctx *tls);

/*
 * Routes requests whose :path equals path (copied; "/pkg.Service/Method") to handler with
 * data (borrowed, passed back unchanged). Returns 0, LATCH_ENOMEM, LATCH_EINVAL (empty or
 * longer than API_SERVER_PATH_MAX) or LATCH_EEXIST (path already registered).
 */
int api_server_register_unary(struct api_server *s,
                              const char *path,
                              api_unary_fn handler,
                              void *data);

/*
 * Like api_server_register_unary, for a server-streaming method: handler runs once with the
 * request; it (now or later) queues any number of messages with api_call_send() and ends the
 * call with exactly one api_call_finish() (api_call_fail() is taken as a finish with that
 * status). api_call_reply() must not be used on such a call.
 */
int api_server_register_server_stream(struct api_server *s,
                                      const char *path,
                                      api_unary_fn handler,
                                      void *data);

/*
 * Routes a client-streaming method (answered with api_call_reply or api_call_fail) or a
 * bidirectional one (answered with api_call_send and api_call_finish) to handler (copied) with
 * data (borrowed). Returns as api_server_register_unary, and LATCH_EINVAL without start or
 * message.
 */
int api_server_register_client_stream(struct api_server *s,
                                      const char *path,
                                      const struct api_stream_handler *handler,
                                      void *data);
int api_server_register_bidi_stream(struct api_server *s,
                                    const char *path,
                                    const struct api_stream_handler *handler,
                                    void *data);

/*
 * Called once per call of a registered method when its handler answers it (reply, fail or
 * finish, also when the call had already died: then with the status the handler gave), with
 * the method's path (borrowed for the call), the gRPC status and the nanoseconds since the
 * handler took the call. Calls of unknown methods and calls the server refused before any
 * handler saw them are not observed. For per-method request metrics. Loop thread.
 */
typedef void (*api_call_observer_fn)(void *data,
                                     const char *path,
                                     int grpc_status,
                                     uint64_t duration_ns);

/* Sets (or clears, with NULL) s's observer; data is borrowed. */
void api_server_set_observer(struct api_server *s, api_call_observer_fn fn, void *data);

/*
 * Stops listening and closes every connection at once (no graceful GOAWAY drain). Calls
 * still held by handlers become dead: answering them later is safe and frees them. done_cb
 * (may be NULL) runs after every handle has closed; s is freed right after it returns.
 */
void api_server_close(struct api_server *s, api_server_close_cb done_cb);

/*
 * Graceful close: stops listening, sends every connection a GOAWAY shutdown notice (so peers
 * open no new streams) and lets the calls in flight finish. A connection with no open stream
 * left gets its final GOAWAY (last processed stream id) and closes once that is written.
 * After drain_ms every remaining connection is closed at once, as by api_server_close (its
 * calls become dead). done_cb (may be NULL) runs after every handle has closed; s is freed
 * right after it returns. Call at most once, and not after api_server_close().
 */
void api_server_shutdown(struct api_server *s, uint64_t drain_ms, api_server_close_cb done_cb);

/*
 * Answers call with one message (resp, len bytes, copied; resp may be NULL when len is 0):
 * HEADERS(:status 200, content-type application/grpc), DATA(prefix + message), trailers
 * (grpc-status 0). Consumes call in every case: it must not be used afterwards. Returns 0,
 * LATCH_ESTATE when the stream is already gone (reset by the peer or its connection closed;
 * nothing is sent; also after the deadline expired), LATCH_ETOOBIG (len over
 * max_send_msg_size; RESOURCE_EXHAUSTED is sent instead) or LATCH_ENOMEM (the stream is reset
 * instead). Answers of unary and client-streaming calls.
 */
int api_call_reply(struct api_call *call, const uint8_t *resp, size_t len);

/*
 * Answers call with a trailers-only error: :status 200, content-type application/grpc,
 * grpc-status grpc_status (1–16), grpc-message message (NUL-terminated, borrowed for the
 * call, percent-encoded here, truncated to 2 KiB encoded; NULL means none). Consumes call in
 * every case. Returns 0, LATCH_ESTATE (stream gone or deadline expired, nothing sent) or
 * LATCH_ENOMEM (the stream is reset instead).
 */
int api_call_fail(struct api_call *call, int grpc_status, const char *message);

/*
 * Queues one response message (msg, len bytes, copied with its 5-byte prefix; msg may be NULL
 * when len is 0) on a server-streaming call; HEADERS go out with the first send or the finish.
 * Never drops a message: *would_block (may be NULL) is set to true when the queue now holds
 * more than max_stream_queue_bytes, false otherwise; the producer should then pause until
 * api_call_on_writable() calls back. Does not consume call. Returns 0, LATCH_ESTATE (the call
 * is dead: stream gone, connection closed or deadline expired; the message is discarded; the
 * call must still be finished), LATCH_ETOOBIG (len over max_send_msg_size) or LATCH_ENOMEM.
 */
int api_call_send(struct api_call *call, const uint8_t *msg, size_t len, bool *would_block);

/*
 * Runs cb(call, data) once, from a loop callback (never from inside api_call_send or
 * nghttp2), when the queue of a server-streaming call has fallen below half of
 * max_stream_queue_bytes, or at once (on the next loop iteration) when it already is or the
 * call is dead, so a paused producer resumes without polling. A later registration replaces
 * an earlier one that has not run; api_call_finish() cancels it. data is borrowed.
 */
void api_call_on_writable(struct api_call *call,
                          void (*cb)(struct api_call *call, void *data),
                          void *data);

/*
 * Ends a server-streaming call: what is queued is still sent, then trailers with grpc-status
 * grpc_status (0–16) and, when non-OK, grpc-message message (percent-encoded as for
 * api_call_fail; NULL means none). With nothing ever sent the answer is trailers-only.
 * Consumes call in every case. Returns 0, LATCH_ESTATE (the call was dead; it is freed) or
 * LATCH_ENOMEM (the stream is reset instead).
 */
int api_call_finish(struct api_call *call, int grpc_status, const char *message);

/*
 * Runs cb(call, data) once, from a loop callback, when call dies before it was answered: the
 * client reset the stream or its connection closed, the deadline passed, the server ended it
 * over a bad request message, or the server closed. The handler must still answer the call
 * (that returns LATCH_ESTATE and frees it); answering first cancels the callback. A later
 * registration replaces an earlier one. For calls a handler keeps waiting (a blocked lock, a
 * watch), so their state can be dropped at once. data is borrowed.
 */
void api_call_on_cancel(struct api_call *call,
                        void (*cb)(struct api_call *call, void *data),
                        void *data);

/*
 * Receive flow control for client-streaming and bidirectional calls. While paused, the bytes
 * of call's request stream are not returned to its HTTP/2 window (the connection's window is,
 * so other streams go on), which stops the client once it has sent one stream window
 * (1 MiB) more; messages within that window are still delivered. A bidirectional handler
 * whose api_call_send reports would_block pauses and resumes from api_call_on_writable, so a
 * client that sends without reading cannot make the server buffer without bound.
 */
void api_call_pause_recv(struct api_call *call);
void api_call_resume_recv(struct api_call *call);

/* Bytes a streaming response has queued and nghttp2 has not yet taken (0 for other calls). */
size_t api_call_queued_bytes(const struct api_call *call);

/* A pointer the handler keeps with the call (NULL until set); never touched by the server. */
void api_call_set_context(struct api_call *call, void *ctx);
void *api_call_context(const struct api_call *call);

/*
 * The value of the first request header named name (lower case, as HTTP/2 requires: "token",
 * "hasleader"), NUL-terminated and owned by call until it is answered, or NULL when absent.
 * Pseudo-headers are not metadata; "-bin" values are returned as sent (base64).
 */
const char *api_call_metadata(const struct api_call *call, const char *name);

/* The request's :path (NUL-terminated, owned by call, valid until the call is answered). */
const char *api_call_path(const struct api_call *call);

/*
 * True when the request carried a valid grpc-timeout; *ms_out then gets it in milliseconds
 * (rounded up). The server enforces it from dispatch: when it passes before the handler
 * answered, the client gets a trailers-only DEADLINE_EXCEEDED "deadline exceeded" and the
 * call becomes dead (api_call_is_alive() false; answering returns LATCH_ESTATE and frees it).
 */
bool api_call_timeout_ms(const struct api_call *call, uint64_t *ms_out);

/* True while the stream can still be answered (not reset, connection open, not expired). */
bool api_call_is_alive(const struct api_call *call);

#endif /* API_GRPC_SERVER_H */
