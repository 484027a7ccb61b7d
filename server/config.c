/*
 * config.c — latchd's settings: one option table, four layers, one validation pass
 * (see config.h and docs/operations.md).
 *
 * The option table (STYLE §7, redis static_configs[]) holds each setting's flag name, kind,
 * where it may come from, its range and its help text. Everything else is driven by it:
 * command-line parsing, LATCH_* environment names, config-file keys, --help, the
 * key=value dump and the range checks.
 *
 * Order of work in latchd_config_load():
 *   1. argv is scanned once without applying anything, so that syntax errors surface
 *      first and --config-file is known;
 *   2. the config file is applied (a flat YAML subset, parsed line by line here);
 *   3. the LATCH_* variables of envp are applied;
 *   4. argv is applied;
 *   5. derived defaults are filled in for what no layer gave (data-dir, initial-cluster).
 * Each apply records the option in given_mask, which is what lets step 5 and the
 * "--advertise-client-urls is required" rule tell a default from a choice.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "latch_error.h"
#include "latch_log.h"
#include "store.h"

/* ---- the option table ------------------------------------------------------------------ */

enum opt_kind {
    OPT_STR,
    OPT_URLS,
    OPT_U32,
    OPT_U64,
    OPT_BOOL,
    OPT_LEVEL,
    OPT_FORMAT,
    OPT_STATE,
};

enum {
    FROM_FLAG = 1u,
    FROM_ENV = 2u,
    FROM_FILE = 4u,
    FROM_ALL = FROM_FLAG | FROM_ENV | FROM_FILE,
};

struct opt {
    const char *name; /* flag name without dashes; also the file key */
    enum opt_kind kind;
    unsigned from;       /* FROM_* bits */
    size_t off;          /* offset of the field in struct latchd_config */
    size_t count_off;    /* OPT_URLS: offset of the count */
    uint64_t min, max;   /* OPT_U32 / OPT_U64 */
    const char *section; /* non-NULL starts a group in --help */
    const char *arg;     /* argument name in --help */
    const char *def;     /* default shown in --help, NULL for none */
    const char *help;
};

#define OFF(f) offsetof(struct latchd_config, f)
#define STR_OPT(n, f, sec, def, help)                                                              \
    {                                                                                              \
        n, OPT_STR, FROM_ALL, OFF(f), 0, 0, 0, sec, "string", def, help                            \
    }
#define URLS_OPT(n, f, sec, def, help)                                                             \
    {                                                                                              \
        n, OPT_URLS, FROM_ALL, OFF(f), OFF(f##_count), 0, 0, sec, "URLs", def, help                \
    }
#define NUM_OPT(n, kind, f, lo, hi, sec, arg, def, help)                                           \
    {                                                                                              \
        n, kind, FROM_ALL, OFF(f), 0, lo, hi, sec, arg, def, help                                  \
    }
#define BOOL_OPT(n, f, sec, help)                                                                  \
    {                                                                                              \
        n, OPT_BOOL, FROM_ALL, OFF(f), 0, 0, 1, sec, NULL, "false", help                           \
    }

/* Ceilings: 50 s is etcd's upper bound for the election timeout (maxElectionMs); a heartbeat
 * can never exceed a fifth of it. The store refuses txns over STORE_TXN_OPS_MAX per list, so
 * a larger --max-txn-ops could not be honoured. Requests larger than 64 MiB would have to sit
 * in one LMDB transaction and one Raft entry; etcd warns past 10 MiB. */
#define ELECTION_TIMEOUT_MS_MAX 50000u
#define HEARTBEAT_MS_MAX        (ELECTION_TIMEOUT_MS_MAX / 5u)
#define REQUEST_BYTES_MIN       1024u
#define REQUEST_BYTES_MAX       (64u << 20)
#define QUOTA_BYTES_MAX         ((uint64_t)1 << 40)
#define SNAPSHOT_COUNT_MAX      ((uint64_t)1 << 40)

static const struct opt opts[] = {
    STR_OPT("name", name, "Member", "\"default\"", "Human-readable name of this member."),
    STR_OPT("data-dir", data_dir, NULL, "\"./<name>.latch\"", "Path to the data directory."),
    URLS_OPT("listen-client-urls",
             listen_client_urls,
             NULL,
             "\"" LATCHD_DEFAULT_CLIENT_URL "\"",
             "URLs to listen on for client traffic (gRPC)."),
    URLS_OPT("advertise-client-urls",
             advertise_client_urls,
             NULL,
             "\"" LATCHD_DEFAULT_CLIENT_URL "\"",
             "Client URLs told to the rest of the cluster; required with --listen-client-urls."),
    URLS_OPT("listen-peer-urls",
             listen_peer_urls,
             NULL,
             "\"" LATCHD_DEFAULT_PEER_URL "\"",
             "URLs to listen on for peer (Raft) traffic."),
    URLS_OPT("listen-metrics-urls",
             listen_metrics_urls,
             NULL,
             "\"" LATCHD_DEFAULT_METRICS_URL "\"",
             "URLs of the admin HTTP listener (/health, /metrics, /version); empty turns it off."),
    STR_OPT("initial-cluster",
            initial_cluster,
            "Clustering",
            "\"<name>=<first initial-advertise-peer-url>\"",
            "Initial cluster: name=peerURL,name=peerURL (repeat a name for several URLs)."),
    {"initial-cluster-state", OPT_STATE, FROM_ALL, OFF(initial_cluster_state), 0, 0, 0, NULL,
     "new|existing", "\"new\"", "\"new\" bootstraps a cluster, \"existing\" joins one."},
    STR_OPT("initial-cluster-token",
            initial_cluster_token,
            NULL,
            "\"" LATCHD_DEFAULT_CLUSTER_TOKEN "\"",
            "Token that keeps separate clusters on one network apart during bootstrap."),
    URLS_OPT("initial-advertise-peer-urls",
             initial_advertise_peer_urls,
             NULL,
             "\"" LATCHD_DEFAULT_PEER_URL "\"",
             "Peer URLs of this member as listed in --initial-cluster."),
    NUM_OPT("heartbeat-interval",
            OPT_U32,
            heartbeat_interval_ms,
            1,
            HEARTBEAT_MS_MAX,
            "Raft and storage",
            "ms",
            "100",
            "Time between leader heartbeats."),
    NUM_OPT("election-timeout",
            OPT_U32,
            election_timeout_ms,
            1,
            ELECTION_TIMEOUT_MS_MAX,
            NULL,
            "ms",
            "1000",
            "Time without a leader before an election; at least 5 heartbeats."),
    NUM_OPT("snapshot-count",
            OPT_U64,
            snapshot_count,
            1,
            SNAPSHOT_COUNT_MAX,
            NULL,
            "entries",
            "100000",
            "Applied entries between snapshots (the log is compacted behind them)."),
    NUM_OPT("quota-backend-bytes",
            OPT_U64,
            quota_backend_bytes,
            0,
            QUOTA_BYTES_MAX,
            NULL,
            "bytes",
            "2147483648",
            "Space quota of the keyspace; past it writes get NOSPACE. "
            "0 means the default."),
    NUM_OPT("max-request-bytes",
            OPT_U32,
            max_request_bytes,
            REQUEST_BYTES_MIN,
            REQUEST_BYTES_MAX,
            "Limits",
            "bytes",
            "1572864",
            "Largest client request accepted."),
    NUM_OPT("max-txn-ops",
            OPT_U32,
            max_txn_ops,
            1,
            STORE_TXN_OPS_MAX,
            NULL,
            "count",
            "128",
            "Most operations in one branch of a txn."),
    NUM_OPT("max-concurrent-streams",
            OPT_U32,
            max_concurrent_streams,
            1,
            UINT32_MAX,
            NULL,
            "count",
            "1000",
            "Most concurrent gRPC streams per client connection."),
    STR_OPT("cert-file", cert_file, "Security", NULL, "Client TLS certificate (PEM)."),
    STR_OPT("key-file", key_file, NULL, NULL, "Client TLS private key (PEM)."),
    STR_OPT("trusted-ca-file", trusted_ca_file, NULL, NULL, "CA bundle for client certificates."),
    BOOL_OPT("client-cert-auth",
             client_cert_auth,
             NULL,
             "Require clients to present a certificate signed by --trusted-ca-file."),
    STR_OPT("peer-cert-file", peer_cert_file, NULL, NULL, "Peer TLS certificate (PEM)."),
    STR_OPT("peer-key-file", peer_key_file, NULL, NULL, "Peer TLS private key (PEM)."),
    STR_OPT("peer-trusted-ca-file",
            peer_trusted_ca_file,
            NULL,
            NULL,
            "CA bundle for peer certificates."),
    BOOL_OPT("peer-client-cert-auth",
             peer_client_cert_auth,
             NULL,
             "Require peers to present a certificate signed by --peer-trusted-ca-file."),
    {"log-level", OPT_LEVEL, FROM_ALL, OFF(log_level), 0, 0, 0, "Logging", "debug|info|warn|error",
     "\"info\"", "Lowest level logged."},
    {"log-format", OPT_FORMAT, FROM_ALL, OFF(log_format), 0, 0, 0, NULL, "text|json|auto",
     "\"auto\"", "Log line format; auto is text on a terminal and JSON otherwise."},
    {"config-file", OPT_STR, FROM_FLAG | FROM_ENV, OFF(config_file), 0, 0, 0, "Other", "path", NULL,
     "Read settings from this flat YAML file (flags and environment override it)."},
};

#define OPTS_COUNT (sizeof(opts) / sizeof(opts[0]))

_Static_assert(OPTS_COUNT <= 64, "given_mask has one bit per option");

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"auto", "text", "json"};
static const char *const state_names[] = {"new", "existing"};

/* ---- small helpers ------------------------------------------------------------------- */

LATCH_PRINTF(4, 5) static int fail(char *err, size_t errcap, int code, const char *fmt, ...)
{
    if (err != NULL && errcap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int fail_nomem(char *err, size_t errcap)
{
    return fail(err, errcap, LATCH_ENOMEM, "out of memory");
}

static void *field(struct latchd_config *c, size_t off)
{
    return (char *)c + off;
}

static const void *cfield(const struct latchd_config *c, size_t off)
{
    return (const char *)c + off;
}

static size_t opt_index(const struct opt *o)
{
    return (size_t)(o - opts);
}

static const struct opt *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

static bool given(const struct latchd_config *c, const char *name)
{
    const struct opt *o = opt_find(name, strlen(name));
    return o != NULL && (c->given_mask & ((uint64_t)1 << opt_index(o))) != 0;
}

/* The environment name of o: LATCH_ + upper case, '-' -> '_'. */
static void env_name(const struct opt *o, char *buf, size_t cap)
{
    size_t n = 0;
    const char *prefix = "LATCH_";
    for (const char *p = prefix; *p != '\0' && n + 1 < cap; p++) {
        buf[n++] = *p;
    }
    for (const char *p = o->name; *p != '\0' && n + 1 < cap; p++) {
        buf[n++] = (*p == '-') ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 'a' + 'A' : *p);
    }
    buf[n] = '\0';
}

static void free_list(char ***list, size_t *count)
{
    for (size_t i = 0; *list != NULL && i < *count; i++) {
        free((*list)[i]);
    }
    free(*list);
    *list = NULL;
    *count = 0;
}

static void free_members(struct latchd_config *c)
{
    for (size_t i = 0; c->members != NULL && i < c->members_count; i++) {
        free(c->members[i].name);
        free_list(&c->members[i].peer_urls, &c->members[i].peer_urls_count);
    }
    free(c->members);
    c->members = NULL;
    c->members_count = 0;
}

static int set_string(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL) {
        return LATCH_ENOMEM;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Splits value at ',' into a new list of trimmed, non-empty items. "" gives an empty list. */
static int split_list(const char *value, char ***out, size_t *out_count, bool *empty_item)
{
    size_t cap = 1;
    for (const char *p = value; *p != '\0'; p++) {
        cap += (*p == ',');
    }
    char **list = calloc(cap, sizeof(*list));
    size_t n = 0;
    if (list == NULL) {
        return LATCH_ENOMEM;
    }
    *empty_item = false;
    const char *p = value;
    while (*p != '\0' || p != value) {
        const char *end = strchr(p, ',');
        const char *stop = (end != NULL) ? end : p + strlen(p);
        const char *b = p;
        while (b < stop && is_space(*b)) {
            b++;
        }
        const char *e = stop;
        while (e > b && is_space(e[-1])) {
            e--;
        }
        if (e == b) {
            *empty_item = true;
        } else if ((list[n] = strndup(b, (size_t)(e - b))) == NULL) {
            free_list(&list, &n);
            return LATCH_ENOMEM;
        } else {
            n++;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    *out = list;
    *out_count = n;
    return 0;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static int parse_name(const char *s, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(s, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ---- applying one value ------------------------------------------------------------- */

static int apply_number(struct latchd_config *c,
                        const struct opt *o,
                        const char *value,
                        const char *who,
                        char *err,
                        size_t errcap)
{
    uint64_t v;
    if (!parse_u64(value, &v)) {
        return fail(err, errcap, LATCH_EINVAL, "%s: not a number: \"%s\"", who, value);
    }
    if (v < o->min || v > o->max) {
        return fail(err, errcap, LATCH_EINVAL,
                    "%s: %" PRIu64 " is out of range [%" PRIu64 ", %" PRIu64 "]", who, v, o->min,
                    o->max);
    }
    if (o->kind == OPT_U32) {
        *(uint32_t *)field(c, o->off) = (uint32_t)v;
    } else {
        *(uint64_t *)field(c, o->off) = v;
    }
    return 0;
}

static int apply_enum(struct latchd_config *c,
                      const struct opt *o,
                      const char *value,
                      const char *who,
                      char *err,
                      size_t errcap)
{
    int i;
    switch (o->kind) {
    case OPT_LEVEL:
        if ((i = parse_name(value, level_names, 4)) < 0) {
            return fail(err, errcap, LATCH_EINVAL,
                        "%s: unknown log level \"%s\" (want debug, info, warn or error)", who,
                        value);
        }
        c->log_level = (enum latch_log_level)i;
        return 0;
    case OPT_FORMAT:
        if ((i = parse_name(value, format_names, 3)) < 0) {
            return fail(err, errcap, LATCH_EINVAL,
                        "%s: unknown log format \"%s\" (want text, json or auto)", who, value);
        }
        c->log_format = (enum latchd_log_format)i;
        return 0;
    default:
        if ((i = parse_name(value, state_names, 2)) < 0) {
            return fail(err, errcap, LATCH_EINVAL,
                        "%s: unknown cluster state \"%s\" (want new or existing)", who, value);
        }
        c->initial_cluster_state = (enum latchd_cluster_state)i;
        return 0;
    }
}

/* Sets option o from value (borrowed); who names the source in errors ("--name",
 * "LATCH_NAME", "file:3: name"). */
static int apply(struct latchd_config *c,
                 const struct opt *o,
                 const char *value,
                 const char *who,
                 char *err,
                 size_t errcap)
{
    int rc = 0;
    bool b, empty_item;
    char **list;
    size_t count;
    switch (o->kind) {
    case OPT_STR:
        rc = set_string((char **)field(c, o->off), value);
        break;
    case OPT_URLS:
        rc = split_list(value, &list, &count, &empty_item);
        if (rc == 0 && empty_item && count > 0) {
            free_list(&list, &count);
            return fail(err, errcap, LATCH_EINVAL, "%s: empty URL in list \"%s\"", who, value);
        }
        if (rc == 0) {
            free_list((char ***)field(c, o->off), (size_t *)field(c, o->count_off));
            *(char ***)field(c, o->off) = list;
            *(size_t *)field(c, o->count_off) = count;
        }
        break;
    case OPT_U32:
    case OPT_U64:
        rc = apply_number(c, o, value, who, err, errcap);
        break;
    case OPT_BOOL:
        if (!parse_bool(value, &b)) {
            return fail(err, errcap, LATCH_EINVAL, "%s: not a boolean: \"%s\" (want true or false)",
                        who, value);
        }
        *(bool *)field(c, o->off) = b;
        break;
    default:
        rc = apply_enum(c, o, value, who, err, errcap);
        break;
    }
    if (rc == LATCH_ENOMEM) {
        return fail_nomem(err, errcap);
    }
    if (rc == 0) {
        c->given_mask |= (uint64_t)1 << opt_index(o);
    }
    return rc;
}

/* ---- defaults ------------------------------------------------------------------------- */

static int set_list1(char ***list, size_t *count, const char *url)
{
    char **l = calloc(1, sizeof(*l));
    if (l == NULL || (l[0] = strdup(url)) == NULL) {
        free(l);
        return LATCH_ENOMEM;
    }
    free_list(list, count);
    *list = l;
    *count = 1;
    return 0;
}

static int set_printf(char **slot, const char *fmt, const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, fmt, a, b) < 0) {
        return LATCH_ENOMEM;
    }
    free(*slot);
    *slot = s;
    return 0;
}

/* Fills in what depends on other settings and was not given: the data dir follows the name,
 * the initial cluster is this member alone; a quota of 0 means the default. */
static int derive(struct latchd_config *c)
{
    if (!given(c, "data-dir") && set_printf(&c->data_dir, "./%s%s", c->name, ".latch") != 0) {
        return LATCH_ENOMEM;
    }
    if (!given(c, "initial-cluster")) {
        const char *url =
            c->initial_advertise_peer_urls_count > 0 ? c->initial_advertise_peer_urls[0] : "";
        if (set_printf(&c->initial_cluster, "%s=%s", c->name, url) != 0) {
            return LATCH_ENOMEM;
        }
    }
    if (c->quota_backend_bytes == 0) {
        c->quota_backend_bytes = LATCHD_DEFAULT_QUOTA_BACKEND_BYTES;
    }
    return 0;
}

int latchd_config_init(struct latchd_config *c)
{
    memset(c, 0, sizeof(*c));
    c->initial_cluster_state = LATCHD_CLUSTER_NEW;
    c->heartbeat_interval_ms = LATCHD_DEFAULT_HEARTBEAT_INTERVAL_MS;
    c->election_timeout_ms = LATCHD_DEFAULT_ELECTION_TIMEOUT_MS;
    c->snapshot_count = LATCHD_DEFAULT_SNAPSHOT_COUNT;
    c->quota_backend_bytes = LATCHD_DEFAULT_QUOTA_BACKEND_BYTES;
    c->max_request_bytes = LATCHD_DEFAULT_MAX_REQUEST_BYTES;
    c->max_txn_ops = LATCHD_DEFAULT_MAX_TXN_OPS;
    c->max_concurrent_streams = LATCHD_DEFAULT_MAX_CONCURRENT_STREAMS;
    c->log_level = LATCH_LOG_INFO;
    c->log_format = LATCHD_LOG_AUTO;
    int rc = 0;
    for (size_t i = 0; i < OPTS_COUNT && rc == 0; i++) {
        if (opts[i].kind == OPT_STR) {
            rc = set_string((char **)field(c, opts[i].off), "");
        }
    }
    if (rc == 0) {
        rc = set_string(&c->name, LATCHD_DEFAULT_NAME);
    }
    if (rc == 0) {
        rc = set_string(&c->initial_cluster_token, LATCHD_DEFAULT_CLUSTER_TOKEN);
    }
    if (rc == 0) {
        rc = set_list1(&c->listen_client_urls, &c->listen_client_urls_count,
                       LATCHD_DEFAULT_CLIENT_URL);
    }
    if (rc == 0) {
        rc = set_list1(&c->advertise_client_urls, &c->advertise_client_urls_count,
                       LATCHD_DEFAULT_CLIENT_URL);
    }
    if (rc == 0) {
        rc = set_list1(&c->listen_peer_urls, &c->listen_peer_urls_count, LATCHD_DEFAULT_PEER_URL);
    }
    if (rc == 0) {
        rc = set_list1(&c->initial_advertise_peer_urls, &c->initial_advertise_peer_urls_count,
                       LATCHD_DEFAULT_PEER_URL);
    }
    if (rc == 0) {
        rc = set_list1(&c->listen_metrics_urls, &c->listen_metrics_urls_count,
                       LATCHD_DEFAULT_METRICS_URL);
    }
    return rc == 0 ? derive(c) : rc;
}

void latchd_config_free(struct latchd_config *c)
{
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        if (opts[i].kind == OPT_STR) {
            free(*(char **)field(c, opts[i].off));
        } else if (opts[i].kind == OPT_URLS) {
            free_list((char ***)field(c, opts[i].off), (size_t *)field(c, opts[i].count_off));
        }
    }
    free_members(c);
    memset(c, 0, sizeof(*c));
}

/* ---- command line ----------------------------------------------------------------------- */

static bool is_flag_named(const char *arg, const char *name)
{
    if (arg[0] != '-') {
        return false;
    }
    arg += (arg[1] == '-') ? 2 : 1;
    return strcmp(arg, name) == 0;
}

/*
 * Walks argv once. With apply_now false it only checks syntax and reports the last
 * --config-file in *config_file; with apply_now true it applies every flag.
 */
static int walk_argv(struct latchd_config *c,
                     int argc,
                     char **argv,
                     bool apply_now,
                     const char **config_file,
                     char *err,
                     size_t errcap)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0' || strcmp(a, "--") == 0) {
            bool b;
            return fail(err, errcap, LATCH_EINVAL, "unexpected argument \"%s\"%s", a,
                        parse_bool(a, &b) ? " (boolean flags take --flag=true|false)" : "");
        }
        const char *n = a + ((a[1] == '-') ? 2 : 1);
        const char *eq = strchr(n, '=');
        size_t len = (eq != NULL) ? (size_t)(eq - n) : strlen(n);
        const struct opt *o = opt_find(n, len);
        if (o == NULL || (o->from & FROM_FLAG) == 0) {
            return fail(err, errcap, LATCH_EINVAL, "unknown flag %.*s", (int)(n - a + (long)len),
                        a);
        }
        char who[64];
        snprintf(who, sizeof(who), "--%s", o->name);
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (o->kind == OPT_BOOL) {
            value = "true";
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            return fail(err, errcap, LATCH_EINVAL, "%s: missing value", who);
        }
        if (apply_now) {
            int rc = apply(c, o, value, who, err, errcap);
            if (rc != 0) {
                return rc;
            }
        } else if (strcmp(o->name, "config-file") == 0) {
            *config_file = value;
        }
    }
    return 0;
}

/* ---- environment ---------------------------------------------------------------------- */

static const struct opt *env_find(const char *entry, const char **value)
{
    const char *eq = strchr(entry, '=');
    if (strncmp(entry, "LATCH_", 6) != 0 || eq == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        char name[64];
        env_name(&opts[i], name, sizeof(name));
        if ((opts[i].from & FROM_ENV) != 0 && strlen(name) == (size_t)(eq - entry) &&
            memcmp(name, entry, (size_t)(eq - entry)) == 0) {
            *value = eq + 1;
            return &opts[i];
        }
    }
    return NULL;
}

static int apply_env(struct latchd_config *c, char **envp, char *err, size_t errcap)
{
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *value;
        const struct opt *o = env_find(envp[i], &value);
        if (o != NULL) {
            char who[64];
            env_name(o, who, sizeof(who));
            int rc = apply(c, o, value, who, err, errcap);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* ---- config file ---------------------------------------------------------------------- */

/*
 * Reads a YAML value starting at p (after "key:" and spaces) into out (a buffer at least as
 * long as the line): a plain scalar up to " #" or the end, trimmed, or a quoted one.
 * Returns NULL or a static phrase saying what is wrong.
 */
static const char *file_value(const char *p, char *out)
{
    size_t n = 0;
    char q = *p;
    if (q == '"' || q == '\'') {
        for (p++;; p++) {
            if (*p == '\0') {
                return "unterminated quoted value";
            }
            if (q == '\'' && p[0] == '\'' && p[1] == '\'') {
                out[n++] = '\'';
                p++;
            } else if (*p == q) {
                break;
            } else if (q == '"' && *p == '\\') {
                p++;
                if (*p != '"' && *p != '\\' && *p != '/') {
                    return "unsupported escape in double-quoted value (only \\\" \\\\ \\/)";
                }
                out[n++] = *p;
            } else {
                out[n++] = *p;
            }
        }
        out[n] = '\0';
        for (p++; is_space(*p); p++) {
        }
        return (*p == '\0' || *p == '#') ? NULL : "text after the closing quote";
    }
    if (strchr("&*!|>[]{}%@`", q) != NULL && q != '\0') {
        return "anchors, aliases, tags, block scalars and flow collections are not supported";
    }
    if (q == '-' && (p[1] == ' ' || p[1] == '\0')) {
        return "lists are not supported (give comma-separated values)";
    }
    for (; *p != '\0' && !(*p == '#' && (n == 0 || is_space(out[n - 1]))); p++) {
        out[n++] = *p;
    }
    while (n > 0 && is_space(out[n - 1])) {
        n--;
    }
    out[n] = '\0';
    return NULL;
}

/* Finds "key:" at the start of line; returns NULL or a phrase saying what is wrong. */
static const char *file_key(const char *line, size_t *key_len, const char **rest)
{
    size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
    if (line[0] == '-' && (line[1] == ' ' || line[1] == '\0')) {
        return "lists are not supported (give comma-separated values)";
    }
    if (line[0] == '"' || line[0] == '\'' || line[0] == '?') {
        return "quoted or complex keys are not supported";
    }
    if (n == 0 || line[n] != ':' || (line[n + 1] != '\0' && !is_space(line[n + 1]))) {
        return "expected \"key: value\"";
    }
    *key_len = n;
    *rest = line + n + 1;
    while (is_space(**rest)) {
        (*rest)++;
    }
    return NULL;
}

struct file_state {
    const char *path;
    unsigned line;
    uint64_t seen;
    bool keys_seen;
};

static int
file_line(struct latchd_config *c, struct file_state *fs, char *line, char *err, size_t errcap)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        line[--len] = '\0';
    }
    const char *p = line;
    while (is_space(*p)) {
        p++;
    }
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    if (p != line) {
        return fail(err, errcap, LATCH_EINVAL, "%s:%u: nesting is not supported (indented line)",
                    fs->path, fs->line);
    }
    if (strcmp(line, "---") == 0 && !fs->keys_seen) {
        return 0;
    }
    size_t key_len = 0;
    const char *rest = NULL;
    const char *why = file_key(line, &key_len, &rest);
    if (why != NULL) {
        return fail(err, errcap, LATCH_EINVAL, "%s:%u: %s", fs->path, fs->line, why);
    }
    const struct opt *o = opt_find(line, key_len);
    if (o == NULL || (o->from & FROM_FILE) == 0) {
        return fail(err, errcap, LATCH_EINVAL, "%s:%u: unknown key \"%.*s\"", fs->path, fs->line,
                    (int)key_len, line);
    }
    uint64_t bit = (uint64_t)1 << opt_index(o);
    if ((fs->seen & bit) != 0) {
        return fail(err, errcap, LATCH_EINVAL, "%s:%u: duplicate key \"%s\"", fs->path, fs->line,
                    o->name);
    }
    fs->seen |= bit;
    fs->keys_seen = true;
    char *value = malloc(len + 1);
    if (value == NULL) {
        return fail_nomem(err, errcap);
    }
    int rc = 0;
    if ((why = file_value(rest, value)) != NULL) {
        rc = fail(err, errcap, LATCH_EINVAL, "%s:%u: %s: %s", fs->path, fs->line, o->name, why);
    } else {
        char who[512];
        snprintf(who, sizeof(who), "%s:%u: %s", fs->path, fs->line, o->name);
        rc = apply(c, o, value, who, err, errcap);
    }
    free(value);
    return rc;
}

static int apply_file(struct latchd_config *c, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return fail(err, errcap, LATCH_EINVAL, "--config-file: cannot open \"%s\": %s", path,
                    strerror(errno));
    }
    struct file_state fs = {.path = path};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        fs.line++;
        if (strlen(line) != (size_t)got) {
            rc = fail(err, errcap, LATCH_EINVAL, "%s:%u: NUL byte in line", path, fs.line);
            break;
        }
        rc = file_line(c, &fs, line, err, errcap);
    }
    if (rc == 0 && ferror(f)) {
        rc = fail(err, errcap, LATCH_EINVAL, "--config-file: cannot read \"%s\": %s", path,
                  strerror(errno));
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------- */

int latchd_config_load(
    struct latchd_config *c, int argc, char **argv, char **envp, char *err, size_t errcap)
{
    for (int i = 1; i < argc; i++) {
        if (is_flag_named(argv[i], "help") || is_flag_named(argv[i], "h")) {
            c->help = true;
        } else if (is_flag_named(argv[i], "version")) {
            c->version = true;
        }
    }
    if (c->help || c->version) {
        return 0;
    }
    const char *config_file = NULL;
    int rc = walk_argv(c, argc, argv, false, &config_file, err, errcap);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; config_file == NULL && envp != NULL && envp[i] != NULL; i++) {
        const char *value;
        const struct opt *o = env_find(envp[i], &value);
        if (o != NULL && strcmp(o->name, "config-file") == 0) {
            config_file = value;
        }
    }
    if (config_file != NULL && config_file[0] != '\0') {
        rc = apply_file(c, config_file, err, errcap);
    }
    if (rc == 0) {
        rc = apply_env(c, envp, err, errcap);
    }
    if (rc == 0) {
        rc = walk_argv(c, argc, argv, true, &config_file, err, errcap);
    }
    if (rc == 0 && derive(c) != 0) {
        rc = fail_nomem(err, errcap);
    }
    return rc;
}

/* ---- URLs ----------------------------------------------------------------------------- */

static bool host_name_ok(const char *h, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > 253) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-') {
                return false;
            }
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            if (++label > 63) {
                return false;
            }
        } else {
            return false;
        }
    }
    return label > 0 && h[len - 1] != '-';
}

static const char *url_host(const char *p, const char **colon, struct latchd_url *out)
{
    const char *h = p, *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL) {
            return "unterminated [IPv6] address";
        }
        h = p + 1;
        *colon = end + 1;
        if (**colon != ':') {
            return (**colon == '\0') ? "missing port (want host:port)" : "junk after ]";
        }
    } else {
        *colon = strrchr(p, ':');
        if (*colon == NULL) {
            return "missing port (want host:port)";
        }
        if (strchr(p, ':') != *colon) {
            return "IPv6 addresses need brackets, as in http://[::1]:2479";
        }
        end = *colon;
    }
    size_t len = (size_t)(end - h);
    if (len == 0) {
        return "missing host";
    }
    if (len >= sizeof(out->host)) {
        return "host name too long";
    }
    memcpy(out->host, h, len);
    out->host[len] = '\0';
    unsigned char addr[16];
    if (*p == '[') {
        out->host_is_ip = true;
        return inet_pton(AF_INET6, out->host, addr) == 1 ? NULL : "bad IPv6 address";
    }
    if (strspn(out->host, "0123456789.") == len) {
        out->host_is_ip = true;
        return inet_pton(AF_INET, out->host, addr) == 1 ? NULL : "bad IPv4 address";
    }
    return host_name_ok(out->host, len) ? NULL : "bad host name";
}

int latchd_url_parse_why(const char *url, struct latchd_url *out, const char **why)
{
    const char *w = NULL, *sep, *colon = NULL, *p;
    uint64_t port = 0;
    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0') {
        w = "empty URL";
    } else if ((sep = strstr(url, "://")) == NULL) {
        w = "missing scheme (want http:// or https://)";
    } else if ((size_t)(sep - url) == 4 && strncasecmp(url, "http", 4) == 0) {
        memcpy(out->scheme, "http", 5);
    } else if ((size_t)(sep - url) == 5 && strncasecmp(url, "https", 5) == 0) {
        memcpy(out->scheme, "https", 6);
        out->tls = true;
    } else {
        w = "unsupported scheme (want http or https)";
    }
    if (w == NULL) {
        p = strstr(url, "://") + 3;
        if (strpbrk(p, "/?#@") != NULL) {
            w = "want scheme://host:port with no path, query or user info";
        } else if ((w = url_host(p, &colon, out)) == NULL &&
                   (colon[1] == '\0' || strlen(colon + 1) > 5 || !parse_u64(colon + 1, &port) ||
                    port < 1 || port > 65535)) {
            w = colon[1] == '\0' ? "missing port (want host:port)" : "bad port (want 1-65535)";
        }
    }
    if (w != NULL) {
        memset(out, 0, sizeof(*out));
        if (why != NULL) {
            *why = w;
        }
        return LATCH_EINVAL;
    }
    out->port = (uint16_t)port;
    return 0;
}

int latchd_url_parse(const char *url, struct latchd_url *out)
{
    return latchd_url_parse_why(url, out, NULL);
}

static bool url_same(const struct latchd_url *a, const struct latchd_url *b)
{
    return strcmp(a->scheme, b->scheme) == 0 && strcasecmp(a->host, b->host) == 0 &&
           a->port == b->port;
}

static bool url_str_same(const char *a, const char *b)
{
    struct latchd_url ua, ub;
    return latchd_url_parse(a, &ua) == 0 && latchd_url_parse(b, &ub) == 0 && url_same(&ua, &ub);
}

/* ---- validation ----------------------------------------------------------------------- */

/* Joins list with ',' into buf (truncated to cap). */
static const char *join(char *const *list, size_t count, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count && n + 1 < cap; i++) {
        for (const char *p = (i > 0) ? "," : ""; *p != '\0' && n + 1 < cap; p++) {
            buf[n++] = *p;
        }
        for (const char *p = list[i]; *p != '\0' && n + 1 < cap; p++) {
            buf[n++] = *p;
        }
    }
    buf[n] = '\0';
    return buf;
}

enum url_use {
    USE_CLIENT_LISTEN,
    USE_CLIENT_ADVERTISE,
    USE_PEER_LISTEN,
    USE_PEER_ADVERTISE,
};

static int check_urls(
    const struct latchd_config *c, const struct opt *o, enum url_use use, char *err, size_t errcap)
{
    char *const *urls = *(char **const *)cfield(c, o->off);
    size_t count = *(const size_t *)cfield(c, o->count_off);
    bool peer = (use == USE_PEER_LISTEN || use == USE_PEER_ADVERTISE);
    bool listen = (use == USE_CLIENT_LISTEN || use == USE_PEER_LISTEN);
    if (count == 0 && strcmp(o->name, "listen-metrics-urls") != 0) {
        return fail(err, errcap, LATCH_EINVAL, "--%s must not be empty", o->name);
    }
    for (size_t i = 0; i < count; i++) {
        struct latchd_url u;
        const char *why = NULL;
        if (latchd_url_parse_why(urls[i], &u, &why) != 0) {
            return fail(err, errcap, LATCH_EINVAL, "--%s: \"%s\": %s", o->name, urls[i], why);
        }
        if (listen && !u.host_is_ip && strcasecmp(u.host, "localhost") != 0) {
            return fail(err, errcap, LATCH_EINVAL,
                        "--%s: \"%s\": expected an IP address or localhost to listen on", o->name,
                        urls[i]);
        }
        bool have = peer ? (c->peer_cert_file[0] != '\0' && c->peer_key_file[0] != '\0')
                         : (c->cert_file[0] != '\0' && c->key_file[0] != '\0');
        if (u.tls && !have) {
            return fail(err, errcap, LATCH_EINVAL, "--%s: \"%s\": https needs %s", o->name, urls[i],
                        peer ? "--peer-cert-file and --peer-key-file"
                             : "--cert-file and --key-file");
        }
    }
    return 0;
}

/* Refuses two listeners (of any kind) on the same scheme-less address. */
static int check_listen_overlap(const struct latchd_config *c, char *err, size_t errcap)
{
    static const char *const names[] = {"listen-client-urls", "listen-peer-urls",
                                        "listen-metrics-urls"};
    for (size_t a = 0; a < 3; a++) {
        const struct opt *oa = opt_find(names[a], strlen(names[a]));
        char *const *la = *(char **const *)cfield(c, oa->off);
        size_t na = *(const size_t *)cfield(c, oa->count_off);
        for (size_t b = a; b < 3; b++) {
            const struct opt *ob = opt_find(names[b], strlen(names[b]));
            char *const *lb = *(char **const *)cfield(c, ob->off);
            size_t nb = *(const size_t *)cfield(c, ob->count_off);
            for (size_t i = 0; i < na; i++) {
                for (size_t j = (a == b) ? i + 1 : 0; j < nb; j++) {
                    struct latchd_url ua, ub;
                    latchd_url_parse(la[i], &ua);
                    latchd_url_parse(lb[j], &ub);
                    if (strcasecmp(ua.host, ub.host) == 0 && ua.port == ub.port) {
                        return fail(err, errcap, LATCH_EINVAL,
                                    "--%s: \"%s\" uses the same address as --%s \"%s\"", ob->name,
                                    lb[j], oa->name, la[i]);
                    }
                }
            }
        }
    }
    return 0;
}

static int check_tls(const struct latchd_config *c, char *err, size_t errcap)
{
    if ((c->cert_file[0] == '\0') != (c->key_file[0] == '\0')) {
        return fail(err, errcap, LATCH_EINVAL, "--cert-file and --key-file must be given together");
    }
    if ((c->peer_cert_file[0] == '\0') != (c->peer_key_file[0] == '\0')) {
        return fail(err, errcap, LATCH_EINVAL,
                    "--peer-cert-file and --peer-key-file must be given together");
    }
    if (c->client_cert_auth && c->trusted_ca_file[0] == '\0') {
        return fail(err, errcap, LATCH_EINVAL, "--client-cert-auth needs --trusted-ca-file");
    }
    if (c->peer_client_cert_auth && c->peer_trusted_ca_file[0] == '\0') {
        return fail(err, errcap, LATCH_EINVAL,
                    "--peer-client-cert-auth needs --peer-trusted-ca-file");
    }
    return 0;
}

static int check_numbers(const struct latchd_config *c, char *err, size_t errcap)
{
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        const struct opt *o = &opts[i];
        uint64_t v;
        if (o->kind == OPT_U32) {
            v = *(const uint32_t *)cfield(c, o->off);
        } else if (o->kind == OPT_U64) {
            v = *(const uint64_t *)cfield(c, o->off);
        } else {
            continue;
        }
        if (v < o->min || v > o->max) {
            return fail(err, errcap, LATCH_EINVAL,
                        "--%s: %" PRIu64 " is out of range [%" PRIu64 ", %" PRIu64 "]", o->name, v,
                        o->min, o->max);
        }
    }
    if ((uint64_t)c->election_timeout_ms < 5 * (uint64_t)c->heartbeat_interval_ms) {
        return fail(err, errcap, LATCH_EINVAL,
                    "--election-timeout[%" PRIu32
                    "] should be at least as 5 times as --heartbeat-interval[%" PRIu32 "]",
                    c->election_timeout_ms, c->heartbeat_interval_ms);
    }
    return 0;
}

static struct latchd_member *member_get(struct latchd_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->members_count; i++) {
        if (strlen(c->members[i].name) == len && memcmp(c->members[i].name, name, len) == 0) {
            return &c->members[i];
        }
    }
    struct latchd_member *m = realloc(c->members, (c->members_count + 1) * sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    c->members = m;
    m = &c->members[c->members_count];
    memset(m, 0, sizeof(*m));
    if ((m->name = strndup(name, len)) == NULL) {
        return NULL;
    }
    c->members_count++;
    return m;
}

static int member_add_url(struct latchd_member *m, const char *url)
{
    char **l = realloc(m->peer_urls, (m->peer_urls_count + 1) * sizeof(*l));
    if (l == NULL) {
        return LATCH_ENOMEM;
    }
    m->peer_urls = l;
    if ((l[m->peer_urls_count] = strdup(url)) == NULL) {
        return LATCH_ENOMEM;
    }
    m->peer_urls_count++;
    return 0;
}

/* The member that already lists url, or NULL. */
static const struct latchd_member *url_owner(const struct latchd_config *c, const char *url)
{
    for (size_t i = 0; i < c->members_count; i++) {
        for (size_t j = 0; j < c->members[i].peer_urls_count; j++) {
            if (url_str_same(c->members[i].peer_urls[j], url)) {
                return &c->members[i];
            }
        }
    }
    return NULL;
}

/* Adds one "name=URL" item (NUL-terminated, trimmed) of --initial-cluster to c->members. */
static int cluster_item(struct latchd_config *c, const char *item, char *err, size_t errcap)
{
    const char *eq = strchr(item, '=');
    if (eq == NULL) {
        return fail(err, errcap, LATCH_EINVAL, "--initial-cluster: \"%s\" is not name=peer-URL",
                    item);
    }
    if (eq == item) {
        return fail(err, errcap, LATCH_EINVAL, "--initial-cluster: \"%s\" has no member name",
                    item);
    }
    const char *url = eq + 1;
    size_t name_len = (size_t)(eq - item);
    if (*url == '\0') {
        return fail(err, errcap, LATCH_EINVAL, "--initial-cluster: member \"%.*s\" has no peer URL",
                    (int)name_len, item);
    }
    struct latchd_url u;
    const char *why = NULL;
    if (latchd_url_parse_why(url, &u, &why) != 0) {
        return fail(err, errcap, LATCH_EINVAL, "--initial-cluster: member \"%.*s\": \"%s\": %s",
                    (int)name_len, item, url, why);
    }
    const struct latchd_member *owner = url_owner(c, url);
    if (owner != NULL) {
        return fail(err, errcap, LATCH_EINVAL,
                    "--initial-cluster: peer URL \"%s\" of member \"%.*s\" is already listed for "
                    "member \"%s\"",
                    url, (int)name_len, item, owner->name);
    }
    struct latchd_member *m = member_get(c, item, name_len);
    if (m == NULL || member_add_url(m, url) != 0) {
        return fail_nomem(err, errcap);
    }
    return 0;
}

static int parse_cluster(struct latchd_config *c, char *err, size_t errcap)
{
    char **items = NULL;
    size_t count = 0;
    bool empty_item;
    free_members(c);
    if (split_list(c->initial_cluster, &items, &count, &empty_item) != 0) {
        return fail_nomem(err, errcap);
    }
    int rc = 0;
    if (count == 0) {
        rc = fail(err, errcap, LATCH_EINVAL, "--initial-cluster must not be empty");
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        rc = cluster_item(c, items[i], err, errcap);
    }
    free_list(&items, &count);
    if (rc != 0) {
        free_members(c);
    }
    return rc;
}

/* This member must be in the initial cluster with exactly its advertised peer URLs. */
static int check_self(const struct latchd_config *c, char *err, size_t errcap)
{
    const struct latchd_member *self = NULL;
    for (size_t i = 0; i < c->members_count; i++) {
        if (strcmp(c->members[i].name, c->name) == 0) {
            self = &c->members[i];
        }
    }
    if (self == NULL) {
        return fail(err, errcap, LATCH_EINVAL,
                    "--initial-cluster has no member named \"%s\" (this member's --name)", c->name);
    }
    bool match = true;
    for (size_t i = 0; i < c->initial_advertise_peer_urls_count && match; i++) {
        bool found = false;
        for (size_t j = 0; j < self->peer_urls_count && !found; j++) {
            found = url_str_same(c->initial_advertise_peer_urls[i], self->peer_urls[j]);
        }
        match = found;
    }
    for (size_t j = 0; j < self->peer_urls_count && match; j++) {
        bool found = false;
        for (size_t i = 0; i < c->initial_advertise_peer_urls_count && !found; i++) {
            found = url_str_same(c->initial_advertise_peer_urls[i], self->peer_urls[j]);
        }
        match = found;
    }
    if (!match) {
        char a[200], b[200];
        return fail(err, errcap, LATCH_EINVAL,
                    "--initial-advertise-peer-urls \"%s\" does not match member \"%s\" in "
                    "--initial-cluster (\"%s\")",
                    join(c->initial_advertise_peer_urls, c->initial_advertise_peer_urls_count, a,
                         sizeof(a)),
                    c->name, join(self->peer_urls, self->peer_urls_count, b, sizeof(b)));
    }
    return 0;
}

static int check_urls_all(const struct latchd_config *c, char *err, size_t errcap)
{
    static const struct {
        const char *name;
        enum url_use use;
    } lists[] = {
        {"listen-client-urls", USE_CLIENT_LISTEN},
        {"advertise-client-urls", USE_CLIENT_ADVERTISE},
        {"listen-peer-urls", USE_PEER_LISTEN},
        {"initial-advertise-peer-urls", USE_PEER_ADVERTISE},
        {"listen-metrics-urls", USE_CLIENT_LISTEN},
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        int rc = check_urls(c, opt_find(lists[i].name, strlen(lists[i].name)), lists[i].use, err,
                            errcap);
        if (rc != 0) {
            return rc;
        }
    }
    if (given(c, "listen-client-urls") && !given(c, "advertise-client-urls")) {
        return fail(err, errcap, LATCH_EINVAL,
                    "--advertise-client-urls is required when --listen-client-urls is set "
                    "explicitly");
    }
    return check_listen_overlap(c, err, errcap);
}

int latchd_config_validate(struct latchd_config *c, char *err, size_t errcap)
{
    if (c->name == NULL || c->name[0] == '\0') {
        return fail(err, errcap, LATCH_EINVAL, "--name must not be empty");
    }
    if (strpbrk(c->name, ",=") != NULL) {
        return fail(err, errcap, LATCH_EINVAL, "--name: \"%s\" must not contain ',' or '='",
                    c->name);
    }
    if (c->data_dir == NULL || c->data_dir[0] == '\0') {
        return fail(err, errcap, LATCH_EINVAL, "--data-dir must not be empty");
    }
    if (c->initial_cluster_token == NULL || c->initial_cluster_token[0] == '\0') {
        return fail(err, errcap, LATCH_EINVAL, "--initial-cluster-token must not be empty");
    }
    int rc = check_numbers(c, err, errcap);
    if (rc == 0) {
        rc = check_tls(c, err, errcap);
    }
    if (rc == 0) {
        rc = check_urls_all(c, err, errcap);
    }
    if (rc == 0) {
        rc = parse_cluster(c, err, errcap);
    }
    if (rc == 0) {
        rc = check_self(c, err, errcap);
    }
    return rc;
}

/* ---- output --------------------------------------------------------------------------- */

static void print_value(const struct latchd_config *c, const struct opt *o, FILE *f)
{
    switch (o->kind) {
    case OPT_STR: {
        const char *s = *(char *const *)cfield(c, o->off);
        fputs(s != NULL ? s : "", f);
        break;
    }
    case OPT_URLS: {
        char *const *l = *(char **const *)cfield(c, o->off);
        size_t n = *(const size_t *)cfield(c, o->count_off);
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s%s", i > 0 ? "," : "", l[i]);
        }
        break;
    }
    case OPT_U32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)cfield(c, o->off));
        break;
    case OPT_U64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)cfield(c, o->off));
        break;
    case OPT_BOOL:
        fputs(*(const bool *)cfield(c, o->off) ? "true" : "false", f);
        break;
    case OPT_LEVEL:
        fputs(c->log_level <= LATCH_LOG_ERROR ? level_names[c->log_level] : "?", f);
        break;
    case OPT_FORMAT:
        fputs(c->log_format <= LATCHD_LOG_JSON ? format_names[c->log_format] : "?", f);
        break;
    case OPT_STATE:
        fputs(c->initial_cluster_state <= LATCHD_CLUSTER_EXISTING
                  ? state_names[c->initial_cluster_state]
                  : "?",
              f);
        break;
    }
}

void latchd_config_print(const struct latchd_config *c, FILE *f)
{
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        fprintf(f, "%s=", opts[i].name);
        print_value(c, &opts[i], f);
        fputc('\n', f);
    }
}

void latchd_config_usage(FILE *f)
{
    fputs("Usage: latchd [flags]\n"
          "\n"
          "Runs one member of a latch cluster. With no flags it starts a one-member cluster\n"
          "on loopback with its data in ./default.latch.\n"
          "\n"
          "Every flag can also be set by an environment variable, LATCH_ and the flag name\n"
          "upper-cased with '-' as '_' (LATCH_DATA_DIR), or as a key in --config-file (a flat\n"
          "YAML file of \"flag-name: value\" lines). Flags override the environment, which\n"
          "overrides the file. Lists are comma-separated. Booleans: --flag or --flag=false.\n",
          f);
    for (size_t i = 0; i < OPTS_COUNT; i++) {
        const struct opt *o = &opts[i];
        char env[64];
        env_name(o, env, sizeof(env));
        if (o->section != NULL) {
            fprintf(f, "\n%s:\n", o->section);
        }
        fprintf(f, "  --%s%s%s\n        %s\n        ", o->name, o->arg != NULL ? " " : "",
                o->arg != NULL ? o->arg : "", o->help);
        if (o->def != NULL) {
            fprintf(f, "default %s; ", o->def);
        }
        fprintf(f, "env %s\n", env);
    }
    fputs("  --help, -h\n        Print this text and exit.\n"
          "  --version\n        Print the version and exit.\n",
          f);
}

bool latchd_config_log_json(const struct latchd_config *c, bool stderr_is_terminal)
{
    if (c->log_format == LATCHD_LOG_AUTO) {
        return !stderr_is_terminal;
    }
    return c->log_format == LATCHD_LOG_JSON;
}
