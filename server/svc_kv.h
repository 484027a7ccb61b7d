/*
 * svc_kv.h — etcd's KV service (/etcdserverpb.KV/Range, Put, DeleteRange, Txn, Compact) on a
 * node (ETCD-API.md §3, §4.1–§4.4, §4.9).
 *
 * Reads: a Range is linearizable by default (srv_node_read_index, then the local store) and
 * served from the local store at once when serializable. Writes: a request is translated
 * once, on the member that received it (etcd_codec), checked with store_txn_validate, encoded
 * as one store_cmd and proposed; the answer goes out after the entry is applied on this
 * member, built from the deterministic store_result. Txns always go through the log (a
 * read-only txn too: linearizable like etcd's). Every response carries etcd's header:
 * cluster id, member id, the store revision (after the write, or current for reads) and
 * the Raft term.
 *
 * Errors are etcd's codes and texts (etcd_status). A request whose encoded command exceeds
 * max_request_bytes gets InvalidArgument "etcdserver: request is too large" before it is
 * proposed. Everything runs on the node's loop thread.
 */
#ifndef SERVER_SVC_KV_H
#define SERVER_SVC_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd_codec.h"
#include "grpc_server.h"
#include "node.h"

struct srv_kv;

struct srv_kv_config {
    struct srv_node *node; /* borrowed; must outlive the service */
    uint64_t cluster_id;
    uint64_t member_id;
    size_t max_request_bytes; /* 0: 1.5 MiB, etcd's --max-request-bytes */
};

/*
 * Registers the five methods on s (borrowed) and sets *out (free with srv_kv_free after the
 * server has closed). Returns 0, LATCH_ENOMEM or api_server_register_unary's errors; after
 * an error the server must be closed without serving (methods registered before the failing
 * one point at the freed service).
 */
int srv_kv_register(struct api_server *s, const struct srv_kv_config *cfg, struct srv_kv **out);

/* Frees the service. Calls still waiting on the node hold no pointer to it. NULL is a no-op. */
void srv_kv_free(struct srv_kv *kv);

/* Fills hdr with the service's cluster and member ids, revision and the node's term. */
void srv_kv_header(const struct srv_kv *kv, int64_t revision, Etcdserverpb__ResponseHeader *hdr);

/*
 * Encodes c and proposes it through the service's node with cb and data (srv_node_propose's
 * contract), refusing with LATCH_ETOOBIG a command over the service's request size limit.
 * Returns 0, LATCH_ETOOBIG, LATCH_ENOMEM, store_cmd_encode's or srv_node_propose's errors.
 */
int srv_kv_propose_cmd(const struct srv_kv *kv,
                       const struct store_cmd *c,
                       srv_node_propose_cb cb,
                       void *data);

/*
 * Checks t as a Txn request is checked (store_txn_validate; why gets its sentence, or "" for
 * other errors) and proposes it as one txn command through the service's node, with the
 * service's request size limit. cb runs as for srv_node_propose, only when this returns 0.
 * Returns 0, store_txn_validate's errors, LATCH_ETOOBIG, LATCH_ENOMEM or srv_node_propose's.
 * For the other etcd services that write through the log (svc_v3conc.h).
 */
int srv_kv_propose_txn(const struct srv_kv *kv,
                       const struct store_txn_req *t,
                       srv_node_propose_cb cb,
                       void *data,
                       char *why,
                       size_t why_size);

/*
 * True when t (nested txns included) writes a reserved key: a put of a key starting with a
 * NUL byte, or a delete whose range reaches one (keys in ["\0", "\1"): latch.v1's lock and
 * election queues, svc_latch_int.h). The etcd-facing services refuse such a txn with
 * InvalidArgument SRV_KV_ERESERVED so that an etcd client can read lock state but never
 * forge or erase a grant; latch.v1 writes them through srv_kv_propose_txn/_cmd directly.
 */
bool srv_kv_txn_reserved(const struct store_txn_req *t);

#define SRV_KV_ERESERVED "keys starting with \\x00 are reserved for latch's locks"

#endif /* SERVER_SVC_KV_H */
