"""Remake demo/source_generator.pkl: the small StyleGAN2 that the demo expands.

    python -m scripts.make_demo_generator --workdir /tmp/demo_pretrain [--kimg 40]

1. Draws the procedural 'blobs' data set: 2000 images of 32x32, gradient backgrounds with soft
   coloured blobs (training/synthetic_data.py, seed 123).
2. Trains `train.py --cfg tiny --batch 8 --mirror 1 --kimg 40 --metrics none` on it (about 8
   minutes on 2 CPU cores with OMP_NUM_THREADS=1; a 32x32 generator with z_dim = w_dim = 32).
3. Writes G, D and G_ema of the last snapshot, without training state, to
   demo/source_generator.pkl (our pickle format, under 1 MB).
"""

import glob
import os

import click

from training import launch, run_options, snapshot_io
from training.synthetic_data import make_synthetic_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_SEED = 123


def make_demo_generator(workdir: str, kimg: float = 40, dest: str | None = None) -> str:
    """Train the demo generator in `workdir` and export it to `dest`; returns `dest`."""
    dest = dest or os.path.join(REPO_ROOT, 'demo', 'source_generator.pkl')
    data = os.path.join(workdir, 'blobs32.zip')
    if not os.path.exists(data):
        os.makedirs(workdir, exist_ok=True)
        make_synthetic_dataset(data, 2000, 32, seed=DATA_SEED)
    options = run_options.setup_training_options(outdir=os.path.join(workdir, 'runs'), data=data, cfg='tiny',
                                                 batch=8, kimg=kimg, tick=1, snap=5, metrics='none', workers=0,
                                                 mirror=True)
    launch.launch_training(options, os.path.join(workdir, 'runs'))
    last = sorted(glob.glob(os.path.join(workdir, 'runs', '*', 'network-snapshot-*.pkl')))[-1]
    with open(last, 'rb') as f:
        snapshot = snapshot_io.load_network_pkl(f)
    out = {key: snapshot[key] for key in ('G', 'D', 'G_ema', 'augment_pipe')}
    out['training_set_kwargs'] = dict(class_name='training.dataset.ImageFolderDataset', resolution=32,
                                      path=f'make_synthetic_dataset(num_images=2000, resolution=32, seed={DATA_SEED})',
                                      use_labels=False, xflip=True, max_size=None)
    snapshot_io.save_network_pkl(out, dest)
    return dest


@click.command()
@click.option('--workdir', required=True, help='Scratch folder for the data set and the training run.')
@click.option('--kimg', type=float, default=40, show_default=True, help='Training length.')
@click.option('--dest', default=None, help='Output pickle [default: demo/source_generator.pkl].')
def main(workdir, kimg, dest):
    """Pretrain the demo generator on procedural data and export it."""
    print(make_demo_generator(workdir, kimg, dest))


if __name__ == '__main__':
    main()
