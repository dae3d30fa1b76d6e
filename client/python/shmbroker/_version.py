"""The package's version, which is written in one place: the Makefile's ``VERSION :=`` line.

setup.py reads it from there (with from_makefile(), loaded by path) into the installed
package's metadata; a package imported from the source tree reads the Makefile itself.
"""
from __future__ import annotations

import re
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_TREE = _PACKAGE.parents[2]          # client/python/shmbroker -> the source tree


def from_makefile(makefile: Path) -> str:
    """The VERSION of ``makefile``; ValueError when it has none."""
    m = re.search(r"^VERSION\s*:=\s*(\S+)\s*$", makefile.read_text(), re.MULTILINE)
    if not m:
        raise ValueError(f"{makefile} has no VERSION := line")
    return m.group(1)


def version() -> str:
    if (_TREE / "client" / "python" / "shmbroker") == _PACKAGE and (_TREE / "Makefile").is_file():
        return from_makefile(_TREE / "Makefile")
    from importlib import metadata
    try:
        return metadata.version("shmbroker")
    except metadata.PackageNotFoundError:
        return "unknown"
