/*
 * admin.h — the admin HTTP/1.1 listener: /health, /metrics and /version (DESIGN §6).
 *
 * A deliberately small HTTP/1.1 server on the caller's libuv loop for probes and scrapers
 * (Prometheus, kubelet, curl), on its own port (--listen-metrics-urls). It parses request
 * lines and headers by hand and answers every request itself; no request body is ever read.
 *
 *  - Only GET and HEAD; any other method gets 405 with "Allow: GET, HEAD". Unknown paths get
 *    404. The query string is ignored for routing.
 *  - The request line and headers together may take SRV_ADMIN_HEADER_BYTES_MAX bytes; beyond
 *    that the answer is 431 and the connection closes. A malformed request (bad request
 *    line, bad header line, missing Host in HTTP/1.1, bad Content-Length, HTTP major
 *    version other than 1) gets 400 (505 for HTTP/2+) and the connection closes.
 *  - HTTP/1.1 connections stay open unless the request says "Connection: close"; HTTP/1.0
 *    ones close unless it says "Connection: keep-alive". A request that announces a body
 *    (Content-Length > 0 or Transfer-Encoding) is answered, then the connection closes,
 *    since the body is never read.
 *  - Pipelined requests are answered in order, one at a time: while a response is being
 *    written the connection is not read, so a client that sends without reading holds at
 *    most one response and SRV_ADMIN_HEADER_BYTES_MAX bytes of input in the server.
 *  - Every response carries Content-Length and is sent with one uv_write. HEAD responses
 *    carry the Content-Length the GET body would have, and no body.
 *  - A connection idle (no byte received, nothing being written) for idle_timeout_ms is
 *    closed. Beyond max_connections, a new connection is accepted and closed at once.
 *
 * Routes:
 *   /health  200 {"health":"true"} or 503 {"health":"false","reason":"..."}, etcd's body
 *            shape, from the caller's health callback (application/json).
 *   /metrics the registry rendered in the Prometheus text format
 *            (text/plain; version=0.0.4; charset=utf-8).
 *   /version {"latchserver":LATCH_VERSION,"etcdserver":"3.4.0","etcdcluster":"3.4.0"}, etcd's
 *            shape plus latch's own version, so tools that read etcd's /version work.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "latch_version.h"
#include "metrics.h"

/* The etcd API version latch implements, reported as etcdserver and etcdcluster. */
#define SRV_ETCD_VERSION "3.4.0"

/* Request line plus headers, in bytes: 8 KiB, as nginx's default large header buffer and
 * far above what probes and scrapers send. */
#define SRV_ADMIN_HEADER_BYTES_MAX        8192
/* Connections served at once by default: probes and scrapers need a handful. */
#define SRV_ADMIN_MAX_CONNECTIONS_DEFAULT 64
/* Idle time before a connection is closed by default, in milliseconds. */
#define SRV_ADMIN_IDLE_TIMEOUT_MS_DEFAULT 30000
/* Longest reason a health callback may write, including the NUL. */
#define SRV_ADMIN_HEALTH_DETAIL_MAX       256

struct srv_admin;

/*
 * Says whether the node is healthy (a leader is known and a quorum is reachable). On false
 * it may write a short NUL-terminated reason into detail (cap bytes, borrowed for the call),
 * sent as the "reason" of the 503 body. Runs on the loop thread for every /health request;
 * it must not close the admin server.
 */
typedef bool (*srv_admin_health_fn)(void *data, char *detail, size_t cap);

/* Runs once when srv_admin_close() has finished; data is the value given to it. The server
 * is already freed. */
typedef void (*srv_admin_close_cb)(void *data);

struct srv_admin_config {
    /* Connections served at once; 0 selects SRV_ADMIN_MAX_CONNECTIONS_DEFAULT. */
    size_t max_connections;
    /* Idle timeout in milliseconds; 0 selects SRV_ADMIN_IDLE_TIMEOUT_MS_DEFAULT. */
    uint64_t idle_timeout_ms;
    /* Rendered by /metrics; borrowed, must outlive the server. NULL makes /metrics a 404. */
    struct srv_metrics *metrics;
    /* Called by /health with health_data; NULL makes every /health answer 503. */
    srv_admin_health_fn health;
    void *health_data;
};

/*
 * Allocates a server on loop (borrowed; it must outlive the server). cfg is copied (the
 * pointers in it are borrowed as documented above). Returns 0 and sets *out, LATCH_ENOMEM,
 * or LATCH_EINVAL when the libuv handle cannot be initialised. Release with
 * srv_admin_close(), also when srv_admin_listen() failed.
 */
int srv_admin_new(uv_loop_t *loop, const struct srv_admin_config *cfg, struct srv_admin **out);

/*
 * Listens on host (an IPv4 or IPv6 literal, borrowed for the call) and port (0 =
 * ephemeral). Sets *bound_port (may be NULL) to the port actually bound. Returns 0,
 * LATCH_EINVAL (bad address or port; bind or listen failed, logged), LATCH_EEXIST (address
 * in use) or LATCH_ESTATE (already listening, or closing).
 */
int srv_admin_listen(struct srv_admin *a, const char *host, int port, int *bound_port);

/* Connections open now (for tests and logging). */
size_t srv_admin_connections(const struct srv_admin *a);

/*
 * Graceful close: stops listening and closes idle connections at once. A connection with a
 * request in hand (partly received, or its response being written) finishes it: the
 * response goes out with "Connection: close" and the connection closes once it is written;
 * requests pipelined behind it are not answered. Such a connection is still closed by the
 * idle timeout if the peer stalls. done_cb (may be NULL) runs with data after every handle
 * has closed, and a is freed before it runs. Call exactly once; a must not be used after.
 */
void srv_admin_close(struct srv_admin *a, void *data, srv_admin_close_cb done_cb);

#endif /* SRV_ADMIN_H */
