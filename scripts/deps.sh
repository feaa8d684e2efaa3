#!/usr/bin/env bash
# Installs what building and testing tonic-etcd needs, if it is missing:
#   protoc   (Debian package protobuf-compiler; etcd-client compiles .proto files)
#   etcd     (etcd-server; the tests and the demo start real etcd processes)
#   etcdctl  (etcd-client; the tests and the demo inspect the registry with it)
# On Debian and Ubuntu it uses apt-get (as root, or through sudo); elsewhere it
# says what to install and fails. $PROTOC, $ETCD_BIN and $ETCDCTL_BIN, when set,
# name binaries to use instead of those on PATH.
set -euo pipefail

have() {
    # have VAR_NAME COMMAND: the binary named by $VAR_NAME, else COMMAND on PATH.
    local override="${!1:-}"
    if [[ -n "$override" ]]; then
        [[ -x "$override" ]] || command -v "$override" >/dev/null 2>&1
    else
        command -v "$2" >/dev/null 2>&1
    fi
}

missing=()
have PROTOC protoc || missing+=(protobuf-compiler)
have ETCD_BIN etcd || missing+=(etcd-server)
have ETCDCTL_BIN etcdctl || missing+=(etcd-client)

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: protoc, etcd and etcdctl are installed"
    exit 0
fi

echo "deps: missing Debian packages: ${missing[*]}"
if command -v apt-get >/dev/null 2>&1; then
    if [[ "$(id -u)" -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "deps: not root and no sudo; as root run:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    ${sudo[@]+"${sudo[@]}"} apt-get update
    ${sudo[@]+"${sudo[@]}"} apt-get install -y --no-install-recommends "${missing[@]}"
else
    cat >&2 <<MSG
deps: no apt-get here; install these yourself, then run make again:
  protoc   (protobuf compiler; e.g. brew install protobuf, dnf install protobuf-compiler)
  etcd     (etcd server 3.4 or later; https://etcd.io/docs/latest/install/)
  etcdctl  (etcd command-line client, shipped with etcd)
or point \$PROTOC, \$ETCD_BIN and \$ETCDCTL_BIN at them.
missing here: ${missing[*]}
MSG
    exit 1
fi

# Debian's etcd-server may start a system etcd on 127.0.0.1:2379; the tests do not
# need it (they start their own on free ports) and the demo works with it.
have PROTOC protoc && have ETCD_BIN etcd && have ETCDCTL_BIN etcdctl || {
    echo "deps: still missing something after apt-get install" >&2
    exit 1
}
echo "deps: installed ${missing[*]}"
