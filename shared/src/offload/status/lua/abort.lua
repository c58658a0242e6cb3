-- Undo a create whose message was never confirmed: delete the record and leave a tombstone so
-- that a late-arriving message is dropped, not run. Only a job nothing has touched is aborted.
-- ARGV: 4 tombstone ttl ms, 5 idempotency key ('' if none).
-- Returns 1 if aborted, 0 if the job had already moved on.
local info = redis.call('HMGET', rec, 'state', 'tenant', 'type', 'seq')
if not info[1] then return 0 end
if (info[1] ~= 'queued' and info[1] ~= 'scheduled') or tonumber(info[4]) > 1 then return 0 end
local tenant, jtype, state = info[2], info[3], info[1]
local base = P .. ':idx:' .. tenant
redis.call('ZREM', base, id)
redis.call('ZREM', base .. ':t:' .. jtype, id)
redis.call('ZREM', base .. ':s:' .. state, id)
redis.call('ZREM', base .. ':t:' .. jtype .. ':s:' .. state, id)
redis.call('ZREM', P .. ':idx:_all', id)
redis.call('ZREM', P .. ':idx:_all:s:' .. state, id)
redis.call('ZREM', P .. ':scheduled', id)
redis.call('DEL', rec, hist)
if ARGV[5] ~= '' then
  local existing = redis.call('GET', ARGV[5])
  if existing and string.sub(existing, 1, #id) == id then redis.call('DEL', ARGV[5]) end
end
redis.call('SET', P .. ':aborted:' .. id, '1', 'PX', tonumber(ARGV[4]))
return 1
