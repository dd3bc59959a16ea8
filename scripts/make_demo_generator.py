"""Remake demo/source_generator.pkl: the small StyleGAN2 that the demo expands.

    python -m scripts.make_demo_generator --workdir /tmp/demo_pretrain

1. Draws a procedural data set (training/synthetic_data.py, seed 123): by default 2000 'shapes'
   images of 32x32 (outlined discs, squares and triangles on striped or checkered backgrounds).
2. Trains `train.py --cfg tiny --batch 8 --mirror 1 --metrics none` on it, with the widths below
   in place of the `tiny` preset's (z_dim = w_dim = 32, channel_base 512): the defaults give
   z_dim = w_dim = 64 and 32 channels at every resolution, 32x32 included.
3. Writes G, D and G_ema of the last snapshot, without training state, to
   demo/source_generator.pkl (our pickle format, 1.2 MB with the defaults; 50 kimg took about
   40 minutes on one CPU thread of a busy shared machine).

`--style blobs --z_dim 32 --w_dim 32 --channel_base 512 --kimg 40` remakes the earlier demo
generator (soft blobs on gradients).
"""

import glob
import os

import click

from training import launch, run_options, snapshot_io
from training.synthetic_data import STYLES, make_synthetic_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_SEED = 123
RESOLUTION = 32


def _set_widths(options, z_dim: int, w_dim: int, channel_base: int, channel_max: int) -> None:
    """Replace the `tiny` preset's widths in the resolved options (G and D alike)."""
    options.G_kwargs.update(z_dim=z_dim, w_dim=w_dim)
    options.G_kwargs['synthesis_kwargs'].update(channel_base=channel_base, channel_max=channel_max)
    options.D_kwargs.update(channel_base=channel_base, channel_max=channel_max)


def make_demo_generator(workdir: str, kimg: float = 50, dest: str | None = None, style: str = 'shapes',
                        num_images: int = 2000, z_dim: int = 64, w_dim: int = 64, channel_base: int = 1024,
                        channel_max: int = 32) -> str:
    """Train the demo generator in `workdir` and export it to `dest`; returns `dest`.

    Args:
        workdir:      scratch folder for the data set and the run folder(s).
        kimg:         training length in thousands of real images shown to D.
        dest:         output pickle; None = demo/source_generator.pkl.
        style:        procedural data style ('shapes' or 'blobs').
        num_images:   size of the procedural data set.
        z_dim, w_dim: latent widths of G.
        channel_base, channel_max: feature maps per layer = min(channel_base / resolution, channel_max).
    """
    if style not in STYLES:
        raise click.BadParameter(f"unknown style {style!r}; choose one of {', '.join(STYLES)}", param_hint='--style')
    dest = dest or os.path.join(REPO_ROOT, 'demo', 'source_generator.pkl')
    data = os.path.join(workdir, f'{style}{RESOLUTION}-{num_images}.zip')
    if not os.path.exists(data):
        os.makedirs(workdir, exist_ok=True)
        make_synthetic_dataset(data, num_images, RESOLUTION, seed=DATA_SEED, style=style)
    options = run_options.setup_training_options(outdir=os.path.join(workdir, 'runs'), data=data, cfg='tiny',
                                                 batch=8, kimg=kimg, tick=1, snap=5, metrics='none', workers=0,
                                                 mirror=True)
    _set_widths(options, z_dim, w_dim, channel_base, channel_max)
    launch.launch_training(options, os.path.join(workdir, 'runs'))
    last = sorted(glob.glob(os.path.join(workdir, 'runs', '*', 'network-snapshot-*.pkl')))[-1]
    export_snapshot(last, dest, style, num_images)
    return dest


def export_snapshot(snapshot_pkl: str, dest: str, style: str, num_images: int) -> None:
    """Write G, D, G_ema (and the augment pipe) of a training snapshot to `dest`, without training state."""
    with open(snapshot_pkl, 'rb') as f:
        snapshot = snapshot_io.load_network_pkl(f)
    out = {key: snapshot[key] for key in ('G', 'D', 'G_ema', 'augment_pipe')}
    out['training_set_kwargs'] = dict(
        class_name='training.dataset.ImageFolderDataset', resolution=RESOLUTION, use_labels=False, xflip=True,
        max_size=None, path=(f'make_synthetic_dataset(num_images={num_images}, resolution={RESOLUTION}, '
                             f'seed={DATA_SEED}, style={style!r})'))
    snapshot_io.save_network_pkl(out, dest)


@click.command()
@click.option('--workdir', required=True, help='Scratch folder for the data set and the training run.')
@click.option('--kimg', type=float, default=50, show_default=True, help='Training length.')
@click.option('--dest', default=None, help='Output pickle [default: demo/source_generator.pkl].')
@click.option('--style', type=click.Choice(list(STYLES)), default='shapes', show_default=True, help='Procedural data style.')
@click.option('--num_images', type=click.IntRange(min=1), default=2000, show_default=True, help='Data set size.')
@click.option('--z_dim', type=click.IntRange(min=1), default=64, show_default=True, help='Width of z.')
@click.option('--w_dim', type=click.IntRange(min=1), default=64, show_default=True, help='Width of w.')
@click.option('--channel_base', type=click.IntRange(min=1), default=1024, show_default=True, help='Channels x resolution.')
@click.option('--channel_max', type=click.IntRange(min=1), default=32, show_default=True, help='Channel cap per layer.')
def main(workdir, kimg, dest, style, num_images, z_dim, w_dim, channel_base, channel_max):
    """Pretrain the demo generator on procedural data and export it."""
    print(make_demo_generator(workdir, kimg, dest, style, num_images, z_dim, w_dim, channel_base, channel_max))


if __name__ == '__main__':
    main()
