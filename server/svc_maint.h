/*
 * svc_maint.h — etcd's Maintenance service, Cluster (MemberList) and Auth (Authenticate) on a
 * node (ETCD-API.md §3, §4.7–§4.8, §4.10). docs/decisions/maintenance.md says why.
 *
 *  - Status: this member's version, database file size and bytes in use, the leader, the
 *    Raft last index, term and applied index, and the active alarms as errors.
 *  - Alarm: GET lists the replicated NOSPACE alarm (against this member's id); ACTIVATE and
 *    DEACTIVATE of NOSPACE go through Raft (STORE_CMD_ALARM) and answer the alarm they
 *    changed, as etcd does. CORRUPT (etcd 3.4 has it) is never raised by latch: activating
 *    it answers Unimplemented, deactivating it changes nothing. The service also raises
 *    NOSPACE itself when store_space() reports over_quota (srv_maint_applied).
 *  - Hash, HashKV: CRC-32C (Castagnoli) of the history (store_hash_all, store_hash_kv),
 *    computed on the loop's worker pool with a reader of its own: equal on every member
 *    that applied the same commands. HashKV errors as etcd's (compacted, future revision).
 *  - Snapshot (server stream): a bbolt image of the applied state laid out like etcd 3.4's
 *    backend (server/snap_image.h), written on a worker into an unnamed temporary file in
 *    the data dir, then streamed in 64 KiB messages with remaining_bytes counting down,
 *    pausing while the stream's queue is full (api_call_on_writable), and ended by a message
 *    whose blob is the SHA-256 of every earlier blob byte. No header, as etcd.
 *  - Defragment: LMDB reuses freed pages itself, so there is nothing to do: answers OK.
 *  - MemberList moved to server/svc_cluster.h (the live membership).
 *  - Authenticate: FailedPrecondition "etcdserver: authentication is not enabled".
 * Every response but Snapshot's carries etcd's header. Everything runs on the node's loop
 * thread except the store reads of Hash, HashKV and Snapshot (uv_queue_work).
 */
#ifndef SERVER_SVC_MAINT_H
#define SERVER_SVC_MAINT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

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
    uv_loop_t *loop;       /* the node's loop (worker pool, file reads); borrowed */
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

/*
 * An apply batch completed (latchd's srv_node_applied_fn): at most every
 * SRV_MAINT_QUOTA_CHECK_MS, measures the store and proposes the NOSPACE alarm when it is
 * over its quota and the alarm is off (one proposal in flight at a time).
 */
void srv_maint_applied(struct srv_maint *m);

#define SRV_MAINT_QUOTA_CHECK_MS 100u

/*
 * Stops the service's background work before the node closes: pending Hash, HashKV and
 * Snapshot workers are told to stop, streams end. done_cb(data) runs (possibly from inside
 * this call) once no worker holds a store reader any more; close the node only then.
 * Call once; the service answers nothing new afterwards.
 */
void srv_maint_stop(struct srv_maint *m, void (*done_cb)(void *data), void *data);

/* Frees m after srv_maint_stop's callback (or when it never started work). NULL ignored. */
void srv_maint_free(struct srv_maint *m);

#endif /* SERVER_SVC_MAINT_H */
