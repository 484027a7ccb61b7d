/*
 * store_fixture.c — see store_fixture.h.
 */
#include "store_fixture.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "latch_error.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fx_rmrf(const char *dir)
{
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fx_open(struct fx *f)
{
    char err[STORE_ERRMSG_BYTES] = "";
    int rc = store_open(&f->opt, &f->s, err, sizeof(err));
    if (rc != 0) {
        fail_msg("store_open(%s): %s: %s", f->dir, latch_error_name(rc), err);
    }
    assert_int_equal(store_reader_new(f->s, &f->r), 0);
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    f->next_index = st.applied_index + 1;
}

void fx_setup(struct fx *f)
{
    const char *tmp = getenv("TMPDIR");
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/latch-store-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    store_options_defaults(&f->opt);
    f->opt.dir = f->dir;
    f->opt.no_sync = true;
    latch_arena_init(&f->arena, 0);
    fx_open(f);
}

void fx_teardown(struct fx *f)
{
    store_reader_free(f->r);
    store_close(f->s);
    latch_arena_close(&f->arena);
    fx_rmrf(f->dir);
}

void fx_reopen(struct fx *f)
{
    store_reader_free(f->r);
    store_close(f->s);
    f->r = NULL;
    f->s = NULL;
    latch_arena_reset(&f->arena);
    fx_open(f);
}

int fx_apply(struct fx *f, const struct store_cmd *c, struct store_result *res)
{
    struct store_result local;
    size_t size = store_cmd_size(c);
    uint8_t *buf = malloc(size > 0 ? size : 1);
    size_t len = 0;

    assert_non_null(buf);
    assert_int_equal(store_cmd_encode(c, buf, size, &len), 0);
    assert_int_equal(len, size);
    if (res == NULL) {
        res = &local;
    }
    latch_arena_reset(&f->arena);
    struct store_apply_item item = {
        .index = f->next_index,
        .term = 1,
        .kind = STORE_ITEM_CMD,
        .len = (uint32_t)len,
        .data = buf,
    };
    int rc = store_apply(f->s, &item, 1, &f->arena, res);
    free(buf);
    if (rc != 0) {
        fail_msg("store_apply at index %llu: %s", (unsigned long long)f->next_index,
                 latch_error_name(rc));
    }
    f->next_index++;
    return res->err;
}

struct store_op fx_op_put(const char *key, const char *value)
{
    struct store_op op = {.type = STORE_OP_PUT};
    op.u.put = (struct store_put_req){.key = (const uint8_t *)key,
                                      .key_len = (uint32_t)strlen(key),
                                      .value = (const uint8_t *)value,
                                      .value_len = (uint32_t)strlen(value)};
    return op;
}

struct store_op fx_op_del(const char *key, const char *end)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del = (struct store_delete_req){.key = (const uint8_t *)key,
                                         .key_len = (uint32_t)strlen(key),
                                         .range_end = (const uint8_t *)end,
                                         .range_end_len = end != NULL ? (uint32_t)strlen(end) : 0};
    return op;
}

int fx_put(struct fx *f, const char *key, const char *value, int64_t lease)
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
    return fx_apply(f, &c, NULL);
}

int fx_del(struct fx *f, const char *key)
{
    struct store_op op = {.type = STORE_OP_DELETE};
    op.u.del.key = (const uint8_t *)key;
    op.u.del.key_len = (uint32_t)strlen(key);
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn.success = &op;
    c.u.txn.success_count = 1;
    return fx_apply(f, &c, NULL);
}

int fx_get(struct fx *f, const char *key, char *buf, size_t cap, struct store_kv *kv_out)
{
    struct store_range_req q = {.key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    struct store_range_result out;
    int rc = store_range(f->r, &q, &f->arena, &out, NULL);
    if (rc != 0) {
        return rc;
    }
    if (out.kvs_count == 0) {
        return LATCH_ENOTFOUND;
    }
    assert_int_equal(out.kvs_count, 1);
    if (buf != NULL) {
        size_t n = out.kvs[0].value_len < cap - 1 ? out.kvs[0].value_len : cap - 1;
        memcpy(buf, out.kvs[0].value, n);
        buf[n] = '\0';
    }
    if (kv_out != NULL) {
        *kv_out = out.kvs[0];
    }
    return 0;
}

int64_t fx_rev(struct fx *f)
{
    struct store_status st;
    assert_int_equal(store_status(f->r, &st), 0);
    return st.revision;
}
