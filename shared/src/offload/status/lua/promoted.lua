-- A claim (of a due job, or of a finished job's webhook) was acted on: release its lease, unless
-- the entry changed since the claim (the job already ran, failed and was scheduled again).
-- ARGV: 4 the lease score the claim set, 5 the set ('scheduled' or 'outbox'). Returns 1 if released.
local key = P .. ':' .. ARGV[5]
if tonumber(redis.call('ZSCORE', key, id)) == tonumber(ARGV[4]) then
  redis.call('ZREM', key, id)
  return 1
end
return 0
