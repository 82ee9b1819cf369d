-- release_worker: drop every lease of one worker, found through its index.
-- The supervisor runs it right after reaping a dead worker so the worker's
-- slots are free at once instead of after lease_ttl; a worker runs it for
-- itself when it closes.
--
-- KEYS[1]  lease index HASH of the worker    ({ns}:worker:<worker_id>)
-- ARGV[1]  lease key prefix                  ("{ns}:conn:")
-- ARGV[2]  worker id
-- returns  number of sessions whose leases were dropped (spare slots,
--          ids starting with "~", are dropped but not counted)

local index, prefix, worker = KEYS[1], ARGV[1], ARGV[2]
local entries = redis.call('HGETALL', index)
local sessions = {}
local count = 0

for i = 1, #entries, 2 do
    local field, value = entries[i], entries[i + 1]
    local kind, sid = string.sub(field, 1, 2), string.sub(field, 3)
    local member = worker .. '/' .. sid
    if kind == 'c:' then
        redis.call('ZREM', prefix .. 'server', member)
        redis.call('ZREM', prefix .. 'ip:' .. value, member)
    elseif kind == 'u:' then
        redis.call('ZREM', prefix .. 'user:' .. value, member)
    end
    if not sessions[sid] and string.sub(sid, 1, 1) ~= '~' then
        sessions[sid] = true
        count = count + 1
    end
end

redis.call('DEL', index)
return count
