-- Create a job record (state queued or scheduled), atomically with its idempotency key.
-- ARGV: 4 state, 5 run_at ms ('' if none), 6 idempotency key ('' if none), 7 fingerprint,
--       8 idempotency ttl ms, 9 unused, 10.. field/value pairs (tenant, type and created_at
--       must be among them).
-- Returns, as name/value pairs: outcome ('created' | 'exists' | 'conflict') and job_id (this one, or the existing).
local state, run_at, idem, fp, idem_ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local other_id, other_fp = string.sub(existing, 1, sep - 1), string.sub(existing, sep + 1)
    if other_fp ~= fp then return {'outcome', 'conflict', 'job_id', other_id} end
    if redis.call('EXISTS', P .. ':job:' .. other_id) == 1 then return {'outcome', 'exists', 'job_id', other_id} end
  end
end
if redis.call('EXISTS', rec) == 1 then return {'outcome', 'exists', 'job_id', id} end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
if state == 'scheduled' then
  fields[#fields + 1] = 'scheduled_for'
  fields[#fields + 1] = run_at
  redis.call('ZADD', P .. ':scheduled', tonumber(run_at), id)
end
local job = create_record(fields)
if idem ~= '' then redis.call('SET', idem, id .. '|' .. fp, 'PX', idem_ttl) end
transition(job, state, {}, nil)
return {'outcome', 'created', 'job_id', id}
