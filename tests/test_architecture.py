"""The shape of the code: no import cycles, and no import from a lower layer to a higher one.

The layers, lowest first (README, "How the code is organised"). A module may import its own
package and any layer below its own, never one above or beside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LAYERS = [
    {"mmsearch.errors", "mmsearch.records", "mmsearch.results", "mmsearch.paths",
     "mmsearch.temporary", "mmsearch.words"},
    {"mmsearch.places", "mmsearch.timecodes"},
    {"mmsearch.imaging"},
    {"mmsearch.storage"},
    {"mmsearch.index", "mmsearch.encoders"},
    {"mmsearch.library_model"},
    {"mmsearch.search"},
    {"mmsearch.library"},
    {"mmsearch.opening", "mmsearch.checking", "mmsearch.train"},
    {"mmsearch.migration", "indexer", "mmsearch.serve"},
    {"mmsearch.cli"},
    {"mmsearch", "mmsearch.__main__"},
]  # fmt: skip


def group_of(module: str) -> str:
    """The layer entry a module belongs to: its package, or itself for a top-level module."""
    parts = module.split(".")
    for name in (".".join(parts[:2]), parts[0]):
        if any(name in layer for layer in LAYERS) and (name != "mmsearch" or module == name):
            return name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to the README)")


def rank(group: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def modules() -> dict[str, Path]:
    found = {}
    for package in ("mmsearch", "indexer"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(imported at module level, imported anywhere) of our own modules."""
    tree = ast.parse(path.read_text(), str(path))
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        ours = {n for n in names if n in known}
        anywhere |= ours
        if _module_level(tree, node):
            top |= ours
    return top, anywhere


def _module_level(tree: ast.Module, target: ast.AST) -> bool:
    """Whether ``target`` runs at import: at module level, not inside a function or under
    ``if TYPE_CHECKING``."""
    for node in tree.body:
        if node is target:
            return True
        if isinstance(node, (ast.Try, ast.With)) and any(n is target for n in ast.walk(node)):
            return True
    return False


def test_no_import_goes_up_or_across_layers():
    known = set(modules())
    violations = []
    for name, path in modules().items():
        own = group_of(name)
        for target in imports(path, known)[1]:
            theirs = group_of(target)
            if theirs != own and rank(theirs) >= rank(own):
                violations.append(f"{name} imports {target} ({own} is not above {theirs})")
    assert not violations, "\n".join(sorted(violations))


def test_no_import_cycles():
    known = set(modules())
    graph = {name: imports(path, known)[0] - {name} for name, path in modules().items()}
    cycles, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append(" → ".join(stack[stack.index(node) :] + [node]))
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, [*stack, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "\n".join(cycles)


def test_every_module_stays_small():
    """No module over about 500 lines: past that, it holds more than one concept."""
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: c for n, c in long.items() if c > 500} == {}
