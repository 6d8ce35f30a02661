"""Pictures as terminal images: kitty's graphics protocol and DEC sixel. Pure.

Used only where the terminal said it understands them (`termcaps`); half blocks stay
the fallback. Both take an RGB image and return the bytes that draw it at the cursor.

- kitty: the raw RGB, zlib-compressed, base64 in chunks of 4096, as image 1 placed
  over `cols` x `rows` cells (the terminal scales it); the cursor does not move. Each
  frame replaces the last one (same image and placement ids).
- sixel: the image quantised to a cube of `levels`^3 colours (as many as the terminal
  has colour registers), six pixel rows per band, each colour's run-length coded.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

KITTY_CHUNK = 4096
KITTY_DELETE = b"\x1b_Ga=d,d=A,q=2\x1b\\"  # every image we placed
SIXEL_START = b"\x1bP0;1;0q"  # pixel aspect 1:1, background left as it is
SIXEL_END = b"\x1b\\"


def kitty(rgb: np.ndarray, cols: int, rows: int, image_id: int = 1) -> bytes:
    """Draw `rgb` over cols x rows cells from the cursor, replacing image `image_id`."""
    height, width = rgb.shape[:2]
    payload = base64.standard_b64encode(zlib.compress(np.ascontiguousarray(rgb).tobytes(), 1))
    chunks = [payload[i : i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)] or [b""]
    head = (
        f"a=T,f=24,o=z,s={width},v={height},c={cols},r={rows},i={image_id},p=1,C=1,q=2"
    ).encode()
    out = []
    for n, chunk in enumerate(chunks):
        more = b"1" if n < len(chunks) - 1 else b"0"
        keys = head + b",m=" + more if n == 0 else b"m=" + more
        out.append(b"\x1b_G" + keys + b";" + chunk + b"\x1b\\")
    return b"".join(out)


def sixel_levels(registers: int) -> int:
    """Levels per channel of the largest colour cube that fits the colour registers."""
    levels = 2
    while (levels + 1) ** 3 <= registers and levels < 6:
        levels += 1
    return levels


def sixel(rgb: np.ndarray, levels: int = 6) -> bytes:
    """Draw `rgb` as sixels from the cursor with a `levels`^3 colour cube."""
    height, width = rgb.shape[:2]
    height -= height % 6  # whole bands only: a partial band would paint past the picture
    if height <= 0 or width <= 0:
        return b""
    step = 255 / (levels - 1)
    q = np.rint(rgb[:height].astype(np.float32) / step).astype(np.int32)
    index = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]  # (height, width)
    out = [SIXEL_START, f'"1;1;{width};{height}'.encode()]
    used = np.unique(index)
    for n in used.tolist():
        r, g, b = n // (levels * levels), (n // levels) % levels, n % levels
        pct = [round(v * 100 / (levels - 1)) for v in (r, g, b)]
        out.append(f"#{n};2;{pct[0]};{pct[1]};{pct[2]}".encode())
    weights = (1 << np.arange(6, dtype=np.int32))[:, None]
    for y in range(0, height, 6):
        band = index[y : y + 6]
        colours = np.unique(band).tolist()
        for k, colour in enumerate(colours):
            bits = ((band == colour) * weights).sum(axis=0)
            out.append(f"#{colour}".encode() + _runs(bits))
            out.append(b"$" if k < len(colours) - 1 else b"-")
    out.append(SIXEL_END)
    return b"".join(out)


def _runs(bits: np.ndarray) -> bytes:
    """Sixel characters for one colour of one band, run-length coded (``!n`` + char)."""
    chars = (bits + 63).astype(np.uint8)
    # trailing empty sixels need not be sent
    nonzero = np.flatnonzero(bits)
    if nonzero.size == 0:
        return b""
    chars = chars[: nonzero[-1] + 1]
    edges = np.flatnonzero(np.diff(chars)) + 1
    starts = np.concatenate(([0], edges))
    lengths = np.diff(np.concatenate((starts, [chars.size])))
    parts = []
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        ch = chr(int(chars[start]))
        parts.append(f"!{length}{ch}" if length > 3 else ch * length)
    return "".join(parts).encode()
