-- KEYS: stream, retry, leased, retrydata, owner
-- ARGV: group, consumer, limit, now_ms, lease_until_ms, min_idle_ms, autoclaim cursor ('' = skip),
--       vendor tag (",v,"), read rounds
-- Returns {next_cursor, ('s', id, event_id, name, created_ms, payload | 'r', id, record)...}
-- (fields.lua is prepended: fields_of)
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local limit = tonumber(ARGV[3])
local now, lease_until = ARGV[4], ARGV[5]
local tag = ARGV[8]
local out = {''}
local n = 0

local function ensure_group()
  redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end

local function push_entry(id, f)
  out[#out + 1] = 's'
  out[#out + 1] = id
  out[#out + 1] = f['event_id'] or ''
  out[#out + 1] = f['name'] or ''
  out[#out + 1] = f['created_ms'] or '0'
  out[#out + 1] = f['payload'] or ''
  n = n + 1
end

if ARGV[7] ~= '' then
  local r = redis.pcall('XAUTOCLAIM', stream, group, consumer, ARGV[6], ARGV[7], 'COUNT', limit)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      ensure_group()
      out[1] = '0-0'
    else
      return redis.error_reply(r.err)
    end
  else
    out[1] = r[1]
    for _, e in ipairs(r[2]) do
      if type(e) == 'table' and type(e[2]) == 'table' then
        push_entry(e[1], fields_of(e[2]))
      end
    end
  end
end

local function lease(id)
  local record = redis.call('HGET', KEYS[4], id)
  if record then
    redis.call('ZADD', KEYS[3], lease_until, id)
    redis.call('HSET', KEYS[5], id, consumer)
    out[#out + 1] = 'r'
    out[#out + 1] = id
    out[#out + 1] = record
    n = n + 1
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
  end
end

if n < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit - n)) do
    lease(id)
  end
end
if n < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit - n)) do
    redis.call('ZREM', KEYS[2], id)
    lease(id)
  end
end

local rounds = 0
while n < limit and rounds < tonumber(ARGV[9]) do
  rounds = rounds + 1
  local want = limit - n
  local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
                        'STREAMS', stream, '>')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      ensure_group()
    else
      return redis.error_reply(r.err)
    end
  elseif not r then
    break
  else
    local entries = r[1][2]
    local skipped = {}
    for _, e in ipairs(entries) do
      local f = fields_of(e[2])
      if f['vendors'] and string.find(f['vendors'], tag, 1, true) then
        push_entry(e[1], f)
      else
        skipped[#skipped + 1] = e[1]
      end
    end
    if #skipped > 0 then
      redis.call('XACK', stream, group, unpack(skipped))
    end
    if #entries < want then break end
  end
end
return out
