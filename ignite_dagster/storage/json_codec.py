"""The JSON encodings of what we store (course.json, debug artifacts, the answer cache) and send (a model
call's request body), in one place, encoded by ``orjson``.

Why orjson (issue 23): the standard library's C encoder is used only without ``indent``; course.json and
the debug artifacts are indented for the people who read them, so each was encoded by the pure-Python
encoder: ~0.9 ms for a 48-item course, ~0.7 ms for its draft, on the one interpreter the courses of a
run share. orjson writes the same bytes (two-space indent, ``": "`` and ``","`` separators, UTF-8 as is)
in ~0.015 ms. Floats keep their value, not always their spelling (``0.00001`` where json wrote ``1e-05``);
a NaN is written as ``null``, which JSON can hold, where json wrote ``NaN``, which it cannot. With a
``default``, datetimes and dataclasses go to it as they did with json (orjson would encode them itself).
Where orjson refuses what the standard library accepts (an integer beyond 64 bits, a key that is not a
string) the standard library encodes it, with the same layout, so no document that could be stored
before is refused now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_INDENT = orjson.OPT_INDENT_2
_SORTED = orjson.OPT_SORT_KEYS
_TO_DEFAULT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _options(sort_keys: bool, default: Callable[[Any], Any] | None) -> int:
    return (_SORTED if sort_keys else 0) | (_TO_DEFAULT if default is not None else 0)


def dump_document(doc: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> bytes:
    """``doc`` as indented UTF-8 JSON: the bytes of ``json.dumps(doc, ensure_ascii=False, indent=2)``."""
    try:
        return orjson.dumps(doc, option=_INDENT | _options(sort_keys, default), default=default)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=sort_keys, default=default).encode("utf-8")


def dump_compact(doc: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> bytes:
    """``doc`` as compact UTF-8 JSON: the bytes of ``json.dumps(doc, ensure_ascii=False, separators=(",", ":"))``."""
    try:
        return orjson.dumps(doc, option=_options(sort_keys, default), default=default)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys,
                          default=default).encode("utf-8")


def load(data: bytes | str) -> Any:
    """Parse JSON bytes or text (``ValueError`` when it is not JSON, as ``json.loads`` raises)."""
    return orjson.loads(data)  # orjson.JSONDecodeError is a ValueError (json.JSONDecodeError)
