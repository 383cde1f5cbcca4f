"""The one boundary where untrusted text becomes values: files, JSON, numbers and times read from outside.

Every reader of event files, geometry tables, pixel lists, configuration files and command-line values goes
through this module, so that a bad input can only ever end as one :class:`InputError` line (exit code 2):

* :func:`read_text` / :func:`decode_text`: strict UTF-8 (a non-UTF-8 file is an input error, not a crash);
* :func:`loads_json`: duplicate keys refused, integer literals limited to the signed 64-bit range (so an id or
  a 400-digit number never reaches ``float()`` or numpy), strings with lone surrogates (which cannot be
  written to a log, a UTF-8 file or SQLite) refused, nesting bounded;
* :func:`parse_int` / :func:`parse_float` / :func:`parse_time`: one CLI or text value, with its range;
* :func:`guarded`: validation code runs inside it, and *any* exception that escapes it (``OverflowError``
  from a time at the edge of the datetime range, ``ValueError`` from numpy, ``RecursionError``...) becomes an
  :class:`InputError` naming the input. The checks above give good messages; the guard makes the contract
  hold by construction for whatever they missed.

Pure functions, no pipeline imports: ``skyscan.reco`` uses them for events and geometries, the pipeline for
everything else.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from skyscan.reco.errors import InputError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_NESTING",
    "TIME_MAX",
    "TIME_MIN",
    "check_strings",
    "decode_text",
    "guarded",
    "loads_json",
    "one_line",
    "parse_float",
    "parse_int",
    "parse_time",
    "read_text",
    "shown",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_NESTING = 64
"""Deepest nesting of JSON arrays/objects accepted (an event needs 3)."""

TIME_MIN = datetime(1900, 1, 1, tzinfo=timezone.utc)
TIME_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
"""Times are accepted in [1900, 2200) UTC: wide for any detector, far from the edges of ``datetime`` (year 1 and
9999, where a time-zone shift overflows) and of the leap-second/earth-rotation tables used for coordinates."""

_MAX_INT_DIGITS = 20  # INT64 has 19 digits; longer literals are refused before int() is called on them


def shown(value: Any, limit: int = 40) -> str:
    """A value as quoted in an error message: ``repr``, at most ``limit`` characters, always one line."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ cannot exist in decoded data, but be total anyway
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int = 200) -> str:
    """Whitespace runs as one space, other control characters escaped, at most ``limit`` characters."""
    flat = " ".join(text.split())
    if any(c < " " or c == "\x7f" for c in flat) or not flat.isprintable():
        flat = flat.encode("unicode_escape", "backslashreplace").decode("ascii")
    return flat[:limit]


@contextlib.contextmanager
def guarded(where: str) -> Iterator[None]:
    """Turn any exception raised inside into an :class:`InputError` naming ``where``.

    An :class:`InputError` passes unchanged; ``KeyboardInterrupt``/``SystemExit`` (not ``Exception``) too.
    ``MemoryError`` is not an input property and is left alone.
    """
    try:
        yield
    except InputError:
        raise
    except MemoryError:
        raise
    except RecursionError:
        raise InputError(f"{where}: nested too deeply") from None
    except Exception as exc:
        detail = one_line(str(exc)) or exc.__class__.__name__
        raise InputError(f"{where}: invalid value ({exc.__class__.__name__}: {detail})") from None


# ---------------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------------
def decode_text(data: bytes, where: str) -> str:
    """Bytes as strict UTF-8 (a leading byte-order mark is dropped); InputError naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: cannot read: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The text of a regular file; a missing file, a folder or unreadable bytes are InputErrors naming it."""
    p = Path(path)
    try:
        if not p.exists():
            raise InputError(f"{p}: no such {what}")
        if p.is_dir():
            raise InputError(f"{p}: is a directory, not a {what}")
        data = p.read_bytes()
    except InputError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in the path
        raise InputError(f"{p}: cannot read {what} ({exc.__class__.__name__})") from None
    return decode_text(data, str(p))


def check_strings(value: Any, where: str) -> Any:
    """``value`` if no string in it (keys included) holds a lone surrogate; InputError otherwise.

    Iterative, so it also bounds the nesting depth at :data:`MAX_NESTING` without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_str(item, where)
        elif isinstance(item, (list, tuple, dict)):
            if depth >= MAX_NESTING:
                raise InputError(f"{where}: nested more than {MAX_NESTING} levels deep")
            if isinstance(item, dict):
                for key, v in item.items():
                    stack.append((key, depth + 1))
                    stack.append((v, depth + 1))
            elif not _SCALAR_TYPES.issuperset(map(type, item)):  # a column of numbers (most of an event) is skipped
                stack.extend((v, depth + 1) for v in item)
    return value


_SCALAR_TYPES = frozenset((int, float, bool, type(None)))  # what JSON decodes that holds no string and no nesting


def _check_str(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{where}: string with an unpaired surrogate \\u{ord(text[exc.start]):04x}") from None


# ---------------------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------------------
def _pairs(where: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InputError(f"{where}: duplicate key {shown(key)}")
            out[key] = value
        return out

    return hook


#: An integer literal of at most this many characters (sign included) always fits in 64 bits.
_SAFE_INT_CHARS = 18


def _json_int(where: str) -> Any:
    def parse(text: str) -> int:
        if len(text) <= _SAFE_INT_CHARS:  # the common case, checked by its length alone
            return int(text)
        digits = text.lstrip("-")
        if len(digits) > _MAX_INT_DIGITS:
            raise InputError(f"{where}: integer with {len(digits)} digits is out of the 64-bit range")
        value = int(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InputError(f"{where}: integer {value} is out of the 64-bit range")
        return value

    return parse


def loads_json(text: str | bytes, where: str) -> Any:
    """A JSON document from untrusted text; every problem is an InputError naming ``where``.

    ``NaN``/``Infinity`` literals and float literals that overflow (``1e999``) are decoded as the non-finite
    floats Python's ``json`` makes of them, so that the validators can name the field holding them (every
    number validator refuses non-finite values); everything that cannot become a safe value is refused here.
    """
    if isinstance(text, bytes):
        text = decode_text(text, where)
    with guarded(where):
        try:
            doc = json.loads(text, object_pairs_hook=_pairs(where), parse_int=_json_int(where))
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        return check_strings(doc, where)


# ---------------------------------------------------------------------------------------------------------------
# Single values (command-line options, lines of list files)
# ---------------------------------------------------------------------------------------------------------------
def parse_int(text: Any, where: str, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int:
    """A decimal integer (``_`` separators not allowed) in [minimum, maximum]."""
    if isinstance(text, bool):
        raise InputError(f"{where}: expected an integer, got {shown(text)}")
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip()
        body = s[1:] if s[:1] in "+-" else s
        if not body or not body.isascii() or not body.isdigit():
            raise InputError(f"{where}: expected an integer, got {shown(text)}")
        if len(body.lstrip("0")) > _MAX_INT_DIGITS:
            raise InputError(f"{where}: {len(body)}-digit integer is out of range ({minimum}..{maximum})")
        value = int(s)
    if not minimum <= value <= maximum:
        raise InputError(f"{where}: out of range (must lie in {minimum}..{maximum}), got {value}")
    return value


def parse_float(text: Any, where: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite number in [minimum, maximum] (either bound optional)."""
    if isinstance(text, bool):
        raise InputError(f"{where}: expected a number, got {shown(text)}")
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: must be a finite number, got {shown(text)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{where}: must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InputError(f"{where}: must be <= {maximum:g}, got {value:g}")
    return value


def parse_time(value: Any, where: str = "time") -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) in [TIME_MIN, TIME_MAX), as an aware UTC datetime."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{where}: not an ISO 8601 time: {shown(value)}") from None
    else:
        raise InputError(f"{where}: expected an ISO 8601 UTC string, got {type(value).__name__}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    # Compare before converting: astimezone() overflows at the edges of the datetime range.
    offset = t.utcoffset() or timedelta(0)
    naive = t.replace(tzinfo=None)
    lo, hi = TIME_MIN.replace(tzinfo=None) + offset, TIME_MAX.replace(tzinfo=None) + offset
    if not lo <= naive < hi:
        raise InputError(f"{where}: {shown(value)} is outside the accepted range "
                         f"{TIME_MIN:%Y-%m-%d} to {TIME_MAX:%Y-%m-%d} UTC")
    return t.astimezone(timezone.utc)
