/*
 * test_proto.c — the generated protobuf-c code of api/proto: etcd's field numbers on the
 * wire (golden bytes written by hand from the proto3 encoding rules, independent of the
 * .proto files), the gRPC service and method names clients put in :path, and round trips
 * of the messages with oneofs that the server will depend on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "latch/raft/raft.pb-c.h"
#include "latch/v1/latch.pb-c.h"
#include "mvccpb/kv.pb-c.h"
#include "v3electionpb/v3election.pb-c.h"
#include "v3lockpb/v3lock.pb-c.h"

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {.len = strlen(s), .data = (uint8_t *)s};
    return b;
}

/* Packs m and compares with the expected bytes. */
static void expect_bytes(const ProtobufCMessage *m, const uint8_t *want, size_t want_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), n);
    assert_int_equal(n, want_len);
    assert_memory_equal(buf, want, want_len);
    free(buf);
}

/* PutRequest: key = 1, value = 2, lease = 3, prev_kv = 4 (etcd 3.4). */
static void test_put_request_uses_etcds_field_numbers(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = bin("foo");
    put.value = bin("bar");
    put.lease = 5;
    put.prev_kv = 1;
    static const uint8_t want[] = {0x0a, 3,   'f', 'o',  'o', 0x12, 3,
                                   'b',  'a', 'r', 0x18, 5,   0x20, 1};
    expect_bytes(&put.base, want, sizeof(want));
}

/* KeyValue: key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6. */
static void test_key_value_uses_etcds_field_numbers(void **state)
{
    (void)state;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key = bin("k");
    kv.create_revision = 2;
    kv.mod_revision = 3;
    kv.version = 1;
    kv.value = bin("v");
    kv.lease = 7;
    static const uint8_t want[] = {0x0a, 1, 'k', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 1, 'v', 0x30, 7};
    expect_bytes(&kv.base, want, sizeof(want));
}

/* RangeRequest.range_end = 2, limit = 3, revision = 4, sort_order = 5, sort_target = 6,
 * max_create_revision = 13 (Mutex needs it); ResponseHeader revision = 3. */
static void test_range_request_and_header_field_numbers(void **state)
{
    (void)state;
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = bin("a");
    r.range_end = bin("b");
    r.limit = 1;
    r.revision = 9;
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    r.max_create_revision = 4;
    static const uint8_t want[] = {0x0a, 1, 'a',  0x12, 1,    'b', 0x18, 1,
                                   0x20, 9, 0x28, 2,    0x30, 2,   0x68, 4};
    expect_bytes(&r.base, want, sizeof(want));
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = 1;
    h.member_id = 2;
    h.revision = 3;
    h.raft_term = 4;
    static const uint8_t hwant[] = {0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4};
    expect_bytes(&h.base, hwant, sizeof(hwant));
}

/* :path is /<package>.<Service>/<Method>: the descriptors must carry etcd's names. */
static void test_service_descriptors_carry_grpc_names(void **state)
{
    (void)state;
    const struct {
        const ProtobufCServiceDescriptor *d;
        const char *name;
        const char *method;
    } cases[] = {
        {&etcdserverpb__kv__descriptor, "etcdserverpb.KV", "Range"},
        {&etcdserverpb__kv__descriptor, "etcdserverpb.KV", "Txn"},
        {&etcdserverpb__watch__descriptor, "etcdserverpb.Watch", "Watch"},
        {&etcdserverpb__lease__descriptor, "etcdserverpb.Lease", "LeaseKeepAlive"},
        {&etcdserverpb__cluster__descriptor, "etcdserverpb.Cluster", "MemberList"},
        {&etcdserverpb__maintenance__descriptor, "etcdserverpb.Maintenance", "Snapshot"},
        {&etcdserverpb__auth__descriptor, "etcdserverpb.Auth", "Authenticate"},
        {&v3lockpb__lock__descriptor, "v3lockpb.Lock", "Unlock"},
        {&v3electionpb__election__descriptor, "v3electionpb.Election", "Observe"},
        {&latch__v1__latch__descriptor, "latch.v1.Latch", "Acquire"},
        {&latch__raft__v1__raft__descriptor, "latch.raft.v1.Raft", "Send"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(cases[i].d->name, cases[i].name);
        assert_non_null(
            protobuf_c_service_descriptor_get_method_by_name(cases[i].d, cases[i].method));
    }
    assert_null(
        protobuf_c_service_descriptor_get_method_by_name(&etcdserverpb__kv__descriptor, "Nope"));
    assert_int_equal(etcdserverpb__kv__descriptor.n_methods, 5);
    assert_int_equal(etcdserverpb__watch__descriptor.n_methods, 1);
}

/* A Txn with a compare (oneof target_union) and a put (oneof request) survives a round
 * trip, as etcd's Mutex sends it. */
static void test_txn_with_oneofs_round_trips(void **state)
{
    (void)state;
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.key = bin("lock/1");
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp.create_revision = 0;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = bin("lock/1");
    put.lease = 99;
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &put;
    Etcdserverpb__Compare *cmps[] = {&cmp};
    Etcdserverpb__RequestOp *ops[] = {&op};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 1;
    txn.success = ops;

    size_t n = etcdserverpb__txn_request__get_packed_size(&txn);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(etcdserverpb__txn_request__pack(&txn, buf), n);
    Etcdserverpb__TxnRequest *back = etcdserverpb__txn_request__unpack(NULL, n, buf);
    assert_non_null(back);
    assert_int_equal(back->n_compare, 1);
    assert_int_equal(back->compare[0]->target_union_case,
                     ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION);
    assert_int_equal(back->compare[0]->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE);
    assert_int_equal(back->n_success, 1);
    assert_int_equal(back->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
    assert_int_equal(back->success[0]->request_put->lease, 99);
    assert_memory_equal(back->success[0]->request_put->key.data, "lock/1", 6);
    etcdserverpb__txn_request__free_unpacked(back, NULL);
    free(buf);
}

/* Garbage and truncated input is refused, never read past its end (ASan watches). */
static void test_unpack_refuses_malformed_bytes(void **state)
{
    (void)state;
    static const uint8_t truncated[] = {0x0a, 10, 'f', 'o'}; /* length 10, 2 bytes follow */
    assert_null(etcdserverpb__put_request__unpack(NULL, sizeof(truncated), truncated));
    static const uint8_t bad_wire_type[] = {0x0f, 0x00};
    assert_null(etcdserverpb__put_request__unpack(NULL, sizeof(bad_wire_type), bad_wire_type));
    /* An empty message is valid (StatusRequest arrives as zero bytes). */
    Etcdserverpb__StatusRequest *st = etcdserverpb__status_request__unpack(NULL, 0, NULL);
    assert_non_null(st);
    etcdserverpb__status_request__free_unpacked(st, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_request_uses_etcds_field_numbers),
        cmocka_unit_test(test_key_value_uses_etcds_field_numbers),
        cmocka_unit_test(test_range_request_and_header_field_numbers),
        cmocka_unit_test(test_service_descriptors_carry_grpc_names),
        cmocka_unit_test(test_txn_with_oneofs_round_trips),
        cmocka_unit_test(test_unpack_refuses_malformed_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
