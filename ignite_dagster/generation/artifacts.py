"""Debug artifacts of one job (``courses/debug/jobs/<jobId>/…``): what each stage saw and produced.

The runbook promises them (strategy, skeleton, draft, repair rounds, validation issues); they are best
effort for the stages that write them and never change the course itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.generation.types import GenerationDeps
from ignite_dagster.storage.json_codec import dump_document


def save_artifact(deps: GenerationDeps, name: str, payload: Any) -> str | None:
    """Write ``<debug_prefix>/<name>`` as JSON when a store and prefix are configured; return the key."""
    if deps.store is None or not deps.debug_prefix:
        return None
    key = f"{deps.debug_prefix.rstrip('/')}/{name}"
    data = dump_document(payload, sort_keys=True, default=str)
    # best effort: a debug artifact lost to a power cut is not worth a disk flush per write
    deps.store.put(key, data, content_type="application/json", durable=False)
    return key


def issues_json(issues: list[Issue]) -> list[dict[str, Any]]:
    return [i.model_dump() for i in issues]


def codes_summary(issues: list[Issue]) -> str:
    """``invalid_blank_count×2, math_incorrect`` — the codes a job error shows."""
    counts = Counter(i.code for i in issues)
    return ", ".join(f"{code}×{n}" if n > 1 else code for code, n in sorted(counts.items()))
