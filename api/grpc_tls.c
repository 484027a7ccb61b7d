/*
 * grpc_tls.c — TLS for the gRPC layer on OpenSSL 3 memory BIOs (see grpc_tls.h).
 *
 * Ownership and lifetimes:
 *  - struct api_tls_ctx owns one SSL_CTX and copies of the file paths and server name from
 *    its config. It is reference counted: the caller holds one reference until
 *    api_tls_ctx_free(), every struct api_tls holds one until api_tls_free(). The struct is
 *    freed when the count reaches zero.
 *  - api_tls_ctx_reload() builds a complete new SSL_CTX and only then swaps it in, dropping
 *    our reference to the old one. Connections are unaffected: SSL_new() takes OpenSSL's own
 *    reference on the SSL_CTX it was made from, so an old SSL_CTX lives until its last SSL is
 *    freed, and a connection keeps the certificate and settings it was created with.
 *  - struct api_tls owns its SSL; the SSL owns both memory BIOs (SSL_set_bio), so rbio and
 *    wbio here are borrowed pointers valid until SSL_free(). The memory BIOs grow as needed:
 *    the caller bounds what it feeds and drains the output after every call.
 *
 * Errors: OpenSSL reports through a per-thread error queue. Each entry point clears it before
 * calling into OpenSSL, so an error is never blamed on a later, unrelated call, and clears it
 * again after turning an error into text. A connection error is sticky: after api_tls_read()
 * fails, every later read returns the same code and writes return LATCH_ESTATE (OpenSSL must
 * not be driven after a fatal error, not even by SSL_shutdown()).
 *
 * Out-of-memory policy: allocation failures in a context or connection constructor return
 * LATCH_ENOMEM with nothing allocated; a memory BIO failing to grow while feeding returns
 * LATCH_ENOMEM; one failing inside SSL_read/SSL_write surfaces as an OpenSSL error
 * (LATCH_EPROTO) and ends the connection.
 */
#define _POSIX_C_SOURCE 200809L

#include "grpc_tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "latch_assert.h"
#include "latch_error.h"

/* ALPN wire format: length-prefixed protocol names. We speak only HTTP/2. */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* TLS 1.2 suites: ECDHE with an AEAD only, which is what RFC 9113 §9.2.2 allows for HTTP/2
 * (the other suites are on its deny list and grpc-go/Go refuse them). TLS 1.3 suites are all
 * AEAD and keep OpenSSL's default list. */
static const char tls12_ciphers[] = "ECDHE+AESGCM:ECDHE+CHACHA20";

/* Session ID context for the server's session cache: OpenSSL refuses to resume a session on
 * a server that verifies client certificates unless one is set. */
static const unsigned char session_id_ctx[] = "latch-grpc";

struct api_tls_ctx {
    SSL_CTX *ssl_ctx; /* owned; replaced by a successful reload */
    unsigned refs;    /* the caller's reference (until released) plus one per connection */
    bool released;    /* api_tls_ctx_free() ran: no new connections may be made */
    bool server;
    bool verify_peer;
    bool server_name_is_ip;
    char *cert_file; /* owned copies of the config strings; NULL when not given */
    char *key_file;
    char *ca_file;
    char *server_name;
};

struct api_tls {
    struct api_tls_ctx *ctx; /* one reference held */
    SSL *ssl;                /* owned */
    BIO *rbio;               /* network bytes in; owned by ssl */
    BIO *wbio;               /* network bytes out; owned by ssl */
    bool hs_done;
    bool shutdown_sent;
    int failed; /* 0, or the sticky error code of the first failure */
    char err[API_TLS_ERR_MAX];
};

/* ---- error text ------------------------------------------------------------------------- */

/* Copies text into the caller's err buffer (may be NULL), cut at API_TLS_ERR_MAX. */
static void err_copy(char *err, size_t err_cap, const char *text)
{
    if (err == NULL || err_cap == 0) {
        return;
    }
    size_t cap = err_cap < API_TLS_ERR_MAX ? err_cap : API_TLS_ERR_MAX;
    snprintf(err, cap, "%s", text);
}

/* Appends printf-formatted text to buf (cap bytes, always NUL-terminated), cutting silently. */
LATCH_PRINTF(3, 4) static void text_append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t used = strnlen(buf, cap);
    if (used + 1 >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

/*
 * Writes "prefix: <OpenSSL's first queued error>" into buf and empties the error queue. The
 * first queued error is the root cause (later entries are the callers that passed it up, e.g.
 * "PEM lib" after "no start line"). what is used when the queue is empty.
 */
static void openssl_text(char *buf, size_t cap, const char *prefix, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[API_TLS_ERR_MAX];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else {
        snprintf(reason, sizeof(reason), "%s", what);
    }
    buf[0] = '\0';
    if (prefix != NULL) {
        text_append(buf, cap, "%s: ", prefix);
    }
    text_append(buf, cap, "%s", reason);
    ERR_clear_error();
}

/* ---- contexts --------------------------------------------------------------------------- */

/* A private key with a passphrase would make OpenSSL prompt on the terminal; a server must
 * fail instead, so this callback supplies no passphrase. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

/*
 * Server ALPN choice: "h2" when the client offers it. A client that offers ALPN without h2
 * gets a fatal no_application_protocol alert (it wants a protocol we do not speak); a client
 * that offers no ALPN at all never reaches this callback and is accepted.
 */
static int alpn_select_cb(SSL *ssl,
                          const unsigned char **out,
                          unsigned char *outlen,
                          const unsigned char *in,
                          unsigned int inlen,
                          void *arg)
{
    unsigned char *chosen = NULL;
    unsigned char chosen_len = 0;

    (void)ssl;
    (void)arg;
    if (inlen == 0) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (SSL_select_next_proto(&chosen, &chosen_len, alpn_h2, sizeof(alpn_h2), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    /* chosen points into alpn_h2 (static) or into in (valid for the handshake). */
    *out = chosen;
    *outlen = chosen_len;
    return SSL_TLSEXT_ERR_OK;
}

/* Settings every context gets, server or client. Returns 0 or LATCH_ETLS/LATCH_ENOMEM. */
static int ctx_common(SSL_CTX *sc, char *text, size_t cap)
{
    if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(sc, tls12_ciphers) != 1) {
        openssl_text(text, cap, NULL, "cannot configure protocol versions or ciphers");
        return LATCH_ETLS;
    }
    /* Renegotiation is TLS 1.2 only, unused by HTTP/2 (RFC 9113 §9.2.1 forbids it) and a
     * CPU sink when a peer starts it; compression is off for CRIME/BREACH. Both are stated
     * rather than left to OpenSSL's defaults. */
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_default_passwd_cb(sc, no_passphrase_cb);
    return 0;
}

/* Loads cert_file (a PEM chain) and key_file and checks that they belong together. */
static int ctx_load_keypair(SSL_CTX *sc, const struct api_tls_ctx *c, char *text, size_t cap)
{
    if (SSL_CTX_use_certificate_chain_file(sc, c->cert_file) != 1) {
        openssl_text(text, cap, c->cert_file, "cannot load certificate");
        return LATCH_ETLS;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, c->key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_text(text, cap, c->key_file, "cannot load private key");
        return LATCH_ETLS;
    }
    if (SSL_CTX_check_private_key(sc) != 1) {
        char prefix[API_TLS_ERR_MAX];
        snprintf(prefix, sizeof(prefix), "%s does not match %s", c->key_file, c->cert_file);
        openssl_text(text, cap, prefix, "key mismatch");
        return LATCH_ETLS;
    }
    return 0;
}

/* The server half of ctx_build: keypair, ALPN, and client verification for mTLS. */
static int ctx_build_server(SSL_CTX *sc, const struct api_tls_ctx *c, char *text, size_t cap)
{
    int rc = ctx_load_keypair(sc, c, text, cap);
    if (rc != 0) {
        return rc;
    }
    SSL_CTX_set_alpn_select_cb(sc, alpn_select_cb, NULL);
    SSL_CTX_set_options(sc, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_session_id_context(sc, session_id_ctx, sizeof(session_id_ctx) - 1) != 1) {
        openssl_text(text, cap, NULL, "cannot set session id context");
        return LATCH_ENOMEM;
    }
    if (c->ca_file == NULL) {
        SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (SSL_CTX_load_verify_locations(sc, c->ca_file, NULL) != 1) {
        openssl_text(text, cap, c->ca_file, "cannot load CA file");
        return LATCH_ETLS;
    }
    if (!c->verify_peer) {
        SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    /* The CA names go into the CertificateRequest so a client holding several certificates
     * can pick the right one. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->ca_file);
    if (names == NULL) {
        openssl_text(text, cap, c->ca_file, "no CA certificate in file");
        return LATCH_ETLS;
    }
    SSL_CTX_set_client_CA_list(sc, names); /* takes ownership of names */
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

/* The client half of ctx_build: trust anchors, optional client certificate, ALPN. The name
 * check and SNI are per connection (api_tls_new). */
static int ctx_build_client(SSL_CTX *sc, const struct api_tls_ctx *c, char *text, size_t cap)
{
    if (c->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(sc, c->ca_file, NULL) != 1) {
            openssl_text(text, cap, c->ca_file, "cannot load CA file");
            return LATCH_ETLS;
        }
    } else if (SSL_CTX_set_default_verify_paths(sc) != 1) {
        openssl_text(text, cap, NULL, "cannot load the system CA store");
        return LATCH_ETLS;
    }
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    if (c->cert_file != NULL) {
        int rc = ctx_load_keypair(sc, c, text, cap);
        if (rc != 0) {
            return rc;
        }
    }
    /* Unlike most of OpenSSL, SSL_CTX_set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(sc, alpn_h2, sizeof(alpn_h2)) != 0) {
        openssl_text(text, cap, NULL, "cannot set ALPN");
        return LATCH_ENOMEM;
    }
    return 0;
}

/* Builds a complete SSL_CTX from c's files into *out. On failure nothing is left allocated
 * and text holds the reason. */
static int ctx_build(const struct api_tls_ctx *c, SSL_CTX **out, char *text, size_t cap)
{
    ERR_clear_error();
    SSL_CTX *sc = SSL_CTX_new(c->server ? TLS_server_method() : TLS_client_method());
    if (sc == NULL) {
        openssl_text(text, cap, NULL, "out of memory");
        return LATCH_ENOMEM;
    }
    int rc = ctx_common(sc, text, cap);
    if (rc == 0) {
        rc = c->server ? ctx_build_server(sc, c, text, cap) : ctx_build_client(sc, c, text, cap);
    }
    if (rc != 0) {
        SSL_CTX_free(sc);
        ERR_clear_error();
        return rc;
    }
    *out = sc;
    return 0;
}

/* Frees the struct and everything it owns; only when no reference is left. */
static void ctx_destroy(struct api_tls_ctx *c)
{
    SSL_CTX_free(c->ssl_ctx);
    free(c->cert_file);
    free(c->key_file);
    free(c->ca_file);
    free(c->server_name);
    free(c);
}

static void ctx_unref(struct api_tls_ctx *c)
{
    LATCH_ASSERTF(c->refs > 0, "refs=%u", c->refs);
    c->refs--;
    if (c->refs == 0) {
        ctx_destroy(c);
    }
}

/* strdup that keeps NULL as NULL; returns false when out of memory. */
static bool dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL) {
        return true;
    }
    *out = strdup(s);
    return *out != NULL;
}

/* Refuses configs that cannot work, before any file is touched. Returns 0 or LATCH_EINVAL. */
static int config_check(const struct api_tls_config *cfg, bool server, char *text, size_t cap)
{
    if (server && (cfg->cert_file == NULL || cfg->key_file == NULL)) {
        snprintf(text, cap, "a server needs cert_file and key_file");
        return LATCH_EINVAL;
    }
    if (!server && (cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(text, cap, "a client certificate needs both cert_file and key_file");
        return LATCH_EINVAL;
    }
    if (server && cfg->verify_peer && cfg->ca_file == NULL) {
        snprintf(text, cap, "verify_peer needs ca_file");
        return LATCH_EINVAL;
    }
    return 0;
}

int api_tls_ctx_new(const struct api_tls_config *cfg,
                    bool server,
                    struct api_tls_ctx **out,
                    char *err,
                    size_t err_cap)
{
    char text[API_TLS_ERR_MAX] = "";

    LATCH_ASSERT(cfg != NULL);
    LATCH_ASSERT(out != NULL);
    *out = NULL;
    int rc = config_check(cfg, server, text, sizeof(text));
    if (rc != 0) {
        err_copy(err, err_cap, text);
        return rc;
    }
    struct api_tls_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        err_copy(err, err_cap, "out of memory");
        return LATCH_ENOMEM;
    }
    c->refs = 1;
    c->server = server;
    c->verify_peer = server && cfg->verify_peer;
    if (!dup_opt(cfg->cert_file, &c->cert_file) || !dup_opt(cfg->key_file, &c->key_file) ||
        !dup_opt(cfg->ca_file, &c->ca_file) ||
        !dup_opt(server ? NULL : cfg->server_name, &c->server_name)) {
        ctx_destroy(c);
        err_copy(err, err_cap, "out of memory");
        return LATCH_ENOMEM;
    }
    if (c->server_name != NULL) {
        unsigned char addr[16];
        c->server_name_is_ip = inet_pton(AF_INET, c->server_name, addr) == 1 ||
                               inet_pton(AF_INET6, c->server_name, addr) == 1;
    }
    rc = ctx_build(c, &c->ssl_ctx, text, sizeof(text));
    if (rc != 0) {
        ctx_destroy(c);
        err_copy(err, err_cap, text);
        return rc;
    }
    *out = c;
    return 0;
}

int api_tls_ctx_reload(struct api_tls_ctx *ctx, char *err, size_t err_cap)
{
    char text[API_TLS_ERR_MAX] = "";
    SSL_CTX *fresh = NULL;

    LATCH_ASSERT(ctx != NULL);
    LATCH_ASSERT(!ctx->released);
    int rc = ctx_build(ctx, &fresh, text, sizeof(text));
    if (rc != 0) {
        err_copy(err, err_cap, text);
        return rc;
    }
    /* Open connections hold OpenSSL's reference on the old SSL_CTX; this drops only ours. */
    SSL_CTX_free(ctx->ssl_ctx);
    ctx->ssl_ctx = fresh;
    return 0;
}

void api_tls_ctx_free(struct api_tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    LATCH_ASSERT(!ctx->released);
    ctx->released = true;
    ctx_unref(ctx);
}

/* ---- connections ------------------------------------------------------------------------ */

/*
 * Records the first failure of t: code, and a text made of OpenSSL's queued reason plus,
 * when certificate verification failed on this side, the verifier's own reason ("hostname
 * mismatch", "unable to get local issuer certificate"), which the queue does not carry.
 */
static int tls_fail(struct api_tls *t, int code, const char *what)
{
    LATCH_ASSERT(code < 0);
    if (t->failed != 0) {
        return t->failed;
    }
    t->failed = code;
    openssl_text(t->err, sizeof(t->err), NULL, what);
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        text_append(t->err, sizeof(t->err), " (certificate: %s)",
                    X509_verify_cert_error_string(vr));
    }
    return code;
}

/* Per-connection client settings: what name the certificate must carry (name; NULL: none),
 * and SNI. */
static bool conn_client_names(SSL *ssl, const char *name, bool is_ip)
{
    if (name == NULL) {
        return true;
    }
    if (is_ip) {
        /* An IP literal must match an IP SAN and is never sent as SNI (RFC 6066 §3). */
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name) == 1 && SSL_set_tlsext_host_name(ssl, name) == 1;
}

/* Drives the handshake one step. Returns 0 (done or waiting for bytes) or a sticky error. */
static int conn_handshake(struct api_tls *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->hs_done = true;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    return tls_fail(t, LATCH_ETLS, "handshake failed");
}

int api_tls_new(struct api_tls_ctx *ctx, struct api_tls **out)
{
    return api_tls_new_host(ctx, NULL, out);
}

int api_tls_new_host(struct api_tls_ctx *ctx, const char *host, struct api_tls **out)
{
    LATCH_ASSERT(ctx != NULL);
    LATCH_ASSERT(out != NULL);
    LATCH_ASSERT(!ctx->released);
    *out = NULL;
    struct api_tls *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return LATCH_ENOMEM;
    }
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return LATCH_ENOMEM;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs from here on */
    const char *name = host != NULL ? host : ctx->server_name;
    bool is_ip = ctx->server_name_is_ip;
    if (host != NULL) {
        unsigned char addr[16];
        is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    }
    if (!ctx->server && !conn_client_names(t->ssl, name, is_ip)) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return LATCH_ENOMEM;
    }
    t->ctx = ctx;
    ctx->refs++;
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        /* Writes the ClientHello now; a failure here is reported by the first read. */
        (void)conn_handshake(t);
    }
    *out = t;
    return 0;
}

void api_tls_free(struct api_tls *t)
{
    if (t == NULL) {
        return;
    }
    SSL_free(t->ssl); /* frees both BIOs and OpenSSL's reference on its SSL_CTX */
    ctx_unref(t->ctx);
    free(t);
}

int api_tls_feed(struct api_tls *t, const uint8_t *data, size_t len)
{
    LATCH_ASSERT(t != NULL);
    LATCH_ASSERT(data != NULL || len == 0);
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        ERR_clear_error();
        int n = BIO_write(t->rbio, data, chunk);
        if (n != chunk) {
            ERR_clear_error();
            return LATCH_ENOMEM;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Alerts that mean the peer refused our certificate or our offer. In TLS 1.3 a client
 * finishes its handshake before the server has checked the client certificate, so the
 * server's verdict reaches the client as one of these alerts on its first read after the
 * handshake: that is still a handshake failure (LATCH_ETLS), not a broken record stream.
 */
static bool is_handshake_alert(unsigned long e)
{
    if (e == 0 || ERR_GET_LIB(e) != ERR_LIB_SSL) {
        return false;
    }
    switch (ERR_GET_REASON(e) - SSL_AD_REASON_OFFSET) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
    case SSL_AD_NO_APPLICATION_PROTOCOL:
        return true;
    default:
        return false;
    }
}

ssize_t api_tls_read(struct api_tls *t, uint8_t *out, size_t cap)
{
    LATCH_ASSERT(t != NULL);
    LATCH_ASSERT(out != NULL);
    LATCH_ASSERT(cap > 0);
    if (t->failed != 0) {
        return t->failed;
    }
    if (!t->hs_done) {
        int rc = conn_handshake(t);
        if (rc != 0 || !t->hs_done) {
            return rc;
        }
    }
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, out, cap > SSIZE_MAX ? SSIZE_MAX : cap, &n) == 1) {
        LATCH_ASSERT(n > 0);
        return (ssize_t)n;
    }
    int e = SSL_get_error(t->ssl, 0);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        /* close_notify: sticky, but with no error text; writes stay allowed (half close). */
        ERR_clear_error();
        return LATCH_ESHUTDOWN;
    default:
        return tls_fail(t, is_handshake_alert(ERR_peek_error()) ? LATCH_ETLS : LATCH_EPROTO,
                        "TLS record error");
    }
}

int api_tls_write(struct api_tls *t, const uint8_t *data, size_t len)
{
    LATCH_ASSERT(t != NULL);
    LATCH_ASSERT(data != NULL || len == 0);
    if (t->failed != 0 || !t->hs_done || t->shutdown_sent) {
        return LATCH_ESTATE;
    }
    if (len == 0) {
        return 0;
    }
    /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write_ex succeeds only once all of data is
     * in records, and a memory wbio never makes it wait, so this is all or nothing. */
    size_t written = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, data, len, &written) == 1) {
        LATCH_ASSERTF(written == len, "written=%zu len=%zu", written, len);
        return 0;
    }
    return tls_fail(t, LATCH_EPROTO, "TLS write failed");
}

void api_tls_shutdown(struct api_tls *t)
{
    LATCH_ASSERT(t != NULL);
    /* OpenSSL refuses SSL_shutdown during the handshake and forbids it after a fatal error;
     * in both cases there is nothing to say to the peer. Later writes are refused either
     * way. */
    bool can_send = t->failed == 0 && t->hs_done && !t->shutdown_sent;
    t->shutdown_sent = true;
    if (!can_send) {
        return;
    }
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* 0 or 1: close_notify is in wbio either way */
    ERR_clear_error();
}

bool api_tls_handshake_done(const struct api_tls *t)
{
    LATCH_ASSERT(t != NULL);
    return t->hs_done;
}

bool api_tls_alpn_is_h2(const struct api_tls *t)
{
    const unsigned char *proto = NULL;
    unsigned int len = 0;

    LATCH_ASSERT(t != NULL);
    if (!t->hs_done) {
        return false;
    }
    SSL_get0_alpn_selected(t->ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

size_t api_tls_out_pending(const struct api_tls *t)
{
    LATCH_ASSERT(t != NULL);
    return BIO_ctrl_pending(t->wbio);
}

size_t api_tls_out_take(struct api_tls *t, uint8_t *out, size_t cap)
{
    LATCH_ASSERT(t != NULL);
    LATCH_ASSERT(out != NULL || cap == 0);
    size_t taken = 0;
    while (taken < cap && BIO_ctrl_pending(t->wbio) > 0) {
        size_t want = cap - taken;
        int chunk = want > INT_MAX ? INT_MAX : (int)want;
        int n = BIO_read(t->wbio, out + taken, chunk);
        if (n <= 0) {
            break;
        }
        taken += (size_t)n;
    }
    return taken;
}

const char *api_tls_error(const struct api_tls *t)
{
    LATCH_ASSERT(t != NULL);
    return t->err;
}
