#!/usr/bin/env bash
# Two clusters in Linux network namespaces; `fedgate demo --plan` runs its seven scenarios there.
#
#   cluster A                                             cluster B
#   [wa] 10.231.1.2 --veth-- 10.231.1.1 [ea] 10.231.0.1 --veth-- 10.231.0.2 [eb] 10.231.2.1 --veth-- 10.231.2.2 [wb]
#   workload: echo,                 edge: gateway,                 edge: gateway,              workload: echo,
#   sidecars, caller                bundle endpoint                bundle endpoint             sidecar
#
# The edges do not forward, so A's workload namespace reaches B only through the gateways; the
# script proves it before the demo runs. Namespaces (and so their veths and addresses) are
# always removed on exit. Needs root and iproute2; otherwise prints SKIP and exits 0.
#
# Environment:
#   FEDGATE=path     the binary (default: build with `cargo build --locked`, use target/debug)
#   NETEM="delay 5ms loss 0.1%"   tc netem on the inter-cluster link (both directions)
#   TIMEOUT=300      seconds the demo may take
#   KEEP_LOGS=1      keep the demo directory after a successful run (always kept on failure)
set -euo pipefail

TIMEOUT="${TIMEOUT:-300}"
NETEM="${NETEM:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

skip() {
    echo "SKIP: e2e/netns.sh: $*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces); run as root: sudo e2e/netns.sh"
command -v ip >/dev/null 2>&1 || skip "needs iproute2 (the ip command); apt-get install iproute2"
command -v timeout >/dev/null 2>&1 || skip "needs coreutils timeout"
if [ -n "$NETEM" ]; then
    command -v tc >/dev/null 2>&1 || { echo "FAIL: NETEM is set but tc (iproute2) is missing"; exit 1; }
fi

# A unique prefix per run: the namespaces and interfaces of concurrent runs never collide.
prefix="fg$(printf '%05x' "$(( ($$ ^ RANDOM) & 0xfffff ))")"
ns_wa="$prefix-wa"
ns_ea="$prefix-ea"
ns_eb="$prefix-eb"
ns_wb="$prefix-wb"
work="$(mktemp -d "${TMPDIR:-/tmp}/fedgate-netns.XXXXXX")"
created=()
bg_pids=()
status=1

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${bg_pids[@]+"${bg_pids[@]}"}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${created[@]+"${created[@]}"}"; do
        ip netns del "$ns" 2>/dev/null || echo "warning: could not delete namespace $ns"
    done
    if [ "$status" -eq 0 ] && [ -z "${KEEP_LOGS:-}" ]; then
        rm -rf "$work"
    else
        echo "e2e/netns.sh: work directory kept: $work (demo logs in $work/demo/logs)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "e2e/netns.sh: interrupted"; exit 130' INT TERM

fail() {
    echo "FAIL: e2e/netns.sh: $*"
    exit 1
}

# The binary.
if [ -n "${FEDGATE:-}" ]; then
    bin="$FEDGATE"
else
    echo "building fedgate (cargo build --locked) ..."
    (cd "$repo" && cargo build --locked --quiet) || fail "cargo build failed"
    bin="$repo/target/debug/fedgate"
fi
[ -x "$bin" ] || fail "no executable fedgate at $bin (set FEDGATE=...)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

# Namespaces. If the kernel or the container refuses, this machine cannot run the test.
if ! ip netns add "$ns_wa" 2>"$work/netns.err"; then
    skip "cannot create network namespaces here: $(head -n1 "$work/netns.err")"
fi
created+=("$ns_wa")
for ns in "$ns_ea" "$ns_eb" "$ns_wb"; do
    ip netns add "$ns"
    created+=("$ns")
done
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
for ns in "${created[@]}"; do
    in_ns "$ns" ip link set lo up
    # Edges must not route between their links: the gateways are the only path.
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0
done

# veth pairs, created straight into their namespaces (names are per namespace).
link() { # ns1 if1 addr1 ns2 if2 addr2
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    in_ns "$1" ip addr add "$3/24" dev "$2"
    in_ns "$4" ip addr add "$6/24" dev "$5"
    in_ns "$1" ip link set "$2" up
    in_ns "$4" ip link set "$5" up
}
link "$ns_wa" wa0 10.231.1.2 "$ns_ea" ea0 10.231.1.1
link "$ns_wb" wb0 10.231.2.2 "$ns_eb" eb0 10.231.2.1
link "$ns_ea" ea1 10.231.0.1 "$ns_eb" eb1 10.231.0.2
# Workloads send everything else to their edge, which does not forward it.
in_ns "$ns_wa" ip route add 10.231.0.0/16 via 10.231.1.1
in_ns "$ns_wb" ip route add 10.231.0.0/16 via 10.231.2.1
if [ -n "$NETEM" ]; then
    for end in "$ns_ea ea1" "$ns_eb eb1"; do
        read -r ns dev <<<"$end"
        # shellcheck disable=SC2086 # NETEM is a list of tc arguments
        in_ns "$ns" tc qdisc add dev "$dev" root netem $NETEM 2>"$work/tc.err" \
            || fail "NETEM=\"$NETEM\": tc refused it: $(head -n1 "$work/tc.err") (netem needs the sch_netem kernel module)"
    done
    echo "netem on the inter-cluster link: $NETEM"
fi
echo "namespaces: $ns_wa $ns_ea (cluster A), $ns_eb $ns_wb (cluster B)"

# Proof of isolation: a listener in B's workload namespace is reachable from B's edge, and not
# from A's workload namespace.
probe_port=19000
# Not through in_ns: `$!` must be the process itself (ip netns exec execs fedgate).
ip netns exec "$ns_wb" "$bin" demo echo --listen "10.231.2.2:$probe_port" >"$work/probe-echo.log" 2>&1 &
bg_pids+=("$!")
tcp_open() { # ns host port
    in_ns "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
ready=0
for _ in $(seq 1 50); do
    if tcp_open "$ns_eb" 10.231.2.2 "$probe_port"; then ready=1; break; fi
    sleep 0.1 # polling a port until the probe listener is up (bounded: 50 tries)
done
[ "$ready" -eq 1 ] || fail "the isolation probe listener in $ns_wb never came up ($(cat "$work/probe-echo.log"))"
echo "isolation control: B's edge reaches B's workload 10.231.2.2:$probe_port"
if tcp_open "$ns_wa" 10.231.2.2 "$probe_port"; then
    fail "A's workload namespace reached B's workload directly: the topology is not isolated"
fi
if tcp_open "$ns_wa" 10.231.0.2 "$probe_port"; then
    fail "A's workload namespace reached B's edge directly"
fi
echo "isolation: A's workload cannot open 10.231.2.2:$probe_port (no path except the gateways)"
kill "${bg_pids[0]}" 2>/dev/null || true
wait "${bg_pids[0]}" 2>/dev/null || true
bg_pids=()

cat >"$work/plan.toml" <<EOF
# written by e2e/netns.sh
[roles.workload-a]
netns = "$ns_wa"
address = "10.231.1.2"

[roles.edge-a]
netns = "$ns_ea"
address = "10.231.1.1"
peer_address = "10.231.0.1"

[roles.workload-b]
netns = "$ns_wb"
address = "10.231.2.2"

[roles.edge-b]
netns = "$ns_eb"
address = "10.231.2.1"
peer_address = "10.231.0.2"
EOF

echo "running: fedgate demo --plan $work/plan.toml --dir $work/demo (timeout ${TIMEOUT}s)"
# In the background so that a signal to this script is handled at once (bash defers traps
# until a foreground command ends); cleanup forwards it to `timeout`, which passes it on to
# the demo, which stops its children. The output goes straight to a file (complete once the
# demo has exited) and is shown live by a tail that ends with the demo.
: >"$work/demo.out"
timeout --signal=TERM --kill-after=15 "$TIMEOUT" "$bin" demo --plan "$work/plan.toml" --dir "$work/demo" \
    >"$work/demo.out" 2>&1 &
demo_pid=$!
bg_pids+=("$demo_pid")
tail --pid="$demo_pid" -n +1 -f "$work/demo.out" &
tail_pid=$!
bg_pids+=("$tail_pid")
set +e
wait "$demo_pid"
rc=$?
wait "$tail_pid"
set -e
bg_pids=()
if [ "$rc" -eq 124 ]; then
    fail "the demo did not finish within ${TIMEOUT}s"
fi
matched=$(grep -c '^scenario [1-7] .* MATCH$' "$work/demo.out" || true)
if [ "$rc" -ne 0 ] || [ "$matched" -ne 7 ]; then
    for log in "$work"/demo/logs/*.log; do
        [ -f "$log" ] || continue
        echo "--- tail of $log"
        tail -n 15 "$log"
    done
    fail "fedgate demo exited $rc with $matched/7 scenarios matched"
fi
status=0
echo "PASS: e2e/netns.sh: 7/7 scenarios matched in network namespaces"
