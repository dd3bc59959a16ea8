"""Training the domain encoder on sampled ground-truth colour domains (CPU recipe; ours).

Per step: draw B training domains (`domains.sample_training_domain`), K reference latents and m
target latents per domain from a pool of source renders; the references are the pairs
(T_b(G(w)), G(w)), the encoder predicts theta_b from them, and the loss is the pixel loss of the domain render against
the known transform plus a pull towards the identity (issue 14, CPU demo):

    L = mean_b,j (G_theta_b(w_bj) - T_b(G(w_bj)))^2 + reg_weight * mean (theta_b - theta_id)^2

The references and the targets come from different latents, so the encoder must read the domain
from the references' statistics, not copy pixels. `losses='clip'` replaces this objective by the
text's CLIP losses (clip_losses.py: image-guided direction Eq. 3, inter-domain direction, in-domain
angle Eq. 11, domain norm), which need only the reference pairs, never the transform's pixels;
`backbone='clip'` embeds the references with the CLIP image tower. Both need a CLIP model.
"""

import dataclasses
import time

import numpy as np
import torch

from torch_utils import misc
from training.encoder import clip_losses, domains, fit
from training.encoder.encoder import BACKBONES, DomainEncoder
from training.encoder.parameterizations import RgbAffine

#----------------------------------------------------------------------------

@dataclasses.dataclass
class EncoderTrainingOptions:
    steps:              int = 4000      # Adam steps.
    seed:               int = 0         # Pool latents, domains, minibatches and initial weights.
    domains_per_step:   int = 8         # B.
    max_references:     int = 4         # K is drawn from 1..max_references each step.
    targets_per_domain: int = 4         # m.
    pool_size:          int = 1024      # Source latents rendered once.
    lr:                 float = 1e-3    # Adam learning rate.
    reg_weight:         float = 1e-3    # Weight of mean (theta - theta_id)^2.
    channels:           int = 32        # Backbone width.
    hidden:             int = 256       # Head width.
    backbone:           str = 'stats'   # 'stats' (CPU) or 'clip' (frozen CLIP image tower).
    losses:             str = 'pixel'   # 'pixel' (CPU recipe) or 'clip' (the text's losses, clip_losses.py).
    clip_direction_weight: float = 1.0  # losses 'clip': weight of Eq. 3 (image-guided direction).
    clip_tt_weight:     float = 1.0     # losses 'clip': weight of the inter-domain direction loss.
    clip_angle_weight:  float = 1.0     # losses 'clip': weight of Eq. 11 (in-domain angle).

    @property
    def needs_clip(self) -> bool:
        return self.backbone == 'clip' or self.losses == 'clip'

    def check(self) -> None:
        """ValueError naming the option when a choice is unknown or the step shape cannot feed the losses."""
        if self.backbone not in BACKBONES:
            raise ValueError(f'backbone must be one of {", ".join(BACKBONES)}, got {self.backbone!r}')
        if self.losses not in LOSSES:
            raise ValueError(f'losses must be one of {", ".join(LOSSES)}, got {self.losses!r}')
        if self.losses == 'clip' and (self.domains_per_step < 2 or self.targets_per_domain < 2):
            raise ValueError('losses clip needs domains_per_step >= 2 (inter-domain direction) and '
                             'targets_per_domain >= 2 (in-domain angle)')

LOSSES = ('pixel', 'clip')
def stack_domains(batch: list, device) -> tuple:
    """(M `[B, 3, 3]`, b `[B, 3]`) of a list of ColourDomains."""
    parts = [d.tensors(device) for d in batch]
    return torch.stack([M for M, _ in parts]), torch.stack([b for _, b in parts])

def apply_domains(M: torch.Tensor, b: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Images `[B, n, 3, H, W]`, each row b through its own colour map: M_b x + b_b."""
    misc.assert_shape(images, [M.shape[0], None, 3, None, None])
    return torch.einsum('bij,bnjhw->bnihw', M, images) + b.reshape(b.shape[0], 1, 3, 1, 1)

def render_domains(param, ws: torch.Tensor, source_img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Domain renders `[N, C, H, W]` of latents `ws` with per-sample theta `[N, P]` (differentiable
    in theta). rgb_affine acts on the output image only, so it reuses the source renders."""
    if isinstance(param, RgbAffine):
        return param.apply_to_image(source_img, theta)
    return param.render(ws, theta)

def build_encoder(param, opts: EncoderTrainingOptions, device, clip=None, clip_model=None) -> DomainEncoder:
    """An untrained encoder (theta = theta_id) for `param`, with the backbone of `opts`."""
    kwargs = dict(channels=opts.channels, hidden=opts.hidden, backbone=opts.backbone)
    if opts.backbone == 'clip':
        with torch.no_grad():
            probe = clip.encode_images(torch.zeros([1, param.img_channels, 8, 8], device=clip.device))
        kwargs.update(clip_model=clip_model or clip.name, embed_dim=probe.shape[1], clip_encoder=clip)
    return DomainEncoder(param.num_params, param.identity(device), img_channels=param.img_channels, **kwargs).to(device)

def step_loss(opts: EncoderTrainingOptions, encoder, pred, target, theta, references, reference_sources,
              target_sources, clip=None) -> torch.Tensor:
    """The step's objective: the CPU pixel recipe, or the text's CLIP losses (module docstring)."""
    if opts.losses == 'clip':
        weights = clip_losses.ClipLossWeights(direction=opts.clip_direction_weight, tt=opts.clip_tt_weight,
                                              angle=opts.clip_angle_weight, norm=opts.reg_weight)
        return clip_losses.clip_objective(clip, pred, target_sources, references, reference_sources, theta,
                                          encoder.theta_identity, weights)[0]
    return (pred - target).square().mean() + opts.reg_weight * (theta - encoder.theta_identity).square().mean()

def train_encoder(param, G_mapping: torch.nn.Module, opts: EncoderTrainingOptions, progress=None,
                  clip=None, clip_model=None) -> tuple:
    """(trained DomainEncoder, list of per-step losses).

    Args:
        param:      the Parameterization (bound to the frozen synthesis network) theta belongs to.
        G_mapping:  the source mapping network (pool latents, psi 1).
        opts:       EncoderTrainingOptions.
        progress:   optional callable(step, num_steps, loss, seconds) called every 100 steps and at the end.
        clip:       ClipEncoder, required when `opts.needs_clip` (backbone or losses 'clip').
        clip_model: its config name, stored in the snapshot (None: `clip.name`).
    """
    opts.check()
    if opts.needs_clip and clip is None:
        raise ValueError("backbone / losses 'clip' need a CLIP model (clip=)")
    torch.manual_seed(opts.seed)
    device = next(G_mapping.parameters()).device
    ws_pool = fit.source_latents(G_mapping, opts.pool_size, opts.seed, param.num_ws)
    src_pool = fit.render_source(param, ws_pool)                                  # [pool, C, H, W]
    encoder = build_encoder(param, opts, device, clip, clip_model).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=opts.lr)
    rng = np.random.default_rng(opts.seed)
    B, m = opts.domains_per_step, opts.targets_per_domain
    losses, start = [], time.perf_counter()
    for step in range(opts.steps):
        M, b = stack_domains([domains.sample_training_domain(rng) for _ in range(B)], device)
        K = int(rng.integers(1, opts.max_references + 1))
        ref_idx = torch.from_numpy(rng.integers(opts.pool_size, size=[B, K]))
        tgt_idx = torch.from_numpy(rng.integers(opts.pool_size, size=[B * m]))
        references = apply_domains(M, b, src_pool[ref_idx])                       # [B, K, C, H, W]
        target = apply_domains(M, b, src_pool[tgt_idx].unflatten(0, [B, m])).flatten(0, 1)
        theta = encoder(references, src_pool[ref_idx])                           # [B, P]
        theta_rows = theta.repeat_interleave(m, dim=0)                            # [B*m, P]
        pred = render_domains(param, ws_pool[tgt_idx], src_pool[tgt_idx], theta_rows)
        loss = step_loss(opts, encoder, pred, target, theta, references, src_pool[ref_idx], src_pool[tgt_idx], clip)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None and ((step + 1) % 100 == 0 or step + 1 == opts.steps):
            progress(step + 1, opts.steps, float(np.mean(losses[-100:])), time.perf_counter() - start)
    return encoder.eval().requires_grad_(False), losses

#----------------------------------------------------------------------------
