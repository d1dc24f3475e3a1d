"""sql/schema.sql, the schema a reader reads in one file, is what the migrations build
(ignite_dagster.db.schema).

A migration added without regenerating the file, or a hand edit of the file, fails here with the
command that regenerates it.
"""

from __future__ import annotations

import difflib
import shutil

import psycopg
import pytest

from ignite_dagster import db
from ignite_dagster.db import schema


def test_sql_schema_file_is_what_the_migrations_build(postgres):
    url = postgres.create_database(migrate=True)
    built = schema.render(url)
    committed = schema.schema_file().read_text(encoding="utf-8")
    if committed != built:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), built.splitlines(True),
                                            "sql/schema.sql (committed)", "from the migrations"))
        pytest.fail(f"sql/schema.sql is out of date with the migrations; regenerate it with "
                    f"`{schema.REGENERATE}`\n{diff[:6000]}")


def test_a_function_redefined_by_a_later_migration_appears_once_as_last_defined(postgres, tmp_path):
    for m in db.migrations():
        shutil.copy2(str(m.path), tmp_path / m.path.name)
    (tmp_path / "999_later.sql").write_text(
        "CREATE OR REPLACE FUNCTION get_next_pending_media_job(p_worker_id text DEFAULT NULL)\n"
        "RETURNS SETOF ai_media_jobs LANGUAGE sql AS $$ SELECT * FROM claim_media_jobs(1, p_worker_id) $$;\n"
        "ALTER TABLE organizations ADD COLUMN later_note text;\n"
        "CREATE INDEX organizations_later_note ON organizations (later_note);\n")
    url = postgres.create_database(migrate=False)
    db.migrate(url, sql_dir=tmp_path)
    text = schema.render(url, sql_dir=tmp_path)
    assert text.count("FUNCTION public.get_next_pending_media_job(") == 1
    definition = text[text.index("FUNCTION public.get_next_pending_media_job("):]
    assert "LANGUAGE sql" in definition.split(";\n", 1)[0]
    assert ("-- last defined in 999_later.sql\n"
            "CREATE OR REPLACE FUNCTION public.get_next_pending_media_job(") in text
    organizations = text.split("CREATE TABLE organizations (\n", 1)[1].split("\n);", 1)[0]
    assert "    later_note text," in organizations.splitlines()
    assert "CREATE INDEX organizations_later_note ON public.organizations USING btree (later_note);" in text
    assert "999_later" in text.split("\n\n", 1)[0]  # the header names the migrations applied


def test_the_schema_names_no_oids_and_two_fresh_databases_render_alike(postgres):
    first, second = postgres.create_database(migrate=True), postgres.create_database(migrate=True)
    with psycopg.connect(first) as a, psycopg.connect(second) as b:
        oid = "SELECT 'get_next_pending_job'::regproc::oid"
        assert a.execute(oid).fetchone() != b.execute(oid).fetchone()  # the catalogs differ in OIDs ...
    assert schema.render(first) == schema.render(second)  # ... the rendered schema does not
