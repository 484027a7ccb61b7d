/*
 * raft_log.c — one node's view of its log: persisted storage plus the entries appended
 * since the last advance ("unstable"), plus a restored snapshot waiting to be persisted.
 * See the layout and invariants in raft_int.h.
 */
#include <string.h>

#include "raft_int.h"

int raft__log_init(struct raft_log *l,
                   const struct raft_storage *st,
                   struct raft_arena *arena,
                   const struct raft_heap *heap)
{
    memset(l, 0, sizeof(*l));
    l->st = st;
    l->arena = arena;
    l->heap = heap;
    l->u_offset = st->last_index(st->data) + 1;
    LATCH_ASSERT(l->u_offset >= st->first_index(st->data));
    return 0;
}

void raft__log_close(struct raft_log *l)
{
    raft__free(l->heap, l->u_ents);
    raft__free(l->heap, l->snap_data);
    l->u_ents = NULL;
    l->snap_data = NULL;
}

raft_index raft__log_first_index(const struct raft_log *l)
{
    if (l->has_snap) {
        return l->snap.meta.index + 1;
    }
    return l->st->first_index(l->st->data);
}

raft_index raft__log_last_index(const struct raft_log *l)
{
    if (l->u_count > 0) {
        return l->u_offset + l->u_count - 1;
    }
    if (l->has_snap) {
        return l->snap.meta.index;
    }
    return l->st->last_index(l->st->data);
}

/* The last index that is persisted and not superseded by unstable entries. */
raft_index raft__log_stable_last(const struct raft_log *l)
{
    if (l->has_snap) {
        return l->snap.meta.index; /* not even the snapshot is persisted yet */
    }
    return l->u_count > 0 ? l->u_offset - 1 : l->st->last_index(l->st->data);
}

int raft__log_term(const struct raft_log *l, raft_index i, raft_term *term_out)
{
    if (l->u_count > 0 && i >= l->u_offset) {
        if (i > l->u_offset + l->u_count - 1) {
            return LATCH_EUNAVAILABLE;
        }
        *term_out = l->u_ents[i - l->u_offset].term;
        return 0;
    }
    if (l->has_snap) {
        if (i == l->snap.meta.index) {
            *term_out = l->snap.meta.term;
            return 0;
        }
        return i < l->snap.meta.index ? LATCH_ECOMPACTED : LATCH_EUNAVAILABLE;
    }
    if (i + 1 < l->st->first_index(l->st->data)) {
        return LATCH_ECOMPACTED;
    }
    if (i > l->st->last_index(l->st->data)) {
        return LATCH_EUNAVAILABLE;
    }
    return l->st->term(l->st->data, i, term_out);
}

raft_term raft__log_last_term(const struct raft_log *l)
{
    raft_term t = 0;
    int rv = raft__log_term(l, raft__log_last_index(l), &t);

    LATCH_ASSERTF(rv == 0, "term of the last index: %s", latch_error_name(rv));
    return t;
}

bool raft__log_match_term(const struct raft_log *l, raft_index i, raft_term t)
{
    raft_term have;

    return raft__log_term(l, i, &have) == 0 && have == t;
}

/* Paper §5.4.1: a log is at least as up to date when its last term is higher, or equal
 * with an index at least as high. */
bool raft__log_is_up_to_date(const struct raft_log *l, raft_index last, raft_term term)
{
    raft_term my_term = raft__log_last_term(l);

    return term > my_term || (term == my_term && last >= raft__log_last_index(l));
}

static int unstable_reserve(struct raft_log *l, size_t extra)
{
    void *ents = l->u_ents;
    int rv = raft__array_grow(l->heap, &ents, &l->u_cap, l->u_count + extra, sizeof(*l->u_ents));

    l->u_ents = ents;
    return rv;
}

/*
 * Appends copies of ents (consecutive, starting at or below last + 1), replacing any entry
 * at or after ents[0].index. Data is copied into the arena, which outlives every pointer
 * to it (raft_int.h). Errors: LATCH_ENOMEM, with the log unchanged.
 */
int raft__log_append(struct raft_log *l, const struct raft_entry *ents, size_t n)
{
    raft_index first;
    size_t k;
    size_t keep;

    if (n == 0) {
        return 0;
    }
    first = ents[0].index;
    LATCH_ASSERTF(first > l->committed, "append at %llu over commit %llu",
                  (unsigned long long)first, (unsigned long long)l->committed);
    LATCH_ASSERT(first <= raft__log_last_index(l) + 1);
    keep = first > l->u_offset ? (size_t)(first - l->u_offset) : 0;
    if (keep > l->u_count) {
        keep = l->u_count;
    }
    if (unstable_reserve(l, n) != 0) { /* room to stage n entries past the end */
        return LATCH_ENOMEM;
    }
    for (k = 0; k < n; k++) {
        struct raft_entry e = ents[k];

        LATCH_ASSERT(e.index == first + k);
        if (e.len > 0) {
            uint8_t *copy = raft__arena_alloc(l->arena, e.len);

            if (copy == NULL) {
                return LATCH_ENOMEM; /* nothing was replaced yet: entries go in below */
            }
            memcpy(copy, e.data, e.len);
            e.data = copy;
        } else {
            e.data = NULL;
        }
        l->u_ents[l->u_count + k] = e; /* staged past the end; committed below */
    }
    if (first < l->u_offset) {
        /* Storage entries from `first` on are superseded: the ready will truncate them. */
        LATCH_ASSERT(!l->has_snap);
        l->u_offset = first;
    }
    memmove(l->u_ents + keep, l->u_ents + l->u_count, n * sizeof(*l->u_ents));
    l->u_count = keep + n;
    return 0;
}

/*
 * The largest index <= index whose term is <= term (or the first index - 1): where a
 * rejected probe should resume so that one round trip skips a whole divergent term.
 */
raft_index
raft__log_find_conflict_by_term(const struct raft_log *l, raft_index index, raft_term term)
{
    raft_index floor = raft__log_first_index(l) - 1;
    raft_term t;

    if (index > raft__log_last_index(l)) {
        index = raft__log_last_index(l);
    }
    while (index > floor) {
        if (raft__log_term(l, index, &t) != 0 || t <= term) {
            break;
        }
        index--;
    }
    return index;
}

void raft__log_commit_to(struct raft_log *l, raft_index commit)
{
    if (commit <= l->committed) {
        return; /* commit never goes back (paper figure 2: commitIndex is monotonic) */
    }
    LATCH_ASSERTF(commit <= raft__log_last_index(l), "commit %llu beyond last index %llu",
                  (unsigned long long)commit, (unsigned long long)raft__log_last_index(l));
    l->committed = commit;
}

/*
 * Entries [lo, hi) up to max_bytes (at least one; never more than max_bytes otherwise),
 * copied headers in an arena array sized to what is returned; data pointers are borrowed
 * from storage or the arena until raft_advance(). Storage stops only at its byte limit
 * (struct raft_storage), so a short answer from it ends the run. Errors:
 * LATCH_ECOMPACTED, LATCH_EUNAVAILABLE, storage errors, LATCH_ENOMEM.
 */
int raft__log_entries(const struct raft_log *l,
                      raft_index lo,
                      raft_index hi,
                      uint64_t max_bytes,
                      struct raft_entry **out,
                      size_t *count_out)
{
    const struct raft_entry *se = NULL;
    struct raft_entry *arr;
    uint64_t bytes = 0;
    size_t sn = 0;
    size_t un = 0;
    raft_index i = lo;

    *out = NULL;
    *count_out = 0;
    if (lo >= hi) {
        return 0;
    }
    if (lo < raft__log_first_index(l)) {
        return LATCH_ECOMPACTED;
    }
    if (hi > raft__log_last_index(l) + 1) {
        return LATCH_EUNAVAILABLE;
    }
    if (!l->has_snap && i < l->u_offset) {
        raft_index shi = hi < l->u_offset ? hi : l->u_offset;
        int rv = l->st->entries(l->st->data, i, shi, max_bytes, &se, &sn);

        if (rv != 0) {
            return rv;
        }
        LATCH_ASSERTF(sn > 0 && sn <= shi - i, "storage returned %zu of [%llu, %llu)", sn,
                      (unsigned long long)i, (unsigned long long)shi);
        for (size_t k = 0; k < sn; k++) {
            LATCH_ASSERT(se[k].index == i + k);
            bytes += se[k].len;
        }
        i += sn;
        if (i < shi) {
            hi = i; /* the byte limit stopped storage: the run ends here */
        }
    }
    while (i + un < hi) {
        const struct raft_entry *e = &l->u_ents[i + un - l->u_offset];

        if (sn + un > 0 && bytes + e->len > max_bytes) {
            break;
        }
        bytes += e->len;
        un++;
    }
    arr = raft__arena_alloc(l->arena, (sn + un) * sizeof(*arr));
    if (arr == NULL) {
        return LATCH_ENOMEM; /* callers in the middle of a step assert (raft_int.h) */
    }
    if (sn > 0) {
        memcpy(arr, se, sn * sizeof(*arr));
    }
    if (un > 0) {
        memcpy(arr + sn, &l->u_ents[i - l->u_offset], un * sizeof(*arr));
    }
    *out = arr;
    *count_out = sn + un;
    return 0;
}

/*
 * Replaces the log with snap (thesis §5.3): everything up to snap->meta.index is covered,
 * later entries are discarded. The caller has checked that it is newer than commit.
 */
int raft__log_restore(struct raft_log *l, const struct raft_snapshot *snap)
{
    uint8_t *data = NULL;

    LATCH_ASSERT(snap->meta.index > l->committed);
    if (snap->len > 0) {
        data = raft__malloc(l->heap, snap->len);
        if (data == NULL) {
            return LATCH_ENOMEM;
        }
        memcpy(data, snap->data, snap->len);
    }
    raft__free(l->heap, l->snap_data);
    l->snap_data = data;
    l->snap = *snap;
    l->snap.data = data;
    l->has_snap = true;
    l->u_count = 0;
    l->u_offset = snap->meta.index + 1;
    l->committed = snap->meta.index;
    l->applied = snap->meta.index; /* the ready installs it before applying anything */
    return 0;
}

/* Everything rd handed out (snapshot, entries) is now persisted by the caller. */
void raft__log_stable(struct raft_log *l, const struct raft_ready *rd)
{
    if (rd->snapshot != NULL) {
        LATCH_ASSERT(l->has_snap);
        l->has_snap = false;
        raft__free(l->heap, l->snap_data);
        l->snap_data = NULL;
        memset(&l->snap, 0, sizeof(l->snap));
    }
    LATCH_ASSERT(!l->has_snap);
    LATCH_ASSERTF(rd->entries_count == l->u_count, "advance of %zu entries, %zu unstable",
                  rd->entries_count, l->u_count);
    l->u_count = 0;
    l->u_offset = l->st->last_index(l->st->data) + 1;
    LATCH_ASSERTF(
        rd->entries_count == 0 || l->u_offset == rd->entries[rd->entries_count - 1].index + 1,
        "storage last %llu after persisting up to %llu", (unsigned long long)(l->u_offset - 1),
        (unsigned long long)rd->entries[rd->entries_count - 1].index);
}

void raft__log_check(const struct raft_log *l)
{
    size_t k;

    LATCH_ASSERT(l->applied <= l->committed);
    LATCH_ASSERT(l->committed <= raft__log_last_index(l));
    LATCH_ASSERT(!l->has_snap || l->u_offset == l->snap.meta.index + 1);
    for (k = 0; k < l->u_count; k++) {
        LATCH_ASSERT(l->u_ents[k].index == l->u_offset + k);
        LATCH_ASSERT(k == 0 || l->u_ents[k].term >= l->u_ents[k - 1].term);
    }
}
