"""Deterministic content packs: curated JSON shipped with the package, and their index.

A pack file is named ``<topic>.g<grade>.json`` (``<grade>`` a single grade like ``4`` or a band like
``3-5`` / ``K-2``) or ``<topic>.json`` for any grade. Lookup for a request tries the exact grade, then
its band, then the grade-free file. Subjects are matched on a slug of the subject against each pack's
topic and aliases ("Adding", "addition facts", "plus" → ``addition``), so learners' and teachers'
everyday words find the curated pack.

Two kinds exist: ``arithmetic`` packs compute items and answers exactly from operand ranges, and
``knowledge`` packs hold hand-written facts (cloze sentences with their answer and distractors).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ignite_dagster.course.request import CourseRequest, band_for_grade
from ignite_dagster.course.validation import ContentGates

PACKS_DIR = Path(__file__).resolve().parent / "packs"

ArithmeticOp = Literal["add", "sub", "mul", "div"]
ErrorKind = Literal[
    "off_by_one",
    "wrong_operation",
    "carry_slip",
    "borrow_slip",
    "place_value_slip",
    "reversed_digits",
    "reversed_operands",
    "one_group_off",
    "partial_product_slip",
    "remainder_ignored",
    "dropped_zero",
    "sign_error",
]


class _PackModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Section(_PackModel):
    """One study text: ``content`` uses ``[SECTION:…]`` and ``[IMAGE:…]`` markers."""

    id: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1)
    learning_objectives: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    difficulty: str | None = None
    estimated_reading_time: int | None = None


class LevelSpec(_PackModel):
    title: str = Field(min_length=1, max_length=120)
    description: str | None = None


class ArithmeticTemplate(_PackModel):
    """A phrasing; ``{a}``, ``{b}``, ``{expr}``, ``{name}``, ``{things}`` are filled at compile time."""

    variant: Literal["1", "2", "3"]
    text: str


class ArithmeticGroup(_PackModel):
    """Operand ranges of one group. For division ``first`` is the quotient and ``second`` the divisor,
    so every dividend is an exact multiple."""

    name: str = Field(min_length=1, max_length=120)
    first: tuple[int, int] | None = None
    second: tuple[int, int] | None = None
    first_values: list[int] | None = None
    second_values: list[int] | None = None
    min_result: int | None = None
    max_result: int | None = None
    exclude_zero: bool = True
    cloze_templates: list[ArithmeticTemplate] | None = None
    hint_templates: list[str] | None = None
    explain_templates: list[str] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> ArithmeticGroup:
        for rng, values, label in ((self.first, self.first_values, "first"), (self.second, self.second_values, "second")):
            if (rng is None) == (values is None):
                raise ValueError(f"group {self.name!r}: give exactly one of {label} or {label}_values")
            if rng is not None and rng[0] > rng[1]:
                raise ValueError(f"group {self.name!r}: {label} range {rng} is empty")
        return self


class KnowledgeGroup(_PackModel):
    name: str = Field(min_length=1, max_length=120)


class ArithmeticBlueprint(_PackModel):
    groups: list[ArithmeticGroup] = Field(min_length=1)
    items_per_group: int = Field(ge=1, le=100)
    levels: list[LevelSpec] = Field(min_length=1)


class KnowledgeBlueprint(_PackModel):
    groups: list[KnowledgeGroup] = Field(min_length=1)
    items_per_group: int = Field(ge=1, le=100)
    levels: list[LevelSpec] = Field(min_length=1)


class WordProblemFillers(_PackModel):
    names: list[str] = Field(min_length=1)
    things: list[str] = Field(min_length=1)


class Fact(_PackModel):
    """One fact as three cloze phrasings (the variants of one cluster) with its answer."""

    id: str = Field(pattern=r"^[a-z0-9-]{1,48}$")
    group: int = Field(ge=0)
    variants: list[str] = Field(min_length=3, max_length=3)
    answer: str = Field(min_length=1, max_length=200)
    explain: str = Field(min_length=1, max_length=1000)
    hint: str = Field(min_length=1, max_length=200)
    section: str | None = None


class _PackBase(_PackModel):
    pack_id: str
    version: str
    topic: str = Field(pattern=r"^[a-z0-9-]+$")
    grade: str | None = None
    title: str = Field(min_length=1, max_length=120)
    description: str = Field(min_length=1, max_length=500)
    aliases: list[str] = Field(default_factory=list)
    allowed_vocab: list[str] = Field(default_factory=list)
    banned_terms: list[str] = Field(default_factory=list)
    reading_level_max: float | None = None
    locale: str = "en"
    sections: list[Section] = Field(default_factory=list)

    @property
    def gates(self) -> ContentGates:
        return ContentGates(banned_terms=self.banned_terms, reading_level_max=self.reading_level_max,
                            subject_terms=[self.topic.replace("-", " "), *self.aliases, *self.allowed_vocab])

    @property
    def modes(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def grade_bands(self) -> tuple[str, ...]:
        """The grade bands this pack is written for (reading level, vocabulary, number ranges); empty
        when the pack declares none and serves every band."""
        return (self.grade,) if self.grade else ()

    def serves_band(self, request: CourseRequest) -> bool:
        return not self.grade_bands or request.band in self.grade_bands

    def unsupported_reason(self, request: CourseRequest) -> str | None:
        """Why this pack cannot compile ``request`` (None when it can). Never a silent clamp."""
        if not self.serves_band(request):
            # a grade 6-8 text labelled K-2 would be a lie on the course; the model writes for the band asked
            return f"pack {self.pack_id} is written for grades {', '.join(self.grade_bands)}, not {request.band}"
        if request.locale.split("-")[0].casefold() != self.locale.casefold():
            return f"pack {self.pack_id} is written in {self.locale!r}, not {request.locale!r}"
        if request.mode not in self.modes:
            return f"pack {self.pack_id} supports mode(s) {', '.join(self.modes)}, not {request.mode!r}"
        groups = len(self.item_blueprint.groups)  # type: ignore[attr-defined]
        if request.groups_count is not None and request.groups_count > groups:
            return f"pack {self.pack_id} has {groups} groups; {request.groups_count} were requested"
        if request.study_texts_count is not None and request.study_texts_count > len(self.sections):
            return f"pack {self.pack_id} has {len(self.sections)} study texts; {request.study_texts_count} were requested"
        return None


class ArithmeticPack(_PackBase):
    kind: Literal["arithmetic"]
    op: ArithmeticOp
    item_blueprint: ArithmeticBlueprint
    cloze_templates: list[ArithmeticTemplate] = Field(min_length=1)
    hint_templates: list[str] = Field(min_length=1)
    explain_templates: list[str] = Field(min_length=1)
    distractors: list[ErrorKind] = Field(min_length=3)
    word_problem: WordProblemFillers | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        return ("options", "numeric")


class KnowledgePack(_PackBase):
    """Facts written by hand. Options mode only: the answers are words, and a numeric item needs a
    number — a knowledge course in numeric mode is refused rather than faked."""

    kind: Literal["knowledge"]
    item_blueprint: KnowledgeBlueprint
    cloze_templates: list[Fact] = Field(min_length=1)
    distractors: dict[str, list[str]]

    @model_validator(mode="after")
    def _facts_consistent(self) -> KnowledgePack:
        ids = [f.id for f in self.cloze_templates]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pack {self.pack_id}: duplicate fact ids")
        section_ids = {s.id for s in self.sections}
        for fact in self.cloze_templates:
            wrong = self.distractors.get(fact.id)
            if not wrong or len(wrong) < 3:
                raise ValueError(f"pack {self.pack_id}: fact {fact.id} needs at least 3 distractors")
            if fact.answer.casefold() in {w.casefold() for w in wrong}:
                raise ValueError(f"pack {self.pack_id}: fact {fact.id} lists its answer as a distractor")
            if fact.group >= len(self.item_blueprint.groups):
                raise ValueError(f"pack {self.pack_id}: fact {fact.id} names group {fact.group}, which does not exist")
            if fact.section is not None and fact.section not in section_ids:
                raise ValueError(f"pack {self.pack_id}: fact {fact.id} names unknown section {fact.section}")
        extra = set(self.distractors) - set(ids)
        if extra:
            raise ValueError(f"pack {self.pack_id}: distractors for unknown facts {sorted(extra)}")
        return self

    @property
    def modes(self) -> tuple[str, ...]:
        return ("options",)

    def facts_in_group(self, group: int) -> list[Fact]:
        return [f for f in self.cloze_templates if f.group == group]

    def unsupported_reason(self, request: CourseRequest) -> str | None:
        reason = super().unsupported_reason(request)
        if reason:
            return reason
        groups = request.groups_count or len(self.item_blueprint.groups)
        wanted = items_per_group_for(request, self)
        for g in range(groups):
            capacity = 3 * len(self.facts_in_group(g))
            if wanted > capacity:
                return (
                    f"pack {self.pack_id} holds {capacity} items for group {g} "
                    f"({self.item_blueprint.groups[g].name}); {wanted} were requested"
                )
        return None


def items_per_group_for(request: CourseRequest, pack: ArithmeticPack | KnowledgePack | None) -> int:
    """The request's count when the requester set it, else the pack's blueprint count, else the default."""
    if pack is not None and "items_per_group" not in request.model_fields_set:
        return pack.item_blueprint.items_per_group
    return request.items_per_group


Pack = Annotated[ArithmeticPack | KnowledgePack, Field(discriminator="kind")]


class _PackFile(BaseModel):
    pack: Pack


def slugify(text: str) -> str:
    """Lower-case words joined by ``-`` ("The Water Cycle!" → "the-water-cycle")."""
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")


def load_pack(path: Path) -> ArithmeticPack | KnowledgePack:
    """Parse one pack file; a broken shipped pack is a bug and fails loudly with the file name."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _PackFile.model_validate({"pack": data}).pack
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"pack file {path.name} is invalid: {exc}") from exc


class PackIndex:
    """All packs of a folder, by file key (``addition.g3-5``) and by subject alias."""

    def __init__(self, packs: dict[str, ArithmeticPack | KnowledgePack]):
        self.by_key = packs
        self.by_id = {p.pack_id: p for p in packs.values()}
        self.aliases: dict[str, str] = {}
        for pack in packs.values():
            for name in [pack.topic, *pack.aliases]:
                self.aliases[slugify(name)] = pack.topic

    @classmethod
    def from_dir(cls, directory: Path = PACKS_DIR) -> PackIndex:
        packs: dict[str, ArithmeticPack | KnowledgePack] = {}
        for path in sorted(directory.glob("*.json")):
            pack = load_pack(path)
            key = path.name[: -len(".json")]
            expected_prefix = pack.topic
            if key != expected_prefix and not key.startswith(expected_prefix + ".g"):
                raise ValueError(f"pack file {path.name}: name must be {pack.topic}.json or {pack.topic}.g<grade>.json")
            packs[key] = pack
        return cls(packs)

    def topic_for(self, subject: str) -> str | None:
        return self.aliases.get(slugify(subject))

    def topics(self) -> list[str]:
        return sorted({p.topic for p in self.by_key.values()})

    def get(self, pack_id: str) -> ArithmeticPack | KnowledgePack | None:
        return self.by_id.get(pack_id)

    def find(self, subject: str, grade_band: str | None = None, grade: str | None = None) -> ArithmeticPack | KnowledgePack | None:
        """The most specific pack for the subject: exact grade, then band, then grade-free."""
        topic = self.topic_for(subject)
        if topic is None:
            return None
        keys: list[str] = []
        if grade is not None:
            keys.append(f"{topic}.g{grade}")
            grade_band = grade_band or band_for_grade(grade)
        if grade_band is not None:
            keys.append(f"{topic}.g{grade_band}")
        keys.append(topic)
        for key in keys:
            if key in self.by_key:
                return self.by_key[key]
        return None

    def find_for(self, request: CourseRequest) -> ArithmeticPack | KnowledgePack | None:
        return self.find(request.subject, request.grade_band, request.grade)


@lru_cache(maxsize=1)
def default_index() -> PackIndex:
    """The packs shipped in ``generation/packs`` (parsed once per process)."""
    return PackIndex.from_dir(PACKS_DIR)


def find_pack(subject: str, grade_band: str | None = None, grade: str | None = None) -> ArithmeticPack | KnowledgePack | None:
    """``default_index().find(...)``: the shipped pack for a subject and grade, or None."""
    return default_index().find(subject, grade_band, grade)
