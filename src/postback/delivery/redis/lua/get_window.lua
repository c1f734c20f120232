local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target = now - tonumber(ARGV[1])
local high = tonumber(ARGV[2]) - 1
local low, found = 0, nil
while low <= high do
  local mid = math.floor((low + high) / 2)
  local val = tonumber(redis.call('LINDEX', KEYS[1], mid))
  if val and val >= target then
    found = mid
    low = mid + 1
  else
    high = mid - 1
  end
end
if found then
  return {tostring(redis.call('LINDEX', KEYS[1], found)), found + 1}
end
return {string.format('%.6f', now), 0}
