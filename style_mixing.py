"""Style-mixing grid, with the flags and outputs of the official stylegan2-ada-pytorch tool.

    python style_mixing.py --network network.pkl --rows 85,100,75 --cols 55,821,1789 \\
        --styles 0-6 --outdir out

Every row seed takes the style layers `--styles` (indices into the generator's `num_ws` w rows)
from every column seed. Writes `{row}-{col}.png` for each pair, `{seed}-{seed}.png` for every
seed on its own, and `grid.png`: the column seeds' images along the top, the row seeds' down the
left, the mixes inside, the top-left cell black.
"""

import os

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import image_utils
from training import cli_helpers


def _parse_styles(text: str, num_ws: int) -> list[int]:
    styles = cli_helpers.parse_seeds(text, flag='--styles')
    bad = [i for i in styles if i >= num_ws]
    if bad:
        raise dnnlib.util.UserError(f'--styles {text}: the generator has {num_ws} style layers (0-{num_ws - 1}); '
                                    f'{bad[0]} is out of range')
    return styles


@torch.no_grad()
def style_mixing(network_pkl: str, row_seeds: list[int], col_seeds: list[int], styles: str = '0-6',
                 truncation_psi: float = 1.0, noise_mode: str = 'const', outdir: str = 'out',
                 device: torch.device = torch.device('cpu')) -> dict[tuple[int, int], str]:
    """Render the mixes and the grid; returns {(row seed, col seed): PNG path} (the grid under ('grid',))."""
    if not row_seeds or not col_seeds:
        raise dnnlib.util.UserError('--rows and --cols each need at least one seed')
    G = cli_helpers.load_generator(network_pkl, device)
    col_styles = _parse_styles(styles, G.num_ws)
    if G.c_dim != 0:
        raise dnnlib.util.UserError(f'--network {network_pkl} is conditional ({G.c_dim} classes); '
                                    f'style mixing supports unconditional networks, as the official tool')

    seeds = list(dict.fromkeys(row_seeds + col_seeds))
    ws = G.mapping(cli_helpers.seeds_to_z(seeds, G.z_dim, device), None)       # [S, num_ws, w_dim]
    ws = G.mapping.w_avg.lerp(ws, truncation_psi)                              # w_avg + psi (w - w_avg)
    w_of = dict(zip(seeds, ws))

    pairs = [(s, s) for s in seeds] + [(r, c) for r in row_seeds for c in col_seeds]
    images = {}
    for row, col in dict.fromkeys(pairs):
        w = w_of[row].clone()
        w[col_styles] = w_of[col][col_styles]                                 # columns' styles on those layers
        images[(row, col)] = image_utils.to_uint8(G.synthesis(w[None], noise_mode=noise_mode))[0]

    os.makedirs(outdir, exist_ok=True)
    paths = {}
    for (row, col), image in images.items():
        paths[(row, col)] = os.path.join(outdir, f'{row}-{col}.png')
        image_utils.save_png_atomic(image_utils.to_pil(image), paths[(row, col)])
    paths[('grid',)] = os.path.join(outdir, 'grid.png')
    image_utils.save_png_atomic(_grid(images, row_seeds, col_seeds), paths[('grid',)])
    return paths


def _grid(images: dict, row_seeds: list[int], col_seeds: list[int]) -> PIL.Image.Image:
    """(rows + 1) x (cols + 1) cells of the images' size (uint8 `[H, W, C]` each), black where
    nothing is drawn."""
    H, W, C = next(iter(images.values())).shape
    canvas = np.zeros([H * (len(row_seeds) + 1), W * (len(col_seeds) + 1), C], dtype=np.uint8)

    def put(image, row_idx, col_idx):
        canvas[row_idx * H:(row_idx + 1) * H, col_idx * W:(col_idx + 1) * W] = image

    for j, col in enumerate(col_seeds):
        put(images[(col, col)], 0, j + 1)
    for i, row in enumerate(row_seeds):
        put(images[(row, row)], i + 1, 0)
        for j, col in enumerate(col_seeds):
            put(images[(row, col)], i + 1, j + 1)
    return image_utils.to_pil(canvas)

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Network pickle: local path or URL.')
@click.option('--rows', 'row_seeds', required=True, help="Row seeds, e.g. '85,100,75,458,1500'.")
@click.option('--cols', 'col_seeds', required=True, help="Column seeds, e.g. '55,821,1789,293'.")
@click.option('--styles', 'col_styles', default='0-6', show_default=True,
              help='Style layers (w rows) taken from the column seeds.')
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi.')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True,
              help='Per-layer noise.')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the images and grid.png.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, row_seeds, col_seeds, col_styles, truncation_psi, noise_mode, outdir, device):
    """Style-mixing grid of a StyleGAN2 network pickle (the official tool's flags and outputs)."""
    cli_helpers.check_output_dir(outdir, '--outdir')
    rows = cli_helpers.parse_seeds(row_seeds, flag='--rows')
    cols = cli_helpers.parse_seeds(col_seeds, flag='--cols')
    paths = style_mixing(network_pkl, rows, cols, col_styles, truncation_psi, noise_mode, outdir,
                         cli_helpers.parse_device(device))
    print(f'Wrote {len(paths) - 1} images and {paths[("grid",)]}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
