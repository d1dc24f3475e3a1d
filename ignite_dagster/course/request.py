"""The course request: the one definition of what a requester may ask for.

Its fields drive everything else: the HTTP schema (the API's payload model *is* this model, made
strict), the job row (one column per field, except the free texts stored apart in object storage), the
worker's rebuild of the request from that row, the idempotency fingerprint and the CLI's flags. A field
added here therefore either reaches every one of them or fails loudly (a row model without its column).

Patterns are *full* matches. Python's ``$`` also matches before a trailing newline, so ``"abc\\n"``
would pass ``^[a-z0-9-]{1,64}$`` under ``re.match``; :class:`FullMatch` enforces with ``re.fullmatch``
and publishes ``^(?:...)$``, which in JSON Schema (ECMA-262) already means "the whole string".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

Mode = Literal["options", "numeric"]
StrategyKind = Literal["deterministic", "llm"]
Visibility = Literal["org", "public"]

NOTES_MAX = 20_000
STUDY_TEXT_MAX = 50_000
SUBJECT_MAX = 200

# Fields whose text is stored in object storage (special_requests.json), not on the job row.
STORED_APART: tuple[str, ...] = ("notes", "study_text")


@dataclass(frozen=True)
class FullMatch:
    """``Annotated[str, FullMatch(regex)]``: the whole string must match ``regex``.

    Enforced with :func:`re.fullmatch` and published as ``^(?:regex)$``. Write ``regex`` with explicit
    character classes (no ``\\s``, ``\\w``, ``\\d``, whose sets differ between Python and ECMA-262), so
    that the published pattern and the enforced one accept exactly the same strings.
    """

    regex: str
    message: str | None = None

    @property
    def published(self) -> str:
        return f"^(?:{self.regex})$"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        compiled = re.compile(self.regex)
        published, message = self.published, self.message

        def check(value: str) -> str:
            if compiled.fullmatch(value) is None:
                if message:
                    raise PydanticCustomError("string_pattern_mismatch", message)
                raise PydanticCustomError(
                    "string_pattern_mismatch", "String should match pattern '{pattern}'", {"pattern": published}
                )
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out["pattern"] = self.published
        return out


def _band_regex() -> str:
    """Every grade band ``low-high`` with K/0 <= low <= high <= 12, spelled out: a regex cannot compare
    numbers, and the published schema must accept exactly what the service accepts."""
    grades = [str(n) for n in range(13)]
    alternatives = ["(?:K|k|0)-(?:K|k|" + "|".join(grades) + ")"]
    alternatives += [f"{low}-(?:" + "|".join(grades[low:]) + ")" for low in range(1, 13)]
    return "|".join(alternatives)


TAGS_MAX = 20
ITEM_IMAGES_MAX = 200
# A free tag: lower-case words joined by '-' ("fractions", "spring-term"). No ':' — derived catalog tags
# ("subject:…", "grade-band:…", "locale:…", "strategy:…", catalog/tags.py) own that namespace.
TAG_REGEX = r"[a-z0-9]+(?:-[a-z0-9]+)*"
# Which items want images: "stimulus:<itemId>" / "options:<itemId>" or ":all"; item ids are the
# skeleton's positions 0..N-1 (media/targets.py expands them against the generated course).
ITEM_IMAGE_REGEX = r"(?:stimulus|options):(?:all|0|[1-9][0-9]{0,3})"

# ECMA-262 and Python agree on these explicit sets. Controls are C0, DEL and C1.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"

COURSE_ID_REGEX = r"[a-z0-9-]{1,64}"
BAND_REGEX = _band_regex()
GRADE_REGEX = r"K|k|[0-9]|1[0-2]"
# BCP 47 language[-Script][-Region]: en, fr, pt-BR, zh-Hant-TW, es-419.
LOCALE_REGEX = r"[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
# One line of text with a visible character: no control characters (so no newline, no NUL).
SINGLE_LINE_REGEX = rf"[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*"

CourseId = Annotated[str, FullMatch(COURSE_ID_REGEX)]
GradeBand = Annotated[str, FullMatch(BAND_REGEX, "grade_band must look like 'K-2', '3-5' or '6-8' (grades K..12, low <= high; "
                                              "'College' and 'All' are not served)")]
Grade = Annotated[str, FullMatch(GRADE_REGEX, "grade must be 'K' or a number 1..12, or a grade band such as '3-5' "
                                            "(grades K..12 only: 'College' and 'All' are not served)")]
# A grade may also come as a JSON number. One member is tried (by type), so an error names it plainly;
# the integer member is strict everywhere: a lax int would read "4\n" as 4.
GradeOrNumber = Annotated[
    Annotated[Grade, Tag("string")] | Annotated[int, Strict(), Field(ge=0, le=12), Tag("integer")],
    Discriminator(lambda v: "integer" if isinstance(v, int) else "string"),
]
Locale = Annotated[str, FullMatch(LOCALE_REGEX, "locale must be a BCP 47 tag such as 'en', 'fr' or 'pt-BR'")]
Tag = Annotated[str, Field(max_length=40), FullMatch(TAG_REGEX, "a tag is lower-case letters and digits joined by '-', e.g. 'spring-term'")]
ItemImage = Annotated[str, FullMatch(ITEM_IMAGE_REGEX, "an item image is 'stimulus:<itemId>', 'options:<itemId>', 'stimulus:all' or 'options:all'")]
Subject = Annotated[
    str,
    Field(min_length=1, max_length=SUBJECT_MAX),
    FullMatch(SINGLE_LINE_REGEX, "subject must be one line of text with a visible character"),
]


def grade_number(grade: str) -> int:
    """``"K"`` → 0, ``"7"`` → 7."""
    return 0 if grade.upper() in ("K", "0") else int(grade)


def band_for_grade(grade: str) -> str:
    """The conventional US grade band a single grade belongs to."""
    n = grade_number(grade)
    if n <= 2:
        return "K-2"
    if n <= 5:
        return "3-5"
    if n <= 8:
        return "6-8"
    return "9-12"


def band_range(band: str) -> tuple[int, int]:
    """``"3-5"`` → (3, 5); ``"K-2"`` → (0, 2)."""
    low, high = band.split("-")
    return grade_number(low), grade_number(high)


def _canonical_grade(text: str) -> str:
    return "K" if text.upper() in ("K", "0") else str(int(text))


def _canonical_locale(tag: str) -> str:
    parts = tag.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        out.append(part.title() if len(part) == 4 else part.upper())
    return "-".join(out)


_LOOSE_GRADE = re.compile(r"grade *(K|\d{1,2})", re.IGNORECASE)
_BAND = re.compile(BAND_REGEX)

# The original system's enqueue-job read these camelCase spellings next to the snake_case ones
# (``course_id || courseId``, ``grade_band || gradeBand || grade``, ``items_per_group || itemsPerGroup``,
# ``study_text || studyText``). They are the same field: given alone, the alias is the field; given
# together with the field, both must say the same thing, or the request is refused naming the alias.
FIELD_ALIASES: dict[str, str] = {
    "courseId": "course_id",
    "gradeBand": "grade_band",
    "itemsPerGroup": "items_per_group",
    "studyText": "study_text",
}


def _merge_aliases(data: dict[str, Any]) -> None:
    for alias, name in FIELD_ALIASES.items():
        if alias not in data:
            continue
        value = data.pop(alias)
        if name in data and data[name] != value:
            raise PydanticCustomError(
                "conflicting_fields", "{alias} '{value}' disagrees with {name} '{given}': send one of them, or the "
                "same value in both", {"alias": alias, "name": name, "value": _short(value), "given": _short(data[name])})
        data[name] = value


def _short(value: Any) -> Any:
    return value[:60] + "…" if isinstance(value, str) and len(value) > 60 else value


def _loose(data: dict[str, Any]) -> dict[str, Any]:
    """Human spellings of the lenient model: en dashes and spaces in a band, ``"grade 7"``, ``pt_BR``."""
    for key in ("grade_band", "grade"):
        band = data.get(key)
        if isinstance(band, str) and (key == "grade_band" or any(d in band for d in "-\u2013\u2014")):
            data[key] = band.replace("\u2013", "-").replace("\u2014", "-").replace(" ", "") or None
    grade = data.get("grade")
    if isinstance(grade, str) and not _BAND.fullmatch(grade):
        m = _LOOSE_GRADE.fullmatch(grade)
        data["grade"] = m.group(1) if m else (grade or None)
    locale = data.get("locale")
    if isinstance(locale, str):
        data["locale"] = locale.replace("_", "-")
    return data


def _canonical_band(band: str) -> str:
    low, high = band.split("-")
    return f"{_canonical_grade(low)}-{_canonical_grade(high)}"


def _grade_as_band(data: dict[str, Any]) -> None:
    """``grade`` holding a band (the original's AI Course Generator sends ``grade: "3-5"`` next to
    ``grade_band: "3-5"``) is the band: it fills ``grade_band`` when that is absent, must equal it when
    present (else 422 naming ``grade``), and leaves ``grade`` empty, since a band is no single grade.
    Anything else in ``grade`` (``"College"``, ``"All"``) stays a grade and is refused by its pattern."""
    grade = data.get("grade")
    if not isinstance(grade, str) or not _BAND.fullmatch(grade):
        return
    band = data.get("grade_band")
    if isinstance(band, str) and _BAND.fullmatch(band) and _canonical_band(band) != _canonical_band(grade):
        raise PydanticCustomError(
            "conflicting_fields", "grade '{grade}' is a grade band that disagrees with grade_band '{band}': send one "
            "of them, or the same band in both", {"grade": grade, "band": band})
    if band is None:
        data["grade_band"] = grade
    data.pop("grade")


class CourseRequest(BaseModel):
    """A validated ``ai_course_generate`` request; bad input fails here with a message naming the field.

    This class (Python callers, the CLI, the worker's rebuild) also takes a few human spellings —
    ``"3–5"`` with an en dash, ``"grade 7"`` — and rewrites them to the canonical form before checking
    the pattern. The HTTP contract (``api.schemas.EnqueuePayload``) is this same model with
    ``lenient = False`` and strict types: exactly what its published schema says, nothing more.

    Both read the original system's payload (its AI Course Generator page and enqueue-job):

    * ``courseId``, ``gradeBand``, ``itemsPerGroup``, ``studyText`` are ``course_id``, ``grade_band``,
      ``items_per_group``, ``study_text`` (:data:`FIELD_ALIASES`); both spellings with different values
      are a 422 naming the alias;
    * ``grade`` may hold a band (``"3-5"``): it is then the band, equal to ``grade_band`` or instead of
      it (a different band is a 422 naming ``grade``), and no single grade is stored;
    * the page's other grade options, ``"College"`` and ``"All"``, name no band of grades K..12 this
      factory serves: a 422 naming ``grade`` (or ``grade_band``), nothing written.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["grade_band"], "properties": {"grade_band": {"type": "string"}}},
                {"required": ["grade"], "properties": {"grade": {"type": ["string", "integer"]}}},
            ]
        },
    )
    lenient: ClassVar[bool] = True

    course_id: CourseId = Field(description="Lower-case letters, digits and '-'; the course's storage key.")
    subject: Subject = Field(description="What the course teaches, e.g. 'addition' or 'the water cycle'.")
    grade_band: GradeBand | None = Field(default=None, description="e.g. K-2, 3-5, 6-8, 9-12")
    grade: GradeOrNumber | None = Field(
        default=None, description="A single grade (K or 1..12); implies its band when grade_band is absent."
    )
    items_per_group: int = Field(default=12, ge=1, le=100, description="Items in each group.")
    mode: Mode = Field(default="options", description="options: multiple choice; numeric: typed answers.")
    notes: str | None = Field(
        default=None, max_length=NOTES_MAX, description="Special requests for the model (stored apart from the job)."
    )
    study_text: str | None = Field(
        default=None, max_length=STUDY_TEXT_MAX, description="The requester's own study text (stored apart)."
    )
    levels_count: int | None = Field(default=None, ge=1, le=20, description="Number of levels.")
    study_texts_count: int | None = Field(default=None, ge=0, le=20, description="Number of study texts.")
    groups_count: int | None = Field(default=None, ge=1, le=12, description="Number of item groups.")
    wants_images: bool = Field(default=False, description="Generate study-text images.")
    strategy: StrategyKind | None = Field(default=None, description="Force a pack (deterministic) or the model (llm).")
    locale: Locale = Field(default="en", description="Language of the course, a BCP 47 tag: en, fr, pt-BR.")
    item_images: list[ItemImage] = Field(
        default_factory=list, max_length=ITEM_IMAGES_MAX,
        description="Item images to generate: 'stimulus:<itemId>' (a picture for the question), 'options:<itemId>' "
        "(one per answer option), or ':all'. Item ids are positions 0..N-1; naming one needs groups_count.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=TAGS_MAX, description="Free catalog tags, e.g. 'spring-term'.")
    visibility: Visibility = Field(default="org", description="Catalog visibility: org (its organization only) or public.")

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        """The original system's spellings (always), then human spellings (only where the model is lenient).

        Never strips a trailing newline: a value that is not what it looks like is refused, not silently
        rewritten. See :func:`seed_spellings` for the mapping of the original's payload."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        _merge_aliases(data)
        if cls.lenient:
            data = _loose(data)
        _grade_as_band(data)
        return data

    @field_validator("grade_band", mode="after")
    @classmethod
    def _band_canonical(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_band(value)

    @field_validator("grade", mode="after")
    @classmethod
    def _grade_canonical(cls, value: str | int | None) -> str | None:
        return None if value is None else _canonical_grade(str(value))

    @field_validator("locale", mode="after")
    @classmethod
    def _locale_canonical(cls, value: str) -> str:
        return _canonical_locale(value)

    @field_validator("subject", mode="after")
    @classmethod
    def _trim_subject(cls, value: str) -> str:
        return value.strip()

    @field_validator("notes", "study_text", mode="after")
    @classmethod
    def _empty_to_none(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("tags", "item_images", mode="after")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _band_or_grade(self) -> CourseRequest:
        if self.grade_band is None and self.grade is None:
            raise ValueError("one of grade_band (e.g. '3-5') or grade (e.g. '4') is required")
        if self.grade_band is None and self.grade is not None:
            self.grade_band = band_for_grade(self.grade)
        return self

    @model_validator(mode="after")
    def _item_images_servable(self) -> CourseRequest:
        """Refuse, naming the field, item images the course cannot have: accepted means honoured."""
        for spec in self.item_images:
            kind, _, which = spec.partition(":")
            if kind == "options" and self.mode != "options":
                raise PydanticCustomError(
                    "item_images", "item_images: {spec} asks for option images, but mode {mode} has no options",
                    {"spec": spec, "mode": self.mode})
            if which == "all":
                continue
            if self.groups_count is None:
                raise PydanticCustomError(
                    "item_images", "item_images: {spec} names an item; set groups_count so item ids are known "
                    "(ids are 0..groups_count*items_per_group-1), or use '{kind}:all'", {"spec": spec, "kind": kind})
            total = self.groups_count * self.items_per_group
            if int(which) >= total:
                raise PydanticCustomError(
                    "item_images", "item_images: {spec} names no item (the course has items 0..{last})",
                    {"spec": spec, "last": total - 1})
        return self

    @property
    def band(self) -> str:
        """The grade band, always set after validation."""
        assert self.grade_band is not None
        return self.grade_band

    # -- what the rest of the system derives from the request ------------------------------------------
    @staticmethod
    def column_names() -> tuple[str, ...]:
        """The fields stored on the job row: every field but the texts stored apart."""
        return tuple(name for name in CourseRequest.model_fields if name not in STORED_APART)

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CourseRequest.column_names()}

    def stored_apart(self) -> dict[str, str]:
        """The notes/study text to save in object storage (only those given)."""
        return {name: getattr(self, name) for name in STORED_APART if getattr(self, name)}

    def fingerprint(self) -> str:
        """sha256 of the canonical request: validated values, defaults left out (so that a field added
        later with a default does not change older requests' fingerprints). The same request has the
        same fingerprint whatever the spelling it arrived in (``grade: 4`` or ``"4"``)."""
        doc = self.model_dump(mode="json", exclude_defaults=True, include=set(CourseRequest.model_fields))
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem, joined; no echo of huge input values (a 1 MB notes field)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "request"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
