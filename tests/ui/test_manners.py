"""What a new user meets (issue #12): small manners of the output, tested directly."""

from __future__ import annotations

import io

from omnicli.phone import events as ev
from omnicli.ui.render import Output


def test_the_same_notice_is_said_once_to_a_person_and_every_time_to_a_script() -> None:
    """A device fallback repeated on every call is shown once; --json still gets each one."""
    note = ev.Notice("no camera: test pattern instead")
    err = io.StringIO()
    human = Output(json_mode=False, stderr=err)
    for _ in range(3):
        human.event(note)
    human.event(ev.Notice("recording to x.mp4"))
    assert err.getvalue().count("no camera") == 1
    assert "recording to x.mp4" in err.getvalue()
    out = io.StringIO()
    script = Output(json_mode=True, stdout=out)
    for _ in range(3):
        script.event(note)
    assert out.getvalue().count("no camera") == 3
