-- A claimed job's message was published and confirmed: release its lease, unless the entry has
-- changed since the claim (the job already ran, failed and was scheduled again for a retry).
-- ARGV: 4 the lease score the claim set. Returns 1 if the lease was released.
local key = P .. ':scheduled'
if tonumber(redis.call('ZSCORE', key, id)) == tonumber(ARGV[4]) then
  redis.call('ZREM', key, id)
  return 1
end
return 0
