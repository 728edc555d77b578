"""The default demo as a user meets it: open the dashboard, click Start on the new-run form with its
defaults (bundled SmolLM2-135M-Instruct + bundled preference set), and time
  - click -> first point on the loss chart (model load + first step),
  - the steady seconds per step,
  - and how the log odds ratio and accuracy move over the first steps.
Uses the real server, the real worker and headless Chromium.

    python benchmarks/demo_timing.py [--steps 20]
"""

from __future__ import annotations

import argparse
import shutil
import time

import httpx

from benchmarks._live import Dashboard

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="points to watch arrive before stopping the run")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with Dashboard(launch_workers=True) as dash, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(dash.url + "/runs/new")
        page.wait_for_selector("#submit-btn")
        clicked = time.perf_counter()
        page.click("#submit-btn")
        page.wait_for_url("**/runs/*")
        page.wait_for_function(
            "() => Number(document.querySelector('[data-metric-group=\"loss\"]')?.dataset.pointCount || 0) >= 1",
            timeout=900_000,
        )
        first_point = time.perf_counter() - clicked
        print(f"click Start -> first point on the chart: {first_point:.1f} s", flush=True)
        run_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
        while (httpx.get(f"{dash.url}/api/runs/{run_id}", timeout=30).json()["last_step"] or 0) < args.steps:
            time.sleep(1)
        series = httpx.get(f"{dash.url}/api/runs/{run_id}/metrics",
                           params={"names": "step_time,log_odds_ratio,accuracy,loss"}, timeout=30).json()["series"]
        step_times = series["step_time"]["value"][2:]
        print(f"steady seconds per step (median of steps 3..{args.steps}): {sorted(step_times)[len(step_times) // 2]:.2f} s")
        steps = series["loss"]["step"]
        shown = [i for i, step in enumerate(steps) if step <= 3 or step % 5 == 0]
        print("step  " + "  ".join(f"{steps[i]:>6d}" for i in shown))
        for name in ("loss", "log_odds_ratio", "accuracy"):
            values = series[name]["value"]
            print(f"{name[:14]:14s}" + "  ".join(f"{values[i]:+6.2f}" for i in shown))
        httpx.post(f"{dash.url}/api/runs/{run_id}/stop", timeout=30)
        browser.close()


if __name__ == "__main__":
    main()
