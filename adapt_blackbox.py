"""Black-box adaptation of a frozen generator to a folder of target images (Geometry Preserving
Loss Functions Promote Improved Adaptation of Blackbox Generative Models, 2024): invert the
targets into W+, train a latent diffusion sampler on them, write its snapshot. The generator's
weights are never updated. The last line printed is the snapshot's absolute path.

    python adapt_blackbox.py --network demo/source_generator.pkl --targets IMAGES_DIR --outdir out/bb --vgg random
    python generate_blackbox.py --network demo/source_generator.pkl --sampler out/bb/sampler-snapshot.pt --seeds 0-63 --outdir out/bb/images
"""

import click

import dnnlib
from training import cli_helpers
from training.blackbox import inversion
from training.blackbox import mixing
from training.blackbox import pipeline
from training.blackbox.diffusion import VARIANCES

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='Source generator pickle (frozen).')
@click.option('--targets', required=True, metavar='DIR', help="Folder of target PNG/JPEG images at the generator's resolution.")
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the snapshot, options, stats and inversion cache.')
@click.option('--steps', type=int, default=pipeline.DEFAULT_STEPS, show_default=True, help='Sampler optimiser steps.')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the sampler weights and training draws.')
@click.option('--batch', type=int, default=pipeline.DEFAULT_BATCH, show_default=True, help='Latents per step (b).')
@click.option('--lr', type=float, default=pipeline.DEFAULT_LR, show_default=True, help='Adam learning rate.')
@click.option('--loss', type=click.Choice(pipeline.LOSSES), default='full', show_default=True,
              help='full: Eq. 2 (MSE + 0.5 KL + 0.1 geom + 0.2 VGG); mse: the MSE-only baseline.')
@click.option('--vgg', type=click.Choice(['imagenet', 'random']), default='imagenet', show_default=True,
              help='VGG-16 weights of L_VGG (random: offline runs; not the published perceptual loss).')
@click.option('--mix-alpha', type=float, default=mixing.DEFAULT_ALPHA, show_default=True,
              help='Style-mixing weight alpha on the later layers (0: no mixing).')
@click.option('--geom-k', type=int, default=5, show_default=True, help='Tangent subspace dimension k of L_geom.')
@click.option('--timesteps', type=int, default=pipeline.DEFAULT_TIMESTEPS, show_default=True, help='Diffusion steps T.')
@click.option('--step-variance', type=click.Choice(VARIANCES), default=pipeline.DEFAULT_STEP_VARIANCE, show_default=True,
              help='Reverse-step variance of the sampler: beta_t (exact for standardised Gaussian latents) or the posterior variance.')
@click.option('--ema-decay', type=float, default=pipeline.DEFAULT_EMA_DECAY, show_default=True,
              help='The sampler keeps the moving average of its weights with this decay per step (0: the last weights).')
@click.option('--inversion-steps', type=int, default=inversion.DEFAULT_STEPS, show_default=True,
              help='Optimisation steps per target image.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, targets, outdir, steps, seed, batch, lr, loss, vgg, mix_alpha, geom_k, timesteps,
         step_variance, ema_decay, inversion_steps, device):
    """Adapt a frozen generator to target images with a latent diffusion sampler."""
    path = pipeline.adapt(network_pkl, targets, outdir, steps=steps, seed=seed, batch=batch, lr=lr, loss=loss, vgg=vgg,
                          mix_alpha=mix_alpha, geom_k=geom_k, timesteps=timesteps, step_variance=step_variance, ema_decay=ema_decay, inversion_steps=inversion_steps,
                          device=cli_helpers.parse_device(device))
    print(path)


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
