# shellcheck shell=bash disable=SC2034
# fedgate-bridge: two `fedgate run` processes, the same topology and PKI as bridge-nginx and
# bridge-haproxy:
#   client -[mTLS cluster-a]-> A (bridge-egress) -[mTLS bridge.test + PROXY v2]-> B (bridge-ingress)
#          -[mTLS cluster-b]-> backend
# A verifies the client with the cluster-a bundle (members of cluster-a only), authorizes it on
# the route, dials B with its bridge SVID (spiffe://bridge.test/gateway/a) and pins B's bridge
# ID; B verifies A with the bridge bundle, checks A may speak for cluster-a, reads the PROXY v2
# header (origin ID, destination), authorizes the origin and re-originates with its cluster-b
# SVID, pinning the backend's ID. Full handshakes on every hop (session_resumption = false).
# The destination is the SNI the client sends: the harness's client sends gw-a.cluster-a.test
# (it verifies A's certificate against that name), so that is the routed name on both gateways.
SCEN_DESC="fedgate, 2 gateways: mTLS(a) -> mTLS(bridge)+PROXYv2 -> mTLS(b)"
SCEN_REJECT_CERT=gw-b-cluster-b
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_bridge_start "$FEDGATE_BIN"; }
