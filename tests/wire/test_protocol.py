"""The wire format: parsing every request, refusing every malformed one with the right code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire.protocol import CallType, ErrorCode, ProtocolError, Track


def req(op: str, rid: int = 1, **fields: Any) -> rq.Request:
    return rq.parse_request({"op": op, "id": rid, **fields})


def refused(obj: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        rq.parse_request(p.decode(json.dumps(obj)))
    return info.value


HELLO = {"op": "hello", "id": 1, "version": p.VERSION, "service_id": "dev"}
OFFER = {"op": "offer_call", "id": 2, "call_type": "videocall", "callee": "bob", "sdp": "v=0"}


# -- every op parses ---------------------------------------------------------------------


def test_hello_minimal() -> None:
    """hello with version and service id only leaves the optional fields None."""
    r = rq.parse_request(HELLO)
    assert r == rq.Request(1, "hello", rq.Hello(p.VERSION, "dev", None, None, None))


def test_hello_full() -> None:
    """hello carries key, token and client name through."""
    r = req("hello", version=1, service_id="svc", service_key="k", token="t", client="omni/1")
    assert r.body == rq.Hello(1, "svc", "k", "t", "omni/1")


def test_create_session_with_and_without_user_id() -> None:
    """create_session takes an optional user id."""
    assert req("create_session").body == rq.CreateSession(None)
    assert req("create_session", user_id="alice").body == rq.CreateSession("alice")


def test_session_list_leave_ping() -> None:
    """The field-less ops parse to their empty bodies and keep the request id."""
    assert req("session_list", rid=5) == rq.Request(5, "session_list", rq.SessionList())
    assert req("leave").body == rq.Leave()
    assert req("ping").body == rq.Ping()


def test_offer_call() -> None:
    """offer_call parses call type, callee, sdp; record defaults to false."""
    assert rq.parse_request(OFFER).body == rq.OfferCall(CallType.VIDEO, "bob", False, "v=0")
    body = req("offer_call", call_type="audiocall", callee="b", sdp="x", record=True).body
    assert body == rq.OfferCall(CallType.AUDIO, "b", True, "x")


def test_answer_call_seed_style_and_plain() -> None:
    """answer_call needs only sdp; call type and caller are optional (seed style)."""
    assert req("answer_call", sdp="v=0").body == rq.AnswerCall("v=0", None, None)
    body = req("answer_call", sdp="v=0", call_type="videocall", caller="alice").body
    assert body == rq.AnswerCall("v=0", CallType.VIDEO, "alice")


def test_mute_unmute() -> None:
    """mute and unmute parse the track and set `muted` accordingly."""
    assert req("mute", track="audio").body == rq.SetMute(Track.AUDIO, True)
    assert req("unmute", track="video").body == rq.SetMute(Track.VIDEO, False)


def test_media_state() -> None:
    """media_state accepts exactly 'connected' and 'failed'."""
    assert req("media_state", state="connected").body == rq.MediaState("connected")
    assert req("media_state", state="failed").body == rq.MediaState("failed")


def test_recording() -> None:
    """recording parses `on`, which is required."""
    assert req("recording", on=True).body == rq.SetRecording(True)
    assert req("recording", on=False).body == rq.SetRecording(False)
    with pytest.raises(ProtocolError, match="'on'") as info:
        req("recording")
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_dtmf_and_sip_sessions() -> None:
    """dtmf takes touch tones (upper-cased); create_session may ask for SIP calls."""
    assert req("dtmf", digits="12#*a").body == rq.Dtmf("12#*A")
    assert req("create_session", user_id="bob", sip_inbound=True).body == rq.CreateSession(
        "bob", True
    )
    assert req("create_session").body == rq.CreateSession(None, False)


def test_every_op_is_covered() -> None:
    """The ops this file tests are exactly the ops the protocol knows."""
    assert set(rq.OPS) == {
        "hello", "create_session", "session_list", "offer_call", "answer_call", "leave",
        "mute", "unmute", "media_state", "recording", "ping", "resume", "dtmf",
        "media_restart",
    }  # fmt: skip


def test_media_restart() -> None:
    """media_restart: an offer or answer carries sdp; a request carries none."""
    body = req("media_restart", kind="offer", sdp="v=0", call_id="c-1").body
    assert body == rq.MediaRestart(p.RestartKind.OFFER, "v=0", "c-1")
    assert req("media_restart", kind="request").body == rq.MediaRestart(p.RestartKind.REQUEST)
    with pytest.raises(ProtocolError, match="'sdp'"):
        req("media_restart", kind="answer")


# -- malformed frames ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "not json", "{'op': 'ping'}", "[" * 100_000])
def test_decode_invalid_json(text: str) -> None:
    """Text that is not JSON (including absurdly deep nesting) is a BAD_REQUEST."""
    with pytest.raises(ProtocolError, match="not valid JSON") as info:
        p.decode(text)
    assert info.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("text", ["[]", "1", '"hello"', "null", "true"])
def test_decode_non_object(text: str) -> None:
    """Valid JSON that is not an object is refused."""
    with pytest.raises(ProtocolError, match="JSON object") as info:
        p.decode(text)
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_decode_binary_frame() -> None:
    """Binary frames are refused, even if they hold JSON."""
    with pytest.raises(ProtocolError, match="binary"):
        p.decode(b'{"op":"ping","id":1}')


def test_decode_object() -> None:
    """A JSON object decodes to a dict."""
    assert p.decode('{"op":"ping","id":1}') == {"op": "ping", "id": 1}


@pytest.mark.parametrize("rid", [None, -1, 1.5, "1", True, 2**53, [1]])
def test_bad_request_id(rid: Any) -> None:
    """The id must be a non-negative integer below 2**53 (not a bool or float)."""
    obj = {"op": "ping"} if rid is None else {"op": "ping", "id": rid}
    err = refused(obj)
    assert err.code is ErrorCode.BAD_REQUEST and "'id'" in str(err)
    assert p.request_id(obj) is None


def test_request_id_accepts_zero_and_max() -> None:
    """0 and 2**53-1 are usable ids."""
    assert p.request_id({"id": 0}) == 0
    assert p.request_id({"id": 2**53 - 1}) == 2**53 - 1


@pytest.mark.parametrize("op", [None, 3, ["ping"]])
def test_op_not_a_string(op: Any) -> None:
    """A missing or non-string op is a BAD_REQUEST."""
    obj = {"id": 1} if op is None else {"id": 1, "op": op}
    err = refused(obj)
    assert err.code is ErrorCode.BAD_REQUEST and "'op'" in str(err)


def test_unknown_op() -> None:
    """An op the server does not know is UNKNOWN_OP, with the op name cut to 40 characters."""
    err = refused({"id": 1, "op": "dance" + "x" * 100})
    assert err.code is ErrorCode.UNKNOWN_OP
    assert str(err) == f"unknown op '{('dance' + 'x' * 100)[:40]}'"


@pytest.mark.parametrize("version", [0, 2, 99])
def test_wrong_version(version: int) -> None:
    """A protocol version other than ours is VERSION_UNSUPPORTED."""
    err = refused({**HELLO, "version": version})
    assert err.code is ErrorCode.VERSION_UNSUPPORTED


@pytest.mark.parametrize("version", [None, "1", 1.0, True])
def test_version_not_an_integer(version: Any) -> None:
    """A missing or non-integer version (bools included) is a BAD_REQUEST."""
    obj = {k: v for k, v in HELLO.items() if k != "version"}
    if version is not None:
        obj["version"] = version
    assert refused(obj).code is ErrorCode.BAD_REQUEST


def test_hello_missing_service_id() -> None:
    """hello without a service id is a BAD_REQUEST naming the field."""
    err = refused({"op": "hello", "id": 1, "version": 1})
    assert err.code is ErrorCode.BAD_REQUEST and "'service_id'" in str(err)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({**HELLO, "service_id": 7}, "service_id"),
        ({**HELLO, "service_key": 7}, "service_key"),
        ({**HELLO, "service_id": "s" * 129}, "service_id"),
        ({**HELLO, "token": "t" * 4097}, "token"),
        ({**HELLO, "client": "c" * 129}, "client"),
        ({**OFFER, "callee": None}, "callee"),
        ({**OFFER, "callee": 5}, "callee"),
        ({**OFFER, "callee": "b" * (p.MAX_PEER_ID + 1)}, "callee"),
        ({**OFFER, "sdp": None}, "sdp"),
        ({**OFFER, "sdp": "x" * (p.MAX_SDP + 1)}, "sdp"),
        ({**OFFER, "record": "yes"}, "record"),
        ({**OFFER, "record": 1}, "record"),
        ({**OFFER, "call_type": None}, "call_type"),
        ({**OFFER, "call_type": "conference"}, "call_type"),
        ({**OFFER, "call_type": 1}, "call_type"),
        ({"op": "answer_call", "id": 1}, "sdp"),
        ({"op": "answer_call", "id": 1, "sdp": "x", "caller": "a" * 129}, "caller"),
        ({"op": "answer_call", "id": 1, "sdp": "x", "call_type": "VIDEOCALL"}, "call_type"),
        ({"op": "mute", "id": 1}, "track"),
        ({"op": "mute", "id": 1, "track": "screen"}, "track"),
        ({"op": "unmute", "id": 1, "track": None}, "track"),
        ({"op": "media_state", "id": 1, "state": "up"}, "state"),
        ({"op": "media_state", "id": 1}, "state"),
        ({"op": "recording", "id": 1, "on": "true"}, "on"),
        ({"op": "create_session", "id": 1, "user_id": 42}, "user_id"),
    ],
)
def test_missing_or_mistyped_field(obj: dict[str, Any], field: str) -> None:
    """A missing, mistyped, over-long or out-of-enum field is a BAD_REQUEST naming it."""
    err = refused(obj)
    assert err.code is ErrorCode.BAD_REQUEST
    assert f"'{field}'" in str(err)


def test_limits_are_inclusive() -> None:
    """Exactly MAX_PEER_ID characters of callee and caller are accepted."""
    long_peer = "b" * p.MAX_PEER_ID
    assert rq.parse_request({**OFFER, "callee": long_peer}).body.callee == long_peer  # type: ignore[union-attr]
    assert req("answer_call", sdp="x", caller=long_peer).body.caller == long_peer  # type: ignore[union-attr]


def test_enum_error_lists_allowed_values() -> None:
    """A bad call type is explained with the allowed values."""
    err = refused({**OFFER, "call_type": "conference"})
    assert "videocall" in str(err) and "audiocall" in str(err)


@pytest.mark.parametrize("user_id", ["", "-alice", "al ice", "al/ice", "ali\u00e9", "a" * 65, "_x"])
def test_create_session_invalid_user_id(user_id: str) -> None:
    """An empty, over-long (> 64) or badly spelled user id is INVALID_USER_ID."""
    err = refused({"op": "create_session", "id": 1, "user_id": user_id})
    assert err.code is ErrorCode.INVALID_USER_ID


def test_create_session_user_id_at_limit() -> None:
    """A 64-character user id is accepted."""
    assert req("create_session", user_id="a" * 64).body == rq.CreateSession("a" * 64)


# -- check_user_id ------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["a", "A9", "bob", "al.smith+t@example.com", "x_-.@+", "9"])
def test_check_user_id_accepts(user_id: str) -> None:
    """Letters, digits and _ . @ + - are fine after a leading letter or digit."""
    assert p.check_user_id(user_id) is None
    assert p.check_user_id("a" * p.MAX_USER_ID) is None


@pytest.mark.parametrize(
    ("user_id", "why"),
    [
        ("", "empty"),
        ("a" * 65, "longer than 64"),
        (".bob", "must start"),
        ("bob smith", "may hold"),
        ("bob\n", "may hold"),
        ("b\u00f6b", "may hold"),
        ("bob#1", "may hold"),
    ],
)
def test_check_user_id_refuses(user_id: str, why: str) -> None:
    """Each broken rule is named in the reason."""
    reason = p.check_user_id(user_id)
    assert reason is not None and why in reason


# -- server to client ---------------------------------------------------------------------


def test_ok_error_event_encode() -> None:
    """Responses and events have the documented shape and encode compactly."""
    assert p.ok(3, call_id="c") == {"id": 3, "ok": True, "result": {"call_id": "c"}}
    assert p.error(None, ErrorCode.BUSY, "bob is busy") == {
        "id": None,
        "ok": False,
        "error": {"code": 486, "reason": "busy", "message": "bob is busy"},
    }
    assert p.event(p.Event.LEAVE, reason="hangup") == {"event": "LEAVE", "reason": "hangup"}
    assert p.encode({"a": 1, "b": [1, 2]}) == '{"a":1,"b":[1,2]}'


def test_error_code_reasons() -> None:
    """Every error code has a distinct lowercase slug."""
    assert ErrorCode.USER_ID_TAKEN.reason == "user_id_taken"
    assert len({c.reason for c in ErrorCode}) == len(ErrorCode)


# -- property: parsing never fails in an unexpected way -------------------------------------


def _parse_text(text: str) -> rq.Request | None:
    try:
        return rq.parse_request(p.decode(text))
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["op", "id", "version", "service_id", "service_key", "token", "client", "user_id",
     "call_type", "callee", "caller", "record", "sdp", "track", "state", "on"]
)  # fmt: skip
field_values = json_values | st.sampled_from(
    [*rq.OPS, 1, p.VERSION, "videocall", "audiocall", "audio", "video", "connected", "bob"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_protocol_error(text: str) -> None:
    """Any text frame yields a Request or a ProtocolError, never another exception."""
    result = _parse_text(text)
    assert result is None or isinstance(result, rq.Request)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(field_names, field_values, max_size=8))
def test_arbitrary_objects_parse_or_raise_protocol_error(obj: dict[str, Any]) -> None:
    """Any JSON object yields a well-typed Request or a ProtocolError, never another exception."""
    result = _parse_text(json.dumps(obj))
    if result is not None:
        assert result.op in rq.OPS
        assert result.id == obj["id"]
