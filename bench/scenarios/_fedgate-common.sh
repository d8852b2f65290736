# shellcheck shell=bash disable=SC2034
# _fedgate-common.sh — helpers shared by fedgate's scenario files (sourced by them; the
# leading "_" makes the harness skip this file as a scenario).
#
# Settings, the same as the peers' (../shared/bench/README.md "Fairness settings"):
#   * --workers $WORKERS (2) data-plane threads: the peers run 2 nginx workers / 2 haproxy
#     threads (TOKIO_WORKER_THREADS=1 sizes the mostly idle control-plane runtime: admin,
#     reload, federation);
#   * --log-level warn: no per-connection log lines (the peers run with access logs off);
#   * bridges: [bridge] session_resumption = false (no tickets, no session cache, no client
#     session store), so every bridged connection does a full TLS 1.3 handshake on every hop;
#   * the admin server listens on a port inside the scenario's reserved range.

FEDGATE_BIN="${GATEWAY_BIN:-}"

fedgate_enabled() { [ -n "$FEDGATE_BIN" ] && [ -x "$FEDGATE_BIN" ]; }

# fedgate_bundle TD PEM OUT — a SPIFFE bundle (JWKS) for TD from a PEM root (the gateway takes
# bundles, not PEM roots).
fedgate_bundle() {
  "$FEDGATE_BIN" bundle create --trust-domain "$1" --pem "$2" --out "$3" >/dev/null \
    || { log "fedgate bundle create failed for $1 ($2)"; return 1; }
}

# fedgate_check CONF — `fedgate config check`, so a config error shows up as such
fedgate_check() {
  "$FEDGATE_BIN" config check "$1" >&2 || { log "fedgate config check failed: $1"; return 1; }
}

# fedgate_spawn LOGNAME CONF — run `fedgate run` in the foreground (env execs, so the recorded
# PID is fedgate's own). FEDGATE_LOG_LEVEL (default warn) is for bench/soak.sh, which also
# wants the reload and drain lines; the harness's scenarios leave it unset.
fedgate_spawn() {
  bench_spawn "$1" env TOKIO_WORKER_THREADS=1 \
    "$FEDGATE_BIN" run --config "$2" --workers "${WORKERS:-2}" --log-level "${FEDGATE_LOG_LEVEL:-warn}"
}

# fedgate_passthrough_config OUT — the passthrough gateway config of the passthrough scenarios
# (same settings as passthrough-haproxy: unknown SNI refused, 5 s for a complete ClientHello).
# A passthrough gateway holds no key: no [identity].
fedgate_passthrough_config() {
  cat >"$1" <<CFG
trust_domain = "cluster-b.test"

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 5))"

[[listeners]]
name = "passthrough"
kind = "passthrough"
listen = "127.0.0.1:$SCEN_PORT"
peek_timeout = "5s"
connect_timeout = "5s"

  [[listeners.routes]]
  name = "backend"
  sni = "$BACKEND_SNI"
  upstreams = ["127.0.0.1:$BACKEND_PORT"]
CFG
}
