-- wrk script: constant-rate (open-loop) declarations for the latency figure of B1.
--
-- wrk alone is closed-loop: a slow answer delays the next request, so queueing never shows
-- in its latencies ("coordinated omission"). Here every request has a slot on a fixed
-- schedule, BENCH_RATE slots per second over all threads, and its latency is counted from
-- the slot's scheduled time, not from when a connection got free to send it. A connection
-- that finishes takes the oldest slot not yet sent, so a late slot is sent by the first
-- free connection. Slots that were due but never sent before the end are counted with the
-- latency they had reached at the end (a lower bound), so an overloaded run cannot look
-- fast by sending less.
--
-- The slot's scheduled time travels in the declaration's CMR reference, which the daemon
-- echoes in its 201 answer: that is how response() finds which slot it answers, since wrk
-- tells the script nothing about connections.
--
-- Environment: BENCH_DATA (as declare.lua), BENCH_RATE (requests per second, all threads),
-- BENCH_THREADS (wrk's -t, to split the rate), BENCH_DURATION (wrk's -d in seconds).
-- Prints one line: "OPENLOOP {json}" with the requested and achieved rate, p50/p90/p99/max
-- in ms, the slots missed and the status counts.
local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } pf_timespec;
   int clock_gettime(int clock, pf_timespec *ts);
]]
local ts = ffi.new("pf_timespec")
local function now_ms()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: the same clock in every thread
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local data = dofile(os.getenv("BENCH_DATA"))
local rate = tonumber(os.getenv("BENCH_RATE"))
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "2")
local duration_ms = tonumber(os.getenv("BENCH_DURATION")) * 1000

local threads = {}
function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

-- Globals, so that done() can read them from each thread.
start = 0           -- ms, the first slot of this thread
interval = 0        -- ms between this thread's slots
last_slot = 0       -- the last slot of the measured window
latencies = {}
local reserved = 0  -- slots handed to delay()
local taken = 0     -- slots sent by request()
statuses = {}

function init(args)
   math.randomseed(7000 + tid)
   interval = 1000 * thread_count / rate
   -- Threads start their schedules half an interval apart, so the merged schedule is even.
   start = now_ms() + 200 + (tid - 1) * interval / thread_count
   -- The window ends 300 ms before wrk stops, so that its last answers can arrive.
   last_slot = math.floor((duration_ms - 500) / interval)
end

-- Called when a connection is ready to send: wait until the next unreserved slot is due.
function delay()
   local due = start + reserved * interval
   reserved = reserved + 1
   local wait = due - now_ms()
   if wait < 0 then return 0 end
   return math.ceil(wait)
end

function request()
   -- The oldest unsent slot; it is due, since this connection's own reservation is.
   local slot = taken
   taken = taken + 1
   local scheduled = start + slot * interval
   if slot > last_slot then scheduled = -1 end -- beyond the measured window
   local carrier = data.carriers[math.random(#data.carriers)]
   local site = data.sites[math.random(#data.sites)]
   local body = string.format(
      '{"kind":"delivery","eventTime":"%s","from":{"partyId":"%s"},"to":{"partyId":"%s","siteId":"%s"},' ..
      '"lines":[{"palletType":"EPAL1","quality":"A","quantity":33,"exchangedQuantity":30}],' ..
      '"references":{"cmr":"OL-%.3f"}}',
      data.eventTime, carrier.id, site.owner, site.id, scheduled)
   return wrk.format("POST", "/v1/ecosystems/" .. data.ecosystem .. "/movements",
      {["Authorization"] = "Bearer " .. carrier.token, ["Idempotency-Key"] = string.format("ol-%d-%d-%d", os.time(), tid, slot),
       ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   local scheduled = tonumber(string.match(body, '"cmr":"OL%-(%-?[%d.]+)"'))
   if scheduled and scheduled >= 0 then
      latencies[#latencies + 1] = now_ms() - scheduled
   end
end

function done(summary, latency, requests)
   local all, total, missed, due_total, sent_total = {}, {}, 0, 0, 0
   local finish = now_ms()
   for _, thread in ipairs(threads) do
      for _, ms in ipairs(thread:get("latencies")) do all[#all + 1] = ms end
      for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
      -- Slots of the window that got no answer: due but unsent, or sent and unanswered.
      local answered = #thread:get("latencies")
      local first = thread:get("start")
      local window = thread:get("last_slot") + 1
      due_total = due_total + window
      for slot = answered, window - 1 do
         missed = missed + 1
         all[#all + 1] = finish - (first + slot * thread:get("interval"))
      end
   end
   table.sort(all)
   local function pct(p) return all[math.max(1, math.ceil(#all * p))] end
   local parts = {}
   for status, n in pairs(total) do table.insert(parts, string.format('"%d":%d', status, n)) end
   table.sort(parts)
   io.write(string.format('OPENLOOP {"rate":%.1f,"achieved":%.1f,"slots":%d,"missed":%d,' ..
      '"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"statuses":{%s}}\n',
      rate, (due_total - missed) / ((duration_ms - 500) / 1000), due_total, missed,
      pct(0.5), pct(0.9), pct(0.99), all[#all], table.concat(parts, ",")))
end
