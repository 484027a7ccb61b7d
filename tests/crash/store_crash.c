/*
 * store_crash.c — kill -9 the storage engine at random points and check what survived.
 *
 *   store_crash --kills N --dir D [--seed S]
 *
 * A child process opens the store on D with fsync on and loops: append a batch of 1..16
 * Raft entries with the hard state (store_log_append), apply them (store_apply), then tell
 * the parent over a pipe which log index and applied index are now acknowledged (both
 * calls returned, so both survive a process crash; a power loss may also undo the newest
 * apply, store.h, which a kill cannot show). The parent kills the child with SIGKILL after a
 * random delay (0-30 ms, from the seed), reads every acknowledged line, reopens the store
 * itself and checks:
 *
 *   - the store opens (a crash never leaves a store that refuses to open);
 *   - acknowledged applied index <= applied index <= last log index, and acknowledged log
 *     index <= last log index (durability of acknowledged writes, I1);
 *   - the state equals the deterministic model replayed up to the applied index: every
 *     key's value, the revision, the compaction revision, the key and lease counts (a
 *     batch is applied whole or not at all);
 *   - the hard state's term and commit are at least what was acknowledged;
 *   - the log is contiguous from first to last, every entry passes its CRC, carries the
 *     term and the exact bytes the model says (I8).
 *
 * Then the next child continues from the reopened state: it reads the applied index and
 * the last log index, applies any logged entries not yet applied, and goes on.
 *
 * The command at Raft index i depends only on i and the model state before it: mostly a
 * txn putting "k<i % 97>" = "<i>" and "last" = "<i>"; every 17th a txn putting "last" and
 * deleting the range [k5, k6); per 23 indexes a lease is granted, a key "lk" attached to
 * it and the lease revoked (deleting "lk"); every 31st a compaction to revision - 5. The
 * child also compacts the log whenever it holds more than 64 entries.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"

#define NKEYS             97
#define BATCH_MAX         16
#define CMD_BYTES         256
#define LOG_KEEP          16 /* entries kept below the applied index when the child compacts */
#define LOG_COMPACT_EVERY 64 /* log length that makes the child compact the log */
#define LEASE_CYCLE       23 /* grant at 0, attach "lk" at 5, revoke at 13 (mod 23) */
#define COMPACT_EVERY     31
#define DELRANGE_EVERY    17

/* ---------------------------------------------------------------------------------- */
/* The model: what the state must be after applying indexes 1..index                   */
/* ---------------------------------------------------------------------------------- */

struct model {
    uint64_t index;   /* last index stepped */
    int64_t rev;      /* store revision */
    int64_t compact;  /* compaction revision */
    int64_t k[NKEYS]; /* value of k<j>, 0: absent */
    int64_t last;     /* value of "last", 0: absent */
    int64_t lk;       /* value of "lk", 0: absent */
    int64_t leases;   /* live leases */
};

/* Storage behind one command's pointers. */
struct cmdbuf {
    struct store_cmd cmd;
    struct store_op ops[2];
    char key[16];
    char val[24];
    char last[24];
};

static uint64_t term_of(uint64_t index)
{
    return 1 + index / 300;
}

static void model_init(struct model *m)
{
    memset(m, 0, sizeof(*m));
    m->rev = 1;
}

static void op_put(struct store_op *op, const char *key, const char *val, int64_t lease)
{
    memset(op, 0, sizeof(*op));
    op->type = STORE_OP_PUT;
    op->u.put.key = (const uint8_t *)key;
    op->u.put.key_len = (uint32_t)strlen(key);
    op->u.put.value = (const uint8_t *)val;
    op->u.put.value_len = (uint32_t)strlen(val);
    op->u.put.lease = lease;
}

static void txn_of(struct cmdbuf *b, size_t n)
{
    b->cmd.type = STORE_CMD_TXN;
    b->cmd.u.txn.success = b->ops;
    b->cmd.u.txn.success_count = n;
}

/* Lease cycle: grant at base, attach "lk" at base + 5, revoke at base + 13. */
static bool step_lease(struct model *m, uint64_t i, struct cmdbuf *b)
{
    uint64_t r = i % LEASE_CYCLE, base = i - r;
    if (base == 0 || (r != 0 && r != 5 && r != 13)) {
        return false;
    }
    if (r == 0) {
        b->cmd.type = STORE_CMD_LEASE_GRANT;
        b->cmd.u.lease_grant.id = (int64_t)base;
        b->cmd.u.lease_grant.ttl = 100;
        m->leases++;
    } else if (r == 5) {
        op_put(&b->ops[0], "lk", b->val, (int64_t)base);
        op_put(&b->ops[1], "last", b->last, 0);
        txn_of(b, 2);
        m->lk = (int64_t)i;
        m->last = (int64_t)i;
        m->rev++;
    } else {
        b->cmd.type = STORE_CMD_LEASE_REVOKE;
        b->cmd.u.lease_revoke.id = (int64_t)base;
        m->leases--;
        m->lk = 0;
        m->rev++; /* the revoke deletes "lk": one revision */
    }
    return true;
}

/* Fills b with the command of index m->index + 1 and advances m past it. */
static void model_step(struct model *m, struct cmdbuf *b)
{
    uint64_t i = m->index + 1;
    memset(&b->cmd, 0, sizeof(b->cmd));
    snprintf(b->val, sizeof(b->val), "%" PRIu64, i);
    snprintf(b->last, sizeof(b->last), "%" PRIu64, i);
    m->index = i;
    if (step_lease(m, i, b)) {
        return;
    }
    if (i % COMPACT_EVERY == 0 && m->rev - 5 > m->compact) {
        b->cmd.type = STORE_CMD_COMPACT;
        b->cmd.u.compact.revision = m->rev - 5;
        m->compact = m->rev - 5;
        return;
    }
    if (i % DELRANGE_EVERY == 0) {
        op_put(&b->ops[0], "last", b->last, 0);
        memset(&b->ops[1], 0, sizeof(b->ops[1]));
        b->ops[1].type = STORE_OP_DELETE;
        b->ops[1].u.del.key = (const uint8_t *)"k5";
        b->ops[1].u.del.key_len = 2;
        b->ops[1].u.del.range_end = (const uint8_t *)"k6";
        b->ops[1].u.del.range_end_len = 2;
        txn_of(b, 2);
        m->k[5] = 0;
        for (int j = 50; j <= 59; j++) {
            m->k[j] = 0;
        }
        m->last = (int64_t)i;
        m->rev++;
        return;
    }
    snprintf(b->key, sizeof(b->key), "k%" PRIu64, i % NKEYS);
    op_put(&b->ops[0], b->key, b->val, 0);
    op_put(&b->ops[1], "last", b->last, 0);
    txn_of(b, 2);
    m->k[i % NKEYS] = (int64_t)i;
    m->last = (int64_t)i;
    m->rev++;
}

/* Steps m up to index, discarding the commands. */
static void model_replay(struct model *m, uint64_t index)
{
    struct cmdbuf b;
    while (m->index < index) {
        model_step(m, &b);
    }
}

static size_t encode(const struct store_cmd *c, uint8_t buf[CMD_BYTES])
{
    size_t len = 0;
    int rc = store_cmd_encode(c, buf, CMD_BYTES, &len);
    if (rc != 0) {
        fprintf(stderr, "store_crash: encode: %s\n", latch_error_name(rc));
        exit(20);
    }
    return len;
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

/* ---------------------------------------------------------------------------------- */
/* Child                                                                               */
/* ---------------------------------------------------------------------------------- */

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "store_crash child: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    _exit(code);
}

/* Applies items and checks every result against the model's revision. */
static void child_apply(struct store *s,
                        struct latch_arena *a,
                        const struct store_apply_item *items,
                        size_t n,
                        const int64_t *want_rev)
{
    struct store_result res[BATCH_MAX];
    latch_arena_reset(a);
    int rc = store_apply(s, items, n, a, res);
    if (rc != 0) {
        die(11, "store_apply at %" PRIu64 ": %s", items[0].index, latch_error_name(rc));
    }
    for (size_t i = 0; i < n; i++) {
        if (res[i].err != 0 || res[i].skipped || res[i].revision != want_rev[i]) {
            die(12, "index %" PRIu64 ": err %s skipped %d revision %" PRId64 " (model %" PRId64 ")",
                items[i].index, latch_error_name(res[i].err), res[i].skipped, res[i].revision,
                want_rev[i]);
        }
    }
}

/* Applies the logged entries a previous child appended but did not apply. */
static void child_catch_up(struct store *s, struct latch_arena *a, struct model *m, uint64_t last)
{
    while (m->index < last) {
        const struct store_entry *e;
        size_t n = 0;
        uint64_t hi = last + 1 - m->index > BATCH_MAX ? m->index + 1 + BATCH_MAX : last + 1;
        int rc = store_log_entries(s, m->index + 1, hi, UINT64_MAX, &e, &n);
        if (rc != 0) {
            die(13, "store_log_entries: %s", latch_error_name(rc));
        }
        struct store_apply_item items[BATCH_MAX];
        int64_t want[BATCH_MAX];
        struct cmdbuf b;
        for (size_t i = 0; i < n; i++) {
            model_step(m, &b);
            want[i] = m->rev;
            items[i] = (struct store_apply_item){.index = e[i].index,
                                                 .term = e[i].term,
                                                 .kind = STORE_ITEM_CMD,
                                                 .len = e[i].len,
                                                 .data = e[i].data};
        }
        child_apply(s, a, items, n, want);
    }
}

/* Appends and applies one batch of k entries after m->index. */
static void child_batch(struct store *s, struct latch_arena *a, struct model *m, size_t k)
{
    static uint8_t bufs[BATCH_MAX][CMD_BYTES];
    struct store_entry ents[BATCH_MAX];
    struct store_apply_item items[BATCH_MAX];
    int64_t want[BATCH_MAX];
    struct cmdbuf b;
    for (size_t i = 0; i < k; i++) {
        model_step(m, &b);
        want[i] = m->rev;
        size_t len = encode(&b.cmd, bufs[i]);
        ents[i] = (struct store_entry){.term = term_of(m->index),
                                       .index = m->index,
                                       .type = 0,
                                       .len = (uint32_t)len,
                                       .data = bufs[i]};
        items[i] = (struct store_apply_item){.index = m->index,
                                             .term = ents[i].term,
                                             .kind = STORE_ITEM_CMD,
                                             .len = (uint32_t)len,
                                             .data = bufs[i]};
    }
    struct store_hard_state hs = {.term = term_of(m->index), .vote = 1, .commit = m->index};
    int rc = store_log_append(s, ents, k, &hs);
    if (rc != 0) {
        die(14, "store_log_append at %" PRIu64 ": %s", ents[0].index, latch_error_name(rc));
    }
    child_apply(s, a, items, k, want);
}

static void child_run(const char *dir, uint64_t seed, int fd)
{
    struct store_options o;
    struct store *s;
    struct store_reader *r;
    struct store_status st;
    struct latch_arena a;
    struct model m;
    char err[STORE_ERRMSG_BYTES];
    store_options_defaults(&o);
    o.dir = dir;
    o.no_sync = false;
    int rc = store_open(&o, &s, err, sizeof(err));
    if (rc != 0) {
        die(10, "store_open: %s: %s", latch_error_name(rc), err);
    }
    if (store_reader_new(s, &r) != 0 || store_status(r, &st) != 0) {
        die(10, "store_status failed");
    }
    latch_arena_init(&a, 0);
    model_init(&m);
    model_replay(&m, st.applied_index);
    child_catch_up(s, &a, &m, store_log_last_index(s));
    for (;;) {
        child_batch(s, &a, &m, 1 + (size_t)(rng_next(&seed) % BATCH_MAX));
        uint64_t first = store_log_first_index(s);
        if (m.index - first > LOG_COMPACT_EVERY) {
            rc = store_log_compact(s, m.index - LOG_KEEP);
            if (rc != 0) {
                die(15, "store_log_compact: %s", latch_error_name(rc));
            }
        }
        char line[64];
        int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", m.index, m.index);
        if (write(fd, line, (size_t)n) != n) {
            die(16, "write to parent: %s", strerror(errno));
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Parent                                                                              */
/* ---------------------------------------------------------------------------------- */

struct ack {
    uint64_t log;
    uint64_t applied;
};

struct stats {
    uint64_t kills;
    uint64_t reopen_failures;
    uint64_t violations;
    uint64_t max_applied;
};

static void violation(struct stats *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "store_crash: VIOLATION after kill %" PRIu64 ": ", st->kills);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    st->violations++;
}

/* Reads every acknowledged line until EOF; keeps the last one. */
static void read_acks(int fd, struct ack *ack, struct stats *st)
{
    static char buf[1 << 16];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';
        char *nl;
        char *p = buf;
        while ((nl = strchr(p, '\n')) != NULL) {
            struct ack a;
            if (sscanf(p, "%" SCNu64 " %" SCNu64, &a.log, &a.applied) != 2 || a.log < ack->log ||
                a.applied < ack->applied) {
                violation(st, "bad acknowledgement line");
            } else {
                *ack = a;
            }
            p = nl + 1;
        }
        used = (size_t)(buf + used - p);
        memmove(buf, p, used);
    }
}

/* Compares one key's current value with the model's (0: absent). */
static void check_key(
    struct store_reader *r, struct latch_arena *a, const char *key, int64_t want, struct stats *st)
{
    struct store_range_req q = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    struct store_range_result out;
    int rc = store_range(r, &q, a, &out, NULL);
    if (rc != 0) {
        violation(st, "range %s: %s", key, latch_error_name(rc));
        return;
    }
    char got[32] = "";
    if (out.kvs_count == 1 && out.kvs[0].value_len < sizeof(got)) {
        memcpy(got, out.kvs[0].value, out.kvs[0].value_len);
    }
    char exp[32] = "";
    if (want != 0) {
        snprintf(exp, sizeof(exp), "%" PRId64, want);
    }
    if (out.kvs_count != (want != 0 ? 1u : 0u) || strcmp(got, exp) != 0) {
        violation(st, "key %s = \"%s\" (%zu kvs), model \"%s\"", key, got, out.kvs_count, exp);
    }
}

static void check_state(struct store_reader *r, const struct model *m, struct stats *st)
{
    struct store_status ss;
    struct latch_arena a;
    int rc = store_status(r, &ss);
    if (rc != 0) {
        violation(st, "store_status: %s", latch_error_name(rc));
        return;
    }
    if (ss.revision != m->rev || ss.compact_revision != m->compact) {
        violation(st,
                  "at applied %" PRIu64 ": revision %" PRId64 " compact %" PRId64 ", model %" PRId64
                  " %" PRId64,
                  m->index, ss.revision, ss.compact_revision, m->rev, m->compact);
    }
    int64_t keys = (m->last != 0) + (m->lk != 0);
    for (int j = 0; j < NKEYS; j++) {
        keys += m->k[j] != 0;
    }
    if (ss.keys_count != keys || ss.leases_count != m->leases) {
        violation(st, "keys %" PRId64 " leases %" PRId64 ", model %" PRId64 " %" PRId64,
                  ss.keys_count, ss.leases_count, keys, m->leases);
    }
    latch_arena_init(&a, 0);
    char key[16];
    for (int j = 0; j < NKEYS; j++) {
        snprintf(key, sizeof(key), "k%d", j);
        check_key(r, &a, key, m->k[j], st);
        latch_arena_reset(&a);
    }
    check_key(r, &a, "last", m->last, st);
    check_key(r, &a, "lk", m->lk, st);
    latch_arena_close(&a);
}

/* The log from first to last: contiguous, CRCs good (store_log_entries verifies them),
 * terms and bytes as the model wrote them. Fills *at_applied with the model at applied. */
static void check_log(struct store *s, uint64_t applied, struct model *at_applied, struct stats *st)
{
    uint64_t first = store_log_first_index(s), last = store_log_last_index(s);
    struct model m;
    model_init(&m);
    model_replay(&m, first - 1);
    if (m.index == applied) {
        *at_applied = m;
    }
    while (m.index < last) {
        const struct store_entry *e;
        size_t n = 0;
        int rc = store_log_entries(s, m.index + 1, last + 1, UINT64_MAX, &e, &n);
        if (rc != 0) {
            violation(st, "log entries [%" PRIu64 ", %" PRIu64 "]: %s", m.index + 1, last,
                      latch_error_name(rc));
            return;
        }
        for (size_t i = 0; i < n; i++) {
            struct cmdbuf b;
            uint8_t buf[CMD_BYTES];
            model_step(&m, &b);
            size_t len = encode(&b.cmd, buf);
            if (e[i].index != m.index || e[i].term != term_of(m.index) || e[i].len != len ||
                memcmp(e[i].data, buf, len) != 0) {
                violation(st, "log entry %" PRIu64 " differs from the model", m.index);
                return;
            }
            if (m.index == applied) {
                *at_applied = m;
            }
        }
    }
}

static void verify(const char *dir, const struct ack *ack, struct stats *st)
{
    struct store_options o;
    struct store *s;
    struct store_reader *r;
    struct store_status ss;
    struct store_hard_state hs;
    char err[STORE_ERRMSG_BYTES];
    store_options_defaults(&o);
    o.dir = dir;
    int rc = store_open(&o, &s, err, sizeof(err));
    if (rc != 0) {
        st->reopen_failures++;
        violation(st, "store_open: %s: %s", latch_error_name(rc), err);
        return;
    }
    if (store_reader_new(s, &r) != 0 || store_status(r, &ss) != 0 ||
        store_log_hard_state(s, &hs) != 0) {
        violation(st, "reading status or hard state failed");
        store_reader_free(r);
        store_close(s);
        return;
    }
    uint64_t first = store_log_first_index(s), last = store_log_last_index(s);
    if (ss.applied_index < ack->applied || ss.applied_index > last || last < ack->log ||
        ss.applied_index + 1 < first) {
        violation(st,
                  "applied %" PRIu64 " log [%" PRIu64 ", %" PRIu64 "], acknowledged %" PRIu64
                  " / %" PRIu64,
                  ss.applied_index, first, last, ack->applied, ack->log);
    }
    if ((ack->log > 0 && hs.term < term_of(ack->log)) || hs.commit < ack->log || hs.commit > last) {
        violation(st, "hard state term %" PRIu64 " commit %" PRIu64 ", acknowledged log %" PRIu64,
                  hs.term, hs.commit, ack->log);
    }
    struct model m;
    model_init(&m);
    if (ss.applied_index + 1 >= first) {
        check_log(s, ss.applied_index, &m, st);
        if (m.index == ss.applied_index) {
            check_state(r, &m, st);
        }
    }
    if (ss.applied_index > st->max_applied) {
        st->max_applied = ss.applied_index;
    }
    store_reader_free(r);
    store_close(s);
}

/* One round: start a child, kill it after delay_us, collect its acks, verify. */
static void
round_run(const char *dir, uint64_t child_seed, long delay_us, struct ack *ack, struct stats *st)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("store_crash: pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("store_crash: fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        child_run(dir, child_seed, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    struct timespec ts = {.tv_sec = delay_us / 1000000, .tv_nsec = (delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    read_acks(fds[0], ack, st);
    close(fds[0]);
    st->kills++;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        violation(st, "child ended by itself (status 0x%x)", status);
    }
    verify(dir, ack, st);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void usage(void)
{
    fprintf(stderr, "usage: store_crash --kills N --dir D [--seed S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned long kills = 0;
    const char *dir = NULL;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--kills") == 0 && i + 1 < argc) {
            kills = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            usage();
        }
    }
    if (kills == 0 || dir == NULL) {
        usage();
    }
    printf("store_crash: seed %" PRIu64 " (replay: store_crash --kills %lu --dir %s --seed %" PRIu64
           ")\n",
           seed, kills, dir, seed);
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    uint64_t x = seed * 2 + 1;
    struct ack ack = {0, 0};
    struct stats st = {0};
    for (unsigned long k = 0; k < kills && st.violations == 0; k++) {
        long delay_us = (long)(rng_next(&x) % 30001);
        round_run(dir, rng_next(&x) | 1, delay_us, &ack, &st);
    }
    printf("store_crash: %" PRIu64 " kills, %" PRIu64 " entries applied, %" PRIu64
           " reopen failures, %" PRIu64 " violations\n",
           st.kills, st.max_applied, st.reopen_failures, st.violations);
    return st.violations == 0 ? 0 : 1;
}
