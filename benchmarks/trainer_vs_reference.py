"""Our trainer against the reference implementation, TRL's `ORPOTrainer`, side by side (issue 19).

Both train the same model on the same pairs, in the same order, with the same batch, optimizer
and seed. Each run is a fresh subprocess (its own peak memory); runs are interleaved over
repetitions so both sides see the same machine load. Arms:

* `reference`: `trl.experimental.orpo.ORPOTrainer`. Its NLL always covers prompt + response. Its
  tokenisation is replaced by ours (same token ids, no extra EOS), and its sampler by the order
  our trainer uses, so step k sees the same pairs on both sides; the training step is TRL's own.
* `ours-prompt-loss`: our trainer with `prompt_loss: true`, the reference's objective exactly.
* `ours`: our trainer with its default objective (response-only NLL).

Printed per arm: tokens/s (non-padding tokens of both sequences of every pair, prompt counted
twice as the reference computes it, per second of step time; the first step is warm-up and left
out), peak memory, activation memory as the memory a forward holds for its backward (RSS after the
loss minus before the forward, the largest over the steps after the first, which also pages in
the mmapped weights; needs --exact-memory on CPU, else freed
memory kept by malloc hides it) and as peak minus the static floor (runtime after imports + weights,
gradients, AdamW's two moments), first-step losses; then per-repetition ratios against the reference.
Spread: median and min-max over repetitions (and over the steps within a run for the step time).

    # TRL and datasets beside the venv, so they change nothing the trainer imports (or: pip install '.[bench]')
    pip install --no-deps --target /tmp/trl-bench trl datasets dill multiprocess pandas xxhash python-dateutil tzdata
    PYTHONPATH=$PWD:/tmp/trl-bench python -m benchmarks.trainer_vs_reference --reps 3 --steps 8
    ... --steps 50 --reps 1 --arms reference ours-prompt-loss        # loss curves over 50 steps
    ... --batch-size 16 --memory-cap-gb 4.5 --reps 1 --steps 3        # who runs out of memory
    ... --device cuda --dtype bf16 --peak-tflops 989                  # GPU: also prints MFU

TRL is a benchmark-only dependency (the `bench` extra); the trainer never imports it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ARMS = ("reference", "ours-prompt-loss", "ours")
# first-step metrics compared with the reference: our name -> TRL's name and sign
TRL_NAMES = {"loss": ("loss", 1), "nll_loss": ("nll_loss", 1), "or_loss": ("log_odds_ratio", -1),
             "log_odds_ratio": ("log_odds_chosen", 1), "logps_chosen": ("logps/chosen", 1),
             "logps_rejected": ("logps/rejected", 1), "grad_norm": ("grad_norm", 1)}
OOM_EXIT = 137


# ---------------------------------------------------------------- memory (runs inside each arm)


class Memory:
    """Peak memory since `reset()`: VmHWM on CPU (reset through /proc/self/clear_refs), the
    allocator's peak on CUDA. With a cap, a watchdog thread ends the process the moment the
    peak passes it, as the kernel's OOM killer would (without needing a cgroup)."""

    def __init__(self, device: str, cap_gb: float | None) -> None:
        self.cuda = device.startswith("cuda")
        self.cap_mb = cap_gb * 1024 if cap_gb else None
        if self.cap_mb and not self.cuda:
            threading.Thread(target=self._watch, daemon=True).start()

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")

    def current_mb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated() / 2**20
        return _status_kb("VmRSS") / 1024

    def peak_mb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return _status_kb("VmHWM") / 1024

    def _watch(self) -> None:
        assert self.cap_mb is not None
        while True:
            if self.peak_mb() > self.cap_mb:
                print(json.dumps({"oom": True, "peak_mb": self.peak_mb()}), flush=True)
                os._exit(OOM_EXIT)
            time.sleep(0.002)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# ---------------------------------------------------------------- one arm (a subprocess)


def run_config(args: argparse.Namespace, *, prompt_loss: bool) -> Any:
    from orpo_dash.run_config import RunConfig

    return RunConfig(
        model=args.model, dataset=args.dataset, eval_fraction=0.0, max_length=args.max_length,
        **({"max_prompt_length": args.max_prompt_length} if args.max_prompt_length else {}), batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler="constant", seed=args.seed, prompt_loss=prompt_loss,
        device=args.device, dtype={"fp32": "float32", "bf16": "bfloat16"}[args.dtype], logging_every=1,
        output_dir=None,
    )


def step_tokens(pairs: list[Any]) -> int:
    """Non-padding tokens of a step as two sequences per pair (what the reference computes)."""
    return sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)


def step_flops(pairs: list[Any], *, arm: str, n_params: int, hidden: int, vocab: int) -> float:
    """Model FLOPs each arm actually computes per step (6 per parameter per token, attention left
    out): the reference runs both padded sequences and projects every position; ours runs each
    prompt once and projects only the scored positions."""
    body = n_params - vocab * hidden
    if arm == "reference":
        width = max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs)
        tokens = projected = 2 * len(pairs) * width
    else:
        tokens = sum(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
        projected = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
        if arm == "ours-prompt-loss":
            projected += sum(len(p.prompt_ids) - 1 for p in pairs)
    return 6.0 * (body * tokens + vocab * hidden * projected)


class Collect:
    """A Reporter for our recipe that keeps the metrics of every step."""

    def __init__(self) -> None:
        self.steps: dict[int, dict[str, float]] = {}

    def metrics(self, step: int, values: Any) -> None:
        self.steps.setdefault(step, {}).update(values)

    def status(self, *args: Any, **kwargs: Any) -> None: ...
    def log(self, text: str) -> None: ...
    def samples(self, *args: Any) -> None: ...
    def close(self) -> None: ...

    def stop_requested(self) -> bool:
        return False


def run_ours(args: argparse.Namespace, memory: Memory, *, prompt_loss: bool) -> dict[str, Any]:
    import transformers.models.llama.modeling_llama  # noqa: F401  (imported before the baseline, as TRL's arm does)

    from trainer.recipe import ORPORecipe

    baseline_mb = memory.current_mb()
    reporter = Collect()
    recipe = ORPORecipe(run_config(args, prompt_loss=prompt_loss), reporter)
    recipe.setup()
    # Activations: the memory a forward leaves held for its backward (the scorer's forward covers
    # the decoder, the projection and the log-probs; only the tiny pair_sums comes after it).
    marks: dict[str, float] = {}
    held: list[float] = []
    recipe.scorer.register_forward_pre_hook(lambda *_: marks.update(before=memory.current_mb()))
    recipe.scorer.register_forward_hook(lambda *_: held.append(memory.current_mb() - marks["before"]))
    order = recipe.stream.indices(0, args.steps * args.batch_size)
    batches = [[recipe.data.train[i] for i in order[k * args.batch_size:(k + 1) * args.batch_size]] for k in range(args.steps)]
    param_mb = sum(p.numel() * p.element_size() for p in recipe.params) / 2**20
    memory.reset()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    steps = [reporter.steps[k + 1] for k in range(args.steps)]
    return {
        "step_times": [s["step_time"] for s in steps], "batches": batches, "model": recipe.model,
        "losses": [s["loss"] for s in steps], "first": {k: steps[0][k] for k in TRL_NAMES},
        "baseline_mb": baseline_mb, "param_mb": param_mb, "peak_mb": memory.peak_mb(), "held_mb": max(held[1:] or held),
    }


def run_reference(args: argparse.Namespace, memory: Memory) -> dict[str, Any]:
    import datasets
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from trainer.data import PairStream, load_preference_data
    from trainer.models import load_model, load_tokenizer, resolve_device

    baseline_mb = memory.current_mb()
    cfg = run_config(args, prompt_loss=True)
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype="float32", device=device)
    pairs = load_preference_data(cfg, tokenizer).train
    order = PairStream(len(pairs), cfg.seed).indices(0, args.steps * args.batch_size)  # our trainer's order
    rows = {"prompt": ["-"] * len(order), "chosen": ["-"] * len(order), "rejected": ["-"] * len(order), "idx": order}

    class SameTokensSameOrder(ORPOTrainer):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
            p = pairs[feature["idx"]]
            out: dict[str, Any] = {"prompt_input_ids": p.prompt_ids, "prompt_attention_mask": [1] * len(p.prompt_ids)}
            for kind, response in (("chosen", p.chosen_ids), ("rejected", p.rejected_ids)):
                ids = p.prompt_ids + response
                out |= {f"{kind}_input_ids": ids, f"{kind}_attention_mask": [1] * len(ids),
                        f"{kind}_labels": [-100] * len(p.prompt_ids) + response}
            return out

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            before = memory.current_mb()
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            held.append(memory.current_mb() - before)  # what the forward and loss hold for backward
            return out

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    times: list[float] = []
    held: list[float] = []
    logs: dict[int, dict[str, float]] = {}
    marks: dict[str, float] = {}

    class Watch(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            memory.reset()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            marks["t0"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter() - marks["t0"])

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs.setdefault(state.global_step, {}).update(kwargs.get("logs") or {})

    with tempfile.TemporaryDirectory() as out:
        config = ORPOConfig(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=cfg.learning_rate, lr_scheduler_type="constant", beta=cfg.beta,
            weight_decay=cfg.weight_decay, adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2,
            adam_epsilon=cfg.adam_epsilon, max_grad_norm=cfg.max_grad_norm, optim="adamw_torch_fused",
            max_length=cfg.max_length, seed=cfg.seed, logging_steps=1, save_strategy="no", report_to=[],
            remove_unused_columns=False, dataloader_num_workers=0, use_cpu=device.type == "cpu",
            bf16=args.dtype == "bf16", disable_tqdm=True,
            # TRL turns it on by default; recomputing activations would make the reference slower and leaner.
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        trainer = SameTokensSameOrder(model=model, args=config, train_dataset=datasets.Dataset.from_dict(rows),
                                      processing_class=tokenizer, callbacks=[Watch()])
        trainer.train()
    param_mb = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / 2**20
    steps = [logs[k + 1] for k in range(args.steps)]
    first = {ours: sign * steps[0][theirs] for ours, (theirs, sign) in TRL_NAMES.items()}
    batches = [[pairs[i] for i in order[k * args.batch_size:(k + 1) * args.batch_size]] for k in range(args.steps)]
    return {"step_times": times, "batches": batches, "model": model, "losses": [s["loss"] for s in steps],
            "first": first, "baseline_mb": baseline_mb, "param_mb": param_mb, "peak_mb": memory.peak_mb(),
            "held_mb": max(held[1:] or held)}


def arm_main(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    memory = Memory(args.device, args.memory_cap_gb)
    if args.arm == "reference":
        result = run_reference(args, memory)
    else:
        result = run_ours(args, memory, prompt_loss=args.arm == "ours-prompt-loss")
    model, batches = result.pop("model"), result.pop("batches")
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    result["tokens"] = [step_tokens(b) for b in batches]
    result["flops"] = [step_flops(b, arm=args.arm, n_params=n_params, hidden=cfg.hidden_size, vocab=cfg.vocab_size)
                       for b in batches]
    # Static floor: the runtime (the process after its imports, before the model) + weights,
    # gradients and AdamW's two moments. Not "the memory after a step": memory freed into malloc's
    # arenas stays resident, so that would count last step's activations as static.
    result["floor_mb"] = result["baseline_mb"] + 4 * result["param_mb"]
    # Peak minus that floor understates activations: gradients fill in as the backward frees them.
    result["activation_mb"] = result["peak_mb"] - result["floor_mb"]
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the driver


def run_arm(args: argparse.Namespace, arm: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.trainer_vs_reference", "--arm", arm]
    for name in ("model", "dataset", "steps", "batch_size", "max_length", "max_prompt_length", "lr", "seed", "device",
                 "dtype", "memory_cap_gb", "threads"):
        value = getattr(args, name)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    env = dict(os.environ)
    if args.exact_memory:
        # glibc keeps freed blocks below its (self-raising) mmap threshold resident; a fixed 128 KiB
        # threshold returns every tensor's memory on free, so the peak RSS is the peak of live memory.
        env |= {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == OOM_EXIT and lines:
        return {**json.loads(lines[-1]), "arm": arm}
    if proc.returncode != 0 or not lines:
        sys.exit(f"{arm} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result |= {"arm": arm, "oom": False, "wall_s": time.perf_counter() - start}
    return result


def summarise(runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Per run: median step time over the steps after warm-up, tokens/s over the same steps."""
    out = []
    for r in runs:
        times, tokens = r["step_times"][warmup:], r["tokens"][warmup:]
        out.append({"step_s": statistics.median(times), "step_minmax": (min(times), max(times)),
                    "tok_s": sum(tokens) / sum(times), "flop_s": sum(r["flops"][warmup:]) / sum(times),
                    "peak_mb": r["peak_mb"], "act_mb": r["activation_mb"], "floor_mb": r["floor_mb"],
                    "held_mb": r["held_mb"]})
    return {"runs": out}


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    warmup = 1 if args.steps > 1 else 0
    print(f"\nmodel {args.model}, batch {args.batch_size} pairs, max_length {args.max_length}, {args.steps} steps "
          f"(first {warmup} left out of the timing), {args.reps} interleaved repetition(s), {args.device} {args.dtype}, "
          f"threads {args.threads or 'default'}{', exact memory' if args.exact_memory else ''}")
    print("median [min-max] over repetitions\n")
    summaries = {}
    for arm, runs in results.items():
        done = [r for r in runs if not r.get("oom")]
        if len(done) < len(runs):
            peaks = ", ".join(f"{r['peak_mb'] / 1024:.2f}" for r in runs if r.get("oom"))
            print(f"{arm:>17}: OUT OF MEMORY in {len(runs) - len(done)}/{len(runs)} run(s) (cap {args.memory_cap_gb} GB; "
                  f"killed at {peaks} GB)")
        if not done:
            continue
        s = summarise(done, warmup)["runs"]
        summaries[arm] = s
        line = (f"{arm:>17}: {spread([x['tok_s'] for x in s], '{:.0f}')} tokens/s, "
                f"step {spread([x['step_s'] for x in s], '{:.2f}')} s (within-run min-max "
                f"{min(x['step_minmax'][0] for x in s):.2f}-{max(x['step_minmax'][1] for x in s):.2f}), "
                f"peak {spread([x['peak_mb'] / 1024 for x in s], '{:.2f}')} GB, held for backward "
                f"{spread([x['held_mb'] / 1024 for x in s], '{:.3f}')} GB, peak - floor "
                f"{spread([x['act_mb'] / 1024 for x in s], '{:.2f}')} GB (floor {statistics.median([x['floor_mb'] for x in s]) / 1024:.2f})")
        if args.device.startswith("cuda") and args.peak_tflops:
            line += f", MFU {spread([100 * x['flop_s'] / (args.peak_tflops * 1e12) for x in s], '{:.1f}')}%"
        print(line)
    if "reference" in summaries:
        ref = summaries["reference"]
        print()
        for arm in ("ours-prompt-loss", "ours"):
            if arm not in summaries:
                continue
            ours = summaries[arm]
            pairs = list(zip(ours, ref, strict=False))  # same repetition, so the same machine load
            print(f"{arm:>17} / reference: tokens/s x{spread([o['tok_s'] / r['tok_s'] for o, r in pairs], '{:.2f}')}, "
                  f"held for backward x{spread([o['held_mb'] / r['held_mb'] for o, r in pairs], '{:.2f}')}, "
                  f"peak x{spread([o['peak_mb'] / r['peak_mb'] for o, r in pairs], '{:.2f}')}")
    ref_runs = [r for r in results.get("reference", []) if not r.get("oom")]
    same_runs = [r for r in results.get("ours-prompt-loss", []) if not r.get("oom")]
    if ref_runs and same_runs:
        print("\nfirst step (before any update), identical objective:")
        ref_first, ours_first = ref_runs[0]["first"], same_runs[0]["first"]
        for name in TRL_NAMES:
            print(f"  {name:>15}: reference {ref_first[name]:+.6f}  ours {ours_first[name]:+.6f}  "
                  f"|diff| {abs(ref_first[name] - ours_first[name]):.1e}")
        diffs = [abs(a - b) for a, b in zip(ref_runs[0]["losses"], same_runs[0]["losses"], strict=True)]
        print(f"  loss curve over {len(diffs)} steps: max |diff| {max(diffs):.1e} (step {diffs.index(max(diffs)) + 1}), "
              f"last step reference {ref_runs[0]['losses'][-1]:.4f} ours {same_runs[0]['losses'][-1]:.4f}")
        if args.show_curve:
            for k, (a, b) in enumerate(zip(ref_runs[0]["losses"], same_runs[0]["losses"], strict=True), 1):
                print(f"    step {k:>3}: reference {a:.4f} ours {b:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", choices=ARMS, help="internal: run one arm in this process and print JSON")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--model", default="bundled:SmolLM2-135M-Instruct")
    parser.add_argument("--dataset", default="bundled:orpo-demo-prefs")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-prompt-length", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="end an arm whose peak memory passes this (CPU: an RSS watchdog, like an OOM kill)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per arm (default: torch's); 1 is steadier on a CPU shared with other jobs")
    parser.add_argument("--exact-memory", action="store_true",
                        help="CPU: make glibc return freed memory at once (both arms), so peak RSS tracks live memory; "
                             "slows allocation, so take speed from a run without it")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak dense TFLOP/s, for MFU (CUDA)")
    parser.add_argument("--show-curve", action="store_true", help="print both loss curves step by step")
    args = parser.parse_args()
    if args.arm:
        arm_main(args)
        return
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in args.arms}
    for rep in range(args.reps):
        order = args.arms[rep % len(args.arms):] + args.arms[:rep % len(args.arms)]  # rotate: interleaved
        for arm in order:
            result = run_arm(args, arm)
            results[arm].append(result)
            print(f"rep {rep + 1} {arm}: " + ("OOM" if result.get("oom") else
                  f"median step {statistics.median(result['step_times'][1:] or result['step_times']):.2f} s, "
                  f"peak {result['peak_mb'] / 1024:.2f} GB, wall {result['wall_s']:.0f} s"), flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
