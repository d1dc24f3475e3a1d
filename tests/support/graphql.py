"""The Dagster webserver's GraphQL API, as the UI calls it: launch an asset backfill, read its status.

Used by the end-to-end materialization test and the pipeline bench (what the UI's "Materialize" and
"Launch backfill" buttons send)."""

from __future__ import annotations

import socket

import httpx

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConflict { message }
    ... on InvalidSubsetError { message }
  }
}"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status } }
    ... on PythonError { message }
  }
}"""

DONE = ("COMPLETED", "COMPLETED_SUCCESS")
BAD = ("FAILED", "CANCELED", "COMPLETED_FAILED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str, variables: dict) -> dict:
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def launch_course_backfill(base: str, partitions: list[str]) -> str:
    """Backfill course_content + course_metadata over ``partitions``; returns the backfill id."""
    data = graphql(base, LAUNCH_BACKFILL, {"params": {
        "partitionNames": partitions,
        "assetSelection": [{"path": ["course_content"]}, {"path": ["course_metadata"]}],
        "fromFailure": False,
    }})["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def backfill_finished(base: str, backfill_id: str) -> dict | None:
    """The backfill (status, runs) once it completed; None while it runs; AssertionError if it failed."""
    b = graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert b["__typename"] == "PartitionBackfill", b
    assert b["status"] not in BAD, b
    return b if b["status"] in DONE else None


def server_ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
