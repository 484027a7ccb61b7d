/*
 * svc_watch.c — etcd's Watch service on the watch hub (see svc_watch.h).
 *
 * A call's state is a struct watch_call (the call's context): the call, its hub stream and
 * whether its receive side is paused. It holds no pointer to the service, so the service may
 * be freed while calls are still dying. The call is finished only from the cancel callback:
 * a Watch call never ends on the server's initiative otherwise.
 */
#include "svc_watch.h"

#include <stdlib.h>
#include <string.h>

#include "etcd_codec.h"
#include "grpc_pb.h"
#include "grpc_wire.h"
#include "latch_error.h"

struct srv_watch_svc {
    struct srv_node *node;
    struct srv_watch_hub *hub;
};

struct watch_call {
    struct api_call *call;
    struct srv_watch_stream *st;
    bool paused;
};

static void call_writable(struct api_call *call, void *data)
{
    struct watch_call *wc = data;
    if (wc->paused) {
        wc->paused = false;
        api_call_resume_recv(call);
    }
    srv_watch_stream_writable(wc->st);
}

/* The hub's sink: pack and queue; pause the client's requests while the queue is full. */
static int sink_send(void *data, const Etcdserverpb__WatchResponse *resp, bool *would_block)
{
    struct watch_call *wc = data;
    int rc = api_call_send_pb(wc->call, &resp->base, would_block);
    if (rc == 0 && *would_block && !wc->paused) {
        wc->paused = true;
        api_call_pause_recv(wc->call);
        api_call_on_writable(wc->call, call_writable, wc);
    }
    return rc;
}

/* Frees the call's state and ends it (a dead call is only freed). */
static void call_end(struct watch_call *wc, int grpc_status, const char *message)
{
    struct api_call *call = wc->call;
    srv_watch_stream_free(wc->st);
    free(wc);
    api_call_set_context(call, NULL);
    api_call_finish(call, grpc_status, message);
}

static void call_canceled(struct api_call *call, void *data)
{
    (void)call;
    call_end(data, API_GRPC_STATUS_CANCELLED, NULL);
}

static void watch_start(void *data, struct api_call *call)
{
    struct srv_watch_svc *svc = data;
    const char *hasleader = api_call_metadata(call, "hasleader");
    if (hasleader != NULL && strcmp(hasleader, "true") == 0) {
        struct srv_node_status st;
        srv_node_status(svc->node, &st);
        if (st.leader == RAFT_NONE) {
            api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE, "etcdserver: no leader");
            return;
        }
    }
    struct watch_call *wc = calloc(1, sizeof(*wc));
    if (wc == NULL) {
        api_call_fail(call, API_GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    wc->call = call;
    struct srv_watch_sink sink = {.send = sink_send, .data = wc};
    int rc = srv_watch_stream_new(svc->hub, &sink, &wc->st);
    if (rc != 0) {
        free(wc);
        api_call_fail(call, API_GRPC_STATUS_UNAVAILABLE, "etcdserver: server stopped");
        return;
    }
    api_call_set_context(call, wc);
    api_call_on_cancel(call, call_canceled, wc);
}

static void watch_message(void *data, struct api_call *call, const uint8_t *msg, size_t len)
{
    (void)data;
    struct watch_call *wc = api_call_context(call);
    if (wc == NULL) {
        return;
    }
    ProtobufCMessage *m =
        protobuf_c_message_unpack(&etcdserverpb__watch_request__descriptor, NULL, len, msg);
    if (m == NULL) {
        call_end(wc, API_GRPC_STATUS_INTERNAL,
                 "grpc: error unmarshalling request: invalid etcdserverpb.WatchRequest");
        return;
    }
    int rc = srv_watch_stream_request(wc->st, (const Etcdserverpb__WatchRequest *)m);
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc == 0 || rc == LATCH_EINVAL || rc == LATCH_ESTATE) {
        return; /* EINVAL: nothing set (ignored); ESTATE: dead, the cancel callback ends it */
    }
    char text[ETCD_STATUS_MSG_MAX];
    int status = etcd_status(rc, NULL, text, sizeof(text));
    call_end(wc, status, text);
}

int srv_watch_svc_register(struct api_server *s,
                           const struct srv_watch_svc_config *cfg,
                           struct srv_watch_svc **out)
{
    if (cfg == NULL || cfg->node == NULL || cfg->hub == NULL) {
        return LATCH_EINVAL;
    }
    struct srv_watch_svc *svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        return LATCH_ENOMEM;
    }
    svc->node = cfg->node;
    svc->hub = cfg->hub;
    static const struct api_stream_handler handler = {
        .start = watch_start,
        .message = watch_message,
        .half_close = NULL, /* half-close ends nothing */
    };
    int rc = api_server_register_bidi_stream(s, "/etcdserverpb.Watch/Watch", &handler, svc);
    if (rc != 0) {
        free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

void srv_watch_svc_free(struct srv_watch_svc *svc)
{
    free(svc);
}
