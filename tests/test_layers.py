"""The layers of DESIGN.md, checked on the source: which package may import which, no
import cycle between modules, training independent of evaluation, serving independent
of training.

Every ``import`` and ``from ... import`` is read from the syntax tree, the lazy ones
inside functions included (they run too, just later); imports under
``if TYPE_CHECKING:`` are only for the type checker and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder → installed package name (pyproject's package-dir).
FOLDERS = {
    "logsieve": "logsieve",
    "engine": "logsieve.engine",
    "export": "logsieve.export",
    "agent_plugin": "logsieve.agent_plugin",
}
LAYERS = ("logsieve.cli", "logsieve.agent_plugin", "logsieve.export", "logsieve.engine")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, *, top_level: bool) -> Iterator[str]:
    """Modules of ours that ``module`` imports (``top_level``: only at import time)."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]

    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    yield from visit(stmt)
                continue
            if top_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                yield from (a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    prefix = base[: len(base) - (child.level - 1)]
                    target = ".".join(prefix + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                yield target
                for alias in child.names:  # `from package import submodule`
                    if f"{target}.{alias.name}" in MODULES:
                        yield f"{target}.{alias.name}"
            yield from visit(child)

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in visit(tree):
        if name == "logsieve" or name.startswith("logsieve."):
            yield name


def _layer(module: str) -> str:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "logsieve"  # the core


# Which layers each layer may import (DESIGN.md "Dependencies point one way").
ALLOWED = {
    "logsieve": {"logsieve"},
    "logsieve.engine": {"logsieve", "logsieve.engine"},
    "logsieve.export": {"logsieve", "logsieve.engine", "logsieve.export"},
    "logsieve.agent_plugin": {"logsieve", "logsieve.engine", "logsieve.agent_plugin"},
    "logsieve.cli": set(LAYERS) | {"logsieve"},
}


def test_the_module_list_is_complete() -> None:
    assert "logsieve.verdict" in MODULES and "logsieve.cli.main" in MODULES
    assert "logsieve.engine.worker" in MODULES and "logsieve.export.fastlogad.model" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    layer = _layer(module)
    imported = set(_imports(module, MODULES[module], top_level=False))
    wrong = sorted(n for n in imported if _layer(n) not in ALLOWED[layer])
    assert not wrong, f"{module} ({layer}) imports {wrong}: against DESIGN.md's layers"


def _reaches(start: str, *, top_level: bool) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        for n in _imports(m, MODULES[m], top_level=top_level):
            if n in MODULES and n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_no_import_cycle_between_modules() -> None:
    cycles = sorted(m for m in MODULES if m in _reaches(m, top_level=True))
    assert not cycles, f"modules that import themselves through others: {cycles}"


@pytest.mark.parametrize(
    "entry",
    [
        "logsieve.export.training",
        "logsieve.export.fastlogad.bundle",
        "logsieve.export.adalog.split",
        "logsieve.export.program",
        "logsieve.export.demo",
    ],
)
def test_production_training_never_imports_evaluation(entry: str) -> None:
    evaluation = sorted(
        m for m in _reaches(entry, top_level=False) if m.startswith("logsieve.export.evaluation")
    )
    assert not evaluation, f"{entry} reaches evaluation code: {evaluation}"


@pytest.mark.parametrize("entry", ["logsieve.agent_plugin.app", "logsieve.engine.worker"])
def test_serving_never_imports_training_code(entry: str) -> None:
    training = sorted(
        m for m in _reaches(entry, top_level=False) if m.startswith("logsieve.export")
    )
    assert not training, f"{entry} reaches {training}"


def test_nothing_imports_the_cli() -> None:
    users = sorted(
        m
        for m in MODULES
        if not m.startswith("logsieve.cli")
        and any(n.startswith("logsieve.cli") for n in _imports(m, MODULES[m], top_level=False))
    )
    assert not users, f"the CLI is the top layer, yet {users} import it"
