-- The fixed-window limiter Redis-backed FastAPI limiters send to Redis (fastapi-limiter's
-- script: GET, then INCR or SET PX), the baseline scripts/bench compares SL.CHECK with.
-- KEYS[1] = the subject's counter, ARGV[1] = limit, ARGV[2] = window in milliseconds.
-- Returns 0 when the request is allowed, else the milliseconds until the window ends.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = ARGV[2]
local current = tonumber(redis.call('GET', key) or '0')
if current > 0 then
  if current + 1 > limit then
    return redis.call('PTTL', key)
  end
  redis.call('INCR', key)
  return 0
end
redis.call('SET', key, 1, 'PX', window_ms)
return 0
