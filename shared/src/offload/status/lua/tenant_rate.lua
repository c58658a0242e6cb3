-- Take up to `want` requests from a tenant's request-rate bucket, shared by every API process
-- (rates.py TenantRates). GCRA, the generic cell rate algorithm: the bucket is one number, the
-- "theoretical arrival time" `tat` of the next request (ms), in `P:rate:<tenant>` (ARGV[2] is the
-- tenant), which lives until the bucket is full again.
-- ARGV: 4 rate (requests/s), 5 burst (requests), 6 want, 7 now (ms; 0: Redis's own clock, so that
-- processes on hosts whose clocks differ share one time; ARGV[3], the caller's clock, is not used).
-- Returns {granted, wait_ms}: wait_ms is how long until one request is allowed, when none was.
local key = P .. ':rate:' .. id
local rate, burst, want, at = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if at <= 0 then
  local t = redis.call('TIME')
  at = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local interval = 1000 / rate
local tat = tonumber(redis.call('GET', key) or '0')
if tat < at then tat = at end
local room = math.floor((at + burst * interval - tat) / interval + 1e-9)
local granted = math.min(want, room)
if granted < 1 then
  return {0, math.ceil(tat + interval - burst * interval - at - 1e-6)}
end
tat = tat + granted * interval
redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - at) + 1)
return {granted, 0}
