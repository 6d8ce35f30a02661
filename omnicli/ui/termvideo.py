"""The call as a terminal picture: layout, composition and the bytes of each update.

Pure: frames, the terminal's size and the caption in, bytes out (`TerminalPicture`).
The remote video fills the screen above a one-line caption, keeping its aspect (half
blocks give square pixels: a cell is one pixel wide and two high); the local preview
sits in the bottom-right corner at a quarter of the width. The picture is drawn with
half blocks (change-only, `termgfx`) or, where the terminal said it can, as an image
(kitty graphics or sixel, `termimage`); the caption is always text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2

# isort: split
import numpy as np

from omnicli.ui import termgfx, termimage
from omnicli.ui.termgfx import ColourMode

PREVIEW_FRACTION = 4  # the preview is 1/4 of the picture's width
PLACEHOLDER = (480, 640)  # rows, columns of the picture before the first frame
BORDER = (255, 255, 255)


class Graphics(StrEnum):
    HALFBLOCKS = "halfblocks"
    KITTY = "kitty"
    SIXEL = "sixel"


@dataclass(frozen=True)
class Layout:
    """Where things go on a screen of `cols` x `rows` cells (0-based cell coordinates)."""

    cols: int
    rows: int
    top: int  # the picture's first row
    left: int  # the picture's first column
    width: int  # the picture's size in cells
    height: int
    caption_row: int


def layout(cols: int, rows: int, frame_w: int, frame_h: int) -> Layout:
    """The largest picture of the frame's aspect above the caption line, centred."""
    cols, rows = max(1, cols), max(2, rows)
    area_h = rows - 1
    # in half-block pixels the area is cols x 2*area_h
    scale = min(cols / max(1, frame_w), 2 * area_h / max(1, frame_h))
    width = max(1, min(cols, round(frame_w * scale)))
    height = max(1, min(area_h, round(frame_h * scale / 2)))
    return Layout(cols, rows, (area_h - height) // 2, (cols - width) // 2, width, height, rows - 1)


def compose(
    remote: np.ndarray | None,
    preview: np.ndarray | None,
    size: tuple[int, int],
    paused: bool = False,
) -> np.ndarray:
    """The RGB picture `size` = (width, height) pixels: remote fitted, preview in a corner.

    Both inputs are BGR (as the phone delivers them); `paused` dims the remote image.
    """
    width, height = size
    img: np.ndarray
    if remote is None:
        img = np.full((height, width, 3), 24, dtype=np.uint8)
    else:
        img = cv2.resize(remote, (width, height), interpolation=cv2.INTER_AREA)
        if paused:
            img = (img // 3).astype(np.uint8)
    if preview is not None and width >= 16:
        pw = max(4, width // PREVIEW_FRACTION)
        ph = max(2, pw * preview.shape[0] // max(1, preview.shape[1]))
        margin = max(1, width // 80)
        if ph + 2 * margin + 2 < height:
            small = cv2.resize(preview, (pw, ph), interpolation=cv2.INTER_AREA)
            y, x = height - ph - margin - 1, width - pw - margin - 1
            img[y - 1 : y + ph + 1, x - 1 : x + pw + 1] = BORDER
            img[y : y + ph, x : x + pw] = small
    return np.ascontiguousarray(img[..., ::-1])


class TerminalPicture:
    """What to write to bring the terminal up to date with the call; change-only.

    `render()` returns b"" when nothing visible changed. After a resize it clears the
    screen and draws everything again at the new size.
    """

    def __init__(
        self,
        graphics: Graphics = Graphics.HALFBLOCKS,
        colours: ColourMode = ColourMode.TRUECOLOR,
        threshold: int = termgfx.DEFAULT_THRESHOLD,
        cell_pixels: tuple[int, int] = (10, 20),
        sixel_levels: int = 6,
    ) -> None:
        self.graphics = graphics
        self.painter = termgfx.HalfBlocks(colours, threshold)
        self.cell_pixels = cell_pixels  # width, height of a cell in screen pixels
        self.sixel_levels = sixel_levels
        self._size: tuple[int, int] | None = None
        self._caption: str | None = None
        self._layout: Layout | None = None

    def layout(self, cols: int, rows: int, remote: np.ndarray | None) -> Layout:
        fh, fw = remote.shape[:2] if remote is not None else PLACEHOLDER
        return layout(cols, rows, fw, fh)

    def render(
        self,
        size: tuple[int, int],
        remote: np.ndarray | None,
        preview: np.ndarray | None,
        caption: str,
        *,
        paused: bool = False,
        new_frame: bool = True,
    ) -> bytes:
        """The bytes for terminal `size` = (cols, rows) showing these frames and caption."""
        cols, rows = size
        parts: list[bytes] = []
        where = self.layout(cols, rows, remote)
        if size != self._size or where != self._layout:
            parts.append(termgfx.clear())
            self.painter.invalidate()
            self._caption = None
            self._size, self._layout = size, where
            new_frame = True
        if new_frame:
            parts.append(self._picture(where, remote, preview, paused))
            if self.graphics is Graphics.SIXEL:
                self._caption = None  # an image may have scrolled or covered it: say it again
        if caption != self._caption:
            parts.append(termgfx.caption(caption, where.caption_row, cols))
            self._caption = caption
        return b"".join(parts)

    def _picture(
        self, where: Layout, remote: np.ndarray | None, preview: np.ndarray | None, paused: bool
    ) -> bytes:
        if self.graphics is Graphics.HALFBLOCKS:
            rgb = compose(remote, preview, (where.width, 2 * where.height), paused)
            return self.painter.paint(rgb, where.top, where.left)
        cw, ch = self.cell_pixels
        px = (where.width * cw, where.height * ch)
        move = f"\x1b[{where.top + 1};{where.left + 1}H".encode()
        if self.graphics is Graphics.KITTY:
            if remote is not None:  # never upscale: kitty stretches the image over the cells
                fh, fw = remote.shape[:2]
                factor = min(1.0, fw / px[0], fh / px[1])
                px = (max(1, round(px[0] * factor)), max(1, round(px[1] * factor)))
            rgb = compose(remote, preview, px, paused)
            return move + termimage.kitty(rgb, where.width, where.height)
        # sixels are drawn pixel for pixel, in whole bands; a terminal moves the cursor below
        # the image and may scroll the screen when that is the last row: stay a row short
        height = max(6, px[1] - ch)
        rgb = compose(remote, preview, (px[0], height - height % 6), paused)
        return move + termimage.sixel(rgb, self.sixel_levels)
