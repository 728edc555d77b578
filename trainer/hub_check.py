"""Fail a run within seconds when its Hugging Face hub model cannot be had, before torch loads.

Left to transformers, a hub name that the hub does not have, or a hub that cannot be reached, fails
only after every file's download has been retried with backoff: over a minute here, after the torch
import. One metadata request answers the same question at once. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from orpo_dash.run_config import BUNDLED_MODEL

HUB_TIMEOUT_S = 10.0  # one request: long enough for a slow link, short enough to fail "within seconds"


def looks_like_hub_name(name: str) -> bool:
    """What trainer.models.model_source sends to the hub: not bundled, not a path, nothing local of that name."""
    return name != BUNDLED_MODEL and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()


def hub_model_problem(name: str) -> str | None:
    """Why the hub model `name` cannot be loaded, or None (cached here, the hub has it, or not a hub name)."""
    if not looks_like_hub_name(name):
        return None
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None  # downloaded before: transformers loads it from the cache
    fix = f"use a local folder saved with save_pretrained, or {BUNDLED_MODEL}"
    if constants.HF_HUB_OFFLINE:
        return f"model {name} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: {fix}"
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return f"model {name} is gated on the Hugging Face hub: accept its terms and log in (`hf auth login`), or {fix}"
    except RepositoryNotFoundError:
        return (f"model {name} not found on the Hugging Face hub (or it is private: log in with `hf auth login`); "
                f"check the name, or {fix}")
    except Exception as exc:  # noqa: BLE001 - any transport failure means the same thing: no network to the hub
        return (f"model {name} needs network, not cached here: the Hugging Face hub could not be reached "
                f"({type(exc).__name__}: {exc}); {fix}")
    return None
