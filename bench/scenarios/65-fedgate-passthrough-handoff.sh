# shellcheck shell=bash disable=SC2034
# fedgate-passthrough-handoff: fedgate-passthrough (60) with `accept = "handoff"`: one thread
# sleeps in accept(2) on the listening socket and deals each connection to the next worker, so a
# connection wakes exactly one worker (plus the dealer). Compare with fedgate-passthrough and
# fedgate-passthrough-reuseport in the same run (docs/benchmarks.md, "accept balance").
SCEN_DESC="fedgate SNI passthrough, accept hand-off thread"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_passthrough_start 'accept = "handoff"'; }
