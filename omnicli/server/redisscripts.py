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

The three call scripts also keep the service's count of calls per state (`P{svc}:states`,
a hash state -> count, KEYS[5]) in the same step as the record: a call added counts in
its state, a change of state moves one from the old state to the new, an ending takes
its state's one away (a count at 0 stays: the hash has one field per state, five at
most). No other code writes that hash, so it always equals what the records say
(`/metrics` reads it instead of every record). The counts change before the records do,
so a record without a state fails the script before it has written anything.

A record's `state` and `rev` are found in its JSON by a plain substring search for the
key (`field`: 0.45 us on a 6.4 KB record with two SDPs, where `cjson.decode` takes 13.7
us and a Lua pattern search 21 us), never by decoding it: the store writes records with
fixed top-level keys and every quote inside a string escaped, so `"state":` and `"rev":`
occur once each, as those keys. `scripts/bench_callscripts.py` times a call cycle's
scripts inside Redis (docs/performance.md).
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

# A top-level field of a call record (a number, or a string of word characters), found
# without decoding (see the module docstring); KEYS[5] of the call scripts is
# P{svc}:states, and `count(state, by)` changes one of its counts.
_COUNT = """
local function field(record, name)
  local _, last = string.find(record, '"' .. name .. '":', 1, true)
  return string.match(record, '^"?([%w_.]+)', last + 1)
end
local function state_of(record) return field(record, 'state') end
local function count(state, by)
  redis.call('HINCRBY', KEYS[5], state, by)
end
"""

ADD_CALL = (
    _COUNT
    + """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1
   or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
count(state_of(ARGV[1]), 1)
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2]) end
return 1
"""
)

SWAP_CALL = (
    _COUNT
    + """
local cur = redis.call('GET', KEYS[1])
if not cur then return {0} end
if tonumber(field(cur, 'rev')) ~= tonumber(ARGV[1]) then return {0, cur} end
local was = state_of(cur)
if ARGV[2] == '' then
  count(was, -1)
  redis.call('DEL', KEYS[1])
  for i = 2, 3 do
    if redis.call('GET', KEYS[i]) == ARGV[3] then redis.call('DEL', KEYS[i]) end
  end
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {1, cur}
end
local state = state_of(ARGV[2])
if state ~= was then
  count(state, 1)
  count(was, -1)
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[4], ARGV[3])
else
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
return {1}
"""
)

PLACE_CALL = (
    _COUNT
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {2} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {3} end
local callee = redis.call('GET', KEYS[6])
local online = callee and cjson.decode(callee)['away_until'] == cjson.null
local record = ARGV[2]
if online then record = ARGV[1] end
count(state_of(record), 1)
redis.call('SET', KEYS[1], record)
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3]) end
if online then return {0, 1, callee} end
return {0, 0, callee}
"""
)

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
