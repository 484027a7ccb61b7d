/*
 * test_bbolt.c — the bbolt image writer (server/bbolt.h), read back by a small reader of
 * bbolt's format written here: meta pages and their FNV-1a checksums, the root bucket,
 * inline empty buckets, leaf and branch pages with overflow, every page below the
 * high-water mark referenced exactly once (bbolt's tx.Check), keys in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bbolt.h"
#include "latch_error.h"

#define PAGE SRV_BBOLT_PAGE_BYTES

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* The image in memory, and which pages the walk reached. */
struct img {
    uint8_t *p;
    size_t size;
    uint64_t pages;
    uint8_t *seen;
};

static struct img img_load(int fd, uint64_t size)
{
    struct img m = {.size = (size_t)size, .pages = size / PAGE};
    assert_int_equal(size % PAGE, 0);
    m.p = malloc(m.size);
    m.seen = calloc(m.pages, 1);
    assert_non_null(m.p);
    assert_int_equal(pread(fd, m.p, m.size, 0), (ssize_t)m.size);
    return m;
}

static void img_free(struct img *m)
{
    free(m->p);
    free(m->seen);
}

static uint64_t fnv64a(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Checks both meta pages; returns the root bucket's page. */
static uint64_t check_meta(struct img *m)
{
    for (uint64_t id = 0; id < 2; id++) {
        const uint8_t *pg = m->p + id * PAGE;
        assert_int_equal(get64(pg), id);
        assert_int_equal(get16(pg + 8), 0x04);
        const uint8_t *meta = pg + 16;
        assert_int_equal(get32(meta), SRV_BBOLT_MAGIC);
        assert_int_equal(get32(meta + 4), 2);
        assert_int_equal(get32(meta + 8), PAGE);
        assert_int_equal(get64(meta + 32), 2);        /* freelist */
        assert_int_equal(get64(meta + 40), m->pages); /* high-water mark */
        assert_int_equal(get64(meta + 48), id);       /* txid */
        assert_int_equal(get64(meta + 56), fnv64a(meta, 56));
        m->seen[id] = 1;
    }
    const uint8_t *fl = m->p + 2 * PAGE;
    assert_int_equal(get16(fl + 8), 0x10);
    assert_int_equal(get16(fl + 10), 0);
    m->seen[2] = 1;
    return get64(m->p + 16 + 16);
}

/* Marks page id and its overflow pages as reached (each exactly once). */
static const uint8_t *page_at(struct img *m, uint64_t id)
{
    assert_true(id >= 3 && id < m->pages);
    const uint8_t *pg = m->p + id * PAGE;
    assert_int_equal(get64(pg), id);
    uint32_t overflow = get32(pg + 12);
    assert_true(id + overflow < m->pages);
    for (uint64_t i = id; i <= id + overflow; i++) {
        assert_int_equal(m->seen[i], 0);
        m->seen[i] = 1;
    }
    return pg;
}

/* What a walk of one bucket collects. */
struct walk {
    size_t count;
    uint8_t last[64];
    size_t last_len;
    uint64_t value_bytes;
    void (*visit)(struct walk *w, const uint8_t *k, uint32_t kl, const uint8_t *v, uint32_t vl);
};

static int cmp_keys(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an > bn) - (an < bn);
}

static void walk_page(struct img *m, uint64_t id, struct walk *w, int depth)
{
    assert_true(depth < 8);
    const uint8_t *pg = page_at(m, id);
    uint16_t flags = get16(pg + 8), count = get16(pg + 10);
    assert_true(count > 0);
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *el = pg + 16 + (size_t)i * 16;
        if (flags == 0x01) {
            walk_page(m, get64(el + 8), w, depth + 1);
            continue;
        }
        assert_int_equal(flags, 0x02);
        const uint8_t *k = el + get32(el + 4);
        uint32_t kl = get32(el + 8), vl = get32(el + 12);
        assert_true(w->count == 0 || cmp_keys(w->last, w->last_len, k, kl) < 0);
        assert_true(kl <= sizeof(w->last));
        memcpy(w->last, k, kl);
        w->last_len = kl;
        w->count++;
        w->value_bytes += vl;
        if (w->visit != NULL) {
            w->visit(w, k, kl, k + kl, vl);
        }
    }
}

/* Walks every bucket of the root; returns the number of buckets. names gets them joined. */
static size_t walk_root(struct img *m, uint64_t root, char *names, size_t cap, struct walk *ws)
{
    const uint8_t *pg = page_at(m, root);
    assert_int_equal(get16(pg + 8), 0x02);
    uint16_t count = get16(pg + 10);
    names[0] = '\0';
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *el = pg + 16 + (size_t)i * 16;
        assert_int_equal(get32(el), 1); /* a bucket */
        const uint8_t *k = el + get32(el + 4);
        uint32_t kl = get32(el + 8), vl = get32(el + 12);
        snprintf(names + strlen(names), cap - strlen(names), "%s%.*s", i > 0 ? "," : "", (int)kl,
                 (const char *)k);
        uint64_t broot = get64(k + kl);
        if (broot == 0) {
            assert_int_equal(vl, 32); /* header + empty inline page */
            assert_int_equal(get16(k + kl + 16 + 8), 0x02);
            assert_int_equal(get16(k + kl + 16 + 10), 0);
        } else {
            assert_int_equal(vl, 16);
            walk_page(m, broot, &ws[i], 0);
        }
    }
    for (uint64_t id = 0; id < m->pages; id++) {
        assert_int_equal(m->seen[id], 1); /* no page unreachable and unfreed */
    }
    return count;
}

static int tmp_fd(void)
{
    char path[] = "/tmp/latch-bbolt-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_bbolt_empty_file_has_meta_freelist_and_root(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct srv_bbolt *w;
    uint64_t size = 0;
    assert_int_equal(srv_bbolt_new(fd, &w), 0);
    assert_int_equal(srv_bbolt_finish(w, &size), 0);
    srv_bbolt_free(w);
    assert_int_equal(size, 4 * PAGE);
    struct img m = img_load(fd, size);
    uint64_t root = check_meta(&m);
    assert_int_equal(root, 3);
    const uint8_t *pg = page_at(&m, root);
    assert_int_equal(get16(pg + 10), 0);
    img_free(&m);
    close(fd);
}

static uint32_t big_seen;

static void
visit_values(struct walk *w, const uint8_t *k, uint32_t kl, const uint8_t *v, uint32_t vl)
{
    (void)w;
    if (kl == 3 && memcmp(k, "big", 3) == 0) {
        for (uint32_t i = 0; i < vl; i++) {
            assert_int_equal(v[i], (uint8_t)(i * 31));
        }
        big_seen = vl;
        return;
    }
    /* "k%08u" -> "v%08u" padded to 100 bytes */
    assert_int_equal(vl, 100);
    assert_memory_equal(v + 1, k + 1, kl - 1);
}

static void test_bbolt_many_keys_build_branches_and_overflow(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct srv_bbolt *w;
    assert_int_equal(srv_bbolt_new(fd, &w), 0);
    /* Buckets in any order; the root lists them sorted. */
    assert_int_equal(srv_bbolt_bucket_begin(w, "meta", 4), 0);
    assert_int_equal(srv_bbolt_bucket_end(w), 0);
    assert_int_equal(srv_bbolt_bucket_begin(w, "key", 3), 0);
    uint8_t value[100];
    enum { KEYS = 20000 };
    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 31);
    }
    assert_int_equal(srv_bbolt_put(w, "big", 3, big, sizeof(big)), 0);
    for (unsigned i = 0; i < KEYS; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%08u", i);
        memset(value, 'x', sizeof(value));
        memcpy(value, k, strlen(k));
        value[0] = 'v';
        assert_int_equal(srv_bbolt_put(w, k, strlen(k), value, sizeof(value)), 0);
    }
    assert_int_equal(srv_bbolt_put(w, "k00000000", 9, "", 0), LATCH_EINVAL); /* order */
    assert_int_equal(srv_bbolt_bucket_end(w), 0);
    assert_int_equal(srv_bbolt_bucket_begin(w, "key", 3), LATCH_EEXIST);
    assert_int_equal(srv_bbolt_bucket_begin(w, "alarm", 5), 0);
    assert_int_equal(srv_bbolt_put(w, "a", 1, NULL, 0), 0);
    assert_int_equal(srv_bbolt_bucket_end(w), 0);
    uint64_t size;
    assert_int_equal(srv_bbolt_finish(w, &size), 0);
    srv_bbolt_free(w);

    struct img m = img_load(fd, size);
    uint64_t root = check_meta(&m);
    char names[128];
    struct walk ws[3] = {{0}, {.visit = visit_values}, {0}};
    assert_int_equal(walk_root(&m, root, names, sizeof(names), ws), 3);
    assert_string_equal(names, "alarm,key,meta");
    assert_int_equal(ws[0].count, 1);
    assert_int_equal(ws[1].count, KEYS + 1);
    assert_int_equal(big_seen, sizeof(big));
    assert_int_equal(ws[1].value_bytes, sizeof(big) + (uint64_t)KEYS * 100);
    img_free(&m);
    close(fd);
}

static void test_bbolt_refuses_misuse(void **state)
{
    (void)state;
    int fd = tmp_fd();
    struct srv_bbolt *w;
    uint64_t size;
    assert_int_equal(srv_bbolt_new(fd, &w), 0);
    assert_int_equal(srv_bbolt_put(w, "a", 1, "b", 1), LATCH_EINVAL); /* no bucket */
    assert_int_equal(srv_bbolt_bucket_end(w), LATCH_EINVAL);
    assert_int_equal(srv_bbolt_bucket_begin(w, "", 0), LATCH_EINVAL);
    assert_int_equal(srv_bbolt_bucket_begin(w, "b", 1), 0);
    assert_int_equal(srv_bbolt_bucket_begin(w, "c", 1), LATCH_EINVAL); /* one open */
    assert_int_equal(srv_bbolt_put(w, "", 0, "b", 1), LATCH_EINVAL);
    assert_int_equal(srv_bbolt_put(w, "a", 1, "b", 1), 0);
    assert_int_equal(srv_bbolt_put(w, "a", 1, "b", 1), LATCH_EINVAL); /* duplicate */
    assert_int_equal(srv_bbolt_finish(w, &size), LATCH_EINVAL);       /* still open */
    srv_bbolt_free(w);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bbolt_empty_file_has_meta_freelist_and_root),
        cmocka_unit_test(test_bbolt_many_keys_build_branches_and_overflow),
        cmocka_unit_test(test_bbolt_refuses_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
