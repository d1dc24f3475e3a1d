"""Bad requests fail at the door with messages naming the field and the rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ignite_dagster.course.request import CourseRequest, describe_validation_error

OK = {"course_id": "add-demo", "subject": "Addition", "grade_band": "K-2"}


def errors_for(**changes) -> str:
    with pytest.raises(ValidationError) as exc:
        CourseRequest.model_validate({**OK, **changes})
    return str(exc.value)


def test_valid_request_and_defaults():
    req = CourseRequest.model_validate(OK)
    assert (req.items_per_group, req.mode, req.locale, req.wants_images, req.strategy) == (12, "options", "en", False, None)


def test_unknown_mode():
    msg = errors_for(mode="essay")
    assert "mode" in msg and "'options' or 'numeric'" in msg


@pytest.mark.parametrize("value,rule", [(0, "greater than or equal to 1"), (500, "less than or equal to 100")])
def test_items_per_group_bounds(value, rule):
    msg = errors_for(items_per_group=value)
    assert "items_per_group" in msg and rule in msg


@pytest.mark.parametrize("subject", ["", "   "])
def test_empty_subject(subject):
    msg = errors_for(subject=subject)
    assert "subject" in msg and "at least 1 character" in msg


def test_one_megabyte_of_notes_is_rejected_with_a_short_clear_message():
    with pytest.raises(ValidationError) as exc:
        CourseRequest.model_validate({**OK, "notes": "x" * 1_000_000})
    message = describe_validation_error(exc.value)
    assert "notes" in message and "at most 20000 characters" in message
    assert len(message) < 500  # the input is not echoed back


@pytest.mark.parametrize("course_id", ["Add Demo", "add_demo", "a" * 65, "", "x/y"])
def test_bad_course_id(course_id):
    msg = errors_for(course_id=course_id)
    assert "course_id" in msg and "[a-z0-9-]{1,64}" in msg


def test_grade_or_band_required():
    with pytest.raises(ValidationError, match="one of grade_band .* or grade .* is required"):
        CourseRequest(course_id="x", subject="Addition")


def test_band_normalised_and_derived_from_grade():
    assert CourseRequest(course_id="x", subject="s", grade_band="3–5").grade_band == "3-5"
    assert CourseRequest(course_id="x", subject="s", grade_band="k-2").grade_band == "K-2"
    assert CourseRequest(course_id="x", subject="s", grade="k").grade_band == "K-2"
    assert CourseRequest(course_id="x", subject="s", grade="Grade 7").grade == "7"
    assert CourseRequest(course_id="x", subject="s", grade=4).grade_band == "3-5"


@pytest.mark.parametrize("band", ["3 to 5", "5-3", "K-14", "college"])
def test_bad_grade_band(band):
    assert "grade_band" in errors_for(grade_band=band)


def test_bad_grade():
    assert "grade must be 'K' or a number 1..12" in errors_for(grade="13")


def test_unknown_fields_are_rejected():
    assert "Extra inputs are not permitted" in errors_for(colour="red")


@pytest.mark.parametrize(
    "field,value",
    [("levels_count", 0), ("levels_count", 21), ("study_texts_count", -1), ("groups_count", 13), ("strategy", "magic")],
)
def test_other_bounds(field, value):
    assert field in errors_for(**{field: value})


def test_study_text_limit():
    assert "at most 50000 characters" in errors_for(study_text="y" * 50_001)
