/*
 * svc_latch_lock.c — latch.v1's locks with fencing tokens, lock-delay and elections (see
 * svc_latch.h, svc_latch_int.h for the key layout, docs/decisions/locks.md for the design).
 *
 * OPS. Every call that goes through the log or a read point is a struct lk_op, linked on the
 * service (ls->ops) from its start until it is answered; when the service is freed the ops
 * still linked lose their service pointer and their callbacks only answer and free them.
 * An Acquire or Campaign whose entry is not a holder yet also sits on its lock's struct
 * lk_queue (waiters grouped per queue, FIFO by token).
 *
 * WAKING. latch__lock_applied reads, once per applied batch and only while something needs
 * it (waiters, observers, or this member leads and may see new lock-delay tombstones), the
 * history of the reserved keys ("\0...") written since the last batch it saw, and re-reads
 * only the queues that history touched: one range per touched queue, sorted by create
 * revision. The waiters answered are exactly those whose entries are now in the queue's head
 * (the first entry when it is exclusive, else the leading run of shared entries), so one
 * release wakes one exclusive waiter or one run of readers.
 *
 * LOCK-DELAY. When the leader's lease keeper is about to revoke an expired session
 * (srv_lease_keeper_hooks), lk_expiring proposes one txn that turns each of the session's
 * lock entries that holds a grant and has a delay into a tombstone: a put of the same key
 * with lease 0 (create revision kept), guarded per entry by lease(entry) == session and the
 * entry's fence. The revoke, proposed right after through the same node, then deletes the
 * rest. The leader deletes each tombstone once its delay has passed (ls->tombs, driven by
 * the keeper's tick); it learns of tombstones from the applied history and, when it becomes
 * leader, by scanning "\0lock/" (such a tombstone then waits its full delay again).
 *
 * DEADLINES. A waiting call with a grpc-timeout is answered DEADLINE_EXCEEDED by this module
 * a little before the server's own deadline (LK_MARGIN_MS_MAX), from the keeper's tick; the
 * entry is deleted then, or when the call dies otherwise (api_call_on_cancel).
 *
 * Everything runs on the loop thread.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_assert.h"
#include "latch_error.h"
#include "latch_log.h"
#include "store.h"
#include "svc_latch_int.h"

#define LK_DELAY_MS_MAX   (3600LL * 1000LL) /* lock_delay_ms: at most an hour */
#define LK_MARGIN_MS_MAX  300u              /* answer a wait's deadline this much earlier */
#define LK_HISTORY_EVENTS 4096u             /* per store_history read of the applied hook */
#define LK_OBS_EVENTS     256u              /* per store_history read of an observer */
#define LK_MSG_MAX        256u
#define LK_DELAY_BYTES    8u /* a lock entry's value: the lock-delay in ms, le64 */
/* How long after proposing tombstones, or after becoming leader, the leader reads the
 * applied history for new tombstones (a txn of its own, or one an earlier leader committed
 * that this member applies only now). */
#define LK_TOMB_WATCH_MS  10000u

static const uint8_t LK_LOCK_PREFIX[] = {'\0', 'l', 'o', 'c', 'k', '/'};
static const uint8_t LK_LOCK_END[] = {'\0', 'l', 'o', 'c', 'k', '0'};
static const uint8_t LK_RESERVED[] = {'\0'};
static const uint8_t LK_RESERVED_END[] = {'\1'};

enum lk_kind {
    LK_ACQUIRE,  /* Acquire and Campaign */
    LK_RELEASE,  /* Release and Resign */
    LK_PROCLAIM, /* Proclaim */
    LK_ABORT,    /* a try_once's delete of its entry: answered ABORTED once applied */
    LK_READ,     /* Holder, Waiters, CheckFence, Leader: a read point */
};

enum lk_read { LK_HOLDER, LK_WAITERS, LK_CHECK, LK_LEADER };

struct lk_queue;

struct lk_op {
    struct latch__locks *ls; /* NULL once the service was freed */
    struct lk_op *prev, *next;
    struct lk_queue *q; /* while waiting */
    struct lk_op *qprev, *qnext;
    struct api_call *call;
    enum lk_kind kind;
    enum lk_read read;
    bool election;
    bool shared;
    bool try_once;
    bool serializable;
    bool waiting;
    bool local_first; /* Release/Resign/Proclaim: the entry is looked up in the local state
                         first; only a miss pays for a ReadIndex (release_read_done) */
    int64_t session;
    int64_t token;
    int64_t delay_ms;
    uint64_t deadline; /* loop ms at which a wait is answered; 0: none */
    size_t prefix_len, key_len, value_len;
    uint8_t prefix[LATCH__QUEUE_MAX];
    uint8_t key[LATCH__ENTRY_MAX];
    uint8_t *value; /* Campaign's and Proclaim's value (owned); a lock entry's delay */
    uint8_t delay[LK_DELAY_BYTES];
    char msg[LK_MSG_MAX]; /* LK_ABORT's answer */
};

/* The waiters of one lock or election on this member. */
struct lk_queue {
    struct lk_queue *prev, *next;
    struct lk_op *waiters; /* FIFO: appended at the tail (tail = waiters->qprev) */
    bool touched;
    size_t prefix_len;
    uint8_t prefix[LATCH__QUEUE_MAX];
};

struct lk_obs {
    struct latch__locks *ls; /* NULL once the service was freed */
    struct lk_obs *prev, *next;
    struct api_call *call;
    bool started;  /* the first answer (the current leader) was made */
    bool paused;   /* the call's queue is full: fed again from api_call_on_writable */
    bool reading;  /* the read point is out */
    bool canceled; /* ended while reading */
    bool touched;
    int64_t leader;   /* the token of the leader last sent; 0: none */
    int64_t next_rev; /* first revision not looked at yet */
    size_t prefix_len;
    uint8_t prefix[LATCH__QUEUE_MAX];
};

/* A lock-delay tombstone the leader deletes at due. */
struct lk_tomb {
    struct latch__locks *ls; /* NULL: dropped while its delete was in flight */
    struct lk_tomb *next;
    uint64_t due; /* loop ms */
    int64_t create_rev;
    bool deleting; /* its delete is proposed (the proposal's data is the tomb) */
    size_t key_len;
    uint8_t key[LATCH__ENTRY_MAX];
};

struct latch__locks {
    struct srv_latch *l;
    struct lk_op *ops;
    struct lk_queue *queues;
    struct lk_obs *observers;
    struct lk_tomb *tombs;
    bool leader;               /* as of the keeper's last tick */
    uint64_t tomb_watch_until; /* loop ms: until then the leader looks for new tombstones */
    int64_t seen_rev;          /* the applied hook looked at the history up to here */
};

/* ---- helpers -------------------------------------------------------------------------- */

static void lk_failf(struct api_call *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails call with status and "latch: " + the formatted text. */
static void lk_failf(struct api_call *call, int status, const char *fmt, ...)
{
    char msg[LK_MSG_MAX];
    int n = snprintf(msg, sizeof(msg), "latch: ");
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    (void)api_call_fail(call, status, msg);
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static bool entry_shared(const uint8_t *key, size_t key_len, size_t prefix_len)
{
    return key_len > prefix_len && key[prefix_len] == LATCH__KIND_SHARED;
}

static int64_t entry_session(const struct store_kv *kv, size_t prefix_len)
{
    bool shared = false;
    int64_t session = 0;
    return latch__entry_parse(kv->key, kv->key_len, prefix_len, &shared, &session) ? session : 0;
}

/* The queue prefix of an entry key (prefix + kind + 16 hex digits); 0 when it is none. */
static size_t entry_prefix_len(const uint8_t *key, size_t key_len)
{
    if (key_len < 2 + 1 + 16 || key[0] != '\0') {
        return 0;
    }
    size_t len = key_len - 17;
    return key[len - 1] == '\0' ? len : 0;
}

/* ---- reading a queue ------------------------------------------------------------------ */

/*
 * A queue as of one revision, entries by create revision. head: the entries at the front
 * that hold (or would hold but for being tombstones): the first one when it is exclusive,
 * else the leading run of shared ones.
 */
struct lk_view {
    struct store_kv *kvs;
    size_t n;
    size_t head;
    int64_t rev; /* the store's revision the view was read at */
};

/* Reads the queue under prefix at revision (0: current); limit 0: every entry. */
static int view_read(struct latch__locks *ls,
                     const uint8_t *prefix,
                     size_t prefix_len,
                     int64_t revision,
                     int64_t limit,
                     bool keys_only,
                     struct latch_arena *a,
                     struct lk_view *v)
{
    uint8_t end[LATCH__QUEUE_MAX];
    latch__queue_end(prefix, prefix_len, end);
    struct store_range_req q = {.key = prefix,
                                .key_len = (uint32_t)prefix_len,
                                .range_end = end,
                                .range_end_len = (uint32_t)prefix_len,
                                .revision = revision,
                                .limit = limit,
                                .keys_only = keys_only,
                                .sort_order = STORE_SORT_ASCEND,
                                .sort_target = STORE_SORT_CREATE};
    struct store_range_result r;
    memset(v, 0, sizeof(*v));
    int rc = store_range(srv_node_reader(ls->l->node), &q, a, &r, &v->rev);
    if (rc != 0) {
        return rc;
    }
    v->kvs = r.kvs;
    v->n = r.kvs_count;
    if (v->n > 0) {
        if (!entry_shared(v->kvs[0].key, v->kvs[0].key_len, prefix_len)) {
            v->head = 1;
        } else {
            while (v->head < v->n &&
                   entry_shared(v->kvs[v->head].key, v->kvs[v->head].key_len, prefix_len)) {
                v->head++;
            }
        }
    }
    if (revision != 0) {
        v->rev = revision;
    }
    return 0;
}

/* The index of the entry with create revision token, or v->n. */
static size_t view_find(const struct lk_view *v, int64_t token)
{
    size_t i = 0;
    while (i < v->n && v->kvs[i].create_revision != token) {
        i++;
    }
    return i;
}

/* Whether token is a current grant: STORE_CMP_FENCE's predicate. */
static bool view_holds(const struct lk_view *v, int64_t token)
{
    size_t i = view_find(v, token);
    return i < v->head && v->kvs[i].lease != 0;
}

/* The first current grant's token (0: none); *tombstone when a lock-delay tombstone is in
 * the head. */
static int64_t view_first(const struct lk_view *v, bool *tombstone)
{
    int64_t token = 0;
    bool tomb = false;
    for (size_t i = 0; i < v->head; i++) {
        if (v->kvs[i].lease == 0) {
            tomb = true;
        } else if (token == 0) {
            token = v->kvs[i].create_revision;
        }
    }
    if (tombstone != NULL) {
        *tombstone = tomb;
    }
    return token;
}

/* ---- ops ------------------------------------------------------------------------------ */

static void op_link(struct latch__locks *ls, struct lk_op *op)
{
    op->ls = ls;
    op->prev = NULL;
    op->next = ls->ops;
    if (ls->ops != NULL) {
        ls->ops->prev = op;
    }
    ls->ops = op;
}

static void queue_remove(struct latch__locks *ls, struct lk_op *op);

static void op_free(struct lk_op *op)
{
    if (op == NULL) {
        return;
    }
    if (op->ls != NULL) {
        if (op->q != NULL) {
            queue_remove(op->ls, op);
        }
        if (op->prev != NULL) {
            op->prev->next = op->next;
        } else {
            op->ls->ops = op->next;
        }
        if (op->next != NULL) {
            op->next->prev = op->prev;
        }
    }
    free(op->value);
    free(op);
}

/* A new op for call on the queue of name (election or lock). NULL after failing call (bad
 * name, out of memory). */
static struct lk_op *op_new(struct latch__locks *ls,
                            struct api_call *call,
                            enum lk_kind kind,
                            const char *name,
                            bool election)
{
    struct lk_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        latch__fail(call, LATCH_ENOMEM, NULL);
        return NULL;
    }
    const char *why = NULL;
    int rc =
        latch__queue_prefix(name != NULL ? name : "", election, op->prefix, &op->prefix_len, &why);
    if (rc != 0) {
        free(op);
        latch__fail(call, rc, why);
        return NULL;
    }
    op->call = call;
    op->kind = kind;
    op->election = election;
    op_link(ls, op);
    return op;
}

static int op_set_value(struct lk_op *op, const ProtobufCBinaryData *v)
{
    op->value = malloc(v->len > 0 ? v->len : 1);
    if (op->value == NULL) {
        return LATCH_ENOMEM;
    }
    if (v->len > 0) {
        memcpy(op->value, v->data, v->len);
    }
    op->value_len = v->len;
    return 0;
}

/* ---- queues of waiters ---------------------------------------------------------------- */

static struct lk_queue *queue_find(struct latch__locks *ls, const uint8_t *prefix, size_t len)
{
    for (struct lk_queue *q = ls->queues; q != NULL; q = q->next) {
        if (q->prefix_len == len && memcmp(q->prefix, prefix, len) == 0) {
            return q;
        }
    }
    return NULL;
}

/* Appends op to its queue's waiters (FIFO by token: ops wait in the order their entries
 * were applied). */
static int queue_add(struct latch__locks *ls, struct lk_op *op)
{
    struct lk_queue *q = queue_find(ls, op->prefix, op->prefix_len);
    if (q == NULL) {
        q = calloc(1, sizeof(*q));
        if (q == NULL) {
            return LATCH_ENOMEM;
        }
        memcpy(q->prefix, op->prefix, op->prefix_len);
        q->prefix_len = op->prefix_len;
        q->next = ls->queues;
        if (ls->queues != NULL) {
            ls->queues->prev = q;
        }
        ls->queues = q;
    }
    op->q = q;
    op->qnext = NULL;
    if (q->waiters == NULL) {
        op->qprev = op;
        q->waiters = op;
    } else {
        struct lk_op *tail = q->waiters->qprev;
        tail->qnext = op;
        op->qprev = tail;
        q->waiters->qprev = op;
    }
    return 0;
}

static void queue_remove(struct latch__locks *ls, struct lk_op *op)
{
    struct lk_queue *q = op->q;
    LATCH_ASSERT(q != NULL);
    if (q->waiters == op) {
        q->waiters = op->qnext;
        if (q->waiters != NULL) {
            q->waiters->qprev = op->qprev;
        }
    } else {
        op->qprev->qnext = op->qnext;
        if (op->qnext != NULL) {
            op->qnext->qprev = op->qprev;
        } else {
            q->waiters->qprev = op->qprev;
        }
    }
    op->q = NULL;
    op->qprev = op->qnext = NULL;
    if (q->waiters == NULL) {
        if (q->prev != NULL) {
            q->prev->next = q->next;
        } else {
            ls->queues = q->next;
        }
        if (q->next != NULL) {
            q->next->prev = q->prev;
        }
        free(q);
    }
}

/* ---- proposals ------------------------------------------------------------------------ */

static void op_done(void *data, int err, const struct store_result *res);

/* Proposes t for op (op_done answers); answers and frees op on an error. */
static void op_propose(struct latch__locks *ls, struct lk_op *op, const struct store_txn_req *t)
{
    char why[STORE_ERRMSG_BYTES];
    why[0] = '\0';
    int rc = srv_kv_propose_txn(ls->l->kv, t, op_done, op, why, sizeof(why));
    if (rc != 0) {
        latch__fail(op->call, rc, why);
        op_free(op);
    }
}

static void nobody_done(void *data, int err, const struct store_result *res)
{
    (void)data;
    (void)err;
    (void)res;
}

/* Deletes op's entry while it is still the one created at op->token (the end of a wait
 * nobody is answered for). */
static void op_cleanup(struct latch__locks *ls, const struct lk_op *op)
{
    struct store_compare cmp = {.target = STORE_CMP_CREATE,
                                .result = STORE_CMP_EQUAL,
                                .key = op->key,
                                .key_len = (uint32_t)op->key_len,
                                .number = op->token};
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del.key = op->key;
    del.u.del.key_len = (uint32_t)op->key_len;
    struct store_txn_req t = {
        .compares = &cmp, .compares_count = 1, .success = &del, .success_count = 1};
    (void)srv_kv_propose_txn(ls->l->kv, &t, nobody_done, NULL, NULL, 0);
}

/* ---- Acquire and Campaign ------------------------------------------------------------- */

static void answer_acquired(struct latch__locks *ls, struct lk_op *op, int64_t rev)
{
    Latch__V1__Header hdr = LATCH__V1__HEADER__INIT;
    latch__header(ls->l, rev, &hdr);
    if (op->election) {
        Latch__V1__CampaignResponse resp = LATCH__V1__CAMPAIGN_RESPONSE__INIT;
        resp.header = &hdr;
        resp.token = op->token;
        (void)api_call_reply_pb(op->call, &resp.base);
    } else {
        Latch__V1__AcquireResponse resp = LATCH__V1__ACQUIRE_RESPONSE__INIT;
        resp.header = &hdr;
        resp.token = op->token;
        (void)api_call_reply_pb(op->call, &resp.base);
    }
}

/* The client gave up on a waiting Acquire (reset, connection gone, the server's deadline):
 * its entry goes, as etcd's Mutex does on a cancelled Lock. */
static void op_canceled(struct api_call *call, void *data)
{
    struct lk_op *op = data;
    if (op->ls != NULL) {
        op_cleanup(op->ls, op);
    }
    (void)api_call_fail(call, API_GRPC_STATUS_CANCELLED, "latch: canceled"); /* frees it */
    op_free(op);
}

/* A try_once that found the lock held: its entry is deleted first, then ABORTED. */
static void op_abort(struct latch__locks *ls, struct lk_op *op, const struct lk_view *v)
{
    bool tomb = false;
    int64_t holder = view_first(v, &tomb);
    if (holder != 0) {
        (void)snprintf(op->msg, sizeof(op->msg), "latch: lock busy (held by token %" PRId64 ")",
                       holder);
    } else {
        (void)snprintf(op->msg, sizeof(op->msg), "latch: lock busy (lock-delay of a lost holder)");
    }
    op->kind = LK_ABORT;
    struct store_compare cmp = {.target = STORE_CMP_CREATE,
                                .result = STORE_CMP_EQUAL,
                                .key = op->key,
                                .key_len = (uint32_t)op->key_len,
                                .number = op->token};
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del.key = op->key;
    del.u.del.key_len = (uint32_t)op->key_len;
    struct store_txn_req t = {
        .compares = &cmp, .compares_count = 1, .success = &del, .success_count = 1};
    op_propose(ls, op, &t);
}

/*
 * Looks at op's entry in v: answers op when it holds (or is gone, or try_once), else makes
 * it wait. Returns true when op was answered (and freed, or handed to a proposal).
 */
static bool op_check(struct latch__locks *ls, struct lk_op *op, const struct lk_view *v)
{
    size_t i = view_find(v, op->token);
    if (i == v->n || v->kvs[i].lease == 0) {
        /* Gone: the session ended (its entries went with it), or someone released it. */
        if (op->q != NULL) {
            queue_remove(ls, op);
        }
        lk_failf(op->call, API_GRPC_STATUS_NOT_FOUND, "session lost (the lock entry is gone)");
        op_free(op);
        return true;
    }
    if (view_holds(v, op->token)) {
        if (!api_call_is_alive(op->call)) {
            op_cleanup(ls, op); /* died before its cancel callback ran: nobody holds it */
            (void)api_call_fail(op->call, API_GRPC_STATUS_CANCELLED, "latch: canceled");
        } else {
            answer_acquired(ls, op, v->rev);
        }
        op_free(op);
        return true;
    }
    if (op->try_once) {
        op_abort(ls, op, v);
        return true;
    }
    if (!op->waiting) {
        int rc = queue_add(ls, op);
        if (rc != 0) {
            op_cleanup(ls, op);
            latch__fail(op->call, rc, NULL);
            op_free(op);
            return true;
        }
        op->waiting = true;
        api_call_on_cancel(op->call, op_canceled, op);
    }
    return false;
}

/* Reads op's queue and checks op against it. */
static void op_check_now(struct latch__locks *ls, struct lk_op *op)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct lk_view v;
    int rc = view_read(ls, op->prefix, op->prefix_len, 0, 0, true, &a, &v);
    if (rc != 0) {
        op_cleanup(ls, op);
        latch__fail(op->call, rc, NULL);
        op_free(op);
    } else {
        (void)op_check(ls, op, &v);
    }
    latch_arena_close(&a);
}

/* The Acquire/Campaign txn was applied: find the token, then hold, abort or wait. */
static void acquire_done(struct latch__locks *ls, struct lk_op *op, const struct store_result *res)
{
    const struct store_txn_result *t = &res->u.txn;
    if (t->succeeded) {
        op->token = res->revision;
    } else {
        const struct store_kv *kv = NULL;
        bool other_kind = false;
        for (size_t i = 0; i < t->responses_count && i < 2; i++) {
            const struct store_op_result *r = &t->responses[i];
            if (r->type == STORE_OP_RANGE && r->u.range.kvs_count == 1) {
                kv = &r->u.range.kvs[0];
                other_kind = !op->election && (i == 1) != op->shared;
                break;
            }
        }
        if (kv == NULL) {
            latch__fail(op->call, LATCH_EINVAL, "the entry vanished"); /* cannot happen */
            op_free(op);
            return;
        }
        if (kv->lease != op->session) {
            /* A lock-delay tombstone of this session: the session is gone. */
            lk_failf(op->call, API_GRPC_STATUS_NOT_FOUND, "session not found");
            op_free(op);
            return;
        }
        if (other_kind) {
            lk_failf(op->call, API_GRPC_STATUS_FAILED_PRECONDITION,
                     "session already queued on this lock as %s (token %" PRId64 ")",
                     op->shared ? "exclusive" : "shared", kv->create_revision);
            op_free(op);
            return;
        }
        op->token = kv->create_revision;
    }
    if (!api_call_is_alive(op->call)) {
        op_cleanup(ls, op);
        (void)api_call_fail(op->call, API_GRPC_STATUS_CANCELLED, "latch: canceled");
        op_free(op);
        return;
    }
    op_check_now(ls, op);
}

/* Acquire (lock entry, value = the delay) and Campaign (election entry, value = the
 * candidate's): create the entry unless this session has one, in one txn. */
static void acquire_propose(struct latch__locks *ls, struct lk_op *op)
{
    uint8_t key_w[LATCH__ENTRY_MAX], key_r[LATCH__ENTRY_MAX];
    size_t len_w = latch__entry_key(op->prefix, op->prefix_len, false, op->session, key_w);
    size_t len_r = latch__entry_key(op->prefix, op->prefix_len, true, op->session, key_r);
    if (op->shared) {
        memcpy(op->key, key_r, len_r);
        op->key_len = len_r;
    } else {
        memcpy(op->key, key_w, len_w);
        op->key_len = len_w;
    }
    struct store_compare absent[2] = {
        {.target = STORE_CMP_CREATE,
         .result = STORE_CMP_EQUAL,
         .key = key_w,
         .key_len = (uint32_t)len_w},
        {.target = STORE_CMP_CREATE,
         .result = STORE_CMP_EQUAL,
         .key = key_r,
         .key_len = (uint32_t)len_r},
    };
    struct store_op put = {.type = STORE_OP_PUT};
    put.u.put.key = op->key;
    put.u.put.key_len = (uint32_t)op->key_len;
    put.u.put.value = op->election ? op->value : op->delay;
    put.u.put.value_len = op->election ? (uint32_t)op->value_len : LK_DELAY_BYTES;
    put.u.put.lease = op->session;
    struct store_op fail[2] = {{.type = STORE_OP_RANGE}, {.type = STORE_OP_RANGE}};
    fail[0].u.range.key = key_w;
    fail[0].u.range.key_len = (uint32_t)len_w;
    fail[1].u.range.key = key_r;
    fail[1].u.range.key_len = (uint32_t)len_r;
    /* Campaign with an entry holding another value: the value is replaced (etcd's Campaign
     * proclaims it), in the same txn. */
    struct store_compare other = {.target = STORE_CMP_VALUE,
                                  .result = STORE_CMP_NOT_EQUAL,
                                  .key = op->key,
                                  .key_len = (uint32_t)op->key_len,
                                  .value = op->value,
                                  .value_len = (uint32_t)op->value_len};
    struct store_txn_req proclaim = {
        .compares = &other, .compares_count = 1, .success = &put, .success_count = 1};
    struct store_txn_req t = {.compares = absent,
                              .compares_count = op->election ? 1 : 2,
                              .success = &put,
                              .success_count = 1,
                              .failure = fail,
                              .failure_count = 2};
    if (op->election) {
        fail[1].type = STORE_OP_TXN;
        fail[1].u.txn = &proclaim;
    }
    op_propose(ls, op, &t);
}

/* When a wait is answered by this module: a little before the server's deadline, so the
 * client gets "latch: lock wait timed out" (0: no deadline). */
static uint64_t wait_deadline(struct latch__locks *ls, struct api_call *call)
{
    uint64_t ms = 0;
    if (!api_call_timeout_ms(call, &ms)) {
        return 0;
    }
    uint64_t margin = ms / 4 < LK_MARGIN_MS_MAX ? ms / 4 : LK_MARGIN_MS_MAX;
    return uv_now(ls->l->loop) + ms - margin;
}

static void m_acquire(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_latch *l = data;
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__acquire_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__AcquireRequest *in = (const Latch__V1__AcquireRequest *)m;
    if (in->session <= 0) {
        latch__fail(call, LATCH_EINVAL, "session must be positive");
    } else if (in->lock_delay_ms < 0 || in->lock_delay_ms > LK_DELAY_MS_MAX) {
        latch__fail(call, LATCH_EINVAL, "lock_delay_ms must be within [0, 3600000]");
    } else {
        struct lk_op *op = op_new(l->locks, call, LK_ACQUIRE, in->lock, false);
        if (op != NULL) {
            op->session = in->session;
            op->shared = in->shared;
            op->try_once = in->try_once;
            op->delay_ms = in->lock_delay_ms;
            put_le64(op->delay, (uint64_t)in->lock_delay_ms);
            op->deadline = wait_deadline(l->locks, call);
            acquire_propose(l->locks, op);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_campaign(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_latch *l = data;
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__campaign_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__CampaignRequest *in = (const Latch__V1__CampaignRequest *)m;
    if (in->session <= 0) {
        latch__fail(call, LATCH_EINVAL, "session must be positive");
    } else {
        struct lk_op *op = op_new(l->locks, call, LK_ACQUIRE, in->election, true);
        if (op != NULL) {
            op->session = in->session;
            if (op_set_value(op, &in->value) != 0) {
                latch__fail(call, LATCH_ENOMEM, NULL);
                op_free(op);
            } else {
                op->deadline = wait_deadline(l->locks, call);
                acquire_propose(l->locks, op);
            }
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- Release, Resign, Proclaim: find the entry of the token, then one txn --------------- */

static void op_read_cb(void *data, int err);
static void op_read(struct latch__locks *ls, struct lk_op *op, bool serializable);

static void release_read_done(struct latch__locks *ls, struct lk_op *op)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct lk_view v;
    int rc = view_read(ls, op->prefix, op->prefix_len, 0, 0, true, &a, &v);
    if (rc != 0) {
        latch__fail(op->call, rc, NULL);
        op_free(op);
        latch_arena_close(&a);
        return;
    }
    size_t i = view_find(&v, op->token);
    if (i == v.n && op->local_first) {
        /* Not applied here yet (granted through another member, say): look again at a
         * linearizable read point before answering that it is not held. */
        latch_arena_close(&a);
        op->local_first = false;
        op_read(ls, op, false);
        return;
    }
    if (i == v.n || v.kvs[i].lease == 0 ||
        (op->kind == LK_PROCLAIM && !view_holds(&v, op->token))) {
        if (op->kind == LK_PROCLAIM) {
            lk_failf(op->call, API_GRPC_STATUS_FAILED_PRECONDITION, "not leader");
        } else {
            lk_failf(op->call, API_GRPC_STATUS_NOT_FOUND, "lock not held");
        }
        op_free(op);
        latch_arena_close(&a);
        return;
    }
    memcpy(op->key, v.kvs[i].key, v.kvs[i].key_len);
    op->key_len = v.kvs[i].key_len;
    latch_arena_close(&a);

    uint8_t end[LATCH__QUEUE_MAX];
    latch__queue_end(op->prefix, op->prefix_len, end);
    static const uint8_t shared_marker[1] = {LATCH__KIND_SHARED};
    struct store_compare cmp[2] = {
        {.target = STORE_CMP_CREATE,
         .result = STORE_CMP_EQUAL,
         .key = op->key,
         .key_len = (uint32_t)op->key_len,
         .number = op->token},
        {.target = STORE_CMP_LEASE,
         .result = STORE_CMP_NOT_EQUAL,
         .key = op->key,
         .key_len = (uint32_t)op->key_len,
         .number = 0},
    };
    struct store_op w = {.type = STORE_OP_DELETE};
    if (op->kind == LK_PROCLAIM) {
        cmp[1] = (struct store_compare){.target = STORE_CMP_FENCE,
                                        .result = STORE_CMP_EQUAL,
                                        .key = op->prefix,
                                        .key_len = (uint32_t)op->prefix_len,
                                        .range_end = end,
                                        .range_end_len = (uint32_t)op->prefix_len,
                                        .number = op->token,
                                        .value = shared_marker,
                                        .value_len = 1};
        w.type = STORE_OP_PUT;
        w.u.put.key = op->key;
        w.u.put.key_len = (uint32_t)op->key_len;
        w.u.put.value = op->value;
        w.u.put.value_len = (uint32_t)op->value_len;
        w.u.put.ignore_lease = true;
    } else {
        w.u.del.key = op->key;
        w.u.del.key_len = (uint32_t)op->key_len;
    }
    struct store_txn_req t = {
        .compares = cmp, .compares_count = 2, .success = &w, .success_count = 1};
    op_propose(ls, op, &t);
}

/* Starts op's read point (the op is answered from op_read_cb). */
static void op_read(struct latch__locks *ls, struct lk_op *op, bool serializable)
{
    int rc = latch__read_point(ls->l, serializable, op_read_cb, op);
    if (rc != 0) {
        latch__fail(op->call, rc, NULL);
        op_free(op);
    }
}

static void release_start(struct srv_latch *l,
                          struct api_call *call,
                          const char *name,
                          bool election,
                          int64_t token,
                          enum lk_kind kind,
                          const ProtobufCBinaryData *value)
{
    if (token <= 0) {
        latch__fail(call, LATCH_EINVAL, "token must be positive");
        return;
    }
    struct lk_op *op = op_new(l->locks, call, kind, name, election);
    if (op == NULL) {
        return;
    }
    op->token = token;
    if (value != NULL && op_set_value(op, value) != 0) {
        latch__fail(call, LATCH_ENOMEM, NULL);
        op_free(op);
        return;
    }
    /* The entry's key is found in the local state when it is there: the txn's compare on
     * its create revision (the token) makes a stale local view harmless, so the common case
     * needs no ReadIndex round before its one commit. */
    op->local_first = kind != LK_PROCLAIM; /* "not leader" must not come from a stale view */
    op_read(l->locks, op, op->local_first);
}

static void m_release(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__release_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__ReleaseRequest *in = (const Latch__V1__ReleaseRequest *)m;
    release_start(data, call, in->lock, false, in->token, LK_RELEASE, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_resign(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__resign_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__ResignRequest *in = (const Latch__V1__ResignRequest *)m;
    release_start(data, call, in->election, true, in->token, LK_RELEASE, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_proclaim(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__proclaim_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__ProclaimRequest *in = (const Latch__V1__ProclaimRequest *)m;
    release_start(data, call, in->election, true, in->token, LK_PROCLAIM, &in->value);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* A proposal of op was applied (or failed). */
static void op_done(void *data, int err, const struct store_result *res)
{
    struct lk_op *op = data;
    struct latch__locks *ls = op->ls;
    if (ls == NULL) {
        latch__fail(op->call, LATCH_ESHUTDOWN, NULL);
        op_free(op);
        return;
    }
    if (err == 0 && res->err != 0) {
        err = res->err;
    }
    if (err == LATCH_ENOTFOUND && op->kind == LK_ACQUIRE) {
        lk_failf(op->call, API_GRPC_STATUS_NOT_FOUND, "session not found");
        op_free(op);
        return;
    }
    if (err != 0) {
        latch__fail(op->call, err, NULL);
        op_free(op);
        return;
    }
    Latch__V1__Header hdr = LATCH__V1__HEADER__INIT;
    latch__header(ls->l, res->revision, &hdr);
    switch (op->kind) {
    case LK_ACQUIRE:
        acquire_done(ls, op, res);
        return; /* answered and freed, or waiting */
    case LK_ABORT:
        (void)api_call_fail(op->call, API_GRPC_STATUS_ABORTED, op->msg);
        break;
    case LK_RELEASE:
        if (!res->u.txn.succeeded) {
            lk_failf(op->call, API_GRPC_STATUS_NOT_FOUND, "lock not held");
        } else if (op->election) {
            Latch__V1__ResignResponse resp = LATCH__V1__RESIGN_RESPONSE__INIT;
            resp.header = &hdr;
            (void)api_call_reply_pb(op->call, &resp.base);
        } else {
            Latch__V1__ReleaseResponse resp = LATCH__V1__RELEASE_RESPONSE__INIT;
            resp.header = &hdr;
            (void)api_call_reply_pb(op->call, &resp.base);
        }
        break;
    case LK_PROCLAIM:
        if (!res->u.txn.succeeded) {
            lk_failf(op->call, API_GRPC_STATUS_FAILED_PRECONDITION, "not leader");
        } else {
            Latch__V1__ProclaimResponse resp = LATCH__V1__PROCLAIM_RESPONSE__INIT;
            resp.header = &hdr;
            (void)api_call_reply_pb(op->call, &resp.base);
        }
        break;
    case LK_READ:
        LATCH_ASSERT(false);
        break;
    }
    op_free(op);
}

/* ---- Holder, Waiters, CheckFence, Leader ---------------------------------------------- */

static void answer_read(struct latch__locks *ls, struct lk_op *op, const struct lk_view *v)
{
    Latch__V1__Header hdr = LATCH__V1__HEADER__INIT;
    latch__header(ls->l, v->rev, &hdr);
    size_t n = v->n;
    Latch__V1__Grant *grants = calloc(n > 0 ? n : 1, sizeof(*grants));
    Latch__V1__Grant **ptrs = calloc(n > 0 ? n : 1, sizeof(*ptrs));
    if (grants == NULL || ptrs == NULL) {
        free(grants);
        free(ptrs);
        latch__fail(op->call, LATCH_ENOMEM, NULL);
        return;
    }
    size_t count = 0;
    bool tomb = false;
    int64_t first = view_first(v, &tomb);
    switch (op->read) {
    case LK_HOLDER:
    case LK_WAITERS:
        for (size_t i = op->read == LK_HOLDER ? 0 : v->head;
             i < (op->read == LK_HOLDER ? v->head : n); i++) {
            if (v->kvs[i].lease == 0) {
                continue; /* a tombstone: nobody's grant, nobody waiting */
            }
            latch__v1__grant__init(&grants[count]);
            grants[count].token = v->kvs[i].create_revision;
            grants[count].session = entry_session(&v->kvs[i], op->prefix_len);
            grants[count].shared = entry_shared(v->kvs[i].key, v->kvs[i].key_len, op->prefix_len);
            ptrs[count] = &grants[count];
            count++;
        }
        if (op->read == LK_HOLDER) {
            Latch__V1__HolderResponse resp = LATCH__V1__HOLDER_RESPONSE__INIT;
            resp.header = &hdr;
            resp.holders = ptrs;
            resp.n_holders = count;
            resp.lock_delay = tomb;
            (void)api_call_reply_pb(op->call, &resp.base);
        } else {
            Latch__V1__WaitersResponse resp = LATCH__V1__WAITERS_RESPONSE__INIT;
            resp.header = &hdr;
            resp.waiters = ptrs;
            resp.n_waiters = count;
            (void)api_call_reply_pb(op->call, &resp.base);
        }
        break;
    case LK_CHECK: {
        Latch__V1__CheckFenceResponse resp = LATCH__V1__CHECK_FENCE_RESPONSE__INIT;
        resp.header = &hdr;
        resp.current = view_holds(v, op->token);
        resp.current_token = resp.current ? op->token : first;
        (void)api_call_reply_pb(op->call, &resp.base);
        break;
    }
    case LK_LEADER: {
        Latch__V1__LeaderResponse resp = LATCH__V1__LEADER_RESPONSE__INIT;
        resp.header = &hdr;
        if (n > 0) {
            resp.token = v->kvs[0].create_revision;
            resp.value.data = (uint8_t *)v->kvs[0].value;
            resp.value.len = v->kvs[0].value_len;
            resp.session = entry_session(&v->kvs[0], op->prefix_len);
        }
        (void)api_call_reply_pb(op->call, &resp.base);
        break;
    }
    }
    free(grants);
    free(ptrs);
}

static void op_read_cb(void *data, int err)
{
    struct lk_op *op = data;
    struct latch__locks *ls = op->ls;
    if (ls == NULL) {
        err = LATCH_ESHUTDOWN;
    }
    if (err != 0) {
        latch__fail(op->call, err, NULL);
        op_free(op);
        return;
    }
    if (op->kind != LK_READ) {
        release_read_done(ls, op);
        return;
    }
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct lk_view v;
    bool leader = op->read == LK_LEADER;
    int rc = view_read(ls, op->prefix, op->prefix_len, 0, leader ? 1 : 0, !leader, &a, &v);
    if (rc != 0) {
        latch__fail(op->call, rc, NULL);
    } else {
        answer_read(ls, op, &v);
    }
    latch_arena_close(&a);
    op_free(op);
}

static void read_start(struct srv_latch *l,
                       struct api_call *call,
                       enum lk_read what,
                       const char *name,
                       bool election,
                       bool serializable,
                       int64_t token)
{
    struct lk_op *op = op_new(l->locks, call, LK_READ, name, election);
    if (op != NULL) {
        op->read = what;
        op->token = token;
        op_read(l->locks, op, serializable);
    }
}

static void m_holder(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__holder_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__HolderRequest *in = (const Latch__V1__HolderRequest *)m;
    read_start(data, call, LK_HOLDER, in->lock, false, in->serializable, 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_waiters(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__waiters_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__WaitersRequest *in = (const Latch__V1__WaitersRequest *)m;
    read_start(data, call, LK_WAITERS, in->lock, false, in->serializable, 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_check_fence(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m =
        api_call_unpack(call, &latch__v1__check_fence_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__CheckFenceRequest *in = (const Latch__V1__CheckFenceRequest *)m;
    if (in->fence == NULL || in->fence->token <= 0) {
        latch__fail(call, LATCH_EINVAL, "a fence needs a lock and a positive token");
    } else {
        read_start(data, call, LK_CHECK, in->fence->lock, in->fence->is_election, false,
                   in->fence->token);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

static void m_leader(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__leader_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__LeaderRequest *in = (const Latch__V1__LeaderRequest *)m;
    read_start(data, call, LK_LEADER, in->election, true, in->serializable, 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- Observe -------------------------------------------------------------------------- */

static void obs_free(struct lk_obs *o)
{
    if (o->ls != NULL) {
        if (o->prev != NULL) {
            o->prev->next = o->next;
        } else {
            o->ls->observers = o->next;
        }
        if (o->next != NULL) {
            o->next->prev = o->prev;
        }
    }
    free(o);
}

static void obs_end(struct lk_obs *o, int status, const char *msg)
{
    (void)api_call_finish(o->call, status, msg);
    obs_free(o);
}

/* Sends the leader kv (NULL: none) as of rev. */
static int obs_send(struct lk_obs *o, int64_t rev, const struct store_kv *kv)
{
    Latch__V1__Header hdr = LATCH__V1__HEADER__INIT;
    latch__header(o->ls->l, rev, &hdr);
    Latch__V1__LeaderResponse resp = LATCH__V1__LEADER_RESPONSE__INIT;
    resp.header = &hdr;
    if (kv != NULL) {
        resp.token = kv->create_revision;
        resp.value.data = (uint8_t *)kv->value;
        resp.value.len = kv->value_len;
        resp.session = entry_session(kv, o->prefix_len);
    }
    o->leader = resp.token;
    bool would_block = false;
    int rc = api_call_send_pb(o->call, &resp.base, &would_block);
    o->paused = rc == 0 && would_block;
    return rc;
}

static bool obs_feed(struct lk_obs *o);

static void obs_writable(struct api_call *call, void *data)
{
    struct lk_obs *o = data;
    (void)call;
    o->paused = false;
    if (o->ls != NULL && !o->reading) {
        (void)obs_feed(o);
    }
}

/*
 * Sends o what it has not seen: first the current leader (if any), then, for each revision
 * that changed the election's queue, the leader after it when it is another one (token 0:
 * none left) or when the leader's entry was written at that revision (a Proclaim). Returns
 * false when o was ended.
 */
static bool obs_feed(struct lk_obs *o)
{
    struct latch__locks *ls = o->ls;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    int rc = 0;
    uint8_t end[LATCH__QUEUE_MAX];
    latch__queue_end(o->prefix, o->prefix_len, end);
    while (rc == 0 && !o->paused) {
        latch_arena_reset(&a);
        struct lk_view v;
        if (!o->started) {
            rc = view_read(ls, o->prefix, o->prefix_len, 0, 1, false, &a, &v);
            if (rc != 0) {
                break;
            }
            o->started = true;
            o->next_rev = v.rev + 1;
            if (v.n > 0 || o->leader != 0) {
                rc = obs_send(o, v.rev, v.n > 0 ? &v.kvs[0] : NULL);
            }
            continue;
        }
        struct store_history_req q = {.start_revision = o->next_rev,
                                      .key = o->prefix,
                                      .key_len = (uint32_t)o->prefix_len,
                                      .range_end = end,
                                      .range_end_len = (uint32_t)o->prefix_len,
                                      .max_events = LK_OBS_EVENTS,
                                      .max_bytes = (size_t)1 << 20};
        struct store_event *ev = NULL;
        size_t n = 0;
        int64_t next = 0;
        rc = store_history(srv_node_reader(ls->l->node), &q, &a, &ev, &n, &next);
        if (rc == LATCH_ECOMPACTED) {
            o->started = false; /* the history is gone: start again from the current leader */
            rc = 0;
            continue;
        }
        if (rc != 0) {
            break;
        }
        if (n == 0) {
            o->next_rev = next;
            break; /* caught up */
        }
        struct latch_arena va;
        latch_arena_init(&va, 0);
        for (size_t i = 0; i < n && rc == 0 && !o->paused; i++) {
            int64_t r = ev[i].kv.mod_revision;
            if (i + 1 < n && ev[i + 1].kv.mod_revision == r) {
                continue; /* the last event of each revision decides */
            }
            latch_arena_reset(&va);
            rc = view_read(ls, o->prefix, o->prefix_len, r, 1, false, &va, &v);
            if (rc == LATCH_ECOMPACTED) {
                o->started = false;
                rc = 0;
                break;
            }
            if (rc != 0) {
                break;
            }
            o->next_rev = r + 1;
            if (v.n > 0 && (v.kvs[0].create_revision != o->leader || v.kvs[0].mod_revision == r)) {
                rc = obs_send(o, r, &v.kvs[0]);
            } else if (v.n == 0 && o->leader != 0) {
                rc = obs_send(o, r, NULL);
            }
        }
        latch_arena_close(&va);
        if (rc == 0 && o->started && !o->paused && o->next_rev < next) {
            o->next_rev = next;
        }
    }
    latch_arena_close(&a);
    if (rc == 0 && o->paused) {
        api_call_on_writable(o->call, obs_writable, o);
        return true;
    }
    if (rc == LATCH_ESTATE) {
        return true; /* the call is dead: its cancel callback ends it */
    }
    if (rc != 0) {
        char msg[LK_MSG_MAX];
        int status = latch__status(rc, NULL, msg, sizeof(msg));
        obs_end(o, status, msg);
        return false;
    }
    return true;
}

static void obs_canceled(struct api_call *call, void *data)
{
    struct lk_obs *o = data;
    (void)call;
    if (o->reading) {
        o->canceled = true; /* the read callback ends it */
        return;
    }
    obs_end(o, API_GRPC_STATUS_CANCELLED, "latch: canceled");
}

static void obs_read_cb(void *data, int err)
{
    struct lk_obs *o = data;
    o->reading = false;
    if (o->canceled || o->ls == NULL) {
        obs_end(o, API_GRPC_STATUS_CANCELLED, "latch: canceled");
        return;
    }
    if (err != 0) {
        char msg[LK_MSG_MAX];
        int status = latch__status(err, NULL, msg, sizeof(msg));
        obs_end(o, status, msg);
        return;
    }
    (void)obs_feed(o);
}

static void m_observe(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_latch *l = data;
    struct latch__locks *ls = l->locks;
    ProtobufCMessage *m = api_call_unpack(call, &latch__v1__observe_request__descriptor, req, len);
    if (m == NULL) {
        return;
    }
    const Latch__V1__ObserveRequest *in = (const Latch__V1__ObserveRequest *)m;
    struct lk_obs *o = calloc(1, sizeof(*o));
    const char *why = NULL;
    int rc = o == NULL ? LATCH_ENOMEM
                       : latch__queue_prefix(in->election != NULL ? in->election : "", true,
                                             o->prefix, &o->prefix_len, &why);
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc != 0) {
        free(o);
        char msg[LK_MSG_MAX];
        int status = latch__status(rc, why, msg, sizeof(msg));
        (void)api_call_finish(call, status, msg);
        return;
    }
    o->call = call;
    o->ls = ls;
    o->next = ls->observers;
    if (ls->observers != NULL) {
        ls->observers->prev = o;
    }
    ls->observers = o;
    o->reading = true;
    api_call_on_cancel(call, obs_canceled, o); /* first: the read may answer at once */
    rc = latch__read_point(l, false, obs_read_cb, o);
    if (rc != 0) {
        o->reading = false;
        char msg[LK_MSG_MAX];
        int status = latch__status(rc, NULL, msg, sizeof(msg));
        obs_end(o, status, msg);
    }
}

/* ---- lock-delay ----------------------------------------------------------------------- */

/* Schedules the deletion of tombstone key (created at create_rev) delay_ms from now, unless
 * it is scheduled already. */
static void tomb_schedule(struct latch__locks *ls,
                          const uint8_t *key,
                          size_t key_len,
                          int64_t create_rev,
                          int64_t delay_ms)
{
    if (key_len > LATCH__ENTRY_MAX) {
        return;
    }
    for (struct lk_tomb *t = ls->tombs; t != NULL; t = t->next) {
        if (t->create_rev == create_rev && t->key_len == key_len &&
            memcmp(t->key, key, key_len) == 0) {
            return;
        }
    }
    struct lk_tomb *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        latch_log(LATCH_LOG_WARN, "latch: out of memory scheduling a lock-delay tombstone");
        return; /* found again at the next promotion scan */
    }
    memcpy(t->key, key, key_len);
    t->ls = ls;
    t->key_len = key_len;
    t->create_rev = create_rev;
    int64_t d = delay_ms < 0 ? 0 : (delay_ms > LK_DELAY_MS_MAX ? LK_DELAY_MS_MAX : delay_ms);
    t->due = uv_now(ls->l->loop) + (uint64_t)d;
    t->next = ls->tombs;
    ls->tombs = t;
    latch_log(LATCH_LOG_DEBUG, "latch: lock-delay tombstone (token %" PRId64 ") for %" PRId64 " ms",
              create_rev, d);
}

/* A lock entry kv as a tombstone to schedule: lease 0, 8-byte value. */
static void tomb_consider(struct latch__locks *ls, const struct store_kv *kv)
{
    if (kv->lease == 0 && kv->value != NULL && kv->value_len == LK_DELAY_BYTES &&
        kv->key_len > sizeof(LK_LOCK_PREFIX) &&
        memcmp(kv->key, LK_LOCK_PREFIX, sizeof(LK_LOCK_PREFIX)) == 0) {
        tomb_schedule(ls, kv->key, kv->key_len, kv->create_revision, (int64_t)get_le64(kv->value));
    }
}

/* Forgets every tombstone (one whose delete is in flight is freed by its callback). */
static void tomb_clear(struct latch__locks *ls)
{
    while (ls->tombs != NULL) {
        struct lk_tomb *t = ls->tombs;
        ls->tombs = t->next;
        if (t->deleting) {
            t->ls = NULL;
            t->next = NULL;
        } else {
            free(t);
        }
    }
}

/* A new leader: every tombstone in "\0lock/" waits its full delay from now. */
static void tomb_scan(struct latch__locks *ls)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_range_req q = {.key = LK_LOCK_PREFIX,
                                .key_len = sizeof(LK_LOCK_PREFIX),
                                .range_end = LK_LOCK_END,
                                .range_end_len = sizeof(LK_LOCK_END)};
    struct store_range_result r;
    int rc = store_range(srv_node_reader(ls->l->node), &q, &a, &r, NULL);
    if (rc == 0) {
        for (size_t i = 0; i < r.kvs_count; i++) {
            tomb_consider(ls, &r.kvs[i]);
        }
    } else {
        latch_log(LATCH_LOG_WARN, "latch: cannot scan the lock-delay tombstones: %s",
                  latch_strerror(rc));
    }
    latch_arena_close(&a);
}

static void tomb_deleted(void *data, int err, const struct store_result *res)
{
    struct lk_tomb *t = data;
    struct latch__locks *ls = t->ls;
    (void)res;
    if (ls == NULL) {
        free(t);
        return;
    }
    t->deleting = false;
    if (err != 0) {
        return; /* retried next tick while still leader */
    }
    for (struct lk_tomb **p = &ls->tombs; *p != NULL; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    free(t);
}

/* The leader deletes the tombstones whose delay has passed (while still lease-less and the
 * same entry). */
static void tomb_expire(struct latch__locks *ls, uint64_t now)
{
    for (struct lk_tomb *t = ls->tombs; t != NULL; t = t->next) {
        if (t->deleting || t->due > now) {
            continue;
        }
        struct store_compare cmp[2] = {
            {.target = STORE_CMP_CREATE,
             .result = STORE_CMP_EQUAL,
             .key = t->key,
             .key_len = (uint32_t)t->key_len,
             .number = t->create_rev},
            {.target = STORE_CMP_LEASE,
             .result = STORE_CMP_EQUAL,
             .key = t->key,
             .key_len = (uint32_t)t->key_len,
             .number = 0},
        };
        struct store_op del = {.type = STORE_OP_DELETE};
        del.u.del.key = t->key;
        del.u.del.key_len = (uint32_t)t->key_len;
        struct store_txn_req txn = {
            .compares = cmp, .compares_count = 2, .success = &del, .success_count = 1};
        if (srv_kv_propose_txn(ls->l->kv, &txn, tomb_deleted, t, NULL, 0) != 0) {
            return; /* next tick */
        }
        t->deleting = true;
    }
}

/*
 * The keeper is about to revoke expired session id (leader only): its lock entries that
 * hold a grant and have a delay become tombstones first, in one txn of one nested txn per
 * entry (lease(entry) == id and the entry's fence → put it with lease 0, value kept).
 */
static void lk_expiring(void *data, int64_t id)
{
    struct latch__locks *ls = data;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_lease lease;
    struct store_kv *keys = NULL;
    size_t n = 0;
    struct store_reader *r = srv_node_reader(ls->l->node);
    int rc = store_lease_get(r, id, true, &a, &lease, &keys, &n);
    if (rc != 0 || n == 0) {
        latch_arena_close(&a);
        return;
    }
    struct store_op *ops = latch_arena_calloc(&a, n, sizeof(*ops));
    size_t count = 0;
    static const uint8_t shared_marker[1] = {LATCH__KIND_SHARED};
    for (size_t i = 0; ops != NULL && i < n && count < STORE_TXN_OPS_MAX; i++) {
        const struct store_kv *k = &keys[i];
        size_t plen = entry_prefix_len(k->key, k->key_len);
        if (plen <= sizeof(LK_LOCK_PREFIX) || k->value_len != LK_DELAY_BYTES ||
            memcmp(k->key, LK_LOCK_PREFIX, sizeof(LK_LOCK_PREFIX)) != 0) {
            continue;
        }
        /* Only a current grant with a delay (the txn checks the grant again). */
        struct lk_view v;
        if (view_read(ls, k->key, plen, 0, 0, false, &a, &v) != 0) {
            continue;
        }
        size_t at = view_find(&v, k->create_revision);
        if (!view_holds(&v, k->create_revision) || v.kvs[at].value_len != LK_DELAY_BYTES ||
            get_le64(v.kvs[at].value) == 0) {
            continue;
        }
        uint8_t *end = latch_arena_alloc(&a, plen);
        struct store_compare *cmp = latch_arena_calloc(&a, 2, sizeof(*cmp));
        struct store_op *put = latch_arena_calloc(&a, 1, sizeof(*put));
        struct store_txn_req *t = latch_arena_calloc(&a, 1, sizeof(*t));
        if (end == NULL || cmp == NULL || put == NULL || t == NULL) {
            break;
        }
        latch__queue_end(k->key, plen, end);
        cmp[0] = (struct store_compare){.target = STORE_CMP_LEASE,
                                        .result = STORE_CMP_EQUAL,
                                        .key = k->key,
                                        .key_len = k->key_len,
                                        .number = id};
        cmp[1] = (struct store_compare){.target = STORE_CMP_FENCE,
                                        .result = STORE_CMP_EQUAL,
                                        .key = k->key,
                                        .key_len = (uint32_t)plen,
                                        .range_end = end,
                                        .range_end_len = (uint32_t)plen,
                                        .number = k->create_revision,
                                        .value = shared_marker,
                                        .value_len = 1};
        put->type = STORE_OP_PUT;
        put->u.put.key = k->key;
        put->u.put.key_len = k->key_len;
        put->u.put.ignore_value = true;
        put->u.put.lease = 0;
        *t = (struct store_txn_req){
            .compares = cmp, .compares_count = 2, .success = put, .success_count = 1};
        ops[count].type = STORE_OP_TXN;
        ops[count].u.txn = t;
        count++;
    }
    if (count > 0) {
        ls->tomb_watch_until = uv_now(ls->l->loop) + LK_TOMB_WATCH_MS;
        struct store_txn_req t = {.success = ops, .success_count = count};
        char why[STORE_ERRMSG_BYTES];
        why[0] = '\0';
        rc = srv_kv_propose_txn(ls->l->kv, &t, nobody_done, NULL, why, sizeof(why));
        if (rc != 0) {
            latch_log(LATCH_LOG_WARN, "latch: lock-delay of session %016" PRIx64 " lost: %s %s",
                      (uint64_t)id, latch_strerror(rc), why);
        }
    }
    latch_arena_close(&a);
}

/* ---- the keeper's tick: deadlines, the leader's tombstones ---------------------------- */

static void lk_tick(void *data, bool leader)
{
    struct latch__locks *ls = data;
    uint64_t now = uv_now(ls->l->loop);
    if (leader && !ls->leader) {
        ls->leader = true;
        ls->tomb_watch_until = now + LK_TOMB_WATCH_MS;
        tomb_scan(ls);
    } else if (!leader && ls->leader) {
        ls->leader = false;
        tomb_clear(ls);
    }
    if (leader) {
        tomb_expire(ls, now);
    }
    for (struct lk_op *op = ls->ops, *next = NULL; op != NULL; op = next) {
        next = op->next;
        if (op->waiting && op->deadline != 0 && op->deadline <= now) {
            op_cleanup(ls, op);
            lk_failf(op->call, API_GRPC_STATUS_DEADLINE_EXCEEDED, "lock wait timed out");
            op_free(op);
        }
    }
}

/* ---- the applied hook ----------------------------------------------------------------- */

/* Marks the queues and observers of prefix touched. */
static void touch(struct latch__locks *ls, const uint8_t *prefix, size_t len)
{
    struct lk_queue *q = queue_find(ls, prefix, len);
    if (q != NULL) {
        q->touched = true;
    }
    for (struct lk_obs *o = ls->observers; o != NULL; o = o->next) {
        if (o->prefix_len == len && memcmp(o->prefix, prefix, len) == 0) {
            o->touched = true;
        }
    }
}

static void touch_all(struct latch__locks *ls)
{
    for (struct lk_queue *q = ls->queues; q != NULL; q = q->next) {
        q->touched = true;
    }
    for (struct lk_obs *o = ls->observers; o != NULL; o = o->next) {
        o->touched = true;
    }
}

/* Answers the waiters of q that now hold. */
static void queue_check(struct latch__locks *ls, struct lk_queue *q)
{
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct lk_view v;
    int rc = view_read(ls, q->prefix, q->prefix_len, 0, 0, true, &a, &v);
    if (rc == 0) {
        /* Each waiter is answered when it holds or its entry is gone; op_check may free q
         * with its last waiter, so the next one is taken first. */
        struct lk_op *op = q->waiters;
        bool last = false;
        while (op != NULL && !last) {
            struct lk_op *next = op->qnext;
            last = next == NULL;
            (void)op_check(ls, op, &v);
            op = next;
        }
    } else {
        latch_log(LATCH_LOG_WARN, "latch: cannot read a lock queue: %s", latch_strerror(rc));
    }
    latch_arena_close(&a);
}

void latch__lock_applied(struct srv_latch *l, int64_t revision)
{
    struct latch__locks *ls = l->locks;
    if (ls == NULL) {
        return;
    }
    if (revision <= ls->seen_rev) {
        return;
    }
    bool tombs = ls->leader && uv_now(l->loop) < ls->tomb_watch_until;
    if (ls->queues == NULL && ls->observers == NULL && !tombs) {
        ls->seen_rev = revision;
        return;
    }
    /* What the batches since the last look changed among the reserved keys (the first
     * call has no last look: everything is re-checked). */
    struct latch_arena a;
    latch_arena_init(&a, 0);
    bool all = ls->seen_rev == 0;
    int64_t start = ls->seen_rev + 1;
    while (!all && start <= revision) {
        struct store_history_req q = {.start_revision = start,
                                      .key = LK_RESERVED,
                                      .key_len = sizeof(LK_RESERVED),
                                      .range_end = LK_RESERVED_END,
                                      .range_end_len = sizeof(LK_RESERVED_END),
                                      .max_events = LK_HISTORY_EVENTS,
                                      .max_bytes = (size_t)4 << 20};
        struct store_event *ev = NULL;
        size_t n = 0;
        int64_t next = 0;
        latch_arena_reset(&a);
        int rc = store_history(srv_node_reader(l->node), &q, &a, &ev, &n, &next);
        if (rc != 0) {
            all = true; /* compacted meanwhile, or a read error: re-check everything */
            break;
        }
        for (size_t i = 0; i < n; i++) {
            size_t plen = entry_prefix_len(ev[i].kv.key, ev[i].kv.key_len);
            if (plen == 0) {
                continue;
            }
            touch(ls, ev[i].kv.key, plen);
            if (tombs && ev[i].type == STORE_EVENT_PUT) {
                tomb_consider(ls, &ev[i].kv);
            }
        }
        if (next <= start) {
            break;
        }
        start = next;
    }
    latch_arena_close(&a);
    if (all) {
        touch_all(ls);
        if (tombs) {
            tomb_scan(ls);
        }
    }
    ls->seen_rev = start - 1 > revision ? start - 1 : revision;

    for (struct lk_queue *qu = ls->queues, *nq = NULL; qu != NULL; qu = nq) {
        nq = qu->next; /* queue_check may free qu (and no other queue) */
        if (qu->touched) {
            qu->touched = false;
            queue_check(ls, qu);
        }
    }
    for (struct lk_obs *o = ls->observers, *no = NULL; o != NULL; o = no) {
        no = o->next;
        if (o->touched) {
            o->touched = false;
            if (!o->reading && !o->paused && o->started) {
                (void)obs_feed(o);
            }
        }
    }
}

/* ---- the service ---------------------------------------------------------------------- */

int latch__lock_register(struct api_server *s, struct srv_latch *l)
{
    struct latch__locks *ls = calloc(1, sizeof(*ls));
    if (ls == NULL) {
        return LATCH_ENOMEM;
    }
    ls->l = l;
    struct store_status st;
    if (store_status(srv_node_reader(l->node), &st) == 0) {
        ls->seen_rev = st.revision;
    }
    static const struct {
        const char *path;
        api_unary_fn fn;
    } methods[] = {
        {"/latch.v1.Latch/Acquire", m_acquire},        {"/latch.v1.Latch/Release", m_release},
        {"/latch.v1.Latch/Holder", m_holder},          {"/latch.v1.Latch/Waiters", m_waiters},
        {"/latch.v1.Latch/CheckFence", m_check_fence}, {"/latch.v1.Latch/Campaign", m_campaign},
        {"/latch.v1.Latch/Proclaim", m_proclaim},      {"/latch.v1.Latch/Resign", m_resign},
        {"/latch.v1.Latch/Leader", m_leader},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && rc == 0; i++) {
        rc = api_server_register_unary(s, methods[i].path, methods[i].fn, l);
    }
    if (rc == 0) {
        rc = api_server_register_server_stream(s, "/latch.v1.Latch/Observe", m_observe, l);
    }
    if (rc != 0) {
        free(ls);
        return rc;
    }
    l->locks = ls;
    if (l->keeper != NULL) {
        srv_lease_keeper_hooks(l->keeper, lk_expiring, lk_tick, ls);
    }
    return 0;
}

void latch__lock_free(struct srv_latch *l)
{
    struct latch__locks *ls = l != NULL ? l->locks : NULL;
    if (ls == NULL) {
        return;
    }
    while (ls->ops != NULL) {
        struct lk_op *op = ls->ops;
        ls->ops = op->next;
        if (op->q != NULL) {
            queue_remove(ls, op);
        }
        op->ls = NULL;
        op->prev = op->next = NULL;
        if (op->waiting) {
            lk_failf(op->call, API_GRPC_STATUS_UNAVAILABLE, "server closing");
            op_free(op);
        } /* else its proposal's or read's callback answers and frees it */
    }
    while (ls->observers != NULL) {
        struct lk_obs *o = ls->observers;
        ls->observers = o->next;
        o->ls = NULL;
        if (!o->reading) {
            (void)api_call_finish(o->call, API_GRPC_STATUS_UNAVAILABLE, "latch: server closing");
            obs_free(o);
        }
    }
    tomb_clear(ls);
    if (l->keeper != NULL) {
        srv_lease_keeper_hooks(l->keeper, NULL, NULL, NULL);
    }
    free(ls);
    l->locks = NULL;
}
