/*
 * latch.h — liblatch, the C client library of latch's native API (latch.v1, see
 * api/proto/latch/v1/latch.proto and docs/api.md; user guide: docs/liblatch.md).
 *
 * Two APIs over one implementation:
 *  - the async API (latch_client_*, latch_get, latch_lock_acquire, ...): everything runs on
 *    the caller's libuv loop; results come back through callbacks on that loop. Nothing in
 *    it is thread-safe: call it from the loop's thread only.
 *  - the blocking API (latch_sync_*): a private loop on a background thread owned by a
 *    struct latch_sync; each blocking call posts the matching async call to that thread and
 *    waits for its result. Blocking functions may be called from any thread (they serialise
 *    on the background loop); callbacks given to it (session loss, watch events, leader
 *    changes) run on the background thread and must not call latch_sync_* themselves.
 *
 * Errors. Every function returns LATCH_OK (0) or a negative LATCH_E* code of
 * <latch/latch_error.h> (the project's one error table); latch_strerror() gives its text.
 * Results carry the code (r->err) and the server's status message of that very call
 * (r->message, "" when none; the server's messages start with "latch: "). No global error
 * state. The gRPC statuses map as: NOT_FOUND → LATCH_ENOTFOUND ("session not found" →
 * LATCH_ESESSIONLOST), ALREADY_EXISTS → LATCH_EEXIST, FAILED_PRECONDITION → LATCH_ENOTEMPTY /
 * LATCH_EBADVERSION / LATCH_EFENCED / LATCH_ENOTLEADER by message (else LATCH_ESTATE),
 * ABORTED → LATCH_EBUSY, DEADLINE_EXCEEDED → LATCH_ETIMEDOUT, UNAVAILABLE →
 * LATCH_EUNAVAILABLE, INVALID_ARGUMENT → LATCH_EINVAL, OUT_OF_RANGE → LATCH_ECOMPACTED,
 * RESOURCE_EXHAUSTED → LATCH_ENOSPACE, CANCELLED → LATCH_ECANCELED, PERMISSION_DENIED and
 * UNAUTHENTICATED → LATCH_EPERM, UNIMPLEMENTED → LATCH_EUNIMPLEMENTED, anything else →
 * LATCH_EPROTO.
 *
 * Endpoints and failover. latch_options.endpoints is a comma-separated list of "host:port",
 * "http://host:port" or "https://host:port" (etcdctl's --endpoints). The client keeps one
 * connection per endpoint and sends each call to the current one. A call that fails with
 * UNAVAILABLE (no leader, connection refused or lost) moves the client to the next endpoint
 * and is retried there — at once for the next endpoints, then after a backoff (50 ms
 * doubling up to 1 s, with jitter) once every endpoint failed in a row — until its deadline.
 * Retried are: reads, Acquire and Campaign (the server hands the same grant to the same
 * session), Release and Resign (NOT_FOUND after a retry is reported as LATCH_OK: the first
 * attempt did it), SessionKeepAlive and SessionClose, non-sequential Create (LATCH_EEXIST after
 * a retry may be this very create: r->retried tells), and any call whose earlier attempt
 * certainly did not reach the server (no connection was up during the attempt, or the server
 * itself answered UNAVAILABLE). Set, Delete, Multi, sequential Create, SessionOpen and Proclaim are
 * not retried after a lost connection: they report LATCH_EUNAVAILABLE and the caller decides.
 *
 * Ownership. Strings and buffers passed in are borrowed for the call (copied before it
 * returns). A struct latch_result handed to a callback or returned by a blocking call belongs
 * to the receiver, who frees it with latch_result_free(); every pointer inside it lives as
 * long as the result.
 */
#ifndef LATCH_LATCH_H
#define LATCH_LATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "latch_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* latchd's default client URLs: the three members of `make run` (the first is a lone
 * latchd's default --listen-client-urls). */
#define LATCH_DEFAULT_ENDPOINTS          "127.0.0.1:2479,127.0.0.1:12479,127.0.0.1:22479"
#define LATCH_DEFAULT_CALL_TIMEOUT_MS    10000
#define LATCH_DEFAULT_CONNECT_TIMEOUT_MS 2000

/* Flags (combine with |; each function says which it reads). */
#define LATCH_SERIALIZABLE 0x01u /* reads: served from the member's own state */
#define LATCH_SHARED       0x02u /* acquire: a shared (read) grant */
#define LATCH_TRY          0x04u /* acquire: answer LATCH_EBUSY at once when held */
#define LATCH_RECURSIVE    0x08u /* delete, watch: the whole subtree */
#define LATCH_SEQUENTIAL   0x10u /* create: append the create revision to the name */
#define LATCH_PARENTS      0x20u /* create: make missing ancestors */

struct latch_client;
struct latch_session;
struct latch_watch;
struct latch_sync;

struct latch_options {
    /* Comma-separated endpoints; NULL or "" selects LATCH_DEFAULT_ENDPOINTS. */
    const char *endpoints;
    /* TLS: used for https:// endpoints, and for bare host:port ones when any of these is set
     * or tls is true. ca_file NULL verifies against the system store; cert_file and key_file
     * (both or neither) are the client certificate for mTLS. */
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    bool tls;
    /* Deadline of one call (all its attempts) that does not wait by design; 0 selects
     * LATCH_DEFAULT_CALL_TIMEOUT_MS. Waiting calls (acquire, campaign) take their own. */
    uint64_t call_timeout_ms;
    /* One connection attempt (TCP, TLS, HTTP/2 settings); 0 selects the default. */
    uint64_t connect_timeout_ms;
};

/* A node's metadata (latch.v1 Stat). */
struct latch_stat {
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t num_children;
    int64_t cversion;
    int64_t children_revision;
    int64_t owner_session; /* 0: not ephemeral */
    uint32_t value_size;
};

struct latch_grant {
    int64_t token;
    int64_t session;
    bool shared;
};

struct latch_child {
    const char *name;
    struct latch_stat stat;
};

struct latch_op_result {
    const char *path;
    struct latch_stat stat;
    int64_t deleted;
};

/* A fenced write applies only while token is a current grant of lock (an election's name with
 * is_election). */
struct latch_fence {
    const char *lock;
    int64_t token;
    bool is_election;
};

/* One op of latch_multi. */
enum latch_op_kind { LATCH_OP_CREATE, LATCH_OP_SET, LATCH_OP_DELETE, LATCH_OP_CHECK };
struct latch_op {
    enum latch_op_kind kind;
    const char *path;
    const void *value; /* create, set */
    size_t value_len;
    int64_t expected_version; /* set, delete, check (0: any) */
    int64_t session;          /* create: ephemeral */
    unsigned flags; /* create: LATCH_SEQUENTIAL | LATCH_PARENTS; delete: LATCH_RECURSIVE */
    bool absent;    /* check: the node must not exist */
};

/*
 * The outcome of one call. Fields a method does not set stay 0/NULL. Owned by whoever
 * received it; free with latch_result_free().
 */
struct latch_result {
    int err;             /* LATCH_OK or a negative LATCH_E* code */
    int grpc_status;     /* the call's gRPC status (0 OK), -1 when it never reached gRPC */
    const char *message; /* the server's status message, or a local reason; never NULL */
    bool retried;        /* the call was sent more than once (see failover above) */
    /* header */
    int64_t revision;
    uint64_t cluster_id;
    uint64_t member_id;
    uint64_t raft_term;
    /* session open / keep-alive */
    int64_t session;
    int64_t ttl;
    /* acquire, campaign, leader (0: no leader), check_fence (current_token) */
    int64_t token;
    bool current; /* check_fence */
    /* get, leader (never NULL for them, even when empty) */
    const uint8_t *value;
    size_t value_len;
    const char *path; /* create: the node's full path */
    struct latch_stat stat;
    int64_t deleted; /* delete, session close */
    const struct latch_child *children;
    size_t n_children;
    bool more;
    const struct latch_grant *grants; /* holder / waiters */
    size_t n_grants;
    bool lock_delay;
    /* multi */
    bool succeeded;
    uint32_t failed_op;
    const char *op_error;
    const struct latch_op_result *op_results;
    size_t n_op_results;
    /* latch_raw_unary: the response message */
    const uint8_t *raw;
    size_t raw_len;
};

/* Frees r and everything it points to. NULL is a no-op. */
void latch_result_free(struct latch_result *r);

/* Completion of an async call: r is the callee's to free (latch_result_free). Runs on the
 * client's loop, never inside the function that started the call. */
typedef void (*latch_cb)(struct latch_result *r, void *data);

/* ---- the async API ------------------------------------------------------------------- */

/*
 * Makes a client on loop (borrowed, must outlive it) and starts connecting to every endpoint.
 * Returns LATCH_OK and sets *out, or LATCH_EINVAL (bad endpoints or options: err, may be
 * NULL, says why in up to err_cap bytes), LATCH_ETLS (a TLS file failed to load) or
 * LATCH_ENOMEM.
 */
int latch_client_new(uv_loop_t *loop,
                     const struct latch_options *opts,
                     struct latch_client **out,
                     char *err,
                     size_t err_cap);

/*
 * Closes c: calls not done end with LATCH_ECANCELED, watches end (on_end LATCH_ECANCELED),
 * sessions stop being renewed (they are not closed on the server: close them first to
 * release their locks at once), their lost callback does not run and their handles are freed
 * with the client. done(data) runs once every handle has closed (may be NULL); c is freed
 * then. Call once, on the loop's thread (a callback of c may call it).
 */
void latch_client_close(struct latch_client *c, void (*done)(void *data), void *data);

/* Parses a comma-separated endpoint list (the latch_options.endpoints syntax) into
 * normalised "scheme://host:port" strings in out[0..*n) (malloc'd; free each), at most cap.
 * Returns LATCH_OK or LATCH_EINVAL (err says which entry and why). */
int latch_endpoints_parse(
    const char *list, char **out, size_t cap, size_t *n, char *err, size_t err_cap);

/* -- sessions -- */

/* Runs on the client's loop when a live session is lost: err LATCH_ESESSIONLOST with a reason
 * (the server answered it expired, or no renewal succeeded before its TTL ran out). Once. */
typedef void (*latch_lost_cb)(struct latch_session *s, int err, const char *reason, void *data);

/*
 * Opens a session with ttl_seconds (the server raises it to its minimum) and keeps it alive
 * in the background: a SessionKeepAlive stream renewing every ttl/3, moved to the next
 * endpoint when it breaks. *out is set at once and stays valid until latch_session_close();
 * cb gets r->session and r->ttl (or the error: the session is then unusable but must still
 * be closed). lost may be NULL.
 */
int latch_session_open(struct latch_client *c,
                       int64_t ttl_seconds,
                       latch_lost_cb lost,
                       void *lost_data,
                       latch_cb cb,
                       void *data,
                       struct latch_session **out);

/* The session's id (0 until opened) and granted TTL in seconds; whether it is alive. */
int64_t latch_session_id(const struct latch_session *s);
int64_t latch_session_ttl(const struct latch_session *s);
bool latch_session_alive(const struct latch_session *s);

/* Stops renewing s, closes it on the server (its ephemeral nodes, locks and candidacies go at
 * once) and frees it; cb (may be NULL) gets r->deleted. s must not be used afterwards. */
int latch_session_close(struct latch_session *s, latch_cb cb, void *data);

/* -- the tree -- */

/* flags: LATCH_SEQUENTIAL, LATCH_PARENTS; session non-zero: ephemeral; fence may be NULL. */
int latch_create(struct latch_client *c,
                 const char *path,
                 const void *value,
                 size_t value_len,
                 int64_t session,
                 unsigned flags,
                 const struct latch_fence *fence,
                 latch_cb cb,
                 void *data);
/* flags: LATCH_SERIALIZABLE. r->value, r->stat. */
int latch_get(struct latch_client *c, const char *path, unsigned flags, latch_cb cb, void *data);
int latch_stat(struct latch_client *c, const char *path, unsigned flags, latch_cb cb, void *data);
/* expected_version 0: any. */
int latch_set(struct latch_client *c,
              const char *path,
              const void *value,
              size_t value_len,
              int64_t expected_version,
              const struct latch_fence *fence,
              latch_cb cb,
              void *data);
/* flags: LATCH_RECURSIVE. r->deleted. */
int latch_delete(struct latch_client *c,
                 const char *path,
                 int64_t expected_version,
                 unsigned flags,
                 const struct latch_fence *fence,
                 latch_cb cb,
                 void *data);
/* Children after `after` (NULL: from the first), at most limit (0: the server's 1000);
 * r->children, r->more. flags: LATCH_SERIALIZABLE. */
int latch_children(struct latch_client *c,
                   const char *path,
                   const char *after,
                   uint32_t limit,
                   unsigned flags,
                   latch_cb cb,
                   void *data);
/* n ops applied atomically or none; r->succeeded, r->failed_op, r->op_error, r->op_results. */
int latch_multi(struct latch_client *c,
                const struct latch_op *ops,
                size_t n,
                const struct latch_fence *fence,
                latch_cb cb,
                void *data);

/* -- locks -- */

/*
 * Acquires lock for session: flags LATCH_SHARED, LATCH_TRY (LATCH_EBUSY at once when held);
 * otherwise waits up to timeout_ms (0: no limit) in the server's queue, then LATCH_ETIMEDOUT.
 * lock_delay_ms: see AcquireRequest. r->token is the fencing token.
 */
int latch_lock_acquire(struct latch_client *c,
                       const char *lock,
                       int64_t session,
                       unsigned flags,
                       int64_t lock_delay_ms,
                       uint64_t timeout_ms,
                       latch_cb cb,
                       void *data);
int latch_lock_release(
    struct latch_client *c, const char *lock, int64_t token, latch_cb cb, void *data);
/* r->grants (holders), r->lock_delay. flags: LATCH_SERIALIZABLE. */
int latch_lock_holder(
    struct latch_client *c, const char *lock, unsigned flags, latch_cb cb, void *data);
/* r->grants (waiters in queue order). */
int latch_lock_waiters(
    struct latch_client *c, const char *lock, unsigned flags, latch_cb cb, void *data);
/* r->current, r->token (the current token). */
int latch_check_fence(struct latch_client *c,
                      const struct latch_fence *fence,
                      latch_cb cb,
                      void *data);

/* -- elections -- */

/* Waits (up to timeout_ms, 0: no limit) until session leads election; r->token. */
int latch_campaign(struct latch_client *c,
                   const char *election,
                   int64_t session,
                   const void *value,
                   size_t value_len,
                   uint64_t timeout_ms,
                   latch_cb cb,
                   void *data);
int latch_proclaim(struct latch_client *c,
                   const char *election,
                   int64_t token,
                   const void *value,
                   size_t value_len,
                   latch_cb cb,
                   void *data);
int latch_resign(
    struct latch_client *c, const char *election, int64_t token, latch_cb cb, void *data);
/* r->token (0: no leader), r->value, r->session. */
int latch_leader(
    struct latch_client *c, const char *election, unsigned flags, latch_cb cb, void *data);

/* -- watches and leader observation -- */

enum latch_event_kind { LATCH_EVENT_CREATED = 0, LATCH_EVENT_CHANGED = 1, LATCH_EVENT_DELETED = 2 };
struct latch_event {
    enum latch_event_kind kind;
    const char *path;
    int64_t revision;
    struct latch_stat stat;
    const uint8_t *value; /* created, changed; never NULL */
    size_t value_len;
};

/* Callbacks of a watch or an observe; everything borrowed until the callback returns. */
struct latch_watch_cbs {
    /* latch_watch: one event, in revision order, each once (also across reconnects). */
    void (*on_event)(struct latch_watch *w, const struct latch_event *ev, void *data);
    /* latch_observe: the leader now (token 0: none), then each change. */
    void (*on_leader)(struct latch_watch *w, const struct latch_result *leader, void *data);
    /* The watch ended for good (LATCH_ECANCELED after latch_watch_cancel, LATCH_ECOMPACTED,
     * LATCH_EINVAL, ...). Last callback; w is freed after it returns. Required. */
    void (*on_end)(struct latch_watch *w, int err, const char *message, void *data);
};

/*
 * Watches path (flags: LATCH_RECURSIVE) from start_revision (0: from now). A broken stream is
 * restarted on the next endpoint from the last delivered revision + 1, so no event is missed
 * or repeated (events of one revision are expected in one response). *out valid until on_end.
 */
int latch_watch(struct latch_client *c,
                const char *path,
                unsigned flags,
                int64_t start_revision,
                const struct latch_watch_cbs *cbs,
                void *data,
                struct latch_watch **out);
/* Observes election's leader (on_leader); restarted like a watch, repeats dropped. */
int latch_observe(struct latch_client *c,
                  const char *election,
                  const struct latch_watch_cbs *cbs,
                  void *data,
                  struct latch_watch **out);
/* Ends w: on_end(LATCH_ECANCELED) runs later from the loop. A no-op once ending. */
void latch_watch_cancel(struct latch_watch *w);

/* -- raw calls (other services on the same connections, e.g. etcd's Lease/Maintenance) -- */

/* One unary call of method ("/pkg.Service/Method") with a packed request; r->raw is the
 * packed response. idempotent: retried on UNAVAILABLE as reads are. timeout_ms 0: the
 * client's call timeout. */
int latch_raw_unary(struct latch_client *c,
                    const char *method,
                    const uint8_t *req,
                    size_t len,
                    bool idempotent,
                    uint64_t timeout_ms,
                    latch_cb cb,
                    void *data);
/* A server-streaming call (no retry): on_message per response (borrowed), then on_end once. */
int latch_raw_stream(struct latch_client *c,
                     const char *method,
                     const uint8_t *req,
                     size_t len,
                     void (*on_message)(const uint8_t *msg, size_t len, void *data),
                     void (*on_end)(int err, const char *message, void *data),
                     void *data);

/* ---- the blocking API ---------------------------------------------------------------- */

/* Starts the background thread (it blocks every signal, so signals reach the application's
 * own threads) and its client. Returns as latch_client_new. */
int latch_sync_new(const struct latch_options *opts,
                   struct latch_sync **out,
                   char *err,
                   size_t err_cap);
/* Closes the client (open sessions stop being renewed; close them first), joins the thread
 * and frees s. Every watch must have been cancelled and no blocking call may still be running
 * on another thread. NULL is a no-op. */
void latch_sync_free(struct latch_sync *s);

/*
 * Every blocking call returns r->err and, when out is not NULL, hands the result over in
 * *out (free with latch_result_free; NULL only on LATCH_ENOMEM). Arguments as the async
 * functions of the same name.
 */
int latch_sync_session_open(struct latch_sync *s,
                            int64_t ttl_seconds,
                            latch_lost_cb lost,
                            void *lost_data,
                            struct latch_session **session,
                            struct latch_result **out);
int latch_sync_session_close(struct latch_sync *s,
                             struct latch_session *session,
                             struct latch_result **out);
int latch_sync_create(struct latch_sync *s,
                      const char *path,
                      const void *value,
                      size_t value_len,
                      int64_t session,
                      unsigned flags,
                      const struct latch_fence *fence,
                      struct latch_result **out);
int latch_sync_get(struct latch_sync *s,
                   const char *path,
                   unsigned flags,
                   struct latch_result **out);
int latch_sync_stat(struct latch_sync *s,
                    const char *path,
                    unsigned flags,
                    struct latch_result **out);
int latch_sync_set(struct latch_sync *s,
                   const char *path,
                   const void *value,
                   size_t value_len,
                   int64_t expected_version,
                   const struct latch_fence *fence,
                   struct latch_result **out);
int latch_sync_delete(struct latch_sync *s,
                      const char *path,
                      int64_t expected_version,
                      unsigned flags,
                      const struct latch_fence *fence,
                      struct latch_result **out);
int latch_sync_children(struct latch_sync *s,
                        const char *path,
                        const char *after,
                        uint32_t limit,
                        unsigned flags,
                        struct latch_result **out);
int latch_sync_multi(struct latch_sync *s,
                     const struct latch_op *ops,
                     size_t n,
                     const struct latch_fence *fence,
                     struct latch_result **out);
int latch_sync_lock_acquire(struct latch_sync *s,
                            const char *lock,
                            int64_t session,
                            unsigned flags,
                            int64_t lock_delay_ms,
                            uint64_t timeout_ms,
                            struct latch_result **out);
int latch_sync_lock_release(struct latch_sync *s,
                            const char *lock,
                            int64_t token,
                            struct latch_result **out);
int latch_sync_lock_holder(struct latch_sync *s,
                           const char *lock,
                           unsigned flags,
                           struct latch_result **out);
int latch_sync_lock_waiters(struct latch_sync *s,
                            const char *lock,
                            unsigned flags,
                            struct latch_result **out);
int latch_sync_check_fence(struct latch_sync *s,
                           const struct latch_fence *fence,
                           struct latch_result **out);
int latch_sync_campaign(struct latch_sync *s,
                        const char *election,
                        int64_t session,
                        const void *value,
                        size_t value_len,
                        uint64_t timeout_ms,
                        struct latch_result **out);
int latch_sync_proclaim(struct latch_sync *s,
                        const char *election,
                        int64_t token,
                        const void *value,
                        size_t value_len,
                        struct latch_result **out);
int latch_sync_resign(struct latch_sync *s,
                      const char *election,
                      int64_t token,
                      struct latch_result **out);
int latch_sync_leader(struct latch_sync *s,
                      const char *election,
                      unsigned flags,
                      struct latch_result **out);
int latch_sync_raw_unary(struct latch_sync *s,
                         const char *method,
                         const uint8_t *req,
                         size_t len,
                         bool idempotent,
                         uint64_t timeout_ms,
                         struct latch_result **out);
/* Runs a server-streaming call to its end, calling on_message on the background thread;
 * returns its error (message: a malloc'd copy of the status message when not NULL). */
int latch_sync_raw_stream(struct latch_sync *s,
                          const char *method,
                          const uint8_t *req,
                          size_t len,
                          void (*on_message)(const uint8_t *msg, size_t len, void *data),
                          void *data,
                          char **message);
/* Starts a watch / observe whose callbacks run on the background thread. */
int latch_sync_watch(struct latch_sync *s,
                     const char *path,
                     unsigned flags,
                     int64_t start_revision,
                     const struct latch_watch_cbs *cbs,
                     void *data,
                     struct latch_watch **w);
int latch_sync_observe(struct latch_sync *s,
                       const char *election,
                       const struct latch_watch_cbs *cbs,
                       void *data,
                       struct latch_watch **w);
/* Cancels w and waits until its on_end has run (w is freed then). */
void latch_sync_watch_cancel(struct latch_sync *s, struct latch_watch *w);

#ifdef __cplusplus
}
#endif

#endif /* LATCH_LATCH_H */
