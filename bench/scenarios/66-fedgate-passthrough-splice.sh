# shellcheck shell=bash disable=SC2034
# fedgate-passthrough-splice: fedgate-passthrough (60) with `splice = true` on the listener: a
# direction that has moved 1 MiB and still fills its 16 KiB reads switches to splice(2)
# (socket -> pipe -> socket, no copy through userspace). Compare bulk rows and CPU per GB with
# fedgate-passthrough in the same run (docs/benchmarks.md, "splice or copy").
SCEN_DESC="fedgate SNI passthrough, adaptive splice after 1 MiB"
# shellcheck source=_fedgate-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_fedgate-common.sh"

scen_enabled() { fedgate_enabled; }

scen_start() { fedgate_passthrough_start '' 'splice = true'; }
