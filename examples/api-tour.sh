#!/usr/bin/env bash
# A tour of the HTTP API against a running gateway (default: the embedded one on 127.0.0.1:8080).
#   cargo run --release -p gateway -- serve      # in another terminal
#   examples/api-tour.sh
# It grows with the API; every call here is one the server answers today.
set -euo pipefail
BASE="${GATEWAY_URL:-http://127.0.0.1:8080}"

step() { printf '\n### %s\n' "$*"; }

step "liveness: the process is up"
curl -fsS "$BASE/healthz"; echo

step "readiness: the database answers"
curl -fsS "$BASE/readyz"; echo

step "the request id is echoed back (or generated)"
curl -fsS -o /dev/null -D - -H 'x-request-id: tour-1' "$BASE/healthz" | grep -i '^x-request-id'

step "errors are RFC 9457 problem+json with a stable type"
curl -sS -i "$BASE/no/such/route" | sed -n '1p;/^content-type/Ip;$p'; echo

step "the OpenAPI 3.1 document (paths only)"
curl -fsS "$BASE/openapi.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["openapi"], sorted(d["paths"]))'

echo; echo "Interactive docs: $BASE/docs"
