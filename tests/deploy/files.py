"""The files of deploy/ as data, for tests/deploy and tests/integration/test_deploy_compose.py.

One reading of each file, shared: the Dockerfile's stages (ENV, USER, EXPOSE, ENTRYPOINT,
CMD, HEALTHCHECK per stage), the compose services, the Kubernetes resources by kind and name,
and the names of the environment variables vcgate's commands read.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
NGINX_CONF = REPO / "plugins" / "nginx" / "vcgate.conf"
ENVOY_GRPC = REPO / "plugins" / "envoy" / "envoy-grpc.yaml"
ENV_NAME = re.compile(r"\bVCGATE_[A-Z0-9_]+\b")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Stage:
    name: str
    base: str
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    expose: list[int] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: str | None = None
    runs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def _exec_form(value: str) -> list[str]:
    """ENTRYPOINT/CMD: the exec (JSON) form; the shell form would not get signals as PID 1."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(v, str) for v in parsed), value
    return parsed


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """Each stage of the Dockerfile by name, with what it inherits from its base stage."""
    from dockerfile_parse import DockerfileParser

    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in DockerfileParser(str(path)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            image, _, name = value.partition(" AS ")
            parent = stages.get(image.strip())
            current = Stage(name=name.strip() or image.strip(), base=image.strip())
            if parent is not None:
                current.env = dict(parent.env)
                current.user = parent.user
                current.entrypoint, current.cmd = parent.entrypoint, parent.cmd
            stages[current.name] = current
        elif current is None or instruction in ("COMMENT", "ARG"):
            continue
        elif instruction == "ENV":
            for token in shlex.split(value):
                key, _, val = token.partition("=")
                current.env[key] = val
        elif instruction == "USER":
            current.user = value.strip()
        elif instruction == "EXPOSE":
            current.expose += [int(p.split("/")[0]) for p in value.split()]
        elif instruction == "ENTRYPOINT":
            current.entrypoint, current.cmd = _exec_form(value), None
        elif instruction == "CMD":
            current.cmd = _exec_form(value)
        elif instruction == "HEALTHCHECK":
            current.healthcheck = value
        elif instruction == "RUN":
            current.runs.append(value)
        elif instruction in ("COPY", "ADD"):
            current.copies.append(value)
    return stages


def healthcheck_command(stage: Stage) -> list[str]:
    """The exec-form command of a stage's HEALTHCHECK."""
    assert stage.healthcheck is not None, f"stage {stage.name} has no HEALTHCHECK"
    _, _, command = stage.healthcheck.partition("CMD ")
    return _exec_form(command.strip())


def compose() -> dict[str, Any]:
    return yaml.load(COMPOSE.read_text(), Loader=_LOADER)


def kubernetes_files() -> list[Path]:
    """Every manifest under deploy/kubernetes (kustomization files are not resources)."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


@functools.lru_cache(maxsize=1)
def _parsed_resources() -> tuple[tuple[Path, dict[str, Any]], ...]:
    return tuple((p, doc) for p in kubernetes_files() for doc in yaml.load_all(p.read_text(), Loader=_LOADER) if doc)


def kubernetes_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource (a copy: tests may change it)."""
    return copy.deepcopy(list(_parsed_resources()))


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in kubernetes_resources() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} under deploy/kubernetes, found {len(found)}"
    return found[0]


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes container's env: literal values as str, references as their valueFrom."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def env_names_read_by_vcgate() -> dict[str, set[str]]:
    """Environment variable -> the `vcgate` commands that read it, from the real CLI: every
    option's ``envvar`` and the passphrase variable every key-loading command reads."""
    import click

    from vcgate.cli import cli
    from vcgate.keys import PASSPHRASE_ENV

    names: dict[str, set[str]] = {PASSPHRASE_ENV: {"*"}}

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            envvars = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
            for name in filter(None, envvars):
                names.setdefault(name, set()).add(path)
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                walk(sub, f"{path} {sub_name}".strip())

    walk(cli, "")
    return names


def env_names_in(text: str) -> set[str]:
    return set(ENV_NAME.findall(text))
