"""Item and option images on request, without a database: the target vocabulary, prompts from the item's own
text, and the request refusing images the course cannot have (attaching them, the completeness check and
the route are tests/integration/test_media_targets.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.media.prompts import option_text, question_text
from ignite_dagster.media.targets import UnknownTarget, plan_images
from tests.support.courses import pack_course
from tests.support.media import water_cycle_course

COURSE = "wc-targets"


# -- the vocabulary and the prompts ------------------------------------------------------------------------


def test_specs_expand_to_targets_with_prompts_from_the_item_text():
    doc = water_cycle_course(COURSE)
    items = doc["items"]
    planned = plan_images(doc, ["stimulus:0", "options:1", "stimulus:0"])
    assert [p.target for p in planned] == [
        {"type": "item_stimulus", "itemId": 0},
        *({"type": "item_option", "itemId": 1, "optionIndex": k} for k in range(len(items[1]["options"]))),
    ]
    assert question_text(items[0]) in planned[0].prompt and "[blank]" not in planned[0].prompt
    for k, p in enumerate(planned[1:]):
        assert f'"{option_text(items[1], k)}"' in p.prompt and question_text(items[1]) in p.prompt
    every = plan_images(doc, ["study_texts", "stimulus:all"])
    assert [p.target["type"] for p in every] == ["study_text"] * 2 + ["item_stimulus"] * len(items)


def test_a_spec_naming_what_the_course_lacks_is_refused():
    doc = water_cycle_course(COURSE)
    with pytest.raises(UnknownTarget, match="stimulus:999: the course has no item 999"):
        plan_images(doc, ["stimulus:999"])
    numeric = pack_course({"course_id": "num", "subject": "addition", "grade": "3", "items_per_group": 2, "mode": "numeric"})
    with pytest.raises(UnknownTarget, match="has no answer options"):
        plan_images(numeric, ["options:0"])
    assert plan_images(numeric, ["options:all"]) == []  # "all" means the items that have options


@pytest.mark.parametrize("fields, message", [
    ({"item_images": ["stimulus:3"]}, "set groups_count"),
    ({"item_images": ["stimulus:8"], "groups_count": 2, "items_per_group": 4}, "items 0..7"),
    ({"item_images": ["options:all"], "mode": "numeric"}, "mode numeric has no options"),
    ({"item_images": ["picture:1"]}, "item_images.0"),
])
def test_item_images_the_course_cannot_have_are_refused_at_the_request(fields, message):
    with pytest.raises(ValidationError) as err:
        CourseRequest(course_id="x", subject="water cycle", grade_band="3-5", **fields)
    assert "item_images" in str(err.value) and message in str(err.value)
