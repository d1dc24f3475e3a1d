"""Where SQL may live (issue 22): the data-access modules below, and nowhere else in ignite_dagster.

Workers, persist, the lease, the reconcilers, the Dagster shell, the CLI and the demo call named methods
(``JobQueue``, ``queue/job_rows.py``, ``catalog/recording.py``, ``budget``, ``auth``) instead of holding
statements: a queue table changes in one place, and a statement is read next to the others on its table.

The scan is the source's syntax tree, not a grep: a string constant (or an f-string's leading text) that
starts like a statement (an f-string's text parts included), or any ``.execute(`` / ``.executemany(``
call, outside the allowed modules fails.
Docstrings are prose and are skipped.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ignite_dagster"

# Modules whose job is data access, with why (a folder ends in "/": every module under it).
ALLOWED = {
    "queue/": "the job queues: JobQueue over the SQL functions, job_rows for statements inside a caller's transaction",
    "catalog/": "course_metadata, catalog_updates, course_versions: recording, listing, reading, publishing",
    "budget/": "provider budgets and per-organization usage over Postgres",
    "db/": "the pool and the migrations runner",
    "auth.py": "the organizations and members a principal is checked against",
    "media/targets.py": "the media jobs a course's planned images become (inside persist's transaction)",
    "local/embedded.py": "creating the embedded Postgres database before anything else runs",
    "api/routes.py": "the readiness probe's SELECT 1 on the pool it reports on",
}

# Modules allowed SQL for a while, each with its reason; empty now (the cli's organization commands and the
# demo read through db/organizations.py and queue/watching.py). The tests below keep the list honest.
TEMPORARY_EXEMPT: set[str] = set()

STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s")  # upper case: SQL as this code base writes it
EXECUTE = {"execute", "executemany"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are a module's, class's or function's docstring."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def sql_sites(source: str) -> list[tuple[int, str]]:
    """(line, what) for every statement text and every execute call in ``source``."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if STATEMENT.match(node.value):  # an f-string's text parts are constants too
                found.append((node.lineno, f"SQL text {node.value.strip()[:40]!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTE:
            found.append((node.lineno, f".{node.func.attr}( call"))
    return sorted(found)


def _allowed(rel: str) -> bool:
    return any(rel.startswith(a) if a.endswith("/") else rel == a for a in ALLOWED)


def _modules() -> dict[str, list[tuple[int, str]]]:
    return {p.relative_to(PACKAGE).as_posix(): sql_sites(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def test_sql_lives_only_in_the_data_access_modules():
    offenders = [f"ignite_dagster/{rel}:{line}: {what}"
                 for rel, sites in _modules().items() if not _allowed(rel) and rel not in TEMPORARY_EXEMPT
                 for line, what in sites]
    assert not offenders, ("SQL outside the data-access modules; name it as a JobQueue / job_rows / catalog "
                           "method instead:\n  " + "\n  ".join(offenders))


def test_the_lists_name_real_modules_and_exemptions_still_needed():
    """An entry for a module that is gone, or an exemption whose module no longer holds SQL, is stale."""
    for entry in ALLOWED:
        assert (PACKAGE / entry).exists(), f"ALLOWED names {entry!r}, which does not exist"
    modules = _modules()
    for rel in TEMPORARY_EXEMPT:
        assert rel in modules, f"TEMPORARY_EXEMPT names {rel!r}, which does not exist"
        assert modules[rel], f"{rel} holds no SQL any more: drop it from TEMPORARY_EXEMPT"


def test_the_scan_finds_statements_and_calls_but_not_prose():
    source = '''
"""SELECT in a module docstring is prose."""
SQL = "SELECT id FROM t"
def f(conn, table):
    """UPDATE the docs, says this docstring."""
    conn.execute(q)
    rows = cur.executemany(q, [])
    return f"DELETE FROM {table} WHERE id = %s", "Select a strategy", f"with {table}", "WITH x AS (SELECT 1)"
'''
    assert [line for line, _ in sql_sites(source)] == [3, 6, 7, 8, 8]
    assert sql_sites('message = "Delete; absent keys are not an error"\nnote = f"with {backend}"') == []
