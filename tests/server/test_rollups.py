"""Summaries must never change what a chart shows: the downsampled series keeps every extreme and NaN."""

from __future__ import annotations

import math
import random

from server.services.metrics import insert_points, read_series
from server.services.rollups import BUCKET_WIDTH, RollupTracker


def _ingest(factory, tracker: RollupTracker, points) -> None:  # type: ignore[no-untyped-def]
    with factory() as session, session.begin():
        insert_points(session=session, run_id=factory.run_id, points=points)
        tracker.update(session=session, run_id=factory.run_id, points=points)


def test_downsampled_series_keeps_extremes_nans_and_late_points(session_factory) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(0)
    values = {step: rng.gauss(0, 1) for step in range(20_000)}
    values[7_777] = 50.0
    values[12_345] = -40.0
    values[15_000] = math.nan
    tracker = RollupTracker()
    steps = list(values)
    for start in range(0, len(steps), 997):  # odd batch sizes straddle bucket edges
        _ingest(session_factory, tracker, [(s, "loss", values[s], float(s)) for s in steps[start:start + 997]])
    # A resumed run re-logs steps inside already-summarised buckets: their summaries must follow.
    tracker_after_restart = RollupTracker()
    _ingest(session_factory, tracker_after_restart, [(3_000, "loss", 99.0, 3000.0)])  # duplicate: ignored by the table
    _ingest(session_factory, tracker_after_restart, [(20_000 + i, "loss", 0.0, 0.0) for i in range(200)])

    with session_factory() as session:
        series, downsampled = read_series(session=session, run_id=session_factory.run_id, names=["loss"], max_points=500)
        zoom, zoom_downsampled = read_series(session=session, run_id=session_factory.run_id, names=["loss"],
                                             max_points=500, min_step=7_700, max_step=7_900)
    loss = series["loss"]
    assert downsampled and len(loss.step) <= 500
    assert 50.0 in loss.value and -40.0 in loss.value
    assert loss.step[loss.value.index(50.0)] == 7_777
    assert None in loss.value and loss.step[loss.value.index(None)] == 15_000
    assert 99.0 not in loss.value  # the duplicate was ignored, not summarised
    assert loss.step[0] == 0 and loss.step[-1] == 20_199
    assert loss.step == sorted(loss.step)
    # Zoomed in: full resolution, exact values.
    assert not zoom_downsampled
    assert zoom["loss"].step == list(range(7_700, 7_901))
    assert zoom["loss"].value[77] == 50.0


def test_open_bucket_is_read_raw_so_live_points_show_at_once(session_factory) -> None:  # type: ignore[no-untyped-def]
    tracker = RollupTracker()
    _ingest(session_factory, tracker, [(s, "loss", float(s), 0.0) for s in range(BUCKET_WIDTH * 100 + 5)])
    with session_factory() as session:
        series, _ = read_series(session=session, run_id=session_factory.run_id, names=["loss"], max_points=50)
    assert series["loss"].step[-1] == BUCKET_WIDTH * 100 + 4


def test_coarse_levels_keep_extremes_across_level_edges(session_factory) -> None:  # type: ignore[no-untyped-def]
    tracker = RollupTracker()
    steps = 150_000
    spikes = {77_777: 9.0, 16_383: -9.0, 131_072: 8.0}
    for start in range(0, steps, 25_000):
        _ingest(session_factory, tracker, [
            (s, "loss", math.nan if s == 99_999 else spikes.get(s, 0.001 * (s % 97)), float(s))
            for s in range(start, min(steps, start + 25_000))
        ])
    with session_factory() as session:
        for max_points in (20, 60, 400, 3000):  # selects levels 2, 1, 0 and 0 with a trim in turn
            series, downsampled = read_series(session=session, run_id=session_factory.run_id, names=["loss"], max_points=max_points)
            loss = series["loss"]
            assert downsampled and len(loss.step) <= max_points
            for step, value in spikes.items():
                assert (step, value) in zip(loss.step, loss.value, strict=True), (max_points, step)
            assert (99_999, None) in zip(loss.step, loss.value, strict=True)
            assert loss.step[0] == 0 and loss.step[-1] == steps - 1


def test_a_series_stored_whole_gets_the_summaries_batches_would_give(session_factory) -> None:  # type: ignore[no-untyped-def]
    """An import writes level 0 from the points in memory (write_new_series); the rows must be those that
    streaming the same points in batches builds from the table, NaN and inf (stored as NULL) included."""
    from sqlalchemy import text

    rng = random.Random(1)
    points = [(s, "loss", rng.gauss(0, 1), float(s)) for s in range(1, 70_000, 3)]
    points[500] = (points[500][0], "loss", math.nan, points[500][3])
    points[9_000] = (points[9_000][0], "loss", math.inf, points[9_000][3])
    streamed = [(s, "streamed", v, t) for s, _, v, t in points]
    for start in range(0, len(streamed), 5000):
        _ingest(session_factory, RollupTracker(), streamed[start:start + 5000])
    tracker = RollupTracker()
    with session_factory() as session, session.begin():
        insert_points(session=session, run_id=session_factory.run_id, points=points)
        tracker.write_new_series(session=session, run_id=session_factory.run_id, name="loss", points=points)

    def summaries(name: str) -> list[tuple]:
        with session_factory() as session:
            return [tuple(row) for row in session.execute(text(
                "SELECT level, bucket, min_step, min_value, min_time, max_step, max_value, max_time, nan_step, nan_time "
                "FROM metric_rollups WHERE name = :name ORDER BY level, bucket"), {"name": name})]

    whole = summaries("loss")
    assert {row[0] for row in whole} == {0, 1, 2}
    assert whole == summaries("streamed")
    # Later points of the series (none for an import, but the tracker must know where it stands).
    assert tracker._sealed_below[(session_factory.run_id, "loss")] == points[-1][0] // BUCKET_WIDTH
