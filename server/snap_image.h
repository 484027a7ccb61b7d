/*
 * snap_image.h — the body of etcd's Maintenance Snapshot stream: the node's applied state as
 * a bbolt database laid out like etcd 3.4's backend (server/bbolt.h writes the pages), so
 * `etcdctl snapshot status` reports its revision and keys and `snapshot restore` can read
 * it. docs/decisions/maintenance.md lists what each bucket holds:
 *
 *   alarm            the NOSPACE alarm when active: key etcdserverpb.AlarmMember bytes,
 *                    empty value
 *   auth, authRoles, authUsers   empty (latch has no auth yet)
 *   cluster          "clusterVersion" -> "3.4.0"
 *   key              every history record: 17-byte revision key (main be64, '_', sub be64;
 *                    a delete's key ends with 't', etcd's tombstone mark) -> mvccpb.KeyValue
 *                    (a delete's holds only the key)
 *   lease            lease id be64 -> leasepb.Lease {ID, TTL, RemainingTTL}
 *   members          member id in hex -> etcd's Member JSON ({"id","peerURLs","name",
 *                    "clientURLs"})
 *   members_removed  empty
 *   meta             "consistent_index" -> the applied index (be64); "finishedCompactRev"
 *                    and "scheduledCompactRev" -> the compact revision's 17-byte key, when
 *                    compacted
 *
 * The whole image comes from one store_dump (one read transaction), so it is consistent.
 * Runs on any thread that owns r (a worker: it reads the whole history).
 */
#ifndef SRV_SNAP_IMAGE_H
#define SRV_SNAP_IMAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "svc_maint.h"

struct srv_snap_image_config {
    const struct srv_maint_member *members; /* borrowed for the call */
    size_t members_count;
    uint64_t member_id;        /* this member, for the alarm record */
    const atomic_bool *cancel; /* may be NULL; set: the write stops with LATCH_ESHUTDOWN */
};

struct srv_snap_image_info {
    uint64_t size_bytes; /* of the image, a multiple of 4096 */
    int64_t revision;
    int64_t compact_revision;
    int64_t kv_records; /* entries of the "key" bucket */
    int64_t leases;
};

/*
 * Writes the image into fd (borrowed, open for writing; pwrite at offsets from 0).
 * Errors: LATCH_ESHUTDOWN (cancelled), LATCH_EIO, LATCH_ENOSPACE (disk full), LATCH_ENOMEM,
 * store_dump's.
 */
int srv_snap_image_write(struct store_reader *r,
                         int fd,
                         const struct srv_snap_image_config *cfg,
                         struct srv_snap_image_info *info);

#endif /* SRV_SNAP_IMAGE_H */
