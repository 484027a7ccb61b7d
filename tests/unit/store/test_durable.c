/*
 * test_durable.c — what each file's sync policy promises (store.h store_apply and
 * store_log_compact, docs/decisions/store-layout.md): raft.mdb syncs every commit fully;
 * state.mdb runs with MDB_NOMETASYNC, so a power loss may undo its newest apply, which the
 * log still holds and a replay restores exactly; the log is never compacted past an
 * applied index that is not on disk (state.mdb is synced first, and only when needed).
 *
 * A power loss cannot be made here; its effect on state.mdb (the newest commit undone) is
 * emulated by putting back a copy of the file taken before that commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "latch_error.h"
#include "store.h"
#include "store_fixture.h"
#include "store_int.h"
#include "store_wal.h"

#define ENTRIES 8

struct dfx {
    struct fx fx;
    uint8_t cmd[ENTRIES + 1][256]; /* by index */
    size_t cmd_len[ENTRIES + 1];
    char saved[600]; /* a copy of state.mdb, beside the data dir */
};

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fx_setup(&f->fx);
    snprintf(f->saved, sizeof(f->saved), "%s.saved-state", f->fx.dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct dfx *f = *state;
    fx_teardown(&f->fx);
    (void)unlink(f->saved);
    free(f);
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* Reopens the store with fsync on (the fixture's default is no_sync). */
static void reopen_synced(struct dfx *f)
{
    f->fx.opt.no_sync = false;
    fx_reopen(&f->fx);
}

static void copy_file(const char *from, const char *to)
{
    uint8_t buf[65536];
    int in = open(from, O_RDONLY);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        assert_true(n >= 0);
        if (n == 0) {
            break;
        }
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    close(in);
    close(out);
}

static void state_path(const struct dfx *f, char *buf, size_t cap, const char *suffix)
{
    snprintf(buf, cap, "%s/state.mdb%s", f->fx.dir, suffix);
}

/* Appends entries 1..ENTRIES (term 1), entry i a put of k<i> = v<i>, with the hard state. */
static void append_puts(struct dfx *f)
{
    struct store_entry ents[ENTRIES];
    for (uint64_t i = 1; i <= ENTRIES; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(val, sizeof(val), "v%llu", (unsigned long long)i);
        struct store_op op = {.type = STORE_OP_PUT};
        op.u.put = (struct store_put_req){.key = (const uint8_t *)key,
                                          .key_len = (uint32_t)strlen(key),
                                          .value = (const uint8_t *)val,
                                          .value_len = (uint32_t)strlen(val)};
        struct store_cmd c = {.type = STORE_CMD_TXN};
        c.u.txn.success = &op;
        c.u.txn.success_count = 1;
        assert_int_equal(store_cmd_encode(&c, f->cmd[i], sizeof(f->cmd[i]), &f->cmd_len[i]), 0);
        ents[i - 1] = (struct store_entry){
            .term = 1, .index = i, .type = 0, .len = (uint32_t)f->cmd_len[i], .data = f->cmd[i]};
    }
    struct store_hard_state hs = {.term = 1, .vote = 1, .commit = ENTRIES};
    assert_int_equal(store_log_append(f->fx.s, ents, ENTRIES, &hs), 0);
}

/* Applies [lo, hi] from what the log holds (as the node does after a restart); revs gets
 * each item's revision by index. */
static void apply_from_log(struct dfx *f, uint64_t lo, uint64_t hi, int64_t *revs)
{
    const struct store_entry *ents = NULL;
    size_t n = 0;
    struct store_apply_item items[ENTRIES];
    struct store_result res[ENTRIES];
    assert_int_equal(store_log_entries(f->fx.s, lo, hi + 1, UINT64_MAX, &ents, &n), 0);
    assert_int_equal(n, hi - lo + 1);
    for (size_t i = 0; i < n; i++) {
        items[i] = (struct store_apply_item){.index = ents[i].index,
                                             .term = ents[i].term,
                                             .kind = STORE_ITEM_CMD,
                                             .len = ents[i].len,
                                             .data = ents[i].data};
    }
    latch_arena_reset(&f->fx.arena);
    assert_int_equal(store_apply(f->fx.s, items, n, &f->fx.arena, res), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res[i].err, 0);
        if (revs != NULL) {
            revs[lo + i] = res[i].revision;
        }
    }
    store_log_release(f->fx.s);
}

static uint64_t applied_index(struct dfx *f)
{
    struct store_status st;
    assert_int_equal(store_status(f->fx.r, &st), 0);
    return st.applied_index;
}

static void test_state_skips_the_meta_sync_and_the_log_syncs_everything(void **state)
{
    struct dfx *f = *state;
    unsigned flags = 0;
#ifdef LATCH_STORE_WAL
    /* The log is the wal (store_wal.h): no raft.mdb; one fdatasync per synced append. */
    assert_null(f->fx.s->raft.env);
    assert_non_null(f->fx.s->wal);
    reopen_synced(f);
    assert_int_equal(mdb_env_get_flags(f->fx.s->state.env, &flags), 0);
    assert_true((flags & MDB_NOMETASYNC) != 0);
    assert_int_equal(flags & (MDB_NOSYNC | MDB_MAPASYNC | MDB_WRITEMAP), 0);
    uint64_t syncs = store_wal_syncs(f->fx.s->wal);
    uint8_t d[4] = {1, 2, 3, 4};
    uint64_t next = store_log_last_index(f->fx.s) + 1;
    struct store_entry e = {.term = 1, .index = next, .type = 1, .len = 4, .data = d};
    struct store_hard_state hs = {.term = 1, .vote = 1, .commit = 0};
    assert_int_equal(store_log_append(f->fx.s, &e, 1, &hs), 0);
    assert_int_equal(store_wal_syncs(f->fx.s->wal) - syncs, 1);
#else
    /* no_sync (tests, benchmarks): both files skip every sync, as before. */
    assert_int_equal(mdb_env_get_flags(f->fx.s->state.env, &flags), 0);
    assert_true((flags & MDB_NOSYNC) != 0);
    assert_int_equal(mdb_env_get_flags(f->fx.s->raft.env, &flags), 0);
    assert_true((flags & MDB_NOSYNC) != 0);

    reopen_synced(f);
    assert_int_equal(mdb_env_get_flags(f->fx.s->state.env, &flags), 0);
    assert_true((flags & MDB_NOMETASYNC) != 0);
    assert_int_equal(flags & (MDB_NOSYNC | MDB_MAPASYNC | MDB_WRITEMAP), 0);
    assert_int_equal(mdb_env_get_flags(f->fx.s->raft.env, &flags), 0);
    assert_int_equal(flags & (MDB_NOMETASYNC | MDB_NOSYNC | MDB_MAPASYNC | MDB_WRITEMAP), 0);
#endif
}

/* The newest apply undone (what a power loss may do to state.mdb): the store opens at the
 * apply before it, the log still holds the lost entries, and applying them again gives the
 * same revisions and values, once. */
static void test_lost_last_apply_is_replayed_from_the_log(void **state)
{
    struct dfx *f = *state;
    char path[600], lock[600];
    int64_t revs[ENTRIES + 1] = {0};
    int64_t again[ENTRIES + 1] = {0};
    reopen_synced(f);
    append_puts(f);
    apply_from_log(f, 1, 5, revs);
    int64_t rev5 = fx_rev(&f->fx);
    state_path(f, path, sizeof(path), "");
    state_path(f, lock, sizeof(lock), "-lock");
    fx_reopen(&f->fx); /* closed: the file holds exactly the commit of 1..5 */
    copy_file(path, f->saved);
    apply_from_log(f, 6, ENTRIES, revs);
    int64_t rev_all = fx_rev(&f->fx);
    assert_int_equal(rev_all, rev5 + (ENTRIES - 5));

    /* The crash: state.mdb as it was before the newest commit. */
    store_reader_free(f->fx.r);
    store_close(f->fx.s);
    f->fx.r = NULL;
    f->fx.s = NULL;
    copy_file(f->saved, path);
    (void)unlink(lock);
    fx_reopen(&f->fx);
    assert_int_equal(applied_index(f), 5);
    assert_int_equal(fx_rev(&f->fx), rev5);
    assert_int_equal(store_log_last_index(f->fx.s), ENTRIES);
    char got[16];
    assert_int_equal(fx_get(&f->fx, "k6", got, sizeof(got), NULL), LATCH_ENOTFOUND);

    /* The replay from the log: the same outcome, and a second replay changes nothing. */
    apply_from_log(f, 6, ENTRIES, again);
    for (uint64_t i = 6; i <= ENTRIES; i++) {
        assert_int_equal(again[i], revs[i]);
    }
    apply_from_log(f, 1, ENTRIES, NULL);
    assert_int_equal(fx_rev(&f->fx), rev_all);
    assert_int_equal(applied_index(f), ENTRIES);
    for (uint64_t i = 1; i <= ENTRIES; i++) {
        char key[16], want[16];
        struct store_kv kv;
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(want, sizeof(want), "v%llu", (unsigned long long)i);
        assert_int_equal(fx_get(&f->fx, key, got, sizeof(got), &kv), 0);
        assert_string_equal(got, want);
        assert_int_equal(kv.version, 1);
    }
}

/* Applies NOOP items [lo, hi] (term 1). */
static void apply_noops(struct dfx *f, uint64_t lo, uint64_t hi)
{
    struct store_apply_item items[ENTRIES];
    struct store_result res[ENTRIES];
    size_t n = 0;
    for (uint64_t i = lo; i <= hi; i++) {
        items[n++] = (struct store_apply_item){.index = i, .term = 1, .kind = STORE_ITEM_NOOP};
    }
    assert_int_equal(store_apply(f->fx.s, items, n, &f->fx.arena, res), 0);
}

/* The compaction point never passes the applied index known to be on disk. */
static void assert_compaction_covered(struct dfx *f)
{
    assert_true(store_log_first_index(f->fx.s) - 1 <= f->fx.s->state_synced_applied);
}

static void test_compaction_syncs_the_state_first_and_only_when_needed(void **state)
{
    struct dfx *f = *state;
    reopen_synced(f);
    append_puts(f); /* the log's bytes do not matter here: NOOP items are applied */
    apply_noops(f, 1, 4);
    assert_int_equal(f->fx.s->state_syncs, 0);
    assert_int_equal(f->fx.s->state_synced_applied, 0);

    /* Nothing is known on disk yet: the first compaction syncs, and reaches the applied 4. */
    assert_int_equal(store_log_compact(f->fx.s, 2), 0);
    assert_int_equal(f->fx.s->state_syncs, 1);
    assert_int_equal(f->fx.s->state_synced_applied, 4);
    assert_compaction_covered(f);
    /* Up to what is on disk: no sync. */
    assert_int_equal(store_log_compact(f->fx.s, 4), 0);
    assert_int_equal(f->fx.s->state_syncs, 1);
    assert_compaction_covered(f);

    /* Newer applies: the next compaction past 4 syncs them first. */
    apply_noops(f, 5, 6);
    assert_int_equal(store_log_compact(f->fx.s, 5), 0);
    assert_int_equal(f->fx.s->state_syncs, 2);
    assert_int_equal(f->fx.s->state_synced_applied, 6);
    assert_compaction_covered(f);
    assert_int_equal(store_log_compact(f->fx.s, 6), 0);
    assert_int_equal(f->fx.s->state_syncs, 2);
    /* Never past the applied index. */
    assert_int_equal(store_log_compact(f->fx.s, 7), LATCH_EINVAL);
    assert_int_equal(store_log_first_index(f->fx.s), 7);
    assert_compaction_covered(f);

    /* A reopen knows nothing on disk yet (a restart after a kill: the page cache may hold
     * the newest commit that the disk does not): the next compaction syncs again. */
    fx_reopen(&f->fx);
    assert_int_equal(applied_index(f), 6);
    assert_int_equal(store_log_first_index(f->fx.s), 7);
    apply_noops(f, 7, 7);
    assert_int_equal(store_log_compact(f->fx.s, 7), 0);
    assert_int_equal(f->fx.s->state_syncs, 1);
    assert_int_equal(f->fx.s->state_synced_applied, 7);
    assert_compaction_covered(f);
}

/* no_sync keeps its meaning: nothing is synced, the bound is the applied index as read. */
static void test_without_sync_compaction_is_bounded_by_the_applied_index(void **state)
{
    struct dfx *f = *state;
    append_puts(f);
    apply_noops(f, 1, 5);
    assert_int_equal(store_log_compact(f->fx.s, 5), 0);
    assert_int_equal(store_log_compact(f->fx.s, 6), LATCH_EINVAL);
    assert_int_equal(f->fx.s->state_syncs, 0);
    assert_int_equal(store_log_first_index(f->fx.s), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_state_skips_the_meta_sync_and_the_log_syncs_everything),
        T(test_lost_last_apply_is_replayed_from_the_log),
        T(test_compaction_syncs_the_state_first_and_only_when_needed),
        T(test_without_sync_compaction_is_bounded_by_the_applied_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
