"""Reading the deployment files: docker-compose.yml with Compose's variable interpolation, the Dockerfile and
.env.example.

No Docker engine runs where the tests run, so these helpers read the files the
way Docker Compose would, and the tests run what they say natively.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

#: The services that run the project's image, in the order they start.
APPLICATION_SERVICES = ("migrate", "api", "worker")

#: ``$$``, ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``, ``${NAME?error}``,
#: ``${NAME:+replacement}``, ``${NAME+replacement}``: the forms Compose interpolates.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(LookupError):
    """A ``${NAME:?error}`` (or ``${NAME?error}``) whose variable is not set: Compose refuses to start."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as data, before interpolation (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(compose_text())


def variable_uses(text: str) -> list[tuple[str, str]]:
    """Every ``${NAME...}`` or ``$NAME`` in ``text``: ``(name, operator)``, the operator ``""`` when there is none."""
    return [
        (match["name"] or match["bare"], match["operator"] or "")
        for match in _VARIABLE.finditer(text)
        if not match["escaped"]
    ]


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` (a string, or lists and mappings of them) with every variable substituted as Compose does.

    Raises
    ------
    MissingVariable
        For the first required variable (``:?``, ``?``) that ``variables`` lacks (or has empty, for ``:?``).
    """
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: _substitute(match, variables), value)
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    return value


def _substitute(match: re.Match[str], variables: Mapping[str, str]) -> str:
    if match["escaped"]:
        return "$"
    name = match["name"] or match["bare"]
    operator, argument = match["operator"] or "", match["argument"] or ""
    value = variables.get(name)
    present = value is not None and (value != "" or not operator.startswith(":"))
    if operator.endswith("-"):
        return value if present else argument
    if operator.endswith("?"):
        if not present:
            raise MissingVariable(name, argument)
        return value
    if operator.endswith("+"):
        return argument if present else ""
    return value or ""


def command_of(service: Mapping[str, Any]) -> list[str]:
    """A service's ``command`` as a list of words (Compose splits a string as a shell would)."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a mapping, from either of Compose's forms (mapping, or ``NAME=value`` list)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def duration_seconds(text: str) -> float:
    """A Compose duration (``60s``, ``1m30s``, ``1h``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(number + unit for number, unit in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file (comments and blank lines skipped)."""
    variables = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            variables[name.strip()] = value.strip()
    return variables


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, ``(KEYWORD, arguments)``, with continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The words of an exec-form ``CMD``/``ENTRYPOINT`` (a JSON array); fails on the shell form."""
    words = json.loads(arguments)
    assert isinstance(words, list) and all(isinstance(word, str) for word in words), arguments
    return words
