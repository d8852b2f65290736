#!/bin/sh
# Stores what the bootstrap Job's fedgate init containers wrote under $WORK as Secrets and
# ConfigMaps (see base/bootstrap.yaml). Idempotent: does nothing if the CA Secret already exists.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${WORK:?}" "${GATEWAY_NAMESPACE:?}" "${DEMO_NAMESPACE:?}"

if kubectl -n "$GATEWAY_NAMESPACE" get secret fedgate-ca >/dev/null 2>&1; then
  log "Secret $GATEWAY_NAMESPACE/fedgate-ca exists: this trust domain is already bootstrapped; nothing changed"
  log "(to rotate the CA use deploy/kubernetes/ops/ca-rotate; to renew SVIDs ops/svid-reissue)"
  exit 0
fi

for f in ca/ca.pem ca/ca.key ca/bundle.json rogue-ca/bundle.json; do
  require_file "$WORK/$f"
done
for who in gateway echo client intruder rogue; do
  require_file "$WORK/svid-$who/svid.pem"
  require_file "$WORK/svid-$who/svid.key"
done

# Public material: the trust domain's bundle, for the gateway (it serves it to peers) and for
# workloads (local trust).
apply_configmap "$GATEWAY_NAMESPACE" fedgate-trust-bundle "$WORK/ca/bundle.json"
apply_configmap "$DEMO_NAMESPACE" fedgate-trust-bundle "$WORK/ca/bundle.json"
apply_configmap "$DEMO_NAMESPACE" fedgate-rogue-bundle "$WORK/rogue-ca/bundle.json"

# SVIDs: one Secret per identity, in the namespace of the pods that use it.
apply_secret "$GATEWAY_NAMESPACE" fedgate-svid-gateway "$WORK/svid-gateway/svid.pem" "$WORK/svid-gateway/svid.key"
for who in echo client intruder rogue; do
  apply_secret "$DEMO_NAMESPACE" "fedgate-svid-$who" "$WORK/svid-$who/svid.pem" "$WORK/svid-$who/svid.key"
done

# Last: the CA itself (every top-level file of the CA directory). Its existence marks the
# bootstrap as done.
set --
for f in "$WORK"/ca/*; do
  [ -f "$f" ] && set -- "$@" "$f"
done
apply_secret "$GATEWAY_NAMESPACE" fedgate-ca "$@"
log "bootstrap complete"
