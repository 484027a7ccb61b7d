/*
 * latchctl.c — the command-line client of latch (docs/latchctl.md), over liblatch's blocking
 * API: the tree (put/get/del/ls/tree/stat/watch), sessions, locks that run a command under
 * the lock with its fencing token, elections, and etcd's Lease/Cluster/Maintenance services
 * (lease, member list, status, snapshot save) through liblatch's raw calls.
 *
 * Exit codes: 0 success, 1 other error, 2 usage, 3 not found, 4 precondition failed (exists,
 * not empty, bad version, fenced, lock busy, not leader), 5 unavailable or timed out, 6 session
 * lost; `lock NAME -- CMD` exits with CMD's status (128+signal when a signal killed it).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <latch/latch.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcdserverpb/rpc.pb-c.h"

enum {
    EXIT_OK = 0,
    EXIT_ERR = 1,
    EXIT_USAGE = 2,
    EXIT_NOTFOUND = 3,
    EXIT_PRECOND = 4,
    EXIT_UNAVAIL = 5,
    EXIT_LOST = 6,
};

/* ---- options -------------------------------------------------------------------------- */

struct opts {
    const char *endpoints;
    const char *cacert, *cert, *key;
    bool json;
    uint64_t timeout_ms;      /* --timeout: command timeout (waits: lock, elect) */
    uint64_t dial_timeout_ms; /* --dial-timeout */
    bool help;
    /* command options */
    bool create, parents, ephemeral, sequential, recursive, serializable, shared, try_once;
    bool listen, once, holders, waiters, keys;
    int64_t version;
    int64_t rev;
    int64_t ttl;
    int64_t session;
    int64_t lock_delay_ms;
    long count;
    bool has_fence;
    char fence_lock[512];
    int64_t fence_token;
    bool fence_election;
    /* positionals and the command after "--" */
    char *pos[8];
    int npos;
    char **cmd;
};

static const char *prog = "latchctl";

static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", prog);
    va_end(ap);
    exit(EXIT_USAGE);
}

/* "10s", "500ms", "2m", "1h" or a plain number of seconds. */
static bool parse_duration_ms(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0) {
        return false;
    }
    double mult = 1000;
    if (strcmp(end, "ms") == 0) {
        mult = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        mult = 1000;
    } else if (strcmp(end, "m") == 0) {
        mult = 60000;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600000;
    } else {
        return false;
    }
    double ms = v * mult;
    if (ms > 1e15) {
        return false;
    }
    *out = (uint64_t)ms;
    return true;
}

static bool parse_i64(const char *s, int base, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, base);
    if (errno != 0 || end == s || *end != '\0') {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* A session or lease id: hex as etcdctl prints it (optionally 0x-prefixed). */
static bool parse_id(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno != 0 || end == s || *end != '\0' || v == 0) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* LOCK:TOKEN (the last ':' splits: lock names may hold ':'). */
static bool parse_fence(const char *s, struct opts *o)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(o->fence_lock)) {
        return false;
    }
    int64_t tok;
    if (!parse_i64(colon + 1, 10, &tok) || tok <= 0) {
        return false;
    }
    memcpy(o->fence_lock, s, (size_t)(colon - s));
    o->fence_lock[colon - s] = '\0';
    o->fence_token = tok;
    o->has_fence = true;
    return true;
}

/* The options a command accepts: names separated by ',' ("version=" takes a value). */
static bool allowed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return true;
        }
        p = e != NULL ? e + 1 : NULL;
    }
    return false;
}

static void parse_args(int argc, char **argv, int first, const char *cmd_opts, struct opts *o)
{
    for (int i = first; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            o->cmd = &argv[i + 1];
            return;
        }
        if (a[0] != '-' || a[1] == '\0' || (a[1] >= '0' && a[1] <= '9')) {
            if (o->npos == (int)(sizeof(o->pos) / sizeof(o->pos[0]))) {
                die_usage("too many arguments");
            }
            o->pos[o->npos++] = a;
            continue;
        }
        /* --name=value, --name value, -x */
        char name[64];
        const char *val = NULL;
        const char *n = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = strchr(n, '=');
        size_t len = eq != NULL ? (size_t)(eq - n) : strlen(n);
        if (len == 0 || len >= sizeof(name)) {
            die_usage("bad option %s", a);
        }
        memcpy(name, n, len);
        name[len] = '\0';
        if (eq != NULL) {
            val = eq + 1;
        }
        /* short aliases */
        static const char *const alias[][2] = {
            {"r", "recursive"},  {"o", "output"}, {"h", "help"},      {"p", "parents"},
            {"s", "sequential"}, {"l", "listen"}, {"w", "write-out"},
        };
        for (size_t k = 0; k < sizeof(alias) / sizeof(alias[0]); k++) {
            if (strcmp(name, alias[k][0]) == 0) {
                snprintf(name, sizeof(name), "%s", alias[k][1]);
            }
        }
        if (strcmp(name, "write-out") == 0) {
            snprintf(name, sizeof(name), "output");
        }
        static const char *const with_value =
            "endpoints,cacert,cert,key,output,timeout,dial-timeout,version,rev,ttl,session,fence,"
            "election-fence,lock-delay,count";
        bool takes = allowed(with_value, name);
        bool global = allowed("endpoints,cacert,cert,key,output,timeout,dial-timeout,help", name);
        if (!global && !allowed(cmd_opts, name)) {
            die_usage("unknown option --%s for this command", name);
        }
        if (takes && val == NULL) {
            if (i + 1 >= argc) {
                die_usage("--%s needs a value", name);
            }
            val = argv[++i];
        } else if (!takes && val != NULL) {
            die_usage("--%s takes no value", name);
        }
        bool ok = true;
        if (strcmp(name, "endpoints") == 0) {
            o->endpoints = val;
        } else if (strcmp(name, "cacert") == 0) {
            o->cacert = val;
        } else if (strcmp(name, "cert") == 0) {
            o->cert = val;
        } else if (strcmp(name, "key") == 0) {
            o->key = val;
        } else if (strcmp(name, "output") == 0) {
            ok = strcmp(val, "json") == 0 || strcmp(val, "simple") == 0;
            o->json = strcmp(val, "json") == 0;
        } else if (strcmp(name, "timeout") == 0) {
            ok = parse_duration_ms(val, &o->timeout_ms);
        } else if (strcmp(name, "dial-timeout") == 0) {
            ok = parse_duration_ms(val, &o->dial_timeout_ms);
        } else if (strcmp(name, "help") == 0) {
            o->help = true;
        } else if (strcmp(name, "version") == 0) {
            ok = parse_i64(val, 10, &o->version) && o->version >= 0;
        } else if (strcmp(name, "rev") == 0) {
            ok = parse_i64(val, 10, &o->rev) && o->rev >= 0;
        } else if (strcmp(name, "ttl") == 0) {
            uint64_t ms;
            ok = parse_duration_ms(val, &ms) && ms >= 1000;
            o->ttl = (int64_t)(ms / 1000);
        } else if (strcmp(name, "session") == 0) {
            ok = parse_id(val, &o->session);
        } else if (strcmp(name, "fence") == 0) {
            ok = parse_fence(val, o);
        } else if (strcmp(name, "election-fence") == 0) {
            ok = parse_fence(val, o);
            o->fence_election = true;
        } else if (strcmp(name, "lock-delay") == 0) {
            uint64_t ms;
            ok = parse_duration_ms(val, &ms);
            o->lock_delay_ms = (int64_t)ms;
        } else if (strcmp(name, "count") == 0) {
            int64_t c;
            ok = parse_i64(val, 10, &c) && c > 0;
            o->count = (long)c;
        } else if (strcmp(name, "create") == 0) {
            o->create = true;
        } else if (strcmp(name, "parents") == 0) {
            o->parents = true;
        } else if (strcmp(name, "ephemeral") == 0) {
            o->ephemeral = true;
        } else if (strcmp(name, "sequential") == 0) {
            o->sequential = true;
        } else if (strcmp(name, "recursive") == 0) {
            o->recursive = true;
        } else if (strcmp(name, "serializable") == 0) {
            o->serializable = true;
        } else if (strcmp(name, "shared") == 0) {
            o->shared = true;
        } else if (strcmp(name, "try") == 0) {
            o->try_once = true;
        } else if (strcmp(name, "listen") == 0) {
            o->listen = true;
        } else if (strcmp(name, "once") == 0) {
            o->once = true;
        } else if (strcmp(name, "holders") == 0) {
            o->holders = true;
        } else if (strcmp(name, "waiters") == 0) {
            o->waiters = true;
        } else if (strcmp(name, "keys") == 0) {
            o->keys = true;
        }
        if (!ok) {
            die_usage("bad value for --%s: %s", name, val);
        }
    }
}

/* ---- output ----------------------------------------------------------------------------- */

static int exit_code_of(int err)
{
    switch (err) {
    case LATCH_OK:
        return EXIT_OK;
    case LATCH_ENOTFOUND:
        return EXIT_NOTFOUND;
    case LATCH_EEXIST:
    case LATCH_ENOTEMPTY:
    case LATCH_EBADVERSION:
    case LATCH_EFENCED:
    case LATCH_EBUSY:
    case LATCH_ENOTLEADER:
    case LATCH_ESTATE:
        return EXIT_PRECOND;
    case LATCH_EUNAVAILABLE:
    case LATCH_ETIMEDOUT:
        return EXIT_UNAVAIL;
    case LATCH_ESESSIONLOST:
        return EXIT_LOST;
    case LATCH_EINVAL:
        return EXIT_ERR;
    default:
        return EXIT_ERR;
    }
}

/* Prints "latchctl: what: <error text>: <server message>" and returns the exit code. */
static int report(const char *what, const struct latch_result *r, int err)
{
    const char *msg = r != NULL ? r->message : "";
    if (msg[0] != '\0') {
        fprintf(stderr, "%s: %s: %s (%s)\n", prog, what, msg, latch_strerror(err));
    } else {
        fprintf(stderr, "%s: %s: %s\n", prog, what, latch_strerror(err));
    }
    return exit_code_of(err);
}

/* Writes n bytes to stdout (s may be NULL when n is 0). */
static void put_bytes(const uint8_t *s, size_t n)
{
    if (n > 0) {
        fwrite(s, 1, n, stdout);
    }
}

static void json_str(FILE *f, const uint8_t *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
    json_str(f, (const uint8_t *)s, strlen(s));
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += len;
    }
    return true;
}

static void base64(FILE *f, const uint8_t *s, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        fputc(t[(v >> 18) & 63], f);
        fputc(t[(v >> 12) & 63], f);
        fputc(i + 1 < n ? t[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
    fputc('"', f);
}

/* "value": "..." (when UTF-8) and "value_base64": "..." */
static void json_value(FILE *f, const uint8_t *v, size_t n)
{
    if (valid_utf8(v, n)) {
        fputs("\"value\":", f);
        json_str(f, v, n);
        fputc(',', f);
    }
    fputs("\"value_base64\":", f);
    base64(f, v, n);
}

static void json_stat(FILE *f, const struct latch_stat *s)
{
    fprintf(f,
            "{\"create_revision\":%" PRId64 ",\"mod_revision\":%" PRId64 ",\"version\":%" PRId64
            ",\"num_children\":%" PRId64 ",\"cversion\":%" PRId64 ",\"children_revision\":%" PRId64
            ",\"owner_session\":%" PRId64 ",\"value_size\":%" PRIu32 "}",
            s->create_revision, s->mod_revision, s->version, s->num_children, s->cversion,
            s->children_revision, s->owner_session, s->value_size);
}

static void human_stat(const char *path, const struct latch_stat *s)
{
    printf("path: %s\n", path);
    printf("version: %" PRId64 "\n", s->version);
    printf("create_revision: %" PRId64 "\n", s->create_revision);
    printf("mod_revision: %" PRId64 "\n", s->mod_revision);
    printf("num_children: %" PRId64 "\n", s->num_children);
    printf("cversion: %" PRId64 "\n", s->cversion);
    printf("children_revision: %" PRId64 "\n", s->children_revision);
    printf("owner_session: %" PRIx64 "\n", (uint64_t)s->owner_session);
    printf("value_size: %" PRIu32 "\n", s->value_size);
}

/* ---- signals and the self-pipe ------------------------------------------------------------- */

static int wake_pipe[2] = {-1, -1};
/* Set by signal handlers and by liblatch's background thread, read by the main thread:
 * atomics (lock-free, so also safe in a handler). lost_reason is written before session_lost. */
static atomic_int got_signal;
static atomic_int session_lost;
static char lost_reason[256];

static void wake(void)
{
    char b = 1;
    ssize_t rc = write(wake_pipe[1], &b, 1);
    (void)rc;
}

static void on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD) {
        got_signal = sig;
    }
    wake();
    errno = saved;
}

static void setup_signals(void)
{
    if (pipe(wake_pipe) != 0) {
        perror("pipe");
        exit(EXIT_ERR);
    }
    fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
    fcntl(wake_pipe[0], F_SETFD, FD_CLOEXEC);
    fcntl(wake_pipe[1], F_SETFD, FD_CLOEXEC);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
}

/* Waits until something writes to the pipe (a signal, a lost session) or ms pass (-1: no
 * limit). */
static void wait_wake(int ms)
{
    struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};
    (void)poll(&p, 1, ms);
    char buf[64];
    while (read(wake_pipe[0], buf, sizeof(buf)) > 0) {
    }
}

static void on_lost(struct latch_session *s, int err, const char *reason, void *data)
{
    (void)s;
    (void)err;
    (void)data;
    snprintf(lost_reason, sizeof(lost_reason), "%s", reason);
    session_lost = 1;
    wake();
}

/* ---- commands ------------------------------------------------------------------------------ */

struct ctx {
    struct latch_sync *s;
    struct opts *o;
};

static const struct latch_fence *fence_of(struct opts *o, struct latch_fence *f)
{
    if (!o->has_fence) {
        return NULL;
    }
    f->lock = o->fence_lock;
    f->token = o->fence_token;
    f->is_election = o->fence_election;
    return f;
}

static void need_args(struct opts *o, int min, int max, const char *usage)
{
    if (o->npos < min || o->npos > max) {
        die_usage("usage: %s %s", prog, usage);
    }
}

static int open_session(struct ctx *x, struct latch_session **sess)
{
    struct latch_result *r = NULL;
    int64_t ttl = x->o->ttl > 0 ? x->o->ttl : 10;
    int err = latch_sync_session_open(x->s, ttl, on_lost, NULL, sess, &r);
    if (err != LATCH_OK) {
        int rc = report("session open", r, err);
        latch_result_free(r);
        return rc;
    }
    latch_result_free(r);
    return EXIT_OK;
}

static void close_session(struct ctx *x, struct latch_session *sess)
{
    struct latch_result *r = NULL;
    int err = latch_sync_session_close(x->s, sess, &r);
    if (err != LATCH_OK && err != LATCH_ENOTFOUND && !session_lost) {
        report("session close", r, err);
    }
    latch_result_free(r);
}

/* Holds until SIGINT/SIGTERM/SIGHUP or the session's loss; returns EXIT_LOST on the latter. */
static int hold(void)
{
    while (!got_signal && !session_lost) {
        wait_wake(-1);
    }
    if (session_lost) {
        fprintf(stderr, "%s: session lost: %s\n", prog, lost_reason);
        return EXIT_LOST;
    }
    return EXIT_OK;
}

static int cmd_put(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 2, 2,
              "put PATH VALUE [--create] [--parents] [--ephemeral|--session ID] "
              "[--sequential] [--version N] [--fence LOCK:TOKEN]");
    const char *path = o->pos[0];
    const char *val = o->pos[1];
    size_t vlen = strlen(val);
    struct latch_fence fb;
    const struct latch_fence *f = fence_of(o, &fb);
    struct latch_session *sess = NULL;
    int64_t session = o->session;
    bool create_only = o->create || o->sequential || o->ephemeral || o->session != 0;
    if (o->ephemeral && session == 0) {
        int rc = open_session(x, &sess);
        if (rc != EXIT_OK) {
            return rc;
        }
        session = latch_session_id(sess);
    }
    struct latch_result *r = NULL;
    int err;
    bool created = false;
    if (!create_only && !o->parents) {
        err = latch_sync_set(x->s, path, val, vlen, o->version, f, &r);
        if (err == LATCH_ENOTFOUND && o->version == 0) {
            latch_result_free(r);
            r = NULL;
            err = latch_sync_create(x->s, path, val, vlen, 0, 0, f, &r);
            created = err == LATCH_OK;
        }
    } else if (!create_only) {
        err = latch_sync_set(x->s, path, val, vlen, o->version, f, &r);
        if (err == LATCH_ENOTFOUND && o->version == 0) {
            latch_result_free(r);
            r = NULL;
            err = latch_sync_create(x->s, path, val, vlen, 0, LATCH_PARENTS, f, &r);
            created = err == LATCH_OK;
        }
    } else {
        unsigned flags = (o->parents ? LATCH_PARENTS : 0) | (o->sequential ? LATCH_SEQUENTIAL : 0);
        err = latch_sync_create(x->s, path, val, vlen, session, flags, f, &r);
        created = err == LATCH_OK;
    }
    int rc = EXIT_OK;
    if (err != LATCH_OK) {
        rc = report(path, r, err);
    } else {
        const char *full = created && r->path != NULL && r->path[0] != '\0' ? r->path : path;
        if (o->json) {
            printf("{\"path\":");
            json_cstr(stdout, full);
            printf(",\"created\":%s,\"revision\":%" PRId64 ",\"version\":%" PRId64
                   ",\"session\":%" PRId64 "}\n",
                   created ? "true" : "false", r->revision, r->stat.version, session);
        } else {
            printf("%s %s (version %" PRId64 ", revision %" PRId64 ")\n",
                   created ? "created" : "set", full, r->stat.version, r->revision);
        }
        fflush(stdout);
    }
    latch_result_free(r);
    if (sess != NULL) {
        if (rc == EXIT_OK) {
            if (!o->json) {
                printf("holding session %" PRIx64 " until SIGINT/SIGTERM\n",
                       (uint64_t)latch_session_id(sess));
                fflush(stdout);
            }
            rc = hold();
        }
        close_session(x, sess);
    }
    return rc;
}

static int cmd_get(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "get PATH [--serializable]");
    struct latch_result *r = NULL;
    int err = latch_sync_get(x->s, o->pos[0], o->serializable ? LATCH_SERIALIZABLE : 0, &r);
    int rc = EXIT_OK;
    if (err != LATCH_OK) {
        rc = report(o->pos[0], r, err);
    } else if (o->json) {
        printf("{\"path\":");
        json_cstr(stdout, o->pos[0]);
        printf(",");
        json_value(stdout, r->value, r->value_len);
        printf(",\"revision\":%" PRId64 ",\"stat\":", r->revision);
        json_stat(stdout, &r->stat);
        printf("}\n");
    } else {
        put_bytes(r->value, r->value_len);
        printf("\n");
    }
    latch_result_free(r);
    return rc;
}

static int cmd_stat(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "stat PATH [--serializable]");
    struct latch_result *r = NULL;
    int err = latch_sync_stat(x->s, o->pos[0], o->serializable ? LATCH_SERIALIZABLE : 0, &r);
    int rc = EXIT_OK;
    if (err != LATCH_OK) {
        rc = report(o->pos[0], r, err);
    } else if (o->json) {
        printf("{\"path\":");
        json_cstr(stdout, o->pos[0]);
        printf(",\"revision\":%" PRId64 ",\"stat\":", r->revision);
        json_stat(stdout, &r->stat);
        printf("}\n");
    } else {
        human_stat(o->pos[0], &r->stat);
    }
    latch_result_free(r);
    return rc;
}

static int cmd_del(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "del PATH [-r] [--version N] [--fence LOCK:TOKEN]");
    struct latch_fence fb;
    struct latch_result *r = NULL;
    int err = latch_sync_delete(x->s, o->pos[0], o->version, o->recursive ? LATCH_RECURSIVE : 0,
                                fence_of(o, &fb), &r);
    int rc = EXIT_OK;
    if (err != LATCH_OK) {
        rc = report(o->pos[0], r, err);
    } else if (o->json) {
        printf("{\"deleted\":%" PRId64 ",\"revision\":%" PRId64 "}\n", r->deleted, r->revision);
    } else {
        printf("deleted %" PRId64 "\n", r->deleted);
    }
    latch_result_free(r);
    return rc;
}

/* Calls fn(name, stat) for every child of path, page by page. */
static int
each_child(struct ctx *x,
           const char *path,
           void (*fn)(struct ctx *x, const char *parent, const struct latch_child *c, void *arg),
           void *arg)
{
    char after[600] = "";
    for (;;) {
        struct latch_result *r = NULL;
        int err = latch_sync_children(x->s, path, after, 0,
                                      x->o->serializable ? LATCH_SERIALIZABLE : 0, &r);
        if (err != LATCH_OK) {
            int rc = report(path, r, err);
            latch_result_free(r);
            return rc;
        }
        for (size_t i = 0; i < r->n_children; i++) {
            fn(x, path, &r->children[i], arg);
        }
        bool more = r->more && r->n_children > 0;
        if (more) {
            snprintf(after, sizeof(after), "%s", r->children[r->n_children - 1].name);
        }
        latch_result_free(r);
        if (!more) {
            return EXIT_OK;
        }
    }
}

struct ls_state {
    bool first;
};

static void ls_one(struct ctx *x, const char *parent, const struct latch_child *c, void *arg)
{
    (void)parent;
    struct ls_state *st = arg;
    if (x->o->json) {
        printf("%s{\"name\":", st->first ? "" : ",");
        json_cstr(stdout, c->name);
        printf(",\"stat\":");
        json_stat(stdout, &c->stat);
        printf("}");
    } else {
        printf("%s\n", c->name);
    }
    st->first = false;
}

static int cmd_ls(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "ls PATH [--serializable]");
    struct ls_state st = {.first = true};
    if (o->json) {
        printf("{\"path\":");
        json_cstr(stdout, o->pos[0]);
        printf(",\"children\":[");
    }
    int rc = each_child(x, o->pos[0], ls_one, &st);
    if (o->json && rc == EXIT_OK) {
        printf("]}\n");
    } else if (o->json) {
        printf("\n");
    }
    return rc;
}

struct tree_state {
    bool first;
    int rc;
    int depth;
};

static void join_path(char *out, size_t cap, const char *parent, const char *name)
{
    if (strcmp(parent, "/") == 0) {
        snprintf(out, cap, "/%s", name);
    } else {
        snprintf(out, cap, "%s/%s", parent, name);
    }
}

static void tree_one(struct ctx *x, const char *parent, const struct latch_child *c, void *arg)
{
    struct tree_state *st = arg;
    char full[1100];
    join_path(full, sizeof(full), parent, c->name);
    if (x->o->json) {
        printf("%s{\"path\":", st->first ? "" : ",");
        json_cstr(stdout, full);
        printf(",\"stat\":");
        json_stat(stdout, &c->stat);
        printf("}");
    } else {
        printf("%s\n", full);
    }
    st->first = false;
    if (c->stat.num_children > 0 && st->depth < 64) {
        st->depth++;
        int rc = each_child(x, full, tree_one, st);
        st->depth--;
        if (rc != EXIT_OK) {
            st->rc = rc;
        }
    }
}

static int cmd_tree(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "tree PATH [--serializable]");
    struct tree_state st = {.first = true, .rc = EXIT_OK};
    /* The root of the listing itself (the tree's "/" may not be a node). */
    struct latch_result *r = NULL;
    int err = latch_sync_stat(x->s, o->pos[0], o->serializable ? LATCH_SERIALIZABLE : 0, &r);
    if (err != LATCH_OK && !(err == LATCH_ENOTFOUND && strcmp(o->pos[0], "/") == 0)) {
        int rc = report(o->pos[0], r, err);
        latch_result_free(r);
        return rc;
    }
    if (o->json) {
        printf("{\"path\":");
        json_cstr(stdout, o->pos[0]);
        printf(",\"nodes\":[");
    } else {
        printf("%s\n", o->pos[0]);
    }
    latch_result_free(r);
    int rc = each_child(x, o->pos[0], tree_one, &st);
    if (rc == EXIT_OK) {
        rc = st.rc;
    }
    if (o->json) {
        printf("]}\n");
    }
    return rc;
}

/* -- watch -- */

/* Written by the callbacks on liblatch's thread, read by the main thread: end_err and
 * end_msg are written before ended is set. */
struct watch_state {
    atomic_long seen;
    long want;
    int end_err;
    atomic_bool ended;
    char end_msg[256];
};

static const char *kind_name(enum latch_event_kind k)
{
    switch (k) {
    case LATCH_EVENT_CREATED:
        return "CREATED";
    case LATCH_EVENT_CHANGED:
        return "CHANGED";
    case LATCH_EVENT_DELETED:
        return "DELETED";
    }
    return "?";
}

static struct opts *g_opts;

static void w_event(struct latch_watch *w, const struct latch_event *ev, void *data)
{
    (void)w;
    struct watch_state *st = data;
    if (g_opts->json) {
        printf("{\"kind\":\"%s\",\"path\":", kind_name(ev->kind));
        json_cstr(stdout, ev->path);
        printf(",\"revision\":%" PRId64 ",", ev->revision);
        json_value(stdout, ev->value, ev->value_len);
        printf(",\"stat\":");
        json_stat(stdout, &ev->stat);
        printf("}\n");
    } else {
        printf("%s %s %" PRId64, kind_name(ev->kind), ev->path, ev->revision);
        if (ev->kind != LATCH_EVENT_DELETED) {
            printf(" ");
            put_bytes(ev->value, ev->value_len);
        }
        printf("\n");
    }
    fflush(stdout);
    st->seen++;
    if (st->want > 0 && st->seen >= st->want) {
        wake();
    }
}

static void w_end(struct latch_watch *w, int err, const char *message, void *data)
{
    (void)w;
    struct watch_state *st = data;
    st->end_err = err;
    snprintf(st->end_msg, sizeof(st->end_msg), "%s", message);
    st->ended = true;
    wake();
}

static int cmd_watch(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "watch PATH [-r] [--rev N] [--count N]");
    struct watch_state st = {.want = o->count};
    static const struct latch_watch_cbs cbs = {.on_event = w_event, .on_end = w_end};
    struct latch_watch *w = NULL;
    int err = latch_sync_watch(x->s, o->pos[0], o->recursive ? LATCH_RECURSIVE : 0, o->rev, &cbs,
                               &st, &w);
    if (err != LATCH_OK) {
        return report("watch", NULL, err);
    }
    while (!got_signal && !st.ended && !(st.want > 0 && st.seen >= st.want)) {
        wait_wake(-1);
    }
    bool ended = st.ended;
    latch_sync_watch_cancel(x->s, w);
    if (ended && st.end_err != LATCH_ECANCELED) {
        fprintf(stderr, "%s: watch ended: %s (%s)\n", prog, st.end_msg, latch_strerror(st.end_err));
        return exit_code_of(st.end_err);
    }
    return EXIT_OK;
}

/* -- sessions -- */

static int cmd_session(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 2, "session open [--ttl N] | session close ID");
    if (strcmp(o->pos[0], "open") == 0) {
        need_args(o, 1, 1, "session open [--ttl N]");
        struct latch_session *sess = NULL;
        int rc = open_session(x, &sess);
        if (rc != EXIT_OK) {
            return rc;
        }
        if (o->json) {
            printf("{\"session\":%" PRId64 ",\"ttl\":%" PRId64 "}\n", latch_session_id(sess),
                   latch_session_ttl(sess));
        } else {
            printf("session %" PRIx64 " opened with TTL %" PRId64
                   "s; kept alive until SIGINT/SIGTERM\n",
                   (uint64_t)latch_session_id(sess), latch_session_ttl(sess));
        }
        fflush(stdout);
        rc = hold();
        close_session(x, sess);
        return rc;
    }
    if (strcmp(o->pos[0], "close") == 0) {
        need_args(o, 2, 2, "session close ID");
        int64_t id;
        if (!parse_id(o->pos[1], &id)) {
            die_usage("bad session id %s (hex)", o->pos[1]);
        }
        /* latch.v1 SessionClose through the raw call (no session handle needed). */
        uint8_t buf[16];
        size_t n = 0;
        buf[n++] = 0x08; /* field 1, varint */
        uint64_t v = (uint64_t)id;
        while (v >= 0x80) {
            buf[n++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        buf[n++] = (uint8_t)v;
        struct latch_result *r = NULL;
        int err = latch_sync_raw_unary(x->s, "/latch.v1.Latch/SessionClose", buf, n, true, 0, &r);
        int rc = err == LATCH_OK ? EXIT_OK : report("session close", r, err);
        if (rc == EXIT_OK) {
            printf(o->json ? "{\"closed\":true}\n" : "session %s closed\n", o->pos[1]);
        }
        latch_result_free(r);
        return rc;
    }
    die_usage("unknown session command %s", o->pos[0]);
    return EXIT_USAGE;
}

/* -- waits that a signal can abort -- */

/* An Acquire or a Campaign run on a helper thread, so that the main thread can watch for
 * SIGINT/SIGTERM meanwhile. */
struct wait_job {
    struct ctx *x;
    bool campaign;
    const char *name;
    const char *value;
    int64_t session;
    unsigned flags;
    uint64_t timeout_ms;
    int err;
    struct latch_result *r;
    atomic_bool done;
};

static void *wait_thread(void *arg)
{
    struct wait_job *j = arg;
    if (j->campaign) {
        j->err = latch_sync_campaign(j->x->s, j->name, j->session, j->value, strlen(j->value),
                                     j->timeout_ms, &j->r);
    } else {
        j->err = latch_sync_lock_acquire(j->x->s, j->name, j->session, j->flags,
                                         j->x->o->lock_delay_ms, j->timeout_ms, &j->r);
    }
    atomic_store(&j->done, true);
    wake();
    return NULL;
}

/* Runs j; a signal meanwhile closes the session (*sess becomes NULL), which ends the wait on
 * the server. Returns j's error and hands its result over in *r. */
static int abortable_wait(struct ctx *x,
                          struct wait_job *j,
                          struct latch_session **sess,
                          struct latch_result **r)
{
    pthread_t t;
    atomic_init(&j->done, false);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
    int created = pthread_create(&t, NULL, wait_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (created != 0) {
        wait_thread(j);
    } else {
        bool closed = false;
        while (!atomic_load(&j->done)) {
            if ((got_signal || session_lost) && !closed) {
                closed = true;
                close_session(x, *sess);
                *sess = NULL;
            }
            wait_wake(500);
        }
        pthread_join(t, NULL);
    }
    *r = j->r;
    if (session_lost && j->err != LATCH_OK) {
        fprintf(stderr, "%s: session lost while waiting: %s\n", prog, lost_reason);
    }
    return j->err;
}

/* -- lock -- */

static int print_grants(struct ctx *x, const char *what, const struct latch_result *r)
{
    if (x->o->json) {
        printf("{\"%s\":[", what);
        for (size_t i = 0; i < r->n_grants; i++) {
            printf("%s{\"token\":%" PRId64 ",\"session\":%" PRId64 ",\"shared\":%s}",
                   i > 0 ? "," : "", r->grants[i].token, r->grants[i].session,
                   r->grants[i].shared ? "true" : "false");
        }
        printf("]");
        if (strcmp(what, "holders") == 0) {
            printf(",\"lock_delay\":%s", r->lock_delay ? "true" : "false");
        }
        printf("}\n");
    } else {
        for (size_t i = 0; i < r->n_grants; i++) {
            printf("token %" PRId64 " session %" PRIx64 "%s\n", r->grants[i].token,
                   (uint64_t)r->grants[i].session, r->grants[i].shared ? " shared" : "");
        }
        if (r->lock_delay) {
            printf("(held back by lock-delay)\n");
        }
    }
    return EXIT_OK;
}

static int run_under_lock(struct ctx *x, const char *name, int64_t token)
{
    char tok[32];
    snprintf(tok, sizeof(tok), "%" PRId64, token);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return EXIT_ERR;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        setenv("LATCH_LOCK_NAME", name, 1);
        setenv("LATCH_FENCING_TOKEN", tok, 1);
        execvp(x->o->cmd[0], x->o->cmd);
        fprintf(stderr, "%s: %s: %s\n", prog, x->o->cmd[0], strerror(errno));
        _exit(127);
    }
    bool killed_for_loss = false;
    int ticks_since_term = 0;
    int forwarded = 0;
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            if (killed_for_loss) {
                fprintf(stderr,
                        "%s: session lost while the command ran: the lock %s (token %s) may be "
                        "held by another client now\n",
                        prog, name, tok);
                return EXIT_LOST;
            }
            if (WIFEXITED(status)) {
                return WEXITSTATUS(status);
            }
            return 128 + WTERMSIG(status);
        }
        if (session_lost && !killed_for_loss) {
            killed_for_loss = true;
            fprintf(stderr, "%s: session lost (%s): sending SIGTERM to the command\n", prog,
                    lost_reason);
            kill(pid, SIGTERM);
        } else if (killed_for_loss && ++ticks_since_term == 50) {
            kill(pid, SIGKILL); /* 10 s after SIGTERM */
        }
        if (got_signal != 0 && got_signal != forwarded) {
            forwarded = got_signal;
            kill(pid, got_signal);
        }
        wait_wake(200);
    }
}

static int cmd_lock(struct ctx *x)
{
    struct opts *o = x->o;
    if (o->holders || o->waiters) {
        need_args(o, 1, 1, "lock --holders|--waiters NAME");
        struct latch_result *r = NULL;
        unsigned fl = o->serializable ? LATCH_SERIALIZABLE : 0;
        int err = o->holders ? latch_sync_lock_holder(x->s, o->pos[0], fl, &r)
                             : latch_sync_lock_waiters(x->s, o->pos[0], fl, &r);
        int rc = err != LATCH_OK ? report(o->pos[0], r, err)
                                 : print_grants(x, o->holders ? "holders" : "waiters", r);
        latch_result_free(r);
        return rc;
    }
    need_args(o, 1, 1, "lock NAME [--shared] [--ttl N] [--timeout D] [--try] [-- CMD...]");
    const char *name = o->pos[0];
    struct latch_session *sess = NULL;
    int rc = open_session(x, &sess);
    if (rc != EXIT_OK) {
        return rc;
    }
    struct latch_result *r = NULL;
    unsigned flags = (o->shared ? LATCH_SHARED : 0) | (o->try_once ? LATCH_TRY : 0);
    struct wait_job j = {.x = x,
                         .name = name,
                         .session = latch_session_id(sess),
                         .flags = flags,
                         .timeout_ms = o->timeout_ms};
    int err = abortable_wait(x, &j, &sess, &r);
    if (err != LATCH_OK || got_signal) {
        rc = got_signal ? 128 + got_signal : report(name, r, err);
        if (err == LATCH_OK) {
            latch_sync_lock_release(x->s, name, r->token, NULL);
        }
        latch_result_free(r);
        if (sess != NULL) {
            close_session(x, sess);
        }
        return rc;
    }
    int64_t token = r->token;
    latch_result_free(r);
    if (o->cmd != NULL && o->cmd[0] != NULL) {
        rc = run_under_lock(x, name, token);
    } else {
        if (o->json) {
            printf("{\"lock\":");
            json_cstr(stdout, name);
            printf(",\"token\":%" PRId64 ",\"session\":%" PRId64 "}\n", token,
                   latch_session_id(sess));
        } else {
            printf("%s %" PRId64 "\n", name, token);
        }
        fflush(stdout);
        rc = hold();
    }
    if (!session_lost) {
        r = NULL;
        err = latch_sync_lock_release(x->s, name, token, &r);
        if (err != LATCH_OK) {
            report("release", r, err);
        }
        latch_result_free(r);
    }
    close_session(x, sess);
    return rc;
}

/* -- elections -- */

struct observe_state {
    atomic_bool ended;
    int end_err;
    char end_msg[256];
};

static void o_leader(struct latch_watch *w, const struct latch_result *r, void *data)
{
    (void)w;
    (void)data;
    if (g_opts->json) {
        printf("{\"token\":%" PRId64 ",\"session\":%" PRId64 ",", r->token, r->session);
        json_value(stdout, r->value, r->value_len);
        printf(",\"revision\":%" PRId64 "}\n", r->revision);
    } else if (r->token == 0) {
        printf("(no leader)\n");
    } else {
        put_bytes(r->value, r->value_len);
        printf("\n");
    }
    fflush(stdout);
}

static void o_end(struct latch_watch *w, int err, const char *message, void *data)
{
    (void)w;
    struct observe_state *st = data;
    st->end_err = err;
    snprintf(st->end_msg, sizeof(st->end_msg), "%s", message);
    st->ended = true;
    wake();
}

static int cmd_elect(struct ctx *x)
{
    struct opts *o = x->o;
    if (o->listen) {
        need_args(o, 1, 1, "elect -l NAME [--once]");
        if (o->once) {
            struct latch_result *r = NULL;
            int err =
                latch_sync_leader(x->s, o->pos[0], o->serializable ? LATCH_SERIALIZABLE : 0, &r);
            if (err != LATCH_OK) {
                int rc = report(o->pos[0], r, err);
                latch_result_free(r);
                return rc;
            }
            o_leader(NULL, r, NULL);
            int rc = r->token == 0 ? EXIT_NOTFOUND : EXIT_OK;
            latch_result_free(r);
            return rc;
        }
        struct observe_state st = {0};
        static const struct latch_watch_cbs cbs = {.on_leader = o_leader, .on_end = o_end};
        struct latch_watch *w = NULL;
        int err = latch_sync_observe(x->s, o->pos[0], &cbs, &st, &w);
        if (err != LATCH_OK) {
            return report("observe", NULL, err);
        }
        while (!got_signal && !st.ended) {
            wait_wake(-1);
        }
        bool ended = st.ended;
        latch_sync_watch_cancel(x->s, w);
        if (ended && st.end_err != LATCH_ECANCELED) {
            fprintf(stderr, "%s: observe ended: %s (%s)\n", prog, st.end_msg,
                    latch_strerror(st.end_err));
            return exit_code_of(st.end_err);
        }
        return EXIT_OK;
    }
    need_args(o, 2, 2, "elect NAME VALUE [--ttl N] [--timeout D] | elect -l NAME");
    const char *name = o->pos[0];
    struct latch_session *sess = NULL;
    int rc = open_session(x, &sess);
    if (rc != EXIT_OK) {
        return rc;
    }
    struct latch_result *r = NULL;
    struct wait_job j = {.x = x,
                         .campaign = true,
                         .name = name,
                         .value = o->pos[1],
                         .session = latch_session_id(sess),
                         .timeout_ms = o->timeout_ms};
    int err = abortable_wait(x, &j, &sess, &r);
    if (err != LATCH_OK || got_signal) {
        rc = got_signal ? 128 + got_signal : report(name, r, err);
        if (err == LATCH_OK) {
            latch_sync_resign(x->s, name, r->token, NULL);
        }
        latch_result_free(r);
        if (sess != NULL) {
            close_session(x, sess);
        }
        return rc;
    }
    int64_t token = r->token;
    latch_result_free(r);
    if (o->json) {
        printf("{\"election\":");
        json_cstr(stdout, name);
        printf(",\"token\":%" PRId64 ",\"session\":%" PRId64 "}\n", token, latch_session_id(sess));
    } else {
        printf("%s %" PRId64 "\n", name, token);
    }
    fflush(stdout);
    rc = hold();
    if (!session_lost) {
        r = NULL;
        err = latch_sync_resign(x->s, name, token, &r);
        if (err != LATCH_OK) {
            report("resign", r, err);
        }
        latch_result_free(r);
    }
    close_session(x, sess);
    return rc;
}

/* -- etcd services -- */

static int raw_pb(struct ctx *x,
                  const char *method,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc,
                  bool idempotent,
                  ProtobufCMessage **out)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return EXIT_ERR;
    }
    protobuf_c_message_pack(req, buf);
    struct latch_result *r = NULL;
    int err = latch_sync_raw_unary(x->s, method, buf, len, idempotent, 0, &r);
    free(buf);
    if (err != LATCH_OK) {
        int rc = report(method, r, err);
        latch_result_free(r);
        return rc;
    }
    *out = protobuf_c_message_unpack(desc, NULL, r->raw_len, r->raw);
    latch_result_free(r);
    if (*out == NULL) {
        fprintf(stderr, "%s: %s: the response does not parse\n", prog, method);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

static int cmd_lease(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 2, 2, "lease grant TTL | revoke ID | keepalive ID [--once] | ttl ID [--keys]");
    const char *sub = o->pos[0];
    ProtobufCMessage *m = NULL;
    int rc;
    if (strcmp(sub, "grant") == 0) {
        uint64_t ms;
        if (!parse_duration_ms(o->pos[1], &ms) || ms < 1000) {
            die_usage("bad TTL %s", o->pos[1]);
        }
        Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
        req.ttl = (int64_t)(ms / 1000);
        rc = raw_pb(x, "/etcdserverpb.Lease/LeaseGrant", &req.base,
                    &etcdserverpb__lease_grant_response__descriptor, false, &m);
        if (rc == EXIT_OK) {
            Etcdserverpb__LeaseGrantResponse *r = (void *)m;
            if (o->json) {
                printf("{\"id\":%" PRId64 ",\"ttl\":%" PRId64 "}\n", r->id, r->ttl);
            } else {
                printf("lease %" PRIx64 " granted with TTL(%" PRId64 "s)\n", (uint64_t)r->id,
                       r->ttl);
            }
        }
    } else {
        int64_t id;
        if (!parse_id(o->pos[1], &id)) {
            die_usage("bad lease id %s (hex)", o->pos[1]);
        }
        if (strcmp(sub, "revoke") == 0) {
            Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
            req.id = id;
            rc = raw_pb(x, "/etcdserverpb.Lease/LeaseRevoke", &req.base,
                        &etcdserverpb__lease_revoke_response__descriptor, true, &m);
            if (rc == EXIT_OK) {
                printf(o->json ? "{\"revoked\":true}\n" : "lease %s revoked\n", o->pos[1]);
            }
        } else if (strcmp(sub, "ttl") == 0) {
            Etcdserverpb__LeaseTimeToLiveRequest req =
                ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
            req.id = id;
            req.keys = o->keys;
            rc = raw_pb(x, "/etcdserverpb.Lease/LeaseTimeToLive", &req.base,
                        &etcdserverpb__lease_time_to_live_response__descriptor, true, &m);
            if (rc == EXIT_OK) {
                Etcdserverpb__LeaseTimeToLiveResponse *r = (void *)m;
                if (o->json) {
                    printf("{\"id\":%" PRId64 ",\"ttl\":%" PRId64 ",\"granted_ttl\":%" PRId64
                           ",\"keys\":[",
                           r->id, r->ttl, r->grantedttl);
                    for (size_t i = 0; i < r->n_keys; i++) {
                        printf(i > 0 ? "," : "");
                        json_str(stdout, r->keys[i].data, r->keys[i].len);
                    }
                    printf("]}\n");
                } else if (r->ttl < 0) {
                    printf("lease %s already expired\n", o->pos[1]);
                    rc = EXIT_NOTFOUND;
                } else {
                    printf("lease %s granted with TTL(%" PRId64 "s), remaining(%" PRId64 "s)\n",
                           o->pos[1], r->grantedttl, r->ttl);
                    for (size_t i = 0; i < r->n_keys; i++) {
                        printf("  key ");
                        put_bytes(r->keys[i].data, r->keys[i].len);
                        printf("\n");
                    }
                }
            }
        } else if (strcmp(sub, "keepalive") == 0) {
            rc = EXIT_OK;
            while (!got_signal) {
                Etcdserverpb__LeaseKeepAliveRequest req =
                    ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
                req.id = id;
                /* One request per bidirectional stream: send, half-close, read the answer. */
                rc = raw_pb(x, "/etcdserverpb.Lease/LeaseKeepAlive", &req.base,
                            &etcdserverpb__lease_keep_alive_response__descriptor, true, &m);
                if (rc != EXIT_OK) {
                    break;
                }
                Etcdserverpb__LeaseKeepAliveResponse *r = (void *)m;
                int64_t ttl = r->ttl;
                if (ttl <= 0) {
                    fprintf(stderr, "%s: lease %s expired or revoked\n", prog, o->pos[1]);
                    rc = EXIT_NOTFOUND;
                    break;
                }
                if (o->json) {
                    printf("{\"id\":%" PRId64 ",\"ttl\":%" PRId64 "}\n", r->id, ttl);
                } else {
                    printf("lease %s keepalived with TTL(%" PRId64 ")\n", o->pos[1], ttl);
                }
                fflush(stdout);
                protobuf_c_message_free_unpacked(m, NULL);
                m = NULL;
                if (o->once) {
                    break;
                }
                int64_t every = ttl * 1000 / 3;
                struct timespec t0;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                while (!got_signal) {
                    struct timespec t1;
                    clock_gettime(CLOCK_MONOTONIC, &t1);
                    int64_t el =
                        (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
                    if (el >= every) {
                        break;
                    }
                    wait_wake((int)(every - el));
                }
            }
        } else {
            die_usage("unknown lease command %s", sub);
            rc = EXIT_USAGE;
        }
    }
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_member(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 1, 1, "member list");
    if (strcmp(o->pos[0], "list") != 0) {
        die_usage("unknown member command %s", o->pos[0]);
    }
    Etcdserverpb__MemberListRequest req = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = raw_pb(x, "/etcdserverpb.Cluster/MemberList", &req.base,
                    &etcdserverpb__member_list_response__descriptor, true, &m);
    if (rc != EXIT_OK) {
        return rc;
    }
    Etcdserverpb__MemberListResponse *r = (void *)m;
    if (o->json) {
        printf("{\"members\":[");
    }
    for (size_t i = 0; i < r->n_members; i++) {
        const Etcdserverpb__Member *mb = r->members[i];
        if (o->json) {
            printf("%s{\"id\":\"%" PRIx64 "\",\"name\":", i > 0 ? "," : "", mb->id);
            json_cstr(stdout, mb->name);
            printf(",\"peer_urls\":[");
            for (size_t k = 0; k < mb->n_peerurls; k++) {
                printf(k > 0 ? "," : "");
                json_cstr(stdout, mb->peerurls[k]);
            }
            printf("],\"client_urls\":[");
            for (size_t k = 0; k < mb->n_clienturls; k++) {
                printf(k > 0 ? "," : "");
                json_cstr(stdout, mb->clienturls[k]);
            }
            printf("],\"is_learner\":%s}", mb->islearner ? "true" : "false");
        } else {
            printf("%" PRIx64 ", started, %s, ", mb->id, mb->name);
            for (size_t k = 0; k < mb->n_peerurls; k++) {
                printf("%s%s", k > 0 ? "," : "", mb->peerurls[k]);
            }
            printf(", ");
            for (size_t k = 0; k < mb->n_clienturls; k++) {
                printf("%s%s", k > 0 ? "," : "", mb->clienturls[k]);
            }
            printf(", %s\n", mb->islearner ? "true" : "false");
        }
    }
    if (o->json) {
        printf("]}\n");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return EXIT_OK;
}

static struct latch_options client_options(const struct opts *o, const char *endpoints)
{
    struct latch_options lo = {
        .endpoints = endpoints,
        .ca_file = o->cacert,
        .cert_file = o->cert,
        .key_file = o->key,
        .call_timeout_ms = o->timeout_ms,
        .connect_timeout_ms = o->dial_timeout_ms,
    };
    return lo;
}

/* Status of every endpoint, one client each (etcdctl endpoint status). */
static int cmd_status(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 0, 0, "status");
    char *eps[16];
    size_t n = 0;
    char err[256];
    const char *list = o->endpoints;
    if (latch_endpoints_parse(list, eps, 16, &n, err, sizeof(err)) != LATCH_OK) {
        die_usage("--endpoints: %s", err);
    }
    int rc = EXIT_OK;
    if (o->json) {
        printf("[");
    }
    for (size_t i = 0; i < n; i++) {
        struct latch_options lo = client_options(o, eps[i]);
        struct latch_sync *s = NULL;
        int e = latch_sync_new(&lo, &s, err, sizeof(err));
        ProtobufCMessage *m = NULL;
        int one = EXIT_ERR;
        if (e == LATCH_OK) {
            struct ctx y = {.s = s, .o = o};
            Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
            one = raw_pb(&y, "/etcdserverpb.Maintenance/Status", &req.base,
                         &etcdserverpb__status_response__descriptor, true, &m);
        } else {
            fprintf(stderr, "%s: %s: %s\n", prog, eps[i], err);
        }
        if (one == EXIT_OK) {
            Etcdserverpb__StatusResponse *r = (void *)m;
            uint64_t id = r->header != NULL ? r->header->member_id : 0;
            if (o->json) {
                printf("%s{\"endpoint\":", i > 0 ? "," : "");
                json_cstr(stdout, eps[i]);
                printf(",\"member_id\":\"%" PRIx64 "\",\"version\":", id);
                json_cstr(stdout, r->version);
                printf(",\"db_size\":%" PRId64 ",\"leader\":\"%" PRIx64
                       "\",\"is_leader\":%s,\"raft_term\":%" PRIu64 ",\"raft_index\":%" PRIu64
                       ",\"raft_applied_index\":%" PRIu64 ",\"is_learner\":%s}",
                       r->dbsize, r->leader, r->leader == id ? "true" : "false", r->raftterm,
                       r->raftindex, r->raftappliedindex, r->islearner ? "true" : "false");
            } else {
                printf("%s, %" PRIx64 ", %s, %" PRId64 " B, %s, %s, %" PRIu64 ", %" PRIu64
                       ", %" PRIu64 "\n",
                       eps[i], id, r->version, r->dbsize, r->leader == id ? "true" : "false",
                       r->islearner ? "true" : "false", r->raftterm, r->raftindex,
                       r->raftappliedindex);
            }
            protobuf_c_message_free_unpacked(m, NULL);
        } else {
            rc = one;
            if (o->json) {
                printf("%s{\"endpoint\":", i > 0 ? "," : "");
                json_cstr(stdout, eps[i]);
                printf(",\"error\":true}");
            }
        }
        latch_sync_free(s);
        free(eps[i]);
    }
    if (o->json) {
        printf("]\n");
    }
    return rc;
}

struct snap_state {
    FILE *f;
    uint64_t bytes;
    bool write_failed;
};

static void snap_message(const uint8_t *msg, size_t len, void *data)
{
    struct snap_state *st = data;
    Etcdserverpb__SnapshotResponse *r = etcdserverpb__snapshot_response__unpack(NULL, len, msg);
    if (r == NULL) {
        st->write_failed = true;
        return;
    }
    if (r->blob.len > 0 && fwrite(r->blob.data, 1, r->blob.len, st->f) != r->blob.len) {
        st->write_failed = true;
    }
    st->bytes += r->blob.len;
    etcdserverpb__snapshot_response__free_unpacked(r, NULL);
}

static int cmd_snapshot(struct ctx *x)
{
    struct opts *o = x->o;
    need_args(o, 2, 2, "snapshot save FILE");
    if (strcmp(o->pos[0], "save") != 0) {
        die_usage("unknown snapshot command %s", o->pos[0]);
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.part", o->pos[1]);
    struct snap_state st = {.f = fopen(tmp, "wb")};
    if (st.f == NULL) {
        fprintf(stderr, "%s: %s: %s\n", prog, tmp, strerror(errno));
        return EXIT_ERR;
    }
    Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
    uint8_t buf[8];
    size_t len = etcdserverpb__snapshot_request__pack(&req, buf);
    char *msg = NULL;
    int err = latch_sync_raw_stream(x->s, "/etcdserverpb.Maintenance/Snapshot", buf, len,
                                    snap_message, &st, &msg);
    bool closed = fclose(st.f) == 0;
    int rc = EXIT_OK;
    if (err != LATCH_OK) {
        fprintf(stderr, "%s: snapshot: %s (%s)\n", prog, msg != NULL ? msg : "",
                latch_strerror(err));
        rc = exit_code_of(err);
    } else if (st.write_failed || !closed || st.bytes == 0) {
        fprintf(stderr, "%s: snapshot: writing %s failed or nothing received\n", prog, tmp);
        rc = EXIT_ERR;
    } else if (rename(tmp, o->pos[1]) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, o->pos[1], strerror(errno));
        rc = EXIT_ERR;
    }
    if (rc != EXIT_OK) {
        unlink(tmp);
    } else if (o->json) {
        printf("{\"file\":");
        json_cstr(stdout, o->pos[1]);
        printf(",\"bytes\":%" PRIu64 "}\n", st.bytes);
    } else {
        printf("Snapshot saved at %s (%" PRIu64 " bytes)\n", o->pos[1], st.bytes);
    }
    free(msg);
    return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

struct command {
    const char *name;
    int (*fn)(struct ctx *x);
    const char *opts;
    const char *usage;
    const char *help;
};

static const struct command commands[] = {
    {"put", cmd_put, "create,parents,ephemeral,sequential,version,fence,election-fence,session,ttl",
     "put PATH VALUE [--create] [-p|--parents] [--ephemeral [--ttl N]|--session ID] "
     "[-s|--sequential] [--version N] [--fence LOCK:TOKEN|--election-fence NAME:TOKEN]",
     "Sets PATH to VALUE, creating it when missing (with --create only creates). --ephemeral "
     "binds the node to a new session and holds it until SIGINT/SIGTERM; --session binds it "
     "to an existing session (hex id). --version N: only if the node's version is N. A fence "
     "applies the write only while TOKEN is a current grant of LOCK."},
    {"get", cmd_get, "serializable", "get PATH [--serializable]",
     "Prints PATH's value (-o json: value, stat and revision)."},
    {"del", cmd_del, "recursive,version,fence,election-fence",
     "del PATH [-r] [--version N] [--fence LOCK:TOKEN]",
     "Deletes PATH (-r: with everything below it); prints the number of nodes deleted."},
    {"ls", cmd_ls, "serializable", "ls PATH [--serializable]",
     "Lists PATH's children in name order."},
    {"tree", cmd_tree, "serializable", "tree PATH [--serializable]",
     "Lists PATH and every node below it, depth first in name order, one full path a line."},
    {"stat", cmd_stat, "serializable", "stat PATH [--serializable]", "Prints PATH's metadata."},
    {"watch", cmd_watch, "recursive,rev,count", "watch PATH [-r] [--rev N] [--count N]",
     "Prints every change of PATH (-r: of its subtree) as it happens, from revision N with "
     "--rev, as \"KIND PATH REVISION VALUE\" (-o json: one object a line); exits after N events "
     "with --count, else on SIGINT/SIGTERM."},
    {"lease", cmd_lease, "once,keys",
     "lease grant TTL | lease revoke ID | lease keepalive ID [--once] | lease ttl ID [--keys]",
     "etcd leases (IDs in hex, as etcdctl prints them)."},
    {"session", cmd_session, "ttl", "session open [--ttl N] | session close ID",
     "open: opens a session, prints its id and keeps it alive until SIGINT/SIGTERM, then "
     "closes it. close: closes a session by id (its ephemeral nodes and locks go at once)."},
    {"lock", cmd_lock, "shared,ttl,try,lock-delay,holders,waiters,serializable",
     "lock NAME [--shared] [--ttl N] [--timeout D] [--try] [--lock-delay D] [-- CMD [ARG...]] "
     "| lock --holders|--waiters NAME",
     "Acquires NAME (waiting up to --timeout; --try: fail at once if held) and runs CMD with "
     "LATCH_LOCK_NAME and LATCH_FENCING_TOKEN set, releasing when it exits; exits with CMD's "
     "status (128+signal). If the session is lost, CMD gets SIGTERM and latchctl exits 6. "
     "Without CMD: prints \"NAME TOKEN\" and holds the lock until SIGINT/SIGTERM."},
    {"elect", cmd_elect, "ttl,listen,once,serializable",
     "elect NAME VALUE [--ttl N] [--timeout D] | elect -l NAME [--once]",
     "Campaigns for NAME with VALUE, prints \"NAME TOKEN\" once leader and leads until "
     "SIGINT/SIGTERM, then resigns. -l: prints the leader's value and every change (--once: "
     "only the current leader; exit 3 when there is none)."},
    {"member", cmd_member, "", "member list", "Lists the cluster's members (etcd Cluster API)."},
    {"status", cmd_status, "", "status",
     "Prints each endpoint's member id, version, db size, leadership and Raft term/index."},
    {"snapshot", cmd_snapshot, "", "snapshot save FILE",
     "Saves a snapshot of the store (etcd Maintenance API) to FILE."},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [GLOBAL OPTIONS] COMMAND [ARGS]\n\n"
            "Global options:\n"
            "  --endpoints LIST   comma-separated host:port or http(s):// URLs (env "
            "LATCH_ENDPOINTS;\n"
            "                     default %s)\n"
            "  --cacert FILE      CA bundle to verify the server (TLS)\n"
            "  --cert FILE --key FILE  client certificate (mTLS)\n"
            "  -o, --output FMT   simple (default) or json\n"
            "  --timeout D        deadline of each call, lock/elect waits included (e.g. 10s;\n"
            "                     default: 10s, and no limit for lock/elect waits)\n"
            "  --dial-timeout D   one connection attempt (default 2s)\n\n"
            "Commands:\n",
            prog, LATCH_DEFAULT_ENDPOINTS);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %s\n", commands[i].usage);
    }
    fprintf(f,
            "\nExit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 precondition failed "
            "(exists, not empty, bad version, fenced, busy), 5 unavailable or timed out, 6 "
            "session lost; lock -- CMD: CMD's status.\n"
            "`%s COMMAND --help` describes one command.\n",
            prog);
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    g_opts = &o;
    /* Global options before the command (they may also follow it). */
    int i = 1;
    const struct command *cmd = NULL;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        static const char *const valued[] = {
            "--endpoints", "--cacert", "--cert",      "--key",     "-o",
            "--output",    "-w",       "--write-out", "--timeout", "--dial-timeout"};
        bool takes = false;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            takes = takes || strcmp(argv[i], valued[k]) == 0;
        }
        i += takes ? 2 : 1;
    }
    if (i > argc) {
        die_usage("%s needs a value", argv[argc - 1]);
    }
    parse_args(i, argv, 1, "", &o);
    if (o.npos > 0 || o.cmd != NULL) {
        die_usage("unexpected %s before the command", o.npos > 0 ? o.pos[0] : "--");
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        if (strcmp(argv[i], commands[k].name) == 0) {
            cmd = &commands[k];
        }
    }
    if (cmd == NULL) {
        die_usage("unknown command %s", argv[i]);
    }
    parse_args(argc, argv, i + 1, cmd->opts, &o);
    if (o.help) {
        printf("usage: %s %s\n\n%s\n", prog, cmd->usage, cmd->help);
        return EXIT_OK;
    }
    if (o.cmd != NULL && strcmp(cmd->name, "lock") != 0) {
        die_usage("\"--\" is only for lock");
    }
    if (o.endpoints == NULL) {
        o.endpoints = getenv("LATCH_ENDPOINTS");
    }
    setup_signals();
    signal(SIGPIPE, SIG_IGN);
    int rc;
    if (strcmp(cmd->name, "status") == 0) {
        struct ctx x = {.s = NULL, .o = &o};
        rc = cmd_status(&x);
    } else {
        struct latch_options lo = client_options(&o, o.endpoints);
        struct latch_sync *s = NULL;
        char err[256] = "";
        int e = latch_sync_new(&lo, &s, err, sizeof(err));
        if (e != LATCH_OK) {
            fprintf(stderr, "%s: %s\n", prog, err[0] != '\0' ? err : latch_strerror(e));
            return e == LATCH_EINVAL ? EXIT_USAGE : EXIT_ERR;
        }
        struct ctx x = {.s = s, .o = &o};
        rc = cmd->fn(&x);
        fflush(stdout);
        latch_sync_free(s);
    }
    return rc;
}
