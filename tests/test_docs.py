"""Docs are tests: every shell, console and Python block of README.md and docs/ runs here.

Each Markdown file is a session: its blocks run in order, in one working folder of their own
(with ``examples``, ``plugins``, ``deploy`` and ``docs`` linked in from the repository), so a
later block sees the files an earlier one wrote. Shell blocks run under ``bash -e -o pipefail``;
whatever a block starts in the background (``uvicorn ... &``) is stopped with its process group
when the block ends. Python blocks run in a fresh interpreter. A ``console`` block is a
transcript: each ``$ command`` runs and its output must match the lines shown, where ``...``
on a line of its own stands for any number of lines and ``...`` inside a line for any text.

A block that cannot run says why, in a marker on the line just above its fence, which this
runner reads (a marker without a reason is an error)::

    <!-- doctest: skip -- a fragment: needs the reader's own policy file -->

``<!-- doctest: server PORT -- REASON -->`` runs a block that starts a server in the foreground
in the background instead, passes once the server answers HTTP on 127.0.0.1:PORT, and stops it.
``<!-- doctest: setup -- REASON -->`` runs ``vcgate init`` style material first: keys
(issuer.key, agent.key, gateway.key; passphrase in VCGATE_PASSPHRASE), ``agent.vc.jwt`` and
``policy.yaml`` for the audience http://127.0.0.1:8000, for blocks written against "your" files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "console", "python": "python", "py": "python"}
MARKER = re.compile(r"<!--\s*doctest:\s*(skip|setup|server \d+)\s*(?:--\s*(.*?))?\s*-->")
FENCE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
BLOCK_TIMEOUT = int(os.environ.get("VCGATE_DOCS_BLOCK_TIMEOUT", "120"))
PASSPHRASE = "docs are tests"


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str  # sh | console | python
    code: str
    marker: str | None
    reason: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks_of(doc: Path) -> list[Block]:
    lines = doc.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(rf"^{indent}```\s*$", lines[j]):
            j += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : j])
        if lang in RUN_LANGS:
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.search(lines[k]) if k >= 0 else None
            out.append(Block(doc, i + 1, RUN_LANGS[lang], body + "\n", marker and marker.group(1),
                             marker and (marker.group(2) or "").strip()))
        i = j + 1
    return out


ALL = [b for doc in DOCS for b in blocks_of(doc)]


def test_every_marker_says_why():
    missing = [b.id for b in ALL if b.marker and not b.reason]
    assert not missing, f"doctest markers without a reason: {missing}"


# --- running -------------------------------------------------------------------------------------


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCGATE_")}
    bindir = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join([bindir, env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), str(work)])),
        HOME=str(work), NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1",
    )
    return env


def _run(argv: list[str], work: Path, *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(argv, cwd=work, env=_env(work), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(stdin, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        out = "(timed out)"
    finally:
        try:  # background servers a block started die with it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _setup(work: Path) -> None:
    script = f"""
export VCGATE_PASSPHRASE='{PASSPHRASE}'
vcgate key new --alg EdDSA --out issuer.key > /dev/null
vcgate key new --alg ES256 --out agent.key > /dev/null
vcgate key new --alg EdDSA --out gateway.key > /dev/null
ISSUER=$(vcgate key show issuer.key --json | python -c 'import json,sys; print(json.load(sys.stdin)["did"])')
AGENT=$(vcgate key show agent.key --json | python -c 'import json,sys; print(json.load(sys.stdin)["did"])')
vcgate issue --key issuer.key --subject "$AGENT" --type ModelAccessCredential \\
    --claims '{{"models": ["llama-3-70b"], "tier": "silver"}}' --valid-for 1d > agent.vc.jwt
printf 'version: 1\\naudience: http://127.0.0.1:8000\\ntrusted_issuers:\\n  - did: %s\\nrules:\\n  - name: chat\\n    match: {{paths: [/v1/**]}}\\n    require: {{types: [ModelAccessCredential]}}\\n' "$ISSUER" > policy.yaml
"""
    done = _run(["bash", "-e", "-o", "pipefail", "-c", script], work)
    assert done.returncode == 0, done.stdout


def _console(block: Block) -> list[tuple[str, list[str]]]:
    """``$ command`` (with ``\\`` continuations) and the output lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            steps.append((cmd, []))
        elif steps:
            steps[-1][1].append(line)
        i += 1
    return steps


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Expected lines against actual ones; ``...`` alone is any run of lines, inside a line any text."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.rstrip().split("..."))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and _matches(rest, actual[1:])


def _serves(block: Block, work: Path, port: int) -> None:
    import time

    import requests

    log = work / f"server-{block.line}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(["bash", "-e", "-c", block.code], cwd=work, env=_env(work), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        pytest.fail(f"{block.id}: no server answered on port {port}:\n{log.read_text()[-4000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    made: dict[Path, Path] = {}

    def work_for(doc: Path) -> Path:
        if doc not in made:
            work = tmp_path_factory.mktemp(doc.stem)
            for name in ("examples", "plugins", "deploy", "docs"):
                if (REPO / name).exists():
                    (work / name).symlink_to(REPO / name)
            made[doc] = work
        return made[doc]

    return work_for


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL])
def test_block(block: Block, sessions):
    if block.marker == "skip":
        pytest.skip(f"not run: {block.reason}")
    work = sessions(block.doc)
    if block.marker == "setup" and not (work / "policy.yaml").exists():
        _setup(work)
    if block.marker and block.marker.startswith("server "):
        _serves(block, work, int(block.marker.split()[1]))
        return
    if block.lang == "sh":
        # A doc's shell blocks are one reader's shell: what earlier blocks exported still holds.
        exports = "".join(
            line + "\n" for b in ALL if b.doc == block.doc and b.lang == "sh" and b.line < block.line and not b.marker
            for line in b.code.splitlines() if line.startswith("export ")
        )
        done = _run(["bash", "-e", "-o", "pipefail", "-c", exports + block.code], work)
        assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{block.code}\n--- output ---\n{done.stdout[-4000:]}"
    elif block.lang == "python":
        done = _run([sys.executable, "-c", block.code], work)
        assert done.returncode == 0, f"{block.id} failed:\n{block.code}\n--- output ---\n{done.stdout[-4000:]}"
    else:
        for cmd, expected in _console(block):
            done = _run(["bash", "-o", "pipefail", "-c", cmd], work)
            actual = done.stdout.rstrip("\n").splitlines()
            assert _matches(expected, actual), (
                f"{block.id}: `{cmd}` printed\n{done.stdout[-4000:]}\n--- the doc shows ---\n" + "\n".join(expected)
            )
