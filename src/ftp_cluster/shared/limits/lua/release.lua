-- release: give up some or all leases of one session (logout, disconnect).
--
-- KEYS[1]     lease index HASH of this worker ({ns}:worker:<worker_id>)
-- KEYS[2..n]  lease ZSETs to remove the session's member from
-- ARGV[1]     lease member, "<worker_id>/<session_id>"
-- ARGV[2..m]  index fields to delete ("c:<session_id>", "u:<session_id>")
-- returns     number of leases removed

local removed = 0
for i = 2, #KEYS do
    removed = removed + redis.call('ZREM', KEYS[i], ARGV[1])
end
if #ARGV > 1 then
    redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
end
return removed
