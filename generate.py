"""Generate images with a pretrained StyleGAN2 or StyleGAN3 network pickle (ours or official).

    python generate.py --network net.pkl --seeds 0-7 --trunc 0.7 --outdir out
    python generate.py --network sg3.pkl --seeds 0-7 --translate 0.1,0 --rotate 15 --outdir out
"""

import os
import re

import click
import numpy as np
import torch

import dnnlib
import legacy
from torch_utils import image_utils
from training import networks_stylegan3

# ---------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]; a bad range is a `UserError` naming --seeds."""
    seeds: list[int] = []
    for part in str(text).split(','):
        part = part.strip()
        match = re.fullmatch(r'(\d+)(?:-(\d+))?', part)
        if match is None:
            raise dnnlib.util.UserError(f"--seeds: cannot parse '{part}'; use e.g. '0-7' or '1,5,9-12' "
                                        f'(non-negative integers, ranges as lo-hi)')
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise dnnlib.util.UserError(f"--seeds: range '{part}' is empty (end < start); write it as {hi}-{lo}")
        if hi >= 2 ** 32:
            raise dnnlib.util.UserError(f"--seeds: seed {hi} is too large (numpy seeds are < 2**32)")
        seeds.extend(range(lo, hi + 1))
    return seeds


def parse_device(text: str) -> torch.device:
    """The --device value as a torch.device; a malformed name or a device this machine lacks is a
    `UserError` naming --device (checked before any network is moved there, so no traceback)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise dnnlib.util.UserError(f"--device: cannot parse '{text}'; use cpu, cuda or cuda:N") from None
    if device.type == 'cpu':
        return device
    if device.type != 'cuda':
        raise dnnlib.util.UserError(f"--device {text}: unsupported device type '{device.type}'; use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise dnnlib.util.UserError(f'--device {text}: no CUDA device is visible on this machine; use --device cpu')
    if device.index is not None and device.index >= count:
        raise dnnlib.util.UserError(f'--device {text}: only {count} CUDA device(s) are visible; '
                                    f'use cuda:0 to cuda:{count - 1}')
    return device


def make_label(G: torch.nn.Module, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """Conditioning vector `[1, c_dim]`: one-hot for conditional networks, empty otherwise."""
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


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """The stylegan convention: `np.random.RandomState(seed).randn(1, z_dim)`."""
    return np.random.RandomState(seed).randn(1, z_dim)


def load_generator(network_pkl: str, device: torch.device) -> torch.nn.Module:
    """`G_ema` of a snapshot (path or URL), in eval mode on `device`."""
    try:
        f = dnnlib.util.open_url(network_pkl)
    except (FileNotFoundError, dnnlib.util.DownloadError) as e:
        raise dnnlib.util.UserError(f'--network: {e}') from None
    with f:
        G = legacy.load_network_pkl(f)['G_ema']
    return G.eval().requires_grad_(False).to(device)


def generate_images(network_pkl: str, seeds: list[int], outdir: str, truncation_psi: float = 1.0,
                    class_idx: int | None = None, noise_mode: str = 'const',
                    device: torch.device = torch.device('cpu'), translate: tuple[float, float] | None = None,
                    rotate_deg: float | None = None) -> list[str]:
    """Render one PNG per seed as `outdir/seed%04d.png`; returns the written paths.

    `translate` (x, y in image units) and `rotate_deg` set a StyleGAN3 generator's input transform
    (both None: keep the stored one; either given: the other defaults to 0).
    """
    if not seeds:
        raise dnnlib.util.UserError('--seeds: no seeds given')
    G = load_generator(network_pkl, device)
    c = make_label(G, class_idx, device)  # validated before anything is written
    if translate is not None or rotate_deg is not None:
        if not networks_stylegan3.is_stylegan3_synthesis(getattr(G, 'synthesis', None)):
            raise dnnlib.util.UserError(f'--translate/--rotate: {network_pkl} holds a StyleGAN2 generator, which has '
                                        f'no input transform; use them with StyleGAN3 generators only')
        networks_stylegan3.set_input_transform(G, translate=translate or (0.0, 0.0), rotate_deg=rotate_deg or 0.0)
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for seed in seeds:
        z = torch.from_numpy(seed_to_z(seed, G.z_dim)).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            img = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
        path = os.path.join(outdir, f'seed{seed:04d}.png')
        image_utils.save_png_atomic(image_utils.to_pil(image_utils.to_uint8(img)[0]), path)
        paths.append(path)
    return paths


def parse_vec2(text: str | None, flag: str) -> tuple[float, float] | None:
    """'0.1,-0.05' -> (0.1, -0.05); None stays None; anything else is a UserError naming `flag`."""
    if text is None:
        return None
    parts = str(text).split(',')
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise dnnlib.util.UserError(f"{flag}: cannot parse '{text}'; give two numbers X,Y, e.g. 0.1,-0.05") from None

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Network pickle: local path or URL.')
@click.option('--seeds', required=True, help="Seeds, e.g. '0-7' or '1,5,9-12'.")
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True,
              help='Truncation psi (1 = none).')
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const',
              show_default=True, help='Per-layer noise.')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write seedNNNN.png.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--translate', default=None, metavar='X,Y',
              help='StyleGAN3 only: translate the image (input transform), e.g. 0.1,-0.05. Default: stored transform.')
@click.option('--rotate', 'rotate_deg', type=float, default=None, metavar='DEG',
              help='StyleGAN3 only: rotate the image by DEG degrees (input transform). Default: stored transform.')
def main(network_pkl, seeds, truncation_psi, class_idx, noise_mode, outdir, device, translate, rotate_deg):
    """Generate images from a StyleGAN2 or StyleGAN3 network pickle."""
    seed_list = parse_seeds(seeds)
    paths = generate_images(network_pkl, seed_list, outdir, truncation_psi=truncation_psi,
                            class_idx=class_idx, noise_mode=noise_mode, device=parse_device(device),
                            translate=parse_vec2(translate, '--translate'), rotate_deg=rotate_deg)
    print(f'Wrote {len(paths)} images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
