#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets: builds all of them, then runs each for
# FUZZ_SECONDS (default 20) on a temporary copy of the committed seed corpus, so the repository
# is never modified. Exits non-zero if a target fails to build or finds a crash (the crashing
# input is printed, and kept under the temporary directory that is named in the output).
#
# Usage: bash fuzz/ci.sh                      (from anywhere)
#        FUZZ_SECONDS=60 bash fuzz/ci.sh      (longer runs)
#        FUZZ_TARGETS="client_hello csr" bash fuzz/ci.sh
#        FUZZ_STABLE=1 bash fuzz/ci.sh        (force the RUSTC_BOOTSTRAP=1 fallback below)
#        CARGO_TARGET_DIR=~/.cache/fedgate-fuzz bash fuzz/ci.sh   (reuse builds across clones)
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags. Uses an installed nightly, else tries
# `rustup toolchain install nightly`, else falls back to the default (stable) toolchain with
# RUSTC_BOOTSTRAP=1, which accepts the same flags.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${FUZZ_SECONDS:-20}"

step() { printf '\n=== fuzz: %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

step "toolchain"
toolchain=()
if [ "${FUZZ_STABLE:-0}" = 1 ]; then
  echo "FUZZ_STABLE=1: using the default toolchain with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
elif command -v rustup >/dev/null 2>&1 &&
  timeout 300 rustup toolchain install nightly --profile minimal; then
  toolchain=(+nightly)
else
  echo "no nightly toolchain available: using the default toolchain with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi
cargo "${toolchain[@]}" --version

step "cargo fmt --check (fuzz crate)"
cargo fmt --check

targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"

step "build ($(echo "$targets" | wc -w) targets)"
cargo "${toolchain[@]}" fuzz build

work="$(mktemp -d "${TMPDIR:-/tmp}/fedgate-fuzz.XXXXXX")"
failed=()
for target in $targets; do
  step "run $target for ${seconds}s"
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  if [ -d "corpus/$target" ]; then
    cp -R "corpus/$target/." "$work/corpus/$target/"
  fi
  if ! cargo "${toolchain[@]}" fuzz run "$target" "$work/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target/" >"$work/$target.log" 2>&1; then
    failed+=("$target")
    tail -n 60 "$work/$target.log"
    for crash in "$work/artifacts/$target"/*; do
      [ -f "$crash" ] || continue
      echo "crashing input: $crash ($(wc -c <"$crash") bytes), base64:"
      base64 -w 0 "$crash" | head -c 4096
      echo
    done
  fi
  grep -E '^(INFO: seed corpus|stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+[[:space:]]+(INITED|DONE))' \
    "$work/$target.log" || true
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (logs and inputs in $work)"
  exit 1
fi
rm -rf "$work"
echo "fuzz: all targets ran ${seconds}s without a crash"
