#!/usr/bin/env bash
# Load benchmark of the edge: one release gateway on loopback (SQLite in a temporary directory), then wrk against
# (a) GET /healthz, no auth, and (b) GET /v1/key with a cached API key: authenticated, rate-limited (a generous
# limit, so nothing is refused), counted (API-call usage and key usage, flushed in batches). Same machine, same run.
#
#   benches/edge-load.sh                  # 3 rounds of 10 s per endpoint, 1 wrk thread, 50 connections, 8 keys
#   DURATION=20s CONNECTIONS=100 benches/edge-load.sh
#   REDIS_URL=redis://127.0.0.1:6379 benches/edge-load.sh   # limits through Redis (one round trip per request)
#
# Needs wrk (apt-get install -y wrk), curl and jq. Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=/work/target}"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
# PIN=1: the gateway on CPU 0 and wrk on CPU 1, so the load generator does not take CPU time from the server
# (on 2 vCPUs it otherwise competes with it, and more so for the larger answers of (b)).
SERVER_CPU= CLIENT_CPU=
if [ "${PIN:-0}" = 1 ]; then SERVER_CPU="taskset -c 0" CLIENT_CPU="taskset -c 1"; fi
PORT=${PORT:-18497}
G="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
GW_PID=
trap '[ -n "$GW_PID" ] && { kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; }; rm -rf "$WORK"' EXIT

# BENCH_GATEWAY_BIN: a gateway binary already built (the shared target dir may be rebuilt by others meanwhile).
if [ -z "${BENCH_GATEWAY_BIN:-}" ]; then
  CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p gateway >/dev/null
  BENCH_GATEWAY_BIN=$CARGO_TARGET_DIR/release/gateway
fi
GATEWAY_SERVER_LISTEN=127.0.0.1:$PORT \
GATEWAY_DATABASE_URL="sqlite://$WORK/gateway.db" \
GATEWAY_ADMIN_PASSWORD='bench operator password' \
GATEWAY_LOG_LEVEL=warn \
GATEWAY_WHATSAPP_ENABLED=false \
GATEWAY_REDIS_URL="${REDIS_URL:-}" \
  $SERVER_CPU "$BENCH_GATEWAY_BIN" serve >"${BENCH_LOG:-$WORK/gateway.log}" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do curl -fs "$G/healthz" >/dev/null && break; sleep 0.1; done

json() { curl -fs "$@" -H 'content-type: application/json'; }
OP=$(json "$G/v1/auth/login" -d '{"email":"admin@gateway.local","password":"bench operator password"}' | jq -r .access_token)
# Generous limits so (b) measures the cost of deciding, not of refusing.
SUB=$(json "$G/v1/subscriptions" -H "authorization: Bearer $OP" \
  -d '{"name":"Bench","tier":"enterprise","limit_overrides":{"requests_per_minute":100000000}}' | jq -r .id)
I=$(json "$G/v1/instances" -H "authorization: Bearer $OP" -d "{\"name\":\"bench\",\"subscription_id\":\"$SUB\"}" | jq -r .id)
# Several keys in turn: one key may make at most 1,000,000 requests a minute (the API's cap, burst a sixth of it),
# which this machine exceeds within seconds; a refused request is cheaper than an answered one and would flatter
# (b). Both endpoints go through the same wrk script, so wrk's own cost is the same for both.
KEY_COUNT=${KEY_COUNT:-8}
KEYS=()
for n in $(seq 1 "$KEY_COUNT"); do
  KEYS+=("$(json "$G/v1/instances/$I/api-keys" -H "authorization: Bearer $OP" \
    -d "{\"name\":\"bench $n\",\"permissions\":[\"messages:read\"],\"rate_limit\":1000000}" | jq -r .key)")
done
for key in "${KEYS[@]}"; do curl -fs "$G/v1/key" -H "x-api-key: $key" >/dev/null; done   # warm the key cache

# requests.lua: `wrk.requests` (built in init) are sent in turn; prebuilt, so wrk formats nothing per request.
script() {  # $1: path, then the header values (one request per value; none: one request without the header)
  local path=$1; shift
  {
    echo "local list = {}"
    echo "init = function()"
    if [ "$#" -eq 0 ]; then
      echo "  list[1] = wrk.format('GET', '$path')"
    else
      for value in "$@"; do echo "  list[#list + 1] = wrk.format('GET', '$path', { ['x-api-key'] = '$value' })"; done
    fi
    echo "end"
    echo "local i = 0"
    echo "request = function() i = i % #list + 1; return list[i] end"
  } >"$WORK/requests.lua"
}

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; $KEY_COUNT keys in turn; $ROUNDS rounds of (a) then (b);" \
  "pinned: ${PIN:-0}; redis: ${REDIS_URL:-none}"
# One wrk run: prints "<req/s> <p50> <p99> <non-2xx>".
run() {
  $CLIENT_CPU wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/requests.lua" "$G" | awk '
    /Requests\/sec/ { rps = $2 } / 50%/ { p50 = $2 } / 99%/ { p99 = $2 } /Non-2xx/ { bad = $5 }
    END { printf "%s %s %s %d\n", rps, p50, p99, bad }'
}
echo "| round | (a) /healthz req/s, p50, p99 | (b) /v1/key req/s, p50, p99 | (b)/(a) |"
echo "| --- | --- | --- | --- |"
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  script /healthz
  read -r a_rps a_p50 a_p99 a_bad < <(run)
  script /v1/key "${KEYS[@]}"
  read -r b_rps b_p50 b_p99 b_bad < <(run)
  if [ "$a_bad" != 0 ] || [ "$b_bad" != 0 ]; then
    echo "round $round: non-2xx answers ((a) $a_bad, (b) $b_bad); the figures would not measure answered requests" >&2
    exit 1
  fi
  ratio=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", b / a }')
  ratios+=("$ratio")
  echo "| $round | $a_rps, $a_p50, $a_p99 | $b_rps, $b_p50, $b_p99 | $ratio |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "median (b)/(a): $median"
