/*
 * latchd.c — the latch server process: configuration (server/config), the node
 * (server/node: Raft + store on two threads), the peer transport (server/peer), the client
 * gRPC listener with etcd's KV service (server/svc_kv) and the admin HTTP listener
 * (server/admin). docs/operations.md lists the flags.
 *
 * Identities are derived as etcd derives them, so every member computes the same ones from
 * the same --initial-cluster and --initial-cluster-token: a member's id hashes the token and
 * its peer URLs, the cluster id hashes the sorted member ids (FNV-1a 64; never 0).
 *
 * TLS: https:// client URLs listen with a server context from --cert-file/--key-file (client
 * certificates required and verified against --trusted-ca-file with --client-cert-auth);
 * https:// peer URLs likewise with the --peer-* flags, and the peer transport dials https
 * peers with a client context (CA --peer-trusted-ca-file, client certificate
 * --peer-cert-file/--peer-key-file, no host name check: one context serves every peer, so
 * the peer CA is what identifies members). SIGHUP reloads every context from its files (new
 * connections only). The admin listener is plain HTTP: https metrics URLs are refused.
 *
 * Shutdown (SIGTERM, SIGINT): the client listener drains (GOAWAY, calls in flight finish, at
 * most 2 s), then the admin listener, the peer listener and transport and the node close;
 * the process exits 0 once every handle is closed. Exit codes: 0, 1 (could not start),
 * 2 (bad configuration).
 *
 * Services: KV, Watch, Lease (keep-alives served by the leader only), Maintenance Status,
 * Alarm list and Defragment, Cluster MemberList, Auth Authenticate ("not enabled").
 * Not yet (issue 5): TLS on the admin listener, membership changes, snapshots and log
 * compaction, leadership transfer before exit, joining an existing cluster, lease forwarding.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "admin.h"
#include "config.h"
#include "grpc_server.h"
#include "grpc_tls.h"
#include "latch_error.h"
#include "latch_log.h"
#include "lease.h"
#include "metrics.h"
#include "node.h"
#include "peer.h"
#include "svc_kv.h"
#include "svc_lease.h"
#include "svc_maint.h"
#include "svc_watch.h"
#include "watch.h"

extern char **environ;

struct latchd {
    uv_loop_t loop;
    struct latchd_config cfg;
    uint64_t cluster_id;
    uint64_t member_id;
    raft_id *ids; /* one per member of the initial cluster, in its order */
    struct srv_node *node;
    struct srv_peer *peer;
    struct api_server *clients;
    struct api_server *peers;
    struct srv_kv *kv;
    struct srv_lease_keeper *leases; /* stopped before the node closes */
    struct srv_lease *lease_svc;
    struct srv_maint *maint;
    char *client_urls;           /* --advertise-client-urls joined with ',', for the peers */
    struct srv_watch_hub *watch; /* NULL once closed */
    struct srv_watch_svc *watch_svc;
    struct srv_maint_member *members; /* for MemberList, one per initial member */
    struct srv_metrics *metrics;
    struct srv_metrics_std std;
    struct srv_admin *admin;
    /* TLS contexts, NULL when unused; freed after the loop (connections hold references). */
    struct api_tls_ctx *client_tls; /* server side, https client URLs */
    struct api_tls_ctx *peer_tls;   /* server side, https peer URLs */
    struct api_tls_ctx *dial_tls;   /* client side, the transport's https peer URLs */
    uv_signal_t sigterm, sigint, sighup;
    bool stopping;
    raft_id leader;
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

#define FNV_OFFSET 14695981039346656037ull

static uint64_t member_id(const char *token, const struct latchd_member *m)
{
    uint64_t h = fnv1a(FNV_OFFSET, token, strlen(token));
    for (size_t i = 0; i < m->peer_urls_count; i++) {
        h = fnv1a(h, "\n", 1);
        h = fnv1a(h, m->peer_urls[i], strlen(m->peer_urls[i]));
    }
    return h != 0 ? h : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- node <-> transport --------------------------------------------------------------- */

static void node_send(void *data, const struct raft_msg *msgs, size_t n)
{
    struct latchd *d = data;
    srv_peer_send(d->peer, msgs, n);
}

static void node_leader(void *data, raft_id leader, raft_term term)
{
    struct latchd *d = data;
    if (leader != d->leader) {
        srv_counter_inc(d->std.raft_leader_changes);
        latch_log(LATCH_LOG_INFO, "latchd: leader is now %016llx (term %llu)",
                  (unsigned long long)leader, (unsigned long long)term);
        d->leader = leader;
    }
}

static void node_applied(void *data, int64_t revision)
{
    struct latchd *d = data;
    if (d->watch != NULL) {
        srv_watch_hub_applied(d->watch, revision);
    }
}

static void peer_deliver(void *data, const struct raft_msg *m)
{
    struct latchd *d = data;
    if (d->node != NULL) {
        srv_node_step(d->node, m);
    }
}

static void peer_unreachable(void *data, raft_id id)
{
    struct latchd *d = data;
    if (d->node != NULL) {
        srv_node_report_unreachable(d->node, id);
    }
}

static void peer_snapshot_status(void *data, raft_id id, bool ok)
{
    (void)data;
    (void)id;
    (void)ok; /* snapshots are not sent yet (server/peer.h) */
}

/* ---- admin ---------------------------------------------------------------------------- */

static bool health(void *data, char *detail, size_t cap)
{
    struct latchd *d = data;
    struct srv_node_status st;
    srv_node_status(d->node, &st);
    if (st.failed != 0) {
        snprintf(detail, cap, "storage failed: %s", latch_strerror(st.failed));
        return false;
    }
    if (st.leader == RAFT_NONE) {
        snprintf(detail, cap, "no leader");
        return false;
    }
    return true;
}

static void metrics_hook(void *data)
{
    struct latchd *d = data;
    struct srv_node_status st;
    srv_node_status(d->node, &st);
    srv_gauge_set(d->std.raft_term, (int64_t)st.term);
    srv_gauge_set(d->std.raft_index, (int64_t)st.last_index);
    srv_gauge_set(d->std.raft_commit_index, (int64_t)st.commit);
    srv_gauge_set(d->std.raft_applied_index, (int64_t)st.applied);
    srv_gauge_set(d->std.raft_has_leader, st.leader != RAFT_NONE);
    struct store_space sp;
    if (store_space(srv_node_reader(d->node), &sp) == 0) {
        srv_gauge_set(d->std.db_size_bytes, (int64_t)(sp.file_bytes + sp.raft_file_bytes));
    }
}

/* ---- start and stop ------------------------------------------------------------------- */

/* Listens on every URL of urls with s (gRPC; https URLs with tls) or a (admin, plain HTTP
 * only). Returns 0 or an error. */
static int listen_urls(
    char **urls, size_t n, struct api_server *s, struct api_tls_ctx *tls, struct srv_admin *a)
{
    for (size_t i = 0; i < n; i++) {
        struct latchd_url u;
        if (latchd_url_parse(urls[i], &u) != 0) {
            return LATCH_EINVAL;
        }
        if (u.tls && s == NULL) {
            latch_log(LATCH_LOG_ERROR,
                      "latchd: --listen-metrics-urls %s: the admin listener serves plain HTTP "
                      "only; use http://",
                      urls[i]);
            return LATCH_EINVAL;
        }
        const char *host = strcmp(u.host, "localhost") == 0 ? "127.0.0.1" : u.host;
        int rc;
        if (s == NULL) {
            rc = srv_admin_listen(a, host, u.port, NULL);
        } else if (u.tls) {
            rc = api_server_listen_tls(s, host, u.port, tls, NULL);
        } else {
            rc = api_server_listen(s, host, u.port, NULL);
        }
        if (rc != 0) {
            latch_log(LATCH_LOG_ERROR, "latchd: cannot listen on %s: %s", urls[i],
                      latch_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void node_closed(void *data)
{
    struct latchd *d = data;
    d->node = NULL;
}

static void peer_closed(void *data)
{
    struct latchd *d = data;
    d->peer = NULL;
    if (d->node != NULL) {
        srv_node_close(d->node, node_closed, d);
    }
}

static void watch_closed(void *data)
{
    struct latchd *d = data;
    d->watch = NULL;
}

static void admin_closed(void *data)
{
    struct latchd *d = data;
    d->admin = NULL;
}

/* api_server's close callbacks carry no user data: latchd is one per process. */
static struct latchd g_latchd;

static void peers_server_closed(struct api_server *s)
{
    (void)s;
    g_latchd.peers = NULL;
}

/* The client listener has drained (or never existed): the rest closes, the node last. */
static void clients_closed(struct api_server *s)
{
    (void)s;
    struct latchd *d = &g_latchd;
    d->clients = NULL;
    srv_lease_keeper_stop(d->leases); /* before the node closes: lease.h */
    if (d->watch != NULL) {
        srv_watch_hub_close(d->watch, watch_closed, d); /* touches the node no more */
    }
    if (d->admin != NULL) {
        srv_admin_close(d->admin, d, admin_closed);
    }
    if (d->peers != NULL) {
        api_server_close(d->peers, peers_server_closed); /* before the transport: peer.h */
    }
    if (d->peer != NULL) {
        srv_peer_close(d->peer, peer_closed, d);
    } else if (d->node != NULL) {
        srv_node_close(d->node, node_closed, d);
    }
}

static void stop(struct latchd *d)
{
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    latch_log(LATCH_LOG_INFO, "latchd: stopping");
    if (uv_is_active((uv_handle_t *)&d->sigterm)) {
        uv_close((uv_handle_t *)&d->sigterm, NULL);
        uv_close((uv_handle_t *)&d->sigint, NULL);
        uv_close((uv_handle_t *)&d->sighup, NULL);
    }
    if (d->clients != NULL) {
        api_server_shutdown(d->clients, 2000, clients_closed);
    } else {
        clients_closed(NULL);
    }
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    stop(sig->data);
}

static const char *peer_client_urls(void *data, uint64_t id)
{
    struct latchd *d = data;
    return d->peer != NULL ? srv_peer_client_urls(d->peer, id) : NULL;
}

/* Maintenance, Cluster and Auth on the client server: members from --initial-cluster. */
static int maint_register(struct latchd *d)
{
    struct latchd_config *c = &d->cfg;
    d->members = calloc(c->members_count, sizeof(*d->members));
    if (d->members == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < c->members_count; i++) {
        struct srv_maint_member *mm = &d->members[i];
        mm->id = d->ids[i];
        mm->name = c->members[i].name;
        mm->peer_urls = (const char *const *)c->members[i].peer_urls;
        mm->peer_urls_count = c->members[i].peer_urls_count;
        if (d->ids[i] == d->member_id) {
            mm->client_urls = (const char *const *)c->advertise_client_urls;
            mm->client_urls_count = c->advertise_client_urls_count;
        }
    }
    struct srv_maint_config mc = {.node = d->node,
                                  .cluster_id = d->cluster_id,
                                  .member_id = d->member_id,
                                  .members = d->members,
                                  .members_count = c->members_count,
                                  .client_urls = peer_client_urls,
                                  .client_urls_data = d};
    return srv_maint_register(d->clients, &mc, &d->maint);
}

/* ---- TLS ----------------------------------------------------------------------------- */

static bool any_tls(char **urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct latchd_url u;
        if (latchd_url_parse(urls[i], &u) == 0 && u.tls) {
            return true;
        }
    }
    return false;
}

/* "" (an unset flag) as NULL. */
static const char *opt_path(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* Makes one TLS context (what names it in logs). Returns 0, or an error after logging it. */
static int tls_new(const char *what,
                   bool server,
                   const char *cert,
                   const char *key,
                   const char *ca,
                   bool verify_peer,
                   struct api_tls_ctx **out)
{
    struct api_tls_config tc = {.cert_file = opt_path(cert),
                                .key_file = opt_path(key),
                                .ca_file = opt_path(ca),
                                .verify_peer = verify_peer};
    char err[API_TLS_ERR_MAX];
    int rc = api_tls_ctx_new(&tc, server, out, err, sizeof(err));
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "latchd: %s TLS: %s", what, err);
    }
    return rc;
}

/* Makes the contexts the configuration's URLs need. Returns 0, or an error after logging it. */
static int tls_start(struct latchd *d)
{
    struct latchd_config *c = &d->cfg;
    int rc = 0;
    /* Listeners: the CA file only verifies client certificates, so only with cert auth. */
    if (any_tls(c->listen_client_urls, c->listen_client_urls_count)) {
        rc = tls_new("client", true, c->cert_file, c->key_file,
                     c->client_cert_auth ? c->trusted_ca_file : NULL, c->client_cert_auth,
                     &d->client_tls);
    }
    if (rc == 0 && any_tls(c->listen_peer_urls, c->listen_peer_urls_count)) {
        rc = tls_new("peer", true, c->peer_cert_file, c->peer_key_file,
                     c->peer_client_cert_auth ? c->peer_trusted_ca_file : NULL,
                     c->peer_client_cert_auth, &d->peer_tls);
    }
    bool dial = false;
    for (size_t i = 0; i < c->members_count; i++) {
        dial = dial || any_tls(c->members[i].peer_urls, c->members[i].peer_urls_count);
    }
    if (rc == 0 && dial) {
        /* No server_name: one context dials every peer, so no single host name fits; the
         * chain must verify against --peer-trusted-ca-file (docs/operations.md, TLS). */
        rc = tls_new("peer dial", false, c->peer_cert_file, c->peer_key_file,
                     c->peer_trusted_ca_file, false, &d->dial_tls);
    }
    return rc;
}

static void tls_reload_one(const char *what, struct api_tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    char err[API_TLS_ERR_MAX];
    if (api_tls_ctx_reload(ctx, err, sizeof(err)) == 0) {
        latch_log(LATCH_LOG_INFO, "latchd: %s TLS reloaded", what);
    } else {
        latch_log(LATCH_LOG_ERROR, "latchd: %s TLS reload failed, keeping the old material: %s",
                  what, err);
    }
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct latchd *d = sig->data;
    if (d->client_tls == NULL && d->peer_tls == NULL && d->dial_tls == NULL) {
        latch_log(LATCH_LOG_INFO, "latchd: SIGHUP: no TLS to reload");
    }
    tls_reload_one("client", d->client_tls);
    tls_reload_one("peer", d->peer_tls);
    tls_reload_one("peer dial", d->dial_tls);
}

/* Makes every part and starts listening. Returns 0, or an error after logging it. */
static int start(struct latchd *d)
{
    struct latchd_config *c = &d->cfg;
    d->ids = calloc(c->members_count, sizeof(*d->ids));
    if (d->ids == NULL) {
        return LATCH_ENOMEM;
    }
    raft_id *sorted = calloc(c->members_count, sizeof(*sorted));
    if (sorted == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < c->members_count; i++) {
        d->ids[i] = member_id(c->initial_cluster_token, &c->members[i]);
        sorted[i] = d->ids[i];
        if (strcmp(c->members[i].name, c->name) == 0) {
            d->member_id = d->ids[i];
        }
    }
    qsort(sorted, c->members_count, sizeof(*sorted), cmp_u64);
    d->cluster_id = fnv1a(FNV_OFFSET, sorted, c->members_count * sizeof(*sorted));
    d->cluster_id = d->cluster_id != 0 ? d->cluster_id : 1;
    free(sorted);
    latch_log(LATCH_LOG_INFO, "latchd: member %s id %016llx, cluster %016llx, data dir %s", c->name,
              (unsigned long long)d->member_id, (unsigned long long)d->cluster_id, c->data_dir);

    int rc = tls_start(d);
    if (rc != 0) {
        return rc;
    }
    rc = srv_metrics_new(&d->metrics);
    if (rc == 0) {
        rc = srv_metrics_std_register(d->metrics, &d->std);
    }
    if (rc == 0) {
        rc = srv_metrics_add_hook(d->metrics, metrics_hook, d);
    }
    if (rc != 0) {
        return rc;
    }

    struct srv_node_config nc;
    srv_node_config_init(&nc);
    nc.id = d->member_id;
    nc.store.dir = c->data_dir;
    nc.store.quota_bytes = c->quota_backend_bytes;
    nc.initial_voters = d->ids;
    nc.initial_voters_count = c->members_count;
    nc.tick_ms = c->heartbeat_interval_ms;
    nc.election_ms = c->election_timeout_ms;
    nc.data = d;
    nc.send = node_send;
    nc.leader = node_leader;
    nc.applied = node_applied;
    char err[256];
    rc = srv_node_new(&d->loop, &nc, &d->node, err, sizeof(err));
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "latchd: %s", err);
        return rc;
    }
    struct srv_watch_hub_config wc = {
        .node = d->node, .cluster_id = d->cluster_id, .member_id = d->member_id};
    rc = srv_watch_hub_new(&d->loop, &wc, &d->watch);
    if (rc != 0) {
        return rc;
    }

    size_t joined = 1;
    for (size_t i = 0; i < c->advertise_client_urls_count; i++) {
        joined += strlen(c->advertise_client_urls[i]) + 1;
    }
    d->client_urls = calloc(1, joined);
    if (d->client_urls == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < c->advertise_client_urls_count; i++) {
        if (i > 0) {
            strcat(d->client_urls, ",");
        }
        strcat(d->client_urls, c->advertise_client_urls[i]);
    }
    struct srv_peer_config pc = {.id = d->member_id,
                                 .client_urls = d->client_urls,
                                 .cluster_id = d->cluster_id,
                                 .deliver = peer_deliver,
                                 .unreachable = peer_unreachable,
                                 .snapshot_status = peer_snapshot_status,
                                 .data = d,
                                 .tls = d->dial_tls};
    rc = srv_peer_new(&d->loop, &pc, &d->peer);
    for (size_t i = 0; rc == 0 && i < c->members_count; i++) {
        if (d->ids[i] != d->member_id) {
            rc = srv_peer_add(d->peer, d->ids[i], (const char *const *)c->members[i].peer_urls,
                              c->members[i].peer_urls_count);
        }
    }
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "latchd: peer transport: %s", latch_strerror(rc));
        return rc;
    }

    struct api_server_config peers_cfg = {.max_recv_msg_size = SRV_PEER_SERVER_MAX_RECV_MSG_SIZE};
    rc = api_server_new(&d->loop, &peers_cfg, &d->peers);
    if (rc == 0) {
        rc = srv_peer_register(d->peer, d->peers);
    }
    if (rc == 0) {
        rc = listen_urls(c->listen_peer_urls, c->listen_peer_urls_count, d->peers, d->peer_tls,
                         NULL);
    }
    if (rc != 0) {
        return rc;
    }

    struct api_server_config client_cfg = {.max_concurrent_streams = c->max_concurrent_streams};
    rc = api_server_new(&d->loop, &client_cfg, &d->clients);
    if (rc == 0) {
        struct srv_kv_config kc = {.node = d->node,
                                   .cluster_id = d->cluster_id,
                                   .member_id = d->member_id,
                                   .max_request_bytes = c->max_request_bytes};
        rc = srv_kv_register(d->clients, &kc, &d->kv);
    }
    if (rc == 0) {
        struct srv_lease_config lc = {.node = d->node, .promote_extend_ms = nc.election_ms};
        rc = srv_lease_keeper_new(&d->loop, &lc, &d->leases);
    }
    if (rc == 0) {
        /* etcd's minimum TTL: 1.5 election timeouts, rounded up to seconds (2 s by default). */
        struct srv_lease_svc_config lsc = {.node = d->node,
                                           .keeper = d->leases,
                                           .cluster_id = d->cluster_id,
                                           .member_id = d->member_id,
                                           .min_ttl = (3 * (int64_t)nc.election_ms + 1999) / 2000};
        rc = srv_lease_register(d->clients, &lsc, &d->lease_svc);
    }
    if (rc == 0) {
        struct srv_watch_svc_config wsc = {.node = d->node, .hub = d->watch};
        rc = srv_watch_svc_register(d->clients, &wsc, &d->watch_svc);
    }
    if (rc == 0) {
        rc = maint_register(d);
    }
    if (rc == 0) {
        rc = listen_urls(c->listen_client_urls, c->listen_client_urls_count, d->clients,
                         d->client_tls, NULL);
    }
    if (rc != 0) {
        return rc;
    }

    if (c->listen_metrics_urls_count > 0) {
        struct srv_admin_config ac = {.metrics = d->metrics, .health = health, .health_data = d};
        rc = srv_admin_new(&d->loop, &ac, &d->admin);
        if (rc == 0) {
            rc = listen_urls(c->listen_metrics_urls, c->listen_metrics_urls_count, NULL, NULL,
                             d->admin);
        }
        if (rc != 0) {
            return rc;
        }
    }
    latch_log(LATCH_LOG_INFO, "latchd: serving clients on %s", c->listen_client_urls[0]);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2): grpc_server.h */
    struct latchd *d = &g_latchd;
    char err[LATCHD_CONFIG_ERR_BYTES];
    if (latchd_config_init(&d->cfg) != 0) {
        fprintf(stderr, "latchd: out of memory\n");
        return 1;
    }
    if (latchd_config_load(&d->cfg, argc, argv, environ, err, sizeof(err)) != 0) {
        fprintf(stderr, "latchd: %s\n", err);
        latchd_config_free(&d->cfg);
        return 2;
    }
    if (d->cfg.help || d->cfg.version) {
        if (d->cfg.help) {
            latchd_config_usage(stdout);
        } else {
            printf("latchd %s (etcd API 3.4)\n", LATCH_VERSION);
        }
        latchd_config_free(&d->cfg);
        return 0;
    }
    if (latchd_config_validate(&d->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "latchd: %s\n", err);
        latchd_config_free(&d->cfg);
        return 2;
    }
    latch_log_set_level(d->cfg.log_level);
    if (uv_loop_init(&d->loop) != 0) {
        return 1;
    }
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_sighup, SIGHUP);
    int rc = start(d);
    if (rc != 0) {
        stop(d);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    srv_kv_free(d->kv);
    srv_lease_free(d->lease_svc);
    srv_lease_keeper_free(d->leases);
    srv_watch_svc_free(d->watch_svc);
    srv_maint_free(d->maint);
    free(d->client_urls);
    free(d->members);
    srv_metrics_free(d->metrics);
    api_tls_ctx_free(d->client_tls);
    api_tls_ctx_free(d->peer_tls);
    api_tls_ctx_free(d->dial_tls);
    free(d->ids);
    latchd_config_free(&d->cfg);
    int closed = uv_loop_close(&d->loop);
    if (closed != 0) {
        fprintf(stderr, "latchd: handles left open at exit\n");
    }
    return rc != 0 ? 1 : closed != 0;
}
