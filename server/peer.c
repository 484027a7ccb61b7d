/*
 * peer.c — the Raft peer transport (see peer.h for the contract).
 *
 * The transport owns one struct peer per known peer: its channel, its current Send call (or
 * none) and a FIFO of encoded Batches waiting for the call to accept more. A removed peer
 * moves to the dying list until its channel has closed (the channel runs the call's on_done
 * first), then it is freed. Incoming Send calls are kept in a list so that srv_peer_close()
 * can end them. Reports to the node (unreachable, failed snapshot) are flags on the peer,
 * flushed by a zero-delay timer, so they never run inside srv_peer_send(). Memory is freed
 * only in close callbacks: the transport itself when its timer has closed and no peer is
 * dying any more.
 */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "grpc_pb.h"
#include "grpc_server.h"
#include "grpc_wire.h"
#include "latch_error.h"
#include "latch_log.h"

/* How often a connected peer without a Send call gets one (see ensure_cb). */
#define SRV_PEER_ENSURE_MS 1000

/* Rate of repeated log lines (drops, refusals), per line kind: a peer that is down for long
 * would otherwise fill the log. */
#define PEER_LOG_INTERVAL_MS 10000

/* ---- codec ---------------------------------------------------------------------------- */

static bool msg_type_valid(uint32_t type)
{
    return type >= RAFT_MSG_APPEND && type < RAFT_MSG_TYPE_COUNT;
}

static bool conf_valid(const raft_id *ids, size_t n)
{
    if (n > RAFT_MEMBERS_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == RAFT_NONE) {
            return false;
        }
    }
    return true;
}

int srv_peer_msg_to_pb(const struct raft_msg *m, struct srv_peer_pb_msg *pm)
{
    memset(pm, 0, sizeof(*pm));
    if (!msg_type_valid(m->type) || m->from == RAFT_NONE || m->to == RAFT_NONE ||
        m->entries_count > RAFT_MSG_ENTRIES_MAX || (m->entries_count > 0 && m->entries == NULL)) {
        return LATCH_EINVAL;
    }
    for (uint32_t i = 0; i < m->entries_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->type > RAFT_ENTRY_CONF || e->len > RAFT_ENTRY_BYTES_MAX ||
            (e->len > 0 && e->data == NULL)) {
            return LATCH_EINVAL;
        }
    }
    const struct raft_conf_state *conf = &m->snapshot.meta.conf;
    if (m->type == RAFT_MSG_SNAPSHOT && (!conf_valid(conf->voters, conf->voters_count) ||
                                         !conf_valid(conf->learners, conf->learners_count))) {
        return LATCH_EINVAL;
    }

    latch__raft__v1__message__init(&pm->msg);
    pm->msg.type = m->type;
    pm->msg.from = m->from;
    pm->msg.to = m->to;
    pm->msg.term = m->term;
    pm->msg.log_term = m->log_term;
    pm->msg.index = m->index;
    pm->msg.commit = m->commit;
    pm->msg.reject_hint = m->reject_hint;
    pm->msg.context = m->context;
    pm->msg.reject = m->reject;

    if (m->entries_count > 0) {
        size_t n = m->entries_count;
        Latch__Raft__V1__Entry *es = malloc(n * (sizeof(*es) + sizeof(es)));
        if (es == NULL) {
            return LATCH_ENOMEM;
        }
        Latch__Raft__V1__Entry **ptrs = (Latch__Raft__V1__Entry **)(void *)(es + n);
        for (size_t i = 0; i < n; i++) {
            const struct raft_entry *e = &m->entries[i];
            latch__raft__v1__entry__init(&es[i]);
            es[i].term = e->term;
            es[i].index = e->index;
            es[i].type = e->type;
            es[i].data.len = e->len;
            /* Packing only reads the bytes; the view borrows them from m. */
            es[i].data.data = e->len > 0 ? (uint8_t *)e->data : NULL;
            ptrs[i] = &es[i];
        }
        pm->alloc = es;
        pm->msg.n_entries = n;
        pm->msg.entries = ptrs;
    }

    if (m->type == RAFT_MSG_SNAPSHOT) {
        latch__raft__v1__snapshot_meta__init(&pm->snap);
        latch__raft__v1__conf_state__init(&pm->conf);
        pm->snap.index = m->snapshot.meta.index;
        pm->snap.term = m->snapshot.meta.term;
        pm->conf.n_voters = conf->voters_count;
        pm->conf.voters = conf->voters_count > 0 ? (uint64_t *)conf->voters : NULL;
        pm->conf.n_learners = conf->learners_count;
        pm->conf.learners = conf->learners_count > 0 ? (uint64_t *)conf->learners : NULL;
        pm->snap.conf = &pm->conf;
        pm->msg.snapshot = &pm->snap;
    }
    return 0;
}

void srv_peer_pb_msg_release(struct srv_peer_pb_msg *pm)
{
    free(pm->alloc);
    memset(pm, 0, sizeof(*pm));
}

int srv_peer_msg_from_pb(const Latch__Raft__V1__Message *pm,
                         struct raft_msg *m,
                         struct raft_entry *entries)
{
    memset(m, 0, sizeof(*m));
    if (!msg_type_valid(pm->type) || pm->from == RAFT_NONE || pm->to == RAFT_NONE ||
        pm->n_entries > RAFT_MSG_ENTRIES_MAX || (pm->n_entries > 0 && pm->entries == NULL)) {
        return LATCH_EINVAL;
    }
    if ((pm->type == RAFT_MSG_SNAPSHOT) != (pm->snapshot != NULL)) {
        return LATCH_EINVAL;
    }
    for (size_t i = 0; i < pm->n_entries; i++) {
        const Latch__Raft__V1__Entry *pe = pm->entries[i];
        if (pe == NULL || pe->type > RAFT_ENTRY_CONF || pe->data.len > RAFT_ENTRY_BYTES_MAX ||
            (pe->data.len > 0 && pe->data.data == NULL)) {
            return LATCH_EINVAL;
        }
    }
    if (pm->snapshot != NULL) {
        const Latch__Raft__V1__ConfState *c = pm->snapshot->conf;
        if (c != NULL &&
            (!conf_valid(c->voters, c->n_voters) || !conf_valid(c->learners, c->n_learners))) {
            return LATCH_EINVAL;
        }
    }

    m->type = pm->type;
    m->from = pm->from;
    m->to = pm->to;
    m->term = pm->term;
    m->log_term = pm->log_term;
    m->index = pm->index;
    m->commit = pm->commit;
    m->reject_hint = pm->reject_hint;
    m->context = pm->context;
    m->reject = pm->reject != 0;
    m->entries_count = (uint32_t)pm->n_entries;
    m->entries = pm->n_entries > 0 ? entries : NULL;
    for (size_t i = 0; i < pm->n_entries; i++) {
        const Latch__Raft__V1__Entry *pe = pm->entries[i];
        entries[i] = (struct raft_entry){
            .term = pe->term,
            .index = pe->index,
            .type = pe->type,
            .len = (uint32_t)pe->data.len,
            .data = pe->data.len > 0 ? pe->data.data : NULL,
        };
    }
    if (pm->snapshot != NULL) {
        const Latch__Raft__V1__ConfState *c = pm->snapshot->conf;
        m->snapshot.meta.index = pm->snapshot->index;
        m->snapshot.meta.term = pm->snapshot->term;
        if (c != NULL) {
            m->snapshot.meta.conf.voters_count = (uint32_t)c->n_voters;
            m->snapshot.meta.conf.learners_count = (uint32_t)c->n_learners;
            if (c->n_voters > 0) {
                memcpy(m->snapshot.meta.conf.voters, c->voters, c->n_voters * sizeof(raft_id));
            }
            if (c->n_learners > 0) {
                memcpy(m->snapshot.meta.conf.learners, c->learners,
                       c->n_learners * sizeof(raft_id));
            }
        }
    }
    return 0;
}

/*
 * Packs the Batch of ms[0..k) into a malloc'd block that starts with reserve bytes for the
 * caller (a queue header) followed by the packed bytes. Returns 0, LATCH_EINVAL, LATCH_ETOOBIG
 * or LATCH_ENOMEM.
 */
static int pack_batch(uint64_t cluster_id,
                      const struct raft_msg *const *ms,
                      size_t k,
                      size_t reserve,
                      uint8_t **block_out,
                      size_t *len_out)
{
    int rc = 0;
    struct srv_peer_pb_msg *views = calloc(k > 0 ? k : 1, sizeof(*views));
    Latch__Raft__V1__Message **ptrs = calloc(k > 0 ? k : 1, sizeof(*ptrs));
    size_t made = 0;
    if (views == NULL || ptrs == NULL) {
        rc = LATCH_ENOMEM;
        goto out_free_views;
    }
    for (; made < k; made++) {
        rc = srv_peer_msg_to_pb(ms[made], &views[made]);
        if (rc != 0) {
            goto out_free_views;
        }
        ptrs[made] = &views[made].msg;
    }
    Latch__Raft__V1__Batch batch = LATCH__RAFT__V1__BATCH__INIT;
    batch.cluster_id = cluster_id;
    batch.n_messages = k;
    batch.messages = ptrs;
    size_t len = latch__raft__v1__batch__get_packed_size(&batch);
    if (len > SRV_PEER_MSG_BYTES_MAX) {
        rc = LATCH_ETOOBIG;
        goto out_free_views;
    }
    uint8_t *block = malloc(reserve + len + 1);
    if (block == NULL) {
        rc = LATCH_ENOMEM;
        goto out_free_views;
    }
    size_t packed = latch__raft__v1__batch__pack(&batch, block + reserve);
    LATCH_ASSERT(packed == len);
    *block_out = block;
    *len_out = len;
out_free_views:
    for (size_t i = 0; i < made; i++) {
        srv_peer_pb_msg_release(&views[i]);
    }
    free(views);
    free(ptrs);
    return rc;
}

int srv_peer_batch_encode(
    uint64_t cluster_id, const struct raft_msg *msgs, size_t n, uint8_t **buf_out, size_t *len_out)
{
    const struct raft_msg **ms = calloc(n > 0 ? n : 1, sizeof(*ms));
    if (ms == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ms[i] = &msgs[i];
    }
    int rc = pack_batch(cluster_id, ms, n, 0, buf_out, len_out);
    free(ms);
    return rc;
}

int srv_peer_batch_decode(const uint8_t *buf, size_t len, struct srv_peer_batch *b)
{
    memset(b, 0, sizeof(*b));
    /* protobuf-c answers NULL for malformed input and for a failed allocation alike; both are
     * a Batch this node cannot take, and the sender resends either way. */
    Latch__Raft__V1__Batch *pb = latch__raft__v1__batch__unpack(NULL, len, buf);
    if (pb == NULL) {
        return LATCH_EINVAL;
    }
    size_t entries_total = 0;
    for (size_t i = 0; i < pb->n_messages; i++) {
        if (pb->messages[i] == NULL || pb->messages[i]->n_entries > RAFT_MSG_ENTRIES_MAX) {
            latch__raft__v1__batch__free_unpacked(pb, NULL);
            return LATCH_EINVAL;
        }
        entries_total += pb->messages[i]->n_entries;
    }
    struct raft_msg *msgs = calloc(pb->n_messages > 0 ? pb->n_messages : 1, sizeof(*msgs));
    struct raft_entry *entries = calloc(entries_total > 0 ? entries_total : 1, sizeof(*entries));
    if (msgs == NULL || entries == NULL) {
        free(msgs);
        free(entries);
        latch__raft__v1__batch__free_unpacked(pb, NULL);
        return LATCH_ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < pb->n_messages; i++) {
        int rc = srv_peer_msg_from_pb(pb->messages[i], &msgs[i], entries + off);
        if (rc != 0) {
            free(msgs);
            free(entries);
            latch__raft__v1__batch__free_unpacked(pb, NULL);
            return rc;
        }
        off += pb->messages[i]->n_entries;
    }
    b->cluster_id = pb->cluster_id;
    b->msgs_count = pb->n_messages;
    b->msgs = msgs;
    b->pb_ = pb;
    b->entries_ = entries;
    return 0;
}

void srv_peer_batch_release(struct srv_peer_batch *b)
{
    if (b->pb_ != NULL) {
        latch__raft__v1__batch__free_unpacked(b->pb_, NULL);
    }
    free(b->msgs);
    free(b->entries_);
    memset(b, 0, sizeof(*b));
}

/* ---- codec: snapshot chunks ------------------------------------------------------------ */

int srv_peer_snap_chunk_encode(uint64_t cluster_id,
                               const struct raft_msg *m,
                               uint64_t size,
                               uint64_t offset,
                               const uint8_t *data,
                               size_t len,
                               bool last,
                               uint8_t **buf_out,
                               size_t *len_out)
{
    struct srv_peer_pb_msg pm;
    bool have_pm = false;
    if (len > SRV_PEER_SNAP_CHUNK_BYTES || (len > 0 && data == NULL) ||
        (m != NULL && m->type != RAFT_MSG_SNAPSHOT)) {
        return LATCH_EINVAL;
    }
    Latch__Raft__V1__SnapshotChunk c = LATCH__RAFT__V1__SNAPSHOT_CHUNK__INIT;
    c.cluster_id = cluster_id;
    c.offset = offset;
    c.data.len = len;
    c.data.data = len > 0 ? (uint8_t *)data : NULL; /* packing only reads it */
    c.last = last;
    if (m != NULL) {
        int rc = srv_peer_msg_to_pb(m, &pm);
        if (rc != 0) {
            return rc;
        }
        have_pm = true;
        c.message = &pm.msg;
        c.size = size;
    }
    size_t n = latch__raft__v1__snapshot_chunk__get_packed_size(&c);
    uint8_t *buf = malloc(n + 1);
    if (buf != NULL) {
        size_t packed = latch__raft__v1__snapshot_chunk__pack(&c, buf);
        LATCH_ASSERT(packed == n);
        *buf_out = buf;
        *len_out = n;
    }
    if (have_pm) {
        srv_peer_pb_msg_release(&pm);
    }
    return buf != NULL ? 0 : LATCH_ENOMEM;
}

void srv_peer_snap_rx_init(struct srv_peer_snap_rx *rx, uint64_t cluster_id, raft_id self)
{
    memset(rx, 0, sizeof(*rx));
    rx->cluster_id = cluster_id;
    rx->self = self;
}

void srv_peer_snap_chunk_free(Latch__Raft__V1__SnapshotChunk *chunk)
{
    if (chunk != NULL) {
        latch__raft__v1__snapshot_chunk__free_unpacked(chunk, NULL);
    }
}

/* The order rules of one decoded chunk (peer.h "Receiving a snapshot"). */
static int snap_rx_check(const struct srv_peer_snap_rx *rx,
                         const Latch__Raft__V1__SnapshotChunk *c,
                         const char **why)
{
    if (c->cluster_id != rx->cluster_id) {
        *why = "cluster id mismatch";
        return LATCH_ENOTMEMBER;
    }
    if (rx->last_seen) {
        *why = "raft: snapshot chunk after the last one";
        return LATCH_EPROTO;
    }
    if (!rx->have_msg && c->message == NULL) {
        *why = "raft: snapshot stream must start with its message";
        return LATCH_EPROTO;
    }
    if (rx->have_msg && c->message != NULL) {
        *why = "raft: snapshot message repeated";
        return LATCH_EPROTO;
    }
    if (c->offset != rx->offset) {
        *why = "raft: snapshot chunk out of order";
        return LATCH_EPROTO;
    }
    if (c->data.len > SRV_PEER_SNAP_CHUNK_BYTES) {
        *why = "raft: snapshot chunk too big";
        return LATCH_ETOOBIG;
    }
    return 0;
}

int srv_peer_snap_rx_chunk(struct srv_peer_snap_rx *rx,
                           const uint8_t *buf,
                           size_t len,
                           Latch__Raft__V1__SnapshotChunk **chunk_out,
                           const uint8_t **data,
                           size_t *data_len,
                           bool *first,
                           const char **why)
{
    struct raft_msg m;
    *chunk_out = NULL;
    *first = false;
    *why = "raft: malformed snapshot chunk";
    Latch__Raft__V1__SnapshotChunk *c = latch__raft__v1__snapshot_chunk__unpack(NULL, len, buf);
    if (c == NULL) {
        return LATCH_EINVAL;
    }
    int rc = snap_rx_check(rx, c, why);
    if (rc == 0 && c->message != NULL) {
        /* A SNAPSHOT message has no entries; refusing them first keeps m free of pointers
         * into the chunk. */
        rc = c->message->n_entries > 0 ? LATCH_EPROTO : srv_peer_msg_from_pb(c->message, &m, NULL);
        if (rc == 0 && (m.type != RAFT_MSG_SNAPSHOT || m.to != rx->self ||
                        m.snapshot.meta.index == 0 || m.entries_count > 0)) {
            rc = LATCH_EPROTO;
        }
        if (rc != 0) {
            *why = "raft: snapshot stream must start with its message";
        }
    }
    uint64_t size = c->message != NULL ? c->size : rx->size;
    if (rc == 0 && (c->data.len > size || rx->offset > size - c->data.len)) {
        *why = "raft: snapshot data beyond the announced size";
        rc = LATCH_ETOOBIG;
    }
    if (rc != 0) {
        latch__raft__v1__snapshot_chunk__free_unpacked(c, NULL);
        return rc;
    }
    if (c->message != NULL) {
        rx->msg = m;
        rx->have_msg = true;
        rx->size = c->size;
        *first = true;
    }
    rx->offset += c->data.len;
    rx->last_seen = c->last != 0;
    *data = c->data.len > 0 ? c->data.data : NULL;
    *data_len = c->data.len;
    *chunk_out = c;
    *why = NULL;
    return 0;
}

int srv_peer_snap_rx_complete(const struct srv_peer_snap_rx *rx)
{
    return rx->have_msg && rx->last_seen && rx->offset == rx->size ? 0 : LATCH_EPROTO;
}

/* ---- transport: state ------------------------------------------------------------------ */

/* One encoded Batch waiting in a peer's queue; the packed bytes follow the header. */
struct queued_batch {
    struct queued_batch *next;
    size_t len;  /* packed bytes */
    size_t msgs; /* messages in it */
    uint8_t bytes[];
};

struct peer {
    struct srv_peer *p;
    struct peer *next; /* in p->peers, or in p->dying once removed */
    raft_id id;
    struct api_channel *ch;
    struct api_ccall *call; /* the current Send call, NULL when none */
    bool writable;          /* the call takes more without would_block */
    bool removed;           /* channel closing: nothing is sent or reported any more */
    bool report_unreachable;
    bool report_snapshot_failed;
    bool report_snapshot_ok;
    struct snap_out *snap; /* the Snapshot call streaming to this peer, or NULL */
    struct queued_batch *q_head, *q_tail;
    size_t q_msgs, q_bytes;
    struct srv_peer_stats stats;
    struct latch_log_limit drop_log;
    struct latch_log_limit call_log;
    struct latch_log_limit conn_log; /* failed connection rounds */
    char *client_urls; /* owned; what the peer advertised on its last Send call, or NULL */
};

/* An incoming Send call this transport serves (api_call context). */
struct incoming {
    struct srv_peer *p;
    struct api_call *call;
    struct incoming *prev, *next;
};

struct srv_peer {
    uv_loop_t *loop;
    struct srv_peer_config cfg;
    struct peer *peers;      /* added */
    struct peer *dying;      /* removed, channel still closing */
    struct incoming *in;     /* Send calls being served */
    struct snap_in *snap_in; /* the Snapshot call being received, or NULL */
    uv_timer_t report_timer;
    uv_timer_t ensure_timer; /* starts the Send call of a connected peer that has none */
    int timers_open;
    bool report_armed;
    bool closing;
    srv_peer_close_cb done_cb;
    void *done_data;
    struct latch_log_limit unknown_log;      /* messages to peers not added */
    struct latch_log_limit misaddressed_log; /* received messages for another node */
    struct latch_log_limit refuse_log;       /* Batches refused */
};

static struct peer *peer_find(const struct srv_peer *p, raft_id id)
{
    for (struct peer *pe = p->peers; pe != NULL; pe = pe->next) {
        if (pe->id == id) {
            return pe;
        }
    }
    return NULL;
}

bool srv_peer_has(const struct srv_peer *p, raft_id id)
{
    return peer_find(p, id) != NULL;
}

struct api_channel *srv_peer_channel(struct srv_peer *p, raft_id id)
{
    struct peer *pe = p->closing ? NULL : peer_find(p, id);
    return pe != NULL && !pe->removed ? pe->ch : NULL;
}

int srv_peer_stats(const struct srv_peer *p, raft_id id, struct srv_peer_stats *out)
{
    const struct peer *pe = peer_find(p, id);
    if (pe == NULL) {
        return LATCH_ENOTFOUND;
    }
    *out = pe->stats;
    out->queued_msgs = pe->q_msgs;
    out->queued_bytes = pe->q_bytes;
    return 0;
}

/* ---- transport: reports ---------------------------------------------------------------- */

/* Runs the reports flagged since the last turn. A callback may change the peer list or close
 * the transport, so each round starts again from the head and stops once closing. */
static void report_cb(uv_timer_t *t)
{
    struct srv_peer *p = t->data;
    p->report_armed = false;
    for (;;) {
        if (p->closing) {
            return;
        }
        struct peer *pe = p->peers;
        while (pe != NULL && !pe->report_unreachable && !pe->report_snapshot_failed &&
               !pe->report_snapshot_ok) {
            pe = pe->next;
        }
        if (pe == NULL) {
            return;
        }
        raft_id id = pe->id;
        bool unreachable = pe->report_unreachable;
        bool snapshot_failed = pe->report_snapshot_failed;
        bool snapshot_ok = pe->report_snapshot_ok && !snapshot_failed;
        pe->report_unreachable = false;
        pe->report_snapshot_failed = false;
        pe->report_snapshot_ok = false;
        if (snapshot_failed || snapshot_ok) {
            p->cfg.snapshot_status(p->cfg.data, id, snapshot_ok);
        }
        if (unreachable && !p->closing) {
            p->cfg.unreachable(p->cfg.data, id);
        }
    }
}

static void report_arm(struct srv_peer *p)
{
    if (!p->report_armed && !p->closing) {
        p->report_armed = true;
        uv_timer_start(&p->report_timer, report_cb, 0, 0);
    }
}

static void peer_report_unreachable(struct peer *pe)
{
    if (pe->removed) {
        return;
    }
    pe->report_unreachable = true;
    report_arm(pe->p);
}

/* Counts msgs dropped messages, logs (rate-limited) why and reports unreachable. */
static void peer_drop(struct peer *pe, size_t msgs, const char *why)
{
    size_t n;
    pe->stats.msgs_dropped += msgs;
    if (latch_log_limit_hit(&pe->drop_log, uv_now(pe->p->loop), PEER_LOG_INTERVAL_MS, &n)) {
        latch_log(LATCH_LOG_WARN,
                  "raft transport: node %llu: dropped messages to peer %llu: %s (%zu drop(s) "
                  "since last line)",
                  (unsigned long long)pe->p->cfg.id, (unsigned long long)pe->id, why, n);
    }
    peer_report_unreachable(pe);
}

/* ---- transport: sending ---------------------------------------------------------------- */

static void queue_drop_all(struct peer *pe)
{
    struct queued_batch *b = pe->q_head;
    while (b != NULL) {
        struct queued_batch *next = b->next;
        free(b);
        b = next;
    }
    pe->q_head = pe->q_tail = NULL;
    pe->q_msgs = 0;
    pe->q_bytes = 0;
}

static void call_on_writable(struct api_ccall *call, void *data);
static void call_on_done(struct api_ccall *call, int grpc_status, const char *message, void *data);

static bool peer_start_call(struct peer *pe)
{
    static const struct api_ccall_callbacks cbs = {
        .on_message = NULL, /* the one BatchAck is not needed */
        .on_writable = call_on_writable,
        .on_done = call_on_done,
    };
    /* Who is calling and where its clients connect: the receiver keeps the URLs for
     * MemberList (etcd publishes them through Raft; latch passes them along with the stream). */
    char id[24];
    snprintf(id, sizeof(id), "%llx", (unsigned long long)pe->p->cfg.id);
    struct api_metadata md[2] = {{SRV_PEER_MD_MEMBER_ID, id}, {SRV_PEER_MD_CLIENT_URLS, ""}};
    struct api_call_opts opts = {.metadata = md, .metadata_count = 1};
    if (pe->p->cfg.client_urls != NULL && pe->p->cfg.client_urls[0] != '\0') {
        md[1].value = pe->p->cfg.client_urls;
        opts.metadata_count = 2;
    }
    int rc = api_ccall_start(pe->ch, SRV_PEER_SEND_PATH, &opts, &cbs, pe, &pe->call);
    if (rc != 0) {
        pe->call = NULL;
        return false;
    }
    pe->writable = true;
    pe->stats.calls_started++;
    return true;
}

/* Hands b to the call and frees it. */
static void peer_write(struct peer *pe, struct queued_batch *b)
{
    bool would_block = false;
    int rc = api_ccall_send(pe->call, b->bytes, b->len, &would_block);
    if (rc != 0) {
        peer_drop(pe, b->msgs, latch_strerror(rc));
    } else {
        pe->stats.msgs_sent += b->msgs;
        if (would_block) {
            pe->writable = false;
        }
    }
    free(b);
}

static void peer_flush(struct peer *pe)
{
    while (pe->call != NULL && pe->writable && pe->q_head != NULL) {
        struct queued_batch *b = pe->q_head;
        pe->q_head = b->next;
        if (pe->q_head == NULL) {
            pe->q_tail = NULL;
        }
        pe->q_msgs -= b->msgs;
        pe->q_bytes -= b->len;
        peer_write(pe, b);
    }
}

/* Sends b at once when the call takes it, queues it within the bounds, or drops it. */
static void peer_enqueue(struct peer *pe, struct queued_batch *b)
{
    if (pe->call == NULL && !peer_start_call(pe)) {
        peer_drop(pe, b->msgs, "cannot start the Send call");
        free(b);
        return;
    }
    if (pe->q_head == NULL && pe->writable) {
        peer_write(pe, b);
        return;
    }
    if (pe->q_head != NULL && (pe->q_bytes + b->len > SRV_PEER_QUEUE_BYTES_MAX ||
                               pe->q_msgs + b->msgs > SRV_PEER_QUEUE_MSGS_MAX)) {
        peer_drop(pe, b->msgs, "queue full");
        free(b);
        return;
    }
    b->next = NULL;
    if (pe->q_tail != NULL) {
        pe->q_tail->next = b;
    } else {
        pe->q_head = b;
    }
    pe->q_tail = b;
    pe->q_msgs += b->msgs;
    pe->q_bytes += b->len;
}

static void call_on_writable(struct api_ccall *call, void *data)
{
    struct peer *pe = data;
    if (pe->call != call) {
        return;
    }
    pe->writable = true;
    peer_flush(pe);
}

static void call_on_done(struct api_ccall *call, int grpc_status, const char *message, void *data)
{
    struct peer *pe = data;
    LATCH_ASSERT(pe->call == call);
    pe->call = NULL;
    pe->writable = false;
    if (pe->removed || pe->p->closing) {
        return;
    }
    if (grpc_status != API_GRPC_STATUS_OK) {
        size_t n;
        enum latch_log_level level =
            grpc_status == API_GRPC_STATUS_FAILED_PRECONDITION ? LATCH_LOG_ERROR : LATCH_LOG_WARN;
        if (latch_log_limit_hit(&pe->call_log, uv_now(pe->p->loop), PEER_LOG_INTERVAL_MS, &n)) {
            latch_log(level,
                      "raft transport: node %llu: stream to peer %llu ended: %s (status %d; "
                      "%zu time(s) since last line)",
                      (unsigned long long)pe->p->cfg.id, (unsigned long long)pe->id, message,
                      grpc_status, n);
        }
        peer_report_unreachable(pe);
    }
    /* Batches still queued were meant for the call that just ended; restarting a call for
     * them could spin against a peer that refuses every call, so they are dropped and the
     * next srv_peer_send() starts a new call. */
    if (pe->q_head != NULL) {
        size_t msgs = pe->q_msgs;
        queue_drop_all(pe);
        peer_drop(pe, msgs, "stream ended");
    }
}

/* A generous estimate of the encoded size of m (for splitting into Batches). */
static size_t msg_size_estimate(const struct raft_msg *m)
{
    size_t s = 128; /* nine varints, a bool, tags, the message's own length prefix */
    for (uint32_t i = 0; m->entries != NULL && i < m->entries_count; i++) {
        s += 40 + (size_t)m->entries[i].len;
    }
    return s;
}

/* Encodes ms[0..k) as one Batch and hands it to peer_enqueue, or drops it. */
static void peer_send_chunk(struct peer *pe, const struct raft_msg *const *ms, size_t k)
{
    uint8_t *block = NULL;
    size_t len = 0;
    int rc = pack_batch(pe->p->cfg.cluster_id, ms, k, sizeof(struct queued_batch), &block, &len);
    if (rc != 0) {
        if (rc != LATCH_ENOMEM) {
            latch_log(LATCH_LOG_ERROR,
                      "raft transport: node %llu: cannot encode %zu message(s) to peer %llu: "
                      "%s",
                      (unsigned long long)pe->p->cfg.id, k, (unsigned long long)pe->id,
                      latch_strerror(rc));
        }
        peer_drop(pe, k, latch_strerror(rc));
        return;
    }
    struct queued_batch *b = (struct queued_batch *)(void *)block;
    b->next = NULL;
    b->len = len;
    b->msgs = k;
    peer_enqueue(pe, b);
}

/* Sends the messages of msgs[0..n) addressed to pe, split into Batches. */
static void peer_send_group(struct peer *pe, const struct raft_msg *msgs, size_t n, size_t count)
{
    if (api_channel_state(pe->ch) == API_CHANNEL_TRANSIENT_FAILURE) {
        size_t drop = 0;
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].to == pe->id && msgs[i].type != RAFT_MSG_SNAPSHOT) {
                drop++;
            }
        }
        if (drop > 0) {
            peer_drop(pe, drop, "peer unreachable (channel in transient failure)");
        }
        return;
    }
    const struct raft_msg **ms = malloc(count * sizeof(*ms));
    if (ms == NULL) {
        peer_drop(pe, count, "out of memory");
        return;
    }
    size_t k = 0;
    size_t est = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_msg *m = &msgs[i];
        if (m->to != pe->id || m->type == RAFT_MSG_SNAPSHOT) {
            continue;
        }
        size_t s = msg_size_estimate(m);
        if (k > 0 && est + s > SRV_PEER_BATCH_BYTES_MAX) {
            peer_send_chunk(pe, ms, k);
            k = 0;
            est = 0;
        }
        ms[k++] = m;
        est += s;
    }
    if (k > 0) {
        peer_send_chunk(pe, ms, k);
    }
    free(ms);
}

static void peer_snap_start(struct peer *pe, const struct raft_msg *m);

void srv_peer_send(struct srv_peer *p, const struct raft_msg *msgs, size_t n)
{
    if (p->closing || n == 0) {
        return;
    }
    for (struct peer *pe = p->peers; pe != NULL; pe = pe->next) {
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].to != pe->id) {
                continue;
            }
            if (msgs[i].type == RAFT_MSG_SNAPSHOT) {
                peer_snap_start(pe, &msgs[i]);
                continue;
            }
            count++;
        }
        if (count > 0) {
            peer_send_group(pe, msgs, n, count);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (peer_find(p, msgs[i].to) == NULL) {
            size_t c;
            if (latch_log_limit_hit(&p->unknown_log, uv_now(p->loop), PEER_LOG_INTERVAL_MS, &c)) {
                latch_log(LATCH_LOG_WARN,
                          "raft transport: node %llu: dropped %s to unknown peer %llu (%zu "
                          "since last line)",
                          (unsigned long long)p->cfg.id, raft_msg_type_name(msgs[i].type),
                          (unsigned long long)msgs[i].to, c);
            }
        }
    }
}

/* ---- transport: snapshot streams, sending ---------------------------------------------- */

/* The Snapshot call streaming one file to a peer (peer.h "Snapshots"). */
struct snap_out {
    struct api_ccall *call;
    struct store_snap_reader *rd;
    struct raft_msg msg; /* the SNAPSHOT message (no entries, no data) */
    uint64_t size;
    uint64_t offset;
    bool first_sent;
    bool all_sent; /* the last chunk and the half-close are queued */
    bool writable;
    bool acked; /* SnapshotAck{installed} arrived */
    uint8_t *buf;
};

static void snap_out_free(struct snap_out *so)
{
    store_snap_reader_close(so->rd);
    free(so->buf);
    free(so);
}

static void peer_report_snapshot(struct peer *pe, bool ok)
{
    if (pe->removed) {
        return;
    }
    if (ok) {
        pe->report_snapshot_ok = true;
    } else {
        pe->report_snapshot_failed = true;
    }
    report_arm(pe->p);
}

/* Queues chunks while the call takes them; half-closes after the last. */
static void snap_out_pump(struct peer *pe)
{
    struct snap_out *so = pe->snap;
    while (so->call != NULL && so->writable && !so->all_sent) {
        size_t n = 0;
        int rc = 0;
        if (so->first_sent) {
            rc = store_snap_reader_read(so->rd, so->buf, SRV_PEER_SNAP_CHUNK_BYTES, &n);
        }
        bool last = so->first_sent && so->offset + n >= so->size;
        uint8_t *chunk = NULL;
        size_t len = 0;
        if (rc == 0) {
            rc = srv_peer_snap_chunk_encode(pe->p->cfg.cluster_id, so->first_sent ? NULL : &so->msg,
                                            so->size, so->offset, so->buf, n, last, &chunk, &len);
        }
        bool would_block = false;
        if (rc == 0) {
            rc = api_ccall_send(so->call, chunk, len, &would_block);
            free(chunk);
        }
        if (rc == 0 && last) {
            rc = api_ccall_close_send(so->call);
            so->all_sent = true;
        }
        if (rc != 0) {
            latch_log(LATCH_LOG_WARN,
                      "raft transport: node %llu: snapshot %llu to peer %llu: %s at offset %llu",
                      (unsigned long long)pe->p->cfg.id,
                      (unsigned long long)so->msg.snapshot.meta.index, (unsigned long long)pe->id,
                      latch_strerror(rc), (unsigned long long)so->offset);
            api_ccall_cancel(so->call); /* on_done reports the failure */
            return;
        }
        so->first_sent = true;
        so->offset += n;
        so->writable = !would_block;
    }
}

static void snap_on_message(struct api_ccall *call, const uint8_t *msg, size_t len, void *data)
{
    (void)call;
    struct peer *pe = data;
    Latch__Raft__V1__SnapshotAck *ack = latch__raft__v1__snapshot_ack__unpack(NULL, len, msg);
    if (ack != NULL && pe->snap != NULL) {
        pe->snap->acked = ack->installed != 0;
    }
    if (ack != NULL) {
        latch__raft__v1__snapshot_ack__free_unpacked(ack, NULL);
    }
}

static void snap_on_writable(struct api_ccall *call, void *data)
{
    struct peer *pe = data;
    if (pe->snap != NULL && pe->snap->call == call) {
        pe->snap->writable = true;
        snap_out_pump(pe);
    }
}

static void snap_on_done(struct api_ccall *call, int grpc_status, const char *message, void *data)
{
    struct peer *pe = data;
    struct snap_out *so = pe->snap;
    LATCH_ASSERT(so != NULL && so->call == call);
    pe->snap = NULL;
    bool ok = grpc_status == API_GRPC_STATUS_OK && so->acked;
    if (!pe->removed && !pe->p->closing) {
        latch_log(ok ? LATCH_LOG_INFO : LATCH_LOG_WARN,
                  "raft transport: node %llu: snapshot %llu/%llu (%llu bytes) to peer %llu: %s%s%s",
                  (unsigned long long)pe->p->cfg.id,
                  (unsigned long long)so->msg.snapshot.meta.index,
                  (unsigned long long)so->msg.snapshot.meta.term, (unsigned long long)so->size,
                  (unsigned long long)pe->id, ok ? "delivered" : "failed", ok ? "" : ": ",
                  ok ? "" : (message[0] != '\0' ? message : "no acknowledgement"));
        peer_report_snapshot(pe, ok);
    }
    snap_out_free(so);
}

/* Starts streaming the file of m to pe, or reports the snapshot failed. */
static void peer_snap_start(struct peer *pe, const struct raft_msg *m)
{
    static const struct api_ccall_callbacks cbs = {
        .on_message = snap_on_message,
        .on_writable = snap_on_writable,
        .on_done = snap_on_done,
    };
    struct srv_peer *p = pe->p;
    if (pe->snap != NULL) {
        return; /* one at a time: the core waits for the first one's report */
    }
    struct snap_out *so = calloc(1, sizeof(*so));
    int rc = so == NULL ? LATCH_ENOMEM : 0;
    if (rc == 0) {
        so->buf = malloc(SRV_PEER_SNAP_CHUNK_BYTES);
        rc = so->buf == NULL ? LATCH_ENOMEM : 0;
    }
    if (rc == 0) {
        rc = p->cfg.snapshot_open != NULL ? p->cfg.snapshot_open(p->cfg.data, m, &so->rd)
                                          : LATCH_EUNAVAILABLE;
    }
    if (rc == 0) {
        so->msg = *m;
        so->msg.entries = NULL;
        so->msg.entries_count = 0;
        so->msg.snapshot.data = NULL;
        so->msg.snapshot.len = 0;
        so->size = store_snap_reader_size(so->rd);
        struct api_call_opts opts = {.timeout_ms = SRV_PEER_SNAP_TIMEOUT_MS};
        rc = api_ccall_start(pe->ch, SRV_PEER_SNAPSHOT_PATH, &opts, &cbs, pe, &so->call);
    }
    if (rc != 0) {
        latch_log(LATCH_LOG_WARN,
                  "raft transport: node %llu: snapshot %llu for peer %llu not sent: %s",
                  (unsigned long long)p->cfg.id, (unsigned long long)m->snapshot.meta.index,
                  (unsigned long long)pe->id, latch_strerror(rc));
        if (so != NULL) {
            snap_out_free(so);
        }
        peer_report_snapshot(pe, false);
        return;
    }
    latch_log(LATCH_LOG_INFO,
              "raft transport: node %llu: sending snapshot %llu/%llu (%llu bytes) to peer %llu",
              (unsigned long long)p->cfg.id, (unsigned long long)m->snapshot.meta.index,
              (unsigned long long)m->snapshot.meta.term, (unsigned long long)so->size,
              (unsigned long long)pe->id);
    so->writable = true;
    pe->snap = so;
    snap_out_pump(pe);
}

/* ---- transport: peers ------------------------------------------------------------------ */

static void peer_check_done(struct srv_peer *p);

static void peer_channel_closed(struct api_channel *ch, void *data)
{
    (void)ch;
    struct peer *pe = data;
    struct srv_peer *p = pe->p;
    LATCH_ASSERT(pe->call == NULL); /* the channel ends its calls before it closes */
    LATCH_ASSERT(pe->snap == NULL);
    struct peer **pp = &p->dying;
    while (*pp != pe) {
        LATCH_ASSERT(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = pe->next;
    free(pe->client_urls);
    free(pe);
    peer_check_done(p);
}

/* Unlinks pe from p->peers, drops its queue and closes its channel in the background. */
static void peer_retire(struct peer *pe)
{
    struct srv_peer *p = pe->p;
    struct peer **pp = &p->peers;
    while (*pp != pe) {
        LATCH_ASSERT(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = pe->next;
    pe->next = p->dying;
    p->dying = pe;
    pe->removed = true;
    pe->report_unreachable = false;
    pe->report_snapshot_failed = false;
    pe->report_snapshot_ok = false;
    if (pe->snap != NULL) {
        api_ccall_cancel(pe->snap->call); /* its on_done frees it, reporting nothing */
    }
    queue_drop_all(pe);
    api_channel_close(pe->ch, peer_channel_closed, pe);
}

/* A round of connection attempts to the peer failed: say why (a refused connection, a TLS
 * failure such as a certificate that does not name the host dialed), rate-limited. */
static void peer_channel_state(struct api_channel *ch, enum api_channel_state state, void *data)
{
    struct peer *pe = data;
    size_t n;
    if (state == API_CHANNEL_TRANSIENT_FAILURE && !pe->removed &&
        latch_log_limit_hit(&pe->conn_log, uv_now(pe->p->loop), PEER_LOG_INTERVAL_MS, &n)) {
        latch_log(LATCH_LOG_WARN,
                  "raft transport: node %llu: cannot connect to peer %llu: %s (%zu time(s) "
                  "since last line)",
                  (unsigned long long)pe->p->cfg.id, (unsigned long long)pe->id,
                  api_channel_last_error(ch), n);
    }
}

static int
peer_make(struct srv_peer *p, raft_id id, const char *const *urls, size_t n, struct peer **out)
{
    if (n == 0 || n > SRV_PEER_URLS_MAX || urls == NULL) {
        return LATCH_EINVAL;
    }
    struct peer *pe = calloc(1, sizeof(*pe));
    if (pe == NULL) {
        return LATCH_ENOMEM;
    }
    pe->p = p;
    pe->id = id;
    struct api_channel_config cc = {
        .endpoints = urls,
        .endpoints_count = n,
        .tls = p->cfg.tls,
        /* As etcd: each peer's certificate must name the host of the URL it was dialed at
         * (IP or DNS SAN), besides chaining to --peer-trusted-ca-file. */
        .verify_host = true,
        .state_cb = peer_channel_state,
        .data = pe,
        .connect_timeout_ms = p->cfg.connect_timeout_ms,
        .backoff_initial_ms = p->cfg.backoff_initial_ms,
        .backoff_max_ms = p->cfg.backoff_max_ms,
        .max_send_queue_bytes = SRV_PEER_CALL_QUEUE_BYTES,
        .user_agent = "latch-raft/1",
    };
    int rc = api_channel_new(p->loop, &cc, &pe->ch);
    if (rc != 0) {
        free(pe);
        return rc;
    }
    *out = pe;
    return 0;
}

/*
 * Every SRV_PEER_ENSURE_MS: a connected peer without a Send call gets one. Calls are
 * otherwise started by the next message, and a follower may never send to another follower;
 * the call's metadata is how a peer learns this member's client URLs (MemberList).
 */
static void ensure_cb(uv_timer_t *t)
{
    struct srv_peer *p = t->data;
    for (struct peer *pe = p->peers; pe != NULL && !p->closing; pe = pe->next) {
        if (pe->call == NULL && !pe->removed && api_channel_state(pe->ch) == API_CHANNEL_READY) {
            peer_start_call(pe);
        }
    }
}

int srv_peer_add(struct srv_peer *p, raft_id id, const char *const *urls, size_t n)
{
    if (p->closing) {
        return LATCH_ESTATE;
    }
    if (id == RAFT_NONE || id == p->cfg.id) {
        return LATCH_EINVAL;
    }
    if (peer_find(p, id) != NULL) {
        return LATCH_EEXIST;
    }
    struct peer *pe;
    int rc = peer_make(p, id, urls, n, &pe);
    if (rc != 0) {
        return rc;
    }
    pe->next = p->peers;
    p->peers = pe;
    return 0;
}

int srv_peer_remove(struct srv_peer *p, raft_id id)
{
    struct peer *pe = peer_find(p, id);
    if (pe == NULL) {
        return LATCH_ENOTFOUND;
    }
    peer_retire(pe);
    return 0;
}

int srv_peer_update(struct srv_peer *p, raft_id id, const char *const *urls, size_t n)
{
    if (p->closing) {
        return LATCH_ESTATE;
    }
    struct peer *old = peer_find(p, id);
    if (old == NULL) {
        return LATCH_ENOTFOUND;
    }
    struct peer *pe;
    int rc = peer_make(p, id, urls, n, &pe);
    if (rc != 0) {
        return rc;
    }
    /* Queued messages are dropped and those on the old call may be lost: Raft must know. */
    bool lost = old->q_head != NULL || old->call != NULL;
    peer_retire(old);
    pe->next = p->peers;
    p->peers = pe;
    if (lost) {
        peer_report_unreachable(pe);
    }
    return 0;
}

/* ---- transport: receiving -------------------------------------------------------------- */

static void incoming_unlink(struct incoming *in)
{
    struct srv_peer *p = in->p;
    if (in->prev != NULL) {
        in->prev->next = in->next;
    } else {
        p->in = in->next;
    }
    if (in->next != NULL) {
        in->next->prev = in->prev;
    }
}

/* Answers in's call with an error and forgets it. */
static void incoming_fail(struct incoming *in, int grpc_status, const char *message)
{
    struct api_call *call = in->call;
    incoming_unlink(in);
    free(in);
    api_call_fail(call, grpc_status, message);
}

static void recv_cancel(struct api_call *call, void *data)
{
    (void)call;
    incoming_fail(data, API_GRPC_STATUS_CANCELLED, NULL); /* dead: only frees it */
}

/* Keeps the client URLs a calling peer advertised (metadata of its Send call). */
static void recv_note_client_urls(struct srv_peer *p, struct api_call *call)
{
    const char *id = api_call_metadata(call, SRV_PEER_MD_MEMBER_ID);
    const char *urls = api_call_metadata(call, SRV_PEER_MD_CLIENT_URLS);
    if (id == NULL || urls == NULL) {
        return;
    }
    char *end;
    unsigned long long v = strtoull(id, &end, 16);
    struct peer *pe = *end == '\0' ? peer_find(p, (raft_id)v) : NULL;
    if (pe == NULL || (pe->client_urls != NULL && strcmp(pe->client_urls, urls) == 0)) {
        return;
    }
    char *copy = strdup(urls);
    if (copy != NULL) {
        free(pe->client_urls);
        pe->client_urls = copy;
    }
}

const char *srv_peer_client_urls(const struct srv_peer *p, raft_id id)
{
    const struct peer *pe = peer_find(p, id);
    return pe != NULL ? pe->client_urls : NULL;
}

static void recv_start(void *data, struct api_call *call)
{
    struct srv_peer *p = data;
    if (p->closing) {
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE, "raft transport closing");
        return;
    }
    struct incoming *in = calloc(1, sizeof(*in));
    if (in == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "raft: out of memory");
        return;
    }
    in->p = p;
    in->call = call;
    in->next = p->in;
    if (p->in != NULL) {
        p->in->prev = in;
    }
    p->in = in;
    api_call_set_context(call, in);
    api_call_on_cancel(call, recv_cancel, in);
    recv_note_client_urls(p, call);
}

static void recv_refuse_log(struct srv_peer *p, const char *what)
{
    size_t n;
    if (latch_log_limit_hit(&p->refuse_log, uv_now(p->loop), PEER_LOG_INTERVAL_MS, &n)) {
        latch_log(LATCH_LOG_WARN,
                  "raft transport: node %llu: refused a peer's batch: %s (%zu since last line)",
                  (unsigned long long)p->cfg.id, what, n);
    }
}

static void recv_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    struct srv_peer *p = data;
    struct incoming *in = api_call_context(call);
    struct srv_peer_batch b;
    int rc = srv_peer_batch_decode(msg, len, &b);
    if (rc == LATCH_ENOMEM) {
        recv_refuse_log(p, "out of memory");
        incoming_fail(in, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "raft: out of memory");
        return;
    }
    if (rc != 0) {
        recv_refuse_log(p, "malformed batch");
        incoming_fail(in, API_GRPC_STATUS_INVALID_ARGUMENT, "raft: malformed batch");
        return;
    }
    if (b.cluster_id != p->cfg.cluster_id) {
        char why[96];
        snprintf(why, sizeof(why), "cluster id %016llx, expected %016llx",
                 (unsigned long long)b.cluster_id, (unsigned long long)p->cfg.cluster_id);
        srv_peer_batch_release(&b);
        recv_refuse_log(p, why);
        incoming_fail(in, API_GRPC_STATUS_FAILED_PRECONDITION, "cluster id mismatch");
        return;
    }
    for (size_t i = 0; i < b.msgs_count && !p->closing; i++) {
        const struct raft_msg *m = &b.msgs[i];
        if (m->to != p->cfg.id) {
            size_t n;
            if (latch_log_limit_hit(&p->misaddressed_log, uv_now(p->loop), PEER_LOG_INTERVAL_MS,
                                    &n)) {
                latch_log(LATCH_LOG_WARN,
                          "raft transport: node %llu: dropped %s from %llu addressed to %llu "
                          "(%zu since last line)",
                          (unsigned long long)p->cfg.id, raft_msg_type_name(m->type),
                          (unsigned long long)m->from, (unsigned long long)m->to, n);
            }
            continue;
        }
        p->cfg.deliver(p->cfg.data, m);
    }
    srv_peer_batch_release(&b);
}

static void recv_half_close(void *data, struct api_call *call)
{
    (void)data;
    struct incoming *in = api_call_context(call);
    incoming_unlink(in);
    free(in);
    Latch__Raft__V1__BatchAck ack = LATCH__RAFT__V1__BATCH_ACK__INIT;
    api_call_reply_pb(call, &ack.base);
}

/* ---- transport: snapshot streams, receiving -------------------------------------------- */

/* The one Snapshot call being received (peer.h "Receiving a snapshot"). */
struct snap_in {
    struct srv_peer *p;
    struct api_call *call;
    struct srv_peer_snap_rx rx;
    struct store_snap_writer *w; /* from the first chunk on */
};

/* Ends the call with an error (logged), aborting its writer; nothing reaches the node. */
static void snap_in_fail(struct snap_in *si, int grpc_status, const char *message)
{
    struct srv_peer *p = si->p;
    struct api_call *call = si->call;
    if (grpc_status != API_GRPC_STATUS_CANCELLED) {
        latch_log(LATCH_LOG_WARN,
                  "raft transport: node %llu: refused a snapshot stream from %llu: %s (status %d)",
                  (unsigned long long)p->cfg.id, (unsigned long long)si->rx.msg.from, message,
                  grpc_status);
    }
    if (si->w != NULL) {
        p->cfg.snapshot_recv_abort(p->cfg.data, si->w);
    }
    p->snap_in = NULL;
    free(si);
    api_call_fail(call, grpc_status, message);
}

static void snap_recv_cancel(struct api_call *call, void *data)
{
    (void)call;
    snap_in_fail(data, API_GRPC_STATUS_CANCELLED, NULL); /* dead: only frees it */
}

static void snap_recv_start(void *data, struct api_call *call)
{
    struct srv_peer *p = data;
    if (p->closing) {
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE, "raft transport closing");
        return;
    }
    if (p->cfg.snapshot_recv_begin == NULL || p->cfg.snapshot_recv_end == NULL ||
        p->cfg.snapshot_recv_abort == NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNIMPLEMENTED, "raft: snapshots not accepted");
        return;
    }
    if (p->snap_in != NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE,
                      "raft: a snapshot is already being received");
        return;
    }
    struct snap_in *si = calloc(1, sizeof(*si));
    if (si == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "raft: out of memory");
        return;
    }
    si->p = p;
    si->call = call;
    srv_peer_snap_rx_init(&si->rx, p->cfg.cluster_id, p->cfg.id);
    p->snap_in = si;
    api_call_set_context(call, si);
    api_call_on_cancel(call, snap_recv_cancel, si);
}

static int snap_status_of(int rc)
{
    switch (rc) {
    case LATCH_ENOTMEMBER:
        return API_GRPC_STATUS_FAILED_PRECONDITION;
    case LATCH_ETOOBIG:
    case LATCH_ENOMEM:
    case LATCH_ENOSPACE:
        return API_GRPC_STATUS_RESOURCE_EXHAUSTED;
    case LATCH_ESTATE:
    case LATCH_ESHUTDOWN:
        return API_GRPC_STATUS_UNAVAILABLE;
    case LATCH_EIO:
        return API_GRPC_STATUS_INTERNAL;
    default:
        return API_GRPC_STATUS_INVALID_ARGUMENT;
    }
}

static void snap_recv_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    struct srv_peer *p = data;
    struct snap_in *si = api_call_context(call);
    Latch__Raft__V1__SnapshotChunk *c = NULL;
    const uint8_t *bytes = NULL;
    size_t n = 0;
    bool first = false;
    const char *why = NULL;
    char text[128];
    int rc = srv_peer_snap_rx_chunk(&si->rx, msg, len, &c, &bytes, &n, &first, &why);
    if (rc != 0) {
        snap_in_fail(si, snap_status_of(rc), why);
        return;
    }
    if (first) {
        rc = p->cfg.snapshot_recv_begin(p->cfg.data, &si->rx.msg, &si->w);
        if (rc != 0) {
            si->w = NULL;
            snprintf(text, sizeof(text), "raft: cannot receive a snapshot now: %s",
                     latch_strerror(rc));
            srv_peer_snap_chunk_free(c);
            snap_in_fail(si, snap_status_of(rc), text);
            return;
        }
    }
    rc = n > 0 ? store_snap_writer_write(si->w, bytes, n) : 0;
    srv_peer_snap_chunk_free(c);
    if (rc == LATCH_ETOOBIG) {
        snap_in_fail(si, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "raft: snapshot too big");
    } else if (rc == LATCH_ECORRUPT || rc == LATCH_EFORMAT) {
        snap_in_fail(si, API_GRPC_STATUS_INVALID_ARGUMENT, "raft: snapshot stream corrupt");
    } else if (rc != 0) {
        snprintf(text, sizeof(text), "raft: writing the snapshot: %s", latch_strerror(rc));
        snap_in_fail(si, snap_status_of(rc), text);
    }
}

static void snap_recv_half_close(void *data, struct api_call *call)
{
    struct srv_peer *p = data;
    struct snap_in *si = api_call_context(call);
    char text[128];
    if (srv_peer_snap_rx_complete(&si->rx) != 0) {
        snap_in_fail(si, API_GRPC_STATUS_INVALID_ARGUMENT, "raft: snapshot stream truncated");
        return;
    }
    struct store_snap_writer *w = si->w;
    struct raft_msg m = si->rx.msg;
    si->w = NULL; /* recv_end takes it in every case */
    int rc = p->cfg.snapshot_recv_end(p->cfg.data, &m, w);
    if (rc != 0) {
        snprintf(text, sizeof(text), "raft: snapshot refused: %s", latch_strerror(rc));
        snap_in_fail(si,
                     rc == LATCH_ESHUTDOWN ? API_GRPC_STATUS_UNAVAILABLE
                                           : API_GRPC_STATUS_FAILED_PRECONDITION,
                     text);
        return;
    }
    p->snap_in = NULL;
    free(si);
    Latch__Raft__V1__SnapshotAck ack = LATCH__RAFT__V1__SNAPSHOT_ACK__INIT;
    ack.installed = true;
    api_call_reply_pb(call, &ack.base);
}

int srv_peer_register(struct srv_peer *p, struct api_server *s)
{
    static const struct api_stream_handler handler = {
        .start = recv_start,
        .message = recv_message,
        .half_close = recv_half_close,
    };
    static const struct api_stream_handler snap_handler = {
        .start = snap_recv_start,
        .message = snap_recv_message,
        .half_close = snap_recv_half_close,
    };
    if (p->closing) {
        return LATCH_ESTATE;
    }
    int rc = api_server_register_client_stream(s, SRV_PEER_SEND_PATH, &handler, p);
    return rc != 0 ? rc
                   : api_server_register_client_stream(s, SRV_PEER_SNAPSHOT_PATH, &snap_handler, p);
}

/* ---- transport: lifecycle -------------------------------------------------------------- */

int srv_peer_new(uv_loop_t *loop, const struct srv_peer_config *cfg, struct srv_peer **out)
{
    *out = NULL;
    if (cfg->id == RAFT_NONE || cfg->deliver == NULL || cfg->unreachable == NULL ||
        cfg->snapshot_status == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_peer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    if (uv_timer_init(loop, &p->report_timer) != 0) {
        free(p);
        return LATCH_EINVAL;
    }
    p->report_timer.data = p;
    uv_timer_init(loop, &p->ensure_timer);
    p->ensure_timer.data = p;
    p->timers_open = 2;
    uv_timer_start(&p->ensure_timer, ensure_cb, SRV_PEER_ENSURE_MS, SRV_PEER_ENSURE_MS);
    p->loop = loop;
    p->cfg = *cfg;
    *out = p;
    return 0;
}

static void peer_check_done(struct srv_peer *p)
{
    if (!p->closing || p->timers_open > 0 || p->dying != NULL) {
        return;
    }
    LATCH_ASSERT(p->peers == NULL && p->in == NULL && p->snap_in == NULL);
    srv_peer_close_cb cb = p->done_cb;
    void *data = p->done_data;
    free(p);
    if (cb != NULL) {
        cb(data);
    }
}

static void timer_closed(uv_handle_t *h)
{
    struct srv_peer *p = h->data;
    LATCH_ASSERT(p->timers_open > 0);
    p->timers_open--;
    peer_check_done(p);
}

void srv_peer_close(struct srv_peer *p, srv_peer_close_cb done_cb, void *data)
{
    LATCH_ASSERT(!p->closing);
    p->closing = true;
    p->done_cb = done_cb;
    p->done_data = data;
    while (p->peers != NULL) {
        peer_retire(p->peers);
    }
    while (p->in != NULL) {
        incoming_fail(p->in, API_GRPC_STATUS_UNAVAILABLE, "raft transport closing");
    }
    if (p->snap_in != NULL) {
        snap_in_fail(p->snap_in, API_GRPC_STATUS_UNAVAILABLE, "raft transport closing");
    }
    uv_timer_stop(&p->report_timer);
    uv_close((uv_handle_t *)&p->report_timer, timer_closed);
    uv_close((uv_handle_t *)&p->ensure_timer, timer_closed);
}
