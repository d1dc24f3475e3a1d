"""One test per validation code: each builds a clean course, breaks one thing, and expects that code."""

from __future__ import annotations

import copy

import pytest

from ignite_dagster.course.issues import ERROR_CODES, WARNING_CODES, Issue
from ignite_dagster.course.model import Course, parse_course
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.course.validation import ContentGates, validate_course

STUDY = (
    "[SECTION:Adding]\nWhen we add, we put two groups together and count them all. "
    "Three apples and two apples make five apples. We write this as three plus two equals five."
)


def base() -> dict:
    return {
        "id": "add-demo",
        "title": "Adding",
        "subject": "addition",
        "gradeBand": "K-2",
        "groups": [{"id": 0, "name": "Sums"}],
        "levels": [{"id": 1, "title": "All", "start": 0, "end": 1}],
        "items": [
            {"id": 0, "text": "3 + 4 = [blank]", "groupId": 0, "clusterId": "g0-c1", "variant": "1", "mode": "options",
             "options": ["7", "6", "8", "1"], "correctIndex": 0, "hint": "Count on.", "explain": "3 + 4 = 7."},
            {"id": 1, "text": "5 + 5 = [blank]", "groupId": 0, "clusterId": "g0-c1", "variant": "2", "mode": "numeric",
             "answer": 10},
        ],
        "studyTexts": [{"id": "adding", "title": "Adding", "content": STUDY, "order": 0}],
    }


def skeleton() -> Skeleton:
    from ignite_dagster.course.model import Group, Level

    return Skeleton(
        course_id="add-demo", subject="addition", grade_band="K-2", mode="options",
        groups=[Group(id=0, name="Sums")], levels=[Level(id=1, title="All", start=0, end=1)],
        items=[
            SkeletonItem(id=0, groupId=0, clusterId="g0-c1", variant="1", mode="options",
                         meta=ArithmeticMeta(op="add", a=3, b=4, expected=7)),
            SkeletonItem(id=1, groupId=0, clusterId="g0-c1", variant="2", mode="numeric",
                         meta=ArithmeticMeta(op="add", a=5, b=5, expected=10)),
        ],
        study_text_slots=[StudyTextSlot(id="adding", order=0)],
    )


def load(data: dict) -> Course:
    course, issues = parse_course(data)
    assert course is not None, issues
    return course


def codes(issues: list[Issue]) -> set[str]:
    return {i.code for i in issues}


def check(mutate, sk: Skeleton | None = None, gates: ContentGates | None = None) -> list[Issue]:
    data = copy.deepcopy(base())
    mutate(data)
    return validate_course(load(data), sk, gates)


def test_clean_course_has_no_issues():
    assert validate_course(load(base()), skeleton(), ContentGates(banned_terms=["dumb"], reading_level_max=6)) == []


def test_codes_are_the_contract():
    assert set(ERROR_CODES) == {
        "schema_error", "unfilled_text", "invalid_blank_count", "invalid_options_count", "invalid_correct_index",
        "math_incorrect", "missing_answer", "unexpected_options", "unfilled_content", "banned_term", "readability",
        # the quality gates (tests/unit/test_quality_gates.py)
        "duplicate_options", "duplicate_group_names", "empty_group_name", "duplicate_item_texts", "off_subject",
        "numeric_answer_mismatch", "answer_length_giveaway",
    }
    assert set(WARNING_CODES) == {"missing_section_markers", "reading_level_off_band"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(id="Bad Id!"),
        lambda d: d.update(title="x" * 121),
        lambda d: d["levels"][0].update(start=1, end=0),
        lambda d: d["items"][0].update(variant="4"),
        lambda d: d["items"][0].update(groupId=9),
        lambda d: d["items"][1].update(id=0),
        lambda d: d["items"][0].update(hint="h" * 201),
    ],
    ids=["course-id", "title-length", "level-range", "variant", "group-ref", "duplicate-id", "hint-length"],
)
def test_schema_error(mutate):
    issues = check(mutate)
    assert "schema_error" in codes(issues)
    assert all(i.severity == "error" for i in issues if i.code == "schema_error")


def test_schema_error_for_a_skeleton_item_left_out():
    issues = check(lambda d: d["items"].pop(1), skeleton())
    assert [(i.code, i.item_id) for i in issues] == [("schema_error", 1)]  # repairable: it names the item


def test_unfilled_text():
    issues = check(lambda d: d["items"][0].update(explain="__FILL__"))
    assert [(i.code, i.item_id, i.field) for i in issues] == [("unfilled_text", 0, "explain")]


def test_invalid_blank_count_none_and_two():
    assert [(i.code, i.item_id) for i in check(lambda d: d["items"][0].update(text="3 + 4 = 7"))] == [("invalid_blank_count", 0)]
    two = check(lambda d: d["items"][0].update(text="[blank] + 4 = [blank]"))
    assert codes(two) == {"invalid_blank_count"}


def test_a_lone_underscore_counts_as_the_blank():
    assert check(lambda d: d["items"][0].update(text="3 + 4 = _")) == []


def test_invalid_options_count():
    issues = check(lambda d: d["items"][0].update(options=["7", "6"], correctIndex=0))
    assert codes(issues) == {"invalid_options_count"}
    five = check(lambda d: d["items"][0].update(options=["7", "6", "8", "1", "2"]))
    assert codes(five) == {"invalid_options_count"}


def test_invalid_correct_index():
    assert codes(check(lambda d: d["items"][0].update(correctIndex=4))) == {"invalid_correct_index"}
    assert codes(check(lambda d: d["items"][0].pop("correctIndex"))) == {"invalid_correct_index"}


def test_math_incorrect_options_and_numeric():
    wrong_option = check(lambda d: d["items"][0].update(correctIndex=1), skeleton())
    assert [(i.code, i.item_id) for i in wrong_option] == [("math_incorrect", 0)]
    wrong_answer = check(lambda d: d["items"][1].update(answer=11), skeleton())
    assert [(i.code, i.item_id) for i in wrong_answer] == [("math_incorrect", 1)]
    not_a_number = check(lambda d: d["items"][0].update(options=["seven", "6", "8", "1"]), skeleton())
    assert codes(not_a_number) == {"math_incorrect"}


def test_math_is_only_checked_against_a_skeleton():
    assert check(lambda d: d["items"][1].update(answer=11)) == []


def test_missing_answer():
    assert [(i.code, i.item_id) for i in check(lambda d: d["items"][1].pop("answer"))] == [("missing_answer", 1)]


def test_unexpected_options():
    issues = check(lambda d: d["items"][1].update(options=["10", "11", "12"]))
    assert [(i.code, i.item_id) for i in issues] == [("unexpected_options", 1)]


def test_unfilled_content_empty_and_missing_slot():
    empty = check(lambda d: d["studyTexts"][0].update(content="   "))
    assert codes(empty) == {"unfilled_content"} and empty[0].item_id is None
    missing = check(lambda d: d.pop("studyTexts"), skeleton())
    assert codes(missing) == {"unfilled_content"}


def test_banned_term_whole_word_case_insensitive():
    gates = ContentGates(banned_terms=["dumb", "just guess"])
    issues = check(lambda d: d["items"][0].update(hint="Don't JUST GUESS, count on."), gates=gates)
    assert [(i.code, i.item_id, i.field) for i in issues] == [("banned_term", 0, "hint")]
    in_text = check(lambda d: d["studyTexts"][0].update(content=STUDY + " Dumb mistakes happen."), gates=gates)
    assert codes(in_text) == {"banned_term"}
    assert check(lambda d: d["items"][0].update(hint="A dumbbell is heavy."), gates=gates) == []


def test_readability_above_the_pack_maximum():
    dense = (
        "[SECTION:Theory]\nCommutativity, associativity and distributivity characterize fundamental algebraic "
        "relationships underpinning computational methodologies, necessitating comprehensive conceptualization "
        "of representational equivalences throughout mathematical investigations."
    )
    issues = check(lambda d: d["studyTexts"][0].update(content=dense), gates=ContentGates(reading_level_max=6))
    assert codes(issues) == {"readability"}
    assert check(lambda d: None, gates=ContentGates(reading_level_max=6)) == []


def test_duplicate_options_is_an_error_that_stops_shipping():
    issues = check(lambda d: d["items"][0].update(options=["7", "6", "6", "1"]))
    assert [(i.code, i.severity, i.item_id) for i in issues] == [("duplicate_options", "error", 0)]


def test_missing_section_markers_is_a_warning():
    issues = check(lambda d: d["studyTexts"][0].update(content=STUDY.replace("[SECTION:Adding]\n", "")))
    assert [(i.code, i.severity) for i in issues] == [("missing_section_markers", "warning")]


def test_schema_check_of_a_stored_file_reports_parse_errors_and_skips_pack_and_quality_gates():
    """``schema_issues`` is the one course schema check (the asset check and the demo's verdict): a file
    that is not a Course v2 gets its parse errors, a Course v2 only its structural issues."""
    from ignite_dagster.course.validation import schema_issues

    assert schema_issues(base()) == []
    not_a_course = copy.deepcopy(base())
    del not_a_course["items"]
    assert codes(schema_issues(not_a_course)) == {"schema_error"}
    bad_index = copy.deepcopy(base())
    bad_index["items"][0]["correctIndex"] = 7
    assert "invalid_correct_index" in codes(schema_issues(bad_index))
