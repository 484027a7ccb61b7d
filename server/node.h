/*
 * node.h — the node: drives the Raft core (consensus/) with the storage engine (store/) on
 * two threads (DESIGN §6). docs/decisions/node.md says why it is built this way.
 *
 * THREADS
 *
 *   loop thread     the caller's libuv loop. Every function of this header is called here,
 *                   and every callback runs here. It owns the struct raft (step, tick,
 *                   propose, read_index, ready, advance), the store_log_* readers the core
 *                   uses, and one struct store_reader for the caller's reads.
 *   storage thread  one pthread the node starts and joins. It does every store write:
 *                   store_log_append (hard state + entries, synced), then store_apply of the
 *                   committed entries. It never reads through a store_reader.
 *
 * The two hand one work item back and forth through a mutex + condition variable (loop ->
 * storage) and a uv_async_t (storage -> loop); nothing else is shared. At most one work item
 * is in flight, because one ready is in flight (consensus/raft.h: no input between
 * raft_ready() and raft_advance()).
 *
 * THE READY PIPELINE, once per loop turn (a uv_check_t, kept from blocking by a uv_idle_t
 * while there is work), so everything proposed or received in one turn goes into one ready:
 *
 *   raft_ready -> send rd.msgs now (the leader appends while its followers do, thesis
 *   §10.2.1) -> storage thread: store_log_append, then store_apply -> loop thread: send
 *   rd.msgs_after_persist, complete the proposals and reads the applied entries allow,
 *   raft_advance, store_log_release -> step what arrived meanwhile, tick what was missed.
 *
 * A ready with nothing to persist or apply (heartbeats, read states) is finished on the
 * loop thread without a round trip. Messages, proposals and reads that arrive while a ready
 * is out are queued (messages deep-copied) and fed to the core after raft_advance().
 *
 * PROPOSALS carry a 16-byte header before the store_cmd bytes: the proposer's node id and a
 * per-node sequence number (little-endian u64 each). When an entry is applied, the node
 * that proposed it completes the matching proposal with the store_result. A proposal is
 * acknowledged only after it is applied on this node.
 *
 * ERRORS are negative LATCH_E* codes (common/latch_error.h). A store write that fails
 * (LATCH_EIO: the store is in ERROR, store_failed(); or LATCH_ENOSPACE, or any other) stops
 * the node for good: the failing ready is never advanced, so the node sends no vote and no
 * acknowledgement again; pending and new proposals and reads fail with that code; the
 * failure is logged at ERROR. Serializable reads keep working. Only close helps.
 *
 * NOT YET: snapshots (the core's storage answers LATCH_EUNAVAILABLE; a received snapshot
 * stops the node), log compaction, membership change RPCs, leadership transfer on shutdown,
 * lease expiry. See docs/decisions/node.md.
 */
#ifndef SERVER_NODE_H
#define SERVER_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "latch_error.h"
#include "raft.h"
#include "store.h"

#define SRV_NODE_TICK_MS_DEFAULT     100u  /* one tick = one heartbeat (etcd's 100 ms) */
#define SRV_NODE_ELECTION_MS_DEFAULT 1000u /* etcd's --election-timeout */

/* Bytes before the command in every entry the node proposes: proposer id, sequence. */
#define SRV_NODE_ENTRY_HEADER_BYTES 16u

/* Ticks remembered while a ready is out; more are dropped (the core only needs to know
 * that at least an election timeout passed). */
#define SRV_NODE_MISSED_TICKS_MAX 64u

/* Committed entry bytes per ready, hence per store_apply transaction: bounds the write
 * transaction a replay after a long outage makes. */
#define SRV_NODE_APPLY_BATCH_BYTES ((uint64_t)16 << 20)

/*
 * The node's own outcomes, beyond what raft_propose and the store give:
 *  - SRV_NODE_ELEADERCHANGED: the proposal's entry was replaced in the log by a new
 *    leader's; it will never be applied (etcd "leader changed"). Safe to retry. A read
 *    whose leader changed before it got a read index fails with it too.
 *  - SRV_NODE_ETIMEDOUT: no outcome within the timeout. For a proposal the outcome is
 *    UNKNOWN: the entry may still be applied later (etcd "request timed out").
 */
#define SRV_NODE_ELEADERCHANGED LATCH_ELEADERCHANGED
#define SRV_NODE_ETIMEDOUT      LATCH_ETIMEDOUT

/* Version byte of the membership record (srv_node_conf_encode). */
#define SRV_NODE_CONF_VERSION 1u

struct srv_node;

/*
 * Called with the messages of one ready, on the loop thread. msgs (n >= 1 of them) and
 * everything they point to are borrowed for the call: copy what must outlive it. Must not
 * call srv_node_close(); srv_node_step() is allowed (it is queued).
 */
typedef void (*srv_node_send_fn)(void *data, const struct raft_msg *msgs, size_t n);

/* The known leader changed (RAFT_NONE: none known), for logs and metrics. Loop thread. */
typedef void (*srv_node_leader_fn)(void *data, raft_id leader, raft_term term);

/*
 * The outcome of srv_node_propose. err 0: the entry was applied on this node and res (never
 * NULL then) is its deterministic result: res->err is the command's own outcome (etcd's
 * answer, e.g. LATCH_ENOTFOUND or a failed txn compare's results), res->revision the store
 * revision after it. res and everything it points to are borrowed for the call only (they
 * live in the apply batch's arena). err < 0: the node's error (see srv_node_propose), res
 * NULL.
 */
typedef void (*srv_node_propose_cb)(void *data, int err, const struct store_result *res);

/* The outcome of srv_node_read_index: err 0 means this node has applied everything that
 * was committed when the read was asked for; read through srv_node_reader() now. */
typedef void (*srv_node_read_cb)(void *data, int err);

/*
 * An apply batch has completed: revision is the store revision after it (never lower than
 * the one reported before; equal when the batch changed no key). Runs on the loop thread
 * once per batch that applied at least one entry, after the batch's proposals and the reads
 * it allows were completed, and only while the node runs (not once srv_node_close() was
 * called). For watchers (server/watch.h): read what changed through srv_node_reader(). Must
 * not call srv_node_close().
 */
typedef void (*srv_node_applied_fn)(void *data, int64_t revision);

/* srv_node_close() has finished; the node is freed. */
typedef void (*srv_node_close_cb)(void *data);

struct srv_node_config {
    raft_id id; /* this node, never RAFT_NONE */

    /*
     * Store options; store.dir is the data dir (borrowed for srv_node_new). store.no_sync
     * is for tests and benchmarks only: acknowledged writes can be lost in a crash.
     */
    struct store_options store;

    /*
     * The voters of a new cluster, identical on every node (--initial-cluster). A data dir
     * that has recorded a membership ignores it. Borrowed for srv_node_new; at most
     * RAFT_MEMBERS_MAX. Zero voters: a node waiting to be added (passive follower).
     */
    const raft_id *initial_voters;
    size_t initial_voters_count;

    uint32_t tick_ms;                 /* heartbeat interval; 0: SRV_NODE_TICK_MS_DEFAULT */
    uint32_t election_ms;             /* 0: SRV_NODE_ELECTION_MS_DEFAULT; >= 2 ticks */
    uint32_t proposal_timeout_ms;     /* 0: 5000 + 2 x election_ms (etcd's request timeout) */
    uint32_t read_timeout_ms;         /* 0: 2 x election_ms */
    bool disable_proposal_forwarding; /* followers refuse proposals (LATCH_ENOLEADER) */

    void *data;                  /* passed back to send, leader and applied */
    srv_node_send_fn send;       /* required */
    srv_node_leader_fn leader;   /* may be NULL */
    srv_node_applied_fn applied; /* may be NULL */
};

/* Fills cfg with defaults (store_options_defaults, zero timeouts meaning the defaults,
 * no id, no voters, no callbacks). */
void srv_node_config_init(struct srv_node_config *cfg);

/*
 * Opens the store at cfg->store.dir, creates the Raft core from what it holds (hard state,
 * log, membership, applied index; a fresh store starts from cfg->initial_voters), starts
 * the storage thread and the tick timer on loop (borrowed; it must outlive the node).
 * cfg is copied. errmsg (may be NULL) gets one sentence on failure.
 * *out is released with srv_node_close(). Errors: LATCH_EINVAL (bad config: no id, no send,
 * election shorter than two ticks, too many voters), LATCH_ENOMEM, the errors of
 * store_open (LATCH_EIO, LATCH_EFORMAT, LATCH_ECORRUPT, ...), LATCH_ECORRUPT (a membership
 * record that does not decode), and raft_new's.
 */
int srv_node_new(uv_loop_t *loop,
                 const struct srv_node_config *cfg,
                 struct srv_node **out,
                 char *errmsg,
                 size_t errmsg_size);

/*
 * Stops the node: stops ticking, fails every pending proposal and read with
 * LATCH_ESHUTDOWN (a proposal in the batch being written may still be applied: treat it
 * as unknown), lets the storage thread finish the work item in flight (never half a
 * batch), joins it, closes the store and every handle, then calls done_cb (may be NULL)
 * with data and frees the node. The callbacks of this node run no more after done_cb; the
 * pending ones run from a later loop callback, not from inside this call. Call once.
 */
void srv_node_close(struct srv_node *n, srv_node_close_cb done_cb, void *data);

/*
 * Proposes cmd (len bytes of a store_cmd_encode()d command; copied) for replication.
 * Proposals of one loop turn go to the core together. On a follower the core forwards the
 * entry to the leader. cb (required) runs exactly once, with 0 and the result after the
 * entry was applied on this node, or with an error: what raft_propose refused with
 * (LATCH_ENOLEADER, LATCH_ETRANSFER, LATCH_EUNCOMMITTED, LATCH_ENOTMEMBER, LATCH_ETOOBIG,
 * LATCH_ENOMEM: never appended), SRV_NODE_ELEADERCHANGED (a new leader replaced the entry:
 * never applied), SRV_NODE_ETIMEDOUT (unknown outcome), LATCH_ESHUTDOWN (close; unknown
 * outcome), or the store failure that stopped the node (unknown outcome).
 * Returns 0, or without calling cb: LATCH_EINVAL (len 0), LATCH_ETOOBIG (len +
 * SRV_NODE_ENTRY_HEADER_BYTES > RAFT_ENTRY_BYTES_MAX), LATCH_ESHUTDOWN (closing),
 * LATCH_ENOMEM, or the code of the store failure that stopped the node (LATCH_EIO, ...).
 */
int srv_node_propose(
    struct srv_node *n, const uint8_t *cmd, size_t len, srv_node_propose_cb cb, void *data);

/*
 * Asks for a linearizable read point (ReadIndex, thesis §6.4): cb (required) runs once,
 * with 0 when this node has applied up to the leader's commit index as of the request
 * (then read through srv_node_reader()), or with LATCH_ENOLEADER (no leader known),
 * SRV_NODE_ELEADERCHANGED (the leader changed before answering), SRV_NODE_ETIMEDOUT (no
 * answer within read_timeout_ms), LATCH_ETOOBIG (too many reads pending at the leader),
 * LATCH_ESHUTDOWN, or the store failure code. Returns 0, or without calling cb:
 * LATCH_ESHUTDOWN, LATCH_ENOMEM, the store failure code. Serializable reads need nothing
 * from the node: read through srv_node_reader() at any time.
 */
int srv_node_read_index(struct srv_node *n, srv_node_read_cb cb, void *data);

/*
 * Feeds one message from a peer (m borrowed for the call; deep-copied when it must wait for
 * the ready in flight). Dropped while closing or stopped by a store failure, as a lossy
 * network would. Returns 0 or LATCH_ENOMEM (dropped).
 */
int srv_node_step(struct srv_node *n, const struct raft_msg *m);

/* The transport could not reach id (raft_report_unreachable, queued like a message). */
void srv_node_report_unreachable(struct srv_node *n, raft_id id);

struct srv_node_status {
    raft_id id;
    raft_term term;
    raft_id leader; /* RAFT_NONE when unknown */
    enum raft_role role;
    raft_index commit;
    raft_index applied; /* applied to the store and advanced */
    raft_index last_index;
    int failed; /* 0, or the store error that stopped the node */
};

/* A snapshot of the node's state; allowed at any time on the loop thread. */
void srv_node_status(const struct srv_node *n, struct srv_node_status *st);

/*
 * The loop thread's reader of the node's store, for serializable reads (and linearizable
 * ones after srv_node_read_index). Borrowed until srv_node_close(); loop thread only. Pin it
 * only within one callback (store_reader_pin), never across a wait.
 */
struct store_reader *srv_node_reader(struct srv_node *n);

/*
 * The membership record kept in the store (STORE_ITEM_CONF, store_conf): version byte
 * SRV_NODE_CONF_VERSION, voters_count and learners_count (u32), then the voter ids and the
 * learner ids (u64), all little-endian. encode: LATCH_ETOOBIG (cap too small), LATCH_EINVAL
 * (counts above RAFT_MEMBERS_MAX). decode: LATCH_ECORRUPT (wrong version, length or counts).
 */
int srv_node_conf_encode(const struct raft_conf_state *conf,
                         uint8_t *buf,
                         size_t cap,
                         size_t *len_out);
int srv_node_conf_decode(const uint8_t *buf, size_t len, struct raft_conf_state *conf);

#endif /* SERVER_NODE_H */
