-- The same limiter with only what fastapi-limiter itself asks of Redis: GET, then INCR, or
-- SET PX on a window's first request, and PTTL only when denying. It answers one number
-- (0, or the milliseconds until the window ends), not SL.CHECK's five.
-- KEYS[1] = counter, ARGV = limit, window_ms.
local limit = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= limit then return redis.call('PTTL', KEYS[1]) end
if current > 0 then
  redis.call('INCR', KEYS[1])
else
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[2])
end
return 0
