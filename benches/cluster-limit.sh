#!/usr/bin/env bash
# Cluster-wide limit accuracy: three gateway processes sharing PostgreSQL and Redis (deploy/local-cluster.sh), one
# API key hammered through all three at once (one wrk per node), far above its limit. Reports the requests admitted
# (2xx) against what the key's GCRA allows over the run: its rate times the duration, plus its burst.
#
#   BENCH_GATEWAY_BIN=target/release/gateway benches/cluster-limit.sh
#   RATE=60000 DURATION=30s CONNECTIONS=16 benches/cluster-limit.sh      # requests per minute for the key
#   GATEWAY_REDIS_LOCAL_FIRST=false benches/cluster-limit.sh             # the exact mode, for comparison
#
# Needs wrk, curl, jq, psql, nginx (for the script; the load goes to the nodes directly). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-60000}
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-16}
export CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d)/cluster}
export GATEWAY_BIN=${BENCH_GATEWAY_BIN:-${GATEWAY_BIN:-target/release/gateway}}
export GATEWAY_LOG_LEVEL=warn
trap 'deploy/local-cluster.sh stop >/dev/null 2>&1 || true' EXIT

out=$(deploy/local-cluster.sh start 3)
field() { sed -n "s/^$1=//p" <<<"$out"; }
LB=$(field url)
read -r -a NODES <<<"$(field nodes)"
json() { curl -fsS "$@" -H 'content-type: application/json'; }
OP=$(json "$LB/v1/auth/login" -d "{\"email\":\"$(field operator_email)\",\"password\":\"$(field operator_password)\"}" \
  | jq -r .access_token)
# The subscription's own limit out of the way: the key's limit is the one measured.
SUB=$(json "$LB/v1/subscriptions" -H "authorization: Bearer $OP" \
  -d '{"name":"Bench","tier":"enterprise","limit_overrides":{"requests_per_minute":100000000}}' | jq -r .id)
I=$(json "$LB/v1/instances" -H "authorization: Bearer $OP" -d "{\"name\":\"bench\",\"subscription_id\":\"$SUB\"}" \
  | jq -r .id)
KEY=$(json "$LB/v1/instances/$I/api-keys" -H "authorization: Bearer $OP" \
  -d "{\"name\":\"bench\",\"permissions\":[\"messages:read\"],\"rate_limit\":$RATE}" | jq -r .key)

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "3 nodes, key limit $RATE/min (burst $((RATE / 6))), wrk -t1 -c$CONNECTIONS -d$DURATION per node;" \
  "local_first: ${GATEWAY_REDIS_LOCAL_FIRST:-true}"
pids=()
for n in "${!NODES[@]}"; do
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "x-api-key: $KEY" "${NODES[$n]}/v1/key" >"$CLUSTER_DIR/wrk-$n.txt" &
  pids+=($!)
done
wait "${pids[@]}"
total=0 refused=0 seconds=0
for n in "${!NODES[@]}"; do
  r=$(awk '/requests in/ { print $1 }' "$CLUSTER_DIR/wrk-$n.txt")
  bad=$(awk '/Non-2xx/ { print $5 }' "$CLUSTER_DIR/wrk-$n.txt")
  s=$(awk '/requests in/ { sub(/s,/, "", $4); print $4 }' "$CLUSTER_DIR/wrk-$n.txt")
  echo "node $((n + 1)): $r requests, ${bad:-0} refused, in ${s}s"
  total=$((total + r)) refused=$((refused + ${bad:-0}))
  seconds=$(awk -v a="$seconds" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
done
admitted=$((total - refused))
awk -v admitted="$admitted" -v total="$total" -v rate="$RATE" -v secs="$seconds" 'BEGIN {
  expected = rate / 60 * secs + rate / 6
  printf "admitted %d of %d offered in %.2f s; allowed by the limit %.0f (rate x time + burst); error %+.2f%%\n",
    admitted, total, secs, expected, (admitted - expected) / expected * 100 }'
