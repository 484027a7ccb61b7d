/*
 * seed_grpc_conn.c — writes the seed corpus of fuzz_grpc_conn into the dir argv[1]: client
 * byte streams (after the preface the harness sends) that reach each kind of call, in h2c
 * and TLS mode, plus a raw one with its own preface. Headers are HPACK literals without
 * indexing and without Huffman coding, which every decoder accepts.
 * Rerun it when the harness changes: `build/fuzz/seed_grpc_conn tests/fuzz/corpus/grpc_conn`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    uint8_t b[8192];
    size_t n;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->n + n > sizeof(o->b)) {
        fprintf(stderr, "seed_grpc_conn: seed too large\n");
        exit(1);
    }
    if (n > 0) {
        memcpy(o->b + o->n, p, n);
    }
    o->n += n;
}

static void frame(struct out *o, uint8_t type, uint8_t flags, uint32_t sid, const void *p, size_t n)
{
    uint8_t h[9] = {
        (uint8_t)(n >> 16),   (uint8_t)(n >> 8),    (uint8_t)n,          type,        flags,
        (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    put(o, h, 9);
    put(o, p, n);
}

/* One HPACK literal header field without indexing, new name, no Huffman (short strings). */
static void field(struct out *o, const char *name, const char *value)
{
    uint8_t zero = 0, nl = (uint8_t)strlen(name), vl = (uint8_t)strlen(value);
    put(o, &zero, 1);
    put(o, &nl, 1);
    put(o, name, nl);
    put(o, &vl, 1);
    put(o, value, vl);
}

static void request(struct out *o, uint32_t sid, const char *path, int end_stream)
{
    struct out h = {.n = 0};
    field(&h, ":method", "POST");
    field(&h, ":scheme", "http");
    field(&h, ":path", path);
    field(&h, ":authority", "fuzz");
    field(&h, "content-type", "application/grpc");
    field(&h, "te", "trailers");
    field(&h, "grpc-timeout", "5S");
    field(&h, "token", "t0k3n");
    frame(o, 1, (uint8_t)(0x4 | (end_stream ? 0x1 : 0)), sid, h.b, h.n);
}

static void message(struct out *o, uint32_t sid, const char *msg, int end_stream)
{
    uint8_t m[256];
    size_t n = strlen(msg);
    m[0] = 0;
    m[1] = m[2] = 0;
    m[3] = (uint8_t)(n >> 8);
    m[4] = (uint8_t)n;
    memcpy(m + 5, msg, n);
    frame(o, 0, end_stream ? 1 : 0, sid, m, n + 5);
}

static void settings(struct out *o)
{
    frame(o, 4, 0, 0, NULL, 0); /* client SETTINGS, all defaults */
    frame(o, 4, 1, 0, NULL, 0); /* ACK of the server's */
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const struct out *o)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&mode, 1, 1, f) != 1 || fwrite(o->b, 1, o->n, f) != o->n ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    struct out o = {.n = 0};
    settings(&o);
    request(&o, 1, "/f.S/Unary", 0);
    message(&o, 1, "hello", 1);
    write_seed(dir, "unary", 0, &o);
    write_seed(dir, "unary_tls", 1, &o);

    o.n = 0;
    settings(&o);
    request(&o, 1, "/f.S/Stream", 0);
    message(&o, 1, "abc", 1);
    request(&o, 3, "/f.S/Chat", 0);
    message(&o, 3, "one", 0);
    message(&o, 3, "two", 0);
    message(&o, 3, "", 1);
    request(&o, 5, "/f.S/Sum", 0);
    message(&o, 5, "xx", 0);
    message(&o, 5, "yyy", 1);
    write_seed(dir, "streams", 0, &o);
    write_seed(dir, "streams_tls", 1, &o);

    o.n = 0;
    settings(&o);
    request(&o, 1, "/f.S/Chat", 0);
    message(&o, 1, "keep", 0);
    uint8_t rst[4] = {0, 0, 0, 8}; /* CANCEL */
    frame(&o, 3, 0, 1, rst, 4);
    uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    frame(&o, 6, 0, 0, ping, 8);
    request(&o, 3, "/no.Such/Method", 1);
    uint8_t wu[4] = {0, 0, 0x10, 0};
    frame(&o, 8, 0, 0, wu, 4);
    write_seed(dir, "reset_ping", 0, &o);

    o.n = 0;
    put(&o, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    settings(&o);
    request(&o, 1, "/f.S/Unary", 1);
    write_seed(dir, "raw_preface", 2, &o);
    return 0;
}
