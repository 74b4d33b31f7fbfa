"""The import graph of recbole_adaptssr, read from the source with a small AST scan, and its cycles.

An edge is an ``import`` or ``from ... import`` of one of the package's modules (relative ones resolved), or an
``importlib.import_module("literal")`` call; imports under ``if TYPE_CHECKING:`` are not edges. An edge is
*module-level* when it runs as the module is imported and *function-level* when it sits inside a function (it runs
when the function is called). A cycle of module-level edges breaks imports; a cycle that needs function-level
edges works, but the modules on it cannot be understood, tested or moved one without the others: the package has
none of either kind. Importing a submodule also runs its packages' ``__init__``; those implied edges are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "recbole_adaptssr"
MODULE, FUNCTION = "module", "function"

def module_names() -> dict:
    """``{dotted name: path}`` of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def import_edges(modules: dict) -> dict:
    """``{(importer, imported): [(level, "file:line"), ...]}`` over the package's modules."""
    edges = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def add(target, level, line):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault((name, target), []).append((level, f"{path.relative_to(PACKAGE.parent)}:{line}"))

        def visit(node, level):
            for child in ast.iter_child_nodes(node):
                if _is_type_checking(child):
                    continue
                inner = FUNCTION if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else level
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        add(alias.name, inner, child.lineno)
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")[:len(package.split(".")) - child.level + 1]
                        base = ".".join(anchor + ([child.module] if child.module else []))
                    for alias in child.names:
                        full = f"{base}.{alias.name}"
                        add(full if full in modules else base, inner, child.lineno)
                elif (isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant)
                      and isinstance(child.args[0].value, str)
                      and getattr(child.func, "attr", getattr(child.func, "id", None)) == "import_module"):
                    add(child.args[0].value, inner, child.lineno)
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8")), MODULE)
    return edges


def graph(edges: dict, module_level_only: bool) -> dict:
    out = {}
    for (a, b), sites in edges.items():
        if not module_level_only or any(level == MODULE for level, _ in sites):
            out.setdefault(a, set()).add(b)
    return out


def cycles(adjacency: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(adjacency.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(adjacency):
        if v not in index:
            connect(v)
    return found


def describe(component: list, edges: dict) -> str:
    """One closed path through ``component``, each edge with its kind and where it is written, module-level and
    function-level edges listed separately."""
    members = set(component)
    start, path, seen = component[0], [component[0]], {component[0]}
    while True:  # walk to an unseen member while one is reachable, then back to the start
        here = path[-1]
        following = sorted(b for (a, b) in edges if a == here and b in members)
        step = next((b for b in following if b not in seen), None) or (start if start in following else following[0])
        path.append(step)
        if step == start:
            break
        seen.add(step)
    lines = []
    for level in (MODULE, FUNCTION):
        sites = [f"{a} -> {b} ({', '.join(dict.fromkeys(s for lv, s in edges[(a, b)] if lv == level))})"
                 for a, b in zip(path, path[1:]) if any(lv == level for lv, _ in edges[(a, b)])]
        lines.append(f"  {level}-level: " + ("; ".join(sites) or "none"))
    return " -> ".join(path) + "\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def scan():
    modules = module_names()
    edges = import_edges(modules)
    return edges, cycles(graph(edges, False)), cycles(graph(edges, True))


def test_the_scan_sees_the_imports_it_should():
    edges = import_edges(module_names())
    levels = {key: {lv for lv, _ in sites} for key, sites in edges.items()}
    assert levels[("recbole_adaptssr.execution.worker", "recbole_adaptssr.execution.result")] == {MODULE}
    assert levels[("recbole_adaptssr.execution.execute", "recbole_adaptssr.execution.serial")] == {FUNCTION}
    assert FUNCTION in levels[("recbole_adaptssr.utils", "recbole_adaptssr.trainer")]  # import_module("literal")


def test_no_import_cycle_at_module_level(scan):
    edges, _, module_level = scan
    assert not module_level, "import cycles at module level:\n" + "\n".join(describe(c, edges) for c in module_level)


def test_no_import_cycle_at_all(scan):
    edges, all_cycles, _ = scan
    assert not all_cycles, "import cycles:\n" + "\n".join(describe(c, edges) for c in all_cycles)
