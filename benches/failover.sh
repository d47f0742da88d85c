#!/usr/bin/env bash
# Failover at full scale (issue #14): BENCH_INSTANCES (1,000) sandbox instances paired through the API on 3 gateway
# nodes (one PostgreSQL database, one shared `gateway sandbox-network` process, the default 10 s lease), senders
# sending through every live node with unique Idempotency-Keys, then
#   1. kill -9 of the node running the first instance: how many instances it ran, the p50/p99/max time from the
#      kill to each of them `connected` on a survivor (its `last_connected_at`, listed through a survivor, and when
#      a 200 ms poll first saw it), accepted / lost / duplicated;
#   2. the killed node started again, then a rolling restart (each node SIGTERM, started, ready, the next): requests
#      by status class, lost, duplicated.
# The load generator is the e2e harness's (tests/src/load.rs), run as the ignored `failover_benchmark` test; it
# fails on a lost, duplicated or refused message, or an answer other than 2xx or 503 with Retry-After.
#
#   BENCH_GATEWAY_BIN=target/release/gateway benches/failover.sh
#   BENCH_INSTANCES=300 BENCH_SENDS=600 BENCH_SENDERS=8 BENCH_LEASE_TTL_MS=10000 benches/failover.sh
#
# Needs PostgreSQL (GW_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres; a fresh database is
# created and dropped). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
export GW_TEST_POSTGRES_URL=${GW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export GW_TEST_REQUIRE_POSTGRES=1
# Redis stays out: the measurement is of ownership and the sandbox, not of limits.
unset GW_TEST_REDIS_URL
if [ -z "${BENCH_GATEWAY_BIN:-}" ]; then
  cargo build --release -p gateway >/dev/null
  BENCH_GATEWAY_BIN=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/gateway
fi
export BENCH_GATEWAY_BIN=$(realpath "$BENCH_GATEWAY_BIN")
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD); binary: $BENCH_GATEWAY_BIN"
cargo test -p gateway --test e2e --locked -- --ignored --exact failover::failover_benchmark --nocapture --test-threads=1
