"""What the run page and the compare page chart: the run page's chart groups, and for every metric
its y-axis title (with its unit) and whether a log scale can show it.

The pages get these as data attributes and one JSON block, so the JavaScript holds no copy that could
drift from the metric definitions in docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orpo_dash import metric_names as m


@dataclass(frozen=True)
class MetricAxis:
    """How one metric's y axis reads."""

    title: str  # what the axis shows, with its unit
    no_log: str = ""  # why a log scale cannot show this metric; empty when it can


NEGATIVE = "takes negative values"
LOG_PROBS = "is a log-probability, never above 0"
FRACTION = "is a fraction that is 0 for a batch with no pair right"
IDLE = "is a percentage that is 0 while idle"

METRIC_AXES: dict[str, MetricAxis] = {
    m.LOSS: MetricAxis("loss (nats/token)"),
    m.NLL_LOSS: MetricAxis("NLL (nats/token)"),
    m.OR_LOSS: MetricAxis("OR loss (nats/pair)"),
    m.LOG_ODDS_RATIO: MetricAxis("log odds ratio", NEGATIVE),
    m.MARGIN: MetricAxis("log-prob margin (nats/token)", NEGATIVE),
    m.ACCURACY: MetricAxis("accuracy (fraction of pairs)", FRACTION),
    m.LOGPS_CHOSEN: MetricAxis("log-prob per token (nats)", LOG_PROBS),
    m.LOGPS_REJECTED: MetricAxis("log-prob per token (nats)", LOG_PROBS),
    m.PPL_CHOSEN: MetricAxis("perplexity"),
    m.LEARNING_RATE: MetricAxis("learning rate"),
    m.GRAD_NORM: MetricAxis("gradient L2 norm"),
    m.TOKENS_PER_SEC: MetricAxis("tokens/s"),
    m.STEP_TIME: MetricAxis("seconds/step"),
    m.SYS_CPU_PERCENT: MetricAxis("CPU (% of one core)", IDLE),
    m.SYS_GPU_UTIL: MetricAxis("GPU utilisation (%)", IDLE),
    m.SYS_RSS_MB: MetricAxis("resident memory (MiB)"),
    m.SYS_GPU_MEM_MB: MetricAxis("GPU memory (MiB)"),
    m.SYS_GPU_MAX_MEM_MB: MetricAxis("GPU peak memory (MiB)"),
}


@dataclass(frozen=True)
class ChartGroup:
    """One run-page chart: metrics on the left axis and, when their scale differs, on the right.
    eval/<name> joins <name>'s chart."""

    id: str
    title: str
    left: tuple[str, ...]
    right: tuple[str, ...] = ()
    y_title: str = ""
    y2_title: str = ""


CHART_GROUPS: tuple[ChartGroup, ...] = (
    # The total is NLL per token plus λ times an OR term per pair: both read in nats.
    ChartGroup("loss", "Loss", (m.LOSS, m.NLL_LOSS, m.OR_LOSS), y_title="nats (NLL per token, OR per pair)"),
    ChartGroup("preference", "Preference", (m.LOG_ODDS_RATIO, m.MARGIN), y_title="log odds ratio · margin (nats)"),
    # A fraction in [0, 1]: on the log odds ratio's axis it read as one more line of the same thing.
    ChartGroup("accuracy", "Preference accuracy", (m.ACCURACY,), y_title="accuracy (fraction of pairs)"),
    ChartGroup("logps", "Log-probs", (m.LOGPS_CHOSEN, m.LOGPS_REJECTED), y_title="log-prob per token (nats)"),
    ChartGroup("optimisation", "Optimisation", (m.GRAD_NORM,), (m.LEARNING_RATE,),
               y_title="gradient L2 norm", y2_title="learning rate"),
    ChartGroup("throughput", "Throughput", (m.TOKENS_PER_SEC,), (m.STEP_TIME,), y_title="tokens/s", y2_title="seconds/step"),
    # Machine load (trainer/system_metrics.py): percentages on the left, megabytes on the right; titled by
    # unit, as three long sys/ names would not fit beside the axis.
    ChartGroup("system", "System", (m.SYS_CPU_PERCENT, m.SYS_GPU_UTIL), (m.SYS_RSS_MB, m.SYS_GPU_MEM_MB, m.SYS_GPU_MAX_MEM_MB),
               y_title="%", y2_title="MiB"),
    ChartGroup("other", "Other metrics", (m.PPL_CHOSEN,), y_title="value"),
)

# Compare-page charts, one per metric; eval/<name> is overlaid dashed.
COMPARE_METRICS = (
    m.LOSS, m.LOG_ODDS_RATIO, m.ACCURACY, m.NLL_LOSS, m.OR_LOSS, m.MARGIN,
    m.LOGPS_CHOSEN, m.LOGPS_REJECTED, m.LEARNING_RATE, m.GRAD_NORM, m.TOKENS_PER_SEC,
    m.SYS_CPU_PERCENT, m.SYS_RSS_MB, m.SYS_GPU_UTIL, m.SYS_GPU_MEM_MB,
)


def metric_axes_json() -> dict[str, dict[str, str]]:
    """METRIC_AXES as the pages read it: {metric: {"title", "no_log"}}."""
    return {name: asdict(axis) for name, axis in METRIC_AXES.items()}
