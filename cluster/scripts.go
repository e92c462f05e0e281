package cluster

import "github.com/redis/go-redis/v9"

// Each script does one read-check-write step atomically. Scripts that
// reach keys of another node or another JID build them from prefixes
// passed in ARGV (see keys.go).
//
// A session directory value is "NODE TAG" (see auth.go); scripts compare
// only the node, what comes before the space, and leave checking the tag
// to the Go side, which has the key.

// heartbeat: KEYS node, nodes; ARGV record, ttl ms, id. Returns 1 when the
// node key still existed, 0 when it had expired (or never existed).
var heartbeatScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return existed
`)

// bind: KEYS sess(bare), nodeSess(node); ARGV resource, directory value,
// full, nodeSess prefix, node prefix, node. Returns the previous value, or
// "" when there was none or its node is gone.
var bindScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if not prev then return '' end
local pn = string.match(prev, '^[^ ]*')
if pn ~= ARGV[6] then
  redis.call('SREM', ARGV[4] .. pn, ARGV[3])
  if redis.call('EXISTS', ARGV[5] .. pn) == 0 then return '' end
end
return prev
`)

// rebind: as bind, but leaves the entry alone and returns it when another
// live node holds it (that node's login is newer than ours, if the entry
// is signed); returns "" when it bound the entry.
var rebindScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], ARGV[1])
local pn = prev and string.match(prev, '^[^ ]*')
if pn and pn ~= ARGV[6] and redis.call('EXISTS', ARGV[5] .. pn) == 1 then
  return prev
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if pn and pn ~= ARGV[6] then redis.call('SREM', ARGV[4] .. pn, ARGV[3]) end
return ''
`)

// unbind: KEYS sess(bare), nodeSess(node); ARGV resource, node, full.
var unbindScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.match(v, '^[^ ]*') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
`)

// send: KEYS node(to), stream(to); ARGV max length, from, stamp, payload,
// auth. Returns 1 when queued, 0 when the node is gone, -1 when its
// backlog is full.
var sendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[1]) then return -1 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[2], 't', ARGV[3], 'p', ARGV[4], 'a', ARGV[5])
return 1
`)

// place: KEYS lease(key), placed, nodeLeases(me); ARGV me, ttl ms, key,
// node prefix. Returns {host, previous host when this call took it}.
var placeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {cur, ''}
end
if cur and redis.call('EXISTS', ARGV[4] .. cur) == 1 then
  return {cur, ''}
end
local prev = redis.call('HGET', KEYS[2], ARGV[3]) or ''
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
return {ARGV[1], prev}
`)

// renew: KEYS lease(key); ARGV me, ttl ms. Returns 0 when the lease is
// no longer ours.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// release: KEYS lease(key), placed, nodeLeases(me); ARGV me, key.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
redis.call('SREM', KEYS[3], ARGV[2])
return 1
`)

// cleanup: KEYS node(dead), nodeSess(dead), nodeLeases(dead); ARGV sess
// prefix, dead, lease prefix. Removes the dead node's sessions and leases.
// Returns -1 (doing nothing) if the node is alive again, else the number
// of sessions removed.
var cleanupScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = 0
for _, full in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local i = string.find(full, '/', 1, true)
  if i then
    local hk = ARGV[1] .. string.sub(full, 1, i - 1)
    local res = string.sub(full, i + 1)
    local v = redis.call('HGET', hk, res)
    if v and string.match(v, '^[^ ]*') == ARGV[2] then
      redis.call('HDEL', hk, res)
      n = n + 1
    end
  end
end
redis.call('DEL', KEYS[2])
for _, k in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('GET', ARGV[3] .. k) == ARGV[2] then
    redis.call('DEL', ARGV[3] .. k)
  end
end
redis.call('DEL', KEYS[3])
return n
`)

// drop: KEYS node(dead), stream(dead); ARGV entry ids. Deletes entries
// already handed to the fallback, unless the node came back (-1).
var dropScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return redis.call('XDEL', KEYS[2], unpack(ARGV))
`)

// forget: KEYS node(dead), stream(dead), nodes, cleanup(dead); ARGV dead.
// Finishes a cleanup: 1 when done, 0 when the node came back, -1 when its
// stream still holds entries.
var forgetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('XLEN', KEYS[2]) > 0 then return -1 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return 1
`)
