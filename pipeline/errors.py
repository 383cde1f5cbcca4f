"""Errors the CLI turns into one line and an exit code."""

from skyscan.reco.errors import InputError


class SkyscanError(RuntimeError):
    """An operational failure that is not the user's input (exit code 1)."""


__all__ = ["InputError", "SkyscanError"]
