/*
 * svc_cluster.h — etcd's Cluster service (MemberAdd, MemberRemove, MemberUpdate,
 * MemberPromote, MemberList) and Maintenance/MoveLeader on the client listener, and the
 * membership RPCs of the peer listener (/latch.raft.v1.Raft/Members, .../Publish, and the
 * forwarded member changes). docs/decisions/membership.md says how it behaves.
 *
 *  - MemberList answers from the node's live membership (srv_node_members): ids, names (empty
 *    until the member started and published it: etcdctl prints "unstarted"), peer URLs,
 *    client URLs (this member's advertised ones; the others' as they advertised them on
 *    their Raft stream, server/peer.h), isLearner.
 *  - MemberAdd/Remove/Update/Promote run on the leader (srv_node_change_members) and answer
 *    once the change is applied there, with etcd 3.4's responses and errors. A follower
 *    forwards the request unchanged to the leader's peer URLs (.../Raft/MemberAdd, ...) and
 *    relays the answer (whose header is then the leader's). A forwarded call that reaches a
 *    member that is not the leader fails Unavailable "etcdserver: leader changed".
 *  - MoveLeader: only on the leader (FailedPrecondition "etcdserver: not leader"); answers
 *    when the target leads, or Unavailable "etcdserver: request timed out, leader transfer
 *    took too long".
 *  - Members (peer): the cluster id, the members and the bootstrap voters. Publish (peer, on
 *    the leader): records a member's name.
 * Everything runs on the node's loop thread.
 */
#ifndef SERVER_SVC_CLUSTER_H
#define SERVER_SVC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "grpc_server.h"
#include "node.h"

struct srv_cluster;
struct api_tls_ctx;

struct srv_cluster_config {
    uv_loop_t *loop;       /* borrowed; for the forwarding channel */
    struct srv_node *node; /* borrowed; must outlive the service */
    uint64_t cluster_id;
    uint64_t member_id;
    const char *const *client_urls; /* this member's advertised client URLs (borrowed) */
    size_t client_urls_count;
    /* The comma-separated client URLs member id advertised, or NULL (borrowed for the call).
     * May be NULL. */
    const char *(*peer_client_urls)(void *data, uint64_t id);
    void *data;
    struct api_tls_ctx *peer_tls;     /* dials https peer URLs (borrowed; may be NULL) */
    const uint64_t *bootstrap_voters; /* copied; for Members */
    size_t bootstrap_voters_count;
    uint32_t move_leader_timeout_ms; /* 0: 5000 */
};

/*
 * Registers the client methods on clients and the peer methods on peers (may be NULL) and
 * sets *out. Returns 0, LATCH_ENOMEM or api_server_register_unary's errors.
 */
int srv_cluster_register(struct api_server *clients,
                         struct api_server *peers,
                         const struct srv_cluster_config *cfg,
                         struct srv_cluster **out);

/*
 * Asks the leader to record this member's name (Publish), unless this member is the leader:
 * then it changes the membership itself. Fire and forget: the outcome shows in the next
 * membership (the caller retries while its name is not there). Returns 0 or LATCH_ENOLEADER,
 * LATCH_ESTATE (a publish is under way), LATCH_ENOMEM.
 */
int srv_cluster_publish(struct srv_cluster *c, const char *name);

/*
 * Asks one other member (a different one at each call, in turn) for the member list, and
 * runs cb(data, removed) when it answers: removed is true when the answer is from this
 * cluster and does not list this member. No answer: cb does not run. For a member that lost
 * its leader (a removed follower never learns of its removal from the log). Returns 0,
 * LATCH_ESTATE (a check is under way), LATCH_ENOTFOUND (no other member), LATCH_ENOMEM.
 */
int srv_cluster_check_removed(struct srv_cluster *c,
                              void (*cb)(void *data, bool removed),
                              void *data);

/* Closes the forwarding channel (calls in flight fail); before the loop ends. NULL ignored. */
void srv_cluster_close(struct srv_cluster *c);

/* Frees c after the servers closed and the loop ended. NULL is ignored. */
void srv_cluster_free(struct srv_cluster *c);

#endif /* SERVER_SVC_CLUSTER_H */
