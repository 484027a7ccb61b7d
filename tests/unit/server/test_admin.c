/*
 * test_admin.c — the admin HTTP/1.1 listener over real loopback sockets.
 *
 * The test thread drives the libuv loop; each scenario's client runs in a second thread
 * with plain blocking sockets (10 s receive timeouts, so nothing waits forever) and records
 * what it saw; the test thread asserts after joining it. A 30 s loop watchdog turns a hang
 * into a failure. No assertion depends on timing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "admin.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "metrics.h"

#define RESPONSES_MAX 8

struct resp {
    int status;
    long clen;
    char ctype[96];
    char conn[32];
    char allow[32];
    char *body;
    size_t body_len;
};

struct fx {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t watchdog;
    struct srv_admin *admin;
    struct srv_metrics *reg;
    struct srv_metrics_std std;
    int port;
    bool healthy;
    bool closed;    /* done_cb ran */
    bool timed_out; /* the watchdog fired */
    bool rendered;  /* a /metrics render started (render hook) */
    /* written by the client thread, read by the test thread after a wake-up or join */
    volatile bool client_done;
    volatile bool client_step;
    sem_t go; /* test thread -> client: continue */
    void (*client)(struct fx *fx);
    char err[256]; /* first client failure */
    struct resp r[RESPONSES_MAX];
    int nr;
    bool eof[4];
};

/* ---- the client side (second thread) -------------------------------------------------- */

struct cli {
    int fd;
    size_t len;
    char buf[1 << 16];
};

#define CLI_FAIL(fx, ...)                                                                          \
    do {                                                                                           \
        if ((fx)->err[0] == '\0') {                                                                \
            snprintf((fx)->err, sizeof((fx)->err), __VA_ARGS__);                                   \
        }                                                                                          \
    } while (0)

static struct cli *cli_connect(struct fx *fx, int rcvbuf)
{
    struct cli *c = calloc(1, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0) {
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        CLI_FAIL(fx, "connect: %s", strerror(errno));
    }
    return c;
}

static void cli_free(struct cli *c)
{
    close(c->fd);
    free(c);
}

static void cli_send(struct fx *fx, struct cli *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) {
            CLI_FAIL(fx, "send: %s", strerror(errno));
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void cli_sends(struct fx *fx, struct cli *c, const char *s)
{
    cli_send(fx, c, s, strlen(s));
}

/* Reads more into c->buf; returns bytes read, 0 on EOF or reset, -1 on timeout or error. */
static ssize_t cli_fill(struct cli *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && errno == ECONNRESET) {
        return 0;
    }
    if (n > 0) {
        c->len += (size_t)n;
    }
    return n;
}

/* True when the server closed the connection with nothing more to read. */
static bool cli_eof(struct cli *c)
{
    return c->len == 0 && cli_fill(c) == 0;
}

static void copy_value(char *dst, size_t cap, const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
        const char *v = line + n + 1;
        while (*v == ' ') {
            v++;
        }
        size_t vl = strcspn(v, "\r\n");
        snprintf(dst, cap, "%.*s", (int)(vl < cap ? vl : cap - 1), v);
    }
}

/* Reads one response (no body when head) into the next result slot. */
static void cli_response(struct fx *fx, struct cli *c, bool head)
{
    char *end;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        if (cli_fill(c) <= 0) {
            CLI_FAIL(fx, "response %d: no complete header (have %zu bytes)", fx->nr, c->len);
            return;
        }
    }
    struct resp *r = &fx->r[fx->nr++];
    size_t hlen = (size_t)(end - c->buf) + 4;
    r->clen = -1;
    sscanf(c->buf, "HTTP/1.1 %d", &r->status);
    for (char *line = strstr(c->buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        char cl[24] = "";
        copy_value(cl, sizeof(cl), line, "content-length");
        if (cl[0] != '\0') {
            r->clen = atol(cl);
        }
        copy_value(r->ctype, sizeof(r->ctype), line, "content-type");
        copy_value(r->conn, sizeof(r->conn), line, "connection");
        copy_value(r->allow, sizeof(r->allow), line, "allow");
    }
    memmove(c->buf, c->buf + hlen, c->len - hlen);
    c->len -= hlen;
    size_t want = head || r->clen < 0 ? 0 : (size_t)r->clen;
    r->body = calloc(1, want + 1);
    while (r->body_len < want) {
        if (c->len == 0 && cli_fill(c) <= 0) {
            CLI_FAIL(fx, "response %d: body cut at %zu of %zu", fx->nr - 1, r->body_len, want);
            return;
        }
        size_t take = c->len < want - r->body_len ? c->len : want - r->body_len;
        memcpy(r->body + r->body_len, c->buf, take);
        r->body_len += take;
        memmove(c->buf, c->buf + take, c->len - take);
        c->len -= take;
    }
}

/* One request on a fresh connection: returns after reading the response. */
static void cli_get(struct fx *fx, const char *req)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, req);
    cli_response(fx, c, strncmp(req, "HEAD", 4) == 0);
    cli_free(c);
}

static void *client_main(void *arg)
{
    struct fx *fx = arg;
    fx->client(fx);
    fx->client_done = true;
    uv_async_send(&fx->wake);
    return NULL;
}

/* Tells the test thread the client reached a step, then waits for it to continue. */
static void cli_step(struct fx *fx)
{
    fx->client_step = true;
    uv_async_send(&fx->wake);
    sem_wait(&fx->go);
}

/* ---- the server side (test thread) ---------------------------------------------------- */

static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static bool health_cb(void *data, char *detail, size_t cap)
{
    struct fx *fx = data;
    if (!fx->healthy) {
        snprintf(detail, cap, "no leader \"elected\"");
    }
    return fx->healthy;
}

static void render_hook(void *data)
{
    struct fx *fx = data;
    fx->rendered = true;
}

static void wake_cb(uv_async_t *h)
{
    (void)h;
}

static void watchdog_cb(uv_timer_t *t)
{
    struct fx *fx = t->data;
    fx->timed_out = true;
}

static void done_cb(void *data)
{
    struct fx *fx = data;
    fx->closed = true;
}

static int setup(void **state)
{
    latch_assert_set_handler(cmocka_handler);
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->wake, wake_cb), 0);
    assert_int_equal(uv_timer_init(&fx->loop, &fx->watchdog), 0);
    fx->watchdog.data = fx;
    sem_init(&fx->go, 0, 0);
    assert_int_equal(srv_metrics_new(&fx->reg), 0);
    assert_int_equal(srv_metrics_std_register(fx->reg, &fx->std), 0);
    assert_int_equal(srv_metrics_add_hook(fx->reg, render_hook, fx), 0);
    fx->healthy = true;
    *state = fx;
    return 0;
}

static void start(struct fx *fx, size_t max_connections, uint64_t idle_timeout_ms)
{
    struct srv_admin_config cfg = {
        .max_connections = max_connections,
        .idle_timeout_ms = idle_timeout_ms,
        .metrics = fx->reg,
        .health = health_cb,
        .health_data = fx,
    };
    assert_int_equal(srv_admin_new(&fx->loop, &cfg, &fx->admin), 0);
    assert_int_equal(srv_admin_listen(fx->admin, "127.0.0.1", 0, &fx->port), 0);
    assert_true(fx->port > 0);
    assert_int_equal(srv_admin_listen(fx->admin, "127.0.0.1", 0, NULL), LATCH_ESTATE);
}

/* Runs the loop until cond is true (or the watchdog fires). */
static void run_until(struct fx *fx, volatile bool *cond)
{
    uv_timer_start(&fx->watchdog, watchdog_cb, 30000, 0);
    while (!*cond && !fx->timed_out) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&fx->watchdog);
    assert_false(fx->timed_out);
}

static void client_start(struct fx *fx, void (*client)(struct fx *fx), pthread_t *t)
{
    fx->client = client;
    fx->client_done = false;
    fx->client_step = false;
    assert_int_equal(pthread_create(t, NULL, client_main, fx), 0);
}

static void client_join(struct fx *fx, pthread_t t)
{
    run_until(fx, &fx->client_done);
    pthread_join(t, NULL);
    if (fx->err[0] != '\0') {
        fail_msg("client: %s", fx->err);
    }
}

/* Runs client in its thread while the loop serves it; asserts it reported no failure. */
static void run_client(struct fx *fx, void (*client)(struct fx *fx))
{
    pthread_t t;
    client_start(fx, client, &t);
    client_join(fx, t);
}

static void free_responses(struct fx *fx)
{
    for (int i = 0; i < fx->nr; i++) {
        free(fx->r[i].body);
    }
    memset(fx->r, 0, sizeof(fx->r));
    fx->nr = 0;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    if (fx->admin != NULL && !fx->closed) {
        srv_admin_close(fx->admin, fx, done_cb);
        volatile bool *closed = &fx->closed;
        run_until(fx, closed);
    }
    uv_close((uv_handle_t *)&fx->wake, close_cb);
    uv_close((uv_handle_t *)&fx->watchdog, close_cb);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    srv_metrics_free(fx->reg);
    free_responses(fx);
    sem_destroy(&fx->go);
    free(fx);
    return 0;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests ---------------------------------------------------------------------------- */

static void client_health(struct fx *fx)
{
    cli_get(fx, GET("/health"));
}

static void test_health_follows_callback(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_health);
    fx->healthy = false;
    run_client(fx, client_health);
    assert_int_equal(fx->r[0].status, 200);
    assert_string_equal(fx->r[0].ctype, "application/json");
    assert_string_equal(fx->r[0].body, "{\"health\":\"true\"}");
    assert_int_equal(fx->r[0].clen, (long)strlen(fx->r[0].body));
    assert_int_equal(fx->r[1].status, 503);
    assert_string_equal(fx->r[1].body,
                        "{\"health\":\"false\",\"reason\":\"no leader \\\"elected\\\"\"}");
}

static void client_metrics(struct fx *fx)
{
    cli_get(fx, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n");
}

static void test_metrics_renders_registry(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    srv_gauge_set(fx->std.raft_term, 5);
    srv_counter_inc(srv_metric_series(fx->std.grpc_requests, "/etcdserverpb.KV/Put"));
    run_client(fx, client_metrics);
    struct resp *r = &fx->r[0];
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_int_equal(r->clen, (long)r->body_len);
    assert_int_equal(strlen(r->body), r->body_len);
    assert_non_null(strstr(r->body, "# TYPE latch_raft_term gauge\nlatch_raft_term 5\n"));
    assert_non_null(
        strstr(r->body, "latch_grpc_requests_total{method=\"/etcdserverpb.KV/Put\"} 1\n"));
    assert_non_null(strstr(r->body, "\nprocess_open_fds "));
}

static void client_version(struct fx *fx)
{
    cli_get(fx, GET("/version"));
}

static void test_version_is_etcd_shaped_json(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_version);
    assert_int_equal(fx->r[0].status, 200);
    assert_string_equal(fx->r[0].ctype, "application/json");
    assert_string_equal(fx->r[0].body, "{\"latchserver\":\"" LATCH_VERSION
                                       "\",\"etcdserver\":\"3.4.0\",\"etcdcluster\":\"3.4.0\"}");
}

static void client_404_405(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, GET("/nope"));
    cli_response(fx, c, false);
    cli_sends(fx, c, GET("/healthz"));
    cli_response(fx, c, false);
    cli_sends(fx, c, "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    cli_response(fx, c, false);
    cli_sends(fx, c, "DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(fx, c, false);
    cli_sends(fx, c, GET("/version")); /* the connection survived all of them */
    cli_response(fx, c, false);
    cli_free(c);
}

static void test_unknown_path_is_404_and_other_methods_405(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_404_405);
    assert_int_equal(fx->r[0].status, 404);
    assert_int_equal(fx->r[0].clen, (long)fx->r[0].body_len);
    assert_int_equal(fx->r[1].status, 404);
    assert_int_equal(fx->r[2].status, 405);
    assert_string_equal(fx->r[2].allow, "GET, HEAD");
    assert_int_equal(fx->r[3].status, 405);
    assert_string_equal(fx->r[3].allow, "GET, HEAD");
    assert_int_equal(fx->r[4].status, 200);
}

static void client_head(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, GET("/version"));
    cli_response(fx, c, false);
    cli_sends(fx, c, "HEAD /version HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(fx, c, true);
    cli_sends(fx, c, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(fx, c, true);
    /* Had a HEAD response carried a body, this response would not parse. */
    cli_sends(fx, c, GET("/health"));
    cli_response(fx, c, false);
    cli_free(c);
}

static void test_head_has_headers_and_no_body(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_head);
    assert_int_equal(fx->r[0].status, 200);
    assert_int_equal(fx->r[1].status, 200);
    assert_int_equal(fx->r[1].clen, fx->r[0].clen);
    assert_int_equal(fx->r[1].body_len, 0);
    assert_int_equal(fx->r[2].status, 200);
    assert_true(fx->r[2].clen > 100);
    assert_int_equal(fx->r[3].status, 200);
    assert_string_equal(fx->r[3].body, "{\"health\":\"true\"}");
}

static void client_pipelined(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, GET("/version") GET("/nope") "\r\n" GET("/health"));
    cli_response(fx, c, false);
    cli_response(fx, c, false);
    cli_response(fx, c, false);
    cli_free(c);
}

static void test_pipelined_requests_are_answered_in_order(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_pipelined);
    assert_int_equal(fx->r[0].status, 200);
    assert_non_null(strstr(fx->r[0].body, "latchserver"));
    assert_int_equal(fx->r[1].status, 404);
    assert_int_equal(fx->r[2].status, 200);
    assert_string_equal(fx->r[2].body, "{\"health\":\"true\"}");
}

static void client_keep_alive(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    for (int i = 0; i < 3; i++) {
        cli_sends(fx, c, GET("/health"));
        cli_response(fx, c, false);
    }
    cli_step(fx); /* the test thread counts connections */
    /* HTTP/1.0 with keep-alive stays open too. */
    cli_sends(fx, c, "GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_response(fx, c, false);
    cli_sends(fx, c, GET("/version"));
    cli_response(fx, c, false);
    cli_free(c);
}

static void test_keep_alive_reuses_the_connection(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    pthread_t t;
    client_start(fx, client_keep_alive, &t);
    run_until(fx, &fx->client_step);
    assert_int_equal(srv_admin_connections(fx->admin), 1);
    sem_post(&fx->go);
    client_join(fx, t);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx->r[i].status, 200);
    }
    assert_string_equal(fx->r[0].conn, ""); /* the HTTP/1.1 default needs no header */
    assert_string_equal(fx->r[3].conn, "keep-alive");
    assert_string_equal(fx->r[4].conn, "");
}

static void client_conn_close(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive, Close\r\n\r\n");
    cli_response(fx, c, false);
    fx->eof[0] = cli_eof(c);
    cli_free(c);
    c = cli_connect(fx, 0);
    cli_sends(fx, c, "GET /health HTTP/1.0\r\n\r\n");
    cli_response(fx, c, false);
    fx->eof[1] = cli_eof(c);
    cli_free(c);
    /* A request that announces a body is answered, then the connection closes. */
    c = cli_connect(fx, 0);
    cli_sends(fx, c, "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    cli_response(fx, c, false);
    fx->eof[2] = cli_eof(c);
    cli_free(c);
}

static void test_connection_close_is_honoured(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_conn_close);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx->r[i].status, 200);
        assert_string_equal(fx->r[i].conn, "close");
        assert_true(fx->eof[i]);
    }
}

static void client_oversized(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    char *big = malloc(SRV_ADMIN_HEADER_BYTES_MAX + 64);
    memset(big, 'a', SRV_ADMIN_HEADER_BYTES_MAX + 63);
    big[SRV_ADMIN_HEADER_BYTES_MAX + 63] = '\0';
    memcpy(big, "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ", 38);
    cli_sends(fx, c, big);
    cli_sends(fx, c, "\r\n\r\n");
    free(big);
    cli_response(fx, c, false);
    fx->eof[0] = cli_eof(c);
    cli_free(c);
    /* Just under the limit is fine. */
    c = cli_connect(fx, 0);
    size_t n = SRV_ADMIN_HEADER_BYTES_MAX;
    big = malloc(n + 1);
    memset(big, 'b', n);
    big[n] = '\0';
    memcpy(big, "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ", 38);
    memcpy(big + n - 4, "\r\n\r\n", 4);
    cli_sends(fx, c, big);
    free(big);
    cli_response(fx, c, false);
    cli_free(c);
}

static void test_oversized_header_section_is_431(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_oversized);
    assert_int_equal(fx->r[0].status, 431);
    assert_string_equal(fx->r[0].conn, "close");
    assert_true(fx->eof[0]);
    assert_int_equal(fx->r[1].status, 200);
}

static const char *const garbage[] = {
    "\x01\x02garbage\r\n\r\n",
    "GET /health\r\nHost: t\r\n\r\n",
    "GET /health HTTP/1.1\r\n\r\n", /* no Host */
    "GET /health HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    "GET /health HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
    "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
    "GET  /health HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /health HTTP/2.0\r\nHost: t\r\n\r\n",
};
#define GARBAGE_COUNT (sizeof(garbage) / sizeof(garbage[0]))

static void client_garbage(struct fx *fx)
{
    for (size_t i = 0; i < GARBAGE_COUNT; i++) {
        struct cli *c = cli_connect(fx, 0);
        cli_sends(fx, c, garbage[i]);
        cli_response(fx, c, false);
        bool eof = cli_eof(c);
        if (!eof) {
            CLI_FAIL(fx, "garbage %zu: connection left open", i);
        }
        cli_free(c);
    }
}

static void test_malformed_requests_get_400_and_close(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 0);
    run_client(fx, client_garbage);
    for (size_t i = 0; i < GARBAGE_COUNT; i++) {
        int want = i == GARBAGE_COUNT - 1 ? 505 : 400;
        if (fx->r[i].status != want) {
            fail_msg("garbage %zu: status %d, want %d", i, fx->r[i].status, want);
        }
        assert_string_equal(fx->r[i].conn, "close");
        assert_int_equal(fx->r[i].clen, (long)fx->r[i].body_len);
    }
}

static void client_cap(struct fx *fx)
{
    struct cli *a = cli_connect(fx, 0);
    struct cli *b = cli_connect(fx, 0);
    cli_sends(fx, a, GET("/health"));
    cli_response(fx, a, false);
    cli_sends(fx, b, GET("/health"));
    cli_response(fx, b, false);
    struct cli *c = cli_connect(fx, 0); /* third: accepted and closed */
    cli_sends(fx, c, GET("/health"));
    fx->eof[0] = cli_eof(c);
    cli_free(c);
    cli_sends(fx, a, GET("/version")); /* the first two still work */
    cli_response(fx, a, false);
    cli_free(b);
    cli_free(a);
}

static void test_connections_beyond_cap_are_closed(void **state)
{
    struct fx *fx = *state;
    start(fx, 2, 0);
    run_client(fx, client_cap);
    assert_int_equal(fx->nr, 3);
    assert_int_equal(fx->r[0].status, 200);
    assert_int_equal(fx->r[1].status, 200);
    assert_true(fx->eof[0]);
    assert_int_equal(fx->r[2].status, 200);
}

static void client_idle(struct fx *fx)
{
    struct cli *c = cli_connect(fx, 0);
    cli_sends(fx, c, GET("/health"));
    cli_response(fx, c, false);
    fx->eof[0] = cli_eof(c); /* waits (up to 10 s) for the idle timeout */
    cli_free(c);
}

static void test_idle_connection_is_closed(void **state)
{
    struct fx *fx = *state;
    start(fx, 0, 50);
    run_client(fx, client_idle);
    assert_int_equal(fx->r[0].status, 200);
    assert_true(fx->eof[0]);
}

/* A registry whose rendering (about 11 MB: 5 histograms x 256 label values of 200 bytes x
 * 34 lines) exceeds the kernel's largest send buffer (tcp_wmem max, 4 MB by default), so the
 * response stays in uv_write until the client reads. */
static void big_registry(struct fx *fx)
{
    double bounds[SRV_METRICS_BUCKETS_MAX];
    for (int i = 0; i < SRV_METRICS_BUCKETS_MAX; i++) {
        bounds[i] = (double)(i + 1);
    }
    for (int f = 0; f < 5; f++) {
        char name[16];
        snprintf(name, sizeof(name), "big%d", f);
        struct srv_metric *m;
        assert_int_equal(srv_metrics_register_histogram(fx->reg, name, "Big.", "k", bounds,
                                                        SRV_METRICS_BUCKETS_MAX, &m),
                         0);
        char v[201];
        for (int i = 0; i < SRV_METRICS_LABEL_VALUES_MAX; i++) {
            memset(v, 'v', 200);
            v[200] = '\0';
            snprintf(v, 8, "%07d", i);
            v[7] = 'v';
            srv_histogram_observe(srv_metric_series(m, v), 1);
        }
    }
}

static void client_graceful(struct fx *fx)
{
    struct cli *idle = cli_connect(fx, 0);
    cli_sends(fx, idle, GET("/health"));
    cli_response(fx, idle, false);
    /* A tiny receive buffer keeps the multi-megabyte response in flight until we read. */
    struct cli *busy = cli_connect(fx, 4096);
    cli_sends(fx, busy, GET("/metrics"));
    cli_step(fx); /* the test thread closes the server once the render started */
    cli_response(fx, busy, false);
    fx->eof[0] = cli_eof(busy);
    fx->eof[1] = cli_eof(idle);
    cli_free(busy);
    cli_free(idle);
    /* The listener is gone. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fx->eof[2] = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0;
    close(fd);
}

static void test_graceful_close_finishes_response_in_flight(void **state)
{
    struct fx *fx = *state;
    big_registry(fx);
    start(fx, 0, 0);
    pthread_t t;
    fx->rendered = false;
    client_start(fx, client_graceful, &t);
    run_until(fx, &fx->client_step);
    run_until(fx, &fx->rendered); /* the response is now being written */
    srv_admin_close(fx->admin, fx, done_cb);
    sem_post(&fx->go);
    client_join(fx, t);
    run_until(fx, &fx->closed);
    assert_int_equal(fx->r[0].status, 200);
    assert_int_equal(fx->r[1].status, 200);
    assert_true(fx->r[1].clen > 8000000);
    assert_int_equal(fx->r[1].body_len, (size_t)fx->r[1].clen);
    assert_non_null(strstr(fx->r[1].body, "# TYPE big4 histogram\n"));
    assert_true(fx->eof[0]);
    assert_true(fx->eof[1]);
    assert_true(fx->eof[2]);
}

static void test_close_without_listen_and_bad_address(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(srv_admin_new(&fx->loop, NULL, &fx->admin), 0);
    assert_int_equal(srv_admin_listen(fx->admin, "not-an-ip", 0, NULL), LATCH_EINVAL);
    assert_int_equal(srv_admin_listen(fx->admin, "127.0.0.1", 70000, NULL), LATCH_EINVAL);
    srv_admin_close(fx->admin, fx, done_cb);
    run_until(fx, &fx->closed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_follows_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_renders_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_is_etcd_shaped_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_is_404_and_other_methods_405, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_head_has_headers_and_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_requests_are_answered_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_reuses_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_is_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_header_section_is_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests_get_400_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_beyond_cap_are_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_is_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close_finishes_response_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_without_listen_and_bad_address, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
