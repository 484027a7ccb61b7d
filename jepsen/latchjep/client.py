"""client.py — gRPC clients of the harness: the etcd v3 API (KV, Lease, Watch, Cluster,
Maintenance, v3lock, v3election) and latch.v1, over python3-grpcio with message classes that
protoc generates from api/proto at run time (once per process, into a temporary folder).

    pb = protos()                      # pb.rpc (etcdserverpb), pb.kv (mvccpb), pb.latch, ...
    c = Client(endpoints, first=2)     # talks to endpoints[2]; on UNAVAILABLE/DEADLINE moves on
    c.kv.Put(pb.rpc.PutRequest(key=b"k", value=b"v"), timeout=5)
    c.get(b"k"), c.put(b"k", b"v"), c.cas(b"k", b"old", b"new"), c.status(), c.latch.Create(...)

A Client holds one channel at a time, to one node. When a call fails with UNAVAILABLE or
DEADLINE_EXCEEDED the *next* call goes to the next endpoint (round robin): the failed call is
never retried here, because whether a write took effect is the caller's question
(classify()). Thread use: one Client per client thread (channels are not shared between
threads of the harness, so one slow node does not stall other processes' calls).

classify(error, f) answers Jepsen's question for a failed call: "fail" when the operation
certainly did not take effect, "info" when it may have. Reads (f in the workload's
idempotent set) are always "fail": they change nothing.
"""
import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "api", "proto"))
PROTO_FILES = ("authpb/auth.proto", "mvccpb/kv.proto", "etcdserverpb/rpc.proto",
               "v3lockpb/v3lock.proto", "v3electionpb/v3election.proto", "latch/v1/latch.proto")

CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000),
                   ("grpc.keepalive_time_ms", 10000),
                   ("grpc.keepalive_timeout_ms", 5000),
                   ("grpc.keepalive_permit_without_calls", 0),
                   ("grpc.http2.max_pings_without_data", 0)]

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
    os.environ.pop(_var, None)


class _Protos:
    """The generated modules: rpc, kv, auth, v3lock, v3election, latch."""

    def __init__(self):
        out = tempfile.mkdtemp(prefix="latchjep-pb2-")
        atexit.register(shutil.rmtree, out, True)  # the modules are loaded by then
        subprocess.run(["protoc", "-I", PROTO_ROOT, "--python_out=" + out] +
                       [os.path.join(PROTO_ROOT, f) for f in PROTO_FILES], check=True)
        sys.path.insert(0, out)
        self.auth = importlib.import_module("authpb.auth_pb2")
        self.kv = importlib.import_module("mvccpb.kv_pb2")
        self.rpc = importlib.import_module("etcdserverpb.rpc_pb2")
        self.v3lock = importlib.import_module("v3lockpb.v3lock_pb2")
        self.v3election = importlib.import_module("v3electionpb.v3election_pb2")
        self.latch = importlib.import_module("latch.v1.latch_pb2")


_protos = None
_protos_lock = threading.Lock()


def protos():
    global _protos
    with _protos_lock:
        if _protos is None:
            _protos = _Protos()
        return _protos


# service -> {method: (kind, request class, response class)}; kind: uu unary, us server
# streaming, ss bidirectional streaming. Classes are (module attribute, class name).
_SERVICES = {
    "etcdserverpb.KV": ("rpc", {
        "Range": ("uu", "RangeRequest", "RangeResponse"),
        "Put": ("uu", "PutRequest", "PutResponse"),
        "DeleteRange": ("uu", "DeleteRangeRequest", "DeleteRangeResponse"),
        "Txn": ("uu", "TxnRequest", "TxnResponse"),
        "Compact": ("uu", "CompactionRequest", "CompactionResponse")}),
    "etcdserverpb.Watch": ("rpc", {"Watch": ("ss", "WatchRequest", "WatchResponse")}),
    "etcdserverpb.Lease": ("rpc", {
        "LeaseGrant": ("uu", "LeaseGrantRequest", "LeaseGrantResponse"),
        "LeaseRevoke": ("uu", "LeaseRevokeRequest", "LeaseRevokeResponse"),
        "LeaseKeepAlive": ("ss", "LeaseKeepAliveRequest", "LeaseKeepAliveResponse"),
        "LeaseTimeToLive": ("uu", "LeaseTimeToLiveRequest", "LeaseTimeToLiveResponse"),
        "LeaseLeases": ("uu", "LeaseLeasesRequest", "LeaseLeasesResponse")}),
    "etcdserverpb.Cluster": ("rpc", {
        "MemberAdd": ("uu", "MemberAddRequest", "MemberAddResponse"),
        "MemberRemove": ("uu", "MemberRemoveRequest", "MemberRemoveResponse"),
        "MemberList": ("uu", "MemberListRequest", "MemberListResponse"),
        "MemberPromote": ("uu", "MemberPromoteRequest", "MemberPromoteResponse")}),
    "etcdserverpb.Maintenance": ("rpc", {
        "Status": ("uu", "StatusRequest", "StatusResponse"),
        "HashKV": ("uu", "HashKVRequest", "HashKVResponse"),
        "Alarm": ("uu", "AlarmRequest", "AlarmResponse"),
        "MoveLeader": ("uu", "MoveLeaderRequest", "MoveLeaderResponse")}),
    "v3lockpb.Lock": ("v3lock", {
        "Lock": ("uu", "LockRequest", "LockResponse"),
        "Unlock": ("uu", "UnlockRequest", "UnlockResponse")}),
    "v3electionpb.Election": ("v3election", {
        "Campaign": ("uu", "CampaignRequest", "CampaignResponse"),
        "Proclaim": ("uu", "ProclaimRequest", "ProclaimResponse"),
        "Leader": ("uu", "LeaderRequest", "LeaderResponse"),
        "Observe": ("us", "LeaderRequest", "LeaderResponse"),
        "Resign": ("uu", "ResignRequest", "ResignResponse")}),
    "latch.v1.Latch": ("latch", {
        "SessionOpen": ("uu", "SessionOpenRequest", "SessionOpenResponse"),
        "SessionKeepAlive": ("ss", "SessionKeepAliveRequest", "SessionKeepAliveResponse"),
        "SessionClose": ("uu", "SessionCloseRequest", "SessionCloseResponse"),
        "Create": ("uu", "CreateRequest", "CreateResponse"),
        "Get": ("uu", "GetRequest", "GetResponse"),
        "Stat": ("uu", "StatRequest", "StatResponse"),
        "Set": ("uu", "SetRequest", "SetResponse"),
        "Delete": ("uu", "DeleteRequest", "DeleteResponse"),
        "Children": ("uu", "ChildrenRequest", "ChildrenResponse"),
        "Multi": ("uu", "MultiRequest", "MultiResponse"),
        "Watch": ("us", "WatchRequest", "WatchResponse"),
        "Acquire": ("uu", "AcquireRequest", "AcquireResponse"),
        "Release": ("uu", "ReleaseRequest", "ReleaseResponse"),
        "Holder": ("uu", "HolderRequest", "HolderResponse"),
        "Waiters": ("uu", "WaitersRequest", "WaitersResponse"),
        "CheckFence": ("uu", "CheckFenceRequest", "CheckFenceResponse"),
        "Campaign": ("uu", "CampaignRequest", "CampaignResponse"),
        "Proclaim": ("uu", "ProclaimRequest", "ProclaimResponse"),
        "Resign": ("uu", "ResignRequest", "ResignResponse"),
        "Leader": ("uu", "LeaderRequest", "LeaderResponse"),
        "Observe": ("us", "ObserveRequest", "LeaderResponse")}),
}


class Stub:
    """Calls of one service on one channel: stub.Put(request, timeout=s). Request classes
    are the generated ones (protos().rpc.PutRequest ...); a keyword-only call builds the
    request: stub.Put(key=b"k", value=b"v", timeout=5)."""

    def __init__(self, channel, service):
        pb = protos()
        modname, methods = _SERVICES[service]
        mod = getattr(pb, modname)
        self._calls = {}
        for name, (kind, req, resp) in methods.items():
            path = "/%s/%s" % (service, name)
            ser = getattr(mod, req).SerializeToString
            de = getattr(mod, resp).FromString
            if kind == "uu":
                fn = channel.unary_unary(path, ser, de)
            elif kind == "us":
                fn = channel.unary_stream(path, ser, de)
            else:
                fn = channel.stream_stream(path, ser, de)
            self._calls[name] = (kind, getattr(mod, req), fn)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._calls:
            raise AttributeError(name)
        kind, req, fn = self._calls[name]

        def call(*args, timeout=None, **kw):
            if kind == "ss":
                return fn(args[0], timeout=timeout)
            msg = args[0] if args else req(**kw)
            return fn(msg, timeout=timeout)
        return call


def error_text(e):
    """'CODE: details' of a grpc.RpcError (or repr of anything else)."""
    try:
        return "%s: %s" % (e.code().name, e.details())
    except Exception:  # noqa: BLE001 - any error object
        return repr(e)


# Answers after which the operation certainly did not take effect: the request never reached
# a server, or the server refused it before proposing it.
_DEFINITE = ("failed to connect", "connection refused", "connect failed", "Connection refused",
             "etcdserver: too many requests", "etcdserver: not capable",
             "etcdserver: mvcc: required revision has been compacted",
             "etcdserver: request is too large", "etcdserver: too many operations in txn",
             "etcdserver: duplicate key given in txn request")


def classify(e, idempotent=False):
    """'fail' (certainly not applied) or 'info' (may have been applied) for an error a call
    raised. idempotent: the operation changes nothing (a read), so always 'fail'."""
    if idempotent:
        return "fail"
    if not isinstance(e, grpc.RpcError):
        return "info"
    try:
        code, details = e.code(), e.details() or ""
    except Exception:  # noqa: BLE001
        return "info"
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.ALREADY_EXISTS):
        return "fail"
    if code == grpc.StatusCode.UNAVAILABLE and any(t in details for t in _DEFINITE):
        return "fail"
    return "info"


def moves_on(e):
    """True when a client should talk to another node after this error."""
    return isinstance(e, grpc.RpcError) and e.code() in (grpc.StatusCode.UNAVAILABLE,
                                                         grpc.StatusCode.DEADLINE_EXCEEDED)


class Client:
    """A client of one node at a time (see the module text). endpoints: "host:port" list;
    first: the index to start with. Attributes kv, watch, lease, cluster, maint, lock,
    election, latch are Stubs on the current channel (re-made when the client moves)."""

    def __init__(self, endpoints, first=0, timeout=5.0):
        self.endpoints = list(endpoints)
        self.at = first % len(self.endpoints)
        self.timeout = timeout
        self.pb = protos()
        self.channel = None
        self._connect()

    def _connect(self):
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.endpoints[self.at], options=CHANNEL_OPTIONS)
        self.kv = Stub(self.channel, "etcdserverpb.KV")
        self.watch = Stub(self.channel, "etcdserverpb.Watch")
        self.lease = Stub(self.channel, "etcdserverpb.Lease")
        self.cluster = Stub(self.channel, "etcdserverpb.Cluster")
        self.maint = Stub(self.channel, "etcdserverpb.Maintenance")
        self.lock = Stub(self.channel, "v3lockpb.Lock")
        self.election = Stub(self.channel, "v3electionpb.Election")
        self.latch = Stub(self.channel, "latch.v1.Latch")

    @property
    def endpoint(self):
        return self.endpoints[self.at]

    @property
    def node(self):
        """Index of the node this client talks to now."""
        return self.at

    def move(self):
        """Talk to the next endpoint from now on."""
        self.at = (self.at + 1) % len(self.endpoints)
        self._connect()

    def failed(self, e):
        """Call after a call raised e: moves to another node when e says this one is gone."""
        if moves_on(e) and len(self.endpoints) > 1:
            self.move()

    def close(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    # ---- etcd KV helpers (bytes keys and values) ------------------------------------------

    def get(self, key, serializable=False, timeout=None):
        """(value bytes or None, header revision)."""
        r = self.kv.Range(self.pb.rpc.RangeRequest(key=key, serializable=serializable),
                          timeout=timeout or self.timeout)
        return (r.kvs[0].value if r.kvs else None), r.header.revision

    def get_prefix(self, prefix, serializable=False, timeout=None, page=5000):
        """{key: value} of every key starting with prefix, and the revision read. Pages of
        `page` keys, every page at the first page's revision (one consistent snapshot; the
        first page is linearizable unless serializable, the later ones read that revision),
        so a large prefix never meets a message size limit."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        out = {}
        key, rev = prefix, 0
        while True:
            r = self.kv.Range(self.pb.rpc.RangeRequest(key=key, range_end=end, limit=page,
                                                       revision=rev,
                                                       serializable=serializable),
                              timeout=timeout or self.timeout)
            if rev == 0:
                rev = r.header.revision
            for kv in r.kvs:
                out[kv.key] = kv.value
            if not r.more or not r.kvs:
                return out, rev
            key = r.kvs[-1].key + b"\0"

    def put(self, key, value, timeout=None, lease=0):
        r = self.kv.Put(self.pb.rpc.PutRequest(key=key, value=value, lease=lease),
                        timeout=timeout or self.timeout)
        return r.header.revision

    def cas(self, key, old, new, timeout=None):
        """Txn: if value(key) == old then put new. True when it applied. old None: the key
        must not exist (create revision 0)."""
        rpc = self.pb.rpc
        if old is None:
            cmp = rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=key,
                              create_revision=0)
        else:
            cmp = rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE, key=key,
                              value=old)
        req = rpc.TxnRequest(compare=[cmp], success=[rpc.RequestOp(
            request_put=rpc.PutRequest(key=key, value=new))])
        r = self.kv.Txn(req, timeout=timeout or self.timeout)
        return r.succeeded

    def status(self, timeout=2):
        """(member id, leader id, raft term) of the current node."""
        r = self.maint.Status(self.pb.rpc.StatusRequest(), timeout=timeout)
        return r.header.member_id, r.leader, r.raftTerm

    def members(self, timeout=5):
        r = self.cluster.MemberList(self.pb.rpc.MemberListRequest(), timeout=timeout)
        return list(r.members)
