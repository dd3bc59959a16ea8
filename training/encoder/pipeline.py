"""The two commands of the encoder: `train` (train_encoder.py) and `encode` (encode_domain.py).

References for `encode`: PNG/JPEG images of the target domain in a folder. The encoder reads each
with its source counterpart (see encoder.py): either a file of the same name in `sources_dir`, or,
when the reference is named `seedNNNN.png`, the source generator's image of seed NNNN (the
stylegan seed convention, as generate.py writes them).
"""

import os
import re

import numpy as np
import PIL.Image
import torch

import dnnlib
from training import cli_helpers
from training.encoder import encoder as encoder_module
from training.encoder import training as encoder_training
from training.encoder.parameterizations import get_parameterization
from training.expansion.tasks.shared_models import SharedModels, open_clip_spec

#----------------------------------------------------------------------------

SNAPSHOT_NAME = 'encoder-snapshot.pt'
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
SEED_NAME_RE = re.compile(r'^seed(\d+)\.(png|jpe?g)$', re.IGNORECASE)

#----------------------------------------------------------------------------

def train(network_pkl: str, outdir: str, steps: int = 4000, seed: int = 0, parameterization: str = 'rgb_affine',
          device='cpu', log=print, backbone: str = 'stats', losses: str = 'pixel', clip_model: str = 'ViT-B/32',
          clip_cache_dir: str = None, shared_models=None) -> str:
    """Train an encoder for the source `network_pkl`; returns the snapshot's absolute path.

    `backbone` / `losses` 'clip' load the CLIP model `clip_model` through `shared_models` (a
    SharedModels; None = a new one reading `clip_cache_dir`) before any other work: offline, the
    one-line PretrainedWeightsError, and nothing is created.
    """
    if steps < 1:
        raise dnnlib.util.UserError(f'--steps: must be at least 1, got {steps}')
    opts = encoder_training.EncoderTrainingOptions(steps=int(steps), seed=int(seed), backbone=backbone, losses=losses)
    try:
        opts.check()
    except ValueError as err:
        raise dnnlib.util.UserError(f'--backbone / --losses: {err}') from None
    cli_helpers.require_file(network_pkl, '--network')
    cli_helpers.check_output_dir(outdir)
    clip = None
    if opts.needs_clip:
        try:
            open_clip_spec(clip_model)
        except ValueError as err:
            raise dnnlib.util.UserError(f'--clip: {err}') from None
        models = shared_models if shared_models is not None else SharedModels(torch.device(device), clip_cache_dir=clip_cache_dir)
        clip = models.clip(clip_model)                  # PretrainedWeightsError (one line) when unavailable
    G = cli_helpers.load_generator(network_pkl, torch.device(device))
    param = get_parameterization(parameterization, G.synthesis, key='--parameterization')
    if param.img_channels != 3:
        raise dnnlib.util.UserError(f'--network: the colour-domain family needs RGB images, the generator makes {param.img_channels} channels')
    log(f'Training a {parameterization} encoder ({param.num_params} parameters per domain, backbone {backbone}, '
        f'{losses} losses) for {steps} steps')
    progress = lambda step, n, loss, secs: log(f'step {step}/{n}  loss {loss:.5f}  {secs:.0f} s')
    encoder, _ = encoder_training.train_encoder(param, G.mapping, opts, progress=progress, clip=clip,
                                                clip_model=clip_model)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.abspath(os.path.join(outdir, SNAPSHOT_NAME))
    options = dict(network_pkl=str(network_pkl), parameterization=parameterization,
                   clip_model=clip_model if opts.needs_clip else None, **vars(opts))
    encoder_module.save_encoder_snapshot(path, encoder.cpu(), parameterization, dnnlib.util.file_sha256(network_pkl),
                                         G.img_resolution, options)
    return path

#----------------------------------------------------------------------------

def list_references(folder: str, flag: str = '--references') -> list:
    """Sorted image paths directly in `folder`; UserError when there are none."""
    if not os.path.isdir(folder):
        raise dnnlib.util.UserError(f"{flag}: no such folder: '{folder}'")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))
    if not names:
        raise dnnlib.util.UserError(f"{flag}: no PNG or JPEG images in '{folder}'")
    return [os.path.join(folder, n) for n in names]

def load_image(path: str, resolution: int, flag: str) -> torch.Tensor:
    """One RGB image `[3, R, R]` in [-1, 1]; UserError naming the file when it is unreadable or not R x R."""
    try:
        with PIL.Image.open(path) as image:
            image = image.convert('RGB')
    except (OSError, ValueError) as err:
        raise dnnlib.util.UserError(f"{flag}: cannot read '{path}' ({type(err).__name__}); remove or replace it") from None
    if image.size != (resolution, resolution):
        raise dnnlib.util.UserError(f"{flag}: '{path}' is {image.size[0]}x{image.size[1]}, the generator makes "
                                    f'{resolution}x{resolution}; resize it')
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
    return torch.from_numpy(array / 127.5 - 1)

def load_reference_pairs(G, references_dir: str, sources_dir: str = None) -> tuple:
    """(references, sources) `[K, 3, R, R]` in [-1, 1] (see the module doc for the pairing)."""
    paths = list_references(references_dir)
    R = G.img_resolution
    references = torch.stack([load_image(p, R, '--references') for p in paths])
    if sources_dir is not None:
        if not os.path.isdir(sources_dir):
            raise dnnlib.util.UserError(f"--sources: no such folder: '{sources_dir}'")
        source_paths = [os.path.join(sources_dir, os.path.basename(p)) for p in paths]
        for path in source_paths:
            if not os.path.isfile(path):
                raise dnnlib.util.UserError(f"--sources: '{path}' is missing; every reference needs a source image of the same name")
        return references, torch.stack([load_image(p, R, '--sources') for p in source_paths])
    seeds = []
    for path in paths:
        match = SEED_NAME_RE.match(os.path.basename(path))
        if match is None:
            raise dnnlib.util.UserError(f"--references: '{path}' is not named seedNNNN.png; name references after the "
                                        f'source seed they show, or pass --sources DIR with their source images')
        seeds.append(int(match.group(1)))
    return references, render_seeds(G, seeds, theta=None)

@torch.no_grad()
def render_seeds(G, seeds: list, theta=None, param=None, batch_size: int = 32) -> torch.Tensor:
    """Images `[len(seeds), C, R, R]` of seeds (psi 1, noise const); in domain theta when given."""
    device = G.mapping.w_avg.device
    parts = []
    for start in range(0, len(seeds), batch_size):
        z = cli_helpers.seeds_to_z(seeds[start:start + batch_size], G.z_dim, device)
        ws = G.mapping(z, None)
        parts.append(G.synthesis(ws, noise_mode='const') if theta is None else param.render(ws, theta))
    return torch.cat(parts)

def encode(network_pkl: str, encoder_pt: str, references_dir: str, seeds: list, outdir: str,
           sources_dir: str = None, device='cpu') -> dict:
    """One encoder pass over the references, then OUT/base/seedNNNN.png and OUT/domain/seedNNNN.png.

    Returns {'theta': [P] list, 'parameterization': name, 'base': paths, 'domain': paths}.
    """
    cli_helpers.require_file(network_pkl, '--network')
    cli_helpers.check_output_dir(outdir)
    encoder, info = encoder_module.load_encoder_snapshot(encoder_pt)
    encoder_module.check_fits_generator(info, dnnlib.util.file_sha256(network_pkl))
    G = cli_helpers.load_generator(network_pkl, torch.device(device))
    references, sources = load_reference_pairs(G, references_dir, sources_dir)
    param = get_parameterization(info['parameterization'], G.synthesis, key=f'{encoder_pt} parameterization')
    encoder = encoder.to(device)
    with torch.no_grad():
        theta = encoder(references[None].to(device), sources[None].to(device))[0]   # one pass, K references
    base = render_seeds(G, seeds)
    domain = render_seeds(G, seeds, theta=theta, param=param)
    written = dict(base=[], domain=[])
    for kind, images in (('base', base), ('domain', domain)):
        for seed, image in zip(seeds, images):
            path = os.path.join(outdir, kind, f'seed{seed:04d}.png')
            cli_helpers.save_image(image, path)
            written[kind].append(path)
    return dict(theta=theta.cpu().tolist(), parameterization=info['parameterization'], **written)

#----------------------------------------------------------------------------
