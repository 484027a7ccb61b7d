/*
 * member.h — the members of a latch cluster with their attributes (name, peer URLs), and the
 * two byte formats that carry them: the membership record the node keeps in the store and in
 * snapshots (STORE_ITEM_CONF, store_conf, store_snap_meta.conf), and the context of a
 * membership change entry (struct raft_conf_change.context). docs/decisions/membership.md
 * says why they look like this.
 *
 * MEMBERSHIP RECORD, little-endian, at most STORE_CONF_BYTES_MAX bytes:
 *
 *   version 1 (data dirs written before attributes existed):
 *     [0] 1, [1..4] voters_count u32, [5..8] learners_count u32, then the voter ids and the
 *     learner ids (u64 each). Exactly 9 + 8 x (voters + learners) bytes.
 *   version 2:
 *     the same 9-byte header and ids with [0] = 2, then one attribute block per member in
 *     the same order (voters, then learners):
 *       [name_len u8][name][urls_count u8] urls_count x ([url_len u8][url])
 *     The blocks end exactly at the end of the record.
 *
 * CONF-CHANGE CONTEXT, at most RAFT_CONF_CONTEXT_BYTES_MAX bytes:
 *     [0] 1 (version), [1..8] proposer id u64, [9..16] proposer's sequence number u64, then
 *     one attribute block as above (the member's name and peer URLs; empty for PROMOTE and
 *     REMOVE). The proposer and sequence let the proposing node complete its request when
 *     the entry is applied, as the entry header does for normal proposals.
 *
 * Names and URLs are byte strings of 0..255 bytes without NUL bytes (decoders refuse a NUL:
 * they are handed out as C strings). Pure functions; no allocation; any thread.
 */
#ifndef SERVER_MEMBER_H
#define SERVER_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define SRV_MEMBER_RECORD_V1 1u
#define SRV_MEMBER_RECORD_V2 2u

#define SRV_MEMBER_NAME_MAX 255u /* bytes of a name, without the NUL */
#define SRV_MEMBER_URL_MAX  255u /* bytes of one peer URL, without the NUL */
#define SRV_MEMBER_URLS_MAX 16u  /* peer URLs of one member (SRV_PEER_URLS_MAX) */

/* Members in one record: every voter and every learner. */
#define SRV_MEMBERS_MAX (2u * RAFT_MEMBERS_MAX)

/* Bytes of the strings of one table (NULs included): a record is at most 4096 bytes and
 * each string costs one byte more in the table than in the record (its NUL for its length). */
#define SRV_MEMBERS_STRINGS_BYTES 4096u

/* Fixed part of a conf-change context before the attribute block. */
#define SRV_MEMBER_CONTEXT_FIXED 17u

/* One member; strings are offsets into the table's strs (NUL-terminated there), so a table
 * is a plain value that can be copied with memcpy. Use the accessors below. */
struct srv_member {
    raft_id id;
    bool learner;
    uint8_t peer_urls_count;
    uint16_t name_off;
    uint16_t url_off[SRV_MEMBER_URLS_MAX];
};

/* The members of one configuration, voters first, in the record's order. */
struct srv_members {
    uint32_t count;
    struct srv_member m[SRV_MEMBERS_MAX];
    uint32_t strs_used;
    char strs[SRV_MEMBERS_STRINGS_BYTES];
};

/* Member attributes as the caller holds them (strings borrowed). */
struct srv_member_attrs {
    const char *name; /* NULL means "" */
    const char *const *peer_urls;
    size_t peer_urls_count;
};

static inline const char *srv_member_name(const struct srv_members *ms, const struct srv_member *m)
{
    return ms->strs + m->name_off;
}

static inline const char *
srv_member_peer_url(const struct srv_members *ms, const struct srv_member *m, size_t i)
{
    return ms->strs + m->url_off[i];
}

/* Empties ms (count 0, the empty string at offset 0). */
void srv_members_init(struct srv_members *ms);

/* The member with this id, or NULL. */
const struct srv_member *srv_members_find(const struct srv_members *ms, raft_id id);

/* The member with a peer URL equal to url (other than skip; RAFT_NONE skips none), or NULL. */
const struct srv_member *
srv_members_find_url(const struct srv_members *ms, const char *url, raft_id skip);

/*
 * Appends member id with attrs a (copied). Errors: LATCH_EINVAL (RAFT_NONE or duplicate id,
 * a name or URL too long or with no room for its NUL... see the limits, too many URLs),
 * LATCH_ETOOBIG (no room left in the table).
 */
int srv_members_add(struct srv_members *ms,
                    raft_id id,
                    bool learner,
                    const struct srv_member_attrs *a);

/* The ids of ms as a configuration. */
void srv_members_conf(const struct srv_members *ms, struct raft_conf_state *conf);

/*
 * The table for configuration conf taking attributes from prev (members of conf missing
 * there get empty attributes), in conf's order: voters, then learners. Used to rebuild a
 * table after a change. Errors: as srv_members_add.
 */
int srv_members_from_conf(const struct raft_conf_state *conf,
                          const struct srv_members *prev,
                          struct srv_members *out);

/*
 * Replaces the attributes of member id with a (copied; the table is rebuilt so the old
 * strings do not linger). Errors: LATCH_ENOTFOUND, and those of srv_members_add.
 */
int srv_members_set_attrs(struct srv_members *ms, raft_id id, const struct srv_member_attrs *a);

/*
 * Encodes ms as a version 2 record into buf (cap bytes); *len_out gets its length. Voters
 * must come before learners (as srv_members_from_conf makes them). Errors: LATCH_EINVAL
 * (more than RAFT_MEMBERS_MAX voters or learners, a learner before a voter), LATCH_ETOOBIG
 * (cap too small, e.g. attributes beyond STORE_CONF_BYTES_MAX).
 */
int srv_members_encode(const struct srv_members *ms, uint8_t *buf, size_t cap, size_t *len_out);

/*
 * Decodes a version 1 or version 2 record (len bytes at buf). Version 1 members get empty
 * attributes. Errors: LATCH_ECORRUPT (unknown version, a length or count that does not fit,
 * a NUL inside a string, a RAFT_NONE or duplicate id, trailing bytes).
 */
int srv_members_decode(const uint8_t *buf, size_t len, struct srv_members *out);

/*
 * Encodes a conf-change context: proposer, seq and the attributes a (may be NULL: empty).
 * Errors: LATCH_EINVAL (a name or URL too long, too many URLs), LATCH_ETOOBIG (cap).
 */
int srv_member_context_encode(raft_id proposer,
                              uint64_t seq,
                              const struct srv_member_attrs *a,
                              uint8_t *buf,
                              size_t cap,
                              size_t *len_out);

/*
 * Decodes a context (len bytes at buf): *proposer, *seq, and the attributes into *one, a
 * table that receives one member with id `id` (learner false). Errors: LATCH_ECORRUPT.
 */
int srv_member_context_decode(const uint8_t *buf,
                              size_t len,
                              raft_id id,
                              raft_id *proposer,
                              uint64_t *seq,
                              struct srv_members *one);

#endif /* SERVER_MEMBER_H */
