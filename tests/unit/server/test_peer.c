/*
 * test_peer.c — the Raft peer transport (server/peer.h): the codec on its own, then real
 * transports, each with its own api_server on 127.0.0.1, talking over one libuv loop.
 *
 * Waits are bounded waits for conditions (run the loop until a predicate holds or a generous
 * deadline passes); nothing asserts on elapsed time.
 */
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "grpc_server.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "latch_log.h"
#include "peer.h"

/* Buffers cross the boundary with server/peer.c (which uses libc's allocator), so the test
 * uses libc's too instead of cmocka's (UNIT_TESTING maps malloc and free to it); ASan checks
 * for leaks. */
#undef malloc
#undef calloc
#undef realloc
#undef free

/* Deadline of every wait: far beyond what a loaded CI machine needs. */
#define WAIT_MS 30000

/* ---- deterministic messages ---------------------------------------------------------- */

/* Every type the transport sends (SNAPSHOT is reported instead, see peer.h). */
static const uint32_t sendable_types[] = {
    RAFT_MSG_APPEND,          RAFT_MSG_APPEND_RESP,     RAFT_MSG_VOTE,
    RAFT_MSG_VOTE_RESP,       RAFT_MSG_PREVOTE,         RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_HEARTBEAT,       RAFT_MSG_HEARTBEAT_RESP,  RAFT_MSG_TIMEOUT_NOW,
    RAFT_MSG_READ_INDEX,      RAFT_MSG_READ_INDEX_RESP, RAFT_MSG_PROPOSE,
    RAFT_MSG_TRANSFER_LEADER,
};
#define SENDABLE_COUNT (sizeof(sendable_types) / sizeof(sendable_types[0]))

#define GEN_ENTRIES_MAX 4
#define GEN_DATA_MAX    64

/* Storage for one generated message's entries and their bytes. */
struct gen {
    struct raft_entry entries[GEN_ENTRIES_MAX];
    uint8_t data[GEN_ENTRIES_MAX][GEN_DATA_MAX];
};

static uint8_t gen_byte(uint64_t seq, uint32_t j, uint32_t k)
{
    return (uint8_t)((seq * 31u + j * 7u + k) & 0xffu);
}

/* Message number seq from -> to; context carries seq so the receiver can check the order. */
static struct raft_msg gen_msg(uint64_t seq, raft_id from, raft_id to, struct gen *g)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = sendable_types[seq % SENDABLE_COUNT];
    m.from = from;
    m.to = to;
    m.term = seq + 1;
    m.log_term = seq * 3;
    m.index = seq * 5 + 1;
    m.commit = seq / 2;
    m.reject_hint = seq ^ 0x55u;
    m.context = seq;
    m.reject = (seq % 3) == 0;
    if (m.type == RAFT_MSG_APPEND || m.type == RAFT_MSG_PROPOSE) {
        m.entries_count = (uint32_t)(seq % (GEN_ENTRIES_MAX + 1));
        for (uint32_t j = 0; j < m.entries_count; j++) {
            uint32_t len = (uint32_t)((seq + j) % GEN_DATA_MAX); /* 0 now and then */
            for (uint32_t k = 0; k < len; k++) {
                g->data[j][k] = gen_byte(seq, j, k);
            }
            g->entries[j] = (struct raft_entry){
                .term = seq + 1,
                .index = seq * 5 + 2 + j,
                .type = j % 2,
                .len = len,
                .data = len > 0 ? g->data[j] : NULL,
            };
        }
        m.entries = m.entries_count > 0 ? g->entries : NULL;
    }
    return m;
}

/* True when a and b carry the same fields, entries and (for SNAPSHOT) metadata. */
static bool msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term ||
        a->log_term != b->log_term || a->index != b->index || a->commit != b->commit ||
        a->reject_hint != b->reject_hint || a->context != b->context || a->reject != b->reject ||
        a->entries_count != b->entries_count) {
        return false;
    }
    for (uint32_t j = 0; j < a->entries_count; j++) {
        const struct raft_entry *x = &a->entries[j], *y = &b->entries[j];
        if (x->term != y->term || x->index != y->index || x->type != y->type || x->len != y->len ||
            (x->len > 0 && memcmp(x->data, y->data, x->len) != 0)) {
            return false;
        }
    }
    if (a->type == RAFT_MSG_SNAPSHOT) {
        const struct raft_snapshot_meta *x = &a->snapshot.meta, *y = &b->snapshot.meta;
        if (x->index != y->index || x->term != y->term ||
            x->conf.voters_count != y->conf.voters_count ||
            x->conf.learners_count != y->conf.learners_count ||
            memcmp(x->conf.voters, y->conf.voters, x->conf.voters_count * sizeof(raft_id)) != 0 ||
            memcmp(x->conf.learners, y->conf.learners, x->conf.learners_count * sizeof(raft_id)) !=
                0) {
            return false;
        }
    }
    return true;
}

/* ---- codec ----------------------------------------------------------------------------- */

/* One message of every type (SNAPSHOT included: its metadata), with entries with data, empty
 * entries, a reject with hint, contexts and a snapshot conf with voters and learners. */
static size_t all_types(struct raft_msg *msgs, struct gen *gens)
{
    size_t n = 0;
    for (uint32_t t = RAFT_MSG_APPEND; t < RAFT_MSG_TYPE_COUNT; t++) {
        struct raft_msg m = gen_msg(n, 1, 2, &gens[n]);
        m.type = t;
        m.entries_count = 0;
        m.entries = NULL;
        if (t == RAFT_MSG_APPEND || t == RAFT_MSG_PROPOSE) {
            struct gen *g = &gens[n];
            memset(g->data[0], 0xab, GEN_DATA_MAX);
            g->entries[0] =
                (struct raft_entry){7, 100, RAFT_ENTRY_NORMAL, GEN_DATA_MAX, g->data[0]};
            g->entries[1] = (struct raft_entry){7, 101, RAFT_ENTRY_NORMAL, 0, NULL}; /* no-op */
            g->entries[2] = (struct raft_entry){8, 102, RAFT_ENTRY_CONF, 3, g->data[0]};
            m.entries = g->entries;
            m.entries_count = 3;
        }
        if (t == RAFT_MSG_APPEND_RESP) {
            m.reject = true;
            m.reject_hint = 41;
            m.log_term = 6;
        }
        if (t == RAFT_MSG_HEARTBEAT || t == RAFT_MSG_HEARTBEAT_RESP || t == RAFT_MSG_READ_INDEX ||
            t == RAFT_MSG_READ_INDEX_RESP) {
            m.context = UINT64_MAX - t; /* large varints */
        }
        if (t == RAFT_MSG_VOTE || t == RAFT_MSG_PREVOTE) {
            m.context = RAFT_CONTEXT_TRANSFER;
        }
        if (t == RAFT_MSG_SNAPSHOT) {
            m.snapshot.meta.index = 1000;
            m.snapshot.meta.term = 9;
            m.snapshot.meta.conf.voters_count = 3;
            m.snapshot.meta.conf.voters[0] = 1;
            m.snapshot.meta.conf.voters[1] = 2;
            m.snapshot.meta.conf.voters[2] = 3;
            m.snapshot.meta.conf.learners_count = 1;
            m.snapshot.meta.conf.learners[0] = 4;
        }
        msgs[n++] = m;
    }
    return n;
}

static void test_codec_batch_round_trip_every_type(void **state)
{
    (void)state;
    struct raft_msg msgs[RAFT_MSG_TYPE_COUNT];
    struct gen gens[RAFT_MSG_TYPE_COUNT];
    size_t n = all_types(msgs, gens);
    assert_int_equal(n, RAFT_MSG_TYPE_COUNT - 1);

    uint8_t *buf;
    size_t len;
    assert_int_equal(srv_peer_batch_encode(0xfeedu, msgs, n, &buf, &len), 0);
    struct srv_peer_batch b;
    assert_int_equal(srv_peer_batch_decode(buf, len, &b), 0);
    free(buf);
    assert_int_equal(b.cluster_id, 0xfeedu);
    assert_int_equal(b.msgs_count, n);
    for (size_t i = 0; i < n; i++) {
        assert_true(msg_equal(&msgs[i], &b.msgs[i]));
        /* Snapshot data never travels inside a Message. */
        assert_null(b.msgs[i].snapshot.data);
    }
    srv_peer_batch_release(&b);
}

static void test_codec_message_round_trip(void **state)
{
    (void)state;
    struct raft_msg msgs[RAFT_MSG_TYPE_COUNT];
    struct gen gens[RAFT_MSG_TYPE_COUNT];
    size_t n = all_types(msgs, gens);
    for (size_t i = 0; i < n; i++) {
        struct srv_peer_pb_msg pm;
        assert_int_equal(srv_peer_msg_to_pb(&msgs[i], &pm), 0);
        size_t len = latch__raft__v1__message__get_packed_size(&pm.msg);
        uint8_t *buf = malloc(len + 1);
        assert_non_null(buf);
        assert_int_equal(latch__raft__v1__message__pack(&pm.msg, buf), len);
        srv_peer_pb_msg_release(&pm);

        Latch__Raft__V1__Message *back = latch__raft__v1__message__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(back);
        struct raft_entry entries[GEN_ENTRIES_MAX];
        struct raft_msg m;
        assert_int_equal(srv_peer_msg_from_pb(back, &m, entries), 0);
        assert_true(msg_equal(&msgs[i], &m));
        latch__raft__v1__message__free_unpacked(back, NULL);
    }
}

static void test_codec_generated_messages_round_trip(void **state)
{
    (void)state;
    enum { N = 500 };
    struct raft_msg *msgs = calloc(N, sizeof(*msgs));
    struct gen *gens = calloc(N, sizeof(*gens));
    assert_non_null(msgs);
    assert_non_null(gens);
    for (size_t i = 0; i < N; i++) {
        msgs[i] = gen_msg(i, 3, 1, &gens[i]);
    }
    uint8_t *buf;
    size_t len;
    assert_int_equal(srv_peer_batch_encode(0, msgs, N, &buf, &len), 0);
    struct srv_peer_batch b;
    assert_int_equal(srv_peer_batch_decode(buf, len, &b), 0);
    free(buf);
    assert_int_equal(b.cluster_id, 0);
    assert_int_equal(b.msgs_count, N);
    for (size_t i = 0; i < N; i++) {
        assert_true(msg_equal(&msgs[i], &b.msgs[i]));
    }
    srv_peer_batch_release(&b);
    free(msgs);
    free(gens);
}

static void test_codec_empty_batch(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    assert_int_equal(srv_peer_batch_encode(5, NULL, 0, &buf, &len), 0);
    struct srv_peer_batch b;
    assert_int_equal(srv_peer_batch_decode(buf, len, &b), 0);
    free(buf);
    assert_int_equal(b.cluster_id, 5);
    assert_int_equal(b.msgs_count, 0);
    srv_peer_batch_release(&b);
    /* Zero bytes are a valid (empty) Batch too. */
    assert_int_equal(srv_peer_batch_decode((const uint8_t *)"", 0, &b), 0);
    assert_int_equal(b.msgs_count, 0);
    srv_peer_batch_release(&b);
}

static void test_codec_encode_refuses_bad_messages(void **state)
{
    (void)state;
    struct gen g;
    struct raft_msg m = gen_msg(0, 1, 2, &g);
    uint8_t *buf = NULL;
    size_t len;

    struct raft_msg bad = m;
    bad.type = 0;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    bad.type = RAFT_MSG_TYPE_COUNT;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    bad = m;
    bad.to = RAFT_NONE;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    bad = m;
    bad.entries_count = 2;
    bad.entries = NULL;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    struct raft_entry e = {1, 1, 9, 0, NULL};
    bad = m;
    bad.entries = &e;
    bad.entries_count = 1;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    bad = m;
    bad.type = RAFT_MSG_SNAPSHOT;
    bad.snapshot.meta.conf.voters_count = RAFT_MEMBERS_MAX + 1;
    assert_int_equal(srv_peer_batch_encode(1, &bad, 1, &buf, &len), LATCH_EINVAL);
    assert_null(buf);
}

/* Packs one hand-made Message in a Batch and decodes it. */
static int decode_pb(Latch__Raft__V1__Message *pm)
{
    Latch__Raft__V1__Message *ptrs[] = {pm};
    Latch__Raft__V1__Batch batch = LATCH__RAFT__V1__BATCH__INIT;
    batch.n_messages = 1;
    batch.messages = ptrs;
    size_t len = latch__raft__v1__batch__get_packed_size(&batch);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    latch__raft__v1__batch__pack(&batch, buf);
    struct srv_peer_batch b;
    int rc = srv_peer_batch_decode(buf, len, &b);
    free(buf);
    if (rc == 0) {
        srv_peer_batch_release(&b);
    }
    return rc;
}

static void test_codec_decode_refuses_invalid_fields(void **state)
{
    (void)state;
    Latch__Raft__V1__Message pm = LATCH__RAFT__V1__MESSAGE__INIT;
    pm.type = RAFT_MSG_HEARTBEAT;
    pm.from = 1;
    pm.to = 2;
    assert_int_equal(decode_pb(&pm), 0); /* the baseline is valid */

    pm.type = 0;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    pm.type = RAFT_MSG_TYPE_COUNT;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    pm.type = 1000;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    pm.type = RAFT_MSG_HEARTBEAT;
    pm.from = 0;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    pm.from = 1;
    pm.to = 0;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    pm.to = 2;

    /* An entry of an unknown type. */
    Latch__Raft__V1__Entry e = LATCH__RAFT__V1__ENTRY__INIT;
    Latch__Raft__V1__Entry *eps[] = {&e};
    e.type = 2;
    pm.type = RAFT_MSG_APPEND;
    pm.n_entries = 1;
    pm.entries = eps;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    e.type = RAFT_ENTRY_CONF;
    assert_int_equal(decode_pb(&pm), 0);
    pm.n_entries = 0;
    pm.entries = NULL;

    /* Snapshot metadata only on SNAPSHOT, and always there. */
    Latch__Raft__V1__SnapshotMeta sm = LATCH__RAFT__V1__SNAPSHOT_META__INIT;
    Latch__Raft__V1__ConfState cs = LATCH__RAFT__V1__CONF_STATE__INIT;
    sm.conf = &cs;
    pm.snapshot = &sm;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL); /* APPEND with metadata */
    pm.type = RAFT_MSG_SNAPSHOT;
    assert_int_equal(decode_pb(&pm), 0);
    pm.snapshot = NULL;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL); /* SNAPSHOT without metadata */
    pm.snapshot = &sm;

    /* Too many voters, a RAFT_NONE learner. */
    uint64_t many[RAFT_MEMBERS_MAX + 1];
    for (size_t i = 0; i < RAFT_MEMBERS_MAX + 1; i++) {
        many[i] = i + 1;
    }
    cs.voters = many;
    cs.n_voters = RAFT_MEMBERS_MAX + 1;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
    cs.n_voters = RAFT_MEMBERS_MAX;
    assert_int_equal(decode_pb(&pm), 0);
    uint64_t zero = 0;
    cs.learners = &zero;
    cs.n_learners = 1;
    assert_int_equal(decode_pb(&pm), LATCH_EINVAL);
}

static void test_codec_decode_refuses_garbage(void **state)
{
    (void)state;
    struct srv_peer_batch b;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(srv_peer_batch_decode(junk, sizeof(junk), &b), LATCH_EINVAL);
    /* Field 2 (messages) claiming 100 bytes with 2 present. */
    const uint8_t short_len[] = {0x12, 0x64, 0x08, 0x01};
    assert_int_equal(srv_peer_batch_decode(short_len, sizeof(short_len), &b), LATCH_EINVAL);
    /* A message with type 0 (an unknown type) after a valid cluster id. */
    const uint8_t bad_type[] = {0x08, 0x07, 0x12, 0x06, 0x08, 0x00, 0x10, 0x01, 0x18, 0x02};
    assert_int_equal(srv_peer_batch_decode(bad_type, sizeof(bad_type), &b), LATCH_EINVAL);
}

/* Every prefix of a packed Batch, and the Batch with every byte replaced: decoding never
 * crashes or leaks (ASan), and answers only 0 or LATCH_EINVAL. */
static void test_codec_truncated_and_corrupted_batches(void **state)
{
    (void)state;
    struct raft_msg msgs[RAFT_MSG_TYPE_COUNT];
    struct gen gens[RAFT_MSG_TYPE_COUNT];
    size_t n = all_types(msgs, gens);
    uint8_t *buf;
    size_t len;
    assert_int_equal(srv_peer_batch_encode(0x1234567890abcdefu, msgs, n, &buf, &len), 0);
    size_t ok = 0, refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *prefix = malloc(cut + 1); /* exact size, so ASan sees any overread */
        assert_non_null(prefix);
        memcpy(prefix, buf, cut);
        struct srv_peer_batch b;
        int rc = srv_peer_batch_decode(prefix, cut, &b);
        assert_true(rc == 0 || rc == LATCH_EINVAL);
        if (rc == 0) {
            ok++;
            assert_true(b.msgs_count < n); /* a prefix never holds every message */
            srv_peer_batch_release(&b);
        } else {
            refused++;
        }
        free(prefix);
    }
    assert_true(refused > 0);
    assert_true(ok > 0); /* at least the empty prefix */
    for (size_t i = 0; i < len; i++) {
        static const uint8_t subst[] = {0x00, 0xff, 0x80, 0x7f};
        for (size_t s = 0; s < sizeof(subst); s++) {
            uint8_t *copy = malloc(len);
            assert_non_null(copy);
            memcpy(copy, buf, len);
            copy[i] = subst[s];
            struct srv_peer_batch b;
            int rc = srv_peer_batch_decode(copy, len, &b);
            assert_true(rc == 0 || rc == LATCH_EINVAL);
            if (rc == 0) {
                srv_peer_batch_release(&b);
            }
            free(copy);
        }
    }
    free(buf);
}

/* ---- snapshot stream codec ------------------------------------------------------------- */

static struct raft_msg snap_msg(raft_id from, raft_id to)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = from, .to = to, .term = 4};
    m.snapshot.meta.index = 90;
    m.snapshot.meta.term = 3;
    m.snapshot.meta.conf.voters_count = 3;
    m.snapshot.meta.conf.voters[0] = 1;
    m.snapshot.meta.conf.voters[1] = 2;
    m.snapshot.meta.conf.voters[2] = 3;
    return m;
}

/* Packs one chunk (m for the first) into *buf (freed by the caller). */
static size_t chunk_pack(uint64_t cluster_id,
                         const struct raft_msg *m,
                         uint64_t size,
                         uint64_t offset,
                         const uint8_t *data,
                         size_t len,
                         bool last,
                         uint8_t **buf)
{
    size_t n = 0;
    assert_int_equal(
        srv_peer_snap_chunk_encode(cluster_id, m, size, offset, data, len, last, buf, &n), 0);
    return n;
}

/* Feeds one packed chunk to rx; returns the error and frees everything. */
static int chunk_feed(struct srv_peer_snap_rx *rx, uint8_t *buf, size_t len, size_t *data_len)
{
    Latch__Raft__V1__SnapshotChunk *c = NULL;
    const uint8_t *data = NULL;
    size_t n = 0;
    bool first = false;
    const char *why = NULL;
    int rc = srv_peer_snap_rx_chunk(rx, buf, len, &c, &data, &n, &first, &why);
    if (rc == 0) {
        assert_null(why);
        assert_non_null(c);
    } else {
        assert_non_null(why);
        assert_null(c);
    }
    if (data_len != NULL) {
        *data_len = n;
    }
    srv_peer_snap_chunk_free(c);
    free(buf);
    return rc;
}

static void test_snapshot_stream_chunks_round_trip(void **state)
{
    (void)state;
    static uint8_t file[3000];
    for (size_t i = 0; i < sizeof(file); i++) {
        file[i] = (uint8_t)(i * 13u);
    }
    struct raft_msg m = snap_msg(1, 2);
    struct srv_peer_snap_rx rx;
    srv_peer_snap_rx_init(&rx, 77, 2);
    uint8_t *buf;
    size_t len = chunk_pack(77, &m, sizeof(file), 0, NULL, 0, false, &buf);
    Latch__Raft__V1__SnapshotChunk *c = NULL;
    const uint8_t *data;
    size_t n;
    bool first;
    const char *why;
    assert_int_equal(srv_peer_snap_rx_chunk(&rx, buf, len, &c, &data, &n, &first, &why), 0);
    assert_true(first);
    assert_int_equal(n, 0);
    assert_true(rx.have_msg);
    assert_int_equal(rx.msg.type, RAFT_MSG_SNAPSHOT);
    assert_int_equal(rx.msg.from, 1);
    assert_int_equal(rx.msg.snapshot.meta.index, 90);
    assert_int_equal(rx.msg.snapshot.meta.term, 3);
    assert_int_equal(rx.msg.snapshot.meta.conf.voters_count, 3);
    assert_int_equal(rx.size, sizeof(file));
    srv_peer_snap_chunk_free(c);
    free(buf);
    assert_int_equal(srv_peer_snap_rx_complete(&rx), LATCH_EPROTO);

    static uint8_t got[3000];
    size_t off = 0;
    while (off < sizeof(file)) {
        size_t k = sizeof(file) - off < 1024 ? sizeof(file) - off : 1024;
        bool last = off + k == sizeof(file);
        len = chunk_pack(77, NULL, 0, off, file + off, k, last, &buf);
        assert_int_equal(srv_peer_snap_rx_chunk(&rx, buf, len, &c, &data, &n, &first, &why), 0);
        assert_false(first);
        assert_int_equal(n, k);
        memcpy(got + off, data, n);
        srv_peer_snap_chunk_free(c);
        free(buf);
        off += k;
        assert_int_equal(srv_peer_snap_rx_complete(&rx), last ? 0 : LATCH_EPROTO);
    }
    assert_memory_equal(got, file, sizeof(file));
    assert_true(rx.last_seen);
    /* Nothing may follow the last chunk. */
    len = chunk_pack(77, NULL, 0, off, file, 1, true, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_EPROTO);
}

static void test_snapshot_stream_refuses_another_cluster(void **state)
{
    (void)state;
    struct raft_msg m = snap_msg(1, 2);
    struct srv_peer_snap_rx rx;
    srv_peer_snap_rx_init(&rx, 77, 2);
    uint8_t *buf;
    size_t len = chunk_pack(78, &m, 100, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_ENOTMEMBER);
    assert_false(rx.have_msg); /* unchanged */
    /* A later chunk with the wrong id is refused too. */
    len = chunk_pack(77, &m, 100, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    uint8_t data[10] = {0};
    len = chunk_pack(78, NULL, 0, 0, data, sizeof(data), false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_ENOTMEMBER);
    assert_int_equal(rx.offset, 0);
}

static void test_snapshot_stream_refuses_chunks_out_of_order(void **state)
{
    (void)state;
    struct raft_msg m = snap_msg(1, 2);
    uint8_t data[100];
    memset(data, 7, sizeof(data));
    struct srv_peer_snap_rx rx;
    uint8_t *buf;
    size_t len;

    /* Data before the message. */
    srv_peer_snap_rx_init(&rx, 77, 2);
    len = chunk_pack(77, NULL, 0, 0, data, 10, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_EPROTO);

    /* A message for another node, and a message of another type. */
    struct raft_msg other = snap_msg(1, 3);
    len = chunk_pack(77, &other, 200, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_EPROTO);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 4};
    assert_int_equal(srv_peer_snap_chunk_encode(77, &hb, 200, 0, NULL, 0, false, &buf, &len),
                     LATCH_EINVAL);

    /* The message, then a gap, a repeat of the message, data beyond the size. */
    len = chunk_pack(77, &m, 200, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    len = chunk_pack(77, NULL, 0, 50, data, 10, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_EPROTO);
    len = chunk_pack(77, &m, 200, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_EPROTO);
    len = chunk_pack(77, NULL, 0, 0, data, 100, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    len = chunk_pack(77, NULL, 0, 100, data, 100, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    len = chunk_pack(77, NULL, 0, 200, data, 1, true, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), LATCH_ETOOBIG);
    assert_int_equal(rx.offset, 200);
    /* All bytes are in, but the last chunk never came: truncated. */
    assert_int_equal(srv_peer_snap_rx_complete(&rx), LATCH_EPROTO);
    len = chunk_pack(77, NULL, 0, 200, NULL, 0, true, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    assert_int_equal(srv_peer_snap_rx_complete(&rx), 0);

    /* A stream that ends early: the last chunk says so, the size does not agree. */
    srv_peer_snap_rx_init(&rx, 77, 2);
    len = chunk_pack(77, &m, 200, 0, NULL, 0, false, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    len = chunk_pack(77, NULL, 0, 0, data, 100, true, &buf);
    assert_int_equal(chunk_feed(&rx, buf, len, NULL), 0);
    assert_int_equal(srv_peer_snap_rx_complete(&rx), LATCH_EPROTO);

    /* Garbage, and every prefix of a valid first chunk, never crash. */
    srv_peer_snap_rx_init(&rx, 77, 2);
    uint8_t garbage[16];
    memset(garbage, 0xff, sizeof(garbage));
    uint8_t *g = malloc(sizeof(garbage));
    memcpy(g, garbage, sizeof(garbage));
    assert_int_equal(chunk_feed(&rx, g, sizeof(garbage), NULL), LATCH_EINVAL);
    len = chunk_pack(77, &m, 200, 0, NULL, 0, false, &buf);
    for (size_t cut = 0; cut < len; cut++) {
        Latch__Raft__V1__SnapshotChunk *c = NULL;
        const uint8_t *d;
        size_t n;
        bool first;
        const char *why;
        int rc = srv_peer_snap_rx_chunk(&rx, buf, cut, &c, &d, &n, &first, &why);
        assert_true(rc <= 0); /* never a crash; most prefixes are refused */
        srv_peer_snap_chunk_free(c);
        srv_peer_snap_rx_init(&rx, 77, 2);
    }
    free(buf);
}

/* ---- transports on one loop ----------------------------------------------------------- */

struct node {
    uv_loop_t *loop;
    raft_id id;
    uint64_t cluster_id;
    struct api_server *srv;
    int port;
    struct srv_peer *peer;
    bool peer_closed;
    bool srv_closed;

    bool strict;              /* check every delivered message against gen_msg */
    uint64_t next_seq[8];     /* strict: the next context expected from each sender */
    uint64_t delivered;       /* messages delivered */
    uint64_t mismatches;      /* strict: messages out of order or not as sent */
    uint64_t last_context[8]; /* the context of the last message from each sender */
    uint64_t entry_bytes;     /* bytes of entries delivered */
    uint64_t entry_bad;       /* entries whose bytes are not the large-test pattern */
    bool check_large;
    uint64_t unreachable[8]; /* reports per peer id */
    uint64_t snapshot_failed[8];
    uint64_t snapshot_ok[8];
};

static void node_deliver(void *data, const struct raft_msg *m)
{
    struct node *nd = data;
    nd->delivered++;
    if (m->from < 8) {
        nd->last_context[m->from] = m->context;
    }
    for (uint32_t j = 0; j < m->entries_count; j++) {
        nd->entry_bytes += m->entries[j].len;
        if (nd->check_large) {
            for (uint32_t k = 0; k < m->entries[j].len; k++) {
                if (m->entries[j].data[k] != (uint8_t)(j + k + m->context)) {
                    nd->entry_bad++;
                    break;
                }
            }
        }
    }
    if (nd->strict) {
        if (m->from >= 8 || m->context != nd->next_seq[m->from]) {
            nd->mismatches++;
            return;
        }
        struct gen g;
        struct raft_msg want = gen_msg(m->context, m->from, nd->id, &g);
        if (!msg_equal(&want, m)) {
            nd->mismatches++;
        }
        nd->next_seq[m->from]++;
    }
}

static void node_unreachable(void *data, raft_id id)
{
    struct node *nd = data;
    if (id < 8) {
        nd->unreachable[id]++;
    }
}

static void node_snapshot_status(void *data, raft_id id, bool ok)
{
    struct node *nd = data;
    if (id < 8 && ok) {
        nd->snapshot_ok[id]++;
    } else if (id < 8) {
        nd->snapshot_failed[id]++;
    }
}

static void srv_closed_cb(struct api_server *s)
{
    (void)s;
}

static void node_listen(struct node *nd, int port)
{
    struct api_server_config sc = {.max_recv_msg_size = SRV_PEER_SERVER_MAX_RECV_MSG_SIZE};
    assert_int_equal(api_server_new(nd->loop, &sc, &nd->srv), 0);
    assert_int_equal(srv_peer_register(nd->peer, nd->srv), 0);
    assert_int_equal(api_server_listen(nd->srv, "127.0.0.1", port, &nd->port), 0);
    assert_true(nd->port > 0);
}

static void node_init(struct node *nd, uv_loop_t *loop, raft_id id, uint64_t cluster_id)
{
    memset(nd, 0, sizeof(*nd));
    nd->loop = loop;
    nd->id = id;
    nd->cluster_id = cluster_id;
    struct srv_peer_config cfg = {
        .id = id,
        .cluster_id = cluster_id,
        .connect_timeout_ms = 2000,
        .backoff_initial_ms = 10,
        .backoff_max_ms = 100,
        .deliver = node_deliver,
        .unreachable = node_unreachable,
        .snapshot_status = node_snapshot_status,
        .data = nd,
    };
    assert_int_equal(srv_peer_new(loop, &cfg, &nd->peer), 0);
    node_listen(nd, 0);
}

/* Makes from know to at to's address. */
static void node_connect(struct node *from, const struct node *to, raft_id as_id)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", to->port);
    const char *urls[] = {url};
    assert_int_equal(srv_peer_add(from->peer, as_id, urls, 1), 0);
}

static void peer_closed_cb(void *data)
{
    *(bool *)data = true;
}

static bool g_srv_closed_flag;
static void srv_closed_flag_cb(struct api_server *s)
{
    (void)s;
    g_srv_closed_flag = true;
}

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until pred(ctx) holds; false when WAIT_MS passed first. */
static bool run_until(uv_loop_t *loop, bool (*pred)(void *ctx), void *ctx)
{
    bool expired = false;
    uv_timer_t deadline;
    uv_timer_init(loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, WAIT_MS, 0);
    while (!pred(ctx) && !expired) {
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred(ctx);
}

/* Closes every node's transport and server in one loop turn, then runs the loop dry. */
static void nodes_close(uv_loop_t *loop, struct node **nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        srv_peer_close(nodes[i]->peer, peer_closed_cb, &nodes[i]->peer_closed);
        if (nodes[i]->srv != NULL) {
            api_server_close(nodes[i]->srv, srv_closed_cb);
            nodes[i]->srv = NULL;
        }
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < n; i++) {
        assert_true(nodes[i]->peer_closed);
    }
    assert_int_equal(uv_loop_close(loop), 0); /* no handle left behind */
}

struct delivered_wait {
    struct node *nd;
    uint64_t want;
};

static bool delivered_at_least(void *ctx)
{
    struct delivered_wait *w = ctx;
    return w->nd->delivered >= w->want;
}

struct two_way {
    struct node *a, *b;
    uint64_t want;
};

static bool both_delivered(void *ctx)
{
    struct two_way *w = ctx;
    return w->a->delivered >= w->want && w->b->delivered >= w->want;
}

struct queue_wait {
    struct node *nd;
    raft_id to;
    size_t below;
};

static bool queue_below(void *ctx)
{
    struct queue_wait *w = ctx;
    struct srv_peer_stats st;
    assert_int_equal(srv_peer_stats(w->nd->peer, w->to, &st), 0);
    return st.queued_msgs < w->below;
}

struct unreachable_wait {
    struct node *nd;
    raft_id id;
    uint64_t above;
};

static bool unreachable_above(void *ctx)
{
    struct unreachable_wait *w = ctx;
    return w->nd->unreachable[w->id] > w->above;
}

/* Sends count generated messages from 'from' to 'to', numbered from *seq on, in calls of up
 * to PER_CALL messages. */
static void send_generated(struct node *from, raft_id to, uint64_t *seq, size_t count)
{
    enum { PER_CALL = 100 };
    struct raft_msg msgs[PER_CALL];
    static struct gen gens[PER_CALL];
    while (count > 0) {
        size_t k = count < PER_CALL ? count : PER_CALL;
        for (size_t i = 0; i < k; i++) {
            msgs[i] = gen_msg((*seq)++, from->id, to, &gens[i]);
        }
        srv_peer_send(from->peer, msgs, k);
        count -= k;
    }
}

static void test_transport_ten_thousand_each_way(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);
    n1.strict = n2.strict = true;
    node_connect(&n1, &n2, 2);
    node_connect(&n2, &n1, 1);

    enum { TOTAL = 10000, ROUND = 500 };
    uint64_t seq12 = 0, seq21 = 0;
    while (seq12 < TOTAL) {
        send_generated(&n1, 2, &seq12, ROUND);
        send_generated(&n2, 1, &seq21, ROUND);
        /* Pace like Raft's inflight window: keep each queue well within its bound. */
        struct queue_wait q1 = {&n1, 2, 1000}, q2 = {&n2, 1, 1000};
        assert_true(run_until(&loop, queue_below, &q1));
        assert_true(run_until(&loop, queue_below, &q2));
    }
    struct two_way w = {&n1, &n2, TOTAL};
    assert_true(run_until(&loop, both_delivered, &w));
    assert_int_equal(n1.delivered, TOTAL);
    assert_int_equal(n2.delivered, TOTAL);
    assert_int_equal(n1.mismatches, 0);
    assert_int_equal(n2.mismatches, 0);
    assert_int_equal(n2.next_seq[1], TOTAL);
    assert_int_equal(n1.next_seq[2], TOTAL);
    assert_int_equal(n1.unreachable[2], 0);
    assert_int_equal(n2.unreachable[1], 0);
    struct srv_peer_stats st;
    assert_int_equal(srv_peer_stats(n1.peer, 2, &st), 0);
    assert_int_equal(st.msgs_sent, TOTAL);
    assert_int_equal(st.msgs_dropped, 0);
    assert_int_equal(st.calls_started, 1); /* one long-lived stream */

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

static void test_transport_cluster_id_mismatch_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n2, n3;
    node_init(&n2, &loop, 2, 77);
    node_init(&n3, &loop, 3, 78); /* another cluster */
    node_connect(&n3, &n2, 2);

    uint64_t seq = 0;
    send_generated(&n3, 2, &seq, 5);
    struct unreachable_wait w = {&n3, 2, 0};
    assert_true(run_until(&loop, unreachable_above, &w));
    assert_int_equal(n2.delivered, 0);

    /* Every later attempt is refused the same way; nothing is ever delivered. */
    uint64_t before = n3.unreachable[2];
    send_generated(&n3, 2, &seq, 5);
    w.above = before;
    assert_true(run_until(&loop, unreachable_above, &w));
    assert_int_equal(n2.delivered, 0);
    struct srv_peer_stats st;
    assert_int_equal(srv_peer_stats(n3.peer, 2, &st), 0);
    assert_int_equal(st.calls_started, 2);

    struct node *all[] = {&n2, &n3};
    nodes_close(&loop, all, 2);
}

/* Sends one message 1 -> 2 every few ms, numbered upwards, while a wait runs. */
struct ticker {
    uv_timer_t timer;
    struct node *from;
    raft_id to;
    uint64_t seq;
};

static void ticker_cb(uv_timer_t *t)
{
    struct ticker *tk = t->data;
    send_generated(tk->from, tk->to, &tk->seq, 1);
}

struct resumed_wait {
    struct node *nd;
    raft_id from;
    uint64_t min_context;
};

static bool resumed(void *ctx)
{
    struct resumed_wait *w = ctx;
    return w->nd->delivered > 0 && w->nd->last_context[w->from] >= w->min_context;
}

static bool srv_closed_flag(void *ctx)
{
    (void)ctx;
    return g_srv_closed_flag;
}

static void test_transport_peer_down_then_back(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);
    node_connect(&n1, &n2, 2);

    uint64_t seq = 0;
    send_generated(&n1, 2, &seq, 10);
    struct delivered_wait dw = {&n2, 10};
    assert_true(run_until(&loop, delivered_at_least, &dw));

    /* Peer 2's server goes away: the stream breaks and node 1 hears that 2 is unreachable. */
    int port = n2.port;
    g_srv_closed_flag = false;
    api_server_close(n2.srv, srv_closed_flag_cb);
    n2.srv = NULL;
    assert_true(run_until(&loop, srv_closed_flag, NULL));
    struct unreachable_wait uw = {&n1, 2, 0};
    struct ticker tk = {.from = &n1, .to = 2, .seq = 1000};
    uv_timer_init(&loop, &tk.timer);
    tk.timer.data = &tk;
    uv_timer_start(&tk.timer, ticker_cb, 5, 5);
    assert_true(run_until(&loop, unreachable_above, &uw));

    /* Sends while it is down keep being reported. */
    uw.above = n1.unreachable[2];
    assert_true(run_until(&loop, unreachable_above, &uw));
    uint64_t delivered_while_down = n2.delivered;
    assert_int_equal(delivered_while_down, 10);

    /* Back on the same port: delivery resumes (the channel reconnects on its own). */
    node_listen(&n2, port);
    assert_int_equal(n2.port, port);
    struct resumed_wait rw = {&n2, 1, tk.seq};
    assert_true(run_until(&loop, resumed, &rw));
    assert_true(n2.delivered > delivered_while_down);
    uv_timer_stop(&tk.timer);
    uv_close((uv_handle_t *)&tk.timer, NULL);

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

static void test_transport_large_messages(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);
    n2.check_large = true;
    node_connect(&n1, &n2, 2);

    /* One append of 64 entries x 64 KiB = 4 MiB: a Batch on its own. */
    enum { BIG_ENTRIES = 64, BIG_LEN = 64 << 10 };
    struct raft_entry *es = calloc(BIG_ENTRIES, sizeof(*es));
    uint8_t *data = malloc((size_t)BIG_ENTRIES * BIG_LEN);
    assert_non_null(es);
    assert_non_null(data);
    for (uint32_t j = 0; j < BIG_ENTRIES; j++) {
        uint8_t *d = data + (size_t)j * BIG_LEN;
        for (uint32_t k = 0; k < BIG_LEN; k++) {
            d[k] = (uint8_t)(j + k + 1); /* context 1 */
        }
        es[j] = (struct raft_entry){5, 100 + j, RAFT_ENTRY_NORMAL, BIG_LEN, d};
    }
    struct raft_msg big = {
        .type = RAFT_MSG_APPEND,
        .from = 1,
        .to = 2,
        .term = 5,
        .index = 99,
        .context = 1,
        .entries_count = BIG_ENTRIES,
        .entries = es,
    };
    srv_peer_send(n1.peer, &big, 1);
    struct delivered_wait dw = {&n2, 1};
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_int_equal(n2.entry_bytes, (uint64_t)BIG_ENTRIES * BIG_LEN);
    assert_int_equal(n2.entry_bad, 0);

    /* Eight appends of 8 x 60000 bytes (3.8 MB) in one call: split into Batches of at most
     * SRV_PEER_BATCH_BYTES_MAX, delivered whole and in order. */
    enum { MID = 8, MID_ENTRIES = 8, MID_LEN = 60000 };
    struct raft_msg mids[MID];
    struct raft_entry mid_es[MID][MID_ENTRIES];
    uint8_t *mid_data = malloc((size_t)MID * MID_ENTRIES * MID_LEN);
    assert_non_null(mid_data);
    for (uint32_t i = 0; i < MID; i++) {
        uint64_t ctx = 2 + i;
        for (uint32_t j = 0; j < MID_ENTRIES; j++) {
            uint8_t *d = mid_data + ((size_t)i * MID_ENTRIES + j) * MID_LEN;
            for (uint32_t k = 0; k < MID_LEN; k++) {
                d[k] = (uint8_t)(j + k + ctx);
            }
            mid_es[i][j] = (struct raft_entry){5, 200 + i * MID_ENTRIES + j, 0, MID_LEN, d};
        }
        mids[i] = (struct raft_msg){
            .type = RAFT_MSG_APPEND,
            .from = 1,
            .to = 2,
            .term = 5,
            .context = ctx,
            .entries_count = MID_ENTRIES,
            .entries = mid_es[i],
        };
    }
    srv_peer_send(n1.peer, mids, MID);
    dw.want = 1 + MID;
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_int_equal(n2.last_context[1], 1 + MID);
    assert_int_equal(n2.entry_bytes,
                     (uint64_t)BIG_ENTRIES * BIG_LEN + (uint64_t)MID * MID_ENTRIES * MID_LEN);
    assert_int_equal(n2.entry_bad, 0);
    struct srv_peer_stats st;
    assert_int_equal(srv_peer_stats(n1.peer, 2, &st), 0);
    assert_int_equal(st.msgs_dropped, 0);
    assert_int_equal(n1.unreachable[2], 0);

    free(es);
    free(data);
    free(mid_data);
    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

struct snap_wait {
    struct node *nd;
    raft_id id;
};

static bool snapshot_reported(void *ctx)
{
    struct snap_wait *w = ctx;
    return w->nd->snapshot_failed[w->id] > 0;
}

/* Without snapshot files (no snapshot_open), sending one reports a failed snapshot, nothing
 * else. */
static void test_transport_snapshot_reported_failed(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);
    node_connect(&n1, &n2, 2);

    struct gen g;
    struct raft_msg m[2];
    m[0] = (struct raft_msg){.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 3};
    m[0].snapshot.meta.index = 50;
    m[1] = gen_msg(7, 1, 2, &g); /* a message beside it still goes */
    srv_peer_send(n1.peer, m, 2);
    assert_int_equal(n1.snapshot_failed[2], 0); /* never from inside srv_peer_send */
    struct snap_wait sw = {&n1, 2};
    assert_true(run_until(&loop, snapshot_reported, &sw));
    struct delivered_wait dw = {&n2, 1};
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_int_equal(n2.delivered, 1);
    assert_int_equal(n2.last_context[1], 7);
    assert_int_equal(n1.unreachable[2], 0);

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

/* Counts log lines that contain g_log_needle. */
static const char *g_log_needle;
static unsigned g_log_hits;
static void counting_sink(void *data, enum latch_log_level level, const char *msg)
{
    (void)data;
    (void)level;
    if (g_log_needle != NULL && strstr(msg, g_log_needle) != NULL) {
        g_log_hits++;
    }
}

static bool log_hit(void *ctx)
{
    (void)ctx;
    return g_log_hits > 0;
}

/* A message whose `to` is not the receiving node is dropped there with a log line; the
 * stream goes on. */
static void test_transport_misaddressed_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);
    node_connect(&n1, &n2, 3); /* node 1 believes node 3 lives at node 2's address */
    node_connect(&n1, &n2, 2);
    g_log_needle = "addressed to 3";
    g_log_hits = 0;
    latch_log_set_sink(counting_sink, NULL);
    latch_log_set_level(LATCH_LOG_WARN);

    uint64_t seq = 0;
    send_generated(&n1, 3, &seq, 3);
    send_generated(&n1, 2, &seq, 2);
    struct delivered_wait dw = {&n2, 2};
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_true(run_until(&loop, log_hit, NULL));
    assert_int_equal(n2.delivered, 2);
    assert_int_equal(n2.last_context[1], 4);
    struct srv_peer_stats st;
    assert_int_equal(srv_peer_stats(n1.peer, 3, &st), 0);
    assert_int_equal(st.msgs_sent, 3);
    assert_int_equal(n1.unreachable[3], 0); /* the stream itself is fine */

    latch_log_set_sink(NULL, NULL);
    latch_log_set_level(LATCH_LOG_ERROR);
    g_log_needle = NULL;
    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

static void test_transport_peer_management(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    node_init(&n2, &loop, 2, 77);

    const char *bad[] = {"http://127.0.0.1:notaport"};
    const char *https[] = {"https://127.0.0.1:1"};
    const char *ok[] = {"http://127.0.0.1:1"};
    assert_int_equal(srv_peer_add(n1.peer, 1, ok, 1), LATCH_EINVAL);         /* itself */
    assert_int_equal(srv_peer_add(n1.peer, RAFT_NONE, ok, 1), LATCH_EINVAL); /* none */
    assert_int_equal(srv_peer_add(n1.peer, 2, ok, 0), LATCH_EINVAL);
    assert_int_equal(srv_peer_add(n1.peer, 2, bad, 1), LATCH_EINVAL);
    assert_int_equal(srv_peer_add(n1.peer, 2, https, 1), LATCH_EINVAL); /* no TLS context */
    assert_false(srv_peer_has(n1.peer, 2));
    assert_int_equal(srv_peer_add(n1.peer, 2, ok, 1), 0); /* nothing listens there */
    assert_true(srv_peer_has(n1.peer, 2));
    assert_int_equal(srv_peer_add(n1.peer, 2, ok, 1), LATCH_EEXIST);
    assert_int_equal(srv_peer_remove(n1.peer, 5), LATCH_ENOTFOUND);
    assert_int_equal(srv_peer_update(n1.peer, 5, ok, 1), LATCH_ENOTFOUND);
    assert_int_equal(srv_peer_update(n1.peer, 2, bad, 1), LATCH_EINVAL);

    /* Sends to the wrong address fail and are reported... */
    uint64_t seq = 0;
    send_generated(&n1, 2, &seq, 3);
    struct unreachable_wait uw = {&n1, 2, 0};
    assert_true(run_until(&loop, unreachable_above, &uw));

    /* ...until the address is corrected. Messages to an unknown peer vanish quietly. */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", n2.port);
    const char *good[] = {url};
    assert_int_equal(srv_peer_update(n1.peer, 2, good, 1), 0);
    send_generated(&n1, 6, &seq, 2);
    send_generated(&n1, 2, &seq, 4);
    struct delivered_wait dw = {&n2, 4};
    assert_true(run_until(&loop, delivered_at_least, &dw));

    /* Removed, then added again at once. */
    assert_int_equal(srv_peer_remove(n1.peer, 2), 0);
    assert_false(srv_peer_has(n1.peer, 2));
    send_generated(&n1, 2, &seq, 2); /* dropped: unknown */
    assert_int_equal(srv_peer_add(n1.peer, 2, good, 1), 0);
    send_generated(&n1, 2, &seq, 3);
    dw.want = 7;
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_int_equal(n2.last_context[1], seq - 1);

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
}

/* A callback may close the transport: deliver() stops at once, the rest is cleaned up. */
static void closing_deliver(void *data, const struct raft_msg *m)
{
    (void)m;
    struct node *nd = data;
    nd->delivered++;
    srv_peer_close(nd->peer, peer_closed_cb, &nd->peer_closed);
}

static void test_transport_close_from_deliver(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    node_init(&n1, &loop, 1, 77);
    memset(&n2, 0, sizeof(n2));
    n2.loop = &loop;
    n2.id = 2;
    struct srv_peer_config cfg = {
        .id = 2,
        .cluster_id = 77,
        .deliver = closing_deliver,
        .unreachable = node_unreachable,
        .snapshot_status = node_snapshot_status,
        .data = &n2,
    };
    assert_int_equal(srv_peer_new(&loop, &cfg, &n2.peer), 0);
    node_listen(&n2, 0);
    node_connect(&n1, &n2, 2);
    uint64_t seq = 0;
    send_generated(&n1, 2, &seq, 20);
    struct delivered_wait dw = {&n2, 1};
    assert_true(run_until(&loop, delivered_at_least, &dw));
    assert_int_equal(n2.delivered, 1);

    srv_peer_close(n1.peer, peer_closed_cb, &n1.peer_closed);
    api_server_close(n1.srv, srv_closed_cb);
    api_server_close(n2.srv, srv_closed_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(n1.peer_closed);
    assert_true(n2.peer_closed);
    assert_int_equal(n2.delivered, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- snapshot streams between two transports ------------------------------------------- */

/* The files behind the snapshot callbacks: a source store with a snapshot of a few MiB (so
 * the stream has several chunks and meets the call's flow control), a destination store. */
static struct {
    struct store *src;
    struct store *dst;
    char src_dir[64];
    char dst_dir[64];
    char path[4096];
    struct store_snap_meta meta;
    unsigned begun;
    unsigned ended;
    unsigned aborted;
    int end_rc;
} g_snap;

static int t_snap_open(void *data, const struct raft_msg *m, struct store_snap_reader **out)
{
    (void)data;
    (void)m;
    return store_snap_reader_open(g_snap.src, g_snap.path, NULL, out);
}

static int t_snap_begin(void *data, const struct raft_msg *m, struct store_snap_writer **out)
{
    (void)data;
    (void)m;
    g_snap.begun++;
    return store_snap_writer_new(g_snap.dst, out);
}

static int t_snap_end(void *data, const struct raft_msg *m, struct store_snap_writer *w)
{
    (void)data;
    struct store_snap_meta *meta = malloc(sizeof(*meta));
    assert_non_null(meta);
    int rc = store_snap_writer_verify(w, meta);
    if (rc == 0 && (meta->index != m->snapshot.meta.index || meta->term != m->snapshot.meta.term)) {
        rc = LATCH_EPROTO;
    }
    free(meta);
    store_snap_writer_abort(w); /* verified is enough here; node.c installs */
    g_snap.ended++;
    g_snap.end_rc = rc;
    return rc;
}

static void t_snap_abort(void *data, struct store_snap_writer *w)
{
    (void)data;
    g_snap.aborted++;
    store_snap_writer_abort(w);
}

static void snap_stores_open(void)
{
    memset(&g_snap, 0, sizeof(g_snap));
    snprintf(g_snap.src_dir, sizeof(g_snap.src_dir), "/tmp/latch-peer-snap-XXXXXX");
    snprintf(g_snap.dst_dir, sizeof(g_snap.dst_dir), "/tmp/latch-peer-snap-XXXXXX");
    assert_non_null(mkdtemp(g_snap.src_dir));
    assert_non_null(mkdtemp(g_snap.dst_dir));
    struct store_options o;
    store_options_defaults(&o);
    o.no_sync = true;
    o.map_bytes_initial = 16u << 20;
    o.dir = g_snap.src_dir;
    assert_int_equal(store_open(&o, &g_snap.src, NULL, 0), 0);
    o.dir = g_snap.dst_dir;
    assert_int_equal(store_open(&o, &g_snap.dst, NULL, 0), 0);

    /* Three puts of 1 MiB values that do not compress away. */
    static uint8_t value[1u << 20];
    static uint8_t cmd[(1u << 20) + 256];
    struct latch_arena a;
    latch_arena_init(&a, 0);
    for (uint64_t i = 1; i <= 3; i++) {
        for (size_t k = 0; k < sizeof(value); k++) {
            value[k] = (uint8_t)((k * 2654435761u + i) >> 7);
        }
        char key[8];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        struct store_op op = {.type = STORE_OP_PUT};
        op.u.put.key = (const uint8_t *)key;
        op.u.put.key_len = (uint32_t)strlen(key);
        op.u.put.value = value;
        op.u.put.value_len = sizeof(value);
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = &op;
        c.u.txn.success_count = 1;
        size_t len = 0;
        assert_int_equal(store_cmd_encode(&c, cmd, sizeof(cmd), &len), 0);
        struct store_apply_item item = {
            .index = i, .term = 1, .kind = STORE_ITEM_CMD, .len = (uint32_t)len, .data = cmd};
        struct store_result res;
        latch_arena_reset(&a);
        assert_int_equal(store_apply(g_snap.src, &item, 1, &a, &res), 0);
        assert_int_equal(res.err, 0);
    }
    latch_arena_close(&a);
    assert_int_equal(
        store_snapshot_create(g_snap.src, &g_snap.meta, g_snap.path, sizeof(g_snap.path)), 0);
    assert_int_equal(g_snap.meta.index, 3);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void snap_stores_close(void)
{
    store_close(g_snap.src);
    store_close(g_snap.dst);
    nftw(g_snap.src_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    nftw(g_snap.dst_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A transport node whose snapshot callbacks use g_snap. */
static void snap_node_init(struct node *nd, uv_loop_t *loop, raft_id id, uint64_t cluster_id)
{
    memset(nd, 0, sizeof(*nd));
    nd->loop = loop;
    nd->id = id;
    nd->cluster_id = cluster_id;
    struct srv_peer_config cfg = {
        .id = id,
        .cluster_id = cluster_id,
        .connect_timeout_ms = 2000,
        .backoff_initial_ms = 10,
        .backoff_max_ms = 100,
        .deliver = node_deliver,
        .unreachable = node_unreachable,
        .snapshot_status = node_snapshot_status,
        .snapshot_open = t_snap_open,
        .snapshot_recv_begin = t_snap_begin,
        .snapshot_recv_end = t_snap_end,
        .snapshot_recv_abort = t_snap_abort,
        .data = nd,
    };
    assert_int_equal(srv_peer_new(loop, &cfg, &nd->peer), 0);
    node_listen(nd, 0);
}

static uint64_t g_snap_reports_before;

static bool snapshot_settled(void *ctx)
{
    struct snap_wait *w = ctx;
    return w->nd->snapshot_failed[w->id] + w->nd->snapshot_ok[w->id] > g_snap_reports_before;
}

/* Sends one SNAPSHOT message for g_snap's file from n1 to n2 and waits for the report. */
static void snap_send(uv_loop_t *loop, struct node *n1, uint64_t index)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 5};
    m.snapshot.meta.index = index;
    m.snapshot.meta.term = g_snap.meta.term;
    g_snap_reports_before = n1->snapshot_failed[2] + n1->snapshot_ok[2];
    srv_peer_send(n1->peer, &m, 1);
    srv_peer_send(n1->peer, &m, 1); /* a second one while the first streams is dropped */
    struct snap_wait sw = {n1, 2};
    assert_true(run_until(loop, snapshot_settled, &sw));
}

static void test_transport_snapshot_streamed_and_acknowledged(void **state)
{
    (void)state;
    snap_stores_open();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    snap_node_init(&n1, &loop, 1, 77);
    snap_node_init(&n2, &loop, 2, 77);
    node_connect(&n1, &n2, 2);

    snap_send(&loop, &n1, g_snap.meta.index);
    assert_int_equal(n1.snapshot_ok[2], 1);
    assert_int_equal(n1.snapshot_failed[2], 0);
    assert_int_equal(g_snap.begun, 1); /* the duplicate was not streamed */
    assert_int_equal(g_snap.ended, 1);
    assert_int_equal(g_snap.end_rc, 0);
    assert_int_equal(g_snap.aborted, 0);

    /* A message that does not match the file: the receiver refuses it, the sender hears. */
    snap_send(&loop, &n1, g_snap.meta.index + 1);
    assert_int_equal(n1.snapshot_failed[2], 1);
    assert_int_equal(g_snap.end_rc, LATCH_EPROTO);

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
    snap_stores_close();
}

static void test_transport_snapshot_from_another_cluster_refused(void **state)
{
    (void)state;
    snap_stores_open();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n1, n2;
    snap_node_init(&n1, &loop, 1, 77);
    snap_node_init(&n2, &loop, 2, 78);
    node_connect(&n1, &n2, 2);

    snap_send(&loop, &n1, g_snap.meta.index);
    assert_int_equal(n1.snapshot_failed[2], 1);
    assert_int_equal(n1.snapshot_ok[2], 0);
    assert_int_equal(g_snap.begun, 0); /* refused before a writer was made */
    assert_int_equal(g_snap.ended, 0);

    struct node *all[] = {&n1, &n2};
    nodes_close(&loop, all, 2);
    snap_stores_close();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    latch_log_set_level(LATCH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_batch_round_trip_every_type),
        cmocka_unit_test(test_codec_message_round_trip),
        cmocka_unit_test(test_codec_generated_messages_round_trip),
        cmocka_unit_test(test_codec_empty_batch),
        cmocka_unit_test(test_codec_encode_refuses_bad_messages),
        cmocka_unit_test(test_codec_decode_refuses_invalid_fields),
        cmocka_unit_test(test_codec_decode_refuses_garbage),
        cmocka_unit_test(test_codec_truncated_and_corrupted_batches),
        cmocka_unit_test(test_snapshot_stream_chunks_round_trip),
        cmocka_unit_test(test_snapshot_stream_refuses_another_cluster),
        cmocka_unit_test(test_snapshot_stream_refuses_chunks_out_of_order),
        cmocka_unit_test(test_transport_ten_thousand_each_way),
        cmocka_unit_test(test_transport_cluster_id_mismatch_refused),
        cmocka_unit_test(test_transport_peer_down_then_back),
        cmocka_unit_test(test_transport_large_messages),
        cmocka_unit_test(test_transport_snapshot_reported_failed),
        cmocka_unit_test(test_transport_snapshot_streamed_and_acknowledged),
        cmocka_unit_test(test_transport_snapshot_from_another_cluster_refused),
        cmocka_unit_test(test_transport_misaddressed_dropped),
        cmocka_unit_test(test_transport_peer_management),
        cmocka_unit_test(test_transport_close_from_deliver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
