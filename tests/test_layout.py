"""The layout is a rule: the README's layout table says which folder may import which, and the
code must agree. Imports are read from the source (every `import` and `from … import`, also
inside functions), so a forbidden import fails here before it ships."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from tests.ast_utils import parse_source

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"config", "domain", "workers", "tasks", "scheduler", "devtools", "bench",
                    "tests"}
MIRRORED = ("domain", "workers", "tasks", "scheduler", "devtools")


def layout_rules() -> dict[str, set[str] | None]:
    """{dotted folder: allowed dotted prefixes, or None for "anything"} from the README."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- layout-table -->", 1)[1].strip().split("\n\n", 1)[0]
    rules: dict[str, set[str] | None] = {}
    for row in table.splitlines()[2:]:
        folder_cell, _owns, allowed_cell = (c.strip() for c in row.strip("|").split("|"))
        folder = folder_cell.strip("`").rstrip("/").replace("/", ".")
        if allowed_cell.startswith("anything"):
            rules[folder] = None
        else:
            rules[folder] = {a.rstrip("/").replace("/", ".")
                             for a in re.findall(r"`([a-z_/]+)`", allowed_cell)}
    return rules


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every project import in a file; relative imports resolved."""
    tree = parse_source(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from domain.jobs import lifecycle` imports domain.jobs.lifecycle
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, m) for line, m in found if m.split(".")[0] in PROJECT_PACKAGES]


def _owner(module: str, rules: dict) -> str:
    """The most specific folder of the table that holds `module` (domain/__init__.py, in no
    row, is its own owner and may import nothing of the project)."""
    candidates = [f for f in rules if module == f or module.startswith(f + ".")]
    return max(candidates, key=len) if candidates else module


def _allowed(target: str, owner: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in {owner, *allowed})


def test_the_layout_table_covers_every_top_level_folder():
    rules = layout_rules()
    for folder in PROJECT_PACKAGES - {"domain"}:
        assert folder in rules, f"README layout table has no row for {folder}/"
    for app in (ROOT / "domain").iterdir():
        if (app / "__init__.py").exists():
            assert f"domain.{app.name}" in rules, f"README layout table has no row for {app}"


def layout_violations(root: Path, rules: dict) -> list[str]:
    violations = []
    for path in sorted(p for top in PROJECT_PACKAGES for p in (root / top).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        owner = _owner(module, rules)
        allowed = rules.get(owner, set())
        if allowed is None:
            continue
        for line, target in imports_of(path, root):
            if not _allowed(target, owner, allowed):
                violations.append(f"{path.relative_to(root)}:{line} imports {target} "
                                  f"({owner} may import: {', '.join(sorted(allowed)) or '-'})")
    return violations


def test_every_import_follows_the_layout_table():
    violations = layout_violations(ROOT, layout_rules())
    assert not violations, "\n".join(violations)


def test_the_import_walk_catches_a_forbidden_import(tmp_path):
    # given a copy of domain/ where a module of domain/jobs imports the events app (the rule
    # the hooks exist for), inside a function
    shutil.copytree(ROOT / "domain", tmp_path / "domain",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "domain" / "jobs" / "probe.py").write_text(
        "def f():\n    from domain.events.models import Event\n    return Event\n")

    # when the walk reads it, then it names the import, and only that one
    assert layout_violations(tmp_path, layout_rules()) == [
        "domain/jobs/probe.py:2 imports domain.events.models.Event (domain.jobs may import: "
        "domain.access, domain.common)"]


def test_domain_connects_no_django_signals():
    # Business logic is called, not signalled (STYLE.md); jobs reach events through hooks.py.
    offenders = []
    for path in sorted((ROOT / "domain").rglob("*.py")):
        source = path.read_text()
        if re.search(r"django\.db\.models\.signals|django\.dispatch|\.connect\(", source):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_the_tests_tree_mirrors_the_source_tree():
    missing = []
    for top in MIRRORED:
        for package in [ROOT / top, *(ROOT / top).rglob("*")]:
            if not package.is_dir() or not (package / "__init__.py").exists():
                continue
            if {"migrations", "management", "commands"} & set(package.parts):
                continue
            mirror = ROOT / "tests" / package.relative_to(ROOT)
            if not list(mirror.glob("test_*.py")):
                missing.append(str(mirror.relative_to(ROOT)))
    assert not missing, f"no tests for: {missing}"


def test_jobs_know_events_only_by_the_foreign_key():
    # domain/jobs reads `event_id` and asks domain/jobs/hooks.py the rest; it never queries
    # through Job.event (a lookup like event__type would be an import in disguise)
    offenders = []
    for path in sorted((ROOT / "domain" / "jobs").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if (re.search(r"event__(?!isnull\b)", code) or re.search(r"\.event\.", code)
                    or re.search(r"""related\w*\(\s*["']event""", code)):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_second_set_of_job_hooks_is_refused():
    from domain.jobs.hooks import JobHooks, hooks, install_hooks

    class Other(JobHooks):
        pass

    with pytest.raises(RuntimeError, match="installed already"):
        install_hooks(Other())
    assert type(hooks()).__name__ == "EventRollup"
