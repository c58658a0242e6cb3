-- Trim one tenant's indexes (ARGV[2]: a tenant, or '_all') of finished jobs whose records have
-- expired. A finished job's index entries are scored by the time it ended, and its record lives a
-- fixed retention after that, so each index loses its expired entries in one ZREMRANGEBYSCORE.
-- ARGV: 4.. pairs of (finished state, cutoff ms: entries scored before it are removed).
-- Returns how many entries were removed. Types with no entry left are forgotten.
local base = P .. ':idx:' .. id
local types_key = P .. ':types:' .. id
local types = redis.call('SMEMBERS', types_key)
local removed = 0
for i = 4, #ARGV, 2 do
  local state, cutoff = ARGV[i], '(' .. ARGV[i + 1]
  for _, jtype in ipairs(types) do
    removed = removed + redis.call('ZREMRANGEBYSCORE', base .. ':t:' .. jtype .. ':s:' .. state, '-inf', cutoff)
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
return removed
