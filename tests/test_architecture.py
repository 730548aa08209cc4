"""The shape of the package: no import cycle, modules that import alone, small modules and functions."""
import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jepa_kit"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# What a function needs in its docstring to be longer (the reason follows the marker).
LONG_REASON = "Long because"
NOTEBOOK_EXTRAS = ("plotly", "ipywidgets", "papermill", "nbformat", "nbclient")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported(path: Path, known: set[str]) -> set[str]:
    """The jepa_kit modules a file imports anywhere in it (lazy imports inside functions count:
    a cycle through them is still a cycle a reader must untangle)."""
    pkg = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    typing_only = set()  # `if TYPE_CHECKING:` imports never run
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from jepa_kit import train` imports the module jepa_kit.train
                full = f"{base}.{a.name}"
                out.add(full if full in known else base)
    return {m for m in out if m in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    mods = modules()
    graph = {m: imported(p, set(mods)) - {m, "jepa_kit"} for m, p in mods.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # the walk itself sees edges: the trainer imports its config, the CLI everything lazily
    assert "jepa_kit.config" in graph["jepa_kit.train"] and "jepa_kit.train" in graph["jepa_kit.cli"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


_BLOCK_EXTRAS = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {extras!r}:
            raise ImportError(f'{{name}} is a notebook extra')
sys.meta_path.insert(0, Block())
import {module}
"""
# modules whose job is the notebook side (plots, widgets, papermill); they may need the extras
NEEDS_EXTRAS = {"jepa_kit.viz", "jepa_kit.compare_figures"}


def _import_alone(module: str) -> tuple[str, int, str]:
    code = (f"import {module}" if module in NEEDS_EXTRAS
            else _BLOCK_EXTRAS.format(extras=NOTEBOOK_EXTRAS, module=module))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return module, r.returncode, r.stderr[-2000:]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module on its own (no import order can hide a cycle), without the notebook extras
    (the GPU machines and batch jobs have only the library's dependencies)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        # __main__ is the `python -m jepa_kit` entry point: importing it runs the CLI
        results = list(pool.map(_import_alone, sorted(set(modules()) - {"jepa_kit.__main__"})))
    failed = [f"{m}:\n{err}" for m, rc, err in results if rc != 0]
    assert not failed, "\n\n".join(failed)


@pytest.mark.parametrize("name,path", sorted(modules().items()))
def test_module_and_function_sizes(name, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES}): split it by concern"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            assert n <= MAX_FUNCTION_LINES or LONG_REASON in doc, (
                f"{name}.{node.name} has {n} lines (at most {MAX_FUNCTION_LINES} unless its docstring says "
                f"'{LONG_REASON} ...')")
