"""The events a finished course reports: its course_content and course_metadata materializations (the
content one with a Markdown preview of the course) and the schema and quality checks, built in one place so a sensor-claimed run, a UI materialization and the reconciler tell
the UI the same things about a partition."""

from typing import Any

from dagster import AssetCheckEvaluation, AssetMaterialization, MetadataValue, OpExecutionContext

from ignite_dagster.config import load_settings
from ignite_dagster.defs.checks import (
    QUALITY_CHECK,
    SCHEMA_CHECK,
    evaluate_quality,
    evaluate_schema,
    read_stored_course,
)
from ignite_dagster.defs.courses.keys import COURSE_CONTENT, COURSE_METADATA
from ignite_dagster.defs.partitions import courses_partitions


def cost_metadata(cost: Any, known: bool | None = None) -> dict[str, Any]:
    """``cost_usd`` is a number only when the price is known; an unknown price is said, never shown as 0."""
    if cost is None or known is False:
        return {"cost_usd": "unknown", "cost_known": False}
    return {"cost_usd": float(cost), "cost_known": True}


def preview_metadata(doc: dict) -> dict[str, Any]:
    """``preview``: the course as a reviewer reads it (title, groups, the first study text's opening, three
    items with the correct option marked), so nobody has to open storage to see what was made."""
    from ignite_dagster.course.model import parse_course
    from ignite_dagster.course.quality import course_preview

    course, _ = parse_course(doc)
    return {"preview": MetadataValue.md(course_preview(course))} if course is not None else {}


def finished_course_events(work, store, *, source: str, settings=None) -> list:
    """Materializations of a course the worker just persisted (``work`` is a persisted CourseWork).
    ``settings`` give the quality thresholds (default: this process's settings)."""
    job, res = work.job, work.result
    s = res["summary"]
    common = {"job_id": str(job.id), "attempt": job.attempt, "strategy": s["strategy"], "source": source}
    known = s.get("costKnown")
    content = AssetMaterialization(
        asset_key=COURSE_CONTENT, partition=job.course_id,
        metadata={
            **common,
            "storage_path": MetadataValue.path(res["result_path"]),
            "pack_id": s["packId"] or "", "model": res["model"] or "", "provider": res["provider"] or "",
            "items": s["items"], "groups": s["groups"], "levels": s["levels"], "study_texts": s["studyTexts"],
            "validation": MetadataValue.text(f"0 errors, warnings: {', '.join(s['warnings']) or 'none'}"),
            "repair_rounds": s["repairRounds"], "tokens_in": s["tokensIn"], "tokens_out": s["tokensOut"],
            "calls": s["calls"], "cache_hits": s["cacheHits"], **cost_metadata(res["cost_usd"], known),
            "duration_ms": res["generation_duration_ms"], "fill_ms": res["latency_ms"] or 0,
            "cas_conflicts": s["casConflicts"],
            **preview_metadata(work.course.to_dict()),
        },
    )
    metadata = AssetMaterialization(
        asset_key=COURSE_METADATA, partition=job.course_id,
        metadata={**common, "catalog_action": str(res.get("catalog_action")), "media_jobs": len(res.get("media_jobs", []))},
    )
    return [content, metadata, *course_check_events(store, job.course_id, settings)]


def reconciled_course_events(course_id: str, job_id: str, doc: dict, store, *, detail: str, settings=None) -> list:
    """Materializations for a course.json the pipeline did not report (the reconciler found it)."""
    gen = doc.get("generation") or {}
    common = {"source": "reconciler", "detail": detail, "job_id": job_id or ""}
    items = len(doc["items"]) if isinstance(doc.get("items"), list) else None
    content = AssetMaterialization(
        asset_key=COURSE_CONTENT, partition=course_id,
        metadata={**common, "strategy": str(gen.get("strategy") or ""), "model": str(gen.get("model") or ""),
                  "attempt": gen.get("attempt") if isinstance(gen.get("attempt"), int) else "unknown",
                  "items": items if items is not None else "unknown", **preview_metadata(doc)},
    )
    metadata = AssetMaterialization(asset_key=COURSE_METADATA, partition=course_id, metadata=common)
    return [content, metadata, *course_check_events(store, course_id, settings)]


def course_check_events(store, course_id: str, settings=None) -> list[AssetCheckEvaluation]:
    """The schema and quality checks of one course, from one read of its stored course.json."""
    doc = read_stored_course(store, course_id)
    checks = ((SCHEMA_CHECK, evaluate_schema(store, course_id, doc)),
              (QUALITY_CHECK, evaluate_quality(store, course_id, settings if settings is not None else load_settings(), doc)))
    return [AssetCheckEvaluation(asset_key=COURSE_CONTENT, check_name=name, passed=check.passed, partition=course_id,
                                 metadata=check.metadata, severity=check.severity) for name, check in checks]


def report_course_events(context: OpExecutionContext, events: list, course_id: str) -> None:
    """Add the course's partition if it is new, then log its events."""
    if not context.instance.has_dynamic_partition(courses_partitions.name, course_id):
        context.instance.add_dynamic_partitions(courses_partitions.name, [course_id])
    for event in events:
        context.log_event(event)
