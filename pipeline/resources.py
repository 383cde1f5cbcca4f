"""The one way to find skyscan's data files: the YAML defaults, site profiles, submit templates and scripts.

They ship inside the import package as the data packages ``skyscan.config``, ``skyscan.scripts`` and
``skyscan.submit_templates`` (setup.cfg maps them from ``config/``, ``scripts/``, ``submit_templates/``). Each
has an ``__init__.py``, so ``importlib.resources`` finds them the same way in a wheel and in an editable install:
no caller needs to know where the source tree is.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

#: The data packages, by their name under ``skyscan``.
DATA_PACKAGES = ("config", "scripts", "submit_templates")


def data_dir(package: str) -> Traversable:
    """The folder of a data package (one of ``DATA_PACKAGES``)."""
    if package not in DATA_PACKAGES:
        raise ValueError(f"unknown skyscan data package {package!r} (have: {', '.join(DATA_PACKAGES)})")
    return resources.files(f"skyscan.{package}")


def data_file(package: str, name: str) -> Traversable:
    """A file of a data package; ``name`` may hold ``/`` for a subfolder (``sites/osg.yaml``)."""
    found = data_dir(package)
    for part in name.split("/"):
        found = found.joinpath(part)
    return found


def data_text(package: str, name: str) -> str:
    """The UTF-8 text of a data file."""
    return data_file(package, name).read_text(encoding="utf-8")
