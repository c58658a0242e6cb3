-- Shared helpers, prepended to every script. ARGV[1] is the key prefix, ARGV[2] the job id,
-- ARGV[3] the current time in milliseconds. Each redis.call costs a few microseconds of the
-- server's single thread, so a transition reads the job once (load) and writes it once.
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rec = P .. ':job:' .. id
local hist = rec .. ':history'
local logs = rec .. ':logs'

local TERMINAL = {succeeded = true, failed = true, cancelled = true, dead = true}

-- Read the fields every transition needs, plus any named in `...`, into a table; nil if no job.
local function load(...)
  local names = {'state', 'tenant', 'created_at', 'attempts', 'progress', 'seq', 'callback_url', ...}
  local values = redis.call('HMGET', rec, unpack(names))
  if not values[1] then return nil end
  local job = {}
  for i, name in ipairs(names) do job[name] = values[i] end
  return job
end

-- Move a job between the per-state indexes of its tenant and of all tenants.
local function index_state(tenant, old, new, score)
  local mine, all = P .. ':idx:' .. tenant .. ':s:', P .. ':idx:_all:s:'
  if old and old ~= new then
    redis.call('ZREM', mine .. old, id)
    redis.call('ZREM', all .. old, id)
  end
  redis.call('ZADD', mine .. new, score, id)
  redis.call('ZADD', all .. new, score, id)
end

-- Record a state change of `job` (from load): write the fields, move the indexes, append the
-- history entry and publish it. `fields` is a flat list of extra hash fields; `extra` is merged
-- into the event.
local function transition(job, new, fields, extra)
  local seq = (tonumber(job.seq) or 0) + 1
  local event = {seq = seq, kind = 'state', state = new, at = now,
                 attempt = tonumber(job.attempts) or 0, progress = tonumber(job.progress) or 0}
  local args = {'state', new, 'updated_at', now, 'seq', seq}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    args[#args + 1] = name
    args[#args + 1] = value
    if name == 'attempts' then event.attempt = tonumber(value) end
    if name == 'progress' then event.progress = tonumber(value) end
  end
  redis.call('HSET', rec, unpack(args))
  index_state(job.tenant, job.state, new, tonumber(job.created_at))
  if extra then for k, v in pairs(extra) do event[k] = v end end
  local encoded = cjson.encode(event)
  if redis.call('RPUSH', hist, encoded) > 200 then redis.call('LTRIM', hist, -200, -1) end
  redis.call('PUBLISH', P .. ':events:' .. id, encoded)
  -- A job that ends with a callback URL gets its webhook: queued here, atomically with the ending.
  if TERMINAL[new] and job.callback_url and job.callback_url ~= '' then
    redis.call('ZADD', P .. ':outbox', now, id)
  end
  job.state, job.seq = new, seq
  return seq
end

-- Write a new record from `fields` (a flat list of field/value pairs; tenant, type and created_at
-- among them) and list it in its tenant's, its type's and the all-tenants index. Returns the job
-- table for `transition`, which then indexes its first state.
local function create_record(fields)
  local job = {attempts = 0, progress = 0, seq = 0}
  local flat = {'id', id, 'attempts', 0, 'unfinished', 0, 'progress', 0}
  for i = 1, #fields, 2 do
    job[fields[i]] = fields[i + 1]
    flat[#flat + 1] = fields[i]
    flat[#flat + 1] = fields[i + 1]
  end
  redis.call('HSET', rec, unpack(flat))
  local created = tonumber(job.created_at)
  redis.call('SADD', P .. ':tenants', job.tenant)
  redis.call('ZADD', P .. ':idx:' .. job.tenant, created, id)
  redis.call('ZADD', P .. ':idx:' .. job.tenant .. ':t:' .. job.type, created, id)
  redis.call('ZADD', P .. ':idx:_all', created, id)
  return job
end

-- Publish a change that is not a state transition (progress, cancel requests); bumps seq.
local function notify(job, kind, event)
  local seq = (tonumber(job.seq) or 0) + 1
  event.seq, event.kind, event.at = seq, kind, now
  job.seq = seq
  return seq, cjson.encode(event)
end

-- Give a finished job its retention; an active job never expires.
local function retain(ttl)
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', rec, ttl)
    redis.call('PEXPIRE', hist, ttl)
    redis.call('PEXPIRE', logs, ttl)
  else
    redis.call('PERSIST', rec)
    redis.call('PERSIST', hist)
    redis.call('PERSIST', logs)
  end
end
