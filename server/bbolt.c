/*
 * bbolt.c — a bottom-up writer of bbolt database images (see bbolt.h).
 *
 * On-disk structures, little-endian as bbolt writes them on amd64 and arm64:
 *   page header (16 bytes): id u64, flags u16 (branch 0x01, leaf 0x02, meta 0x04,
 *                           freelist 0x10), count u16, overflow u32 (extra pages)
 *   leaf element (16):      flags u32 (0x01: the value is a bucket), pos u32 (from the
 *                           element to its key; the value follows the key), ksize, vsize
 *   branch element (16):    pos u32, ksize u32, pgid u64 (the child; key = its first key)
 *   bucket value:           root pgid u64 (0: inline, an empty page follows), sequence u64
 *   meta (64, after the page header): magic, version, page size, flags (u32 each), root
 *                           bucket (16), freelist pgid, high-water pgid, txid, checksum
 *                           (u64 each; FNV-1a 64 over the 56 bytes before it)
 */
#include "bbolt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latch_assert.h"
#include "latch_error.h"

#define PAGE        SRV_BBOLT_PAGE_BYTES
#define HDR         16u
#define ELEM        16u
#define F_BRANCH    0x01u
#define F_LEAF      0x02u
#define F_META      0x04u
#define F_FREELIST  0x10u
#define BUCKET_LEAF 0x01u
#define BUCKET_HDR  16u
#define FIRST_DATA  3u /* pages 0, 1: meta; 2: freelist */

/* A growable byte buffer. */
struct bb_bytes {
    uint8_t *p;
    size_t len, cap;
};

static int bytes_add(struct bb_bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (np == NULL) {
            return LATCH_ENOMEM;
        }
        b->p = np;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->len, p, n);
    }
    b->len += n;
    return 0;
}

/* One element of the page being built (leaf: key and value; branch: key and pgid). */
struct bb_elem {
    size_t off; /* of the key in the builder's data; the value follows it */
    uint32_t klen, vlen, flags;
    uint64_t pgid;
};

/* Elements of one page, or (for the levels above the leaves) a list of children. */
struct bb_list {
    struct bb_elem *v;
    size_t n, cap;
    struct bb_bytes data;
};

static int list_add(struct bb_list *l,
                    const void *key,
                    uint32_t klen,
                    const void *value,
                    uint32_t vlen,
                    uint32_t flags,
                    uint64_t pgid)
{
    if (l->n == l->cap) {
        size_t cap = l->cap > 0 ? l->cap * 2 : 64;
        struct bb_elem *nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return LATCH_ENOMEM;
        }
        l->v = nv;
        l->cap = cap;
    }
    struct bb_elem e = {
        .off = l->data.len, .klen = klen, .vlen = vlen, .flags = flags, .pgid = pgid};
    int rc = bytes_add(&l->data, key, klen);
    if (rc == 0) {
        rc = bytes_add(&l->data, value, vlen);
    }
    if (rc != 0) {
        return rc;
    }
    l->v[l->n++] = e;
    return 0;
}

static void list_clear(struct bb_list *l)
{
    l->n = 0;
    l->data.len = 0;
}

static void list_free(struct bb_list *l)
{
    free(l->v);
    free(l->data.p);
    memset(l, 0, sizeof(*l));
}

/* Bytes a page with l's elements needs: header, element table, keys and values. */
static size_t list_page_bytes(const struct bb_list *l)
{
    return HDR + l->n * ELEM + l->data.len;
}

struct bb_bucket {
    uint8_t name[255];
    uint8_t name_len;
    uint64_t root; /* 0: inline and empty */
};

struct srv_bbolt {
    int fd;
    uint64_t next_pgid;
    bool open; /* a bucket is being written */
    struct bb_bucket buckets[SRV_BBOLT_BUCKETS_MAX];
    size_t buckets_count;
    struct bb_list leaf;     /* the open bucket's current leaf page */
    struct bb_list level;    /* the open bucket's leaf pages: first key, pgid */
    struct bb_list next;     /* scratch while building branch levels */
    struct bb_list branch;   /* the branch page being built */
    struct bb_bytes last;    /* the open bucket's last key */
    struct bb_bytes scratch; /* one page image (with its overflow pages) */
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

int srv_bbolt_new(int fd, struct srv_bbolt **out)
{
    struct srv_bbolt *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return LATCH_ENOMEM;
    }
    w->fd = fd;
    w->next_pgid = FIRST_DATA;
    *out = w;
    return 0;
}

void srv_bbolt_free(struct srv_bbolt *w)
{
    if (w == NULL) {
        return;
    }
    list_free(&w->leaf);
    list_free(&w->level);
    list_free(&w->next);
    list_free(&w->branch);
    free(w->last.p);
    free(w->scratch.p);
    free(w);
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return errno == ENOSPC ? LATCH_ENOSPACE : LATCH_EIO;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* A zeroed scratch image of pages pages with its header set; *out points at it. */
static int page_begin(
    struct srv_bbolt *w, uint64_t pgid, uint16_t flags, uint16_t count, size_t pages, uint8_t **out)
{
    size_t bytes = pages * PAGE;
    w->scratch.len = 0;
    if (bytes > w->scratch.cap) {
        uint8_t *np = realloc(w->scratch.p, bytes);
        if (np == NULL) {
            return LATCH_ENOMEM;
        }
        w->scratch.p = np;
        w->scratch.cap = bytes;
    }
    uint8_t *p = w->scratch.p;
    memset(p, 0, bytes);
    put64(p, pgid);
    put16(p + 8, flags);
    put16(p + 10, count);
    put32(p + 12, (uint32_t)(pages - 1));
    *out = p;
    return 0;
}

/* Writes l as a leaf (flags F_LEAF) or branch page at the next free pgid; *pgid_out gets it. */
static int
page_write(struct srv_bbolt *w, const struct bb_list *l, uint16_t flags, uint64_t *pgid_out)
{
    size_t bytes = list_page_bytes(l);
    size_t pages = (bytes + PAGE - 1) / PAGE;
    uint64_t pgid = w->next_pgid;
    uint8_t *p;
    LATCH_ASSERTF(l->n > 0 && l->n <= UINT16_MAX, "elements %zu", l->n);
    int rc = page_begin(w, pgid, flags, (uint16_t)l->n, pages, &p);
    if (rc != 0) {
        return rc;
    }
    size_t data_at = HDR + l->n * ELEM;
    memcpy(p + data_at, l->data.p, l->data.len);
    for (size_t i = 0; i < l->n; i++) {
        const struct bb_elem *e = &l->v[i];
        uint8_t *el = p + HDR + i * ELEM;
        uint32_t pos = (uint32_t)(data_at + e->off - (HDR + i * ELEM));
        if (flags == F_LEAF) {
            put32(el, e->flags);
            put32(el + 4, pos);
            put32(el + 8, e->klen);
            put32(el + 12, e->vlen);
        } else {
            put32(el, pos);
            put32(el + 4, e->klen);
            put64(el + 8, e->pgid);
        }
    }
    rc = write_all(w->fd, p, pages * PAGE, pgid * PAGE);
    if (rc == 0) {
        w->next_pgid += pages;
        *pgid_out = pgid;
    }
    return rc;
}

/* Writes the current leaf page and lists it (first key, pgid) in w->level. */
static int leaf_flush(struct srv_bbolt *w)
{
    uint64_t pgid;
    int rc = page_write(w, &w->leaf, F_LEAF, &pgid);
    if (rc == 0) {
        rc = list_add(&w->level, w->leaf.data.p, w->leaf.v[0].klen, NULL, 0, 0, pgid);
    }
    list_clear(&w->leaf);
    return rc;
}

static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an > bn) - (an < bn);
}

int srv_bbolt_bucket_begin(struct srv_bbolt *w, const void *name, size_t name_len)
{
    if (w->open || name_len == 0 || name_len > 255) {
        return LATCH_EINVAL;
    }
    for (size_t i = 0; i < w->buckets_count; i++) {
        const struct bb_bucket *b = &w->buckets[i];
        if (b->name_len == name_len && memcmp(b->name, name, name_len) == 0) {
            return LATCH_EEXIST;
        }
    }
    if (w->buckets_count == SRV_BBOLT_BUCKETS_MAX) {
        return LATCH_ETOOBIG;
    }
    struct bb_bucket *b = &w->buckets[w->buckets_count];
    memset(b, 0, sizeof(*b));
    memcpy(b->name, name, name_len);
    b->name_len = (uint8_t)name_len;
    w->open = true;
    w->last.len = 0;
    list_clear(&w->leaf);
    list_clear(&w->level);
    return 0;
}

int srv_bbolt_put(
    struct srv_bbolt *w, const void *key, size_t key_len, const void *value, size_t value_len)
{
    if (!w->open || key_len == 0 || key_len > SRV_BBOLT_KEY_MAX) {
        return LATCH_EINVAL;
    }
    if (value_len > SRV_BBOLT_VALUE_MAX) {
        return LATCH_ETOOBIG;
    }
    bool first = w->leaf.n == 0 && w->level.n == 0;
    if (!first && key_cmp(key, key_len, w->last.p, w->last.len) <= 0) {
        return LATCH_EINVAL;
    }
    int rc = 0;
    if (w->leaf.n > 0 && list_page_bytes(&w->leaf) + ELEM + key_len + value_len > PAGE) {
        rc = leaf_flush(w);
    }
    if (rc == 0) {
        rc = list_add(&w->leaf, key, (uint32_t)key_len, value, (uint32_t)value_len, 0, 0);
    }
    if (rc == 0) {
        w->last.len = 0;
        rc = bytes_add(&w->last, key, key_len);
    }
    return rc;
}

/* Builds one branch level over w->level into w->next, then swaps them. */
static int branch_level(struct srv_bbolt *w)
{
    int rc = 0;
    list_clear(&w->next);
    list_clear(&w->branch);
    for (size_t i = 0; rc == 0 && i < w->level.n; i++) {
        const struct bb_elem *e = &w->level.v[i];
        const uint8_t *k = w->level.data.p + e->off;
        if (w->branch.n > 0 && list_page_bytes(&w->branch) + ELEM + e->klen > PAGE) {
            uint64_t pgid;
            rc = page_write(w, &w->branch, F_BRANCH, &pgid);
            if (rc == 0) {
                rc = list_add(&w->next, w->branch.data.p, w->branch.v[0].klen, NULL, 0, 0, pgid);
            }
            list_clear(&w->branch);
        }
        if (rc == 0) {
            rc = list_add(&w->branch, k, e->klen, NULL, 0, 0, e->pgid);
        }
    }
    if (rc == 0 && w->branch.n > 0) {
        uint64_t pgid;
        rc = page_write(w, &w->branch, F_BRANCH, &pgid);
        if (rc == 0) {
            rc = list_add(&w->next, w->branch.data.p, w->branch.v[0].klen, NULL, 0, 0, pgid);
        }
        list_clear(&w->branch);
    }
    struct bb_list t = w->level;
    w->level = w->next;
    w->next = t;
    return rc;
}

int srv_bbolt_bucket_end(struct srv_bbolt *w)
{
    if (!w->open) {
        return LATCH_EINVAL;
    }
    struct bb_bucket *b = &w->buckets[w->buckets_count];
    int rc = 0;
    if (w->leaf.n > 0) {
        rc = leaf_flush(w);
    }
    while (rc == 0 && w->level.n > 1) {
        rc = branch_level(w);
    }
    if (rc != 0) {
        return rc;
    }
    b->root = w->level.n == 1 ? w->level.v[0].pgid : 0;
    list_clear(&w->level);
    w->buckets_count++;
    w->open = false;
    return 0;
}

static int bucket_cmp(const void *a, const void *b)
{
    const struct bb_bucket *x = a, *y = b;
    return key_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* FNV-1a 64, bbolt's meta checksum. */
static uint64_t fnv64a(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int meta_write(struct srv_bbolt *w, uint64_t txid, uint64_t root)
{
    uint8_t *p;
    int rc = page_begin(w, txid % 2, F_META, 0, 1, &p);
    if (rc != 0) {
        return rc;
    }
    uint8_t *m = p + HDR;
    put32(m, SRV_BBOLT_MAGIC);
    put32(m + 4, SRV_BBOLT_VERSION);
    put32(m + 8, PAGE);
    put32(m + 12, 0);
    put64(m + 16, root);
    put64(m + 24, 0);
    put64(m + 32, 2); /* the freelist page */
    put64(m + 40, w->next_pgid);
    put64(m + 48, txid);
    put64(m + 56, fnv64a(m, 56));
    return write_all(w->fd, p, PAGE, (txid % 2) * PAGE);
}

int srv_bbolt_finish(struct srv_bbolt *w, uint64_t *size_out)
{
    if (w->open) {
        return LATCH_EINVAL;
    }
    qsort(w->buckets, w->buckets_count, sizeof(w->buckets[0]), bucket_cmp);
    /* The root bucket's leaf: one bucket entry per bucket. bbolt needs a real page here
     * (the root bucket is never inline), so it is written even with no bucket at all. */
    list_clear(&w->leaf);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < w->buckets_count; i++) {
        const struct bb_bucket *b = &w->buckets[i];
        uint8_t v[BUCKET_HDR + HDR] = {0};
        put64(v, b->root);
        uint32_t vlen = BUCKET_HDR;
        if (b->root == 0) {
            put16(v + BUCKET_HDR + 8, F_LEAF); /* the inline bucket's empty page */
            vlen += HDR;
        }
        rc = list_add(&w->leaf, b->name, b->name_len, v, vlen, BUCKET_LEAF, 0);
    }
    uint64_t root = 0;
    if (rc == 0 && w->leaf.n > 0) {
        rc = page_write(w, &w->leaf, F_LEAF, &root);
    } else if (rc == 0) {
        uint8_t *p;
        root = w->next_pgid;
        rc = page_begin(w, root, F_LEAF, 0, 1, &p);
        rc = rc != 0 ? rc : write_all(w->fd, p, PAGE, root * PAGE);
        w->next_pgid += rc == 0 ? 1 : 0;
    }
    list_clear(&w->leaf);
    uint8_t *p;
    if (rc == 0) {
        rc = page_begin(w, 2, F_FREELIST, 0, 1, &p);
    }
    if (rc == 0) {
        rc = write_all(w->fd, p, PAGE, 2 * PAGE);
    }
    if (rc == 0) {
        rc = meta_write(w, 0, root);
    }
    if (rc == 0) {
        rc = meta_write(w, 1, root);
    }
    if (rc == 0) {
        *size_out = w->next_pgid * PAGE;
    }
    return rc;
}
