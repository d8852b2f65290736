# shellcheck shell=bash disable=SC2034
# fedgate-bridge-prev: the fedgate-bridge scenario (2 gateways, mTLS(a) -> mTLS(bridge.test) +
# PROXY v2 -> mTLS(b)) with ANOTHER fedgate build, for same-run before/after comparisons of a
# change on the bridge path. Enabled only when FEDGATE_PREV_BIN names an executable, e.g.
#   git worktree add /tmp/prev <commit> && (cd /tmp/prev && cargo build --release)
#   FEDGATE_PREV_BIN=/tmp/prev/target/release/fedgate bench/run.sh \
#     --only bridge-haproxy,fedgate-bridge,fedgate-bridge-prev --ref bridge-haproxy
# That build makes the bundles, checks the configs and runs both gateways, started the way
# builds before `--workers` existed were (fedgate_prev_spawn in _fedgate-common.sh).
SCEN_DESC="fedgate, 2 gateways, previous build (\$FEDGATE_PREV_BIN)"
SCEN_REJECT_CERT=gw-b-cluster-b
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

FEDGATE_PREV_BIN="${FEDGATE_PREV_BIN:-}"

scen_enabled() { [ -n "$FEDGATE_PREV_BIN" ] && [ -x "$FEDGATE_PREV_BIN" ]; }

scen_start() { fedgate_bridge_start "$FEDGATE_PREV_BIN" -prev; }
