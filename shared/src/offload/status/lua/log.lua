-- Append one line to a running attempt's job log and publish it as a `log` event.
-- ARGV: 4 attempt, 5 line (already bounded by the caller), 6 most lines kept.
-- Returns 1 if written, 0 if the attempt is stale or the job is not running.
local job = load()
if not job or job.state ~= 'running' or job.attempts ~= ARGV[4] then return 0 end
local seq, encoded = notify(job, 'log', {attempt = tonumber(ARGV[4]), line = ARGV[5]})
redis.call('HSET', rec, 'seq', seq)
if redis.call('RPUSH', logs, encoded) > tonumber(ARGV[6]) then
  redis.call('LTRIM', logs, -tonumber(ARGV[6]), -1)
end
redis.call('PUBLISH', P .. ':events:' .. id, encoded)
return 1
