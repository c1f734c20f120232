-- KEYS: stream, vendors ; ARGV: stale consumer idle (ms), sweep consumers ('1' / '0')
-- Ensures a group for every vendor ever routed to, trims below the oldest unacknowledged entry
-- of every group, and drops consumers that hold nothing and have been silent for long.
-- (fields.lua is prepended: fields_of)
local function cmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  if am ~= bm then return am < bm and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end
for _, v in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.pcall('XGROUP', 'CREATE', KEYS[1], v, '0', 'MKSTREAM')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, ''} end
local low = nil
local dropped = 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = fields_of(g)
  local keep = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    keep = redis.call('XPENDING', KEYS[1], info['name'])[2]
  end
  if low == nil or cmp(keep, low) < 0 then low = keep end
  if ARGV[2] == '1' then
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], info['name'])) do
      local ci = fields_of(c)
      if tonumber(ci['pending']) == 0 and tonumber(ci['idle']) > tonumber(ARGV[1]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], info['name'], ci['name'])
        dropped = dropped + 1
      end
    end
  end
end
local trimmed = 0
if low and low ~= '0-0' then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', low)
end
return {trimmed, dropped, low or ''}
