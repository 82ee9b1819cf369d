-- refresh: make Redis hold exactly this worker's leases, with fresh expiry.
--
-- Run every lease_ttl/3 and after Redis comes back: it extends live leases,
-- re-adds those Redis lost (restart, failover), moves a session's user lease
-- when its login changed while Redis was unreachable, and drops the leases of
-- sessions that ended meanwhile.
--
-- KEYS[1]  lease index HASH of this worker   ({ns}:worker:<worker_id>)
-- ARGV[1]  lease key prefix                  ("{ns}:conn:")
-- ARGV[2]  worker id
-- ARGV[3]  lease TTL in milliseconds
-- ARGV[4]  R, the number of ended sessions that follow
-- ARGV[5 .. 4+R]  ids of sessions that ended while their release could not
--                 be sent
-- then     one triple per live session: session id, IP ("" if not admitted),
--          user name ("" if not logged in)
-- returns  {leases re-added because Redis had lost them, leases dropped}
--
-- Lease keys are built from the index and the arguments rather than passed
-- as KEYS: this script targets a single Redis (or Sentinel) deployment.

local index, prefix, worker = KEYS[1], ARGV[1], ARGV[2]
local ttl, ended = tonumber(ARGV[3]), tonumber(ARGV[4])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expiry = now + ttl

local function keep_for(key, ms)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end

local function lease(key, member)
    local added = redis.call('ZADD', key, expiry, member)
    keep_for(key, ttl)
    return added
end

local dropped = 0

local function drop_user(sid, member)
    local old = redis.call('HGET', index, 'u:' .. sid)
    if old then
        dropped = dropped + redis.call('ZREM', prefix .. 'user:' .. old, member)
        redis.call('HDEL', index, 'u:' .. sid)
    end
end

for i = 5, 4 + ended do
    local sid = ARGV[i]
    local member = worker .. '/' .. sid
    local ip = redis.call('HGET', index, 'c:' .. sid)
    if ip then
        dropped = dropped + redis.call('ZREM', prefix .. 'server', member)
        dropped = dropped + redis.call('ZREM', prefix .. 'ip:' .. ip, member)
        redis.call('HDEL', index, 'c:' .. sid)
    end
    drop_user(sid, member)
end

local readded = 0
for i = 5 + ended, #ARGV, 3 do
    local sid, ip, user = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local member = worker .. '/' .. sid
    if ip ~= '' then
        readded = readded + lease(prefix .. 'server', member)
        lease(prefix .. 'ip:' .. ip, member)
        redis.call('HSET', index, 'c:' .. sid, ip)
    end
    if redis.call('HGET', index, 'u:' .. sid) ~= user then
        drop_user(sid, member)
    end
    if user ~= '' then
        readded = readded + lease(prefix .. 'user:' .. user, member)
        redis.call('HSET', index, 'u:' .. sid, user)
    end
end

if redis.call('EXISTS', index) == 1 then
    redis.call('PEXPIRE', index, ttl)
end
return {readded, dropped}
