"""A run that over-penalizes at beta 10, as metric points: the chosen log-prob falls while the log odds
ratio keeps rising and the odds-ratio term is most of the loss. The server's detectors open
`over_penalization` on it within 60 steps, and its advice suggests beta 10 -> 1 (tests of
"Clone with this fix" stream it through the real worker protocol)."""

from __future__ import annotations

import math
import random

BETA = 10.0
STEPS = 80  # enough for the alert to open


def over_penalized_metrics(step: int) -> dict[str, float]:
    noise = random.Random(step)
    chosen = -1.0 - 0.012 * max(0, step - 10) + noise.gauss(0, 0.01)
    log_odds = 0.6 + 0.02 * step + noise.gauss(0, 0.03)
    or_loss = math.log1p(math.exp(-log_odds))
    nll = -chosen
    return {"loss": nll + BETA * or_loss, "nll_loss": nll, "or_loss": or_loss, "log_odds_ratio": log_odds,
            "logps_chosen": chosen, "logps_rejected": chosen - log_odds / 3, "accuracy": 0.75,
            "grad_norm": 1.0 + noise.random() * 0.2, "learning_rate": 2e-5}
