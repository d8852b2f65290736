#!/usr/bin/env bash
# bench/syscalls.sh — system calls per passthrough connection, counted with `strace -c`.
#
# Starts one proxy on 127.0.0.1 (fedgate with 2 workers and the given `accept`, or haproxy
# `mode tcp` routing on the SNI with 2 threads, as in the harness's passthrough-haproxy), a
# local upstream that reads the ClientHello, answers 3 bytes and closes, and opens N
# connections one after another, each sending a real ClientHello (bench/syscalls.py). strace
# counts every system call of every proxy thread over the whole run; the table divides by N.
# One connection at a time shows the fixed cost per connection (including wake-ups that find
# nothing: accept4 returning EAGAIN), not throughput. Every process started is stopped by PID.
#
# usage: bench/syscalls.sh [--bin PATH] [--accept shared|reuseport|handoff] [--haproxy] [--conns N]
#   e.g. bench/syscalls.sh --accept handoff
#        bench/syscalls.sh --haproxy
# Needs strace (and haproxy for --haproxy); uses ports 39100, 39101 and 39105.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/fedgate" ACCEPT=shared HAPROXY=0 CONNS=500
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --accept) ACCEPT="$2"; shift 2 ;;
    --haproxy) HAPROXY=1; shift ;;
    --conns) CONNS="$2"; shift 2 ;;
    *) echo "bench/syscalls.sh: unknown option $1 (see the usage at the top)" >&2; exit 2 ;;
  esac
done
command -v strace >/dev/null || { echo "bench/syscalls.sh: strace is not installed (apt-get install -y strace)" >&2; exit 2; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$HAPROXY" = 1 ]; then
  name=haproxy
  cat >"$WORK/haproxy.cfg" <<'CFG'
global
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:39100
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend be if { req.ssl_sni -i backend.cluster-b.test }
backend be
    server s1 127.0.0.1:39101
CFG
  haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!)
else
  name="fedgate ($ACCEPT)"
  [ -x "$BIN" ] || { echo "bench/syscalls.sh: $BIN is not built (cargo build --release)" >&2; exit 2; }
  cat >"$WORK/gateway.toml" <<CFG
trust_domain = "cluster-b.test"
accept = "$ACCEPT"

[admin]
listen = "127.0.0.1:39105"

[[listeners]]
name = "passthrough"
kind = "passthrough"
listen = "127.0.0.1:39100"

  [[listeners.routes]]
  name = "backend"
  sni = "backend.cluster-b.test"
  upstreams = ["127.0.0.1:39101"]
CFG
  "$BIN" run --config "$WORK/gateway.toml" --workers 2 --log-level warn & PIDS+=($!)
fi
proxy=${PIDS[0]}
listening=0
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/39100) 2>/dev/null && { listening=1; break; }
  sleep 0.1
done
[ "$listening" = 1 ] || { echo "bench/syscalls.sh: $name is not listening on 127.0.0.1:39100 after 10 s (port taken? see its output above)" >&2; exit 1; }
# Attach to every thread; with -f strace also follows threads started later.
args=()
for task in /proc/"$proxy"/task/*; do args+=(-p "${task##*/}"); done
strace -c -f -q "${args[@]}" -o "$WORK/strace.txt" 2>/dev/null & tracer=$!
# strace attaches asynchronously; the first connections may go uncounted, which the per-
# connection division would only lower. Wait until it is attached to the main thread.
attached=0
for _ in $(seq 100); do
  grep -q "^TracerPid:[[:space:]]*$tracer" "/proc/$proxy/status" 2>/dev/null && { attached=1; break; }
  sleep 0.05
done
[ "$attached" = 1 ] || { echo "bench/syscalls.sh: strace did not attach to $proxy within 5 s (ptrace restricted? see /proc/sys/kernel/yama/ptrace_scope)" >&2; exit 1; }
python3 "$ROOT/bench/syscalls.py" 39100 39101 "$CONNS"
kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
echo "# $name: system calls per connection over $CONNS sequential connections (strace -c)"
awk -v n="$CONNS" 'NR > 2 && $NF != "total" && $0 !~ /^-/ {
    errors = (NF == 6) ? $5 : 0
    printf "%-16s %7.2f  (of which failed %.2f)\n", $NF, $4 / n, errors / n
    total += $4
  } END { printf "%-16s %7.2f\n", "total", total / n }' "$WORK/strace.txt" | sort -k2 -nr
