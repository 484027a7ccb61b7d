/*
 * svc_watch.h — etcd's Watch service (/etcdserverpb.Watch/Watch, a bidirectional stream) on
 * the watch hub (server/watch.h; ETCD-API.md §3, §4.5).
 *
 * Each call is one hub stream: every WatchRequest message goes to srv_watch_stream_request
 * as it arrives (create, cancel, progress; requests with nothing set are ignored, as etcd
 * does), and every hub response is queued with api_call_send. When the call's queue is full
 * (would_block) the service pauses the call's receive side and resumes it, and the hub's
 * feeding, from api_call_on_writable: a client that does not read holds back nothing but
 * its own watchers, which catch up from the store's history later.
 *
 * Client half-close ends nothing (etcd keeps sending until the client cancels). A reset
 * stream, a closed connection or a server close frees the stream and all its watchers
 * (api_call_on_cancel). A request that does not unpack ends the call with INTERNAL, as
 * grpc-go does. With metadata hasleader=true and no leader known, the call is refused with
 * Unavailable "etcdserver: no leader".
 *
 * Not yet: ending streams that stay leaderless for three election timeouts (etcd's
 * monitorLeader), auth. Everything runs on the node's loop thread.
 */
#ifndef SERVER_SVC_WATCH_H
#define SERVER_SVC_WATCH_H

#include "grpc_server.h"
#include "node.h"
#include "watch.h"

struct srv_watch_svc;

struct srv_watch_svc_config {
    struct srv_node *node;     /* borrowed: the leader check */
    struct srv_watch_hub *hub; /* borrowed; must outlive every call (see srv_watch_hub_close) */
};

/*
 * Registers /etcdserverpb.Watch/Watch on s (borrowed) and sets *out (free with
 * srv_watch_svc_free after the server has closed). Returns 0, LATCH_ENOMEM, LATCH_EINVAL or
 * api_server_register_bidi_stream's errors.
 */
int srv_watch_svc_register(struct api_server *s,
                           const struct srv_watch_svc_config *cfg,
                           struct srv_watch_svc **out);

/* Frees the service (calls in flight hold no pointer to it). NULL is a no-op. */
void srv_watch_svc_free(struct srv_watch_svc *svc);

#endif /* SERVER_SVC_WATCH_H */
