-- Report progress of a running attempt. ARGV: 4 attempt, 5 percent (0-100), 6 message.
-- Returns name/value pairs state and cancel_requested; a stale attempt or finished job changes nothing.
local job = load('cancel_requested')
if not job then return {'state', 'missing', 'cancel_requested', '0'} end
if job.state ~= 'running' or job.attempts ~= ARGV[4] then return {'state', job.state, 'cancel_requested', job.cancel_requested or '0'} end
local seq, encoded = notify(job, 'progress', {state = 'running', attempt = tonumber(ARGV[4]),
  progress = tonumber(ARGV[5]), message = ARGV[6]})
redis.call('HSET', rec, 'progress', ARGV[5], 'progress_message', ARGV[6], 'updated_at', now, 'seq', seq)
publish(job, encoded)
return {'state', job.state, 'cancel_requested', job.cancel_requested or '0'}
