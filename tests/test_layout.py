"""The package's shape: no import circle between its modules, no module over 450 lines, concerns as folders.

The import graph is read from the source (every ``import``, at module level or inside a function), so an import
deferred into a function to dodge a circle still counts as one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "distill_core"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` (module ``name``) imports, by resolved name."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            targets = [root] + [f"{root}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # `from . import lstm` names a module; `from .config import X` names the module `config`
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "distill_core":
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imported(p, n, set(mods)) for n, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_reads_relative_and_deferred_imports(tmp_path):
    graph = import_graph()
    assert "distill_core.train.data" in graph["distill_core.evidence.evaluate"]       # from ..train.data import ...
    assert "distill_core.ship.serve" in graph["distill_core.cli"]                     # from .ship import serve, inside a function
    assert "distill_core.train.lstm" in graph["distill_core.train.models"]            # from . import lstm


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_over_the_limit():
    big = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: k for n, k in big.items() if k > MAX_LINES} == {}


@pytest.mark.parametrize("concern", ["train", "evidence", "ship", "views", "bench"])
def test_concerns_are_folders(concern):
    assert (PKG / concern / "__init__.py").is_file()


def test_plumbing_imports_no_concern():
    """config, presets, errors, runs and files sit at the bottom: they import nothing from the concerns above them."""
    graph = import_graph()
    for low in ("distill_core.config", "distill_core.errors", "distill_core.runs", "distill_core.files",
                "distill_core.presets", "distill_core.devices"):
        above = {m for m in graph.get(low, ()) if m.split(".")[1] in {"train", "evidence", "ship", "views", "bench"}}
        assert above == set(), f"{low} imports {above}"


def top_level_imports(path: Path) -> set[str]:
    """The top-level packages a module imports (``streamlit`` for ``import streamlit as st``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_app_imports_streamlit():
    assert {n for n, p in modules().items() if "streamlit" in top_level_imports(p)} == {"distill_core.app"}


def test_pages_speak_to_the_user_not_about_the_project():
    """What a page shows (its string literals, docstrings and comments aside) names no internal report or function."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("app_pages/*.py"), *root.glob("distill_core/views/*.py")]
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if any(word in node.value for word in ("the reports", "reports'", "forward_flops")):
                    found.append(f"{path.name}:{node.lineno}: {node.value[:60]}")
    assert not found, found
