"""Summaries must never change what a chart shows: the downsampled series keeps every extreme and NaN."""

from __future__ import annotations

import math
import random

from sqlalchemy import text

from orpo_dash.run_config import RunConfig
from server.services.metrics import insert_points, read_series
from server.services.rollups import BUCKET_WIDTH, RollupTracker
from server.services.runs import create_run


def _ingest(factory, tracker: RollupTracker, points) -> None:  # type: ignore[no-untyped-def]
    with factory() as session, session.begin():
        all_stored = insert_points(session=session, run_id=factory.run_id, points=points)
        tracker.update(session=session, run_id=factory.run_id, points=points, all_stored=all_stored)


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


def _rollup_rows(session_factory, run_id: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        return [tuple(row) for row in session.execute(text(
            "SELECT name, level, bucket, min_step, min_value, min_time, max_step, max_value, max_time, nan_step, nan_time "
            "FROM metric_rollups WHERE run_id = :run ORDER BY name, level, bucket"), {"run": run_id})]


def _stream_with_resends(tracker_for, ingest) -> None:  # type: ignore[no-untyped-def]
    """Batches of several metrics in step order, straddling bucket edges, with NaN/inf values, a batch
    that resends stored steps, one out of step order, and a restart (a new tracker) in the middle."""
    rng = random.Random(3)
    special = {500: math.nan, 901: math.inf, 1_777: -math.inf, 2_048: math.nan}
    points = [(step, name, special.get(step, rng.gauss(0, 1)) if name != "acc" else rng.random(), float(step))
              for step in range(4_000) for name in ("loss", "acc", "eval/loss")[: 3 if step % 50 == 0 else 2]]
    tracker = tracker_for()
    position = 0
    for size in (700, 1_234, 90, 3, 2_500):
        ingest(tracker, points[position:position + size])
        position += size
    ingest(tracker, points[position - 40:position + 10])  # a resend of stored steps, then new ones
    position += 10
    tracker = tracker_for()  # a dashboard restart
    ingest(tracker, points[position:position + 600])
    position += 600
    ingest(tracker, points[position:position + 300][::-1])  # out of step order
    position += 300
    ingest(tracker, [(3_999 + s, "loss", 1.0, 0.0) for s in range(1, 3)] + [(3_000, "acc", 5.0, 0.0)])  # a late point
    while position < len(points):
        ingest(tracker, points[position:position + 777])
        # New, in step order, yet before the series' last stored step (in its open bucket): read back.
        last_eval = max(step for step, name, _, _ in points[:position] if name == "eval/loss")
        if last_eval % BUCKET_WIDTH:
            ingest(tracker, [(last_eval - 1, "eval/loss", 7.0 + position, 1.0)])
        position += 777


def test_summaries_from_memory_are_those_read_back(session_factory, tmp_path, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    """update(all_stored=True) summarises streamed batches from memory; the rows must be exactly those the
    same batches give when every summary is read back from the table (all_stored=False)."""
    with session_factory() as session, session.begin():
        other, _ = create_run(session=session, config=RunConfig(dataset=str(tiny_dataset_file)), name=None,
                              runs_dir=tmp_path, output_root=tmp_path)
        other_id = other.id

    def read_back(tracker, points):  # type: ignore[no-untyped-def]
        with session_factory() as session, session.begin():
            insert_points(session=session, run_id=other_id, points=points)
            tracker.update(session=session, run_id=other_id, points=points)

    _stream_with_resends(RollupTracker, lambda tracker, points: _ingest(session_factory, tracker, points))
    _stream_with_resends(RollupTracker, read_back)
    expected = _rollup_rows(session_factory, other_id)
    assert len(expected) > 100
    assert _rollup_rows(session_factory, session_factory.run_id) == expected


def test_a_new_point_before_the_remembered_rows_is_summarised_in_step_order(session_factory) -> None:  # type: ignore[no-untyped-def]
    """A batch that is in step order and wholly new can still come before rows already stored in the open
    bucket (a worker that logs a step late). Its summary must be that of the bucket in step order: here the
    first NaN is step 66, though step 70's NaN was stored first."""
    tracker = RollupTracker()
    _ingest(session_factory, tracker, [(step, "loss", float(step), 0.0) for step in range(61)] + [(70, "loss", math.nan, 0.0)])
    _ingest(session_factory, tracker, [(66, "loss", math.nan, 1.0), (67, "loss", -5.0, 1.0)])
    _ingest(session_factory, tracker, [(step, "loss", 0.5, 2.0) for step in range(2 * BUCKET_WIDTH, 2 * BUCKET_WIDTH + 5)])
    bucket_one = [row for row in _rollup_rows(session_factory, session_factory.run_id) if row[1] == 0 and row[2] == 1]
    assert len(bucket_one) == 1
    name, _level, _bucket, min_step, min_value, _min_time, max_step, max_value, _max_time, nan_step, nan_time = bucket_one[0]
    assert (name, min_step, min_value, max_step, max_value) == ("loss", 67, -5.0, 67, -5.0)
    assert (nan_step, nan_time) == (66, 1.0)


def test_coarse_levels_of_several_series_are_those_built_one_series_at_a_time(any_database_factory) -> None:  # type: ignore[no-untyped-def]
    """A batch's coarser levels are built for all its series in one read and one write per level; every
    row must be what summarising each series and level on its own from the level below gives."""
    from server.services.rollups import FANOUT, LEVELS

    factory = any_database_factory
    rng = random.Random(5)
    # Series with different spans: an eval metric every 50 steps, one that starts late, one with NaN.
    points = [(step, name, rng.gauss(0, 1) if (step, name) != (3_000, "nll") else math.nan, float(step))
              for step in range(20_000)
              for name in ("loss", "nll", "eval/loss", "late")
              if (name != "eval/loss" or step % 50 == 0) and (name != "late" or step >= 9_000)]
    tracker = RollupTracker()
    for start in range(0, len(points), 5_000):
        _ingest(factory, tracker, points[start:start + 5_000])
    streamed = _rollup_rows(factory, factory.run_id)
    assert {row[1] for row in streamed} == set(range(LEVELS))
    # Each coarser bucket, built here from the stored level below: its first minimum, first maximum and
    # first NaN (None values are NaN). Only whole buckets of the level below the last sealed one count.
    expected = [row for row in streamed if row[1] == 0]
    for level in range(1, LEVELS):
        end = 19_999 // BUCKET_WIDTH // FANOUT**level
        groups: dict[tuple[str, int], list[tuple]] = {}
        for row in expected:
            if row[1] == level - 1 and row[2] // FANOUT < end:
                groups.setdefault((row[0], row[2] // FANOUT), []).append(row)
        for (name, bucket), children in sorted(groups.items()):
            lows = [c for c in children if c[3] is not None and c[4] is not None]
            highs = [c for c in children if c[6] is not None and c[7] is not None]
            low = min(lows, key=lambda c: c[4]) if lows else None
            high = max(highs, key=lambda c: c[7]) if highs else None
            nan = next((c for c in children if c[9] is not None), None)
            expected.append((name, level, bucket, *(low[3:6] if low else (None,) * 3), *(high[6:9] if high else (None,) * 3),
                             *(nan[9:11] if nan else (None, None))))
    assert sorted(streamed, key=lambda r: (r[0], r[1], r[2])) == sorted(expected, key=lambda r: (r[0], r[1], r[2]))
