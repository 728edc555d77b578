"""Whether a run's checkpoints can be written to its output_dir, asked before any training is spent.

Checkpoints are first written after training steps (at the end, by default), so an output_dir that
cannot be created or written would throw that training away. Both the dashboard (before it launches
a run) and the worker (before it loads the model) ask here. Stdlib only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

FIX = "choose a folder you can write to, or leave output_dir empty for the run's own folder"


def output_dir_problem(output_dir: str) -> str | None:
    """None when a folder can be made there; otherwise a sentence naming output_dir and the fix.

    The probe is a temporary folder in the nearest existing ancestor, removed at once: nothing is
    left behind, and the folder itself is created only when the run writes to it."""
    path = Path(output_dir).expanduser()
    try:
        if path.exists() and not path.is_dir():
            return f"output_dir {output_dir} is a file, not a folder; {FIX}"
        ancestor = path
        while not ancestor.exists():
            ancestor = ancestor.parent
    except OSError as error:  # the OS refuses to look: a name longer than the file system allows, say
        return f"output_dir {output_dir} cannot be used: {error.strerror or error}; {FIX}"
    if not ancestor.is_dir():
        return f"output_dir {output_dir} cannot be created: {ancestor} is a file; {FIX}"
    try:
        with tempfile.TemporaryDirectory(prefix=".orpo-dash-write-check-", dir=ancestor):
            pass
    except OSError as error:
        return f"output_dir {output_dir} is not writable: creating a folder in {ancestor} failed ({error.strerror or error}); {FIX}"
    return None
