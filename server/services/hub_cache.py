"""Whether a Hugging Face hub model is already on this machine, so the form can warn before a run
that would need the network.

Read from the cache's documented folder layout (`models--org--name/snapshots/<revision>/config.json`)
rather than through huggingface_hub, which is a trainer dependency, not the server's. Only hub names
reach here: a path is a path (server/services/allowed_paths.py decides which is which), so nothing
here looks at a folder the user named.
"""

from __future__ import annotations

from pathlib import Path

from orpo_dash.run_config import BUNDLED_MODEL
from server.services.allowed_paths import is_hub_name


def is_cached(repo_id: str, *, cache_dir: Path) -> bool:
    """True when some cached revision of the model `repo_id` holds its config.json."""
    snapshots = cache_dir / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    try:
        return any((revision / "config.json").is_file() for revision in snapshots.iterdir())
    except OSError:  # no such folder, or not readable: not cached as far as a worker here can tell
        return False


def hub_model_warning(model: object, *, cache_dir: Path) -> str | None:
    """A warning for a hub model a local worker would have to download; None for anything else."""
    if not isinstance(model, str) or model == BUNDLED_MODEL or not is_hub_name(model, dataset=False):
        return None
    if is_cached(model, cache_dir=cache_dir):
        return None
    return (
        f"model {model} needs network, not cached here: the worker downloads it from the Hugging Face hub when "
        "the run starts and fails at once if the hub cannot be reached or has no such model. Offline, use a "
        f"local folder saved with save_pretrained or {BUNDLED_MODEL}"
    )
