"""One test per normalisation rule (course-format.md), plus determinism and skeleton enforcement."""

from __future__ import annotations

from ignite_dagster.course.model import Course, Group, Item, Level, parse_course
from ignite_dagster.course.normalize import (
    dedupe_options,
    insert_missing_blank,
    normalize_blanks,
    normalize_course,
    normalize_item,
)
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem
from ignite_dagster.course.validation import validate_course

ADD = ArithmeticMeta(op="add", a=7, b=5, expected=12)


def item(**kw) -> Item:
    data = {"id": 0, "text": "7 + 5 = [blank]", "groupId": 0, "clusterId": "c1", "variant": "1", "mode": "options",
            "options": ["12", "11", "13", "2"], "correctIndex": 0}
    data.update(kw)
    return Item.model_validate(data)


# --- underscores and blank spellings


def test_underscore_runs_become_one_blank():
    assert normalize_blanks("The sun ____ the water.") == "The sun [blank] the water."
    assert normalize_blanks("7 + 5 = _") == "7 + 5 = [blank]"


def test_fill_token_is_not_taken_for_a_blank():
    assert normalize_blanks("__FILL__ and snake_case") == "__FILL__ and snake_case"


def test_blank_spellings_are_unified():
    assert normalize_blanks("7 + 5 = [ BLANK ]") == "7 + 5 = [blank]"


# --- several blanks


def test_adjacent_blanks_collapse_to_one():
    assert normalize_blanks("Water ___ ___ into vapor.") == "Water [blank] into vapor."
    assert normalize_blanks("Water [blank][blank] into vapor.") == "Water [blank] into vapor."


def test_separate_blanks_are_left_for_repair():
    # "[blank] + 4 = [blank]" has two distinct gaps: merging them would change the question.
    assert normalize_blanks("[blank] + 4 = [blank]") == "[blank] + 4 = [blank]"


# --- inserting a missing blank


def test_equals_question_mark_becomes_blank():
    assert insert_missing_blank("7 + 5 = ?", ADD) == "7 + 5 = [blank]"


def test_trailing_equals_gets_blank():
    assert insert_missing_blank("7 + 5 =", None) == "7 + 5 = [blank]"


def test_skeleton_expression_gets_blank_after_it():
    assert insert_missing_blank("Add 7 + 5", ADD) == "Add 7 + 5 = [blank]"
    assert insert_missing_blank("Work out 7 + 5.", ADD) == "Work out 7 + 5 = [blank]"


def test_trailing_question_gets_answer_blank():
    assert insert_missing_blank("What is 7 plus 5?", ADD) == "What is 7 plus 5? [blank]"


def test_ambiguous_text_is_left_alone():
    assert insert_missing_blank("Seven and five make twelve.", ADD) == "Seven and five make twelve."
    # the expression is not at the end: where the answer goes is not certain
    assert insert_missing_blank("7 + 5 is the sum of two numbers", ADD) == "7 + 5 is the sum of two numbers"


def test_text_with_a_blank_is_untouched():
    assert insert_missing_blank("[blank] = 7 + 5?", ADD) == "[blank] = 7 + 5?"


# --- numeric items


def test_numeric_item_loses_options():
    out = normalize_item(item(mode="numeric", answer=12))
    assert out.options is None and out.correct_index is None and out.answer == 12


def test_numeric_item_takes_answer_from_its_chosen_option():
    out = normalize_item(item(mode="numeric"))
    assert out.answer == 12 and out.options is None


# --- trimming


def test_text_and_options_are_trimmed():
    out = normalize_item(item(text="  7 + 5 = [blank]  ", options=[" 12 ", "11", "13 ", "2"], hint=" Count on. "))
    assert out.text == "7 + 5 = [blank]" and out.options == ["12", "11", "13", "2"] and out.hint == "Count on."


# --- de-duplicating options


def test_duplicates_removed_and_correct_index_repointed():
    out = dedupe_options(item(options=["11", "11", "13", "12", "2"], correctIndex=3))
    assert out.options == ["11", "13", "12", "2"] and out.correct_index == 2
    assert out.options[out.correct_index] == "12"


def test_correct_answer_duplicated_keeps_pointing_at_it():
    out = dedupe_options(item(options=["12", "11", "12", "13"], correctIndex=2))
    assert out.options == ["12", "11", "13"] and out.correct_index == 0


def test_no_dedupe_when_fewer_than_three_would_remain():
    before = item(options=["12", "12", "11"], correctIndex=0)
    assert dedupe_options(before) == before


def test_no_dedupe_without_a_valid_correct_index():
    before = item(options=["12", "11", "11", "13"], correctIndex=7)
    assert dedupe_options(before) == before


# --- whole course


def _course(items: list[dict]) -> Course:
    course, issues = parse_course({
        "id": "c", "title": "  Adding  ", "subject": "addition", "gradeBand": "K-2",
        "groups": [{"id": 0, "name": "Model's name"}], "levels": [{"id": 1, "title": "x", "start": 0, "end": 0}],
        "items": items,
        "studyTexts": [{"id": "s", "title": " T ", "content": "\n[SECTION:A]\nText.\n", "order": 0}],
    })
    assert course is not None, issues
    return course


def test_skeleton_structure_is_enforced():
    sk = Skeleton(
        course_id="add-7", subject="addition", grade_band="K-2", mode="options",
        groups=[Group(id=0, name="Sums")], levels=[Level(id=1, title="All", start=0, end=0)],
        items=[SkeletonItem(id=0, groupId=0, clusterId="g0-c1", variant="1", mode="options", meta=ADD)],
    )
    course = _course([
        {"id": 0, "text": "7 + 5 = ?", "groupId": 3, "clusterId": "zz", "variant": "3", "mode": "numeric",
         "options": ["12", "1", "2"], "correctIndex": 0, "_meta": {"op": "add"}},
        {"id": 99, "text": "extra [blank]", "groupId": 0, "clusterId": "c", "variant": "1", "mode": "options"},
    ])
    out = normalize_course(course, sk)
    assert out.id == "add-7"
    assert [i.id for i in out.items] == [0]  # items outside the skeleton are dropped
    it = out.items[0]
    assert (it.group_id, it.cluster_id, it.variant, it.mode) == (0, "g0-c1", "1", "options")
    assert it.text == "7 + 5 = [blank]" and it.options == ["12", "1", "2"]
    assert "_meta" not in it.model_dump(by_alias=True)
    assert out.groups[0].name == "Model's name"  # names may be the model's; ids are the skeleton's
    assert out.title == "Adding" and out.study_texts[0].content == "[SECTION:A]\nText." and out.study_texts[0].title == "T"
    assert validate_course(out, sk) == []


def test_normalisation_is_deterministic_and_idempotent():
    course = _course([{"id": 0, "text": " 7 + 5 = ___ ", "groupId": 0, "clusterId": "c", "variant": "1",
                       "mode": "options", "options": ["12", "12", "11", "13"], "correctIndex": 1}])
    once = normalize_course(course)
    assert normalize_course(course).to_json_bytes() == once.to_json_bytes()
    assert normalize_course(once).to_json_bytes() == once.to_json_bytes()
