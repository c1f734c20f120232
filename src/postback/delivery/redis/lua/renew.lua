-- KEYS: stream, leased, owner ; ARGV: group, consumer, lease_until_ms, ids...
-- Renews what this consumer still holds; returns how many it still holds.
local held = 0
local entries = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[2] then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[3], id)
    held = held + 1
  else
    local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
    if type(p) == 'table' and not p.err and #p > 0 then entries[#entries + 1] = id end
  end
end
if #entries > 0 then
  -- XCLAIM to ourselves resets the idle time; JUSTID leaves the delivery counter alone
  local cmd = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(entries) do cmd[#cmd + 1] = id end
  cmd[#cmd + 1] = 'JUSTID'
  redis.call(unpack(cmd))
  held = held + #entries
end
return held
