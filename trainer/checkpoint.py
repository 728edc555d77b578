"""Checkpoints: output_dir/checkpoint-<step>/ holds a loadable model (or LoRA adapter) + tokenizer,
and trainer_state.pt with everything needed to continue the run exactly: optimizer, scheduler,
grad scaler, step, data position and every rank's RNG states.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def save(path: Path, *, model: Any, tokenizer: Any, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: into a temp dir beside `path`, then rename, so a crash
    mid-save never leaves a checkpoint that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        if path.exists():  # re-saving the same step (e.g. a resumed run stopped again at once)
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"resume_from {str(path)!r} is not a checkpoint folder (no {STATE_FILE} in it)")
    # Our own file: it holds Python RNG tuples and numpy state, which the weights-only loader refuses.
    return torch.load(file, map_location="cpu", weights_only=False)


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
