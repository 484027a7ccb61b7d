/*
 * store_space.c — how much of state.mdb holds data, for the NOSPACE alarm (store.h "Space").
 *
 * LMDB never shrinks its file: pages freed by deletes and compaction go to its free-list
 * DB and are reused by later writes. So the file size is a high-water mark and the figure
 * that matters for the quota is the file minus the free pages, which is what etcd's
 * "in use" size means too. The free list is read in the reader's own short read
 * transaction, like every other read call.
 */
#include <string.h>

#include "store_int.h"
#include "store_wal.h"

/* LMDB's free-list DB is dbi 0 (FREE_DBI in mdb.c); read-only cursors may open it. */
#define STORE__FREE_DBI ((MDB_dbi)0)

/*
 * Counts the pages listed in the free-list DB as seen by txn. Each record is keyed by the
 * txn id that freed the pages; its value is an LMDB ID list whose first word is the
 * number of page numbers that follow.
 */
static int free_pages_count(MDB_txn *txn, uint64_t *pages_out)
{
    MDB_cursor *c;
    MDB_val k;
    MDB_val v;
    uint64_t pages = 0;
    int rc = mdb_cursor_open(txn, STORE__FREE_DBI, &c);

    if (rc != 0) {
        return store__mdb_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t count;
        if (v.mv_size < sizeof(count)) {
            mdb_cursor_close(c);
            return LATCH_ECORRUPT;
        }
        memcpy(&count, v.mv_data, sizeof(count)); /* node data is not word-aligned */
        if (count > v.mv_size / sizeof(count) - 1) {
            mdb_cursor_close(c);
            return LATCH_ECORRUPT;
        }
        pages += count;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) {
        return store__mdb_err(rc);
    }
    *pages_out = pages;
    return 0;
}

/* state.mdb's high-water mark and the pages on its free list, in one read transaction. */
static int state_space(struct store_reader *r, struct store_space *out)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_txn *txn;
    uint64_t free_pages = 0;
    int rc = store__read_begin(r, &txn);

    if (rc != 0) {
        return rc;
    }
    rc = store__mdb_err(mdb_env_info(r->s->state.env, &info));
    if (rc == 0) {
        rc = store__mdb_err(mdb_env_stat(r->s->state.env, &st));
    }
    if (rc == 0) {
        rc = free_pages_count(txn, &free_pages);
    }
    store__read_end(r);
    if (rc != 0) {
        return rc;
    }
    LATCH_ASSERTF(st.ms_psize > 0, "page size %u", st.ms_psize);
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    /* The env's newest meta may be a commit newer than txn's snapshot, whose free list
     * can then list fewer pages; never report more free pages than the file has. */
    if (free_pages > pages) {
        free_pages = pages;
    }
    out->file_bytes = pages * st.ms_psize;
    out->in_use_bytes = (pages - free_pages) * st.ms_psize;
    return 0;
}

/* raft.mdb's high-water mark. Its free pages are not counted: the quota is about state. */
static int raft_space(struct store_reader *r, uint64_t *file_bytes)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_txn *txn;
    if (r->s->wal != NULL) {
        *file_bytes = store_wal_file_bytes(r->s->wal);
        return 0;
    }
    int rc = store__raft_read_begin(r, &txn); /* holds raft.lock: the map may be growing */

    if (rc != 0) {
        return rc;
    }
    rc = store__mdb_err(mdb_env_info(r->s->raft.env, &info));
    if (rc == 0) {
        rc = store__mdb_err(mdb_env_stat(r->s->raft.env, &st));
    }
    store__raft_read_end(r);
    if (rc == 0) {
        *file_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    }
    return rc;
}

int store_space(struct store_reader *r, struct store_space *out)
{
    LATCH_ASSERT(r != NULL);
    LATCH_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    int rc = state_space(r, out);
    if (rc == 0) {
        rc = raft_space(r, &out->raft_file_bytes);
    }
    if (rc != 0) {
        return rc;
    }
    out->quota_bytes = r->s->opt.quota_bytes;
    out->over_quota = out->in_use_bytes > out->quota_bytes;
    LATCH_ASSERTF(out->in_use_bytes <= out->file_bytes, "in use %llu > file %llu",
                  (unsigned long long)out->in_use_bytes, (unsigned long long)out->file_bytes);
    return 0;
}
