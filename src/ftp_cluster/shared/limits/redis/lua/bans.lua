-- bans: score a failure, ban, or unban one offender (an IP or an IPv6 network).
--
-- The rules are those of ftp_cluster/shared/limits/defender.py and LocalBans:
-- failures count for the observation time; reaching the threshold bans the
-- offender for ban_time * (1 + increment)^(n-1), n counting its bans within a
-- day; a ban resets the score; a banned offender scores nothing more. Every
-- new ban and every unban is published, so that every worker of every host
-- refuses (or admits again) the offender at once. The Redis clock (TIME)
-- decides, so hosts with skewed clocks still agree.
--
-- KEYS[1]  score ZSET (<ns>:{ip:<offender>}:score): member "<us>:<points>:<n>", score <us>
-- KEYS[2]  ban STRING (<ns>:{ip:<offender>}:ban): the ban's number n, expiring with the ban
-- KEYS[3]  history ZSET (<ns>:{ip:<offender>}:banned): one member per ban, scored by time (us)
-- ARGV[1]  "score", "ban" or "unban"
-- ARGV[2]  the offender, as published
-- ARGV[3]  the channel to publish on
-- ARGV[4]  score: points of this failure           ban: milliseconds (0: escalated ban_time)
-- ARGV[5]  score: threshold
-- ARGV[6]  score: observation time, milliseconds
-- ARGV[7]  ban_time, milliseconds
-- ARGV[8]  ban_time_increment (a number: 0.5 is 50 % longer each time)
-- returns  score: {0} not banned, {-1, ms left} banned already, {1, ms, n} banned now
--          ban: {1, ms, n}                          unban: 1 if it was banned, else 0

local action, offender, channel = ARGV[1], ARGV[2], ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local day_us = 86400 * 1000000
-- Integers as text: Lua's own tostring would write 1.7e+15.
local now_text = string.format('%.0f', now)

if action == 'unban' then
    local was = redis.call('DEL', KEYS[2])
    redis.call('DEL', KEYS[1], KEYS[3])
    redis.call('PUBLISH', channel, 'unban ' .. offender)
    return was
end

local function ban(ms)
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - day_us)
    redis.call('ZADD', KEYS[3], now, now_text)
    redis.call('PEXPIRE', KEYS[3], day_us / 1000)
    local n = redis.call('ZCARD', KEYS[3])
    if ms <= 0 then
        ms = math.ceil(tonumber(ARGV[7]) * (1 + tonumber(ARGV[8])) ^ (n - 1))
    end
    local ms_text = string.format('%.0f', ms)
    redis.call('SET', KEYS[2], n, 'PX', ms_text)
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', channel, 'ban ' .. offender .. ' ' .. ms_text .. ' ' .. n)
    return {1, ms, n}
end

if action == 'ban' then
    return ban(tonumber(ARGV[4]))
end

local left = redis.call('PTTL', KEYS[2])
if left > 0 then
    return {-1, left}
end
local points, threshold = tonumber(ARGV[4]), tonumber(ARGV[5])
local window_us = tonumber(ARGV[6]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_us)
local total = points
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local _, _, counted = string.find(member, '^%d+:(%d+):')
    total = total + tonumber(counted)
end
if total >= threshold then
    return ban(0)
end
local n = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now, now_text .. ':' .. points .. ':' .. n)
redis.call('PEXPIRE', KEYS[1], math.ceil(window_us / 1000))
return {0}
