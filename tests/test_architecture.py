"""docs/ARCHITECTURE.md against the code: its module table lists every module, and every import follows its graph.

The graph is the doc's `imports` block: one line per unit (a sub-package of searchcore/, a top-level module, or
a module the doc names on its own), then the units it may import. A module belongs to the longest unit its
dotted name starts with. Besides what the doc says, the front ends stay on top whatever the doc allows: no
unit but web/ imports web/, none imports cli, and the graph has no cycle. Inside a unit any module may import
any other, but the modules of a unit may not import each other in a cycle either.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "searchcore"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
FRONT_ENDS = {"web", "cli"}

Graph = dict[str, set[str]]


def doc_graph(text: str) -> Graph:
    """The doc's ```imports block: `unit: allowed units`, one unit a line."""
    blocks = re.findall(r"^```imports\n(.*?)^```", text, flags=re.M | re.S)
    assert len(blocks) == 1, "docs/ARCHITECTURE.md needs exactly one ```imports block"
    graph: Graph = {}
    for line in blocks[0].splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            unit, _, allowed = line.partition(":")
            assert unit.strip() not in graph, f"unit {unit.strip()} is listed twice in the imports block"
            graph[unit.strip()] = set(allowed.split())
    return graph


def doc_modules(text: str) -> set[str]:
    """Every module path (relative to searchcore/) in the module column of the doc's table rows."""
    cells = [line.split("|")[2] for line in text.splitlines() if line.startswith("|") and line.count("|") > 3]
    return {name for cell in cells for name in re.findall(r"`([\w/]+\.py)`", cell)}


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name relative to searchcore ('' for searchcore/__init__.py) -> file."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def unit_of(name: str, units: set[str]) -> str | None:
    """The longest unit that the dotted name (relative to searchcore) is, or lies inside."""
    if name == "":
        return "searchcore" if "searchcore" in units else None
    inside = [u for u in units if name == u or name.startswith(u + ".")]
    return max(inside, key=len) if inside else None


def imported(tree: ast.Module, known: set[str]) -> list[tuple[int, str]]:
    """(line, dotted name relative to searchcore) of every searchcore module the code imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            # `from searchcore.models import encoder` imports the module searchcore.models.encoder
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}"[11:] in known else node.module
                     for alias in node.names]
        else:
            continue
        found += [(node.lineno, name[11:]) for name in names if name == "searchcore" or name.startswith("searchcore.")]
    return found


def violations(graph: Graph, sources: dict[str, str]) -> list[str]:
    """Each import in sources (dotted name -> code) that the graph does not allow, each module it misses, and a
    cycle of imports among the modules of one unit."""
    units = set(graph)
    problems = []
    inside: Graph = {}  # module -> the modules of its own unit it imports
    for name, code in sources.items():
        mine = unit_of(name, units)
        if mine is None:
            problems.append(f"searchcore.{name} belongs to no unit of the imports block")
            continue
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                problems.append(f"searchcore.{name}:{node.lineno}: a relative import (imports are absolute)")
            if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "__import__"
                                               or getattr(node.func, "attr", None) == "import_module"):
                problems.append(f"searchcore.{name}:{node.lineno}: an import the graph cannot see")
        for line, target in imported(tree, set(sources)):
            theirs = unit_of(target, units)
            if theirs is not None and theirs != mine and theirs not in graph[mine]:
                problems.append(f"searchcore.{name}:{line} imports searchcore.{target}: {mine} may not import {theirs}")
            if theirs == mine and target != name and target in sources:
                inside.setdefault(name, set()).add(target)
    looped = cycle(inside)
    if looped:
        problems.append(f"an import cycle inside {unit_of(looped[0], units)}: "
                        + " -> ".join(f"searchcore.{m}" for m in looped))
    return problems


def cycle(graph: Graph) -> list[str] | None:
    """A cycle of units in the graph, or None."""
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> list[str] | None:
        if unit in path:
            return path[path.index(unit):] + [unit]
        if unit in done:
            return None
        for other in sorted(graph.get(unit, ())):
            found = visit(other, path + [unit])
            if found:
                return found
        done.add(unit)
        return None

    return next((found for unit in sorted(graph) if (found := visit(unit, []))), None)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_module_is_in_the_module_table_and_every_listed_module_exists(doc: str) -> None:
    on_disk = {str(path.relative_to(PACKAGE)) for path in modules().values()
               if path.name != "__init__.py" or path.parent == PACKAGE}
    listed = doc_modules(doc)
    assert not on_disk - listed, f"add these modules to the table in docs/ARCHITECTURE.md: {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"docs/ARCHITECTURE.md lists modules that do not exist: {sorted(listed - on_disk)}"


def test_the_graph_keeps_the_front_ends_on_top_and_runs_one_way(doc: str) -> None:
    graph = doc_graph(doc)
    assert set(graph) >= FRONT_ENDS
    assert not [u for u, allowed in graph.items() if "cli" in allowed], "nothing may import the CLI"
    assert not [u for u, allowed in graph.items() if "web" in allowed and u != "web"], "only web/ imports web/"
    assert not [a for allowed in graph.values() for a in allowed if a not in graph], "an allowed unit is not a unit"
    assert cycle(graph) is None, f"the graph has a cycle: {' -> '.join(cycle(graph) or [])}"


def test_every_import_in_searchcore_follows_the_graph(doc: str) -> None:
    sources = {name: path.read_text(encoding="utf-8") for name, path in modules().items()}
    assert violations(doc_graph(doc), sources) == []


def test_the_check_catches_a_core_module_importing_a_front_end_and_a_module_outside_the_graph() -> None:
    graph = {"stores": {"errors"}, "errors": set(), "web": {"stores", "errors"}, "cli": {"stores", "errors"}}
    sources = {"errors": "", "stores": "", "stores.vectors": "from searchcore.errors import StoreError\n",
               "web": "", "web.api": "from searchcore.stores import vectors\nimport searchcore.errors\n",
               "cli": "from searchcore.stores.vectors import Hit\n"}
    assert violations(graph, sources) == []
    assert cycle(graph) is None

    reaching_up = {**sources, "stores.vectors": "from searchcore.errors import StoreError\n"
                                                "from searchcore.web.api import app\n"}
    assert violations(graph, reaching_up) == ["searchcore.stores.vectors:2 imports searchcore.web.api: "
                                              "stores may not import web"]
    hidden = {**sources, "stores.vectors": "import importlib\nui = importlib.import_module('searchcore.web.ui')\n"}
    assert violations(graph, hidden) == ["searchcore.stores.vectors:2: an import the graph cannot see"]
    relative = {**sources, "stores.vectors": "from ..errors import StoreError\n"}
    assert violations(graph, relative) == ["searchcore.stores.vectors:1: a relative import (imports are absolute)"]
    assert violations(graph, {**sources, "videos": ""}) == ["searchcore.videos belongs to no unit of the imports block"]
    assert cycle({**graph, "errors": {"stores"}}) == ["errors", "stores", "errors"]


def test_the_check_catches_modules_of_one_unit_importing_each_other_in_a_cycle() -> None:
    graph = {"errors": set(), "models": {"errors"}}
    sources = {"errors": "", "models": "", "models.preprocess": "from searchcore.errors import ModelError\n",
               "models.encoder": "from searchcore.models.preprocess import normalise\n",
               "models.gpu_decode": "from searchcore.models import preprocess\n"
                                    "from searchcore.models.encoder import Encoder\n"}
    assert violations(graph, sources) == []

    back = {**sources, "models.encoder": "from searchcore.models.preprocess import normalise\n"
                                         "from searchcore.models.gpu_decode import DeviceDecoder\n"}
    assert violations(graph, back) == ["an import cycle inside models: searchcore.models.encoder -> "
                                       "searchcore.models.gpu_decode -> searchcore.models.encoder"]
    hidden = {**sources, "models.preprocess": "def load():\n    from searchcore.models.gpu_decode import decode\n"}
    assert violations(graph, hidden) == ["an import cycle inside models: searchcore.models.encoder -> "
                                         "searchcore.models.preprocess -> searchcore.models.gpu_decode -> "
                                         "searchcore.models.encoder"]


def test_no_package_re_exports_a_name() -> None:
    inits = {name: path for name, path in modules().items() if path.name == "__init__.py"}
    reexports = {f"searchcore.{name}".rstrip(".") for name, path in inits.items()
                 if imported(ast.parse(path.read_text(encoding="utf-8")), set(modules()))}
    assert not reexports, f"each name has one import path; these packages import names to re-export: {reexports}"


def doc_map(text: str, root: str) -> set[str]:
    """The folders the doc's indented `root/` listing names (the lines just under `    root/`)."""
    lines = text.splitlines()
    start = lines.index(f"    {root}/")
    folders = set()
    for line in lines[start + 1:]:
        if not line.startswith("      "):
            break
        folders |= set(re.findall(r"^(\w+)/", line[6:]))
    return folders


def folders(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir() and p.name != "__pycache__"}


def test_the_package_the_tests_and_the_doc_read_as_one_map(doc: str) -> None:
    """`ls searchcore`, `ls tests` and the doc's two listings name the same folders: a unit's tests sit in a folder
    of its name, search/ holds the top-level search modules' and e2e/ the tests from outside."""
    units, tests = folders(PACKAGE), folders(ROOT / "tests")
    assert doc_map(doc, "searchcore") == units
    assert doc_map(doc, "tests") == tests
    assert tests == units | {"search", "e2e"}
    assert "search" not in units and (PACKAGE / "search.py").is_file()


def test_the_map_check_sees_a_folder_the_doc_leaves_out(doc: str) -> None:
    assert "jobs" in doc_map(doc, "tests")
    assert "jobs" not in doc_map(doc.replace("      jobs/       the folder watcher, the Ray ingest\n", ""), "tests")
