"""`dydx-exporter --help` and `dydx-exporter help [COMMAND]` list what the CLI can do (issue 13 point 10)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporter.cli import COMMANDS, main


def test_help_as_a_user_runs_it_lists_every_command_with_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("run", "simulate", "record", "top", "help"):
        (line,) = [line for line in lines if line.startswith(f"  {name} ")]
        assert len(line.split(None, 1)[1]) > 20  # a real one-line description
    assert "--web.listen-address" in done.stdout  # the default command's flags follow the list


@pytest.mark.parametrize("argv", [["help"], ["-h"], ["run", "--help"]])
def test_help_variants_show_the_command_list(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dydx-exporter [COMMAND] [flags]")
    assert all(f"  {name} " in out for name in COMMANDS)


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("simulate", "usage: dydx-exporter simulate"),
        ("record", "usage: dydx-exporter record"),
        ("top", "usage: dydx-exporter top"),
        ("run", "usage: dydx-exporter [COMMAND] [flags]"),
    ],
)
def test_help_command_shows_that_commands_flags(command, usage, capsys):
    assert main(["help", command]) == 0
    assert usage in capsys.readouterr().out


def test_help_for_an_unknown_command_is_an_error_that_lists_the_commands(capsys):
    assert main(["help", "frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "simulate" in err and "top" in err


def test_a_bad_subcommand_flag_is_exit_status_2_not_an_exception(capsys):
    assert main(["top", "--interval", "banana"]) == 2
    assert "--interval" in capsys.readouterr().err
