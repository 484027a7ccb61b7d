/*
 * lease.c — the lease keeper (see lease.h).
 *
 * Leases live in an open-addressing hash table keyed by id (lease ids are > 0; slot id 0 is
 * empty, -1 a tombstone, so deleting while iterating is safe; the table is rebuilt when
 * tombstones pile up). Proposals in flight (revokes, checkpoints) and ReadIndex waits are
 * heap objects that name their lease by id, never by slot: the slot may be gone when the node
 * answers. They point at the keeper, which is freed only after the node has closed (lease.h).
 */
#include "lease.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "latch_log.h"
#include "store.h"

#define LK_EMPTY     0
#define LK_TOMBSTONE (-1)
#define LK_CAP_MIN   64u
#define LK_LIST_PAGE 1024u

struct lk_entry {
    int64_t id; /* > 0; LK_EMPTY or LK_TOMBSTONE for a free slot */
    int64_t ttl;
    int64_t ckpt;      /* the store's remaining TTL (0: never checkpointed: full TTL) */
    uint64_t deadline; /* loop ms; meaningful on the leader only */
    uint64_t ckpt_at;  /* loop ms of the last renewal or checkpoint */
    uint32_t ckpt_inflight;
    uint32_t seen; /* re-read epoch */
    bool revoking; /* an expiry revoke is in flight */
};

struct srv_lease_keeper {
    uv_loop_t *loop;
    struct srv_node *node;
    uv_timer_t timer;
    uint32_t tick_ms, resync_ms, checkpoint_ms, checkpoint_batch, promote_extend_ms;

    struct lk_entry *slots;
    size_t cap;   /* power of two */
    size_t count; /* live entries */
    size_t tombs;

    bool stopped;
    bool leader;
    bool ckpt_busy;   /* a periodic checkpoint is in flight */
    bool need_resync; /* the last re-read failed */
    uint32_t epoch;
    uint32_t revokes_inflight;
    uint64_t synced_at;
    raft_index synced_applied;

    void (*hook_expiring)(void *data, int64_t id); /* srv_lease_keeper_hooks */
    void (*hook_tick)(void *data, bool leader);
    void *hook_data;
};

/* ---- table ------------------------------------------------------------------------- */

static size_t lk_hash(int64_t id, size_t cap)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static struct lk_entry *lk_find(struct srv_lease_keeper *k, int64_t id)
{
    if (k->cap == 0 || id <= 0) {
        return NULL;
    }
    for (size_t i = lk_hash(id, k->cap), n = 0; n < k->cap; i = (i + 1) & (k->cap - 1), n++) {
        if (k->slots[i].id == id) {
            return &k->slots[i];
        }
        if (k->slots[i].id == LK_EMPTY) {
            return NULL;
        }
    }
    return NULL;
}

static int lk_rehash(struct srv_lease_keeper *k, size_t cap)
{
    struct lk_entry *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < k->cap; i++) {
        if (k->slots[i].id > 0) {
            size_t j = lk_hash(k->slots[i].id, cap);
            while (slots[j].id != LK_EMPTY) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = k->slots[i];
        }
    }
    free(k->slots);
    k->slots = slots;
    k->cap = cap;
    k->tombs = 0;
    return 0;
}

/* A new entry for id (not present), zeroed but for the id. NULL: out of memory. */
static struct lk_entry *lk_insert(struct srv_lease_keeper *k, int64_t id)
{
    if ((k->count + k->tombs + 1) * 4 > k->cap * 3) {
        size_t cap = k->cap == 0 ? LK_CAP_MIN : k->cap;
        while ((k->count + 1) * 2 > cap) {
            cap *= 2;
        }
        if (lk_rehash(k, cap) != 0) {
            return NULL;
        }
    }
    size_t i = lk_hash(id, k->cap);
    while (k->slots[i].id > 0) {
        i = (i + 1) & (k->cap - 1);
    }
    if (k->slots[i].id == LK_TOMBSTONE) {
        k->tombs--;
    }
    memset(&k->slots[i], 0, sizeof(k->slots[i]));
    k->slots[i].id = id;
    k->count++;
    return &k->slots[i];
}

static void lk_delete(struct srv_lease_keeper *k, struct lk_entry *e)
{
    e->id = LK_TOMBSTONE;
    k->count--;
    k->tombs++;
}

static void lk_clear(struct srv_lease_keeper *k)
{
    free(k->slots);
    k->slots = NULL;
    k->cap = k->count = k->tombs = 0;
}

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t now_ms(const struct srv_lease_keeper *k)
{
    return uv_now(k->loop);
}

static uint64_t secs_ms(int64_t s)
{
    return s > 0 ? (uint64_t)s * 1000u : 0;
}

/* The TTL a lease has left by its last checkpoint. */
static int64_t base_ttl(const struct lk_entry *e)
{
    return e->ckpt > 0 && e->ckpt < e->ttl ? e->ckpt : e->ttl;
}

static void entry_load(struct lk_entry *e, const struct store_lease *l, uint64_t now)
{
    e->ttl = l->ttl;
    e->ckpt = l->remaining_ttl;
    e->deadline = now + secs_ms(base_ttl(e));
    e->ckpt_at = now;
}

/*
 * Re-reads the store's leases. reset (promotion): every deadline becomes now + remaining TTL
 * as checkpointed + promote_extend_ms, at most now + the full TTL. Otherwise only new leases get a
 * deadline. Leases missing from the store are forgotten. Returns 0 or a store error (the table is
 * then as it was for the pages not read; the sweep is skipped).
 */
static int resync(struct srv_lease_keeper *k, bool reset)
{
    struct store_reader *r = srv_node_reader(k->node);
    uint64_t now = now_ms(k);
    struct latch_arena a;
    latch_arena_init(&a, 0);
    bool pinned = store_reader_pin(r) == 0;
    uint32_t epoch = ++k->epoch;
    int64_t after = 0;
    int rc = 0;
    for (;;) {
        struct store_lease *ls = NULL;
        size_t n = 0;
        latch_arena_reset(&a);
        rc = store_lease_list(r, after, LK_LIST_PAGE, &a, &ls, &n);
        if (rc != 0 || n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            struct lk_entry *e = lk_find(k, ls[i].id);
            if (e == NULL) {
                e = lk_insert(k, ls[i].id);
                if (e == NULL) {
                    rc = LATCH_ENOMEM;
                    break;
                }
                entry_load(e, &ls[i], now);
            } else {
                e->ttl = ls[i].ttl;
                e->ckpt = ls[i].remaining_ttl;
                if (reset) {
                    e->deadline = now + secs_ms(base_ttl(e));
                    e->ckpt_at = now;
                    e->revoking = false;
                }
            }
            if (reset) {
                /* The extension covers a keep-alive the old leader answered just before it
                 * lost office; it never takes a lease past a full TTL from now, which is
                 * what any keep-alive promised (so TimeToLive never shows more than TTL). */
                uint64_t cap = now + secs_ms(e->ttl);
                e->deadline += k->promote_extend_ms;
                e->deadline = e->deadline < cap ? e->deadline : cap;
            }
            e->seen = epoch;
            after = ls[i].id;
        }
        if (rc != 0 || n < LK_LIST_PAGE) {
            break;
        }
    }
    if (pinned) {
        store_reader_unpin(r);
    }
    latch_arena_close(&a);
    if (rc != 0) {
        latch_log(LATCH_LOG_WARN, "lease: cannot read the leases: %s", latch_strerror(rc));
        k->need_resync = true;
        return rc;
    }
    for (size_t i = 0; i < k->cap; i++) {
        struct lk_entry *e = &k->slots[i];
        if (e->id > 0 && e->seen != epoch) {
            lk_delete(k, e);
        }
    }
    if (k->tombs * 4 > k->cap && k->cap > 0) {
        (void)lk_rehash(k, k->cap); /* out of memory: keep the tombstones */
    }
    k->synced_at = now;
    k->need_resync = false;
    return 0;
}

/* Follows the node's role: a promotion re-reads every lease with fresh deadlines, a
 * demotion forgets them. Returns 0 when this node leads, else LATCH_ENOLEADER /
 * LATCH_ENOTLEADER. */
static int sync_role(struct srv_lease_keeper *k)
{
    struct srv_node_status st;
    srv_node_status(k->node, &st);
    bool leader = st.role == RAFT_LEADER && st.failed == 0;
    if (leader && !k->leader) {
        latch_log(LATCH_LOG_INFO, "lease: leader now: deadlines reset from the checkpoints");
        k->leader = true;
        k->synced_applied = st.applied;
        (void)resync(k, true); /* on failure the next tick re-reads (need_resync) */
    } else if (!leader && k->leader) {
        k->leader = false;
        lk_clear(k);
    }
    if (leader) {
        return 0;
    }
    return st.leader == RAFT_NONE ? LATCH_ENOLEADER : LATCH_ENOTLEADER;
}

/* Proposes c with cb/data; returns 0 or the error (cb not called). */
static int propose_cmd(struct srv_lease_keeper *k,
                       const struct store_cmd *c,
                       srv_node_propose_cb cb,
                       void *data)
{
    size_t size = store_cmd_size(c);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    size_t len = 0;
    int rc = store_cmd_encode(c, buf, size, &len);
    if (rc == 0) {
        rc = srv_node_propose(k->node, buf, len, cb, data);
    }
    free(buf);
    return rc;
}

/* ---- expiry ------------------------------------------------------------------------ */

struct revoke_op {
    struct srv_lease_keeper *k;
    int64_t id;
};

static void revoke_done(void *data, int err, const struct store_result *res)
{
    struct revoke_op *op = data;
    struct srv_lease_keeper *k = op->k;
    k->revokes_inflight--;
    struct lk_entry *e = lk_find(k, op->id);
    if (err == 0 && (res->err == 0 || res->err == LATCH_ENOTFOUND)) {
        if (res->err == 0) {
            latch_log(LATCH_LOG_DEBUG, "lease: %016llx expired, %lld keys deleted",
                      (unsigned long long)op->id, (long long)res->u.lease_revoke.deleted);
        }
        if (e != NULL) {
            lk_delete(k, e);
        }
    } else if (e != NULL) {
        e->revoking = false; /* retried next tick while still leader and expired */
        latch_log(LATCH_LOG_INFO, "lease: revoking expired %016llx failed: %s",
                  (unsigned long long)op->id, latch_strerror(err != 0 ? err : res->err));
    }
    free(op);
}

static void expire(struct srv_lease_keeper *k, uint64_t now)
{
    for (size_t i = 0; i < k->cap && k->revokes_inflight < SRV_LEASE_REVOKES_INFLIGHT; i++) {
        struct lk_entry *e = &k->slots[i];
        if (e->id <= 0 || e->revoking || e->deadline > now) {
            continue;
        }
        struct revoke_op *op = malloc(sizeof(*op));
        if (op == NULL) {
            return;
        }
        op->k = k;
        op->id = e->id;
        if (k->hook_expiring != NULL) {
            k->hook_expiring(k->hook_data, e->id); /* proposes first: applied before */
        }
        struct store_cmd c = {.type = STORE_CMD_LEASE_REVOKE};
        c.u.lease_revoke.id = e->id;
        int rc = propose_cmd(k, &c, revoke_done, op);
        if (rc != 0) {
            free(op);
            return; /* next tick */
        }
        e->revoking = true;
        k->revokes_inflight++;
    }
}

/* ---- checkpoints ------------------------------------------------------------------- */

struct ckpt_op {
    struct srv_lease_keeper *k;
    bool periodic;
    srv_lease_renew_cb cb; /* a renewal's reset: answered when applied */
    void *data;
    int64_t ttl;
    size_t n;
    struct store_lease_checkpoint items[];
};

static void ckpt_done(void *data, int err, const struct store_result *res)
{
    struct ckpt_op *op = data;
    struct srv_lease_keeper *k = op->k;
    bool ok = err == 0 && res->err == 0;
    if (op->periodic) {
        k->ckpt_busy = false;
    }
    for (size_t i = 0; i < op->n; i++) {
        struct lk_entry *e = lk_find(k, op->items[i].id);
        if (e == NULL) {
            continue;
        }
        if (e->ckpt_inflight > 0) {
            e->ckpt_inflight--;
        }
        if (ok) {
            e->ckpt = op->items[i].remaining_ttl;
        }
    }
    if (op->cb != NULL) {
        op->cb(op->data, err != 0 ? err : res->err, op->ttl);
    }
    free(op);
}

static void checkpoint(struct srv_lease_keeper *k, uint64_t now)
{
    if (k->ckpt_busy || k->count == 0) {
        return;
    }
    size_t max = k->checkpoint_batch;
    struct ckpt_op *op = malloc(sizeof(*op) + max * sizeof(op->items[0]));
    if (op == NULL) {
        return;
    }
    memset(op, 0, sizeof(*op));
    op->k = k;
    op->periodic = true;
    for (size_t i = 0; i < k->cap && op->n < max; i++) {
        struct lk_entry *e = &k->slots[i];
        if (e->id <= 0 || e->revoking || e->ckpt_inflight > 0 || e->deadline <= now) {
            continue;
        }
        uint64_t every = secs_ms(e->ttl) / 2;
        every = every < k->checkpoint_ms ? every : k->checkpoint_ms;
        if (now - e->ckpt_at < every) {
            continue;
        }
        e->ckpt_at = now;
        int64_t left = (int64_t)((e->deadline - now + 999u) / 1000u); /* rounded up */
        if (left >= base_ttl(e)) {
            continue; /* the stored checkpoint is not above the truth */
        }
        op->items[op->n].id = e->id;
        op->items[op->n].remaining_ttl = left;
        op->n++;
    }
    if (op->n == 0) {
        free(op);
        return;
    }
    struct store_cmd c = {.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = op->items;
    c.u.lease_checkpoint.count = op->n;
    if (propose_cmd(k, &c, ckpt_done, op) != 0) {
        free(op); /* the leases are due again next tick: ckpt_at is only advisory */
        return;
    }
    for (size_t i = 0; i < op->n; i++) {
        struct lk_entry *e = lk_find(k, op->items[i].id);
        e->ckpt_inflight++;
    }
    k->ckpt_busy = true;
}

/* ---- the timer --------------------------------------------------------------------- */

static void tick(uv_timer_t *t)
{
    struct srv_lease_keeper *k = t->data;
    if (k->stopped) {
        return;
    }
    bool leader = sync_role(k) == 0;
    if (k->hook_tick != NULL) {
        k->hook_tick(k->hook_data, leader);
    }
    if (!leader) {
        return;
    }
    uint64_t now = now_ms(k);
    struct srv_node_status st;
    srv_node_status(k->node, &st);
    if ((k->need_resync || st.applied != k->synced_applied) && now - k->synced_at >= k->resync_ms) {
        k->synced_applied = st.applied;
        (void)resync(k, false);
    }
    expire(k, now);
    checkpoint(k, now);
}

int srv_lease_keeper_new(uv_loop_t *loop,
                         const struct srv_lease_config *cfg,
                         struct srv_lease_keeper **out)
{
    if (cfg == NULL || cfg->node == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_lease_keeper *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return LATCH_ENOMEM;
    }
    k->loop = loop;
    k->node = cfg->node;
    k->tick_ms = cfg->tick_ms != 0 ? cfg->tick_ms : SRV_LEASE_TICK_MS_DEFAULT;
    k->resync_ms = cfg->resync_ms != 0 ? cfg->resync_ms : SRV_LEASE_RESYNC_MS_DEFAULT;
    k->checkpoint_ms =
        cfg->checkpoint_ms != 0 ? cfg->checkpoint_ms : SRV_LEASE_CHECKPOINT_MS_DEFAULT;
    k->checkpoint_batch =
        cfg->checkpoint_batch != 0 ? cfg->checkpoint_batch : SRV_LEASE_CHECKPOINT_BATCH_DEFAULT;
    k->promote_extend_ms = cfg->promote_extend_ms;
    if (uv_timer_init(loop, &k->timer) != 0) {
        free(k);
        return LATCH_EINVAL;
    }
    k->timer.data = k;
    uv_timer_start(&k->timer, tick, k->tick_ms, k->tick_ms);
    *out = k;
    return 0;
}

void srv_lease_keeper_stop(struct srv_lease_keeper *k)
{
    if (k == NULL || k->stopped) {
        return;
    }
    k->stopped = true;
    uv_close((uv_handle_t *)&k->timer, NULL);
}

void srv_lease_keeper_free(struct srv_lease_keeper *k)
{
    if (k == NULL) {
        return;
    }
    lk_clear(k);
    free(k);
}

/* ---- the service's calls ----------------------------------------------------------- */

/* Finds id, reading it from the local store when the keeper has not seen it. Returns 0
 * (*out set), LATCH_ENOTFOUND, LATCH_ENOMEM or a store error. */
static int lookup(struct srv_lease_keeper *k, int64_t id, struct lk_entry **out)
{
    if (id <= 0) {
        return LATCH_ENOTFOUND;
    }
    /* The store decides whether the lease exists: a revoke proposed through another member
     * reaches this tracker only at the next re-sync, and renewing a lease the store no
     * longer has would answer a keep-alive with a TTL for a dead lease. */
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_lease l;
    int rc = store_lease_get(srv_node_reader(k->node), id, false, &a, &l, NULL, NULL);
    latch_arena_close(&a);
    struct lk_entry *e = lk_find(k, id);
    if (rc == LATCH_ENOTFOUND && e != NULL) {
        lk_delete(k, e); /* revoked or expired through another member */
    }
    if (rc != 0) {
        return rc;
    }
    if (e != NULL) {
        *out = e;
        return 0;
    }
    e = lk_insert(k, id);
    if (e == NULL) {
        return LATCH_ENOMEM;
    }
    entry_load(e, &l, now_ms(k));
    e->seen = k->epoch;
    *out = e;
    return 0;
}

static bool expired(const struct srv_lease_keeper *k, const struct lk_entry *e)
{
    return e->revoking || e->deadline <= now_ms(k);
}

/* Renews a known lease: 0 with *ttl_out, SRV_LEASE_PENDING, or an error. */
static int renew_entry(struct srv_lease_keeper *k,
                       struct lk_entry *e,
                       srv_lease_renew_cb cb,
                       void *data,
                       int64_t *ttl_out)
{
    if (expired(k, e)) {
        *ttl_out = 0; /* the tick revokes it */
        return 0;
    }
    uint64_t now = now_ms(k);
    e->deadline = now + secs_ms(e->ttl);
    e->ckpt_at = now;
    if (e->ckpt == 0 && e->ckpt_inflight == 0) {
        *ttl_out = e->ttl;
        return 0;
    }
    /* The stored checkpoint is below the full TTL (or about to be): reset it to 0 first. */
    struct ckpt_op *op = calloc(1, sizeof(*op) + sizeof(op->items[0]));
    if (op == NULL) {
        return LATCH_ENOMEM;
    }
    op->k = k;
    op->cb = cb;
    op->data = data;
    op->ttl = e->ttl;
    op->n = 1;
    op->items[0].id = e->id;
    op->items[0].remaining_ttl = 0;
    struct store_cmd c = {.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = op->items;
    c.u.lease_checkpoint.count = 1;
    int rc = propose_cmd(k, &c, ckpt_done, op);
    if (rc != 0) {
        free(op);
        return rc;
    }
    e->ckpt_inflight++;
    return SRV_LEASE_PENDING;
}

struct renew_wait {
    struct srv_lease_keeper *k;
    int64_t id;
    srv_lease_renew_cb cb;
    void *data;
};

static void renew_read_done(void *data, int err)
{
    struct renew_wait *w = data;
    struct srv_lease_keeper *k = w->k;
    srv_lease_renew_cb cb = w->cb;
    void *cb_data = w->data;
    int64_t id = w->id;
    free(w);
    if (err == 0 && k->stopped) {
        err = LATCH_ESHUTDOWN;
    }
    if (err == 0) {
        err = sync_role(k);
    }
    if (err != 0) {
        cb(cb_data, err, 0);
        return;
    }
    struct lk_entry *e = NULL;
    int64_t ttl = 0;
    int rc = lookup(k, id, &e);
    if (rc == 0) {
        rc = renew_entry(k, e, cb, cb_data, &ttl);
    } else if (rc == LATCH_ENOTFOUND) {
        rc = 0; /* ttl 0 */
    }
    if (rc != SRV_LEASE_PENDING) {
        cb(cb_data, rc, ttl);
    }
}

int srv_lease_keeper_renew(
    struct srv_lease_keeper *k, int64_t id, srv_lease_renew_cb cb, void *data, int64_t *ttl_out)
{
    *ttl_out = 0;
    if (k->stopped) {
        return LATCH_ESHUTDOWN;
    }
    int rc = sync_role(k);
    if (rc != 0) {
        return rc;
    }
    struct lk_entry *e = NULL;
    rc = lookup(k, id, &e);
    if (rc == 0) {
        return renew_entry(k, e, cb, data, ttl_out);
    }
    if (rc != LATCH_ENOTFOUND) {
        return rc;
    }
    if (id <= 0) {
        return 0;
    }
    /* Not in the local store: it may be committed but not applied here yet. */
    struct renew_wait *w = malloc(sizeof(*w));
    if (w == NULL) {
        return LATCH_ENOMEM;
    }
    *w = (struct renew_wait){.k = k, .id = id, .cb = cb, .data = data};
    rc = srv_node_read_index(k->node, renew_read_done, w);
    if (rc != 0) {
        free(w);
        return rc;
    }
    return SRV_LEASE_PENDING;
}

int srv_lease_keeper_remaining(struct srv_lease_keeper *k, int64_t id, int64_t *ttl_out)
{
    *ttl_out = 0;
    if (k->stopped) {
        return LATCH_ESHUTDOWN;
    }
    int rc = sync_role(k);
    if (rc != 0) {
        return rc;
    }
    struct lk_entry *e = NULL;
    rc = lookup(k, id, &e);
    if (rc != 0) {
        return rc;
    }
    if (e->revoking) {
        return LATCH_ENOTFOUND;
    }
    uint64_t now = now_ms(k);
    *ttl_out = e->deadline > now ? (int64_t)((e->deadline - now) / 1000u) : 0;
    return 0;
}

void srv_lease_keeper_granted(struct srv_lease_keeper *k, int64_t id, int64_t ttl)
{
    if (k == NULL || k->stopped || sync_role(k) != 0 || lk_find(k, id) != NULL) {
        return;
    }
    struct lk_entry *e = lk_insert(k, id);
    if (e == NULL) {
        return; /* the next re-read finds it */
    }
    struct store_lease l = {.id = id, .ttl = ttl};
    entry_load(e, &l, now_ms(k));
    e->seen = k->epoch;
}

void srv_lease_keeper_revoked(struct srv_lease_keeper *k, int64_t id)
{
    if (k == NULL) {
        return;
    }
    struct lk_entry *e = lk_find(k, id);
    if (e != NULL) {
        lk_delete(k, e); /* operations in flight look it up by id and find it gone */
    }
}

void srv_lease_keeper_hooks(struct srv_lease_keeper *k,
                            void (*expiring)(void *data, int64_t id),
                            void (*on_tick)(void *data, bool leader),
                            void *data)
{
    k->hook_expiring = expiring;
    k->hook_tick = on_tick;
    k->hook_data = data;
}

size_t srv_lease_keeper_count(const struct srv_lease_keeper *k)
{
    return k->count;
}
