#!/usr/bin/env bash
# bench/soak.sh — soak and fault run: two real `fedgate run` gateways on 127.0.0.1 under
# connection churn for SOAK_MINUTES (default 30), through both passthrough and a 2-hop bridge,
# with periodic SIGHUP reloads, a bridge-CA rotation in the middle and a SIGTERM drain at the
# end while connections are live. Standalone: needs only target/release/fedgate and python3.
#
#   client (cluster-a SVID) --mTLS end to end--> A "egress" (passthrough) --> B "ingress"
#        (passthrough) --> backend (verifies the client against cluster-a's root)
#   client --mTLS(cluster-a)--> A "bridge-out" --mTLS(bridge.soak)+PROXY v2--> B "bridge-in"
#        --mTLS(cluster-b)+PROXY v2--> backend (sees B's SVID as peer, the client as origin)
#
# Federation: both gateways fetch bridge.soak's bundle from `fedgate bundle serve`
# (https_spiffe, self-serving endpoint) and use it instead of their stale [bridge] bundle
# file; each gateway serves its own trust domain ([federation.serve]) and fetches the other's.
# Timeline (fractions of the run): SIGHUP to both gateways every SOAK_RELOAD_SECS; at 40 %
# `fedgate ca rotate` of bridge.soak (phase 1) -> wait until both gateways show 2 roots ->
# re-issue both bridge SVIDs and the endpoint's SVID from the new root (phase 2; the
# gateways' local SVIDs are renewed at the same time) -> at 60 % `ca rotate --retire-old`
# (phase 3) -> wait until both show 1 root. At the end: SIGTERM to A (the entry gateway) with
# the load still running, 1 s later (A's listeners are closed, nothing new reaches B) SIGTERM
# to B; both drain the connections they carry; the load runs on for a few seconds (those
# connections are refused by design) and stops.
# The load client (bench/soak.py load) starts SOAK_RATE connections per second per path
# (open loop), each a full TLS handshake + one request/response (20 % hold 0.5-3 s and send
# a second request), and logs one CSV row per connection. RSS, fds, threads and CPU time of
# every fedgate process are sampled every SOAK_SAMPLE_SECS from /proc/PID.
#
# usage: SOAK_MINUTES=30 bench/soak.sh
# env:   SOAK_MINUTES (30, 2..240)   SOAK_RATE (30 conn/s per path, 1..200)
#        SOAK_RELOAD_SECS (300; a quarter of the run if shorter than 10 min)
#        SOAK_SAMPLE_SECS (60; 15 if the run is shorter than 10 min)
#        SOAK_OUT (bench/results/soak-<UTC timestamp>) results directory
#        SOAK_MIN_CONNS (10000 for runs of 30 min or more, else 0): the pass threshold per path
#        GATEWAY_BIN (target/release/fedgate)
# Output in SOAK_OUT: summary.txt/summary.json (also printed), events.csv, conns.csv.gz,
# rss.csv, metrics/status snapshots before the drain, logs/. Exit 0 only on PASS (no failed
# connection, at least SOAK_MIN_CONNS per path, every rotation step observed).
# Bounded: every wait has a deadline, the load stops by itself (time and count); everything
# started here is stopped by PID on every exit path (trap); loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/bench/soak.py"
export GATEWAY_BIN="${GATEWAY_BIN:-$ROOT/target/release/fedgate}"
case "${1:-}" in -h|--help) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

num() { # NAME VALUE MIN MAX
  if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
    echo "soak.sh: $1 must be an integer in $3..$4 (got '$2')" >&2
    exit 2
  fi
}
SOAK_MINUTES="${SOAK_MINUTES:-30}"
num SOAK_MINUTES "$SOAK_MINUTES" 2 240
SOAK_RATE="${SOAK_RATE:-30}"
num SOAK_RATE "$SOAK_RATE" 1 200
DUR=$((SOAK_MINUTES * 60))
if [ "$SOAK_MINUTES" -ge 10 ]; then reload_default=300 sample_default=60; else
  reload_default=$((DUR / 4)) sample_default=15; fi
SOAK_RELOAD_SECS="${SOAK_RELOAD_SECS:-$reload_default}"
num SOAK_RELOAD_SECS "$SOAK_RELOAD_SECS" 5 3600
SOAK_SAMPLE_SECS="${SOAK_SAMPLE_SECS:-$sample_default}"
num SOAK_SAMPLE_SECS "$SOAK_SAMPLE_SECS" 5 600
if [ "$SOAK_MINUTES" -ge 30 ]; then min_default=10000; else min_default=0; fi
SOAK_MIN_CONNS="${SOAK_MIN_CONNS:-$min_default}"
num SOAK_MIN_CONNS "$SOAK_MIN_CONNS" 0 100000000
OUT="${SOAK_OUT:-$ROOT/bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
DRAIN_TIMEOUT=15    # gateways' drain_timeout (s): longer than the longest held connection (3 s)

[ -x "$GATEWAY_BIN" ] || { echo "soak.sh: $GATEWAY_BIN is not built (cargo build --release)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "soak.sh: python3 is needed" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$OUT/logs"
WORK="$(mktemp -d /tmp/fedgate-soak.XXXXXX)"   # PKI (keys) and configs; removed on exit
PIDS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  set +e
  local p i alive
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The helpers of the shared-harness scenarios (fedgate_check, fedgate_spawn), with this
# script's bench_spawn: start in the background, log to $OUT/logs/NAME.log, record the PID.
# shellcheck source=bench/scenarios/_fedgate-common.sh
source "$ROOT/bench/scenarios/_fedgate-common.sh"
FEDGATE_LOG_LEVEL="${FEDGATE_LOG_LEVEL:-warn,fedgate::app=info,fedgate::shutdown=info}"
export FEDGATE_LOG_LEVEL
SPAWNED=""
bench_spawn() { # NAME CMD... (CMD execs: the PID is the process's own)
  local name="$1"
  shift
  "$@" >"$OUT/logs/$name.log" 2>&1 &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}

event() { # NAME [DETAIL]
  printf '%s,%s,%s\n' "$EPOCHREALTIME" "$1" "${2:-}" >>"$OUT/events.csv"
  log "event: $1 ${2:-}"
}
fedgate_cli() { "$GATEWAY_BIN" "$@" >>"$OUT/logs/pki.log" 2>&1 || die "fedgate $* failed (logs/pki.log)"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT PID NAME
  local i
  for ((i = 0; i < 300; i++)); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited (logs/$3.log)"
    sleep 0.1
  done
  die "$3 did not open 127.0.0.1:$1 within 30 s (logs/$3.log)"
}

# --- ports, PKI, configs ---------------------------------------------------------------------
read -r PASS_A BRIDGE_A ADMIN_A SERVE_A PASS_B BRIDGE_B ADMIN_B SERVE_B EP_BRIDGE BE_PASS BE_BRIDGE \
  < <(python3 "$PY" ports 11)

TD_A=cluster-a.soak TD_B=cluster-b.soak TD_BR=bridge.soak
SNI=backend.cluster-b.soak
ID_CLIENT="spiffe://$TD_A/ns/soak/sa/client"
ID_GW_A="spiffe://$TD_A/fedgate/gateway"
ID_GW_B="spiffe://$TD_B/fedgate/gateway"
ID_BACKEND="spiffe://$TD_B/ns/soak/sa/backend"
ID_BR_A="spiffe://$TD_BR/gateway/a"
ID_BR_B="spiffe://$TD_BR/gateway/b"
ID_EP="spiffe://$TD_BR/fedgate/bundle-endpoint"
CA_A="$WORK/pki/$TD_A" CA_B="$WORK/pki/$TD_B" CA_BR="$WORK/pki/$TD_BR"
S="$WORK/svid"

log "results: $OUT; work: $WORK; ${SOAK_MINUTES} min, ${SOAK_RATE} conn/s per path"
printf 'epoch,event,detail\n' >"$OUT/events.csv"
event meta "command: SOAK_MINUTES=$SOAK_MINUTES SOAK_RATE=$SOAK_RATE bench/soak.sh; reload every ${SOAK_RELOAD_SECS}s; sample every ${SOAK_SAMPLE_SECS}s"
event meta "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)'); binary: $GATEWAY_BIN; $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%M:%SZ)"

for td in "$TD_A" "$TD_B" "$TD_BR"; do
  fedgate_cli ca init --trust-domain "$td" --out "$WORK/pki/$td" --ttl 720h --refresh-hint 5s
done
issue() { fedgate_cli ca issue --ca "$1" --id "$2" --out "$S/$3" --ttl 24h; }
issue_all_bridge() {
  issue "$CA_BR" "$ID_BR_A" gw-a-bridge
  issue "$CA_BR" "$ID_BR_B" gw-b-bridge
  issue "$CA_BR" "$ID_EP" endpoint
}
issue "$CA_A" "$ID_CLIENT" client
issue "$CA_A" "$ID_GW_A" gw-a
issue "$CA_B" "$ID_GW_B" gw-b
issue "$CA_B" "$ID_BACKEND" backend
issue_all_bridge
# Clusters' roots as PEM for the Python ends (cluster CAs are not rotated; only renewed).
cp "$CA_A/ca.pem" "$WORK/cluster-a-root.pem"
cp "$CA_B/ca.pem" "$WORK/cluster-b-root.pem"

gateway_config() { # SIDE(a|b) -> stdout
  local me="$1" td other_td admin serve other_serve other_id
  if [ "$me" = a ]; then
    td=$TD_A other_td=$TD_B admin=$ADMIN_A serve=$SERVE_A other_serve=$SERVE_B other_id=$ID_GW_B
  else
    td=$TD_B other_td=$TD_A admin=$ADMIN_B serve=$SERVE_B other_serve=$SERVE_A other_id=$ID_GW_A
  fi
  mkdir -p "$WORK/gw-$me"
  # Bootstrap bundles, and a [bridge] bundle file that is never updated: after the rotation
  # only federation (the bridge.soak peer) brings the new root.
  cp "$CA_BR/bundle.json" "$WORK/gw-$me/bridge-bootstrap.json"
  cp "$CA_BR/bundle.json" "$WORK/gw-$me/bridge-bundle-stale.json"
  cp "$WORK/pki/$other_td/bundle.json" "$WORK/gw-$me/$other_td-bootstrap.json"
  cat <<CFG
# gateway $me of the soak run (bench/soak.sh)
trust_domain = "$td"
drain_timeout = "${DRAIN_TIMEOUT}s"

[identity]
svid = "$S/gw-$me/svid.pem"
key = "$S/gw-$me/svid.key"
bundle = "$WORK/pki/$td/bundle.json"

[admin]
listen = "127.0.0.1:$admin"

[federation]
min_refresh = "2s"
default_refresh = "5s"
max_refresh = "30s"

[federation.serve]
listen = "127.0.0.1:$serve"
profile = "https_spiffe"

[[federation.peers]]
trust_domain = "$TD_BR"
url = "https://127.0.0.1:$EP_BRIDGE/"
profile = "https_spiffe"
endpoint_id = "$ID_EP"
bootstrap_bundle = "$WORK/gw-$me/bridge-bootstrap.json"

[[federation.peers]]
trust_domain = "$other_td"
url = "https://127.0.0.1:$other_serve/"
profile = "https_spiffe"
endpoint_id = "$other_id"
bootstrap_bundle = "$WORK/gw-$me/$other_td-bootstrap.json"

[bridge]
trust_domain = "$TD_BR"
svid = "$S/gw-$me-bridge/svid.pem"
key = "$S/gw-$me-bridge/svid.key"
bundle = "$WORK/gw-$me/bridge-bundle-stale.json"
session_resumption = false
CFG
  if [ "$me" = a ]; then
    cat <<CFG

[[listeners]]
name = "egress"
kind = "passthrough"
listen = "127.0.0.1:$PASS_A"
  [[listeners.routes]]
  name = "backend"
  sni = "$SNI"
  upstreams = ["127.0.0.1:$PASS_B"]

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:$BRIDGE_A"
  [[listeners.routes]]
  name = "to-b"
  sni = "$SNI"
  upstreams = ["127.0.0.1:$BRIDGE_B"]
  peer_id = "$ID_BR_B"
  allow = ["$ID_CLIENT"]
CFG
  else
    cat <<CFG

[[listeners]]
name = "ingress"
kind = "passthrough"
listen = "127.0.0.1:$PASS_B"
  [[listeners.routes]]
  name = "backend"
  sni = "$SNI"
  upstreams = ["127.0.0.1:$BE_PASS"]

[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:$BRIDGE_B"
  [[listeners.bridge_peers]]
  id = "$ID_BR_A"
  may_speak_for = ["$TD_A"]
  [[listeners.routes]]
  name = "backend"
  sni = "$SNI"
  upstreams = ["127.0.0.1:$BE_BRIDGE"]
  server_id = ["$ID_BACKEND"]
  allow = ["$ID_CLIENT"]
  send_proxy_header = true
CFG
  fi
}
gateway_config a >"$WORK/gw-a.toml"
gateway_config b >"$WORK/gw-b.toml"
fedgate_check "$WORK/gw-a.toml" 2>>"$OUT/logs/pki.log" || die "gw-a.toml refused (logs/pki.log)"
fedgate_check "$WORK/gw-b.toml" 2>>"$OUT/logs/pki.log" || die "gw-b.toml refused (logs/pki.log)"
cp "$WORK/gw-a.toml" "$WORK/gw-b.toml" "$OUT/"

# --- processes -------------------------------------------------------------------------------
bench_spawn backend python3 "$PY" backend --pass-port "$BE_PASS" --bridge-port "$BE_BRIDGE" \
  --cert "$S/backend/svid.pem" --key "$S/backend/svid.key" --pass-ca "$WORK/cluster-a-root.pem" \
  --bridge-ca "$WORK/cluster-b-root.pem" --ready-file "$WORK/backend.ready"
PID_BACKEND=$SPAWNED
wait_port "$BE_BRIDGE" "$PID_BACKEND" backend

bench_spawn endpoint "$GATEWAY_BIN" bundle serve --trust-domain "$TD_BR" \
  --bundle "$CA_BR/bundle.json" --listen "127.0.0.1:$EP_BRIDGE" --profile https_spiffe \
  --svid "$S/endpoint/svid.pem" --svid-key "$S/endpoint/svid.key"
PID_EP=$SPAWNED
wait_port "$EP_BRIDGE" "$PID_EP" endpoint

fedgate_spawn gw-b "$WORK/gw-b.toml"
PID_B=$SPAWNED
wait_port "$ADMIN_B" "$PID_B" gw-b
fedgate_spawn gw-a "$WORK/gw-a.toml"
PID_A=$SPAWNED
wait_port "$ADMIN_A" "$PID_A" gw-a

for gw in "a:$ADMIN_A:$PID_A" "b:$ADMIN_B:$PID_B"; do
  IFS=: read -r side admin pid <<<"$gw"
  for ((i = 0; i < 600; i++)); do
    python3 "$PY" get --addr "127.0.0.1:$admin" --path /readyz >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || die "gw-$side exited (logs/gw-$side.log)"
    sleep 0.1
  done
  python3 "$PY" get --addr "127.0.0.1:$admin" --path /readyz >/dev/null 2>&1 \
    || die "gw-$side not ready within 60 s (logs/gw-$side.log)"
done
log "gateways ready: A pid $PID_A (admin 127.0.0.1:$ADMIN_A), B pid $PID_B (admin 127.0.0.1:$ADMIN_B)"

LOAD_ARGS=(--cert "$S/client/svid.pem" --key "$S/client/svid.key"
  --path "passthrough=$PASS_A,$SNI,$WORK/cluster-b-root.pem,$ID_BACKEND,$ID_CLIENT,-"
  --path "bridge=$BRIDGE_A,$SNI,$WORK/cluster-a-root.pem,$ID_GW_A,$ID_GW_B,$ID_CLIENT")
timeout 60 python3 "$PY" load "${LOAD_ARGS[@]}" --smoke 2>>"$OUT/logs/load.log" \
  || die "smoke connection failed (logs/load.log)"

# --- the run ---------------------------------------------------------------------------------
SAMPLED=("gw-a:$PID_A:$ADMIN_A" "gw-b:$PID_B:$ADMIN_B" "endpoint:$PID_EP:")
printf 'epoch,elapsed_s,name,pid,rss_kib,fds,threads,cpu_ticks,active\n' >"$OUT/rss.csv"
T0=$SECONDS
sample() {
  local e name pid admin rss thr fds cpu act
  for e in "${SAMPLED[@]}"; do
    IFS=: read -r name pid admin <<<"$e"
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
    thr=$(awk '/^Threads:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    # utime + stime (clock ticks): fields 14 and 15 after the ")" that ends the command name
    cpu=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
    act=-
    if [ -n "$admin" ]; then # a gateway: fds and live connections taken together
      read -r fds act < <(python3 "$PY" active --addr "127.0.0.1:$admin" --pid "$pid" 2>/dev/null \
        || echo "$fds -")
    fi
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$EPOCHREALTIME" "$((SECONDS - T0))" "$name" "$pid" \
      "${rss:--}" "$fds" "${thr:--}" "${cpu:--}" "$act" >>"$OUT/rss.csv"
  done
}
peer_roots() { # ADMIN -> authorities of bridge.soak in the gateway's /status (or 0)
  local r
  r=$(python3 "$PY" peer --addr "127.0.0.1:$1" --td "$TD_BR" 2>/dev/null || echo "0 0")
  echo "${r#* }"
}
both_roots() { [ "$(peer_roots "$ADMIN_A")" = "$1" ] && [ "$(peer_roots "$ADMIN_B")" = "$1" ]; }
rebuilds() { python3 "$PY" metric --addr "127.0.0.1:$1" --name fedgate_bridge_rebuilds_total \
  --match 'result="ok"' 2>/dev/null || echo 0; }

sample
bench_spawn load python3 "$PY" load "${LOAD_ARGS[@]}" --rate "$SOAK_RATE" \
  --duration $((DUR + 120)) --max-conns $((SOAK_RATE * (DUR + 120))) \
  --out "$OUT/conns.csv" --status "$WORK/load.json" --progress 20
PID_LOAD=$SPAWNED
event load_start "pid $PID_LOAD"
SAMPLED+=("py-load:$PID_LOAD:" "py-backend:$PID_BACKEND:")

ROT1_AT=$((DUR * 40 / 100))
ROT3_AT=$((DUR * 60 / 100))
ROT_GAP=$((DUR / 20)); [ "$ROT_GAP" -lt 5 ] && ROT_GAP=5; [ "$ROT_GAP" -gt 60 ] && ROT_GAP=60
ROT_WAIT=120          # bound on each "wait until both gateways show the new bundle"
next_sample=$SOAK_SAMPLE_SECS next_reload=$SOAK_RELOAD_SECS next_progress=60
state=0 t_state=0 rb_a=0 rb_b=0 rot_problems=0
while :; do
  sleep 1
  el=$((SECONDS - T0))
  [ "$el" -ge "$DUR" ] && break
  kill -0 "$PID_LOAD" 2>/dev/null || die "the load client exited early (logs/load.log)"
  for p in "$PID_A" "$PID_B" "$PID_EP" "$PID_BACKEND"; do
    kill -0 "$p" 2>/dev/null || die "process $p exited during the run (logs/)"
  done
  if [ "$el" -ge "$next_sample" ]; then sample; next_sample=$((next_sample + SOAK_SAMPLE_SECS)); fi
  if [ "$el" -ge "$next_reload" ]; then
    kill -HUP "$PID_A" "$PID_B"
    event sighup "gw-a gw-b"
    next_reload=$((next_reload + SOAK_RELOAD_SECS))
  fi
  if [ "$el" -ge "$next_progress" ]; then
    log "+${el}s load $(cat "$WORK/load.json" 2>/dev/null || echo '{}')"
    next_progress=$((next_progress + 60))
  fi
  case $state in
    0) if [ "$el" -ge "$ROT1_AT" ]; then
         event rotation_start "fedgate ca rotate --ca <bridge.soak>"
         fedgate_cli ca rotate --ca "$CA_BR"
         state=1 t_state=$el
       fi ;;
    1) if both_roots 2; then
         event rotation_bundle_seen "both gateways hold 2 bridge.soak roots"
         state=2 t_state=$el
       elif [ $((el - t_state)) -ge "$ROT_WAIT" ]; then
         event rotation_problem "new root not seen by both gateways within ${ROT_WAIT}s"
         rot_problems=$((rot_problems + 1)) state=2 t_state=$el
       fi ;;
    2) if [ $((el - t_state)) -ge "$ROT_GAP" ]; then
         rb_a=$(rebuilds "$ADMIN_A") rb_b=$(rebuilds "$ADMIN_B")
         issue_all_bridge
         issue "$CA_A" "$ID_GW_A" gw-a
         issue "$CA_B" "$ID_GW_B" gw-b
         event rotation_reissued "bridge SVIDs of A, B and the endpoint from the new root; local SVIDs renewed"
         state=3 t_state=$el
       fi ;;
    3) if [ "$(rebuilds "$ADMIN_A")" -gt "$rb_a" ] && [ "$(rebuilds "$ADMIN_B")" -gt "$rb_b" ]; then
         event rotation_svids_loaded "both gateways rebuilt their bridge TLS configs"
         state=4 t_state=$el
       elif [ $((el - t_state)) -ge "$ROT_WAIT" ]; then
         event rotation_problem "no bridge rebuild on both gateways within ${ROT_WAIT}s"
         rot_problems=$((rot_problems + 1)) state=4 t_state=$el
       fi ;;
    4) if [ "$el" -ge "$ROT3_AT" ] && [ $((el - t_state)) -ge "$ROT_GAP" ]; then
         event rotation_retire "fedgate ca rotate --retire-old"
         fedgate_cli ca rotate --ca "$CA_BR" --retire-old
         state=5 t_state=$el
       fi ;;
    5) if both_roots 1; then
         event rotation_retired_seen "both gateways hold 1 bridge.soak root"
         state=6 t_state=$el
       elif [ $((el - t_state)) -ge "$ROT_WAIT" ]; then
         event rotation_problem "retirement not seen by both gateways within ${ROT_WAIT}s"
         rot_problems=$((rot_problems + 1)) state=6 t_state=$el
       fi ;;
    6) if [ $((el - t_state)) -ge 30 ]; then event rotation_end "30 s after the retirement was seen"; state=7; fi ;;
  esac
done
[ "$state" -ge 6 ] || { event rotation_problem "the run ended in rotation state $state"; rot_problems=$((rot_problems + 1)); }
[ "$state" = 6 ] && event rotation_end "run ended"
event meta "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); CPU ticks/s: $(getconf CLK_TCK)"

# --- drain -----------------------------------------------------------------------------------
sample
for side in a b; do
  admin=$ADMIN_A; [ "$side" = b ] && admin=$ADMIN_B
  python3 "$PY" get --addr "127.0.0.1:$admin" --path /metrics --out "$OUT/metrics-gw-$side-end.txt" || true
  python3 "$PY" get --addr "127.0.0.1:$admin" --path /status --out "$OUT/status-gw-$side-end.json" || true
done
usec() { echo "${EPOCHREALTIME/./}"; }
event sigterm_gw-a "pid $PID_A; load still running"
kill -TERM "$PID_A"
t_term_a=$(usec)
sleep 1
event sigterm_gw-b "pid $PID_B; load still running"
kill -TERM "$PID_B"
t_term_b=$(usec)
left="gw-a gw-b"
for ((i = 0; i < (DRAIN_TIMEOUT + 15) * 20; i++)); do
  for name in $left; do
    if [ "$name" = gw-a ]; then pid=$PID_A t=$t_term_a; else pid=$PID_B t=$t_term_b; fi
    kill -0 "$pid" 2>/dev/null && continue
    rc=0; wait "$pid" || rc=$?
    event "exit_$name" "rc=$rc $(( ($(usec) - t) / 1000 )) ms after its SIGTERM"
    left=${left/$name/}
  done
  [ -z "${left// /}" ] && break
  sleep 0.05
done
for name in $left; do event "exit_$name" "still running $((DRAIN_TIMEOUT + 15)) s after SIGTERM"; done
sleep 3   # the load keeps going: these connections are refused (listeners closed)
kill -TERM "$PID_LOAD" 2>/dev/null || true
for ((i = 0; i < 450; i++)); do kill -0 "$PID_LOAD" 2>/dev/null || break; sleep 0.1; done
event load_stop
tail -n 1 "$OUT/logs/load.log" >&2 || true
kill -TERM "$PID_EP" "$PID_BACKEND" 2>/dev/null || true

rc=0
python3 "$PY" summarize --dir "$OUT" --min-conns "$SOAK_MIN_CONNS" || rc=$?
gzip -f "$OUT/conns.csv"
if [ "$rot_problems" -gt 0 ]; then log "rotation problems: $rot_problems (see events.csv)"; rc=1; fi
log "results in $OUT"
exit "$rc"
