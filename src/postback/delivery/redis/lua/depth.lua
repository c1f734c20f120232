-- KEYS: stream, retry, leased, dead-by-vendor ; ARGV: group, vendor tag, now_ms, scan cap
-- Returns {ready, retrying, inflight, dead}.
-- (fields.lua is prepended: fields_of)
local last, pending, lag = nil, 0, nil
local unread = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = fields_of(g)
    if info['name'] == ARGV[1] then
      last = info['last-delivered-id']
      pending = tonumber(info['pending'])
      if type(info['lag']) == 'number' then lag = info['lag'] end
    end
  end
  if lag ~= 0 then
    local cap = tonumber(ARGV[4])
    local start = '-'
    if last then start = '(' .. last end
    local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', cap)
    for _, e in ipairs(entries) do
      local f = fields_of(e[2])
      if f['vendors'] and string.find(f['vendors'], ARGV[2], 1, true) then
        unread = unread + 1
      end
    end
    if #entries >= cap and lag then
      unread = unread + math.max(lag - #entries, 0)
    end
  end
end
local due = redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[3])
local waiting = redis.call('ZCARD', KEYS[2]) - due
local leased = redis.call('ZCARD', KEYS[3])
local dead = redis.call('ZCARD', KEYS[4])
return {unread + due, waiting, pending + leased, dead}
