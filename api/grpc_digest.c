/*
 * grpc_digest.c — SHA-256 over OpenSSL's EVP interface (see grpc_digest.h).
 */
#include "grpc_digest.h"

#include <openssl/evp.h>

#include "latch_assert.h"
#include "latch_error.h"

struct api_sha256 {
    EVP_MD_CTX *ctx;
};

int api_sha256_new(struct api_sha256 **out)
{
    struct api_sha256 *h = OPENSSL_zalloc(sizeof(*h));
    if (h == NULL) {
        return LATCH_ENOMEM;
    }
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        api_sha256_free(h);
        return LATCH_ENOMEM;
    }
    *out = h;
    return 0;
}

void api_sha256_update(struct api_sha256 *h, const void *p, size_t len)
{
    LATCH_ASSERT(h != NULL);
    if (len > 0) {
        int ok = EVP_DigestUpdate(h->ctx, p, len);
        LATCH_ASSERTF(ok == 1, "EVP_DigestUpdate: %d", ok);
    }
}

void api_sha256_final(struct api_sha256 *h, uint8_t out[API_SHA256_BYTES])
{
    unsigned n = 0;
    LATCH_ASSERT(h != NULL);
    int ok = EVP_DigestFinal_ex(h->ctx, out, &n);
    LATCH_ASSERTF(ok == 1 && n == API_SHA256_BYTES, "EVP_DigestFinal_ex: %d, %u bytes", ok, n);
}

void api_sha256_free(struct api_sha256 *h)
{
    if (h != NULL) {
        EVP_MD_CTX_free(h->ctx);
        OPENSSL_free(h);
    }
}
