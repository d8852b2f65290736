#!/usr/bin/env bash
# go-spiffe (github.com/spiffe/go-spiffe/v2, pinned in go.mod) against `fedgate agent`:
#   1. fetch: the default X509-SVID has the entry's SPIFFE ID; X.509 and JWT bundles are served
#      per trust domain (cluster-a.test and the federated cluster-b.test);
#   2. rotation: a watcher sees a second X.509 context after the federated bundle rotates;
#   3. denied: the same program at another path matches no entry and gets PermissionDenied;
#   4. jwt: FetchJWTSVID for an audience; the token validates through ValidateJWTSVID (go-spiffe
#      and the raw call, with its claims) and locally (jwtsvid.ParseAndValidate against
#      FetchJWTBundles); a wrong audience and an ID not entitled are refused; a cluster-b.test
#      token (`fedgate jwt mint` with the peer CA) validates with the federated bundle.
# Usage: e2e/interop/workload/run.sh   (FEDGATE=path/to/fedgate to use a built binary;
#        otherwise target/debug/fedgate is built with cargo). Exits 0 only if every step passes;
#        skips (exit 0, with a message) only when Go is not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP: go is not installed; the go-spiffe interop check needs Go 1.24 or later"
  exit 0
fi
if [ -z "${FEDGATE:-}" ]; then
  (cd "$root" && cargo build --quiet --bin fedgate)
  FEDGATE="$root/target/debug/fedgate"
fi

work="$(mktemp -d)"
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
step() { printf '\n--- %s\n' "$*"; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Waits up to 30 s for $2 to appear in file $1.
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

step "build the go-spiffe client"
(cd "$here" && go build -o "$work/interop" .)
exe="$(readlink -f "$work/interop")"
cp "$work/interop" "$work/interop-unregistered"

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
spiffe_id = "spiffe://cluster-a.test/go-client"
selectors = ["unix:uid:$(id -u)", "unix:path:$exe"]
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

step "1. fetch the SVID and the bundles"
if "$work/interop" -socket "$socket" -mode fetch \
  -expect-id spiffe://cluster-a.test/go-client -expect-td cluster-a.test,cluster-b.test; then
  pass "go-spiffe fetched spiffe://cluster-a.test/go-client and both trust domains' bundles"
else
  fail "fetch"
fi

step "2. an update is streamed when the federated bundle rotates"
"$work/interop" -socket "$socket" -mode rotation -updates 2 >"$work/rotation.out" 2>&1 &
watch_pid=$!
if wait_for "$work/rotation.out" "^ready"; then
  "$FEDGATE" ca rotate --ca "$work/peer" >/dev/null
  write_map
  if wait "$watch_pid"; then
    cat "$work/rotation.out"
    pass "go-spiffe saw the rotated cluster-b.test bundle"
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
if "$work/interop-unregistered" -socket "$socket" -mode denied -timeout 10s; then
  pass "PermissionDenied for an executable no entry names"
else
  fail "denied"
fi

step "4. JWT-SVIDs: fetch, validate by the agent and locally, refusals, a federated token"
audience="spiffe://cluster-a.test/interop-server"
peer_id="spiffe://cluster-b.test/peer-workload"
# Minted after step 2's rotation: signed with the peer's new key, which the rewritten map holds.
peer_token="$("$FEDGATE" jwt mint --ca "$work/peer" --spiffe-id "$peer_id" --audience "$audience")"
if "$work/interop" -socket "$socket" -mode jwt -expect-id spiffe://cluster-a.test/go-client \
  -audience "$audience" -peer-token "$peer_token" -peer-id "$peer_id"; then
  pass "go-spiffe fetched and validated JWT-SVIDs (local and federated)"
else
  fail "jwt"
fi

echo
if [ "$failures" -eq 0 ]; then
  echo "go-spiffe interop: 4 passed, 0 failed"
else
  echo "go-spiffe interop: $((4 - failures)) passed, $failures failed"
  sed -n '1,50p' "$work/agent.log"
  exit 1
fi
