"""The pure limits: connection caps by stage, the failed-authentication throttle, and the
log guard (escaping, at most a few lines of one kind a second)."""

from __future__ import annotations

import logging
import resource

import pytest

from omnicli.server.limits import (
    FD_RESERVE,
    AddressBudget,
    AuthThrottle,
    Caps,
    ConnectionGate,
    list_cost,
    raise_fd_limit,
)
from omnicli.server.logsafe import ServerLogFilter, clean
from omnicli.server.ratelimit import TokenBucket

# -- connection caps ---------------------------------------------------------------------------


def test_per_address_cap_refuses_and_a_release_frees_a_place() -> None:
    gate = ConnectionGate(Caps(total=100, per_address=2, unauthenticated=100))
    assert gate.admit("a", "10.0.0.1").admitted and gate.admit("b", "10.0.0.1").admitted
    refused = gate.admit("c", "10.0.0.1")
    assert not refused.admitted and "2 connections from 10.0.0.1" in refused.reason
    assert gate.admit("d", "10.0.0.2").admitted  # another address is not held up
    gate.release("a")
    assert gate.admit("c", "10.0.0.1").admitted
    assert gate.total == 3 and gate.refused == 1


def test_unauthenticated_cap_makes_the_oldest_room() -> None:
    """At the cap of connections before hello, the oldest one is closed for the new one."""
    gate = ConnectionGate(Caps(total=100, per_address=100, unauthenticated=3))
    for key in "abc":
        assert gate.admit(key, "x").evict is None
    gate.authenticated("a")  # a said hello: no longer waiting for it
    assert gate.admit("d", "x").evict is None
    admission = gate.admit("e", "x")
    assert admission.admitted and admission.evict == "b"
    assert list(gate.unauthenticated) == ["c", "d", "e"]
    gate.release("b")  # its connection_lost comes later: counted once only
    assert gate.total == 4 and gate.per_address["x"] == 4


def test_total_cap_evicts_the_longest_waiting_but_never_a_session() -> None:
    gate = ConnectionGate(Caps(total=3, per_address=10, unauthenticated=10))
    for key in "abc":
        gate.admit(key, "x")
    gate.authenticated("a")  # a: hello only (sessionless), oldest
    gate.authenticated("b")
    gate.registered("b")  # b holds a session
    assert gate.admit("d", "x").evict == "a"  # older than c, though c is unauthenticated
    assert gate.admit("e", "x").evict == "c"
    gate.authenticated("d")
    gate.registered("d")
    gate.authenticated("e")
    gate.registered("e")
    full = gate.admit("f", "x")  # only sessions left: refused
    assert not full.admitted and "server full" in full.reason


def test_caps_stay_below_the_descriptor_limit() -> None:
    caps = Caps(total=10_000, per_address=256, unauthenticated=512).within(256)
    assert caps == Caps(256 - FD_RESERVE, 192, 192)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- failed authentication -----------------------------------------------------------------------


def test_failures_past_the_free_ones_block_with_a_doubling_delay() -> None:
    throttle = AuthThrottle(free=3, first_block=1.0, max_block=4.0)
    assert [throttle.failed("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.failed("a", 0.0) == 1.0
    assert throttle.blocked_for("a", 0.5) == pytest.approx(0.5)
    assert throttle.blocked_for("b", 0.5) == 0.0  # per address
    assert throttle.blocked_for("a", 1.0) == 0.0
    assert [throttle.failed("a", t) for t in (1.0, 3.0, 7.0, 11.0)] == [2.0, 4.0, 4.0, 4.0]
    assert throttle.failed("a", 11.0 + throttle.forget_after + 1) == 0.0  # quiet: afresh


def test_the_summary_counts_since_the_last_one_and_the_table_is_bounded() -> None:
    throttle = AuthThrottle(free=1, max_addresses=3)
    throttle.failed("a", 0.0)
    throttle.failed("a", 0.0)
    throttle.blocked_for("a", 0.1)
    assert throttle.summary(0.1) == [("a", 2, 1, pytest.approx(0.9))]
    assert throttle.summary(0.2) == []
    for n in range(10):
        throttle.failed(f"addr{n}", 1.0)
    assert len(throttle.table) == 3 and "addr9" in throttle.table


# -- the log ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("bob", "bob"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("nul\x00esc\x1b[2J", "nul\\x00esc\\x1b[2J"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("x" * 100, "x" * 80 + "…"),
    ],
)
def test_client_text_is_escaped_and_cut(raw: str, logged: str) -> None:
    assert clean(raw) == logged


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("omnicli.server.driver", logging.INFO, "f", 1, msg, args, None)


def test_one_kind_of_message_passes_a_few_times_a_second_then_says_what_it_held() -> None:
    now = [0.0]
    guard = ServerLogFilter(per_second=5, clock=lambda: now[0])
    passed = [guard.filter(record("accept failed: %s", n)) for n in range(1000)]
    assert sum(passed) == 5
    assert guard.filter(record("another kind %s", 1))  # other messages are not held up
    now[0] = 1.5
    late = record("accept failed: %s", "again")
    assert guard.filter(late)
    assert late.getMessage() == "accept failed: again (995 more like this not logged)"


def test_every_message_is_escaped_whatever_logged_it() -> None:
    guard = ServerLogFilter()
    forged = record("%s refused: %s", "alice", "x\n12:00:00 FORGED")
    assert guard.filter(forged)
    assert forged.getMessage() == "alice refused: x\\n12:00:00 FORGED"


# -- costly answers ----------------------------------------------------------------------------


def test_long_lists_cost_more_per_connection_and_per_address() -> None:
    """A 1,000-row session_list costs 11 requests: an address may build ten or so a
    second, however many connections it opens; a short list costs about one."""
    assert list_cost(1000) == 10 and list_cost(5) == 0.05
    budget = AddressBudget(rate=100, burst=200)
    built = 0
    while budget.take("a", 0.0) == 0.0:
        budget.charge("a", list_cost(1000))
        built += 1
    assert built == 19  # the burst of 200 units: 19 answers of 11 units
    assert budget.take("b", 0.0) == 0.0  # another address is not held up
    wait = budget.take("a", 0.0)
    assert 0 < wait <= 0.1
    assert budget.take("a", 1.1) == 0.0  # 100 units a second come back
    bucket = TokenBucket(rate=20, burst=40)
    assert bucket.take(0.0)
    bucket.charge(100)  # never below -burst
    assert bucket.tokens == -40 and not bucket.take(0.0)
    assert bucket.retry_after() == pytest.approx(41 / 20)
