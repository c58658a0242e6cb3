-- Claim jobs whose delay or backoff has passed, leasing each for ARGV[5] ms so that a crashed
-- claimer's jobs are claimed again. A delayed job becomes queued here, before its message is
-- published, so its history always reads scheduled, queued, running.
-- An id with no record or no stored message cannot be published: it is taken off the schedule and
-- returned as lost, for the caller to log and count (it should never happen).
-- ARGV: 2 unused, 4 limit, 5 lease ms. Returns name/value pairs: lease (its score), lost (ids) and due
-- (for each job, what its message is made of: offload.wire.MESSAGE_FIELDS, in that order).
local key = P .. ':scheduled'
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local lease = now + tonumber(ARGV[5])
local lost = {}
local claimed = {}
for _, jid in ipairs(due) do
  id, rec = jid, P .. ':job:' .. jid
  local job = load(unpack(MESSAGE_LOAD))
  if job and (job.payload or job.message) then
    redis.call('ZADD', key, lease, jid)
    if job.state == 'scheduled' then transition(job, 'queued', {}, nil) end
    claimed[#claimed + 1] = message_fields(job)
  else
    redis.call('ZREM', key, jid)
    lost[#lost + 1] = jid
  end
end
return {'lease', lease, 'lost', lost, 'due', claimed}
