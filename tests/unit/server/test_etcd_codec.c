/*
 * test_etcd_codec.c — etcd's KV messages to store requests and back (server/etcd_codec.c):
 * every field of every request, the compare union's rule, nested txns and their limits,
 * responses packed and unpacked again (so what clients decode is checked, not our structs),
 * sub-response headers holding only the revision, and the exact etcd error texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd_codec.h"
#include "grpc_wire.h"
#include "latch_error.h"

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {.len = strlen(s), .data = (uint8_t *)s};
    return b;
}

static void assert_bytes(const uint8_t *p, uint32_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    if (len > 0) {
        assert_memory_equal(p, want, len);
    }
}

static void test_range_request_keeps_every_field(void **state)
{
    (void)state;
    Etcdserverpb__RangeRequest in = ETCDSERVERPB__RANGE_REQUEST__INIT;
    in.key = bin("a");
    in.range_end = bin("z");
    in.limit = 7;
    in.revision = 9;
    in.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    in.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    in.keys_only = true;
    in.count_only = true;
    in.min_mod_revision = 1;
    in.max_mod_revision = 2;
    in.min_create_revision = 3;
    in.max_create_revision = 4;
    struct store_range_req q;
    etcd_range_req(&in, &q);
    assert_bytes(q.key, q.key_len, "a");
    assert_bytes(q.range_end, q.range_end_len, "z");
    assert_int_equal(q.limit, 7);
    assert_int_equal(q.revision, 9);
    assert_int_equal(q.sort_order, STORE_SORT_DESCEND);
    assert_int_equal(q.sort_target, STORE_SORT_MOD);
    assert_true(q.keys_only && q.count_only);
    assert_int_equal(q.min_mod_revision, 1);
    assert_int_equal(q.max_mod_revision, 2);
    assert_int_equal(q.min_create_revision, 3);
    assert_int_equal(q.max_create_revision, 4);
}

static void test_put_and_delete_requests_keep_every_field(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = bin("k");
    p.value = bin("v");
    p.lease = 42;
    p.prev_kv = true;
    p.ignore_lease = true;
    struct store_put_req pq;
    etcd_put_req(&p, &pq);
    assert_bytes(pq.key, pq.key_len, "k");
    assert_bytes(pq.value, pq.value_len, "v");
    assert_int_equal(pq.lease, 42);
    assert_true(pq.prev_kv && pq.ignore_lease && !pq.ignore_value);

    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = bin("\0");
    d.key.len = 1;
    d.range_end = d.key;
    d.prev_kv = true;
    struct store_delete_req dq;
    etcd_delete_req(&d, &dq);
    assert_int_equal(dq.key_len, 1);
    assert_int_equal(dq.range_end_len, 1);
    assert_true(dq.prev_kv);

    /* Empty byte strings become NULL with length 0 (what store_txn_validate expects). */
    Etcdserverpb__PutRequest empty = ETCDSERVERPB__PUT_REQUEST__INIT;
    etcd_put_req(&empty, &pq);
    assert_null(pq.key);
    assert_int_equal(pq.key_len, 0);
    char why[STORE_ERRMSG_BYTES];
    struct store_op op = {.type = STORE_OP_PUT, .u.put = pq};
    struct store_txn_req t;
    etcd_single_op_txn(&op, &t);
    assert_int_equal(store_txn_validate(&t, why, sizeof(why)), LATCH_EINVAL);
    char msg[ETCD_STATUS_MSG_MAX];
    assert_int_equal(etcd_status(LATCH_EINVAL, why, msg, sizeof(msg)),
                     API_GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(msg, "etcdserver: key is not provided");
}

/* etcd reads the compared number from the field the target names: another one set is 0. */
static void test_compare_takes_the_field_its_target_names(void **state)
{
    (void)state;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    Etcdserverpb__Compare c[3];
    Etcdserverpb__Compare *cp[3];
    for (int i = 0; i < 3; i++) {
        etcdserverpb__compare__init(&c[i]);
        c[i].key = bin("k");
        cp[i] = &c[i];
    }
    c[0].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    c[0].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    c[0].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c[0].mod_revision = 5;
    c[1].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
    c[1].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE; /* the wrong field */
    c[1].lease = 77;
    c[2].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    c[2].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
    c[2].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    c[2].value = bin("xyz");
    Etcdserverpb__TxnRequest in = ETCDSERVERPB__TXN_REQUEST__INIT;
    in.n_compare = 3;
    in.compare = cp;
    struct store_txn_req t;
    const char *why;
    assert_int_equal(etcd_txn_req(&in, &a, &t, &why), 0);
    assert_int_equal(t.compares_count, 3);
    assert_int_equal(t.compares[0].target, STORE_CMP_MOD);
    assert_int_equal(t.compares[0].result, STORE_CMP_GREATER);
    assert_int_equal(t.compares[0].number, 5);
    assert_int_equal(t.compares[1].target, STORE_CMP_VERSION);
    assert_int_equal(t.compares[1].number, 0);
    assert_int_equal(t.compares[2].result, STORE_CMP_NOT_EQUAL);
    assert_bytes(t.compares[2].value, t.compares[2].value_len, "xyz");
    assert_int_equal(t.success_count + t.failure_count, 0);

    /* latch's own FENCE target is not part of the etcd API: its number from an etcd client
     * is an unknown target, which validation refuses. */
    c[0].target = (Etcdserverpb__Compare__CompareTarget)STORE_CMP_FENCE;
    assert_int_equal(etcd_txn_req(&in, &a, &t, &why), 0);
    assert_int_not_equal(t.compares[0].target, STORE_CMP_FENCE);
    assert_int_equal(store_txn_validate(&t, NULL, 0), LATCH_EINVAL);
    latch_arena_close(&a);
}

/* A chain of txns each nested in the success branch of the one above. */
static Etcdserverpb__TxnRequest *nested(Etcdserverpb__TxnRequest *txns,
                                        Etcdserverpb__RequestOp *ops,
                                        Etcdserverpb__RequestOp **opp,
                                        Etcdserverpb__PutRequest *put,
                                        int depth)
{
    for (int i = 0; i < depth; i++) {
        etcdserverpb__txn_request__init(&txns[i]);
        etcdserverpb__request_op__init(&ops[i]);
        opp[i] = &ops[i];
        txns[i].n_success = 1;
        txns[i].success = &opp[i];
        if (i + 1 < depth) {
            ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
            ops[i].request_txn = &txns[i + 1];
        } else {
            ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            ops[i].request_put = put;
        }
    }
    return &txns[0];
}

static void test_nested_txns_translate_down_to_the_depth_limit(void **state)
{
    (void)state;
    enum { MAX = STORE_TXN_DEPTH_MAX + 1 };
    Etcdserverpb__TxnRequest txns[MAX];
    Etcdserverpb__RequestOp ops[MAX];
    Etcdserverpb__RequestOp *opp[MAX];
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = bin("deep");
    put.value = bin("v");
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_txn_req t;
    const char *why;

    assert_int_equal(etcd_txn_req(nested(txns, ops, opp, &put, STORE_TXN_DEPTH_MAX), &a, &t, &why),
                     0);
    const struct store_txn_req *cur = &t;
    for (unsigned i = 1; i < STORE_TXN_DEPTH_MAX; i++) {
        assert_int_equal(cur->success_count, 1);
        assert_int_equal(cur->success[0].type, STORE_OP_TXN);
        cur = cur->success[0].u.txn;
    }
    assert_int_equal(cur->success[0].type, STORE_OP_PUT);
    assert_bytes(cur->success[0].u.put.key, cur->success[0].u.put.key_len, "deep");
    char msg[STORE_ERRMSG_BYTES];
    assert_int_equal(store_txn_validate(&t, msg, sizeof(msg)), 0);

    assert_int_equal(etcd_txn_req(nested(txns, ops, opp, &put, MAX), &a, &t, &why), LATCH_EINVAL);
    assert_string_equal(why, "txn nested too deeply");

    /* A RequestOp with no request set is refused, not taken as an empty op. */
    nested(txns, ops, opp, &put, 1);
    ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST__NOT_SET;
    assert_int_equal(etcd_txn_req(&txns[0], &a, &t, &why), LATCH_EINVAL);
    assert_string_equal(why, "malformed txn");
    latch_arena_close(&a);
}

static struct store_kv kv(const char *key, const char *value, int64_t rev)
{
    struct store_kv k = {.key = (const uint8_t *)key,
                         .key_len = (uint32_t)strlen(key),
                         .value = (const uint8_t *)value,
                         .value_len = value != NULL ? (uint32_t)strlen(value) : 0,
                         .create_revision = rev,
                         .mod_revision = rev + 1,
                         .version = 2,
                         .lease = 0};
    return k;
}

/* Packs m and unpacks it as a client would. */
static ProtobufCMessage *round_trip(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), n);
    ProtobufCMessage *out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    assert_non_null(out);
    return out;
}

static void test_range_response_carries_header_kvs_more_and_count(void **state)
{
    (void)state;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_kv kvs[2] = {kv("a", "1", 3), kv("b", NULL, 5)}; /* keys_only: no value */
    struct store_range_result r = {.kvs = kvs, .kvs_count = 2, .more = true, .count = 9};
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = 11;
    hdr.member_id = 12;
    hdr.revision = 13;
    hdr.raft_term = 14;
    Etcdserverpb__RangeResponse resp;
    assert_int_equal(etcd_range_resp(&r, &hdr, &a, &resp), 0);
    Etcdserverpb__RangeResponse *got = (Etcdserverpb__RangeResponse *)round_trip(&resp.base);
    assert_non_null(got->header);
    assert_int_equal(got->header->cluster_id, 11);
    assert_int_equal(got->header->member_id, 12);
    assert_int_equal(got->header->revision, 13);
    assert_int_equal(got->header->raft_term, 14);
    assert_int_equal(got->n_kvs, 2);
    assert_true(got->more);
    assert_int_equal(got->count, 9);
    assert_int_equal(got->kvs[0]->key.len, 1);
    assert_memory_equal(got->kvs[0]->key.data, "a", 1);
    assert_memory_equal(got->kvs[0]->value.data, "1", 1);
    assert_int_equal(got->kvs[0]->create_revision, 3);
    assert_int_equal(got->kvs[0]->mod_revision, 4);
    assert_int_equal(got->kvs[0]->version, 2);
    assert_int_equal(got->kvs[1]->value.len, 0);
    protobuf_c_message_free_unpacked(&got->base, NULL);
    latch_arena_close(&a);
}

/* A txn's sub-responses: one per op, in order, nested txns too, each with a header that
 * holds only the revision (etcd: {"ResponseDeleteRange":{"header":{"revision":8},...}}); a
 * nested txn's own header is empty, as etcd leaves it. */
static void test_txn_response_sub_headers_hold_only_the_revision(void **state)
{
    (void)state;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_kv prev = kv("k", "old", 2);
    struct store_kv gone[1] = {kv("d", "x", 1)};
    struct store_op_result inner_ops[1];
    memset(inner_ops, 0, sizeof(inner_ops));
    inner_ops[0].type = STORE_OP_PUT;
    struct store_txn_result inner = {
        .succeeded = false, .responses = inner_ops, .responses_count = 1};
    struct store_op_result ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].type = STORE_OP_PUT;
    ops[0].u.put.has_prev = true;
    ops[0].u.put.prev = prev;
    ops[1].type = STORE_OP_DELETE;
    ops[1].u.del.deleted = 1;
    ops[1].u.del.prev_kvs = gone;
    ops[1].u.del.prev_kvs_count = 1;
    ops[2].type = STORE_OP_TXN;
    ops[2].u.txn = &inner;
    struct store_txn_result r = {.succeeded = true, .responses = ops, .responses_count = 3};
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = 1;
    hdr.member_id = 2;
    hdr.revision = 8;
    hdr.raft_term = 3;
    Etcdserverpb__TxnResponse resp;
    assert_int_equal(etcd_txn_resp(&r, &hdr, &a, &resp), 0);
    Etcdserverpb__TxnResponse *got = (Etcdserverpb__TxnResponse *)round_trip(&resp.base);
    assert_true(got->succeeded);
    assert_int_equal(got->header->member_id, 2);
    assert_int_equal(got->n_responses, 3);
    Etcdserverpb__ResponseOp *p = got->responses[0];
    assert_int_equal(p->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
    assert_int_equal(p->response_put->header->revision, 8);
    assert_int_equal(p->response_put->header->member_id, 0);
    assert_int_equal(p->response_put->header->cluster_id, 0);
    assert_memory_equal(p->response_put->prev_kv->value.data, "old", 3);
    Etcdserverpb__ResponseOp *d = got->responses[1];
    assert_int_equal(d->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE);
    assert_int_equal(d->response_delete_range->deleted, 1);
    assert_int_equal(d->response_delete_range->n_prev_kvs, 1);
    assert_int_equal(d->response_delete_range->header->revision, 8);
    Etcdserverpb__ResponseOp *t = got->responses[2];
    assert_int_equal(t->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN);
    assert_false(t->response_txn->succeeded);
    assert_int_equal(t->response_txn->header->revision, 0);
    assert_int_equal(t->response_txn->n_responses, 1);
    assert_int_equal(t->response_txn->responses[0]->response_put->header->revision, 8);
    protobuf_c_message_free_unpacked(&got->base, NULL);
    latch_arena_close(&a);
}

/* etcd's sub-response revisions (apply.go on mvcc's storeTxnWrite): a txn that ends at
 * revision 8 began at 7; a range reads at 7 until something changed, at 8 after; a delete
 * that deleted nothing before any change answers 7, after one 8. */
static void test_txn_sub_revisions_follow_the_changes_made_before_them(void **state)
{
    (void)state;
    struct latch_arena a;
    latch_arena_init(&a, 0);
    struct store_op_result ops[5];
    memset(ops, 0, sizeof(ops));
    ops[0].type = STORE_OP_RANGE;
    ops[1].type = STORE_OP_DELETE; /* deletes nothing */
    ops[2].type = STORE_OP_PUT;
    ops[3].type = STORE_OP_RANGE;
    ops[4].type = STORE_OP_DELETE; /* deletes nothing, after a change */
    struct store_txn_result r = {.succeeded = true, .responses = ops, .responses_count = 5};
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.revision = 8;
    Etcdserverpb__TxnResponse resp;
    assert_int_equal(etcd_txn_resp(&r, &hdr, &a, &resp), 0);
    assert_int_equal(resp.responses[0]->response_range->header->revision, 7);
    assert_int_equal(resp.responses[1]->response_delete_range->header->revision, 7);
    assert_int_equal(resp.responses[2]->response_put->header->revision, 8);
    assert_int_equal(resp.responses[3]->response_range->header->revision, 8);
    assert_int_equal(resp.responses[4]->response_delete_range->header->revision, 8);
    /* read-only: every range at the txn's revision */
    struct store_txn_result ro = {.succeeded = true, .responses = ops, .responses_count = 1};
    assert_int_equal(etcd_txn_resp(&ro, &hdr, &a, &resp), 0);
    assert_int_equal(resp.responses[0]->response_range->header->revision, 8);
    latch_arena_close(&a);
}

/* The exact codes and texts of ETCD-API.md §4.10 (clients map errors by text). */
static void test_errors_get_etcds_codes_and_texts(void **state)
{
    (void)state;
    static const struct {
        int err;
        const char *why;
        int status;
        const char *text;
    } cases[] = {
        {LATCH_EINVAL, "key is not provided", 3, "etcdserver: key is not provided"},
        {LATCH_EINVAL, "value is provided", 3, "etcdserver: value is provided"},
        {LATCH_EINVAL, "lease is provided", 3, "etcdserver: lease is provided"},
        {LATCH_ENOKEY, NULL, 3, "etcdserver: key not found"},
        {LATCH_ETOOMANYOPS, NULL, 3, "etcdserver: too many operations in txn request"},
        {LATCH_EDUPKEY, NULL, 3, "etcdserver: duplicate key given in txn request"},
        {LATCH_ETOOBIG, NULL, 3, "etcdserver: request is too large"},
        {LATCH_ECOMPACTED, NULL, 11, "etcdserver: mvcc: required revision has been compacted"},
        {LATCH_EFUTUREREV, NULL, 11, "etcdserver: mvcc: required revision is a future revision"},
        {LATCH_ENOTFOUND, NULL, 5, "etcdserver: requested lease not found"},
        {LATCH_EEXIST, NULL, 9, "etcdserver: lease already exists"},
        {LATCH_ENOSPACE, NULL, 8, "etcdserver: mvcc: database space exceeded"},
        {LATCH_ENOLEADER, NULL, 14, "etcdserver: no leader"},
        {LATCH_ESHUTDOWN, NULL, 14, "etcdserver: server stopped"},
        {LATCH_ENOTLEADER, NULL, 9, "etcdserver: not leader"},
        {LATCH_EUNCOMMITTED, NULL, 8, "etcdserver: too many requests"},
        {LATCH_ELEADERCHANGED, NULL, 14, "etcdserver: leader changed"},
        {LATCH_ETIMEDOUT, NULL, 14, "etcdserver: request timed out"},
        {LATCH_ELEADERFAIL, NULL, 14,
         "etcdserver: request timed out, possibly due to previous leader failure"},
        {LATCH_ECONNLOST, NULL, 14,
         "etcdserver: request timed out, possibly due to connection lost"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[ETCD_STATUS_MSG_MAX];
        assert_int_equal(etcd_status(cases[i].err, cases[i].why, msg, sizeof(msg)),
                         cases[i].status);
        assert_string_equal(msg, cases[i].text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_request_keeps_every_field),
        cmocka_unit_test(test_put_and_delete_requests_keep_every_field),
        cmocka_unit_test(test_compare_takes_the_field_its_target_names),
        cmocka_unit_test(test_nested_txns_translate_down_to_the_depth_limit),
        cmocka_unit_test(test_range_response_carries_header_kvs_more_and_count),
        cmocka_unit_test(test_txn_response_sub_headers_hold_only_the_revision),
        cmocka_unit_test(test_txn_sub_revisions_follow_the_changes_made_before_them),
        cmocka_unit_test(test_errors_get_etcds_codes_and_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
