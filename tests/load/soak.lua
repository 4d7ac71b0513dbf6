-- wrk script for the soak and rotation tests: POST one AdmissionReview body over keep-alive and
-- print one JSON line with the counts of requests, of non-2xx answers and of socket errors.
--   wrk -t1 -c64 -d20s -s soak.lua https://127.0.0.1:PORT/mutate -- BODY_FILE

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(99), latency.max))
end
