#!/usr/bin/python3
"""Debian's python3-etcd3 (0.12.0, grpcio 1.51.1) against an etcd-compatible server.

Usage: /usr/bin/python3 etcd3_compat.py --endpoints HOST:PORT[,HOST:PORT...]

python3-etcd3 talks to one endpoint per client object and has no retry or failover, so with
several endpoints this script opens one client per endpoint: writes go through one member
and reads through every member; the watch runs on a different member from the writes; the
lease is granted and revoked through a member other than the leader when there is one, but
refreshed (LeaseKeepAlive) and queried (LeaseTimeToLive) through the leader, found with
status(), because latchd serves keep-alives on the leader only for now (docs/operations.md).

Checks: put/get/get_prefix/delete, a transaction with compares, lease grant + put with the
lease + refresh + revoke (the key goes), a watch_prefix iterator consumed in a thread
(bounded), status() (leader, version, db_size) and members, an uncontended lock.
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed (2 if etcd3 will not
import: the reason is printed).
"""

import argparse
import os
import sys
import threading
import time
import traceback

CALL_TIMEOUT = 10  # s, passed to every gRPC call by etcd3.client(timeout=...)

failures = []


def ok(name):
    print("ok - " + name, flush=True)


def fail(name, detail=""):
    failures.append(name)
    print("FAIL - " + name, flush=True)
    for line in str(detail).rstrip().splitlines():
        print("    " + line, flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


def attempt(name, fn, *args, **kwargs):
    """Calls fn; on an exception reports `name` failed and returns (False, None)."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every client error is a failed check here
        fail(name, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=4)))
        return False, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True, help="comma-separated host:port list")
    args = ap.parse_args()
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]

    try:
        import etcd3
        import etcd3.transactions
    except Exception as e:  # report exactly why, do not patch the library
        print("FAIL - import etcd3 (python3-etcd3)", flush=True)
        print("    %s: %s" % (type(e).__name__, e), flush=True)
        for line in traceback.format_exc().splitlines():
            print("    " + line, flush=True)
        return 2
    ok("import etcd3 %s from %s" % (getattr(etcd3, "__version__", "?"), etcd3.__file__))

    clients = []
    for ep in endpoints:
        host, port = ep.rsplit(":", 1)
        clients.append(etcd3.client(host=host, port=int(port), timeout=CALL_TIMEOUT))
    c0 = clients[0]
    pfx = "compat-py/%d-%d/" % (os.getpid(), time.time_ns())

    # ---- status / members ----------------------------------------------------------------
    leader_idx = None
    good, members = attempt("members", lambda: list(c0.members))
    if good:
        check("members: %d member(s), each with an id, a name and client URLs" % len(endpoints),
              len(members) == len(endpoints)
              and all(m.id and m.name and list(m.client_urls) for m in members),
              "\n".join(str(m) + " client_urls=%s" % list(m.client_urls) for m in members))
    for i, c in enumerate(clients):
        good, st = attempt("status %s" % endpoints[i], c.status)
        if not good:
            continue
        check("status %s: a leader among the members, version 3.x, db_size > 0" % endpoints[i],
              st.leader is not None and str(st.version).startswith("3.") and st.db_size > 0,
              "leader %s version %r db_size %r raft_index %r raft_term %r"
              % (st.leader, st.version, st.db_size, st.raft_index, st.raft_term))
        if st.leader is not None and leader_idx is None:
            urls = [u.replace("http://", "") for u in st.leader.client_urls]
            for j, ep in enumerate(endpoints):
                if ep in urls:
                    leader_idx = j
    if len(endpoints) > 1:
        check("status: the leader's client URL is one of the endpoints", leader_idx is not None)
    if leader_idx is None:
        leader_idx = 0
    leader = clients[leader_idx]
    # A member other than the leader (the leader itself with one member).
    other_idx = next((i for i in range(len(clients)) if i != leader_idx), leader_idx)
    other = clients[other_idx]

    # ---- put / get / get_prefix / delete ---------------------------------------------------
    k = pfx + "kv/"
    writer = other
    good = all(attempt("put %s" % key, writer.put, k + key, val)[0]
               for key, val in (("a", "1"), ("b", "2"), ("c", "3")))
    if good:
        ok("put a, b, c (through %s)" % endpoints[other_idx])
    good, resp = attempt("put a prev_kv", writer.put, k + "a", "1b", prev_kv=True)
    if good:
        check("put prev_kv returns the old value", resp.prev_kv.value == b"1",
              "prev_kv %r" % resp.prev_kv)
    for i, c in enumerate(clients):
        good, got = attempt("get a via %s" % endpoints[i], c.get, k + "a")
        if good:
            v, meta = got
            check("get a via %s: value 1b, version 2" % endpoints[i],
                  v == b"1b" and meta is not None and meta.version == 2
                  and meta.key == (k + "a").encode(),
                  "value %r meta %r" % (v, meta and vars(meta)))
        good, got = attempt("get_prefix via %s" % endpoints[i],
                            lambda: list(c.get_prefix(k)))
        if good:
            pairs = [(m.key.decode(), v.decode()) for v, m in got]
            check("get_prefix via %s: a=1b, b=2, c=3 in key order" % endpoints[i],
                  pairs == [(k + "a", "1b"), (k + "b", "2"), (k + "c", "3")], "got %r" % pairs)
    good, missing = attempt("get missing", c0.get, k + "missing")
    if good:
        check("get of a missing key returns (None, None)", missing == (None, None),
              "got %r" % (missing,))
    good, deleted = attempt("delete c", writer.delete, k + "c")
    if good:
        check("delete returns True for an existing key", deleted is True, "got %r" % deleted)
    good, deleted = attempt("delete c again", writer.delete, k + "c")
    if good:
        check("delete returns False for a missing key", deleted is False, "got %r" % deleted)
    good, _ = attempt("delete_prefix", writer.delete_prefix, k)
    if good:
        good, rest = attempt("get_prefix after delete_prefix", lambda: list(c0.get_prefix(k)))
        if good:
            check("delete_prefix removes the rest", rest == [], "got %r" % rest)

    # ---- transaction -----------------------------------------------------------------------
    tk = pfx + "txn/k"
    if attempt("txn: put", c0.put, tk, "v0")[0]:
        tx = c0.transactions
        good, res = attempt(
            "txn: compare value==v0 and version>0 → success",
            c0.transaction,
            compare=[tx.value(tk) == "v0", tx.version(tk) > 0,
                     tx.create(pfx + "txn/missing") == 0],
            success=[tx.put(tk, "success"), etcd3.transactions.Get(tk)],
            failure=[tx.put(tk, "failure")])
        if good:
            succeeded, responses = res
            rng = responses[1] if len(responses) == 2 else None
            check("txn: succeeded; success ops ran in order (the get sees the put)",
                  succeeded is True and rng is not None and len(rng) == 1
                  and rng[0][0] == b"success",
                  "succeeded %r responses %r" % (succeeded, responses))
        good, res = attempt(
            "txn: compare value==v0 (now false) → failure",
            c0.transaction,
            compare=[tx.value(tk) == "v0"],
            success=[tx.put(tk, "success2")],
            failure=[tx.put(tk, "failure"), etcd3.transactions.Get(tk)])
        if good:
            succeeded, responses = res
            rng = responses[1] if len(responses) == 2 else None
            check("txn: not succeeded; failure ops ran",
                  succeeded is False and rng is not None and len(rng) == 1
                  and rng[0][0] == b"failure",
                  "succeeded %r responses %r" % (succeeded, responses))
        good, v = attempt("txn: get after", c0.get, tk)
        if good:
            check("txn: final value is 'failure'", v[0] == b"failure", "got %r" % (v,))

    # ---- lease -----------------------------------------------------------------------------
    lk = pfx + "lease/k"
    good, lease = attempt("lease: grant 30 s (via %s)" % endpoints[other_idx], other.lease, 30)
    if good:
        check("lease: granted with an id and TTL 30", lease.id > 0 and lease.ttl == 30,
              "id %r ttl %r" % (lease.id, lease.ttl))
        if attempt("lease: put with the lease", other.put, lk, "leased", lease=lease)[0]:
            good, got = attempt("lease: get the leased key", c0.get, lk)
            if good:
                check("lease: the key carries the lease id",
                      got[1] is not None and got[1].lease_id == lease.id,
                      "meta %r" % (got[1] and vars(got[1])))
        good, resp = attempt("lease: refresh (LeaseKeepAlive via the leader %s)"
                             % endpoints[leader_idx], lambda: leader.refresh_lease(lease.id))
        if good:
            resp = list(resp)
            check("lease: refresh gets one reply with the id and TTL 30",
                  len(resp) == 1 and resp[0].ID == lease.id and resp[0].TTL == 30,
                  "responses %r" % resp)
        good, info = attempt("lease: get_lease_info (LeaseTimeToLive keys=true via the leader)",
                             leader.get_lease_info, lease.id)
        if good:
            check("lease: TTL in (0, 30], granted 30, keys = [the leased key]",
                  0 < info.TTL <= 30 and info.grantedTTL == 30 and list(info.keys) == [lk.encode()],
                  "info %r" % info)
        if attempt("lease: revoke (via %s)" % endpoints[other_idx],
                   other.revoke_lease, lease.id)[0]:
            ok("lease: revoke")
            for i, c in enumerate(clients):
                good, got = attempt("lease: get after revoke via %s" % endpoints[i], c.get, lk)
                if good:
                    check("lease: the attached key is gone after revoke (via %s)" % endpoints[i],
                          got == (None, None), "got %r" % (got,))
            good, info = attempt("lease: get_lease_info after revoke",
                                 leader.get_lease_info, lease.id)
            if good:
                check("lease: TTL -1 after revoke", info.TTL == -1, "info %r" % info)

    # ---- watch -----------------------------------------------------------------------------
    wp = pfx + "watch/"
    watcher = clients[-1]  # with three members: the last one; the writes go through the first
    events, errors = [], []
    got_all = threading.Event()
    good, wres = attempt("watch: watch_prefix", watcher.watch_prefix, wp)
    if good:
        it, cancel = wres

        def consume():
            try:
                for ev in it:
                    events.append(ev)
                    if len(events) >= 3:
                        got_all.set()
                        return
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %s" % (type(e).__name__, e))
            finally:
                got_all.set()

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        revs = []
        for op in (lambda: c0.put(wp + "x", "1"), lambda: c0.put(wp + "y", "2"),
                   lambda: c0.delete(wp + "x", return_response=True)):
            good, r = attempt("watch: write", op)
            if good:
                revs.append(r.header.revision)
        got_all.wait(20)
        cancel()
        t.join(10)
        summary = [(type(e).__name__, e.key.decode(), e.value.decode(), e.mod_revision)
                   for e in events]
        want = [("PutEvent", wp + "x", "1", revs[0] if revs else None),
                ("PutEvent", wp + "y", "2", revs[1] if len(revs) > 1 else None),
                ("DeleteEvent", wp + "x", "", revs[2] if len(revs) > 2 else None)]
        check("watch: the iterator yields put x, put y, delete x in order with their revisions "
              "(watch on %s, writes on %s)" % (endpoints[-1], endpoints[0]),
              not errors and summary == want,
              "errors %r\ngot  %r\nwant %r" % (errors, summary, want))
        check("watch: the consumer thread ended after cancel", not t.is_alive())

    # ---- lock (uncontended; python3-etcd3's own recipe: lease + txn) -------------------------
    good, lock = attempt("lock: create", c0.lock, pfx + "lock", ttl=10)
    if good:
        good, acquired = attempt("lock: acquire", lock.acquire, timeout=10)
        if good and check("lock: acquire returns True", acquired is True, "got %r" % acquired):
            good, held = attempt("lock: is_acquired", lock.is_acquired)
            if good:
                check("lock: is_acquired is True", held is True, "got %r" % held)
            good, released = attempt("lock: release", lock.release)
            if good:
                check("lock: release returns True", released is True, "got %r" % released)
        if lock.lease is not None:
            attempt("lock: revoke its lease", other.revoke_lease, lock.lease.id)

    # Close every client but the watcher's: python3-etcd3's watch thread (a daemon) reopens
    # its Watch stream when the stream ends, and on a closed channel it dies with
    # "ValueError: Cannot invoke RPC: Channel closed!" on stderr. Process exit ends it.
    for c in clients:
        if c is not watcher:
            c.close()
    if failures:
        print("# %d check(s) failed" % len(failures), flush=True)
        return 1
    print("# all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
