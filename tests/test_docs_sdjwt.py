"""docs/sd-jwt.md: its Python example runs as written; its CLI lines use options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcgate.cli import cli

DOC = (Path(__file__).resolve().parents[1] / "docs" / "sd-jwt.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def test_the_python_example_runs():
    (code,) = _blocks("python")
    scope: dict[str, object] = {}
    exec(compile(code, "docs/sd-jwt.md", "exec"), scope)  # noqa: S102 -- our own documentation
    assert dict(scope["verified"].credentials[0].claims) == {"models": ["gpt-4o"]}


_COMMANDS = [line for block in _blocks("sh") for line in block.replace("\\\n", " ").splitlines() if line.startswith("vcgate ")]


@pytest.mark.parametrize("line", _COMMANDS, ids=[" ".join(c.split()[:3]) for c in _COMMANDS])
def test_cli_lines_use_existing_options(line):
    words = shlex.split(line.split(" > ")[0].split("#")[0])[1:]
    path = [w for w in words[:2] if not w.startswith("-")]
    path = path[:2] if path[:1] == ["status-list"] else path[:1]
    help_text = CliRunner().invoke(cli, [*path, "--help"]).output
    for option in (w.split("=")[0] for w in words if w.startswith("--")):
        assert option in help_text, f"{option} is not an option of vcgate {' '.join(path)}"
