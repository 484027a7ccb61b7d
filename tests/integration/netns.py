"""netns.py — network namespaces for fault tests: one namespace per node, joined by a bridge,
with partitions made by nftables rules inside each node's namespace.

    reason = netns.unavailable()       # None, or why namespaces cannot be used here
    with netns.Net(3) as net:          # namespaces <prefix>-n0 .. -n2, bridge in <prefix>-hub
        net.ip(0)                      # "10.X.Y.11": node 0's address
        p = net.popen(0, ["latchd", "--listen-client-urls", "http://%s:2479" % net.ip(0)])
        net.run(1, ["ip", "addr"])     # subprocess.run inside node 1's namespace
        net.isolate(2)                 # node 2 talks to no other node (both directions)
        net.split([0], [1, 2])         # groups: no traffic between groups
        net.block(0, 1)                # one way: packets from node 0 to node 1 are dropped
        net.cut({(0, 1), (1, 0)})      # any shape: exactly these (from, to) pairs dropped
        net.heal()                     # every rule removed
    # close() (also at exit) deletes every namespace and link this Net made, nothing else

Layout. Each node has its own namespace with loopback up and one veth "eth0" holding
10.X.Y.(11 + i)/24. The other ends of the veths sit in a hub namespace on a bridge "br0", so
no bridge or firewall rule of the machine is involved (Docker's FORWARD DROP and
br_netfilter cannot drop the bridged traffic). With host_link (the default) one more veth
joins the bridge to the root namespace, where it holds 10.X.Y.1/24: the test process itself
(etcdctl, Python gRPC clients, urllib) reaches every node directly, and nodes reach it. The
subnet is picked at random among 10.200-254.*.0/24 so that it overlaps no address or route
of the root namespace.

Partitions are nftables rules in an "inet latchnet" table in each node's namespace: an input
and an output chain, flushed and refilled in one nft transaction per node. They only ever
match node addresses, so the host address (clients) keeps reaching an isolated node unless
a call asks otherwise (clients=True). Dropping (not rejecting) is what a real partition
does: TCP connections stay open and retransmit, and recover after heal().

Cleanup: every namespace and link is recorded when made; close() deletes exactly those
(processes still running inside keep a namespace alive without its name: stop them
first). close() runs at interpreter exit too (atexit), and SIGTERM is turned into an exit
while a Net is open, so a ctest timeout that sends SIGTERM still cleans up. Names carry the
creating process's PID: remove_stale() deletes namespaces a killed run of this module left
behind (their PID no longer runs), and only those.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nftables (scripts/deps.sh)."""
import atexit
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
TABLE = "latchnet"
NAME_RE = re.compile(r"^lt(\d+)x[0-9a-f]{3}-(hub|n\d+|probe)$")
_open_nets = []
_prev_sigterm = None


def _run(argv, check=True, input=None, timeout=30):
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                (p.stderr or p.stdout).strip()))
    return p


def _new_prefix():
    return "lt%dx%03x" % (os.getpid(), random.randrange(0x1000))


def unavailable():
    """None when namespaces, veths, a bridge and nftables work here; else a sentence why not."""
    if os.geteuid() != 0:
        return "not running as root (uid %d): network namespaces need root" % os.geteuid()
    for tool, name in ((IP, "ip (iproute2)"), (NFT, "nft (nftables)")):
        if not os.access(tool, os.X_OK):
            return "%s is not installed (scripts/deps.sh installs it)" % name
    probe = _new_prefix() + "-probe"
    try:
        p = _run([IP, "netns", "add", probe], check=False)
        if p.returncode != 0:
            return "ip netns add fails: %s" % p.stderr.strip()
        try:
            steps = ([IP, "-n", probe, "link", "add", "br0", "type", "bridge"],
                     [IP, "-n", probe, "link", "add", "va", "type", "veth", "peer", "name", "vb"],
                     [IP, "netns", "exec", probe, NFT, "add", "table", "inet", TABLE])
            for argv in steps:
                p = _run(argv, check=False)
                if p.returncode != 0:
                    return "%s fails: %s" % (" ".join(argv[3:]), p.stderr.strip())
        finally:
            _run([IP, "netns", "del", probe], check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return "probing network namespaces failed: %s" % e
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale():
    """Deletes namespaces named by this module whose creating process is gone (a run killed
    before it could clean up); returns their names. Touches no other namespace."""
    p = _run([IP, "netns", "list"], check=False)
    gone = []
    for line in p.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NAME_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            if _run([IP, "netns", "del", name], check=False).returncode == 0:
                gone.append(name)
    return gone


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # runs finally blocks and atexit: close() the nets


def _pick_subnet():
    used = []
    for argv in ([IP, "-4", "-o", "addr", "show"], [IP, "-4", "route", "show", "table", "all"]):
        out = _run(argv, check=False).stdout
        for m in re.finditer(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", out):
            try:
                used.append(ipaddress.ip_network(m.group(1), strict=False))
            except ValueError:
                pass
    for _ in range(200):
        net = ipaddress.ip_network("10.%d.%d.0/24" % (random.randrange(200, 255),
                                                       random.randrange(256)))
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet found")


class Net:
    """n node namespaces on one bridge. Raises RuntimeError when a step fails (after undoing
    what it made); check unavailable() first."""

    def __init__(self, n, host_link=True, prefix=None):
        if n < 1 or n > 200:
            raise ValueError("1..200 nodes")
        self.n = n
        self.prefix = prefix or _new_prefix()
        self.subnet = _pick_subnet()
        base = self.subnet.network_address
        self.host_ip = str(base + 1) if host_link else None
        self.ips = [str(base + 11 + i) for i in range(n)]
        self.hub = self.prefix + "-hub"
        self.names = ["%s-n%d" % (self.prefix, i) for i in range(n)]
        self.host_if = self.prefix + "h" if host_link else None
        self._made_ns = []  # namespaces this Net created, in order
        self._made_links = []  # links made in the root namespace
        self._rules = {}  # node -> (input rules, output rules) now in force
        self.closed = False
        _register(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ---- building ---------------------------------------------------------------------

    def _add_ns(self, name):
        _run([IP, "netns", "add", name])
        self._made_ns.append(name)
        _run([IP, "-n", name, "link", "set", "lo", "up"])

    def _build(self):
        self._add_ns(self.hub)
        _run([IP, "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        _run([IP, "-n", self.hub, "link", "set", "br0", "up"])
        for i, ns in enumerate(self.names):
            self._add_ns(ns)
            port = "n%d" % i
            _run([IP, "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                  "netns", self.hub])
            _run([IP, "-n", self.hub, "link", "set", port, "master", "br0", "up"])
            _run([IP, "-n", ns, "addr", "add", "%s/24" % self.ips[i], "dev", "eth0"])
            _run([IP, "-n", ns, "link", "set", "eth0", "up"])
            self._nft(i, "add table inet %s\n"
                         "add chain inet %s input { type filter hook input priority 0; "
                         "policy accept; }\n"
                         "add chain inet %s output { type filter hook output priority 0; "
                         "policy accept; }\n" % (TABLE, TABLE, TABLE))
            self._rules[i] = ([], [])
        if self.host_if:
            _run([IP, "link", "add", self.host_if, "type", "veth", "peer", "name", "host",
                  "netns", self.hub])
            self._made_links.append(self.host_if)
            _run([IP, "-n", self.hub, "link", "set", "host", "master", "br0", "up"])
            _run([IP, "addr", "add", "%s/24" % self.host_ip, "dev", self.host_if])
            _run([IP, "link", "set", self.host_if, "up"])

    # ---- running commands ----------------------------------------------------------------

    def ns(self, i):
        return self.names[i]

    def ip(self, i):
        return self.ips[i]

    def wrap(self, i, argv):
        """argv run inside node i's namespace (`ip netns exec` execs it: same PID)."""
        return [IP, "netns", "exec", self.names[i]] + list(argv)

    def run(self, i, argv, **kw):
        """subprocess.run inside node i's namespace."""
        return subprocess.run(self.wrap(i, argv), **kw)

    def popen(self, i, argv, **kw):
        """subprocess.Popen inside node i's namespace; the Popen's pid is the command's own
        (ip netns exec execs it), so signals sent by PID reach it."""
        return subprocess.Popen(self.wrap(i, argv), **kw)

    # ---- partitions ------------------------------------------------------------------

    def _nft(self, i, script):
        _run([IP, "netns", "exec", self.names[i], NFT, "-f", "-"], input=script)

    def _apply(self, i):
        ins, outs = self._rules[i]
        script = "flush chain inet %s input\nflush chain inet %s output\n" % (TABLE, TABLE)
        if ins:
            script += "add rule inet %s input ip saddr { %s } drop\n" % (TABLE, ", ".join(ins))
        if outs:
            script += "add rule inet %s output ip daddr { %s } drop\n" % (TABLE, ", ".join(outs))
        self._nft(i, script)

    def _set(self, drops, clients=False):
        """drops: set of (a, b) node pairs, packets from a to b dropped. Replaces every rule."""
        ins = {i: set() for i in range(self.n)}
        outs = {i: set() for i in range(self.n)}
        for a, b in drops:
            outs[a].add(self.ips[b])  # a's packets to b leave nowhere ...
            ins[b].add(self.ips[a])  # ... and b ignores a's (a one-way cut is both ends)
        if clients and self.host_ip:
            for i in clients:
                ins[i].add(self.host_ip)
                outs[i].add(self.host_ip)
        for i in range(self.n):
            self._rules[i] = (sorted(ins[i]), sorted(outs[i]))
            self._apply(i)

    def block(self, a, b):
        """One way: from now on packets from node a to node b are dropped (added to what is
        in force; a TCP connection between them stalls both ways, as a real one-way loss
        makes it)."""
        drops = self.drops()
        drops.add((a, b))
        self._set(drops)

    def split(self, *groups, clients=()):
        """Symmetric partition: no packet between nodes of different groups; a node in no
        group is a group of its own. clients: nodes the host (test process) cannot reach
        either. Replaces what was in force."""
        group_of = {}
        for g, members in enumerate(groups):
            for i in members:
                if i in group_of or not 0 <= i < self.n:
                    raise ValueError("node %r in two groups or out of range" % i)
                group_of[i] = g
        for i in range(self.n):
            group_of.setdefault(i, "alone-%d" % i)
        drops = {(a, b) for a in range(self.n) for b in range(self.n)
                 if a != b and group_of[a] != group_of[b]}
        self._set(drops, clients=set(clients))

    def isolate(self, i, clients=False):
        """Node i talks to no other node (and, with clients, not to the host either)."""
        self.split([i], [j for j in range(self.n) if j != i], clients=(i,) if clients else ())

    def cut(self, drops, clients=()):
        """Any shape: drops is a set of (a, b) node pairs whose packets from a to b are
        dropped; everything else flows. Replaces what was in force."""
        for a, b in drops:
            if not (0 <= a < self.n and 0 <= b < self.n) or a == b:
                raise ValueError("bad pair %r" % ((a, b),))
        self._set(set(drops), clients=set(clients))

    def heal(self):
        """Removes every partition rule."""
        self._set(set())

    def drops(self):
        """The (a, b) pairs whose packets from a to b are dropped now."""
        out = set()
        for a in range(self.n):
            for ipb in self._rules[a][1]:
                if ipb in self.ips:
                    out.add((a, self.ips.index(ipb)))
        return out

    def rules(self, i):
        """nft's own listing of node i's table (for logs)."""
        return _run([IP, "netns", "exec", self.names[i], NFT, "list", "table", "inet", TABLE],
                    check=False).stdout

    # ---- teardown --------------------------------------------------------------------

    def close(self):
        """Deletes every namespace and root-namespace link this Net made (idempotent). Stop
        the processes running inside first."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for link in reversed(self._made_links):
            p = _run([IP, "link", "del", link], check=False)
            if p.returncode != 0 and "Cannot find device" not in p.stderr:
                errors.append(p.stderr.strip())
        for name in reversed(self._made_ns):
            p = _run([IP, "netns", "del", name], check=False)
            if p.returncode != 0:
                errors.append(p.stderr.strip())
        self._made_links, self._made_ns = [], []
        _unregister(self)
        if errors:
            raise RuntimeError("netns cleanup: " + "; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _register(net):
    global _prev_sigterm
    if not _open_nets and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        try:
            _prev_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread
            _prev_sigterm = None
    _open_nets.append(net)


def _unregister(net):
    global _prev_sigterm
    if net in _open_nets:
        _open_nets.remove(net)
    if not _open_nets and _prev_sigterm is not None:
        try:
            signal.signal(signal.SIGTERM, _prev_sigterm)
        except ValueError:
            pass
        _prev_sigterm = None


@atexit.register
def _close_all():
    for net in list(_open_nets):
        try:
            net.close()
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass


# ---- self-test: python3 netns.py ----------------------------------------------------------

_SERVER = """import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(b"hi")
    c.close()
"""
_CLIENT = """import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 7000), timeout=1)
    sys.exit(0 if s.recv(2) == b"hi" else 1)
except OSError:
    sys.exit(1)
"""


def _selftest():
    """Checks every partition shape with TCP connections between three namespaces and from
    the host, then that close() leaves nothing behind. Exit 0 (also when unavailable, with
    the reason printed), 1 on a failure."""
    import concurrent.futures
    import sys
    import time
    reason = unavailable()
    if reason is not None:
        print("ok - netns self-test # SKIP %s" % reason)
        return 0
    bad = []

    def expect(name, got, want):
        print("%s - %s" % ("ok" if got == want else "FAIL", name), flush=True)
        if got != want:
            bad.append(name)
            print("    got  %s\n    want %s" % (got, want), flush=True)

    py = sys.executable or "/usr/bin/python3"
    net = Net(3)
    servers = []
    try:
        servers = [net.popen(i, [py, "-c", _SERVER, net.ip(i)]) for i in range(3)]

        def conn(i, j):
            argv = [py, "-c", _CLIENT, net.ip(j)]
            if i == "host":
                return subprocess.run(argv, timeout=10).returncode == 0
            return net.run(i, argv, timeout=10).returncode == 0

        pairs = [(i, j) for i in (0, 1, 2, "host") for j in range(3)]

        def matrix():
            with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
                reached = list(pool.map(lambda ij: conn(*ij), pairs))
            return {ij for ij, r in zip(pairs, reached) if r}

        every = set(pairs)
        for _ in range(50):  # the servers start listening
            if matrix() == every:
                break
            time.sleep(0.1)
        expect("every node reaches every node, the host reaches all", matrix(), every)
        net.isolate(2)
        expect("isolate(2): 2 reaches only itself; the host still reaches it", matrix(),
               every - {(0, 2), (1, 2), (2, 0), (2, 1)})
        net.isolate(2, clients=True)
        expect("isolate(2, clients=True): the host no longer reaches 2 either", matrix(),
               every - {(0, 2), (1, 2), (2, 0), (2, 1), ("host", 2)})
        net.split([0], [1, 2])
        expect("split([0], [1, 2])", matrix(), every - {(0, 1), (0, 2), (1, 0), (2, 0)})
        net.heal()
        net.block(0, 1)
        expect("block(0, 1): the drops are one way", net.drops(), {(0, 1)})
        expect("block(0, 1): no TCP between 0 and 1 (handshakes need both ways)", matrix(),
               every - {(0, 1), (1, 0)})
        net.heal()
        net.cut({(0, 2), (2, 0), (1, 2)})
        expect("cut({(0,2), (2,0), (1,2)}): exactly those pairs, 0-1 and the host untouched",
               matrix(), every - {(0, 2), (2, 0), (1, 2), (2, 1)})
        net.heal()
        expect("heal(): everything again", matrix(), every)
    finally:
        for p in servers:
            p.kill()
            p.wait()
        names, host_if = [net.hub] + net.names, net.host_if
        net.close()
    left = [n for n in _run([IP, "netns", "list"], check=False).stdout.split() if n in names]
    expect("close() removed every namespace it made", left, [])
    expect("close() removed the host link",
           _run([IP, "link", "show", host_if], check=False).returncode != 0, True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(_selftest())
