-- wrk script for bench/http.sh: POST the request in $BODY_FILE to the URL
-- given on the command line, with the bearer token $REIN_TOKEN (if set).
-- No per-response Lua callback (it would slow wrk down); the script checks
-- effects through the server's /metrics counters instead. At the end it
-- prints one machine-readable line (latencies in microseconds).
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("REIN_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
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
