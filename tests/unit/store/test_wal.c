/*
 * test_wal.c — the experimental append-only Raft log (store/store_wal.h): store_log_*'s
 * semantics, one fdatasync per append, torn tails cut at open, damage before a valid record
 * refused (naming file and offset), truncation and re-append across a reopen, compaction
 * unlinking whole segments, snapshot installs, and a randomized comparison against a model
 * with reopens after every few operations.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"
#include "store_wal.h"

#ifdef LATCH_STORE_WAL
#include <lmdb.h>

#include "latch_crc32c.h"
#endif

struct wfx {
    char dir[512];
    char wal[600];
    struct store_wal_options o;
    struct store_wal *w;
    struct latch_arena a;
    uint8_t data[256];
};

static void wal_reopen(struct wfx *f)
{
    char err[256];
    store_wal_close(f->w);
    f->w = NULL;
    int rc = store_wal_open(&f->o, &f->w, err, sizeof(err));
    if (rc != 0) {
        fail_msg("reopen: %s: %s", latch_error_name(rc), err);
    }
}

static int setup(void **state)
{
    struct wfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/latch-test-wal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->wal, sizeof(f->wal), "%s/wal", f->dir);
    f->o.dir = f->wal;
    f->o.no_sync = true;
    latch_arena_init(&f->a, 4096);
    wal_reopen(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct wfx *f = *state;
    store_wal_close(f->w);
    latch_arena_close(&f->a);
    fx_rmrf(f->dir);
    free(f);
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* Data of entry (index, term): its length and bytes follow from both. */
static struct store_entry entry(struct wfx *f, uint64_t index, uint64_t term)
{
    uint32_t len = (uint32_t)((index * 7 + term) % 40);
    uint8_t *d = latch_arena_alloc(&f->a, len + 1);
    assert_non_null(d);
    for (uint32_t i = 0; i < len; i++) {
        d[i] = (uint8_t)(index * 31 + term * 17 + i);
    }
    return (struct store_entry){.term = term, .index = index, .type = 1, .len = len, .data = d};
}

static int append_range(struct wfx *f, uint64_t lo, uint64_t hi, uint64_t term)
{
    struct store_entry e[64];
    assert_true(hi - lo <= 64);
    for (uint64_t i = lo; i < hi; i++) {
        e[i - lo] = entry(f, i, term);
    }
    return store_wal_append(f->w, e, (size_t)(hi - lo), NULL);
}

/* Every entry of [lo, hi) reads back with term terms[i - lo] and its bytes. */
static void check_entries(struct wfx *f, uint64_t lo, uint64_t hi, const uint64_t *terms)
{
    uint64_t i = lo;
    while (i < hi) {
        const struct store_entry *e;
        size_t n = 0;
        assert_int_equal(store_wal_entries(f->w, i, hi, 100, &f->a, &e, &n), 0);
        assert_true(n >= 1);
        for (size_t k = 0; k < n; k++, i++) {
            struct store_entry x = entry(f, i, terms[i - lo]);
            assert_int_equal(e[k].index, i);
            assert_int_equal(e[k].term, x.term);
            assert_int_equal(e[k].len, x.len);
            assert_memory_equal(e[k].data, x.data, x.len);
            uint64_t t = 0;
            assert_int_equal(store_wal_term(f->w, i, &t), 0);
            assert_int_equal(t, x.term);
        }
    }
    latch_arena_reset(&f->a);
}

static void seg_file(struct wfx *f, uint64_t seq, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016llx.seg", f->wal, (unsigned long long)seq);
}

static void test_append_reopen(void **state)
{
    struct wfx *f = *state;
    assert_int_equal(store_wal_first_index(f->w), 1);
    assert_int_equal(store_wal_last_index(f->w), 0);
    assert_int_equal(append_range(f, 1, 11, 1), 0);
    struct store_hard_state hs = {.term = 2, .vote = 3, .commit = 7}, got;
    assert_int_equal(store_wal_append(f->w, NULL, 0, &hs), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_first_index(f->w), 1);
    assert_int_equal(store_wal_last_index(f->w), 10);
    uint64_t terms[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_entries(f, 1, 11, terms);
    assert_int_equal(store_wal_hard_state(f->w, &got), 0);
    assert_int_equal(got.term, 2);
    assert_int_equal(got.vote, 3);
    assert_int_equal(got.commit, 7);
    uint64_t t;
    assert_int_equal(store_wal_term(f->w, 0, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(store_wal_term(f->w, 11, &t), LATCH_EUNAVAILABLE);
    const struct store_entry *e;
    size_t n;
    assert_int_equal(store_wal_entries(f->w, 5, 12, 0, &f->a, &e, &n), LATCH_EUNAVAILABLE);
    assert_int_equal(store_wal_entries(f->w, 5, 5, 0, &f->a, &e, &n), LATCH_EINVAL);
    assert_int_equal(store_wal_entries(f->w, 5, 11, 0, &f->a, &e, &n), 0);
    assert_int_equal(n, 1); /* at least one, then the budget */
}

static void test_checks(void **state)
{
    struct wfx *f = *state;
    assert_int_equal(append_range(f, 2, 3, 1), LATCH_EINVAL); /* gap */
    assert_int_equal(append_range(f, 1, 4, 2), 0);
    assert_int_equal(append_range(f, 4, 5, 1), LATCH_EINVAL); /* term going back */
    struct store_hard_state hs = {.term = 5, .vote = 1, .commit = 3};
    assert_int_equal(store_wal_append(f->w, NULL, 0, &hs), 0);
    hs.term = 4;
    assert_int_equal(store_wal_append(f->w, NULL, 0, &hs), LATCH_EINVAL);
    hs.term = 5;
    hs.commit = 2;
    assert_int_equal(store_wal_append(f->w, NULL, 0, &hs), LATCH_EINVAL);
    assert_int_equal(store_wal_compact(f->w, 2), 0);
    assert_int_equal(store_wal_compact(f->w, 2), LATCH_ECOMPACTED);
    assert_int_equal(store_wal_compact(f->w, 9), LATCH_EINVAL);
    assert_int_equal(append_range(f, 2, 3, 2), LATCH_EINVAL); /* into the compacted prefix */
    uint64_t t;
    assert_int_equal(store_wal_term(f->w, 1, &t), LATCH_ECOMPACTED);
    assert_int_equal(store_wal_term(f->w, 2, &t), 0);
    assert_int_equal(t, 2);
}

/* One fdatasync per append, entries and hard state together. */
static void test_one_sync_per_append(void **state)
{
    struct wfx *f = *state;
    f->o.no_sync = false;
    wal_reopen(f);
    uint64_t before = store_wal_syncs(f->w);
    for (uint64_t i = 1; i <= 20; i++) {
        struct store_entry e = entry(f, i, 1);
        struct store_hard_state hs = {.term = 1, .vote = 1, .commit = i - 1};
        assert_int_equal(store_wal_append(f->w, &e, 1, &hs), 0);
    }
    assert_int_equal(store_wal_syncs(f->w) - before, 20);
}

static void test_truncate_reappend_across_reopen(void **state)
{
    struct wfx *f = *state;
    assert_int_equal(append_range(f, 1, 11, 1), 0);
    assert_int_equal(append_range(f, 6, 9, 2), 0); /* drops 6..10, writes 6..8 at term 2 */
    assert_int_equal(store_wal_last_index(f->w), 8);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), 8);
    uint64_t terms[8] = {1, 1, 1, 1, 1, 2, 2, 2};
    check_entries(f, 1, 9, terms);
    assert_int_equal(append_range(f, 9, 12, 3), 0);
    assert_int_equal(append_range(f, 3, 5, 3), 0); /* drops 3..11 */
    wal_reopen(f);
    uint64_t terms2[4] = {1, 1, 3, 3};
    assert_int_equal(store_wal_last_index(f->w), 4);
    check_entries(f, 1, 5, terms2);
}

/* A crash mid-append leaves a record that fails its CRC at the tail: cut at open. */
static void test_torn_tail_cut(void **state)
{
    struct wfx *f = *state;
    assert_int_equal(append_range(f, 1, 4, 1), 0);
    char path[700];
    seg_file(f, 1, path, sizeof(path));
    struct stat st;
    store_wal_close(f->w);
    f->w = NULL;
    assert_int_equal(stat(path, &st), 0);
    /* Find the end of the written records: the last nonzero byte. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t *buf = malloc((size_t)st.st_size);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    size_t end = (size_t)st.st_size;
    while (end > 0 && buf[end - 1] == 0) {
        end--;
    }
    free(buf);
    close(fd);
    wal_reopen(f);
    /* A fourth append, torn: only its first 20 bytes reach the file. */
    assert_int_equal(append_range(f, 4, 7, 1), 0);
    store_wal_close(f->w);
    f->w = NULL;
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    size_t rec = (end + 7) & ~(size_t)7;
    uint8_t zeros[4096] = {0};
    assert_int_equal(pwrite(fd, zeros, sizeof(zeros), (off_t)(rec + 20)), (ssize_t)sizeof(zeros));
    close(fd);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), 3);
    uint64_t terms[6] = {1, 1, 1, 2, 2, 2};
    check_entries(f, 1, 4, terms);
    /* The cut is durable and appends go on where it was. */
    assert_int_equal(append_range(f, 4, 7, 2), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), 6);
    check_entries(f, 1, 7, terms);
}

/* A flipped byte in a record followed by valid ones is damage, never a torn tail. */
static void test_flipped_byte_corrupt(void **state)
{
    struct wfx *f = *state;
    for (uint64_t i = 1; i <= 10; i++) {
        assert_int_equal(append_range(f, i, i + 1, 1), 0);
    }
    char path[700];
    seg_file(f, 1, path, sizeof(path));
    store_wal_close(f->w);
    f->w = NULL;
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b[4096];
    assert_true(pread(fd, b, sizeof(b), 0) > 0);
    /* Find entry 5's record: the 6th record (after the head); flip a byte inside it. */
    size_t pos = 0;
    for (int r = 0; r < 5; r++) {
        uint32_t len = (uint32_t)b[pos] | (uint32_t)b[pos + 1] << 8;
        pos += (len + 7u) & ~7u;
    }
    uint8_t x = b[pos + 30] ^ 0x40;
    assert_int_equal(pwrite(fd, &x, 1, (off_t)(pos + 30)), 1);
    close(fd);
    char err[256];
    int rc = store_wal_open(&f->o, &f->w, err, sizeof(err));
    assert_int_equal(rc, LATCH_ECORRUPT);
    assert_null(f->w);
    assert_non_null(strstr(err, "0000000000000001.seg"));
    char off[64];
    snprintf(off, sizeof(off), "offset %zu", pos);
    assert_non_null(strstr(err, off));
    /* The same flip in the length field (the record's size unknown): still refused. */
    fd = open(path, O_RDWR);
    x ^= 0x40;
    assert_int_equal(pwrite(fd, &x, 1, (off_t)(pos + 30)), 1);
    uint8_t l = (uint8_t)(b[pos] ^ 0x10);
    assert_int_equal(pwrite(fd, &l, 1, (off_t)pos), 1);
    close(fd);
    assert_int_equal(store_wal_open(&f->o, &f->w, err, sizeof(err)), LATCH_ECORRUPT);
    assert_non_null(strstr(err, off));
    /* Restored, it opens again. */
    fd = open(path, O_RDWR);
    assert_int_equal(pwrite(fd, &b[pos], 1, (off_t)pos), 1);
    close(fd);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), 10);
}

static void test_foreign_files_refused(void **state)
{
    struct wfx *f = *state;
    char path[700], err[256];
    store_wal_close(f->w);
    f->w = NULL;
    snprintf(path, sizeof(path), "%s/notes.txt", f->wal);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("hello", fp);
    fclose(fp);
    assert_int_equal(store_wal_open(&f->o, &f->w, err, sizeof(err)), LATCH_EFORMAT);
    assert_non_null(strstr(err, "notes.txt"));
    unlink(path);
    /* A segment whose head is not a wal header. */
    seg_file(f, 1, path, sizeof(path));
    int fd = open(path, O_RDWR);
    uint8_t m = 'X';
    assert_int_equal(pwrite(fd, &m, 1, 8 + 8), 1); /* first byte of the magic */
    close(fd);
    assert_int_equal(store_wal_open(&f->o, &f->w, err, sizeof(err)), LATCH_ECORRUPT);
    assert_non_null(strstr(err, "0000000000000001.seg"));
}

static void test_compaction_drops_segments(void **state)
{
    struct wfx *f = *state;
    f->o.segment_bytes = 2048;
    f->o.prealloc_bytes = 1024;
    wal_reopen(f);
    uint64_t terms[400];
    for (uint64_t i = 1; i <= 400; i++) {
        terms[i - 1] = 1 + i / 100;
        struct store_entry e = entry(f, i, terms[i - 1]);
        struct store_hard_state hs = {.term = terms[i - 1], .vote = 2, .commit = i};
        assert_int_equal(store_wal_append(f->w, &e, 1, &hs), 0);
        latch_arena_reset(&f->a);
    }
    size_t before = store_wal_segments(f->w);
    assert_true(before > 5);
    assert_int_equal(store_wal_compact(f->w, 350), 0);
    size_t after = store_wal_segments(f->w);
    assert_true(after < before);
    assert_true(after >= 1);
    char path[700];
    seg_file(f, 1, path, sizeof(path));
    assert_int_not_equal(access(path, F_OK), 0); /* the oldest is gone */
    wal_reopen(f);
    assert_int_equal(store_wal_segments(f->w), after);
    assert_int_equal(store_wal_first_index(f->w), 351);
    assert_int_equal(store_wal_last_index(f->w), 400);
    check_entries(f, 351, 401, terms + 350);
    uint64_t t;
    assert_int_equal(store_wal_term(f->w, 350, &t), 0);
    assert_int_equal(t, terms[349]);
    struct store_hard_state hs;
    assert_int_equal(store_wal_hard_state(f->w, &hs), 0);
    assert_int_equal(hs.commit, 400);
    /* Everything compacted: only the newest segment stays, the log is empty. */
    assert_int_equal(store_wal_compact(f->w, 400), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_first_index(f->w), 401);
    assert_int_equal(store_wal_last_index(f->w), 400);
    assert_int_equal(append_range(f, 401, 402, 5), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), 401);
}

static void test_install(void **state)
{
    struct wfx *f = *state;
    assert_int_equal(append_range(f, 1, 11, 1), 0);
    struct store_snap_meta m = {.index = 5, .term = 1, .conf_len = 3, .conf = {1, 2, 3}};
    assert_int_equal(store_wal_install_mark(f->w, &m), 0);
    uint64_t mi, mt;
    wal_reopen(f);
    assert_true(store_wal_install_marked(f->w, &mi, &mt));
    assert_int_equal(mi, 5);
    /* Matching term at 5: entries after it stay. */
    assert_int_equal(store_wal_install(f->w, &m), 0);
    wal_reopen(f);
    assert_false(store_wal_install_marked(f->w, &mi, &mt));
    assert_int_equal(store_wal_first_index(f->w), 6);
    assert_int_equal(store_wal_last_index(f->w), 10);
    struct store_snap_meta got;
    assert_int_equal(store_wal_snapshot_meta(f->w, &got), 0);
    assert_int_equal(got.index, 5);
    assert_int_equal(got.conf_len, 3);
    assert_memory_equal(got.conf, m.conf, 3);
    struct store_hard_state hs;
    assert_int_equal(store_wal_hard_state(f->w, &hs), 0);
    assert_int_equal(hs.commit, 5);
    /* A conflicting term at 8: the log restarts at the snapshot. */
    struct store_snap_meta m2 = {.index = 8, .term = 4};
    assert_int_equal(store_wal_install(f->w, &m2), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_first_index(f->w), 9);
    assert_int_equal(store_wal_last_index(f->w), 8);
    uint64_t t;
    assert_int_equal(store_wal_term(f->w, 8, &t), 0);
    assert_int_equal(t, 4);
    /* Beyond the log. */
    struct store_snap_meta m3 = {.index = 20, .term = 5};
    assert_int_equal(store_wal_install(f->w, &m3), 0);
    assert_int_equal(append_range(f, 21, 23, 5), 0);
    wal_reopen(f);
    assert_int_equal(store_wal_first_index(f->w), 21);
    assert_int_equal(store_wal_last_index(f->w), 22);
}

/* Random appends (with truncations), compactions and installs against a model, with small
 * segments and a reopen every few steps. */
static void test_random_model(void **state)
{
    struct wfx *f = *state;
    f->o.segment_bytes = 1024;
    f->o.prealloc_bytes = 512;
    wal_reopen(f);
    uint64_t terms[4096] = {0}; /* model: term of index i */
    uint64_t point = 0, last = 0, term = 1;
    uint32_t seed = 12345;
    for (int step = 0; step < 1500; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t r = (seed >> 8) % 100;
        if (r < 70) {
            uint64_t lo = last + 1;
            if (r < 20 && last > point + 1) {
                lo = point + 2 + (seed >> 4) % (last - point - 1);
                term++;
            }
            uint64_t n = 1 + (seed >> 12) % 5;
            if (lo + n >= 4096) {
                break;
            }
            assert_int_equal(append_range(f, lo, lo + n, term), 0);
            for (uint64_t i = lo; i < lo + n; i++) {
                terms[i] = term;
            }
            last = lo + n - 1;
        } else if (r < 90 && last > point) {
            uint64_t c = point + 1 + (seed >> 6) % (last - point);
            assert_int_equal(store_wal_compact(f->w, c), 0);
            point = c;
        } else if (r < 93) {
            struct store_snap_meta m = {.index = last + 3, .term = ++term};
            assert_int_equal(store_wal_install(f->w, &m), 0);
            point = last = m.index;
            terms[point] = term;
        } else {
            wal_reopen(f);
        }
        assert_int_equal(store_wal_first_index(f->w), point + 1);
        assert_int_equal(store_wal_last_index(f->w), last);
        if (step % 50 == 0 && last > point) {
            check_entries(f, point + 1, last + 1, terms + point + 1);
        }
    }
    wal_reopen(f);
    assert_int_equal(store_wal_first_index(f->w), point + 1);
    assert_int_equal(store_wal_last_index(f->w), last);
    if (last > point) {
        check_entries(f, point + 1, last + 1, terms + point + 1);
    }
    assert_true(store_wal_segments(f->w) < 20);
}

struct race {
    struct store_wal *w;
    atomic_bool stop;
    uint64_t reads;
};

/* Another thread reads (terms, entries with their CRC checks, hard state, sizes) while the
 * writer appends, truncates, compacts and rolls segments over (run under TSan too). */
static void *race_reader(void *arg)
{
    struct race *rc = arg;
    struct latch_arena a;
    latch_arena_init(&a, 4096);
    while (!atomic_load(&rc->stop)) {
        uint64_t first = store_wal_first_index(rc->w);
        uint64_t last = store_wal_last_index(rc->w);
        uint64_t t;
        const struct store_entry *e;
        size_t n;
        if (last >= first) {
            int r = store_wal_entries(rc->w, first, last + 1, 256, &a, &e, &n);
            /* Compaction may move first past what was asked meanwhile. */
            assert_true(r == 0 || r == LATCH_ECOMPACTED || r == LATCH_EUNAVAILABLE);
            int r2 = store_wal_term(rc->w, last, &t);
            assert_true(r2 == 0 || r2 == LATCH_ECOMPACTED || r2 == LATCH_EUNAVAILABLE);
        }
        struct store_hard_state hs;
        assert_int_equal(store_wal_hard_state(rc->w, &hs), 0);
        (void)store_wal_file_bytes(rc->w);
        latch_arena_reset(&a);
        rc->reads++;
    }
    latch_arena_close(&a);
    return NULL;
}

static void test_concurrent_reader(void **state)
{
    struct wfx *f = *state;
    f->o.segment_bytes = 2048;
    f->o.prealloc_bytes = 1024;
    wal_reopen(f);
    struct race rc = {.w = f->w};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, race_reader, &rc), 0);
    uint64_t last = 0, term = 1;
    for (int i = 0; i < 600; i++) {
        uint64_t lo = last + 1;
        if (i % 7 == 6 && last > store_wal_first_index(f->w) + 2) {
            lo = last - 1;
            term++;
        }
        struct store_hard_state hs = {.term = term, .vote = 1, .commit = lo - 1};
        struct store_entry e[3] = {entry(f, lo, term), entry(f, lo + 1, term),
                                   entry(f, lo + 2, term)};
        assert_int_equal(store_wal_append(f->w, e, 3, &hs), 0);
        last = lo + 2;
        if (i % 10 == 9) {
            assert_int_equal(store_wal_compact(f->w, last - 5), 0);
        }
        latch_arena_reset(&f->a);
    }
    atomic_store(&rc.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(rc.reads > 0);
    wal_reopen(f);
    assert_int_equal(store_wal_last_index(f->w), last);
}

#ifdef LATCH_STORE_WAL
/* ---- conversion of an older build's raft.mdb (store_open in a LATCH_STORE_WAL build) ---- */

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void mput(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
    MDB_val val = {.mv_size = vl, .mv_data = (void *)v};
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
}

/* Writes <dir>/raft.mdb as builds before the wal did (store_log.c's record formats, frozen):
 * compaction point (4, 1), entries 5..12 (terms 1, then 2 from 9), hard state (2, 3, 10),
 * snapshot metadata (4, 1, conf "abc"). */
static void make_raft_mdb(struct wfx *f, const char *dir)
{
    char path[700];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, log;
    uint8_t b[128];
    snprintf(path, sizeof(path), "%s/raft.mdb", dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, "log", MDB_CREATE, &log), 0);
    memcpy(b, "LATCHRFT", 8);
    le32(b + 8, 1);
    le32(b + 12, latch_crc32c(0, b, 12));
    mput(txn, meta, "format", 6, b, 16);
    le64(b, 4);
    le64(b + 8, 1);
    mput(txn, meta, "first", 5, b, 16);
    le64(b, 2);
    le64(b + 8, 3);
    le64(b + 16, 10);
    le32(b + 24, latch_crc32c(0, b, 24));
    mput(txn, meta, "hard", 4, b, 28);
    le64(b, 4);
    le64(b + 8, 1);
    le32(b + 16, 3);
    memcpy(b + 20, "abc", 3);
    le32(b + 23, latch_crc32c(0, b, 23));
    mput(txn, meta, "snap", 4, b, 27);
    for (uint64_t i = 5; i <= 12; i++) {
        struct store_entry e = entry(f, i, i < 9 ? 1 : 2);
        uint8_t k[8];
        for (int j = 0; j < 8; j++) {
            k[j] = (uint8_t)(i >> (56 - 8 * j));
        }
        le64(b, e.term);
        le32(b + 8, e.type);
        memcpy(b + 16, e.data, e.len);
        uint32_t crc = latch_crc32c(0, k, 8);
        crc = latch_crc32c(crc, b, 12);
        le32(b + 12, latch_crc32c(crc, e.data, e.len));
        mput(txn, log, k, 8, b, 16 + (size_t)e.len);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_convert_raft_mdb(void **state)
{
    struct wfx *f = *state;
    char sdir[600], path[1400], err[STORE_ERRMSG_BYTES];
    struct store_options o;
    struct store *s = NULL;
    snprintf(sdir, sizeof(sdir), "%s/data", f->dir);
    store_options_defaults(&o);
    o.dir = sdir;
    /* A data dir of the older layout: state.mdb (empty, applied 0) and raft.mdb. */
    assert_int_equal(store_open(&o, &s, err, sizeof(err)), 0);
    store_close(s);
    snprintf(path, sizeof(path), "rm -rf '%s/wal'", sdir);
    assert_int_equal(system(path), 0);
    make_raft_mdb(f, sdir);
    assert_int_equal(store_open(&o, &s, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/raft.mdb", sdir);
    assert_int_not_equal(access(path, F_OK), 0); /* removed once the wal was in place */
    snprintf(path, sizeof(path), "%s/wal", sdir);
    assert_int_equal(access(path, F_OK), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(store_log_first_index(s), 5);
        assert_int_equal(store_log_last_index(s), 12);
        uint64_t t;
        assert_int_equal(store_log_term(s, 4, &t), 0);
        assert_int_equal(t, 1);
        const struct store_entry *e;
        size_t n;
        assert_int_equal(store_log_entries(s, 5, 13, UINT64_MAX, &e, &n), 0);
        assert_int_equal(n, 8);
        for (size_t i = 0; i < n; i++) {
            struct store_entry x = entry(f, 5 + i, 5 + i < 9 ? 1 : 2);
            assert_int_equal(e[i].index, x.index);
            assert_int_equal(e[i].term, x.term);
            assert_int_equal(e[i].len, x.len);
            assert_memory_equal(e[i].data, x.data, x.len);
        }
        struct store_hard_state hs;
        assert_int_equal(store_log_hard_state(s, &hs), 0);
        assert_int_equal(hs.term, 2);
        assert_int_equal(hs.vote, 3);
        assert_int_equal(hs.commit, 10);
        struct store_snap_meta m;
        assert_int_equal(store_log_snapshot_meta(s, &m), 0);
        assert_int_equal(m.index, 4);
        assert_int_equal(m.conf_len, 3);
        assert_memory_equal(m.conf, "abc", 3);
        store_close(s);
        s = NULL;
        assert_int_equal(store_open(&o, &s, err, sizeof(err)), 0);
    }
    /* A raft.mdb beside a complete wal (a crash after the conversion's rename): removed. */
    store_close(s);
    make_raft_mdb(f, sdir);
    assert_int_equal(store_open(&o, &s, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/raft.mdb", sdir);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(store_log_last_index(s), 12);
    store_close(s);
    /* A wal.new (a conversion a crash cut short) is dropped and the conversion redone. */
    snprintf(path, sizeof(path), "mv '%s/wal' '%s/wal.new'", sdir, sdir);
    assert_int_equal(system(path), 0);
    make_raft_mdb(f, sdir);
    assert_int_equal(store_open(&o, &s, err, sizeof(err)), 0);
    assert_int_equal(store_log_last_index(s), 12);
    store_close(s);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_append_reopen),
        T(test_checks),
        T(test_one_sync_per_append),
        T(test_truncate_reappend_across_reopen),
        T(test_torn_tail_cut),
        T(test_flipped_byte_corrupt),
        T(test_foreign_files_refused),
        T(test_compaction_drops_segments),
        T(test_install),
        T(test_random_model),
        T(test_concurrent_reader),
#ifdef LATCH_STORE_WAL
        T(test_convert_raft_mdb),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
