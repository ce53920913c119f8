"""The command line: every command has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from patronage.cli import build_parser


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return sorted(actions[0].choices)  # type: ignore[arg-type]


def test_top_level_help_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "patronage", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: patronage" in result.stdout


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_has_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "patronage", command, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"patronage {command}" in result.stdout
