"""The two commands of black-box adaptation as importable functions (adapt_blackbox.py and
generate_blackbox.py only parse flags and call these):

  adapt:    check every input, invert the targets into W+ (cached), standardise, train the latent
            sampler with Eq. 2, write `sampler-snapshot.pt`; returns its absolute path.
  generate: draw one latent per seed, style-mix it, optionally edit it with a text prompt
            (Eq. 7), render it with the frozen generator, write `seedNNNN.png` per seed.
"""

import json
import os

import torch

import dnnlib
from training import cli_helpers
from training.blackbox import editing
from training.blackbox import inversion
from training.blackbox import loss as loss_module
from training.blackbox import mixing
from training.blackbox import sampler as sampler_module
from training.blackbox import targets as targets_module
from training.blackbox import vgg as vgg_module
from training.blackbox.diffusion import VARIANCES
from training.blackbox.training import train_sampler

#----------------------------------------------------------------------------
# Defaults, chosen so that adapting the 32 px demo generator to <= 200 targets takes minutes on
# two CPU cores (README, "Black-box adaptation", for the measured times); the paper's settings
# for 1024 px faces are in the README too.

DEFAULT_STEPS = 1000        # Sampler optimiser steps.
DEFAULT_BATCH = 8           # Latents per step (the paper's b = 8).
DEFAULT_LR = 1e-3           # Adam step size (the paper's value is lost in our copy of the text).
DEFAULT_TIMESTEPS = 100     # Diffusion steps T (only sampling costs grow with T; training draws one t per latent).
DEFAULT_STEP_VARIANCE = 'beta'  # Reverse-step variance (diffusion.VARIANCES; README for the measured effect).
DEFAULT_EMA_DECAY = 0.999   # The sampler keeps the EMA of its weights (training.train_sampler; 0: last iterate).
LOSSES = ('full', 'mse')    # Eq. 2, or the MSE-only baseline.
SNAPSHOT_NAME = 'sampler-snapshot.pt'
CACHE_DIR_NAME = 'inversion-cache'

#----------------------------------------------------------------------------

def check_adapt_options(o: dnnlib.EasyDict, num_targets: int) -> None:
    """UserError naming the flag for any option out of range (before any work)."""
    if o.steps < 1:
        raise dnnlib.util.UserError(f'--steps: must be >= 1, got {o.steps}')
    if o.loss not in LOSSES:
        raise dnnlib.util.UserError(f"--loss: unknown loss '{o.loss}'; choose one of {', '.join(LOSSES)}")
    if o.vgg not in vgg_module.WEIGHTS:
        raise dnnlib.util.UserError(f"--vgg: unknown weights '{o.vgg}'; choose one of {', '.join(vgg_module.WEIGHTS)}")
    if not 0 <= o.mix_alpha <= 1:
        raise dnnlib.util.UserError(f'--mix-alpha: must be in [0, 1], got {o.mix_alpha}')
    if num_targets < 2:
        raise dnnlib.util.UserError(f'--targets: needs at least 2 images (mu and sigma are fitted to them), got {num_targets}')
    if not 2 <= o.batch <= num_targets:
        raise dnnlib.util.UserError(f'--batch: must be in [2, {num_targets}] (the number of targets), got {o.batch}')
    if o.loss == 'full' and not 1 <= o.geom_k <= o.batch - 1:
        raise dnnlib.util.UserError(f'--geom-k: must be in [1, --batch - 1 = {o.batch - 1}], got {o.geom_k}')
    if o.timesteps < 2:
        raise dnnlib.util.UserError(f'--timesteps: must be >= 2, got {o.timesteps}')
    if o.step_variance not in VARIANCES:
        raise dnnlib.util.UserError(f"--step-variance: unknown variance '{o.step_variance}'; choose one of {', '.join(VARIANCES)}")
    if not 0 <= o.ema_decay < 1:
        raise dnnlib.util.UserError(f'--ema-decay: must be in [0, 1) (0: keep the last weights), got {o.ema_decay}')
    if o.inversion_steps < 1:
        raise dnnlib.util.UserError(f'--inversion-steps: must be >= 1, got {o.inversion_steps}')

def adapt(network_pkl: str, targets: str, outdir: str, steps: int = DEFAULT_STEPS, seed: int = 0,
        batch: int = DEFAULT_BATCH, lr: float = DEFAULT_LR, loss: str = 'full', vgg: str = 'imagenet',
        mix_alpha: float = mixing.DEFAULT_ALPHA, geom_k: int = 5, timesteps: int = DEFAULT_TIMESTEPS,
        step_variance: str = DEFAULT_STEP_VARIANCE, ema_decay: float = DEFAULT_EMA_DECAY, inversion_steps: int = inversion.DEFAULT_STEPS, device='cpu', verbose: bool = True) -> str:
    """Adapt `network_pkl` to the images in `targets`; returns the snapshot's absolute path.

    Writes into `outdir`: training_options.json, inversion-cache/ (re-runs skip done images),
    stats.jsonl (loss terms every 50 steps) and sampler-snapshot.pt. Bad input raises UserError
    before anything is written.
    """
    device = torch.device(device)
    o = dnnlib.EasyDict(network_pkl=os.path.abspath(network_pkl), targets=os.path.abspath(targets), steps=int(steps),
        seed=int(seed), batch=int(batch), lr=float(lr), loss=loss, vgg=vgg, mix_alpha=float(mix_alpha), geom_k=int(geom_k),
        timesteps=int(timesteps), step_variance=step_variance, ema_decay=float(ema_decay),
        inversion_steps=int(inversion_steps), device=str(device))
    cli_helpers.require_file(network_pkl, '--network')
    cli_helpers.check_output_dir(outdir)
    paths = targets_module.list_target_files(targets)
    check_adapt_options(o, len(paths))
    G = cli_helpers.load_generator(network_pkl, device)
    if G.w_dim % 4 != 0:                                                       # The U-Net halves the length twice.
        raise dnnlib.util.UserError(f'--network: w_dim = {G.w_dim}; the latent sampler needs a multiple of 4')
    images = targets_module.load_target_images(paths, G.img_resolution, G.img_channels)
    vgg_net = vgg_module.load_vgg16(vgg, device) if loss == 'full' else None   # Fails offline before any work.
    o.source_sha256 = dnnlib.util.file_sha256(network_pkl)
    o.num_targets = len(paths)
    if verbose:
        print('Black-box adaptation options:')
        print(json.dumps(o, indent=2))
    os.makedirs(outdir, exist_ok=True)
    with dnnlib.util.atomic_write_path(os.path.join(outdir, 'training_options.json')) as tmp:
        with open(tmp, 'wt') as f:
            json.dump(o, f, indent=2)

    ws = inversion.invert_images(G, images, o.source_sha256, cache_dir=os.path.join(outdir, CACHE_DIR_NAME),
        num_steps=o.inversion_steps, device=device, progress=verbose)         # [N, num_ws, w_dim]
    sampler = train_latent_sampler(G, ws.to(device), o, vgg_net, os.path.join(outdir, 'stats.jsonl'), verbose)
    path = os.path.abspath(os.path.join(outdir, SNAPSHOT_NAME))
    sampler_module.save_sampler_snapshot(path, sampler, o.source_sha256, o.mix_alpha,
        mixing.default_first_layer(G.synthesis.num_ws), dict(o))
    return path

def train_latent_sampler(G, ws: torch.Tensor, o: dnnlib.EasyDict, vgg_net, stats_path: str = None,
        verbose: bool = False) -> sampler_module.LatentSampler:
    """Standardise the target latents `[N, num_ws, w_dim]` and train a LatentSampler on them (Eq. 2 or MSE only)."""
    with torch.random.fork_rng(devices=[]):                                    # The U-Net's initial weights, from o.seed.
        torch.manual_seed(o.seed)
        sampler = sampler_module.LatentSampler(dict(num_ws=G.synthesis.num_ws, w_dim=G.w_dim),
            dict(num_timesteps=o.timesteps, variance=o.step_variance)).to(ws.device)
    sampler.normalizer.fit(ws)
    weights = loss_module.LOSS_WEIGHTS if o.loss == 'full' else loss_module.MSE_ONLY_WEIGHTS
    loss_fn = loss_module.BlackboxLoss(G, sampler.normalizer, sampler.schedule, vgg=vgg_net, weights=weights,
        mix_alpha=o.mix_alpha, geom_k=o.geom_k)
    log = open(stats_path, 'at') if stats_path is not None else None
    def progress(step, num_steps, terms):
        if step % 50 == 0 or step == num_steps:
            line = json.dumps(dict(step=step, **{k: round(v, 6) for k, v in terms.items()}))
            if log is not None:
                log.write(line + '\n')
                log.flush()
            if verbose:
                print(line, flush=True)
    try:
        train_sampler(sampler.denoiser, loss_fn, sampler.normalizer.normalize(ws), o.steps, o.batch, o.lr, o.seed, progress,
            ema_decay=o.ema_decay)
    finally:
        if log is not None:
            log.close()
    return sampler.eval()

#----------------------------------------------------------------------------

@torch.no_grad()
def sample_latents(G, sampler: sampler_module.LatentSampler, seeds: list, alpha: float,
        first_layer: int) -> torch.Tensor:
    """W+ latents `[len(seeds), num_ws, w_dim]` that `generate` renders: the sampler's latent of
    each seed, style-mixed with that seed's source latent (z = RandomState(seed).randn(z_dim))."""
    device = next(sampler.parameters()).device
    ws = sampler.sample_seeds(seeds, device=device)                             # [n, num_ws, w_dim]
    z = cli_helpers.seeds_to_z(list(seeds), G.z_dim, device)
    w_source = G.mapping(z, torch.zeros([len(seeds), G.c_dim], device=device))[:, 0]
    return mixing.mix_styles(ws, w_source, alpha, first_layer)

def metric_latent_source(sampler: sampler_module.LatentSampler, info: dict):
    """The generated latents of `calc_metrics.py --features w --sampler`: a callable
    `(G, num, seed, device) -> [num, num_ws, w_dim]`, the latents `generate` renders for seeds
    seed .. seed + num - 1 (with the snapshot's mixing settings)."""
    def source(G, num: int, seed: int, device) -> torch.Tensor:
        alpha, first_layer = sampler_module.mix_settings(info, G.synthesis.num_ws)
        return sample_latents(G, sampler.to(device), list(range(seed, seed + num)), alpha, first_layer)
    return source

def render_seeds(G, sampler: sampler_module.LatentSampler, seeds: list, alpha: float, first_layer: int,
        edit: dict = None) -> torch.Tensor:
    """Images `[len(seeds), C, H, W]` in [-1, 1] of the latents of `sample_latents`, optionally
    text-edited (`edit`: keyword arguments of `editing.edit_latents`: clip, text, source_text,
    num_steps), rendered by G."""
    ws = sample_latents(G, sampler, seeds, alpha, first_layer)
    if edit is not None:
        ws, _ = editing.edit_latents(G, ws, **edit)                             # Eq. 7
    with torch.no_grad():
        return G.synthesis(ws, noise_mode='const')

def generate(network_pkl: str, sampler_pkl: str, seeds: list, outdir: str, mix_alpha: float = None,
        batch_size: int = 64, device='cpu', edit: dict = None) -> list:
    """Write `outdir/seedNNNN.png` for each seed; returns the paths. Sample i depends only on seeds[i].

    The seed draws the reverse-process noise (torch.Generator(seed)) and the style-mixing source
    latent (z = np.random.RandomState(seed).randn(z_dim), the stylegan convention). mix_alpha:
    None uses the snapshot's value. edit: text editing of the samples (see `render_seeds`).
    """
    device = torch.device(device)
    cli_helpers.require_file(network_pkl, '--network')
    cli_helpers.check_output_dir(outdir)
    sampler, info = sampler_module.load_sampler_snapshot(sampler_pkl)
    if mix_alpha is not None and not 0 <= mix_alpha <= 1:
        raise dnnlib.util.UserError(f'--mix-alpha: must be in [0, 1], got {mix_alpha}')
    G = cli_helpers.load_generator(network_pkl, device)
    sampler_module.check_fits_generator(info, G, dnnlib.util.file_sha256(network_pkl))
    alpha, first_layer = sampler_module.mix_settings(info, G.synthesis.num_ws)
    alpha = alpha if mix_alpha is None else float(mix_alpha)
    sampler = sampler.to(device)
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for start in range(0, len(seeds), batch_size):
        part = seeds[start : start + batch_size]
        for seed, image in zip(part, render_seeds(G, sampler, part, alpha, first_layer, edit)):
            path = os.path.join(outdir, f'seed{seed:04d}.png')
            cli_helpers.save_image(image, path)
            paths.append(path)
    return paths

#----------------------------------------------------------------------------
