-- leases: apply a batch of one worker's lease operations (admit, login,
-- release) in order, each exactly as if it ran alone, in one round trip.
--
-- KEYS[1]     lease index HASH of this worker   ({ns}:worker:<worker_id>)
-- KEYS[2]     lease ZSET of the server          ({ns}:conn:server)
-- KEYS[3..n]  the IP and user lease ZSETs the operations name by position
--             ({ns}:conn:ip:<ip>, {ns}:conn:user:<name>)
-- ARGV[1]     worker id (a lease member is "<worker_id>/<session_id>")
-- ARGV[2]     lease TTL in milliseconds
-- then the operations, one after the other, each a code and its fields
-- (a "key" field is a position in KEYS, 0 for none):
--   "a", session id, IP key, IP, server cap, per-IP cap   (caps: -1 for none)
--       admit: take a server and an IP lease, index field "c:<sid>" = IP
--       result 0 admitted (or already held), 1 server full, 2 IP full
--   "l", session id, user key, user name, user cap, previous user key
--       login: give up the previous user lease, take one in the user's count,
--       index field "u:<sid>" = user name
--       result 0 logged in (or already held, unless logging in again as the
--       previous user, who is counted anew), 1 user full (the session then
--       holds no user lease)
--   "r", session id, IP key, user key
--       release: drop the server and IP leases (IP key not 0) and the user
--       lease (user key not 0) with their index fields
--       result the number of leases removed
--   "s", session id, new session id, IP key, IP
--       swap: the new id takes the server and IP leases of the first (a
--       session takes a spare slot's place, or leaves its own as a spare),
--       with the index; the count does not change, so no cap is checked
--       result 0 moved (or already), 1 the first id held nothing: nothing taken
-- returns     the results, one per operation, in order
--
-- A batch whose reply was lost with its connection is sent again, so every
-- operation is safe to repeat: a repeated admit or login finds its lease
-- held and keeps it, a repeated release removes nothing, a repeated swap
-- finds the new id in place.
--
-- Members are scored by their expiry on the Redis clock, so leases of a
-- vanished host drop out by themselves. Nothing else runs while a script
-- does and its clock stands still, so the script purges each count of
-- expired members once, counts it once and then keeps the count itself; it
-- writes the index and extends each key's own TTL once, at the end.

local index, server = KEYS[1], KEYS[2]
local worker, ttl = ARGV[1], tonumber(ARGV[2])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expiry = now + ttl

local sizes = {} -- live members of the keys counted so far
local extended = {} -- keys that got a member
local index_set = {} -- index field -> value, written at the end
local index_del = {} -- index fields deleted at the end

local function count(key)
    local size = sizes[key]
    if size == nil then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        size = redis.call('ZCARD', key)
        sizes[key] = size
    end
    return size
end

local function full(key, cap)
    return cap >= 0 and count(key) >= cap
end

local function take(key, member)
    local added = redis.call('ZADD', key, expiry, member)
    if sizes[key] then
        sizes[key] = sizes[key] + added
    end
    extended[key] = true
end

local function drop(key, member)
    local removed = redis.call('ZREM', key, member)
    if sizes[key] then
        sizes[key] = sizes[key] - removed
    end
    return removed
end

local function index_put(field, value)
    index_set[field] = value
    index_del[field] = nil
end

local function index_drop(field)
    index_set[field] = nil
    index_del[field] = true
end

local function admit(sid, member, ip_key, ip, server_cap, ip_cap)
    -- Without a cap there is nothing to check, so no lookup either: most
    -- sessions of a cluster without connection limits come this way.
    if (server_cap >= 0 or ip_cap >= 0) and not redis.call('ZSCORE', server, member) then
        if full(server, server_cap) then
            return 1
        end
        if full(ip_key, ip_cap) then
            return 2
        end
    end
    take(server, member)
    take(ip_key, member)
    index_put('c:' .. sid, ip)
    return 0
end

local function login(sid, member, user_key, user, cap, previous_key)
    local field = 'u:' .. sid
    -- A login sent again finds its lease held; logging in again as the
    -- previous user is counted anew, as in LocalLimits.
    local held = cap < 0 or previous_key ~= user_key and redis.call('ZSCORE', user_key, member)
    if previous_key then
        drop(previous_key, member)
        index_drop(field)
    end
    if not held and full(user_key, cap) then
        return 1
    end
    take(user_key, member)
    index_put(field, user)
    return 0
end

local function release(sid, member, ip_key, user_key)
    local removed = 0
    if ip_key then
        removed = removed + drop(server, member) + drop(ip_key, member)
        index_drop('c:' .. sid)
    end
    if user_key then
        removed = removed + drop(user_key, member)
        index_drop('u:' .. sid)
    end
    return removed
end

local function swap(sid, new_sid, ip_key, ip)
    local new_member = worker .. '/' .. new_sid
    if redis.call('ZSCORE', server, new_member) then
        return 0
    end
    local member = worker .. '/' .. sid
    local held = drop(server, member)
    drop(ip_key, member)
    index_drop('c:' .. sid)
    if held == 0 then
        return 1
    end
    take(server, new_member)
    take(ip_key, new_member)
    index_put('c:' .. new_sid, ip)
    return 0
end

local function key_at(position)
    local n = tonumber(position)
    if n == 0 then
        return nil
    end
    return KEYS[n]
end

local results = {}
local i = 3
while i <= #ARGV do
    local code, sid = ARGV[i], ARGV[i + 1]
    local member = worker .. '/' .. sid
    if code == 'a' then
        results[#results + 1] = admit(sid, member, key_at(ARGV[i + 2]), ARGV[i + 3],
            tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]))
        i = i + 6
    elseif code == 'l' then
        results[#results + 1] = login(sid, member, key_at(ARGV[i + 2]), ARGV[i + 3],
            tonumber(ARGV[i + 4]), key_at(ARGV[i + 5]))
        i = i + 6
    elseif code == 's' then
        results[#results + 1] = swap(sid, ARGV[i + 2], key_at(ARGV[i + 3]), ARGV[i + 4])
        i = i + 5
    elseif code == 'r' then
        results[#results + 1] = release(sid, member, key_at(ARGV[i + 2]), key_at(ARGV[i + 3]))
        i = i + 4
    else
        return redis.error_reply('leases: unknown operation ' .. tostring(code))
    end
end

-- A key's own TTL must cover its newest member, whoever wrote it.
for key in pairs(extended) do
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end

local fields = {}
for field in pairs(index_del) do
    fields[#fields + 1] = field
end
if #fields > 0 then
    redis.call('HDEL', index, unpack(fields))
end
fields = {}
for field, value in pairs(index_set) do
    fields[#fields + 1] = field
    fields[#fields + 1] = value
end
if #fields > 0 then
    redis.call('HSET', index, unpack(fields))
    redis.call('PEXPIRE', index, ttl)
end
return results
