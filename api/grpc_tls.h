/*
 * grpc_tls.h — TLS for the gRPC layer: OpenSSL 3 driven through memory BIOs, with no socket of
 * its own (ETCD-API.md §7). The connection code (server and client) moves bytes between the
 * socket and a struct api_tls:
 *
 *     network bytes in  -> api_tls_feed()   -> api_tls_read()  -> plaintext for nghttp2
 *     nghttp2 output    -> api_tls_write()  -> api_tls_out_take() -> network bytes out
 *
 * After every feed, read or write the caller drains api_tls_out_take() to the socket: the
 * handshake, TLS 1.3 session tickets, key updates and alerts are produced at any of them.
 * Nothing may be written before api_tls_handshake_done() (nghttp2 keeps its frames queued
 * until then: ETCD-API.md §7, the frames-lost-before-handshake trap).
 *
 * Both sides negotiate ALPN "h2" (required by grpcio/C-core clients) and TLS >= 1.2. A server
 * context with a CA file and verify_peer requires and verifies a client certificate (mTLS). A
 * client context verifies the server against its CA file (or the system store when none) and,
 * when server_name is set, checks it against the certificate's subjectAltName (an IP literal
 * as an IP SAN, otherwise a DNS name) and sends it as SNI when it is not an IP literal.
 *
 * Contexts are reference counted: every struct api_tls holds one, so api_tls_ctx_free() may
 * run while connections made from it are still open. Nothing here is thread-safe beyond what
 * OpenSSL itself guarantees; use a context and its connections from one thread.
 */
#ifndef API_GRPC_TLS_H
#define API_GRPC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct api_tls_ctx;
struct api_tls;

/* Longest error text any function here writes (NUL included); longer texts are cut. */
#define API_TLS_ERR_MAX 256

struct api_tls_config {
    /* PEM certificate chain and private key. Required for a server; for a client they are the
     * optional client certificate (mTLS). Borrowed for the call; the paths are copied so
     * api_tls_ctx_reload() can read them again. */
    const char *cert_file;
    const char *key_file;
    /* PEM CA bundle. Server: the CAs client certificates must chain to. Client: the CAs the
     * server certificate must chain to; NULL uses OpenSSL's default verify paths. */
    const char *ca_file;
    /* Server only: require a client certificate that verifies against ca_file (mTLS). A
     * handshake without one, or with one that does not verify, fails. Needs ca_file. */
    bool verify_peer;
    /* Client only: the name to verify and send as SNI ("127.0.0.1", "localhost", ...). NULL
     * skips the name check (the chain is still verified). */
    const char *server_name;
};

/*
 * Makes a context for the server side (server = true) or the client side, loading every file
 * in cfg now. Returns 0 and sets *out, or LATCH_EINVAL (missing cert/key for a server, only
 * one of cert/key for a client, verify_peer without ca_file), LATCH_ETLS (a file could not be
 * read or parsed, or the key does not match the certificate; err gets OpenSSL's reason
 * naming the file) or LATCH_ENOMEM; *out is NULL on failure. err (may be NULL) gets up to
 * min(err_cap, API_TLS_ERR_MAX) bytes, NUL-terminated, on failure.
 */
int api_tls_ctx_new(const struct api_tls_config *cfg,
                    bool server,
                    struct api_tls_ctx **out,
                    char *err,
                    size_t err_cap);

/*
 * Reads the certificate, key and CA files again (certificate rotation without restart).
 * Connections made afterwards use the new material; open ones keep what they negotiated. On
 * any failure the context keeps its previous material and the error is returned as for
 * api_tls_ctx_new.
 */
int api_tls_ctx_reload(struct api_tls_ctx *ctx, char *err, size_t err_cap);

/* Drops the caller's reference; the context is freed when no connection holds it. After
 * this the caller must not use ctx again (no api_tls_new, no reload). NULL is a no-op. */
void api_tls_ctx_free(struct api_tls_ctx *ctx);

/* Starts one connection (server or client side, as its context). Returns 0 and sets *out, or
 * LATCH_ENOMEM. A client connection produces its ClientHello at once (api_tls_out_take); if
 * it cannot, the first api_tls_read reports why. */
int api_tls_new(struct api_tls_ctx *ctx, struct api_tls **out);

/* Like api_tls_new, for a client connection that checks the server certificate against host
 * (an IP literal against an IP SAN, otherwise a DNS name, which is also sent as SNI) instead
 * of the context's server_name: one context dialing several servers (Raft peers) checks each
 * against the host it dialed. host NULL is api_tls_new; ignored for a server context. A
 * mismatch fails the handshake (LATCH_ETLS) and api_tls_error() names it ("hostname
 * mismatch", "IP address mismatch"). */
int api_tls_new_host(struct api_tls_ctx *ctx, const char *host, struct api_tls **out);

/* Frees a connection (no close_notify is produced: call api_tls_shutdown first for one).
 * NULL is a no-op. */
void api_tls_free(struct api_tls *t);

/* Hands len bytes received from the network to the connection (copied). Returns 0 or
 * LATCH_ENOMEM. */
int api_tls_feed(struct api_tls *t, const uint8_t *data, size_t len);

/*
 * Advances the handshake with what was fed, then decrypts into out (cap > 0 bytes). Returns
 * the number of plaintext bytes (> 0; call again until it returns 0), 0 when nothing more can
 * be read now (more network bytes are needed, or the handshake is still going), LATCH_ESHUTDOWN
 * when the peer sent close_notify, LATCH_ETLS when the handshake failed (bad or missing
 * certificate, no common ALPN/protocol/cipher) or LATCH_EPROTO on any other TLS error. After
 * an error, drain api_tls_out_take() (it may hold an alert) and close the connection;
 * api_tls_error() tells why. Errors are sticky: later reads return the same code.
 *
 * One call can finish the handshake and return the first plaintext bytes. With TLS 1.3 a
 * client finishes its handshake before the server has checked the client certificate, so a
 * client can see api_tls_handshake_done() and then LATCH_ETLS from a later read (the server's
 * alert). After LATCH_ESHUTDOWN, api_tls_write still works until api_tls_shutdown (half close).
 */
ssize_t api_tls_read(struct api_tls *t, uint8_t *out, size_t cap);

/* Encrypts len plaintext bytes (all of them or none). Only after the handshake is done.
 * Returns 0, LATCH_ESTATE (handshake not done, after an error, or after api_tls_shutdown) or
 * LATCH_EPROTO. */
int api_tls_write(struct api_tls *t, const uint8_t *data, size_t len);

/* Produces a close_notify alert (take it with api_tls_out_take). Safe at any time: before the
 * handshake is done, after an error or when already called it produces nothing (OpenSSL can
 * send close_notify only on an established connection). Later writes return LATCH_ESTATE. */
void api_tls_shutdown(struct api_tls *t);

/* True once the handshake has completed successfully. */
bool api_tls_handshake_done(const struct api_tls *t);

/* True when the negotiated ALPN protocol is "h2" (only meaningful after the handshake). */
bool api_tls_alpn_is_h2(const struct api_tls *t);

/* Bytes waiting to go to the network. */
size_t api_tls_out_pending(const struct api_tls *t);

/* Moves up to cap waiting network bytes into out; returns how many. */
size_t api_tls_out_take(struct api_tls *t, uint8_t *out, size_t cap);

/* The reason for the last LATCH_ETLS/LATCH_EPROTO (OpenSSL's text, with the verify result for
 * certificate failures), or "" when none; owned by t. */
const char *api_tls_error(const struct api_tls *t);

#endif /* API_GRPC_TLS_H */
