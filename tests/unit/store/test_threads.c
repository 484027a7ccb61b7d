/*
 * test_threads.c — store/ used the way latchd uses it: one storage thread applies batches
 * (growing the LMDB map on the way) while other threads read through their own readers,
 * some of them pinned. Checks what a reader may rely on: its header revisions never go
 * back, data is never newer than the header it came with, and a pinned snapshot does not
 * move. `make test` also runs this file under ThreadSanitizer (build/tsan).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "latch_error.h"
#include "store_fixture.h"

enum { BATCHES = 120, PER_BATCH = 24, VALUE_BYTES = 1024, READERS = 2 };

struct shared {
    struct store *s;
    atomic_bool done;
    atomic_int failures;
    char msg[256];
    pthread_mutex_t msg_lock;
};

static void failure(struct shared *sh, const char *what, long long a, long long b)
{
    pthread_mutex_lock(&sh->msg_lock);
    if (atomic_fetch_add(&sh->failures, 1) == 0) {
        snprintf(sh->msg, sizeof(sh->msg), "%s (%lld vs %lld)", what, a, b);
    }
    pthread_mutex_unlock(&sh->msg_lock);
}

/* The storage thread: BATCHES batches of PER_BATCH one-put commands with 1 KiB values. */
static void *writer_main(void *arg)
{
    struct shared *sh = arg;
    static uint8_t bufs[PER_BATCH][VALUE_BYTES + 128];
    static uint8_t value[VALUE_BYTES];
    struct store_apply_item items[PER_BATCH];
    struct store_result results[PER_BATCH];
    struct latch_arena a;
    uint64_t index = 1;

    latch_arena_init(&a, 0);
    for (int b = 0; b < BATCHES && atomic_load(&sh->failures) == 0; b++) {
        for (int i = 0; i < PER_BATCH; i++) {
            char key[32];
            snprintf(key, sizeof(key), "k/%05d", (b * PER_BATCH + i) % 1000);
            memset(value, 'a' + (b % 26), sizeof(value));
            struct store_op op = {.type = STORE_OP_PUT};
            op.u.put.key = (const uint8_t *)key;
            op.u.put.key_len = (uint32_t)strlen(key);
            op.u.put.value = value;
            op.u.put.value_len = sizeof(value);
            struct store_cmd c = {.type = STORE_CMD_TXN};
            c.u.txn.success = &op;
            c.u.txn.success_count = 1;
            size_t len = 0;
            if (store_cmd_encode(&c, bufs[i], sizeof(bufs[i]), &len) != 0) {
                failure(sh, "encode", 0, 0);
            }
            items[i] = (struct store_apply_item){.index = index++,
                                                 .term = 1,
                                                 .kind = STORE_ITEM_CMD,
                                                 .len = (uint32_t)len,
                                                 .data = bufs[i]};
        }
        latch_arena_reset(&a);
        int rc = store_apply(sh->s, items, PER_BATCH, &a, results);
        if (rc != 0) {
            failure(sh, "store_apply", rc, 0);
        }
    }
    latch_arena_close(&a);
    atomic_store(&sh->done, true);
    return NULL;
}

/* One reader thread: ranges and status, pinned every other round. */
static void *reader_main(void *arg)
{
    struct shared *sh = arg;
    struct store_reader *r;
    struct latch_arena a;
    int64_t last_hdr = 0;
    long round = 0;

    if (store_reader_new(sh->s, &r) != 0) {
        failure(sh, "store_reader_new", 0, 0);
        return NULL;
    }
    latch_arena_init(&a, 0);
    while (!atomic_load(&sh->done) && atomic_load(&sh->failures) == 0) {
        bool pin = round++ % 2 == 0;
        if (pin && store_reader_pin(r) != 0) {
            failure(sh, "store_reader_pin", 0, 0);
            break;
        }
        int64_t pinned_hdr = 0;
        for (int i = 0; i < 8; i++) {
            struct store_range_req q = {.key = (const uint8_t *)"k/",
                                        .key_len = 2,
                                        .range_end = (const uint8_t *)"k0",
                                        .range_end_len = 2,
                                        .limit = 5,
                                        .sort_order = STORE_SORT_DESCEND,
                                        .sort_target = STORE_SORT_MOD};
            struct store_range_result out;
            int64_t hdr = 0;
            latch_arena_reset(&a);
            if (store_range(r, &q, &a, &out, &hdr) != 0) {
                failure(sh, "store_range", 0, 0);
                break;
            }
            if (hdr < last_hdr) {
                failure(sh, "header revision went back", hdr, last_hdr);
            }
            if (pin && pinned_hdr != 0 && hdr != pinned_hdr) {
                failure(sh, "pinned snapshot moved", hdr, pinned_hdr);
            }
            for (size_t k = 0; k < out.kvs_count; k++) {
                if (out.kvs[k].mod_revision > hdr) {
                    failure(sh, "data newer than its header", out.kvs[k].mod_revision, hdr);
                }
            }
            pinned_hdr = hdr;
            last_hdr = hdr;
        }
        if (pin) {
            store_reader_unpin(r);
        }
    }
    latch_arena_close(&a);
    store_reader_free(r);
    return NULL;
}

static void test_readers_and_a_growing_writer_run_concurrently(void **state)
{
    (void)state;
    struct fx f;
    struct shared sh;
    pthread_t w, rd[READERS];

    fx_setup(&f);
    store_reader_free(f.r);
    store_close(f.s);
    f.opt.map_bytes_initial = 1024 * 1024; /* ~3 MiB of values: the map grows twice */
    f.s = NULL;
    f.r = NULL;
    fx_reopen(&f);
    memset(&sh, 0, sizeof(sh));
    sh.s = f.s;
    pthread_mutex_init(&sh.msg_lock, NULL);
    for (int i = 0; i < READERS; i++) {
        assert_int_equal(pthread_create(&rd[i], NULL, reader_main, &sh), 0);
    }
    assert_int_equal(pthread_create(&w, NULL, writer_main, &sh), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < READERS; i++) {
        pthread_join(rd[i], NULL);
    }
    pthread_mutex_destroy(&sh.msg_lock);
    if (atomic_load(&sh.failures) != 0) {
        fail_msg("%d failures; first: %s", atomic_load(&sh.failures), sh.msg);
    }
    assert_int_equal(fx_rev(&f), 1 + BATCHES * PER_BATCH);
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers_and_a_growing_writer_run_concurrently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
