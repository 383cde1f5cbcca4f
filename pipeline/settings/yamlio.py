"""Reading the YAML settings files and checking their values, shared by the scan configuration and the site profiles.

Every check names the key path of the bad value (``scan.stages[1].nside: ...``) in one ``InputError`` line, so
an operator can fix a file without reading code. Reading goes through :class:`_StrictLoader` inside
:func:`skyscan.reco.untrusted.guarded`: duplicate keys are refused, integers must fit in 64 bits, and any other
failure while building values (an impossible date, a lone surrogate) is an ``InputError`` by construction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from skyscan.errors import InputError
from skyscan.reco import untrusted
from skyscan.resources import data_text


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and integers beyond the signed 64-bit range."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if duplicate:
                line = key_node.start_mark.line + 1
                raise InputError(f"duplicate key {shown(key)} at line {line}")
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "")
        if len(text.lstrip("+-")) > 24:  # before int(): a 5,000-digit literal must not reach the converter
            raise InputError(f"integer at line {node.start_mark.line + 1} is out of the 64-bit range")
        value = int(super().construct_yaml_int(node))
        if not untrusted.INT64_MIN <= value <= untrusted.INT64_MAX:
            raise InputError(f"integer at line {node.start_mark.line + 1} is out of the 64-bit range")
        return value


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------
def parse_yaml_text(text: str, where: str) -> Any:
    """The YAML document in ``text``; InputError naming ``where`` if it does not parse or holds unsafe values."""
    try:
        with untrusted.guarded(where):
            try:
                doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
            except yaml.YAMLError as exc:
                first = untrusted.one_line(str(exc), 300)
                raise InputError(f"{where}: invalid YAML ({first})") from None
    except InputError as exc:
        message = str(exc)
        raise InputError(message if message.startswith(f"{where}:") else f"{where}: {message}") from None
    return untrusted.check_strings(doc, where)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    doc = parse_yaml_text(untrusted.read_text(p), str(p))
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{p}: expected a mapping at the top level")
    return doc


def read_shipped_yaml(name: str) -> Any:
    """A YAML file shipped in the ``config`` data package (``default.yaml``, ``sites/osg.yaml``), parsed."""
    return parse_yaml_text(data_text("config", name), name.rsplit("/", 1)[-1])


# ---------------------------------------------------------------------------------------------------------------
# Checks: each returns the value with its type, or raises InputError naming the key path
# ---------------------------------------------------------------------------------------------------------------
def shown(value: Any) -> str:
    """A value as quoted in an error message (at most 40 characters, one line)."""
    return untrusted.shown(value)


def as_mapping(value: Any, path: str, known: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A mapping, whose keys (when ``known`` is given) are all among ``known``."""
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a mapping, got {shown(value)}")
    if known is not None:
        for key in value:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                raise InputError(f"{where}: unknown key (known: {', '.join(known)})")
    return value


def as_int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{path}: expected an integer, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{path}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{path}: must be <= {maximum}, got {value}")
    return value


def as_float(value: Any, path: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{path}: expected a finite number, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{path}: must be >= {minimum:g}, got {value}")
    return float(value)


def as_str(value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
    """A non-empty string, one of ``choices`` when given."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: expected a non-empty string, got {shown(value)}")
    if choices is not None and value not in choices:
        raise InputError(f"{path}: must be one of {', '.join(choices)}, got {shown(value)}")
    return value


def as_optional_str(value: Any, path: str) -> str | None:
    return None if value is None else as_str(value, path)


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{path}: expected true or false, got {shown(value)}")
    return value
