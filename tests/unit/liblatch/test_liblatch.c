/*
 * test_liblatch.c — liblatch without a server: endpoint list parsing (schemes, IPv6, spaces,
 * trailing slashes, every refusal), argument checks, and a client whose only endpoint
 * refuses connections: a call fails over, backs off and ends with LATCH_EUNAVAILABLE at its
 * deadline (never from inside the starting function); closing the client with calls, a
 * session and a watch pending ends each once with LATCH_ECANCELED; the blocking API reports
 * the same and frees everything (ASan checks the leaks).
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch/latch.h"

/* The library's allocations are not cmocka's: use the real free(). */
#undef free

/* A loopback port nothing listens on: connect() is refused at once. */
#define DEAD "127.0.0.1:1"

static void free_all(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
}

static void test_endpoints_parse_forms(void **state)
{
    (void)state;
    char *v[16];
    size_t n;
    char err[128];
    assert_int_equal(latch_endpoints_parse(NULL, v, 16, &n, err, sizeof(err)), LATCH_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "127.0.0.1:2479");
    free_all(v, n);
    assert_int_equal(
        latch_endpoints_parse(" a:1 , http://b:2/,https://[::1]:2379", v, 16, &n, err, sizeof(err)),
        LATCH_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "a:1");
    assert_string_equal(v[1], "http://b:2");
    assert_string_equal(v[2], "https://[::1]:2379");
    free_all(v, n);
    assert_int_equal(latch_endpoints_parse("[::1]:80", v, 16, &n, err, sizeof(err)), LATCH_OK);
    assert_int_equal(n, 1);
    free_all(v, n);
}

static void test_endpoints_parse_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a",           "a:",    ":1",       "a:0",       "a:65536", "a:1x",
        "unix:///x:1", "a:1,,", "a:1,,b:2", "ftp://a:1", "[::1]",   "a:-1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *v[16];
        size_t n = 99;
        char err[128] = "";
        int rc = latch_endpoints_parse(bad[i], v, 16, &n, err, sizeof(err));
        if (rc != LATCH_EINVAL) {
            fail_msg("\"%s\" was accepted", bad[i]);
        }
        assert_int_equal(n, 0);
        assert_true(err[0] != '\0');
    }
    char *v[2];
    size_t n;
    assert_int_equal(latch_endpoints_parse("a:1,b:2,c:3", v, 2, &n, NULL, 0), LATCH_EINVAL);
    assert_int_equal(n, 0);
}

struct seen {
    int calls;
    int err;
    int ended;
    int end_err;
    int lost;
    bool closed;
    bool in_start; /* set while the starting function runs */
    bool during_start;
};

static void on_result(struct latch_result *r, void *data)
{
    struct seen *s = data;
    s->calls++;
    s->err = r->err;
    if (s->in_start) {
        s->during_start = true;
    }
    assert_non_null(r->message);
    latch_result_free(r);
}

static void on_closed(void *data)
{
    ((struct seen *)data)->closed = true;
}

static void test_client_dead_endpoint_times_out(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct latch_options o = {.endpoints = DEAD "," DEAD, .call_timeout_ms = 400};
    struct latch_client *c;
    char err[128];
    assert_int_equal(latch_client_new(&loop, &o, &c, err, sizeof(err)), LATCH_OK);
    struct seen s = {0};
    s.in_start = true;
    assert_int_equal(latch_get(c, "/a", 0, on_result, &s), LATCH_OK);
    s.in_start = false;
    uint64_t t0 = uv_now(&loop);
    while (s.calls == 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_false(s.during_start);
    assert_int_equal(s.err, LATCH_EUNAVAILABLE);
    assert_true(uv_now(&loop) - t0 >= 300); /* retried until (about) the deadline */
    assert_int_equal(latch_get(c, "", 0, on_result, &s), LATCH_EINVAL);
    assert_int_equal(latch_lock_acquire(c, "l", 0, 0, 0, 0, on_result, &s), LATCH_EINVAL);
    latch_client_close(c, on_closed, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(s.closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void w_event(struct latch_watch *w, const struct latch_event *ev, void *data)
{
    (void)w;
    (void)ev;
    (void)data;
    fail_msg("no event can come from a dead endpoint");
}

static void w_end(struct latch_watch *w, int err, const char *message, void *data)
{
    (void)w;
    assert_non_null(message);
    struct seen *s = data;
    s->ended++;
    s->end_err = err;
}

static void on_lost(struct latch_session *ss, int err, const char *reason, void *data)
{
    (void)ss;
    (void)err;
    (void)reason;
    ((struct seen *)data)->lost++;
}

static void test_client_close_cancels_everything(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct latch_options o = {.endpoints = DEAD, .call_timeout_ms = 60000};
    struct latch_client *c;
    assert_int_equal(latch_client_new(&loop, &o, &c, NULL, 0), LATCH_OK);
    struct seen a = {0}, b = {0}, w = {0}, sess = {0};
    assert_int_equal(latch_stat(c, "/x", 0, on_result, &a), LATCH_OK);
    assert_int_equal(latch_lock_acquire(c, "l", 7, 0, 0, 0, on_result, &b), LATCH_OK);
    struct latch_session *ss;
    assert_int_equal(latch_session_open(c, 5, on_lost, &sess, on_result, &sess, &ss), LATCH_OK);
    assert_int_equal(latch_session_id(ss), 0);
    static const struct latch_watch_cbs cbs = {.on_event = w_event, .on_end = w_end};
    struct latch_watch *wh;
    assert_int_equal(latch_watch(c, "/x", LATCH_RECURSIVE, 0, &cbs, &w, &wh), LATCH_OK);
    /* Let them fail over and back off a few times. */
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    struct seen cl = {0};
    latch_client_close(c, on_closed, &cl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(cl.closed);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, LATCH_ECANCELED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.err, LATCH_ECANCELED);
    assert_int_equal(sess.calls, 1);
    assert_int_equal(sess.lost, 0);
    assert_int_equal(w.ended, 1);
    assert_int_equal(w.end_err, LATCH_ECANCELED);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_sync_dead_endpoint(void **state)
{
    (void)state;
    struct latch_options o = {.endpoints = DEAD, .call_timeout_ms = 300};
    struct latch_sync *s;
    char err[128];
    assert_int_equal(latch_sync_new(&o, &s, err, sizeof(err)), LATCH_OK);
    struct latch_result *r = NULL;
    assert_int_equal(latch_sync_get(s, "/a", 0, &r), LATCH_EUNAVAILABLE);
    assert_non_null(r);
    assert_int_equal(r->err, LATCH_EUNAVAILABLE);
    latch_result_free(r);
    assert_int_equal(latch_sync_get(s, "", 0, &r), LATCH_EINVAL);
    latch_result_free(r);
    struct latch_session *ss = NULL;
    assert_int_equal(latch_sync_session_open(s, 5, NULL, NULL, &ss, NULL), LATCH_EUNAVAILABLE);
    assert_null(ss);
    struct seen w = {0};
    static const struct latch_watch_cbs cbs = {.on_event = w_event, .on_end = w_end};
    struct latch_watch *wh;
    assert_int_equal(latch_sync_watch(s, "/x", 0, 0, &cbs, &w, &wh), LATCH_OK);
    latch_sync_watch_cancel(s, wh);
    assert_int_equal(w.ended, 1);
    assert_int_equal(w.end_err, LATCH_ECANCELED);
    latch_sync_free(s);
    /* Bad options are refused up front. */
    struct latch_options bad = {.endpoints = "nope"};
    assert_int_equal(latch_sync_new(&bad, &s, err, sizeof(err)), LATCH_EINVAL);
    assert_null(s);
    struct latch_options half = {.endpoints = DEAD, .cert_file = "/x"};
    assert_int_equal(latch_sync_new(&half, &s, err, sizeof(err)), LATCH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_parse_forms),
        cmocka_unit_test(test_endpoints_parse_refusals),
        cmocka_unit_test(test_client_dead_endpoint_times_out),
        cmocka_unit_test(test_client_close_cancels_everything),
        cmocka_unit_test(test_sync_dead_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
