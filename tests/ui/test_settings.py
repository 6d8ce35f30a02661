"""One settings model: defaults < config file < environment < flags, every value checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import omni_env, run_omni

from omnicli.errors import ExitCode, UsageError
from omnicli.ui.options import OPTIONS
from omnicli.ui.settings import Settings, choice, from_flags, load

KNOWN_TAIL = ", ".join(list(Settings.__dataclass_fields__)[2:]) + ")"


def config(tmp_path: Path, body: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return {"OMNI_CONFIG": str(path)}


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    """A key set in the file, the environment and a flag takes the flag's value, and so on down."""
    env = config(tmp_path, 'fps = 20\nwidth = 320\nheight = 240\nspeaker = "none"\n')
    env |= {"OMNI_FPS": "25", "OMNI_WIDTH": "800"}
    settings = load({"fps": 12, "server": None}, env)
    assert (settings.fps, settings.width, settings.height) == (12, 800, 240)
    assert settings.speaker == "none"  # from the file
    assert settings.server == Settings().server  # a flag not given (None) hides nothing


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('fps = "thirty"', "fps = 'thirty': must be a whole number from 1 to 60"),
        ("width = -5", "width = -5: must be a whole number from 16 to 3840"),
        ("window = 3", "window = 3: must be true or false"),
        ('server = "http://x"', "server = 'http://x': must start with ws:// or wss://"),
        ("colour = 1", "unknown key 'colour' (known: server, service_id, " + KNOWN_TAIL),
    ],
)
def test_a_bad_config_value_names_the_file_key_and_value(
    tmp_path: Path, body: str, expected: str
) -> None:
    """The error says which file, which key, which value and what is wrong with it."""
    env = config(tmp_path, body + "\n")
    with pytest.raises(UsageError) as caught:
        load({}, env)
    assert str(caught.value) == f"config file {tmp_path / 'config.toml'}: {expected}"
    assert caught.value.exit_code == ExitCode.USAGE


def test_a_bad_environment_value_names_the_variable() -> None:
    """OMNI_FPS=fast is refused naming the variable; OMNI_WINDOW=off is read as a switch."""
    with pytest.raises(UsageError, match=r"^OMNI_FPS='fast': must be a whole number"):
        load({}, {"XDG_CONFIG_HOME": "/nonexistent", "OMNI_FPS": "fast"})
    assert load({}, {"XDG_CONFIG_HOME": "/nonexistent", "OMNI_WINDOW": "off"}).window is False


def test_flag_shorthands_and_off_switches() -> None:
    """--video-size sets width and height, --mic a source; an unset switch keeps the file's."""
    env = {"XDG_CONFIG_HOME": "/nonexistent", "OMNI_RECORD": "true"}
    settings = from_flags(
        {"video_size": "320x240", "mic": "2", "record": False, "no_window": True}, env
    )
    assert (settings.width, settings.height) == (320, 240)
    assert settings.audio_source == "mic:2"
    assert settings.record is True and settings.window is False
    with pytest.raises(UsageError, match="--mic and --audio-source"):
        from_flags({"mic": "2", "audio_source": "tone"}, env)


def test_the_phone_config_carries_every_media_setting() -> None:
    """Settings become the phone's config in one place, nothing lost on the way."""
    settings = Settings(width=320, height=240, fps=15, speaker="none", relay_only=True)
    media = settings.phone_config().media
    assert (media.width, media.height, media.fps, media.speaker) == (320, 240, 15, "none")
    assert media.ice_relay_only is True


def test_a_bad_config_file_stops_a_command_with_one_line_and_exit_2(tmp_path: Path) -> None:
    """`omni sessions` with fps = "thirty" in its config says so in one line, exit 2."""
    env = omni_env(**config(tmp_path, 'fps = "thirty"\n'))
    result = run_omni("sessions", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"omni: config file {tmp_path / 'config.toml'}: fps = 'thirty': "
        "must be a whole number from 1 to 60"
    ]


def test_the_client_commands_take_their_options_from_one_place() -> None:
    """call, answer, repl and session create offer the same setting options, same help."""
    import typer.main

    from omnicli.ui.cli import app

    group = typer.main.get_command(app)
    commands = {
        "call": group.commands["call"],  # type: ignore[attr-defined]
        "answer": group.commands["answer"],  # type: ignore[attr-defined]
        "repl": group.commands["repl"],  # type: ignore[attr-defined]
        "session create": group.commands["session"].commands["create"],  # type: ignore[attr-defined]
    }
    seen = {
        name: {
            p.name: p.help
            for p in cmd.params
            if p.name in OPTIONS and not p.name.startswith("record")
        }
        for name, cmd in commands.items()
    }
    first = seen["call"]
    assert {"server", "fps", "video_size", "json", "no_window"} <= set(first)
    for name, options in seen.items():
        assert options == first, name


def test_a_choice_names_what_it_allows() -> None:
    """A setting made with choice() accepts its words in any case and names them otherwise."""
    check = choice("auto", "window", "none")
    assert check("Window") == "window"
    with pytest.raises(ValueError, match="must be one of auto, window, none"):
        check("screen")


def test_a_broken_client_config_does_not_stop_the_server(tmp_path: Path) -> None:
    """`omni server` reads no client settings: a bad config file is no reason to refuse."""
    env = omni_env(**config(tmp_path, 'fps = "thirty"\n'))
    result = run_omni("server", "--port", "-1", env=env)  # fails on its own option instead
    assert result.returncode == 2
    assert "fps" not in result.stderr and "--port" in result.stderr


def test_max_bitrate_reads_units_from_every_layer(tmp_path: Path) -> None:
    """--max-bitrate 300k, OMNI_MAX_BITRATE=1.5M, max_bitrate = 250000 and none all read;
    a bad one names where it came from; the phone gets bit/s (0: no ceiling)."""
    env = config(tmp_path, "max_bitrate = 250000\n")
    assert load({}, env).max_bitrate == 250_000
    assert load({}, env | {"OMNI_MAX_BITRATE": "1.5M"}).max_bitrate == 1_500_000
    assert load({"max_bitrate": "300k"}, env).max_bitrate == 300_000
    assert load({"max_bitrate": "none"}, env).max_bitrate == 0
    assert Settings(max_bitrate=300_000).phone_config().media.max_bitrate == 300_000
    with pytest.raises(UsageError, match=r"^--max-bitrate 'fast': must be bits per second"):
        load({"max_bitrate": "fast"}, env)
    with pytest.raises(UsageError, match=r"^OMNI_MAX_BITRATE='5k': must be from 30k to 20M"):
        load({}, env | {"OMNI_MAX_BITRATE": "5k"})
