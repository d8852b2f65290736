#!/bin/sh
# Stores what the bootstrap Job's fedgate init containers wrote under $WORK as Secrets and
# ConfigMaps (see base/bootstrap.yaml). Idempotent: the trust domain part does nothing if the
# Secret fedgate-ca exists, the bridge issuer part nothing if the Secret fedgate-bridge-ca exists.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${WORK:?}" "${GATEWAY_NAMESPACE:?}" "${DEMO_NAMESPACE:?}"

# The bridge issuer's CA and SVID (base/bridge-ca.yaml). Stored before the trust domain's CA, so
# a cluster whose trust domain was bootstrapped earlier still gets its bridge issuer.
store_bridge() {
  if kubectl -n "$GATEWAY_NAMESPACE" get secret fedgate-bridge-ca >/dev/null 2>&1; then
    log "Secret $GATEWAY_NAMESPACE/fedgate-bridge-ca exists: the bridge issuer is already bootstrapped"
    return 0
  fi
  require_file "$WORK/bridge-ca/ca.pem"
  require_file "$WORK/bridge-ca/ca.key"
  require_file "$WORK/bridge-ca/bundle.json"
  require_file "$WORK/svid-bridge-endpoint/svid.pem"
  require_file "$WORK/svid-bridge-endpoint/svid.key"
  # This cluster's bridge authority, to hand to the peers; and the bundle the gateways trust
  # for the bridge trust domain, which starts as this authority alone (the operator adds the
  # peers' authorities, docs/operations.md). Never overwritten once it exists.
  apply_configmap "$GATEWAY_NAMESPACE" fedgate-bridge-bundle-local "bundle.json=$WORK/bridge-ca/bundle.json"
  if ! kubectl -n "$GATEWAY_NAMESPACE" get configmap fedgate-bridge-bundle >/dev/null 2>&1; then
    apply_configmap "$GATEWAY_NAMESPACE" fedgate-bridge-bundle "bundle.json=$WORK/bridge-ca/bundle.json"
  fi
  apply_secret "$GATEWAY_NAMESPACE" fedgate-bridge-ca-endpoint \
    "$WORK/svid-bridge-endpoint/svid.pem" "$WORK/svid-bridge-endpoint/svid.key"
  set --
  for f in "$WORK"/bridge-ca/*; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  apply_secret "$GATEWAY_NAMESPACE" fedgate-bridge-ca "$@"
}

store_bridge

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
