/*
 * fuzz_peer_snap_chunk.c — libFuzzer target for srv_peer_snap_rx_chunk, the receiver's check of
 * every SnapshotChunk a peer streams on /latch.raft.v1.Raft/Snapshot (server/peer.c).
 *
 * The input is a stream: records of a 2-byte little-endian length and that many bytes, each
 * one chunk, fed in order to one receiver (cluster id 7, this node 2). Properties on every
 * input: no crash, no read outside the input, no leak (ASan/UBSan); only the documented
 * errors; a refused chunk leaves the receiver unchanged; the bytes taken never pass the
 * announced size, and a complete stream took exactly that size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct srv_peer_snap_rx rx;
    srv_peer_snap_rx_init(&rx, 7, 2);
    size_t off = 0;
    while (size - off >= 2) {
        size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
        off += 2;
        if (len > size - off) {
            len = size - off;
        }
        /* A copy of exactly len bytes, so ASan sees any read past the chunk. */
        uint8_t *chunk = malloc(len > 0 ? len : 1);
        if (chunk == NULL) {
            return 0;
        }
        if (len > 0) {
            memcpy(chunk, data + off, len);
        }
        off += len;
        struct srv_peer_snap_rx before = rx;
        Latch__Raft__V1__SnapshotChunk *c = NULL;
        const uint8_t *bytes = NULL;
        size_t n = 0;
        bool first = false;
        const char *why = NULL;
        int rc = srv_peer_snap_rx_chunk(&rx, chunk, len, &c, &bytes, &n, &first, &why);
        LATCH_ASSERTF(rc == 0 || rc == LATCH_EINVAL || rc == LATCH_ENOTMEMBER ||
                          rc == LATCH_EPROTO || rc == LATCH_ETOOBIG || rc == LATCH_ENOMEM,
                      "chunk gave %s", latch_error_name(rc));
        if (rc != 0) {
            LATCH_ASSERT(c == NULL && why != NULL);
            LATCH_ASSERT(memcmp(&before, &rx, sizeof(rx)) == 0);
        } else {
            LATCH_ASSERT(c != NULL && why == NULL && rx.have_msg);
            LATCH_ASSERT(n <= SRV_PEER_SNAP_CHUNK_BYTES && (n == 0 || bytes != NULL));
            LATCH_ASSERT(rx.offset == before.offset + n && rx.offset <= rx.size);
            LATCH_ASSERT(rx.msg.type == RAFT_MSG_SNAPSHOT && rx.msg.to == 2);
            LATCH_ASSERT(first == !before.have_msg);
            if (n > 0) {
                volatile uint8_t sum = 0;
                for (size_t i = 0; i < n; i++) {
                    sum = (uint8_t)(sum + bytes[i]); /* the data is readable */
                }
                (void)sum;
            }
        }
        srv_peer_snap_chunk_free(c);
        free(chunk);
    }
    if (srv_peer_snap_rx_complete(&rx) == 0) {
        LATCH_ASSERT(rx.last_seen && rx.offset == rx.size);
    }
    return 0;
}
