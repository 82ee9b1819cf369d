-- quota_adjust: change one user's disk tally, whatever the quota (deletions,
-- the end of an upload, changes counted while Redis was down).
--
-- A tally that does not exist stays so: the scan that sets it counts the
-- disk, which already shows the change. Neither figure goes below zero.
--
-- KEYS[1]   the user's tally HASH ({ns}:quota:<user>), fields "bytes", "files"
-- ARGV[1]   change of bytes (negative: freed)
-- ARGV[2]   change of files
-- returns   {bytes, files} afterwards, or {} when there is no tally

if redis.call('EXISTS', KEYS[1]) == 0 then
    return {}
end
local used = redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[1])
local count = redis.call('HINCRBY', KEYS[1], 'files', ARGV[2])
if used < 0 then
    used = 0
    redis.call('HSET', KEYS[1], 'bytes', 0)
end
if count < 0 then
    count = 0
    redis.call('HSET', KEYS[1], 'files', 0)
end
return {used, count}
