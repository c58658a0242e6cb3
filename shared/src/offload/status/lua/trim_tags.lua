-- Trim one tenant's tag indexes (ARGV[2]: the tenant) of jobs whose records have expired. A tagged
-- job is scored by when it could first run, so an entry scored after the cutoff (now minus the
-- shortest retention) cannot have expired yet; older ones are checked one by one, oldest first, at
-- most ARGV[4] a call. An old entry whose record still lives (a job kept longer: failed, or still
-- running) is checked again on the next call; reads drop expired entries too (Queries.list_jobs).
-- ARGV: 4 most entries to check, 5 cutoff ms. Returns {'removed', n, 'more', 1 if the budget ran out}.
local tags_key = P .. ':tags:' .. id
local budget = tonumber(ARGV[4])
local removed = 0
for _, tag in ipairs(redis.call('SMEMBERS', tags_key)) do
  local key = P .. ':tag:' .. id .. ':' .. tag
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. ARGV[5], 'LIMIT', 0, budget)
  local gone = {}
  for _, jid in ipairs(old) do
    if redis.call('EXISTS', P .. ':job:' .. jid) == 0 then gone[#gone + 1] = jid end
  end
  if #gone > 0 then
    redis.call('ZREM', key, unpack(gone))
    removed = removed + #gone
  end
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', tags_key, tag) end
  budget = budget - #old
  if budget <= 0 then return {'removed', removed, 'more', #gone > 0 and 1 or 0} end
end
return {'removed', removed, 'more', 0}
