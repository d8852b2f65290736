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
  cat >"$SCEN_DIR/gateway.toml" <<CFG
trust_domain = "cluster-a.test"

[identity]
svid = "$PKI/gw-a-cluster-a.crt"
key = "$PKI/gw-a-cluster-a.key"
bundle = "$SCEN_DIR/cluster-a.json"

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 5))"

# The identity presented upstream, and the bundle the upstream is verified with.
[bridge]
trust_domain = "cluster-b.test"
svid = "$PKI/gw-b-cluster-b.crt"
key = "$PKI/gw-b-cluster-b.key"
bundle = "$SCEN_DIR/cluster-b.json"
session_resumption = false

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:$SCEN_PORT"
peek_timeout = "5s"
connect_timeout = "5s"

  [[listeners.routes]]
  name = "backend"
  sni = "gw-a.cluster-a.test"
  upstreams = ["127.0.0.1:$BACKEND_PORT"]
  peer_id = "spiffe://cluster-b.test/ns/default/sa/server"
  allow = ["spiffe://cluster-a.test/ns/default/sa/client"]
  send_proxy_header = false
CFG
  fedgate_check "$SCEN_DIR/gateway.toml" || return 1
  fedgate_spawn fedgate "$SCEN_DIR/gateway.toml"
}
