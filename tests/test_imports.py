"""No import cycles between the project's modules, and the layers of docs/architecture.md.

The graph is the one Python follows when a module is first imported: imports at module
level (class bodies and module-level ``if``/``try`` included), not those inside a
function (run later, when every module is loaded) nor those under ``if TYPE_CHECKING:``
(never run). ``from a.b import c`` is an edge to the module ``a.b.c`` when it is one,
else to ``a.b``. As in import-linter (grimp), the parent packages Python runs first are
not edges of their own: a package's ``__init__`` importing its submodules, which import
one another through it, is the usual, working layout, not a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fednas", "attacks", "clients", "server", "simulations", "benchmarks")

Graph = dict[str, set[str]]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: Iterable[ast.stmt]) -> Iterable[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is imported (not in functions, not TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # runs when called
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from _module_level_imports(node.body)  # a class body runs at import
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)):
            yield from _module_level_imports(node.body)
            yield from _module_level_imports(getattr(node, "orelse", []))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Graph:
    """Module -> the project's modules it imports at module level."""
    files = {_module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: Graph = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _module_level_imports(tree.body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _resolve(node, module, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                # ``import a.b.c`` names a module; an unknown deeper name is an attribute of its module
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in files and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def cycle_path(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module, as ``[a, b, ..., a]`` (breadth first)."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in members and w not in parent and w != start:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise ValueError(f"{component} is not a cycle")


def imports_anywhere(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the absolute names it imports anywhere (in functions and TYPE_CHECKING blocks too)."""
    out: dict[str, set[str]] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            names = out.setdefault(_module_name(root, path), set())
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)  # relative imports stay inside their own package
    return out


# docs/architecture.md, "Layers": what each package may import of the others (its own always).
# simulations/ and benchmarks/ may import everything.
MAY_IMPORT: dict[str, set[str]] = {
    "fednas": set(),
    "attacks": {"fednas"},
    "clients": {"fednas", "attacks"},
    "server": {"fednas", "attacks"},
    "simulations": set(PACKAGES),
    "benchmarks": set(PACKAGES),
}
# "no Flower": a benchmark or an attacker's tooling uses these without Flower installed or running
FLOWER_FREE = ("fednas", "attacks")

# Module-level import cycles that exist and are tolerated, each as its sorted modules, with why.
# Empty: none today. A new cycle fails the test; an entry here that is no longer a cycle fails too,
# so the list only shrinks.
ALLOWED_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def layer_violations(imports: Mapping[str, set[str]], may_import: Mapping[str, set[str]] = MAY_IMPORT,
                     flower_free: Iterable[str] = FLOWER_FREE) -> list[str]:
    """Each import that breaks the layers, as ``module imports name``."""
    out = []
    for module, names in sorted(imports.items()):
        pkg = module.split(".")[0]
        for name in sorted(names):
            top = name.split(".")[0]
            if top in may_import and top != pkg and top not in may_import.get(pkg, set()):
                allowed = ", ".join(sorted(may_import.get(pkg, set()) - {pkg})) or "no other package"
                out.append(f"{module} imports {name} ({pkg}/ may import {allowed})")
            elif top == "flwr" and pkg in flower_free:
                out.append(f"{module} imports {name} ({pkg}/ must not need Flower)")
    return out


# ---------------------------------------------------------------------------- the project


def test_no_module_level_import_cycles():
    graph = import_graph()
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the scan found the project
    found = {tuple(c): cycle_path(graph, c) for c in cycles(graph)}
    new = [" -> ".join(path) for c, path in found.items() if c not in ALLOWED_CYCLES]
    assert new == [], "import cycles (move an import into the function that needs it, or split the module)"
    assert sorted(ALLOWED_CYCLES - set(found)) == [], "no longer cycles: remove them from ALLOWED_CYCLES"


def test_the_packages_import_only_the_layers_below_them():
    imports = imports_anywhere()
    assert {m.split(".")[0] for m in imports} == set(PACKAGES)
    assert layer_violations(imports) == []


# ---------------------------------------------------------------------------- the checks can fail


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_is_found_and_named_and_deferred_imports_are_not_edges(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from . import c\nclass K:\n    import pkg.d\n",  # a class body runs at import
        "pkg/c.py": "from pkg.a import something\n",
        "pkg/d.py": "try:\n    import pkg.b\nexcept ImportError:\n    pass\n",
        "pkg/lazy.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.late\n"
                       "def f():\n    import pkg.late\n",
        "pkg/late.py": "import pkg.lazy\n",
    })
    graph = import_graph(root, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c", "pkg.d"} and graph["pkg.lazy"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.d"]]
    assert cycle_path(graph, ["pkg.a", "pkg.b", "pkg.c", "pkg.d"]) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert cycle_path(graph, ["pkg.b", "pkg.d"]) == ["pkg.b", "pkg.d", "pkg.b"]


def test_a_self_contained_graph_has_no_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_an_import_against_the_layers_is_named():
    imports = {"fednas.x": {"numpy", "fednas.y"}, "fednas.y": {"server.guard"}, "attacks.z": {"flwr.app"},
               "server.s": {"attacks.base", "simulations.launcher"}, "simulations.q": {"server.s", "flwr"}}
    assert layer_violations(imports) == [
        "attacks.z imports flwr.app (attacks/ must not need Flower)",
        "fednas.y imports server.guard (fednas/ may import no other package)",
        "server.s imports simulations.launcher (server/ may import attacks, fednas)",
    ]
