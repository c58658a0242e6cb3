-- End a running attempt. ARGV: 4 attempt, 5 new state (succeeded|failed|retrying|cancelled|dead),
-- 6 ttl ms (0: keep), 7 result JSON ('' if none), 8 error code, 9 error message, 10 retry at ms,
-- 11 '0' when a retrying attempt was held back before it tried (not counted: attempts goes back).
-- Returns 1 if written, 0 if the attempt is stale or the job already moved on.
local job = load('deferrals')
if not job or job.state ~= 'running' or job.attempts ~= ARGV[4] then return 0 end
local new = ARGV[5]
local fields, extra
if new == 'succeeded' then
  fields = {'unfinished', 0, 'finished_at', now, 'progress', 100, 'result', ARGV[7]}
  if job.error_code and job.error_code ~= '' then  -- an earlier attempt failed; this one did not
    for _, value in ipairs({'error_code', '', 'error_message', ''}) do fields[#fields + 1] = value end
  end
elseif new == 'retrying' then
  fields = {'unfinished', 0, 'error_code', ARGV[8], 'error_message', ARGV[9], 'scheduled_for', ARGV[10]}
  extra = {error = {code = ARGV[8], message = ARGV[9]}, retry_at = tonumber(ARGV[10])}
  if ARGV[11] == '0' then
    for _, value in ipairs({'attempts', tonumber(ARGV[4]) - 1, 'deferrals', (tonumber(job.deferrals) or 0) + 1}) do
      fields[#fields + 1] = value
    end
    extra.counted = false
  end
  redis.call('ZADD', P .. ':scheduled', tonumber(ARGV[10]), id)
else
  fields = {'unfinished', 0, 'finished_at', now, 'error_code', ARGV[8], 'error_message', ARGV[9]}
  extra = {error = {code = ARGV[8], message = ARGV[9]}}
end
transition(job, new, fields, extra)
retain(ARGV[6])
return 1
