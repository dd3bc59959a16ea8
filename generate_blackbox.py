"""Generate images from a black-box adapted generator: the latent sampler written by
adapt_blackbox.py draws W+ latents, the frozen source generator renders them; one seedNNNN.png
per seed (the sample of a seed does not depend on the other seeds).

    python generate_blackbox.py --network demo/source_generator.pkl --sampler out/bb/sampler-snapshot.pt --seeds 0-63 --outdir out/bb/images
"""

import click

import dnnlib
from training import cli_helpers
from training.blackbox import pipeline

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='The source generator pickle the sampler was adapted from.')
@click.option('--sampler', 'sampler_pkl', required=True, metavar='PT', help='Sampler snapshot written by adapt_blackbox.py.')
@click.option('--seeds', required=True, help="Seeds, e.g. '0-63' or '1,5,9-12'.")
@click.option('--outdir', required=True, metavar='DIR', help='Where to write seedNNNN.png.')
@click.option('--mix-alpha', type=float, default=None, help='Style-mixing weight  [default: the value adapted with]')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, sampler_pkl, seeds, outdir, mix_alpha, device):
    """Sample images from a black-box adapted generator."""
    seed_list = cli_helpers.parse_seeds(seeds)
    paths = pipeline.generate(network_pkl, sampler_pkl, seed_list, outdir, mix_alpha=mix_alpha,
                              device=cli_helpers.parse_device(device))
    print(f'Wrote {len(paths)} images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
