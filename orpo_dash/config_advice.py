"""Advice on a valid run config whose settings walk into a known ORPO pitfall.

The pitfalls come from ORPO's loss (Hong, Lee & Thorne 2024, arXiv 2403.07691): no reference model,
and an odds-ratio penalty weighted by beta, which the paper sets to 0.1.

These are not errors: the run may be deliberate, so the form shows them beside the field and still
launches, and `orpo-dash train` prints them. The pitfall alerts then watch what actually happens;
this only says, before any compute is spent, which settings make a pitfall likely.
"""

from __future__ import annotations

from orpo_dash.number_format import format_number
from orpo_dash.run_config import RunConfig

PAPER_BETA = 0.1
BETA_ADVICE_ABOVE = 1.0  # 10x the paper's lambda
FULL_FINETUNE_LR_ABOVE = 1e-4  # the paper fine-tunes full models at 5e-6 to 8e-6
LORA_LR_ABOVE = 1e-3
LR_BELOW = 1e-7
EPOCHS_ABOVE = 3.0


def advise(config: RunConfig) -> dict[str, str]:
    """Field name -> one sentence: what the setting risks and what to try instead."""
    advice: dict[str, str] = {}
    if config.beta > BETA_ADVICE_ABOVE:
        advice["beta"] = (
            f"beta {format_number(config.beta)} is {config.beta / PAPER_BETA:.0f}x the paper's {format_number(PAPER_BETA)}: a penalty this strong "
            "risks over-penalization (a conservative model whose chosen log-probs fall). Start from 0.1; "
            "the over_penalization alert watches for it."
        )
    lr_ceiling = LORA_LR_ABOVE if config.lora else FULL_FINETUNE_LR_ABOVE
    if config.learning_rate > lr_ceiling:
        kind = "LoRA" if config.lora else "full fine-tuning"
        advice["learning_rate"] = (
            f"learning_rate {format_number(config.learning_rate)} is high for {kind} (above {format_number(lr_ceiling)}); expect the loss to "
            "rise or turn NaN. The paper uses 5e-6 to 8e-6 for full models."
        )
    elif config.learning_rate < LR_BELOW:
        advice["learning_rate"] = (
            f"learning_rate {format_number(config.learning_rate)} is too small to move the model within a run: the log odds "
            "ratio will stay flat. Try 1e-6 to 2e-5."
        )
    if config.max_steps is None and config.num_epochs > EPOCHS_ABOVE:
        advice["num_epochs"] = (
            f"{format_number(config.num_epochs)} epochs over the same pairs invites catastrophic forgetting without a reference "
            "model; set eval_every so the held-out NLL is watched, and keep a checkpoint (save_every)."
        )
    held_out = config.eval_dataset or config.eval_fraction > 0
    if config.eval_every == 0 and held_out and config.max_steps is None and config.num_epochs > 1:
        advice["eval_every"] = (
            f"eval_every 0 measures the held-out NLL only at the end, so catastrophic_forgetting cannot warn while "
            f"{format_number(config.num_epochs)} epochs revisit the same pairs: set eval_every (e.g. 20) to be told during the run."
        )
    return advice
