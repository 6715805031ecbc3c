"""The package layering of docs/architecture.md, checked on the source with ``ast``.

Every ``import`` counts, at module level or inside a function: a lazy import is
still an arrow between packages. Two rules:

- who may import whom (:data:`MAY_IMPORT`): ``schemas`` nothing of ours, the
  kernel ``learnloop`` only ``schemas``, each service the kernel and ``schemas``,
  only ``runtime`` the services and ``devtools``;
- the pure cores (:data:`PURE_CORES`) load no I/O library, directly or through
  any module of ours they import (a package's ``__init__`` included, since
  importing ``a.b`` runs ``a/__init__.py``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "schemas",
    "learnloop",
    "app",
    "join_service",
    "online_learner",
    "offline_learner",
    "runtime",
    "devtools",
)
KERNEL = frozenset({"schemas", "learnloop"})
SERVICES = frozenset({"app", "join_service", "online_learner", "offline_learner"})

# Modules without I/O that any layer may build on: the join rule, the featurizer,
# the learner core, the offset ledger, the stream table. Estimators join them when
# they exist (any module under ``offline_learner/estimators``).
PURE_CORES = (
    "join_service.window",
    "join_service.reward_rule",
    "join_service.join_state",
    "join_service.open_windows",
    "join_service.join_memory",
    "join_service.skew_hold",
    "join_service.horizons",
    "join_service.stream_time",
    "join_service.partition_join",
    "join_service.arrival_merge",
    "learnloop.featurizer",
    "learnloop.streams",
    "learnloop.profiles",
    "learnloop.profile_updates",
    "learnloop.flag_engine",
    "learnloop.flagd",
    "online_learner.learner",
    "online_learner.kafka_offsets",
)
IO_LIBRARIES = frozenset(
    {"faust", "aiokafka", "redis", "fastapi", "starlette", "httpx", "aiohttp", "sqlite3", "uvicorn"}
)

MAY_IMPORT: dict[str, frozenset[str]] = {
    "schemas": frozenset({"schemas"}),
    "learnloop": KERNEL,
    "app": KERNEL | {"app"},
    "join_service": KERNEL | {"join_service"},
    "online_learner": KERNEL | {"online_learner"},
    "offline_learner": KERNEL | {"offline_learner"},
    "devtools": KERNEL | {"devtools"},
    "runtime": KERNEL | SERVICES | {"runtime", "devtools"},
}
"""Package -> the packages of ours it may import (besides :data:`MAY_ALSO_IMPORT`)."""

MAY_ALSO_IMPORT: dict[str, frozenset[str]] = {
    "offline_learner": frozenset(c for c in PURE_CORES if c.startswith("join_service.")),
    "devtools": frozenset(PURE_CORES),
}
"""Package -> single modules of other packages it may import: pure cores."""


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository root
    line: int
    module: str  # the module of ours (or top-level library) the statement loads

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def module_files() -> dict[str, Path]:
    """Every module of ours by dotted name."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


def imports_in(source: str, path: str, importer: str) -> Iterator[Import]:
    """The modules a file's import statements load, wherever they stand in the file.

    ``from a import b`` loads ``a.b`` when that is a module of ours, else ``a``;
    relative imports are resolved against ``importer``.
    """
    is_package = path.endswith("__init__.py")
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}" if base else alias.name
                yield Import(path, node.lineno, child if child in module_files() else base)


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = module_files()[module]
    relative = str(path.relative_to(ROOT))
    return tuple(imports_in(path.read_text(), relative, module))


def layering_violation(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target``, or ``None`` when it may."""
    source, destination = importer.split(".")[0], target.split(".")[0]
    if destination not in PACKAGES or destination in MAY_IMPORT[source]:
        return None
    also = MAY_ALSO_IMPORT.get(source, frozenset())
    if any(target == core or target.startswith(core + ".") for core in also):
        return None
    allowed = sorted(MAY_IMPORT[source] | also)
    return f"{source} may import only {', '.join(allowed)} (docs/architecture.md)"


def loaded_by(module: str) -> dict[str, Import]:
    """Every module (ours and libraries, top-level name for libraries) that importing
    ``module`` runs, each with the first import statement found that leads to it."""
    seen: dict[str, Import] = {}
    todo = [module]
    while todo:
        current = todo.pop()
        parents = [".".join(current.split(".")[:n]) for n in range(1, current.count(".") + 1)]
        for parent in parents:  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            if parent not in seen and parent in module_files():
                # line 0: not a statement, ``current`` runs its package's __init__
                seen[parent] = Import(str(module_files()[current].relative_to(ROOT)), 0, parent)
                todo.append(parent)
        for statement in imports_of(current):
            name = statement.module
            key = name if name.split(".")[0] in PACKAGES else name.split(".")[0]
            if key in seen or key == module:
                continue
            seen[key] = statement
            if key in module_files():
                todo.append(key)
    return seen


def chain(loaded: dict[str, Import], name: str) -> str:
    """How importing the core reaches ``name``: the import statements, innermost first."""
    by_path = {str(path.relative_to(ROOT)): module for module, path in module_files().items()}
    steps: list[str] = []
    while name in loaded and len(steps) < len(loaded):
        statement = loaded[name]
        importer = by_path.get(statement.path, statement.path)
        package_init = name.replace(".", "/") + "/__init__.py"
        steps.append(str(statement) if statement.line else f"{importer} runs {package_init}")
        name = importer
    return " <- ".join(steps)


def pure_cores() -> list[str]:
    estimators = [m for m in module_files() if m.startswith("offline_learner.estimators")]
    return [*PURE_CORES, *estimators]


# -- the rules on the code as it is ---------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_their_layer_may(package: str) -> None:
    modules = [m for m in module_files() if m.split(".")[0] == package]
    assert modules, f"no modules found under {package}/"
    violations = [
        f"{statement}: {reason}"
        for module in modules
        for statement in imports_of(module)
        if (reason := layering_violation(module, statement.module)) is not None
    ]
    assert not violations, "forbidden imports:\n" + "\n".join(violations)


@pytest.mark.parametrize("core", pure_cores())
def test_pure_cores_load_no_io_library(core: str) -> None:
    assert core in module_files(), f"pure core {core} does not exist: update PURE_CORES"
    loaded = loaded_by(core)
    io = sorted(IO_LIBRARIES & loaded.keys())
    chains = [f"{lib}: {chain(loaded, lib)}" for lib in io]
    assert not io, f"{core} is a pure core but loads I/O libraries:\n" + "\n".join(chains)


# -- the checker itself, on made-up files ---------------------------------------------------


@pytest.mark.parametrize(
    ("importer", "source", "forbidden"),
    [
        ("schemas.api", "import learnloop.errors", ["learnloop.errors"]),
        ("learnloop.cli", "from app.main import create_app", ["app.main"]),
        ("learnloop.x", "def f():\n    from join_service import window", ["join_service.window"]),
        ("app.decide", "from join_service.window import Join", ["join_service.window"]),
        ("join_service.x", "import online_learner.learner", ["online_learner.learner"]),
        ("online_learner.x", "from devtools.simulator import shop", ["devtools.simulator.shop"]),
        ("offline_learner.x", "from join_service.reward_rule import close_reward", []),
        ("offline_learner.x", "from join_service.kafka_runner import run",
         ["join_service.kafka_runner"]),
        ("devtools.simulator.x", "from online_learner.learner import OnlineLearner", []),
        ("devtools.simulator.x", "from app.main import create_app", ["app.main"]),
        ("runtime.x", "from app.main import create_app\nimport devtools.simulator", []),
        ("app.routes.x", "from ..decide import Decider\nimport fastapi, redis", []),
        ("join_service.x", "from . import window\nfrom .. import app", ["app"]),
    ],
    ids=[
        "schemas-kernel", "kernel-service", "kernel-lazy-import", "service-service",
        "service-service-2", "service-devtools", "offline-pure-core", "offline-runner",
        "devtools-pure-core", "devtools-app", "runtime-anything", "relative-and-libraries",
        "relative-escape",
    ],
)  # fmt: skip
def test_the_checker_finds_forbidden_imports(
    importer: str, source: str, forbidden: list[str]
) -> None:
    path = importer.replace(".", "/") + ".py"
    found = [
        statement.module
        for statement in imports_in(source, path, importer)
        if layering_violation(importer, statement.module) is not None
    ]
    assert found == forbidden


def test_the_closure_follows_packages_and_lazy_imports() -> None:
    """``learnloop.eventlog.base`` runs ``learnloop/eventlog/__init__.py``, which loads
    the SQLite backend: the reason ``Streams`` lives in ``learnloop/streams.py``."""
    loaded = loaded_by("learnloop.eventlog.base")
    assert "learnloop.eventlog" in loaded and "sqlite3" in loaded
    assert "sqlite3" not in loaded_by("learnloop.streams")


def test_service_processes_start_without_the_offline_learner() -> None:
    """Every API worker and the loop process import ``runtime.embedded`` at start; the
    offline learner (and scipy under it) load in job processes only. Loading them at
    start cost every process ~0.9 s of CPU, and a loop process that came up late learned
    the first traffic late."""
    code = (
        "import sys, runtime.embedded, runtime.distributed\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'offline_learner')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]", found.stdout
