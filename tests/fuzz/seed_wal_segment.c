/*
 * seed_wal_segment.c — writes the seed corpus of fuzz_wal_segment into the dir argv[1]: a
 * segment made through store_wal.h (entries, a truncation, hard states, a compaction point,
 * snapshot metadata, an install mark) as raw bytes (selector 0) and as the list of its record
 * bodies (selector 1), plus the same segment with its last record torn. Rerun it when the
 * format changes: `build/fuzz/seed_wal_segment tests/fuzz/corpus/wal_segment`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latch_error.h"
#include "store_wal.h"

static void write_seed(const char *dir, const char *name, uint8_t sel, const uint8_t *b, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || (n > 0 && fwrite(b, 1, n, f) != n) ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "seed_wal_segment: %s: %s\n", what, latch_error_name(rc));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char dir[] = "/tmp/seed-wal-XXXXXX", err[256], path[128];
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    struct store_wal_options o = {.dir = dir, .no_sync = true, .prealloc_bytes = 4096};
    struct store_wal *w = NULL;
    check(store_wal_open(&o, &w, err, sizeof(err)), "open");
    uint8_t d[16] = "fuzz entry data";
    struct store_entry e[4];
    for (uint64_t i = 1; i <= 4; i++) {
        e[i - 1] = (struct store_entry){.term = 1, .index = i, .type = 1, .len = 15, .data = d};
    }
    struct store_hard_state hs = {.term = 1, .vote = 2, .commit = 1};
    check(store_wal_append(w, e, 4, &hs), "append");
    e[0] = (struct store_entry){.term = 2, .index = 3, .type = 2, .len = 0, .data = NULL};
    hs.term = 2;
    check(store_wal_append(w, e, 1, &hs), "truncating append");
    check(store_wal_compact(w, 2), "compact");
    struct store_snap_meta m = {.index = 2, .term = 1, .conf_len = 3, .conf = {7, 8, 9}};
    check(store_wal_record_snapshot(w, &m), "snapshot");
    check(store_wal_install_mark(w, &m), "mark");
    store_wal_close(w);

    snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 16];
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    while (n > 0 && buf[n - 1] == 0) {
        n--;
    }
    n = (n + 7) & ~(size_t)7;
    write_seed(argv[1], "segment", 0, buf, n);
    write_seed(argv[1], "torn", 0, buf, n - 5);
    /* The record bodies: le16 length then the bytes after each record's 8-byte header. */
    static uint8_t list[1 << 16];
    size_t ln = 0;
    for (size_t pos = 0; pos + 8 <= n;) {
        size_t rec = (size_t)buf[pos] | (size_t)buf[pos + 1] << 8 | (size_t)buf[pos + 2] << 16;
        if (rec < 8 || pos + rec > n) {
            break;
        }
        list[ln++] = (uint8_t)(rec - 8);
        list[ln++] = (uint8_t)((rec - 8) >> 8);
        memcpy(list + ln, buf + pos + 8, rec - 8);
        ln += rec - 8;
        pos += (rec + 7) & ~(size_t)7;
    }
    write_seed(argv[1], "records", 1, list, ln);
    unlink(path);
    rmdir(dir);
    return 0;
}
