"""The whole collection's real scenarios again, with seeds neither the detectors nor their thresholds saw.

Every real scenario of make_real_traces.py is re-run with its seed shifted by --offset (new model
initialisation, new training pairs, new batch order), labelled by label_traces.py's hindsight rules
(T_LEARN taken from the stored collection, as for the stored labels) and scored like score.py. The
thresholds were derived on the stored collection, so this is the check that they were not fitted to
its particular runs. Traces go to a temporary folder (--keep DIR to keep them); the collection is
not touched.

    python benchmarks/alerts/fresh_seeds.py [--offset 10000] [--only PREFIX] [--keep DIR]   # ~25 min
    python benchmarks/alerts/fresh_seeds.py --rescore DIR   # label and score traces kept earlier
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from label_traces import learn_step, load, oracle  # noqa: E402
from make_real_traces import build_tokenizer, run, scenarios  # noqa: E402
from score import first_openings, print_table  # noqa: E402
from traces import TRACES, write_trace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offset", type=int, default=10_000, help="Added to every scenario's seed.")
    ap.add_argument("--only", default="", help="Run only scenarios whose name starts with this.")
    ap.add_argument("--keep", type=Path, help="Keep the fresh traces in this folder.")
    ap.add_argument("--rescore", type=Path, help="Run nothing: label and score the traces --keep left in this folder.")
    args = ap.parse_args()
    if args.rescore:
        rescore(args.rescore)
        return
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    t_learn = stored_t_learn()
    print(f"T_LEARN = {t_learn} (from the stored collection); seeds + {args.offset}", flush=True)
    tokenizer = build_tokenizer()
    results: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "traces"
        out.mkdir(parents=True, exist_ok=True)
        for sc in scenarios():
            if not sc.name.startswith(args.only):
                continue
            sc.seed += args.offset
            t0 = time.perf_counter()
            path = out / f"fresh_{sc.name}.jsonl.gz"
            write_trace(path, run(sc, tokenizer, Path(tmp)))
            expect = oracle(load(path), t_learn)
            results[path.name.removesuffix(".jsonl.gz")] = (expect, first_openings(path, {}))
            print(f"{sc.name:22s} {time.perf_counter() - t0:5.1f}s  labels {expect}  opened {results[path.name.removesuffix('.jsonl.gz')][1]}",
                  flush=True)
    print_table(results)


def stored_t_learn() -> int:
    """T_LEARN as the stored labels have it: the latest healthy run to pass a log odds ratio of 0.5."""
    return max(learn_step(load(p)) for p in sorted(TRACES.glob("real_healthy_*.jsonl.gz")))


def rescore(folder: Path) -> None:
    """Score kept traces again, e.g. after a detector change, without re-running the training."""
    t_learn = stored_t_learn()
    paths = sorted(folder.glob("fresh_*.jsonl.gz"))
    if not paths:
        raise SystemExit(f"no fresh_*.jsonl.gz traces in {folder} (make them with --keep {folder})")
    print_table({p.name.removesuffix(".jsonl.gz"): (oracle(load(p), t_learn), first_openings(p, {})) for p in paths})


if __name__ == "__main__":
    main()
