"""A checkpoint or model folder is data, never code: trainer_state.pt loads with the weights-only
unpickler, a planted pickle is refused before it runs, and remote code stays off."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from orpo_dash.run_config import RunConfig
from trainer import checkpoint
from trainer.models import load_model, load_tokenizer
from trainer.worker import run


class _WritesMarker:
    """Pickles to "call os.system(touch MARKER)": what a planted trainer_state.pt would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _plant(folder: Path, marker: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"step": _WritesMarker(marker), "pairs_seen": 0}, folder / checkpoint.STATE_FILE)
    return folder


def test_a_planted_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _plant(tmp_path / "ckpt", marker)
    with pytest.raises(checkpoint.CheckpointRefused) as refused:
        checkpoint.load_state(folder)
    message = str(refused.value)
    assert message.startswith("resume_from:") and "asks for posix.system" in message
    assert "model set to the folder" in message and "weights_only=False" not in message
    assert not marker.exists()


def test_a_checkpoint_from_before_the_check_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """The old format kept numpy's RNG state as an ndarray, which only the full unpickler loads."""
    folder = tmp_path / "old"
    folder.mkdir()
    state = {key: 0 for key in checkpoint.STATE_KEYS} | {"rng": [{"numpy": np.random.get_state()}]}
    torch.save(state, folder / checkpoint.STATE_FILE)
    with pytest.raises(checkpoint.CheckpointRefused, match="written by orpo-dash before this check"):
        checkpoint.load_state(folder)


def test_a_file_that_is_not_a_trainer_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / checkpoint.STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(checkpoint.CheckpointRefused, match="not a readable trainer state"):
        checkpoint.load_state(tmp_path)
    torch.save({"step": 1}, tmp_path / checkpoint.STATE_FILE)
    with pytest.raises(checkpoint.CheckpointRefused, match="lacks pairs_seen"):
        checkpoint.load_state(tmp_path)


def test_rng_states_survive_the_weights_only_loader(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    saved = checkpoint.rng_state()
    torch.save({"rng": [saved]}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"][0])
    assert (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_saved_checkpoint_loads_weights_only(make_config, recorder) -> None:
    config = make_config(max_steps=2, save_every=2, save_optimizer_state=True)
    assert run(config, recorder()) == "completed"
    state = checkpoint.load_state(Path(config.output_dir) / "checkpoint-2")
    assert state["step"] == 2 and state["optimizer"]["state"]


def test_a_run_resumed_from_a_planted_checkpoint_fails_before_loading_the_model(make_config, recorder, tmp_path: Path, tiny_model_dir: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "planted"
    shutil.copytree(tiny_model_dir, folder)  # a folder that would otherwise load as a model
    _plant(folder, marker)
    rep = recorder()
    assert run(make_config(resume_from=str(folder)), rep) == "failed"
    status, _, error = rep.statuses[-1]
    assert status == "failed" and "is not loaded" in error
    assert not any("loading model" in line for line in rep.logs)
    assert not marker.exists()


def test_the_config_schema_has_no_way_to_turn_on_remote_code() -> None:
    assert not [name for name in RunConfig.model_fields if "remote" in name or "trust" in name]
    with pytest.raises(ValueError, match="trust_remote_code"):
        RunConfig.model_validate({"trust_remote_code": True})


def test_a_model_folder_shipping_python_is_not_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A config.json whose auto_map names a module in the folder (and a model_type transformers does
    not know, so only that module could build it): loading must refuse, not import it."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "remote"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-custom"
    config["auto_map"] = {"AutoConfig": "evil_model.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["evil_model.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder))
    assert not marker.exists()
    load_tokenizer(str(folder))  # the tokenizer's own files load; its auto_map class is never imported
    assert not marker.exists()
