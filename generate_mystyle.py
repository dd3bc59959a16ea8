"""Sample a MyStyle domain of an expanded generator from the convex hull of its anchors.

    python generate_mystyle.py --network expanded.pkl --anchors anchors/ --dim 510 --num 16 --outdir out

Each sample mixes 3 distinct anchors (inverted latents of the person's photos) with uniform
random weights normalised to sum to 1 (MyStyle's convex-hull prior), then moves the mixture into
the repurposed subspace of `--dim`:

- default (training-consistent): project the mixture onto the base subspace (Eq. 1, mean w_avg)
  and step `subspace_distance` along the direction (Eq. 3), exactly as training treated anchors;
- `--official-transport`: add `subspace_distance` times the direction to the raw mixture, without
  the base projection (what the official sampling script does).

Anchor files as read by the MyStyle task (training/tasks/mystyle.py): W [w_dim] / [1, w_dim] or a
constant W+ [num_ws, w_dim], as `.pt`/`.pth` (torch.save) or `.npy`. Writes `out/sample0000.png`, ...
and `out/mixtures.json` (which anchors and weights made each sample).
"""

import os

import click
import numpy as np
import torch

import dnnlib
from torch_utils import image_utils
from training.cli_helpers import check_output_dir, parse_device
from training.expansion.expanded_generator import ExpandedGenerator, load_expanded_generator
from training.expansion.tasks.image_files import files_by_stem
from training.expansion.tasks.mystyle import ANCHOR_EXTENSIONS, load_anchor

ANCHORS_PER_SAMPLE = 3

# ---------------------------------------------------------------------------------------------


def load_anchors(anchors_dir: str, w_dim: int) -> tuple[list[str], torch.Tensor]:
    """`(stems, anchors [M, w_dim])` of every anchor file in the folder, sorted by stem."""
    if not os.path.isdir(anchors_dir):
        raise dnnlib.util.UserError(f'--anchors: {anchors_dir} is not a folder; give the folder of inverted latents')
    files, duplicates = files_by_stem(anchors_dir, ANCHOR_EXTENSIONS)
    if duplicates:
        raise dnnlib.util.UserError(f'--anchors: several files share the stem(s) {", ".join(sorted(set(duplicates)))} '
                                    f'in {anchors_dir}; keep one per stem')
    if len(files) < ANCHORS_PER_SAMPLE:
        raise dnnlib.util.UserError(f'--anchors: {anchors_dir} holds {len(files)} anchor file(s) '
                                    f'({", ".join(ANCHOR_EXTENSIONS)}); convex-hull sampling mixes '
                                    f'{ANCHORS_PER_SAMPLE} distinct anchors, so give at least {ANCHORS_PER_SAMPLE}')
    try:
        anchors = torch.stack([load_anchor(path, w_dim) for path in files.values()])
    except ValueError as err:
        raise dnnlib.util.UserError(f'--anchors: {err}') from None
    return list(files), anchors


def sample_convex_mixtures(num_anchors: int, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which anchors and how much of each, per sample.

    Returns:
        `(indices int64 [num, 3], weights float64 [num, 3])`: three distinct anchor indices per
        sample and weights drawn uniformly in [0, 1), then divided by their sum.
    """
    if num_anchors < ANCHORS_PER_SAMPLE:
        raise ValueError(f'need at least {ANCHORS_PER_SAMPLE} anchors, got {num_anchors}')
    rng = np.random.RandomState(seed)
    indices = np.zeros([num, ANCHORS_PER_SAMPLE], dtype=np.int64)
    weights = np.zeros([num, ANCHORS_PER_SAMPLE], dtype=np.float64)
    for i in range(num):
        indices[i] = rng.choice(num_anchors, ANCHORS_PER_SAMPLE, replace=False)
        raw = rng.uniform(size=ANCHORS_PER_SAMPLE)
        weights[i] = raw / raw.sum()
    return indices, weights


def mystyle_latents(eg: ExpandedGenerator, anchors: torch.Tensor, indices: np.ndarray, weights: np.ndarray,
                    k: int, official_transport: bool = False) -> torch.Tensor:
    """W latents [num, w_dim] of the samples in domain k's repurposed subspace.

    Args:
        eg:                 the expanded generator (basis, w_avg, subspace distance).
        anchors:            [M, w_dim] anchor latents.
        indices, weights:   [num, 3] from `sample_convex_mixtures`.
        k:                  task index of the MyStyle domain.
        official_transport: skip the base projection (official script) instead of Eq. 3.
    """
    anchors = anchors.to(eg.device, torch.float32)
    picked = anchors[torch.as_tensor(indices, device=eg.device)]                        # [num, 3, w_dim]
    mix = torch.as_tensor(weights, dtype=torch.float32, device=eg.device)
    mixed = (mix.unsqueeze(2) * picked).sum(dim=1)                                        # [num, w_dim], convex combination
    start = mixed if official_transport else eg.project_base(mixed)                      # Eq. 1 unless official
    return eg.subspaces.edit(start, k)                                                   # + s * B_R[:, k] (Eq. 2/3)


def generate_mystyle(network_pkl: str, anchors_dir: str, dim, num: int, outdir: str, seed: int = 0,
                     official_transport: bool = False, device: torch.device = torch.device('cpu'),
                     allow_task_import: bool = False) -> dict:
    """Write `num` convex-hull samples of a MyStyle domain as `outdir/sample%04d.png`.

    Args:
        network_pkl:        expanded snapshot (path or URL).
        anchors_dir:        folder of anchor latents.
        dim:                the domain: a repurposed dim of the snapshot (or its task name).
        num:                number of samples.
        outdir:             output folder (created after every option is validated).
        seed:               seed of the anchor choice and weights.
        official_transport: shift raw mixtures (official) instead of projecting them first.
        device:             torch device.
        allow_task_import:  import dotted task types named in the snapshot (--allow-task-import).

    Returns:
        {'paths': [...], 'stems': anchor stems, 'indices': [num, 3], 'weights': [num, 3]}.
    """
    if num < 1:
        raise dnnlib.util.UserError(f'--num: must be at least 1, got {num}')
    eg = load_expanded_generator(network_pkl, device, allow_task_import=allow_task_import)
    k = eg.domain_index(dim, '--dim')
    stems, anchors = load_anchors(anchors_dir, eg.G.w_dim)
    indices, weights = sample_convex_mixtures(len(stems), num, seed)
    images = eg.synthesize(mystyle_latents(eg, anchors, indices, weights, k, official_transport))
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for i, pixels in enumerate(image_utils.to_uint8(images)):
        paths.append(os.path.join(outdir, f'sample{i:04d}.png'))
        image_utils.save_png_atomic(image_utils.to_pil(pixels), paths[-1])
    record = dict(network=network_pkl, dim=eg.dims[k], domain=eg.names[k], seed=seed,
                  transport='official' if official_transport else 'base-projection',
                  samples=[dict(file=os.path.basename(p), anchors=[stems[j] for j in idx], weights=w.tolist())
                           for p, idx, w in zip(paths, indices, weights)])
    dnnlib.util.write_json_atomic(os.path.join(outdir, 'mixtures.json'), record)
    return dict(paths=paths, stems=stems, indices=indices, weights=weights)

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Expanded network pickle: local path or URL.')
@click.option('--anchors', 'anchors_dir', required=True, metavar='DIR', help='Folder of anchor latents (.pt/.pth/.npy).')
@click.option('--dim', required=True, help='Repurposed dim of the MyStyle domain (or its task name).')
@click.option('--num', type=int, required=True, help='Number of samples.')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the anchor mixtures.')
@click.option('--official-transport', is_flag=True, default=False,
              help='Shift raw mixtures without the base projection (official script behaviour).')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write sampleNNNN.png.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg (only for snapshots you trust; default: registered types only).")
def main(network_pkl, anchors_dir, dim, num, seed, official_transport, outdir, device, allow_task_import):
    """Sample a MyStyle domain from the convex hull of its anchors."""
    check_output_dir(outdir, '--outdir')
    result = generate_mystyle(network_pkl, anchors_dir, dim, num, outdir, seed=seed,
                              official_transport=official_transport, device=parse_device(device),
                              allow_task_import=allow_task_import)
    print(f'Wrote {len(result["paths"])} samples to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
