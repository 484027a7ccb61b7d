/*
 * seed_member_record.c — writes the seed corpus of fuzz_member_record into the dir argv[1]:
 * a version 1 and a version 2 record, and contexts with and without attributes, each behind
 * the selector byte the target reads first. Rerun it when an encoding changes:
 * `build/fuzz/seed_member_record tests/fuzz/corpus/member_record`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "member.h"
#include "node.h"
#include "store.h"

static void write_seed(const char *dir, const char *name, uint8_t sel, const uint8_t *b, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static struct srv_members g_ms;

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static const char *const u1[] = {"http://10.0.0.1:2480"};
    static const char *const u2[] = {"http://10.0.0.2:2480", "https://[::1]:2480"};
    struct srv_member_attrs a1 = {.name = "n1", .peer_urls = u1, .peer_urls_count = 1};
    struct srv_member_attrs a2 = {.name = "node-2", .peer_urls = u2, .peer_urls_count = 2};
    srv_members_init(&g_ms);
    if (srv_members_add(&g_ms, 0x1111, false, &a1) != 0 ||
        srv_members_add(&g_ms, 0x2222, false, &a2) != 0 ||
        srv_members_add(&g_ms, 0x3333, true, NULL) != 0) {
        return 1;
    }
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len = 0;
    if (srv_members_encode(&g_ms, buf, sizeof(buf), &len) != 0) {
        return 1;
    }
    write_seed(argv[1], "record_v2", 0, buf, len);
    struct raft_conf_state conf;
    srv_members_conf(&g_ms, &conf);
    if (srv_node_conf_encode(&conf, buf, sizeof(buf), &len) != 0) {
        return 1;
    }
    write_seed(argv[1], "record_v1", 0, buf, len);
    if (srv_member_context_encode(0x1111, 42, &a2, buf, sizeof(buf), &len) != 0) {
        return 1;
    }
    write_seed(argv[1], "context_attrs", 1, buf, len);
    if (srv_member_context_encode(0x2222, 7, NULL, buf, sizeof(buf), &len) != 0) {
        return 1;
    }
    write_seed(argv[1], "context_empty", 1, buf, len);
    return 0;
}
