/*
 * admin.c — the admin HTTP/1.1 listener (see admin.h for the protocol it speaks).
 *
 * Per connection: one fixed input buffer of SRV_ADMIN_HEADER_BYTES_MAX bytes, one idle
 * timer, one uv_write_t, a fixed buffer for the status line and headers and a growable one
 * for the body (kept between responses). A connection is in one of these states:
 *
 *   reading ──(complete header section)──▶ writing ──(write_cb, keep-alive)──▶ reading
 *                                             │
 *                                             └─(write_cb, close)──▶ lingering ──▶ closed
 *
 * Lingering: after the last response is written the server shuts down its sending side
 * (FIN) and reads and discards until the peer closes or SRV_ADMIN_LINGER_MS pass. Closing
 * at once would make the kernel answer unread input (the rest of an oversized header, a
 * pipelined request) with a reset, which can destroy the response before the client has
 * read it (the "lingering close" of RFC 9112 §9.6).
 *
 * Memory is freed only in close callbacks: a connection owns two handles (TCP, timer) and is
 * freed when both have closed; the server counts its open handles (listener, connections,
 * rejected sockets) and frees itself when the count reaches zero after srv_admin_close().
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latch_error.h"
#include "latch_log.h"

/* How long a closing connection waits for the peer's FIN after the last response. */
#define SRV_ADMIN_LINGER_MS 2000

struct admin_conn {
    struct srv_admin *admin;
    struct admin_conn *prev;
    struct admin_conn *next;
    uv_tcp_t tcp;
    uv_timer_t idle;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int handles_open;       /* of tcp and idle */
    bool reading;           /* uv_read_start in effect */
    bool writing;           /* a response is in uv_write */
    bool close_after_write; /* the response being written is the last */
    bool lingering;         /* last response written, discarding input until EOF */
    bool closing;           /* uv_close issued */
    size_t in_len;
    char in[SRV_ADMIN_HEADER_BYTES_MAX];
    char head[512];
    struct srv_buf body;
};

struct srv_admin {
    uv_loop_t *loop;
    uv_tcp_t listener;
    size_t max_connections;
    uint64_t idle_timeout_ms;
    struct srv_metrics *metrics;
    srv_admin_health_fn health;
    void *health_data;
    struct admin_conn *conns;
    size_t nconns;
    size_t handles_open; /* listener, connections, rejected sockets */
    bool listening;
    bool closing;
    struct latch_log_limit reject_log; /* the over-limit log line, once a second */
    void *close_data;
    srv_admin_close_cb close_cb;
};

/* A parsed request; the strings point into the connection's input buffer. */
struct admin_req {
    const char *method;
    size_t method_len;
    const char *path; /* without query or fragment */
    size_t path_len;
    int minor;        /* HTTP/1.minor */
    int status;       /* 0 while valid, else the error status to answer */
    bool conn_close;  /* Connection: close */
    bool conn_keep;   /* Connection: keep-alive */
    bool has_body;    /* Content-Length > 0 or Transfer-Encoding */
    int hosts;        /* Host header count */
    bool have_length; /* a Content-Length was seen */
    unsigned long long length;
};

static void conn_process(struct admin_conn *c);

/* ---- handles and closing -------------------------------------------------------------- */

static void server_handle_closed(struct srv_admin *a)
{
    LATCH_ASSERT(a->handles_open > 0);
    a->handles_open--;
    if (a->closing && a->handles_open == 0) {
        srv_admin_close_cb cb = a->close_cb;
        void *data = a->close_data;
        free(a);
        if (cb != NULL) {
            cb(data);
        }
    }
}

static void conn_close_cb(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->handles_open > 0) {
        return;
    }
    struct srv_admin *a = c->admin;
    srv_buf_close(&c->body);
    free(c);
    server_handle_closed(a);
}

static void conn_close(struct admin_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    struct srv_admin *a = c->admin;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        a->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    a->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->idle, conn_close_cb);
}

static void idle_cb(uv_timer_t *t)
{
    conn_close(t->data);
}

static void conn_touch(struct admin_conn *c, uint64_t timeout_ms)
{
    uv_timer_start(&c->idle, idle_cb, timeout_ms, 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (status < 0) {
        conn_close(c); /* also when cancelled by a close already under way (a no-op then) */
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct admin_conn *c = h->data;
    if (c->lingering) {
        c->in_len = 0; /* discarded */
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned int)(sizeof(c->in) - c->in_len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct admin_conn *c = stream->data;
    if (nread < 0) {
        if (nread != UV_EOF) {
            latch_log(LATCH_LOG_DEBUG, "admin: read: %s", uv_strerror((int)nread));
        }
        conn_close(c);
        return;
    }
    if (nread == 0 || c->lingering) {
        return;
    }
    c->in_len += (size_t)nread;
    conn_touch(c, c->admin->idle_timeout_ms);
    conn_process(c);
}

static void conn_read(struct admin_conn *c, bool on)
{
    if (on && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
            conn_close(c);
            return;
        }
    } else if (!on && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

/* The last response is written: send FIN, then discard input until the peer's EOF. */
static void conn_linger(struct admin_conn *c)
{
    c->lingering = true;
    c->in_len = 0;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
        conn_close(c);
        return;
    }
    uint64_t linger = c->admin->idle_timeout_ms < SRV_ADMIN_LINGER_MS ? c->admin->idle_timeout_ms
                                                                      : SRV_ADMIN_LINGER_MS;
    conn_touch(c, linger);
    conn_read(c, true);
}

static void write_cb(uv_write_t *req, int status)
{
    struct admin_conn *c = req->data;
    c->writing = false;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        latch_log(LATCH_LOG_DEBUG, "admin: write: %s", uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->close_after_write) {
        conn_linger(c);
        return;
    }
    conn_touch(c, c->admin->idle_timeout_ms);
    conn_process(c);
}

/* ---- responses ------------------------------------------------------------------------ */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

struct admin_resp {
    int status;
    const char *content_type;
    const char *extra; /* further header lines, each ending in CRLF; "" if none */
    bool head_only;
    bool keep_alive;
    bool http10;
};

/* Sends the status line, headers and c->body (unless head_only) with one uv_write. */
static void conn_respond(struct admin_conn *c, const struct admin_resp *r)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0) {
        date[0] = '\0';
    }
    const char *conn_hdr = !r->keep_alive ? "close" : (r->http10 ? "keep-alive" : NULL);
    int n = snprintf(c->head, sizeof(c->head),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%s%s%s%s\r\n",
                     r->status, status_text(r->status), date, r->content_type, c->body.len,
                     r->extra, conn_hdr != NULL ? "Connection: " : "",
                     conn_hdr != NULL ? conn_hdr : "", conn_hdr != NULL ? "\r\n" : "");
    LATCH_ASSERTF(n > 0 && (size_t)n < sizeof(c->head), "response head of %d bytes", n);
    uv_buf_t bufs[2];
    unsigned int nbufs = 1;
    bufs[0] = uv_buf_init(c->head, (unsigned int)n);
    if (!r->head_only && c->body.len > 0) {
        bufs[1] = uv_buf_init(c->body.data, (unsigned int)c->body.len);
        nbufs = 2;
    }
    c->close_after_write = !r->keep_alive;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, write_cb) != 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
    conn_read(c, false);
}

/* Sets c->body to text; on failure to allocate, to nothing (the status says 500). */
static int body_set(struct admin_conn *c, const char *text)
{
    c->body.len = 0;
    return srv_buf_append(&c->body, text, strlen(text));
}

static void conn_respond_error(struct admin_conn *c, int status, bool keep_alive, bool http10)
{
    char text[64];
    snprintf(text, sizeof(text), "%d %s\n", status, status_text(status));
    if (body_set(c, text) != 0) {
        c->body.len = 0;
    }
    struct admin_resp r = {
        .status = status,
        .content_type = "text/plain; charset=utf-8",
        .extra = status == 405 ? "Allow: GET, HEAD\r\n" : "",
        .keep_alive = keep_alive,
        .http10 = http10,
    };
    conn_respond(c, &r);
}

/* Appends s as the inside of a JSON string. */
static int json_escape(struct srv_buf *b, const char *s)
{
    int rv = 0;
    for (; *s != '\0' && rv == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            rv = srv_buf_printf(b, "\\%c", ch);
        } else if (ch < 0x20) {
            rv = srv_buf_printf(b, "\\u%04x", ch);
        } else {
            rv = srv_buf_append(b, s, 1);
        }
    }
    return rv;
}

/* Fills c->body for path and returns the status; sets *type to the content type. */
static int route(struct admin_conn *c, const struct admin_req *q, const char **type)
{
    struct srv_admin *a = c->admin;
    c->body.len = 0;
    *type = "application/json";
    if (q->path_len == 7 && memcmp(q->path, "/health", 7) == 0) {
        char detail[SRV_ADMIN_HEALTH_DETAIL_MAX] = {0};
        bool ok = a->health != NULL && a->health(a->health_data, detail, sizeof(detail));
        detail[sizeof(detail) - 1] = '\0';
        if (ok) {
            return body_set(c, "{\"health\":\"true\"}") == 0 ? 200 : 500;
        }
        int rv = body_set(c, "{\"health\":\"false\",\"reason\":\"");
        if (rv == 0) {
            rv = json_escape(&c->body, a->health != NULL ? detail : "no health check");
        }
        if (rv == 0) {
            rv = srv_buf_append(&c->body, "\"}", 2);
        }
        return rv == 0 ? 503 : 500;
    }
    if (q->path_len == 8 && memcmp(q->path, "/version", 8) == 0) {
        return body_set(c,
                        "{\"latchserver\":\"" LATCH_VERSION "\",\"etcdserver\":\"" SRV_ETCD_VERSION
                        "\",\"etcdcluster\":\"" SRV_ETCD_VERSION "\"}") == 0
                   ? 200
                   : 500;
    }
    if (q->path_len == 8 && memcmp(q->path, "/metrics", 8) == 0 && a->metrics != NULL) {
        *type = "text/plain; version=0.0.4; charset=utf-8";
        return srv_metrics_render(a->metrics, &c->body) == 0 ? 200 : 500;
    }
    return 404;
}

/* ---- request parsing ------------------------------------------------------------------ */

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
        }
        if (ch != lit[i]) {
            return false;
        }
    }
    return true;
}

/* Offset just past the empty line that ends the header section, or 0 if not received yet.
 * Lines end in LF with an optional CR before it. */
static size_t header_end(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\n') {
            continue;
        }
        if (p[i + 1] == '\n') {
            return i + 2;
        }
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n') {
            return i + 3;
        }
    }
    return 0;
}

/* Splits off the line at *p (ending before end); returns its length without CR LF. A CR
 * anywhere but just before the LF makes the line invalid (SIZE_MAX). */
static size_t next_line(const char **p, const char *end, const char **line)
{
    const char *lf = memchr(*p, '\n', (size_t)(end - *p));
    LATCH_ASSERT(lf != NULL);
    *line = *p;
    *p = lf + 1;
    size_t n = (size_t)(lf - *line);
    if (n > 0 && (*line)[n - 1] == '\r') {
        n--;
    }
    return memchr(*line, '\r', n) != NULL ? SIZE_MAX : n;
}

/* Parses "METHOD SP target SP HTTP/d.d". */
static void parse_request_line(struct admin_req *q, const char *s, size_t n)
{
    const char *end = s + n;
    const char *sp1 = memchr(s, ' ', n);
    if (sp1 == NULL || sp1 == s) {
        q->status = 400;
        return;
    }
    q->method = s;
    q->method_len = (size_t)(sp1 - s);
    for (size_t i = 0; i < q->method_len; i++) {
        if (!is_tchar(s[i])) {
            q->status = 400;
            return;
        }
    }
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    const char *v = sp2 != NULL ? sp2 + 1 : NULL;
    if (sp2 == NULL || sp2 == target || end - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
        v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9') {
        q->status = 400;
        return;
    }
    for (const char *t = target; t < sp2; t++) {
        if ((unsigned char)*t <= 0x20 || *t == 0x7f) {
            q->status = 400;
            return;
        }
    }
    if (v[5] != '1') {
        q->status = v[5] == '0' ? 400 : 505;
        return;
    }
    q->minor = v[7] - '0';
    /* origin-form "/path?query", or absolute-form "http://host/path" reduced to its path. */
    const char *path = target;
    if (*target != '/') {
        const char *scheme = memchr(target, ':', (size_t)(sp2 - target));
        if (scheme == NULL || sp2 - scheme < 3 || scheme[1] != '/' || scheme[2] != '/') {
            q->status = 400;
            return;
        }
        path = memchr(scheme + 3, '/', (size_t)(sp2 - (scheme + 3)));
        if (path == NULL) {
            q->path = "/"; /* "http://host" means the root */
            q->path_len = 1;
            return;
        }
    }
    size_t plen = (size_t)(sp2 - path);
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '?' || path[i] == '#') {
            plen = i;
            break;
        }
    }
    q->path = path;
    q->path_len = plen;
}

static void parse_connection(struct admin_req *q, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') {
            i++;
        }
        if (ieq(v + start, i - start, "close")) {
            q->conn_close = true;
        } else if (ieq(v + start, i - start, "keep-alive")) {
            q->conn_keep = true;
        }
    }
}

static void parse_content_length(struct admin_req *q, const char *v, size_t n)
{
    unsigned long long len = 0;
    if (n == 0 || n > 18) {
        q->status = 400;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            q->status = 400;
            return;
        }
        len = len * 10 + (unsigned long long)(v[i] - '0');
    }
    if (q->have_length && q->length != len) {
        q->status = 400;
        return;
    }
    q->have_length = true;
    q->length = len;
    q->has_body = q->has_body || len > 0;
}

/* Parses one "name: value" line. */
static void parse_header(struct admin_req *q, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL || colon == s) {
        q->status = 400; /* also obs-fold: a line starting with whitespace has no token */
        return;
    }
    size_t name_len = (size_t)(colon - s);
    for (size_t i = 0; i < name_len; i++) {
        if (!is_tchar(s[i])) {
            q->status = 400;
            return;
        }
    }
    const char *v = colon + 1;
    const char *end = s + n;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    size_t vlen = (size_t)(end - v);
    if (ieq(s, name_len, "host")) {
        q->hosts++;
    } else if (ieq(s, name_len, "connection")) {
        parse_connection(q, v, vlen);
    } else if (ieq(s, name_len, "content-length")) {
        parse_content_length(q, v, vlen);
    } else if (ieq(s, name_len, "transfer-encoding")) {
        q->has_body = true;
    }
}

/* Parses the header section in c->in[0, len), which ends with an empty line. */
static void parse_request(const struct admin_conn *c, size_t len, struct admin_req *q)
{
    memset(q, 0, sizeof(*q));
    const char *p = c->in;
    const char *end = c->in + len;
    const char *line;
    size_t n = next_line(&p, end, &line);
    if (n == SIZE_MAX) {
        q->status = 400;
        return;
    }
    parse_request_line(q, line, n);
    while (q->status == 0) {
        n = next_line(&p, end, &line);
        if (n == 0) {
            break;
        }
        if (n == SIZE_MAX) {
            q->status = 400;
            break;
        }
        parse_header(q, line, n);
    }
    if (q->status == 0 && q->minor >= 1 && q->hosts != 1) {
        q->status = 400; /* RFC 9112 §3.2: exactly one Host in HTTP/1.1 */
    }
}

/* Answers the parsed request q (whose strings point into c->in); returns whether the
 * connection stays open after it. */
static bool conn_answer(struct admin_conn *c, const struct admin_req *q)
{
    if (q->status != 0) {
        latch_log(LATCH_LOG_DEBUG, "admin: malformed request, answering %d", q->status);
        conn_respond_error(c, q->status, false, false);
        return false;
    }
    bool http10 = q->minor == 0;
    bool keep = http10 ? q->conn_keep && !q->conn_close : !q->conn_close;
    keep = keep && !q->has_body && !c->admin->closing;
    bool get = q->method_len == 3 && memcmp(q->method, "GET", 3) == 0;
    bool head = q->method_len == 4 && memcmp(q->method, "HEAD", 4) == 0;
    if (!get && !head) {
        conn_respond_error(c, 405, keep, http10);
        return keep;
    }
    const char *type;
    int status = route(c, q, &type);
    if (status == 404 || status == 500) {
        conn_respond_error(c, status, keep, http10);
        return keep;
    }
    struct admin_resp r = {
        .status = status,
        .content_type = type,
        .extra = "",
        .head_only = head,
        .keep_alive = keep,
        .http10 = http10,
    };
    conn_respond(c, &r);
    return keep;
}

/* Answers the request whose header section is c->in[0, len), then consumes it (and, when
 * it was the last one on the connection, everything after it). */
static void conn_handle(struct admin_conn *c, size_t len)
{
    struct admin_req q;
    parse_request(c, len, &q);
    if (conn_answer(c, &q)) {
        memmove(c->in, c->in + len, c->in_len - len);
        c->in_len -= len;
    } else {
        c->in_len = 0;
    }
}

/* Answers every complete request buffered, one at a time (the next after write_cb). */
static void conn_process(struct admin_conn *c)
{
    while (!c->writing && !c->closing && !c->lingering) {
        size_t skip = 0;
        while (skip < c->in_len && (c->in[skip] == '\r' || c->in[skip] == '\n')) {
            skip++; /* RFC 9112 §2.2: ignore empty lines before a request line */
        }
        memmove(c->in, c->in + skip, c->in_len - skip);
        c->in_len -= skip;
        size_t len = header_end(c->in, c->in_len);
        if (len > 0) {
            conn_handle(c, len);
            continue;
        }
        if (c->in_len == sizeof(c->in)) {
            c->in_len = 0;
            conn_respond_error(c, 431, false, false);
        } else if (c->admin->closing && c->in_len == 0) {
            conn_close(c);
        } else {
            conn_read(c, true);
        }
        return;
    }
}

/* ---- accepting ------------------------------------------------------------------------ */

static void reject_close_cb(uv_handle_t *h)
{
    struct srv_admin *a = h->data;
    free(h);
    server_handle_closed(a);
}

/* Over max_connections: accepts and closes at once, logging at most once a second. */
static void server_reject(struct srv_admin *a)
{
    size_t n;
    if (latch_log_limit_hit(&a->reject_log, uv_now(a->loop), 1000, &n)) {
        latch_log(LATCH_LOG_WARN, "admin: %zu connection(s) refused: limit of %zu reached", n,
                  a->max_connections);
    }
    uv_tcp_t *t = calloc(1, sizeof(*t));
    if (t == NULL || uv_tcp_init(a->loop, t) != 0) {
        free(t);
        return; /* the pending connection stays in the backlog */
    }
    t->data = a;
    a->handles_open++;
    uv_accept((uv_stream_t *)&a->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, reject_close_cb);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct srv_admin *a = listener->data;
    if (status < 0) {
        latch_log(LATCH_LOG_WARN, "admin: accept: %s", uv_strerror(status));
        return;
    }
    if (a->nconns >= a->max_connections) {
        server_reject(a);
        return;
    }
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        latch_log(LATCH_LOG_WARN, "admin: out of memory accepting a connection");
        return;
    }
    c->admin = a;
    srv_buf_init(&c->body);
    if (uv_tcp_init(a->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    uv_timer_init(a->loop, &c->idle); /* cannot fail */
    c->tcp.data = c;
    c->idle.data = c;
    c->handles_open = 2;
    c->next = a->conns;
    if (a->conns != NULL) {
        a->conns->prev = c;
    }
    a->conns = c;
    a->nconns++;
    a->handles_open++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_touch(c, a->idle_timeout_ms);
    conn_read(c, true);
}

/* ---- server --------------------------------------------------------------------------- */

int srv_admin_new(uv_loop_t *loop, const struct srv_admin_config *cfg, struct srv_admin **out)
{
    struct srv_admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return LATCH_ENOMEM;
    }
    a->loop = loop;
    a->max_connections = SRV_ADMIN_MAX_CONNECTIONS_DEFAULT;
    a->idle_timeout_ms = SRV_ADMIN_IDLE_TIMEOUT_MS_DEFAULT;
    if (cfg != NULL) {
        a->max_connections = cfg->max_connections != 0 ? cfg->max_connections : a->max_connections;
        a->idle_timeout_ms = cfg->idle_timeout_ms != 0 ? cfg->idle_timeout_ms : a->idle_timeout_ms;
        a->metrics = cfg->metrics;
        a->health = cfg->health;
        a->health_data = cfg->health_data;
    }
    if (uv_tcp_init(loop, &a->listener) != 0) {
        free(a);
        return LATCH_EINVAL;
    }
    a->listener.data = a;
    a->handles_open = 1;
    *out = a;
    return 0;
}

int srv_admin_listen(struct srv_admin *a, const char *host, int port, int *bound_port)
{
    if (a->listening || a->closing) {
        return LATCH_ESTATE;
    }
    if (port < 0 || port > 65535) {
        return LATCH_EINVAL;
    }
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        return LATCH_EINVAL;
    }
    int rv = uv_tcp_bind(&a->listener, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&a->listener, 128, on_connection);
    }
    if (rv != 0) {
        latch_log(LATCH_LOG_ERROR, "admin: listen on %s:%d: %s", host, port, uv_strerror(rv));
        return rv == UV_EADDRINUSE ? LATCH_EEXIST : LATCH_EINVAL;
    }
    a->listening = true;
    if (bound_port != NULL) {
        struct sockaddr_storage name;
        int namelen = (int)sizeof(name);
        if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&name, &namelen) != 0) {
            return LATCH_EINVAL;
        }
        if (name.ss_family == AF_INET6) {
            *bound_port = ntohs(((struct sockaddr_in6 *)&name)->sin6_port);
        } else {
            *bound_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
        }
    }
    return 0;
}

size_t srv_admin_connections(const struct srv_admin *a)
{
    return a->nconns;
}

static void listener_close_cb(uv_handle_t *h)
{
    server_handle_closed(h->data);
}

void srv_admin_close(struct srv_admin *a, void *data, srv_admin_close_cb done_cb)
{
    LATCH_ASSERT(!a->closing);
    a->closing = true;
    a->close_data = data;
    a->close_cb = done_cb;
    struct admin_conn *next;
    for (struct admin_conn *c = a->conns; c != NULL; c = next) {
        next = c->next;
        if (c->writing) {
            c->close_after_write = true;
        } else if (c->in_len == 0 && !c->lingering) {
            conn_close(c);
        }
        /* else: a partly received request is answered with Connection: close, or the
         * connection is already lingering; either ends by itself or by its timer. */
    }
    uv_close((uv_handle_t *)&a->listener, listener_close_cb);
}
