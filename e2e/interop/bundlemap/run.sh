#!/usr/bin/env bash
# Bundle-map interop between fedgate and go-spiffe v2.9.0 (see docs/federation.md,
# "Distribution"): a real `fedgate run` gateway (trust domain a.test, with an [identity])
# federates with b.test (a `fedgate bundle serve` endpoint, https_spiffe; its CA rotated once,
# so two roots and two JWT keys) and distributes; then go-spiffe must
#   * parse every entry of current/bundles.json with spiffebundle.Parse (keys through
#     spiffeid.TrustDomainFromString), with the X.509 and JWT authority counts of the source
#     bundles and no spiffe_refresh_hint inside the map,
#   * load every current/<td>.pem with x509bundle.Load, equal to the map entry's roots.
#
# Usage: e2e/interop/bundlemap/run.sh [FEDGATE_BINARY]
#   Without an argument it builds target/debug/fedgate with cargo. Needs Go (and the Go module
#   proxy, or a module cache that holds go-spiffe v2.9.0); without `go` it prints SKIP and
#   exits 0. Prints PASS/FAIL lines; exits 1 if any step fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP: go is not installed; the go-spiffe bundle-map check needs it"
  exit 0
fi

if [ $# -ge 1 ]; then
  FEDGATE=$1
else
  (cd "$ROOT" && cargo build --quiet --bin fedgate)
  FEDGATE=$ROOT/target/debug/fedgate
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$HERE" && go build -o "$WORK/bundlemap-check" .)

FAILED=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }

# The two trust domains: a.test is the gateway's own, b.test its peer.
"$FEDGATE" ca init --trust-domain a.test --out "$WORK/ca-a" >/dev/null
"$FEDGATE" ca issue --ca "$WORK/ca-a" --id spiffe://a.test/gateway --out "$WORK/gw-a" >/dev/null
"$FEDGATE" ca init --trust-domain b.test --out "$WORK/ca-b" >/dev/null
"$FEDGATE" ca rotate --ca "$WORK/ca-b" >/dev/null
"$FEDGATE" ca issue --ca "$WORK/ca-b" --id spiffe://b.test/bundle-endpoint --out "$WORK/ep-b" >/dev/null

"$FEDGATE" bundle serve --trust-domain b.test --bundle "$WORK/ca-b/bundle.json" \
  --listen 127.0.0.1:0 --profile https_spiffe \
  --svid "$WORK/ep-b/svid.pem" --svid-key "$WORK/ep-b/svid.key" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
ADDR=
for _ in $(seq 100); do
  ADDR=$(sed -n 's/^listening on //p' "$WORK/serve.log" | head -1)
  [ -n "$ADDR" ] && break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  fail "b.test bundle endpoint did not start: $(cat "$WORK/serve.log")"
  exit 1
fi

cat >"$WORK/gw.toml" <<TOML
trust_domain = "a.test"
[admin]
listen = "127.0.0.1:0"
[identity]
svid = "$WORK/gw-a/svid.pem"
key = "$WORK/gw-a/svid.key"
bundle = "$WORK/ca-a/bundle.json"
[federation]
distribute_dir = "$WORK/out"
distribute_pkcs12_all = true
[[federation.peers]]
trust_domain = "b.test"
url = "https://$ADDR/"
profile = "https_spiffe"
endpoint_id = "spiffe://b.test/bundle-endpoint"
bootstrap_bundle = "$WORK/ca-b/bundle.json"
TOML
"$FEDGATE" run --config "$WORK/gw.toml" >"$WORK/gw.log" 2>&1 &
PIDS+=($!)

MAP=$WORK/out/current/bundles.json
for _ in $(seq 300); do
  if [ -f "$MAP" ] && grep -q '"b.test"' "$MAP" && grep -q '"a.test"' "$MAP"; then break; fi
  sleep 0.1
done
if [ -f "$MAP" ] && grep -q '"b.test"' "$MAP"; then
  pass "fedgate distributed a bundle map with a.test and b.test"
else
  fail "no bundle map with both trust domains after 30s; gateway log:"
  tail -20 "$WORK/gw.log"
  exit 1
fi

# The expected counts, from the source bundles as fedgate reads them.
counts() {
  "$FEDGATE" bundle inspect "$2" --trust-domain "$1" --json |
    sed -n 's/.*"x509_authorities":\([0-9]*\),"jwt_authorities":\([0-9]*\).*/\1:\2/p'
}
CA=$(counts a.test "$WORK/ca-a/bundle.json")
CB=$(counts b.test "$WORK/ca-b/bundle.json")
[ "$CB" = "2:2" ] || fail "b.test source bundle should have 2 roots and 2 JWT keys, has $CB"

if out=$("$WORK/bundlemap-check" -dir "$WORK/out/current" -expect "a.test=$CA" -expect "b.test=$CB" 2>&1); then
  pass "go-spiffe spiffebundle.Parse accepts every bundles.json entry (a.test=$CA b.test=$CB x509:jwt): $(echo "$out" | tr '\n' ' ')"
  pass "go-spiffe x509bundle.Load accepts a.test.pem and b.test.pem, equal to the map entries"
else
  fail "go-spiffe: $out"
fi

# The checker is not vacuous: an entry go-spiffe cannot parse (an x5c that is no certificate)
# fails it.
mkdir "$WORK/bad"
cp "$WORK/out/current/"*.pem "$WORK/bad/"
printf '{"trust_domains": {"a.test": {"keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "x5c": ["bm90IGEgY2VydA=="]}]}}}' >"$WORK/bad/bundles.json"
if out=$("$WORK/bundlemap-check" -dir "$WORK/bad" 2>&1); then
  fail "the checker accepted a map with an invalid entry: $out"
else
  pass "the checker refuses an invalid entry: $(echo "$out" | head -1)"
fi

for f in a.test.p12 b.test.p12 all.p12; do
  if [ -s "$WORK/out/current/$f" ]; then pass "PKCS#12 truststore $f written"; else fail "no $f"; fi
done

if [ "$FAILED" = 0 ]; then echo "bundle-map interop: all steps passed"; else echo "bundle-map interop: FAILED"; fi
exit "$FAILED"
