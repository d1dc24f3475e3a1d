"""The course partitions: one dynamic partition per course id, shared by every course asset and check.

Partitions are added by the claim sensors (``SensorResult.dynamic_partitions_requests``) and by manual
``claim_now`` runs, so a course shows up in the UI as soon as a run holds its job.
"""

from dagster import DynamicPartitionsDefinition

COURSES_PARTITIONS_NAME = "courses"

courses_partitions = DynamicPartitionsDefinition(name=COURSES_PARTITIONS_NAME)
