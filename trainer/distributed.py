"""Data parallelism when launched by torchrun/accelerate (WORLD_SIZE > 1); a no-op otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def init_world(device_type: str) -> World:
    """Join the process group the launcher described in the environment (RANK, WORLD_SIZE, ...)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        # gloo runs on CPU (and in tests); nccl is the fast path between GPUs.
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    rank = dist.get_rank()
    return World(rank=rank, size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    if world.parallel:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when it is true on any rank (so all ranks stop at the same step)."""
    if not world.parallel:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj: object, world: World) -> list[object]:
    if not world.parallel:
        return [obj]
    out: list[object] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.parallel:
        dist.barrier()


def shutdown(world: World, *, together: bool) -> None:
    """Leave the process group. After a clean finish (`together`) the ranks first meet at a barrier: a
    rank that tears gloo down and exits while its peer still holds the connection makes the peer's gloo
    thread abort the process ("terminate called without an active exception", exit -6; about 1 run in
    6 of the two-rank test without it). After a failure there is no barrier: the peers may be inside
    another collective, and waiting for them would turn a quick failure into a hang until the timeout."""
    if world.parallel and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
