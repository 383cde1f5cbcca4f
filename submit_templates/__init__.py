"""Data package: the HTCondor submit-file templates (not code)."""
