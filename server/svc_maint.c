/*
 * svc_maint.c — Maintenance, Cluster and Auth services (see svc_maint.h).
 */
#include "svc_maint.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd_codec.h"
#include "grpc_digest.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "latch_log.h"
#include "latch_version.h"
#include "snap_image.h"

/* The etcd version Status reports: the API latch implements (etcdctl prints it). */
#define SVC_MAINT_ETCD_VERSION "3.4.0"

struct srv_maint {
    uv_loop_t *loop;
    struct srv_node *node;
    /* Background work: jobs (workers and snapshot streams) not yet freed. */
    size_t jobs;
    atomic_bool cancel; /* srv_maint_stop: workers stop at the next record */
    bool stopping;
    void (*stop_cb)(void *data);
    void *stop_data;
    /* The NOSPACE check (srv_maint_applied). */
    uint64_t quota_checked_ms;
    bool alarm_proposing;
    uint64_t cluster_id;
    uint64_t member_id;
    struct srv_maint_member *members;
    size_t members_count;
    const char *(*client_urls)(void *data, uint64_t id);
    void *client_urls_data;
};

static void header(const struct srv_maint *m, Etcdserverpb__ResponseHeader *h)
{
    struct srv_node_status st;
    struct store_status ss;
    srv_node_status(m->node, &st);
    etcdserverpb__response_header__init(h);
    h->cluster_id = m->cluster_id;
    h->member_id = m->member_id;
    h->raft_term = st.term;
    if (store_status(srv_node_reader(m->node), &ss) == 0) {
        h->revision = ss.revision;
    }
}

static void fail(struct api_call *call, int err)
{
    char msg[ETCD_STATUS_MSG_MAX];
    api_call_fail(call, etcd_status(err, NULL, msg, sizeof(msg)), msg);
}

static void maint_status(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_maint *m = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__status_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    struct srv_node_status st;
    srv_node_status(m->node, &st);
    struct store_space sp;
    struct store_status ss;
    int rc = store_space(srv_node_reader(m->node), &sp);
    if (rc == 0) {
        rc = store_status(srv_node_reader(m->node), &ss);
    }
    if (rc != 0) {
        fail(call, rc);
        return;
    }
    Etcdserverpb__ResponseHeader h;
    header(m, &h);
    Etcdserverpb__StatusResponse r = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    r.header = &h;
    r.version = (char *)SVC_MAINT_ETCD_VERSION;
    r.dbsize = (int64_t)(sp.file_bytes + sp.raft_file_bytes);
    r.dbsizeinuse = (int64_t)sp.in_use_bytes;
    r.leader = st.leader;
    r.raftindex = st.last_index;
    r.raftterm = st.term;
    r.raftappliedindex = st.applied;
    char *errors[2];
    char alarm_text[64]; /* etcd prints AlarmMember.String() */
    if (ss.alarm_nospace) {
        snprintf(alarm_text, sizeof(alarm_text), "memberID:%llu alarm:NOSPACE ",
                 (unsigned long long)m->member_id);
        errors[r.n_errors++] = alarm_text;
    }
    if (st.failed != 0) {
        errors[r.n_errors++] = (char *)latch_strerror(st.failed);
    }
    r.errors = r.n_errors > 0 ? errors : NULL;
    api_call_reply_pb(call, &r.base);
}

/* ---- Alarm ---------------------------------------------------------------------------- */

/* An Alarm ACTIVATE/DEACTIVATE being replicated. */
struct alarm_req {
    struct srv_maint *m;
    struct api_call *call; /* NULL: raised by the quota check */
    uint32_t action;       /* enum store_alarm_action */
    bool was_active;       /* NOSPACE was on when the request came */
};

/* Answers an AlarmResponse listing NOSPACE against this member when listed is true. */
static void alarm_reply(struct srv_maint *m, struct api_call *call, bool listed)
{
    Etcdserverpb__ResponseHeader h;
    header(m, &h);
    Etcdserverpb__AlarmResponse r = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    r.header = &h;
    Etcdserverpb__AlarmMember am = ETCDSERVERPB__ALARM_MEMBER__INIT;
    Etcdserverpb__AlarmMember *list[1] = {&am};
    if (listed) {
        /* The alarm is the cluster's (replicated), reported against this member. */
        am.memberid = m->member_id;
        am.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        r.n_alarms = 1;
        r.alarms = list;
    }
    api_call_reply_pb(call, &r.base);
}

static void alarm_done(void *data, int err, const struct store_result *res)
{
    struct alarm_req *q = data;
    struct srv_maint *m = q->m;
    if (err == 0 && res->err != 0) {
        err = res->err;
    }
    if (q->call == NULL) {
        m->alarm_proposing = false;
        if (err == 0) {
            latch_log(LATCH_LOG_WARN,
                      "maint: NOSPACE alarm raised: the keyspace is over its quota");
        } else {
            latch_log(LATCH_LOG_WARN, "maint: raising the NOSPACE alarm failed: %s",
                      latch_strerror(err));
        }
    } else if (err != 0) {
        fail(q->call, err);
    } else {
        /* etcd answers the alarm it changed: activating lists it (newly or already on),
         * deactivating lists it when it was on. */
        alarm_reply(m, q->call, q->action == STORE_ALARM_ACTIVATE || q->was_active);
    }
    free(q);
}

/* Proposes STORE_CMD_ALARM action for NOSPACE; call (may be NULL) is answered by alarm_done. */
static int alarm_propose(struct srv_maint *m, struct api_call *call, uint32_t action, bool was)
{
    struct store_cmd c = {.type = STORE_CMD_ALARM};
    c.u.alarm.action = action;
    c.u.alarm.alarm = STORE_ALARM_NOSPACE;
    uint8_t buf[64];
    size_t len;
    int rc = store_cmd_encode(&c, buf, sizeof(buf), &len);
    LATCH_ASSERTF(rc == 0, "alarm command encode: %d", rc);
    struct alarm_req *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return LATCH_ENOMEM;
    }
    *q = (struct alarm_req){.m = m, .call = call, .action = action, .was_active = was};
    rc = srv_node_propose(m->node, buf, len, alarm_done, q);
    if (rc != 0) {
        free(q);
    }
    return rc;
}

static void maint_alarm(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_maint *m = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__alarm_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    Etcdserverpb__AlarmRequest__AlarmAction action = ((Etcdserverpb__AlarmRequest *)in)->action;
    Etcdserverpb__AlarmType type = ((Etcdserverpb__AlarmRequest *)in)->alarm;
    protobuf_c_message_free_unpacked(in, NULL);
    struct store_status ss;
    int rc = store_status(srv_node_reader(m->node), &ss);
    if (rc != 0) {
        fail(call, rc);
        return;
    }
    switch (action) {
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
        alarm_reply(m, call, ss.alarm_nospace);
        return;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
        break;
    default:
        api_call_fail(call, API_GRPC_STATUS_INVALID_ARGUMENT, "latch: unknown alarm action");
        return;
    }
    bool activate = action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    if (type != ETCDSERVERPB__ALARM_TYPE__NOSPACE) {
        if (activate && type == ETCDSERVERPB__ALARM_TYPE__CORRUPT) {
            api_call_fail(call, API_GRPC_STATUS_UNIMPLEMENTED,
                          "latch: only the NOSPACE alarm is supported");
            return;
        }
        alarm_reply(m, call, false); /* NONE, or a CORRUPT that is never on: no change */
        return;
    }
    rc = alarm_propose(m, call,
                       activate ? (uint32_t)STORE_ALARM_ACTIVATE : (uint32_t)STORE_ALARM_DEACTIVATE,
                       ss.alarm_nospace);
    if (rc != 0) {
        fail(call, rc);
    }
}

void srv_maint_applied(struct srv_maint *m)
{
    if (m == NULL || m->stopping || m->alarm_proposing || m->loop == NULL) {
        return;
    }
    uint64_t now = uv_now(m->loop);
    if (m->quota_checked_ms != 0 && now - m->quota_checked_ms < SRV_MAINT_QUOTA_CHECK_MS) {
        return;
    }
    m->quota_checked_ms = now;
    struct store_space sp;
    struct store_status ss;
    struct store_reader *r = srv_node_reader(m->node);
    if (store_space(r, &sp) != 0 || !sp.over_quota || store_status(r, &ss) != 0 ||
        ss.alarm_nospace) {
        return;
    }
    latch_log(LATCH_LOG_WARN, "maint: %llu bytes in use exceed the quota of %llu: raising NOSPACE",
              (unsigned long long)sp.in_use_bytes, (unsigned long long)sp.quota_bytes);
    if (alarm_propose(m, NULL, STORE_ALARM_ACTIVATE, false) == 0) {
        m->alarm_proposing = true;
    }
}

/* ---- background jobs: Hash, HashKV, Snapshot ------------------------------------------- */

enum job_kind { JOB_HASH, JOB_HASHKV, JOB_SNAPSHOT };

/* Bytes per Snapshot message (etcd sends 32 KiB). */
#define SNAP_CHUNK_BYTES ((size_t)64 << 10)

struct maint_job {
    uv_work_t work;
    uv_fs_t fs;
    struct srv_maint *m;
    struct api_call *call;
    struct store *store;
    enum job_kind kind;
    int rc; /* the worker's outcome */
    int64_t rev;
    struct store_hash hash;
    /* Snapshot: the image in an unnamed temporary file, streamed from off. */
    int fd;
    struct srv_snap_image_info info;
    uint64_t off;
    struct api_sha256 *sha;
    uint8_t *buf;
    /* Snapshot: the live membership as the job started (the "members" bucket). */
    struct srv_members live;
    struct srv_maint_member members[SRV_MEMBERS_MAX];
    const char *peer_urls[SRV_MEMBERS_MAX][SRV_MEMBER_URLS_MAX];
};

/* Loop thread: j->members from the node's membership as of its applied index; client URLs
 * from the configured entry of the same id, when there is one. */
static void job_members(struct maint_job *j)
{
    const struct srv_maint *m = j->m;
    j->live = *srv_node_members(m->node);
    for (uint32_t i = 0; i < j->live.count; i++) {
        const struct srv_member *sm = &j->live.m[i];
        struct srv_maint_member *mm = &j->members[i];
        memset(mm, 0, sizeof(*mm));
        mm->id = sm->id;
        mm->name = srv_member_name(&j->live, sm);
        for (uint8_t u = 0; u < sm->peer_urls_count; u++) {
            j->peer_urls[i][u] = srv_member_peer_url(&j->live, sm, u);
        }
        mm->peer_urls = j->peer_urls[i];
        mm->peer_urls_count = sm->peer_urls_count;
        for (size_t k = 0; k < m->members_count; k++) {
            if (m->members[k].id == sm->id) {
                mm->client_urls = m->members[k].client_urls;
                mm->client_urls_count = m->members[k].client_urls_count;
            }
        }
    }
}

static void job_free(struct maint_job *j)
{
    struct srv_maint *m = j->m;
    if (j->fd >= 0) {
        close(j->fd);
    }
    api_sha256_free(j->sha);
    free(j->buf);
    free(j);
    LATCH_ASSERT(m->jobs > 0);
    m->jobs--;
    if (m->jobs == 0 && m->stopping && m->stop_cb != NULL) {
        void (*cb)(void *) = m->stop_cb;
        m->stop_cb = NULL;
        cb(m->stop_data);
    }
}

/* An unnamed file for the image: O_TMPFILE in the data dir (nothing to clean up after a
 * crash, and nothing store_open would refuse), else an unlinked mkstemp file in TMPDIR. */
static int temp_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) {
        return fd;
    }
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/latch-snapshot-XXXXXX", tmp != NULL ? tmp : "/tmp");
    fd = mkstemp(path);
    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

/* Worker thread: the store reads. Touches only the job and the store. */
static void job_work(uv_work_t *w)
{
    struct maint_job *j = w->data;
    struct store_reader *r;
    j->rc = store_reader_new(j->store, &r);
    if (j->rc != 0) {
        return;
    }
    if (j->kind == JOB_HASH) {
        j->rc = store_hash_all(r, &j->hash);
    } else if (j->kind == JOB_HASHKV) {
        j->rc = store_hash_kv(r, j->rev, &j->hash);
    } else {
        j->fd = temp_file(store_dir(j->store));
        if (j->fd < 0) {
            j->rc = LATCH_EIO;
        } else {
            struct srv_snap_image_config ic = {.members = j->members,
                                               .members_count = j->live.count,
                                               .member_id = j->m->member_id,
                                               .cancel = &j->m->cancel};
            j->rc = srv_snap_image_write(r, j->fd, &ic, &j->info);
        }
    }
    store_reader_free(r);
}

static void hash_reply(struct maint_job *j)
{
    Etcdserverpb__ResponseHeader h;
    header(j->m, &h);
    if (j->kind == JOB_HASH) {
        Etcdserverpb__HashResponse r = ETCDSERVERPB__HASH_RESPONSE__INIT;
        r.header = &h;
        r.hash = j->hash.hash;
        api_call_reply_pb(j->call, &r.base);
    } else {
        Etcdserverpb__HashKVResponse r = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
        r.header = &h;
        r.hash = j->hash.hash;
        r.compact_revision = j->hash.compact_revision;
        api_call_reply_pb(j->call, &r.base);
    }
}

static void snap_next(struct maint_job *j);

/* Ends the snapshot stream with status (0: the checksum message first). */
static void snap_end(struct maint_job *j, int grpc_status, const char *msg)
{
    if (grpc_status == 0) {
        uint8_t sum[API_SHA256_BYTES];
        api_sha256_final(j->sha, sum);
        Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
        r.remaining_bytes = 0;
        r.blob.data = sum;
        r.blob.len = sizeof(sum);
        api_call_send_pb(j->call, &r.base, NULL);
    }
    api_call_finish(j->call, grpc_status, msg);
    job_free(j);
}

static void snap_writable(struct api_call *call, void *data)
{
    (void)call;
    snap_next(data);
}

static void snap_read_cb(uv_fs_t *req)
{
    struct maint_job *j = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n <= 0) {
        latch_log(LATCH_LOG_ERROR, "maint: reading the snapshot image: %s",
                  n < 0 ? uv_strerror((int)n) : "short file");
        snap_end(j, API_GRPC_STATUS_INTERNAL, "latch: reading the snapshot image failed");
        return;
    }
    api_sha256_update(j->sha, j->buf, (size_t)n);
    j->off += (uint64_t)n;
    Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    r.remaining_bytes = j->info.size_bytes - j->off;
    r.blob.data = j->buf;
    r.blob.len = (size_t)n;
    bool would_block = false;
    if (api_call_send_pb(j->call, &r.base, &would_block) != 0) {
        snap_end(j, API_GRPC_STATUS_CANCELLED, "latch: snapshot stream ended");
        return;
    }
    if (would_block) {
        latch_log(LATCH_LOG_DEBUG, "maint: snapshot stream paused at %llu of %llu bytes",
                  (unsigned long long)j->off, (unsigned long long)j->info.size_bytes);
        api_call_on_writable(j->call, snap_writable, j);
        return;
    }
    snap_next(j);
}

/* Reads the next chunk of the image (uv_fs_read on the loop's pool), or ends the stream. */
static void snap_next(struct maint_job *j)
{
    if (!api_call_is_alive(j->call) || atomic_load(&j->m->cancel)) {
        snap_end(j, API_GRPC_STATUS_CANCELLED, "latch: snapshot stream ended");
        return;
    }
    if (j->off == j->info.size_bytes) {
        snap_end(j, 0, NULL);
        return;
    }
    uint64_t left = j->info.size_bytes - j->off;
    uv_buf_t b =
        uv_buf_init((char *)j->buf, (unsigned)(left < SNAP_CHUNK_BYTES ? left : SNAP_CHUNK_BYTES));
    j->fs.data = j;
    int rc = uv_fs_read(j->m->loop, &j->fs, j->fd, &b, 1, (int64_t)j->off, snap_read_cb);
    if (rc != 0) {
        snap_end(j, API_GRPC_STATUS_INTERNAL, "latch: reading the snapshot image failed");
    }
}

static void job_after(uv_work_t *w, int status)
{
    struct maint_job *j = w->data;
    if (status != 0 && j->rc == 0) {
        j->rc = LATCH_ESHUTDOWN; /* uv_cancel */
    }
    if (j->kind != JOB_SNAPSHOT) {
        if (j->rc != 0) {
            fail(j->call, j->rc);
        } else {
            hash_reply(j);
        }
        job_free(j);
        return;
    }
    if (j->rc != 0) {
        latch_log(LATCH_LOG_ERROR, "maint: writing the snapshot image: %s", latch_strerror(j->rc));
        char msg[ETCD_STATUS_MSG_MAX];
        api_call_finish(j->call, etcd_status(j->rc, NULL, msg, sizeof(msg)), msg);
        job_free(j);
        return;
    }
    latch_log(LATCH_LOG_INFO, "maint: snapshot image of revision %lld: %llu bytes, %lld records",
              (long long)j->info.revision, (unsigned long long)j->info.size_bytes,
              (long long)j->info.kv_records);
    snap_next(j);
}

/* Starts a job for call on the worker pool; answers call itself when it cannot. */
static void job_start(struct srv_maint *m, struct api_call *call, enum job_kind kind, int64_t rev)
{
    if (m->stopping || m->loop == NULL) {
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE, "etcdserver: server stopped");
        return;
    }
    struct maint_job *j = calloc(1, sizeof(*j));
    int rc = j == NULL ? LATCH_ENOMEM : 0;
    if (rc == 0 && kind == JOB_SNAPSHOT) {
        j->buf = malloc(SNAP_CHUNK_BYTES);
        rc = j->buf == NULL ? LATCH_ENOMEM : api_sha256_new(&j->sha);
    }
    if (rc != 0) {
        if (j != NULL) {
            api_sha256_free(j->sha);
            free(j->buf);
            free(j);
        }
        fail(call, rc);
        return;
    }
    j->m = m;
    j->call = call;
    j->kind = kind;
    j->rev = rev;
    j->fd = -1;
    j->store = store_reader_store(srv_node_reader(m->node));
    if (kind == JOB_SNAPSHOT) {
        job_members(j);
    }
    j->work.data = j;
    m->jobs++;
    rc = uv_queue_work(m->loop, &j->work, job_work, job_after);
    if (rc != 0) {
        fail(call, LATCH_ENOMEM);
        job_free(j);
    }
}

static void maint_hash(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *in = api_call_unpack(call, &etcdserverpb__hash_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    job_start(data, call, JOB_HASH, 0);
}

static void maint_hash_kv(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__hash_kvrequest__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    int64_t rev = ((Etcdserverpb__HashKVRequest *)in)->revision;
    protobuf_c_message_free_unpacked(in, NULL);
    if (rev < 0) {
        rev = 0; /* etcd treats a negative revision as the current one too */
    }
    job_start(data, call, JOB_HASHKV, rev);
}

static void maint_snapshot(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__snapshot_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    job_start(data, call, JOB_SNAPSHOT, 0);
}

void srv_maint_stop(struct srv_maint *m, void (*done_cb)(void *data), void *data)
{
    LATCH_ASSERT(m != NULL && !m->stopping);
    m->stopping = true;
    atomic_store(&m->cancel, true);
    if (m->jobs == 0) {
        if (done_cb != NULL) {
            done_cb(data);
        }
        return;
    }
    m->stop_cb = done_cb;
    m->stop_data = data;
}

static void maint_defragment(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_maint *m = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__defragment_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    Etcdserverpb__ResponseHeader h;
    header(m, &h);
    Etcdserverpb__DefragmentResponse r = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    r.header = &h;
    api_call_reply_pb(call, &r.base);
}

static void auth_authenticate(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    (void)data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__authenticate_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    api_call_fail(call, API_GRPC_STATUS_FAILED_PRECONDITION,
                  "etcdserver: authentication is not enabled");
}

int srv_maint_register(struct api_server *s,
                       const struct srv_maint_config *cfg,
                       struct srv_maint **out)
{
    struct srv_maint *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return LATCH_ENOMEM;
    }
    m->loop = cfg->loop;
    m->node = cfg->node;
    atomic_init(&m->cancel, false);
    m->client_urls = cfg->client_urls;
    m->client_urls_data = cfg->client_urls_data;
    m->cluster_id = cfg->cluster_id;
    m->member_id = cfg->member_id;
    if (cfg->members_count > 0) {
        m->members = calloc(cfg->members_count, sizeof(*m->members));
        if (m->members == NULL) {
            free(m);
            return LATCH_ENOMEM;
        }
        memcpy(m->members, cfg->members, cfg->members_count * sizeof(*m->members));
        m->members_count = cfg->members_count;
    }
    static const struct {
        const char *path;
        api_unary_fn fn;
    } methods[] = {
        {"/etcdserverpb.Maintenance/Status", maint_status},
        {"/etcdserverpb.Maintenance/Alarm", maint_alarm},
        {"/etcdserverpb.Maintenance/Defragment", maint_defragment},
        {"/etcdserverpb.Maintenance/Hash", maint_hash},
        {"/etcdserverpb.Maintenance/HashKV", maint_hash_kv},
        {"/etcdserverpb.Auth/Authenticate", auth_authenticate},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        int rc = api_server_register_unary(s, methods[i].path, methods[i].fn, m);
        if (rc != 0) {
            srv_maint_free(m);
            return rc;
        }
    }
    int rc = api_server_register_server_stream(s, "/etcdserverpb.Maintenance/Snapshot",
                                               maint_snapshot, m);
    if (rc != 0) {
        srv_maint_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void srv_maint_free(struct srv_maint *m)
{
    if (m != NULL) {
        LATCH_ASSERTF(m->jobs == 0, "%zu maintenance jobs still running", m->jobs);
        free(m->members);
        free(m);
    }
}
