/*
 * test_member.c — the membership record (version 2 with member attributes, version 1 still
 * read) and the conf-change context codec of server/member.h: round trips, what a table
 * operation keeps, and every malformed length or string refused with LATCH_ECORRUPT; the
 * member's identity file (server/identity.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "identity.h"
#include "latch_error.h"
#include "member.h"
#include "node.h"
#include "store.h"

static struct srv_members g_a, g_b; /* big: not on the stack */

static void fill(struct srv_members *ms)
{
    static const char *const u1[] = {"http://10.0.0.1:2480"};
    static const char *const u2[] = {"http://10.0.0.2:2480", "https://node2.example:2480"};
    static const char *const u3[] = {"http://10.0.0.3:2480"};
    static const char *const u4[] = {"http://10.0.0.4:2480"};
    struct srv_member_attrs a1 = {.name = "n1", .peer_urls = u1, .peer_urls_count = 1};
    struct srv_member_attrs a2 = {.name = "node-two", .peer_urls = u2, .peer_urls_count = 2};
    struct srv_member_attrs a3 = {.name = "", .peer_urls = u3, .peer_urls_count = 1};
    struct srv_member_attrs a4 = {.name = NULL, .peer_urls = u4, .peer_urls_count = 1};
    srv_members_init(ms);
    assert_int_equal(srv_members_add(ms, 0x1111, false, &a1), 0);
    assert_int_equal(srv_members_add(ms, 0x2222, false, &a2), 0);
    assert_int_equal(srv_members_add(ms, 0x3333, false, &a3), 0);
    assert_int_equal(srv_members_add(ms, 0x4444, true, &a4), 0);
}

static void assert_same(const struct srv_members *x, const struct srv_members *y)
{
    assert_int_equal(x->count, y->count);
    for (uint32_t i = 0; i < x->count; i++) {
        const struct srv_member *a = &x->m[i];
        const struct srv_member *b = &y->m[i];
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->learner, b->learner);
        assert_string_equal(srv_member_name(x, a), srv_member_name(y, b));
        assert_int_equal(a->peer_urls_count, b->peer_urls_count);
        for (size_t k = 0; k < a->peer_urls_count; k++) {
            assert_string_equal(srv_member_peer_url(x, a, k), srv_member_peer_url(y, b, k));
        }
    }
}

static size_t encode(const struct srv_members *ms, uint8_t *buf)
{
    size_t len = 0;
    assert_int_equal(srv_members_encode(ms, buf, STORE_CONF_BYTES_MAX, &len), 0);
    assert_true(len <= STORE_CONF_BYTES_MAX);
    return len;
}

static void test_record_v2_round_trip_keeps_ids_roles_and_attributes(void **state)
{
    (void)state;
    uint8_t buf[STORE_CONF_BYTES_MAX];
    fill(&g_a);
    size_t len = encode(&g_a, buf);
    assert_int_equal(buf[0], SRV_MEMBER_RECORD_V2);
    assert_int_equal(srv_members_decode(buf, len, &g_b), 0);
    assert_same(&g_a, &g_b);
    assert_string_equal(srv_member_name(&g_b, srv_members_find(&g_b, 0x4444)), "");

    /* The node's decoder reads the ids of a version 2 record. */
    struct raft_conf_state conf;
    assert_int_equal(srv_node_conf_decode(buf, len, &conf), 0);
    assert_int_equal(conf.voters_count, 3);
    assert_int_equal(conf.learners_count, 1);
    assert_int_equal(conf.voters[1], 0x2222);
    assert_int_equal(conf.learners[0], 0x4444);
}

static void test_record_v1_still_decodes_without_attributes(void **state)
{
    (void)state;
    struct raft_conf_state c = {
        .voters_count = 2, .voters = {7, 8}, .learners_count = 1, .learners = {9}};
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len = 0;
    assert_int_equal(srv_node_conf_encode(&c, buf, sizeof(buf), &len), 0);
    assert_int_equal(buf[0], SRV_MEMBER_RECORD_V1);
    assert_int_equal(srv_members_decode(buf, len, &g_a), 0);
    assert_int_equal(g_a.count, 3);
    assert_false(g_a.m[0].learner);
    assert_true(g_a.m[2].learner);
    assert_int_equal(g_a.m[2].id, 9);
    assert_string_equal(srv_member_name(&g_a, &g_a.m[0]), "");
    assert_int_equal(g_a.m[0].peer_urls_count, 0);
    /* A version 1 record with attribute bytes after the ids is not version 1. */
    buf[len] = 0;
    assert_int_equal(srv_members_decode(buf, len + 1, &g_a), LATCH_ECORRUPT);
}

static void test_record_every_wrong_length_is_corrupt(void **state)
{
    (void)state;
    uint8_t buf[STORE_CONF_BYTES_MAX + 1];
    fill(&g_a);
    size_t len = encode(&g_a, buf);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(srv_members_decode(buf, cut, &g_b), LATCH_ECORRUPT);
        assert_int_equal(g_b.count, 0);
    }
    buf[len] = 0;
    assert_int_equal(srv_members_decode(buf, len + 1, &g_b), LATCH_ECORRUPT);
    assert_int_equal(srv_members_decode(NULL, 0, &g_b), LATCH_ECORRUPT);
}

static void test_record_every_length_byte_changed_decodes_or_is_corrupt(void **state)
{
    (void)state;
    uint8_t good[STORE_CONF_BYTES_MAX];
    uint8_t bad[STORE_CONF_BYTES_MAX];
    fill(&g_a);
    size_t len = encode(&g_a, good);
    /* Every byte, set to values that make length and count fields wrong: the decoder either
     * refuses or hands out a table whose strings are within it (ASan watches the reads). */
    static const uint8_t values[] = {0, 1, 2, 7, 16, 17, 33, 127, 128, 200, 255};
    for (size_t i = 0; i < len; i++) {
        for (size_t v = 0; v < sizeof(values); v++) {
            memcpy(bad, good, len);
            bad[i] = values[v];
            int rc = srv_members_decode(bad, len, &g_b);
            if (rc != 0) {
                assert_int_equal(rc, LATCH_ECORRUPT);
                continue;
            }
            for (uint32_t k = 0; k < g_b.count; k++) {
                assert_true(g_b.m[k].peer_urls_count <= SRV_MEMBER_URLS_MAX);
                assert_true(strlen(srv_member_name(&g_b, &g_b.m[k])) <= SRV_MEMBER_NAME_MAX);
            }
        }
    }
}

static void test_record_refuses_bad_ids_strings_and_versions(void **state)
{
    (void)state;
    uint8_t buf[STORE_CONF_BYTES_MAX];
    fill(&g_a);
    size_t len = encode(&g_a, buf);
    uint8_t copy[STORE_CONF_BYTES_MAX];

    memcpy(copy, buf, len);
    copy[0] = 3; /* a later version */
    assert_int_equal(srv_members_decode(copy, len, &g_b), LATCH_ECORRUPT);

    memcpy(copy, buf, len);
    memcpy(copy + 9 + 8, copy + 9, 8); /* the second id repeats the first */
    assert_int_equal(srv_members_decode(copy, len, &g_b), LATCH_ECORRUPT);

    memcpy(copy, buf, len);
    memset(copy + 9, 0, 8); /* RAFT_NONE */
    assert_int_equal(srv_members_decode(copy, len, &g_b), LATCH_ECORRUPT);

    memcpy(copy, buf, len);
    size_t name_at = 9 + 8 * 4 + 1; /* first block: [len]["n1"] */
    copy[name_at] = '\0';           /* a NUL inside a name */
    assert_int_equal(srv_members_decode(copy, len, &g_b), LATCH_ECORRUPT);

    memcpy(copy, buf, len);
    copy[1] = RAFT_MEMBERS_MAX + 1; /* too many voters */
    assert_int_equal(srv_members_decode(copy, len, &g_b), LATCH_ECORRUPT);
}

static void test_record_encode_refuses_what_does_not_fit(void **state)
{
    (void)state;
    char urls[SRV_MEMBER_URLS_MAX][SRV_MEMBER_URL_MAX + 1];
    const char *ptrs[SRV_MEMBER_URLS_MAX];
    srv_members_init(&g_a);
    int rc = 0;
    for (raft_id id = 1; rc == 0 && id <= 5; id++) {
        for (size_t k = 0; k < SRV_MEMBER_URLS_MAX; k++) {
            snprintf(urls[k], sizeof(urls[k]), "%045d-%llu-%02zu", 0, (unsigned long long)id, k);
            assert_int_equal(strlen(urls[k]), 50);
            ptrs[k] = urls[k];
        }
        struct srv_member_attrs a = {.name = "x", .peer_urls = ptrs, .peer_urls_count = 16};
        rc = srv_members_add(&g_a, id, false, &a);
    }
    /* The table holds what the record cannot: 5 x (2 + 16 x 51) = 4090 bytes of strings
     * fit the table, and the record adds ids and length bytes beyond 4096. */
    assert_int_equal(rc, 0);
    uint8_t buf[STORE_CONF_BYTES_MAX];
    size_t len = 0;
    assert_int_equal(srv_members_encode(&g_a, buf, sizeof(buf), &len), LATCH_ETOOBIG);
    /* One string more does not fit the table either. */
    struct srv_member_attrs one = {.name = "yyyyyyyyyy"};
    assert_int_equal(srv_members_add(&g_a, 6, false, &one), LATCH_ETOOBIG);
    fill(&g_a);
    assert_int_equal(srv_members_encode(&g_a, buf, 20, &len), LATCH_ETOOBIG);
    /* A learner before a voter is not a record this codec writes. */
    g_a.m[0].learner = true;
    assert_int_equal(srv_members_encode(&g_a, buf, sizeof(buf), &len), LATCH_EINVAL);
}

static void test_table_operations_keep_attributes(void **state)
{
    (void)state;
    fill(&g_a);
    assert_non_null(srv_members_find_url(&g_a, "https://node2.example:2480", RAFT_NONE));
    assert_null(srv_members_find_url(&g_a, "https://node2.example:2480", 0x2222));
    static const char *const moved[] = {"http://10.9.9.9:1"};
    struct srv_member_attrs a = {.name = "renamed", .peer_urls = moved, .peer_urls_count = 1};
    assert_int_equal(srv_members_set_attrs(&g_a, 0x2222, &a), 0);
    const struct srv_member *m = srv_members_find(&g_a, 0x2222);
    assert_string_equal(srv_member_name(&g_a, m), "renamed");
    assert_int_equal(m->peer_urls_count, 1);
    assert_string_equal(srv_member_peer_url(&g_a, m, 0), "http://10.9.9.9:1");
    assert_string_equal(srv_member_name(&g_a, srv_members_find(&g_a, 0x1111)), "n1");
    assert_int_equal(srv_members_set_attrs(&g_a, 0x9999, &a), LATCH_ENOTFOUND);

    /* A configuration change keeps the attributes of the members that stay. */
    struct raft_conf_state conf = {
        .voters_count = 2, .voters = {0x1111, 0x4444}, .learners_count = 1, .learners = {0x5555}};
    assert_int_equal(srv_members_from_conf(&conf, &g_a, &g_b), 0);
    assert_int_equal(g_b.count, 3);
    assert_string_equal(srv_member_name(&g_b, &g_b.m[0]), "n1");
    assert_false(g_b.m[1].learner); /* promoted */
    assert_string_equal(srv_member_peer_url(&g_b, &g_b.m[1], 0), "http://10.0.0.4:2480");
    assert_true(g_b.m[2].learner);
    assert_int_equal(g_b.m[2].peer_urls_count, 0);
    struct raft_conf_state back;
    srv_members_conf(&g_b, &back);
    assert_memory_equal(&back, &conf, sizeof(conf));
    assert_int_equal(srv_members_add(&g_b, 0x1111, false, NULL), LATCH_EINVAL);
    assert_int_equal(srv_members_add(&g_b, RAFT_NONE, false, NULL), LATCH_EINVAL);
}

static void test_context_round_trip_and_every_wrong_length_is_corrupt(void **state)
{
    (void)state;
    static const char *const urls[] = {"http://127.0.0.1:1", "http://[::1]:2"};
    struct srv_member_attrs a = {.name = "m4", .peer_urls = urls, .peer_urls_count = 2};
    uint8_t buf[RAFT_CONF_CONTEXT_BYTES_MAX];
    size_t len = 0;
    assert_int_equal(srv_member_context_encode(0xabcdef, 77, &a, buf, sizeof(buf), &len), 0);
    raft_id proposer = 0;
    uint64_t seq = 0;
    assert_int_equal(srv_member_context_decode(buf, len, 0x42, &proposer, &seq, &g_a), 0);
    assert_int_equal(proposer, 0xabcdef);
    assert_int_equal(seq, 77);
    assert_int_equal(g_a.count, 1);
    assert_int_equal(g_a.m[0].id, 0x42);
    assert_string_equal(srv_member_name(&g_a, &g_a.m[0]), "m4");
    assert_int_equal(g_a.m[0].peer_urls_count, 2);
    assert_string_equal(srv_member_peer_url(&g_a, &g_a.m[0], 1), "http://[::1]:2");

    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(srv_member_context_decode(buf, cut, 0x42, &proposer, &seq, &g_a),
                         LATCH_ECORRUPT);
    }
    buf[len] = 0;
    assert_int_equal(srv_member_context_decode(buf, len + 1, 0x42, &proposer, &seq, &g_a),
                     LATCH_ECORRUPT);
    buf[0] = 2; /* unknown version */
    assert_int_equal(srv_member_context_decode(buf, len, 0x42, &proposer, &seq, &g_a),
                     LATCH_ECORRUPT);

    /* Without attributes (promote, remove): an empty block. */
    assert_int_equal(srv_member_context_encode(1, 2, NULL, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, SRV_MEMBER_CONTEXT_FIXED + 2);
    assert_int_equal(srv_member_context_decode(buf, len, 5, &proposer, &seq, &g_a), 0);
    assert_int_equal(g_a.m[0].peer_urls_count, 0);

    char longname[SRV_MEMBER_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct srv_member_attrs big = {.name = longname};
    assert_int_equal(srv_member_context_encode(1, 2, &big, buf, sizeof(buf), &len), LATCH_EINVAL);
    assert_int_equal(srv_member_context_encode(1, 2, &a, buf, 10, &len), LATCH_ETOOBIG);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_identity_round_trip_and_malformed_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/latch-test-identity-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct srv_identity in = {.cluster_id = 0xc1, .member_id = 0xabcdef0123456789, .name = "m1"};
    in.bootstrap_count = 3;
    in.bootstrap[0] = 0xabcdef0123456789;
    in.bootstrap[1] = 2;
    in.bootstrap[2] = 3;
    struct srv_identity out;
    char err[256];
    assert_int_equal(srv_identity_load(dir, &out, err, sizeof(err)), LATCH_ENOTFOUND);
    assert_int_equal(srv_identity_save(dir, &in, err, sizeof(err)), 0);
    assert_int_equal(srv_identity_load(dir, &out, err, sizeof(err)), 0);
    assert_int_equal(out.cluster_id, in.cluster_id);
    assert_int_equal(out.member_id, in.member_id);
    assert_string_equal(out.name, "m1");
    assert_int_equal(out.bootstrap_count, 3);
    assert_int_equal(out.bootstrap[0], in.bootstrap[0]);
    assert_int_equal(out.bootstrap[2], 3);

    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, SRV_IDENTITY_FILE);
    static const char *const bad[] = {
        "latch-identity 2\ncluster-id 1\nmember-id 2\n",      /* a later version */
        "latch-identity 1\nmember-id 2\n",                    /* no cluster id */
        "latch-identity 1\ncluster-id zz\nmember-id 2\n",     /* not hex */
        "latch-identity 1\ncluster-id 0\nmember-id 2\n",      /* zero */
        "latch-identity 1\ncluster-id 1\nmember-id 2\nxyz\n", /* no value */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i]);
        assert_int_equal(srv_identity_load(dir, &out, err, sizeof(err)), LATCH_ECORRUPT);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_v2_round_trip_keeps_ids_roles_and_attributes),
        cmocka_unit_test(test_record_v1_still_decodes_without_attributes),
        cmocka_unit_test(test_record_every_wrong_length_is_corrupt),
        cmocka_unit_test(test_record_every_length_byte_changed_decodes_or_is_corrupt),
        cmocka_unit_test(test_record_refuses_bad_ids_strings_and_versions),
        cmocka_unit_test(test_record_encode_refuses_what_does_not_fit),
        cmocka_unit_test(test_table_operations_keep_attributes),
        cmocka_unit_test(test_context_round_trip_and_every_wrong_length_is_corrupt),
        cmocka_unit_test(test_identity_round_trip_and_malformed_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
