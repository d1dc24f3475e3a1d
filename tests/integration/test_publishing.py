"""Publishing: numbered immutable snapshots, distinct versions under concurrency, rollback on storage
failure, refusal of invalid content — in the domain function and over HTTP."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from ignite_dagster.auth import Principal
from ignite_dagster.catalog.publishing import PublishError, publish_course
from ignite_dagster.storage.keys import version_path
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.api_server import (
    add_org,
    add_user,
    agent_headers,
    api_settings,
    running_api,
    seed_course,
    snapshot,
    valid_course_doc,
)

COURSE = "addition-basics"


@pytest.fixture
def setup(db_url, org_id, tmp_path):
    store = LocalObjectStore(tmp_path / "storage", None)
    seed_course(db_url, store, COURSE, org_id)
    editor = add_user(db_url, (org_id, "editor"))
    return db_url, store, org_id, editor


def _user(user_id: uuid.UUID, org: uuid.UUID, role: str = "editor") -> Principal:
    return Principal(kind="user", user_id=user_id, roles={org: frozenset({role})})


def _rows(db_url: str, sql: str, *params):
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


def test_publish_writes_new_versions(setup):
    db_url, store, org, editor = setup
    first = publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org), change_summary="first")
    second = publish_course(
        db_url, store, COURSE, principal_or_actor=Principal(kind="agent", audit_user="bot-7", roles={org: frozenset({"agent"})})
    )
    third = publish_course(db_url, store, COURSE, principal_or_actor=Principal.operator("cli:alice"))
    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert third.etag == 3 and first.organization_id == org

    for result in (first, second, third):
        data = store.get(version_path(COURSE, result.version)).data
        assert json.loads(data)["contentVersion"] == str(result.version)
        assert hashlib.sha256(data).hexdigest() == result.content_sha256

    rows = _rows(db_url, "SELECT version, published_by, published_by_agent, change_summary, storage_path, "
                         "metadata_snapshot->>'content_version' FROM course_versions ORDER BY version")
    assert rows == [
        (1, editor, None, "first", version_path(COURSE, 1), "1"),
        (2, None, "bot-7", None, version_path(COURSE, 2), "2"),
        (3, None, "cli:alice", None, version_path(COURSE, 3), "3"),
    ]
    catalog = _rows(db_url, "SELECT action, course_version, organization_id, catalog_version FROM catalog_updates "
                            "ORDER BY id")
    assert [(a, v, o) for a, v, o, _ in catalog] == [("updated", 1, org), ("updated", 2, org), ("updated", 3, org)]
    assert [c[3] for c in catalog] == sorted(c[3] for c in catalog) and third.catalog_version == catalog[-1][3]
    assert _rows(db_url, "SELECT content_version, etag FROM course_metadata WHERE id = %s", COURSE) == [(3, 3)]


def test_publish_never_overwrites_a_version(setup):
    db_url, store, org, editor = setup
    # An orphan from a publish that wrote its file but never committed: different bytes → skipped.
    store.put(version_path(COURSE, 1), b'{"orphan": true}', content_type="application/json")
    result = publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org))
    assert result.version == 2
    assert store.get(version_path(COURSE, 1)).data == b'{"orphan": true}'

    # An identical orphan (same course, same number) is adopted instead of skipped.
    course = valid_course_doc(COURSE)
    course["contentVersion"] = "3"
    from ignite_dagster.course.model import Course

    store.put(version_path(COURSE, 3), Course.model_validate(course).to_json_bytes())
    assert publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org)).version == 3
    versions = [r[0] for r in _rows(db_url, "SELECT version FROM course_versions ORDER BY version")]
    assert versions == [2, 3]


def _publish_in_thread(db_url: str, root: Path, org: uuid.UUID, editor: uuid.UUID, out: list, errors: list) -> None:
    try:
        store = LocalObjectStore(root, None)
        out.append(publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org)).version)
    except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
        errors.append(exc)


def _publish_in_process(args: tuple[str, str, str, str]) -> int:
    db_url, root, org, editor = args
    store = LocalObjectStore(Path(root), None)
    principal = _user(uuid.UUID(editor), uuid.UUID(org))
    return publish_course(db_url, store, COURSE, principal_or_actor=principal).version


def test_concurrent_publishes_get_distinct_versions(setup):
    db_url, store, org, editor = setup
    out: list[int] = []
    errors: list[Exception] = []
    barrier_threads = [
        threading.Thread(target=_publish_in_thread, args=(db_url, store.root, org, editor, out, errors))
        for _ in range(8)
    ]
    for t in barrier_threads:
        t.start()
    for t in barrier_threads:
        t.join()
    assert not errors, errors
    assert sorted(out) == list(range(1, 9))

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        more = pool.map(_publish_in_process, [(db_url, str(store.root), str(org), str(editor))] * 4)
    assert sorted(more) == [9, 10, 11, 12]
    files = store.list(f"courses/{COURSE}/versions/")
    assert len(files) == 12
    assert [r[0] for r in _rows(db_url, "SELECT version FROM course_versions ORDER BY version")] == list(range(1, 13))


def test_storage_failure_rolls_back(setup):
    db_url, store, org, editor = setup
    # A *file* where the versions folder must go: the snapshot write fails for real.
    (store.root / "courses" / COURSE / "versions").write_text("in the way")
    before = snapshot(db_url, store.root)
    with pytest.raises(PublishError) as exc:
        publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org))
    assert exc.value.code == "storage_unavailable" and exc.value.status == 503
    assert snapshot(db_url, store.root) == before  # content_version, etag, versions, catalog untouched


def test_invalid_course_is_refused_with_codes(setup):
    db_url, store, org, editor = setup
    doc = valid_course_doc(COURSE)
    doc["items"][0]["text"] = "no placeholder here"
    doc["items"][1]["options"] = ["only one"]
    store.put(f"courses/{COURSE}/course.json", json.dumps(doc).encode())
    before = snapshot(db_url, store.root)
    with pytest.raises(PublishError) as exc:
        publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org))
    assert exc.value.code == "invalid_course" and exc.value.status == 422
    codes = {i.code for i in exc.value.issues}
    assert {"invalid_blank_count", "invalid_options_count"} <= codes
    assert snapshot(db_url, store.root) == before

    store.put(f"courses/{COURSE}/course.json", b"{not json")
    with pytest.raises(PublishError, match="not valid JSON"):
        publish_course(db_url, store, COURSE, principal_or_actor=_user(editor, org))


def test_authorization_in_the_domain(setup):
    db_url, store, org, editor = setup
    other = add_org(db_url, "Other")
    viewer = add_user(db_url, (org, "viewer"))
    outsider = add_user(db_url, (other, "editor"))
    cases = [
        (_user(viewer, org, "viewer"), 403, "forbidden"),
        (_user(outsider, other), 404, "not_found"),
        (Principal(kind="agent", audit_user="x", roles={other: frozenset({"agent"})}), 404, "not_found"),
    ]
    for principal, status, code in cases:
        with pytest.raises(PublishError) as exc:
            publish_course(db_url, store, COURSE, principal_or_actor=principal)
        assert (exc.value.status, exc.value.code) == (status, code)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO course_metadata (id, organization_id, title, storage_path) VALUES ('empty', %s, 't', 'p')",
            (org,),
        )
    with pytest.raises(PublishError) as exc:
        publish_course(db_url, store, "empty", principal_or_actor=_user(editor, org))
    assert exc.value.code == "course_not_generated"
    assert _rows(db_url, "SELECT count(*) FROM course_versions") == [(0,)]


def test_publish_over_http(setup):
    db_url, store, org, editor = setup
    from tests.support.api_server import hs256_token

    with running_api(api_settings(), db_url, store) as server, httpx.Client(base_url=server.url) as c:
        r = c.post("/functions/v1/publish-course", json={"courseId": COURSE, "changeSummary": "launch"},
                   headers={"Authorization": f"Bearer {hs256_token(editor)}"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["ok"] is True and out["version"] == 1 and out["storagePath"] == version_path(COURSE, 1)
        r = c.post("/functions/v1/publish-course", json={"courseId": COURSE}, headers=agent_headers(org, user="ci"))
        assert r.json()["version"] == 2
        assert _rows(db_url, "SELECT published_by, published_by_agent FROM course_versions ORDER BY version") == [
            (editor, None), (None, "ci")]

        doc = valid_course_doc(COURSE)
        doc["items"][0]["correctIndex"] = 9
        store.put(f"courses/{COURSE}/course.json", json.dumps(doc).encode())
        bad = c.post("/functions/v1/publish-course", json={"courseId": COURSE}, headers=agent_headers(org))
        assert bad.status_code == 422
        err = bad.json()["error"]
        assert err["code"] == "invalid_course" and "invalid_correct_index" in err["message"]
        assert err["issues"][0]["code"] == "invalid_correct_index" and err["issues"][0]["itemId"] == doc["items"][0]["id"]
