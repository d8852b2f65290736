#!/usr/bin/env bash
# Two-cluster fedgate demo on kind: cluster A (trust domain cluster-a.test) calls cluster B
# (cluster-b.test) through the gateways, in federated (passthrough) and bridged mode.
#
#   e2e/kind.sh                 run everything, tear down at the end (also on failure)
#   KEEP_CLUSTERS=1 e2e/kind.sh keep the clusters afterwards (delete: kind delete cluster --name ...)
#   ARTIFACTS=DIR e2e/kind.sh   where logs go on failure (default: a new directory under /tmp)
#
# Needs docker (with a running daemon), kind >= 0.24 (its kindnetd enforces NetworkPolicy),
# kubectl, and jq; exits 2 with a message if one is missing. Steps and scenarios: e2e/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=fedgate:dev                     # the tag the kustomizations in deploy/kubernetes expect
CLUSTER_A=fedgate-a                   # names from kind-configs/*.yaml
CLUSTER_B=fedgate-b
CTX_A=kind-$CLUSTER_A
CTX_B=kind-$CLUSTER_B
TD_A=cluster-a.test
TD_B=cluster-b.test
KEEP_CLUSTERS=${KEEP_CLUSTERS:-0}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}  # e.g. kindest/node:v1.31.x; empty = kind's default
WAIT_SECONDS=${WAIT_SECONDS:-300}     # upper bound for every wait below

CLIENT_A="spiffe://$TD_A/ns/demo/sa/client"
GATEWAY_B="spiffe://$TD_B/ns/fedgate/sa/gateway"

WORK=""
ARTIFACTS=${ARTIFACTS:-}
CALLER_PID=""
created_clusters=()

log() { printf '[kind.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# --- prerequisites ---------------------------------------------------------------------------
missing=()
for tool in docker kind kubectl jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "e2e/kind.sh needs: docker, kind (>= 0.24), kubectl, jq. Missing: ${missing[*]}." >&2
  echo "Install them (and start the Docker daemon), or run the network-namespace e2e instead." >&2
  exit 2
fi
if ! docker info >/dev/null 2>&1; then
  echo "e2e/kind.sh: the Docker daemon is not reachable ('docker info' failed); start it and retry." >&2
  exit 2
fi

# --- cleanup: always runs --------------------------------------------------------------------
collect_logs() {
  ARTIFACTS=${ARTIFACTS:-$(mktemp -d /tmp/fedgate-kind-artifacts.XXXXXX)}
  mkdir -p "$ARTIFACTS"
  log "collecting logs into $ARTIFACTS"
  local ctx
  for ctx in "$CTX_A" "$CTX_B"; do
    kubectl --context "$ctx" get all,configmaps,secrets,networkpolicies,endpointslices -A -o wide \
      >"$ARTIFACTS/$ctx-objects.txt" 2>&1 || true
    kubectl --context "$ctx" get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/$ctx-events.txt" 2>&1 || true
    local ns pod
    for ns in fedgate demo; do
      for pod in $(kubectl --context "$ctx" -n "$ns" get pods -o name 2>/dev/null); do
        kubectl --context "$ctx" -n "$ns" logs "$pod" --all-containers --prefix --timestamps \
          >"$ARTIFACTS/$ctx-$ns-${pod#pod/}.log" 2>&1 || true
        kubectl --context "$ctx" -n "$ns" describe "$pod" >"$ARTIFACTS/$ctx-$ns-${pod#pod/}.describe" 2>&1 || true
      done
    done
    admin_get "$ctx" status >"$ARTIFACTS/$ctx-status.json" 2>&1 || true
    admin_get "$ctx" metrics >"$ARTIFACTS/$ctx-metrics.txt" 2>&1 || true
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CALLER_PID" ]; then kill "$CALLER_PID" 2>/dev/null; wait "$CALLER_PID" 2>/dev/null; fi
  if [ "$rc" -ne 0 ] && [ "${#created_clusters[@]}" -gt 0 ]; then collect_logs; fi
  if [ "$KEEP_CLUSTERS" = 1 ]; then
    log "KEEP_CLUSTERS=1: leaving clusters ${created_clusters[*]:-} running"
  else
    local c
    for c in "${created_clusters[@]}"; do
      log "deleting kind cluster $c"
      kind delete cluster --name "$c" >/dev/null 2>&1
    done
  fi
  [ -n "$WORK" ] && rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then log "PASS"; else log "FAILED (exit $rc)${ARTIFACTS:+; logs in $ARTIFACTS}"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d /tmp/fedgate-kind.XXXXXX)

# --- helpers ---------------------------------------------------------------------------------

# wait_for DESCRIPTION CMD... : re-run CMD every 2 s until it succeeds, at most $WAIT_SECONDS.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${WAIT_SECONDS}s waiting for: $what"
    fi
    sleep 2
  done
  log "ok: $what"
}

# admin_get CONTEXT PATH : GET the gateway admin endpoint through the API server's service proxy.
admin_get() {
  kubectl --context "$1" get --raw "/api/v1/namespaces/fedgate/services/http:fedgate-admin:9901/proxy/$2"
}

# call CONTEXT DEPLOYMENT PORT : one request from a demo pod's app container through its sidecar.
# Prints what the echo server answered (nothing if the call was refused somewhere).
call() {
  kubectl --context "$1" -n demo exec "deploy/$2" -c app -- \
    sh -c "nc -w 10 127.0.0.1 $3 </dev/null" 2>/dev/null || true
}

node_ip() {
  docker inspect -f '{{ (index .NetworkSettings.Networks "kind").IPAddress }}' "$1-control-plane"
}

# peer_view CONTEXT TD FIELD : a trust domain's entry in the bundle map a client pod's sidecar sees
# (SPIFFE bundle map: {"trust_domains": {"<td>": <bundle>}}).
#   FIELD=sequence -> spiffe_sequence; FIELD=roots -> number of x509-svid keys.
peer_view() {
  local filter
  case $3 in
    sequence) filter='.spiffe_sequence // 0' ;;
    roots) filter='[.keys[]? | select(.use == "x509-svid")] | length' ;;
  esac
  kubectl --context "$1" -n demo exec deploy/client -c app -- cat /var/run/fedgate/federated/bundles.json \
    | jq -r --arg td "$2" "(.trust_domains[\$td] // {}) | $filter"
}

peer_view_is()  { [ "$(peer_view "$1" "$2" "$3")" = "$4" ]; }
peer_view_gt()  { local v; v=$(peer_view "$1" "$2" "$3"); [ -n "$v" ] && [ "$v" -gt "$4" ]; }

# bundle_rotated CONTEXT TD MIN_SEQUENCE ROOTS : the client's view has a newer sequence and ROOTS roots.
bundle_rotated() { peer_view_gt "$1" "$2" sequence "$3" && peer_view_is "$1" "$2" roots "$4"; }

# status_peer CONTEXT TD JQ-CONDITION : some object in /status for TD satisfies the condition.
status_peer() {
  admin_get "$1" status \
    | jq -e --arg td "$2" "[.. | objects | select(.trust_domain? == \$td) | select($3)] | length > 0"
}

# echo_local_roots CONTEXT N : the echo sidecar's mounted local bundle has N roots.
echo_local_roots() {
  kubectl --context "$1" -n demo exec deploy/echo -c sidecar -- \
    fedgate bundle inspect /var/run/fedgate/trust-bundle/bundle.json --trust-domain "$TD_B" --json \
    | jq -e --argjson n "$2" '.x509_authorities == $n'
}

echo_svid() {
  kubectl --context "$1" -n demo exec deploy/echo -c sidecar -- \
    fedgate svid inspect /var/run/fedgate/identity/svid.pem --json
}

# echo_svid_changed CONTEXT BEFORE : the echo sidecar's mounted SVID differs from BEFORE.
echo_svid_changed() { local now; now=$(echo_svid "$1") && [ "$now" != "$2" ]; }

# run_job CONTEXT OPS-DIR JOB-NAME : (re)run one of deploy/kubernetes/ops/* and wait for it.
run_job() {
  kubectl --context "$1" -n fedgate delete job "$3" --ignore-not-found >/dev/null
  kubectl --context "$1" apply -k "$ROOT/deploy/kubernetes/ops/$2" >/dev/null
  kubectl --context "$1" -n fedgate wait --for=condition=complete "job/$3" --timeout="${WAIT_SECONDS}s" >/dev/null \
    || die "Job $3 did not complete in $1"
  log "ok: Job $3 completed in $1"
}

# write_overlay NAME OVERLAY SELF_IP PEER_IP : a throw-away kustomization on top of the checked-in
# overlay that fills in the node addresses only known once the clusters exist.
write_overlay() {
  local dir="$WORK/$1"
  mkdir -p "$dir"
  local rel
  # kustomize accepts only relative paths to other kustomizations.
  rel=$(realpath --relative-to="$dir" "$ROOT/deploy/kubernetes/overlays/$2" 2>/dev/null \
        || python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
             "$ROOT/deploy/kubernetes/overlays/$2" "$dir")
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
patches:
  - target: {kind: EndpointSlice, name: fedgate-peer-1}
    patch: |-
      - {op: replace, path: /endpoints/0/addresses/0, value: "$4"}
  - target: {kind: NetworkPolicy, name: gateway-from-peer}
    patch: |-
      - {op: replace, path: /spec/ingress/0/from/0/ipBlock/cidr, value: "$4/32"}
  - target: {kind: NetworkPolicy, name: gateway-to-peer}
    patch: |-
      - {op: replace, path: /spec/egress/0/to/0/ipBlock/cidr, value: "$4/32"}
  - target: {kind: NetworkPolicy, name: allow-apiserver}
    patch: |-
      - {op: replace, path: /spec/egress/0/to/0/ipBlock/cidr, value: "$3/32"}
  - target: {kind: NetworkPolicy, name: admin-from-nodes}
    patch: |-
      - {op: replace, path: /spec/ingress/0/from/0/ipBlock/cidr, value: "$3/32"}
  - target: {kind: NetworkPolicy, name: bridge-ca-admin-from-nodes}
    patch: |-
      - {op: replace, path: /spec/ingress/0/from/0/ipBlock/cidr, value: "$3/32"}
EOF
}

# put_configmap CONTEXT NAMESPACE NAME FROM-FILE-ARG... / put_secret: create or update.
put_configmap() {
  local ctx=$1 ns=$2 name=$3
  shift 3
  kubectl --context "$ctx" -n "$ns" create configmap "$name" "$@" --dry-run=client -o yaml \
    | kubectl --context "$ctx" -n "$ns" apply -f - >/dev/null
}
put_secret() {
  local ctx=$1 ns=$2 name=$3
  shift 3
  kubectl --context "$ctx" -n "$ns" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | kubectl --context "$ctx" -n "$ns" apply -f - >/dev/null
}

# --- 1. clusters and image -------------------------------------------------------------------
for c in a b; do
  name=fedgate-$c
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    die "a kind cluster named $name already exists; delete it (kind delete cluster --name $name) first"
  fi
  log "creating kind cluster $name"
  created_clusters+=("$name")
  kind create cluster --config "$ROOT/kind-configs/cluster-$c.yaml" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} >/dev/null
done

log "building $IMAGE"
docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT" >"$WORK/docker-build.log" 2>&1 \
  || { tail -n 50 "$WORK/docker-build.log" >&2; die "docker build failed"; }
for c in "$CLUSTER_A" "$CLUSTER_B"; do
  kind load docker-image "$IMAGE" --name "$c" >/dev/null
done

IP_A=$(node_ip "$CLUSTER_A")
IP_B=$(node_ip "$CLUSTER_B")
if [ -z "$IP_A" ] || [ -z "$IP_B" ]; then
  die "could not read the nodes' addresses on the kind Docker network"
fi
log "node addresses: $CLUSTER_A=$IP_A $CLUSTER_B=$IP_B"

# --- 2. deploy both clusters -----------------------------------------------------------------
# Each cluster's bootstrap Job also creates that cluster's bridge CA (bridge.test) for its
# `fedgate ca serve`; the gateways obtain their bridge SVIDs from it ([bridge.issuer]).
write_overlay overlay-a cluster-a "$IP_A" "$IP_B"
write_overlay overlay-b cluster-b "$IP_B" "$IP_A"
for c in a b; do
  ctx=kind-fedgate-$c
  log "applying overlay cluster-$c"
  kubectl --context "$ctx" apply -k "$WORK/overlay-$c" >/dev/null
done

for ctx in "$CTX_A" "$CTX_B"; do
  kubectl --context "$ctx" -n fedgate wait --for=condition=complete job/fedgate-bootstrap \
    --timeout="${WAIT_SECONDS}s" >/dev/null || die "bootstrap Job did not complete in $ctx"
  log "ok: trust domain bootstrapped in $ctx"
done

# --- 3. exchange bootstrap bundles -----------------------------------------------------------
# Out of band, once: each gateway gets the peer's current bundle to verify the peer's federation
# endpoint (https_spiffe) on first contact. Everything after that comes over federation.
kubectl --context "$CTX_A" -n fedgate get configmap fedgate-trust-bundle -o jsonpath='{.data.bundle\.json}' \
  >"$WORK/$TD_A.json"
kubectl --context "$CTX_B" -n fedgate get configmap fedgate-trust-bundle -o jsonpath='{.data.bundle\.json}' \
  >"$WORK/$TD_B.json"
put_configmap "$CTX_A" fedgate fedgate-peer-bootstrap --from-file="$TD_B.json=$WORK/$TD_B.json"
put_configmap "$CTX_B" fedgate fedgate-peer-bootstrap --from-file="$TD_A.json=$WORK/$TD_A.json"
# The bridge trust domain has one authority per cluster (each cluster's issuer); every gateway
# trusts both: the bundle is the union of the two clusters' fedgate-bridge-bundle-local keys.
for ctx in "$CTX_A" "$CTX_B"; do
  kubectl --context "$ctx" -n fedgate get configmap fedgate-bridge-bundle-local \
    -o jsonpath='{.data.bundle\.json}' >"$WORK/bridge-$ctx.json"
done
jq -s '.[0] + {keys: (.[0].keys + .[1].keys)}' "$WORK/bridge-$CTX_A.json" "$WORK/bridge-$CTX_B.json" \
  >"$WORK/bridge-bundle.json" || die "could not merge the clusters' bridge bundles"
for ctx in "$CTX_A" "$CTX_B"; do
  put_configmap "$ctx" fedgate fedgate-bridge-bundle --from-file=bundle.json="$WORK/bridge-bundle.json"
done

for ctx in "$CTX_A" "$CTX_B"; do
  kubectl --context "$ctx" -n fedgate rollout status deploy/fedgate-bridge-ca --timeout="${WAIT_SECONDS}s" >/dev/null \
    || die "bridge issuer (fedgate ca serve) not ready in $ctx"
  kubectl --context "$ctx" -n fedgate rollout status statefulset/fedgate-gateway --timeout="${WAIT_SECONDS}s" >/dev/null \
    || die "gateway not ready in $ctx"
  log "ok: gateway ready in $ctx"
  for d in echo client intruder rogue; do
    kubectl --context "$ctx" -n demo rollout status "deploy/$d" --timeout="${WAIT_SECONDS}s" >/dev/null \
      || die "demo deployment $d not ready in $ctx"
  done
  log "ok: demo workloads ready in $ctx"
done

# --- 4. scenarios ----------------------------------------------------------------------------
log "scenario: federation up (each gateway holds the peer's fetched bundle)"
wait_for "A's /status lists $TD_B with a successful fetch" \
  status_peer "$CTX_A" "$TD_B" '.last_success != null'
wait_for "A's client sidecar sees $TD_B's bundle" peer_view_gt "$CTX_A" "$TD_B" roots 0

log "scenario: federated (passthrough) call A -> B"
out=$(call "$CTX_A" client 7001)
# `fedgate demo echo` greets with `peer=<TLV 0xE0> origin=<TLV 0xE1 or ->`.
grep -qF "peer=$CLIENT_A origin=-" <<<"$out" \
  || die "federated call: echo in B did not report peer $CLIENT_A; got: ${out:-<nothing>}"
log "ok: B's echo saw $CLIENT_A end to end"

log "scenario: bridged call A -> B"
out=$(call "$CTX_A" client 7002)
grep -qF "peer=$GATEWAY_B origin=$CLIENT_A" <<<"$out" \
  || die "bridged call: echo in B did not report peer $GATEWAY_B and origin $CLIENT_A; got: ${out:-<nothing>}"
log "ok: B's echo saw origin $CLIENT_A relayed by $GATEWAY_B"

log "scenario: unauthorized workload denied (valid SVID, not on any allow list)"
for port in 7001 7002; do
  out=$(call "$CTX_A" intruder "$port")
  if grep -q "spiffe://" <<<"$out"; then die "intruder call on :$port was answered: $out"; fi
done
log "ok: intruder refused in both modes"

log "scenario: wrong trust domain denied (rogue.test, not federated)"
for port in 7001 7002; do
  out=$(call "$CTX_A" rogue "$port")
  if grep -q "spiffe://" <<<"$out"; then die "rogue call on :$port was answered: $out"; fi
done
log "ok: rogue.test caller refused in both modes"

log "scenario: no path between the clusters except the gateways"
if kubectl --context "$CTX_A" -n demo exec deploy/client -c app -- \
     sh -c "nc -w 5 $IP_B 30443 </dev/null" >/dev/null 2>&1; then
  die "a demo pod in A reached B's node $IP_B:30443 directly: NetworkPolicies are not enforced (kind >= 0.24 needed)"
fi
log "ok: demo pod in A cannot reach B's NodePorts directly"

log "scenario: CA rotation in B while A keeps calling (federated mode)"
: >"$WORK/calls"
(
  # Bounded caller: one call per second, at most 900, until the stop file appears.
  for _ in $(seq 1 900); do
    [ -e "$WORK/stop-calls" ] && break
    if call "$CTX_A" client 7001 | grep -qF "peer=$CLIENT_A"; then echo ok; else echo fail; fi >>"$WORK/calls"
    sleep 1
  done
) &
CALLER_PID=$!
seq0=$(peer_view "$CTX_A" "$TD_B" sequence)
run_job "$CTX_B" ca-rotate fedgate-ca-rotate
wait_for "A's client sidecar sees B's bundle with 2 roots (sequence > $seq0)" \
  bundle_rotated "$CTX_A" "$TD_B" "$seq0" 2
wait_for "B's echo sidecar trusts both roots locally" echo_local_roots "$CTX_B" 2
before=$(echo_svid "$CTX_B")
run_job "$CTX_B" svid-reissue fedgate-svid-reissue
wait_for "B's echo sidecar has its re-issued SVID" echo_svid_changed "$CTX_B" "$before"
seq1=$(peer_view "$CTX_A" "$TD_B" sequence)
run_job "$CTX_B" ca-retire fedgate-ca-retire
wait_for "A's client sidecar sees B's bundle with only the new root (sequence > $seq1)" \
  bundle_rotated "$CTX_A" "$TD_B" "$seq1" 1
out=$(call "$CTX_A" client 7001)
grep -qF "peer=$CLIENT_A" <<<"$out" || die "federated call after rotation failed; got: ${out:-<nothing>}"
touch "$WORK/stop-calls"
wait "$CALLER_PID" || true
CALLER_PID=""
ok=$(grep -c '^ok$' "$WORK/calls" || true)
failed=$(grep -c '^fail$' "$WORK/calls" || true)
log "calls during rotation: $ok ok, $failed failed"
[ "$ok" -gt 0 ] || die "no call succeeded during the rotation"
[ "$failed" -eq 0 ] || die "$failed call(s) failed during the rotation"

log "scenario: B's federation endpoint down -> A keeps the last-known-good bundle"
kubectl --context "$CTX_B" -n fedgate patch service fedgate-federation --type merge \
  -p '{"spec":{"selector":{"app.kubernetes.io/name":"fedgate-endpoint-down-for-e2e"}}}' >/dev/null
wait_for "A's /status reports a failed fetch for $TD_B and still holds its bundle" \
  status_peer "$CTX_A" "$TD_B" '.last_error != null and (.authorities // 1) > 0 and .time_until_trust_loss != null'
admin_get "$CTX_A" status | jq --arg td "$TD_B" '.. | objects | select(.trust_domain? == $td)' >&2 || true
admin_get "$CTX_A" readyz >/dev/null || die "A's gateway became unready although it holds a last-known-good bundle"
out=$(call "$CTX_A" client 7001)
grep -qF "peer=$CLIENT_A" <<<"$out" || die "federated call with B's endpoint down failed; got: ${out:-<nothing>}"
log "ok: last-known-good in force; calls still succeed"
kubectl --context "$CTX_B" -n fedgate patch service fedgate-federation --type merge \
  -p '{"spec":{"selector":{"app.kubernetes.io/name":"fedgate-gateway"}}}' >/dev/null
wait_for "A's /status shows $TD_B recovered (a new successful fetch clears last_error)" \
  status_peer "$CTX_A" "$TD_B" '.last_error == null and .last_success != null'

log "all scenarios passed"
