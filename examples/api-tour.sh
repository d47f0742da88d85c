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
INSTANCES=()
for name in support sales; do
    created=$(json "$BASE/v1/instances" -H "authorization: Bearer $TOKEN" -d "{\"name\":\"$name\"}")
    jq -c '{id, name, status}' <<<"$created"
    INSTANCES+=("$(jq -r .id <<<"$created")")
done
I=${INSTANCES[0]}
curl -sS -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" "$BASE/v1/instances" -d '{"name":"third"}'; echo

step "the subscription's audit log, newest first"
curl -fsS -H "authorization: Bearer $TOKEN" "$BASE/v1/audit-log?limit=5" | jq -c '.items[] | [.action, .resource, .ip_address]'

# --- messaging on the sandbox (the simulated WhatsApp network; on by default) ------------------------------------
step "pair the support instance: connect, then the simulated phone scans the QR code"
curl -fsS -X POST "$BASE/v1/instances/$I/connect" -H "authorization: Bearer $TOKEN" | jq -c '{status}'
curl -fsS -X POST "$BASE/v1/sandbox/instances/$I/scan" -H "authorization: Bearer $TOKEN" | jq -c .

step "an API key for the instance (the full key is shown once)"
KEY=$(json "$BASE/v1/instances/$I/api-keys" -H "authorization: Bearer $TOKEN" \
    -d '{"name":"tour","permissions":["messages:send","messages:read"]}' | jq -r .key)
echo "${KEY:0:12}…"

step "who the key is, with the RateLimit headers every key request carries"
curl -fsS -D - "$BASE/v1/key" -H "x-api-key: $KEY" | grep -iE '^(ratelimit|\{)'; echo

step "send a message with the key (idempotent: the retry returns the first answer and is not charged)"
for attempt in 1 2; do
    json "$BASE/v1/instances/$I/messages" -H "x-api-key: $KEY" -H "idempotency-key: tour-$suffix" \
        -d '{"to":"+1 555 010 0200","text":"Your order shipped"}' | jq -c '{id, status}'
done

step "a contact writes to the instance (the sandbox plays the rest of the world)"
json "$BASE/v1/sandbox/instances/$I/inbound" -H "authorization: Bearer $TOKEN" \
    -d '{"from":"+1 555 010 0300","text":"hello, is my order on its way?"}' | jq -c .

step "the instance's messages, oldest first"
curl -fsS "$BASE/v1/instances/$I/messages?limit=10" -H "x-api-key: $KEY" | jq -c '.items[] | [.direction, .status, .text]'

step "usage this month: quota and records (counts are flushed every ~2 s)"
sleep 3
curl -fsS "$BASE/v1/subscriptions/$SUB/usage" -H "authorization: Bearer $TOKEN" | jq -c .
curl -fsS "$BASE/v1/instances/$I/stats" -H "x-api-key: $KEY" | jq -c '.days[-1]? // .'

# --- a plugin (PLUGIN_WASM: a component, e.g. target/wasm-guests/wasm32-wasip2/release/keyword_responder.wasm) -----
if [ -z "${PLUGIN_WASM:-}" ]; then
    echo; echo "Set PLUGIN_WASM to a plugin component (cargo test builds plugins/ into target/wasm-guests) to tour plugins."
    exit 0
fi
step "upload the keyword responder and bind it to the support instance (inbound)"
P=$(json "$BASE/v1/plugins" -H "authorization: Bearer $TOKEN" -d "{\"name\":\"responder-$suffix\"}" | jq -r .id)
curl -fsS "$BASE/v1/plugins/$P/versions" -H "authorization: Bearer $TOKEN" -H 'content-type: application/wasm' \
    --data-binary "@$PLUGIN_WASM" | jq -c '{version, size_bytes, active}'
B=$(json "$BASE/v1/instances/$I/plugins" -H "authorization: Bearer $TOKEN" \
    -d "{\"plugin_id\":\"$P\",\"direction\":\"inbound\",\"config\":{\"rules\":[{\"keywords\":[\"price\"],\"reply\":\"Our prices start at 10 EUR\"}]}}" \
    | jq -r .id)

step "a contact asks for prices; the plugin answers through the outbox"
json "$BASE/v1/sandbox/instances/$I/inbound" -H "authorization: Bearer $TOKEN" \
    -d '{"from":"+1 555 010 0300","text":"what is the price?"}' | jq -c .
sleep 1
curl -fsS "$BASE/v1/instances/$I/messages?limit=10" -H "x-api-key: $KEY" | jq -c '.items[-2:][] | [.direction, .status, .text]'
curl -fsS "$BASE/v1/instances/$I/plugins/$B" -H "authorization: Bearer $TOKEN" | jq -c '{error_count, last_error}'
