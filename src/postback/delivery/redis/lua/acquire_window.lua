-- The moving window of ``limits`` (a list of hit times per key), timed by the Redis server's
-- clock instead of each worker's, so that workers on hosts whose clocks disagree still share
-- one window. Same data layout as limits' own scripts.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, expiry, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if amount > limit then return false end
local entry = redis.call('LINDEX', KEYS[1], limit - amount)
if entry and tonumber(entry) >= now - expiry then return false end
local stamp = string.format('%.6f', now)
for i = 1, amount do redis.call('LPUSH', KEYS[1], stamp) end
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('EXPIRE', KEYS[1], math.ceil(expiry))
return true
