"""The quality gates (``course/quality.py``): each gate passes a good course and stops a bad one; every
shipped pack passes them all; the figures and the preview say what a reviewer needs."""

from __future__ import annotations

import copy
import json

import pytest

from ignite_dagster.course.issues import QUALITY_GATE_CODES, Issue
from ignite_dagster.course.model import Course, parse_course
from ignite_dagster.course.normalize import normalize_course
from ignite_dagster.course.quality import QualityThresholds, course_preview, quality_figures, subject_scan
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem
from ignite_dagster.course.validation import is_quality_failure, validate_course
from tests.unit.test_packs import PACKS, compile_for, modes_of

Q = QualityThresholds()
STUDY = (
    "[SECTION:Inside a volcano]\nA volcano is an opening in the crust of the Earth. Hot melted rock called magma "
    "rises from deep below. When magma reaches the surface it is called lava.\n"
    "[SECTION:Eruptions]\nAn eruption happens when pressure builds up under the ground. Gas and ash shoot into the "
    "sky and lava flows down the sides of the mountain."
)


def good() -> dict:
    """A small course on volcanoes that passes every gate."""
    return {
        "id": "volcanoes-demo", "title": "Volcanoes and eruptions", "subject": "volcanoes", "gradeBand": "3-5",
        "groups": [{"id": 0, "name": "What a volcano is"}, {"id": 1, "name": "How eruptions happen"}],
        "levels": [{"id": 1, "title": "All", "start": 0, "end": 3}],
        "items": [
            {"id": 0, "text": "Melted rock under a volcano is called [blank].", "groupId": 0, "clusterId": "g0-c1",
             "variant": "1", "mode": "options", "options": ["magma", "sand", "ice", "clay"], "correctIndex": 0},
            {"id": 1, "text": "When magma reaches the surface it is called [blank].", "groupId": 0,
             "clusterId": "g0-c1", "variant": "2", "mode": "options", "options": ["lava", "rain", "soil", "salt"],
             "correctIndex": 0},
            {"id": 2, "text": "An eruption starts when [blank] builds up under the ground.", "groupId": 1,
             "clusterId": "g1-c1", "variant": "1", "mode": "options",
             "options": ["pressure", "water", "grass", "light"], "correctIndex": 0},
            {"id": 3, "text": "Gas and [blank] shoot into the sky in an eruption.", "groupId": 1, "clusterId": "g1-c1",
             "variant": "2", "mode": "options", "options": ["ash", "snow", "fish", "wood"], "correctIndex": 0},
        ],
        "studyTexts": [{"id": "volcanoes", "title": "How volcanoes work", "content": STUDY, "order": 0}],
    }


def load(data: dict) -> Course:
    course, issues = parse_course(data)
    assert course is not None, issues
    return course


def gate_issues(mutate=None, skeleton: Skeleton | None = None, thresholds: QualityThresholds = Q) -> list[Issue]:
    data = copy.deepcopy(good())
    if mutate is not None:
        mutate(data)
    return [i for i in validate_course(load(data), skeleton, None, thresholds) if i.code in QUALITY_GATE_CODES]


def found(issues: list[Issue]) -> list[tuple[str, int | None]]:
    return [(i.code, i.item_id) for i in issues]


def test_the_good_course_passes_every_gate():
    assert validate_course(load(good()), None, None, Q) == []


def test_duplicate_options_stop_an_item():
    issues = gate_issues(lambda d: d["items"][1].update(options=["lava", "Lava ", "soil", "salt"]))
    assert found(issues) == [("duplicate_options", 1)] and issues[0].severity == "error"


def test_repeated_group_names_stop_the_course():
    issues = gate_issues(lambda d: d["groups"][1].update(name="what a  VOLCANO is"))
    assert found(issues) == [("duplicate_group_names", None)] and issues[0].field == "groups[1].name"


def test_a_blank_group_name_stops_the_course():
    assert found(gate_issues(lambda d: d["groups"][0].update(name="   "))) == [("empty_group_name", None)]


def test_the_same_item_text_twice_in_a_group_stops_the_later_item():
    same = "When magma reaches the surface, it is called [blank]!"
    assert found(gate_issues(lambda d: d["items"][1].update(text=same.replace(",", "").lower()))) == []
    issues = gate_issues(lambda d: d["items"][0].update(text=same))
    assert found(issues) == [("duplicate_item_texts", 1)]
    # the same text in another group is another question's context, not a repeat
    assert found(gate_issues(lambda d: d["items"][2].update(text=d["items"][0]["text"]))) == []


def test_an_item_that_never_names_the_subject_nor_its_study_texts_words_is_off_subject():
    issues = gate_issues(lambda d: d["items"][3].update(text="A healthy breakfast gives you [blank].",
                                                        options=["energy", "homework", "shoes", "music"]))
    assert found(issues) == [("off_subject", 3)]
    # naming a word of the subject is enough ("volcanic" names "volcanoes")
    assert found(gate_issues(lambda d: d["items"][3].update(text="Volcanic mountains give you [blank].",
                                                            options=["energy", "homework", "shoes", "music"]))) == []


def test_a_course_that_names_its_subject_only_in_the_subject_field_is_off_subject():
    def elsewhere(d: dict) -> None:
        d.update(title="Healthy living", description="Food and sleep.")
        d["studyTexts"][0].update(title="Breakfast", content="[SECTION:Food]\nEat fruit and sleep well every night.")
        for item in d["items"]:
            item["text"] = f"Item {item['id']}: a good habit is [blank]."
    issues = gate_issues(elsewhere)
    assert found(issues) == [("off_subject", None)] and issues[0].field == "subject"


def test_an_off_subject_title_or_study_text_stops_the_course():
    issues = gate_issues(lambda d: d.update(title="Paleo-Fuel & Nutrition for Healthy Living"))
    assert found(issues) == [("off_subject", None)] and issues[0].field == "title"
    issues = gate_issues(lambda d: d["studyTexts"].append(
        {"id": "food", "title": "Good food", "content": "[SECTION:Food]\nEat fruit and vegetables.", "order": 1}))
    assert found(issues) == [("off_subject", None)] and issues[0].field == "studyTexts[1]"


def test_an_arithmetic_subject_is_named_by_its_operation():
    def addition(d: dict) -> None:
        d.update(subject="addition", title="Adding numbers")
        d["studyTexts"][0].update(title="Sums", content="[SECTION:Sums]\nPut two groups together: 3 + 4 = 7.")
        for item in d["items"]:
            item.update(text=f"{item['id']} + 5 = [blank]", options=[str(item["id"] + 5), "1", "2", "3"][:4])
        d["items"][3]["options"] = ["8", "1", "2", "4"]
        d["items"][0]["options"] = ["5", "1", "2", "3"]
    assert found(gate_issues(addition)) == []


def test_a_numeric_answer_must_follow_from_the_text_where_it_can_be_computed():
    def numeric(answer: float, text: str = "A volcano rose 12 × 3 metres: [blank] metres.") -> callable:
        def mutate(d: dict) -> None:
            d["items"][0] = {"id": 0, "text": text, "groupId": 0, "clusterId": "g0-c1", "variant": "1",
                             "mode": "numeric", "answer": answer}
        return mutate
    assert found(gate_issues(numeric(36))) == []
    assert found(gate_issues(numeric(1000))) == [("numeric_answer_mismatch", 0)]
    assert found(gate_issues(numeric(20, "Lava covers 25% of 80 hills of the volcano: [blank]."))) == []
    # nothing to compute: "3-4" is a range, not a sum; the answer is the model's to give
    assert found(gate_issues(numeric(1000, "A volcano erupts every 3-4 years; it is [blank] metres high."))) == []
    # the correct option of an options item counts too, when it is a number
    def option(d: dict) -> None:
        d["items"][2].update(text="A volcano 1,200 + 300 metres high: [blank] metres.",
                             options=["1,600", "1,500", "900", "1,400"], correctIndex=0)
    assert found(gate_issues(option)) == [("numeric_answer_mismatch", 2)]


def test_an_arithmetic_item_must_state_its_skeleton_problem():
    sk_items = [SkeletonItem(id=i, groupId=0 if i < 2 else 1, clusterId="c", variant="1", mode="options")
                for i in range(4)]
    sk_items[0] = sk_items[0].model_copy(update={"meta": ArithmeticMeta(op="add", a=3, b=4, expected=7)})
    from ignite_dagster.course.model import Group, Level
    skeleton = Skeleton(course_id="volcanoes-demo", subject="volcanoes", grade_band="3-5", mode="options",
                        groups=[Group(id=0, name="a"), Group(id=1, name="b")],
                        levels=[Level(id=1, title="All", start=0, end=3)], items=sk_items, study_text_slots=[])
    said = lambda d: d["items"][0].update(text="A volcano had 3 vents and 4 more opened: [blank] vents.",  # noqa: E731
                                          options=["7", "6", "8", "5"])
    silent = lambda d: d["items"][0].update(text="How many vents does the volcano have? [blank]",  # noqa: E731
                                            options=["7", "6", "8", "5"])
    assert found(gate_issues(said, skeleton)) == []
    assert found(gate_issues(silent, skeleton)) == [("numeric_answer_mismatch", 0)]


def test_an_option_much_longer_than_the_others_gives_the_answer_away():
    long = "the hot melted rock that rises from deep under the crust"
    assert found(gate_issues(lambda d: d["items"][0].update(options=[long, "sand", "ice", "clay"]))) == [
        ("answer_length_giveaway", 0)]
    # a long distractor is no giveaway; nor is a short gap ("7" vs "12"), nor a lenient ratio
    assert found(gate_issues(lambda d: d["items"][0].update(options=["magma", long, "ice", "clay"]))) == []
    assert found(gate_issues(lambda d: d["items"][0].update(options=["magma rock", "sand", "ice", "clay"]))) == []
    lenient = QualityThresholds(option_length_ratio=20)
    assert found(gate_issues(lambda d: d["items"][0].update(options=[long, "sand", "ice", "clay"]),
                             thresholds=lenient)) == []


def test_the_shared_words_threshold_is_a_setting():
    # item 3 names no volcano word; it shares "eruption" + "shoot" + "sky" with the study text
    def plain(d: dict) -> None:
        d["items"][3].update(text="Ash and gas shoot into the sky in an eruption: [blank].")
    assert found(gate_issues(plain)) == []
    strict = found(gate_issues(plain, thresholds=QualityThresholds(min_shared_words=9)))
    assert strict == [("off_subject", 1), ("off_subject", 2), ("off_subject", 3)]  # item 0 says "volcano"


def test_a_reading_level_far_above_the_grade_band_is_a_warning_not_a_gate():
    hard = ("[SECTION:Volcanology]\nVolcanological investigations characteristically necessitate interdisciplinary "
            "methodologies encompassing geochemical, geophysical and petrological considerations, particularly "
            "regarding magmatic differentiation, volatile exsolution and subsequent explosive fragmentation.")
    data = good()
    data["studyTexts"][0]["content"] = STUDY + "\n" + hard * 4
    issues = validate_course(load(data), None, None, Q)
    assert [(i.code, i.severity) for i in issues] == [("reading_level_off_band", "warning")]
    assert not is_quality_failure([i for i in issues if i.severity == "error"])


def test_quality_gates_alone_make_a_quality_failure():
    issues = validate_course(load({**good(), "title": "Healthy living"}), None, None, Q)
    assert is_quality_failure(issues)
    schema = Issue(code="invalid_blank_count", severity="error", message="m", item_id=1)
    assert not is_quality_failure([*issues, schema])


@pytest.mark.parametrize(("key", "mode"), [(k, m) for k, p in PACKS for m in modes_of(p)])
def test_every_shipped_pack_passes_the_quality_gates(key, mode):
    pack = dict(PACKS)[key]
    _, skeleton, doc = compile_for(pack, mode)
    course = normalize_course(load(doc), skeleton)
    issues = validate_course(course, skeleton, pack.gates, Q)
    assert [i for i in issues if i.severity == "error"] == []


def test_figures_and_preview_show_what_a_reviewer_needs():
    data = good()
    data["items"][1]["options"] = ["lava", "lava", "soil", "salt"]
    data["groups"][1]["name"] = "What a volcano is"
    course = load(data)
    figures = quality_figures(course, Q)
    assert figures["distinct_options_share"] == 0.75
    assert figures["distinct_group_names"] == "1/2"
    assert figures["on_subject_share"] == 1.0 and figures["study_texts_on_subject"] == "1/1"
    assert figures["grade_band_top"] == 5 and figures["reading_level_ok"] is True
    preview = course_preview(load(good()))
    assert preview.startswith("### Volcanoes and eruptions")
    assert "What a volcano is; How eruptions happen" in preview
    assert "> A volcano is an opening in the crust" in preview and "[SECTION" not in preview
    assert preview.count("✅") == 3 and "    - magma ✅" in preview and "    - lava ✅" in preview


def test_the_course_quality_check_is_an_error_for_a_gate_and_a_warning_for_a_warning(tmp_path):
    from dagster import AssetCheckSeverity

    from ignite_dagster.config import Settings
    from ignite_dagster.defs.checks import evaluate_quality
    from ignite_dagster.storage.local import LocalObjectStore

    store = LocalObjectStore(tmp_path)
    repeated = good()
    repeated["groups"][1]["name"] = "What a volcano is"
    hard = good()
    hard["studyTexts"][0]["content"] = STUDY + "\n[SECTION:More]\n" + (
        "Volcanological investigations characteristically necessitate interdisciplinary methodologies "
        "encompassing geochemical, geophysical and petrological considerations. ") * 4
    for course_id, doc in (("fine", good()), ("repeated", repeated), ("hard", hard)):
        store.put(f"courses/{course_id}/course.json", json.dumps({**doc, "id": course_id}).encode())
    fine, bad, warned = (evaluate_quality(store, c, Settings()) for c in ("fine", "repeated", "hard"))

    def meta(check, key):
        return check.metadata[key].value

    assert fine.passed and meta(fine, "distinct_group_names") == "2/2"
    assert not bad.passed and bad.severity == AssetCheckSeverity.ERROR
    assert meta(bad, "gates_failed") == "duplicate_group_names" and meta(bad, "distinct_group_names") == "1/2"
    assert not warned.passed and warned.severity == AssetCheckSeverity.WARN
    assert meta(warned, "warnings") == "reading_level_off_band" and meta(warned, "reading_level_ok") is False


def test_a_course_scanned_again_as_stored_reuses_the_scan_and_a_changed_text_does_not():
    """The worker's gates and the course's check scan the same texts: the second scan is the first's. Any
    text, the subject or the shared-words threshold read by the scan is part of what it is kept by."""
    first = subject_scan(load(good()), Q)
    assert subject_scan(load(good()), Q) is first  # another parse of the same document
    changed = good()
    changed["items"][0]["hint"] = "Count the petals of a sunflower."
    assert subject_scan(load(changed), Q) is not first
    assert subject_scan(load(good()), QualityThresholds(min_shared_words=9)) is not first
    other = good()
    other["subject"] = "fractions"
    assert subject_scan(load(other), Q).anywhere is False  # a real scan, not the kept one


def test_a_runs_checks_of_a_course_are_the_checks_the_ui_evaluates_on_demand(tmp_path):
    """``course_check_events`` validates a stored course once for both checks; what it reports is what each
    check says evaluated on its own (the asset checks' Execute in the UI), passing or failing."""
    from ignite_dagster.config import Settings
    from ignite_dagster.defs.checks import evaluate_quality, evaluate_schema
    from ignite_dagster.defs.courses.events import course_check_events
    from ignite_dagster.storage.local import LocalObjectStore

    store = LocalObjectStore(tmp_path)
    repeated = good()
    repeated["groups"][1]["name"] = "What a volcano is"
    no_answer = good()
    no_answer["items"][0]["correctIndex"] = 9
    for course_id, doc in (("fine", good()), ("repeated", repeated), ("broken", no_answer)):
        store.put(f"courses/{course_id}/course.json", json.dumps({**doc, "id": course_id}).encode())
        schema, quality = course_check_events(store, course_id, Settings())
        alone = (evaluate_schema(store, course_id), evaluate_quality(store, course_id, Settings()))
        for reported, own in zip((schema, quality), alone, strict=True):
            assert (reported.passed, reported.severity) == (own.passed, own.severity), course_id
            assert reported.metadata == own.metadata, course_id
    assert not schema.passed  # the broken course fails its schema check either way
