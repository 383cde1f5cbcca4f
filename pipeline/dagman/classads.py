"""ClassAd language checks with the HTCondor bindings (``classad2``), imported only when a check runs."""

from __future__ import annotations


def is_valid_expression(text: str) -> bool:
    """Does the bindings' parser accept ``text`` as a ClassAd expression (``requirements``, ``periodic_*``)?"""
    import classad2

    try:
        classad2.ExprTree(text)
    except Exception:  # the bindings raise their own exception types
        return False
    return True
