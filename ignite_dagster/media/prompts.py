"""Image prompts and alt texts for items, built from the item's own text.

Why from the item itself: a stimulus must show the situation the question describes and an option
image must show that option, whatever the course's language; the item text is the only source that
says what that is. The prompts ask for pictures without writing (a picture full of invented letters
helps nobody) and never for the answer (a stimulus that shows it gives the question away).

Alt texts are the item's own words (the question, or the option), so they are in the course's
language and say what a screen-reader user needs: they are derived again when the image is attached
(``media.attach.apply_attachment``), from the document as it is then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PROMPT_MAX = 4000  # ai_media_jobs.prompt
ALT_MAX = 300
QUESTION_MAX = 600

_BLANK = re.compile(r"\[blank\]", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def question_text(item: Mapping[str, Any]) -> str:
    """The item's text on one line, the ``[blank]`` shown as a gap."""
    text = _BLANK.sub("___", str(item.get("text") or ""))
    return _SPACES.sub(" ", text).strip()[:QUESTION_MAX]


def option_text(item: Mapping[str, Any], index: int) -> str:
    options = item.get("options") or []
    return _SPACES.sub(" ", str(options[index])).strip() if 0 <= index < len(options) else ""


def stimulus_prompt(item: Mapping[str, Any]) -> str:
    return (f'A clear, friendly illustration for a school exercise. The question is: "{question_text(item)}". '
            "Show the situation the question describes. No words, letters or numbers in the picture, "
            "and do not show the answer.")[:PROMPT_MAX]


def option_prompt(item: Mapping[str, Any], index: int) -> str:
    return (f'A small, simple illustration of "{option_text(item, index)}", one of the answer options of the '
            f'question "{question_text(item)}". Show only that option, on a plain background; '
            "no words, letters or numbers in the picture.")[:PROMPT_MAX]


def item_alt(item: Mapping[str, Any], target: Mapping[str, Any]) -> str | None:
    """The alt text of an item image: the question for a stimulus, the option's text for an option."""
    if target.get("type") == "item_stimulus":
        return question_text(item)[:ALT_MAX] or None
    if target.get("type") == "item_option":
        return option_text(item, int(target.get("optionIndex") or 0))[:ALT_MAX] or None
    return None
