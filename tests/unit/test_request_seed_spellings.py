"""The original system's payload spellings in the one request model (course/request.py): the grade mapping
and the camelCase aliases, for the strict HTTP payload and the lenient Python/CLI model alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ignite_dagster.api.schemas import EnqueuePayload
from ignite_dagster.course.request import CourseRequest

BASE = {"course_id": "seed-course", "subject": "Addition"}


@pytest.mark.parametrize("model", [EnqueuePayload, CourseRequest])
def test_a_band_in_grade_is_the_band_and_no_single_grade(model):
    both = model(**BASE, grade="3-5", grade_band="3-5")
    alone = model(**BASE, grade="6-8")
    assert (both.grade_band, both.grade) == ("3-5", None)
    assert (alone.grade_band, alone.grade) == ("6-8", None)
    assert model(**BASE, grade="k-2", grade_band="K-2").grade_band == "K-2"  # the same band, spelled otherwise
    assert both.fingerprint() == model(**BASE, grade_band="3-5").fingerprint()  # the same request


@pytest.mark.parametrize("model", [EnqueuePayload, CourseRequest])
def test_a_single_grade_still_implies_its_band(model):
    req = model(**BASE, grade="4")
    assert (req.grade_band, req.grade) == ("3-5", "4")


@pytest.mark.parametrize("model", [EnqueuePayload, CourseRequest])
@pytest.mark.parametrize("fields,named", [
    ({"grade": "3-5", "grade_band": "6-8"}, "grade '3-5'"),
    ({"gradeBand": "K-2", "grade_band": "3-5"}, "gradeBand 'K-2'"),
    ({"grade_band": "3-5", "courseId": "other"}, "courseId 'other'"),
    ({"grade_band": "3-5", "itemsPerGroup": 4, "items_per_group": 6}, "itemsPerGroup '4'"),
])
def test_spellings_that_disagree_are_refused_naming_the_field(model, fields, named):
    with pytest.raises(ValidationError) as info:
        model(**{**BASE, **fields})
    assert named in str(info.value)


@pytest.mark.parametrize("model", [EnqueuePayload, CourseRequest])
@pytest.mark.parametrize("option", ["College", "All"])
def test_the_pages_college_and_all_are_refused_naming_the_grade(model, option):
    with pytest.raises(ValidationError) as info:
        model(**BASE, grade=option, grade_band=option)
    fields = {".".join(str(p) for p in e["loc"][:1]) for e in info.value.errors()}
    assert fields == {"grade", "grade_band"}
    assert "'College' and 'All' are not served" in str(info.value)


@pytest.mark.parametrize("model", [EnqueuePayload, CourseRequest])
def test_camel_case_aliases_are_their_fields(model):
    req = model(courseId="camel-course", subject="Addition", gradeBand="3-5", itemsPerGroup=4, studyText="Apples.")
    assert (req.course_id, req.grade_band, req.items_per_group, req.study_text) == ("camel-course", "3-5", 4, "Apples.")
    same = model(course_id="camel-course", courseId="camel-course", subject="Addition", grade_band="3-5")
    assert same.course_id == "camel-course"


def test_the_lenient_model_reads_a_dashed_band_in_grade():
    assert CourseRequest(**BASE, grade="3 \u2013 5").grade_band == "3-5"
    assert CourseRequest(**BASE, grade="Grade 7").grade == "7"


def test_the_strict_payload_keeps_refusing_a_band_with_a_trailing_newline_in_grade():
    with pytest.raises(ValidationError, match="grade"):
        EnqueuePayload(**BASE, grade="3-5\n")
