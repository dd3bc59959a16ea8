"""Generate images with a pretrained StyleGAN2 or StyleGAN3 network pickle (ours or official).

    python generate.py --network net.pkl --seeds 0-7 --trunc 0.7 --outdir out
    python generate.py --network sg3.pkl --seeds 0-7 --translate 0.1,0 --rotate 15 --outdir out
"""

import os

import click
import torch

import dnnlib
from training import networks_stylegan3
from training.cli_helpers import load_generator, make_label, parse_device, parse_seeds, save_image, seed_to_z

# ---------------------------------------------------------------------------------------------


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
        save_image(img, path)
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
