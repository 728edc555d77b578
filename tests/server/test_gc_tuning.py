"""The serving process's collector settings (server/gc_tuning.py): frozen startup heap, rarer collections."""

from __future__ import annotations

import gc

from server.gc_tuning import GEN0_THRESHOLD, tune_gc_for_serving


def test_tuning_freezes_the_startup_heap_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_threshold()[0] == GEN0_THRESHOLD > before[0]
        assert gc.get_freeze_count() > 0  # the objects alive at startup are out of the collector's walk
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
