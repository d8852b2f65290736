# shellcheck shell=bash disable=SC2034
# fedgate-bridge-mux-handoff: the multiplexed bridge of 73 with `accept = "handoff"` on gateway B
# (the ingress). A's tunnels are few and long-lived, and every stream of a tunnel is served on the
# ingress worker that accepted the tunnel; with the shared socket the first idle worker takes each
# tunnel, so all of them can land on one worker (docs/benchmarks.md). The hand-off deals them to
# the workers in turn. Compare with 73 in the same run.
SCEN_DESC="fedgate, 2 gateways, mux, ingress deals tunnels to its workers in turn"
SCEN_REJECT_CERT=gw-b-cluster-b
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_bridge_start "$FEDGATE_BIN" "" "$FEDGATE_MUX_ROUTE" 'accept = "handoff"'; }
