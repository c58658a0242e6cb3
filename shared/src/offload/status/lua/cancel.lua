-- Cancel a job for a caller. ARGV: 4 tenant ('*' for admins), 5 ttl ms for cancelled records.
-- Returns {'cancelled'} | {'requested'} (it is running; the handler will stop) | {'final', state} | {'missing'}.
local info = redis.call('HMGET', rec, 'state', 'tenant', 'cancel_requested')
if not info[1] or (ARGV[4] ~= '*' and info[2] ~= ARGV[4]) then return {'missing'} end
local state = info[1]
if TERMINAL[state] then return {'final', state} end
if state == 'running' then
  if info[3] ~= '1' then
    redis.call('HSET', rec, 'cancel_requested', '1')
    local seq = redis.call('HINCRBY', rec, 'seq', 1)
    redis.call('PUBLISH', P .. ':events:' .. id, cjson.encode({seq = seq, kind = 'cancel_requested',
      state = 'running', at = now}))
  end
  return {'requested'}
end
redis.call('ZREM', P .. ':scheduled', id)
transition(state, 'cancelled', {'finished_at', now, 'cancel_requested', '1',
  'error_code', 'cancelled', 'error_message', 'The job was cancelled before it ran.'},
  {error = {code = 'cancelled', message = 'The job was cancelled before it ran.'}})
retain(ARGV[5])
return {'cancelled'}
