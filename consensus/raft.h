/*
 * raft.h — Raft consensus as a pure state machine.
 *
 * The core does no I/O, reads no clock, starts no thread and keeps no global state. The
 * caller feeds it three kinds of input — messages from peers (raft_step), time
 * (raft_tick) and local requests (raft_propose, raft_read_index, ...) — and collects the
 * consequences as a *ready* batch (raft_ready): state to persist, messages to send,
 * committed entries to apply, read states to answer. When it has handled the batch it says
 * so with raft_advance. The model is etcd-io/raft's RawNode (Step/Ready/Advance); the rules
 * cite the Raft dissertation (Ongaro 2014, "thesis §x") and the paper ("paper §x").
 *
 * Features: leader election with PreVote (thesis §9.6) and CheckQuorum (thesis §6.2);
 * pipelined, batched replication with flow control (inflight window, bytes per message, a
 * ceiling on uncommitted bytes); commitment by quorum of matched indexes, only for entries
 * of the leader's term (paper §5.4.2); ReadIndex (thesis §6.4) and lease reads (thesis
 * §6.4.1) when a clock bound is configured; log compaction and InstallSnapshot (thesis §5);
 * one-at-a-time membership changes with learners and promotion (thesis §4.1, §4.2.1; the
 * safety argument is in docs/decisions/raft-membership.md); leadership transfer (thesis
 * §3.10); proposal forwarding from followers.
 *
 * THE READY CONTRACT (persist before speaking, thesis §3.8 and §10.2.1)
 *
 *   while (raft_has_ready(r)) {
 *       struct raft_ready rd;
 *       raft_ready(r, &rd);
 *       send(rd.msgs);                        // 1. may go out at once: the leader's
 *                                             //    appends travel while it persists
 *       if (rd.snapshot) install(rd.snapshot); // 2. persist, in this order, durably
 *       append(rd.entries);                   //    (truncating any conflicting suffix)
 *       if (rd.hard_state_changed) save(rd.hard_state);
 *       send(rd.msgs_after_persist);          // 3. only now: votes, acknowledgements
 *       apply(rd.committed);                  // 4. apply in index order
 *       answer(rd.read_states);
 *       raft_advance(r, &rd);                 // 5. the core learns all of the above is done
 *   }
 *
 * Between raft_ready() and raft_advance() the caller must not call any other function of
 * this header on r except the read-only accessors (raft_status, raft_is_leader, ...); the
 * core asserts this. Messages that arrive meanwhile are kept by the caller and stepped
 * after raft_advance(). Everything a ready points to is borrowed until raft_advance().
 *
 * The leader counts its own log toward a quorum only for entries it has persisted, i.e.
 * after raft_advance() — so sending rd.msgs before persisting is safe (thesis §10.2.1).
 *
 * ERRORS are the negative LATCH_E* codes of common/latch_error.h; 0 is success.
 * Programmer errors (breaking the contract above, invalid arguments that a correct caller
 * never passes) are assertions, not error codes.
 */
#ifndef LATCH_RAFT_H
#define LATCH_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft_limits.h"

typedef uint64_t raft_term;
typedef uint64_t raft_index;
typedef uint64_t raft_id; /* node identifier; RAFT_NONE (0) is never a valid node */

#define RAFT_NONE ((raft_id)0)

/* ------------------------------------------------------------------------------------ */
/* Log entries                                                                          */
/* ------------------------------------------------------------------------------------ */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* opaque application command (may be empty: leader no-op) */
    RAFT_ENTRY_CONF = 1,   /* a membership change, encoded by raft_conf_change_encode() */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    uint32_t type; /* enum raft_entry_type */
    uint32_t len;  /* bytes at data; at most RAFT_ENTRY_BYTES_MAX */
    /* Borrowed. In a ready: valid until raft_advance(). In raft_step() input: only for the
     * call (the core copies what it keeps). From storage: see struct raft_storage. */
    const uint8_t *data;
};

/* What must survive a crash besides the log (paper figure 2, "persistent state"). */
struct raft_hard_state {
    raft_term term;
    raft_id vote;
    raft_index commit;
};

/* ------------------------------------------------------------------------------------ */
/* Membership                                                                           */
/* ------------------------------------------------------------------------------------ */

/* A configuration: who votes and who only learns. Plain value, copy freely. */
struct raft_conf_state {
    uint32_t voters_count;
    uint32_t learners_count;
    raft_id voters[RAFT_MEMBERS_MAX];
    raft_id learners[RAFT_MEMBERS_MAX];
};

enum raft_conf_change_type {
    RAFT_CC_ADD_VOTER = 1,   /* node must not be a member */
    RAFT_CC_ADD_LEARNER = 2, /* node must not be a member */
    RAFT_CC_PROMOTE = 3,     /* node must be a learner; it becomes a voter */
    RAFT_CC_REMOVE = 4,      /* node must be a voter or a learner */
    RAFT_CC_UPDATE = 5,      /* node must be a member; only the context changes (attributes) */
};

struct raft_conf_change {
    uint32_t type; /* enum raft_conf_change_type */
    raft_id node;
    /* Opaque bytes carried with the change (the server puts peer URLs here); borrowed. */
    const uint8_t *context;
    uint32_t context_len; /* at most RAFT_CONF_CONTEXT_BYTES_MAX */
};

/* Bytes raft_conf_change_encode() needs for cc. */
size_t raft_conf_change_size(const struct raft_conf_change *cc);

/*
 * Encodes cc into buf (buf_size >= raft_conf_change_size(cc)); *len_out gets the size.
 * Errors: LATCH_EINVAL (unknown type, RAFT_NONE node, context too long), LATCH_ETOOBIG
 * (buf_size too small).
 */
int raft_conf_change_encode(const struct raft_conf_change *cc,
                            uint8_t *buf,
                            size_t buf_size,
                            size_t *len_out);

/*
 * Decodes an entry's data. cc->context points into data (borrowed for data's lifetime).
 * Errors: LATCH_EINVAL (malformed bytes: wrong version, short, unknown type).
 */
int raft_conf_change_decode(const uint8_t *data, size_t len, struct raft_conf_change *cc);

/*
 * Applies cc to conf in place: the one definition of what a change does, shared by the core
 * and by callers that keep their own copy. Errors: LATCH_EINVAL when cc does not fit conf
 * (adding a member, promoting a non-learner, removing a stranger, no room left); conf is
 * unchanged then.
 */
int raft_conf_state_apply(struct raft_conf_state *conf, const struct raft_conf_change *cc);

bool raft_conf_state_is_voter(const struct raft_conf_state *conf, raft_id id);
bool raft_conf_state_is_learner(const struct raft_conf_state *conf, raft_id id);

/* ------------------------------------------------------------------------------------ */
/* Snapshots                                                                            */
/* ------------------------------------------------------------------------------------ */

struct raft_snapshot_meta {
    raft_index index;            /* last entry the snapshot covers */
    raft_term term;              /* term of that entry */
    struct raft_conf_state conf; /* membership as of index */
};

struct raft_snapshot {
    struct raft_snapshot_meta meta;
    const uint8_t *data; /* application state; opaque to the core; borrowed */
    size_t len;
};

/* ------------------------------------------------------------------------------------ */
/* Storage: the caller's stable log, read by the core                                   */
/* ------------------------------------------------------------------------------------ */

/*
 * The core reads persisted state through these callbacks and never writes through them:
 * the caller writes what each ready asks for. Entries handed out are borrowed until the
 * caller next mutates the storage; the core copies the entry headers at once and keeps
 * data pointers only until raft_advance(), so the caller must not truncate or compact the
 * storage between raft_ready() and raft_advance() except as the ready itself asks.
 * Callbacks run synchronously inside core calls and must not call back into the core.
 */
struct raft_storage {
    void *data;

    /* The persisted hard state and the configuration as of the last applied index. */
    int (*initial_state)(void *data, struct raft_hard_state *hs, struct raft_conf_state *conf);

    /*
     * Entries [lo, hi): as many as fit in max_bytes of data, but always at least one (the
     * first may exceed it alone); stopping early is allowed only for that limit.
     * *entries_out points at *count_out contiguous entries. Errors: LATCH_ECOMPACTED
     * (lo <= the compaction point), LATCH_EUNAVAILABLE (hi > last + 1).
     */
    int (*entries)(void *data,
                   raft_index lo,
                   raft_index hi,
                   uint64_t max_bytes,
                   const struct raft_entry **entries_out,
                   size_t *count_out);

    /*
     * Term of entry i, for i in [first - 1, last] (first - 1 is the compaction point and
     * answers with the term of the entry there). Errors: LATCH_ECOMPACTED, LATCH_EUNAVAILABLE.
     */
    int (*term)(void *data, raft_index i, raft_term *term_out);

    /* Compaction point + 1: the first entry still stored (a snapshot may cover more). */
    raft_index (*first_index)(void *data);
    raft_index (*last_index)(void *data); /* first_index - 1 when the log is empty */

    /*
     * The most recent snapshot (metadata and bytes, borrowed until the storage is next
     * mutated). Errors: LATCH_EUNAVAILABLE (being made; the core asks again later).
     */
    int (*snapshot)(void *data, struct raft_snapshot *snap_out);
};

/* ------------------------------------------------------------------------------------ */
/* Messages                                                                             */
/* ------------------------------------------------------------------------------------ */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,      /* leader -> follower: entries after (index, log_term) */
    RAFT_MSG_APPEND_RESP,     /* index = last index matched, or reject with hint */
    RAFT_MSG_VOTE,            /* candidate -> voter, term = candidate's term */
    RAFT_MSG_VOTE_RESP,       /* reject = not granted */
    RAFT_MSG_PREVOTE,         /* term = the term the candidate would campaign in */
    RAFT_MSG_PREVOTE_RESP,    /* term = the request's term when granted */
    RAFT_MSG_HEARTBEAT,       /* commit = min(leader commit, follower match); context */
    RAFT_MSG_HEARTBEAT_RESP,  /* context echoed (ReadIndex rounds) */
    RAFT_MSG_SNAPSHOT,        /* snapshot to install */
    RAFT_MSG_TIMEOUT_NOW,     /* leader -> transferee: campaign now */
    RAFT_MSG_READ_INDEX,      /* follower -> leader: context = caller's request id */
    RAFT_MSG_READ_INDEX_RESP, /* index = read index; reject when the leader cannot serve */
    RAFT_MSG_PROPOSE,         /* follower -> leader: forwarded proposal entries */
    RAFT_MSG_TRANSFER_LEADER, /* follower -> leader: from = the node asking, index = target */
};
#define RAFT_MSG_TYPE_COUNT 15

/* For RAFT_MSG_VOTE/PREVOTE: the election was started by a leadership transfer. */
#define RAFT_CONTEXT_TRANSFER ((uint64_t)1)

struct raft_msg {
    uint32_t type; /* enum raft_msg_type */
    raft_id from;
    raft_id to;
    raft_term term;         /* sender's term (0 for local-only forwards: PROPOSE, READ_INDEX) */
    raft_term log_term;     /* APPEND: term at index; VOTE: candidate's last term; reject hint */
    raft_index index;       /* APPEND: previous index; VOTE: candidate's last index; ... */
    raft_index commit;      /* leader's commit (APPEND, HEARTBEAT) */
    raft_index reject_hint; /* APPEND_RESP reject: follower's last index (or the probe point) */
    uint64_t context;       /* ReadIndex request id; RAFT_CONTEXT_TRANSFER on votes */
    bool reject;
    uint32_t entries_count;
    const struct raft_entry *entries; /* borrowed; see struct raft_entry */
    struct raft_snapshot snapshot;    /* RAFT_MSG_SNAPSHOT only; borrowed */
};

/* "MsgApp" style short name of a message type, for traces; never NULL. */
const char *raft_msg_type_name(uint32_t type);

/* ------------------------------------------------------------------------------------ */
/* Configuration and lifecycle                                                          */
/* ------------------------------------------------------------------------------------ */

/* An injectable allocator (tests fail the Nth allocation). NULL members mean libc. */
struct raft_heap {
    void *data;
    void *(*malloc)(void *data, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

const char *raft_role_name(enum raft_role role);

/* Events the core reports to an optional tracer (it never prints). */
enum raft_trace_kind {
    RAFT_TRACE_BECOME_FOLLOWER = 1, /* a = leader (or RAFT_NONE) */
    RAFT_TRACE_BECOME_PRE_CANDIDATE,
    RAFT_TRACE_BECOME_CANDIDATE,
    RAFT_TRACE_BECOME_LEADER,
    RAFT_TRACE_VOTE_GRANTED,        /* a = candidate */
    RAFT_TRACE_VOTE_REJECTED,       /* a = candidate */
    RAFT_TRACE_STEP_DOWN_NO_QUORUM, /* CheckQuorum fired */
    RAFT_TRACE_SNAPSHOT_RESTORED,   /* a = index, b = term */
    RAFT_TRACE_SNAPSHOT_SENT,       /* a = to, b = index */
    RAFT_TRACE_CONF_APPLIED,        /* a = change type, b = node */
    RAFT_TRACE_TRANSFER_START,      /* a = target */
    RAFT_TRACE_TRANSFER_ABORT,      /* a = target */
    RAFT_TRACE_LOG_TRUNCATED,       /* a = first index removed */
    RAFT_TRACE_PROPOSAL_DROPPED,    /* a = error code (as uint64 of its absolute value) */
};

struct raft_trace {
    raft_id id;
    raft_term term;
    uint32_t kind; /* enum raft_trace_kind */
    uint64_t a;
    uint64_t b;
};

struct raft_tracer {
    void *data;
    void (*trace)(void *data, const struct raft_trace *ev); /* ev borrowed for the call */
};

enum raft_read_only_option {
    RAFT_READ_SAFE = 0,        /* ReadIndex: a heartbeat round confirms leadership */
    RAFT_READ_LEASE_BASED = 1, /* lease reads: needs check_quorum and a bounded clock drift */
};

struct raft_config {
    raft_id id;                       /* this node; never RAFT_NONE */
    uint32_t election_tick;           /* ticks without a leader before campaigning; > heartbeat */
    uint32_t heartbeat_tick;          /* ticks between leader heartbeats; >= 1 */
    uint64_t seed;                    /* seeds the election jitter; the only randomness */
    raft_index applied;               /* last index the caller applied (0 for a new node) */
    uint32_t max_inflight_msgs;       /* appends in flight per follower; >= 1 */
    uint64_t max_inflight_bytes;      /* bytes in flight per follower; 0 = unlimited */
    uint64_t max_msg_bytes;           /* entry bytes per append message (at least one entry) */
    uint64_t max_uncommitted_bytes;   /* leader drops proposals above this; 0 = unlimited */
    uint64_t max_committed_bytes;     /* committed entry bytes per ready; 0 = unlimited */
    bool pre_vote;                    /* thesis §9.6 */
    bool check_quorum;                /* thesis §6.2: leader steps down without a quorum */
    bool disable_proposal_forwarding; /* followers refuse proposals with LATCH_ENOTLEADER */
    enum raft_read_only_option read_only;
    const struct raft_storage *storage; /* borrowed for the life of the node */
    const struct raft_heap *heap;       /* NULL: libc; borrowed for the life of the node */
    const struct raft_tracer *tracer;   /* NULL: no tracing; borrowed */
};

/* Fills cfg with the defaults (pre_vote and check_quorum on, 10/1 ticks, 256 inflight). */
void raft_config_defaults(struct raft_config *cfg);

struct raft;

/*
 * Creates a node from cfg and the state in cfg->storage. A node whose configuration does
 * not include it (a fresh joiner) stays a passive follower until a leader contacts it.
 * *out is owned by the caller and released with raft_free(). Errors: LATCH_EINVAL (bad
 * config: zero id, election_tick <= heartbeat_tick, applied beyond commit, ...),
 * LATCH_ENOMEM, or any error of the storage callbacks.
 */
int raft_new(const struct raft_config *cfg, struct raft **out);

/* Releases r and everything it owns, at any time (also between ready and advance). NULL is
 * ignored. */
void raft_free(struct raft *r);

/* ------------------------------------------------------------------------------------ */
/* Inputs                                                                               */
/* ------------------------------------------------------------------------------------ */

/* Advances logical time by one tick: elections, heartbeats, CheckQuorum, transfer timeout. */
void raft_tick(struct raft *r);

/*
 * Feeds one message received from a peer. The core copies what it keeps. Messages from
 * stale terms, unknown types or with impossible fields are ignored (returning 0) or
 * answered per the protocol; they never corrupt state. Returns 0: when the entries or
 * snapshot of m cannot be copied (out of memory), m is dropped as if the network had lost
 * it, which the protocol already tolerates (the leader resends).
 */
int raft_step(struct raft *r, const struct raft_msg *m);

/*
 * Proposes a normal entry (data copied). On a leader it is appended at once; on a follower
 * it is forwarded to the leader (no acknowledgement: watch committed entries). Success
 * means only "accepted for replication". Errors: LATCH_ENOLEADER (no known leader, or
 * forwarding disabled and this node is not the leader), LATCH_ETRANSFER (leadership
 * transfer in progress), LATCH_EUNCOMMITTED (max_uncommitted_bytes reached), LATCH_ETOOBIG
 * (len > RAFT_ENTRY_BYTES_MAX), LATCH_ENOTMEMBER (the leader was removed), LATCH_ENOMEM.
 */
int raft_propose(struct raft *r, const void *data, size_t len);

/*
 * Proposes a membership change. Only the leader accepts one, and only when no earlier
 * change is still uncommitted and the leader has committed an entry of its own term (the
 * fix to single-server changes from the Raft mailing list, 2015). Errors: those of
 * raft_propose, plus LATCH_ECONFPENDING (retry later) and LATCH_EINVAL (does not fit the
 * configuration, or would leave no voter).
 */
int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc);

/*
 * Requests a linearizable read point; the answer comes as a raft_read_state with the same
 * context in a later ready (possibly never, if leadership is lost: retry after a timeout).
 * Errors: LATCH_ENOLEADER.
 */
int raft_read_index(struct raft *r, uint64_t context);

/*
 * Asks the leader to hand leadership to target (thesis §3.10): it stops accepting
 * proposals, brings target up to date and tells it to campaign at once; the transfer is
 * abandoned after an election timeout. On a follower the request is forwarded. Errors:
 * LATCH_ENOLEADER, LATCH_EINVAL (target is not a voter).
 */
int raft_transfer_leader(struct raft *r, raft_id target);

/* Starts an election now (testing, operator action). Ignored on a leader or non-voter. */
void raft_campaign(struct raft *r);

/* The transport could not reach id: the leader stops pipelining to it and probes. */
void raft_report_unreachable(struct raft *r, raft_id id);

/* The snapshot sent to id was delivered (ok) or failed; the leader resumes accordingly. */
void raft_report_snapshot(struct raft *r, raft_id id, bool ok);

/*
 * Membership changes take effect on each node as soon as the entry is in its log, committed
 * or not (thesis §4.1, "use-on-append"); a truncated change is undone. The caller must
 * still call this for every committed conf entry it applies, in index order (between
 * raft_ready() and raft_advance() is allowed): *conf_out receives the configuration as of
 * that entry, which the caller persists with its applied index and puts in snapshots
 * (struct raft_storage.initial_state returns it after a restart). A change that does not
 * fit is a no-op on every node alike.
 */
void raft_apply_conf_change(struct raft *r,
                            const struct raft_entry *e,
                            struct raft_conf_state *conf_out);

/* ------------------------------------------------------------------------------------ */
/* Output                                                                               */
/* ------------------------------------------------------------------------------------ */

struct raft_soft_state {
    raft_id leader;
    enum raft_role role;
};

struct raft_read_state {
    raft_index index; /* apply up to here, then read */
    uint64_t context; /* the caller's request id from raft_read_index() */
};

struct raft_ready {
    bool hard_state_changed;
    struct raft_hard_state hard_state; /* persist when changed */
    bool soft_state_changed;
    struct raft_soft_state soft_state; /* not persisted */

    const struct raft_snapshot *snapshot; /* install first, or NULL */
    const struct raft_entry *entries;     /* append after truncating anything from entries[0] */
    size_t entries_count;
    const struct raft_entry *committed; /* apply in order after persisting */
    size_t committed_count;

    const struct raft_msg *msgs; /* may be sent before persisting */
    size_t msgs_count;
    const struct raft_msg *msgs_after_persist; /* only after persisting */
    size_t msgs_after_persist_count;

    const struct raft_read_state *read_states;
    size_t read_states_count;

    /* True when hard state, entries or snapshot must be synced to disk (fsync). */
    bool must_sync;
};

/* True when raft_ready() would return anything. */
bool raft_has_ready(const struct raft *r);

/* Collects the ready batch; everything in it is borrowed until raft_advance(). */
void raft_ready(struct raft *r, struct raft_ready *rd);

/* Reports that rd (the batch just returned) was persisted, sent and applied in full. */
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* ------------------------------------------------------------------------------------ */
/* Inspection (read-only, allowed at any time)                                          */
/* ------------------------------------------------------------------------------------ */

struct raft_status {
    raft_id id;
    raft_term term;
    raft_id vote;
    raft_id leader;
    enum raft_role role;
    raft_index commit;
    raft_index applied;
    raft_index first_index; /* first index still in the log (snapshot index + 1) */
    raft_index last_index;
    raft_id transferee; /* target of a transfer in progress, or RAFT_NONE */
    struct raft_conf_state conf;
};

void raft_status(const struct raft *r, struct raft_status *st);

bool raft_is_leader(const struct raft *r);

/*
 * Term of entry i in this node's log (persisted or not). Errors: LATCH_ECOMPACTED,
 * LATCH_EUNAVAILABLE.
 */
int raft_log_term(const struct raft *r, raft_index i, raft_term *term_out);

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE = 1,
    RAFT_PROGRESS_SNAPSHOT = 2,
};

struct raft_progress_info {
    raft_index match;
    raft_index next;
    uint32_t state; /* enum raft_progress_state */
    uint32_t inflight_count;
    bool recent_active;
    bool learner;
};

/* Leader only: replication progress of peer id. Errors: LATCH_ENOTLEADER, LATCH_EINVAL. */
int raft_progress(const struct raft *r, raft_id id, struct raft_progress_info *out);

/* ------------------------------------------------------------------------------------ */
/* Test-only bug injection (the simulator's "teeth")                                    */
/* ------------------------------------------------------------------------------------ */

/*
 * Each flag breaks one safety rule on purpose so that tests can prove the simulator
 * catches it. Compiled in only with -DLATCH_RAFT_BUGS (the LATCH_RAFT_BUGS CMake option);
 * otherwise raft_set_bugs() is an assertion failure for any non-zero mask.
 */
enum raft_bug {
    RAFT_BUG_VOTE_IGNORES_LOG = 1u << 0,     /* grant votes without the up-to-date check */
    RAFT_BUG_COMMIT_OLD_TERM = 1u << 1,      /* count replicas for previous-term entries */
    RAFT_BUG_VOTE_BEFORE_PERSIST = 1u << 2,  /* send vote responses before persisting */
    RAFT_BUG_NO_TRUNCATE_CONFLICT = 1u << 3, /* keep a conflicting suffix on append */
};

void raft_set_bugs(struct raft *r, uint32_t bugs);

#endif /* LATCH_RAFT_H */
