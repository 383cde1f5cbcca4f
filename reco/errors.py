"""Exceptions shared by the physics core and the pipeline."""

from __future__ import annotations

from typing import Any


def _one_line(text: str) -> str:
    """Line breaks and other control characters escaped, so no message can span or forge lines."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text)


class InputError(ValueError):
    """Bad user input (event, geometry, pixel list, configuration).

    The message is one line that names the problem; the CLI prints it and exits with 2. The constructor
    guarantees the "one line": whatever text of the input a message quotes (a YAML key holding a newline, an ANSI
    escape in a file name), its control characters arrive escaped.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        super().__init__(_one_line(str(message)), *args)
