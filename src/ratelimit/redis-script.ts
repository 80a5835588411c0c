/** month_index(ms): months since year 0 (year·12 + month, UTC), as getUTCFullYear()·12 + getUTCMonth(). */
export const MONTH_INDEX_LUA = `
local function month_index(ms)
  local z = math.floor(ms / 86400000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y * 12 + (m - 1)
end
`;

/**
 * Takes back one request counted by RATE_LIMIT_BATCH_SCRIPT at `time` (its reply's `now`): the gateway
 * gave up waiting for that reply and decided the request by its failure policy, so the count
 * must not stay. Each limit's count of the window that held `time` is decremented, in `c` while
 * that window is still the current one, in `p` once it has become the previous one, not at all
 * once it has faded; the quota's count, while its period is the same.
 *
 * KEYS: one decision's keys, as RATE_LIMIT_BATCH_SCRIPT's. ARGV: n, windowMs per limit, quota period ('' = none), time.
 */
export const REFUND_SCRIPT = `
${MONTH_INDEX_LUA}
local n = tonumber(ARGV[1])
local time = tonumber(ARGV[n + 3])
for i = 1, n do
  local ix = math.floor(time / tonumber(ARGV[1 + i]))
  local v = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
  local si = tonumber(v[1])
  if si == ix then
    if (tonumber(v[2]) or 0) > 0 then redis.call('HINCRBY', KEYS[i], 'c', -1) end
  elseif si == ix + 1 then
    if (tonumber(v[3]) or 0) > 0 then redis.call('HINCRBY', KEYS[i], 'p', -1) end
  end
end
local qper = ARGV[n + 2]
if qper ~= '' then
  local period
  if qper == 'day' then period = math.floor(time / 86400000) else period = month_index(time) end
  local v = redis.call('HMGET', KEYS[n + 1], 'p', 'n')
  if tonumber(v[1]) == period and (tonumber(v[2]) or 0) > 0 then redis.call('HINCRBY', KEYS[n + 1], 'n', -1) end
end
return 1
`;

/**
 * Reads the counts of one decision's keys (RATE_LIMIT_BATCH_SCRIPT's) without changing them, with Redis's clock. All
 * keys share one hash tag (one Cluster slot), so one script reads them atomically.
 * KEYS: one decision's keys. Reply: now (ms), then per key its fields i, c, p (a limit) or
 * p, n, -1 (the quota), -1 where absent.
 */
export const PEEK_SCRIPT = `
local t = redis.call('TIME')
local out = { tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) }
local nlimits = tonumber(ARGV[1])
for k = 1, #KEYS do
  local v
  if k <= nlimits then v = redis.call('HMGET', KEYS[k], 'i', 'c', 'p') else v = redis.call('HMGET', KEYS[k], 'p', 'n') end
  for j = 1, 3 do out[#out + 1] = tonumber(v[j]) or -1 end
end
return out
`;

/**
 * The Lua script behind the Redis store: one EVALSHA checks and counts the decisions of one batch
 * (those asked for in one event-loop turn, for one node or Cluster slot), each against every limit
 * and the quota of its plan, atomically, with the time taken from Redis (`TIME`, once for the
 * batch), never from the gateway's clock: instances whose clocks disagree still share one limit.
 * Decisions are taken in the order given; a later one on the same keys reads what the earlier
 * ones counted, so a batch decides as the same calls made one by one, and a refused decision
 * counts nothing. A decision is allowed when, for every limit, the sliding estimate (previous
 * window weighted by the part of it still inside the window, plus the current one) stays within
 * the limit after this request, and the quota's period count does too. The admission rule is
 * window.ts's, in Lua.
 *
 * The deadline is how a call that Redis runs long after it was sent (Redis was stalled, or the
 * call waited for a connection) counts nothing: the gateway decided those requests by its
 * failure policy long ago.
 *
 * KEYS: each decision's keys in turn: one hash per limit, then the quota's hash (a decision's keys
 * share one hash tag; on a Cluster the whole batch shares one slot: the store batches per slot).
 * ARGV: m (decisions), a deadline on this Redis's clock in ms (0 = none), then per decision: n,
 * windowMs and requests per limit, quota requests and period ('' = none).
 * Reply: 0 (or 3, too late: past the deadline, nothing read or counted), now (ms), then per
 * decision its outcome (0 allowed, 1 rate limited, 2 quota exceeded), per limit its window index,
 * current and previous count, then the quota's period and used count; counts are after the
 * request when it was allowed.
 */
export const RATE_LIMIT_BATCH_SCRIPT = `
${MONTH_INDEX_LUA}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = tonumber(ARGV[1])
local deadline = tonumber(ARGV[2]) or 0
if deadline > 0 and now > deadline then return { 3, now } end
local out = { 0, now }
local a = 3
local k = 0
local dayperiod = math.floor(now / 86400000)
local monthperiod = month_index(now)
for d = 1, m do
  local n = tonumber(ARGV[a])
  local qreq = tonumber(ARGV[a + 2 * n + 1])
  local qper = ARGV[a + 2 * n + 2]
  local qkey = KEYS[k + n + 1]
  local outcome = 0
  local qperiod, qused = 0, 0
  if qper ~= '' then
    if qper == 'day' then qperiod = dayperiod else qperiod = monthperiod end
    local v = redis.call('HMGET', qkey, 'p', 'n')
    if tonumber(v[1]) == qperiod then qused = tonumber(v[2]) or 0 end
    if qused + 1 > qreq then outcome = 2 end
  end
  local idx, cur, prev = {}, {}, {}
  for i = 1, n do
    local w = tonumber(ARGV[a + 2 * i - 1])
    local l = tonumber(ARGV[a + 2 * i])
    local ix = math.floor(now / w)
    local v = redis.call('HMGET', KEYS[k + i], 'i', 'c', 'p')
    local si = tonumber(v[1])
    local c, p = 0, 0
    if si == ix then
      c = tonumber(v[2]) or 0
      p = tonumber(v[3]) or 0
    elseif si == ix - 1 then
      p = tonumber(v[2]) or 0
    end
    idx[i], cur[i], prev[i] = ix, c, p
    if outcome == 0 and p * (w - (now - ix * w)) / w + c + 1 > l then outcome = 1 end
  end
  if outcome == 0 then
    for i = 1, n do
      cur[i] = cur[i] + 1
      redis.call('HSET', KEYS[k + i], 'i', idx[i], 'c', cur[i], 'p', prev[i])
      redis.call('PEXPIRE', KEYS[k + i], 2 * tonumber(ARGV[a + 2 * i - 1]))
    end
    if qper ~= '' then
      qused = qused + 1
      redis.call('HSET', qkey, 'p', qperiod, 'n', qused)
      if qper == 'day' then redis.call('PEXPIRE', qkey, 2 * 86400000) else redis.call('PEXPIRE', qkey, 32 * 86400000) end
    end
  end
  out[#out + 1] = outcome
  for i = 1, n do
    out[#out + 1] = idx[i]
    out[#out + 1] = cur[i]
    out[#out + 1] = prev[i]
  end
  out[#out + 1] = qperiod
  out[#out + 1] = qused
  k = k + n
  if qper ~= '' then k = k + 1 end
  a = a + 2 * n + 3
end
return out
`;
