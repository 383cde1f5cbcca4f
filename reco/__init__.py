"""Physics core: event model, geometry, coordinates, likelihood and per-pixel fits.

Pure functions and dataclasses only; nothing here imports the pipeline, HTCondor or click.
"""
