"""Remake demo/source_generator_sg3.pkl: the small StyleGAN3 (config T) that `demo.py --generator sg3` expands.

    python -m scripts.make_demo_generator_sg3 --workdir /tmp/demo_pretrain_sg3

1. Draws the procedural data set: 2000 'shapes' images of 32x32 (training/synthetic_data.py,
   seed 123: outlined discs, squares and triangles on striped or checkered backgrounds).
2. Trains `train.py --cfg stylegan3-t-tiny --batch 8 --mirror 1 --kimg 15 --metrics none` on it:
   StyleGAN3 config T from scratch at CPU size (z_dim = w_dim = 32, 6 synthesis layers, at most
   32 channels, float32; official T settings otherwise: no path length, no style mixing, EMAs
   moved by D's fakes only, StyleGAN2 resnet D). The shipped file took 39 minutes on one thread of
   our busy 2-core machine (85-100 s per kimg when the other core was free, up to 290 when not).
3. Writes G, D and G_ema of the last snapshot, without training state, to
   demo/source_generator_sg3.pkl (our pickle format).
"""

import glob
import os

import click

from scripts.make_demo_generator import export_snapshot
from training import launch, run_options
from training.synthetic_data import make_synthetic_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(REPO_ROOT, 'demo', 'source_generator_sg3.pkl')
DATA_SEED = 123          # demo.py draws its data with the same seed and style
DATA_STYLE = 'shapes'
NUM_IMAGES = 2000
RESOLUTION = 32


def make_demo_generator_sg3(workdir: str, kimg: float = 15, dest: str = DEST) -> str:
    """Train the StyleGAN3 demo generator in `workdir` and export it to `dest`; returns `dest`."""
    data = os.path.join(workdir, f'{DATA_STYLE}{RESOLUTION}-{NUM_IMAGES}.zip')
    if not os.path.exists(data):
        os.makedirs(workdir, exist_ok=True)
        make_synthetic_dataset(data, NUM_IMAGES, RESOLUTION, seed=DATA_SEED, style=DATA_STYLE)
    runs = os.path.join(workdir, 'runs')
    options = run_options.setup_training_options(outdir=runs, data=data, cfg='stylegan3-t-tiny', batch=8, kimg=kimg,
                                                 tick=1, snap=5, metrics='none', workers=0, mirror=True)
    launch.launch_training(options, runs)
    last = sorted(glob.glob(os.path.join(runs, '*', 'network-snapshot-*.pkl')))[-1]
    export_snapshot(last, dest, DATA_STYLE, NUM_IMAGES)     # same record as the StyleGAN2 demo generator's
    return dest


@click.command()
@click.option('--workdir', required=True, help='Scratch folder for the data set and the training run.')
@click.option('--kimg', type=click.FloatRange(min=0, min_open=True), default=15, show_default=True,
              help='Training length.')
@click.option('--dest', default=DEST, help='Output pickle [default: demo/source_generator_sg3.pkl].')
def main(workdir, kimg, dest):
    """Pretrain the StyleGAN3 demo generator on procedural data and export it."""
    print(make_demo_generator_sg3(workdir, kimg, dest))


if __name__ == '__main__':
    main()
