"""Every asset check of the code location, in one place.

* ``course_schema_valid`` (course_content): the stored course.json parses as Course v2 and validates.
* ``course_quality`` (course_content): the quality gates (``course/quality.py``) with their figures:
  ERROR when a gate fails (a generated course never ships that way; an older file might), WARN for
  warnings (a reading level above the grade band, missing section markers), passed otherwise.
* ``media_complete`` (course_media): every requested image is attached and resolves in storage.

Each check has an ``evaluate_*`` function the ops call right after they materialize a partition (so a
run reports the check with its materialization), and an ``@asset_check`` for evaluating it on demand
from the UI. Both read storage through the ``storage`` resource (media_complete the queue too).
"""

import json
import warnings
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from ignite_dagster.config import load_settings
from ignite_dagster.defs.courses.keys import COURSE_CONTENT, COURSE_MEDIA
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import QueueResource, StorageResource

SCHEMA_CHECK = "course_schema_valid"
QUALITY_CHECK = "course_quality"
MEDIA_CHECK = "media_complete"

# Partitioned asset checks are a preview feature in Dagster 1.13; we rely on it knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


_MISSING = {"error": "course.json missing"}


def read_stored_course(store, course_id: str) -> dict | None:
    """The stored course.json as a document, None when there is none. Read once per course by the ops,
    which evaluate both course checks from it."""
    from ignite_dagster.storage.base import NotFound
    from ignite_dagster.storage.keys import course_path

    try:
        return json.loads(store.get(course_path(course_id)).data)
    except NotFound:
        return None


def evaluate_schema(store, course_id: str, doc: dict | None = None, parsed=None, structural=None) -> AssetCheckResult:
    """The course_schema_valid check for one course (``doc``: the stored course, if already read;
    ``parsed``: its ``parse_course`` result, if already parsed; ``structural``: ``validate_course`` of
    that parsed course, if already made)."""
    from ignite_dagster.course.validation import schema_issues

    doc = doc if doc is not None else read_stored_course(store, course_id)
    if doc is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata=_MISSING)
    issues = structural if structural is not None else schema_issues(doc, parsed)
    errors = [i for i in issues if i.severity == "error"]
    return AssetCheckResult(
        passed=not errors,
        severity=AssetCheckSeverity.ERROR,
        metadata={"errors": len(errors), "warnings": len(issues) - len(errors),
                  "codes": ", ".join(sorted({i.code for i in issues})) or "none"},
    )


def evaluate_quality(store, course_id: str, settings, doc: dict | None = None, parsed=None,
                     structural=None) -> AssetCheckResult:
    """The course_quality check for one course: gate codes, warnings and the figures behind them (``doc``,
    ``parsed``, ``structural``: as for ``evaluate_schema``; the latter stands for this check's own
    validation when no pack gates apply). The subject scan is made once for the gates and the figures."""
    from ignite_dagster.course.issues import QUALITY_GATE_CODES
    from ignite_dagster.course.model import parse_course
    from ignite_dagster.course.quality import QualityThresholds, quality_figures, quality_issues, subject_scan
    from ignite_dagster.course.validation import validate_course

    doc = doc if doc is not None else read_stored_course(store, course_id)
    if doc is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata=_MISSING)
    course, issues = parsed if parsed is not None else parse_course(doc)
    if course is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR,
                                metadata={"error": "course.json is not a Course v2 (see course_schema_valid)"})
    thresholds = QualityThresholds.from_settings(settings)
    gates = _pack_gates((doc.get("generation") or {}).get("packId"))
    terms = tuple(gates.subject_terms) if gates else ()
    scan = subject_scan(course, thresholds, terms)
    base = structural if structural is not None and gates is None else validate_course(course, None, gates)
    issues = base + quality_issues(course, None, thresholds, terms, scan=scan)
    failed = sorted({i.code for i in issues if i.severity == "error" and i.code in QUALITY_GATE_CODES})
    warned = sorted({i.code for i in issues if i.severity == "warning"})
    figures = quality_figures(course, thresholds, terms, scan=scan)
    metadata: dict[str, Any] = {**figures, "gates_failed": ", ".join(failed) or "none",
                                "warnings": ", ".join(warned) or "none"}
    return AssetCheckResult(passed=not failed and not warned,
                            severity=AssetCheckSeverity.ERROR if failed else AssetCheckSeverity.WARN,
                            metadata=metadata)


def _pack_gates(pack_id: str | None):
    """A pack course's gates (its vocabulary names its subject too); None for a model-written course."""
    if not pack_id:
        return None
    from ignite_dagster.generation.packs import default_index

    pack = default_index().get(pack_id)
    return pack.gates if pack is not None else None


def evaluate_media(queue, store, course_id: str) -> AssetCheckResult:
    """The media_complete check for one course (see ``media.attach.media_completeness``)."""
    from ignite_dagster.media.attach import media_completeness

    # every requested target counts, whatever its job's state: a target whose job is still pending or
    # was dead-lettered is an image the course was promised and does not have
    requested = queue.list("ai_media_jobs", course_id=course_id, limit=10_000)
    report = media_completeness(store, course_id, [j.target_ref for j in requested])
    metadata: dict[str, Any] = report.metadata() if report.course_found else {"error": "course.json missing"}
    return AssetCheckResult(passed=report.passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)


@asset_check(asset=COURSE_CONTENT, name=SCHEMA_CHECK, partitions_def=courses_partitions,
             description="The stored course.json parses as Course v2 and has no validation errors.")
def course_schema_valid(context, storage: StorageResource) -> AssetCheckResult:
    return evaluate_schema(storage.store, context.partition_key)


@asset_check(asset=COURSE_CONTENT, name=QUALITY_CHECK, partitions_def=courses_partitions,
             description="The stored course passes the quality gates (distinct options, group names and item texts, "
             "on subject, answers that follow from the text, option lengths that give nothing away); figures in "
             "the metadata. ERROR for a failed gate, WARN for warnings (reading level above the grade band).")
def course_quality(context, storage: StorageResource) -> AssetCheckResult:
    return evaluate_quality(storage.store, context.partition_key, load_settings())


@asset_check(asset=COURSE_MEDIA, name=MEDIA_CHECK, partitions_def=courses_partitions,
             description="Every requested [IMAGE:…] marker carries a URL, every requested item stimulus and option "
             "image (any media job's target) is attached, and every image URL in course.json resolves to an object "
             "in storage.")
def media_complete(context, queue: QueueResource, storage: StorageResource) -> AssetCheckResult:
    return evaluate_media(queue.queue, storage.store, context.partition_key)


asset_checks = [course_schema_valid, course_quality, media_complete]
