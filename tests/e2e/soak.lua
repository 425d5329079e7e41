-- The soak's load for wrk (tests/e2e/soak.rs starts wrk with this script).
--
-- The requests come from the pool the test wrote (a Lua file named by EVENTSEAL_SOAK_POOL):
-- events to seal, sealed events to open, and sealed events with a tampered ciphertext, in
-- the mix the test chose. Each connection takes the next request of the pool in turn.
-- Answers are counted by status; a 503 without Retry-After is counted apart (every 503
-- must say when to come back). done() prints one line the test reads: SOAK-WRK <json>.

local pool = dofile(os.getenv("EVENTSEAL_SOAK_POOL"))
local requests = {}
local next_request = 1

-- Per thread; done() adds them up.
statuses = {}
without_retry_after = 0

function init(args)
    for i, entry in ipairs(pool) do
        requests[i] = wrk.format("POST", entry.path, entry.headers, entry.body)
    end
end

function request()
    local raw = requests[next_request]
    next_request = next_request % #requests + 1
    return raw
end

function response(status, headers, body)
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
        without_retry_after = without_retry_after + 1
    end
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function done(summary, latency, _)
    local total, missing = {}, 0
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do
            total[status] = (total[status] or 0) + n
        end
        missing = missing + thread:get("without_retry_after")
    end
    local parts = {}
    for status, n in pairs(total) do
        table.insert(parts, string.format('"%s":%d', status, n))
    end
    local errors = summary.errors
    io.write(string.format(
        'SOAK-WRK {"statuses":{%s},"without_retry_after":%d,"requests":%d,"seconds":%.3f,' ..
        '"p50_us":%d,"p99_us":%d,"max_us":%d,"connect_errors":%d,"read_errors":%d,' ..
        '"write_errors":%d,"timeouts":%d}\n',
        table.concat(parts, ","), missing, summary.requests, summary.duration / 1e6,
        latency:percentile(50), latency:percentile(99), latency.max, errors.connect,
        errors.read, errors.write, errors.timeout))
end
