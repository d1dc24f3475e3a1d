"""The course partitions: one dynamic partition per course id, shared by every course asset and check.

Partitions are added by the claim sensors (``SensorResult.dynamic_partitions_requests``), by manual
``claim_now`` runs and by the reconciler's drift reports, so a course shows up in the UI as soon as a run
holds its job (or storage holds its course.json). Only existing partitions can be materialized from the UI.
"""

from dagster import DynamicPartitionsDefinition

COURSES_PARTITIONS_NAME = "courses"

courses_partitions = DynamicPartitionsDefinition(name=COURSES_PARTITIONS_NAME)
