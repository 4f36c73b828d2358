-- POSTs the file named by $BODY; prints p50/p99/p99.9 latency and requests/s.
-- With DISTINCT_PATIENTS=1 every request names a patient not seen before
-- (context.patientId gets a per-thread counter), so per-patient caches miss.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local distinct = os.getenv("DISTINCT_PATIENTS") == "1"
local threads, prefix, suffix, counter = 0, nil, nil, 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  if not distinct then return end
  local _, open = string.find(wrk.body, '"patientId":"', 1, true)
  local close = string.find(wrk.body, '"', open + 1, true)
  prefix = string.sub(wrk.body, 1, close - 1) .. "-" .. wrk.thread:get("id") .. "-"
  suffix = string.sub(wrk.body, close)
end

function request()
  if not distinct then return wrk.request() end
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. counter .. suffix)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("requests/s %.0f  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  errors %d\n",
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
