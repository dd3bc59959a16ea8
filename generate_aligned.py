"""Render the same latents in every domain of an expanded generator (base + each repurposed subspace).

    python generate_aligned.py --network expanded.pkl --seeds 0-7 --trunc 0.7 --outdir out

Writes `out/base/seed0000.png`, `out/dimDDD_<task-name>/seed0000.png` for each domain (a
parameterised domain, trained as theta: `out/theta_<task-name>/`) and a labelled grid
`out/grid.png` (rows: base, then each domain; columns: seeds). Works on official
domain-expansion snapshots and ours (spec section 8, "Generation with an expanded model").
"""

import os

import click
import numpy as np
import torch
import tqdm

import dnnlib
from torch_utils import image_utils
from training.cli_helpers import check_output_dir, make_label, parse_device, parse_seeds, seed_to_z
from training.expansion.expanded_generator import load_expanded_generator

# ---------------------------------------------------------------------------------------------


def generate_aligned(network_pkl: str, seeds: list[int], outdir: str, truncation_psi: float = 1.0,
                     class_idx: int | None = None, domains: str | None = None, grid: bool = True,
                     device: torch.device = torch.device('cpu'), progress: bool = True,
                     allow_task_import: bool = False) -> dict:
    """Render each seed on the base subspace and on the chosen repurposed subspaces.

    Args:
        network_pkl:    expanded snapshot (path or URL).
        seeds:          z = np.random.RandomState(seed).randn(1, z_dim) per seed.
        outdir:         output folder (created after every option is validated).
        truncation_psi: truncation of the mapping (1 = none).
        class_idx:      class of a conditional network (required there).
        domains:        comma list of task names or repurposed dims; None = all (directions in
                        task order, then parameterised domains).
        grid:           also write the labelled `grid.png`.
        device:         torch device.
        progress:       show a progress bar.
        allow_task_import: import dotted task types named in the snapshot (--allow-task-import).

    Returns:
        {'base': [paths], '<folder>': [paths] per domain, 'grid': path or None}.
    """
    if not seeds:
        raise dnnlib.util.UserError('--seeds: no seeds given')
    eg = load_expanded_generator(network_pkl, device, allow_task_import=allow_task_import)
    if eg.names_note:
        print(f'note: {eg.names_note}')
    c = make_label(eg.G, class_idx, device)
    ks, js = eg.select_domains(domains, '--domains')
    folders = ['base'] + [eg.folder_name(k) for k in ks] + [eg.theta_folder_name(j) for j in js]
    os.makedirs(outdir, exist_ok=True)

    paths = {folder: [] for folder in folders}
    rows = [[] for _ in folders]  # uint8 [H, W, C] per folder and seed, for the grid
    for seed in tqdm.tqdm(seeds, desc='seeds', unit='seed', disable=not progress):
        z = torch.from_numpy(seed_to_z(seed, eg.G.z_dim))
        ws = eg.map(z, c, truncation_psi)                               # [1, num_ws, w_dim] (W+)
        base_img, edit_imgs = eg.render_aligned(ws, ks)
        edit_imgs += [eg.render_theta(ws, j) for j in js]
        for row, folder, img in zip(rows, folders, [base_img] + edit_imgs):
            pixels = image_utils.to_uint8(img)[0]
            path = os.path.join(outdir, folder, f'seed{seed:04d}.png')
            image_utils.save_png_atomic(image_utils.to_pil(pixels), path)
            paths[folder].append(path)
            row.append(pixels)
    paths['grid'] = None
    if grid:
        labels = ['base'] + [eg.names[k] for k in ks] + [eg.theta_names[j] for j in js]
        paths['grid'] = os.path.join(outdir, 'grid.png')
        image_utils.save_png_atomic(image_utils.make_grid([np.stack(r) for r in rows], row_labels=labels), paths['grid'])
    return paths

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Expanded network pickle: local path or URL.')
@click.option('--seeds', required=True, help="Seeds, e.g. '0-7' or '1,5,9-12'.")
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True,
              help='Truncation psi (1 = none).')
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--domains', default=None, metavar='NAMES_OR_DIMS',
              help='Comma list of task names or repurposed dims  [default: all]')
@click.option('--grid/--no-grid', default=True, show_default=True, help='Also write a labelled grid.png.')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the images.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg (only for snapshots you trust; default: registered types only).")
def main(network_pkl, seeds, truncation_psi, class_idx, domains, grid, outdir, device, allow_task_import):
    """Render the same latents on the base subspace and every repurposed subspace."""
    check_output_dir(outdir, '--outdir')
    paths = generate_aligned(network_pkl, parse_seeds(seeds), outdir, truncation_psi=truncation_psi,
                             class_idx=class_idx, domains=domains, grid=grid, device=parse_device(device),
                             allow_task_import=allow_task_import)
    count = sum(len(v) for k, v in paths.items() if k != 'grid')
    print(f'Wrote {count} images to {outdir}' + (f' and {paths["grid"]}' if paths['grid'] else ''))


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
