# shellcheck shell=bash disable=SC2034
# fedgate-passthrough: `fedgate run` with one passthrough listener: peek the ClientHello,
# route on its SNI, relay the raw TLS bytes (copied through a 16 KiB buffer: `splice` is off
# by default, see docs/benchmarks.md); mTLS stays end to end.
# Same settings as passthrough-haproxy: unknown SNI refused (no default route), 5 s to send a
# complete ClientHello, 2 worker threads.
SCEN_DESC="fedgate SNI passthrough"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_passthrough_start ""; }
