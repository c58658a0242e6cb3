-- Cancel a flow for a caller: every node that has not started is cancelled; running ones run on.
-- ARGV: 2 the flow id, 4 tenant ('*' for admins).
-- Returns name/value pairs: outcome ('cancelled' | 'final' | 'missing'), state, and cancelled (how many nodes).
local fid = id
local fkey = P .. ':flow:' .. fid
local f = redis.call('HMGET', fkey, 'tenant', 'state')
if not f[1] or (ARGV[4] ~= '*' and f[1] ~= ARGV[4]) then return {'outcome', 'missing'} end
if f[2] ~= 'running' then return {'outcome', 'final', 'state', f[2], 'cancelled', 0} end
local ended = halt_flow(fid, 'cancelled', nil, '')
finish_flow(fid)
return {'outcome', 'cancelled', 'state', redis.call('HGET', fkey, 'state'), 'cancelled', ended}
