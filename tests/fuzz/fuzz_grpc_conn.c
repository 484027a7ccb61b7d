/*
 * fuzz_grpc_conn.c — libFuzzer target for the gRPC server's connection handling: arbitrary
 * bytes arrive on a connection, in cleartext (h2c) or inside an established TLS session.
 *
 * Input: byte 0 holds the mode (bit 0: TLS; bit 1: raw, i.e. do not send the 24-byte HTTP/2
 * client preface first, so the preface check itself is fuzzed too); the rest is what the
 * client sends. The harness hands one end of a Unix socket pair to the server with
 * api_server_adopt (the real read, nghttp2, dispatch, handler and write paths), writes the
 * bytes into the other end (through a client-side api_tls after a real handshake in TLS
 * mode), closes it, and runs the loop until the connection is gone.
 *
 * Properties: no crash, no undefined behaviour, no leak (ASan/UBSan/LeakSanitizer), every
 * call and handle freed (the loop ends with no handle open), and the server keeps its
 * invariants (LATCH_ASSERT) whatever the peer sends. The methods answer at once so that a
 * run never waits on a timer: Unary echoes, Stream sends three copies, Chat echoes each
 * message and finishes at half-close, Sum counts messages.
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "grpc_server.h"
#include "grpc_tls.h"
#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MODE_TLS       1u
#define MODE_RAW       2u
/* Inputs beyond this are ignored: with the TLS overhead they must fit a Unix socket's send
 * buffer (about 208 KiB by default), since the harness writes them before the loop runs. */
#define FUZZ_MAX_INPUT (64u << 10)

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static uv_loop_t g_loop;
static struct api_server *g_server;
static struct api_tls_ctx *g_server_tls, *g_client_tls;

static void unary(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    (void)data;
    api_call_reply(call, req, len);
}

static void stream(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    (void)data;
    for (int i = 0; i < 3; i++) {
        if (api_call_send(call, req, len, NULL) != 0) {
            break;
        }
    }
    api_call_finish(call, API_GRPC_STATUS_OK, NULL);
}

static void chat_start(void *data, struct api_call *call)
{
    (void)data;
    (void)call;
}

static void chat_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    bool would_block = false;
    if (api_call_send(call, msg, len, &would_block) != 0) {
        api_call_finish(call, API_GRPC_STATUS_UNAVAILABLE, "send failed");
    } else if (would_block) {
        api_call_pause_recv(call);
    }
}

static void chat_half_close(void *data, struct api_call *call)
{
    (void)data;
    api_call_finish(call, API_GRPC_STATUS_OK, NULL);
}

/* A call that dies before its half-close is answered here (the answer only frees it). */
static void chat_cancel(struct api_call *call, void *data)
{
    (void)data;
    api_call_finish(call, API_GRPC_STATUS_CANCELLED, NULL);
}

static void chat_start_cancellable(void *data, struct api_call *call)
{
    chat_start(data, call);
    api_call_on_cancel(call, chat_cancel, NULL);
}

static void sum_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    (void)msg;
    uintptr_t n = (uintptr_t)api_call_context(call) + len + 1;
    api_call_set_context(call, (void *)n);
}

static void sum_half_close(void *data, struct api_call *call)
{
    (void)data;
    char text[24];
    int n = snprintf(text, sizeof(text), "%zu", (size_t)(uintptr_t)api_call_context(call));
    api_call_reply(call, (const uint8_t *)text, (size_t)n);
}

static void sum_cancel(struct api_call *call, void *data)
{
    (void)data;
    api_call_fail(call, API_GRPC_STATUS_CANCELLED, NULL);
}

static void sum_start(void *data, struct api_call *call)
{
    (void)data;
    api_call_on_cancel(call, sum_cancel, NULL);
}

static const struct api_stream_handler chat_handler = {
    .start = chat_start_cancellable,
    .message = chat_message,
    .half_close = chat_half_close,
};

static const struct api_stream_handler sum_handler = {
    .start = sum_start,
    .message = sum_message,
    .half_close = sum_half_close,
};

/* Makes the test PKI with the project's script and loads the two TLS contexts. */
static void tls_init(void)
{
    char dir[] = "/tmp/latch-fuzz-tls-XXXXXX";
    char cmd[1024], cert[256], key[256], ca[256], err[API_TLS_ERR_MAX];
    LATCH_ASSERT(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof(cmd), "bash %s/scripts/make-test-certs.sh %s >/dev/null", LATCH_SOURCE_DIR,
             dir);
    LATCH_ASSERTF(system(cmd) == 0, "%s failed", cmd);
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    struct api_tls_config sc = {.cert_file = cert, .key_file = key};
    struct api_tls_config cc = {.ca_file = ca, .server_name = "127.0.0.1"};
    LATCH_ASSERTF(api_tls_ctx_new(&sc, true, &g_server_tls, err, sizeof(err)) == 0, "%s", err);
    LATCH_ASSERTF(api_tls_ctx_new(&cc, false, &g_client_tls, err, sizeof(err)) == 0, "%s", err);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    LATCH_ASSERT(system(cmd) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    latch_log_set_level(LATCH_LOG_ERROR); /* a log line per rejected input would drown the run */
    LATCH_ASSERT(uv_loop_init(&g_loop) == 0);
    struct api_server_config cfg = {.max_recv_msg_size = 64u << 10,
                                    .max_stream_queue_bytes = 16u << 10,
                                    .max_header_list_size = 4096};
    LATCH_ASSERT(api_server_new(&g_loop, &cfg, &g_server) == 0);
    LATCH_ASSERT(api_server_register_unary(g_server, "/f.S/Unary", unary, NULL) == 0);
    LATCH_ASSERT(api_server_register_server_stream(g_server, "/f.S/Stream", stream, NULL) == 0);
    LATCH_ASSERT(api_server_register_bidi_stream(g_server, "/f.S/Chat", &chat_handler, NULL) == 0);
    LATCH_ASSERT(api_server_register_client_stream(g_server, "/f.S/Sum", &sum_handler, NULL) == 0);
    tls_init();
    return 0;
}

/* Writes all of buf to the blocking fd. */
static void write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) {
            return; /* the server closed its end: the rest is moot */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Moves what the client TLS has for the network into fd. */
static void tls_flush(struct api_tls *t, int fd)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = api_tls_out_take(t, buf, sizeof(buf))) > 0) {
        write_all(fd, buf, n);
    }
}

/*
 * Runs the client side of a TLS handshake against the server over fd, turning the loop so
 * the server answers. Returns the client session, or NULL when the handshake did not finish
 * in a bounded number of turns (it always does with these certificates).
 */
static struct api_tls *tls_handshake(int fd)
{
    struct api_tls *t = NULL;
    LATCH_ASSERT(api_tls_new(g_client_tls, &t) == 0);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    for (int turn = 0; turn < 1000 && !api_tls_handshake_done(t); turn++) {
        tls_flush(t, fd);
        uv_run(&g_loop, UV_RUN_NOWAIT);
        uint8_t buf[16384];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            LATCH_ASSERT(api_tls_feed(t, buf, (size_t)n) == 0);
            uint8_t plain[1024];
            LATCH_ASSERT(api_tls_read(t, plain, sizeof(plain)) >= 0);
        }
    }
    fcntl(fd, F_SETFL, fl);
    LATCH_ASSERT(api_tls_handshake_done(t));
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT) {
        return 0;
    }
    unsigned mode = data[0];
    data++;
    size--;
    int sv[2];
    LATCH_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int buf = (int)(2 * FUZZ_MAX_INPUT);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    bool tls = (mode & MODE_TLS) != 0;
    LATCH_ASSERT(api_server_adopt(g_server, sv[0], tls ? g_server_tls : NULL) == 0);
    struct api_tls *t = tls ? tls_handshake(sv[1]) : NULL;
    if ((mode & MODE_RAW) == 0) {
        if (t != NULL) {
            LATCH_ASSERT(api_tls_write(t, (const uint8_t *)preface, sizeof(preface) - 1) == 0);
        } else {
            write_all(sv[1], (const uint8_t *)preface, sizeof(preface) - 1);
        }
    }
    if (t != NULL) {
        if (size > 0) {
            LATCH_ASSERT(api_tls_write(t, data, size) == 0);
        }
        tls_flush(t, sv[1]);
        api_tls_free(t);
    } else {
        write_all(sv[1], data, size);
    }
    close(sv[1]); /* the server reads what was sent, then EOF; its writes fail from here */
    uv_run(&g_loop, UV_RUN_DEFAULT);
    LATCH_ASSERT(!uv_loop_alive(&g_loop)); /* every connection, call and timer is gone */
    return 0;
}
