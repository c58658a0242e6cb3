-- Shared helpers, prepended to every script. ARGV[1] is the key prefix, ARGV[2] the job id,
-- ARGV[3] the current time in milliseconds.
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rec = P .. ':job:' .. id
local hist = rec .. ':history'

-- Move a job between the per-state indexes of its tenant and type (and the all-tenant one).
local function index_state(tenant, jtype, old, new, score)
  local base = P .. ':idx:' .. tenant
  local all = P .. ':idx:_all'
  if old and old ~= '' and old ~= new then
    redis.call('ZREM', base .. ':s:' .. old, id)
    redis.call('ZREM', base .. ':t:' .. jtype .. ':s:' .. old, id)
    redis.call('ZREM', all .. ':s:' .. old, id)
  end
  redis.call('ZADD', base .. ':s:' .. new, score, id)
  redis.call('ZADD', base .. ':t:' .. jtype .. ':s:' .. new, score, id)
  redis.call('ZADD', all .. ':s:' .. new, score, id)
end

-- Record a state change: bump seq, write fields, append history, publish the event.
-- `fields` is a flat list of extra hash fields; `extra` is merged into the event.
local function transition(old, new, fields, extra)
  local seq = redis.call('HINCRBY', rec, 'seq', 1)
  local args = {'state', new, 'updated_at', now}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call('HSET', rec, unpack(args))
  local info = redis.call('HMGET', rec, 'tenant', 'type', 'created_at', 'attempts', 'progress')
  index_state(info[1], info[2], old, new, tonumber(info[3]))
  local event = {seq = seq, kind = 'state', state = new, at = now,
                 attempt = tonumber(info[4]) or 0, progress = tonumber(info[5]) or 0}
  if extra then for k, v in pairs(extra) do event[k] = v end end
  local encoded = cjson.encode(event)
  redis.call('RPUSH', hist, encoded)
  redis.call('LTRIM', hist, -200, -1)
  redis.call('PUBLISH', P .. ':events:' .. id, encoded)
  return seq
end

-- Give a finished job its retention; an active job never expires.
local function retain(ttl)
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', rec, ttl)
    redis.call('PEXPIRE', hist, ttl)
  else
    redis.call('PERSIST', rec)
    redis.call('PERSIST', hist)
  end
end

local TERMINAL = {succeeded = true, failed = true, cancelled = true, dead = true}
