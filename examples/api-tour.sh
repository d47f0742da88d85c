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

# --- accounts: needs the operator password (set GATEWAY_ADMIN_PASSWORD when starting the server) -------------------
if [ -z "${OPERATOR_PASSWORD:-}" ]; then
    echo; echo "Set OPERATOR_PASSWORD (and OPERATOR_EMAIL if not admin@gateway.local) to tour the accounts API."
    exit 0
fi
command -v jq >/dev/null || { echo "the accounts tour needs jq"; exit 1; }
json() { curl -fsS -H 'content-type: application/json' "$@"; }
suffix=$(date +%s)

step "the operator signs in"
OP=$(json "$BASE/v1/auth/login" -d "{\"email\":\"${OPERATOR_EMAIL:-admin@gateway.local}\",\"password\":\"$OPERATOR_PASSWORD\"}" | jq -r .access_token)

step "a subscription on the starter tier, with one limit overridden"
SUB=$(json "$BASE/v1/subscriptions" -H "authorization: Bearer $OP" \
    -d "{\"name\":\"Tour $suffix\",\"tier\":\"starter\",\"limit_overrides\":{\"max_instances\":2}}" | tee /dev/stderr | jq -r .id)

step "its owner"
json "$BASE/v1/subscriptions/$SUB/users" -H "authorization: Bearer $OP" \
    -d "{\"email\":\"owner-$suffix@tour.example\",\"password\":\"a long enough password\",\"name\":\"Owner\",\"role\":\"owner\"}"; echo

step "the owner signs in and creates two instances; the third is refused by the limit"
TOKEN=$(json "$BASE/v1/auth/login" -d "{\"email\":\"owner-$suffix@tour.example\",\"password\":\"a long enough password\"}" | jq -r .access_token)
for name in support sales; do
    json "$BASE/v1/instances" -H "authorization: Bearer $TOKEN" -d "{\"name\":\"$name\"}" | jq -c '{id, name, status}'
done
curl -sS -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" "$BASE/v1/instances" -d '{"name":"third"}'; echo

step "the subscription's audit log, newest first"
curl -fsS -H "authorization: Bearer $TOKEN" "$BASE/v1/audit-log?limit=5" | jq -c '.items[] | [.action, .resource, .ip_address]'
