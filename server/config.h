/*
 * config.h — latchd's configuration: every setting, its default, and where it comes from
 * (DESIGN §6, docs/operations.md).
 *
 * Settings are named after etcd's flags wherever the meaning is the same, so operators'
 * habits carry over: --name, --data-dir, --listen-client-urls, --initial-cluster, ... Each
 * one can be given, from weakest to strongest:
 *
 *   1. the built-in default (latchd_config_init);
 *   2. the --config-file, a flat YAML subset with the flag names as keys;
 *   3. the environment: LATCH_ + the flag name upper-cased with '-' turned into '_'
 *      (LATCH_DATA_DIR, LATCH_INITIAL_CLUSTER, ...);
 *   4. the command line: --flag value, --flag=value, and for booleans --flag or
 *      --flag=true|false (a single leading '-' works too, as in Go's flag package).
 *
 * Unlike etcd, a config file does not make latchd ignore the environment and the flags: the
 * layers merge, so one file can serve a cluster and a flag can override it on one node.
 *
 * Typical use in main():
 *
 *   struct latchd_config c;
 *   char err[LATCHD_CONFIG_ERR_BYTES];
 *   latchd_config_init(&c);
 *   if (latchd_config_load(&c, argc, argv, environ, err, sizeof(err)) != 0 ||
 *       latchd_config_validate(&c, err, sizeof(err)) != 0) -> print "latchd: <err>", exit 2
 *   if (c.help) latchd_config_usage(stdout) ...; if (c.version) ...
 *   ...
 *   latchd_config_free(&c);
 *
 * Error messages are one sentence without a program prefix and without a trailing newline,
 * e.g. `--heartbeat-interval: not a number: "abc"`; main() adds "latchd: ".
 *
 * Nothing here is thread-safe; the config is built once at start-up and then only read.
 */
#ifndef SERVER_CONFIG_H
#define SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "latch_log.h"
#include "latch_version.h"

/* Room for any message latchd_config_load/validate write; longer ones are truncated. */
#define LATCHD_CONFIG_ERR_BYTES 512

/* Defaults (docs/operations.md). Ports stay clear of etcd (2379/2380) and ZooKeeper (2181). */
#define LATCHD_DEFAULT_NAME                   "default"
#define LATCHD_DEFAULT_CLIENT_URL             "http://127.0.0.1:2479"
#define LATCHD_DEFAULT_PEER_URL               "http://127.0.0.1:2480"
#define LATCHD_DEFAULT_METRICS_URL            "http://127.0.0.1:2481"
#define LATCHD_DEFAULT_CLUSTER_TOKEN          "latch-cluster"
#define LATCHD_DEFAULT_HEARTBEAT_INTERVAL_MS  100u
#define LATCHD_DEFAULT_ELECTION_TIMEOUT_MS    1000u
#define LATCHD_DEFAULT_SNAPSHOT_COUNT         100000u
#define LATCHD_DEFAULT_QUOTA_BACKEND_BYTES    ((uint64_t)2 << 30) /* 2 GiB, etcd's */
#define LATCHD_DEFAULT_MAX_REQUEST_BYTES      (1536u * 1024u)     /* 1.5 MiB, etcd's */
#define LATCHD_DEFAULT_MAX_TXN_OPS            128u
#define LATCHD_DEFAULT_MAX_CONCURRENT_STREAMS 1000u

/* The URL forms latchd accepts: http:// or https://, then host:port and nothing after. */
struct latchd_url {
    char scheme[8];  /* "http" or "https" */
    char host[256];  /* IPv4 literal, IPv6 literal without brackets, or a host name */
    uint16_t port;   /* 1..65535 */
    bool tls;        /* scheme is https */
    bool host_is_ip; /* host is an IPv4 or IPv6 literal */
};

/*
 * Parses url (borrowed for the call) into *out (zeroed first). Accepts
 * "http://127.0.0.1:2479", "https://[::1]:2479", "http://node-1.example:2480"; refuses a
 * missing or other scheme, a missing host or port, a port outside 1..65535, a bad IPv4 or
 * IPv6 literal, a bad host name, and anything after the port (path, query, user info).
 * Returns 0 or LATCH_EINVAL.
 */
int latchd_url_parse(const char *url, struct latchd_url *out);

/* Like latchd_url_parse; on LATCH_EINVAL *why (may be NULL) gets a static phrase saying why
 * ("missing port (want host:port)"). */
int latchd_url_parse_why(const char *url, struct latchd_url *out, const char **why);

enum latchd_cluster_state {
    LATCHD_CLUSTER_NEW = 0,      /* "new": bootstrap a cluster from --initial-cluster */
    LATCHD_CLUSTER_EXISTING = 1, /* "existing": join a running cluster */
};

enum latchd_log_format {
    LATCHD_LOG_AUTO = 0, /* text on a terminal, JSON otherwise */
    LATCHD_LOG_TEXT = 1,
    LATCHD_LOG_JSON = 2,
};

/* One member of --initial-cluster. Repeated "name=URL" entries give a member several URLs,
 * as in etcd. */
struct latchd_member {
    char *name;       /* owned by the config */
    char **peer_urls; /* owned by the config; peer_urls_count >= 1 */
    size_t peer_urls_count;
};

/*
 * Every setting of latchd. Every pointer is owned by the config and freed by
 * latchd_config_free(); callers read fields freely and, in tests, may replace a string by
 * freeing it and storing a malloc'd one. A string setting that is not set is "" (never NULL
 * after latchd_config_init), so cert_file[0] == '\0' means "no certificate".
 */
struct latchd_config {
    /* Member. */
    char *name;                /* --name, "default" */
    char *data_dir;            /* --data-dir, "./<name>.latch" unless given */
    char **listen_client_urls; /* --listen-client-urls (comma-separated), 127.0.0.1:2479 */
    size_t listen_client_urls_count;
    char **advertise_client_urls; /* --advertise-client-urls, http://127.0.0.1:2479 */
    size_t advertise_client_urls_count;
    char **listen_peer_urls; /* --listen-peer-urls, http://127.0.0.1:2480 */
    size_t listen_peer_urls_count;
    char **listen_metrics_urls; /* --listen-metrics-urls: /health /metrics /version; an empty
                                   list (--listen-metrics-urls=) turns the listener off */
    size_t listen_metrics_urls_count;

    /* Clustering. */
    char **initial_advertise_peer_urls; /* --initial-advertise-peer-urls, :2480 */
    size_t initial_advertise_peer_urls_count;
    char *initial_cluster; /* --initial-cluster, "<name>=<first advertise peer URL>" unless
                              given */
    enum latchd_cluster_state initial_cluster_state; /* --initial-cluster-state, new */
    char *initial_cluster_token;                     /* --initial-cluster-token */
    /* initial_cluster parsed by latchd_config_validate() (empty before): members in order of
       first appearance. */
    struct latchd_member *members;
    size_t members_count;

    /* Raft and storage. */
    uint32_t heartbeat_interval_ms; /* --heartbeat-interval, 100 */
    uint32_t election_timeout_ms;   /* --election-timeout, 1000; >= 5 x heartbeat */
    uint64_t snapshot_count;        /* --snapshot-count: applied entries between snapshots */
    uint64_t quota_backend_bytes;   /* --quota-backend-bytes, 2 GiB; 0 given = default */

    /* Limits. */
    uint32_t max_request_bytes;      /* --max-request-bytes, 1.5 MiB */
    uint32_t max_txn_ops;            /* --max-txn-ops, 128 */
    uint32_t max_concurrent_streams; /* --max-concurrent-streams (per gRPC connection) */

    /* Client TLS (also used by an https metrics listener). */
    char *cert_file;       /* --cert-file */
    char *key_file;        /* --key-file */
    char *trusted_ca_file; /* --trusted-ca-file */
    bool client_cert_auth; /* --client-cert-auth */

    /* Peer TLS. */
    char *peer_cert_file;
    char *peer_key_file;
    char *peer_trusted_ca_file;
    bool peer_client_cert_auth;

    /* Logging. */
    enum latch_log_level log_level;    /* --log-level debug|info|warn|error, info */
    enum latchd_log_format log_format; /* --log-format text|json|auto, auto */

    char *config_file; /* --config-file / LATCH_CONFIG_FILE, "" when none */

    /* Requests seen on the command line; when set, latchd prints and exits. */
    bool help;    /* --help, -h */
    bool version; /* --version */

    /* Private: one bit per option given explicitly, so derived defaults (data-dir,
       initial-cluster) follow --name. */
    uint64_t given_mask;
};

/*
 * Fills c with the defaults (data_dir "./default.latch", initial_cluster
 * "default=http://127.0.0.1:2480", ...). c's previous contents are ignored, not freed.
 * Returns 0 or LATCH_ENOMEM (c is then safe to free).
 */
int latchd_config_init(struct latchd_config *c);

/*
 * Applies, over what c holds, the config file (named by --config-file in argv, else by
 * LATCH_CONFIG_FILE in envp), then the LATCH_* variables of envp, then argv[1..argc-1]; then
 * derives what was not given (data_dir from name, initial_cluster from name and the first
 * initial advertise peer URL, quota 0 = default). argv and envp (NULL-terminated
 * "NAME=value" strings; NULL = empty) are borrowed for the call; unknown LATCH_* variables are
 * ignored. When argv holds --help/-h or --version, sets c->help / c->version and returns 0
 * without reading anything else. Values are checked for syntax and range here; relations
 * between settings are latchd_config_validate()'s job.
 *
 * Returns 0, LATCH_EINVAL (unknown flag or key, missing or bad value, unreadable or malformed
 * config file; err gets one sentence such as `unknown flag --foo` or
 * `/etc/latch.yaml:3: nesting is not supported (indented line)`) or LATCH_ENOMEM. On error c
 * holds whatever was applied so far and must still be freed. err (errcap bytes, may be NULL
 * when errcap is 0) is written only on error.
 */
int latchd_config_load(
    struct latchd_config *c, int argc, char **argv, char **envp, char *err, size_t errcap);

/*
 * Checks the settings together, as etcd's Config.validate does, and parses
 * c->initial_cluster into c->members (replacing any earlier result). Refuses: an empty name
 * or data dir; a URL that latchd_url_parse refuses or an empty URL list (the metrics list may
 * be empty); a listen URL whose host is not an IP address or "localhost"; two listeners on
 * one address; https without the matching certificate and key (client TLS for client and
 * metrics URLs, peer TLS for peer URLs); a certificate without its key or the other way
 * round; --client-cert-auth without --trusted-ca-file (peer likewise); --listen-client-urls
 * given without --advertise-client-urls; an election timeout under 5 heartbeats; numbers out
 * of range; a malformed initial cluster, a member without a peer URL, a peer URL listed
 * twice, this node's name missing from it, or its entry not matching
 * --initial-advertise-peer-urls.
 *
 * Returns 0, LATCH_EINVAL (err gets one sentence, e.g.
 * `--initial-cluster: member "n2" has no peer URL`) or LATCH_ENOMEM.
 */
int latchd_config_validate(struct latchd_config *c, char *err, size_t errcap);

/* Frees everything c owns and zeroes it; freeing a freed (or zeroed) config is a no-op. */
void latchd_config_free(struct latchd_config *c);

/* Writes latchd's --help text (flags, defaults, environment names) to f. */
void latchd_config_usage(FILE *f);

/*
 * Writes the effective settings to f, one "flag-name=value" line each, in a fixed order
 * (lists comma-separated, booleans true/false, enums by name, unset strings empty), e.g.
 * "heartbeat-interval=100". Nothing secret is held in the config: TLS settings are paths.
 */
void latchd_config_print(const struct latchd_config *c, FILE *f);

/* True when logs should be JSON: log_format json, or auto and stderr is not a terminal. */
bool latchd_config_log_json(const struct latchd_config *c, bool stderr_is_terminal);

#endif /* SERVER_CONFIG_H */
