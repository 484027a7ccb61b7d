/*
 * lb_streams.c — latch-bench's streaming workloads (see latch_bench.h).
 *
 * watch: --watchers Watch calls, each with one watch on [prefix, prefix_end), created before
 * the timed part; the writers' values carry their send time and the run's tag in the first 16
 * bytes, so each event gives a put -> event latency without any lookup. Every watcher must
 * see every acknowledged put: the run waits --watch-wait for the last events.
 *
 * lease: one lease per request slot (LeaseGrant with --lease-ttl before the timed part), one
 * LeaseKeepAlive call per connection; a slot's request is one keep-alive of its own lease,
 * matched to its answer by the lease ID (the answers of one stream need not come in order).
 * The leases are revoked at the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_wire.h"
#include "latch_assert.h"
#include "latch_bench.h"
#include "latch_error.h"

#define LB_SETUP_TIMEOUT_NS (30ull * 1000000000ull)

/* ---- watch ------------------------------------------------------------------------------- */

static void watch_event(struct lb_bench *b, const Mvccpb__Event *ev, uint64_t now)
{
    if (ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT || ev->kv == NULL || ev->kv->value.len < 16) {
        b->foreign_events++;
        return;
    }
    uint64_t t0, tag;
    memcpy(&t0, ev->kv->value.data, 8);
    memcpy(&tag, ev->kv->value.data + 8, 8);
    if (tag != b->run_tag) {
        b->foreign_events++;
        return;
    }
    b->events++;
    latch_hist_record(&b->hist, now > t0 ? now - t0 : 0);
}

static void watch_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct lb_watcher *w = data;
    struct lb_bench *b = w->b;
    uint64_t now = uv_hrtime();
    Etcdserverpb__WatchResponse *r = (Etcdserverpb__WatchResponse *)lb_unpack(
        b, &etcdserverpb__watch_response__descriptor, msg, len);
    if (r == NULL) {
        lb_error(b, "Watch: a response does not parse (%zu bytes)", len);
        return;
    }
    if (r->created && !w->created) {
        w->created = true;
        b->watchers_created++;
    }
    if (r->canceled) {
        lb_error(b, "Watch: the watch was canceled: %s", r->cancel_reason);
    }
    for (size_t i = 0; i < r->n_events; i++) {
        watch_event(b, r->events[i], now);
    }
    lb_unpacked_free(b, &r->base);
}

static void watch_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct lb_watcher *w = data;
    struct lb_bench *b = w->b;
    w->done = true;
    w->call = NULL;
    b->watchers_done++;
    if (!b->closing) {
        lb_error(b, "Watch call ended: %s (%d): %s", api_grpc_status_name(status), status, message);
    }
}

static bool watchers_created(struct lb_bench *b)
{
    return b->watchers_created + b->watchers_done >= b->o.watchers;
}

static bool watchers_done(struct lb_bench *b)
{
    return b->watchers_done >= b->o.watchers;
}

static int watch_start(struct lb_bench *b, struct lb_watcher *w, struct lb_conn *c)
{
    size_t plen = strlen(b->o.key_prefix);
    uint8_t end[LB_KEY_SIZE_MAX > 256 ? 256 : LB_KEY_SIZE_MAX];
    if (plen > sizeof(end)) {
        return LATCH_EINVAL;
    }
    memcpy(end, b->o.key_prefix, plen);
    size_t elen = plen;
    while (elen > 0 && end[elen - 1] == 0xff) {
        elen--;
    }
    if (elen == 0) {
        end[0] = 0; /* a prefix of 0xff bytes only: everything from key on */
        elen = 1;
    } else {
        end[elen - 1]++;
    }
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = (ProtobufCBinaryData){plen, (uint8_t *)(uintptr_t)b->o.key_prefix};
    cr.range_end = (ProtobufCBinaryData){elen, end};
    Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
    wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wr.create_request = &cr;
    size_t n = lb_pack(b, &wr.base);
    struct api_ccall_callbacks cbs = {.on_message = watch_message, .on_done = watch_done};
    int rc = api_ccall_start(c->ch, "/etcdserverpb.Watch/Watch", NULL, &cbs, w, &w->call);
    if (rc == 0) {
        rc = api_ccall_send(w->call, b->req, n, NULL);
    }
    return rc;
}

int lb_watch_setup(struct lb_bench *b)
{
    b->watchers = calloc(b->o.watchers, sizeof(*b->watchers));
    if (b->watchers == NULL) {
        return LATCH_ENOMEM;
    }
    for (unsigned i = 0; i < b->o.watchers; i++) {
        struct lb_watcher *w = &b->watchers[i];
        w->b = b;
        int rc = watch_start(b, w, &b->conns[(b->o.clients + i) % b->o.conns]);
        if (rc != 0) {
            w->done = true;
            b->watchers_done++;
            lb_error(b, "cannot start a Watch call: %s", latch_strerror(rc));
            return rc;
        }
    }
    if (!lb_run_until(b, watchers_created, LB_SETUP_TIMEOUT_NS)) {
        lb_error(b, "watch: %u of %u watchers not created within 30 s",
                 b->o.watchers - b->watchers_created, b->o.watchers);
        return LATCH_ETIMEDOUT;
    }
    return b->errors == 0 ? 0 : LATCH_EUNAVAILABLE;
}

void lb_watch_finish(struct lb_bench *b)
{
    b->closing = true;
    for (unsigned i = 0; b->watchers != NULL && i < b->o.watchers; i++) {
        if (!b->watchers[i].done) {
            api_ccall_cancel(b->watchers[i].call);
        }
    }
    if (b->watchers != NULL && !lb_run_until(b, watchers_done, LB_SETUP_TIMEOUT_NS)) {
        lb_error(b, "watch: calls did not end after a cancel");
    }
}

/* ---- lease ------------------------------------------------------------------------------- */

static void grant_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    struct lb_slot *s = data;
    struct lb_bench *b = s->b;
    b->setup_pending--;
    if (status != 0) {
        lb_error(b, "LeaseGrant failed: %s (%d): %s", api_grpc_status_name(status), status,
                 message);
        return;
    }
    Etcdserverpb__LeaseGrantResponse *r = (Etcdserverpb__LeaseGrantResponse *)lb_unpack(
        b, &etcdserverpb__lease_grant_response__descriptor, resp, len);
    if (r == NULL || r->id == 0 || r->error[0] != '\0') {
        lb_error(b, "LeaseGrant: a bad response (%s)", r != NULL ? r->error : "does not parse");
    } else {
        s->lease_id = r->id;
    }
    lb_unpacked_free(b, r != NULL ? &r->base : NULL);
}

static void
revoke_done(int status, const char *message, const uint8_t *resp, size_t len, void *data)
{
    (void)resp;
    (void)len;
    struct lb_bench *b = data;
    b->setup_pending--;
    if (status != 0) {
        lb_error(b, "LeaseRevoke failed: %s (%d): %s", api_grpc_status_name(status), status,
                 message);
    }
}

static bool setup_over(struct lb_bench *b)
{
    return b->setup_pending == 0;
}

static int compare_ref(const void *x, const void *y)
{
    const struct lb_lease_ref *a = x, *c = y;
    return a->id < c->id ? -1 : (a->id > c->id ? 1 : 0);
}

static void keepalive_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct lb_conn *c = data;
    struct lb_bench *b = c->b;
    uint64_t now = uv_hrtime();
    Etcdserverpb__LeaseKeepAliveResponse *r = (Etcdserverpb__LeaseKeepAliveResponse *)lb_unpack(
        b, &etcdserverpb__lease_keep_alive_response__descriptor, msg, len);
    if (r == NULL) {
        lb_error(b, "LeaseKeepAlive: a response does not parse (%zu bytes)", len);
        return;
    }
    struct lb_lease_ref key = {.id = r->id};
    struct lb_lease_ref *ref = bsearch(&key, b->lease_refs, b->o.clients, sizeof(key), compare_ref);
    struct lb_slot *s = ref != NULL ? &b->slots[ref->slot] : NULL;
    if (s == NULL || !s->busy || s->c != c) {
        lb_error(b, "LeaseKeepAlive: an answer for lease %" PRId64 " that was not asked", r->id);
    } else {
        if (r->ttl <= 0) {
            lb_error(b, "LeaseKeepAlive: lease %" PRId64 " is unknown or expired (TTL %" PRId64 ")",
                     r->id, r->ttl);
        }
        lb_slot_done(s, r->ttl > 0, now);
    }
    lb_unpacked_free(b, &r->base);
}

static void keepalive_done(struct api_ccall *call, int status, const char *message, void *data)
{
    (void)call;
    struct lb_conn *c = data;
    struct lb_bench *b = c->b;
    c->stream = NULL;
    c->stream_done = true;
    if (b->closing) {
        return;
    }
    lb_error(b, "LeaseKeepAlive call ended: %s (%d): %s", api_grpc_status_name(status), status,
             message);
    uint64_t now = uv_hrtime();
    for (unsigned i = 0; i < b->o.clients; i++) { /* their answers will never come */
        if (b->slots[i].c == c && b->slots[i].busy) {
            lb_error(b, "LeaseKeepAlive: no answer for lease %" PRId64, b->slots[i].lease_id);
            lb_slot_done(&b->slots[i], false, now);
        }
    }
}

int lb_lease_start(struct lb_slot *s)
{
    struct lb_bench *b = s->b;
    if (s->c->stream == NULL) {
        return LATCH_ESTATE;
    }
    Etcdserverpb__LeaseKeepAliveRequest k = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    k.id = s->lease_id;
    size_t n = lb_pack(b, &k.base);
    return api_ccall_send(s->c->stream, b->req, n, NULL);
}

static int lease_grant_all(struct lb_bench *b)
{
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    for (unsigned i = 0; i < b->o.clients; i++) {
        Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
        g.ttl = b->o.lease_ttl_s;
        size_t n = lb_pack(b, &g.base);
        struct lb_slot *s = &b->slots[i];
        int rc = api_channel_unary(s->c->ch, "/etcdserverpb.Lease/LeaseGrant", b->req, n, &co,
                                   grant_done, s);
        if (rc != 0) {
            lb_error(b, "cannot start LeaseGrant: %s", latch_strerror(rc));
            break;
        }
        b->setup_pending++;
    }
    if (!lb_run_until(b, setup_over, (b->o.timeout_ms + 5000) * 1000000ull)) {
        lb_error(b, "LeaseGrant: %" PRIu64 " answers missing", b->setup_pending);
        return LATCH_ETIMEDOUT;
    }
    return b->errors == 0 ? 0 : LATCH_EUNAVAILABLE;
}

int lb_lease_setup(struct lb_bench *b)
{
    b->lease_refs = calloc(b->o.clients, sizeof(*b->lease_refs));
    if (b->lease_refs == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = lease_grant_all(b);
    if (rc != 0) {
        return rc;
    }
    for (unsigned i = 0; i < b->o.clients; i++) {
        b->lease_refs[i] = (struct lb_lease_ref){.id = b->slots[i].lease_id, .slot = i};
    }
    qsort(b->lease_refs, b->o.clients, sizeof(*b->lease_refs), compare_ref);
    for (unsigned i = 0; i < b->o.conns; i++) {
        struct lb_conn *c = &b->conns[i];
        if (c->slots == 0) {
            continue;
        }
        struct api_ccall_callbacks cbs = {.on_message = keepalive_message,
                                          .on_done = keepalive_done};
        rc =
            api_ccall_start(c->ch, "/etcdserverpb.Lease/LeaseKeepAlive", NULL, &cbs, c, &c->stream);
        if (rc != 0) {
            lb_error(b, "cannot start LeaseKeepAlive: %s", latch_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static bool streams_over(struct lb_bench *b)
{
    for (unsigned i = 0; i < b->o.conns; i++) {
        if (b->conns[i].stream != NULL) {
            return false;
        }
    }
    return true;
}

void lb_lease_finish(struct lb_bench *b)
{
    b->closing = true;
    for (unsigned i = 0; i < b->o.conns; i++) {
        if (b->conns[i].stream != NULL) {
            api_ccall_cancel(b->conns[i].stream);
        }
    }
    lb_run_until(b, streams_over, LB_SETUP_TIMEOUT_NS);
    struct api_call_opts co = {.timeout_ms = b->o.timeout_ms};
    for (unsigned i = 0; b->slots != NULL && i < b->o.clients; i++) {
        struct lb_slot *s = &b->slots[i];
        if (s->lease_id == 0) {
            continue;
        }
        Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
        r.id = s->lease_id;
        size_t n = lb_pack(b, &r.base);
        if (api_channel_unary(s->c->ch, "/etcdserverpb.Lease/LeaseRevoke", b->req, n, &co,
                              revoke_done, b) == 0) {
            b->setup_pending++;
        }
    }
    if (!lb_run_until(b, setup_over, (b->o.timeout_ms + 5000) * 1000000ull)) {
        lb_error(b, "LeaseRevoke: %" PRIu64 " answers missing", b->setup_pending);
    }
}
