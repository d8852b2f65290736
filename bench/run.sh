#!/usr/bin/env bash
# bench/run.sh — run the loopback benchmark harness ($SHARED_BENCH, read-only) with
# fedgate's scenarios (bench/scenarios/) in the SAME run as the peers (haproxy, nginx).
#
# The harness writes pki/, .run/, results/ and loadgen/target/ next to its own
# run.sh, and its directory is read-only, so this wrapper copies it (without those
# generated directories) to $BENCH_WORKDIR (default /tmp/fedgate-shared-bench: outside the
# cargo workspace, since the loadgen is its own cargo project, and traversable by nginx's
# unprivileged workers, which read the backend's bulk file) and runs the copy. The harness
# sources scenario files from its own scenarios/ and from every --scenarios DIR,
# sorted by file name, so peers and fedgate share one backend, one PKI and one
# interleaved measurement schedule.
#
# usage: bench/run.sh [run.sh options...]
#   e.g. bench/run.sh --only direct,passthrough-haproxy,passthrough-nginx,fedgate-passthrough \
#                     --ref passthrough-haproxy --reps 5
# env:   SHARED_BENCH (default: shared/bench beside the repository checkout, else /work/shared/bench)
#        GATEWAY_BIN  (default: target/release/fedgate; build it with `cargo build --release`)
#        BENCH_WORKDIR (default: /tmp/fedgate-shared-bench) writable copy of the harness
# Results (TSV + tables) are copied to bench/results/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-}"
if [ -z "$SHARED" ]; then
  for d in "$(dirname "$ROOT")/shared/bench" /work/shared/bench; do
    [ -f "$d/run.sh" ] && { SHARED="$(cd "$d" && pwd)"; break; }
  done
fi
if [ -z "$SHARED" ] || [ ! -f "$SHARED/run.sh" ]; then
  echo "bench/run.sh: benchmark harness not found; set SHARED_BENCH=/path/to/the/harness" >&2
  exit 2
fi
export GATEWAY_BIN="${GATEWAY_BIN:-$ROOT/target/release/fedgate}"
[ -x "$GATEWAY_BIN" ] || {
  echo "bench/run.sh: $GATEWAY_BIN is not built; run \`cargo build --release\` (or set GATEWAY_BIN)" >&2
  exit 2
}

COPY="${BENCH_WORKDIR:-/tmp/fedgate-shared-bench}"
mkdir -p "$COPY"
# Refresh the harness sources; keep generated pki/, loadgen/target/ (warm build) and results/.
tar -C "$SHARED" --exclude=./pki --exclude=./.run --exclude=./loadgen/target -cf - . | tar -C "$COPY" -xf -
chmod -R u+w "$COPY"

before="$(find "$COPY/results" -maxdepth 1 -type f -printf '%f\n' 2>/dev/null | sort)"
rc=0
"$COPY/run.sh" --scenarios "$ROOT/bench/scenarios" "$@" || rc=$?
mkdir -p "$ROOT/bench/results"
while IFS= read -r f; do
  grep -qxF "$f" <<<"$before" || cp "$COPY/results/$f" "$ROOT/bench/results/"
done < <(find "$COPY/results" -maxdepth 1 -type f -printf '%f\n' | sort)
exit "$rc"
