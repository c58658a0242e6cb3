-- Record a job that may not run (a wire job refused at adoption): created and ended dead at once,
-- so that a redelivery of its message finds it finished and never runs it.
-- ARGV: 4 error code, 5 error message, 6 field problems as JSON ('' if none), 7 ttl ms,
--       8.. field/value pairs (tenant, type and created_at must be among them).
-- Returns 1 if written, 0 if the job already had a record.
if redis.call('EXISTS', rec) == 1 then return 0 end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
local job = create_record(fields)
transition(job, 'queued', {}, nil)
local ending = {'finished_at', now, 'error_code', ARGV[4], 'error_message', ARGV[5]}
if ARGV[6] ~= '' then
  ending[#ending + 1] = 'error_fields'
  ending[#ending + 1] = ARGV[6]
end
transition(job, 'dead', ending, {error = {code = ARGV[4], message = ARGV[5]}})
retain(ARGV[7])
return 1
