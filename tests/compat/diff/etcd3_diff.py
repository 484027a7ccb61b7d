#!/usr/bin/python3
"""The python3-etcd3 session of the differential runs (run_diff.py).

Usage: /usr/bin/python3 etcd3_diff.py --endpoints HOST:PORT,HOST:PORT,...

Talks to ONE member, a follower when there is one (found with status() on every member), so
lease keep-alives and time-to-live queries are forwarded by the server to its leader. Prints
one line per step, "<step> <result>", where the result holds revisions, values, counts and
error codes/texts but no ids, ports or timings (run_diff.py compares etcd's lines with
latch's). Raw gRPC calls (python3-etcd3's own stubs) cover what the library does not expose:
reads at a revision and the error status of a failing call. Exit 0 unless the client could
not be made.
"""

import argparse
import sys
import threading

import grpc

CALL_TIMEOUT = 10


def out(step, *parts):
    print(step, " ".join(str(p) for p in parts), flush=True)


def kv_text(meta, value=None):
    if meta is None:
        return "none"
    text = "%s create=%d mod=%d ver=%d lease=%s" % (
        meta.key.decode(), meta.create_revision, meta.mod_revision, meta.version,
        "yes" if getattr(meta, "lease_id", None) or getattr(meta, "lease", 0) else "0")
    if value is not None:
        text += " value=%s" % value.decode()
    return text


def err_text(e):
    if isinstance(e, grpc.RpcError):
        return "error %s %s" % (e.code().name, e.details())
    cause = getattr(e, "__cause__", None) or getattr(e, "__context__", None)
    if isinstance(cause, grpc.RpcError):
        return "error %s(%s %s)" % (type(e).__name__, cause.code().name, cause.details())
    return "error %s %s" % (type(e).__name__, e)


def step(name, fn):
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - the error is the step's result
        out(name, err_text(e))
        return None
    if r is not None:
        out(name, r)
    return r


def pick_follower(etcd3, endpoints):
    """(client, host, port) of a member that is not the leader, else of the first one."""
    clients = []
    for ep in endpoints:
        host, port = ep.rsplit(":", 1)
        clients.append((etcd3.client(host=host, port=int(port), timeout=CALL_TIMEOUT), ep))
    chosen = clients[0]
    for c, ep in clients:
        try:
            st = c.status()
            if st.leader is not None and st.leader.id != c.kvstub.Range(
                    etcd3.etcdrpc.RangeRequest(key=b"x"), timeout=CALL_TIMEOUT).header.member_id:
                chosen = (c, ep)
                break
        except Exception:  # noqa: BLE001 - try the next one
            continue
    for c, _ in clients:
        if c is not chosen[0]:
            c.close()
    return chosen[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    args = ap.parse_args()
    try:
        import etcd3
        from etcd3 import etcdrpc
    except ImportError as e:
        print("cannot import etcd3: %s" % e, file=sys.stderr)
        return 2
    c = pick_follower(etcd3, args.endpoints.split(","))
    kv = c.kvstub

    # put / get
    # revisions relative to the first put (base): the session may follow others
    base = step("put-a", lambda: c.put("/py/a", "1").header.revision) or 0
    step("put-b", lambda: c.put("/py/b", "2").header.revision)
    step("put-a2-prevkv", lambda: kv_text(c.put("/py/a", "11", prev_kv=True).prev_kv))
    step("get-a", lambda: kv_text(*reversed(c.get("/py/a"))))
    step("get-missing", lambda: repr(c.get("/py/none")))
    step("get-prefix", lambda: [kv_text(m, v) for v, m in c.get_prefix("/py/")])
    step("get-prefix-desc", lambda: [kv_text(m, v) for v, m in c.get_prefix(
        "/py/", sort_order="descend", sort_target="create")])
    step("get-range", lambda: [kv_text(m, v) for v, m in c.get_range("/py/a", "/py/b")])
    step("get-rev", lambda: [kv.Range(etcdrpc.RangeRequest(key=b"/py/a", revision=base + 1),
                                      timeout=CALL_TIMEOUT).kvs[0].value.decode()])
    step("get-future", lambda: kv.Range(etcdrpc.RangeRequest(key=b"/py/a", revision=10**6),
                                        timeout=CALL_TIMEOUT))
    step("get-empty-key", lambda: kv.Range(etcdrpc.RangeRequest(key=b""), timeout=CALL_TIMEOUT))
    step("replace-ok", lambda: c.replace("/py/b", "2", "22"))
    step("replace-no", lambda: c.replace("/py/b", "2", "23"))
    step("put-if-not-exists", lambda: c.put_if_not_exists("/py/c", "3"))
    step("put-if-not-exists-2", lambda: c.put_if_not_exists("/py/c", "4"))

    # transactions
    def txn(compare, success, failure):
        ok_, responses = c.transaction(compare=compare, success=success, failure=failure)
        return "succeeded=%s responses=%d" % (ok_, len(responses))
    step("txn-value", lambda: txn([c.transactions.value("/py/a") == "11"],
                                  [c.transactions.put("/py/t", "yes")],
                                  [c.transactions.put("/py/t", "no")]))
    step("txn-version", lambda: txn([c.transactions.version("/py/a") > 5],
                                    [c.transactions.delete("/py/t")],
                                    [c.transactions.get("/py/t")]))
    step("txn-create-mod", lambda: txn([c.transactions.create("/py/zz") == 0,
                                        c.transactions.mod("/py/a") < 100],
                                       [c.transactions.put("/py/u", "u")], []))
    step("get-t-u", lambda: [kv_text(m, v) for v, m in c.get_prefix("/py/")])

    # delete
    step("delete-one", lambda: c.delete("/py/u"))
    step("delete-none", lambda: c.delete("/py/none"))
    step("delete-prefix", lambda: c.delete_prefix("/py/t").deleted)

    # leases, through this member (a follower: renew and time-to-live are forwarded)
    lease = None
    try:
        lease = c.lease(30)
        out("lease-grant", "ok")
    except Exception as e:  # noqa: BLE001
        out("lease-grant", err_text(e))
    if lease is not None:
        out("lease-ttl", "granted=%d" % lease.granted_ttl,
            "remaining-ok=%s" % (0 < lease.remaining_ttl <= 30))
        step("put-leased", lambda: c.put("/py/leased", "v", lease=lease).header.revision)
        step("lease-keys", lambda: sorted(k.decode() for k in lease.keys))
        step("lease-refresh", lambda: [r.TTL for r in lease.refresh()])
        step("get-leased", lambda: kv_text(*reversed(c.get("/py/leased"))))
        step("lease-revoke", lambda: (lease.revoke(), "done")[1])
        step("get-after-revoke", lambda: repr(c.get("/py/leased")))
        step("lease-ttl-gone", lambda: c.get_lease_info(lease.id).TTL)
        step("lease-refresh-gone", lambda: [r.TTL for r in c.refresh_lease(lease.id)])
    step("lease-revoke-unknown", lambda: c.revoke_lease(0x1234abcd))
    step("put-unknown-lease", lambda: kv.Put(etcdrpc.PutRequest(key=b"/py/x", value=b"v",
                                                                lease=0x1234abcd),
                                             timeout=CALL_TIMEOUT))

    # watch: history from a revision, consumed in a thread (bounded)
    got = []

    def watch_it():
        it, cancel = c.watch_prefix("/py/", start_revision=base)
        for ev in it:
            got.append("%s %s %s" % (type(ev).__name__, ev.key.decode(), ev.value.decode()))
            if len(got) >= 6:
                break
        cancel()
    t = threading.Thread(target=watch_it, daemon=True)
    t.start()
    t.join(timeout=15)
    out("watch-history", got)

    # lock (python3-etcd3's own recipe: /locks/<name>)
    lk = c.lock("pylock", ttl=10)
    step("lock-acquire", lambda: lk.acquire(timeout=5))
    step("lock-held", lambda: lk.is_acquired())
    step("lock-release", lambda: lk.release())
    step("lock-gone", lambda: repr(c.get("/locks/pylock")))

    # compaction
    step("compact", lambda: c.compact(base + 5) or "done")
    step("get-compacted", lambda: kv.Range(etcdrpc.RangeRequest(key=b"/py/a", revision=base + 1),
                                           timeout=CALL_TIMEOUT))
    step("compact-again", lambda: c.compact(base + 2))

    # status and members (ids and versions are the servers' own: only their shape)
    st = None
    try:
        st = c.status()
    except Exception as e:  # noqa: BLE001
        out("status", err_text(e))
    if st is not None:
        out("status-fields", "has-leader=%s" % (st.leader is not None),
            "version-3.4=%s" % st.version.startswith("3.4"))
    step("members", lambda: sorted("%s peers=%d clients=%d" % (m.name, len(m.peer_urls),
                                                                len(m.client_urls))
                                   for m in c.members))
    step("alarms", lambda: list(c.list_alarms()))
    step("final", lambda: [kv_text(m, v) for v, m in c.get_prefix("/py/")])
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
