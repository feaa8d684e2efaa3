#!/usr/bin/env bash
# The helloworld demo: three servers register in etcd, a client balances 30
# requests over them, then the servers stop gracefully and the client, finding no
# instance, fails fast.
#
# Uses the etcd at $ETCD_ENDPOINTS if set, else starts a throwaway one on free
# ports. Run through `make demo`, which installs etcd and builds the examples.
# $EXAMPLES_DIR overrides where the example binaries are (default:
# ${CARGO_TARGET_DIR:-target}/debug/examples); $DEMO_SERVICE the service name.
set -euo pipefail
cd "$(dirname "$0")/.."

examples_dir="${EXAMPLES_DIR:-${CARGO_TARGET_DIR:-target}/debug/examples}"
server_bin="$examples_dir/helloworld-server"
client_bin="$examples_dir/helloworld-client"
service="${DEMO_SERVICE:-helloworld}"
etcd_bin="${ETCD_BIN:-etcd}"
etcdctl_bin="${ETCDCTL_BIN:-etcdctl}"
servers=3

for bin in "$server_bin" "$client_bin"; do
    if [[ ! -x "$bin" ]]; then
        echo "demo: $bin not found; run \`make demo\` (or \`cargo build --examples\`)" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/tonic-etcd-demo.XXXXXX")"
pids=()

cleanup() {
    local status=$?
    for pid in "${pids[@]+"${pids[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]+"${pids[@]}"}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section() {
    printf '\n=== %s ===\n' "$*"
}

# A port nobody listens on, outside Linux's ephemeral range (32768-60999).
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "demo: no free port found" >&2
    return 1
}

ctl() {
    ETCDCTL_API=3 "$etcdctl_bin" --endpoints="$ETCD_ENDPOINTS" "$@"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "demo: timed out after ${seconds}s waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

registered_keys() {
    ctl get --prefix "/services/$service/" --keys-only | sed '/^$/d'
}

count_is() {
    [[ "$(registered_keys | wc -l)" -eq "$1" ]]
}

section "etcd"
if [[ -n "${ETCD_ENDPOINTS:-}" ]]; then
    echo "using etcd at $ETCD_ENDPOINTS"
else
    client_port="$(free_port)"
    peer_port="$(free_port)"
    while [[ "$peer_port" == "$client_port" ]]; do peer_port="$(free_port)"; done
    export ETCD_ENDPOINTS="http://127.0.0.1:$client_port"
    # etcd reads ETCD_* variables as flags: keep ours away from it.
    env -u ETCD_BIN -u ETCD_ENDPOINTS "$etcd_bin" \
        --name demo \
        --data-dir "$work/etcd" \
        --listen-client-urls "$ETCD_ENDPOINTS" \
        --advertise-client-urls "$ETCD_ENDPOINTS" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "demo=http://127.0.0.1:$peer_port" \
        --heartbeat-interval 50 --election-timeout 500 \
        --logger zap --log-outputs stderr \
        >"$work/etcd.log" 2>&1 &
    pids+=($!)
    if ! wait_for 15 "etcd to be healthy" ctl endpoint health >/dev/null 2>&1; then
        tail -n 20 "$work/etcd.log" >&2
        exit 1
    fi
    echo "started a throwaway etcd at $ETCD_ENDPOINTS (data in $work/etcd)"
fi

section "start $servers helloworld servers"
server_pids=()
addrs=()
for i in $(seq 1 "$servers"); do
    "$server_bin" --listen 127.0.0.1:0 --etcd "$ETCD_ENDPOINTS" --service "$service" \
        --ttl 3 --drain-ms 500 >"$work/server$i.log" 2>&1 &
    pids+=($!)
    server_pids+=($!)
done
# registered LOG PID: whether the server logged its registration; ends the demo
# if the server died.
registered() {
    if grep -q "registered" "$1"; then
        return 0
    fi
    if ! kill -0 "$2" 2>/dev/null; then
        cat "$1" >&2
        echo "demo: FAILED: the server exited before registering" >&2
        exit 1
    fi
    return 1
}
for i in $(seq 1 "$servers"); do
    log="$work/server$i.log"
    if ! wait_for 15 "server $i to register" registered "$log" "${server_pids[$((i - 1))]}"; then
        cat "$log" >&2
        exit 1
    fi
    cat "$log"
    addrs+=("$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$log" | head -n 1)")
done
wait_for 10 "$servers keys under /services/$service/" count_is "$servers"
echo "registry:"
registered_keys | sed 's/^/  /'

section "client: 30 requests"
status=0
"$client_bin" --etcd "$ETCD_ENDPOINTS" --service "$service" --requests 30 \
    >"$work/client.out" 2>"$work/client.err" || status=$?
echo "--- stdout"
cat "$work/client.out"
echo "--- stderr"
cat "$work/client.err"
if ((status != 0)); then
    echo "demo: FAILED: the client exited with status $status" >&2
    exit 1
fi

section "replies per server"
sed -n 's/.* from //p' "$work/client.out" | sort | uniq -c
missing=0
for addr in "${addrs[@]}"; do
    if ! grep -q " from $addr\$" "$work/client.out"; then
        echo "demo: FAILED: no reply from $addr" >&2
        missing=1
    fi
done
distinct="$(sed -n 's/.* from //p' "$work/client.out" | sort -u | wc -l)"
if ((missing != 0 || distinct < servers)); then
    echo "demo: FAILED: replies came from $distinct distinct servers, expected $servers" >&2
    exit 1
fi
echo "replies came from all $servers servers"

section "graceful stop: SIGTERM to every server"
for pid in "${server_pids[@]}"; do
    kill -TERM "$pid"
done
wait_for 2 "the keys to be gone" count_is 0
echo "registry: empty (keys removed at once, not after the TTL)"
for i in "${!server_pids[@]}"; do
    server_status=0
    wait "${server_pids[$i]}" || server_status=$?
    echo "server $((i + 1)) exited with status $server_status"
    tail -n 2 "$work/server$((i + 1)).log" | sed 's/^/  /'
    if ((server_status != 0)); then
        echo "demo: FAILED: server $((i + 1)) did not exit cleanly" >&2
        exit 1
    fi
done

section "client with no instance: fails fast"
start_ms="$(date +%s%3N)"
status=0
"$client_bin" --etcd "$ETCD_ENDPOINTS" --service "$service" --requests 10 \
    >"$work/client.out" 2>"$work/client.err" || status=$?
elapsed_ms=$(($(date +%s%3N) - start_ms))
tail -n 3 "$work/client.err"
echo "exit status $status after ${elapsed_ms} ms"
if ((status == 0)); then
    echo "demo: FAILED: the client succeeded with no server" >&2
    exit 1
fi

section "demo passed"
