#!/usr/bin/env bash
# py-spiffe (PyPI `spiffe`, pinned below) against `fedgate agent`, the same three steps as run.sh:
#   1. fetch: the default X509-SVID has the entry's SPIFFE ID; X.509 and JWT bundles per trust
#      domain (cluster-a.test and the federated cluster-b.test);
#   2. rotation: the X.509 context stream delivers a second update after the federated bundle
#      rotates;
#   3. denied: the same interpreter under another uid matches no entry: PermissionDenied
#      (needs root and setpriv to switch uid; skipped with a message otherwise);
#   4. jwt: fetch_jwt_svid for an audience; the token validates through validate_jwt_svid (and a
#      raw ValidateJWTSVID call, for the claims) and locally (JwtSvid.parse_and_validate with
#      fetch_jwt_bundles); a wrong audience and an ID not entitled are refused; a cluster-b.test
#      token (`fedgate jwt mint` with the peer CA) validates with the federated bundle.
# Usage: e2e/interop/workload/run-py.sh   (FEDGATE=path/to/fedgate to use a built binary;
#        PY_SPIFFE_VENV=dir to choose where py-spiffe is installed, default under /tmp).
# Exits 0 only if every step that ran passed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
PY_SPIFFE_VERSION=0.3.2
venv="${PY_SPIFFE_VENV:-/tmp/fedgate-py-spiffe-$PY_SPIFFE_VERSION}"

if [ -z "${FEDGATE:-}" ]; then
  (cd "$root" && cargo build --quiet --bin fedgate)
  FEDGATE="$root/target/debug/fedgate"
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import spiffe" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "spiffe==$PY_SPIFFE_VERSION"
fi
python="$(readlink -f "$venv/bin/python")"

work="$(mktemp -d)"
# Readable by the unprivileged uid of step 3 (the socket itself is mode 0777).
chmod 755 "$work"
cp "$here/py_client.py" "$work/"
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failures=0
step() { printf '\n--- %s\n' "$*"; }
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

wait_for() {
  for _ in $(seq 300); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

write_map() {
  printf '{"trust_domains":{"cluster-b.test":%s}}\n' "$(cat "$work/peer/bundle.json")" >"$work/map.tmp"
  mv "$work/map.tmp" "$work/federated.json"
}

step "a CA for cluster-a.test, a federated bundle for cluster-b.test, the agent"
"$FEDGATE" ca init --trust-domain cluster-a.test --out "$work/ca" >/dev/null
"$FEDGATE" ca init --trust-domain cluster-b.test --out "$work/peer" >/dev/null
write_map
cat >"$work/agent.toml" <<TOML
trust_domain = "cluster-a.test"
socket = "agent.sock"
ca = "ca"
federated_bundles = "federated.json"
poll_interval = "200ms"

[[entry]]
spiffe_id = "spiffe://cluster-a.test/py-client"
selectors = ["unix:uid:$(id -u)", "unix:path:$python"]
TOML
"$FEDGATE" agent --config "$work/agent.toml" >"$work/agent.out" 2>"$work/agent.log" &
agent_pid=$!
if ! wait_for "$work/agent.out" "listening on"; then
  cat "$work/agent.log"
  echo "FAIL: the agent did not start"
  exit 1
fi
socket="unix://$work/agent.sock"
cat "$work/agent.out"
client=("$venv/bin/python" "$work/py_client.py" --socket "$socket")

step "1. fetch the SVID and the bundles"
if "${client[@]}" --mode fetch --expect-id spiffe://cluster-a.test/py-client \
  --expect-td cluster-a.test,cluster-b.test; then
  pass "py-spiffe fetched spiffe://cluster-a.test/py-client and both trust domains' bundles"
else
  fail "fetch"
fi

step "2. an update is streamed when the federated bundle rotates"
"${client[@]}" --mode rotation --updates 2 >"$work/rotation.out" 2>&1 &
watch_pid=$!
if wait_for "$work/rotation.out" "^ready"; then
  "$FEDGATE" ca rotate --ca "$work/peer" >/dev/null
  write_map
  if wait "$watch_pid"; then
    cat "$work/rotation.out"
    pass "py-spiffe saw the rotated cluster-b.test bundle"
  else
    cat "$work/rotation.out"
    fail "rotation"
  fi
else
  kill "$watch_pid" 2>/dev/null || true
  cat "$work/rotation.out"
  fail "rotation: no first update"
fi

step "3. a caller that matches no entry is refused"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
  if setpriv --reuid=65534 --regid=65534 --clear-groups \
    "${client[@]}" --mode denied --timeout 10; then
    pass "PermissionDenied for uid 65534, which no entry names"
  else
    fail "denied"
  fi
else
  echo "SKIP: switching uid needs root and setpriv"
fi

step "4. JWT-SVIDs: fetch, validate by the agent and locally, refusals, a federated token"
audience="spiffe://cluster-a.test/interop-server"
peer_id="spiffe://cluster-b.test/peer-workload"
peer_token="$("$FEDGATE" jwt mint --ca "$work/peer" --spiffe-id "$peer_id" --audience "$audience")"
if "${client[@]}" --mode jwt --expect-id spiffe://cluster-a.test/py-client \
  --audience "$audience" --peer-token "$peer_token" --peer-id "$peer_id"; then
  pass "py-spiffe fetched and validated JWT-SVIDs (local and federated)"
else
  fail "jwt"
fi

echo
echo "py-spiffe interop: $passed passed, $failures failed"
if [ "$failures" -ne 0 ]; then
  sed -n '1,50p' "$work/agent.log"
  exit 1
fi
