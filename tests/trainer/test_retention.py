"""Issue 20 (disk): a run keeps only the checkpoints its retention settings name, and saves optimizer
state only when asked; the recipe reports its phases with their own progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer import checkpoint, retention
from trainer.worker import run


def _steps(output_dir: str) -> list[int]:
    return [step for step, _ in retention.checkpoints(output_dir)]


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_keep_last_two_plus_the_best_by_eval_loss(make_config, recorder) -> None:
    # lr 1e-2 on the tiny model: eval/loss falls for the first steps, then a huge lr makes it rise, so
    # the best checkpoint is an old one that keep_last alone would delete.
    config = make_config(max_steps=6, save_every=1, eval_every=1, keep_last_checkpoints=2, keep_best_checkpoint=True,
                         learning_rate=0.3)
    rep = recorder()
    assert run(config, rep) == "completed", rep.logs
    evals = {step: values["eval/loss"] for step, values in rep.eval().items()}
    best = min(evals, key=evals.__getitem__)
    assert best < 5, f"the lr should make the last steps worse than an early one: {evals}"
    assert _steps(config.output_dir) == sorted({best, 5, 6})
    info = json.loads((Path(config.output_dir) / f"checkpoint-{best}" / retention.CHECKPOINT_INFO).read_text())
    assert info == {"step": best, "eval_loss": pytest.approx(evals[best])}
    assert any("deleted" in line and "older checkpoint" in line for line in rep.logs)


def test_the_final_checkpoint_has_its_eval_loss_even_when_saved_on_schedule(make_config, recorder) -> None:
    config = make_config(max_steps=2, save_every=1, keep_last_checkpoints=0)
    rep = recorder()
    assert run(config, rep) == "completed"
    final = Path(config.output_dir) / "checkpoint-2"
    assert retention.eval_loss_of(final) == pytest.approx(rep.eval()[2]["eval/loss"])
    assert retention.eval_loss_of(Path(config.output_dir) / "checkpoint-1") is None  # no eval at step 1


def test_keep_last_one_without_best_and_zero_keeps_all(make_config, recorder, tmp_path: Path) -> None:
    one = make_config(max_steps=3, save_every=1, keep_last_checkpoints=1, keep_best_checkpoint=False,
                      output_dir=str(tmp_path / "one"))
    assert run(one, recorder()) == "completed"
    assert _steps(one.output_dir) == [3]
    every = make_config(max_steps=3, save_every=1, keep_last_checkpoints=0, output_dir=str(tmp_path / "all"))
    assert run(every, recorder()) == "completed"
    assert _steps(every.output_dir) == [1, 2, 3]


def test_optimizer_state_is_saved_only_when_asked_and_resume_says_why_it_needs_it(make_config, recorder, tmp_path: Path) -> None:
    light = make_config(max_steps=2, output_dir=str(tmp_path / "light"))
    heavy = make_config(max_steps=2, output_dir=str(tmp_path / "heavy"), save_optimizer_state=True)
    assert run(light, recorder()) == "completed" and run(heavy, recorder()) == "completed"
    light_ckpt, heavy_ckpt = Path(light.output_dir) / "checkpoint-2", Path(heavy.output_dir) / "checkpoint-2"
    # AdamW's two moments are twice the weights: the full checkpoint is about 3x the light one's weights.
    assert _folder_bytes(heavy_ckpt) > 2 * _folder_bytes(light_ckpt) * 0.8
    with pytest.raises(checkpoint.CheckpointRefused, match="save_optimizer_state"):
        checkpoint.load_state(light_ckpt)
    rep = recorder()
    assert run(make_config(max_steps=3, resume_from=str(light_ckpt), output_dir=str(tmp_path / "again")), rep) == "failed"
    assert "model set to that folder" in rep.statuses[-1][2]


def test_phases_with_their_own_progress(make_config, recorder) -> None:
    rep = recorder()
    assert run(make_config(max_steps=2, eval_every=1, sample_every=2, sample_max_new_tokens=2), rep) == "completed"
    names = [name for name, _, _ in rep.phases]
    assert names[0] == "training"
    evaluating = [(done, total) for name, done, total in rep.phases if name == "evaluating"]
    total = evaluating[0][1]
    assert total and evaluating[:total] == [(i, total) for i in range(total)]
    assert "generating samples" in names and names[-1] == "saving checkpoint"
    # Back to training after the step-1 evaluation, before step 2.
    assert names.index("training", names.index("evaluating")) < names.index("saving checkpoint")
