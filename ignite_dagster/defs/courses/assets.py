"""Course assets, one partition per course id (``defs/partitions.py``).

The stage ops (ops.py) materialize them by reporting AssetMaterialization events for the course's
partition, which lets one run work several courses (run start-up costs seconds) while every course
keeps its own partition, metadata, logs and failure. Their checks live in ``defs/checks.py``.
"""

from dagster import AssetKey, AssetSpec

from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.storage.keys import course_media_prefix, course_path

COURSE_CONTENT = AssetKey("course_content")
COURSE_METADATA = AssetKey("course_metadata")
COURSE_MEDIA = AssetKey("course_media")

course_content = AssetSpec(
    COURSE_CONTENT,
    partitions_def=courses_partitions,
    group_name="courses",
    description=f"{course_path('{courseId}')}: the validated Course v2 document (written by generate_courses).",
    metadata={"storage_path": course_path("{courseId}")},
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
    description=f"Generated images attached into course.json ({course_media_prefix('{courseId}')}/...).",
    kinds={"image"},
)
