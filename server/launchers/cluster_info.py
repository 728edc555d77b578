"""What the new-run form says about the launcher: which one is active and, for Ray, what the cluster has.

Read over the Ray dashboard's REST API (`GET /nodes?view=summary`, served on the same port as the
Jobs API): the Jobs client has no call for cluster resources, and this needs no `ray` import at all.
"""

from __future__ import annotations

import httpx

from server.schemas import LauncherPublic
from server.settings import Settings

# The form waits for this; an unreachable head must not make the page feel stuck.
CLUSTER_TIMEOUT_SECONDS = 3.0


def describe_launcher(settings: Settings) -> LauncherPublic:
    if not settings.launch_workers:
        return LauncherPublic(kind="none", max_concurrent_runs=0)
    if settings.launcher == "local":
        return LauncherPublic(kind="local", max_concurrent_runs=settings.max_concurrent_runs)
    described = LauncherPublic(kind="ray", max_concurrent_runs=settings.max_concurrent_runs,
                               ray_address=settings.ray_address, cpus_per_run=settings.ray_cpus_per_run)
    url = f"{settings.ray_address.rstrip('/')}/nodes?view=summary"
    try:
        response = httpx.get(url, timeout=CLUSTER_TIMEOUT_SECONDS)
        response.raise_for_status()
        nodes = [node["raylet"] for node in response.json()["data"]["summary"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        described.error = f"could not read the Ray cluster at {settings.ray_address}: {error}"
        return described
    alive = [raylet for raylet in nodes if raylet.get("state") == "ALIVE"]
    described.nodes = len(alive)
    described.cpus = sum(raylet.get("resourcesTotal", {}).get("CPU", 0.0) for raylet in alive)
    described.gpus = sum(raylet.get("resourcesTotal", {}).get("GPU", 0.0) for raylet in alive)
    return described
