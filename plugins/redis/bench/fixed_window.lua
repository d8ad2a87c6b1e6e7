-- The fixed-window limiter a FastAPI service sends to Redis itself, in the pattern of
-- fastapi-limiter: GET the counter, then INCRBY it, or SET it with PX on a window's first
-- request; PTTL tells when the window ends. Extended to answer what SL.CHECK answers, so that
-- both sides of the benchmark return the same five numbers: allowed, limit, remaining,
-- reset_after_ms, retry_after_ms. KEYS[1] = counter, ARGV = limit, window_ms, cost.
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current + cost > limit then
  local reset = math.max(0, redis.call('PTTL', KEYS[1]))
  return {0, limit, math.max(0, limit - current), reset, reset}
end
if current > 0 then
  redis.call('INCRBY', KEYS[1], cost)
  return {1, limit, limit - current - cost, math.max(0, redis.call('PTTL', KEYS[1])), 0}
end
redis.call('SET', KEYS[1], cost, 'PX', window)
return {1, limit, limit - cost, window, 0}
