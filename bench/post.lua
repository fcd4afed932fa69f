-- wrk script: POST one body file with every request.
--   wrk ... -s bench/post.lua URL -- BODY_FILE CONTENT_TYPE [AUTHORIZATION [DELAY_MS]]
-- An empty AUTHORIZATION sends none; DELAY_MS makes each connection wait that long between requests
-- (a paced load below saturation).
-- At the end it prints one line "bench-result {json}" for bench/run.py: requests, non-2xx replies
-- (wrk counts statuses over 399), socket errors and latency percentiles in microseconds. No
-- response() callback: it would make wrk parse every reply in Lua and slow the load generator.

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = args[2]
   if args[3] and args[3] ~= "" then
      wrk.headers["Authorization"] = args[3]
   end
   if args[4] then
      local pause = tonumber(args[4])
      function delay()
         return pause
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'bench-result {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
      summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
