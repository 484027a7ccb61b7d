/*
 * lease.h — the lease keeper: lease deadlines, expiry through Raft, keep-alives and TTL
 * checkpoints on a node (DESIGN §2, ETCD-API.md §4.6, §4.9).
 *
 * The store holds every lease (id, granted TTL, remaining TTL as last checkpointed); the
 * keeper holds, on the node's loop thread, a deadline for each of them. Only the LEADER uses
 * deadlines: a follower's keeper does nothing until its node becomes leader.
 *
 * TRACKING. While this node is leader the keeper re-reads the store's lease list
 * (store_lease_list) whenever the applied index moved and at least resync_ms passed, and at
 * once when the node becomes leader. A lease new to it gets deadline = now + (checkpointed
 * remaining TTL, or the granted TTL when never checkpointed); a lease gone from the store is
 * forgotten. Grants and revokes made through this node are told to the keeper as soon as they
 * are applied (srv_lease_keeper_granted/revoked), and a keep-alive or TTL query for a lease the
 * keeper has not seen yet reads it from the store (after a ReadIndex when the local store
 * does not have it), so nothing waits for the next re-read. Cost: O(leases) per re-read and
 * per tick (a deadline heap is a later optimisation).
 *
 * PROMOTION. When the node becomes leader every lease's deadline is reset to
 * now + its remaining TTL as last checkpointed (the granted TTL when never checkpointed) +
 * promote_extend_ms (the election timeout in latchd, as etcd's lessor.Promote extends by it:
 * a client that renewed on the old leader just before it lost leadership is not cut short),
 * but never beyond now + the full TTL (what any keep-alive promised).
 * So a leader change neither expires a live lease early nor renews it to its full TTL.
 *
 * EXPIRY. Each tick, while leader, a lease whose deadline passed is revoked by proposing
 * STORE_CMD_LEASE_REVOKE (at most SRV_LEASE_REVOKES_INFLIGHT at once); the store deletes
 * its keys in one revision on every member. A failed proposal is retried on a later tick
 * while this node is still leader and the lease still expired.
 *
 * CHECKPOINTS. Each tick, while leader, the leases not renewed or checkpointed for
 * min(checkpoint_ms, TTL/2) get their remaining TTL (rounded up to whole seconds, so never
 * below the real one) proposed as STORE_CMD_LEASE_CHECKPOINT, at most checkpoint_batch per
 * command and one command in flight. A keep-alive of a lease whose stored checkpoint is not
 * "full TTL" (remaining 0) proposes a checkpoint resetting it to 0 and is answered only once
 * that is applied (etcd 3.5 does the same), so the checkpoint a new leader reads is never
 * below what a client was promised.
 *
 * KEEP-ALIVES are answered by the leader only (srv_lease_keeper_renew refuses on a follower:
 * LATCH_ENOLEADER without a leader, LATCH_ENOTLEADER with one); the Lease service forwards a
 * follower's keep-alives and time-to-live queries to the leader (svc_lease.h, FORWARDING).
 *
 * Everything runs on the node's loop thread.
 */
#ifndef SERVER_LEASE_H
#define SERVER_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "node.h"

#define SRV_LEASE_TICK_MS_DEFAULT          100u
#define SRV_LEASE_RESYNC_MS_DEFAULT        1000u
#define SRV_LEASE_CHECKPOINT_MS_DEFAULT    (5u * 60u * 1000u) /* etcd's checkpoint interval */
#define SRV_LEASE_CHECKPOINT_BATCH_DEFAULT 1000u
#define SRV_LEASE_REVOKES_INFLIGHT         64u

/* srv_lease_keeper_renew: the answer comes later, through the callback. */
#define SRV_LEASE_PENDING 1

struct srv_lease_keeper;

struct srv_lease_config {
    struct srv_node *node;      /* borrowed; see srv_lease_keeper_stop for the order */
    uint32_t tick_ms;           /* 0: SRV_LEASE_TICK_MS_DEFAULT */
    uint32_t resync_ms;         /* 0: SRV_LEASE_RESYNC_MS_DEFAULT */
    uint32_t checkpoint_ms;     /* 0: SRV_LEASE_CHECKPOINT_MS_DEFAULT */
    uint32_t checkpoint_batch;  /* 0: SRV_LEASE_CHECKPOINT_BATCH_DEFAULT */
    uint32_t promote_extend_ms; /* added to every deadline at promotion (election timeout) */
};

/* Starts the keeper's timer on loop (borrowed). Returns 0, LATCH_EINVAL (no node) or
 * LATCH_ENOMEM. */
int srv_lease_keeper_new(uv_loop_t *loop,
                         const struct srv_lease_config *cfg,
                         struct srv_lease_keeper **out);

/*
 * Stops the keeper: its timer is closed and it proposes nothing more; renew and remaining
 * answer LATCH_ESHUTDOWN. Call before srv_node_close() (the keeper uses the node until then).
 * Proposals in flight still complete through the node (with LATCH_ESHUTDOWN at its close).
 * NULL is a no-op.
 */
void srv_lease_keeper_stop(struct srv_lease_keeper *k);

/* Frees the keeper, after srv_lease_keeper_stop, once the loop has run the timer's close and
 * the node has closed (no callback of it can run). NULL is a no-op. */
void srv_lease_keeper_free(struct srv_lease_keeper *k);

/* A lease renewal's outcome: err 0 and ttl (the granted TTL; 0 when the lease does not exist
 * or has expired), or a node error (the keep-alive then fails). */
typedef void (*srv_lease_renew_cb)(void *data, int err, int64_t ttl);

/*
 * Renews lease id: its deadline becomes now + its granted TTL. Returns 0 with *ttl_out set
 * (the granted TTL, or 0: unknown or expired lease) when answered now; SRV_LEASE_PENDING when
 * cb (required) will run later, exactly once (a checkpoint reset or a ReadIndex is in
 * flight); or, without calling cb: LATCH_ENOLEADER (no leader), LATCH_ENOTLEADER (another
 * member leads), LATCH_ESHUTDOWN, LATCH_ENOMEM, the node's errors.
 */
int srv_lease_keeper_renew(
    struct srv_lease_keeper *k, int64_t id, srv_lease_renew_cb cb, void *data, int64_t *ttl_out);

/*
 * Remaining whole seconds (truncated, never negative) of lease id on the leader, reading
 * the lease from the store when the keeper has not seen it yet. Returns 0, LATCH_ENOTFOUND,
 * LATCH_ENOLEADER, LATCH_ENOTLEADER, LATCH_ESHUTDOWN, LATCH_ENOMEM or the store's errors.
 */
int srv_lease_keeper_remaining(struct srv_lease_keeper *k, int64_t id, int64_t *ttl_out);

/* A grant / revoke made through this node was applied: track / forget it at once. */
void srv_lease_keeper_granted(struct srv_lease_keeper *k, int64_t id, int64_t ttl);
void srv_lease_keeper_revoked(struct srv_lease_keeper *k, int64_t id);

/*
 * Hooks of another module on the keeper's timer (the latch.v1 locks: lock-delay and wait
 * deadlines, svc_latch_lock.c); each may be NULL, data is borrowed until the keeper stops.
 *  - expiring(data, id): the LEADER is about to propose the revoke of expired lease id (not
 *    for a client's LeaseRevoke or SessionClose). Whatever it proposes through the same node
 *    now is applied before that revoke.
 *  - on_tick(data, leader): every tick until srv_lease_keeper_stop, on every member; leader
 *    tells whether this node leads. After the keeper stopped neither runs again.
 * A later call replaces the hooks.
 */
void srv_lease_keeper_hooks(struct srv_lease_keeper *k,
                            void (*expiring)(void *data, int64_t id),
                            void (*on_tick)(void *data, bool leader),
                            void *data);

/* Leases the keeper tracks (tests and metrics). */
size_t srv_lease_keeper_count(const struct srv_lease_keeper *k);

#endif /* SERVER_LEASE_H */
