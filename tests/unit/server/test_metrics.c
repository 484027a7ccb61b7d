/*
 * test_metrics.c — the metrics registry renders the Prometheus text format 0.0.4 exactly:
 * HELP/TYPE lines, counters, gauges, labelled series, cumulative histogram buckets with
 * +Inf, _sum and _count, escaping; names are validated; label values beyond the limit go to
 * "other"; latch's standard set registers and renders every listed name.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "metrics.h"

static void cmocka_handler(const char *file, int line, const char *expr, const char *detail)
{
    (void)detail;
    mock_assert(0, expr, file, line);
}

static int setup(void **state)
{
    latch_assert_set_handler(cmocka_handler);
    struct srv_metrics *reg = NULL;
    assert_int_equal(srv_metrics_new(&reg), 0);
    *state = reg;
    return 0;
}

static int teardown(void **state)
{
    srv_metrics_free(*state);
    return 0;
}

/* Renders reg into a fresh buffer and compares with want. */
static void assert_renders(struct srv_metrics *reg, const char *want)
{
    struct srv_buf b;
    srv_buf_init(&b);
    assert_int_equal(srv_metrics_render(reg, &b), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    srv_buf_close(&b);
}

static void test_counter_renders_help_type_and_value(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "x_total", "Things.", NULL, &m),
                     0);
    struct srv_series *s = srv_metric_series(m, NULL);
    srv_counter_inc(s);
    srv_counter_add(s, 41);
    assert_int_equal(srv_counter_value(s), 42);
    assert_renders(reg, "# HELP x_total Things.\n# TYPE x_total counter\nx_total 42\n");
}

static void test_gauges_render_int_and_shortest_float(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *g, *f;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_GAUGE, "g", "G.", NULL, &g), 0);
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_GAUGE_FLOAT, "f", "F.", NULL, &f), 0);
    srv_gauge_set(srv_metric_series(g, NULL), 10);
    srv_gauge_add(srv_metric_series(g, NULL), -13);
    assert_int_equal(srv_gauge_value(srv_metric_series(g, NULL)), -3);
    srv_gauge_set_float(srv_metric_series(f, NULL), 0.1 + 0.2);
    assert_renders(reg, "# HELP g G.\n# TYPE g gauge\ng -3\n"
                        "# HELP f F.\n# TYPE f gauge\nf 0.30000000000000004\n");
    /* Laid out as Go's strconv 'g' with shortest precision, like Prometheus' clients. */
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {10, "10"},
        {100000, "100000"},
        {1e6, "1e+06"},
        {0.0005, "0.0005"},
        {0.00005, "5e-05"},
        {-2.5, "-2.5"},
        {1234567.5, "1.2345675e+06"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
        {0, "0"},
    };
    char want[160];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        srv_gauge_set_float(srv_metric_series(f, NULL), cases[i].v);
        snprintf(want, sizeof(want),
                 "# HELP g G.\n# TYPE g gauge\ng -3\n"
                 "# HELP f F.\n# TYPE f gauge\nf %s\n",
                 cases[i].text);
        assert_renders(reg, want);
    }
}

static void test_labelled_counter_renders_series_in_first_use_order(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "latch_grpc_requests_total",
                                          "Requests.", "method", &m),
                     0);
    assert_renders(reg, "# HELP latch_grpc_requests_total Requests.\n"
                        "# TYPE latch_grpc_requests_total counter\n");
    struct srv_series *put = srv_metric_series(m, "/etcdserverpb.KV/Put");
    struct srv_series *range = srv_metric_series(m, "/etcdserverpb.KV/Range");
    assert_ptr_equal(srv_metric_series(m, "/etcdserverpb.KV/Put"), put);
    srv_counter_add(put, 2);
    srv_counter_inc(range);
    assert_renders(reg, "# HELP latch_grpc_requests_total Requests.\n"
                        "# TYPE latch_grpc_requests_total counter\n"
                        "latch_grpc_requests_total{method=\"/etcdserverpb.KV/Put\"} 2\n"
                        "latch_grpc_requests_total{method=\"/etcdserverpb.KV/Range\"} 1\n");
}

static void test_histogram_renders_cumulative_buckets_inf_sum_and_count(void **state)
{
    struct srv_metrics *reg = *state;
    static const double bounds[] = {0.0005, 0.25, 1};
    struct srv_metric *m;
    assert_int_equal(
        srv_metrics_register_histogram(reg, "h_seconds", "Latency.", NULL, bounds, 3, &m), 0);
    struct srv_series *s = srv_metric_series(m, NULL);
    srv_histogram_observe(s, 0.000244140625); /* 2^-12: first bucket; exact sums */
    srv_histogram_observe(s, 0.25);           /* bound is inclusive */
    srv_histogram_observe(s, 0.5);
    srv_histogram_observe(s, 3); /* +Inf only */
    assert_int_equal(srv_histogram_count(s), 4);
    assert_renders(reg, "# HELP h_seconds Latency.\n"
                        "# TYPE h_seconds histogram\n"
                        "h_seconds_bucket{le=\"0.0005\"} 1\n"
                        "h_seconds_bucket{le=\"0.25\"} 2\n"
                        "h_seconds_bucket{le=\"1\"} 3\n"
                        "h_seconds_bucket{le=\"+Inf\"} 4\n"
                        "h_seconds_sum 3.750244140625\n"
                        "h_seconds_count 4\n");
}

static void test_labelled_histogram_puts_label_before_le(void **state)
{
    struct srv_metrics *reg = *state;
    static const double bounds[] = {1};
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register_histogram(reg, "d", "D.", "method", bounds, 1, &m), 0);
    srv_histogram_observe(srv_metric_series(m, "/a"), 0.5);
    assert_renders(reg, "# HELP d D.\n# TYPE d histogram\n"
                        "d_bucket{method=\"/a\",le=\"1\"} 1\n"
                        "d_bucket{method=\"/a\",le=\"+Inf\"} 1\n"
                        "d_sum{method=\"/a\"} 0.5\n"
                        "d_count{method=\"/a\"} 1\n");
}

static void test_label_values_and_help_are_escaped(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "e_total",
                                          "Back\\slash \"quoted\"\nsecond line", "v", &m),
                     0);
    srv_counter_inc(srv_metric_series(m, "a\\b\"c\nd"));
    assert_renders(reg, "# HELP e_total Back\\\\slash \"quoted\"\\nsecond line\n"
                        "# TYPE e_total counter\n"
                        "e_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

static void test_invalid_names_are_refused(void **state)
{
    struct srv_metrics *reg = *state;
    static const double b[] = {1, 2};
    static const double unordered[] = {2, 1};
    const enum srv_metric_type c = SRV_METRIC_COUNTER;
    assert_int_equal(srv_metrics_register(reg, c, "", "", NULL, NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "1abc", "", NULL, NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "a-b", "", NULL, NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "a b", "", NULL, NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "ok", "", "1l", NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "ok", "", "a:b", NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, c, "ok", "", "__x", NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_HISTOGRAM, "ok", "", NULL, NULL),
                     LATCH_EINVAL);
    assert_int_equal(srv_metrics_register_histogram(reg, "h", "", "le", b, 2, NULL), LATCH_EINVAL);
    assert_int_equal(srv_metrics_register_histogram(reg, "h", "", NULL, unordered, 2, NULL),
                     LATCH_EINVAL);
    assert_int_equal(srv_metrics_register_histogram(reg, "h", "", NULL, b, 0, NULL), LATCH_EINVAL);
    /* Valid ones, including colons in metric names, and a duplicate. */
    assert_int_equal(srv_metrics_register(reg, c, "_a:b_9", "", "_l9", NULL), 0);
    assert_int_equal(srv_metrics_register(reg, c, ":x", "", NULL, NULL), 0);
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_GAUGE, ":x", "", NULL, NULL),
                     LATCH_EEXIST);
}

static void test_label_values_beyond_limit_go_to_other(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "o_total", "O.", "k", &m), 0);
    char v[32];
    for (int i = 0; i < SRV_METRICS_LABEL_VALUES_MAX; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        srv_counter_inc(srv_metric_series(m, v));
    }
    struct srv_series *other = srv_metric_series(m, "one-too-many");
    srv_counter_inc(other);
    assert_ptr_equal(srv_metric_series(m, "another"), other);
    srv_counter_inc(srv_metric_series(m, "another"));
    /* Known values still find their own series. */
    assert_int_equal(srv_counter_value(srv_metric_series(m, "v7")), 1);
    char toolong[SRV_METRICS_LABEL_VALUE_MAX + 2];
    memset(toolong, 'x', sizeof(toolong) - 1);
    toolong[sizeof(toolong) - 1] = '\0';
    assert_ptr_equal(srv_metric_series(m, toolong), other);

    struct srv_buf b;
    srv_buf_init(&b);
    assert_int_equal(srv_metrics_render(reg, &b), 0);
    assert_non_null(strstr(b.data, "o_total{k=\"v255\"} 1\no_total{k=\"other\"} 2\n"));
    assert_null(strstr(b.data, "one-too-many"));
    srv_buf_close(&b);
}

static void test_other_is_rendered_only_once_used(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "u_total", "U.", "k", &m), 0);
    srv_counter_inc(srv_metric_series(m, "a"));
    assert_renders(reg, "# HELP u_total U.\n# TYPE u_total counter\nu_total{k=\"a\"} 1\n");
    srv_counter_inc(srv_metric_series(m, SRV_METRICS_LABEL_OTHER));
    assert_renders(reg, "# HELP u_total U.\n# TYPE u_total counter\nu_total{k=\"a\"} 1\n"
                        "u_total{k=\"other\"} 1\n");
}

static void test_wrong_update_type_or_label_use_asserts(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *c, *l;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "c", "", NULL, &c), 0);
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_COUNTER, "l", "", "k", &l), 0);
    expect_assert_failure(srv_gauge_set(srv_metric_series(c, NULL), 1));
    expect_assert_failure(srv_metric_series(c, "x"));
    expect_assert_failure(srv_metric_series(l, NULL));
}

static int hook_calls;

static void count_hook(void *data)
{
    srv_gauge_set(data, ++hook_calls);
}

static void test_hooks_run_before_each_render(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metric *m;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_GAUGE, "renders", "R.", NULL, &m), 0);
    hook_calls = 0;
    assert_int_equal(srv_metrics_add_hook(reg, count_hook, srv_metric_series(m, NULL)), 0);
    assert_renders(reg, "# HELP renders R.\n# TYPE renders gauge\nrenders 1\n");
    assert_renders(reg, "# HELP renders R.\n# TYPE renders gauge\nrenders 2\n");
    for (int i = 1; i < SRV_METRICS_HOOKS_MAX; i++) {
        assert_int_equal(srv_metrics_add_hook(reg, count_hook, srv_metric_series(m, NULL)), 0);
    }
    assert_int_equal(srv_metrics_add_hook(reg, count_hook, NULL), LATCH_ETOOBIG);
}

static void test_render_appends_to_buffer(void **state)
{
    struct srv_metrics *reg = *state;
    assert_int_equal(srv_metrics_register(reg, SRV_METRIC_GAUGE, "a", "A.", NULL, NULL), 0);
    struct srv_buf b;
    srv_buf_init(&b);
    assert_int_equal(srv_buf_printf(&b, "head %d\n", 1), 0);
    assert_int_equal(srv_metrics_render(reg, &b), 0);
    assert_string_equal(b.data, "head 1\n# HELP a A.\n# TYPE a gauge\na 0\n");
    assert_int_equal(b.len, strlen(b.data));
    srv_buf_close(&b);
}

/* The value of sample line "name " (unlabelled) in text, or -1 when absent. */
static double sample_value(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    double v = -1;
    if (p != NULL && sscanf(p + strlen(key), "%lf", &v) != 1) {
        v = -1;
    }
    return v;
}

static void test_standard_set_registers_and_renders_every_name(void **state)
{
    struct srv_metrics *reg = *state;
    struct srv_metrics_std std;
    assert_int_equal(srv_metrics_std_register(reg, &std), 0);
    srv_gauge_set(std.raft_term, 7);
    srv_counter_inc(srv_metric_series(std.grpc_requests, "/etcdserverpb.KV/Put"));
    srv_histogram_observe(srv_metric_series(std.grpc_request_duration, "/etcdserverpb.KV/Put"),
                          0.003);
    srv_histogram_observe(std.disk_fsync_duration, 0.002);
    srv_histogram_observe(std.apply_duration, 0.0002);
    struct srv_buf b;
    srv_buf_init(&b);
    assert_int_equal(srv_metrics_render(reg, &b), 0);
    static const char *const names[] = {
        "latch_raft_term",
        "latch_raft_index",
        "latch_raft_commit_index",
        "latch_raft_applied_index",
        "latch_raft_leader_changes_total",
        "latch_raft_has_leader",
        "latch_raft_proposals_committed_total",
        "latch_raft_proposals_failed_total",
        "latch_disk_fsync_duration_seconds",
        "latch_apply_duration_seconds",
        "latch_grpc_requests_total",
        "latch_grpc_request_duration_seconds",
        "latch_watchers",
        "latch_leases",
        "latch_db_size_bytes",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    };
    char line[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(line, sizeof(line), "# TYPE %s ", names[i]);
        if (strstr(b.data, line) == NULL) {
            fail_msg("%s missing from:\n%s", names[i], b.data);
        }
    }
    assert_non_null(strstr(b.data, "\nlatch_raft_term 7\n"));
    assert_non_null(strstr(b.data, "latch_disk_fsync_duration_seconds_bucket{le=\"0.0005\"} 0\n"
                                   "latch_disk_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n"
                                   "latch_disk_fsync_duration_seconds_bucket{le=\"0.002\"} 1\n"));
    assert_non_null(strstr(b.data, "latch_disk_fsync_duration_seconds_bucket{le=\"8.192\"} 1\n"
                                   "latch_disk_fsync_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
    assert_non_null(
        strstr(b.data, "latch_grpc_request_duration_seconds_bucket{method=\"/etcdserverpb.KV/Put\","
                       "le=\"0.005\"} 1\n"));
    assert_non_null(strstr(b.data, "# HELP latch_raft_has_leader "));
    assert_non_null(strstr(b.data, "etcd_server_has_leader"));
    /* Process figures are live: this process has memory, open descriptors, a start time. */
    assert_true(sample_value(b.data, "process_resident_memory_bytes") > 0);
    assert_true(sample_value(b.data, "process_open_fds") >= 3);
    assert_true(sample_value(b.data, "process_max_fds") > 0);
    assert_true(sample_value(b.data, "process_start_time_seconds") > 1e9);
    assert_true(sample_value(b.data, "process_cpu_seconds_total") >= 0);
    srv_buf_close(&b);

    /* A second set in the same registry collides by name. */
    struct srv_metrics_std again;
    assert_int_equal(srv_metrics_std_register(reg, &again), LATCH_EEXIST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_renders_help_type_and_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauges_render_int_and_shortest_float, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labelled_counter_renders_series_in_first_use_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_renders_cumulative_buckets_inf_sum_and_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_labelled_histogram_puts_label_before_le, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_label_values_and_help_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_values_beyond_limit_go_to_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_is_rendered_only_once_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_update_type_or_label_use_asserts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hooks_run_before_each_render, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_appends_to_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standard_set_registers_and_renders_every_name, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
