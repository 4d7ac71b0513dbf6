-- wrk script of the benchmark harness: POST one AdmissionReview body over keep-alive, count
-- answers that are not 2xx, and print the results as one JSON line (latencies in microseconds).
--
--   wrk -t1 -c16 -d10s -s benchmarks/post.lua https://127.0.0.1:PORT/mutate -- BODY_FILE [count]
--
-- With "count" as the second argument every response is inspected to count non-2xx statuses
-- exactly; without it only wrk's own status errors (4xx and 5xx) are counted, which is cheaper.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body file " .. tostring(args[1]))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  non2xx = 0
  if args[2] == "count" then
    response = function(status, headers, body)
      if status < 200 or status > 299 then
        non2xx = non2xx + 1
      end
    end
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"non2xx":%d,"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,'
      .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    non2xx_total, latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
