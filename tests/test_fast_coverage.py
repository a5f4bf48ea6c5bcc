"""The fast subset (``pytest -m "not slow"``) reaches every module of realign_data and realign_trl.

A static check, cheap and honest about what it sees: a module is *reached* when a test file that has at least one
fast test imports it, at module level, in a fixture or helper, or inside a fast test (an import inside a slow test
does not count); by dotted name (``import realign_data.building.gate``, ``from realign_data.building.fillers import annotation``),
through the package's public names (``from realign_data import export`` reaches ``realign_data.publish.exports``), or as
a string naming it (``python -m realign_data.cli``, ``monkeypatch.setattr("realign_data.publish.hub.X", ...)``). Helper
modules of tests/ count for the test files that import them. Importing a module imports its parent packages and
what it imports at top level (not inside functions), so those are reached too: a shim left at an old path passes the
reach on to the moved module, ``realign_data.cli`` (run by the fast CLI tests) to its command modules. Modules are
found by walking the package folders, so the check follows moves. Slow tests are those in tests/slow_tests.txt or
marked ``slow`` in their file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from test_architecture import ROOT, _is_type_checking, modules  # noqa: E402

SLOW = {
    line.strip()
    for line in (TESTS / "slow_tests.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def _is_slow_mark(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "slow" for n in ast.walk(node))


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    base = node.module or ""
    if node.level:
        parts = name.split(".")
        anchor = parts[: len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
        base = ".".join(anchor + ([base] if base else []))
    return base


def _public_names(mods: dict[str, Path]) -> dict[str, str]:
    """``package.Name`` -> the module that defines it, read from each package's ``__init__``: what it imports,
    its ``{"Name": "module"}`` tables of lazy exports, and the imports under ``if name == "Name"`` / ``if name in
    (...)`` of its ``__getattr__``."""
    out: dict[str, str] = {}
    for name, path in mods.items():
        if path.name != "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = _resolve(name, path, node)
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    out.setdefault(f"{name}.{a.asname or a.name}", sub if sub in mods else module)
            elif (
                isinstance(node, ast.Dict)
                and node.values
                and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values)
            ):
                for k, v in zip(node.keys, node.values):
                    module = v.value if v.value in mods else f"{name}.{v.value}"
                    if isinstance(k, ast.Constant) and module in mods:
                        out[f"{name}.{k.value}"] = module
            elif (
                isinstance(node, ast.If)
                and isinstance(node.test, ast.Compare)
                and getattr(node.test.left, "id", None) == "name"
            ):
                right = node.test.comparators[0]
                names = [c.value for c in getattr(right, "elts", [right]) if isinstance(c, ast.Constant)]
                targets = [
                    f"{m}.{a.name}" if f"{m}.{a.name}" in mods else m
                    for n in node.body
                    if isinstance(n, ast.ImportFrom)
                    for m in [_resolve(name, path, n)]
                    for a in n.names
                ]
                for public in names:
                    for target in targets[:1]:
                        out[f"{name}.{public}"] = target
    return out


def module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Internal modules that importing ``name`` imports too (its top-level imports, not those in functions)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
            isinstance(node, ast.If) and _is_type_checking(node)
        ):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path, node)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known and m != name}


def reached_by(path: Path, known: set[str], exports: dict[str, str], rel: str) -> tuple[set[str], bool]:
    """(modules the file reaches outside its slow tests, whether it has a fast test)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    file_slow = any(
        isinstance(n, ast.Assign)
        and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
        and _is_slow_mark(n.value)
        for n in tree.body
    )
    found: set[str] = set()
    fast_tests = 0

    def add(name: str) -> None:
        name = exports.get(name, name)
        while (
            name and name not in known and "." in name
        ):  # "realign_data.publish.hub.push_to_hub" -> realign_data.publish.hub
            name = name.rsplit(".", 1)[0]
        if name in known:
            found.add(name)

    def visit(node: ast.AST) -> None:
        nonlocal fast_tests
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            slow = file_slow or f"{rel}::{node.name}" in SLOW or any(map(_is_slow_mark, node.decorator_list))
            if slow:
                return
            fast_tests += 1
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            add(node.module)
            for a in node.names:
                add(f"{node.module}.{a.name}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(("realign_data.", "realign_trl."))
        ):
            add(node.value.split()[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found, fast_tests > 0


def _test_helpers_imported(path: Path, helpers: set[str]) -> set[str]:
    """The helper modules of tests/ a test file imports (``support.hub_server``, or ``hub_server`` when the file
    puts its folder on ``sys.path``)."""
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return {h for h in helpers for n in names if h == n or h.endswith(f".{n}")}


def fast_reach() -> tuple[dict[str, Path], set[str]]:
    mods = modules()
    known = set(mods)
    exports = _public_names(mods)
    helpers: dict[str, set[str]] = {}
    for path in TESTS.rglob("*.py"):
        if not path.name.startswith("test_"):
            rel = path.relative_to(ROOT).as_posix()
            dotted = ".".join(path.relative_to(TESTS).with_suffix("").parts)
            helpers[dotted] = reached_by(path, known, exports, rel)[0]
    reached: set[str] = set()
    for path in sorted(TESTS.rglob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found, has_fast = reached_by(path, known, exports, rel)
        if has_fast:
            reached |= found
            for helper in _test_helpers_imported(path, set(helpers)):
                reached |= helpers.get(helper, set())
    reached |= {".".join(m.split(".")[:i]) for m in reached for i in range(1, m.count(".") + 1)}  # parents load
    todo = list(reached)
    while todo:  # importing a module imports what it imports at top level (a shim: the module it re-exports)
        for target in module_level_imports(todo[-1], mods[todo.pop()], known) - reached:
            reached.add(target)
            todo.append(target)
    return mods, reached


def test_every_module_is_reached_by_a_fast_test():
    mods, reached = fast_reach()
    assert len(mods) > 60, "the package walk found too few modules"
    missing = sorted(set(mods) - reached)
    assert not missing, (
        "modules no fast test reaches (add a fast test that imports and uses them, or make one of "
        f"their tests fast): {missing}"
    )


def test_the_check_sees_slow_only_and_unimported_modules(tmp_path, monkeypatch):
    """A file whose only test is slow reaches nothing; a fast test's function-level import counts."""
    known = {"realign_data", "realign_data.building.gate", "realign_data.publish.hub", "realign_data.publish.exports"}
    exports = {"realign_data.export": "realign_data.publish.exports"}
    (tmp_path / "test_x.py").write_text(
        "import pytest\n@pytest.mark.slow\ndef test_a():\n    import realign_data.building.gate\n"
    )
    assert reached_by(tmp_path / "test_x.py", known, exports, "tests/test_x.py") == (set(), False)
    (tmp_path / "test_x.py").write_text(
        "def test_a(monkeypatch):\n    from realign_data import export\n"
        "    monkeypatch.setattr('realign_data.publish.hub.push_to_hub', None)\n"
    )
    found, fast = reached_by(tmp_path / "test_x.py", known, exports, "tests/test_x.py")
    assert fast and found == {"realign_data", "realign_data.publish.exports", "realign_data.publish.hub"}
    monkeypatch.setattr(sys.modules[__name__], "SLOW", {"tests/test_x.py::test_a"})
    assert reached_by(tmp_path / "test_x.py", known, exports, "tests/test_x.py") == (set(), False)
