# shellcheck shell=bash disable=SC2034
# fedgate-bridge-1hop: ONE `fedgate run` bridging the two trust domains, the topology of
# bridge-nginx-1hop and bridge-haproxy-1hop:
#   client -[mTLS cluster-a]-> gateway (bridge-egress) -[mTLS cluster-b]-> backend
# It is an egress whose "bridge" identity is the cluster-b gateway SVID (gw-b-cluster-b, the
# same client certificate the peers present to the backend) and whose route goes straight to
# the backend: the upstream is verified with the cluster-b bundle and pinned to the backend's
# SPIFFE ID, and `send_proxy_header = false` because the backend is not a fedgate ingress and
# does not read PROXY v2. Everything else (caller verification with the cluster-a bundle only,
# route + allow-list authorization, full handshakes) is the egress half of fedgate-bridge, so
# 1-hop vs 2-hop gives the cost of one extra gateway hop.
SCEN_DESC="fedgate, 1 gateway: mTLS(a) -> mTLS(b)"
SCEN_REJECT_CERT=gw-b-cluster-b
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() {
  SCEN_PORT=$SCEN_PORT_BASE
  SCEN_SNI=gw-a.cluster-a.test
  SCEN_CA=$PKI/cluster-a-root.crt
  fedgate_bundle cluster-a.test "$PKI/cluster-a-root.crt" "$SCEN_DIR/cluster-a.json" || return 1
  fedgate_bundle cluster-b.test "$PKI/cluster-b-root.crt" "$SCEN_DIR/cluster-b.json" || return 1
  # The "bridge" identity is cluster-b's gateway SVID; the upstream is the backend itself.
  fedgate_egress_config "$SCEN_DIR/gateway.toml" cluster-b.test gw-b-cluster-b "$SCEN_DIR/cluster-b.json" \
    "$BACKEND_PORT" spiffe://cluster-b.test/ns/default/sa/server '  send_proxy_header = false'
  fedgate_check "$SCEN_DIR/gateway.toml" || return 1
  fedgate_spawn fedgate "$SCEN_DIR/gateway.toml"
}
