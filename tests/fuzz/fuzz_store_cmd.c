/*
 * fuzz_store_cmd.c — libFuzzer target for store_cmd_decode, the parser of the bytes every
 * Raft entry carries into store_apply (they come from the leader over the network).
 *
 * Properties checked on every input: decoding never reads outside the input, never crashes
 * and never leaks (ASan/UBSan); whatever decodes validates without crashing; and the
 * encoding is canonical: re-encoding a decoded command of the current format version gives
 * back exactly the input bytes, so two replicas can never read one entry two ways (an entry of
 * an older version re-encodes in the current one, which decodes again).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latch_assert.h"
#include "latch_error.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct latch_arena a;
    struct store_cmd c;

    latch_arena_init(&a, 0);
    int rc = store_cmd_decode(data, size, &a, &c);
    LATCH_ASSERTF(rc == 0 || rc == LATCH_EINVAL || rc == LATCH_ENOMEM, "decode gave %s",
                  latch_error_name(rc));
    if (rc == 0) {
        if (c.type == STORE_CMD_TXN) {
            char msg[STORE_ERRMSG_BYTES];
            (void)store_txn_validate(&c.u.txn, msg, sizeof(msg));
        }
        size_t need = store_cmd_size(&c);
        uint8_t *buf = malloc(need > 0 ? need : 1);
        size_t len = 0;
        LATCH_ASSERT(buf != NULL);
        int erc = store_cmd_encode(&c, buf, need, &len);
        LATCH_ASSERTF(erc == 0, "a decoded command does not encode: %s", latch_error_name(erc));
        if (buf[0] == data[0]) {
            LATCH_ASSERTF(len == size && memcmp(buf, data, size) == 0,
                          "encoding is not canonical: %zu bytes in, %zu out", size, len);
        } else {
            /* An entry of an older format version re-encodes in the current one, which must
             * decode again. */
            struct latch_arena a2;
            struct store_cmd c2;
            latch_arena_init(&a2, 0);
            int drc = store_cmd_decode(buf, len, &a2, &c2);
            LATCH_ASSERTF(drc == 0 || drc == LATCH_ENOMEM, "re-encoded old entry: %s",
                          latch_error_name(drc));
            LATCH_ASSERT(drc != 0 || c2.type == c.type);
            latch_arena_close(&a2);
        }
        free(buf);
    }
    latch_arena_close(&a);
    return 0;
}
