from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from ignite_dagster import db


def test_fresh_database_migrates_and_second_run_is_noop(postgres):
    url = postgres.create_database(migrate=False)
    with pytest.raises(db.SchemaError, match="ignite db migrate"):
        db.check(url)
    assert db.migrate(url) == [m.version for m in db.migrations()]
    assert db.migrate(url) == []
    db.check(url)
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"ai_course_jobs", "ai_media_jobs", "job_events", "organizations", "user_roles", "course_metadata",
            "course_versions", "catalog_updates", "schema_migrations"} <= tables


def test_check_names_pending_migrations(postgres, tmp_path):
    url = postgres.create_database(migrate=True)
    for m in db.migrations()[:2]:  # the applied files as they were applied (an edited one is refused)
        (tmp_path / m.path.name).write_bytes(m.path.read_bytes())
    (tmp_path / "003_future.sql").write_text("SELECT 1")
    with pytest.raises(db.SchemaError, match="003_future"):
        db.check(url, sql_dir=tmp_path)


def test_two_migrate_processes_started_together_both_succeed(postgres):
    url = postgres.create_database(migrate=False)
    code = "import sys; from ignite_dagster import db; print(db.migrate(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    # exactly one applied the files, the other found nothing to do
    assert sorted(outs) == sorted(["[]", str([m.version for m in db.migrations()])])
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(db.migrations())


def test_failed_migration_rolls_back_and_is_not_recorded(postgres, tmp_path):
    url = postgres.create_database(migrate=False)
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE t_ok (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE t_bad (id int); SELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        db.migrate(url, sql_dir=tmp_path)
    with psycopg.connect(url) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == ["001_ok"]
        assert conn.execute("SELECT to_regclass('t_bad')").fetchone()[0] is None


def test_every_shipped_migration_matches_its_stored_checksum_on_a_fresh_database(postgres):
    url = postgres.create_database(migrate=False)
    db.migrate(url)
    with psycopg.connect(url) as conn:
        stored = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    assert stored == {m.version: m.checksum for m in db.migrations()}
    db.check(url)


def test_an_edited_applied_migration_is_refused_naming_the_file(postgres, tmp_path):
    url = postgres.create_database(migrate=False)
    (tmp_path / "001_first.sql").write_text("CREATE TABLE t_first (id int);")
    (tmp_path / "002_second.sql").write_text("CREATE TABLE t_second (id int);")
    assert db.migrate(url, sql_dir=tmp_path) == ["001_first", "002_second"]
    # someone edits an applied file and adds a new one
    (tmp_path / "001_first.sql").write_text("CREATE TABLE t_first (id int, extra text);")
    (tmp_path / "003_third.sql").write_text("CREATE TABLE t_third (id int);")
    for refused in (lambda: db.migrate(url, sql_dir=tmp_path), lambda: db.check(url, sql_dir=tmp_path)):
        with pytest.raises(db.SchemaError) as err:
            refused()
        message = str(err.value)
        assert "001_first.sql" in message and "must not be edited" in message and "new numbered migration" in message
        assert "002_second" not in message
    with psycopg.connect(url) as conn:  # nothing applied while refusing
        assert conn.execute("SELECT to_regclass('t_third')").fetchone()[0] is None
    # restoring the file as it was applied lets the new migration through
    (tmp_path / "001_first.sql").write_text("CREATE TABLE t_first (id int);")
    assert db.migrate(url, sql_dir=tmp_path) == ["003_third"]
    db.check(url, sql_dir=tmp_path)

