"""Every third-party package the code imports is declared in pyproject.toml."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("fednas", "clients", "server", "attacks", "simulations", "benchmarks")
OURS = {*RUNTIME, "tests", "tinynas", "cellsearch"}  # the two example apps (examples/, tests/plugin_app/)


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported(folders: tuple[str, ...]) -> dict[str, str]:
    """Top-level module -> one file importing it, for every absolute import in ``folders``."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {m: p for m, p in found.items() if m not in OURS and m not in sys.stdlib_module_names
            and m != "__future__"}


def _undeclared(imported: dict[str, str], declared: set[str]) -> list[str]:
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module, path in sorted(imported.items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (imported by {path}; distribution {sorted(names)})")
    return missing


def test_every_import_of_the_code_and_the_tests_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    test = runtime | {_name(r) for r in project["optional-dependencies"]["test"]}
    assert _undeclared(_imported(RUNTIME), runtime) == []
    assert _undeclared(_imported(("tests",)), test) == []


def test_the_example_app_declares_its_own_imports():
    example = ROOT / "examples" / "tinynas"
    declared = {_name(r) for r in tomllib.loads((example / "pyproject.toml").read_text())["project"]["dependencies"]}
    imported = {}
    for path in sorted((example / "tinynas").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.setdefault(node.module.split(".")[0], str(path))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    imported.setdefault(a.name.split(".")[0], str(path))
    # the project itself (fednas-privacy) provides fednas, server and attacks
    imported = {m: p for m, p in imported.items() if m not in sys.stdlib_module_names and m != "__future__"
                and m not in {"tinynas", "fednas", "server", "attacks"}}
    assert _undeclared(imported, declared) == []
