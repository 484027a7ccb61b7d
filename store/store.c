/*
 * store.c — opening and closing a data dir, the two LMDB environments, the write wrapper
 * that grows the map, readers, and the small meta records.
 *
 * Opening is conservative: a data dir is either empty (then formatted), or exactly latch's
 * files with a format record we understand; anything else is refused with a sentence that
 * names the file, and nothing is re-initialised (STYLE §3, issue 3 item 7).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "latch_crc32c.h"
#include "latch_log.h"
#include "store_int.h"
#include "store_wal.h"

#define MIB                 ((uint64_t)1024 * 1024)
#define FORMAT_RECORD_BYTES 16u
#define STATE_FILE          "state.mdb"
#define RAFT_FILE           "raft.mdb"
#define INSTALL_TMP_FILE    "state.mdb.new"
#define SNAP_DIR            "snap"
#define WAL_DIR             "wal"     /* LATCH_STORE_WAL: the log (store_wal.h) */
#define WAL_NEW_DIR         "wal.new" /* a wal being formatted or converted */

static const char RAFT_MAGIC[8] = {'L', 'A', 'T', 'C', 'H', 'R', 'F', 'T'};
static const char STATE_MAGIC[8] = {'L', 'A', 'T', 'C', 'H', 'S', 'T', 'A'};

void store_options_defaults(struct store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->map_bytes_initial = 64 * MIB;
    o->map_bytes_max = 64 * 1024 * MIB;
    o->quota_bytes = 2 * 1024 * MIB;
}

static void errmsg_set(char *errmsg, size_t size, const char *fmt, ...) LATCH_PRINTF(3, 4);

static void errmsg_set(char *errmsg, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (errmsg == NULL || size == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(errmsg, size, fmt, ap);
    va_end(ap);
}

int store__mdb_err(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return LATCH_ENOTFOUND;
    case MDB_MAP_FULL:
        return STORE__EMAPFULL;
    case MDB_TXN_FULL:
        return STORE__ETXNFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_BAD_VALSIZE:
        return LATCH_ECORRUPT;
    case ENOMEM:
        return LATCH_ENOMEM;
    default:
        return LATCH_EIO;
    }
}

int store__fail(struct store *s, int err, const char *what)
{
    int expected = 0;

    LATCH_ASSERTF(err < 0, "store__fail with %d", err);
    if (atomic_compare_exchange_strong(&s->failed, &expected, err)) {
        latch_log(LATCH_LOG_ERROR, "store %s: %s failed (%s); the store is read-only until restart",
                  s->dir, what, latch_error_name(err));
    }
    return atomic_load(&s->failed);
}

int store_failed(const struct store *s)
{
    return atomic_load(&((struct store *)s)->failed);
}

const char *store_dir(const struct store *s)
{
    return s->dir;
}

/* ---------------------------------------------------------------------------------- */
/* Meta records                                                                       */
/* ---------------------------------------------------------------------------------- */

static MDB_val name_val(const char *name)
{
    MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
    return k;
}

int store__meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, void *buf, size_t len)
{
    MDB_val k = name_val(name);
    MDB_val v;
    LATCH_ASSERT(txn != NULL && buf != NULL);
    LATCH_ASSERTF(len > 0 && len <= STORE_CONF_BYTES_MAX, "meta record of %zu bytes", len);
    int rc = mdb_get(txn, dbi, &k, &v);

    if (rc != 0) {
        return store__mdb_err(rc);
    }
    if (v.mv_size != len) {
        return LATCH_ECORRUPT;
    }
    memcpy(buf, v.mv_data, len);
    return 0;
}

int store__meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *buf, size_t len)
{
    MDB_val k = name_val(name);
    MDB_val v = {.mv_size = len, .mv_data = (void *)buf};

    return store__mdb_err(mdb_put(txn, dbi, &k, &v, 0));
}

int store__meta_get_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t *v)
{
    uint8_t b[8];
    int rc = store__meta_get(txn, dbi, name, b, sizeof(b));

    if (rc == 0) {
        *v = (int64_t)store__get_le64(b);
    }
    return rc;
}

int store__meta_put_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t v)
{
    uint8_t b[8];

    store__put_le64(b, (uint64_t)v);
    return store__meta_put(txn, dbi, name, b, sizeof(b));
}

/* ---------------------------------------------------------------------------------- */
/* Environments                                                                       */
/* ---------------------------------------------------------------------------------- */

static int
env_open(struct store *s, struct store__env *e, const char *file, char *errmsg, size_t errmsg_size)
{
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
    int rc;

    if (s->opt.no_sync) {
        flags |= MDB_NOSYNC;
    } else if (e == &s->state) {
        /* state.mdb: each commit fdatasyncs its pages but not the meta page that points at
         * them, which goes out with the next commit's sync (or store__state_sync). LMDB keeps
         * the pages of the two newest commits, so a power loss may undo the newest apply,
         * never corrupt the file; a process crash loses nothing (the page cache stays). The
         * log holds every applied entry above the durable applied index
         * (store__state_sync before a compaction), and the node replays from it. */
        flags |= MDB_NOMETASYNC;
    }
    snprintf(e->path, sizeof(e->path), "%s/%s", s->dir, file);
    rc = mdb_env_create(&e->env);
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", e->path, mdb_strerror(rc));
        return store__mdb_err(rc);
    }
    (void)mdb_env_set_maxdbs(e->env, 8);
    (void)mdb_env_set_maxreaders(e->env, 126);
    rc = mdb_env_set_mapsize(e->env, (size_t)s->opt.map_bytes_initial);
    if (rc == 0) {
        rc = mdb_env_open(e->env, e->path, flags, 0600);
    }
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot open: %s", e->path, mdb_strerror(rc));
        mdb_env_close(e->env);
        e->env = NULL;
        if (rc == MDB_VERSION_MISMATCH) {
            return LATCH_EFORMAT;
        }
        return rc == MDB_INVALID || rc == MDB_CORRUPTED ? LATCH_ECORRUPT : store__mdb_err(rc);
    }
    MDB_envinfo info;
    (void)mdb_env_info(e->env, &info);
    e->map_bytes = info.me_mapsize;
    return 0;
}

static void env_close(struct store__env *e)
{
    if (e->env != NULL) {
        mdb_env_close(e->env);
        e->env = NULL;
    }
}

/* Format record: magic, version le32, crc32c le32 of the first 12 bytes. */
static void format_encode(const char magic[8], uint8_t rec[FORMAT_RECORD_BYTES])
{
    memcpy(rec, magic, 8);
    store__put_le32(rec + 8, STORE_FORMAT_VERSION);
    store__put_le32(rec + 12, latch_crc32c(0, rec, 12));
}

/* Opens dbi `name` and checks or writes the format record. fresh: create everything. */
static int format_check(MDB_txn *txn,
                        MDB_dbi meta,
                        const char magic[8],
                        const char *path,
                        bool fresh,
                        char *errmsg,
                        size_t errmsg_size)
{
    uint8_t rec[FORMAT_RECORD_BYTES];
    MDB_val k = name_val("format");
    MDB_val v;
    int rc;

    if (fresh) {
        format_encode(magic, rec);
        return store__meta_put(txn, meta, "format", rec, sizeof(rec));
    }
    rc = mdb_get(txn, meta, &k, &v);
    if (rc != 0 || v.mv_size != FORMAT_RECORD_BYTES || memcmp(v.mv_data, magic, 8) != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: not a latch file (no %.8s format record)", path,
                   magic);
        return LATCH_EFORMAT;
    }
    memcpy(rec, v.mv_data, sizeof(rec));
    if (store__get_le32(rec + 12) != latch_crc32c(0, rec, 12)) {
        errmsg_set(errmsg, errmsg_size, "%s: format record fails its checksum", path);
        return LATCH_ECORRUPT;
    }
    uint32_t version = store__get_le32(rec + 8);
    if (version > STORE_FORMAT_VERSION) {
        errmsg_set(errmsg, errmsg_size,
                   "%s: format version %u is newer than this build's %u; use a newer latchd", path,
                   version, STORE_FORMAT_VERSION);
        return LATCH_EFORMAT;
    }
    if (version == 0) {
        errmsg_set(errmsg, errmsg_size, "%s: format version 0 is invalid", path);
        return LATCH_ECORRUPT;
    }
    return 0;
}

static int dbi_open(MDB_txn *txn, const char *name, unsigned flags, bool fresh, MDB_dbi *dbi)
{
    return mdb_dbi_open(txn, name, flags | (fresh ? MDB_CREATE : 0u), dbi);
}

static int state_init_meta(MDB_txn *txn, MDB_dbi meta)
{
    uint8_t applied[16] = {0};
    uint8_t alarm[4] = {0};
    int rc = store__meta_put_i64(txn, meta, "rev", 1);

    if (rc == 0) {
        rc = store__meta_put_i64(txn, meta, "compact", 0);
    }
    if (rc == 0) {
        rc = store__meta_put(txn, meta, "applied", applied, sizeof(applied));
    }
    if (rc == 0) {
        rc = store__meta_put_i64(txn, meta, "lease_next", 1);
    }
    if (rc == 0) {
        rc = store__meta_put(txn, meta, "alarm", alarm, sizeof(alarm));
    }
    return rc;
}

/* Opens (fresh: creates) the dbis of state.mdb and checks its format record. */
static int state_dbis_open(struct store *s, bool fresh, char *errmsg, size_t errmsg_size)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->state.env, NULL, fresh ? 0u : MDB_RDONLY, &txn);

    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", s->state.path, mdb_strerror(rc));
        return store__mdb_err(rc);
    }
    rc = dbi_open(txn, "meta", 0, fresh, &s->meta);
    if (rc != 0) {
        mdb_txn_abort(txn);
        errmsg_set(errmsg, errmsg_size, "%s: not a latch state file (no meta table)",
                   s->state.path);
        return LATCH_EFORMAT;
    }
    int err = format_check(txn, s->meta, STATE_MAGIC, s->state.path, fresh, errmsg, errmsg_size);
    const char *names[] = {"kv", "hist", "tomb", "lease", "lease_keys", "tree"};
    MDB_dbi *dbis[] = {&s->kv, &s->hist, &s->tomb, &s->lease, &s->lease_keys, &s->tree};
    for (size_t i = 0; err == 0 && i < sizeof(names) / sizeof(names[0]); i++) {
        unsigned flags = dbis[i] == &s->lease_keys ? MDB_DUPSORT : 0u;
        rc = dbi_open(txn, names[i], flags, fresh, dbis[i]);
        if (rc != 0) {
            errmsg_set(errmsg, errmsg_size, "%s: table %s: %s", s->state.path, names[i],
                       mdb_strerror(rc));
            err = rc == MDB_NOTFOUND ? LATCH_ECORRUPT : store__mdb_err(rc);
        }
    }
    if (err == 0 && fresh) {
        err = state_init_meta(txn, s->meta);
    }
    if (err != 0) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", s->state.path, mdb_strerror(rc));
        return store__mdb_err(rc);
    }
    return 0;
}

static int raft_dbis_open(struct store *s, bool fresh, char *errmsg, size_t errmsg_size)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->raft.env, NULL, fresh ? 0u : MDB_RDONLY, &txn);

    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", s->raft.path, mdb_strerror(rc));
        return store__mdb_err(rc);
    }
    rc = dbi_open(txn, "meta", 0, fresh, &s->r_meta);
    if (rc != 0) {
        mdb_txn_abort(txn);
        errmsg_set(errmsg, errmsg_size, "%s: not a latch raft file (no meta table)", s->raft.path);
        return LATCH_EFORMAT;
    }
    int err = format_check(txn, s->r_meta, RAFT_MAGIC, s->raft.path, fresh, errmsg, errmsg_size);
    if (err == 0) {
        rc = dbi_open(txn, "log", 0, fresh, &s->r_log);
        if (rc != 0) {
            errmsg_set(errmsg, errmsg_size, "%s: table log: %s", s->raft.path, mdb_strerror(rc));
            err = rc == MDB_NOTFOUND ? LATCH_ECORRUPT : store__mdb_err(rc);
        }
    }
    if (err != 0) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", s->raft.path, mdb_strerror(rc));
        return store__mdb_err(rc);
    }
    return 0;
}

int store__state_env_open(struct store *s, char *errmsg, size_t errmsg_size)
{
    int rc = env_open(s, &s->state, STATE_FILE, errmsg, errmsg_size);

    if (rc == 0) {
        rc = state_dbis_open(s, false, errmsg, errmsg_size);
        if (rc != 0) {
            env_close(&s->state);
        }
    }
    return rc;
}

static int dir_fsync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = 0;

    if (fd < 0) {
        return LATCH_EIO;
    }
    if (fsync(fd) != 0) {
        rc = LATCH_EIO;
    }
    close(fd);
    return rc;
}

/*
 * Creates and formats <file> atomically: everything is written under <file>.init, synced,
 * and renamed, so a crash during the first open leaves either no file or a formatted one.
 * state.mdb is made before raft.mdb, so raft.mdb's presence means "fully formatted".
 */
static int env_format(struct store *s, bool raft, char *errmsg, size_t errmsg_size)
{
    struct store__env *e = raft ? &s->raft : &s->state;
    const char *file = raft ? RAFT_FILE : STATE_FILE;
    char tmp[24];
    char tmp_path[STORE_PATH_MAX];
    char final_path[STORE_PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s.init", file);
    snprintf(tmp_path, sizeof(tmp_path), "%s/%s", s->dir, tmp);
    (void)unlink(tmp_path); /* a format that a crash cut short */
    snprintf(tmp_path, sizeof(tmp_path), "%s/%s-lock", s->dir, tmp);
    (void)unlink(tmp_path);
    int rc = env_open(s, e, tmp, errmsg, errmsg_size);
    if (rc != 0) {
        return rc;
    }
    rc = raft ? raft_dbis_open(s, true, errmsg, errmsg_size)
              : state_dbis_open(s, true, errmsg, errmsg_size);
    if (rc == 0 && mdb_env_sync(e->env, 1) != 0) {
        rc = LATCH_EIO;
    }
    env_close(e);
    snprintf(tmp_path, sizeof(tmp_path), "%s/%s-lock", s->dir, tmp);
    (void)unlink(tmp_path);
    snprintf(tmp_path, sizeof(tmp_path), "%s/%s", s->dir, tmp);
    snprintf(final_path, sizeof(final_path), "%s/%s", s->dir, file);
    if (rc == 0 && rename(tmp_path, final_path) != 0) {
        rc = LATCH_EIO;
    }
    if (rc == 0) {
        rc = dir_fsync(s->dir);
    }
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot format: %s", final_path,
                   rc == LATCH_EIO ? strerror(errno) : latch_strerror(rc));
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* The data dir                                                                       */
/* ---------------------------------------------------------------------------------- */

static bool dir_entry_known(const char *name)
{
    /* member.id: the server's identity file (server/identity.h), kept with the data. */
    static const char *const known[] = {RAFT_FILE,          RAFT_FILE "-lock",
                                        STATE_FILE,         STATE_FILE "-lock",
                                        INSTALL_TMP_FILE,   SNAP_DIR,
                                        RAFT_FILE ".init",  RAFT_FILE ".init-lock",
                                        STATE_FILE ".init", STATE_FILE ".init-lock",
                                        "member.id",        "member.id.tmp"};
    if (strcmp(name, WAL_DIR) == 0 || strcmp(name, WAL_NEW_DIR) == 0) {
        return true; /* the append-only log (LATCH_STORE_WAL), or a format of it under way */
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(name, known[i]) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Looks at the data dir: creates it when missing and says which of the two files exist.
 * Refuses unknown entries (a foreign dir) and a raft.mdb without its state.mdb (formatting
 * makes state.mdb first, so that is damage, not an interrupted first open).
 */
static int dir_inspect(struct store *s,
                       bool *has_raft_out,
                       bool *has_state_out,
                       bool *has_wal_out,
                       char *errmsg,
                       size_t errmsg_size)
{
    bool has_raft = false;
    bool has_state = false;
    bool has_wal = false;
    DIR *d;
    struct dirent *de;

    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot create: %s", s->dir, strerror(errno));
        return LATCH_EIO;
    }
    d = opendir(s->dir);
    if (d == NULL) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot read: %s", s->dir, strerror(errno));
        return LATCH_EIO;
    }
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (!dir_entry_known(de->d_name)) {
            errmsg_set(errmsg, errmsg_size,
                       "%s/%s: unknown file; %s is not a latch data dir (refusing to touch it)",
                       s->dir, de->d_name, s->dir);
            rc = LATCH_EFORMAT;
        }
        has_raft |= strcmp(de->d_name, RAFT_FILE) == 0;
        has_state |= strcmp(de->d_name, STATE_FILE) == 0;
        has_wal |= strcmp(de->d_name, WAL_DIR) == 0;
    }
    closedir(d);
    if (rc != 0) {
        return rc;
    }
    if ((has_raft || has_wal) && !has_state) {
        errmsg_set(errmsg, errmsg_size, "%s/%s: missing while %s exists", s->dir, STATE_FILE,
                   has_raft ? RAFT_FILE : WAL_DIR);
        return LATCH_ECORRUPT;
    }
    *has_raft_out = has_raft;
    *has_state_out = has_state;
    *has_wal_out = has_wal;
    return 0;
}

/* A state.mdb.new left by a crash before its rename was never installed: drop it. */
static void install_tmp_drop(struct store *s)
{
    char path[STORE_PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", s->dir, INSTALL_TMP_FILE);
    if (unlink(path) == 0) {
        latch_log(LATCH_LOG_WARN, "%s: removed an unfinished snapshot install", path);
    }
}

/*
 * A snapshot install swaps state.mdb and then resets raft.mdb to the snapshot. Before the
 * swap, store__install_mark records in raft.mdb which snapshot is being installed;
 * store__log_install removes the mark in the same transaction as the reset. At open, a
 * mark tells exactly what a crash interrupted: if state.mdb already is the snapshot, the
 * reset is finished now; if not, the swap never happened and the mark is dropped.
 */
struct install_mark_arg {
    struct store *s;
    const struct store_snap_meta *m; /* NULL: delete the mark */
};

static int install_mark_write(MDB_txn *txn, void *arg)
{
    const struct install_mark_arg *a = arg;
    uint8_t rec[STORE__INSTALL_MARK_BYTES];

    if (a->m == NULL) {
        MDB_val k = name_val("installing");
        int rc = mdb_del(txn, a->s->r_meta, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
    }
    store__put_le64(rec, a->m->index);
    store__put_le64(rec + 8, a->m->term);
    return store__meta_put(txn, a->s->r_meta, "installing", rec, sizeof(rec));
}

int store__install_mark(struct store *s, const struct store_snap_meta *m)
{
    struct install_mark_arg a = {.s = s, .m = m};

    LATCH_ASSERT(m != NULL);
    if (s->wal != NULL) {
        int rc = store_failed(s);
        rc = rc != 0 ? rc : store_wal_install_mark(s->wal, m);
        return rc == LATCH_EIO ? store__fail(s, LATCH_EIO, "wal install mark") : rc;
    }
    return store__write(s, &s->raft, install_mark_write, &a);
}

static int install_finish_if_interrupted(struct store *s, char *errmsg, size_t errmsg_size)
{
    uint8_t rec[STORE__INSTALL_MARK_BYTES];
    struct store_reader *r = NULL;
    struct store_status st;
    MDB_txn *txn;
    int rc;

    if (s->wal != NULL) {
        uint64_t mi = 0, mt = 0;
        rc = store_wal_install_marked(s->wal, &mi, &mt) ? 0 : LATCH_ENOTFOUND;
        store__put_le64(rec, mi);
        store__put_le64(rec + 8, mt);
    } else {
        rc = store__log_read_begin(s, &txn);
        if (rc != 0) {
            return rc;
        }
        rc = store__meta_get(txn, s->r_meta, "installing", rec, sizeof(rec));
        store__log_read_end(s);
    }
    if (rc == LATCH_ENOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: install record: %s", s->raft.path, latch_strerror(rc));
        return rc;
    }
    struct store_snap_meta m = {.index = store__get_le64(rec), .term = store__get_le64(rec + 8)};
    rc = store_reader_new(s, &r);
    if (rc == 0) {
        rc = store_status(r, &st);
    }
    if (rc == 0) {
        rc = store_conf(r, m.conf, &m.conf_len);
    }
    store_reader_free(r);
    if (rc != 0) {
        return rc;
    }
    if (st.applied_index != m.index || st.applied_term != m.term) {
        struct install_mark_arg a = {.s = s, .m = NULL};
        latch_log(LATCH_LOG_WARN, "%s: snapshot install at index %llu never happened; dropped",
                  s->dir, (unsigned long long)m.index);
        if (s->wal != NULL) {
            return store_wal_install_mark(s->wal, NULL);
        }
        return store__write(s, &s->raft, install_mark_write, &a);
    }
    latch_log(LATCH_LOG_WARN, "%s: finishing an interrupted snapshot install at index %llu", s->dir,
              (unsigned long long)m.index);
    rc = store__log_install(s, &m);
    if (rc != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: finishing a snapshot install: %s", s->raft.path,
                   latch_strerror(rc));
    }
    return rc;
}

/*
 * A state.mdb without raft.mdb is a first open that a crash cut between the two formats,
 * and then state.mdb is still empty; otherwise raft.mdb was lost, and making a new one
 * would forget the vote and the log: refuse.
 */
static int state_is_pristine(struct store *s, char *errmsg, size_t errmsg_size)
{
    struct store_reader *r = NULL;
    struct store_status st;
    int rc = store_reader_new(s, &r);

    if (rc == 0) {
        rc = store_status(r, &st);
        store_reader_free(r);
    }
    if (rc == 0 && (st.revision != 1 || st.applied_index != 0)) {
#ifdef LATCH_STORE_WAL
        const char *log_file = WAL_DIR;
#else
        const char *log_file = RAFT_FILE;
#endif
        errmsg_set(errmsg, errmsg_size, "%s/%s: missing while %s holds data (applied index %llu)",
                   s->dir, log_file, STATE_FILE, (unsigned long long)st.applied_index);
        rc = LATCH_ECORRUPT;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* The append-only log (LATCH_STORE_WAL, store_wal.h)                                 */
/* ---------------------------------------------------------------------------------- */

#ifdef LATCH_STORE_WAL

/* Removes <dir>/wal.new and its files: a format or a conversion that a crash cut short
 * (wal/ appears only by the rename that completes them). */
static void wal_new_drop(struct store *s)
{
    char path[STORE_PATH_MAX];
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof(path), "%s/%s", s->dir, WAL_NEW_DIR);
    d = opendir(path);
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char f[STORE_PATH_MAX + 256];
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
            (void)unlink(f);
        }
    }
    closedir(d);
    (void)rmdir(path);
}

/*
 * Makes <dir>/wal: written under wal.new without syncs, then every segment and the dir
 * synced, renamed into place and the data dir synced, so a crash leaves no wal/ or a whole
 * one. convert: the wal gets raft.mdb's contents (s->raft open), see store__log_convert.
 */
static int wal_format(struct store *s, bool convert, char *errmsg, size_t errmsg_size)
{
    char tmp[STORE_PATH_MAX], final[STORE_PATH_MAX];
    struct store_wal *w = NULL;

    wal_new_drop(s);
    snprintf(tmp, sizeof(tmp), "%s/%s", s->dir, WAL_NEW_DIR);
    snprintf(final, sizeof(final), "%s/%s", s->dir, WAL_DIR);
    struct store_wal_options o = {.dir = tmp, .no_sync = true};
    int rc = store_wal_open(&o, &w, errmsg, errmsg_size);
    if (rc == 0 && convert) {
        rc = store__log_convert(s, w);
        if (rc != 0) {
            errmsg_set(errmsg, errmsg_size, "%s: converting to %s: %s", s->raft.path, final,
                       latch_strerror(rc));
        }
    }
    if (rc == 0 && !s->opt.no_sync && store_wal_sync(w) != 0) {
        rc = LATCH_EIO;
    }
    store_wal_close(w);
    if (rc == 0 && rename(tmp, final) != 0) {
        rc = LATCH_EIO;
    }
    if (rc == 0 && !s->opt.no_sync) {
        rc = dir_fsync(s->dir);
    }
    if (rc == LATCH_EIO) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot format: %s", final, strerror(errno));
    }
    return rc;
}

/* Opens the log as <dir>/wal: formats it in a fresh data dir, converts raft.mdb when only
 * that is there (older builds), and removes a raft.mdb that a finished conversion left. */
static int wal_open(struct store *s, bool has_raft, bool has_wal, char *errmsg, size_t errmsg_size)
{
    char path[STORE_PATH_MAX];
    int rc = 0;

    wal_new_drop(s);
    if (!has_wal && !has_raft) {
        rc = state_is_pristine(s, errmsg, errmsg_size);
        rc = rc != 0 ? rc : wal_format(s, false, errmsg, errmsg_size);
    } else if (!has_wal) {
        rc = env_open(s, &s->raft, RAFT_FILE, errmsg, errmsg_size);
        rc = rc != 0 ? rc : raft_dbis_open(s, false, errmsg, errmsg_size);
        if (rc == 0) {
            latch_log(LATCH_LOG_WARN, "%s: converting %s into the append-only log %s/", s->dir,
                      RAFT_FILE, WAL_DIR);
            rc = wal_format(s, true, errmsg, errmsg_size);
        }
        if (s->log_rtxn != NULL) {
            mdb_txn_abort(s->log_rtxn);
            s->log_rtxn = NULL;
        }
        env_close(&s->raft);
    }
    if (rc == 0 && has_raft) {
        /* wal/ is complete (the rename above or an earlier one): raft.mdb is a leftover. */
        snprintf(path, sizeof(path), "%s/%s", s->dir, RAFT_FILE);
        (void)unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", s->dir, RAFT_FILE);
        (void)unlink(path);
        if (!s->opt.no_sync) {
            rc = dir_fsync(s->dir);
        }
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s", s->dir, WAL_DIR);
        struct store_wal_options o = {.dir = path, .no_sync = s->opt.no_sync};
        rc = store_wal_open(&o, &s->wal, errmsg, errmsg_size);
    }
    return rc;
}
#endif /* LATCH_STORE_WAL */

static int store_init_locks(struct store *s)
{
    if (pthread_rwlock_init(&s->raft.lock, NULL) != 0) {
        return LATCH_ENOMEM;
    }
    if (pthread_rwlock_init(&s->state.lock, NULL) != 0) {
        pthread_rwlock_destroy(&s->raft.lock);
        return LATCH_ENOMEM;
    }
    if (pthread_mutex_init(&s->readers_lock, NULL) != 0) {
        pthread_rwlock_destroy(&s->state.lock);
        pthread_rwlock_destroy(&s->raft.lock);
        return LATCH_ENOMEM;
    }
    return 0;
}

int store_open(const struct store_options *o, struct store **out, char *errmsg, size_t errmsg_size)
{
    struct store *s;
    bool has_raft = false;
    bool has_state = false;
    bool has_wal = false;
    int rc;

    errmsg_set(errmsg, errmsg_size, "%s", "");
    if (o == NULL || o->dir == NULL || o->dir[0] == '\0' || strlen(o->dir) >= STORE_DIR_MAX ||
        o->map_bytes_initial == 0 || o->map_bytes_max < o->map_bytes_initial) {
        errmsg_set(errmsg, errmsg_size, "store options: no dir, or bad map sizes");
        return LATCH_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return LATCH_ENOMEM;
    }
    s->opt = *o;
    latch_arena_init(&s->log_arena, 64 * 1024);
    snprintf(s->dir, sizeof(s->dir), "%s", o->dir);
    s->opt.dir = s->dir;
    rc = store_init_locks(s);
    if (rc != 0) {
        free(s);
        return rc;
    }
    rc = dir_inspect(s, &has_raft, &has_state, &has_wal, errmsg, errmsg_size);
    if (rc == 0) {
        install_tmp_drop(s);
        if (!has_state) {
            rc = env_format(s, false, errmsg, errmsg_size);
        }
    }
    if (rc == 0) {
        rc = store__state_env_open(s, errmsg, errmsg_size);
    }
#ifdef LATCH_STORE_WAL
    if (rc == 0) {
        rc = wal_open(s, has_raft, has_wal, errmsg, errmsg_size);
    }
#else
    if (rc == 0 && has_wal) {
        errmsg_set(errmsg, errmsg_size,
                   "%s/%s: an append-only log, which this build (without LATCH_STORE_WAL) cannot "
                   "read",
                   s->dir, WAL_DIR);
        rc = LATCH_EFORMAT;
    }
    if (rc == 0 && !has_raft) {
        rc = state_is_pristine(s, errmsg, errmsg_size);
        if (rc == 0) {
            rc = env_format(s, true, errmsg, errmsg_size);
        }
    }
    if (rc == 0) {
        rc = env_open(s, &s->raft, RAFT_FILE, errmsg, errmsg_size);
    }
    if (rc == 0) {
        rc = raft_dbis_open(s, false, errmsg, errmsg_size);
    }
#endif
    if (rc == 0) {
        rc = install_finish_if_interrupted(s, errmsg, errmsg_size);
    }
    if (rc != 0) {
        store_close(s);
        return rc;
    }
    LATCH_ASSERT((s->raft.env != NULL || s->wal != NULL) && s->state.env != NULL);
    LATCH_ASSERT(s->state.map_bytes > 0);
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    LATCH_ASSERTF(s->readers == NULL, "store_close with live readers in %s", s->dir);
    if (s->log_rtxn != NULL) {
        mdb_txn_abort(s->log_rtxn);
    }
    env_close(&s->state);
    env_close(&s->raft);
    store_wal_close(s->wal);
    free(s->log_buf);
    latch_arena_close(&s->log_arena);
    pthread_mutex_destroy(&s->readers_lock);
    pthread_rwlock_destroy(&s->state.lock);
    pthread_rwlock_destroy(&s->raft.lock);
    free(s);
}

/* ---------------------------------------------------------------------------------- */
/* Writes                                                                             */
/* ---------------------------------------------------------------------------------- */

/* Doubles e's map; LMDB requires that no transaction of this process is open, which the
 * exclusive lock guarantees (readers hold it shared for each call). */
static int env_grow(struct store *s, struct store__env *e)
{
    if (e->map_bytes >= s->opt.map_bytes_max) {
        latch_log(LATCH_LOG_ERROR, "%s: map is at its maximum of %llu bytes", e->path,
                  (unsigned long long)s->opt.map_bytes_max);
        return LATCH_ENOSPACE;
    }
    uint64_t next = e->map_bytes * 2;
    if (next > s->opt.map_bytes_max) {
        next = s->opt.map_bytes_max;
    }
    LATCH_ASSERTF(next > e->map_bytes, "map %llu cannot grow to %llu",
                  (unsigned long long)e->map_bytes, (unsigned long long)next);
    pthread_rwlock_wrlock(&e->lock);
    int rc = mdb_env_set_mapsize(e->env, (size_t)next);
    pthread_rwlock_unlock(&e->lock);
    if (rc != 0) {
        return store__fail(s, store__mdb_err(rc), "growing the map");
    }
    latch_log(LATCH_LOG_INFO, "%s: map grown from %llu to %llu bytes", e->path,
              (unsigned long long)e->map_bytes, (unsigned long long)next);
    e->map_bytes = next;
    return 0;
}

int store__write(struct store *s,
                 struct store__env *e,
                 int (*fn)(MDB_txn *txn, void *arg),
                 void *arg)
{
    LATCH_ASSERT(s != NULL && fn != NULL);
    LATCH_ASSERTF(e == &s->raft || e == &s->state, "write to a foreign env of %s", s->dir);
    for (;;) {
        MDB_txn *txn;
        int rc = store_failed(s);

        if (rc != 0) {
            return rc;
        }
        rc = mdb_txn_begin(e->env, NULL, 0, &txn);
        if (rc != 0) {
            return store__fail(s, store__mdb_err(rc), "beginning a write");
        }
        rc = fn(txn, arg);
        if (rc == 0) {
            rc = mdb_txn_commit(txn); /* frees txn in every case */
            if (rc == 0) {
                return 0;
            }
            if (rc != MDB_MAP_FULL) {
                return store__fail(s, LATCH_EIO, "commit");
            }
            rc = STORE__EMAPFULL;
        } else {
            mdb_txn_abort(txn);
        }
        if (rc == STORE__EMAPFULL) {
            rc = env_grow(s, e);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        return rc == STORE__ETXNFULL ? LATCH_ETOOBIG : rc;
    }
}

/* ---------------------------------------------------------------------------------- */
/* Reads                                                                              */
/* ---------------------------------------------------------------------------------- */

int store_reader_new(struct store *s, struct store_reader **out)
{
    struct store_reader *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return LATCH_ENOMEM;
    }
    r->s = s;
    pthread_mutex_lock(&s->readers_lock);
    r->next = s->readers;
    if (s->readers != NULL) {
        s->readers->prev = r;
    }
    s->readers = r;
    pthread_mutex_unlock(&s->readers_lock);
    *out = r;
    return 0;
}

struct store *store_reader_store(const struct store_reader *r)
{
    LATCH_ASSERT(r != NULL && r->s != NULL);
    return r->s;
}

void store_reader_free(struct store_reader *r)
{
    if (r == NULL) {
        return;
    }
    struct store *s = r->s;
    LATCH_ASSERT(s != NULL);
    store_reader_unpin(r);
    pthread_rwlock_rdlock(&s->state.lock);
    if (r->txn != NULL) {
        mdb_txn_abort(r->txn);
    }
    pthread_rwlock_unlock(&s->state.lock);
    pthread_rwlock_rdlock(&s->raft.lock);
    if (r->raft_txn != NULL) {
        mdb_txn_abort(r->raft_txn);
    }
    pthread_rwlock_unlock(&s->raft.lock);
    pthread_mutex_lock(&s->readers_lock);
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        s->readers = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    pthread_mutex_unlock(&s->readers_lock);
    free(r);
}

/* Begins (or renews) *txn on e with e->lock held shared; on error the lock is released. */
static int read_txn_begin(struct store__env *e, MDB_txn **txn)
{
    int rc;

    pthread_rwlock_rdlock(&e->lock);
    if (*txn == NULL) {
        rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, txn);
    } else {
        rc = mdb_txn_renew(*txn);
    }
    if (rc != 0) {
        pthread_rwlock_unlock(&e->lock);
        return store__mdb_err(rc);
    }
    return 0;
}

static void read_txn_end(struct store__env *e, MDB_txn *txn)
{
    LATCH_ASSERT(txn != NULL && e->env != NULL);
    mdb_txn_reset(txn);
    pthread_rwlock_unlock(&e->lock);
}

int store__read_begin(struct store_reader *r, MDB_txn **txn)
{
    if (r->pinned) {
        *txn = r->txn;
        return 0;
    }
    int rc = read_txn_begin(&r->s->state, &r->txn);

    *txn = r->txn;
    return rc;
}

void store__read_end(struct store_reader *r)
{
    if (!r->pinned) {
        read_txn_end(&r->s->state, r->txn);
    }
}

int store_reader_pin(struct store_reader *r)
{
    LATCH_ASSERT(r != NULL && r->s != NULL);
    if (r->pinned) {
        return LATCH_ESTATE;
    }
    int rc = read_txn_begin(&r->s->state, &r->txn);
    r->pinned = rc == 0;
    return rc;
}

void store_reader_unpin(struct store_reader *r)
{
    if (r->pinned) {
        r->pinned = false;
        read_txn_end(&r->s->state, r->txn);
    }
}

int store__raft_read_begin(struct store_reader *r, MDB_txn **txn)
{
    int rc = read_txn_begin(&r->s->raft, &r->raft_txn);

    *txn = r->raft_txn;
    return rc;
}

void store__raft_read_end(struct store_reader *r)
{
    read_txn_end(&r->s->raft, r->raft_txn);
}

int store__log_read_begin(struct store *s, MDB_txn **txn)
{
    int rc = read_txn_begin(&s->raft, &s->log_rtxn);

    *txn = s->log_rtxn;
    return rc;
}

void store__log_read_end(struct store *s)
{
    read_txn_end(&s->raft, s->log_rtxn);
}

void store__rev_publish(struct store *s, uint64_t txnid, int64_t rev)
{
    /* Seqlock-like: txnid is cleared while rev changes, so a reader that sees the same
     * non-zero txnid before and after reading rev has a matching pair. */
    atomic_store(&s->pub_txnid, 0);
    atomic_store(&s->pub_rev, rev);
    atomic_store(&s->pub_txnid, txnid);
}

int store__current_rev(struct store *s, MDB_txn *txn, int64_t *rev)
{
    uint64_t id = (uint64_t)mdb_txn_id(txn);
    uint64_t t1 = atomic_load(&s->pub_txnid);
    int64_t r = atomic_load(&s->pub_rev);
    uint64_t t2 = atomic_load(&s->pub_txnid);

    if (t1 != 0 && t1 == id && t2 == id) {
        *rev = r;
        return 0;
    }
    int rc = store__meta_get_i64(txn, s->meta, "rev", rev);
    if (rc == LATCH_ENOTFOUND || (rc == 0 && *rev < 1)) {
        return LATCH_ECORRUPT;
    }
    return rc;
}

void store__log_changed(struct store *s)
{
    latch_arena_reset(&s->log_arena);
}

void store_log_release(struct store *s)
{
    latch_arena_reset(&s->log_arena);
}

int store__reader_rev(struct store_reader *r, MDB_txn *txn, int64_t *rev)
{
    uint64_t id = (uint64_t)mdb_txn_id(txn);

    if (id != 0 && id == r->rev_txnid) {
        *rev = r->rev;
        return 0;
    }
    int rc = store__current_rev(r->s, txn, rev);
    if (rc == 0) {
        r->rev_txnid = id;
        r->rev = *rev;
    }
    return rc;
}

void store__readers_drop_txns(struct store *s)
{
    /* The new state.mdb numbers its transactions afresh: forget the published pair. */
    store__rev_publish(s, 0, 0);
    pthread_mutex_lock(&s->readers_lock);
    for (struct store_reader *r = s->readers; r != NULL; r = r->next) {
        if (r->txn != NULL) {
            mdb_txn_abort(r->txn);
            r->txn = NULL;
        }
        r->rev_txnid = 0; /* transaction ids of the new state.mdb start afresh */
    }
    pthread_mutex_unlock(&s->readers_lock);
}

int store_status(struct store_reader *r, struct store_status *out)
{
    struct store *s = r->s;
    uint8_t applied[16];
    uint8_t alarm[4];
    MDB_stat kv_st;
    MDB_stat lease_st;
    MDB_txn *txn;
    int rc = store__read_begin(r, &txn);

    if (rc != 0) {
        return rc;
    }
    memset(out, 0, sizeof(*out));
    rc = store__meta_get_i64(txn, s->meta, "rev", &out->revision);
    if (rc == 0) {
        rc = store__meta_get_i64(txn, s->meta, "compact", &out->compact_revision);
    }
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "applied", applied, sizeof(applied));
    }
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "alarm", alarm, sizeof(alarm));
    }
    if (rc == 0) {
        rc = store__mdb_err(mdb_stat(txn, s->kv, &kv_st));
    }
    if (rc == 0) {
        rc = store__mdb_err(mdb_stat(txn, s->lease, &lease_st));
    }
    store__read_end(r);
    if (rc != 0) {
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
    }
    out->applied_index = store__get_le64(applied);
    out->applied_term = store__get_le64(applied + 8);
    out->alarm_nospace = (store__get_le32(alarm) & STORE__ALARM_NOSPACE_BIT) != 0;
    out->keys_count = (int64_t)kv_st.ms_entries;
    out->leases_count = (int64_t)lease_st.ms_entries;
    LATCH_ASSERTF(out->revision >= 1, "revision %lld", (long long)out->revision);
    LATCH_ASSERTF(out->compact_revision <= out->revision, "compact %lld > rev %lld",
                  (long long)out->compact_revision, (long long)out->revision);
    return 0;
}

int store_conf(struct store_reader *r, uint8_t conf[STORE_CONF_BYTES_MAX], uint32_t *conf_len)
{
    MDB_txn *txn;
    MDB_val k = name_val("conf");
    MDB_val v;
    int rc = store__read_begin(r, &txn);

    if (rc != 0) {
        return rc;
    }
    rc = mdb_get(txn, r->s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *conf_len = 0;
        rc = 0;
    } else if (rc == 0 && v.mv_size > STORE_CONF_BYTES_MAX) {
        rc = LATCH_ECORRUPT;
    } else if (rc == 0) {
        memcpy(conf, v.mv_data, v.mv_size);
        *conf_len = (uint32_t)v.mv_size;
    } else {
        rc = store__mdb_err(rc);
    }
    store__read_end(r);
    return rc;
}
