# shellcheck shell=bash disable=SC2034
# fedgate-passthrough-scale-large: fedgate-passthrough with 10,000 routes, 1,000 federation peers (all peers served by one local
# bundle endpoint process; see fedgate_scale_start in _fedgate-common.sh). 62 and 63 are the
# two ends of the scale comparison in docs/benchmarks.md: connection rate and p99 of the large
# table against the small one, and the gateway's RSS once every peer has a bundle (logged).
SCEN_DESC="fedgate SNI passthrough, 10,000 routes, 1,000 federation peers"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_scale_start 10000 1000; }
