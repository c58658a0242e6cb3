-- Claim jobs whose delay or backoff has passed, leasing each for ARGV[5] ms so that a crashed
-- claimer's jobs are claimed again. ARGV: 2 unused, 4 limit, 5 lease ms.
-- Returns a flat list {id, message, id, message, ...}.
local key = P .. ':scheduled'
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, jid in ipairs(due) do
  local message = redis.call('HGET', P .. ':job:' .. jid, 'message')
  if message then
    redis.call('ZADD', key, now + tonumber(ARGV[5]), jid)
    out[#out + 1] = jid
    out[#out + 1] = message
  else
    redis.call('ZREM', key, jid)
  end
end
return out
