#!/usr/bin/env bash
# Load benchmark of the edge: one release gateway on loopback (SQLite in a temporary directory), then wrk against
# (a) GET /healthz, no auth, and (b) GET /v1/key with a cached API key: authenticated, rate-limited (a generous
# limit, so nothing is refused), counted (API-call usage and key usage, flushed in batches). Same machine, same run.
#
#   benches/edge-load.sh                  # 10 s per endpoint, 1 wrk thread, 50 connections
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
  "$BENCH_GATEWAY_BIN" serve >"${BENCH_LOG:-$WORK/gateway.log}" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do curl -fs "$G/healthz" >/dev/null && break; sleep 0.1; done

json() { curl -fs "$@" -H 'content-type: application/json'; }
OP=$(json "$G/v1/auth/login" -d '{"email":"admin@gateway.local","password":"bench operator password"}' | jq -r .access_token)
# Generous limits so (b) measures the cost of deciding, not of refusing.
SUB=$(json "$G/v1/subscriptions" -H "authorization: Bearer $OP" \
  -d '{"name":"Bench","tier":"enterprise","limit_overrides":{"requests_per_minute":100000000}}' | jq -r .id)
I=$(json "$G/v1/instances" -H "authorization: Bearer $OP" -d "{\"name\":\"bench\",\"subscription_id\":\"$SUB\"}" | jq -r .id)
KEY=$(json "$G/v1/instances/$I/api-keys" -H "authorization: Bearer $OP" \
  -d '{"name":"bench","permissions":["messages:read"],"rate_limit":1000000}' | jq -r .key)
curl -fs "$G/v1/key" -H "x-api-key: $KEY" >/dev/null   # warm the key cache

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; redis: ${REDIS_URL:-none}"
echo "== (a) GET /healthz (no auth)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$G/healthz" | grep -E 'Requests/sec|50%|99%|Non-2xx'
echo "== (b) GET /v1/key (API key, rate-limited, counted)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "x-api-key: $KEY" "$G/v1/key" | grep -E 'Requests/sec|50%|99%|Non-2xx'
