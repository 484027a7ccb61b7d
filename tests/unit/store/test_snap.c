/*
 * test_snap.c — state snapshots (issue 3 item 6): a snapshot streamed in small chunks and
 * installed on another store reproduces the state exactly (keys at every readable
 * revision, history, compaction point, leases, hierarchy counters, membership), resets the
 * Raft log to it and keeps earlier readers working; a damaged or truncated stream and an
 * old snapshot are refused with the old state untouched; the copy is compacted; only the
 * two newest snapshot files are kept; a crash right after the rename is finished at open.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "latch_error.h"
#include "store_fixture.h"
#include "store_wal.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

#define HDR_BYTES 4148u /* the snapshot header (store_snap.c) */
#define CONF_TEXT "members: 1,2,3"

/* ---------------------------------------------------------------------------------- */
/* Building a state                                                                   */
/* ---------------------------------------------------------------------------------- */

static int64_t lease_grant(struct fx *f, int64_t id, int64_t ttl)
{
    struct store_cmd c = {.type = STORE_CMD_LEASE_GRANT};
    struct store_result res;
    c.u.lease_grant.id = id;
    c.u.lease_grant.ttl = ttl;
    assert_int_equal(fx_apply(f, &c, &res), 0);
    return res.u.lease_grant.id;
}

static void compact(struct fx *f, int64_t rev)
{
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = rev;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

/* Records membership text as of the next index (a CONF item). */
static void apply_conf(struct fx *f, const char *text)
{
    struct store_apply_item item = {.index = f->next_index,
                                    .term = 1,
                                    .kind = STORE_ITEM_CONF,
                                    .len = L(text),
                                    .data = B(text)};
    struct store_result res;
    latch_arena_reset(&f->arena);
    assert_int_equal(store_apply(f->s, &item, 1, &f->arena, &res), 0);
    assert_int_equal(res.err, 0);
    f->next_index++;
}

/* A state with overwrites, deletes, a compaction, leases with keys and a checkpoint,
 * hierarchy nodes and a membership record. */
static void populate(struct fx *f)
{
    char key[32];
    char val[64];

    int64_t l1 = lease_grant(f, 0, 100);
    int64_t l2 = lease_grant(f, 77, 50);
    assert_int_equal(fx_put(f, "/a", "A", 0), 0);
    assert_int_equal(fx_put(f, "/a/b", "B", l1), 0);
    assert_int_equal(fx_put(f, "/a/c", "C", l2), 0);
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        snprintf(val, sizeof(val), "value %d", i);
        assert_int_equal(fx_put(f, key, val, i % 7 == 0 ? l1 : 0), 0);
    }
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        snprintf(val, sizeof(val), "second %d", i);
        assert_int_equal(fx_put(f, key, val, 0), 0);
    }
    for (int i = 20; i < 30; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        assert_int_equal(fx_del(f, key), 0);
    }
    compact(f, fx_rev(f) - 15);
    apply_conf(f, CONF_TEXT);
    for (int i = 40; i < 50; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        snprintf(val, sizeof(val), "third %d", i);
        assert_int_equal(fx_put(f, key, val, l2), 0);
    }
    assert_int_equal(fx_del(f, "/a/c"), 0);
    struct store_lease_checkpoint cp = {.id = l2, .remaining_ttl = 30};
    struct store_cmd c = {.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = &cp;
    c.u.lease_checkpoint.count = 1;
    assert_int_equal(fx_apply(f, &c, NULL), 0);
}

/* ---------------------------------------------------------------------------------- */
/* Describing a state as text, to compare two stores                                  */
/* ---------------------------------------------------------------------------------- */

/* A growing string (cmocka's allocator: UNIT_TESTING maps malloc and free to it). */
struct text {
    char *p;
    size_t len;
    size_t cap;
};

static void tprintf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)n + 1;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
}

static void dump_kv(struct text *o, const struct store_kv *kv)
{
    tprintf(o, "  %.*s c=%lld m=%lld v=%lld l=%lld", (int)kv->key_len, (const char *)kv->key,
            (long long)kv->create_revision, (long long)kv->mod_revision, (long long)kv->version,
            (long long)kv->lease);
    if (kv->value != NULL) {
        tprintf(o, " =%.*s", (int)kv->value_len, (const char *)kv->value);
    }
    tprintf(o, "\n");
}

static void dump_range(struct text *o, struct fx *f, int64_t rev)
{
    struct store_range_req q = {
        .key = B("\0"), .key_len = 1, .range_end = B("\0"), .range_end_len = 1, .revision = rev};
    struct store_range_result res;
    latch_arena_reset(&f->arena);
    assert_int_equal(store_range(f->r, &q, &f->arena, &res, NULL), 0);
    tprintf(o, "range at %lld: %zu keys, count %lld\n", (long long)rev, res.kvs_count,
            (long long)res.count);
    for (size_t i = 0; i < res.kvs_count; i++) {
        dump_kv(o, &res.kvs[i]);
    }
}

static void dump_history(struct text *o, struct fx *f, int64_t from)
{
    struct store_history_req q = {
        .start_revision = from, .prev_kv = true, .max_events = 100000, .max_bytes = 1 << 24};
    struct store_event *ev;
    size_t n;
    int64_t next;
    latch_arena_reset(&f->arena);
    assert_int_equal(store_history(f->r, &q, &f->arena, &ev, &n, &next), 0);
    tprintf(o, "history from %lld: %zu events, next %lld\n", (long long)from, n, (long long)next);
    for (size_t i = 0; i < n; i++) {
        tprintf(o, " %s prev=%d\n", ev[i].type == STORE_EVENT_PUT ? "PUT" : "DEL", ev[i].has_prev);
        dump_kv(o, &ev[i].kv);
        if (ev[i].has_prev) {
            dump_kv(o, &ev[i].prev);
        }
    }
}

static void dump_leases(struct text *o, struct fx *f)
{
    struct store_lease *ls;
    size_t n;
    latch_arena_reset(&f->arena);
    assert_int_equal(store_lease_list(f->r, 0, 1000, &f->arena, &ls, &n), 0);
    for (size_t i = 0; i < n; i++) {
        struct store_lease l;
        struct store_kv *keys;
        size_t nk;
        assert_int_equal(store_lease_get(f->r, ls[i].id, true, &f->arena, &l, &keys, &nk), 0);
        tprintf(o, "lease %lld ttl=%lld rem=%lld grant=%lld keys=%zu\n", (long long)l.id,
                (long long)l.ttl, (long long)l.remaining_ttl, (long long)l.grant_revision, nk);
        for (size_t k = 0; k < nk; k++) {
            tprintf(o, "  %.*s\n", (int)keys[k].key_len, (const char *)keys[k].key);
        }
    }
}

static void dump_children(struct text *o, struct fx *f, const char *path)
{
    struct store_child *ch;
    struct store_stat st;
    size_t n;
    bool more;
    latch_arena_reset(&f->arena);
    int rc = store_stat(f->r, B(path), L(path), &st);
    if (rc == LATCH_ENOTFOUND) {
        tprintf(o, "stat %s: absent\n", path);
        return;
    }
    assert_int_equal(rc, 0);
    tprintf(o, "stat %s: c=%lld m=%lld v=%lld n=%lld cv=%lld cr=%lld\n", path,
            (long long)st.create_revision, (long long)st.mod_revision, (long long)st.version,
            (long long)st.num_children, (long long)st.cversion, (long long)st.children_revision);
    assert_int_equal(store_children(f->r, B(path), L(path), NULL, 0, 0, &f->arena, &ch, &n, &more),
                     0);
    for (size_t i = 0; i < n; i++) {
        tprintf(o, "  child %.*s v=%lld\n", (int)ch[i].name_len, (const char *)ch[i].name,
                (long long)ch[i].stat.version);
    }
}

/* Everything a client can observe of f's state, as text (malloc'ed). */
static char *dump(struct fx *f)
{
    struct text t = {.p = malloc(4096), .len = 0, .cap = 4096};
    struct text *o = &t;
    struct store_status st;
    uint8_t conf[STORE_CONF_BYTES_MAX];
    uint32_t conf_len;

    assert_non_null(t.p);
    t.p[0] = '\0';
    assert_int_equal(store_status(f->r, &st), 0);
    assert_int_equal(store_conf(f->r, conf, &conf_len), 0);
    tprintf(o, "rev %lld compact %lld applied %llu/%llu keys %lld leases %lld alarm %d\n",
            (long long)st.revision, (long long)st.compact_revision,
            (unsigned long long)st.applied_index, (unsigned long long)st.applied_term,
            (long long)st.keys_count, (long long)st.leases_count, st.alarm_nospace);
    tprintf(o, "conf %.*s\n", (int)conf_len, (const char *)conf);
    for (int64_t rev = st.compact_revision > 0 ? st.compact_revision : 1; rev <= st.revision;
         rev++) {
        dump_range(o, f, rev);
    }
    dump_history(o, f, st.compact_revision > 0 ? st.compact_revision : 1);
    dump_leases(o, f);
    dump_children(o, f, "/");
    dump_children(o, f, "/a");
    return t.p;
}

/* ---------------------------------------------------------------------------------- */
/* Streams                                                                            */
/* ---------------------------------------------------------------------------------- */

/* The whole stream of the snapshot at path read in chunk-byte pieces (malloc'ed). */
static uint8_t *stream_read(
    struct store *s, const char *path, size_t chunk, size_t *len, struct store_snap_meta *meta)
{
    struct store_snap_reader *rd;
    assert_int_equal(store_snap_reader_open(s, path, meta, &rd), 0);
    uint64_t size = store_snap_reader_size(rd);
    uint8_t *buf = malloc(size);
    size_t off = 0;
    assert_non_null(buf);
    for (;;) {
        size_t n;
        assert_int_equal(store_snap_reader_read(rd, buf + off, chunk, &n), 0);
        if (n == 0) {
            break;
        }
        assert_true(n <= chunk);
        off += n;
    }
    assert_int_equal(off, size);
    store_snap_reader_close(rd);
    *len = off;
    return buf;
}

/* Feeds buf to a new writer on s in chunk-byte pieces and finishes it; the first error. */
static int stream_install(
    struct store *s, const uint8_t *buf, size_t len, size_t chunk, struct store_snap_meta *meta)
{
    struct store_snap_writer *w;
    int rc = 0;
    assert_int_equal(store_snap_writer_new(s, &w), 0);
    for (size_t off = 0; off < len && rc == 0; off += chunk) {
        rc = store_snap_writer_write(w, buf + off, len - off < chunk ? len - off : chunk);
    }
    int frc = store_snap_writer_finish(w, meta);
    return rc != 0 ? rc : frc;
}

/* A populated source store and its snapshot stream. */
static uint8_t *source_snapshot(struct fx *a, size_t *len, struct store_snap_meta *meta)
{
    char path[1024];
    struct store_snap_meta created;

    fx_setup(a);
    populate(a);
    assert_int_equal(store_snapshot_create(a->s, &created, path, sizeof(path)), 0);
    uint8_t *buf = stream_read(a->s, path, 1000, len, meta);
    assert_int_equal(meta->index, created.index);
    assert_int_equal(meta->term, created.term);
    return buf;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

#ifdef LATCH_STORE_WAL
/* The wal of the closed store in dir, opened directly (store_wal.h). */
static struct store_wal *wal_of(const char *dir)
{
    char path[1024], err[256];
    struct store_wal *w = NULL;
    snprintf(path, sizeof(path), "%s/wal", dir);
    struct store_wal_options o = {.dir = path, .no_sync = true};
    int rc = store_wal_open(&o, &w, err, sizeof(err));
    if (rc != 0) {
        fail_msg("store_wal_open: %s", err);
    }
    return w;
}

/* Whether the wal in dir (closed) holds the "installing" mark of an unfinished install. */
static bool install_mark_present(const char *dir)
{
    struct store_wal *w = wal_of(dir);
    uint64_t index, term;
    bool set = store_wal_install_marked(w, &index, &term);
    store_wal_close(w);
    return set;
}
#else
/* Whether raft.mdb in dir (closed) holds the "installing" mark of an unfinished install. */
static bool install_mark_present(const char *dir)
{
    char path[1024];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {.mv_size = 10, .mv_data = "installing"};
    MDB_val v;

    snprintf(path, sizeof(path), "%s/raft.mdb", dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    int rc = mdb_get(txn, dbi, &k, &v);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    return rc == 0;
}
#endif

/* ---------------------------------------------------------------------------------- */
/* Tests                                                                              */
/* ---------------------------------------------------------------------------------- */

static void test_snapshot_header_matches_applied_state(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    struct store_snap_meta recorded;
    struct store_status st;
    char path[1024];
    char want[1024];

    fx_setup(&a);
    populate(&a);
    assert_int_equal(store_snapshot_create(a.s, &m, path, sizeof(path)), 0);
    assert_int_equal(store_status(a.r, &st), 0);
    assert_int_equal(m.index, st.applied_index);
    assert_int_equal(m.term, st.applied_term);
    assert_int_equal(m.conf_len, L(CONF_TEXT));
    assert_memory_equal(m.conf, CONF_TEXT, m.conf_len);
    snprintf(want, sizeof(want), "%s/snap/%llu-%llu.snap", a.dir, (unsigned long long)m.index,
             (unsigned long long)m.term);
    assert_string_equal(path, want);
    assert_int_equal(store_log_snapshot_meta(a.s, &recorded), 0);
    assert_int_equal(recorded.index, m.index);
    assert_int_equal(recorded.term, m.term);

    struct store_snap_reader *rd;
    struct store_snap_meta rm;
    struct stat fst;
    assert_int_equal(store_snap_reader_open(a.s, path, &rm, &rd), 0);
    assert_int_equal(stat(path, &fst), 0);
    assert_int_equal(store_snap_reader_size(rd), (uint64_t)fst.st_size);
    assert_int_equal(rm.index, m.index);
    assert_int_equal(rm.conf_len, m.conf_len);
    store_snap_reader_close(rd);
    fx_teardown(&a);
}

static void test_snapshot_install_reproduces_state_and_resets_log(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    struct store_snap_meta installed;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    assert_int_equal(fx_put(&b, "stale", "gone after install", 0), 0);
    struct store_entry e[3];
    for (uint64_t i = 0; i < 3; i++) {
        e[i] = (struct store_entry){.term = 1, .index = i + 1, .len = 1, .data = B("x")};
    }
    assert_int_equal(store_log_append(b.s, e, 3, NULL), 0);
    struct store_reader *early; /* has read before the install: its txn is parked */
    assert_int_equal(store_reader_new(b.s, &early), 0);
    struct store_status st;
    assert_int_equal(store_status(early, &st), 0);

    assert_int_equal(stream_install(b.s, buf, len, 777, &installed), 0);
    assert_int_equal(installed.index, m.index);
    assert_int_equal(installed.term, m.term);
    char newfile[1024];
    snprintf(newfile, sizeof(newfile), "%s/state.mdb.new", b.dir);
    assert_false(file_exists(newfile));

    char *da = dump(&a);
    char *db = dump(&b); /* b.r was created before the install */
    assert_string_equal(da, db);
    assert_int_equal(store_status(early, &st), 0);
    assert_int_equal(st.applied_index, m.index);
    assert_int_equal(fx_get(&b, "stale", NULL, 0, NULL), LATCH_ENOTFOUND);

    assert_int_equal(store_log_first_index(b.s), m.index + 1);
    assert_int_equal(store_log_last_index(b.s), m.index);
    struct store_snap_meta recorded;
    assert_int_equal(store_log_snapshot_meta(b.s, &recorded), 0);
    assert_int_equal(recorded.index, m.index);

    /* Applying continues from the snapshot, and everything survives a reopen. */
    b.next_index = m.index + 1;
    assert_int_equal(fx_put(&b, "after", "1", 0), 0);
    store_reader_free(early);
    store_reader_free(b.r);
    store_close(b.s);
    assert_false(install_mark_present(b.dir)); /* the finished install left no mark */
    b.s = NULL;
    b.r = NULL;
    fx_reopen(&b);
    assert_int_equal(fx_get(&b, "after", NULL, 0, NULL), 0);
    assert_int_equal(fx_get(&b, "k45", NULL, 0, NULL), 0);
    free(da);
    free(db);
    free(buf);
    fx_teardown(&a);
    fx_teardown(&b);
}

/* Header revision of a single-key range through r. */
static int64_t header_rev(struct store_reader *r, struct latch_arena *a, const char *key)
{
    struct store_range_req q = {.key = B(key), .key_len = (uint32_t)strlen(key)};
    struct store_range_result out;
    int64_t hdr = 0;
    assert_int_equal(store_range(r, &q, a, &out, &hdr), 0);
    return hdr;
}

/* Snapshot stream of c's current state. */
static uint8_t *snapshot_of(struct fx *c, size_t *len, struct store_snap_meta *meta)
{
    char path[1024];
    struct store_snap_meta created;
    assert_int_equal(store_snapshot_create(c->s, &created, path, sizeof(path)), 0);
    return stream_read(c->s, path, 4096, len, meta);
}

/*
 * A compacted copy numbers its LMDB transactions from 1 again, so after two installs the
 * same transaction id names two different states. A reader's cached revision and the
 * published one belong to the old file and must be forgotten at an install, or a header
 * revision would come from the previous state.
 */
static void test_header_revision_after_install_is_the_snapshots(void **state)
{
    (void)state;
    struct fx a, b, c;
    struct store_snap_meta m1, m2;
    struct latch_arena ar;
    size_t len1, len2;
    uint8_t *s1 = source_snapshot(&a, &len1, &m1);
    int64_t rev1 = fx_rev(&a);

    fx_setup(&c);
    populate(&c);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx_put(&c, "more", "z", 0), 0);
    }
    uint8_t *s2 = snapshot_of(&c, &len2, &m2);
    int64_t rev2 = fx_rev(&c);
    assert_true(m2.index > m1.index + 1);

    latch_arena_init(&ar, 0);
    fx_setup(&b);
    struct store_reader *other;
    assert_int_equal(store_reader_new(b.s, &other), 0);
    assert_int_equal(stream_install(b.s, s1, len1, 4096, NULL), 0);
    b.next_index = m1.index + 1;
    assert_int_equal(fx_put(&b, "x", "1", 0), 0); /* the new file's second transaction */
    assert_int_equal(header_rev(other, &ar, "x"), rev1 + 1);
    assert_int_equal(header_rev(b.r, &ar, "x"), rev1 + 1);

    assert_int_equal(stream_install(b.s, s2, len2, 4096, NULL), 0);
    assert_int_equal(header_rev(other, &ar, "more"), rev2);
    b.next_index = m2.index + 1;
    assert_int_equal(fx_put(&b, "y", "1", 0), 0); /* again the second transaction */
    assert_int_equal(header_rev(other, &ar, "y"), rev2 + 1);
    assert_int_equal(header_rev(b.r, &ar, "y"), rev2 + 1);

    store_reader_free(other);
    latch_arena_close(&ar);
    free(s1);
    free(s2);
    fx_teardown(&a);
    fx_teardown(&b);
    fx_teardown(&c);
}

/* Installs a damaged stream on a fresh populated-elsewhere store b and checks it is
 * refused with err and b unchanged. */
static void expect_refused(const uint8_t *buf, size_t len, int err)
{
    struct fx b;
    char newfile[1024];

    fx_setup(&b);
    assert_int_equal(fx_put(&b, "mine", "kept", 0), 0);
    char *before = dump(&b);
    assert_int_equal(stream_install(b.s, buf, len, 1000, NULL), err);
    char *after = dump(&b);
    assert_string_equal(before, after);
    assert_int_equal(store_failed(b.s), 0);
    snprintf(newfile, sizeof(newfile), "%s/state.mdb.new", b.dir);
    assert_false(file_exists(newfile));
    assert_int_equal(fx_put(&b, "more", "ok", 0), 0);
    free(before);
    free(after);
    fx_teardown(&b);
}

/* verify checks a stream completely without installing it; finish then installs it. */
static void test_snapshot_writer_verify_checks_without_installing(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    struct store_snap_meta got;
    struct store_snap_writer *w;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    assert_int_equal(fx_put(&b, "mine", "kept", 0), 0);
    char *before = dump(&b);
    /* Truncated, then damaged data: refused, nothing changed. */
    assert_int_equal(store_snap_writer_new(b.s, &w), 0);
    assert_int_equal(store_snap_writer_write(w, buf, len - 1), 0);
    assert_int_equal(store_snap_writer_verify(w, NULL), LATCH_ECORRUPT);
    store_snap_writer_abort(w);
    buf[HDR_BYTES + 10] ^= 0x01;
    assert_int_equal(store_snap_writer_new(b.s, &w), 0);
    assert_int_equal(store_snap_writer_write(w, buf, len), 0);
    assert_int_equal(store_snap_writer_verify(w, NULL), LATCH_ECORRUPT);
    store_snap_writer_abort(w);
    buf[HDR_BYTES + 10] ^= 0x01;
    char *after = dump(&b);
    assert_string_equal(before, after);

    /* Whole: verified, still not installed; finish installs it. */
    assert_int_equal(store_snap_writer_new(b.s, &w), 0);
    assert_int_equal(store_snap_writer_write(w, buf, len), 0);
    assert_int_equal(store_snap_writer_verify(w, &got), 0);
    assert_int_equal(got.index, m.index);
    assert_int_equal(got.term, m.term);
    assert_int_equal(got.conf_len, m.conf_len);
    char *still = dump(&b);
    assert_string_equal(before, still);
    assert_int_equal(store_snap_writer_finish(w, &got), 0);
    assert_int_equal(got.index, m.index);
    char *da = dump(&a);
    char *db = dump(&b);
    assert_string_equal(da, db);
    free(before);
    free(after);
    free(still);
    free(da);
    free(db);
    free(buf);
    fx_teardown(&a);
    fx_teardown(&b);
}

static void test_snapshot_install_refuses_damaged_header(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    buf[20] ^= 0x01; /* inside the index */
    expect_refused(buf, len, LATCH_ECORRUPT);
    buf[20] ^= 0x01;
    buf[0] = 'X'; /* magic */
    expect_refused(buf, len, LATCH_ECORRUPT);
    free(buf);
    fx_teardown(&a);
}

static void test_snapshot_install_refuses_damaged_data(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    buf[HDR_BYTES + (len - HDR_BYTES) / 2] ^= 0x40;
    expect_refused(buf, len, LATCH_ECORRUPT);
    free(buf);
    fx_teardown(&a);
}

static void test_snapshot_install_refuses_truncated_or_overlong_stream(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    expect_refused(buf, len - 100, LATCH_ECORRUPT);
    expect_refused(buf, HDR_BYTES - 1, LATCH_ECORRUPT); /* not even a whole header */
    uint8_t *longer = malloc(len + 10);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 10);
    expect_refused(longer, len + 10, LATCH_ETOOBIG);
    free(longer);
    free(buf);
    fx_teardown(&a);
}

static void test_snapshot_install_refuses_snapshot_not_newer_than_applied(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    while (b.next_index <= m.index + 5) {
        assert_int_equal(fx_put(&b, "busy", "x", 0), 0);
    }
    char *before = dump(&b);
    assert_int_equal(stream_install(b.s, buf, len, 4096, NULL), LATCH_ESNAPOLD);
    char *after = dump(&b);
    assert_string_equal(before, after);
    free(before);
    free(after);
    fx_teardown(&b);

    /* The same snapshot twice: the second is not newer than what the first installed. */
    fx_setup(&b);
    assert_int_equal(stream_install(b.s, buf, len, 4096, NULL), 0);
    assert_int_equal(stream_install(b.s, buf, len, 4096, NULL), LATCH_ESNAPOLD);
    fx_teardown(&b);
    free(buf);
    fx_teardown(&a);
}

static void test_snapshot_copy_is_compacted(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    char path[1024];
    char key[32];
    char val[1024];
    struct stat st;

    fx_setup(&a);
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "key/%05d", i);
        assert_int_equal(fx_put(&a, key, val, 0), 0);
    }
    for (int i = 0; i < 2000; i += 2) {
        snprintf(key, sizeof(key), "key/%05d", i);
        assert_int_equal(fx_del(&a, key), 0);
    }
    assert_int_equal(fx_put(&a, "last", "x", 0), 0);
    compact(&a, fx_rev(&a));
    char state_path[1024];
    snprintf(state_path, sizeof(state_path), "%s/state.mdb", a.dir);
    struct store_space sp;
    assert_int_equal(store_space(a.r, &sp), 0);

    assert_int_equal(store_snapshot_create(a.s, &m, path, sizeof(path)), 0);
    assert_int_equal(stat(path, &st), 0);
    /* Half the keys are left, each value once in kv and once in hist: the copy holds
     * those pages and none of the free ones. */
    assert_true((uint64_t)st.st_size < sp.file_bytes * 3 / 4);
    assert_true((uint64_t)st.st_size <= sp.in_use_bytes + HDR_BYTES);
    assert_true((uint64_t)st.st_size > 1000 * 1024 * 2);
    fx_teardown(&a);
}

/* Snapshot files in dir/snap (names ending in .snap). */
static int snap_files(const char *dir)
{
    char path[1024];
    int n = 0;
    snprintf(path, sizeof(path), "%s/snap", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        n += l > 5 && strcmp(de->d_name + l - 5, ".snap") == 0;
        assert_null(strstr(de->d_name, ".tmp")); /* no temporary file left behind */
    }
    closedir(d);
    return n;
}

static void test_snapshot_create_keeps_the_two_newest_files(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m[3];
    char path[3][1024];

    fx_setup(&a);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx_put(&a, "k", "v", 0), 0);
        assert_int_equal(store_snapshot_create(a.s, &m[i], path[i], sizeof(path[i])), 0);
        assert_int_equal(snap_files(a.dir), i < 2 ? i + 1 : 2);
    }
    assert_false(file_exists(path[0]));
    assert_true(file_exists(path[1]));
    assert_true(file_exists(path[2]));
    assert_true(m[2].index > m[1].index);
    struct store_snap_meta recorded;
    assert_int_equal(store_log_snapshot_meta(a.s, &recorded), 0);
    assert_int_equal(recorded.index, m[2].index);
    fx_teardown(&a);
}

static void test_snapshot_reader_refuses_missing_and_damaged_files(void **state)
{
    (void)state;
    struct fx a;
    struct store_snap_meta m;
    struct store_snap_reader *rd = NULL;
    char path[1024];
    char missing[1100];

    fx_setup(&a);
    assert_int_equal(fx_put(&a, "k", "v", 0), 0);
    assert_int_equal(store_snapshot_create(a.s, &m, path, sizeof(path)), 0);
    snprintf(missing, sizeof(missing), "%s.nope", path);
    assert_int_equal(store_snap_reader_open(a.s, missing, &m, &rd), LATCH_ENOTFOUND);

    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 30, SEEK_SET), 0);
    assert_int_equal(fputc(0xFF, fp), 0xFF);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(store_snap_reader_open(a.s, path, &m, &rd), LATCH_ECORRUPT);
    assert_null(rd);
    fx_teardown(&a);
}

static void test_snapshot_writer_abort_leaves_nothing_behind(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    struct store_snap_writer *w;
    char newfile[1024];
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    assert_int_equal(store_snap_writer_new(b.s, &w), 0);
    assert_int_equal(store_snap_writer_write(w, buf, len / 2), 0);
    store_snap_writer_abort(w);
    snprintf(newfile, sizeof(newfile), "%s/state.mdb.new", b.dir);
    assert_false(file_exists(newfile));
    assert_int_equal(fx_get(&b, "k45", NULL, 0, NULL), LATCH_ENOTFOUND);
    free(buf);
    fx_teardown(&b);
    fx_teardown(&a);
}

#ifdef LATCH_STORE_WAL
/* Writes the "installing" mark for m as store__install_mark does, into the closed store's
 * wal. */
static void install_mark_write(const char *dir, const struct store_snap_meta *m)
{
    struct store_wal *w = wal_of(dir);
    assert_int_equal(store_wal_install_mark(w, m), 0);
    store_wal_close(w);
}
#else
/* Writes raft.mdb's "installing" mark for m as store__install_mark does (raw LMDB). */
static void install_mark_write(const char *dir, const struct store_snap_meta *m)
{
    char path[1024];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t rec[16];

    for (int i = 0; i < 8; i++) {
        rec[i] = (uint8_t)(m->index >> (8 * i));
        rec[8 + i] = (uint8_t)(m->term >> (8 * i));
    }
    snprintf(path, sizeof(path), "%s/raft.mdb", dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {.mv_size = 10, .mv_data = "installing"};
    MDB_val v = {.mv_size = sizeof(rec), .mv_data = rec};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}
#endif

/* Leaves b's dir as a crash during an install of buf would: the mark written, and the
 * received state either renamed over state.mdb or still in state.mdb.new. */
static void crash_during_install(
    struct fx *b, const uint8_t *buf, size_t len, const struct store_snap_meta *m, bool renamed)
{
    char path[1024];

    store_reader_free(b->r);
    store_close(b->s);
    b->r = NULL;
    b->s = NULL;
    install_mark_write(b->dir, m);
    snprintf(path, sizeof(path), "%s/%s", b->dir, renamed ? "state.mdb" : "state.mdb.new");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf + HDR_BYTES, 1, len - HDR_BYTES, fp), len - HDR_BYTES);
    assert_int_equal(fclose(fp), 0);
    snprintf(path, sizeof(path), "%s/state.mdb-lock", b->dir);
    (void)unlink(path);
}

static void store_reopen_raw(struct fx *b)
{
    char err[STORE_ERRMSG_BYTES] = "";
    int rc = store_open(&b->opt, &b->s, err, sizeof(err));
    if (rc != 0) {
        fail_msg("store_open: %s: %s", latch_error_name(rc), err);
    }
    assert_int_equal(store_reader_new(b->s, &b->r), 0);
}

/* A crash after the rename of the new state.mdb but before the log reset: store_open
 * finds the install mark and the state at its index, and finishes the install. */
static void test_install_interrupted_after_rename_is_finished_at_open(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    crash_during_install(&b, buf, len, &m, true);
    store_reopen_raw(&b);
    assert_int_equal(store_log_first_index(b.s), m.index + 1);
    assert_int_equal(store_log_last_index(b.s), m.index);
    char *da = dump(&a);
    char *db = dump(&b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    free(buf);
    fx_teardown(&b);
    fx_teardown(&a);
}

/* A crash after the mark but before the rename: the old state stays and works. */
static void test_install_interrupted_before_rename_keeps_old_state(void **state)
{
    (void)state;
    struct fx a;
    struct fx b;
    struct store_snap_meta m;
    char newfile[1024];
    size_t len;
    uint8_t *buf = source_snapshot(&a, &len, &m);

    fx_setup(&b);
    assert_int_equal(fx_put(&b, "mine", "kept", 0), 0);
    char *before = dump(&b);
    crash_during_install(&b, buf, len, &m, false);
    store_reopen_raw(&b);
    char *after = dump(&b);
    assert_string_equal(before, after);
    snprintf(newfile, sizeof(newfile), "%s/state.mdb.new", b.dir);
    assert_false(file_exists(newfile));
    assert_int_equal(store_log_first_index(b.s), 1);
    /* and the snapshot can still be installed afterwards */
    assert_int_equal(stream_install(b.s, buf, len, 65536, NULL), 0);
    assert_int_equal(fx_get(&b, "mine", NULL, 0, NULL), LATCH_ENOTFOUND);
    free(before);
    free(after);
    free(buf);
    fx_teardown(&b);
    fx_teardown(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_header_matches_applied_state),
        cmocka_unit_test(test_snapshot_install_reproduces_state_and_resets_log),
        cmocka_unit_test(test_header_revision_after_install_is_the_snapshots),
        cmocka_unit_test(test_snapshot_writer_verify_checks_without_installing),
        cmocka_unit_test(test_snapshot_install_refuses_damaged_header),
        cmocka_unit_test(test_snapshot_install_refuses_damaged_data),
        cmocka_unit_test(test_snapshot_install_refuses_truncated_or_overlong_stream),
        cmocka_unit_test(test_snapshot_install_refuses_snapshot_not_newer_than_applied),
        cmocka_unit_test(test_snapshot_copy_is_compacted),
        cmocka_unit_test(test_snapshot_create_keeps_the_two_newest_files),
        cmocka_unit_test(test_snapshot_reader_refuses_missing_and_damaged_files),
        cmocka_unit_test(test_snapshot_writer_abort_leaves_nothing_behind),
        cmocka_unit_test(test_install_interrupted_after_rename_is_finished_at_open),
        cmocka_unit_test(test_install_interrupted_before_rename_keeps_old_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
