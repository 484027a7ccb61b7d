/*
 * test_open.c — opening data dirs: fresh, reopened, and every kind of dir store_open must
 * refuse without changing a byte (issue 3 item 7), plus the ERROR state after a failure.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "latch_crc32c.h"
#include "latch_error.h"
#include "store_fixture.h"

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole content of path (malloc'ed) and its length. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Opens dir expecting err, and checks the message names needle. */
static void expect_refused(struct fx *f, int err, const char *needle)
{
    char msg[STORE_ERRMSG_BYTES] = "";
    struct store *s = NULL;
    int rc = store_open(&f->opt, &s, msg, sizeof(msg));
    if (rc != err) {
        fail_msg("store_open: got %s (%s), want %s", latch_error_name(rc), msg,
                 latch_error_name(err));
    }
    assert_null(s);
    if (strstr(msg, needle) == NULL) {
        fail_msg("message \"%s\" does not name \"%s\"", msg, needle);
    }
}

/* Rewrites the format record of one env (raw LMDB) with version, valid checksum. */
static void set_format_version(const char *path, const char magic[8], uint32_t version)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t rec[16];

    memcpy(rec, magic, 8);
    rec[8] = (uint8_t)version;
    rec[9] = (uint8_t)(version >> 8);
    rec[10] = (uint8_t)(version >> 16);
    rec[11] = (uint8_t)(version >> 24);
    uint32_t crc = latch_crc32c(0, rec, 12);
    for (int i = 0; i < 4; i++) {
        rec[12 + i] = (uint8_t)(crc >> (8 * i));
    }
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {.mv_size = 6, .mv_data = "format"};
    MDB_val v = {.mv_size = sizeof(rec), .mv_data = rec};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void close_store(struct fx *f)
{
    store_reader_free(f->r);
    store_close(f->s);
    f->r = NULL;
    f->s = NULL;
    latch_arena_close(&f->arena); /* still usable: fx_reopen allocates again */
}

static void test_open_creates_fresh_store_at_revision_one(void **state)
{
    (void)state;
    struct fx f;
    struct store_status st;
    struct store_hard_state hs;

    fx_setup(&f);
    assert_int_equal(store_status(f.r, &st), 0);
    assert_int_equal(st.revision, 1);
    assert_int_equal(st.compact_revision, 0);
    assert_int_equal(st.applied_index, 0);
    assert_false(st.alarm_nospace);
    assert_int_equal(store_log_hard_state(f.s, &hs), 0);
    assert_int_equal(hs.term, 0);
    assert_int_equal(hs.vote, 0);
    assert_int_equal(hs.commit, 0);
    assert_int_equal(store_log_first_index(f.s), 1);
    assert_int_equal(store_log_last_index(f.s), 0);
    assert_string_equal(store_dir(f.s), f.dir);
    assert_int_equal(store_failed(f.s), 0);
    fx_teardown(&f);
}

static void test_open_creates_missing_dir(void **state)
{
    (void)state;
    struct fx f;
    char sub[600];

    fx_setup(&f);
    close_store(&f);
    snprintf(sub, sizeof(sub), "%s/nested", f.dir);
    f.opt.dir = sub;
    struct store *s;
    assert_int_equal(store_open(&f.opt, &s, NULL, 0), 0);
    store_close(s);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    f.opt.dir = f.dir;
    fx_rmrf(f.dir);
}

static void test_open_reopens_with_state_intact(void **state)
{
    (void)state;
    struct fx f;
    char v[16];

    fx_setup(&f);
    assert_int_equal(fx_put(&f, "a", "1", 0), 0);
    assert_int_equal(fx_put(&f, "b", "2", 0), 0);
    int64_t rev = fx_rev(&f);
    fx_reopen(&f);
    assert_int_equal(fx_rev(&f), rev);
    assert_int_equal(fx_get(&f, "b", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "2");
    assert_int_equal(f.next_index, 3);
    fx_teardown(&f);
}

static void test_open_refuses_dir_with_unknown_file(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/member", f.dir);
    write_file(path, "x", 1);
    expect_refused(&f, LATCH_EFORMAT, "member");
    fx_rmrf(f.dir);
}

static void test_open_refuses_foreign_dir_without_touching_it(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    fx_rmrf(f.dir);
    assert_int_equal(mkdir(f.dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/notes.txt", f.dir);
    write_file(path, "keep me", 7);
    expect_refused(&f, LATCH_EFORMAT, "notes.txt");
    size_t len;
    uint8_t *after = read_file(path, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(after, "keep me", 7);
    free(after);
    char raft[700];
    snprintf(raft, sizeof(raft), "%s/raft.mdb", f.dir);
    assert_int_not_equal(access(raft, F_OK), 0); /* nothing was created */
    fx_rmrf(f.dir);
}

static void test_open_refuses_garbage_file_naming_it(void **state)
{
    (void)state;
    struct fx f;
    char path[700];
    uint8_t junk[8192];

    fx_setup(&f);
    close_store(&f);
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 7 + 3);
    }
    snprintf(path, sizeof(path), "%s/state.mdb", f.dir);
    write_file(path, junk, sizeof(junk));
    expect_refused(&f, LATCH_ECORRUPT, "state.mdb");
    size_t len;
    uint8_t *after = read_file(path, &len);
    assert_int_equal(len, sizeof(junk));
    assert_memory_equal(after, junk, sizeof(junk)); /* never re-initialised */
    free(after);
    fx_rmrf(f.dir);
}

static void test_open_refuses_newer_format_version(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/state.mdb", f.dir);
    set_format_version(path, "LATCHSTA", STORE_FORMAT_VERSION + 1);
    expect_refused(&f, LATCH_EFORMAT, "newer");
    fx_rmrf(f.dir);
}

static void test_open_refuses_foreign_lmdb_file(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    /* An LMDB file of someone else's: valid LMDB, no latch format record. */
#ifdef LATCH_STORE_WAL
    snprintf(path, sizeof(path), "%s/wal", f.dir); /* raft.mdb is what a conversion reads */
    fx_rmrf(path);
#endif
    snprintf(path, sizeof(path), "%s/raft.mdb", f.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/raft.mdb-lock", f.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/raft.mdb", f.dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {.mv_size = 3, .mv_data = "foo"};
    MDB_val v = {.mv_size = 3, .mv_data = "bar"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    expect_refused(&f, LATCH_EFORMAT, "raft.mdb");
    fx_rmrf(f.dir);
}

#ifdef LATCH_STORE_WAL
/* The wal's format record (the head of its first segment) with a flipped bit. */
static void test_open_refuses_corrupt_format_record(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/wal/0000000000000001.seg", f.dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 24), 1); /* the version, after the magic */
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 24), 1);
    close(fd);
    expect_refused(&f, LATCH_ECORRUPT, "damaged");
    fx_rmrf(f.dir);
}
#else
static void test_open_refuses_corrupt_format_record(void **state)
{
    (void)state;
    struct fx f;
    char path[700];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;

    fx_setup(&f);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/raft.mdb", f.dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {.mv_size = 6, .mv_data = "format"};
    MDB_val v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t rec[16];
    assert_int_equal(v.mv_size, sizeof(rec));
    memcpy(rec, v.mv_data, sizeof(rec));
    rec[9] ^= 0x40; /* a flipped bit in the version */
    v.mv_data = rec;
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    expect_refused(&f, LATCH_ECORRUPT, "checksum");
    fx_rmrf(f.dir);
}
#endif

static void test_open_refuses_raft_file_without_state_file(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/state.mdb", f.dir);
    assert_int_equal(unlink(path), 0);
    expect_refused(&f, LATCH_ECORRUPT, "state.mdb");
    fx_rmrf(f.dir);
}

static void test_open_refuses_state_with_data_but_no_raft_file(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    assert_int_equal(fx_put(&f, "k", "v", 0), 0);
    close_store(&f);
#ifdef LATCH_STORE_WAL
    snprintf(path, sizeof(path), "%s/wal", f.dir);
    fx_rmrf(path);
    expect_refused(&f, LATCH_ECORRUPT, "wal: missing");
#else
    snprintf(path, sizeof(path), "%s/raft.mdb", f.dir);
    assert_int_equal(unlink(path), 0);
    expect_refused(&f, LATCH_ECORRUPT, "raft.mdb");
#endif
    fx_rmrf(f.dir);
}

/* A crash in the first open between formatting state.mdb and raft.mdb: the next open
 * completes the format (nothing could have been written yet). */
static void test_open_completes_interrupted_first_format(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    close_store(&f);
#ifdef LATCH_STORE_WAL
    snprintf(path, sizeof(path), "%s/wal", f.dir);
    fx_rmrf(path);
    snprintf(path, sizeof(path), "%s/wal.new", f.dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/wal.new/0000000000000001.seg", f.dir);
    write_file(path, "half", 4); /* a format cut short */
#else
    snprintf(path, sizeof(path), "%s/raft.mdb", f.dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/raft.mdb.init", f.dir);
    write_file(path, "half", 4); /* a format cut short */
#endif
    fx_reopen(&f);
    assert_int_equal(fx_rev(&f), 1);
    assert_int_equal(fx_put(&f, "k", "v", 0), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    fx_teardown(&f);
}

static void test_open_rejects_bad_options(void **state)
{
    (void)state;
    struct store_options o;
    struct store *s = NULL;
    char msg[STORE_ERRMSG_BYTES];

    store_options_defaults(&o);
    assert_int_equal(store_open(&o, &s, msg, sizeof(msg)), LATCH_EINVAL);
    o.dir = "/tmp/whatever";
    o.map_bytes_max = o.map_bytes_initial - 1;
    assert_int_equal(store_open(&o, &s, msg, sizeof(msg)), LATCH_EINVAL);
    assert_null(s);
}

static void test_open_drops_unfinished_install_file(void **state)
{
    (void)state;
    struct fx f;
    char path[700];

    fx_setup(&f);
    assert_int_equal(fx_put(&f, "k", "v", 0), 0);
    close_store(&f);
    snprintf(path, sizeof(path), "%s/state.mdb.new", f.dir);
    write_file(path, "partial", 7);
    fx_reopen(&f);
    assert_int_not_equal(access(path, F_OK), 0);
    char v[8];
    assert_int_equal(fx_get(&f, "k", v, sizeof(v), NULL), 0);
    assert_string_equal(v, "v");
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_creates_fresh_store_at_revision_one),
        cmocka_unit_test(test_open_creates_missing_dir),
        cmocka_unit_test(test_open_reopens_with_state_intact),
        cmocka_unit_test(test_open_refuses_dir_with_unknown_file),
        cmocka_unit_test(test_open_refuses_foreign_dir_without_touching_it),
        cmocka_unit_test(test_open_refuses_garbage_file_naming_it),
        cmocka_unit_test(test_open_refuses_newer_format_version),
        cmocka_unit_test(test_open_refuses_foreign_lmdb_file),
        cmocka_unit_test(test_open_refuses_corrupt_format_record),
        cmocka_unit_test(test_open_refuses_raft_file_without_state_file),
        cmocka_unit_test(test_open_refuses_state_with_data_but_no_raft_file),
        cmocka_unit_test(test_open_completes_interrupted_first_format),
        cmocka_unit_test(test_open_rejects_bad_options),
        cmocka_unit_test(test_open_drops_unfinished_install_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
