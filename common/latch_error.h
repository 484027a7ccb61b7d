/*
 * latch_error.h — the one table of latch error codes.
 *
 * Every fallible function in latch returns an int: 0 (LATCH_OK) on success or one of the
 * negative codes below. The table is an X-macro so that the enum, latch_strerror() and
 * latch_error_name() can never disagree (libuv UV_ERRNO_MAP, canonical/raft error maps).
 * Codes are stable: they may be persisted in logs and compared by tools; append new ones at
 * the end with the next free value.
 */
#ifndef LATCH_ERROR_H
#define LATCH_ERROR_H

#include <stdbool.h>

#define LATCH_ERROR_MAP(X)                                                                         \
    X(LATCH_ENOMEM, -1, "out of memory")                                                           \
    X(LATCH_EINVAL, -2, "invalid argument")                                                        \
    X(LATCH_ENOTLEADER, -3, "this node is not the leader")                                         \
    X(LATCH_ETOOBIG, -4, "request exceeds a configured limit")                                     \
    X(LATCH_EIO, -5, "storage I/O failed; node is read-only")                                      \
    X(LATCH_ECORRUPT, -6, "persistent state failed a checksum")                                    \
    X(LATCH_ESHUTDOWN, -7, "node is shutting down")                                                \
    X(LATCH_ECOMPACTED, -8, "requested index or revision has been compacted")                      \
    X(LATCH_EUNAVAILABLE, -9, "unavailable (no leader or connection, or log entries gone)")        \
    X(LATCH_ENOLEADER, -10, "no leader is known")                                                  \
    X(LATCH_ETRANSFER, -11, "leadership transfer in progress")                                     \
    X(LATCH_ECONFPENDING, -12, "a membership change is already pending")                           \
    X(LATCH_EUNCOMMITTED, -13, "too many uncommitted bytes; proposal dropped")                     \
    X(LATCH_ESNAPOLD, -14, "snapshot is older than the current state")                             \
    X(LATCH_ENOTMEMBER, -15, "node is not a member of the cluster")                                \
    X(LATCH_ESTATE, -16, "call not allowed in the current state")                                  \
    X(LATCH_ENOSPACE, -17, "database space exceeded")                                              \
    X(LATCH_EFUTUREREV, -18, "required revision is a future revision")                             \
    X(LATCH_ENOTFOUND, -19, "not found")                                                           \
    X(LATCH_EEXIST, -20, "already exists")                                                         \
    X(LATCH_ENOTEMPTY, -21, "node has children")                                                   \
    X(LATCH_EBADVERSION, -22, "version does not match")                                            \
    X(LATCH_EFORMAT, -23, "data has a foreign or newer format")                                    \
    X(LATCH_EDUPKEY, -24, "duplicate key given in txn request")                                    \
    X(LATCH_ETOOMANYOPS, -25, "too many operations in txn request")                                \
    X(LATCH_EPROTO, -26, "the peer broke the protocol")                                            \
    X(LATCH_ETLS, -27, "TLS handshake or certificate failure")                                     \
    X(LATCH_ENOKEY, -28, "key not found")                                                          \
    X(LATCH_ELEADERCHANGED, -29, "leader changed")                                                 \
    X(LATCH_ETIMEDOUT, -30, "request timed out")                                                   \
    X(LATCH_ELEADERFAIL, -31, "request timed out, possibly due to previous leader failure")        \
    X(LATCH_ECONNLOST, -32, "request timed out, possibly due to connection lost")                  \
    X(LATCH_EPEERURLEXIST, -33, "Peer URLs already exists")                                        \
    X(LATCH_ENOTLEARNER, -34, "can only promote a learner member")                                 \
    X(LATCH_ELEARNERBEHIND, -35, "can only promote a learner member which is in sync with leader") \
    X(LATCH_ETOOMANYLEARNERS, -36, "too many learner members in cluster")                          \
    X(LATCH_ENOTSTARTED, -37, "re-configuration failed due to not enough started members")         \
    X(LATCH_EUNHEALTHY, -38, "unhealthy cluster")                                                  \
    X(LATCH_EFENCED, -39, "fencing token is not current")                                          \
    X(LATCH_EBUSY, -40, "lock is held")                                                            \
    X(LATCH_ESESSIONLOST, -41, "session expired or lost")                                          \
    X(LATCH_ECANCELED, -42, "call canceled")                                                       \
    X(LATCH_EPERM, -43, "permission denied")                                                       \
    X(LATCH_EUNIMPLEMENTED, -44, "method not implemented by the server")

enum latch_error {
    LATCH_OK = 0,
#define LATCH_ERROR_ENUM(name, value, text) name = (value),
    LATCH_ERROR_MAP(LATCH_ERROR_ENUM)
#undef LATCH_ERROR_ENUM
};

/* A human readable sentence for code; never NULL ("unknown error" for foreign codes). */
const char *latch_strerror(int code);

/* The symbolic name of code ("LATCH_EINVAL"); never NULL ("LATCH_E?" for foreign codes). */
const char *latch_error_name(int code);

/*
 * True for errors after which the object that returned them can only be closed (a failed
 * fsync, detected corruption): callers stop using it instead of retrying.
 */
bool latch_error_is_fatal(int code);

#endif /* LATCH_ERROR_H */
