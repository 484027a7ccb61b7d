/*
 * test_grpc_tls.c — the TLS layer of the gRPC server, client and server side pumped into each
 * other in memory: handshake with ALPN h2, plaintext both ways, nothing before the handshake,
 * mTLS acceptance and refusals, server name and CA checks, corrupted records, close_notify,
 * file errors, certificate reload and context reference counting.
 *
 * Certificates come from scripts/make-test-certs.sh, run once into a fresh directory under
 * /tmp by the group setup and removed by the group teardown.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "grpc_tls.h"
#include "latch_assert.h"
#include "latch_error.h"

#ifndef LATCH_SOURCE_DIR
#error "LATCH_SOURCE_DIR must name the source tree (set by CMakeLists.txt)"
#endif

static char g_dir[] = "/tmp/latch-tls-XXXXXX";
static bool g_dir_made;

/* expect_assert_failure() needs LATCH_ASSERT to reach cmocka's mock_assert(). */
static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static int remove_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    char cmd[512];

    (void)state;
    latch_assert_set_handler(cmocka_handler);
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "mkdtemp failed\n");
        return -1;
    }
    g_dir_made = true;
    snprintf(cmd, sizeof(cmd), "bash '%s/scripts/make-test-certs.sh' '%s'", LATCH_SOURCE_DIR,
             g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "%s failed\n", cmd);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_dir_made) {
        nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    return 0;
}

/* Path of a file in the certificate directory, for use within one expression or call: 16
 * rotating buffers, so a few can be live at once. */
static const char *file(const char *name)
{
    static char bufs[16][256];
    static unsigned next;
    char *b = bufs[next++ % 16];
    snprintf(b, sizeof(bufs[0]), "%s/%s", g_dir, name);
    return b;
}

/* A path that stays valid for a whole test (file()'s buffers are reused). */
struct path {
    char s[256];
};

static struct path path_of(const char *name)
{
    struct path p;
    snprintf(p.s, sizeof(p.s), "%s/%s", g_dir, name);
    return p;
}

static void copy_file(const char *from, const char *to)
{
    char buf[4096];
    size_t n;
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");

    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- contexts and the in-memory pump ---------------------------------------------------- */

static struct api_tls_ctx *
server_ctx(const char *cert, const char *key, const char *ca, bool verify_peer)
{
    struct api_tls_config cfg = {
        .cert_file = cert, .key_file = key, .ca_file = ca, .verify_peer = verify_peer};
    struct api_tls_ctx *ctx = NULL;
    char err[API_TLS_ERR_MAX] = "";

    int rc = api_tls_ctx_new(&cfg, true, &ctx, err, sizeof(err));
    if (rc != 0) {
        fail_msg("server ctx: %s (%s)", latch_error_name(rc), err);
    }
    return ctx;
}

static struct api_tls_ctx *
client_ctx(const char *ca, const char *cert, const char *key, const char *server_name)
{
    struct api_tls_config cfg = {
        .cert_file = cert, .key_file = key, .ca_file = ca, .server_name = server_name};
    struct api_tls_ctx *ctx = NULL;
    char err[API_TLS_ERR_MAX] = "";

    int rc = api_tls_ctx_new(&cfg, false, &ctx, err, sizeof(err));
    if (rc != 0) {
        fail_msg("client ctx: %s (%s)", latch_error_name(rc), err);
    }
    return ctx;
}

/* The default pair: the server of server.pem, a client trusting ca.pem checking 127.0.0.1. */
static struct api_tls_ctx *default_server(void)
{
    return server_ctx(file("server.pem"), file("server.key"), NULL, false);
}

static struct api_tls_ctx *default_client(void)
{
    return client_ctx(file("ca.pem"), NULL, NULL, "127.0.0.1");
}

/* One end of a connection, with the plaintext it has read and its first error (sticky). */
struct peer {
    struct api_tls *t;
    uint8_t *rx;
    size_t rx_len;
    size_t rx_cap;
    int rc;
};

static void peer_open(struct peer *p, struct api_tls_ctx *ctx)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(api_tls_new(ctx, &p->t), 0);
    assert_non_null(p->t);
}

static void peer_close(struct peer *p)
{
    api_tls_free(p->t);
    free(p->rx);
    memset(p, 0, sizeof(*p));
}

/* Moves every waiting network byte from one end to the other; returns how many. */
static size_t transfer(struct api_tls *from, struct api_tls *to)
{
    size_t pending = api_tls_out_pending(from);
    if (pending == 0) {
        return 0;
    }
    uint8_t *buf = malloc(pending);
    assert_non_null(buf);
    assert_int_equal(api_tls_out_take(from, buf, pending), pending);
    assert_int_equal(api_tls_out_pending(from), 0);
    assert_int_equal(api_tls_feed(to, buf, pending), 0);
    free(buf);
    return pending;
}

/* Reads until the connection has nothing more, appending plaintext to p->rx. */
static void drain_reads(struct peer *p)
{
    uint8_t buf[4096];

    while (p->rc == 0) {
        ssize_t n = api_tls_read(p->t, buf, sizeof(buf));
        if (n == 0) {
            return;
        }
        if (n < 0) {
            p->rc = (int)n;
            return;
        }
        if (p->rx_len + (size_t)n > p->rx_cap) {
            p->rx_cap = (p->rx_len + (size_t)n) * 2;
            p->rx = realloc(p->rx, p->rx_cap);
            assert_non_null(p->rx);
        }
        memcpy(p->rx + p->rx_len, buf, (size_t)n);
        p->rx_len += (size_t)n;
    }
}

/* Shuttles bytes both ways and reads both ends until nothing moves any more. */
static void pump(struct peer *a, struct peer *b)
{
    for (int i = 0; i < 100; i++) {
        size_t moved = transfer(a->t, b->t) + transfer(b->t, a->t);
        drain_reads(a);
        drain_reads(b);
        if (moved == 0 && api_tls_out_pending(a->t) == 0 && api_tls_out_pending(b->t) == 0) {
            return;
        }
    }
    fail_msg("pump did not settle");
}

/* Opens a connection between the two contexts and runs the handshake to its end. */
static void
connect_pair(struct api_tls_ctx *sctx, struct api_tls_ctx *cctx, struct peer *s, struct peer *c)
{
    peer_open(s, sctx);
    peer_open(c, cctx);
    pump(c, s);
}

static void assert_connected(const struct peer *s, const struct peer *c)
{
    if (s->rc != 0 || c->rc != 0) {
        fail_msg("server %s (%s), client %s (%s)", latch_error_name(s->rc), api_tls_error(s->t),
                 latch_error_name(c->rc), api_tls_error(c->t));
    }
    assert_true(api_tls_handshake_done(s->t));
    assert_true(api_tls_handshake_done(c->t));
}

/* Sends text from one end and checks the other end reads exactly it. */
static void assert_exchange(struct peer *from, struct peer *to, const char *text)
{
    size_t before = to->rx_len;
    assert_int_equal(api_tls_write(from->t, (const uint8_t *)text, strlen(text)), 0);
    pump(from, to);
    assert_int_equal(to->rc, 0);
    assert_int_equal(to->rx_len - before, strlen(text));
    assert_memory_equal(to->rx + before, text, strlen(text));
}

static bool contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* ---- handshake and data ----------------------------------------------------------------- */

static void test_handshake_completes_and_both_sides_negotiate_h2(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;

    (void)state;
    peer_open(&s, sctx);
    peer_open(&c, cctx);
    /* The client speaks first: its ClientHello is ready at once; the server has nothing. */
    assert_true(api_tls_out_pending(c.t) > 0);
    assert_int_equal(api_tls_out_pending(s.t), 0);
    pump(&c, &s);
    assert_connected(&s, &c);
    assert_true(api_tls_alpn_is_h2(s.t));
    assert_true(api_tls_alpn_is_h2(c.t));
    assert_string_equal(api_tls_error(s.t), "");
    assert_string_equal(api_tls_error(c.t), "");
    assert_exchange(&c, &s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_client_verifies_server_by_dns_name(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = client_ctx(file("ca.pem"), NULL, NULL, "localhost");
    struct peer s, c;

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_connected(&s, &c);
    assert_exchange(&s, &c, "hello over SNI");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

static void test_plaintext_flows_both_ways_including_1mib_in_chunks(void **state)
{
    enum { MIB = 1 << 20, CHUNK = 7001 };
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;
    uint8_t *up = malloc(MIB);
    uint8_t *down = malloc(MIB);

    (void)state;
    assert_non_null(up);
    assert_non_null(down);
    fill_pattern(up, MIB, 1);
    fill_pattern(down, MIB, 2);
    connect_pair(sctx, cctx, &s, &c);
    assert_connected(&s, &c);
    assert_exchange(&c, &s, "ping");
    assert_exchange(&s, &c, "pong");
    /* Client to server: 1 MiB in odd-sized chunks, pumped now and then. */
    size_t before = s.rx_len;
    for (size_t off = 0, i = 0; off < MIB; off += CHUNK, i++) {
        size_t n = MIB - off < CHUNK ? MIB - off : CHUNK;
        assert_int_equal(api_tls_write(c.t, up + off, n), 0);
        if (i % 16 == 0) {
            pump(&c, &s);
        }
    }
    pump(&c, &s);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.rx_len - before, MIB);
    assert_memory_equal(s.rx + before, up, MIB);
    /* Server to client: 1 MiB in a single write, which is all or nothing. */
    before = c.rx_len;
    assert_int_equal(api_tls_write(s.t, down, MIB), 0);
    assert_true(api_tls_out_pending(s.t) > MIB);
    pump(&s, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.rx_len - before, MIB);
    assert_memory_equal(c.rx + before, down, MIB);
    free(up);
    free(down);
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_nothing_readable_or_writable_before_handshake(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;
    uint8_t hello[4096];
    uint8_t buf[64];

    (void)state;
    peer_open(&s, sctx);
    peer_open(&c, cctx);
    assert_int_equal(api_tls_write(c.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
    assert_int_equal(api_tls_write(s.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
    assert_false(api_tls_alpn_is_h2(c.t));
    /* Half a ClientHello: the server waits for the rest, says nothing, reads nothing. */
    size_t n = api_tls_out_take(c.t, hello, sizeof(hello));
    assert_true(n > 10);
    assert_int_equal(api_tls_feed(s.t, hello, n / 2), 0);
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), 0);
    assert_int_equal(api_tls_out_pending(s.t), 0);
    assert_false(api_tls_handshake_done(s.t));
    assert_int_equal(api_tls_write(s.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
    /* The rest: the server answers, and the client has still not finished. */
    assert_int_equal(api_tls_feed(s.t, hello + n / 2, n - n / 2), 0);
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), 0);
    assert_true(api_tls_out_pending(s.t) > 0);
    assert_false(api_tls_handshake_done(s.t));
    assert_false(api_tls_handshake_done(c.t));
    assert_int_equal(api_tls_write(c.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
    pump(&c, &s);
    assert_connected(&s, &c);
    assert_int_equal(s.rx_len + c.rx_len, 0);
    assert_exchange(&c, &s, "now");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

/* ---- mTLS ------------------------------------------------------------------------------- */

static struct api_tls_ctx *mtls_server(void)
{
    return server_ctx(file("server.pem"), file("server.key"), file("ca.pem"), true);
}

static void test_mtls_accepts_client_certificate_from_ca(void **state)
{
    struct api_tls_ctx *sctx = mtls_server();
    struct api_tls_ctx *cctx =
        client_ctx(file("ca.pem"), file("client.pem"), file("client.key"), "127.0.0.1");
    struct peer s, c;

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_connected(&s, &c);
    assert_true(api_tls_alpn_is_h2(s.t));
    assert_exchange(&c, &s, "authenticated");
    assert_exchange(&s, &c, "welcome");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_mtls_rejects_client_certificate_from_unknown_ca(void **state)
{
    struct api_tls_ctx *sctx = mtls_server();
    struct api_tls_ctx *cctx =
        client_ctx(file("ca.pem"), file("rogue-client.pem"), file("rogue-client.key"), "127.0.0.1");
    struct peer s, c;

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_int_equal(s.rc, LATCH_ETLS);
    assert_true(contains(api_tls_error(s.t), "certificate verify failed"));
    assert_true(contains(api_tls_error(s.t), "unable to get local issuer certificate"));
    assert_false(api_tls_handshake_done(s.t));
    /* TLS 1.3: the client finished first and learns the verdict from the alert. */
    assert_int_equal(c.rc, LATCH_ETLS);
    assert_true(contains(api_tls_error(c.t), "alert"));
    assert_int_equal(api_tls_write(s.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
    assert_int_equal(s.rx_len, 0);
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_mtls_rejects_client_without_certificate(void **state)
{
    struct api_tls_ctx *sctx = mtls_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;
    uint8_t buf[16];

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_int_equal(s.rc, LATCH_ETLS);
    assert_true(contains(api_tls_error(s.t), "certificate"));
    assert_int_equal(c.rc, LATCH_ETLS);
    assert_true(contains(api_tls_error(c.t), "certificate required"));
    /* Errors are sticky. */
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), LATCH_ETLS);
    assert_int_equal(api_tls_read(c.t, buf, sizeof(buf)), LATCH_ETLS);
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

/* ---- the client's checks of the server -------------------------------------------------- */

/* Connects a client with the given trust and name to the default server; expects the client
 * to refuse with a text containing why. */
static void expect_client_refuses(const char *ca, const char *server_name, const char *why)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = client_ctx(ca, NULL, NULL, server_name);
    struct peer s, c;

    connect_pair(sctx, cctx, &s, &c);
    assert_int_equal(c.rc, LATCH_ETLS);
    if (!contains(api_tls_error(c.t), why)) {
        fail_msg("client error \"%s\" lacks \"%s\"", api_tls_error(c.t), why);
    }
    assert_false(api_tls_handshake_done(c.t));
    /* The client's alert ends the server's handshake too. */
    assert_int_equal(s.rc, LATCH_ETLS);
    assert_false(api_tls_handshake_done(s.t));
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_client_rejects_server_ip_mismatch(void **state)
{
    (void)state;
    expect_client_refuses(file("ca.pem"), "10.9.9.9", "IP address mismatch");
}

static void test_client_rejects_server_dns_mismatch(void **state)
{
    (void)state;
    expect_client_refuses(file("ca.pem"), "example.com", "hostname mismatch");
}

/* api_tls_new_host: one context without a server name checks each connection against the
 * host it was given (how the Raft transport dials every peer with one context). */
static void test_new_host_checks_each_connection_against_its_host(void **state)
{
    (void)state;
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = client_ctx(file("ca.pem"), NULL, NULL, NULL);
    const struct {
        const char *host;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"127.0.0.1", NULL},
        {"localhost", NULL},
        {"10.9.9.9", "IP address mismatch"},
        {"elsewhere.invalid", "hostname mismatch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct peer s, c;
        peer_open(&s, sctx);
        memset(&c, 0, sizeof(c));
        assert_int_equal(api_tls_new_host(cctx, cases[i].host, &c.t), 0);
        pump(&c, &s);
        if (cases[i].why == NULL) {
            assert_connected(&s, &c);
        } else {
            assert_int_equal(c.rc, LATCH_ETLS);
            if (!contains(api_tls_error(c.t), cases[i].why)) {
                fail_msg("%s: client error \"%s\" lacks \"%s\"", cases[i].host, api_tls_error(c.t),
                         cases[i].why);
            }
        }
        peer_close(&s);
        peer_close(&c);
    }
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_client_rejects_server_from_unknown_ca(void **state)
{
    (void)state;
    expect_client_refuses(file("rogue-ca.pem"), "127.0.0.1",
                          "unable to get local issuer certificate");
}

/* ---- ALPN offers from a plain OpenSSL client -------------------------------------------- */

/*
 * Runs a handshake between the default server and a bare OpenSSL client offering alpn
 * (wire format; NULL offers no ALPN). Returns the server's read result; *client_ok tells
 * whether the client finished its handshake.
 */
static int
raw_client_handshake(const unsigned char *alpn, unsigned alpn_len, bool *alpn_h2, bool *client_ok)
{
    struct api_tls_ctx *sctx = default_server();
    struct peer s;
    SSL_CTX *rc_ctx = SSL_CTX_new(TLS_client_method());
    uint8_t buf[16384];

    assert_non_null(rc_ctx);
    SSL_CTX_set_verify(rc_ctx, SSL_VERIFY_NONE, NULL);
    if (alpn != NULL) {
        assert_int_equal(SSL_CTX_set_alpn_protos(rc_ctx, alpn, alpn_len), 0);
    }
    SSL *raw = SSL_new(rc_ctx);
    BIO *rin = BIO_new(BIO_s_mem());
    BIO *rout = BIO_new(BIO_s_mem());
    assert_non_null(raw);
    SSL_set_bio(raw, rin, rout);
    SSL_set_connect_state(raw);
    peer_open(&s, sctx);
    *client_ok = false;
    for (int i = 0; i < 20; i++) {
        *client_ok = SSL_do_handshake(raw) == 1;
        int n = BIO_read(rout, buf, sizeof(buf));
        if (n > 0) {
            assert_int_equal(api_tls_feed(s.t, buf, (size_t)n), 0);
        }
        drain_reads(&s);
        size_t m = api_tls_out_take(s.t, buf, sizeof(buf));
        if (m > 0) {
            assert_int_equal(BIO_write(rin, buf, (int)m), (int)m);
        }
        if (n <= 0 && m == 0) {
            break;
        }
    }
    *alpn_h2 = api_tls_alpn_is_h2(s.t);
    int rc = s.rc;
    if (rc != 0) {
        assert_true(contains(api_tls_error(s.t), "no application protocol"));
    }
    SSL_free(raw);
    SSL_CTX_free(rc_ctx);
    ERR_clear_error();
    peer_close(&s);
    api_tls_ctx_free(sctx);
    return rc;
}

static void test_server_picks_h2_among_offers(void **state)
{
    static const unsigned char offer[] = "\x08http/1.1\x02h2";
    bool h2, client_ok;

    (void)state;
    assert_int_equal(raw_client_handshake(offer, sizeof(offer) - 1, &h2, &client_ok), 0);
    assert_true(h2);
    assert_true(client_ok);
}

static void test_server_refuses_alpn_offer_without_h2(void **state)
{
    static const unsigned char offer[] = "\x08http/1.1";
    bool h2, client_ok;

    (void)state;
    assert_int_equal(raw_client_handshake(offer, sizeof(offer) - 1, &h2, &client_ok), LATCH_ETLS);
    assert_false(h2);
    assert_false(client_ok);
}

static void test_server_accepts_client_without_alpn(void **state)
{
    bool h2, client_ok;

    (void)state;
    assert_int_equal(raw_client_handshake(NULL, 0, &h2, &client_ok), 0);
    assert_false(h2);
    assert_true(client_ok);
}

/* ---- broken streams and shutdown -------------------------------------------------------- */

static void test_flipped_byte_after_handshake_is_an_error_not_a_crash(void **state)
{
    static const char msg[] = "a record whose bytes will not survive the trip";
    uint8_t rec[512];
    uint8_t buf[256];

    (void)state;
    /* Record header type (0) and version (1), first ciphertext byte (5), middle, last (tag).
     * The length bytes are left alone: a changed length just waits for more bytes. */
    for (int k = 0; k < 5; k++) {
        struct api_tls_ctx *sctx = default_server();
        struct api_tls_ctx *cctx = default_client();
        struct peer s, c;

        connect_pair(sctx, cctx, &s, &c);
        assert_connected(&s, &c);
        assert_int_equal(api_tls_write(c.t, (const uint8_t *)msg, sizeof(msg)), 0);
        size_t n = api_tls_out_take(c.t, rec, sizeof(rec));
        assert_true(n > 5 + sizeof(msg));
        size_t pos[] = {0, 1, 5, n / 2, n - 1};
        rec[pos[k]] ^= 0x5a;
        assert_int_equal(api_tls_feed(s.t, rec, n), 0);
        ssize_t r = api_tls_read(s.t, buf, sizeof(buf));
        if (r != LATCH_EPROTO && r != LATCH_ETLS) {
            fail_msg("flip at %zu: read gave %zd", pos[k], r);
        }
        assert_true(strlen(api_tls_error(s.t)) > 0);
        assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), r);
        assert_int_equal(api_tls_write(s.t, (const uint8_t *)"x", 1), LATCH_ESTATE);
        api_tls_shutdown(s.t); /* after an error: harmless, produces nothing new */
        peer_close(&s);
        peer_close(&c);
        api_tls_ctx_free(sctx);
        api_tls_ctx_free(cctx);
    }
}

static void test_garbage_instead_of_client_hello_fails_handshake(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct api_tls_ctx *sctx = default_server();
    struct peer s;
    uint8_t buf[64];

    (void)state;
    peer_open(&s, sctx);
    assert_int_equal(api_tls_feed(s.t, (const uint8_t *)req, sizeof(req) - 1), 0);
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), LATCH_ETLS);
    assert_true(strlen(api_tls_error(s.t)) > 0);
    peer_close(&s);
    api_tls_ctx_free(sctx);
}

static void test_close_notify_gives_eshutdown_after_pending_data(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;
    uint8_t buf[16];

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_connected(&s, &c);
    assert_int_equal(api_tls_write(c.t, (const uint8_t *)"bye", 3), 0);
    api_tls_shutdown(c.t);
    assert_int_equal(api_tls_write(c.t, (const uint8_t *)"more", 4), LATCH_ESTATE);
    pump(&c, &s);
    assert_int_equal(s.rx_len, 3);
    assert_memory_equal(s.rx, "bye", 3);
    assert_int_equal(s.rc, LATCH_ESHUTDOWN);
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), LATCH_ESHUTDOWN);
    assert_string_equal(api_tls_error(s.t), "");
    /* Half close: the server may still answer, and the client still reads. */
    assert_int_equal(api_tls_write(s.t, (const uint8_t *)"ack", 3), 0);
    pump(&s, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.rx_len, 3);
    assert_memory_equal(c.rx, "ack", 3);
    api_tls_shutdown(s.t);
    pump(&s, &c);
    assert_int_equal(c.rc, LATCH_ESHUTDOWN);
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

static void test_shutdown_before_handshake_produces_nothing(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct peer s;
    uint8_t buf[16];

    (void)state;
    peer_open(&s, sctx);
    api_tls_shutdown(s.t);
    api_tls_shutdown(s.t);
    assert_int_equal(api_tls_out_pending(s.t), 0);
    assert_int_equal(api_tls_read(s.t, buf, sizeof(buf)), 0);
    assert_string_equal(api_tls_error(s.t), "");
    peer_close(&s);
    api_tls_ctx_free(sctx);
}

static void test_second_shutdown_produces_nothing_more(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct api_tls_ctx *cctx = default_client();
    struct peer s, c;

    (void)state;
    connect_pair(sctx, cctx, &s, &c);
    assert_connected(&s, &c);
    api_tls_shutdown(c.t);
    size_t once = api_tls_out_pending(c.t);
    assert_true(once > 0);
    api_tls_shutdown(c.t);
    assert_int_equal(api_tls_out_pending(c.t), once);
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
}

/* ---- context creation errors ------------------------------------------------------------ */

static int try_ctx(const struct api_tls_config *cfg, bool server, char *err, size_t cap)
{
    struct api_tls_ctx *ctx = (struct api_tls_ctx *)&ctx; /* must be reset to NULL */
    int rc = api_tls_ctx_new(cfg, server, &ctx, err, cap);
    if (rc != 0) {
        assert_null(ctx);
    } else {
        api_tls_ctx_free(ctx);
    }
    return rc;
}

static void test_ctx_new_names_missing_file(void **state)
{
    char err[API_TLS_ERR_MAX];
    struct path missing_path = path_of("no-such-file.pem");
    const char *missing = missing_path.s;
    struct api_tls_config cfg = {.cert_file = missing, .key_file = file("server.key")};

    (void)state;
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, missing));
    cfg = (struct api_tls_config){.cert_file = file("server.pem"), .key_file = missing};
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, missing));
    cfg = (struct api_tls_config){.cert_file = file("server.pem"),
                                  .key_file = file("server.key"),
                                  .ca_file = missing,
                                  .verify_peer = true};
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, missing));
    cfg = (struct api_tls_config){.ca_file = missing};
    assert_int_equal(try_ctx(&cfg, false, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, missing));
}

static void test_ctx_new_refuses_key_not_matching_certificate(void **state)
{
    char err[API_TLS_ERR_MAX];
    struct api_tls_config cfg = {.cert_file = file("server.pem"), .key_file = file("client.key")};

    (void)state;
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, file("client.key")));
    assert_true(contains(err, "mismatch"));
    /* The same for a client certificate. */
    cfg = (struct api_tls_config){
        .cert_file = file("client.pem"), .key_file = file("server.key"), .ca_file = file("ca.pem")};
    assert_int_equal(try_ctx(&cfg, false, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, file("server.key")));
}

static void test_ctx_new_refuses_garbage_certificate(void **state)
{
    char err[API_TLS_ERR_MAX];
    struct path junk_path = path_of("junk.pem");
    const char *junk = junk_path.s;
    struct api_tls_config cfg = {.cert_file = junk, .key_file = file("server.key")};

    (void)state;
    write_text(junk, "this is not a certificate\n");
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, junk));
    /* A certificate where the key should be. */
    cfg = (struct api_tls_config){.cert_file = file("server.pem"), .key_file = file("ca.pem")};
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, file("ca.pem")));
    unlink(junk);
}

static void test_ctx_new_refuses_incomplete_config(void **state)
{
    char err[API_TLS_ERR_MAX];
    struct api_tls_config cfg = {.cert_file = file("server.pem")};

    (void)state;
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_EINVAL);
    assert_true(strlen(err) > 0);
    cfg = (struct api_tls_config){
        .cert_file = file("server.pem"), .key_file = file("server.key"), .verify_peer = true};
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_EINVAL);
    assert_true(contains(err, "ca_file"));
    cfg = (struct api_tls_config){.cert_file = file("client.pem"), .ca_file = file("ca.pem")};
    assert_int_equal(try_ctx(&cfg, false, err, sizeof(err)), LATCH_EINVAL);
    /* A client with nothing at all uses the system store and is fine. */
    cfg = (struct api_tls_config){0};
    assert_int_equal(try_ctx(&cfg, false, err, sizeof(err)), 0);
}

static void test_ctx_new_error_text_is_cut_and_optional(void **state)
{
    char err[8];
    struct api_tls_config cfg = {.cert_file = file("no-such.pem"), .key_file = file("x.key")};

    (void)state;
    memset(err, 'z', sizeof(err));
    assert_int_equal(try_ctx(&cfg, true, err, sizeof(err)), LATCH_ETLS);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_int_equal(try_ctx(&cfg, true, NULL, 0), LATCH_ETLS);
    err[0] = 'q';
    assert_int_equal(try_ctx(&cfg, true, err, 0), LATCH_ETLS);
    assert_int_equal(err[0], 'q');
}

/* ---- reload and reference counting ------------------------------------------------------ */

/* Expects a fresh client of cctx against sctx to connect (ok) or to be refused. */
static void expect_new_connection(struct api_tls_ctx *sctx, struct api_tls_ctx *cctx, bool ok)
{
    struct peer s, c;

    connect_pair(sctx, cctx, &s, &c);
    if (ok) {
        assert_connected(&s, &c);
        assert_exchange(&c, &s, "fresh");
    } else {
        assert_int_equal(c.rc, LATCH_ETLS);
        assert_true(contains(api_tls_error(c.t), "unable to get local issuer certificate"));
    }
    peer_close(&s);
    peer_close(&c);
}

static void test_reload_switches_certificate_and_keeps_open_connections(void **state)
{
    struct path cert_path = path_of("reload-a.pem");
    struct path key_path = path_of("reload-a.key");
    const char *cert = cert_path.s;
    const char *key = key_path.s;
    struct api_tls_ctx *sctx;
    struct api_tls_ctx *trust1 = default_client();
    struct api_tls_ctx *trust2 = client_ctx(file("ca2.pem"), NULL, NULL, "127.0.0.1");
    struct peer s, c;
    char err[API_TLS_ERR_MAX] = "";

    (void)state;
    copy_file(file("server.pem"), cert);
    copy_file(file("server.key"), key);
    sctx = server_ctx(cert, key, NULL, false);
    connect_pair(sctx, trust1, &s, &c);
    assert_connected(&s, &c);
    expect_new_connection(sctx, trust2, false);

    copy_file(file("server2.pem"), cert);
    copy_file(file("server2.key"), key);
    assert_int_equal(api_tls_ctx_reload(sctx, err, sizeof(err)), 0);
    expect_new_connection(sctx, trust1, false);
    expect_new_connection(sctx, trust2, true);
    /* The connection opened before the reload still works both ways. */
    assert_exchange(&c, &s, "still here");
    assert_exchange(&s, &c, "me too");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(trust1);
    api_tls_ctx_free(trust2);
    unlink(cert);
    unlink(key);
}

static void test_failed_reload_keeps_old_material(void **state)
{
    struct path cert_path = path_of("reload-b.pem");
    struct path key_path = path_of("reload-b.key");
    const char *cert = cert_path.s;
    const char *key = key_path.s;
    struct api_tls_ctx *sctx;
    struct api_tls_ctx *cctx = default_client();
    char err[API_TLS_ERR_MAX] = "";

    (void)state;
    copy_file(file("server.pem"), cert);
    copy_file(file("server.key"), key);
    sctx = server_ctx(cert, key, NULL, false);
    write_text(cert, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
    assert_int_equal(api_tls_ctx_reload(sctx, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, cert));
    expect_new_connection(sctx, cctx, true);
    /* Half a rotation (new certificate, old key) is refused the same way. */
    copy_file(file("server2.pem"), cert);
    assert_int_equal(api_tls_ctx_reload(sctx, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, "mismatch"));
    expect_new_connection(sctx, cctx, true);
    /* A missing file too. */
    unlink(key);
    assert_int_equal(api_tls_ctx_reload(sctx, err, sizeof(err)), LATCH_ETLS);
    assert_true(contains(err, key));
    expect_new_connection(sctx, cctx, true);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
    unlink(cert);
}

static void test_ctx_freed_while_connections_are_open(void **state)
{
    struct api_tls_ctx *sctx = mtls_server();
    struct api_tls_ctx *cctx =
        client_ctx(file("ca.pem"), file("client.pem"), file("client.key"), "localhost");
    struct peer s, c;

    (void)state;
    peer_open(&s, sctx);
    peer_open(&c, cctx);
    api_tls_ctx_free(sctx);
    api_tls_ctx_free(cctx);
    pump(&c, &s);
    assert_connected(&s, &c);
    assert_exchange(&c, &s, "orphaned but alive");
    assert_exchange(&s, &c, "indeed");
    peer_close(&s);
    peer_close(&c);
    api_tls_ctx_free(NULL);
    api_tls_free(NULL);
}

static void test_new_connection_from_freed_ctx_asserts(void **state)
{
    struct api_tls_ctx *sctx = default_server();
    struct peer s;
    struct api_tls *t = NULL;

    (void)state;
    peer_open(&s, sctx); /* keeps the struct alive after the caller lets go */
    api_tls_ctx_free(sctx);
    expect_assert_failure(api_tls_new(sctx, &t));
    assert_null(t);
    peer_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_completes_and_both_sides_negotiate_h2),
        cmocka_unit_test(test_client_verifies_server_by_dns_name),
        cmocka_unit_test(test_plaintext_flows_both_ways_including_1mib_in_chunks),
        cmocka_unit_test(test_nothing_readable_or_writable_before_handshake),
        cmocka_unit_test(test_mtls_accepts_client_certificate_from_ca),
        cmocka_unit_test(test_mtls_rejects_client_certificate_from_unknown_ca),
        cmocka_unit_test(test_mtls_rejects_client_without_certificate),
        cmocka_unit_test(test_client_rejects_server_ip_mismatch),
        cmocka_unit_test(test_client_rejects_server_dns_mismatch),
        cmocka_unit_test(test_client_rejects_server_from_unknown_ca),
        cmocka_unit_test(test_new_host_checks_each_connection_against_its_host),
        cmocka_unit_test(test_server_picks_h2_among_offers),
        cmocka_unit_test(test_server_refuses_alpn_offer_without_h2),
        cmocka_unit_test(test_server_accepts_client_without_alpn),
        cmocka_unit_test(test_flipped_byte_after_handshake_is_an_error_not_a_crash),
        cmocka_unit_test(test_garbage_instead_of_client_hello_fails_handshake),
        cmocka_unit_test(test_close_notify_gives_eshutdown_after_pending_data),
        cmocka_unit_test(test_shutdown_before_handshake_produces_nothing),
        cmocka_unit_test(test_second_shutdown_produces_nothing_more),
        cmocka_unit_test(test_ctx_new_names_missing_file),
        cmocka_unit_test(test_ctx_new_refuses_key_not_matching_certificate),
        cmocka_unit_test(test_ctx_new_refuses_garbage_certificate),
        cmocka_unit_test(test_ctx_new_refuses_incomplete_config),
        cmocka_unit_test(test_ctx_new_error_text_is_cut_and_optional),
        cmocka_unit_test(test_reload_switches_certificate_and_keeps_open_connections),
        cmocka_unit_test(test_failed_reload_keeps_old_material),
        cmocka_unit_test(test_ctx_freed_while_connections_are_open),
        cmocka_unit_test(test_new_connection_from_freed_ctx_asserts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
