-- A claimed job's message was published and confirmed: mark it queued and drop its lease.
-- Returns 1 if the state changed, 0 if it had moved on (already running, cancelled).
redis.call('ZREM', P .. ':scheduled', id)
local state = redis.call('HGET', rec, 'state')
if state == 'scheduled' then
  transition(state, 'queued', {}, nil)
  return 1
end
return 0
