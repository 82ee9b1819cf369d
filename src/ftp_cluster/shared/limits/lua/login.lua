-- login: take a lease in a user's connection count, giving up the session's
-- previous user lease first.
--
-- KEYS[1]  lease ZSET of the user            ({ns}:conn:user:<name>)
-- KEYS[2]  lease index HASH of this worker   ({ns}:worker:<worker_id>)
-- KEYS[3]  optional: lease ZSET of the user the session was logged in as
-- ARGV[1]  lease member, "<worker_id>/<session_id>"
-- ARGV[2]  session id (index field "u:<session_id>" = user name)
-- ARGV[3]  user name
-- ARGV[4]  the user's cap, -1 for none
-- ARGV[5]  lease TTL in milliseconds
-- returns  0 logged in, 1 user full (the session then holds no user lease)

local member, sid, user = ARGV[1], ARGV[2], ARGV[3]
local cap, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local field = 'u:' .. sid

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

if KEYS[3] then
    redis.call('ZREM', KEYS[3], member)
    redis.call('HDEL', KEYS[2], field)
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap >= 0 and redis.call('ZCARD', KEYS[1]) >= cap then
    return 1
end

redis.call('ZADD', KEYS[1], now + ttl, member)
if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('HSET', KEYS[2], field, user)
redis.call('PEXPIRE', KEYS[2], ttl)
return 0
