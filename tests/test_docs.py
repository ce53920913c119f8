"""The README's and docs' commands are real: every `patronage` command they show exists with the
options they show, and the README's import commands run on the shared data as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from patronage.cli import build_parser, main
from tests.conftest import PROJECT_ROOT

DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:^|`|\$ )patronage ([a-z][a-z-]+)((?: [^`|\n]*)?)", re.M)


def _documented_commands() -> list[tuple[str, str, str]]:
    """(document, subcommand, the rest of the line) for every `patronage SUB ...` shown."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in COMMAND.finditer(text):
            found.append((document.name, match.group(1), match.group(2)))
    return found


def _help(subcommand: str) -> str:
    parser = build_parser()
    actions = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    return actions.choices[subcommand].format_help()  # type: ignore[no-any-return]


def test_the_docs_show_many_commands() -> None:
    commands = _documented_commands()
    assert len(commands) > 30
    assert {sub for _, sub, _ in commands} >= {"train", "score", "serve", "import", "models"}


@pytest.mark.parametrize(
    ("document", "subcommand", "rest"),
    _documented_commands(),
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_documented_command_and_options_exist(document: str, subcommand: str, rest: str) -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert subcommand in choices, f"{document}: `patronage {subcommand}` is not a command"
    help_text = _help(subcommand)
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
        assert option in help_text, f"{document}: `patronage {subcommand}` has no {option}"


def test_readme_import_commands_run_as_written(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's `patronage import ...` lines, with `../shared/data` where the tests find
    the shared data and `data/` in a temporary directory; then `validate` on what they wrote."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("patronage import ")]
    assert len(lines) >= 2
    monkeypatch.chdir(tmp_path)
    for line in lines:
        words = shlex.split(line.replace("../shared/data", str(shared_data)))
        assert main(words[1:]) == 0, line
        out = words[words.index("--out") + 1]
        assert main(["validate", out]) == 0


def test_every_help_text_gives_each_default_once() -> None:
    """On main before 2026-12-07 `--help` printed some defaults twice (in the text and again by
    argparse's ArgumentDefaultsHelpFormatter)."""
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in choices:
        text = " ".join(_help(name).split())
        assert not re.search(r"default[^()]*\)\s*\(default", text), name
        assert "(default: None)" not in text, name
