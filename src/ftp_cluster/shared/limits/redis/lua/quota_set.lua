-- quota_set: set one user's disk tally to what a scan of the directory found.
--
-- KEYS[1]   the user's tally HASH ({ns}:quota:<user>), fields "bytes", "files"
-- ARGV[1]   bytes
-- ARGV[2]   files
-- ARGV[3]   1: only if there is no tally yet (the first login's scan, which
--           several workers may run at once); 0: always (`quota scan`)
-- returns   {bytes, files}: the tally afterwards

if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
    local state = redis.call('HMGET', KEYS[1], 'bytes', 'files')
    return {tonumber(state[1]) or 0, tonumber(state[2]) or 0}
end
redis.call('HSET', KEYS[1], 'bytes', ARGV[1], 'files', ARGV[2])
return {tonumber(ARGV[1]), tonumber(ARGV[2])}
