/*
 * grpc_pb.c — protobuf-c glue for gRPC handlers (see grpc_pb.h).
 *
 * Messages are packed into a stack buffer when small (most etcd answers are), into a heap
 * buffer otherwise; the server copies them into the call's output either way.
 */
#define _POSIX_C_SOURCE 200809L

#include "grpc_pb.h"

#include <stdio.h>
#include <stdlib.h>

#include "grpc_wire.h"
#include "latch_error.h"

#define API_PB_STACK_BYTES 512

ProtobufCMessage *api_call_unpack(struct api_call *call,
                                  const ProtobufCMessageDescriptor *desc,
                                  const uint8_t *req,
                                  size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, req);
    if (m == NULL) {
        /* protobuf-c gives no reason; name what was expected. */
        char text[160];
        snprintf(text, sizeof(text), "grpc: error unmarshalling request: invalid %s (%zu bytes)",
                 desc->name, len);
        api_call_fail(call, API_GRPC_STATUS_INTERNAL, text);
    }
    return m;
}

/* Packs m into buf when it fits, else into *heap (set; the caller frees it). Returns the
 * packed bytes, or NULL when out of memory. */
static const uint8_t *pack(const ProtobufCMessage *m, uint8_t *buf, size_t *len, uint8_t **heap)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *out = buf;
    *heap = NULL;
    if (n > API_PB_STACK_BYTES) {
        out = *heap = malloc(n);
        if (out == NULL) {
            return NULL;
        }
    }
    *len = protobuf_c_message_pack(m, out);
    return out;
}

int api_call_reply_pb(struct api_call *call, const ProtobufCMessage *m)
{
    uint8_t buf[API_PB_STACK_BYTES];
    uint8_t *heap;
    size_t len = 0;
    const uint8_t *bytes = pack(m, buf, &len, &heap);
    if (bytes == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return LATCH_ENOMEM;
    }
    int rc = api_call_reply(call, bytes, len);
    free(heap);
    return rc;
}

int api_call_send_pb(struct api_call *call, const ProtobufCMessage *m, bool *would_block)
{
    uint8_t buf[API_PB_STACK_BYTES];
    uint8_t *heap;
    size_t len = 0;
    const uint8_t *bytes = pack(m, buf, &len, &heap);
    if (bytes == NULL) {
        return LATCH_ENOMEM;
    }
    int rc = api_call_send(call, bytes, len, would_block);
    free(heap);
    return rc;
}
