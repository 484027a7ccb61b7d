/*
 * grpc_pb.h — protobuf-c glue for gRPC handlers: unpack a request, pack an answer.
 */
#ifndef API_GRPC_PB_H
#define API_GRPC_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "grpc_server.h"

/*
 * Unpacks req (len bytes) as a desc message. Returns it (free with
 * protobuf_c_message_free_unpacked(m, NULL)), or NULL after answering call, as grpc-go does,
 * with INTERNAL "grpc: error unmarshalling request: <reason>" (out of memory is
 * RESOURCE_EXHAUSTED). call is consumed only when NULL is returned.
 */
ProtobufCMessage *api_call_unpack(struct api_call *call,
                                  const ProtobufCMessageDescriptor *desc,
                                  const uint8_t *req,
                                  size_t len);

/* Packs m and answers call with it: api_call_reply's contract (and its return values), plus
 * LATCH_ENOMEM after failing call RESOURCE_EXHAUSTED when the packing buffer cannot be had. */
int api_call_reply_pb(struct api_call *call, const ProtobufCMessage *m);

/* Packs m and queues it on a streaming call: api_call_send's contract. */
int api_call_send_pb(struct api_call *call, const ProtobufCMessage *m, bool *would_block);

#endif /* API_GRPC_PB_H */
