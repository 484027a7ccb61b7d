/*
 * grpc_transport.h — the byte pump of one HTTP/2 connection, shared by the gRPC server and
 * client halves: a libuv stream (TCP or a Unix socket), optionally TLS through api_tls, and
 * the owner's nghttp2 session.
 *
 *   read:  socket -> [api_tls_feed/api_tls_read] -> nghttp2_session_mem_recv -> flush
 *   flush: nghttp2_session_mem_send (gathered) -> [api_tls_write] -> one uv_write
 *
 * Rules it keeps (ETCD-API.md §5–§7):
 *  - one uv_write per flush, everything nghttp2 has pending coalesced; TCP_NODELAY on TCP;
 *  - nothing is pulled from nghttp2 before the TLS handshake is done (the frames stay queued
 *    in nghttp2, so none is lost), and the TLS output is drained after every TLS call;
 *  - no flush while nghttp2_session_mem_recv runs (nghttp2 must not be re-entered); the read
 *    path feeds nghttp2 in slices and flushes after each, so the first answers of a large
 *    batch go out while the rest is processed;
 *  - output is capped: while the bytes handed to uv_write but not yet written reach
 *    max_out, nothing more is pulled from nghttp2 (which keeps its frames and, through HTTP/2
 *    flow control, holds the peer back); the write callback resumes.
 *
 * Ownership: the owner embeds struct api_transport (usually first), makes its session with
 * api_transport_session_new after api_transport_init, and frees itself from ops->closed,
 * which runs once from the handle's close callback after every pending write callback. The
 * transport owns the session and the api_tls (both freed before ops->closed; deleting the
 * session runs no nghttp2 callback). The read buffer is borrowed from the owner and may be shared
 * by every transport of one loop: libuv hands each read to read_cb before the next allocation.
 *
 * Everything runs on the loop's thread.
 */
#ifndef API_GRPC_TRANSPORT_H
#define API_GRPC_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

struct api_tls;
struct api_transport;

/* How long a connection closing after a protocol error (or a drain) may wait for its last
 * writes: a peer that does not read must not hold the connection, its slot and its output
 * buffer forever. */
#define API_TRANSPORT_LINGER_MS 2000

/* Bytes handed to nghttp2 between two flushes of one read (see session_recv). */
#define API_TRANSPORT_RECV_SLICE 1024

/* Plaintext chunk size out of TLS: one full TLS record. */
#define API_TRANSPORT_TLS_CHUNK 16384

/* A read buffer shared by the transports of one owner (see the header comment). */
struct api_transport_buf {
    uint8_t in[65536];
    uint8_t plain[API_TRANSPORT_TLS_CHUNK];
};

struct api_transport_ops {
    /*
     * Called by every flush after what nghttp2 had pending was gathered and before it is
     * written (never while output is blocked). Returns true when it submitted more frames
     * that belong in this flush (the server's final GOAWAY of a drain); they are gathered
     * and it is called again. May be NULL.
     */
    bool (*after_gather)(struct api_transport *t);
    /* The transport started closing, for whatever reason (the owner's call, EOF, a read or
     * write error, a protocol error): the session is not read or written again. Runs once,
     * before the close is issued. May be NULL. */
    void (*closing)(struct api_transport *t);
    /* The TLS handshake completed (not called for cleartext). May be NULL. */
    void (*handshake_done)(struct api_transport *t);
    /* The handle is closed and every write callback has run: free the owner. Required. */
    void (*closed)(struct api_transport *t);
};

struct api_transport {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    nghttp2_session *session; /* owned; made by api_transport_session_new */
    struct api_tls *tls;      /* owned; NULL for cleartext */
    const struct api_transport_ops *ops;
    void *owner;                  /* for the owner's callbacks */
    struct api_transport_buf *io; /* borrowed read buffers */
    size_t max_out;               /* cap on out_bytes (see the header comment) */
    size_t writes_pending;
    size_t out_bytes;       /* bytes in pending uv_writes */
    uint8_t *plain;         /* TLS only: gathered nghttp2 output before encryption */
    size_t plain_cap;       /* its allocation */
    bool is_tcp;            /* h is a uv_tcp_t (else a uv_pipe_t) */
    bool started;           /* reading */
    bool hs_done;           /* TLS handshake done, or cleartext */
    bool out_blocked;       /* a flush stopped at max_out; the write callback resumes it */
    bool in_recv;           /* inside nghttp2_session_mem_recv: do not flush */
    bool close_after_flush; /* set by the owner: close once this flush is written */
    bool close_pending;     /* close once the pending writes are done */
    bool closing;           /* uv_close issued */
    bool linger_open;       /* linger initialised and not yet closed */
    int handles;            /* handles not yet closed: h, and linger while open */
    uv_timer_t linger;      /* bounds close_pending to API_TRANSPORT_LINGER_MS */
};

/*
 * Initialises t's handle as a TCP handle (is_tcp) or a pipe (for a connected Unix stream
 * socket) on loop. io is borrowed; max_out > 0. Returns 0 or LATCH_EINVAL. From here on the
 * transport must be closed with api_transport_close (ops->closed then runs).
 */
int api_transport_init(struct api_transport *t,
                       uv_loop_t *loop,
                       bool is_tcp,
                       const struct api_transport_ops *ops,
                       void *owner,
                       struct api_transport_buf *io,
                       size_t max_out);

/*
 * Makes t->session on the owner's callbacks cbs (borrowed; user_data is the owner), server or
 * client side, with windows returned by hand (NO_AUTO_WINDOW_UPDATE: the owner calls
 * nghttp2_session_consume_* as it takes data), submits the SETTINGS iv[0..n) and raises the
 * connection's receive window to conn_window. Returns 0 or LATCH_ENOMEM (the owner closes
 * t, which deletes a session made before the failure).
 */
int api_transport_session_new(struct api_transport *t,
                              const nghttp2_session_callbacks *cbs,
                              bool server,
                              const nghttp2_settings_entry *iv,
                              size_t n,
                              int32_t conn_window);

/*
 * Starts reading from the connected handle and flushes (a server's SETTINGS go out first).
 * tls (may be NULL) is taken over: the transport frees it. session must be set. Returns 0 or
 * LATCH_EINVAL (the caller closes t).
 */
int api_transport_start(struct api_transport *t, struct api_tls *tls);

/* Writes everything nghttp2 has pending (see the header comment). A no-op while closing,
 * inside mem_recv, or before the TLS handshake (only TLS output is written then). */
void api_transport_flush(struct api_transport *t);

/* Closes at once; pending writes are cancelled. Idempotent. */
void api_transport_close(struct api_transport *t);

/* Stops reading and closes once the pending writes are done (after a GOAWAY), or after
 * API_TRANSPORT_LINGER_MS when they are not. */
void api_transport_close_after_writes(struct api_transport *t);

#endif /* API_GRPC_TRANSPORT_H */
