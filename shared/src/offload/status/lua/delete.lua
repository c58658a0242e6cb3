-- Delete an ended job (succeeded, failed, cancelled or dead): its record, its log, its index entries.
-- A bulk operation's delete (issue 22); a job still waiting or running is left alone, so that no
-- worker ever starts or ends a job whose record vanished under it.
-- ARGV: 4 tenant ('*' for admins). Returns {'outcome', 'deleted'} | {'outcome', 'state', 'state', s} | {'outcome', 'missing'}.
local job = load()
if not job or (ARGV[4] ~= '*' and job.tenant ~= ARGV[4]) then return {'outcome', 'missing'} end
if not TERMINAL[job.state] then return {'outcome', 'state', 'state', job.state} end
unindex(job)
redis.call('DEL', rec, logs)
return {'outcome', 'deleted'}
