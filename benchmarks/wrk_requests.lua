-- wrk script of benchmarks/bench_serving.py: replays pre-built POST /predict requests.
--
--   wrk -t1 -c8 -d10s -s benchmarks/wrk_requests.lua http://127.0.0.1:3000 -- REQUESTS_FILE
--
-- REQUESTS_FILE holds complete HTTP/1.1 requests (head and body), each preceded by a line
-- with its length in bytes; bench_serving writes it. Each connection cycles through them
-- from its own offset. At the end one JSON line starting with "WRK_RESULT " gives the
-- counts and the latency percentiles in microseconds.

local requests = {}
local position = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  while true do
    local line = file:read("*l")
    if line == nil then break end
    requests[#requests + 1] = file:read(tonumber(line))
  end
  file:close()
  position = math.random(#requests) - 1
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
