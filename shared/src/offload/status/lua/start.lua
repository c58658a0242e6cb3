-- A worker received the job's message: decide whether to run it and open an attempt.
-- ARGV: 4 max unfinished attempts (deliveries that ended without the job finishing), 5 dead ttl ms.
-- Returns {'run', attempt, cancel_requested, max_retries, tenant, has_follow_ups, parent_id} | {'skip', state} | {'missing'} | {'aborted'} | {'dead', attempt}.
local state = redis.call('HGET', rec, 'state')
if not state then
  if redis.call('EXISTS', P .. ':aborted:' .. id) == 1 then return {'aborted'} end
  return {'missing'}
end
if TERMINAL[state] then return {'skip', state} end
local attempt = redis.call('HINCRBY', rec, 'attempts', 1)
local unfinished = redis.call('HINCRBY', rec, 'unfinished', 1)
if unfinished > tonumber(ARGV[4]) then
  local msg = 'The job was delivered ' .. (unfinished - 1) .. ' times and its worker stopped each time before it finished.'
  transition(state, 'dead', {'finished_at', now, 'error_code', 'too_many_deliveries', 'error_message', msg},
             {error = {code = 'too_many_deliveries', message = msg}})
  retain(ARGV[5])
  return {'dead', attempt}
end
redis.call('ZREM', P .. ':scheduled', id)
transition(state, 'running', {'started_at', now, 'progress', 0, 'progress_message', ''},
           {redelivered = (state == 'running') or nil})
local more = redis.call('HMGET', rec, 'cancel_requested', 'max_retries', 'tenant', 'then', 'parent_id')
return {'run', attempt, more[1] or '0', more[2] or '0', more[3] or '', more[4] and '1' or '0', more[5] or ''}
