"""The Lua scripts of `redisstore.RedisStore`: each write of the store contract is one,
so it applies atomically on the Redis server and only to the record it expects.

Keys and arguments are the store's (see `redisstore` for the key layout):

- `ADD_PRESENCE`: a new session, unless the user id is online; listed, held by its node,
  and on the away timer if it starts away.
- `SWAP_PRESENCE`: replace a presence if the stored JSON is still `old` (or remove it),
  moving it between nodes' sets and on or off the away timer.
- `ADD_CALL`: a new call, unless the id or either party is taken.
- `SWAP_CALL`: replace (or remove) a call if its `rev` is still the expected one; a stale
  `rev` answers the current record.
- `PLACE_CALL`: the offer in one step: both parties free, the id unused, the callee's
  presence read, the call stored ringing (callee online) or calling.
- `CALL_OF`: the call a user is in, in one round trip.
"""

from __future__ import annotations

from typing import Any

ADD_PRESENCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2]) end
return 1
"""

SWAP_PRESENCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('SREM', KEYS[4], ARGV[3])
  return 1
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
if KEYS[4] ~= KEYS[5] then
  redis.call('SREM', KEYS[4], ARGV[3])
  redis.call('SADD', KEYS[5], ARGV[3])
end
return 1
"""

ADD_CALL = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1
   or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2]) end
return 1
"""

SWAP_CALL = """
local cur = redis.call('GET', KEYS[1])
if not cur then return {0} end
if cjson.decode(cur)['rev'] ~= tonumber(ARGV[1]) then return {0, cur} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  for i = 2, 3 do
    if redis.call('GET', KEYS[i]) == ARGV[3] then redis.call('DEL', KEYS[i]) end
  end
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {1, cur}
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[4], ARGV[3])
else
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
return {1}
"""

PLACE_CALL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {2} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {3} end
local callee = redis.call('GET', KEYS[5])
local online = callee and cjson.decode(callee)['away_until'] == cjson.null
local record = ARGV[2]
if online then record = ARGV[1] end
redis.call('SET', KEYS[1], record)
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3]) end
if online then return {0, 1, callee} end
return {0, 0, callee}
"""

CALL_OF = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
return redis.call('GET', ARGV[1] .. id)
"""


class Scripts:
    """The scripts registered on one client (redis-py sends each by its SHA, and loads it
    again if Redis forgot it)."""

    def __init__(self, client: Any) -> None:
        self.add_presence = client.register_script(ADD_PRESENCE)
        self.swap_presence = client.register_script(SWAP_PRESENCE)
        self.add_call = client.register_script(ADD_CALL)
        self.swap_call = client.register_script(SWAP_CALL)
        self.call_of = client.register_script(CALL_OF)
        self.place_call = client.register_script(PLACE_CALL)
