/*
 * test_config.c — latchd's configuration (server/config.h): defaults, the four layers and
 * their precedence, the config-file subset, every validation error by its exact text, URL
 * parsing and ownership.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "latch_error.h"

/* ---- fixture ---------------------------------------------------------------------------- */

#define MAX_ARGS 32

struct fx {
    struct latchd_config c;
    char err[LATCHD_CONFIG_ERR_BYTES];
    char path[64]; /* a temp config file, "" when none */
};

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(latchd_config_init(&fx->c), 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    latchd_config_free(&fx->c);
    if (fx->path[0] != '\0') {
        unlink(fx->path);
    }
    free(fx);
    return 0;
}

/* Writes text to a fresh temp file whose path is fx->path. */
static const char *fx_file(struct fx *fx, const char *text)
{
    if (fx->path[0] != '\0') {
        unlink(fx->path);
    }
    snprintf(fx->path, sizeof(fx->path), "/tmp/latch-config-XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return fx->path;
}

/* Loads args (NULL-terminated, without argv[0]) and env (NULL-terminated or NULL). */
static int fx_load(struct fx *fx, const char *const *args, const char *const *env)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = (char *)"latchd";
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    fx->err[0] = '\0';
    return latchd_config_load(&fx->c, argc, argv, (char **)env, fx->err, sizeof(fx->err));
}

static int fx_validate(struct fx *fx)
{
    fx->err[0] = '\0';
    return latchd_config_validate(&fx->c, fx->err, sizeof(fx->err));
}

/* Starts again from the defaults. */
static void fx_reset(struct fx *fx)
{
    latchd_config_free(&fx->c);
    assert_int_equal(latchd_config_init(&fx->c), 0);
}

/* Loads args and env over fresh defaults, then validates; expects failure with exactly want. */
static void
expect_invalid(struct fx *fx, const char *const *args, const char *const *env, const char *want)
{
    fx_reset(fx);
    int rc = fx_load(fx, args, env);
    if (rc == 0) {
        rc = fx_validate(fx);
    }
    assert_int_equal(rc, LATCH_EINVAL);
    assert_string_equal(fx->err, want);
}

/* Loads args and env over fresh defaults, then validates; expects success. */
static void expect_valid(struct fx *fx, const char *const *args, const char *const *env)
{
    fx_reset(fx);
    int rc = fx_load(fx, args, env);
    if (rc == 0) {
        rc = fx_validate(fx);
    }
    if (rc != 0) {
        fail_msg("unexpected error %d: %s", rc, fx->err);
    }
}

/* Reads what f holds into a malloc'd string and closes f. (open_memstream's buffer comes from
 * libc's malloc, which cmocka's checked free() must not see.) */
static char *slurp(FILE *f)
{
    long len = ftell(f);
    assert_true(len >= 0);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* The config's key=value dump, malloc'd. */
static char *dump(const struct latchd_config *c)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    latchd_config_print(c, f);
    return slurp(f);
}

static char *usage(void)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    latchd_config_usage(f);
    return slurp(f);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- defaults ----------------------------------------------------------------------------- */

static const char default_dump[] = "name=default\n"
                                   "data-dir=./default.latch\n"
                                   "listen-client-urls=http://127.0.0.1:2479\n"
                                   "advertise-client-urls=http://127.0.0.1:2479\n"
                                   "listen-peer-urls=http://127.0.0.1:2480\n"
                                   "listen-metrics-urls=http://127.0.0.1:2481\n"
                                   "initial-cluster=default=http://127.0.0.1:2480\n"
                                   "initial-cluster-state=new\n"
                                   "initial-cluster-token=latch-cluster\n"
                                   "initial-advertise-peer-urls=http://127.0.0.1:2480\n"
                                   "heartbeat-interval=100\n"
                                   "election-timeout=1000\n"
                                   "snapshot-count=100000\n"
                                   "quota-backend-bytes=2147483648\n"
                                   "max-request-bytes=1572864\n"
                                   "max-txn-ops=128\n"
                                   "max-concurrent-streams=1000\n"
                                   "cert-file=\n"
                                   "key-file=\n"
                                   "trusted-ca-file=\n"
                                   "client-cert-auth=false\n"
                                   "peer-cert-file=\n"
                                   "peer-key-file=\n"
                                   "peer-trusted-ca-file=\n"
                                   "peer-client-cert-auth=false\n"
                                   "log-level=info\n"
                                   "log-format=auto\n"
                                   "config-file=\n";

static void test_config_defaults_with_no_input(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, NULL, NULL);
    struct latchd_config *c = &fx->c;
    assert_string_equal(c->name, "default");
    assert_string_equal(c->data_dir, "./default.latch");
    assert_int_equal(c->listen_client_urls_count, 1);
    assert_string_equal(c->listen_client_urls[0], "http://127.0.0.1:2479");
    assert_string_equal(c->listen_peer_urls[0], "http://127.0.0.1:2480");
    assert_string_equal(c->listen_metrics_urls[0], "http://127.0.0.1:2481");
    assert_int_equal(c->initial_cluster_state, LATCHD_CLUSTER_NEW);
    assert_int_equal(c->heartbeat_interval_ms, 100);
    assert_int_equal(c->election_timeout_ms, 1000);
    assert_int_equal(c->quota_backend_bytes, (uint64_t)2 << 30);
    assert_int_equal(c->max_request_bytes, 1572864);
    assert_int_equal(c->log_level, LATCH_LOG_INFO);
    assert_int_equal(c->log_format, LATCHD_LOG_AUTO);
    assert_false(c->help);
    assert_false(c->version);
    assert_int_equal(c->members_count, 1);
    assert_string_equal(c->members[0].name, "default");
    assert_int_equal(c->members[0].peer_urls_count, 1);
    assert_string_equal(c->members[0].peer_urls[0], "http://127.0.0.1:2480");
    char *d = dump(c);
    assert_string_equal(d, default_dump);
    free(d);
}

static void test_config_init_alone_gives_the_defaults(void **state)
{
    struct fx *fx = *state;
    char *d = dump(&fx->c);
    assert_string_equal(d, default_dump);
    free(d);
}

static void test_config_default_ports_avoid_etcd_and_zookeeper(void **state)
{
    (void)state;
    const char *urls[] = {LATCHD_DEFAULT_CLIENT_URL, LATCHD_DEFAULT_PEER_URL,
                          LATCHD_DEFAULT_METRICS_URL};
    for (size_t i = 0; i < 3; i++) {
        struct latchd_url u;
        assert_int_equal(latchd_url_parse(urls[i], &u), 0);
        assert_int_not_equal(u.port, 2379);
        assert_int_not_equal(u.port, 2380);
        assert_int_not_equal(u.port, 2181);
    }
}

static void test_config_name_derives_data_dir_and_initial_cluster(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx,
                 ARGS("--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:12480",
                      "--listen-peer-urls", "http://127.0.0.1:12480"),
                 NULL);
    assert_string_equal(fx->c.data_dir, "./n1.latch");
    assert_string_equal(fx->c.initial_cluster, "n1=http://127.0.0.1:12480");
}

static void test_config_explicit_data_dir_is_kept_when_name_changes(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--data-dir", "/var/lib/latch", "--name", "n1"), NULL);
    assert_string_equal(fx->c.data_dir, "/var/lib/latch");
    assert_string_equal(fx->c.initial_cluster, "n1=http://127.0.0.1:2480");
}

static void test_config_quota_zero_means_default(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--quota-backend-bytes=0"), NULL);
    assert_int_equal(fx->c.quota_backend_bytes, LATCHD_DEFAULT_QUOTA_BACKEND_BYTES);
    expect_valid(fx, ARGS("--quota-backend-bytes=8589934592"), NULL);
    assert_int_equal(fx->c.quota_backend_bytes, (uint64_t)8 << 30);
}

/* ---- precedence ----------------------------------------------------------------------------- */

static void test_config_file_overrides_defaults(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "name: fromfile\nheartbeat-interval: 150\n");
    expect_valid(fx, ARGS("--config-file", path), NULL);
    assert_string_equal(fx->c.name, "fromfile");
    assert_int_equal(fx->c.heartbeat_interval_ms, 150);
    assert_string_equal(fx->c.config_file, path);
    assert_string_equal(fx->c.data_dir, "./fromfile.latch");
}

static void test_config_env_overrides_file(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "name: fromfile\nheartbeat-interval: 150\n");
    expect_valid(fx, ARGS("--config-file", path), ARGS("LATCH_NAME=fromenv"));
    assert_string_equal(fx->c.name, "fromenv");
    assert_int_equal(fx->c.heartbeat_interval_ms, 150);
}

static void test_config_flag_overrides_env(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "name: fromfile\nelection-timeout: 2000\n");
    expect_valid(fx, ARGS("--name=fromflag", "--config-file", path),
                 ARGS("LATCH_NAME=fromenv", "LATCH_ELECTION_TIMEOUT=3000"));
    assert_string_equal(fx->c.name, "fromflag");
    assert_int_equal(fx->c.election_timeout_ms, 3000);
}

static void test_config_env_names_the_config_file(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "name: fromfile\n");
    char env[128];
    snprintf(env, sizeof(env), "LATCH_CONFIG_FILE=%s", path);
    expect_valid(fx, NULL, ARGS(env));
    assert_string_equal(fx->c.name, "fromfile");
    assert_string_equal(fx->c.config_file, path);
}

static void test_config_flag_config_file_beats_env_config_file(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "name: fromfile\n");
    expect_valid(fx, ARGS("--config-file", path),
                 ARGS("LATCH_CONFIG_FILE=/nonexistent/latch.yaml"));
    assert_string_equal(fx->c.name, "fromfile");
}

/* ---- flags ----------------------------------------------------------------------------------- */

static void test_config_flag_equals_and_space_forms(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx,
                 ARGS("--data-dir=/a", "--snapshot-count", "5000", "-log-level", "debug",
                      "--log-format=json", "--initial-cluster-state", "existing",
                      "--initial-cluster-token=tok", "--max-txn-ops=64", "--max-concurrent-streams",
                      "10", "--max-request-bytes=2048"),
                 NULL);
    assert_string_equal(fx->c.data_dir, "/a");
    assert_int_equal(fx->c.snapshot_count, 5000);
    assert_int_equal(fx->c.log_level, LATCH_LOG_DEBUG);
    assert_int_equal(fx->c.log_format, LATCHD_LOG_JSON);
    assert_int_equal(fx->c.initial_cluster_state, LATCHD_CLUSTER_EXISTING);
    assert_string_equal(fx->c.initial_cluster_token, "tok");
    assert_int_equal(fx->c.max_txn_ops, 64);
    assert_int_equal(fx->c.max_concurrent_streams, 10);
    assert_int_equal(fx->c.max_request_bytes, 2048);
}

static void test_config_value_with_equals_sign_is_kept_whole(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--initial-cluster=default=http://127.0.0.1:2480"), NULL);
    assert_string_equal(fx->c.initial_cluster, "default=http://127.0.0.1:2480");
}

static void test_config_later_flag_wins(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--name", "a", "--name=b"), NULL);
    assert_string_equal(fx->c.name, "b");
}

static void test_config_booleans(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--client-cert-auth", "--trusted-ca-file", "/ca.pem"), NULL);
    assert_true(fx->c.client_cert_auth);
    expect_valid(fx, ARGS("--client-cert-auth=false"), NULL);
    assert_false(fx->c.client_cert_auth);
    expect_valid(fx, ARGS("--peer-client-cert-auth=true", "--peer-trusted-ca-file=/ca.pem"), NULL);
    assert_true(fx->c.peer_client_cert_auth);
    expect_valid(fx, NULL, ARGS("LATCH_PEER_CLIENT_CERT_AUTH=false"));
    assert_false(fx->c.peer_client_cert_auth);
}

static void test_config_boolean_takes_no_separate_value(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--client-cert-auth", "false"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "unexpected argument \"false\" (boolean flags take --flag=true|false)");
}

static void test_config_bad_boolean(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--client-cert-auth=maybe"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--client-cert-auth: not a boolean: \"maybe\" (want true or false)");
}

static void test_config_unknown_flag(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--foo"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "unknown flag --foo");
    assert_int_equal(fx_load(fx, ARGS("--foo=bar"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "unknown flag --foo");
}

static void test_config_positional_argument_is_refused(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("n1"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "unexpected argument \"n1\"");
}

static void test_config_missing_value(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--name"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--name: missing value");
    assert_int_equal(fx_load(fx, ARGS("--name", "--data-dir", "/x"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--name: missing value");
}

static void test_config_not_a_number(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--heartbeat-interval", "abc"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--heartbeat-interval: not a number: \"abc\"");
    assert_int_equal(fx_load(fx, ARGS("--snapshot-count=-1"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--snapshot-count: not a number: \"-1\"");
    assert_int_equal(fx_load(fx, ARGS("--quota-backend-bytes=99999999999999999999999"), NULL),
                     LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--quota-backend-bytes: not a number: \"99999999999999999999999\"");
}

static void test_config_numbers_out_of_range(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--heartbeat-interval=0"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--heartbeat-interval: 0 is out of range [1, 10000]");
    assert_int_equal(fx_load(fx, ARGS("--election-timeout=50001"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--election-timeout: 50001 is out of range [1, 50000]");
    assert_int_equal(fx_load(fx, ARGS("--max-txn-ops=129"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--max-txn-ops: 129 is out of range [1, 128]");
    assert_int_equal(fx_load(fx, ARGS("--max-concurrent-streams=4294967296"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--max-concurrent-streams: 4294967296 is out of range [1, 4294967295]");
    assert_int_equal(fx_load(fx, ARGS("--max-request-bytes=10"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, "--max-request-bytes: 10 is out of range [1024, 67108864]");
}

static void test_config_validate_rechecks_ranges_set_in_code(void **state)
{
    struct fx *fx = *state;
    fx->c.snapshot_count = 0;
    assert_int_equal(fx_validate(fx), LATCH_EINVAL);
    assert_string_equal(fx->err, "--snapshot-count: 0 is out of range [1, 1099511627776]");
}

static void test_config_enums(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--log-level=trace"), NULL), LATCH_EINVAL);
    assert_string_equal(
        fx->err, "--log-level: unknown log level \"trace\" (want debug, info, warn or error)");
    assert_int_equal(fx_load(fx, ARGS("--log-format=xml"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--log-format: unknown log format \"xml\" (want text, json or auto)");
    assert_int_equal(fx_load(fx, ARGS("--initial-cluster-state=old"), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--initial-cluster-state: unknown cluster state \"old\" (want new or "
                        "existing)");
    expect_valid(fx, ARGS("--log-level", "warn"), NULL);
    assert_int_equal(fx->c.log_level, LATCH_LOG_WARN);
    expect_valid(fx, ARGS("--log-level", "error", "--log-format", "text"), NULL);
    assert_int_equal(fx->c.log_level, LATCH_LOG_ERROR);
    assert_int_equal(fx->c.log_format, LATCHD_LOG_TEXT);
}

static void test_config_help_and_version(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--help"), NULL), 0);
    assert_true(fx->c.help);
    latchd_config_free(&fx->c);
    latchd_config_init(&fx->c);
    assert_int_equal(fx_load(fx, ARGS("--bogus", "-h"), NULL), 0);
    assert_true(fx->c.help);
    latchd_config_free(&fx->c);
    latchd_config_init(&fx->c);
    assert_int_equal(fx_load(fx, ARGS("--version"), ARGS("LATCH_HEARTBEAT_INTERVAL=x")), 0);
    assert_true(fx->c.version);
    assert_false(fx->c.help);
}

static void test_config_usage_lists_every_flag_and_env_name(void **state)
{
    char *buf = usage();
    char *d = dump(&((struct fx *)*state)->c);
    /* Every key of the dump is a flag in the usage. */
    for (char *line = d; *line != '\0';) {
        char *eq = strchr(line, '=');
        char *nl = strchr(line, '\n');
        char flag[64];
        snprintf(flag, sizeof(flag), "  --%.*s", (int)(eq - line), line);
        assert_non_null(strstr(buf, flag));
        line = nl + 1;
    }
    assert_non_null(strstr(buf, "default \"./<name>.latch\"; env LATCH_DATA_DIR\n"));
    assert_non_null(strstr(buf, "env LATCH_INITIAL_CLUSTER\n"));
    assert_non_null(strstr(buf, "--help"));
    assert_non_null(strstr(buf, "--version"));
    assert_non_null(
        strstr(buf, "default \"http://127.0.0.1:2479\"; env LATCH_LISTEN_CLIENT_URLS\n"));
    free(d);
    free(buf);
}

/* ---- environment -------------------------------------------------------------------------- */

static void test_config_env_names(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, NULL,
                 ARGS("PATH=/usr/bin", "LATCH_DATA_DIR=/data", "LATCH_NAME=n1",
                      "LATCH_INITIAL_CLUSTER=n1=http://127.0.0.1:2480",
                      "LATCH_LISTEN_CLIENT_URLS=http://127.0.0.1:2479,http://[::1]:2479",
                      "LATCH_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2479",
                      "LATCH_HEARTBEAT_INTERVAL=50", "LATCH_LOG_LEVEL=debug", "LATCH_MODEL_SEED=7",
                      "LATCH_=x", "LATCH_NAME"));
    assert_string_equal(fx->c.data_dir, "/data");
    assert_string_equal(fx->c.name, "n1");
    assert_int_equal(fx->c.listen_client_urls_count, 2);
    assert_string_equal(fx->c.listen_client_urls[1], "http://[::1]:2479");
    assert_int_equal(fx->c.heartbeat_interval_ms, 50);
    assert_int_equal(fx->c.log_level, LATCH_LOG_DEBUG);
}

static void test_config_env_errors_name_the_variable(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, NULL, ARGS("LATCH_ELECTION_TIMEOUT=soon")), LATCH_EINVAL);
    assert_string_equal(fx->err, "LATCH_ELECTION_TIMEOUT: not a number: \"soon\"");
}

static void test_config_lists_trim_spaces_and_refuse_empty_items(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--listen-metrics-urls", " http://127.0.0.1:2481 , http://[::1]:2481 "),
                 NULL);
    assert_int_equal(fx->c.listen_metrics_urls_count, 2);
    assert_string_equal(fx->c.listen_metrics_urls[0], "http://127.0.0.1:2481");
    assert_string_equal(fx->c.listen_metrics_urls[1], "http://[::1]:2481");
    assert_int_equal(fx_load(fx, ARGS("--listen-metrics-urls=http://127.0.0.1:1,,"), NULL),
                     LATCH_EINVAL);
    assert_string_equal(fx->err,
                        "--listen-metrics-urls: empty URL in list \"http://127.0.0.1:1,,\"");
}

static void test_config_empty_metrics_list_turns_listener_off(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--listen-metrics-urls="), NULL);
    assert_int_equal(fx->c.listen_metrics_urls_count, 0);
}

/* ---- config file ------------------------------------------------------------------------- */

static void test_config_file_subset(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "---\n"
                                   "# latch config\n"
                                   "\n"
                                   "name: 'n1'   # the first member\n"
                                   "data-dir: \"/var/lib/latch/n1 dir\"\n"
                                   "initial-cluster-token: 'it''s'\n"
                                   "listen-client-urls: http://127.0.0.1:2479, http://[::1]:2479\n"
                                   "advertise-client-urls: \"http://127.0.0.1:2479\"\r\n"
                                   "initial-cluster: n1=http://127.0.0.1:2480\n"
                                   "client-cert-auth: false\n"
                                   "trusted-ca-file: /ca#1.pem\n"
                                   "cert-file:\n"
                                   "peer-cert-file: \"a\\\"b\\\\c\"\n"
                                   "peer-key-file: k   \n"
                                   "   \n"
                                   "   # indented comment\n");
    expect_valid(fx, ARGS("--config-file", path, "--log-format=text"), NULL);
    assert_string_equal(fx->c.name, "n1");
    assert_string_equal(fx->c.data_dir, "/var/lib/latch/n1 dir");
    assert_string_equal(fx->c.initial_cluster_token, "it's");
    assert_int_equal(fx->c.listen_client_urls_count, 2);
    assert_string_equal(fx->c.advertise_client_urls[0], "http://127.0.0.1:2479");
    assert_string_equal(fx->c.cert_file, "");
    assert_string_equal(fx->c.peer_cert_file, "a\"b\\c");
    assert_string_equal(fx->c.peer_key_file, "k");
    assert_string_equal(fx->c.trusted_ca_file, "/ca#1.pem");
    assert_int_equal(fx->c.log_format, LATCHD_LOG_TEXT);

    path = fx_file(fx, "log-format: json#x\n");
    assert_int_equal(fx_load(fx, ARGS("--config-file", path), NULL), LATCH_EINVAL);
    assert_non_null(strstr(fx->err, ":1: log-format: unknown log format \"json#x\""));
}

/* Loads a file with text and expects "path:" + want. */
static void expect_file_error(struct fx *fx, const char *text, const char *want)
{
    const char *path = fx_file(fx, text);
    char full[LATCHD_CONFIG_ERR_BYTES];
    snprintf(full, sizeof(full), "%s:%s", path, want);
    assert_int_equal(fx_load(fx, ARGS("--config-file", path), NULL), LATCH_EINVAL);
    assert_string_equal(fx->err, full);
}

static void test_config_file_bad_lines_name_file_and_line(void **state)
{
    struct fx *fx = *state;
    expect_file_error(fx, "name: a\n# c\nclient-transport-security:\n  cert-file: x\n",
                      "3: unknown key \"client-transport-security\"");
    expect_file_error(fx, "name: a\n\ndata-dir:\n  x: y\n",
                      "4: nesting is not supported (indented line)");
    expect_file_error(fx, "name: a\n\tdata-dir: x\n",
                      "2: nesting is not supported (indented line)");
    expect_file_error(fx, "listen-client-urls:\n- http://127.0.0.1:1\n",
                      "2: lists are not supported (give comma-separated values)");
    expect_file_error(fx, "listen-client-urls: [http://127.0.0.1:1]\n",
                      "1: listen-client-urls: anchors, aliases, tags, block scalars and flow "
                      "collections are not supported");
    expect_file_error(fx, "name: &anchor n1\n",
                      "1: name: anchors, aliases, tags, block scalars and flow collections are "
                      "not supported");
    expect_file_error(fx, "name: *anchor\n",
                      "1: name: anchors, aliases, tags, block scalars and flow collections are "
                      "not supported");
    expect_file_error(fx, "name: |\n",
                      "1: name: anchors, aliases, tags, block scalars and flow "
                      "collections are not supported");
    expect_file_error(fx, "name: - a\n",
                      "1: name: lists are not supported (give comma-separated values)");
    expect_file_error(fx, "\n\nname n1\n", "3: expected \"key: value\"");
    expect_file_error(fx, "name:n1\n", "1: expected \"key: value\"");
    expect_file_error(fx, "\"name\": n1\n", "1: quoted or complex keys are not supported");
    expect_file_error(fx, "name: 'n1\n", "1: name: unterminated quoted value");
    expect_file_error(fx, "name: \"n1\" x\n", "1: name: text after the closing quote");
    expect_file_error(fx, "name: \"n\\t1\"\n",
                      "1: name: unsupported escape in double-quoted value (only \\\" \\\\ \\/)");
    expect_file_error(fx, "name: a\nname: b\n", "2: duplicate key \"name\"");
    expect_file_error(fx, "foo: bar\n", "1: unknown key \"foo\"");
    expect_file_error(fx, "config-file: /x\n", "1: unknown key \"config-file\"");
    expect_file_error(fx, "name: a\n---\n", "2: expected \"key: value\"");
    expect_file_error(fx, "# x\nheartbeat-interval: abc\n",
                      "2: heartbeat-interval: not a number: \"abc\"");
    expect_file_error(fx, "snapshot-count: 1 # one\nelection-timeout: '70000'\n",
                      "2: election-timeout: 70000 is out of range [1, 50000]");
}

static void test_config_file_missing_is_an_error(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx, ARGS("--config-file=/nonexistent/latch.yaml"), NULL),
                     LATCH_EINVAL);
    assert_string_equal(fx->err, "--config-file: cannot open \"/nonexistent/latch.yaml\": No such "
                                 "file or directory");
}

static void test_config_file_may_be_empty(void **state)
{
    struct fx *fx = *state;
    const char *path = fx_file(fx, "");
    expect_valid(fx, ARGS("--config-file", path), NULL);
    char *d = dump(&fx->c);
    assert_non_null(strstr(d, "name=default\n"));
    free(d);
}

/* ---- validation -------------------------------------------------------------------------- */

static void test_config_validate_name_and_data_dir(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--name="), NULL, "--name must not be empty");
    expect_invalid(fx, ARGS("--name=a,b"), NULL, "--name: \"a,b\" must not contain ',' or '='");
    expect_invalid(fx, ARGS("--name=ok", "--data-dir="), NULL, "--data-dir must not be empty");
    expect_invalid(fx, ARGS("--data-dir=/x", "--initial-cluster-token="), NULL,
                   "--initial-cluster-token must not be empty");
}

static void test_config_validate_urls(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--listen-peer-urls=127.0.0.1:2480"), NULL,
                   "--listen-peer-urls: \"127.0.0.1:2480\": missing scheme (want http:// or "
                   "https://)");
    expect_invalid(fx, ARGS("--listen-peer-urls=unix://x:1"), NULL,
                   "--listen-peer-urls: \"unix://x:1\": unsupported scheme (want http or https)");
    expect_invalid(fx, ARGS("--listen-peer-urls=http://127.0.0.1"), NULL,
                   "--listen-peer-urls: \"http://127.0.0.1\": missing port (want host:port)");
    expect_invalid(fx, ARGS("--listen-peer-urls=http://127.0.0.1:0"), NULL,
                   "--listen-peer-urls: \"http://127.0.0.1:0\": bad port (want 1-65535)");
    expect_invalid(fx, ARGS("--advertise-client-urls=http://a.example:2479/v3"), NULL,
                   "--advertise-client-urls: \"http://a.example:2479/v3\": want "
                   "scheme://host:port with no path, query or user info");
    expect_invalid(fx, ARGS("--listen-peer-urls="), NULL, "--listen-peer-urls must not be empty");
    expect_invalid(fx, ARGS("--initial-advertise-peer-urls="), NULL,
                   "--initial-advertise-peer-urls must not be empty");
}

static void test_config_validate_listen_url_must_be_an_ip(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--listen-peer-urls=http://node1.example:2480"), NULL,
                   "--listen-peer-urls: \"http://node1.example:2480\": expected an IP address or "
                   "localhost to listen on");
    expect_valid(fx, ARGS("--listen-peer-urls=http://localhost:2480"), NULL);
    expect_valid(fx, ARGS("--listen-peer-urls=http://0.0.0.0:2480"), NULL);
}

static void test_config_validate_listen_addresses_do_not_overlap(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--listen-metrics-urls=http://127.0.0.1:2479"), NULL,
                   "--listen-metrics-urls: \"http://127.0.0.1:2479\" uses the same address as "
                   "--listen-client-urls \"http://127.0.0.1:2479\"");
    expect_invalid(fx,
                   ARGS("--listen-peer-urls=http://127.0.0.1:9,https://127.0.0.1:9",
                        "--peer-cert-file=c", "--peer-key-file=k"),
                   NULL,
                   "--listen-peer-urls: \"https://127.0.0.1:9\" uses the same address as "
                   "--listen-peer-urls \"http://127.0.0.1:9\"");
}

static void test_config_validate_https_needs_certificates(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx,
                   ARGS("--listen-client-urls=https://127.0.0.1:2479",
                        "--advertise-client-urls=https://127.0.0.1:2479"),
                   NULL,
                   "--listen-client-urls: \"https://127.0.0.1:2479\": https needs --cert-file and "
                   "--key-file");
    expect_invalid(
        fx, ARGS("--listen-peer-urls=https://127.0.0.1:2480", "--cert-file=c", "--key-file=k"),
        NULL,
        "--listen-peer-urls: \"https://127.0.0.1:2480\": https needs --peer-cert-file "
        "and --peer-key-file");
    expect_invalid(
        fx, ARGS("--listen-metrics-urls=https://127.0.0.1:2481", "--cert-file=", "--key-file="),
        NULL,
        "--listen-metrics-urls: \"https://127.0.0.1:2481\": https needs --cert-file and "
        "--key-file");
    expect_valid(fx,
                 ARGS("--listen-peer-urls=https://127.0.0.1:2480", "--peer-cert-file=c",
                      "--peer-key-file=k", "--initial-advertise-peer-urls=https://127.0.0.1:2480"),
                 NULL);
    assert_string_equal(fx->c.initial_cluster, "default=https://127.0.0.1:2480");
}

static void test_config_validate_tls_pairs(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--cert-file=c"), NULL,
                   "--cert-file and --key-file must be given together");
    expect_invalid(fx, ARGS("--cert-file=", "--peer-key-file=k"), NULL,
                   "--peer-cert-file and --peer-key-file must be given together");
    expect_invalid(fx, ARGS("--peer-key-file=", "--client-cert-auth"), NULL,
                   "--client-cert-auth needs --trusted-ca-file");
    expect_invalid(fx, ARGS("--client-cert-auth=false", "--peer-client-cert-auth"), NULL,
                   "--peer-client-cert-auth needs --peer-trusted-ca-file");
}

static void test_config_validate_advertise_required_with_listen(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--listen-client-urls=http://127.0.0.1:12479"), NULL,
                   "--advertise-client-urls is required when --listen-client-urls is set "
                   "explicitly");
}

static void test_config_validate_election_at_least_five_heartbeats(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--heartbeat-interval=300"), NULL,
                   "--election-timeout[1000] should be at least as 5 times as "
                   "--heartbeat-interval[300]");
    expect_valid(fx, ARGS("--heartbeat-interval=200"), NULL);
    expect_invalid(fx, ARGS("--heartbeat-interval=200", "--election-timeout=999"), NULL,
                   "--election-timeout[999] should be at least as 5 times as "
                   "--heartbeat-interval[200]");
}

static void test_config_initial_cluster_several_urls_per_member(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx,
                 ARGS("--name", "n2", "--initial-cluster",
                      "n1=http://127.0.0.1:2480,n2=http://127.0.0.1:12480,"
                      "n2=http://[::1]:12480,n3=http://127.0.0.1:22480",
                      "--listen-peer-urls", "http://127.0.0.1:12480,http://[::1]:12480",
                      "--initial-advertise-peer-urls", "http://[::1]:12480,http://127.0.0.1:12480"),
                 NULL);
    assert_int_equal(fx->c.members_count, 3);
    assert_string_equal(fx->c.members[0].name, "n1");
    assert_string_equal(fx->c.members[1].name, "n2");
    assert_int_equal(fx->c.members[1].peer_urls_count, 2);
    assert_string_equal(fx->c.members[1].peer_urls[0], "http://127.0.0.1:12480");
    assert_string_equal(fx->c.members[1].peer_urls[1], "http://[::1]:12480");
    assert_string_equal(fx->c.members[2].name, "n3");
    /* Validating again replaces the members rather than appending. */
    assert_int_equal(fx_validate(fx), 0);
    assert_int_equal(fx->c.members_count, 3);
}

static void test_config_initial_cluster_errors(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--initial-cluster", "default=http://127.0.0.1:2480,n2="), NULL,
                   "--initial-cluster: member \"n2\" has no peer URL");
    expect_invalid(fx, ARGS("--initial-cluster", "default=http://127.0.0.1:2480,n2"), NULL,
                   "--initial-cluster: \"n2\" is not name=peer-URL");
    expect_invalid(fx, ARGS("--initial-cluster", "=http://127.0.0.1:2480"), NULL,
                   "--initial-cluster: \"=http://127.0.0.1:2480\" has no member name");
    expect_invalid(fx, ARGS("--initial-cluster", "default=http://127.0.0.1:2480,n2=127.0.0.1:2"),
                   NULL,
                   "--initial-cluster: member \"n2\": \"127.0.0.1:2\": missing scheme (want "
                   "http:// or https://)");
    expect_invalid(fx, ARGS("--initial-cluster="), NULL, "--initial-cluster must not be empty");
    expect_invalid(
        fx, ARGS("--initial-cluster", "default=http://127.0.0.1:2480,n2=http://127.0.0.1:2480"),
        NULL,
        "--initial-cluster: peer URL \"http://127.0.0.1:2480\" of member \"n2\" is "
        "already listed for member \"default\"");
    expect_invalid(
        fx,
        ARGS("--initial-cluster", "default=http://127.0.0.1:2480,default=HTTP://127.0.0.1:2480"),
        NULL,
        "--initial-cluster: peer URL \"HTTP://127.0.0.1:2480\" of member \"default\" "
        "is already listed for member \"default\"");
}

static void test_config_initial_cluster_must_name_this_member(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx,
                   ARGS("--name", "n4", "--initial-cluster",
                        "n1=http://127.0.0.1:2480,n2=http://127.0.0.1:12480"),
                   NULL, "--initial-cluster has no member named \"n4\" (this member's --name)");
}

static void test_config_initial_cluster_must_match_advertised_peer_urls(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx,
                   ARGS("--name", "n1", "--initial-cluster",
                        "n1=http://127.0.0.1:12480,n2=http://127.0.0.1:2480"),
                   NULL,
                   "--initial-advertise-peer-urls \"http://127.0.0.1:2480\" does not match "
                   "member \"n1\" in --initial-cluster (\"http://127.0.0.1:12480\")");
    expect_invalid(fx,
                   ARGS("--name=n1", "--initial-cluster",
                        "n1=http://127.0.0.1:2480,n1=http://127.0.0.1:2490",
                        "--initial-advertise-peer-urls=http://127.0.0.1:2480"),
                   NULL,
                   "--initial-advertise-peer-urls \"http://127.0.0.1:2480\" does not match "
                   "member \"n1\" in --initial-cluster (\"http://127.0.0.1:2480,"
                   "http://127.0.0.1:2490\")");
    /* Host names compare without case. */
    expect_valid(fx,
                 ARGS("--name=n1", "--initial-cluster=n1=http://LOCALHOST:2480",
                      "--initial-advertise-peer-urls=http://localhost:2480"),
                 NULL);
}

static void test_config_three_node_loopback_cluster(void **state)
{
    struct fx *fx = *state;
    const char *cluster =
        "n1=http://127.0.0.1:2480,n2=http://127.0.0.1:12480,n3=http://127.0.0.1:22480";
    expect_valid(fx,
                 ARGS("--name", "n3", "--data-dir", "/tmp/n3", "--listen-client-urls",
                      "http://127.0.0.1:22479", "--advertise-client-urls", "http://127.0.0.1:22479",
                      "--listen-peer-urls", "http://127.0.0.1:22480",
                      "--initial-advertise-peer-urls", "http://127.0.0.1:22480",
                      "--listen-metrics-urls", "http://127.0.0.1:22481", "--initial-cluster",
                      cluster),
                 NULL);
    assert_int_equal(fx->c.members_count, 3);
}

/* ---- URLs --------------------------------------------------------------------------------- */

static void expect_url(const char *url, const char *host, uint16_t port, bool tls, bool ip)
{
    struct latchd_url u;
    if (latchd_url_parse(url, &u) != 0) {
        fail_msg("refused %s", url);
    }
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_int_equal(u.tls, tls);
    assert_int_equal(u.host_is_ip, ip);
    assert_string_equal(u.scheme, tls ? "https" : "http");
}

static void expect_bad_url(const char *url, const char *want_why)
{
    struct latchd_url u;
    const char *why = NULL;
    assert_int_equal(latchd_url_parse(url, &u), LATCH_EINVAL);
    assert_int_equal(latchd_url_parse_why(url, &u, &why), LATCH_EINVAL);
    assert_string_equal(why, want_why);
    assert_int_equal(u.port, 0);
}

static void test_config_url_parse_accepts(void **state)
{
    (void)state;
    expect_url("http://127.0.0.1:2479", "127.0.0.1", 2479, false, true);
    expect_url("https://[::1]:2479", "::1", 2479, true, true);
    expect_url("http://[fe80::1:2]:1", "fe80::1:2", 1, false, true);
    expect_url("HTTP://node-1.example.com:65535", "node-1.example.com", 65535, false, false);
    expect_url("http://localhost:2480", "localhost", 2480, false, false);
    expect_url("http://0.0.0.0:02480", "0.0.0.0", 2480, false, true);
}

static void test_config_url_parse_refuses(void **state)
{
    (void)state;
    expect_bad_url("", "empty URL");
    expect_bad_url(NULL, "empty URL");
    expect_bad_url("127.0.0.1:2479", "missing scheme (want http:// or https://)");
    expect_bad_url("ftp://127.0.0.1:21", "unsupported scheme (want http or https)");
    expect_bad_url("http://127.0.0.1", "missing port (want host:port)");
    expect_bad_url("http://127.0.0.1:", "missing port (want host:port)");
    expect_bad_url("http://[::1]", "missing port (want host:port)");
    expect_bad_url("http://:2479", "missing host");
    expect_bad_url("http://[]:2479", "missing host");
    expect_bad_url("http://127.0.0.1:0", "bad port (want 1-65535)");
    expect_bad_url("http://127.0.0.1:65536", "bad port (want 1-65535)");
    expect_bad_url("http://127.0.0.1:123456", "bad port (want 1-65535)");
    expect_bad_url("http://127.0.0.1:+80", "bad port (want 1-65535)");
    expect_bad_url("http://127.0.0.1:80x", "bad port (want 1-65535)");
    expect_bad_url("http://::1:2479", "IPv6 addresses need brackets, as in http://[::1]:2479");
    expect_bad_url("http://[::1:2479", "unterminated [IPv6] address");
    expect_bad_url("http://[::1]x:2479", "junk after ]");
    expect_bad_url("http://[::g]:2479", "bad IPv6 address");
    expect_bad_url("http://[127.0.0.1]:2479", "bad IPv6 address");
    expect_bad_url("http://256.0.0.1:2479", "bad IPv4 address");
    expect_bad_url("http://1.2.3:2479", "bad IPv4 address");
    expect_bad_url("http://a_b:2479", "bad host name");
    expect_bad_url("http://-a:2479", "bad host name");
    expect_bad_url("http://a..b:2479", "bad host name");
    expect_bad_url("http://a b:2479", "bad host name");
    expect_bad_url("http://127.0.0.1:2479/", "want scheme://host:port with no path, query or user "
                                             "info");
    expect_bad_url("http://u@127.0.0.1:2479", "want scheme://host:port with no path, query or "
                                              "user info");
    expect_bad_url("http://127.0.0.1:2479?x", "want scheme://host:port with no path, query or "
                                              "user info");
}

/* ---- logging --------------------------------------------------------------------------------- */

static void test_config_log_format_auto_follows_the_terminal(void **state)
{
    struct fx *fx = *state;
    assert_false(latchd_config_log_json(&fx->c, true));
    assert_true(latchd_config_log_json(&fx->c, false));
    fx->c.log_format = LATCHD_LOG_TEXT;
    assert_false(latchd_config_log_json(&fx->c, false));
    fx->c.log_format = LATCHD_LOG_JSON;
    assert_true(latchd_config_log_json(&fx->c, true));
}

/* ---- ownership ----------------------------------------------------------------------------- */

static void test_config_free_twice_is_safe(void **state)
{
    struct fx *fx = *state;
    expect_valid(fx, ARGS("--name=n1", "--cert-file=c", "--key-file=k"), NULL);
    latchd_config_free(&fx->c);
    assert_null(fx->c.name);
    assert_null(fx->c.members);
    latchd_config_free(&fx->c);
    /* The teardown frees a third time. */
}

static void test_config_failed_load_leaves_a_freeable_config(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(fx_load(fx,
                             ARGS("--name=n1", "--listen-peer-urls=http://127.0.0.1:9",
                                  "--heartbeat-interval=x"),
                             ARGS("LATCH_DATA_DIR=/d")),
                     LATCH_EINVAL);
    /* The environment was applied before the bad flag; the teardown frees it all. */
    assert_string_equal(fx->c.data_dir, "/d");
}

static void test_config_failed_validate_frees_partial_members(void **state)
{
    struct fx *fx = *state;
    expect_invalid(fx, ARGS("--initial-cluster", "default=http://127.0.0.1:2480,n2=http://x:1,n3"),
                   NULL, "--initial-cluster: \"n3\" is not name=peer-URL");
    assert_int_equal(fx->c.members_count, 0);
    assert_null(fx->c.members);
}

static void test_config_repeated_loads_replace_values(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx_load(fx,
                                 ARGS("--listen-client-urls=http://127.0.0.1:1,http://127.0.0.1:2",
                                      "--advertise-client-urls=http://127.0.0.1:1", "--name=x",
                                      "--cert-file=c", "--key-file=k"),
                                 NULL),
                         0);
        assert_int_equal(fx_validate(fx), 0);
    }
    assert_int_equal(fx->c.listen_client_urls_count, 2);
    assert_string_equal(fx->c.data_dir, "./x.latch");
}

/* ---- main --------------------------------------------------------------------------------- */

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_config_defaults_with_no_input),
        T(test_config_init_alone_gives_the_defaults),
        T(test_config_default_ports_avoid_etcd_and_zookeeper),
        T(test_config_name_derives_data_dir_and_initial_cluster),
        T(test_config_explicit_data_dir_is_kept_when_name_changes),
        T(test_config_quota_zero_means_default),
        T(test_config_file_overrides_defaults),
        T(test_config_env_overrides_file),
        T(test_config_flag_overrides_env),
        T(test_config_env_names_the_config_file),
        T(test_config_flag_config_file_beats_env_config_file),
        T(test_config_flag_equals_and_space_forms),
        T(test_config_value_with_equals_sign_is_kept_whole),
        T(test_config_later_flag_wins),
        T(test_config_booleans),
        T(test_config_boolean_takes_no_separate_value),
        T(test_config_bad_boolean),
        T(test_config_unknown_flag),
        T(test_config_positional_argument_is_refused),
        T(test_config_missing_value),
        T(test_config_not_a_number),
        T(test_config_numbers_out_of_range),
        T(test_config_validate_rechecks_ranges_set_in_code),
        T(test_config_enums),
        T(test_config_help_and_version),
        T(test_config_usage_lists_every_flag_and_env_name),
        T(test_config_env_names),
        T(test_config_env_errors_name_the_variable),
        T(test_config_lists_trim_spaces_and_refuse_empty_items),
        T(test_config_empty_metrics_list_turns_listener_off),
        T(test_config_file_subset),
        T(test_config_file_bad_lines_name_file_and_line),
        T(test_config_file_missing_is_an_error),
        T(test_config_file_may_be_empty),
        T(test_config_validate_name_and_data_dir),
        T(test_config_validate_urls),
        T(test_config_validate_listen_url_must_be_an_ip),
        T(test_config_validate_listen_addresses_do_not_overlap),
        T(test_config_validate_https_needs_certificates),
        T(test_config_validate_tls_pairs),
        T(test_config_validate_advertise_required_with_listen),
        T(test_config_validate_election_at_least_five_heartbeats),
        T(test_config_initial_cluster_several_urls_per_member),
        T(test_config_initial_cluster_errors),
        T(test_config_initial_cluster_must_name_this_member),
        T(test_config_initial_cluster_must_match_advertised_peer_urls),
        T(test_config_three_node_loopback_cluster),
        T(test_config_url_parse_accepts),
        T(test_config_url_parse_refuses),
        T(test_config_log_format_auto_follows_the_terminal),
        T(test_config_free_twice_is_safe),
        T(test_config_failed_load_leaves_a_freeable_config),
        T(test_config_failed_validate_frees_partial_members),
        T(test_config_repeated_loads_replace_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
