-- Cancel a job for a caller. ARGV: 4 tenant ('*' for admins), 5 ttl ms for cancelled records.
-- Returns {'cancelled'} | {'requested'} (it is running; the handler will stop) | {'final', state} | {'missing'}.
local job = load('cancel_requested')
if not job or (ARGV[4] ~= '*' and job.tenant ~= ARGV[4]) then return {'outcome', 'missing'} end
if TERMINAL[job.state] then return {'outcome', 'final', 'state', job.state} end
if job.state == 'running' then
  if job.cancel_requested ~= '1' then
    local seq, encoded = notify(job, 'cancel_requested', {state = 'running'})
    redis.call('HSET', rec, 'cancel_requested', '1', 'seq', seq)
    publish(job, encoded)
  end
  return {'outcome', 'requested'}
end
redis.call('ZREM', P .. ':scheduled', id)
local msg = 'The job was cancelled before it ran.'
transition(job, 'cancelled', {'finished_at', now, 'cancel_requested', '1', 'error_code', 'cancelled',
  'error_message', msg}, {error = {code = 'cancelled', message = msg}})
retain(ARGV[5])
return {'outcome', 'cancelled'}
