#!/usr/bin/env bash
# Load benchmark of durable sends: one release gateway on loopback, then wrk against (a) GET /healthz, no auth, and
# (b) POST /v1/instances/{id}/messages with a fresh Idempotency-Key per request (benches/send.lua), spread over 4
# paired sandbox instances and 2 API keys each with generous limits. Every 202 of (b) is a send whose message,
# idempotency key and quota unit are committed. Same machine, same run, on SQLite and on PostgreSQL.
#
#   benches/send-load.sh                          # both backends, 3 rounds of 10 s per endpoint, 64 connections
#   BACKENDS=sqlite DURATION=20s benches/send-load.sh
#   BENCH_GATEWAY_BIN=/path/to/gateway benches/send-load.sh   # a binary built beforehand
#
# After the rounds, the subscription's messages_used (what the database charged) is printed beside the 202s wrk
# counted: it may exceed them by the sends still in flight when wrk stopped, never fall short.
# Needs wrk, curl, jq (and psql for PostgreSQL). Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
BACKENDS=${BACKENDS:-sqlite postgres}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
INSTANCES=${INSTANCES:-4}
KEYS_PER_INSTANCE=${KEYS_PER_INSTANCE:-2}
PG_ADMIN_URL=${GW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER_CPU= CLIENT_CPU=
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU="taskset -c 0" CLIENT_CPU="taskset -c 1"; fi
PORT=${PORT:-18498}
G="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
GW_PID= PG_DB=
cleanup() {
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${BENCH_GATEWAY_BIN:-}" ]; then
  CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p gateway >/dev/null
  BENCH_GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
fi

json() { curl -fsS "$@" -H 'content-type: application/json'; }

start_gateway() {  # $1: database URL
  GATEWAY_SERVER_LISTEN=127.0.0.1:$PORT \
  GATEWAY_DATABASE_URL="$1" \
  GATEWAY_ADMIN_PASSWORD='bench operator password' \
  GATEWAY_LOG_LEVEL=warn \
  GATEWAY_WHATSAPP_ENABLED=false \
    $SERVER_CPU "$BENCH_GATEWAY_BIN" serve >"${BENCH_LOG:-$WORK/gateway.log}" 2>&1 &
  GW_PID=$!
  for _ in $(seq 1 200); do curl -fs "$G/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "the gateway did not start:" >&2; cat "${BENCH_LOG:-$WORK/gateway.log}" >&2; exit 1
}

stop_gateway() {
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
}

# A tenant with generous limits, $INSTANCES paired sandbox instances, $KEYS_PER_INSTANCE send keys each; writes
# $WORK/targets ("<instance> <key> <recipient>" per line) and sets SUB and OP.
setup_tenant() {
  OP=$(json "$G/v1/auth/login" -d '{"email":"admin@gateway.local","password":"bench operator password"}' | jq -r .access_token)
  SUB=$(json "$G/v1/subscriptions" -H "authorization: Bearer $OP" -d '{"name":"Bench","tier":"enterprise",
    "limit_overrides":{"requests_per_minute":100000000,"monthly_messages":1000000000000,"max_instances":100}}' | jq -r .id)
  : >"$WORK/targets"
  for n in $(seq 1 "$INSTANCES"); do
    local i
    i=$(json "$G/v1/instances" -H "authorization: Bearer $OP" -d "{\"name\":\"bench $n\",\"subscription_id\":\"$SUB\"}" | jq -r .id)
    json -X POST "$G/v1/instances/$i/connect" -H "authorization: Bearer $OP" >/dev/null
    for _ in $(seq 1 100); do curl -fs "$G/v1/instances/$i/qr" -H "authorization: Bearer $OP" >/dev/null && break; sleep 0.1; done
    json "$G/v1/sandbox/instances/$i/scan" -H "authorization: Bearer $OP" -d "{\"display_name\":\"bench $n\"}" >/dev/null
    for _ in $(seq 1 100); do
      [ "$(curl -fs "$G/v1/instances/$i/status" -H "authorization: Bearer $OP" | jq -r .status)" = connected ] && break
      sleep 0.1
    done
    for k in $(seq 1 "$KEYS_PER_INSTANCE"); do
      local key
      key=$(json "$G/v1/instances/$i/api-keys" -H "authorization: Bearer $OP" \
        -d "{\"name\":\"bench $n.$k\",\"permissions\":[\"messages:send\"],\"rate_limit\":1000000}" | jq -r .key)
      # An external (simulated) recipient: the sandbox delivers to it at once.
      echo "$i $key +1555000$((4200 + n))" >>"$WORK/targets"
    done
  done
  while read -r i key _; do   # warm the key cache and check the send path answers 202
    code=$(curl -s -o /dev/null -w '%{http_code}' "$G/v1/instances/$i/messages" -H "x-api-key: $key" \
      -H 'content-type: application/json' -d '{"to":"+15550009999","text":"warm-up"}')
    [ "$code" = 202 ] || { echo "warm-up send answered $code" >&2; exit 1; }
  done <"$WORK/targets"
  cat >"$WORK/healthz.lua" <<'LUA'
request = function() return wrk.format("GET", "/healthz") end
LUA
}

# One wrk run: prints "<req/s> <p50> <p99> <non-2xx> <requests>".
run() {  # $@: wrk script and its arguments
  $CLIENT_CPU wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$@" | awk '
    / requests in / { total = $1 } /Requests\/sec/ { rps = $2 } / 50%/ { p50 = $2 } / 99%/ { p99 = $2 }
    /Non-2xx/ { bad = $5 } END { printf "%s %s %s %d %d\n", rps, p50, p99, bad, total }'
}

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; $INSTANCES instances x $KEYS_PER_INSTANCE keys;" \
  "$ROUNDS rounds of (a) then (b); pinned: ${PIN:-0}; binary: $BENCH_GATEWAY_BIN"
for backend in $BACKENDS; do
  case $backend in
    sqlite) url="sqlite://$WORK/gateway.db" ;;
    postgres)
      PG_DB="gw_bench_$$_$RANDOM"
      psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
      url="${PG_ADMIN_URL%/*}/$PG_DB" ;;
    *) echo "unknown backend $backend" >&2; exit 64 ;;
  esac
  start_gateway "$url"
  setup_tenant
  echo
  echo "backend: $backend"
  echo "| round | (a) /healthz req/s, p50, p99 | (b) accepted sends/s, p50, p99 | (b)/(a) |"
  echo "| --- | --- | --- | --- |"
  accepted=0
  for round in $(seq 1 "$ROUNDS"); do
    read -r a_rps a_p50 a_p99 a_bad _ < <(run "$WORK/healthz.lua" "$G")
    read -r b_rps b_p50 b_p99 b_bad b_total < <(run benches/send.lua "$G" -- "$WORK/targets" "$backend-$$-r$round")
    if [ "$a_bad" != 0 ] || [ "$b_bad" != 0 ]; then
      echo "round $round: non-2xx answers ((a) $a_bad, (b) $b_bad); the figures would not measure accepted sends" >&2
      tail -5 "${BENCH_LOG:-$WORK/gateway.log}" >&2
      exit 1
    fi
    accepted=$((accepted + b_total))
    ratio=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.3f", b / a }')
    echo "| $round | $a_rps, $a_p50, $a_p99 | $b_rps, $b_p50, $b_p99 | $ratio |"
  done
  used=$(curl -fs "$G/v1/subscriptions/$SUB" -H "authorization: Bearer $OP" | jq -r .messages_used)
  warm=$(wc -l <"$WORK/targets")
  echo "202s counted by wrk: $accepted; messages_used charged by the database: $((used - warm)) (warm-up sends excluded)"
  stop_gateway
  if [ "$backend" = postgres ]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE $PG_DB WITH (FORCE)" >/dev/null; PG_DB=; fi
done
