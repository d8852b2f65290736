#!/bin/sh
# After `fedgate ca rotate [--retire-old]`: stores the updated CA directory (Secret fedgate-ca) and
# publishes its bundle (ConfigMap fedgate-trust-bundle in both namespaces). The gateway polls the
# mounted bundle file and serves it to peers with the new spiffe_sequence; peers pick it up within
# one refresh interval.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${WORK:?}" "${GATEWAY_NAMESPACE:?}" "${DEMO_NAMESPACE:?}"
require_file "$WORK/ca/bundle.json"

# Bundle first: peers must learn a new root before anything is signed by it (ops/svid-reissue).
apply_configmap "$GATEWAY_NAMESPACE" fedgate-trust-bundle "$WORK/ca/bundle.json"
apply_configmap "$DEMO_NAMESPACE" fedgate-trust-bundle "$WORK/ca/bundle.json"

set --
for f in "$WORK"/ca/*; do
  [ -f "$f" ] && set -- "$@" "$f"
done
apply_secret "$GATEWAY_NAMESPACE" fedgate-ca "$@"
log "CA update stored"
