"""The package's layering (aad1lib/__init__.py): no import cycles between its units, a base layer that imports
nothing above it, and no function-local import of an aad1lib module (the way a cycle hides).

A unit is a top-level module (``aad1lib/<x>.py``) or subpackage (``aad1lib/<x>/``). The graph is read from the
source with ``ast``, every import statement counted wherever it stands (module level, function, class, ``if``).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aad1lib"
# the base layer: any unit may import these; they import only each other
BASE = {"paths", "processes", "run_folder", "runs", "flow", "chunking", "config", "pretrained"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported aad1lib module, line, inside a function)`` for every import statement of ``path``."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, local) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                # `from . import flow` / `from .. import flow` imports the module aad1lib.flow
                names = [f"{target}.{a.name}" for a in child.names] if not child.module else [target]
                found.extend((name, child.lineno, local) for name in names)
            visit(child, local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text(), str(path)), False)
    return [(name, line, local) for name, line, local in found if name.split(".")[0] == "aad1lib"]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _unit_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> {imported unit: ["module:line", ...]}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        edges = graph.setdefault(_unit(module), {})
        for target, line, _ in _imports(path):
            if _unit(target) not in (_unit(module), "__init__"):
                edges.setdefault(_unit(target), []).append(f"{module}:{line}")
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of units (first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = "open"
        stack.append(unit)
        for target in sorted(graph.get(unit, {})):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[unit] = "done"
        stack.pop()
        return None

    for unit in sorted(graph):
        if unit not in state and (cycle := visit(unit)):
            return cycle
    return None


def test_aad1lib_subpackages_import_without_cycles():
    graph = _unit_graph()
    cycle = _cycle(graph)
    where = [f"{a} -> {b} ({', '.join(graph[a][b])})" for a, b in zip(cycle, cycle[1:], strict=False)] if cycle else []
    assert cycle is None, "import cycle between aad1lib units:\n  " + "\n  ".join(where)


def test_base_layer_imports_nothing_above_it():
    graph = _unit_graph()
    assert BASE <= set(graph), f"base units missing from the package: {BASE - set(graph)}"
    upward = [f"{unit} -> {target} ({', '.join(lines)})" for unit in sorted(BASE)
              for target, lines in sorted(graph[unit].items()) if target not in BASE]  # fmt: skip
    assert not upward, "the base layer imports units above it:\n  " + "\n  ".join(upward)


def test_no_function_local_aad1lib_imports():
    local = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}" for path in sorted(PACKAGE.rglob("*.py"))
             for name, line, is_local in _imports(path) if is_local]  # fmt: skip
    assert not local, "function-local imports of aad1lib modules (import at module level):\n  " + "\n  ".join(local)


def test_the_graph_sees_relative_absolute_and_local_imports(tmp_path, monkeypatch):
    """The checks above only mean something if the parser finds every kind of import: a planted package with
    a cycle through a function-local relative import and an absolute one is caught."""
    root = tmp_path / "aad1lib"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "base.py").write_text("def f():\n    from .sub import thing\n")
    (root / "sub" / "__init__.py").write_text("from .. import base\n")
    (root / "sub" / "thing.py").write_text("import aad1lib.base\n")
    monkeypatch.setitem(globals(), "PACKAGE", root)
    graph = _unit_graph()
    assert graph["base"] == {"sub": ["aad1lib.base:2"]}
    assert graph["sub"] == {"base": ["aad1lib.sub:1", "aad1lib.sub.thing:1"]}
    assert _cycle(graph) == ["base", "sub", "base"]
    assert [(n, local) for n, _, local in _imports(root / "base.py")] == [("aad1lib.sub", True)]
