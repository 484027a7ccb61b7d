/*
 * watch.h — the watch hub: etcd's watchers (ETCD-API.md §4.5) on the node's loop thread.
 *
 * A stream (one gRPC Watch call, or any other sink) holds watchers; each watcher covers a
 * key or a range [key, range_end), starts at a revision and keeps the next revision it has
 * not been sent yet. The hub never keeps events: when the node reports an applied batch
 * (srv_watch_hub_applied, wired to srv_node_config.applied), it reads what each watcher is
 * missing from the store with store_history, in bounded chunks (whole revisions; at most
 * max_events events / max_bytes bytes per read), and sends one WatchResponse per chunk:
 *
 *  - every event of a revision is in one response (a fragmenting watcher may split a response
 *    that is too big into several, each marked fragment but the last);
 *  - responses of a watcher go in revision order, with no gap and no duplicate: a watcher's
 *    next revision moves past a chunk only once its response was queued;
 *  - a stream whose sink reports would_block is fed nothing more (control replies excepted)
 *    until the sink calls srv_watch_stream_writable; its watchers then catch up from the
 *    store's history, so nothing is buffered without bound and nothing is dropped;
 *  - a watcher whose next revision is below the compaction point gets {canceled,
 *    compact_revision} and is removed (etcd's behaviour; clients see ErrCompacted).
 *
 * Live and catching-up watchers are served alike (each reads its own chunk); a pass gives
 * every watcher at most one chunk and is repeated while some have more to read, so one
 * far-behind watcher does not hold the others back.
 *
 * Requests (create, cancel, progress) are taken as the unpacked etcd WatchRequest; their
 * replies are sent at once (created, canceled, errors), progress once the stream's watchers
 * are caught up. Every response carries etcd's header (cluster id, member id, current store
 * revision, Raft term).
 *
 * Everything runs on the loop thread; the sink's send is called from the hub's own calls and
 * its loop callbacks, and must not free the stream from inside send.
 */
#ifndef SERVER_WATCH_H
#define SERVER_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "node.h"

#define SRV_WATCH_MAX_EVENTS_DEFAULT  1000u               /* etcd batches up to 1000 */
#define SRV_WATCH_MAX_BYTES_DEFAULT   ((size_t)1 << 20)   /* key + value bytes per read */
#define SRV_WATCH_FRAGMENT_DEFAULT    ((size_t)3 << 19)   /* 1.5 MiB, etcd's request limit */
#define SRV_WATCH_PROGRESS_MS_DEFAULT (10u * 60u * 1000u) /* etcd's progress_notify interval */

/* etcd's cancel reasons (grpc clients compare them as text). */
#define SRV_WATCH_EDUPID      "mvcc: duplicate watch ID provided on the WatchStream"
#define SRV_WATCH_EEMPTYRANGE "mvcc: watcher range is empty"

struct srv_watch_hub;
struct srv_watch_stream;

struct srv_watch_hub_config {
    struct srv_node *node; /* borrowed; read through until srv_watch_hub_close */
    uint64_t cluster_id;
    uint64_t member_id;
    size_t max_events;    /* per store_history read; 0: SRV_WATCH_MAX_EVENTS_DEFAULT */
    size_t max_bytes;     /* per store_history read; 0: SRV_WATCH_MAX_BYTES_DEFAULT */
    size_t fragment_size; /* packed size above which a fragment watcher splits; 0: default */
    uint32_t progress_ms; /* progress_notify interval; 0: SRV_WATCH_PROGRESS_MS_DEFAULT */
};

/*
 * Where a stream's responses go. send queues resp (borrowed for the call: pack or copy it)
 * and returns 0, or an error when the stream can take nothing more (it is dead: the hub stops
 * sending to it until it is freed). *would_block true (with 0) means the response was queued
 * but the sink is full: the hub sends no more events until srv_watch_stream_writable.
 */
struct srv_watch_sink {
    int (*send)(void *data, const Etcdserverpb__WatchResponse *resp, bool *would_block);
    void *data;
};

/* Makes a hub on loop (borrowed; it must outlive the hub). cfg is copied. Returns 0,
 * LATCH_EINVAL (no node) or LATCH_ENOMEM. */
int srv_watch_hub_new(uv_loop_t *loop,
                      const struct srv_watch_hub_config *cfg,
                      struct srv_watch_hub **out);

/*
 * Stops the hub: it sends nothing more and never touches the node again; pending requests
 * are ignored. It is freed, and done_cb (may be NULL) runs with data from a loop callback,
 * once its handles closed and every stream was freed (srv_watch_stream_free stays valid
 * until then). Call once.
 */
void srv_watch_hub_close(struct srv_watch_hub *h, void (*done_cb)(void *data), void *data);

/* The node applied up to revision (an srv_node_applied_fn with the hub as data): watchers
 * behind it are fed from a loop callback soon after. Harmless at any time before close. */
void srv_watch_hub_applied(void *hub, int64_t revision);

/* Watchers over all streams (for tests and metrics). */
size_t srv_watch_hub_watchers(const struct srv_watch_hub *h);

/* A new stream with no watcher; sink is copied. Returns 0, LATCH_ENOMEM or LATCH_ESTATE
 * (closing). */
int srv_watch_stream_new(struct srv_watch_hub *h,
                         const struct srv_watch_sink *sink,
                         struct srv_watch_stream **out);

/* Frees the stream and every watcher on it, at once (client cancel, connection gone). */
void srv_watch_stream_free(struct srv_watch_stream *st);

/*
 * One request of the stream (borrowed for the call):
 *  - create: {created, watch_id} with the current revision in the header, then events from
 *    start_revision (0: the next revision; in the past: history; in the future: waits).
 *    A requested watch_id in use, or key >= range_end, gets {created, canceled, watch_id -1,
 *    cancel_reason} and makes no watcher. Key "" is "\0"; range_end "\0" means every key >= key.
 *  - cancel: {watch_id, canceled} when the watcher existed, nothing otherwise.
 *  - progress: {watch_id -1} with the current revision, once every watcher of the stream has
 *    been sent everything up to it.
 * Returns 0, LATCH_EINVAL (no request set), LATCH_ENOMEM, or the sink's error.
 */
int srv_watch_stream_request(struct srv_watch_stream *st, const Etcdserverpb__WatchRequest *req);

/* The sink has room again after reporting would_block: its watchers catch up soon after. */
void srv_watch_stream_writable(struct srv_watch_stream *st);

/* Watchers of this stream. */
size_t srv_watch_stream_watchers(const struct srv_watch_stream *st);

#endif /* SERVER_WATCH_H */
