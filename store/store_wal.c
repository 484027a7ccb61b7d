/*
 * store_wal.c — the Raft log as append-only segment files (store_wal.h).
 *
 * A segment is a sequence of records, each starting at a multiple of 8 bytes:
 *
 *   len   le32   bytes of the record from its first byte, padding excluded (>= 16)
 *   crc   le32   CRC-32C of (segment number le64, file offset le64, bytes [8, len))
 *   items ...    each: kind u8, 3 zero bytes, body_len le32, body
 *
 * then zeros up to the next multiple of 8. Binding the CRC to the segment and offset makes
 * a record that was copied or left over elsewhere fail its check. Items:
 *
 *   HEADER  magic "LATCHWAL", version le32, 0 le32, segment number le64   (first of a segment)
 *   ENTRY   index le64, term le64, type le32, crc le32, data    crc: CRC-32C of index, term,
 *           type and data, checked again on every read (store_wal_entries)
 *   HARD    term, vote, commit (le64)
 *   TRUNC   index le64: every entry at or after it is gone
 *   POINT   index le64, term le64: the compaction point; every entry at or below it is gone
 *   SNAP    index le64, term le64, conf_len le32, conf
 *   MARK    set le32, 0 le32, index le64, term le64 (the "installing" mark)
 *
 * One write call (append, compact, install, ...) is ONE record written with one pwrite and
 * made durable with one fdatasync, so a crash keeps a call whole or not at all: a torn record
 * fails its CRC. Space is reserved a chunk (prealloc_bytes) at a time by writing zeros, so
 * the fdatasync of an append in between has neither a new file size nor a block allocation
 * to make durable (fallocate would leave "unwritten" extents, whose conversion on the first
 * write into them is metadata each fdatasync would have to journal, on ext4 and XFS).
 *
 * Opening replays every record of every segment, oldest first, into memory: the compaction
 * point, hard state, snapshot metadata, install mark and, per stored index, where its entry
 * lies (segment, offset) with its term. The same function applies a record at open and
 * after a write (apply_record), so what a reopen sees is what the writer saw.
 *
 * Segments. Past segment_bytes the next write first starts a new segment, whose first record
 * (HEADER, POINT, HARD, SNAP, MARK: everything but the entries) is written under seg.tmp,
 * synced and renamed into place, so a segment never starts torn. After a compaction, older
 * segments whose entries all lie at or below the point are unlinked, oldest first. Replaying
 * from a segment whose predecessors are gone may meet an entry above the index the replay
 * has reached (the entries in between were in the unlinked segments); that is accepted when
 * a later point covers the hole, and LATCH_ECORRUPT otherwise.
 */
#include "store_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "latch_crc32c.h"
#include "latch_log.h"
#include "store_int.h"

#define WAL_REC_HDR    8u
#define WAL_ITEM_HDR   8u
#define WAL_ENT_FIXED  24u
#define WAL_SNAP_FIXED 20u
#define WAL_TMP        "seg.tmp"
#define WAL_SUFFIX     ".seg"

enum wal_kind {
    WAL_HEADER = 1,
    WAL_ENTRY = 2,
    WAL_HARD = 3,
    WAL_TRUNC = 4,
    WAL_POINT = 5,
    WAL_SNAP = 6,
    WAL_MARK = 7,
};

static const char WAL_MAGIC[8] = {'L', 'A', 'T', 'C', 'H', 'W', 'A', 'L'};

struct wal_seg {
    uint64_t seq;
    int fd;
    uint64_t size;      /* file size (allocated) */
    uint64_t tail;      /* where the next record goes */
    uint64_t max_index; /* highest entry index ever written here */
};

struct wal_ent {
    uint64_t term;
    uint64_t seq; /* segment */
    uint64_t off; /* file offset of the ENTRY body */
    uint32_t type;
    uint32_t len;
};

struct store_wal {
    char dir[STORE_DIR_MAX];
    bool no_sync;
    uint64_t segment_bytes;
    uint64_t prealloc_bytes;
    pthread_rwlock_t lock;
    int failed;

    struct wal_seg *segs;
    size_t nsegs, segs_cap;

    /* Entries base .. base + n - 1, at ents[off .. off + n). */
    struct wal_ent *ents;
    size_t ents_off, ents_n, ents_cap;
    uint64_t base;
    uint64_t gap_floor; /* replay only: entries up to here were in unlinked segments */

    uint64_t point_index, point_term;
    struct store_hard_state hs;
    struct store_snap_meta snap;
    bool mark;
    uint64_t mark_index, mark_term;

    uint8_t *buf; /* the record being built */
    size_t buf_len, buf_cap;
    uint64_t syncs;
};

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

static uint64_t pad8(uint64_t n)
{
    return (n + 7u) & ~(uint64_t)7u;
}

static void seg_path(const struct store_wal *w, uint64_t seq, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016" PRIx64 WAL_SUFFIX, w->dir, seq);
}

static uint32_t rec_crc(uint64_t seq, uint64_t off, const uint8_t *rec, uint32_t len)
{
    uint8_t pre[16];
    store__put_le64(pre, seq);
    store__put_le64(pre + 8, off);
    uint32_t crc = latch_crc32c(0, pre, sizeof(pre));
    return latch_crc32c(crc, rec + WAL_REC_HDR, len - WAL_REC_HDR);
}

static uint32_t
ent_crc(uint64_t index, uint64_t term, uint32_t type, const uint8_t *d, uint32_t len)
{
    uint8_t h[20];
    store__put_le64(h, index);
    store__put_le64(h + 8, term);
    store__put_le32(h + 16, type);
    uint32_t crc = latch_crc32c(0, h, sizeof(h));
    return len > 0 ? latch_crc32c(crc, d, len) : crc;
}

static uint64_t last_index(const struct store_wal *w)
{
    return w->base + w->ents_n - 1;
}

static struct wal_ent *ent_at(struct store_wal *w, uint64_t index)
{
    LATCH_ASSERT(index >= w->base && index - w->base < w->ents_n);
    return &w->ents[w->ents_off + (size_t)(index - w->base)];
}

static struct wal_seg *seg_find(struct store_wal *w, uint64_t seq)
{
    for (size_t i = w->nsegs; i > 0; i--) {
        if (w->segs[i - 1].seq == seq) {
            return &w->segs[i - 1];
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Applying a record (open and write alike)                                           */
/* ---------------------------------------------------------------------------------- */

static int ents_push(struct store_wal *w, const struct wal_ent *e)
{
    if (w->ents_off + w->ents_n == w->ents_cap) {
        if (w->ents_off > 0) {
            memmove(w->ents, w->ents + w->ents_off, w->ents_n * sizeof(*w->ents));
            w->ents_off = 0;
        }
        if (w->ents_n == w->ents_cap) {
            size_t cap = w->ents_cap < 256 ? 256 : w->ents_cap * 2;
            struct wal_ent *p = realloc(w->ents, cap * sizeof(*p));
            if (p == NULL) {
                return LATCH_ENOMEM;
            }
            w->ents = p;
            w->ents_cap = cap;
        }
    }
    w->ents[w->ents_off + w->ents_n++] = *e;
    return 0;
}

/* Drops every entry at or below index. */
static void ents_drop_to(struct store_wal *w, uint64_t index)
{
    if (index < w->base) {
        return;
    }
    uint64_t k = index - w->base + 1;
    if (k >= w->ents_n) {
        w->ents_off = 0;
        w->ents_n = 0;
        w->base = index + 1;
        return;
    }
    w->ents_off += (size_t)k;
    w->ents_n -= (size_t)k;
    w->base += k;
}

/* Applies the items of one verified record of segment sg. body_off is the file offset of
 * body[0]. LATCH_ECORRUPT for an item that does not parse (a valid CRC over bad items means
 * a writer bug or a deliberate forgery: never guessed around). */
static int apply_record(struct store_wal *w,
                        struct wal_seg *sg,
                        uint64_t body_off,
                        const uint8_t *body,
                        size_t len,
                        bool first_in_segment)
{
    size_t pos = 0;
    bool first = true;
    while (pos < len) {
        if (len - pos < WAL_ITEM_HDR) {
            return LATCH_ECORRUPT;
        }
        uint8_t kind = body[pos];
        uint32_t blen = store__get_le32(body + pos + 4);
        const uint8_t *b = body + pos + WAL_ITEM_HDR;
        if (blen > len - pos - WAL_ITEM_HDR) {
            return LATCH_ECORRUPT;
        }
        if (first_in_segment && first && kind != WAL_HEADER) {
            return LATCH_EFORMAT;
        }
        switch (kind) {
        case WAL_HEADER:
            if (!(first_in_segment && first) || blen != 24 || memcmp(b, WAL_MAGIC, 8) != 0) {
                return LATCH_EFORMAT;
            }
            if (store__get_le32(b + 8) > STORE_WAL_VERSION || store__get_le32(b + 8) == 0) {
                return LATCH_EFORMAT;
            }
            if (store__get_le64(b + 16) != sg->seq) {
                return LATCH_ECORRUPT;
            }
            break;
        case WAL_ENTRY: {
            if (blen < WAL_ENT_FIXED) {
                return LATCH_ECORRUPT;
            }
            struct wal_ent e = {.term = store__get_le64(b + 8),
                                .seq = sg->seq,
                                .off = body_off + pos + WAL_ITEM_HDR,
                                .type = store__get_le32(b + 16),
                                .len = blen - WAL_ENT_FIXED};
            uint64_t index = store__get_le64(b);
            if (index == 0 || index <= last_index(w)) {
                return LATCH_ECORRUPT; /* an overwrite always follows a TRUNC */
            }
            if (index > last_index(w) + 1) {
                /* The entries in between were in unlinked segments: a later point must
                 * cover them (checked at the end of the replay). */
                w->gap_floor = index - 1 > w->gap_floor ? index - 1 : w->gap_floor;
                w->ents_off = 0;
                w->ents_n = 0;
                w->base = index;
            }
            int rc = ents_push(w, &e);
            if (rc != 0) {
                return rc;
            }
            sg->max_index = index > sg->max_index ? index : sg->max_index;
            break;
        }
        case WAL_HARD:
            if (blen != 24) {
                return LATCH_ECORRUPT;
            }
            w->hs.term = store__get_le64(b);
            w->hs.vote = store__get_le64(b + 8);
            w->hs.commit = store__get_le64(b + 16);
            break;
        case WAL_TRUNC: {
            if (blen != 8) {
                return LATCH_ECORRUPT;
            }
            uint64_t index = store__get_le64(b);
            if (index == 0) {
                return LATCH_ECORRUPT;
            }
            if (index <= w->base) {
                w->ents_off = 0;
                w->ents_n = 0;
                w->base = index;
            } else if (index - w->base < w->ents_n) {
                w->ents_n = (size_t)(index - w->base);
            }
            break;
        }
        case WAL_POINT:
            if (blen != 16) {
                return LATCH_ECORRUPT;
            }
            w->point_index = store__get_le64(b);
            w->point_term = store__get_le64(b + 8);
            ents_drop_to(w, w->point_index);
            break;
        case WAL_SNAP: {
            if (blen < WAL_SNAP_FIXED) {
                return LATCH_ECORRUPT;
            }
            uint32_t cl = store__get_le32(b + 16);
            if (cl > STORE_CONF_BYTES_MAX || blen != WAL_SNAP_FIXED + cl) {
                return LATCH_ECORRUPT;
            }
            w->snap.index = store__get_le64(b);
            w->snap.term = store__get_le64(b + 8);
            w->snap.conf_len = cl;
            memcpy(w->snap.conf, b + WAL_SNAP_FIXED, cl);
            break;
        }
        case WAL_MARK:
            if (blen != 24) {
                return LATCH_ECORRUPT;
            }
            w->mark = store__get_le32(b) != 0;
            w->mark_index = store__get_le64(b + 8);
            w->mark_term = store__get_le64(b + 16);
            break;
        default:
            return LATCH_ECORRUPT;
        }
        first = false;
        pos += WAL_ITEM_HDR + blen;
    }
    return first ? LATCH_ECORRUPT : 0; /* a record holds at least one item */
}

/* ---------------------------------------------------------------------------------- */
/* Building and writing records                                                       */
/* ---------------------------------------------------------------------------------- */

static int buf_reserve(struct store_wal *w, size_t more)
{
    if (w->buf_len + more > w->buf_cap) {
        size_t cap = w->buf_cap < 4096 ? 4096 : w->buf_cap;
        while (cap < w->buf_len + more) {
            cap *= 2;
        }
        uint8_t *p = realloc(w->buf, cap);
        if (p == NULL) {
            return LATCH_ENOMEM;
        }
        w->buf = p;
        w->buf_cap = cap;
    }
    return 0;
}

static void rec_begin(struct store_wal *w)
{
    w->buf_len = WAL_REC_HDR;
}

/* Appends an item header; returns where body_len bytes of body go (NULL: no memory). */
static uint8_t *rec_item(struct store_wal *w, enum wal_kind kind, size_t body_len)
{
    if (buf_reserve(w, WAL_ITEM_HDR + body_len) != 0) {
        return NULL;
    }
    uint8_t *p = w->buf + w->buf_len;
    memset(p, 0, WAL_ITEM_HDR);
    p[0] = (uint8_t)kind;
    store__put_le32(p + 4, (uint32_t)body_len);
    w->buf_len += WAL_ITEM_HDR + body_len;
    return p + WAL_ITEM_HDR;
}

static int item_u64s(struct store_wal *w, enum wal_kind kind, const uint64_t *v, size_t n)
{
    uint8_t *b = rec_item(w, kind, n * 8);
    if (b == NULL) {
        return LATCH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        store__put_le64(b + 8 * i, v[i]);
    }
    return 0;
}

static int item_hard(struct store_wal *w, const struct store_hard_state *hs)
{
    uint64_t v[3] = {hs->term, hs->vote, hs->commit};
    return item_u64s(w, WAL_HARD, v, 3);
}

static int item_point(struct store_wal *w, uint64_t index, uint64_t term)
{
    uint64_t v[2] = {index, term};
    return item_u64s(w, WAL_POINT, v, 2);
}

static int item_snap(struct store_wal *w, const struct store_snap_meta *m)
{
    LATCH_ASSERTF(m->conf_len <= STORE_CONF_BYTES_MAX, "conf_len %u", m->conf_len);
    uint8_t *b = rec_item(w, WAL_SNAP, WAL_SNAP_FIXED + m->conf_len);
    if (b == NULL) {
        return LATCH_ENOMEM;
    }
    store__put_le64(b, m->index);
    store__put_le64(b + 8, m->term);
    store__put_le32(b + 16, m->conf_len);
    memcpy(b + WAL_SNAP_FIXED, m->conf, m->conf_len);
    return 0;
}

static int item_mark(struct store_wal *w, bool set, uint64_t index, uint64_t term)
{
    uint8_t *b = rec_item(w, WAL_MARK, 24);
    if (b == NULL) {
        return LATCH_ENOMEM;
    }
    store__put_le32(b, set ? 1u : 0u);
    store__put_le32(b + 4, 0);
    store__put_le64(b + 8, index);
    store__put_le64(b + 16, term);
    return 0;
}

static int item_entry(struct store_wal *w, const struct store_entry *e)
{
    uint8_t *b = rec_item(w, WAL_ENTRY, WAL_ENT_FIXED + (size_t)e->len);
    if (b == NULL) {
        return LATCH_ENOMEM;
    }
    store__put_le64(b, e->index);
    store__put_le64(b + 8, e->term);
    store__put_le32(b + 16, e->type);
    store__put_le32(b + 20, ent_crc(e->index, e->term, e->type, e->data, e->len));
    if (e->len > 0) {
        memcpy(b + WAL_ENT_FIXED, e->data, e->len);
    }
    return 0;
}

/* Pads the record and fills its header for (seq, off). Returns the padded length. */
static size_t rec_seal(struct store_wal *w, uint64_t seq, uint64_t off)
{
    size_t len = w->buf_len;
    LATCH_ASSERTF(len > WAL_REC_HDR && len <= UINT32_MAX, "record of %zu bytes", len);
    size_t padded = (size_t)pad8(len);
    if (buf_reserve(w, padded - len) != 0) {
        padded = len; /* cannot happen: buf_cap is a multiple of 8 >= len */
    }
    memset(w->buf + len, 0, padded - len);
    store__put_le32(w->buf, (uint32_t)len);
    store__put_le32(w->buf + 4, rec_crc(seq, off, w->buf, (uint32_t)len));
    return padded;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return LATCH_EIO;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Reserves [off, off + n) by writing zeros (see the top of the file). */
static int zero_fill(int fd, uint64_t off, uint64_t n)
{
    static const uint8_t zeros[65536];
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
        int rc = pwrite_all(fd, zeros, k, off);
        if (rc != 0) {
            return rc;
        }
        off += k;
        n -= k;
    }
    return 0;
}

static int dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return LATCH_EIO;
    }
    int rc = fsync(fd) == 0 ? 0 : LATCH_EIO;
    close(fd);
    return rc;
}

static int wal_fail(struct store_wal *w, int err, const char *what)
{
    if (w->failed == 0) {
        w->failed = err;
        latch_log(LATCH_LOG_ERROR, "wal %s: %s failed (%s); no more writes until reopened", w->dir,
                  what, latch_error_name(err));
    }
    return w->failed;
}

static int segs_reserve(struct store_wal *w)
{
    if (w->nsegs == w->segs_cap) {
        size_t cap = w->segs_cap < 8 ? 8 : w->segs_cap * 2;
        struct wal_seg *p = realloc(w->segs, cap * sizeof(*p));
        if (p == NULL) {
            return LATCH_ENOMEM;
        }
        w->segs = p;
        w->segs_cap = cap;
    }
    return 0;
}

/*
 * Starts segment seq with a head record holding everything but the entries: written to
 * seg.tmp, synced, renamed, directory synced. The caller then writes to it.
 */
static int seg_start(struct store_wal *w, uint64_t seq)
{
    char tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
    pthread_rwlock_wrlock(&w->lock); /* readers may be looking at segs */
    int rc = segs_reserve(w);
    pthread_rwlock_unlock(&w->lock);
    if (rc != 0) {
        return rc;
    }
    rec_begin(w);
    uint8_t *h = rec_item(w, WAL_HEADER, 24);
    if (h == NULL) {
        return LATCH_ENOMEM;
    }
    memcpy(h, WAL_MAGIC, 8);
    store__put_le32(h + 8, STORE_WAL_VERSION);
    store__put_le32(h + 12, 0);
    store__put_le64(h + 16, seq);
    rc = item_point(w, w->point_index, w->point_term);
    rc = rc != 0 ? rc : item_hard(w, &w->hs);
    rc = rc != 0 || w->snap.index == 0 ? rc : item_snap(w, &w->snap);
    rc = rc != 0 || !w->mark ? rc : item_mark(w, true, w->mark_index, w->mark_term);
    if (rc != 0) {
        return rc;
    }
    size_t len = rec_seal(w, seq, 0);
    snprintf(tmp, sizeof(tmp), "%s/" WAL_TMP, w->dir);
    seg_path(w, seq, path, sizeof(path));
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return wal_fail(w, LATCH_EIO, "creating a segment");
    }
    uint64_t size = pad8(len > w->prealloc_bytes ? len : w->prealloc_bytes);
    rc = zero_fill(fd, 0, size);
    rc = rc != 0 ? rc : pwrite_all(fd, w->buf, len, 0);
    if (rc == 0 && !w->no_sync) {
        rc = fdatasync(fd) == 0 ? 0 : LATCH_EIO;
        w->syncs++;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = LATCH_EIO;
    }
    if (rc == 0 && !w->no_sync) {
        rc = dir_sync(w->dir);
        w->syncs++;
    }
    if (rc != 0) {
        close(fd);
        return wal_fail(w, rc, "starting a segment");
    }
    pthread_rwlock_wrlock(&w->lock);
    w->segs[w->nsegs++] =
        (struct wal_seg){.seq = seq, .fd = fd, .size = size, .tail = len, .max_index = 0};
    pthread_rwlock_unlock(&w->lock);
    return 0;
}

/* Writes the record built in w->buf at the tail of the newest segment (starting a new one
 * first when that is past segment_bytes), makes it durable with one fdatasync, then applies
 * it to memory under the exclusive lock. */
static int rec_write(struct store_wal *w)
{
    if (w->failed != 0) {
        return w->failed;
    }
    LATCH_ASSERT(w->nsegs > 0);
    if (w->segs[w->nsegs - 1].tail >= w->segment_bytes) {
        /* seg_start builds its head in w->buf: keep this record aside meanwhile. */
        uint8_t *saved = w->buf;
        size_t saved_len = w->buf_len, saved_cap = w->buf_cap;
        w->buf = NULL;
        w->buf_len = w->buf_cap = 0;
        int rc = seg_start(w, w->segs[w->nsegs - 1].seq + 1);
        free(w->buf);
        w->buf = saved;
        w->buf_len = saved_len;
        w->buf_cap = saved_cap;
        if (rc != 0) {
            return rc;
        }
    }
    struct wal_seg *sg = &w->segs[w->nsegs - 1];
    uint64_t off = sg->tail;
    size_t body_len = w->buf_len - WAL_REC_HDR;
    size_t len = rec_seal(w, sg->seq, off);
    if (off + len > sg->size) {
        uint64_t grow = pad8(len > w->prealloc_bytes ? len : w->prealloc_bytes);
        if (zero_fill(sg->fd, sg->size, grow) != 0) {
            return wal_fail(w, LATCH_EIO, "reserving segment space");
        }
        pthread_rwlock_wrlock(&w->lock); /* store_wal_file_bytes reads it */
        sg->size += grow;
        pthread_rwlock_unlock(&w->lock);
    }
    int rc = pwrite_all(sg->fd, w->buf, len, off);
    if (rc == 0 && !w->no_sync) {
        rc = fdatasync(sg->fd) == 0 ? 0 : LATCH_EIO;
        w->syncs++;
    }
    if (rc != 0) {
        return wal_fail(w, rc, "append");
    }
    pthread_rwlock_wrlock(&w->lock);
    rc = apply_record(w, sg, off + WAL_REC_HDR, w->buf + WAL_REC_HDR, body_len, false);
    sg->tail = off + len;
    pthread_rwlock_unlock(&w->lock);
    LATCH_ASSERTF(rc == 0, "wal %s: own record does not apply: %s", w->dir, latch_error_name(rc));
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Open                                                                               */
/* ---------------------------------------------------------------------------------- */

static bool rec_valid_at(const uint8_t *p, uint64_t size, uint64_t seq, uint64_t off)
{
    if (size - off < 16) {
        return false;
    }
    uint32_t len = store__get_le32(p + off);
    return len >= WAL_REC_HDR + WAL_ITEM_HDR && len <= size - off &&
           rec_crc(seq, off, p + off, len) == store__get_le32(p + off + 4);
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
    static const uint8_t zeros[65536];
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
        if (memcmp(p, zeros, k) != 0) {
            return false;
        }
        p += k;
        n -= k;
    }
    return true;
}

static int read_all(int fd, uint8_t *p, uint64_t n)
{
    uint64_t off = 0;
    while (off < n) {
        ssize_t k = pread(fd, p + off, (size_t)(n - off), (off_t)off);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return LATCH_EIO;
        }
        off += (uint64_t)k;
    }
    return 0;
}

/* Replays segment sg (already in w->segs). newest: a bad record may be a torn tail; *cut
 * gets its offset then (UINT64_MAX: none). */
static int seg_scan(struct store_wal *w,
                    struct wal_seg *sg,
                    bool newest,
                    uint64_t *cut,
                    char *errmsg,
                    size_t errmsg_size)
{
    char path[STORE_PATH_MAX];
    struct stat st;
    seg_path(w, sg->seq, path, sizeof(path));
    *cut = UINT64_MAX;
    if (fstat(sg->fd, &st) != 0) {
        errmsg_set(errmsg, errmsg_size, "%s: %s", path, strerror(errno));
        return LATCH_EIO;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t *p = malloc(size > 0 ? size : 1);
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = read_all(sg->fd, p, size);
    uint64_t pos = 0;
    while (rc == 0 && pos + WAL_REC_HDR <= size) {
        uint32_t len = store__get_le32(p + pos);
        if (len == 0 && all_zero(p + pos, size - pos)) {
            break; /* the clean end: reserved space never written */
        }
        if (!rec_valid_at(p, size, sg->seq, pos)) {
            uint64_t q = pos + 8;
            while (q < size && !rec_valid_at(p, size, sg->seq, q)) {
                q += 8;
            }
            if (pos == 0) {
                errmsg_set(errmsg, errmsg_size, "%s: the segment's first record is damaged", path);
                rc = LATCH_ECORRUPT;
            } else if (!newest || q < size) {
                errmsg_set(errmsg, errmsg_size,
                           "%s: damaged record at offset %" PRIu64 " before a valid one (%s)", path,
                           pos, q < size ? "later in the file" : "in a later segment");
                rc = LATCH_ECORRUPT;
            } else {
                *cut = pos; /* a torn tail: the last write never completed */
            }
            break;
        }
        rc = apply_record(w, sg, pos + WAL_REC_HDR, p + pos + WAL_REC_HDR, len - WAL_REC_HDR,
                          pos == 0);
        if (rc != 0) {
            errmsg_set(errmsg, errmsg_size, "%s: record at offset %" PRIu64 ": %s", path, pos,
                       rc == LATCH_EFORMAT ? "not a latch wal segment (bad header)"
                                           : "items do not parse");
            break;
        }
        pos += pad8(len);
    }
    if (rc == 0 && pos == 0) {
        errmsg_set(errmsg, errmsg_size, "%s: empty segment", path);
        rc = LATCH_ECORRUPT;
    }
    free(p);
    sg->size = size;
    sg->tail = pos;
    return rc;
}

static int seq_parse(const char *name, uint64_t *seq)
{
    size_t n = strlen(name);
    if (n != 16 + strlen(WAL_SUFFIX) || strcmp(name + 16, WAL_SUFFIX) != 0) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return -1;
        }
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return v == 0 ? -1 : 0;
}

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct wal_seg *)a)->seq, y = ((const struct wal_seg *)b)->seq;
    return x < y ? -1 : x > y;
}

static int dir_list(struct store_wal *w, char *errmsg, size_t errmsg_size)
{
    DIR *d = opendir(w->dir);
    struct dirent *de;
    int rc = 0;
    if (d == NULL) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot read: %s", w->dir, strerror(errno));
        return LATCH_EIO;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint64_t seq;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (strcmp(de->d_name, WAL_TMP) == 0) {
            char tmp[STORE_PATH_MAX];
            snprintf(tmp, sizeof(tmp), "%s/" WAL_TMP, w->dir);
            (void)unlink(tmp); /* a segment start that a crash cut short */
            continue;
        }
        if (seq_parse(de->d_name, &seq) != 0) {
            errmsg_set(errmsg, errmsg_size, "%s/%s: unknown file; not a latch wal (refusing it)",
                       w->dir, de->d_name);
            rc = LATCH_EFORMAT;
            break;
        }
        rc = segs_reserve(w);
        if (rc == 0) {
            w->segs[w->nsegs++] = (struct wal_seg){.seq = seq, .fd = -1};
        }
    }
    closedir(d);
    if (rc == 0 && w->nsegs > 1) {
        qsort(w->segs, w->nsegs, sizeof(*w->segs), seg_cmp);
    }
    return rc;
}

int store_wal_open(const struct store_wal_options *o,
                   struct store_wal **out,
                   char *errmsg,
                   size_t errmsg_size)
{
    errmsg_set(errmsg, errmsg_size, "%s", "");
    if (o == NULL || o->dir == NULL || strlen(o->dir) >= STORE_DIR_MAX) {
        return LATCH_EINVAL;
    }
    struct store_wal *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return LATCH_ENOMEM;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", o->dir);
    w->no_sync = o->no_sync;
    w->segment_bytes = o->segment_bytes != 0 ? o->segment_bytes : 64u << 20;
    w->prealloc_bytes = o->prealloc_bytes != 0 ? o->prealloc_bytes : 1u << 20;
    w->base = 1;
    if (pthread_rwlock_init(&w->lock, NULL) != 0) {
        free(w);
        return LATCH_ENOMEM;
    }
    int rc = 0;
    if (mkdir(w->dir, 0700) != 0 && errno != EEXIST) {
        errmsg_set(errmsg, errmsg_size, "%s: cannot create: %s", w->dir, strerror(errno));
        rc = LATCH_EIO;
    }
    rc = rc != 0 ? rc : dir_list(w, errmsg, errmsg_size);
    uint64_t cut = UINT64_MAX;
    for (size_t i = 0; rc == 0 && i < w->nsegs; i++) {
        char path[STORE_PATH_MAX];
        seg_path(w, w->segs[i].seq, path, sizeof(path));
        w->segs[i].fd = open(path, O_RDWR | O_CLOEXEC);
        if (w->segs[i].fd < 0) {
            errmsg_set(errmsg, errmsg_size, "%s: cannot open: %s", path, strerror(errno));
            rc = LATCH_EIO;
            break;
        }
        rc = seg_scan(w, &w->segs[i], i + 1 == w->nsegs, &cut, errmsg, errmsg_size);
    }
    if (rc == 0 && w->nsegs > 0) {
        if (w->gap_floor > w->point_index) {
            errmsg_set(errmsg, errmsg_size,
                       "%s: entries up to %" PRIu64 " are missing (compaction point %" PRIu64 ")",
                       w->dir, w->gap_floor, w->point_index);
            rc = LATCH_ECORRUPT;
        } else {
            ents_drop_to(w, w->point_index);
            if (w->ents_n == 0) {
                w->base = w->point_index + 1;
            } else if (w->base != w->point_index + 1) {
                errmsg_set(errmsg, errmsg_size, "%s: entries %" PRIu64 "..%" PRIu64 " are missing",
                           w->dir, w->point_index + 1, w->base - 1);
                rc = LATCH_ECORRUPT;
            }
        }
    }
    if (rc == 0 && cut != UINT64_MAX) {
        /* Every check passed: now cut the torn tail away (and let the next write reserve the
         * space again), so that nothing of it can ever be mistaken for a record. */
        struct wal_seg *sg = &w->segs[w->nsegs - 1];
        latch_log(LATCH_LOG_WARN,
                  "wal %s: segment %016" PRIx64 ": torn record at offset %" PRIu64
                  " (an append a crash cut short) removed",
                  w->dir, sg->seq, cut);
        if (ftruncate(sg->fd, (off_t)cut) != 0 || (!w->no_sync && fdatasync(sg->fd) != 0)) {
            errmsg_set(errmsg, errmsg_size, "%s: cannot cut a torn tail: %s", w->dir,
                       strerror(errno));
            rc = LATCH_EIO;
        }
        sg->size = cut;
        sg->tail = cut;
    }
    if (rc == 0 && w->nsegs == 0) {
        rc = seg_start(w, 1);
        if (rc != 0) {
            errmsg_set(errmsg, errmsg_size, "%s: cannot create the first segment", w->dir);
        }
    }
    if (rc != 0) {
        store_wal_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void store_wal_close(struct store_wal *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t i = 0; i < w->nsegs; i++) {
        if (w->segs[i].fd >= 0) {
            close(w->segs[i].fd);
        }
    }
    free(w->segs);
    free(w->ents);
    free(w->buf);
    pthread_rwlock_destroy(&w->lock);
    free(w);
}

/* ---------------------------------------------------------------------------------- */
/* Writes                                                                             */
/* ---------------------------------------------------------------------------------- */

/* store_log_append's checks: after the point and the snapshot, at most at last + 1,
 * contiguous, terms never going back; the hard state never going back. */
static int append_check(struct store_wal *w,
                        const struct store_entry *ents,
                        size_t n,
                        const struct store_hard_state *hs)
{
    if (n > 0) {
        uint64_t floor = w->snap.index > w->point_index ? w->snap.index : w->point_index;
        if (ents[0].index <= floor || ents[0].index > last_index(w) + 1) {
            return LATCH_EINVAL;
        }
        uint64_t prev_term =
            ents[0].index - 1 > w->point_index ? ent_at(w, ents[0].index - 1)->term : w->point_term;
        for (size_t i = 0; i < n; i++) {
            if (ents[i].index != ents[0].index + i || ents[i].term < prev_term) {
                return LATCH_EINVAL;
            }
            LATCH_ASSERT(ents[i].len == 0 || ents[i].data != NULL);
            prev_term = ents[i].term;
        }
    }
    if (hs != NULL && (hs->term < w->hs.term || hs->commit < w->hs.commit)) {
        return LATCH_EINVAL;
    }
    return 0;
}

int store_wal_append(struct store_wal *w,
                     const struct store_entry *entries,
                     size_t n,
                     const struct store_hard_state *hs)
{
    LATCH_ASSERT(w != NULL && (n == 0 || entries != NULL));
    if (n == 0 && hs == NULL) {
        return 0;
    }
    if (w->failed != 0) {
        return w->failed;
    }
    int rc = append_check(w, entries, n, hs);
    if (rc != 0) {
        return rc;
    }
    rec_begin(w);
    if (n > 0 && entries[0].index <= last_index(w)) {
        uint64_t v = entries[0].index;
        rc = item_u64s(w, WAL_TRUNC, &v, 1);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = item_entry(w, &entries[i]);
    }
    if (rc == 0 && hs != NULL) {
        rc = item_hard(w, hs);
    }
    return rc != 0 ? rc : rec_write(w);
}

/* Unlinks the oldest segments (never the newest) whose entries all lie at or below the
 * point: their other records are repeated at the head of every later segment. */
static void segs_drop(struct store_wal *w)
{
    size_t k = 0;
    while (k + 1 < w->nsegs && w->segs[k].max_index <= w->point_index) {
        k++;
    }
    if (k == 0) {
        return;
    }
    pthread_rwlock_wrlock(&w->lock);
    for (size_t i = 0; i < k; i++) {
        char path[STORE_PATH_MAX];
        seg_path(w, w->segs[i].seq, path, sizeof(path));
        close(w->segs[i].fd);
        if (unlink(path) != 0) {
            latch_log(LATCH_LOG_WARN, "%s: cannot unlink: %s", path, strerror(errno));
        }
    }
    memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
    w->nsegs -= k;
    pthread_rwlock_unlock(&w->lock);
}

int store_wal_compact(struct store_wal *w, uint64_t index)
{
    LATCH_ASSERT(w != NULL);
    if (w->failed != 0) {
        return w->failed;
    }
    if (index <= w->point_index) {
        return LATCH_ECOMPACTED;
    }
    if (index > last_index(w)) {
        return LATCH_EINVAL;
    }
    uint64_t term = ent_at(w, index)->term;
    LATCH_ASSERTF(term >= w->point_term, "term %" PRIu64 " at %" PRIu64 " below the point's", term,
                  index);
    rec_begin(w);
    int rc = item_point(w, index, term);
    rc = rc != 0 ? rc : rec_write(w);
    if (rc == 0) {
        segs_drop(w);
    }
    return rc;
}

int store_wal_install(struct store_wal *w, const struct store_snap_meta *m)
{
    LATCH_ASSERT(w != NULL && m != NULL);
    if (w->failed != 0) {
        return w->failed;
    }
    if (m->index < w->point_index) {
        return LATCH_EINVAL;
    }
    bool matches = m->index == w->point_index && m->term == w->point_term;
    if (m->index > w->point_index && m->index <= last_index(w)) {
        matches = ent_at(w, m->index)->term == m->term;
    }
    rec_begin(w);
    int rc = 0;
    if (!matches && w->ents_n > 0) {
        uint64_t v = w->base;
        rc = item_u64s(w, WAL_TRUNC, &v, 1);
    }
    rc = rc != 0 ? rc : item_point(w, m->index, m->term);
    rc = rc != 0 ? rc : item_snap(w, m);
    rc = rc != 0 ? rc : item_mark(w, false, 0, 0);
    if (rc == 0 && w->hs.commit < m->index) {
        struct store_hard_state hs = w->hs;
        hs.commit = m->index;
        rc = item_hard(w, &hs);
    }
    rc = rc != 0 ? rc : rec_write(w);
    if (rc == 0) {
        segs_drop(w);
    }
    return rc;
}

int store_wal_record_snapshot(struct store_wal *w, const struct store_snap_meta *m)
{
    LATCH_ASSERT(w != NULL && m != NULL);
    rec_begin(w);
    int rc = item_snap(w, m);
    return rc != 0 ? rc : rec_write(w);
}

int store_wal_install_mark(struct store_wal *w, const struct store_snap_meta *m)
{
    LATCH_ASSERT(w != NULL);
    rec_begin(w);
    int rc = m != NULL ? item_mark(w, true, m->index, m->term) : item_mark(w, false, 0, 0);
    return rc != 0 ? rc : rec_write(w);
}

/* ---------------------------------------------------------------------------------- */
/* Reads                                                                              */
/* ---------------------------------------------------------------------------------- */

int store_wal_hard_state(struct store_wal *w, struct store_hard_state *hs)
{
    pthread_rwlock_rdlock(&w->lock);
    *hs = w->hs;
    pthread_rwlock_unlock(&w->lock);
    return 0;
}

int store_wal_snapshot_meta(struct store_wal *w, struct store_snap_meta *out)
{
    pthread_rwlock_rdlock(&w->lock);
    memcpy(out, &w->snap, sizeof(*out));
    pthread_rwlock_unlock(&w->lock);
    return 0;
}

bool store_wal_install_marked(struct store_wal *w, uint64_t *index, uint64_t *term)
{
    pthread_rwlock_rdlock(&w->lock);
    bool set = w->mark;
    *index = w->mark_index;
    *term = w->mark_term;
    pthread_rwlock_unlock(&w->lock);
    return set;
}

uint64_t store_wal_first_index(struct store_wal *w)
{
    pthread_rwlock_rdlock(&w->lock);
    uint64_t v = w->point_index + 1;
    pthread_rwlock_unlock(&w->lock);
    return v;
}

uint64_t store_wal_last_index(struct store_wal *w)
{
    pthread_rwlock_rdlock(&w->lock);
    uint64_t v = last_index(w);
    pthread_rwlock_unlock(&w->lock);
    return v;
}

int store_wal_term(struct store_wal *w, uint64_t index, uint64_t *term_out)
{
    int rc = 0;
    pthread_rwlock_rdlock(&w->lock);
    if (index < w->point_index) {
        rc = LATCH_ECOMPACTED;
    } else if (index > last_index(w)) {
        rc = LATCH_EUNAVAILABLE;
    } else if (index == w->point_index) {
        *term_out = w->point_term;
    } else {
        *term_out = ent_at(w, index)->term;
    }
    pthread_rwlock_unlock(&w->lock);
    return rc;
}

/* Reads and verifies one entry into memory from a. */
static int ent_read(struct store_wal *w,
                    uint64_t index,
                    const struct wal_ent *e,
                    struct latch_arena *a,
                    struct store_entry *out)
{
    struct wal_seg *sg = seg_find(w, e->seq);
    if (sg == NULL) {
        return LATCH_ECORRUPT;
    }
    size_t n = WAL_ENT_FIXED + (size_t)e->len;
    uint8_t *p = latch_arena_alloc(a, n);
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(sg->fd, p + got, n - got, (off_t)(e->off + got));
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return LATCH_EIO;
        }
        got += (size_t)k;
    }
    out->index = store__get_le64(p);
    out->term = store__get_le64(p + 8);
    out->type = store__get_le32(p + 16);
    out->len = e->len;
    out->data = p + WAL_ENT_FIXED;
    if (out->index != index || out->term != e->term || out->type != e->type ||
        ent_crc(out->index, out->term, out->type, out->data, out->len) != store__get_le32(p + 20)) {
        latch_log(LATCH_LOG_ERROR,
                  "wal %s: entry %" PRIu64 " (segment %016" PRIx64 ", offset %" PRIu64
                  ") fails its checksum",
                  w->dir, index, e->seq, e->off);
        return LATCH_ECORRUPT;
    }
    return 0;
}

int store_wal_entries(struct store_wal *w,
                      uint64_t lo,
                      uint64_t hi,
                      uint64_t max_bytes,
                      struct latch_arena *a,
                      const struct store_entry **out,
                      size_t *count_out)
{
    LATCH_ASSERT(w != NULL && a != NULL && out != NULL && count_out != NULL);
    if (lo >= hi) {
        return LATCH_EINVAL;
    }
    int rc = 0;
    pthread_rwlock_rdlock(&w->lock);
    if (lo <= w->point_index) {
        rc = LATCH_ECOMPACTED;
    } else if (hi > last_index(w) + 1) {
        rc = LATCH_EUNAVAILABLE;
    }
    size_t count = 0;
    uint64_t bytes = 0;
    while (rc == 0 && lo + count < hi) {
        uint32_t len = ent_at(w, lo + count)->len;
        if (count > 0 && bytes + len > max_bytes) {
            break;
        }
        bytes += len;
        count++;
    }
    struct store_entry *v = rc == 0 ? latch_arena_alloc(a, count * sizeof(*v)) : NULL;
    rc = rc == 0 && v == NULL ? LATCH_ENOMEM : rc;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        rc = ent_read(w, lo + i, ent_at(w, lo + i), a, &v[i]);
    }
    pthread_rwlock_unlock(&w->lock);
    if (rc == 0) {
        *out = v;
        *count_out = count;
    }
    return rc;
}

uint64_t store_wal_file_bytes(struct store_wal *w)
{
    uint64_t n = 0;
    pthread_rwlock_rdlock(&w->lock);
    for (size_t i = 0; i < w->nsegs; i++) {
        n += w->segs[i].size;
    }
    pthread_rwlock_unlock(&w->lock);
    return n;
}

int store_wal_sync(struct store_wal *w)
{
    for (size_t i = 0; i < w->nsegs; i++) {
        if (fdatasync(w->segs[i].fd) != 0) {
            return LATCH_EIO;
        }
    }
    return dir_sync(w->dir);
}

uint64_t store_wal_syncs(struct store_wal *w)
{
    return w->syncs;
}

size_t store_wal_segments(struct store_wal *w)
{
    pthread_rwlock_rdlock(&w->lock);
    size_t n = w->nsegs;
    pthread_rwlock_unlock(&w->lock);
    return n;
}
