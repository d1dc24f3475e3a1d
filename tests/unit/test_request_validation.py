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


@pytest.mark.parametrize("subject,rule", [("", "at least 1 character"), ("   ", "a visible character"),
                                          ("two\nlines", "one line"), ("nul\x00", "one line")])
def test_bad_subject(subject, rule):
    msg = errors_for(subject=subject)
    assert "subject" in msg and rule in msg


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
    assert CourseRequest(course_id="x", subject="s", grade_band="0-2").grade_band == "K-2"
    assert CourseRequest(course_id="x", subject="s", grade="k").grade_band == "K-2"
    assert CourseRequest(course_id="x", subject="s", grade="Grade 7").grade == "7"
    assert CourseRequest(course_id="x", subject="s", grade=4).grade_band == "3-5"
    assert CourseRequest(course_id="x", subject="s", grade=4).grade == "4"


def test_locale_is_a_bcp47_tag_in_canonical_case():
    for given, canonical in [("fr", "fr"), ("pt-br", "pt-BR"), ("pt_BR", "pt-BR"), ("zh-hant-tw", "zh-Hant-TW"),
                             ("es-419", "es-419")]:
        assert CourseRequest(course_id="x", subject="s", grade="3", locale=given).locale == canonical
    for bad in ("french", "f", "en-", "en US", "e1"):
        assert "BCP 47" in errors_for(locale=bad)


@pytest.mark.parametrize("band", ["3 to 5", "5-3", "K-14", "college"])
def test_bad_grade_band(band):
    assert "grade_band" in errors_for(grade_band=band)


def test_bad_grade():
    assert "grade must be 'K' or a number 1..12" in errors_for(grade="13")
    assert "grade" in errors_for(grade=True) and "grade" in errors_for(grade=13)


# Python's `$` also matches before a final newline; every pattern here is a full match instead, and a
# trailing newline is refused — never stripped into a different value.
@pytest.mark.parametrize("field,value", [("course_id", "abc\n"), ("grade_band", "3-5\n"), ("grade", "4\n"),
                                         ("locale", "fr\n"), ("subject", "addition\n"), ("course_id", "abc\r\n"),
                                         ("grade", "\n4")])
def test_trailing_newline_is_refused_not_stripped(field, value):
    msg = errors_for(**{field: value})
    assert field in msg


def test_the_published_patterns_are_full_matches():
    """Every pattern the schema publishes is anchored for ECMA-262 (where `$` is the end of input)."""
    def patterns(node):
        if isinstance(node, dict):
            yield from ([node["pattern"]] if isinstance(node.get("pattern"), str) else [])
            for value in node.values():
                yield from patterns(value)
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    found = list(patterns(CourseRequest.model_json_schema()))
    assert len(found) == 7, found  # course_id, subject, grade_band, grade, locale, item_images, tags
    assert all(p.startswith("^(?:") and p.endswith(")$") for p in found), found


def test_fingerprint_is_the_canonical_request():
    a = CourseRequest(course_id="x", subject="Addition", grade=4)
    same = CourseRequest(course_id="x", subject=" Addition ", grade="4", grade_band="3-5", locale="en", mode="options")
    assert a.fingerprint() == same.fingerprint()
    for change in ({"notes": "fruit"}, {"study_text": "Apples."}, {"locale": "fr"}, {"groups_count": 2},
                   {"items_per_group": 5}, {"grade": 5}):
        other = CourseRequest(**{"course_id": "x", "subject": "Addition", "grade": 4, **change})
        assert other.fingerprint() != a.fingerprint(), change


def test_columns_are_every_field_but_the_texts_stored_apart():
    assert set(CourseRequest.column_names()) == set(CourseRequest.model_fields) - {"notes", "study_text"}
    req = CourseRequest(course_id="x", subject="s", grade=4, notes="n", study_text="  ")
    assert req.stored_apart() == {"notes": "n"} and req.study_text is None


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
