-- Undo a flow some of whose first messages were never confirmed, as abort.lua undoes a job: if
-- no node has been touched (a worker took none of the messages that did go out), delete every
-- node's record leaving a tombstone (a late message is dropped) and the flow's keys.
-- ARGV: 2 the flow id, 4 tombstone ttl ms.
-- Returns 1 if withdrawn, 0 if a node had moved on (the flow stays), -1 if there is no flow.
local fid = id
local fkey = P .. ':flow:' .. fid
local nodes = redis.call('HGET', fkey, 'nodes')
if not nodes then return -1 end
local jobs = {}
for _, pair in ipairs(cjson.decode(nodes)) do
  point_at(pair[2])
  local job = load()
  if job and ((job.state ~= 'queued' and job.state ~= 'scheduled') or tonumber(job.seq) > 1) then return 0 end
  jobs[#jobs + 1] = job or false
end
for i, pair in ipairs(cjson.decode(nodes)) do
  point_at(pair[2])
  if jobs[i] then unindex(jobs[i]) end
  redis.call('ZREM', P .. ':scheduled', id)
  redis.call('DEL', rec, logs)
  redis.call('SET', P .. ':aborted:' .. id, '1', 'PX', tonumber(ARGV[4]))
end
redis.call('DEL', fkey, fkey .. ':ended')
return 1
