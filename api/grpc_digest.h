/*
 * grpc_digest.h — SHA-256 for what travels on the wire with a checksum of its own: etcd's
 * Snapshot stream ends with the SHA-256 of every byte before it (ETCD-API.md §3), which
 * `etcdctl snapshot restore` verifies. api/ owns OpenSSL (DESIGN §1), so server/ computes
 * the digest through this small wrapper over its EVP interface.
 *
 * A context belongs to one thread at a time; nothing is shared between contexts.
 */
#ifndef API_GRPC_DIGEST_H
#define API_GRPC_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define API_SHA256_BYTES 32u

struct api_sha256;

/* A fresh context in *out (free with api_sha256_free). Returns 0 or LATCH_ENOMEM. */
int api_sha256_new(struct api_sha256 **out);

/* Adds len bytes at p (borrowed for the call; may be NULL when len is 0). */
void api_sha256_update(struct api_sha256 *h, const void *p, size_t len);

/* Writes the digest of everything added to out; the context may not be updated after. */
void api_sha256_final(struct api_sha256 *h, uint8_t out[API_SHA256_BYTES]);

void api_sha256_free(struct api_sha256 *h); /* NULL is ignored */

#endif /* API_GRPC_DIGEST_H */
