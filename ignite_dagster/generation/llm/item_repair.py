"""One bounded repair round: send only the failing items back to the model, with their messages.

Why targeted: a draft with three bad items out of forty should cost three items' worth of tokens, and
re-writing good items would only risk new errors. What is repairable follows the spec: item-level
errors that name an item (``Issue.item_id``) whose id is in the skeleton. Course-level problems (a
title too long, an empty study text) are not sent; they stay in the issues and fail the job if they
remain. The repair stage (``generation/stages/repair.py``) owns the rounds (bound ``repair_rounds``) and re-validates after each.

Every failing item is sent (in batches, all concurrent); a batch whose call fails leaves its items as
they were while the other batches' answers are kept (valid parts of a partial answer are not thrown
away); only when every batch fails, or the failure is account-wide (quota, deadline), does the round fail.
Each request carries at most ``items_per_call`` items (a handful: small answers are rarely truncated
and a refused or malformed answer costs little). Requests of one round run concurrently under the
client's concurrency limit. Each item keeps its id, groupId, clusterId, variant and mode (enforced from
the skeleton, as in the fill) and arithmetic stays exact. An item the model leaves out of its answer
is kept as it was, so the next validation reports it again rather than losing it.

Repair answers are not cached: when a round sends an item exactly as an earlier round did, asking the
model again is the point, and a cached answer would only repeat the failure.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem
from ignite_dagster.generation.llm.client import StructuredClient, run_all
from ignite_dagster.generation.llm.deadline import Deadline
from ignite_dagster.generation.llm.meter import UsageMeter
from ignite_dagster.generation.llm.prompts import PROMPT_VERSION, repair_messages
from ignite_dagster.generation.llm.schemas import ItemBatch, item_batch_schema, to_course_item
from ignite_dagster.generation.types import GenerationFailed

# failures that doom every call of the round: no point keeping the others' partial answers
ACCOUNT_WIDE = frozenset({"provider_quota", "provider_timeout"})

log = logging.getLogger(__name__)


def repairable(issues: list[Issue], skeleton: Skeleton) -> dict[int, list[Issue]]:
    """Errors per item id, for items the skeleton knows, in skeleton order."""
    known = {it.id for it in skeleton.items}
    by_item: dict[int, list[Issue]] = {}
    for issue in issues:
        if issue.severity == "error" and issue.item_id is not None and issue.item_id in known:
            by_item.setdefault(issue.item_id, []).append(issue)
    order = {it.id: n for n, it in enumerate(skeleton.items)}
    return dict(sorted(by_item.items(), key=lambda kv: order[kv[0]]))


def _problem(issue: Issue) -> str:
    where = f" ({issue.field})" if issue.field else ""
    return f"{issue.code}{where}: {issue.message}"


async def repair_items(
    client: StructuredClient,
    meter: UsageMeter,
    course: dict[str, Any],
    issues: list[Issue],
    skeleton: Skeleton,
    request: CourseRequest,
    *,
    items_per_call: int = 5,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """A copy of ``course`` with the failing items replaced by the model's repaired versions."""
    failing = repairable(issues, skeleton)
    result = copy.deepcopy(course)
    if not failing:
        return result
    items: list[Any] = result.setdefault("items", [])
    position = {it.get("id"): n for n, it in enumerate(items) if isinstance(it, dict)}
    entries: list[tuple[SkeletonItem, dict[str, Any], list[str]]] = []
    for item_id, item_issues in failing.items():
        sk = skeleton.item(item_id)
        assert sk is not None
        current = items[position[item_id]] if item_id in position else {"id": item_id}
        entries.append((sk, current, [_problem(i) for i in item_issues]))

    chunks = [entries[i : i + items_per_call] for i in range(0, len(entries), items_per_call)]

    async def call(chunk: list[tuple[SkeletonItem, dict[str, Any], list[str]]]) -> ItemBatch | GenerationFailed:
        ids = [sk.id for sk, _, _ in chunk]
        try:
            return await client.parse(
                repair_messages(skeleton, request, chunk), ItemBatch,
                json_schema=item_batch_schema(skeleton.mode, len(chunk)), schema_name="RepairedItems",
                meter=meter, prompt_version=PROMPT_VERSION, purpose=f"repair items {ids}", use_cache=False,
                deadline=deadline,
            )
        except GenerationFailed as exc:
            if exc.reason_code in ACCOUNT_WIDE:
                raise
            return exc  # this batch stays as it was; the others' answers are kept

    answers = await run_all([call(c) for c in chunks])
    failures = [a for a in answers if isinstance(a, GenerationFailed)]
    if failures and len(failures) == len(answers):
        raise failures[0]  # nothing came back: the round failed as its first batch did
    for failure in failures:
        log.warning("repair batch failed (%s); its items stay as they were: %s", failure.reason_code, failure.message)
    related = {it.get("id"): it.get("relatedStudyTextIds") or [] for it in items if isinstance(it, dict)}
    for chunk, answer in zip(chunks, answers, strict=True):
        if isinstance(answer, GenerationFailed):
            continue
        if len(answer.items) != len(chunk):  # count ignored by the server: no way to tell whose answer is whose
            log.warning("repair answer has %d items for %d sent; they stay as they were", len(answer.items), len(chunk))
            continue
        # position is identity: the n-th answer repairs the n-th item sent
        for (sk, _, _), filled in zip(chunk, answer.items, strict=True):
            new_item = _merge(to_course_item(sk, filled, related.get(sk.id, [])),
                              items[position[sk.id]] if sk.id in position else None)
            if sk.id in position:
                items[position[sk.id]] = new_item
            else:
                position[sk.id] = len(items)
                items.append(new_item)
    order = {it.id: n for n, it in enumerate(skeleton.items)}
    items.sort(key=lambda it: order.get(it.get("id"), len(order)) if isinstance(it, dict) else len(order))
    return result


_CONTENT_FIELDS = ("text", "options", "correctIndex", "answer", "hint", "explain", "wrongExplanations", "relatedStudyTextIds")


def _merge(new_item: dict[str, Any], old_item: dict[str, Any] | None) -> dict[str, Any]:
    """The repaired content, keeping fields of the old item this module does not write (media, stimulus …)."""
    if not old_item:
        return new_item
    kept = {k: v for k, v in old_item.items() if k not in _CONTENT_FIELDS and k not in new_item}
    return {**new_item, **kept}
