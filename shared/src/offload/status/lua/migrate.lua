-- Bring one record of layout 1 to layout 2 (see _prelude.lua), keeping its TTL:
-- its history list becomes `h<seq>` fields, and it is listed in the two indexes of its state,
-- scored by its last change. The stored message stays (offload.wire.stored_message reads it).
-- Returns 1 if it was migrated, 0 if it had nothing to migrate, -1 if there is no record.
local job = load('updated_at', 'finished_at', 'payload')
if not job then return -1 end
local hist = rec .. ':history'
local entries = redis.call('LRANGE', hist, 0, -1)
if job.payload and #entries == 0 then return 0 end
local args = {}
for _, raw in ipairs(entries) do
  local event = cjson.decode(raw)
  local extra = {}
  for name, value in pairs(event) do
    if name ~= 'seq' and name ~= 'kind' and name ~= 'state' and name ~= 'at' and name ~= 'attempt'
        and name ~= 'progress' then
      extra[name] = value
    end
  end
  args[#args + 1] = 'h' .. event.seq
  args[#args + 1] = history_entry({state = event.state, at = event.at, attempt = event.attempt or 0,
                                    progress = event.progress or 0}, extra)
end
if #args > 0 then redis.call('HSET', rec, unpack(args)) end
redis.call('HDEL', rec, 'id')
redis.call('DEL', hist)
local score = tonumber(job.finished_at) or tonumber(job.updated_at) or tonumber(job.created_at) or now
for _, key in ipairs(index_keys(job.tenant, job.type, job.state)) do redis.call('ZADD', key, score, id) end
redis.call('SADD', P .. ':tenants', job.tenant)
redis.call('SADD', P .. ':types:' .. job.tenant, job.type)
redis.call('SADD', P .. ':types:_all', job.type)
return 1
