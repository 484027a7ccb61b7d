/*
 * fuzz_peer_batch.c — libFuzzer target for srv_peer_batch_decode, the parser of every Raft
 * message batch a peer sends (server/peer.c).
 *
 * Properties on every input: no crash, no read outside the input, no leak (ASan/UBSan);
 * whatever decodes is a batch the encoder accepts again, and decoding that encoding gives
 * the same messages field for field (so a decoded batch is always one the node could have
 * been sent).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void assert_same_msg(const struct raft_msg *a, const struct raft_msg *b)
{
    LATCH_ASSERT(a->type == b->type && a->from == b->from && a->to == b->to);
    LATCH_ASSERT(a->term == b->term && a->log_term == b->log_term && a->index == b->index);
    LATCH_ASSERT(a->commit == b->commit && a->reject_hint == b->reject_hint);
    LATCH_ASSERT(a->context == b->context && a->reject == b->reject);
    LATCH_ASSERT(a->entries_count == b->entries_count);
    for (uint32_t i = 0; i < a->entries_count; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        LATCH_ASSERT(x->term == y->term && x->index == y->index && x->type == y->type);
        LATCH_ASSERT(x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct srv_peer_batch b;
    int rc = srv_peer_batch_decode(data, size, &b);
    LATCH_ASSERTF(rc == 0 || rc == LATCH_EINVAL || rc == LATCH_ENOMEM, "decode gave %s",
                  latch_error_name(rc));
    if (rc != 0) {
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = srv_peer_batch_encode(b.cluster_id, b.msgs, b.msgs_count, &buf, &len);
    LATCH_ASSERTF(rc == 0 || rc == LATCH_ENOMEM, "re-encode gave %s", latch_error_name(rc));
    if (rc == 0) {
        struct srv_peer_batch b2;
        LATCH_ASSERT(srv_peer_batch_decode(buf, len, &b2) == 0);
        LATCH_ASSERT(b2.cluster_id == b.cluster_id && b2.msgs_count == b.msgs_count);
        for (size_t i = 0; i < b.msgs_count; i++) {
            assert_same_msg(&b.msgs[i], &b2.msgs[i]);
        }
        srv_peer_batch_release(&b2);
        free(buf);
    }
    srv_peer_batch_release(&b);
    return 0;
}
