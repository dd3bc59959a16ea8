"""Small torch.distributed helpers: start from torchrun's environment or from a local spawn,
ask for rank and world size, and move Python objects and tensors between ranks.

Every helper works without an initialised process group (single process: rank 0 of 1), so the
training code calls them unconditionally. Backend: NCCL for CUDA devices, gloo for CPU.
"""

import dataclasses
import inspect
import os
from typing import Any

import torch

# torchrun (torch.distributed.run) sets these for every process it starts.
TORCHRUN_ENV_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in the job."""
    rank: int        # Global rank, 0 .. world_size - 1.
    world_size: int  # Number of processes (= GPUs) in the job.
    local_rank: int  # Rank on this machine; selects the CUDA device.


def torchrun_info() -> ProcessInfo | None:
    """The process layout given by torchrun's environment variables, or None when not under torchrun."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        return None
    missing = [name for name in TORCHRUN_ENV_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(f'torch.distributed environment is incomplete: {", ".join(missing)} not set '
                           f'(launch with torchrun, which sets all of {", ".join(TORCHRUN_ENV_VARS)})')
    return ProcessInfo(rank=int(os.environ['RANK']), world_size=int(os.environ['WORLD_SIZE']),
                       local_rank=int(os.environ['LOCAL_RANK']))


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo otherwise."""
    return 'nccl' if torch.device(device).type == 'cuda' else 'gloo'


def init_process_group(info: ProcessInfo, device: torch.device, init_method: str | None = None) -> None:
    """Join the process group (no-op for a world of one).

    `init_method` None reads MASTER_ADDR/MASTER_PORT from the environment (torchrun); a local
    spawn passes a 'file://' URL. For CUDA, `device` must be this process's GPU: it is made the
    current device first, as NCCL collectives require.
    """
    if info.world_size <= 1:
        return
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    kwargs = dict(backend=backend_for(device), rank=info.rank, world_size=info.world_size)
    if init_method is not None:
        kwargs['init_method'] = init_method
    if device.type == 'cuda' and 'device_id' in inspect.signature(torch.distributed.init_process_group).parameters:
        kwargs['device_id'] = device  # Binds NCCL to this GPU (torch >= 2.3; avoids guessing in barrier()).
    torch.distributed.init_process_group(**kwargs)


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if is_initialized():
        torch.distributed.destroy_process_group()


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_rank() -> int:
    return torch.distributed.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else 1


def barrier() -> None:
    """Wait until every rank gets here."""
    if is_initialized():
        torch.distributed.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (picklable Python objects)."""
    if not is_initialized():
        return obj
    holder = [obj]
    torch.distributed.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: Any) -> list:
    """`[obj of rank 0, obj of rank 1, ...]` on every rank."""
    if not is_initialized():
        return [obj]
    gathered: list = [None] * get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def gather_object(obj: Any, dst: int = 0) -> list | None:
    """`[obj of rank 0, obj of rank 1, ...]` on rank `dst`, None on the other ranks (a collective:
    every rank calls it). Unlike `all_gather_object`, only `dst` holds everyone's objects."""
    if not is_initialized():
        return [obj]
    gathered = [None] * get_world_size() if get_rank() == dst else None
    torch.distributed.gather_object(obj, gathered, dst=dst)
    return gathered


@torch.no_grad()
def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of `module` with rank `src`'s values."""
    if not is_initialized():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        torch.distributed.broadcast(tensor, src=src)


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average `tensor` over ranks, in place; returns it."""
    if is_initialized() and get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
        tensor.div_(get_world_size())
    return tensor


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only."""
    if get_rank() == 0:
        print(*args, **kwargs)
