"""The production stack as files: the compose file, the start scripts the Dockerfile installs,
the variables each of them reads, and compose/.env.example. Read by tests/compose/ and by the
probe tests on real processes (tests/faults/test_container_probes.py)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import yaml

from tests.ast_utils import parse_source

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
SETTINGS_DIR = ROOT / "config" / "settings"
PRODUCTION_SETTINGS = "production"

# Set by Docker in every container, by no operator.
PLATFORM_VARIABLES = frozenset({"HOSTNAME"})
# Read by the postgres image when it first initialises its volume (the database, the role and
# its password), documented with the image: https://hub.docker.com/_/postgres
POSTGRES_IMAGE_VARIABLES = frozenset({"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"})

_COPY = re.compile(r"^COPY\s+(compose/\S+)\s+(/\S+)\s*$", re.MULTILINE)
# $NAME, ${NAME}, ${NAME:-default}, ${NAME:?message}; compose's $$NAME is a container-side $NAME.
_SHELL_VARIABLE = re.compile(r"\$\$?\{?([A-Za-z_][A-Za-z0-9_]*)")
# os.environ["NAME"], os.environ.get("NAME"), in the Python the entrypoint runs.
_PYTHON_VARIABLE = re.compile(r"""os\.environ(?:\.get\(|\[)\s*["']([A-Za-z_][A-Za-z0-9_]*)""")
_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def compose() -> dict:
    """The compose file with its YAML anchors and merge keys (`<<: *app`) resolved."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def start_scripts() -> dict[str, Path]:
    """{path in the image: script in the repository}, from the Dockerfile's COPY lines."""
    return {target: ROOT / source for source, target in _COPY.findall(DOCKERFILE.read_text())}


def command_of(service: dict) -> str | None:
    command = service.get("command")
    if isinstance(command, list):
        return command[0] if command else None
    return shlex.split(command)[0] if command else None


def app_services() -> dict[str, dict]:
    """The services that run one of our start scripts (not postgres, not redis)."""
    scripts = start_scripts()
    return {name: s for name, s in services().items() if command_of(s) in scripts}


def services_running(script: str) -> dict[str, dict]:
    return {name: s for name, s in app_services().items() if command_of(s) == script}


def healthcheck_shell(service: dict) -> str:
    """A service's healthcheck as the shell command Docker runs in the container (`CMD-SHELL`:
    the string through `sh -c`; `CMD`: the argv, quoted), compose's `$$` escaping undone."""
    kind, *rest = service["healthcheck"]["test"]
    if kind == "CMD-SHELL":
        command = rest[0]
    elif kind == "CMD":
        command = shlex.join(rest)
    else:
        raise ValueError(f"healthcheck test of an unexpected form: {service['healthcheck']}")
    return command.replace("$$", "$")


def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def script_variables(path: Path) -> set[str]:
    """Environment variables a start script reads: $NAME / ${NAME…} in its shell code and
    os.environ[...] in the Python it runs. Lower-case names are the script's own variables."""
    text = _uncommented(path.read_text())
    names = set(_SHELL_VARIABLE.findall(text)) | set(_PYTHON_VARIABLE.findall(text))
    return {n for n in names if n.isupper()}


def compose_variables() -> set[str]:
    """Variables the compose file reads: interpolated by compose (${NAME:-…}), read in a
    container (`$$NAME` or os.environ in a healthcheck), or handed to a container
    (`environment:` keys)."""
    text = _uncommented(COMPOSE_FILE.read_text())
    names = set(_SHELL_VARIABLE.findall(text)) | set(_PYTHON_VARIABLE.findall(text))
    names = {n for n in names if n.isupper()}
    for service in services().values():
        names |= set(service.get("environment") or {})
    return names


def _settings_modules(name: str = PRODUCTION_SETTINGS) -> list[Path]:
    """The production settings module and the settings modules it imports (`from .base …`)."""
    seen: list[Path] = []
    todo = [name]
    while todo:
        path = SETTINGS_DIR / f"{todo.pop()}.py"
        if path in seen:
            continue
        seen.append(path)
        for node in ast.walk(parse_source(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                todo.append(node.module)
    return seen


def _is_env(func: ast.expr) -> bool:
    """`env(...)` or `env.<cast>(...)`: the settings' one environ.Env()."""
    if isinstance(func, ast.Name):
        return func.id == "env"
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
        and func.value.id == "env"


def settings_variables() -> set[str]:
    """Every variable the production settings read through `env`, found in their source."""
    names = set()
    for path in _settings_modules():
        for node in ast.walk(parse_source(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and _is_env(node.func) and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def stack_scripts() -> list[Path]:
    """The entrypoint and every start script the image holds."""
    return sorted(set(start_scripts().values()))


def env_example() -> dict[str, tuple[bool, str]]:
    """{variable: (commented, value)} of compose/.env.example: `NAME=value` is set as shown,
    `# NAME=value` shows the value the code uses when it is unset."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            commented, name, value = match.groups()
            if name in found:
                raise AssertionError(f"{name} appears twice in {ENV_EXAMPLE.name}")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]  # single quotes: the value as written (compose's rule)
            found[name] = (bool(commented), value)
    return found
