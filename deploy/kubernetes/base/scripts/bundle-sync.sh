#!/bin/sh
# Runs next to the gateway: publishes the bundle map the gateway distributes ($SOURCE, a SPIFFE
# bundle map written atomically by fedgate) as ConfigMap $TARGET_CONFIGMAP, key bundles.json, in
# every namespace matching the label selector $NAMESPACE_SELECTOR (e.g.
# fedgate.io/federation=enabled), whenever the map changes or a namespace starts matching.
# Workload sidecars mount that ConfigMap and poll the file (the kubelet refreshes ConfigMap
# volumes within about a minute).
#
# Several gateway replicas run this loop; each writes only after its own copy changed, and a
# write that would lower any trust domain's spiffe_sequence below what the ConfigMap already has
# is skipped (a replica that has not caught up yet must not undo a rotation another published).
#
# API access it needs (base/gateway-rbac.yaml): list namespaces; get/patch/update the ConfigMap
# $TARGET_CONFIGMAP; create ConfigMaps. Nothing else.
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${SOURCE:?}" "${NAMESPACE_SELECTOR:?}" "${TARGET_CONFIGMAP:?}"
interval=${INTERVAL_SECONDS:-5}
# " <namespace>=<sha256> " for every namespace published to, with the map's checksum then.
published=" "

# Prints the number of trust domains whose sequence in $1 (new map) is lower than in $2 (old map).
# Maps are SPIFFE bundle maps: {"trust_domains": {"<td>": <bundle with spiffe_sequence>}}.
regressions() {
  jq -n --argjson new "$1" --argjson old "$2" \
    '($old.trust_domains // {}) as $o
     | [($new.trust_domains // {}) | to_entries[]
        | select((($o[.key].spiffe_sequence) // 0) > ((.value.spiffe_sequence) // 0))] | length'
}

# mark NAMESPACE SUM : record that NAMESPACE holds the map with checksum SUM.
mark() {
  rest=""
  for entry in $published; do
    case $entry in
      "$1="*) ;;
      *) rest="$rest $entry" ;;
    esac
  done
  published="$rest $1=$2 "
}

# publish NAMESPACE SUM : write $SOURCE into NAMESPACE unless that would regress a sequence.
publish() {
  ns=$1
  sum=$2
  new=$(cat "$SOURCE")
  old=$(kubectl -n "$ns" get configmap "$TARGET_CONFIGMAP" \
          -o jsonpath='{.data.bundles\.json}' 2>/dev/null || true)
  if [ -n "$old" ] && command -v jq >/dev/null 2>&1 \
     && [ "$(regressions "$new" "$old" 2>/dev/null || echo 0)" != "0" ]; then
    log "bundle-sync: local bundle map is older than $ns/$TARGET_CONFIGMAP for some trust domain; not overwriting"
    mark "$ns" "$sum"
  elif kubectl -n "$ns" create configmap "$TARGET_CONFIGMAP" \
         --from-file=bundles.json="$SOURCE" --dry-run=client -o yaml \
       | kubectl -n "$ns" apply -f - >/dev/null; then
    log "bundle-sync: published $ns/$TARGET_CONFIGMAP (sha256 $sum)"
    mark "$ns" "$sum"
  else
    log "bundle-sync: could not publish $ns/$TARGET_CONFIGMAP; retrying in ${interval}s"
  fi
}

trap 'log "bundle-sync: stopping"; exit 0' TERM INT

log "bundle-sync: publishing $TARGET_CONFIGMAP to namespaces matching '$NAMESPACE_SELECTOR'"
while true; do
  if [ -s "$SOURCE" ]; then
    sum=$(sha256sum "$SOURCE" | cut -d' ' -f1)
    if namespaces=$(kubectl get namespaces -l "$NAMESPACE_SELECTOR" \
                      -o jsonpath='{.items[*].metadata.name}'); then
      [ -n "$namespaces" ] || log "bundle-sync: no namespace matches '$NAMESPACE_SELECTOR'"
      for ns in $namespaces; do
        case $published in
          *" $ns=$sum "*) ;;
          *) publish "$ns" "$sum" ;;
        esac
      done
    else
      log "bundle-sync: cannot list namespaces matching '$NAMESPACE_SELECTOR'; retrying in ${interval}s"
    fi
  fi
  sleep "$interval" &
  wait $!
done
