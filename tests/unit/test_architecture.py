"""The package's shape as tests: the import contracts of pyproject.toml ([tool.importlinter]) and no
import cycle anywhere in ignite_dagster.

Imports inside functions and under ``TYPE_CHECKING`` count: a lazy import is still a dependency, and
"it only cycles at run time in that one branch" is how cycles come back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]  # tests/<kind>/this file
PACKAGE = "ignite_dagster"
DAGSTER_LAYER = {f"{PACKAGE}.defs", f"{PACKAGE}.definitions"}


def _graph():
    return grimp.build_graph(PACKAGE, include_external_packages=False, cache_dir=None)


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    proc = subprocess.run([*cmd, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"import contracts broken:\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout


def test_every_module_outside_the_dagster_layer_is_covered_by_the_dagster_contract():
    """A new top-level module or package must join the 'dagster-only-in-defs' contract (or the layer)."""
    top_level = {".".join(m.split(".")[:2]) for m in _graph().modules if m != PACKAGE}
    covered = set(_contracts()["dagster-only-in-defs"]["source_modules"])
    assert top_level - DAGSTER_LAYER - covered == set()


def test_dg_check_defs_passes(tmp_path):
    """Dagster's own loader check of the code location configured in [tool.dg] (no database needed)."""
    dg = Path(sys.executable).with_name("dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    proc = subprocess.run([str(dg) if dg.exists() else "dg", "check", "defs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "All definitions loaded successfully" in proc.stdout + proc.stderr, (
        proc.stdout + proc.stderr)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    out.append(sorted(component))
    return out


def test_no_import_cycles():
    graph = _graph()
    problems = []
    for component in _cycles(graph):
        first = component[0]
        back = next(b for b in sorted(graph.find_modules_directly_imported_by(first)) if b in component)
        chain = graph.find_shortest_chain(importer=back, imported=first) or (back, first)
        problems.append(f"{len(component)} modules: {' -> '.join([first, *chain])}\n    all: {', '.join(component)}")
    assert not problems, "import cycles:\n  " + "\n  ".join(problems)


def test_the_cycle_finder_finds_cycles():
    """The check itself: a graph with a two-module loop and a self-import is reported, a DAG is not."""
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.a"), ("p.c", "p.a"), ("p.d", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b"], ["p.d"]]
    dag = grimp.ImportGraph()
    dag.add_import(importer="p.a", imported="p.b")
    assert _cycles(dag) == []
