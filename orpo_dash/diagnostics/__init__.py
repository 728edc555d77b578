"""Automatic ORPO pitfall alerts over metric series (stdlib + numpy only: no torch, no DB, no web).

    engine = AlertEngine(run_config.alert_thresholds)
    for change in engine.feed([(step, name, value), ...]): ...   # live, any batch size
    diagnose(load_metrics_file("metrics.jsonl"))                    # a whole run at once

See docs/alerts.md for the kinds, the statistics behind them and their thresholds.
"""

from orpo_dash.diagnostics.alerts import (
    ADVICE,
    CATASTROPHIC_FORGETTING,
    DEFAULT_THRESHOLDS,
    FORMAT_NOT_LEARNED,
    KINDS,
    LOG_ODDS_FLAT,
    LOSS_RISING,
    NON_FINITE,
    OVER_PENALIZATION,
    THRESHOLDS,
    Alert,
)
from orpo_dash.diagnostics.engine import AlertEngine, diagnose
from orpo_dash.diagnostics.loading import MetricsFileError, load_metrics_file

__all__ = [
    "ADVICE", "CATASTROPHIC_FORGETTING", "DEFAULT_THRESHOLDS", "FORMAT_NOT_LEARNED", "KINDS", "LOG_ODDS_FLAT",
    "LOSS_RISING", "NON_FINITE", "OVER_PENALIZATION", "THRESHOLDS", "Alert", "AlertEngine", "MetricsFileError",
    "diagnose", "load_metrics_file",
]
