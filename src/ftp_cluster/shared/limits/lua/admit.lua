-- admit: take a server-wide and a per-IP connection lease for one session.
--
-- KEYS[1]  lease ZSET of the server          ({ns}:conn:server)
-- KEYS[2]  lease ZSET of the client's IP     ({ns}:conn:ip:<ip>)
-- KEYS[3]  lease index HASH of this worker   ({ns}:worker:<worker_id>)
-- ARGV[1]  lease member, "<worker_id>/<session_id>"
-- ARGV[2]  session id (index field "c:<session_id>" = ip)
-- ARGV[3]  client IP
-- ARGV[4]  server cap, -1 for none
-- ARGV[5]  per-IP cap, -1 for none
-- ARGV[6]  lease TTL in milliseconds
-- returns  0 admitted (or already held), 1 server full, 2 IP full
--
-- Members are scored by their expiry on the Redis clock, so leases of a
-- vanished host drop out by themselves; they are purged before counting.

local member, sid, ip = ARGV[1], ARGV[2], ARGV[3]
local server_cap, ip_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- A key's own TTL must cover its latest member, whoever wrote it.
local function keep_for(key, ms)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)

if not redis.call('ZSCORE', KEYS[1], member) then
    if server_cap >= 0 and redis.call('ZCARD', KEYS[1]) >= server_cap then
        return 1
    end
    if ip_cap >= 0 and redis.call('ZCARD', KEYS[2]) >= ip_cap then
        return 2
    end
end

local expiry = now + ttl
redis.call('ZADD', KEYS[1], expiry, member)
redis.call('ZADD', KEYS[2], expiry, member)
keep_for(KEYS[1], ttl)
keep_for(KEYS[2], ttl)
redis.call('HSET', KEYS[3], 'c:' .. sid, ip)
redis.call('PEXPIRE', KEYS[3], ttl)
return 0
