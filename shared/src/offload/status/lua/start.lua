-- A worker received the job's message: decide whether to run it and open an attempt.
-- ARGV: 4 max unfinished attempts (deliveries that ended without the job finishing), 5 dead ttl ms.
-- Returns name/value pairs: outcome 'run' with attempt, try (the attempt less the redeliveries of cut
-- attempts: what the retry policy counts), cancel_requested, max_retries, tenant, has_follow_ups,
-- parent_id and has_callback; 'skip' with state; 'dead' with attempt; 'missing'; 'aborted'.
local job = load('unfinished', 'reruns', 'cancel_requested', 'max_retries', 'then', 'parent_id')
if not job then
  if redis.call('EXISTS', P .. ':aborted:' .. id) == 1 then return {'outcome', 'aborted'} end
  return {'outcome', 'missing'}
end
local state = job.state
if TERMINAL[state] then return {'outcome', 'skip', 'state', state} end
local attempt = (tonumber(job.attempts) or 0) + 1
local unfinished = (tonumber(job.unfinished) or 0) + 1
if unfinished > tonumber(ARGV[4]) then
  local msg = 'The job was delivered ' .. (unfinished - 1) .. ' times and its worker stopped each time before it finished.'
  transition(job, 'dead', {'attempts', attempt, 'unfinished', unfinished, 'finished_at', now,
    'error_code', 'too_many_deliveries', 'error_message', msg}, {error = {code = 'too_many_deliveries', message = msg}})
  retain(ARGV[5])
  return {'outcome', 'dead', 'attempt', attempt}
end
if state == 'scheduled' or state == 'retrying' then redis.call('ZREM', P .. ':scheduled', id) end
-- A message delivered again while its job still runs is the rerun of a cut attempt: it is counted as
-- an attempt (the record's attempt numbers stay unique), but it uses up none of the job's retries.
local reruns = (tonumber(job.reruns) or 0) + (state == 'running' and 1 or 0)
transition(job, 'running', {'attempts', attempt, 'reruns', reruns, 'unfinished', unfinished, 'started_at', now,
  'progress', 0, 'progress_message', ''}, {redelivered = (state == 'running') or nil})
return {'outcome', 'run', 'attempt', attempt, 'try', attempt - reruns, 'cancel_requested', job.cancel_requested or '0',
  'max_retries', job.max_retries or '0', 'tenant', job.tenant or '', 'has_follow_ups', job['then'] and '1' or '0',
  'parent_id', job.parent_id or '', 'has_callback', (job.callback_url or '') ~= '' and '1' or '0'}
