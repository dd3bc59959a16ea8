"""Semantic-Score / Diversity protocol (text Sec. III, Eq. 13-14): one table, mean ± std over
target domains, for one method's adapted images. Needs the real CLIP weights; without them it
stops with a one-line error (a score of a randomly initialised CLIP is never printed).

    python -m scripts.semantic_protocol --method encoder \
        --domain sepia refs/sepia.png out/enc_sepia/domain --domain sketch refs/sketch.png out/enc_sketch/domain

Every ADAPTED_DIR must hold the same file names (the same fixed source images adapted to each
domain, e.g. encode_domain.py's domain/seedNNNN.png for one --seeds list).
"""

import click

import dnnlib
from training import cli_helpers
from training.encoder import protocol
from training.expansion.tasks import SharedModels

# ---------------------------------------------------------------------------------------------


def run(domains: list, method: str, clip_model: str = 'ViT-B/32', device='cpu', clip_cache_dir: str = None,
        json_path: str = None) -> str:
    """Check the inputs, load the real CLIP (or raise its one-line error), score, return the table."""
    protocol.check_domains(domains)
    encoder = SharedModels(device, clip_cache_dir=clip_cache_dir).clip(clip_model)
    result = protocol.evaluate(encoder, domains)
    if json_path is not None:
        dnnlib.util.write_json_atomic(json_path, dict(method=method, clip_model=clip_model, **result))
    return protocol.format_table(result, method) + f'\n\nCLIP image tower: {clip_model} (pretrained weights)'


@click.command()
@click.option('--domain', 'domain_args', type=(str, str, str), multiple=True, required=True,
              metavar='NAME REFERENCE ADAPTED_DIR', help='A target domain: name, reference image, folder of adapted images.')
@click.option('--method', default='method', show_default=True, help='Row label of the summary line.')
@click.option('--clip', 'clip_model', default='ViT-B/32', show_default=True, help='CLIP model E.')
@click.option('--clip-cache', 'clip_cache_dir', default=None, metavar='DIR', help='open_clip weights cache.')
@click.option('--json', 'json_path', default=None, metavar='FILE', help='Also write the numbers as JSON.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(domain_args, method, clip_model, clip_cache_dir, json_path, device):
    """Semantic-Score and Diversity of adapted images, mean ± std over domains."""
    domains = [protocol.ProtocolDomain(*args) for args in domain_args]
    print(run(domains, method, clip_model, cli_helpers.parse_device(device), clip_cache_dir, json_path))


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
