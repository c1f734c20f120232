if #ARGV > 5 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 6))
end
return redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[1], 'name', ARGV[2],
                  'created_ms', ARGV[3], 'vendors', ARGV[4], 'payload', ARGV[5])
