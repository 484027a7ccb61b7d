/*
 * raft_memstore.c — an in-memory struct raft_storage (see raft_memstore.h).
 *
 * LAYOUT
 *
 * Entry headers sit in one array, ents, so that entries() can hand out a contiguous run
 * without copying. Compaction advances ents.head instead of moving memory; the dead prefix
 * is reclaimed by ms_vec_reserve() when the array would otherwise grow.
 *
 * Entry data sits in chunks: byte arenas filled in index order and freed whole once
 * compaction or truncation leaves no live entry in them. That gives one allocation per
 * chunk instead of one per entry, and, just as important, data pointers that never move:
 * the core keeps the data pointers of committed entries it read from us until
 * raft_advance(), while the same ready asks us to append, so appending must not relocate
 * the data of the entries it keeps (the headers it copies at once; see raft.h).
 *
 * INVARIANTS
 *
 *   1. offset <= snap.meta.index <= last_index, where offset is the compaction point (the
 *      last discarded index, whose term is offset_term) and last_index = offset + ents.count.
 *   2. Entry offset + 1 + k is ms_ents(ms)[k].
 *   3. Chunks are ordered by index. Chunk c holds the data of entries c.lo..c.hi in order
 *      (zero-length entries point at the chunk position where they were placed); the next
 *      chunk starts at c.hi + 1; the last chunk ends at last_index. Every live entry belongs
 *      to a chunk; the first chunk may also hold data of compacted entries.
 *   4. The configuration returned by initial_state is the one set by set_conf (or by a
 *      received snapshot), never derived from the log.
 *
 * first_index() is offset + 1. Between create_snapshot and compact the log still holds the
 * entries the snapshot covers, so the core may read them (etcd MemoryStorage does the same);
 * once compacted to the snapshot index, offset equals the snapshot index as raft.h states.
 *
 * OUT OF MEMORY: every mutation allocates first and changes state only after all its
 * allocations succeeded, so a LATCH_ENOMEM leaves the store as it was.
 */
#include "raft_memstore.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "raft_int.h"

/* Chunks start small, so that the thousands of short-lived stores of the simulator stay
 * cheap, and double up to a size where one allocation amortises over ~16k small entries. */
#define MS_CHUNK_MIN ((size_t)4096)
#define MS_CHUNK_MAX ((size_t)1 << 20)
#define MS_VEC_MIN   16

LATCH_STATIC_ASSERT(MS_CHUNK_MIN <= MS_CHUNK_MAX, "chunk sizes out of order");

struct ms_chunk {
    uint8_t *base; /* owned; NULL for an empty slot */
    size_t size;
    size_t used;
    raft_index lo; /* first entry whose data was placed here */
    raft_index hi; /* last entry whose data was placed here */
};

/* An array whose live elements are buf[head .. head + count). */
struct ms_vec {
    void *buf;
    size_t cap;
    size_t head;
    size_t count;
};

struct raft_memstore {
    struct raft_storage storage;
    const struct raft_heap *heap;
    struct raft_hard_state hs;
    struct raft_conf_state conf;
    raft_index offset;
    raft_term offset_term;
    struct ms_vec ents;   /* struct raft_entry */
    struct ms_vec chunks; /* struct ms_chunk */
    struct raft_snapshot_meta snap_meta;
    uint8_t *snap_data;
    size_t snap_len;
    size_t snap_cap;
};

/* The live entries (NULL before the first allocation: offsetting NULL is undefined). */
static struct raft_entry *ms_ents(const struct raft_memstore *ms)
{
    if (ms->ents.buf == NULL) {
        return NULL;
    }
    return (struct raft_entry *)ms->ents.buf + ms->ents.head;
}

static struct ms_chunk *ms_chunks(const struct raft_memstore *ms)
{
    if (ms->chunks.buf == NULL) {
        return NULL;
    }
    return (struct ms_chunk *)ms->chunks.buf + ms->chunks.head;
}

static raft_index ms_last(const struct raft_memstore *ms)
{
    return ms->offset + ms->ents.count;
}

/* The live entry at index i; the caller has checked offset < i <= last. */
static struct raft_entry *ms_entry_at(const struct raft_memstore *ms, raft_index i)
{
    LATCH_ASSERTF(i > ms->offset, "index %llu, offset %llu", (unsigned long long)i,
                  (unsigned long long)ms->offset);
    LATCH_ASSERTF(i <= ms_last(ms), "index %llu, last %llu", (unsigned long long)i,
                  (unsigned long long)ms_last(ms));
    return &ms_ents(ms)[i - ms->offset - 1];
}

#ifdef LATCH_DEBUG_CHECKS
/*
 * Checks invariants 1 to 3 after each mutation in debug and simulation builds. It walks the
 * chunks, not the entries, so that it stays cheap on long logs: per chunk it checks that
 * ranges are adjacent and that its first and last live entries lie inside it.
 */
static void ms_check(const struct raft_memstore *ms)
{
    LATCH_ASSERT(ms->offset <= ms->snap_meta.index && ms->snap_meta.index <= ms_last(ms));
    LATCH_ASSERT(ms->ents.head + ms->ents.count <= ms->ents.cap);
    const struct ms_chunk *c = ms_chunks(ms);
    size_t n = ms->chunks.count;
    LATCH_ASSERT(n > 0 ? c[n - 1].hi == ms_last(ms) : ms->ents.count == 0);
    for (size_t i = 0; i < n; i++) {
        LATCH_ASSERT(c[i].base != NULL && c[i].used <= c[i].size && c[i].lo <= c[i].hi);
        LATCH_ASSERT(i == 0 || c[i].lo == c[i - 1].hi + 1);
        if (c[i].lo > ms->offset) {
            LATCH_ASSERT(ms_entry_at(ms, c[i].lo)->data == c[i].base);
        }
        if (c[i].hi > ms->offset) {
            const struct raft_entry *e = ms_entry_at(ms, c[i].hi);
            LATCH_ASSERT(e->data >= c[i].base && e->data + e->len == c[i].base + c[i].used);
        }
    }
}
#define MS_CHECK(ms) ms_check(ms)
#else
#define MS_CHECK(ms) ((void)0)
#endif

/*
 * Ensures v can hold need elements from v->head on, keeping the first `keep` live ones
 * (which may exceed v->count: see ms_reserve_chunks). Slides the live run to the front when
 * that leaves at least two thirds of the array free, so that a slide costs at most half a
 * copy per element appended since the last one (compaction stays amortised O(1));
 * otherwise at least doubles. Errors: LATCH_ENOMEM (v unchanged).
 */
static int ms_vec_reserve(
    const struct raft_heap *heap, struct ms_vec *v, size_t elem_size, size_t keep, size_t need)
{
    LATCH_ASSERT(keep <= need);
    LATCH_ASSERT(v->head + keep <= v->cap);
    if (v->head + need <= v->cap) {
        return 0;
    }
    uint8_t *buf = v->buf;
    if (need <= v->cap / 3) {
        memmove(buf, buf + v->head * elem_size, keep * elem_size);
        v->head = 0;
        return 0;
    }
    /* At least double: reallocating at the same size would slide at malloc's cost. */
    size_t cap = v->cap < MS_VEC_MIN / 2 ? MS_VEC_MIN / 2 : v->cap;
    do {
        if (cap > SIZE_MAX / 2 / elem_size) {
            return LATCH_ENOMEM;
        }
        cap *= 2;
    } while (cap < need);
    uint8_t *fresh = raft__malloc(heap, cap * elem_size);
    if (fresh == NULL) {
        return LATCH_ENOMEM;
    }
    if (keep > 0) {
        memcpy(fresh, buf + v->head * elem_size, keep * elem_size);
    }
    raft__free(heap, buf);
    v->buf = fresh;
    v->cap = cap;
    v->head = 0;
    return 0;
}

static void ms_release_chunk(struct raft_memstore *ms, struct ms_chunk *c)
{
    LATCH_ASSERT(c->base != NULL);
    raft__free(ms->heap, c->base);
    c->base = NULL;
}

static void ms_release_all_chunks(struct raft_memstore *ms)
{
    struct ms_chunk *c = ms_chunks(ms);
    for (size_t i = 0; i < ms->chunks.count; i++) {
        ms_release_chunk(ms, &c[i]);
    }
    ms->chunks.count = 0;
    ms->chunks.head = 0;
}

/*
 * Fills *out with an empty chunk for an entry of len bytes, following one after a chunk of
 * prev_size bytes (0: none). Errors: LATCH_ENOMEM.
 */
static int
ms_chunk_new(struct raft_memstore *ms, size_t len, size_t prev_size, struct ms_chunk *out)
{
    LATCH_ASSERT(len <= RAFT_ENTRY_BYTES_MAX);
    memset(out, 0, sizeof(*out));
    size_t size = prev_size > MS_CHUNK_MAX / 2 ? MS_CHUNK_MAX : prev_size * 2;
    size = size < MS_CHUNK_MIN ? MS_CHUNK_MIN : size;
    size = size < len ? len : size;
    out->base = raft__malloc(ms->heap, size);
    if (out->base == NULL) {
        return LATCH_ENOMEM;
    }
    out->size = size;
    LATCH_ASSERT(out->used == 0);
    return 0;
}

/* Where an append cuts the log: what stays of the chunks once entries >= cut go. */
struct ms_cut {
    raft_index index;   /* first index removed (and first index appended) */
    size_t keep_chunks; /* chunks holding entries before index */
    size_t tail_used;   /* bytes the last kept chunk keeps */
};

static void ms_plan_cut(const struct raft_memstore *ms, raft_index index, struct ms_cut *cut)
{
    const struct ms_chunk *c = ms_chunks(ms);
    size_t m = ms->chunks.count;
    while (m > 0 && c[m - 1].lo >= index) {
        m--;
    }
    cut->index = index;
    cut->keep_chunks = m;
    cut->tail_used = 0;
    if (m == 0) {
        return;
    }
    cut->tail_used = c[m - 1].used;
    if (c[m - 1].hi >= index) {
        /* Invariant 3: index lives in this chunk and everything after its data is later. */
        const uint8_t *data = ms_entry_at(ms, index)->data;
        LATCH_ASSERT(data >= c[m - 1].base && data <= c[m - 1].base + c[m - 1].used);
        cut->tail_used = (size_t)(data - c[m - 1].base);
    }
}

/* Gives back the chunks ms_reserve_chunks allocated beyond chunks.count. */
static void ms_drop_reserved(struct raft_memstore *ms, size_t added)
{
    struct ms_chunk *c = ms_chunks(ms) + ms->chunks.count;
    for (size_t i = 0; i < added; i++) {
        ms_release_chunk(ms, &c[i]);
    }
}

/*
 * Allocates the chunks that entries[0..n) will need once the log is cut at cut->index, and
 * parks them after the live chunks (beyond chunks.count, so nothing changes yet).
 * ms_place_entries() later fills them with the same fitting rule. bytes is the sum of the
 * entries' lengths. Errors: LATCH_ENOMEM (nothing allocated).
 */
static int ms_reserve_chunks(struct raft_memstore *ms,
                             const struct ms_cut *cut,
                             const struct raft_entry *entries,
                             size_t n,
                             uint64_t bytes,
                             size_t *added_out)
{
    bool have = cut->keep_chunks > 0;
    size_t prev_size = have ? ms_chunks(ms)[cut->keep_chunks - 1].size : 0;
    size_t room = have ? prev_size - cut->tail_used : 0;
    size_t added = 0;
    *added_out = 0;
    if (have && bytes <= room) {
        return 0; /* the common case: the whole batch fits the tail chunk */
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = entries[i].len;
        if (have && len <= room) {
            room -= len;
            continue;
        }
        size_t live = ms->chunks.count + added;
        int rv = ms_vec_reserve(ms->heap, &ms->chunks, sizeof(struct ms_chunk), live, live + 1);
        struct ms_chunk chunk;
        if (rv == 0) {
            rv = ms_chunk_new(ms, len, prev_size, &chunk);
        }
        if (rv != 0) {
            ms_drop_reserved(ms, added);
            return rv;
        }
        ms_chunks(ms)[live] = chunk;
        added++;
        have = true;
        prev_size = chunk.size;
        room = chunk.size - len;
    }
    *added_out = added;
    return 0;
}

/* Removes entries >= cut->index and slides the reserved chunks into place. Cannot fail. */
static void ms_apply_cut(struct raft_memstore *ms, const struct ms_cut *cut, size_t added)
{
    struct ms_chunk *c = ms_chunks(ms);
    size_t m = cut->keep_chunks;
    LATCH_ASSERT(m <= ms->chunks.count);
    for (size_t i = m; i < ms->chunks.count; i++) {
        ms_release_chunk(ms, &c[i]);
    }
    memmove(&c[m], &c[ms->chunks.count], added * sizeof(*c));
    ms->chunks.count = m + added;
    if (m > 0) {
        c[m - 1].used = cut->tail_used;
        if (c[m - 1].hi >= cut->index) {
            c[m - 1].hi = cut->index - 1;
        }
    }
    LATCH_ASSERT(cut->index > ms->offset && cut->index <= ms_last(ms) + 1);
    ms->ents.count = (size_t)(cut->index - ms->offset - 1);
}

/*
 * Copies entries[0..n) after the cut, filling the kept tail chunk and then the chunks
 * ms_reserve_chunks allocated, with the same rule it used to count them.
 */
static void ms_place_entries(struct raft_memstore *ms,
                             size_t first_new_chunk,
                             const struct raft_entry *entries,
                             size_t n)
{
    struct ms_chunk *c = ms_chunks(ms);
    struct ms_chunk *cur = first_new_chunk > 0 ? &c[first_new_chunk - 1] : NULL;
    size_t next = first_new_chunk;
    /* The fill point lives in locals: to the compiler, memcpy might write to *cur. */
    uint8_t *pos = cur != NULL ? cur->base + cur->used : NULL;
    size_t room = cur != NULL ? cur->size - cur->used : 0;
    struct raft_entry *dst = ms_ents(ms) + ms->ents.count;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        if (cur == NULL || e->len > room) {
            if (cur != NULL) {
                cur->used = cur->size - room;
            }
            LATCH_ASSERT(next < ms->chunks.count);
            cur = &c[next++];
            LATCH_ASSERT(cur->used == 0);
            cur->lo = e->index;
            pos = cur->base;
            room = cur->size;
        }
        if (e->len > 0) {
            memcpy(pos, e->data, e->len);
        }
        dst[i] = *e;
        dst[i].data = pos;
        pos += e->len;
        room -= e->len;
        cur->hi = e->index;
    }
    cur->used = cur->size - room;
    LATCH_ASSERTF(next == ms->chunks.count, "used %zu of %zu chunks", next, ms->chunks.count);
    ms->ents.count += n;
}

/* Validates an append and sums its data bytes into *bytes_out. Errors: LATCH_EINVAL. */
static int ms_check_append(const struct raft_memstore *ms,
                           const struct raft_entry *entries,
                           size_t n,
                           uint64_t *bytes_out)
{
    if (entries[0].index <= ms->snap_meta.index || entries[0].index > ms_last(ms) + 1) {
        return LATCH_EINVAL;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        if (e->index != entries[0].index + i) {
            return LATCH_EINVAL;
        }
        LATCH_ASSERTF(e->len <= RAFT_ENTRY_BYTES_MAX, "entry len %u", e->len);
        LATCH_ASSERT(e->len == 0 || e->data != NULL);
        bytes += e->len;
    }
    *bytes_out = bytes;
    return 0;
}

int raft_memstore_append(struct raft_memstore *ms, const struct raft_entry *entries, size_t n)
{
    LATCH_ASSERT(ms != NULL);
    LATCH_ASSERT(n == 0 || entries != NULL);
    if (n == 0) {
        return 0;
    }
    uint64_t bytes;
    int rv = ms_check_append(ms, entries, n, &bytes);
    if (rv != 0) {
        return rv;
    }
    /* Allocate everything first (entry slots, then chunks) so ENOMEM changes nothing. */
    size_t kept = (size_t)(entries[0].index - ms->offset - 1);
    size_t need = kept + n > ms->ents.count ? kept + n : ms->ents.count;
    rv = ms_vec_reserve(ms->heap, &ms->ents, sizeof(struct raft_entry), ms->ents.count, need);
    if (rv != 0) {
        return rv;
    }
    struct ms_cut cut;
    ms_plan_cut(ms, entries[0].index, &cut);
    size_t added;
    rv = ms_reserve_chunks(ms, &cut, entries, n, bytes, &added);
    if (rv != 0) {
        return rv;
    }
    ms_apply_cut(ms, &cut, added);
    ms_place_entries(ms, cut.keep_chunks, entries, n);
    MS_CHECK(ms);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Storage callbacks                                                                  */
/* ---------------------------------------------------------------------------------- */

static int ms_initial_state(void *data, struct raft_hard_state *hs, struct raft_conf_state *conf)
{
    const struct raft_memstore *ms = data;
    LATCH_ASSERT(ms != NULL);
    LATCH_ASSERT(hs != NULL && conf != NULL);
    *hs = ms->hs;
    *conf = ms->conf;
    return 0;
}

static int ms_entries(void *data,
                      raft_index lo,
                      raft_index hi,
                      uint64_t max_bytes,
                      const struct raft_entry **entries_out,
                      size_t *count_out)
{
    const struct raft_memstore *ms = data;
    LATCH_ASSERTF(lo <= hi, "lo %llu > hi %llu", (unsigned long long)lo, (unsigned long long)hi);
    if (lo <= ms->offset) {
        return LATCH_ECOMPACTED;
    }
    if (hi > ms_last(ms) + 1) {
        return LATCH_EUNAVAILABLE;
    }
    size_t want = (size_t)(hi - lo);
    const struct raft_entry *e = ms_ents(ms); /* NULL only while nothing was ever stored */
    if (e != NULL) {
        e += lo - ms->offset - 1;
    }
    size_t count = 0;
    uint64_t bytes = 0;
    /* etcd's limitSize: the first entry always goes; later ones only while within budget. */
    while (count < want) {
        bytes += e[count].len;
        if (count > 0 && bytes > max_bytes) {
            break;
        }
        count++;
    }
    *entries_out = e;
    *count_out = count;
    return 0;
}

static int ms_term(void *data, raft_index i, raft_term *term_out)
{
    const struct raft_memstore *ms = data;
    LATCH_ASSERT(term_out != NULL);
    if (i < ms->offset) {
        return LATCH_ECOMPACTED;
    }
    if (i > ms_last(ms)) {
        return LATCH_EUNAVAILABLE;
    }
    /* Range checked above; the core asks for terms on every message, so no ms_entry_at. */
    *term_out = i == ms->offset ? ms->offset_term : ms_ents(ms)[i - ms->offset - 1].term;
    return 0;
}

static raft_index ms_first_index(void *data)
{
    const struct raft_memstore *ms = data;
    return ms->offset + 1;
}

static raft_index ms_last_index(void *data)
{
    const struct raft_memstore *ms = data;
    return ms_last(ms);
}

static int ms_snapshot(void *data, struct raft_snapshot *snap_out)
{
    const struct raft_memstore *ms = data;
    raft_memstore_snapshot(ms, snap_out);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Lifecycle, hard state, snapshots                                                   */
/* ---------------------------------------------------------------------------------- */

int raft_memstore_new(const struct raft_heap *heap, struct raft_memstore **out)
{
    LATCH_ASSERT(out != NULL);
    struct raft_memstore *ms = raft__malloc(heap, sizeof(*ms));
    if (ms == NULL) {
        return LATCH_ENOMEM;
    }
    memset(ms, 0, sizeof(*ms));
    ms->heap = heap;
    ms->storage.data = ms;
    ms->storage.initial_state = ms_initial_state;
    ms->storage.entries = ms_entries;
    ms->storage.term = ms_term;
    ms->storage.first_index = ms_first_index;
    ms->storage.last_index = ms_last_index;
    ms->storage.snapshot = ms_snapshot;
    *out = ms;
    return 0;
}

void raft_memstore_free(struct raft_memstore *ms)
{
    if (ms == NULL) {
        return;
    }
    ms_release_all_chunks(ms);
    raft__free(ms->heap, ms->chunks.buf);
    raft__free(ms->heap, ms->ents.buf);
    raft__free(ms->heap, ms->snap_data);
    raft__free(ms->heap, ms);
}

const struct raft_storage *raft_memstore_storage(struct raft_memstore *ms)
{
    LATCH_ASSERT(ms != NULL);
    LATCH_ASSERT(ms->storage.data == ms);
    return &ms->storage;
}

static bool ms_is_empty(const struct raft_memstore *ms)
{
    return ms->offset == 0 && ms->ents.count == 0 && ms->snap_meta.index == 0 && ms->hs.term == 0 &&
           ms->hs.vote == RAFT_NONE && ms->hs.commit == 0;
}

static bool ms_voters_valid(const struct raft_conf_state *conf)
{
    if (conf->voters_count == 0 || conf->learners_count != 0) {
        return false;
    }
    for (uint32_t i = 0; i < conf->voters_count; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (conf->voters[i] == conf->voters[j]) {
                return false;
            }
        }
    }
    return true;
}

/* Encodes one ADD_VOTER per voter into buf (sized by the caller) and points ents at them. */
static int ms_encode_bootstrap(const struct raft_conf_state *conf,
                               uint8_t *buf,
                               size_t size,
                               struct raft_entry *ents)
{
    size_t off = 0;
    for (uint32_t i = 0; i < conf->voters_count; i++) {
        struct raft_conf_change cc = {RAFT_CC_ADD_VOTER, conf->voters[i], NULL, 0};
        size_t len;
        int rv = raft_conf_change_encode(&cc, buf + off, size - off, &len);
        if (rv != 0) {
            return rv;
        }
        LATCH_ASSERT(len <= size - off);
        ents[i] =
            (struct raft_entry){1, (raft_index)i + 1, RAFT_ENTRY_CONF, (uint32_t)len, buf + off};
        off += len;
    }
    return 0;
}

int raft_memstore_bootstrap(struct raft_memstore *ms, const struct raft_conf_state *conf)
{
    LATCH_ASSERT(ms != NULL && conf != NULL);
    LATCH_ASSERT(conf->voters_count <= RAFT_MEMBERS_MAX);
    /* Learners are not bootstrapped: raft_memstore.h promises ADD_VOTER entries only, and
     * silently dropping them would hide a caller's mistake. */
    if (!ms_is_empty(ms) || !ms_voters_valid(conf)) {
        return LATCH_EINVAL;
    }
    struct raft_entry ents[RAFT_MEMBERS_MAX];
    size_t size = 0;
    for (uint32_t i = 0; i < conf->voters_count; i++) {
        struct raft_conf_change cc = {RAFT_CC_ADD_VOTER, conf->voters[i], NULL, 0};
        size += raft_conf_change_size(&cc);
    }
    uint8_t *buf = raft__malloc(ms->heap, size);
    if (buf == NULL) {
        return LATCH_ENOMEM;
    }
    int rv = ms_encode_bootstrap(conf, buf, size, ents);
    if (rv == 0) {
        rv = raft_memstore_append(ms, ents, conf->voters_count);
    }
    raft__free(ms->heap, buf);
    if (rv == 0) {
        ms->hs = (struct raft_hard_state){1, RAFT_NONE, conf->voters_count};
    }
    return rv;
}

void raft_memstore_set_hard_state(struct raft_memstore *ms, const struct raft_hard_state *hs)
{
    LATCH_ASSERT(ms != NULL && hs != NULL);
    /* Terms only rise. One vote per term is left to the simulator's checker, which must see
     * a violation (its bug-injection tests) rather than this store aborting first. */
    LATCH_ASSERTF(hs->term >= ms->hs.term, "term %llu -> %llu", (unsigned long long)ms->hs.term,
                  (unsigned long long)hs->term);
    ms->hs = *hs;
}

void raft_memstore_set_conf(struct raft_memstore *ms, const struct raft_conf_state *conf)
{
    LATCH_ASSERT(ms != NULL && conf != NULL);
    LATCH_ASSERT(conf->voters_count <= RAFT_MEMBERS_MAX);
    ms->conf = *conf;
}

/* Replaces the snapshot bytes, reusing the buffer when it is large enough. Errors:
 * LATCH_ENOMEM (old bytes kept). data may point into the current bytes. */
static int ms_set_snap_data(struct raft_memstore *ms, const void *data, size_t len)
{
    LATCH_ASSERT(len == 0 || data != NULL);
    if (len > ms->snap_cap) {
        uint8_t *fresh = raft__malloc(ms->heap, len);
        if (fresh == NULL) {
            return LATCH_ENOMEM;
        }
        memcpy(fresh, data, len);
        raft__free(ms->heap, ms->snap_data);
        ms->snap_data = fresh;
        ms->snap_cap = len;
    } else if (len > 0) {
        memmove(ms->snap_data, data, len);
    }
    ms->snap_len = len;
    return 0;
}

int raft_memstore_apply_snapshot(struct raft_memstore *ms, const struct raft_snapshot *snap)
{
    LATCH_ASSERT(ms != NULL && snap != NULL);
    LATCH_ASSERT(snap->meta.conf.voters_count <= RAFT_MEMBERS_MAX);
    if (snap->meta.index <= ms->snap_meta.index) {
        return LATCH_ESNAPOLD;
    }
    int rv = ms_set_snap_data(ms, snap->data, snap->len);
    if (rv != 0) {
        return rv;
    }
    ms_release_all_chunks(ms);
    ms->ents.count = 0;
    ms->ents.head = 0;
    ms->offset = snap->meta.index;
    ms->offset_term = snap->meta.term;
    ms->snap_meta = snap->meta;
    ms->conf = snap->meta.conf;
    MS_CHECK(ms);
    return 0;
}

int raft_memstore_create_snapshot(struct raft_memstore *ms,
                                  raft_index index,
                                  const struct raft_conf_state *conf,
                                  const void *data,
                                  size_t len)
{
    LATCH_ASSERT(ms != NULL && conf != NULL);
    LATCH_ASSERT(conf->voters_count <= RAFT_MEMBERS_MAX);
    if (index <= ms->snap_meta.index) {
        return LATCH_ESNAPOLD;
    }
    if (index > ms_last(ms)) {
        return LATCH_EUNAVAILABLE;
    }
    /* Invariant 1: index > snap index >= offset, so the entry is still in the log. */
    raft_term term = ms_entry_at(ms, index)->term;
    int rv = ms_set_snap_data(ms, data, len);
    if (rv != 0) {
        return rv;
    }
    ms->snap_meta.index = index;
    ms->snap_meta.term = term;
    ms->snap_meta.conf = *conf;
    MS_CHECK(ms);
    return 0;
}

int raft_memstore_compact(struct raft_memstore *ms, raft_index index)
{
    LATCH_ASSERT(ms != NULL);
    if (index <= ms->offset) {
        return LATCH_ECOMPACTED;
    }
    if (index > ms->snap_meta.index) {
        return LATCH_EINVAL;
    }
    LATCH_ASSERT(index <= ms_last(ms));
    ms->offset_term = ms_entry_at(ms, index)->term;
    size_t drop = (size_t)(index - ms->offset);
    ms->offset = index;
    ms->ents.head += drop;
    ms->ents.count -= drop;
    struct ms_chunk *c = ms_chunks(ms);
    size_t dead = 0;
    while (dead < ms->chunks.count && c[dead].hi <= index) {
        ms_release_chunk(ms, &c[dead]);
        dead++;
    }
    ms->chunks.head += dead;
    ms->chunks.count -= dead;
    MS_CHECK(ms);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Inspection                                                                         */
/* ---------------------------------------------------------------------------------- */

raft_index raft_memstore_first_index(const struct raft_memstore *ms)
{
    LATCH_ASSERT(ms != NULL);
    return ms->offset + 1;
}

raft_index raft_memstore_last_index(const struct raft_memstore *ms)
{
    LATCH_ASSERT(ms != NULL);
    return ms_last(ms);
}

void raft_memstore_hard_state(const struct raft_memstore *ms, struct raft_hard_state *hs)
{
    LATCH_ASSERT(ms != NULL && hs != NULL);
    *hs = ms->hs;
}

void raft_memstore_conf(const struct raft_memstore *ms, struct raft_conf_state *conf)
{
    LATCH_ASSERT(ms != NULL && conf != NULL);
    *conf = ms->conf;
}

const struct raft_entry *raft_memstore_entry(const struct raft_memstore *ms, raft_index i)
{
    LATCH_ASSERT(ms != NULL);
    if (i <= ms->offset || i > ms_last(ms)) {
        return NULL;
    }
    return ms_entry_at(ms, i);
}

void raft_memstore_snapshot(const struct raft_memstore *ms, struct raft_snapshot *snap)
{
    LATCH_ASSERT(ms != NULL && snap != NULL);
    snap->meta = ms->snap_meta;
    snap->data = ms->snap_data;
    snap->len = ms->snap_len;
}
