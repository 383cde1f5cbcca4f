"""Data package: the executables copied into scan and campaign directories (not code)."""
