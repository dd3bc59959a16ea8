"""What the command-line tools share: seeds, devices, labels, latents, snapshots and PNG output.

Every tool (generate.py, generate_aligned.py, traverse.py, projector.py, ...) parses its flags
with these, so a seed list, a device name or a class index means the same everywhere and a bad
one gives the same one-line `dnnlib.util.UserError` naming the flag. Library code: it imports
no top-level script (snapshots are read with `training.snapshot_io`, which `legacy.py` forwards to).

Latents follow the stylegan convention: z = np.random.RandomState(seed).randn(1, z_dim).
"""

import os
import re

import numpy as np
import torch

import dnnlib
from torch_utils import image_utils
from training import snapshot_io

MAX_SEED = 2 ** 32 - 1  # numpy RandomState seeds are 32-bit.

# ---------------------------------------------------------------------------------------------
# Flags.


def parse_seeds(text: str, flag: str = '--seeds') -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]; a bad item or range is a `UserError` naming `flag`."""
    seeds: list[int] = []
    for part in str(text).split(','):
        part = part.strip()
        match = re.fullmatch(r'(\d+)(?:-(\d+))?', part)
        if match is None:
            raise dnnlib.util.UserError(f"{flag}: cannot parse '{part}'; use e.g. '0-7' or '1,5,9-12' "
                                        f'(non-negative integers, ranges as lo-hi)')
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise dnnlib.util.UserError(f"{flag}: range '{part}' is empty (end < start); write it as {hi}-{lo}")
        if hi > MAX_SEED:
            raise dnnlib.util.UserError(f'{flag}: seed {hi} is too large (numpy seeds are < 2**32)')
        seeds.extend(range(lo, hi + 1))
    return seeds


def parse_device(text: str, flag: str = '--device') -> torch.device:
    """The device flag as a torch.device; a malformed name or a device this machine lacks is a
    `UserError` naming `flag` (checked before any network is moved there, so no traceback)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise dnnlib.util.UserError(f"{flag}: cannot parse '{text}'; use cpu, cuda or cuda:N") from None
    if device.type == 'cpu':
        return device
    if device.type != 'cuda':
        raise dnnlib.util.UserError(f"{flag} {text}: unsupported device type '{device.type}'; use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise dnnlib.util.UserError(f'{flag} {text}: no CUDA device is visible on this machine; use {flag} cpu')
    if device.index is not None and device.index >= count:
        raise dnnlib.util.UserError(f'{flag} {text}: only {count} CUDA device(s) are visible; '
                                    f'use cuda:0 to cuda:{count - 1}')
    return device


def make_label(G: torch.nn.Module, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """Conditioning vector `[1, c_dim]`: one-hot for conditional networks, empty otherwise.

    A conditional network needs --class; an unconditional one ignores it with a warning.
    """
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print(f'warning: --class={class_idx} ignored: the network is unconditional')
        return c
    if class_idx is None:
        raise dnnlib.util.UserError(f'--class is required: the network is conditional with {G.c_dim} '
                                    f'classes (pass --class N with 0 <= N < {G.c_dim})')
    if not 0 <= class_idx < G.c_dim:
        raise dnnlib.util.UserError(f'--class={class_idx} is out of range for {G.c_dim} classes')
    c[:, class_idx] = 1
    return c

# ---------------------------------------------------------------------------------------------
# Latents.


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """`[1, z_dim]` float64 latent of one seed: `np.random.RandomState(seed).randn(1, z_dim)`."""
    return np.random.RandomState(seed).randn(1, z_dim)


def seeds_to_z(seeds: list[int], z_dim: int, device: torch.device = torch.device('cpu')) -> torch.Tensor:
    """`[len(seeds), z_dim]` float32 latents, row i = `seed_to_z(seeds[i])` (the same latent as a
    batch of one, so images do not depend on which seeds share a batch)."""
    z = np.concatenate([seed_to_z(seed, z_dim) for seed in seeds]) if seeds else np.zeros([0, z_dim])
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)

# ---------------------------------------------------------------------------------------------
# Snapshots and images.


def load_network(network_pkl: str, flag: str = '--network') -> dict:
    """The snapshot dict of `network_pkl` (path or URL), read safely; a missing, unreachable or
    unreadable pickle is a `UserError` naming `flag`."""
    try:
        f = dnnlib.util.open_url(network_pkl)
    except (OSError, dnnlib.util.DownloadError) as e:
        raise dnnlib.util.UserError(f'{flag}: {e}') from None
    try:
        with f:
            return snapshot_io.load_network_pkl(f)
    except (OSError, ValueError) as e:  # SnapshotError is a ValueError
        where = flag if str(network_pkl) in str(e) else f'{flag} {network_pkl}'  # name the file once
        raise dnnlib.util.UserError(f'{where}: {e}') from None


def load_generator(network_pkl: str, device: torch.device, flag: str = '--network') -> torch.nn.Module:
    """`G_ema` of a snapshot (path or URL), in eval mode, without gradients, on `device`."""
    G = load_network(network_pkl, flag=flag).get('G_ema')
    if not isinstance(G, torch.nn.Module):
        raise dnnlib.util.UserError(f'{flag} {network_pkl}: the snapshot has no G_ema network')
    return G.eval().requires_grad_(False).to(device)


def require_file(path: str, flag: str) -> None:
    """A one-line `UserError` naming `flag` unless `path` is an existing file."""
    if not os.path.isfile(path):
        raise dnnlib.util.UserError(f"{flag}: file not found: '{dnnlib.util.one_line(str(path))}'")


def check_output_dir(path: str, flag: str = '--outdir') -> None:
    """Make sure files can be written in the folder `path` (existing or to be created) before any
    work, leaving nothing behind: a file in the way, a read-only or virtual folder (/proc) or a
    missing permission is a one-line `UserError` naming `flag` and the path."""
    if not isinstance(path, str) or not path.strip():
        raise dnnlib.util.UserError(f'{flag}: empty path; give the folder to write the outputs to')
    shown = dnnlib.util.one_line(path)
    target = os.path.abspath(path)
    existing = target
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = 'is a file' if existing == target else f'cannot be created: {dnnlib.util.one_line(existing)} is a file'
        raise dnnlib.util.UserError(f'{flag} {shown}: {what}, not a folder; give a folder path')
    try:
        if existing == target:  # Write a probe file where the outputs will go.
            os.remove(dnnlib.util.create_temp_file_beside(os.path.join(target, 'probe')))
        else:  # Create a probe folder where the output folder will be created.
            os.rmdir(dnnlib.util.create_temp_dir_beside(os.path.join(existing, 'probe')))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise dnnlib.util.UserError(f'{flag} {shown}: cannot write there ({dnnlib.util.one_line(existing)}: {reason}); '
                                    f'give a folder you can write to') from None


def save_image(image: torch.Tensor, path: str) -> None:
    """Write one image, `[1, C, H, W]` or `[C, H, W]` in [-1, 1], as a PNG (atomically; folders
    are created). Pixels follow `image_utils.to_uint8`."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f'save_image: expected one image [1, C, H, W], got {list(image.shape)}')
    image_utils.save_png_atomic(image_utils.to_pil(image_utils.to_uint8(image)[0]), path)
