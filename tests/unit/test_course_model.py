"""Course v2 model: camelCase round trips, unknown fields preserved, deterministic bytes, coded parse errors."""

from __future__ import annotations

import json

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Course, Item, parse_course


def course_dict() -> dict:
    return {
        "id": "fractions-intro",
        "title": "Fractions — première approche",
        "subject": "fractions",
        "gradeBand": "3-5",
        "locale": "fr",
        "contentVersion": "3",
        "groups": [{"id": 0, "name": "Halves", "color": "#ff8800"}],
        "levels": [{"id": 1, "title": "All", "start": 0, "end": 0, "minScore": 0.8}],
        "items": [
            {
                "id": 0,
                "text": "Half of 8 is [blank].",
                "groupId": 0,
                "clusterId": "c1",
                "variant": "1",
                "mode": "options",
                "options": ["4", "2", "6"],
                "correctIndex": 0,
                "stimulus": {"type": "image", "url": "https://cdn.example/pie.png", "alt": "a pie", "placement": "above", "width": 320},
                "optionMedia": [{"type": "image", "url": "https://cdn.example/4.png"}, None, None],
                "futureField": {"nested": [1, 2]},
            }
        ],
        "studyTexts": [
            {
                "id": "halves",
                "title": "Halves",
                "content": "[SECTION:Halves]\nA half is one of two equal parts.\n[IMAGE:https://cdn.example/half.png]",
                "order": 0,
                "learningObjectives": ["Find half of a number"],
                "metadata": {"difficulty": "beginner", "estimatedReadingTime": 2, "keywords": ["half"]},
            }
        ],
        "generation": {
            "jobId": "9b2f",
            "attempt": 1,
            "strategy": "llm",
            "provider": "openai",
            "model": "gpt-x",
            "promptVersion": "v3",
            "createdAt": "2024-05-01T10:00:00Z",
        },
    }


def test_round_trip_keeps_camel_case_media_and_unknown_fields():
    data = course_dict()
    course, issues = parse_course(data)
    assert issues == [] and course is not None
    assert course.items[0].group_id == 0 and course.items[0].correct_index == 0
    assert course.items[0].stimulus is not None and course.items[0].stimulus.alt == "a pie"
    out = course.to_dict()
    assert out == data  # nothing lost, nothing renamed (stimulus.width, optionMedia, futureField survive)


def test_json_bytes_are_deterministic_sorted_and_utf8():
    a, _ = parse_course(course_dict())
    reordered = dict(reversed(list(course_dict().items())))
    b, _ = parse_course(reordered)
    assert a is not None and b is not None
    assert a.to_json_bytes() == b.to_json_bytes()
    text = a.to_json_bytes().decode("utf-8")
    assert "première" in text and "\\u00e8" not in text  # ensure_ascii=False
    keys = list(json.loads(text).keys())
    assert keys == sorted(keys)
    assert text.startswith('{\n  "contentVersion"')  # indent 2


def test_snake_case_names_are_accepted_and_ints_coerced_for_string_ids():
    item = Item(id=3, text="2 + 2 = [blank]", group_id=0, cluster_id=7, variant=2, mode="numeric", answer=4)
    assert item.cluster_id == "7" and item.variant == "2"
    assert item.model_dump(by_alias=True, exclude_none=True)["clusterId"] == "7"


def test_draft_with_content_problems_still_loads():
    data = course_dict()
    data["items"][0]["options"] = ["only one"]
    data["items"][0]["correctIndex"] = 9
    data["items"][0]["text"] = "no blank here"
    course, issues = parse_course(data)
    assert course is not None and issues == []  # content problems are validation's job


def test_type_errors_become_schema_error_issues_naming_the_item():
    data = course_dict()
    data["items"][0]["text"] = {"not": "a string"}
    del data["title"]
    course, issues = parse_course(data)
    assert course is None
    assert all(i.code == "schema_error" and i.severity == "error" for i in issues)
    by_field = {i.field: i for i in issues}
    assert "title" in by_field and by_field["title"].item_id is None
    assert by_field["items[0].text"].item_id == 0


def test_non_object_is_a_schema_error():
    course, issues = parse_course(["not", "a", "course"])
    assert course is None and [i.code for i in issues] == ["schema_error"]


def test_issue_serialises_with_contract_keys_and_omits_none():
    assert Issue(code="banned_term", severity="error", message="m").model_dump() == {
        "code": "banned_term",
        "severity": "error",
        "message": "m",
    }
    dumped = json.loads(Issue(code="missing_answer", severity="error", message="m", itemId=4, field="answer").model_dump_json())
    assert dumped == {"code": "missing_answer", "severity": "error", "message": "m", "itemId": 4, "field": "answer"}


def test_generation_block_is_optional():
    data = course_dict()
    del data["generation"]
    course = Course.model_validate(data)
    assert "generation" not in course.to_dict()
