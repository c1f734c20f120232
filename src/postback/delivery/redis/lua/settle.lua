-- KEYS: stream, retry, leased, retrydata, owner, dead, dead-by-vendor, dead-all, dead-seq
-- ARGV: group, consumer, now_ms, then (kind, id, due_ms, record) per settlement
-- kind: 'done' | 'retry' (also release) | 'dead'. Returns how many were applied.
local stream, group, consumer, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local applied = 0
local acks = {}
for i = 4, #ARGV, 4 do
  local kind, id, due, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local source = nil
  if redis.call('HGET', KEYS[5], id) == consumer then
    source = 'retry'
  else
    local p = redis.pcall('XPENDING', stream, group, id, id, 1, consumer)
    if type(p) == 'table' and not p.err and #p > 0 then source = 'stream' end
  end
  if source then
    applied = applied + 1
    if source == 'retry' then
      redis.call('ZREM', KEYS[3], id)
      redis.call('HDEL', KEYS[5], id)
    else
      acks[#acks + 1] = id
    end
    if kind == 'retry' then
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('HSET', KEYS[4], id, record)
    else
      if source == 'retry' then redis.call('HDEL', KEYS[4], id) end
      if kind == 'dead' then
        local dead_id = string.format('%016d', redis.call('INCR', KEYS[9]))
        redis.call('HSET', KEYS[6], dead_id, record)
        redis.call('ZADD', KEYS[7], now, dead_id)
        redis.call('ZADD', KEYS[8], now, dead_id)
      end
    end
  end
end
if #acks > 0 then
  redis.call('XACK', stream, group, unpack(acks))
end
return applied
