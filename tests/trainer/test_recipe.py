"""The training loop end to end on a tiny random Llama (CPU, a few ms per step)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from orpo_dash.metric_names import EVAL_METRICS, TRAIN_METRICS
from trainer.recipe import ORPORecipe
from trainer.worker import describe_failure, run


def _train(config, reporter) -> ORPORecipe:
    recipe = ORPORecipe(config, reporter)
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.cleanup()
    return recipe


def test_run_reports_every_metric_saves_and_changes_weights(make_config, recorder, tiny_model_dir: Path) -> None:
    rep = recorder()
    config = make_config(max_steps=3, eval_every=2, sample_every=3, sample_max_new_tokens=4)
    assert run(config, rep) == "completed"
    assert rep.statuses == [("running", 3, None), ("completed", None, None)]
    train = rep.train(timing=True)
    assert sorted(train) == [1, 2, 3] and all(set(v) == set(TRAIN_METRICS) for v in train.values())
    assert train[3]["epoch"] == pytest.approx(3 * 2 / 9)
    assert sorted(rep.eval()) == [2, 3] and set(rep.eval()[3]) == set(EVAL_METRICS)
    assert [step for step, _ in rep.sample_calls] == [3] and len(rep.sample_calls[0][1]) == 3
    assert any("9 training pairs, 3 held-out pairs" in line for line in rep.logs)

    ckpt = Path(config.output_dir) / "checkpoint-3"
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.pt"} <= {p.name for p in ckpt.iterdir()}
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(ckpt / "model.safetensors")
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before)  # full fine-tuning moves every tensor


def test_training_learns_the_preference(make_config, recorder, tmp_path: Path, pair_rows) -> None:
    # Train and evaluate on the same two pairs: the held-out metrics must move the right way.
    import json

    data = tmp_path / "two.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pair_rows[:2]))
    rep = recorder()
    config = make_config(dataset=str(data), eval_dataset=str(data), max_steps=12, eval_every=12, beta=1.0,
                         learning_rate=3e-2, output_dir=None)
    recipe = ORPORecipe(config, rep)
    recipe.setup()
    start = recipe.evaluate()
    recipe.train()
    end = rep.eval()[12]
    assert end["eval/nll_loss"] < start["eval/nll_loss"] - 0.5
    assert end["eval/log_odds_ratio"] > start["eval/log_odds_ratio"] + 0.5 and end["eval/accuracy"] == 1.0


def test_same_seed_same_metrics(make_config, recorder) -> None:
    config = make_config(max_steps=2, lora=True, lora_dropout=0.2, output_dir=None)  # dropout draws on the RNG
    first, second = recorder(), recorder()
    run(config, first)
    run(config, second)
    assert first.train() == second.train() and first.eval() == second.eval()
    third = recorder()
    run(config.model_copy(update={"seed": 1}), third)
    assert third.train() != first.train()


def test_gradient_accumulation_equals_the_big_batch(make_config, recorder) -> None:
    big, accumulated = recorder(), recorder()
    run(make_config(max_steps=2, batch_size=4, output_dir=None), big)
    run(make_config(max_steps=2, batch_size=2, gradient_accumulation_steps=2, output_dir=None), accumulated)
    for step in (1, 2):
        for name, value in big.train()[step].items():
            assert accumulated.train()[step][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, name)


def test_stop_then_resume_matches_an_uninterrupted_run(make_config, recorder) -> None:
    full = recorder()
    run(make_config(max_steps=4, output_dir=None, lr_scheduler="cosine", warmup_steps=1), full)

    stopped = recorder(stop_after=2)
    config = make_config(max_steps=4, lr_scheduler="cosine", warmup_steps=1, save_optimizer_state=True)
    assert run(config, stopped) == "stopped"
    assert stopped.statuses[-1] == ("stopped", None, None) and sorted(stopped.train()) == [1, 2]
    ckpt = Path(config.output_dir) / "checkpoint-2"
    assert (ckpt / "trainer_state.pt").is_file()

    resumed = recorder()
    assert run(config.model_copy(update={"resume_from": str(ckpt)}), resumed) == "completed"
    assert sorted(resumed.train()) == [3, 4]
    for step in (3, 4):
        assert resumed.train()[step] == pytest.approx(full.train()[step], rel=1e-6), step
    assert resumed.eval()[4] == pytest.approx(full.eval()[4], rel=1e-6)


def test_sigterm_finishes_the_step_saves_and_stops(make_config, recorder) -> None:
    class SignalOnFirstStep(recorder):
        def metrics(self, step, values):
            super().metrics(step, values)
            if step == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    rep = SignalOnFirstStep()
    config = make_config(max_steps=3)
    previous = signal.getsignal(signal.SIGTERM)
    assert run(config, rep) == "stopped"
    assert sorted(rep.train()) == [1] and (Path(config.output_dir) / "checkpoint-1" / "trainer_state.pt").is_file()
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored


def test_lora_trains_only_the_adapters(make_config, recorder, tiny_model_dir: Path) -> None:
    config = make_config(max_steps=2, lora=True, lora_target_modules=["q_proj", "v_proj"])
    recipe = _train(config, recorder())
    base = load_file(tiny_model_dir / "model.safetensors")
    state = recipe.model.state_dict()
    adapters = {k: v for k, v in state.items() if "lora_" in k}
    assert adapters and any("lora_B" in k and v.abs().sum() > 0 for k, v in adapters.items())  # B starts at zero
    for name, tensor in state.items():
        if "lora_" in name:
            continue
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(tensor, base[plain]), name
    saved = Path(config.output_dir) / "checkpoint-2"
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "model.safetensors").exists()


def test_a_lora_target_the_model_lacks_is_named_with_the_layers_it_has(make_config, recorder) -> None:
    config = make_config(max_steps=2, lora=True, lora_target_modules=["q_proj", "query_key_value"])
    with pytest.raises(ValueError) as caught:
        _train(config, recorder())
    message = str(caught.value)
    assert message.startswith("lora_target_modules: 'query_key_value' matches no module of this model")
    assert "q_proj" in message.split("named", 1)[1] and "leave lora_target_modules empty" in message


def test_an_output_dir_that_cannot_be_written_stops_the_run_before_training(make_config, recorder) -> None:
    rep = recorder()
    with pytest.raises(ValueError, match=r"output_dir /proc/orpo-run is not writable: .*leave output_dir empty"):
        _train(make_config(max_steps=2, output_dir="/proc/orpo-run"), rep)
    assert rep.train() == {}  # no step was spent before the run found out


def test_float16_mixed_precision_step_is_finite(make_config, recorder) -> None:
    rep = recorder()
    assert run(make_config(max_steps=1, dtype="float16", output_dir=None), rep) == "completed"
    assert all(value == value for value in rep.train()[1].values())  # no NaN


def test_failure_reports_failed_with_the_reason(make_config, recorder, tmp_path: Path) -> None:
    rep = recorder()
    assert run(make_config(dataset=str(tmp_path / "missing.jsonl")), rep) == "failed"
    status, _, error = rep.statuses[-1]
    assert status == "failed" and "dataset file not found" in error
    assert any("Traceback" in line for line in rep.logs)


def test_a_step_bigger_than_the_training_split_fails_naming_batch_size(make_config, recorder) -> None:
    rep = recorder()
    assert run(make_config(batch_size=1000, gradient_accumulation_steps=2), rep) == "failed"
    error = rep.statuses[-1][2]
    assert "batch_size 1000 x gradient_accumulation_steps 2 = 2000 pairs per step" in error
    assert "set batch_size to at most" in error and rep.points == []


def test_running_out_of_memory_names_the_settings_to_lower(make_config) -> None:
    config = make_config(batch_size=8, max_length=512)
    with pytest.raises(RuntimeError) as real:  # the CPU allocator's own error, 4 TiB asked for
        torch.empty(2**40)
    error = describe_failure(real.value, config)
    assert error.startswith("out of memory at batch_size 8 and max_length 512: lower either")
    assert error.endswith(str(real.value))
    assert describe_failure(ValueError("bad pair"), config) == "ValueError: bad pair"


def test_a_full_disk_names_where_checkpoints_go_and_what_to_change(make_config, tmp_path: Path) -> None:
    config = make_config(output_dir=str(tmp_path / "ckpt"))
    with pytest.raises(OSError) as real, open("/dev/full", "w") as full:  # the kernel's own ENOSPC
        full.write("x")
        full.flush()
    error = describe_failure(real.value, config)
    assert error.startswith(f"disk full while writing checkpoints to {tmp_path / 'ckpt'}: free space there")
    assert "save_every" in error and error.endswith(str(real.value))
