/*
 * seed_peer_snap_chunk.c — writes the seed corpus of fuzz_peer_snap_chunk into the dir argv[1]:
 * streams in its framing (2-byte little-endian length, then one SnapshotChunk): a complete
 * stream of three data chunks, a stream that stops before its last chunk, and one whose
 * second chunk has another cluster id.
 * Rerun it when the encoding changes:
 * `build/fuzz/seed_peer_snap_chunk tests/fuzz/corpus/peer_snap_chunk`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

struct out {
    uint8_t buf[4096];
    size_t len;
};

static void add_chunk(struct out *o,
                      uint64_t cluster_id,
                      const struct raft_msg *m,
                      uint64_t size,
                      uint64_t offset,
                      const uint8_t *data,
                      size_t len,
                      bool last)
{
    uint8_t *c = NULL;
    size_t n = 0;
    if (srv_peer_snap_chunk_encode(cluster_id, m, size, offset, data, len, last, &c, &n) != 0 ||
        n > 0xffff || o->len + 2 + n > sizeof(o->buf)) {
        fprintf(stderr, "seed_peer_snap_chunk: a chunk does not encode\n");
        exit(1);
    }
    o->buf[o->len++] = (uint8_t)(n & 0xff);
    o->buf[o->len++] = (uint8_t)(n >> 8);
    memcpy(o->buf + o->len, c, n);
    o->len += n;
    free(c);
}

static void write_seed(const char *dir, const char *name, const struct out *o)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(o->buf, 1, o->len, f) != o->len || fclose(f) != 0) {
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
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 3};
    m.snapshot.meta.index = 40;
    m.snapshot.meta.term = 2;
    m.snapshot.meta.conf.voters_count = 3;
    m.snapshot.meta.conf.voters[0] = 1;
    m.snapshot.meta.conf.voters[1] = 2;
    m.snapshot.meta.conf.voters[2] = 3;
    m.snapshot.meta.conf.learners_count = 1;
    m.snapshot.meta.conf.learners[0] = 4;
    uint8_t data[90];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7u);
    }

    static struct out whole, truncated, foreign;
    add_chunk(&whole, 7, &m, sizeof(data), 0, NULL, 0, false);
    add_chunk(&whole, 7, NULL, 0, 0, data, 30, false);
    add_chunk(&whole, 7, NULL, 0, 30, data + 30, 30, false);
    add_chunk(&whole, 7, NULL, 0, 60, data + 60, 30, true);
    write_seed(argv[1], "whole", &whole);

    add_chunk(&truncated, 7, &m, sizeof(data), 0, NULL, 0, false);
    add_chunk(&truncated, 7, NULL, 0, 0, data, 30, false);
    write_seed(argv[1], "truncated", &truncated);

    add_chunk(&foreign, 7, &m, sizeof(data), 0, NULL, 0, false);
    add_chunk(&foreign, 8, NULL, 0, 0, data, 30, false);
    write_seed(argv[1], "foreign", &foreign);
    return 0;
}
