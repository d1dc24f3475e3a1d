"""``sql/schema.sql``: the current schema in one file, generated from a freshly migrated database.

The migrations say how the schema got here; a reader wants what it is now: ``get_next_pending_job`` is
defined by 002 and redefined by 007, 008 and 010, a column added by 005 sits next to the ones of 001. So
this module migrates an empty database and writes every table (columns, constraints), sequence, index,
view, trigger and function as the catalog holds it, in a fixed order and without OIDs or owners, so that the
file changes exactly when the schema does. tests/integration/test_schema_file.py fails when the file no
longer matches the migrations. It reads the catalog rather than running pg_dump: a pg_dump binary must
match the server's major version and is not there on every machine (the embedded pgserver's is).

    python -m ignite_dagster.db.schema --write    # regenerate sql/schema.sql after adding a migration
    python -m ignite_dagster.db.schema --check    # exit 1 when sql/schema.sql is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
import psycopg.conninfo

from ignite_dagster.config import load_settings
from ignite_dagster.db.migrations import SQL_DIR, migrate, migrations

REGENERATE = "python -m ignite_dagster.db.schema --write"
SCHEMA_FILE = "schema.sql"

_TABLES = """
SELECT c.oid, quote_ident(c.relname) FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY c.relname"""

_COLUMNS = """
SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
       a.attgenerated, pg_get_expr(d.adbin, d.adrelid),
       CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END,
       EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
               AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'a'
               AND pg_get_expr(d.adbin, d.adrelid) = format('nextval(%%L::regclass)', dep.objid::regclass))
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""

# primary key, unique, exclusion, check, then foreign keys (the order a reader looks for them)
_CONSTRAINTS = """
SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s AND contype IN ('p', 'u', 'x', 'c', 'f')
ORDER BY array_position(ARRAY['p', 'u', 'x', 'c', 'f']::"char"[], contype), conname"""

_TABLE_COMMENTS = """
SELECT quote_ident(c.relname), quote_ident(a.attname), quote_literal(d.description) FROM pg_description d
JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
WHERE c.relnamespace = 'public'::regnamespace ORDER BY c.relname, d.objsubid"""

# sequences that no column owns (a serial's or identity's sequence comes with its column)
_SEQUENCES = """
SELECT quote_ident(c.relname), format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcache, s.seqcycle
FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass
                  AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i'))
ORDER BY c.relname"""

_VIEWS = """
SELECT quote_ident(c.relname), c.relkind, pg_get_viewdef(c.oid) FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY c.relname"""

# indexes a constraint creates are shown with the constraint
_INDEXES = """
SELECT i.tablename, i.indexdef FROM pg_indexes i
WHERE i.schemaname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.'
                  || quote_ident(i.indexname))::regclass AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.tablename, i.indexname"""

_TRIGGERS = """
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal ORDER BY c.relname, t.tgname"""

_FUNCTIONS = """
SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)"""

_EXTENSIONS = "SELECT quote_ident(extname) FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname"


def _extensions(conn: psycopg.Connection) -> list[str]:
    return [f"CREATE EXTENSION {name};\n" for (name,) in conn.execute(_EXTENSIONS)]


_SERIAL = {"smallint": "smallserial", "integer": "serial", "bigint": "bigserial"}


def _column(name: str, type_: str, not_null: bool, identity: str, generated: str, default: str | None,
            collation: str | None, serial: bool) -> str:
    """One column as written in CREATE TABLE; a column whose default draws from the sequence it owns is
    shown as the serial it was declared as."""
    if serial and type_ in _SERIAL:
        type_, default = _SERIAL[type_], None
    parts = [name, type_]
    if collation:
        parts.append(f"COLLATE {collation}")
    if identity:
        parts.append(f"GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY")
    elif generated == "s":
        parts.append(f"GENERATED ALWAYS AS ({default}) STORED")
    elif default is not None:
        parts.append(f"DEFAULT {default}")
    if not_null and not identity and not serial:
        parts.append("NOT NULL")
    return " ".join(parts)


_DEFINES_FUNCTION = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:public\.)?(\w+)\s*\(",
                               re.IGNORECASE)


def _last_defined_in(sql_dir: Traversable) -> dict[str, str]:
    """Function name → the migration file that (re)defines it last: where a reader finds why it changed."""
    found: dict[str, str] = {}
    for m in migrations(sql_dir):
        for name in _DEFINES_FUNCTION.findall(m.sql):
            found[name.lower()] = m.path.name
    return found


def _header(conn: psycopg.Connection) -> list[str]:
    applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    return [
        "-- The current schema, GENERATED from a database migrated through the numbered files of this\n"
        "-- folder: do not edit it. A change to the schema is a new numbered migration (sql/README.md);\n"
        f"-- then regenerate this file with `{REGENERATE}`.\n"
        + textwrap.fill(f"Migrations applied: {', '.join(applied)}.", 108, initial_indent="-- ",
                        subsequent_indent="--   ", break_on_hyphens=False)
        + "\n"
    ]


def _tables(conn: psycopg.Connection) -> list[str]:
    out = []
    for oid, table in conn.execute(_TABLES).fetchall():
        lines = [_column(*row) for row in conn.execute(_COLUMNS, (oid,))]
        lines += [f"CONSTRAINT {name} {rule}" for name, rule in conn.execute(_CONSTRAINTS, (oid,))]
        body = ",\n".join(f"    {line}" for line in lines)
        out.append(f"CREATE TABLE {table} (\n{body}\n);\n")
    return out


def _comments(conn: psycopg.Connection) -> list[str]:
    return [f"COMMENT ON {f'COLUMN {table}.{column}' if column else f'TABLE {table}'} IS {text};\n"
            for table, column, text in conn.execute(_TABLE_COMMENTS)]


def _sequences(conn: psycopg.Connection) -> list[str]:
    return [f"CREATE SEQUENCE {name} AS {type_} START {start} INCREMENT {inc} MINVALUE {min_} "
            f"MAXVALUE {max_} CACHE {cache}{' CYCLE' if cycle else ''};\n"
            for name, type_, start, inc, min_, max_, cache, cycle in conn.execute(_SEQUENCES)]


def _views(conn: psycopg.Connection) -> list[str]:
    return [f"CREATE {'MATERIALIZED VIEW' if kind == 'm' else 'VIEW'} {name} AS\n"
            f"{definition.rstrip().rstrip(';')};\n" for name, kind, definition in conn.execute(_VIEWS)]


def _indexes(conn: psycopg.Connection) -> list[str]:
    """One block of CREATE INDEX lines per table."""
    by_table: dict[str, list[str]] = {}
    for table, definition in conn.execute(_INDEXES):
        by_table.setdefault(table, []).append(f"{definition};\n")
    return ["".join(lines) for lines in by_table.values()]


def _triggers(conn: psycopg.Connection) -> list[str]:
    return [f"{definition};\n" for (definition,) in conn.execute(_TRIGGERS)]


def _functions(conn: psycopg.Connection, sql_dir: Traversable) -> list[str]:
    defined_in = _last_defined_in(sql_dir)
    out = []
    for name, definition in conn.execute(_FUNCTIONS):
        where = defined_in.get(name.lower())
        out.append((f"-- last defined in {where}\n" if where else "") + f"{definition.rstrip()};\n")
    return out


def _section(title: str) -> str:
    return f"-- {'=' * 100}\n-- {title}\n-- {'=' * 100}\n"


def render(url: str, sql_dir: Traversable = SQL_DIR) -> str:
    """The schema of the migrated database at ``url`` as SQL text, in a fixed order; ``sql_dir`` holds the
    migrations it was migrated with (named beside each function). A kind of object the schema has none
    of (views, triggers, …) gets no section."""
    with psycopg.connect(url, autocommit=True) as conn:
        sections = [
            ("Extensions", _extensions(conn)),
            ("Tables (columns in table order; constraints: primary key, unique, check, foreign keys)",
             _tables(conn)),
            ("Comments", _comments(conn)),
            ("Sequences (those a serial or identity column owns come with their table)", _sequences(conn)),
            ("Views", _views(conn)),
            ("Indexes (by table; those of primary keys and unique constraints are the constraints above)",
             _indexes(conn)),
            ("Triggers", _triggers(conn)),
            ("Functions (each as last defined: the migration that replaced it last wins)",
             _functions(conn, sql_dir)),
        ]
        out = _header(conn)
    for title, parts in sections:
        if parts:
            out += [_section(title), *parts]
    return "\n".join(out).rstrip() + "\n"


def _scratch_url(server_url: str, name: str) -> str:
    parts = psycopg.conninfo.conninfo_to_dict(server_url)
    parts["dbname"] = name
    return psycopg.conninfo.make_conninfo(**parts)


@contextmanager
def _server(server_url: str | None) -> Iterator[str]:
    """A Postgres server this may create a database on: the given one, else a throwaway embedded one."""
    if server_url:
        yield server_url
        return
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver  # lazily: only without a server

    with tempfile.TemporaryDirectory(prefix="ignite-schema-pg-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()


def generate(server_url: str | None = None) -> str:
    """Migrate a new, empty database on ``server_url`` (else a throwaway embedded server), render its
    schema, and drop it again."""
    with _server(server_url) as admin:
        name = f"ignite_schema_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = _scratch_url(admin, name)
            migrate(url)
            return render(url)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_file() -> Path:
    """``sql/schema.sql`` beside the migrations (the source checkout's sql/ in an editable install)."""
    return Path(str(SQL_DIR)) / SCHEMA_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ignite_dagster.db.schema",
        description="Generate sql/schema.sql, the current schema in one file, from a freshly migrated "
                    "database (created and dropped on the server, or on a throwaway embedded Postgres).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite sql/schema.sql")
    mode.add_argument("--check", action="store_true", help="exit 1 when sql/schema.sql is out of date")
    mode.add_argument("--print", action="store_true", help="print the schema to stdout")
    parser.add_argument("--server", metavar="URL",
                        help="a Postgres server where a scratch database may be created and dropped "
                             "(default: DATABASE_URL's server; unset: a throwaway embedded Postgres)")
    args = parser.parse_args(argv)
    migrations()  # no SQL files: say so before starting a server
    text = generate(args.server or load_settings().database_url)
    target = schema_file()
    if args.print:
        sys.stdout.write(text)
    elif args.write:
        changed = not target.exists() or target.read_text(encoding="utf-8") != text
        target.write_text(text, encoding="utf-8")
        print(f"{'wrote' if changed else 'unchanged:'} {target}")
    elif not target.exists() or target.read_text(encoding="utf-8") != text:
        print(f"{target} is out of date with the migrations; regenerate it with `{REGENERATE}`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
