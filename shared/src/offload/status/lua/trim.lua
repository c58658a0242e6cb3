-- Trim one tenant's indexes (ARGV[2]: a tenant, or '_all') of finished jobs whose records have
-- expired. A finished job's index entries are scored by the time it ended, and its record lives a
-- fixed retention after that, so the expired entries are the lowest-ranked of each index and go by
-- rank. At most ARGV[4] entries go per call, so that no call holds Redis for long (a mass expiry
-- of a million jobs is trimmed in steps of a few milliseconds, not in one two-second call).
-- The error indexes (`P:erridx:<tenant>:<code>`) are trimmed the same way, by the cutoff of the
-- longest retention of a state with an error (ARGV[5]).
-- ARGV: 4 most entries to remove, 5 the error indexes' cutoff ms, 6.. pairs of (finished state,
-- cutoff ms: entries scored before it are removed).
-- Returns {removed, 1 if more are left to remove else 0}. Types and error codes with no entry
-- left are forgotten.
local base = P .. ':idx:' .. id
local types_key = P .. ':types:' .. id
local types = redis.call('SMEMBERS', types_key)
local budget = tonumber(ARGV[4])
local removed = 0
local codes_key = P .. ':errors:' .. id

-- Remove the entries of `key` scored before `cutoff` (its lowest-ranked) within the budget left;
-- true once the budget is spent.
local function drop_expired(key, cutoff)
  local expired = redis.call('ZCOUNT', key, '-inf', '(' .. cutoff)
  if expired == 0 then return false end
  local take = math.min(expired, budget)
  redis.call('ZREMRANGEBYRANK', key, 0, take - 1)
  removed = removed + take
  budget = budget - take
  return budget == 0
end

for _, code in ipairs(redis.call('SMEMBERS', codes_key)) do
  local key = P .. ':erridx:' .. id .. ':' .. code
  if drop_expired(key, ARGV[5]) then return {'removed', removed, 'more', 1} end
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', codes_key, code) end
end
for i = 6, #ARGV, 2 do
  for _, jtype in ipairs(types) do
    if drop_expired(base .. ':t:' .. jtype .. ':s:' .. ARGV[i], ARGV[i + 1]) then
      return {'removed', removed, 'more', 1}
    end
  end
end
local STATES = {'queued', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'dead'}
for _, jtype in ipairs(types) do
  local listed = false
  for _, state in ipairs(STATES) do
    if redis.call('EXISTS', base .. ':t:' .. jtype .. ':s:' .. state) == 1 then
      listed = true
      break
    end
  end
  if not listed then redis.call('SREM', types_key, jtype) end
end
return {'removed', removed, 'more', 0}
