-- Undo a create whose message was never confirmed: delete the record and leave a tombstone so
-- that a late-arriving message is dropped, not run. Only a job nothing has touched is aborted.
-- ARGV: 4 tombstone ttl ms, 5 idempotency key ('' if none).
-- Returns 1 if aborted, 0 if the job had already moved on (a worker took its message), -1 if
-- there is no record.
local job = load()
if not job then return -1 end
if (job.state ~= 'queued' and job.state ~= 'scheduled') or tonumber(job.seq) > 1 then return 0 end
unindex(job)
redis.call('ZREM', P .. ':scheduled', id)
redis.call('DEL', rec, logs)
if ARGV[5] ~= '' then
  local existing = redis.call('GET', ARGV[5])
  if existing and string.sub(existing, 1, #id) == id then redis.call('DEL', ARGV[5]) end
end
redis.call('SET', P .. ':aborted:' .. id, '1', 'PX', tonumber(ARGV[4]))
return 1
