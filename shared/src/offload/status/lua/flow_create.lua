-- Create a flow and every node's job record at once (see the flows section of _prelude.lua).
-- ARGV: 2 the flow id, 4 the flow's fields (JSON object: tenant, created_at, ttl, sinks, jobs,
-- total, ...), 5 the nodes (JSON list of {id, state ('queued' | 'scheduled'), run_at (ms, or 0
-- for a node that waits for its children), fields (flat list of field/value pairs)}),
-- 6 the request's fingerprint.
-- Returns name/value pairs: outcome ('created' | 'exists' | 'conflict': another request, or a
-- node's job id still recorded from an expired flow of the same id).
local fid = id
local fkey = P .. ':flow:' .. fid
local existing = redis.call('HGET', fkey, 'fingerprint')
if existing then
  if existing ~= ARGV[6] then return {'outcome', 'conflict'} end
  return {'outcome', 'exists'}
end
local nodes = cjson.decode(ARGV[5])
for _, node in ipairs(nodes) do
  if redis.call('EXISTS', P .. ':job:' .. node.id) == 1 then return {'outcome', 'conflict'} end
end
local flow = cjson.decode(ARGV[4])
local flat = {'id', fid, 'state', 'running', 'halted', '', 'fingerprint', ARGV[6]}
for name, value in pairs(flow) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', fkey, unpack(flat))
for _, node in ipairs(nodes) do
  point_at(node.id)
  local job = create_record(node.fields)
  if node.state == 'scheduled' and node.run_at > 0 then
    redis.call('HSET', rec, 'scheduled_for', node.run_at)
    redis.call('ZADD', P .. ':scheduled', node.run_at, node.id)
  end
  transition(job, node.state, {}, nil)
end
return {'outcome', 'created'}
