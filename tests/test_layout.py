"""The package reads top-down: no import cycle inside verikit/, and no module imports from a layer above it.

Every import counts, including those inside functions (a lazy import is still a dependency), except
those under `if TYPE_CHECKING:`, which are never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "verikit"

#: Lowest first. A module may import from its own layer or any layer below, never from one above.
LAYERS = (
    ("core",),
    ("onnx", "spec"),
    ("checker",),  # the independent certificate checker: numpy, onnx and the spec reader only
    ("witness",),
    ("engines", "certify", "lipschitz"),  # lipschitz: proven Lipschitz bounds, an analysis beside the engines
    ("portfolio",),
    ("run",),
    ("report",),
    ("apps",),
    ("cli", "__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The verikit modules `path` imports (a `from package import submodule` counts as the submodule)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = {id(node) for block in ast.walk(tree) if _is_type_checking_block(block)
                 for statement in block.body for node in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` holds imports for type hints only; they are not run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) - {name} for name, path in paths.items()}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the top-level package itself
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} is in no layer; add its top-level folder to LAYERS in {__file__}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_layer_above():
    upward = []
    for module, targets in import_graph().items():
        own = layer_of(module)
        for target in targets:
            other = layer_of(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", ["verikit.core.result", "verikit.engines.bab.engine", "verikit.cli"])
def test_graph_sees_real_modules(module):
    assert module in import_graph()
