-- Fail a queued job whose message could not be published (a manual retry that did not enqueue).
-- ARGV: 4 error code, 5 error message, 6 ttl ms. Returns 1 if written.
local job = load()
if not job or job.state ~= 'queued' then return 0 end
transition(job, 'failed', {'finished_at', now, 'error_code', ARGV[4], 'error_message', ARGV[5]},
  {error = {code = ARGV[4], message = ARGV[5]}})
retain(ARGV[6])
return 1
