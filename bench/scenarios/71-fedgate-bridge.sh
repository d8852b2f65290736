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

scen_start() {
  SCEN_PORT=$SCEN_PORT_BASE
  local port_b=$((SCEN_PORT_BASE + 1))
  SCEN_SNI=gw-a.cluster-a.test
  SCEN_CA=$PKI/cluster-a-root.crt
  fedgate_bundle cluster-a.test "$PKI/cluster-a-root.crt" "$SCEN_DIR/cluster-a.json" || return 1
  fedgate_bundle cluster-b.test "$PKI/cluster-b-root.crt" "$SCEN_DIR/cluster-b.json" || return 1
  fedgate_bundle bridge.test "$PKI/bridge-root.crt" "$SCEN_DIR/bridge.json" || return 1
  cat >"$SCEN_DIR/gw-b.toml" <<CFG
trust_domain = "cluster-b.test"

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
  cat >"$SCEN_DIR/gw-a.toml" <<CFG
trust_domain = "cluster-a.test"

[identity]
svid = "$PKI/gw-a-cluster-a.crt"
key = "$PKI/gw-a-cluster-a.key"
bundle = "$SCEN_DIR/cluster-a.json"

[admin]
listen = "127.0.0.1:$((SCEN_PORT_BASE + 5))"

[bridge]
trust_domain = "bridge.test"
svid = "$PKI/gw-a-bridge.crt"
key = "$PKI/gw-a-bridge.key"
bundle = "$SCEN_DIR/bridge.json"
session_resumption = false

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:$SCEN_PORT"
peek_timeout = "5s"
connect_timeout = "5s"

  [[listeners.routes]]
  name = "to-gw-b"
  sni = "gw-a.cluster-a.test"
  upstreams = ["127.0.0.1:$port_b"]
  peer_id = "spiffe://bridge.test/gateway/b"
  allow = ["spiffe://cluster-a.test/ns/default/sa/client"]
CFG
  fedgate_check "$SCEN_DIR/gw-b.toml" || return 1
  fedgate_check "$SCEN_DIR/gw-a.toml" || return 1
  fedgate_spawn gw-b "$SCEN_DIR/gw-b.toml"
  wait_port "$port_b" || return 1
  fedgate_spawn gw-a "$SCEN_DIR/gw-a.toml"
}
