/*
 * client_test.c — grpc_client_test ECHO_SERVER PY_SERVER: api/grpc_client against real peers
 * on loopback.
 *
 *   (a) the C echo server (tests/integration/api/echo_server.c) over h2c, TLS and mTLS, with
 *       certificates from scripts/make-test-certs.sh in a temporary directory;
 *   (b) a grpcio (C-core) server, tests/integration/api/py_server.py, run by /usr/bin/python3.
 *
 * Prints "ok - <check>" or "FAIL - <check>: <why>" per check and exits 1 if any failed. Waits
 * are bounded waits for conditions, never timed assertions. Processes are started with
 * uv_spawn and stopped by their PID only. Everything runs on one uv loop, which must end with
 * no handle left (and LeakSanitizer checks the heap at exit).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "grpc_client.h"
#include "grpc_tls.h"
#include "grpc_wire.h"
#include "latch_error.h"

#ifndef LATCH_SOURCE_DIR
#error "LATCH_SOURCE_DIR must name the source tree (for scripts/make-test-certs.sh)"
#endif

static uv_loop_t g_loop;
static int g_failures;
static char g_tmp[256];

static void check(const char *name, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(const char *name, bool ok, const char *fmt, ...)
{
    if (ok) {
        printf("ok - %s\n", name);
    } else {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        printf("FAIL - %s: %s\n", name, why);
        g_failures++;
    }
    fflush(stdout);
}

/* ---- loop helpers ---- */

static void noop_timer_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until pred(arg) or timeout_ms passed. Returns pred(arg). */
static bool run_until(bool (*pred)(void *), void *arg, uint64_t timeout_ms)
{
    uv_timer_t timer;
    uv_timer_init(&g_loop, &timer);
    uv_update_time(&g_loop);
    uv_timer_start(&timer, noop_timer_cb, timeout_ms, 0);
    while (!pred(arg) && uv_is_active((uv_handle_t *)&timer)) {
        uv_run(&g_loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    return pred(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void sleep_loop(uint64_t ms)
{
    run_until(never, NULL, ms);
}

/* ---- processes ---- */

struct proc {
    uv_process_t h;
    bool running;
    bool open;
    int64_t exit_status;
    int term_signal;
};

static void proc_exit_cb(uv_process_t *h, int64_t exit_status, int term_signal)
{
    struct proc *p = h->data;
    p->running = false;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
}

static int proc_spawn(struct proc *p, char **argv)
{
    memset(p, 0, sizeof(*p));
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t o = {0};
    o.file = argv[0];
    o.args = argv;
    o.exit_cb = proc_exit_cb;
    o.stdio = stdio;
    o.stdio_count = 3;
    p->h.data = p;
    int rv = uv_spawn(&g_loop, &p->h, &o);
    if (rv != 0) {
        fprintf(stderr, "spawn %s: %s\n", argv[0], uv_strerror(rv));
        uv_close((uv_handle_t *)&p->h, NULL);
        uv_run(&g_loop, UV_RUN_NOWAIT);
        return -1;
    }
    p->running = true;
    p->open = true;
    return 0;
}

static bool proc_exited(void *arg)
{
    return !((struct proc *)arg)->running;
}

/* Sends sig to p's PID and waits (bounded) for it to exit, then closes the handle. */
static void proc_stop(struct proc *p, int sig)
{
    if (!p->open) {
        return;
    }
    if (p->running) {
        uv_kill(p->h.pid, sig);
        if (!run_until(proc_exited, p, 20000)) {
            uv_kill(p->h.pid, SIGKILL);
            run_until(proc_exited, p, 20000);
        }
    }
    uv_close((uv_handle_t *)&p->h, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    p->open = false;
}

struct port_wait {
    const char *path;
    int ports[3];
    int want;
};

static bool ports_ready(void *arg)
{
    struct port_wait *w = arg;
    FILE *f = fopen(w->path, "r");
    if (f == NULL) {
        return false;
    }
    int n = 0;
    while (n < w->want && fscanf(f, "%d", &w->ports[n]) == 1) {
        n++;
    }
    fclose(f);
    return n == w->want;
}

/* Waits (bounded) for path to hold want ports, polling every 20 ms. Returns 0 or -1. */
static int wait_ports(const char *path, int want, int *ports)
{
    struct port_wait w = {.path = path, .want = want};
    for (int i = 0; i < 1000; i++) {
        if (ports_ready(&w)) {
            memcpy(ports, w.ports, sizeof(int) * (size_t)want);
            return 0;
        }
        sleep_loop(20);
    }
    return -1;
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        return 1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- channels and calls ---- */

static void channel_closed_cb(struct api_channel *ch, void *data)
{
    (void)ch;
    *(bool *)data = true;
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

static void close_channel(struct api_channel *ch)
{
    bool closed = false;
    api_channel_close(ch, channel_closed_cb, &closed);
    if (!run_until(flag_set, &closed, 20000)) {
        check("channel closes", false, "done callback did not run");
    }
}

static struct api_channel *open_channel(const char *endpoint, struct api_channel_config *base)
{
    struct api_channel_config cfg = {0};
    if (base != NULL) {
        cfg = *base;
    }
    const char *eps[1] = {endpoint};
    if (cfg.endpoints == NULL) {
        cfg.endpoints = eps;
        cfg.endpoints_count = 1;
    }
    cfg.seed = cfg.seed != 0 ? cfg.seed : 42;
    struct api_channel *ch = NULL;
    int rc = api_channel_new(&g_loop, &cfg, &ch);
    if (rc != 0) {
        printf("api_channel_new(%s): %s\n", endpoint, latch_strerror(rc));
        return NULL;
    }
    return ch;
}

/* What a call saw. */
struct result {
    bool done;
    int status;
    char message[512];
    size_t nmsgs;
    size_t bytes;
    uint8_t *first; /* copy of the first message */
    size_t first_len;
    bool in_order; /* each message was the decimal of its index */
    size_t cancel_after;
    /* bidi producer */
    struct api_ccall *call;
    size_t to_send, sent, msg_size;
    size_t would_blocks;
    bool send_error;
};

static void result_free(struct result *r)
{
    free(r->first);
    memset(r, 0, sizeof(*r));
}

static void on_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    struct result *r = data;
    if (r->nmsgs == 0) {
        r->in_order = true;
        r->first = malloc(len > 0 ? len : 1);
        memcpy(r->first, msg, len);
        r->first_len = len;
    }
    char want[24];
    int n = snprintf(want, sizeof(want), "%zu", r->nmsgs);
    if ((size_t)n != len || memcmp(want, msg, len) != 0) {
        r->in_order = false;
    }
    r->nmsgs++;
    r->bytes += len;
    if (r->cancel_after > 0 && r->nmsgs == r->cancel_after) {
        api_ccall_cancel(call);
    }
}

static void on_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct result *r = data;
    r->done = true;
    r->status = status;
    snprintf(r->message, sizeof(r->message), "%s", message);
    r->call = NULL;
}

static void produce(struct api_ccall *call, void *data);

static const struct api_ccall_callbacks g_cbs = {
    .on_message = on_message,
    .on_writable = produce,
    .on_done = on_done,
};

static bool result_done(void *arg)
{
    return ((struct result *)arg)->done;
}

/* Starts path with one request message and a half-close. Returns the call or NULL. */
static struct api_ccall *start_simple(struct api_channel *ch,
                                      const char *path,
                                      const void *req,
                                      size_t len,
                                      const struct api_call_opts *opts,
                                      struct result *r)
{
    struct api_ccall *call = NULL;
    memset(r, 0, sizeof(*r));
    if (api_ccall_start(ch, path, opts, &g_cbs, r, &call) != 0 ||
        api_ccall_send(call, req, len, NULL) != 0 || api_ccall_close_send(call) != 0) {
        return NULL;
    }
    r->call = call;
    return call;
}

/* A unary call run to completion (bounded). Returns whether it finished. */
static bool do_call(struct api_channel *ch,
                    const char *path,
                    const void *req,
                    size_t len,
                    const struct api_call_opts *opts,
                    struct result *r,
                    uint64_t wait_ms)
{
    if (start_simple(ch, path, req, len, opts, r) == NULL) {
        return false;
    }
    return run_until(result_done, r, wait_ms);
}

/* Sends r->to_send messages of r->msg_size bytes, pausing at would_block. */
static void produce(struct api_ccall *call, void *data)
{
    struct result *r = data;
    uint8_t buf[4096];
    memset(buf, 'x', sizeof(buf));
    while (r->sent < r->to_send) {
        bool wb = false;
        if (api_ccall_send(call, buf, r->msg_size, &wb) != 0) {
            r->send_error = true;
            return;
        }
        r->sent++;
        if (wb) {
            r->would_blocks++;
            return; /* on_writable resumes */
        }
    }
    api_ccall_close_send(call);
}

/* ---- the checks, per server ---- */

static char g_name[160];

static const char *name(const char *prefix, const char *what)
{
    snprintf(g_name, sizeof(g_name), "%s: %s", prefix, what);
    return g_name;
}

static void check_unary_echo(struct api_channel *ch, const char *pfx, const char *path)
{
    static const size_t sizes[] = {0, 5, (size_t)(1.9 * 1024 * 1024)};
    static const char *labels[] = {"unary echo (empty)", "unary echo (small)",
                                   "unary echo (1.9 MiB)"};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *req = malloc(sizes[i] + 1);
        for (size_t j = 0; j < sizes[i]; j++) {
            req[j] = (uint8_t)(j * 31 + 7);
        }
        struct result r;
        bool fin = do_call(ch, path, req, sizes[i], NULL, &r, 30000);
        bool ok = fin && r.status == 0 && r.nmsgs == 1 && r.first_len == sizes[i] &&
                  (sizes[i] == 0 || memcmp(r.first, req, sizes[i]) == 0);
        check(name(pfx, labels[i]), ok, "finished=%d status=%d (%s) msgs=%zu len=%zu", fin,
              r.status, r.message, r.nmsgs, r.first_len);
        result_free(&r);
        free(req);
    }
}

static void check_server_stream(struct api_channel *ch, const char *pfx, const char *path)
{
    struct result r;
    bool fin = do_call(ch, path, "100000", 6, NULL, &r, 120000);
    check(name(pfx, "server streaming 100000 messages"),
          fin && r.status == 0 && r.nmsgs == 100000 && r.in_order,
          "finished=%d status=%d (%s) msgs=%zu in_order=%d", fin, r.status, r.message, r.nmsgs,
          r.in_order);
    result_free(&r);
}

static void check_bidi(struct api_channel *ch, const char *pfx, const char *path)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    r.to_send = 20000;
    r.msg_size = 1024;
    struct api_ccall *call = NULL;
    bool fin = false;
    if (api_ccall_start(ch, path, NULL, &g_cbs, &r, &call) == 0) {
        r.call = call;
        produce(call, &r);
        fin = run_until(result_done, &r, 120000);
    }
    check(name(pfx, "bidi echo 20000 x 1 KiB with backpressure"),
          fin && r.status == 0 && r.nmsgs == 20000 && r.bytes == 20000u * 1024u &&
              r.would_blocks > 0 && !r.send_error,
          "finished=%d status=%d (%s) msgs=%zu bytes=%zu would_blocks=%zu sent=%zu", fin, r.status,
          r.message, r.nmsgs, r.bytes, r.would_blocks, r.sent);
    result_free(&r);
}

static void check_client_stream(struct api_channel *ch, const char *pfx, const char *path)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    r.to_send = 100;
    r.msg_size = 100;
    struct api_ccall *call = NULL;
    bool fin = false;
    if (api_ccall_start(ch, path, NULL, &g_cbs, &r, &call) == 0) {
        produce(call, &r);
        fin = run_until(result_done, &r, 30000);
    }
    bool ok = fin && r.status == 0 && r.nmsgs == 1 && r.first_len == 9 &&
              memcmp(r.first, "100 10000", 9) == 0;
    check(name(pfx, "client streaming sum"), ok, "finished=%d status=%d (%s) answer=%.*s", fin,
          r.status, r.message, (int)r.first_len, r.first != NULL ? (char *)r.first : "");
    result_free(&r);
}

static void
check_error(struct api_channel *ch, const char *pfx, const char *path, const char *want_msg)
{
    struct result r;
    bool fin = do_call(ch, path, "", 0, NULL, &r, 30000);
    check(name(pfx, "error status with percent-decoded message"),
          fin && r.status == API_GRPC_STATUS_INVALID_ARGUMENT && strcmp(r.message, want_msg) == 0,
          "finished=%d status=%d message=\"%s\"", fin, r.status, r.message);
    result_free(&r);
}

static void
check_deadlines(struct api_channel *ch, const char *pfx, const char *path, const char *req)
{
    struct result r;
    struct api_call_opts opts = {.timeout_ms = 200};
    bool fin = do_call(ch, path, req, strlen(req), &opts, &r, 30000);
    /* Both ends enforce the same deadline here, so either may win ("Deadline Exceeded" is the
     * client's text); the client-only case is a queued call (suite_failover). */
    check(name(pfx, "deadline exceeded on a live stream"),
          fin && r.status == API_GRPC_STATUS_DEADLINE_EXCEEDED, "finished=%d status=%d (%s)", fin,
          r.status, r.message);
    result_free(&r);
    /* The local timer is 60 s late; the wait gives up after 30 s: DEADLINE_EXCEEDED within it
     * can only be the server's. */
    opts.local_grace_ms = 60000;
    fin = do_call(ch, path, req, strlen(req), &opts, &r, 30000);
    check(name(pfx, "deadline exceeded (server-enforced)"),
          fin && r.status == API_GRPC_STATUS_DEADLINE_EXCEEDED, "finished=%d status=%d (%s)", fin,
          r.status, r.message);
    result_free(&r);
}

static void check_cancel(struct api_channel *ch, const char *pfx, const char *count_path)
{
    struct result r;
    start_simple(ch, count_path, "1000000000", 10, NULL, &r);
    r.cancel_after = 10;
    bool fin = run_until(result_done, &r, 30000);
    check(name(pfx, "cancel a running server stream"),
          fin && r.status == API_GRPC_STATUS_CANCELLED && r.nmsgs == 10,
          "finished=%d status=%d (%s) msgs=%zu", fin, r.status, r.message, r.nmsgs);
    result_free(&r);
    struct api_ccall *call = start_simple(ch, count_path, "1000", 4, NULL, &r);
    if (call != NULL) {
        api_ccall_cancel(call);
    }
    fin = run_until(result_done, &r, 30000);
    check(name(pfx, "cancel right after start"),
          call != NULL && fin && r.status == API_GRPC_STATUS_CANCELLED,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
}

static void check_unknown_and_meta(struct api_channel *ch, const char *pfx, const char *meta_path)
{
    struct result r;
    bool fin = do_call(ch, "/latch.test.Nope/Missing", "x", 1, NULL, &r, 30000);
    check(name(pfx, "unknown method is UNIMPLEMENTED"),
          fin && r.status == API_GRPC_STATUS_UNIMPLEMENTED, "finished=%d status=%d (%s)", fin,
          r.status, r.message);
    result_free(&r);
    struct api_metadata md[] = {{"x-latch-test", "hello metadata"}, {"token", "t0k"}};
    struct api_call_opts opts = {.metadata = md, .metadata_count = 2, .timeout_ms = 30000};
    fin = do_call(ch, meta_path, "x-latch-test", 12, &opts, &r, 30000);
    check(name(pfx, "metadata delivered"),
          fin && r.status == 0 && r.first_len == 14 && memcmp(r.first, "hello metadata", 14) == 0,
          "finished=%d status=%d (%s) value=%.*s", fin, r.status, r.message, (int)r.first_len,
          r.first != NULL ? (char *)r.first : "");
    result_free(&r);
}

static void check_max_recv(const char *endpoint, const char *pfx, const char *path)
{
    struct api_channel_config cfg = {.max_recv_msg_size = 1 << 20};
    struct api_channel *ch = open_channel(endpoint, &cfg);
    if (ch == NULL) {
        check(name(pfx, "response over max receive size"), false, "no channel");
        return;
    }
    size_t len = (size_t)3 << 19;
    uint8_t *req = calloc(1, len);
    struct result r;
    bool fin = do_call(ch, path, req, len, NULL, &r, 30000);
    check(name(pfx, "response over max receive size is RESOURCE_EXHAUSTED"),
          fin && r.status == API_GRPC_STATUS_RESOURCE_EXHAUSTED && r.nmsgs == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    fin = do_call(ch, path, "ok", 2, NULL, &r, 30000);
    check(name(pfx, "channel still works after it"), fin && r.status == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    free(req);
    close_channel(ch);
}

static void check_close_with_calls(struct api_channel *ch, const char *pfx, const char *path)
{
    struct result r;
    start_simple(ch, path, "x", 1, NULL, &r);
    sleep_loop(50);
    close_channel(ch);
    check(name(pfx, "channel close fails the calls in flight with CANCELLED"),
          r.done && r.status == API_GRPC_STATUS_CANCELLED, "done=%d status=%d (%s)", r.done,
          r.status, r.message);
    result_free(&r);
}

/* ---- suites ---- */

static void suite_echo(int port)
{
    const char *pfx = "echo h2c";
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
    struct api_channel *ch = open_channel(ep, NULL);
    if (ch == NULL) {
        check(pfx, false, "no channel");
        return;
    }
    check_unary_echo(ch, pfx, "/latch.test.Echo/Unary");
    check_server_stream(ch, pfx, "/latch.test.Echo/Count");
    check_bidi(ch, pfx, "/latch.test.Echo/Chat");
    check_client_stream(ch, pfx, "/latch.test.Echo/Sum");
    check_error(ch, pfx, "/latch.test.Echo/Fail", "bad thing: \xc3\xa9%\n");
    check_deadlines(ch, pfx, "/latch.test.Echo/Never", "x");
    check_cancel(ch, pfx, "/latch.test.Echo/Count");
    /* The server saw the cancel: its producer stopped (bounded wait for the condition). */
    bool idle = false;
    for (int i = 0; i < 200 && !idle; i++) {
        struct result r;
        idle = do_call(ch, "/latch.test.Echo/Active", "", 0, NULL, &r, 10000) && r.status == 0 &&
               r.first_len == 1 && r.first[0] == '0';
        result_free(&r);
        if (!idle) {
            sleep_loop(50);
        }
    }
    check(name(pfx, "cancelled streams stopped on the server"), idle, "Active never reached 0");
    check_unknown_and_meta(ch, pfx, "/latch.test.Echo/Meta");
    check_close_with_calls(ch, pfx, "/latch.test.Echo/Never");
    check_max_recv(ep, pfx, "/latch.test.Echo/Unary");
}

static void suite_python(int port)
{
    const char *pfx = "grpcio h2c";
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
    struct api_channel *ch = open_channel(ep, NULL);
    if (ch == NULL) {
        check(pfx, false, "no channel");
        return;
    }
    check_unary_echo(ch, pfx, "/latch.test.Py/Unary");
    check_server_stream(ch, pfx, "/latch.test.Py/Count");
    check_bidi(ch, pfx, "/latch.test.Py/Chat");
    check_client_stream(ch, pfx, "/latch.test.Py/Sum");
    check_error(ch, pfx, "/latch.test.Py/Fail", "bad thing: \xc3\xa9%");
    check_deadlines(ch, pfx, "/latch.test.Py/Sleep", "20000");
    check_cancel(ch, pfx, "/latch.test.Py/Count");
    check_unknown_and_meta(ch, pfx, "/latch.test.Py/Meta");
    struct result r;
    const char *req = "16:who are you? 100%";
    bool fin = do_call(ch, "/latch.test.Py/Fail", req, strlen(req), NULL, &r, 30000);
    check(name(pfx, "status and message as given"),
          fin && r.status == 16 && strcmp(r.message, "who are you? 100%") == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    close_channel(ch);
}

static struct api_tls_ctx *client_tls(const char *ca, bool with_cert)
{
    char ca_path[512], cert[512], key[512], err[API_TLS_ERR_MAX];
    snprintf(ca_path, sizeof(ca_path), "%s/certs/%s", g_tmp, ca);
    snprintf(cert, sizeof(cert), "%s/certs/client.pem", g_tmp);
    snprintf(key, sizeof(key), "%s/certs/client.key", g_tmp);
    struct api_tls_config c = {.ca_file = ca_path, .server_name = "127.0.0.1"};
    if (with_cert) {
        c.cert_file = cert;
        c.key_file = key;
    }
    struct api_tls_ctx *ctx = NULL;
    if (api_tls_ctx_new(&c, false, &ctx, err, sizeof(err)) != 0) {
        printf("client TLS context: %s\n", err);
        return NULL;
    }
    return ctx;
}

static void tls_case(const char *what, int port, const char *ca, bool cert, int want)
{
    struct api_tls_ctx *tls = client_tls(ca, cert);
    char ep[64];
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d", port);
    struct api_channel_config cfg = {.tls = tls};
    struct api_channel *ch = tls != NULL ? open_channel(ep, &cfg) : NULL;
    struct result r = {0};
    bool fin = ch != NULL && do_call(ch, "/latch.test.Echo/Unary", "tls", 3, NULL, &r, 30000);
    check(what, fin && r.status == want && (want != 0 || r.first_len == 3),
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    if (ch != NULL) {
        close_channel(ch);
    }
    api_tls_ctx_free(tls);
}

static void suite_tls(const int ports[3])
{
    tls_case("echo TLS: unary echo", ports[1], "ca.pem", false, 0);
    tls_case("echo TLS: wrong CA is UNAVAILABLE", ports[1], "rogue-ca.pem", false,
             API_GRPC_STATUS_UNAVAILABLE);
    tls_case("echo mTLS: client certificate accepted", ports[2], "ca.pem", true, 0);
    tls_case("echo mTLS: no client certificate is UNAVAILABLE", ports[2], "ca.pem", false,
             API_GRPC_STATUS_UNAVAILABLE);
    /* A server-streaming call over TLS, to move more than one TLS record each way. */
    struct api_tls_ctx *tls = client_tls("ca.pem", true);
    char ep[64];
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d", ports[2]);
    struct api_channel_config cfg = {.tls = tls};
    struct api_channel *ch = open_channel(ep, &cfg);
    if (ch != NULL) {
        check_server_stream(ch, "echo mTLS", "/latch.test.Echo/Count");
        close_channel(ch);
    }
    api_tls_ctx_free(tls);
}

static void suite_failover(int port)
{
    char bad[64], good[64];
    snprintf(bad, sizeof(bad), "127.0.0.1:%d", closed_port());
    snprintf(good, sizeof(good), "127.0.0.1:%d", port);
    const char *eps[2] = {bad, good};
    struct api_channel_config cfg = {.endpoints = eps, .endpoints_count = 2};
    struct api_channel *ch = open_channel(bad, &cfg);
    struct result r = {0};
    bool fin = ch != NULL && do_call(ch, "/latch.test.Echo/Unary", "f", 1, NULL, &r, 30000);
    check("failover: closed first endpoint, second works", fin && r.status == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    if (ch != NULL) {
        close_channel(ch);
    }
    /* A name: "localhost" may resolve to ::1 first, where nothing listens; the next address
     * of the same endpoint is tried before giving up on it. */
    char named[64];
    snprintf(named, sizeof(named), "localhost:%d", port);
    ch = open_channel(named, NULL);
    fin = ch != NULL && do_call(ch, "/latch.test.Echo/Unary", "n", 1, NULL, &r, 30000);
    check("failover: a name resolved with uv_getaddrinfo", fin && r.status == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    if (ch != NULL) {
        close_channel(ch);
    }
    /* Only closed ports: the fail-fast call is UNAVAILABLE with the reason. */
    const char *eps2[1] = {bad};
    struct api_channel_config cfg2 = {.endpoints = eps2, .endpoints_count = 1};
    ch = open_channel(bad, &cfg2);
    fin = ch != NULL && do_call(ch, "/latch.test.Echo/Unary", "f", 1, NULL, &r, 30000);
    check("failover: nothing listening is UNAVAILABLE",
          fin && r.status == API_GRPC_STATUS_UNAVAILABLE && strstr(r.message, bad) != NULL,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    /* A wait_for_ready call never reaches a server: only the client can end it. */
    struct api_call_opts opts = {.wait_for_ready = true, .timeout_ms = 300};
    fin = ch != NULL && do_call(ch, "/latch.test.Echo/Unary", "f", 1, &opts, &r, 30000);
    check("deadline exceeded (client-enforced, wait_for_ready call never connected)",
          fin && r.status == API_GRPC_STATUS_DEADLINE_EXCEEDED &&
              strcmp(r.message, "Deadline Exceeded") == 0,
          "finished=%d status=%d (%s)", fin, r.status, r.message);
    result_free(&r);
    if (ch != NULL) {
        close_channel(ch);
    }
}

struct state_wait {
    struct api_channel *ch;
    enum api_channel_state want;
};

static bool state_is(void *arg)
{
    struct state_wait *w = arg;
    return api_channel_state(w->ch) == w->want;
}

static int start_py(struct proc *p, const char *py, int port, char *port_file, size_t cap)
{
    static int seq;
    char port_arg[16];
    snprintf(port_file, cap, "%s/py-port-%d", g_tmp, seq++);
    snprintf(port_arg, sizeof(port_arg), "%d", port);
    char *argv[] = {"/usr/bin/python3", (char *)py, "--port-file", port_file,
                    "--port",           port_arg,   NULL};
    return proc_spawn(p, argv);
}

static void suite_reconnect(const char *py, struct proc *server, int port)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
    struct api_channel_config cfg = {.backoff_initial_ms = 50, .backoff_max_ms = 1000};
    struct api_channel *ch = open_channel(ep, &cfg);
    struct result r = {0};
    bool fin = do_call(ch, "/latch.test.Py/Unary", "a", 1, NULL, &r, 30000);
    check("reconnect: call before the kill", fin && r.status == 0, "status=%d (%s)", r.status,
          r.message);
    result_free(&r);
    /* A stream open across the kill fails UNAVAILABLE. */
    struct result live;
    start_simple(ch, "/latch.test.Py/Sleep", "60000", 5, NULL, &live);
    sleep_loop(100);
    proc_stop(server, SIGKILL);
    fin = run_until(result_done, &live, 30000);
    check("reconnect: connection loss fails the live call UNAVAILABLE",
          fin && live.status == API_GRPC_STATUS_UNAVAILABLE, "finished=%d status=%d (%s)", fin,
          live.status, live.message);
    result_free(&live);
    struct state_wait w = {ch, API_CHANNEL_TRANSIENT_FAILURE};
    bool tf = run_until(state_is, &w, 30000);
    fin = tf && do_call(ch, "/latch.test.Py/Unary", "b", 1, NULL, &r, 30000);
    check("reconnect: fail-fast call in backoff is UNAVAILABLE",
          fin && r.status == API_GRPC_STATUS_UNAVAILABLE,
          "in_backoff=%d finished=%d status=%d (%s)", tf, fin, r.status, r.message);
    result_free(&r);
    struct api_call_opts opts = {.wait_for_ready = true, .timeout_ms = 60000};
    start_simple(ch, "/latch.test.Py/Unary", "c", 1, &opts, &r);
    char port_file[512];
    int ports[1];
    bool up = start_py(server, py, port, port_file, sizeof(port_file)) == 0 &&
              wait_ports(port_file, 1, ports) == 0;
    fin = up && run_until(result_done, &r, 60000);
    check("reconnect: wait_for_ready call succeeds after the restart",
          fin && r.status == 0 && r.first_len == 1 && r.first[0] == 'c',
          "restarted=%d finished=%d status=%d (%s)", up, fin, r.status, r.message);
    result_free(&r);
    check("reconnect: channel READY again", api_channel_state(ch) == API_CHANNEL_READY, "state=%d",
          api_channel_state(ch));
    close_channel(ch);
}

static void suite_blocking(int port)
{
    char ep[64], err[256];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
    const char *eps[1] = {ep};
    struct api_channel_config cfg = {.endpoints = eps, .endpoints_count = 1};
    struct api_blocking *b = NULL;
    int rc = api_blocking_connect(&cfg, 10000, &b, err, sizeof(err));
    check("blocking: connect", rc == 0, "%s: %s", latch_strerror(rc), err);
    if (rc != 0) {
        return;
    }
    int status = -1;
    char *message = NULL;
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    struct api_call_opts opts = {.timeout_ms = 10000};
    rc = api_blocking_unary(b, "/latch.test.Echo/Unary", (const uint8_t *)"blocking", 8, &opts,
                            &status, &message, &resp, &resp_len);
    check("blocking: unary",
          rc == 0 && status == 0 && resp_len == 8 && memcmp(resp, "blocking", 8) == 0,
          "rc=%d status=%d (%s)", rc, status, message != NULL ? message : "");
    free(message);
    free(resp);
    struct api_blocking_stream *s = NULL;
    rc = api_blocking_stream_start(b, "/latch.test.Echo/Count", (const uint8_t *)"1000", 4, NULL,
                                   &s);
    size_t n = 0;
    bool order = true;
    int got = API_BLOCKING_TIMEOUT;
    while (rc == 0) {
        uint8_t *msg;
        size_t len;
        got = api_blocking_stream_next(s, 10000, &msg, &len);
        if (got != API_BLOCKING_MESSAGE) {
            break;
        }
        char want[24];
        int wl = snprintf(want, sizeof(want), "%zu", n++);
        order = order && (size_t)wl == len && memcmp(want, msg, len) == 0;
        free(msg);
    }
    int st = s != NULL ? api_blocking_stream_status(s, NULL) : -1;
    check("blocking: server stream of 1000 pulled one by one",
          rc == 0 && got == API_BLOCKING_END && st == 0 && n == 1000 && order,
          "rc=%d last=%d status=%d n=%zu order=%d", rc, got, st, n, order);
    api_blocking_stream_free(s);
    /* A stream abandoned half way is cancelled by free. */
    rc = api_blocking_stream_start(b, "/latch.test.Echo/Count", (const uint8_t *)"100000000", 9,
                                   NULL, &s);
    uint8_t *msg = NULL;
    size_t len = 0;
    got = rc == 0 ? api_blocking_stream_next(s, 10000, &msg, &len) : -1;
    free(msg);
    api_blocking_stream_free(s);
    check("blocking: stream freed half way", got == API_BLOCKING_MESSAGE, "got=%d", got);
    api_blocking_free(b);
    char bad[64];
    snprintf(bad, sizeof(bad), "127.0.0.1:%d", closed_port());
    eps[0] = bad;
    rc = api_blocking_connect(&cfg, 10000, &b, err, sizeof(err));
    check("blocking: connect to nothing fails", rc == LATCH_EUNAVAILABLE && b == NULL, "rc=%d", rc);
}

/* The echo server's graceful shutdown: GOAWAY first, and the held call still gets its answer
 * on the old connection (echo_server fails held Never calls UNAVAILABLE "shutting down"). */
static void suite_goaway(struct proc *echo, int port)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", port);
    struct api_channel *ch = open_channel(ep, NULL);
    struct result held, r;
    start_simple(ch, "/latch.test.Echo/Never", "x", 1, NULL, &held);
    /* Frames are handled in order: once this answer is in, Never is held by the server. */
    bool fin = do_call(ch, "/latch.test.Echo/Unary", "y", 1, NULL, &r, 30000);
    result_free(&r);
    proc_stop(echo, SIGTERM);
    bool got = fin && run_until(result_done, &held, 30000);
    check("goaway: a stream the server kept finishes on the draining connection",
          got && held.status == API_GRPC_STATUS_UNAVAILABLE &&
              strcmp(held.message, "shutting down") == 0,
          "finished=%d status=%d (%s)", got, held.status, held.message);
    result_free(&held);
    struct state_wait w = {ch, API_CHANNEL_TRANSIENT_FAILURE};
    check("goaway: the channel moves on and finds the server gone", run_until(state_is, &w, 30000),
          "state=%d", api_channel_state(ch));
    close_channel(ch);
}

static int make_certs(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "bash '%s/scripts/make-test-certs.sh' '%s/certs'", LATCH_SOURCE_DIR,
             g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ECHO_SERVER PY_SERVER\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/latch-client-test-XXXXXX");
    if (mkdtemp(g_tmp) == NULL || uv_loop_init(&g_loop) != 0) {
        perror("setup");
        return 1;
    }
    char certs[300];
    snprintf(certs, sizeof(certs), "%s/certs", g_tmp);
    struct proc echo = {0}, py = {0};
    int echo_ports[3], py_port[1];
    char echo_file[300], py_file[512];
    snprintf(echo_file, sizeof(echo_file), "%s/echo-ports", g_tmp);
    char *echo_argv[] = {argv[1], "--port-file", echo_file, "--tls-dir", certs, NULL};
    if (make_certs() != 0 || proc_spawn(&echo, echo_argv) != 0 ||
        wait_ports(echo_file, 3, echo_ports) != 0 ||
        start_py(&py, argv[2], 0, py_file, sizeof(py_file)) != 0 ||
        wait_ports(py_file, 1, py_port) != 0) {
        check("start the servers", false, "see stderr");
    } else {
        char wd[300];
        snprintf(wd, sizeof(wd), "%s", g_tmp);
        (void)wd;
        suite_echo(echo_ports[0]);
        suite_tls(echo_ports);
        suite_failover(echo_ports[0]);
        suite_blocking(echo_ports[0]);
        suite_python(py_port[0]);
        suite_reconnect(argv[2], &py, py_port[0]);
    }
    if (echo.running) {
        suite_goaway(&echo, echo_ports[0]);
    }
    proc_stop(&echo, SIGTERM);
    proc_stop(&py, SIGTERM);
    check("echo server exited cleanly", echo.exit_status == 0 && echo.term_signal == 0,
          "exit=%lld signal=%d", (long long)echo.exit_status, echo.term_signal);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    int rv = uv_loop_close(&g_loop);
    check("no handles left on the loop", rv == 0, "%s", rv == 0 ? "" : uv_err_name(rv));
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", g_tmp);
    }
    printf("%s: %d check(s) failed\n", g_failures == 0 ? "PASS" : "FAIL", g_failures);
    return g_failures == 0 ? 0 : 1;
}
