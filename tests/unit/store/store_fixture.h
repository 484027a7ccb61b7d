/*
 * store_fixture.h — shared setup for the store/ unit tests: a fresh data dir per test, the
 * store opened on it, one reader, one result arena, and shorthands that encode a command
 * and apply it as the next Raft index (through the public store_cmd_encode/store_apply
 * path, the one latchd uses).
 */
#ifndef STORE_FIXTURE_H
#define STORE_FIXTURE_H

#include <stdint.h>

#include "store.h"

struct fx {
    char dir[512];
    struct store *s;
    struct store_reader *r;
    struct latch_arena arena; /* results of fx_apply and reads; reset by fx_apply */
    uint64_t next_index;      /* Raft index the next fx_apply uses */
    struct store_options opt;
};

/* Makes a temporary data dir and opens the store on it (no_sync: unit tests do not need
 * durability; the crash test checks it). Fails the test on any error. */
void fx_setup(struct fx *f);

/* Closes the store and removes the dir. */
void fx_teardown(struct fx *f);

/* Closes and reopens the store on the same dir (reader and arena renewed). */
void fx_reopen(struct fx *f);

/* Removes dir and everything below it; tolerates a missing dir. */
void fx_rmrf(const char *dir);

/* Encodes c, applies it as index f->next_index++ (term 1) and returns res->err. The batch
 * itself must succeed (the test fails otherwise). res may be NULL; what it points at lives
 * in f->arena until the next fx_apply. */
int fx_apply(struct fx *f, const struct store_cmd *c, struct store_result *res);

/* Shorthands over fx_apply: a put and a delete-range of one key (C strings). Return err. */
int fx_put(struct fx *f, const char *key, const char *value, int64_t lease);
int fx_del(struct fx *f, const char *key);

/* One-op builders for txn branches (C strings, borrowed): a put without lease or flags, and
 * a delete of key or of [key, end) (end NULL: the key alone). */
struct store_op fx_op_put(const char *key, const char *value);
struct store_op fx_op_del(const char *key, const char *end);

/* Current value of key into buf (NUL-terminated) or LATCH_ENOTFOUND; kv_out may be NULL. */
int fx_get(struct fx *f, const char *key, char *buf, size_t cap, struct store_kv *kv_out);

/* The current store revision. */
int64_t fx_rev(struct fx *f);

#endif /* STORE_FIXTURE_H */
