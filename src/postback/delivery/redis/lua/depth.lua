-- KEYS: stream, retry, leased, dead-by-vendor ; ARGV: group, vendor tag, now_ms, scan cap
-- Returns {ready, retrying, inflight, dead, oldest}: oldest is the time (ms, from the entry
-- ids: the Redis server's clock) of the oldest entry waiting for the vendor, or -1 if none
-- (retries beyond the scan cap are not looked at).
-- (fields.lua is prepended: fields_of)
local last, pending, lag = nil, 0, nil
local unread = 0
local oldest = nil
local function consider(id)
  local ms = tonumber(string.match(id, '^(%d+)-'))
  if ms and (oldest == nil or ms < oldest) then oldest = ms end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = fields_of(g)
    if info['name'] == ARGV[1] then
      last = info['last-delivered-id']
      pending = tonumber(info['pending'])
      if type(info['lag']) == 'number' then lag = info['lag'] end
    end
  end
  if pending > 0 then
    local first = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1)
    if #first > 0 then consider(first[1][1]) end
  end
  if lag ~= 0 then
    local cap = tonumber(ARGV[4])
    local start = '-'
    if last then start = '(' .. last end
    local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', cap)
    for _, e in ipairs(entries) do
      local f = fields_of(e[2])
      if f['vendors'] and string.find(f['vendors'], ARGV[2], 1, true) then
        if unread == 0 then consider(e[1]) end
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
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, tonumber(ARGV[4]) - 1)) do consider(id) end
end
return {unread + due, waiting, pending + leased, dead, oldest or -1}
