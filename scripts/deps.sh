#!/usr/bin/env bash
# Installs the Debian packages that building and testing latch need, and nothing else.
# Silent and fast when everything is present. Append new dependencies to PACKAGES only.
set -euo pipefail

PACKAGES=(
    build-essential
    cmake
    pkg-config
    clang-format
    libcmocka-dev
    libprotobuf-c-dev
    protobuf-c-compiler
    libnghttp2-dev
    liblmdb-dev
    libssl-dev
    libuv1-dev
    clang
    libclang-rt-14-dev
    protobuf-compiler
    python3-protobuf
    golang-etcd-server-dev
    python3-grpcio
    curl
    openssl
    python3-hpack
    etcd-client
    nghttp2-client
    golang-go
    python3-etcd3
    iproute2
    nftables
    etcd-server # the differential runs (ctest compat_diff) compare latch with a real etcd 3.4
    chromium # ctest jepsen_report loads the harness's HTML report in headless Chromium
    faketime # libfaketime: the Jepsen harness's clock faults (jepsen/, ctest jepsen_clock)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: install them as root with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# etcd-server's package enables a system etcd on ports 2379/2380; latch's tests and
# benchmarks start their own etcd members on free ports, so the service is switched off
# again (only where systemd runs it, and only when this run installed the package).
if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi
