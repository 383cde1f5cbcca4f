"""Data package: the default scan configuration, site profiles, example files (not code)."""
