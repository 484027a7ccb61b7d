/*
 * latch_arena.c — the chunk list behind latch_arena.h.
 */
#include "latch_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"

#define ARENA_CHUNK_BYTES_DEFAULT ((size_t)16 * 1024)

struct latch_arena_chunk {
    struct latch_arena_chunk *next;
    size_t used;
    size_t cap;
    /* payload follows, 8-byte aligned */
};

#define CHUNK_HEADER_BYTES ((sizeof(struct latch_arena_chunk) + 7u) & ~(size_t)7u)

static unsigned char *chunk_payload(struct latch_arena_chunk *c)
{
    return (unsigned char *)c + CHUNK_HEADER_BYTES;
}

void latch_arena_init(struct latch_arena *a, size_t chunk_bytes_min)
{
    a->head = NULL;
    a->chunk_bytes_min = chunk_bytes_min == 0 ? ARENA_CHUNK_BYTES_DEFAULT : chunk_bytes_min;
    a->allocated_bytes = 0;
}

void latch_arena_close(struct latch_arena *a)
{
    struct latch_arena_chunk *c = a->head;

    while (c != NULL) {
        struct latch_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->allocated_bytes = 0;
}

void latch_arena_reset(struct latch_arena *a)
{
    struct latch_arena_chunk *keep = NULL;
    struct latch_arena_chunk *c = a->head;

    while (c != NULL) {
        struct latch_arena_chunk *next = c->next;
        if (keep == NULL || c->cap > keep->cap) {
            free(keep);
            keep = c;
        } else {
            free(c);
        }
        c = next;
    }
    if (keep != NULL) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->allocated_bytes = 0;
}

void *latch_arena_alloc(struct latch_arena *a, size_t size)
{
    size_t need = (size + 7u) & ~(size_t)7u;
    struct latch_arena_chunk *c = a->head;

    LATCH_ASSERTF(need >= size, "arena block of %zu bytes overflows", size);
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > a->chunk_bytes_min ? need : a->chunk_bytes_min;
        if (cap > SIZE_MAX - CHUNK_HEADER_BYTES) {
            return NULL;
        }
        c = malloc(CHUNK_HEADER_BYTES + cap);
        if (c == NULL) {
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        /* A big one-off block goes behind the current chunk so its free room is not lost. */
        if (a->head != NULL && need > a->chunk_bytes_min) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = chunk_payload(c) + c->used;
    c->used += need;
    LATCH_ASSERT(c->used <= c->cap);
    a->allocated_bytes += need;
    return p;
}

void *latch_arena_calloc(struct latch_arena *a, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    void *p = latch_arena_alloc(a, count * size);
    if (p != NULL) {
        memset(p, 0, count * size);
    }
    return p;
}

void *latch_arena_dup(struct latch_arena *a, const void *p, size_t len)
{
    void *q = latch_arena_alloc(a, len);
    if (q != NULL && len > 0) {
        memcpy(q, p, len);
    }
    return q;
}
