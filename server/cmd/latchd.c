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
 * --peer-cert-file/--peer-key-file; one context serves every peer, and each connection checks
 * the peer's certificate against the host of the URL it dialed, as etcd does: server/peer.c).
 * SIGHUP reloads every context from its files (new
 * connections only). The admin listener is plain HTTP: https metrics URLs are refused.
 *
 * Shutdown (SIGTERM, SIGINT): the client listener drains (GOAWAY, calls in flight finish, at
 * most 2 s), then the admin listener, the peer listener and transport and the node close.
 * Shutdown (SIGTERM, SIGINT) of a leader first hands leadership over (membership, below).
 * The process exits 0 once every handle is closed. Exit codes: 0, 1 (could not start, or
 * this member was removed from the cluster), 2 (bad configuration).
 *
 * Services: KV, Watch, Lease (a follower forwards keep-alives and time-to-live to the
 * leader: svc_lease.h), Maintenance Status, Alarm, Defragment, Hash, HashKV and Snapshot
 * (svc_maint.h; its workers stop before the node closes), MoveLeader, Cluster
 * (svc_cluster.h), Auth Authenticate ("not enabled"), etcd's v3lock and v3election
 * (svc_v3conc.h: fed by the node's applied hook, like the watch hub).
 * Membership (docs/decisions/membership.md): the cluster and member ids live in the data
 * dir (server/identity.h; --initial-cluster-state existing joins through the peers'
 * Members RPC); the transport follows the replicated membership; a removed member exits 1;
 * on SIGTERM a leader first hands leadership to its most up-to-date voter.
 * Snapshots and Raft log compaction: node.h; LATCH_SNAPSHOT_CATCHUP_ENTRIES (a test knob,
 * not in --help) sets the entries kept behind a snapshot (default 5000).
 * Not yet: TLS on the admin listener.
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
#include "identity.h"
#include "latch_error.h"
#include "latch_log.h"
#include "latch_teeth.h"
#include "lease.h"
#include "metrics.h"
#include "node.h"
#include "peer.h"
#include "svc_cluster.h"
#include "svc_kv.h"
#include "svc_latch.h"
#include "svc_lease.h"
#include "svc_maint.h"
#include "svc_v3conc.h"
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
    struct srv_v3conc *v3conc;
    struct srv_latch *latch;         /* latch.v1 */
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
    /* Membership (docs/decisions/membership.md). */
    struct srv_identity ident;       /* cluster id, member id, bootstrap voters */
    struct srv_member_attrs *attrs;  /* the bootstrap voters' attributes, for the node */
    const char **attr_urls;          /* their peer URLs when taken from `joined` */
    struct srv_members *joined;      /* the member list a join got (strings for attrs) */
    struct srv_members *peers_known; /* the membership the transport was last synced to */
    struct srv_cluster *cluster;
    uv_timer_t publish_timer;  /* publishes this member's name until it is listed */
    bool seen_self;            /* this member was in a membership already */
    uint64_t leaderless_since; /* uv_now when no leader was first seen; 0: has one */
    bool transferring;         /* SIGTERM: handing leadership over before stopping */
    int exit_code;
    raft_id leader;
    /* Snapshot and compaction figures (snapshot_metrics_hook). */
    struct srv_series *m_first_index;
    struct srv_series *m_snapshot_index;
    struct srv_series *m_snapshots_created;
    struct srv_series *m_snapshots_installed;
    uint64_t snapshots_created_seen;
    uint64_t snapshots_installed_seen;
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
    srv_maint_applied(d->maint); /* the NOSPACE alarm when over the quota */
    /* waiting Locks and Campaigns, Observe streams */
    srv_v3conc_applied(d->v3conc, revision);
    srv_latch_applied(d->latch, revision); /* latch.v1's lock waiters and observers */
}

/* Mid-apply, before a compaction applied with the entries before it: the watchers read
 * their events first (node.h before_compact). */
static void node_before_compact(void *data, int64_t revision)
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
    struct latchd *d = data;
    if (d->node != NULL) {
        srv_node_report_snapshot(d->node, id, ok);
    }
}

/* Snapshot streams: the transport moves the bytes, the node owns the files (node.h). */
static int peer_snapshot_open(void *data, const struct raft_msg *m, struct store_snap_reader **out)
{
    struct latchd *d = data;
    return d->node != NULL ? srv_node_snapshot_open(d->node, m, out) : LATCH_ESHUTDOWN;
}

static int
peer_snapshot_recv_begin(void *data, const struct raft_msg *m, struct store_snap_writer **out)
{
    struct latchd *d = data;
    (void)m;
    return d->node != NULL ? srv_node_snapshot_recv_begin(d->node, out) : LATCH_ESHUTDOWN;
}

static int peer_snapshot_recv_end(void *data, const struct raft_msg *m, struct store_snap_writer *w)
{
    struct latchd *d = data;
    if (d->node == NULL) {
        store_snap_writer_abort(w);
        return LATCH_ESHUTDOWN;
    }
    return srv_node_snapshot_recv_end(d->node, m, w);
}

static void peer_snapshot_recv_abort(void *data, struct store_snap_writer *w)
{
    struct latchd *d = data;
    if (d->node != NULL) {
        srv_node_snapshot_recv_abort(d->node, w);
    } else {
        store_snap_writer_abort(w);
    }
}

/* Entries kept behind a snapshot (node.h); LATCH_SNAPSHOT_CATCHUP_ENTRIES, a test knob
 * left out of --help on purpose: operators should not need it. 0 or unset: the default. */
static uint64_t snapshot_catchup_entries(void)
{
    const char *v = getenv("LATCH_SNAPSHOT_CATCHUP_ENTRIES");
    char *end = NULL;
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0' || v[0] == '-') {
        latch_log(LATCH_LOG_WARN,
                  "latchd: ignoring LATCH_SNAPSHOT_CATCHUP_ENTRIES=%s (not a number)", v);
        return 0;
    }
    return (uint64_t)n;
}

/* The watch hub's progress_notify interval (watch.h), LATCH_WATCH_PROGRESS_MS, a test knob
 * left out of --help like LATCH_SNAPSHOT_CATCHUP_ENTRIES. 0 or unset: etcd's 10 minutes. */
static uint32_t watch_progress_ms(void)
{
    const char *v = getenv("LATCH_WATCH_PROGRESS_MS");
    char *end = NULL;
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    unsigned long n = strtoul(v, &end, 10);
    if (*end != '\0' || v[0] == '-' || n > UINT32_MAX) {
        latch_log(LATCH_LOG_WARN, "latchd: ignoring LATCH_WATCH_PROGRESS_MS=%s (not a number)", v);
        return 0;
    }
    return (uint32_t)n;
}

/* Test-only fault switches (latch_teeth.h) from LATCH_TEETH, a test knob left out of --help.
 * Returns 0, or 2 (exit status) when it names an unknown switch or this build has none: a
 * harness asking for a bug must never run a correct server by mistake. */
static int teeth_setup(void)
{
    const char *v = getenv("LATCH_TEETH");
    unsigned bugs = 0;
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    if (latch_teeth_parse(v, &bugs) != 0) {
        fprintf(stderr,
                "latchd: LATCH_TEETH=%s: unknown switch (stale-read, early-ack, no-fence, "
                "watch-dup, watch-skip)\n",
                v);
        return 2;
    }
    if (!latch_teeth_compiled()) {
        fprintf(stderr,
                "latchd: LATCH_TEETH=%s but this build has no teeth (configure with "
                "-DLATCH_TEETH=ON)\n",
                v);
        return 2;
    }
#ifdef LATCH_TEETH
    latch_teeth_set(bugs);
#endif
    for (unsigned bit = 1; bit != 0 && bit <= bugs; bit <<= 1) {
        if ((bugs & bit) != 0) {
            /* stderr, not latch_log: no --log-level may hide it */
            fprintf(stderr, "latchd: TEETH ENABLED: %s — this build breaks %s on purpose\n",
                    latch_teeth_name(bit), latch_teeth_breaks(bit));
        }
    }
    return 0;
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
    /* The node counts on its own; the registry's counters follow it. */
    srv_counter_add(d->std.raft_proposals_committed,
                    st.proposals_committed - srv_counter_value(d->std.raft_proposals_committed));
    srv_counter_add(d->std.raft_proposals_failed,
                    st.proposals_failed - srv_counter_value(d->std.raft_proposals_failed));
    struct store_space sp;
    if (store_space(srv_node_reader(d->node), &sp) == 0) {
        srv_gauge_set(d->std.db_size_bytes, (int64_t)(sp.file_bytes + sp.raft_file_bytes));
    }
    struct store_status ss;
    if (store_status(srv_node_reader(d->node), &ss) == 0) {
        srv_gauge_set(d->std.leases, ss.leases_count);
    }
    srv_gauge_set(d->std.watchers,
                  d->watch != NULL ? (int64_t)srv_watch_hub_watchers(d->watch) : 0);
}

/* The storage thread's timings of one work item (node.h srv_node_io). */
static void node_io(void *data, const struct srv_node_io *io)
{
    struct latchd *d = data;
    if (io->append_ns != 0) {
        srv_histogram_observe(d->std.disk_fsync_duration, (double)io->append_ns / 1e9);
    }
    if (io->apply_ns != 0) {
        srv_histogram_observe(d->std.apply_duration, (double)io->apply_ns / 1e9);
    }
}

/* One answered gRPC call of a registered method (grpc_server.h api_call_observer_fn). */
static void grpc_observed(void *data, const char *path, int grpc_status, uint64_t duration_ns)
{
    struct latchd *d = data;
    (void)grpc_status;
    srv_counter_inc(srv_metric_series(d->std.grpc_requests, path));
    srv_histogram_observe(srv_metric_series(d->std.grpc_request_duration, path),
                          (double)duration_ns / 1e9);
}

/* The Raft log's compaction and snapshots, from the node's status. */
static void snapshot_metrics_hook(void *data)
{
    struct latchd *d = data;
    if (d->node == NULL) {
        return;
    }
    struct srv_node_status st;
    srv_node_status(d->node, &st);
    srv_gauge_set(d->m_first_index, (int64_t)st.first_index);
    srv_gauge_set(d->m_snapshot_index, (int64_t)st.snapshot_index);
    srv_counter_add(d->m_snapshots_created, st.snapshots_created - d->snapshots_created_seen);
    srv_counter_add(d->m_snapshots_installed, st.snapshots_installed - d->snapshots_installed_seen);
    d->snapshots_created_seen = st.snapshots_created;
    d->snapshots_installed_seen = st.snapshots_installed;
}

static int snapshot_metrics_register(struct latchd *d)
{
    static const struct {
        enum srv_metric_type type;
        const char *name;
        const char *help;
        size_t offset;
    } defs[] = {
        {SRV_METRIC_GAUGE, "latch_raft_first_index",
         "First index still in the Raft log (the compaction point + 1).",
         offsetof(struct latchd, m_first_index)},
        {SRV_METRIC_GAUGE, "latch_raft_snapshot_index", "Index of the newest snapshot; 0: none.",
         offsetof(struct latchd, m_snapshot_index)},
        {SRV_METRIC_COUNTER, "latch_raft_snapshots_created_total",
         "Snapshots this member made of its state.", offsetof(struct latchd, m_snapshots_created)},
        {SRV_METRIC_COUNTER, "latch_raft_snapshots_installed_total",
         "Snapshots this member received from a leader and installed.",
         offsetof(struct latchd, m_snapshots_installed)},
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        struct srv_metric *m;
        int rc =
            srv_metrics_register(d->metrics, defs[i].type, defs[i].name, defs[i].help, NULL, &m);
        if (rc != 0) {
            return rc;
        }
        *(struct srv_series **)(void *)((char *)d + defs[i].offset) = srv_metric_series(m, NULL);
    }
    return srv_metrics_add_hook(d->metrics, snapshot_metrics_hook, d);
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

/* The maintenance workers hold no store reader any more: the rest closes, the node last. */
static void maint_stopped(void *data)
{
    struct latchd *d = data;
    srv_lease_keeper_stop(d->leases); /* before the node closes: lease.h */
    srv_lease_stop(d->lease_svc);     /* before the transport closes: svc_lease.h */
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

/* The client listener has drained (or never existed): Hash, HashKV and Snapshot workers
 * stop first (svc_maint.h), then the rest. */
static void clients_closed(struct api_server *s)
{
    (void)s;
    struct latchd *d = &g_latchd;
    d->clients = NULL;
    if (d->maint != NULL) {
        srv_maint_stop(d->maint, maint_stopped, d);
    } else {
        maint_stopped(d);
    }
}

static void stop(struct latchd *d)
{
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    latch_log(LATCH_LOG_INFO, "latchd: stopping");
    srv_cluster_close(d->cluster);
    if (d->publish_timer.data == d && !uv_is_closing((uv_handle_t *)&d->publish_timer)) {
        uv_close((uv_handle_t *)&d->publish_timer, NULL);
    }
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

static void transfer_done(void *data, int err)
{
    struct latchd *d = data;
    if (err == 0) {
        latch_log(LATCH_LOG_INFO, "latchd: leadership handed over before exiting");
    } else {
        latch_log(LATCH_LOG_WARN, "latchd: leadership transfer before exiting failed: %s",
                  latch_strerror(err));
    }
    stop(d);
}

/* SIGTERM, SIGINT: a leader with other voters first hands leadership to the most up-to-date
 * one (bounded by two election timeouts), so the cluster does not wait an election timeout
 * without a leader; then the process stops as before. */
static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct latchd *d = sig->data;
    if (d->stopping || d->transferring) {
        return;
    }
    struct srv_node_status st;
    if (d->node != NULL) {
        srv_node_status(d->node, &st);
    }
    if (d->node != NULL && st.role == RAFT_LEADER && srv_node_members(d->node)->count > 1) {
        uint32_t wait_ms = 2u * (d->cfg.election_timeout_ms != 0 ? d->cfg.election_timeout_ms
                                                                 : SRV_NODE_ELECTION_MS_DEFAULT);
        if (srv_node_transfer_leader(d->node, RAFT_NONE, wait_ms, transfer_done, d) == 0) {
            latch_log(LATCH_LOG_INFO, "latchd: leader: transferring leadership before exiting");
            d->transferring = true;
            return;
        }
    }
    stop(d);
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
    struct srv_maint_config mc = {.loop = &d->loop,
                                  .node = d->node,
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
        /* No server_name: one context dials every peer; the transport checks each peer's
         * certificate against the host it dialed (api_channel_config.verify_host), and the
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

/* ---- membership ---------------------------------------------------------------------- */

static bool same_urls(const struct srv_members *a,
                      const struct srv_member *ma,
                      const struct srv_members *b,
                      const struct srv_member *mb)
{
    if (ma->peer_urls_count != mb->peer_urls_count) {
        return false;
    }
    for (size_t i = 0; i < ma->peer_urls_count; i++) {
        if (strcmp(srv_member_peer_url(a, ma, i), srv_member_peer_url(b, mb, i)) != 0) {
            return false;
        }
    }
    return true;
}

/* The transport follows the membership: new members are added, moved ones updated, removed
 * ones forgotten. */
static void peers_sync(struct latchd *d, const struct srv_members *ms)
{
    for (uint32_t i = 0; d->peer != NULL && i < ms->count; i++) {
        const struct srv_member *m = &ms->m[i];
        const struct srv_member *old = srv_members_find(d->peers_known, m->id);
        if (m->id == d->member_id || m->peer_urls_count == 0 ||
            (old != NULL && srv_peer_has(d->peer, m->id) &&
             same_urls(d->peers_known, old, ms, m))) {
            continue;
        }
        const char *urls[SRV_MEMBER_URLS_MAX];
        for (size_t k = 0; k < m->peer_urls_count; k++) {
            urls[k] = srv_member_peer_url(ms, m, k);
        }
        int rc = srv_peer_has(d->peer, m->id)
                     ? srv_peer_update(d->peer, m->id, urls, m->peer_urls_count)
                     : srv_peer_add(d->peer, m->id, urls, m->peer_urls_count);
        latch_log(rc == 0 ? LATCH_LOG_INFO : LATCH_LOG_ERROR, "latchd: peer %016llx at %s%s%s",
                  (unsigned long long)m->id, urls[0], rc == 0 ? "" : ": ",
                  rc == 0 ? "" : latch_strerror(rc));
    }
    if (d->joined != NULL && !d->seen_self) {
        /* A joiner replaying the log passes through older memberships: it keeps every peer
         * it knows (the leader among them) until its own addition is applied. */
        for (uint32_t i = 0; i < ms->count; i++) {
            const struct srv_member *m = &ms->m[i];
            const char *urls[SRV_MEMBER_URLS_MAX];
            for (size_t k = 0; k < m->peer_urls_count; k++) {
                urls[k] = srv_member_peer_url(ms, m, k);
            }
            struct srv_member_attrs a = {.peer_urls = urls, .peer_urls_count = m->peer_urls_count};
            if (srv_members_find(d->peers_known, m->id) == NULL) {
                (void)srv_members_add(d->peers_known, m->id, m->learner, &a);
            } else {
                (void)srv_members_set_attrs(d->peers_known, m->id, &a);
            }
        }
        return;
    }
    for (uint32_t i = 0; d->peer != NULL && i < d->peers_known->count; i++) {
        raft_id id = d->peers_known->m[i].id;
        if (srv_members_find(ms, id) == NULL && srv_peer_has(d->peer, id)) {
            latch_log(LATCH_LOG_INFO, "latchd: peer %016llx removed", (unsigned long long)id);
            srv_peer_remove(d->peer, id);
        }
    }
    *d->peers_known = *ms;
}

static void node_members_changed(void *data, const struct srv_members *ms)
{
    struct latchd *d = data;
    peers_sync(d, ms);
    const struct srv_member *self = srv_members_find(ms, d->member_id);
    if (self != NULL) {
        d->seen_self = true;
        return;
    }
    if (d->seen_self && !d->stopping) {
        /* etcd exits too: a removed member must not serve stale data or campaign. */
        latch_log(LATCH_LOG_ERROR,
                  "latchd: this member (%016llx) was removed from the cluster; stopping. Its data "
                  "dir cannot rejoin: remove it before adding the machine again",
                  (unsigned long long)d->member_id);
        d->exit_code = 1;
        stop(d);
    }
}

static void removed_answer(void *data, bool removed)
{
    struct latchd *d = data;
    if (removed && !d->stopping) {
        latch_log(LATCH_LOG_ERROR,
                  "latchd: this member (%016llx) was removed from the cluster (the other members "
                  "no longer list it); stopping. Its data dir cannot rejoin: remove it before "
                  "adding the machine again",
                  (unsigned long long)d->member_id);
        d->exit_code = 1;
        stop(d);
    }
}

/*
 * Once a second: until this member's name is listed (a joiner starts unnamed: etcd's
 * "unstarted"), asks the leader to record it; and while it has had no leader for a few
 * election timeouts, asks another member whether it is still a member (a removed follower
 * never learns of its removal from the log: the leader stops replicating to it at once).
 */
static void on_publish_timer(uv_timer_t *t)
{
    struct latchd *d = t->data;
    if (d->node == NULL || d->cluster == NULL || d->stopping) {
        return;
    }
    const struct srv_members *ms = srv_node_members(d->node);
    const struct srv_member *self = srv_members_find(ms, d->member_id);
    if (self != NULL && strcmp(srv_member_name(ms, self), d->cfg.name) != 0) {
        (void)srv_cluster_publish(d->cluster, d->cfg.name);
    }
    struct srv_node_status st;
    srv_node_status(d->node, &st);
    uint64_t now = uv_now(&d->loop);
    if (st.leader != RAFT_NONE || d->leaderless_since == 0) {
        d->leaderless_since = st.leader != RAFT_NONE ? 0 : now;
        return;
    }
    uint64_t election =
        d->cfg.election_timeout_ms != 0 ? d->cfg.election_timeout_ms : SRV_NODE_ELECTION_MS_DEFAULT;
    if (d->seen_self && now - d->leaderless_since >= 3 * election) {
        (void)srv_cluster_check_removed(d->cluster, removed_answer, d);
    }
}

/* Asks the other members of --initial-cluster for the member list (identity.h). */
static int join_query(struct latchd *d, struct srv_identity *id, char *err, size_t cap)
{
    struct latchd_config *c = &d->cfg;
    const char *urls[64];
    size_t n = 0;
    for (size_t i = 0; i < c->members_count; i++) {
        if (strcmp(c->members[i].name, c->name) == 0) {
            continue;
        }
        for (size_t k = 0; k < c->members[i].peer_urls_count && n < 64; k++) {
            urls[n++] = c->members[i].peer_urls[k];
        }
    }
    if (d->joined == NULL) {
        d->joined = calloc(1, sizeof(*d->joined));
    }
    if (d->joined == NULL) {
        return LATCH_ENOMEM;
    }
    return srv_identity_join(urls, n, d->dial_tls,
                             (const char *const *)c->initial_advertise_peer_urls,
                             c->initial_advertise_peer_urls_count, 5000, id, d->joined, err, cap);
}

/*
 * Who this member is: read from the data dir, or made at the first start, from
 * --initial-cluster (state new) or by asking the cluster (state existing). Returns 0, or an
 * error after logging it.
 */
static int identity_start(struct latchd *d)
{
    struct latchd_config *c = &d->cfg;
    char err[512];
    int rc = srv_identity_load(c->data_dir, &d->ident, err, sizeof(err));
    if (rc == 0) {
        if (strcmp(d->ident.name, c->name) != 0) {
            latch_log(LATCH_LOG_ERROR,
                      "latchd: data dir %s belongs to member \"%s\" (%016llx) of cluster %016llx, "
                      "but --name is \"%s\"; refusing to start",
                      c->data_dir, d->ident.name, (unsigned long long)d->ident.member_id,
                      (unsigned long long)d->ident.cluster_id, c->name);
            return LATCH_EINVAL;
        }
        return 0;
    }
    if (rc != LATCH_ENOTFOUND) {
        latch_log(LATCH_LOG_ERROR, "latchd: %s", err);
        return rc;
    }
    snprintf(d->ident.name, sizeof(d->ident.name), "%s", c->name);
    char data_file[4096];
    snprintf(data_file, sizeof(data_file), "%s/raft.mdb", c->data_dir);
    bool has_data = access(data_file, F_OK) == 0;
    snprintf(data_file, sizeof(data_file), "%s/wal", c->data_dir); /* the log (store_wal.h) */
    has_data = has_data || access(data_file, F_OK) == 0;
    if (c->initial_cluster_state == LATCHD_CLUSTER_EXISTING && !has_data) {
        rc = join_query(d, &d->ident, err, sizeof(err));
        if (rc != 0) {
            latch_log(LATCH_LOG_ERROR, "latchd: joining the cluster: %s", err);
            return rc;
        }
        snprintf(d->ident.name, sizeof(d->ident.name), "%s", c->name);
        latch_log(LATCH_LOG_INFO, "latchd: joining cluster %016llx as member %016llx (%u members)",
                  (unsigned long long)d->ident.cluster_id, (unsigned long long)d->ident.member_id,
                  d->joined->count);
    } else {
        /* A new cluster (or a data dir from before member.id existed): ids from the flags. */
        d->ident.cluster_id = d->cluster_id;
        d->ident.member_id = d->member_id;
        d->ident.bootstrap_count = 0;
        for (size_t i = 0; i < c->members_count && i < RAFT_MEMBERS_MAX; i++) {
            d->ident.bootstrap[d->ident.bootstrap_count++] = d->ids[i];
        }
    }
    rc = srv_identity_save(c->data_dir, &d->ident, err, sizeof(err));
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "latchd: %s", err);
    }
    return rc;
}

/* The bootstrap voters' attributes (for the node's first membership record): from the join's
 * member list, else from --initial-cluster. */
static int identity_attrs(struct latchd *d)
{
    struct latchd_config *c = &d->cfg;
    d->attrs = calloc(d->ident.bootstrap_count + 1, sizeof(*d->attrs));
    d->attr_urls = calloc((d->ident.bootstrap_count + 1) * SRV_MEMBER_URLS_MAX, sizeof(char *));
    if (d->attrs == NULL || d->attr_urls == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < d->ident.bootstrap_count; i++) {
        raft_id id = d->ident.bootstrap[i];
        struct srv_member_attrs *a = &d->attrs[i];
        const struct srv_member *m = d->joined != NULL ? srv_members_find(d->joined, id) : NULL;
        if (m != NULL) {
            const char **urls = d->attr_urls + i * SRV_MEMBER_URLS_MAX;
            for (size_t k = 0; k < m->peer_urls_count; k++) {
                urls[k] = srv_member_peer_url(d->joined, m, k);
            }
            a->name = srv_member_name(d->joined, m);
            a->peer_urls = urls;
            a->peer_urls_count = m->peer_urls_count;
            continue;
        }
        for (size_t k = 0; k < c->members_count; k++) {
            if (d->ids[k] == id) {
                a->name = c->members[k].name;
                a->peer_urls = (const char *const *)c->members[k].peer_urls;
                a->peer_urls_count = c->members[k].peer_urls_count;
            }
        }
    }
    return 0;
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

    int rc = tls_start(d);
    if (rc != 0) {
        return rc;
    }
    d->peers_known = calloc(1, sizeof(*d->peers_known));
    if (d->peers_known == NULL) {
        return LATCH_ENOMEM;
    }
    srv_members_init(d->peers_known);
    rc = identity_start(d);
    rc = rc != 0 ? rc : identity_attrs(d);
    if (rc != 0) {
        return rc;
    }
    d->member_id = d->ident.member_id;
    d->cluster_id = d->ident.cluster_id;
    latch_log(LATCH_LOG_INFO, "latchd: member %s id %016llx, cluster %016llx, data dir %s", c->name,
              (unsigned long long)d->member_id, (unsigned long long)d->cluster_id, c->data_dir);
    rc = srv_metrics_new(&d->metrics);
    if (rc == 0) {
        rc = srv_metrics_std_register(d->metrics, &d->std);
    }
    if (rc == 0) {
        rc = srv_metrics_add_hook(d->metrics, metrics_hook, d);
    }
    if (rc == 0) {
        rc = snapshot_metrics_register(d);
    }
    if (rc != 0) {
        return rc;
    }

    struct srv_node_config nc;
    srv_node_config_init(&nc);
    nc.id = d->member_id;
    nc.store.dir = c->data_dir;
    nc.store.quota_bytes = c->quota_backend_bytes;
    nc.initial_voters = d->ident.bootstrap;
    nc.initial_voters_count = d->ident.bootstrap_count;
    nc.initial_attrs = d->attrs;
    nc.members_changed = node_members_changed;
    nc.tick_ms = c->heartbeat_interval_ms;
    nc.election_ms = c->election_timeout_ms;
    nc.snapshot_count = c->snapshot_count;
    nc.snapshot_catchup_entries = snapshot_catchup_entries();
    nc.data = d;
    nc.send = node_send;
    nc.leader = node_leader;
    nc.applied = node_applied;
    nc.before_compact = node_before_compact;
    nc.io = node_io;
    char err[256];
    rc = srv_node_new(&d->loop, &nc, &d->node, err, sizeof(err));
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "latchd: %s", err);
        return rc;
    }
    struct srv_watch_hub_config wc = {
        .node = d->node, .cluster_id = d->cluster_id, .member_id = d->member_id};
    wc.progress_ms = watch_progress_ms();
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
                                 .snapshot_open = peer_snapshot_open,
                                 .snapshot_recv_begin = peer_snapshot_recv_begin,
                                 .snapshot_recv_end = peer_snapshot_recv_end,
                                 .snapshot_recv_abort = peer_snapshot_recv_abort,
                                 .data = d,
                                 .tls = d->dial_tls};
    rc = srv_peer_new(&d->loop, &pc, &d->peer);
    if (rc == 0 && d->joined == NULL &&
        srv_members_find(srv_node_members(d->node), d->member_id) == NULL) {
        /* A joiner restarted before its own addition was applied: its record lists older
         * members only, so it asks the cluster for the current ones again (best effort). */
        struct srv_identity scratch = {0};
        char err2[512];
        int q = join_query(d, &scratch, err2, sizeof(err2));
        if (q != 0 || scratch.cluster_id != d->cluster_id) {
            free(d->joined);
            d->joined = NULL;
        }
        if (q == LATCH_ENOTMEMBER && scratch.cluster_id == d->cluster_id) {
            latch_log(LATCH_LOG_ERROR,
                      "latchd: this member (%016llx) was removed from the cluster (the other "
                      "members no longer list it); not starting",
                      (unsigned long long)d->member_id);
            return LATCH_ENOTMEMBER;
        }
    }
    if (rc == 0) {
        /* The peers of the membership recorded (or bootstrapped), plus, for a joiner, the
         * members the cluster listed (its own record catches up from the log). */
        peers_sync(d, srv_node_members(d->node));
        if (d->joined != NULL) {
            peers_sync(d, d->joined);
        }
        d->seen_self = srv_members_find(srv_node_members(d->node), d->member_id) != NULL;
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
        api_server_set_observer(d->clients, grpc_observed, d); /* per-method /metrics */
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
        struct srv_v3conc_config vc = {.node = d->node, .kv = d->kv, .keeper = d->leases};
        rc = srv_v3conc_register(d->clients, &vc, &d->v3conc);
    }
    if (rc == 0) {
        /* etcd's minimum TTL: 1.5 election timeouts, rounded up to seconds (2 s by default). */
        struct srv_lease_svc_config lsc = {.node = d->node,
                                           .keeper = d->leases,
                                           .peer = d->peer, /* forwarding to the leader */
                                           .loop = &d->loop,
                                           .cluster_id = d->cluster_id,
                                           .member_id = d->member_id,
                                           .min_ttl = (3 * (int64_t)nc.election_ms + 1999) / 2000};
        rc = srv_lease_register(d->clients, &lsc, &d->lease_svc);
    }
    if (rc == 0) {
        rc = srv_lease_register_peer(d->peers, d->lease_svc); /* a follower's lease requests */
    }
    if (rc == 0) {
        struct srv_latch_config xc = {.loop = &d->loop,
                                      .node = d->node,
                                      .kv = d->kv,
                                      .keeper = d->leases,
                                      .hub = d->watch,
                                      .cluster_id = d->cluster_id,
                                      .member_id = d->member_id,
                                      .min_ttl = (3 * (int64_t)nc.election_ms + 1999) / 2000};
        rc = srv_latch_register(d->clients, &xc, &d->latch);
    }
    if (rc == 0) {
        struct srv_watch_svc_config wsc = {.node = d->node, .hub = d->watch};
        rc = srv_watch_svc_register(d->clients, &wsc, &d->watch_svc);
    }
    if (rc == 0) {
        rc = maint_register(d);
    }
    if (rc == 0) {
        struct srv_cluster_config cc = {
            .loop = &d->loop,
            .node = d->node,
            .cluster_id = d->cluster_id,
            .member_id = d->member_id,
            .client_urls = (const char *const *)c->advertise_client_urls,
            .client_urls_count = c->advertise_client_urls_count,
            .peer_client_urls = peer_client_urls,
            .data = d,
            .peer_tls = d->dial_tls,
            .bootstrap_voters = d->ident.bootstrap,
            .bootstrap_voters_count = d->ident.bootstrap_count,
            .move_leader_timeout_ms = 5000u + 2u * nc.election_ms,
        };
        rc = srv_cluster_register(d->clients, d->peers, &cc, &d->cluster);
    }
    if (rc == 0) {
        uv_timer_init(&d->loop, &d->publish_timer);
        d->publish_timer.data = d;
        uv_timer_start(&d->publish_timer, on_publish_timer, 200, 1000);
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
    if (teeth_setup() != 0) {
        latchd_config_free(&d->cfg);
        return 2;
    }
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
    srv_v3conc_free(d->v3conc); /* before the KV service it proposes through */
    srv_latch_free(d->latch);   /* likewise */
    srv_kv_free(d->kv);
    srv_lease_free(d->lease_svc);
    srv_lease_keeper_free(d->leases);
    srv_watch_svc_free(d->watch_svc);
    srv_maint_free(d->maint);
    srv_cluster_free(d->cluster);
    free(d->attrs);
    free(d->attr_urls);
    free(d->joined);
    free(d->peers_known);
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
    return rc != 0 || d->exit_code != 0 ? 1 : closed != 0;
}
