-- wrk script for benches/send-load.sh: POST /v1/instances/{id}/messages, each request with a fresh
-- Idempotency-Key (so every request is a new durable send, never a replay), the instances and their API keys in turn.
--
--   wrk ... -s benches/send.lua http://127.0.0.1:PORT -- TARGETS_FILE RUN_TAG
--
-- TARGETS_FILE: one line per (instance, key): "<instance id> <api key> <recipient>". RUN_TAG makes keys unique
-- across runs against one database. The body is a short text; only the key changes between requests.

local targets = {}
local tag = "run"
local counter = 0
-- A global, not a local: setup() sets it in each thread's own Lua state with thread:set, which a file-level local
-- would shadow (both threads would then send the same keys, and half the requests would be replays).
thread_id = 0
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"), "targets file")
  for line in file:lines() do
    local instance, key, to = line:match("^(%S+) (%S+) (%S+)$")
    if instance then
      targets[#targets + 1] = {
        path = "/v1/instances/" .. instance .. "/messages",
        headers = { ["x-api-key"] = key, ["content-type"] = "application/json" },
        body = '{"to":"' .. to .. '","text":"load test message"}',
      }
    end
  end
  file:close()
  assert(#targets > 0, "no targets")
  tag = (args[2] or "run") .. "-t" .. tostring(thread_id)
end

function request()
  counter = counter + 1
  local target = targets[counter % #targets + 1]
  target.headers["idempotency-key"] = tag .. "-" .. counter
  return wrk.format("POST", target.path, target.headers, target.body)
end
