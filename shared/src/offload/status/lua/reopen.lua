-- Manually retry a failed, dead or cancelled job: back to queued, kept until it ends again.
-- ARGV: 4 tenant ('*' for admins). Returns {'queued', {what its message is made of}} | {'state', state} | {'missing'}.
local job = load(unpack(MESSAGE_LOAD))
if not job or (ARGV[4] ~= '*' and job.tenant ~= ARGV[4]) then return {'outcome', 'missing'} end
local state = job.state
if state ~= 'failed' and state ~= 'dead' and state ~= 'cancelled' then return {'outcome', 'state', 'state', state} end
retain(0)
transition(job, 'queued', {'unfinished', 0, 'cancel_requested', '0', 'finished_at', '', 'result', '',
  'error_code', '', 'error_message', '', 'error_fields', '', 'progress', 0, 'progress_message', ''},
  {reopened = true})
return {'outcome', 'queued', 'message', message_fields(job)}
