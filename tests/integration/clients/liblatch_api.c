/*
 * liblatch_api.c ENDPOINTS — liblatch's async API on a loop of its own against a running
 * cluster (test_liblatch_api.py starts one): multi (atomic success, a failing op applies
 * nothing), fenced writes and CheckFence with a lock's token, lock try/holders/waiters, an
 * election with Proclaim seen by Observe, a watch's events and its cancel, and a session's
 * lost callback after its lease is revoked through etcd's Lease service (latch_raw_unary).
 * Prints "ok - ..." / "FAIL - ..." lines; exits 1 on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latch/latch.h"

static uv_loop_t loop;
static int failures;

static bool check(const char *name, bool cond, const char *detail)
{
    printf("%s - %s", cond ? "ok" : "FAIL", name);
    if (!cond && detail != NULL && detail[0] != '\0') {
        printf(" (%s)", detail);
    }
    printf("\n");
    fflush(stdout);
    if (!cond) {
        failures++;
    }
    return cond;
}

static void on_result(struct latch_result *r, void *data)
{
    *(struct latch_result **)data = r;
}

/* Runs the loop until the call that reported into *slot is done (bounded by its deadline). */
static struct latch_result *await(int rc, struct latch_result **slot)
{
    if (rc != LATCH_OK) {
        *slot = NULL;
        return NULL;
    }
    while (*slot == NULL) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    return *slot;
}

#define CALL(expr_with_cb) (r = NULL, await((expr_with_cb), &r))
#define MSG(r)             ((r) != NULL ? (r)->message : "not started")

static void spin_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop for ms milliseconds. */
static void spin(uint64_t ms)
{
    uv_timer_t t;
    bool fired = false;
    uv_timer_init(&loop, &t);
    t.data = &fired;
    uv_timer_start(&t, spin_cb, ms, 0);
    while (!fired) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* the close completes before t goes away */
}

struct events {
    int n;
    char paths[16][64];
    int64_t revs[16];
    int ended;
    int end_err;
    int leaders;
    char values[16][32];
};

static void on_event(struct latch_watch *w, const struct latch_event *ev, void *data)
{
    (void)w;
    struct events *e = data;
    if (e->n < 16) {
        snprintf(e->paths[e->n], sizeof(e->paths[0]), "%s", ev->path);
        e->revs[e->n] = ev->revision;
    }
    e->n++;
}

static void on_leader(struct latch_watch *w, const struct latch_result *r, void *data)
{
    (void)w;
    struct events *e = data;
    if (e->leaders < 16) {
        snprintf(e->values[e->leaders], sizeof(e->values[0]), "%.*s", (int)r->value_len,
                 (const char *)r->value);
    }
    e->leaders++;
}

static void on_end(struct latch_watch *w, int err, const char *message, void *data)
{
    (void)w;
    (void)message;
    struct events *e = data;
    e->ended++;
    e->end_err = err;
}

static int lost_count;
static void on_lost(struct latch_session *s, int err, const char *reason, void *data)
{
    (void)s;
    (void)reason;
    (void)data;
    if (err == LATCH_ESESSIONLOST) {
        lost_count++;
    }
}

static void closed(void *data)
{
    *(bool *)data = true;
}

/* etcd LeaseRevokeRequest{ID = id}, packed by hand: field 1, varint. */
static size_t pack_revoke(uint8_t *buf, int64_t id)
{
    size_t n = 0;
    uint64_t v = (uint64_t)id;
    buf[n++] = 0x08;
    while (v >= 0x80) {
        buf[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[n++] = (uint8_t)v;
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ENDPOINTS\n", argv[0]);
        return 2;
    }
    uv_loop_init(&loop);
    struct latch_options o = {.endpoints = argv[1]};
    struct latch_client *c;
    char why[256];
    if (latch_client_new(&loop, &o, &c, why, sizeof(why)) != LATCH_OK) {
        fprintf(stderr, "client: %s\n", why);
        return 1;
    }
    struct latch_result *r;

    /* multi */
    CALL(latch_delete(c, "/m", 0, LATCH_RECURSIVE, NULL, on_result, &r));
    latch_result_free(r);
    struct latch_op ops[] = {
        {.kind = LATCH_OP_CREATE, .path = "/m", .value = "", .value_len = 0},
        {.kind = LATCH_OP_CREATE, .path = "/m/a", .value = "A", .value_len = 1},
        {.kind = LATCH_OP_CREATE, .path = "/m/q-", .flags = LATCH_SEQUENTIAL},
        {.kind = LATCH_OP_CHECK, .path = "/m/zz", .absent = true},
    };
    CALL(latch_multi(c, ops, 4, NULL, on_result, &r));
    check("multi of 3 creates and a check succeeds with one result per op",
          r != NULL && r->err == LATCH_OK && r->succeeded && r->n_op_results == 4 &&
              strncmp(r->op_results[2].path, "/m/q-", 5) == 0 &&
              strlen(r->op_results[2].path) == 5 + 20,
          MSG(r));
    latch_result_free(r);
    struct latch_op bad[] = {
        {.kind = LATCH_OP_SET, .path = "/m/a", .value = "B", .value_len = 1},
        {.kind = LATCH_OP_CHECK, .path = "/m/a", .absent = true},
    };
    CALL(latch_multi(c, bad, 2, NULL, on_result, &r));
    check("a multi whose check fails: succeeded false, failed_op 1, an error text",
          r != NULL && r->err == LATCH_OK && !r->succeeded && r->failed_op == 1 &&
              r->op_error != NULL && r->op_error[0] != '\0',
          MSG(r));
    latch_result_free(r);
    CALL(latch_get(c, "/m/a", 0, on_result, &r));
    check("... and applied nothing",
          r != NULL && r->err == LATCH_OK && r->value_len == 1 && r->value[0] == 'A', MSG(r));
    latch_result_free(r);

    /* a watch sees a set and a delete, then is cancelled */
    struct events ev = {0};
    static const struct latch_watch_cbs wcbs = {.on_event = on_event, .on_end = on_end};
    struct latch_watch *w;
    check("watch started", latch_watch(c, "/m", LATCH_RECURSIVE, 0, &wcbs, &ev, &w) == LATCH_OK,
          "");
    spin(500);
    CALL(latch_set(c, "/m/a", "C", 1, 0, NULL, on_result, &r));
    latch_result_free(r);
    CALL(latch_delete(c, "/m/a", 0, 0, NULL, on_result, &r));
    latch_result_free(r);
    for (int i = 0; i < 500 && ev.n < 2; i++) {
        spin(10);
    }
    check("the watch delivered the set and the delete of /m/a in order",
          ev.n == 2 && strcmp(ev.paths[0], "/m/a") == 0 && ev.revs[1] > ev.revs[0], "");
    latch_watch_cancel(w);
    for (int i = 0; i < 500 && ev.ended == 0; i++) {
        spin(10);
    }
    check("latch_watch_cancel ends it once with LATCH_ECANCELED",
          ev.ended == 1 && ev.end_err == LATCH_ECANCELED, "");

    /* a session, a lock and fences */
    struct latch_session *s;
    struct latch_result *opened = NULL;
    await(latch_session_open(c, 5, on_lost, NULL, on_result, &opened, &s), &opened);
    bool have_session =
        check("session open", opened != NULL && opened->err == LATCH_OK && latch_session_id(s) != 0,
              MSG(opened));
    latch_result_free(opened);
    int64_t sid = latch_session_id(s);
    CALL(latch_lock_acquire(c, "api-lock", sid, 0, 0, 10000, on_result, &r));
    int64_t token = r != NULL ? r->token : 0;
    check("acquire hands back a token", r != NULL && r->err == LATCH_OK && token > 0, MSG(r));
    latch_result_free(r);
    struct latch_fence f = {.lock = "api-lock", .token = token};
    CALL(latch_create(c, "/m/fenced", "x", 1, 0, 0, &f, on_result, &r));
    check("a create fenced by the current token applies", r != NULL && r->err == LATCH_OK, MSG(r));
    latch_result_free(r);
    CALL(latch_lock_holder(c, "api-lock", 0, on_result, &r));
    check("holder: the grant",
          r != NULL && r->err == LATCH_OK && r->n_grants == 1 && r->grants[0].token == token &&
              r->grants[0].session == sid,
          MSG(r));
    latch_result_free(r);
    CALL(latch_lock_acquire(c, "api-lock", sid + 0, LATCH_TRY, 0, 0, on_result, &r));
    check("acquire again with the same session returns the same grant",
          r != NULL && r->err == LATCH_OK && r->token == token, MSG(r));
    latch_result_free(r);
    CALL(latch_lock_release(c, "api-lock", token, on_result, &r));
    check("release", r != NULL && r->err == LATCH_OK, MSG(r));
    latch_result_free(r);
    CALL(latch_set(c, "/m/fenced", "y", 1, 0, &f, on_result, &r));
    check("a write fenced by a released token fails LATCH_EFENCED",
          r != NULL && r->err == LATCH_EFENCED, MSG(r));
    latch_result_free(r);
    CALL(latch_check_fence(c, &f, on_result, &r));
    check("check_fence: not current", r != NULL && r->err == LATCH_OK && !r->current, MSG(r));
    latch_result_free(r);

    /* an election observed */
    struct events lv = {0};
    static const struct latch_watch_cbs ocbs = {.on_leader = on_leader, .on_end = on_end};
    struct latch_watch *ob;
    latch_observe(c, "api-elect", &ocbs, &lv, &ob);
    CALL(latch_campaign(c, "api-elect", sid, "one", 3, 10000, on_result, &r));
    int64_t etok = r != NULL ? r->token : 0;
    check("campaign", r != NULL && r->err == LATCH_OK && etok > 0, MSG(r));
    latch_result_free(r);
    CALL(latch_proclaim(c, "api-elect", etok, "two", 3, on_result, &r));
    check("proclaim", r != NULL && r->err == LATCH_OK, MSG(r));
    latch_result_free(r);
    CALL(latch_leader(c, "api-elect", 0, on_result, &r));
    check("leader: the proclaimed value and the session",
          r != NULL && r->err == LATCH_OK && r->token == etok && r->value_len == 3 &&
              memcmp(r->value, "two", 3) == 0 && r->session == sid,
          MSG(r));
    latch_result_free(r);
    for (int i = 0; i < 500 && (lv.leaders < 2 || strcmp(lv.values[lv.leaders - 1], "two")); i++) {
        spin(10);
    }
    check("observe saw \"one\" then \"two\"",
          lv.leaders >= 2 && strcmp(lv.values[0], "one") == 0 &&
              strcmp(lv.values[lv.leaders - 1], "two") == 0,
          "");
    CALL(latch_resign(c, "api-elect", etok, on_result, &r));
    check("resign", r != NULL && r->err == LATCH_OK, MSG(r));
    latch_result_free(r);
    if (lv.ended == 0) {
        latch_watch_cancel(ob); /* valid until its on_end */
    }

    /* the session's lease revoked behind its back: the lost callback runs */
    if (have_session) {
        uint8_t buf[16];
        size_t n = pack_revoke(buf, sid);
        CALL(latch_raw_unary(c, "/etcdserverpb.Lease/LeaseRevoke", buf, n, true, 0, on_result, &r));
        check("LeaseRevoke of the session through latch_raw_unary", r != NULL && r->err == LATCH_OK,
              MSG(r));
        latch_result_free(r);
        for (int i = 0; i < 1000 && lost_count == 0; i++) {
            spin(10);
        }
        check("the session's lost callback ran once", lost_count == 1 && !latch_session_alive(s),
              "");
    }
    CALL(latch_session_close(s, on_result, &r));
    check("closing a lost session succeeds", r != NULL && r->err == LATCH_OK, MSG(r));
    latch_result_free(r);

    bool done = false;
    latch_client_close(c, closed, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    check("client closed, loop empty", done && uv_loop_close(&loop) == 0, "");
    return failures > 0 ? 1 : 0;
}
