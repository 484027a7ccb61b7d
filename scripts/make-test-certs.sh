#!/usr/bin/env bash
# make-test-certs.sh DIR — writes throwaway TLS material for the tests into DIR (created if
# missing). Unit tests (tests/unit/api/test_grpc_tls.c) and the Python integration tests use
# these exact file names, so keep them stable:
#
#   ca.pem / ca.key                     the test CA (CN=latch-test-ca)
#   server.pem / server.key             server certificate signed by ca,
#                                       subjectAltName=IP:127.0.0.1,DNS:localhost (serverAuth)
#   client.pem / client.key             client certificate signed by ca,
#                                       CN=latch-test-client (clientAuth)
#   rogue-ca.pem / rogue-ca.key         an unrelated CA nobody trusts
#   rogue-client.pem / rogue-client.key client certificate signed by rogue-ca (mTLS refusals)
#   ca2.pem                             a second CA (its key stays in the scratch dir)
#   server2.pem / server2.key           server certificate signed by ca2, same names as server
#                                       (certificate rotation / reload tests)
#
# Every key is EC P-256 (fast to make) in unencrypted PKCS#8 PEM; every certificate is valid
# for 3650 days from now, so a test running near midnight or a clock a little off is fine.
# Certificates hold only their own leaf (no chain). Needs the openssl CLI (Debian package
# openssl, listed in scripts/deps.sh). Quiet on success; exits non-zero on any failure.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"

DAYS=3650
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# newkey FILE: an EC P-256 private key.
newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca NAME CN: self-signed CA certificate NAME.pem with key NAME.key in $out.
make_ca() {
    local name=$1 cn=$2
    newkey "$out/$name.key"
    cat >"$scratch/$name.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = $cn
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -key "$out/$name.key" -config "$scratch/$name.cnf" -days "$DAYS" \
        -sha256 -set_serial "0x$(openssl rand -hex 8)" -out "$out/$name.pem" 2>/dev/null
}

# make_leaf NAME CA CN EXTENSIONS: NAME.pem/NAME.key signed by CA.pem/CA.key; EXTENSIONS are
# extra lines for the certificate's extension section.
make_leaf() {
    local name=$1 ca=$2 cn=$3 ext=$4
    newkey "$out/$name.key"
    cat >"$scratch/$name.cnf" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
$ext
EOF
    openssl req -new -key "$out/$name.key" -subj "/CN=$cn" -out "$scratch/$name.csr" 2>/dev/null
    openssl x509 -req -in "$scratch/$name.csr" -CA "$out/$ca.pem" -CAkey "$out/$ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days "$DAYS" -sha256 \
        -extfile "$scratch/$name.cnf" -out "$out/$name.pem" 2>/dev/null
}

SERVER_EXT='extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost'
CLIENT_EXT='extendedKeyUsage = clientAuth'

make_ca ca latch-test-ca
make_leaf server ca localhost "$SERVER_EXT"
make_leaf client ca latch-test-client "$CLIENT_EXT"

make_ca rogue-ca latch-rogue-ca
make_leaf rogue-client rogue-ca latch-test-client "$CLIENT_EXT"

# ca2's key is only needed to sign server2, so it does not leave the scratch dir.
make_ca ca2 latch-test-ca2
make_leaf server2 ca2 localhost "$SERVER_EXT"
mv "$out/ca2.key" "$scratch/ca2.key"
