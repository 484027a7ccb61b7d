/*
 * latch_arena.h — a bump allocator for results whose pieces die together.
 *
 * A request's answer (a range's key-values, a transaction's nested responses) is built from
 * many small pieces that are all released at once when the answer has been sent. The arena
 * hands out blocks from a list of chunks and frees them all in latch_arena_reset(); blocks
 * never move, so pointers into the arena stay valid until the next reset (h2o pools).
 *
 * Ownership: the caller owns the struct (latch_arena_init/latch_arena_close); the arena owns
 * its chunks. Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef LATCH_ARENA_H
#define LATCH_ARENA_H

#include <stddef.h>

struct latch_arena_chunk;

struct latch_arena {
    struct latch_arena_chunk *head; /* newest chunk first */
    size_t chunk_bytes_min;         /* size of a fresh chunk unless a block needs more */
    size_t allocated_bytes;         /* bytes handed out since the last reset (stats) */
};

/* Prepares an empty arena; chunk_bytes_min 0 picks 16 KiB. Allocates nothing. */
void latch_arena_init(struct latch_arena *a, size_t chunk_bytes_min);

/* Frees every chunk; the arena may be initialised again. */
void latch_arena_close(struct latch_arena *a);

/* Frees every block but keeps the largest chunk for reuse, so a steady workload stops
 * allocating. Every pointer handed out before becomes invalid. */
void latch_arena_reset(struct latch_arena *a);

/* A block of size bytes, 8-byte aligned, valid until the next reset or close; NULL when out
 * of memory. size 0 returns a valid unique pointer. */
void *latch_arena_alloc(struct latch_arena *a, size_t size);

/* Like latch_arena_alloc, zero-filled. */
void *latch_arena_calloc(struct latch_arena *a, size_t count, size_t size);

/* A copy of len bytes at p in the arena (NULL when out of memory; len 0 returns a valid
 * pointer). */
void *latch_arena_dup(struct latch_arena *a, const void *p, size_t len);

#endif /* LATCH_ARENA_H */
