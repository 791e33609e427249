"""Data-parallel set-up for training, after encodec's `distrib.py`: one process per device under
`torchrun` (torch.distributed: NCCL on GPUs, gloo on CPU), and without it plain single-process
defaults (rank 0 of a world of 1), so the training loop reads the same either way.
"""

from __future__ import annotations

import os

import torch


def rank() -> int:
    """This process's rank (the RANK that torchrun sets; 0 without it)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in the run (WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's rank on its machine (LOCAL_RANK; 0 without torchrun): its GPU index."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """True for the one process that writes files and logs (rank 0)."""
    return rank() == 0


def pick_device(device: str | None) -> str:
    """The device of this process: CUDA when present unless `device` says otherwise; a bare "cuda"
    becomes cuda:LOCAL_RANK (one GPU per process under torchrun, cuda:0 otherwise)."""
    if device is None:
        return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    return f"cuda:{local_rank()}" if str(device) == "cuda" else str(device)


def init(device: str) -> bool:
    """Join the process group (NCCL for CUDA devices, gloo otherwise) when running under torchrun and no
    group exists yet, and select this process's GPU. Returns True when this call created the group
    (then `close` destroys it)."""
    if str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if not is_distributed() or torch.distributed.is_initialized():
        return False
    torch.distributed.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return True


def close(owns_group: bool) -> None:
    """Wait for every process, then leave the group if `init` created it."""
    if is_distributed():
        torch.distributed.barrier()
        if owns_group:
            torch.distributed.destroy_process_group()


def all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    """Sum (or `op`) `t` over the processes, in place; `t` itself in a single process."""
    if is_distributed():
        torch.distributed.all_reduce(t, op=op or torch.distributed.ReduceOp.SUM)
    return t


def wrap(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """`module` under DistributedDataParallel (gradients averaged over the processes in `backward`) when
    running under torchrun; the module itself otherwise."""
    if not is_distributed():
        return module
    ids = [torch.device(device).index] if str(device).startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
