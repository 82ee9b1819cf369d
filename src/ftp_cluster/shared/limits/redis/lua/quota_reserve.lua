-- quota_reserve: add bytes and files to one user's disk tally, within the quota.
--
-- The arithmetic of grant() in ftp_cluster/shared/limits/local.py: files are
-- all or nothing, bytes are granted up to the quota's edge (fewer than asked,
-- down to none), so that the uploads of one user on every worker together
-- never pass the quota. A tally that does not exist is unknown: nothing is
-- added, and the caller scans the user's directory to set it.
--
-- KEYS[1]   the user's tally HASH ({ns}:quota:<user>), fields "bytes", "files"
-- ARGV[1]   bytes wanted (>= 0)
-- ARGV[2]   files wanted (>= 0)
-- ARGV[3]   quota in bytes, -1: unlimited
-- ARGV[4]   quota in files, -1: unlimited
-- returns   {granted, bytes, files}: granted >= 0 bytes (then added, with
--           the files), -1: the files would pass the quota (nothing added);
--           bytes and files are the tally afterwards. {-2}: no tally.

local wanted, files = tonumber(ARGV[1]), tonumber(ARGV[2])
local quota_bytes, quota_files = tonumber(ARGV[3]), tonumber(ARGV[4])

local state = redis.call('HMGET', KEYS[1], 'bytes', 'files')
local used, count = tonumber(state[1]), tonumber(state[2])
if used == nil or count == nil then
    return {-2}
end
if files > 0 and quota_files >= 0 and count + files > quota_files then
    return {-1, used, count}
end
local granted = wanted
if quota_bytes >= 0 then
    granted = math.max(0, math.min(granted, quota_bytes - used))
end
if granted > 0 then
    used = redis.call('HINCRBY', KEYS[1], 'bytes', granted)
end
if files > 0 then
    count = redis.call('HINCRBY', KEYS[1], 'files', files)
end
return {granted, used, count}
