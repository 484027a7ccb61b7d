/*
 * seed_store_cmd.c — writes the seed corpus of fuzz_store_cmd: one encoded command of
 * every type, including a nested txn with every compare target, into the dir argv[1].
 * Rerun it when the encoding changes: `build/fuzz/seed_store_cmd tests/fuzz/corpus/store_cmd`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define B(s) ((const uint8_t *)(s))
#define L(s) ((uint32_t)strlen(s))

static void write_seed(const char *dir, const char *name, const struct store_cmd *c)
{
    char path[1024];
    uint8_t buf[4096];
    size_t len = 0;

    if (store_cmd_encode(c, buf, sizeof(buf), &len) != 0) {
        fprintf(stderr, "seed_store_cmd: %s does not encode\n", name);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void seed_txns(const char *dir)
{
    struct store_op put = {.type = STORE_OP_PUT};
    put.u.put = (struct store_put_req){
        .key = B("k"), .key_len = 1, .value = B("v"), .value_len = 1, .lease = 7, .prev_kv = true};
    struct store_op del = {.type = STORE_OP_DELETE};
    del.u.del = (struct store_delete_req){
        .key = B("a"), .key_len = 1, .range_end = B("z"), .range_end_len = 1, .prev_kv = true};
    struct store_op range = {.type = STORE_OP_RANGE};
    range.u.range = (struct store_range_req){.key = B("\0"),
                                             .key_len = 1,
                                             .range_end = B("\0"),
                                             .range_end_len = 1,
                                             .limit = 10,
                                             .revision = 3,
                                             .sort_order = STORE_SORT_DESCEND,
                                             .sort_target = STORE_SORT_CREATE,
                                             .keys_only = true,
                                             .max_create_revision = 9};
    struct store_compare cmp[5];
    for (uint32_t t = 0; t < 5; t++) {
        cmp[t] = (struct store_compare){.target = t,
                                        .result = t % 4,
                                        .key = B("c"),
                                        .key_len = 1,
                                        .number = (int64_t)t,
                                        .value = B("x"),
                                        .value_len = t == STORE_CMP_VALUE};
    }
    struct store_op inner_ops[] = {put, range};
    struct store_txn_req inner = {
        .compares = cmp, .compares_count = 2, .success = inner_ops, .success_count = 2};
    struct store_op nested = {.type = STORE_OP_TXN};
    nested.u.txn = &inner;
    struct store_op outer_ops[] = {del, nested};
    struct store_cmd c = {.type = STORE_CMD_TXN};
    c.u.txn = (struct store_txn_req){.compares = cmp,
                                     .compares_count = 5,
                                     .success = &put,
                                     .success_count = 1,
                                     .failure = outer_ops,
                                     .failure_count = 2};
    write_seed(dir, "txn_nested", &c);
    c.u.txn = (struct store_txn_req){.success = &put, .success_count = 1};
    write_seed(dir, "txn_put", &c);
    c.u.txn = (struct store_txn_req){0};
    write_seed(dir, "txn_empty", &c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seed_store_cmd DIR\n");
        return 2;
    }
    seed_txns(argv[1]);
    struct store_cmd c = {.type = STORE_CMD_COMPACT};
    c.u.compact.revision = 42;
    write_seed(argv[1], "compact", &c);
    c = (struct store_cmd){.type = STORE_CMD_LEASE_GRANT};
    c.u.lease_grant.id = 0;
    c.u.lease_grant.ttl = 60;
    write_seed(argv[1], "lease_grant", &c);
    c = (struct store_cmd){.type = STORE_CMD_LEASE_REVOKE};
    c.u.lease_revoke.id = 5;
    write_seed(argv[1], "lease_revoke", &c);
    struct store_lease_checkpoint cp[2] = {{.id = 1, .remaining_ttl = 10}, {.id = 2}};
    c = (struct store_cmd){.type = STORE_CMD_LEASE_CHECKPOINT};
    c.u.lease_checkpoint.items = cp;
    c.u.lease_checkpoint.count = 2;
    write_seed(argv[1], "lease_checkpoint", &c);
    c = (struct store_cmd){.type = STORE_CMD_ALARM};
    c.u.alarm.action = STORE_ALARM_ACTIVATE;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    write_seed(argv[1], "alarm", &c);
    c = (struct store_cmd){.type = STORE_CMD_TREE_CREATE};
    c.u.tree_create.path = B("/a/b");
    c.u.tree_create.path_len = L("/a/b");
    c.u.tree_create.value = B("v");
    c.u.tree_create.value_len = 1;
    c.u.tree_create.make_parents = true;
    write_seed(argv[1], "tree_create", &c);
    c = (struct store_cmd){.type = STORE_CMD_TREE_DELETE};
    c.u.tree_delete.path = B("/a");
    c.u.tree_delete.path_len = 2;
    c.u.tree_delete.recursive = true;
    c.u.tree_delete.expected_version = 3;
    write_seed(argv[1], "tree_delete", &c);
    return 0;
}
