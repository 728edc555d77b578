"""Alert webhooks: a Slack-compatible JSON POST when an alert opens or escalates.

Sent from a small background thread so a slow or dead webhook never delays ingestion; failures
are logged and dropped (the alert itself is already stored and shown on the dashboard).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0
MAX_PENDING = 1000


def slack_payload(*, run_id: int, run_name: str, alert: dict[str, Any], dashboard_url: str) -> dict[str, Any]:
    """Slack's incoming-webhook format (`text` + mrkdwn blocks); other chat tools accept `text` alone."""
    icon = ":rotating_light:" if alert["severity"] == "critical" else ":warning:"
    link = f"{dashboard_url.rstrip('/')}/runs/{run_id}"
    headline = f"{icon} [{alert['severity']}] {alert['kind']} in run {run_name} (#{run_id}) at step {alert['step']}"
    return {
        "text": f"{headline}: {alert['message']}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{alert['message']}"
                                                       + (f"\n_{alert['details']}_" if alert.get("details") else "")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Advice:* {alert['advice']}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the run> · evidence from step {alert['onset_step']}"}]},
        ],
    }


class WebhookNotifier:
    def __init__(self, url: str, dashboard_url: str) -> None:
        self._url = url
        self._dashboard_url = dashboard_url
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._loop, name="alert-webhook", daemon=True)
        self._thread.start()

    def alert_opened(self, *, run_id: int, run_name: str, alert: dict[str, Any]) -> None:
        payload = slack_payload(run_id=run_id, run_name=run_name, alert=alert, dashboard_url=self._dashboard_url)
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.warning("alert webhook backlog full; dropping a notification for run %s", run_id)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=WEBHOOK_TIMEOUT_SECONDS + 1)

    def _loop(self) -> None:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            while (payload := self._queue.get()) is not None:
                try:
                    client.post(self._url, json=payload).raise_for_status()
                except httpx.HTTPError as error:
                    log.warning("alert webhook %s failed: %s", self._url, error)
