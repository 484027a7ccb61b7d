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
 * FORWARDING. KeepAlive and TimeToLive need the leader's deadlines (lease.h). A follower
 * keeps the client's call (or keep-alive stream) and forwards each request to the leader it
 * knows over the peer transport (unary SRV_PEER_LEASE_RENEW_PATH / SRV_PEER_LEASE_TTL_PATH on
 * srv_peer_channel(leader), bounded by LEASE_FWD_TIMEOUT_MS), then answers the client with
 * the leader's result under its own header, as etcd's follower does over its peer HTTP API.
 * The leader serves them with srv_lease_register_peer(): renew through its keeper, time to
 * live after a ReadIndex; a request of another cluster is FAILED_PRECONDITION "cluster id
 * mismatch"; a member that is not the leader any more answers Unavailable "etcdserver: not
 * the leader for leases" and never forwards a forwarded request again. As etcd's follower,
 * it keeps trying for LEASE_FWD_TIMEOUT_MS (5 s, all attempts together): while no leader is
 * known, or the leader's connection fails, or the member asked answers Unavailable (it lost
 * leadership), it waits LEASE_FWD_RETRY_MS and asks the leader known then. At the deadline
 * the client gets etcd's retryable Unavailable "etcdserver: no leader" (none known) or
 * "etcdserver: request timed out"; "etcdserver: leader changed" at once when this member
 * became the leader meanwhile (the client's retry is served here). A keep-alive stream ends
 * with that status; clientv3 opens a new one. srv_lease_stop() answers every waiting request
 * "etcdserver: server stopped".
 * Without a transport (cfg.peer NULL) a follower refuses both with Unavailable
 * "etcdserver: not the leader for leases". Grant, Revoke and Leases work on every member.
 *
 * Every response carries the header (cluster id, member id, revision, Raft term). Loop
 * thread only.
 *
 * The same keep-alive handler also serves latch.v1's /latch.v1.Latch/SessionKeepAlive, whose
 * messages are wire-identical (a session is a lease); its errors are therefore etcd's texts.
 */
#ifndef SERVER_SVC_LEASE_H
#define SERVER_SVC_LEASE_H

#include <stdint.h>

#include <uv.h>

#include "grpc_server.h"
#include "lease.h"
#include "node.h"

#define SRV_LEASE_MIN_TTL_DEFAULT 2 /* etcd's minimum with its default election timeout */

struct srv_lease;

struct srv_peer;

struct srv_lease_svc_config {
    struct srv_node *node;           /* borrowed; must outlive the service's calls */
    struct srv_lease_keeper *keeper; /* borrowed; likewise */
    /* The peer transport, for forwarding to the leader (borrowed; may be NULL: no
     * forwarding). Call srv_lease_stop() before closing it. */
    struct srv_peer *peer;
    /* The loop of the node and transport, for the retry timers; required with peer. */
    uv_loop_t *loop;
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

/*
 * Registers the leader's side of forwarding (SRV_PEER_LEASE_RENEW_PATH and
 * SRV_PEER_LEASE_TTL_PATH) on the peer listener peers (borrowed), served by l. Returns as
 * api_server_register_unary. peers must be closed before srv_lease_free(l).
 */
int srv_lease_register_peer(struct api_server *peers, struct srv_lease *l);

/*
 * Stops forwarding: requests waiting to try again are answered Unavailable "etcdserver:
 * server stopped" at once, later ones without trying (calls in flight end when the transport
 * closes them). Call before srv_peer_close() of cfg.peer. NULL is a no-op.
 */
void srv_lease_stop(struct srv_lease *l);

/* Frees the service (after srv_lease_stop and once the loop has run every close). NULL is a
 * no-op. */
void srv_lease_free(struct srv_lease *l);

#endif /* SERVER_SVC_LEASE_H */
