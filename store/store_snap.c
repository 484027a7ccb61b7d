/*
 * store_snap.c — state snapshots: create, stream out, receive, install (store.h "Snapshots").
 *
 * A snapshot file is a fixed header followed by a compacted copy of state.mdb:
 *
 *   off   bytes  field
 *   0     8      magic "LATCHSNP"
 *   8     4      format version le32 (STORE_FORMAT_VERSION)
 *   12    4      conf_len le32 (<= STORE_CONF_BYTES_MAX)
 *   16    8      index le64: the applied index inside the copy
 *   24    8      term le64: the applied term inside the copy
 *   32    8      data_len le64: bytes of the state copy that follow the header
 *   40    4      data crc32c le32 over those bytes
 *   44    4      reserved, 0
 *   48    4096   conf (conf_len bytes used, the rest zero)
 *   4144  4      header crc32c le32 over bytes [0, 4144)
 *
 * Creating. mdb_env_copyfd2(MDB_CP_COMPACT) runs its own read transaction, so the index,
 * term and membership in the header are read from the copy itself (opened read-only)
 * rather than from the live env: the header then describes exactly the bytes behind it,
 * whoever else writes meanwhile. The copy is made into a temporary file, then the header
 * and the data are written to a second temporary file, fsynced and renamed to
 * snap/<index>-<term>.snap, and the directory is fsynced before raft.mdb records it.
 *
 * Installing. The stream's data part goes straight into <dir>/state.mdb.new while it is
 * received (its CRC computed on the way), so nothing is copied twice. finish checks the
 * length and CRC, opens the copy to check it is a latch state at the header's index,
 * fsyncs it, and then swaps it in under state.lock held exclusively: readers' transactions
 * are dropped, the env is closed, rename(2) replaces state.mdb, the dir is fsynced and the
 * env reopened; store__log_install then resets raft.mdb to the snapshot. Just before the
 * rename, raft.mdb records an "installing" mark (store__install_mark, synced). A crash
 * before the rename leaves the old state: store_open drops state.mdb.new and, finding the
 * old applied index, the mark. A crash after it leaves the new state, whose applied
 * index matches the mark: store_open finishes with store__log_install, which is
 * idempotent and deletes the mark.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "latch_crc32c.h"
#include "latch_log.h"
#include "store_int.h"

#define SNAP_OFF_VERSION  8u
#define SNAP_OFF_CONF_LEN 12u
#define SNAP_OFF_INDEX    16u
#define SNAP_OFF_TERM     24u
#define SNAP_OFF_DATA_LEN 32u
#define SNAP_OFF_DATA_CRC 40u
#define SNAP_OFF_CONF     48u
#define SNAP_OFF_HDR_CRC  (SNAP_OFF_CONF + STORE_CONF_BYTES_MAX)
#define SNAP_HDR_BYTES    (SNAP_OFF_HDR_CRC + 4u)

#define SNAP_DIR      "snap"
#define SNAP_KEEP     2          /* snapshot files kept in snap/ after a create */
#define SNAP_IO_CHUNK (1u << 20) /* buffer for assembling a snapshot file */

static const char SNAP_MAGIC[8] = {'L', 'A', 'T', 'C', 'H', 'S', 'N', 'P'};
/* state.mdb's format record (store.c): magic, version le32, crc32c le32 of 12 bytes. */
static const char STATE_MAGIC[8] = {'L', 'A', 'T', 'C', 'H', 'S', 'T', 'A'};
#define FORMAT_RECORD_BYTES 16u

struct snap_hdr {
    struct store_snap_meta meta;
    uint64_t data_len;
    uint32_t data_crc;
};

/* Owns fd. */
struct store_snap_reader {
    int fd;
    uint64_t size; /* whole file: header + data */
    uint64_t off;
};

/* Owns fd and the file at path (removed unless installed). */
struct store_snap_writer {
    struct store *s;
    int fd; /* path, receiving the data part; -1 once closed */
    char path[STORE_PATH_MAX];
    uint8_t hdr_buf[SNAP_HDR_BYTES];
    size_t hdr_got;
    struct snap_hdr hdr; /* decoded once hdr_got == SNAP_HDR_BYTES */
    uint64_t data_got;
    uint32_t data_crc;
    int err;       /* sticky: the first failure of a write */
    bool verified; /* store_snap_writer_verify passed: complete, intact, a latch state */
};

/* ---------------------------------------------------------------------------------- */
/* Files                                                                              */
/* ---------------------------------------------------------------------------------- */

static int errno_err(int e)
{
    return e == ENOSPC || e == EDQUOT ? LATCH_ENOSPACE : LATCH_EIO;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return errno_err(w < 0 ? errno : ENOSPC);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes at off (off < 0: at the file position); *got < n only at the end
 * of the file. */
static int read_full(int fd, off_t off, uint8_t *p, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = off < 0 ? read(fd, p + *got, n - *got)
                            : pread(fd, p + *got, n - *got, off + (off_t)*got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return LATCH_EIO;
        }
        if (r == 0) {
            break;
        }
        *got += (size_t)r;
    }
    return 0;
}

/* Makes a directory's entries (a rename, a new file) durable. */
static int dir_fsync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return LATCH_EIO;
    }
    int rc = fsync(fd) == 0 ? 0 : LATCH_EIO;
    close(fd);
    return rc;
}

/* <dir>/snap/<name> into buf. */
static void snap_path(const struct store *s, const char *name, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s/%s", s->dir, SNAP_DIR, name);
    LATCH_ASSERTF(n > 0 && (size_t)n < cap, "snapshot path too long in %s", s->dir);
}

/* Creates <dir>/snap when missing, durably. */
static int snap_dir_ensure(const struct store *s)
{
    char path[STORE_PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", s->dir, SNAP_DIR);
    if (mkdir(path, 0700) == 0) {
        return dir_fsync(s->dir);
    }
    return errno == EEXIST ? 0 : errno_err(errno);
}

/* ---------------------------------------------------------------------------------- */
/* Header                                                                             */
/* ---------------------------------------------------------------------------------- */

static void hdr_encode(const struct snap_hdr *h, uint8_t b[SNAP_HDR_BYTES])
{
    LATCH_ASSERTF(h->meta.conf_len <= STORE_CONF_BYTES_MAX, "conf_len %u", h->meta.conf_len);
    memset(b, 0, SNAP_HDR_BYTES);
    memcpy(b, SNAP_MAGIC, sizeof(SNAP_MAGIC));
    store__put_le32(b + SNAP_OFF_VERSION, STORE_FORMAT_VERSION);
    store__put_le32(b + SNAP_OFF_CONF_LEN, h->meta.conf_len);
    store__put_le64(b + SNAP_OFF_INDEX, h->meta.index);
    store__put_le64(b + SNAP_OFF_TERM, h->meta.term);
    store__put_le64(b + SNAP_OFF_DATA_LEN, h->data_len);
    store__put_le32(b + SNAP_OFF_DATA_CRC, h->data_crc);
    memcpy(b + SNAP_OFF_CONF, h->meta.conf, h->meta.conf_len);
    store__put_le32(b + SNAP_OFF_HDR_CRC, latch_crc32c(0, b, SNAP_OFF_HDR_CRC));
}

/* LATCH_ECORRUPT: not a snapshot header or damaged; LATCH_EFORMAT: another version. */
static int hdr_decode(const uint8_t b[SNAP_HDR_BYTES], struct snap_hdr *h)
{
    if (memcmp(b, SNAP_MAGIC, sizeof(SNAP_MAGIC)) != 0) {
        return LATCH_ECORRUPT;
    }
    if (store__get_le32(b + SNAP_OFF_HDR_CRC) != latch_crc32c(0, b, SNAP_OFF_HDR_CRC)) {
        return LATCH_ECORRUPT;
    }
    if (store__get_le32(b + SNAP_OFF_VERSION) != STORE_FORMAT_VERSION) {
        return LATCH_EFORMAT;
    }
    memset(h, 0, sizeof(*h));
    h->meta.conf_len = store__get_le32(b + SNAP_OFF_CONF_LEN);
    h->meta.index = store__get_le64(b + SNAP_OFF_INDEX);
    h->meta.term = store__get_le64(b + SNAP_OFF_TERM);
    h->data_len = store__get_le64(b + SNAP_OFF_DATA_LEN);
    h->data_crc = store__get_le32(b + SNAP_OFF_DATA_CRC);
    if (h->meta.conf_len > STORE_CONF_BYTES_MAX || h->data_len == 0) {
        return LATCH_ECORRUPT;
    }
    memcpy(h->meta.conf, b + SNAP_OFF_CONF, h->meta.conf_len);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* A state copy opened on its own                                                     */
/* ---------------------------------------------------------------------------------- */

/* Checks state.mdb's format record as store.c writes it. */
static int copy_format_check(MDB_txn *txn, MDB_dbi meta)
{
    uint8_t rec[FORMAT_RECORD_BYTES];
    int rc = store__meta_get(txn, meta, "format", rec, sizeof(rec));

    if (rc != 0) {
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
    }
    if (memcmp(rec, STATE_MAGIC, sizeof(STATE_MAGIC)) != 0 ||
        store__get_le32(rec + 12) != latch_crc32c(0, rec, 12)) {
        return LATCH_ECORRUPT;
    }
    uint32_t version = store__get_le32(rec + 8);
    return version == 0 ? LATCH_ECORRUPT : version > STORE_FORMAT_VERSION ? LATCH_EFORMAT : 0;
}

/* The applied index and term and the membership recorded in an open copy. */
static int copy_meta_get(MDB_txn *txn, MDB_dbi meta, struct store_snap_meta *m)
{
    uint8_t applied[16];
    MDB_val k = {.mv_size = 4, .mv_data = (void *)"conf"};
    MDB_val v;
    int rc = store__meta_get(txn, meta, "applied", applied, sizeof(applied));

    if (rc != 0) {
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
    }
    memset(m, 0, sizeof(*m));
    m->index = store__get_le64(applied);
    m->term = store__get_le64(applied + 8);
    rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return 0; /* no membership recorded yet */
    }
    if (rc != 0 || v.mv_size > STORE_CONF_BYTES_MAX) {
        return rc != 0 ? store__mdb_err(rc) : LATCH_ECORRUPT;
    }
    memcpy(m->conf, v.mv_data, v.mv_size);
    m->conf_len = (uint32_t)v.mv_size;
    return 0;
}

/*
 * Opens the state copy at path read-only, without a lock file (nobody else has it open),
 * checks that it is a latch state and reads its metadata. Any LMDB complaint about the
 * file means the copy is bad: LATCH_ECORRUPT.
 */
static int copy_meta_read(const char *path, struct store_snap_meta *m)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    int rc = mdb_env_create(&env);

    if (rc != 0) {
        return store__mdb_err(rc);
    }
    (void)mdb_env_set_maxdbs(env, 8);
    rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600);
    if (rc == 0) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "meta", 0, &meta);
    }
    int err = rc == ENOMEM ? LATCH_ENOMEM : rc != 0 ? LATCH_ECORRUPT : 0;
    if (err == 0) {
        err = copy_format_check(txn, meta);
    }
    if (err == 0) {
        err = copy_meta_get(txn, meta, m);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return err;
}

/* ---------------------------------------------------------------------------------- */
/* Creating                                                                           */
/* ---------------------------------------------------------------------------------- */

/* A compacted copy of the live state.mdb into the file at path. */
static int state_copy(struct store *s, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return errno_err(errno);
    }
    /* Shared: the env must not be swapped or its map resized during the copy. */
    pthread_rwlock_rdlock(&s->state.lock);
    int rc = mdb_env_copyfd2(s->state.env, fd, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&s->state.lock);
    if (close(fd) != 0 && rc == 0) {
        rc = EIO;
    }
    if (rc == 0) {
        return 0;
    }
    latch_log(LATCH_LOG_ERROR, "%s: copying state for a snapshot: %s", path, mdb_strerror(rc));
    return rc == ENOSPC || rc == EDQUOT ? LATCH_ENOSPACE : store__mdb_err(rc);
}

/* Appends everything of in to out (at its position), extending *len and *crc. */
static int data_copy_crc(int in, int out, uint64_t *len, uint32_t *crc)
{
    uint8_t *buf = malloc(SNAP_IO_CHUNK);
    int rc = 0;

    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    for (;;) {
        size_t got;
        rc = read_full(in, -1, buf, SNAP_IO_CHUNK, &got);
        if (rc != 0 || got == 0) {
            break;
        }
        *crc = latch_crc32c(*crc, buf, got);
        *len += got;
        rc = write_all(out, buf, got);
        if (rc != 0) {
            break;
        }
    }
    free(buf);
    return rc;
}

/* Writes header + data of the copy at copy_path to tmp_path and fsyncs it. */
static int snap_assemble(const char *copy_path, const char *tmp_path, struct snap_hdr *h)
{
    uint8_t *hdr = calloc(1, SNAP_HDR_BYTES);
    int in = open(copy_path, O_RDONLY | O_CLOEXEC);
    int out = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = hdr == NULL ? LATCH_ENOMEM : in < 0 || out < 0 ? errno_err(errno) : 0;

    h->data_len = 0;
    h->data_crc = 0;
    if (rc == 0 && lseek(out, SNAP_HDR_BYTES, SEEK_SET) != (off_t)SNAP_HDR_BYTES) {
        rc = LATCH_EIO;
    }
    if (rc == 0) {
        rc = data_copy_crc(in, out, &h->data_len, &h->data_crc);
    }
    if (rc == 0) {
        hdr_encode(h, hdr);
        if (pwrite(out, hdr, SNAP_HDR_BYTES, 0) != (ssize_t)SNAP_HDR_BYTES) {
            rc = errno_err(errno);
        }
    }
    if (rc == 0 && fsync(out) != 0) {
        rc = LATCH_EIO;
    }
    if (in >= 0) {
        close(in);
    }
    if (out >= 0 && close(out) != 0 && rc == 0) {
        rc = LATCH_EIO;
    }
    free(hdr);
    return rc;
}

/* Parses "<index>-<term>.snap"; false for any other name. */
static bool snap_name_parse(const char *name, uint64_t *index, uint64_t *term)
{
    unsigned long long i;
    unsigned long long t;
    char again[64];

    if (sscanf(name, "%llu-%llu.snap", &i, &t) != 2) {
        return false;
    }
    snprintf(again, sizeof(again), "%llu-%llu.snap", i, t);
    *index = i;
    *term = t;
    return strcmp(again, name) == 0;
}

static bool snap_newer(uint64_t i1, uint64_t t1, uint64_t i2, uint64_t t2)
{
    return i1 > i2 || (i1 == i2 && t1 > t2);
}

/*
 * Deletes every snapshot file in snap/ but the SNAP_KEEP newest: older ones are no longer
 * recorded anywhere, and keeping one spare covers a peer still streaming the previous one.
 * Two passes over the directory: find the cut-off, then delete below it.
 */
static void snap_prune(const struct store *s)
{
    char path[STORE_PATH_MAX];
    uint64_t keep_i[SNAP_KEEP] = {0};
    uint64_t keep_t[SNAP_KEEP] = {0};
    int found = 0;
    struct dirent *de;
    uint64_t i;
    uint64_t t;

    snprintf(path, sizeof(path), "%s/%s", s->dir, SNAP_DIR);
    DIR *d = opendir(path);
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) { /* keep_* sorted newest first */
        if (!snap_name_parse(de->d_name, &i, &t)) {
            continue;
        }
        int pos = found < SNAP_KEEP ? found++ : SNAP_KEEP;
        while (pos > 0 && snap_newer(i, t, keep_i[pos - 1], keep_t[pos - 1])) {
            if (pos < SNAP_KEEP) {
                keep_i[pos] = keep_i[pos - 1];
                keep_t[pos] = keep_t[pos - 1];
            }
            pos--;
        }
        if (pos < SNAP_KEEP) {
            keep_i[pos] = i;
            keep_t[pos] = t;
        }
    }
    if (found == SNAP_KEEP) {
        rewinddir(d);
        while ((de = readdir(d)) != NULL) {
            if (snap_name_parse(de->d_name, &i, &t) &&
                snap_newer(keep_i[SNAP_KEEP - 1], keep_t[SNAP_KEEP - 1], i, t)) {
                snap_path(s, de->d_name, path, sizeof(path));
                (void)unlink(path);
            }
        }
    }
    closedir(d);
}

/* Renames the assembled file to its final name and makes the rename durable. */
static int snap_publish(const struct store *s,
                        const char *tmp_path,
                        const struct store_snap_meta *m,
                        char *final_path,
                        size_t cap)
{
    char name[64];
    char dir[STORE_PATH_MAX];

    snprintf(name, sizeof(name), "%llu-%llu.snap", (unsigned long long)m->index,
             (unsigned long long)m->term);
    snap_path(s, name, final_path, cap);
    if (rename(tmp_path, final_path) != 0) {
        return errno_err(errno);
    }
    snprintf(dir, sizeof(dir), "%s/%s", s->dir, SNAP_DIR);
    return dir_fsync(dir);
}

int store_snapshot_write(struct store *s,
                         struct store_snap_meta *meta,
                         char *path_out,
                         size_t path_cap)
{
    char copy_path[STORE_PATH_MAX];
    char tmp_path[STORE_PATH_MAX];
    char final_path[STORE_PATH_MAX];
    LATCH_ASSERT(s != NULL && meta != NULL);
    struct snap_hdr *h = calloc(1, sizeof(*h));
    int rc = h == NULL ? LATCH_ENOMEM : store_failed(s);

    snap_path(s, "create.mdb.tmp", copy_path, sizeof(copy_path));
    snap_path(s, "create.tmp", tmp_path, sizeof(tmp_path));
    if (rc == 0) {
        rc = snap_dir_ensure(s);
    }
    if (rc == 0) {
        rc = state_copy(s, copy_path);
    }
    if (rc == 0) {
        rc = copy_meta_read(copy_path, &h->meta);
    }
    if (rc == 0) {
        rc = snap_assemble(copy_path, tmp_path, h);
    }
    (void)unlink(copy_path);
    if (rc == 0) {
        rc = snap_publish(s, tmp_path, &h->meta, final_path, sizeof(final_path));
    }
    (void)unlink(tmp_path);
    if (rc == 0) {
        LATCH_ASSERTF(h->data_len > 0, "empty snapshot at %llu", (unsigned long long)h->meta.index);
        *meta = h->meta;
        if (path_out != NULL && path_cap > 0) {
            snprintf(path_out, path_cap, "%s", final_path);
        }
    }
    free(h);
    return rc;
}

int store_snapshot_record(struct store *s, const struct store_snap_meta *meta)
{
    LATCH_ASSERT(s != NULL && meta != NULL);
    int rc = store__log_record_snapshot(s, meta);
    if (rc == 0) {
        snap_prune(s);
    }
    return rc;
}

int store_snapshot_create(struct store *s,
                          struct store_snap_meta *meta,
                          char *path_out,
                          size_t path_cap)
{
    struct store_snap_meta *m = malloc(sizeof(*m));
    int rc = m == NULL ? LATCH_ENOMEM : store_snapshot_write(s, m, path_out, path_cap);
    if (rc == 0) {
        rc = store_snapshot_record(s, m);
    }
    if (rc == 0 && meta != NULL) {
        *meta = *m;
    }
    free(m);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* Streaming out                                                                      */
/* ---------------------------------------------------------------------------------- */

int store_snap_reader_open(struct store *s,
                           const char *path,
                           struct store_snap_meta *meta,
                           struct store_snap_reader **out)
{
    uint8_t *b = malloc(SNAP_HDR_BYTES);
    struct snap_hdr *h = malloc(sizeof(*h));
    struct stat st;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = b == NULL || h == NULL ? LATCH_ENOMEM : 0;

    (void)s;
    if (rc == 0 && fd < 0) {
        rc = errno == ENOENT ? LATCH_ENOTFOUND : LATCH_EIO;
    }
    if (rc == 0) {
        rc = read_full(fd, 0, b, SNAP_HDR_BYTES, &got);
    }
    if (rc == 0) {
        rc = got < SNAP_HDR_BYTES ? LATCH_ECORRUPT : hdr_decode(b, h);
    }
    if (rc == 0) {
        rc = fstat(fd, &st) != 0                                    ? LATCH_EIO
             : (uint64_t)st.st_size != SNAP_HDR_BYTES + h->data_len ? LATCH_ECORRUPT
                                                                    : 0;
    }
    struct store_snap_reader *rd = rc == 0 ? calloc(1, sizeof(*rd)) : NULL;
    if (rc == 0 && rd == NULL) {
        rc = LATCH_ENOMEM;
    }
    if (rc == 0) {
        rd->fd = fd;
        rd->size = (uint64_t)st.st_size;
        rd->off = 0;
        if (meta != NULL) {
            *meta = h->meta;
        }
        *out = rd;
    } else if (fd >= 0) {
        close(fd);
    }
    free(b);
    free(h);
    return rc;
}

int store_snap_reader_read(struct store_snap_reader *rd, uint8_t *buf, size_t cap, size_t *n_out)
{
    LATCH_ASSERT(rd != NULL);
    LATCH_ASSERTF(rd->off <= rd->size, "offset %llu past size %llu", (unsigned long long)rd->off,
                  (unsigned long long)rd->size);
    uint64_t left = rd->size - rd->off;
    size_t want = left < cap ? (size_t)left : cap;
    size_t got = 0;
    int rc = want == 0 ? 0 : read_full(rd->fd, (off_t)rd->off, buf, want, &got);

    if (rc == 0 && got < want) {
        rc = LATCH_ECORRUPT; /* the file shrank under us */
    }
    if (rc != 0) {
        return rc;
    }
    rd->off += got;
    *n_out = got;
    return 0;
}

uint64_t store_snap_reader_size(const struct store_snap_reader *rd)
{
    return rd->size;
}

void store_snap_reader_close(struct store_snap_reader *rd)
{
    if (rd == NULL) {
        return;
    }
    close(rd->fd);
    free(rd);
}

/* ---------------------------------------------------------------------------------- */
/* Receiving                                                                          */
/* ---------------------------------------------------------------------------------- */

int store_snap_writer_new(struct store *s, struct store_snap_writer **out)
{
    int rc = store_failed(s);
    if (rc != 0) {
        return rc;
    }
    struct store_snap_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return LATCH_ENOMEM;
    }
    w->s = s;
    snprintf(w->path, sizeof(w->path), "%s/state.mdb.new", s->dir);
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        rc = errno_err(errno);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Takes header bytes from *buf until the header is complete, then checks it. */
static int writer_take_header(struct store_snap_writer *w, const uint8_t **buf, size_t *n)
{
    size_t take = SNAP_HDR_BYTES - w->hdr_got;

    if (take > *n) {
        take = *n;
    }
    memcpy(w->hdr_buf + w->hdr_got, *buf, take);
    w->hdr_got += take;
    *buf += take;
    *n -= take;
    if (w->hdr_got < SNAP_HDR_BYTES) {
        return 0;
    }
    int rc = hdr_decode(w->hdr_buf, &w->hdr);
    if (rc == 0 && w->hdr.data_len > w->s->opt.map_bytes_max) {
        rc = LATCH_ETOOBIG; /* could never be opened here */
    }
    return rc;
}

int store_snap_writer_write(struct store_snap_writer *w, const uint8_t *buf, size_t n)
{
    LATCH_ASSERT(w != NULL);
    LATCH_ASSERT(buf != NULL || n == 0);
    int rc = w->err;
    if (rc == 0 && w->hdr_got < SNAP_HDR_BYTES) {
        rc = writer_take_header(w, &buf, &n);
    }
    if (rc == 0 && n > w->hdr.data_len - w->data_got) {
        rc = LATCH_ETOOBIG; /* more than the header announced */
    }
    if (rc == 0 && n > 0) {
        w->data_crc = latch_crc32c(w->data_crc, buf, n);
        rc = write_all(w->fd, buf, n);
        w->data_got += n;
    }
    w->err = rc;
    return rc;
}

static void writer_free(struct store_snap_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    (void)unlink(w->path); /* gone already when installed */
    free(w);
}

void store_snap_writer_abort(struct store_snap_writer *w)
{
    if (w != NULL) {
        writer_free(w);
    }
}

/* The stream is complete and intact (length and CRC, computed while it was written). */
static int writer_check_complete(const struct store_snap_writer *w)
{
    if (w->err != 0) {
        return w->err;
    }
    if (w->hdr_got < SNAP_HDR_BYTES || w->data_got != w->hdr.data_len ||
        w->data_crc != w->hdr.data_crc) {
        return LATCH_ECORRUPT;
    }
    return 0;
}

/* The stream is complete and intact; the data part is made durable and closed. */
static int writer_verify(struct store_snap_writer *w)
{
    int rc = writer_check_complete(w);
    if (rc != 0) {
        return rc;
    }
    if (w->fd < 0) {
        return 0; /* done before */
    }
    rc = fsync(w->fd) == 0 ? 0 : LATCH_EIO;
    if (close(w->fd) != 0 && rc == 0) {
        rc = LATCH_EIO;
    }
    w->fd = -1;
    return rc;
}

/* LATCH_ESNAPOLD unless m is beyond the live state's applied index. */
static int writer_check_newer(struct store *s, const struct store_snap_meta *m)
{
    uint8_t applied[16];
    MDB_txn *txn;

    pthread_rwlock_rdlock(&s->state.lock);
    int rc = store__mdb_err(mdb_txn_begin(s->state.env, NULL, MDB_RDONLY, &txn));
    if (rc == 0) {
        rc = store__meta_get(txn, s->meta, "applied", applied, sizeof(applied));
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&s->state.lock);
    if (rc != 0) {
        return rc == LATCH_ENOTFOUND ? LATCH_ECORRUPT : rc;
    }
    return m->index <= store__get_le64(applied) ? LATCH_ESNAPOLD : 0;
}

/* The received copy is a latch state whose metadata is the header's. */
static int writer_check_copy(const struct store_snap_writer *w)
{
    struct store_snap_meta *in = malloc(sizeof(*in));
    const struct store_snap_meta *h = &w->hdr.meta;

    if (in == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = copy_meta_read(w->path, in);
    if (rc == 0 && (in->index != h->index || in->term != h->term || in->conf_len != h->conf_len ||
                    memcmp(in->conf, h->conf, h->conf_len) != 0)) {
        latch_log(LATCH_LOG_ERROR, "%s: received state is at %llu/%llu, header says %llu/%llu",
                  w->path, (unsigned long long)in->index, (unsigned long long)in->term,
                  (unsigned long long)h->index, (unsigned long long)h->term);
        rc = LATCH_ECORRUPT;
    }
    free(in);
    return rc;
}

/*
 * Replaces state.mdb by the file at new_path. Exclusive state.lock: no reader is inside a
 * call, and the readers' parked transactions (which point into the old map) are dropped.
 * LMDB's lock file is removed with the old env so the new one starts a fresh reader table.
 * A failed rename leaves the old state, reopened; a failure after it puts s in ERROR.
 */
static int state_swap(struct store *s, const char *new_path)
{
    char lock_path[STORE_PATH_MAX + 8];
    char errmsg[STORE_ERRMSG_BYTES] = "";

    pthread_rwlock_wrlock(&s->state.lock);
    store__readers_drop_txns(s);
    mdb_env_close(s->state.env);
    s->state.env = NULL;
    snprintf(lock_path, sizeof(lock_path), "%s-lock", s->state.path);
    (void)unlink(lock_path);
    int rc = rename(new_path, s->state.path) == 0 ? 0 : LATCH_EIO;
    bool renamed = rc == 0;
    if (renamed) {
        rc = dir_fsync(s->dir);
    }
    int orc = store__state_env_open(s, errmsg, sizeof(errmsg));
    pthread_rwlock_unlock(&s->state.lock);
    if (orc != 0) {
        latch_log(LATCH_LOG_ERROR, "snapshot install: %s", errmsg);
        return store__fail(s, orc, "reopening state.mdb after a snapshot install");
    }
    if (rc != 0 && renamed) {
        return store__fail(s, rc, "fsync of the data dir after a snapshot install");
    }
    LATCH_ASSERT(s->state.env != NULL);
    return rc;
}

int store_snap_writer_verify(struct store_snap_writer *w, struct store_snap_meta *meta)
{
    LATCH_ASSERT(w != NULL);
    /* No fsync here (finish does it, on the storage thread): the copy check reads the data
     * through the page cache, so a receiver can verify on its event loop. */
    int rc = writer_check_complete(w);
    if (rc == 0 && !w->verified) {
        rc = writer_check_copy(w);
    }
    if (rc != 0) {
        w->err = w->err != 0 ? w->err : rc;
        return rc;
    }
    w->verified = true;
    if (meta != NULL) {
        *meta = w->hdr.meta;
    }
    return 0;
}

void store_snapshot_path(
    const struct store *s, uint64_t index, uint64_t term, char *buf, size_t cap)
{
    char name[64];

    LATCH_ASSERT(s != NULL && buf != NULL);
    snprintf(name, sizeof(name), "%llu-%llu.snap", (unsigned long long)index,
             (unsigned long long)term);
    snap_path(s, name, buf, cap);
}

int store_snap_writer_finish(struct store_snap_writer *w, struct store_snap_meta *meta)
{
    LATCH_ASSERT(w != NULL);
    struct store *s = w->s;
    int rc = writer_verify(w);

    if (rc == 0) {
        rc = store_failed(s);
    }
    if (rc == 0) {
        rc = writer_check_newer(s, &w->hdr.meta);
    }
    if (rc == 0 && !w->verified) {
        rc = writer_check_copy(w);
    }
    if (rc == 0) {
        rc = store__install_mark(s, &w->hdr.meta); /* synced: store_open's clue */
    }
    if (rc == 0) {
        rc = state_swap(s, w->path);
    }
    if (rc == 0) {
        rc = store__log_install(s, &w->hdr.meta);
    }
    if (rc == 0) {
        latch_log(LATCH_LOG_INFO, "%s: installed snapshot %llu/%llu (%llu bytes)", s->dir,
                  (unsigned long long)w->hdr.meta.index, (unsigned long long)w->hdr.meta.term,
                  (unsigned long long)w->hdr.data_len);
        if (meta != NULL) {
            *meta = w->hdr.meta;
        }
    }
    writer_free(w);
    return rc;
}
