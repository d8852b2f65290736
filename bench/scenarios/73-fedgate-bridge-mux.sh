# shellcheck shell=bash disable=SC2034
# fedgate-bridge-mux: the 2-hop bridge of fedgate-bridge (71) with transport = "mux" on
# gateway A's route:
#   client -[mTLS cluster-a]-> A (bridge-egress) =[tunnel: mTLS bridge.test, ALPN fedgate-mux/1,
#          HTTP/2 CONNECT stream per connection, origin in fedgate-origin-id]=> B (bridge-ingress)
#          -[mTLS cluster-b]-> backend
# Same PKI, routes and checks as 71; A keeps a pool of at most mux_pool_size long-lived tunnels to
# B (pinned to B's bridge ID, verified with the bridge bundle), so the A->B handshake is paid
# once per tunnel instead of once per connection. B checks every stream as it checks a relay
# connection (may_speak_for, route allow, server_id). Full handshakes on the other hops
# (session_resumption = false). Compare with 71 for the cost of the per-connection bridge hop.
SCEN_DESC="fedgate, 2 gateways, mux: mTLS(a) -> h2 stream on pooled mTLS(bridge) -> mTLS(b)"
SCEN_REJECT_CERT=gw-b-cluster-b
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_bridge_start "$FEDGATE_BIN" "" "$FEDGATE_MUX_ROUTE"; }
