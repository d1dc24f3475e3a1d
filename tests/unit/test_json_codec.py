"""The stored JSON encodings (``storage/json_codec``): the bytes json.dumps wrote before, for every
document we store, and what orjson refuses still encoded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ignite_dagster.storage.cas import dump_json
from ignite_dagster.storage.json_codec import dump_compact, dump_document, load
from tests.support.courses import pack_course


@pytest.fixture(scope="module")
def course_doc() -> dict:
    return pack_course({"course_id": "add-3-5", "subject": "addition", "grade_band": "3-5",
                        "items_per_group": 12})


def test_a_stored_course_is_the_bytes_json_dumps_wrote(course_doc):
    doc = {**course_doc, "title": "Brüche – ½ and ¾ \"quoted\" \\ \n", "ratio": 0.25, "big": 10**15}
    assert dump_json(doc) == json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")
    assert dump_document(doc, sort_keys=True) == json.dumps(doc, ensure_ascii=False, indent=2,
                                                            sort_keys=True).encode("utf-8")
    assert dump_compact(doc) == json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert load(dump_json(doc)) == doc


def test_what_orjson_refuses_is_still_encoded_with_the_same_layout():
    doc = {"huge": 2**70, 3: "an int key", "nested": {"a": [1, 2]}}
    assert dump_document(doc) == json.dumps(doc, ensure_ascii=False, indent=2).encode()
    assert dump_compact(doc, sort_keys=False) == json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def test_an_artifact_default_applies_to_what_json_cannot_hold():
    doc = {"cost": Decimal("0.0125"), "at": datetime(2026, 12, 3, tzinfo=UTC)}
    assert load(dump_document(doc, default=str))["cost"] == "0.0125"
    assert dump_document(doc, default=str) == json.dumps(doc, ensure_ascii=False, indent=2, default=str).encode()


def test_text_that_is_not_json_is_a_value_error():
    with pytest.raises(ValueError):
        load(b"{not json")
    with pytest.raises(ValueError):
        load(b"\xff\xfe")
