#!/usr/bin/env bash
# bench/idle_rss.sh — resident memory per idle connection of an SNI-passthrough proxy, for
# fedgate and the peers (haproxy; nginx with --nginx), at N idle connections (default 10,000).
#
# For each proxy: start it on 127.0.0.1 with one SNI route to a local sink (bench/idle_rss.py
# sink: accepts and holds TCP connections, discards bytes), read the proxy's VmRSS, open N
# connections that each send one complete, real TLS ClientHello for the routed name (so the
# proxy parses it, dials the sink and replays it: one client and one upstream socket per
# connection), wait, read VmRSS again, close everything. per_conn = (after - before) / N.
# The proxies run with the benchmark's settings: 2 worker threads, SNI routing, passthrough.
#
# usage: bench/idle_rss.sh [--conns N] [--settle S] [--nginx] [--only fedgate|haproxy|nginx]
# env:   GATEWAY_BIN (default target/release/fedgate)
# Bounded: every wait has a deadline; everything started here is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/bench/idle_rss.py"
GATEWAY_BIN="${GATEWAY_BIN:-$ROOT/target/release/fedgate}"
CONNS=10000
SETTLE=3
PROXIES=(haproxy fedgate)
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) CONNS="$2"; shift 2 ;;
    --settle) SETTLE="$2"; shift 2 ;;
    --nginx) PROXIES+=(nginx); shift ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "idle_rss.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$ONLY" ] && PROXIES=("$ONLY")

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One client socket + one upstream socket per connection in the proxy, plus the sink's and the
# client's own: raise the descriptor limit for this shell and everything it starts.
# Without CAP_SYS_RESOURCE the hard limit caps this (e.g. 20000 in the project's sandboxes):
# then N is lowered to what fits, with a note (the per-connection figure is what matters).
need=$((CONNS * 2 + 1000))
ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$need" ]; then
  fit=$((($(ulimit -n) - 1000) / 2))
  [ "$fit" -ge 100 ] || die "ulimit -n is $(ulimit -n); need $need for $CONNS connections"
  log "NOTE: ulimit -n is capped at $(ulimit -n) (hard limit); measuring $fit connections instead of $CONNS"
  CONNS=$fit
fi

WORK="$(mktemp -d /tmp/fedgate-idle-rss.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  set +e
  local p i
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local i
  for ((i = 0; i < 200; i++)); do port_open "$1" && return 0; sleep 0.05; done
  return 1
}
stop_pid() {
  local p="$1" i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

SNI=idle.fedgate.test
python3 "$PY" sink --port-file "$WORK/sink.port" 2>"$WORK/sink.log" &
SINK_PID=$!
PIDS+=("$SINK_PID")
for ((i = 0; i < 100; i++)); do [ -s "$WORK/sink.port" ] && break; sleep 0.05; done
[ -s "$WORK/sink.port" ] || die "sink did not start ($WORK/sink.log)"
SINK_PORT="$(cat "$WORK/sink.port")"

start_proxy() { # name port -> sets PROXY_PID
  local name="$1" port="$2" dir="$WORK/$1"
  mkdir -p "$dir"
  case "$name" in
    fedgate)
      [ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not built (cargo build --release)"
      cat >"$dir/gateway.toml" <<CFG
trust_domain = "cluster-b.test"
[admin]
listen = "127.0.0.1:$(python3 "$PY" free-port)"
[[listeners]]
name = "passthrough"
kind = "passthrough"
listen = "127.0.0.1:$port"
max_connections = $((CONNS * 2))
  [[listeners.routes]]
  name = "sink"
  sni = "$SNI"
  upstreams = ["127.0.0.1:$SINK_PORT"]
CFG
      TOKIO_WORKER_THREADS=1 "$GATEWAY_BIN" run --config "$dir/gateway.toml" --workers 2 --log-level warn \
        >"$dir/out.log" 2>&1 &
      ;;
    haproxy)
      cat >"$dir/haproxy.cfg" <<CFG
global
    nbthread 2
    maxconn $((CONNS + 200))
defaults
    mode tcp
    maxconn $((CONNS + 200))
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend fe_sni
    bind 127.0.0.1:$port
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend be_sink if { req.ssl_sni -i $SNI }
    default_backend be_reject
backend be_sink
    server sink 127.0.0.1:$SINK_PORT
backend be_reject
    tcp-request content reject
CFG
      haproxy -db -f "$dir/haproxy.cfg" >"$dir/out.log" 2>&1 &
      ;;
    nginx)
      local mod=""
      if nginx -V 2>&1 | grep -q -- '--with-stream=dynamic'; then
        mod="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
      fi
      cat >"$dir/nginx.conf" <<CFG
$mod
worker_processes 2;
worker_rlimit_nofile $((CONNS * 3));
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((CONNS * 2)); }
stream {
    map \$ssl_preread_server_name \$up { $SNI sink; default reject; }
    upstream sink { server 127.0.0.1:$SINK_PORT; }
    upstream reject { server 127.0.0.1:9; }
    server {
        listen 127.0.0.1:$port;
        ssl_preread on;
        preread_timeout 5s;
        proxy_pass \$up;
    }
}
CFG
      nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
      ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "$port" || die "$name did not open 127.0.0.1:$port ($dir/out.log)"
}

printf '%-8s %8s %8s %8s %12s %12s %12s %14s %s\n' proxy conns opened alive rss_before_kb \
  rss_after_kb rss_closed_kb bytes_per_conn upstream_conns >"$WORK/table"
for name in "${PROXIES[@]}"; do
  port="$(python3 "$PY" free-port)"
  log "$name: starting on 127.0.0.1:$port, route $SNI -> sink 127.0.0.1:$SINK_PORT"
  start_proxy "$name" "$port"
  sleep 0.5   # let it finish starting (threads, pools) before the baseline
  log "$name: opening $CONNS connections (one ClientHello each), settle ${SETTLE}s"
  out="$(timeout 300 python3 "$PY" hold --addr "127.0.0.1:$port" --sni "$SNI" --conns "$CONNS" \
         --pids "$PROXY_PID" --settle "$SETTLE" --hold-max 120 --sink-pid "$SINK_PID")" \
    || die "$name: hold failed: $out"
  sleep 0.2
  up="$(grep -o 'sink_conns=[0-9]*' "$WORK/sink.log" | tail -1 | cut -d= -f2)"
  log "$name: $out upstream_conns=$up"
  kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$out"; }
  printf '%-8s %8s %8s %8s %12s %12s %12s %14s %s\n' "$name" "$(kv conns)" "$(kv opened)" \
    "$(kv alive)" "$(kv rss_before_kib)" "$(kv rss_after_kib)" "$(kv rss_closed_kib)" \
    "$(kv per_conn_bytes)" "${up:-?}" >>"$WORK/table"
  stop_pid "$PROXY_PID"
  sleep 1   # let the sink see the upstream connections close
done
cat "$WORK/table"
