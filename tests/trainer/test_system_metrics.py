"""The sys/ metrics: sampled at most every system_metrics_seconds, plausible, streamed and stored like any metric."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import pytest

from orpo_dash import metric_names as M
from trainer.reporting import MultiReporter
from trainer.streaming import StreamingReporter
from trainer.system_metrics import SystemSampler, rss_bytes
from trainer.worker import run


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_sampler_samples_the_first_step_then_waits_out_its_interval() -> None:
    clock = FakeClock()
    sampler = SystemSampler(2.0, clock=clock)
    assert sampler.due()  # the first step: the chart has a point from the start
    sampler.sample()
    clock.now += 1.9
    assert not sampler.due()
    clock.now += 0.1
    assert sampler.due()
    sampler.sample()
    assert not sampler.due()
    assert not SystemSampler(0, clock=clock).due()  # 0: off


def test_cpu_percent_measures_this_process_busy_and_rss_its_memory() -> None:
    clock = FakeClock()
    sampler = SystemSampler(1.0, clock=clock)
    busy_until = time.process_time() + 0.3
    while time.process_time() < busy_until:  # burn 0.3 s of CPU...
        pass
    clock.now += 0.6  # ...in what the sampler is told were 0.6 s of wall time: about 50 %
    values = sampler.sample()
    assert 45 <= values[M.SYS_CPU_PERCENT] <= 70, values
    assert values[M.SYS_RSS_MB] == pytest.approx(rss_bytes() / 2**20, rel=0.05)
    assert not {M.SYS_GPU_MEM_MB, M.SYS_GPU_UTIL} & set(values)  # no CUDA device given: no GPU metrics


class TimedRecorder:
    """Records each metrics call with the wall time it was made at."""

    def __init__(self, recorder) -> None:  # type: ignore[no-untyped-def]
        self.inner = recorder()
        self.times: list[float] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def metrics(self, step: int, values) -> None:  # type: ignore[no-untyped-def]
        self.times.append(time.monotonic())
        self.inner.metrics(step, values)


@pytest.mark.slow
def test_a_run_streams_sys_metrics_at_its_interval_and_the_dashboard_stores_them(
    live_server, make_config, recorder, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    interval = 0.25
    # Enough steps to outlast a few intervals however fast the machine: 40 tiny steps took 0.27 s once the
    # trainer got faster, too short for a second sample.
    max_steps = 400
    config = make_config(max_steps=max_steps, system_metrics_seconds=interval, output_dir=None)
    streaming = StreamingReporter(live_server.url, None, None, config=config.model_dump(mode="json"), name="sys-metrics",
                                  spill_path=tmp_path / "spill.jsonl")
    timed = TimedRecorder(recorder)
    sampled_at: list[float] = []
    sample = SystemSampler.sample

    def timed_sample(self):  # type: ignore[no-untyped-def]
        sampled_at.append(time.monotonic())  # after due() said the interval had passed
        return sample(self)

    monkeypatch.setattr(SystemSampler, "sample", timed_sample)
    started = time.monotonic()
    assert run(config, MultiReporter(timed, streaming)) == "completed"
    elapsed = time.monotonic() - started
    streaming.close(timeout=30)

    sys_reports = [(when, step, values) for when, (step, values) in zip(timed.times, timed.inner.points, strict=True)
                   if any(M.is_system(name) for name in values)]
    # Never mixed into the training reports, which stay exactly what they were.
    assert all(set(values) <= set(M.SYSTEM_METRICS) for _, _, values in sys_reports)
    assert all(not any(M.is_system(name) for name in values) for _, values in timed.inner.train().items())
    assert sys_reports[0][1] == 1, "the first step is sampled"
    assert len(sys_reports) >= 2, f"{max_steps} steps took {elapsed:.2f} s"
    # Never more often than the interval, timed where the sampler is called (arrival times at the
    # reporter add jitter: 0.2466 s was seen there under load, though the sampler was right).
    assert len(sampled_at) == len(sys_reports)
    gaps = [b - a for a, b in pairwise(sampled_at)]
    assert min(gaps) >= interval * 0.99, gaps
    assert len(sys_reports) <= elapsed / interval + 1  # so a fast loop is not sampled every step
    for _, _, values in sys_reports:
        assert values[M.SYS_CPU_PERCENT] >= 0
        assert values[M.SYS_RSS_MB] > 50  # torch and a model are loaded
    steps = [step for _, step, _ in sys_reports]
    assert steps == sorted(set(steps)) and steps[-1] <= max_steps

    run_id = streaming.run_id
    stored = live_server.api("GET", f"/api/runs/{run_id}/metrics", params={"names": ",".join(M.SYSTEM_METRICS)}).json()["series"]
    present = {name for name, series in stored.items() if series["step"]}
    assert present == {M.SYS_CPU_PERCENT, M.SYS_RSS_MB}  # a CPU run has no GPU metrics
    for name in present:
        assert stored[name]["step"] == steps
        assert stored[name]["value"] == pytest.approx([values[name] for _, _, values in sys_reports])
    body = live_server.api("GET", f"/api/runs/{run_id}").json()
    assert body["status"] == "completed" and body["alerts"] == []
