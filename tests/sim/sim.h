/*
 * sim.h — the deterministic Raft simulator (raft_sim): shared types of its parts.
 *
 * N real consensus cores run on a simulated network (delay, reorder, drop, duplicate,
 * partition) and a simulated disk (a persist takes time; a crash loses what was not yet
 * written), driven by one scheduler. Everything random comes from one 64-bit seed through
 * struct sim_rng, so a seed replays byte for byte (TigerBeetle VOPR, FoundationDB
 * simulation). Invariant checkers (sim_check.c) run as the state they watch changes, which
 * is after every step; the first violation stops the seed and prints its replay command.
 *
 * Parts: sim_util.c (PRNG, hashing, the event ring), sim_net.c (messages, partitions),
 * sim_node.c (node driver: ready/persist/apply, crash, restart, membership), sim_check.c
 * (invariants and the global committed history), raft_sim.c (CLI, scheduler, liveness).
 */
#ifndef LATCH_SIM_H
#define LATCH_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "raft.h"
#include "raft_memstore.h"

/* Node ids are 1..SIM_IDS_MAX-1 and never reused; fresh joiners take the next one. */
#define SIM_IDS_MAX        96u
/* Members of one configuration the workload grows to (voters + learners). */
#define SIM_MEMBERS_MAX    9u
#define SIM_VOTERS_MIN     3u
#define SIM_VOTERS_MAX     7u
/* Messages in flight in the whole network; more are dropped at send (bounded memory). */
#define SIM_NET_MAX        4096u
/* Inputs a busy node queues (ticks, messages, reports) before dropping new ones. */
#define SIM_INBOX_MAX      512u
/* Events kept for the report of a violation. */
#define SIM_RING_SIZE      64u
/* Extra steps the liveness phase may take before convergence counts as failed. */
#define SIM_LIVENESS_STEPS 40000u

/* ------------------------------------------------------------------------------------ */
/* PRNG and hashing (sim_util.c)                                                        */
/* ------------------------------------------------------------------------------------ */

struct sim_rng {
    uint64_t s[4]; /* xoshiro256** state, seeded by splitmix64 */
};

void sim_rng_seed(struct sim_rng *rng, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *rng);
/* Uniform in [0, n); 0 when n is 0. */
uint64_t sim_rng_below(struct sim_rng *rng, uint64_t n);
/* Uniform in [lo, hi]. */
uint64_t sim_rng_range(struct sim_rng *rng, uint64_t lo, uint64_t hi);
/* True with probability per_mille / 1000. */
bool sim_rng_chance(struct sim_rng *rng, uint32_t per_mille);

uint64_t sim_mix64(uint64_t x);
uint64_t sim_hash_bytes(uint64_t h, const uint8_t *data, size_t len);
/* The chain hash of the state machine: H(prev, index, term, type, data). */
uint64_t sim_chain(uint64_t prev, const struct raft_entry *e);

void sim_put64(uint8_t *p, uint64_t v);
uint64_t sim_get64(const uint8_t *p);

/* ------------------------------------------------------------------------------------ */
/* Events: a ring of the last SIM_RING_SIZE, formatted only when printed                */
/* ------------------------------------------------------------------------------------ */

enum sim_ev_kind {
    SIM_EV_TICK = 1,
    SIM_EV_SEND,         /* a = sim_ev_msg(m), b = to, c = index */
    SIM_EV_DELIVER,      /* a = sim_ev_msg(m), b = from, c = index */
    SIM_EV_DROP,         /* a = sim_ev_msg(m), b = to, c = index (node = sender) */
    SIM_EV_PROPOSE,      /* a = proposal id, b = -result code, c = bytes */
    SIM_EV_READ,         /* a = context, b = -result code */
    SIM_EV_TRANSFER,     /* a = target, b = -result code */
    SIM_EV_CONF,         /* a = change type, b = node, c = -result code */
    SIM_EV_CONF_APPLIED, /* a = change type, b = node, c = index (first apply anywhere) */
    SIM_EV_SNAPSHOT,     /* a = snapshot index, b = compacted up to */
    SIM_EV_CRASH,        /* a = was persisting, b = applied */
    SIM_EV_RESTART,      /* a = applied, b = persisted commit, c = life */
    SIM_EV_PARTITION,    /* a = shape, b = nodes (node = first of the shape) */
    SIM_EV_HEAL,
    SIM_EV_PERSIST,    /* a = entries, b = first index, c = last index */
    SIM_EV_HARD_STATE, /* a = term, b = vote, c = commit (persisted) */
    SIM_EV_APPLY,      /* a = index, b = term, c = type */
    SIM_EV_INSTALL,    /* a = snapshot index, b = its term */
    SIM_EV_READ_STATE, /* a = context, b = index */
    SIM_EV_LEADER,     /* became leader: a = commit */
    SIM_EV_TRACE,      /* a = raft_trace_kind, b = ev.a, c = ev.b */
    SIM_EV_STOP,       /* removed from the cluster and discarded */
    SIM_EV_START,      /* node created: a = bootstrapped */
    SIM_EV_PHASE,      /* a = phase */
    SIM_EV_KIND_COUNT,
};

struct sim_event {
    uint64_t step;
    uint32_t kind;
    raft_id node;
    raft_term term;
    uint64_t a;
    uint64_t b;
    uint64_t c;
};

/* ------------------------------------------------------------------------------------ */
/* Network (sim_net.c)                                                                  */
/* ------------------------------------------------------------------------------------ */

/* One message in flight: a deep copy whose entries, data and snapshot bytes live in the
 * same allocation, so a message is freed with one free(). */
struct sim_msg {
    uint64_t due;       /* step at which it may be delivered */
    uint64_t seq;       /* tie breaker: total order of sends */
    uint32_t from_life; /* incarnation of the sender, for transport reports */
    bool lost;          /* still in the sender's outbox when it crashed */
    struct raft_msg m;
};

struct sim_net {
    struct sim_msg **heap; /* min-heap by (due, seq): not yet due */
    size_t heap_count;
    size_t heap_cap;
    struct sim_msg **due; /* ring: due and waiting for a deliver step */
    size_t due_head;
    size_t due_count;
    size_t due_cap;
    uint64_t seq;
    bool partitioned;
    uint8_t blocked[SIM_IDS_MAX][SIM_IDS_MAX]; /* blocked[a][b]: a cannot reach b */
};

/* ------------------------------------------------------------------------------------ */
/* Nodes (sim_node.c)                                                                   */
/* ------------------------------------------------------------------------------------ */

enum sim_node_state {
    SIM_NODE_ABSENT = 0, /* id never used (yet) */
    SIM_NODE_LIVE,
    SIM_NODE_CRASHED,
    SIM_NODE_REMOVED, /* removed from the cluster, stopped and discarded */
};

enum sim_item_kind {
    SIM_ITEM_TICK = 1,
    SIM_ITEM_MSG,
    SIM_ITEM_REPORT_SNAPSHOT,
    SIM_ITEM_UNREACHABLE,
};

/* An input that arrived while the node was between raft_ready() and raft_advance(). */
struct sim_item {
    uint32_t kind;
    bool ok;
    raft_id peer;
    struct sim_msg *msg; /* owned, SIM_ITEM_MSG only */
};

/* The application: durable together with the memstore (a crash keeps both as of the last
 * completed persist). */
struct sim_app {
    raft_index applied;
    raft_term applied_term;
    uint64_t chain; /* chain hash of every entry up to applied */
};

/* Chain hash and term of every entry the node stored; durable like the memstore. */
struct sim_chain_log {
    uint64_t *chain; /* by index */
    raft_term *term;
    raft_index cap;
    raft_index last; /* last stored index */
};

struct sim;

struct sim_node {
    struct sim *sim;
    raft_id id;
    uint32_t state; /* enum sim_node_state */
    uint32_t life;  /* incremented by each restart */
    struct raft *r;
    struct raft_memstore *ms;
    struct sim_app app;
    struct sim_chain_log log;
    struct raft_tracer tracer;

    bool busy;            /* between raft_ready() and raft_advance() */
    bool persisting;      /* busy and waiting for the disk */
    uint64_t persist_due; /* step at which the persist completes */
    struct raft_ready rd;

    struct sim_item inbox[SIM_INBOX_MAX];
    size_t inbox_head;
    size_t inbox_count;

    /* Observed state of the current life, for the per-call checks. */
    raft_id *vote_by_term; /* checker's memory of granted votes, across lives */
    raft_term vote_cap;

    raft_index seen_commit;
    raft_term seen_term;
    bool seen_leader;
    bool stop_pending; /* removed by a committed change: discard at the end of the step */
};

/* ------------------------------------------------------------------------------------ */
/* Invariant checker state (sim_check.c)                                                */
/* ------------------------------------------------------------------------------------ */

/* The global committed history: what the first node to apply each index applied. */
struct sim_gentry {
    raft_term term;
    uint64_t chain;
    uint64_t proposal; /* proposal id carried, 0 for none */
    uint32_t type;
    bool set;
};

struct sim_logkey {
    raft_index index;
    raft_term term;
    uint64_t chain;
};

struct sim_proposal {
    raft_id node;
    uint32_t life;
    bool acked;
    raft_index index; /* first index it was applied at anywhere; 0 if never */
};

/* The highest index a node committed (and applied) while in a term, with that entry's term
 * in its log. A node's term bounds the term in which what it committed was committed, so
 * leaders of later terms must hold it (leader completeness). */
struct sim_term_marks {
    raft_index commit;
    raft_term commit_term;
    raft_index applied;
    raft_term applied_term;
};

struct sim_check {
    struct sim_gentry *history; /* by index */
    raft_index history_cap;
    raft_index history_max; /* highest index applied anywhere */

    struct sim_term_marks *marks; /* by term of the node that committed or applied */
    raft_term marks_cap;

    struct sim_logkey *logmap; /* open addressing: (index, term) -> chain */
    size_t logmap_cap;
    size_t logmap_count;

    raft_id *leader_by_term;
    raft_term leader_cap;

    raft_index *read_min; /* by read context: highest acknowledged index at request */
    uint64_t read_cap;

    struct sim_proposal *props; /* by proposal id */
    uint64_t props_cap;
    raft_index max_acked_index;
};

/* ------------------------------------------------------------------------------------ */
/* The simulation                                                                       */
/* ------------------------------------------------------------------------------------ */

struct sim_stats {
    uint64_t seeds;
    uint64_t steps;
    uint64_t elections;
    uint64_t leader_changes;
    uint64_t snapshots_installed;
    uint64_t snapshots_taken;
    uint64_t conf_applied;
    uint64_t transfers_started;
    uint64_t transfers_completed;
    uint64_t proposals;
    uint64_t acked;
    uint64_t reads_checked;
    uint64_t msgs_sent;
    uint64_t msgs_delivered;
    uint64_t msgs_dropped;
    uint64_t msgs_duplicated;
    uint64_t crashes;
    uint64_t restarts;
    uint64_t partitions;
    uint64_t violations;
};

/* Per-seed knobs, drawn from the seed so that different seeds explore different regimes. */
struct sim_params {
    uint32_t election_tick;
    uint32_t heartbeat_tick;
    uint32_t max_inflight_msgs;
    uint64_t max_msg_bytes;
    uint64_t max_committed_bytes;
    uint64_t max_uncommitted_bytes;
    bool pre_vote;
    bool check_quorum;
    bool no_forwarding;
    /* Network, per mille. */
    uint32_t drop_pm;
    uint32_t dup_pm;
    uint32_t slow_pm;        /* messages given a long delay */
    uint32_t delay_max;      /* normal delay in steps: 1..delay_max */
    uint32_t slow_max;       /* long delay: up to this many steps */
    uint32_t unreachable_pm; /* dropped messages reported unreachable to the sender */
    uint32_t disk_max;       /* persist delay in steps: 0..disk_max */
    uint32_t outbox_pm;      /* a crash loses each of the node's not yet due messages */
    /* Scheduler weights. */
    uint32_t w_tick;
    uint32_t w_deliver;
    uint32_t w_propose;
    uint32_t w_read;
    uint32_t w_transfer;
    uint32_t w_conf;
    uint32_t w_snapshot;
    uint32_t w_crash;
    uint32_t w_crash_busy;
    uint32_t w_reboot;
    uint32_t remove_pm; /* share of membership changes that remove a member */
    uint32_t w_restart;
    uint32_t w_partition;
    uint32_t w_heal;
    /* Nemesis aimed at fresh leaders (Jepsen's "kill/partition the leader"): after a node
     * wins an election, strike it (isolate or crash) within strike_delay_max steps. */
    uint32_t strike_pm;
    uint32_t strike_delay_max;
    /* Nemeses aimed at figure 8 and at vote durability (sim_nemesis.c), per mille of their
     * triggers: an entry of an older term on a quorum of a leader's voters (none of its
     * own); an append of a leader's own entries; a granted vote. */
    uint32_t catchup_strike_pm;
    uint32_t append_strike_pm;
    uint32_t vote_strike_pm;
    bool figure8; /* the figure-8 regime (raft_sim.c) */
};

struct sim_options {
    uint64_t seed;
    uint64_t seeds;
    uint32_t nodes;
    uint64_t steps;
    bool faults;
    uint32_t bugs;        /* RAFT_BUG_* mask */
    const char *bug_name; /* for the replay command */
    bool expect_violation;
    /* Only the consequence invariants: no check of a rule itself (leader commit rule, one
     * vote per term), so that a teeth run proves the bug is caught end to end. */
    bool end_to_end;
    bool verbose;
};

/* A fault the nemesis (sim_nemesis.c) scheduled for a later step. */
enum sim_strike_how {
    SIM_STRIKE_ISOLATE = 1,
    SIM_STRIKE_CRASH,
    SIM_STRIKE_REBOOT, /* crash and restart at once */
};

struct sim_strike {
    raft_id node; /* RAFT_NONE: nothing scheduled */
    uint32_t life;
    uint32_t how;         /* enum sim_strike_how */
    bool persisting_only; /* only if the node is still persisting by then */
    uint64_t step;
};

enum sim_phase {
    SIM_PHASE_FAULTS = 0, /* the main run */
    SIM_PHASE_LIVENESS,   /* faults off, waiting for convergence */
};

struct sim {
    const struct sim_options *opt;
    uint64_t seed;
    struct sim_rng rng;
    struct sim_params p;
    uint64_t step;
    uint32_t phase;

    struct sim_node *nodes[SIM_IDS_MAX]; /* by id; NULL when absent */
    raft_id next_id;
    uint32_t bootstrap_count; /* conf entries written by the bootstrap */

    struct sim_net net;
    struct sim_check check;
    struct sim_stats stats;

    uint64_t next_proposal;
    uint64_t next_read;
    raft_id transfer_target;
    raft_term transfer_term;

    struct sim_strike strike_leader; /* fresh or catching-up leader (sim_nemesis.c) */
    struct sim_strike strike_vote;   /* a node that just granted a vote */

    struct sim_event ring[SIM_RING_SIZE];
    uint64_t ring_count;

    bool violated;
    char violation_which[64];
    char violation_detail[640];
    uint64_t violation_step;
};

/* sim_util.c: events and violations. */
void sim_event(
    struct sim *s, uint32_t kind, raft_id node, raft_term term, uint64_t a, uint64_t b, uint64_t c);
void sim_print_event(const struct sim_event *ev);
/* Packs a message's type, reject flag, entry count and log term for an event. */
uint64_t sim_ev_msg(const struct raft_msg *m);
void sim_print_ring(const struct sim *s);
/* Records the first violation of the seed; later ones are ignored. */
LATCH_PRINTF(3, 4) void sim_violation(struct sim *s, const char *which, const char *fmt, ...);
const char *sim_bug_name(uint32_t bug);

/* sim_net.c */
void sim_net_init(struct sim_net *net);
void sim_net_free(struct sim_net *net);
/* Copies m into the network (or drops it) from node from. */
void sim_net_send(struct sim *s, struct sim_node *from, const struct raft_msg *m);
/* Moves messages that became due to the delivery queue. */
void sim_net_advance(struct sim *s);
size_t sim_net_due_count(const struct sim *s);
/* Delivers one due message; false when none is due. */
bool sim_net_deliver(struct sim *s);
/* Starts a partition of a random shape among the present nodes. */
void sim_net_partition(struct sim *s);
void sim_net_heal(struct sim *s);
/* A crash of node id loses some of what it sent that has not arrived yet. */
void sim_net_crash_outbox(struct sim *s, raft_id id, uint32_t life);
/* Cuts node id off from every other node (and heals anything else). */
void sim_net_isolate(struct sim *s, raft_id id);
bool sim_net_reachable(const struct sim *s, raft_id from, raft_id to);
void sim_msg_free(struct sim_msg *msg);

/* sim_node.c */
struct sim_node *sim_node_get(const struct sim *s, raft_id id);
bool sim_node_is_live(const struct sim_node *n);
/* Creates a live node with an empty (or bootstrapped) store. */
struct sim_node *sim_node_create(struct sim *s, raft_id id, const struct raft_conf_state *boot);
void sim_node_destroy(struct sim_node *n);
void sim_node_crash(struct sim_node *n);
void sim_node_restart(struct sim_node *n);
/* Marks a node removed by a committed change; it is discarded by sim_node_reap(). */
void sim_node_mark_removed(struct sim *s, raft_id id);
void sim_node_reap(struct sim *s);
/* Inputs: run at once when the node is idle, queued while it is busy. */
void sim_node_tick(struct sim_node *n);
void sim_node_receive(struct sim_node *n, struct sim_msg *msg);
void sim_node_report_snapshot(struct sim_node *n, raft_id to, bool ok);
void sim_node_report_unreachable(struct sim_node *n, raft_id to);
/* Completes due persists and starts readies until every live node is idle or persisting. */
void sim_nodes_drive(struct sim *s);
/* Checks a node's observable state after a core call returned. */
void sim_node_observe(struct sim_node *n);
/* Snapshot of the application at its applied index, then compaction of the log. */
void sim_node_snapshot(struct sim_node *n);

/* sim_nemesis.c: triggers (called as the simulator sees them) and the strikes. */
void sim_nemesis_became_leader(struct sim *s, struct sim_node *n);
/* n just stepped m (called after raft_step returned). */
void sim_nemesis_stepped(struct sim *s, struct sim_node *n, const struct raft_msg *m);
/* n sent m. */
void sim_nemesis_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m);
/* Does the strikes that are due; at the start of a step, outside every core call. */
void sim_nemesis_run(struct sim *s);

/* sim_check.c */
void sim_check_init(struct sim_check *c);
void sim_check_free(struct sim_check *c);
void sim_check_stored(
    struct sim *s, struct sim_node *n, raft_index index, raft_term term, uint64_t chain);
/* Records or compares an apply of e at n; true when n is the first node to apply e->index. */
bool sim_check_applied(struct sim *s,
                       struct sim_node *n,
                       const struct raft_entry *e,
                       uint64_t chain);
void sim_check_installed(struct sim *s,
                         struct sim_node *n,
                         const struct raft_snapshot *snap,
                         const struct sim_app *app);
void sim_check_leader(struct sim *s, struct sim_node *n, raft_term term);
void sim_check_became_leader(struct sim *s, struct sim_node *n, raft_term term);
/* A leader of term moved its commit index to commit: that entry must be of term. */
void sim_check_leader_commit(struct sim *s, struct sim_node *n, raft_term term, raft_index commit);
/* n, in term, moved its commit index to commit: records it as committed no later than term
 * (with its term in n's log), and checks the leaders of later terms hold it. */
void sim_check_commit(struct sim *s, struct sim_node *n, raft_term term, raft_index commit);
void sim_check_hard_state(struct sim *s,
                          struct sim_node *n,
                          const struct raft_hard_state *old,
                          const struct raft_hard_state *hs);
/* Every message a node sends: a granted vote must be its only one in that term. */
void sim_check_sent(struct sim *s, struct sim_node *n, const struct raft_msg *m);
uint64_t sim_check_new_read(struct sim *s);
void sim_check_read_state(struct sim *s, struct sim_node *n, const struct raft_read_state *rs);
uint64_t sim_check_new_proposal(struct sim *s, raft_id node, uint32_t life);
const struct sim_proposal *sim_check_proposal(const struct sim *s, uint64_t id);
/* End of run: every acknowledged proposal is in the committed history. */
void sim_check_acked_committed(struct sim *s);

#endif /* LATCH_SIM_H */
