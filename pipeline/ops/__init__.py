"""Operations: the alert watcher (``skyscan watch``), its catalog and the operator commands.

See docs/operations.md; :mod:`skyscan.ops.watcher` is the entry point, :mod:`skyscan.ops.catalog` the database.
"""
