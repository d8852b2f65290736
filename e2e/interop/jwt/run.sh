#!/usr/bin/env bash
# JWT-SVID interop between fedgate and go-spiffe v2.9.0 (see docs/jwt-svid.md):
#   * tokens minted by `fedgate jwt mint` validate with go-spiffe's jwtsvid.ParseAndValidate
#     against the bundle fedgate's CA writes, before and after `fedgate ca rotate`;
#   * a token minted with go-jose (go-spiffe's JOSE library), with its bundle written by
#     go-spiffe's spiffebundle.Marshal, validates with `fedgate jwt verify`;
#   * both sides refuse a wrong audience, and fedgate refuses a key of another trust domain.
#
# Usage: e2e/interop/jwt/run.sh [FEDGATE_BINARY]
#   Without an argument it builds target/debug/fedgate with cargo. Needs Go (and the Go module
#   proxy, or a module cache that holds go-spiffe v2.9.0); without `go` it prints SKIP and
#   exits 0. Exits 1 if any step fails. CI runs it from e2e/spire.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP: go is not installed; the go-spiffe interop check needs it"
  exit 0
fi

if [ $# -ge 1 ]; then
  FEDGATE=$1
else
  (cd "$ROOT" && cargo build --quiet --bin fedgate)
  FEDGATE=$ROOT/target/debug/fedgate
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$HERE" && go build -o "$WORK/jwt-interop" .)
GO=$WORK/jwt-interop

FAILED=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
# expect_ok NAME CMD...: CMD must succeed.
expect_ok() {
  local name=$1; shift
  if out=$("$@" 2>&1); then pass "$name: ${out%%$'\n'*}"; else fail "$name: $out"; fi
}
# expect_fail NAME CMD...: CMD must fail.
expect_fail() {
  local name=$1; shift
  if out=$("$@" 2>&1); then fail "$name: unexpectedly accepted: $out"; else pass "$name: refused: $out"; fi
}

CA=$WORK/ca
"$FEDGATE" ca init --trust-domain a.test --out "$CA" >/dev/null
"$FEDGATE" jwt mint --ca-dir "$CA" --spiffe-id spiffe://a.test/web --audience svc >"$WORK/old.jwt"

expect_ok "go-spiffe validates a fedgate token" \
  "$GO" validate -td a.test -bundle "$CA/bundle.json" -audience svc -token "$WORK/old.jwt"
expect_fail "go-spiffe refuses a fedgate token for another audience" \
  "$GO" validate -td a.test -bundle "$CA/bundle.json" -audience other -token "$WORK/old.jwt"

"$FEDGATE" ca rotate --ca "$CA" >/dev/null
"$FEDGATE" jwt mint --ca-dir "$CA" --spiffe-id spiffe://a.test/web --audience svc >"$WORK/new.jwt"
expect_ok "go-spiffe validates a pre-rotation token with the rotated bundle" \
  "$GO" validate -td a.test -bundle "$CA/bundle.json" -audience svc -token "$WORK/old.jwt"
expect_ok "go-spiffe validates a post-rotation token" \
  "$GO" validate -td a.test -bundle "$CA/bundle.json" -audience svc -token "$WORK/new.jwt"

"$GO" mint -id spiffe://go.test/client -audience svc -bundle-out "$WORK/go.json" -token-out "$WORK/go.jwt"
expect_ok "fedgate validates a go-jose token with a go-spiffe bundle" \
  "$FEDGATE" jwt verify --audience svc --bundle "go.test=$WORK/go.json" - <"$WORK/go.jwt"
expect_fail "fedgate refuses the go token for another audience" \
  "$FEDGATE" jwt verify --audience other --bundle "go.test=$WORK/go.json" - <"$WORK/go.jwt"
expect_fail "fedgate refuses the go token against another trust domain's keys" \
  "$FEDGATE" jwt verify --audience svc --bundle "go.test=$CA/bundle.json" - <"$WORK/go.jwt"

if [ "$FAILED" = 0 ]; then echo "jwt interop: all steps passed"; else echo "jwt interop: FAILED"; fi
exit "$FAILED"
