"""One reporting channel for training statistics (STYLE.md principle 10).

Anything (losses, the loop, metrics) calls `report('Loss/G/loss', values)` with a scalar or a
tensor of values. Each call adds the values' moments (count, sum, sum of squares) to per-name
counters of this process, on the values' own device, without a GPU sync. A `Collector` reads the
counters, takes the difference to what it saw at its previous `update()`, sums that difference
over all ranks when torch.distributed is initialised, and exposes per-name `num`, `mean`, `std`
for the interval between its last two updates. Several collectors with different name filters
(one per tick for the logs, one every few steps for ADA) can read the same counters.

Non-finite values are not hidden: they turn the mean of their name into nan/inf, which the
training loop treats as an error.
"""

import re
from typing import Any

import numpy as np
import torch

import dnnlib

_MOMENTS = 3                  # count, sum, sum of squares
_COUNTER_DTYPE = torch.float64  # Exact counts and stable sums for long intervals.

# name -> {device: float64 tensor [3]}: cumulative moments reported by this process since it started.
_counters: dict[str, dict[torch.device, torch.Tensor]] = {}

# ---------------------------------------------------------------------------------------------


def report(name: str, value: Any) -> Any:
    """Add `value` (number, array or tensor of any shape; each element counts once) to the
    statistic `name`. Returns `value` unchanged, so it can wrap an expression. None is ignored."""
    if value is None:
        return value
    elems = torch.as_tensor(value).detach().flatten()
    if elems.numel() == 0:
        return value
    elems = elems.to(_COUNTER_DTYPE)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    per_device = _counters.setdefault(name, {})
    if elems.device not in per_device:
        per_device[elems.device] = torch.zeros([_MOMENTS], dtype=_COUNTER_DTYPE, device=elems.device)
    per_device[elems.device].add_(moments)
    return value


def report0(name: str, value: Any) -> Any:
    """Like `report`, but only rank 0 contributes (for values that are the same on every rank,
    e.g. timings, which would otherwise be counted once per rank)."""
    if _rank() == 0:
        report(name, value)
    return value


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _local_cumulative(names: list[str]) -> dict[str, torch.Tensor]:
    """Cumulative moments of this process for `names`, summed over devices, as CPU float64 [3]."""
    out = {}
    for name in names:
        total = torch.zeros([_MOMENTS], dtype=_COUNTER_DTYPE)
        for counter in _counters.get(name, {}).values():
            total += counter.cpu()
        out[name] = total
    return out


def reset_all() -> None:
    """Forget every counter of this process (tests; a fresh training run in the same process).
    Collectors created before the reset must not be used afterwards."""
    _counters.clear()

# ---------------------------------------------------------------------------------------------


class Collector:
    """Reads the reported statistics whose name matches `regex`, interval by interval.

    `update()` must be called by every rank at the same point when torch.distributed is
    initialised (it performs collectives); afterwards `mean(name)` etc. describe the values
    reported on all ranks since the previous `update()`.
    """

    def __init__(self,
        regex: str = '.*',        # Names to collect (re.fullmatch).
        keep_previous: bool = True,  # Keep a name's last values when nothing new was reported for it.
        sync_device: torch.device | None = None,  # Device for the cross-rank sum (NCCL needs CUDA); None = CPU.
    ):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._sync_device = sync_device
        self._seen: dict[str, torch.Tensor] = {}      # name -> local cumulative moments at the last update
        self._moments: dict[str, torch.Tensor] = {}   # name -> moments of the last interval (all ranks)

    def names(self) -> list[str]:
        """Matching names reported so far in this process (sorted)."""
        return sorted(n for n in _counters if self._regex.fullmatch(n))

    def update(self) -> None:
        """Close the current interval: gather the moments reported since the previous update."""
        local_names = self.names()
        names = _all_names(local_names)
        cumulative = _local_cumulative(names)
        deltas = torch.stack([cumulative[n] - self._seen.get(n, torch.zeros([_MOMENTS], dtype=_COUNTER_DTYPE))
                              for n in names]) if names else torch.zeros([0, _MOMENTS], dtype=_COUNTER_DTYPE)
        self._seen.update(cumulative)
        deltas = _sum_over_ranks(deltas, self._sync_device)
        if not self._keep_previous:
            self._moments = {}
        for name, delta in zip(names, deltas):
            if delta[0] > 0 or name not in self._moments:
                self._moments[name] = delta

    def num(self, name: str) -> int:
        """Number of values of `name` in the last interval (0 if none)."""
        moments = self._moments.get(name)
        return 0 if moments is None else int(moments[0])

    def mean(self, name: str) -> float:
        """Mean of `name` over the last interval (nan if no values)."""
        moments = self._moments.get(name)
        if moments is None or moments[0] == 0:
            return float('nan')
        return float(moments[1] / moments[0])

    def std(self, name: str) -> float:
        """Standard deviation of `name` over the last interval (nan if no values)."""
        moments = self._moments.get(name)
        if moments is None or moments[0] == 0:
            return float('nan')
        mean = float(moments[1] / moments[0])
        raw_var = float(moments[2] / moments[0])
        return float(np.sqrt(max(raw_var - mean * mean, 0.0)))

    def as_dict(self) -> dict:
        """{name: EasyDict(num, mean, std)} for every name with values (the stats.jsonl layout)."""
        return {name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                for name in sorted(self._moments) if self.num(name) > 0}

    def __getitem__(self, name: str) -> float:
        return self.mean(name)

    # Exact resume: the values reported on this rank but not yet collected.
    def state_dict(self) -> dict:
        """Per-rank pending moments {name: [count, sum, sumsq]} since the last update (plain lists)."""
        names = self.names()
        cumulative = _local_cumulative(names)
        pending = {}
        for name in names:
            delta = cumulative[name] - self._seen.get(name, torch.zeros([_MOMENTS], dtype=_COUNTER_DTYPE))
            if delta[0] != 0:
                pending[name] = delta.tolist()
        return dict(pending=pending)

    def load_state_dict(self, state: dict) -> None:
        """Make the values of `state['pending']` part of the next interval, as if reported here."""
        pending = state.get('pending', {})
        cumulative = _local_cumulative(sorted(set(self.names()) | set(pending)))
        for name, total in cumulative.items():
            self._seen[name] = total - torch.tensor(pending.get(name, [0.0] * _MOMENTS), dtype=_COUNTER_DTYPE)

# ---------------------------------------------------------------------------------------------
# Cross-rank helpers (no-ops without torch.distributed).


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_names(local_names: list[str]) -> list[str]:
    """Sorted union of the names of all ranks, so every rank reduces the same rows."""
    if not _distributed():
        return local_names
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local_names)
    return sorted(set().union(*gathered))


def _sum_over_ranks(deltas: torch.Tensor, sync_device: torch.device | None) -> torch.Tensor:
    if not _distributed() or deltas.numel() == 0:
        return deltas
    buffer = deltas.to(sync_device if sync_device is not None else torch.device('cpu'))
    torch.distributed.all_reduce(buffer)
    return buffer.cpu()
