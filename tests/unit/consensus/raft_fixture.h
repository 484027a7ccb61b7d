/*
 * raft_fixture.h — a small deterministic harness for the consensus unit tests.
 *
 * A fixture owns up to FX_NODES_MAX nodes (ids 1..n), each a struct raft over its own
 * raft_memstore, and one queue of messages in flight. Nothing happens unless a test asks
 * for it: ticks go to the nodes a test names, and messages wait in the queue until a test
 * delivers or drops them, so a test can build an exact scenario (partition node 3, deliver
 * only votes, lose one append). Every node is driven by the READY CONTRACT of raft.h:
 * fx_handle_ready() persists to the memstore, queues the messages (deep copies), applies
 * committed entries (membership changes included) and records read states, then advances.
 *
 * Usage: register each test with FX_TEST(fn) so that the fixture is allocated before the
 * test and freed after it even when an assertion fails; inside the test,
 *
 *     struct fx *fx = *state;
 *     fx_init(fx, 3);            // three bootstrapped voters; configs may be edited now
 *     fx_start(fx);              // raft_new on every node, first ready handled
 *     fx_elect(fx, 1);           // node 1 campaigns; all messages delivered
 *
 * The fixture installs an assertion handler that calls cmocka's mock_assert(), so
 * expect_assert_failure() works on the core's LATCH_ASSERTs.
 *
 * To check that a test has teeth against one of the RAFT_BUG flags, build the core and the
 * tests with -DLATCH_RAFT_BUGS -DFX_INJECT_BUGS=<mask>: every node is then started with
 * raft_set_bugs(r, mask), and the tests named after that rule must fail.
 */
#ifndef LATCH_RAFT_FIXTURE_H
#define LATCH_RAFT_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"
#include "raft_memstore.h"

#define FX_NODES_MAX 8

/* Election and heartbeat ticks every node starts with (tests may change them). */
#define FX_ELECTION_TICK  10
#define FX_HEARTBEAT_TICK 1

/* Registers a test that receives a zeroed struct fx in *state. */
#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* A message in flight: a deep copy of what a ready emitted. */
struct fx_msg {
    struct raft_msg m;          /* entries and snapshot.data point into the copies below */
    struct raft_entry *entries; /* owned copy of m.entries (each with owned data) */
    uint8_t *snapshot_data;     /* owned copy of m.snapshot.data */
    bool after_persist;         /* came from rd.msgs_after_persist */
};

/* An entry as the node's state machine applied it (owned copy). */
struct fx_entry {
    raft_index index;
    raft_term term;
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

struct fx;

struct fx_node {
    raft_id id;
    struct fx *fx;
    struct raft *r; /* NULL until started, and while crashed */
    struct raft_memstore *ms;
    struct raft_config cfg; /* used by fx_start/fx_restart; edit before starting */

    /* The node's state machine: what it applied, in order. */
    raft_index applied;
    struct raft_conf_state conf; /* configuration as of applied */
    struct fx_entry *applied_entries;
    size_t applied_count;
    size_t applied_cap;
    size_t snapshots_restored; /* rd.snapshot installed this many times */

    struct raft_read_state *reads; /* read states received, in order */
    size_t reads_count;
    size_t reads_cap;

    uint64_t readies; /* ready batches handled */
};

/* Decides which messages a delivery or drop applies to. */
typedef bool (*fx_pred)(const struct fx_msg *msg, void *data);

/* Sees every message a node emits, when it is queued. */
typedef void (*fx_tap)(const struct fx_msg *msg, void *data);

/* Sees every ready batch before the fixture handles it. */
typedef void (*fx_ready_tap)(const struct fx_node *node, const struct raft_ready *rd, void *data);

struct fx {
    size_t n;
    struct fx_node nodes[FX_NODES_MAX + 1]; /* by id; [0] unused */

    struct fx_msg *msgs; /* queue, oldest first */
    size_t msgs_count;
    size_t msgs_cap;

    /* Messages taken off the queue by the delivery in progress (freed by fx_free if a
     * failed assertion leaves the delivery half done). */
    struct fx_msg *batch;
    size_t batch_count;

    bool cut[FX_NODES_MAX + 1][FX_NODES_MAX + 1]; /* [from][to]: messages are lost */

    /* Report delivered (and cut) snapshots with raft_report_snapshot(); default true. */
    bool auto_report_snapshot;

    fx_tap tap;
    void *tap_data;
    fx_ready_tap ready_tap;
    void *ready_tap_data;

    struct raft_tracer tracer;
    struct raft_trace *traces;
    size_t traces_count;
    size_t traces_cap;
};

/* cmocka group hooks behind FX_TEST. */
int fx_setup(void **state);
int fx_teardown(void **state);

/* Routes LATCH_ASSERT failures to cmocka's mock_assert(); fx_init does it too. */
void fx_install_assert_handler(void);

/* ---------------------------------------------------------------------------------- */
/* Building a cluster                                                                 */
/* ---------------------------------------------------------------------------------- */

/*
 * Prepares n nodes (ids 1..n) with bootstrapped memstores (voters 1..n: entries 1..n at
 * term 1, commit n) and default configs: election FX_ELECTION_TICK, heartbeat
 * FX_HEARTBEAT_TICK, seed derived from the id, pre_vote and check_quorum OFF (tests that
 * want them turn them on). Nothing is started.
 */
void fx_init(struct fx *fx, size_t n);

/*
 * Replaces node id's storage with a hand-written log, as in the paper's figures: entry i
 * (1-based) has term terms[i - 1] and 8 bytes of data (its index and term). The hard state
 * becomes {term, no vote, commit}, and the configuration is voters 1..n (no conf entries
 * in the log). Call between fx_init and fx_start.
 */
void fx_set_log(struct fx *fx,
                raft_id id,
                const raft_term *terms,
                size_t count,
                raft_term term,
                raft_index commit);

/* Sets node id's persisted term (no vote), keeping its log; before fx_start. */
void fx_set_term(struct fx *fx, raft_id id, raft_term term);

/* Sets pre_vote / check_quorum in the config of every node (before fx_start). */
void fx_set_pre_vote(struct fx *fx, bool on);
void fx_set_check_quorum(struct fx *fx, bool on);

/* Starts every node not yet started (raft_new, then its first ready). */
void fx_start(struct fx *fx);

/*
 * Adds node id (n < id <= FX_NODES_MAX) with an empty store, as a fresh joiner the leader
 * will catch up once a membership change names it; started at once.
 */
void fx_add_node(struct fx *fx, raft_id id);

/* Frees node id's struct raft, keeping its storage and state machine (a crash). */
void fx_crash(struct fx *fx, raft_id id);

/* Creates node id again from its storage (cfg.applied = what it had applied). */
void fx_restart(struct fx *fx, raft_id id);

/* Releases everything; safe on a zeroed or partly built fixture. */
void fx_free(struct fx *fx);

struct fx_node *fx_node(struct fx *fx, raft_id id);

/* ---------------------------------------------------------------------------------- */
/* Driving nodes                                                                      */
/* ---------------------------------------------------------------------------------- */

/* Handles ready batches of node until it has none (the READY CONTRACT of raft.h). */
void fx_handle_ready(struct fx_node *node);

/*
 * Does steps 1-5 of the contract for rd, which the test obtained itself with raft_ready()
 * (to inspect it first), ending with raft_advance().
 */
void fx_process_ready(struct fx_node *node, const struct raft_ready *rd);

/* Ticks node id count times, handling its ready after each tick. */
void fx_tick(struct fx *fx, raft_id id, unsigned count);

/* Ticks every started node count times (round robin), handling readies; delivers nothing. */
void fx_tick_all(struct fx *fx, unsigned count);

/*
 * Ticks node id alone until it leaves the follower role (at most 4 election timeouts),
 * then delivers all messages. True if id ends as leader.
 */
bool fx_tick_until_leader(struct fx *fx, raft_id id);

/* raft_campaign(id), deliver everything, and assert that id leads. */
void fx_elect(struct fx *fx, raft_id id);

/* Ticks leader id for one heartbeat interval, then delivers everything. */
void fx_heartbeat(struct fx *fx, raft_id id);

/* Proposes data (a string) on node id and handles its ready; returns raft_propose's code. */
int fx_propose(struct fx *fx, raft_id id, const char *data);

/* Proposes a membership change on id and handles its ready; returns the core's code. */
int fx_propose_cc(struct fx *fx, raft_id id, uint32_t type, raft_id node);

/* Feeds m to node `to` (asserting raft_step returns 0), then handles its ready. */
void fx_step(struct fx *fx, raft_id to, const struct raft_msg *m);

/*
 * Makes node id's state machine snapshot at its applied index (data "snap@<index>") and
 * compacts its log through that index.
 */
void fx_snapshot_and_compact(struct fx *fx, raft_id id);

/* ---------------------------------------------------------------------------------- */
/* The network                                                                        */
/* ---------------------------------------------------------------------------------- */

/* Messages from a to b and from b to a are lost until fx_heal. */
void fx_cut(struct fx *fx, raft_id a, raft_id b);

/* Cuts id off from every other node. */
void fx_isolate(struct fx *fx, raft_id id);

/* Restores every link. */
void fx_heal(struct fx *fx);

/*
 * One pass over the messages queued now: those matching pred (NULL: all) are delivered
 * (or lost on a cut link or to a crashed or unknown node), the others stay queued.
 * Messages produced meanwhile are queued behind. Returns how many matched.
 */
size_t fx_deliver_if(struct fx *fx, fx_pred pred, void *data);

/* Repeats fx_deliver_if until no queued message matches (asserting it ends). */
void fx_stabilize_if(struct fx *fx, fx_pred pred, void *data);

/* Delivers everything until the queue is empty. */
void fx_stabilize(struct fx *fx);

/* Type/from/to filter for the helpers below; 0 in a field matches anything. */
struct fx_match {
    uint32_t type;
    raft_id from;
    raft_id to;
};

bool fx_pred_match(const struct fx_msg *msg, void *data); /* data: struct fx_match * */

/* One pass delivering the messages of this type/from/to (0 = any). */
size_t fx_deliver(struct fx *fx, uint32_t type, raft_id from, raft_id to);

/* Removes matching messages from the queue; returns how many. */
size_t fx_drop_if(struct fx *fx, fx_pred pred, void *data);
size_t fx_drop(struct fx *fx, uint32_t type, raft_id from, raft_id to);

/* Empties the queue. */
void fx_clear(struct fx *fx);

/* Queued messages of this type/from/to (0 = any): how many, and the first (or NULL). */
size_t fx_count(const struct fx *fx, uint32_t type, raft_id from, raft_id to);
const struct fx_msg *fx_find(const struct fx *fx, uint32_t type, raft_id from, raft_id to);

/* Queued messages of this type/from/to (0 = any) whose reject flag equals reject. */
size_t fx_count_reject(const struct fx *fx, uint32_t type, raft_id from, raft_id to, bool reject);

void fx_set_tap(struct fx *fx, fx_tap tap, void *data);
void fx_set_ready_tap(struct fx *fx, fx_ready_tap tap, void *data);

/* A zeroed message with these header fields, for tests that craft what a peer sends. */
struct raft_msg fx_make_msg(uint32_t type, raft_id from, raft_id to, raft_term term);

/* ---------------------------------------------------------------------------------- */
/* Inspection                                                                         */
/* ---------------------------------------------------------------------------------- */

struct raft_status fx_status(struct fx *fx, raft_id id);
enum raft_role fx_role(struct fx *fx, raft_id id);
raft_term fx_term(struct fx *fx, raft_id id);
raft_index fx_commit(struct fx *fx, raft_id id);

/* The one started leader with the highest term, or RAFT_NONE. */
raft_id fx_leader(struct fx *fx);

/* Term of entry i in id's storage (0 when it has no such entry). */
raft_term fx_stored_term(struct fx *fx, raft_id id, raft_index i);

/* Last index in id's storage. */
raft_index fx_last_index(struct fx *fx, raft_id id);

/* Asserts that id's storage holds exactly entries 1..count with these terms. */
void fx_assert_log_terms(struct fx *fx, raft_id id, const raft_term *terms, size_t count);

/* Asserts that the logs of a and b (from the later first index) have equal terms. */
void fx_assert_logs_equal(struct fx *fx, raft_id a, raft_id b);

/* The applied entry with this index on id, or NULL. */
const struct fx_entry *fx_applied_entry(struct fx *fx, raft_id id, raft_index index);

/* True if id applied a normal entry whose data equals the string s. */
bool fx_applied_data(struct fx *fx, raft_id id, const char *s);

/* Traces of this kind emitted by id (RAFT_NONE: any node). */
size_t fx_trace_count(const struct fx *fx, raft_id id, uint32_t kind);

#endif /* LATCH_RAFT_FIXTURE_H */
