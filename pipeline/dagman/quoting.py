"""Quoting rules of the DAGMan and submit-file languages: VARS values, ``arguments`` and ``environment``.

They are HTCondor's rules, not skyscan's: the DAG parser reads VARS lines with :func:`parse_vars`, the local
executor turns a submit file's ``arguments``/``environment`` into argv and variables with
:func:`split_arguments`/:func:`parse_environment`, and writers quote values with :func:`quote_vars_value`.
Errors are ``ValueError`` with a one-line message; the caller adds the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["parse_environment", "parse_vars", "quote_vars_value", "split_arguments"]

_MACRO_NAME = re.compile(r"\+?[A-Za-z_][A-Za-z0-9_.]*\Z")


def parse_vars(text: str) -> list[tuple[str, str]]:
    """Parse ``key="value" key2="v \\"q\\""``: values in double quotes, ``\\"`` and ``\\\\`` escaped."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return pairs
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"expected key=\"value\" at {text[i:]!r}")
        key = text[i:eq].strip()
        if not _MACRO_NAME.match(key):
            raise ValueError(f"invalid VARS macro name {key!r}")
        if key.lower().startswith("queue"):
            raise ValueError(f"VARS macro name {key!r} must not begin with 'queue'")
        i = eq + 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != '"':
            raise ValueError(f"the value of VARS {key!r} must be enclosed in double quotes")
        i += 1
        value: list[str] = []
        while True:
            if i >= n:
                raise ValueError(f"unterminated double quote in the value of VARS {key!r}")
            ch = text[i]
            if ch == "\\" and i + 1 < n and text[i + 1] in ('"', "\\"):
                value.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                i += 1
                break
            value.append(ch)
            i += 1
        if i < n and not text[i].isspace():
            raise ValueError(f"expected whitespace after the value of VARS {key!r}")
        pairs.append((key, "".join(value)))


def quote_vars_value(value: str) -> str:
    """The inverse of the value part of ``parse_vars`` (useful for writers and tests)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_arguments(value: str) -> list[str]:
    """Split a submit-file ``arguments`` value into argv words, in HTCondor's new or old syntax.

    New syntax (the whole value in double quotes): whitespace separates, single quotes group (``''``
    inside them is a literal quote) and ``""`` is a literal double quote. Old syntax: plain whitespace
    separation, ``\\"`` is a literal double quote.
    """
    stripped = value.strip()
    if not stripped:
        return []
    if stripped.startswith('"'):
        if len(stripped) < 2 or not stripped.endswith('"'):
            raise ValueError(f"arguments in new syntax must end with a double quote: {value!r}")
        return _split_new_syntax(stripped[1:-1], what="arguments")
    return [word.replace('\\"', '"') for word in stripped.split()]


def _split_new_syntax(body: str, what: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    started = False
    in_single = False
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            if i + 1 < n and body[i + 1] == '"':
                current.append('"')
                started = True
                i += 2
                continue
            raise ValueError(f"unescaped double quote in {what} (write it as \"\"): {body!r}")
        if in_single:
            if ch == "'":
                if i + 1 < n and body[i + 1] == "'":
                    current.append("'")
                    i += 2
                    continue
                in_single = False
            else:
                current.append(ch)
        elif ch == "'":
            in_single = True
            started = True
        elif ch.isspace():
            if started:
                words.append("".join(current))
                current, started = [], False
        else:
            current.append(ch)
            started = True
        i += 1
    if in_single:
        raise ValueError(f"unterminated single quote in {what}: {body!r}")
    if started:
        words.append("".join(current))
    return words


def parse_environment(value: str) -> dict[str, str]:
    """Parse a submit-file ``environment`` value: new syntax ``"A=1 B='x y'"`` or old syntax ``A=1;B=2``."""
    stripped = value.strip()
    if not stripped:
        return {}
    if stripped.startswith('"'):
        if len(stripped) < 2 or not stripped.endswith('"'):
            raise ValueError(f"environment in new syntax must end with a double quote: {value!r}")
        words: Iterable[str] = _split_new_syntax(stripped[1:-1], what="environment")
    else:
        words = [w.strip() for w in stripped.split(";") if w.strip()]
    env: dict[str, str] = {}
    for word in words:
        key, eq, val = word.partition("=")
        if not eq or not key:
            raise ValueError(f"environment entry {word!r} is not NAME=value")
        env[key] = val
    return env
