/*
 * raft_limits.h — compile-time limits of the consensus core, each with its reason and a
 * ceiling (SQLite sqliteLimit.h). Runtime knobs live in struct raft_config.
 */
#ifndef LATCH_RAFT_LIMITS_H
#define LATCH_RAFT_LIMITS_H

/* Voters (and, separately, learners) in one configuration. Coordination clusters run 3, 5
 * or 7 voters; 16 leaves room for learners being promoted during a rolling replacement and
 * keeps struct raft_conf_state a small plain value that can be copied and persisted. */
#ifndef RAFT_MEMBERS_MAX
#define RAFT_MEMBERS_MAX 16
#endif
#if RAFT_MEMBERS_MAX > 64
#error "RAFT_MEMBERS_MAX above 64: quorum counting sorts match indexes on the stack"
#endif

/* Bytes in one entry. The server admits values up to 1.5 MiB plus request overhead (as
 * etcd); 16 MiB bounds what one corrupt length field can make the core allocate. */
#ifndef RAFT_ENTRY_BYTES_MAX
#define RAFT_ENTRY_BYTES_MAX (16u * 1024u * 1024u)
#endif
#if RAFT_ENTRY_BYTES_MAX > (64u * 1024u * 1024u)
#error "RAFT_ENTRY_BYTES_MAX above 64 MiB: an entry must fit one peer message"
#endif

/* Bytes of opaque context in a membership change (peer URLs, names). */
#define RAFT_CONF_CONTEXT_BYTES_MAX 4096u

/* Ceiling for raft_config.max_inflight_msgs: the inflight ring is allocated per peer. */
#define RAFT_INFLIGHT_MAX 4096u

/* Pending ReadIndex requests a leader keeps before refusing new ones. */
#define RAFT_READ_PENDING_MAX 65536u

/* Entries in one message a node accepts from a peer; more is treated as malformed. */
#define RAFT_MSG_ENTRIES_MAX (1u << 20)

#endif /* LATCH_RAFT_LIMITS_H */
