-- Remove index entries whose job record is gone (expired by retention), oldest first.
-- ARGV: 2 the index key (under the prefix), 4 how many of the oldest entries to look at.
-- Returns the number removed. Old live jobs (long delays) are skipped, not removed.
local key = P .. ':' .. ARGV[2]
local oldest = redis.call('ZRANGE', key, 0, tonumber(ARGV[4]) - 1)
local gone = {}
for _, jid in ipairs(oldest) do
  if redis.call('EXISTS', P .. ':job:' .. jid) == 0 then gone[#gone + 1] = jid end
end
if #gone > 0 then redis.call('ZREM', key, unpack(gone)) end
return #gone
