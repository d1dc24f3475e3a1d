"""Catalog tags: derived from the request and the course, plus the free tags a request carries.

Derived tags are ``<facet>:<value>`` (``subject:water-cycle``, ``grade-band:3-5``, ``locale:pt-BR``,
``strategy:deterministic``); free tags cannot hold ``:`` (``course.request.TAG_REGEX``), so a requester
cannot forge a facet. The catalog (``course_metadata.tags``) stores the list; reads filter with
``tags @> [...]``, so a facet is searchable the same way as a free tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FACETS = ("subject", "grade-band", "locale", "strategy")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """``"The Water Cycle"`` → ``"the-water-cycle"`` (non-ASCII letters are dropped, not guessed)."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def facet(name: str, value: str) -> str:
    """One derived tag; ``facet("subject", "Water cycle")`` → ``"subject:water-cycle"``."""
    if name not in FACETS:
        raise ValueError(f"unknown tag facet {name!r}: one of {', '.join(FACETS)}")
    return f"{name}:{slug(value) if name == 'subject' else value}"


def catalog_tags(*, subject: str | None, grade_band: str | None, locale: str | None, strategy: str | None,
                 free: Iterable[str] = ()) -> list[str]:
    """The catalog row's tags: the facets that are known, then the free tags, each once."""
    derived = [facet(name, value) for name, value in
               (("subject", subject), ("grade-band", grade_band), ("locale", locale), ("strategy", strategy))
               if value and (name != "subject" or slug(value))]
    return list(dict.fromkeys([*derived, *free]))
