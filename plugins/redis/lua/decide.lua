-- sluice: the limits of one or more requests, decided atomically inside Redis.
--
-- This is a line-by-line port of engine/src/algorithms.cpp (the pure transitions every other
-- plugin applies) plus the batch rule of the memory plugin: evaluate every item, and only if
-- no non-shadow CONSUME/LEASE_ACQUIRE item is denied, commit every item but PEEKs in order.
-- The conformance suite and tests/integration/redis compare the answers with the C++ ones.
--
-- Lua numbers are doubles: every integer here stays below 2^53 because the plugin refuses
-- parameters whose products could exceed it (docs/storage-redis.md, "Limits"). GCRA works
-- relative to `now`, so that now * limit is never formed.
--
-- KEYS: the state keys of every item, in order: one per item, two for concurrency.
-- ARGV[1] clock ("r": Redis TIME, "e": the engine's now_ms), ARGV[2] ttl grace in ms,
-- ARGV[3] batch count, ARGV[4] every batch packed as little-endian doubles: now_ms, item count,
--   then per item 9 numbers: op, algorithm (negative = parameters the engine refuses: deny),
--   limit, window_ms, burst (effective), cost, lease expiry, shadow, max entries (sliding log
--   entries or leases the state may hold);
-- ARGV[5...] the lease id (decimal) of every concurrency item, in order.
-- Reply: one string, 5 little-endian doubles per item: allowed, limit, remaining,
-- reset_after_ms, retry_after_ms.
--
-- Packing the numbers (one argument per call instead of ten per item) and the answers (one
-- string instead of five integers per item) spares Redis and the plugin most of the per-item
-- work that is not the algorithm itself (docs/benchmarks.md, "Redis plugin").

local rcall, spack, sunpack = redis.call, struct.pack, struct.unpack
local floor, fmod = math.floor, math.fmod

local OP_PEEK, OP_ADJUST, OP_ACQUIRE, OP_RELEASE, OP_RESET = 2, 3, 4, 5, 6
local ALG_FW, ALG_SW, ALG_SWC, ALG_TB, ALG_GCRA, ALG_CC, ALG_CAL = 1, 2, 3, 4, 5, 6, 7

local function max(a, b) if a > b then return a end return b end
local function min(a, b) if a < b then return a end return b end

-- Exact for |a| and |b| below 2^53: the quotient of the double division is off by at most one.
local function floor_div(a, b)
  local q = floor(a / b)
  local r = a - q * b
  if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
  return q
end
local function ceil_div(a, b) return -floor_div(-a, b) end
local function duration(v) if v <= 0 then return 0 end return v end

local GRACE = tonumber(ARGV[2])

-- Keeps a string state until it equals a fresh key (plus a grace for clock skew).
local function persist(key, encoded, expires_at, now)
  if encoded == nil then
    rcall('DEL', key)
  else
    rcall('SET', key, encoded, 'PX', max(1, expires_at - now + GRACE))
  end
end

local function load16(key)
  local s = rcall('GET', key)
  if s and #s == 16 then return sunpack('<dd', s) end
  return nil
end

-- ---- fixed_window: {window_start, count, window_ms} ---------------------------------------
-- The window tells which window length the key's TTL was last set for (see
-- fixed_window_consume). States written before it was kept are 16 bytes and still read.
local function fw_decode(s)
  if s then
    local n = #s
    if n == 24 then
      local ws, count, window = sunpack('<ddd', s)
      return ws, count, window
    elseif n == 16 then
      local ws, count = sunpack('<dd', s)
      return ws, count, nil
    end
  end
  return nil
end

-- calendar_window is the same with the window's bounds given by the engine: it starts at
-- burst (ms since the epoch) and lasts window.
local function define_fixed_window(calendar)
  local FW = {}
  local function current(e)
    if calendar then return e.burst end
    return floor_div(e.now, e.window) * e.window
  end
  function FW.load(key, e)
    local m = {start = current(e), count = 0}
    local ws, count = fw_decode(rcall('GET', key))
    if ws and count >= 0 and (ws == m.start or ws == m.start + e.window) then
      m.start = ws
      m.count = count
    end
    return m
  end
  function FW.capacity(m, e) return e.limit end
  function FW.remaining(m, e) return max(0, e.limit - m.count) end
  function FW.reset_after(m, e)
    if m.count > 0 then return duration(m.start + e.window - e.now) end
    return 0
  end
  function FW.expires_at(m, e)
    if m.count > 0 then return m.start + e.window end
    return e.now
  end
  function FW.earliest(m, e, cost)
    if m.count + cost <= e.limit then return e.now end
    return m.start + e.window
  end
  function FW.change(m, e, key, delta, adjust, write)
    local count = m.count + delta
    if adjust and count < 0 then count = 0 end
    local post, enc
    if count <= 0 then
      post = {start = current(e), count = 0}
    else
      post = {start = m.start, count = count}
      enc = spack('<ddd', m.start, count, e.window)
    end
    if write then persist(key, enc, FW.expires_at(post, e), e.now) end
    return post
  end
  return FW
end

-- ---- sliding_window_counter: {window_start, previous, current} ----------------------------
local function define_sliding_window_counter()
  local SWC = {}
  function SWC.load(key, e)
    local w = e.window
    local m = {start = floor_div(e.now, w) * w, prev = 0, cur = 0}
    local s = rcall('GET', key)
    if s and #s == 24 then
      local ws, prev, cur = sunpack('<ddd', s)
      if prev >= 0 and cur >= 0 then
        if ws == m.start then
          m.prev = prev
          m.cur = cur
        elseif ws == m.start - w then
          m.prev = cur
        elseif ws == m.start + w then -- the clock stepped back a little
          m.start = ws
          m.prev = prev
          m.cur = cur
        end
      end
    end
    return m
  end
  local function swc_elapsed(m, t) return max(0, t - m.start) end
  local function swc_full_at(m, e)
    if m.cur > 0 then return m.start + 2 * e.window end
    if m.prev > 0 then return m.start + e.window end
    return e.now
  end
  function SWC.capacity(m, e) return e.limit end
  function SWC.remaining(m, e)
    local w = e.window
    local free = e.limit * w - m.prev * (w - swc_elapsed(m, e.now)) - m.cur * w
    if free <= 0 then return 0 end
    return min(e.limit, floor_div(free, w))
  end
  function SWC.reset_after(m, e) return duration(swc_full_at(m, e) - e.now) end
  function SWC.expires_at(m, e) return max(e.now, swc_full_at(m, e)) end
  function SWC.earliest(m, e, cost)
    local w = e.window
    local start, prev, cur = m.start, m.prev, m.cur
    local at, offset = e.now, swc_elapsed(m, e.now)
    for _ = 1, 3 do
      local spare = e.limit - cur - cost
      if spare >= 0 then
        if prev == 0 then return at end
        local offset_min = w - floor_div(spare * w, prev)
        if offset_min <= offset then return at end
        if offset_min < w then return start + offset_min end
      end
      start = start + w
      at = start
      offset = 0
      prev = cur
      cur = 0
    end
    return at
  end
  function SWC.change(m, e, key, delta, adjust, write)
    local prev, cur = m.prev, m.cur + delta
    if adjust and cur < 0 then -- a refund larger than this window returns to the previous one
      prev = max(0, prev + cur)
      cur = 0
    end
    local post, enc
    if prev <= 0 and cur <= 0 then
      post = {start = floor_div(e.now, e.window) * e.window, prev = 0, cur = 0}
    else
      post = {start = m.start, prev = prev, cur = max(0, cur)}
      enc = spack('<ddd', m.start, prev, post.cur)
    end
    if write then persist(key, enc, SWC.expires_at(post, e), e.now) end
    return post
  end
  return SWC
end

-- ---- token_bucket: {deficit (missing tokens x window_ms), last_ms} -------------------------
local function define_token_bucket()
  local TB = {}
  function TB.load(key, e)
    local m = {at = e.now, deficit = 0}
    local deficit, last = load16(key)
    -- A state from further ahead than one refill period is forgotten (clock steps).
    if deficit and deficit >= 0 and last - e.now <= ceil_div(e.burst * e.window, e.limit) then
      if last >= e.now then -- the clock stepped back a little: no refill until it catches up
        m.at = last
        m.deficit = deficit
      else
        m.deficit = max(0, deficit - (e.now - last) * e.limit)
      end
    end
    return m
  end
  local function tb_full_at(m, e)
    if m.deficit > 0 then return m.at + ceil_div(m.deficit, e.limit) end
    return e.now
  end
  function TB.capacity(m, e) return e.burst end
  function TB.remaining(m, e)
    local free = e.burst * e.window - m.deficit
    if free <= 0 then return 0 end
    return floor_div(free, e.window)
  end
  function TB.reset_after(m, e) return duration(tb_full_at(m, e) - e.now) end
  function TB.expires_at(m, e) return max(e.now, tb_full_at(m, e)) end
  function TB.earliest(m, e, cost)
    local need = m.deficit + cost * e.window - e.burst * e.window
    if need <= 0 then return e.now end
    return m.at + ceil_div(need, e.limit)
  end
  function TB.change(m, e, key, delta, adjust, write)
    local deficit = m.deficit + delta * e.window
    if adjust and deficit < 0 then deficit = 0 end -- a refund never fills beyond capacity
    -- As gcra: a subject owes at most one burst of settlements on top of a spent burst.
    deficit = min(deficit, 2 * e.burst * e.window)
    local post, enc
    if deficit <= 0 then
      post = {at = e.now, deficit = 0}
    else
      post = {at = m.at, deficit = deficit}
      enc = spack('<dd', deficit, m.at)
    end
    if write then persist(key, enc, TB.expires_at(post, e), e.now) end
    return post
  end
  return TB
end

-- ---- gcra: {tat_ms, tat_fraction}, TAT in units of 1/limit ms -----------------------------
local function define_gcra()
  -- The model keeps rel = max(TAT, now) - now in units, so now * limit is never computed.
  local GCRA = {}
  function GCRA.load(key, e)
    local m = {rel = 0}
    local ms, frac = load16(key)
    if ms and frac >= 0 then
      -- A fraction from a larger limit is clamped: the TAT moves by less than 1 ms.
      local rel = (ms - e.now) * e.limit + min(frac, e.limit - 1)
      -- Further ahead than any write leaves it: forgotten (clock steps).
      if rel > 0 and rel <= 2 * e.burst * e.window then m.rel = rel end
    end
    return m
  end
  function GCRA.capacity(m, e) return e.burst end
  function GCRA.remaining(m, e)
    local free = e.burst * e.window - m.rel
    if free <= 0 then return 0 end
    return floor_div(free, e.window)
  end
  function GCRA.reset_after(m, e) return duration(ceil_div(m.rel, e.limit)) end
  function GCRA.expires_at(m, e) return e.now + GCRA.reset_after(m, e) end
  function GCRA.earliest(m, e, cost)
    local over = m.rel + cost * e.window - e.burst * e.window
    if over <= 0 then return e.now end
    return e.now + ceil_div(over, e.limit)
  end
  function GCRA.change(m, e, key, delta, adjust, write)
    -- Never below now: a refund cannot fill beyond the burst. Never more than one burst of
    -- settlements on top of a spent burst.
    local rel = min(max(0, m.rel + delta * e.window), 2 * e.burst * e.window)
    local post, enc = {rel = rel}, nil
    if rel > 0 then
      local q = floor_div(rel, e.limit)
      enc = spack('<dd', e.now + q, rel - q * e.limit)
    end
    if write then persist(key, enc, GCRA.expires_at(post, e), e.now) end
    return post
  end
  return GCRA
end

-- ---- sliding_window: a list of {time_ms, cost, running total}, times strictly increasing --
local function define_sliding_window()
  -- The running total (cost of this entry and all before it) gives the sum of the window from
  -- the first and last entries alone, so a decision reads O(1) entries unless it is denied.
  local SW = {}
  local function sw_entry(s) return sunpack('<ddd', s) end
  local function sw_pack(t, c, cum) return spack('<ddd', t, c, cum) end

  -- Reads the first and last entries of [first, n) and sets sum and newest. With `e`, first
  -- forgets the entries more than a window ahead of now (clock steps; the next write drops
  -- them).
  local function sw_measure(m, key, e)
    m.sum, m.newest = 0, 0
    if m.first >= m.n then return end
    local lt, _, lcum = sw_entry(rcall('LINDEX', key, m.n - 1))
    while e and lt - e.now > e.window do
      m.n = m.n - 1
      if m.first >= m.n then return end
      lt, _, lcum = sw_entry(rcall('LINDEX', key, m.n - 1))
    end
    local ft, fc, fcum = sw_entry(rcall('LINDEX', key, m.first))
    m.sum = lcum - fcum + fc
    m.newest = lt
    m.last_cum = lcum
  end

  function SW.load(key, e)
    local n = rcall('LLEN', key)
    local m = {n = n, first = n, len = n}
    -- Entries at or before now - window have left the window.
    local i = 0
    while i < n and m.first == n do
      local chunk = rcall('LRANGE', key, i, i + 31)
      for j = 1, #chunk do
        local t = sw_entry(chunk[j])
        if t + e.window > e.now then
          m.first = i + j - 1
          break
        end
      end
      i = i + 32
    end
    sw_measure(m, key, e)
    return m
  end
  local function sw_full_at(m, e)
    if m.sum > 0 then return m.newest + e.window end
    return e.now
  end
  function SW.capacity(m, e) return e.limit end
  function SW.remaining(m, e) return max(0, e.limit - m.sum) end
  function SW.reset_after(m, e) return duration(sw_full_at(m, e) - e.now) end
  function SW.expires_at(m, e) return max(e.now, sw_full_at(m, e)) end
  function SW.earliest(m, e, cost)
    local excess = m.sum + cost - e.limit
    if excess <= 0 then return e.now end
    local freed, i = 0, m.first
    while i < m.n do
      local chunk = rcall('LRANGE', e.key, i, i + 63)
      for j = 1, #chunk do
        local t, c = sw_entry(chunk[j])
        freed = freed + c
        if freed >= excess then return t + e.window end
      end
      i = i + 64
    end
    return sw_full_at(m, e)
  end

  -- Keeps at most `keep` entries by folding the oldest into the next one; a fold only moves
  -- cost later, so the log never under-counts. The list holds exactly n live entries.
  local function sw_compact(key, n, keep)
    if keep <= 0 or n <= keep then return n end
    local fold = n - keep
    local head = rcall('LRANGE', key, 0, fold)
    local moved = 0
    for j = 1, #head do
      local _, c = sw_entry(head[j])
      moved = moved + c
    end
    local t, _, cum = sw_entry(head[fold + 1])
    rcall('LTRIM', key, fold, -1)
    rcall('LSET', key, 0, sw_pack(t, moved, cum))
    return keep
  end

  function SW.change(m, e, key, delta, adjust, write)
    local live = m.n - m.first
    if not write then
      -- What the log would report after the change, without touching it.
      local post = {sum = m.sum, newest = m.newest}
      if delta > 0 then
        if not (live > 0 and m.newest >= e.now) then post.newest = e.now end
        post.sum = m.sum + delta
      elseif delta < 0 then
        local refund, i = -delta, m.n - 1
        while refund > 0 and i >= m.first do
          local t, c = sw_entry(rcall('LINDEX', key, i))
          if c <= refund then
            refund = refund - c
            post.sum = post.sum - c
            i = i - 1
          else
            post.sum = post.sum - refund
            refund = 0
          end
        end
        if i < m.first then
          post.sum = 0
        else
          post.newest = sw_entry(rcall('LINDEX', key, i))
        end
      end
      return post
    end

    if m.first > 0 or m.n < m.len then
      if live <= 0 then rcall('DEL', key) else rcall('LTRIM', key, m.first, m.n - 1) end
    end
    local n = live
    local max_entries = e.max_entries
    if delta > 0 then
      if n > 0 and m.newest >= e.now then
        local t, c, cum = sw_entry(rcall('LINDEX', key, -1))
        rcall('LSET', key, -1, sw_pack(t, c + delta, cum + delta))
      elseif max_entries >= 2 or n == 0 then
        n = sw_compact(key, n, max_entries - 1)
        local cum = 0
        if n > 0 then cum = m.last_cum end -- folding never changes running totals
        rcall('RPUSH', key, sw_pack(e.now, delta, cum + delta))
        n = n + 1
      else
        n = sw_compact(key, n, 1)
        local _, c, cum = sw_entry(rcall('LINDEX', key, 0))
        rcall('LSET', key, 0, sw_pack(e.now, c + delta, cum + delta))
      end
    elseif delta < 0 then
      local refund = -delta
      while refund > 0 and n > 0 do
        local t, c, cum = sw_entry(rcall('LINDEX', key, -1))
        if c <= refund then
          refund = refund - c
          rcall('RPOP', key)
          n = n - 1
        else
          rcall('LSET', key, -1, sw_pack(t, c - refund, cum - refund))
          refund = 0
        end
      end
    end
    n = sw_compact(key, n, max_entries)
    local post = {n = n, first = 0}
    sw_measure(post, key)
    if n > 0 then
      rcall('PEXPIRE', key, max(1, SW.expires_at(post, e) - e.now + GRACE))
    end
    return post
  end
  return SW
end

-- ---- the driver shared by the counting algorithms -----------------------------------------
local function result(allowed, limit, remaining, reset_after, retry)
  return {allowed and 1 or 0, limit, remaining, reset_after, retry}
end

local function report(A, m, e, allowed, retry)
  return result(allowed, A.capacity(m, e), A.remaining(m, e), A.reset_after(m, e), retry)
end

local function drive(A, it, e, commit)
  local key = it.key
  local m = A.load(key, e)
  local op, cost = it.op, it.cost
  if op == OP_RESET then
    local cap = A.capacity(m, e)
    if commit then rcall('DEL', key) end
    return result(true, cap, cap, 0, 0)
  elseif op == OP_RELEASE then
    return report(A, m, e, true, 0)
  elseif op == OP_ADJUST then
    return report(A, A.change(m, e, key, cost, true, commit), e, true, 0)
  end
  if cost < 0 or cost > A.capacity(m, e) then return report(A, m, e, false, -1) end
  local at = A.earliest(m, e, cost)
  if at > e.now then return report(A, m, e, false, at - e.now) end
  return report(A, A.change(m, e, key, cost, false, commit and op ~= OP_PEEK), e, true, 0)
end

-- ---- concurrency: a sorted set (lease id by expiry) and a hash (id -> cost, "#held" -> total)
local function define_concurrency()
  -- Leases with equal expiries may be ordered differently than in the C++ blob; no answer
  -- depends on that order (only on expiries and sums). Expired leases are dropped by the next
  -- write; until then reads skip them.
  local function num(v) return string.format('%.0f', v) end

  local function cc_load(it, e)
    local key, ckey = it.key, it.ckey
    local m = {n = 0, held = 0, last = e.now, expired = {}}
    local total = rcall('ZCARD', key)
    if total == 0 then return m end
    local held = tonumber(rcall('HGET', ckey, '#held') or '0')
    local gone = rcall('ZRANGEBYSCORE', key, '-inf', num(e.now))
    for i = 1, #gone, 512 do
      local part = {}
      for j = i, min(#gone, i + 511) do part[#part + 1] = gone[j] end
      local costs = rcall('HMGET', ckey, unpack(part))
      for j = 1, #costs do held = held - tonumber(costs[j] or '0') end
    end
    m.expired = gone
    m.n = total - #gone
    m.held = held
    if m.n > 0 then m.last = tonumber(rcall('ZREVRANGE', key, 0, 0, 'WITHSCORES')[2]) end
    return m
  end

  -- The active lease `id` as {id, cost}, or nil.
  local function cc_find(it, e, id)
    local score = rcall('ZSCORE', it.key, id)
    if not score or tonumber(score) <= e.now then return nil end
    return {id = id, cost = tonumber(rcall('HGET', it.ckey, id) or '0')}
  end

  -- First time >= now at which, with lease `skip` not counted, `cost` more fits and at most
  -- `max_count` leases remain. Walks leases by expiry only when it does not fit now.
  local function cc_earliest(it, m, e, cost, skip, max_count)
    local held, count = m.held, m.n
    if skip then
      held = held - skip.cost
      count = count - 1
    end
    if held + cost <= e.limit and count <= max_count then return e.now end
    local offset = 0
    while true do
      local chunk = rcall('ZRANGEBYSCORE', it.key, '(' .. num(e.now), '+inf', 'WITHSCORES',
                               'LIMIT', offset, 256)
      if #chunk == 0 then break end
      local ids = {}
      for i = 1, #chunk, 2 do ids[#ids + 1] = chunk[i] end
      local costs = rcall('HMGET', it.ckey, unpack(ids))
      for j = 1, #ids do
        if not (skip and ids[j] == skip.id) then
          held = held - tonumber(costs[j] or '0')
          count = count - 1
          if held + cost <= e.limit and count <= max_count then return tonumber(chunk[2 * j]) end
        end
      end
      offset = offset + 256
    end
    return e.now
  end

  -- The leases without `remove`, plus {lease_id, add_exp, add_cost} when add_cost > 0: returns
  -- held, count and last expiry after the change, and writes it when `commit`.
  local function cc_change(it, m, e, remove, add_exp, add_cost, commit)
    local held, count = m.held, m.n
    if remove then
      held = held - remove.cost
      count = count - 1
    end
    local last = e.now
    if add_cost > 0 then
      held = held + add_cost
      count = count + 1
      last = add_exp
    end
    local top = rcall('ZREVRANGE', it.key, 0, 1, 'WITHSCORES')
    for i = 1, #top, 2 do
      if not (remove and top[i] == remove.id) then
        local score = tonumber(top[i + 1])
        if score > e.now and score > last then last = score end
        break
      end
    end
    if commit then
      local key, ckey = it.key, it.ckey
      for i = 1, #m.expired, 512 do
        local part = {}
        for j = i, min(#m.expired, i + 511) do part[#part + 1] = m.expired[j] end
        rcall('ZREM', key, unpack(part))
        rcall('HDEL', ckey, unpack(part))
      end
      if remove then
        rcall('ZREM', key, remove.id)
        rcall('HDEL', ckey, remove.id)
      end
      if add_cost > 0 then
        rcall('ZADD', key, num(add_exp), it.lease_id)
        rcall('HSET', ckey, it.lease_id, num(add_cost))
      end
      if count == 0 then
        rcall('DEL', key, ckey)
      else
        local ttl = max(1, last - e.now + GRACE)
        rcall('HSET', ckey, '#held', num(held))
        rcall('PEXPIRE', key, ttl)
        rcall('PEXPIRE', ckey, ttl)
      end
    end
    return held, count, last
  end

  local function drive_concurrency(it, e, commit)
    local op, cost, limit = it.op, it.cost, e.limit
    local max_leases = e.max_entries
    if op == OP_RESET then
      if commit then rcall('DEL', it.key, it.ckey) end
      return result(true, limit, limit, 0, 0)
    end
    local m = cc_load(it, e)

    -- A full lease table leaves nothing to acquire even when units are free; CONSUME and PEEK
    -- hold nothing, so only units count for them.
    local holds = op == OP_ACQUIRE or op == OP_RELEASE
    local function report(allowed, held, count, last, retry)
      local remaining = max(0, limit - held)
      if holds and count >= max_leases then remaining = 0 end
      return result(allowed, limit, remaining, duration(last - e.now), retry)
    end
    local function report_pre(allowed, retry)
      return report(allowed, m.held, m.n, m.last, retry)
    end

    if op == OP_ADJUST then
      return report_pre(true, 0)
    elseif op == OP_RELEASE then
      local found = cc_find(it, e, it.lease_id)
      if not found then return report_pre(false, 0) end
      local held, count, last = cc_change(it, m, e, found, 0, 0, commit)
      return report(true, held, count, last, 0)
    end
    if cost < 0 or cost > limit then return report_pre(false, -1) end
    if op ~= OP_ACQUIRE then
      local at = cc_earliest(it, m, e, cost, nil, math.huge)
      if at <= e.now then return report_pre(true, 0) end
      return report_pre(false, at - e.now)
    end
    -- Acquiring an id that is held renews it: the old lease is replaced, not added to.
    local renewed = cc_find(it, e, it.lease_id)
    local max_others = max_leases
    if cost > 0 then max_others = max_leases - 1 end
    local at = cc_earliest(it, m, e, cost, renewed, max_others)
    if at > e.now then return report_pre(false, at - e.now) end
    local expires = it.lease_expires
    if expires <= e.now then expires = e.now + e.window end
    local held, count, last = cc_change(it, m, e, renewed, expires, cost, commit)
    return report(true, held, count, last, 0)
  end
  return drive_concurrency
end

-- ---- items and batches ---------------------------------------------------------------------
-- Every call runs this whole chunk again, so each algorithm's functions are built only when a
-- call uses it: creating closures is most of a small call's cost.
local DEFINE = {[ALG_FW] = define_fixed_window, [ALG_SW] = define_sliding_window,
                [ALG_SWC] = define_sliding_window_counter, [ALG_TB] = define_token_bucket,
                [ALG_GCRA] = define_gcra, [ALG_CC] = define_concurrency,
                [ALG_CAL] = function() return define_fixed_window(true) end}
local defined = {}
local function algorithm(alg)
  local A = defined[alg]
  if A == nil and DEFINE[alg] then
    A = DEFINE[alg]()
    defined[alg] = A
  end
  return A
end

-- Parameters the engine's transitions refuse: denied (or, for RESET, forgotten) quietly.
local function deny_invalid(it, commit)
  local limit = max(0, it.limit)
  if it.op == OP_RESET then
    if commit then
      rcall('DEL', it.key)
      if it.ckey then rcall('DEL', it.ckey) end
    end
    return result(true, limit, limit, 0, 0)
  end
  return result(false, limit, 0, 0, -1)
end

local function apply(it, now, commit)
  local A = algorithm(it.alg)
  if A == nil then return deny_invalid(it, commit) end
  if it.alg == ALG_CC then
    return A(it, {now = now, limit = it.limit, window = it.window, max_entries = it.max_entries},
             commit)
  end
  return drive(A, it, {now = now, limit = it.limit, window = it.window, burst = it.burst,
                       max_entries = it.max_entries, key = it.key}, commit)
end

local function gating(op) return op == 1 or op == OP_ACQUIRE end

local now_redis = nil
if ARGV[1] == 'r' then
  local t = rcall('TIME')
  now_redis = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

-- fixed_window CONSUME alone in its batch, the most common decision: drive(FW, ...) committed,
-- step for step, without building its tables.
local function fixed_window_consume(key, now, limit, window, cost)
  local start, count, keep_ttl = now - fmod(now, window), 0, false -- now >= 0: fmod is exact
  local ws, c, w = fw_decode(rcall('GET', key))
  if ws and c >= 0 and (ws == start or ws == start + window) then
    start, count = ws, c
    -- The key's TTL already ends at this window's end plus the grace, in Redis's clock: keep
    -- it. Setting it again makes the SET almost twice as dear (docs/benchmarks.md).
    keep_ttl = c > 0 and w == window and now_redis ~= nil
  end
  local ends = start + window
  if cost < 0 or cost > limit or (count + cost > limit and ends > now) then
    local reset, retry = 0, -1
    if count > 0 then reset = duration(ends - now) end
    if cost >= 0 and cost <= limit then retry = ends - now end
    return spack('<ddddd', 0, limit, max(0, limit - count), reset, retry)
  end
  count = count + cost
  if count <= 0 then
    rcall('DEL', key)
    return spack('<ddddd', 1, limit, limit, 0, 0)
  end
  if keep_ttl then
    rcall('SET', key, spack('<ddd', start, count, window), 'KEEPTTL')
  else
    rcall('SET', key, spack('<ddd', start, count, window), 'PX', max(1, ends - now + GRACE))
  end
  return spack('<ddddd', 1, limit, max(0, limit - count), duration(ends - now), 0)
end

local ITEM = '<ddddddddd'
local out = {}
local packed = ARGV[4]
local pos, k, lease = 1, 1, 5
for _ = 1, tonumber(ARGV[3]) do
  local now, n
  now, n, pos = sunpack('<dd', packed, pos)
  now = now_redis or now
  local op, alg, limit, window, burst, cost, expires, shadow, max_entries
  if n >= 1 then
    op, alg, limit, window, burst, cost, expires, shadow, max_entries, pos =
      sunpack(ITEM, packed, pos)
  end
  if n == 1 and alg == ALG_FW and op == 1 then
    out[#out + 1] = fixed_window_consume(KEYS[k], now, limit, window, cost)
    k = k + 1
  elseif n >= 1 then
    local items = {}
    for i = 1, n do
      if i > 1 then
        op, alg, limit, window, burst, cost, expires, shadow, max_entries, pos =
          sunpack(ITEM, packed, pos)
      end
      local it = {key = KEYS[k], op = op, alg = alg, limit = limit, window = window,
                  burst = burst, cost = cost, lease_expires = expires, shadow = shadow ~= 0,
                  max_entries = max_entries}
      k = k + 1
      if alg == ALG_CC or alg == -ALG_CC then -- leases have a second key and an id
        it.ckey = KEYS[k]
        k = k + 1
        it.lease_id = ARGV[lease]
        lease = lease + 1
      end
      items[i] = it
    end
    local results = {}
    if n == 1 then
      results[1] = apply(items[1], now, items[1].op ~= OP_PEEK)
    else
      -- All-or-nothing: evaluate everything, commit only if no non-shadow item is denied.
      local denied = false
      for i = 1, n do
        results[i] = apply(items[i], now, false)
        if gating(items[i].op) and not items[i].shadow and results[i][1] == 0 then
          denied = true
        end
      end
      if not denied then
        for i = 1, n do
          if items[i].op ~= OP_PEEK then results[i] = apply(items[i], now, true) end
        end
      end
    end
    for i = 1, n do
      local r = results[i]
      out[#out + 1] = spack('<ddddd', r[1], r[2], r[3], r[4], r[5])
    end
  end
end
return table.concat(out)
