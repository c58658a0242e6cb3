-- Claim finished jobs whose webhook is still to be queued, leasing each for ARGV[5] ms.
-- ARGV: 2 unused, 4 limit, 5 lease ms. Returns {lease, id, tenant, url, seq, id, tenant, url, seq, ...}.
local key = P .. ':outbox'
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local lease = now + tonumber(ARGV[5])
local out = {lease}
for _, jid in ipairs(due) do
  local info = redis.call('HMGET', P .. ':job:' .. jid, 'state', 'tenant', 'callback_url', 'seq')
  if info[1] and TERMINAL[info[1]] and info[3] and info[3] ~= '' then
    redis.call('ZADD', key, lease, jid)
    out[#out + 1] = jid
    out[#out + 1] = info[2]
    out[#out + 1] = info[3]
    out[#out + 1] = info[4]
  else
    redis.call('ZREM', key, jid)
  end
end
return out
