"""Generate images with a pretrained StyleGAN2 or StyleGAN3 network pickle (ours or official).

    python generate.py --network net.pkl --seeds 0-7 --trunc 0.7 --outdir out
    python generate.py --network sg3.pkl --seeds 0-7 --translate 0.1,0 --rotate 15 --outdir out
    python generate.py --network net.pkl --projected-w out/projected_w.npz --outdir out   # projNN.png

`--projected-w` renders the latents written by projector.py (or the official projector): an
.npz whose `w` is float `[N, num_ws, w_dim]`, one `projNN.png` per latent.
"""

import os

import click
import numpy as np
import torch

import dnnlib
from training import networks_stylegan3
from training.cli_helpers import (check_output_dir, load_generator, make_label, parse_device, parse_seeds, save_image,
                                  seed_to_z)

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
    for i, seed in enumerate(seeds):
        print(f'Generating image for seed {seed} ({i + 1}/{len(seeds)}) ...')
        z = torch.from_numpy(seed_to_z(seed, G.z_dim)).to(device=device, dtype=torch.float32)
        with torch.no_grad():
            img = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
        path = os.path.join(outdir, f'seed{seed:04d}.png')
        save_image(img, path)
        paths.append(path)
    return paths



def load_projected_w(path: str, num_ws: int, w_dim: int) -> torch.Tensor:
    """float32 `[N, num_ws, w_dim]` from an .npz with key `w` (`[num_ws, w_dim]` counts as N = 1);
    anything else is a UserError naming --projected-w."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if 'w' not in f.files:
                raise dnnlib.util.UserError(f"--projected-w {path}: no array 'w' in it (it has: "
                                            f"{', '.join(f.files) or 'nothing'}); give projector.py's projected_w.npz")
            ws = np.asarray(f['w'])
    except (OSError, ValueError, EOFError) as e:
        raise dnnlib.util.UserError(f'--projected-w {path}: cannot read it as .npz ({e})') from None
    if ws.ndim == 2:
        ws = ws[None]
    if ws.shape[1:] != (num_ws, w_dim) or not np.issubdtype(ws.dtype, np.floating):
        raise dnnlib.util.UserError(f'--projected-w {path}: w has shape {list(ws.shape)} ({ws.dtype}), the network '
                                    f'needs float [N, {num_ws}, {w_dim}]; was it projected with another network?')
    return torch.from_numpy(ws.astype(np.float32))


def generate_from_projected_w(network_pkl: str, projected_w: str, outdir: str, noise_mode: str = 'const',
                              device: torch.device = torch.device('cpu')) -> list[str]:
    """Render every latent of `projected_w` as `outdir/proj%02d.png` (the official naming)."""
    G = load_generator(network_pkl, device)
    ws = load_projected_w(projected_w, G.synthesis.num_ws, G.w_dim)  # checked before anything is written
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for idx, w in enumerate(ws):
        print(f'Generating image for projected latent {idx} ({idx + 1}/{len(ws)}) ...')
        with torch.no_grad():
            img = G.synthesis(w[None].to(device), noise_mode=noise_mode)
        paths.append(os.path.join(outdir, f'proj{idx:02d}.png'))
        save_image(img, paths[-1])
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
@click.option('--seeds', help="Seeds, e.g. '0-7' or '1,5,9-12' (required unless --projected-w).")
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True,
              help='Truncation psi (1 = none).')
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const',
              show_default=True, help='Per-layer noise.')
@click.option('--projected-w', '--projected_w', 'projected_w', metavar='FILE.npz',
              help="Render these latents (projector.py's projected_w.npz) as projNN.png instead of seeds "
                   '(--projected_w: as the official README spells it).')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write seedNNNN.png (or projNN.png).')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--translate', default=None, metavar='X,Y',
              help='StyleGAN3 only: translate the image (input transform), e.g. 0.1,-0.05. Default: stored transform.')
@click.option('--rotate', 'rotate_deg', type=float, default=None, metavar='DEG',
              help='StyleGAN3 only: rotate the image by DEG degrees (input transform). Default: stored transform.')
def main(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device, translate,
         rotate_deg):
    """Generate images from a StyleGAN2 or StyleGAN3 network pickle."""
    check_output_dir(outdir, '--outdir')
    if projected_w is not None:
        if seeds is not None or class_idx is not None:
            print('warning: --seeds and --class are ignored with --projected-w')
        paths = generate_from_projected_w(network_pkl, projected_w, outdir, noise_mode=noise_mode,
                                          device=parse_device(device))
        print(f'Wrote {len(paths)} images to {outdir}')
        return
    if seeds is None:
        raise dnnlib.util.UserError('--seeds is required (or give --projected-w FILE.npz to render projected latents)')
    seed_list = parse_seeds(seeds)
    paths = generate_images(network_pkl, seed_list, outdir, truncation_psi=truncation_psi,
                            class_idx=class_idx, noise_mode=noise_mode, device=parse_device(device),
                            translate=parse_vec2(translate, '--translate'), rotate_deg=rotate_deg)
    print(f'Wrote {len(paths)} images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
