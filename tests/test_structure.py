"""The shape of the package: small modules, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import smtpgate

PACKAGE = Path(smtpgate.__file__).parent
MAX_LINES = 650  # "no module over ~600 lines"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _runtime_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """smtpgate modules imported at module level (not under TYPE_CHECKING, not in functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets = [stem, *(f"{stem}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def test_no_module_is_over_the_size_limit():
    too_long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _runtime_imports(name, path, modules) for name, path in modules.items()}
    # A package imports its own submodules by design; a cycle through __init__ files is not
    # one a reader trips over, so only plain modules are followed.
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name] - packages):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(target) :], target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(set(graph) - packages):
        if name not in state:
            visit(name)


def test_test_modules_have_unique_names():
    """pytest imports test files by their base name (the folders are not packages): two
    ``test_x.py`` in different folders stop the whole run at collection."""
    tests = Path(__file__).parent
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(tests.rglob("*.py")):
        if path.name == "conftest.py" or "__pycache__" in path.parts:
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(tests)} and {path.relative_to(tests)}")
        seen.setdefault(path.name, path)
    assert not clashes, "same module name in two folders: " + "; ".join(clashes)
