/*
 * grpc_server.h — a unary and server-streaming gRPC server over cleartext HTTP/2 (h2c, prior
 * knowledge) on the caller's libuv loop (ETCD-API.md §5, §6, §9.2).
 *
 * One nghttp2 server session per accepted TCP connection. The server sends its SETTINGS
 * first (MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 1 MiB), sets TCP_NODELAY and
 * coalesces everything nghttp2 has pending into one uv_write per flush. A request's
 * message is collected into a buffer of exactly its declared length (allocated once the
 * 5-byte prefix arrived); on END_STREAM the handler registered for its :path runs with the
 * request bytes. The handler answers then or later, exactly once, with api_call_reply() or
 * api_call_fail().
 *
 * Requests that are not gRPC are answered as grpc-go does: a content-type other than
 * application/grpc[+…|;…] gets HTTP 415, a :method other than POST gets HTTP 405 (both with
 * grpc-status/grpc-message headers too, and END_STREAM).
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#ifndef API_GRPC_SERVER_H
#define API_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Largest request message accepted by default: etcd's 1.5 MiB + 512 KiB (ETCD-API.md §5). */
#define API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT ((size_t)(3u << 19) + (512u << 10))

#define API_SERVER_MAX_CONNECTIONS_DEFAULT  1024
#define API_SERVER_MAX_CONN_OUTPUT_DEFAULT  ((size_t)4 << 20)
#define API_SERVER_MAX_STREAM_QUEUE_DEFAULT ((size_t)1 << 20)

/* Longest :path kept; longer paths are answered UNIMPLEMENTED like any unknown method. */
#define API_SERVER_PATH_MAX 256

struct api_server;
struct api_call;

struct api_server_config {
    /* Largest request message in bytes; 0 selects API_SERVER_MAX_RECV_MSG_SIZE_DEFAULT. */
    size_t max_recv_msg_size;
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
};

/*
 * A unary handler. req (req_len bytes, possibly 0) is borrowed until the handler returns;
 * copy it to answer later. call is owned by the server until the handler passes it back
 * with exactly one api_call_reply() or api_call_fail(), now or from a later loop callback.
 * A call that is never answered leaks.
 */
typedef void (*api_unary_fn)(void *data, struct api_call *call, const uint8_t *req, size_t req_len);

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
 * nothing is sent; also after the deadline expired), LATCH_ETOOBIG (len over 4 GiB - 1; INTERNAL is
 * sent instead) or LATCH_ENOMEM (the stream is reset instead).
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
 * call must still be finished), LATCH_ETOOBIG (len over 4 GiB - 1) or LATCH_ENOMEM.
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
