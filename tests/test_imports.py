"""Imports run one way: no module imports a module that imports it back, and no top-level
package imports a package that imports it back (lazy and TYPE_CHECKING imports count: they
are dependencies all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import privpart

SRC = Path(privpart.__file__).parent


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import submodule` depends on the submodule; `from mod import obj`
                # on the module that defines (or re-exports) obj
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in modules]
                if len(targets) < len(subs):
                    targets.append(node.module)
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        src = package_of(module)
        packages.setdefault(src, set()).update(
            package_of(d) for d in deps if package_of(d) != src
        )
    assert cycles(packages) == []


def test_the_library_surface_loads_lazily() -> None:
    import subprocess
    import sys

    code = "import sys, privpart; print(sorted(m for m in sys.modules if m.startswith('privpart')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['privpart', 'privpart.version']"
