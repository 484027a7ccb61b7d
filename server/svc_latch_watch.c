/*
 * svc_latch_watch.c — latch.v1 Watch (svc_latch.h, svc_latch_int.h) on the watch hub.
 *
 * One call is one hub stream with ONE etcd watcher over [path, path "0") — every key that is
 * path itself or starts with path "/" (for "/": ["/", "0"), every path key and none of the
 * reserved "\0..." keys) plus some that are neither ("/a-b", "/a.b" for "/a"). The sink keeps
 * what the call asked for and drops the rest:
 *   - the node itself (key == path);
 *   - below it, keys that are valid paths (store_path_valid) under path "/": all of them when
 *     recursive, else only the direct children (no further '/').
 * Because every event comes from that one watcher, the hub's guarantees carry over as they
 * are: revision order, no gap, no duplicate, one revision's events in one response, resumable
 * from last + 1, compaction reported. A chunk whose events were all dropped sends nothing.
 *
 * Mapping of the hub's etcd responses:
 *   created                      → the first response: header only (its revision is where a
 *                                  start_revision 0 watch starts after)
 *   events                       → events (PUT version 1: CREATED, PUT: CHANGED, DELETE:
 *                                  DELETED), header.revision as the hub's
 *   canceled, compact_revision   → the call ends OUT_OF_RANGE "latch: required revision has
 *                                  been compacted (compact revision N)"
 *   canceled, otherwise          → the call ends UNAVAILABLE with the hub's reason
 *   empty (progress_notify tick) → an empty response: a progress notification
 *
 * Stat in events: create_revision, mod_revision, version, owner_session (the key's lease)
 * and value_size, as of the event; num_children, cversion and children_revision stay 0
 * (history keeps no child counters; Stat/Children read them at the current revision).
 *
 * A call's state (struct wcall) is linked on l->watches from the handler until the call ends:
 * by the client (cancel callback: the stream is freed, the call finished), by the hub
 * (canceled: the call is finished from inside the sink, which must not free the stream, so
 * the stream is freed from a 0 ms timer of the wcall's own), or by latch__watch_free.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "mvccpb/kv.pb-c.h"
#include "store.h"
#include "svc_latch_int.h"

#define LATCH_WATCH_METHOD "/latch.v1.Latch/Watch"

struct latch__watches {
    struct wcall *calls; /* live calls (not yet ended) */
    size_t count;
};

struct wcall {
    struct wcall *prev, *next;
    struct srv_latch *l;
    struct api_call *call; /* NULL once finished */
    struct srv_watch_stream *st;
    uv_timer_t reap; /* frees st after the hub ended the call (initialised only then) */
    char *path;      /* NUL-terminated, path_len bytes */
    size_t path_len;
    bool recursive;
    bool linked;
};

/* ---- filtering ------------------------------------------------------------------------ */

/* Whether key is one the call watches (see the file comment). */
static bool wanted(const struct wcall *wc, const uint8_t *key, size_t key_len)
{
    const uint8_t *p = (const uint8_t *)wc->path;
    size_t plen = wc->path_len;
    if (key_len == plen && memcmp(key, p, plen) == 0) {
        return true;
    }
    /* The prefix of the nodes below: path "/" (or "/" itself for the root). */
    size_t pre = plen == 1 ? 1 : plen + 1;
    if (key_len <= pre || memcmp(key, p, plen) != 0 || key[pre - 1] != '/') {
        return false;
    }
    if (!store_path_valid(key, (uint32_t)key_len)) {
        return false;
    }
    return wc->recursive || memchr(key + pre, '/', key_len - pre) == NULL;
}

/* ---- ending a call -------------------------------------------------------------------- */

static void unlink_call(struct wcall *wc)
{
    if (!wc->linked) {
        return;
    }
    struct latch__watches *ws = wc->l->watches;
    if (wc->prev != NULL) {
        wc->prev->next = wc->next;
    } else {
        ws->calls = wc->next;
    }
    if (wc->next != NULL) {
        wc->next->prev = wc->prev;
    }
    wc->prev = wc->next = NULL;
    wc->linked = false;
    ws->count--;
}

/* Frees the stream and the call's state and finishes the call (status, message). Not from
 * inside the sink. */
static void call_end(struct wcall *wc, int grpc_status, const char *message)
{
    unlink_call(wc);
    srv_watch_stream_free(wc->st);
    struct api_call *call = wc->call;
    free(wc->path);
    free(wc);
    if (call != NULL) {
        api_call_set_context(call, NULL);
        api_call_finish(call, grpc_status, message);
    }
}

static void call_canceled(struct api_call *call, void *data)
{
    (void)call;
    call_end(data, API_GRPC_STATUS_CANCELLED, NULL);
}

static void reap_closed(uv_handle_t *h)
{
    struct wcall *wc = h->data;
    free(wc->path);
    free(wc);
}

static void reap_cb(uv_timer_t *t)
{
    struct wcall *wc = t->data;
    srv_watch_stream_free(wc->st);
    wc->st = NULL;
    uv_close((uv_handle_t *)&wc->reap, reap_closed);
}

/* From inside the sink: finishes the call now and frees the stream from a loop callback. */
static void end_from_sink(struct wcall *wc, int grpc_status, const char *message)
{
    unlink_call(wc);
    struct api_call *call = wc->call;
    wc->call = NULL;
    api_call_set_context(call, NULL);
    api_call_finish(call, grpc_status, message); /* also drops the cancel callback */
    uv_timer_init(wc->l->loop, &wc->reap);
    wc->reap.data = wc;
    uv_timer_start(&wc->reap, reap_cb, 0, 0);
}

/* ---- the sink ------------------------------------------------------------------------- */

static void call_writable(struct api_call *call, void *data)
{
    (void)call;
    struct wcall *wc = data;
    srv_watch_stream_writable(wc->st);
}

static int send_pb(struct wcall *wc, const Latch__V1__WatchResponse *r, bool *would_block)
{
    int rc = api_call_send_pb(wc->call, &r->base, would_block);
    if (rc == 0 && *would_block) {
        api_call_on_writable(wc->call, call_writable, wc);
    }
    return rc;
}

/* Converts the wanted events of resp and sends them (nothing when none is wanted). */
static int send_events(struct wcall *wc,
                       const Etcdserverpb__WatchResponse *resp,
                       Latch__V1__Header *hdr,
                       bool *would_block)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    size_t n = resp->n_events;
    Latch__V1__WatchEvent **ptrs = latch_arena_calloc(&a, n, sizeof(*ptrs));
    Latch__V1__WatchEvent *evs = latch_arena_calloc(&a, n, sizeof(*evs));
    Latch__V1__Stat *stats = latch_arena_calloc(&a, n, sizeof(*stats));
    if (ptrs == NULL || evs == NULL || stats == NULL) {
        latch_arena_close(&a);
        return LATCH_ENOMEM;
    }
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const Mvccpb__Event *e = resp->events[i];
        const Mvccpb__KeyValue *kv = e->kv;
        if (kv == NULL || !wanted(wc, kv->key.data, kv->key.len)) {
            continue;
        }
        char *path = latch_arena_alloc(&a, kv->key.len + 1);
        if (path == NULL) {
            rc = LATCH_ENOMEM;
            break;
        }
        memcpy(path, kv->key.data, kv->key.len);
        path[kv->key.len] = '\0';
        Latch__V1__WatchEvent *ev = &evs[k];
        Latch__V1__Stat *s = &stats[k];
        latch__v1__watch_event__init(ev);
        latch__v1__stat__init(s);
        ev->path = path;
        ev->revision = kv->mod_revision;
        ev->stat = s;
        s->mod_revision = kv->mod_revision;
        if (e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
            ev->kind = LATCH__V1__WATCH_EVENT__KIND__DELETED;
        } else {
            ev->kind = kv->version == 1 ? LATCH__V1__WATCH_EVENT__KIND__CREATED
                                        : LATCH__V1__WATCH_EVENT__KIND__CHANGED;
            s->create_revision = kv->create_revision;
            s->version = kv->version;
            s->owner_session = kv->lease;
            s->value_size = (uint32_t)kv->value.len;
            ev->value = kv->value;
        }
        ptrs[k++] = ev;
    }
    if (rc == 0 && k > 0) {
        Latch__V1__WatchResponse r = LATCH__V1__WATCH_RESPONSE__INIT;
        r.header = hdr;
        r.events = ptrs;
        r.n_events = k;
        rc = send_pb(wc, &r, would_block);
    }
    latch_arena_close(&a);
    return rc;
}

/* The hub's sink (watch.h): see the mapping in the file comment. */
static int sink_send(void *data, const Etcdserverpb__WatchResponse *resp, bool *would_block)
{
    struct wcall *wc = data;
    if (wc->call == NULL) {
        return LATCH_ESTATE;
    }
    int64_t rev = resp->header != NULL ? resp->header->revision : 0;
    Latch__V1__Header hdr = LATCH__V1__HEADER__INIT;
    latch__header(wc->l, rev, &hdr);
    if (resp->canceled) {
        char msg[160];
        if (resp->compact_revision > 0) {
            snprintf(msg, sizeof(msg),
                     "latch: required revision has been compacted (compact revision %" PRId64 ")",
                     resp->compact_revision);
            end_from_sink(wc, API_GRPC_STATUS_OUT_OF_RANGE, msg);
        } else {
            const char *why = resp->cancel_reason != NULL ? resp->cancel_reason : "";
            snprintf(msg, sizeof(msg), "latch: watch canceled: %s", why);
            end_from_sink(wc, API_GRPC_STATUS_UNAVAILABLE, msg);
        }
        return LATCH_ESTATE; /* the hub sends nothing more; reap_cb frees the stream */
    }
    if (resp->n_events > 0) {
        return send_events(wc, resp, &hdr, would_block);
    }
    /* created, or a progress notification: header only */
    Latch__V1__WatchResponse r = LATCH__V1__WATCH_RESPONSE__INIT;
    r.header = &hdr;
    return send_pb(wc, &r, would_block);
}

/* ---- the handler ---------------------------------------------------------------------- */

static void watch_handler(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_latch *l = data;
    Latch__V1__WatchRequest *wr = (Latch__V1__WatchRequest *)api_call_unpack(
        call, &latch__v1__watch_request__descriptor, req, len);
    if (wr == NULL) {
        return;
    }
    size_t plen = strlen(wr->path);
    if (plen == 0 || plen > UINT32_MAX ||
        !store_path_valid((const uint8_t *)wr->path, (uint32_t)plen)) {
        char detail[96]; /* the texts of svc_latch.c's path checks */
        if (plen == 0) {
            snprintf(detail, sizeof(detail), "path is empty");
        } else {
            snprintf(detail, sizeof(detail), "bad path \"%.60s%s\"", wr->path,
                     plen > 60 ? "..." : "");
        }
        latch__v1__watch_request__free_unpacked(wr, NULL);
        latch__fail(call, LATCH_EINVAL, detail);
        return;
    }
    if (wr->start_revision < 0) {
        latch__v1__watch_request__free_unpacked(wr, NULL);
        latch__fail(call, LATCH_EINVAL, "negative start_revision");
        return;
    }
    struct store_status ss;
    int rc = store_status(srv_node_reader(l->node), &ss);
    if (rc != 0) {
        latch__v1__watch_request__free_unpacked(wr, NULL);
        latch__fail(call, rc, NULL);
        return;
    }
    if (wr->start_revision > 0 && wr->start_revision < ss.compact_revision) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "latch: required revision has been compacted (compact revision %" PRId64 ")",
                 ss.compact_revision);
        latch__v1__watch_request__free_unpacked(wr, NULL);
        api_call_fail(call, API_GRPC_STATUS_OUT_OF_RANGE, msg);
        return;
    }
    struct wcall *wc = calloc(1, sizeof(*wc));
    char *path = malloc(plen + 1);
    uint8_t *end = malloc(plen + 1);
    if (wc == NULL || path == NULL || end == NULL) {
        free(wc);
        free(path);
        free(end);
        latch__v1__watch_request__free_unpacked(wr, NULL);
        latch__fail(call, LATCH_ENOMEM, NULL);
        return;
    }
    memcpy(path, wr->path, plen + 1);
    wc->l = l;
    wc->call = call;
    wc->path = path;
    wc->path_len = plen;
    wc->recursive = wr->recursive;
    /* [path, path "0"): path and everything starting with path "/" ('0' follows '/');
     * for "/" that is ["/", "0"). */
    size_t end_len = plen == 1 ? 1 : plen + 1;
    memcpy(end, path, plen);
    end[end_len - 1] = '0';
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key.data = (uint8_t *)path;
    c.key.len = plen;
    c.range_end.data = end;
    c.range_end.len = end_len;
    c.start_revision = wr->start_revision;
    c.progress_notify = wr->progress_notify;
    Etcdserverpb__WatchRequest hreq = ETCDSERVERPB__WATCH_REQUEST__INIT;
    hreq.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    hreq.create_request = &c;
    latch__v1__watch_request__free_unpacked(wr, NULL);

    struct srv_watch_sink sink = {.send = sink_send, .data = wc};
    rc = srv_watch_stream_new(l->hub, &sink, &wc->st);
    if (rc != 0) {
        free(end);
        free(path);
        free(wc);
        latch__fail(call, LATCH_ESHUTDOWN, NULL);
        return;
    }
    struct latch__watches *ws = l->watches;
    wc->next = ws->calls;
    if (ws->calls != NULL) {
        ws->calls->prev = wc;
    }
    ws->calls = wc;
    wc->linked = true;
    ws->count++;
    api_call_set_context(call, wc);
    api_call_on_cancel(call, call_canceled, wc);
    rc = srv_watch_stream_request(wc->st, &hreq);
    free(end);
    if (rc != 0 && wc->call != NULL) {
        call_end(wc,
                 rc == LATCH_ENOMEM ? API_GRPC_STATUS_RESOURCE_EXHAUSTED
                                    : API_GRPC_STATUS_UNAVAILABLE,
                 "latch: watch not created");
    }
    /* else: ended by the sink already (its reap frees the stream), or live */
}

/* ---- registration --------------------------------------------------------------------- */

int latch__watch_register(struct api_server *s, struct srv_latch *l)
{
    struct latch__watches *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = api_server_register_server_stream(s, LATCH_WATCH_METHOD, watch_handler, l);
    if (rc != 0) {
        free(ws);
        return rc;
    }
    l->watches = ws;
    return 0;
}

void latch__watch_free(struct srv_latch *l)
{
    struct latch__watches *ws = l->watches;
    if (ws == NULL) {
        return;
    }
    while (ws->calls != NULL) {
        call_end(ws->calls, API_GRPC_STATUS_UNAVAILABLE, "latch: server stopped");
    }
    LATCH_ASSERT(ws->count == 0);
    free(ws);
    l->watches = NULL;
}
