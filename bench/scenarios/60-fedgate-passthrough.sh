# shellcheck shell=bash disable=SC2034
# fedgate-passthrough: `fedgate run` with one passthrough listener: peek the ClientHello,
# route on its SNI, splice raw TLS bytes (splice(2)); mTLS stays end to end.
# Same settings as passthrough-haproxy: unknown SNI refused (no default route), 5 s to send a
# complete ClientHello, 2 worker threads.
SCEN_DESC="fedgate SNI passthrough (splice)"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() {
  SCEN_PORT=$SCEN_PORT_BASE
  SCEN_SNI=$BACKEND_SNI
  SCEN_CA=$PKI/cluster-b-root.crt
  cat >"$SCEN_DIR/gateway.toml" <<CFG
# A passthrough gateway holds no key: no [identity].
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
  fedgate_check "$SCEN_DIR/gateway.toml" || return 1
  fedgate_spawn fedgate "$SCEN_DIR/gateway.toml"
}
