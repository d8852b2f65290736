#!/bin/sh
# After re-issuing SVIDs from the current CA (ops/svid-reissue): replaces the SVID Secrets. Pods
# see the new files when the kubelet refreshes their Secret volumes (about a minute); fedgate and
# the sidecars poll the files and switch new connections to the new SVID, while live connections
# keep theirs.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${WORK:?}" "${GATEWAY_NAMESPACE:?}" "${DEMO_NAMESPACE:?}"
for who in gateway echo client intruder; do
  require_file "$WORK/svid-$who/svid.pem"
  require_file "$WORK/svid-$who/svid.key"
done
apply_secret "$GATEWAY_NAMESPACE" fedgate-svid-gateway "$WORK/svid-gateway/svid.pem" "$WORK/svid-gateway/svid.key"
for who in echo client intruder; do
  apply_secret "$DEMO_NAMESPACE" "fedgate-svid-$who" "$WORK/svid-$who/svid.pem" "$WORK/svid-$who/svid.key"
done
log "SVIDs re-issued"
