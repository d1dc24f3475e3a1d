"""Judging a run from outside by its claims: when the queue last saw it alive.

The daemon cannot ask a run's process whether it lives (a host crash or a killed process group leaves a
STARTED run behind that no launcher reports); the queue's rows can say. The rows come from
``JobQueue.claim_rows``; this is the pure rule over them, so it is tested without a database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from ignite_dagster.queue.models import ClaimRef


def last_sign_of_life(claims: list[ClaimRef], rows: dict[UUID, dict[str, Any]], started_at: datetime) -> datetime:
    """When the run holding ``claims`` last showed it was alive, as the queue saw it.

    Its own heartbeats (a processing, stale or released claim keeps the last one), the moment it finished
    a claim (done, failed), and its start. A claim taken over by a newer attempt tells nothing about this
    run. A live run heartbeats every claim it holds, and ends within seconds of finishing its last one,
    so a run whose last sign is older than a few heartbeats is gone."""
    signs = [started_at]
    for job_id, attempt in claims:
        row = rows.get(job_id)
        if row is None or row["attempt"] != attempt:
            continue
        if row["last_heartbeat"] is not None:
            signs.append(row["last_heartbeat"])
        if row["status"] == "done" and row["completed_at"] is not None:
            signs.append(row["completed_at"])
        elif row["status"] in ("failed", "dead_letter"):
            signs.append(row["updated_at"])
    return max(signs)
