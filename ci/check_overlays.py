#!/usr/bin/env python3
"""Deployment properties of rendered overlays (run by ci/validate-manifests.sh).

Usage: check_overlays.py [--fedgate BIN] [--expose OVERLAY_NAME] RENDERED.yaml...

Each RENDERED.yaml is the output of `kubectl kustomize <overlay>`. For every overlay it checks:

  * the gateway is a StatefulSet (2 replicas) whose volumeClaimTemplate is mounted by the
    gateway container at a path that holds gateway.toml's [federation] state_dir (the
    last-known-good store) and [bridge.issuer] out_dir; no emptyDir stands in for it; a headless
    Service governs it; the PodDisruptionBudget and every gateway Service select its pods;
  * `fedgate ca serve` runs as a Deployment with its config (ca-serve.toml) in a ConfigMap and
    its CA from the Secret the bootstrap Job writes; gateway.toml's bridge SVID source is
    [bridge.issuer] (no svid/key files) and its URL names the issuer's Service and port; the
    issuer's policy maps the gateway's local ID to the bridge ID the gateway asks for;
  * bundle-sync selects namespaces by label (NAMESPACE_SELECTOR), at least one namespace carries
    the label, and its RBAC is exactly: list namespaces; get/patch/update the one ConfigMap name;
    create ConfigMaps;
  * no [[federation.peers]] entry is `required = true` (a required peer that cannot be reached
    keeps the gateway unready and blocks a rollout; the demo peers are all optional);
  * with --fedgate BIN: `BIN config check gateway.toml` passes for every gateway.toml.

For the overlays named with --expose (repeatable), additionally: fedgate-federation is a
`type: LoadBalancer` Service and the peer federation endpoint URLs in gateway.toml are DNS names.
"""

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
import tomllib
from urllib.parse import urlparse

import yaml

GATEWAY = "fedgate-gateway"
ISSUER = "fedgate-bridge-ca"
NAMESPACE = "fedgate"
SYNC_CM = "fedgate-federated-bundles"
GATEWAY_SA = f"system:serviceaccount:{NAMESPACE}:{GATEWAY}"

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def objects(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find(objs, kind, name=None, ns=None):
    """Objects of `kind`; `name` matches exactly or as a kustomize-hashed prefix (name-<hash>)."""
    out = []
    for o in objs:
        md = o.get("metadata") or {}
        n = md.get("name", "")
        if o.get("kind") != kind:
            continue
        if name is not None and n != name and not n.startswith(name + "-"):
            continue
        if ns is not None and md.get("namespace") != ns:
            continue
        out.append(o)
    return out


def one(where, objs, kind, name, ns=NAMESPACE):
    found = [o for o in find(objs, kind, name, ns) if o["metadata"]["name"] == name]
    if len(found) != 1:
        err(where, f"expected one {kind} {ns}/{name}, found {len(found)}")
        return None
    return found[0]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def volume_source(pod_spec, name):
    for v in pod_spec.get("volumes") or []:
        if v.get("name") == name:
            return v
    return None


def configmap_file(where, objs, volume, key):
    """The text of `key` in the ConfigMap a pod volume mounts (names may carry a hash)."""
    cm_name = ((volume or {}).get("configMap") or {}).get("name")
    if not cm_name:
        err(where, f"volume {volume and volume.get('name')!r} is not a ConfigMap volume")
        return None
    for cm in find(objs, "ConfigMap", ns=NAMESPACE):
        if cm["metadata"]["name"] == cm_name:
            text = (cm.get("data") or {}).get(key)
            if text is None:
                err(where, f"ConfigMap {cm_name} has no key {key}")
            return text
    err(where, f"ConfigMap {cm_name} (mounted by volume {volume.get('name')!r}) is not in the overlay")
    return None


def under(path, mount):
    mount = mount.rstrip("/")
    return path == mount or path.startswith(mount + "/")


def container(where, pod_spec, name):
    for c in pod_spec.get("containers") or []:
        if c.get("name") == name:
            return c
    err(where, f"no container {name!r}")
    return None


def config_path(args, flag):
    for i, a in enumerate(args or []):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def mount_of(c, path):
    """(volume name, mountPath) of the mount in container `c` that holds `path` (deepest)."""
    best = None
    for m in c.get("volumeMounts") or []:
        if under(path, m["mountPath"]) and (best is None or len(m["mountPath"]) > len(best[1])):
            best = (m["name"], m["mountPath"])
    return best


def check_gateway(where, objs):
    """The StatefulSet and its storage; returns (gateway.toml text, parsed) or (None, None)."""
    if find(objs, "Deployment", GATEWAY, NAMESPACE):
        err(where, f"Deployment {GATEWAY} present: the gateway must be a StatefulSet")
    sts = one(where, objs, "StatefulSet", GATEWAY)
    if sts is None:
        return None, None
    spec = sts["spec"]
    if spec.get("replicas") != 2:
        err(where, f"StatefulSet {GATEWAY} replicas {spec.get('replicas')!r} != 2")
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels") or {}
    if not selects(spec["selector"].get("matchLabels"), labels):
        err(where, "StatefulSet selector does not match its pod labels")
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates") or []}
    if not claims:
        err(where, f"StatefulSet {GATEWAY} has no volumeClaimTemplates")
    for name, t in claims.items():
        if "ReadWriteOnce" not in (t["spec"].get("accessModes") or []):
            err(where, f"volumeClaimTemplate {name} should be ReadWriteOnce (one claim per replica)")
        if volume_source(pod, name) is not None:
            err(where, f"pod volume {name!r} shadows the volumeClaimTemplate of the same name")

    # Headless governing Service, selecting the pods.
    svc_name = spec.get("serviceName")
    headless = one(where, objs, "Service", svc_name or "<missing serviceName>")
    if headless is not None:
        if headless["spec"].get("clusterIP") != "None":
            err(where, f"Service {svc_name} (the StatefulSet's serviceName) must be headless (clusterIP: None)")
    # Every Service and PDB aimed at the gateway selects its pods.
    for svc in find(objs, "Service", ns=NAMESPACE):
        sel = svc["spec"].get("selector") or {}
        if sel.get("app.kubernetes.io/name") == GATEWAY and not selects(sel, labels):
            err(where, f"Service {svc['metadata']['name']} selector {sel} does not match the gateway pods")
    pdbs = [p for p in find(objs, "PodDisruptionBudget", ns=NAMESPACE)
            if selects(p["spec"]["selector"].get("matchLabels"), labels)]
    if not pdbs:
        err(where, "no PodDisruptionBudget selects the gateway pods")
    for sc in (pod.get("securityContext") or {},):
        if not sc.get("runAsNonRoot") or (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            err(where, "gateway pod securityContext must be restricted (runAsNonRoot, RuntimeDefault seccomp)")
        if "fsGroup" not in sc:
            err(where, "gateway pod needs an fsGroup so the non-root user can write the claim")

    gw = container(where, pod, "gateway")
    if gw is None:
        return None, None
    if not gw.get("readinessProbe") or not gw.get("livenessProbe"):
        err(where, "gateway container needs liveness and readiness probes")
    cfg_path = config_path(gw.get("args"), "--config")
    if not cfg_path:
        err(where, "gateway container has no --config argument")
        return None, None
    mount = mount_of(gw, cfg_path)
    if mount is None:
        err(where, f"{cfg_path} is on no volume of the gateway container")
        return None, None
    text = configmap_file(where, objs, volume_source(pod, mount[0]), os.path.relpath(cfg_path, mount[1]))
    if text is None:
        return None, None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(where, f"gateway.toml is not valid TOML: {e}")
        return None, None

    # The last-known-good store and the saved bridge SVID are on the claim.
    persisted = [("[federation] state_dir", (doc.get("federation") or {}).get("state_dir")),
                 ("[bridge.issuer] out_dir", ((doc.get("bridge") or {}).get("issuer") or {}).get("out_dir"))]
    for what, path in persisted:
        if not path:
            err(where, f"gateway.toml has no {what}")
            continue
        m = mount_of(gw, path)
        if m is None:
            err(where, f"gateway.toml {what} {path} is on no volume of the gateway container")
        elif m[0] not in claims:
            src = volume_source(pod, m[0]) or {}
            kind = next((k for k in src if k != "name"), "unknown")
            err(where, f"gateway.toml {what} {path} is on volume {m[0]!r} ({kind}), "
                       f"not on a volumeClaimTemplate ({sorted(claims)})")
    return text, doc


def check_issuer(where, objs, doc):
    dep = one(where, objs, "Deployment", ISSUER)
    svc = one(where, objs, "Service", ISSUER)
    if dep is None or doc is None:
        return
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    c = container(where, pod, "ca-serve")
    if c is None:
        return
    args = c.get("args") or []
    if args[:2] != ["ca", "serve"]:
        err(where, f"{ISSUER} container runs {args[:2]}, not `ca serve`")
    cfg_path = config_path(args, "--config")
    mount = mount_of(c, cfg_path or "/")
    ca_serve = None
    if not cfg_path or mount is None:
        err(where, f"{ISSUER}: --config is missing or not on a volume")
    else:
        text = configmap_file(where, objs, volume_source(pod, mount[0]), os.path.relpath(cfg_path, mount[1]))
        if text is not None:
            try:
                ca_serve = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                err(where, f"ca-serve.toml is not valid TOML: {e}")
    if ca_serve is not None:
        ca_dir = ca_serve.get("ca_dir", "")
        m = mount_of(c, ca_dir)
        secret = ((volume_source(pod, m[0]) or {}).get("secret") or {}).get("secretName") if m else None
        if secret != "fedgate-bridge-ca":
            err(where, f"ca-serve.toml ca_dir {ca_dir!r} is not the Secret fedgate-bridge-ca")
        boot = one(where, objs, "Job", "fedgate-bootstrap")
        if boot is not None and "fedgate-bridge-ca" not in str(boot):
            pass  # the Secret name is in the store script, checked below
        scripts = [cm for cm in find(objs, "ConfigMap", "fedgate-scripts", NAMESPACE)]
        if not any("fedgate-bridge-ca" in (cm.get("data") or {}).get("bootstrap-store.sh", "") for cm in scripts):
            err(where, "the bootstrap Job's store script does not create the Secret fedgate-bridge-ca")

    bridge = doc.get("bridge") or {}
    issuer = bridge.get("issuer")
    if "svid" in bridge or "key" in bridge:
        err(where, "gateway.toml [bridge] uses svid/key files; bridge SVIDs must come from [bridge.issuer]")
    if not issuer:
        err(where, "gateway.toml has no [bridge.issuer] (the bridge SVID source)")
        return
    url = urlparse(issuer.get("url", ""))
    host = url.hostname or ""
    if not (host == ISSUER or host.startswith(f"{ISSUER}.{NAMESPACE}.svc")):
        err(where, f"[bridge.issuer] url {issuer.get('url')!r} does not name the Service {NAMESPACE}/{ISSUER}")
    if svc is not None:
        if not selects(svc["spec"].get("selector"), labels):
            err(where, f"Service {ISSUER} does not select the issuer's pods")
        ports = {p["port"]: p for p in svc["spec"].get("ports") or []}
        if url.port not in ports:
            err(where, f"[bridge.issuer] url port {url.port} is not a port of Service {ISSUER} ({sorted(ports)})")
        elif ca_serve is not None:
            listen_port = int(str(ca_serve.get("listen", ":0")).rsplit(":", 1)[1])
            target = ports[url.port].get("targetPort")
            named = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            target = named.get(target, target)
            if target != listen_port:
                err(where, f"Service {ISSUER} port {url.port} reaches {target}, but ca-serve.toml listens on {listen_port}")
    if ca_serve is not None:
        td = doc.get("trust_domain")
        local_id = f"spiffe://{td}/ns/{NAMESPACE}/sa/{GATEWAY.removeprefix('fedgate-')}"
        policy = {p.get("local"): p.get("bridge") for p in ca_serve.get("policy") or []}
        if policy.get(local_id) != issuer.get("id"):
            err(where, f"ca-serve.toml maps {local_id} to {policy.get(local_id)!r}, "
                       f"but the gateway asks for {issuer.get('id')!r}")
        members = {m.get("trust_domain") for m in ca_serve.get("members") or []}
        if td not in members:
            err(where, f"ca-serve.toml members {sorted(members)} do not include the gateway's trust domain {td}")


def check_bundle_sync(where, objs):
    sts = one(where, objs, "StatefulSet", GATEWAY)
    if sts is None:
        return
    pod = sts["spec"]["template"]["spec"]
    c = container(where, pod, "bundle-sync")
    if c is None:
        return
    env = {e["name"]: e.get("value") for e in c.get("env") or []}
    selector = env.get("NAMESPACE_SELECTOR") or ""
    if "TARGET_NAMESPACE" in env:
        err(where, "bundle-sync still has a fixed TARGET_NAMESPACE")
    pairs = [p.split("=", 1) for p in selector.split(",") if p]
    if not pairs or any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        err(where, f"bundle-sync NAMESPACE_SELECTOR {selector!r} is not a key=value label selector")
        pairs = []
    if env.get("TARGET_CONFIGMAP") != SYNC_CM:
        err(where, f"bundle-sync TARGET_CONFIGMAP {env.get('TARGET_CONFIGMAP')!r} != {SYNC_CM}")
    labelled = [ns["metadata"]["name"] for ns in find(objs, "Namespace")
                if pairs and all((ns["metadata"].get("labels") or {}).get(k) == v for k, v in pairs)]
    if pairs and not labelled:
        err(where, f"no Namespace carries the bundle-sync label {selector}")
    # Workloads that mount the distributed ConfigMap live in labelled namespaces.
    for kind in ("Deployment", "StatefulSet"):
        for o in find(objs, kind):
            vols = o["spec"]["template"]["spec"].get("volumes") or []
            if any((v.get("configMap") or {}).get("name") == SYNC_CM for v in vols) \
                    and o["metadata"].get("namespace") not in labelled:
                err(where, f"{kind} {o['metadata'].get('namespace')}/{o['metadata']['name']} mounts {SYNC_CM}, "
                           f"but its namespace is not labelled {selector}")

    # RBAC of the gateway's ServiceAccount: exactly what bundle-sync needs.
    sa = pod.get("serviceAccountName")
    rules = []
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for b in find(objs, kind):
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
                       and s.get("namespace") == NAMESPACE for s in b.get("subjects") or []):
                continue
            ref = b["roleRef"]
            ns = b["metadata"].get("namespace") if role_kind == "Role" else None
            roles = [r for r in find(objs, ref["kind"], ref["name"], ns) if r["metadata"]["name"] == ref["name"]]
            if not roles:
                err(where, f"{kind} {b['metadata']['name']} refers to missing {ref['kind']} {ref['name']}")
            for r in roles:
                rules += r.get("rules") or []
    granted = set()
    for r in rules:
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    names = tuple(sorted(r.get("resourceNames") or ())) or ("*",)
                    for n in names:
                        granted.add((g, res, v, n))
    expected = {("", "namespaces", "list", "*"), ("", "configmaps", "create", "*")} | {
        ("", "configmaps", v, SYNC_CM) for v in ("get", "patch", "update")}
    for missing in sorted(expected - granted):
        err(where, f"ServiceAccount {sa} lacks {missing} (bundle-sync needs it)")
    for extra in sorted(granted - expected):
        err(where, f"ServiceAccount {sa} is granted {extra}, which bundle-sync does not need")


def check_readiness(where, doc):
    for p in (doc.get("federation") or {}).get("peers") or []:
        if p.get("required") is True:
            err(where, f"peer {p.get('trust_domain')} is `required = true`: if it is unreachable the gateway "
                       "stays unready and a rollout stalls; the demo overlays keep every peer optional")
        elif "required" in p and not isinstance(p["required"], bool):
            err(where, f"peer {p.get('trust_domain')}: `required` must be a boolean")


def check_expose(where, objs, doc):
    svc = one(where, objs, "Service", "fedgate-federation")
    if svc is not None and svc["spec"].get("type") != "LoadBalancer":
        err(where, f"fedgate-federation is type {svc['spec'].get('type')!r}, expected LoadBalancer")
    for p in (doc.get("federation") or {}).get("peers") or []:
        host = urlparse(p.get("url", "")).hostname or ""
        try:
            ipaddress.ip_address(host)
            err(where, f"peer {p.get('trust_domain')} federation URL {p.get('url')!r} is an address, expected a DNS name")
        except ValueError:
            pass


def fedgate_config_check(where, fedgate, text):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gateway.toml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([fedgate, "config", "check", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            err(where, f"`fedgate config check` failed (exit {r.returncode}): {r.stderr.strip()}")
        else:
            print(f"{where}: {r.stdout.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fedgate", help="a built fedgate binary: run `config check` on each gateway.toml")
    ap.add_argument("--expose", action="append", default=[],
                    help="name of a rendered overlay that must publish via LoadBalancer/DNS")
    ap.add_argument("rendered", nargs="+")
    a = ap.parse_args()
    for path in a.rendered:
        where = os.path.basename(path).removesuffix(".yaml")
        objs = objects(path)
        text, doc = check_gateway(where, objs)
        check_issuer(where, objs, doc)
        check_bundle_sync(where, objs)
        if doc is not None:
            check_readiness(where, doc)
            if any(where.endswith(e) for e in a.expose):
                check_expose(where, objs, doc)
            if a.fedgate:
                fedgate_config_check(where, a.fedgate, text)
    for e in errors:
        print(f"error: {e}")
    print(f"{len(a.rendered)} overlay(s) checked, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
