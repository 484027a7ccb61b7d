/*
 * lb_locks.c — latch-bench's workloads on latch's native API (latch.v1; see latch_bench.h):
 *
 * lock: every request slot (--clients) opens its own session (SessionOpen, --session-ttl,
 * default 600 s, closed at the end), then each operation is one cycle on the one lock
 * --lock-name: Acquire (waiting on the server) -> Release of the token it got. All slots
 * contend for the same lock. Recorded: Acquire latency (sent -> granted; the main figures),
 * the cycle (Acquire sent -> Release answered), and the hand-off: for a grant whose Acquire
 * was waiting when the previous holder released, the time from that Release's send to this
 * grant. Grants arrive in the order the server made them (a grant needs the previous holder's
 * Release, which is sent when that grant arrives), so the run checks that each grant's
 * fencing token exceeds the previous one; one that does not is an error.
 *
 * failover: --total rounds (default 3), each on a fresh election: candidate A opens a session
 * with TTL --session-ttl (default 2 s, the server's minimum) and wins Campaign; an Observe
 * stream and candidate B (a long session; Campaign blocks) follow; A's session is then never
 * renewed, so it expires TTL after its SessionOpen was sent (the last renewal). Recorded per
 * round: B's Campaign answer and the Observe message naming B, each as time past the nominal
 * expiry (SessionOpen sent + granted TTL), and the longest last renewal -> Campaign answer.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_wire.h"
#include "latch/v1/latch.pb-c.h"
#include "latch_assert.h"
#include "latch_bench.h"
#include "latch_error.h"

#define LB_LOCK_SETUP_NS     (30ull * 1000000000ull)
#define LB_LOCK_TTL_DEFAULT  600 /* s: the lock workload's sessions outlive any run */
#define LB_FAILOVER_TTL_DEF  2   /* s: the lost session's TTL (the server's minimum) */
#define LB_FAILOVER_WAIT_NS  (60ull * 1000000000ull) /* past the TTL, per round */
#define LB_PATH_SESSION_OPEN "/latch.v1.Latch/SessionOpen"
#define LB_PATH_SESSION_CLOS "/latch.v1.Latch/SessionClose"

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static bool setup_over(struct lb_bench *b)
{
    return b->setup_pending == 0;
}

/* The unpacked answer of a unary call, or NULL after recording an error. */
static ProtobufCMessage *answer(struct lb_bench *b,
                                const char *what,
                                int status,
                                const char *message,
                                const ProtobufCMessageDescriptor *d,
                                const uint8_t *resp,
                                size_t len)
{
    if (status != 0) {
        lb_error(b, "%s failed: %s (%d): %s", what, api_grpc_status_name(status), status, message);
        return NULL;
    }
    ProtobufCMessage *m = lb_unpack(b, d, resp, len);
    if (m == NULL) {
        lb_error(b, "%s: the response does not parse (%zu bytes)", what, len);
    }
    return m;
}

/* ---- sessions ------------------------------------------------------------------------- */

struct session_req {
    struct lb_bench *b;
    int64_t *out;     /* the session id goes here */
    int64_t *ttl_out; /* the granted TTL (may be NULL) */
};

static void open_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct session_req *q = data;
    struct lb_bench *b = q->b;
    b->setup_pending--;
    Latch__V1__SessionOpenResponse *r = (Latch__V1__SessionOpenResponse *)answer(
        b, "SessionOpen", status, message, &latch__v1__session_open_response__descriptor, resp,
        len);
    if (r != NULL && (r->session == 0 || r->ttl_seconds <= 0)) {
        lb_error(b, "SessionOpen: session %" PRId64 " with TTL %" PRId64, r->session,
                 r->ttl_seconds);
    } else if (r != NULL) {
        *q->out = r->session;
        if (q->ttl_out != NULL) {
            *q->ttl_out = r->ttl_seconds;
        }
    }
    lb_unpacked_free(b, r != NULL ? &r->base : NULL);
    free(q);
}

static int
session_open(struct lb_bench *b, struct lb_conn *c, int64_t ttl, int64_t *out, int64_t *ttl_out)
{
    struct session_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return LATCH_ENOMEM;
    }
    *q = (struct session_req){.b = b, .out = out, .ttl_out = ttl_out};
    Latch__V1__SessionOpenRequest r = LATCH__V1__SESSION_OPEN_REQUEST__INIT;
    r.ttl_seconds = ttl;
    size_t n = lb_pack(b, &r.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    int rc = api_channel_unary(c->ch, LB_PATH_SESSION_OPEN, b->req, n, &co, open_done, q);
    if (rc != 0) {
        free(q);
        return rc;
    }
    b->setup_pending++;
    return 0;
}

static void close_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    (void)resp;
    (void)len;
    struct lb_bench *b = data;
    b->setup_pending--;
    if (status != 0) {
        lb_error(b, "SessionClose failed: %s (%d): %s", api_grpc_status_name(status), status,
                 message);
    }
}

static int session_close(struct lb_bench *b, struct lb_conn *c, int64_t session)
{
    Latch__V1__SessionCloseRequest r = LATCH__V1__SESSION_CLOSE_REQUEST__INIT;
    r.session = session;
    size_t n = lb_pack(b, &r.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    int rc = api_channel_unary(c->ch, LB_PATH_SESSION_CLOS, b->req, n, &co, close_done, b);
    if (rc == 0) {
        b->setup_pending++;
    }
    return rc;
}

/* The lock or election name: --lock-name, else one unique to this run. */
static void name_make(struct lb_bench *b)
{
    if (b->o.lock_name != NULL) {
        snprintf(b->lock_name, sizeof(b->lock_name), "%s", b->o.lock_name);
    } else {
        snprintf(b->lock_name, sizeof(b->lock_name), "bench-%016" PRIx64, b->run_tag);
    }
}

/* ---- lock ----------------------------------------------------------------------------- */

int lb_lock_setup(struct lb_bench *b)
{
    name_make(b);
    int64_t ttl = b->o.session_ttl_s > 0 ? b->o.session_ttl_s : LB_LOCK_TTL_DEFAULT;
    for (unsigned i = 0; i < b->o.clients; i++) {
        struct lb_slot *s = &b->slots[i];
        int rc = session_open(b, s->c, ttl, &s->lease_id, i == 0 ? &b->session_ttl_s : NULL);
        if (rc != 0) {
            lb_error(b, "cannot start SessionOpen: %s", latch_strerror(rc));
            break;
        }
    }
    if (!lb_run_until(b, setup_over, (b->o.timeout_ms + 5000) * 1000000ull)) {
        lb_error(b, "SessionOpen: %" PRIu64 " answers missing", b->setup_pending);
        return LATCH_ETIMEDOUT;
    }
    return b->errors == 0 ? 0 : LATCH_EUNAVAILABLE;
}

void lb_lock_finish(struct lb_bench *b)
{
    for (unsigned i = 0; b->slots != NULL && i < b->o.clients; i++) {
        struct lb_slot *s = &b->slots[i];
        if (s->lease_id != 0 && session_close(b, s->c, s->lease_id) != 0) {
            lb_error(b, "cannot start SessionClose");
        }
    }
    if (!lb_run_until(b, setup_over, (b->o.timeout_ms + 5000) * 1000000ull)) {
        lb_error(b, "SessionClose: %" PRIu64 " answers missing", b->setup_pending);
    }
}

static void
release_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    uint64_t now = now_ns();
    Latch__V1__ReleaseResponse *r = (Latch__V1__ReleaseResponse *)answer(
        b, "Release", status, message, &latch__v1__release_response__descriptor, resp, len);
    lb_unpacked_free(b, r != NULL ? &r->base : NULL);
    s->token = 0;
    lb_slot_done(s, r != NULL, now);
}

static void
acquire_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    uint64_t now = now_ns();
    Latch__V1__AcquireResponse *r = (Latch__V1__AcquireResponse *)answer(
        b, "Acquire", status, message, &latch__v1__acquire_response__descriptor, resp, len);
    int64_t token = r != NULL ? r->token : 0;
    lb_unpacked_free(b, r != NULL ? &r->base : NULL);
    if (r == NULL) {
        lb_slot_done(s, false, now);
        return;
    }
    if (token <= b->last_token) {
        lb_error(b, "Acquire: token %" PRId64 " does not exceed the previous grant's %" PRId64,
                 token, b->last_token);
    }
    latch_hist_record(&b->hist, now > s->acq_t0_ns ? now - s->acq_t0_ns : 0);
    if (b->last_release_ns != 0 && s->acq_t0_ns < b->last_release_ns) {
        latch_hist_record(&b->handoff_hist, now - b->last_release_ns); /* it was waiting */
    }
    b->last_token = token > b->last_token ? token : b->last_token;
    s->token = token;
    /* Release at once: the grant is over when the Release leaves. */
    Latch__V1__ReleaseRequest q = LATCH__V1__RELEASE_REQUEST__INIT;
    q.lock = b->lock_name;
    q.token = token;
    size_t n = lb_pack(b, &q.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    b->last_release_ns = now_ns();
    int rc =
        api_channel_unary(s->c->ch, "/latch.v1.Latch/Release", b->req, n, &co, release_done, s);
    if (rc != 0) {
        lb_error(b, "cannot start Release: %s", latch_strerror(rc));
        lb_slot_done(s, false, now);
    }
}

int lb_lock_start(struct lb_slot *s)
{
    struct lb_bench *b = s->b;
    Latch__V1__AcquireRequest q = LATCH__V1__ACQUIRE_REQUEST__INIT;
    q.lock = b->lock_name;
    q.session = s->lease_id;
    size_t n = lb_pack(b, &q.base);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    s->acq_t0_ns = now_ns();
    return api_channel_unary(s->c->ch, "/latch.v1.Latch/Acquire", b->req, n, &co, acquire_done, s);
}

/* ---- failover ------------------------------------------------------------------------- */

struct fo_round {
    struct lb_bench *b;
    int64_t sess_a, sess_b, ttl_a, ttl_b;
    int64_t token_a, token_b;
    bool a_won, b_won, observed_a, observed_b, observe_done;
    uint64_t t_b_won, t_observed_b;
    struct api_ccall *observe;
};

static struct fo_round g_round; /* one round at a time */

static bool a_won(struct lb_bench *b)
{
    (void)b;
    return g_round.a_won || b->errors > 0;
}

static bool observing_a(struct lb_bench *b)
{
    return g_round.observed_a || g_round.observe_done || b->errors > 0;
}

static bool round_over(struct lb_bench *b)
{
    return (g_round.b_won && g_round.observed_b) || b->errors > 0;
}

static bool observe_over(struct lb_bench *b)
{
    (void)b;
    return g_round.observe_done;
}

static void
campaign_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    bool *won = data;
    struct lb_bench *b = g_round.b;
    uint64_t now = now_ns();
    Latch__V1__CampaignResponse *r = (Latch__V1__CampaignResponse *)answer(
        b, "Campaign", status, message, &latch__v1__campaign_response__descriptor, resp, len);
    if (r != NULL) {
        if (won == &g_round.a_won) {
            g_round.token_a = r->token;
        } else {
            g_round.token_b = r->token;
            g_round.t_b_won = now;
            if (r->token <= g_round.token_a) {
                lb_error(b,
                         "Campaign: the new leader's token %" PRId64
                         " does not exceed the old one's %" PRId64,
                         r->token, g_round.token_a);
            }
        }
        *won = true;
    }
    lb_unpacked_free(b, r != NULL ? &r->base : NULL);
}

static int campaign(struct lb_bench *b, struct lb_conn *c, int64_t session, bool *won, uint64_t ms)
{
    Latch__V1__CampaignRequest q = LATCH__V1__CAMPAIGN_REQUEST__INIT;
    q.election = b->lock_name;
    q.session = session;
    q.value = (ProtobufCBinaryData){1, (uint8_t *)(won == &g_round.a_won ? "a" : "b")};
    size_t n = lb_pack(b, &q.base);
    struct api_call_opts co = {.timeout_ms = ms};
    return api_channel_unary(c->ch, "/latch.v1.Latch/Campaign", b->req, n, &co, campaign_done, won);
}

static void observe_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    (void)data;
    struct lb_bench *b = g_round.b;
    uint64_t now = now_ns();
    Latch__V1__LeaderResponse *r = (Latch__V1__LeaderResponse *)lb_unpack(
        b, &latch__v1__leader_response__descriptor, msg, len);
    if (r == NULL) {
        lb_error(b, "Observe: a response does not parse (%zu bytes)", len);
        return;
    }
    if (r->session == g_round.sess_a && r->token > 0) {
        g_round.observed_a = true;
    } else if (r->session == g_round.sess_b && g_round.sess_b != 0 && !g_round.observed_b) {
        g_round.observed_b = true;
        g_round.t_observed_b = now;
    }
    lb_unpacked_free(b, &r->base);
}

static void observe_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    (void)data;
    g_round.observe_done = true;
    g_round.observe = NULL;
    if (!g_round.b->closing) {
        lb_error(g_round.b, "Observe ended: %s (%d): %s", api_grpc_status_name(status), status,
                 message);
    }
}

/* One round on election b->lock_name; returns false when it failed (error recorded). */
static bool failover_round(struct lb_bench *b, unsigned round)
{
    struct lb_conn *ca = &b->conns[0];
    struct lb_conn *co_ = &b->conns[1 % b->o.conns];
    struct lb_conn *cb_ = &b->conns[2 % b->o.conns];
    memset(&g_round, 0, sizeof(g_round));
    g_round.b = b;
    b->closing = false;
    char base[LB_NAME_MAX + 1];
    if (b->o.lock_name != NULL) {
        snprintf(base, sizeof(base), "%s", b->o.lock_name);
    } else {
        snprintf(base, sizeof(base), "bench-%016" PRIx64, b->run_tag);
    }
    snprintf(b->lock_name, sizeof(b->lock_name), "%s-%u", base, round);
    uint64_t bound = (b->o.timeout_ms + 5000) * 1000000ull;

    /* A: its session (the last renewal is when this request leaves) and leadership */
    int64_t ttl = b->o.session_ttl_s > 0 ? b->o.session_ttl_s : LB_FAILOVER_TTL_DEF;
    uint64_t t_renewal = now_ns();
    if (session_open(b, ca, ttl, &g_round.sess_a, &g_round.ttl_a) != 0 ||
        !lb_run_until(b, setup_over, bound) || b->errors > 0) {
        lb_error(b, "failover: candidate A has no session");
        return false;
    }
    b->session_ttl_s = g_round.ttl_a;
    if (campaign(b, ca, g_round.sess_a, &g_round.a_won, b->o.timeout_ms) != 0 ||
        !lb_run_until(b, a_won, bound) || b->errors > 0) {
        lb_error(b, "failover: candidate A did not win its Campaign");
        return false;
    }
    /* the Observe stream, once it shows A */
    Latch__V1__ObserveRequest oq = LATCH__V1__OBSERVE_REQUEST__INIT;
    oq.election = b->lock_name;
    size_t n = lb_pack(b, &oq.base);
    struct api_ccall_callbacks cbs = {.on_message = observe_message, .on_done = observe_done};
    if (api_ccall_start(co_->ch, "/latch.v1.Latch/Observe", NULL, &cbs, NULL, &g_round.observe) !=
            0 ||
        api_ccall_send(g_round.observe, b->req, n, NULL) != 0 ||
        api_ccall_close_send(g_round.observe) != 0) {
        lb_error(b, "failover: cannot start Observe");
        return false;
    }
    if (!lb_run_until(b, observing_a, bound) || !g_round.observed_a) {
        lb_error(b, "failover: Observe did not show candidate A");
        return false;
    }
    /* B: a long session, then Campaign (waits for A's session to expire) */
    if (session_open(b, cb_, LB_LOCK_TTL_DEFAULT, &g_round.sess_b, &g_round.ttl_b) != 0 ||
        !lb_run_until(b, setup_over, bound) || b->errors > 0) {
        lb_error(b, "failover: candidate B has no session");
        return false;
    }
    uint64_t wait_ms = (uint64_t)g_round.ttl_a * 1000u + LB_FAILOVER_WAIT_NS / 1000000u;
    if (campaign(b, cb_, g_round.sess_b, &g_round.b_won, wait_ms) != 0) {
        lb_error(b, "failover: cannot start B's Campaign");
        return false;
    }
    if (!lb_run_until(b, round_over, wait_ms * 1000000ull + bound) || b->errors > 0) {
        lb_error(b,
                 "failover: no new leader within the TTL + %" PRIu64 " s (Campaign %s, Observe %s)",
                 (uint64_t)(LB_FAILOVER_WAIT_NS / 1000000000u), g_round.b_won ? "won" : "waiting",
                 g_round.observed_b ? "saw it" : "did not see it");
        return false;
    }
    uint64_t expiry = t_renewal + (uint64_t)g_round.ttl_a * 1000000000ull;
    if (g_round.t_b_won < expiry) {
        lb_error(b, "failover: B won %.3f ms before A's session could have expired",
                 (double)(expiry - g_round.t_b_won) / 1e6);
        return false;
    }
    latch_hist_record(&b->hist, g_round.t_b_won - expiry);
    latch_hist_record(&b->observe_hist,
                      g_round.t_observed_b > expiry ? g_round.t_observed_b - expiry : 0);
    uint64_t from_renewal = g_round.t_b_won - t_renewal;
    if (from_renewal > b->from_renewal_max_ns) {
        b->from_renewal_max_ns = from_renewal;
    }
    return true;
}

/* Ends the round's Observe and B's session (A's expired). */
static void failover_cleanup(struct lb_bench *b)
{
    b->closing = true;
    if (g_round.observe != NULL) {
        api_ccall_cancel(g_round.observe);
        lb_run_until(b, observe_over, LB_LOCK_SETUP_NS);
    }
    if (g_round.sess_b != 0) {
        struct lb_conn *cb_ = &b->conns[2 % b->o.conns];
        if (session_close(b, cb_, g_round.sess_b) == 0) {
            lb_run_until(b, setup_over, LB_LOCK_SETUP_NS);
        }
    }
    b->closing = false;
}

void lb_failover_run(struct lb_bench *b)
{
    b->t_start_ns = b->t_last_ns = now_ns();
    for (uint64_t r = 0; r < b->o.total && b->errors == 0; r++) {
        bool ok = failover_round(b, (unsigned)r);
        failover_cleanup(b);
        b->started++;
        b->done++;
        b->t_last_ns = now_ns();
        if (!ok) {
            break;
        }
    }
}
