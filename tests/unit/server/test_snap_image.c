/*
 * test_snap_image.c — the Snapshot stream's bbolt image (server/snap_image.h) from a real
 * store: the writer's figures (revision, records, leases), cancellation, and, when Debian's
 * etcdctl is installed, `etcdctl snapshot status -w json` on the image reporting the store's
 * revision and every record (the bbolt reader etcd itself uses, with its integrity check).
 */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "latch_arena.h"
#include "latch_error.h"
#include "snap_image.h"
#include "store.h"

#define ETCDCTL "/usr/bin/etcdctl"

struct sfx {
    char dir[128];
    struct store *s;
    struct store_reader *r;
    uint64_t next_index;
    struct latch_arena arena;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct sfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/latch-snapimg-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct store_options o;
    store_options_defaults(&o);
    o.dir = f->dir;
    o.no_sync = true;
    o.map_bytes_initial = 4u << 20;
    assert_int_equal(store_open(&o, &f->s, NULL, 0), 0);
    assert_int_equal(store_reader_new(f->s, &f->r), 0);
    latch_arena_init(&f->arena, 0);
    f->next_index = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct sfx *f = *state;
    store_reader_free(f->r);
    store_close(f->s);
    latch_arena_close(&f->arena);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void apply(struct sfx *f, const struct store_cmd *c)
{
    uint8_t buf[4096];
    size_t len;
    assert_int_equal(store_cmd_encode(c, buf, sizeof(buf), &len), 0);
    struct store_apply_item it = {.index = f->next_index++,
                                  .term = 1,
                                  .kind = STORE_ITEM_CMD,
                                  .len = (uint32_t)len,
                                  .data = buf};
    struct store_result res;
    latch_arena_reset(&f->arena);
    assert_int_equal(store_apply(f->s, &it, 1, &f->arena, &res), 0);
    assert_int_equal(res.err, 0);
}

static void put(struct sfx *f, const char *key, const char *value, int64_t lease)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put.key = (const uint8_t *)key;
    op.u.put.key_len = (uint32_t)strlen(key);
    op.u.put.value = (const uint8_t *)value;
    op.u.put.value_len = (uint32_t)strlen(value);
    op.u.put.lease = lease;
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    apply(f, &c);
}

static void del(struct sfx *f, const char *key)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del.key = (const uint8_t *)key;
    op.u.del.key_len = (uint32_t)strlen(key);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    apply(f, &c);
}

/* 200 puts (some overwrites), 10 deletes, a lease with a key: revision 212. */
static void workload(struct sfx *f)
{
    struct store_cmd g = {.type = STORE_CMD_LEASE_GRANT};
    g.u.lease_grant.id = 0x1234;
    g.u.lease_grant.ttl = 60;
    apply(f, &g);
    for (int i = 0; i < 200; i++) {
        char k[16], v[64];
        snprintf(k, sizeof(k), "key/%03d", i % 150);
        snprintf(v, sizeof(v), "value-%d-%040d", i, i);
        put(f, k, v, 0);
    }
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key/%03d", i);
        del(f, k);
    }
    put(f, "leased", "x", 0x1234);
}

static const struct srv_maint_member members[] = {
    {.id = 0x8e9e05c52164694dull,
     .name = "m\"1",
     .peer_urls = (const char *const[]){"http://127.0.0.1:2380"},
     .peer_urls_count = 1},
};

static int image_file(struct sfx *f, const atomic_bool *cancel, struct srv_snap_image_info *info)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/image.db", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct srv_snap_image_config cfg = {
        .members = members, .members_count = 1, .member_id = members[0].id, .cancel = cancel};
    int rc = srv_snap_image_write(f->r, fd, &cfg, info);
    close(fd);
    return rc;
}

static void test_image_figures_match_the_store(void **state)
{
    struct sfx *f = *state;
    workload(f);
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    struct srv_snap_image_info info;
    assert_int_equal(image_file(f, NULL, &info), 0);
    assert_int_equal(info.revision, st.revision);
    assert_int_equal(info.kv_records, 211); /* every event: 200 + 10 deletes + 1 */
    assert_int_equal(info.leases, 1);
    assert_int_equal(info.size_bytes % 4096, 0);
    assert_true(info.size_bytes >= 8 * 4096);
}

static void test_cancelled_image_stops_with_eshutdown(void **state)
{
    struct sfx *f = *state;
    workload(f);
    atomic_bool cancel;
    atomic_init(&cancel, true);
    struct srv_snap_image_info info;
    assert_int_equal(image_file(f, &cancel, &info), LATCH_ESHUTDOWN);
}

static void test_etcdctl_snapshot_status_reads_the_image(void **state)
{
    struct sfx *f = *state;
    if (access(ETCDCTL, X_OK) != 0) {
        skip(); /* Debian's etcd-client is not installed */
    }
    workload(f);
    struct srv_snap_image_info info;
    assert_int_equal(image_file(f, NULL, &info), 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), ETCDCTL " snapshot status %s/image.db -w json 2>&1", f->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    char want[128];
    snprintf(want, sizeof(want), "\"revision\":%lld,", (long long)info.revision);
    if (strstr(out, want) == NULL) {
        fail_msg("etcdctl snapshot status: %s (want %s)", out, want);
    }
    /* key 211 + lease 1 + auth 1 (authRevision) + cluster 1 + members 1 + meta 1
     * (consistent_index) */
    if (strstr(out, "\"totalKey\":216,") == NULL) {
        fail_msg("etcdctl snapshot status: %s (want totalKey 216)", out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_image_figures_match_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_image_stops_with_eshutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etcdctl_snapshot_status_reads_the_image, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
