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
 *                   store_log_append (entries + the hard state when the ready must sync,
 *                   synced; a commit-only change is not persisted), then store_apply of the
 *                   committed entries. It never reads through a store_reader.
 *   snapshot thread started at the first snapshot, joined at close: store_snapshot_write
 *                   only (a copy of the state beside the writes; see SNAPSHOTS).
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
 * SNAPSHOTS AND LOG COMPACTION (docs/decisions/snapshots.md). When the applied index has
 * moved snapshot_count entries past the newest snapshot, a third thread the node starts
 * (the snapshot thread) writes a snapshot file (store_snapshot_write) while the storage
 * thread goes on; the next work item records it (store_snapshot_record) and, inside its
 * ready so that the core reads no log meanwhile, compacts the log up to
 * applied - snapshot_catchup_entries, never past the newest recorded snapshot. store/ keeps
 * the two newest snapshot files. The core's storage callback `snapshot` answers the newest
 * recorded snapshot's metadata when its file exists (a node that installed a snapshot has
 * none: it answers LATCH_EUNAVAILABLE and makes one at once).
 * A follower receives the state on a stream of its own (the transport: server/peer.h):
 * srv_node_snapshot_recv_begin hands out a store_snap_writer, and
 * srv_node_snapshot_recv_end verifies the whole stream and only then steps the
 * RAFT_MSG_SNAPSHOT into the core; the ready that carries rd.snapshot installs it
 * (store_snap_writer_finish) on the storage thread before its entries. After an install
 * the applied hook reports the new revision (watchers read the new history; a watcher
 * below its compaction point is canceled as compacted), pending reads up to the snapshot
 * are answered, and proposals whose entries the snapshot covered fail with
 * SRV_NODE_ETIMEDOUT (their outcome is unknown). A snapshot that fails to install stops
 * the node as any store failure does.
 *
 * MEMBERSHIP (docs/decisions/membership.md): the node keeps the members with their
 * attributes (server/member.h) as of the applied index, runs one membership change at a time
 * on the leader (srv_node_change_members) and leadership transfers (srv_node_transfer_leader);
 * latchd transfers leadership before it exits. See docs/decisions/node.md.
 */
#ifndef SERVER_NODE_H
#define SERVER_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "latch_error.h"
#include "member.h"
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
 *  - SRV_NODE_ELEADERCHANGED: a new leader replaced the proposal's entry in this node's
 *    log and the entry's index has since been applied with another entry, so it will never
 *    be applied (etcd "leader changed"). Safe to retry. (A replaced entry is not failed at
 *    once: a member still holding it may win an election and commit it.) A read
 *    whose leader changed before it got a read index fails with it too.
 *  - SRV_NODE_ETIMEDOUT: no outcome within the timeout. For a proposal the outcome is
 *    UNKNOWN: the entry may still be applied later (etcd "request timed out").
 */
#define SRV_NODE_ELEADERCHANGED LATCH_ELEADERCHANGED
#define SRV_NODE_ETIMEDOUT      LATCH_ETIMEDOUT

/* etcd's --snapshot-count default and its catch-up entries (etcd keeps 5000 entries behind a
 * snapshot so that a slightly lagging follower catches up from the log). */
#define SRV_NODE_SNAPSHOT_COUNT_DEFAULT  100000u
#define SRV_NODE_CATCHUP_ENTRIES_DEFAULT 5000u

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

/* Timings of one storage work item, measured on the storage thread and handed back with
 * the work item (no other shared state): append_ns covers store_log_append (hard state and
 * entries, synced: the fsync latency), apply_ns covers store_apply; 0 when that step did not
 * run. For /metrics. */
struct srv_node_io {
    uint64_t append_ns;
    uint64_t apply_ns;
    size_t entries; /* appended */
    size_t items;   /* applied */
};

/* A storage work item completed (io borrowed for the call). Loop thread; must not call
 * srv_node_close(). */
typedef void (*srv_node_io_fn)(void *data, const struct srv_node_io *io);

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
    /* Applied entries between snapshots; 0: SRV_NODE_SNAPSHOT_COUNT_DEFAULT. */
    uint64_t snapshot_count;
    /* Entries kept behind the applied index when the log is compacted (a follower that lags
     * less catches up from the log); 0: SRV_NODE_CATCHUP_ENTRIES_DEFAULT. */
    uint64_t snapshot_catchup_entries;

    void *data;                  /* passed back to send, leader and applied */
    srv_node_send_fn send;       /* required */
    srv_node_leader_fn leader;   /* may be NULL */
    srv_node_applied_fn applied; /* may be NULL */
    srv_node_io_fn io;           /* may be NULL */
    /*
     * May be NULL. When an apply batch holds a compaction after other entries, the storage
     * thread applies the entries before it, then stops until this has run on the loop thread
     * with the revision they reached, then applies the rest: a watch hub reads their events
     * here, before the compaction may drop them (etcd's synced watchers never miss events to
     * a compaction). Mid-ready: read the store only; no proposals, no srv_node_close().
     */
    srv_node_applied_fn before_compact;

    /* Attributes of the initial voters (name, peer URLs from --initial-cluster), in the order
     * of initial_voters, recorded with the bootstrap membership; borrowed for srv_node_new.
     * NULL: none. Also fills in members a version 1 record (an older data dir) lists. */
    const struct srv_member_attrs *initial_attrs;
    /* The membership changed (a change was applied, or a snapshot replaced it): ms is the
     * new membership as of the applied index (borrowed for the call). Loop thread, after the
     * batch's proposals were completed; not once srv_node_close() was called. May be NULL.
     * Must not call srv_node_close(). */
    void (*members_changed)(void *data, const struct srv_members *ms);
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
 * outcome), or the store failure that stopped the node (unknown outcome). A follower's
 * proposal forwarded to a leader and not yet back in its log fails at once, outcome unknown,
 * when that leader is no longer the known one (LATCH_ELEADERFAIL) or the transport reported
 * it unreachable (LATCH_ECONNLOST): it may have been lost on the way.
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

/* The snapshot stream to id ended: delivered (ok) or failed (raft_report_snapshot, queued
 * like a message). */
void srv_node_report_snapshot(struct srv_node *n, raft_id id, bool ok);

struct srv_node_status {
    raft_id id;
    raft_term term;
    raft_id leader; /* RAFT_NONE when unknown */
    enum raft_role role;
    raft_index commit;
    raft_index applied; /* applied to the store and advanced */
    raft_index last_index;
    int failed;                   /* 0, or the store error that stopped the node */
    raft_index first_index;       /* first entry still in the log (compaction point + 1) */
    raft_index snapshot_index;    /* newest snapshot recorded by the store; 0: none */
    uint64_t snapshots_created;   /* by this process */
    uint64_t snapshots_installed; /* received from a leader by this process */
    uint64_t proposals_committed; /* this node's proposals applied (cb with err 0) */
    uint64_t proposals_failed;    /* this node's proposals refused or ended with an error */
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
 * Snapshot streams (the transport's side; loop thread).
 *
 * srv_node_snapshot_open: the leader's side. Opens the snapshot file m (a RAFT_MSG_SNAPSHOT
 * this node sent) was made for; *out is the caller's (store_snap_reader_close). Errors:
 * LATCH_EINVAL (not a SNAPSHOT message), LATCH_ENOTFOUND (the file is gone: a newer snapshot
 * replaced it; report the snapshot failed and the core sends the newer one), LATCH_ECORRUPT,
 * LATCH_EIO, LATCH_ENOMEM, LATCH_ESHUTDOWN.
 *
 * srv_node_snapshot_recv_begin: the follower's side. A writer for one incoming stream
 * (store_snap_writer_write the stream's bytes in order); one at a time per node. A stream
 * received earlier and not installed yet is dropped. Errors: LATCH_ESTATE (a stream is being
 * received or installed), LATCH_ESHUTDOWN, the store failure code, store_snap_writer_new's.
 *
 * srv_node_snapshot_recv_end: the stream is complete. Takes w in every case. Verifies it
 * (store_snap_writer_verify) and that its header is m's snapshot (index, term, membership as
 * srv_node_conf_decode reads the opaque record); only then steps m (whose snapshot data is
 * ignored) into the core, and keeps w for the ready that installs it. Errors (w aborted,
 * nothing stepped, the node's state untouched): LATCH_EINVAL (m is not a SNAPSHOT to this
 * node), LATCH_EPROTO (header and m disagree), store_snap_writer_verify's errors,
 * LATCH_ESHUTDOWN, the store failure code.
 *
 * srv_node_snapshot_recv_abort: the stream failed; frees w (NULL is ignored).
 */
int srv_node_snapshot_open(struct srv_node *n,
                           const struct raft_msg *m,
                           struct store_snap_reader **out);
int srv_node_snapshot_recv_begin(struct srv_node *n, struct store_snap_writer **out);
int srv_node_snapshot_recv_end(struct srv_node *n,
                               const struct raft_msg *m,
                               struct store_snap_writer *w);
void srv_node_snapshot_recv_abort(struct srv_node *n, struct store_snap_writer *w);

/*
 * The membership record kept in the store (STORE_ITEM_CONF, store_conf) and in snapshots
 * (store_snap_meta.conf): server/member.h describes both versions. The node writes version 2
 * (ids and attributes). encode writes the ids only, as version 1 (SRV_NODE_CONF_VERSION):
 * voters_count and learners_count (u32), then the voter ids and the learner ids (u64), all
 * little-endian; LATCH_ETOOBIG (cap too small), LATCH_EINVAL (counts above
 * RAFT_MEMBERS_MAX). decode reads the ids of either version: LATCH_ECORRUPT (wrong version,
 * length, counts or attribute blocks), LATCH_ENOMEM.
 */
int srv_node_conf_encode(const struct raft_conf_state *conf,
                         uint8_t *buf,
                         size_t cap,
                         size_t *len_out);
int srv_node_conf_decode(const uint8_t *buf, size_t len, struct raft_conf_state *conf);

/* ------------------------------------------------------------------------------------ */
/* Membership changes and leadership transfer (docs/decisions/membership.md)             */
/* ------------------------------------------------------------------------------------ */

/*
 * The membership as of the applied index, with attributes. Borrowed: valid until the next
 * loop callback of the node (copy what you keep). Loop thread.
 */
const struct srv_members *srv_node_members(const struct srv_node *n);

/* One membership change. */
struct srv_node_member_change {
    uint32_t type; /* enum raft_conf_change_type: ADD_VOTER, ADD_LEARNER, PROMOTE, REMOVE, UPDATE */
    raft_id id;    /* the member; RAFT_NONE with ADD_*: the leader picks a new id */
    /* ADD_*: name (may be empty) and peer URLs (at least one); UPDATE: a new name and/or new
     * peer URLs (what is empty is kept); ignored otherwise. Copied. */
    struct srv_member_attrs attrs;
};

/*
 * The outcome of srv_node_change_members: err 0 when the change was applied on this node
 * (id: the member, the new one for an add); otherwise nothing changed, or, for
 * SRV_NODE_ETIMEDOUT, LATCH_ESHUTDOWN and SRV_NODE_ELEADERCHANGED, the outcome is unknown.
 */
typedef void (*srv_node_member_cb)(void *data, int err, raft_id id);

/*
 * Proposes a membership change (one server at a time: docs/decisions/raft-membership.md).
 * Only the leader runs one: the caller forwards to the leader otherwise. The change waits
 * while an earlier one is not applied yet, then is checked against the applied membership
 * as etcd 3.4 checks it (strict reconfiguration check) and proposed with the member's
 * attributes in the entry's context. cb (required) runs once with 0 after the entry was
 * applied on this node, or with: LATCH_ENOTLEADER (this node is not the leader),
 * LATCH_ENOTFOUND (no such member), LATCH_EPEERURLEXIST (a peer URL of another member),
 * LATCH_ENOTLEARNER (PROMOTE of a voter), LATCH_ELEARNERBEHIND (PROMOTE of a learner whose
 * log is below 90 % of the leader's), LATCH_ETOOMANYLEARNERS (a second learner),
 * LATCH_ENOTSTARTED (adding or promoting a voter would leave fewer started voters than a
 * quorum), LATCH_EUNHEALTHY (removing an active voter would leave no active quorum),
 * LATCH_ETOOBIG (the attributes do not fit the membership record), LATCH_EINVAL (the core
 * refused it), SRV_NODE_ELEADERCHANGED, SRV_NODE_ETIMEDOUT (proposal_timeout_ms),
 * LATCH_ESHUTDOWN, or the store failure code. Returns 0, or without calling cb:
 * LATCH_EINVAL (bad type, attributes over the limits of member.h, RAFT_NONE id where one is
 * needed), LATCH_ESTATE (this node runs another change), LATCH_ESHUTDOWN, the store failure
 * code.
 */
int srv_node_change_members(struct srv_node *n,
                            const struct srv_node_member_change *ch,
                            srv_node_member_cb cb,
                            void *data);

/* The outcome of srv_node_transfer_leader: 0 when target (or, for RAFT_NONE, another voter)
 * became the leader. */
typedef void (*srv_node_transfer_cb)(void *data, int err);

/*
 * Hands leadership to target (thesis §3.10; RAFT_NONE: the voter whose log matches the
 * leader's furthest). cb (required) runs once: 0 when this node learned that target leads;
 * LATCH_ENOTLEADER (this node is not the leader), LATCH_ENOTFOUND (target is not a voter, or
 * no other voter exists), SRV_NODE_ELEADERCHANGED (another node became leader),
 * SRV_NODE_ETIMEDOUT (not done within timeout_ms; the core gives up after one election
 * timeout and this node stays leader), LATCH_ESHUTDOWN, the store failure code. Returns 0,
 * or without calling cb: LATCH_ESTATE (a transfer is under way), LATCH_ESHUTDOWN, the store
 * failure code.
 */
int srv_node_transfer_leader(
    struct srv_node *n, raft_id target, uint32_t timeout_ms, srv_node_transfer_cb cb, void *data);

#endif /* SERVER_NODE_H */
