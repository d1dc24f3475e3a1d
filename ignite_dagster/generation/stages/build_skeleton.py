"""Stage 2: the skeleton — the structure every fill must keep.

Ids, groups, clusters, variants, levels and study-text slots are fixed here, and for arithmetic subjects
each item's exact problem (``meta {op, a, b, expected}``). The LLM path then only writes words around
numbers it cannot change, and the deterministic path compiles its pack into the same shape, so both
paths are validated against one structure.
"""

from __future__ import annotations

import hashlib
import random

from ignite_dagster.course.model import Group, Level
from ignite_dagster.course.request import CourseRequest, band_range
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.generation.packs import (
    ArithmeticGroup,
    ArithmeticPack,
    KnowledgePack,
    PackIndex,
    default_index,
    items_per_group_for,
)
from ignite_dagster.generation.types import StrategyChoice

DEFAULT_GROUPS = 3
DEFAULT_LEVELS = 3
DEFAULT_STUDY_TEXTS = 2
_MAX_DRAWS = 200


def seed_string(request: CourseRequest, pack: ArithmeticPack | KnowledgePack | None) -> str:
    """``pack_id|version|subject|grade|mode`` — everything that may change the course, nothing else."""
    pack_part = f"{pack.pack_id}|{pack.version}" if pack is not None else "none|0"
    grade = request.grade or request.grade_band
    return f"{pack_part}|{request.subject.casefold()}|{grade}|{request.mode}"


def seeded_rng(seed: str, purpose: str) -> random.Random:
    """A PRNG from sha256 (Python's ``hash()`` is salted per process and would break determinism)."""
    digest = hashlib.sha256(f"{seed}|{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def compute(op: str, a: int, b: int) -> int:
    """The exact result; division is only ever asked for with exact multiples."""
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        if b == 0 or a % b != 0:
            raise ValueError(f"{a} ÷ {b} is not an exact division")
        return a // b
    raise ValueError(f"unknown operation {op!r}")


def _pick(rng: random.Random, bounds: tuple[int, int] | None, values: list[int] | None) -> int:
    if values is not None:
        return rng.choice(values)
    assert bounds is not None
    return rng.randint(bounds[0], bounds[1])


def draw_problem(rng: random.Random, op: str, spec: ArithmeticGroup, used: set[tuple[int, int]]) -> ArithmeticMeta:
    """One problem within the group's ranges and result bounds, preferring ones not used yet.

    For division ``first`` is the quotient and ``second`` the divisor, so ``a = quotient × divisor``.
    """
    fallback: ArithmeticMeta | None = None
    for _ in range(_MAX_DRAWS):
        x = _pick(rng, spec.first, spec.first_values)
        y = _pick(rng, spec.second, spec.second_values)
        if spec.exclude_zero and (x == 0 or y == 0):
            continue
        if op == "div":
            if y == 0:
                continue
            a, b = x * y, y
        else:
            a, b = x, y
        expected = compute(op, a, b)
        if spec.min_result is not None and expected < spec.min_result:
            continue
        if spec.max_result is not None and expected > spec.max_result:
            continue
        meta = ArithmeticMeta(op=op, a=a, b=b, expected=expected)  # type: ignore[arg-type]
        if (a, b) not in used:
            used.add((a, b))
            return meta
        fallback = fallback or meta
    if fallback is None:
        raise ValueError(f"group {spec.name!r}: no {op} problem satisfies its ranges and result bounds")
    return fallback  # a small range (e.g. halves of 2..20) repeats problems; that is fine for practice


def _arithmetic_pack_for(topic: str | None, request: CourseRequest, index: PackIndex) -> ArithmeticPack | None:
    """For an arithmetic subject without a pack for this grade: the pack of the nearest band."""
    if topic is None:
        return None
    candidates = [p for p in index.by_key.values() if isinstance(p, ArithmeticPack) and p.topic == topic and p.grade]
    if not candidates:
        return None
    target = band_range(request.band)[0]
    return min(candidates, key=lambda p: (abs(band_range(p.grade)[0] - target), p.pack_id))  # type: ignore[arg-type]


def split_levels(total: int, count: int, titles: list[tuple[str, str | None]]) -> list[Level]:
    """``count`` levels over ``total`` items, as even as integers allow (earlier levels get the extra)."""
    count = max(1, min(count, total))
    size, extra = divmod(total, count)
    levels: list[Level] = []
    start = 0
    for i in range(count):
        length = size + (1 if i < extra else 0)
        title, description = titles[i] if i < len(titles) else (f"Level {i + 1}", None)
        levels.append(Level(id=i + 1, title=title, start=start, end=start + length - 1, description=description))
        start += length
    return levels


def build_skeleton(
    request: CourseRequest,
    choice: StrategyChoice,
    pack: ArithmeticPack | KnowledgePack | None,
    index: PackIndex | None = None,
) -> Skeleton:
    """The structure of the course for ``request``; deterministic for a given request and pack."""
    index = index or default_index()
    topic = pack.topic if pack is not None else index.topic_for(request.subject)
    arithmetic = pack if isinstance(pack, ArithmeticPack) else None
    if pack is None:
        arithmetic = _arithmetic_pack_for(topic, request, index)
    if choice.kind == "deterministic" and pack is None:
        raise ValueError("a deterministic skeleton needs its pack")
    rng = seeded_rng(seed_string(request, pack or arithmetic), "skeleton")

    structure = pack or arithmetic
    if structure is not None:
        blueprint_groups = [g.name for g in structure.item_blueprint.groups]
        n_groups = request.groups_count or len(blueprint_groups)
    else:
        blueprint_groups = []
        n_groups = request.groups_count or DEFAULT_GROUPS
    groups = [
        Group(id=g, name=blueprint_groups[g] if g < len(blueprint_groups) else f"Part {g + 1}") for g in range(n_groups)
    ]

    per_group = items_per_group_for(request, pack)
    items: list[SkeletonItem] = []
    used: set[tuple[int, int]] = set()
    for group in groups:
        spec = None
        if arithmetic is not None:
            specs = arithmetic.item_blueprint.groups
            spec = specs[group.id % len(specs)]
        for k in range(per_group):
            meta = draw_problem(rng, arithmetic.op, spec, used) if arithmetic is not None and spec is not None else None
            items.append(
                SkeletonItem(
                    id=len(items),
                    group_id=group.id,
                    cluster_id=f"g{group.id}-c{k // 3 + 1}",
                    variant=str(k % 3 + 1),  # type: ignore[arg-type]
                    mode=request.mode,
                    meta=meta,
                )
            )

    level_titles = [(lv.title, lv.description) for lv in structure.item_blueprint.levels] if structure else []
    n_levels = request.levels_count or (len(level_titles) if level_titles else DEFAULT_LEVELS)
    levels = split_levels(len(items), n_levels, level_titles)

    sections = pack.sections if pack is not None else []
    if request.study_texts_count is not None:
        n_texts = request.study_texts_count
    else:
        n_texts = len(sections) if sections else DEFAULT_STUDY_TEXTS
    slots = [
        StudyTextSlot(
            id=sections[i].id if i < len(sections) else f"study-text-{i + 1}",
            order=i,
            title_hint=sections[i].title if i < len(sections) else None,
            wants_image=request.wants_images,
        )
        for i in range(n_texts)
    ]

    return Skeleton(
        course_id=request.course_id,
        subject=request.subject,
        grade_band=request.band,
        mode=request.mode,
        locale=request.locale,
        groups=groups,
        levels=levels,
        items=items,
        study_text_slots=slots,
        topic=topic,
        needs_plan=structure is None,
    )
