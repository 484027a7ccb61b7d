/*
 * svc_maint.h — etcd's Maintenance (Status, Alarm list, Defragment), Cluster (MemberList) and
 * Auth (Authenticate) services on a node, as much of them as latchd has today
 * (ETCD-API.md §3, §4.7–§4.8, §4.10).
 *
 *  - Status: this member's version, database file size and bytes in use, the leader, the
 *    Raft last index, term and applied index, and the active alarms as errors.
 *  - Alarm: GET lists the replicated NOSPACE alarm; ACTIVATE and DEACTIVATE answer
 *    Unimplemented until the alarm can be disarmed through Raft.
 *  - Defragment: LMDB reuses freed pages itself, so there is nothing to do: answers OK.
 *  - MemberList: the members of --initial-cluster with their ids, names, peer URLs and
 *    client URLs: this member's advertised ones, and for the others what they advertised
 *    to this member with their Raft stream (client_urls below); a member that has not
 *    connected yet is listed without client URLs, as etcd lists an unstarted member.
 *  - Authenticate: FailedPrecondition "etcdserver: authentication is not enabled".
 * Every response carries etcd's header. Everything runs on the node's loop thread.
 */
#ifndef SERVER_SVC_MAINT_H
#define SERVER_SVC_MAINT_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_server.h"
#include "node.h"

struct srv_maint;

/* One member as MemberList reports it; strings borrowed for the life of the service. */
struct srv_maint_member {
    uint64_t id;
    const char *name;
    const char *const *peer_urls;
    size_t peer_urls_count;
    const char *const *client_urls; /* may be empty */
    size_t client_urls_count;
};

struct srv_maint_config {
    struct srv_node *node; /* borrowed; must outlive the service */
    uint64_t cluster_id;
    uint64_t member_id;
    const struct srv_maint_member *members; /* copied array; strings borrowed */
    size_t members_count;
    /* The comma-separated client URLs member id advertised, or NULL (borrowed for the
     * call); asked for members whose client_urls_count is 0. May be NULL. */
    const char *(*client_urls)(void *data, uint64_t id);
    void *client_urls_data;
};

/* Registers the methods on s and sets *out (free after the server closed). Returns 0,
 * LATCH_ENOMEM or api_server_register_unary's errors (then close the server unused). */
int srv_maint_register(struct api_server *s,
                       const struct srv_maint_config *cfg,
                       struct srv_maint **out);

void srv_maint_free(struct srv_maint *m);

#endif /* SERVER_SVC_MAINT_H */
