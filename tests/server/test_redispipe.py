"""RedisPipe against a real redis-server: batching, order, errors, timeouts, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.exceptions as rex
from redisd import RedisServer

from omnicli.server.redispipe import RedisPipe


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


async def test_commands_of_one_loop_turn_share_a_write_and_get_their_own_replies(redis):
    pipe = RedisPipe(redis.url)
    await pipe.execute("PING")
    before = (pipe.batches, pipe.commands)
    replies = await asyncio.gather(
        *(pipe.execute("SET", f"k{i}", f"v{i}") for i in range(200)),
        *(pipe.execute("INCR", "counter") for _ in range(100)),
    )
    assert replies[:200] == ["OK"] * 200
    assert sorted(replies[200:]) == list(range(1, 101))
    got = await pipe.execute_all([("GET", f"k{i}") for i in range(200)])
    assert got == [f"v{i}" for i in range(200)]
    batches, commands = pipe.batches - before[0], pipe.commands - before[1]
    assert commands == 500
    assert batches <= 4, batches  # 300 in one turn, 200 in the next
    await pipe.close()


async def test_replies_keep_their_types(redis):
    pipe = RedisPipe(redis.url)
    assert await pipe.execute("GET", "missing") is None
    assert await pipe.execute("RPUSH", "list", "a", "b") == 2
    assert await pipe.execute("LRANGE", "list", 0, -1) == ["a", "b"]
    assert await pipe.execute("EVAL", "return {1, 'x', false}", 0) == [1, "x", None]
    assert await pipe.execute("SET", "ü", "ünïcode") == "OK"
    assert await pipe.execute("GET", "ü") == "ünïcode"
    await pipe.close()


async def test_a_reply_error_fails_only_its_command(redis):
    pipe = RedisPipe(redis.url)
    await pipe.execute("SET", "s", "text")
    ok, bad, missing, after = await asyncio.gather(
        pipe.execute("GET", "s"),
        pipe.execute("INCR", "s"),
        pipe.execute("EVALSHA", "0" * 40, 0),
        pipe.execute("GET", "s"),
        return_exceptions=True,
    )
    assert (ok, after) == ("text", "text")
    assert isinstance(bad, rex.ResponseError) and "not an integer" in str(bad)
    assert isinstance(missing, rex.NoScriptError)
    await pipe.close()


async def test_unix_socket_and_database_number_from_the_url(redis):
    pipe = RedisPipe(f"unix://{redis.dir / 'redis.sock'}?db=3")
    await pipe.execute("SET", "where", "db3")
    tcp0 = RedisPipe(redis.url)  # database 0 over TCP
    assert await tcp0.execute("GET", "where") is None
    assert await pipe.execute("GET", "where") == "db3"
    await pipe.close()
    await tcp0.close()


async def test_no_redis_is_a_connection_error_then_it_connects_when_redis_is_there(redis):
    redis.stop()
    pipe = RedisPipe(redis.url, timeout=0.5)
    with pytest.raises(rex.ConnectionError):
        await pipe.execute("PING")
    redis.start()
    assert await pipe.execute("PING") == "PONG"
    await pipe.close()


async def test_redis_restarting_fails_the_commands_in_flight_and_the_next_reconnects(redis):
    pipe = RedisPipe(redis.url, timeout=2.0)
    await pipe.execute("PING")
    blocked = asyncio.ensure_future(pipe.execute("BLPOP", "never", 0))  # held by Redis
    await asyncio.sleep(0.05)
    redis.stop()
    with pytest.raises(rex.ConnectionError):
        await blocked
    redis.start()
    assert await pipe.execute("SET", "back", "1") == "OK"
    await pipe.close()


async def test_a_redis_that_stops_answering_times_out_and_the_connection_starts_again(redis):
    pipe = RedisPipe(redis.url, timeout=0.3)
    await pipe.execute("PING")
    stuck = asyncio.ensure_future(pipe.execute("BLPOP", "never", 0))
    behind = asyncio.ensure_future(pipe.execute("GET", "x"))  # queued after it
    started = asyncio.get_running_loop().time()
    with pytest.raises(rex.TimeoutError):
        await stuck
    with pytest.raises(rex.TimeoutError):
        await behind
    assert asyncio.get_running_loop().time() - started < 1.0
    assert await pipe.execute("PING") == "PONG"  # a new connection, in step
    await pipe.close()


async def test_a_subscription_hears_each_message_in_order_and_ends_when_redis_goes(redis):
    from omnicli.server.redispipe import RedisSubscription

    heard: list[str] = []
    sub = RedisSubscription(redis.url, "omni:node:x", heard.append)
    task = asyncio.create_task(sub.run())
    async with asyncio.timeout(5):
        await sub.subscribed.wait()
    pipe = RedisPipe(redis.url)
    counts = await pipe.execute_all([("PUBLISH", "omni:node:x", f"m{i}") for i in range(300)])
    assert counts == [1] * 300  # one subscriber got each: how the sender knows
    assert await pipe.execute("PUBLISH", "omni:node:other", "lost") == 0
    async with asyncio.timeout(5):
        while len(heard) < 300:
            await asyncio.sleep(0.01)
    assert heard == [f"m{i}" for i in range(300)]
    redis.stop()
    with pytest.raises(rex.ConnectionError):
        await asyncio.wait_for(task, 5)
    assert not sub.subscribed.is_set()
    await pipe.close()
