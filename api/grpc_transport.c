/*
 * grpc_transport.c — one HTTP/2 connection's byte pump (see grpc_transport.h).
 *
 * A flush gathers nghttp2's output into t->plain. In cleartext that buffer itself becomes the
 * uv_write's (and a fresh one is grown next time), so the bytes are copied once, out of
 * nghttp2. Under TLS t->plain is kept and reused: it is encrypted with api_tls_write and the
 * ciphertext is taken into a buffer of its exact size for the uv_write.
 */
#define _POSIX_C_SOURCE 200809L

#include "grpc_transport.h"

#include <stdlib.h>
#include <string.h>

#include "grpc_tls.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"

struct api_write {
    uv_write_t req;
    struct api_transport *t;
    size_t len;
    uint8_t *bytes; /* owned */
};

static void close_cb(uv_handle_t *h)
{
    struct api_transport *t = h->data;
    LATCH_ASSERT(t->handles > 0);
    if (--t->handles > 0) {
        return;
    }
    LATCH_ASSERT(t->writes_pending == 0); /* libuv runs every write callback first */
    if (t->session != NULL) {
        nghttp2_session_del(t->session); /* runs no callbacks */
        t->session = NULL;
    }
    api_tls_free(t->tls);
    t->tls = NULL;
    free(t->plain);
    t->plain = NULL;
    t->ops->closed(t);
}

void api_transport_close(struct api_transport *t)
{
    if (t->closing) {
        return;
    }
    t->closing = true;
    if (t->ops->closing != NULL) {
        t->ops->closing(t);
    }
    if (t->linger_open) {
        t->linger_open = false;
        uv_close((uv_handle_t *)&t->linger, close_cb);
    }
    uv_close(&t->h.handle, close_cb);
}

static void linger_cb(uv_timer_t *timer)
{
    struct api_transport *t = timer->data;
    latch_log(LATCH_LOG_INFO, "grpc: peer not reading; closing with %zu bytes unwritten",
              t->out_bytes);
    api_transport_close(t);
}

void api_transport_close_after_writes(struct api_transport *t)
{
    if (t->closing || t->close_pending) {
        return;
    }
    t->close_pending = true;
    if (t->started) {
        uv_read_stop(&t->h.stream);
    }
    if (t->writes_pending == 0) {
        api_transport_close(t);
        return;
    }
    if (uv_timer_init(t->h.handle.loop, &t->linger) == 0) {
        t->linger.data = t;
        t->linger_open = true;
        t->handles++;
        uv_timer_start(&t->linger, linger_cb, API_TRANSPORT_LINGER_MS, 0);
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct api_write *w = req->data;
    struct api_transport *t = w->t;
    LATCH_ASSERT(t->writes_pending > 0 && t->out_bytes >= w->len);
    t->out_bytes -= w->len;
    t->writes_pending--;
    free(w->bytes);
    free(w);
    if (t->closing) {
        return;
    }
    if (status < 0) {
        latch_log(LATCH_LOG_DEBUG, "grpc: write failed: %s", uv_strerror(status));
        api_transport_close(t);
    } else if (t->close_pending && t->writes_pending == 0) {
        api_transport_close(t);
    } else if (t->out_blocked && t->out_bytes < t->max_out) {
        api_transport_flush(t); /* below the cap again: pull what nghttp2 kept */
    }
}

/* Issues one uv_write of bytes (n > 0, taken over). Returns 0 or a libuv error (bytes freed). */
static int write_bytes(struct api_transport *t, uint8_t *bytes, size_t n)
{
    struct api_write *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(bytes);
        return UV_ENOMEM;
    }
    w->t = t;
    w->len = n;
    w->bytes = bytes;
    w->req.data = w;
    uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned int)n);
    int rv = uv_write(&w->req, &t->h.stream, &buf, 1, write_cb);
    if (rv != 0) {
        free(bytes);
        free(w);
        return rv;
    }
    t->writes_pending++;
    t->out_bytes += n;
    return 0;
}

/* Grows t->plain to hold at least need bytes. Returns 0 or LATCH_ENOMEM. */
static int plain_reserve(struct api_transport *t, size_t need)
{
    if (need <= t->plain_cap) {
        return 0;
    }
    size_t ncap = t->plain_cap == 0 ? 16384 : t->plain_cap;
    while (ncap < need) {
        ncap *= 2;
    }
    uint8_t *p = realloc(t->plain, ncap);
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    t->plain = p;
    t->plain_cap = ncap;
    return 0;
}

/*
 * Appends what nghttp2 has pending to t->plain[*len..] until nothing is left or the output
 * cap is reached (out_blocked). Returns 0, or an error after which the connection must close.
 */
static int gather(struct api_transport *t, size_t *len)
{
    t->out_blocked = false;
    for (;;) {
        if (t->out_bytes + *len >= t->max_out) {
            t->out_blocked = true; /* nghttp2 keeps the rest; write_cb comes back for it */
            return 0;
        }
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(t->session, &p);
        if (n < 0) {
            latch_log(LATCH_LOG_WARN, "grpc: nghttp2 send: %s", nghttp2_strerror((int)n));
            return LATCH_EPROTO;
        }
        if (n == 0) {
            return 0;
        }
        if (plain_reserve(t, *len + (size_t)n) != 0) {
            return LATCH_ENOMEM;
        }
        memcpy(t->plain + *len, p, (size_t)n);
        *len += (size_t)n;
    }
}

/* Takes what TLS has for the network into a new buffer and writes it. Returns 0 or an error. */
static int write_tls_output(struct api_transport *t)
{
    size_t n = api_tls_out_pending(t->tls);
    if (n == 0) {
        return 0;
    }
    uint8_t *bytes = malloc(n);
    if (bytes == NULL) {
        return LATCH_ENOMEM;
    }
    size_t got = api_tls_out_take(t->tls, bytes, n);
    LATCH_ASSERT(got == n);
    return write_bytes(t, bytes, n);
}

void api_transport_flush(struct api_transport *t)
{
    if (t->closing || t->in_recv || !t->started) {
        return;
    }
    size_t len = 0;
    if (t->hs_done) {
        /* Streams close while their last frame is gathered, so what the owner adds once they
         * have (a drain's final GOAWAY) is gathered by a second pass. */
        do {
            if (gather(t, &len) != 0) {
                api_transport_close(t);
                return;
            }
        } while (!t->out_blocked && t->ops->after_gather != NULL && t->ops->after_gather(t));
    }
    int rc = 0;
    if (t->tls == NULL) {
        if (len > 0) {
            uint8_t *bytes = t->plain; /* becomes the write's buffer */
            t->plain = NULL;
            t->plain_cap = 0;
            rc = write_bytes(t, bytes, len);
        }
    } else {
        if (len > 0) {
            rc = api_tls_write(t->tls, t->plain, len);
            if (rc != 0) {
                latch_log(LATCH_LOG_INFO, "grpc: TLS write: %s", api_tls_error(t->tls));
            }
        }
        if (rc == 0) {
            rc = write_tls_output(t);
        }
    }
    if (rc != 0) {
        api_transport_close(t);
        return;
    }
    if ((t->close_after_flush && !t->out_blocked) ||
        (t->hs_done && !nghttp2_session_want_read(t->session) &&
         !nghttp2_session_want_write(t->session))) {
        api_transport_close_after_writes(t);
    }
}

/*
 * Hands plaintext to nghttp2 in slices of API_TRANSPORT_RECV_SLICE bytes and flushes what
 * each slice produced before the next: the peer gets the first answers of a large batch of
 * requests while the rest are still being processed, so both ends work at once instead of
 * taking turns (measured in docs/benchmarks.md). Returns 0, or LATCH_EPROTO when the session
 * failed (it may have queued a GOAWAY).
 */
static int session_recv(struct api_transport *t, const uint8_t *data, size_t n)
{
    while (n > 0 && !t->closing) {
        size_t k = n < API_TRANSPORT_RECV_SLICE ? n : API_TRANSPORT_RECV_SLICE;
        t->in_recv = true;
        ssize_t rv = nghttp2_session_mem_recv(t->session, data, k);
        t->in_recv = false;
        if (rv < 0) {
            latch_log(LATCH_LOG_INFO, "grpc: closing connection: %s", nghttp2_strerror((int)rv));
            return LATCH_EPROTO;
        }
        data += k;
        n -= k;
        if (n > 0) {
            api_transport_flush(t);
        }
    }
    return 0;
}

/* Feeds ciphertext to TLS and everything it decrypts to nghttp2. Returns 0 or an error after
 * which the connection closes (a TLS alert or a GOAWAY may still be queued). */
static int tls_recv(struct api_transport *t, size_t n)
{
    int rc = api_tls_feed(t->tls, t->io->in, n);
    while (rc == 0) {
        ssize_t got = api_tls_read(t->tls, t->io->plain, sizeof(t->io->plain));
        if (!t->hs_done && api_tls_handshake_done(t->tls)) {
            t->hs_done = true;
            if (t->ops->handshake_done != NULL) {
                t->ops->handshake_done(t);
            }
        }
        if (got == 0) {
            break;
        }
        if (got < 0) {
            if (got != LATCH_ESHUTDOWN) {
                latch_log(LATCH_LOG_INFO, "grpc: TLS: %s", api_tls_error(t->tls));
            }
            t->hs_done = false; /* only the TLS output (an alert) goes out from here */
            return (int)got;
        }
        rc = session_recv(t, t->io->plain, (size_t)got);
    }
    return rc;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct api_transport *t = h->data;
    *buf = uv_buf_init((char *)t->io->in, sizeof(t->io->in));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct api_transport *t = stream->data;
    (void)buf;
    if (nread == 0 || t->closing) {
        return;
    }
    if (nread < 0) {
        api_transport_close(t);
        return;
    }
    int rc =
        t->tls != NULL ? tls_recv(t, (size_t)nread) : session_recv(t, t->io->in, (size_t)nread);
    api_transport_flush(t); /* replies, PING ACKs, WINDOW_UPDATEs; or a GOAWAY or alert */
    if (rc != 0) {
        api_transport_close_after_writes(t);
    }
}

int api_transport_init(struct api_transport *t,
                       uv_loop_t *loop,
                       bool is_tcp,
                       const struct api_transport_ops *ops,
                       void *owner,
                       struct api_transport_buf *io,
                       size_t max_out)
{
    LATCH_ASSERT(ops != NULL && ops->closed != NULL && io != NULL && max_out > 0);
    memset(t, 0, sizeof(*t));
    t->ops = ops;
    t->owner = owner;
    t->io = io;
    t->max_out = max_out;
    t->is_tcp = is_tcp;
    int rv = is_tcp ? uv_tcp_init(loop, &t->h.tcp) : uv_pipe_init(loop, &t->h.pipe, 0);
    if (rv != 0) {
        return LATCH_EINVAL;
    }
    t->h.handle.data = t;
    t->handles = 1;
    return 0;
}

int api_transport_session_new(struct api_transport *t,
                              const nghttp2_session_callbacks *cbs,
                              bool server,
                              const nghttp2_settings_entry *iv,
                              size_t n,
                              int32_t conn_window)
{
    LATCH_ASSERT(t->session == NULL);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        return LATCH_ENOMEM;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    if (server) {
        /* grpc-go servers take any :authority; etcd's clients send the member's client URL
         * with its scheme ("http://127.0.0.1:2379") when they dial --cluster endpoints,
         * which nghttp2's HTTP messaging check refuses. gRPC routing needs only :method,
         * :path and content-type, which the server checks itself. */
        nghttp2_option_set_no_http_messaging(opt, 1);
    }
    int rv = server ? nghttp2_session_server_new2(&t->session, cbs, t->owner, opt)
                    : nghttp2_session_client_new2(&t->session, cbs, t->owner, opt);
    nghttp2_option_del(opt);
    if (rv != 0) {
        t->session = NULL;
        return LATCH_ENOMEM;
    }
    if (nghttp2_submit_settings(t->session, NGHTTP2_FLAG_NONE, iv, n) != 0 ||
        nghttp2_session_set_local_window_size(t->session, NGHTTP2_FLAG_NONE, 0, conn_window) != 0) {
        return LATCH_ENOMEM;
    }
    return 0;
}

int api_transport_start(struct api_transport *t, struct api_tls *tls)
{
    LATCH_ASSERT(t->session != NULL && !t->started && t->tls == NULL);
    t->tls = tls;
    t->hs_done = tls == NULL;
    if (t->is_tcp) {
        uv_tcp_nodelay(&t->h.tcp, 1);
    }
    if (uv_read_start(&t->h.stream, alloc_cb, read_cb) != 0) {
        return LATCH_EINVAL;
    }
    t->started = true;
    api_transport_flush(t); /* a server's SETTINGS, or a client's ClientHello */
    return 0;
}
