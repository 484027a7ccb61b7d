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
 * --max-connections N sets api_server_config.max_connections (default: the server's).
 * On SIGTERM it shuts the server down gracefully (api_server_shutdown, 2000 ms drain: Later
 * calls in flight are still answered; held Never calls are failed UNAVAILABLE at once) and
 * runs the loop until every handle is closed, then exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "grpc_server.h"
#include "grpc_wire.h"

struct later {
    uv_timer_t timer;
    struct api_call *call; /* answered exactly once, in later_cb */
    size_t len;
    uint8_t bytes[];
};

/* Count producers still running: /latch.test.Echo/Active reports it, so the test can see
 * that a cancelled stream stops its producer without timing anything. */
static unsigned long g_counters_live;

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
    int len = snprintf(buf, sizeof(buf), "%lu", g_counters_live);
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

/* A call held by Never; owned by g_never until answered at shutdown. */
struct held {
    struct held *next;
    struct api_call *call;
};

static struct api_server *g_server;
static struct held *g_never;
static uv_signal_t g_sigterm;
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
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *port_file = NULL;
    struct api_server_config cfg = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strcmp(argv[i], "--max-connections") == 0 && i + 1 < argc) {
            cfg.max_connections = strtoul(argv[++i], NULL, 10);
        } else {
            port_file = NULL;
            break;
        }
    }
    if (port_file == NULL) {
        fprintf(stderr, "usage: %s --port-file F [--max-connections N]\n", argv[0]);
        return 2;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    int port = 0;
    if (api_server_new(&loop, &cfg, &g_server) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Unary", echo_unary, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Later", echo_later, &loop) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Fail", echo_fail, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Never", echo_never, NULL) != 0 ||
        api_server_register_unary(g_server, "/latch.test.Echo/Active", echo_active, NULL) != 0 ||
        api_server_register_server_stream(g_server, "/latch.test.Echo/Count", echo_count, NULL) !=
            0 ||
        api_server_listen(g_server, "127.0.0.1", 0, &port) != 0) {
        fprintf(stderr, "echo_server: cannot start the server\n");
        g_exit_code = 1;
        if (g_server != NULL) {
            api_server_close(g_server, server_closed_cb);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return g_exit_code;
    }
    if (write_port_file(port_file, port) != 0) {
        fprintf(stderr, "echo_server: cannot write %s\n", port_file);
        api_server_close(g_server, server_closed_cb);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &g_sigterm);
    uv_signal_start(&g_sigterm, sigterm_cb, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "echo_server: handles left open at exit\n");
        return 1;
    }
    return g_server == NULL ? 0 : 1;
}
