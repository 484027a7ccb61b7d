/*
 * identity.h — who this member is, kept in its data dir: the cluster id, the member id, its
 * name and the voters the cluster was bootstrapped with. Written at the first start (from
 * --initial-cluster, or from the cluster itself when joining with --initial-cluster-state
 * existing), read at every later start, so that neither id depends on flags that may have
 * changed since (docs/decisions/membership.md).
 *
 * The file is <data-dir>/member.id, text, one "key value" per line:
 *   latch-identity 1
 *   cluster-id <16 hex digits>
 *   member-id <16 hex digits>
 *   name <name>
 *   bootstrap <16 hex digits> ...   (space-separated, in order)
 * written to member.id.tmp, fsynced and renamed. Nothing here runs on a loop.
 */
#ifndef SERVER_IDENTITY_H
#define SERVER_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "member.h"
#include "raft.h"

#define SRV_IDENTITY_FILE "member.id"

struct srv_identity {
    uint64_t cluster_id;
    uint64_t member_id;
    char name[SRV_MEMBER_NAME_MAX + 1];
    size_t bootstrap_count;
    uint64_t bootstrap[RAFT_MEMBERS_MAX];
};

/* Reads dir's identity. Errors: LATCH_ENOTFOUND (no file), LATCH_ECORRUPT (unreadable or
 * malformed; errmsg says why), LATCH_EIO. */
int srv_identity_load(const char *dir, struct srv_identity *id, char *errmsg, size_t cap);

/* Writes id durably (creating dir, mode 0700, when missing). Errors: LATCH_EIO. */
int srv_identity_save(const char *dir, const struct srv_identity *id, char *errmsg, size_t cap);

struct api_tls_ctx;

/*
 * Joins an existing cluster: asks the members at peer_urls (one at a time, each within
 * timeout_ms) for /latch.raft.v1.Raft/Members, and finds this member by its peer URLs
 * (own_urls: any of them listed for a member). Fills id (cluster id, member id, bootstrap
 * voters; name is the caller's) and members (the membership the answer listed). Errors:
 * LATCH_EUNAVAILABLE (no member answered), LATCH_ENOTMEMBER (not in the member list: add it
 * first), LATCH_ENOMEM; errmsg says which.
 */
int srv_identity_join(const char *const *peer_urls,
                      size_t peer_urls_count,
                      struct api_tls_ctx *tls,
                      const char *const *own_urls,
                      size_t own_urls_count,
                      uint64_t timeout_ms,
                      struct srv_identity *id,
                      struct srv_members *members,
                      char *errmsg,
                      size_t cap);

#endif /* SERVER_IDENTITY_H */
