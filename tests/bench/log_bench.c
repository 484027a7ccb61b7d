/*
 * log_bench.c — the write path of one put on a leader, synced, in one process: the Raft log
 * append (one entry, the hard state) followed by the apply of that entry to state.mdb, with
 * the log in raft.mdb (store_open of a build without LATCH_STORE_WAL) and in the append-only
 * log (store/store_wal.h), alternating rounds in the same run so other load hits both alike.
 * Prints the latency of a write (p50, p90, mean) and the rate, per log format; durability on
 * (fdatasync), on the file system of --dir. A benchmark: prints figures, judges nothing, but
 * exits 1 if any call fails.
 *
 *   log_bench [--dir DIR] [--writes N] [--rounds R] [--value BYTES]
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "store.h"
#include "store_wal.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, int rc, const char *err)
{
    fprintf(stderr, "log_bench: %s: %s %s\n", what, latch_error_name(rc), err ? err : "");
    exit(1);
}

struct side {
    const char *name;
    struct store *s;     /* its state.mdb (and, for raft.mdb, its log) */
    struct store_wal *w; /* NULL: the log is store_log_* (raft.mdb) */
    uint64_t index;
    double *lat;
    size_t nlat;
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void one_write(struct side *sd, const uint8_t *cmd, size_t len, struct latch_arena *a)
{
    uint64_t i = ++sd->index;
    struct store_entry e = {.term = 1, .index = i, .type = 1, .len = (uint32_t)len, .data = cmd};
    struct store_hard_state hs = {.term = 1, .vote = 1, .commit = i - 1};
    double t0 = now_ms();
    int rc =
        sd->w != NULL ? store_wal_append(sd->w, &e, 1, &hs) : store_log_append(sd->s, &e, 1, &hs);
    if (rc != 0) {
        die("append", rc, sd->name);
    }
    struct store_apply_item item = {
        .index = i, .term = 1, .kind = STORE_ITEM_CMD, .len = (uint32_t)len, .data = cmd};
    struct store_result res;
    latch_arena_reset(a);
    rc = store_apply(sd->s, &item, 1, a, &res);
    if (rc != 0 || res.err != 0) {
        die("apply", rc != 0 ? rc : res.err, sd->name);
    }
    sd->lat[sd->nlat++] = now_ms() - t0;
}

int main(int argc, char **argv)
{
    const char *base = "/var/tmp";
    size_t writes = 500, rounds = 6, vlen = 64;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else if (strcmp(argv[i], "--writes") == 0 && i + 1 < argc) {
            writes = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--value") == 0 && i + 1 < argc) {
            vlen = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: log_bench [--dir DIR] [--writes N] [--rounds R] [--value B]\n");
            return 2;
        }
    }
    char dir[512], p1[600], p2[600], p3[600], err[STORE_ERRMSG_BYTES] = "";
    snprintf(dir, sizeof(dir), "%s/log_bench.XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("log_bench: mkdtemp");
        return 1;
    }
    snprintf(p1, sizeof(p1), "%s/mdb", dir);
    snprintf(p2, sizeof(p2), "%s/walstate", dir);
    snprintf(p3, sizeof(p3), "%s/walstate-log", dir);

    struct store_options so;
    store_options_defaults(&so);
    struct side sides[2] = {{.name = "raft.mdb"}, {.name = "append-only log"}};
    so.dir = p1;
    int rc = store_open(&so, &sides[0].s, err, sizeof(err));
    rc = rc != 0 ? rc : (so.dir = p2, store_open(&so, &sides[1].s, err, sizeof(err)));
    if (rc != 0) {
        die("store_open", rc, err);
    }
    char probe[700];
    snprintf(probe, sizeof(probe), "%s/raft.mdb", p1);
    if (access(probe, F_OK) != 0) {
        fprintf(stderr, "log_bench: this build keeps the log of store_open in the wal "
                        "(LATCH_STORE_WAL): build without it to compare\n");
        return 1;
    }
    struct store_wal_options wo = {.dir = p3};
    rc = store_wal_open(&wo, &sides[1].w, err, sizeof(err));
    if (rc != 0) {
        die("store_wal_open", rc, err);
    }
    /* The command: a put of key "k<n % 1000>" with a value of vlen bytes. */
    struct store_op op = {.type = STORE_OP_PUT};
    uint8_t *val = calloc(1, vlen + 1);
    memset(val, 'v', vlen);
    op.u.put = (struct store_put_req){.key = (const uint8_t *)"bench/key",
                                      .key_len = 9,
                                      .value = val,
                                      .value_len = (uint32_t)vlen};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    size_t cap = store_cmd_size(&c), len = 0;
    uint8_t *cmd = malloc(cap);
    if (cmd == NULL || store_cmd_encode(&c, cmd, cap, &len) != 0) {
        die("encode", LATCH_EINVAL, NULL);
    }
    struct latch_arena a;
    latch_arena_init(&a, 4096);
    for (int k = 0; k < 2; k++) {
        sides[k].lat = calloc(writes * rounds, sizeof(double));
    }
    uint64_t syncs0 = store_wal_syncs(sides[1].w);
    for (size_t r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            struct side *sd = &sides[(r + (size_t)k) % 2];
            for (size_t i = 0; i < writes; i++) {
                one_write(sd, cmd, len, &a);
            }
        }
    }
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la != NULL) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
            load[0] = -1;
        }
        fclose(la);
    }
    printf("log_bench: %zu rounds x %zu synced writes (log append of one %zu-byte entry + hard "
           "state, then its apply) per format, alternating; dir %s; load %.2f %.2f %.2f\n",
           rounds, writes, len, base, load[0], load[1], load[2]);
    for (int k = 0; k < 2; k++) {
        struct side *sd = &sides[k];
        double sum = 0;
        for (size_t i = 0; i < sd->nlat; i++) {
            sum += sd->lat[i];
        }
        qsort(sd->lat, sd->nlat, sizeof(double), cmp_d);
        printf("  %-16s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  mean %.3f ms  -> %.0f writes/s\n",
               sd->name, sd->lat[sd->nlat / 2], sd->lat[sd->nlat * 9 / 10],
               sd->lat[sd->nlat * 99 / 100], sum / (double)sd->nlat,
               1000.0 * (double)sd->nlat / sum);
    }
    printf("  append-only log: %.2f fdatasync per log append\n",
           (double)(store_wal_syncs(sides[1].w) - syncs0) / (double)(writes * rounds));
    store_wal_close(sides[1].w);
    store_close(sides[0].s);
    store_close(sides[1].s);
    latch_arena_close(&a);
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
