# shellcheck shell=bash disable=SC2034
# _fedgate-common.sh — helpers shared by fedgate's scenario files (sourced by them; the
# leading "_" makes the harness skip this file as a scenario).
#
# Settings, the same as the peers' (bench/README.md "Fairness settings"):
#   * --workers $WORKERS (2) data-plane threads: the peers run 2 nginx workers / 2 haproxy
#     threads (TOKIO_WORKER_THREADS=1 sizes the mostly idle control-plane runtime: admin,
#     reload, federation);
#   * --log-level warn: no per-connection log lines (the peers run with access logs off);
#   * bridges: [bridge] session_resumption = false (no tickets, no session cache, no client
#     session store), so every bridged connection does a full TLS 1.3 handshake on every hop;
#   * the admin server listens on a port inside the scenario's reserved range.

FEDGATE_BIN="${GATEWAY_BIN:-}"

fedgate_enabled() { [ -n "$FEDGATE_BIN" ] && [ -x "$FEDGATE_BIN" ]; }

# fedgate_bundle TD PEM OUT [BIN] — a SPIFFE bundle (JWKS) for TD from a PEM root (the gateway
# takes bundles, not PEM roots), made by BIN (default $FEDGATE_BIN).
fedgate_bundle() {
  "${4:-$FEDGATE_BIN}" bundle create --trust-domain "$1" --pem "$2" --out "$3" >/dev/null \
    || { log "fedgate bundle create failed for $1 ($2)"; return 1; }
}

# fedgate_check CONF [BIN] — `fedgate config check` by BIN (default $FEDGATE_BIN), so a config
# error shows up as such
fedgate_check() {
  "${2:-$FEDGATE_BIN}" config check "$1" >&2 || { log "fedgate config check failed: $1"; return 1; }
}

# fedgate_spawn LOGNAME CONF — run `fedgate run` in the foreground (env execs, so the recorded
# PID is fedgate's own). FEDGATE_LOG_LEVEL (default warn) is for bench/soak.sh, which also
# wants the reload and drain lines; the harness's scenarios leave it unset.
fedgate_spawn() {
  bench_spawn "$1" env TOKIO_WORKER_THREADS=1 \
    "$FEDGATE_BIN" run --config "$2" --workers "${WORKERS:-2}" --log-level "${FEDGATE_LOG_LEVEL:-warn}"
}

# fedgate_prev_spawn LOGNAME CONF BIN — run another fedgate build (BIN): with `--workers
# $WORKERS` if BIN has the flag (so a worker sweep sweeps it too), otherwise the way builds
# before `--workers` existed were started (TOKIO_WORKER_THREADS=$WORKERS), so any build since
# the first benchmark runs unchanged.
fedgate_prev_spawn() {
  if "$3" run --help 2>/dev/null | grep -q -- '--workers'; then
    bench_spawn "$1" env TOKIO_WORKER_THREADS=1 \
      "$3" run --config "$2" --workers "${WORKERS:-2}" --log-level warn
  else
    bench_spawn "$1" env TOKIO_WORKER_THREADS="${WORKERS:-2}" \
      "$3" run --config "$2" --log-level warn
  fi
}

# fedgate_passthrough_config OUT [TOP_LEVEL [LISTENER_KEYS]] — the passthrough gateway config of the passthrough scenarios
# (same settings as passthrough-haproxy: unknown SNI refused, 5 s for a complete ClientHello).
# A passthrough gateway holds no key: no [identity].
# TOP_LEVEL (optional) is written as top-level keys, e.g. `accept = "reuseport"`; LISTENER_KEYS
# (optional) into the listener table, e.g. `splice = true`.
fedgate_passthrough_config() {
  cat >"$1" <<CFG
trust_domain = "cluster-b.test"
${2:-}

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 5))"

[[listeners]]
name = "passthrough"
kind = "passthrough"
listen = "127.0.0.1:$SCEN_PORT"
peek_timeout = "5s"
connect_timeout = "5s"
${3:-}

  [[listeners.routes]]
  name = "backend"
  sni = "$BACKEND_SNI"
  upstreams = ["127.0.0.1:$BACKEND_PORT"]
CFG
}

# fedgate_passthrough_start [TOP_LEVEL [LISTENER_KEYS]] — scen_start of the one-gateway
# passthrough scenarios (60, 64–66): the config of fedgate_passthrough_config (with TOP_LEVEL
# keys, and LISTENER_KEYS in the listener's table), checked, started.
fedgate_passthrough_start() {
  SCEN_PORT=$SCEN_PORT_BASE
  SCEN_SNI=$BACKEND_SNI
  SCEN_CA=$PKI/cluster-b-root.crt
  fedgate_passthrough_config "$SCEN_DIR/gateway.toml" "${1:-}" "${2:-}"
  fedgate_check "$SCEN_DIR/gateway.toml" || return 1
  fedgate_spawn fedgate "$SCEN_DIR/gateway.toml"
}

# fedgate_bridge_start [BIN [SUFFIX [EGRESS_ROUTE_EXTRA [INGRESS_TOP_LEVEL]]]] — the 2-hop bridge of the fedgate-bridge scenarios:
#   client -[mTLS cluster-a]-> A (bridge-egress) -[mTLS bridge.test + PROXY v2]-> B (bridge-ingress)
#          -[mTLS cluster-b]-> backend
# A listens on SCEN_PORT_BASE, B on SCEN_PORT_BASE+1, their admin servers on +5 and +6. BIN
# (default $FEDGATE_BIN) makes the bundles, checks the configs and runs both gateways; another
# build than $FEDGATE_BIN is started with fedgate_prev_spawn. SUFFIX is appended to the process
# (log) names gw-a and gw-b. EGRESS_ROUTE_EXTRA (third argument, optional) is appended to gateway
# A's route (e.g. `transport = "mux"` for 73); INGRESS_TOP_LEVEL (fourth, optional) is written as
# top-level keys of gateway B (e.g. `accept = "handoff"` for 74). Sets SCEN_PORT, SCEN_SNI and
# SCEN_CA.
# fedgate_egress_config FILE BRIDGE_TD BRIDGE_CERT BRIDGE_BUNDLE UPSTREAM_PORT PEER_ID [ROUTE_EXTRA]:
# writes the cluster-a bridge egress shared by the bridge scenarios (gateway A of
# fedgate-bridge, the one gateway of fedgate-bridge-1hop): it verifies the client with the
# cluster-a bundle, authorizes it on the route, and dials 127.0.0.1:UPSTREAM_PORT presenting
# $PKI/BRIDGE_CERT.{crt,key} (of BRIDGE_TD, verified upstream with BRIDGE_BUNDLE), pinned to
# PEER_ID. ROUTE_EXTRA is appended to the route table (e.g. `send_proxy_header = false`).
fedgate_egress_config() {
  local file=$1 bridge_td=$2 cert=$3 bundle=$4 upstream=$5 peer=$6 extra=${7:-}
  cat >"$file" <<CFG
trust_domain = "cluster-a.test"

[identity]
svid = "$PKI/gw-a-cluster-a.crt"
key = "$PKI/gw-a-cluster-a.key"
bundle = "$SCEN_DIR/cluster-a.json"

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 5))"

[bridge]
trust_domain = "$bridge_td"
svid = "$PKI/$cert.crt"
key = "$PKI/$cert.key"
bundle = "$bundle"
session_resumption = false

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:$SCEN_PORT"
peek_timeout = "5s"
connect_timeout = "5s"

  [[listeners.routes]]
  name = "out"
  sni = "gw-a.cluster-a.test"
  upstreams = ["127.0.0.1:$upstream"]
  peer_id = "$peer"
  allow = ["spiffe://cluster-a.test/ns/default/sa/client"]
$extra
CFG
}

# The route keys of gateway A in the multiplexed bridge scenarios (73, 74).
FEDGATE_MUX_ROUTE='  transport = "mux"
  mux_pool_size = 2
  mux_max_streams = 256'

fedgate_bridge_start() {
  local bin="${1:-$FEDGATE_BIN}" suffix="${2:-}" egress_extra="${3:-}" ingress_top="${4:-}"
  SCEN_PORT=$SCEN_PORT_BASE
  local port_b=$((SCEN_PORT_BASE + 1))
  SCEN_SNI=gw-a.cluster-a.test
  SCEN_CA=$PKI/cluster-a-root.crt
  fedgate_bundle cluster-a.test "$PKI/cluster-a-root.crt" "$SCEN_DIR/cluster-a.json" "$bin" || return 1
  fedgate_bundle cluster-b.test "$PKI/cluster-b-root.crt" "$SCEN_DIR/cluster-b.json" "$bin" || return 1
  fedgate_bundle bridge.test "$PKI/bridge-root.crt" "$SCEN_DIR/bridge.json" "$bin" || return 1
  cat >"$SCEN_DIR/gw-b.toml" <<CFG
trust_domain = "cluster-b.test"
$ingress_top

[identity]
svid = "$PKI/gw-b-cluster-b.crt"
key = "$PKI/gw-b-cluster-b.key"
bundle = "$SCEN_DIR/cluster-b.json"

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 6))"

[bridge]
trust_domain = "bridge.test"
svid = "$PKI/gw-b-bridge.crt"
key = "$PKI/gw-b-bridge.key"
bundle = "$SCEN_DIR/bridge.json"
session_resumption = false

[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:$port_b"
peek_timeout = "5s"
connect_timeout = "5s"

  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/a"
  may_speak_for = ["cluster-a.test"]

  [[listeners.routes]]
  name = "backend"
  sni = "gw-a.cluster-a.test"
  upstreams = ["127.0.0.1:$BACKEND_PORT"]
  server_id = ["spiffe://cluster-b.test/ns/default/sa/server"]
  allow = ["spiffe://cluster-a.test/ns/default/sa/client"]
CFG
  fedgate_egress_config "$SCEN_DIR/gw-a.toml" bridge.test gw-a-bridge "$SCEN_DIR/bridge.json" \
    "$port_b" spiffe://bridge.test/gateway/b "$egress_extra"
  fedgate_check "$SCEN_DIR/gw-b.toml" "$bin" || return 1
  fedgate_check "$SCEN_DIR/gw-a.toml" "$bin" || return 1
  if [ "$bin" = "$FEDGATE_BIN" ]; then
    fedgate_spawn "gw-b$suffix" "$SCEN_DIR/gw-b.toml"
  else
    fedgate_prev_spawn "gw-b$suffix" "$SCEN_DIR/gw-b.toml" "$bin"
  fi
  wait_port "$port_b" || return 1
  if [ "$bin" = "$FEDGATE_BIN" ]; then
    fedgate_spawn "gw-a$suffix" "$SCEN_DIR/gw-a.toml"
  else
    fedgate_prev_spawn "gw-a$suffix" "$SCEN_DIR/gw-a.toml" "$bin"
  fi
}

# fedgate_scale_start ROUTES PEERS — the passthrough gateway of the scale scenarios (62, 63):
# the fedgate-passthrough listener with ROUTES SNI routes (the benchmark's backend route plus
# ROUTES-1 others, `svc-N.scale.test`, to an unused port) and PEERS federation relationships,
# each its own trust domain `td-N.scale.test` with its own CA (`fedgate ca init`), all served
# by ONE endpoint process (bench/scale_endpoint.py) at https://127.0.0.1:SCEN_PORT_BASE+2/TD,
# https_spiffe, pinned to the bench backend's SPIFFE ID. Returns once `/readyz` says every peer
# has a bundle (at most 300 s), then logs the gateway's VmRSS (also to $SCEN_DIR/rss.txt). The
# endpoint is spawned with bench_spawn so that it is stopped with the scenario; it counts in the
# scenario's CPU, but is idle while measuring (peers poll it every 5 minutes).
fedgate_scale_start() {
  local routes=$1 peers=$2 i td
  local ep_port=$((SCEN_PORT_BASE + 2)) admin=$((SCEN_PORT_BASE + 5))
  SCEN_PORT=$SCEN_PORT_BASE
  SCEN_SNI=$BACKEND_SNI
  SCEN_CA=$PKI/cluster-b-root.crt
  fedgate_bundle cluster-b.test "$PKI/cluster-b-root.crt" "$SCEN_DIR/cluster-b.json" || return 1
  mkdir -p "$SCEN_DIR/bundles"
  for ((i = 1; i <= peers; i++)); do
    td=td-$i.scale.test
    "$FEDGATE_BIN" ca init --trust-domain "$td" --out "$SCEN_DIR/ca/$td" >/dev/null \
      || { log "fedgate ca init failed for $td"; return 1; }
    cp "$SCEN_DIR/ca/$td/bundle.json" "$SCEN_DIR/bundles/$td.json"
  done
  bench_spawn bundle-endpoint python3 "$(dirname "${BASH_SOURCE[0]}")/../scale_endpoint.py" \
    --listen-port "$ep_port" --dir "$SCEN_DIR/bundles" \
    --cert "$PKI/backend.crt" --key "$PKI/backend.key"
  wait_port "$ep_port" || return 1
  fedgate_passthrough_config "$SCEN_DIR/gateway.toml"
  {
    for ((i = 1; i < routes; i++)); do
      printf '\n  [[listeners.routes]]\n  name = "svc-%d"\n  sni = "svc-%d.scale.test"\n' "$i" "$i"
      printf '  upstreams = ["127.0.0.1:%d"]\n' "$((SCEN_PORT_BASE + 9))"
    done
    printf '\n[federation]\ndefault_refresh = "5m"\n'
    for ((i = 1; i <= peers; i++)); do
      printf '\n[[federation.peers]]\ntrust_domain = "td-%d.scale.test"\n' "$i"
      printf 'url = "https://127.0.0.1:%d/td-%d.scale.test"\nprofile = "https_spiffe"\n' "$ep_port" "$i"
      printf 'endpoint_id = "spiffe://cluster-b.test/ns/default/sa/server"\n'
      printf 'bootstrap_bundle = "%s"\n' "$SCEN_DIR/cluster-b.json"
    done
  } >>"$SCEN_DIR/gateway.toml"
  fedgate_check "$SCEN_DIR/gateway.toml" || return 1
  fedgate_spawn fedgate "$SCEN_DIR/gateway.toml"
  fedgate_wait_ready "$admin" 300 || return 1
  local pid=${SCEN_PIDS[${#SCEN_PIDS[@]}-1]} rss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  echo "routes=$routes peers=$peers vmrss_kib=$rss" | tee "$SCEN_DIR/rss.txt" >&2
}

# fedgate_wait_ready ADMIN_PORT SECONDS — poll GET /readyz on 127.0.0.1:ADMIN_PORT every 0.1 s
# until it answers 200 (bounded by SECONDS).
fedgate_wait_ready() {
  local port=$1 secs=$2 i status
  for ((i = 0; i < secs * 10; i++)); do
    status=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" \
      && printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 \
      && head -c 12 <&3) 2>/dev/null || true)
    [ "${status:9:3}" = 200 ] && return 0
    sleep 0.1
  done
  log "fedgate on admin port $port not ready within ${secs}s"
  return 1
}
