"""The garbage collector settings of a serving dashboard process.

Ingestion allocates thousands of short-lived lists and tuples per worker batch (a 5,000-point batch
is 5,000 decoded lists, then the point tuples). With CPython's default thresholds (700, 10, 10)
every 700 net allocations start a collection, and every hundredth of those a full one that walks
the whole long-lived heap (SQLAlchemy's mappers, FastAPI's routes, Jinja's templates, the alert
engines): measured under benchmarks/profile_ingest.py, the collector was most of the time spent
checking a batch's points. None of those batch objects form cycles, so collecting them early frees
nothing that reference counting does not already free.

So a serving process, once started: collects once, freezes what is alive (moved out of the
generations the collector walks: the startup heap is never garbage), and collects the young
generation every GEN0_THRESHOLD allocations instead of 700. Only the server process does this
(`orpo-dash serve`); tests and the trainer keep the defaults.
"""

from __future__ import annotations

import gc

# Allocations between young-generation collections (CPython's default is 700). A 5,000-point batch
# makes ~5,000 tracked lists when its frame is decoded, and a young collection walks every one still
# alive: the frames queued for the writer, up to 32 a worker. With 10 workers streaming at 50,000 the
# collections took 0.47 s of a 6 s run (gc.callbacks); at 200,000 ingestion ran 5-7 % faster
# (benchmarks/README.md, 4 interleaved rounds). Cycles that do occur (tracebacks, closures) are still
# found, a few dozen batches later.
GEN0_THRESHOLD = 200_000
# Young collections per middle one, and middle ones per full one (defaults 10 and 10). A full
# collection walks everything not frozen; it comes every GEN0 * 20 * 100 allocations.
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_gc_for_serving(gen0: int = GEN0_THRESHOLD) -> None:
    """Freeze the startup heap and collect less often; call once, after the app is built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, GEN1_THRESHOLD, GEN2_THRESHOLD)
