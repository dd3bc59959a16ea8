"""Network snapshots that can continue a run exactly.

A snapshot is the official dict (`training_set_kwargs`, `G`, `D`, `G_ema`, `augment_pipe`) plus the
loss's extra keys plus `resume_state`:

    version            RESUME_STATE_VERSION
    progress           {cur_nimg, cur_tick, batch_idx, tick_start_nimg} for the tick after the snapshot
    batch_size, num_gpus
    sampler_nimg       real images consumed so far by all ranks (sampler position * num_gpus)
    augment_p          ADA probability (float) or None
    optimizers         {'G': state_dict, 'D': state_dict}
    per_rank           [{rng, loss, ada_stats, G_buffers}] for every rank (RNG streams, pl_mean,
                       pending ADA statistics and mapping.w_avg differ between ranks)
    loss_shared        the loss's state that every rank shares (`Loss.shared_state_dict()`, e.g.
                       domain expansion's frozen source synthesis), stored once, from rank 0

Snapshots are written by `snapshot_io.save_network_pkl` (temporary file + rename).
"""

import copy
import dataclasses

import torch

from torch_utils import distributed
from training import loop_state
from training import snapshot_io


@dataclasses.dataclass
class Progress:
    """Training counters."""
    cur_nimg: int = 0         # Real images shown to D so far (all ranks).
    cur_tick: int = 0         # Index of the current progress tick.
    batch_idx: int = 0        # Training steps done.
    tick_start_nimg: int = 0  # cur_nimg when the current tick started.


# Buffers that each rank updates from its own batch (the official loop never syncs them).
RANK_LOCAL_BUFFER_SUFFIXES = ('w_avg',)


def _to_cpu(value):
    """Tensors in nested dicts/lists/tuples moved to CPU (snapshots never hold device tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def rank_local_state(device, loss, ada_stats, G) -> dict:
    """What differs between ranks and must be restored per rank."""
    return dict(
        rng=loop_state.capture_rng_state(device),
        loss=_to_cpu(loss.state_dict()),
        ada_stats=ada_stats.state_dict() if ada_stats is not None else None,
        G_buffers={name: buf.detach().cpu().clone() for name, buf in G.named_buffers()
                   if name.endswith(RANK_LOCAL_BUFFER_SUFFIXES)},
    )


def make_resume_state(progress: Progress, batch_size: int, optimizers: dict, augment_pipe, per_rank: list,
                      loss_shared: dict | None = None) -> dict:
    """The `resume_state` entry (see the module docstring)."""
    return dict(
        version=loop_state.RESUME_STATE_VERSION,
        progress=dataclasses.asdict(progress),
        batch_size=int(batch_size),
        num_gpus=len(per_rank),
        sampler_nimg=int(progress.batch_idx * batch_size),
        augment_p=float(augment_pipe.p) if augment_pipe is not None else None,
        optimizers={name: _to_cpu(opt.state_dict()) for name, opt in optimizers.items()},
        per_rank=per_rank,
        loss_shared=_to_cpu(loss_shared or {}),
    )


def make_snapshot(training_set_kwargs, G, D, G_ema, augment_pipe, extras: dict, resume_state: dict | None) -> dict:
    """The snapshot dict: CPU copies of the networks in eval mode without gradients, in the key
    order of the official loops (the loss's extra keys, e.g. domain expansion's, before G)."""
    snapshot = dict(training_set_kwargs=copy.deepcopy(training_set_kwargs))
    reserved = ('training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe', loop_state.RESUME_STATE_KEY)
    for key, value in extras.items():
        if key in reserved:
            raise ValueError(f"loss.snapshot_extras() returned reserved snapshot key '{key}'")
        snapshot[key] = _to_cpu(value)
    for name, module in (('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', augment_pipe)):
        if module is not None:
            module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        snapshot[name] = module
    if resume_state is not None:
        snapshot[loop_state.RESUME_STATE_KEY] = resume_state
    return snapshot


def save_snapshot(snapshot: dict, path: str) -> None:
    snapshot_io.save_network_pkl(snapshot, path)


def load_resume_state(data: dict, source: str) -> dict:
    """The resume_state of a loaded snapshot, checked."""
    state = data.get(loop_state.RESUME_STATE_KEY)
    if state is None:
        raise ValueError(f'{source} holds no training state (not written by this training loop); '
                         f'start a new run from it with --resume {source}')
    if state.get('version') != loop_state.RESUME_STATE_VERSION:
        raise ValueError(f'{source}: training state version {state.get("version")} is not supported '
                         f'(this code reads version {loop_state.RESUME_STATE_VERSION})')
    return state


def restore_rank_state(state: dict, rank: int, world_size: int, device, loss, ada_stats, G, seed: int,
                       log) -> None:
    """Per-rank part of a resume: exact when the GPU count is unchanged; otherwise rank 0's loss
    state everywhere, fresh RNG streams and pending ADA statistics dropped (said in the log)."""
    per_rank = state['per_rank']
    exact = len(per_rank) == world_size
    mine = per_rank[rank] if exact else per_rank[0]
    loss.load_shared_state_dict(state.get('loss_shared') or {})  # Absent in older snapshots.
    loss.load_state_dict(mine['loss'])
    if ada_stats is not None and exact and mine.get('ada_stats') is not None:
        ada_stats.load_state_dict(mine['ada_stats'])
    with torch.no_grad():
        buffers = dict(G.named_buffers())
        for name, value in mine['G_buffers'].items():
            buffers[name].copy_(value)
    if exact:
        loop_state.restore_rng_state(mine['rng'], device)
    else:
        log(f'Note: the snapshot was written by {len(per_rank)} process(es), this run has {world_size}; '
            f'training continues, but not bit-exactly (fresh random streams)')
        from training.loop_setup import seed_all
        seed_all(loop_state.derive_seed(seed, rank, state['progress']['batch_idx']))


def gather_rank_states(device, loss, ada_stats, G) -> list | None:
    """Every rank's `rank_local_state`, in rank order, on rank 0 (None on the other ranks, which
    do not write snapshots). A collective: all ranks call it."""
    return distributed.gather_object(rank_local_state(device, loss, ada_stats, G), dst=0)
