"""Generate images from a black-box adapted generator: the latent sampler written by
adapt_blackbox.py draws W+ latents, the frozen source generator renders them; one seedNNNN.png
per seed (the sample of a seed does not depend on the other seeds).

    python generate_blackbox.py --network demo/source_generator.pkl --sampler out/bb/sampler-snapshot.pt --seeds 0-63 --outdir out/bb/images
"""

import click

import dnnlib
from training import cli_helpers
from training.blackbox import editing
from training.blackbox import pipeline
from training.expansion.tasks import shared_models

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='The source generator pickle the sampler was adapted from.')
@click.option('--sampler', 'sampler_pkl', required=True, metavar='PT', help='Sampler snapshot written by adapt_blackbox.py.')
@click.option('--seeds', required=True, help="Seeds, e.g. '0-63' or '1,5,9-12'.")
@click.option('--outdir', required=True, metavar='DIR', help='Where to write seedNNNN.png.')
@click.option('--mix-alpha', type=float, default=None, help='Style-mixing weight  [default: the value adapted with]')
@click.option('--edit-text', default=None, metavar='TEXT', help='Edit the samples towards this prompt (paper Eq. 7).')
@click.option('--edit-source-text', default=None, metavar='TEXT',
              help='Prompt describing the unedited samples: directional CLIP loss instead of the global one.')
@click.option('--edit-steps', type=click.IntRange(min=1), default=editing.EDIT_STEPS, show_default=True,
              help='Adam steps of the edit (lambda 0.005, lr 0.1).')
@click.option('--clip-model', default='ViT-B/32', show_default=True, help='CLIP model of the edit (open_clip).')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, sampler_pkl, seeds, outdir, mix_alpha, edit_text, edit_source_text, edit_steps, clip_model, device):
    """Sample images from a black-box adapted generator."""
    seed_list = cli_helpers.parse_seeds(seeds)
    device = cli_helpers.parse_device(device)
    edit = None
    if edit_text is not None:
        # Loaded before anything is written; offline, one line naming the weights and where they go.
        clip = shared_models.load_open_clip(clip_model, device)
        edit = dict(clip=clip, text=edit_text, source_text=edit_source_text, num_steps=edit_steps)
    elif edit_source_text is not None:
        raise click.UsageError('--edit-source-text: only used with --edit-text; add --edit-text TEXT')
    paths = pipeline.generate(network_pkl, sampler_pkl, seed_list, outdir, mix_alpha=mix_alpha, device=device, edit=edit)
    print(f'Wrote {len(paths)} images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
