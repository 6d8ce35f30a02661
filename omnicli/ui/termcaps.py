"""What the terminal can show, from its environment and its answers to queries.

Colour depth comes from the environment (``COLORTERM=truecolor|24bit`` or a ``-direct``
``TERM`` means 24-bit colour; any other ``TERM`` but ``dumb`` gets the 256-colour
palette), or from the terminal itself when the environment does not say (``COLORTERM``
does not cross ssh by default): a 24-bit background is set and read back with DECRQSS,
and a terminal that keeps it as 24-bit gets 24-bit colour. Image protocols are never
assumed: the terminal is asked, and only a positive answer counts:

- kitty graphics: a query action for a 1x1 image (``a=q``); kitty-compatible terminals
  answer ``OK``, the others ignore it;
- sixel: the primary device attributes (DA1, ``ESC [ c``), which every terminal
  answers and which list ``4`` when sixel graphics work; then the number of colour
  registers (XTSMGRAPHICS), asked only of a sixel terminal.

DA1 goes last, so its answer also says that every earlier answer has arrived.
``OMNI_TERM_GRAPHICS=halfblocks|kitty|sixel`` overrides the choice (e.g. half blocks
in a terminal whose images are slow); ``OMNI_TERM_COLOURS=truecolor|256`` the depth.
Parsing is pure; `ask()` does the terminal I/O.
"""

from __future__ import annotations

import os
import re
import select
import time
from collections.abc import Mapping
from dataclasses import dataclass

from omnicli.ui.termgfx import ColourMode
from omnicli.ui.termvideo import Graphics

KITTY_QUERY = b"\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
DA1_QUERY = b"\x1b[c"
REGISTERS_QUERY = b"\x1b[?1;1;0S"  # XTSMGRAPHICS: read the number of colour registers
# set a 24-bit background, ask what the graphic rendition now is (DECRQSS), reset it
TRUECOLOR_QUERY = b"\x1b[48;2;1;2;3m\x1bP$qm\x1b\\\x1b[0m"
QUERY_TIMEOUT = 1.0  # a terminal (even over SSH) answers DA1 well within this

_KITTY_REPLY = re.compile(rb"\x1b_Gi=31;([^\x1b]*)\x1b\\")
_DA1_REPLY = re.compile(rb"\x1b\[\?([\d;]*)c")
_REGISTERS_REPLY = re.compile(rb"\x1b\[\?1;(\d+);(\d+)S")
_SGR_REPLY = re.compile(rb"\x1bP1\$r([\d;:]*)m\x1b\\")
_TRUECOLOR_SGR = re.compile(rb"48[:;]2[:;]+1[:;]2[:;]3(?!\d)")
_ANY_REPLY = re.compile(rb"\x1b_G[^\x1b]*\x1b\\|\x1b\[\?[\d;]*[cS]|\x1bP[^\x1b]*\x1b\\")


@dataclass(frozen=True)
class Answers:
    """What a terminal said to the queries; `complete` once its DA1 answer came."""

    kitty: bool = False
    sixel: bool = False
    registers: int | None = None
    complete: bool = False
    truecolor: bool = False  # a 24-bit colour read back as 24-bit


def parse(data: bytes) -> Answers:
    kitty = _KITTY_REPLY.search(data)
    da1 = _DA1_REPLY.search(data)
    regs = _REGISTERS_REPLY.search(data)
    sgr = _SGR_REPLY.search(data)
    return Answers(
        kitty=bool(kitty and kitty.group(1) == b"OK"),
        sixel=bool(da1 and b"4" in da1.group(1).split(b";")[1:]),
        registers=int(regs.group(2)) if regs and regs.group(1) == b"0" else None,
        complete=da1 is not None,
        truecolor=bool(sgr and _TRUECOLOR_SGR.search(sgr.group(1))),
    )


def strip_answers(data: bytes) -> bytes:
    """What remains of the input once the terminal's answers are taken out: keys."""
    return _ANY_REPLY.sub(b"", data)


def colour_mode(environ: Mapping[str, str]) -> ColourMode | None:
    """The colour depth the environment promises; None for no colour (no or dumb TERM)."""
    forced = environ.get("OMNI_TERM_COLOURS", "").lower()
    if forced in ("truecolor", "256"):
        return ColourMode(forced)
    term = environ.get("TERM", "")
    if not term or term == "dumb":
        return None
    if environ.get("COLORTERM", "").lower() in ("truecolor", "24bit") or term.endswith("-direct"):
        return ColourMode.TRUECOLOR
    return ColourMode.ANSI256


@dataclass(frozen=True)
class TermCaps:
    colours: ColourMode
    graphics: Graphics
    sixel_registers: int = 0


def choose(environ: Mapping[str, str], answers: Answers) -> TermCaps:
    """The best drawing the terminal answered for, unless the environment says otherwise."""
    colours = colour_mode(environ) or ColourMode.ANSI256
    if answers.truecolor and not environ.get("OMNI_TERM_COLOURS"):
        colours = ColourMode.TRUECOLOR
    forced = environ.get("OMNI_TERM_GRAPHICS", "").lower()
    if forced in {g.value for g in Graphics}:
        return TermCaps(colours, Graphics(forced), answers.registers or 256)
    if answers.kitty:
        return TermCaps(colours, Graphics.KITTY)
    if answers.sixel:
        return TermCaps(colours, Graphics.SIXEL, answers.registers or 16)
    return TermCaps(colours, Graphics.HALFBLOCKS)


def ask(
    fd_in: int, fd_out: int, queries: bytes, timeout: float = QUERY_TIMEOUT
) -> tuple[bytes, bytes]:
    """Write `queries` (ending with DA1) and read until DA1's answer: (answers, other input).

    The terminal must already be in non-canonical mode. Keys typed meanwhile are
    returned apart so that they are not lost.
    """
    os.write(fd_out, queries)
    data = b""
    deadline = time.monotonic() + timeout
    while not _DA1_REPLY.search(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd_in], [], [], left)
        if not ready:
            break
        chunk = os.read(fd_in, 4096)
        if not chunk:
            break
        data += chunk
    return data, strip_answers(data)


def detect(fd_in: int, fd_out: int, environ: Mapping[str, str]) -> tuple[TermCaps, bytes]:
    """Ask the terminal what it can draw: its capabilities and any keys read meanwhile."""
    forced = environ.get("OMNI_TERM_GRAPHICS", "").lower()
    depth_known = colour_mode(environ) is ColourMode.TRUECOLOR or "OMNI_TERM_COLOURS" in environ
    if forced in {g.value for g in Graphics} and forced != Graphics.SIXEL and depth_known:
        return choose(environ, Answers()), b""
    colour_query = b"" if depth_known else TRUECOLOR_QUERY
    data, keys = ask(fd_in, fd_out, colour_query + KITTY_QUERY + DA1_QUERY)
    answers = parse(data)
    if answers.sixel and not answers.kitty:
        more, more_keys = ask(fd_in, fd_out, REGISTERS_QUERY + DA1_QUERY)
        answers = parse(data + more)
        keys += more_keys
    return choose(environ, answers), keys
