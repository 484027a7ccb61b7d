#!/usr/bin/python3
"""latchd's TLS listeners against the real etcdctl (Debian's etcd-client, API 3).

Usage: test_latchd_tls.py LATCHD

Certificates come from scripts/make-test-certs.sh (into a temp dir); the peer certificate,
which must serve as both server and client certificate (extendedKeyUsage serverAuth and
clientAuth, as etcd's peer certificates), is signed here with the test CA's key.

a. One member with an https client URL: `etcdctl --cacert ca.pem` put/get works, plain http
   to the same port fails; an https metrics URL is refused at start (exit 1, clear error).
b. --client-cert-auth: etcdctl with client.pem works, without a client certificate fails,
   with rogue-client.pem (another CA) fails.
c. Three members with https peer URLs and --peer-client-cert-auth: a write through one member
   is readable through the two others (replication over mutual TLS).
d. SIGHUP: server.pem/key in the member's cert dir replaced by server2.pem/key (signed by
   ca2), SIGHUP, the "client TLS reloaded" log line (bounded polling); then etcdctl trusting
   ca2.pem works and trusting only ca.pem fails. A broken certificate file and SIGHUP logs
   "reload failed" and keeps serving with the previous material.
e. SIGTERM: every latchd exits 0; no sanitizer report in any log.
f. Peer host-name check (as etcd): three members with https peer URLs on 127.0.0.1, the
   third with peer-wrong-san.pem (same CA, serverAuth + clientAuth, but SAN IP:10.9.9.9 and
   DNS:elsewhere.invalid, not 127.0.0.1). The two good members form the quorum and replicate
   (c shows that matching certificates work); they refuse to connect to the third, each
   logging "cannot connect to peer" with the certificate's "IP address mismatch"; the third
   therefore never receives the write (a serializable read there finds nothing).

The admin listener stays plain HTTP (health polling uses it). Ports are found at run time
(bind port 0); every wait polls against a deadline; only processes this script started are
signalled (by PID). Prints "ok - ..." / "FAIL - ..." lines; exits 1 if any check failed.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import latchtest  # noqa: E402
from latchtest import check, fail, failures, ok, wait_until  # noqa: E402

ETCDCTL = "/usr/bin/etcdctl"
OPENSSL = "/usr/bin/openssl"
CERT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                           "scripts", "make-test-certs.sh")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
START_TIMEOUT = 60  # s until /health answers 200 (sanitized debug build, slow CI)
RELOAD_TIMEOUT = 20  # s for the reload log line after SIGHUP


class Result:
    def __init__(self, cmd, rc, out, err):
        self.cmd, self.rc, self.out, self.err = cmd, rc, out, err

    def __str__(self):
        return "$ %s\nexit %s\nstdout: %r\nstderr: %r" % (
            " ".join(self.cmd), self.rc, self.out, self.err[-2000:])


def run(cmd, timeout=30, env=None):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
        return Result(cmd, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return Result(cmd, "timeout", out, err)


def etcdctl(endpoint, *args, tls=()):
    """endpoint is a full URL; tls is etcdctl's TLS flags (--cacert=..., --cert=..., ...).
    Failures are bounded by the dial and command timeouts."""
    cmd = [ETCDCTL, "--endpoints=" + endpoint, "--dial-timeout=3s",
           "--command-timeout=5s"] + list(tls) + list(args)
    return run(cmd, timeout=40, env=dict(os.environ, ETCDCTL_API="3"))


def put_get(endpoint, key, value, tls=()):
    """(ok, detail): put key=value, then get it back."""
    r = etcdctl(endpoint, "put", key, value, tls=tls)
    if not (r.rc == 0 and r.out == "OK\n"):
        return False, r
    r = etcdctl(endpoint, "get", key, "--print-value-only", tls=tls)
    return r.rc == 0 and r.out == value + "\n", r


def get_value(endpoint, key, tls=()):
    r = etcdctl(endpoint, "get", key, "--print-value-only", tls=tls)
    return r.out.rstrip("\n") if r.rc == 0 else None


class Member(latchtest.Member):
    """One latchd: https or http client URL, https or http peer URL, http admin URL (start,
    health, logs and signals as latchtest.Member)."""

    def __init__(self, latchd, root, name, certs, client_tls=False, client_cert_auth=False,
                 peer_tls=False, peer_certs=None, peer_cert="peer"):
        super().__init__(latchd, root, name, "latch-tls-%d" % os.getpid())
        self.certs, self.peer_certs = certs, peer_certs
        self.client_tls, self.client_cert_auth, self.peer_tls = client_tls, client_cert_auth, \
            peer_tls
        self.extra = self.extra_args  # more arguments, set by the scenarios
        self.peer_cert = peer_cert  # peer_certs/<peer_cert>.pem and .key

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.client_tls else "http", self.client_port)

    @property
    def peer_url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.peer_tls else "http", self.peer_port)

    def args(self):
        a = [self.latchd, "--name", self.name, "--data-dir", self.data_dir,
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--listen-metrics-urls", self.admin, "--log-format", "text"]
        if self.client_tls:
            a += ["--cert-file", os.path.join(self.certs, "server.pem"),
                  "--key-file", os.path.join(self.certs, "server.key")]
            if self.client_cert_auth:
                a += ["--trusted-ca-file", os.path.join(self.certs, "ca.pem"),
                      "--client-cert-auth"]
        if self.peer_tls:
            a += ["--peer-cert-file", os.path.join(self.peer_certs, self.peer_cert + ".pem"),
                  "--peer-key-file", os.path.join(self.peer_certs, self.peer_cert + ".key"),
                  "--peer-trusted-ca-file", os.path.join(self.peer_certs, "ca.pem"),
                  "--peer-client-cert-auth"]
        if self.cluster is not None:
            a += ["--initial-cluster", self.cluster, "--initial-cluster-token", self.token]
        return a + self.extra


def stop_all(members, what):
    """e: SIGTERM every member still running, each must exit 0; then the sanitizer check."""
    for m in members:
        if m.proc is None or m.proc.returncode is not None:
            continue
        st = m.terminate()
        check("%s: %s exits 0 on SIGTERM" % (what, m.name), st == 0,
              "status %s\n%s" % (st, m.tail()))
    bad = []
    for m in members:
        for i, log in enumerate(m.logs):
            text = m.log_text(i)
            for mark in SANITIZER_MARKS:
                if mark in text:
                    idx = text.index(mark)
                    bad.append("%s: %r\n%s" % (log, mark, text[max(0, idx - 200):idx + 3000]))
    check("%s: no sanitizer report in any latchd log" % what, not bad, "\n".join(bad))


def make_peer_cert(d, name, san, serial):
    """name.pem/name.key (serverAuth + clientAuth, subjectAltName san) signed by ca in d.
    Returns True, or False after reporting a failure."""
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth, clientAuth\n"
                "subjectAltName = %s\n" % san)
    steps = [
        [OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", os.path.join(d, name + ".key")],
        [OPENSSL, "req", "-new", "-key", os.path.join(d, name + ".key"), "-subj", "/CN=latch-peer",
         "-out", os.path.join(d, name + ".csr")],
        [OPENSSL, "x509", "-req", "-in", os.path.join(d, name + ".csr"),
         "-CA", os.path.join(d, "ca.pem"), "-CAkey", os.path.join(d, "ca.key"),
         "-set_serial", "0x%x" % serial, "-days", "3650",
         "-sha256", "-extfile", ext, "-out", os.path.join(d, name + ".pem")],
    ]
    for cmd in steps:
        r = run(cmd, timeout=60)
        if r.rc != 0:
            fail("%s certificate made with openssl" % name, r)
            return False
    ok("%s certificate made with openssl (serverAuth + clientAuth, %s)" % (name, san))
    return True


def make_certs(root):
    """The script's certificates, plus peer.pem/peer.key (serverAuth + clientAuth, SAN
    IP:127.0.0.1) and peer-wrong-san.pem/.key (SAN naming another host) signed by ca.
    Returns the directory, or None after a failure."""
    d = os.path.join(root, "certs")
    r = run(["/bin/bash", CERT_SCRIPT, d], timeout=120)
    if not check("certificates made by make-test-certs.sh", r.rc == 0, r):
        return None
    serial = int(time.time() * 1000) & 0xffffffffffff
    if not make_peer_cert(d, "peer", "IP:127.0.0.1, DNS:localhost", serial):
        return None
    if not make_peer_cert(d, "peer-wrong-san", "IP:10.9.9.9, DNS:elsewhere.invalid", serial + 1):
        return None
    return d


def member_certs(certs, root, name):
    """A private copy of the cert dir (the reload test overwrites files in it)."""
    d = os.path.join(root, name + "-certs")
    shutil.copytree(certs, d)
    return d


# ---- a + d: https client URL, then SIGHUP reload -------------------------------------------


def https_single(latchd, root, certs):
    m = Member(latchd, root, "a1", member_certs(certs, root, "a1"), client_tls=True)
    ca = "--cacert=" + os.path.join(m.certs, "ca.pem")
    ca2 = "--cacert=" + os.path.join(m.certs, "ca2.pem")
    try:
        m.start()
        if not check("a: latchd with an https client URL healthy", m.wait_healthy(), m.tail()):
            return
        good, r = put_get(m.endpoint, "tls/a", "va", tls=[ca])
        check("a: etcdctl --cacert ca.pem put/get over https", good, r)
        r = etcdctl("http://127.0.0.1:%d" % m.client_port, "get", "tls/a")
        check("a: plain http (h2c) to the https port fails", r.rc != 0 and "va" not in r.out, r)
        r = etcdctl(m.endpoint, "get", "tls/a", tls=[ca2])
        check("a: etcdctl trusting only ca2.pem is refused", r.rc != 0, r)

        # d: rotate to server2 (ca2), SIGHUP, poll for the log line.
        for src, dst in (("server2.pem", "server.pem"), ("server2.key", "server.key")):
            tmp = os.path.join(m.certs, dst + ".new")
            shutil.copyfile(os.path.join(m.certs, src), tmp)
            os.replace(tmp, os.path.join(m.certs, dst))
        m.proc.send_signal(signal.SIGHUP)
        reloaded = wait_until(lambda: "client TLS reloaded" in m.log_text(), RELOAD_TIMEOUT)
        if not check("d: SIGHUP logs \"client TLS reloaded\"", reloaded, m.tail()):
            return
        check("d: latchd still running after SIGHUP", m.alive(), m.tail())
        good, r = put_get(m.endpoint, "tls/d", "vd", tls=[ca2])
        check("d: etcdctl --cacert ca2.pem put/get after the reload", good, r)
        r = etcdctl(m.endpoint, "get", "tls/d", tls=[ca])
        check("d: etcdctl trusting only ca.pem is refused after the reload", r.rc != 0, r)

        # A broken certificate: the reload fails and the old material stays in use.
        with open(os.path.join(m.certs, "server.pem"), "w") as f:
            f.write("not a certificate\n")
        m.proc.send_signal(signal.SIGHUP)
        failed = wait_until(lambda: "client TLS reload failed" in m.log_text(), RELOAD_TIMEOUT)
        check("d: SIGHUP with a broken certificate logs \"client TLS reload failed\"", failed,
              m.tail())
        check("d: ... and etcdctl --cacert ca2.pem still works",
              get_value(m.endpoint, "tls/d", tls=[ca2]) == "vd", m.tail())
    finally:
        stop_all([m], "a/d")
        m.kill()


def https_metrics_refused(latchd, root, certs):
    m = Member(latchd, root, "a2", certs, client_tls=True)
    m.extra = ["--listen-metrics-urls", "https://127.0.0.1:%d" % m.metrics_port]
    try:
        m.start()
        try:
            st = m.proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            st = None
        check("a: an https metrics URL is refused at start (exit 1)", st == 1,
              "status %s\n%s" % (st, m.tail()))
        check("a: ... with an error naming the admin listener",
              "admin listener serves plain HTTP" in m.log_text(), m.tail())
    finally:
        m.kill()
        stop_all([m], "a2")


# ---- b: --client-cert-auth -------------------------------------------------------------------


def client_cert_auth(latchd, root, certs):
    m = Member(latchd, root, "b1", certs, client_tls=True, client_cert_auth=True)
    ca = "--cacert=" + os.path.join(certs, "ca.pem")
    mine = [ca, "--cert=" + os.path.join(certs, "client.pem"),
            "--key=" + os.path.join(certs, "client.key")]
    rogue = [ca, "--cert=" + os.path.join(certs, "rogue-client.pem"),
             "--key=" + os.path.join(certs, "rogue-client.key")]
    try:
        m.start()
        if not check("b: latchd with --client-cert-auth healthy", m.wait_healthy(), m.tail()):
            return
        good, r = put_get(m.endpoint, "tls/b", "vb", tls=mine)
        check("b: etcdctl with client.pem put/get", good, r)
        r = etcdctl(m.endpoint, "get", "tls/b", tls=[ca])
        check("b: etcdctl without a client certificate is refused",
              r.rc != 0 and "vb" not in r.out, r)
        r = etcdctl(m.endpoint, "get", "tls/b", tls=rogue)
        check("b: etcdctl with rogue-client.pem (another CA) is refused",
              r.rc != 0 and "vb" not in r.out, r)
        check("b: latchd still running", m.alive(), m.tail())
    finally:
        stop_all([m], "b")
        m.kill()


def tls_probe(port, certs, cert=None):
    """Connects to 127.0.0.1:port with TLS (ALPN h2, trusting ca.pem, client certificate
    cert.pem/cert.key if given) and reads the server's first bytes. Returns (True, "") when
    the server sent data (its HTTP/2 SETTINGS) or (False, why) on a handshake or read error."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    if cert is not None:
        ctx.load_cert_chain(os.path.join(certs, cert + ".pem"), os.path.join(certs, cert + ".key"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
                t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                data = t.recv(64)
                return (len(data) > 0, "connection closed without data")
    except (OSError, ssl.SSLError) as e:
        return False, repr(e)


# ---- c: three members, peers over mutual TLS -------------------------------------------------


def three_peers(latchd, root, certs):
    members = [Member(latchd, root, "c%d" % i, certs, client_tls=True, peer_tls=True,
                      peer_certs=certs) for i in (1, 2, 3)]
    cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
    for m in members:
        m.cluster = cluster
    ca = ["--cacert=" + os.path.join(certs, "ca.pem")]
    try:
        for m in members:
            m.start()
        wait_until(lambda: any(not m.alive() for m in members)
                   or all(m.healthy() for m in members), START_TIMEOUT)
        if not check("c: three members with https peer URLs and peer mTLS healthy (a leader)",
                     all(m.alive() and m.healthy() for m in members),
                     "\n".join(m.tail() for m in members)):
            return
        good, why = tls_probe(members[0].peer_port, certs, "peer")
        check("c: the peer port speaks TLS and accepts the peer certificate", good, why)
        good, why = tls_probe(members[0].peer_port, certs)
        check("c: the peer port refuses a TLS client without a certificate", not good, why)
        good, why = tls_probe(members[0].peer_port, certs, "rogue-client")
        check("c: the peer port refuses rogue-client.pem (another CA)", not good, why)
        for i, w in enumerate(members):
            key, value = "tls/c/%d" % i, "from-%s" % w.name
            r = etcdctl(w.endpoint, "put", key, value, tls=ca)
            if not check("c: put through %s" % w.name, r.rc == 0 and r.out == "OK\n", r):
                continue
            for o in members:
                if o is w:
                    continue
                # Linearizable reads: each answers once its member applied the write.
                seen = wait_until(lambda: get_value(o.endpoint, key, tls=ca) == value, 30, 0.5)
                check("c: written through %s, read through %s" % (w.name, o.name), seen,
                      "\n".join(m.tail() for m in members))
    finally:
        stop_all(members, "c")
        for m in members:
            m.kill()


# ---- f: a peer whose certificate does not name the host it is dialed at ---------------------


def wrong_san_peer(latchd, root, certs):
    members = [Member(latchd, root, "f%d" % i, certs, client_tls=True, peer_tls=True,
                      peer_certs=certs, peer_cert="peer" if i < 3 else "peer-wrong-san")
               for i in (1, 2, 3)]
    good_ones, bad = members[:2], members[2]
    cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
    for m in members:
        m.cluster = cluster
    ca = ["--cacert=" + os.path.join(certs, "ca.pem")]
    try:
        for m in members:
            m.start()
        wait_until(lambda: any(not m.alive() for m in members)
                   or all(m.healthy() for m in good_ones), START_TIMEOUT)
        if not check("f: the two members with matching peer certificates are healthy",
                     all(m.alive() for m in members) and all(m.healthy() for m in good_ones),
                     "\n".join(m.tail() for m in members)):
            return
        mark = re.compile(r"cannot connect to peer \d+: .*mismatch")
        refused = wait_until(lambda: all(mark.search(m.log_text()) for m in good_ones), 30, 0.5)
        check("f: both good members refuse %s's certificate (IP SAN 10.9.9.9) and log why"
              % bad.name, refused,
              "\n".join(m.tail() for m in members))
        lines = [ln for m in good_ones for ln in m.log_text().splitlines() if mark.search(ln)]
        check("f: the log line names the mismatch (\"IP address mismatch\")",
              any("IP address mismatch" in ln for ln in lines), "\n".join(lines[:4]))
        r = etcdctl(good_ones[0].endpoint, "put", "tls/f", "quorum", tls=ca)
        check("f: a write through %s succeeds (the two good members are a quorum)"
              % good_ones[0].name, r.rc == 0 and r.out == "OK\n", r)
        seen = wait_until(lambda: get_value(good_ones[1].endpoint, "tls/f", tls=ca) == "quorum",
                          30, 0.5)
        check("f: ... and is replicated to %s" % good_ones[1].name, seen,
              "\n".join(m.tail() for m in members))
        r = etcdctl(bad.endpoint, "get", "tls/f", "--consistency=s", tls=ca)
        check("f: %s, never dialed successfully, has not received it" % bad.name,
              r.rc == 0 and "quorum" not in r.out, r)
    finally:
        stop_all(members, "f")
        for m in members:
            m.kill()


def main():
    if len(sys.argv) != 2:
        print("usage: test_latchd_tls.py LATCHD", file=sys.stderr)
        return 2
    latchd = os.path.abspath(sys.argv[1])
    for exe in (latchd, ETCDCTL, OPENSSL):
        if not os.access(exe, os.X_OK):
            print("FAIL - %s is not executable" % exe)
            return 1
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="latchd-tls-")
    try:
        certs = make_certs(root)
        if certs is not None:
            https_single(latchd, root, certs)
            https_metrics_refused(latchd, root, certs)
            client_cert_auth(latchd, root, certs)
            three_peers(latchd, root, certs)
            wrong_san_peer(latchd, root, certs)
    finally:
        if failures:
            print("# logs and data kept in %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("# %d failure(s); %.1f s" % (len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
