"""Docs are tests: every shell, console and Python block of README.md and docs/ runs here.

Each Markdown page is one reader's session: its blocks run in order, in one working folder of
their own (with ``examples``, ``plugins``, ``deploy`` and ``docs`` linked in from the repository),
so a later block sees the files an earlier one wrote.

* Shell blocks run under ``bash -e -o pipefail`` as one shell: the variables a block sets
  (exported or not) hold in the page's later shell and console blocks, and its exported ones
  in its later Python blocks. Whatever a block starts in the background (``uvicorn ... &``) is
  stopped with its process group when the block ends.
* Python blocks run in one interpreter per page (``tests/docs_worker.py``), in one namespace:
  a later block uses the names an earlier one made. Top-level ``await`` works.
* A ``console`` block is a transcript: each ``$ command`` runs and its output must match the
  lines shown, where ``...`` on a line of its own stands for any number of lines and ``...``
  inside a line for any text.

Pages run side by side (``VCGATE_DOCS_JOBS``, default 3), each in its own thread, its blocks in
order; running one block alone (``-k 'cli.md:150'``) first runs the page's earlier blocks.

Markers, in an HTML comment on the line just above a fence (directives joined by ``,``; the
reason after ``--``; a ``skip`` without a reason, an unknown directive or a marker that is not
above a runnable block is an error)::

    <!-- doctest: skip -- the reader's TLS certificate and a server that runs until stopped -->
    <!-- doctest: server 8181 -- vcgate serve in the foreground -->
    <!-- doctest: needs redis -- a replica's shared stores -->
    <!-- doctest: setup -- written against "your" keys and policy -->

``server PORT`` runs a block that starts a server in the foreground in the background instead,
passes once the server answers HTTP, and stops it; it listens on a free port (PORT in the block
is replaced, and ``VCGATE_PORT`` / ``FLASK_RUN_PORT`` name it for a server on its default port). ``needs redis`` /
``needs anvil`` start the real part (once per run; a missing one skips, or fails under CI=true)
and point the block's ``redis://HOST:PORT`` / ``http://127.0.0.1:8545`` at it (a shell block
gets anvil's funded development key, hex, in ``$ANVIL_DEV_KEY``). ``needs models``
starts the example model server (``examples/server_fastapi.py``, the middleware in front) for
the page, trusting the page's ``issuer.key`` for ``ModelAccessCredential`` on ``/v1/**``, and
points the block's ``https://models.example.com`` (or ``llm.example.com``) at it. ``setup`` copies
``vcgate init`` style material (made once a run) first, in the page's shell: keys (issuer.key, agent.key,
gateway.key; passphrase in $VCGATE_PASSPHRASE), $ISSUER and $AGENT, ``agent.vc.jwt`` and
``policy.yaml`` for the audience http://127.0.0.1:8000. The deployment folders examples name
(``/etc/vcgate``, ``/var/log/vcgate``, ``/var/lib/vcgate``, ``/opt/vcgate``) are folders of the
page's working folder: ``/etc/vcgate/policy.yaml`` runs as ``$WORK/etc/vcgate/policy.yaml``.

Context a page's examples need but a reader would not want to read goes in a hidden block, an
HTML comment (not rendered) that runs in the page's session like a visible block::

    <!-- doctest: hidden python -- `token` and `nonce`: a presentation as an agent makes it
    token, nonce = ...
    -->
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import require_real

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "console", "python": "python", "py": "python"}
#: Fence languages that are not code to run (data, configuration, HTTP messages, diagrams).
DATA_LANGS = {"yaml", "yml", "json", "jsonc", "toml", "ini", "nginx", "http", "text", "solidity", "dockerfile",
              "diff", "mermaid", "xml", "html", "lua", "protobuf", "hcl"}
FENCE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*doctest:(?P<directives>.*?)(?:\s--(?!>)\s*(?P<reason>.*?))?\s*(?P<end>-->)?\s*$")
DIRECTIVE = re.compile(r"skip|setup|server \d+|needs (?:redis|anvil|models)|hidden (?:sh|python)")
#: The model API the examples call, served by ``needs models``.
MODELS_URL = re.compile(r"https://(?:models|llm)\.example\.com")
#: A block that looks like commands or Python, whatever its fence says.
LOOKS_RUNNABLE = re.compile(
    r"^\s*(?:\$ )?(?:vcgate|python3?|pip|curl|uvicorn|export|make|npm|node|envoy|nginx|litellm|vllm) "
    r"|^(?:from \w[\w.]* import |import \w)", re.M)
#: Folders of a deployment the examples name; a block's own copies live in its page's folder.
SYSTEM_DIRS = ("/etc/vcgate", "/var/log/vcgate", "/var/lib/vcgate", "/opt/vcgate")
BLOCK_TIMEOUT = int(os.environ.get("VCGATE_DOCS_BLOCK_TIMEOUT", "120"))
PASSPHRASE = "docs are tests"


@dataclass(frozen=True)
class Block:
    doc: Path
    page: str  # the page's path in the repository
    line: int  # 1-based line of the opening fence (of the comment, for a hidden block)
    lang: str  # sh | console | python
    code: str
    directives: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def skip(self) -> bool:
        return "skip" in self.directives

    @property
    def server_port(self) -> int | None:
        ports = [int(d.split()[1]) for d in self.directives if d.startswith("server ")]
        return ports[0] if ports else None

    @property
    def needs(self) -> set[str]:
        return {d.split()[1] for d in self.directives if d.startswith("needs ")}


@dataclass(frozen=True)
class Problem:
    where: str
    what: str


def _marker(line: str) -> tuple[tuple[str, ...], str | None, bool] | None:
    """(directives, reason, closed on this line) of a ``<!-- doctest: ... -->`` line."""
    m = MARKER.match(line)
    if not m:
        return None
    directives = tuple(d.strip() for d in m.group("directives").split(",") if d.strip())
    return directives, (m.group("reason") or "").strip() or None, m.group("end") is not None


def parse(doc: Path, root: Path = REPO) -> tuple[list[Block], list[Problem]]:
    """The runnable blocks of a page, and what is wrong with its markers and fences."""
    lines = doc.read_text().splitlines()
    rel = str(doc.relative_to(root))
    blocks: list[Block] = []
    problems: list[Problem] = []
    pending: tuple[int, tuple[str, ...], str | None] | None = None  # a marker waiting for its fence
    i = 0
    while i < len(lines):
        where = f"{rel}:{i + 1}"
        is_marker = lines[i].lstrip().startswith("<!--") and "doctest:" in lines[i]
        marker = _marker(lines[i]) if is_marker else None
        if is_marker and marker is None:
            problems.append(Problem(where, f"unreadable doctest marker: {lines[i].strip()}"))
        if marker is not None:
            directives, reason, closed = marker
            bad = [d for d in directives if not DIRECTIVE.fullmatch(d)]
            if bad or not directives:
                problems.append(Problem(where, f"unknown doctest directive(s) {bad or directives}"))
            if "skip" in directives and not reason:
                problems.append(Problem(where, "a skip marker must say why: <!-- doctest: skip -- REASON -->"))
            if pending is not None:
                problems.append(Problem(f"{rel}:{pending[0]}", "a doctest marker not followed by a runnable block"))
            hidden = [d for d in directives if d.startswith("hidden ")]
            if hidden:
                if closed:
                    problems.append(Problem(where, "a hidden block holds its code up to a line `-->`"))
                j = i + 1
                while j < len(lines) and lines[j].strip() != "-->":
                    j += 1
                code = "\n".join(lines[i + 1 : j]) + "\n"
                blocks.append(Block(doc, rel, i + 1, hidden[0].split()[1], code,
                                    tuple(d for d in directives if d not in hidden), reason))
                i = j + 1
                continue
            pending = (i + 1, directives, reason)
            i += 1
            continue
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip() and pending is not None:
                problems.append(Problem(f"{rel}:{pending[0]}", "a doctest marker not followed by a runnable block"))
                pending = None
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(rf"^{indent}```\s*$", lines[j]):
            j += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : j]) + "\n"
        if lang in RUN_LANGS:
            directives, reason = pending[1:] if pending else ((), None)
            blocks.append(Block(doc, rel, i + 1, RUN_LANGS[lang], body, directives, reason))
        else:
            if pending is not None:
                problems.append(Problem(f"{rel}:{pending[0]}", f"a doctest marker above a `{lang}` block, which never runs"))
            if lang not in DATA_LANGS and LOOKS_RUNNABLE.search(body):
                problems.append(Problem(where, f"a `{lang or 'no language'}` block that looks like shell or Python: "
                                               "fence it as sh, console or python (with a marker if it cannot run)"))
        pending = None
        i = j + 1
    return blocks, problems


PARSED = {doc: parse(doc) for doc in DOCS}
ALL = [b for doc in DOCS for b in PARSED[doc][0]]


def test_markers_and_fences_are_readable():
    """A skip says why; every marker is understood and sits above a runnable block; code is fenced as code."""
    problems = [f"{p.where}: {p.what}" for doc in DOCS for p in PARSED[doc][1]]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<!-- doctest: skip -->\n```sh\nls\n```\n", "must say why", id="skip-without-reason"),
        pytest.param("<!-- doctest: skipp -- typo -->\n```sh\nls\n```\n", "unknown doctest directive", id="unknown"),
        pytest.param("<!-- doctest: skip -- why -->\n```yaml\na: 1\n```\n", "never runs", id="marker-above-data"),
        pytest.param("<!-- doctest: skip -- why -->\n\nText.\n\n```sh\nls\n```\n", "not followed", id="marker-astray"),
        pytest.param("```\nvcgate key new --out k.key\n```\n", "looks like shell or Python", id="bare-shell"),
        pytest.param("```zsh\nexport A=1\n```\n", "looks like shell or Python", id="unknown-shell-lang"),
        pytest.param("```pycon\nfrom vcgate import Gate\n```\n", "looks like shell or Python", id="unknown-python-lang"),
        pytest.param("<!-- doctest: hidden sh -- why -->\n", "up to a line `-->`", id="hidden-closed-at-once"),
    ],
)
def test_the_runner_refuses_a_bad_page(tmp_path, text, expected):
    doc = tmp_path / "page.md"
    doc.write_text(text)
    _, problems = parse(doc, tmp_path)
    assert any(expected in p.what for p in problems), problems


def test_a_good_page_parses_to_its_blocks(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("<!-- doctest: hidden python, needs redis -- context\nx = 1\n-->\n\n"
                   "<!-- doctest: server 8181, needs anvil -- why -->\n```sh\nserve\n```\n\n```yaml\na: 1\n```\n")
    blocks, problems = parse(doc, tmp_path)
    assert not problems
    assert [(b.line, b.lang, b.code, b.server_port, b.needs) for b in blocks] == [
        (1, "python", "x = 1\n", None, {"redis"}), (6, "sh", "serve\n", 8181, {"anvil"})]


# --- the real parts some blocks need -------------------------------------------------------------


@dataclass
class Parts:
    """Redis and anvil, started on the first block that needs them and stopped after the module."""

    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    nodes: list[object] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    anvil_key: str = ""

    def url(self, part: str) -> str:
        with self.lock:  # pages run side by side: one Redis, one anvil
            if part not in self.urls:
                self.urls[part] = self._redis() if part == "redis" else self._anvil()
            return self.urls[part]

    def _redis(self) -> str:
        from tests.integration.test_redis_store import INSTALL_HINT, _start_redis

        if shutil.which("redis-server") is None:
            require_real("redis-server", INSTALL_HINT)
        server = _start_redis(self.tmp)
        self.procs.append(server.proc)
        return f"redis://127.0.0.1:{server.port}"

    def _anvil(self) -> str:
        from vcgate.chain.anvil import ANVIL_INSTALL_HINT, AnvilNode, find_anvil

        if find_anvil() is None:
            require_real("anvil", ANVIL_INSTALL_HINT)
        node = AnvilNode().start()
        self.nodes.append(node)
        self.anvil_key = node.dev_private_keys[0]
        return node.url

    def setup(self) -> tuple[Path, str]:
        """The ``setup`` material, made once a run (with the CLI, as a reader would) and copied
        into each page that asks: its folder, and the shell lines that set its variables."""
        with self.lock:
            made = self.tmp / "setup"
            if not made.exists():
                made.mkdir()
                script = _SETUP + 'printf "ISSUER=%s\\nAGENT=%s\\n" "$ISSUER" "$AGENT" > variables.sh\n'
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=made, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      env=_env(made), timeout=BLOCK_TIMEOUT)
                if done.returncode != 0:
                    shutil.rmtree(made)
                    pytest.fail(f"the setup material failed:\n{done.stdout[-4000:]}")
            return made, f"export VCGATE_PASSPHRASE='{PASSPHRASE}'\n" + (made / "variables.sh").read_text()

    def substitute(self, block: Block) -> str:
        code = block.code
        if "redis" in block.needs:
            code = re.sub(r"redis://[A-Za-z0-9_.-]+(?::\d+)?", self.url("redis"), code)
        if "anvil" in block.needs:
            code = re.sub(r"http://(?:127\.0\.0\.1|localhost):8545", self.url("anvil"), code)
            if block.lang == "sh":  # a funded account, as `vcgate chain dev` writes it to .vcgate-chain/dev.key
                code = f"ANVIL_DEV_KEY={self.anvil_key}\n" + code
        return code

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=10)


# --- one page's session --------------------------------------------------------------------------

# Bash's own variables, which a later block must not get back from an earlier one.
_BASH_OWN = ("BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0 BASH_CMDS BASH_COMMAND "
             "BASH_LINENO BASH_LOADABLES_PATH BASH_SOURCE BASH_SUBSHELL BASH_VERSINFO BASH_VERSION "
             "COLUMNS COMP_WORDBREAKS DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID FUNCNAME GROUPS HISTCMD "
             "HISTFILE HISTFILESIZE HISTSIZE HOSTNAME HOSTTYPE IFS LINENO LINES MACHTYPE MAILCHECK OLDPWD "
             "OPTERR OPTIND OSTYPE PIPESTATUS PPID PS4 PWD RANDOM SECONDS SHELL SHELLOPTS SHLVL SRANDOM UID _")


def _prelude(state: Path, *, save: bool = True) -> str:
    """Bash that restores the page's shell variables, and (on exit) saves them for the next block."""
    restore = f'[ -f {state}/vars.sh ] && . {state}/vars.sh\n'
    if not save:
        return restore
    return restore + f"""__doctest_save() {{
    local __doctest_v __doctest_d
    for __doctest_v in $(compgen -v); do
        case " {_BASH_OWN} " in *" $__doctest_v "*) continue ;; esac
        case "$__doctest_v" in __doctest_*) continue ;; esac
        __doctest_d=$(declare -p "$__doctest_v" 2>/dev/null) || continue
        [[ $__doctest_d =~ ^declare\\ -[a-zA-Z]*r ]] && continue
        printf '%s\\n' "$__doctest_d"
    done > {state}/vars.sh
    env -0 > {state}/env
}}
trap __doctest_save EXIT
"""


_SETUP_FILES = ("issuer.key", "agent.key", "gateway.key", "agent.vc.jwt", "policy.yaml")
_SETUP = f"""
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


def _env(work: Path) -> dict[str, str]:
    """A reader's environment in ``work``: this venv's commands, vcgate from src, no VCGATE_* of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCGATE_")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), str(work)])),
        HOME=str(work), NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1",
    )
    return env


class Session:
    """One page: its working folder, its shell's variables, its Python interpreter."""

    def __init__(self, doc: Path, work: Path, state: Path, parts: Parts) -> None:
        self.doc, self.work, self.state, self.parts = doc, work, state, parts
        self.worker: subprocess.Popen | None = None
        self.results = None
        self.log = state / "python.log"
        self.set_up = False
        self.models: tuple[subprocess.Popen, str] | None = None

    def env(self) -> dict[str, str]:
        return _env(self.work)

    def exported(self) -> dict[str, str]:
        """What the page's shell exported so far, beyond the base environment."""
        saved = self.state / "env"
        if not saved.exists():
            return {}
        base = self.env()
        pairs = (item.split("=", 1) for item in saved.read_text().split("\0") if "=" in item)
        return {k: v for k, v in pairs if base.get(k) != v and k not in ("PWD", "OLDPWD", "SHLVL", "_")}

    # -- running ---------------------------------------------------------------------------------

    def run(self, block: Block) -> None:
        """Run one block in the page's session; fail (``pytest.fail``) as the reader's shell would."""
        if "setup" in block.directives and not self.set_up:
            made, variables = self.parts.setup()
            for name in _SETUP_FILES:
                shutil.copy2(made / name, self.work / name)
            self._shell(Block(block.doc, block.page, block.line, "sh", variables), variables)
            self.set_up = True
        code = self.parts.substitute(block)
        if "models" in block.needs:
            code = MODELS_URL.sub(self.models_url(), code)
        for system_dir in SYSTEM_DIRS:  # the reader's deployment folders, inside the page's folder
            if system_dir in code:
                (self.work / system_dir.lstrip("/")).mkdir(parents=True, exist_ok=True)
                code = code.replace(system_dir, str(self.work / system_dir.lstrip("/")))
        if block.server_port is not None:
            self._serves(block, code, block.server_port)
        elif block.lang == "sh":
            self._shell(block, code)
        elif block.lang == "python":
            self._python(block, code)
        else:
            self._console(block, code)

    def _bash(self, script: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(["bash", "-c", script], cwd=self.work, env=self.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            out = f"(timed out after {BLOCK_TIMEOUT} s)"
        finally:
            try:  # background servers a block started die with it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        return subprocess.CompletedProcess(script, proc.returncode, out, "")

    def _shell(self, block: Block, code: str) -> None:
        # The block runs as a sourced file so that `set -e` applies to it and the EXIT trap saves its variables.
        script = self.state / f"block-{block.line}.sh"
        script.write_text(code)
        done = self._bash(_prelude(self.state) + f"set -e -o pipefail\n. {script}\n")
        if done.returncode != 0:
            pytest.fail(f"{block.id} failed (exit {done.returncode}):\n{block.code}\n--- output ---\n{done.stdout[-4000:]}")

    def _console(self, block: Block, code: str) -> None:
        status = 0  # `$?` in a command is the exit status of the one before, as at a prompt
        for cmd, expected in _console(code):
            done = self._bash(_prelude(self.state) + f"set -o pipefail\n( exit {status} )\n" + cmd + "\n")
            status = done.returncode
            actual = done.stdout.rstrip("\n").splitlines()
            if not _matches(expected, actual):
                pytest.fail(f"{block.id}: `{cmd}` printed\n{done.stdout[-4000:]}\n--- the doc shows ---\n"
                            + "\n".join(expected))

    def _python(self, block: Block, code: str) -> None:
        if self.worker is None or self.worker.poll() is not None:
            read, write = os.pipe()
            with open(self.log, "ab") as sink:
                self.worker = subprocess.Popen(
                    [sys.executable, str(REPO / "tests" / "docs_worker.py"), str(write)], cwd=self.work,
                    env=self.env(), stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT,
                    pass_fds=(write,), start_new_session=True, text=True)
            os.close(write)
            self.results = os.fdopen(read)
        offset = self.log.stat().st_size
        self.worker.stdin.write(json.dumps({"name": block.id, "code": code, "env": self.exported()}) + "\n")
        self.worker.stdin.flush()
        ready, _, _ = select.select([self.results], [], [], BLOCK_TIMEOUT)
        line = self.results.readline() if ready else ""
        with open(self.log, "rb") as f:
            f.seek(offset)
            output = f.read().decode(errors="replace")
        if not line:
            self.close()  # hung or died: the page's next Python block starts a fresh interpreter
            pytest.fail(f"{block.id} {'timed out' if not ready else 'ended the interpreter'}:\n{block.code}\n"
                        f"--- output ---\n{output[-4000:]}")
        if not json.loads(line)["ok"]:
            pytest.fail(f"{block.id} failed:\n{block.code}\n--- output ---\n{output[-4000:]}")

    def _serves(self, block: Block, code: str, port: int) -> None:
        import requests

        # The documented port may be taken on this machine: the server listens on a free one, named
        # in the block or (a default port) in the variables vcgate serve and flask run read.
        free = _free_port()
        code = re.sub(rf"\b{port}\b", str(free), code)
        code = f"export VCGATE_PORT={free} FLASK_RUN_PORT={free}\n" + code
        code = re.sub(r"--grpc-port \d+", lambda _: f"--grpc-port {_free_port()}", code)
        port = free
        log = self.state / f"server-{block.line}.log"
        script = self.state / f"block-{block.line}.sh"
        script.write_text(code)
        with open(log, "wb") as sink:
            proc = subprocess.Popen(["bash", "-c", _prelude(self.state, save=False) + f"set -e\n. {script}\n"],
                                    cwd=self.work, env=self.env(), stdout=sink, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    scheme = "https" if "--tls-cert" in code else "http"  # a self-signed certificate: any answer will do
                    requests.get(f"{scheme}://127.0.0.1:{port}/healthz", timeout=2, verify=False)
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

    def models_url(self) -> str:
        """The example model server behind the middleware, trusting the page's issuer.key, on a free port."""
        import requests

        if self.models is not None and self.models[0].poll() is None:
            return self.models[1]
        issuer_key = self.work / "issuer.key"
        if not issuer_key.exists():
            pytest.fail("`needs models` trusts the page's issuer.key: make it first (a setup marker)")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        policy = self.state / "models-policy.yaml"
        policy.write_text(
            f"version: 1\naudience: {url}\ntrusted_issuers:\n  - did: {json.loads(issuer_key.read_text())['did']}\n"
            "rules:\n  - name: health\n    match: {paths: [/healthz]}\n    public: true\n"
            "  - name: models\n    match: {paths: [/v1/**]}\n    require: {types: [ModelAccessCredential]}\n")
        env = {**self.env(), "VCGATE_POLICY": str(policy)}
        with open(self.state / "models.log", "wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.server_fastapi:app", "--port", str(port)],
                                    cwd=self.work, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.models = (proc, url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                requests.get(f"{url}/healthz", timeout=2).raise_for_status()
                return url
            except requests.RequestException:
                time.sleep(0.3)
        pytest.fail(f"the example model server did not start:\n{(self.state / 'models.log').read_text()[-4000:]}")

    def close(self) -> None:
        if self.models is not None:
            try:
                os.killpg(self.models[0].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.models[0].wait()
        if self.worker is not None:
            try:
                os.killpg(self.worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.worker.wait()
            self.worker = None
        if self.results is not None:
            self.results.close()
            self.results = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _console(code: str) -> list[tuple[str, list[str]]]:
    """``$ command`` (with ``\\`` continuations) and the output lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
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


class Pages:
    """Runs pages side by side (``VCGATE_DOCS_JOBS`` at a time), each page's blocks in order, up to
    the last block the run selected; each test then takes its block's outcome."""

    def __init__(self, sessions: dict[Path, Session], wanted: list[Block], jobs: int) -> None:
        self.sessions = sessions
        self.outcomes: dict[str, BaseException | None] = {}
        self.ready = {b.id: threading.Event() for b in ALL}
        last: dict[Path, int] = {}
        for block in wanted:  # in collection order: the first tests wait for the first pages
            last[block.doc] = max(last.get(block.doc, 0), block.line)
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="doctest")
        for doc, until in last.items():
            self.pool.submit(self._page, doc, until)

    def _page(self, doc: Path, until: int) -> None:
        for block in ALL:
            if block.doc != doc or block.line > until:
                continue
            try:
                if not block.skip:
                    self.sessions[doc].run(block)
                self.outcomes[block.id] = None
            except BaseException as exc:  # noqa: BLE001 -- handed to the block's test, which raises it
                self.outcomes[block.id] = exc
            finally:
                self.ready[block.id].set()
        self.sessions[doc].close()  # the page is done: its interpreter and servers go

    def outcome(self, block: Block) -> None:
        self.ready[block.id].wait()
        if (exc := self.outcomes[block.id]) is not None:
            raise exc

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for session in self.sessions.values():
            session.close()


@pytest.fixture(scope="module")
def pages(request, tmp_path_factory):
    wanted = [item.callspec.params["block"] for item in request.session.items
              if isinstance(getattr(item, "callspec", None) and item.callspec.params.get("block"), Block)]
    parts = Parts(tmp_path_factory.mktemp("parts"))
    sessions: dict[Path, Session] = {}
    for doc in dict.fromkeys(b.doc for b in wanted):
        work = tmp_path_factory.mktemp(doc.stem)
        for name in ("examples", "plugins", "deploy", "docs"):
            if (REPO / name).exists():
                (work / name).symlink_to(REPO / name)
        sessions[doc] = Session(doc, work, tmp_path_factory.mktemp(doc.stem + "-state"), parts)
    runner = Pages(sessions, wanted, int(os.environ.get("VCGATE_DOCS_JOBS", "3")))
    yield runner
    runner.close()
    parts.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # a server block's self-signed certificate
@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL])
def test_block(block: Block, pages):
    if block.skip:
        pytest.skip(f"not run: {block.reason}")
    pages.outcome(block)
