/*
 * store_bench.c — throughput of store/ beside raw LMDB (issue 3 item 9).
 *
 * One process, one thread: every figure is single-core. Both sides skip fsync (the store
 * with no_sync, raw LMDB with MDB_NOSYNC): the figures measure the engine's own cost per
 * operation, not the disk's flush latency, which a synced run adds to both alike. Each
 * timing is the best of --rounds runs (the machines we run on are shared and noisy).
 *
 *   puts      N single-put STORE_CMD_TXN commands (16-byte keys "key/%012u" in a random
 *             order, 128-byte values) applied by store_apply in batches of 1, 64 and 1024
 *             items, one LMDB write txn per batch; the same puts into raw LMDB (one env,
 *             one dbi, mdb_put, one txn per batch). Commands are encoded outside the
 *             timed region (the leader encodes once, at proposal time). Breakdown: raw
 *             LMDB writing store/'s records (kv + hist + meta), then the same with one
 *             nested txn per command, as store_apply does.
 *   gets      single-key store_range vs raw mdb_get in a short read txn (renew, get,
 *             reset per lookup), random keys. Breakdown: raw LMDB making the calls
 *             store_range makes.
 *   range     1,000 consecutive keys per store_range.
 *   children  a node with 10 children whose subtrees hold --tree-keys keys, one whose
 *             subtrees hold 1,000 and one whose children are leaves; a node with
 *             --big-children children (listed 1,000 per call).
 *   history   store_history over 100,000 events in chunks of 10,000.
 *   snapshot  store_snapshot_create, then the stream read and installed into an empty
 *             store (store_snap_reader_* -> store_snap_writer_*), MB/s of the file.
 *
 * A benchmark, not a test: it prints figures and never judges timing, but it exits 1 if
 * any operation fails or returns a wrong result, since its figures would then be void.
 *
 *   store_bench                         full run (a few minutes)
 *   store_bench --quick                 smoke run, scaled down, one round
 *   store_bench --dir /mnt/fast --puts 500000 --gets 2000000 --rounds 5
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "latch_log.h"
#include "store.h"

#define KEY_BYTES      16u
#define VALUE_BYTES    128u
#define MAP_BYTES      ((uint64_t)4 << 30)
#define RANGE_KEYS     1000u
#define HISTORY_EVENTS 100000u
#define HISTORY_CHUNK  10000u
#define CHILDREN_PAGE  1000u
#define SNAP_CHUNK     (1u << 20)

struct opts {
    char dir[512];
    size_t puts;
    size_t gets;
    size_t ranges;
    size_t tree_keys;
    size_t big_children;
    size_t reps;   /* repetitions of the 10-children listings */
    size_t rounds; /* best of this many runs of each timing */
    bool keep;
};

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                            */
/* ---------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process (user + system): steal time and other VMs do not count. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "store_bench: %s: %s (%d)\n", what, rc < 0 ? latch_strerror(rc) : "", rc);
    exit(1);
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        die(what, rc);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* 0..n-1 in a random order (malloc'ed). */
static uint32_t *permutation(size_t n)
{
    uint32_t *p = malloc(n * sizeof(*p));
    if (p == NULL) {
        die("out of memory", LATCH_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint32_t)i;
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next() % i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

static void key_make(uint8_t key[KEY_BYTES + 1], uint32_t i)
{
    snprintf((char *)key, KEY_BYTES + 1, "key/%012u", i);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rmrf(const char *dir)
{
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void sub_dir(const struct opts *o, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", o->dir, name);
    rmrf(buf);
}

static struct store *store_open_at(const struct opts *o, const char *name, char *path, size_t cap)
{
    struct store_options so;
    struct store *s;
    char err[STORE_ERRMSG_BYTES] = "";

    sub_dir(o, name, path, cap);
    store_options_defaults(&so);
    so.dir = path;
    so.no_sync = true;
    so.map_bytes_initial = MAP_BYTES; /* as raw LMDB's: no map growth in the timings */
    int rc = store_open(&so, &s, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "store_bench: store_open(%s): %s\n", path, err);
        exit(1);
    }
    return s;
}

/* ---------------------------------------------------------------------------------- */
/* Puts                                                                               */
/* ---------------------------------------------------------------------------------- */

/* Reusable buffers for one store_apply batch of single-put commands. */
struct put_batch {
    struct store_apply_item *items;
    struct store_result *results;
    uint8_t *bufs;
    size_t cmd_bytes; /* room per encoded command */
    struct latch_arena arena;
};

static void batch_init(struct put_batch *b, size_t batch, size_t key_bytes_max)
{
    b->cmd_bytes = 128 + key_bytes_max + VALUE_BYTES;
    b->items = calloc(batch, sizeof(*b->items));
    b->results = calloc(batch, sizeof(*b->results));
    b->bufs = malloc(batch * b->cmd_bytes);
    if (b->items == NULL || b->results == NULL || b->bufs == NULL) {
        die("out of memory", LATCH_ENOMEM);
    }
    latch_arena_init(&b->arena, 0);
}

static void batch_close(struct put_batch *b)
{
    free(b->items);
    free(b->results);
    free(b->bufs);
    latch_arena_close(&b->arena);
}

/* Encodes a put of each NUL-terminated key (stride bytes apart) as items from index. */
static void batch_encode(struct put_batch *b,
                         const uint8_t *keys,
                         size_t stride,
                         size_t n,
                         const uint8_t *value,
                         uint32_t value_len,
                         uint64_t index)
{
    for (size_t i = 0; i < n; i++) {
        struct store_op op = {.type = STORE_OP_PUT};
        op.u.put.key = keys + i * stride;
        op.u.put.key_len = (uint32_t)strlen((const char *)op.u.put.key);
        op.u.put.value = value;
        op.u.put.value_len = value_len;
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = &op;
        c.u.txn.success_count = 1;
        uint8_t *buf = b->bufs + i * b->cmd_bytes;
        size_t len;
        check(store_cmd_encode(&c, buf, b->cmd_bytes, &len), "store_cmd_encode");
        b->items[i] = (struct store_apply_item){.index = index + i,
                                                .term = 1,
                                                .kind = STORE_ITEM_CMD,
                                                .len = (uint32_t)len,
                                                .data = buf};
    }
}

/*
 * Applies a put of each of the n keys (NUL-terminated, stride bytes apart) in batches of
 * batch items from Raft index *index on. Returns the seconds spent inside store_apply.
 */
static double apply_puts(struct store *s,
                         const uint8_t *keys,
                         size_t stride,
                         size_t n,
                         size_t batch,
                         const uint8_t *value,
                         uint32_t value_len,
                         uint64_t *index,
                         double *cpu)
{
    struct put_batch b;
    double t = 0;
    double tc = 0;

    batch_init(&b, batch, stride);
    for (size_t i = 0; i < n; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        batch_encode(&b, keys + i * stride, stride, k, value, value_len, *index);
        latch_arena_reset(&b.arena);
        double t0 = now_s();
        double c0 = cpu_s();
        check(store_apply(s, b.items, k, &b.arena, b.results), "store_apply");
        tc += cpu_s() - c0;
        t += now_s() - t0;
        for (size_t j = 0; j < k; j++) {
            check(b.results[j].err, "put command");
        }
        *index += k;
    }
    batch_close(&b);
    *cpu = tc;
    return t;
}

/* The keys of perm, NUL-terminated, KEY_BYTES + 1 apart (malloc'ed). */
static uint8_t *keys_of(const uint32_t *perm, size_t n)
{
    uint8_t *keys = malloc(n * (KEY_BYTES + 1));
    if (keys == NULL) {
        die("out of memory", LATCH_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        key_make(keys + i * (KEY_BYTES + 1), perm[i]);
    }
    return keys;
}

static MDB_env *raw_open(const struct opts *o, const char *name, MDB_dbi *dbi)
{
    char path[600];
    MDB_env *env;
    MDB_txn *txn;

    sub_dir(o, name, path, sizeof(path) - 16);
    check(mkdir(path, 0700), "mkdir");
    strcat(path, "/raw.mdb");
    check(mdb_env_create(&env), "mdb_env_create");
    check(mdb_env_set_mapsize(env, (size_t)MAP_BYTES), "mdb_env_set_mapsize");
    check(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600), "mdb_env_open");
    check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, NULL, 0, dbi), "mdb_dbi_open");
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    return env;
}

static double
raw_put_keys(MDB_env *env, MDB_dbi dbi, const uint8_t *keys, size_t n, size_t batch, double *cpu)
{
    static uint8_t value[VALUE_BYTES] = {'v'};
    double t0 = now_s();
    double c0 = cpu_s();

    for (size_t i = 0; i < n; i += batch) {
        MDB_txn *txn;
        size_t k = n - i < batch ? n - i : batch;
        check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        for (size_t j = 0; j < k; j++) {
            MDB_val kv = {.mv_size = KEY_BYTES,
                          .mv_data = (void *)(keys + (i + j) * (KEY_BYTES + 1))};
            MDB_val vv = {.mv_size = VALUE_BYTES, .mv_data = value};
            check(mdb_put(txn, dbi, &kv, &vv, 0), "mdb_put");
        }
        check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    *cpu = cpu_s() - c0;
    return now_s() - t0;
}

/*
 * The breakdown: raw LMDB doing the writes store/ does for a single-put command — look up
 * the key, put the kv record (40-byte header + value), append the hist event (12-byte
 * key; 48-byte header + key + value) with MDB_APPEND, and per batch rewrite the meta
 * counters — with or without one nested txn per command (store_apply's rollback unit).
 * It tells the record layout's cost apart from the nested txns' and from store/'s code.
 */
static MDB_env *raw_layout_open(const struct opts *o, const char *name, MDB_dbi dbi[3])
{
    static const char *const names[3] = {"kv", "hist", "meta"};
    char path[600];
    MDB_env *env;
    MDB_txn *txn;

    sub_dir(o, name, path, sizeof(path) - 16);
    check(mkdir(path, 0700), "mkdir");
    strcat(path, "/raw.mdb");
    check(mdb_env_create(&env), "mdb_env_create");
    check(mdb_env_set_mapsize(env, (size_t)MAP_BYTES), "mdb_env_set_mapsize");
    check(mdb_env_set_maxdbs(env, 4), "mdb_env_set_maxdbs");
    check(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600), "mdb_env_open");
    check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
    for (int i = 0; i < 3; i++) {
        check(mdb_dbi_open(txn, names[i], MDB_CREATE, &dbi[i]), "mdb_dbi_open");
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    return env;
}

/* One command's writes in txn: kv lookup + put, hist append. */
static void raw_layout_put(MDB_txn *txn, const MDB_dbi dbi[3], const uint8_t *key, uint64_t rev)
{
    static uint8_t kvrec[40 + VALUE_BYTES];
    static uint8_t ev[48 + KEY_BYTES + VALUE_BYTES];
    uint8_t hk[12] = {0};
    MDB_val k = {.mv_size = KEY_BYTES, .mv_data = (void *)key};
    MDB_val v;

    int rc = mdb_get(txn, dbi[0], &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        die("mdb_get", rc);
    }
    v = (MDB_val){.mv_size = sizeof(kvrec), .mv_data = kvrec};
    check(mdb_put(txn, dbi[0], &k, &v, 0), "mdb_put kv");
    for (int i = 0; i < 8; i++) {
        hk[i] = (uint8_t)(rev >> (56 - 8 * i));
    }
    MDB_val hkey = {.mv_size = sizeof(hk), .mv_data = hk};
    MDB_val hval = {.mv_size = sizeof(ev), .mv_data = ev};
    check(mdb_put(txn, dbi[1], &hkey, &hval, MDB_APPEND), "mdb_put hist");
}

static double raw_layout_put_keys(
    MDB_env *env, const MDB_dbi dbi[3], const uint8_t *keys, size_t n, size_t batch, bool nested)
{
    static const char *const counters[3] = {"rev", "applied", "lease_next"};
    uint8_t num[16] = {0};
    double t0 = now_s();

    for (size_t i = 0; i < n; i += batch) {
        MDB_txn *txn;
        size_t k = n - i < batch ? n - i : batch;
        check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
        for (size_t j = 0; j < k; j++) {
            MDB_txn *child = txn;
            if (nested) {
                check(mdb_txn_begin(env, txn, 0, &child), "mdb_txn_begin nested");
            }
            raw_layout_put(child, dbi, keys + (i + j) * (KEY_BYTES + 1), 2 + i + j);
            if (nested) {
                check(mdb_txn_commit(child), "mdb_txn_commit nested");
            }
        }
        for (int c = 0; c < 3; c++) {
            MDB_val ck = {.mv_size = strlen(counters[c]), .mv_data = (void *)counters[c]};
            MDB_val cv = {.mv_size = c == 1 ? 16 : 8, .mv_data = num};
            check(mdb_put(txn, dbi[2], &ck, &cv, 0), "mdb_put meta");
        }
        check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    return now_s() - t0;
}

/* Puts/s of the two raw-layout variants at batch. */
static void bench_put_breakdown(
    const struct opts *o, const uint8_t *keys, size_t batch, double *flat, double *nested)
{
    MDB_dbi dbi[3];
    char name[32];

    snprintf(name, sizeof(name), "layout%zu", batch);
    MDB_env *env = raw_layout_open(o, name, dbi);
    *flat = (double)o->puts / raw_layout_put_keys(env, dbi, keys, o->puts, batch, false);
    mdb_env_close(env);
    snprintf(name, sizeof(name), "nested%zu", batch);
    env = raw_layout_open(o, name, dbi);
    *nested = (double)o->puts / raw_layout_put_keys(env, dbi, keys, o->puts, batch, true);
    mdb_env_close(env);
}

struct put_rates {
    double store, raw, layout, nested; /* puts per wall-clock second */
    double store_cpu, raw_cpu;         /* puts per CPU second */
};

static double max_d(double a, double b)
{
    return a > b ? a : b;
}

static double min_d(double a, double b)
{
    return a < b ? a : b;
}

/*
 * One round at batch: every variant on a fresh file, the best rate of each kept in best.
 * keep: leave the store and the raw env open (*s_out, *env_out) for the read figures.
 */
static void put_round(const struct opts *o,
                      const uint8_t *keys,
                      size_t batch,
                      bool keep,
                      struct put_rates *best,
                      struct store **s_out,
                      MDB_env **env_out,
                      MDB_dbi *dbi_out)
{
    static const uint8_t value[VALUE_BYTES] = {'v'};
    char path[600];
    char name[32];
    uint64_t index = 1;
    double n = (double)o->puts;

    snprintf(name, sizeof(name), "puts%zu", batch);
    struct store *s = store_open_at(o, name, path, sizeof(path));
    double cpu = 0;
    best->store = max_d(best->store, n / apply_puts(s, keys, KEY_BYTES + 1, o->puts, batch, value,
                                                    VALUE_BYTES, &index, &cpu));
    best->store_cpu = max_d(best->store_cpu, n / cpu);
    MDB_dbi dbi = 0;
    snprintf(name, sizeof(name), "raw%zu", batch);
    MDB_env *env = raw_open(o, name, &dbi);
    best->raw = max_d(best->raw, n / raw_put_keys(env, dbi, keys, o->puts, batch, &cpu));
    best->raw_cpu = max_d(best->raw_cpu, n / cpu);
    double pl = 0;
    double pn = 0;
    bench_put_breakdown(o, keys, batch, &pl, &pn);
    best->layout = max_d(best->layout, pl);
    best->nested = max_d(best->nested, pn);
    if (keep) {
        *s_out = s;
        *env_out = env;
        *dbi_out = dbi;
    } else {
        store_close(s);
        mdb_env_close(env);
    }
}

/* The put figures; leaves the 1024-batch store and raw env open for the reads. */
static void bench_puts(const struct opts *o,
                       const uint8_t *keys,
                       struct store **s_out,
                       MDB_env **env_out,
                       MDB_dbi *dbi_out)
{
    static const size_t batches[] = {1, 64, 1024};

    printf("puts: %zu single-put commands, %u-byte keys, %u-byte values, random order, "
           "no fsync on either side (no_sync / MDB_NOSYNC); best of %zu rounds\n",
           o->puts, KEY_BYTES, VALUE_BYTES, o->rounds);
    printf("  %-6s %13s %13s %7s %10s | %13s %13s\n", "batch", "store puts/s", "raw puts/s",
           "ratio", "cpu ratio", "raw+layout", "+nested txn");
    for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
        struct put_rates best = {0, 0, 0, 0, 0, 0};
        for (size_t r = 0; r < o->rounds; r++) {
            bool keep = batches[b] == 1024 && r + 1 == o->rounds;
            put_round(o, keys, batches[b], keep, &best, s_out, env_out, dbi_out);
        }
        printf("  %-6zu %13.0f %13.0f %6.1f%% %9.1f%% | %13.0f %13.0f\n", batches[b], best.store,
               best.raw, 100.0 * best.store / best.raw, 100.0 * best.store_cpu / best.raw_cpu,
               best.layout, best.nested);
        fflush(stdout);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Reads                                                                              */
/* ---------------------------------------------------------------------------------- */

/* GETS_PER_PIN gets share one snapshot in the pinned runs: a server loop turn's reads. */
#define GETS_PER_PIN 64

/* Point gets through store_range; per_pin 0: each call its own snapshot, else
 * store_reader_pin around every per_pin gets. */
static double store_gets(const struct opts *o, struct store *s, size_t per_pin)
{
    struct store_reader *r;
    struct latch_arena a;
    uint8_t key[KEY_BYTES + 1];

    check(store_reader_new(s, &r), "store_reader_new");
    latch_arena_init(&a, 0);
    double t0 = now_s();
    for (size_t i = 0; i < o->gets; i++) {
        key_make(key, (uint32_t)(rng_next() % o->puts));
        struct store_range_req q = {.key = key, .key_len = KEY_BYTES};
        struct store_range_result res;
        if ((i & 1023) == 0) {
            latch_arena_reset(&a);
        }
        if (per_pin > 0 && i % per_pin == 0) {
            store_reader_unpin(r);
            check(store_reader_pin(r), "store_reader_pin");
        }
        check(store_range(r, &q, &a, &res, NULL), "store_range");
        if (res.kvs_count != 1 || res.kvs[0].value_len != VALUE_BYTES) {
            die("store_range: key missing", 0);
        }
    }
    store_reader_unpin(r);
    double t = now_s() - t0;
    latch_arena_close(&a);
    store_reader_free(r);
    return t;
}

/* The same gets on raw LMDB: mdb_txn_renew/reset around every per_txn gets. */
static double raw_gets(const struct opts *o, MDB_env *env, MDB_dbi dbi, size_t per_txn)
{
    uint8_t key[KEY_BYTES + 1];
    MDB_txn *txn;

    check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    mdb_txn_reset(txn);
    double t0 = now_s();
    for (size_t i = 0; i < o->gets; i++) {
        key_make(key, (uint32_t)(rng_next() % o->puts));
        MDB_val k = {.mv_size = KEY_BYTES, .mv_data = key};
        MDB_val v;
        if (i % per_txn == 0) {
            if (i > 0) {
                mdb_txn_reset(txn);
            }
            check(mdb_txn_renew(txn), "mdb_txn_renew");
        }
        check(mdb_get(txn, dbi, &k, &v), "mdb_get");
        if (v.mv_size != VALUE_BYTES) {
            die("mdb_get: wrong value", 0);
        }
    }
    mdb_txn_reset(txn);
    double t = now_s() - t0;
    mdb_txn_abort(txn);
    return t;
}

static void bench_gets(const struct opts *o, struct store *s, MDB_env *env, MDB_dbi dbi)
{
    double ts = 1e9, tr = 1e9, tsp = 1e9, trp = 1e9;
    double n = (double)o->gets;

    for (size_t r = 0; r < o->rounds; r++) { /* best of rounds, interleaved */
        ts = min_d(ts, store_gets(o, s, 0));
        tr = min_d(tr, raw_gets(o, env, dbi, 1));
        tsp = min_d(tsp, store_gets(o, s, GETS_PER_PIN));
        trp = min_d(trp, raw_gets(o, env, dbi, GETS_PER_PIN));
    }
    printf("point gets: %zu random keys of %zu, one core; best of %zu rounds\n", o->gets, o->puts,
           o->rounds);
    printf("  one snapshot per get:      store %.0f gets/s (%.2f us), raw %.0f gets/s (%.2f us), "
           "ratio %.1f%%\n",
           n / ts, ts * 1e6 / n, n / tr, tr * 1e6 / n, 100.0 * tr / ts);
    printf("  one snapshot per %d gets:  store %.0f gets/s (%.2f us), raw %.0f gets/s (%.2f us), "
           "ratio %.1f%% (store_reader_pin)\n",
           GETS_PER_PIN, n / tsp, tsp * 1e6 / n, n / trp, trp * 1e6 / n, 100.0 * trp / tsp);
}

static void bench_range(const struct opts *o, struct store *s)
{
    struct store_reader *r;
    struct latch_arena a;
    uint8_t key[KEY_BYTES + 1];
    uint8_t end[KEY_BYTES + 1];
    size_t keys = 0;

    if (o->puts < RANGE_KEYS) {
        return;
    }
    check(store_reader_new(s, &r), "store_reader_new");
    latch_arena_init(&a, 0);
    double t0 = now_s();
    for (size_t i = 0; i < o->ranges; i++) {
        uint32_t start = (uint32_t)(rng_next() % (o->puts - RANGE_KEYS + 1));
        key_make(key, start);
        key_make(end, start + RANGE_KEYS);
        struct store_range_req q = {
            .key = key, .key_len = KEY_BYTES, .range_end = end, .range_end_len = KEY_BYTES};
        struct store_range_result res;
        latch_arena_reset(&a);
        check(store_range(r, &q, &a, &res, NULL), "store_range");
        if (res.kvs_count != RANGE_KEYS) {
            die("store_range: wrong count", 0);
        }
        keys += res.kvs_count;
    }
    double t = now_s() - t0;
    printf("range of %u keys: %.0f ranges/s, %.0f keys/s\n", RANGE_KEYS, (double)o->ranges / t,
           (double)keys / t);
    latch_arena_close(&a);
    store_reader_free(r);
}

static void bench_history(const struct opts *o, struct store *s)
{
    struct store_reader *r;
    struct latch_arena a;
    size_t events = 0;
    int64_t rev = 2; /* the first put */
    size_t want = o->puts < HISTORY_EVENTS ? o->puts : HISTORY_EVENTS;

    check(store_reader_new(s, &r), "store_reader_new");
    latch_arena_init(&a, 0);
    double t0 = now_s();
    while (events < want) {
        struct store_history_req q = {
            .start_revision = rev, .max_events = HISTORY_CHUNK, .max_bytes = 64u << 20};
        struct store_event *ev;
        size_t n;
        latch_arena_reset(&a);
        check(store_history(r, &q, &a, &ev, &n, &rev), "store_history");
        if (n == 0) {
            die("store_history: history ended early", 0);
        }
        events += n;
    }
    double t = now_s() - t0;
    printf("history replay: %zu events in chunks of %u: %.0f events/s\n", events, HISTORY_CHUNK,
           (double)events / t);
    latch_arena_close(&a);
    store_reader_free(r);
}

/* ---------------------------------------------------------------------------------- */
/* Children                                                                           */
/* ---------------------------------------------------------------------------------- */

#define PATH_STRIDE 48u
#define MID_KEYS    1000u /* keys below /mid's 10 children */

/*
 * The i-th path of the tree, parents first: /ten with 10 children that hold tree_keys
 * keys below them, /small with 10 leaf children, /big with big_children children.
 */
static void tree_path(const struct opts *o, size_t i, char *out)
{
    size_t deep = o->tree_keys;
    if (i == 0) {
        snprintf(out, PATH_STRIDE, "/ten");
    } else if (i <= 10) {
        snprintf(out, PATH_STRIDE, "/ten/c%zu", i - 1);
    } else if ((i -= 11) < deep) {
        snprintf(out, PATH_STRIDE, "/ten/c%zu/k%07zu", i % 10, i / 10);
    } else if ((i -= deep) < 11) {
        snprintf(out, PATH_STRIDE, i == 0 ? "/small" : "/small/c%zu", i - 1);
    } else if ((i -= 11) < 11) {
        snprintf(out, PATH_STRIDE, i == 0 ? "/mid" : "/mid/c%zu", i - 1);
    } else if ((i -= 11) < MID_KEYS) {
        snprintf(out, PATH_STRIDE, "/mid/c%zu/k%07zu", i % 10, i / 10);
    } else if ((i -= MID_KEYS) == 0) {
        snprintf(out, PATH_STRIDE, "/big");
    } else {
        snprintf(out, PATH_STRIDE, "/big/n%07zu", i - 1);
    }
}

static void tree_build(const struct opts *o, struct store *s)
{
    enum { CHUNK = 65536 };
    size_t total = 11 + o->tree_keys + 11 + 11 + MID_KEYS + 1 + o->big_children;
    uint8_t *paths = malloc((size_t)CHUNK * PATH_STRIDE);
    uint64_t index = 1;

    if (paths == NULL) {
        die("out of memory", LATCH_ENOMEM);
    }
    double t0 = now_s();
    for (size_t lo = 0; lo < total; lo += CHUNK) {
        size_t n = total - lo < CHUNK ? total - lo : CHUNK;
        for (size_t i = 0; i < n; i++) {
            tree_path(o, lo + i, (char *)paths + i * PATH_STRIDE);
        }
        double cpu = 0;
        (void)apply_puts(s, paths, PATH_STRIDE, n, 1024, (const uint8_t *)"v", 1, &index, &cpu);
    }
    printf("children: tree of %zu path keys built in %.1f s\n", total, now_s() - t0);
    free(paths);
}

/* Seconds per store_children(path) listing all of its children, pages of CHILDREN_PAGE;
 * *count_out gets the children seen. */
static double children_list(
    struct store_reader *r, struct latch_arena *a, const char *path, size_t reps, size_t *count_out)
{
    uint8_t after[PATH_STRIDE];
    uint32_t after_len = 0;
    size_t count = 0;
    double t0 = now_s();

    for (size_t rep = 0; rep < reps; rep++) {
        bool more = true;
        count = 0;
        after_len = 0;
        while (more) {
            struct store_child *ch;
            size_t n;
            latch_arena_reset(a);
            check(store_children(r, (const uint8_t *)path, (uint32_t)strlen(path),
                                 after_len > 0 ? after : NULL, after_len, CHILDREN_PAGE, a, &ch, &n,
                                 &more),
                  "store_children");
            if (n > 0) {
                after_len = ch[n - 1].name_len;
                memcpy(after, ch[n - 1].name, after_len);
            }
            count += n;
        }
    }
    *count_out = count;
    return (now_s() - t0) / (double)reps;
}

static void children_print(const char *what, size_t subtree_keys, double t)
{
    printf("  10 children, %s subtrees of %7zu keys: %6.2f us per listing, %.3f us per child\n",
           what, subtree_keys, t * 1e6, t * 1e6 / 10);
}

static void bench_children(const struct opts *o)
{
    char path[600];
    struct store_reader *r;
    struct latch_arena a;
    size_t n[4];
    double t[4] = {1e9, 1e9, 1e9, 1e9}; /* /ten, /mid, /small, /big */

    struct store *s = store_open_at(o, "tree", path, sizeof(path));
    tree_build(o, s);
    check(store_reader_new(s, &r), "store_reader_new");
    latch_arena_init(&a, 0);
    for (size_t round = 0; round < o->rounds; round++) { /* best of rounds, interleaved */
        t[0] = min_d(t[0], children_list(r, &a, "/ten", o->reps, &n[0]));
        t[1] = min_d(t[1], children_list(r, &a, "/mid", o->reps, &n[1]));
        t[2] = min_d(t[2], children_list(r, &a, "/small", o->reps, &n[2]));
        t[3] = min_d(t[3], children_list(r, &a, "/big", 1, &n[3]));
    }
    if (n[0] != 10 || n[1] != 10 || n[2] != 10 || n[3] != o->big_children) {
        die("store_children: wrong number of children", 0);
    }
    children_print("/ten: ", o->tree_keys, t[0]);
    children_print("/mid: ", MID_KEYS, t[1]);
    children_print("/small:", 10, t[2]);
    printf("  listing 10 children costs x%.2f with %zu-key subtrees vs 1,000-key ones, x%.2f "
           "vs 10-key ones\n",
           t[0] / t[1], o->tree_keys, t[0] / t[2]);
    printf("  %zu children (pages of %u): %.1f ms per listing, %.3f us per child\n", n[3],
           CHILDREN_PAGE, t[3] * 1e3, t[3] * 1e6 / (double)n[3]);
    latch_arena_close(&a);
    store_reader_free(r);
    store_close(s);
}

/* ---------------------------------------------------------------------------------- */
/* Snapshots                                                                          */
/* ---------------------------------------------------------------------------------- */

static void bench_snapshot(const struct opts *o, struct store *s)
{
    char file[4096];
    char path[600];
    struct store_snap_meta m;
    struct store_snap_reader *rd;
    struct store_snap_writer *w;
    uint8_t *buf = malloc(SNAP_CHUNK);

    if (buf == NULL) {
        die("out of memory", LATCH_ENOMEM);
    }
    double t0 = now_s();
    check(store_snapshot_create(s, &m, file, sizeof(file)), "store_snapshot_create");
    double tc = now_s() - t0;
    struct store *dst = store_open_at(o, "install", path, sizeof(path));
    t0 = now_s();
    check(store_snap_reader_open(s, file, &m, &rd), "store_snap_reader_open");
    double mb = (double)store_snap_reader_size(rd) / 1e6;
    check(store_snap_writer_new(dst, &w), "store_snap_writer_new");
    for (;;) {
        size_t n;
        check(store_snap_reader_read(rd, buf, SNAP_CHUNK, &n), "store_snap_reader_read");
        if (n == 0) {
            break;
        }
        check(store_snap_writer_write(w, buf, n), "store_snap_writer_write");
    }
    store_snap_reader_close(rd);
    check(store_snap_writer_finish(w, NULL), "store_snap_writer_finish");
    double ti = now_s() - t0;
    printf("snapshot of %zu keys, %.1f MB: create %.0f MB/s (%.2f s), stream + install "
           "%.0f MB/s (%.2f s)\n",
           o->puts, mb, mb / tc, tc, mb / ti, ti);
    store_close(dst);
    free(buf);
}

/* ---------------------------------------------------------------------------------- */
/* Main                                                                               */
/* ---------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: store_bench [--quick] [--dir DIR] [--keep] [--puts N] [--gets N]\n"
            "                   [--ranges N] [--tree-keys N] [--big-children N] [--rounds N]\n");
    exit(2);
}

static size_t arg_size(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        usage();
    }
    char *end;
    unsigned long long v = strtoull(argv[++*i], &end, 10);
    if (*end != '\0' || v == 0) {
        usage();
    }
    return (size_t)v;
}

static void opts_parse(int argc, char **argv, struct opts *o)
{
    const char *tmp = getenv("TMPDIR");
    *o = (struct opts){.puts = 200000,
                       .gets = 1000000,
                       .ranges = 2000,
                       .tree_keys = 1000000,
                       .big_children = 100000,
                       .reps = 20000,
                       .rounds = 3};
    snprintf(o->dir, sizeof(o->dir), "%s/store_bench.d", tmp != NULL ? tmp : "/tmp");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o->puts = 20000;
            o->gets = 100000;
            o->ranges = 200;
            o->tree_keys = 20000;
            o->big_children = 5000;
            o->reps = 2000;
            o->rounds = 1;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            snprintf(o->dir, sizeof(o->dir), "%s", argv[++i]);
        } else if (strcmp(argv[i], "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(argv[i], "--puts") == 0) {
            o->puts = arg_size(argc, argv, &i);
        } else if (strcmp(argv[i], "--gets") == 0) {
            o->gets = arg_size(argc, argv, &i);
        } else if (strcmp(argv[i], "--ranges") == 0) {
            o->ranges = arg_size(argc, argv, &i);
        } else if (strcmp(argv[i], "--tree-keys") == 0) {
            o->tree_keys = arg_size(argc, argv, &i);
        } else if (strcmp(argv[i], "--rounds") == 0) {
            o->rounds = arg_size(argc, argv, &i);
        } else if (strcmp(argv[i], "--big-children") == 0) {
            o->big_children = arg_size(argc, argv, &i);
        } else {
            usage();
        }
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    struct store *s = NULL;
    MDB_env *env = NULL;
    MDB_dbi dbi = 0;

    opts_parse(argc, argv, &o);
    latch_log_set_level(LATCH_LOG_WARN); /* no INFO lines between the figures */
    if (mkdir(o.dir, 0700) != 0 && access(o.dir, W_OK) != 0) {
        fprintf(stderr, "store_bench: cannot use %s\n", o.dir);
        return 1;
    }
    printf("store_bench: dir %s, LMDB %s\n", o.dir, MDB_VERSION_STRING);
    uint32_t *perm = permutation(o.puts);
    uint8_t *keys = keys_of(perm, o.puts);
    bench_puts(&o, keys, &s, &env, &dbi);
    bench_gets(&o, s, env, dbi);
    mdb_env_close(env);
    bench_range(&o, s);
    bench_history(&o, s);
    bench_snapshot(&o, s);
    store_close(s);
    free(keys);
    free(perm);
    bench_children(&o);
    if (!o.keep) {
        rmrf(o.dir);
    }
    return 0;
}
