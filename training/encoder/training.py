"""Training the domain encoder on sampled ground-truth colour domains (CPU recipe; ours).

Per step: draw B training domains (`domains.sample_training_domain`), K reference latents and m
target latents per domain from a pool of source renders; the references are the pairs
(T_b(G(w)), G(w)), the encoder predicts theta_b from them, and the loss is the pixel loss of the domain render against
the known transform plus a pull towards the identity (issue 14, CPU demo):

    L = mean_b,j (G_theta_b(w_bj) - T_b(G(w_bj)))^2 + reg_weight * mean (theta_b - theta_id)^2

The references and the targets come from different latents, so the encoder must read the domain
from the references' statistics, not copy pixels. With CLIP weights the text's losses (image-guided
directional loss Eq. 3, the inter-domain direction loss, domain-norm and in-domain-angle
regularisers Eq. 11) would replace the pixel loss; they are not part of this CPU recipe.
"""

import dataclasses
import time

import numpy as np
import torch

from torch_utils import misc
from training.encoder import domains, fit
from training.encoder.encoder import DomainEncoder
from training.encoder.parameterizations import RgbAffine

#----------------------------------------------------------------------------

@dataclasses.dataclass
class EncoderTrainingOptions:
    steps:              int = 2000      # Adam steps.
    seed:               int = 0         # Pool latents, domains, minibatches and initial weights.
    domains_per_step:   int = 8         # B.
    max_references:     int = 4         # K is drawn from 1..max_references each step.
    targets_per_domain: int = 4         # m.
    pool_size:          int = 1024      # Source latents rendered once.
    lr:                 float = 1e-3    # Adam learning rate.
    reg_weight:         float = 1e-3    # Weight of mean (theta - theta_id)^2.
    channels:           int = 32        # Backbone width.
    hidden:             int = 256       # Head width.

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

def train_encoder(param, G_mapping: torch.nn.Module, opts: EncoderTrainingOptions, progress=None) -> tuple:
    """(trained DomainEncoder, list of per-step losses).

    Args:
        param:     the Parameterization (bound to the frozen synthesis network) theta belongs to.
        G_mapping: the source mapping network (pool latents, psi 1).
        opts:      EncoderTrainingOptions.
        progress:  optional callable(step, num_steps, loss, seconds) called every 100 steps and at the end.
    """
    torch.manual_seed(opts.seed)
    device = next(G_mapping.parameters()).device
    ws_pool = fit.source_latents(G_mapping, opts.pool_size, opts.seed, param.num_ws)
    src_pool = fit.render_source(param, ws_pool)                                  # [pool, C, H, W]
    encoder = DomainEncoder(param.num_params, param.identity(device), img_channels=param.img_channels,
                            channels=opts.channels, hidden=opts.hidden).to(device).train()
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
        loss = (pred - target).square().mean() + opts.reg_weight * (theta - encoder.theta_identity).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None and ((step + 1) % 100 == 0 or step + 1 == opts.steps):
            progress(step + 1, opts.steps, float(np.mean(losses[-100:])), time.perf_counter() - start)
    return encoder.eval().requires_grad_(False), losses

#----------------------------------------------------------------------------
