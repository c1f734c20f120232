-- KEYS: stream, vendors, dead, dead-all, dead-by-vendor
-- ARGV: dead id, vendor, event_id, name, created_ms, payload. Returns the new entry id or nil.
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return false end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[3], 'name', ARGV[4],
                  'created_ms', ARGV[5], 'vendors', ',' .. ARGV[2] .. ',', 'payload', ARGV[6])
