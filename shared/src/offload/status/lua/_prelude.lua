-- Shared helpers, prepended to every script. ARGV[1] is the key prefix, ARGV[2] the job id,
-- ARGV[3] the current time in milliseconds. Each redis.call costs a few microseconds of the
-- server's single thread, so a transition reads the job once (load) and writes it once.
--
-- The layout (status/README.md): a job is one hash, `P:job:<id>`, whose history entries are
-- fields of its own (`h<seq>`), so that a short job's hash stays small enough for Redis's compact
-- listpack encoding; its log lines are a list beside it (`P:job:<id>:logs`). Each job is in two
-- indexes of its type and current state (`P:idx:<tenant>:t:<type>:s:<state>` and the same under
-- `_all`), scored by the time it entered that state. A finished job's entries are therefore
-- ordered by the time it ended, and its record expires a fixed retention after that: trimming an
-- index removes its lowest-ranked entries (trim.lua).
local P, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rec = P .. ':job:' .. id
local logs = rec .. ':logs'

local TERMINAL = {succeeded = true, failed = true, cancelled = true, dead = true}
-- History entries kept per job; the oldest go first.
local MAX_HISTORY = 200
-- About how many changes each tenant's change feed (`P:feed:<tenant>`, a stream) keeps: the window
-- a client of GET /v1/events can resume in with Last-Event-ID (XADD MAXLEN ~ trims in whole nodes).
local FEED_LENGTH = 10000

-- Read the fields every transition needs, plus any named in `...`, into a table; nil if no job.
local function load(...)
  local names = {'state', 'tenant', 'type', 'created_at', 'attempts', 'progress', 'seq', 'callback_url', 'error_code',
                 'flow_id', 'flow_node', 'queue', 'tags', ...}
  local values = redis.call('HMGET', rec, unpack(names))
  if not values[1] then return nil end
  local job = {}
  for i, name in ipairs(names) do job[name] = values[i] end
  return job
end

-- The two index keys a job of `tenant` and `jtype` is listed in while in `state`: its tenant's
-- and all tenants', by type and state. A list of several states or types merges several keys
-- (StatusStore.list_jobs): their number is bounded by the catalogue, not by the jobs.
local function index_keys(tenant, jtype, state)
  local by_type = ':t:' .. (jtype or '') .. ':s:' .. state
  return {P .. ':idx:' .. tenant .. by_type, P .. ':idx:_all' .. by_type}
end

-- Move a job from the indexes of state `old` (none when nil) to those of `new`, scored now.
local function index_state(job, old, new)
  if old and old ~= new then
    for _, key in ipairs(index_keys(job.tenant, job.type, old)) do redis.call('ZREM', key, id) end
  end
  for _, key in ipairs(index_keys(job.tenant, job.type, new)) do redis.call('ZADD', key, now, id) end
end

-- The two error indexes a job of `tenant` whose error has `code` is listed in: its tenant's and
-- all tenants', scored by when the error was recorded (keys.py's error_index; trim.lua trims them).
local function error_keys(tenant, code)
  return {P .. ':erridx:' .. tenant .. ':' .. code, P .. ':erridx:_all:' .. code}
end

-- Move a job to the error indexes of `code` ('' for none: out of them), from those of its last code.
local function index_error(job, code)
  local old = job.error_code
  if old and old ~= '' and old ~= code then
    for _, key in ipairs(error_keys(job.tenant, old)) do redis.call('ZREM', key, id) end
  end
  if code ~= '' then
    for _, key in ipairs(error_keys(job.tenant, code)) do redis.call('ZADD', key, now, id) end
    redis.call('SADD', P .. ':errors:' .. job.tenant, code)
    redis.call('SADD', P .. ':errors:_all', code)
  end
  job.error_code = code
end

-- Take a job out of every index (its record is being deleted).
local function unindex(job)
  for _, key in ipairs(index_keys(job.tenant, job.type, job.state)) do redis.call('ZREM', key, id) end
  index_error(job, '')
end

-- One history entry as stored in its `h<seq>` field: "state|at|attempt|progress", then "|" and
-- the JSON of what else the event carries (error, retry_at, ...) when there is anything.
local function history_entry(event, extra)
  local entry = event.state .. '|' .. event.at .. '|' .. event.attempt .. '|' .. event.progress
  if extra and next(extra) ~= nil then entry = entry .. '|' .. cjson.encode(extra) end
  return entry
end

-- Drop the oldest history fields past MAX_HISTORY. Only a job with more events than that (its
-- seq counts progress and log events too) can have that many, so most jobs never look.
local function trim_history(seq)
  if seq <= MAX_HISTORY then return end
  local kept = {}
  for _, name in ipairs(redis.call('HKEYS', rec)) do
    local n = string.match(name, '^h(%d+)$')
    if n then kept[#kept + 1] = tonumber(n) end
  end
  if #kept <= MAX_HISTORY then return end
  table.sort(kept)
  local drop = {}
  for i = 1, #kept - MAX_HISTORY do drop[#drop + 1] = 'h' .. kept[i] end
  redis.call('HDEL', rec, unpack(drop))
end

-- Publish one change of `job` (an event encoded as JSON): on the job's channel (GET /v1/jobs/{id}/events)
-- and in its tenant's feed (GET /v1/events), beside what that stream filters on. Both in the script
-- that makes the change, so no change reaches one and not the other, and no round trip is added.
local function publish(job, encoded)
  redis.call('PUBLISH', P .. ':events:' .. id, encoded)
  redis.call('XADD', P .. ':feed:' .. job.tenant, 'MAXLEN', '~', FEED_LENGTH, '*', 'job', id,
    'type', job.type or '', 'queue', job.queue or '', 'tags', job.tags or '', 'event', encoded)
end

-- A flow node's ending (defined below, after `transition`, which calls it and which it calls).
local flow_node_ended

-- Record a state change of `job` (from load): write the fields and the history entry, move the
-- indexes and publish the event. `fields` is a flat list of extra hash fields; `extra` is merged
-- into the event.
local function transition(job, new, fields, extra)
  local seq = (tonumber(job.seq) or 0) + 1
  local event = {seq = seq, kind = 'state', state = new, at = now,
                 attempt = tonumber(job.attempts) or 0, progress = tonumber(job.progress) or 0}
  local args = {'state', new, 'updated_at', now, 'seq', seq}
  local code
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    args[#args + 1] = name
    args[#args + 1] = value
    if name == 'attempts' then event.attempt = tonumber(value) end
    if name == 'progress' then event.progress = tonumber(value) end
    if name == 'error_code' then code = value end
  end
  args[#args + 1] = 'h' .. seq
  args[#args + 1] = history_entry(event, extra)
  redis.call('HSET', rec, unpack(args))
  trim_history(seq)
  index_state(job, job.state, new)
  if code then index_error(job, code) end
  if extra then for k, v in pairs(extra) do event[k] = v end end
  publish(job, cjson.encode(event))
  -- A job that ends with a callback URL gets its webhook: queued here, atomically with the ending.
  if TERMINAL[new] and job.callback_url and job.callback_url ~= '' then
    redis.call('ZADD', P .. ':outbox', now, id)
  end
  job.state, job.seq = new, seq
  -- A node of a flow: its change on the flow's channel too, and an ending counted in its fan-in.
  if job.flow_id and job.flow_id ~= '' then
    redis.call('PUBLISH', P .. ':flow-events:' .. job.flow_id,
      cjson.encode({kind = 'node', node = job.flow_node, job_id = id, state = new, at = now}))
    if TERMINAL[new] then flow_node_ended(job, new) end
  end
  return seq
end

-- What a job's message is rebuilt from (offload.wire.MESSAGE_FIELDS, in that order), for a job
-- loaded with MESSAGE_LOAD (a record of layout 1 kept the message; the trace context is optional).
local MESSAGE_LOAD = {'queue', 'priority', 'payload', 'message', 'traceparent', 'tracestate'}
local function message_fields(job)
  return {id, job.type or '', job.queue or '', job.tenant or '', job.priority or '', job.payload or '',
          job.created_at or '', job.message or '', job.traceparent or '', job.tracestate or ''}
end

-- Write a new record from `fields` (a flat list of field/value pairs; tenant, type and created_at
-- among them) and note its tenant and type for the index trimming. Returns the job table for
-- `transition`, which then indexes its first state.
local function create_record(fields)
  local job = {attempts = 0, progress = 0, seq = 0}
  local flat = {}
  for i = 1, #fields, 2 do
    job[fields[i]] = fields[i + 1]
    flat[#flat + 1] = fields[i]
    flat[#flat + 1] = fields[i + 1]
  end
  redis.call('HSET', rec, unpack(flat))
  redis.call('SADD', P .. ':tenants', job.tenant)
  redis.call('SADD', P .. ':types:' .. job.tenant, job.type)
  redis.call('SADD', P .. ':types:_all', job.type)
  -- A tagged job is listed under each tag, scored by when it may first run (its creation, or a
  -- delayed job's due time); lua/trim_tags.lua drops the entries whose record has expired.
  if job.tags and job.tags ~= '' then
    local score = tonumber(job.scheduled_for) or tonumber(job.created_at) or now
    for _, tag in ipairs(cjson.decode(job.tags)) do
      redis.call('ZADD', P .. ':tag:' .. job.tenant .. ':' .. tag, score, id)
      redis.call('SADD', P .. ':tags:' .. job.tenant, tag)
    end
  end
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
    redis.call('PEXPIRE', logs, ttl)
  else
    redis.call('PERSIST', rec)
    redis.call('PERSIST', logs)
  end
end

-- Flows (status/flows.py): a flow is a hash `P:flow:<fid>` (tenant, state, pending: nodes not yet
-- ended, halted: '' or why the flow stopped, ttl ms, nodes: JSON [[name, job id], ...], sinks:
-- the job ids of the nodes no node needs) and a set `P:flow:<fid>:ended` of the node jobs whose ending was
-- counted. A node with needs waits `scheduled` with no run time and `flow_waiting` = the children
-- it still waits for; each child's record names its parents and the policy of each edge
-- (`flow_parents`, JSON [[job id, 'fail'|'ignore'|'continue'], ...]). The fan-in runs here, in
-- the same script as the child's ending (every ending script calls `transition`): counted once
-- per child (SADD), and the last child puts its parent on `P:scheduled`, due now, where the
-- promoter claims it once and publishes its message.

-- Point the script's current job (`id`, `rec`, `logs`) at another job; returns the previous one.
local function point_at(other)
  local previous = id
  id, rec, logs = other, P .. ':job:' .. other, P .. ':job:' .. other .. ':logs'
  return previous
end

-- End the flow once no node is left pending: succeeded when every sink succeeded and nothing
-- halted it; its keys get the retention `ttl` and the flow's channel a 'flow' event.
local function finish_flow(fid)
  local fkey = P .. ':flow:' .. fid
  local f = redis.call('HMGET', fkey, 'state', 'halted', 'sinks', 'ttl', 'pending')
  if f[1] ~= 'running' or (tonumber(f[5]) or 0) > 0 then return end
  local state = f[2]
  if not state or state == '' then
    state = 'succeeded'
    for _, sink in ipairs(cjson.decode(f[3])) do
      if redis.call('HGET', P .. ':job:' .. sink, 'state') ~= 'succeeded' then state = 'failed' break end
    end
  end
  redis.call('HSET', fkey, 'state', state, 'finished_at', now)
  redis.call('PEXPIRE', fkey, tonumber(f[4]))
  redis.call('PEXPIRE', fkey .. ':ended', tonumber(f[4]))
  redis.call('PUBLISH', P .. ':flow-events:' .. fid, cjson.encode({kind = 'flow', state = state, at = now}))
end

-- Stop a flow (`how`: 'failed' or 'cancelled'): every node that has not started ends, the node
-- `failing` (if any) failed with `reason`, the others cancelled. Running nodes run on; their
-- endings no longer release anything. Returns how many nodes it ended.
local function halt_flow(fid, how, failing, reason)
  local fkey = P .. ':flow:' .. fid
  local f = redis.call('HMGET', fkey, 'nodes', 'ttl')
  redis.call('HSET', fkey, 'halted', how)
  local current, ended = id, 0
  for _, pair in ipairs(cjson.decode(f[1])) do
    local jid = pair[2]
    point_at(jid)
    local node = load()
    if node and (node.state == 'queued' or node.state == 'scheduled') then
      redis.call('ZREM', P .. ':scheduled', jid)
      local code, msg, state = 'cancelled', 'The job was cancelled before it ran: its flow was ' .. how .. '.', 'cancelled'
      local fields = {'finished_at', now, 'cancel_requested', '1', 'error_code', code, 'error_message', msg}
      if jid == failing then
        code, msg, state = 'child_failed', reason, 'failed'
        fields = {'finished_at', now, 'error_code', code, 'error_message', msg}
      end
      transition(node, state, fields, {error = {code = code, message = msg}})
      retain(f[2])
      ended = ended + 1
    end
  end
  point_at(current)
  return ended
end

flow_node_ended = function(job, new)
  local fid = job.flow_id
  local fkey = P .. ':flow:' .. fid
  local halted = redis.call('HGET', fkey, 'halted')
  if not halted then return end  -- the flow's record is gone (expired, or withdrawn)
  if redis.call('SADD', fkey .. ':ended', id) == 0 then return end
  redis.call('HINCRBY', fkey, 'pending', -1)
  local parents = halted == '' and redis.call('HGET', rec, 'flow_parents')
  if parents then
    for _, edge in ipairs(cjson.decode(parents)) do
      local parent, policy = edge[1], edge[2]
      if new == 'succeeded' or policy ~= 'fail' then
        local pkey = P .. ':job:' .. parent
        if redis.call('HGET', pkey, 'state') == 'scheduled' and redis.call('HINCRBY', pkey, 'flow_waiting', -1) <= 0 then
          redis.call('HSET', pkey, 'scheduled_for', now)
          redis.call('ZADD', P .. ':scheduled', now, parent)
        end
      else
        local reason = 'Its child ' .. (job.flow_node or id) .. ' ended ' .. new .. '.'
        halt_flow(fid, 'failed', parent, reason)
        break
      end
    end
  end
  finish_flow(fid)
end
