"""The layout rules of docs/architecture.rst, checked: import direction, no cycles, modules readable in one sitting.

Imports are read with ``ast`` from the source (nothing is imported), at module level and inside functions alike: an
import inside a function is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"
MAX_LINES = 450

#: what each part of the gateway may import from the gateway (besides itself); everything else is forbidden.
#: The shared vocabulary (event, view, sky, times, resources, errors) is open to all.
SHARED = {"gateway", "gateway.event", "gateway.view", "gateway.sky", "gateway.times", "gateway.resources",
          "gateway.errors"}
ALLOWED = {
    "gateway.alerts": set(),
    "gateway.voevent": {"gateway.alerts"},
    "gateway.filters": {"gateway.alerts", "gateway.voevent"},
    "gateway.vtp": {"gateway.voevent", "gateway.filters", "gateway.endpoints"},
    "gateway.store": {"gateway.alerts", "gateway.voevent"},
    "gateway.tap": {"gateway.store"},
    "gateway.forward": {"gateway.alerts", "gateway.voevent", "gateway.filters", "gateway.store", "gateway.vtp",
                        "gateway.endpoints"},
    "gateway.pool": {"gateway.alerts", "gateway.voevent", "gateway.store"},
    "gateway.pipeline": {"gateway.alerts", "gateway.pool"},
    "gateway.sinks": set(),
    "gateway.endpoints": set(),
}
#: the assembly layer: may import anything; nothing above may import it
ASSEMBLY = {"gateway.cli", "gateway.config", "gateway.service", "gateway.twistd", "gateway.convert", "gateway.web",
            "gateway.commands", "gateway.tap.server"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every gateway module ``name`` imports (``from gateway.x import y`` counts as gateway.x and gateway.x.y)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    # imports for type annotations only (``if TYPE_CHECKING:``) are not dependencies at run time
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", "")) == "TYPE_CHECKING"
                   for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    known = modules()
    return {m for m in found if m in known and m != name}


def part_of(name: str) -> str:
    """The rule that governs a module: the longest key of ALLOWED or ASSEMBLY that is it or contains it."""
    for key in sorted(set(ALLOWED) | ASSEMBLY, key=len, reverse=True):
        if name == key or name.startswith(key + "."):
            return key
    return name


def test_every_module_is_readable_in_one_sitting():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_dependencies_point_one_way():
    broken = []
    for name, path in modules().items():
        part = part_of(name)
        if part in ASSEMBLY or part not in ALLOWED:
            continue
        for target in imports_of(name, path):
            goal = part_of(target)
            if goal == part or target in SHARED or goal in ALLOWED[part]:
                continue
            broken.append(f"{name} imports {target}")
    assert not broken, "imports against docs/architecture.rst:\n" + "\n".join(broken)


def test_every_module_has_a_rule():
    unruled = [name for name in modules() if name not in SHARED and part_of(name) == name
               and name not in ALLOWED and name not in ASSEMBLY]
    assert not unruled, f"modules no rule of docs/architecture.rst covers: {unruled}"


def test_no_import_cycle():
    graph = {name: imports_of(name, path) for name, path in modules().items()}
    # a package __init__ that re-exports its submodules is not a cycle with them: drop child -> parent edges
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
