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

# Machine load, sampled by the worker every few seconds (trainer/system_metrics.py), at the step it had reached.
# They describe the machine, not the training: no alert reads them, and they never count as progress or a result.
SYSTEM_PREFIX = "sys/"
SYS_CPU_PERCENT = SYSTEM_PREFIX + "cpu_percent"  # the worker process's CPU time / wall time, all threads (100 = one core)
SYS_RSS_MB = SYSTEM_PREFIX + "rss_mb"  # the worker process's resident memory
SYS_GPU_UTIL = SYSTEM_PREFIX + "gpu_util"  # the GPU's busy percentage (CUDA with pynvml installed only)
SYS_GPU_MEM_MB = SYSTEM_PREFIX + "gpu_mem_mb"  # tensors allocated by this process on its GPU (CUDA only)
SYS_GPU_MAX_MEM_MB = SYSTEM_PREFIX + "gpu_max_mem_mb"  # the peak of gpu_mem_mb since the run started (CUDA only)
SYSTEM_METRICS = (SYS_CPU_PERCENT, SYS_RSS_MB, SYS_GPU_UTIL, SYS_GPU_MEM_MB, SYS_GPU_MAX_MEM_MB)


def is_system(name: str) -> bool:
    return name.startswith(SYSTEM_PREFIX)


# Other tools' names, one key at a time (docs/metrics.md, "Reading other tools' files", has the table).
# TRL's ORPOTrainer (trl/experimental/orpo/orpo_trainer.py, get_batch_loss_metrics) logs these through the
# Hugging Face Trainer, which prefixes evaluation metrics with "eval_" (ours use "eval/").
HF_EVAL_PREFIX = "eval_"
TRL_TO_OURS = {
    "loss": LOSS,
    "nll_loss": NLL_LOSS,  # TRL's covers prompt + chosen response tokens; ours the response (unless prompt_loss)
    "log_odds_chosen": LOG_ODDS_RATIO,  # mean log odds of chosen over rejected: our log odds ratio
    "rewards/accuracies": ACCURACY,  # beta * logp_c > beta * logp_r, the same pairs as ours for beta > 0
    "logps/chosen": LOGPS_CHOSEN,
    "logps/rejected": LOGPS_REJECTED,
    "learning_rate": LEARNING_RATE,
    "epoch": EPOCH,
    "grad_norm": GRAD_NORM,
}
# The trap: TRL's `log_odds_ratio` is mean(log sigmoid(log odds)) = minus our OR loss, always <= 0.
TRL_NEGATED_TO_OURS = {"log_odds_ratio": OR_LOSS}
# TRL names with no counterpart of ours (rewards/* are beta * logps, logits/* mean logits): read under
# their own names, like any unknown key.
TRL_UNMAPPED = ("rewards/chosen", "rewards/rejected", "rewards/margins", "logits/chosen", "logits/rejected")
# The Hugging Face Trainer's end-of-training summary (one record, not a per-step metric).
HF_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")

# The one bare name both tools log with different meanings; see log_odds_source() in orpo_dash.diagnostics.
AMBIGUOUS_LOG_ODDS = "log_odds_ratio"
SOURCES = ("trl", "ours")
_SHARED = {LOSS, NLL_LOSS, LEARNING_RATE, EPOCH, GRAD_NORM, AMBIGUOUS_LOG_ODDS}
_OURS_ONLY = frozenset(TRAIN_METRICS) - _SHARED
_TRL_ONLY = (frozenset(TRL_TO_OURS) | frozenset(TRL_UNMAPPED)) - _SHARED
KNOWN_NAMES = frozenset(
    {*TRAIN_METRICS, *EVAL_METRICS, *SYSTEM_METRICS, *TRL_TO_OURS, *TRL_NEGATED_TO_OURS, *TRL_UNMAPPED}
    | {HF_EVAL_PREFIX + k for k in (*TRL_TO_OURS, *TRL_NEGATED_TO_OURS, *TRL_UNMAPPED)}
)


def naming(key: str) -> str | None:
    """Which tool's naming a key shows: "trl" (TRL/HF only), "ours" (ours only), or None (both, or neither)."""
    if key.startswith(HF_EVAL_PREFIX) or key in HF_SUMMARY_KEYS or key in _TRL_ONLY:
        return "trl"
    if key.startswith(EVAL_PREFIX) or key in _OURS_ONLY:
        return "ours"
    return None


def our_name(key: str, *, log_odds_source: str | None) -> tuple[str, bool]:
    """Our name for one logged key and whether its value is negated; unknown keys keep their name.

    `log_odds_source` says whose `log_odds_ratio` a bare one is ("trl" or "ours"); "eval_log_odds_ratio"
    is always TRL's (the "eval_" prefix is the Hugging Face Trainer's).
    """
    is_hf_eval = key.startswith(HF_EVAL_PREFIX)
    bare = key[len(HF_EVAL_PREFIX):] if is_hf_eval else key
    prefix = EVAL_PREFIX if is_hf_eval else ""
    if bare in TRL_NEGATED_TO_OURS and (is_hf_eval or log_odds_source == "trl"):
        return prefix + TRL_NEGATED_TO_OURS[bare], True
    if bare in TRL_TO_OURS:
        return prefix + TRL_TO_OURS[bare], False
    return key, False


def from_trl(logs: dict[str, float], *, prefix: str = "") -> dict[str, float]:
    """Map one TRL/HF Trainer log dict onto our metric names; unknown keys pass through unchanged."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name, negated = our_name(key, log_odds_source="trl")
        known = name != key or key in TRL_TO_OURS or key in TRL_NEGATED_TO_OURS
        out[name if known else prefix + key] = -float(value) if negated else float(value)
    if LOGPS_CHOSEN in out and LOGPS_REJECTED in out and MARGIN not in out:
        out[MARGIN] = out[LOGPS_CHOSEN] - out[LOGPS_REJECTED]
    return out

# The Hugging Face Trainer's W&B and TensorBoard callbacks (transformers.integrations, rewrite_logs) log TRL's
# key X as "train/X" and eval_X as "eval/X"; WandbCallback adds "train/global_step", the step it logged at.
HF_LOGGER_TRAIN_PREFIX = "train/"
HF_LOGGER_STEP = "train/global_step"


def from_hf_logger(key: str, *, hf_keys: bool) -> tuple[str, bool]:
    """Our name for a key written by the Hugging Face Trainer's W&B or TensorBoard callback, and whether its
    value is negated: "train/X" is TRL's X and "eval/X" TRL's eval_X when the run has "train/" keys
    (`hf_keys`); any other key is read like a key of a metrics file (ours, e.g. "loss" or "eval/loss")."""
    if key.startswith(HF_LOGGER_TRAIN_PREFIX):
        return our_name(key[len(HF_LOGGER_TRAIN_PREFIX):], log_odds_source="trl")
    if key.startswith(EVAL_PREFIX) and hf_keys:
        return our_name(HF_EVAL_PREFIX + key[len(EVAL_PREFIX):], log_odds_source="trl")
    return key, False


# Which way is better, for "best" columns and the compare summary. Metrics not listed (learning rate,
# log-probs, throughput) have no better direction, so no "best" is claimed for them.
LOWER_IS_BETTER = frozenset({LOSS, NLL_LOSS, OR_LOSS, PPL_CHOSEN})
HIGHER_IS_BETTER = frozenset({LOG_ODDS_RATIO, ACCURACY, MARGIN})


def better_direction(name: str) -> int:
    """-1 when lower is better, 1 when higher is, 0 when neither; an eval/ name goes like its train metric."""
    base = name.removeprefix(EVAL_PREFIX)
    return -1 if base in LOWER_IS_BETTER else 1 if base in HIGHER_IS_BETTER else 0
