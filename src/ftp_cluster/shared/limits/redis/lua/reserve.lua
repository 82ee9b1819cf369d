-- reserve: take the same number of bytes from several token buckets at once.
--
-- The arithmetic is that of ftp_cluster/shared/limits/bucket.py: a bucket's
-- level refills at its rate up to burst = rate * burst seconds, a reservation
-- lowers it (debt allowed), and the wait is the debt divided by the rate. A
-- bucket that does not exist yet starts with no credit. The Redis clock
-- (TIME) decides refills, so hosts with skewed clocks still agree.
--
-- KEYS[1..n]  bucket HASHes ({ns}:bucket:<key>), fields "level", "updated"
-- ARGV[1]     bytes to reserve
-- ARGV[2]     burst, in seconds of rate
-- ARGV[2+i]   rate of KEYS[i], bytes per second
-- returns     microseconds to wait before moving the bytes (the largest wait
--             of all buckets), an integer

local amount, burst_seconds = tonumber(ARGV[1]), tonumber(ARGV[2])

local clock = redis.call('TIME')
-- Microseconds since the epoch are below 2^53, so this double is exact.
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- Buckets outlive their debt by this much, then vanish (and restart empty).
local idle_ms = 60000
local longest = 0

for i = 1, #KEYS do
    local rate = tonumber(ARGV[2 + i])
    local burst = rate * burst_seconds
    local state = redis.call('HMGET', KEYS[i], 'level', 'updated')
    local level, updated = tonumber(state[1]), tonumber(state[2])
    if level == nil or updated == nil then
        level, updated = 0, now
    end
    -- Time only counts forward: after a failover to a host whose clock is
    -- behind, the bucket keeps its level and refills from the new clock.
    local elapsed = math.max(0, now - updated)
    level = math.min(burst, level + elapsed * rate / 1000000) - amount
    local wait = 0
    if level < 0 then
        wait = math.ceil(-level * 1000000 / rate)
    end
    if wait > longest then
        longest = wait
    end
    redis.call('HSET', KEYS[i],
        'level', string.format('%.17g', level),
        'updated', string.format('%.17g', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil(wait / 1000) + idle_ms)
end

return longest
