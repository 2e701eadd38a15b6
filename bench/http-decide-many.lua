-- wrk script for bench/state_http.sh: POSTs the bodies of $BODIES_FILE (one
-- JSON body per line) in turn, each thread from its own starting line, with
-- the bearer token $REIN_TOKEN (if set). The requests are formatted once per
-- thread, so the per-request cost is the same as http-decide.lua's. At the
-- end it prints the same `WRK key=value` line as http-decide.lua.
local bodies = {}
for line in io.lines(os.getenv("BODIES_FILE")) do
  if line:match("%S") then bodies[#bodies + 1] = line end
end
assert(#bodies > 0, "no bodies in BODIES_FILE")

local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_no", counter)
  table.insert(threads, thread)
end

local requests, n, i = {}, 0, 0
function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  local token = os.getenv("REIN_TOKEN")
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", nil, headers, body)
  end
  n = #requests
  -- Threads start far apart in the list, so they send different actors
  -- and sessions at the same moment.
  i = ((thread_no or 1) - 1) * math.floor(n / 7 + 1)
end

function request()
  i = i + 1
  return requests[(i % n) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d rps=%.0f p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
