"""R^2 of every Transform domain of an expanded snapshot, measured on generate_aligned.py's PNGs.

    python -m scripts.domain_r2 --network expanded.pkl [--seeds 0-63] [--outdir r2_images]

Renders the seeds with `generate_aligned.generate_aligned` (base and every domain, noise 'const',
8-bit PNGs), then for each Transform domain of the snapshot's expansion config computes R^2 of the
domain images against T(base image) of the same seed (interfaces.md section 5; `r_squared`), on
images read back from the PNGs in [-1, 1]. Prints one line per domain; non-Transform domains are
listed as skipped. Parameterised (theta) domains are measured like the others.
"""

import json
import os
import tempfile

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
import generate_aligned
from training import snapshot_io
from training.cli_helpers import parse_seeds
from training.expansion.evaluation import r_squared
from training.image_transforms import get_transform


def read_pngs(paths: list[str]) -> torch.Tensor:
    """PNG files -> float `[N, C, H, W]` in [-1, 1]."""
    arrays = [np.asarray(PIL.Image.open(path).convert('RGB'), dtype=np.float32) for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1


def transform_tasks(network_pkl: str) -> list:
    """`[(task name, T or None)]` in generate_aligned's domain order (direction tasks in config
    order, then parameterised tasks), from the snapshot's stored expansion config."""
    with dnnlib.util.open_url(network_pkl) as f:
        cfg = snapshot_io.load_network_pkl(f).get('expansion_cfg')
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    if not cfg or not cfg.get('tasks'):
        raise dnnlib.util.UserError(f'--network {network_pkl}: the snapshot stores no expansion config with tasks, '
                                    f'so its Transform domains are unknown')
    directions, thetas = [], []
    for task in cfg['tasks']:
        args = task.get('args') or {}
        out = directions if task.get('parameterization') is None else thetas
        if task.get('type') == 'Transform':
            out.append((args.get('name') or args['transform'], get_transform(args['transform'], args.get('degrees'))))
        else:
            out.append((args.get('name') or task.get('type'), None))
    return directions + thetas


def domain_r2(network_pkl: str, seeds: list[int], outdir: str) -> dict:
    """`{domain name: R^2}` of the snapshot's Transform domains over `seeds`."""
    tasks = transform_tasks(network_pkl)
    paths = generate_aligned.generate_aligned(network_pkl, seeds, outdir, grid=False, progress=False)
    folders = [key for key in paths if key not in ('base', 'grid')]        # domain order
    if len(folders) != len(tasks):
        raise dnnlib.util.UserError(f'--network {network_pkl}: {len(folders)} domains but {len(tasks)} tasks in its config')
    base = read_pngs(paths['base'])
    return {name: r_squared(read_pngs(paths[folder]), T(base))
            for (name, T), folder in zip(tasks, folders) if T is not None}


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Expanded snapshot (path or URL).')
@click.option('--seeds', default='0-63', show_default=True, help='Seeds, e.g. 0-63 or 1,5,9.')
@click.option('--outdir', default=None, help='Keep the PNGs here [default: a temporary folder].')
def main(network_pkl, seeds, outdir):
    """Print R^2 of each Transform domain against T(base image), from generate_aligned.py's PNGs."""
    seed_list = parse_seeds(seeds)
    with tempfile.TemporaryDirectory() as tmp:
        r2 = domain_r2(network_pkl, seed_list, outdir or os.path.join(tmp, 'aligned'))
    for name, value in r2.items():
        print(f'{name}: R^2 = {value:.3f} over {len(seed_list)} seeds')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
