#!/usr/bin/env bash
# bench/profile.sh — CPU profile of fedgate under one load of the shared harness's loadgen.
#
# Starts the harness's mTLS nginx backend and one fedgate scenario (passthrough, bridge-1hop or
# bridge, configured exactly as bench/scenarios/ does), runs `loadgen MODE` against it for
# DURATION seconds and records fedgate's on-CPU stacks with `perf record -e cpu-clock` (a
# software clock: this VM has no hardware counters), then prints `perf report` top entries.
# Everything runs on 127.0.0.1 with ports from the kernel (port 0 probes); every process started
# here is stopped by PID on exit.
#
# After the load it prints the worker balance: each data-plane worker's accepted connections
# (fedgate_worker_accepted_connections_total from the admin port) and CPU time (its thread's
# utime+stime in /proc), to worker-balance.txt.
#
# usage: bench/profile.sh [--scenario passthrough|passthrough-reuseport|passthrough-handoff|bridge-1hop|bridge|bridge-mux|bridge-mux-handoff]
#                         [--mode cps|bulk|lat|rps]
#                         [--conns N] [--duration S] [--rate R] [--out DIR] [--no-perf]
# needs: bench/run.sh run once (harness copy with a built loadgen and pki/ in $BENCH_WORKDIR),
#        target/release/fedgate, perf (Debian linux-perf).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
H="${BENCH_WORKDIR:-/tmp/fedgate-shared-bench}"
GATEWAY_BIN="${GATEWAY_BIN:-$ROOT/target/release/fedgate}"
SCENARIO=passthrough
MODE=cps
CONNS=16
DURATION=8
RATE=2000
OUT=""
PERF=1
while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) SCENARIO="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-perf) PERF=0; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
LOADGEN="$H/loadgen/target/release/loadgen"
PKI="$H/pki"
if [ ! -x "$LOADGEN" ] || [ ! -f "$PKI/.complete" ]; then
  echo "profile.sh: run bench/run.sh once first ($H)" >&2; exit 2
fi
[ -x "$GATEWAY_BIN" ] || { echo "profile.sh: build target/release/fedgate first" >&2; exit 2; }

# The harness's scenario helpers, with this script as the "run": bench_spawn records PIDs here.
# shellcheck source=/dev/null
source "$H/lib.sh"
WORK="$(mktemp -d /tmp/fedgate-profile.XXXXXX)"
chmod 755 "$WORK"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
cleanup() {
  set +e
  [ "${#SCEN_PIDS[@]}" -gt 0 ] && stop_pids "${SCEN_PIDS[@]}"
  rm -f "$WORK/backend/bulk.bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port below the kernel's ephemeral range (net.ipv4.ip_local_port_range): an ephemeral port
# may still be held in TIME_WAIT by a client connection of an earlier load, and binding a
# listener on it then fails with "address in use".
free_port() {
  local lo _hi
  read -r lo _hi </proc/sys/net/ipv4/ip_local_port_range
  echo $((10000 + RANDOM % (lo - 10000 - 20)))
}
WORKERS="${WORKERS:-2}"
BACKEND_PORT="$(free_port)"
while port_in_use "$BACKEND_PORT"; do BACKEND_PORT="$(free_port)"; done
export BACKEND_SNI=backend.cluster-b.test   # read by the scenario files

# --- backend: the harness's nginx HTTPS (mTLS) backend --------------------------------------
SCEN_NAME=backend; SCEN_DIR="$WORK/backend"; mkdir -p "$SCEN_DIR/tmp"
head -c $((64 << 20)) /dev/zero >"$SCEN_DIR/bulk.bin"; chmod 644 "$SCEN_DIR/bulk.bin"; chmod 755 "$SCEN_DIR"
{
  nginx_main_conf "$SCEN_DIR" | grep -v '^load_module'
  cat <<CFG
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $SCEN_DIR/tmp/body;
    proxy_temp_path       $SCEN_DIR/tmp/proxy;
    fastcgi_temp_path     $SCEN_DIR/tmp/fastcgi;
    uwsgi_temp_path       $SCEN_DIR/tmp/uwsgi;
    scgi_temp_path        $SCEN_DIR/tmp/scgi;
    keepalive_timeout  75s;
    output_buffers     2 256k;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate        $PKI/backend.crt;
        ssl_certificate_key    $PKI/backend.key;
        ssl_client_certificate $PKI/roots-a-b.pem;
        ssl_verify_client      on;
        ssl_verify_depth       2;
        location = /small  { return 200 "ok\n"; }
        location = /whoami { return 200 "client=[\$ssl_client_s_dn] \$ssl_protocol \$ssl_cipher\n"; }
        location = /bulk   { alias $SCEN_DIR/bulk.bin; }
    }
}
CFG
} >"$SCEN_DIR/nginx.conf"
start_nginx nginx "$SCEN_DIR/nginx.conf"
wait_port "$BACKEND_PORT" || die "backend did not start"
BACKEND_PIDS=("${SCEN_PIDS[@]}")

# --- the fedgate scenario, from bench/scenarios/ ---------------------------------------------
case "$SCENARIO" in
  passthrough) f=60-fedgate-passthrough.sh ;;
  passthrough-reuseport) f=64-fedgate-passthrough-reuseport.sh ;;
  passthrough-handoff) f=65-fedgate-passthrough-handoff.sh ;;
  bridge-1hop) f=70-fedgate-bridge-1hop.sh ;;
  bridge) f=71-fedgate-bridge.sh ;;
  bridge-mux) f=73-fedgate-bridge-mux.sh ;;
  bridge-mux-handoff) f=74-fedgate-bridge-mux-handoff.sh ;;
  *) die "unknown scenario $SCENARIO" ;;
esac
SCEN_NAME="fedgate-$SCENARIO"; SCEN_DIR="$WORK/$SCEN_NAME"; mkdir -p "$SCEN_DIR"
SCEN_PORT_BASE="$(free_port)"
# The scenario needs 10 consecutive ports; retry a few bases until all are free.
for _ in 1 2 3 4 5; do
  ok=1
  for ((p = SCEN_PORT_BASE; p < SCEN_PORT_BASE + 10; p++)); do port_in_use "$p" && ok=0; done
  [ "$ok" = 1 ] && [ "$SCEN_PORT_BASE" -lt 65000 ] && break
  SCEN_PORT_BASE="$(free_port)"
done
export GATEWAY_BIN
before=("${SCEN_PIDS[@]}")
# shellcheck source=/dev/null
source "$ROOT/bench/scenarios/$f"
scen_start
wait_port "$SCEN_PORT" || die "fedgate did not start"
GW_PIDS=()
for p in "${SCEN_PIDS[@]}"; do [[ " ${before[*]} " == *" $p "* ]] || GW_PIDS+=("$p"); done

args=(--addr "127.0.0.1:$SCEN_PORT" --sni "$SCEN_SNI" --ca "$SCEN_CA" --cert "$PKI/client.crt" --key "$PKI/client.key")
"$LOADGEN" check "${args[@]}" >&2 || die "check failed"
extra=()
[ "$MODE" = lat ] && extra=(--rate "$RATE")
cpu_arg="proxy=$(IFS=,; echo "${GW_PIDS[*]}")"
if [ "$PERF" = 1 ]; then
  log "perf record on fedgate pids ${GW_PIDS[*]} during loadgen $MODE for ${DURATION}s"
  perf record -q -e cpu-clock -F 1999 -g -o "$OUT/perf.data" -p "$(IFS=,; echo "${GW_PIDS[*]}")" \
    -- sleep "$((DURATION + 1))" 2>"$OUT/perf.log" &
  PERF_PID=$!
  SCEN_PIDS+=("$PERF_PID")
fi
timeout $((DURATION + 30)) "$LOADGEN" "$MODE" "${args[@]}" --conns "$CONNS" --duration "$DURATION" \
  --warmup 0.5 --threads 2 "${extra[@]}" --cpu "$cpu_arg" \
  --cpu "backend=$(IFS=,; echo "${BACKEND_PIDS[*]}")" | tee "$OUT/loadgen.txt"
if [ "$PERF" = 1 ]; then
  wait "$PERF_PID" || true
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^$' | grep -E '^ +[0-9]' | head -40 | tee "$OUT/perf-top.txt" || true   # head closes the pipe early (SIGPIPE)

  log "perf data: $OUT/perf.data (perf report -i ...)"
fi

# --- worker balance: accepts (admin /metrics) and CPU (per thread) of each data-plane worker ---
{
  echo "# worker balance after loadgen $MODE ($SCENARIO): listener worker accepted"
  for admin in $((SCEN_PORT_BASE + 5)) $((SCEN_PORT_BASE + 6)); do
    # Only the scenarios with two gateways have a second admin port.
    { curl -fsS --max-time 5 "http://127.0.0.1:$admin/metrics" 2>/dev/null || true; } \
      | sed -n 's/^fedgate_worker_accepted_connections_total{listener="\([^"]*\)",worker="\([0-9]*\)"} \([0-9]*\)$/\1 \2 \3/p'
  done
  # Thread names are cut to 15 bytes by the kernel ("fedgate-worker-", "fedgate-accept-"), so
  # rows are by tid. Wake-ups: voluntary context switches (each sleep in epoll_wait or accept
  # that something ended) over the whole life of the thread.
  echo "# pid tid thread cpu_seconds (utime+stime) wakeups (voluntary_ctxt_switches)"
  tick="$(getconf CLK_TCK)"
  for pid in "${GW_PIDS[@]}"; do
    for task in /proc/"$pid"/task/*; do
      comm="$(cat "$task/comm" 2>/dev/null)" || continue
      case "$comm" in fedgate-worker* | fedgate-accept*) ;; *) continue ;; esac
      wakeups="$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status" 2>/dev/null)"
      # Fields 14 and 15 of stat (after the parenthesised comm, which has no spaces here).
      awk -v c="$comm" -v p="$pid" -v id="${task##*/}" -v t="$tick" -v w="${wakeups:-?}" \
        '{printf "%s %s %s %.2f %s\n", p, id, c, ($14 + $15) / t, w}' "$task/stat"
    done
  done
} | tee "$OUT/worker-balance.txt"
