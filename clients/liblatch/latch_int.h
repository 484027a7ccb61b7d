/*
 * latch_int.h — liblatch's private declarations shared by its files (not installed).
 */
#ifndef LATCH_INT_H
#define LATCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latch/latch.h"
#include "latch/v1/latch.pb-c.h" /* ProtobufCMessage (protobuf-c itself belongs to api/) */

/* Maps a gRPC status and its message to a LATCH_E* code (see latch.h). */
int latch_status_to_err(int grpc_status, const char *message);

/* A result owning its storage: what latch_result_free() frees. */
struct latch_result_priv {
    struct latch_result pub;
    char *message;
    ProtobufCMessage *pb; /* the unpacked response the pointers of pub point into */
    void *arrays;         /* children / grants / op results */
    uint8_t *raw;
    uint64_t sent_at; /* loop time (ms) when the answered attempt was started */
};

/* A result with err/message only (err != 0) or an empty OK one; NULL on ENOMEM. */
struct latch_result *latch_result_new(int err, int grpc_status, const char *message);

/* The client's loop (for the blocking layer). */
uv_loop_t *latch_client_loop(struct latch_client *c);

#endif /* LATCH_INT_H */
