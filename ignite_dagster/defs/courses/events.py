"""The events a course reports, built in one place so a sensor-claimed run, a UI materialization and the
reconciler tell the UI the same things about a partition.

A finished course: its course_content and course_metadata materializations (the content one with a
Markdown preview of the course, the course's stage timings and spend) and the schema and quality checks.
A failed course: one observation of its course_content partition saying so (reason code, job, attempt,
the job's status, the error) and one error line in the run's logs; the step fails after every course
is reported (``report_courses``). Why an observation: Dagster 1.13 has no public event that marks a
partition failed from an op, and a failed check would misreport the stored course.json, which a failed
attempt never touched (an earlier version stays valid and served).
"""

from collections.abc import Iterable, Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    AssetObservation,
    Failure,
    MetadataValue,
    OpExecutionContext,
)

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

    course, _ = parse_course(doc)
    return course_preview_metadata(course) if course is not None else {}


def course_preview_metadata(course) -> dict[str, Any]:
    """``preview`` of a course already parsed (the worker's own, just persisted)."""
    from ignite_dagster.course.quality import course_preview

    return {"preview": MetadataValue.md(course_preview(course))}


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
            # the stages' own times (what the per-course log line used to say): one event fewer per course
            "stage_ms": MetadataValue.json(dict(work.stage_ms)), "strategy_reason": str(s.get("reason") or ""),
            **course_preview_metadata(work.course),
        },
    )
    metadata = AssetMaterialization(
        asset_key=COURSE_METADATA, partition=job.course_id,
        metadata={**common, "catalog_action": str(res.get("catalog_action")), "media_jobs": len(res.get("media_jobs", []))},
    )
    # the document persist wrote, not read back: the stored bytes are its JSON (storage.cas.dump_json)
    return [content, metadata, *course_check_events(store, job.course_id, settings, doc=work.stored)]


def report_builder(store, *, source: str, settings=None):
    """``CourseWorker(on_persisted=…)``: a persisted course's events built where it finished (its own
    thread, for a course finishing in the background), kept on ``work.report`` for ``report_courses``.
    Why: the reporting step logs the courses one after another; with their checks evaluated there too,
    the courses of a run that finish together waited in line for each other's checks."""
    settings = settings if settings is not None else load_settings()

    def build(work) -> None:
        work.report = finished_course_events(work, store, source=source, settings=settings)

    return build


def failure_line(work, exc: BaseException) -> str:
    """One line naming a failed course, its job and why (the run's log line and the step's Failure)."""
    from ignite_dagster.queue.errors import LostClaim

    if isinstance(exc, LostClaim):
        return f"{work.label}: {exc}; stopped without writing"
    detail = str(exc) if getattr(exc, "reason_code", None) else f"{type(exc).__name__}: {exc}"
    return f"{work.label}: {detail}"


def failed_course_events(work, exc: BaseException, *, source: str) -> list:
    """What a failed course shows on its partition: an observation of course_content with the failure
    (see the module docstring for why not a check or a failed materialization)."""
    job = work.job
    reason = getattr(exc, "reason_code", None) or type(exc).__name__
    status = getattr(exc, "new_status", None)
    return [AssetObservation(
        asset_key=COURSE_CONTENT, partition=job.course_id,
        description=f"generation failed ({reason}); the stored course, if any, is unchanged",
        metadata={"outcome": "failed", "job_id": str(job.id), "attempt": job.attempt, "reason_code": reason,
                  "job_status": str(status) if status else "unchanged", "source": source,
                  "error": MetadataValue.text(getattr(exc, "message", None) or str(exc))},
    )]


def report_courses(worker, works: Iterable, store, *, source: str, log, failures: list[str],
                   settings=None) -> Iterator:
    """Every course of ``works`` (prepared CourseWorks) as soon as it is done (``in_completion_order``):
    a finished one's materializations and checks, a failed one's observation and one error line in
    ``log``; the failed ones' lines are appended to ``failures`` for the step's Failure. Yielded, not
    logged: ``context.log_event`` events reach the event log only at the op's next yield or return, so
    those logged before the step's Failure would be lost."""
    settings = settings if settings is not None else load_settings()
    for work, outcome in worker.in_completion_order(works):
        if isinstance(outcome, BaseException):
            failures.append(failure_line(work, outcome))
            log.error(failures[-1])
            yield from failed_course_events(work, outcome, source=source)
            continue
        try:  # built before yielding: a course whose events cannot be built stops no other course's
            events = outcome.report if outcome.report is not None else \
                finished_course_events(outcome, store, source=source, settings=settings)
        except Exception as exc:  # noqa: BLE001 - the course is done; the reconciler's drift report shows it later
            failures.append(f"{work.label}: done, but not reported: {type(exc).__name__}: {exc}")
            log.error(failures[-1])
            continue
        yield from events


def courses_failure(failures: list[str], total: int, what: str) -> Failure:
    """The step's Failure once every course is reported: how many of ``total`` and which, with why."""
    listed = "; ".join(f[:300] for f in failures[:5])
    return Failure(description=f"{len(failures)} of {total} course(s) {what}: {listed}",
                   metadata={"failures": MetadataValue.text("\n".join(failures))})


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


def course_check_events(store, course_id: str, settings=None, doc: dict | None = None) -> list[AssetCheckEvaluation]:
    """The schema and quality checks of one course, from one read, one parse and one structural validation
    of its stored course.json (``doc``: that document, when the caller has just written it)."""
    from ignite_dagster.course.model import parse_course
    from ignite_dagster.course.validation import validate_course

    doc = doc if doc is not None else read_stored_course(store, course_id)
    parsed = parse_course(doc) if doc is not None else None  # one parse for both checks
    # the schema check's validation is the quality check's too, when no pack gates apply (one pass, not two)
    structural = validate_course(parsed[0]) if parsed is not None and parsed[0] is not None else None
    settings = settings if settings is not None else load_settings()
    checks = ((SCHEMA_CHECK, evaluate_schema(store, course_id, doc, parsed, structural)),
              (QUALITY_CHECK, evaluate_quality(store, course_id, settings, doc, parsed, structural)))
    return [AssetCheckEvaluation(asset_key=COURSE_CONTENT, check_name=name, passed=check.passed, partition=course_id,
                                 metadata=check.metadata, severity=check.severity) for name, check in checks]


def report_course_events(context: OpExecutionContext, events: list, course_id: str) -> None:
    """Add the course's partition if it is new, then log its events."""
    if not context.instance.has_dynamic_partition(courses_partitions.name, course_id):
        context.instance.add_dynamic_partitions(courses_partitions.name, [course_id])
    for event in events:
        context.log_event(event)
