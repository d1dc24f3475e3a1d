"""`ignite` as a user runs it: a real subprocess against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest
from pydantic import ValidationError

from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course


def ignite(*args: str, db_url: str, tmp_path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    # a text model is configured, as where the model path is served (enqueue refuses what it cannot serve)
    env = dict(os.environ, DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path / "home"),
               IGNITE_STORAGE_ROOT=str(tmp_path / "storage"), OPENAI_API_KEY="test-key", IGNITE_TEXT_MODEL="test-model")
    env.update(extra_env)
    proc = subprocess.run([sys.executable, "-m", "ignite_dagster.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def job_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM ai_course_jobs").fetchone()[0]


def test_enqueue_list_show_requeue_round_trip(db_url, org_id, tmp_path):
    out = ignite("enqueue", "--org", str(org_id), "--course-id", "frac-1", "--subject", "addition",
                 "--grade-band", "3-5", "--notes", "use pizza examples", "--idempotency-key", "k1", "--json",
                 db_url=db_url, tmp_path=tmp_path)
    first = json.loads(out.stdout)
    again = json.loads(ignite("enqueue", "--org", str(org_id), "--course-id", "frac-1", "--subject", "addition",
                              "--grade-band", "3-5", "--notes", "use pizza examples", "--idempotency-key", "k1",
                              "--json", db_url=db_url, tmp_path=tmp_path).stdout)
    assert again == {**first, "replayed": True} and first["replayed"] is False
    notes = json.loads((tmp_path / f"storage/courses/debug/jobs/{first['jobId']}/special_requests.json").read_text())
    assert notes["notes"] == "use pizza examples"
    listed = json.loads(ignite("jobs", "list", "--json", db_url=db_url, tmp_path=tmp_path).stdout)
    assert [j["id"] for j in listed] == [first["jobId"]] and listed[0]["has_special_requests"] is True
    shown = json.loads(ignite("jobs", "show", first["jobId"], db_url=db_url, tmp_path=tmp_path).stdout)
    assert shown["job"]["status"] == "pending"
    refused = ignite("jobs", "requeue", first["jobId"], db_url=db_url, tmp_path=tmp_path, check=False)
    assert refused.returncode == 2 and "is pending" in refused.stderr


@pytest.mark.parametrize("args, message", [
    (["--course-id", "Bad Id!"], "course_id"),
    (["--items-per-group", "0"], "items_per_group"),
    (["--items-per-group", "500"], "items_per_group"),
    (["--mode", "essay"], "mode"),
    (["--subject", "   "], "subject"),
    (["--course-id", "abc\n"], "course_id"),
    (["--locale", "fr\n"], "locale"),
    (["--groups-count", "13"], "groups_count"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(db_url, org_id, tmp_path, args, message):
    flags = {"--course-id": "ok-1", "--subject": "addition", "--grade-band": "3-5", args[0]: args[1]}
    argv = ["enqueue", "--org", str(org_id), *[x for kv in flags.items() for x in kv]]
    proc = ignite(*argv, db_url=db_url, tmp_path=tmp_path, check=False)
    assert proc.returncode == 2 and "invalid request" in proc.stderr and message in proc.stderr
    assert job_count(db_url) == 0
    assert not (tmp_path / "storage").exists() or not any((tmp_path / "storage").rglob("*.json"))


def test_every_request_field_is_a_flag_and_is_stored(db_url, org_id, tmp_path):
    from ignite_dagster.course.request import CourseRequest

    helptext = ignite("enqueue", "--help", db_url=db_url, tmp_path=tmp_path).stdout
    for name in CourseRequest.model_fields:
        assert f"--{name.replace('_', '-')}" in helptext, name

    values = {"course_id": "every-flag", "subject": "addition", "grade_band": "3-5", "grade": "4", "items_per_group": "5",
              "mode": "numeric", "notes": "use coins", "study_text": "Coins are money.", "levels_count": "2",
              "study_texts_count": "1", "groups_count": "2", "strategy": "llm", "locale": "pt-BR"}
    argv = [x for k, v in values.items() for x in (f"--{k.replace('_', '-')}", v)]
    lists = {"item_images": ["stimulus:all", "stimulus:3"], "tags": ["coins", "spring-term"]}
    argv += [x for k, vs in lists.items() for v in vs for x in (f"--{k.replace('_', '-')}", v)]
    argv += ["--visibility", "public"]
    out = json.loads(ignite("enqueue", "--org", str(org_id), *argv, "--wants-images", "--json",
                            db_url=db_url, tmp_path=tmp_path, IGNITE_IMAGE_MODEL="gpt-image-1").stdout)
    job = JobQueue(db_url).get(out["jobId"])
    expected = CourseRequest(**values, **lists, visibility="public", wants_images=True)
    assert {n: getattr(job, n) for n in CourseRequest.column_names()} == expected.columns()
    assert job.request_fingerprint == expected.fingerprint()
    saved = json.loads((tmp_path / f"storage/courses/debug/jobs/{out['jobId']}/special_requests.json").read_text())
    assert (saved["notes"], saved["study_text"]) == ("use coins", "Coins are money.")


def test_same_key_with_other_notes_is_refused_by_the_cli(db_url, org_id, tmp_path):
    base = ["enqueue", "--org", str(org_id), "--course-id", "k-1", "--subject", "addition", "--grade-band", "3-5",
            "--idempotency-key", "k"]
    ignite(*base, "--notes", "apples", db_url=db_url, tmp_path=tmp_path)
    proc = ignite(*base, "--notes", "pears", db_url=db_url, tmp_path=tmp_path, check=False)
    assert proc.returncode == 2 and "idempotency" in proc.stderr.lower() and "notes" in proc.stderr
    assert job_count(db_url) == 1


@pytest.mark.parametrize("field, value", [("course_id", "UPPER"), ("course_id", "x" * 65), ("items_per_group", 0),
                                          ("items_per_group", 101), ("mode", "essay")])
def test_queue_client_rejects_bad_rows_before_sql(db_url, org_id, field, value):
    with pytest.raises(ValidationError) as err:
        JobQueue(db_url).enqueue_course(new_course(**{field: value}), organization_id=org_id)
    assert field in str(err.value)
    assert job_count(db_url) == 0


def test_db_check_fails_clearly_on_an_empty_database(postgres, tmp_path):
    url = postgres.create_database(migrate=False)
    proc = ignite("db", "check", db_url=url, tmp_path=tmp_path, check=False)
    assert proc.returncode == 2 and "ignite db migrate" in proc.stderr
    assert "applied: 001_schema" in ignite("db", "migrate", db_url=url, tmp_path=tmp_path).stdout
    assert "up to date" in ignite("db", "check", db_url=url, tmp_path=tmp_path).stdout


def test_every_command_has_help(tmp_path):
    for args in (["--help"], ["db", "--help"], ["enqueue", "--help"], ["jobs", "list", "--help"], ["dev", "--help"],
                 ["demo", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "ignite_dagster.cli.main", *args], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: ignite" in proc.stdout


def test_definitions_load_and_validate():
    from dagster import Definitions

    from ignite_dagster.definitions import defs

    Definitions.validate_loadable(defs())
    repo = defs().get_repository_def()
    assert {"generate_courses", "reconcile_queue", "mark_stale", "dead_letter", "requeue_jobs"} <= set(repo.job_names)
    assert {"course_jobs_sensor", "course_run_failure_sensor"} <= {s.name for s in repo.sensor_defs}


def test_publish_from_the_cli_writes_a_new_version_each_time(db_url, org_id, tmp_path):
    from tests.support.courses import pack_course

    course = pack_course({"course_id": "add-pub", "subject": "addition", "grade_band": "3-5"})
    path = tmp_path / "storage/courses/add-pub/course.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(course))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO course_metadata (id, organization_id, title, storage_path) VALUES "
                     "('add-pub', %s, 'Addition', 'courses/add-pub/course.json')", (org_id,))
    versions = [json.loads(ignite("publish", "add-pub", "--actor", "ops:test", db_url=db_url, tmp_path=tmp_path).stdout)
                for _ in range(2)]
    assert [v["version"] for v in versions] == [1, 2]
    assert (tmp_path / "storage/courses/add-pub/versions/2.json").exists()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT published_by, published_by_agent FROM course_versions WHERE version = 2"
                            ).fetchone() == (None, "ops:test")
    missing = ignite("publish", "nope", db_url=db_url, tmp_path=tmp_path, check=False)
    assert missing.returncode == 2 and "not published" in missing.stderr


def test_enqueue_refuses_what_the_factory_cannot_serve(db_url, org_id, tmp_path):
    """No model configured and a request only the model could serve: exit 2 naming why, no job written."""
    proc = ignite("enqueue", "--org", str(org_id), "--course-id", "fractions-x", "--subject", "fractions",
                  "--grade-band", "3-5", db_url=db_url, tmp_path=tmp_path, check=False,
                  OPENAI_API_KEY="", IGNITE_TEXT_MODEL="")
    assert proc.returncode == 2 and "model_not_configured" in proc.stderr and "OPENAI_API_KEY" in proc.stderr
    assert job_count(db_url) == 0
