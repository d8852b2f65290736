# shellcheck shell=bash disable=SC2034
# fedgate-passthrough-reuseport: fedgate-passthrough (60) with `accept = "reuseport"`: one
# SO_REUSEPORT listening socket per data-plane worker instead of one socket every worker polls,
# so the kernel spreads new connections over the workers and a connection wakes one worker.
# Compare with fedgate-passthrough in the same run (docs/benchmarks.md, issue "accept balance").
SCEN_DESC="fedgate SNI passthrough, SO_REUSEPORT socket per worker"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_passthrough_start 'accept = "reuseport"'; }
