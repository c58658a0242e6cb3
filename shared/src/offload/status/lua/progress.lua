-- Report progress of a running attempt. ARGV: 4 attempt, 5 percent (0-100), 6 message.
-- Returns {state, cancel_requested}; a stale attempt or finished job changes nothing.
local info = redis.call('HMGET', rec, 'state', 'attempts', 'cancel_requested')
if not info[1] then return {'missing', '0'} end
if info[1] ~= 'running' or info[2] ~= ARGV[4] then return {info[1], info[3] or '0'} end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
redis.call('HSET', rec, 'progress', ARGV[5], 'progress_message', ARGV[6], 'updated_at', now)
redis.call('PUBLISH', P .. ':events:' .. id, cjson.encode({seq = seq, kind = 'progress', state = 'running',
  at = now, attempt = tonumber(ARGV[4]), progress = tonumber(ARGV[5]), message = ARGV[6]}))
return {info[1], info[3] or '0'}
