#!/bin/sh
# Runs next to the gateway: publishes the bundle map the gateway distributes ($SOURCE, a SPIFFE
# bundle map written atomically by fedgate) as ConfigMap $TARGET_NAMESPACE/$TARGET_CONFIGMAP,
# key bundles.json, whenever its content changes. Workload sidecars mount that ConfigMap and poll
# the file (the kubelet refreshes ConfigMap volumes within about a minute).
#
# Several gateway replicas run this loop; each writes only after its own copy changed, and a
# write that would lower any trust domain's spiffe_sequence below what the ConfigMap already has
# is skipped (a replica that has not caught up yet must not undo a rotation another published).
set -eu
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scripts/lib.sh

: "${SOURCE:?}" "${TARGET_NAMESPACE:?}" "${TARGET_CONFIGMAP:?}"
interval=${INTERVAL_SECONDS:-5}
last=""

# Prints the number of trust domains whose sequence in $1 (new map) is lower than in $2 (old map).
# Maps are SPIFFE bundle maps: {"trust_domains": {"<td>": <bundle with spiffe_sequence>}}.
regressions() {
  jq -n --argjson new "$1" --argjson old "$2" \
    '($old.trust_domains // {}) as $o
     | [($new.trust_domains // {}) | to_entries[]
        | select((($o[.key].spiffe_sequence) // 0) > ((.value.spiffe_sequence) // 0))] | length'
}

trap 'log "bundle-sync: stopping"; exit 0' TERM INT

while true; do
  if [ -s "$SOURCE" ]; then
    sum=$(sha256sum "$SOURCE" | cut -d' ' -f1)
    if [ "$sum" != "$last" ]; then
      new=$(cat "$SOURCE")
      old=$(kubectl -n "$TARGET_NAMESPACE" get configmap "$TARGET_CONFIGMAP" \
              -o jsonpath='{.data.bundles\.json}' 2>/dev/null || true)
      if [ -n "$old" ] && command -v jq >/dev/null 2>&1 \
         && [ "$(regressions "$new" "$old" 2>/dev/null || echo 0)" != "0" ]; then
        log "bundle-sync: local bundle map is older than $TARGET_NAMESPACE/$TARGET_CONFIGMAP for some trust domain; not overwriting"
        last=$sum
      elif kubectl -n "$TARGET_NAMESPACE" create configmap "$TARGET_CONFIGMAP" \
             --from-file=bundles.json="$SOURCE" --dry-run=client -o yaml \
           | kubectl -n "$TARGET_NAMESPACE" apply -f - >/dev/null; then
        log "bundle-sync: published $TARGET_NAMESPACE/$TARGET_CONFIGMAP (sha256 $sum)"
        last=$sum
      else
        log "bundle-sync: could not publish $TARGET_NAMESPACE/$TARGET_CONFIGMAP; retrying in ${interval}s"
      fi
    fi
  fi
  sleep "$interval" &
  wait $!
done
