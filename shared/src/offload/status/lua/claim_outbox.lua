-- Claim finished jobs whose webhook is still to be queued, leasing each for ARGV[5] ms.
-- ARGV: 2 unused, 4 limit, 5 lease ms. Returns name/value pairs: lease, and endings (each as name/value
-- pairs: job_id, tenant, url, seq, traceparent, tracestate).
local key = P .. ':outbox'
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local lease = now + tonumber(ARGV[5])
local endings = {}
for _, jid in ipairs(due) do
  local info = redis.call('HMGET', P .. ':job:' .. jid, 'state', 'tenant', 'callback_url', 'seq', 'traceparent',
                          'tracestate')
  if info[1] and TERMINAL[info[1]] and info[3] and info[3] ~= '' then
    redis.call('ZADD', key, lease, jid)
    endings[#endings + 1] = {'job_id', jid, 'tenant', info[2], 'url', info[3], 'seq', info[4],
                             'traceparent', info[5] or '', 'tracestate', info[6] or ''}
  else
    redis.call('ZREM', key, jid)
  end
end
return {'lease', lease, 'endings', endings}
