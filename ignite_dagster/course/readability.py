"""Flesch–Kincaid grade level with a syllable heuristic (no dictionary, no dependencies).

Good enough to gate study texts against a pack's ``reading_level_max``: the heuristic is within about a
grade of dictionary-based tools on ordinary prose, and it is deterministic, so a gate never flaps.
"""

from __future__ import annotations

import re

_MARKER_RE = re.compile(r"\[(?:SECTION|IMAGE):[^\]]*\]")
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_SPLIT_RE = re.compile(r"[.!?]+|\n+")
_VOWEL_GROUP_RE = re.compile(r"[aeiouy]+")


def strip_markers(text: str) -> str:
    """Remove ``[SECTION:…]`` and ``[IMAGE:…]`` markers; headings are not prose."""
    return _MARKER_RE.sub("\n", text)


def count_syllables(word: str) -> int:
    """Vowel groups, minus a silent final ``e``, at least one."""
    w = word.lower().strip("'")
    if not w:
        return 0
    if w.endswith("'s"):
        w = w[:-2]
    groups = len(_VOWEL_GROUP_RE.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    # "jumped", "likes": the ending is not a syllable of its own (but "wanted", "boxes" stay).
    silent_ending = w.endswith(("ed", "es")) and len(w) > 3 and groups > 1 and w[-3] not in "dtaeiouy"
    if silent_ending and not w.endswith(("ses", "zes", "xes", "ches", "shes", "ges", "ces")):
        groups -= 1
    return max(groups, 1)


def text_stats(text: str) -> tuple[int, int, int]:
    """``(words, sentences, syllables)`` of prose with markers removed."""
    prose = strip_markers(text)
    sentences = [s for s in _SENTENCE_SPLIT_RE.split(prose) if _WORD_RE.search(s)]
    words = _WORD_RE.findall(prose)
    syllables = sum(count_syllables(w) for w in words)
    return len(words), max(len(sentences), 1), syllables


def flesch_kincaid_grade(text: str) -> float:
    """0.39·(words/sentence) + 11.8·(syllables/word) − 15.59; 0.0 for text without words."""
    words, sentences, syllables = text_stats(text)
    if words == 0:
        return 0.0
    return round(0.39 * (words / sentences) + 11.8 * (syllables / words) - 15.59, 2)
