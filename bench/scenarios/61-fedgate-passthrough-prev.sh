# shellcheck shell=bash disable=SC2034
# fedgate-passthrough-prev: the fedgate-passthrough scenario with ANOTHER fedgate build, for
# same-run before/after comparisons of a change. Enabled only when FEDGATE_PREV_BIN names an
# executable, e.g.
#   git worktree add /tmp/prev <commit> && (cd /tmp/prev && cargo build --release)
#   FEDGATE_PREV_BIN=/tmp/prev/target/release/fedgate bench/run.sh \
#     --only passthrough-haproxy,fedgate-passthrough,fedgate-passthrough-prev --ref passthrough-haproxy
# The older build is started the way builds before `--workers` existed were:
# TOKIO_WORKER_THREADS=$WORKERS and no --workers flag, so any build since the first
# benchmark runs unchanged.
SCEN_DESC="fedgate SNI passthrough, previous build (\$FEDGATE_PREV_BIN)"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

FEDGATE_PREV_BIN="${FEDGATE_PREV_BIN:-}"

scen_enabled() { [ -n "$FEDGATE_PREV_BIN" ] && [ -x "$FEDGATE_PREV_BIN" ]; }

scen_start() {
  SCEN_PORT=$SCEN_PORT_BASE
  SCEN_SNI=$BACKEND_SNI
  SCEN_CA=$PKI/cluster-b-root.crt
  fedgate_passthrough_config "$SCEN_DIR/gateway.toml"
  "$FEDGATE_PREV_BIN" config check "$SCEN_DIR/gateway.toml" >&2 \
    || { log "fedgate (previous build) config check failed"; return 1; }
  fedgate_prev_spawn fedgate-prev "$SCEN_DIR/gateway.toml" "$FEDGATE_PREV_BIN"
}
