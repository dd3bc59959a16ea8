"""Adapt a frozen generator to the domain of some reference images in one encoder pass, and render
seeds in the source (OUT/base/seedNNNN.png) and in the encoded domain (OUT/domain/seedNNNN.png).

References are read with their source images: files of the same names in --sources DIR, or, for
references named seedNNNN.png, the source generator's image of that seed.

    python encode_domain.py --network demo/source_generator.pkl --encoder out/encoder/encoder-snapshot.pt --references refs --seeds 0-63 --outdir out/encoded
"""

import click

import dnnlib
from training import cli_helpers
from training.encoder import pipeline

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='Source generator pickle the encoder was trained for.')
@click.option('--encoder', 'encoder_pt', required=True, metavar='PT', help='Snapshot written by train_encoder.py.')
@click.option('--references', 'references_dir', required=True, metavar='DIR', help='Reference images of the target domain.')
@click.option('--sources', 'sources_dir', default=None, metavar='DIR', help='Source images of the references (same file names).')
@click.option('--seeds', required=True, help="Seeds to render, e.g. '0-63' or '1,5,9-12'.")
@click.option('--outdir', required=True, metavar='DIR', help='Where to write base/ and domain/.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, encoder_pt, references_dir, sources_dir, seeds, outdir, device):
    """Encode a domain from reference images and render it."""
    seed_list = cli_helpers.parse_seeds(seeds)
    result = pipeline.encode(network_pkl, encoder_pt, references_dir, seed_list, outdir, sources_dir=sources_dir,
                             device=cli_helpers.parse_device(device))
    print(f'Wrote {len(result["base"])} base and {len(result["domain"])} domain images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
