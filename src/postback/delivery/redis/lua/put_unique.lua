-- put.lua with local dedupe, in one round trip: the event is stored for the vendors in ARGV
-- (pairs: vendor, window in ms; "0" for a vendor without dedupe) except those whose recent key
-- (KEYS[3...], one per vendor with a window, in order) is still set: SET NX PX claims it.
-- Returns the vendors left out as duplicates.
local kept, dups = {}, {}
local key = 3
for i = 5, #ARGV, 2 do
  local vendor, window = ARGV[i], ARGV[i + 1]
  if window == '0' then
    kept[#kept + 1] = vendor
  else
    if redis.call('SET', KEYS[key], '1', 'NX', 'PX', window) then
      kept[#kept + 1] = vendor
    else
      dups[#dups + 1] = vendor
    end
    key = key + 1
  end
end
if #kept > 0 then
  redis.call('SADD', KEYS[2], unpack(kept))
  redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[1], 'name', ARGV[2],
             'created_ms', ARGV[3], 'vendors', ',' .. table.concat(kept, ',') .. ',',
             'payload', ARGV[4])
end
return dups
