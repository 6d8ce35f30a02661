"""Pictures as terminal text: Unicode half blocks, drawn only where they changed.

Pure: RGB images in, bytes out. Each character cell shows two pixels stacked, the
upper one as the foreground of ``▀`` and the lower one as its background, so a cell
grid of C columns and R rows shows a C x 2R picture with square pixels. A cell is
written again only when one of its two colours moved by more than `threshold` (per
channel) from what the terminal shows now, so a still background costs nothing.

Two colour modes: 24-bit (``38;2;R;G;B``) and the xterm 256-colour palette
(``38;5;N``: the 6x6x6 cube and the 24 greys) for terminals without truecolor.
The sequences that take and give back the screen are here too (`ENTER`, `LEAVE`).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

UPPER = "\u2580"  # ▀: foreground on top, background below
FULL = "\u2588"  # █: both halves the foreground
DEFAULT_THRESHOLD = 10  # per-channel change below which a cell keeps its old colour

# alternate screen (saves the cursor), hide the cursor, no autowrap, plain colours, clear
ENTER = b"\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[0m\x1b[2J"
# plain colours, autowrap and cursor back, leave the alternate screen (restores the cursor)
LEAVE = b"\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l"
RESET = "\x1b[0m"


class ColourMode(StrEnum):
    TRUECOLOR = "truecolor"
    ANSI256 = "256"


def _cube_levels() -> np.ndarray:
    return np.array([0, 95, 135, 175, 215, 255], dtype=np.int32)


def palette_256() -> np.ndarray:
    """The RGB of xterm colours 16..255 at index 16..255 (0..15 left black: never used)."""
    pal = np.zeros((256, 3), dtype=np.int32)
    levels = _cube_levels()
    for i in range(216):
        pal[16 + i] = (levels[i // 36], levels[(i // 6) % 6], levels[i % 6])
    for i in range(24):
        pal[232 + i] = 8 + 10 * i
    return pal


_PALETTE = palette_256()
# nearest cube level for every 0..255 value
_LEVEL_OF = np.abs(np.arange(256)[:, None] - _cube_levels()[None, :]).argmin(axis=1)


def to_256(rgb: np.ndarray) -> np.ndarray:
    """The nearest xterm-256 colour index of each RGB pixel (cube or grey ramp)."""
    rgb = rgb.astype(np.int32)
    lv = _LEVEL_OF[rgb]  # (..., 3) cube coordinates
    cube = 16 + 36 * lv[..., 0] + 6 * lv[..., 1] + lv[..., 2]
    grey_idx = np.clip((rgb.mean(axis=-1) - 8 + 5) // 10, 0, 23).astype(np.int32)
    grey = 232 + grey_idx
    cube_err = ((_PALETTE[cube] - rgb) ** 2).sum(axis=-1)
    grey_err = ((_PALETTE[grey] - rgb) ** 2).sum(axis=-1)
    chosen: np.ndarray = np.where(grey_err < cube_err, grey, cube).astype(np.int32)
    return chosen


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    packed: np.ndarray = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed


class HalfBlocks:
    """One picture area of the terminal, repainted change-only.

    `paint(rgb, top, left)` takes an RGB image of 2*rows x cols pixels and returns the
    bytes that bring the cells at (top, left) (0-based cell coordinates) up to date.
    The first paint, a paint of another size or position, and the paint after
    `invalidate()` write every cell.
    """

    def __init__(
        self, mode: ColourMode = ColourMode.TRUECOLOR, threshold: int = DEFAULT_THRESHOLD
    ) -> None:
        self.mode = mode
        self.threshold = threshold
        self._shown: tuple[np.ndarray, np.ndarray] | None = None  # top, bottom as shown
        self._codes: tuple[np.ndarray, np.ndarray] | None = None  # their colour codes
        self._where: tuple[int, int, int, int] | None = None
        self._sgr: dict[int, str] = {}
        self.cells_written = 0  # by the last paint

    def invalidate(self) -> None:
        """Forget what the terminal shows: the next paint writes every cell."""
        self._shown = None

    def paint(self, rgb: np.ndarray, top: int = 0, left: int = 0) -> bytes:
        rows, cols = rgb.shape[0] // 2, rgb.shape[1]
        upper = rgb[0 : 2 * rows : 2].astype(np.int16)
        lower = rgb[1 : 2 * rows : 2].astype(np.int16)
        where = (top, left, rows, cols)
        if self._shown is None or self._where != where:
            changed = np.ones((rows, cols), dtype=bool)
            shown_top, shown_bottom = upper.copy(), lower.copy()
        else:
            shown_top, shown_bottom = self._shown
            th = self.threshold
            changed = (np.abs(upper - shown_top) > th).any(axis=-1) | (
                np.abs(lower - shown_bottom) > th
            ).any(axis=-1)
            shown_top[changed] = upper[changed]
            shown_bottom[changed] = lower[changed]
        self._shown, self._where = (shown_top, shown_bottom), where
        self.cells_written = int(changed.sum())
        if not self.cells_written:
            return b""
        code = to_256 if self.mode is ColourMode.ANSI256 else _pack
        if self._codes is None or self._codes[0].shape != changed.shape or changed.all():
            self._codes = (code(shown_top), code(shown_bottom))
        else:  # only the changed cells need new codes (the palette lookup is not free)
            self._codes[0][changed] = code(shown_top[changed])
            self._codes[1][changed] = code(shown_bottom[changed])
        fg, bg = self._codes
        return self._encode(changed, fg, bg, top, left).encode()

    def _colour(self, value: int, ground: int) -> str:
        """The SGR parameters of a colour; ground 38 (foreground) or 48 (background)."""
        key = value | (ground << 24)
        text = self._sgr.get(key)
        if text is None:
            if len(self._sgr) > 65536:
                self._sgr.clear()
            if self.mode is ColourMode.ANSI256:
                text = f"{ground};5;{value}"
            else:
                text = f"{ground};2;{value >> 16};{(value >> 8) & 255};{value & 255}"
            self._sgr[key] = text
        return text

    def _encode(
        self, changed: np.ndarray, fg: np.ndarray, bg: np.ndarray, top: int, left: int
    ) -> str:
        out: list[str] = []
        cur_fg = cur_bg = -1  # unknown at the start of every paint
        colour = self._colour
        for r in np.flatnonzero(changed.any(axis=1)).tolist():
            cols = np.flatnonzero(changed[r]).tolist()
            fgs, bgs = fg[r].tolist(), bg[r].tolist()
            at = -2
            for c in cols:
                if c != at:
                    if c > at > 0:
                        out.append(f"\x1b[{c - at}C")
                    else:
                        out.append(f"\x1b[{top + r + 1};{left + c + 1}H")
                f, b = fgs[c], bgs[c]
                if f == b:  # one colour: a space on its background or a full block
                    if b == cur_bg:
                        out.append(" ")
                    elif f == cur_fg:
                        out.append(FULL)
                    else:
                        out.append(f"\x1b[{colour(b, 48)}m ")
                        cur_bg = b
                else:
                    params = []
                    if f != cur_fg:
                        params.append(colour(f, 38))
                        cur_fg = f
                    if b != cur_bg:
                        params.append(colour(b, 48))
                        cur_bg = b
                    out.append(f"\x1b[{';'.join(params)}m{UPPER}" if params else UPPER)
                at = c + 1
        out.append(RESET)
        return "".join(out)


def caption(text: str, row: int, cols: int) -> bytes:
    """One line of reverse-video text across row `row` (0-based), cut to `cols`."""
    line = text[:cols].ljust(cols)
    return f"\x1b[{row + 1};1H\x1b[0;7m{line}{RESET}".encode()


def clear() -> bytes:
    return f"{RESET}\x1b[2J".encode()
