/*
 * etcd_codec.h — translation between etcd's v3 KV messages (protobuf-c, etcdserverpb) and
 * store/'s requests and results, and from latch errors to etcd's gRPC statuses and texts
 * (ETCD-API.md §4.1–§4.4, §4.10).
 *
 * The node translates a request once, on the member that received it: it becomes a
 * store_txn_req (a Put is a txn with one success op, a DeleteRange likewise), is checked with
 * store_txn_validate, and is encoded as a store_cmd for the Raft log. Answers go the other
 * way: store results become etcd responses.
 *
 * Lifetimes: requests borrow every byte string from the protobuf message they came from;
 * arrays (compares, ops, nested txns) are allocated in the caller's arena. Responses are
 * built in the arena too and point into the store results (which live in their own arena):
 * both arenas must outlive packing the response. Nothing here allocates outside an arena.
 */
#ifndef SERVER_ETCD_CODEC_H
#define SERVER_ETCD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "latch_arena.h"
#include "mvccpb/kv.pb-c.h"
#include "store.h"

/* Longest grpc-message etcd_status() writes (NUL included). */
#define ETCD_STATUS_MSG_MAX 160

/* A RangeRequest as a store range (serializable is the caller's business). */
void etcd_range_req(const Etcdserverpb__RangeRequest *in, struct store_range_req *out);

/* A PutRequest and a DeleteRangeRequest as store ops. */
void etcd_put_req(const Etcdserverpb__PutRequest *in, struct store_put_req *out);
void etcd_delete_req(const Etcdserverpb__DeleteRangeRequest *in, struct store_delete_req *out);

/*
 * A TxnRequest (nested txns included) as a store txn, arrays in a. A RequestOp with no
 * request set, or nesting deeper than STORE_TXN_DEPTH_MAX, is LATCH_EINVAL with *why set to
 * the text etcd would use after "etcdserver: " (store_txn_validate then checks the rest).
 * Returns 0, LATCH_EINVAL or LATCH_ENOMEM.
 */
int etcd_txn_req(const Etcdserverpb__TxnRequest *in,
                 struct latch_arena *a,
                 struct store_txn_req *out,
                 const char **why);

/* Wraps one op as a txn with no compares (how Put and DeleteRange go through the log). */
void etcd_single_op_txn(const struct store_op *op, struct store_txn_req *out);

/*
 * Responses. hdr (borrowed; may be NULL) becomes the response's header. A txn's
 * sub-responses get a header holding only a revision, the one etcd gives each op: with hdr's
 * revision R after the txn and B = R - 1 when the txn changed something (B = R otherwise),
 * a range before any change B, after one R; a put R; a delete R when it or an earlier op
 * changed something, else B; a nested txn an empty header (its ops follow the same rule).
 * Return 0 or LATCH_ENOMEM.
 */
int etcd_range_resp(const struct store_range_result *r,
                    Etcdserverpb__ResponseHeader *hdr,
                    struct latch_arena *a,
                    Etcdserverpb__RangeResponse *out);
int etcd_put_resp(const struct store_put_result *r,
                  Etcdserverpb__ResponseHeader *hdr,
                  struct latch_arena *a,
                  Etcdserverpb__PutResponse *out);
int etcd_delete_resp(const struct store_delete_result *r,
                     Etcdserverpb__ResponseHeader *hdr,
                     struct latch_arena *a,
                     Etcdserverpb__DeleteRangeResponse *out);
int etcd_txn_resp(const struct store_txn_result *r,
                  Etcdserverpb__ResponseHeader *hdr,
                  struct latch_arena *a,
                  Etcdserverpb__TxnResponse *out);

/* A store key-value as mvccpb.KeyValue (pointers into kv). */
void etcd_kv(const struct store_kv *kv, Mvccpb__KeyValue *out);

/*
 * The gRPC status and etcd's grpc-message for a latch error err. why (may be NULL) is the
 * store's sentence for LATCH_EINVAL ("key is not provided", "value is provided", ...), which
 * etcd prefixes with "etcdserver: ". Writes the message into msg (ETCD_STATUS_MSG_MAX bytes
 * are always enough) and returns the gRPC status code.
 */
int etcd_status(int err, const char *why, char *msg, size_t cap);

#endif /* SERVER_ETCD_CODEC_H */
