/*
 * svc_latch.h — the native latch.v1 service (/latch.v1.Latch/...; api/proto/latch/v1/
 * latch.proto, docs/api.md, docs/decisions/locks.md) on a node: sessions, the tree, Multi,
 * fenced writes, locks with fencing tokens, elections and recursive watches.
 *
 * It is one gRPC service implemented in three files that share server/svc_latch_int.h:
 *   svc_latch.c        registration, sessions, the tree (Create/Get/Stat/Set/Delete/
 *                      Children/Multi), fences, status mapping
 *   svc_latch_lock.c   Acquire/Release/Holder/Waiters/CheckFence, elections, lock-delay
 *   svc_latch_watch.c  Watch (on the watch hub)
 *
 * Writes are proposed through the KV service's size limit (srv_kv_propose_cmd) and answered
 * once applied on this member; reads are linearizable (ReadIndex) unless serializable. Every
 * response carries latch.v1.Header (cluster id, member id, revision, Raft term). Errors are
 * gRPC statuses with messages starting "latch: " (latch__status). Loop thread only.
 */
#ifndef SERVER_SVC_LATCH_H
#define SERVER_SVC_LATCH_H

#include <stdint.h>

#include <uv.h>

#include "grpc_server.h"
#include "lease.h"
#include "node.h"
#include "svc_kv.h"
#include "watch.h"

struct srv_latch;

struct srv_latch_config {
    uv_loop_t *loop;                 /* borrowed: the node's loop (timers) */
    struct srv_node *node;           /* borrowed; must outlive the service */
    struct srv_kv *kv;               /* borrowed: proposals with the request size limit */
    struct srv_lease_keeper *keeper; /* borrowed: sessions granted here, lock-delay expiry */
    struct srv_watch_hub *hub;       /* borrowed: Watch */
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t min_ttl; /* sessions' minimum TTL, s (the Lease service's) */
};

/*
 * Registers every latch.v1 method but SessionKeepAlive (served by svc_lease: its messages
 * are wire-identical to LeaseKeepAlive's, see srv_lease_register) on s (borrowed) and sets
 * *out. Returns 0, LATCH_EINVAL (a required config field missing), LATCH_ENOMEM or the
 * registration errors; after an error the server must be closed without serving.
 */
int srv_latch_register(struct api_server *s,
                       const struct srv_latch_config *cfg,
                       struct srv_latch **out);

/* The node applied up to revision (call from the node's applied hook): waiting Acquires and
 * Campaigns are re-checked, observers fed. NULL is a no-op. */
void srv_latch_applied(struct srv_latch *l, int64_t revision);

/* Frees the service after the server and the node closed: waiting calls are answered. NULL
 * is a no-op. */
void srv_latch_free(struct srv_latch *l);

#endif /* SERVER_SVC_LATCH_H */
