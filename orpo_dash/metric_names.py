"""Metric names. Charts, alerts and comparisons key on these, so they are fixed."""

LOSS = "loss"
NLL_LOSS = "nll_loss"
OR_LOSS = "or_loss"
LOG_ODDS_RATIO = "log_odds_ratio"
ACCURACY = "accuracy"
LOGPS_CHOSEN = "logps_chosen"
LOGPS_REJECTED = "logps_rejected"
MARGIN = "margin"
PPL_CHOSEN = "ppl_chosen"
LEARNING_RATE = "learning_rate"
EPOCH = "epoch"
GRAD_NORM = "grad_norm"
TOKENS_PER_SEC = "tokens_per_sec"
STEP_TIME = "step_time"

TRAIN_METRICS = (
    LOSS, NLL_LOSS, OR_LOSS, LOG_ODDS_RATIO, ACCURACY, LOGPS_CHOSEN, LOGPS_REJECTED, MARGIN,
    PPL_CHOSEN, LEARNING_RATE, EPOCH, GRAD_NORM, TOKENS_PER_SEC, STEP_TIME,
)

# The objective's metrics are also computed on the held-out split, under this prefix.
EVAL_PREFIX = "eval/"
EVAL_METRICS = tuple(EVAL_PREFIX + name for name in (
    LOSS, NLL_LOSS, OR_LOSS, LOG_ODDS_RATIO, ACCURACY, LOGPS_CHOSEN, LOGPS_REJECTED, MARGIN, PPL_CHOSEN,
))

# TRL's ORPOTrainer logs different names for the same quantities (trl/experimental/orpo).
# Note the trap: TRL's `log_odds_ratio` is the *negated OR loss*; its `log_odds_chosen` is our log odds ratio.
TRL_TO_OURS = {
    "loss": LOSS,
    "nll_loss": NLL_LOSS,
    "log_odds_chosen": LOG_ODDS_RATIO,
    "rewards/accuracies": ACCURACY,
    "logps/chosen": LOGPS_CHOSEN,
    "logps/rejected": LOGPS_REJECTED,
    "learning_rate": LEARNING_RATE,
    "epoch": EPOCH,
    "grad_norm": GRAD_NORM,
}
# Derived: OR loss = -TRL's log_odds_ratio.
TRL_NEGATED_TO_OURS = {"log_odds_ratio": OR_LOSS}


def from_trl(logs: dict[str, float], *, prefix: str = "") -> dict[str, float]:
    """Map one TRL/HF Trainer log dict onto our metric names; unknown keys pass through unchanged."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        is_eval = key.startswith("eval_")
        bare = key[len("eval_"):] if is_eval else key
        eval_prefix = EVAL_PREFIX if is_eval else ""
        if bare in TRL_TO_OURS:
            out[eval_prefix + TRL_TO_OURS[bare]] = float(value)
        elif bare in TRL_NEGATED_TO_OURS:
            out[eval_prefix + TRL_NEGATED_TO_OURS[bare]] = -float(value)
        else:
            out[prefix + key] = float(value)
    if LOGPS_CHOSEN in out and LOGPS_REJECTED in out and MARGIN not in out:
        out[MARGIN] = out[LOGPS_CHOSEN] - out[LOGPS_REJECTED]
    return out
