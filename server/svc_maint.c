/*
 * svc_maint.c — Maintenance, Cluster and Auth services (see svc_maint.h).
 */
#include "svc_maint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_arena.h"
#include "latch_error.h"
#include "latch_version.h"

/* The etcd version Status reports: the API latch implements (etcdctl prints it). */
#define SVC_MAINT_ETCD_VERSION "3.4.0"

struct srv_maint {
    struct srv_node *node;
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

static void maint_alarm(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_maint *m = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__alarm_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    Etcdserverpb__AlarmRequest__AlarmAction action = ((Etcdserverpb__AlarmRequest *)in)->action;
    protobuf_c_message_free_unpacked(in, NULL);
    if (action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        api_call_fail(call, API_GRPC_STATUS_UNIMPLEMENTED,
                      "latch: alarms can only be listed for now");
        return;
    }
    struct store_status ss;
    int rc = store_status(srv_node_reader(m->node), &ss);
    if (rc != 0) {
        fail(call, rc);
        return;
    }
    Etcdserverpb__ResponseHeader h;
    header(m, &h);
    Etcdserverpb__AlarmResponse r = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    r.header = &h;
    Etcdserverpb__AlarmMember am = ETCDSERVERPB__ALARM_MEMBER__INIT;
    Etcdserverpb__AlarmMember *list[1] = {&am};
    if (ss.alarm_nospace) {
        /* The alarm is the cluster's (replicated), reported against this member. */
        am.memberid = m->member_id;
        am.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        r.n_alarms = 1;
        r.alarms = list;
    }
    api_call_reply_pb(call, &r.base);
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

/* Splits comma-separated urls (may be NULL) into out's client URLs, copies in a. */
static void split_urls(const char *urls, struct latch_arena *a, Etcdserverpb__Member *out)
{
    if (urls == NULL || urls[0] == '\0') {
        return;
    }
    size_t n = 1;
    for (const char *p = urls; *p != '\0'; p++) {
        n += *p == ',';
    }
    char *copy = latch_arena_dup(a, urls, strlen(urls) + 1);
    char **list = latch_arena_calloc(a, n, sizeof(*list));
    if (copy == NULL || list == NULL) {
        return; /* listed without client URLs */
    }
    size_t k = 0;
    for (char *tok = copy; tok != NULL && k < n;) {
        char *comma = strchr(tok, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (tok[0] != '\0') {
            list[k++] = tok;
        }
        tok = comma != NULL ? comma + 1 : NULL;
    }
    out->n_clienturls = k;
    out->clienturls = list;
}

static void cluster_member_list(void *data, struct api_call *call, const uint8_t *req, size_t len)
{
    struct srv_maint *m = data;
    ProtobufCMessage *in =
        api_call_unpack(call, &etcdserverpb__member_list_request__descriptor, req, len);
    if (in == NULL) {
        return;
    }
    protobuf_c_message_free_unpacked(in, NULL);
    Etcdserverpb__Member *msgs = calloc(m->members_count, sizeof(*msgs));
    Etcdserverpb__Member **ptrs = calloc(m->members_count, sizeof(*ptrs));
    if (m->members_count > 0 && (msgs == NULL || ptrs == NULL)) {
        free(msgs);
        free(ptrs);
        fail(call, LATCH_ENOMEM);
        return;
    }
    struct latch_arena a; /* the other members' client URLs, split */
    latch_arena_init(&a, 0);
    for (size_t i = 0; i < m->members_count; i++) {
        const struct srv_maint_member *mm = &m->members[i];
        etcdserverpb__member__init(&msgs[i]);
        msgs[i].id = mm->id;
        msgs[i].name = (char *)mm->name;
        msgs[i].n_peerurls = mm->peer_urls_count;
        msgs[i].peerurls = (char **)mm->peer_urls;
        msgs[i].n_clienturls = mm->client_urls_count;
        msgs[i].clienturls = (char **)mm->client_urls;
        if (mm->client_urls_count == 0 && m->client_urls != NULL) {
            split_urls(m->client_urls(m->client_urls_data, mm->id), &a, &msgs[i]);
        }
        ptrs[i] = &msgs[i];
    }
    Etcdserverpb__ResponseHeader h;
    header(m, &h);
    Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    r.header = &h;
    r.n_members = m->members_count;
    r.members = ptrs;
    api_call_reply_pb(call, &r.base);
    latch_arena_close(&a);
    free(msgs);
    free(ptrs);
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
    m->node = cfg->node;
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
        {"/etcdserverpb.Cluster/MemberList", cluster_member_list},
        {"/etcdserverpb.Auth/Authenticate", auth_authenticate},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        int rc = api_server_register_unary(s, methods[i].path, methods[i].fn, m);
        if (rc != 0) {
            srv_maint_free(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

void srv_maint_free(struct srv_maint *m)
{
    if (m != NULL) {
        free(m->members);
        free(m);
    }
}
