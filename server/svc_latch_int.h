/*
 * svc_latch_int.h — what the three files of the latch.v1 service share (svc_latch.h).
 * Internal: the latch__ prefix marks names used across svc_latch*.c only.
 *
 * RESERVED KEYS (docs/decisions/locks.md). Lock and election state lives in keys that start
 * with a NUL byte, which no path can (store_path_valid) and the etcd API may read but not
 * write (srv_kv refuses it):
 *
 *   queue(lock L)      = "\0lock/"  L "\0"      one entry per acquirer:
 *   queue(election E)  = "\0elect/" E "\0"      queue + kind + session as %016llx
 *
 * The name ends with a NUL byte, which no name can hold, so the range of one queue,
 * [queue, queue with its last byte raised to 1), never holds another's entries: with '/'
 * as the end, lock "a"'s range would also hold the entries of lock "a/b".
 *
 * where kind is one byte, LATCH__KIND_EXCLUSIVE ('w') or LATCH__KIND_SHARED ('r'), and the
 * entry is attached to the session's lease. Entries are ordered by create revision; a
 * holder is the first entry, or any shared entry with only shared entries before it. The
 * fencing token of a grant is its entry's create revision. An entry without a lease is a
 * lock-delay tombstone (svc_latch_lock.c): it holds the queue but is nobody's grant.
 * A lock entry's value is 8 bytes, the lock-delay in ms (le64); an election entry's value is
 * the candidate's (proclaimed) value.
 */
#ifndef SERVER_SVC_LATCH_INT_H
#define SERVER_SVC_LATCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch/v1/latch.pb-c.h"
#include "svc_latch.h"

#define LATCH__KIND_EXCLUSIVE 'w'
#define LATCH__KIND_SHARED    'r'
#define LATCH__NAME_MAX       256u /* bytes of a lock or election name */
/* Longest queue prefix, and longest entry key (prefix + kind + 16 hex digits). */
#define LATCH__QUEUE_MAX      (sizeof("\0elect/") - 1u + LATCH__NAME_MAX + 1u)
#define LATCH__ENTRY_MAX      (LATCH__QUEUE_MAX + 1u + 16u)

struct latch__locks;   /* svc_latch_lock.c's state */
struct latch__watches; /* svc_latch_watch.c's state */

struct srv_latch {
    uv_loop_t *loop;
    struct srv_node *node;
    struct srv_kv *kv;
    struct srv_lease_keeper *keeper;
    struct srv_watch_hub *hub;
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t min_ttl;
    struct latch__locks *locks;
    struct latch__watches *watches;
};

/* ---- svc_latch.c: shared helpers ------------------------------------------------------ */

/* Fills h (cluster and member id, revision, the node's term). */
void latch__header(const struct srv_latch *l, int64_t revision, Latch__V1__Header *h);

/*
 * The gRPC status for err and its message into msg (cap bytes; 256 are always enough):
 * "latch: <text>" with detail appended after ": " when not NULL/empty. Codes: ENOTFOUND →
 * NOT_FOUND "no node" (detail may say "session not found"), EEXIST → ALREADY_EXISTS "node
 * exists", ENOTEMPTY / EBADVERSION / EFENCED → FAILED_PRECONDITION, EINVAL / ETOOBIG /
 * EDUPKEY / ETOOMANYOPS → INVALID_ARGUMENT, ETIMEDOUT → DEADLINE_EXCEEDED, ENOSPACE →
 * RESOURCE_EXHAUSTED, the node's retryable errors (no leader, leader changed, timed out,
 * leader failure, connection lost, shutdown) → UNAVAILABLE, ECOMPACTED → OUT_OF_RANGE,
 * anything else INTERNAL.
 */
int latch__status(int err, const char *detail, char *msg, size_t cap);

/* Fails call with latch__status(err, detail). */
void latch__fail(struct api_call *call, int err, const char *detail);

/*
 * A read point: serializable → cb(data, 0) at once, from inside this call; else the node's
 * ReadIndex (srv_node_read_index's contract). Returns 0 or the node's errors (cb not run).
 */
int latch__read_point(struct srv_latch *l, bool serializable, srv_node_read_cb cb, void *data);

/* Proposes c with the service's request size limit (srv_kv_propose_cmd's contract). */
int latch__propose(struct srv_latch *l,
                   const struct store_cmd *c,
                   srv_node_propose_cb cb,
                   void *data);

/*
 * The queue prefix of lock (election false) or election name into buf (LATCH__QUEUE_MAX
 * bytes); *len gets its length. LATCH_EINVAL (with *why set) for an empty name, a name over
 * LATCH__NAME_MAX bytes or one holding a NUL byte.
 */
int latch__queue_prefix(
    const char *name, bool election, uint8_t *buf, size_t *len, const char **why);

/* The end of the queue range under prefix (a latch__queue_prefix: it ends with the name's
 * NUL) into end (prefix_len bytes): the prefix with that NUL raised to 1. */
void latch__queue_end(const uint8_t *prefix, size_t prefix_len, uint8_t *end);

/* An entry key: prefix + kind + session as 16 hex digits, into buf (LATCH__ENTRY_MAX bytes);
 * returns its length. */
size_t latch__entry_key(
    const uint8_t *prefix, size_t prefix_len, bool shared, int64_t session, uint8_t *buf);

/* Parses an entry key under prefix: false when it is not one (kind, 16 hex digits). */
bool latch__entry_parse(
    const uint8_t *key, size_t key_len, size_t prefix_len, bool *shared, int64_t *session);

/*
 * The fence compare for f: STORE_CMP_FENCE EQUAL over [prefix, prefix_end) with number =
 * token and the shared marker, into *out; prefix bytes go into buf (LATCH__QUEUE_MAX bytes),
 * the range end into end_buf (same size). LATCH_EINVAL (*why set) for a bad name or a token
 * <= 0.
 */
int latch__fence_compare(const Latch__V1__Fence *f,
                         uint8_t *buf,
                         uint8_t *end_buf,
                         struct store_compare *out,
                         const char **why);

/*
 * The token of the current (first) grant of the queue under prefix at the reader's current
 * revision, 0 when free (or held back by a lock-delay tombstone, then *tombstone is true;
 * may be NULL). For FAILED_PRECONDITION messages and CheckFence.
 */
int latch__current_token(
    struct srv_latch *l, const uint8_t *prefix, size_t prefix_len, int64_t *token, bool *tombstone);

/* Answers a failed fence: FAILED_PRECONDITION "latch: fence rejected: token T of lock L is
 * not current (current token C)". */
void latch__fail_fenced(struct srv_latch *l, struct api_call *call, const Latch__V1__Fence *f);

/* ---- svc_latch_lock.c ----------------------------------------------------------------- */

/* Registers Acquire, Release, Holder, Waiters, CheckFence, Campaign, Proclaim, Resign, Leader
 * and Observe; makes l->locks. Returns 0, LATCH_ENOMEM or the registration errors. */
int latch__lock_register(struct api_server *s, struct srv_latch *l);
/* An applied batch up to revision: waiters re-checked, observers fed. */
void latch__lock_applied(struct srv_latch *l, int64_t revision);
/* Answers every waiting call and frees l->locks. */
void latch__lock_free(struct srv_latch *l);

/* ---- svc_latch_watch.c ---------------------------------------------------------------- */

/* Registers Watch; makes l->watches. */
int latch__watch_register(struct api_server *s, struct srv_latch *l);
/* Ends every watch call and frees l->watches. */
void latch__watch_free(struct srv_latch *l);

#endif /* SERVER_SVC_LATCH_INT_H */
