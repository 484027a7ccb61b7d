/*
 * svc_lease.h — etcd's Lease service (/etcdserverpb.Lease/LeaseGrant, LeaseRevoke,
 * LeaseKeepAlive, LeaseTimeToLive, LeaseLeases) on a node and its lease keeper
 * (ETCD-API.md §3, §4.6, §4.9, §4.10).
 *
 *  - LeaseGrant: TTL raised to min_ttl; TTL above 9e9 s is OutOfRange "etcdserver: too large
 *    lease TTL"; ID 0 lets the store pick one; an existing ID is FailedPrecondition
 *    "etcdserver: lease already exists". Proposed through Raft (a follower's proposal goes to
 *    the leader), answered once applied here: {header, ID, TTL}.
 *  - LeaseRevoke: proposed; the store deletes the attached keys in one revision. Unknown:
 *    NotFound "etcdserver: requested lease not found".
 *  - LeaseLeases: after a ReadIndex, the IDs from the local store. Any member.
 *  - LeaseTimeToLive: after a ReadIndex, on the leader: {ID, TTL (remaining, truncated),
 *    grantedTTL, keys when asked}; unknown lease: TTL -1, not an error.
 *  - LeaseKeepAlive (bidirectional): each request {ID} gets {header, ID, TTL}: the granted TTL
 *    after renewal on the leader, or TTL 0 for an unknown or expired lease. The client's
 *    half-close finishes the call OK once every pending reply is sent.
 *
 * LEADER ONLY: KeepAlive and TimeToLive need the leader's deadlines (lease.h). On a follower
 * they fail with Unavailable: "etcdserver: no leader" when no leader is known, otherwise
 * "etcdserver: not the leader for leases" — a text clientv3 does not map to its own
 * FailedPrecondition ErrNotLeader, so its retry logic sees a plain Unavailable and retries
 * (the keep-alive loop every 500 ms, TimeToLive through the retry interceptor), which with
 * several endpoints reaches the leader through the client's balancer. Forwarding to the
 * leader is not implemented yet; a client given only a follower's endpoint cannot keep a
 * lease alive. Grant, Revoke and Leases work on every member.
 *
 * Every response carries the header (cluster id, member id, revision, Raft term). Loop
 * thread only.
 */
#ifndef SERVER_SVC_LEASE_H
#define SERVER_SVC_LEASE_H

#include <stdint.h>

#include "grpc_server.h"
#include "lease.h"
#include "node.h"

#define SRV_LEASE_MIN_TTL_DEFAULT 2 /* etcd's minimum with its default election timeout */

struct srv_lease;

struct srv_lease_svc_config {
    struct srv_node *node;           /* borrowed; must outlive the service's calls */
    struct srv_lease_keeper *keeper; /* borrowed; likewise */
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t min_ttl; /* 0: SRV_LEASE_MIN_TTL_DEFAULT */
};

/*
 * Registers the five methods on s (borrowed) and sets *out (free with srv_lease_free after
 * the server and the node have closed). Returns 0, LATCH_ENOMEM or the registration errors;
 * after an error the server must be closed without serving.
 */
int srv_lease_register(struct api_server *s,
                       const struct srv_lease_svc_config *cfg,
                       struct srv_lease **out);

/* Frees the service. NULL is a no-op. */
void srv_lease_free(struct srv_lease *l);

#endif /* SERVER_SVC_LEASE_H */
