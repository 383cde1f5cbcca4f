"""skyscan: neutrino alert localisation with HEALPix scans run as HTCondor DAGMan graphs."""

from skyscan.version import __version__

__all__ = ["__version__"]
