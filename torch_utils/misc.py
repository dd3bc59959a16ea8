"""Small torch helpers that know nothing of our models: shape checks, cached constants,
parameter copying and module summaries."""

import contextlib
import re
from typing import Iterator

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------


def assert_shape(tensor: torch.Tensor, ref_shape: list) -> None:
    """Check `tensor.shape` against `ref_shape`, where None matches any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim} ({list(tensor.shape)}), '
                             f'expected {len(ref_shape)} ({ref_shape})')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            ref_size = int(ref_size)
        if size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size} in {list(tensor.shape)}, '
                                 f'expected {ref_size} in {ref_shape}')


_constant_cache: dict = {}


def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    """A cached constant tensor (avoids re-creating small filters/arrays on every call)."""
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, str(device), memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

# ---------------------------------------------------------------------------------------------


def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters then buffers, with their state_dict names."""
    return list(module.named_parameters()) + list(module.named_buffers())


def params_and_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t for _, t in named_params_and_buffers(module)]


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module,
                            require_all: bool = True) -> None:
    """Copy every parameter and buffer of `src_module` into `dst_module` by name.

    With `require_all` (the default) a name present on only one side is an error naming it:
    a partial copy into a differently shaped network is never silent.
    """
    src = dict(named_params_and_buffers(src_module))
    dst = dict(named_params_and_buffers(dst_module))
    if require_all:
        missing = sorted(set(dst) - set(src))
        extra = sorted(set(src) - set(dst))
        if missing or extra:
            raise ValueError(f'Cannot copy tensors between differently built networks: '
                             f'missing in source {missing[:5]}, unexpected in source {extra[:5]}')
    for name, tensor in dst.items():
        if name in src:
            if src[name].shape != tensor.shape:
                raise ValueError(f"Shape mismatch for '{name}': source {list(src[name].shape)}, "
                                 f'destination {list(tensor.shape)}')
            tensor.copy_(src[name].detach())
            tensor.requires_grad_(tensor.requires_grad)

# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Skip DDP gradient all-reduce inside the block when `sync` is False (gradient accumulation)."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel) and not sync:
        with module.no_sync():
            yield
    else:
        yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str | None = None) -> None:
    """Assert that every rank holds the same parameters and buffers (debug aid)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for name, tensor in named_params_and_buffers(module):
        full_name = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        other = tensor.detach().clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not torch.equal(torch.nan_to_num(tensor.detach()), torch.nan_to_num(other)):
            raise AssertionError(f'{full_name} differs between ranks')

# ---------------------------------------------------------------------------------------------


def print_module_summary(module: torch.nn.Module, inputs: tuple, max_nesting: int = 3,
                         skip_redundant: bool = True, print_fn=print) -> object:
    """Run `module(*inputs)` once and print a table of submodules, parameter counts and output shapes.
    `print_fn(line)` writes each line (default: print; the training loop passes its log)."""
    assert isinstance(module, torch.nn.Module) and isinstance(inputs, (tuple, list))
    entries = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            entries.append((mod, [t for t in outs if isinstance(t, torch.Tensor)]))

    hooks = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    hooks += [m.register_forward_hook(post_hook) for m in module.modules()]
    outputs = module(*inputs)
    for hook in hooks:
        hook.remove()

    seen: set = set()
    names = {mod: name for name, mod in module.named_modules()}
    rows = [['Module', 'Parameters', 'Buffers', 'Output shape', 'Datatype'], ['---'] * 5]
    totals = [0, 0]
    for mod, outs in entries:
        params = [t for t in mod.parameters() if id(t) not in seen]
        buffers = [t for t in mod.buffers() if id(t) not in seen]
        seen.update(id(t) for t in params + buffers)
        if skip_redundant and not params and not buffers and len(outs) <= 1 and mod is not module:
            continue
        n_params = sum(t.numel() for t in params)
        n_buffers = sum(t.numel() for t in buffers)
        totals[0] += n_params
        totals[1] += n_buffers
        shapes = [str(list(t.shape)) for t in outs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in outs] or ['-']
        rows.append([names.get(mod, '?') or '<top-level>', str(n_params or '-'), str(n_buffers or '-'),
                     shapes[0], dtypes[0]])
    rows += [['---'] * 5, ['Total', str(totals[0]), str(totals[1]), '', '']]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print_fn('')
    for row in rows:
        print_fn('  '.join(cell + ' ' * (w - len(cell)) for cell, w in zip(row, widths)))
    print_fn('')
    return outputs

# ---------------------------------------------------------------------------------------------
# User-facing error text.


def load_error_summary(err: Exception) -> str:
    """One line saying why a file could not be loaded: `ExceptionType: cause`. Messages of
    command-line errors must end on the line that names the file, but torch.load's weights-only
    errors span several lines of generic advice, with the cause after 'WeightsUnpickler error:'."""
    text = str(err)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f'{type(err).__name__}: {lines[0]}' if lines else type(err).__name__


def rng_state(device: torch.device) -> tuple:
    """The CPU (and, on CUDA, that device's) RNG state: restore it with set_rng_state to draw the
    same random numbers again (e.g. the same noise inputs for a second render)."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == 'cuda' else None)


def set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
