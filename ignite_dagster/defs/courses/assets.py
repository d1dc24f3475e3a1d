"""Course assets, one partition per course id.

The stage ops (ops.py) materialize them by reporting AssetMaterialization events for the course's
partition, which lets one run work several courses (run start-up costs seconds) while every course
keeps its own partition, metadata, logs and failure.
"""


import json
import warnings

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetSpec,
    DynamicPartitionsDefinition,
    asset_check,
)

courses_partitions = DynamicPartitionsDefinition(name="courses")

COURSE_CONTENT = AssetKey("course_content")
COURSE_METADATA = AssetKey("course_metadata")
COURSE_MEDIA = AssetKey("course_media")
SCHEMA_CHECK = "course_schema_valid"
MEDIA_CHECK = "media_complete"

course_content = AssetSpec(
    COURSE_CONTENT,
    partitions_def=courses_partitions,
    group_name="courses",
    description="courses/{courseId}/course.json: the validated Course v2 document (written by generate_courses).",
    metadata={"storage_path": "courses/{courseId}/course.json"},
    kinds={"json"},
)
course_metadata = AssetSpec(
    COURSE_METADATA,
    partitions_def=courses_partitions,
    group_name="courses",
    deps=[COURSE_CONTENT],
    description="course_metadata row and the job's catalog_updates row in Postgres.",
    kinds={"postgres"},
)
course_media = AssetSpec(
    COURSE_MEDIA,
    partitions_def=courses_partitions,
    group_name="courses",
    deps=[COURSE_CONTENT],
    description="Generated images attached into course.json (media-library/courses/{courseId}/...).",
    kinds={"image"},
)


# Partitioned asset checks are a preview feature in Dagster 1.13; we rely on it knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


@asset_check(asset=COURSE_CONTENT, name=SCHEMA_CHECK, partitions_def=courses_partitions,
             description="The stored course.json parses as Course v2 and has no validation errors.")
def course_schema_valid(context) -> AssetCheckResult:
    from ignite_dagster.defs.resources import code_location_services

    _, _, store = code_location_services()
    return evaluate_schema(store, context.partition_key)


def evaluate_schema(store, course_id: str) -> AssetCheckResult:
    from ignite_dagster.course.model import parse_course
    from ignite_dagster.course.validation import validate_course
    from ignite_dagster.course_jobs.persist import course_path
    from ignite_dagster.storage.base import NotFound

    try:
        doc = json.loads(store.get(course_path(course_id)).data)
    except NotFound:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={"error": "course.json missing"})
    course, issues = parse_course(doc)
    if course is not None:
        issues = validate_course(course, None, None)
    errors = [i for i in issues if i.severity == "error"]
    return AssetCheckResult(
        passed=not errors,
        severity=AssetCheckSeverity.ERROR,
        metadata={"errors": len(errors), "warnings": len(issues) - len(errors),
                  "codes": ", ".join(sorted({i.code for i in issues})) or "none"},
    )
