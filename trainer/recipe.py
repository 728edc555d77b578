"""The ORPO training recipe: setup(), train(), save_checkpoint(), cleanup() (torchtune style).

One optimizer step = one global batch of batch_size * gradient_accumulation_steps * world_size
pairs. Each micro-batch is ONE forward pass over its pairs, packed so each prompt is computed once
for both responses (trainer/packing.py, trainer/forward.py). The loss
of every micro-batch is normalised by totals over the whole global batch (response tokens for
the NLL, pairs for the OR term), so the accumulated gradient equals the big batch's gradient.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from orpo_dash import metric_names as M
from orpo_dash.config_errors import oversized_step
from orpo_dash.output_dir import output_dir_problem
from orpo_dash.protocol import clip_sample_text
from orpo_dash.run_config import RunConfig
from trainer import checkpoint, distributed, retention
from trainer.allocator import keep_freed_memory
from trainer.data import (
    PairStream,
    PreferenceData,
    TokenizedPair,
    encode_prompt,
    load_preference_data,
)
from trainer.forward import PairScorer
from trainer.fused_layers import fuse_layers, sparse_tied_embedding_grad, tied_embedding_grad_in_place
from trainer.loss import ORPOSums, pair_sums
from trainer.models import DTYPES, add_lora, load_model, load_tokenizer, resolve_device
from trainer.optimizer_step import clip_and_step
from trainer.packing import ROW_TOKENS, pack_pairs
from trainer.pair_attention import use_pair_attention
from trainer.reporting import Reporter
from trainer.system_metrics import SystemSampler

SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
N_EVAL_SAMPLE_PROMPTS = 3


class ORPORecipe:
    def __init__(self, config: RunConfig, reporter: Reporter, *, cache_dir: str | None = None) -> None:
        self.cfg = config
        self.reporter = reporter
        self.cache_dir = cache_dir
        self.step = 0  # optimizer steps done; metrics are reported at this step number
        self.pairs_seen = 0  # data position in the PairStream
        self._signalled = False
        self._finished = False  # train() returned normally: every rank reaches cleanup() together
        self._old_handlers: dict[int, Any] = {}
        # Everything setup() builds, declared here so the recipe's whole state reads in one place.
        # Until setup() joins a process group the recipe is one process on the configured device.
        self.device = torch.device("cpu")
        self.world = distributed.World()
        self.tokenizer: Any = None
        self.model: Any = None  # the unwrapped model: generate, save and eval use it
        self.scorer: Any = None  # PairScorer: the model's packed-pairs forward (trainer/forward.py)
        self.train_model: Any = None  # the scorer, or its DistributedDataParallel wrapper
        self.autocast_dtype: torch.dtype | None = None
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.data = PreferenceData(train=[], eval=[], eval_prompts=[])
        self.stream = PairStream(0, config.seed)
        self.global_batch = 0  # pairs per optimizer step, over all ranks
        self.total_steps = 0
        self.row_tokens = ROW_TOKENS  # tokens per packed row (trainer/packing.py); see _setup_model
        self.params: list[torch.nn.Parameter] = []
        self.optimizer: Any = None
        self.scheduler: Any = None
        self._eval_loss_at: tuple[int, float] | None = None  # (step, eval/loss) of the latest evaluation
        self.system = SystemSampler(0)  # the sys/ metrics; train() starts the real one

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.cfg
        if cfg.output_dir and (problem := output_dir_problem(cfg.output_dir)):
            raise ValueError(problem)  # before the model loads: the first checkpoint comes after training
        self.device = resolve_device(cfg.device)
        keep_freed_memory()  # before the first step allocates anything large
        self.world = distributed.init_world(self.device.type)
        if self.world.parallel and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(self.device)
        _seed_everything(cfg.seed)
        # Read (and vet) the saved state before loading anything else from that folder: a state
        # that is refused should fail the run at once, not after the model has loaded.
        resume_state = checkpoint.load_state(cfg.resume_from) if cfg.resume_from else None
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        if resume_state is not None:
            self._load_checkpoint(resume_state, cfg.resume_from)

    def _setup_model(self) -> None:
        cfg = self.cfg
        self._log(f"loading model {cfg.model}")
        self.tokenizer = load_tokenizer(cfg.model, cache_dir=self.cache_dir)
        # Mixed precision: full fine-tuning keeps float32 master weights and runs the forward
        # under autocast (tiny AdamW updates vanish in 16-bit weights). LoRA trains float32
        # adapters, so the frozen base can live in the 16-bit dtype and save memory.
        weights_dtype = cfg.dtype if cfg.lora else "float32"
        source = cfg.resume_from if cfg.resume_from and not cfg.lora else cfg.model
        model = load_model(
            source, dtype=weights_dtype, device=self.device, cache_dir=self.cache_dir,
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        if cfg.lora:
            model = add_lora(
                model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                target_modules=cfg.lora_target_modules, gradient_checkpointing=cfg.gradient_checkpointing,
            )
            if cfg.resume_from:
                checkpoint.load_adapter(model, cfg.resume_from)
        # Same numbers, about a third less activation memory (trainer/fused_layers.py).
        lean = fuse_layers(model)
        if self.world.parallel:
            sparse_tied_embedding_grad(model)
        else:
            tied_embedding_grad_in_place(model)
        # Attention pair by pair instead of over the whole packed row (trainer/pair_attention.py). Its cost
        # no longer grows with a row's length, so every micro-batch is then packed into one row: no padding.
        self.row_tokens = sys.maxsize if use_pair_attention(model) else ROW_TOKENS
        self.model = model
        self.scorer = PairScorer(model)
        self.train_model = self.scorer
        if self.world.parallel:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.scorer, device_ids=ids)
        self.autocast_dtype = None if cfg.dtype == "float32" else DTYPES[cfg.dtype]
        # float16 overflows without loss scaling; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.dtype == "float16")
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self._log(f"model ready on {self.device}: {n_trainable:,} trainable parameters "
                  f"({lean['mlp']} MLP and {lean['rmsnorm']} norm layers with the lean backward)")

    def _setup_data(self) -> None:
        cfg = self.cfg
        self.data = load_preference_data(cfg, self.tokenizer)
        for reason, count in sorted(self.data.counts.items()):
            self._log(f"{reason}: {count} pair(s)")
        self._log(f"{len(self.data.train)} training pairs, {len(self.data.eval)} held-out pairs")
        self.stream = PairStream(len(self.data.train), cfg.seed)
        self.global_batch = cfg.batch_size * cfg.gradient_accumulation_steps * self.world.size
        # A step bigger than the data would hold the same pair several times: not the batch anyone asked for.
        if too_big := oversized_step(batch_size=cfg.batch_size, accumulation=cfg.gradient_accumulation_steps,
                                     processes=self.world.size, available=len(self.data.train),
                                     where="the training split", unit="pairs"):
            raise ValueError(too_big)
        if cfg.max_steps:
            self.total_steps = cfg.max_steps
            if cfg.num_epochs != RunConfig.model_fields["num_epochs"].default:
                self._log(f"warning: num_epochs={cfg.num_epochs} ignored because max_steps={cfg.max_steps} is set")
        else:
            self.total_steps = max(1, math.ceil(cfg.num_epochs * len(self.data.train) / self.global_batch))
        if cfg.eval_dataset and cfg.eval_fraction != RunConfig.model_fields["eval_fraction"].default:
            self._log("warning: eval_fraction ignored because eval_dataset is set")
        if not self.data.eval:
            self._log("no held-out pairs: evaluation is skipped")

    def _setup_optimizer(self) -> None:
        from transformers import get_scheduler

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        # Decay matrices only; decaying biases and norm gains just fights the normalisation.
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        self.params = params
        # The fused kernel does the same update in one pass over the weights instead of a dozen: on
        # 2 CPU cores, 59 ms instead of 425 ms a step for the 135M default model (benchmarks/optimizer_step.py).
        fused = self.device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in params)
        self.optimizer = torch.optim.AdamW(
            groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
            fused=fused or None,
        )
        if cfg.warmup_steps and cfg.warmup_ratio:
            self._log("warning: warmup_ratio ignored because warmup_steps is set")
        warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = get_scheduler(
            SCHEDULERS[cfg.lr_scheduler], self.optimizer, num_warmup_steps=warmup, num_training_steps=self.total_steps
        )

    # ------------------------------------------------------------------ train

    def train(self) -> str:
        """Run to total_steps (or a graceful stop); returns "completed" or "stopped"."""
        cfg = self.cfg
        self._install_signal_handlers()
        self._report_status("running", total_steps=self.total_steps)
        self._report_phase("training")
        window: ORPOSums | None = None  # sums since the last report; logged metrics average over them
        window_tokens, window_time, window_steps = 0, 0.0, 0
        last_saved = last_eval = last_sampled = -1
        # Only rank 0 reports, so only its process is sampled.
        self.system = SystemSampler(cfg.system_metrics_seconds if self.world.is_main else 0, device=self.device)

        while self.step < self.total_steps:
            t0 = time.perf_counter()
            batches = self._next_micro_batches()
            # Global totals, known before any forward, let each micro-batch weight its loss by its
            # share of the whole batch: the NLL is a token mean over ALL SFT tokens of the global
            # batch, the OR term a mean over all its pairs.
            nll_tokens = distributed.all_reduce_sum(
                torch.tensor(float(sum(b["sft_tokens"] for b in batches)), device=self.device), self.world
            )
            pairs = float(self.global_batch)
            step_sums: ORPOSums | None = None
            for i, batch in enumerate(batches):
                # Under DDP, all-reduce gradients once, after the last micro-batch.
                last = i == len(batches) - 1
                sync = nullcontext() if last or not self.world.parallel else self.train_model.no_sync()
                with sync:
                    with self._autocast():
                        logps = self.train_model(batch["packed"])
                    sums = pair_sums(logps)
                    # Each rank's loss is already a share of the GLOBAL mean; DDP averages gradients
                    # over ranks, so scale by world size to turn that average back into the sum.
                    loss = sums.objective(cfg.beta, nll_tokens=nll_tokens, pairs=pairs) * self.world.size
                    self.scaler.scale(loss).backward()
                detached = sums.detach()
                step_sums = detached if step_sums is None else step_sums + detached
                window_tokens += batch["n_tokens"]
                del logps, loss, sums  # free this micro-batch's activations before the next forward
            assert step_sums is not None  # gradient_accumulation_steps > 0 (validated), so batches is never empty

            learning_rate = self.scheduler.get_last_lr()[0]
            # Clipping applies max_grad_norm to the true gradient (unscaled first under float16, where
            # inf/nan makes the scaler skip this step and lower its scale); the norm reported is the one
            # measured before clipping.
            grad_norm = clip_and_step(self.optimizer, self.scaler, self.params, cfg.max_grad_norm or math.inf)
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.pairs_seen += self.global_batch

            window = step_sums if window is None else window + step_sums
            window_time += time.perf_counter() - t0
            window_steps += 1
            if self.step % cfg.logging_every == 0 or self.step == self.total_steps:
                # .item() here waits for the device; keep it at logging time. The other per-step wait
                # is the stop vote at the end of the step, and only under DDP (see below).
                metrics = self._reduce(window, prefix="")
                tokens = distributed.all_reduce_sum(torch.tensor(float(window_tokens)), self.world).item()
                metrics.update({
                    M.LEARNING_RATE: learning_rate,
                    M.EPOCH: self.pairs_seen / len(self.data.train),
                    M.GRAD_NORM: float(grad_norm),
                    M.TOKENS_PER_SEC: tokens / max(window_time, 1e-9),
                    M.STEP_TIME: window_time / window_steps,
                })
                self._report_metrics(metrics)
                window, window_tokens, window_time, window_steps = None, 0, 0.0, 0

            # The last step is evaluated here, before its checkpoint is saved, so that checkpoint gets its
            # eval/loss (keep_best_checkpoint compares them).
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == self.total_steps:
                self.evaluate()
                last_eval = self.step
            if cfg.sample_every and self.step % cfg.sample_every == 0:
                self.generate_samples()
                last_sampled = self.step
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint()
                last_saved = self.step
            if self.step < self.total_steps and self.step in (last_eval, last_saved, last_sampled):
                self._report_phase("training")  # back from an evaluation, samples or a save
            # After the step's eval, samples and save, so a sample's CPU time covers them too.
            if self.system.due():
                self._report_metrics(self.system.sample())
            # Every rank must agree to stop at the same step, or the others hang in all-reduce. Under
            # DDP the vote is a one-element all-reduce read back on the host: one host-device sync per
            # step, the price of stopping within one step; a single process decides without a sync.
            stop = self._signalled or (self.world.is_main and self.reporter.stop_requested())
            if distributed.any_rank(stop, self.world, self.device) and self.step < self.total_steps:
                self._log(f"stop requested: stopping after step {self.step}")
                if last_saved != self.step:
                    self.save_checkpoint()
                self._report_status("stopped")
                self._finished = True
                return "stopped"

        if last_eval != self.step:
            self.evaluate()
        if last_saved != self.step:
            self.save_checkpoint()
        self._report_status("completed")
        self._finished = True
        return "completed"

    def _next_micro_batches(self) -> list[dict[str, Any]]:
        """This rank's micro-batches of the next global batch: micro-batch a, rank r gets
        positions [a*B*W + r*B, a*B*W + (r+1)*B) of the global batch."""
        cfg = self.cfg
        indices = self.stream.indices(self.pairs_seen, self.global_batch)
        per_micro = cfg.batch_size * self.world.size
        out = []
        for a in range(cfg.gradient_accumulation_steps):
            start = a * per_micro + self.world.rank * cfg.batch_size
            out.append(self._pack([self.data.train[i] for i in indices[start: start + cfg.batch_size]]))
        return out

    def _pack(self, pairs: list[TokenizedPair]) -> dict[str, Any]:
        """One micro-batch laid out for one forward (trainer/packing.py), on the device."""
        packed = pack_pairs(pairs, self.tokenizer.pad_token_id, prompt_loss=self.cfg.prompt_loss, row_tokens=self.row_tokens)
        return {
            "packed": packed.to(self.device),
            # Counted on the CPU copies, so the loop never waits on the device for them.
            "sft_tokens": int(packed.in_sft.sum()),
            # tokens_per_sec counts what the pairs hold as two sequences (prompt + chosen, prompt +
            # rejected), however few of them the packed forward computes (docs/metrics.md).
            "n_tokens": sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs),
        }

    # ------------------------------------------------------------------ eval, samples

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Metrics over the whole held-out split (batches sharded over ranks), under eval/."""
        if not self.data.eval:
            return None
        self.model.eval()
        size = self.cfg.batch_size
        batches = [self.data.eval[i: i + size] for i in range(0, len(self.data.eval), size)]
        total = ORPOSums.zeros(self.device)
        mine = batches[self.world.rank:: self.world.size]
        for done, pairs in enumerate(mine):
            self._report_phase("evaluating", done=done, total=len(mine))
            with self._autocast():
                logps = self.scorer(self._pack(pairs)["packed"])
            total = total + pair_sums(logps)
        self.model.train()
        metrics = self._reduce(total, prefix=M.EVAL_PREFIX)
        self._report_metrics(metrics)
        self._eval_loss_at = (self.step, metrics[M.EVAL_PREFIX + M.LOSS])
        return metrics

    @torch.no_grad()
    def generate_samples(self) -> list[dict[str, str]]:
        """Greedy completions for sample_prompts (or the first eval prompts); rank 0 only."""
        if not self.world.is_main:
            return []
        prompts = [[{"role": "user", "content": p}] for p in self.cfg.sample_prompts]
        prompts = prompts or self.data.eval_prompts[:N_EVAL_SAMPLE_PROMPTS]
        self.model.eval()
        samples = []
        for done, messages in enumerate(prompts):
            self._report_phase("generating samples", done=done, total=len(prompts))
            ids = torch.tensor([encode_prompt(self.tokenizer, messages)], device=self.device)
            with self._autocast():
                out = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.cfg.sample_max_new_tokens,
                    do_sample=False, pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
                )
            completion = self.tokenizer.decode(out[0, ids.size(1):], skip_special_tokens=True)
            shown = messages[-1]["content"] if len(messages) == 1 else "\n".join(f"{m['role']}: {m['content']}" for m in messages)
            samples.append({"prompt": clip_sample_text(shown), "completion": clip_sample_text(completion)})
        self.model.train()
        if samples:
            self.reporter.samples(self.step, samples)
        return samples

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> str | None:
        """Model/adapter + tokenizer + trainer state into output_dir/checkpoint-<step>/, then delete the
        checkpoints the retention policy no longer keeps (trainer/retention.py)."""
        cfg = self.cfg
        if not cfg.output_dir:
            self._log("warning: output_dir is not set, so no checkpoint is saved")
            return None
        self._report_phase("saving checkpoint")
        rng = distributed.gather_objects(checkpoint.rng_state(), self.world)
        path = checkpoint.checkpoint_dir(cfg.output_dir, self.step)
        if self.world.is_main:
            state = {
                "step": self.step,
                "pairs_seen": self.pairs_seen,
                "global_batch": self.global_batch,
                # AdamW's two moments are twice the trainable weights: only when asked (resume needs them).
                "optimizer": self.optimizer.state_dict() if cfg.save_optimizer_state else None,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "config": self.cfg.model_dump(),
            }
            evaluated = self._eval_loss_at
            eval_loss = evaluated[1] if evaluated is not None and evaluated[0] == self.step else None
            checkpoint.save(path, model=self.model, tokenizer=self.tokenizer, state=state,
                            info={"step": self.step, "eval_loss": eval_loss})
            self._log(f"saved checkpoint {path}")
            removed = retention.prune(cfg.output_dir, keep_last=cfg.keep_last_checkpoints, keep_best=cfg.keep_best_checkpoint)
            if removed:
                self._log(f"deleted {len(removed)} older checkpoint(s) (keep_last_checkpoints={cfg.keep_last_checkpoints}, "
                          f"keep_best_checkpoint={cfg.keep_best_checkpoint}): {', '.join(p.name for p in removed)}")
        distributed.barrier(self.world)
        return str(path)

    def _load_checkpoint(self, state: dict[str, Any], path: str | None) -> None:
        if state["global_batch"] != self.global_batch:
            self._log(f"warning: global batch changed from {state['global_batch']} to {self.global_batch} since the checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.pairs_seen = state["step"], state["pairs_seen"]
        rng = state["rng"]
        checkpoint.set_rng_state(rng[self.world.rank] if self.world.rank < len(rng) else rng[0])
        self._log(f"resumed from {path} at step {self.step}")

    # ------------------------------------------------------------------ plumbing

    def cleanup(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()
        distributed.shutdown(self.world, together=self._finished)

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, frame: Any) -> None:
            if self._signalled:  # a second signal means "now": fall back to the default behaviour
                signal.signal(signum, self._old_handlers.get(signum, signal.SIG_DFL))
                signal.raise_signal(signum)
            self._signalled = True

        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[signum] = signal.signal(signum, handle)
        except ValueError:  # not the main thread (e.g. run inside a server thread): reporter stop only
            self._old_handlers.clear()

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _reduce(self, sums: ORPOSums, *, prefix: str) -> dict[str, float]:
        vector = distributed.all_reduce_sum(sums.as_tensor(), self.world)
        return ORPOSums.from_tensor(vector).reduce(self.cfg.beta).metrics(prefix=prefix)

    def _report_metrics(self, metrics: dict[str, float]) -> None:
        if self.world.is_main:
            self.reporter.metrics(self.step, metrics)

    def _report_phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        # getattr: a Reporter written before phases existed has no phase() and is simply not told.
        if self.world.is_main and (report := getattr(self.reporter, "phase", None)) is not None:
            report(name, done=done, total=total)

    def _report_status(self, status: str, **kwargs: Any) -> None:
        if self.world.is_main:
            self.reporter.status(status, **kwargs)

    def _log(self, text: str) -> None:
        if self.world.is_main:
            self.reporter.log(text)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
