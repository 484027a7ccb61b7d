/*
 * watch.c — the watch hub (see watch.h).
 *
 * State is only positions: each watcher keeps next_rev, the first revision it has not been
 * sent. A pass (a 0 ms timer, scheduled by the applied hook, by creates that start in the
 * past, by srv_watch_stream_writable and by itself while work is left) pins the node's
 * reader, reads the current and compaction revisions once, then gives every watcher of every
 * stream that is not blocked one store_history chunk from next_rev. next_rev moves to the
 * chunk's end only after the chunk's response was queued (the sink never drops what it
 * accepted), so the sequence a watcher sees is exactly the store's history from its start:
 * no gap, no duplicate, whole revisions. A blocked stream's watchers simply stay where they
 * are and read the history later; the hub holds no events.
 *
 * The arena holds one chunk's events and their protobuf-c messages; it is reset before each
 * read, so a pass never holds more than one chunk.
 */
#include "watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"
#include "latch_teeth.h"
#include "mvccpb/kv.pb-c.h"
#include "store.h"

/* Per-event bytes a fragment may need beyond the event itself (field tag + length). */
#define WATCH_EVENT_OVERHEAD 8u

struct watcher {
    struct watcher *next;
    int64_t id;
    int64_t next_rev; /* first revision not yet sent */
    uint8_t *key;     /* owned, with end */
    uint8_t *end;
    uint32_t key_len;
    uint32_t end_len;
    bool prev_kv;
    bool noput;
    bool nodelete;
    bool progress_notify;
    bool fragment;
    bool sent; /* events sent since the last progress tick */
};

struct srv_watch_stream {
    struct srv_watch_hub *hub;
    struct srv_watch_stream *prev;
    struct srv_watch_stream *next;
    struct srv_watch_sink sink;
    struct watcher *watchers; /* creation order */
    size_t watchers_count;
    int64_t next_id;       /* the next automatic id to try */
    bool blocked;          /* the sink reported would_block: control replies only */
    bool dead;             /* the sink failed: nothing more */
    bool progress_pending; /* a progress request waits for the watchers to catch up */
};

struct srv_watch_hub {
    uv_loop_t *loop;
    struct srv_watch_hub_config cfg;
    uv_timer_t pass;
    uv_timer_t progress;
    int handles_open;
    bool closing;
    void (*done_cb)(void *data);
    void *done_data;
    struct srv_watch_stream *streams;
    size_t watchers_count;
    struct latch_arena arena;
};

/* ---- helpers -------------------------------------------------------------------------- */

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

static void
header_fill(const struct srv_watch_hub *h, int64_t revision, Etcdserverpb__ResponseHeader *hdr)
{
    struct srv_node_status st;
    srv_node_status(h->cfg.node, &st);
    etcdserverpb__response_header__init(hdr);
    hdr->cluster_id = h->cfg.cluster_id;
    hdr->member_id = h->cfg.member_id;
    hdr->revision = revision;
    hdr->raft_term = st.term;
}

static void schedule_pass(struct srv_watch_hub *h);

/* Queues r on st. Returns 0 (st may now be blocked) or the sink's error (st is dead). */
static int stream_send(struct srv_watch_stream *st, const Etcdserverpb__WatchResponse *r)
{
    if (st->dead) {
        return LATCH_ESTATE;
    }
    bool would_block = false;
    int rc = st->sink.send(st->sink.data, r, &would_block);
    if (rc != 0) {
        st->dead = true;
        return rc;
    }
    if (would_block) {
        st->blocked = true;
    }
    return 0;
}

static struct watcher *watcher_find(const struct srv_watch_stream *st, int64_t id)
{
    for (struct watcher *w = st->watchers; w != NULL; w = w->next) {
        if (w->id == id) {
            return w;
        }
    }
    return NULL;
}

static void watcher_remove(struct srv_watch_stream *st, struct watcher *w)
{
    struct watcher **pp = &st->watchers;
    while (*pp != w) {
        pp = &(*pp)->next;
    }
    *pp = w->next;
    st->watchers_count--;
    st->hub->watchers_count--;
    free(w->key);
    free(w->end);
    free(w);
}

/* Every watcher of st has been sent everything up to revision. */
static bool stream_caught_up(const struct srv_watch_stream *st, int64_t revision)
{
    for (const struct watcher *w = st->watchers; w != NULL; w = w->next) {
        if (w->next_rev <= revision) {
            return false;
        }
    }
    return true;
}

/* A reply with no events for watch_id: canceled (with reason or compact revision), or a
 * progress notification. */
static int send_control(struct srv_watch_stream *st,
                        int64_t revision,
                        int64_t watch_id,
                        bool created,
                        bool canceled,
                        int64_t compact_revision,
                        const char *reason)
{
    Etcdserverpb__ResponseHeader hdr;
    header_fill(st->hub, revision, &hdr);
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.header = &hdr;
    r.watch_id = watch_id;
    r.created = created;
    r.canceled = canceled;
    r.compact_revision = compact_revision;
    if (reason != NULL) {
        r.cancel_reason = (char *)reason;
    }
    return stream_send(st, &r);
}

/* Sends a progress reply to a stream that asked for one, once it is caught up. */
static int progress_answer(struct srv_watch_stream *st, int64_t revision)
{
    if (!st->progress_pending || st->dead || st->blocked || !stream_caught_up(st, revision)) {
        return 0;
    }
    st->progress_pending = false;
    return send_control(st, revision, -1, false, false, 0, NULL);
}

/* ---- feeding -------------------------------------------------------------------------- */

#ifdef LATCH_TEETH
/* Teeth watch-dup / watch-skip (latch_teeth.h): one chunk in TEETH_WATCH_EVERY has its last
 * event sent twice, or its first event dropped. Loop thread only. */
#define TEETH_WATCH_EVERY 8u
static unsigned teeth_watch_chunks;
#endif

/* Sends n events (n >= 1) of w in one response, or in fragments when w asked for them and
 * the response is too big. */
static int send_events(struct srv_watch_stream *st,
                       const struct watcher *w,
                       Mvccpb__Event **evs,
                       size_t n,
                       Etcdserverpb__ResponseHeader *hdr)
{
    const struct srv_watch_hub *h = st->hub;
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.header = hdr;
    r.watch_id = w->id;
    r.events = evs;
    r.n_events = n;
    if (!w->fragment || protobuf_c_message_get_packed_size(&r.base) <= h->cfg.fragment_size) {
        return stream_send(st, &r);
    }
    size_t i = 0;
    while (i < n) {
        size_t j = i, bytes = 0;
        while (j < n) {
            size_t sz = protobuf_c_message_get_packed_size(&evs[j]->base) + WATCH_EVENT_OVERHEAD;
            if (j > i && bytes + sz > h->cfg.fragment_size) {
                break;
            }
            bytes += sz;
            j++;
        }
        r.events = evs + i;
        r.n_events = j - i;
        r.fragment = j < n;
        int rc = stream_send(st, &r);
        if (rc != 0) {
            return rc;
        }
        i = j;
    }
    return 0;
}

/* Converts the events w wants (its filters) into messages in a; *n_out of them. */
static int events_to_pb(const struct watcher *w,
                        const struct store_event *ev,
                        size_t n,
                        struct latch_arena *a,
                        Mvccpb__Event ***out,
                        size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0) {
        return 0;
    }
    Mvccpb__Event **ptrs = latch_arena_calloc(a, n, sizeof(*ptrs));
    Mvccpb__Event *msgs = latch_arena_calloc(a, n, sizeof(*msgs));
    Mvccpb__KeyValue *kvs = latch_arena_calloc(a, 2 * n, sizeof(*kvs));
    if (ptrs == NULL || msgs == NULL || kvs == NULL) {
        return LATCH_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool put = ev[i].type == STORE_EVENT_PUT;
        if ((put && w->noput) || (!put && w->nodelete)) {
            continue;
        }
        Mvccpb__Event *e = &msgs[k];
        mvccpb__event__init(e);
        e->type = put ? MVCCPB__EVENT__EVENT_TYPE__PUT : MVCCPB__EVENT__EVENT_TYPE__DELETE;
        etcd_kv(&ev[i].kv, &kvs[2 * k]);
        e->kv = &kvs[2 * k];
        if (w->prev_kv && ev[i].has_prev) {
            etcd_kv(&ev[i].prev, &kvs[2 * k + 1]);
            e->prev_kv = &kvs[2 * k + 1];
        }
        ptrs[k++] = e;
    }
    *out = ptrs;
    *n_out = k;
    return 0;
}

/*
 * Gives w one chunk of history from next_rev (cur: the current revision, compact: the
 * compaction point, both of the pinned snapshot). A compacted position cancels w with
 * compact_revision; a store failure cancels it with the error's text. Returns the sink's
 * error when the stream died, else 0.
 */
static int watcher_feed(struct srv_watch_stream *st,
                        struct watcher *w,
                        struct store_reader *rd,
                        int64_t cur,
                        int64_t compact)
{
    struct srv_watch_hub *h = st->hub;
    latch_arena_reset(&h->arena);
    struct store_history_req q = {
        .start_revision = w->next_rev,
        .key = w->key,
        .key_len = w->key_len,
        .range_end = w->end,
        .range_end_len = w->end_len,
        .prev_kv = w->prev_kv,
        .max_events = h->cfg.max_events,
        .max_bytes = h->cfg.max_bytes,
    };
    struct store_event *evs = NULL;
    size_t n = 0;
    int64_t next = 0;
    int rc = store_history(rd, &q, &h->arena, &evs, &n, &next);
    Mvccpb__Event **pb = NULL;
    size_t npb = 0;
    if (rc == 0) {
        rc = events_to_pb(w, evs, n, &h->arena, &pb, &npb);
    }
    if (rc == LATCH_ECOMPACTED) {
        int64_t id = w->id;
        watcher_remove(st, w);
        return send_control(st, cur, id, false, true, compact, NULL);
    }
    if (rc != 0) {
        char reason[128];
        snprintf(reason, sizeof(reason), "etcdserver: %s", latch_strerror(rc));
        latch_log(LATCH_LOG_ERROR, "watch: reading history from %lld: %s; canceling watch %lld",
                  (long long)w->next_rev, latch_strerror(rc), (long long)w->id);
        int64_t id = w->id;
        watcher_remove(st, w);
        return send_control(st, cur, id, false, true, 0, reason);
    }
    bool teeth_dup = false;
#ifdef LATCH_TEETH
    if (npb > 0 &&
        (latch_teeth_on(LATCH_TEETH_WATCH_DUP) || latch_teeth_on(LATCH_TEETH_WATCH_SKIP)) &&
        ++teeth_watch_chunks % TEETH_WATCH_EVERY == 0) {
        if (latch_teeth_on(LATCH_TEETH_WATCH_SKIP)) {
            pb++; /* teeth: the first event is never sent */
            npb--;
        } else {
            teeth_dup = true;
        }
    }
#endif
    if (npb > 0) {
        int64_t last = evs[n - 1].kv.mod_revision;
        Etcdserverpb__ResponseHeader hdr;
        header_fill(h, last > cur ? last : cur, &hdr);
        rc = send_events(st, w, pb, npb, &hdr);
        if (rc == 0 && teeth_dup) {
            rc = send_events(st, w, pb + npb - 1, 1, &hdr); /* teeth: the last one again */
        }
        if (rc != 0) {
            return rc; /* dead: the position no longer matters */
        }
        w->sent = true;
    }
    LATCH_ASSERTF(next > w->next_rev, "history from %lld ended at %lld", (long long)w->next_rev,
                  (long long)next);
    w->next_rev = next;
    return 0;
}

/* One pass over every stream (see the file comment). */
static void pass_run(struct srv_watch_hub *h)
{
    if (h->closing || h->streams == NULL) {
        return;
    }
    struct store_reader *rd = srv_node_reader(h->cfg.node);
    bool pinned = store_reader_pin(rd) == 0;
    struct store_status ss;
    int rc = store_status(rd, &ss);
    if (rc != 0) {
        latch_log(LATCH_LOG_ERROR, "watch: reading the store status: %s", latch_strerror(rc));
        if (pinned) {
            store_reader_unpin(rd);
        }
        return; /* the next apply tries again */
    }
    bool more = false;
    for (struct srv_watch_stream *st = h->streams; st != NULL; st = st->next) {
        struct watcher *next = NULL;
        for (struct watcher *w = st->watchers; w != NULL && !st->dead && !st->blocked; w = next) {
            next = w->next;
            if (w->next_rev <= ss.revision) {
                watcher_feed(st, w, rd, ss.revision, ss.compact_revision);
            }
        }
        if (st->dead || st->blocked) {
            continue; /* srv_watch_stream_writable schedules the next pass */
        }
        if (!stream_caught_up(st, ss.revision)) {
            more = true;
        } else {
            progress_answer(st, ss.revision);
        }
    }
    latch_arena_reset(&h->arena);
    if (pinned) {
        store_reader_unpin(rd);
    }
    if (more) {
        schedule_pass(h);
    }
}

static void pass_cb(uv_timer_t *t)
{
    pass_run(t->data);
}

static void schedule_pass(struct srv_watch_hub *h)
{
    if (!h->closing && !uv_is_active((uv_handle_t *)&h->pass)) {
        uv_timer_start(&h->pass, pass_cb, 0, 0);
    }
}

/* progress_notify: an empty response to every caught-up watcher that asked for it and was
 * sent no event since the last tick. */
static void progress_cb(uv_timer_t *t)
{
    struct srv_watch_hub *h = t->data;
    if (h->closing || h->watchers_count == 0) {
        return;
    }
    struct store_status ss;
    if (store_status(srv_node_reader(h->cfg.node), &ss) != 0) {
        return;
    }
    for (struct srv_watch_stream *st = h->streams; st != NULL; st = st->next) {
        for (struct watcher *w = st->watchers; w != NULL; w = w->next) {
            if (w->progress_notify && !w->sent && !st->dead && !st->blocked &&
                w->next_rev > ss.revision) {
                send_control(st, ss.revision, w->id, false, false, 0, NULL);
            }
            w->sent = false;
        }
    }
}

/* ---- requests ------------------------------------------------------------------------- */

static int stream_create(struct srv_watch_stream *st, const Etcdserverpb__WatchCreateRequest *c)
{
    struct srv_watch_hub *h = st->hub;
    struct store_status ss;
    int rc = store_status(srv_node_reader(h->cfg.node), &ss);
    if (rc != 0) {
        return rc;
    }
    static const uint8_t zero = 0;
    const uint8_t *key = c->key.len > 0 ? c->key.data : &zero;
    size_t key_len = c->key.len > 0 ? c->key.len : 1;
    const uint8_t *end = c->range_end.data;
    size_t end_len = c->range_end.len;
    bool from_key = end_len == 1 && end[0] == 0;
    if (end_len > 0 && !from_key && bytes_cmp(key, key_len, end, end_len) >= 0) {
        return send_control(st, ss.revision, -1, true, true, 0, SRV_WATCH_EEMPTYRANGE);
    }
    int64_t id = c->watch_id;
    if (id != 0 && watcher_find(st, id) != NULL) {
        return send_control(st, ss.revision, -1, true, true, 0, SRV_WATCH_EDUPID);
    }
    struct watcher *w = calloc(1, sizeof(*w));
    uint8_t *kcopy = malloc(key_len);
    uint8_t *ecopy = end_len > 0 ? malloc(end_len) : NULL;
    if (w == NULL || kcopy == NULL || (end_len > 0 && ecopy == NULL)) {
        free(w);
        free(kcopy);
        free(ecopy);
        return LATCH_ENOMEM;
    }
    memcpy(kcopy, key, key_len);
    if (end_len > 0) {
        memcpy(ecopy, end, end_len);
    }
    if (id == 0) {
        while (watcher_find(st, st->next_id) != NULL) {
            st->next_id++;
        }
        id = st->next_id++;
    }
    w->id = id;
    w->key = kcopy;
    w->key_len = (uint32_t)key_len;
    w->end = ecopy;
    w->end_len = (uint32_t)end_len;
    w->next_rev = c->start_revision == 0 ? ss.revision + 1 : c->start_revision;
    if (w->next_rev < 1) {
        w->next_rev = 1;
    }
    w->prev_kv = c->prev_kv;
    w->progress_notify = c->progress_notify;
    w->fragment = c->fragment;
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT) {
            w->noput = true;
        } else if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE) {
            w->nodelete = true;
        }
    }
    struct watcher **tail = &st->watchers;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = w;
    st->watchers_count++;
    h->watchers_count++;
    /* The created reply goes out before any event: events come from a later pass. */
    rc = send_control(st, ss.revision, id, true, false, 0, NULL);
    if (w->next_rev <= ss.revision) {
        schedule_pass(h);
    }
    return rc;
}

int srv_watch_stream_request(struct srv_watch_stream *st, const Etcdserverpb__WatchRequest *req)
{
    struct srv_watch_hub *h = st->hub;
    if (h->closing || st->dead) {
        return 0;
    }
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        return req->create_request != NULL ? stream_create(st, req->create_request) : LATCH_EINVAL;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
        if (req->cancel_request == NULL) {
            return LATCH_EINVAL;
        }
        struct watcher *w = watcher_find(st, req->cancel_request->watch_id);
        if (w == NULL) {
            return 0; /* etcd answers nothing for an unknown id */
        }
        int64_t id = w->id;
        watcher_remove(st, w);
        struct store_status ss;
        int rc = store_status(srv_node_reader(h->cfg.node), &ss);
        rc = rc != 0 ? rc : send_control(st, ss.revision, id, false, true, 0, NULL);
        if (rc == 0 && st->progress_pending) {
            rc = progress_answer(st, ss.revision);
        }
        return rc;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST: {
        struct store_status ss;
        int rc = store_status(srv_node_reader(h->cfg.node), &ss);
        if (rc != 0) {
            return rc;
        }
        st->progress_pending = true;
        rc = progress_answer(st, ss.revision);
        if (st->progress_pending) {
            schedule_pass(h); /* answered once the watchers caught up */
        }
        return rc;
    }
    default:
        return LATCH_EINVAL;
    }
}

/* ---- streams -------------------------------------------------------------------------- */

int srv_watch_stream_new(struct srv_watch_hub *h,
                         const struct srv_watch_sink *sink,
                         struct srv_watch_stream **out)
{
    if (h->closing) {
        return LATCH_ESTATE;
    }
    struct srv_watch_stream *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return LATCH_ENOMEM;
    }
    st->hub = h;
    st->sink = *sink;
    st->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = st;
    }
    h->streams = st;
    *out = st;
    return 0;
}

static void hub_finish(struct srv_watch_hub *h);

void srv_watch_stream_free(struct srv_watch_stream *st)
{
    if (st == NULL) {
        return;
    }
    struct srv_watch_hub *h = st->hub;
    while (st->watchers != NULL) {
        watcher_remove(st, st->watchers);
    }
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        h->streams = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    free(st);
    hub_finish(h);
}

void srv_watch_stream_writable(struct srv_watch_stream *st)
{
    if (st->blocked) {
        st->blocked = false;
        schedule_pass(st->hub);
    }
}

size_t srv_watch_stream_watchers(const struct srv_watch_stream *st)
{
    return st->watchers_count;
}

/* ---- the hub -------------------------------------------------------------------------- */

int srv_watch_hub_new(uv_loop_t *loop,
                      const struct srv_watch_hub_config *cfg,
                      struct srv_watch_hub **out)
{
    if (cfg == NULL || cfg->node == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_watch_hub *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return LATCH_ENOMEM;
    }
    h->loop = loop;
    h->cfg = *cfg;
    if (h->cfg.max_events == 0) {
        h->cfg.max_events = SRV_WATCH_MAX_EVENTS_DEFAULT;
    }
    if (h->cfg.max_bytes == 0) {
        h->cfg.max_bytes = SRV_WATCH_MAX_BYTES_DEFAULT;
    }
    if (h->cfg.fragment_size == 0) {
        h->cfg.fragment_size = SRV_WATCH_FRAGMENT_DEFAULT;
    }
    if (h->cfg.progress_ms == 0) {
        h->cfg.progress_ms = SRV_WATCH_PROGRESS_MS_DEFAULT;
    }
    latch_arena_init(&h->arena, 0);
    uv_timer_init(loop, &h->pass);
    uv_timer_init(loop, &h->progress);
    h->pass.data = h->progress.data = h;
    h->handles_open = 2;
    uv_timer_start(&h->progress, progress_cb, h->cfg.progress_ms, h->cfg.progress_ms);
    *out = h;
    return 0;
}

/* Frees h once it is closing, its handles closed and its last stream was freed. */
static void hub_finish(struct srv_watch_hub *h)
{
    if (!h->closing || h->handles_open > 0 || h->streams != NULL) {
        return;
    }
    void (*done_cb)(void *) = h->done_cb;
    void *data = h->done_data;
    latch_arena_close(&h->arena);
    free(h);
    if (done_cb != NULL) {
        done_cb(data);
    }
}

static void hub_handle_closed(uv_handle_t *handle)
{
    struct srv_watch_hub *h = handle->data;
    h->handles_open--;
    hub_finish(h);
}

void srv_watch_hub_close(struct srv_watch_hub *h, void (*done_cb)(void *data), void *data)
{
    LATCH_ASSERT(!h->closing);
    h->closing = true;
    h->done_cb = done_cb;
    h->done_data = data;
    uv_close((uv_handle_t *)&h->pass, hub_handle_closed);
    uv_close((uv_handle_t *)&h->progress, hub_handle_closed);
}

void srv_watch_hub_applied(void *hub, int64_t revision)
{
    struct srv_watch_hub *h = hub;
    (void)revision; /* a pass reads the revision from the store itself */
    if (h->watchers_count > 0) {
        /* At once, not from the 0 ms timer: the node's next ready cannot begin before this
         * hook returns, so a watcher that is caught up reads this batch's events before a
         * compaction in a later batch can drop them (etcd's synced watchers are never
         * cancelled by a compaction). What is left over continues from the timer. */
        pass_run(h);
    }
}

size_t srv_watch_hub_watchers(const struct srv_watch_hub *h)
{
    return h->watchers_count;
}
