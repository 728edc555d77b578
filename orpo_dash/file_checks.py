"""Looking at a path someone typed into a form or a command line.

Path.is_file() and is_dir() raise for some paths instead of answering (a name longer than the file
system allows, a folder this user may not enter); for a typed path that means "not there", and an
OSError there would surface as a 500 for what is only bad input.
"""

from __future__ import annotations

from pathlib import Path


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False
