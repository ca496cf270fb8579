"""The package's shape, as issue 12 set it: small modules, no import cycle, layers that import downwards.

Read from the source (ast), so a violation fails here with the modules named, not later as a puzzling
ImportError or a module nobody can hold in their head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exporter"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> set[str]:
    """The project modules an import statement names (`from pkg import mod` names pkg.mod)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(
                [*package[: len(package) - node.level + 1], *([node.module] if node.module else [])]
            )
        else:
            base = node.module or ""
        names = {
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
        }
    return {name for name in names if name in MODULES and name != module}


def _not_run_on_import(test: ast.expr) -> bool:
    text = ast.unparse(test)
    return "TYPE_CHECKING" in text or text in ("__name__ == '__main__'", '__name__ == "__main__"')


def _runtime_imports(module: str, path: Path) -> set[str]:
    """What importing `module` imports: its module-level statements, not `if TYPE_CHECKING:` or
    `if __name__ == "__main__":` blocks nor imports inside functions (the CLI's lazy subcommands)."""
    found: set[str] = set()
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.If) and _not_run_on_import(statement.test):
            continue
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        nodes = ast.walk(statement) if not isinstance(statement, ast.ClassDef) else iter(statement.body)
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found |= _imported(node, module, path)
    return found


def _all_imports(module: str, path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _imported(node, module, path)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_reader_sees_the_package() -> None:
    # Guards the tests below against passing on an empty walk.
    assert len(MODULES) > 80
    assert {"exporter.state.router", "exporter.protocol.channels", "exporter.simulator.server"} <= set(
        MODULES
    )
    assert "exporter.state.orderbook" in _runtime_imports(
        "exporter.state.router", MODULES["exporter.state.router"]
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by idea (README, Architecture)"


def test_no_import_cycle() -> None:
    graph = {module: _runtime_imports(module, path) for module, path in MODULES.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_protocol_imports_nothing_of_the_project_but_itself() -> None:
    # The wire format is the bottom layer: the exporter, the simulator and the recorder all build on it.
    offenders = {
        module: sorted(
            name for name in _all_imports(module, path) if not name.startswith("exporter.protocol")
        )
        for module, path in MODULES.items()
        if module.startswith("exporter.protocol")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_exporter_never_imports_the_simulator() -> None:
    # The exporter never invents data; only the command line reaches the simulator, and only for its
    # subcommands (`simulate`, `record`), lazily.
    offenders = {
        module: sorted(
            name for name in _runtime_imports(module, path) if name.startswith("exporter.simulator")
        )
        for module, path in MODULES.items()
        if not module.startswith("exporter.simulator")
    }
    assert {module: names for module, names in offenders.items() if names} == {}
