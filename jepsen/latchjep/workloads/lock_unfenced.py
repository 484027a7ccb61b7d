"""lock_unfenced — etcd's lock recipe through the etcd API, without fencing: the negative
control of the lock workload (issue 7, item 3), for both targets.

Every client thread: an etcd lease (TTL 3 s, renewed by a Keeper pinned to the thread's
node) per process; `acquire` = v3lock Lock(name, lease) (the server runs etcd's Mutex
recipe: a key under the lock's prefix, then wait for every earlier key to go) -> {"token":
t} where t is the Lock response's header revision (strictly increasing across holders that
do not overlap); WRITES `write`s {"token": t, "seq": n} to the external resource
(jepsen/resource.py in unfenced mode: it accepts everything and logs whether a write was
stale); `release` = v3lock Unlock(key).

The same client pauses as the lock workload (always at least one: thread 0's first hold) (sleep longer than the lease TTL while holding,
renewals stopped) make the lease expire while its holder still believes it holds the lock:
the lock checker must then see overlapping holders — Jepsen's 2020 finding for etcd — on
either target. That is the expected result: this workload shows why locks need fencing.
"""
import grpc

from ..runner import FailOp
from . import _common
from . import lock as lockmod

NAME = "lock_unfenced"
TARGETS = ("latch", "etcd")
CHECKERS = ("lock", "stats")
CHECKER_OPTS = {"lock": {"fenced": False}}  # setup() adds the resource log's path
# The negative control: INVALID (mutual exclusion) under every nemesis mix, "none" included,
# because thread 0's first hold always pauses past its lease (jepsen/suite.py reads this).
EXPECTED = "invalid"
IDEMPOTENT = set()
LOCK_NAME = b"jepsen-lock-unfenced"
FENCED = False


class EtcdBackend:
    """etcd API: Lease + v3lock Lock/Unlock. The key of each token is kept for Unlock."""
    kind = "etcd"
    name = LOCK_NAME.decode()

    def __init__(self):
        self.keys = {}

    def open_session(self, client):
        r = client.lease.LeaseGrant(TTL=lockmod.TTL, ID=0, timeout=client.timeout)
        if r.error:
            raise FailOp("lease grant: " + r.error)
        return r.ID, _common.Keeper(client.endpoint, r.ID, lockmod.TTL, "etcd")

    def close_session(self, client, ident):
        try:
            client.lease.LeaseRevoke(ID=ident, timeout=client.timeout)
        except grpc.RpcError:
            pass

    def acquire(self, client, ident):
        r = client.lock.Lock(name=LOCK_NAME, lease=ident, timeout=client.timeout)
        token = r.header.revision
        self.keys[token] = r.key
        return {"token": token, "key": r.key.decode("utf-8", "replace")}, token

    def release(self, client, token, ident):
        key = self.keys.pop(token, None)
        if key is None:
            raise FailOp("no key for token %d" % token)
        client.lock.Unlock(key=key, timeout=client.timeout)


def setup(ctx):
    CHECKER_OPTS["lock"] = lockmod.setup_common(ctx, "unfenced")


def teardown(ctx):
    lockmod.teardown(ctx)


def worker(ctx, thread, client):
    lockmod.run_worker(ctx, thread, client, EtcdBackend(), FENCED)
