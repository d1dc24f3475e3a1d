"""Numbers as course texts state them: shared by validation (arithmetic against the skeleton) and the
quality gates (answers that follow from the text), which must read "1,200" the same way."""

from __future__ import annotations


def parse_number(text: str) -> float | None:
    """An option's numeric value ("1,200" → 1200.0); None when it is not a plain number."""
    cleaned = text.strip().replace(",", "").replace("\u2212", "-").replace(" ", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def numbers_equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
