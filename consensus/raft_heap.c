/*
 * raft_heap.c — the injectable allocator and the per-cycle arena.
 *
 * The arena hands out blocks that never move (pointers into it are kept in messages and
 * entries until raft_advance) from a list of chunks; a reset frees every chunk but the
 * largest, which is kept for the next cycle so a steady workload allocates nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "raft_int.h"

#define ARENA_CHUNK_BYTES_MIN ((size_t)64 * 1024)

struct raft_arena_chunk {
    struct raft_arena_chunk *next;
    size_t used;
    size_t cap;
    /* payload follows, 8-byte aligned */
};

#define CHUNK_HEADER_BYTES ((sizeof(struct raft_arena_chunk) + 7u) & ~(size_t)7u)

void *raft__malloc(const struct raft_heap *heap, size_t size)
{
    if (heap != NULL && heap->malloc != NULL) {
        return heap->malloc(heap->data, size);
    }
    return malloc(size);
}

void *raft__realloc(const struct raft_heap *heap, void *ptr, size_t size)
{
    if (heap != NULL && heap->realloc != NULL) {
        return heap->realloc(heap->data, ptr, size);
    }
    return realloc(ptr, size);
}

void raft__free(const struct raft_heap *heap, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (heap != NULL && heap->free != NULL) {
        heap->free(heap->data, ptr);
        return;
    }
    free(ptr);
}

int raft__array_grow(
    const struct raft_heap *heap, void **arr, size_t *cap, size_t need, size_t elem_size)
{
    size_t c = *cap == 0 ? 16 : *cap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    while (c < need) {
        c *= 2;
    }
    p = raft__realloc(heap, *arr, c * elem_size);
    if (p == NULL) {
        return LATCH_ENOMEM;
    }
    *arr = p;
    *cap = c;
    return 0;
}

void raft__arena_init(struct raft_arena *a, const struct raft_heap *heap)
{
    memset(a, 0, sizeof(*a));
    a->heap = heap;
}

static uint8_t *chunk_payload(struct raft_arena_chunk *c)
{
    return (uint8_t *)c + CHUNK_HEADER_BYTES;
}

void *raft__arena_alloc(struct raft_arena *a, size_t size)
{
    struct raft_arena_chunk *c = a->head;
    size_t need = (size + 7u) & ~(size_t)7u;
    void *p;

    LATCH_ASSERT(size > 0);
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK_BYTES_MIN ? need : ARENA_CHUNK_BYTES_MIN;

        if (c == NULL && a->spare != NULL && a->spare->cap >= need) {
            c = a->spare;
            a->spare = NULL;
        } else {
            if (c != NULL && c->cap * 2 > cap && c->cap * 2 >= need) {
                cap = c->cap * 2; /* grow geometrically under a steady load */
            }
            c = raft__malloc(a->heap, CHUNK_HEADER_BYTES + cap);
            if (c == NULL) {
                return NULL;
            }
            c->cap = cap;
        }
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    p = chunk_payload(c) + c->used;
    c->used += need;
    a->bytes += need;
    LATCH_ASSERT(c->used <= c->cap);
    return p;
}

void raft__arena_reset(struct raft_arena *a)
{
    struct raft_arena_chunk *c = a->head;
    struct raft_arena_chunk *keep = a->spare;

    while (c != NULL) {
        struct raft_arena_chunk *next = c->next;

        if (keep == NULL || c->cap > keep->cap) {
            raft__free(a->heap, keep);
            keep = c;
        } else {
            raft__free(a->heap, c);
        }
        c = next;
    }
    a->head = NULL;
    a->spare = keep;
    a->bytes = 0;
}

void raft__arena_close(struct raft_arena *a)
{
    raft__arena_reset(a);
    raft__free(a->heap, a->spare);
    a->spare = NULL;
}
