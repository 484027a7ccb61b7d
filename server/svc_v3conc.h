/*
 * svc_v3conc.h — etcd's lock and election services (/v3lockpb.Lock/{Lock,Unlock} and
 * /v3electionpb.Election/{Campaign,Proclaim,Leader,Observe,Resign}) on a node, with etcd
 * 3.4's behaviour (its server runs clientv3/concurrency's Mutex and Election against itself;
 * ETCD-API.md §3.1, §4.6; docs/decisions/v3lock-election.md).
 *
 *  - Lock(name, lease): key name/<lease in %x>; a txn (create_revision(key) == 0 → put ""
 *    with the lease, else range(key)) through the log (srv_kv_propose_txn); my revision is
 *    the key's create revision (lease 0: a lease of 60 s is granted first, as etcd's
 *    server opens a concurrency.Session). The call then waits, on this member, until no key under
 *    name/ has a lower create revision, and answers {header, key}; the header's revision is
 *    the txn's when the lock was free at once, else the revision at which the wait ended.
 *  - Campaign(name, lease, value): the same with the value (a key that exists with another
 *    value gets it, as etcd's Proclaim inside Campaign), answered with {header of the txn,
 *    leader {name, key, rev, lease}}.
 *  - Proclaim / Resign(leader): txn create_revision(key) == rev → put value with the
 *    leader's lease / delete. A Proclaim whose compare fails: "election: not leader".
 *  - Unlock(key): DeleteRange(key). Leader(name): after a read index, the first-created key
 *    under name/, or "election: no leader". Observe(name): a stream of {header, kv}: the
 *    current leader once there is one, then each put of its key in revision order; once the
 *    key is deleted, the next leader (as etcd's Election.Observe).
 *  - A missing leader field: "\"leader\" field must be provided".
 *
 * Errors are answered as etcd's server does (its client library's errors become gRPC code
 * Unknown with etcd's text, e.g. "etcdserver: requested lease not found"); the deadline and
 * the client's cancel end a wait, and the waiting key is then deleted (Mutex.Lock unlocks,
 * Campaign resigns). Waiting never polls: srv_v3conc_applied (wired to the node's applied
 * hook) re-checks the waiters and feeds the observers. Everything runs on the loop thread.
 */
#ifndef SERVER_SVC_V3CONC_H
#define SERVER_SVC_V3CONC_H

#include <stdint.h>

#include "grpc_server.h"
#include "lease.h"
#include "node.h"
#include "svc_kv.h"

struct srv_v3conc;

struct srv_v3conc_config {
    struct srv_node *node; /* borrowed; must outlive the service */
    struct srv_kv *kv;     /* borrowed: headers and proposals (srv_kv_propose_txn) */
    /* borrowed, may be NULL: told of the session leases granted here (lease.h) */
    struct srv_lease_keeper *keeper;
};

/* Registers the seven methods on s (borrowed) and sets *out. Returns 0, LATCH_ENOMEM or
 * api_server_register_*'s errors (then the server must be closed without serving). */
int srv_v3conc_register(struct api_server *s,
                        const struct srv_v3conc_config *cfg,
                        struct srv_v3conc **out);

/* The node applied up to revision (call from the node's applied hook, with the service as
 * data): waiting Locks and Campaigns are re-checked, observers are fed. NULL is a no-op. */
void srv_v3conc_applied(void *svc, int64_t revision);

/* Frees the service after the server closed (its calls are dead): waiting calls are
 * answered (which frees them) and proposals still in flight no longer point at it. NULL is a
 * no-op. */
void srv_v3conc_free(struct srv_v3conc *c);

#endif /* SERVER_SVC_V3CONC_H */
