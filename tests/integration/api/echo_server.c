/*
 * echo_server.c — grpc_echo_server --port-file F [--max-connections N]: the api/grpc_server
 * test peer.
 *
 * Listens on 127.0.0.1 port 0, writes the bound port to F (via a temporary file and rename,
 * so a reader never sees a partial number), and serves:
 *   /latch.test.Echo/Unary  replies the request bytes at once;
 *   /latch.test.Echo/Later  replies the request bytes 50 ms later from a uv_timer (deferred);
 *   /latch.test.Echo/Fail   fails with INVALID_ARGUMENT "bad thing: é%\n";
 *   /latch.test.Echo/Never  keeps the call unanswered (for the server's deadline enforcement);
 *                           held calls are answered only at SIGTERM, when they are all dead;
 *   /latch.test.Echo/Count  server-streaming: the request is a decimal N; streams N messages,
 *                           the indexes 0..N-1 as decimal ASCII, pausing at would_block and
 *                           resuming from the writable callback; then finishes OK.
 *   /latch.test.Echo/Active unary: Count producers plus Hold calls still running (decimal).
 *   /latch.test.Echo/Chat   bidirectional: echoes each message; when a send reports
 *                           would_block it pauses receiving until the writable callback;
 *                           finishes OK at the client's half-close once all is sent.
 *   /latch.test.Echo/Sum    client-streaming: answers "<messages> <bytes>" at half-close.
 *   /latch.test.Echo/Hold   bidirectional: answers nothing; its on_cancel callback finishes it
 *                           (so Active shows whether a cancel reached the handler).
 *   /latch.test.Echo/Meta   unary: the request names a metadata header; replies its value, or
 *                           fails NOT_FOUND.
 *   /latch.test.Echo/Stats  unary: "<largest queued bytes seen by Chat>".
 *   /etcdserverpb.KV/Range  an etcd RangeRequest (protobuf) answered with one key-value: the
 *                           requested key with value "hello from latch" (for etcdctl), or
 *                           INTERNAL "grpc: error unmarshalling request: ..." for bad bytes.
 * --max-connections N sets api_server_config.max_connections (default: the server's);
 * --max-send-msg-size N sets api_server_config.max_send_msg_size.
 * --tls-dir D also listens with TLS (D/server.pem, D/server.key) and with mTLS (client
 * certificates verified against D/ca.pem); the port file then holds three lines: the h2c, TLS
 * and mTLS ports. SIGHUP reloads both TLS contexts from the same files.
 * On SIGTERM it shuts the server down gracefully (api_server_shutdown, 2000 ms drain: Later
 * calls in flight are still answered; held Never calls are failed UNAVAILABLE at once) and
 * runs the loop until every handle is closed, then exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc_pb.h"
#include "grpc_server.h"
#include "grpc_tls.h"
#include "grpc_wire.h"
#include "mvccpb/kv.pb-c.h"

struct later {
    uv_timer_t timer;
    struct api_call *call; /* answered exactly once, in later_cb */
    size_t len;
    uint8_t bytes[];
};

/* Count producers still running: /latch.test.Echo/Active reports it, so the test can see
 * that a cancelled stream stops its producer without timing anything. */
static unsigned long g_counters_live;
/* Hold calls not yet finished by their cancel callback. */
static unsigned long g_holds_live;
/* The largest queue a Chat call had after a send. */
static size_t g_chat_max_queued;

/* A Count producer; owns itself and is freed when it finishes the call. */
struct counter {
    struct api_call *call;
    unsigned long long next, n;
};

/* Sends until the queue is full (then resumes from the writable callback) or all are sent. */
static void count_produce(struct api_call *call, void *data)
{
    struct counter *k = data;
    while (k->next < k->n) {
        char buf[24];
        int len = snprintf(buf, sizeof(buf), "%llu", k->next);
        bool would_block = false;
        int rc = api_call_send(call, (const uint8_t *)buf, (size_t)len, &would_block);
        if (rc != 0) {
            /* Dead (client cancelled, deadline, shutdown) or out of memory: stop producing. */
            api_call_finish(call, API_GRPC_STATUS_UNAVAILABLE, "send failed");
            free(k);
            g_counters_live--;
            return;
        }
        k->next++;
        if (would_block) {
            api_call_on_writable(call, count_produce, k);
            return;
        }
    }
    api_call_finish(call, API_GRPC_STATUS_OK, NULL);
    free(k);
    g_counters_live--;
}

/* Unary: the number of Count producers still running, as decimal ASCII. */
static void echo_active(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    (void)req;
    (void)req_len;
    char buf[24];
    int len = snprintf(buf, sizeof(buf), "%lu", g_counters_live + g_holds_live);
    api_call_reply(call, (const uint8_t *)buf, (size_t)len);
}

static void echo_count(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    char text[24];
    if (req_len == 0 || req_len >= sizeof(text)) {
        api_call_finish(call, API_GRPC_STATUS_INVALID_ARGUMENT, "want a decimal count");
        return;
    }
    memcpy(text, req, req_len);
    text[req_len] = '\0';
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || text[0] < '0' || text[0] > '9') {
        api_call_finish(call, API_GRPC_STATUS_INVALID_ARGUMENT, "want a decimal count");
        return;
    }
    struct counter *k = malloc(sizeof(*k));
    if (k == NULL) {
        api_call_finish(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    k->call = call;
    k->next = 0;
    k->n = n;
    g_counters_live++;
    count_produce(call, k);
}

/* ---- bidirectional and client-streaming ---- */

static void chat_writable(struct api_call *call, void *data)
{
    (void)data;
    api_call_resume_recv(call);
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
        return;
    }
    size_t queued = api_call_queued_bytes(call);
    if (queued > g_chat_max_queued) {
        g_chat_max_queued = queued;
    }
    if (would_block) {
        api_call_pause_recv(call);
        api_call_on_writable(call, chat_writable, NULL);
    }
}

static void chat_half_close(void *data, struct api_call *call)
{
    (void)data;
    api_call_finish(call, API_GRPC_STATUS_OK, NULL);
}

static void chat_cancel(struct api_call *call, void *data)
{
    (void)data;
    api_call_finish(call, API_GRPC_STATUS_CANCELLED, NULL); /* dead: only frees it */
}

static void chat_start_cancellable(void *data, struct api_call *call)
{
    chat_start(data, call);
    api_call_on_cancel(call, chat_cancel, NULL);
}

static const struct api_stream_handler chat_handler = {
    .start = chat_start_cancellable,
    .message = chat_message,
    .half_close = chat_half_close,
};

struct sum {
    unsigned long long messages, bytes;
};

static void sum_cancel(struct api_call *call, void *data)
{
    free(data);
    api_call_fail(call, API_GRPC_STATUS_CANCELLED, "cancelled"); /* dead: only frees it */
}

static void sum_start(void *data, struct api_call *call)
{
    (void)data;
    struct sum *sm = calloc(1, sizeof(*sm));
    if (sm == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    api_call_set_context(call, sm);
    api_call_on_cancel(call, sum_cancel, sm);
}

static void sum_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    (void)msg;
    struct sum *sm = api_call_context(call);
    sm->messages++;
    sm->bytes += len;
}

static void sum_half_close(void *data, struct api_call *call)
{
    (void)data;
    struct sum *sm = api_call_context(call);
    char text[48];
    int n = snprintf(text, sizeof(text), "%llu %llu", sm->messages, sm->bytes);
    free(sm);
    api_call_reply(call, (const uint8_t *)text, (size_t)n);
}

static const struct api_stream_handler sum_handler = {
    .start = sum_start,
    .message = sum_message,
    .half_close = sum_half_close,
};

static void hold_cancel(struct api_call *call, void *data)
{
    (void)data;
    g_holds_live--;
    api_call_finish(call, API_GRPC_STATUS_CANCELLED, NULL);
}

static void hold_start(void *data, struct api_call *call)
{
    (void)data;
    g_holds_live++;
    api_call_on_cancel(call, hold_cancel, NULL);
}

static void hold_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    (void)call;
    (void)msg;
    (void)len;
}

static const struct api_stream_handler hold_handler = {
    .start = hold_start,
    .message = hold_message,
    .half_close = NULL,
};

static void echo_meta(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    char name[64];
    if (req_len == 0 || req_len >= sizeof(name)) {
        api_call_fail(call, API_GRPC_STATUS_INVALID_ARGUMENT, "want a header name");
        return;
    }
    memcpy(name, req, req_len);
    name[req_len] = '\0';
    const char *v = api_call_metadata(call, name);
    if (v == NULL) {
        api_call_fail(call, API_GRPC_STATUS_NOT_FOUND, "no such header");
        return;
    }
    api_call_reply(call, (const uint8_t *)v, strlen(v));
}

static void echo_stats(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    (void)req;
    (void)req_len;
    char buf[24];
    int len = snprintf(buf, sizeof(buf), "%zu", g_chat_max_queued);
    api_call_reply(call, (const uint8_t *)buf, (size_t)len);
}

static void kv_range(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    ProtobufCMessage *m =
        api_call_unpack(call, &etcdserverpb__range_request__descriptor, req, req_len);
    if (m == NULL) {
        return;
    }
    Etcdserverpb__RangeRequest *rr = (Etcdserverpb__RangeRequest *)m;
    static const char value[] = "hello from latch";
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = 1;
    hdr.member_id = 1;
    hdr.revision = 1;
    hdr.raft_term = 1;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key = rr->key;
    kv.value.data = (uint8_t *)value;
    kv.value.len = sizeof(value) - 1;
    kv.create_revision = kv.mod_revision = 1;
    kv.version = 1;
    Mvccpb__KeyValue *kvs[] = {&kv};
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    resp.header = &hdr;
    resp.n_kvs = 1;
    resp.kvs = kvs;
    resp.count = 1;
    api_call_reply_pb(call, &resp.base);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* A call held by Never; owned by g_never until answered at shutdown. */
struct held {
    struct held *next;
    struct api_call *call;
};

static struct api_server *g_server;
static struct held *g_never;
static uv_signal_t g_sigterm;
static uv_signal_t g_sighup;
static struct api_tls_ctx *g_tls, *g_mtls;
static int g_exit_code;

static void echo_unary(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    api_call_reply(call, req, req_len);
}

static void later_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void later_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    api_call_reply(l->call, l->bytes, l->len); /* LATCH_ESTATE if the client gave up: fine */
    uv_close((uv_handle_t *)t, later_close_cb);
}

static void echo_later(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    uv_loop_t *loop = data;
    struct later *l = malloc(sizeof(*l) + req_len);
    if (l == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    l->call = call;
    l->len = req_len;
    if (req_len > 0) {
        memcpy(l->bytes, req, req_len);
    }
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, later_cb, 50, 0);
}

static void echo_fail(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    (void)req;
    (void)req_len;
    api_call_fail(call, API_GRPC_STATUS_INVALID_ARGUMENT, "bad thing: \xc3\xa9%\n");
}

static void echo_never(void *data, struct api_call *call, const uint8_t *req, size_t req_len)
{
    (void)data;
    (void)req;
    (void)req_len;
    struct held *h = malloc(sizeof(*h));
    if (h == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    h->call = call;
    h->next = g_never;
    g_never = h;
}

/* Answers every held Never call (UNAVAILABLE while draining; dead ones are just freed). */
static void release_never(void)
{
    while (g_never != NULL) {
        struct held *h = g_never;
        g_never = h->next;
        api_call_fail(h->call, API_GRPC_STATUS_UNAVAILABLE, "shutting down");
        free(h);
    }
}

static void server_closed_cb(struct api_server *s)
{
    (void)s;
    g_server = NULL;
}

static void sigterm_cb(uv_signal_t *sig, int signum)
{
    (void)signum;
    if (g_server != NULL) {
        api_server_shutdown(g_server, 2000, server_closed_cb);
    }
    release_never(); /* their streams would otherwise hold the drain to its limit */
    uv_close((uv_handle_t *)sig, NULL);
    if (uv_is_active((uv_handle_t *)&g_sighup)) {
        uv_close((uv_handle_t *)&g_sighup, NULL);
    }
}

static void sighup_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    (void)signum;
    char err[API_TLS_ERR_MAX];
    if (api_tls_ctx_reload(g_tls, err, sizeof(err)) != 0 ||
        api_tls_ctx_reload(g_mtls, err, sizeof(err)) != 0) {
        fprintf(stderr, "echo_server: reload failed: %s\n", err);
    } else {
        fprintf(stderr, "echo_server: certificates reloaded\n");
    }
}

/* Makes the TLS and mTLS contexts from dir. Returns 0 or -1 (reason printed). */
static int make_tls(const char *dir)
{
    char cert[4096], key[4096], ca[4096], err[API_TLS_ERR_MAX];
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    struct api_tls_config tc = {.cert_file = cert, .key_file = key};
    struct api_tls_config mc = {
        .cert_file = cert, .key_file = key, .ca_file = ca, .verify_peer = true};
    if (api_tls_ctx_new(&tc, true, &g_tls, err, sizeof(err)) != 0 ||
        api_tls_ctx_new(&mc, true, &g_mtls, err, sizeof(err)) != 0) {
        fprintf(stderr, "echo_server: TLS: %s\n", err);
        return -1;
    }
    return 0;
}

static int write_port_file(const char *path, const int *ports, int n)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < n; i++) {
        ok = fprintf(f, "%d\n", ports[i]) > 0 && ok;
    }
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a peer's reset must fail a write, not kill the process */
    const char *port_file = NULL;
    const char *tls_dir = NULL;
    struct api_server_config cfg = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strcmp(argv[i], "--max-connections") == 0 && i + 1 < argc) {
            cfg.max_connections = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--max-send-msg-size") == 0 && i + 1 < argc) {
            cfg.max_send_msg_size = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--tls-dir") == 0 && i + 1 < argc) {
            tls_dir = argv[++i];
        } else {
            port_file = NULL;
            break;
        }
    }
    if (port_file == NULL) {
        fprintf(
            stderr,
            "usage: %s --port-file F [--max-connections N] [--max-send-msg-size N] [--tls-dir D]\n",
            argv[0]);
        return 2;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    int ports[3] = {0, 0, 0};
    int nports = tls_dir != NULL ? 3 : 1;
    if (tls_dir != NULL && make_tls(tls_dir) != 0) {
        return 1;
    }
    if (api_server_new(&loop, &cfg, &g_server) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Unary", echo_unary, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Later", echo_later, &loop) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Fail", echo_fail, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Never", echo_never, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Active", echo_active, NULL) != 0 ||
        api_server_register_server_stream(g_server, "/latch.test.Echo/Count", echo_count, NULL) !=
            0 ||
        api_server_register_bidi_stream(g_server, "/latch.test.Echo/Chat", &chat_handler, NULL) !=
            0 ||
        api_server_register_client_stream(g_server, "/latch.test.Echo/Sum", &sum_handler, NULL) !=
            0 ||
        api_server_register_bidi_stream(g_server, "/latch.test.Echo/Hold", &hold_handler, NULL) !=
            0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Meta", echo_meta, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Stats", echo_stats, NULL) != 0 ||
        api_server_register_unary(g_server, "/etcdserverpb.KV/Range", kv_range, NULL) != 0 ||
        api_server_listen(g_server, "127.0.0.1", 0, &ports[0]) != 0 ||
        (tls_dir != NULL &&
         (api_server_listen_tls(g_server, "127.0.0.1", 0, g_tls, &ports[1]) != 0 ||
          api_server_listen_tls(g_server, "127.0.0.1", 0, g_mtls, &ports[2]) != 0))) {
        fprintf(stderr, "echo_server: cannot start the server\n");
        g_exit_code = 1;
        if (g_server != NULL) {
            api_server_close(g_server, server_closed_cb);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return g_exit_code;
    }
    if (write_port_file(port_file, ports, nports) != 0) {
        fprintf(stderr, "echo_server: cannot write %s\n", port_file);
        api_server_close(g_server, server_closed_cb);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &g_sigterm);
    uv_signal_start(&g_sigterm, sigterm_cb, SIGTERM);
    if (tls_dir != NULL) {
        uv_signal_init(&loop, &g_sighup);
        uv_signal_start(&g_sighup, sighup_cb, SIGHUP);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    api_tls_ctx_free(g_tls);
    api_tls_ctx_free(g_mtls);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "echo_server: handles left open at exit\n");
        return 1;
    }
    return g_server == NULL ? 0 : 1;
}
