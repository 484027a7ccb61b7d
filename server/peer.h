/*
 * peer.h — the Raft peer transport: raft_msgs between latch nodes over gRPC on HTTP/2
 * (DESIGN §5: one long-lived stream per peer pair for messages, a separate stream for
 * snapshots). Wire messages: api/proto/latch/raft/raft.proto. Decisions:
 * docs/decisions/peer-transport.md.
 *
 * Two halves:
 *
 *  - The codec (pure functions, no loop, no global state): struct raft_msg <->
 *    Latch__Raft__V1__Message, and a run of raft_msgs <-> a packed Batch with the cluster id.
 *    Decoding validates everything a peer controls and answers LATCH_EINVAL for bad input.
 *
 *  - The transport (struct srv_peer): for every known peer a channel (api/grpc_client, with
 *    reconnect and backoff) and on it one long-lived client-streaming call
 *    /latch.raft.v1.Raft/Send that carries Batches in order; the server half, registered on
 *    the node's peer api_server, decodes each Batch and hands every message to deliver().
 *
 * Sending. srv_peer_send() groups the messages by destination and encodes, per peer, the
 * messages of the call into Batches of about SRV_PEER_BATCH_BYTES_MAX (one message larger
 * than that travels alone, up to SRV_PEER_MSG_BYTES_MAX), in the order given. A Batch goes
 * onto the peer's call at once while the call accepts more; otherwise it waits in the peer's
 * queue, bounded by SRV_PEER_QUEUE_BYTES_MAX and SRV_PEER_QUEUE_MSGS_MAX (a Batch is always
 * accepted by an empty queue). Messages are DROPPED, and unreachable() reported, when:
 * the queue is full; the peer's channel is in TRANSIENT_FAILURE (nothing is queued for a
 * peer known to be down: Raft resends what matters once it is back, and stale heartbeats
 * would only waste the link); the call could not be started or refused a message; the call
 * ended with a non-OK status (messages on it may be lost; the queue is dropped too); one
 * message encodes beyond SRV_PEER_MSG_BYTES_MAX (logged as an error). Raft tolerates all of
 * these (it retransmits), which is why the transport never retries on its own.
 *
 * The call is started lazily, at the first send after the previous one ended, so a peer that
 * refuses calls at once (wrong cluster, no such method) costs one call per srv_peer_send,
 * never a busy loop. The channel itself connects when the peer is added and reconnects on
 * its own (backoff from the config).
 *
 * Snapshots. RAFT_MSG_SNAPSHOT carries only its metadata (SnapshotMeta with ConfState) on
 * the wire; the state file travels on its own call, /latch.raft.v1.Raft/Snapshot (client
 * streaming, on the peer's channel). srv_peer_send() never puts a SNAPSHOT message in a
 * Batch: it opens the file through snapshot_open() and streams it: a first SnapshotChunk
 * with the cluster id, the message and the file's size, then chunks of at most
 * SRV_PEER_SNAP_CHUNK_BYTES in order, the last one marked; then it half-closes. It reads the
 * next chunk only while the call takes more (api_ccall_send's would_block, on_writable), so
 * a stream holds about SRV_PEER_CALL_QUEUE_BYTES + one chunk of memory. One stream per peer
 * at a time: a SNAPSHOT message for a peer that is being sent one is dropped (the core waits
 * for the report of the first). The outcome is reported through snapshot_status(to, ok)
 * (from a loop callback): ok when the receiver answered SnapshotAck{installed}, false when
 * the file could not be opened, the call failed or ended without it, or the peer was
 * removed. The call has a deadline of SRV_PEER_SNAP_TIMEOUT_MS.
 *
 * Receiving a snapshot. One Snapshot call at a time per transport (store/ receives into one
 * file); another is refused UNAVAILABLE "raft: a snapshot is already being received". Each
 * chunk is checked (srv_peer_snap_rx_chunk): it must decode (INVALID_ARGUMENT "raft:
 * malformed snapshot chunk"), carry this cluster's id (FAILED_PRECONDITION "cluster id
 * mismatch"), and follow the order above (INVALID_ARGUMENT naming the fault: first chunk
 * without its SNAPSHOT message for this node, a message after the first, an offset out of
 * order, data after the last chunk or beyond the announced size). The first chunk asks
 * snapshot_recv_begin() for a writer; its data goes to store_snap_writer_write (a header or
 * CRC fault: INVALID_ARGUMENT "raft: snapshot stream corrupt"; too big for this node:
 * RESOURCE_EXHAUSTED "raft: snapshot too big"). At the client's half-close a stream without
 * its last chunk fails INVALID_ARGUMENT "raft: snapshot stream truncated"; a complete one goes
 * to snapshot_recv_end(), which verifies it and steps the message into Raft, and the call is
 * answered SnapshotAck{installed: true}; if it refuses, FAILED_PRECONDITION "raft: snapshot
 * refused: <reason>". A failed or cancelled call aborts its writer (snapshot_recv_abort), so
 * nothing of a bad stream reaches the node.
 *
 * Receiving. Each request message of a Send call is one Batch. A Batch that does not decode
 * fails the call INVALID_ARGUMENT "raft: malformed batch"; a Batch whose cluster_id differs
 * from this node's fails it FAILED_PRECONDITION "cluster id mismatch" (both logged). Messages
 * whose `to` is not this node are dropped with a log line (rate-limited). Every other message
 * goes to deliver() in order. At the client's half-close the call is answered with an empty
 * BatchAck.
 *
 * Callbacks (deliver, unreachable, snapshot_status) never run inside a srv_peer_* call: they
 * run from loop callbacks (deliver from the server's read path, the reports from a zero-delay
 * timer). A node that handles one ready across several loop turns (waiting for its storage
 * thread) may therefore get them between raft_ready() and raft_advance(), where the core
 * forbids raft_step/raft_report_*: it must keep them until raft_advance(), as raft.h says for
 * messages. Callbacks may call any srv_peer_* function, srv_peer_close() included (the
 * transport then stops delivering the rest of the Batch).
 *
 * Threads: everything runs on the loop's thread; nothing here is thread-safe. The process
 * must ignore SIGPIPE (see api/grpc_server.h).
 *
 * Out of memory: a message that cannot be encoded or queued is dropped and unreachable() is
 * reported (Raft resends); a received Batch that cannot be decoded for lack of memory fails
 * the call RESOURCE_EXHAUSTED (the sender sees unreachable and resends).
 */
#ifndef SRV_PEER_H
#define SRV_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "latch/raft/raft.pb-c.h"
#include "raft.h"
#include "store.h"

/* Target size of one encoded Batch: several small Batches keep heartbeats and votes from
 * waiting behind one huge frame, and each stays far below the receiver's message limit. */
#define SRV_PEER_BATCH_BYTES_MAX ((size_t)1 << 20)

/* Largest encoded Batch (one message alone, whatever SRV_PEER_BATCH_BYTES_MAX says). The peer
 * server must accept it: configure its api_server with max_recv_msg_size >=
 * SRV_PEER_SERVER_MAX_RECV_MSG_SIZE. 64 MiB bounds what one append with
 * raft_config.max_msg_bytes entries (each at most RAFT_ENTRY_BYTES_MAX) may take. */
#define SRV_PEER_MSG_BYTES_MAX            ((size_t)64 << 20)
#define SRV_PEER_SERVER_MAX_RECV_MSG_SIZE SRV_PEER_MSG_BYTES_MAX

/* Bound of one peer's queue (encoded bytes, messages) of Batches waiting for the call to
 * accept more; beyond it messages are dropped and unreachable() reported. 4 MiB holds a few
 * full appends; 4096 messages are more than a leader sends a follower between two acks. */
#define SRV_PEER_QUEUE_BYTES_MAX ((size_t)4 << 20)
#define SRV_PEER_QUEUE_MSGS_MAX  ((size_t)4096)

/* Bytes the call itself may hold before it reports would_block (api_channel_config
 * max_send_queue_bytes); what is beyond waits in the peer's queue. */
#define SRV_PEER_CALL_QUEUE_BYTES ((size_t)1 << 20)

/* Data bytes of one SnapshotChunk (well under the receiver's message limit), and the
 * deadline of one Snapshot call (a stuck stream must not keep the leader from retrying). */
#define SRV_PEER_SNAP_CHUNK_BYTES ((size_t)1 << 20)
#define SRV_PEER_SNAP_TIMEOUT_MS  (10u * 60u * 1000u)

/* URLs of one peer (api/grpc_client: API_CHANNEL_ENDPOINTS_MAX). */
#define SRV_PEER_URLS_MAX 16

#define SRV_PEER_SEND_PATH        "/latch.raft.v1.Raft/Send"
#define SRV_PEER_SNAPSHOT_PATH    "/latch.raft.v1.Raft/Snapshot"
/* A follower's lease requests forwarded to the leader (served by server/svc_lease.c). */
#define SRV_PEER_LEASE_RENEW_PATH "/latch.raft.v1.Raft/LeaseRenew"
#define SRV_PEER_LEASE_TTL_PATH   "/latch.raft.v1.Raft/LeaseTimeToLive"

/* ------------------------------------------------------------------------------------ */
/* Codec                                                                                */
/* ------------------------------------------------------------------------------------ */

/*
 * The protobuf view of one raft_msg, made by srv_peer_msg_to_pb(). msg is the message to pack
 * (by itself, or as an element of a Batch); its entries' bytes and the snapshot's voters and
 * learners point into the raft_msg it was made from (borrowed: that message must outlive the
 * view). The entry arrays are owned by the view; release them with srv_peer_pb_msg_release().
 */
struct srv_peer_pb_msg {
    Latch__Raft__V1__Message msg;
    Latch__Raft__V1__SnapshotMeta snap;
    Latch__Raft__V1__ConfState conf;
    void *alloc; /* the entries and their pointer array; NULL without entries */
};

/*
 * Fills pm with the protobuf view of m (see struct srv_peer_pb_msg for lifetimes). A
 * RAFT_MSG_SNAPSHOT message carries its metadata only, never m->snapshot.data. Returns 0,
 * LATCH_EINVAL (m would be refused by srv_peer_msg_from_pb: unknown type, entries_count over
 * RAFT_MSG_ENTRIES_MAX or entries NULL with a count, an entry type or length out of range, a
 * conf over RAFT_MEMBERS_MAX) or LATCH_ENOMEM; pm needs no release on failure.
 */
int srv_peer_msg_to_pb(const struct raft_msg *m, struct srv_peer_pb_msg *pm);

/* Frees what srv_peer_msg_to_pb() allocated; pm may be reused afterwards. */
void srv_peer_pb_msg_release(struct srv_peer_pb_msg *pm);

/*
 * Translates pm (a decoded wire message, borrowed) into *m. m->entries points at entries,
 * the caller's array of at least pm->n_entries elements (NULL when pm has none), whose data
 * pointers point into pm: everything *m refers to lives as long as pm and entries. Validates
 * every field a peer controls. Returns 0 or LATCH_EINVAL: type not in 1..RAFT_MSG_TYPE_COUNT-1;
 * from or to RAFT_NONE; more than RAFT_MSG_ENTRIES_MAX entries; an entry type other than
 * NORMAL/CONF or longer than RAFT_ENTRY_BYTES_MAX; a SNAPSHOT message without metadata or
 * another type with it; more than RAFT_MEMBERS_MAX voters or learners, or a RAFT_NONE member.
 */
int srv_peer_msg_from_pb(const Latch__Raft__V1__Message *pm,
                         struct raft_msg *m,
                         struct raft_entry *entries);

/*
 * Encodes msgs[0..n) (n >= 1, in order) into one packed Batch with cluster_id: *buf_out gets
 * a malloc'd buffer the caller frees, *len_out its length. The codec does not split: the
 * transport does. Returns 0, LATCH_EINVAL (a message srv_peer_msg_to_pb refuses), LATCH_ETOOBIG
 * (the Batch would exceed SRV_PEER_MSG_BYTES_MAX) or LATCH_ENOMEM; nothing is allocated then.
 */
int srv_peer_batch_encode(
    uint64_t cluster_id, const struct raft_msg *msgs, size_t n, uint8_t **buf_out, size_t *len_out);

/*
 * A decoded Batch. msgs[0..msgs_count) and everything they point to (entries, entry data)
 * are owned by the batch until srv_peer_batch_release(): the receiver copies what it keeps,
 * as raft_step() does (the node steps each message during deliver(), so nothing outlives
 * the callback). The other members are private.
 */
struct srv_peer_batch {
    uint64_t cluster_id;
    size_t msgs_count;
    struct raft_msg *msgs;
    Latch__Raft__V1__Batch *pb_;
    struct raft_entry *entries_;
};

/*
 * Decodes buf (len bytes, borrowed for the call; the batch copies what it needs) into *b.
 * Returns 0, LATCH_EINVAL (not a valid Batch, or any message refused by
 * srv_peer_msg_from_pb) or LATCH_ENOMEM; *b needs no release on failure. An empty Batch (no
 * message) is valid.
 */
int srv_peer_batch_decode(const uint8_t *buf, size_t len, struct srv_peer_batch *b);

/* Frees what srv_peer_batch_decode() allocated; b's messages are gone afterwards. */
void srv_peer_batch_release(struct srv_peer_batch *b);

/*
 * One SnapshotChunk, packed into a malloc'd *buf_out (*len_out bytes; the caller frees it):
 * m (the SNAPSHOT message, with size) for the first chunk, NULL for the others. Returns 0,
 * LATCH_EINVAL (m refused by srv_peer_msg_to_pb or not a SNAPSHOT, len over
 * SRV_PEER_SNAP_CHUNK_BYTES) or LATCH_ENOMEM.
 */
int srv_peer_snap_chunk_encode(uint64_t cluster_id,
                               const struct raft_msg *m,
                               uint64_t size,
                               uint64_t offset,
                               const uint8_t *data,
                               size_t len,
                               bool last,
                               uint8_t **buf_out,
                               size_t *len_out);

/* The receiving side's check of one Snapshot stream, chunk by chunk (no I/O). */
struct srv_peer_snap_rx {
    uint64_t cluster_id; /* expected */
    raft_id self;        /* the message's `to` */
    bool have_msg;       /* the first chunk was taken: msg is set */
    bool last_seen;
    uint64_t size;   /* announced bytes of the file */
    uint64_t offset; /* bytes taken so far */
    struct raft_msg msg;
};

void srv_peer_snap_rx_init(struct srv_peer_snap_rx *rx, uint64_t cluster_id, raft_id self);

/*
 * Decodes buf (one SnapshotChunk, len bytes, borrowed) and checks it against the stream so
 * far; on success *data and *data_len point at its data inside *chunk_out (the caller frees it
 * with srv_peer_snap_chunk_free, after using data) and rx moves on. *first is true for the
 * chunk that carried the message (rx->msg). Errors, with a sentence in *why (static):
 * LATCH_EINVAL (does not decode, or the message in it is refused), LATCH_ENOTMEMBER (another
 * cluster id), LATCH_EPROTO (out of order, see peer.h "Receiving a snapshot"), LATCH_ETOOBIG
 * (data beyond the announced size), LATCH_ENOMEM. rx is unchanged on failure.
 */
int srv_peer_snap_rx_chunk(struct srv_peer_snap_rx *rx,
                           const uint8_t *buf,
                           size_t len,
                           Latch__Raft__V1__SnapshotChunk **chunk_out,
                           const uint8_t **data,
                           size_t *data_len,
                           bool *first,
                           const char **why);

/* 0 when the stream ended with its last chunk and the announced size; else LATCH_EPROTO. */
int srv_peer_snap_rx_complete(const struct srv_peer_snap_rx *rx);

void srv_peer_snap_chunk_free(Latch__Raft__V1__SnapshotChunk *chunk); /* NULL is ignored */

/* ------------------------------------------------------------------------------------ */
/* Transport                                                                            */
/* ------------------------------------------------------------------------------------ */

struct srv_peer;
struct api_server;
struct api_tls_ctx;

struct srv_peer_config {
    raft_id id;          /* this node; never RAFT_NONE */
    uint64_t cluster_id; /* sent in every Batch; Batches with another id are refused */
    /* Client TLS context for https:// peer URLs (api_tls_ctx_new(..., server = false));
     * borrowed, must outlive the transport. NULL: only http:// URLs can be added. Every
     * connection checks the peer's certificate against the host of the URL it dialed (IP or
     * DNS subjectAltName), whatever the context's server_name; a failed round of connection
     * attempts is logged with its reason (rate-limited). */
    struct api_tls_ctx *tls;
    /* Channel knobs (api_channel_config); 0 selects the channel's defaults. */
    uint64_t connect_timeout_ms;
    uint64_t backoff_initial_ms;
    uint64_t backoff_max_ms;

    /* One received message for this node (m->to == id), in arrival order. m and everything it
     * points to are borrowed for the call: copy what you keep (raft_step() does). Required. */
    void (*deliver)(void *data, const struct raft_msg *m);
    /* Messages to peer id were dropped (see "Sending" above): raft_report_unreachable(id).
     * Reported at most once per peer per loop turn. Required. */
    void (*unreachable)(void *data, raft_id id);
    /* The snapshot sent to id was delivered (ok) or failed: raft_report_snapshot(id, ok).
     * Required. */
    void (*snapshot_status)(void *data, raft_id id, bool ok);
    /* Snapshot streams (see "Snapshots" above; srv_node_snapshot_* implement them). All may
     * be NULL: without snapshot_open a SNAPSHOT message is reported failed at once; without
     * the three receiving ones Snapshot calls are refused UNIMPLEMENTED.
     * snapshot_open: the file for m (a SNAPSHOT message being sent); *out is the transport's.
     * snapshot_recv_begin: a writer for the stream m announced (m borrowed for the call).
     * snapshot_recv_end: the stream is complete; takes w; 0 once m was handed to Raft.
     * snapshot_recv_abort: the stream failed; frees w. */
    int (*snapshot_open)(void *data, const struct raft_msg *m, struct store_snap_reader **out);
    int (*snapshot_recv_begin)(void *data,
                               const struct raft_msg *m,
                               struct store_snap_writer **out);
    int (*snapshot_recv_end)(void *data, const struct raft_msg *m, struct store_snap_writer *w);
    void (*snapshot_recv_abort)(void *data, struct store_snap_writer *w);
    void *data; /* passed back to the callbacks; borrowed */
    /* This member's advertised client URLs, comma-separated (borrowed; may be NULL). Sent as
     * metadata of every Send call, so each peer can list them (srv_peer_client_urls). */
    const char *client_urls;
};

/* Metadata of a Send call: the calling member's id (hex) and its client URLs. */
#define SRV_PEER_MD_MEMBER_ID   "latch-member-id"
#define SRV_PEER_MD_CLIENT_URLS "latch-client-urls"

/* Counters of one peer, for metrics and for tests that pace their sending. */
struct srv_peer_stats {
    size_t queued_msgs;     /* messages in the peer's queue, not yet handed to the call */
    size_t queued_bytes;    /* their encoded bytes */
    uint64_t msgs_sent;     /* messages handed to a call */
    uint64_t msgs_dropped;  /* messages dropped (each drop also reports unreachable) */
    uint64_t calls_started; /* Send calls started on the peer's channel */
};

/* Runs once when srv_peer_close() has finished; the transport is already freed. */
typedef void (*srv_peer_close_cb)(void *data);

/*
 * Makes a transport with no peer on loop (borrowed; it must outlive the transport). cfg is
 * copied (see its fields for what is borrowed). Returns 0 and sets *out, LATCH_EINVAL (id
 * RAFT_NONE, a required callback missing) or LATCH_ENOMEM; *out is NULL on failure. Free with
 * srv_peer_close().
 */
int srv_peer_new(uv_loop_t *loop, const struct srv_peer_config *cfg, struct srv_peer **out);

/*
 * Adds peer id reachable at urls[0..n) ("http://host:port", "https://host:port", or a bare
 * "host:port", which uses TLS when the config has a context; copied) and starts connecting to
 * it at once. Returns 0, LATCH_EINVAL (id RAFT_NONE or this node, n 0 or over
 * SRV_PEER_URLS_MAX, a URL the channel refuses, https without a TLS context), LATCH_EEXIST (id
 * already added), LATCH_ESTATE (closing) or LATCH_ENOMEM.
 */
int srv_peer_add(struct srv_peer *p, raft_id id, const char *const *urls, size_t n);

/*
 * Forgets peer id: its queue is dropped (without reporting unreachable), its call cancelled
 * and its channel closed in the background. Messages to id are dropped (logged) until it is
 * added again, which may happen at once. Returns 0 or LATCH_ENOTFOUND.
 */
int srv_peer_remove(struct srv_peer *p, raft_id id);

/*
 * Replaces the URLs of peer id (a membership change that moved it): as srv_peer_remove()
 * followed by srv_peer_add(), so queued messages are dropped and unreachable() is reported.
 * Returns as srv_peer_add, plus LATCH_ENOTFOUND (id unknown); on LATCH_EINVAL the old URLs
 * stay in use.
 */
int srv_peer_update(struct srv_peer *p, raft_id id, const char *const *urls, size_t n);

/* True when peer id is added. */
bool srv_peer_has(const struct srv_peer *p, raft_id id);

/*
 * The channel to peer id, for unary calls of other services on the peer listener (lease
 * forwarding: SRV_PEER_LEASE_*_PATH), or NULL when id is not added or the transport is
 * closing. Borrowed: valid until srv_peer_remove/update(id) or srv_peer_close(); a call
 * started on it ends (CANCELLED "channel closed" at the latest) when the channel closes.
 */
struct api_channel *srv_peer_channel(struct srv_peer *p, raft_id id);

/*
 * Sends msgs[0..n) (borrowed for the call; everything is encoded before it returns), each to
 * its m->to, in order per destination (see "Sending" above). Messages to an unknown peer or
 * to this node are dropped with a log line and no report; SNAPSHOT messages start a Snapshot
 * stream (see "Snapshots" above). Never fails and never calls back from inside: drops are reported
 * through unreachable() from a loop callback. Does nothing once srv_peer_close() was called.
 */
void srv_peer_send(struct srv_peer *p, const struct raft_msg *msgs, size_t n);

/* Fills *out with peer id's counters. Returns 0 or LATCH_ENOTFOUND. */
int srv_peer_stats(const struct srv_peer *p, raft_id id, struct srv_peer_stats *out);

/*
 * Routes SRV_PEER_SEND_PATH and SRV_PEER_SNAPSHOT_PATH on s (borrowed) to this transport (see
 * "Receiving" above). s should be made with max_recv_msg_size >= SRV_PEER_SERVER_MAX_RECV_MSG_SIZE,
 * or large Batches are refused by the server with RESOURCE_EXHAUSTED. The route keeps a pointer to
 * p: s must take no new call after srv_peer_close(p) — close s first, or in the same loop turn.
 * Returns as api_server_register_client_stream (0, LATCH_EEXIST, LATCH_ENOMEM), or
 * LATCH_ESTATE (closing).
 */
int srv_peer_register(struct srv_peer *p, struct api_server *s);

/*
 * Closes the transport: queues are dropped (nothing is reported any more), every peer's call
 * is cancelled and its channel closed, and every Send call this transport serves is failed
 * UNAVAILABLE "raft transport closing". After every handle has closed, done_cb(data) runs
 * (may be NULL) and p is already freed. No callback of the config runs after this call.
 * Call once.
 */
void srv_peer_close(struct srv_peer *p, srv_peer_close_cb done_cb, void *data);

/* The client URLs peer id advertised on its latest Send call to this member (comma-separated,
 * owned by p, valid until the next call from it or its removal), or NULL when it has not
 * called yet or is not a peer. For MemberList. */
const char *srv_peer_client_urls(const struct srv_peer *p, raft_id id);

#endif /* SRV_PEER_H */
