#!/usr/bin/env bash
# Federation between a real SPIRE server (trust domain spire-a.test) and fedgate
# (trust domain cluster-b.test), on 127.0.0.1 only. See e2e/spire/README.md.
#
#   spire-a.test                                    cluster-b.test
#   spire-server (sqlite3, join_token) <-------->   fedgate run: [federation.serve] https_spiffe
#     bundle endpoint https_spiffe                    + peer spire-a.test (https_spiffe)
#   spire-agent (join token, unix attestor)         fedgate bundle serve --profile https_web
#     -> fedgate run + fedgate sidecar              fedgate sidecar (files) -> echo app
#        ([identity] source = "workload_api")       (passthrough + bridge ingress in `fedgate run`)
#
# Then JWT-SVIDs both ways, and go-spiffe / py-spiffe against `fedgate agent`
# (e2e/interop/workload, e2e/interop/jwt).
#
# Every step prints `check <name>: MATCH|MISMATCH ...`; the script exits 0 only when every
# check matched, and ends with `spire: N passed, M failed`. It skips (exit 0) only when Go is
# not installed, because SPIRE is built from source with the Go toolchain.
#
# Environment:
#   FEDGATE=path       the fedgate binary (default: `cargo build --release --locked`, target/release)
#   SPIRE_BIN_DIR=dir  where spire-server and spire-agent are built and reused
#                      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/fedgate-e2e/spire-<version>/bin)
#   WAIT_SECONDS=90    upper bound of every wait
#   SPIRE_BUILD_TIMEOUT=3600  upper bound of the SPIRE build (about 30 min cold on 2 busy cores)
#   KEEP_LOGS=1        keep the work directory (on a failure the tail of every log is printed)
set -euo pipefail

# Must match the version in e2e/spire/tools/go.mod (checked below).
SPIRE_VERSION="v1.13.3"
WAIT_SECONDS="${WAIT_SECONDS:-90}"
SPIRE_BUILD_TIMEOUT="${SPIRE_BUILD_TIMEOUT:-3600}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
tools="$here/spire/tools"

# Loopback traffic must never go through a proxy from the environment.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

skip() {
    echo "SKIP: e2e/spire.sh: $*"
    exit 0
}

command -v go >/dev/null 2>&1 || skip "needs Go (SPIRE $SPIRE_VERSION is built from source with \`go install\`); install Go 1.24 or later"
for tool in jq curl timeout base64; do
    command -v "$tool" >/dev/null 2>&1 || { echo "FAIL: e2e/spire.sh: needs $tool"; exit 1; }
done
command -v openssl >/dev/null 2>&1 || { echo "FAIL: e2e/spire.sh: needs openssl (the https_web endpoint's certificate)"; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fedgate-spire.XXXXXX")"
bg_pids=()
passed=0
failed=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${bg_pids[@]+"${bg_pids[@]}"}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${bg_pids[@]+"${bg_pids[@]}"}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -z "${KEEP_LOGS:-}" ]; then
        rm -rf "$work"
    else
        echo "e2e/spire.sh: work directory kept: $work (logs: $work/*.log)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "e2e/spire.sh: interrupted"; exit 130' INT TERM

fail() {
    echo "FAIL: e2e/spire.sh: $*"
    show_logs
    exit 1
}

show_logs() {
    for log in "$work"/*.log; do
        [ -f "$log" ] || continue
        echo "--- tail of $log"
        tail -n 20 "$log"
    done
}

# check NAME CONDITION-EXIT-STATUS DETAIL: records and prints one result.
check() {
    local name=$1 ok=$2 detail=$3
    if [ "$ok" -eq 0 ]; then
        passed=$((passed + 1))
        echo "check $name: MATCH ($detail)"
    else
        failed=$((failed + 1))
        echo "check $name: MISMATCH ($detail)"
    fi
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND every second for at most WAIT_SECONDS.
# Returns 0 as soon as it succeeds, 1 after the deadline. Prints how long it took.
waited=0
wait_until() {
    local what=$1
    shift
    local start=$SECONDS
    while true; do
        if "$@" >/dev/null 2>&1; then
            waited=$((SECONDS - start))
            echo "  $what: after ${waited}s"
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$WAIT_SECONDS" ]; then
            waited=$((SECONDS - start))
            echo "  $what: not within ${WAIT_SECONDS}s"
            return 1
        fi
        sleep 1 # poll interval of a bounded wait
    done
}

# free_port VAR: sets VAR to a TCP port on 127.0.0.1 that nothing accepts on, below the
# kernel's ephemeral range and not handed out before in this run (the process binds it right
# after; a collision fails loudly at bind). Not called in a subshell, so the list persists.
used_ports=" "
spire_port="" spire_be_port="" b_admin_port="" b_be_port="" b_web_port=""
b_in_port="" b_bin_port="" sb_port="" sb_admin_port="" app_port=""
a_admin_port="" a_out_port="" a_bout_port="" sa_admin_port="" sa_fed_port="" sa_br_port=""
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        case "$used_ports" in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            used_ports="$used_ports$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    fail "no free port found on 127.0.0.1"
}

# The base64 of a PEM file's first certificate (= the x5c / asn1 form of its DER).
pem_b64() {
    awk '/-----BEGIN CERTIFICATE-----/{p=1; next} /-----END CERTIFICATE-----/{exit} p' "$1" | tr -d '\n\r '
}

# ---------------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------------

# The binary exists and was built from the pinned SPIRE module (its Go build information; the
# binary's own --version says only "<base>-dev-unk" when built with `go install`).
built_version() {
    [ -x "$1" ] && go version -m "$1" 2>/dev/null |
        awk -v v="$SPIRE_VERSION" '($1 == "dep" || $1 == "mod") && $2 == "github.com/spiffe/spire" && $3 == v {found = 1} END {exit !found}'
}

build_spire() {
    local pinned
    pinned=$(awk '$1 == "github.com/spiffe/spire" {print $2}' "$tools/go.mod")
    [ "$pinned" = "$SPIRE_VERSION" ] || fail "e2e/spire/tools/go.mod pins spire $pinned, the script expects $SPIRE_VERSION"
    spire_bin="${SPIRE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fedgate-e2e/spire-$SPIRE_VERSION/bin}"
    if built_version "$spire_bin/spire-server" && built_version "$spire_bin/spire-agent"; then
        echo "spire: reusing $spire_bin (spire $SPIRE_VERSION)"
    else
        echo "spire: building spire-server and spire-agent $SPIRE_VERSION into $spire_bin (minutes when cold) ..."
        mkdir -p "$spire_bin"
        local start=$SECONDS
        (cd "$tools" && GOBIN="$spire_bin" GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" \
            timeout "$SPIRE_BUILD_TIMEOUT" go install \
            github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent) \
            >"$work/go-install.log" 2>&1 || fail "go install of SPIRE failed: $(tail -n 5 "$work/go-install.log")"
        echo "spire: built in $((SECONDS - start))s"
    fi
    if ! built_version "$spire_bin/spire-server" || ! built_version "$spire_bin/spire-agent"; then
        fail "the binaries in $spire_bin are not built from spire $SPIRE_VERSION"
    fi
    spire_server="$spire_bin/spire-server"
    spire_agent="$spire_bin/spire-agent"
}

build_fedgate() {
    if [ -n "${FEDGATE:-}" ]; then
        fg="$FEDGATE"
    else
        echo "fedgate: cargo build --release --locked ..."
        (cd "$repo" && cargo build --release --locked --quiet) || fail "cargo build failed"
        fg="$repo/target/release/fedgate"
    fi
    [ -x "$fg" ] || fail "no executable fedgate at $fg (set FEDGATE=...)"
    fg="$(cd "$(dirname "$fg")" && pwd)/$(basename "$fg")"
    echo "fedgate: $fg"
}

# ---------------------------------------------------------------------------------------------
# spire-a.test: SPIRE server and agent
# ---------------------------------------------------------------------------------------------

# Every CLI call to SPIRE is bounded in time.
srv() { timeout 30 "$spire_server" "$@" -socketPath "$spire_sock"; }

start_spire_server() {
    spire_dir="$work/spire-server"
    mkdir -p "$spire_dir/data"
    spire_sock="$spire_dir/api.sock"
    free_port spire_port
    free_port spire_be_port
    cat >"$spire_dir/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = "$spire_port"
    socket_path = "$spire_sock"
    trust_domain = "spire-a.test"
    data_dir = "$spire_dir/data"
    log_level = "INFO"
    ca_ttl = "24h"
    default_x509_svid_ttl = "1h"
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = $spire_be_port
            # Below SPIRE's own 1-minute floor (it logs a warning): what fedgate polls by.
            refresh_hint = "5s"
            profile "https_spiffe" {}
        }
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$spire_dir/data/datastore.sqlite3"
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
EOF
    # SSL_CERT_FILE: the Web PKI roots SPIRE's https_web client trusts (Go reads it on Linux);
    # only the private CA of this run's https_web endpoint.
    SSL_CERT_FILE="$work/web/ca.pem" "$spire_server" run -config "$spire_dir/server.conf" \
        >"$work/spire-server.log" 2>&1 &
    spire_server_pid=$!
    bg_pids+=("$spire_server_pid")
    wait_until "spire-server healthy" srv healthcheck ||
        fail "spire-server did not become healthy"
    check spire-server-healthy 0 "spire-server $SPIRE_VERSION, trust domain spire-a.test, API 127.0.0.1:$spire_port, bundle endpoint 127.0.0.1:$spire_be_port"
}

start_spire_agent() {
    agent_dir="$work/spire-agent"
    mkdir -p "$agent_dir/data"
    agent_sock="$agent_dir/workload.sock"
    srv bundle show -format pem >"$agent_dir/bootstrap.pem"
    local token
    token=$(srv token generate -spiffeID spiffe://spire-a.test/host -ttl 600 | awk '/^Token:/ {print $2}')
    [ -n "$token" ] || fail "spire-server token generate printed no token"
    cat >"$agent_dir/agent.conf" <<EOF
agent {
    data_dir = "$agent_dir/data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "$spire_port"
    socket_path = "$agent_sock"
    trust_bundle_path = "$agent_dir/bootstrap.pem"
    trust_domain = "spire-a.test"
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            # unix:path selectors tell apart the processes of one uid (the SPIRE CLI, fedgate's
            # gateway and sidecar); no hashing of the binaries (unix:sha256) is needed.
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
}
EOF
    "$spire_agent" run -config "$agent_dir/agent.conf" -joinToken "$token" >"$work/spire-agent.log" 2>&1 &
    bg_pids+=("$!")
    wait_until "spire-agent healthy" timeout 10 "$spire_agent" healthcheck -socketPath "$agent_sock" ||
        fail "spire-agent did not become healthy"
    local agents
    agents=$(srv agent list 2>/dev/null | grep -c "spiffe://spire-a.test/spire/agent/join_token/$token" || true)
    check spire-agent-attested "$([ "$agents" -eq 1 ] && echo 0 || echo 1)" \
        "agent attested with a join token as spiffe://spire-a.test/spire/agent/join_token/<token>"
    agent_id="spiffe://spire-a.test/spire/agent/join_token/$token"
}

# ---------------------------------------------------------------------------------------------
# cluster-b.test: fedgate CA, gateway (bundle endpoint + peer spire-a.test), https_web endpoint
# ---------------------------------------------------------------------------------------------

b_endpoint_id="spiffe://cluster-b.test/fedgate/bundle-endpoint"

setup_fedgate_ca() {
    b_dir="$work/cluster-b"
    mkdir -p "$b_dir"
    # A short refresh hint: SPIRE polls a federated bundle every max(hint, 1 min) / 4 = 15 s.
    "$fg" ca init --trust-domain cluster-b.test --out "$b_dir/ca" --refresh-hint 10s >"$work/fedgate-ca.log" 2>&1 ||
        fail "fedgate ca init failed: $(cat "$work/fedgate-ca.log")"
    "$fg" ca issue --ca "$b_dir/ca" --id "$b_endpoint_id" --out "$b_dir/endpoint" >>"$work/fedgate-ca.log" 2>&1 ||
        fail "fedgate ca issue failed: $(cat "$work/fedgate-ca.log")"
    root1=$(pem_b64 "$b_dir/ca/ca.pem")
    cp "$b_dir/ca/bundle.json" "$b_dir/initial-bundle.json"
    # The bridge trust domain: one bridge SVID per gateway, for the bridged call.
    bridge_dir="$work/bridge"
    "$fg" ca init --trust-domain bridge.test --out "$bridge_dir/ca" >>"$work/fedgate-ca.log" 2>&1 ||
        fail "fedgate ca init (bridge.test) failed: $(tail -n 3 "$work/fedgate-ca.log")"
    for gw in spire-a cluster-b; do
        "$fg" ca issue --ca "$bridge_dir/ca" --id "spiffe://bridge.test/gateway/$gw" --out "$bridge_dir/$gw" \
            >>"$work/fedgate-ca.log" 2>&1 || fail "fedgate ca issue (bridge SVID of $gw) failed"
    done
    echo "  fedgate CA cluster-b.test: root 1 sha256 $(printf '%s' "$root1" | base64 -d | sha256sum | cut -c1-16)..."

    # A private Web PKI for the https_web endpoint: a CA and a server certificate for
    # 127.0.0.1 (no SPIFFE ID: it is a web certificate).
    mkdir -p "$work/web"
    (
        cd "$work/web"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -days 1 -subj "/CN=fedgate e2e web CA" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
            -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext \
            -out server.pem
    ) >"$work/web-pki.log" 2>&1 || fail "openssl could not create the https_web certificate: $(tail -n 3 "$work/web-pki.log")"
}

start_fedgate_gateway() {
    free_port b_admin_port
    free_port b_be_port
    free_port b_in_port
    free_port b_bin_port
    free_port sb_port
    srv bundle show -format spiffe >"$b_dir/spire-a.bootstrap.json"
    cat >"$b_dir/gateway.toml" <<EOF
# written by e2e/spire.sh
trust_domain = "cluster-b.test"

[identity]
svid = "endpoint/svid.pem"
key = "endpoint/svid.key"
bundle = "ca/bundle.json"

[admin]
listen = "127.0.0.1:$b_admin_port"

[federation]
state_dir = "state"
distribute_dir = "distribute"
min_refresh = "1s"
max_refresh = "1m"
default_refresh = "30s"

[federation.serve]
listen = "127.0.0.1:$b_be_port"
profile = "https_spiffe"

[[federation.peers]]
trust_domain = "spire-a.test"
url = "https://127.0.0.1:$spire_be_port"
profile = "https_spiffe"
endpoint_id = "spiffe://spire-a.test/spire/server"
bootstrap_bundle = "spire-a.bootstrap.json"

# The bridge trust domain (bridged call from spire-a.test).
[bridge]
trust_domain = "bridge.test"
svid = "$bridge_dir/cluster-b/svid.pem"
key = "$bridge_dir/cluster-b/svid.key"
bundle = "$bridge_dir/ca/bundle.json"

# Federated mode: route on the SNI to the echo workload's sidecar, never decrypt.
[[listeners]]
name = "in"
kind = "passthrough"
listen = "127.0.0.1:$b_in_port"

  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["127.0.0.1:$sb_port"]

# Bridged mode: spire-a.test's gateway, which may speak only for spire-a.test identities.
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:$b_bin_port"

  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/spire-a"
  may_speak_for = ["spire-a.test"]

  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["127.0.0.1:$sb_port"]
  server_id = ["spiffe://cluster-b.test/ns/demo/sa/echo"]
  allow = ["spiffe://spire-a.test/ns/demo/sa/client"]
  send_proxy_header = true
EOF
    "$fg" config check "$b_dir/gateway.toml" >"$work/fedgate-config-check.log" 2>&1 ||
        fail "fedgate config check refused the gateway config: $(cat "$work/fedgate-config-check.log")"
    "$fg" run --config "$b_dir/gateway.toml" --workers 1 >"$work/fedgate-gateway.log" 2>&1 &
    bg_pids+=("$!")
    wait_until "fedgate gateway ready (/readyz)" curl -fsS --max-time 5 "http://127.0.0.1:$b_admin_port/readyz" ||
        fail "the fedgate gateway did not become ready"
    check fedgate-gateway-ready 0 "fedgate run: cluster-b.test bundle endpoint https_spiffe on 127.0.0.1:$b_be_port as $b_endpoint_id, admin 127.0.0.1:$b_admin_port"
}

status_json() { curl -fsS --max-time 5 "http://127.0.0.1:$b_admin_port/status"; }

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------

# SPIRE's view of cluster-b.test's bundle, as `spire-server bundle list -output json` prints it.
spire_view() { srv bundle list -id spiffe://cluster-b.test -output json 2>/dev/null; }
spire_roots() { spire_view | jq -r '.x509_authorities[].asn1' | sort; }
# The roots SPIRE holds for cluster-b.test are exactly the given base64 DER values.
spire_has_roots() {
    local want got
    want=$(printf '%s\n' "$@" | sort)
    got=$(spire_roots) || return 1
    [ "$got" = "$want" ]
}
# SPIRE logs "Bundle refreshed" for a trust domain only after it fetched a bundle from the
# endpoint and stored it, and "Error updating bundle" when a fetch or its storage failed.
spire_refreshed_count() {
    grep -c 'msg="Bundle refreshed".*trust_domain=cluster-b.test' "$work/spire-server.log" || true
}
spire_fetch_errors() {
    grep 'msg="Error updating bundle"' "$work/spire-server.log" | grep -c 'cluster-b.test' || true
}
spire_refreshed_since() { [ "$(spire_refreshed_count)" -gt "$1" ]; }

step_federation_spire_fetches_fedgate_https_spiffe() {
    echo "== SPIRE federates with fedgate's bundle endpoint (https_spiffe)"
    srv federation create -trustDomain cluster-b.test \
        -bundleEndpointURL "https://127.0.0.1:$b_be_port" -bundleEndpointProfile https_spiffe \
        -endpointSpiffeID "$b_endpoint_id" \
        -trustDomainBundlePath "$b_dir/initial-bundle.json" -trustDomainBundleFormat spiffe \
        >"$work/federation-create.out" 2>&1 || fail "spire-server federation create: $(cat "$work/federation-create.out")"
    # SPIRE ignores a fetched bundle's spiffe_sequence (see README), and the bundle fedgate
    # serves has the same roots and hint as the initial one, so its log is what shows the fetch.
    local ok=0
    wait_until "SPIRE fetched and stored cluster-b.test's bundle from fedgate" spire_refreshed_since 0 || ok=1
    spire_has_roots "$root1" || ok=1
    [ "$(spire_fetch_errors)" -eq 0 ] || ok=1
    check spire-fetches-fedgate-https-spiffe "$ok" \
        "spire-server: relationship created, \"Bundle refreshed\" for cluster-b.test, $(spire_fetch_errors) fetch errors; its bundle = [fedgate root 1]"
}

step_rotation_fedgate_reaches_spire() {
    echo "== fedgate CA rotation (three phases) reaches SPIRE"
    "$fg" ca rotate --ca "$b_dir/ca" >>"$work/fedgate-ca.log" 2>&1 || fail "fedgate ca rotate failed"
    root2=$(pem_b64 "$b_dir/ca/ca.pem")
    local ok=0
    wait_until "SPIRE holds roots 1 and 2" spire_has_roots "$root1" "$root2" || ok=1
    check rotation-phase1-reaches-spire "$ok" "after \`fedgate ca rotate\`: SPIRE's cluster-b.test bundle = [root 1, root 2] after ${waited}s"

    # Phase 2: the endpoint's SVID from the new root (fedgate reloads it within 2 s); phase 3:
    # retire root 1. SPIRE can fetch that bundle only by accepting the re-issued endpoint SVID
    # against the bundle it fetched in phase 1 (self-serving https_spiffe, §5.2.2.4).
    "$fg" ca issue --ca "$b_dir/ca" --id "$b_endpoint_id" --out "$b_dir/endpoint" >>"$work/fedgate-ca.log" 2>&1 ||
        fail "fedgate ca issue (re-issue) failed"
    local new_leaf
    new_leaf=$(pem_b64 "$b_dir/endpoint/svid.pem")
    served_leaf_is() {
        [ "$(timeout 10 openssl s_client -connect "127.0.0.1:$b_be_port" </dev/null 2>/dev/null |
            openssl x509 -outform DER 2>/dev/null | base64 -w0)" = "$new_leaf" ]
    }
    wait_until "fedgate's endpoint presents the re-issued SVID" served_leaf_is ||
        fail "the bundle endpoint never switched to the re-issued SVID"
    "$fg" ca rotate --ca "$b_dir/ca" --retire-old >>"$work/fedgate-ca.log" 2>&1 || fail "fedgate ca rotate --retire-old failed"
    ok=0
    wait_until "SPIRE holds only root 2" spire_has_roots "$root2" || ok=1
    check rotation-phase3-reaches-spire "$ok" "after re-issuing the endpoint SVID and \`ca rotate --retire-old\`: SPIRE's bundle = [root 2] after ${waited}s"
}

step_federation_spire_fetches_fedgate_https_web() {
    echo "== SPIRE federates with fedgate's bundle endpoint (https_web)"
    free_port b_web_port
    "$fg" bundle serve --trust-domain cluster-b.test --bundle "$b_dir/ca/bundle.json" \
        --listen "127.0.0.1:$b_web_port" --profile https_web \
        --cert "$work/web/server.pem" --key "$work/web/server.key" >"$work/fedgate-bundle-serve-web.log" 2>&1 &
    bg_pids+=("$!")
    wait_until "fedgate bundle serve (https_web) listening" grep -q "listening on" "$work/fedgate-bundle-serve-web.log" ||
        fail "fedgate bundle serve --profile https_web did not start"
    srv federation update -trustDomain cluster-b.test \
        -bundleEndpointURL "https://127.0.0.1:$b_web_port" -bundleEndpointProfile https_web \
        >"$work/federation-update.out" 2>&1 || fail "spire-server federation update: $(cat "$work/federation-update.out")"
    local profile
    profile=$(srv federation show -trustDomain cluster-b.test -output json | jq -r '.https_web != null')
    # A new root is published only by the https_web endpoint's relationship now.
    "$fg" ca rotate --ca "$b_dir/ca" >>"$work/fedgate-ca.log" 2>&1 || fail "fedgate ca rotate failed"
    root3=$(pem_b64 "$b_dir/ca/ca.pem")
    local ok=0
    [ "$profile" = "true" ] || ok=1
    wait_until "SPIRE holds roots 2 and 3 (over https_web)" spire_has_roots "$root2" "$root3" || ok=1
    check spire-fetches-fedgate-https-web "$ok" \
        "relationship switched to https_web (https://127.0.0.1:$b_web_port, private CA in SSL_CERT_FILE); after another \`ca rotate\` SPIRE's bundle = [root 2, root 3] after ${waited}s"
}

step_spire_workload_gets_fedgate_bundle() {
    echo "== a SPIRE workload (unix attestor) receives cluster-b.test's bundle"
    srv entry create -parentID "$agent_id" -spiffeID spiffe://spire-a.test/workload/e2e \
        -selector "unix:uid:$(id -u)" -selector "unix:path:$(realpath "$spire_agent")" \
        -federatesWith spiffe://cluster-b.test >"$work/entry-create.out" 2>&1 ||
        fail "spire-server entry create: $(cat "$work/entry-create.out")"
    mkdir -p "$work/workload"
    fetch_svid() {
        timeout 30 "$spire_agent" api fetch x509 -socketPath "$agent_sock" -write "$work/workload" >"$work/workload/fetch.out" 2>&1 &&
            [ -s "$work/workload/federated_bundle.0.0.pem" ]
    }
    local ok=0
    wait_until "the agent serves the workload an X509-SVID with a federated bundle" fetch_svid || ok=1
    local id=""
    if [ "$ok" -eq 0 ]; then
        id=$("$fg" svid inspect "$work/workload/svid.0.pem" --json | jq -r .spiffe_id)
        [ "$id" = "spiffe://spire-a.test/workload/e2e" ] || ok=1
        # The federated bundle SPIRE hands its workload verifies a cluster-b.test SVID.
        "$fg" ca issue --ca "$b_dir/ca" --id spiffe://cluster-b.test/ns/demo/sa/echo --out "$b_dir/echo" \
            >>"$work/fedgate-ca.log" 2>&1 || fail "fedgate ca issue (echo) failed"
        openssl verify -CAfile "$work/workload/federated_bundle.0.0.pem" "$b_dir/echo/svid.pem" \
            >"$work/workload/verify.out" 2>&1 || ok=1
    fi
    check spire-workload-gets-fedgate-bundle "$ok" \
        "spire-agent Workload API: SVID $id (unix:uid + unix:path selectors); its federated bundle verifies a fedgate-issued cluster-b.test SVID"
}

step_federation_fedgate_fetches_spire() {
    echo "== fedgate federates with SPIRE's bundle endpoint (https_spiffe, pinned to spiffe://spire-a.test/spire/server)"
    local spire_bundle_json="$work/spire-a.now.json"
    srv bundle show -format spiffe >"$spire_bundle_json"
    local spire_roots_b64 spire_seq
    spire_roots_b64=$(jq -r '[.keys[] | select(.use == "x509-svid") | .x5c[0]] | sort | join(",")' "$spire_bundle_json")
    spire_seq=$(jq -r '.spiffe_sequence' "$spire_bundle_json")
    peer_ok() {
        status_json | jq -e --argjson seq "$spire_seq" \
            '.peers[] | select(.trust_domain == "spire-a.test") | .last_success != null and .last_error == null and .sequence == $seq' 
    }
    local ok=0
    wait_until "fedgate /status: spire-a.test fetched" peer_ok || ok=1
    local peer
    peer=$(status_json | jq -c '.peers[] | select(.trust_domain == "spire-a.test") | {sequence, authorities, last_success, next_poll}')
    check fedgate-fetches-spire-status "$ok" "/status peer spire-a.test $peer (SPIRE's sequence $spire_seq)"

    # The last-known-good store and the distribution directory hold SPIRE's bundle.
    ok=0
    local stored distributed
    stored=$(jq -r '[.bundle.keys[] | select(.use == "x509-svid") | .x5c[0]] | sort | join(",")' \
        "$b_dir/state/spire-a.test.json" 2>/dev/null) || ok=1
    distributed=$(jq -r '[.trust_domains["spire-a.test"].keys[] | select(.use == "x509-svid") | .x5c[0]] | sort | join(",")' \
        "$b_dir/distribute/current/bundles.json" 2>/dev/null) || ok=1
    [ "$stored" = "$spire_roots_b64" ] || ok=1
    [ "$distributed" = "$spire_roots_b64" ] || ok=1
    [ -s "$b_dir/distribute/current/spire-a.test.pem" ] || ok=1
    # SPIRE's JWT authorities (`jwt-svid` keys with a `kid`) are kept and distributed too.
    local spire_kids distributed_kids
    spire_kids=$(jq -r '[.keys[] | select(.use == "jwt-svid") | .kid] | sort | join(",")' "$spire_bundle_json")
    distributed_kids=$(jq -r '[.trust_domains["spire-a.test"].keys[] | select(.use == "jwt-svid") | .kid] | sort | join(",")' \
        "$b_dir/distribute/current/bundles.json" 2>/dev/null) || ok=1
    [ -n "$spire_kids" ] && [ "$distributed_kids" = "$spire_kids" ] || ok=1
    check fedgate-stores-and-distributes-spire "$ok" \
        "state/spire-a.test.json and distribute/current/bundles.json hold SPIRE's X.509 authorities, bundles.json its JWT authorities (kid $spire_kids), spire-a.test.pem written"

    # fedgate validates an X509-SVID issued by SPIRE (to the agent's workload) with the
    # bundle it fetched from SPIRE.
    ok=0
    jq '.trust_domains["spire-a.test"]' "$b_dir/distribute/current/bundles.json" >"$work/spire-a.distributed.json"
    local verified=""
    verified=$("$fg" svid verify --chain "$work/workload/svid.0.pem" --bundle "spire-a.test=$work/spire-a.distributed.json" 2>&1) || ok=1
    check fedgate-verifies-spire-svid "$ok" "fedgate svid verify with the distributed spire-a.test bundle: $verified"
}

step_spire_rotation_reaches_fedgate() {
    echo "== SPIRE CA rotation (localauthority x509 prepare) reaches fedgate"
    local before
    before=$(status_json | jq -r '.peers[] | select(.trust_domain == "spire-a.test") | .authorities')
    srv localauthority x509 prepare >"$work/spire-prepare.out" 2>&1 || fail "spire-server localauthority x509 prepare: $(cat "$work/spire-prepare.out")"
    local want=$((before + 1))
    peer_has() {
        status_json | jq -e --argjson n "$want" '.peers[] | select(.trust_domain == "spire-a.test") | .authorities == $n'
    }
    local ok=0
    wait_until "fedgate /status: spire-a.test has $want authorities" peer_has || ok=1
    local spire_now distributed
    spire_now=$(srv bundle show -format spiffe | jq -r '[.keys[] | select(.use == "x509-svid") | .x5c[0]] | sort | join(",")')
    distributed=$(jq -r '[.trust_domains["spire-a.test"].keys[] | select(.use == "x509-svid") | .x5c[0]] | sort | join(",")' \
        "$b_dir/distribute/current/bundles.json")
    [ "$spire_now" = "$distributed" ] || ok=1
    check spire-rotation-reaches-fedgate "$ok" "SPIRE prepared a new X.509 authority; fedgate's spire-a.test bundle went from $before to $want authorities after ${waited}s and equals SPIRE's"
}

step_no_fetch_failures() {
    echo "== no failed fetch on either side during the run"
    local spire_errors fedgate_errors
    spire_errors=$(spire_fetch_errors)
    fedgate_errors=$(curl -fsS --max-time 5 "http://127.0.0.1:$b_admin_port/metrics" |
        awk '/^fedgate_federation_fetches_total\{/ && !/result="(ok|not_modified)"/ {n += $NF} END {print n + 0}')
    local ok=0
    [ "$spire_errors" -eq 0 ] && [ "$fedgate_errors" -eq 0 ] || ok=1
    check no-fetch-failures "$ok" "SPIRE logged $spire_errors failed updates of cluster-b.test; fedgate counted $fedgate_errors refused fetches of spire-a.test (fedgate_federation_fetches_total)"
}

step_spire_down_fedgate_keeps_trust() {
    echo "== SPIRE's server stops: fedgate keeps SPIRE's bundle (last-known-good)"
    local before
    before=$(jq -c '.trust_domains["spire-a.test"]' "$b_dir/distribute/current/bundles.json")
    kill "$spire_server_pid"
    wait "$spire_server_pid" 2>/dev/null || true
    local pids=()
    for pid in "${bg_pids[@]}"; do
        [ "$pid" = "$spire_server_pid" ] || pids+=("$pid")
    done
    bg_pids=("${pids[@]}")
    peer_failing() {
        status_json | jq -e '.peers[] | select(.trust_domain == "spire-a.test") | .last_error != null'
    }
    local ok=0
    wait_until "fedgate /status: spire-a.test last_error set" peer_failing || ok=1
    local peer after
    peer=$(status_json | jq -c '.peers[] | select(.trust_domain == "spire-a.test") | {authorities, last_error, time_until_trust_loss}')
    after=$(jq -c '.trust_domains["spire-a.test"]' "$b_dir/distribute/current/bundles.json")
    [ "$before" = "$after" ] || ok=1
    status_json | jq -e '.peers[] | select(.trust_domain == "spire-a.test") | .authorities == 2 and .time_until_trust_loss > 0' >/dev/null || ok=1
    curl -fsS --max-time 5 "http://127.0.0.1:$b_admin_port/readyz" >/dev/null || ok=1
    check fedgate-keeps-spire-bundle-when-down "$ok" "spire-server stopped: /status $peer, distributed bundle unchanged, /readyz 200"
}

# ---------------------------------------------------------------------------------------------
# fedgate in spire-a.test: a gateway and a sidecar whose identity is the SPIRE agent's
# ---------------------------------------------------------------------------------------------

a_gateway_id="spiffe://spire-a.test/fedgate/gateway"
a_client_id="spiffe://spire-a.test/ns/demo/sa/client"
b_echo_id="spiffe://cluster-b.test/ns/demo/sa/echo"

# The spire-a.test side: registration entries that select fedgate's gateway and sidecar by
# their executable's path (two copies of the binary, so that the unix attestor tells them
# apart), the gateway, the sidecar; the cluster-b.test side: the echo app and its sidecar.
step_fedgate_identity_from_spire_agent() {
    echo "== fedgate gateway and sidecar in spire-a.test take their identity from the SPIRE agent"
    local a_dir="$work/spire-a-fedgate"
    mkdir -p "$a_dir/bin"
    cp "$fg" "$a_dir/bin/fedgate-gateway"
    cp "$fg" "$a_dir/bin/fedgate-sidecar"
    local gw_bin sc_bin
    gw_bin=$(realpath "$a_dir/bin/fedgate-gateway")
    sc_bin=$(realpath "$a_dir/bin/fedgate-sidecar")
    srv entry create -parentID "$agent_id" -spiffeID "$a_gateway_id" \
        -selector "unix:uid:$(id -u)" -selector "unix:path:$gw_bin" \
        -federatesWith spiffe://cluster-b.test >"$work/entry-gateway.out" 2>&1 ||
        fail "spire-server entry create (gateway): $(cat "$work/entry-gateway.out")"
    srv entry create -parentID "$agent_id" -spiffeID "$a_client_id" \
        -selector "unix:uid:$(id -u)" -selector "unix:path:$sc_bin" \
        -federatesWith spiffe://cluster-b.test >"$work/entry-sidecar.out" 2>&1 ||
        fail "spire-server entry create (sidecar): $(cat "$work/entry-sidecar.out")"

    # cluster-b.test: the echo app (answers with the identities of its PROXY v2 header) behind
    # a file-based sidecar that accepts the spire-a.test client, directly or relayed by the
    # ingress gateway (whose local SVID is the bundle endpoint's).
    free_port app_port
    free_port sb_admin_port
    python3 "$here/spire/proxy_echo.py" serve "$app_port" >"$work/echo-app.log" 2>&1 &
    bg_pids+=("$!")
    "$fg" ca issue --ca "$b_dir/ca" --id "$b_echo_id" --out "$b_dir/echo-sidecar" >>"$work/fedgate-ca.log" 2>&1 ||
        fail "fedgate ca issue (echo sidecar) failed"
    cat >"$b_dir/sidecar.toml" <<EOF
# written by e2e/spire.sh: the echo workload's sidecar in cluster-b.test (identity from files)
trust_domain = "cluster-b.test"

[identity]
svid = "echo-sidecar/svid.pem"
key = "echo-sidecar/svid.key"
bundle = "ca/bundle.json"
federated_bundles = "distribute/current/bundles.json"

[admin]
listen = "127.0.0.1:$sb_admin_port"

[[inbound]]
name = "echo"
listen = "127.0.0.1:$sb_port"
forward = "127.0.0.1:$app_port"
allow = ["$a_client_id"]
proxy_protocol = true
trusted_relays = ["$b_endpoint_id"]
EOF
    "$fg" sidecar --config "$b_dir/sidecar.toml" >"$work/fedgate-sidecar-b.log" 2>&1 &
    bg_pids+=("$!")
    wait_until "cluster-b.test echo sidecar listening" grep -q "listening on" "$work/fedgate-sidecar-b.log" ||
        fail "the cluster-b.test sidecar did not start"
    wait_until "echo app listening" grep -q "listening on" "$work/echo-app.log" || fail "the echo app did not start"

    # spire-a.test: the gateway (passthrough and bridge egress) and the client's sidecar.
    free_port a_admin_port
    free_port a_out_port
    free_port a_bout_port
    free_port sa_admin_port
    free_port sa_fed_port
    free_port sa_br_port
    cat >"$a_dir/gateway.toml" <<EOF
# written by e2e/spire.sh: spire-a.test's gateway; its SVID and bundles come from SPIRE
trust_domain = "spire-a.test"

[identity]
source = "workload_api"
socket = "unix://$agent_sock"

[admin]
listen = "127.0.0.1:$a_admin_port"

[bridge]
trust_domain = "bridge.test"
svid = "$bridge_dir/spire-a/svid.pem"
key = "$bridge_dir/spire-a/svid.key"
bundle = "$bridge_dir/ca/bundle.json"

[[listeners]]
name = "out"
kind = "passthrough"
listen = "127.0.0.1:$a_out_port"

  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["127.0.0.1:$b_in_port"]

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:$a_bout_port"

  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["127.0.0.1:$b_bin_port"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["$a_client_id"]
EOF
    cat >"$a_dir/sidecar.toml" <<EOF
# written by e2e/spire.sh: the client workload's sidecar in spire-a.test; identity from SPIRE
trust_domain = "spire-a.test"

[identity]
source = "workload_api"
socket = "unix://$agent_sock"

[admin]
listen = "127.0.0.1:$sa_admin_port"

# Federated: mTLS end to end with the echo workload, through both gateways' SNI routing.
[[outbound]]
name = "federated"
listen = "127.0.0.1:$sa_fed_port"
server_name = "echo.cluster-b.test"
connect = ["127.0.0.1:$a_out_port"]
allow = ["$b_echo_id"]

# Bridged: mTLS with our own gateway only, which bridges to cluster-b.test.
[[outbound]]
name = "bridged"
listen = "127.0.0.1:$sa_br_port"
server_name = "echo.cluster-b.test"
connect = ["127.0.0.1:$a_bout_port"]
allow = ["$a_gateway_id"]
EOF
    "$gw_bin" config check "$a_dir/gateway.toml" >"$work/fedgate-a-config-check.log" 2>&1 ||
        fail "fedgate config check refused spire-a.test's gateway config: $(cat "$work/fedgate-a-config-check.log")"
    "$gw_bin" run --config "$a_dir/gateway.toml" --workers 1 >"$work/fedgate-gateway-a.log" 2>&1 &
    bg_pids+=("$!")
    "$sc_bin" sidecar --config "$a_dir/sidecar.toml" >"$work/fedgate-sidecar-a.log" 2>&1 &
    bg_pids+=("$!")
    local ok=0
    wait_until "spire-a.test gateway ready (identity from the SPIRE agent)" \
        curl -fsS --max-time 5 "http://127.0.0.1:$a_admin_port/readyz" || ok=1
    wait_until "spire-a.test sidecar listening" grep -q "listening on" "$work/fedgate-sidecar-a.log" || ok=1
    local gw_source sc_source
    gw_source=$(curl -fsS --max-time 5 "http://127.0.0.1:$a_admin_port/status" | jq -c '.identity_source') || ok=1
    sc_source=$(curl -fsS --max-time 5 "http://127.0.0.1:$sa_admin_port/status" | jq -c '.identity_source') || ok=1
    jq -e --arg s "$agent_sock" '.source == "workload_api" and .socket == $s and .updates >= 1 and .last_error == null' \
        <<<"$gw_source" >/dev/null 2>&1 || ok=1
    jq -e --arg s "$agent_sock" '.source == "workload_api" and .socket == $s and .updates >= 1 and .last_error == null' \
        <<<"$sc_source" >/dev/null 2>&1 || ok=1
    check fedgate-identity-from-spire-agent "$ok" "gateway /status identity_source $gw_source; sidecar $sc_source"
    [ "$ok" -eq 0 ] || return 0

    # Federated: the echo app sees the spire-a.test client's own SVID (TLV 0xE0), no relay.
    local answer want
    answer=$(python3 "$here/spire/proxy_echo.py" call "$sa_fed_port" federated 2>&1) || true
    want="client=$a_client_id origin=- msg=federated"
    check federated-call-spire-to-fedgate "$([ "$answer" = "$want" ] && echo 0 || echo 1)" \
        "spire-a.test client (SVID from SPIRE) -> its sidecar -> gateway SNI passthrough -> cluster-b.test gateway -> echo sidecar: app saw \"$answer\""

    # Bridged: the sidecar accepts only its gateway's SPIRE-issued SVID; the echo app sees the
    # ingress gateway as client and the caller as origin (TLV 0xE1).
    answer=$(python3 "$here/spire/proxy_echo.py" call "$sa_br_port" bridged 2>&1) || true
    want="client=$b_endpoint_id origin=$a_client_id msg=bridged"
    check bridged-call-spire-to-fedgate "$([ "$answer" = "$want" ] && echo 0 || echo 1)" \
        "spire-a.test client -> its sidecar -> gateway ($a_gateway_id from SPIRE) bridge egress -> bridge.test -> cluster-b.test bridge ingress -> echo sidecar: app saw \"$answer\""
}

# ---------------------------------------------------------------------------------------------
# JWT-SVIDs across the federation
# ---------------------------------------------------------------------------------------------

# A JWT-SVID the SPIRE agent minted for its workload validates with `fedgate jwt verify`
# through the spire-a.test bundle fedgate fetched (its JWT authorities) and distributed.
step_jwt_spire_to_fedgate() {
    echo "== a JWT-SVID minted by SPIRE validates with fedgate jwt verify (federated bundle)"
    local token ok=0
    token=$(timeout 30 "$spire_agent" api fetch jwt -audience fedgate-e2e -socketPath "$agent_sock" 2>"$work/jwt-fetch.err" |
        awk '/^token\(/ {getline; gsub(/[ \t]/, ""); print; exit}') || true
    [ -n "$token" ] || fail "spire-agent api fetch jwt printed no token: $(cat "$work/jwt-fetch.err")"
    jq '.trust_domains["spire-a.test"]' "$b_dir/distribute/current/bundles.json" >"$work/spire-a.jwt-bundle.json"
    local out
    out=$("$fg" jwt verify --audience fedgate-e2e --bundle "spire-a.test=$work/spire-a.jwt-bundle.json" --json - <<<"$token" 2>&1) || ok=1
    jq -e '.spiffe_id == "spiffe://spire-a.test/workload/e2e" and (.audience | index("fedgate-e2e"))' <<<"$out" >/dev/null 2>&1 || ok=1
    # The same token for another audience is refused.
    "$fg" jwt verify --audience other --bundle "spire-a.test=$work/spire-a.jwt-bundle.json" - <<<"$token" \
        >"$work/jwt-wrong-aud.out" 2>&1 && ok=1
    check jwt-spire-to-fedgate "$ok" "fedgate jwt verify: $out; audience \"other\" refused: $(head -c 160 "$work/jwt-wrong-aud.out")"
}

# A JWT-SVID minted by fedgate's CA validates in SPIRE (its agent's ValidateJWTSVID, against the
# cluster-b.test bundle SPIRE fetched from fedgate) and in go-spiffe's jwtsvid.ParseAndValidate
# against that same bundle as SPIRE stores it.
step_jwt_fedgate_to_spire_and_go_spiffe() {
    echo "== a JWT-SVID minted by fedgate validates in SPIRE and in go-spiffe"
    local token ok=0
    token=$("$fg" jwt mint --ca-dir "$b_dir/ca" --spiffe-id "$b_echo_id" --audience spire-e2e 2>"$work/jwt-mint.err") ||
        fail "fedgate jwt mint failed: $(cat "$work/jwt-mint.err")"
    timeout 30 "$spire_agent" api validate jwt -audience spire-e2e -svid "$token" -socketPath "$agent_sock" \
        >"$work/jwt-spire-validate.out" 2>&1 || ok=1
    grep -q "$b_echo_id" "$work/jwt-spire-validate.out" || ok=1
    srv bundle list -id spiffe://cluster-b.test -format spiffe >"$work/cluster-b.as-spire-holds.json" 2>&1 || ok=1
    local go_out=""
    if (cd "$repo/e2e/interop/jwt" && timeout 600 go build -o "$work/jwt-interop" .) >"$work/go-build-jwt.log" 2>&1; then
        printf '%s' "$token" >"$work/fedgate.jwt"
        go_out=$("$work/jwt-interop" validate -td cluster-b.test -bundle "$work/cluster-b.as-spire-holds.json" \
            -audience spire-e2e -token "$work/fedgate.jwt" 2>&1) || ok=1
    else
        ok=1
        go_out="go build of e2e/interop/jwt failed: $(tail -n 3 "$work/go-build-jwt.log")"
    fi
    check jwt-fedgate-to-spire-and-go-spiffe "$ok" \
        "spire-agent api validate jwt: $(tr '\n' ' ' <"$work/jwt-spire-validate.out" | head -c 200); go-spiffe: $go_out"
}

# ---------------------------------------------------------------------------------------------
# go-spiffe and py-spiffe against fedgate's own Workload API server (`fedgate agent`)
# ---------------------------------------------------------------------------------------------

# Each script runs `fedgate agent` with its own CA and checks fetch (X.509 SVID, bundles per
# trust domain, JWT-SVIDs), an update on rotation and PermissionDenied for an unmatched caller.
step_spiffe_libraries_against_fedgate_agent() {
    local name script
    for name in go-spiffe py-spiffe go-spiffe-jwt go-spiffe-bundlemap; do
        case $name in
        go-spiffe) script="$repo/e2e/interop/workload/run.sh" ;;
        py-spiffe) script="$repo/e2e/interop/workload/run-py.sh" ;;
        go-spiffe-jwt) script="$repo/e2e/interop/jwt/run.sh" ;;
        go-spiffe-bundlemap) script="$repo/e2e/interop/bundlemap/run.sh" ;;
        esac
        echo "== $name against fedgate ($script)"
        local ok=0
        FEDGATE="$fg" timeout 900 bash "$script" "$fg" >"$work/interop-$name.log" 2>&1 || ok=1
        grep -q "^SKIP" "$work/interop-$name.log" && ok=1
        check "$name-interop" "$ok" \
            "$(grep -cE '^PASS' "$work/interop-$name.log") PASS, $(grep -cE '^FAIL' "$work/interop-$name.log") FAIL lines (log: interop-$name.log)"
        [ "$ok" -eq 0 ] || tail -n 20 "$work/interop-$name.log"
    done
}

# ---------------------------------------------------------------------------------------------

run_start=$SECONDS
build_spire
build_fedgate
setup_fedgate_ca
start_spire_server
start_spire_agent
start_fedgate_gateway
step_federation_spire_fetches_fedgate_https_spiffe
step_rotation_fedgate_reaches_spire
step_federation_spire_fetches_fedgate_https_web
step_spire_workload_gets_fedgate_bundle
step_federation_fedgate_fetches_spire
step_spire_rotation_reaches_fedgate
step_fedgate_identity_from_spire_agent
step_jwt_spire_to_fedgate
step_jwt_fedgate_to_spire_and_go_spiffe
step_no_fetch_failures
step_spire_down_fedgate_keeps_trust
step_spiffe_libraries_against_fedgate_agent

echo "e2e/spire.sh: SPIRE $SPIRE_VERSION <-> fedgate, $((SECONDS - run_start))s"
echo "spire: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    show_logs
    exit 1
fi
