/*
 * grpc_wire.h — the byte-level pieces of gRPC over HTTP/2 that need no socket and no nghttp2:
 * status codes, the 5-byte length-prefixed message framing, the grpc-timeout header and the
 * percent-encoding of grpc-message (ETCD-API.md §5; grpc PROTOCOL-HTTP2.md).
 *
 * Everything here is a pure function over caller-owned memory: nothing allocates, nothing
 * keeps a pointer beyond what each comment states. That keeps the HTTP/2 layer free to give
 * each stream its own fixed buffer and lets every corner case be unit tested byte by byte.
 */
#ifndef API_GRPC_WIRE_H
#define API_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* The canonical gRPC status codes, sent as the decimal value of the grpc-status trailer. */
enum api_grpc_status {
    API_GRPC_STATUS_OK = 0,
    API_GRPC_STATUS_CANCELLED = 1,
    API_GRPC_STATUS_UNKNOWN = 2,
    API_GRPC_STATUS_INVALID_ARGUMENT = 3,
    API_GRPC_STATUS_DEADLINE_EXCEEDED = 4,
    API_GRPC_STATUS_NOT_FOUND = 5,
    API_GRPC_STATUS_ALREADY_EXISTS = 6,
    API_GRPC_STATUS_PERMISSION_DENIED = 7,
    API_GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
    API_GRPC_STATUS_FAILED_PRECONDITION = 9,
    API_GRPC_STATUS_ABORTED = 10,
    API_GRPC_STATUS_OUT_OF_RANGE = 11,
    API_GRPC_STATUS_UNIMPLEMENTED = 12,
    API_GRPC_STATUS_INTERNAL = 13,
    API_GRPC_STATUS_UNAVAILABLE = 14,
    API_GRPC_STATUS_DATA_LOSS = 15,
    API_GRPC_STATUS_UNAUTHENTICATED = 16,
};

/* Number of defined status codes (0 … API_GRPC_STATUS_COUNT - 1). */
#define API_GRPC_STATUS_COUNT 17

/*
 * The upper-case name of code ("OK", "CANCELLED", …) for logs; "UNKNOWN" for any value
 * outside 0–16. Never NULL; the string is static.
 */
const char *api_grpc_status_name(int code);

/* Size of the prefix before every gRPC message: 1 flag byte + 4-byte big-endian length. */
#define API_GRPC_FRAME_HEADER_SIZE 5

/*
 * Writes the prefix for an uncompressed message of len bytes into out. The server never
 * compresses (clients would then need grpc-encoding), so the flag byte is always 0.
 */
void api_grpc_frame_header(uint8_t out[API_GRPC_FRAME_HEADER_SIZE], uint32_t len);

/*
 * Reads a complete prefix: *len_out gets the declared message length. Returns 0, or
 * LATCH_EINVAL when the flag byte is not 0 (1 = compressed, which no grpc-encoding we accept
 * allows; anything else is garbage), or LATCH_ETOOBIG when the length exceeds max. The one
 * check shared by api_grpc_decoder_feed and servers that buffer each message separately.
 */
int api_grpc_frame_prefix_check(const uint8_t prefix[API_GRPC_FRAME_HEADER_SIZE],
                                size_t max,
                                uint32_t *len_out);

/*
 * Incremental decoder for one stream's request body. A DATA frame may carry part of a
 * message or several messages, so the stream keeps one of these and feeds it every chunk.
 * Storage is the caller's (x_init, no close needed); fields are private to grpc_wire.c.
 */
struct api_grpc_decoder {
    uint8_t *buf;    /* borrowed from the caller for the decoder's lifetime */
    size_t buf_size; /* the largest message accepted, in bytes */
    uint8_t hdr[API_GRPC_FRAME_HEADER_SIZE];
    size_t hdr_len;    /* prefix bytes collected so far */
    uint32_t body_len; /* declared length of the current message, once hdr_len == 5 */
    size_t body_have;  /* body bytes copied into buf so far */
    int err;           /* sticky error: 0 or the negative code already returned */
};

/*
 * Prepares d to decode messages of at most buf_size bytes into buf (borrowed; it must stay
 * valid while d is used and may be NULL only when buf_size is 0). Returns 0.
 */
int api_grpc_decoder_init(struct api_grpc_decoder *d, uint8_t *buf, size_t buf_size);

/*
 * Consumes bytes of data (len may be 0) until one complete message is available, and sets
 * *consumed to how many bytes of data it used; the caller feeds the rest again. Returns:
 *   1             a message is ready: *msg points into the decoder's buf (borrowed, valid
 *                 until the next feed) and *msg_len is its size (0 is a valid size);
 *   0             all of data was consumed and more bytes are needed (*msg = NULL);
 *   LATCH_EINVAL  the flag byte is 1 (compressed, but no compression is ever negotiated:
 *                 answer UNIMPLEMENTED) or neither 0 nor 1 (answer INTERNAL); see
 *                 api_grpc_decoder_flag();
 *   LATCH_ETOOBIG the declared length exceeds buf_size (answer RESOURCE_EXHAUSTED with
 *                 api_grpc_too_large_message() and api_grpc_decoder_declared_len()).
 * Errors are sticky: the stream is unusable and every later feed returns the same code
 * without consuming. *consumed counts the bytes used up to the error.
 */
int api_grpc_decoder_feed(struct api_grpc_decoder *d,
                          const uint8_t *data,
                          size_t len,
                          size_t *consumed,
                          const uint8_t **msg,
                          size_t *msg_len);

/* The flag byte of the current message (meaningful once the first prefix byte arrived). */
uint8_t api_grpc_decoder_flag(const struct api_grpc_decoder *d);

/* The declared length of the current message (meaningful once its 5-byte prefix arrived). */
uint32_t api_grpc_decoder_declared_len(const struct api_grpc_decoder *d);

/* Longest text api_grpc_too_large_message() can produce, NUL included (two 20-digit values). */
#define API_GRPC_TOO_LARGE_MESSAGE_MAX 96

/*
 * Writes "grpc: received message larger than max (<got> vs. <max>)" into out (cap bytes,
 * NUL-terminated) — grpc-go's exact wording, which clients may match on. Returns 0, or
 * LATCH_ETOOBIG when cap is too small (out then holds a truncated, terminated prefix).
 */
int api_grpc_too_large_message(char *out, size_t cap, uint64_t got, uint64_t max);

/*
 * Parses a grpc-timeout value (s, len bytes, need not be NUL-terminated): 1–8 ASCII digits
 * then one unit of H, M, S, m (milli), u (micro) or n (nano). *ms_out gets milliseconds
 * rounded up, so a tiny positive timeout never becomes "no time at all" ("1n" is 1, "0m" is
 * 0). Eight digits of hours is about 3.6e14 ms, so no input can overflow. Returns 0 or
 * LATCH_EINVAL (empty, no digits, more than 8 digits, sign, space, unknown or missing unit);
 * *ms_out is left untouched on error.
 */
int api_grpc_timeout_parse(const char *s, size_t len, uint64_t *ms_out);

/*
 * Percent-encodes the NUL-terminated msg for the grpc-message trailer: every byte outside
 * 0x20–0x7E, and '%' itself, becomes "%XX" with upper-case hex (grpc-go encodeGrpcMessage).
 * Returns the encoded length without the NUL, like snprintf. When cap > 0, out always gets a
 * NUL-terminated result; if it is too small, only whole units fit (never half of a "%XX",
 * which the client would show literally).
 */
size_t api_grpc_message_encode(const char *msg, char *out, size_t cap);

/*
 * Decodes the grpc-message value in (len bytes, as nghttp2 hands header values: not
 * NUL-terminated). "%XX" with two hex digits (either case) becomes that byte; any other '%'
 * is kept literally, as the gRPC spec asks decoders to do. Returns the decoded length without
 * the NUL (it may contain NUL bytes from "%00"); truncation rules as for encode.
 */
size_t api_grpc_message_decode(const char *in, size_t len, char *out, size_t cap);

/*
 * A queue of framed messages waiting for a stream's data provider (both halves use one per
 * streaming call). buf[off, len) is queued; cap is the allocation. Zero-initialise it; free
 * with api_grpc_queue_free. Space is made by compacting when at least half of the buffer is
 * already taken (so each byte moves O(1) times), by doubling otherwise.
 */
struct api_grpc_queue {
    uint8_t *buf; /* owned */
    size_t off, len, cap;
};

/* Appends msg (len bytes; msg may be NULL when len is 0) with its 5-byte prefix. Returns 0,
 * LATCH_ETOOBIG (len over 4 GiB - 1) or LATCH_ENOMEM (the queue is unchanged). */
int api_grpc_queue_push(struct api_grpc_queue *q, const uint8_t *msg, size_t len);

/* Moves up to cap queued bytes into out (a data provider's buffer); returns how many. */
size_t api_grpc_queue_take(struct api_grpc_queue *q, uint8_t *out, size_t cap);

/* Bytes queued and not yet taken. */
size_t api_grpc_queue_bytes(const struct api_grpc_queue *q);

/* Drops what is queued (keeps the allocation). */
void api_grpc_queue_clear(struct api_grpc_queue *q);

void api_grpc_queue_free(struct api_grpc_queue *q);

#endif /* API_GRPC_WIRE_H */
