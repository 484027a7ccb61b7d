#!/usr/bin/python3
"""Runtime membership changes of latchd against the real etcdctl (Debian's etcd-client, API 3).

Usage: test_latchd_member.py LATCHD

Three members on free loopback ports; a writer thread puts keys through the whole test and
records the acknowledged ones. Then, as an etcd operator would:
  member add m4 --learner (through a follower); latchd m4 with --initial-cluster-state
  existing catches up (it serves the writer's keys serializably; it joins early, so it
  replays the log from index 1); member promote; member list shows 4 started members
  with client URLs; member update of m4's peer URLs (m4 restarted on them) is listed; member
  remove of a follower: its process exits with an error log, and again when restarted;
  move-leader to another member:
  endpoint status shows the new leader; SIGTERM of the leader: it hands leadership over and
  exits 0, and another member leads; a data dir started under another --name is refused; the
  old leader restarts from its data dir; removing the leader itself: it exits, the others
  elect a leader and take writes; a late joiner m5 (snapshots every 60 entries) installs the
  leader's snapshot and knows every member's name from it, and is promoted; at the end every
  acknowledged key is on every remaining member. Error cases with etcdctl's exact error lines: removing an unknown id, promoting a
  voter, adding a duplicate peer URL.

Every wait polls a condition against a deadline; only outcomes are asserted, never how long
something took. Only the latchd processes this script started are signalled (by PID).
Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import json
import os
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import (Member, check, cluster, etcdctl, failures, free_ports, get_json,  # noqa: E402
                       kvs_of, ok, sanitizer_check, wait_until)


class Writer(threading.Thread):
    """Puts w-000000, w-000001, ... round-robin through the endpoints it is given; records the
    keys etcdctl acknowledged (exit 0)."""

    def __init__(self, endpoints):
        super().__init__(daemon=True)
        self.endpoints = list(endpoints)
        self.lock = threading.Lock()
        self.acked = []
        self.stop = threading.Event()

    def set_endpoints(self, endpoints):
        with self.lock:
            self.endpoints = list(endpoints)

    def run(self):
        i = 0
        while not self.stop.is_set():
            with self.lock:
                eps = list(self.endpoints)
            key = "w-%06d" % i
            r = etcdctl(eps[i % len(eps)], "put", key, "v%d" % i, timeout=15, command_timeout=5)
            if r.rc == 0:
                self.acked.append(key)
            i += 1
            self.stop.wait(0.05)


def member_list(endpoint):
    r = etcdctl(endpoint, "member", "list", "-w", "json")
    if r.rc != 0:
        return None, r
    try:
        return json.loads(r.out).get("members", []), r
    except ValueError:
        return None, r


def status(endpoint):
    r = etcdctl(endpoint, "endpoint", "status", "-w", "json")
    try:
        return json.loads(r.out)[0]["Status"], r
    except (ValueError, IndexError, KeyError, TypeError):
        return None, r


def move_leader_raw(endpoint, target):
    """(status code name, details) of a raw Maintenance/MoveLeader call."""
    import grpc
    req = bytearray(b"\x08")
    while True:  # MoveLeaderRequest.targetID, field 1, varint
        b = target & 0x7f
        target >>= 7
        req.append(b | (0x80 if target else 0))
        if not target:
            break
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary("/etcdserverpb.Maintenance/MoveLeader")
        try:
            call(bytes(req), timeout=10)
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details()


def leader_id(endpoint):
    st, _ = status(endpoint)
    return st.get("leader", 0) if st else None  # JSON omits a zero leader


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    root = tempfile.mkdtemp(prefix="latchd-member-")
    # Snapshots every 60 entries, keeping 5 behind: m4 joins early and replays the log from
    # the start, m5 joins late and gets a snapshot.
    os.environ["LATCH_SNAPSHOT_CATCHUP_ENTRIES"] = "5"
    snap_args = ["--snapshot-count", "60"]
    members, healthy = cluster(latchd, root, 3, prefix="m", extra_args=snap_args)
    everyone = list(members)
    writer = None
    try:
        if not check("three members start and are healthy", healthy,
                     "\n".join(m.tail() for m in members)):
            return 1
        m1, m2, m3 = members
        eps = [m.endpoint for m in members]
        writer = Writer(eps)
        writer.start()
        wait_until(lambda: len(writer.acked) >= 5, 30)

        # -- errors first (etcdctl's exact lines) ------------------------------------------
        r = etcdctl(eps, "member", "remove", "1234abcd")
        check("member remove of an unknown id: etcdctl prints etcd's error",
              r.rc != 0 and "Error: etcdserver: member not found" in r.err, r)
        r = etcdctl(eps, "member", "promote", m2.id)
        check("member promote of a voter: etcdctl prints etcd's error",
              r.rc != 0 and "Error: etcdserver: can only promote a learner member" in r.err, r)
        r = etcdctl(eps, "member", "add", "dup", "--peer-urls=" + m3.peer_url)
        check("member add of a peer URL in use: etcdctl prints etcd's error",
              r.rc != 0 and "Error: etcdserver: Peer URLs already exists" in r.err, r)

        # -- add a learner and start it ----------------------------------------------------
        m4 = Member(latchd, root, "m4", m1.token, snap_args)
        everyone.append(m4)
        lead = leader_id(m1.endpoint)
        via = next(m for m in members if int(m.id, 16) != lead)
        r = etcdctl(via.endpoint, "member", "add", "m4", "--learner", "--peer-urls=" + m4.peer_url)
        added = r.rc == 0 and "Member" in r.out and "added to cluster" in r.out
        check("member add m4 --learner through a follower (it forwards to the leader)", added, r)
        new = []

        def listed():  # a member lists m4 once it applied the change (bounded wait)
            lst, _ = member_list(m1.endpoint)
            new[:] = [x for x in (lst or []) if m4.peer_url in x.get("peerURLs", [])]
            return len(new) == 1
        check("member list shows m4 as an unstarted learner",
              wait_until(listed, 15) and new[0].get("isLearner") is True
              and not new[0].get("name"), member_list(m1.endpoint)[1])
        m4.cluster = m1.cluster + ",m4=" + m4.peer_url
        m4.extra_args = snap_args + ["--initial-cluster-state", "existing"]
        m4.start()
        check("m4 joins with --initial-cluster-state existing and becomes healthy",
              m4.wait_healthy(), m4.tail())
        m4.read_id()
        check("m4 knows its id from the cluster",
              new and m4.id is not None and int(m4.id, 16) == new[0]["ID"], m4.tail())

        def caught_up():
            doc, _ = get_json(m4.endpoint, "w-", "--prefix", "--consistency=s")
            have = kvs_of(doc)
            return len(writer.acked) > 5 and all(k in have for k in writer.acked[:5])
        check("m4 catches up (serializable reads on m4 see the writer's keys)",
              wait_until(caught_up, 60), m4.tail())

        def promote():
            return etcdctl(eps, "member", "promote", m4.id)
        r = promote()
        if r.rc != 0 and "in sync with leader" in r.err:
            wait_until(lambda: promote().rc == 0, 30)
        def m4_voter():
            lst, _ = member_list(m1.endpoint)
            me4 = [x for x in (lst or []) if m4.peer_url in x.get("peerURLs", [])]
            return len(me4) == 1 and not me4[0].get("isLearner")
        check("member promote m4: m4 is a voter", wait_until(m4_voter, 15),
              member_list(m1.endpoint)[1])

        def four_started():
            lst, _ = member_list(m2.endpoint)
            return lst is not None and len(lst) == 4 and all(
                x.get("name") and x.get("clientURLs") for x in lst)
        check("member list shows 4 started members with names and client URLs",
              wait_until(four_started, 30), member_list(m2.endpoint)[1])
        def table_started():
            r = etcdctl(m2.endpoint, "member", "list")
            return r.rc == 0 and r.out.count(", started, ") == 4 and "unstarted" not in r.out
        check("member list (table) prints started for every member",
              wait_until(table_started, 15), etcdctl(m2.endpoint, "member", "list"))
        writer.set_endpoints(eps + [m4.endpoint])

        # -- update m4's peer URLs, restart it on them -------------------------------------
        new_peer = free_ports(1)[0]
        new_url = "http://127.0.0.1:%d" % new_peer
        r = etcdctl(eps, "member", "update", m4.id, "--peer-urls=" + new_url)
        check("member update m4 --peer-urls", r.rc == 0 and "updated in cluster" in r.out, r)
        check("member list shows m4's new peer URL",
              wait_until(lambda: any(x.get("peerURLs") == [new_url]
                                     for x in (member_list(m3.endpoint)[0] or [])), 15),
              member_list(m3.endpoint)[1])
        rc = m4.terminate()
        check("m4 stops on SIGTERM (exit 0)", rc == 0, m4.tail())
        m4.peer_port = new_peer
        m4.cluster = m1.cluster + ",m4=" + m4.peer_url  # its flags follow the update
        m4.start()
        check("m4 restarts on its new peer URL and is healthy", m4.wait_healthy(), m4.tail())

        def m4_gets_new_writes():
            n = len(writer.acked)
            if n < 3:
                return False
            doc, _ = get_json(m4.endpoint, writer.acked[-1], "--consistency=s")
            return bool(kvs_of(doc))
        check("m4 replicates again after moving its peer URL",
              wait_until(m4_gets_new_writes, 30), m4.tail())

        # -- remove a follower -------------------------------------------------------------
        lead = leader_id(m1.endpoint)
        follower = next(m for m in (m1, m2, m3) if int(m.id, 16) != lead)
        r = etcdctl([m.endpoint for m in (m1, m2, m3, m4) if m is not follower],
                    "member", "remove", follower.id)
        check("member remove of a follower", r.rc == 0 and "removed from cluster" in r.out, r)
        rest = [m for m in (m1, m2, m3, m4) if m is not follower]
        writer.set_endpoints([m.endpoint for m in rest])
        check("the removed member's process exits with an error log",
              wait_until(lambda: not follower.alive(), 30) and follower.proc.returncode != 0
              and "was removed from the cluster" in follower.log_text(), follower.tail())
        check("member list shows 3 members",
              wait_until(lambda: len(member_list(rest[0].endpoint)[0] or []) == 3, 15),
              member_list(rest[0].endpoint)[1])
        follower.start()  # its data dir cannot come back
        check("the removed member, restarted, stops again with an error log",
              wait_until(lambda: not follower.alive(), 30) and follower.proc.returncode == 1
              and "was removed from the cluster" in follower.log_text(), follower.tail())

        # -- move-leader -------------------------------------------------------------------
        lead = leader_id(rest[0].endpoint)
        leader_m = next((m for m in rest if int(m.id, 16) == lead), None)
        target = next(m for m in rest if m is not leader_m)
        r = etcdctl([m.endpoint for m in rest], "move-leader", target.id)
        check("move-leader to another member",
              r.rc == 0 and "Leadership transferred" in r.out, r)
        check("endpoint status shows the new leader",
              wait_until(lambda: leader_id(rest[0].endpoint) == int(target.id, 16), 15),
              status(rest[0].endpoint)[1])
        if leader_m is not None:
            # etcdctl only ever calls the leader; a raw call shows what a follower answers.
            code, details = move_leader_raw(leader_m.endpoint, int(target.id, 16))
            check("MoveLeader on a follower: FailedPrecondition \"etcdserver: not leader\"",
                  code == "FAILED_PRECONDITION" and details == "etcdserver: not leader",
                  (code, details))

        # -- SIGTERM of the leader ----------------------------------------------------------
        leader_m = target
        others = [m for m in rest if m is not leader_m]
        rc = leader_m.terminate()
        check("SIGTERM of the leader: it exits 0", rc == 0, leader_m.tail())
        check("the leader handed leadership over before exiting",
              "leadership handed over before exiting" in leader_m.log_text(), leader_m.tail())

        def new_leader():
            lid = leader_id(others[0].endpoint)
            return lid and lid != int(leader_m.id, 16) and any(
                int(m.id, 16) == lid for m in others)
        check("another member leads after the SIGTERM", wait_until(new_leader, 15),
              status(others[0].endpoint)[1])
        writer.set_endpoints([m.endpoint for m in others])
        wait_until(lambda: len(writer.acked) >= 3, 5)
        n = len(writer.acked)
        wait_until(lambda: len(writer.acked) > n + 3, 20)
        check("writes go on after the leader left", len(writer.acked) > n, len(writer.acked))

        # -- the data dir keeps the identity -----------------------------------------------
        impostor = Member(latchd, root, "other", m1.token)
        impostor.data_dir = leader_m.data_dir
        impostor.cluster = "other=" + impostor.peer_url
        everyone.append(impostor)
        impostor.start()
        rc = impostor.terminate(send=False)
        check("a data dir started with another --name is refused",
              rc == 1 and 'belongs to member "%s"' % leader_m.name in impostor.log_text(),
              impostor.tail())
        leader_m.start()  # the old leader rejoins from its data dir
        check("the former leader restarts from its data dir (ids from member.id)",
              leader_m.wait_healthy(), leader_m.tail())
        others.append(leader_m)

        # -- removing the leader itself ----------------------------------------------------
        wait_until(lambda: leader_id(others[0].endpoint) not in (None, 0), 15)
        lid = leader_id(others[0].endpoint)
        gone = next((m for m in others if lid and int(m.id, 16) == lid), None)
        if check("a leader is known before removing it", gone is not None,
                 status(others[0].endpoint)[1]):
            stay = [m for m in others if m is not gone]
            r = etcdctl(stay[0].endpoint, "member", "remove", gone.id)
            check("member remove of the leader (through a follower)",
                  r.rc == 0 and "removed from cluster" in r.out, r)
            writer.set_endpoints([m.endpoint for m in stay])
            check("the removed leader steps down and exits with an error log",
                  wait_until(lambda: not gone.alive(), 30) and gone.proc.returncode == 1
                  and "was removed from the cluster" in gone.log_text(), gone.tail())
            check("the remaining members elect a leader",
                  wait_until(lambda: leader_id(stay[0].endpoint) in
                             [int(m.id, 16) for m in stay], 20), status(stay[0].endpoint)[1])
            n = len(writer.acked)
            check("writes go on after the leader was removed",
                  wait_until(lambda: len(writer.acked) > n + 3, 30), len(writer.acked))
            others = stay

        # -- a late joiner gets a snapshot, members included --------------------------------
        wait_until(lambda: len(writer.acked) >= 150, 60)
        m5 = Member(latchd, root, "m5", m1.token, snap_args)
        everyone.append(m5)
        r = etcdctl([m.endpoint for m in others], "member", "add", "m5", "--learner",
                    "--peer-urls=" + m5.peer_url)
        check("member add m5 --learner", r.rc == 0 and "added to cluster" in r.out, r)
        m5.cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in others + [m5])
        m5.extra_args = snap_args + ["--initial-cluster-state", "existing"]
        m5.start()
        check("m5 joins and becomes healthy", m5.wait_healthy(), m5.tail())
        m5.read_id()
        check("m5 caught up by installing the leader's snapshot",
              wait_until(lambda: "installed snapshot" in m5.log_text(), 30), m5.tail())

        def m5_lists_everyone():
            lst, _ = member_list(m5.endpoint)
            names = sorted(x.get("name") or "" for x in (lst or []))
            return names == sorted([m.name for m in others] + ["m5"])
        check("m5 knows every member's name from the snapshot's membership record",
              wait_until(m5_lists_everyone, 30), member_list(m5.endpoint)[1])
        r = None
        for _ in range(20):
            r = etcdctl([m.endpoint for m in others], "member", "promote", m5.id)
            if r.rc == 0:
                break
            wait_until(lambda: False, 0.5)
        check("member promote m5", r is not None and r.rc == 0, r)
        others.append(m5)

        # -- every acknowledged key is everywhere ------------------------------------------
        writer.stop.set()
        writer.join(30)
        acked = list(writer.acked)

        def has_all(m):
            doc, _ = get_json(m.endpoint, "w-", "--prefix", "--consistency=s")
            have = kvs_of(doc)
            return all(k in have for k in acked)
        for m in others:
            check("every acknowledged key (%d) is on %s" % (len(acked), m.name),
                  wait_until(lambda: has_all(m), 30), m.tail())
    finally:
        if writer is not None:
            writer.stop.set()
        for m in everyone:
            if m.alive():
                m.terminate()
            m.kill()
        sanitizer_check(everyone, "membership")
    if not failures:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("logs kept in %s" % root)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
