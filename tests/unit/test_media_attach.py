"""Attachment into course.json (every target type, idempotent, CAS), regeneration keeping media, URL → key
and the completeness report, on local storage (the media_complete asset check run through Dagster is
tests/integration/test_media_attach.py)."""

from __future__ import annotations

import copy
import json
import re

import pytest

from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.media.attach import (
    CourseNotReady,
    TargetMissing,
    apply_attachment,
    attach_to_course,
    key_for_url,
    media_completeness,
)
from ignite_dagster.media.markers import IMAGE_MARKER, merge_attached_media
from ignite_dagster.storage import LocalObjectStore, S3ObjectStore
from ignite_dagster.storage.keys import course_path, media_key
from tests.support.media import attach_every_study_text, water_cycle_course

URL_A = "https://cdn.example/media-library/a.png"
URL_B = "https://cdn.example/media-library/b.png"


@pytest.fixture(scope="module")
def course() -> dict:
    return water_cycle_course("wc-attach")


def markers(doc: dict, section: int) -> list[str]:
    return IMAGE_MARKER.findall(doc["studyTexts"][section]["content"])


def test_study_text_marker_replaced_then_idempotent(course):
    doc = copy.deepcopy(course)
    sid = doc["studyTexts"][0]["id"]
    before = doc["studyTexts"][0]["content"]
    apply_attachment(doc, {"type": "study_text", "sectionId": sid, "markerIndex": 0}, URL_A)
    assert markers(doc, 0) == [URL_A]
    once = copy.deepcopy(doc)
    apply_attachment(doc, {"type": "study_text", "sectionId": sid, "markerIndex": 0}, URL_A)
    assert doc == once
    # only the marker changed
    assert IMAGE_MARKER.sub("[IMAGE:x]", doc["studyTexts"][0]["content"]) == IMAGE_MARKER.sub("[IMAGE:x]", before)


def test_study_text_absent_marker_appends_once(course):
    doc = copy.deepcopy(course)
    sid = doc["studyTexts"][1]["id"]
    target = {"type": "study_text", "sectionId": sid, "markerIndex": 3}
    apply_attachment(doc, target, URL_B)
    apply_attachment(doc, target, URL_B)
    assert markers(doc, 1)[-1] == URL_B and markers(doc, 1).count(URL_B) == 1
    assert doc["studyTexts"][1]["content"].endswith(f"[IMAGE:{URL_B}]")


def test_an_attached_url_is_never_overwritten(course):
    """Concurrent appends can put job A's image at the index job B names: B appends, A's image stays."""
    doc = copy.deepcopy(course)
    sid = doc["studyTexts"][0]["id"]
    apply_attachment(doc, {"type": "study_text", "sectionId": sid, "markerIndex": 0}, URL_A)
    apply_attachment(doc, {"type": "study_text", "sectionId": sid, "markerIndex": 0}, URL_B)
    assert markers(doc, 0) == [URL_A, URL_B]


def test_item_stimulus_and_option_media(course):
    doc = copy.deepcopy(course)
    item = doc["items"][2]
    apply_attachment(doc, {"type": "item_stimulus", "itemId": item["id"]}, URL_A, alt="a cloud")
    assert item["stimulus"] == {"type": "image", "url": URL_A, "alt": "a cloud"}
    apply_attachment(doc, {"type": "item_option", "itemId": item["id"], "optionIndex": 2}, URL_B, alt="rain")
    apply_attachment(doc, {"type": "item_option", "itemId": item["id"], "optionIndex": 2}, URL_B, alt="rain")
    assert len(item["optionMedia"]) == len(item["options"])
    assert item["optionMedia"][2] == {"type": "image", "url": URL_B, "alt": "rain"}
    assert [m for k, m in enumerate(item["optionMedia"]) if k != 2] == [None] * (len(item["options"]) - 1)


@pytest.mark.parametrize("target", [
    {"type": "study_text", "sectionId": "no-such-section", "markerIndex": 0},
    {"type": "item_stimulus", "itemId": 9999},
    {"type": "item_option", "itemId": 0, "optionIndex": 7},
])
def test_missing_target_is_reported(course, target):
    with pytest.raises(TargetMissing):
        apply_attachment(copy.deepcopy(course), target, URL_A)


def test_attach_needs_the_course_and_writes_by_cas(tmp_path, course):
    store = LocalObjectStore(tmp_path)
    target = {"type": "item_stimulus", "itemId": course["items"][0]["id"]}
    with pytest.raises(CourseNotReady):
        attach_to_course(store, "wc-attach", target, URL_A)
    write_course_json(store, course)
    v1 = store.get(course_path("wc-attach")).version
    res = attach_to_course(store, "wc-attach", target, URL_A)
    assert res.version != v1 and res.doc["items"][0]["stimulus"]["url"] == URL_A
    again = attach_to_course(store, "wc-attach", target, URL_A)
    assert again.version == res.version  # idempotent: no second write


def test_regeneration_keeps_every_kind_of_attached_media(tmp_path, course):
    store = LocalObjectStore(tmp_path)
    write_course_json(store, course)
    s0, s1 = course["studyTexts"][0]["id"], course["studyTexts"][1]["id"]
    it0, it1 = course["items"][0]["id"], course["items"][1]["id"]
    attach_to_course(store, "wc-attach", {"type": "study_text", "sectionId": s0, "markerIndex": 0}, URL_A)
    attach_to_course(store, "wc-attach", {"type": "study_text", "sectionId": s1, "markerIndex": 1}, URL_B)  # appended
    attach_to_course(store, "wc-attach", {"type": "item_stimulus", "itemId": it0}, URL_A)
    attach_to_course(store, "wc-attach", {"type": "item_option", "itemId": it1, "optionIndex": 1}, URL_B)

    doc, _, _ = write_course_json(store, copy.deepcopy(course))  # a regeneration from the same pack
    assert markers(doc, 0) == [URL_A]
    assert markers(doc, 1)[1:] == [URL_B] and markers(doc, 1)[0] == markers(course, 1)[0]  # marker 0 still pending
    assert doc["items"][0]["stimulus"]["url"] == URL_A
    assert doc["items"][1]["optionMedia"][1]["url"] == URL_B
    # regenerating again changes nothing: no URL is duplicated
    doc2, _, _ = write_course_json(store, copy.deepcopy(course))
    assert doc2 == doc


def test_merge_rules_on_their_own(course):
    old = copy.deepcopy(course)
    old["studyTexts"][0]["content"] = IMAGE_MARKER.sub(f"[IMAGE:{URL_A}]", old["studyTexts"][0]["content"]) + f"\n[IMAGE:{URL_B}]"
    new = copy.deepcopy(course)
    new["studyTexts"][0]["content"] = "[SECTION:Short]\nNo markers any more."
    new["items"][0]["options"] = new["items"][0]["options"][:3]
    old["items"][0]["optionMedia"] = [None, None, None, {"type": "image", "url": URL_A}]
    old["items"][0]["stimulus"] = {"type": "image", "url": URL_B}
    merged = merge_attached_media(new, old)
    assert IMAGE_MARKER.findall(merged["studyTexts"][0]["content"]) == [URL_A, URL_B]  # appended, nothing lost
    assert "optionMedia" not in merged["items"][0]  # option 3 no longer exists
    assert merged["items"][0]["stimulus"]["url"] == URL_B
    assert merge_attached_media(copy.deepcopy(course), None) == course


def test_key_for_url_round_trips_on_every_backend(tmp_path):
    stores = [
        LocalObjectStore(tmp_path),
        LocalObjectStore(tmp_path, "https://media.example/storage/v1/object/public"),
        S3ObjectStore("http://127.0.0.1:9", "us-east-1", "k", "s", bucket_prefix="dev-"),
        S3ObjectStore("http://127.0.0.1:9", "us-east-1", "k", "s", public_base_url="https://x.supabase.co/storage/v1/object/public"),
    ]
    key = media_key("wc", {"type": "study_text", "sectionId": "rain & snow"}, "0b9c2f4e-8a8e-4d1b-9b53-3f7c1f0a2e11", "png")
    assert key == "media-library/courses/wc/study-texts/rain-snow/0b9c2f4e-8a8e-4d1b-9b53-3f7c1f0a2e11.png"
    for store in stores:
        assert key_for_url(store, store.public_url(key)) == key
        assert key_for_url(store, store.public_url("courses/wc/course.json")) == "courses/wc/course.json"
        assert key_for_url(store, "https://elsewhere.example/x.png") is None


def test_completeness_report(tmp_path, course):
    store = LocalObjectStore(tmp_path)
    assert not media_completeness(store, "wc-attach").course_found
    write_course_json(store, course)
    pending = media_completeness(store, "wc-attach")
    assert not pending.passed and len(pending.pending_markers) == 2
    attach_every_study_text(store, course, "wc-attach")
    ok = media_completeness(store, "wc-attach")
    assert ok.passed and ok.urls == 2 and ok.markers == 2
    stim = {"type": "item_stimulus", "itemId": course["items"][0]["id"]}
    assert media_completeness(store, "wc-attach", [stim]).missing_targets  # a done job whose image is not there
    store.delete(f"media-library/courses/wc-attach/study-texts/{course['studyTexts'][0]['id']}/img.png")
    gone = media_completeness(store, "wc-attach")
    assert not gone.passed and len(gone.unresolved) == 1 and "no object" in gone.unresolved[0]


def test_study_text_url_has_no_closing_bracket(tmp_path):
    """A URL inside [IMAGE:…] must not end the marker early: public URLs are percent-encoded."""
    store = LocalObjectStore(tmp_path, "https://m.example/p")
    url = store.public_url("media-library/courses/c/study-texts/s]x/a.png")
    assert "]" not in url and re.fullmatch(r"[^\]]+", url)
    assert json.loads(json.dumps(url)) == url
