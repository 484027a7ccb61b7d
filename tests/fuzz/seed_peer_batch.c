/*
 * seed_peer_batch.c — writes the seed corpus of fuzz_peer_batch into the dir argv[1]: an empty
 * batch, an append with entries (a normal entry, an empty one and a membership change's
 * bytes), a vote round and a heartbeat with a ReadIndex context.
 * Rerun it when the encoding changes: `build/fuzz/seed_peer_batch tests/fuzz/corpus/peer_batch`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

static void write_seed(const char *dir, const char *name, const struct raft_msg *m, size_t n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (srv_peer_batch_encode(7, m, n, &buf, &len) != 0) {
        fprintf(stderr, "seed_peer_batch: %s does not encode\n", name);
        exit(1);
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    write_seed(argv[1], "empty", NULL, 0);

    static const uint8_t cmd[] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct raft_entry ents[3] = {
        {.term = 2, .index = 5, .type = RAFT_ENTRY_NORMAL, .len = sizeof(cmd), .data = cmd},
        {.term = 2, .index = 6, .type = RAFT_ENTRY_NORMAL, .len = 0, .data = NULL},
        {.term = 2, .index = 7, .type = RAFT_ENTRY_CONF, .len = 4, .data = cmd},
    };
    struct raft_msg app = {.type = RAFT_MSG_APPEND,
                           .from = 1,
                           .to = 2,
                           .term = 2,
                           .log_term = 1,
                           .index = 4,
                           .commit = 4,
                           .entries_count = 3,
                           .entries = ents};
    struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP,
                            .from = 2,
                            .to = 1,
                            .term = 2,
                            .index = 3,
                            .reject = true,
                            .reject_hint = 3};
    struct raft_msg append[2] = {app, resp};
    write_seed(argv[1], "append", append, 2);

    struct raft_msg votes[2] = {
        {.type = RAFT_MSG_PREVOTE, .from = 3, .to = 1, .term = 3, .log_term = 2, .index = 7},
        {.type = RAFT_MSG_VOTE_RESP, .from = 1, .to = 3, .term = 3},
    };
    write_seed(argv[1], "votes", votes, 2);

    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 2, .commit = 7, .context = 99};
    write_seed(argv[1], "heartbeat", &hb, 1);
    return 0;
}
