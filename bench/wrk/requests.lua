-- wrk script used by the benchmark (bench/scenarios.py) for every HTTP scenario.
--
--   wrk -t T -c C -d D URL -s bench/wrk/requests.lua -- FILE EXPECTED MODE THREADS
--
-- FILE: one request per line, "PATH<TAB>TOKEN<TAB>BODY" ("-" for no token / no body: a GET).
-- EXPECTED: the one status code that counts as a success; anything else is counted as "bad".
-- MODE: "once" (each line is sent at most once: every sign-up is a distinct student; a thread
--       that runs out wraps around and counts "exhausted") or "cycle" (reads: lines repeat).
-- THREADS: the -t value, so that thread k takes lines k, k+T, k+2T, ...
--
-- Requests are built once, in init() (before wrk starts its clock), so request() only indexes
-- a table. done() prints one line "WRKJSON {...}" that bench/harness.py parses.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file, mode, nthreads = args[1], args[3], tonumber(args[4])
   expected = tonumber(args[2])
   once = (mode == "once")
   bad = 0
   exhausted = 0
   statuses = {}
   reqs = {}
   local host = wrk.headers["Host"]
   local n = 0
   for line in io.lines(file) do
      if n % nthreads == tid then
         local path, token, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
         local s = {}
         if body ~= "-" then
            s[1] = "POST " .. path .. " HTTP/1.1"
         else
            s[1] = "GET " .. path .. " HTTP/1.1"
         end
         s[#s + 1] = "Host: " .. host
         if token ~= "-" then
            s[#s + 1] = "Authorization: Bearer " .. token
         end
         if body ~= "-" then
            s[#s + 1] = "Content-Type: application/json"
            s[#s + 1] = "Content-Length: " .. #body
            reqs[#reqs + 1] = table.concat(s, "\r\n") .. "\r\n\r\n" .. body
         else
            reqs[#reqs + 1] = table.concat(s, "\r\n") .. "\r\n\r\n"
         end
      end
      n = n + 1
   end
   count = #reqs
   i = 0
end

function request()
   i = i + 1
   if i > count then
      i = 1
      if once then
         exhausted = exhausted + 1
      end
   end
   return reqs[i]
end

function response(status, headers, body)
   if status ~= expected then
      bad = bad + 1
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local bad_total, exhausted_total, lines = 0, 0, 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      bad_total = bad_total + thread:get("bad")
      exhausted_total = exhausted_total + thread:get("exhausted")
      lines = lines + thread:get("count")
      for status, n in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(by_status) do
      parts[#parts + 1] = string.format('"%d": %d', status, n)
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "bad": %d, "exhausted": %d, "lines": %d, ' ..
      '"unexpected": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes, bad_total, exhausted_total, lines,
      table.concat(parts, ", "), e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), latency:percentile(99.9)))
end
