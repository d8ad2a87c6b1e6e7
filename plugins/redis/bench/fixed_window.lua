-- The classic fixed-window limiter a service would send to Redis itself: one counter per
-- subject and window, INCR + PEXPIRE. KEYS[1] = counter, ARGV = limit, window_ms, cost.
-- Returns what SL.CHECK returns: allowed, limit, remaining, reset_after_ms, retry_after_ms.
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local count = redis.call('INCRBY', KEYS[1], cost)
if count == cost then redis.call('PEXPIRE', KEYS[1], window) end
local reset = redis.call('PTTL', KEYS[1])
if count > limit then
  redis.call('DECRBY', KEYS[1], cost)
  return {0, limit, 0, reset, reset}
end
return {1, limit, limit - count, reset, 0}
