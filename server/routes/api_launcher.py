"""Which launcher starts this dashboard's runs, and the cluster it submits to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.auth import current_caller
from server.launchers.cluster_info import describe_launcher
from server.schemas import LauncherPublic

router = APIRouter(prefix="/api", tags=["launcher"], dependencies=[Depends(current_caller)])


@router.get("/launcher", response_model=LauncherPublic)
def get_launcher(request: Request) -> LauncherPublic:
    """The active launcher; for Ray, the cluster's alive nodes, CPUs and GPUs (or why they are unknown)."""
    return describe_launcher(request.app.state.settings)
