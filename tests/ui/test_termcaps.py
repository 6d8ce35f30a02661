"""What the terminal can draw: answers parsed, images encoded, the video output chosen."""

from __future__ import annotations

import base64
import re
import zlib

import numpy as np
import pytest

from omnicli.errors import UsageError
from omnicli.ui import termcaps, termimage
from omnicli.ui.termcaps import Answers, choose, colour_mode, parse
from omnicli.ui.termgfx import ColourMode
from omnicli.ui.termvideo import Graphics
from omnicli.ui.videoout import Machine
from omnicli.ui.videoout import choose as choose_out

XTERM_VT340_DA1 = b"\x1b[?63;1;2;4;6;9;15;16;22;28c"
XTERM_DA1 = b"\x1b[?64;1;2;6;9;15;16;17;18;21;22;28c"
KITTY_OK = b"\x1b_Gi=31;OK\x1b\\"


def test_answers_are_read_from_what_terminals_really_send() -> None:
    """kitty says OK; xterm as a VT340 lists 4 (sixel); plain xterm does not; DA1 completes."""
    assert parse(KITTY_OK + XTERM_DA1) == Answers(kitty=True, complete=True)
    assert parse(XTERM_VT340_DA1 + b"\x1b[?1;0;1024S") == Answers(
        sixel=True, registers=1024, complete=True
    )
    assert parse(XTERM_DA1) == Answers(complete=True)
    assert parse(b"\x1b_Gi=31;ENOTSUPPORTED:no\x1b\\") == Answers()  # no DA1 yet
    assert parse(b"\x1b[?6c") == Answers(complete=True)  # a VT102 (pyte): first field only
    assert termcaps.strip_answers(b"q" + KITTY_OK + b"m" + XTERM_DA1 + b"v") == b"qmv"


def test_a_terminal_that_keeps_a_24_bit_colour_gets_24_bit_colour() -> None:
    """Without COLORTERM (as over ssh), DECRQSS's answer decides the colour depth."""
    env = {"TERM": "xterm-256color"}
    kept = parse(b"\x1bP1$r0;48:2::1:2:3m\x1b\\" + XTERM_DA1)
    assert kept.truecolor and choose(env, kept).colours is ColourMode.TRUECOLOR
    also = parse(b"\x1bP1$r0;48;2;1;2;3m\x1b\\" + XTERM_DA1)
    assert also.truecolor
    mapped = parse(b"\x1bP1$r0;48;5;16m\x1b\\" + XTERM_DA1)  # turned into a palette colour
    assert not mapped.truecolor and choose(env, mapped).colours is ColourMode.ANSI256
    assert choose(env, parse(XTERM_DA1)).colours is ColourMode.ANSI256  # no answer: 256
    assert termcaps.strip_answers(b"\x1bP1$r0;48;5;16m\x1b\\q") == b"q"


def test_the_choice_prefers_kitty_then_sixel_then_half_blocks_unless_told() -> None:
    env = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
    assert choose(env, Answers(kitty=True, complete=True)).graphics is Graphics.KITTY
    sixel = choose(env, Answers(sixel=True, registers=256, complete=True))
    assert (sixel.graphics, sixel.sixel_registers) == (Graphics.SIXEL, 256)
    assert choose(env, Answers(complete=True)).graphics is Graphics.HALFBLOCKS
    assert choose(env, Answers()).graphics is Graphics.HALFBLOCKS  # no answer: never assume
    forced = {**env, "OMNI_TERM_GRAPHICS": "halfblocks"}
    assert choose(forced, Answers(kitty=True)).graphics is Graphics.HALFBLOCKS


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, ColourMode.TRUECOLOR),
        ({"TERM": "xterm-256color", "COLORTERM": "24bit"}, ColourMode.TRUECOLOR),
        ({"TERM": "xterm-direct"}, ColourMode.TRUECOLOR),
        ({"TERM": "screen-256color"}, ColourMode.ANSI256),
        ({"TERM": "xterm", "OMNI_TERM_COLOURS": "truecolor"}, ColourMode.TRUECOLOR),
        ({"TERM": "dumb"}, None),
        ({}, None),
    ],
)
def test_colour_depth_comes_from_the_environment(
    env: dict[str, str], mode: ColourMode | None
) -> None:
    assert colour_mode(env) is mode


def test_kitty_frames_carry_the_image_in_chunks() -> None:
    """The payload, reassembled and inflated, is the RGB image; chunks are at most 4096."""
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    data = termimage.kitty(img, cols=40, rows=15)
    parts = re.findall(rb"\x1b_G([^;]*);([^\x1b]*)\x1b\\", data)
    assert len(parts) > 1 and all(len(p) <= termimage.KITTY_CHUNK for _, p in parts)
    first = dict(kv.split(b"=") for kv in parts[0][0].split(b","))
    assert (first[b"s"], first[b"v"], first[b"c"], first[b"r"]) == (b"80", b"60", b"40", b"15")
    assert [keys.endswith(b"m=1") for keys, _ in parts] == [True] * (len(parts) - 1) + [False]
    payload = zlib.decompress(base64.standard_b64decode(b"".join(p for _, p in parts)))
    assert payload == img.tobytes()


def decode_sixel(data: bytes) -> tuple[np.ndarray, dict[int, tuple[int, int, int]]]:
    """A small sixel reader: the image of colour numbers, and the colours in percent."""
    body = data[data.index(b"q") + 1 : data.rindex(b"\x1b\\")].decode()
    width, height = (int(v) for v in re.match(r'"1;1;(\d+);(\d+)', body).groups())
    img = np.full((height, width), -1, np.int32)
    colours: dict[int, tuple[int, int, int]] = {}
    x = band = colour = 0
    i = body.index('"') + len(re.match(r'"[\d;]+', body).group(0))
    while i < len(body):
        ch = body[i]
        if ch == "#":
            m = re.match(r"#(\d+)(;2;(\d+);(\d+);(\d+))?", body[i:])
            colour = int(m.group(1))
            if m.group(2):
                colours[colour] = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
            i += len(m.group(0))
            continue
        count = 1
        if ch == "!":
            m = re.match(r"!(\d+)(.)", body[i:])
            count, ch = int(m.group(1)), m.group(2)
            i += len(m.group(0)) - 1
        if ch == "$":
            x = 0
        elif ch == "-":
            x, band = 0, band + 1
        else:
            bits = ord(ch) - 63
            for k in range(6):
                if bits >> k & 1:
                    img[band * 6 + k, x : x + count] = colour
            x += count
        i += 1
    return img, colours


def test_sixel_draws_every_pixel_in_its_nearest_cube_colour() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (25, 37, 3), dtype=np.uint8)
    img[:, :10] = (255, 0, 0)  # a run, coded with !n
    data = termimage.sixel(img, levels=6)
    assert data.startswith(termimage.SIXEL_START) and b"!10~" in data
    numbers, colours = decode_sixel(data)
    assert numbers.shape == (24, 37)  # whole bands only
    assert (numbers >= 0).all()
    got = np.array([[colours[n] for n in row] for row in numbers.tolist()]) * 255 / 100
    assert np.abs(got - img[:24]).max() <= 255 / 5 / 2 + 2  # half a cube step
    assert termimage.sixel_levels(16) == 2 and termimage.sixel_levels(256) == 6


def test_video_out_auto_prefers_a_window_then_the_terminal() -> None:
    assert choose_out("auto", Machine(True, True)) == ("window", None)
    kind, note = choose_out("auto", Machine(False, True))
    assert kind == "terminal" and note and "terminal" in note
    assert choose_out("auto", Machine(False, True, json=True))[0] == "none"
    assert choose_out("auto", Machine(False, False))[0] == "none"
    assert choose_out("window", Machine(False, True))[0] == "none"  # said, not fatal
    assert choose_out("terminal", Machine(True, True)) == ("terminal", None)
    assert choose_out("none", Machine(True, True)) == ("none", None)
    with pytest.raises(UsageError, match="colour terminal"):
        choose_out("terminal", Machine(True, False))
    with pytest.raises(UsageError, match="--json"):
        choose_out("terminal", Machine(False, True, json=True))


def test_video_out_is_a_setting_like_the_others(tmp_path) -> None:
    """Config file < environment < flag; a bad value is one usage error."""
    from omnicli.ui.settings import load

    config = tmp_path / "config.toml"
    config.write_text('video_out = "none"\n')
    env = {"OMNI_CONFIG": str(config)}
    assert load({}, env).video_out == "none"
    assert load({}, {**env, "OMNI_VIDEO_OUT": "terminal"}).video_out == "terminal"
    assert load({"video_out": "window"}, {**env, "OMNI_VIDEO_OUT": "terminal"}).video_out == (
        "window"
    )
    with pytest.raises(UsageError, match="one of auto, window, terminal, none"):
        load({"video_out": "tv"}, env)


def test_output_held_while_the_picture_shows_comes_out_in_order_after() -> None:
    import io

    from omnicli.phone import events as ev
    from omnicli.ui.render import Output

    err, out_ = io.StringIO(), io.StringIO()
    out = Output(json_mode=False, stdout=out_, stderr=err)
    twin = out.with_label("bob")
    out.hold()
    out.status("first")
    twin.event(ev.Notice("second"))
    assert err.getvalue() == ""
    out.release()
    text = err.getvalue()
    assert text.index("first") < text.index("second")
    out.status("third")
    assert "third" in err.getvalue()
