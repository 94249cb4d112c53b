"""The package's shape: no import cycle among tkd modules (imports inside functions count too),
every sub-command registered in one place, tkd/cli.py, every cross-reference to a tkd name
(docstrings, docs pages) naming a real attribute, and the size rules (functions, modules)."""

from __future__ import annotations

import ast
from pathlib import Path

TKD = Path(__file__).resolve().parents[1] / "tkd"


def module_name(path: Path) -> str:
    """``tkd/experiments.py`` -> ``tkd.experiments``; ``tkd/__init__.py`` -> ``tkd``."""
    parts = path.relative_to(TKD.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The tkd modules that ``path`` imports anywhere in its body (top level or in functions):
    ``import tkd.x``, ``from tkd.x import y``, ``from tkd import x``, relative imports too."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules} - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over every ``tkd/**/*.py``."""
    paths = sorted(TKD.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None if the graph is acyclic (depth-first)."""
    state: dict[str, str] = {}  # "open" while on the stack, "done" when fully explored
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_scanner_sees_imports_inside_functions():
    graph = import_graph()
    assert "tkd.experiments" in graph["tkd.cli"]
    assert "tkd.models" in graph["tkd.checkpoint"]  # imported inside load_model


def test_no_import_cycle_among_tkd_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_experiments_never_import_figures_or_the_cli():
    graph = import_graph()
    assert not graph["tkd.experiments"] & {"tkd.figures", "tkd.cli", "tkd.embed"}


def test_sub_commands_are_registered_in_cli_only():
    registering = [p.name for p in sorted(TKD.rglob("*.py"))
                   if "add_parser(" in p.read_text() or "add_subparsers(" in p.read_text()]
    assert registering == ["cli.py"]


def test_every_module_is_named_in_the_package_map_and_in_docs_files():
    """``tkd/__init__.py`` names each module at the start of a line of its docstring and
    ``docs/files.md`` in a row of its own: a new module fails here until both name it."""
    import tkd

    modules = sorted(p.stem for p in TKD.glob("*.py") if p.stem != "__init__")
    starts = {line.split()[0] for line in tkd.__doc__.splitlines() if line.strip()}
    rows = (TKD.parent / "docs" / "files.md").read_text().splitlines()
    assert [m for m in modules if f"``{m}``" not in starts] == [], "missing in tkd/__init__.py"
    assert [m for m in modules if not any(r.startswith(f"| `tkd/{m}.py` |") for r in rows)] \
        == [], "missing in docs/files.md"


def resolves(dotted: str) -> bool:
    """Whether ``tkd.module.name[.attr...]`` names a real attribute: the longest importable
    module prefix, then ``getattr`` for the rest (``tkd.objective.METHODS``,
    ``tkd.objective.ObjectiveConfig.to_dict``, a module ``tkd.miners`` itself)."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


ROLE = r":(?:func|data|class|mod|meth|attr|exc|obj):`~?(tkd(?:\.\w+)*)`"
"""A Sphinx cross-reference to a tkd name in a docstring: ``:func:`tkd.records.load_records```."""
MENTION = r"`(tkd\.\w+(?:\.\w+)*)(?:\(\))?`"
"""A backticked dotted mention in the docs: ```tkd.objective.TERMS``` or ```tkd.x.f()```."""


def broken_references() -> list[str]:
    """Every cross-reference in tkd's modules (:data:`ROLE`) and backticked ``tkd.*``
    mention in docs/*.md and README.md (:data:`MENTION`) that names no real attribute, as
    ``file: name``."""
    import re

    found = [(path, re.findall(ROLE, path.read_text())) for path in sorted(TKD.rglob("*.py"))]
    pages = [*sorted((TKD.parent / "docs").glob("*.md")), TKD.parent / "README.md"]
    found += [(path, re.findall(MENTION, path.read_text())) for path in pages]
    return [f"{path.relative_to(TKD.parent)}: {name}" for path, names in found
            for name in dict.fromkeys(names) if not resolves(name)]


def test_the_reference_check_sees_a_moved_name():
    assert resolves("tkd.objective.METHODS") and resolves("tkd.miners")
    assert resolves("tkd.objective.ObjectiveConfig.to_dict")
    assert not resolves("tkd.losses.METHODS") and not resolves("tkd.results")


def test_every_cross_reference_names_a_real_attribute():
    """A docstring's :func:/:data:/:class: reference or a docs page's `tkd.module.name`
    that a restructuring left behind (a name moved or removed) fails here, listed."""
    assert broken_references() == []


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 520
"""The size rules: a function fits on one screen (60 lines, docstring included), a module
reads in one sitting (about 500 lines). 520, not 500: ``tkd/objective.py`` (502) is
fingerprinted (tkd.provenance.CODE_MODULES), and moving code out of it would stale every
committed record, so the rule leaves it that slack rather than force a split."""


def oversized() -> list[str]:
    """Every function of ``tkd/`` over :data:`MAX_FUNCTION_LINES` (``end_lineno - lineno +
    1`` of its ``def``, methods and nested functions too) and every module over
    :data:`MAX_MODULE_LINES`, as ``path: name (lines)``."""
    found = []
    for path in sorted(TKD.rglob("*.py")):
        text, where = path.read_text(), path.relative_to(TKD.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{where}: module ({len(text.splitlines())})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{where}: {node.name} ({lines})")
    return found


def test_no_function_over_60_lines_and_no_module_over_520():
    """Split a long function into helpers, move a coherent group of a long module out (as
    tkd/figure_checks.py out of tkd/plots.py, tkd/cli_records.py out of tkd/cli.py)."""
    assert oversized() == []


def test_a_module_without_its_test_file_is_named_in_docs_files():
    """``docs/files.md``'s ``tests/`` row says where a module without ``test_<module>.py`` is
    tested; a new module fails here until it has its file or is named there."""
    rows = (TKD.parent / "docs" / "files.md").read_text().splitlines()
    tests_row = next(r for r in rows if r.startswith("| `tests/` |"))
    untested = [p.stem for p in sorted(TKD.glob("*.py")) if not p.stem.startswith("__")
                and not (TKD.parent / "tests" / f"test_{p.stem}.py").is_file()]
    assert [m for m in untested if f"`{m}`" not in tests_row] == []
