"""The terminal renderer as pure code: images become cells and colours a terminal reads back."""

from __future__ import annotations

import numpy as np
import pyte
import pytest

from omnicli.ui import termgfx
from omnicli.ui.termgfx import ColourMode, HalfBlocks, palette_256, to_256
from omnicli.ui.termvideo import TerminalPicture, compose, layout

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def screen_after(*chunks: bytes, cols: int = 20, rows: int = 6, fill: str = "") -> pyte.Screen:
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    if fill:
        stream.feed((fill * cols * rows).encode())
    for chunk in chunks:
        stream.feed(chunk)
    return screen


def hex_of(rgb: tuple[int, int, int] | np.ndarray) -> str:
    return "".join(f"{int(v):02x}" for v in rgb)


def halves(char: pyte.screens.Char) -> tuple[str, str]:
    """(upper, lower) colour of a half-block cell as the terminal shows it."""
    if char.data == termgfx.UPPER:
        return char.fg, char.bg
    if char.data == termgfx.FULL:
        return char.fg, char.fg
    assert char.data == " ", f"unexpected glyph {char.data!r}"
    return char.bg, char.bg


def test_a_known_image_becomes_known_cells_and_colours() -> None:
    """Each cell shows its two pixels: the upper as ▀'s colour, the lower as its background."""
    img = np.zeros((4, 3, 3), np.uint8)  # 2 rows x 3 columns of cells
    img[0] = [RED, GREEN, BLUE]
    img[1] = [RED, WHITE, GREEN]
    img[2] = [WHITE, WHITE, WHITE]
    img[3] = [BLUE, WHITE, RED]
    screen = screen_after(HalfBlocks().paint(img, top=1, left=2))
    for r in range(2):
        for c in range(3):
            want = (hex_of(img[2 * r, c]), hex_of(img[2 * r + 1, c]))
            assert halves(screen.buffer[1 + r][2 + c]) == want, (r, c)
    assert screen.buffer[0][2].data == " " and screen.buffer[1][1].fg == "default"  # untouched


def test_the_256_colour_fallback_uses_the_xterm_palette() -> None:
    """In 256-colour mode every cell names the palette entry nearest to its pixel."""
    pal = palette_256()
    assert (to_256(pal[16:].astype(np.uint8)) == np.arange(16, 256)).all()  # exact round trip
    img = np.zeros((2, 4, 3), np.uint8)
    img[0] = [(250, 10, 10), (128, 128, 128), (0, 0, 0), (90, 200, 140)]
    img[1] = [(10, 250, 10), (30, 30, 30), (255, 255, 255), (200, 90, 40)]
    data = HalfBlocks(ColourMode.ANSI256).paint(img)
    assert b"38;2;" not in data and b"38;5;" in data
    screen = screen_after(data)
    for c in range(4):
        up, low = halves(screen.buffer[0][c])
        assert up == hex_of(pal[to_256(img[0, c])])
        assert low == hex_of(pal[to_256(img[1, c])])
        assert np.abs(pal[to_256(img[0, c])] - img[0, c]).max() <= 40  # and it is near


def test_change_only_drawing_repaints_exactly_the_cells_that_changed() -> None:
    """Three cells change beyond the threshold, one within it: three cells are written."""
    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    second = first.copy()
    second[0, 3] = 255 - second[0, 3]  # cell (0, 3), upper pixel
    second[5, 7] = 255 - second[5, 7]  # cell (2, 7), lower pixel
    second[10:12, 19] = 255 - second[10:12, 19]  # cell (5, 19), both
    second[6, 0] = np.clip(second[6, 0].astype(int) + 4, 0, 255)  # below the threshold
    painter = HalfBlocks()
    full = painter.paint(first)
    assert painter.cells_written == 20 * 6
    update = painter.paint(second)
    assert painter.cells_written == 3
    # on a screen full of x, the update touches exactly those three cells
    touched = screen_after(update, fill="x")
    written = {(r, c) for r in range(6) for c in range(20) if touched.buffer[r][c].data != "x"}
    assert written == {(0, 3), (2, 7), (5, 19)}
    # and the screen after both paints shows the second image (bar the unchanged cell)
    screen = screen_after(full, update)
    for r, c in written:
        assert halves(screen.buffer[r][c]) == (
            hex_of(second[2 * r, c]),
            hex_of(second[2 * r + 1, c]),
        )
    assert halves(screen.buffer[3][0]) == (hex_of(first[6, 0]), hex_of(first[7, 0]))
    assert painter.paint(second) == b""  # nothing changed: nothing written


def test_a_slow_drift_is_drawn_once_it_adds_up() -> None:
    """Changes are measured against what the terminal shows, so small steps accumulate."""
    painter = HalfBlocks(threshold=10)
    img = np.full((2, 1, 3), 100, np.uint8)
    painter.paint(img)
    for step in range(1, 4):
        img[:] = 100 + 4 * step
        painter.paint(img)
        assert painter.cells_written == (1 if 4 * step > 10 else 0)


def test_layout_keeps_the_aspect_and_leaves_the_caption_line() -> None:
    """640x480 fills the height of a wide terminal and the width of a tall one, centred."""
    wide = layout(160, 45, 640, 480)
    assert (wide.height, wide.caption_row) == (44, 44)
    assert wide.width == 117 and wide.left == (160 - 117) // 2
    tall = layout(80, 60, 640, 480)
    assert tall.width == 80 and tall.height == 30 and tall.top == (59 - 30) // 2
    assert abs((tall.width / (2 * tall.height)) - 640 / 480) < 0.05


def test_compose_puts_the_preview_in_the_bottom_right_corner() -> None:
    """The remote fills the picture (RGB out of BGR in), the preview has a white border."""
    remote = np.zeros((48, 64, 3), np.uint8)
    remote[:] = (255, 0, 0)  # BGR blue
    preview = np.zeros((30, 40, 3), np.uint8)
    preview[:] = (0, 0, 255)  # BGR red
    img = compose(remote, preview, (80, 60))
    assert img[2, 2].tolist() == [0, 0, 255]
    assert img[55, 75].tolist() == [255, 0, 0]
    assert img[1, 79].tolist() == [0, 0, 255]  # top right: still the remote
    assert (img == 255).all(axis=-1).any()  # the border


def test_resize_clears_and_redraws_at_the_new_size() -> None:
    """A new terminal size clears the screen and draws every cell of the refitted picture."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :320] = (0, 0, 200)
    picture = TerminalPicture()
    first = picture.render((80, 24), frame, None, "bob")
    assert first.startswith(termgfx.clear())
    assert picture.render((80, 24), frame, None, "bob", new_frame=False) == b""
    again = picture.render((120, 40), frame, None, "bob")
    assert again.startswith(termgfx.clear())
    screen = screen_after(again, cols=120, rows=40)
    where = layout(120, 40, 640, 480)
    assert screen.display[39].startswith("bob")
    assert screen.buffer[39][0].reverse
    left = screen.buffer[where.top + 5][where.left + 2]
    right = screen.buffer[where.top + 5][where.left + where.width - 3]
    assert halves(left)[0] == "c80000" and halves(right)[0] == "000000"


def test_caption_is_written_only_when_it_changes() -> None:
    picture = TerminalPicture()
    picture.render((40, 10), None, None, "a")
    assert picture.render((40, 10), None, None, "a", new_frame=False) == b""
    assert b"b" in picture.render((40, 10), None, None, "b", new_frame=False)


@pytest.mark.parametrize("mode", list(ColourMode))
def test_enter_and_leave_give_back_every_mode_they_change(mode: ColourMode) -> None:
    """Each private mode set on entering is reset on leaving (alt screen, cursor, wrap)."""
    import re

    set_modes = set(re.findall(rb"\x1b\[\?(\d+)h", termgfx.ENTER))
    assert set(re.findall(rb"\x1b\[\?(\d+)l", termgfx.ENTER)) == set(
        re.findall(rb"\x1b\[\?(\d+)h", termgfx.LEAVE)
    )
    assert set_modes == set(re.findall(rb"\x1b\[\?(\d+)l", termgfx.LEAVE))
    assert b"1049" in set_modes and b"\x1b[0m" in termgfx.LEAVE
    # painting ends with the colours reset, whatever the mode
    assert HalfBlocks(mode).paint(np.zeros((2, 2, 3), np.uint8)).endswith(b"\x1b[0m")


@pytest.mark.parametrize("mode", list(ColourMode))
def test_updates_leave_the_screen_as_a_full_paint_would(mode: ColourMode) -> None:
    """Frame after frame of change-only updates, the screen shows what one full paint of
    the last frame shows, wherever a cell moved beyond the threshold."""
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)]
    for _ in range(5):
        nxt = frames[-1].copy()
        rows, cols = rng.integers(0, 12, 30), rng.integers(0, 20, 30)
        nxt[rows, cols] = rng.integers(0, 256, (30, 3), dtype=np.uint8)
        frames.append(nxt)
    painter = HalfBlocks(mode, threshold=0)
    updated = screen_after(*(painter.paint(f) for f in frames))
    whole = screen_after(HalfBlocks(mode, threshold=0).paint(frames[-1]))
    for r in range(6):
        for c in range(20):
            assert halves(updated.buffer[r][c]) == halves(whole.buffer[r][c]), (r, c)
