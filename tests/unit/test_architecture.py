"""Import direction (docs/architecture.md): lower layers never import higher ones, and no import cycle joins
modules of different packages.

Every module of ``annotate_anyone`` and ``workers`` is parsed with ``ast``: module-level imports (run when the
module is imported) and function-level ones (run when the function is called; ``if TYPE_CHECKING:`` blocks
count as those). A module belongs to its package, the first name under ``annotate_anyone`` (a top-level
module such as ``settings.py`` is its own package); the configuration sections that ``settings.py`` gathers
belong to ``settings``.

- Nothing below the entry points (api, cli, workers) imports them, not even inside a function.
- Every import between packages points to a lower tier of ``TIERS``, but for the known exceptions listed
  below (the remaining debt, each with its reason): a new upward import fails, and so does an exception
  that no longer exists (take it off the list).
- No cycle between modules of different packages through module-level imports, counting the package
  ``__init__`` modules an import runs first.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. An import must point to a strictly lower tier (or stay in its own package).
TIERS: list[tuple[str, ...]] = [
    ("annotate_anyone", "_resources", "errors", "retry"),  # foundation: no project imports
    ("settings",),  # the configuration tree
    ("logs",),  # JSON logs (reads the log settings)
    ("db",),  # declarative base, engine and sessions, migrations
    ("metrics",),  # Prometheus metrics
    ("storage",),  # object stores
    ("perception", "access"),  # person backends; users, keys, sessions, audit, rate limits
    ("pipeline",),  # stages from read/fetch to store
    ("jobs",),  # the job runtime and the table of kinds
    ("executors",),  # inline, Celery, GPU queue: drive the runtime
    ("catalog",),  # sources, items, images, dedup, takedowns, the ingest commit
    ("annotation",),  # taxonomy, parsing, labelers, calibration, the flywheel
    ("review",),  # Label Studio boundary, QA, settling
    ("release",),  # export, manifest, diff, tombstones, reading
    ("datasets",),  # the trainers' loader
    ("daring",),  # the Daring trainer
    ("home",),  # first start of the embedded home, the demo
    ("api", "cli", "workers"),  # entry points
]
ENTRY_POINTS = frozenset(TIERS[-1])  # may import each other (the CLI serves the API, starts a worker)

# Modules that belong to another package than their folder's: the configuration sections settings.py gathers
# (plain pydantic models, no project imports).
SECTIONS = {
    "annotate_anyone.annotation.settings": "settings",
    "annotate_anyone.review.settings": "settings",
}

# Known upward imports at module level (the remaining debt; docs/architecture.md): none left. An entry would
# close a cycle between two packages.
KNOWN_UPWARD_TOP: dict[tuple[str, str], str] = {}
# Known upward imports inside functions only (not run at import time): the table of kinds, by design the one
# place the kinds meet (like pipeline/build.py for stages), names each kind's code when a job of it first runs.
KNOWN_UPWARD_LAZY: dict[tuple[str, str], str] = {
    ("jobs", "catalog"): "jobs/kinds.py: the ingest kind (catalog/ingest.py) and the release of its source claims "
    "(catalog/sources.py)",
    ("jobs", "annotation"): "jobs/kinds.py: the annotate round (annotation/round_job.py)",
    ("jobs", "review"): "jobs/kinds.py: the review kinds (review/service.py)",
    ("jobs", "release"): "jobs/kinds.py: the export kind (release/export_job.py)",
}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    lazy: bool  # inside a function (or under TYPE_CHECKING): not run at import time


def modules(root: Path = ROOT, tops: Iterable[str] = ("annotate_anyone", "workers")) -> dict[str, Path]:
    found = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> list[Import]:
    """The project imports one module makes, resolved to module names (``from pkg import mod`` -> pkg.mod)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, True)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append(Import(name, full if full in known else base, lazy))
            visit(child, lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [i for i in found if i.target.split(".")[0] in {"annotate_anyone", "workers"}]


def package_of(module: str) -> str:
    if module in SECTIONS:
        return SECTIONS[module]
    parts = module.split(".")
    if parts[0] != "annotate_anyone":
        return parts[0]
    return parts[1] if len(parts) > 1 else "annotate_anyone"


def all_imports() -> list[Import]:
    mods = modules()
    return [imp for name, path in mods.items() for imp in imports_of(name, path, mods)]


def tier_of() -> dict[str, int]:
    return {package: rank for rank, packages in enumerate(TIERS) for package in packages}


def cross_package(edges: Iterable[Import]) -> dict[tuple[str, str], list[Import]]:
    pairs: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for edge in edges:
        source, target = package_of(edge.source), package_of(edge.target)
        if source != target:
            pairs[(source, target)].append(edge)
    return pairs


def upward(edges: Iterable[Import]) -> dict[tuple[str, str], list[Import]]:
    rank = tier_of()
    return {
        pair: found
        for pair, found in cross_package(edges).items()
        if rank[pair[0]] <= rank[pair[1]] and not set(pair) <= ENTRY_POINTS
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def import_time_graph(edges: Iterable[Import], known: Iterable[str]) -> dict[str, set[str]]:
    """Module -> modules run when it is imported: its module-level imports and their parent packages."""
    known = set(known)
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        if edge.lazy or edge.target not in known:
            continue
        parts = edge.target.split(".")
        for end in range(1, len(parts) + 1):
            target = ".".join(parts[:end])
            if target in known and target != edge.source and not edge.source.startswith(target + "."):
                graph[edge.source].add(target)
    return graph


def _describe(pairs: dict[tuple[str, str], list[Import]]) -> str:
    return "\n".join(
        f"{a} -> {b}: " + ", ".join(sorted({f"{i.source} imports {i.target}" for i in found}))
        for (a, b), found in sorted(pairs.items())
    )


def test_every_package_has_a_tier() -> None:
    packages = {package_of(name) for name in modules()}
    assert packages - set(tier_of()) == set(), "place the new package in TIERS (and in docs/architecture.md)"
    assert {"api", "cli", "workers", "catalog", "jobs", "access"} <= packages


def test_nothing_below_the_entry_points_imports_them() -> None:
    pairs = cross_package(all_imports()).items()
    found = {pair: edges for pair, edges in pairs if pair[1] in ENTRY_POINTS and pair[0] not in ENTRY_POINTS}
    assert not found, "a lower layer imports an entry point:\n" + _describe(found)


def test_module_level_imports_point_down() -> None:
    found = upward(i for i in all_imports() if not i.lazy)
    new = {pair: edges for pair, edges in found.items() if pair not in KNOWN_UPWARD_TOP}
    assert not new, "upward import (a lower layer imports a higher one):\n" + _describe(new)
    paid = set(KNOWN_UPWARD_TOP) - set(found)
    assert not paid, f"these known exceptions are gone: remove them from KNOWN_UPWARD_TOP: {sorted(paid)}"


def test_function_level_imports_point_down() -> None:
    top = upward(i for i in all_imports() if not i.lazy)
    found = {pair: edges for pair, edges in upward(i for i in all_imports() if i.lazy).items() if pair not in top}
    new = {pair: edges for pair, edges in found.items() if pair not in KNOWN_UPWARD_LAZY}
    assert not new, "upward import inside a function:\n" + _describe(new)
    lazy_or_top = set(found) | set(top)
    paid = set(KNOWN_UPWARD_LAZY) - lazy_or_top
    assert not paid, f"these known exceptions are gone: remove them from KNOWN_UPWARD_LAZY: {sorted(paid)}"


def test_no_import_cycle_between_modules_of_different_packages() -> None:
    mods = modules()
    graph = import_time_graph(all_imports(), mods)
    mixed = [c for c in strongly_connected(graph) if len({package_of(m) for m in c}) > 1]
    assert mixed == [], f"import cycles across packages: {mixed}"


def test_the_checks_see_function_level_relative_and_upward_imports(tmp_path: Path) -> None:
    """The parser and the checks on a made-up tree: they can fail."""
    pkg = tmp_path / "annotate_anyone"
    (pkg / "db").mkdir(parents=True)
    (pkg / "api").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "db" / "__init__.py").write_text("from . import base\n")
    (pkg / "db" / "base.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from annotate_anyone.api import app\n"
        "def f():\n    from ..api.app import make\n"
    )
    (pkg / "api" / "__init__.py").write_text("")
    (pkg / "api" / "app.py").write_text("from annotate_anyone.db import base\n")
    mods = modules(tmp_path, ("annotate_anyone",))
    edges = [imp for name, path in mods.items() for imp in imports_of(name, path, mods)]
    assert Import("annotate_anyone.db", "annotate_anyone.db.base", False) in edges
    assert Import("annotate_anyone.db.base", "annotate_anyone.api.app", True) in edges
    assert set(upward(edges)) == {("db", "api")}
    assert upward(e for e in edges if not e.lazy) == {}
    (pkg / "db" / "base.py").write_text("import annotate_anyone.api.app\n")
    edges = [imp for name, path in mods.items() for imp in imports_of(name, path, mods)]
    cycles = strongly_connected(import_time_graph(edges, mods))
    assert ["annotate_anyone.api.app", "annotate_anyone.db", "annotate_anyone.db.base"] in cycles
