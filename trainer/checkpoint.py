"""Checkpoints: output_dir/checkpoint-<step>/ holds a loadable model (or LoRA adapter) + tokenizer,
and trainer_state.pt with everything needed to continue the run exactly: optimizer, scheduler,
grad scaler, step, data position and every rank's RNG states.

A checkpoint folder is data, never code: `resume_from` can name any folder the user can reach,
so trainer_state.pt is read with torch's weights-only unpickler (tensors and plain containers;
a pickled object that would run code on load is refused before anything runs). Everything we
save is therefore tensors, numbers, strings, tuples, lists and dicts: numpy's RNG state (an
ndarray) is stored as a list of ints.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.retention import write_info

STATE_FILE = "trainer_state.pt"
# What save_checkpoint() in trainer/recipe.py writes and _load_checkpoint() reads.
STATE_KEYS = ("step", "pairs_seen", "global_batch", "optimizer", "scheduler", "scaler", "rng")


class CheckpointRefused(ValueError):
    """trainer_state.pt cannot be loaded safely (or at all); the message says why and what to do."""


def rng_state() -> dict[str, Any]:
    """Every RNG this process draws from, as tensors and plain Python values only."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),  # (version, tuple of ints, None): plain already
        "numpy": (str(kind), np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached_gaussian)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def save(path: Path, *, model: Any, tokenizer: Any, state: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: into a temp dir beside `path`, then rename, so a crash
    mid-save never leaves a checkpoint that looks complete. `info` (step, eval_loss) goes beside it
    for the retention policy (trainer/retention.py). state["optimizer"] is None when the run does not
    save optimizer state: such a checkpoint loads as a model but cannot be resumed exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        if info is not None:
            write_info(tmp, step=int(info["step"]), eval_loss=info.get("eval_loss"))
        if path.exists():  # re-saving the same step (e.g. a resumed run stopped again at once)
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """The trainer state saved in checkpoint folder `path`, read without ever running code from it."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"resume_from {str(path)!r} is not a checkpoint folder (no {STATE_FILE} in it)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler stops at the first object it does not allow, before calling it.
        # Its own message advises weights_only=False, the one thing we must not pass on.
        if refused := re.search(r"GLOBAL ([\w.]+)", str(exc)):
            raise CheckpointRefused(
                f"resume_from: {file} asks for {refused.group(1)}, a Python object that only the full unpickler "
                "can load, and the full unpickler runs whatever code the file names, so it is not loaded. "
                "Checkpoints written by orpo-dash before this check (they stored numpy's RNG state as an array) "
                "look like this too. To continue from that folder's weights, start a new run with model set to "
                "the folder and resume_from empty (step numbering and optimizer state start afresh); to resume "
                "exactly, resume from a checkpoint written by this version."
            ) from None
        raise CheckpointRefused(f"resume_from: {file} is not a readable trainer state ({_unpickler_reason(exc)}); "
                                "pick a checkpoint-<step> folder written by orpo-dash") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointRefused(f"resume_from: {file} is not a readable trainer state ({exc}); "
                                "pick a checkpoint-<step> folder written by orpo-dash") from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointRefused(f"resume_from: {file} is not an orpo-dash trainer state (it lacks {', '.join(missing)})")
    if state["optimizer"] is None:
        raise CheckpointRefused(
            f"resume_from: {path} was saved without optimizer state (its run had save_optimizer_state off), so the "
            "run cannot continue exactly where it stopped. To train on from its weights, start a new run with model "
            "set to that folder and resume_from empty; to resume runs later, turn save_optimizer_state on"
        )
    return state


def _unpickler_reason(exc: BaseException) -> str:
    """The line of torch's page-long refusal that says what it stopped at."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.endswith("WeightsUnpickler error:")]
    return after[0] if after else "the weights-only loader refused it"


def load_adapter(model: Any, path: str | Path) -> None:
    """Load saved LoRA adapter weights into a peft model built with the same LoRA config."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    file = Path(path) / "adapter_model.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"{path} holds no LoRA adapter (adapter_model.safetensors); was the run trained without lora?")
    result = set_peft_model_state_dict(model, load_file(str(file)))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise RuntimeError(f"adapter in {path} does not match this LoRA config: unexpected {unexpected[:5]}")
