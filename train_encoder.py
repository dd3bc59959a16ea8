"""Train a domain encoder (issue 14): K reference images of a domain -> domain parameters theta of
a frozen source generator, in one forward pass. On the CPU it trains on a family of ground-truth
colour domains (training/encoder/domains.py); the last line printed is the snapshot's path.

    python train_encoder.py --network demo/source_generator.pkl --outdir out/encoder

With CLIP weights: `--backbone clip` (the frozen CLIP image tower embeds the references) and
`--losses clip` (the text's image-guided direction Eq. 3, inter-domain direction, in-domain angle
Eq. 11 and domain-norm losses instead of the pixel loss); `--clip` names the model. Offline they
stop with the one-line weights error before any work.
"""

import click
import torch

import dnnlib
from training import cli_helpers
from training.encoder import pipeline
from training.encoder.parameterizations import PARAMETERIZATIONS

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='Source generator pickle.')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write encoder-snapshot.pt.')
@click.option('--steps', type=int, default=4000, show_default=True, help='Adam steps.')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed.')
@click.option('--parameterization', type=click.Choice(list(PARAMETERIZATIONS)), default='rgb_affine', show_default=True,
              help='What theta is (channel_scale and style_offset render through G at every step: slower).')
@click.option('--backbone', type=click.Choice(['stats', 'clip']), default='stats', show_default=True,
              help='Reference embedding: a small statistics CNN trained with the head, or the frozen CLIP image tower.')
@click.option('--losses', type=click.Choice(['pixel', 'clip']), default='pixel', show_default=True,
              help="Objective: pixel loss against the known transform (CPU recipe) or the text's CLIP losses.")
@click.option('--clip', 'clip_model', default='ViT-B/32', show_default=True, metavar='NAME',
              help="CLIP model for --backbone/--losses clip (e.g. 'ViT-B/16', or open_clip 'ARCH:TAG').")
@click.option('--clip-cache', 'clip_cache_dir', default=None, metavar='DIR',
              help='Where the CLIP weights are cached [default: the huggingface_hub cache].')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--threads', type=click.IntRange(min=0), default=1, show_default=True,
              help='CPU threads for torch (0 = torch default); the networks are tiny, one thread is fastest on a busy machine.')
def main(network_pkl, outdir, steps, seed, parameterization, backbone, losses, clip_model, clip_cache_dir, device,
         threads):
    """Train an encoder that adapts a frozen generator to a domain in one pass."""
    if threads:
        torch.set_num_threads(threads)
    path = pipeline.train(network_pkl, outdir, steps=steps, seed=seed, parameterization=parameterization,
                          device=cli_helpers.parse_device(device), backbone=backbone, losses=losses,
                          clip_model=clip_model, clip_cache_dir=clip_cache_dir)
    print(path)


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
