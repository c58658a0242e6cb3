-- Create a job record (state queued or scheduled), atomically with its idempotency key.
-- ARGV: 4 state, 5 run_at ms ('' if none), 6 idempotency key ('' if none), 7 fingerprint,
--       8 idempotency ttl ms, 9 tombstone check ('1' to refuse ids that were aborted),
--       10.. field/value pairs (tenant, type, created_at ... must be among them).
-- Returns {'created', id} | {'exists', id} | {'conflict', existing id}.
local state, run_at, idem, fp, idem_ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local other_id, other_fp = string.sub(existing, 1, sep - 1), string.sub(existing, sep + 1)
    if other_fp ~= fp then return {'conflict', other_id} end
    if redis.call('EXISTS', P .. ':job:' .. other_id) == 1 then return {'exists', other_id} end
  end
end
if redis.call('EXISTS', rec) == 1 then return {'exists', id} end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', rec, 'id', id, 'seq', 0, 'attempts', 0, 'unfinished', 0, 'progress', 0, unpack(fields))
local info = redis.call('HMGET', rec, 'tenant', 'type', 'created_at')
local tenant, jtype, created = info[1], info[2], tonumber(info[3])
redis.call('SADD', P .. ':tenants', tenant)
redis.call('ZADD', P .. ':idx:' .. tenant, created, id)
redis.call('ZADD', P .. ':idx:' .. tenant .. ':t:' .. jtype, created, id)
redis.call('ZADD', P .. ':idx:_all', created, id)
if state == 'scheduled' then
  redis.call('HSET', rec, 'scheduled_for', run_at)
  redis.call('ZADD', P .. ':scheduled', tonumber(run_at), id)
end
if idem ~= '' then redis.call('SET', idem, id .. '|' .. fp, 'PX', idem_ttl) end
transition(nil, state, {}, nil)
return {'created', id}
